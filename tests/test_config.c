/* test_config.c -- the config module: defaults, every key from YAML and
 * back, every value type's good and bad forms, nested, flow and dotted
 * keys, overrides, environment, copies, validation, and each error message
 * with its file, line, column and key.  YAML fixtures are in
 * fixtures/config/ (PP_FIXTURES, else ./fixtures). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "portpool.h"
#include "config.h"
#include "diag.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MiB (UINT64_C(1) << 20)

/* ------------------------------------------------------------ helpers */

static void fixture_path(const char *name, char *buf, size_t len) {
  const char *dir = getenv("PP_FIXTURES");
  /* This build's fixtures (tests/CMakeLists.txt) when run by hand. */
  if (dir == NULL || dir[0] == '\0')
    dir = PP_TEST_FIXTURES;
  snprintf(buf, len, "%s/config/%s", dir, name);
}

static pp_config_t *load_fixture(const char *name) {
  char path[512];
  pp_config_t *cfg = NULL;
  pp_diag_t d;
  int rc;

  fixture_path(name, path, sizeof(path));
  rc = pp_config_load_file(path, &cfg, &d);
  if (rc != 0)
    fail_msg("%s: %s (%d)", path, d.message, rc);
  return cfg;
}

static pp_config_t *load_text(const char *yaml) {
  pp_config_t *cfg = NULL;
  pp_diag_t d;
  int rc = pp_config_load_string("test", yaml, strlen(yaml), &cfg, &d);
  if (rc != 0)
    fail_msg("%s:%d:%d: %s: %s", d.file, d.line, d.column, d.key, d.message);
  return cfg;
}

/* The formatted diagnostic of a text that must fail. */
static void load_text_fails(const char *yaml, const char *want) {
  pp_config_t *cfg = (pp_config_t *)1;
  pp_diag_t d;
  char line[1024];

  assert_int_equal(
      pp_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, &d),
      PP_ECONFIG);
  assert_null(cfg);
  pp__diag_format(&d, line, sizeof(line));
  assert_string_equal(line, want);
}

/* A fixture that must fail: its diagnostic, field by field. */
static void fixture_fails(const char *name, int line, int column,
                          const char *key, const char *message) {
  char path[512], want[1024], got[1024];
  pp_config_t *cfg = (pp_config_t *)1;
  pp_diag_t d;

  fixture_path(name, path, sizeof(path));
  assert_int_equal(pp_config_load_file(path, &cfg, &d), PP_ECONFIG);
  assert_null(cfg);
  assert_string_equal(d.file, path);
  assert_int_equal(d.line, line);
  assert_int_equal(d.column, column);
  assert_string_equal(d.key, key);
  assert_string_equal(d.message, message);
  /* And as the CLI prints it. */
  if (key[0] != '\0')
    snprintf(want, sizeof(want), "%s:%d:%d: %s: %s", path, line, column, key,
             message);
  else
    snprintf(want, sizeof(want), "%s:%d:%d: %s", path, line, column, message);
  pp__diag_format(&d, got, sizeof(got));
  assert_string_equal(got, want);
}

static void get_is(const pp_config_t *cfg, const char *key, const char *want) {
  char buf[512];
  assert_int_equal(pp_config_get(cfg, key, buf, sizeof(buf)), 0);
  assert_string_equal(buf, want);
}

/* pp_config_set that must succeed. */
static void set_ok(pp_config_t *cfg, const char *key, const char *value) {
  pp_diag_t d;
  int rc = pp_config_set(cfg, key, value, &d);
  if (rc != 0)
    fail_msg("set %s=%s: %s", key, value, d.message);
}

/* pp_config_set that must fail with this message, leaving the value. */
static void set_fails(pp_config_t *cfg, const char *key, const char *value,
                      const char *message) {
  char before[512], after[512];
  pp_diag_t d;

  assert_int_equal(pp_config_get(cfg, key, before, sizeof(before)), 0);
  assert_int_equal(pp_config_set(cfg, key, value, &d), PP_ECONFIG);
  assert_string_equal(d.message, message);
  assert_string_equal(d.key, key);
  assert_string_equal(d.file, "");
  assert_int_equal(d.line, 0);
  assert_int_equal(d.column, 0);
  assert_int_equal(pp_config_get(cfg, key, after, sizeof(after)), 0);
  assert_string_equal(before, after);
}

static pp_config_t *fresh(void) {
  pp_config_t *cfg = NULL;
  assert_int_equal(pp_config_new(&cfg), 0);
  assert_non_null(cfg);
  return cfg;
}

/* ------------------------------------------------------------ defaults */

static int ends_with(const char *s, const char *tail) {
  size_t n = strlen(s), t = strlen(tail);
  return n >= t && strcmp(s + n - t, tail) == 0;
}

static void assert_defaults(const pp_config_t *c) {
  assert_string_equal(c->name, "portpool");
  assert_int_equal(c->size, pp__config_cpus());
  assert_int_equal(c->size_auto, 1);
  assert_int_equal(c->min_ready, 0);
  assert_string_equal(c->adapter, "python");
  assert_int_equal(c->command_len, 3);
  assert_string_equal(c->command[0], "python3");
  /* The library is built with PP_PYTHON_DIR, a folder tests do not see. */
  assert_true(ends_with(c->command[1], "/portpool_worker.py"));
  assert_true(ends_with(c->command[2], "/example_handlers.py"));
  assert_null(c->command[3]);
  assert_int_equal(c->env_len, 3);
  assert_string_equal(c->env[0], "OMP_NUM_THREADS=1");
  assert_string_equal(c->env[1], "OPENBLAS_NUM_THREADS=1");
  assert_string_equal(c->env[2], "MKL_NUM_THREADS=1");
  assert_null(c->env[3]);
  assert_int_equal(c->startup_timeout_ms, 10000);
  assert_int_equal(c->request_timeout_ms, 30000);
  assert_int_equal(c->slow_request_ms, 0);
  assert_int_equal(c->max_requests, 0);
  assert_int_equal(c->max_rss, 0);
  assert_int_equal(c->max_age_ms, 0);
  assert_int_equal(c->max_recycling, 1);
  assert_int_equal(c->max_frame, 64 * MiB);
  assert_int_equal(c->heartbeat_ms, 0);
  assert_int_equal(c->heartbeat_misses, 3);
  assert_int_equal(c->kill_grace_ms, 2000);
  assert_int_equal(c->drain_timeout_ms, 5000);
  assert_int_equal(c->cancel_grace_ms, 1000);
  assert_int_equal(c->pipeline_depth, 1);
  assert_int_equal(c->reply_spin_us, 50);
  assert_int_equal(c->checkout_timeout_ms, 5000);
  assert_int_equal(c->strategy, PP_PICK_LIFO);
  assert_int_equal(c->max_waiters, 1024);
  assert_int_equal(c->max_restarts, 10);
  assert_int_equal(c->within_ms, 60000);
  assert_int_equal(c->backoff_min_ms, 100);
  assert_int_equal(c->backoff_max_ms, 5000);
  assert_int_equal(c->on_client_death, PP_DEATH_FINISH);
  assert_null(c->socket);
  assert_int_equal(c->socket_mode, 0600);
}

static void test_defaults(void **state) {
  (void)state;
  pp_config_t *cfg = fresh();
  assert_defaults(cfg);
  assert_int_equal(pp_config_validate(cfg, NULL), 0);
  pp_config_free(cfg);
  pp_config_free(NULL);
}

static void test_defaults_rendered(void **state) {
  (void)state;
  pp_config_t *cfg = fresh();
  char command[600];
  snprintf(command, sizeof(command), "[python3, %s, %s]", cfg->command[1],
           cfg->command[2]);
  get_is(cfg, "name", "portpool");
  get_is(cfg, "size", "auto");
  get_is(cfg, "min_ready", "0");
  get_is(cfg, "adapter", "python");
  get_is(cfg, "worker.command", command);
  get_is(cfg, "worker.env",
         "{OMP_NUM_THREADS: 1, OPENBLAS_NUM_THREADS: 1, MKL_NUM_THREADS: 1}");
  get_is(cfg, "worker.startup_timeout", "10s");
  get_is(cfg, "worker.request_timeout", "30s");
  get_is(cfg, "worker.slow_request", "0");
  get_is(cfg, "worker.max_requests", "0");
  get_is(cfg, "worker.max_rss", "0");
  get_is(cfg, "worker.max_age", "0");
  get_is(cfg, "worker.max_recycling", "1");
  get_is(cfg, "worker.max_frame", "64MiB");
  get_is(cfg, "worker.heartbeat", "0");
  get_is(cfg, "worker.heartbeat_misses", "3");
  get_is(cfg, "worker.kill_grace", "2s");
  get_is(cfg, "worker.drain_timeout", "5s");
  get_is(cfg, "worker.cancel_grace", "1s");
  get_is(cfg, "worker.pipeline_depth", "1");
  get_is(cfg, "worker.reply_spin_us", "50");
  get_is(cfg, "worker.start", "spawn");
  get_is(cfg, "checkout.timeout", "5s");
  get_is(cfg, "checkout.strategy", "lifo");
  get_is(cfg, "checkout.max_waiters", "1024");
  get_is(cfg, "restart.max_restarts", "10");
  get_is(cfg, "restart.within", "1m");
  get_is(cfg, "restart.backoff", "[100ms, 5s]");
  get_is(cfg, "on_client_death", "finish");
  get_is(cfg, "control.socket", "");
  get_is(cfg, "control.mode", "0600");
  pp_config_free(cfg);
}

static void test_key_listing(void **state) {
  (void)state;
  int n = 0;
  char buf[512];
  pp_config_t *cfg = fresh();
  for (; pp__config_key_name(n) != NULL; n++) {
    assert_non_null(pp__config_key_doc(n));
    assert_int_equal(
        pp_config_get(cfg, pp__config_key_name(n), buf, sizeof(buf)), 0);
  }
  assert_int_equal(n, 56);
  assert_null(pp__config_key_name(-1));
  assert_null(pp__config_key_doc(n));
  pp_config_free(cfg);
}

/* ------------------------------------------------------------ loading */

static void test_full(void **state) {
  (void)state;
  pp_config_t *c = load_fixture("full.yaml");
  assert_string_equal(c->name, "full-pool");
  assert_int_equal(c->size, 3);
  assert_int_equal(c->size_auto, 0);
  assert_int_equal(c->min_ready, 2);
  assert_string_equal(c->adapter, "mock");
  assert_int_equal(c->command_len, 4);
  assert_string_equal(c->command[0], "python3");
  assert_string_equal(c->command[1], "-u");
  /* Files named in a config file are read from its directory. */
  assert_true(c->command[2][0] == '/');
  assert_true(ends_with(c->command[2], "/config/w.py"));
  assert_true(ends_with(c->command[3], "/config/my handlers.py"));
  assert_null(c->command[4]);
  /* The user's OMP_NUM_THREADS replaces the default in place; the other
   * defaults stay; new names come last. */
  assert_int_equal(c->env_len, 4);
  assert_string_equal(c->env[0], "OMP_NUM_THREADS=4");
  assert_string_equal(c->env[1], "OPENBLAS_NUM_THREADS=1");
  assert_string_equal(c->env[2], "MKL_NUM_THREADS=1");
  assert_string_equal(c->env[3], "PYTHONHASHSEED=0");
  assert_null(c->env[4]);
  assert_int_equal(c->startup_timeout_ms, 15000);
  assert_int_equal(c->request_timeout_ms, 60000);
  assert_int_equal(c->slow_request_ms, 2500);
  assert_int_equal(c->max_requests, 1000);
  assert_int_equal(c->max_rss, 512 * MiB);
  assert_int_equal(c->max_age_ms, 3600000);
  assert_int_equal(c->max_recycling, 2);
  assert_int_equal(c->max_frame, MiB);
  assert_int_equal(c->heartbeat_ms, 250);
  assert_int_equal(c->heartbeat_misses, 5);
  assert_int_equal(c->kill_grace_ms, 1500);
  assert_int_equal(c->drain_timeout_ms, 10000);
  assert_int_equal(c->cancel_grace_ms, 500);
  assert_int_equal(c->pipeline_depth, 4);
  assert_int_equal(c->checkout_timeout_ms, 2000);
  assert_int_equal(c->strategy, PP_PICK_FIFO);
  assert_int_equal(c->max_waiters, 16);
  assert_int_equal(c->max_restarts, 3);
  assert_int_equal(c->within_ms, 30000);
  assert_int_equal(c->backoff_min_ms, 50);
  assert_int_equal(c->backoff_max_ms, 2000);
  assert_int_equal(c->on_client_death, PP_DEATH_CANCEL);
  assert_string_equal(c->socket, "/tmp/portpool-full.sock");
  assert_int_equal(c->socket_mode, 0660);
  assert_int_equal(pp_config_validate(c, NULL), 0);
  pp_config_free(c);
}

/* A directory with a config file and the files it names, for the tests of
 * relative paths: DIR/pool.yaml holding `yaml`, DIR/w.py, DIR/sub/h.py. */
static void path_fixture(char *dir, size_t len, const char *yaml) {
  char p[600];
  FILE *f;

  snprintf(dir, len, "/tmp/pp-test-cfgdir-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(p, sizeof(p), "%s/sub", dir);
  assert_int_equal(mkdir(p, 0700), 0);
  const char *files[] = {"w.py", "sub/h.py", "pool.yaml"};
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs(i == 2 ? yaml : "\n", f);
    fclose(f);
  }
}

static void path_fixture_remove(const char *dir) {
  char p[600];
  const char *files[] = {"w.py", "sub/h.py", "pool.yaml", "sub", ""};

  for (int i = 0; i < 5; i++) {
    snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
    remove(p);
  }
}

/* Relative paths in a file are read from the file's directory, whatever
 * the current one: the worker script, a handler file, an interpreter with
 * a slash and control.socket; options, bare names (found on PATH) and
 * module names are left as written.  --set values stay relative to the
 * current directory. */
static void test_relative_paths_from_file_dir(void **state) {
  char dir[64], path[600], want[600], cwd[600];
  pp_config_t *c = NULL;
  pp_diag_t d;

  (void)state;
  path_fixture(dir, sizeof(dir),
               "worker:\n  command: [python3, -u, w.py, sub/h.py]\n"
               "control:\n  socket: run/pool.sock\n");
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  assert_int_equal(chdir("/"), 0);
  snprintf(path, sizeof(path), "%s/pool.yaml", dir);
  if (pp_config_load_file(path, &c, &d) != 0)
    fail_msg("%s:%d:%d: %s: %s", d.file, d.line, d.column, d.key, d.message);
  assert_string_equal(c->command[0], "python3");
  assert_string_equal(c->command[1], "-u");
  snprintf(want, sizeof(want), "%s/w.py", dir);
  assert_string_equal(c->command[2], want);
  snprintf(want, sizeof(want), "%s/sub/h.py", dir);
  assert_string_equal(c->command[3], want);
  snprintf(want, sizeof(want), "%s/run/pool.sock", dir);
  assert_string_equal(c->socket, want);
  pp_config_free(c);
  c = NULL;
  /* The same file through a relative path; then an override, relative to
   * the cwd, and a module name, which is not a file. */
  assert_int_equal(chdir(dir), 0);
  assert_int_equal(pp_config_load_file("sub/../pool.yaml", &c, &d), 0);
  snprintf(want, sizeof(want), "%s/w.py", dir);
  assert_string_equal(c->command[2], want);
  assert_int_equal(
      pp_config_override(c, "worker.command=[python3, w.py, app.handlers]", &d),
      0);
  assert_string_equal(c->command[1], "w.py");
  assert_string_equal(c->command[2], "app.handlers");
  pp_config_free(c);
  assert_int_equal(chdir(cwd), 0);
  path_fixture_remove(dir);
}

/* A worker script or handler file that is not there fails the load, at
 * its place in the file and naming the key, not later when a pool starts;
 * so does an interpreter path that is not executable. */
static void test_missing_worker_file_located(void **state) {
  char dir[64], path[600];
  pp_config_t *c = NULL;
  pp_diag_t d;

  (void)state;
  path_fixture(dir, sizeof(dir),
               "size: 1\nworker:\n  command: [python3, w.py, nothere.py]\n");
  snprintf(path, sizeof(path), "%s/pool.yaml", dir);
  assert_int_equal(pp_config_load_file(path, &c, &d), PP_ECONFIG);
  assert_null(c);
  assert_string_equal(d.file, path);
  assert_int_equal(d.line, 3);
  assert_int_equal(d.column, 28);
  assert_string_equal(d.key, "worker.command");
  assert_non_null(strstr(d.message, "/nothere.py"));
  assert_non_null(strstr(d.message, "No such file"));
  assert_non_null(strstr(d.message, "config file's directory"));
  path_fixture_remove(dir);

  path_fixture(dir, sizeof(dir),
               "worker:\n  command: [./venv/bin/python, w.py, sub/h.py]\n");
  snprintf(path, sizeof(path), "%s/pool.yaml", dir);
  assert_int_equal(pp_config_load_file(path, &c, &d), PP_ECONFIG);
  assert_int_equal(d.line, 2);
  assert_int_equal(d.column, 13);
  assert_non_null(strstr(d.message, "interpreter"));
  assert_non_null(strstr(d.message, "/venv/bin/python"));
  path_fixture_remove(dir);
}

/* Every key rendered by get and fed back to set gives the same value. */
static void test_round_trip(void **state) {
  (void)state;
  pp_config_t *a = load_fixture("full.yaml"), *b = fresh();
  char va[512], vb[512];

  for (int i = 0; pp__config_key_name(i) != NULL; i++) {
    const char *key = pp__config_key_name(i);
    assert_int_equal(pp_config_get(a, key, va, sizeof(va)), 0);
    set_ok(b, key, va);
    assert_int_equal(pp_config_get(b, key, vb, sizeof(vb)), 0);
    assert_string_equal(va, vb);
  }
  assert_true(ends_with(b->command[3], "/config/my handlers.py"));
  pp_config_free(a);
  pp_config_free(b);
}

static void test_minimal_and_empty(void **state) {
  (void)state;
  pp_config_t *c = load_fixture("minimal.yaml");
  assert_string_equal(c->name, "minimal");
  assert_int_equal(c->size, 2);
  assert_int_equal(c->size_auto, 0);
  assert_int_equal(c->checkout_timeout_ms, 5000);
  pp_config_free(c);

  const char *empties[] = {"", "# nothing but a comment\n", "---\n", "~\n",
                           "\n\n"};
  for (size_t i = 0; i < sizeof(empties) / sizeof(*empties); i++) {
    c = load_text(empties[i]);
    assert_defaults(c);
    pp_config_free(c);
  }
  /* A section with everything commented out. */
  c = load_text("worker:\n  # command: [x]\nname: n\n");
  assert_string_equal(c->name, "n");
  assert_int_equal(c->command_len, 3);
  pp_config_free(c);
}

/* size: auto within a cgroup's CPU quota: a fake /proc/self/cgroup and
 * cgroup tree (v2 cpu.max on the cgroup and its parent; v1
 * cpu.cfs_quota_us under the "cpu" hierarchy). */
static void put(const char *dir, const char *name, const char *text) {
  char path[512];
  FILE *f;

  assert_true(snprintf(path, sizeof(path), "%s/%s", dir, name) <
              (int)sizeof(path));
  assert_non_null(f = fopen(path, "w"));
  fputs(text, f);
  fclose(f);
}

static void sub(char *out, size_t cap, const char *dir, const char *name) {
  assert_true(snprintf(out, cap, "%s/%s", dir, name) < (int)cap);
  assert_int_equal(mkdir(out, 0700), 0);
}

static void test_size_auto_quota(void **state) {
  char root[] = "/tmp/pp-cpus-XXXXXX", fs[512], a[512], ab[512], v1[512],
       v1c[512], self[512];
  int all;

  (void)state;
  assert_non_null(mkdtemp(root));
  all = pp__config_cpus_in("/nonexistent", "/nonexistent");
  assert_true(all >= 1);
  sub(fs, sizeof(fs), root, "fs");
  sub(a, sizeof(a), fs, "a");
  sub(ab, sizeof(ab), a, "b");
  snprintf(self, sizeof(self), "%s/self", root);
  /* v2: no quota anywhere: every CPU. */
  put(root, "self", "0::/a/b\n");
  put(ab, "cpu.max", "max 100000\n");
  assert_int_equal(pp__config_cpus_in(self, fs), all);
  /* Half a CPU on the parent: rounded up to one. */
  put(a, "cpu.max", "50000 100000\n");
  assert_int_equal(pp__config_cpus_in(self, fs), 1);
  /* A cgroup namespace: the container's own cgroup is the root seen. */
  put(root, "self", "0::/\n");
  put(fs, "cpu.max", "25000 100000\n");
  assert_int_equal(pp__config_cpus_in(self, fs), 1);
  /* v1: the cpu hierarchy; -1 is no quota. */
  sub(v1, sizeof(v1), fs, "cpu");
  sub(v1c, sizeof(v1c), v1, "c");
  put(root, "self", "4:cpu,cpuacct:/c\n3:memory:/c\n");
  put(v1c, "cpu.cfs_quota_us", "-1\n");
  put(v1c, "cpu.cfs_period_us", "100000\n");
  assert_int_equal(pp__config_cpus_in(self, fs), all);
  put(v1c, "cpu.cfs_quota_us", "100000\n");
  assert_int_equal(pp__config_cpus_in(self, fs), 1);
  /* Garbage is no quota. */
  put(v1c, "cpu.cfs_quota_us", "lots\n");
  assert_int_equal(pp__config_cpus_in(self, fs), all);
  /* The real one never counts more than the affinity mask. */
  assert_true(pp__config_cpus() <= all);
  {
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
  }
}

static void test_size_auto(void **state) {
  (void)state;
  pp_config_t *c = load_text("size: auto\n");
  assert_int_equal(c->size, pp__config_cpus());
  assert_true(c->size >= 1);
  assert_int_equal(c->size_auto, 1);
  get_is(c, "size", "auto");
  set_ok(c, "size", "7");
  assert_int_equal(c->size, 7);
  assert_int_equal(c->size_auto, 0);
  get_is(c, "size", "7");
  set_ok(c, "size", "auto");
  assert_int_equal(c->size, pp__config_cpus());
  assert_int_equal(c->size_auto, 1);
  pp_config_free(c);
}

static void test_nested_flow_dotted(void **state) {
  (void)state;
  /* The same values written nested, in flow style and dotted. */
  const char *forms[] = {
      "restart:\n  max_restarts: 4\n  within: 2m\n  backoff:\n    - 10ms\n"
      "    - 1s\nworker:\n  env:\n    A: x\n",
      "restart: {max_restarts: 4, within: 2m, backoff: [10ms, 1s]}\n"
      "worker: {env: {A: x}}\n",
      "restart.max_restarts: 4\nrestart.within: 2m\n"
      "restart.backoff: [10ms, 1s]\nworker.env: {A: x}\n",
      "restart: {max_restarts: 4}\nrestart.within: 2m\n"
      "restart: \n  backoff: [10ms, 1s]\nworker.env:\n  A: x\n",
      "{restart: {max_restarts: 4, within: 2m, backoff: 10ms 1s}, "
      "worker: {env: [A=x]}}",
  };
  for (size_t i = 0; i < sizeof(forms) / sizeof(*forms); i++) {
    pp_config_t *c = NULL;
    pp_diag_t d;
    int rc = pp_config_load_string("f", forms[i], strlen(forms[i]), &c, &d);
    if (i == 3) {
      /* restart appears twice in one mapping: a duplicate. */
      assert_int_equal(rc, PP_ECONFIG);
      assert_string_equal(d.key, "restart");
      assert_int_equal(d.line, 3);
      assert_string_equal(d.message,
                          "duplicate key, first set at line 1, column 1");
      continue;
    }
    if (rc != 0)
      fail_msg("form %zu: %d:%d %s: %s", i, d.line, d.column, d.key, d.message);
    assert_int_equal(c->max_restarts, 4);
    assert_int_equal(c->within_ms, 120000);
    assert_int_equal(c->backoff_min_ms, 10);
    assert_int_equal(c->backoff_max_ms, 1000);
    assert_int_equal(c->env_len, 4);
    assert_string_equal(c->env[3], "A=x");
    pp_config_free(c);
  }
  /* Dotted keys at the top level mix with sections. */
  pp_config_t *c = load_text("checkout.timeout: 2s\ncheckout:\n  strategy: "
                             "fifo\nworker.max_rss: 1GiB\n");
  assert_int_equal(c->checkout_timeout_ms, 2000);
  assert_int_equal(c->strategy, PP_PICK_FIFO);
  assert_int_equal(c->max_rss, 1024 * MiB);
  pp_config_free(c);
  /* Anchors and aliases are YAML's business and work. */
  c = load_text("checkout: {timeout: &t 3s}\nworker: {kill_grace: *t}\n");
  assert_int_equal(c->kill_grace_ms, 3000);
  pp_config_free(c);
}

/* ------------------------------------------------------------ value types */

static void test_durations(void **state) {
  (void)state;
  static const struct {
    const char *text;
    uint64_t ms;
    const char *shown;
  } good[] = {
      {"250ms", 250, "250ms"},  {"5s", 5000, "5s"},
      {"2m", 120000, "2m"},     {"1h", 3600000, "1h"},
      {"1.5s", 1500, "1500ms"}, {"0", 0, "0"},
      {"0s", 0, "0"},           {"90s", 90000, "90s"},
      {"0.25m", 15000, "15s"},  {"1.001s", 1001, "1001ms"},
  };
  pp_config_t *c = fresh();
  for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
    set_ok(c, "checkout.timeout", good[i].text);
    assert_int_equal(c->checkout_timeout_ms, good[i].ms);
    get_is(c, "checkout.timeout", good[i].shown);
  }
  set_ok(c, "checkout.timeout", "\"5s\"");
  assert_int_equal(c->checkout_timeout_ms, 5000);
  set_fails(c, "checkout.timeout", "5 parsecs",
            "expected a duration like 250ms, 5s or 2m, got \"5 parsecs\"");
  set_fails(c, "checkout.timeout", "5",
            "expected a duration with a unit, like 5s or 5ms, got \"5\"");
  set_ok(c, "worker.slow_request", "100ms");
  assert_int_equal(c->slow_request_ms, 100);
  get_is(c, "worker.slow_request", "100ms");
  set_fails(c, "worker.slow_request", "-1s",
            "expected a duration like 250ms, 5s or 2m, got \"-1s\"");
  set_fails(c, "worker.max_age", "1.5",
            "expected a duration with a unit, like 1.5s or 1.5ms, got \"1.5\"");
  set_fails(c, "checkout.timeout", "1.5ms",
            "expected a whole number of milliseconds, got \"1.5ms\"");
  set_fails(c, "checkout.timeout", "-1s",
            "expected a duration like 250ms, 5s or 2m, got \"-1s\"");
  set_fails(c, "checkout.timeout", "5S",
            "expected a duration like 250ms, 5s or 2m, got \"5S\"");
  set_fails(c, "checkout.timeout", "",
            "expected a duration like 250ms, 5s or 2m, got nothing");
  set_fails(c, "checkout.timeout", "[1s]",
            "expected a duration like 250ms, 5s or 2m, got a sequence");
  set_fails(c, "checkout.timeout", "1000000h",
            "expected a duration of at most 876000h, got \"1000000h\"");
  set_fails(c, "checkout.timeout", "99999999999999999999h",
            "expected a duration like 250ms, 5s or 2m, got "
            "\"99999999999999999999h\"");
  pp_config_free(c);
}

static void test_memory(void **state) {
  (void)state;
  static const struct {
    const char *text;
    uint64_t bytes;
    const char *shown;
  } good[] = {
      {"512MiB", 512 * MiB, "512MiB"},
      {"1GiB", 1024 * MiB, "1GiB"},
      {"64KiB", 64 * 1024, "64KiB"},
      {"100MB", 100000000, "100000000"},
      {"0", 0, "0"},
      {"4096", 4096, "4KiB"},
      {"1000", 1000, "1000"},
      {"1.5GiB", 1536 * MiB, "1536MiB"},
      {"2TiB", 2 * 1024 * 1024 * MiB, "2TiB"},
      {"10kb", 10000, "10000"},
      {"7B", 7, "7"},
  };
  pp_config_t *c = fresh();
  for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
    set_ok(c, "worker.max_rss", good[i].text);
    assert_int_equal(c->max_rss, good[i].bytes);
    get_is(c, "worker.max_rss", good[i].shown);
  }
  set_fails(c, "worker.max_rss", "lots",
            "expected a size like 512MiB, 1GiB, 64KiB or 100MB, got \"lots\"");
  set_fails(c, "worker.max_rss", "12 MiB",
            "expected a size like 512MiB, 1GiB, 64KiB or 100MB, got "
            "\"12 MiB\"");
  set_fails(c, "worker.max_rss", "-1",
            "expected a size like 512MiB, 1GiB, 64KiB or 100MB, got \"-1\"");
  set_fails(c, "worker.max_rss", "1.5",
            "expected a whole number of bytes, got \"1.5\"");
  set_fails(c, "worker.max_rss", "9999999TiB",
            "expected a size of at most 9223372036854775807, got "
            "\"9999999TiB\"");
  /* max_frame is a uint32_t and bounded to 1KiB..1GiB. */
  set_ok(c, "worker.max_frame", "1KiB");
  assert_int_equal(c->max_frame, 1024);
  set_ok(c, "worker.max_frame", "1GiB");
  assert_int_equal(c->max_frame, 1024 * MiB);
  set_fails(c, "worker.max_frame", "2GiB",
            "expected a size from 1KiB to 1GiB, got \"2GiB\"");
  set_fails(c, "worker.max_frame", "100",
            "expected a size from 1KiB to 1GiB, got \"100\"");
  set_fails(c, "worker.max_frame", "8GiB",
            "expected a size from 1KiB to 1GiB, got \"8GiB\"");
  pp_config_free(c);
}

static void validate_fails(pp_config_t *c, const char *key,
                           const char *message);

/* size: {min, max} makes an elastic pool; a number or auto a fixed one.
 * min is at least 1 (the pool opens with min workers booted). */
static void test_size_elastic(void **state) {
  (void)state;
  pp_config_t *c = load_text("size: {min: 1, max: 16}\n");
  char buf[64];

  assert_int_equal(c->size, 1);
  assert_int_equal(c->size_max, 16);
  assert_int_equal(c->elastic, 1);
  get_is(c, "size", "{min: 1, max: 16}");
  get_is(c, "scale.up_after", "5ms");
  get_is(c, "scale.max_starting", "4");
  get_is(c, "scale.idle_timeout", "30s");
  assert_int_equal(pp_config_validate(c, NULL), 0);
  /* Rendered back, it loads the same. */
  assert_int_equal(pp_config_get(c, "size", buf, sizeof(buf)), 0);
  set_ok(c, "size", buf);
  assert_int_equal(c->size_max, 16);
  set_ok(c, "size", "4");
  assert_int_equal(c->elastic, 0);
  assert_int_equal(c->size_max, 4);
  get_is(c, "size", "4");
  set_ok(c, "size", "{min: 2, max: auto}");
  assert_int_equal(c->size, 2);
  assert_int_equal(c->elastic, 1);
  set_ok(c, "scale.up_after", "2ms");
  assert_int_equal(c->scale_up_after_ms, 2);
  set_fails(c, "scale.idle_timeout", "0",
            "expected a duration from 1ms to 876000h, got \"0\"");
  set_fails(c, "size", "{min: 4, max: 2}",
            "expected {min: N, max: M} with min <= max, got {min: 4, max: 2}");
  set_fails(c, "size", "{min: 0, max: 2}",
            "expected auto or an integer from 1 to 4096, got \"0\"");
  set_fails(c, "size", "{min: 1}", "expected {min: N, max: M} with both given");
  set_fails(c, "size", "{min: 1, top: 2}",
            "expected only min and max in size's mapping");
  set_ok(c, "size", "{min: 3, max: 8}");
  set_ok(c, "min_ready", "4");
  validate_fails(c, "min_ready", "expected at most size's min (3), got 4");
  pp_config_free(c);
  c = load_text("size: 3\n");
  assert_int_equal(c->elastic, 0);
  assert_int_equal(c->size_max, 3);
  pp_config_free(c);
}

static void test_integers(void **state) {
  (void)state;
  pp_config_t *c = fresh();
  set_ok(c, "worker.pipeline_depth", "1024");
  assert_int_equal(c->pipeline_depth, 1024);
  set_ok(c, "worker.start", "zygote");
  assert_int_equal(c->start, PP_START_ZYGOTE);
  set_fails(c, "worker.start", "fork",
            "expected one of spawn, zygote, got \"fork\"");
  set_ok(c, "worker.max_requests", "18446744073");
  assert_int_equal(c->max_requests, UINT64_C(18446744073));
  get_is(c, "worker.max_requests", "18446744073");
  set_ok(c, "checkout.max_waiters", "0");
  assert_int_equal(c->max_waiters, 0);
  set_ok(c, "min_ready", "+3");
  assert_int_equal(c->min_ready, 3);
  set_fails(c, "worker.pipeline_depth", "0",
            "expected an integer from 1 to 1024, got \"0\"");
  set_fails(c, "worker.pipeline_depth", "1025",
            "expected an integer from 1 to 1024, got \"1025\"");
  set_fails(c, "worker.pipeline_depth", "two",
            "expected an integer from 1 to 1024, got \"two\"");
  set_ok(c, "worker.reply_spin_us", "0");
  assert_int_equal(c->reply_spin_us, 0);
  set_fails(c, "worker.reply_spin_us", "1001",
            "expected an integer from 0 to 1000, got \"1001\"");
  set_fails(c, "checkout.max_waiters", "-1",
            "expected an integer from 0 to 2147483647, got \"-1\"");
  set_fails(c, "checkout.max_waiters", "99999999999",
            "expected an integer from 0 to 2147483647, got \"99999999999\"");
  set_fails(c, "worker.max_requests", "1e3",
            "expected an integer of at least 0, got \"1e3\"");
  set_fails(c, "size", "0",
            "expected auto or an integer from 1 to 4096, got \"0\"");
  set_fails(c, "size", "lots",
            "expected auto or an integer from 1 to 4096, got \"lots\"");
  set_fails(c, "size", "AUTO",
            "expected auto or an integer from 1 to 4096, got \"AUTO\"");
  pp_config_free(c);
}

static void test_enums_modes_strings(void **state) {
  (void)state;
  pp_config_t *c = fresh();
  set_ok(c, "checkout.strategy", "fifo");
  assert_int_equal(c->strategy, PP_PICK_FIFO);
  set_ok(c, "on_client_death", "kill");
  assert_int_equal(c->on_client_death, PP_DEATH_KILL);
  set_ok(c, "on_client_death", "cancel");
  assert_int_equal(c->on_client_death, PP_DEATH_CANCEL);
  set_ok(c, "adapter", "mock");
  assert_string_equal(c->adapter, "mock");
  set_fails(c, "checkout.strategy", "random",
            "expected one of lifo, fifo, got \"random\"");
  set_fails(c, "on_client_death", "kil",
            "expected one of finish, cancel, kill, got \"kil\"; did you "
            "mean 'kill'?");
  set_fails(c, "adapter", "Python",
            "expected one of python, mock, got \"Python\"; did you mean "
            "'python'?");

  set_ok(c, "control.mode", "0660");
  assert_int_equal(c->socket_mode, 0660);
  set_ok(c, "control.mode", "\"0640\"");
  assert_int_equal(c->socket_mode, 0640);
  set_ok(c, "control.mode", "0o600");
  assert_int_equal(c->socket_mode, 0600);
  set_ok(c, "control.mode", "700");
  assert_int_equal(c->socket_mode, 0700);
  get_is(c, "control.mode", "0700");
  set_fails(c, "control.mode", "0800",
            "expected an octal file mode like 0600, got \"0800\"");
  set_fails(c, "control.mode", "01000",
            "expected an octal file mode from 0000 to 0777, got \"01000\"");
  set_fails(c, "control.mode", "rw",
            "expected an octal file mode like 0600, got \"rw\"");

  set_ok(c, "name", "my pool");
  assert_string_equal(c->name, "my pool");
  get_is(c, "name", "my pool");
  set_ok(c, "name", "\"quo\\\"ted\"");
  assert_string_equal(c->name, "quo\"ted");
  get_is(c, "name", "\"quo\\\"ted\"");
  set_fails(c, "name", "", "expected a non-empty string, got nothing");
  set_fails(c, "name", "[a]", "expected a non-empty string, got a sequence");

  set_ok(c, "control.socket", "/tmp/x.sock");
  assert_string_equal(c->socket, "/tmp/x.sock");
  set_ok(c, "control.socket", "");
  assert_null(c->socket);
  set_ok(c, "control.socket", "/tmp/y.sock");
  set_ok(c, "control.socket", "~");
  assert_null(c->socket);
  set_ok(c, "control.socket", "\"\"");
  assert_null(c->socket);
  pp_config_free(c);

  c = load_text("control:\n  socket:\n  mode: 0640\nname: \"0600\"\n");
  assert_null(c->socket);
  assert_int_equal(c->socket_mode, 0640);
  assert_string_equal(c->name, "0600");
  pp_config_free(c);
}

static void test_lists(void **state) {
  (void)state;
  pp_config_t *c = fresh();
  set_ok(c, "worker.command", "[python3, a.py, b.py]");
  assert_int_equal(c->command_len, 3);
  assert_string_equal(c->command[1], "a.py");
  assert_null(c->command[3]);
  set_ok(c, "worker.command", "python3  -X dev w.py");
  assert_int_equal(c->command_len, 4);
  assert_string_equal(c->command[1], "-X");
  assert_string_equal(c->command[3], "w.py");
  set_ok(c, "worker.command", "[\"a b\", 'c,d', \"\"]");
  assert_int_equal(c->command_len, 3);
  assert_string_equal(c->command[0], "a b");
  assert_string_equal(c->command[1], "c,d");
  assert_string_equal(c->command[2], "");
  get_is(c, "worker.command", "[a b, \"c,d\", \"\"]");
  set_ok(c, "worker.command", "[]");
  assert_int_equal(c->command_len, 0);
  assert_null(c->command[0]);
  set_fails(c, "worker.command", "[a, [b]]",
            "expected a string, got a sequence");
  set_fails(c, "worker.command", "{a: b}",
            "expected a list like [python3, worker.py, handlers.py], got a "
            "mapping");
  set_fails(c, "worker.command", "[a, b",
            "did not find expected ',' or ']' (while parsing a flow "
            "sequence at line 1, column 1)");

  set_ok(c, "restart.backoff", "[1s, 1s]");
  assert_int_equal(c->backoff_min_ms, 1000);
  assert_int_equal(c->backoff_max_ms, 1000);
  set_ok(c, "restart.backoff", "20ms 3s");
  assert_int_equal(c->backoff_min_ms, 20);
  assert_int_equal(c->backoff_max_ms, 3000);
  set_fails(c, "restart.backoff", "[5s, 100ms]",
            "expected [min, max] with min <= max, got [5s, 100ms]");
  set_fails(c, "restart.backoff", "[1s]",
            "expected [min, max] like [100ms, 5s], got a sequence");
  set_fails(c, "restart.backoff", "[1s, 2s, 3s]",
            "expected [min, max] like [100ms, 5s], got a sequence");
  set_fails(c, "restart.backoff", "[1s, soon]",
            "expected a duration like 250ms, 5s or 2m, got \"soon\"");
  set_fails(c, "restart.backoff", "1s",
            "expected [min, max] like [100ms, 5s], got \"1s\"");
  pp_config_free(c);
}

static void test_env(void **state) {
  (void)state;
  pp_config_t *c = fresh();
  /* Merged per name: defaults stay unless named. */
  set_ok(c, "worker.env", "{MKL_NUM_THREADS: 2, FOO: bar}");
  assert_int_equal(c->env_len, 4);
  assert_string_equal(c->env[2], "MKL_NUM_THREADS=2");
  assert_string_equal(c->env[3], "FOO=bar");
  /* A null value drops a name, an empty string keeps it empty. */
  set_ok(c, "worker.env", "{OMP_NUM_THREADS: ~, FOO: \"\"}");
  assert_int_equal(c->env_len, 3);
  assert_string_equal(c->env[0], "OPENBLAS_NUM_THREADS=1");
  assert_string_equal(c->env[1], "MKL_NUM_THREADS=2");
  assert_string_equal(c->env[2], "FOO=");
  assert_null(c->env[3]);
  /* The dropped default renders as null: the text sets back the same. */
  get_is(c, "worker.env",
         "{OPENBLAS_NUM_THREADS: 1, MKL_NUM_THREADS: 2, FOO: \"\", "
         "OMP_NUM_THREADS: null}");
  /* NAME=value words, as from an environment variable. */
  set_ok(c, "worker.env", "A=1 B=x=y");
  assert_int_equal(c->env_len, 5);
  assert_string_equal(c->env[3], "A=1");
  assert_string_equal(c->env[4], "B=x=y");
  set_fails(c, "worker.env", "{\"A B\": 1}",
            "expected an environment variable name, got \"A B\"");
  set_fails(c, "worker.env", "{A: [1]}", "expected a string, got a sequence");
  set_fails(c, "worker.env", "{A: 1, A: 2}", "duplicate variable 'A'");
  set_fails(c, "worker.env", "NOEQUALS",
            "expected NAME=value, got \"NOEQUALS\"");
  set_fails(c, "worker.env", "1A=x", "expected NAME=value, got \"1A=x\"");
  pp_config_free(c);

  c = load_text("worker:\n  env:\n    PYTHONPATH: /opt/app:/opt/lib\n"
                "    MKL_NUM_THREADS:\n");
  assert_int_equal(c->env_len, 3);
  assert_string_equal(c->env[2], "PYTHONPATH=/opt/app:/opt/lib");
  get_is(c, "worker.env",
         "{OMP_NUM_THREADS: 1, OPENBLAS_NUM_THREADS: 1, "
         "PYTHONPATH: \"/opt/app:/opt/lib\", MKL_NUM_THREADS: null}");
  pp_config_free(c);
}

/* ------------------------------------------------------------ overrides */

static void test_override(void **state) {
  (void)state;
  pp_config_t *c = fresh();
  pp_diag_t d;
  assert_int_equal(pp_config_override(c, "checkout.timeout=2s", &d), 0);
  assert_int_equal(c->checkout_timeout_ms, 2000);
  assert_int_equal(pp_config_override(c, " size = 3", &d), 0);
  assert_int_equal(c->size, 3);
  assert_int_equal(
      pp_config_override(c, "worker.command=[python3, x.py, y.py]", &d), 0);
  assert_string_equal(c->command[2], "y.py");
  assert_int_equal(pp_config_override(c, "worker.env=A=b", &d), 0);
  assert_string_equal(c->env[3], "A=b");

  assert_int_equal(pp_config_override(c, "checkout.timeout", &d), PP_ECONFIG);
  assert_string_equal(d.message,
                      "expected key=value, got \"checkout.timeout\"");
  assert_int_equal(pp_config_override(c, "=5s", &d), PP_ECONFIG);
  assert_int_equal(pp_config_override(c, "checkout.timout=5s", &d), PP_ECONFIG);
  assert_string_equal(d.key, "checkout.timout");
  assert_string_equal(d.message,
                      "unknown key; did you mean 'checkout.timeout'?");
  assert_int_equal(pp_config_set(c, "timeout", "5s", &d), PP_ECONFIG);
  assert_string_equal(d.message,
                      "unknown key; did you mean 'checkout.timeout'?");
  assert_int_equal(pp_config_set(c, "zzzzzzzz", "5s", &d), PP_ECONFIG);
  assert_string_equal(d.message, "unknown key");
  assert_int_equal(pp_config_override(c, "size=lots", &d), PP_ECONFIG);
  char line[600];
  pp__diag_format(&d, line, sizeof(line));
  assert_string_equal(
      line, "size: expected auto or an integer from 1 to 4096, got \"lots\"");
  assert_int_equal(c->size, 3);
  pp_config_free(c);
}

static void test_env_overrides(void **state) {
  (void)state;
  pp_config_t *c = fresh();
  pp_diag_t d;

  setenv("PPTEST_CFG_CHECKOUT_TIMEOUT", "2s", 1);
  setenv("PPTEST_CFG_WORKER_COMMAND", "[python3, e.py, h.py]", 1);
  setenv("PPTEST_CFG_SIZE", "auto", 1);
  setenv("PPTEST_CFG_RESTART_BACKOFF", "1s 2s", 1);
  /* A different prefix is not read. */
  setenv("PPTESTX_CFG_NAME", "nope", 1);
  assert_int_equal(pp_config_apply_env(c, "PPTEST_CFG", &d), 0);
  assert_int_equal(c->checkout_timeout_ms, 2000);
  assert_string_equal(c->command[1], "e.py");
  assert_int_equal(c->size_auto, 1);
  assert_int_equal(c->backoff_max_ms, 2000);
  assert_string_equal(c->name, "portpool");

  /* One bad variable: an error naming it, and nothing applied. */
  setenv("PPTEST_CFG_CHECKOUT_TIMEOUT", "3s", 1);
  setenv("PPTEST_CFG_WORKER_KILL_GRACE", "soon", 1);
  assert_int_equal(pp_config_apply_env(c, "PPTEST_CFG", &d), PP_ECONFIG);
  assert_string_equal(d.file, "PPTEST_CFG_WORKER_KILL_GRACE");
  assert_string_equal(d.key, "worker.kill_grace");
  assert_string_equal(d.message,
                      "expected a duration like 250ms, 5s or 2m, got \"soon\"");
  assert_int_equal(c->checkout_timeout_ms, 2000);
  assert_int_equal(c->kill_grace_ms, 2000);

  unsetenv("PPTEST_CFG_CHECKOUT_TIMEOUT");
  unsetenv("PPTEST_CFG_WORKER_COMMAND");
  unsetenv("PPTEST_CFG_SIZE");
  unsetenv("PPTEST_CFG_RESTART_BACKOFF");
  unsetenv("PPTEST_CFG_WORKER_KILL_GRACE");
  unsetenv("PPTESTX_CFG_NAME");
  pp_config_free(c);
}

static void test_copies_are_independent(void **state) {
  (void)state;
  pp_config_t *a = load_fixture("full.yaml"), *b = NULL, *fresh_one;
  assert_int_equal(pp_config_copy(a, &b), 0);
  assert_ptr_not_equal(a->name, b->name);
  assert_ptr_not_equal(a->command, b->command);
  assert_ptr_not_equal(a->command[0], b->command[0]);
  assert_ptr_not_equal(a->env[0], b->env[0]);
  assert_ptr_not_equal(a->socket, b->socket);
  assert_ptr_not_equal(a->adapter, b->adapter);

  set_ok(b, "name", "other");
  set_ok(b, "worker.command", "[x]");
  set_ok(b, "worker.env", "{OMP_NUM_THREADS: 9}");
  set_ok(b, "checkout.timeout", "9s");
  set_ok(b, "control.socket", "");
  assert_string_equal(a->name, "full-pool");
  assert_int_equal(a->command_len, 4);
  assert_string_equal(a->env[0], "OMP_NUM_THREADS=4");
  assert_int_equal(a->checkout_timeout_ms, 2000);
  assert_string_equal(a->socket, "/tmp/portpool-full.sock");
  pp_config_free(a);
  assert_string_equal(b->command[0], "x");
  assert_string_equal(b->env[0], "OMP_NUM_THREADS=9");

  /* Two new configs never share state either. */
  fresh_one = fresh();
  assert_defaults(fresh_one);
  pp_config_free(fresh_one);
  pp_config_free(b);
}

/* ------------------------------------------------------------ validation */

static void validate_fails(pp_config_t *c, const char *key,
                           const char *message) {
  pp_diag_t d;
  assert_int_equal(pp_config_validate(c, &d), PP_ECONFIG);
  assert_string_equal(d.key, key);
  assert_string_equal(d.message, message);
  assert_int_equal(pp_config_validate(c, NULL), PP_ECONFIG);
}

static void test_validate(void **state) {
  (void)state;
  pp_config_t *c = fresh();
  char longpath[300];

  c->size = 0, c->size_auto = 0;
  validate_fails(c, "size",
                 "expected auto or an integer from 1 to 4096, got 0");
  c->size = 4097;
  validate_fails(c, "size",
                 "expected auto or an integer from 1 to 4096, got 4097");
  c->size = 4;
  c->min_ready = 5;
  validate_fails(c, "min_ready", "expected at most size (4), got 5");
  c->min_ready = 4;
  assert_int_equal(pp_config_validate(c, NULL), 0);

  set_ok(c, "worker.command", "[]");
  validate_fails(c, "worker.command",
                 "the python adapter needs a command, like [python3, "
                 "worker.py, handlers.py]");
  set_ok(c, "adapter", "mock");
  assert_int_equal(pp_config_validate(c, NULL), 0);

  c->backoff_min_ms = 6000;
  validate_fails(c, "restart.backoff",
                 "expected [min, max] with min <= max, got [6s, 5s]");
  c->backoff_min_ms = 100;
  c->max_frame = 512;
  validate_fails(c, "worker.max_frame",
                 "expected a size from 1KiB to 1GiB, got 512");
  c->max_frame = 1024;
  c->max_waiters = -1;
  validate_fails(c, "checkout.max_waiters",
                 "expected an integer from 0 to 2147483647, got -1");
  c->max_waiters = 0;
  c->pipeline_depth = 0;
  validate_fails(c, "worker.pipeline_depth",
                 "expected an integer from 1 to 1024, got 0");
  c->pipeline_depth = 1025;
  validate_fails(c, "worker.pipeline_depth",
                 "expected an integer from 1 to 1024, got 1025");
  c->pipeline_depth = 1;
  c->strategy = (pp__pick_t)7;
  validate_fails(c, "checkout.strategy", "expected one of lifo, fifo, got 7");
  c->strategy = PP_PICK_FIFO;

  memset(longpath, 'a', sizeof(longpath));
  longpath[0] = '/';
  longpath[sizeof(((struct sockaddr_un *)0)->sun_path)] = '\0';
  set_ok(c, "control.socket", longpath);
  validate_fails(c, "control.socket",
                 "expected a socket path shorter than 108 bytes, got 108 "
                 "bytes");
  longpath[sizeof(((struct sockaddr_un *)0)->sun_path) - 1] = '\0';
  set_ok(c, "control.socket", longpath);
  assert_int_equal(pp_config_validate(c, NULL), 0);
  pp_config_free(c);

  /* Loading validates, and points at the value that broke the rule. */
  fixture_fails("min_ready_over_size.yaml", 2, 12, "min_ready",
                "expected at most size (2), got 3");
  load_text_fails("worker: {command: []}\n",
                  "t.yaml:1:19: worker.command: the python adapter needs a "
                  "command, like [python3, worker.py, handlers.py]");
  load_text_fails("adapter: python\nworker.command: \"\"\n",
                  "t.yaml:2:17: worker.command: the python adapter needs a "
                  "command, like [python3, worker.py, handlers.py]");
}

/* ------------------------------------------------------------ errors */

static void test_error_fixtures(void **state) {
  (void)state;
  fixture_fails("syntax_tab.yaml", 3, 1, "",
                "found character that cannot start any token (while "
                "scanning for the next token)");
  fixture_fails("syntax_bracket.yaml", 4, 18, "",
                "did not find expected ',' or ']' (while parsing a flow "
                "sequence at line 3, column 12)");
  fixture_fails("unknown_key.yaml", 2, 1, "chekout",
                "unknown key; did you mean 'checkout'?");
  fixture_fails("unknown_nested.yaml", 4, 3, "worker.comand",
                "unknown key; did you mean 'worker.command'?");
  fixture_fails("bad_duration.yaml", 3, 12, "checkout.timeout",
                "expected a duration like 250ms, 5s or 2m, got \"5 parsecs\"");
  fixture_fails("bare_duration.yaml", 1, 27, "worker.startup_timeout",
                "expected a duration with a unit, like 10s or 10ms, got "
                "\"10\"");
  fixture_fails("bad_enum.yaml", 2, 13, "checkout.strategy",
                "expected one of lifo, fifo, got \"random\"");
  fixture_fails("bad_size.yaml", 2, 7, "size",
                "expected auto or an integer from 1 to 4096, got \"lots\"");
  fixture_fails("duplicate_key.yaml", 4, 1, "checkout.timeout",
                "duplicate key, first set at line 2, column 3");
  fixture_fails("not_mapping.yaml", 1, 1, "",
                "the top level must be a mapping of keys, got a sequence");
}

static void test_error_texts(void **state) {
  (void)state;
  load_text_fails("chekout: {timeout: 1s}\n",
                  "t.yaml:1:1: chekout: unknown key; did you mean "
                  "'checkout'?");
  load_text_fails("worker: {comand: [python3, w.py]}\n",
                  "t.yaml:1:10: worker.comand: unknown key; did you mean "
                  "'worker.command'?");
  load_text_fails("checkout.timout: 1s\n",
                  "t.yaml:1:1: checkout.timout: unknown key; did you mean "
                  "'checkout.timeout'?");
  load_text_fails("command: [a]\n",
                  "t.yaml:1:1: command: unknown key; did you mean "
                  "'worker.command'?");
  load_text_fails("szie: 2\n",
                  "t.yaml:1:1: szie: unknown key; did you mean 'size'?");
  load_text_fails("colour: blue\n", "t.yaml:1:1: colour: unknown key");
  load_text_fails("worker: 5\n",
                  "t.yaml:1:9: worker: expected a mapping of worker.* keys, "
                  "got a scalar");
  load_text_fails("name: a\nname: b\n",
                  "t.yaml:2:1: name: duplicate key, first set at line 1, "
                  "column 1");
  load_text_fails("worker:\n  kill_grace: 1s\nworker:\n  cancel_grace: 1s\n",
                  "t.yaml:3:1: worker: duplicate key, first set at line 1, "
                  "column 1");
  load_text_fails("just text\n",
                  "t.yaml:1:1: the top level must be a mapping of keys, got "
                  "a scalar");
  load_text_fails("name: a\n---\nname: b\n",
                  "t.yaml:3:1: expected one YAML document, found another");
  load_text_fails("[a, b]: 1\n",
                  "t.yaml:1:1: expected a key name, got a sequence");
  load_text_fails("name: 'open\n",
                  "t.yaml:2:1: found unexpected end of stream (while "
                  "scanning a quoted scalar at line 1, column 7)");
  load_text_fails("name: *nowhere\n", "t.yaml:1:7: found undefined alias");
  load_text_fails("restart: {backoff: [5s, 1s]}\n",
                  "t.yaml:1:20: restart.backoff: expected [min, max] with "
                  "min <= max, got [5s, 1s]");
  load_text_fails("restart:\n  backoff:\n    - 1s\n    - later\n",
                  "t.yaml:4:7: restart.backoff: expected a duration like "
                  "250ms, 5s or 2m, got \"later\"");
  load_text_fails("worker:\n  command:\n    - python3\n    - {a: b}\n",
                  "t.yaml:4:7: worker.command: expected a string, got a "
                  "mapping");
  load_text_fails("worker:\n  env:\n    A: 1\n    A: 2\n",
                  "t.yaml:4:5: worker.env: duplicate variable 'A'");
  /* Invalid UTF-8 is found by the reader, which only knows an offset. */
  load_text_fails("name: ok\nsize: \xff\n",
                  "t.yaml:2:7: invalid leading UTF-8 octet");
  /* A NUL inside a value. */
  {
    static const char nul[] = "name: \"a\\0b\"\n";
    load_text_fails(nul, "t.yaml:1:7: name: expected a non-empty string, "
                         "got \"a\\x00b\"");
  }
}

static void test_load_file_errors(void **state) {
  (void)state;
  pp_config_t *c = (pp_config_t *)1;
  pp_diag_t d;
  char line[600];

  assert_int_equal(pp_config_load_file("/nonexistent/portpool.yaml", &c, &d),
                   UV_ENOENT);
  assert_null(c);
  pp__diag_format(&d, line, sizeof(line));
  assert_string_equal(line, "/nonexistent/portpool.yaml: cannot read: no "
                            "such file or directory");
  c = (pp_config_t *)1;
  assert_int_equal(pp_config_load_file("/", &c, NULL), UV_EISDIR);
  assert_null(c);
}

static void test_get_errors(void **state) {
  (void)state;
  pp_config_t *c = fresh();
  char buf[8];
  assert_int_equal(pp_config_get(c, "nope", buf, sizeof(buf)), PP_ECONFIG);
  assert_int_equal(pp_config_get(c, "worker.command", buf, sizeof(buf)),
                   UV_ENOBUFS);
  assert_int_equal(pp_config_get(c, "name", buf, 0), UV_ENOBUFS);
  assert_int_equal(pp_config_get(c, "size", buf, 5), 0);
  assert_string_equal(buf, "auto");
  assert_int_equal(pp_config_get(c, "size", buf, 4), UV_ENOBUFS);
  pp_config_free(c);
}

static void test_diag_format(void **state) {
  (void)state;
  pp_diag_t d;
  char buf[700];

  memset(&d, 0, sizeof(d));
  strcpy(d.message, "boom");
  pp__diag_format(&d, buf, sizeof(buf));
  assert_string_equal(buf, "boom");
  strcpy(d.key, "size");
  pp__diag_format(&d, buf, sizeof(buf));
  assert_string_equal(buf, "size: boom");
  strcpy(d.file, "a.yaml");
  pp__diag_format(&d, buf, sizeof(buf));
  assert_string_equal(buf, "a.yaml: size: boom");
  d.line = 3;
  pp__diag_format(&d, buf, sizeof(buf));
  assert_string_equal(buf, "a.yaml:3: size: boom");
  d.column = 9;
  pp__diag_format(&d, buf, sizeof(buf));
  assert_string_equal(buf, "a.yaml:3:9: size: boom");
  d.key[0] = '\0';
  pp__diag_format(&d, buf, sizeof(buf));
  assert_string_equal(buf, "a.yaml:3:9: boom");
  pp__diag_format(&d, buf, 6);
  assert_string_equal(buf, "a.yam");
}

/* ------------------------------------------------------------ memory */

#ifdef PP_FAULTS
/* Fail each allocation of `op` in turn: every run must fail with
 * UV_ENOMEM and leak nothing (the sanitizers and valgrind check), until
 * one with no failure left succeeds. */
static void each_allocation_fails(int (*op)(void *), void *arg) {
  int rc;
  long n = 0;
  for (;; n++) {
    pp__config_fault_alloc(n);
    rc = op(arg);
    pp__config_fault_alloc(-1);
    if (rc == 0)
      break;
    assert_int_equal(rc, UV_ENOMEM);
  }
  assert_true(n > 0);
}

static int op_new(void *arg) {
  pp_config_t *c = NULL;
  (void)arg;
  int rc = pp_config_new(&c);
  assert_true(rc == 0 ? c != NULL : c == NULL);
  pp_config_free(c);
  return rc;
}

static int op_load_full(void *arg) {
  pp_config_t *c = NULL;
  char path[512];
  (void)arg;
  fixture_path("full.yaml", path, sizeof(path));
  int rc = pp_config_load_file(path, &c, NULL);
  pp_config_free(c);
  return rc;
}

static int op_copy(void *arg) {
  pp_config_t *c = NULL;
  int rc = pp_config_copy(arg, &c);
  if (rc == 0) {
    assert_true(ends_with(c->command[3], "/config/my handlers.py"));
    assert_string_equal(c->env[3], "PYTHONHASHSEED=0");
  }
  pp_config_free(c);
  return rc;
}

static int op_sets(void *arg) {
  pp_config_t *c = arg;
  int rc;
  if ((rc = pp_config_set(c, "worker.command", "[a, b, c]", NULL)) != 0 ||
      (rc = pp_config_set(c, "worker.env", "{X: 1, OMP_NUM_THREADS: 2}",
                          NULL)) != 0 ||
      (rc = pp_config_set(c, "name", "n", NULL)) != 0 ||
      (rc = pp_config_set(c, "adapter", "mock", NULL)) != 0 ||
      (rc = pp_config_set(c, "control.socket", "/tmp/s", NULL)) != 0)
    return rc;
  return 0;
}

static int op_env(void *arg) {
  return pp_config_apply_env(arg, "PPTEST_OOM", NULL);
}

static void test_out_of_memory(void **state) {
  (void)state;
  pp_config_t *full = load_fixture("full.yaml"), *c = fresh();

  each_allocation_fails(op_new, NULL);
  each_allocation_fails(op_load_full, NULL);
  each_allocation_fails(op_copy, full);
  each_allocation_fails(op_sets, c);
  assert_string_equal(c->env[0], "OMP_NUM_THREADS=2");
  setenv("PPTEST_OOM_NAME", "from-env", 1);
  setenv("PPTEST_OOM_WORKER_ENV", "Y=2", 1);
  each_allocation_fails(op_env, c);
  unsetenv("PPTEST_OOM_NAME");
  unsetenv("PPTEST_OOM_WORKER_ENV");
  assert_string_equal(c->name, "from-env");
  pp_config_free(c);
  pp_config_free(full);
}
#endif

/* Strings holding characters YAML folds or refuses even inside double
 * quotes (NEL, LS, PS, other C1 controls, BOM, U+FFFF) render as escapes
 * and read back the same (found by fuzz_config: "we\NULL" came back as
 * "we ULL"). */
static void test_render_special_chars(void **state) {
  static const char *const values[] = {
      "\"we\\NULLeird: 'name' #x\"",
      "\"a\\Lb\\Pc\"",
      "\"\\x80\\x9f\"",
      "\"\\uFEFFbom\"",
      "\"x\\uFFFF\\uFFFEy\"",
      "\"plain\\Nnel\"",
  };
  char yaml[256], a[256], b[256];
  pp_config_t *cfg, *fresh;
  pp_diag_t d;

  (void)state;
  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
    snprintf(yaml, sizeof(yaml), "name: %s\n", values[i]);
    if (pp_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, &d) != 0)
      fail_msg("%s: %s", yaml, d.message);
    assert_int_equal(pp_config_get(cfg, "name", a, sizeof(a)), 0);
    assert_int_equal(pp_config_new(&fresh), 0);
    set_ok(fresh, "name", a);
    assert_int_equal(pp_config_get(fresh, "name", b, sizeof(b)), 0);
    if (strcmp(a, b) != 0 || strcmp(cfg->name, fresh->name) != 0)
      fail_msg("%s rendered %s, read back as %s", values[i], a, b);
    pp_config_free(fresh);
    pp_config_free(cfg);
  }
}

/* A default environment variable removed with NAME: null renders as
 * NAME: null, so the text sets back to the same value (setting merges into
 * the defaults; found by fuzz_config). */
static void test_env_removed_default_round_trip(void **state) {
  const char *yaml = "worker:\n  env:\n    OMP_NUM_THREADS:\n    X: y\n";
  pp_config_t *cfg, *fresh;
  char a[512], b[512];
  pp_diag_t d;
  size_t i;

  (void)state;
  assert_int_equal(
      pp_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, &d), 0);
  for (i = 0; cfg->env[i] != NULL; i++)
    assert_null(strstr(cfg->env[i], "OMP_NUM_THREADS"));
  assert_int_equal(pp_config_get(cfg, "worker.env", a, sizeof(a)), 0);
  assert_string_equal(a, "{OPENBLAS_NUM_THREADS: 1, MKL_NUM_THREADS: 1, X: y, "
                         "OMP_NUM_THREADS: null}");
  assert_int_equal(pp_config_new(&fresh), 0);
  set_ok(fresh, "worker.env", a);
  assert_int_equal(pp_config_get(fresh, "worker.env", b, sizeof(b)), 0);
  assert_string_equal(a, b);
  pp_config_free(fresh);
  pp_config_free(cfg);
}

/* Collections nested past 64 levels are refused at the first one too
 * deep, before libyaml's scanner (quadratic in flow depth: 80 KB of "["
 * took seconds) gets far: in a file and in a value set by key. */
static void test_deep_nesting(void **state) {
  size_t n = 100000, pre = strlen("worker:\n  command: ");
  char *text = malloc(pre + n + 1);
  pp_config_t *c;
  char want[128];

  (void)state;
  assert_non_null(text);
  assert_int_equal(pp_config_new(&c), 0);
  memcpy(text, "worker:\n  command: ", pre);
  memset(text + pre, '[', n);
  text[pre + n] = '\0';
  /* The root and worker mappings are levels 1 and 2: the 63rd "[", at
   * column 12 + 62, is level 65. */
  load_text_fails(text, "t.yaml:2:74: collections nested more than 64 deep");
  snprintf(want, sizeof(want), "collections nested more than 64 deep");
  set_fails(c, "worker.command", text + pre, want);
  /* 64 levels are fine (and then the value is the wrong type). */
  memset(text + pre, '[', 62);
  memset(text + pre + 62, ']', 62);
  text[pre + 124] = '\0';
  load_text_fails(text, "t.yaml:2:13: worker.command: expected a string, got a "
                        "sequence");
  pp_config_free(c);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_deep_nesting),
      cmocka_unit_test(test_render_special_chars),
      cmocka_unit_test(test_env_removed_default_round_trip),
      cmocka_unit_test(test_defaults_rendered),
      cmocka_unit_test(test_key_listing),
      cmocka_unit_test(test_full),
      cmocka_unit_test(test_relative_paths_from_file_dir),
      cmocka_unit_test(test_missing_worker_file_located),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_minimal_and_empty),
      cmocka_unit_test(test_size_auto),
      cmocka_unit_test(test_size_auto_quota),
      cmocka_unit_test(test_nested_flow_dotted),
      cmocka_unit_test(test_durations),
      cmocka_unit_test(test_memory),
      cmocka_unit_test(test_integers),
      cmocka_unit_test(test_size_elastic),
      cmocka_unit_test(test_enums_modes_strings),
      cmocka_unit_test(test_lists),
      cmocka_unit_test(test_env),
      cmocka_unit_test(test_override),
      cmocka_unit_test(test_env_overrides),
      cmocka_unit_test(test_copies_are_independent),
      cmocka_unit_test(test_validate),
      cmocka_unit_test(test_error_fixtures),
      cmocka_unit_test(test_error_texts),
      cmocka_unit_test(test_load_file_errors),
      cmocka_unit_test(test_get_errors),
      cmocka_unit_test(test_diag_format),
#ifdef PP_FAULTS
      cmocka_unit_test(test_out_of_memory),
#endif
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
