/* test_hostile_faults.c -- workers that misbehave on purpose: every kind
 * of broken frame, start-up faults and crash loops, hangs and timeouts,
 * floods on stdout and stderr, forks and subprocesses.  For each fault the
 * pool survives, the affected client gets a precise code, status says why,
 * and a client on another worker (a bystander) notices nothing.  The
 * hostile workers and the recorder are hostile.h's. */
#include "hostile.h"

#include "faults.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ----------------------------------------------------------- bystanders */

/* A client on another worker that keeps calling echo while a fault
 * happens next door; it must notice nothing.  It runs on its own thread
 * and only records: the test asserts. */
typedef struct bystander {
  hpool_t *h;
  pp_lease_t *lease;
  uv_thread_t thread;
  atomic_int stop;
  int calls, failed, first_err;
  char first_diag[256];
} bystander_t;

static void bystander_main(void *arg) {
  bystander_t *b = arg;
  pp_buf_t reply = {0};
  char payload[64], want[32];
  uint64_t seen = 0, until;
  pp_diag_t d;
  int r, n;

  /* One call whenever the pool reports news (a kill, an exit, a spawn, a
   * HELLO...), and at least every 20 ms, so that its calls overlap every
   * step of the fault next door.  Not a tight loop: a bystander hammering
   * the machine would starve the replacement worker's start-up on a
   * loaded CI host. */
  while (!atomic_load(&b->stop) || b->calls < 5) {
    uv_mutex_lock(&b->h->mu);
    until = now_ns() + 20000000ull;
    while (b->h->news == seen && now_ns() < until && b->calls >= 5 &&
           !atomic_load(&b->stop))
      uv_cond_timedwait(&b->h->cv, &b->h->mu, 5000000ull);
    seen = b->h->news;
    uv_mutex_unlock(&b->h->mu);
    n = snprintf(payload, sizeof(payload), "{\"cmd\":\"echo\",\"args\":%d}",
                 b->calls);
    snprintf(want, sizeof(want), "%d", b->calls);
    memset(&d, 0, sizeof(d));
    r = pp_lease_call(b->lease, payload, (size_t)n, 10000, &reply, &d);
    b->calls++;
    if (r != 0 || strcmp(reply.data, want) != 0) {
      if (b->failed++ == 0) {
        b->first_err = r;
        snprintf(b->first_diag, sizeof(b->first_diag), "%.180s (reply %.60s)",
                 d.message, r == 0 ? reply.data : "-");
      }
    }
  }
  pp_buf_free(&reply);
}

/* The bystander of the test running: a failed test leaves it to the
 * teardown, which stops it before the next test reuses anything. */
static bystander_t *live_bystander;

static void bystander_start(bystander_t *b, hpool_t *h) {
  pp_diag_t d;

  memset(b, 0, sizeof(*b));
  b->h = h;
  atomic_init(&b->stop, 0);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &b->lease, &d), 0);
  assert_int_equal(uv_thread_create(&b->thread, bystander_main, b), 0);
  live_bystander = b;
}

/* Stop it, check it in, and assert that it saw nothing. */
static void bystander_stop(bystander_t *b) {
  uv_mutex_lock(&b->h->mu);
  atomic_store(&b->stop, 1);
  uv_cond_broadcast(&b->h->cv);
  uv_mutex_unlock(&b->h->mu);
  uv_thread_join(&b->thread);
}

static void bystander_end(bystander_t *b) {
  live_bystander = NULL;
  bystander_stop(b);
  pp_checkin(b->lease);
  if (b->failed)
    fail_msg("bystander: %d of %d calls failed; first %s: %s", b->failed,
             b->calls, pp_err_name(b->first_err), b->first_diag);
  assert_true(b->calls >= 5);
}

/* After every test: the bystander a failed test left calling is stopped,
 * then hostile_teardown. */
static int teardown(void **state) {
  if (live_bystander) {
    bystander_stop(live_bystander);
    live_bystander = NULL;
  }
  return hostile_teardown(state);
}

/* ======================================================= hostile frames */

/* One misbehaviour of fixtures/bad_worker.py per_request, asked for by the
 * victim's request while a bystander calls the other worker. */
typedef struct fault_case {
  const char *mode;
  int want;                 /* the victim's code */
  const char *reply;        /* its reply when want is 0 */
  pp_exit_kind_t exit_kind; /* the slot's last exit, classified */
  const char *exit_text;    /* in last_exit_text */
  int protocol;             /* a PROTOCOL_ERROR event is expected */
  const char *loop_why;     /* its detail on the event-loop face */
} fault_case_t;

static const fault_case_t fault_cases[] = {
    {"garbage", PP_EPROTO, NULL, PP_EXIT_PROTOCOL, "protocol error", 1,
     "malformed frame header"},
    {"oversize", PP_EPROTO, NULL, PP_EXIT_PROTOCOL, "protocol error", 1,
     "frame over max_frame"},
    {"unknown_type", PP_EPROTO, NULL, PP_EXIT_PROTOCOL, "protocol error", 1,
     "unknown frame type"},
    {"unknown_id", PP_EPROTO, NULL, PP_EXIT_PROTOCOL, "protocol error", 1,
     "reply to a request never sent"},
    /* The first reply answers the request; the second was never asked
     * for: the client keeps its reply, the worker is replaced. */
    {"dup_reply", 0, "\"first\"", PP_EXIT_PROTOCOL, "protocol error", 1,
     "bytes after the reply"},
    {"close_fd4", PP_EPROTO, NULL, PP_EXIT_PROTOCOL, "protocol error", 1,
     "worker closed its reply pipe"},
    {"exit_mid_frame", PP_ECRASHED, NULL, PP_EXIT_NORMAL, "exit 0", 0, NULL},
    {"hang", PP_ETIMEDOUT, NULL, PP_EXIT_TIMEOUT, "killed for timeout", 0,
     NULL},
};

/* What every fault leaves behind: the victim's slot replaced once with
 * its exit classified, the bystander's slot untouched, the pool ready. */
static void check_after_fault(hpool_t *h, const fault_case_t *fc, int slot,
                              int other, const char *why) {
  pp_status_t st;
  hev_t e;

  if (fc->protocol) {
    e = h_nth(h, PP_TRACE_PROTOCOL_ERROR, slot, 0);
    assert_int_equal(e.code, PP_EPROTO);
    assert_true(e.detail[0] != '\0');
    if (why && strstr(e.detail, why) == NULL)
      fail_msg("%s: protocol error detail '%s', want '%s'", fc->mode, e.detail,
               why);
  } else {
    assert_int_equal(h_count(h, PP_TRACE_PROTOCOL_ERROR, -1), 0);
  }
  if (fc->want == PP_ETIMEDOUT) {
    e = h_nth(h, PP_TRACE_KILL, slot, 0);
    assert_int_equal(e.code, SIGTERM);
  }
  h_status(h, &st);
  assert_int_equal(st.state, PP_POOL_READY);
  if (st.workers[slot].last_exit != fc->exit_kind ||
      strstr(st.workers[slot].last_exit_text, fc->exit_text) == NULL) {
    h_dump(h);
    fail_msg("%s: last exit '%s' (kind %d, generation %u), want '%s'", fc->mode,
             st.workers[slot].last_exit_text, (int)st.workers[slot].last_exit,
             st.workers[slot].generation, fc->exit_text);
  }
  assert_int_equal(st.workers[slot].generation, 2);
  assert_int_equal(st.workers[slot].restarts, 1);
  assert_int_equal(st.workers[other].generation, 1);
  assert_int_equal(st.workers[other].restarts, 0);
  assert_int_equal(st.workers[other].last_exit, PP_EXIT_NONE);
  assert_int_equal(st.restarts, 1);
  pp_status_free(&st);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, other), 0);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, -1), 1);
}

static void test_fault_blocking(void **state) {
  const fault_case_t *fc = *state;
  hpool_t *h = h_open(bad_config("per_request", 2));
  pp_buf_t reply = {0};
  pp_lease_t *victim;
  static bystander_t b; /* outlives a failure: see live_bystander */
  pp_diag_t d;
  int r, slot, other, pid;

  bystander_start(&b, h);
  other = pp_lease_slot(b.lease);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &victim, &d), 0);
  slot = pp_lease_slot(victim);
  pid = pp_lease_pid(victim);
  assert_int_not_equal(slot, other);
  r = lcall(victim, fc->mode, NULL, -1, &reply, &d);
  if (r != fc->want)
    fail_msg("%s: got %s (%s), want %s", fc->mode, pp_err_name(r), d.message,
             pp_err_name(fc->want));
  if (fc->reply)
    assert_string_equal(reply.data, fc->reply);
  else
    assert_true(d.message[0] != '\0'); /* the client is told why */
  if (fc->exit_kind == PP_EXIT_NORMAL)
    assert_non_null(strstr(d.message, fc->exit_text));
  pp_checkin(victim);
  h_wait(h, PP_TRACE_EXIT, slot, 1, WAIT_MS);
  h_wait(h, PP_TRACE_HELLO, slot, 2, WAIT_MS);
  bystander_end(&b);
  assert_int_equal(gone_within(pid, WAIT_MS), 0);
  check_after_fault(h, fc, slot, other, NULL);
  all_slots_serve(h, 2);
  pp_buf_free(&reply);
  h_close(h);
}

/* ---- the same faults on the event-loop face (the loop decodes) */

typedef struct lface lface_t;
typedef struct lslot {
  lface_t *f;
  pp_lease_t *lease;
  int co_done, co_status;
  int rp_done, rp_status;
  char reply[256];
  char diag[256];
} lslot_t;

struct lface {
  uv_loop_t loop;
  uv_timer_t guard;
  int timed_out;
  hpool_t h;
  int ready_calls, ready_status;
  int closed;
  lslot_t s[2];
};

static void lf_on_guard(uv_timer_t *t) { ((lface_t *)t->data)->timed_out = 1; }

static void lf_on_ready(pp_pool_t *pool, int status, void *data) {
  lface_t *f = data;
  (void)pool;
  f->ready_status = status;
  f->ready_calls++;
}

static void lf_on_closed(pp_pool_t *pool, void *data) {
  (void)pool;
  ((lface_t *)data)->closed = 1;
}

static void lf_on_checkout(pp_lease_t *lease, int status, const pp_diag_t *diag,
                           void *data) {
  lslot_t *s = data;
  (void)diag;
  s->lease = lease;
  s->co_status = status;
  s->co_done = 1;
}

static void lf_on_reply(pp_lease_t *lease, int status, const char *reply,
                        size_t len, const pp_diag_t *diag, void *data) {
  lslot_t *s = data;
  (void)lease;
  s->rp_status = status;
  snprintf(s->reply, sizeof(s->reply), "%.*s", (int)len, reply);
  snprintf(s->diag, sizeof(s->diag), "%.200s", diag ? diag->message : "");
  s->rp_done = 1;
}

/* Run the loop until pred(f) holds; the guard only fires on failure. */
static void lf_run(lface_t *f, int (*pred)(lface_t *), const char *what) {
  f->timed_out = 0;
  uv_timer_start(&f->guard, lf_on_guard, WAIT_MS, 0);
  while (!pred(f) && !f->timed_out)
    uv_run(&f->loop, UV_RUN_ONCE);
  uv_timer_stop(&f->guard);
  if (f->timed_out)
    fail_msg("loop face: waited %d ms for %s", WAIT_MS, what);
}

static int lf_ready(lface_t *f) { return f->ready_calls > 0; }
static int lf_both_out(lface_t *f) {
  return f->s[0].co_done && f->s[1].co_done;
}
static int lf_both_replied(lface_t *f) {
  return f->s[0].rp_done && f->s[1].rp_done;
}
static int lf_other_replied(lface_t *f) { return f->s[1].rp_done; }
static int lf_closed(lface_t *f) { return f->closed; }

static int lf_victim_slot;
static int lf_replaced(lface_t *f) {
  return h_count(&f->h, PP_TRACE_EXIT, lf_victim_slot) >= 1 &&
         h_count(&f->h, PP_TRACE_HELLO, lf_victim_slot) >= 2;
}

static void lf_start(lface_t *f, pp_config_t *cfg) {
  pp_pool_options_t o;
  pp_diag_t d;
  int r;

  memset(f, 0, sizeof(*f));
  h_init(&f->h);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  uv_timer_init(&f->loop, &f->guard);
  f->guard.data = f;
  o = h_options(&f->h);
  r = pp_pool_start(&f->loop, cfg, &o, lf_on_ready, f, &f->h.pool, &d);
  pp_config_free(cfg);
  if (r != 0)
    fail_msg("pp_pool_start: %s: %s", pp_strerror(r), d.message);
  lf_run(f, lf_ready, "ready");
  assert_int_equal(f->ready_status, 0);
}

static void lf_request(lslot_t *s, const char *payload) {
  s->rp_done = 0;
  assert_int_equal(
      pp_request(s->lease, payload, strlen(payload), -1, lf_on_reply, s), 0);
}

static void lf_stop(lface_t *f) {
  pp_pool_stop(f->h.pool, lf_on_closed, f);
  lf_run(f, lf_closed, "close");
  uv_close((uv_handle_t *)&f->guard, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  h_free(&f->h);
}

static void test_fault_loop(void **state) {
  const fault_case_t *fc = *state;
  char payload[128];
  lface_t *f = calloc(1, sizeof(*f));
  int i, slot, other;

  assert_non_null(f);
  lf_start(f, bad_config("per_request", 2));
  for (i = 0; i < 2; i++) {
    f->s[i].f = f;
    assert_int_equal(
        pp_checkout(f->h.pool, NULL, WAIT_MS, lf_on_checkout, &f->s[i]), 0);
  }
  lf_run(f, lf_both_out, "two checkouts");
  assert_int_equal(f->s[0].co_status, 0);
  assert_int_equal(f->s[1].co_status, 0);
  slot = pp_lease_slot(f->s[0].lease);
  other = pp_lease_slot(f->s[1].lease);
  /* The fault and an ordinary request, in flight together. */
  snprintf(payload, sizeof(payload), "{\"cmd\":\"%s\"}", fc->mode);
  lf_request(&f->s[0], payload);
  lf_request(&f->s[1], "{\"cmd\":\"echo\",\"args\":1}");
  lf_run(f, lf_both_replied, "both replies");
  if (f->s[0].rp_status != fc->want)
    fail_msg("%s: got %s (%s), want %s", fc->mode,
             pp_err_name(f->s[0].rp_status), f->s[0].diag,
             pp_err_name(fc->want));
  if (fc->reply)
    assert_string_equal(f->s[0].reply, fc->reply);
  else
    assert_true(f->s[0].diag[0] != '\0');
  assert_int_equal(f->s[1].rp_status, 0);
  assert_string_equal(f->s[1].reply, "1");
  pp_checkin(f->s[0].lease);
  lf_victim_slot = slot;
  lf_run(f, lf_replaced, "the victim's replacement");
  /* The bystander's lease still works. */
  lf_request(&f->s[1], "{\"cmd\":\"echo\",\"args\":2}");
  lf_run(f, lf_other_replied, "the bystander's second reply");
  assert_int_equal(f->s[1].rp_status, 0);
  assert_string_equal(f->s[1].reply, "2");
  pp_checkin(f->s[1].lease);
  check_after_fault(&f->h, fc, slot, other, fc->loop_why);
  lf_stop(f);
  free(f);
}

/* A stray reply arrives while the worker is idle (nobody reads an idle
 * worker's pipe, without a heartbeat): the next request on that worker
 * reads it first and fails with PP_EPROTO; the worker is replaced. */
static void test_stray_reply_next_request(void **state) {
  hpool_t *h = h_open(bad_config("per_request", 2));
  pp_buf_t reply = {0};
  pp_lease_t *lease;
  pp_status_t st;
  static bystander_t b; /* outlives a failure: see live_bystander */
  pp_diag_t d;
  int r, slot;

  (void)state;
  bystander_start(&b, h);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &lease, &d), 0);
  slot = pp_lease_slot(lease);
  assert_int_equal(lcall(lease, "stray_reply", NULL, -1, &reply, &d), 0);
  assert_string_equal(reply.data, "\"stray\"");
  r = lcall(lease, "echo", "5", -1, &reply, &d);
  assert_int_equal(r, PP_EPROTO);
  pp_checkin(lease);
  h_wait(h, PP_TRACE_HELLO, slot, 2, WAIT_MS);
  bystander_end(&b);
  h_status(h, &st);
  assert_int_equal(st.workers[slot].last_exit, PP_EXIT_PROTOCOL);
  pp_status_free(&st);
  all_slots_serve(h, 2);
  pp_buf_free(&reply);
  h_close(h);
}

/* ======================================================= start-up faults */

/* A fault at start aimed at slot 0 (BAD_WORKER_ONLY=0): slot 0 loops to
 * fatal after max_restarts, classified; slot 1 serves all along and the
 * pool never degrades. */
typedef struct start_case {
  const char *mode;
  const char *startup_timeout;
  pp_exit_kind_t exit_kind;
  const char *exit_text;
  pp_trace_type_t why_event; /* the event whose detail says why */
  const char *why;
} start_case_t;

static const start_case_t start_cases[] = {
    {"bad_version", "10s", PP_EXIT_PROTOCOL, "protocol error",
     PP_TRACE_PROTOCOL_ERROR, "unsupported protocol version"},
    {"no_hello", "1s", PP_EXIT_NO_HELLO, "no HELLO within startup_timeout",
     PP_TRACE_KILL, "no HELLO within startup_timeout"},
    {"hello_twice", "10s", PP_EXIT_PROTOCOL, "protocol error",
     PP_TRACE_PROTOCOL_ERROR, "bytes after HELLO"},
    /* Exit 0 before HELLO is a crash like any other. */
    {"exit_before_hello", "10s", PP_EXIT_NO_HELLO, "died before HELLO (exit 0)",
     PP_TRACE_EXIT, "died before HELLO"},
};

static void test_start_fault(void **state) {
  const start_case_t *sc = *state;
  pp_config_t *cfg = one_bad_slot(sc->mode, 2);
  hpool_t *h;
  pp_buf_t reply = {0};
  pp_status_t st;
  static bystander_t b; /* outlives a failure: see live_bystander */
  pp_diag_t d;
  hev_t e;

  /* Short only where the fault needs it: slot 1 must start in time too,
   * on a loaded machine. */
  cfg_set(cfg, "worker.startup_timeout", sc->startup_timeout);
  h = h_open(cfg);
  bystander_start(&b, h);
  assert_int_equal(pp_lease_slot(b.lease), 1);
  h_wait(h, PP_TRACE_FATAL, 0, 1, WAIT_MS);
  bystander_end(&b);
  assert_int_equal(h_count(h, PP_TRACE_SPAWN, 0), 2);
  assert_int_equal(h_count(h, PP_TRACE_SPAWN, 1), 1);
  assert_int_equal(h_count(h, PP_TRACE_DEGRADED, -1), 0);
  e = h_nth(h, sc->why_event, 0, 0);
  if (strstr(e.detail, sc->why) == NULL)
    fail_msg("%s: %s detail '%s', want '%s'", sc->mode,
             pp_trace_name(sc->why_event), e.detail, sc->why);
  h_status(h, &st);
  assert_int_equal(st.state, PP_POOL_READY);
  assert_int_equal(st.workers[0].state, PP_WORKER_FATAL);
  assert_int_equal(st.workers[0].last_exit, sc->exit_kind);
  if (strstr(st.workers[0].last_exit_text, sc->exit_text) == NULL)
    fail_msg("%s: last exit '%s', want '%s'", sc->mode,
             st.workers[0].last_exit_text, sc->exit_text);
  assert_int_equal(st.workers[1].generation, 1);
  assert_int_equal(st.fatal, 1);
  pp_status_free(&st);
  assert_int_equal(pp_call_cmd(h->pool, "echo", "3", &reply, 5000, &d), 0);
  assert_string_equal(reply.data, "3");
  pp_buf_free(&reply);
  h_close(h);
}

/* max_frame both ways with a well-behaved worker: a request over it fails
 * at once with PP_ETOOBIG and is never sent; a reply over it is replaced
 * by the worker with an ERROR (FrameTooBig), and the worker lives on. */
static void test_max_frame_both_ways(void **state) {
  pp_config_t *cfg = hostile_config(1);
  pp_buf_t reply = {0};
  char big[2100];
  pp_diag_t d;
  hpool_t *h;

  (void)state;
  cfg_set(cfg, "worker.max_frame", "1KiB");
  h = h_open(cfg);
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(pp_call(h->pool, big, strlen(big), &reply, -1, &d),
                   PP_ETOOBIG);
  /* A reply of 2000 characters, over 1 KiB. */
  assert_int_equal(pp_call_cmd(h->pool, "big", "2000", &reply, -1, &d),
                   PP_EHANDLER);
  assert_non_null(strstr(reply.data, "FrameTooBig"));
  assert_int_equal(pp_call_cmd(h->pool, "echo", "1", &reply, -1, &d), 0);
  assert_string_equal(reply.data, "1");
  assert_int_equal(h_count(h, PP_TRACE_EXIT, -1), 0);
  assert_int_equal(h_count(h, PP_TRACE_PROTOCOL_ERROR, -1), 0);
  pp_buf_free(&reply);
  h_close(h);
}

/* hostile_handlers.py imports getoutput from subprocess: a public callable
 * in its namespace, but not a handler.  A call for it, from the library or
 * the control socket, is an UnknownCommand and runs nothing; HELLO (and so
 * status) lists only the module's own functions. */
static void test_undeclared_handler(void **state) {
  char dir[] = "/tmp/pp_undeclared_XXXXXX", marker[64], args[128];
  static const char *names[] = {"getoutput", "subprocess", "Popen", "os"};
  pp_buf_t reply = {0};
  pp_status_t st;
  json_t *j, *list;
  pp_diag_t d;
  hpool_t *h;
  size_t i;

  (void)state;
  assert_non_null(mkdtemp(dir));
  snprintf(marker, sizeof(marker), "%s/ran", dir);
  snprintf(args, sizeof(args), "\"touch %s\"", marker);
  h = h_open(hostile_config(1));
  for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    memset(&d, 0, sizeof(d));
    assert_int_equal(pp_call_cmd(h->pool, names[i], args, &reply, -1, &d),
                     PP_EHANDLER);
    assert_true(strncmp(d.message, "UnknownCommand: unknown command", 31) == 0);
    j = json_loads(reply.data, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")),
                        "UnknownCommand");
    list = json_object_get(j, "handlers");
    assert_true(json_array_size(list) > 5);
    json_decref(j);
    assert_null(strstr(reply.data, "\"getoutput\""));
  }
  assert_int_equal(access(marker, F_OK), -1); /* the shell never ran */
  assert_int_equal(pp_pool_status(h->pool, &st), 0);
  assert_non_null(st.handlers);
  assert_non_null(strstr(st.handlers, "\"spawn_child\""));
  assert_null(strstr(st.handlers, "getoutput"));
  pp_status_free(&st);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, -1), 0);
  pp_buf_free(&reply);
  h_close(h);
  rmdir(dir);
}

/* Every reply a worker builds fits worker.max_frame and is JSON: an
 * exception message far over max_frame comes back as a truncated ERROR
 * (PP_EHANDLER, its type kept, the worker alive), a result over it as
 * FrameTooBig naming the size, and a result with a lone surrogate as a
 * ValueError instead of text that is not JSON. */
static void test_replies_fit(void **state) {
  pp_config_t *cfg = hostile_config(1);
  static const char *sizes[] = {"600", "2000", "100000"};
  pp_buf_t reply = {0};
  json_t *j;
  pp_diag_t d;
  hpool_t *h;
  size_t i;

  (void)state;
  cfg_set(cfg, "worker.max_frame", "1KiB");
  h = h_open(cfg);
  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    memset(&d, 0, sizeof(d));
    assert_int_equal(
        pp_call_cmd(h->pool, "raise_long", sizes[i], &reply, -1, &d),
        PP_EHANDLER);
    assert_true(reply.len <= 1024);
    j = json_loads(reply.data, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")),
                        "ValueError");
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    assert_true(strncmp(d.message, "ValueError: mmmm", 16) == 0);
  }
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_call_cmd(h->pool, "big", "5000", &reply, -1, &d),
                   PP_EHANDLER);
  assert_string_equal(d.message, "FrameTooBig: result of 5002 bytes exceeds "
                                 "worker.max_frame (1024 bytes)");
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_call_cmd(h->pool, "surrogate", NULL, &reply, -1, &d),
                   PP_EHANDLER);
  assert_true(strncmp(d.message,
                      "ValueError: result holds a lone surrogate (\\ud800)",
                      49) == 0);
  j = json_loads(reply.data, 0, NULL);
  assert_non_null(j);
  json_decref(j);
  assert_int_equal(pp_call_cmd(h->pool, "echo", "1", &reply, -1, &d), 0);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, -1), 0);
  assert_int_equal(h_count(h, PP_TRACE_PROTOCOL_ERROR, -1), 0);
  pp_buf_free(&reply);
  h_close(h);
}

/* Every slot fails at start: pp_pool_open gives up with PP_EDEGRADED as
 * soon as the last slot turns fatal, not after its timeouts. */
static void test_open_degraded(void **state) {
  pp_config_t *cfg = bad_config("bad_version", 2);
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  uint64_t t0;
  pp_diag_t d;
  hpool_t h;
  int r;

  (void)state;
  cfg_set(cfg, "restart.max_restarts", "1");
  cfg_set(cfg, "worker.startup_timeout", "20s");
  cfg_set(cfg, "checkout.timeout", "20s");
  h_init(&h);
  o = h_options(&h);
  t0 = now_ns();
  r = pp_pool_open(cfg, &o, &pool, &d);
  pp_config_free(cfg);
  assert_int_equal(r, PP_EDEGRADED);
  assert_null(pool);
  assert_true(now_ns() - t0 < 10000000000ull);
  assert_non_null(strstr(d.message, "degraded"));
  assert_int_equal(h_count(&h, PP_TRACE_FATAL, -1), 2);
  assert_int_equal(h_count(&h, PP_TRACE_SPAWN, -1), 4);
  h_free(&h);
}

/* A degraded pool fails checkouts at once, with the reason, whatever the
 * checkout timeout. */
static void test_degraded_fails_at_once(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pp_buf_t reply = {0};
  pp_lease_t *lease;
  pp_status_t st;
  uint64_t t0;
  pp_diag_t d;
  hpool_t *h;
  char *json;

  (void)state;
  cfg_set(cfg, "restart.max_restarts", "0");
  cfg_set(cfg, "checkout.timeout", "20s");
  h = h_open(cfg);
  assert_int_equal(pp_call_cmd(h->pool, "crash", "3", &reply, -1, &d),
                   PP_ECRASHED);
  h_wait(h, PP_TRACE_DEGRADED, -1, 1, WAIT_MS);
  t0 = now_ns();
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_call_cmd(h->pool, "echo", "1", &reply, -1, &d),
                   PP_EDEGRADED);
  assert_non_null(strstr(d.message, "degraded"));
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_lease_acquire(h->pool, NULL, 20000, &lease, &d),
                   PP_EDEGRADED);
  assert_null(lease);
  assert_non_null(strstr(d.message, "degraded"));
  assert_true(now_ns() - t0 < 1000000000ull);
  h_status(h, &st);
  assert_int_equal(st.state, PP_POOL_DEGRADED);
  assert_int_equal(st.fatal, 1);
  assert_int_equal(st.workers[0].state, PP_WORKER_FATAL);
  assert_string_equal(st.workers[0].last_exit_text, "exit 3");
  json = pp_status_to_json(&st);
  assert_non_null(json);
  assert_non_null(strstr(json, "\"state\":\"degraded\""));
  free(json);
  pp_status_free(&st);
  pp_buf_free(&reply);
  h_close(h);
}

/* Crash loops back off per slot: the delay doubles from backoff[0] with
 * each crash within `within`, with jitter (±25%), and the restart really
 * waits that long; the other slot is untouched. */
static void test_backoff_per_slot(void **state) {
  pp_config_t *cfg = one_bad_slot("exit_before_hello", 2);
  static const int nominal[] = {50, 100, 200, 400};
  pp_status_t st;
  static bystander_t b; /* outlives a failure: see live_bystander */
  hev_t restart, spawn;
  hpool_t *h;
  int i;

  (void)state;
  cfg_set(cfg, "restart.backoff", "[50ms, 1s]");
  cfg_set(cfg, "restart.max_restarts", "4");
  h = h_open(cfg);
  bystander_start(&b, h);
  h_wait(h, PP_TRACE_FATAL, 0, 1, WAIT_MS);
  bystander_end(&b);
  assert_int_equal(h_count(h, PP_TRACE_RESTART, 0), 4);
  assert_int_equal(h_count(h, PP_TRACE_SPAWN, 0), 5);
  for (i = 0; i < 4; i++) {
    restart = h_nth(h, PP_TRACE_RESTART, 0, (size_t)i);
    spawn = h_nth(h, PP_TRACE_SPAWN, 0, (size_t)i + 1);
    if (restart.code < nominal[i] * 3 / 4 || restart.code > nominal[i] * 5 / 4)
      fail_msg("restart %d: delay %d ms, want %d ms ± 25%%", i + 1,
               restart.code, nominal[i]);
    /* The restart waited about that long (libuv's timers count from the
     * loop's cached time, which may be a little older than the event). */
    if (spawn.ts_ns - restart.ts_ns + 10000000ull <
        (uint64_t)restart.code * 900000ull)
      fail_msg("restart %d came %llu ms after a delay of %d ms", i + 1,
               (unsigned long long)((spawn.ts_ns - restart.ts_ns) / 1000000),
               restart.code);
  }
  assert_int_equal(h_count(h, PP_TRACE_RESTART, 1), 0);
  h_status(h, &st);
  assert_int_equal(st.workers[0].restarts, 4);
  assert_int_equal(st.workers[1].restarts, 0);
  pp_status_free(&st);
  h_close(h);
}

/* Crashes further apart than restart.within never add up to fatal. */
static void test_restart_window(void **state) {
  pp_config_t *cfg = one_bad_slot("exit_before_hello", 2);
  hpool_t *h;

  (void)state;
  cfg_set(cfg, "restart.within", "100ms");
  cfg_set(cfg, "restart.backoff", "[400ms, 400ms]");
  h = h_open(cfg);
  h_wait(h, PP_TRACE_SPAWN, 0, 4, WAIT_MS);
  assert_int_equal(h_count(h, PP_TRACE_FATAL, -1), 0);
  h_close(h);
}

/* ============================================================== timeouts */

/* A handler that ignores SIGTERM, past request_timeout: SIGTERM to its
 * group, then SIGKILL once kill_grace has passed. */
static void test_timeout_sigkill_step(void **state) {
  pp_config_t *cfg = hostile_config(2);
  pp_buf_t reply = {0};
  pp_lease_t *victim;
  pp_status_t st;
  static bystander_t b; /* outlives a failure: see live_bystander */
  hev_t term, kill9;
  pp_diag_t d;
  hpool_t *h;
  int slot;

  (void)state;
  cfg_set(cfg, "worker.request_timeout", "300ms");
  cfg_set(cfg, "worker.kill_grace", "400ms");
  h = h_open(cfg);
  bystander_start(&b, h);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &victim, &d), 0);
  slot = pp_lease_slot(victim);
  assert_int_equal(lcall(victim, "stubborn", "30", -1, &reply, &d),
                   PP_ETIMEDOUT);
  assert_non_null(strstr(d.message, "timed out"));
  pp_checkin(victim);
  h_wait(h, PP_TRACE_EXIT, slot, 1, WAIT_MS);
  h_wait(h, PP_TRACE_HELLO, slot, 2, WAIT_MS);
  bystander_end(&b);
  term = h_nth(h, PP_TRACE_KILL, slot, 0);
  kill9 = h_nth(h, PP_TRACE_KILL, slot, 1);
  assert_int_equal(term.code, SIGTERM);
  assert_int_equal(kill9.code, SIGKILL);
  assert_non_null(strstr(kill9.detail, "kill_grace"));
  assert_true(kill9.ts_ns - term.ts_ns >= 350000000ull); /* ~kill_grace */
  h_status(h, &st);
  assert_int_equal(st.workers[slot].last_exit, PP_EXIT_TIMEOUT);
  assert_string_equal(st.workers[slot].last_exit_text, "killed for timeout");
  assert_int_equal(st.workers[slot].last_exit_signal, SIGKILL);
  pp_status_free(&st);
  all_slots_serve(h, 2);
  pp_buf_free(&reply);
  h_close(h);
}

/* The call's own deadline, shorter than request_timeout: PP_ETIMEDOUT at
 * the deadline.  The worker's SIGTERM handler ends it at once (no need
 * for the SIGKILL step: one KILL event, the exit well before
 * kill_grace). */
static void test_timeout_call_deadline(void **state) {
  pp_config_t *cfg = hostile_config(2);
  pp_buf_t reply = {0};
  pp_lease_t *victim;
  pp_status_t st;
  uint64_t t0;
  pp_diag_t d;
  hpool_t *h;
  hev_t term, ex;
  int slot;

  (void)state;
  cfg_set(cfg, "worker.request_timeout", "1m");
  cfg_set(cfg, "worker.kill_grace", "20s");
  h = h_open(cfg);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &victim, &d), 0);
  slot = pp_lease_slot(victim);
  t0 = now_ns();
  assert_int_equal(lcall(victim, "sleep", "30", 200, &reply, &d), PP_ETIMEDOUT);
  assert_true(now_ns() - t0 >= 200000000ull);
  assert_true(now_ns() - t0 < 5000000000ull);
  pp_checkin(victim);
  h_wait(h, PP_TRACE_EXIT, slot, 1, WAIT_MS);
  term = h_nth(h, PP_TRACE_KILL, slot, 0);
  ex = h_nth(h, PP_TRACE_EXIT, slot, 0);
  assert_int_equal(term.code, SIGTERM);
  assert_int_equal(h_count(h, PP_TRACE_KILL, slot), 1);
  assert_true(ex.ts_ns - term.ts_ns < 10000000000ull);
  h_status(h, &st);
  assert_int_equal(st.workers[slot].last_exit, PP_EXIT_TIMEOUT);
  pp_status_free(&st);
  pp_buf_free(&reply);
  h_close(h);
}

/* ====================================================== floods and forks */

static long statm_rss_kb(void) {
  unsigned long size = 0, res = 0;
  FILE *f = fopen("/proc/self/statm", "r");

  if (f == NULL)
    return -1;
  if (fscanf(f, "%lu %lu", &size, &res) != 2)
    res = 0;
  fclose(f);
  return (long)(res * (unsigned long)sysconf(_SC_PAGESIZE) / 1024);
}

/* The peak RSS since the last peak_reset(), or the current RSS where the
 * kernel cannot reset the peak. */
static int peak_resettable;

static void peak_reset(void) {
  int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  peak_resettable = fd >= 0 && write(fd, "5", 1) == 1;
  if (fd >= 0)
    close(fd);
}

static long peak_rss_kb(void) {
  char line[256];
  long kb = -1;
  FILE *f;

  if (!peak_resettable)
    return statm_rss_kb();
  f = fopen("/proc/self/status", "r");
  if (f == NULL)
    return statm_rss_kb();
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

static uint64_t flood_bytes(void) {
  return (uint64_t)env_int("HOSTILE_FLOOD_MB", 100) << 20;
}

/* 100 MB on stdout or stderr with no newline: the pool drains the pipe,
 * logs it in bounded pieces, its memory stays bounded, the worker answers
 * afterwards and the bystander notices nothing.  Every byte reaches the
 * log. */
static void test_flood(void **state) {
  const char *stream = *state;
  int is_err = strcmp(stream, "stderr") == 0;
  hpool_t *h = h_open(hostile_config(2));
  uint64_t total = flood_bytes(), got;
  pp_buf_t reply = {0};
  pp_lease_t *victim;
  char args[128], want[32];
  long base_kb, peak_kb;
  static bystander_t b; /* outlives a failure: see live_bystander */
  pp_diag_t d;
  int slot;

  bystander_start(&b, h);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &victim, &d), 0);
  slot = pp_lease_slot(victim);
  base_kb = statm_rss_kb();
  peak_reset();
  snprintf(args, sizeof(args), "{\"stream\":\"%s\",\"bytes\":%llu}", stream,
           (unsigned long long)total);
  assert_int_equal(lcall(victim, "flood", args, 120000, &reply, &d), 0);
  snprintf(want, sizeof(want), "%llu", (unsigned long long)total);
  assert_string_equal(reply.data, want);
  assert_int_equal(lcall(victim, "echo", "\"still here\"", 10000, &reply, &d),
                   0);
  assert_string_equal(reply.data, "\"still here\"");
  peak_kb = peak_rss_kb();
  if (peak_kb - base_kb > 64 * 1024)
    fail_msg("RSS grew by %ld KiB during the flood (from %ld KiB)",
             peak_kb - base_kb, base_kb);
  pp_checkin(victim);
  bystander_end(&b);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, -1), 0);
  pp_pool_close(h->pool);
  /* After the close every line has been logged: nothing was lost. */
  got = is_err ? h->err_x[slot] : h->out_x[slot];
  if (got != total)
    fail_msg("%s: %llu of %llu bytes reached the log", stream,
             (unsigned long long)got, (unsigned long long)total);
  assert_true(h->longest <= 4096 + 64);
  h_free(h);
  free(h);
  pp_buf_free(&reply);
}

/* A handler forks and the worker exits; the child lingers holding every
 * pipe, and has disarmed its parent-death signal.  The client gets
 * PP_ECRASHED naming the exit, the slot restarts, the bystander sees
 * nothing, the close is not held up by the pipes the child holds, and the
 * child does not outlive the pool. */
static void test_fork_exit(void **state) {
  pp_config_t *cfg = hostile_config(2);
  hpool_t *h;
  pp_buf_t reply = {0};
  pp_lease_t *victim;
  pp_status_t st;
  static bystander_t b; /* outlives a failure: see live_bystander */
  pp_diag_t d;
  uint64_t t0;
  int slot, child;

  (void)state;
  /* Bounds the call if the exit went unnoticed (a failure). */
  cfg_set(cfg, "worker.request_timeout", "5s");
  h = h_open(cfg);
  bystander_start(&b, h);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &victim, &d), 0);
  slot = pp_lease_slot(victim);
  assert_int_equal(lcall(victim, "fork_exit", "{\"code\":7,\"defeat\":true}",
                         -1, &reply, &d),
                   PP_ECRASHED);
  assert_non_null(strstr(d.message, "exit 7"));
  pp_checkin(victim);
  h_wait(h, PP_TRACE_HELLO, slot, 2, WAIT_MS);
  bystander_end(&b);
  h_status(h, &st);
  assert_int_equal(st.workers[slot].last_exit, PP_EXIT_NORMAL);
  assert_int_equal(st.workers[slot].last_exit_code, 7);
  pp_status_free(&st);
  all_slots_serve(h, 2);
  uv_mutex_lock(&h->mu);
  child = h->lingering_pid;
  uv_mutex_unlock(&h->mu);
  assert_true(child > 0);
  t0 = now_ns();
  h_close(h);
  pp_buf_free(&reply);
  assert_true(now_ns() - t0 < 5000000000ull);
  assert_gone(child, 2000, "the forked child of an exited worker");
}

/* The same child, escaped into a session of its own (out of reach of
 * the group kill, so it keeps the reply pipe open after the exit): the
 * caller still learns of the exit at once from the process, not at the
 * request timeout. */
static void test_fork_exit_escaped(void **state) {
  pp_config_t *cfg = hostile_config(1);
  pp_buf_t reply = {0};
  uint64_t t0;
  pp_diag_t d;
  hpool_t *h;
  int r, child;

  (void)state;
  cfg_set(cfg, "worker.request_timeout", "5s");
  h = h_open(cfg);
  t0 = now_ns();
  r = pp_call_cmd(h->pool, "fork_exit",
                  "{\"code\":7,\"defeat\":true,\"setsid\":true}", &reply, -1,
                  &d);
  uv_mutex_lock(&h->mu);
  child = h->lingering_pid;
  uv_mutex_unlock(&h->mu);
  if (child > 0)
    kill(child, SIGKILL); /* nobody else will */
  if (r != PP_ECRASHED)
    fail_msg("got %s (%s) after %llu ms, want PP_ECRASHED", pp_err_name(r),
             d.message, (unsigned long long)((now_ns() - t0) / 1000000));
  assert_non_null(strstr(d.message, "exit 7"));
  assert_true(now_ns() - t0 < 4000000000ull);
  pp_buf_free(&reply);
  h_close(h);
}

/* An ordinary forked child (it keeps the parent-death signal that
 * portpool_worker gives children forked by handlers) dies with its
 * worker. */
static void test_fork_child_dies_with_worker(void **state) {
  hpool_t *h = h_open(hostile_config(1));
  pp_buf_t reply = {0};
  pp_diag_t d;
  int child;

  (void)state;
  assert_int_equal(
      pp_call_cmd(h->pool, "fork_exit", "{\"code\":7}", &reply, -1, &d),
      PP_ECRASHED);
  uv_mutex_lock(&h->mu);
  child = h->lingering_pid;
  uv_mutex_unlock(&h->mu);
  assert_true(child > 0);
  assert_gone(child, 2000, "the forked child of an exited worker");
  h_wait(h, PP_TRACE_HELLO, 0, 2, WAIT_MS);
  pp_buf_free(&reply);
  h_close(h);
}

/* ---- an escaped child that floods the exited worker's stderr */

typedef struct spew {
  hpool_t *h;
  pp_lease_t *lease;
  int slot;
  atomic_int reaped, done;
  int status, status_r;
  int call_r;
  pp_diag_t d;
} spew_t;

/* The "reap" fault point: the victim has exited, its stderr is about to
 * be drained (loop thread, no lock). */
static void spew_hook(pp_pool_t *pool, const char *point, void *data) {
  spew_t *s = data;

  (void)pool;
  if (strcmp(point, "reap") != 0)
    return;
  uv_mutex_lock(&s->h->mu);
  atomic_store(&s->reaped, 1);
  uv_cond_broadcast(&s->h->cv);
  uv_mutex_unlock(&s->h->mu);
}

/* While the victim's stderr is drained and the bystander has not
 * finished, each line logged waits until the child has written more: the
 * child stays ahead of the reader, however fast the reader is (a failure
 * bound of a second per line, should the child stop). */
static void spew_err_hook(pp_pool_t *pool, int slot, void *data) {
  spew_t *s = data;
  struct pollfd p;

  if (slot != s->slot || !atomic_load(&s->reaped) || atomic_load(&s->done))
    return;
  /* The log callback runs with the pool lock held. */
  if ((p.fd = pp_test_stderr_fd(pool, slot)) < 0)
    return;
  p.events = POLLIN;
  poll(&p, 1, 1000);
}

static void spew_victim(void *arg) {
  spew_t *s = arg;
  pp_buf_t reply = {0};

  s->call_r = lcall(s->lease, "fork_exit",
                    "{\"code\":7,\"defeat\":true,\"setsid\":true,"
                    "\"spew\":true}",
                    -1, &reply, &s->d);
  pp_buf_free(&reply);
}

/* Another worker's call and a status snapshot, then done. */
static void spew_bystander(void *arg) {
  spew_t *s = arg;
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_diag_t d;
  int r;

  r = lcall(s->lease, "echo", "\"bystander\"", 10000, &reply, &d);
  s->status_r = pp_pool_status(s->h->pool, &st);
  if (s->status_r == 0)
    pp_status_free(&st);
  pp_buf_free(&reply);
  uv_mutex_lock(&s->h->mu);
  s->status = r;
  atomic_store(&s->done, 1);
  uv_cond_broadcast(&s->h->cv);
  uv_mutex_unlock(&s->h->mu);
}

/* A handler forks a child that leaves the worker's process group and
 * writes to the worker's stderr as fast as it can; then the worker exits.
 * Draining that pipe is bounded and holds no lock across reads: another
 * worker's call and a status snapshot complete while the child still
 * writes (the test kills it only afterwards). */
static void test_escaped_child_spews(void **state) {
  pp_config_t *cfg = hostile_config(2);
  uv_thread_t victim, bystander;
  spew_t v, b;
  uint64_t deadline;
  int child, ok;

  (void)state;
  cfg_set(cfg, "worker.request_timeout", "5s");
  memset(&v, 0, sizeof(v));
  memset(&b, 0, sizeof(b));
  v.h = b.h = h_open(cfg);
  assert_int_equal(pp_lease_acquire(v.h->pool, NULL, WAIT_MS, &v.lease, &v.d),
                   0);
  assert_int_equal(pp_lease_acquire(v.h->pool, NULL, WAIT_MS, &b.lease, &b.d),
                   0);
  v.slot = pp_lease_slot(v.lease);
  pp_test_fault_hook(v.h->pool, spew_hook, &v);
  uv_mutex_lock(&v.h->mu);
  v.h->err_hook_data = &v;
  v.h->err_hook = spew_err_hook;
  uv_mutex_unlock(&v.h->mu);
  assert_int_equal(uv_thread_create(&victim, spew_victim, &v), 0);
  /* The worker has exited and its escaped child is known (its first line
   * reaches the log while the worker lives, or in the drain). */
  deadline = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
  uv_mutex_lock(&v.h->mu);
  while ((!atomic_load(&v.reaped) || v.h->lingering_pid <= 0) &&
         now_ns() < deadline)
    uv_cond_timedwait(&v.h->cv, &v.h->mu, 10000000ull);
  child = v.h->lingering_pid;
  uv_mutex_unlock(&v.h->mu);
  assert_true(atomic_load(&v.reaped));
  assert_true(child > 0);
  assert_int_equal(uv_thread_create(&bystander, spew_bystander, &b), 0);
  deadline = now_ns() + 10000000000ull * (uint64_t)test_time_scale();
  uv_mutex_lock(&v.h->mu);
  while (!atomic_load(&b.done) && now_ns() < deadline)
    uv_cond_timedwait(&v.h->cv, &v.h->mu, 10000000ull);
  ok = atomic_load(&b.done);
  uv_mutex_unlock(&v.h->mu);
  atomic_store(&v.done, 1); /* the log hook stops holding the reader back */
  kill(child, SIGKILL);     /* nobody else will; a frozen pool thaws */
  uv_thread_join(&bystander);
  uv_thread_join(&victim);
  pp_test_fault_hook(v.h->pool, NULL, NULL);
  uv_mutex_lock(&v.h->mu);
  v.h->err_hook = NULL;
  uv_mutex_unlock(&v.h->mu);
  if (!ok)
    fail_msg("the pool froze while an escaped child flooded the stderr of "
             "an exited worker");
  assert_int_equal(b.status, 0);
  assert_int_equal(b.status_r, 0);
  assert_int_equal(v.call_r, PP_ECRASHED);
  pp_checkin(v.lease);
  pp_checkin(b.lease);
  h_close(v.h);
}

/* ================================================================= main */

/* Table-driven tests, each named after its case. */
#define CASE(name, fn, table, i)                                               \
  { name, fn, NULL, teardown, (void *)&table[i] }
#define FAULT(i, n)                                                            \
  CASE("fault_blocking_" n, test_fault_blocking, fault_cases, i)
#define LFAULT(i, n) CASE("fault_loop_" n, test_fault_loop, fault_cases, i)
#define START(i, n) CASE("start_fault_" n, test_start_fault, start_cases, i)

static const char flood_stdout[] = "stdout", flood_stderr[] = "stderr";

/* argv[1], when given, is a cmocka test filter (a name or a pattern). */
int main(int argc, char **argv) {
  const struct CMUnitTest faults[] = {
      FAULT(0, "garbage"),
      FAULT(1, "oversize"),
      FAULT(2, "unknown_type"),
      FAULT(3, "unknown_id"),
      FAULT(4, "dup_reply"),
      FAULT(5, "close_fd4"),
      FAULT(6, "exit_mid_frame"),
      FAULT(7, "hang"),
      LFAULT(0, "garbage"),
      LFAULT(1, "oversize"),
      LFAULT(2, "unknown_type"),
      LFAULT(3, "unknown_id"),
      LFAULT(4, "dup_reply"),
      LFAULT(5, "close_fd4"),
      LFAULT(6, "exit_mid_frame"),
      LFAULT(7, "hang"),
      cmocka_unit_test_teardown(test_stray_reply_next_request, teardown),
      START(0, "bad_version"),
      START(1, "no_hello"),
      START(2, "hello_twice"),
      START(3, "exit_before_hello"),
      cmocka_unit_test_teardown(test_max_frame_both_ways, teardown),
      cmocka_unit_test_teardown(test_undeclared_handler, teardown),
      cmocka_unit_test_teardown(test_replies_fit, teardown),
      cmocka_unit_test_teardown(test_open_degraded, teardown),
      cmocka_unit_test_teardown(test_degraded_fails_at_once, teardown),
      cmocka_unit_test_teardown(test_backoff_per_slot, teardown),
      cmocka_unit_test_teardown(test_restart_window, teardown),
      cmocka_unit_test_teardown(test_timeout_sigkill_step, teardown),
      cmocka_unit_test_teardown(test_timeout_call_deadline, teardown),
      {"flood_stdout", test_flood, NULL, teardown, (void *)flood_stdout},
      {"flood_stderr", test_flood, NULL, teardown, (void *)flood_stderr},
      cmocka_unit_test_teardown(test_fork_exit, teardown),
      cmocka_unit_test_teardown(test_fork_exit_escaped, teardown),
      cmocka_unit_test_teardown(test_fork_child_dies_with_worker, teardown),
      cmocka_unit_test_teardown(test_escaped_child_spews, teardown),
  };

  signal(SIGPIPE, SIG_IGN);
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests_name("faults", faults, NULL, NULL);
}
