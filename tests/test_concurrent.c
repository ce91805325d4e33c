/* test_concurrent.c -- the concurrent-checkout suite: CLIENTS driver
 * threads, each running ROUNDS short-lived tasks against POOL_SIZE real
 * Python workers.  A task checks out, calls, checks in; at random its
 * client dies before checkout, while waiting, holding a lease, or with a
 * request in flight.  At the end, after quiescence: every worker idle, no
 * lease, no waiter, granted = returned + reclaimed, no restart, and no task
 * ever received a reply that was not its own.
 *
 * POOL_SIZE, CLIENTS, ROUNDS, SEED and ADAPTER (python or mock) come from
 * the environment; the seed is printed so a failure replays.  Unset sizes
 * fall back to PP_DEFAULT_POOL_SIZE, PP_DEFAULT_CLIENTS and
 * PP_DEFAULT_ROUNDS (what the ctest entries set, so that a caller's
 * POOL_SIZE=16 CLIENTS=400 ctest -R concurrent wins), then 4, 5 and 20.
 * The interpreter and paths default to this build's (helpers.c). */
#include "helpers.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { DIE_NONE, DIE_BEFORE, DIE_WAITING, DIE_HOLDING, DIE_MID, DIE_KINDS };

typedef struct job {
  int kind;
  int client, round;
  int wrong_reply; /* set if a reply was not this task's own */
  int status;
} job_t;

typedef struct driver {
  pp_pool_t *pool;
  int id, rounds;
  uint64_t rng;
  int wrong;
  int done_ok, cancelled;
} driver_t;

static uint64_t next_rand(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* A few microseconds of busy work: moves the moment of death around the
 * race windows without synchronising on time. */
static void spin(uint64_t *rng) {
  volatile uint64_t x = 0;
  uint64_t n = next_rand(rng) % 20000, i;
  for (i = 0; i < n; i++)
    x += i;
}

static void job_fn(pp_task_t *task, pp_client_t *client, void *data) {
  job_t *job = data;
  pp_pool_t *pool = pp_client_pool(client);
  pp_buf_t reply = {0};
  pp_lease_t *lease;
  char payload[128], want[64];
  pp_diag_t d;
  int r;

  (void)task;
  r = pp_lease_acquire(pool, client, 30000, &lease, &d);
  job->status = r;
  if (r != 0)
    return;
  if (job->kind == DIE_HOLDING)
    return; /* dies holding it: the client's death must check it in */
  if (job->kind == DIE_MID)
    snprintf(payload, sizeof(payload), "{\"cmd\":\"sleep\",\"args\":0.00%d}",
             job->round % 5 + 1);
  else
    snprintf(payload, sizeof(payload), "{\"cmd\":\"echo\",\"args\":[%d,%d]}",
             job->client, job->round);
  r = pp_lease_call(lease, payload, strlen(payload), -1, &reply, &d);
  job->status = r;
  if (r == 0) {
    if (job->kind == DIE_MID)
      snprintf(want, sizeof(want), "0.00%d", job->round % 5 + 1);
    else
      snprintf(want, sizeof(want), "[%d,%d]", job->client, job->round);
    if (strcmp(reply.data, want) != 0) {
      fprintf(stderr, "client %d round %d: got %s, want %s\n", job->client,
              job->round, reply.data, want);
      job->wrong_reply = 1;
    }
  }
  pp_buf_free(&reply);
  if (r == 0 || r == PP_EHANDLER)
    pp_checkin(lease);
  /* After PP_ECANCELED the lease was reclaimed with the client. */
}

static void driver_main(void *arg) {
  driver_t *dr = arg;
  pp_task_t *task;
  job_t job;
  int i, r;

  for (i = 0; i < dr->rounds; i++) {
    memset(&job, 0, sizeof(job));
    job.kind = (int)(next_rand(&dr->rng) % DIE_KINDS);
    job.client = dr->id;
    job.round = i;
    r = pp_task_spawn(dr->pool, job_fn, &job, &task);
    assert_int_equal(r, 0);
    if (job.kind == DIE_BEFORE) {
      pp_task_cancel(task);
    } else if (job.kind == DIE_WAITING || job.kind == DIE_MID) {
      spin(&dr->rng);
      pp_task_cancel(task);
    }
    r = pp_task_join(task);
    if (r == PP_ECANCELED)
      dr->cancelled++;
    if (job.wrong_reply)
      dr->wrong++;
    if (job.status == 0)
      dr->done_ok++;
    /* Only a client's own death may fail its work here. */
    if (job.status != 0 && job.status != PP_ECANCELED)
      fail_msg("client %d round %d kind %d: %s", dr->id, i, job.kind,
               pp_strerror(job.status));
  }
}

static void test_concurrent_checkouts(void **state) {
  int size = env_int("POOL_SIZE", env_int("PP_DEFAULT_POOL_SIZE", 4));
  int clients = env_int("CLIENTS", env_int("PP_DEFAULT_CLIENTS", 5));
  int rounds = env_int("ROUNDS", env_int("PP_DEFAULT_ROUNDS", 20));
  int i, ok = 0, cancelled = 0;
  uint64_t seed = (uint64_t)env_int("SEED", 0);
  const char *adapter = getenv("ADAPTER") ? getenv("ADAPTER") : "python";
  pp_config_t *cfg = python_config("echo_handlers.py", size);
  driver_t *dr = calloc((size_t)clients, sizeof(*dr));
  uv_thread_t *t = calloc((size_t)clients, sizeof(*t));
  pp_pool_options_t o;
  pp_status_t st;
  pp_pool_t *pool;
  pp_diag_t d;
  rec_t rec;

  (void)state;
  if (seed == 0)
    seed = (uint64_t)time(NULL);
  if (size < 1 || clients < 1 || rounds < 1)
    fail_msg("POOL_SIZE=%d CLIENTS=%d ROUNDS=%d: each must be at least 1", size,
             clients, rounds);
  fprintf(stderr,
          "ADAPTER=%s POOL_SIZE=%d CLIENTS=%d ROUNDS=%d SEED=%" PRIu64 "\n",
          adapter, size, clients, rounds, seed);
  /* Same suite, same checks, either adapter: the mock runs the same
   * echo and sleep behaviours in-process. */
  cfg_set(cfg, "adapter", adapter);
  char waiters[32];
  snprintf(waiters, sizeof(waiters), "%d", clients + 16);
  cfg_set(cfg, "checkout.max_waiters", waiters);
  cfg_set(cfg, "checkout.timeout", "60s");
  rec_init(&rec);
  o = rec_options(NULL);
  assert_int_equal(pp_pool_open(cfg, &o, &pool, &d), 0);
  pp_config_free(cfg);
  for (i = 0; i < clients; i++) {
    dr[i].pool = pool;
    dr[i].id = i;
    dr[i].rounds = rounds;
    dr[i].rng = seed * 2654435761u + (uint64_t)i * 40503u + 1;
    assert_int_equal(uv_thread_create(&t[i], driver_main, &dr[i]), 0);
  }
  for (i = 0; i < clients; i++) {
    uv_thread_join(&t[i]);
    assert_int_equal(dr[i].wrong, 0);
    ok += dr[i].done_ok;
    cancelled += dr[i].cancelled;
  }
  if (pp_pool_quiesce(pool, 60000, &d) != 0)
    fail_msg("not quiet after the run: %s", d.message);
  assert_int_equal(pp_pool_status(pool, &st), 0);
  fprintf(stderr,
          "tasks %d: ok %d, cancelled %d; checkouts %" PRIu64
          " = checkins %" PRIu64 " + reclaimed %" PRIu64
          " (undelivered %" PRIu64 ", idle %" PRIu64 ", in flight %" PRIu64
          "); withdrawn %" PRIu64 ", stale %" PRIu64 "\n",
          clients * rounds, ok, cancelled, st.checkouts, st.checkins,
          st.reclaimed, st.reclaimed_undelivered, st.reclaimed_idle,
          st.reclaimed_busy, st.withdrawn, st.stale_replies);
  assert_int_equal(st.idle, size);
  assert_int_equal(st.leased + st.busy, 0);
  assert_int_equal(st.waiters, 0);
  assert_int_equal(st.checkouts, st.checkins + st.reclaimed);
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  pp_pool_close(pool);
  rec_free(&rec);
  free(dr);
  free(t);
  printf("test_concurrent: %s pool %d, clients %d, rounds %d: passed\n",
         adapter, size, clients, rounds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_concurrent_checkouts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
