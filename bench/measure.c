/* measure.c -- the contenders and their measurement windows: the caller
 * threads (floor, pp_call, lease, pp_call_async), the interleaved windows,
 * the counters read around each, pinning, and the report line of each
 * contender.  The threads run only inside window(). */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------ counters (LD_PRELOAD) */

mc_get_fn mc_get;

/* Context switches of the process's threads that are not the bench's own
 * caller threads nor the main thread: the pool's loop thread (and libuv's
 * pool, if any).  Extra wake-ups per call show here. */
pid_t main_tid;

static uint64_t task_csw(pid_t tid) {
  char path[64], line[256];
  uint64_t v, sum = 0;
  FILE *f;

  snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
  if ((f = fopen(path, "r")) == NULL)
    return 0;
  while (fgets(line, sizeof(line), f)) {
    if (sscanf(line, "voluntary_ctxt_switches: %lu", &v) == 1)
      sum += v;
    else if (sscanf(line, "nonvoluntary_ctxt_switches: %lu", &v) == 1)
      sum += v;
  }
  fclose(f);
  return sum;
}

static uint64_t other_csw(const pid_t *skip, int nskip) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  uint64_t sum = 0;
  pid_t tid;
  int i, skipped;

  if (d == NULL)
    return 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    tid = (pid_t)atoi(e->d_name);
    skipped = tid == main_tid;
    for (i = 0; !skipped && i < nskip; i++)
      skipped = skip[i] == tid;
    if (!skipped)
      sum += task_csw(tid);
  }
  closedir(d);
  return sum;
}

/* ------------------------------------------------------------- pinning */

/* --pin: callers on CPU 0; workers on CPU 1 (cross) or CPU 0 (same).  The
 * scheduler otherwise flips between the two placements with the machine's
 * load, and a round trip costs ~2.5x more across CPUs. */
static const char *pin_now = "none"; /* the current scenario's */

/* auto: cross for the one-worker latency scenarios (latency, big,
 * anatomy), none for the others (2 workers need both CPUs). */
void pin_scenario(int one_worker) {
  if (strcmp(O.pin, "auto") == 0)
    pin_now = one_worker ? "cross" : "none";
  else
    pin_now = O.pin;
}

int pin_worker_cpu(void) {
  if (strcmp(pin_now, "cross") == 0)
    return 1;
  if (strcmp(pin_now, "same") == 0)
    return 0;
  return -1;
}

void pin_pid(pid_t pid, int cpu) {
  cpu_set_t set;

  if (cpu < 0)
    return;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(pid, sizeof(set), &set) != 0)
    perror("sched_setaffinity");
}

static void pin_self(void) {
  if (pin_worker_cpu() >= 0)
    pin_pid(0, 0);
}

void pin_pool(pp_pool_t *pool) {
  pp_status_t st;

  if (pin_worker_cpu() < 0 || pp_pool_status(pool, &st) != 0)
    return;
  for (int i = 0; i < st.nworkers; i++)
    if (st.workers[i].pid > 0)
      pin_pid(st.workers[i].pid, pin_worker_cpu());
  pp_status_free(&st);
}

/* ----------------------------------------------------------- contenders */

typedef struct tctx {
  contender_t *c;
  int index;
  pid_t tid;
  samples_t lat;
  uint64_t calls, errors;
} tctx_t;

static volatile int g_stop;
static volatile uint64_t g_stop_ns;
static pthread_barrier_t g_go;

static int counted(uint64_t t1) { return !g_stop || t1 <= g_stop_ns; }

static int reply_ok(const contender_t *c, const char *p, size_t n) {
  if (c->json)
    return n > 0 && p[0] == '"';
  return n == c->len &&
         (n == 0 || (p[0] == c->payload[0] && p[n - 1] == c->payload[n - 1]));
}

void *floor_call_thread(void *arg) {
  tctx_t *t = arg;
  contender_t *c = t->c;
  floor_worker_t *w = &c->fw[t->index % c->nfw];
  const char *rep;
  size_t rlen;
  uint64_t t0, t1;
  int r;

  t->tid = (pid_t)syscall(SYS_gettid);
  pin_self();
  floor_set_flags(w, c->fflags);
  pthread_barrier_wait(&g_go);
  while (!g_stop) {
    t0 = bench_now_ns();
    r = floor_call(w, c->payload, c->len, &rep, &rlen);
    t1 = bench_now_ns();
    if (r < 0) {
      t->errors++;
      break;
    }
    if (!counted(t1))
      break;
    if (r != 3 || !reply_ok(c, rep, rlen))
      t->errors++;
    t->calls++;
    samples_add(&t->lat, t1 - t0);
  }
  return NULL;
}

void *floor_pipe_thread(void *arg) {
  tctx_t *t = arg;
  contender_t *c = t->c;
  floor_worker_t *w = &c->fw[t->index % c->nfw];

  t->tid = (pid_t)syscall(SYS_gettid);
  pin_self();
  floor_set_flags(w, 0);
  pthread_barrier_wait(&g_go);
  if (floor_pipeline(w, c->payload, c->len, c->depth, &g_stop, &g_stop_ns,
                     &t->calls, &t->lat) != 0)
    t->errors++;
  return NULL;
}

void *pool_call_thread(void *arg) {
  tctx_t *t = arg;
  contender_t *c = t->c;
  pp_buf_t reply = {0};
  pp_diag_t diag;
  uint64_t t0, t1;
  int r;

  t->tid = (pid_t)syscall(SYS_gettid);
  pin_self();
  pthread_barrier_wait(&g_go);
  while (!g_stop) {
    t0 = bench_now_ns();
    r = c->cmd ? pp_call_bytes(c->pool, c->cmd, c->payload, c->len, &reply,
                               NULL, &diag)
               : pp_call(c->pool, c->payload, c->len, &reply, -1, &diag);
    t1 = bench_now_ns();
    if (!counted(t1))
      break;
    if (r != 0 || !reply_ok(c, reply.data, reply.len)) {
      if (t->errors++ == 0)
        fprintf(stderr, "pp_call: %s: %s\n", pp_strerror(r), diag.message);
      continue;
    }
    t->calls++;
    samples_add(&t->lat, t1 - t0);
  }
  pp_buf_free(&reply);
  return NULL;
}

void *pool_lease_thread(void *arg) {
  tctx_t *t = arg;
  contender_t *c = t->c;
  pp_buf_t reply = {0};
  pp_lease_t *lease = NULL;
  pp_diag_t diag;
  uint64_t t0, t1;
  int r;

  t->tid = (pid_t)syscall(SYS_gettid);
  pin_self();
  /* The lease is taken before the window opens: this measures the call
   * alone, without checkout and check-in. */
  r = pp_lease_acquire(c->pool, NULL, -1, &lease, &diag);
  pthread_barrier_wait(&g_go);
  if (r != 0) {
    fprintf(stderr, "pp_lease_acquire: %s: %s\n", pp_strerror(r), diag.message);
    t->errors++;
    return NULL;
  }
  while (!g_stop) {
    t0 = bench_now_ns();
    r = pp_lease_call(lease, c->payload, c->len, -1, &reply, &diag);
    t1 = bench_now_ns();
    if (!counted(t1))
      break;
    if (r != 0 || !reply_ok(c, reply.data, reply.len)) {
      if (t->errors++ == 0)
        fprintf(stderr, "pp_lease_call: %s: %s\n", pp_strerror(r),
                diag.message);
      if (r != 0 && r != PP_EHANDLER)
        break;
      continue;
    }
    t->calls++;
    samples_add(&t->lat, t1 - t0);
  }
  pp_checkin(lease);
  pp_buf_free(&reply);
  return NULL;
}

void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

/* One measurement window of `seconds` for c; record = 0 for a warm-up. */
static void window(contender_t *c, double seconds, int record) {
  int n = c->nthreads, i;
  pthread_t *th = calloc((size_t)n, sizeof(*th));
  tctx_t *t = calloc((size_t)n, sizeof(*t));
  pid_t *tids = calloc((size_t)n, sizeof(*tids));
  uint64_t mc0[MC_N] = {0}, mc1[MC_N] = {0}, csw0, csw1, t0;

  g_stop = 0;
  g_stop_ns = 0;
  pthread_barrier_init(&g_go, NULL, (unsigned)n + 1);
  for (i = 0; i < n; i++) {
    t[i].c = c;
    t[i].index = i;
    pthread_create(&th[i], NULL, c->fn, &t[i]);
  }
  pthread_barrier_wait(&g_go);
  for (i = 0; i < n; i++)
    tids[i] = t[i].tid;
  csw0 = other_csw(tids, n);
  if (mc_get)
    mc_get(mc0);
  t0 = bench_now_ns();
  sleep_s(seconds);
  if (mc_get)
    mc_get(mc1);
  csw1 = other_csw(tids, n);
  g_stop_ns = bench_now_ns();
  __sync_synchronize();
  g_stop = 1;
  __sync_synchronize();
  for (i = 0; i < n; i++)
    pthread_join(th[i], NULL);
  pthread_barrier_destroy(&g_go);
  if (record) {
    c->seconds += (double)(g_stop_ns - t0) / 1e9;
    for (i = 0; i < n; i++) {
      samples_merge(&c->lat, &t[i].lat);
      c->calls += t[i].calls;
      c->errors += t[i].errors;
    }
    for (i = 0; i < MC_N; i++)
      c->mc[i] += mc1[i] - mc0[i];
    /* A thread that ended meanwhile takes its count away: never below 0. */
    c->csw += csw1 > csw0 ? csw1 - csw0 : 0;
  }
  for (i = 0; i < n; i++)
    samples_free(&t[i].lat);
  free(th);
  free(t);
  free(tids);
}

/* --only: floor (depth 1), pipe (pipelined floor), pp_call, lease,
 * pp_call_d1 (many: the reference pool at pipeline_depth 1), async. */
static int selected(const contender_t *c) {
  if (O.only == NULL)
    return 1;
  if (c->fn == floor_call_thread)
    return strcmp(O.only, "floor") == 0;
  if (c->fn == floor_pipe_thread)
    return strcmp(O.only, "pipe") == 0;
  if (c->fn == pool_call_thread)
    return strcmp(O.only, c->ref ? "pp_call_d1" : "pp_call") == 0;
  if (c->fn == pool_lease_thread)
    return strcmp(O.only, "lease") == 0;
  if (c->fn == pool_async_thread)
    return strcmp(O.only, "async") == 0;
  return 0;
}

/* Run once halfway through the next measure(): `all` measures the
 * alternatives in the middle of the JSON-mode pool windows they are
 * compared with. */
void (*mid_hook)(void);

/* Interleave the contenders' windows: warm-up each, then `rounds` rounds
 * of one window each. */
void measure(contender_t **cs, int n) {
  void (*hook)(void) = mid_hook;
  int r, i;

  mid_hook = NULL;
  for (i = 0; i < n; i++)
    if (selected(cs[i]))
      window(cs[i], 0.15, 0);
  for (r = 0; r < O.rounds; r++) {
    if (hook && r == O.rounds / 2)
      hook();
    for (i = 0; i < n; i++)
      if (selected(cs[i]))
        window(cs[i], O.duration / O.rounds, 1);
  }
  if (hook && O.rounds < 2)
    hook();
}

result_t *report(const char *scen, contender_t *c, size_t bytes,
                 const contender_t *base) {
  result_t *r;
  int i;

  if (c->seconds <= 0)
    return NULL; /* not selected by --only */
  r = result_new(scen, c->name);

  r->n = c->calls;
  r->errors = c->errors;
  r->p50_us = (double)samples_quantile(&c->lat, 0.50) / 1e3;
  r->p99_us = (double)samples_quantile(&c->lat, 0.99) / 1e3;
  r->calls_s = c->seconds > 0 ? (double)c->calls / c->seconds : 0;
  r->mb_s = r->calls_s * (double)bytes / 1e6;
  if (mc_get && c->calls)
    for (i = 0; i < MC_N; i++)
      r->per_call[i] = (double)c->mc[i] / (double)c->calls;
  if (c->calls)
    r->csw = (double)c->csw / (double)c->calls;
  printf("  %-44s %9.1f %9.1f %11.0f", c->name, r->p50_us, r->p99_us,
         r->calls_s);
  if (bytes >= 4096)
    printf(" %9.1f MB/s", r->mb_s);
  if (base && base != c) {
    result_t *b = result_get(scen, base->name);
    if (b && b->p50_us > 0 && b->calls_s > 0)
      printf("   x%.2f p50  x%.2f p99  x%.2f calls/s", r->p50_us / b->p50_us,
             r->p99_us / b->p99_us, r->calls_s / b->calls_s);
  }
  if (mc_get)
    printf("   [allocs %.2f, locks %.2f, cond signal %.2f wait %.2f /call]",
           r->per_call[MC_ALLOC], r->per_call[MC_LOCK],
           r->per_call[MC_COND_SIGNAL], r->per_call[MC_COND_WAIT]);
  if (r->csw > 0.005)
    printf("   [other threads %.3f csw/call]", r->csw);
  if (c->errors)
    printf("   ERRORS %llu", (unsigned long long)c->errors);
  printf("\n");
  result_emit(r);
  samples_free(&c->lat);
  return r;
}

void header(const char *title) {
  printf("\n== %s\n  %-44s %9s %9s %11s\n", title, "", "p50 us", "p99 us",
         "calls/s");
}

/* The loop face: a thread runs a uv loop with a pool of its own, started
 * before the window opens, and keeps c->acallers pp_call_async calls in
 * flight, each sent again from its callback until the window closes. */
typedef struct async_run {
  uv_loop_t loop;
  pp_pool_t *pool;
  contender_t *c;
  tctx_t *t;
  int inflight;
  int ready, ready_status, closed;
} async_run_t;

typedef struct async_caller {
  async_run_t *run;
  uint64_t t0;
} async_caller_t;

static void async_done(int status, const char *reply, size_t len,
                       const pp_diag_t *diag, void *data) {
  async_caller_t *a = data;
  async_run_t *r = a->run;
  tctx_t *t = r->t;
  uint64_t t1 = bench_now_ns();

  if (status != 0 || !reply_ok(r->c, reply, len)) {
    if (t->errors++ == 0)
      fprintf(stderr, "pp_call_async: %s: %s\n", pp_strerror(status),
              diag ? diag->message : "wrong reply");
  } else if (counted(t1)) {
    t->calls++;
    samples_add(&t->lat, t1 - a->t0);
  }
  if (g_stop) {
    r->inflight--;
    return;
  }
  a->t0 = bench_now_ns();
  if (pp_call_async(r->pool, r->c->payload, r->c->len, -1, async_done, a) !=
      0) {
    t->errors++;
    r->inflight--;
  }
}

static void async_ready(pp_pool_t *pool, int status, void *data) {
  async_run_t *r = data;
  (void)pool;
  r->ready = 1;
  r->ready_status = status;
}

static void async_closed(pp_pool_t *pool, void *data) {
  async_run_t *r = data;
  (void)pool;
  r->closed = 1;
}

void *pool_async_thread(void *arg) {
  tctx_t *t = arg;
  contender_t *c = t->c;
  async_caller_t *callers = calloc((size_t)c->acallers, sizeof(*callers));
  async_run_t r = {.c = c, .t = t};
  pp_config_t *cfg;
  pp_diag_t diag;
  int i, ok = 0;

  t->tid = (pid_t)syscall(SYS_gettid);
  pin_self();
  uv_loop_init(&r.loop);
  cfg = bench_config(c->aworkers, !c->json, c->handler, NULL, c->depth, NULL);
  if (callers && cfg &&
      pp_pool_start(&r.loop, cfg, NULL, async_ready, &r, &r.pool, &diag) == 0) {
    while (!r.ready)
      uv_run(&r.loop, UV_RUN_ONCE);
    ok = r.ready_status == 0;
  }
  pp_config_free(cfg);
  pthread_barrier_wait(&g_go);
  for (i = 0; ok && i < c->acallers; i++) {
    callers[i].run = &r;
    callers[i].t0 = bench_now_ns();
    if (pp_call_async(r.pool, c->payload, c->len, -1, async_done,
                      &callers[i]) == 0)
      r.inflight++;
    else
      t->errors++;
  }
  while (r.inflight > 0)
    uv_run(&r.loop, UV_RUN_ONCE);
  if (!ok)
    t->errors++;
  if (r.pool) {
    pp_pool_stop(r.pool, async_closed, &r);
    while (!r.closed)
      uv_run(&r.loop, UV_RUN_ONCE);
  }
  uv_run(&r.loop, UV_RUN_DEFAULT);
  uv_loop_close(&r.loop);
  free(callers);
  return NULL;
}
