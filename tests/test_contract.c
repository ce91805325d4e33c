/* test_contract.c -- the handler contract through the pool, in the run's
 * start mode (ctest runs it again with PP_START=zygote): the handler table
 * and its kinds in status, worker_id(), the lifecycle hooks (setup per
 * worker, after_fork in forked workers, teardown at a graceful stop, a
 * failing setup as a boot failure), and async handlers (results, errors,
 * a cancel raising CancelledError). */
#include "helpers.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char marks[128];

static int zygote(void) {
  const char *m = getenv("PP_START");

  return m && strcmp(m, "zygote") == 0;
}

/* How many lines of the marks file start with what. */
static int count_marks(const char *what) { return marks_count(marks, what); }

static pp_pool_t *open_contract(rec_t *rec, int size) {
  pp_config_t *cfg = python_config("contract_handlers.py", size);
  pp_pool_options_t o = rec_options(rec);
  pp_pool_t *pool;
  pp_diag_t d;

  rec_init(rec);
  if (pp_pool_open(cfg, &o, &pool, &d) != 0)
    fail_msg("pp_pool_open: %s", d.message);
  pp_config_free(cfg);
  return pool;
}

static void setup_marks(void) {
  snprintf(marks, sizeof(marks), "/tmp/pp-contract-marks-%d", (int)getpid());
  unlink(marks);
  assert_int_equal(setenv("PP_TEST_MARKS", marks, 1), 0);
}

static void test_table_and_kinds(void **state) {
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_diag_t d;
  char *js;
  rec_t rec;
  pp_pool_t *pool;

  (void)state;
  setup_marks();
  pool = open_contract(&rec, 1);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_string_equal(st.handlers,
                      "[\"add_later\",\"blob\",\"count\",\"describe\","
                      "\"endless\",\"fail_later\",\"flood\",\"give_up\","
                      "\"reverse_bytes\",\"setups\",\"ticks\",\"wait\","
                      "\"whoami\"]");
  assert_string_equal(st.handler_kinds,
                      "{\"add_later\":\"async\",\"count\":\"stream\","
                      "\"endless\":\"stream\",\"fail_later\":\"async\","
                      "\"flood\":\"stream\","
                      "\"ticks\":\"stream\",\"wait\":\"async\"}");
  js = pp_status_to_json(&st);
  assert_non_null(strstr(js, "\"handler_kinds\":{\"add_later\":\"async\""));
  free(js);
  pp_status_free(&st);
  /* Declared with @handler("whoami"): the worker's slot. */
  assert_int_equal(pp_call_cmd(pool, "whoami", NULL, &reply, -1, &d), 0);
  assert_string_equal(reply.data, "0");
  /* setup() ran once in this worker, before HELLO. */
  assert_int_equal(pp_call_cmd(pool, "setups", NULL, &reply, -1, &d), 0);
  assert_string_equal(reply.data, "1");
  /* Public but not declared, and the hooks: never called. */
  assert_int_equal(pp_call_cmd(pool, "not_declared", NULL, &reply, -1, &d),
                   PP_EHANDLER);
  assert_non_null(strstr(d.message, "UnknownCommand"));
  assert_int_equal(pp_call_cmd(pool, "teardown", NULL, &reply, -1, &d),
                   PP_EHANDLER);
  assert_non_null(strstr(d.message, "UnknownCommand"));
  /* A DeadlineExceeded error is a timeout to the caller. */
  assert_int_equal(pp_call_cmd(pool, "give_up", NULL, &reply, -1, &d),
                   PP_ETIMEDOUT);
  assert_non_null(strstr(d.message, "DeadlineExceeded: only"));
  pp_buf_free(&reply);
  pp_pool_close(pool);
  rec_free(&rec);
  unlink(marks);
}

static void test_hooks(void **state) {
  rec_t rec;
  pp_pool_t *pool;

  (void)state;
  setup_marks();
  pool = open_contract(&rec, 2);
  /* Each worker: after_fork() when the zygote forked it, then setup(),
   * both before its HELLO (the pool is open: both said it). */
  assert_int_equal(count_marks("setup"), 2);
  assert_int_equal(count_marks("after_fork"), zygote() ? 2 : 0);
  assert_int_equal(count_marks("teardown"), 0);
  /* pp_pool_close returns after every worker was reaped: each ran its
   * teardown() on the graceful stop. */
  pp_pool_close(pool);
  rec_free(&rec);
  assert_int_equal(count_marks("teardown"), 2);
  unlink(marks);
}

static void test_setup_failure_fails_fast(void **state) {
  char dir[] = "/tmp/pp-contract-XXXXXX", path[128];
  pp_config_t *cfg;
  pp_pool_options_t o = rec_options(NULL);
  pp_pool_t *pool;
  pp_diag_t d;
  FILE *f;

  (void)state;
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/badsetup.py", dir);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs("def setup():\n    raise RuntimeError('no database at db:5432')\n\n"
        "def ping(args):\n    return 'pong'\n",
        f);
  fclose(f);
  cfg = python_config("echo_handlers.py", 2);
  {
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "[%s, %s, %s]", test_path("PP_PYTHON"),
             test_path("PP_WORKER_PY"), path);
    cfg_set(cfg, "worker.command", cmd);
  }
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_pool_open(cfg, &o, &pool, &d), PP_EBOOT);
  assert_non_null(strstr(d.message, "RuntimeError: no database at db:5432"));
  pp_config_free(cfg);
  unlink(path);
  rmdir(dir);
}

typedef struct {
  uv_thread_t t;
  pp_pool_t *pool;
  pp_cancel_t *token;
  char fifo[128];
  int status;
  pp_diag_t d;
} waiter_t;

static void wait_main(void *arg) {
  waiter_t *w = arg;
  pp_call_opts_t o = {.timeout_ms = -1, .cancel = w->token};
  char req[256];
  pp_buf_t reply = {0};

  snprintf(req, sizeof(req),
           "{\"cmd\":\"wait\",\"args\":{\"secs\":60,\"ready\":\"%s\"}}",
           w->fifo);
  w->status = pp_call_with(w->pool, req, strlen(req), &reply, &o, &w->d);
  pp_buf_free(&reply);
}

static void test_async_handlers(void **state) {
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_diag_t d;
  waiter_t w;
  int fd;
  rec_t rec;
  pp_pool_t *pool;

  (void)state;
  setup_marks();
  pool = open_contract(&rec, 1);
  assert_int_equal(
      pp_call_cmd(pool, "add_later", "{\"a\":2,\"b\":3}", &reply, -1, &d), 0);
  assert_string_equal(reply.data, "5");
  assert_int_equal(pp_call_cmd(pool, "fail_later", "7", &reply, -1, &d),
                   PP_EHANDLER);
  assert_non_null(strstr(d.message, "ValueError: late: 7"));
  /* A cancel reaches the coroutine as CancelledError at its await; the
   * worker answers (dropped) and stays. */
  memset(&w, 0, sizeof(w));
  w.pool = pool;
  assert_int_equal(pp_cancel_new(pool, &w.token), 0);
  fifo_make(w.fifo, sizeof(w.fifo), "contract");
  assert_int_equal(uv_thread_create(&w.t, wait_main, &w), 0);
  /* Opened by the handler once it runs: then it awaits. */
  fd = open(w.fifo, O_RDONLY);
  assert_true(fd >= 0);
  close(fd);
  unlink(w.fifo);
  assert_int_equal(pp_cancel(w.token), 1);
  uv_thread_join(&w.t);
  assert_int_equal(w.status, PP_ECANCELED);
  assert_int_equal(rec_wait(&rec, PP_TRACE_STALE_REPLY, 1, 60000), 0);
  assert_int_equal(count_marks("cancelled"), 1);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  assert_int_equal(pp_call_cmd(pool, "wait", "0", &reply, -1, &d), 0);
  assert_string_equal(reply.data, "\"waited\"");
  /* A generator (a stream handler) says what to do instead. */
  assert_int_equal(pp_call_cmd(pool, "count", "3", &reply, -1, &d),
                   PP_EHANDLER);
  assert_non_null(strstr(d.message, "generator"));
  pp_buf_free(&reply);
  pp_cancel_free(w.token);
  pp_pool_close(pool);
  rec_free(&rec);
  unlink(marks);
}

/* The loop face: pp_call_async(_with) from this thread, its callback on
 * the pool's loop thread. */
typedef struct {
  uv_mutex_t mu;
  uv_cond_t cv;
  int done, status;
  char reply[64];
} acb_t;

static void on_acall(int status, const char *reply, size_t len,
                     const pp_diag_t *d, void *data) {
  acb_t *a = data;

  (void)d;
  uv_mutex_lock(&a->mu);
  a->done++;
  a->status = status;
  snprintf(a->reply, sizeof(a->reply), "%.*s", (int)len, reply);
  uv_cond_signal(&a->cv);
  uv_mutex_unlock(&a->mu);
}

static void on_aresult(const pp_result_t *res, void *data) {
  on_acall(res->status, res->reply, res->len, res->diag, data);
}

static void acb_init(acb_t *a) {
  memset(a, 0, sizeof(*a));
  uv_mutex_init(&a->mu);
  uv_cond_init(&a->cv);
}

static void acb_wait(acb_t *a) {
  uv_mutex_lock(&a->mu);
  while (a->done == 0)
    if (uv_cond_timedwait(&a->cv, &a->mu,
                          60000000000ull * (uint64_t)test_time_scale()) != 0)
      break;
  uv_mutex_unlock(&a->mu);
  assert_int_equal(a->done, 1);
  uv_mutex_destroy(&a->mu);
  uv_cond_destroy(&a->cv);
}

static void test_async_face(void **state) {
  const char *add = "{\"cmd\":\"add_later\",\"args\":{\"a\":1,\"b\":2}}";
  pp_call_opts_t o = {.timeout_ms = -1};
  char fifo[128], req[256];
  acb_t a;
  int fd;
  rec_t rec;
  pp_pool_t *pool;

  (void)state;
  setup_marks();
  pool = open_contract(&rec, 1);
  acb_init(&a);
  assert_int_equal(pp_call_async(pool, add, strlen(add), -1, on_acall, &a), 0);
  acb_wait(&a);
  assert_int_equal(a.status, 0);
  assert_string_equal(a.reply, "3");
  /* Cancelled through pp_call_async_with: CancelledError in the handler,
   * PP_ECANCELED to the callback, once. */
  assert_int_equal(pp_cancel_new(pool, &o.cancel), 0);
  fifo_make(fifo, sizeof(fifo), "contract-async");
  snprintf(req, sizeof(req),
           "{\"cmd\":\"wait\",\"args\":{\"secs\":60,\"ready\":\"%s\"}}", fifo);
  acb_init(&a);
  assert_int_equal(
      pp_call_async_with(pool, req, strlen(req), &o, on_aresult, &a), 0);
  fd = open(fifo, O_RDONLY);
  assert_true(fd >= 0);
  close(fd);
  unlink(fifo);
  assert_int_equal(pp_cancel(o.cancel), 1);
  acb_wait(&a);
  assert_int_equal(a.status, PP_ECANCELED);
  assert_int_equal(rec_wait(&rec, PP_TRACE_STALE_REPLY, 1, 60000), 0);
  assert_int_equal(count_marks("cancelled"), 1);
  pp_cancel_free(o.cancel);
  pp_pool_close(pool);
  rec_free(&rec);
  unlink(marks);
}

/* Bytes both ways, in this start mode: bytes in to a handler that returns
 * bytes, a JSON value, and a JSON call answered in bytes. */
static void test_bytes_both_ways(void **state) {
  static const char data[] = {0, 1, 2, (char)0xfe, (char)0xff};
  pp_buf_t reply = {0};
  pp_diag_t d;
  rec_t rec;
  pp_pool_t *pool;
  int i;

  (void)state;
  pool = open_contract(&rec, 1);
  assert_int_equal(pp_call_bytes(pool, "reverse_bytes", data, sizeof(data),
                                 &reply, NULL, &d),
                   0);
  assert_int_equal(reply.binary, 1);
  assert_int_equal(reply.len, sizeof(data));
  for (i = 0; i < (int)sizeof(data); i++)
    assert_int_equal(reply.data[i], data[sizeof(data) - 1 - (size_t)i]);
  assert_int_equal(pp_call_bytes(pool, "describe", data, 3, &reply, NULL, &d),
                   0);
  assert_int_equal(reply.binary, 0);
  assert_string_equal(reply.data, "{\"type\":\"bytes\",\"len\":3}");
  assert_int_equal(pp_call_cmd(pool, "blob", "300", &reply, -1, &d), 0);
  assert_int_equal(reply.binary, 1);
  assert_int_equal(reply.len, 300);
  assert_int_equal((unsigned char)reply.data[299], 299 % 256);
  pp_buf_free(&reply);
  pp_pool_close(pool);
  rec_free(&rec);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table_and_kinds),
      cmocka_unit_test(test_hooks),
      cmocka_unit_test(test_setup_failure_fails_fast),
      cmocka_unit_test(test_async_handlers),
      cmocka_unit_test(test_async_face),
      cmocka_unit_test(test_bytes_both_ways),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
