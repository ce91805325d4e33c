/* scen_prewarm.c -- pre-warm: how long a pool of workers with a slow
 * import takes to be ready, against one such worker. */
#include "bench.h"

double g_prewarm_1 = -1, g_prewarm_n = -1;
double g_prewarm_s1 = -1, g_prewarm_sn = -1;

static double median3(const double *v) {
  double a = v[0], b = v[1], c = v[2];

  if (a > b) {
    double t = a;
    a = b;
    b = t;
  }
  if (b > c)
    b = c;
  return a > b ? a : b;
}

/* 6. Pre-warm: time to ready of 1 and of N workers whose handler module
 * sleeps at import. */
int scen_prewarm(void) {
  pin_scenario(0);
  const char *scen = "prewarm";
  char hbuf[PATH_MAX], env[64], name[96];
  const char *handler =
      handler_path("fixtures/slow_start.py", hbuf, sizeof(hbuf));
  int n = O.prewarm_workers, i, k;
  double t1 = 0, tn = 0, s1[3], sn[3], q1[3], qn[3];
  pp_pool_t *pool;

  foreign_t fl;
  snprintf(env, sizeof(env), "{PP_SLOW_START: \"%g\"}", O.slow_start);
  printf("\n== pre-warm: handler module sleeps %g s at import\n", O.slow_start);
  foreign_begin(&fl);
  /* Each a single event of ~1.6 s: three of each, interleaved (1, n, 1, n,
   * ...), and the median of each.  Then the same with `python -S`: what
   * the interpreter's site hooks cost (this machine's pyenv runs .pth
   * files that import certifi: ~45 ms of CPU per start). */
  for (k = 0; k < 2; k++) {
    g_python_flag = k ? "-S" : NULL;
    for (i = 0; i < 3; i++) {
      if ((pool = open_pool(1, 0, handler, env, k ? &q1[i] : &s1[i])) == NULL)
        return -1;
      pp_pool_close(pool);
      if ((pool = open_pool(n, 0, handler, env, k ? &qn[i] : &sn[i])) == NULL)
        return -1;
      pp_pool_close(pool);
    }
  }
  g_python_flag = NULL;
  t1 = median3(s1);
  tn = median3(sn);
  g_prewarm_s1 = median3(q1);
  g_prewarm_sn = median3(qn);
  figure(scen, "pool: 1 worker, pp_pool_open until ready", t1, "s", NULL);
  snprintf(name, sizeof(name), "pool: %d workers, pp_pool_open until ready", n);
  figure(scen, name, tn, "s", NULL);
  figure(scen, "pool: 1 worker, python -S (no site hooks)", g_prewarm_s1, "s",
         NULL);
  snprintf(name, sizeof(name), "pool: %d workers, python -S (no site hooks)",
           n);
  figure(scen, name, g_prewarm_sn, "s", NULL);
  foreign_report(scen, foreign_end(&fl));
  g_prewarm_1 = t1;
  g_prewarm_n = tn;
  return 0;
}
