/* test_confine.c -- what a worker may use and who it runs as: each
 * worker.limits.* with a hostile handler that exceeds it
 * (fixtures/limits_handlers.py), worker.user / group / allow_root, and
 * worker.memory_max (the message where cgroup v2 is unusable, and the
 * mechanism against a fake cgroup2 tree).  Real Python workers, in the
 * start mode PP_START names; waits are on trace events. */
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Internal (pool/worker/confine.h, PP_FAULTS builds): read mountinfo and
 * cgroup from this directory instead of /proc/self. */
void pp__confine_fake_proc(const char *dir);

#define WAIT_MS (60000 * test_time_scale())

static rec_t rec;

static pp_config_t *limits_config(int size) {
  pp_config_t *cfg = python_config("limits_handlers.py", size);
  return cfg;
}

static int is_root(void) { return geteuid() == 0; }

/* 1 when every directory on path is searchable by others and the file
 * is executable by them. */
static int open_to_others(const char *path) {
  char p[1024];
  struct stat st;
  size_t n = strlen(path);

  snprintf(p, sizeof(p), "%s", path);
  for (size_t i = 1; i <= n; i++) {
    if (p[i] != '/' && p[i] != '\0')
      continue;
    p[i] = '\0';
    if (stat(p, &st) != 0 || !(st.st_mode & S_IXOTH))
      return 0;
    if (i < n)
      p[i] = '/';
  }
  return 1;
}

/* A config for workers run as nobody (as root; else as root, which the
 * pool must refuse): the test's interpreter when nobody can run it, else
 * the system's (a pyenv under /root is closed to it). */
static pp_config_t *nobody_config(int size) {
  pp_config_t *cfg = limits_config(size);
  const char *py = test_path("PP_PYTHON");
  char cmd[2048], *h = fixture_path("limits_handlers.py");

  if (!open_to_others(py))
    py = "/usr/bin/python3";
  if (!open_to_others(py))
    fail_msg("no Python interpreter user nobody can run: PP_PYTHON (%s) "
             "is closed to it and /usr/bin/python3 is missing",
             test_path("PP_PYTHON"));
  snprintf(cmd, sizeof(cmd), "[%s, %s, %s]", py, test_path("PP_WORKER_PY"), h);
  free(h);
  cfg_set(cfg, "worker.command", cmd);
  /* Not root: another user than ours (root), which must be refused. */
  cfg_set(cfg, "worker.user", is_root() ? "nobody" : "root");
  return cfg;
}

/* Open, or fail the test with the diag. */
static pp_pool_t *open_ok(pp_config_t *cfg) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_diag_t d;
  int r;

  rec_init(&rec);
  o = rec_options(&rec);
  memset(&d, 0, sizeof(d));
  r = pp_test_pool_open(cfg, &o, WAIT_MS, &pool, &d);
  if (r != 0)
    fail_msg("pp_pool_open: %s: %s: %s", pp_strerror(r), d.key, d.message);
  pp_config_free(cfg);
  return pool;
}

/* Open must fail with PP_ECONFIG on key; the message into d. */
static void open_refused(pp_config_t *cfg, const char *key, pp_diag_t *d) {
  pp_pool_t *pool = NULL;
  int r;

  memset(d, 0, sizeof(*d));
  r = pp_pool_open(cfg, NULL, &pool, d);
  pp_config_free(cfg);
  if (r != PP_ECONFIG) {
    if (r == 0)
      pp_pool_close(pool);
    fail_msg("want PP_ECONFIG on %s, got %s: %s", key, pp_err_name(r),
             d->message);
  }
  assert_string_equal(d->key, key);
}

static void close_pool(pp_pool_t *pool) {
  pp_diag_t d;
  assert_int_equal(pp_test_pool_close(pool, WAIT_MS, &d), 0);
  rec_free(&rec);
}

/* cmd(args) must succeed; its reply (malloc'd). */
static char *call_ok(pp_pool_t *pool, const char *cmd, const char *args) {
  pp_buf_t reply = {0};
  pp_diag_t d;
  int r = pp_call_cmd(pool, cmd, args, &reply, WAIT_MS, &d);
  char *s;

  if (r != 0)
    fail_msg("%s(%s): %s: %s", cmd, args ? args : "", pp_err_name(r),
             d.message);
  s = strndup(reply.data, reply.len);
  pp_buf_free(&reply);
  return s;
}

/* cmd(args) must fail with want; the reply or diag (malloc'd). */
static char *call_fails(pp_pool_t *pool, const char *cmd, const char *args,
                        int want) {
  pp_buf_t reply = {0};
  pp_diag_t d;
  int r;
  char *s;

  memset(&d, 0, sizeof(d));
  r = pp_call_cmd(pool, cmd, args, &reply, WAIT_MS, &d);
  if (r != want)
    fail_msg("%s(%s): got %s (%s), want %s", cmd, args ? args : "",
             pp_err_name(r), d.message, pp_err_name(want));
  s = r == PP_EHANDLER ? strndup(reply.data, reply.len) : strdup(d.message);
  pp_buf_free(&reply);
  return s;
}

/* Every worker of the pool answers (each held by a lease at once), and
 * none was restarted. */
static void all_serve_unharmed(pp_pool_t *pool, int size, int restarts) {
  pp_lease_t *l[8];
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_diag_t d;
  int i;

  for (i = 0; i < size; i++)
    assert_int_equal(pp_lease_acquire(pool, NULL, WAIT_MS, &l[i], &d), 0);
  for (i = 0; i < size; i++) {
    static const char ping[] = "{\"cmd\": \"ping\"}";
    if (pp_lease_call(l[i], ping, sizeof(ping) - 1, WAIT_MS, &reply, &d) != 0)
      fail_msg("worker %d: %s", pp_lease_slot(l[i]), d.message);
    pp_buf_free(&reply);
  }
  for (i = 0; i < size; i++)
    pp_checkin(l[i]);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.restarts, restarts);
  pp_status_free(&st);
}

/* ---- worker.limits.* */

static void test_nofile(void **state) {
  pp_config_t *cfg = limits_config(2);
  pp_pool_t *pool;
  char *s;

  (void)state;
  cfg_set(cfg, "worker.limits.nofile", "64");
  pool = open_ok(cfg);
  /* Within the limit, then past it: EMFILE, as the handler's OSError. */
  s = call_ok(pool, "open_files", "10");
  assert_string_equal(s, "10");
  free(s);
  s = call_fails(pool, "open_files", "200", PP_EHANDLER);
  if (strstr(s, "OSError") == NULL || strstr(s, "Too many open files") == NULL)
    fail_msg("want OSError EMFILE, got %s", s);
  free(s);
  all_serve_unharmed(pool, 2, 0);
  close_pool(pool);
}

static void test_as(void **state) {
  pp_config_t *cfg = limits_config(2);
  pp_pool_t *pool;
  char *s;

  (void)state;
  cfg_set(cfg, "worker.limits.as", "512M");
  pool = open_ok(cfg);
  s = call_ok(pool, "alloc", "8");
  assert_string_equal(s, "8388608");
  free(s);
  s = call_fails(pool, "alloc", "2048", PP_EHANDLER);
  if (strstr(s, "MemoryError") == NULL)
    fail_msg("want MemoryError, got %s", s);
  free(s);
  all_serve_unharmed(pool, 2, 0);
  close_pool(pool);
}

static void test_cpu(void **state) {
  pp_config_t *cfg = limits_config(2);
  pp_status_t st;
  pp_pool_t *pool;
  char *s;
  int i, found = 0;

  (void)state;
  cfg_set(cfg, "worker.limits.cpu", "1");
  pool = open_ok(cfg);
  s = call_fails(pool, "spin", NULL, PP_ECRASHED);
  if (strstr(s, "exceeded its CPU time limit (worker.limits.cpu: 1 s)") == NULL)
    fail_msg("want the CPU limit named, got \"%s\"", s);
  free(s);
  /* Replaced: a third HELLO; and both workers serve. */
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 3, WAIT_MS), 0);
  all_serve_unharmed(pool, 2, 1);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  for (i = 0; i < st.nworkers; i++)
    if (st.workers[i].last_exit == PP_EXIT_SIGNAL) {
      found++;
      assert_int_equal(st.workers[i].last_exit_signal, SIGXCPU);
      assert_string_equal(st.workers[i].last_exit_text,
                          "exceeded its CPU time limit (signal 24)");
    }
  assert_int_equal(found, 1);
  pp_status_free(&st);
  close_pool(pool);
}

/* Past worker.limits.cpu before HELLO (in setup()): the open fails as a
 * boot failure that names the limit, not "signal 24". */
static void test_cpu_before_hello(void **state) {
  pp_config_t *cfg = python_config("limits_spin_setup.py", 1);
  pp_pool_t *pool = NULL;
  pp_diag_t d;
  int r;

  (void)state;
  cfg_set(cfg, "worker.limits.cpu", "1");
  memset(&d, 0, sizeof(d));
  r = pp_pool_open(cfg, NULL, &pool, &d);
  pp_config_free(cfg);
  if (r == 0) {
    pp_pool_close(pool);
    fail_msg("want a boot failure, the pool opened");
  }
  if (strstr(d.message, "exceeded its CPU time limit (worker.limits.cpu: 1 "
                        "s)") == NULL)
    fail_msg("want the CPU limit named, got %s: \"%s\"", pp_err_name(r),
             d.message);
}

static void test_core_and_all_limits_read_back(void **state) {
  pp_config_t *cfg = limits_config(1);
  pp_pool_t *pool;
  char *s, want[256];

  (void)state;
  cfg_set(cfg, "worker.limits.core", "0");
  cfg_set(cfg, "worker.limits.nofile", "100");
  cfg_set(cfg, "worker.limits.nproc", "500");
  cfg_set(cfg, "worker.limits.as", "1GiB");
  cfg_set(cfg, "worker.limits.cpu", "3600");
  pool = open_ok(cfg);
  s = call_ok(pool, "limits", NULL);
  snprintf(want, sizeof(want),
           "\"nofile=100:100 nproc=500:500 as=1073741824:1073741824 "
           "cpu=3600:3601 core=0:0\"");
  assert_string_equal(s, want);
  free(s);
  close_pool(pool);
}

/* A handler module that, when imported, drops PORTPOOL_LIMITS and makes
 * apply_limits() a no-op (fixtures/limits_evade.py): under spawn the
 * limits are set before the import; under zygote the zygote read them
 * before its import and set nofile, as and core on itself, so the
 * workers it forks have them and cannot raise them, and the pool sets
 * every limit on a fork it adopts (prlimit) before its HELLO is read. */
static void test_import_cannot_lift_limits(void **state) {
  pp_config_t *cfg = python_config("limits_evade.py", 1);
  pp_pool_t *pool;
  char *s;

  (void)state;
  cfg_set(cfg, "worker.limits.nofile", "64");
  cfg_set(cfg, "worker.limits.as", "1GiB");
  cfg_set(cfg, "worker.limits.core", "0");
  cfg_set(cfg, "worker.limits.nproc", "5000");
  cfg_set(cfg, "worker.limits.cpu", "3600");
  pool = open_ok(cfg);
  s = call_ok(pool, "limits", NULL);
  assert_string_equal(s, "\"nofile=64:64 nproc=5000:5000 "
                         "as=1073741824:1073741824 cpu=3600:3601 core=0:0\"");
  free(s);
  close_pool(pool);
}

/* A worker has fds 0..4 and nothing else of the pool's or, under
 * zygote, of the zygote's (its wake-up pipe); the sixth is the listing's
 * own.  What the test process inherited is marked close-on-exec first, as
 * a program that embeds the pool should (poolctl serve does). */
static void test_worker_fds(void **state) {
  pp_pool_t *pool;
  char *s;
  DIR *dir;
  struct dirent *e;

  (void)state;
  dir = opendir("/proc/self/fd");
  assert_non_null(dir);
  while ((e = readdir(dir)) != NULL)
    if (atoi(e->d_name) > 2 && atoi(e->d_name) != dirfd(dir))
      fcntl(atoi(e->d_name), F_SETFD, FD_CLOEXEC);
  closedir(dir);
  pool = open_ok(limits_config(1));
  s = call_ok(pool, "fds", NULL);
  assert_string_equal(s, "[0,1,2,3,4,5]");
  free(s);
  close_pool(pool);
}

/* A zygote runs the handler module's import, so the pool does not trust
 * the pid it reports for a fork (fixtures/zygote_liar.py reports a
 * decoy's): it must neither adopt nor signal a process that is not the
 * zygote's child (the pool signals a worker's group, -pid, and may be
 * root).  Under spawn the module is a plain one. */
static void test_zygote_pid_not_trusted(void **state) {
  pp_config_t *cfg = python_config("zygote_liar.py", 1);
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  char env[64];
  pp_diag_t d;
  int gate[2], st, r;
  pid_t decoy;

  (void)state;
  assert_int_equal(pipe(gate), 0);
  decoy = fork();
  assert_true(decoy >= 0);
  if (decoy == 0) {
    /* cat, exec'd: it exits 0 at the pipe's end, and no copy of this
     * process (valgrind's leak check of a forked child) is left. */
    close(gate[1]);
    if (dup2(gate[0], 0) < 0)
      _exit(2);
    close(gate[0]);
    execlp("cat", "cat", (char *)NULL);
    _exit(3);
  }
  close(gate[0]);
  snprintf(env, sizeof(env), "{PP_DECOY_PID: '%d'}", (int)decoy);
  cfg_set(cfg, "worker.env", env);
  rec_init(&rec);
  o = rec_options(&rec);
  memset(&d, 0, sizeof(d));
  r = pp_test_pool_open(cfg, &o, WAIT_MS, &pool, &d);
  pp_config_free(cfg);
  if (getenv("PP_START") && strcmp(getenv("PP_START"), "zygote") == 0) {
    if (r == 0)
      fail_msg("the pool adopted the decoy's pid as a worker");
  } else {
    assert_int_equal(r, 0);
    assert_int_equal(pp_test_pool_close(pool, WAIT_MS, &d), 0);
  }
  rec_free(&rec);
  /* The decoy was never signalled: it is still waiting on the pipe. */
  assert_int_equal(waitpid(decoy, &st, WNOHANG), 0);
  close(gate[1]);
  assert_int_equal(waitpid(decoy, &st, 0), decoy);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A limit no worker could set is refused when the pool opens: one above
 * the pool's own hard limit, for a worker without privileges (nobody when
 * we are root, else ours). */
static void test_limit_above_hard_refused(void **state) {
  pp_config_t *cfg = is_root() ? nobody_config(1) : limits_config(1);
  struct rlimit old, low;
  char above[32];
  pp_diag_t d;

  (void)state;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
  low = old;
  if (low.rlim_max == RLIM_INFINITY) {
    /* Nothing is above it: lower ours first.  (Raising it back needs
     * CAP_SYS_RESOURCE, which a container's root may not have; 4096 is
     * plenty for the rest.) */
    low.rlim_max = 4096;
    if (low.rlim_cur > low.rlim_max)
      low.rlim_cur = low.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  }
  /* One above the hard limit the pool has (under valgrind, the one it
   * shows). */
  snprintf(above, sizeof(above), "%llu", (unsigned long long)low.rlim_max + 1);
  cfg_set(cfg, "worker.limits.nofile", above);
  open_refused(cfg, "worker.limits.nofile", &d);
  assert_non_null(strstr(d.message, "above the pool's own hard limit"));
}

/* ---- worker.user, worker.group, worker.allow_root */

static void test_user_nobody(void **state) {
  pp_config_t *cfg = nobody_config(2);
  struct passwd *pw = getpwnam("nobody");
  pp_pool_t *pool;
  char want[128], tail[32], *s;
  pp_diag_t d;

  (void)state;
  assert_non_null(pw);
  if (!is_root()) {
    open_refused(cfg, "worker.user", &d);
    assert_non_null(strstr(d.message, "does not run as root"));
    return;
  }
  pool = open_ok(cfg);
  s = call_ok(pool, "ids", NULL);
  /* Its primary group, and no supplementary group of ours (root's). */
  snprintf(want, sizeof(want), "\"%u:%u:%u:%u:", (unsigned)pw->pw_uid,
           (unsigned)pw->pw_gid, (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
  if (strncmp(s, want, strlen(want)) != 0)
    fail_msg("want %s..., got %s", want, s);
  snprintf(tail, sizeof(tail), "%u\"", (unsigned)pw->pw_gid);
  if (strcmp(s + strlen(want), "\"") != 0 &&
      strcmp(s + strlen(want), tail) != 0)
    fail_msg("want no supplementary group but nobody's, got %s", s);
  free(s);
  all_serve_unharmed(pool, 2, 0);
  close_pool(pool);
}

static void test_group(void **state) {
  pp_config_t *cfg = nobody_config(1);
  struct passwd *pw = getpwnam("nobody");
  struct group *gr = getgrnam("daemon");
  pp_pool_t *pool;
  char want[64], *s;
  pp_diag_t d;

  (void)state;
  assert_non_null(pw);
  assert_non_null(gr);
  cfg_set(cfg, "worker.group", "daemon");
  if (!is_root()) {
    open_refused(cfg, "worker.user", &d);
    return;
  }
  pool = open_ok(cfg);
  s = call_ok(pool, "ids", NULL);
  snprintf(want, sizeof(want), "\"%u:%u:", (unsigned)pw->pw_uid,
           (unsigned)gr->gr_gid);
  if (strncmp(s, want, strlen(want)) != 0)
    fail_msg("want %s..., got %s", want, s);
  free(s);
  close_pool(pool);
}

/* Group root is refused as user root is, unless worker.allow_root. */
static void test_group_root_refused(void **state) {
  pp_config_t *cfg = nobody_config(1);
  pp_diag_t d;

  (void)state;
  cfg_set(cfg, "worker.group", "0");
  cfg_set(cfg, "worker.allow_root", "false"); /* helpers.c allows it */
  if (!is_root()) {
    open_refused(cfg, "worker.user", &d);
    return;
  }
  open_refused(cfg, "worker.group", &d);
  assert_non_null(strstr(d.message, "group root (gid 0)"));
  assert_non_null(strstr(d.message, "worker.allow_root"));
}

static void test_nproc(void **state) {
  pp_config_t *cfg = nobody_config(1);
  pp_pool_t *pool;
  pp_diag_t d;
  char *s;

  (void)state;
  /* Root ignores RLIMIT_NPROC: the worker runs as nobody, which only
   * root can arrange. */
  cfg_set(cfg, "worker.limits.nproc", "40");
  if (!is_root()) {
    open_refused(cfg, "worker.user", &d);
    assert_non_null(strstr(d.message, "only root can start workers as"));
    return;
  }
  pool = open_ok(cfg);
  s = call_ok(pool, "fork_many", "2");
  assert_string_equal(s, "2");
  free(s);
  s = call_fails(pool, "fork_many", "100", PP_EHANDLER);
  if (strstr(s, "BlockingIOError") == NULL &&
      strstr(s, "Resource temporarily unavailable") == NULL)
    fail_msg("want EAGAIN from fork, got %s", s);
  free(s);
  all_serve_unharmed(pool, 1, 0);
  close_pool(pool);
}

/* A worker.user that cannot read the handler file: said at open. */
static void test_user_cannot_reach(void **state) {
  pp_config_t *cfg = nobody_config(1);
  char dir[] = "/tmp/pp-closed-XXXXXX", cmd[2048], file[256];
  pp_diag_t d;
  FILE *f;

  (void)state;
  assert_non_null(mkdtemp(dir));
  snprintf(file, sizeof(file), "%s/handlers.py", dir);
  f = fopen(file, "w");
  assert_non_null(f);
  fputs("def ping(args):\n    return 1\n", f);
  fclose(f);
  snprintf(cmd, sizeof(cmd), "[%s, %s, %s]", test_path("PP_PYTHON"),
           test_path("PP_WORKER_PY"), file);
  if (is_root()) {
    /* Keep nobody_config's interpreter, swap the handler file. */
    char cur[2048], *end;
    assert_int_equal(pp_config_get(cfg, "worker.command", cur, sizeof(cur)), 0);
    end = strrchr(cur, ',');
    assert_non_null(end);
    snprintf(end, sizeof(cur) - (size_t)(end - cur), ", %s]", file);
    cfg_set(cfg, "worker.command", cur);
  }
  open_refused(cfg, "worker.user", &d);
  if (is_root()) {
    assert_non_null(strstr(d.message, "which cannot read"));
    assert_non_null(strstr(d.message, dir));
  } else {
    assert_non_null(strstr(d.message, "does not run as root"));
  }
  unlink(file);
  rmdir(dir);
}

static void test_root_refused(void **state) {
  pp_config_t *cfg;
  pp_pool_t *pool;
  pp_diag_t d;

  (void)state;
  cfg = limits_config(1);
  cfg_set(cfg, "worker.allow_root", "false");
  if (!is_root()) {
    /* Not root: nothing to refuse. */
    pool = open_ok(cfg);
    close_pool(pool);
    return;
  }
  open_refused(cfg, "worker.user", &d);
  assert_non_null(strstr(d.message, "runs as root"));
  assert_non_null(strstr(d.message, "worker.user"));
  assert_non_null(strstr(d.message, "worker.allow_root: true"));
  /* A worker.user that is root is refused too. */
  cfg = limits_config(1);
  cfg_set(cfg, "worker.allow_root", "false");
  cfg_set(cfg, "worker.user", "root");
  open_refused(cfg, "worker.user", &d);
  assert_non_null(strstr(d.message, "is root (uid 0)"));
  assert_non_null(strstr(d.message, "worker.allow_root"));
  /* Allowed: workers run as root (every other suite runs so). */
  cfg = limits_config(1);
  cfg_set(cfg, "worker.allow_root", "true");
  pool = open_ok(cfg);
  close_pool(pool);
}

/* The mock adapter starts no process: the refusal does not apply. */
static void test_mock_not_refused(void **state) {
  pp_config_t *cfg;
  pp_pool_t *pool;

  (void)state;
  assert_int_equal(pp_config_new(&cfg), 0);
  cfg_set(cfg, "adapter", "mock");
  cfg_set(cfg, "size", "1");
  cfg_set(cfg, "worker.allow_root", "false");
  pool = open_ok(cfg);
  close_pool(pool);
}

static void test_config_keys(void **state) {
  pp_config_t *cfg;
  pp_diag_t d;
  char v[64];

  (void)state;
  assert_int_equal(pp_config_new(&cfg), 0);
  /* Unset by default: rendered as nothing, read back as unset. */
  assert_int_equal(pp_config_get(cfg, "worker.limits.nofile", v, sizeof(v)), 0);
  assert_string_equal(v, "");
  cfg_set(cfg, "worker.limits.as", "512M");
  assert_int_equal(pp_config_get(cfg, "worker.limits.as", v, sizeof(v)), 0);
  assert_string_equal(v, "512MiB");
  cfg_set(cfg, "worker.limits.core", "0");
  assert_int_equal(pp_config_get(cfg, "worker.limits.core", v, sizeof(v)), 0);
  assert_string_equal(v, "0");
  cfg_set(cfg, "worker.limits.core", "null");
  assert_int_equal(pp_config_get(cfg, "worker.limits.core", v, sizeof(v)), 0);
  assert_string_equal(v, "");
  assert_int_equal(pp_config_get(cfg, "worker.allow_root", v, sizeof(v)), 0);
  assert_string_equal(v, "false");
  /* Out of range, a typo, an unknown user and group. */
  assert_int_equal(pp_config_set(cfg, "worker.limits.nofile", "3", &d),
                   PP_ECONFIG);
  assert_non_null(strstr(d.message, "expected an integer from 16"));
  assert_int_equal(pp_config_set(cfg, "worker.limits.nofiles", "64", &d),
                   PP_ECONFIG);
  assert_non_null(strstr(d.message, "did you mean 'worker.limits.nofile'"));
  cfg_set(cfg, "worker.user", "no-such-user-pp");
  assert_int_equal(pp_config_validate(cfg, &d), PP_ECONFIG);
  assert_string_equal(d.key, "worker.user");
  assert_non_null(strstr(d.message, "no user named \"no-such-user-pp\""));
  cfg_set(cfg, "worker.user", "nobody");
  cfg_set(cfg, "worker.group", "no-such-group-pp");
  assert_int_equal(pp_config_validate(cfg, &d), PP_ECONFIG);
  assert_string_equal(d.key, "worker.group");
  assert_non_null(strstr(d.message, "no group named \"no-such-group-pp\""));
  cfg_set(cfg, "worker.group", "");
  cfg_set(cfg, "worker.memory_max", "1M");
  assert_int_equal(pp_config_validate(cfg, &d), PP_ECONFIG);
  assert_string_equal(d.key, "worker.memory_max");
  /* worker.env cannot set the pool's own variables: a worker would take
   * its PORTPOOL_LIMITS over the pool's. */
  cfg_set(cfg, "worker.memory_max", "0");
  assert_int_equal(pp_config_validate(cfg, &d), 0);
  cfg_set(cfg, "worker.env", "{PORTPOOL_LIMITS: ''}");
  assert_int_equal(pp_config_validate(cfg, &d), PP_ECONFIG);
  assert_string_equal(d.key, "worker.env");
  assert_non_null(strstr(d.message, "PORTPOOL_LIMITS is the pool's own"));
  pp_config_free(cfg);
}

/* ---- worker.memory_max */

/* This machine's cgroups, whatever they are: unusable says what is
 * missing and how to fix it; usable puts each worker in its own. */
static void test_memory_max_here(void **state) {
  pp_config_t *cfg = limits_config(1);
  pp_pool_t *pool = NULL;
  pp_diag_t d;
  int r;

  (void)state;
  cfg_set(cfg, "worker.memory_max", "256M");
  memset(&d, 0, sizeof(d));
  r = pp_pool_open(cfg, NULL, &pool, &d);
  pp_config_free(cfg);
  if (r == 0) {
    char *s = call_ok(pool, "ping", NULL);
    free(s);
    pp_pool_close(pool);
    print_message("cgroup v2 is usable here: workers ran in their cgroups\n");
    return;
  }
  assert_int_equal(r, PP_ECONFIG);
  assert_string_equal(d.key, "worker.memory_max");
  assert_non_null(strstr(d.message, "cgroup"));
  assert_non_null(strstr(d.message, "unset worker.memory_max"));
  print_message("here: %s\n", d.message);
}

static char tree[128];

static void put(const char *rel, const char *text) {
  char path[512];
  FILE *f;

  snprintf(path, sizeof(path), "%s/%s", tree, rel);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static char *get(const char *rel) {
  char path[512], buf[512];
  size_t n;
  FILE *f;

  snprintf(path, sizeof(path), "%s/%s", tree, rel);
  f = fopen(path, "r");
  if (f == NULL)
    fail_msg("%s: %s", path, strerror(errno));
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  return strdup(buf);
}

/* A fake cgroup2 tree: proc/{mountinfo,cgroup} say we are in /svc of a
 * cgroup2 mount at <tree>/cg, whose controllers are `controllers`. */
static void fake_tree(const char *controllers, int v2) {
  char text[512], path[512];

  snprintf(tree, sizeof(tree), "/tmp/pp-cgroup-XXXXXX");
  assert_non_null(mkdtemp(tree));
  snprintf(path, sizeof(path), "%s/proc", tree);
  assert_int_equal(mkdir(path, 0755), 0);
  snprintf(path, sizeof(path), "%s/cg", tree);
  assert_int_equal(mkdir(path, 0755), 0);
  snprintf(path, sizeof(path), "%s/cg/svc", tree);
  assert_int_equal(mkdir(path, 0755), 0);
  snprintf(text, sizeof(text),
           "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
           "41 31 0:38 / %s/cg rw,relatime - cgroup2 cgroup2 rw\n",
           tree);
  put("proc/mountinfo", text);
  put("proc/cgroup", v2 ? "4:memory:/\n0::/svc\n" : "4:memory:/\n");
  put("cg/svc/cgroup.controllers", controllers);
  put("cg/svc/cgroup.subtree_control", "");
  put("cg/svc/cgroup.procs", "");
  snprintf(path, sizeof(path), "%s/proc", tree);
  pp__confine_fake_proc(path);
}

static void fake_tree_free(void) {
  char cmd[256];

  pp__confine_fake_proc(NULL);
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tree);
  assert_int_equal(system(cmd), 0);
}

static void test_memory_max_fake_unavailable(void **state) {
  pp_config_t *cfg;
  pp_diag_t d;

  (void)state;
  /* As on this machine: memory is bound to cgroup v1. */
  fake_tree("hugetlb\n", 1);
  cfg = limits_config(1);
  cfg_set(cfg, "worker.memory_max", "64M");
  open_refused(cfg, "worker.memory_max", &d);
  assert_non_null(strstr(d.message, "memory controller"));
  assert_non_null(strstr(d.message, "\"hugetlb\""));
  assert_non_null(strstr(d.message, "Delegate=yes"));
  fake_tree_free();
  /* cgroup v1 only. */
  fake_tree("memory pids\n", 0);
  cfg = limits_config(1);
  cfg_set(cfg, "worker.memory_max", "64M");
  open_refused(cfg, "worker.memory_max", &d);
  assert_non_null(strstr(d.message, "no cgroup v2 hierarchy"));
  fake_tree_free();
}

/* A host with many mounts: the cgroup2 line comes after 128 KiB of
 * mountinfo, and is still found. */
static void test_memory_max_long_mountinfo(void **state) {
  char path[512];
  pp_config_t *cfg;
  pp_pool_t *pool;
  FILE *f;

  (void)state;
  fake_tree("memory\n", 1);
  snprintf(path, sizeof(path), "%s/proc/mountinfo", tree);
  f = fopen(path, "w");
  assert_non_null(f);
  for (int i = 0; i < 2048; i++)
    fprintf(f, "%d 1 0:%d / /mnt/volume-%05d rw,relatime - tmpfs tmpfs rw\n",
            100 + i, 100 + i, i);
  fprintf(f, "41 31 0:38 / %s/cg rw,relatime - cgroup2 cgroup2 rw\n", tree);
  fclose(f);
  cfg = limits_config(1);
  cfg_set(cfg, "worker.memory_max", "64M");
  pool = open_ok(cfg);
  all_serve_unharmed(pool, 1, 0);
  close_pool(pool);
  fake_tree_free();
}

static void test_memory_max_fake_tree(void **state) {
  pp_config_t *cfg;
  pp_status_t st;
  pp_pool_t *pool;
  char rel[128], want[32], *s;
  int pid0, i;

  (void)state;
  fake_tree("cpu memory pids\n", 1);
  cfg = limits_config(2);
  cfg_set(cfg, "worker.memory_max", "64M");
  pool = open_ok(cfg);
  /* The pool moved itself into its leaf, then gave children +memory. */
  s = get("cg/svc/portpool-supervisor/cgroup.procs");
  snprintf(want, sizeof(want), "%d\n", (int)getpid());
  assert_string_equal(s, want);
  free(s);
  s = get("cg/svc/cgroup.subtree_control");
  assert_string_equal(s, "+memory\n");
  free(s);
  /* Each worker in its slot's cgroup, with memory.max; and it served,
   * so it was released after the move. */
  assert_int_equal(pp_pool_status(pool, &st), 0);
  for (i = 0; i < st.nworkers; i++) {
    snprintf(rel, sizeof(rel), "cg/svc/test.w%d/memory.max", st.workers[i].id);
    s = get(rel);
    assert_string_equal(s, "67108864\n");
    free(s);
    snprintf(rel, sizeof(rel), "cg/svc/test.w%d/cgroup.procs",
             st.workers[i].id);
    s = get(rel);
    snprintf(want, sizeof(want), "%d\n", st.workers[i].pid);
    assert_string_equal(s, want);
    free(s);
  }
  pid0 = st.workers[0].pid;
  pp_status_free(&st);
  all_serve_unharmed(pool, 2, 0);
  /* The kernel's OOM killer in slot 0's cgroup: the count goes up, and
   * the worker dies by SIGKILL. */
  put("cg/svc/test.w0/memory.events",
      "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
  assert_int_equal(kill(pid0, SIGKILL), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 3, WAIT_MS), 0);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.workers[0].last_exit, PP_EXIT_OOM);
  assert_string_equal(st.workers[0].last_exit_text,
                      "out of memory (memory_max)");
  pp_status_free(&st);
  /* A SIGKILL with no new oom_kill is just a signal. */
  assert_int_equal(pp_pool_status(pool, &st), 0);
  pid0 = st.workers[0].pid;
  pp_status_free(&st);
  assert_int_equal(kill(pid0, SIGKILL), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 4, WAIT_MS), 0);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.workers[0].last_exit, PP_EXIT_SIGNAL);
  pp_status_free(&st);
  all_serve_unharmed(pool, 2, 2);
  close_pool(pool);
  fake_tree_free();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_keys),
      cmocka_unit_test(test_nofile),
      cmocka_unit_test(test_as),
      cmocka_unit_test(test_cpu),
      cmocka_unit_test(test_cpu_before_hello),
      cmocka_unit_test(test_core_and_all_limits_read_back),
      cmocka_unit_test(test_import_cannot_lift_limits),
      cmocka_unit_test(test_worker_fds),
      cmocka_unit_test(test_zygote_pid_not_trusted),
      cmocka_unit_test(test_limit_above_hard_refused),
      cmocka_unit_test(test_user_nobody),
      cmocka_unit_test(test_group),
      cmocka_unit_test(test_group_root_refused),
      cmocka_unit_test(test_nproc),
      cmocka_unit_test(test_user_cannot_reach),
      cmocka_unit_test(test_root_refused),
      cmocka_unit_test(test_mock_not_refused),
      cmocka_unit_test(test_memory_max_here),
      cmocka_unit_test(test_memory_max_fake_unavailable),
      cmocka_unit_test(test_memory_max_long_mountinfo),
      cmocka_unit_test(test_memory_max_fake_tree),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
