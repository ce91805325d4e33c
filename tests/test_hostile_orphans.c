/* test_hostile_orphans.c -- nothing survives the pool: SIGKILL of `poolctl
 * serve` leaves no worker and no grandchild alive, nor does a graceful
 * close, a worker killed for a timeout or a worker that crashed. */
#include "hostile.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* Poll status until `busy` workers are busy (each reply is the event; the
 * number of tries is bounded). */
static void conn_wait_busy(cli_conn_t *c, int busy) {
  json_t *st;
  int tries, n;

  for (tries = 0; tries < 100000; tries++) {
    st = cli_conn_status(c);
    n = (int)json_integer_value(json_object_get(st, "busy"));
    json_decref(st);
    if (n == busy)
      return;
  }
  fail_msg("status never showed %d busy", busy);
}

/* Wait for every pid to be gone, all within one deadline of ms (times
 * PP_TEST_TIME_SCALE: a guard, not a promise; pdeathsig acts at once, but
 * a worker's handler may wait for CPU beside other suites under ASan). */
static void all_gone_within(const int *pids, const char *const *what, int n,
                            int ms) {
  int64_t deadline;

  ms *= test_time_scale();
  deadline = cli_now_ms() + ms;
  int i, bad = -1;

  for (i = 0; i < n; i++)
    if (pids[i] > 0 && gone_within(pids[i], cli_remaining(deadline)) != 0 &&
        bad < 0)
      bad = i;
  if (bad >= 0) {
    for (i = 0; i < n; i++)
      if (pids[i] > 0)
        kill(pids[i], SIGKILL);
    fail_msg("%s (pid %d) still alive %d ms after the pool died", what[bad],
             pids[bad], ms);
  }
}

/* SIGKILL of `poolctl serve` leaves no worker and no grandchild alive
 * within 2 s: workers idle and busy, and the subprocesses their handlers
 * started (an interpreter, /bin/sleep, a forked child). */
static void test_serve_sigkill_no_survivors(void **state) {
  const char *what[] = {
      "worker",           "worker",       "python subprocess",
      "sleep subprocess", "forked child", "busy worker's subprocess"};
  int pids[6] = {0};
  cli_conn_t *c, *busy;
  static serve_t s; /* the teardown may need it after a failure */

  (void)state;
  serve_start(&s, "hostile_handlers.py", NULL, NULL);
  serve_wait_line(&s, "ready: ");
  c = cli_conn_open(s.sock);
  pids[2] = (int)conn_call_int(c, "spawn_child", "\"python\"");
  pids[3] = (int)conn_call_int(c, "spawn_child", "\"sleep\"");
  pids[4] = (int)conn_call_int(c, "spawn_child", "\"fork\"");
  /* The hot worker takes a long call; the other one spawns a child. */
  busy = cli_conn_open(s.sock);
  cli_conn_send(busy, "{\"op\":\"call\",\"payload\":{\"cmd\":\"sleep\","
                      "\"args\":30}}\n");
  conn_wait_busy(c, 1);
  pids[5] = (int)conn_call_int(c, "spawn_child", "\"python\"");
  assert_int_equal(conn_worker_pids(c, pids, 2), 2);
  assert_true(pids[0] > 0 && pids[1] > 0);
  assert_int_equal(kill(s.srv.pid, SIGKILL), 0);
  assert_int_equal(cli_wait_exit(s.srv.pid), -SIGKILL);
  s.srv.pid = 0;
  all_gone_within(pids, what, 6, 10000);
  assert_null(cli_conn_recv(busy));
  cli_conn_close(busy);
  cli_conn_close(c);
  serve_cleanup(&s);
}

/* The same while the workers are still importing their handlers (no HELLO
 * yet). */
static void test_serve_sigkill_while_starting(void **state) {
  const char *what[] = {"starting worker", "starting worker"};
  int pids[2] = {0};
  cli_conn_t *c;
  static serve_t s; /* the teardown may need it after a failure */

  (void)state;
  /* A zygote forks no worker before its import is done: nothing to see. */
  if (getenv("PP_START") && strcmp(getenv("PP_START"), "zygote") == 0)
    skip();
  serve_start(&s, "slow_start.py", "worker.env={PP_SLOW_START: '30'}",
              "worker.startup_timeout=1m");
  serve_wait_line(&s, "warming 0/2");
  c = cli_conn_open(s.sock);
  assert_int_equal(conn_worker_pids(c, pids, 2), 2);
  assert_true(pids[0] > 0 && pids[1] > 0);
  assert_int_equal(kill(s.srv.pid, SIGKILL), 0);
  cli_wait_exit(s.srv.pid);
  s.srv.pid = 0;
  all_gone_within(pids, what, 2, 10000);
  cli_conn_close(c);
  serve_cleanup(&s);
}

/* The worker behind lease starts a subprocess of kind (a JSON string:
 * "python", "sleep", "fork"); its pid. */
static int lease_spawn_child(pp_lease_t *lease, const char *kind,
                             pp_buf_t *reply, pp_diag_t *d) {
  assert_int_equal(lcall(lease, "spawn_child", kind, -1, reply, d), 0);
  return atoi(reply->data);
}

/* A pool of one hostile worker, leased, whose worker started a python
 * subprocess. */
typedef struct leased_child {
  hpool_t *h;
  pp_lease_t *lease;
  pp_buf_t reply;
  pp_diag_t d;
  int child; /* the subprocess */
} leased_child_t;

static void leased_child_open(leased_child_t *t) {
  memset(t, 0, sizeof(*t));
  t->h = h_open(hostile_config(1));
  assert_int_equal(
      pp_lease_acquire(t->h->pool, NULL, WAIT_MS, &t->lease, &t->d), 0);
  t->child = lease_spawn_child(t->lease, "\"python\"", &t->reply, &t->d);
}

/* A graceful close takes the handlers' subprocesses with the workers. */
static void test_close_kills_grandchildren(void **state) {
  const char *what[] = {"python subprocess", "sleep subprocess", "forked child",
                        "other worker's subprocess"};
  hpool_t *h = h_open(hostile_config(2));
  pp_buf_t reply = {0};
  pp_lease_t *a, *b;
  int pids[4];
  pp_diag_t d;

  (void)state;
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &a, &d), 0);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &b, &d), 0);
  pids[0] = lease_spawn_child(a, "\"python\"", &reply, &d);
  pids[1] = lease_spawn_child(a, "\"sleep\"", &reply, &d);
  pids[2] = lease_spawn_child(a, "\"fork\"", &reply, &d);
  pids[3] = lease_spawn_child(b, "\"python\"", &reply, &d);
  pp_checkin(a);
  pp_checkin(b);
  h_close(h);
  pp_buf_free(&reply);
  all_gone_within(pids, what, 4, 10000);
}

/* A worker killed for a timeout takes its subprocess with it (the group
 * is signalled), before the pool closes. */
static void test_timeout_kills_grandchild(void **state) {
  leased_child_t t;

  (void)state;
  leased_child_open(&t);
  assert_int_equal(lcall(t.lease, "sleep", "30", 200, &t.reply, &t.d),
                   PP_ETIMEDOUT);
  pp_checkin(t.lease);
  h_wait(t.h, PP_TRACE_EXIT, 0, 1, WAIT_MS);
  assert_gone(t.child, 2000, "subprocess of a worker killed for a timeout");
  pp_buf_free(&t.reply);
  h_close(t.h);
}

/* A worker that crashes on its own (os._exit) while its subprocess runs:
 * nothing signalled that group, yet no interpreter may outlive the pool. */
static void test_crashed_worker_grandchild(void **state) {
  leased_child_t t;

  (void)state;
  leased_child_open(&t);
  assert_int_equal(lcall(t.lease, "crash", "3", -1, &t.reply, &t.d),
                   PP_ECRASHED);
  pp_checkin(t.lease);
  h_wait(t.h, PP_TRACE_HELLO, 0, 2, WAIT_MS);
  h_close(t.h);
  pp_buf_free(&t.reply);
  assert_gone(t.child, 2000, "subprocess of a crashed worker");
}

/* ================================================================= main */

/* argv[1], when given, is a cmocka test filter (a name or a pattern). */
int main(int argc, char **argv) {
  const struct CMUnitTest orphans[] = {
      cmocka_unit_test_teardown(test_serve_sigkill_no_survivors,
                                hostile_teardown),
      cmocka_unit_test_teardown(test_serve_sigkill_while_starting,
                                hostile_teardown),
      cmocka_unit_test_teardown(test_close_kills_grandchildren,
                                hostile_teardown),
      cmocka_unit_test_teardown(test_timeout_kills_grandchild,
                                hostile_teardown),
      cmocka_unit_test_teardown(test_crashed_worker_grandchild,
                                hostile_teardown),
  };

  signal(SIGPIPE, SIG_IGN);
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests_name("orphans", orphans, NULL, NULL);
}
