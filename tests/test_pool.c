/* test_pool.c -- the event-loop face on the test's own uv loop, with real
 * Python workers: readiness, checkout / request / check-in by callback,
 * the warming reason, crashes, check-in with a request in flight (the
 * reply is dropped, never delivered to the next borrower), and stop. Each
 * test ends with every handle closed and uv_loop_close() == 0. */
#include "helpers.h"

#include "faults.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct ctx {
  uv_loop_t loop;
  rec_t rec;
  pp_pool_t *pool;
  int ready_status;
  int ready_calls;
  int checkout_status;
  char checkout_msg[512];
  int reply_status;
  int reply_calls;
  char reply[256];
  char reply_msg[sizeof(((pp_diag_t *)0)->message)];
  int closed;
  int timed_out;
  uv_timer_t guard;
} ctx_t;

static void on_guard(uv_timer_t *t) {
  ctx_t *c = t->data;
  c->timed_out = 1;
}

/* Run the loop until *flag becomes non-zero; a guard timer fails the test
 * after timeout_ms, and only then. */
static void run_until(ctx_t *c, volatile int *flag, int timeout_ms) {
  c->timed_out = 0;
  uv_timer_start(&c->guard, on_guard,
                 (uint64_t)timeout_ms * (uint64_t)test_time_scale(), 0);
  while (!*flag && !c->timed_out)
    uv_run(&c->loop, UV_RUN_ONCE);
  uv_timer_stop(&c->guard);
  assert_false(c->timed_out);
}

static int count_at_least(ctx_t *c, pp_trace_type_t t, size_t n) {
  return rec_count(&c->rec, t) >= n;
}

static void run_until_events(ctx_t *c, pp_trace_type_t t, size_t n,
                             int timeout_ms) {
  c->timed_out = 0;
  uv_timer_start(&c->guard, on_guard,
                 (uint64_t)timeout_ms * (uint64_t)test_time_scale(), 0);
  while (!count_at_least(c, t, n) && !c->timed_out)
    uv_run(&c->loop, UV_RUN_ONCE);
  uv_timer_stop(&c->guard);
  assert_false(c->timed_out);
}

static void on_ready(pp_pool_t *pool, int status, void *data) {
  ctx_t *c = data;
  (void)pool;
  c->ready_status = status;
  c->ready_calls++;
}

static void ctx_start(ctx_t *c, pp_config_t *cfg, int wait_ready) {
  pp_pool_options_t o;
  pp_diag_t d;
  int r;

  memset(c, 0, sizeof(*c));
  assert_int_equal(uv_loop_init(&c->loop), 0);
  uv_timer_init(&c->loop, &c->guard);
  c->guard.data = c;
  rec_init(&c->rec);
  o = rec_options(&c->rec);
  r = pp_pool_start(&c->loop, cfg, &o, on_ready, c, &c->pool, &d);
  if (r != 0)
    fail_msg("pp_pool_start: %s: %s", pp_strerror(r), d.message);
  pp_config_free(cfg);
  if (wait_ready) {
    run_until(c, &c->ready_calls, 30000);
    assert_int_equal(c->ready_status, 0);
  }
}

static void on_closed(pp_pool_t *pool, void *data) {
  ctx_t *c = data;
  (void)pool;
  c->closed = 1;
}

/* After the pool closed: every handle closed, the loop empty. */
static void ctx_finish(ctx_t *c) {
  uv_close((uv_handle_t *)&c->guard, NULL);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&c->loop), 0);
  rec_free(&c->rec);
}

static void ctx_stop(ctx_t *c) {
  pp_pool_stop(c->pool, on_closed, c);
  run_until(c, &c->closed, 30000);
  assert_int_equal(c->ready_calls, 1);
  ctx_finish(c);
}

static void on_reply(pp_lease_t *lease, int status, const char *reply,
                     size_t len, const pp_diag_t *diag, void *data) {
  ctx_t *c = data;
  (void)lease;
  c->reply_status = status;
  snprintf(c->reply_msg, sizeof(c->reply_msg), "%s", diag ? diag->message : "");
  snprintf(c->reply, sizeof(c->reply), "%.*s", (int)len, reply);
  c->reply_calls++;
}

static pp_lease_t *checked_out;

static void on_checkout(pp_lease_t *lease, int status, const pp_diag_t *diag,
                        void *data) {
  ctx_t *c = data;
  c->checkout_status = status;
  snprintf(c->checkout_msg, sizeof(c->checkout_msg), "%s",
           diag ? diag->message : "");
  checked_out = lease;
  if (status != 0)
    c->checkout_status = status ? status : -1;
}

static pp_lease_t *checkout(ctx_t *c, int64_t timeout_ms) {
  volatile int done = 0;
  c->checkout_status = 1; /* not yet called */
  checked_out = NULL;
  assert_int_equal(pp_checkout(c->pool, NULL, timeout_ms, on_checkout, c), 0);
  while (c->checkout_status == 1) {
    uv_run(&c->loop, UV_RUN_ONCE);
  }
  (void)done;
  return checked_out;
}

static void request(ctx_t *c, pp_lease_t *lease, const char *payload) {
  int before = c->reply_calls;
  assert_int_equal(pp_request(lease, payload, strlen(payload), -1, on_reply, c),
                   0);
  c->timed_out = 0;
  uv_timer_start(&c->guard, on_guard, 30000, 0);
  while (c->reply_calls == before && !c->timed_out)
    uv_run(&c->loop, UV_RUN_ONCE);
  uv_timer_stop(&c->guard);
  assert_false(c->timed_out);
}

static void test_loop_request(void **state) {
  ctx_t c;
  pp_lease_t *lease;

  (void)state;
  ctx_start(&c, python_config("echo_handlers.py", 2), 1);
  lease = checkout(&c, -1);
  assert_int_equal(c.checkout_status, 0);
  assert_non_null(lease);
  request(&c, lease, "{\"cmd\":\"echo\",\"args\":\"hi\"}");
  assert_int_equal(c.reply_status, 0);
  assert_string_equal(c.reply, "\"hi\"");
  request(&c, lease, "{\"cmd\":\"fail\",\"args\":1}");
  assert_int_equal(c.reply_status, PP_EHANDLER);
  assert_non_null(strstr(c.reply, "ValueError"));
  pp_checkin(lease);
  assert_int_equal(rec_count(&c.rec, PP_TRACE_CHECKIN), 1);
  ctx_stop(&c);
}

static void test_warming_reason(void **state) {
  pp_config_t *cfg = python_config("slow_start.py", 1);
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.env", "{PP_SLOW_START: '60'}");
  cfg_set(cfg, "worker.startup_timeout", "2m");
  ctx_start(&c, cfg, 0);
  assert_null(checkout(&c, 50));
  assert_int_equal(c.checkout_status, PP_ETIMEDOUT);
  assert_string_equal(c.checkout_msg, "pool warming (0/1 ready)");
  ctx_stop(&c);
  /* Stopped before it was ready: the ready callback reports it. */
  assert_int_equal(c.ready_status, PP_ECLOSED);
}

static void test_loop_crash(void **state) {
  ctx_t c;
  pp_lease_t *lease;

  (void)state;
  ctx_start(&c, python_config("echo_handlers.py", 1), 1);
  lease = checkout(&c, -1);
  request(&c, lease, "{\"cmd\":\"crash\",\"args\":5}");
  assert_int_equal(c.reply_status, PP_ECRASHED);
  pp_checkin(lease);
  run_until_events(&c, PP_TRACE_HELLO, 2, 10000);
  lease = checkout(&c, -1);
  request(&c, lease, "{\"cmd\":\"echo\",\"args\":2}");
  assert_int_equal(c.reply_status, 0);
  pp_checkin(lease);
  ctx_stop(&c);
}

/* A lease checked in with its request in flight: the callback runs once
 * with PP_ECANCELED, and the late reply is counted and dropped; the next
 * borrower of the same worker gets its own reply. */
static void test_checkin_in_flight(void **state) {
  ctx_t c;
  pp_lease_t *lease;
  pp_status_t st;
  const char *slow = "{\"cmd\":\"sleep\",\"args\":0.3}";

  (void)state;
  ctx_start(&c, python_config("echo_handlers.py", 1), 1);
  lease = checkout(&c, -1);
  assert_int_equal(pp_request(lease, slow, strlen(slow), -1, on_reply, &c), 0);
  pp_checkin(lease);
  run_until(&c, &c.reply_calls, 10000);
  assert_int_equal(c.reply_status, PP_ECANCELED);
  run_until_events(&c, PP_TRACE_STALE_REPLY, 1, 10000);
  lease = checkout(&c, -1);
  assert_non_null(lease);
  request(&c, lease, "{\"cmd\":\"echo\",\"args\":\"mine\"}");
  assert_string_equal(c.reply, "\"mine\"");
  assert_int_equal(c.reply_calls, 2);
  pp_checkin(lease);
  assert_int_equal(pp_pool_status(c.pool, &st), 0);
  assert_int_equal(st.stale_replies, 1);
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  ctx_stop(&c);
}

/* A worker's RSS in the status is its resident set (/proc/PID/stat's rss,
 * read with its CPU time in one go, through the fd opened when it started):
 * what /proc/PID/statm says, give or take what an idle interpreter touches
 * meanwhile.  In the run's start mode: test_pool_zygote checks a worker
 * forked by the zygote (valgrind, which runs this suite, does not know
 * the pidfds the zygote mode uses). */
static void test_status_proc_figures(void **state) {
  unsigned long long size, pages;
  long long diff;
  pp_status_t st;
  char path[64];
  FILE *f;
  ctx_t c;

  (void)state;
  ctx_start(&c, python_config("echo_handlers.py", 1), 1);
  assert_int_equal(pp_pool_status(c.pool, &st), 0);
  assert_int_equal(st.nworkers, 1);
  assert_true(st.workers[0].pid > 0);
  snprintf(path, sizeof(path), "/proc/%d/statm", st.workers[0].pid);
  f = fopen(path, "r");
  assert_non_null(f);
  assert_int_equal(fscanf(f, "%llu %llu", &size, &pages), 2);
  fclose(f);
  diff = (long long)st.workers[0].rss_bytes -
         (long long)(pages * (unsigned long long)sysconf(_SC_PAGESIZE));
  assert_true(st.workers[0].rss_bytes > 1024 * 1024);
  assert_true(diff > -1024 * 1024 && diff < 1024 * 1024);
  /* An interpreter that only booted: well under a minute of CPU. */
  assert_true(st.workers[0].cpu_time_ms < 60000);
  pp_status_free(&st);
  ctx_stop(&c);
}

/* A worker silent past startup_timeout is killed and, with
 * restart.retry_boot_failures, restarted; its exit says why.  (Without the
 * key the start fails at the first timeout: test_adapters.) */
static void test_startup_timeout(void **state) {
  pp_config_t *cfg = python_config("slow_start.py", 1);
  pp_status_t st;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.env", "{PP_SLOW_START: '60'}");
  cfg_set(cfg, "worker.startup_timeout", "300ms");
  cfg_set(cfg, "restart.retry_boot_failures", "true");
  ctx_start(&c, cfg, 0);
  run_until_events(&c, PP_TRACE_SPAWN, 2, 20000);
  assert_int_equal(rec_count(&c.rec, PP_TRACE_RESTART), 1);
  assert_int_equal(rec_count(&c.rec, PP_TRACE_HELLO), 0);
  assert_int_equal(pp_pool_status(c.pool, &st), 0);
  assert_int_equal(st.workers[0].last_exit, PP_EXIT_NO_HELLO);
  assert_string_equal(st.workers[0].last_exit_text,
                      "no HELLO within startup_timeout");
  pp_status_free(&st);
  ctx_stop(&c);
}

/* A worker that exits 0 at import, with restart.retry_boot_failures,
 * loops no further than max_restarts: the slot turns fatal, the pool
 * degraded, and a checkout fails at once with PP_EDEGRADED.  (Without the
 * key the start fails at the first exit: test_adapters.) */
static void test_crash_loop_degrades(void **state) {
  pp_config_t *cfg = python_config("exit_zero_on_import.py", 1);
  ctx_t c;

  (void)state;
  cfg_set(cfg, "restart.retry_boot_failures", "true");
  cfg_set(cfg, "restart.max_restarts", "2");
  cfg_set(cfg, "restart.within", "1m");
  ctx_start(&c, cfg, 0);
  run_until(&c, &c.ready_calls, 20000);
  assert_int_equal(c.ready_status, PP_EDEGRADED);
  assert_int_equal(rec_count(&c.rec, PP_TRACE_FATAL), 1);
  assert_int_equal(rec_count(&c.rec, PP_TRACE_DEGRADED), 1);
  assert_int_equal(rec_count(&c.rec, PP_TRACE_SPAWN), 3);
  assert_int_equal(pp_checkout(c.pool, NULL, 1000, on_checkout, &c),
                   PP_EDEGRADED);
  ctx_stop(&c);
}

/* The virtual size of this process in KiB (/proc/self/statm). */
static long vm_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = -1;

  assert_non_null(f);
  assert_int_equal(fscanf(f, "%ld", &pages), 1);
  fclose(f);
  return pages * (sysconf(_SC_PAGESIZE) / 1024);
}

/* The crash history does not grow with restart.max_restarts: a pool with
 * the largest value opens and costs what any pool costs (it reserved
 * 16 GiB of history per slot, and failed or swallowed the address space). */
static void test_crash_history_bounded(void **state) {
  pp_config_t *cfg;
  pp_pool_t *pool = NULL;
  pp_diag_t d;
  long before, after;

  (void)state;
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_config_new(&cfg), 0);
  cfg_set(cfg, "adapter", "mock");
  cfg_set(cfg, "size", "2");
  cfg_set(cfg, "restart.max_restarts", "2147483647");
  before = vm_kib();
  assert_int_equal(pp_pool_open(cfg, NULL, &pool, &d), 0);
  after = vm_kib();
  /* Generous: two mock workers' threads and the loop's, far below 16 GiB. */
  assert_true(after - before < 1024 * 1024);
  pp_pool_close(pool);
  pp_config_free(cfg);
}

/* Past the exactly counted history (max_restarts 40 > PP__CRASH_RING),
 * crashes within restart.within still make the slot fatal at exactly
 * max_restarts + 1: the 41st crash, not earlier, not later. */
static void test_crash_count_past_ring(void **state) {
  pp_config_t *cfg;
  pp_pool_t *pool = NULL;
  pp_buf_t reply = {0};
  pp_diag_t d;
  int crashes = 0, r = 0, i;

  (void)state;
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_config_new(&cfg), 0);
  cfg_set(cfg, "adapter", "mock");
  cfg_set(cfg, "size", "1");
  cfg_set(cfg, "restart.max_restarts", "40");
  cfg_set(cfg, "restart.within", "1h");
  cfg_set(cfg, "restart.backoff", "[0ms, 0ms]");
  assert_int_equal(pp_pool_open(cfg, NULL, &pool, &d), 0);
  for (i = 0; i < 100; i++) {
    r = pp_call_cmd(pool, "crash", "3", &reply, 60000 * test_time_scale(), &d);
    if (r == PP_EDEGRADED)
      break;
    assert_int_not_equal(r, 0);
    crashes++;
  }
  assert_int_equal(r, PP_EDEGRADED);
  assert_int_equal(crashes, 41);
  pp_buf_free(&reply);
  pp_pool_close(pool);
  pp_config_free(cfg);
}

/* ---- pp_call_async */

typedef struct acall {
  ctx_t *c;
  int id;    /* which logical caller */
  int left;  /* calls it still makes */
  int done;  /* callbacks so far */
  int ended; /* a callback came with nothing more to send */
  int status;
  int *total; /* callbacks of every caller */
  char want[64];
  char reply[256];
  char msg[sizeof(((pp_diag_t *)0)->message)];
} acall_t;

static void async_submit(acall_t *a, const char *payload, int64_t timeout_ms);

static void on_async(int status, const char *reply, size_t len,
                     const pp_diag_t *diag, void *data) {
  acall_t *a = data;
  char payload[96];

  a->done++;
  (*a->total)++;
  a->status = status;
  snprintf(a->reply, sizeof(a->reply), "%.*s", (int)len, reply);
  snprintf(a->msg, sizeof(a->msg), "%s", diag ? diag->message : "");
  if (status != 0 || a->left == 0) {
    a->ended = 1;
    return;
  }
  /* The reply is the echo of this caller's last request. */
  assert_string_equal(a->reply, a->want);
  if (--a->left > 0) {
    snprintf(payload, sizeof(payload), "{\"cmd\":\"echo\",\"args\":\"%d-%d\"}",
             a->id, a->left);
    snprintf(a->want, sizeof(a->want), "\"%d-%d\"", a->id, a->left);
    async_submit(a, payload, -1);
  }
}

static void async_submit(acall_t *a, const char *payload, int64_t timeout_ms) {
  assert_int_equal(pp_call_async(a->c->pool, payload, strlen(payload),
                                 timeout_ms, on_async, a),
                   0);
}

static void run_until_total(ctx_t *c, int *total, int n, int timeout_ms) {
  c->timed_out = 0;
  uv_timer_start(&c->guard, on_guard,
                 (uint64_t)timeout_ms * (uint64_t)test_time_scale(), 0);
  while (*total < n && !c->timed_out)
    uv_run(&c->loop, UV_RUN_ONCE);
  uv_timer_stop(&c->guard);
  assert_false(c->timed_out);
}

/* n call records of one test, counting their callbacks in *total. */
static void acalls_init(acall_t *a, int n, ctx_t *c, int *total) {
  memset(a, 0, (size_t)n * sizeof(*a));
  for (int i = 0; i < n; i++) {
    a[i].c = c;
    a[i].id = i;
    a[i].total = total;
  }
}

/* Caller a echoes "ID-start", then keeps calling from its callback until
 * it made `calls` calls (or a->left is set to 0). */
static void stream_start(acall_t *a, int calls) {
  char payload[96];

  a->left = calls;
  snprintf(a->want, sizeof(a->want), "\"%d-start\"", a->id);
  snprintf(payload, sizeof(payload), "{\"cmd\":\"echo\",\"args\":\"%d-start\"}",
           a->id);
  async_submit(a, payload, -1);
}

/* Four calls: echo_handlers' `gate` on a new FIFO, which blocks until
 * fifo_release(fifo) and then does `then` ("crash" exits the worker), and
 * three echoes of 1 behind it. */
static void gated_calls(ctx_t *c, acall_t *a, int *total, char *fifo,
                        size_t flen, const char *tag, const char *then) {
  const char *echo = "{\"cmd\":\"echo\",\"args\":1}";
  char gate[256];

  fifo_make(fifo, flen, tag);
  snprintf(gate, sizeof(gate),
           "{\"cmd\":\"gate\",\"args\":{\"fifo\":\"%s\",\"then\":\"%s\"}}",
           fifo, then);
  acalls_init(a, 4, c, total);
  for (int i = 0; i < 4; i++)
    async_submit(&a[i], i == 0 ? gate : echo, -1);
}

/* Streams stop sending; returns once the call each had in flight is back
 * (its status is then the last one). */
static void streams_stop(ctx_t *c, acall_t *a, int n) {
  int i, all = 0;

  for (i = 0; i < n; i++) {
    a[i].left = 0;
    a[i].ended = 0;
  }
  c->timed_out = 0;
  uv_timer_start(&c->guard, on_guard, 30000ull * test_time_scale(), 0);
  while (!all && !c->timed_out) {
    uv_run(&c->loop, UV_RUN_ONCE);
    for (all = 1, i = 0; i < n; i++)
      all = all && a[i].ended;
  }
  uv_timer_stop(&c->guard);
  assert_false(c->timed_out);
}

/* A PP_EHANDLER's diag says "Type: message" on the loop faces too
 * (pp_request, pp_call_async), and status lists the handlers the workers'
 * HELLO named. */
static void test_loop_handler_diag(void **state) {
  const char *fail = "{\"cmd\":\"fail\",\"args\":1}";
  const char *ech = "{\"cmd\":\"ech\"}";
  pp_lease_t *lease;
  pp_status_t st;
  acall_t a[2];
  char *js;
  int total = 0;
  ctx_t c;

  (void)state;
  ctx_start(&c, python_config("echo_handlers.py", 1), 1);
  lease = checkout(&c, -1);
  assert_non_null(lease);
  request(&c, lease, fail);
  assert_int_equal(c.reply_status, PP_EHANDLER);
  assert_string_equal(c.reply_msg, "ValueError: boom: 1");
  request(&c, lease, ech);
  assert_int_equal(c.reply_status, PP_EHANDLER);
  assert_non_null(strstr(c.reply_msg, "UnknownCommand: unknown command 'ech'; "
                                      "did you mean 'echo'?"));
  pp_checkin(lease);
  acalls_init(a, 2, &c, &total);
  async_submit(&a[0], fail, -1);
  async_submit(&a[1], ech, -1);
  run_until_total(&c, &total, 2, 30000);
  assert_int_equal(a[0].status, PP_EHANDLER);
  assert_string_equal(a[0].msg, "ValueError: boom: 1");
  assert_int_equal(a[1].status, PP_EHANDLER);
  assert_non_null(strstr(a[1].msg, "did you mean 'echo'?"));
  assert_int_equal(pp_pool_status(c.pool, &st), 0);
  assert_non_null(st.handlers);
  assert_non_null(strstr(st.handlers, "\"echo\""));
  assert_non_null(strstr(st.handlers, "\"cancelled_sleep\""));
  assert_null(strstr(st.handlers, "\"signal\"")); /* imported module */
  js = pp_status_to_json(&st);
  assert_non_null(js);
  assert_non_null(strstr(js, "\"handlers\":[\"add\",\"big\","));
  free(js);
  pp_status_free(&st);
  ctx_stop(&c);
}

/* 64 callers with one call each in flight at a time, 20 calls each, on 2
 * workers at depth 4: every reply reaches its own caller, requests did
 * queue behind others on a worker, and the pool ends idle with the
 * counters balanced. */
static void test_async_calls(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 2);
  acall_t a[64];
  pp_status_t st;
  int i, total = 0, queued = 0;
  size_t k;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.pipeline_depth", "4");
  ctx_start(&c, cfg, 1);
  acalls_init(a, 64, &c, &total);
  for (i = 0; i < 64; i++)
    stream_start(&a[i], 20);
  run_until_total(&c, &total, 64 * 20, 60000);
  for (i = 0; i < 64; i++) {
    assert_int_equal(a[i].done, 20);
    assert_int_equal(a[i].status, 0);
  }
  for (k = 0; k < c.rec.n; k++)
    if (c.rec.ev[k].type == PP_TRACE_REQUEST && c.rec.ev[k].code > 0 &&
        strcmp(c.rec.ev[k].detail, "async") == 0)
      queued++;
  assert_true(queued > 0);
  assert_int_equal(pp_pool_status(c.pool, &st), 0);
  assert_int_equal(st.checkouts, 64 * 20);
  assert_int_equal(st.checkins, 64 * 20);
  assert_int_equal(st.requests, 64 * 20);
  assert_int_equal(st.idle, 2);
  assert_int_equal(st.waiters, 0);
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  ctx_stop(&c);
}

/* Calls queued on one worker are answered in order: none behind a request
 * that blocks is answered before it; when that worker crashes, every call
 * queued on it fails with PP_ECRASHED, and the pool serves again. */
static void test_async_crash_fails_the_ring(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  const char *echo = "{\"cmd\":\"echo\",\"args\":1}";
  char fifo[128];
  acall_t a[4];
  int i, total = 0;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.pipeline_depth", "4");
  ctx_start(&c, cfg, 1);
  gated_calls(&c, a, &total, fifo, sizeof(fifo), "async-crash", "crash");
  /* All four are written to the one worker, which blocks in the first. */
  run_until_events(&c, PP_TRACE_REQUEST, 4, 10000);
  uv_run(&c.loop, UV_RUN_NOWAIT);
  assert_int_equal(total, 0);
  fifo_release(fifo);
  run_until_total(&c, &total, 4, 10000);
  for (i = 0; i < 4; i++) {
    assert_int_equal(a[i].done, 1);
    assert_int_equal(a[i].status, PP_ECRASHED);
    assert_true(a[i].msg[0] != '\0');
  }
  unlink(fifo);
  run_until_events(&c, PP_TRACE_HELLO, 2, 10000);
  a[0].done = 0;
  async_submit(&a[0], echo, -1);
  run_until_total(&c, &total, 5, 10000);
  assert_int_equal(a[0].status, 0);
  assert_string_equal(a[0].reply, "1");
  ctx_stop(&c);
}

/* A request past worker.request_timeout fails with PP_ETIMEDOUT, the calls
 * queued behind it with PP_ECRASHED, and the worker is replaced. */
static void test_async_request_timeout(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  const char *slow = "{\"cmd\":\"sleep\",\"args\":30}";
  const char *echo = "{\"cmd\":\"echo\",\"args\":1}";
  acall_t a[3];
  int i, total = 0;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.pipeline_depth", "4");
  cfg_set(cfg, "worker.request_timeout", "200ms");
  ctx_start(&c, cfg, 1);
  acalls_init(a, 3, &c, &total);
  for (i = 0; i < 3; i++)
    async_submit(&a[i], i == 0 ? slow : echo, -1);
  run_until_total(&c, &total, 3, 20000);
  assert_int_equal(a[0].status, PP_ETIMEDOUT);
  assert_non_null(strstr(a[0].msg, "timed out after 200ms"));
  for (i = 1; i < 3; i++) {
    assert_int_equal(a[i].status, PP_ECRASHED);
    assert_non_null(strstr(a[i].msg, "a request ahead timed out"));
  }
  run_until_events(&c, PP_TRACE_HELLO, 2, 10000);
  ctx_stop(&c);
}

/* A call's timeout_ms bounds the whole call: past it, while its request
 * runs, the caller gets PP_ETIMEDOUT at once; the request runs on
 * (on_client_death: finish) and its reply is dropped, and the call queued
 * behind it on the same worker is not harmed. */
static void test_async_call_deadline(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  const char *echo = "{\"cmd\":\"echo\",\"args\":1}";
  char fifo[128], gate[256];
  pp_status_t st;
  acall_t a[2];
  int total = 0;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.pipeline_depth", "4");
  cfg_set(cfg, "worker.request_timeout", "5m");
  ctx_start(&c, cfg, 1);
  fifo_make(fifo, sizeof(fifo), "async-deadline");
  snprintf(gate, sizeof(gate), "{\"cmd\":\"gate\",\"args\":{\"fifo\":\"%s\"}}",
           fifo);
  acalls_init(a, 2, &c, &total);
  async_submit(&a[0], gate, 200);
  async_submit(&a[1], echo, -1);
  run_until_total(&c, &total, 1, 20000);
  assert_int_equal(a[0].done, 1);
  assert_int_equal(a[0].status, PP_ETIMEDOUT);
  assert_non_null(strstr(a[0].msg, "timeout_ms"));
  assert_int_equal(a[1].done, 0);
  fifo_release(fifo);
  unlink(fifo);
  run_until_total(&c, &total, 2, 20000);
  assert_int_equal(a[1].status, 0);
  assert_string_equal(a[1].reply, "1");
  run_until_events(&c, PP_TRACE_STALE_REPLY, 1, 10000);
  assert_int_equal(pp_pool_status(c.pool, &st), 0);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(st.errors, 1);
  assert_int_equal(st.stale_replies, 1);
  pp_status_free(&st);
  ctx_stop(&c);
}

/* The same with on_client_death: cancel: the handler sees
 * portpool_worker.cancelled() and returns early; the call behind it gets
 * its reply from the same worker. */
static void test_async_call_deadline_cancel(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  const char *slow = "{\"cmd\":\"cancelled_sleep\",\"args\":60}";
  const char *echo = "{\"cmd\":\"echo\",\"args\":2}";
  pp_status_t st;
  acall_t a[2];
  int total = 0;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.pipeline_depth", "4");
  cfg_set(cfg, "on_client_death", "cancel");
  ctx_start(&c, cfg, 1);
  acalls_init(a, 2, &c, &total);
  async_submit(&a[0], slow, 200);
  async_submit(&a[1], echo, -1);
  run_until_total(&c, &total, 2, 20000);
  assert_int_equal(a[0].status, PP_ETIMEDOUT);
  assert_int_equal(a[1].status, 0);
  assert_string_equal(a[1].reply, "2");
  run_until_events(&c, PP_TRACE_STALE_REPLY, 1, 10000);
  assert_int_equal(pp_pool_status(c.pool, &st), 0);
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  ctx_stop(&c);
}

/* Calls wait in FIFO order while the only worker is leased: past
 * max_waiters a call is refused at once (PP_EBUSY), a wait past its
 * timeout fails with the reason, and a check-in serves the next. */
static void test_async_waits_for_a_worker(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  const char *echo = "{\"cmd\":\"echo\",\"args\":7}";
  pp_lease_t *lease;
  acall_t a[2];
  int total = 0;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "checkout.max_waiters", "1");
  ctx_start(&c, cfg, 1);
  acalls_init(a, 2, &c, &total);
  lease = checkout(&c, -1);
  assert_non_null(lease);
  async_submit(&a[0], echo, 50);
  assert_int_equal(
      pp_call_async(c.pool, echo, strlen(echo), -1, on_async, &a[1]), PP_EBUSY);
  run_until_total(&c, &total, 1, 10000);
  assert_int_equal(a[0].status, PP_ETIMEDOUT);
  assert_non_null(strstr(a[0].msg, "busy"));
  /* Waiting when the lease comes back: it gets the worker. */
  async_submit(&a[1], echo, -1);
  uv_run(&c.loop, UV_RUN_NOWAIT);
  assert_int_equal(total, 1);
  pp_checkin(lease);
  run_until_total(&c, &total, 2, 10000);
  assert_int_equal(a[1].status, 0);
  assert_string_equal(a[1].reply, "7");
  ctx_stop(&c);
}

/* Calls other threads submit count against max_waiters when the loop
 * takes them, in FIFO order; one withdrawn before that (cancelled) is not
 * counted, and later batches are measured against what still waits. */
typedef struct submitter {
  ctx_t *c;
  acall_t *a;
  int from, to;
  pp_cancel_t *token; /* one more call first, on this token, cancelled
                         after the others are in */
  int *total;
  int cancelled_status;
} submitter_t;

static void on_cancelled_result(const pp_result_t *res, void *data) {
  submitter_t *s = data;

  s->cancelled_status = res->status;
  (*s->total)++;
}

static void submit_thread(void *arg) {
  const char *echo = "{\"cmd\":\"echo\",\"args\":7}";
  submitter_t *s = arg;
  pp_call_opts_t o = {.timeout_ms = -1, .cancel = s->token};

  if (s->token)
    assert_int_equal(pp_call_async_with(s->c->pool, echo, strlen(echo), &o,
                                        on_cancelled_result, s),
                     0);
  for (int i = s->from; i < s->to; i++)
    async_submit(&s->a[i], echo, -1);
  if (s->token)
    assert_int_equal(pp_cancel(s->token), 1);
}

static void submit_from_thread(submitter_t *s) {
  uv_thread_t t;

  assert_int_equal(uv_thread_create(&t, submit_thread, s), 0);
  uv_thread_join(&t);
}

static void test_async_accept_from_threads(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pp_lease_t *lease;
  submitter_t s;
  pp_status_t st;
  acall_t a[6];
  int i, total = 0;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "checkout.max_waiters", "3");
  ctx_start(&c, cfg, 1);
  acalls_init(a, 6, &c, &total);
  lease = checkout(&c, -1);
  assert_non_null(lease);
  memset(&s, 0, sizeof(s));
  s.c = &c;
  s.a = a;
  s.total = &total;
  s.from = 0;
  s.to = 5;
  assert_int_equal(pp_cancel_new(c.pool, &s.token), 0);
  submit_from_thread(&s);
  /* The cancelled call, and the two past max_waiters. */
  run_until_total(&c, &total, 3, 10000);
  assert_int_equal(s.cancelled_status, PP_ECANCELED);
  for (i = 0; i < 3; i++)
    assert_int_equal(a[i].done, 0);
  assert_int_equal(a[3].status, PP_EBUSY);
  assert_int_equal(a[4].status, PP_EBUSY);
  pp_cancel_free(s.token);
  /* Three still wait: the next one is refused too. */
  s.token = NULL;
  s.from = 5;
  s.to = 6;
  submit_from_thread(&s);
  run_until_total(&c, &total, 4, 10000);
  assert_int_equal(a[5].status, PP_EBUSY);
  pp_checkin(lease);
  run_until_total(&c, &total, 7, 10000);
  for (i = 0; i < 3; i++) {
    assert_int_equal(a[i].status, 0);
    assert_string_equal(a[i].reply, "7");
  }
  assert_int_equal(pp_pool_status(c.pool, &st), 0);
  assert_int_equal(st.rejected, 3);
  assert_int_equal(st.waiters, 0);
  pp_status_free(&st);
  ctx_stop(&c);
}

/* A checkout waiting behind a stream of calls gets the worker: the ring
 * takes no new calls while a lease waits, and drains. */
static void test_async_lease_not_starved(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pp_lease_t *lease;
  acall_t a[8];
  int i, total = 0;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.pipeline_depth", "4");
  ctx_start(&c, cfg, 1);
  acalls_init(a, 8, &c, &total);
  for (i = 0; i < 8; i++)
    stream_start(&a[i], 1000000);
  run_until_total(&c, &total, 100, 10000);
  lease = checkout(&c, 10000 * test_time_scale());
  assert_int_equal(c.checkout_status, 0);
  assert_non_null(lease);
  pp_checkin(lease);
  streams_stop(&c, a, 8);
  for (i = 0; i < 8; i++)
    assert_int_equal(a[i].status, 0);
  ctx_stop(&c);
}

/* A thread calling blocking pp_call on the loop-face pool: `calls` calls,
 * or until told to stop; it wakes the test's loop when it is done. */
typedef struct blocker {
  pp_pool_t *pool;
  uv_async_t *wake;
  int calls;
  int stop; /* atomic */
  int done; /* atomic */
  int ok;   /* read after the join */
  int status;
  uv_thread_t thread;
} blocker_t;

static void blocker_run(void *arg) {
  blocker_t *b = arg;
  const char *echo = "{\"cmd\":\"echo\",\"args\":3}";
  pp_buf_t reply = {0};
  pp_diag_t d;

  while (b->calls ? b->ok < b->calls
                  : !__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE)) {
    b->status = pp_call(b->pool, echo, strlen(echo), &reply, -1, &d);
    if (b->status != 0) {
      fprintf(stderr, "pp_call: %s: %s\n", pp_strerror(b->status), d.message);
      break;
    }
    b->ok++;
  }
  pp_buf_free(&reply);
  __atomic_store_n(&b->done, 1, __ATOMIC_RELEASE);
  uv_async_send(b->wake);
}

static void on_wake(uv_async_t *h) { (void)h; }

static int blockers_done(blocker_t *b, int n) {
  for (int i = 0; i < n; i++)
    if (!__atomic_load_n(&b[i].done, __ATOMIC_ACQUIRE))
      return 0;
  return 1;
}

static void run_until_blockers(ctx_t *c, blocker_t *b, int n) {
  c->timed_out = 0;
  uv_timer_start(&c->guard, on_guard, 60000ull * test_time_scale(), 0);
  while (!blockers_done(b, n) && !c->timed_out)
    uv_run(&c->loop, UV_RUN_ONCE);
  uv_timer_stop(&c->guard);
  assert_false(c->timed_out);
  for (int i = 0; i < n; i++)
    uv_thread_join(&b[i].thread);
}

/* Blocking pipelined pp_calls and pp_call_async share a worker: a ring of
 * one kind takes no new calls while the other kind waits, and the idle
 * worker goes to the oldest waiting call, so neither starves the other
 * under a stream that never lets up (a starved call would time out). */
static void test_async_and_blocking_share(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  const char *echo = "{\"cmd\":\"echo\",\"args\":4}";
  blocker_t b[4];
  uv_async_t wake;
  acall_t a[8], x;
  int i, total = 0, xtotal = 0;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.pipeline_depth", "4");
  /* A starved call would time out; the limit only fires on failure. */
  cfg_set(cfg, "checkout.timeout", "30s");
  ctx_start(&c, cfg, 1);
  uv_async_init(&c.loop, &wake, on_wake);
  memset(b, 0, sizeof(b));
  for (i = 0; i < 4; i++) {
    b[i].pool = c.pool;
    b[i].wake = &wake;
  }
  /* A stream of async calls; a thread's 20 blocking calls get through. */
  acalls_init(a, 8, &c, &total);
  for (i = 0; i < 8; i++)
    stream_start(&a[i], 1000000);
  run_until_total(&c, &total, 50, 10000);
  b[0].calls = 20;
  assert_int_equal(uv_thread_create(&b[0].thread, blocker_run, &b[0]), 0);
  run_until_blockers(&c, b, 1);
  assert_int_equal(b[0].status, 0);
  assert_int_equal(b[0].ok, 20);
  streams_stop(&c, a, 8);
  for (i = 0; i < 8; i++)
    assert_int_equal(a[i].status, 0);
  /* The other way round: threads that never stop; an async call gets
   * through. */
  memset(b, 0, sizeof(b));
  for (i = 0; i < 4; i++) {
    b[i].pool = c.pool;
    b[i].wake = &wake;
    assert_int_equal(uv_thread_create(&b[i].thread, blocker_run, &b[i]), 0);
  }
  memset(&x, 0, sizeof(x));
  x.c = &c;
  x.total = &xtotal;
  async_submit(&x, echo, -1);
  run_until_total(&c, &xtotal, 1, 10000);
  assert_int_equal(x.status, 0);
  assert_string_equal(x.reply, "4");
  for (i = 0; i < 4; i++)
    __atomic_store_n(&b[i].stop, 1, __ATOMIC_RELEASE);
  run_until_blockers(&c, b, 4);
  for (i = 0; i < 4; i++)
    assert_int_equal(b[i].status, 0);
  uv_close((uv_handle_t *)&wake, NULL);
  ctx_stop(&c);
}

/* Calls made before any worker is ready wait for one, then all complete. */
static void test_async_before_ready(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 2);
  acall_t a[8];
  int i, total = 0;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.pipeline_depth", "2");
  ctx_start(&c, cfg, 0);
  acalls_init(a, 8, &c, &total);
  for (i = 0; i < 8; i++)
    stream_start(&a[i], 3);
  run_until_total(&c, &total, 8 * 3, 30000);
  for (i = 0; i < 8; i++) {
    assert_int_equal(a[i].done, 3);
    assert_int_equal(a[i].status, 0);
  }
  assert_int_equal(c.ready_status, 0);
  /* They did wait: no worker had said HELLO when they were made. */
  assert_true(rec_count(&c.rec, PP_TRACE_CHECKOUT_WAIT) >= 1);
  ctx_stop(&c);
}

/* A rolling restart under a stream of calls: each ring drains once the
 * worker's replacement is ready and the replacement takes over; no call
 * fails and every worker is replaced. */
static void test_async_rolling_restart(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 2);
  pp_status_t st;
  acall_t a[16];
  int i, total = 0;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.pipeline_depth", "4");
  ctx_start(&c, cfg, 1);
  acalls_init(a, 16, &c, &total);
  for (i = 0; i < 16; i++)
    stream_start(&a[i], 1000000);
  run_until_total(&c, &total, 100, 10000);
  assert_int_equal(pp_pool_restart(c.pool, -1), 0);
  /* Two replacements said HELLO and both old workers exited, retired. */
  run_until_events(&c, PP_TRACE_HELLO, 4, 30000);
  run_until_events(&c, PP_TRACE_EXIT, 2, 30000);
  streams_stop(&c, a, 16);
  for (i = 0; i < 16; i++)
    assert_int_equal(a[i].status, 0);
  assert_int_equal(pp_pool_status(c.pool, &st), 0);
  assert_int_equal(st.errors, 0);
  assert_int_equal(st.restarts, 0);
  for (i = 0; i < 2; i++)
    assert_int_equal(st.workers[i].generation, 2);
  assert_int_equal(st.idle, 2);
  pp_status_free(&st);
  ctx_stop(&c);
}

/* A worker that answers a queued call with the wrong id (or twice) broke
 * the protocol: the calls queued on it fail with PP_EPROTO, the calls
 * answered before keep their replies, and a new worker serves. */
static void async_protocol_case(const char *bad) {
  pp_config_t *cfg = bad_worker_config("per_request", 1);
  const char *echo = "{\"cmd\":\"echo\",\"args\":5}";
  char req[64];
  acall_t a[4];
  int i, total = 0;
  ctx_t c;

  cfg_set(cfg, "worker.pipeline_depth", "4");
  ctx_start(&c, cfg, 1);
  snprintf(req, sizeof(req), "{\"cmd\":\"%s\",\"args\":0}", bad);
  acalls_init(a, 4, &c, &total);
  for (i = 0; i < 4; i++)
    async_submit(&a[i], i == 1 ? req : echo, -1);
  run_until_total(&c, &total, 4, 10000);
  assert_int_equal(a[0].status, 0);
  assert_string_equal(a[0].reply, "5");
  for (i = 2; i < 4; i++)
    assert_int_equal(a[i].status, PP_EPROTO);
  /* unknown_id: its own reply never came.  dup_reply: its reply came, the
   * copy is what breaks the protocol for the calls behind it. */
  assert_int_equal(a[1].status, strcmp(bad, "dup_reply") ? PP_EPROTO : 0);
  assert_int_equal(rec_count(&c.rec, PP_TRACE_PROTOCOL_ERROR), 1);
  run_until_events(&c, PP_TRACE_HELLO, 2, 10000);
  a[0].done = 0;
  async_submit(&a[0], echo, -1);
  run_until_total(&c, &total, 5, 10000);
  assert_int_equal(a[0].status, 0);
  ctx_stop(&c);
}

static void test_async_protocol_error(void **state) {
  (void)state;
  async_protocol_case("unknown_id");
  async_protocol_case("dup_reply");
}

/* Stop lets the calls already on a worker finish (within drain_timeout). */
static void test_async_stop_lets_calls_finish(void **state) {
  const char *slow = "{\"cmd\":\"sleep\",\"args\":0.2}";
  acall_t a[2];
  int i, total = 0;
  ctx_t c;

  (void)state;
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  cfg_set(cfg, "worker.pipeline_depth", "2");
  cfg_set(cfg, "worker.drain_timeout", "60s"); /* only fires on failure */
  ctx_start(&c, cfg, 1);
  acalls_init(a, 2, &c, &total);
  for (i = 0; i < 2; i++)
    async_submit(&a[i], slow, -1);
  run_until_events(&c, PP_TRACE_REQUEST, 2, 10000);
  pp_pool_stop(c.pool, on_closed, &c);
  run_until(&c, &c.closed, 30000);
  for (i = 0; i < 2; i++) {
    assert_int_equal(a[i].done, 1);
    assert_int_equal(a[i].status, 0);
    assert_string_equal(a[i].reply, "0.2");
  }
  ctx_finish(&c);
}

/* Stop: waiting calls fail at once with PP_ECLOSED, calls queued on a
 * worker end when it is stopped; each callback runs exactly once, and a
 * call after stop is refused. */
static void test_async_stop(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  const char *echo = "{\"cmd\":\"echo\",\"args\":1}";
  char fifo[128];
  acall_t a[4];
  int i, total = 0;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.pipeline_depth", "2");
  cfg_set(cfg, "worker.drain_timeout", "100ms");
  ctx_start(&c, cfg, 1);
  gated_calls(&c, a, &total, fifo, sizeof(fifo), "async-stop", "open");
  run_until_events(&c, PP_TRACE_REQUEST, 2, 10000);
  pp_pool_stop(c.pool, on_closed, &c);
  assert_int_equal(
      pp_call_async(c.pool, echo, strlen(echo), -1, on_async, &a[0]),
      PP_ECLOSED);
  run_until(&c, &c.closed, 30000);
  for (i = 0; i < 4; i++) {
    assert_int_equal(a[i].done, 1);
    assert_int_equal(a[i].status, PP_ECLOSED);
  }
  assert_non_null(strstr(a[2].msg, "closing"));
  unlink(fifo);
  ctx_finish(&c);
}

static void on_reply_checkin(pp_lease_t *lease, int status, const char *reply,
                             size_t len, const pp_diag_t *diag, void *data) {
  on_reply(lease, status, reply, len, diag, data);
  pp_checkin(lease);
}

/* pp_pool_stop with a loop-face request in flight on a `gate` (the FIFO
 * is never released): its callback runs once, with PP_ECLOSED, whether
 * the stop's drain_timeout ends it or (kill) the worker dies on its own
 * meanwhile. */
static void stop_with_request_in_flight(const char *drain, int kill_it) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  char fifo[128], payload[256];
  pp_lease_t *lease;
  ctx_t c;

  cfg_set(cfg, "worker.drain_timeout", drain);
  cfg_set(cfg, "worker.kill_grace", "200ms");
  ctx_start(&c, cfg, 1);
  fifo_make(fifo, sizeof(fifo), "stop-in-flight");
  snprintf(payload, sizeof(payload),
           "{\"cmd\":\"gate\",\"args\":{\"fifo\":\"%s\"}}", fifo);
  lease = checkout(&c, -1);
  assert_non_null(lease);
  assert_int_equal(
      pp_request(lease, payload, strlen(payload), -1, on_reply_checkin, &c), 0);
  run_until_events(&c, PP_TRACE_REQUEST, 1, 10000);
  pp_pool_stop(c.pool, on_closed, &c);
  if (kill_it)
    assert_int_equal(kill(pp_lease_pid(lease), SIGKILL), 0);
  run_until(&c, &c.closed, 30000);
  unlink(fifo);
  assert_int_equal(c.reply_calls, 1);
  assert_int_equal(c.reply_status, PP_ECLOSED);
  assert_non_null(strstr(c.reply_msg, "closing"));
  ctx_finish(&c);
}

/* Past drain_timeout. */
static void test_stop_fails_request_in_flight(void **state) {
  (void)state;
  stop_with_request_in_flight("100ms", 0);
}

/* A worker that dies on its own while pp_pool_stop waits for its request
 * (only the kill ends it): the close cut the call, as for every other
 * kind. */
static void test_stop_then_worker_dies(void **state) {
  (void)state;
  stop_with_request_in_flight("60s", 1);
}

/* A reply that arrived before the deadline timer ran is the answer: the
 * request succeeds and the worker is kept. */
static void test_reply_read_before_timeout(void **state) {
  char fifo[128], payload[256];
  pp_lease_t *lease;
  late_t l;
  ctx_t c;

  (void)state;
  ctx_start(&c, python_config("echo_handlers.py", 1), 1);
  memset(&l, 0, sizeof(l));
  fifo_make(fifo, sizeof(fifo), "reply-before-timer");
  l.point = "timer";
  l.fifo = fifo;
  snprintf(payload, sizeof(payload),
           "{\"cmd\":\"gate\",\"args\":{\"fifo\":\"%s\"}}", fifo);
  lease = checkout(&c, -1);
  assert_non_null(lease);
  pp_test_fault_hook(c.pool, late_hook, &l);
  assert_int_equal(
      pp_request(lease, payload, strlen(payload), 200, on_reply, &c), 0);
  run_until(&c, &c.reply_calls, 30000);
  pp_test_fault_hook(c.pool, NULL, NULL);
  unlink(fifo);
  assert_true(l.fired);
  assert_true(l.readable);
  assert_int_equal(c.reply_status, 0);
  assert_string_equal(c.reply, "\"opened\"");
  pp_checkin(lease);
  assert_workers_kept(c.pool, &c.rec);
  ctx_stop(&c);
}

/* The same for pp_call_async: the reply in the pipe when the ring's
 * deadline timer runs answers the call; the worker is kept. */
static void test_async_reply_read_before_timeout(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  char fifo[128], payload[256];
  int total = 0;
  acall_t a;
  late_t l;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.pipeline_depth", "4");
  cfg_set(cfg, "worker.request_timeout", "200ms");
  ctx_start(&c, cfg, 1);
  memset(&l, 0, sizeof(l));
  fifo_make(fifo, sizeof(fifo), "async-before-timer");
  l.point = "timer";
  l.fifo = fifo;
  snprintf(payload, sizeof(payload),
           "{\"cmd\":\"gate\",\"args\":{\"fifo\":\"%s\"}}", fifo);
  acalls_init(&a, 1, &c, &total);
  pp_test_fault_hook(c.pool, late_hook, &l);
  async_submit(&a, payload, -1);
  run_until_total(&c, &total, 1, 30000);
  pp_test_fault_hook(c.pool, NULL, NULL);
  unlink(fifo);
  assert_true(l.fired);
  assert_true(l.readable);
  assert_int_equal(a.status, 0);
  assert_string_equal(a.reply, "\"opened\"");
  assert_workers_kept(c.pool, &c.rec);
  ctx_stop(&c);
}

/* On the loop face too, a lease reclaimed with its closed client is
 * fenced until checked in: pp_request refuses it with PP_ECANCELED. */
static void test_request_on_reclaimed_lease(void **state) {
  pp_client_t *client;
  pp_lease_t *lease;
  ctx_t c;

  (void)state;
  ctx_start(&c, python_config("echo_handlers.py", 1), 1);
  assert_int_equal(pp_client_open(c.pool, &client), 0);
  c.checkout_status = 1;
  checked_out = NULL;
  assert_int_equal(pp_checkout(c.pool, client, -1, on_checkout, &c), 0);
  while (c.checkout_status == 1)
    uv_run(&c.loop, UV_RUN_ONCE);
  lease = checked_out;
  assert_non_null(lease);
  pp_client_close(client);
  assert_int_equal(pp_request(lease, "{\"cmd\":\"pid\"}", 13, -1, on_reply, &c),
                   PP_ECANCELED);
  pp_checkin(lease);
  assert_int_equal(c.reply_calls, 0);
  ctx_stop(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loop_request),
      cmocka_unit_test(test_warming_reason),
      cmocka_unit_test(test_loop_handler_diag),
      cmocka_unit_test(test_loop_crash),
      cmocka_unit_test(test_checkin_in_flight),
      cmocka_unit_test(test_status_proc_figures),
      cmocka_unit_test(test_startup_timeout),
      cmocka_unit_test(test_crash_loop_degrades),
      cmocka_unit_test(test_crash_history_bounded),
      cmocka_unit_test(test_crash_count_past_ring),
      cmocka_unit_test(test_async_calls),
      cmocka_unit_test(test_async_crash_fails_the_ring),
      cmocka_unit_test(test_async_request_timeout),
      cmocka_unit_test(test_async_call_deadline),
      cmocka_unit_test(test_async_call_deadline_cancel),
      cmocka_unit_test(test_async_waits_for_a_worker),
      cmocka_unit_test(test_async_accept_from_threads),
      cmocka_unit_test(test_async_lease_not_starved),
      cmocka_unit_test(test_async_protocol_error),
      cmocka_unit_test(test_async_and_blocking_share),
      cmocka_unit_test(test_async_rolling_restart),
      cmocka_unit_test(test_async_before_ready),
      cmocka_unit_test(test_async_stop),
      cmocka_unit_test(test_async_stop_lets_calls_finish),
      cmocka_unit_test(test_stop_fails_request_in_flight),
      cmocka_unit_test(test_stop_then_worker_dies),
      cmocka_unit_test(test_reply_read_before_timeout),
      cmocka_unit_test(test_async_reply_read_before_timeout),
      cmocka_unit_test(test_request_on_reclaimed_lease),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
