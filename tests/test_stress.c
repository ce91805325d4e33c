/* test_stress.c -- the dead-client races, 500 times over, with seeded
 * random delays injected at every fault point of the core (hand-off,
 * delivery, client death, reply, reap).  Each round: a lease is held, two
 * tasks queue behind it, the lease is checked in, and the first task dies
 * at a random moment around the hand-off while the second calls.  After
 * every round the pool must be quiet, the surviving task must have got its
 * own reply, and granted = returned + reclaimed.  On failure the seed is
 * printed; STRESS_SEED=N replays it, STRESS_ROUNDS=N sets the count. */
#include "helpers.h"

#include "faults.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t seed;

typedef struct chaos {
  uv_mutex_t mu;
  uint64_t rng;
} chaos_t;

static uint64_t chaos_next(chaos_t *c) {
  uint64_t x;
  uv_mutex_lock(&c->mu);
  c->rng ^= c->rng << 13;
  c->rng ^= c->rng >> 7;
  c->rng ^= c->rng << 17;
  x = c->rng;
  uv_mutex_unlock(&c->mu);
  return x;
}

/* Busy work of a random length: widens whichever window we are in. */
static void chaos_delay(chaos_t *c) {
  volatile uint64_t x = 0;
  uint64_t n = chaos_next(c) % 50000, i;
  for (i = 0; i < n; i++)
    x += i;
}

static void chaos_hook(pp_pool_t *pool, const char *point, void *data) {
  (void)pool;
  (void)point;
  chaos_delay(data);
}

typedef struct job {
  int id;
  int status;
  int wrong;
} job_t;

static void job_fn(pp_task_t *task, pp_client_t *client, void *data) {
  job_t *job = data;
  pp_lease_t *lease;
  pp_buf_t reply = {0};
  char payload[64], want[32];
  pp_diag_t d;

  (void)task;
  job->status =
      pp_lease_acquire(pp_client_pool(client), client, 30000, &lease, &d);
  if (job->status != 0)
    return;
  snprintf(payload, sizeof(payload), "{\"cmd\":\"echo\",\"args\":%d}", job->id);
  snprintf(want, sizeof(want), "%d", job->id);
  job->status = pp_lease_call(lease, payload, strlen(payload), -1, &reply, &d);
  if (job->status == 0 && strcmp(reply.data, want) != 0)
    job->wrong = 1;
  pp_buf_free(&reply);
  if (job->status == 0)
    pp_checkin(lease);
}

static void test_stress_dead_clients(void **state) {
  int rounds = env_int("STRESS_ROUNDS", 500), i;
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pp_pool_options_t o = rec_options(NULL);
  pp_task_t *first, *second;
  job_t j1, j2;
  pp_lease_t *held;
  pp_status_t st;
  pp_pool_t *pool;
  chaos_t chaos;
  pp_diag_t d;

  (void)state;
  seed = (uint64_t)env_int("STRESS_SEED", 0);
  if (seed == 0)
    seed = (uint64_t)time(NULL);
  fprintf(stderr, "STRESS_SEED=%" PRIu64 " STRESS_ROUNDS=%d\n", seed, rounds);
  uv_mutex_init(&chaos.mu);
  chaos.rng = seed * 0x9e3779b97f4a7c15ull + 1;
  assert_int_equal(pp_pool_open(cfg, &o, &pool, &d), 0);
  pp_config_free(cfg);
  pp_test_fault_hook(pool, chaos_hook, &chaos);
  for (i = 0; i < rounds; i++) {
    memset(&j1, 0, sizeof(j1));
    memset(&j2, 0, sizeof(j2));
    j1.id = 2 * i;
    j2.id = 2 * i + 1;
    assert_int_equal(pp_lease_acquire(pool, NULL, 30000, &held, &d), 0);
    assert_int_equal(pp_task_spawn(pool, job_fn, &j1, &first), 0);
    assert_int_equal(pp_task_spawn(pool, job_fn, &j2, &second), 0);
    chaos_delay(&chaos);
    pp_checkin(held);
    chaos_delay(&chaos);
    pp_task_cancel(first);
    pp_task_join(first);
    pp_task_join(second);
    if (j1.wrong || j2.wrong)
      fail_msg("round %d: a task got a reply not its own (STRESS_SEED=%" PRIu64
               ")",
               i, seed);
    if (j2.status != 0)
      fail_msg("round %d: the live task failed: %s (STRESS_SEED=%" PRIu64 ")",
               i, pp_strerror(j2.status), seed);
    if (j1.status != 0 && j1.status != PP_ECANCELED)
      fail_msg("round %d: the dying task failed with %s (STRESS_SEED=%" PRIu64
               ")",
               i, pp_strerror(j1.status), seed);
    if (pp_pool_quiesce(pool, 30000, &d) != 0)
      fail_msg("round %d: %s (STRESS_SEED=%" PRIu64 ")", i, d.message, seed);
  }
  assert_int_equal(pp_pool_status(pool, &st), 0);
  fprintf(stderr,
          "checkouts %" PRIu64 " = checkins %" PRIu64 " + reclaimed %" PRIu64
          " (undelivered %" PRIu64 ", idle %" PRIu64 ", in flight %" PRIu64
          "), withdrawn %" PRIu64 "\n",
          st.checkouts, st.checkins, st.reclaimed, st.reclaimed_undelivered,
          st.reclaimed_idle, st.reclaimed_busy, st.withdrawn);
  if (st.checkouts != st.checkins + st.reclaimed || st.restarts != 0 ||
      st.idle != 1)
    fail_msg("invariants broken (STRESS_SEED=%" PRIu64 ")", seed);
  pp_status_free(&st);
  pp_test_fault_hook(pool, NULL, NULL);
  pp_pool_close(pool);
  uv_mutex_destroy(&chaos.mu);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stress_dead_clients),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
