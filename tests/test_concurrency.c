/* test_concurrency.c -- worker.concurrency through the pool, on real
 * Python workers (fixtures/concurrency_handlers.py): one worker runs N
 * calls at once (plain handlers meet at a barrier, from threads in
 * pp_call and from pp_call_async), answers them out of order, cancels or
 * times out one without harming the others, counts them in status, and
 * fails them all when it dies. */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct done {
  uv_mutex_t mu;
  uv_cond_t cv;
  int n;           /* callbacks so far */
  int status[8];   /* in the order they came */
  char tag[8][32]; /* each call's data tag, in the same order */
} done_t;

typedef struct one {
  done_t *d;
  const char *tag;
} one_t;

static void done_init(done_t *d) {
  memset(d, 0, sizeof(*d));
  uv_mutex_init(&d->mu);
  uv_cond_init(&d->cv);
}

static void done_free(done_t *d) {
  uv_mutex_destroy(&d->mu);
  uv_cond_destroy(&d->cv);
}

static void on_result(const pp_result_t *res, void *data) {
  one_t *o = data;
  done_t *d = o->d;

  uv_mutex_lock(&d->mu);
  if (d->n < 8) {
    d->status[d->n] = res->status;
    snprintf(d->tag[d->n], sizeof(d->tag[0]), "%s", o->tag);
  }
  d->n++;
  uv_cond_broadcast(&d->cv);
  uv_mutex_unlock(&d->mu);
}

/* Wait for n callbacks in all (a guard that fires only on failure). */
static void done_wait(done_t *d, int n) {
  uint64_t limit = 60000000000ull * (uint64_t)test_time_scale();

  uv_mutex_lock(&d->mu);
  while (d->n < n)
    if (uv_cond_timedwait(&d->cv, &d->mu, limit) != 0)
      break;
  uv_mutex_unlock(&d->mu);
  if (d->n < n)
    fail_msg("%d of %d calls ended", d->n, n);
}

static pp_pool_t *pool_open(rec_t *rec, int size, int concurrency) {
  pp_config_t *cfg = python_config("concurrency_handlers.py", size);
  pp_pool_options_t o = rec_options(rec);
  pp_pool_t *pool;
  pp_diag_t d;
  char v[16];

  snprintf(v, sizeof(v), "%d", concurrency);
  cfg_set(cfg, "worker.concurrency", v);
  cfg_set(cfg, "on_client_death", "cancel");
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

static void async_call(pp_pool_t *pool, const char *payload, one_t *o,
                       const pp_call_opts_t *opts) {
  assert_int_equal(
      pp_call_async_with(pool, payload, strlen(payload), opts, on_result, o),
      0);
}

static uint64_t restarts(pp_pool_t *pool) {
  pp_status_t st;
  uint64_t n;

  assert_int_equal(pp_pool_status(pool, &st), 0);
  n = st.restarts;
  pp_status_free(&st);
  return n;
}

typedef struct caller {
  pp_pool_t *pool;
  uv_thread_t thread;
  int status;
  char msg[256];
} caller_t;

static void barrier_main(void *arg) {
  static const char req[] =
      "{\"cmd\":\"barrier\",\"args\":{\"key\":\"threads\",\"n\":4}}";
  caller_t *c = arg;
  pp_buf_t reply = {0};
  pp_diag_t d;

  memset(&d, 0, sizeof(d));
  c->status = pp_call(c->pool, req, strlen(req), &reply, -1, &d);
  snprintf(c->msg, sizeof(c->msg), "%.200s", d.message);
  pp_buf_free(&reply);
}

/* Four plain handlers meet at a barrier on one worker: they ran at once,
 * in its thread pool, whether the calls came from four threads in pp_call
 * or from pp_call_async. */
static void test_together(void **state) {
  static const char req[] =
      "{\"cmd\":\"barrier\",\"args\":{\"key\":\"async\",\"n\":4}}";
  caller_t c[4];
  one_t o[4];
  done_t d;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 1, 4);
  int i;

  (void)state;
  for (i = 0; i < 4; i++) {
    c[i].pool = pool;
    assert_int_equal(uv_thread_create(&c[i].thread, barrier_main, &c[i]), 0);
  }
  for (i = 0; i < 4; i++) {
    uv_thread_join(&c[i].thread);
    if (c[i].status != 0)
      fail_msg("pp_call %d: %s: %s", i, pp_err_name(c[i].status), c[i].msg);
  }
  done_init(&d);
  for (i = 0; i < 4; i++) {
    o[i] = (one_t){&d, "barrier"};
    async_call(pool, req, &o[i], NULL);
  }
  done_wait(&d, 4);
  for (i = 0; i < 4; i++)
    assert_int_equal(d.status[i], 0);
  done_free(&d);
  assert_int_equal(restarts(pool), 0);
  pool_close(pool, &rec);
}

/* A held call does not hold back the ones placed after it on the same
 * worker: their answers come first, and the release that ends it is one
 * of them.  While they run, status counts them in flight. */
static void test_out_of_order(void **state) {
  one_t held = {NULL, "held"}, quick = {NULL, "quick"}, rel = {NULL, "release"};
  pp_status_t st;
  done_t d;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 1, 4);

  (void)state;
  done_init(&d);
  held.d = quick.d = rel.d = &d;
  async_call(pool,
             "{\"cmd\":\"hold\",\"args\":{\"key\":\"k\",\"tag\":\"held\"}}",
             &held, NULL);
  async_call(pool, "{\"cmd\":\"add_later\",\"args\":{\"a\":1,\"b\":2}}", &quick,
             NULL);
  done_wait(&d, 1);
  assert_string_equal(d.tag[0], "quick");
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.workers[0].in_flight, 1);
  pp_status_free(&st);
  async_call(pool, "{\"cmd\":\"release\",\"args\":\"k\"}", &rel, NULL);
  done_wait(&d, 3);
  /* The release and the call it freed, in either order; all OK. */
  assert_true(strcmp(d.tag[1], "held") == 0 || strcmp(d.tag[2], "held") == 0);
  assert_int_equal(d.status[0] | d.status[1] | d.status[2], 0);
  done_free(&d);
  pool_close(pool, &rec);
}

/* One of two held calls on a worker is cancelled, the other times out:
 * each gets its own code, the worker (which cancels the tasks) is kept,
 * and a third call beside them is answered. */
static void test_cancel_and_deadline(void **state) {
  one_t a = {NULL, "cancelled"}, b = {NULL, "timed out"}, c = {NULL, "ok"};
  pp_call_opts_t oa = {.timeout_ms = -1}, ob = {.timeout_ms = 0};
  pp_cancel_t *token;
  done_t d;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 1, 4);

  (void)state;
  done_init(&d);
  a.d = b.d = c.d = &d;
  assert_int_equal(pp_cancel_new(pool, &token), 0);
  oa.cancel = token;
  ob.timeout_ms = 300 * test_time_scale();
  async_call(pool, "{\"cmd\":\"hold\",\"args\":{\"key\":\"a\",\"tag\":\"a\"}}",
             &a, &oa);
  async_call(pool, "{\"cmd\":\"hold\",\"args\":{\"key\":\"b\",\"tag\":\"b\"}}",
             &b, &ob);
  /* Both placed on the worker before the cancel. */
  if (rec_wait(&rec, PP_TRACE_REQUEST, 2, 60000 * test_time_scale()) != 0)
    fail_msg("the calls were not sent");
  assert_int_equal(pp_cancel(token), 1);
  done_wait(&d, 2);
  assert_string_equal(d.tag[0], "cancelled");
  assert_int_equal(d.status[0], PP_ECANCELED);
  assert_string_equal(d.tag[1], "timed out");
  assert_int_equal(d.status[1], PP_ETIMEDOUT);
  async_call(pool, "{\"cmd\":\"echo\",\"args\":7}", &c, NULL);
  done_wait(&d, 3);
  assert_int_equal(d.status[2], 0);
  assert_int_equal(pp_pool_quiesce(pool, 60000 * test_time_scale(), NULL), 0);
  assert_int_equal(restarts(pool), 0);
  done_free(&d);
  pool_close(pool, &rec);
  pp_cancel_free(token);
}

/* A worker that dies with three calls in flight fails all three (any of
 * them may have begun: none is sent again), and is replaced. */
static void test_death_fails_all(void **state) {
  one_t h1 = {NULL, "h1"}, h2 = {NULL, "h2"}, ex = {NULL, "exit"};
  done_t d;
  rec_t rec;
  pp_pool_t *pool = pool_open(&rec, 1, 4);
  int i;

  (void)state;
  done_init(&d);
  h1.d = h2.d = ex.d = &d;
  async_call(pool, "{\"cmd\":\"hold\",\"args\":{\"key\":\"x\",\"tag\":\"1\"}}",
             &h1, NULL);
  async_call(pool, "{\"cmd\":\"hold\",\"args\":{\"key\":\"y\",\"tag\":\"2\"}}",
             &h2, NULL);
  async_call(pool, "{\"cmd\":\"exit_with\",\"args\":3}", &ex, NULL);
  done_wait(&d, 3);
  for (i = 0; i < 3; i++)
    assert_int_equal(d.status[i], PP_ECRASHED);
  /* Replaced: a second HELLO. */
  if (rec_wait(&rec, PP_TRACE_HELLO, 2, 60000 * test_time_scale()) != 0)
    fail_msg("the worker was not replaced");
  done_free(&d);
  pool_close(pool, &rec);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_together),
      cmocka_unit_test(test_out_of_order),
      cmocka_unit_test(test_cancel_and_deadline),
      cmocka_unit_test(test_death_fails_all),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
