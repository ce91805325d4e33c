/* test_maintain.c -- changing a running pool without losing capacity:
 * recycling by max_requests, rolling restart and reload under load,
 * scaling up and down, drain, and heartbeats that replace a silent idle
 * worker.  Real Python workers; waits are on trace events. */
#include "helpers.h"

#include "faults.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rec_t rec;

static pp_pool_t *open_pool(pp_config_t *cfg) {
  return rec_pool_open(&rec, cfg);
}

static void close_pool(pp_pool_t *pool) {
  pp_pool_close(pool);
  rec_free(&rec);
}

static int call_pid(pp_pool_t *pool) {
  pp_buf_t reply = {0};
  pp_diag_t d;
  int r, pid;

  r = pp_call_cmd(pool, "pid", NULL, &reply, 10000, &d);
  if (r != 0)
    fail_msg("call: %s: %s", pp_strerror(r), d.message);
  pid = atoi(reply.data);
  pp_buf_free(&reply);
  return pid;
}

/* Callers that run until told to stop; every call must succeed. */
typedef struct load {
  pp_pool_t *pool;
  volatile int stop;
  int calls, failures;
  uv_thread_t thread;
} load_t;

static void load_main(void *arg) {
  load_t *l = arg;
  pp_buf_t reply = {0};
  pp_diag_t d;

  while (!l->stop) {
    if (pp_call_cmd(l->pool, "echo", "[1]", &reply, 30000, &d) != 0 ||
        strcmp(reply.data, "[1]") != 0) {
      fprintf(stderr, "load: call failed: %s\n", d.message);
      l->failures++;
    }
    l->calls++;
  }
  pp_buf_free(&reply);
}

static void load_start(load_t *l, pp_pool_t *pool) {
  memset(l, 0, sizeof(*l));
  l->pool = pool;
  assert_int_equal(uv_thread_create(&l->thread, load_main, l), 0);
}

static void load_stop(load_t *l) {
  l->stop = 1;
  uv_thread_join(&l->thread);
  assert_int_equal(l->failures, 0);
}

/* After max_requests the worker is replaced, by a replacement started
 * beside it: the pool never has fewer idle workers than it needs. */
static void test_recycle_max_requests(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pp_pool_t *pool;
  pp_status_t st;
  int first, i, pid = 0;

  (void)state;
  cfg_set(cfg, "worker.max_requests", "3");
  pool = open_pool(cfg);
  first = call_pid(pool);
  for (i = 0; i < 2; i++)
    assert_int_equal(call_pid(pool), first);
  /* The third request reached the limit: a replacement starts and takes
   * over once the old worker is idle. */
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 2, 20000), 0);
  assert_int_equal(rec_count(&rec, PP_TRACE_RECYCLE), 1);
  pid = call_pid(pool);
  assert_int_not_equal(pid, first);
  /* The retired worker is reaped: its exit is traced. */
  assert_int_equal(rec_wait(&rec, PP_TRACE_EXIT, 1, 10000), 0);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.recycles, 1);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(st.workers[0].generation, 2);
  assert_string_equal(st.workers[0].last_exit_text, "stopped (recycled)");
  assert_int_equal(st.workers[0].last_exit, PP_EXIT_STOPPED);
  pp_status_free(&st);
  close_pool(pool);
}

/* A rolling restart under load: every worker replaced, no call fails. */
static void test_rolling_restart_under_load(void **state) {
  pp_pool_t *pool = open_pool(python_config("echo_handlers.py", 2));
  pp_status_t st;
  load_t l;

  (void)state;
  load_start(&l, pool);
  assert_int_equal(pp_pool_restart(pool, -1), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 4, 30000), 0);
  /* Both old workers retired (their exits are traced as such). */
  assert_int_equal(rec_wait(&rec, PP_TRACE_EXIT, 2, 30000), 0);
  load_stop(&l);
  assert_true(l.calls > 0);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.recycles, 2);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(st.workers[0].generation, 2);
  assert_int_equal(st.workers[1].generation, 2);
  /* Planned, not a crash: the last exit says why, not "signal 9". */
  assert_string_equal(st.workers[0].last_exit_text, "stopped (restarted)");
  assert_string_equal(st.workers[1].last_exit_text, "stopped (restarted)");
  pp_status_free(&st);
  assert_int_equal(pp_pool_restart(pool, 7), UV_EINVAL);
  close_pool(pool);
}

static void test_scale(void **state) {
  pp_pool_t *pool = open_pool(python_config("echo_handlers.py", 1));
  pp_lease_t *held;
  pp_status_t st;
  pp_diag_t d;

  (void)state;
  assert_int_equal(pp_pool_scale(pool, 3, 0), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 3, 30000), 0);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.size, 3);
  assert_int_equal(st.idle, 3);
  pp_status_free(&st);
  /* Shrink while one worker is lent: idle ones go first, the busy one
   * stays until it comes back. */
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &held, &d), 0);
  assert_int_equal(pp_pool_scale(pool, 1, 0), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_EXIT, 2, 30000), 0);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.leased, 1);
  assert_int_equal(st.idle + st.starting, 0);
  pp_status_free(&st);
  pp_checkin(held);
  assert_int_equal(pp_lease_acquire(pool, NULL, 5000, &held, &d), 0);
  pp_checkin(held);
  assert_int_equal(pp_pool_scale(pool, 0, 0), UV_EINVAL);
  /* And up again, reusing the retired slots. */
  assert_int_equal(pp_pool_scale(pool, 2, 0), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 4, 30000), 0);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.size, 2);
  /* The reused slot's last exit was the scale-down: it says so. */
  {
    int i, scaled = 0;

    for (i = 0; i < st.nworkers; i++) {
      if (strcmp(st.workers[i].last_exit_text, "stopped (scaled down)") == 0)
        scaled++;
      else
        assert_string_equal(st.workers[i].last_exit_text, "-");
    }
    assert_int_equal(scaled, 1);
  }
  pp_status_free(&st);
  close_pool(pool);
}

static void test_drain(void **state) {
  pp_pool_t *pool = open_pool(python_config("echo_handlers.py", 1));
  pp_buf_t reply = {0};
  pp_lease_t *held;
  pp_diag_t d;

  (void)state;
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &held, &d), 0);
  assert_int_equal(pp_pool_drain(pool, 0), 0);
  assert_int_equal(pp_call_cmd(pool, "echo", "1", &reply, 1000, &d),
                   PP_ECLOSED);
  assert_string_equal(d.message, "pool draining");
  /* Work already lent finishes. */
  const char *req = "{\"cmd\":\"echo\",\"args\":2}";
  assert_int_equal(pp_lease_call(held, req, strlen(req), -1, &reply, &d), 0);
  pp_checkin(held);
  assert_int_equal(pp_pool_quiesce(pool, 5000, &d), 0);
  assert_int_equal(pp_pool_drain(pool, 1), 0);
  assert_int_equal(pp_call_cmd(pool, "echo", "3", &reply, 5000, &d), 0);
  assert_int_equal(rec_count(&rec, PP_TRACE_DRAIN), 2);
  pp_buf_free(&reply);
  close_pool(pool);
}

/* An idle worker that stops answering PINGs is replaced before anyone is
 * handed it. */
static void test_heartbeat_replaces_silent_worker(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pp_pool_t *pool;
  pp_status_t st;
  int pid;

  (void)state;
  cfg_set(cfg, "worker.heartbeat", "50ms");
  cfg_set(cfg, "worker.heartbeat_misses", "2");
  cfg_set(cfg, "worker.kill_grace", "200ms");
  pool = open_pool(cfg);
  pid = call_pid(pool);
  kill(pid, SIGSTOP);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HEARTBEAT_MISS, 2, 20000), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 2, 20000), 0);
  assert_int_not_equal(call_pid(pool), pid);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_string_equal(st.workers[0].last_exit_text, "killed for timeout");
  pp_status_free(&st);
  close_pool(pool);
}

/* Reload under load: new settings reach new workers, no call fails. */
static void test_reload_under_load(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1), *next;
  pp_buf_t reply = {0};
  pp_pool_t *pool;
  pp_status_t st;
  pp_diag_t d;
  load_t l;

  (void)state;
  cfg_set(cfg, "worker.env", "{PP_FLAVOUR: old}");
  assert_int_equal(pp_config_copy(cfg, &next), 0);
  pool = open_pool(cfg);
  cfg_set(next, "worker.env", "{PP_FLAVOUR: new}");
  cfg_set(next, "size", "2");
  load_start(&l, pool);
  assert_int_equal(pp_pool_reload(pool, next, &d), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 3, 30000), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_EXIT, 1, 30000), 0);
  load_stop(&l);
  assert_int_equal(
      pp_call_cmd(pool, "env", "[\"PP_FLAVOUR\"]", &reply, 5000, &d), 0);
  assert_string_equal(reply.data, "{\"PP_FLAVOUR\":\"new\"}");
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.size, 2);
  pp_status_free(&st);
  /* What cannot change on reload is refused, naming the key. */
  cfg_set(next, "name", "other");
  assert_int_equal(pp_pool_reload(pool, next, &d), PP_ECONFIG);
  assert_string_equal(d.key, "name");
  pp_config_free(next);
  pp_buf_free(&reply);
  close_pool(pool);
}

/* A reload whose new worker fails to boot is undone: the old config
 * stays the one every later start uses, no slot is left retiring toward
 * the new one, and status says why. */
static void test_reload_rollback(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 2);
  pp_config_t *next = python_config("import_error.py", 2);
  pp_buf_t reply = {0};
  pp_pool_t *pool;
  pp_status_t st;
  pp_diag_t d;
  int i, pid;

  (void)state;
  cfg_set(cfg, "worker.env", "{PP_FLAVOUR: old}");
  pool = open_pool(cfg);
  assert_int_equal(pp_pool_reload(pool, next, &d), 0);
  pp_config_free(next);
  /* The first replacement's exit: the roll-back happens with it. */
  assert_int_equal(rec_wait(&rec, PP_TRACE_EXIT, 1, 30000), 0);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  if (strstr(st.reload_error, "reload rolled back: worker ") == NULL ||
      strstr(st.reload_error, "'s replacement failed to boot: ImportError: "
                              "fixture import_error") == NULL)
    fail_msg("reload_error: '%s'", st.reload_error);
  for (i = 0; i < st.nworkers; i++)
    assert_false(st.workers[i].retiring);
  pid = st.workers[0].pid;
  pp_status_free(&st);
  /* A crash restarts the worker with the old config, */
  assert_int_equal(kill(pid, SIGKILL), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 3, 30000), 0);
  /* and so does a restart. */
  assert_int_equal(pp_pool_restart(pool, 1), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 4, 30000), 0);
  for (i = 0; i < 4; i++) {
    assert_int_equal(
        pp_call_cmd(pool, "env", "[\"PP_FLAVOUR\"]", &reply, 10000, &d), 0);
    assert_string_equal(reply.data, "{\"PP_FLAVOUR\":\"old\"}");
  }
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.fatal, 0);
  assert_int_equal(st.size, 2);
  assert_non_null(strstr(st.reload_error, "reload rolled back"));
  pp_status_free(&st);
  pp_buf_free(&reply);
  close_pool(pool);
}

/* ---- a zygote that dies before it reports a worker's exit */

typedef struct pidfd_seen {
  uv_mutex_t mu;
  uv_cond_t cv;
  int seen;
} pidfd_seen_t;

static void on_fault(pp_pool_t *pool, const char *point, void *data) {
  pidfd_seen_t *p = data;

  (void)pool;
  if (strcmp(point, "pidfd") != 0)
    return;
  uv_mutex_lock(&p->mu);
  p->seen = 1;
  uv_cond_broadcast(&p->cv);
  uv_mutex_unlock(&p->mu);
}

static int parent_of(int pid) {
  char path[64], buf[512], *p;
  FILE *f;
  int ppid = -1;

  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  if ((f = fopen(path, "r")) == NULL)
    return -1;
  /* "pid (comm) state ppid ...": comm may hold spaces, so after the ')'. */
  if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) != NULL)
    sscanf(p + 2, "%*c %d", &ppid);
  fclose(f);
  return ppid;
}

/* worker.start: zygote.  The worker dies while its zygote is stopped, so
 * its exit is seen (pidfd) but never reported; then the zygote dies.  The
 * worker still ends, as killed, and its slot gets a new one: nothing waits
 * for a report that cannot come. */
static void test_zygote_dies_before_report(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pidfd_seen_t seen = {.seen = 0};
  uint64_t deadline;
  pp_pool_t *pool;
  int pid, zygote;

  (void)state;
  if (!getenv("PP_START") || strcmp(getenv("PP_START"), "zygote") != 0) {
    pp_config_free(cfg);
    skip(); /* the zygote runs of this suite (test_maintain_zygote) */
  }
  pool = open_pool(cfg);
  pid = call_pid(pool);
  zygote = parent_of(pid);
  assert_true(zygote > 1);
  uv_mutex_init(&seen.mu);
  uv_cond_init(&seen.cv);
  pp_test_fault_hook(pool, on_fault, &seen);
  assert_int_equal(kill(zygote, SIGSTOP), 0);
  assert_int_equal(kill(pid, SIGKILL), 0);
  deadline = uv_hrtime() + 10000000000ull * (uint64_t)test_time_scale();
  uv_mutex_lock(&seen.mu);
  while (!seen.seen && uv_hrtime() < deadline)
    uv_cond_timedwait(&seen.cv, &seen.mu, 100000000ull);
  uv_mutex_unlock(&seen.mu);
  assert_true(seen.seen);
  assert_int_equal(kill(zygote, SIGKILL), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_EXIT, 1, 10000), 0);
  assert_int_not_equal(call_pid(pool), pid);
  pp_test_fault_hook(pool, NULL, NULL);
  close_pool(pool);
  uv_cond_destroy(&seen.cv);
  uv_mutex_destroy(&seen.mu);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recycle_max_requests),
      cmocka_unit_test(test_rolling_restart_under_load),
      cmocka_unit_test(test_scale),
      cmocka_unit_test(test_drain),
      cmocka_unit_test(test_heartbeat_replaces_silent_worker),
      cmocka_unit_test(test_reload_under_load),
      cmocka_unit_test(test_reload_rollback),
      cmocka_unit_test(test_zygote_dies_before_report),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
