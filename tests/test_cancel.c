/* test_cancel.c -- deadline and cancel on every face of a call, as a
 * table: each face (pp_call at depth 1, pp_call pipelined, pp_lease_call,
 * pp_call_async from another thread, pp_request on the loop) in each state
 * it can be in (waiting for a worker, running a handler that honours
 * CANCEL, running one that ignores it, queued on a worker behind another
 * call, racing its reply).  Run on the python adapter and again on the
 * mock (PP_TEST_ADAPTER=mock), with the same expectations.
 * PP_CANCEL_RACES sets how many cancel-versus-reply rounds the race runs
 * (the stress entry runs 500). */
#include "faces.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a handler does on each adapter: run until CANCEL (and return),
 * run on whatever CANCEL says. */
static const char *honours, *ignores;
static int mock;

static int mock_reverse(const char *args, size_t len, pp_buf_t *reply,
                        void *data);

/* The mock's own handlers: reverse_bytes, as the Python fixture's. */
static const pp_mock_t *mock_handlers(void) {
  static pp_mock_t *m;

  if (m == NULL) {
    assert_int_equal(pp_mock_new(&m), 0);
    assert_int_equal(pp_mock_add(m, "reverse_bytes", mock_reverse, NULL), 0);
  }
  return m;
}

static pp_pool_t *pool_open(rec_t *rec, int size, int depth) {
  pp_config_t *cfg = python_config("echo_handlers.py", size);
  pp_pool_options_t o = rec_options(rec);
  pp_pool_t *pool;
  pp_diag_t d;
  char v[16];

  if (mock) {
    cfg_set(cfg, "adapter", "mock");
    o.mock = mock_handlers();
  }
  snprintf(v, sizeof(v), "%d", depth);
  cfg_set(cfg, "worker.pipeline_depth", v);
  /* Long enough for a handler that honours CANCEL to answer even in a
   * slow run (valgrind), short enough that an ignored one is replaced
   * soon. */
  snprintf(v, sizeof(v), "%dms", 300 * test_time_scale());
  cfg_set(cfg, "worker.cancel_grace", v);
  cfg_set(cfg, "worker.request_timeout", "5m");
  cfg_set(cfg, "checkout.timeout", "60s");
  rec_init(rec);
  if (pp_pool_open(cfg, &o, &pool, &d) != 0)
    fail_msg("pp_pool_open: %s", d.message);
  pp_config_free(cfg);
  return pool;
}

static void pool_close(pp_pool_t *pool, rec_t *rec) {
  pp_diag_t d;

  if (pp_pool_quiesce(pool, 60000 * test_time_scale(), &d) != 0)
    fail_msg("not quiet: %s", d.message);
  pp_pool_close(pool);
  rec_free(rec);
}

static void wait_events(rec_t *rec, pp_trace_type_t type, size_t n) {
  if (rec_wait(rec, type, n, 60000 * test_time_scale()) != 0)
    fail_msg("waited for %zu %s events, saw %zu", n, pp_trace_name(type),
             rec_count(rec, type));
}

/* The pool still answers, on the worker kept or its replacement. */
static void assert_serves(pp_pool_t *pool) {
  pp_buf_t reply = {0};
  pp_diag_t d;

  assert_int_equal(pp_call_cmd(pool, "echo", "\"after\"", &reply, -1, &d), 0);
  assert_string_equal(reply.data, "\"after\"");
  pp_buf_free(&reply);
}

static uint64_t restarts(pp_pool_t *pool) {
  pp_status_t st;
  uint64_t n;

  assert_int_equal(pp_pool_status(pool, &st), 0);
  n = st.restarts;
  pp_status_free(&st);
  return n;
}

/* F_REQUEST's echo to reach the loop is a request too. */
static size_t extra_requests(face_t f) { return f == F_REQUEST ? 1 : 0; }

/* ---- waiting for a worker: withdrawn by a cancel, failed by a deadline;
 * either way never sent (the worker's requests do not grow). */
static void waiting_case(face_t f, int by_cancel) {
  pp_lease_t *blocker;
  pp_cancel_t *token = NULL;
  pp_status_t st;
  uint64_t before;
  pp_diag_t d;
  call_t c;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 1, f == F_PIPE ? 2 : 1);

  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &blocker, &d), 0);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  before = st.requests;
  pp_status_free(&st);
  if (by_cancel)
    assert_int_equal(pp_cancel_new(pool, &token), 0);
  call_start(&c, pool, f, "{\"cmd\":\"echo\",\"args\":1}", by_cancel ? -1 : 200,
             token);
  if (by_cancel) {
    wait_events(&rec, PP_TRACE_CHECKOUT_WAIT, 1);
    assert_int_equal(pp_cancel(token), 1);
  }
  call_wait(&c);
  assert_int_equal(c.status, by_cancel ? PP_ECANCELED : PP_ETIMEDOUT);
  if (by_cancel)
    assert_non_null(strstr(c.msg, "cancelled"));
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.requests, before);
  pp_status_free(&st);
  pp_checkin(blocker);
  assert_serves(pool);
  assert_int_equal(restarts(pool), 0);
  call_free(&c);
  pool_close(pool, &rec);
  pp_cancel_free(token);
}

static void test_waiting_cancel(void **state) {
  (void)state;
  waiting_case(F_CALL, 1);
  waiting_case(F_PIPE, 1);
  waiting_case(F_ASYNC, 1);
}

static void test_waiting_deadline(void **state) {
  (void)state;
  waiting_case(F_CALL, 0);
  waiting_case(F_PIPE, 0);
  waiting_case(F_ASYNC, 0);
}

/* ---- running: a cancel ends the call at once, the handler sees it and
 * returns (its answer is dropped) and the worker stays; a handler that
 * ignores it has its worker replaced after cancel_grace. */
static void running_case(face_t f, int honoured) {
  pp_cancel_t *token;
  call_t c;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 1, f == F_PIPE ? 2 : 1);
  size_t req = extra_requests(f);

  assert_int_equal(pp_cancel_new(pool, &token), 0);
  call_start(&c, pool, f, honoured ? honours : ignores, -1, token);
  wait_events(&rec, PP_TRACE_REQUEST, req + 1);
  assert_int_equal(pp_cancel(token), 1);
  call_wait(&c);
  assert_int_equal(c.status, PP_ECANCELED);
  assert_non_null(strstr(c.msg, "CANCEL"));
  assert_int_equal(c.reply[0], '\0');
  /* Counted as a cancel, not as an error. */
  {
    pp_status_t st;

    assert_int_equal(pp_pool_status(pool, &st), 0);
    assert_int_equal(st.cancels, 1);
    assert_int_equal(st.errors, 0);
    pp_status_free(&st);
  }
  if (honoured) {
    wait_events(&rec, PP_TRACE_STALE_REPLY, 1);
    assert_int_equal(restarts(pool), 0);
    assert_int_equal(rec_count(&rec, PP_TRACE_EXIT), 0);
  } else {
    wait_events(&rec, PP_TRACE_EXIT, 1);
    assert_int_equal(rec_count(&rec, PP_TRACE_STALE_REPLY), 0);
  }
  assert_serves(pool);
  /* Fired, the token ends a call before it starts; reset, it does not. */
  call_free(&c);
  call_start(&c, pool, f, "{\"cmd\":\"echo\",\"args\":5}", -1, token);
  call_wait(&c);
  assert_int_equal(c.status, PP_ECANCELED);
  call_free(&c);
  pp_cancel_reset(token);
  call_start(&c, pool, f, "{\"cmd\":\"echo\",\"args\":6}", -1, token);
  call_wait(&c);
  assert_int_equal(c.status, 0);
  assert_string_equal(c.reply, "6");
  call_free(&c);
  pool_close(pool, &rec);
  pp_cancel_free(token);
}

static void test_running_cancel_honoured(void **state) {
  face_t f;

  (void)state;
  for (f = 0; f < F_N; f++)
    running_case(f, 1);
}

static void test_running_cancel_ignored(void **state) {
  face_t f;

  (void)state;
  for (f = 0; f < F_N; f++)
    running_case(f, 0);
}

/* ---- a token reset or freed right after pp_cancel: the thread call it
 * cancelled still wakes at once, and its worker still gets CANCEL. */
static void reset_case(face_t f, int free_it) {
  pp_cancel_t *token;
  call_t c;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 1, 1);

  assert_int_equal(pp_cancel_new(pool, &token), 0);
  call_start(&c, pool, f, honours, -1, token);
  wait_events(&rec, PP_TRACE_REQUEST, 1);
  assert_int_equal(pp_cancel(token), 1);
  if (free_it)
    pp_cancel_free(token);
  else
    pp_cancel_reset(token);
  call_wait(&c);
  assert_int_equal(c.status, PP_ECANCELED);
  wait_events(&rec, PP_TRACE_STALE_REPLY, 1);
  assert_int_equal(restarts(pool), 0);
  call_free(&c);
  pool_close(pool, &rec);
  if (!free_it)
    pp_cancel_free(token);
}

static void test_reset_right_after_cancel(void **state) {
  (void)state;
  reset_case(F_CALL, 0);
  reset_case(F_LEASE, 0);
  reset_case(F_CALL, 1);
  reset_case(F_LEASE, 1);
}

/* ---- misuse and edges: a token of another pool, timeout_ms 0, a lease
 * whose call was cancelled. */
static void test_edges(void **state) {
  pp_pool_t *pool, *other;
  pp_cancel_t *token;
  pp_buf_t reply = {0};
  pp_call_opts_t o = {.timeout_ms = -1};
  pp_lease_t *lease;
  pp_status_t st;
  pp_diag_t d;
  call_t c;
  rec_t rec, rec2;
  const char *echo = "{\"cmd\":\"echo\",\"args\":1}";

  (void)state;
  pool = pool_open(&rec, 1, 1);
  other = pool_open(&rec2, 1, 2);
  assert_int_equal(pp_cancel_new(other, &token), 0);
  o.cancel = token;
  assert_int_equal(pp_call_with(pool, echo, strlen(echo), &reply, &o, &d),
                   UV_EINVAL);
  assert_non_null(strstr(d.message, "another pool"));
  assert_int_equal(
      pp_call_async_with(pool, echo, strlen(echo), &o, on_async, NULL),
      UV_EINVAL);
  /* timeout_ms 0: no time at all, nothing sent, on either path. */
  o.cancel = NULL;
  o.timeout_ms = 0;
  assert_int_equal(pp_call_with(pool, echo, strlen(echo), &reply, &o, &d),
                   PP_ETIMEDOUT);
  assert_non_null(strstr(d.message, "timeout_ms 0"));
  assert_int_equal(pp_call_with(other, echo, strlen(echo), &reply, &o, &d),
                   PP_ETIMEDOUT);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.requests, 0);
  pp_status_free(&st);
  pp_cancel_free(token);
  /* A lease whose call was cancelled while it ran refuses the next call
   * with PP_ECANCELED, saying to check it in. */
  assert_int_equal(pp_cancel_new(pool, &token), 0);
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &lease, &d), 0);
  memset(&c, 0, sizeof(c));
  c.pool = pool;
  c.lease = lease;
  snprintf(c.payload, sizeof(c.payload), "%s", honours);
  c.opts.timeout_ms = -1;
  c.opts.cancel = token;
  uv_mutex_init(&c.mu);
  uv_cond_init(&c.cv);
  c.face = F_LEASE;
  assert_int_equal(uv_thread_create(&c.thread, lease_call_main, &c), 0);
  wait_events(&rec, PP_TRACE_REQUEST, 1);
  assert_int_equal(pp_cancel(token), 1);
  call_wait(&c);
  assert_int_equal(c.status, PP_ECANCELED);
  assert_int_equal(pp_lease_call(lease, echo, strlen(echo), -1, &reply, &d),
                   PP_ECANCELED);
  assert_non_null(strstr(d.message, "check the lease in"));
  pp_checkin(lease);
  call_free(&c);
  pp_buf_free(&reply);
  pool_close(pool, &rec);
  pool_close(other, &rec2);
  pp_cancel_free(token);
}

/* ---- running past the deadline: a one-shot call returns PP_ETIMEDOUT
 * and its request runs on (on_client_death: finish), its reply dropped;
 * a lease's call (its per-request timeout) replaces the worker. */
static void deadline_running_case(face_t f) {
  int one_shot = f == F_CALL || f == F_PIPE || f == F_ASYNC;
  call_t c;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 1, f == F_PIPE ? 2 : 1);

  call_start(&c, pool, f, "{\"cmd\":\"sleep\",\"args\":0.6}", 200, NULL);
  call_wait(&c);
  assert_int_equal(c.status, PP_ETIMEDOUT);
  if (one_shot) {
    wait_events(&rec, PP_TRACE_STALE_REPLY, 1);
    assert_int_equal(restarts(pool), 0);
  } else {
    wait_events(&rec, PP_TRACE_EXIT, 1);
  }
  assert_serves(pool);
  call_free(&c);
  pool_close(pool, &rec);
}

static void test_running_deadline(void **state) {
  face_t f;

  (void)state;
  for (f = 0; f < F_N; f++)
    deadline_running_case(f);
}

/* ---- the deadline travels with the request: the handler's remaining()
 * is within the call's timeout_ms (or worker.request_timeout's for a
 * call without one), and there is none when neither is set. */
static double left_of(const char *reply, int *has) {
  json_error_t jerr;
  json_t *j = json_loads(reply, 0, &jerr);
  double left;

  if (!json_is_array(j) || json_array_size(j) != 2)
    fail_msg("deadline_left answered %s", reply);
  *has = json_is_true(json_array_get(j, 0));
  left = json_is_number(json_array_get(j, 1))
             ? json_number_value(json_array_get(j, 1))
             : -1;
  json_decref(j);
  return left;
}

static void travels_case(face_t f) {
  const char *ask = "{\"cmd\":\"deadline_left\",\"args\":null}";
  double left;
  int has;
  call_t c;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 1, f == F_PIPE ? 2 : 1);

  /* The call's own, 5 s. */
  call_start(&c, pool, f, ask, 5000, NULL);
  call_wait(&c);
  assert_int_equal(c.status, 0);
  left = left_of(c.reply, &has);
  assert_true(has);
  assert_true(left > 0 && left <= 5.0);
  call_free(&c);
  /* None given: worker.request_timeout's, 5 minutes. */
  call_start(&c, pool, f, ask, -1, NULL);
  call_wait(&c);
  assert_int_equal(c.status, 0);
  left = left_of(c.reply, &has);
  assert_true(has);
  assert_true(left > 5.0 && left <= 300.0);
  call_free(&c);
  pool_close(pool, &rec);
}

static void test_deadline_travels(void **state) {
  pp_config_t *cfg;
  pp_pool_options_t o = rec_options(NULL);
  pp_buf_t reply = {0};
  pp_pool_t *pool;
  pp_diag_t d;
  face_t f;
  int has;

  (void)state;
  for (f = 0; f < F_N; f++)
    travels_case(f);
  /* Neither: the handler sees no deadline. */
  cfg = python_config("echo_handlers.py", 1);
  if (mock)
    cfg_set(cfg, "adapter", "mock");
  cfg_set(cfg, "worker.request_timeout", "0");
  assert_int_equal(pp_pool_open(cfg, &o, &pool, &d), 0);
  pp_config_free(cfg);
  assert_int_equal(pp_call_cmd(pool, "deadline_left", NULL, &reply, -1, &d), 0);
  assert_true(left_of(reply.data, &has) < 0);
  assert_false(has);
  pp_buf_free(&reply);
  pp_pool_close(pool);
}

/* ---- queued on a worker behind another call (pipelined): cancelling the
 * one behind harms neither; cancelling the one ahead, which ignores it,
 * replaces the worker, and the call behind is placed again, not lost. */
static void behind_case(face_t f, int cancel_ahead) {
  pp_cancel_t *ta, *tb;
  call_t a, b;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 1, 2);

  assert_int_equal(pp_cancel_new(pool, &ta), 0);
  assert_int_equal(pp_cancel_new(pool, &tb), 0);
  call_start(&a, pool, f, cancel_ahead ? ignores : honours, -1, ta);
  wait_events(&rec, PP_TRACE_REQUEST, 1);
  call_start(&b, pool, f, "{\"cmd\":\"echo\",\"args\":7}", -1, tb);
  wait_events(&rec, PP_TRACE_REQUEST, 2);
  {
    pp_status_t st; /* both on the one worker */

    assert_int_equal(pp_pool_status(pool, &st), 0);
    assert_int_equal(st.workers[0].in_flight, 2);
    pp_status_free(&st);
  }
  if (cancel_ahead) {
    assert_int_equal(pp_cancel(ta), 1);
    call_wait(&a);
    assert_int_equal(a.status, PP_ECANCELED);
    call_wait(&b);
    assert_int_equal(b.status, 0);
    assert_string_equal(b.reply, "7");
    assert_int_equal(rec_count(&rec, PP_TRACE_EXIT), 1);
  } else {
    assert_int_equal(pp_cancel(tb), 1);
    call_wait(&b);
    assert_int_equal(b.status, PP_ECANCELED);
    assert_int_equal(pp_cancel(ta), 1);
    call_wait(&a);
    assert_int_equal(a.status, PP_ECANCELED);
    wait_events(&rec, PP_TRACE_STALE_REPLY, 2);
    assert_int_equal(restarts(pool), 0);
  }
  assert_serves(pool);
  call_free(&a);
  call_free(&b);
  pool_close(pool, &rec);
  pp_cancel_free(ta);
  pp_cancel_free(tb);
}

/* A call behind a slower one whose timeout_ms passes while it waits on
 * the worker: PP_ETIMEDOUT at its deadline, the one ahead unharmed, and
 * the worker, which gets it past its deadline, does not run it (its
 * DeadlineExceeded answer is dropped). */
static void behind_deadline_case(face_t f) {
  call_t a, b;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 1, 2);

  call_start(&a, pool, f, "{\"cmd\":\"sleep\",\"args\":0.6}", -1, NULL);
  wait_events(&rec, PP_TRACE_REQUEST, 1);
  call_start(&b, pool, f, "{\"cmd\":\"echo\",\"args\":8}", 200, NULL);
  call_wait(&b);
  assert_int_equal(b.status, PP_ETIMEDOUT);
  call_wait(&a);
  assert_int_equal(a.status, 0);
  assert_string_equal(a.reply, "0.6");
  wait_events(&rec, PP_TRACE_STALE_REPLY, 1);
  assert_int_equal(restarts(pool), 0);
  assert_serves(pool);
  call_free(&a);
  call_free(&b);
  pool_close(pool, &rec);
}

static void test_behind(void **state) {
  (void)state;
  behind_case(F_PIPE, 0);
  behind_case(F_ASYNC, 0);
  behind_case(F_PIPE, 1);
  behind_case(F_ASYNC, 1);
  behind_deadline_case(F_ASYNC);
}

/* ---- bytes both ways, on every face: a call with opts.cmd hands the
 * handler its payload as bytes; a handler that returns bytes answers in
 * bytes, and the reply says so (pp_buf_t.binary, pp_result_t.binary). */
static int mock_reverse(const char *args, size_t len, pp_buf_t *reply,
                        void *data) {
  size_t i;

  (void)data;
  reply->data = malloc(len + 1);
  for (i = 0; i < len; i++)
    reply->data[i] = args[len - 1 - i];
  reply->len = reply->cap = len;
  reply->binary = 1;
  return 0;
}

static void test_bytes(void **state) {
  static const char data[] = {'a', 0, 'b', (char)0xff};
  static const char back[] = {(char)0xff, 'b', 0, 'a'};
  size_t big = 1u << 20, i;
  pp_buf_t reply = {0};
  char *blob;
  pp_diag_t d;
  face_t f;
  call_t c;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 1, 1);

  (void)state;
  for (f = 0; f < F_N; f++) {
    call_start_bytes(&c, pool, f, "reverse_bytes", data, sizeof(data));
    call_wait(&c);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.binary, 1);
    assert_int_equal(c.reply_len, sizeof(back));
    assert_memory_equal(c.reply, back, sizeof(back));
    call_free(&c);
    /* A JSON call's JSON reply says it is not bytes. */
    call_start(&c, pool, f, "{\"cmd\":\"echo\",\"args\":[1]}", -1, NULL);
    call_wait(&c);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.binary, 0);
    assert_string_equal(c.reply, "[1]");
    call_free(&c);
  }
  /* A MiB with every byte value, through pp_call_bytes. */
  blob = malloc(big);
  for (i = 0; i < big; i++)
    blob[i] = (char)(i * 7 + i / 256);
  assert_int_equal(
      pp_call_bytes(pool, "reverse_bytes", blob, big, &reply, NULL, &d), 0);
  assert_int_equal(reply.binary, 1);
  assert_int_equal(reply.len, big);
  for (i = 0; i < big; i++)
    if (reply.data[i] != blob[big - 1 - i])
      fail_msg("byte %zu differs", i);
  /* A name that cannot be a handler's is refused before anything is sent. */
  assert_int_equal(pp_call_bytes(pool, "not a name", "x", 1, &reply, NULL, &d),
                   UV_EINVAL);
  assert_non_null(strstr(d.message, "not an identifier"));
  free(blob);
  pp_buf_free(&reply);
  pool_close(pool, &rec);
}

/* ---- the cancel races the reply: exactly one of them wins, and says so:
 * pp_cancel counts the call and it gets PP_ECANCELED, or it does not and
 * the call gets its own reply (never another's). */
static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void test_race(void **state) {
  int rounds = env_int("PP_CANCEL_RACES", 25), i, k, won[2] = {0, 0};
  uint64_t seed = (uint64_t)env_int("PP_SEED", 12345) | 1;
  enum { N = 4 };
  pp_cancel_t *token[N];
  char payload[64];
  call_t c[N];
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 2, 2);

  (void)state;
  fprintf(stderr, "race: %d rounds, PP_SEED=%" PRIu64 "\n", rounds, seed);
  for (k = 0; k < N; k++)
    assert_int_equal(pp_cancel_new(pool, &token[k]), 0);
  for (i = 0; i < rounds; i++) {
    int n[N];

    for (k = 0; k < N; k++) {
      snprintf(payload, sizeof(payload), "{\"cmd\":\"echo\",\"args\":%d}",
               i * N + k);
      call_start(&c[k], pool, (face_t)((i + k) % F_N), payload, -1, token[k]);
    }
    for (k = 0; k < N; k++) {
      /* A seeded pause before each cancel spreads them over the call's
       * life: before it is placed, while it runs, as its reply comes. */
      uint64_t spin = rng_next(&seed) % 20000, j;
      volatile uint64_t sink = 0;

      for (j = 0; j < spin; j++)
        sink += j;
      n[k] = pp_cancel(token[k]);
    }
    for (k = 0; k < N; k++) {
      call_wait(&c[k]);
      if (n[k] == 1) {
        assert_int_equal(c[k].status, PP_ECANCELED);
      } else if (c[k].status == PP_ECANCELED) {
        /* The cancel came before the call took the token. */
        assert_int_equal(n[k], 0);
        assert_non_null(strstr(c[k].msg, "before it started"));
      } else {
        char want[16];

        assert_int_equal(n[k], 0);
        assert_int_equal(c[k].status, 0);
        snprintf(want, sizeof(want), "%d", i * N + k);
        assert_string_equal(c[k].reply, want);
      }
      won[n[k]]++;
      pp_cancel_reset(token[k]);
    }
    /* Quiet before the next round: a cancelled call's worker is back (or
     * replaced), and a late callback would show as a second end. */
    assert_int_equal(pp_pool_quiesce(pool, 60000 * test_time_scale(), NULL), 0);
    for (k = 0; k < N; k++)
      call_free(&c[k]);
  }
  fprintf(stderr, "race: %d cancels won, %d replies won\n", won[1], won[0]);
  assert_int_equal(won[0] + won[1], rounds * N);
  assert_serves(pool);
  pool_close(pool, &rec);
  for (k = 0; k < N; k++)
    pp_cancel_free(token[k]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_waiting_cancel),
      cmocka_unit_test(test_waiting_deadline),
      cmocka_unit_test(test_running_cancel_honoured),
      cmocka_unit_test(test_running_cancel_ignored),
      cmocka_unit_test(test_reset_right_after_cancel),
      cmocka_unit_test(test_edges),
      cmocka_unit_test(test_running_deadline),
      cmocka_unit_test(test_behind),
      cmocka_unit_test(test_deadline_travels),
      cmocka_unit_test(test_bytes),
      cmocka_unit_test(test_race),
  };
  const struct CMUnitTest race[] = {cmocka_unit_test(test_race)};
  const char *a = getenv("PP_TEST_ADAPTER");

  mock = a && strcmp(a, "mock") == 0;
  honours = mock ? "{\"cmd\":\"sleep\",\"args\":60}"
                 : "{\"cmd\":\"cancelled_sleep\",\"args\":60}";
  ignores = mock ? "{\"cmd\":\"hang\"}" : "{\"cmd\":\"sleep\",\"args\":60}";
  /* The stress entry runs the race alone, PP_CANCEL_RACES times. */
  if (getenv("PP_CANCEL_RACES"))
    return cmocka_run_group_tests(race, NULL, NULL);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
