/* scen_scale.c -- how cost grows with size (issue 18, item 3): per pool
 * size (zygote workers) the time to ready, pool-side memory, status, stop
 * and checkout cost with all but one worker busy; per number of callers
 * (threads in pp_call, pp_call_async calls in flight) calls/s and p99.
 * Not in `all`: bench/scale.sh runs it and plots it.  --workers N and
 * --callers N leave out the sizes above N (a quick look). */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

/* The pool process's RSS. */
static double self_rss(void) {
  char line[256];
  long v;
  double rss = 0;
  FILE *f = fopen("/proc/self/status", "r");

  if (f == NULL)
    return 0;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
      rss = (double)v * 1024;
  fclose(f);
  return rss;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Median of n samples (sorted in place), in microseconds. */
static double median_us(uint64_t *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp_u64);
  return (double)v[n / 2] / 1e3;
}

/* Where a big pool's time to ready goes: each slot's first SPAWN and
 * HELLO (trace events, pool lock held, so no lock of our own). */
typedef struct ready_trace {
  int n, nspawn, nhello, nlog;
  uint64_t *spawn, *hello; /* by order of arrival */
} ready_trace_t;

static void on_trace(pp_pool_t *pool, const pp_trace_event_t *ev, void *d) {
  ready_trace_t *rt = d;
  (void)pool;
  if (ev->type == PP_TRACE_SPAWN && rt->nspawn < rt->n)
    rt->spawn[rt->nspawn++] = ev->ts_ns;
  else if (ev->type == PP_TRACE_HELLO && rt->nhello < rt->n)
    rt->hello[rt->nhello++] = ev->ts_ns;
}

/* The pool's log: the first lines on stderr, the rest only counted (a
 * failed 1024-worker open logs two lines per worker). */
static void on_log(pp_pool_t *pool, const char *line, void *d) {
  ready_trace_t *rt = d;
  (void)pool;
  if (rt->nlog++ < 4)
    fprintf(stderr, "%s\n", line);
}

/* Figures from the trace: when (after pp_pool_open began at t0) the
 * first and last fork request was sent (SPAWN) and worker said HELLO, and
 * over how long each quarter of the HELLOs arrived (equal quarters: a
 * constant cost per worker). */
static void ready_breakdown(int n, const ready_trace_t *rt, uint64_t t0) {
  char name[96];
  int q;

  if (rt->nspawn < n || rt->nhello < n) {
    fprintf(stderr, "ppbench: scale %d: traced %d spawns, %d hellos\n", n,
            rt->nspawn, rt->nhello);
    return;
  }
#define AT(x) ((double)((x)-t0) / 1e9)
  snprintf(name, sizeof(name), "workers %d: first spawn at", n);
  figure("scale", name, AT(rt->spawn[0]), "s", "trace SPAWN after open");
  snprintf(name, sizeof(name), "workers %d: last spawn at", n);
  figure("scale", name, AT(rt->spawn[n - 1]), "s", "trace SPAWN after open");
  snprintf(name, sizeof(name), "workers %d: first hello at", n);
  figure("scale", name, AT(rt->hello[0]), "s", "trace HELLO after open");
  snprintf(name, sizeof(name), "workers %d: last hello at", n);
  figure("scale", name, AT(rt->hello[n - 1]), "s", "trace HELLO after open");
  for (q = 0; q < 4 && n >= 4; q++) {
    uint64_t a = q ? rt->hello[q * n / 4 - 1] : rt->hello[0];
    uint64_t b = rt->hello[(q + 1) * n / 4 - 1];
    snprintf(name, sizeof(name), "workers %d: hello quarter %d", n, q + 1);
    figure("scale", name, (double)(b - a) / 1e9, "s",
           "HELLOs of this quarter of the workers arrived over this long");
  }
#undef AT
}

/* The fork floor for n workers (bench/fork_floor.py): what this
 * interpreter takes to fork n children that each just say so, with the
 * handler imported as in the zygote.  Seconds, or -1. */
static double fork_floor(int n, const char *handler) {
  char cmd[3 * PATH_MAX + 64];
  double s = -1;
  FILE *f;

  snprintf(cmd, sizeof(cmd), "'%s' '%s/bench/fork_floor.py' '%s' '%s' %d",
           O.python, O.root, O.root, handler, n);
  if ((f = popen(cmd, "r")) == NULL)
    return -1;
  if (fscanf(f, "%lf", &s) != 1)
    s = -1;
  if (pclose(f) != 0)
    s = -1;
  return s;
}

/* One pool of n zygote workers on the raw echo handler. */
static int scale_pool(int n, const char *handler) {
  const char *scen = "scale";
  enum { NSTATUS = 9, NCHECK = 2000 };
  uint64_t st_ns[NSTATUS], *ck_ns = calloc(NCHECK, sizeof(uint64_t));
  pp_lease_t **held = calloc((size_t)n, sizeof(*held));
  double h0, r0, t_ready, heap_w, rss_w, t_stop, t_floor;
  int nheld = 0, nck = 0, i, rc = -1;
  char name[96];
  pp_status_t st;
  pp_pool_t *pool;
  ready_trace_t rt = {0};
  pp_pool_options_t popts = {
      .trace = on_trace, .trace_data = &rt, .log = on_log, .log_data = &rt};
  pp_config_t *cfg = NULL;
  pp_diag_t diag;
  uint64_t t0;
  int r;

  if (ck_ns == NULL || held == NULL)
    goto done;
  h0 = heap_bytes();
  r0 = self_rss();
  rt.n = n;
  rt.spawn = calloc((size_t)n, sizeof(uint64_t));
  rt.hello = calloc((size_t)n, sizeof(uint64_t));
  cfg = bench_config(n, 1, handler, NULL, 1, "zygote");
  if (cfg == NULL || rt.spawn == NULL || rt.hello == NULL)
    goto done;
  t0 = bench_now_ns();
  r = pp_pool_open(cfg, &popts, &pool, &diag);
  t_ready = (double)(bench_now_ns() - t0) / 1e9;
  if (r != 0) {
    fprintf(stderr, "pp_pool_open: %s: %s (%d log lines)\n", pp_strerror(r),
            diag.message, rt.nlog);
    snprintf(name, sizeof(name), "workers %d: open failed", n);
    figure(scen, name, t_ready, "s", "pp_pool_open failed after this long");
    snprintf(name, sizeof(name), "workers %d: spawned before the failure", n);
    figure(scen, name, rt.nspawn, "workers", "trace SPAWN events");
    goto done;
  }
  ready_breakdown(n, &rt, t0);
  heap_w = (heap_bytes() - h0) / n;
  rss_w = (self_rss() - r0) / n;

  for (i = 0; i < NSTATUS; i++) {
    t0 = bench_now_ns();
    if (pp_pool_status(pool, &st) == 0)
      pp_status_free(&st);
    st_ns[i] = bench_now_ns() - t0;
  }
  /* All but one busy: hold n-1 leases, then check the last one out and
   * in again, many times. */
  for (i = 0; i < n - 1; i++)
    if (pp_lease_acquire(pool, NULL, 60000, &held[nheld], NULL) == 0)
      nheld++;
  for (i = 0; i < NCHECK; i++) {
    pp_lease_t *l;
    t0 = bench_now_ns();
    if (pp_lease_acquire(pool, NULL, 60000, &l, NULL) != 0)
      break;
    pp_checkin(l);
    ck_ns[nck++] = bench_now_ns() - t0;
  }
  for (i = 0; i < nheld; i++)
    pp_checkin(held[i]);
  t0 = bench_now_ns();
  pp_pool_close(pool);
  t_stop = (double)(bench_now_ns() - t0) / 1e9;

  snprintf(name, sizeof(name), "workers %d: ready", n);
  figure(scen, name, t_ready, "s", "pp_pool_open until ready, zygote");
  if ((t_floor = fork_floor(n, handler)) > 0) {
    snprintf(name, sizeof(name), "workers %d: fork floor", n);
    figure(scen, name, t_floor, "s",
           "bench/fork_floor.py: %d bare forks, no pool; ready is %.2fx", n,
           t_ready / t_floor);
  }
  snprintf(name, sizeof(name), "workers %d: heap per worker", n);
  figure(scen, name, heap_w, "B", "pool process heap growth / workers");
  snprintf(name, sizeof(name), "workers %d: rss per worker", n);
  figure(scen, name, rss_w, "B", "pool process RSS growth / workers");
  snprintf(name, sizeof(name), "workers %d: status", n);
  figure(scen, name, median_us(st_ns, NSTATUS), "us",
         "pp_pool_status + pp_status_free, median of %d", NSTATUS);
  snprintf(name, sizeof(name), "workers %d: stop", n);
  figure(scen, name, t_stop, "s", "pp_pool_close");
  if (nck > 0) {
    snprintf(name, sizeof(name), "workers %d: checkout", n);
    figure(scen, name, median_us(ck_ns, nck), "us",
           "pp_lease_acquire + pp_checkin with all but one busy, median");
  }
  if (nheld != n - 1 || nck != NCHECK)
    fprintf(stderr, "ppbench: scale %d: held %d of %d, %d checkouts\n", n,
            nheld, n - 1, nck);
  rc = 0;
done:
  pp_config_free(cfg);
  free(rt.spawn);
  free(rt.hello);
  free(ck_ns);
  free(held);
  return rc;
}

/* Caller sweeps: threads in pp_call on one 2-worker pool, then
 * pp_call_async calls in flight on a 2-worker pool of their own. */
static int scale_callers(const char *handler) {
  static const int threads[] = {1, 4, 16, 64, 256, 1024};
  static const int inflight[] = {1, 16, 256, 4096, 65536};
  char *payload = make_payload(O.payload, 0);
  double dur = O.duration;
  int rounds = O.rounds;
  char names[11][64];
  contender_t cs[11];
  pp_pool_t *pool;
  size_t i, k = 0;

  pool = open_pool_ex(2, 1, handler, NULL, 1, NULL, NULL);
  if (pool == NULL) {
    free(payload);
    return -1;
  }
  memset(cs, 0, sizeof(cs));
  /* Short windows: the scenario runs 11 points of ~0.75 s each. */
  O.duration = 0.6;
  O.rounds = 1;
  for (i = 0; i < sizeof(threads) / sizeof(threads[0]); i++, k++) {
    snprintf(names[k], sizeof(names[k]), "threads %d: pp_call", threads[i]);
    cs[k] = (contender_t){.name = names[k],
                          .nthreads = threads[i],
                          .fn = pool_call_thread,
                          .pool = pool,
                          .payload = payload,
                          .len = O.payload};
  }
  for (i = 0; i < sizeof(inflight) / sizeof(inflight[0]); i++, k++) {
    snprintf(names[k], sizeof(names[k]), "inflight %d: pp_call_async",
             inflight[i]);
    cs[k] = (contender_t){.name = names[k],
                          .nthreads = 1,
                          .fn = pool_async_thread,
                          .payload = payload,
                          .len = O.payload,
                          .depth = 1,
                          .acallers = inflight[i],
                          .aworkers = 2,
                          .handler = handler};
  }
  header("scale: callers on 2 workers, raw mode");
  for (i = 0; i < k; i++) {
    contender_t *one[1] = {&cs[i]};
    int size = cs[i].fn == pool_async_thread ? cs[i].acallers : cs[i].nthreads;
    if (O.callers > 0 && size > O.callers)
      continue;
    measure(one, 1);
    report("scale", &cs[i], O.payload, NULL);
  }
  O.duration = dur;
  O.rounds = rounds;
  pp_pool_close(pool);
  free(payload);
  return 0;
}

int scen_scale(void) {
  static const int sizes[] = {1, 4, 16, 64, 256, 1024};
  char hbuf[PATH_MAX];
  const char *handler =
      handler_path("fixtures/raw_echo.py", hbuf, sizeof(hbuf));
  foreign_t fl;
  int rc = 0;

  pin_scenario(0);
  printf("\n== scale: zygote pools of 1 to 1024 workers (raw echo)\n");
  foreign_begin(&fl);
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
    if ((O.workers <= 0 || sizes[i] <= O.workers) &&
        scale_pool(sizes[i], handler) != 0)
      rc = -1;
  rc |= scale_callers(handler);
  foreign_report("scale", foreign_end(&fl));
  return rc;
}
