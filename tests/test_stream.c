/* test_stream.c -- streamed calls (pp_call_opts_t.on_chunk) as a table
 * over the five faces of a call: chunks in order and then the return
 * value, bytes and JSON chunks, a plain handler under a streamed call, a
 * stream handler under a plain one, a stream stopped by its on_chunk,
 * cancelled by a token or past its timeout (the generator is closed: the
 * pool goes quiet, and the Python handler's finally runs), and a slow
 * consumer holding the handler back with bounded memory.  Run on the
 * python adapter and again on the mock (PP_TEST_ADAPTER=mock), whose
 * built-in count streams. */
#include "faces.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int mock;
static char marks[128];

typedef struct stream {
  call_t c;
  int stop_at;          /* on_chunk returns 1 at this chunk (1-based) */
  int cancel_at;        /* ... fires token at this one */
  pp_cancel_t *token;   /* the call's */
  int n;                /* chunks seen */
  int binary;           /* ... of them bytes */
  size_t bytes;         /* their total size */
  char seen[256];       /* the JSON ones joined by ',' */
  int pid;              /* flood: the worker to watch at the first chunk */
  const char *progress; /* flood's progress file */
  int begun;            /* flood: items begun while the first was held */
  int cancelled;        /* what pp_cancel returned */
  int hold_each;        /* wait for the worker to block at every chunk */
  int idle_at_first;    /* at the first chunk, wait for the worker idle */
  int checkin_at;       /* F_REQUEST: check the lease in at this chunk */
  int late;             /* chunks that came after the call's end */
  int closed; /* each_face: generators closed once the pool is quiet */
} stream_t;

/* Wait until pid is asleep in write(2) or writev(2) (its pipe full;
 * idle: in read(2) of fd 3, waiting for a request): 0, or -1 past a guard
 * that fires only on failure (shorter than the call's, so the test says
 * which).  The state is read from /proc. */
static int wait_in_syscall(int pid, int idle) {
  char path[64], line[64], w1[16], w2[16];
  uint64_t end = uv_hrtime() + 30000000000ull * (uint64_t)test_time_scale();
  FILE *f;

  snprintf(path, sizeof(path), "/proc/%d/syscall", pid);
  snprintf(w1, sizeof(w1), "%d ", idle ? (int)SYS_read : (int)SYS_write);
  snprintf(w2, sizeof(w2), idle ? "%d 0x3 " : "%d ",
           idle ? (int)SYS_read : (int)SYS_writev);
  for (;;) {
    if ((f = fopen(path, "r")) == NULL)
      return -1;
    if (fgets(line, sizeof(line), f) == NULL)
      line[0] = '\0';
    fclose(f);
    if ((!idle && strncmp(line, w1, strlen(w1)) == 0) ||
        strncmp(line, w2, strlen(w2)) == 0)
      return 0;
    if (uv_hrtime() > end) {
      print_error("worker %d never %s (%s)\n", pid,
                  idle ? "went idle" : "blocked writing its stream", line);
      return -1;
    }
    /* A state with no event to wait on: look again, yielding the CPU to
     * the worker on its way there (no sleep: the guard above is the only
     * bound). */
    sched_yield();
  }
}

static int on_chunk(const char *chunk, size_t len, int binary, void *data) {
  stream_t *s = data;
  size_t used = strlen(s->seen);
  char text[32];
  FILE *f;

  uv_mutex_lock(&s->c.mu);
  s->late += s->c.ends > 0;
  uv_mutex_unlock(&s->c.mu);
  s->n++;
  s->bytes += len;
  if (binary) {
    s->binary++;
  } else if (used + len + 2 < sizeof(s->seen)) {
    snprintf(s->seen + used, sizeof(s->seen) - used, "%s%.*s", used ? "," : "",
             (int)len, chunk);
  }
  if (s->progress && s->n == 1) {
    /* Hold the first chunk until the handler waits for us (this may be
     * the loop thread: no cmocka assertion here). */
    s->begun = -1;
    if (wait_in_syscall(s->pid, 0) == 0 &&
        (f = fopen(s->progress, "r")) != NULL) {
      if (fgets(text, sizeof(text), f))
        s->begun = atoi(text);
      fclose(f);
    }
  }
  /* These may run on the loop thread: no cmocka assertion here; a wait
   * that fails shows as the call's own outcome. */
  if (s->hold_each)
    (void)wait_in_syscall(s->pid, 0);
  if (s->idle_at_first && s->n == 1)
    (void)wait_in_syscall(s->pid, 1);
  if (s->checkin_at && s->n == s->checkin_at) {
    s->c.checked_in = 1;
    pp_checkin(s->c.lease);
  }
  if (s->cancel_at && s->n == s->cancel_at)
    s->cancelled = pp_cancel(s->token);
  return s->stop_at && s->n == s->stop_at;
}

static pp_pool_t *pool_open(rec_t *rec, int depth, const char *death) {
  pp_config_t *cfg = python_config("contract_handlers.py", 1);
  pp_pool_options_t o = rec_options(rec);
  pp_pool_t *pool;
  pp_diag_t d;
  char v[16];

  if (mock)
    cfg_set(cfg, "adapter", "mock");
  snprintf(v, sizeof(v), "%d", depth);
  cfg_set(cfg, "worker.pipeline_depth", v);
  cfg_set(cfg, "worker.request_timeout", "5m");
  cfg_set(cfg, "checkout.timeout", "60s");
  if (death)
    cfg_set(cfg, "on_client_death", death);
  rec_init(rec);
  if (pp_pool_open(cfg, &o, &pool, &d) != 0)
    fail_msg("pp_pool_open: %s", d.message);
  pp_config_free(cfg);
  return pool;
}

/* Quiet (a stream still running would keep it busy), still serving, and
 * closed. */
static void pool_close(pp_pool_t *pool, rec_t *rec) {
  pp_buf_t reply = {0};
  pp_diag_t d;

  if (pp_pool_quiesce(pool, 60000 * test_time_scale(), &d) != 0)
    fail_msg("not quiet: %s", d.message);
  assert_int_equal(
      pp_call_cmd(pool, mock ? "count" : "setups", "0", &reply, -1, &d),
      mock ? PP_EHANDLER : 0);
  pp_buf_free(&reply);
  pp_pool_close(pool);
  rec_free(rec);
}

/* Run one streamed call on face f and wait for its end. */
static void stream_run(stream_t *s, pp_pool_t *pool, face_t f,
                       const char *payload, int64_t timeout_ms) {
  call_prepare(&s->c, pool, f, payload, timeout_ms, s->token);
  s->c.opts.on_chunk = on_chunk;
  s->c.opts.chunk_data = s;
  call_go(&s->c);
  call_wait(&s->c);
}

static void stream_init(stream_t *s) { memset(s, 0, sizeof(*s)); }

/* How many lines of the marks file start with what. */
static int count_marks(const char *what) { return marks_count(marks, what); }

/* The endless stream: Python's yields until closed; the mock's count runs
 * long enough. */
static const char *endless(void) {
  return mock ? "{\"cmd\":\"count\",\"args\":100000000}"
              : "{\"cmd\":\"endless\",\"args\":null}";
}

static int worker_pid(pp_pool_t *pool) {
  pp_status_t st;
  int pid;

  assert_int_equal(pp_pool_status(pool, &st), 0);
  pid = st.workers[0].pid;
  pp_status_free(&st);
  return pid;
}

/* One case of a stream, on one face, with its pool (one worker; two,
 * pipelined, for F_PIPE) and a stream set up; it leaves s->closed to how
 * many generators must have been closed (Python's finally ran) once the
 * pool is quiet, which it cannot be while a stream runs on. */
typedef void (*face_case_fn)(stream_t *s, pp_pool_t *pool, face_t f, void *arg);

static void each_face(const char *death, face_case_fn fn, void *arg) {
  stream_t s;
  rec_t rec;
  int f;

  for (f = 0; f < F_N; f++) {
    pp_pool_t *pool = pool_open(&rec, f == F_PIPE ? 2 : 1, death);

    unlink(marks);
    stream_init(&s);
    fn(&s, pool, (face_t)f, arg);
    call_free(&s.c);
    pool_close(pool, &rec);
    if (s.token)
      pp_cancel_free(s.token);
    if (!mock)
      assert_int_equal(count_marks("closed"), s.closed);
  }
}

/* Chunks in order, then the return value; bytes items and an async
 * generator's too. */
static void chunks_case(stream_t *s, pp_pool_t *pool, face_t f, void *arg) {
  (void)arg;
  stream_run(s, pool, f, "{\"cmd\":\"count\",\"args\":5}", -1);
  assert_int_equal(s->c.status, 0);
  assert_int_equal(s->n, 5);
  assert_string_equal(s->seen, "0,1,2,3,4");
  assert_string_equal(s->c.reply, "\"counted\"");
  if (mock)
    return;
  call_free(&s->c);
  stream_init(s);
  stream_run(s, pool, f, "{\"cmd\":\"count\",\"args\":{\"bytes\":4}}", -1);
  assert_int_equal(s->c.status, 0);
  assert_int_equal(s->binary, 4);
  assert_int_equal(s->bytes, 12);
  call_free(&s->c);
  stream_init(s);
  stream_run(s, pool, f, "{\"cmd\":\"ticks\",\"args\":3}", -1);
  assert_int_equal(s->c.status, 0);
  assert_string_equal(s->seen, "\"tick 0\",\"tick 1\",\"tick 2\"");
  assert_string_equal(s->c.reply, "null");
}

static void test_chunks(void **state) {
  (void)state;
  each_face(NULL, chunks_case, NULL);
}
/* A handler that is not a generator just replies to a streamed call; a
 * generator under a plain call is an error that says what to do. */
static void plain_case(stream_t *s, pp_pool_t *pool, face_t f, void *arg) {
  (void)arg;
  stream_run(s, pool, f,
             mock ? "{\"cmd\":\"echo\",\"args\":1}"
                  : "{\"cmd\":\"setups\",\"args\":null}",
             -1);
  assert_int_equal(s->c.status, 0);
  assert_int_equal(s->n, 0);
  assert_string_equal(s->c.reply, "1");
}

static void test_kinds_mismatch(void **state) {
  pp_buf_t reply = {0};
  pp_diag_t d;
  rec_t rec;
  pp_pool_t *pool;

  (void)state;
  each_face(NULL, plain_case, NULL);
  pool = pool_open(&rec, 1, NULL);
  assert_int_equal(pp_call_cmd(pool, "count", "3", &reply, -1, &d),
                   PP_EHANDLER);
  assert_non_null(strstr(d.message, "TypeError"));
  assert_non_null(strstr(d.message, "take a stream"));
  pp_buf_free(&reply);
  pool_close(pool, &rec);
}

/* A stream ended early: its generator was closed (Python's finally ran,
 * once per stream), and the pool went quiet, which it cannot while a
 * stream runs on. */
static void assert_closed(int streams) {
  if (!mock)
    assert_int_equal(count_marks("closed"), streams);
}

static void stop_case(stream_t *s, pp_pool_t *pool, face_t f, void *arg) {
  (void)arg;
  s->stop_at = 3;
  stream_run(s, pool, f, endless(), -1);
  assert_int_equal(s->c.status, PP_ECANCELED);
  assert_non_null(strstr(s->c.msg, "stopped by its on_chunk"));
  assert_int_equal(s->n, 3);
  assert_string_equal(s->seen, "0,1,2");
  s->closed = 1;
}

static void test_stop(void **state) {
  (void)state;
  each_face(NULL, stop_case, NULL);
}
static void cancel_case(stream_t *s, pp_pool_t *pool, face_t f, void *arg) {
  (void)arg;
  assert_int_equal(pp_cancel_new(pool, &s->token), 0);
  s->cancel_at = 2;
  stream_run(s, pool, f, endless(), -1);
  assert_int_equal(s->cancelled, 1);
  assert_int_equal(s->c.status, PP_ECANCELED);
  assert_non_null(strstr(s->c.msg, "cancelled"));
  /* Not one chunk after the cancel, even read ahead. */
  assert_int_equal(s->n, 2);
  s->closed = 1;
}

static void test_cancel_token(void **state) {
  (void)state;
  each_face(NULL, cancel_case, NULL);
}
/* timeout_ms bounds the whole stream.  A one-shot call's worker is left as
 * on_client_death says (cancel: the generator is closed); a lease call's
 * timeout is its request's, past which its worker is replaced. */
static void deadline_case(stream_t *s, pp_pool_t *pool, face_t f, void *arg) {
  (void)arg;
  stream_run(s, pool, f, endless(), 200 * test_time_scale());
  assert_int_equal(s->c.status, PP_ETIMEDOUT);
  s->closed = f != F_LEASE && f != F_REQUEST;
}

static void test_deadline(void **state) {
  (void)state;
  each_face("cancel", deadline_case, NULL);
}
/* A consumer that holds its first chunk: the handler waits at its next
 * write, a few items in, instead of running ahead into memory; every item
 * still arrives once it takes them. */
static void backpressure_case(stream_t *s, pp_pool_t *pool, face_t f,
                              void *arg) {
  char payload[256];

  s->pid = worker_pid(pool);
  s->progress = arg;
  /* 40 items of 256 KiB: 10 MiB that must not pile up anywhere. */
  snprintf(payload, sizeof(payload),
           "{\"cmd\":\"flood\",\"args\":{\"n\":40,\"size\":262144,"
           "\"progress\":\"%s\"}}",
           s->progress);
  stream_run(s, pool, f, payload, -1);
  assert_int_equal(s->c.status, 0);
  assert_string_equal(s->c.reply, "40");
  assert_int_equal(s->n, 40);
  assert_int_equal(s->bytes, 40u * 262144u);
  /* The one held, the one blocked in write(2), and at most one more
   * that a read took up as the first was decoded. */
  print_message("%s: %d items begun while the first was held\n", face_name[f],
                s->begun);
  assert_true(s->begun >= 2 && s->begun <= 3);
}

static void test_backpressure(void **state) {
  char progress[128];

  (void)state;
  snprintf(progress, sizeof(progress), "/tmp/pp-stream-progress-%d",
           (int)getpid());
  each_face(NULL, backpressure_case, progress);
  unlink(progress);
}
/* A task whose stream runs on a lease of its client, cancelled from its
 * on_chunk (any thread may): the client is dead, so the stream stops at
 * once, whatever on_client_death says (finish here), and the generator
 * is closed. */
typedef struct task_stream {
  pp_pool_t *pool;
  pp_task_t *task; /* set by the task itself: on_chunk runs in it */
  int n, status;
} task_stream_t;

static int task_on_chunk(const char *chunk, size_t len, int binary,
                         void *data) {
  task_stream_t *t = data;

  (void)chunk;
  (void)len;
  (void)binary;
  if (++t->n == 2)
    pp_task_cancel(t->task);
  return 0;
}

static void task_main(pp_task_t *task, pp_client_t *client, void *data) {
  task_stream_t *t = data;
  pp_call_opts_t o = {.timeout_ms = -1, .on_chunk = task_on_chunk};
  const char *req = endless();
  pp_lease_t *lease;
  pp_diag_t d;

  t->task = task;
  o.chunk_data = t;
  t->status = pp_lease_acquire(t->pool, client, -1, &lease, &d);
  if (t->status != 0)
    return;
  t->status = pp_lease_call_with(lease, req, strlen(req), &o, NULL, &d);
  pp_checkin(lease);
}

static void test_client_dies(void **state) {
  task_stream_t t = {0};
  pp_task_t *task;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 1, NULL);

  (void)state;
  unlink(marks);
  t.pool = pool;
  assert_int_equal(pp_task_spawn(pool, task_main, &t, &task), 0);
  assert_int_equal(pp_task_join(task), PP_ECANCELED);
  assert_int_equal(t.status, PP_ECANCELED);
  assert_int_equal(t.n, 2);
  pool_close(pool, &rec);
  assert_closed(1);
}

/* A consumer so slow that the worker's pipe is never empty: the deadline
 * still ends the stream (checked at every chunk, not only when the pipe
 * runs dry). */
static void slow_case(stream_t *s, pp_pool_t *pool, face_t f, void *arg) {
  char payload[256];

  snprintf(payload, sizeof(payload),
           "{\"cmd\":\"flood\",\"args\":{\"n\":100000,\"size\":65536,"
           "\"progress\":\"%s\"}}",
           (const char *)arg);
  s->pid = worker_pid(pool);
  s->hold_each = 1;
  stream_run(s, pool, f, payload, 300 * test_time_scale());
  assert_int_equal(s->c.status, PP_ETIMEDOUT);
  assert_true(s->n > 0 && s->n < 100000);
}

static void test_slow_consumer_deadline(void **state) {
  char progress[128];

  (void)state;
  snprintf(progress, sizeof(progress), "/tmp/pp-stream-slow-%d", (int)getpid());
  each_face(NULL, slow_case, progress);
  unlink(progress);
}
/* Stopped after the worker wrote its whole stream: what the caller had
 * read ahead (the other chunks, the answer) is taken by the pool, and the
 * worker, which answered, is kept. */
static void all_sent_case(stream_t *s, pp_pool_t *pool, face_t f, void *arg) {
  pp_status_t st;

  (void)arg;
  s->pid = worker_pid(pool);
  s->idle_at_first = 1;
  s->stop_at = 2;
  stream_run(s, pool, f, "{\"cmd\":\"count\",\"args\":5}", -1);
  assert_int_equal(s->c.status, PP_ECANCELED);
  assert_int_equal(s->n, 2);
  assert_int_equal(pp_pool_quiesce(pool, 60000 * test_time_scale(), NULL), 0);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(st.workers[0].pid, s->pid);
  pp_status_free(&st);
}

static void test_stop_after_all_sent(void **state) {
  (void)state;
  each_face(NULL, all_sent_case, NULL);
}
/* pp_request_with's lease checked in from inside on_chunk: the call ends
 * there (PP_ECANCELED), and no chunk comes after its callback, even with
 * the lease object lent again at once. */
static void test_checkin_in_on_chunk(void **state) {
  pp_lease_t *again;
  pp_diag_t d;
  stream_t s;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 2, "cancel");

  (void)state;
  stream_init(&s);
  s.checkin_at = 2;
  stream_run(&s, pool, F_REQUEST, endless(), -1);
  assert_int_equal(s.c.status, PP_ECANCELED);
  assert_int_equal(s.n, 2);
  assert_int_equal(s.late, 0);
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &again, &d), 0);
  pp_checkin(again);
  call_free(&s.c);
  pool_close(pool, &rec);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chunks),
      cmocka_unit_test(test_kinds_mismatch),
      cmocka_unit_test(test_stop),
      cmocka_unit_test(test_cancel_token),
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_checkin_in_on_chunk),
      cmocka_unit_test(test_client_dies),
      /* flood, and /proc of a worker process: the python adapter's. */
      cmocka_unit_test(test_backpressure),
      cmocka_unit_test(test_slow_consumer_deadline),
      cmocka_unit_test(test_stop_after_all_sent),
  };
  const char *a = getenv("PP_TEST_ADAPTER");

  mock = a && strcmp(a, "mock") == 0;
  snprintf(marks, sizeof(marks), "/tmp/pp-stream-marks-%d", (int)getpid());
  unlink(marks);
  setenv("PP_TEST_MARKS", marks, 1);
  /* The last three need a worker process: the mock run has the others. */
  return _cmocka_run_group_tests(
      "test_stream", tests, sizeof(tests) / sizeof(tests[0]) - (mock ? 3 : 0),
      NULL, NULL);
}
