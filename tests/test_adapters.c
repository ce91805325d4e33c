/* test_adapters.c -- adapters and scoped configuration.  One behaviour
 * table runs against the mock and the python adapter and expects the same
 * codes, events and counters; two pools with different adapters and sizes
 * run side by side from two threads; a program-supplied adapter works
 * through the public interface; configs derived from a base never change
 * it or a running pool; the test helpers report leaks. */
#include "helpers.h"
#include <jansson.h>

#include "frame.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static pp_config_t *adapter_config(const char *adapter, int size) {
  pp_config_t *cfg;
  char n[16];

  if (strcmp(adapter, "python") == 0)
    return python_config("echo_handlers.py", size);
  assert_int_equal(pp_config_new(&cfg), 0);
  cfg_set(cfg, "adapter", "mock");
  snprintf(n, sizeof(n), "%d", size);
  cfg_set(cfg, "size", n);
  cfg_set(cfg, "restart.backoff", "[10ms, 100ms]");
  return cfg;
}

/* ---- one behaviour table, two adapters */

typedef struct scenario {
  const char *name;
  const char *payload;
  const char *request_timeout; /* NULL: default */
  int code;                    /* what the client sees */
  size_t exits;                /* worker exits it causes */
  pp_exit_kind_t last_exit;    /* the slot's classification after */
} scenario_t;

static const scenario_t table[] = {
    {"success", "{\"cmd\":\"echo\",\"args\":{\"k\":[1,2]}}", NULL, 0, 0,
     PP_EXIT_NONE},
    {"handler error", "{\"cmd\":\"fail\",\"args\":1}", NULL, PP_EHANDLER, 0,
     PP_EXIT_NONE},
    {"unknown command", "{\"cmd\":\"nope\"}", NULL, PP_EHANDLER, 0,
     PP_EXIT_NONE},
    {"bad request", "not json", NULL, PP_EHANDLER, 0, PP_EXIT_NONE},
    {"crash", "{\"cmd\":\"crash\",\"args\":7}", NULL, PP_ECRASHED, 1,
     PP_EXIT_NORMAL},
    {"hang and timeout", "{\"cmd\":\"sleep\",\"args\":60}", "200ms",
     PP_ETIMEDOUT, 1, PP_EXIT_TIMEOUT},
};

typedef struct outcome {
  int codes[sizeof(table) / sizeof(table[0])];
  size_t exits[sizeof(table) / sizeof(table[0])];
  pp_exit_kind_t kinds[sizeof(table) / sizeof(table[0])];
  uint64_t reclaimed_idle, reclaimed_busy, withdrawn, stale;
} outcome_t;

static void run_table(const char *adapter, outcome_t *out) {
  size_t i;

  for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
    const scenario_t *s = &table[i];
    pp_config_t *cfg = adapter_config(adapter, 1);
    pp_pool_options_t o;
    pp_buf_t reply = {0};
    pp_status_t st;
    pp_pool_t *pool;
    pp_diag_t d;
    rec_t rec;

    if (s->request_timeout)
      cfg_set(cfg, "worker.request_timeout", s->request_timeout);
    cfg_set(cfg, "worker.kill_grace", "200ms");
    rec_init(&rec);
    o = rec_options(&rec);
    assert_int_equal(pp_test_pool_open(cfg, &o, 20000, &pool, &d), 0);
    pp_config_free(cfg);
    out->codes[i] =
        pp_call(pool, s->payload, strlen(s->payload), &reply, 10000, &d);
    if (s->exits)
      assert_int_equal(rec_wait(&rec, PP_TRACE_EXIT, s->exits, 10000), 0);
    out->exits[i] = rec_count(&rec, PP_TRACE_EXIT);
    assert_int_equal(pp_pool_status(pool, &st), 0);
    out->kinds[i] = st.workers[0].last_exit;
    pp_status_free(&st);
    if (s->code == 0)
      assert_string_equal(reply.data, "{\"k\":[1,2]}");
    pp_buf_free(&reply);
    assert_int_equal(pp_test_pool_close(pool, 10000, &d), 0);
    rec_free(&rec);
    if (out->codes[i] != s->code || out->exits[i] != s->exits ||
        out->kinds[i] != s->last_exit)
      fail_msg("%s / %s: code %s (want %s), %zu exits (want %zu), last exit "
               "%d (want %d)",
               adapter, s->name, pp_err_name(out->codes[i]),
               pp_err_name(s->code), out->exits[i], s->exits, out->kinds[i],
               s->last_exit);
  }
}

/* Client death in each phase, on one adapter: the counters it leaves. */
static void job_hold(pp_task_t *t, pp_client_t *c, void *data) {
  pp_lease_t *lease;
  (void)t;
  (void)data;
  pp_lease_acquire(pp_client_pool(c), c, 10000, &lease, NULL);
}

static void job_sleep(pp_task_t *t, pp_client_t *c, void *data) {
  const char *req = "{\"cmd\":\"sleep\",\"args\":0.2}";
  pp_buf_t reply = {0};
  pp_lease_t *lease;
  (void)t;
  (void)data;
  if (pp_lease_acquire(pp_client_pool(c), c, 10000, &lease, NULL) == 0)
    pp_lease_call(lease, req, strlen(req), -1, &reply, NULL);
  pp_buf_free(&reply);
}

static void run_deaths(const char *adapter, outcome_t *out) {
  pp_config_t *cfg = adapter_config(adapter, 1);
  pp_pool_options_t o;
  pp_task_t *waiting, *holding, *busy;
  pp_lease_t *held;
  pp_status_t st;
  pp_pool_t *pool;
  pp_diag_t d;
  rec_t rec;

  rec_init(&rec);
  o = rec_options(&rec);
  assert_int_equal(pp_test_pool_open(cfg, &o, 20000, &pool, &d), 0);
  pp_config_free(cfg);
  /* Holding an idle lease. */
  assert_int_equal(pp_task_spawn(pool, job_hold, NULL, &holding), 0);
  assert_int_equal(pp_task_join(holding), 0);
  /* Waiting in the queue. */
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &held, &d), 0);
  assert_int_equal(pp_task_spawn(pool, job_hold, NULL, &waiting), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_CHECKOUT_WAIT, 1, 10000), 0);
  pp_task_cancel(waiting);
  pp_task_join(waiting);
  pp_checkin(held);
  /* With a request in flight (policy finish). */
  assert_int_equal(pp_task_spawn(pool, job_sleep, NULL, &busy), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_REQUEST, 1, 10000), 0);
  pp_task_cancel(busy);
  pp_task_join(busy);
  assert_int_equal(pp_pool_quiesce(pool, 10000, &d), 0);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  out->reclaimed_idle = st.reclaimed_idle;
  out->reclaimed_busy = st.reclaimed_busy;
  out->withdrawn = st.withdrawn;
  out->stale = st.stale_replies;
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  assert_int_equal(pp_test_pool_close(pool, 10000, &d), 0);
  rec_free(&rec);
}

static void test_same_table_both_adapters(void **state) {
  outcome_t mock, python;

  (void)state;
  memset(&mock, 0, sizeof(mock));
  memset(&python, 0, sizeof(python));
  run_table("mock", &mock);
  run_table("python", &python);
  run_deaths("mock", &mock);
  run_deaths("python", &python);
  assert_memory_equal(&mock, &python, sizeof(mock));
  assert_int_equal(mock.reclaimed_idle, 1);
  assert_int_equal(mock.withdrawn, 1);
  assert_int_equal(mock.reclaimed_busy, 1);
  assert_int_equal(mock.stale, 1);
}

/* ---- isolation */

typedef struct side {
  const char *adapter;
  int size;
  int ok;
  int pids[8];
  char adapter_seen[16];
  int size_seen;
} side_t;

static void side_main(void *arg) {
  side_t *s = arg;
  pp_config_t *cfg = adapter_config(s->adapter, s->size);
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_pool_t *pool;
  pp_diag_t d;
  int i;

  if (pp_test_pool_open(cfg, NULL, 20000, &pool, &d) != 0)
    return;
  /* Changing the config afterwards changes nothing running. */
  cfg_set(cfg, "size", "7");
  cfg_set(cfg, "checkout.timeout", "1ms");
  for (i = 0; i < 200; i++)
    if (pp_call_cmd(pool, "echo", "[\"mine\"]", &reply, 10000, &d) == 0 &&
        strcmp(reply.data, "[\"mine\"]") == 0)
      s->ok++;
  pp_pool_status(pool, &st);
  snprintf(s->adapter_seen, sizeof(s->adapter_seen), "%s", st.adapter);
  s->size_seen = st.size;
  for (i = 0; i < st.nworkers && i < 8; i++)
    s->pids[i] = st.workers[i].pid;
  pp_status_free(&st);
  pp_buf_free(&reply);
  pp_config_free(cfg);
  pp_test_pool_close(pool, 10000, &d);
}

static void test_two_pools_side_by_side(void **state) {
  side_t a = {"mock", 3, 0, {0}, "", 0}, b = {"python", 2, 0, {0}, "", 0};
  uv_thread_t ta, tb;
  int i, j;

  (void)state;
  assert_int_equal(uv_thread_create(&ta, side_main, &a), 0);
  assert_int_equal(uv_thread_create(&tb, side_main, &b), 0);
  uv_thread_join(&ta);
  uv_thread_join(&tb);
  assert_int_equal(a.ok, 200);
  assert_int_equal(b.ok, 200);
  assert_string_equal(a.adapter_seen, "mock");
  assert_string_equal(b.adapter_seen, "python");
  assert_int_equal(a.size_seen, 3);
  assert_int_equal(b.size_seen, 2);
  for (i = 0; i < 3; i++)
    for (j = 0; j < 2; j++)
      assert_int_not_equal(a.pids[i], b.pids[j]);
}

/* ---- mock handlers written in C */

static int reverse(const char *args, size_t len, pp_buf_t *reply, void *d) {
  size_t i;
  (void)d;
  reply->data = malloc(len + 1);
  reply->cap = len + 1;
  reply->len = len;
  /* args is a JSON string: keep the quotes, reverse what is inside. */
  for (i = 0; i < len; i++)
    reply->data[i] = (i == 0 || i == len - 1) ? args[i] : args[len - 1 - i];
  reply->data[len] = '\0';
  return 0;
}

static int refuse(const char *args, size_t len, pp_buf_t *reply, void *d) {
  (void)args;
  (void)len;
  (void)d;
  reply->data = strdup("refused");
  reply->len = 7;
  return 1;
}

static void test_mock_handlers(void **state) {
  pp_config_t *cfg = adapter_config("mock", 2);
  pp_pool_options_t o;
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_pool_t *pool;
  pp_mock_t *mock;
  pp_diag_t d;

  (void)state;
  assert_int_equal(pp_mock_new(&mock), 0);
  assert_int_equal(pp_mock_add(mock, "reverse", reverse, NULL), 0);
  assert_int_equal(pp_mock_add(mock, "refuse", refuse, NULL), 0);
  memset(&o, 0, sizeof(o));
  o.mock = mock;
  assert_int_equal(pp_test_pool_open(cfg, &o, 10000, &pool, &d), 0);
  pp_config_free(cfg);
  assert_int_equal(pp_call_cmd(pool, "reverse", "\"abc\"", &reply, -1, &d), 0);
  assert_string_equal(reply.data, "\"cba\"");
  assert_int_equal(pp_call_cmd(pool, "refuse", NULL, &reply, -1, &d),
                   PP_EHANDLER);
  assert_non_null(strstr(reply.data, "refused"));
  assert_int_equal(pp_call_cmd(pool, "echo", "5", &reply, -1, &d), 0);
  /* HELLO lists the program's handlers and the built-ins; an unknown name
   * is told them, as the python worker does. */
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_non_null(st.handlers);
  assert_string_equal(st.handlers, "[\"reverse\",\"refuse\",\"echo\","
                                   "\"sleep\",\"fail\",\"crash\",\"hang\","
                                   "\"pid\",\"deadline_left\"]");
  pp_status_free(&st);
  assert_int_equal(pp_call_cmd(pool, "revers", NULL, &reply, -1, &d),
                   PP_EHANDLER);
  assert_non_null(strstr(d.message, "UnknownCommand"));
  assert_non_null(strstr(d.message, "\"reverse\""));
  assert_int_equal(pp_test_pool_close(pool, 10000, &d), 0);
  pp_mock_free(mock);
  pp_buf_free(&reply);
}

/* ---- a program-supplied adapter: a thread that upper-cases payloads */

typedef struct upper {
  pp_adapter_worker_t *w;
  int req, rep, stop;
  uv_thread_t t;
} upper_t;

static void upper_main(void *arg) {
  upper_t *u = arg;
  char buf[4096], hdr[PP_FRAME_HEADER], out[4096];
  const char *hello = "{\"protocol\":1,\"pid\":1,\"runtime\":\"upper\"}";
  struct pollfd p;
  size_t len = 0, i;
  pp_frame_t f;
  long used;
  ssize_t n;
  int sig = 0;

  pp_frame_header(hdr, PP_FRAME_HELLO, 0, 0, (uint32_t)strlen(hello));
  if (write(u->rep, hdr, sizeof(hdr)) < 0 ||
      write(u->rep, hello, strlen(hello)) < 0)
    goto out;
  for (;;) {
    p.fd = u->req;
    p.events = POLLIN;
    while (poll(&p, 1, 20) == 0)
      if ((sig = __atomic_load_n(&u->stop, __ATOMIC_ACQUIRE)) != 0)
        goto out;
    n = read(u->req, buf + len, sizeof(buf) - len);
    if (n <= 0)
      goto out;
    len += (size_t)n;
    while ((used = pp_frame_decode(buf, len, sizeof(buf), &f)) > 0) {
      for (i = 0; i < f.len; i++)
        out[i] = (f.payload[i] >= 'a' && f.payload[i] <= 'z')
                     ? (char)(f.payload[i] - 32)
                     : f.payload[i];
      pp_frame_header(hdr, PP_FRAME_REPLY, 0, f.id, f.len);
      if (write(u->rep, hdr, sizeof(hdr)) < 0 || write(u->rep, out, f.len) < 0)
        goto out;
      memmove(buf, buf + used, len - (size_t)used);
      len -= (size_t)used;
    }
  }
out:
  close(u->req);
  close(u->rep);
  pp_adapter_worker_exited(u->w, 0, sig);
}

static int upper_start(pp_adapter_worker_t *w, int req, int rep, void *data,
                       void **state, int *pid) {
  upper_t *u = calloc(1, sizeof(*u));
  (void)data;
  u->w = w;
  u->req = req;
  u->rep = rep;
  *state = u;
  /* Any id will do; this one is a live process, not the worker. */
  *pid = (int)getpid();
  return uv_thread_create(&u->t, upper_main, u);
}

static void upper_signal(void *state, int sig) {
  upper_t *u = state;
  __atomic_store_n(&u->stop, sig, __ATOMIC_RELEASE);
}

static void upper_release(void *state) {
  upper_t *u = state;
  uv_thread_join(&u->t);
  free(u);
}

static void test_custom_adapter(void **state) {
  static const pp_adapter_t upper = {"upper", upper_start, upper_signal,
                                     upper_release, NULL};
  pp_config_t *cfg;
  pp_pool_options_t o;
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_pool_t *pool;
  pp_diag_t d;

  (void)state;
  assert_int_equal(pp_config_new(&cfg), 0);
  cfg_set(cfg, "size", "1");
  memset(&o, 0, sizeof(o));
  o.adapter = &upper;
  assert_int_equal(pp_test_pool_open(cfg, &o, 10000, &pool, &d), 0);
  pp_config_free(cfg);
  assert_int_equal(pp_call(pool, "hello", 5, &reply, -1, &d), 0);
  assert_string_equal(reply.data, "HELLO");
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_string_equal(st.adapter, "upper");
  assert_int_equal(st.workers[0].pid, (int)getpid());
  /* Its figures are unknown: never /proc of whoever has that pid. */
  assert_int_equal(st.workers[0].rss_bytes, 0);
  assert_int_equal(st.workers[0].cpu_time_ms, 0);
  pp_status_free(&st);
  assert_int_equal(pp_test_pool_close(pool, 10000, &d), 0);
  pp_buf_free(&reply);
}

/* ---- scoped configs and the test helpers */

static void test_derived_config(void **state) {
  const char *over[] = {"size=3", "checkout.timeout=250ms"};
  const char *bad[] = {"chekout.timeout=1s"};
  pp_config_t *base, *child;
  char v[64];
  pp_diag_t d;

  (void)state;
  assert_int_equal(pp_config_new(&base), 0);
  cfg_set(base, "size", "1");
  assert_int_equal(pp_config_derive(base, over, 2, &child, &d), 0);
  assert_int_equal(pp_config_get(child, "size", v, sizeof(v)), 0);
  assert_string_equal(v, "3");
  assert_int_equal(pp_config_get(child, "checkout.timeout", v, sizeof(v)), 0);
  assert_string_equal(v, "250ms");
  assert_int_equal(pp_config_get(base, "size", v, sizeof(v)), 0);
  assert_string_equal(v, "1");
  assert_int_equal(pp_config_get(base, "checkout.timeout", v, sizeof(v)), 0);
  assert_string_equal(v, "5s");
  pp_config_free(child);
  assert_int_equal(pp_config_derive(base, bad, 1, &child, &d), PP_ECONFIG);
  assert_null(child);
  assert_non_null(strstr(d.message, "checkout.timeout"));
  pp_config_free(base);
}

static void test_helper_reports_leak(void **state) {
  pp_config_t *cfg = adapter_config("mock", 1);
  pp_lease_t *leaked;
  pp_pool_t *pool;
  pp_diag_t d;

  (void)state;
  assert_int_equal(pp_test_pool_open(cfg, NULL, 10000, &pool, &d), 0);
  pp_config_free(cfg);
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &leaked, &d), 0);
  assert_int_equal(pp_test_pool_close(pool, 50, &d), PP_ETIMEDOUT);
  assert_non_null(strstr(d.message, "1 leases out"));
}

static void test_helper_open_fails_clearly(void **state) {
  pp_config_t *cfg = python_config("slow_start.py", 1);
  pp_pool_t *pool;
  pp_diag_t d;

  (void)state;
  cfg_set(cfg, "worker.env", "{PP_SLOW_START: '60'}");
  cfg_set(cfg, "worker.startup_timeout", "2m");
  assert_int_equal(pp_test_pool_open(cfg, NULL, 200, &pool, &d), PP_ETIMEDOUT);
  assert_string_equal(d.message, "pool warming (0/1 ready)");
  pp_config_free(cfg);
}

/* ---- start-up failures fail fast (no retry while never ready) */

/* Start-up bounds far beyond a test's life: only failing fast passes.
 * The start mode is the run's (test_adapters_zygote runs these with
 * worker.start: zygote). */
static pp_config_t *boot_config(const char *handlers) {
  pp_config_t *cfg = python_config(handlers, 2);

  cfg_set(cfg, "worker.startup_timeout", "10m");
  cfg_set(cfg, "checkout.timeout", "10m");
  return cfg;
}

static void assert_import_error_diag(const pp_diag_t *d) {
  assert_non_null(strstr(d->message, "failed to boot"));
  assert_non_null(strstr(d->message, "ImportError: fixture import_error: this "
                                     "handler module cannot be imported"));
  assert_non_null(strstr(d->message, "import_error.py\", line"));
}

static void test_open_import_error_fails_fast(void **state) {
  pp_config_t *cfg = boot_config("import_error.py");
  pp_pool_t *pool;
  pp_diag_t d;

  (void)state;
  memset(&d, 0, sizeof(d));
  pool = (pp_pool_t *)&d;
  assert_int_equal(pp_pool_open(cfg, NULL, &pool, &d), PP_EBOOT);
  assert_null(pool);
  assert_import_error_diag(&d);
  pp_config_free(cfg);
  assert_string_equal(pp_err_name(PP_EBOOT), "PP_EBOOT");
  assert_string_equal(pp_strerror(PP_EBOOT), "worker failed to boot");
}

static void test_open_exit_zero_fails_fast(void **state) {
  pp_config_t *cfg = boot_config("exit_zero_on_import.py");
  pp_pool_t *pool;
  pp_diag_t d;

  (void)state;
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_pool_open(cfg, NULL, &pool, &d), PP_EBOOT);
  assert_non_null(strstr(d.message, "SystemExit"));
  assert_non_null(strstr(d.message, "sys.exit(0)"));
  pp_config_free(cfg);
}

static void test_helper_open_boot_failure(void **state) {
  pp_config_t *cfg = boot_config("import_error.py");
  pp_pool_t *pool;
  pp_diag_t d;

  (void)state;
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_test_pool_open(cfg, NULL, 600000, &pool, &d), PP_EBOOT);
  assert_import_error_diag(&d);
  pp_config_free(cfg);
}

typedef struct boot_ctx {
  int calls;
  int status;
  int diag_status;
  pp_diag_t d;
  int closed;
} boot_ctx_t;

static void boot_ready(pp_pool_t *pool, int status, void *data) {
  boot_ctx_t *b = data;

  b->calls++;
  b->status = status;
  b->diag_status = pp_pool_ready_diag(pool, &b->d);
}

static void boot_closed(pp_pool_t *pool, void *data) {
  (void)pool;
  ((boot_ctx_t *)data)->closed = 1;
}

/* Start cfg (freed here) on loop, and return once its ready callback ran. */
static pp_pool_t *boot_start(pp_config_t *cfg, uv_loop_t *loop, boot_ctx_t *b) {
  pp_pool_t *pool;
  pp_diag_t d;

  memset(b, 0, sizeof(*b));
  assert_int_equal(uv_loop_init(loop), 0);
  assert_int_equal(pp_pool_start(loop, cfg, NULL, boot_ready, b, &pool, &d), 0);
  pp_config_free(cfg);
  while (b->calls == 0)
    uv_run(loop, UV_RUN_ONCE);
  return pool;
}

/* Stop the pool, run the loop until it closed, and close the loop; the
 * ready callback ran once. */
static void boot_stop(pp_pool_t *pool, uv_loop_t *loop, boot_ctx_t *b) {
  pp_pool_stop(pool, boot_closed, b);
  while (!b->closed)
    uv_run(loop, UV_RUN_ONCE);
  assert_int_equal(b->calls, 1);
  assert_int_equal(uv_loop_close(loop), 0);
}

static void test_start_ready_cb_boot_failure(void **state) {
  pp_config_t *cfg = boot_config("import_error.py");
  boot_ctx_t b;
  pp_pool_t *pool;
  uv_loop_t loop;

  (void)state;
  pool = boot_start(cfg, &loop, &b);
  assert_int_equal(b.status, PP_EBOOT);
  assert_int_equal(b.diag_status, PP_EBOOT);
  assert_import_error_diag(&b.d);
  /* Status says why the slot died before HELLO, not only that it did. */
  {
    pp_status_t st;
    char *json;
    int i, shown = 0;

    assert_int_equal(pp_pool_status(pool, &st), 0);
    for (i = 0; i < st.nworkers; i++) {
      if (st.workers[i].last_exit != PP_EXIT_NO_HELLO)
        continue;
      assert_non_null(
          strstr(st.workers[i].last_exit_text, "died before HELLO"));
      assert_non_null(strstr(st.workers[i].last_error,
                             "ImportError: fixture import_error"));
      shown++;
    }
    assert_true(shown >= 1);
    json = pp_status_to_json(&st);
    assert_non_null(strstr(json, "\"last_error\":\"ImportError: fixture"));
    free(json);
    pp_status_free(&st);
  }
  boot_stop(pool, &loop, &b);
}

/* A handler that hangs at import: no HELLO within startup_timeout before
 * the pool was ever ready is a boot failure too, not a kill-and-restart
 * loop.  Only the outcome is checked: the bound is short so the test is,
 * and a worker slower than it fails the same way. */
static pp_config_t *hang_config(void) {
  pp_config_t *cfg = python_config("hang_on_import.py", 1);

  cfg_set(cfg, "worker.startup_timeout", "300ms");
  cfg_set(cfg, "worker.kill_grace", "100ms");
  cfg_set(cfg, "checkout.timeout", "10m");
  return cfg;
}

static void test_open_hang_at_import_fails_fast(void **state) {
  pp_config_t *cfg = hang_config();
  pp_pool_t *pool;
  pp_diag_t d;

  (void)state;
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_pool_open(cfg, NULL, &pool, &d), PP_EBOOT);
  if (strstr(d.message, "worker 0 failed to boot: no HELLO within "
                        "startup_timeout (300ms)") == NULL)
    fail_msg("diag: %s", d.message);
  pp_config_free(cfg);
}

static void test_start_hang_at_import_status(void **state) {
  pp_config_t *cfg = hang_config();
  boot_ctx_t b;
  pp_pool_t *pool;
  pp_status_t st;
  uv_loop_t loop;

  (void)state;
  pool = boot_start(cfg, &loop, &b);
  assert_int_equal(b.status, PP_EBOOT);
  assert_non_null(strstr(b.d.message, "no HELLO within startup_timeout"));
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.workers[0].state, PP_WORKER_FATAL);
  assert_int_equal(st.workers[0].last_exit, PP_EXIT_NO_HELLO);
  assert_string_equal(st.workers[0].last_exit_text,
                      "no HELLO within startup_timeout");
  assert_non_null(strstr(st.workers[0].last_error,
                         "no HELLO within startup_timeout (300ms)"));
  pp_status_free(&st);
  boot_stop(pool, &loop, &b);
}

/* With min_ready, a checkout that times out while a worker is still
 * starting for the first time says "starting", not "restarting". */
static void test_timeout_names_first_start(void **state) {
  pp_config_t *cfg = python_config("slow_start.py", 2);
  pp_lease_t *held, *none;
  pp_pool_t *pool;
  pp_diag_t d;

  (void)state;
  /* One slow worker beside a ready one needs spawned workers: a zygote
   * imports the module once for both. */
  cfg_set(cfg, "worker.start", "spawn");
  cfg_set(cfg, "worker.env", "{PP_SLOW_START: '600', PP_SLOW_START_ONLY: '1'}");
  cfg_set(cfg, "worker.startup_timeout", "10m");
  cfg_set(cfg, "worker.kill_grace", "100ms");
  cfg_set(cfg, "min_ready", "1");
  assert_int_equal(pp_pool_open(cfg, NULL, &pool, &d), 0);
  pp_config_free(cfg);
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &held, &d), 0);
  assert_int_equal(pp_lease_slot(held), 0);
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_lease_acquire(pool, NULL, 50, &none, &d), PP_ETIMEDOUT);
  if (strstr(d.message, "all 2 workers busy or starting (1 starting)") ==
          NULL ||
      strstr(d.message, "restarting") != NULL)
    fail_msg("diag: %s", d.message);
  pp_checkin(held);
  pp_pool_close(pool);
}

/* A boot error cut to fit status (a long message of two-byte characters)
 * is still in status's JSON: text a worker wrote is made valid UTF-8, never
 * dropped for its bytes. */
static void test_status_keeps_cut_boot_error(void **state) {
  pp_config_t *cfg = boot_config("boot_error_utf8.py");
  json_t *root, *workers;
  boot_ctx_t b;
  pp_status_t st;
  pp_pool_t *pool;
  uv_loop_t loop;
  size_t i, shown = 0;
  char *json;

  (void)state;
  pool = boot_start(cfg, &loop, &b);
  assert_int_equal(b.status, PP_EBOOT);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  json = pp_status_to_json(&st);
  assert_non_null(json);
  root = json_loads(json, 0, NULL);
  assert_non_null(root);
  workers = json_object_get(root, "workers");
  for (i = 0; i < json_array_size(workers); i++) {
    const char *e = json_string_value(
        json_object_get(json_array_get(workers, i), "last_error"));

    if (e != NULL && strstr(e, "ImportError: x\xc3\xa9\xc3\xa9") == e)
      shown++;
  }
  if (shown == 0)
    fail_msg("no worker's last_error in %s", json);
  json_decref(root);
  free(json);
  pp_status_free(&st);
  boot_stop(pool, &loop, &b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_open_import_error_fails_fast),
      cmocka_unit_test(test_open_exit_zero_fails_fast),
      cmocka_unit_test(test_helper_open_boot_failure),
      cmocka_unit_test(test_start_ready_cb_boot_failure),
      cmocka_unit_test(test_status_keeps_cut_boot_error),
      cmocka_unit_test(test_open_hang_at_import_fails_fast),
      cmocka_unit_test(test_start_hang_at_import_status),
      cmocka_unit_test(test_timeout_names_first_start),
      cmocka_unit_test(test_same_table_both_adapters),
      cmocka_unit_test(test_two_pools_side_by_side),
      cmocka_unit_test(test_mock_handlers),
      cmocka_unit_test(test_custom_adapter),
      cmocka_unit_test(test_derived_config),
      cmocka_unit_test(test_helper_reports_leak),
      cmocka_unit_test(test_helper_open_fails_clearly),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
