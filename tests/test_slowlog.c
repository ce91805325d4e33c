/* test_slowlog.c -- worker.slow_request: a request past it gets its
 * worker one SIGUSR1, whose faulthandler writes the Python stack to
 * stderr; the pool logs a line, traces `slow`, counts slow_requests and
 * keeps the dump in status.  Real Python workers, spawned and forked by
 * the zygote; waits are on trace events and on the log callback. */
#include "cli.h"
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What the log callback saw: the pool's notice, and a stack line naming
 * the stuck handler. */
typedef struct logs {
  uv_mutex_t mu;
  uv_cond_t cv;
  int notices;      /* "... (worker.slow_request); its Python stack follows" */
  int kill_notices; /* "... killed for timeout after N ms; its ..." */
  int stack_seen;   /* a stderr line "... in stuck_in_here" */
  int no_stack;     /* "... a mock adapter's worker has no Python stack" */
  char notice[256];
} logs_t;

static void on_log(pp_pool_t *pool, const char *line, void *data) {
  logs_t *l = data;

  (void)pool;
  if (getenv("PP_TEST_VERBOSE"))
    fprintf(stderr, "log: %s\n", line);
  uv_mutex_lock(&l->mu);
  if (strstr(line, "(worker.slow_request); its Python stack follows")) {
    l->notices++;
    snprintf(l->notice, sizeof(l->notice), "%s", line);
  }
  if (strstr(line, "killed for timeout after") &&
      strstr(line, "its Python stack follows"))
    l->kill_notices++;
  if (strstr(line, "[stderr]") && strstr(line, " in stuck_in_here"))
    l->stack_seen = 1;
  if (strstr(line, "(worker.slow_request); a mock adapter's worker has no "
                   "Python stack to dump"))
    l->no_stack++;
  uv_cond_broadcast(&l->cv);
  uv_mutex_unlock(&l->mu);
}

/* Wait until the stack line was logged; 0, or -1 past the guard. */
static int wait_stack(logs_t *l, int timeout_ms) {
  uint64_t end = uv_hrtime() + (uint64_t)timeout_ms * 1000000ull;
  int r = 0;

  uv_mutex_lock(&l->mu);
  while (!l->stack_seen && r == 0) {
    uint64_t now = uv_hrtime();
    r = now >= end ? -1 : uv_cond_timedwait(&l->cv, &l->mu, end - now);
  }
  r = l->stack_seen ? 0 : -1;
  uv_mutex_unlock(&l->mu);
  return r;
}

/* The stuck call, on its own thread. */
typedef struct stuck {
  pp_pool_t *pool;
  char args[320];
  int status;
  pp_buf_t reply;
  pp_diag_t diag;
  uv_thread_t thread;
} stuck_t;

static void stuck_main(void *arg) {
  stuck_t *s = arg;

  s->status =
      pp_call_cmd(s->pool, "stuck_in_here", s->args, &s->reply, -1, &s->diag);
}

static char sock_dir[64], sock[96];
/* worker.pipeline_depth: "2" runs the calls on the pipelined path. */
static const char *depth = "1";

/* A pool of one slow_handlers.py worker in the run's start mode, with
 * slow_request and request_timeout as given, its log into logs and its
 * trace into rec; cfg freed. */
static pp_pool_t *open_logged(const char *start, const char *slow,
                              const char *timeout, logs_t *logs, rec_t *rec) {
  pp_config_t *cfg = python_config("slow_handlers.py", 1);
  pp_pool_options_t o;
  pp_pool_t *pool;
  pp_diag_t d;
  int r;

  memset(logs, 0, sizeof(*logs));
  assert_int_equal(uv_mutex_init(&logs->mu), 0);
  assert_int_equal(uv_cond_init(&logs->cv), 0);
  rec_init(rec);
  cfg_set(cfg, "worker.start", start);
  cfg_set(cfg, "worker.slow_request", slow);
  cfg_set(cfg, "worker.request_timeout", timeout);
  cfg_set(cfg, "worker.pipeline_depth", depth);
  /* For poolctl status (a private directory the pool creates). */
  snprintf(sock_dir, sizeof(sock_dir), "/tmp/pp-slowlog-%d", (int)getpid());
  snprintf(sock, sizeof(sock), "%s/test.sock", sock_dir);
  cfg_set(cfg, "control.socket", sock);
  o = rec_options(rec);
  o.log = on_log;
  o.log_data = logs;
  r = pp_pool_open(cfg, &o, &pool, &d);
  if (r != 0)
    fail_msg("pp_pool_open: %s: %s", pp_strerror(r), d.message);
  pp_config_free(cfg);
  return pool;
}

static void close_logged(pp_pool_t *pool, logs_t *logs, rec_t *rec) {
  pp_pool_close(pool);
  rmdir(sock_dir);
  rec_free(rec);
  uv_cond_destroy(&logs->cv);
  uv_mutex_destroy(&logs->mu);
}

/* One worker; a call blocks in slow_handlers.stuck_in_here (a FIFO)
 * past worker.slow_request; the dump names that function; once released
 * the call still succeeds on the same worker. */
static void slow_call(const char *start) {
  pp_status_t st;
  pp_pool_t *pool;
  char fifo[256], *js;
  rec_event_t ev;
  int pid, scale = test_time_scale();
  long k;
  logs_t logs;
  cli_run_t r;
  const char *at;
  stuck_t s;
  rec_t rec;

  pool = open_logged(start, "100ms", "5m", &logs, &rec);

  memset(&s, 0, sizeof(s));
  s.pool = pool;
  fifo_make(fifo, sizeof(fifo), start);
  snprintf(s.args, sizeof(s.args), "{\"fifo\":\"%s\"}", fifo);
  assert_int_equal(uv_thread_create(&s.thread, stuck_main, &s), 0);

  /* The pool signals once the request is 100ms old, then the stack
   * arrives on the worker's stderr. */
  assert_int_equal(rec_wait(&rec, PP_TRACE_SLOW, 1, 20000 * scale), 0);
  assert_int_equal(wait_stack(&logs, 20000 * scale), 0);
  k = rec_find(&rec, PP_TRACE_SLOW, 0);
  assert_true(k >= 0);
  uv_mutex_lock(&rec.mu);
  ev = rec.ev[k];
  uv_mutex_unlock(&rec.mu);
  assert_int_equal(ev.slot, 0);
  assert_true(ev.code >= 100);

  assert_int_equal(pp_pool_status(pool, &st), 0);
  pid = st.workers[0].pid;
  assert_int_equal(ev.pid, pid);
  assert_int_equal(st.slow_requests, 1);
  assert_non_null(strstr(st.workers[0].last_slow_stack, "in stuck_in_here"));
  assert_non_null(strstr(st.workers[0].last_slow_stack, "slow_handlers.py"));
  assert_non_null(strstr(st.workers[0].last_slow_stack, "hread 0x"));
  js = pp_status_to_json(&st);
  assert_non_null(js);
  assert_non_null(strstr(js, "\"slow_requests\":1"));
  assert_non_null(strstr(js, "\"last_slow_stack\":\""));
  free(js);
  pp_status_free(&st);
  /* poolctl status (and top, the same rows) says where it was. */
  cli_poolctl(&r, "status", "-S", sock, NULL);
  assert_int_equal(r.code, 0);
  at = strstr(r.out, "\nslow: worker 0 was at File \"");
  if (at == NULL || strstr(at, "in stuck_in_here") == NULL)
    fail_msg("poolctl status printed:\n%s", r.out);
  cli_run_free(&r);
  uv_mutex_lock(&logs.mu);
  assert_int_equal(logs.notices, 1);
  assert_non_null(strstr(logs.notice, "worker 0 (pid "));
  assert_non_null(strstr(logs.notice, "): request running for "));
  uv_mutex_unlock(&logs.mu);

  /* The dump did not hurt the worker: the call completes. */
  fifo_release(fifo);
  uv_thread_join(&s.thread);
  unlink(fifo);
  if (s.status != 0)
    fail_msg("stuck call: %s: %s", pp_strerror(s.status), s.diag.message);
  assert_string_equal(s.reply.data, "\"opened\"");
  pp_buf_free(&s.reply);

  /* Once per request: one signal, one count, the same worker. */
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.slow_requests, 1);
  assert_int_equal(st.workers[0].pid, pid);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(st.errors, 0);
  pp_status_free(&st);
  assert_int_equal(rec_count(&rec, PP_TRACE_SLOW), 1);
  assert_int_equal(rec_count(&rec, PP_TRACE_EXIT), 0);

  close_logged(pool, &logs, &rec);
}

/* The start mode is the run's: test_slowlog_zygote sets PP_START (the
 * zygote watches exits through pidfds, which valgrind does not know). */
static const char *start_mode(void) {
  const char *m = getenv("PP_START");

  return m && *m ? m : "spawn";
}

static void test_slow_request(void **state) {
  (void)state;
  depth = "1";
  slow_call(start_mode());
}

/* The same for a pipelined pp_call, which its callers read themselves:
 * the request at the head of the worker's ring is the one timed. */
static void test_slow_request_pipelined(void **state) {
  (void)state;
  depth = "2";
  slow_call(start_mode());
  depth = "1";
}

/* With worker.slow_request off, a request killed for worker.request_timeout
 * still says where it was stuck: the dump comes before the kill. */
static void test_timeout_dumps_stack(void **state) {
  pp_status_t st;
  pp_pool_t *pool;
  char fifo[256];
  logs_t logs;
  stuck_t s;
  rec_t rec;

  (void)state;
  pool = open_logged(start_mode(), "0", "300ms", &logs, &rec);
  memset(&s, 0, sizeof(s));
  s.pool = pool;
  fifo_make(fifo, sizeof(fifo), "timeout-dump");
  snprintf(s.args, sizeof(s.args), "{\"fifo\":\"%s\"}", fifo);
  stuck_main(&s); /* never released: only the timeout ends it */
  unlink(fifo);
  assert_int_equal(s.status, PP_ETIMEDOUT);
  pp_buf_free(&s.reply);
  assert_int_equal(wait_stack(&logs, 20000 * test_time_scale()), 0);
  uv_mutex_lock(&logs.mu);
  assert_int_equal(logs.kill_notices, 1);
  assert_int_equal(logs.notices, 0);
  uv_mutex_unlock(&logs.mu);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.slow_requests, 1);
  assert_non_null(strstr(st.workers[0].last_slow_stack, "in stuck_in_here"));
  pp_status_free(&st);
  close_logged(pool, &logs, &rec);
}

/* A custom adapter's worker has no process of ours to signal: a request
 * past worker.slow_request is logged, once, and its slot's last stack
 * stays "" (no stack buffer left unwritten for status to read). */
typedef struct mock_call {
  pp_pool_t *pool;
  pp_cancel_t *token;
  int status;
  pp_buf_t reply;
} mock_call_t;

static void mock_sleep_main(void *arg) {
  mock_call_t *m = arg;
  const char req[] = "{\"args\":60,\"cmd\":\"sleep\"}";
  pp_call_opts_t o = {.timeout_ms = -1, .cancel = m->token};

  m->status = pp_call_with(m->pool, req, strlen(req), &m->reply, &o, NULL);
}

static void test_slow_request_custom_adapter(void **state) {
  uint64_t end, now;
  pp_pool_options_t o = {0};
  mock_call_t m = {0};
  uv_thread_t t;
  pp_config_t *cfg;
  pp_status_t st;
  pp_diag_t d;
  logs_t logs;
  char *js;

  (void)state;
  memset(&logs, 0, sizeof(logs));
  assert_int_equal(uv_mutex_init(&logs.mu), 0);
  assert_int_equal(uv_cond_init(&logs.cv), 0);
  assert_int_equal(pp_config_new(&cfg), 0);
  cfg_set(cfg, "adapter", "mock");
  cfg_set(cfg, "size", "1");
  cfg_set(cfg, "worker.slow_request", "20ms");
  o.log = on_log;
  o.log_data = &logs;
  assert_int_equal(pp_pool_open(cfg, &o, &m.pool, &d), 0);
  pp_config_free(cfg);
  assert_int_equal(pp_cancel_new(m.pool, &m.token), 0);
  assert_int_equal(uv_thread_create(&t, mock_sleep_main, &m), 0);

  end = uv_hrtime() + 20000000000ull * (uint64_t)test_time_scale();
  uv_mutex_lock(&logs.mu);
  while (logs.no_stack == 0 && (now = uv_hrtime()) < end)
    uv_cond_timedwait(&logs.cv, &logs.mu, end - now);
  assert_int_equal(logs.notices, 0);
  uv_mutex_unlock(&logs.mu);
  /* Until the request is 10 ticks old (the tick runs every slow_request):
   * no second line for it. */
  for (;;) {
    assert_int_equal(pp_pool_status(m.pool, &st), 0);
    if (st.workers[0].request_age_ms >= 200)
      break;
    pp_status_free(&st);
    assert_true(uv_hrtime() < end);
    sched_yield();
  }
  uv_mutex_lock(&logs.mu);
  assert_int_equal(logs.no_stack, 1);
  uv_mutex_unlock(&logs.mu);
  assert_int_equal(st.workers[0].state, PP_WORKER_BUSY);
  assert_string_equal(st.workers[0].last_slow_stack, "");
  assert_int_equal(st.slow_requests, 0);
  js = pp_status_to_json(&st);
  assert_non_null(js);
  assert_non_null(strstr(js, "\"last_slow_stack\":null"));
  free(js);
  pp_status_free(&st);

  assert_int_equal(pp_cancel(m.token), 1); /* the sleep it ended */
  uv_thread_join(&t);
  assert_int_equal(m.status, PP_ECANCELED);
  uv_mutex_lock(&logs.mu);
  assert_int_equal(logs.no_stack, 1); /* once per request */
  uv_mutex_unlock(&logs.mu);
  pp_buf_free(&m.reply);
  pp_cancel_free(m.token);
  pp_pool_close(m.pool);
  uv_cond_destroy(&logs.cv);
  uv_mutex_destroy(&logs.mu);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_slow_request),
      cmocka_unit_test(test_slow_request_pipelined),
      cmocka_unit_test(test_timeout_dumps_stack),
      cmocka_unit_test(test_slow_request_custom_adapter),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
