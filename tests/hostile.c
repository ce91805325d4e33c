/* hostile.c -- support shared by the hostile suites (hostile.h): the trace
 * and log recorder, configs, process exits, the `poolctl serve` child and
 * calls over cli.c's raw control-socket client. */
#include "hostile.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ processes */

/* 1 when pid is gone or a zombie (it has exited; its parent may not have
 * reaped it yet). */
static int pid_exited(int pid) {
  char path[64], buf[512], *p;
  ssize_t n;
  int fd;

  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 1;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return 1;
  buf[n] = '\0';
  p = strrchr(buf, ')');
  return p != NULL && (p[2] == 'Z' || p[2] == 'X');
}

int gone_within(int pid, int timeout_ms) {
  int64_t deadline;
  int r;

  errno = 0;
  r = wait_pid_gone(pid, timeout_ms);
  if (r == 0 || errno != ENOSYS)
    return r;
  deadline = cli_now_ms() + timeout_ms;
  while (!pid_exited(pid)) {
    if (cli_now_ms() >= deadline)
      return -1;
    poll(NULL, 0, 5);
  }
  return 0;
}

void assert_gone(int pid, int timeout_ms, const char *what) {
  int r = gone_within(pid, timeout_ms);
  if (r != 0) {
    kill(pid, SIGKILL);
    fail_msg("%s (pid %d) still alive after %d ms", what, pid, timeout_ms);
  }
}

/* ------------------------------------------------- trace and log record */

static void h_trace(pp_pool_t *pool, const pp_trace_event_t *ev, void *data) {
  hpool_t *h = data;
  hev_t *e;

  (void)pool;
  if (getenv("PP_TEST_VERBOSE"))
    fprintf(stderr, "  trace: %s slot=%d gen=%u pid=%d code=%d %s\n",
            pp_trace_name(ev->type), ev->slot, ev->generation, ev->pid,
            ev->code, ev->detail ? ev->detail : "");
  uv_mutex_lock(&h->mu);
  if (h->n == h->cap) {
    h->cap = h->cap ? h->cap * 2 : 256;
    h->ev = realloc(h->ev, h->cap * sizeof(*h->ev));
    if (h->ev == NULL)
      abort(); /* not on the test's thread: no cmocka assert here */
  }
  e = &h->ev[h->n++];
  e->type = ev->type;
  e->slot = ev->slot;
  e->generation = ev->generation;
  e->pid = ev->pid;
  e->code = ev->code;
  e->ts_ns = ev->ts_ns ? ev->ts_ns : now_ns();
  snprintf(e->detail, sizeof(e->detail), "%s", ev->detail ? ev->detail : "");
  if (ev->type != PP_TRACE_REQUEST && ev->type != PP_TRACE_REPLY &&
      ev->type != PP_TRACE_CHECKOUT && ev->type != PP_TRACE_CHECKIN &&
      ev->type != PP_TRACE_CHECKOUT_WAIT)
    h->news++;
  uv_cond_broadcast(&h->cv);
  uv_mutex_unlock(&h->mu);
}

static int all_x(const char *s, size_t n) {
  size_t i;
  if (n == 0)
    return 0;
  for (i = 0; i < n; i++)
    if (s[i] != 'x')
      return 0;
  return 1;
}

/* Lines are "worker N: text" (stdout), "worker N [stderr]: text", or the
 * pool's own notices. */
static void h_log(pp_pool_t *pool, const char *line, void *data) {
  hpool_t *h = data;
  size_t len = strlen(line);
  const char *p, *msg;
  int slot, err = 0, child;
  void (*hook)(pp_pool_t *, int, void *);
  void *hook_data;

  if (getenv("PP_TEST_VERBOSE") && len < 300)
    fprintf(stderr, "  log: %s\n", line);
  uv_mutex_lock(&h->mu);
  h->lines++;
  if (len > h->longest)
    h->longest = len;
  if (sscanf(line, "worker %d", &slot) == 1 && slot >= 0 && slot < MAX_SLOTS) {
    p = line + 7;
    while (*p >= '0' && *p <= '9')
      p++;
    if (strncmp(p, " [stderr]: ", 11) == 0) {
      err = 1;
      msg = p + 11;
    } else if (strncmp(p, ": ", 2) == 0) {
      msg = p + 2;
    } else {
      msg = NULL;
    }
    if (msg && all_x(msg, strlen(msg))) {
      if (err)
        h->err_x[slot] += strlen(msg);
      else
        h->out_x[slot] += strlen(msg);
    }
    if (msg && sscanf(msg, "lingering child %d", &child) == 1)
      h->lingering_pid = child;
    if (msg && err)
      snprintf(h->last_err[slot], sizeof(h->last_err[slot]), "%s", msg);
  }
  hook = err ? h->err_hook : NULL;
  hook_data = h->err_hook_data;
  uv_cond_broadcast(&h->cv);
  uv_mutex_unlock(&h->mu);
  if (hook)
    hook(pool, slot, hook_data);
}

static int matches(const hev_t *e, pp_trace_type_t type, int slot) {
  return e->type == type && (slot < 0 || e->slot == slot);
}

static size_t count_locked(hpool_t *h, pp_trace_type_t type, int slot) {
  size_t i, c = 0;
  for (i = 0; i < h->n; i++)
    c += matches(&h->ev[i], type, slot);
  return c;
}

size_t h_count(hpool_t *h, pp_trace_type_t type, int slot) {
  size_t c;
  uv_mutex_lock(&h->mu);
  c = count_locked(h, type, slot);
  uv_mutex_unlock(&h->mu);
  return c;
}

void h_wait(hpool_t *h, pp_trace_type_t type, int slot, size_t count,
            int timeout_ms) {
  uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull, t;
  size_t got;

  uv_mutex_lock(&h->mu);
  while ((got = count_locked(h, type, slot)) < count) {
    t = now_ns();
    if (t >= deadline)
      break;
    uv_cond_timedwait(&h->cv, &h->mu, deadline - t);
  }
  uv_mutex_unlock(&h->mu);
  if (got < count)
    fail_msg("waited %d ms for %zu %s event(s) of slot %d; saw %zu", timeout_ms,
             count, pp_trace_name(type), slot, got);
}

void h_dump(hpool_t *h) {
  size_t i;

  uv_mutex_lock(&h->mu);
  for (i = 0; i < h->n; i++)
    fprintf(stderr, "  %8.3f ms %-14s slot=%d gen=%u pid=%d code=%d %s\n",
            (double)(h->ev[i].ts_ns - h->ev[0].ts_ns) / 1e6,
            pp_trace_name(h->ev[i].type), h->ev[i].slot, h->ev[i].generation,
            h->ev[i].pid, h->ev[i].code, h->ev[i].detail);
  uv_mutex_unlock(&h->mu);
}

void h_wait_stderr(hpool_t *h, int slot, const char *text, int timeout_ms) {
  uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull, t;
  int ok;

  uv_mutex_lock(&h->mu);
  while (!(ok = strcmp(h->last_err[slot], text) == 0)) {
    t = now_ns();
    if (t >= deadline)
      break;
    uv_cond_timedwait(&h->cv, &h->mu, deadline - t);
  }
  uv_mutex_unlock(&h->mu);
  if (!ok)
    fail_msg("slot %d never wrote '%s' on stderr", slot, text);
}

hev_t h_nth(hpool_t *h, pp_trace_type_t type, int slot, size_t n) {
  hev_t out;
  size_t i, seen = 0;
  int found = 0;

  memset(&out, 0, sizeof(out));
  uv_mutex_lock(&h->mu);
  for (i = 0; i < h->n && !found; i++)
    if (matches(&h->ev[i], type, slot) && seen++ == n) {
      out = h->ev[i];
      found = 1;
    }
  uv_mutex_unlock(&h->mu);
  if (!found)
    fail_msg("no %s event #%zu for slot %d", pp_trace_name(type), n, slot);
  return out;
}

void h_init(hpool_t *h) {
  memset(h, 0, sizeof(*h));
  uv_mutex_init(&h->mu);
  uv_cond_init(&h->cv);
}

void h_free(hpool_t *h) {
  free(h->ev);
  uv_cond_destroy(&h->cv);
  uv_mutex_destroy(&h->mu);
}

pp_pool_options_t h_options(hpool_t *h) {
  pp_pool_options_t o;
  memset(&o, 0, sizeof(o));
  o.trace = h_trace;
  o.trace_data = h;
  o.log = h_log;
  o.log_data = h;
  return o;
}

hpool_t *h_open(pp_config_t *cfg) {
  hpool_t *h = malloc(sizeof(*h));
  pp_pool_options_t o;
  pp_diag_t d;
  int r;

  assert_non_null(h);
  h_init(h);
  o = h_options(h);
  memset(&d, 0, sizeof(d));
  r = pp_pool_open(cfg, &o, &h->pool, &d);
  pp_config_free(cfg);
  if (r != 0)
    fail_msg("pp_pool_open: %s: %s", pp_strerror(r), d.message);
  return h;
}

void h_close(hpool_t *h) {
  pp_pool_close(h->pool);
  assert_int_equal(h_count(h, PP_TRACE_CLOSED, -1), 1);
  h_free(h);
  free(h);
}

void h_status(hpool_t *h, pp_status_t *st) {
  assert_int_equal(pp_pool_status(h->pool, st), 0);
}

/* ------------------------------------------------------------- configs */

pp_config_t *bad_config(const char *mode, int size) {
  pp_config_t *cfg = bad_worker_config(mode, size);

  cfg_set(cfg, "name", "hostile");
  return cfg;
}

pp_config_t *hostile_config(int size) {
  pp_config_t *cfg = python_config("hostile_handlers.py", size);
  cfg_set(cfg, "name", "hostile");
  return cfg;
}

pp_config_t *one_bad_slot(const char *mode, int size) {
  pp_config_t *cfg = bad_config(mode, size);
  cfg_set(cfg, "worker.env", "{BAD_WORKER_ONLY: '0'}");
  cfg_set(cfg, "min_ready", "1");
  cfg_set(cfg, "restart.max_restarts", "1");
  cfg_set(cfg, "restart.within", "1m");
  /* The bad slot may fail before the good one is ready: these cases are
   * about restarts, not about failing the start. */
  cfg_set(cfg, "restart.retry_boot_failures", "true");
  return cfg;
}

/* ---------------------------------------------------------------- calls */

int lcall(pp_lease_t *lease, const char *cmd, const char *args,
          int64_t timeout_ms, pp_buf_t *reply, pp_diag_t *d) {
  char payload[512];
  int n = snprintf(payload, sizeof(payload), "{\"cmd\":\"%s\",\"args\":%s}",
                   cmd, args ? args : "null");
  memset(d, 0, sizeof(*d));
  return pp_lease_call(lease, payload, (size_t)n, timeout_ms, reply, d);
}

void all_slots_serve(hpool_t *h, int size) {
  pp_lease_t *l[MAX_SLOTS];
  pp_buf_t reply = {0};
  pp_diag_t d;
  int i, r;

  for (i = 0; i < size; i++)
    assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &l[i], &d), 0);
  for (i = 0; i < size; i++) {
    r = lcall(l[i], "echo", "\"again\"", 10000, &reply, &d);
    if (r != 0)
      fail_msg("slot %d after the fault: %s: %s", pp_lease_slot(l[i]),
               pp_err_name(r), d.message);
    assert_string_equal(reply.data, "\"again\"");
  }
  for (i = 0; i < size; i++)
    pp_checkin(l[i]);
  pp_buf_free(&reply);
}

/* ------------------------------------------------ a `poolctl serve` child */

/* The server of the test running, killed by the teardown if the test
 * fails before it could stop it. */
static serve_t *live_serve;

void serve_start_sets(serve_t *s, const char *handlers,
                      const char *const *sets) {
  const char *py = getenv("PP_PYTHON"), *worker = getenv("PP_WORKER_PY");
  char *h = fixture_path(handlers), cmd[2048];
  static char start[64];
  char *argv[24];
  int n = 0, out;

  memset(s, 0, sizeof(*s));
  snprintf(s->dir, sizeof(s->dir), "/tmp/pp-hostile-XXXXXX");
  assert_non_null(mkdtemp(s->dir));
  snprintf(s->sock, sizeof(s->sock), "%s/pool.sock", s->dir);
  snprintf(cmd, sizeof(cmd), "worker.command=[%s, %s, %s]", py, worker, h);
  free(h);
  argv[n++] = (char *)cli_poolctl_path();
  argv[n++] = "serve";
  argv[n++] = "-S";
  argv[n++] = s->sock;
  argv[n++] = "--set";
  argv[n++] = "size=2";
  argv[n++] = "--set";
  argv[n++] = cmd;
  for (; sets && *sets; sets++) {
    assert_true(n < 18);
    argv[n++] = "--set";
    argv[n++] = (char *)*sets;
  }
  if (getenv("PP_START") && *getenv("PP_START")) {
    snprintf(start, sizeof(start), "worker.start=%s", getenv("PP_START"));
    argv[n++] = "--set";
    argv[n++] = start;
  }
  argv[n] = NULL;
  s->srv.pid = cli_spawn(argv, &out, NULL);
  cli_lines_init(&s->srv.out, out);
  live_serve = s;
}

void serve_start(serve_t *s, const char *handlers, const char *set1,
                 const char *set2) {
  const char *sets[3] = {set1, set1 ? set2 : NULL, NULL};

  serve_start_sets(s, handlers, sets);
}

void serve_wait_line(serve_t *s, const char *prefix) {
  cli_lines_wait(&s->srv.out, prefix);
}

void serve_cleanup(serve_t *s) {
  live_serve = NULL;
  cli_server_kill(&s->srv);
  unlink(s->sock);
  rmdir(s->dir);
}

void serve_stop(serve_t *s) {
  cli_server_stop(&s->srv);
  serve_cleanup(s);
}

int hostile_teardown(void **state) {
  (void)state;
  if (live_serve)
    serve_cleanup(live_serve);
  return 0;
}

/* ---- calls on a raw control-socket client (cli.h, docs/protocol.md) */

json_int_t conn_call_int(cli_conn_t *c, const char *cmd, const char *args) {
  char line[256];
  json_t *v;
  json_int_t n;

  snprintf(line, sizeof(line),
           "{\"op\":\"call\",\"payload\":{\"cmd\":\"%s\",\"args\":%s}}\n", cmd,
           args);
  cli_conn_send(c, line);
  v = cli_conn_recv(c);
  assert_non_null(v);
  if (!json_is_true(json_object_get(v, "ok")))
    fail_msg("call %s failed: %s", cmd,
             json_string_value(json_object_get(v, "message")));
  n = json_integer_value(json_object_get(v, "reply"));
  json_decref(v);
  assert_true(n > 0);
  return n;
}

int conn_worker_pids(cli_conn_t *c, int *pids, int max) {
  json_t *st = cli_conn_status(c), *w;
  size_t i;
  int n = 0;

  json_array_foreach(json_object_get(st, "workers"), i, w) {
    if (n < max)
      pids[n++] = (int)json_integer_value(json_object_get(w, "pid"));
  }
  json_decref(st);
  return n;
}
