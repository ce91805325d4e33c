/* test_hostile_lifecycle.c -- a worker's life: the heartbeat catches a
 * stopped worker and a stray reply and spares healthy ones; recycling by
 * max_requests, max_rss and max_age keeps capacity; status shows
 * next_retry_ms and a tail of each slot's stderr. */
#include "hostile.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ============================================ lifecycle (heartbeat, ...) */

/* A worker that stops answering while idle (SIGSTOP) misses its PINGs and
 * is killed and replaced; the other slot is not disturbed. */
static void test_heartbeat_stopped_worker(void **state) {
  pp_config_t *cfg = hostile_config(2);
  pp_status_t st;
  hpool_t *h;
  int pid;

  (void)state;
  cfg_set(cfg, "worker.heartbeat", "100ms");
  cfg_set(cfg, "worker.heartbeat_misses", "2");
  cfg_set(cfg, "worker.kill_grace", "300ms");
  h = h_open(cfg);
  h_status(h, &st);
  pid = st.workers[0].pid;
  pp_status_free(&st);
  assert_true(pid > 0);
  assert_int_equal(kill(pid, SIGSTOP), 0);
  h_wait(h, PP_TRACE_HEARTBEAT_MISS, 0, 1, WAIT_MS);
  h_wait(h, PP_TRACE_EXIT, 0, 1, WAIT_MS);
  h_wait(h, PP_TRACE_HELLO, 0, 2, WAIT_MS);
  assert_int_equal(gone_within(pid, WAIT_MS), 0);
  assert_int_equal(h_count(h, PP_TRACE_HEARTBEAT_MISS, 1), 0);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, 1), 0);
  h_status(h, &st);
  assert_int_equal(st.workers[0].generation, 2);
  assert_int_not_equal(st.workers[0].last_exit, PP_EXIT_NONE);
  assert_int_equal(st.workers[1].generation, 1);
  pp_status_free(&st);
  all_slots_serve(h, 2);
  h_close(h);
}

/* A reply that arrives while the worker is idle is caught by the
 * heartbeat, before any client is handed that worker. */
static void test_heartbeat_catches_stray_reply(void **state) {
  pp_config_t *cfg = bad_config("per_request", 1);
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_diag_t d;
  hpool_t *h;

  (void)state;
  cfg_set(cfg, "worker.heartbeat", "100ms");
  h = h_open(cfg);
  assert_int_equal(pp_call_cmd(h->pool, "stray_reply", NULL, &reply, -1, &d),
                   0);
  h_wait(h, PP_TRACE_PROTOCOL_ERROR, 0, 1, WAIT_MS);
  h_wait(h, PP_TRACE_HELLO, 0, 2, WAIT_MS);
  h_status(h, &st);
  assert_int_equal(st.workers[0].last_exit, PP_EXIT_PROTOCOL);
  pp_status_free(&st);
  assert_int_equal(pp_call_cmd(h->pool, "echo", "1", &reply, -1, &d), 0);
  assert_string_equal(reply.data, "1");
  pp_buf_free(&reply);
  h_close(h);
}

/* A quick heartbeat leaves healthy workers alone, busy ones included:
 * one worker runs a request 10 heartbeats long, the other idles. */
static void test_heartbeat_spares_healthy(void **state) {
  pp_config_t *cfg = hostile_config(2);
  pp_buf_t reply = {0};
  pp_diag_t d;
  hpool_t *h;

  (void)state;
  cfg_set(cfg, "worker.heartbeat", "50ms");
  cfg_set(cfg, "worker.heartbeat_misses", "2");
  h = h_open(cfg);
  assert_int_equal(pp_call_cmd(h->pool, "sleep", "0.5", &reply, -1, &d), 0);
  all_slots_serve(h, 2);
  assert_int_equal(h_count(h, PP_TRACE_HEARTBEAT_MISS, -1), 0);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, -1), 0);
  pp_buf_free(&reply);
  h_close(h);
}

/* max_requests: once the worker has served its (jittered) limit it is
 * retired; it keeps serving until its replacement said HELLO, so no call
 * fails or waits, and it is a recycle, not a crash. */
static void test_recycle_max_requests(void **state) {
  pp_config_t *cfg = hostile_config(1);
  int64_t deadline = cli_now_ms() + WAIT_MS;
  pp_buf_t reply = {0};
  int first, served = 0, limit;
  pp_status_t st;
  pp_diag_t d;
  hpool_t *h;

  (void)state;
  cfg_set(cfg, "worker.max_requests", "10");
  h = h_open(cfg);
  h_status(h, &st);
  limit = (int)st.workers[0].max_requests;
  pp_status_free(&st);
  if (limit < 10 || limit > 20)
    fail_msg("status max_requests %d for a limit of 10", limit);
  assert_int_equal(pp_call_cmd(h->pool, "pid", NULL, &reply, -1, &d), 0);
  first = atoi(reply.data);
  served = 1;
  /* Each reply is the observation; bounded by the deadline. */
  for (;;) {
    assert_int_equal(pp_call_cmd(h->pool, "pid", NULL, &reply, 10000, &d), 0);
    if (atoi(reply.data) != first)
      break;
    served++;
    if (cli_now_ms() > deadline)
      fail_msg("still the first worker after %d requests (limit %d)", served,
               limit);
  }
  if (served < limit)
    fail_msg("replaced after %d requests; its limit was %d", served, limit);
  assert_int_equal(h_count(h, PP_TRACE_RECYCLE, 0), 1);
  assert_int_equal(gone_within(first, WAIT_MS), 0);
  h_status(h, &st);
  assert_int_equal(st.recycles, 1);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(st.workers[0].restarts, 0);
  pp_status_free(&st);
  pp_buf_free(&reply);
  h_close(h);
}

/* The limits are jittered, so workers do not all recycle together. */
static void test_recycle_jitter(void **state) {
  pp_config_t *cfg = hostile_config(4);
  pp_status_t st;
  hpool_t *h;
  int i, differ = 0;

  (void)state;
  cfg_set(cfg, "worker.max_requests", "1000");
  h = h_open(cfg);
  h_status(h, &st);
  for (i = 0; i < 4; i++) {
    assert_true(st.workers[i].max_requests > 0);
    assert_true(st.workers[i].max_requests <= 2000);
    differ |= st.workers[i].max_requests != st.workers[0].max_requests;
  }
  assert_true(differ);
  pp_status_free(&st);
  h_close(h);
}

/* max_rss: a worker that grew past it is replaced once idle. */
static void test_recycle_max_rss(void **state) {
  pp_config_t *cfg = hostile_config(1);
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_diag_t d;
  hpool_t *h;
  int first;

  (void)state;
  cfg_set(cfg, "worker.max_rss", "100MiB");
  h = h_open(cfg);
  assert_int_equal(pp_call_cmd(h->pool, "pid", NULL, &reply, -1, &d), 0);
  first = atoi(reply.data);
  assert_int_equal(pp_call_cmd(h->pool, "grow", "150", &reply, -1, &d), 0);
  h_wait(h, PP_TRACE_RECYCLE, 0, 1, WAIT_MS);
  h_wait(h, PP_TRACE_HELLO, 0, 2, WAIT_MS);
  assert_int_equal(pp_call_cmd(h->pool, "pid", NULL, &reply, 10000, &d), 0);
  assert_int_not_equal(atoi(reply.data), first);
  h_status(h, &st);
  assert_true(st.recycles >= 1);
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  pp_buf_free(&reply);
  h_close(h);
}

typedef struct hammer {
  hpool_t *h;
  pp_pool_t *pool;
  uv_thread_t thread;
  atomic_int stop;
  int calls, failed, first_err;
} hammer_t;

static void hammer_main(void *arg) {
  hammer_t *m = arg;
  pp_buf_t reply = {0};
  pp_diag_t d;
  int r;

  /* Calls all along, but a few hundred a second, not a tight loop that
   * would starve the replacements' start-up on a loaded host. */
  while (!atomic_load(&m->stop)) {
    uv_mutex_lock(&m->h->mu);
    uv_cond_timedwait(&m->h->cv, &m->h->mu, 2000000ull);
    uv_mutex_unlock(&m->h->mu);
    r = pp_call_cmd(m->pool, "echo", "1", &reply, 10000, &d);
    m->calls++;
    if (r != 0 && m->failed++ == 0)
      m->first_err = r;
  }
  pp_buf_free(&reply);
}

/* max_age with max_recycling 1: workers are replaced one at a time, the
 * replacement started first, so at least size - 1 serve at every moment,
 * and a client calling all along never fails. */
static void test_recycle_max_age_capacity(void **state) {
  pp_config_t *cfg = hostile_config(4);
  int64_t deadline = cli_now_ms() + WAIT_MS;
  int i, serving, least = 4;
  pp_status_t st;
  hammer_t m;
  hpool_t *h;

  (void)state;
  cfg_set(cfg, "worker.max_age", "300ms");
  cfg_set(cfg, "worker.max_recycling", "1");
  h = h_open(cfg);
  memset(&m, 0, sizeof(m));
  m.h = h;
  m.pool = h->pool;
  atomic_init(&m.stop, 0);
  assert_int_equal(uv_thread_create(&m.thread, hammer_main, &m), 0);
  /* Each status snapshot is the observation; bounded by the deadline. */
  while (h_count(h, PP_TRACE_RECYCLE, -1) < 6 && cli_now_ms() < deadline) {
    h_status(h, &st);
    /* A retiring worker still serves until its replacement takes over. */
    for (serving = 0, i = 0; i < st.nworkers; i++)
      if (st.workers[i].state == PP_WORKER_IDLE ||
          st.workers[i].state == PP_WORKER_LEASED ||
          st.workers[i].state == PP_WORKER_BUSY)
        serving++;
    if (serving < least)
      least = serving;
    pp_status_free(&st);
  }
  atomic_store(&m.stop, 1);
  uv_thread_join(&m.thread);
  assert_true(h_count(h, PP_TRACE_RECYCLE, -1) >= 6);
  if (least < 3)
    fail_msg("only %d of 4 workers served at one moment (max_recycling 1)",
             least);
  if (m.failed)
    fail_msg("%d of %d calls failed during recycling; first %s", m.failed,
             m.calls, pp_err_name(m.first_err));
  h_close(h);
}

/* A slot in backoff shows when it will retry. */
static void test_status_next_retry(void **state) {
  pp_config_t *cfg = one_bad_slot("exit_before_hello", 2);
  pp_status_t st;
  hpool_t *h;
  char *json;

  (void)state;
  cfg_set(cfg, "restart.backoff", "[2s, 2s]");
  cfg_set(cfg, "restart.max_restarts", "5");
  h = h_open(cfg);
  h_wait(h, PP_TRACE_RESTART, 0, 1, WAIT_MS);
  h_status(h, &st);
  assert_int_equal(st.workers[0].state, PP_WORKER_BACKOFF);
  if (st.workers[0].next_retry_ms == 0 || st.workers[0].next_retry_ms > 2500)
    fail_msg("next_retry_ms %llu, want 0 < it <= 2500",
             (unsigned long long)st.workers[0].next_retry_ms);
  assert_int_equal(st.workers[1].next_retry_ms, 0);
  json = pp_status_to_json(&st);
  assert_non_null(strstr(json, "\"next_retry_ms\""));
  free(json);
  pp_status_free(&st);
  h_close(h);
}

/* Status keeps the last 20 lines of each slot's stderr, oldest first,
 * also after the worker died (what it said before dying).  The snapshot's
 * texts are its own: they outlive the pool. */
static void test_status_stderr_tail(void **state) {
  pp_config_t *cfg = one_bad_slot("exit_before_hello", 2);
  pp_buf_t reply = {0};
  pp_lease_t *lease;
  pp_status_t st;
  pp_diag_t d;
  hpool_t *h;
  char *json;
  int i, slot;

  (void)state;
  cfg_set(cfg, "restart.max_restarts", "0");
  h = h_open(cfg);
  h_wait(h, PP_TRACE_FATAL, 0, 1, WAIT_MS);
  h_status(h, &st);
  assert_true(st.workers[0].stderr_lines >= 1);
  assert_non_null(
      strstr(st.workers[0].stderr_tail[st.workers[0].stderr_lines - 1],
             "exit_before_hello"));
  json = pp_status_to_json(&st);
  assert_non_null(strstr(json, "\"stderr_tail\""));
  assert_non_null(strstr(json, "exit_before_hello"));
  /* The other slot wrote nothing: no lines, and no slow stack (""). */
  assert_int_equal(st.workers[1].stderr_lines, 0);
  assert_null(st.workers[1].stderr_tail[0]);
  assert_non_null(st.workers[1].last_slow_stack);
  assert_string_equal(st.workers[1].last_slow_stack, "");
  free(json);
  pp_status_free(&st);
  h_close(h);

  /* 30 lines from a live worker: the last 20 are kept. */
  h = h_open(hostile_config(1));
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &lease, &d), 0);
  slot = pp_lease_slot(lease);
  assert_int_equal(lcall(lease, "lines", "30", -1, &reply, &d), 0);
  pp_checkin(lease);
  h_wait_stderr(h, slot, "line 29", WAIT_MS);
  h_status(h, &st);
  pp_buf_free(&reply);
  h_close(h);
  assert_int_equal(st.workers[slot].stderr_lines, PP_STDERR_TAIL_LINES);
  for (i = 0; i < PP_STDERR_TAIL_LINES; i++) {
    char want[32];
    snprintf(want, sizeof(want), "line %d", 30 - PP_STDERR_TAIL_LINES + i);
    assert_string_equal(st.workers[slot].stderr_tail[i], want);
  }
  pp_status_free(&st);
}

/* ================================================================= main */

/* argv[1], when given, is a cmocka test filter (a name or a pattern). */
int main(int argc, char **argv) {
  const struct CMUnitTest lifecycle[] = {
      cmocka_unit_test_teardown(test_heartbeat_stopped_worker,
                                hostile_teardown),
      cmocka_unit_test_teardown(test_heartbeat_catches_stray_reply,
                                hostile_teardown),
      cmocka_unit_test_teardown(test_heartbeat_spares_healthy,
                                hostile_teardown),
      cmocka_unit_test_teardown(test_recycle_max_requests, hostile_teardown),
      cmocka_unit_test_teardown(test_recycle_jitter, hostile_teardown),
      cmocka_unit_test_teardown(test_recycle_max_rss, hostile_teardown),
      cmocka_unit_test_teardown(test_recycle_max_age_capacity,
                                hostile_teardown),
      cmocka_unit_test_teardown(test_status_next_retry, hostile_teardown),
      cmocka_unit_test_teardown(test_status_stderr_tail, hostile_teardown),
  };

  signal(SIGPIPE, SIG_IGN);
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests_name("lifecycle", lifecycle, NULL, NULL);
}
