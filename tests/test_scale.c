/* test_scale.c -- elastic pools (size: {min, max}): growth while checkouts
 * wait, on each of the five faces; growth by the number waiting, at most
 * scale.max_starting at once; shrink of idle workers, never of one at
 * work; no flapping under steady load; growth stopped by boot failures;
 * resize at run time through the API and `poolctl scale`; reload; and a
 * seeded stress run that mixes scaling with dead clients and crashes.
 * Real Python workers (ctest runs it again with worker.start: zygote).
 * Every wait is on a trace event or a call's end, with a guard that only
 * fires on failure. */
#include "cli.h"
#include "faces.h"
#include "faults.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GUARD 30000

static rec_t rec;

static pp_pool_t *open_cfg(pp_config_t *cfg) {
  return rec_pool_open(&rec, cfg);
}

static void close_pool(pp_pool_t *pool) {
  pp_diag_t d;

  if (pp_test_pool_close(pool, GUARD, &d) != 0)
    fail_msg("pool leaked: %s", d.message);
  rec_free(&rec);
}

static pp_config_t *elastic_config(const char *size) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);

  cfg_set(cfg, "size", size);
  return cfg;
}

/* The k-th scale event (0-based), waited for. */
static rec_event_t scale_event(size_t k) {
  rec_event_t e;
  size_t i, seen = 0;

  memset(&e, 0, sizeof(e));
  if (rec_wait(&rec, PP_TRACE_SCALE, k + 1, GUARD) != 0)
    fail_msg("no scale event #%zu", k + 1);
  uv_mutex_lock(&rec.mu);
  for (i = 0; i < rec.n; i++)
    if (rec.ev[i].type == PP_TRACE_SCALE && seen++ == k) {
      e = rec.ev[i];
      break;
    }
  uv_mutex_unlock(&rec.mu);
  return e;
}

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The index of the first scale event from `from` on that sets the target
 * to n (a change, not a stop of growth). */
static size_t wait_target(size_t from, int n) {
  rec_event_t e;

  for (;; from++) {
    e = scale_event(from);
    if (e.code == n && !starts_with(e.detail, "growth stopped"))
      return from;
  }
}

static void status_of(pp_pool_t *pool, pp_status_t *st) {
  assert_int_equal(pp_pool_status(pool, st), 0);
}

/* Calls of the loop face's pp_call_async, counted as they end. */
typedef struct ends {
  uv_mutex_t mu;
  uv_cond_t cv;
  int done, failed;
  pp_pool_t *pool;
} ends_t;

static void ends_init(ends_t *e, pp_pool_t *pool) {
  memset(e, 0, sizeof(*e));
  uv_mutex_init(&e->mu);
  uv_cond_init(&e->cv);
  e->pool = pool;
}

static void ends_note(ends_t *e, int status, const char *msg) {
  uv_mutex_lock(&e->mu);
  e->done++;
  if (status != 0) {
    fprintf(stderr, "call failed: %s: %s\n", pp_strerror(status),
            msg ? msg : "");
    e->failed++;
  }
  uv_cond_broadcast(&e->cv);
  uv_mutex_unlock(&e->mu);
}

static void on_call(int status, const char *reply, size_t len,
                    const pp_diag_t *d, void *data) {
  (void)reply;
  (void)len;
  ends_note(data, status, d ? d->message : NULL);
}

static void ends_wait(ends_t *e, int n) {
  uint64_t end =
      uv_hrtime() + (uint64_t)GUARD * 1000000ull * (uint64_t)test_time_scale();

  uv_mutex_lock(&e->mu);
  while (e->done < n) {
    uint64_t now = uv_hrtime();
    if (now >= end)
      break;
    uv_cond_timedwait(&e->cv, &e->mu, end - now);
  }
  uv_mutex_unlock(&e->mu);
  if (e->done < n)
    fail_msg("%d of %d calls ended", e->done, n);
  assert_int_equal(e->failed, 0);
}

static void ends_free(ends_t *e) {
  uv_mutex_destroy(&e->mu);
  uv_cond_destroy(&e->cv);
}

static const char echo[] = "{\"cmd\":\"echo\",\"args\":1}";

static void async_echoes(ends_t *e, int n) {
  for (int i = 0; i < n; i++)
    assert_int_equal(
        pp_call_async(e->pool, echo, strlen(echo), GUARD, on_call, e), 0);
}

static pp_lease_t *hold(pp_pool_t *pool) {
  pp_lease_t *lease;
  pp_diag_t d;

  if (pp_lease_acquire(pool, NULL, GUARD, &lease, &d) != 0)
    fail_msg("pp_lease_acquire: %s", d.message);
  return lease;
}

/* ------------------------------------------------------------- growth */

/* pp_request's face: a checkout made on the loop thread.  A kick that
 * gives up after 1 ms (the only worker is held) brings us there. */
static void on_loop_lease(pp_lease_t *lease, int status, const pp_diag_t *d,
                          void *data) {
  if (status == 0)
    pp_checkin(lease);
  ends_note(data, status, d ? d->message : NULL);
}

static void on_kick(int status, const char *reply, size_t len,
                    const pp_diag_t *d, void *data) {
  ends_t *e = data;
  int r;

  (void)reply;
  (void)len;
  (void)d;
  r = status == PP_ETIMEDOUT
          ? pp_checkout(e->pool, NULL, GUARD, on_loop_lease, e)
          : status;
  if (r != 0)
    ends_note(e, r, "the kick did not time out");
}

/* A checkout that waits past scale.up_after grows the pool by one, on
 * every face of a call that can wait. */
static void test_grow_each_face(void **state) {
  int f;

  (void)state;
  for (f = 0; f < F_N; f++) {
    pp_config_t *cfg = elastic_config("{min: 1, max: 2}");
    pp_lease_t *held;
    pp_pool_t *pool;
    pp_status_t st;
    rec_event_t e;
    call_t c;
    ends_t loop;

    if (f == F_PIPE)
      cfg_set(cfg, "worker.pipeline_depth", "4");
    pool = open_cfg(cfg);
    held = hold(pool);
    ends_init(&loop, pool);
    if (f == F_REQUEST)
      assert_int_equal(
          pp_call_async(pool, kick, strlen(kick), 1, on_kick, &loop), 0);
    else
      call_start(&c, pool, (face_t)f, echo, -1, NULL);
    e = scale_event(0);
    if (e.code != 2 ||
        !starts_with(e.detail, "grow: 1 waiting, the oldest > 5ms"))
      fail_msg("%s: scale to %d: %s", face_name[f], e.code, e.detail);
    if (f == F_REQUEST) {
      ends_wait(&loop, 1);
    } else {
      call_wait(&c);
      assert_int_equal(c.status, 0);
      assert_string_equal(c.reply, "1");
      call_free(&c);
    }
    status_of(pool, &st);
    assert_int_equal(st.elastic, 1);
    assert_int_equal(st.size_min, 1);
    assert_int_equal(st.size_max, 2);
    assert_int_equal(st.target_size, 2);
    assert_int_equal(st.size, 2);
    assert_true(starts_with(st.scale_reason, "grow: "));
    pp_status_free(&st);
    pp_checkin(held);
    ends_free(&loop);
    close_pool(pool);
  }
}

/* Several waiting grow it by several: never more than are waiting, and
 * never more than scale.max_starting at once. */
static void test_grow_by_waiters(void **state) {
  pp_pool_t *pool;
  pp_lease_t *held;
  pp_status_t st;
  rec_event_t e;
  ends_t calls;
  int prev = 1;
  size_t k;

  (void)state;
  pool = open_cfg(elastic_config("{min: 1, max: 8}"));
  held = hold(pool);
  ends_init(&calls, pool);
  async_echoes(&calls, 6);
  ends_wait(&calls, 6);
  status_of(pool, &st);
  if (st.target_size < 2 || st.target_size > 7)
    fail_msg("target %d: %s", st.target_size, st.scale_reason);
  for (k = 0; k < st.scale_changes; k++) {
    e = scale_event(k);
    assert_true(starts_with(e.detail, "grow: "));
    assert_true(e.code > prev && e.code - prev <= 4); /* max_starting */
    assert_true(e.code <= 1 + 6);                     /* held + waiting */
    prev = e.code;
  }
  pp_status_free(&st);
  pp_checkin(held);
  ends_free(&calls);
  close_pool(pool);
}

/* In a pipelined pool, waiting calls share a worker (as many as its
 * pipeline holds): 6 calls at depth 2 grow it by 3 at most, not 6. */
static void test_grow_by_pipelines(void **state) {
  pp_config_t *cfg = elastic_config("{min: 1, max: 8}");
  pp_pool_t *pool;
  pp_lease_t *held;
  pp_status_t st;
  rec_event_t e;
  ends_t calls;
  size_t k;

  (void)state;
  cfg_set(cfg, "worker.pipeline_depth", "2");
  pool = open_cfg(cfg);
  held = hold(pool);
  ends_init(&calls, pool);
  async_echoes(&calls, 6);
  ends_wait(&calls, 6);
  status_of(pool, &st);
  for (k = 0; k < st.scale_changes; k++) {
    e = scale_event(k);
    assert_true(starts_with(e.detail, "grow: "));
    if (e.code > 1 + 3) /* held + 6 calls / depth 2 */
      fail_msg("scale to %d: %s", e.code, e.detail);
  }
  assert_true(st.target_size >= 2 && st.target_size <= 4);
  pp_status_free(&st);
  pp_checkin(held);
  ends_free(&calls);
  close_pool(pool);
}

/* Workers above min idle for scale.idle_timeout stop, one at a time, as
 * "scaled down"; the worker at work (a lease held all along) stays. */
static void test_shrink_idle(void **state) {
  pp_config_t *cfg = elastic_config("{min: 1, max: 3}");
  pp_pool_t *pool;
  pp_lease_t *held;
  pp_status_t st;
  rec_event_t e;
  ends_t calls;
  size_t k, grown;
  int i, serving = 0;

  (void)state;
  cfg_set(cfg, "scale.idle_timeout", "20ms");
  pool = open_cfg(cfg);
  held = hold(pool);
  ends_init(&calls, pool);
  async_echoes(&calls, 2);
  ends_wait(&calls, 2);
  status_of(pool, &st);
  grown = st.scale_changes;
  assert_true(st.target_size >= 2);
  pp_status_free(&st);
  /* Back to min, one stop after another. */
  k = wait_target(grown, 1);
  for (; grown <= k; grown++) {
    e = scale_event(grown);
    if (starts_with(e.detail, "grow: "))
      continue;
    if (!starts_with(e.detail, "shrink: worker "))
      fail_msg("unexpected scale event: %s", e.detail);
    /* Never one that worked within the window: each had been idle for
     * idle_timeout at least ("shrink: worker 2 idle 21ms"). */
    {
      const char *idle = strstr(e.detail, " idle ");
      char *unit;
      long v;

      assert_non_null(idle);
      v = strtol(idle + 6, &unit, 10);
      assert_true(strcmp(unit, "ms") != 0 || v >= 20);
    }
  }
  status_of(pool, &st);
  assert_int_equal(st.target_size, 1);
  assert_true(starts_with(st.scale_reason, "shrink: worker "));
  for (i = 0; i < st.nworkers; i++)
    if (st.workers[i].state != PP_WORKER_EXITED &&
        st.workers[i].state != PP_WORKER_STOPPING) {
      /* The one left is the one lent all along. */
      assert_int_equal(st.workers[i].state, PP_WORKER_LEASED);
      serving++;
    }
  assert_int_equal(serving, 1);
  pp_status_free(&st);
  pp_checkin(held);
  ends_free(&calls);
  close_pool(pool);
}

typedef struct caller {
  pp_pool_t *pool;
  int calls, failures;
  pp_lease_t *lease; /* growth phase: the lease it holds */
  uv_thread_t thread;
} caller_t;

static void acquire_main(void *arg) {
  caller_t *c = arg;
  c->lease = hold(c->pool);
}

static void steady_main(void *arg) {
  caller_t *c = arg;
  pp_buf_t reply = {0};
  pp_diag_t d;

  for (int i = 0; i < c->calls; i++)
    if (pp_call_cmd(c->pool, "echo", "[1]", &reply, GUARD, &d) != 0) {
      fprintf(stderr, "steady: %s\n", d.message);
      c->failures++;
    }
  pp_buf_free(&reply);
}

/* Three callers grow a pool to three (no further), and three callers at a
 * steady pace then change nothing: growth needs a wait past up_after,
 * shrink an idle worker past idle_timeout, and neither happens. */
static void test_no_flapping(void **state) {
  pp_pool_t *pool;
  pp_status_t st;
  caller_t c[3];
  pp_lease_t *held;
  size_t k, before;
  int i;

  (void)state;
  pool = open_cfg(elastic_config("{min: 1, max: 8}"));
  held = hold(pool);
  memset(c, 0, sizeof(c));
  for (i = 0; i < 2; i++) {
    c[i].pool = pool;
    assert_int_equal(uv_thread_create(&c[i].thread, acquire_main, &c[i]), 0);
  }
  for (i = 0; i < 2; i++)
    uv_thread_join(&c[i].thread);
  wait_target(0, 3);
  pp_checkin(held);
  for (i = 0; i < 2; i++)
    pp_checkin(c[i].lease);
  status_of(pool, &st);
  before = st.scale_changes;
  assert_int_equal(st.target_size, 3);
  for (k = 0; k < before; k++)
    assert_true(scale_event(k).code <= 3);
  pp_status_free(&st);
  for (i = 0; i < 3; i++) {
    c[i].pool = pool;
    c[i].calls = 300;
    assert_int_equal(uv_thread_create(&c[i].thread, steady_main, &c[i]), 0);
  }
  for (i = 0; i < 3; i++) {
    uv_thread_join(&c[i].thread);
    assert_int_equal(c[i].failures, 0);
  }
  status_of(pool, &st);
  assert_int_equal(st.scale_changes, before);
  assert_int_equal(rec_count(&rec, PP_TRACE_SCALE), before);
  assert_int_equal(st.target_size, 3);
  pp_status_free(&st);
  close_pool(pool);
}

/* New workers that fail to boot stop growth: no endless growth from a
 * failing slot, and status says why.  Slot 1 exits before HELLO
 * (bad_worker.py, BAD_WORKER_ONLY=1); slot 0 serves. */
static void test_boot_failure_stops_growth(void **state) {
  pp_config_t *cfg;
  const char *per = "{\"cmd\":\"echo\",\"args\":1}";
  pp_pool_t *pool;
  pp_lease_t *held;
  pp_status_t st;
  rec_event_t e;
  ends_t calls;

  (void)state;
  if (getenv("PP_START") && strcmp(getenv("PP_START"), "zygote") == 0)
    skip(); /* bad_worker.py speaks the protocol itself: no zygote */
  cfg = bad_worker_config("exit_before_hello", 1);
  cfg_set(cfg, "worker.env", "{BAD_WORKER_ONLY: '1'}");
  cfg_set(cfg, "size", "{min: 1, max: 4}");
  cfg_set(cfg, "scale.max_starting", "1");
  cfg_set(cfg, "restart.backoff", "[10ms, 20ms]");
  cfg_set(cfg, "restart.max_restarts", "1000");
  pool = open_cfg(cfg);
  held = hold(pool);
  ends_init(&calls, pool);
  for (int i = 0; i < 3; i++)
    assert_int_equal(
        pp_call_async(pool, per, strlen(per), GUARD, on_call, &calls), 0);
  e = scale_event(0);
  assert_int_equal(e.code, 2);
  assert_true(starts_with(e.detail, "grow: "));
  e = scale_event(1);
  if (!starts_with(e.detail, "growth stopped: worker 1 failed to boot"))
    fail_msg("second scale event: %s", e.detail);
  /* Slot 1 fails again and again while three wait; the pool stays. */
  assert_int_equal(rec_wait(&rec, PP_TRACE_RESTART, 4, GUARD), 0);
  status_of(pool, &st);
  assert_int_equal(st.target_size, 2);
  assert_int_equal(st.scale_changes, 1);
  assert_true(starts_with(st.scale_blocked, "growth stopped: worker 1"));
  pp_status_free(&st);
  assert_int_equal(rec_count(&rec, PP_TRACE_SCALE), 2);
  pp_checkin(held);
  ends_wait(&calls, 3);
  /* The operator clears it. */
  assert_int_equal(pp_pool_resize(pool, 1, 4, 0), 0);
  status_of(pool, &st);
  assert_string_equal(st.scale_blocked, "");
  pp_status_free(&st);
  ends_free(&calls);
  close_pool(pool);
}

/* ------------------------------------------------------------- operator */

/* pp_pool_resize and pp_pool_scale at run time, and bad arguments. */
static void test_resize_api(void **state) {
  pp_pool_t *pool = open_cfg(python_config("echo_handlers.py", 2));
  pp_status_t st;
  rec_event_t e;

  (void)state;
  status_of(pool, &st);
  assert_int_equal(st.elastic, 0);
  assert_int_equal(st.size_min, 2);
  assert_int_equal(st.size_max, 2);
  assert_string_equal(st.scale_reason, "config");
  pp_status_free(&st);
  assert_int_equal(pp_pool_resize(pool, 0, 2, 0), UV_EINVAL);
  assert_int_equal(pp_pool_resize(pool, 3, 2, 0), UV_EINVAL);
  assert_int_equal(pp_pool_resize(pool, 1, 4097, 0), UV_EINVAL);
  assert_int_equal(pp_pool_resize(pool, 1, 4, 0), 0);
  e = scale_event(0);
  assert_int_equal(e.code, 2);
  assert_string_equal(e.detail, "operator: {min: 1, max: 4}");
  status_of(pool, &st);
  assert_int_equal(st.elastic, 1);
  assert_int_equal(st.size_min, 1);
  assert_int_equal(st.size_max, 4);
  assert_int_equal(st.target_size, 2);
  pp_status_free(&st);
  /* A min above the count grows the pool to it at once. */
  assert_int_equal(pp_pool_resize(pool, 3, 4, 0), 0);
  assert_int_equal(scale_event(1).code, 3);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 3, GUARD), 0);
  /* pp_pool_scale makes it fixed again. */
  assert_int_equal(pp_pool_scale(pool, 1, 0), 0);
  e = scale_event(2);
  assert_int_equal(e.code, 1);
  assert_string_equal(e.detail, "operator");
  status_of(pool, &st);
  assert_int_equal(st.elastic, 0);
  assert_int_equal(st.size_min, 1);
  assert_int_equal(st.size_max, 1);
  pp_status_free(&st);
  close_pool(pool);
}

/* `poolctl scale MIN..MAX` and `poolctl scale N`. */
static void test_resize_poolctl(void **state) {
  char dir[64] = "/tmp/pp-test-scale-XXXXXX", sock[128];
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pp_pool_t *pool;
  pp_status_t st;
  cli_run_t r;

  (void)state;
  assert_non_null(mkdtemp(dir));
  snprintf(sock, sizeof(sock), "%s/pool.sock", dir);
  cfg_set(cfg, "control.socket", sock);
  pool = open_cfg(cfg);
  cli_poolctl(&r, "scale", "-S", sock, "2..5", NULL);
  if (r.code != 0)
    fail_msg("poolctl scale 2..5: %d: %s", r.code, r.err);
  cli_run_free(&r);
  status_of(pool, &st);
  assert_int_equal(st.elastic, 1);
  assert_int_equal(st.size_min, 2);
  assert_int_equal(st.size_max, 5);
  assert_int_equal(st.target_size, 2);
  assert_int_equal(st.idle, 2);
  pp_status_free(&st);
  cli_poolctl(&r, "status", "-S", sock, NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "elastic 2..5"));
  cli_run_free(&r);
  cli_poolctl(&r, "status", "--prometheus", "-S", sock, NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "portpool_size_max{"));
  cli_run_free(&r);
  cli_poolctl(&r, "scale", "-S", sock, "5..2", NULL);
  assert_int_equal(r.code, 2);
  cli_run_free(&r);
  cli_poolctl(&r, "scale", "-S", sock, "0..2", NULL);
  assert_int_equal(r.code, 2);
  cli_run_free(&r);
  cli_poolctl(&r, "scale", "-S", sock, "1", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  status_of(pool, &st);
  assert_int_equal(st.elastic, 0);
  assert_int_equal(st.target_size, 1);
  pp_status_free(&st);
  close_pool(pool);
  rmdir(dir);
}

/* A reload can make a pool elastic, change min and max, or fix it. */
static void test_reload_size(void **state) {
  pp_pool_t *pool = open_cfg(python_config("echo_handlers.py", 1));
  pp_config_t *cfg;
  pp_status_t st;
  rec_event_t e;
  pp_diag_t d;

  (void)state;
  cfg = elastic_config("{min: 2, max: 4}");
  assert_int_equal(pp_pool_reload(pool, cfg, &d), 0);
  pp_config_free(cfg);
  e = scale_event(0);
  assert_int_equal(e.code, 2);
  assert_string_equal(e.detail, "reload");
  status_of(pool, &st);
  assert_int_equal(st.elastic, 1);
  assert_int_equal(st.size_min, 2);
  assert_int_equal(st.size_max, 4);
  pp_status_free(&st);
  cfg = python_config("echo_handlers.py", 1);
  assert_int_equal(pp_pool_reload(pool, cfg, &d), 0);
  pp_config_free(cfg);
  assert_int_equal(scale_event(1).code, 1);
  status_of(pool, &st);
  assert_int_equal(st.elastic, 0);
  assert_int_equal(st.target_size, 1);
  pp_status_free(&st);
  close_pool(pool);
}

/* --------------------------------------------------------------- stress */

/* The run's random numbers: the main thread's and the fault hook's (any
 * thread), under one mutex. */
static uint64_t rng;
static uv_mutex_t rng_mu;

static uint64_t next_rand(void) {
  uint64_t x;

  uv_mutex_lock(&rng_mu);
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  x = rng;
  uv_mutex_unlock(&rng_mu);
  return x;
}

static void spin_for(uint64_t n) {
  volatile uint64_t x = 0;

  for (uint64_t i = 0; i < n; i++)
    x += i;
}

/* Busy work of a random length at every fault point of the core. */
static void chaos_hook(pp_pool_t *pool, const char *point, void *data) {
  (void)pool;
  (void)point;
  (void)data;
  spin_for(next_rand() % 20000);
}

typedef struct job {
  int id, crash;
  int status, wrong;
} job_t;

static void job_fn(pp_task_t *task, pp_client_t *client, void *data) {
  job_t *job = data;
  pp_lease_t *lease;
  pp_buf_t reply = {0};
  char payload[64], want[32];
  pp_diag_t d;

  (void)task;
  job->status =
      pp_lease_acquire(pp_client_pool(client), client, GUARD, &lease, &d);
  if (job->status != 0)
    return;
  if (job->crash)
    snprintf(payload, sizeof(payload), "{\"cmd\":\"crash\",\"args\":3}");
  else
    snprintf(payload, sizeof(payload), "{\"cmd\":\"echo\",\"args\":%d}",
             job->id);
  snprintf(want, sizeof(want), "%d", job->id);
  job->status = pp_lease_call(lease, payload, strlen(payload), -1, &reply, &d);
  if (job->status == 0 && strcmp(reply.data, want) != 0)
    job->wrong = 1;
  pp_buf_free(&reply);
  pp_checkin(lease);
}

/* Rounds of: a lease held, three tasks queued behind it (the pool grows),
 * the lease back, the first task killed around the hand-off (a dead
 * client), now and then a task whose call crashes its worker and a resize
 * by the operator, with idle workers shrinking in between (idle_timeout
 * 5ms).  After each round the pool is quiet, every lease is accounted for
 * and the slots match the target; at the end no worker outlives the
 * pool.  STRESS_SEED=N replays a run, STRESS_ROUNDS=N sets its length. */
static void test_stress_scaling(void **state) {
  int rounds = env_int("STRESS_ROUNDS", 40), i, j, max = 4, resized;
  pp_config_t *cfg = elastic_config("{min: 1, max: 4}");
  uint64_t seed;
  pp_task_t *task[3];
  pp_lease_t *held;
  pp_status_t st;
  pp_pool_t *pool;
  job_t job[3];
  pp_diag_t d;
  size_t e, from;

  (void)state;
  cfg_set(cfg, "scale.up_after", "1ms");
  cfg_set(cfg, "scale.idle_timeout", "5ms");
  cfg_set(cfg, "scale.max_starting", "2");
  cfg_set(cfg, "restart.backoff", "[10ms, 20ms]");
  cfg_set(cfg, "restart.max_restarts", "100000");
  seed = (uint64_t)env_int("STRESS_SEED", 0);
  if (seed == 0)
    seed = (uint64_t)time(NULL);
  fprintf(stderr, "STRESS_SEED=%" PRIu64 " STRESS_ROUNDS=%d\n", seed, rounds);
  rng = seed * 0x9e3779b97f4a7c15ull + 1;
  uv_mutex_init(&rng_mu);
  pool = open_cfg(cfg);
  pp_test_fault_hook(pool, chaos_hook, NULL);
  for (i = 0; i < rounds; i++) {
    held = hold(pool);
    for (j = 0; j < 3; j++) {
      memset(&job[j], 0, sizeof(job[j]));
      job[j].id = 3 * i + j;
      job[j].crash = j == 2 && next_rand() % 4 == 0;
      assert_int_equal(pp_task_spawn(pool, job_fn, &job[j], &task[j]), 0);
    }
    /* Up to a few milliseconds: the queue may outlast scale.up_after. */
    spin_for(next_rand() % 3000000);
    pp_checkin(held);
    spin_for(next_rand() % 20000);
    pp_task_cancel(task[0]);
    resized = next_rand() % 8 == 0;
    if (resized) {
      max = 2 + (int)(next_rand() % 3);
      assert_int_equal(pp_pool_resize(pool, 1, max, 0), 0);
    }
    for (j = 0; j < 3; j++)
      pp_task_join(task[j]);
    for (j = 0; j < 3; j++)
      if (job[j].wrong)
        fail_msg(
            "round %d: a task got a reply not its own (STRESS_SEED=%" PRIu64
            ")",
            i, seed);
    if (job[1].status != 0)
      fail_msg("round %d: a live task failed: %s (STRESS_SEED=%" PRIu64 ")", i,
               pp_strerror(job[1].status), seed);
    if (pp_pool_quiesce(pool, GUARD, &d) != 0)
      fail_msg("round %d: %s (STRESS_SEED=%" PRIu64 ")", i, d.message, seed);
    /* Scale events from here on: a shrink the snapshot does not show yet
     * comes after it (counted after the snapshot, one that came between
     * would be waited for in vain). */
    from = rec_count(&rec, PP_TRACE_SCALE);
    status_of(pool, &st);
    if (st.target_size > 1 && next_rand() % 4 == 0) {
      /* Quiet for a while: idle workers stop, one at a time, down to
       * min. */
      pp_status_free(&st);
      wait_target(from, 1);
      status_of(pool, &st);
      resized = 0;
    }
    /* A resize is carried out on the loop's next turn: until then the
     * slots may differ from the target. */
    if (st.checkouts != st.checkins + st.reclaimed ||
        (!resized && st.size != st.target_size) || st.target_size < 1 ||
        st.target_size > max)
      fail_msg("round %d: checkouts %" PRIu64 " checkins %" PRIu64
               " reclaimed %" PRIu64 ", %d slots for a target of %d (max %d) "
               "(STRESS_SEED=%" PRIu64 ")",
               i, st.checkouts, st.checkins, st.reclaimed, st.size,
               st.target_size, max, seed);
    pp_status_free(&st);
  }
  pp_test_fault_hook(pool, NULL, NULL);
  if (getenv("PP_TEST_VERBOSE"))
    for (e = 0; e < rec_count(&rec, PP_TRACE_SCALE); e++)
      fprintf(stderr, "  scale %d: %s\n", scale_event(e).code,
              scale_event(e).detail);
  status_of(pool, &st);
  fprintf(stderr, "%" PRIu64 " scale changes, %" PRIu64 " restarts\n",
          st.scale_changes, st.restarts);
  pp_status_free(&st);
  /* No worker outlives the pool. */
  {
    int pids[4096], n = 0;
    uv_mutex_lock(&rec.mu);
    for (e = 0; e < rec.n && n < 4096; e++)
      if (rec.ev[e].type == PP_TRACE_SPAWN && rec.ev[e].pid > 0)
        pids[n++] = rec.ev[e].pid;
    uv_mutex_unlock(&rec.mu);
    close_pool(pool);
    for (i = 0; i < n; i++)
      if (pid_alive(pids[i]) && wait_pid_gone(pids[i], GUARD) != 0)
        fail_msg("worker %d outlived the pool (STRESS_SEED=%" PRIu64 ")",
                 pids[i], seed);
  }
  uv_mutex_destroy(&rng_mu);
}

/* Many workers asked at once: none fails, none is restarted.  Under the
 * zygote (test_scale_zygote), more fork requests than its socket's buffer
 * holds (about 280 on Linux's default): the rest wait for room.  Spawned
 * (test_scale, also under valgrind), a smaller crowd. */
static void test_many_at_once(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  const char *start = getenv("PP_START");
  int many = start && strcmp(start, "zygote") == 0 ? 400 : 16;
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_pool_t *pool;
  pp_diag_t d;

  (void)state;
  pool = open_cfg(cfg);
  assert_int_equal(pp_pool_scale(pool, many, 0), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, (size_t)many, GUARD), 0);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  assert_int_equal(st.size, many);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(st.backoff + st.fatal, 0);
  pp_status_free(&st);
  assert_int_equal(rec_count(&rec, PP_TRACE_RESTART), 0);
  assert_int_equal(pp_call_cmd(pool, "echo", "7", &reply, GUARD, &d), 0);
  assert_memory_equal(reply.data, "7", 1);
  pp_buf_free(&reply);
  close_pool(pool);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_many_at_once),
      cmocka_unit_test(test_grow_each_face),
      cmocka_unit_test(test_grow_by_waiters),
      cmocka_unit_test(test_grow_by_pipelines),
      cmocka_unit_test(test_shrink_idle),
      cmocka_unit_test(test_no_flapping),
      cmocka_unit_test(test_boot_failure_stops_growth),
      cmocka_unit_test(test_resize_api),
      cmocka_unit_test(test_resize_poolctl),
      cmocka_unit_test(test_reload_size),
      cmocka_unit_test(test_stress_scaling),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
