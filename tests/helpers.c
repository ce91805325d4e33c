/* helpers.c -- test support shared by the integration suites. */
#include "helpers.h"
#include "faults.h" /* slot 0's reply fd, for late_hook */

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The paths the suites need, built in by tests/CMakeLists.txt so that a
 * suite run by hand needs no environment; a variable that is set and not
 * empty overrides its default (ctest sets them all). */
#ifndef PP_TEST_PYTHON
#define PP_TEST_PYTHON ""
#define PP_TEST_FIXTURES ""
#define PP_TEST_WORKER_PY ""
#define PP_TEST_POOLCTL ""
#define PP_TEST_EMBED ""
#endif

static const struct test_path {
  const char *name, *dflt;
} test_paths[] = {
    {"PP_PYTHON", PP_TEST_PYTHON},       {"PP_FIXTURES", PP_TEST_FIXTURES},
    {"PP_WORKER_PY", PP_TEST_WORKER_PY}, {"PP_POOLCTL", PP_TEST_POOLCTL},
    {"PP_EMBED", PP_TEST_EMBED},
};

/* Before main: fill each unset variable from its built-in default, so the
 * suites and the programs they start see one set of paths. */
__attribute__((constructor)) static void test_path_defaults(void) {
  for (size_t i = 0; i < sizeof(test_paths) / sizeof(test_paths[0]); i++) {
    const char *v = getenv(test_paths[i].name);
    if ((v == NULL || *v == '\0') && test_paths[i].dflt[0] != '\0')
      setenv(test_paths[i].name, test_paths[i].dflt, 1);
  }
}

const char *test_path(const char *name) {
  const char *v = getenv(name);

  if (v == NULL || *v == '\0')
    fail_msg("%s is not set and this build has no default for it: run the "
             "suite through ctest, or set %s=PATH",
             name, name);
  if (access(v, F_OK) != 0)
    fail_msg("%s=%s: %s (a moved build or source tree? rebuild, or set "
             "%s=PATH)",
             name, v, strerror(errno), name);
  return v;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void rec_init(rec_t *r) {
  memset(r, 0, sizeof(*r));
  uv_mutex_init(&r->mu);
  uv_cond_init(&r->cv);
}

void rec_free(rec_t *r) {
  free(r->ev);
  uv_cond_destroy(&r->cv);
  uv_mutex_destroy(&r->mu);
}

void rec_cb(pp_pool_t *pool, const pp_trace_event_t *ev, void *data) {
  rec_t *r = data;
  rec_event_t *e;

  (void)pool;
  if (getenv("PP_TEST_VERBOSE"))
    fprintf(stderr, "  trace: %s slot=%d gen=%u pid=%d lease=%llu code=%d %s\n",
            pp_trace_name(ev->type), ev->slot, ev->generation, ev->pid,
            (unsigned long long)ev->lease, ev->code,
            ev->detail ? ev->detail : "");
  uv_mutex_lock(&r->mu);
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 256;
    r->ev = realloc(r->ev, r->cap * sizeof(*r->ev));
    assert_non_null(r->ev);
  }
  e = &r->ev[r->n++];
  if ((unsigned)ev->type <= PP_TRACE_SLOW)
    r->counts[ev->type]++;
  e->type = ev->type;
  e->slot = ev->slot;
  e->generation = ev->generation;
  e->pid = ev->pid;
  e->lease = ev->lease;
  e->client = ev->client;
  e->code = ev->code;
  snprintf(e->detail, sizeof(e->detail), "%s", ev->detail ? ev->detail : "");
  uv_cond_broadcast(&r->cv);
  uv_mutex_unlock(&r->mu);
}

static size_t count_locked(rec_t *r, pp_trace_type_t type) {
  return (unsigned)type <= PP_TRACE_SLOW ? r->counts[type] : 0;
}

size_t rec_count(rec_t *r, pp_trace_type_t type) {
  size_t c;
  uv_mutex_lock(&r->mu);
  c = count_locked(r, type);
  uv_mutex_unlock(&r->mu);
  return c;
}

int test_time_scale(void) {
  const char *v = getenv("PP_TEST_TIME_SCALE");
  int s = v ? atoi(v) : 1;
  return s > 0 ? s : 1;
}

int rec_wait(rec_t *r, pp_trace_type_t type, size_t count, int timeout_ms) {
  uint64_t deadline =
               now_ms() + (uint64_t)timeout_ms * (uint64_t)test_time_scale(),
           now;
  int rc = 0;

  uv_mutex_lock(&r->mu);
  while (count_locked(r, type) < count) {
    now = now_ms();
    if (now >= deadline) {
      rc = -1;
      break;
    }
    uv_cond_timedwait(&r->cv, &r->mu, (deadline - now) * 1000000ull);
  }
  uv_mutex_unlock(&r->mu);
  return rc;
}

long rec_find(rec_t *r, pp_trace_type_t type, size_t from) {
  long found = -1;
  size_t i;

  uv_mutex_lock(&r->mu);
  for (i = from; i < r->n; i++)
    if (r->ev[i].type == type) {
      found = (long)i;
      break;
    }
  uv_mutex_unlock(&r->mu);
  return found;
}

static void quiet_log(pp_pool_t *pool, const char *line, void *data) {
  (void)pool;
  (void)data;
  if (getenv("PP_TEST_VERBOSE"))
    fprintf(stderr, "  log: %s\n", line);
}

pp_pool_options_t rec_options(rec_t *r) {
  pp_pool_options_t o;
  memset(&o, 0, sizeof(o));
  o.trace = r ? rec_cb : NULL;
  o.trace_data = r;
  o.log = quiet_log;
  return o;
}

pp_pool_t *rec_pool_open(rec_t *r, pp_config_t *cfg) {
  pp_pool_options_t o;
  pp_pool_t *pool;
  pp_diag_t d;
  int rc;

  rec_init(r);
  o = rec_options(r);
  rc = pp_pool_open(cfg, &o, &pool, &d);
  if (rc != 0)
    fail_msg("pp_pool_open: %s: %s", pp_strerror(rc), d.message);
  pp_config_free(cfg);
  return pool;
}

char *fixture_path(const char *name) {
  const char *dir = test_path("PP_FIXTURES");
  char *p;
  size_t n;

  n = strlen(dir) + strlen(name) + 2;
  p = malloc(n);
  assert_non_null(p);
  snprintf(p, n, "%s/%s", dir, name);
  return p;
}

void cfg_set(pp_config_t *cfg, const char *key, const char *value) {
  pp_diag_t d;
  int r;

  memset(&d, 0, sizeof(d));
  r = pp_config_set(cfg, key, value, &d);
  if (r != 0)
    fail_msg("pp_config_set(%s, %s): %s", key, value, d.message);
}

/* `size` workers running [PP_PYTHON, script, arg], restarting fast. */
static pp_config_t *script_config(const char *script, const char *arg,
                                  int size) {
  const char *py = test_path("PP_PYTHON");
  char cmd[2048], sz[32];
  pp_config_t *cfg;

  assert_non_null(script);
  assert_int_equal(pp_config_new(&cfg), 0);
  snprintf(cmd, sizeof(cmd), "[%s, %s, %s]", py, script, arg);
  cfg_set(cfg, "worker.command", cmd);
  /* The suites run as root in CI: workers may too (test_confine tests the
   * refusal). */
  cfg_set(cfg, "worker.allow_root", "true");
  snprintf(sz, sizeof(sz), "%d", size);
  cfg_set(cfg, "size", sz);
  /* Fast restarts keep crash tests short; limits only fire on failure. */
  cfg_set(cfg, "restart.backoff", "[10ms, 100ms]");
  return cfg;
}

pp_config_t *python_config(const char *handlers, int size) {
  char *h = fixture_path(handlers);
  pp_config_t *cfg = script_config(test_path("PP_WORKER_PY"), h, size);

  free(h);
  cfg_set(cfg, "name", "test");
  cfg_set(cfg, "worker.kill_grace", "2s");
  /* Limits that only fire on failure are generous: ctest runs suites side
   * by side on 2 cores, and a starting interpreter can wait long for CPU
   * (tests of the start-up timeout set their own). */
  cfg_set(cfg, "worker.startup_timeout", "60s");
  /* The integration suites run in both start modes (ctest sets PP_START). */
  if (getenv("PP_START") && *getenv("PP_START"))
    cfg_set(cfg, "worker.start", getenv("PP_START"));
  return cfg;
}

int env_int(const char *name, int dflt) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : dflt;
}

int pid_alive(int pid) { return kill(pid, 0) == 0 || errno == EPERM; }

int wait_pid_gone(int pid, int timeout_ms) {
  struct pollfd p;
  int fd, r;

  /* A pidfd becomes readable when the process exits: an event to wait on,
   * with a timeout that only fires on failure. */
  fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0)
    return errno == ESRCH ? 0 : -1;
  p.fd = fd;
  p.events = POLLIN;
  do
    r = poll(&p, 1, timeout_ms * test_time_scale());
  while (r < 0 && errno == EINTR);
  close(fd);
  return r > 0 ? 0 : -1;
}

void fifo_make(char *path, size_t len, const char *tag) {
  snprintf(path, len, "/tmp/pp-test-pipe-%s-%d", tag, (int)getpid());
  unlink(path);
  assert_int_equal(mkfifo(path, 0600), 0);
}

void fifo_release(const char *path) {
  int fd = open(path, O_WRONLY);

  assert_true(fd >= 0);
  close(fd);
}

void late_hook(pp_pool_t *pool, const char *point, void *data) {
  late_t *l = data;
  struct pollfd p;

  if (strcmp(point, l->point) != 0 || l->fired)
    return;
  l->fired = 1;
  fifo_release(l->fifo);
  /* The paused party holds slot 0's process in place: the lease's caller,
   * or the loop thread itself. */
  p.fd = pp_test_reply_fd(pool, 0);
  p.events = POLLIN;
  l->readable = poll(&p, 1, 10000 * test_time_scale()) == 1;
}

void assert_workers_kept(pp_pool_t *pool, rec_t *rec) {
  pp_status_t st;

  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(st.errors, 0);
  pp_status_free(&st);
  assert_int_equal(rec_count(rec, PP_TRACE_EXIT), 0);
}

pp_config_t *bad_worker_config(const char *mode, int size) {
  char *script = fixture_path("bad_worker.py");
  pp_config_t *cfg = script_config(script, mode, size);

  free(script);
  cfg_set(cfg, "worker.kill_grace", "300ms");
  cfg_set(cfg, "worker.request_timeout", "500ms");
  return cfg;
}

int marks_count(const char *file, const char *what) {
  char line[256];
  size_t n = strlen(what);
  int k = 0;
  FILE *f = fopen(file, "r");

  if (f == NULL)
    return 0;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, what, n) == 0 && line[n] == ' ')
      k++;
  fclose(f);
  return k;
}
