/* scen_elastic.c -- an elastic pool against a fixed one under bursty load
 * (issue 17): idle, then a burst of 64 callers, then idle again, a few
 * cycles, on a pool of size {min: 1, max: 16} and on a fixed pool of 16,
 * both forked from a zygote, one after the other in this run.  Reported
 * side by side: the queue wait of the calls in the bursts (p50, p99), the
 * worker-seconds (live workers summed over the run's time) and the peak
 * of the workers' summed PSS (the zygote's added). */
#include "bench.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EL_CALLERS 64 /* callers in a burst */
#define EL_CALLS 8    /* calls each caller makes per burst, back to back */
#define EL_WORK_MS 10 /* each call: the handler sleeps this long */
#define EL_CYCLES 3   /* idle + burst */
#define EL_IDLE_S 1.0 /* idle before each burst, and after the last */
#define EL_SAMPLE_MS 5

double g_el_p50 = -1, g_el_p99 = -1, g_fx_p50 = -1, g_fx_p99 = -1;
double g_el_ws = -1, g_fx_ws = -1, g_el_pss = -1, g_fx_pss = -1;

typedef struct burst {
  pp_pool_t *pool;
  double *waits; /* ms, one per call of every burst */
  int nwaits, errors;
  pthread_mutex_t mu;
  /* the sampler */
  volatile int stop;
  double worker_s; /* live workers summed over time */
  int peak_live;
} burst_t;

/* PPBENCH_ELASTIC_TRACE=1: the pool's scale, spawn and hello events on
 * stderr, in ms since the pool opened (to see how fast it grows). */
static uint64_t trace_t0;
static void on_trace(pp_pool_t *pool, const pp_trace_event_t *ev, void *data) {
  (void)pool;
  (void)data;
  if (ev->type == PP_TRACE_SCALE || ev->type == PP_TRACE_SPAWN ||
      ev->type == PP_TRACE_HELLO || ev->type == PP_TRACE_EXIT)
    fprintf(stderr, "%9.3f ms %s slot %d code %d %s\n",
            (double)(bench_now_ns() - trace_t0) / 1e6, pp_trace_name(ev->type),
            ev->slot, ev->code, ev->detail ? ev->detail : "");
}

static void *caller(void *arg) {
  burst_t *b = arg;
  pp_buf_t reply = {0};
  char args[16];
  double w[EL_CALLS];
  int n = 0, bad = 0;

  snprintf(args, sizeof(args), "%d", EL_WORK_MS);
  for (int i = 0; i < EL_CALLS; i++) {
    uint64_t t0 = bench_now_ns();
    if (pp_call_cmd(b->pool, "work", args, &reply, 120000, NULL) != 0) {
      bad++;
      continue;
    }
    /* The handler's start, on the same clock (CLOCK_MONOTONIC). */
    uint64_t started = strtoull(reply.data, NULL, 10);
    w[n++] = started > t0 ? (double)(started - t0) / 1e6 : 0;
  }
  pp_buf_free(&reply);
  pthread_mutex_lock(&b->mu);
  memcpy(b->waits + b->nwaits, w, (size_t)n * sizeof(*w));
  b->nwaits += n;
  b->errors += bad;
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

/* Every EL_SAMPLE_MS: the workers alive (starting, idle, leased, busy;
 * stopping ones too until they are reaped), summed over time. */
static void *sampler(void *arg) {
  burst_t *b = arg;
  uint64_t last = bench_now_ns(), now;
  pp_status_t st;
  int live, i;

  while (!b->stop) {
    sleep_s(EL_SAMPLE_MS / 1000.0);
    if (pp_pool_status(b->pool, &st) != 0)
      continue;
    live = 0;
    for (i = 0; i < st.nworkers; i++)
      if (st.workers[i].pid > 0 && st.workers[i].state != PP_WORKER_EXITED &&
          st.workers[i].state != PP_WORKER_BACKOFF &&
          st.workers[i].state != PP_WORKER_FATAL)
        live++;
    pp_status_free(&st);
    now = bench_now_ns();
    b->worker_s += (double)live * (double)(now - last) / 1e9;
    last = now;
    if (live > b->peak_live)
      b->peak_live = live;
  }
  return NULL;
}

/* The workers' PSS summed, and the zygote's (our child running
 * portpool_zygote.py), in MiB. */
static double pool_pss(pp_pool_t *pool) {
  return (pool_workers_mem(pool).pss + children_mem("portpool_zygote.py").pss) /
         1048576.0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double quantile(double *v, int n, double q) {
  int i = (int)(q * (double)n + 0.999999) - 1;

  if (n == 0)
    return -1;
  return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* One pool through EL_CYCLES cycles; its figures into the four outputs. */
static int run_pool(const char *size, double *p50, double *p99, double *ws,
                    double *pss, int *peak, int *errors) {
  char hbuf[PATH_MAX];
  const char *handler =
      handler_path("bench/handlers/burst.py", hbuf, sizeof(hbuf));
  pp_config_t *cfg = bench_config(1, 0, handler, NULL, 1, "zygote");
  pthread_t th[EL_CALLERS], samp;
  burst_t b;
  pp_diag_t d;
  double peak_pss = 0, m;
  int c, i, r;

  if (cfg == NULL || cfg_set(cfg, "size", size) ||
      /* The bench compresses time: idle phases of a second stand for
       * minutes, so idle workers go after 250 ms, not 30 s. */
      cfg_set(cfg, "scale.idle_timeout", "250ms") ||
      /* Forks from the zygote are cheap: a burst may start as many as
       * wait (the default, 4, suits spawned workers). */
      cfg_set(cfg, "scale.max_starting", "16") ||
      /* A burst of short calls: grow after 1 ms of waiting, not the
       * default 5 ms (a 10 ms call's caller would wait half a call more
       * before growth even begins). */
      cfg_set(cfg, "scale.up_after", "1ms")) {
    pp_config_free(cfg);
    return -1;
  }
  memset(&b, 0, sizeof(b));
  pthread_mutex_init(&b.mu, NULL);
  b.waits = calloc(EL_CYCLES * EL_CALLERS * EL_CALLS, sizeof(double));
  pp_pool_options_t o;
  memset(&o, 0, sizeof(o));
  if (getenv("PPBENCH_ELASTIC_TRACE"))
    o.trace = on_trace;
  trace_t0 = bench_now_ns();
  r = pp_pool_open(cfg, &o, &b.pool, &d);
  pp_config_free(cfg);
  if (r != 0 || b.waits == NULL) {
    fprintf(stderr, "ppbench: elastic: pp_pool_open: %s: %s\n", pp_strerror(r),
            d.message);
    free(b.waits);
    return -1;
  }
  pin_pool(b.pool);
  pthread_create(&samp, NULL, sampler, &b);
  for (c = 0; c < EL_CYCLES; c++) {
    sleep_s(EL_IDLE_S);
    for (i = 0; i < EL_CALLERS; i++)
      pthread_create(&th[i], NULL, caller, &b);
    for (i = 0; i < EL_CALLERS; i++)
      pthread_join(th[i], NULL);
    /* The most workers a burst had are still there (idle_timeout). */
    if ((m = pool_pss(b.pool)) > peak_pss)
      peak_pss = m;
  }
  sleep_s(EL_IDLE_S);
  b.stop = 1;
  pthread_join(samp, NULL);
  pp_pool_close(b.pool);
  qsort(b.waits, (size_t)b.nwaits, sizeof(double), cmp_double);
  *p50 = quantile(b.waits, b.nwaits, 0.50);
  *p99 = quantile(b.waits, b.nwaits, 0.99);
  *ws = b.worker_s;
  *pss = peak_pss;
  *peak = b.peak_live;
  *errors = b.errors;
  free(b.waits);
  pthread_mutex_destroy(&b.mu);
  return 0;
}

/* 8. Elastic pools: see the top of the file. */
int scen_elastic(void) {
  const char *scen = "elastic";
  double ep50, ep99, ews, epss, fp50, fp99, fws, fpss;
  int epeak, fpeak, eerr, ferr;
  foreign_t fl;

  pin_scenario(0);
  printf("\n== elastic: %d cycles of %.1f s idle then %d callers x %d calls "
         "of a %d ms handler (bench/handlers/burst.py), zygote; "
         "{min: 1, max: 16} vs 16 fixed\n",
         EL_CYCLES, EL_IDLE_S, EL_CALLERS, EL_CALLS, EL_WORK_MS);
  foreign_begin(&fl);
  if (run_pool("{min: 1, max: 16}", &ep50, &ep99, &ews, &epss, &epeak, &eerr) !=
          0 ||
      run_pool("16", &fp50, &fp99, &fws, &fpss, &fpeak, &ferr) != 0)
    return -1;
  double fload = foreign_end(&fl);

  figure(scen, "elastic {min: 1, max: 16}: queue wait p50 in bursts", ep50,
         "ms", "a call's start to its handler's start");
  figure(scen, "fixed 16: queue wait p50 in bursts", fp50, "ms",
         "a call's start to its handler's start");
  figure(scen, "elastic {min: 1, max: 16}: queue wait p99 in bursts", ep99,
         "ms", "a call's start to its handler's start");
  figure(scen, "fixed 16: queue wait p99 in bursts", fp99, "ms",
         "a call's start to its handler's start");
  figure(scen, "elastic {min: 1, max: 16}: worker-seconds", ews, "s",
         "live workers summed over the run (sampled every 5 ms)");
  figure(scen, "fixed 16: worker-seconds", fws, "s",
         "live workers summed over the run (sampled every 5 ms)");
  figure(scen, "elastic {min: 1, max: 16}: peak summed PSS", epss, "MiB",
         "workers and zygote, at the end of a burst");
  figure(scen, "fixed 16: peak summed PSS", fpss, "MiB",
         "workers and zygote, at the end of a burst");
  figure(scen, "elastic {min: 1, max: 16}: most workers alive", epeak,
         "workers", "sampled");
  printf("  elastic/fixed: p50 wait %.2fx, p99 wait %.2fx, worker-seconds "
         "%.2fx, peak PSS %.2fx (failed calls: %d elastic, %d fixed)\n",
         fp50 > 0 ? ep50 / fp50 : 0, fp99 > 0 ? ep99 / fp99 : 0,
         fws > 0 ? ews / fws : 0, fpss > 0 ? epss / fpss : 0, eerr, ferr);
  foreign_report(scen, fload);
  if (eerr == 0 && ferr == 0) {
    g_el_p50 = ep50, g_el_p99 = ep99, g_el_ws = ews, g_el_pss = epss;
    g_fx_p50 = fp50, g_fx_p99 = fp99, g_fx_ws = fws, g_fx_pss = fpss;
  }
  return 0;
}
