/* test_pipeline.c -- pipelined pp_call (worker.pipeline_depth > 1) against
 * real Python workers: every reply reaches its own caller; a crash or a
 * timeout fails exactly the calls queued on that worker; a call waiting
 * for a place gets the worker a lease gives back; a waiting lease is not
 * starved by pipelined load; drain fails the waiting calls; big replies
 * behind a full request pipe do not wedge the worker.  Each step waits on a
 * trace event, a reply or a FIFO the handler opens, never on the clock. */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fixture {
  rec_t rec;
  pp_pool_t *pool;
  pp_diag_t diag;
} fixture_t;

static fixture_t *open_pool(pp_config_t *cfg) {
  fixture_t *f = calloc(1, sizeof(*f));
  pp_pool_options_t o;

  assert_non_null(f);
  rec_init(&f->rec);
  o = rec_options(&f->rec);
  if (pp_pool_open(cfg, &o, &f->pool, &f->diag) != 0)
    fail_msg("pp_pool_open: %s", f->diag.message);
  pp_config_free(cfg);
  return f;
}

static void close_pool(fixture_t *f) {
  pp_pool_close(f->pool);
  rec_free(&f->rec);
  free(f);
}

static pp_config_t *pipelined(int size, const char *depth) {
  pp_config_t *cfg = python_config("echo_handlers.py", size);
  char t[32];

  cfg_set(cfg, "worker.pipeline_depth", depth);
  /* Limits that only fire on failure. */
  snprintf(t, sizeof(t), "%ds", 60 * test_time_scale());
  cfg_set(cfg, "checkout.timeout", t);
  return cfg;
}

/* REQUEST events for calls that found others already queued on their
 * worker (the trace's code is the call's place in the ring). */
static size_t queued_behind_others(rec_t *r) {
  size_t i, n = 0;

  uv_mutex_lock(&r->mu);
  for (i = 0; i < r->n; i++)
    if (r->ev[i].type == PP_TRACE_REQUEST && r->ev[i].code > 0 &&
        strcmp(r->ev[i].detail, "pipelined") == 0)
      n++;
  uv_mutex_unlock(&r->mu);
  return n;
}

/* ---- a caller thread: one call, or calls in a loop */

typedef struct call {
  pp_pool_t *pool;
  const char *cmd;
  char args[8192];
  int id, calls, ok, status;
  atomic_int *stop;
  pp_diag_t diag;
  size_t reply_len;
} call_t;

static void one_call(void *arg) {
  call_t *c = arg;
  pp_buf_t reply = {0};

  c->status = pp_call_cmd(c->pool, c->cmd, c->args, &reply, -1, &c->diag);
  c->reply_len = reply.len;
  pp_buf_free(&reply);
}

/* Echo calls, each with its own arguments, until c->calls are made (or,
 * with c->stop, until it is set); stops at the first wrong reply. */
static void echo_loop(void *arg) {
  call_t *c = arg;
  pp_buf_t reply = {0};
  char args[64];
  int n = 0;

  while (c->stop ? !atomic_load(c->stop) : n < c->calls) {
    snprintf(args, sizeof(args), "[%d,%d]", c->id, n++);
    c->status = pp_call_cmd(c->pool, "echo", args, &reply, -1, &c->diag);
    if (c->status != 0 || strcmp(reply.data, args) != 0)
      break;
    c->ok++;
  }
  c->calls = n;
  pp_buf_free(&reply);
}

static void start(uv_thread_t *t, call_t *c, pp_pool_t *pool, const char *cmd,
                  const char *args, void (*fn)(void *)) {
  c->pool = pool;
  c->cmd = cmd;
  snprintf(c->args, sizeof(c->args), "%s", args ? args : "null");
  assert_int_equal(uv_thread_create(t, fn, c), 0);
}

/* ---- tests */

static void test_replies_reach_their_callers(void **state) {
  fixture_t *f = open_pool(pipelined(2, "4"));
  call_t c[24];
  uv_thread_t t[24];
  pp_status_t st;
  int i;

  (void)state;
  memset(c, 0, sizeof(c));
  for (i = 0; i < 24; i++) {
    c[i].id = i;
    c[i].calls = 200;
    start(&t[i], &c[i], f->pool, "echo", NULL, echo_loop);
  }
  for (i = 0; i < 24; i++) {
    uv_thread_join(&t[i]);
    if (c[i].ok != 200)
      fail_msg("caller %d: %d of 200 right, last: %s: %s", i, c[i].ok,
               pp_strerror(c[i].status), c[i].diag.message);
  }
  assert_int_equal(pp_pool_quiesce(f->pool, 10000, &f->diag), 0);
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_equal(st.checkouts, 24 * 200);
  assert_int_equal(st.checkins, 24 * 200);
  assert_int_equal(st.idle, 2);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(st.waiters, 0);
  pp_status_free(&st);
  /* The calls did share workers: some went in behind others. */
  assert_true(queued_behind_others(&f->rec) > 0);
  close_pool(f);
}

/* A worker dies with three calls in its ring: all three fail with
 * PP_ECRASHED, the slot restarts, and the next call is served. */
static void test_crash_fails_its_ring(void **state) {
  fixture_t *f = open_pool(pipelined(1, "4"));
  char fifo[128], args[256];
  call_t c[3];
  uv_thread_t t[3];
  pp_status_t st;
  pp_buf_t reply = {0};
  int i;

  (void)state;
  memset(c, 0, sizeof(c));
  fifo_make(fifo, sizeof(fifo), "crash");
  snprintf(args, sizeof(args), "{\"fifo\": \"%s\", \"then\": \"crash\"}", fifo);
  start(&t[0], &c[0], f->pool, "gate", args, one_call);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_REQUEST, 1, 30000), 0);
  start(&t[1], &c[1], f->pool, "echo", "1", one_call);
  start(&t[2], &c[2], f->pool, "echo", "2", one_call);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_REQUEST, 3, 30000), 0);
  fifo_release(fifo);
  for (i = 0; i < 3; i++) {
    uv_thread_join(&t[i]);
    assert_int_equal(c[i].status, PP_ECRASHED);
    assert_true(c[i].diag.message[0] != '\0');
  }
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_HELLO, 2, 30000), 0);
  assert_int_equal(pp_call_cmd(f->pool, "echo", "3", &reply, -1, &f->diag), 0);
  assert_string_equal(reply.data, "3");
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_equal(st.restarts, 1);
  pp_status_free(&st);
  pp_buf_free(&reply);
  unlink(fifo);
  close_pool(f);
}

/* Index of the n-th (from 1) event of type, or -1. */
static long nth_event(rec_t *r, pp_trace_type_t type, size_t n) {
  long i = -1;

  while (n-- > 0)
    if ((i = rec_find(r, type, (size_t)(i + 1))) < 0)
      return -1;
  return i;
}

/* The generation of the worker the n-th request went to. */
static uint32_t request_generation(rec_t *r, size_t n) {
  long i = nth_event(r, PP_TRACE_REQUEST, n);
  uint32_t gen;

  assert_true(i >= 0);
  uv_mutex_lock(&r->mu);
  gen = r->ev[i].generation;
  uv_mutex_unlock(&r->mu);
  return gen;
}

/* The head of a ring of three passes worker.request_timeout: it fails with
 * PP_ETIMEDOUT, the two behind it with PP_ECRASHED saying why, and the
 * worker is replaced. */
static void test_timeout_fails_its_ring(void **state) {
  pp_config_t *cfg = pipelined(1, "4");
  char fifo[128], args[256], t1[32];
  pp_buf_t reply = {0};
  int i, behind = 0, crashed = 0;
  call_t c[3];
  uv_thread_t t[3];
  fixture_t *f;

  (void)state;
  /* Long enough for the two calls behind to be placed first. */
  snprintf(t1, sizeof(t1), "%ds", test_time_scale());
  cfg_set(cfg, "worker.request_timeout", t1);
  f = open_pool(cfg);
  memset(c, 0, sizeof(c));
  fifo_make(fifo, sizeof(fifo), "timeout");
  snprintf(args, sizeof(args), "{\"fifo\": \"%s\"}", fifo);
  start(&t[0], &c[0], f->pool, "gate", args, one_call);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_REQUEST, 1, 30000), 0);
  start(&t[1], &c[1], f->pool, "echo", "1", one_call);
  start(&t[2], &c[2], f->pool, "echo", "2", one_call);
  for (i = 0; i < 3; i++)
    uv_thread_join(&t[i]);
  assert_int_equal(c[0].status, PP_ETIMEDOUT);
  assert_non_null(strstr(c[0].diag.message, "timed out"));
  /* The calls placed on the same process as the head (normally both) fail
   * with it; one placed after the replacement (only if placing it took
   * longer than the timeout) is served. */
  for (i = 1; i < 3; i++)
    if (request_generation(&f->rec, (size_t)i + 1) ==
        request_generation(&f->rec, 1))
      behind++;
  for (i = 1; i < 3; i++) {
    if (c[i].status == 0)
      continue;
    assert_int_equal(c[i].status, PP_ECRASHED);
    assert_non_null(strstr(c[i].diag.message, "a request ahead timed out"));
    crashed++;
  }
  assert_int_equal(crashed, behind);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_HELLO, 2, 30000), 0);
  assert_int_equal(pp_call_cmd(f->pool, "echo", "3", &reply, -1, &f->diag), 0);
  assert_string_equal(reply.data, "3");
  pp_buf_free(&reply);
  unlink(fifo);
  close_pool(f);
}

/* Lease the only worker, then start a call that must wait for a place;
 * returns once it waits. */
static pp_lease_t *call_behind_lease(fixture_t *f, uv_thread_t *t, call_t *c) {
  pp_lease_t *lease;

  memset(c, 0, sizeof(*c));
  assert_int_equal(pp_lease_acquire(f->pool, NULL, -1, &lease, &f->diag), 0);
  start(t, c, f->pool, "echo", "7", one_call);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_CHECKOUT_WAIT, 1, 30000), 0);
  return lease;
}

/* A call waits for a place while the only worker is leased; the check-in
 * gives it the worker at once (the checkout timeout is a minute). */
static void test_waiting_call_served_at_checkin(void **state) {
  fixture_t *f = open_pool(pipelined(1, "2"));
  pp_lease_t *lease;
  pp_status_t st;
  uv_thread_t t;
  call_t c;

  (void)state;
  lease = call_behind_lease(f, &t, &c);
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_equal(st.waiters, 1);
  pp_status_free(&st);
  /* Not quiet while a call waits. */
  assert_int_equal(pp_pool_quiesce(f->pool, 0, &f->diag), PP_ETIMEDOUT);
  pp_checkin(lease);
  uv_thread_join(&t);
  assert_int_equal(c.status, 0);
  assert_int_equal(c.reply_len, 1);
  assert_int_equal(pp_pool_quiesce(f->pool, 10000, &f->diag), 0);
  close_pool(f);
}

/* Pipelined callers keep the only worker busy; a lease that asks for it
 * gets it (the ring drains for it), and the callers go on afterwards. */
static void test_lease_not_starved(void **state) {
  fixture_t *f = open_pool(pipelined(1, "4"));
  atomic_int stop = 0;
  pp_buf_t reply = {0};
  pp_lease_t *lease;
  call_t c[6];
  uv_thread_t t[6];
  int i, r;

  (void)state;
  memset(c, 0, sizeof(c));
  for (i = 0; i < 6; i++) {
    c[i].id = i;
    c[i].stop = &stop;
    start(&t[i], &c[i], f->pool, "echo", NULL, echo_loop);
  }
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_REQUEST, 200, 30000), 0);
  r = pp_lease_acquire(f->pool, NULL, 30000 * test_time_scale(), &lease,
                       &f->diag);
  if (r != 0)
    fail_msg("lease under pipelined load: %s: %s", pp_strerror(r),
             f->diag.message);
  {
    const char *req = "{\"cmd\": \"echo\", \"args\": 5}";
    assert_int_equal(
        pp_lease_call(lease, req, strlen(req), -1, &reply, &f->diag), 0);
  }
  assert_string_equal(reply.data, "5");
  pp_checkin(lease);
  atomic_store(&stop, 1);
  for (i = 0; i < 6; i++) {
    uv_thread_join(&t[i]);
    /* (A thread the machine started late may have made no call.) */
    if (c[i].ok != c[i].calls)
      fail_msg("caller %d: %d of %d right, last: %s: %s", i, c[i].ok,
               c[i].calls, pp_strerror(c[i].status), c[i].diag.message);
  }
  pp_buf_free(&reply);
  close_pool(f);
}

/* Drain fails a call waiting for a place, with the reason. */
static void test_drain_fails_waiting_call(void **state) {
  fixture_t *f = open_pool(pipelined(1, "2"));
  pp_lease_t *lease;
  uv_thread_t t;
  call_t c;

  (void)state;
  lease = call_behind_lease(f, &t, &c);
  assert_int_equal(pp_pool_drain(f->pool, 0), 0);
  uv_thread_join(&t);
  assert_int_equal(c.status, PP_ECLOSED);
  assert_non_null(strstr(c.diag.message, "draining"));
  pp_checkin(lease);
  assert_int_equal(pp_pool_quiesce(f->pool, 10000, &f->diag), 0);
  close_pool(f);
}

/* 32 calls of ~4 KB each (more than a pipe holds) asking for 100 KB
 * replies (more than the reply pipe holds): while the worker is stuck
 * writing a reply nobody reads, our requests fill its request pipe.  The
 * reader keeps reading while it writes, so nothing wedges. */
static void test_big_replies_behind_full_pipe(void **state) {
  pp_config_t *cfg = pipelined(1, "32");
  char pad[3900];
  call_t *c = calloc(32, sizeof(*c));
  uv_thread_t t[32];
  fixture_t *f;
  int i, round;

  (void)state;
  assert_non_null(c);
  cfg_set(cfg, "worker.request_timeout", "60s");
  f = open_pool(cfg);
  memset(pad, 'p', sizeof(pad) - 1);
  pad[sizeof(pad) - 1] = '\0';
  for (round = 0; round < 5; round++) {
    for (i = 0; i < 32; i++) {
      char args[4000];
      snprintf(args, sizeof(args), "[100000, \"%s\"]", pad);
      start(&t[i], &c[i], f->pool, "grow", args, one_call);
    }
    for (i = 0; i < 32; i++) {
      uv_thread_join(&t[i]);
      if (c[i].status != 0)
        fail_msg("round %d call %d: %s: %s", round, i, pp_strerror(c[i].status),
                 c[i].diag.message);
      assert_int_equal(c[i].reply_len, 100002); /* a JSON string */
    }
  }
  assert_true(queued_behind_others(&f->rec) > 0);
  free(c);
  close_pool(f);
}

/* Recycling (worker.max_requests), a rolling restart and a scale down and
 * up, all while 8 threads keep pipelined calls going: no call fails and
 * every worker is replaced, because a ring stops taking calls and drains
 * when its worker is due for replacement. */
static void test_maintenance_under_load(void **state) {
  pp_config_t *cfg = pipelined(2, "4");
  atomic_int stop = 0;
  call_t c[8];
  uv_thread_t t[8];
  pp_status_t st;
  fixture_t *f;
  size_t hellos;
  int i;

  (void)state;
  cfg_set(cfg, "worker.max_requests", "150");
  f = open_pool(cfg);
  memset(c, 0, sizeof(c));
  for (i = 0; i < 8; i++) {
    c[i].id = i;
    c[i].stop = &stop;
    start(&t[i], &c[i], f->pool, "echo", NULL, echo_loop);
  }
  /* Recycled by max_requests, replacements too (4 recycles of 2 slots). */
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_RECYCLE, 4, 60000), 0);
  hellos = rec_count(&f->rec, PP_TRACE_HELLO);
  assert_int_equal(pp_pool_restart(f->pool, -1), 0);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_HELLO, hellos + 2, 60000), 0);
  assert_int_equal(pp_pool_scale(f->pool, 1, 0), 0);
  assert_int_equal(pp_pool_scale(f->pool, 3, 0), 0);
  hellos = rec_count(&f->rec, PP_TRACE_HELLO);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_HELLO, hellos + 2, 60000), 0);
  atomic_store(&stop, 1);
  for (i = 0; i < 8; i++) {
    uv_thread_join(&t[i]);
    if (c[i].ok != c[i].calls)
      fail_msg("caller %d: %d of %d right, last: %s: %s", i, c[i].ok,
               c[i].calls, pp_strerror(c[i].status), c[i].diag.message);
  }
  assert_int_equal(pp_pool_quiesce(f->pool, 30000, &f->diag), 0);
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_equal(st.errors, 0);
  assert_int_equal(st.waiters, 0);
  pp_status_free(&st);
  close_pool(f);
}

typedef struct pcall {
  pp_pool_t *pool;
  char payload[256];
  int status;
  pp_diag_t diag;
} pcall_t;

static void pcall_main(void *arg) {
  pcall_t *k = arg;
  pp_buf_t reply = {0};

  k->status =
      pp_call(k->pool, k->payload, strlen(k->payload), &reply, -1, &k->diag);
  pp_buf_free(&reply);
}

/* A pipelined call cut short by pp_pool_close (its worker stopped past
 * drain_timeout) gets PP_ECLOSED, not PP_ECRASHED. */
static void test_close_cuts_call_closed(void **state) {
  pp_config_t *cfg = pipelined(1, "4");
  char fifo[128];
  uv_thread_t t;
  fixture_t *f;
  pcall_t k;

  (void)state;
  cfg_set(cfg, "worker.drain_timeout", "100ms");
  cfg_set(cfg, "worker.kill_grace", "200ms");
  f = open_pool(cfg);
  memset(&k, 0, sizeof(k));
  k.pool = f->pool;
  fifo_make(fifo, sizeof(fifo), "pipeline-close");
  snprintf(k.payload, sizeof(k.payload),
           "{\"cmd\":\"gate\",\"args\":{\"fifo\":\"%s\"}}", fifo);
  assert_int_equal(uv_thread_create(&t, pcall_main, &k), 0);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_REQUEST, 1, 10000), 0);
  close_pool(f); /* returns once the caller has left the pool */
  uv_thread_join(&t);
  unlink(fifo);
  assert_int_equal(k.status, PP_ECLOSED);
}

/* ---- pp_call_async from threads other than the loop's */

typedef struct asyncs {
  uv_mutex_t mu;
  uv_cond_t cv;
  int done, bad, off_thread, last_status;
  uv_thread_t loop_thread;
  int have_loop_thread;
} asyncs_t;

typedef struct acall {
  asyncs_t *all;
  char want[32];
} acall_t;

static void on_async(int status, const char *reply, size_t len,
                     const pp_diag_t *diag, void *data) {
  acall_t *a = data;
  asyncs_t *all = a->all;
  uv_thread_t self = uv_thread_self();

  (void)diag;
  uv_mutex_lock(&all->mu);
  all->last_status = status;
  if (status != 0 || len != strlen(a->want) || memcmp(reply, a->want, len))
    all->bad++;
  /* Every callback runs on the pool's one loop thread. */
  if (!all->have_loop_thread) {
    all->loop_thread = self;
    all->have_loop_thread = 1;
  } else if (!uv_thread_equal(&self, &all->loop_thread)) {
    all->off_thread++;
  }
  all->done++;
  uv_cond_broadcast(&all->cv);
  uv_mutex_unlock(&all->mu);
}

/* Wait until n callbacks ran (a guard only fails the test). */
static void wait_done(asyncs_t *all, int n) {
  uint64_t deadline =
      uv_hrtime() + 60000000000ull * (uint64_t)test_time_scale();

  uv_mutex_lock(&all->mu);
  while (all->done < n && uv_hrtime() < deadline)
    uv_cond_timedwait(&all->cv, &all->mu, 100000000ull);
  uv_mutex_unlock(&all->mu);
  assert_int_equal(all->done, n);
}

typedef struct submitter {
  pp_pool_t *pool;
  acall_t *calls;
  int id, n, refused;
} submitter_t;

static void submit_main(void *arg) {
  submitter_t *t = arg;
  char payload[96];
  int i;

  for (i = 0; i < t->n; i++) {
    snprintf(t->calls[i].want, sizeof(t->calls[i].want), "\"%d-%d\"", t->id, i);
    snprintf(payload, sizeof(payload), "{\"cmd\":\"echo\",\"args\":%s}",
             t->calls[i].want);
    if (pp_call_async(t->pool, payload, strlen(payload), -1, on_async,
                      &t->calls[i]) != 0)
      t->refused++;
  }
}

/* Four threads, none of them the loop's, each submit 50 pp_call_async on
 * a pp_pool_open pool, 4 deep: every call is answered once, with its own
 * reply, on the pool's loop thread. */
static void test_async_from_threads(void **state) {
  fixture_t *f = open_pool(pipelined(2, "4"));
  submitter_t t[4];
  uv_thread_t th[4];
  acall_t calls[4][50];
  asyncs_t all;
  pp_status_t before, after;
  int i;

  (void)state;
  memset(&all, 0, sizeof(all));
  memset(calls, 0, sizeof(calls));
  uv_mutex_init(&all.mu);
  uv_cond_init(&all.cv);
  assert_int_equal(pp_pool_status(f->pool, &before), 0);
  for (i = 0; i < 4; i++) {
    for (int k = 0; k < 50; k++)
      calls[i][k].all = &all;
    t[i] = (submitter_t){.pool = f->pool, .calls = calls[i], .id = i, .n = 50};
    assert_int_equal(uv_thread_create(&th[i], submit_main, &t[i]), 0);
  }
  for (i = 0; i < 4; i++) {
    uv_thread_join(&th[i]);
    assert_int_equal(t[i].refused, 0);
  }
  wait_done(&all, 200);
  assert_int_equal(all.bad, 0);
  assert_int_equal(all.off_thread, 0);
  assert_int_equal(pp_pool_status(f->pool, &after), 0);
  assert_int_equal(after.requests - before.requests, 200);
  assert_int_equal(after.run_time.count - before.run_time.count, 200);
  pp_status_free(&before);
  pp_status_free(&after);
  close_pool(f);
  /* No callback after close: the count is final. */
  assert_int_equal(all.done, 200);
  uv_cond_destroy(&all.cv);
  uv_mutex_destroy(&all.mu);
}

/* A call from another thread that finds no place waits at most its
 * timeout_ms: the loop arms its deadline (the only worker is held by a
 * lease, so nothing else could end the wait).  And with
 * checkout.max_waiters 0, such a call that finds a place is still served:
 * only one that would wait is refused, through its callback. */
static void test_async_from_thread_waits_bounded(void **state) {
  pp_config_t *cfg = pipelined(1, "4");
  asyncs_t all;
  acall_t call;
  pp_lease_t *lease;
  fixture_t *f;
  const char *echo = "{\"cmd\":\"echo\",\"args\":\"w\"}";

  (void)state;
  cfg_set(cfg, "checkout.max_waiters", "0");
  f = open_pool(cfg);
  memset(&all, 0, sizeof(all));
  uv_mutex_init(&all.mu);
  uv_cond_init(&all.cv);
  memset(&call, 0, sizeof(call));
  call.all = &all;
  snprintf(call.want, sizeof(call.want), "\"w\"");
  /* A free worker: served, max_waiters 0 notwithstanding. */
  assert_int_equal(
      pp_call_async(f->pool, echo, strlen(echo), 200, on_async, &call), 0);
  wait_done(&all, 1);
  assert_int_equal(all.bad, 0);
  /* The worker leased: the next call cannot be placed and may not wait. */
  assert_int_equal(pp_lease_acquire(f->pool, NULL, -1, &lease, &f->diag), 0);
  assert_int_equal(
      pp_call_async(f->pool, echo, strlen(echo), 200, on_async, &call), 0);
  wait_done(&all, 2);
  assert_int_equal(all.last_status, PP_EBUSY);
  pp_checkin(lease);
  close_pool(f);
  uv_cond_destroy(&all.cv);
  uv_mutex_destroy(&all.mu);
}

/* The same wait with room to wait: it ends at its timeout_ms with
 * PP_ETIMEDOUT, not when the worker comes back. */
static void test_async_from_thread_times_out(void **state) {
  fixture_t *f = open_pool(pipelined(1, "4"));
  const char *echo = "{\"cmd\":\"echo\",\"args\":\"t\"}";
  asyncs_t all;
  acall_t call;
  pp_lease_t *lease;

  (void)state;
  memset(&all, 0, sizeof(all));
  uv_mutex_init(&all.mu);
  uv_cond_init(&all.cv);
  memset(&call, 0, sizeof(call));
  call.all = &all;
  assert_int_equal(pp_lease_acquire(f->pool, NULL, -1, &lease, &f->diag), 0);
  assert_int_equal(
      pp_call_async(f->pool, echo, strlen(echo), 200, on_async, &call), 0);
  /* The lease is held until the call is done: only its deadline ends it. */
  wait_done(&all, 1);
  assert_int_equal(all.last_status, PP_ETIMEDOUT);
  pp_checkin(lease);
  close_pool(f);
  uv_cond_destroy(&all.cv);
  uv_mutex_destroy(&all.mu);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_replies_reach_their_callers),
      cmocka_unit_test(test_crash_fails_its_ring),
      cmocka_unit_test(test_timeout_fails_its_ring),
      cmocka_unit_test(test_waiting_call_served_at_checkin),
      cmocka_unit_test(test_lease_not_starved),
      cmocka_unit_test(test_drain_fails_waiting_call),
      cmocka_unit_test(test_big_replies_behind_full_pipe),
      cmocka_unit_test(test_maintenance_under_load),
      cmocka_unit_test(test_close_cuts_call_closed),
      cmocka_unit_test(test_async_from_threads),
      cmocka_unit_test(test_async_from_thread_waits_bounded),
      cmocka_unit_test(test_async_from_thread_times_out),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
