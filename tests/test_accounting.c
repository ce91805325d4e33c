/* test_accounting.c -- every kind of call is counted the same way (call.c):
 * a lease's calls on the caller's thread (pp_lease_call) and on the loop
 * (pp_request), pp_call on a lease of its own (pipeline_depth 1),
 * pipelined pp_calls and pp_call_async.  For each, with real Python
 * workers and one handler error among the calls:
 *   - queue_wait gains one value per checkout (checkouts);
 *   - run_time gains one value per answered request, and the workers'
 *     run_time histograms gain exactly the same values (count and sum):
 *     the pool-wide figure measures what the per-worker one does, from the
 *     request handed over to its answer, not the wait before it;
 *   - requests and errors count the calls and the failed ones. */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The figures a kind of call moves, from one status snapshot. */
typedef struct figures {
  uint64_t checkouts, requests, errors;
  uint64_t wait_count;
  uint64_t run_count, run_sum;   /* pool-wide */
  uint64_t wrun_count, wrun_sum; /* summed over the workers */
} figures_t;

static figures_t figures(pp_pool_t *pool) {
  figures_t f;
  pp_status_t st;
  int i;

  memset(&f, 0, sizeof(f));
  assert_int_equal(pp_pool_status(pool, &st), 0);
  f.checkouts = st.checkouts;
  f.requests = st.requests;
  f.errors = st.errors;
  f.wait_count = st.queue_wait.count;
  f.run_count = st.run_time.count;
  f.run_sum = st.run_time.sum_us;
  for (i = 0; i < st.nworkers; i++) {
    f.wrun_count += st.workers[i].run_time.count;
    f.wrun_sum += st.workers[i].run_time.sum_us;
  }
  pp_status_free(&st);
  return f;
}

/* What `calls` calls (one a handler error) made over `checkouts`
 * checkouts must have moved between before and after. */
static void assert_counted(const figures_t *before, const figures_t *after,
                           uint64_t checkouts, uint64_t calls) {
  assert_int_equal(after->checkouts - before->checkouts, checkouts);
  assert_int_equal(after->wait_count - before->wait_count, checkouts);
  assert_int_equal(after->requests - before->requests, calls);
  assert_int_equal(after->errors - before->errors, 1);
  assert_int_equal(after->run_count - before->run_count, calls);
  assert_int_equal(after->wrun_count - before->wrun_count, calls);
  /* The same values in both: per worker, nothing else. */
  assert_int_equal(after->run_count, after->wrun_count);
  assert_int_equal(after->run_sum, after->wrun_sum);
}

static const char *const ECHO_CALL = "{\"cmd\":\"echo\",\"args\":1}";
static const char *const FAIL_CALL = "{\"cmd\":\"fail\",\"args\":\"no\"}";

/* The i-th of a kind's calls: the second one is a handler error. */
static const char *payload(int i) { return i == 1 ? FAIL_CALL : ECHO_CALL; }

static int expected(int i) { return i == 1 ? PP_EHANDLER : 0; }

static pp_pool_t *open_blocking(int size, const char *depth) {
  pp_config_t *cfg = python_config("echo_handlers.py", size);
  pp_pool_t *pool;
  pp_diag_t d;

  cfg_set(cfg, "worker.pipeline_depth", depth);
  if (pp_pool_open(cfg, NULL, &pool, &d) != 0)
    fail_msg("pp_pool_open: %s", d.message);
  pp_config_free(cfg);
  return pool;
}

/* ---- the blocking face */

static void test_lease_call(void **state) {
  pp_pool_t *pool = open_blocking(2, "1");
  figures_t before = figures(pool), after;
  pp_buf_t reply = {0};
  pp_lease_t *lease;
  int i;

  (void)state;
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &lease, NULL), 0);
  for (i = 0; i < 4; i++)
    assert_int_equal(
        pp_lease_call(lease, payload(i), strlen(payload(i)), -1, &reply, NULL),
        expected(i));
  pp_checkin(lease);
  after = figures(pool);
  assert_counted(&before, &after, 1, 4);
  pp_buf_free(&reply);
  pp_pool_close(pool);
}

static void test_call_leased(void **state) {
  pp_pool_t *pool = open_blocking(2, "1");
  figures_t before = figures(pool), after;
  pp_buf_t reply = {0};
  int i;

  (void)state;
  for (i = 0; i < 4; i++)
    assert_int_equal(
        pp_call(pool, payload(i), strlen(payload(i)), &reply, -1, NULL),
        expected(i));
  after = figures(pool);
  assert_counted(&before, &after, 4, 4);
  pp_buf_free(&reply);
  pp_pool_close(pool);
}

typedef struct caller {
  pp_pool_t *pool;
  int first, calls, failed;
} caller_t;

static void caller_main(void *arg) {
  caller_t *c = arg;
  pp_buf_t reply = {0};
  int i, k;

  for (i = 0; i < c->calls; i++) {
    k = c->first + i;
    if (pp_call(c->pool, payload(k), strlen(payload(k)), &reply, -1, NULL) !=
        expected(k))
      c->failed++;
  }
  pp_buf_free(&reply);
}

/* Eight threads on two workers four deep: calls queue for a place and
 * share rings. */
static void test_call_pipelined(void **state) {
  pp_pool_t *pool = open_blocking(2, "4");
  figures_t before = figures(pool), after;
  uv_thread_t t[8];
  caller_t c[8];
  int i;

  (void)state;
  for (i = 0; i < 8; i++) {
    c[i] = (caller_t){.pool = pool, .first = i * 16, .calls = 16};
    assert_int_equal(uv_thread_create(&t[i], caller_main, &c[i]), 0);
  }
  for (i = 0; i < 8; i++) {
    uv_thread_join(&t[i]);
    assert_int_equal(c[i].failed, 0);
  }
  after = figures(pool);
  assert_counted(&before, &after, 128, 128);
  pp_pool_close(pool);
}

/* ---- the loop face, on the test's own loop */

typedef struct loopctx {
  uv_loop_t loop;
  pp_pool_t *pool;
  pp_lease_t *lease;
  int ready, closed, sent, done, want, finished, bad, handler_errors;
  figures_t before;
} loopctx_t;

static void on_ready(pp_pool_t *pool, int status, void *data) {
  loopctx_t *l = data;

  (void)pool;
  assert_int_equal(status, 0);
  l->ready = 1;
}

static void on_closed(pp_pool_t *pool, void *data) {
  (void)pool;
  ((loopctx_t *)data)->closed = 1;
}

/* Run the loop until *flag; the pool's own checkout timeout ends a call
 * that never completes, so no guard timer is needed beyond it. */
static void run_until(loopctx_t *l, int *flag) {
  while (!*flag)
    if (uv_run(&l->loop, UV_RUN_ONCE) == 0 && !*flag)
      fail_msg("the loop ran out of work before the test's event");
}

static void loop_open(loopctx_t *l, int size, const char *depth) {
  pp_config_t *cfg = python_config("echo_handlers.py", size);
  pp_diag_t d;

  memset(l, 0, sizeof(*l));
  cfg_set(cfg, "worker.pipeline_depth", depth);
  assert_int_equal(uv_loop_init(&l->loop), 0);
  if (pp_pool_start(&l->loop, cfg, NULL, on_ready, l, &l->pool, &d) != 0)
    fail_msg("pp_pool_start: %s", d.message);
  pp_config_free(cfg);
  run_until(l, &l->ready);
  l->before = figures(l->pool);
}

static void loop_close(loopctx_t *l) {
  pp_pool_stop(l->pool, on_closed, l);
  run_until(l, &l->closed);
  uv_run(&l->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&l->loop), 0);
}

static void on_async(int status, const char *reply, size_t len,
                     const pp_diag_t *diag, void *data) {
  loopctx_t *l = data;

  (void)reply;
  (void)len;
  (void)diag;
  /* Two workers answer in any order between them. */
  if (status == PP_EHANDLER)
    l->handler_errors++;
  else if (status != 0)
    l->bad++;
  if (++l->done == l->want)
    l->finished = 1;
  if (l->sent == l->want)
    return;
  /* Half of the calls are made from callbacks, behind the others. */
  assert_int_equal(pp_call_async(l->pool, payload(l->sent),
                                 strlen(payload(l->sent)), -1, on_async, l),
                   0);
  l->sent++;
}

static void test_call_async(void **state) {
  loopctx_t l;
  figures_t after;
  int i;

  (void)state;
  loop_open(&l, 2, "4");
  l.want = 32;
  /* 16 at once on two workers four deep: half wait for a place.  The
   * second call, in submission order, is the handler error. */
  for (i = 0; i < 16; i++)
    assert_int_equal(
        pp_call_async(l.pool, payload(i), strlen(payload(i)), -1, on_async, &l),
        0);
  l.sent = 16;
  run_until(&l, &l.finished);
  assert_int_equal(l.bad, 0);
  assert_int_equal(l.handler_errors, 1);
  after = figures(l.pool);
  assert_counted(&l.before, &after, 32, 32);
  loop_close(&l);
}

static void on_reply(pp_lease_t *lease, int status, const char *reply,
                     size_t len, const pp_diag_t *diag, void *data) {
  loopctx_t *l = data;

  (void)reply;
  (void)len;
  (void)diag;
  if (status != expected(l->done))
    l->bad++;
  if (++l->done == l->want) {
    pp_checkin(lease);
    l->finished = 1;
    return;
  }
  assert_int_equal(pp_request(lease, payload(l->done), strlen(payload(l->done)),
                              -1, on_reply, l),
                   0);
}

static void on_checkout(pp_lease_t *lease, int status, const pp_diag_t *diag,
                        void *data) {
  loopctx_t *l = data;

  (void)diag;
  assert_int_equal(status, 0);
  l->lease = lease;
  assert_int_equal(
      pp_request(lease, payload(0), strlen(payload(0)), -1, on_reply, l), 0);
}

static void test_request(void **state) {
  loopctx_t l;
  figures_t after;

  (void)state;
  loop_open(&l, 2, "1");
  l.want = 4;
  assert_int_equal(pp_checkout(l.pool, NULL, -1, on_checkout, &l), 0);
  run_until(&l, &l.finished);
  assert_int_equal(l.bad, 0);
  after = figures(l.pool);
  assert_counted(&l.before, &after, 1, 4);
  loop_close(&l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lease_call),     cmocka_unit_test(test_call_leased),
      cmocka_unit_test(test_call_pipelined), cmocka_unit_test(test_call_async),
      cmocka_unit_test(test_request),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
