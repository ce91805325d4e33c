/* test_clients.c -- clients that die, in each phase of DESIGN.md's "Dead
 * clients" table, with real Python workers.  Races are not waited for:
 * fault points in the test build of the core pause it at the race window,
 * the test kills the client there, then lets the core go on. */
#include "helpers.h"

#include "faults.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a gate: pause the core once at a named fault point */

typedef struct gate {
  uv_mutex_t mu;
  uv_cond_t cv;
  const char *point;
  int armed, paused, released;
} gate_t;

static void gate_init(gate_t *g, const char *point) {
  memset(g, 0, sizeof(*g));
  uv_mutex_init(&g->mu);
  uv_cond_init(&g->cv);
  g->point = point;
  g->armed = 1;
}

static void gate_hook(pp_pool_t *pool, const char *point, void *data) {
  gate_t *g = data;
  (void)pool;
  uv_mutex_lock(&g->mu);
  if (g->armed && strcmp(point, g->point) == 0) {
    g->armed = 0;
    g->paused = 1;
    uv_cond_broadcast(&g->cv);
    while (!g->released)
      uv_cond_wait(&g->cv, &g->mu);
  }
  uv_mutex_unlock(&g->mu);
}

static void gate_wait_paused(gate_t *g) {
  int r = 0;
  uv_mutex_lock(&g->mu);
  while (!g->paused && r == 0)
    r = uv_cond_timedwait(&g->cv, &g->mu, 30000000000ull);
  uv_mutex_unlock(&g->mu);
  assert_int_equal(r, 0);
}

static void gate_release(gate_t *g) {
  uv_mutex_lock(&g->mu);
  g->released = 1;
  uv_cond_broadcast(&g->cv);
  uv_mutex_unlock(&g->mu);
}

static void gate_free(gate_t *g) {
  uv_cond_destroy(&g->cv);
  uv_mutex_destroy(&g->mu);
}

/* ---- pools and tasks */

static rec_t rec;

static pp_pool_t *open_pool(pp_config_t *cfg) {
  return rec_pool_open(&rec, cfg);
}

static void close_pool(pp_pool_t *pool) {
  pp_diag_t d;
  int r = pp_pool_quiesce(pool, 30000, &d);
  if (r != 0)
    fail_msg("quiesce: %s", d.message);
  pp_pool_close(pool);
  rec_free(&rec);
}

typedef struct job {
  const char *payload; /* NULL: only check out */
  int acquire_status;
  int call_status;
  int pid;
  char reply[128];
} job_t;

/* A task that checks out through its own client and, given a payload,
 * calls once; it never checks in: its client's death must. */
static void job_fn(pp_task_t *task, pp_client_t *client, void *data) {
  job_t *job = data;
  pp_lease_t *lease;
  pp_buf_t reply = {0};
  pp_diag_t d;

  (void)task;
  job->call_status = 1;
  job->acquire_status =
      pp_lease_acquire(pp_client_pool(client), client, 30000, &lease, &d);
  if (job->acquire_status != 0 || job->payload == NULL)
    return;
  job->pid = pp_lease_pid(lease);
  job->call_status =
      pp_lease_call(lease, job->payload, strlen(job->payload), -1, &reply, &d);
  snprintf(job->reply, sizeof(job->reply), "%s", reply.data ? reply.data : "");
  pp_buf_free(&reply);
}

static void status_of(pp_pool_t *pool, pp_status_t *st) {
  assert_int_equal(pp_pool_status(pool, st), 0);
}

/* Case 1: the client dies while waiting in the queue: its wait is
 * withdrawn and no worker is ever handed to it. */
static void test_dead_while_waiting(void **state) {
  pp_pool_t *pool = open_pool(python_config("echo_handlers.py", 1));
  pp_lease_t *held;
  pp_task_t *task;
  pp_status_t st;
  job_t job = {0};
  pp_diag_t d;

  (void)state;
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &held, &d), 0);
  assert_int_equal(pp_task_spawn(pool, job_fn, &job, &task), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_CHECKOUT_WAIT, 1, 10000), 0);
  pp_task_cancel(task);
  assert_int_equal(pp_task_join(task), PP_ECANCELED);
  assert_int_equal(job.acquire_status, PP_ECANCELED);
  pp_checkin(held);
  status_of(pool, &st);
  assert_int_equal(st.withdrawn, 1);
  assert_int_equal(st.checkouts, 1); /* only ours: none to the dead client */
  assert_int_equal(st.idle, 1);
  assert_int_equal(st.waiters, 0);
  pp_status_free(&st);
  close_pool(pool);
}

/* Case 2, the badarg window: a worker is chosen for a waiter whose client
 * dies before receiving it.  The worker goes to the next waiter. */
static void test_dead_between_choice_and_handoff(void **state) {
  pp_pool_t *pool = open_pool(python_config("echo_handlers.py", 1));
  pp_task_t *first, *second;
  job_t j1 = {0}, j2 = {0};
  pp_lease_t *held;
  pp_status_t st;
  pp_diag_t d;
  gate_t g;

  (void)state;
  j2.payload = "{\"cmd\":\"pid\"}";
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &held, &d), 0);
  assert_int_equal(pp_task_spawn(pool, job_fn, &j1, &first), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_CHECKOUT_WAIT, 1, 10000), 0);
  assert_int_equal(pp_task_spawn(pool, job_fn, &j2, &second), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_CHECKOUT_WAIT, 2, 10000), 0);
  gate_init(&g, "deliver");
  pp_test_fault_hook(pool, gate_hook, &g);
  pp_checkin(held); /* chooses the first waiter (FIFO) */
  gate_wait_paused(&g);
  pp_task_cancel(first); /* dies after being chosen, before receiving */
  gate_release(&g);
  assert_int_equal(pp_task_join(first), PP_ECANCELED);
  assert_int_equal(j1.acquire_status, PP_ECANCELED);
  assert_int_equal(pp_task_join(second), 0);
  assert_int_equal(j2.acquire_status, 0);
  assert_int_equal(j2.call_status, 0);
  assert_int_equal(atoi(j2.reply), j2.pid);
  status_of(pool, &st);
  assert_int_equal(st.reclaimed_undelivered, 1);
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  pp_test_fault_hook(pool, NULL, NULL);
  close_pool(pool);
  gate_free(&g);
}

/* Case 2 on the event-loop face: a socket-like client on the loop. */
static void test_dead_client_skipped_at_handoff(void **state) {
  pp_pool_t *pool = open_pool(python_config("echo_handlers.py", 1));
  pp_task_t *dead, *live;
  job_t j1 = {0}, j2 = {0};
  pp_lease_t *held;
  pp_status_t st;
  pp_diag_t d;
  gate_t g;

  (void)state;
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &held, &d), 0);
  assert_int_equal(pp_task_spawn(pool, job_fn, &j1, &dead), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_CHECKOUT_WAIT, 1, 10000), 0);
  assert_int_equal(pp_task_spawn(pool, job_fn, &j2, &live), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_CHECKOUT_WAIT, 2, 10000), 0);
  /* Pause between the client being marked dead and its wait being
   * withdrawn; a check-in in that window must skip it. */
  gate_init(&g, "client_dead");
  pp_test_fault_hook(pool, gate_hook, &g);
  uv_thread_t killer;
  assert_int_equal(
      uv_thread_create(&killer, (uv_thread_cb)pp_task_cancel, dead), 0);
  gate_wait_paused(&g);
  pp_checkin(held);
  gate_release(&g);
  uv_thread_join(&killer);
  assert_int_equal(pp_task_join(dead), PP_ECANCELED);
  assert_int_equal(j1.acquire_status, PP_ECANCELED);
  assert_int_equal(pp_task_join(live), 0);
  assert_int_equal(j2.acquire_status, 0);
  status_of(pool, &st);
  assert_int_equal(st.reclaimed_undelivered, 0);
  assert_int_equal(st.withdrawn, 1);
  pp_status_free(&st);
  pp_test_fault_hook(pool, NULL, NULL);
  close_pool(pool);
  gate_free(&g);
}

/* Case 3: the client dies holding an idle lease: it is checked in. */
static void test_dead_holding_lease(void **state) {
  pp_pool_t *pool = open_pool(python_config("echo_handlers.py", 1));
  pp_task_t *task;
  pp_status_t st;
  job_t job = {0};

  (void)state;
  assert_int_equal(pp_task_spawn(pool, job_fn, &job, &task), 0);
  assert_int_equal(pp_task_join(task), 0); /* returned holding the lease */
  assert_int_equal(job.acquire_status, 0);
  status_of(pool, &st);
  assert_int_equal(st.reclaimed_idle, 1);
  assert_int_equal(st.idle, 1);
  pp_status_free(&st);
  close_pool(pool);
}

/* Case 4, finish: the client dies after its reply was read but before it
 * was delivered: the reply is dropped and counted, the worker kept. */
static void test_dead_before_reply_delivered(void **state) {
  pp_pool_t *pool = open_pool(python_config("echo_handlers.py", 1));
  pp_task_t *task;
  pp_status_t st;
  job_t job = {0};
  pp_buf_t reply = {0};
  pp_diag_t d;
  gate_t g;

  (void)state;
  job.payload = "{\"cmd\":\"echo\",\"args\":\"for the dead\"}";
  gate_init(&g, "reply");
  pp_test_fault_hook(pool, gate_hook, &g);
  assert_int_equal(pp_task_spawn(pool, job_fn, &job, &task), 0);
  gate_wait_paused(&g);
  pp_task_cancel(task);
  gate_release(&g);
  assert_int_equal(pp_task_join(task), PP_ECANCELED);
  assert_int_equal(job.call_status, PP_ECANCELED);
  pp_test_fault_hook(pool, NULL, NULL);
  /* The next borrower gets its own reply, not the dead client's. */
  assert_int_equal(pp_call_cmd(pool, "echo", "\"mine\"", &reply, -1, &d), 0);
  assert_string_equal(reply.data, "\"mine\"");
  status_of(pool, &st);
  assert_int_equal(st.stale_replies, 1);
  assert_int_equal(st.reclaimed_busy, 1);
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  pp_buf_free(&reply);
  close_pool(pool);
  gate_free(&g);
}

/* Case 4, kill: the worker running the dead client's request is replaced
 * at once. */
static void test_dead_mid_request_kill(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pp_pool_t *pool;
  pp_task_t *task;
  job_t job = {0};

  (void)state;
  cfg_set(cfg, "on_client_death", "kill");
  pool = open_pool(cfg);
  job.payload = "{\"cmd\":\"sleep\",\"args\":60}";
  assert_int_equal(pp_task_spawn(pool, job_fn, &job, &task), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_REQUEST, 1, 10000), 0);
  pp_task_cancel(task);
  assert_int_equal(pp_task_join(task), PP_ECANCELED);
  assert_int_equal(job.call_status, PP_ECANCELED);
  assert_int_equal(rec_wait(&rec, PP_TRACE_EXIT, 1, 10000), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 2, 10000), 0);
  close_pool(pool);
}

/* Case 4, cancel: the worker is sent CANCEL; a handler that watches
 * portpool_worker.cancelled() stops and the worker is kept. */
static void test_dead_mid_request_cancel(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pp_pool_t *pool;
  pp_task_t *task;
  pp_status_t st;
  job_t job = {0};

  (void)state;
  cfg_set(cfg, "on_client_death", "cancel");
  cfg_set(cfg, "worker.cancel_grace", "30s");
  pool = open_pool(cfg);
  job.payload = "{\"cmd\":\"cancelled_sleep\",\"args\":60}";
  assert_int_equal(pp_task_spawn(pool, job_fn, &job, &task), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_REQUEST, 1, 10000), 0);
  pp_task_cancel(task);
  assert_int_equal(pp_task_join(task), PP_ECANCELED);
  assert_string_equal(job.reply, "\"cancelled\"");
  status_of(pool, &st);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(rec_count(&rec, PP_TRACE_EXIT), 0);
  pp_status_free(&st);
  close_pool(pool);
}

/* Case 4, cancel ignored: a handler that never looks is killed once
 * cancel_grace passes. */
static void test_dead_mid_request_cancel_ignored(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pp_pool_t *pool;
  pp_task_t *task;
  job_t job = {0};

  (void)state;
  cfg_set(cfg, "on_client_death", "cancel");
  cfg_set(cfg, "worker.cancel_grace", "100ms");
  pool = open_pool(cfg);
  job.payload = "{\"cmd\":\"sleep\",\"args\":60}";
  assert_int_equal(pp_task_spawn(pool, job_fn, &job, &task), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_REQUEST, 1, 10000), 0);
  pp_task_cancel(task);
  assert_int_equal(pp_task_join(task), PP_ECANCELED);
  assert_int_equal(rec_wait(&rec, PP_TRACE_EXIT, 1, 10000), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 2, 10000), 0);
  close_pool(pool);
}

/* A worker that died while idle, before the pool reaped it: pp_call's
 * request cannot reach it and goes to another worker; the caller does not
 * notice. */
static void test_idle_worker_died_unreaped(void **state) {
  pp_pool_t *pool = open_pool(python_config("echo_handlers.py", 2));
  pp_lease_t *lease;
  pp_buf_t reply = {0};
  pp_diag_t d;
  gate_t g;
  int victim;

  (void)state;
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &lease, &d), 0);
  victim = pp_lease_pid(lease);
  pp_checkin(lease); /* LIFO: the victim is picked next */
  gate_init(&g, "reap");
  pp_test_fault_hook(pool, gate_hook, &g);
  kill(victim, SIGKILL);
  gate_wait_paused(&g); /* exited; the pool has not processed it */
  assert_int_equal(pp_call_cmd(pool, "pid", NULL, &reply, -1, &d), 0);
  assert_int_not_equal(atoi(reply.data), victim);
  gate_release(&g);
  assert_int_equal(rec_wait(&rec, PP_TRACE_HELLO, 3, 10000), 0);
  pp_test_fault_hook(pool, NULL, NULL);
  pp_buf_free(&reply);
  close_pool(pool);
  gate_free(&g);
}

/* Quiescence says what is outstanding, then returns once it is not. */
static void test_quiesce(void **state) {
  pp_pool_t *pool = open_pool(python_config("echo_handlers.py", 1));
  pp_lease_t *lease;
  pp_diag_t d;

  (void)state;
  assert_int_equal(pp_pool_quiesce(pool, 1000, &d), 0);
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &lease, &d), 0);
  assert_int_equal(pp_pool_quiesce(pool, 20, &d), PP_ETIMEDOUT);
  assert_non_null(strstr(d.message, "1 leases out"));
  pp_checkin(lease);
  assert_int_equal(pp_pool_quiesce(pool, 1000, &d), 0);
  close_pool(pool);
}

/* A lease whose client was closed while its holder kept it is reclaimed
 * (the worker goes back at once) but stays the holder's, fenced, until
 * checked in: every call on it gets PP_ECANCELED and never reaches the
 * worker, which meanwhile serves its next borrower through another lease
 * object. */
static void test_closed_client_lease_fenced(void **state) {
  pp_pool_t *pool = open_pool(python_config("echo_handlers.py", 1));
  pp_lease_t *stale, *other;
  pp_buf_t reply = {0};
  pp_client_t *c;
  pp_status_t st;
  pp_diag_t d;

  (void)state;
  assert_int_equal(pp_client_open(pool, &c), 0);
  assert_int_equal(pp_lease_acquire(pool, c, -1, &stale, &d), 0);
  pp_client_close(c);
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &other, &d), 0);
  assert_ptr_not_equal(other, stale);
  assert_int_equal(
      pp_lease_call(stale, "{\"cmd\":\"pid\"}", 13, -1, &reply, &d),
      PP_ECANCELED);
  assert_int_equal(
      pp_lease_call(other, "{\"cmd\":\"pid\"}", 13, -1, &reply, &d), 0);
  assert_int_equal(atoi(reply.data), pp_lease_pid(other));
  /* Still out until its holder checks it in. */
  assert_int_equal(pp_pool_quiesce(pool, 0, &d), PP_ETIMEDOUT);
  pp_checkin(other);
  assert_int_equal(pp_pool_quiesce(pool, 0, &d), PP_ETIMEDOUT);
  assert_non_null(strstr(d.message, "1 leases out"));
  pp_checkin(stale);
  status_of(pool, &st);
  assert_int_equal(st.reclaimed_idle, 1);
  assert_int_equal(st.requests, 1);
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  pp_buf_free(&reply);
  close_pool(pool);
}

typedef struct caller {
  pp_lease_t *lease;
  char payload[256];
  int status;
  pp_diag_t diag;
} caller_t;

static void caller_main(void *arg) {
  caller_t *k = arg;
  pp_buf_t reply = {0};

  k->status = pp_lease_call(k->lease, k->payload, strlen(k->payload), -1,
                            &reply, &k->diag);
  pp_buf_free(&reply);
}

/* pp_checkin from another thread while a pp_lease_call runs on the lease:
 * the call ends with PP_ECANCELED, its reply is dropped (on_client_death:
 * finish), and the lease and the worker come back once, intact. */
static void test_checkin_during_call(void **state) {
  pp_pool_t *pool = open_pool(python_config("echo_handlers.py", 1));
  pp_buf_t reply = {0};
  uv_thread_t t;
  pp_status_t st;
  caller_t k;
  char fifo[128];
  pp_diag_t d;

  (void)state;
  memset(&k, 0, sizeof(k));
  fifo_make(fifo, sizeof(fifo), "checkin-during-call");
  snprintf(k.payload, sizeof(k.payload),
           "{\"cmd\":\"gate\",\"args\":{\"fifo\":\"%s\"}}", fifo);
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &k.lease, &d), 0);
  assert_int_equal(uv_thread_create(&t, caller_main, &k), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_REQUEST, 1, 10000), 0);
  pp_checkin(k.lease);
  fifo_release(fifo); /* the handler returns; its reply is nobody's */
  uv_thread_join(&t);
  unlink(fifo);
  assert_int_equal(k.status, PP_ECANCELED);
  assert_non_null(strstr(k.diag.message, "checked in"));
  assert_int_equal(pp_call_cmd(pool, "echo", "\"after\"", &reply, -1, &d), 0);
  assert_string_equal(reply.data, "\"after\"");
  status_of(pool, &st);
  assert_int_equal(st.checkins, 2);
  assert_int_equal(st.stale_replies, 1);
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  pp_buf_free(&reply);
  close_pool(pool);
}

/* A second pp_checkin of one lease is undefined.  Debug builds assert (a
 * child process shows it); others ignore it while the lease object is
 * unused, so the counters stay right and quiescence still comes. */
static void test_double_checkin(void **state) {
  pp_pool_t *pool = open_pool(python_config("echo_handlers.py", 1));
  pp_lease_t *lease;
  pp_status_t st;
  pp_diag_t d;

  (void)state;
  assert_int_equal(pp_lease_acquire(pool, NULL, -1, &lease, &d), 0);
  pp_checkin(lease);
#ifndef NDEBUG
  {
    int wst = 0;
    pid_t pid;

    assert_int_equal(pp_pool_quiesce(pool, 10000, &d), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      pp_checkin(lease); /* the assert ends the child */
      _exit(0);
    }
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFSIGNALED(wst));
    assert_int_equal(WTERMSIG(wst), SIGABRT);
  }
#else
  pp_checkin(lease);
#endif
  status_of(pool, &st);
  assert_int_equal(st.checkouts, 1);
  assert_int_equal(st.checkins, 1);
  assert_int_equal(st.idle, 1);
  pp_status_free(&st);
  assert_int_equal(pp_pool_quiesce(pool, 10000, &d), 0);
  close_pool(pool);
}

typedef struct closer {
  pp_pool_t *pool;
  uv_mutex_t mu;
  uv_cond_t cv;
  int done;
} closer_t;

static void closer_main(void *arg) {
  closer_t *cl = arg;

  pp_pool_close(cl->pool);
  uv_mutex_lock(&cl->mu);
  cl->done = 1;
  uv_cond_signal(&cl->cv);
  uv_mutex_unlock(&cl->mu);
}

/* pp_pool_close with a supervised task's request in flight under
 * on_client_death: finish returns within drain_timeout + kill_grace, not
 * when the handler ends: here the handler would wait forever on a FIFO. */
static void test_close_bounds_task_request(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  char fifo[128], payload[256];
  uint64_t limit;
  pp_task_t *task;
  uv_thread_t t;
  closer_t cl;
  job_t job;
  int r = 0;

  (void)state;
  cfg_set(cfg, "on_client_death", "finish");
  cfg_set(cfg, "worker.drain_timeout", "200ms");
  cfg_set(cfg, "worker.kill_grace", "200ms");
  memset(&job, 0, sizeof(job));
  memset(&cl, 0, sizeof(cl));
  fifo_make(fifo, sizeof(fifo), "close-bounds-task");
  snprintf(payload, sizeof(payload),
           "{\"cmd\":\"gate\",\"args\":{\"fifo\":\"%s\"}}", fifo);
  job.payload = payload;
  cl.pool = open_pool(cfg);
  assert_int_equal(pp_task_spawn(cl.pool, job_fn, &job, &task), 0);
  assert_int_equal(rec_wait(&rec, PP_TRACE_REQUEST, 1, 10000), 0);
  uv_mutex_init(&cl.mu);
  uv_cond_init(&cl.cv);
  assert_int_equal(uv_thread_create(&t, closer_main, &cl), 0);
  /* A failure-only bound, far above drain_timeout + kill_grace. */
  limit = 30000000000ull * (uint64_t)test_time_scale();
  uv_mutex_lock(&cl.mu);
  while (!cl.done && r == 0)
    r = uv_cond_timedwait(&cl.cv, &cl.mu, limit);
  uv_mutex_unlock(&cl.mu);
  if (r != 0)
    fifo_release(fifo); /* let the handler end, so the test can */
  uv_thread_join(&t);
  unlink(fifo);
  uv_cond_destroy(&cl.cv);
  uv_mutex_destroy(&cl.mu);
  rec_free(&rec);
  assert_int_equal(r, 0);
  assert_int_equal(job.acquire_status, 0);
  assert_int_equal(job.call_status, PP_ECANCELED);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dead_while_waiting),
      cmocka_unit_test(test_dead_between_choice_and_handoff),
      cmocka_unit_test(test_dead_client_skipped_at_handoff),
      cmocka_unit_test(test_dead_holding_lease),
      cmocka_unit_test(test_dead_before_reply_delivered),
      cmocka_unit_test(test_dead_mid_request_kill),
      cmocka_unit_test(test_dead_mid_request_cancel),
      cmocka_unit_test(test_dead_mid_request_cancel_ignored),
      cmocka_unit_test(test_idle_worker_died_unreaped),
      cmocka_unit_test(test_quiesce),
      cmocka_unit_test(test_closed_client_lease_fenced),
      cmocka_unit_test(test_checkin_during_call),
      cmocka_unit_test(test_double_checkin),
      cmocka_unit_test(test_close_bounds_task_request),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
