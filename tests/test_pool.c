/* test_pool.c -- the event-loop face on the test's own uv loop, with real
 * Python workers: readiness, checkout / request / check-in by callback,
 * the warming reason, crashes, check-in with a request in flight (the
 * reply is dropped, never delivered to the next borrower), and stop. Each
 * test ends with every handle closed and uv_loop_close() == 0. */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void ctx_stop(ctx_t *c) {
  pp_pool_stop(c->pool, on_closed, c);
  run_until(c, &c->closed, 30000);
  uv_close((uv_handle_t *)&c->guard, NULL);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&c->loop), 0);
  assert_int_equal(c->ready_calls, 1);
  rec_free(&c->rec);
}

static void on_reply(pp_lease_t *lease, int status, const char *reply,
                     size_t len, const pp_diag_t *diag, void *data) {
  ctx_t *c = data;
  (void)lease;
  (void)diag;
  c->reply_status = status;
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

/* A worker silent past startup_timeout is killed and restarted, and its
 * exit is classified as "died before HELLO". */
static void test_startup_timeout(void **state) {
  pp_config_t *cfg = python_config("slow_start.py", 1);
  pp_status_t st;
  ctx_t c;

  (void)state;
  cfg_set(cfg, "worker.env", "{PP_SLOW_START: '60'}");
  cfg_set(cfg, "worker.startup_timeout", "300ms");
  ctx_start(&c, cfg, 0);
  run_until_events(&c, PP_TRACE_SPAWN, 2, 20000);
  assert_int_equal(rec_count(&c.rec, PP_TRACE_RESTART), 1);
  assert_int_equal(rec_count(&c.rec, PP_TRACE_HELLO), 0);
  assert_int_equal(pp_pool_status(c.pool, &st), 0);
  assert_int_equal(st.workers[0].last_exit, PP_EXIT_NO_HELLO);
  assert_non_null(strstr(st.workers[0].last_exit_text, "died before HELLO"));
  pp_status_free(&st);
  ctx_stop(&c);
}

/* A worker that exits 0 at import loops no further than max_restarts:
 * the slot turns fatal, the pool degraded, and a checkout fails at once
 * with PP_EDEGRADED. */
static void test_crash_loop_degrades(void **state) {
  pp_config_t *cfg = python_config("exit_zero_on_import.py", 1);
  ctx_t c;

  (void)state;
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loop_request),
      cmocka_unit_test(test_warming_reason),
      cmocka_unit_test(test_loop_crash),
      cmocka_unit_test(test_checkin_in_flight),
      cmocka_unit_test(test_startup_timeout),
      cmocka_unit_test(test_crash_loop_degrades),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
