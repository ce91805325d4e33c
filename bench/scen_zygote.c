/* scen_zygote.c -- zygote start: N workers whose handler's import burns
 * CPU, spawned one by one against forked from a zygote: time to ready and
 * the workers' summed memory. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One JSON call of `cmd` on every worker of the pool, each through its own
 * lease so that every worker answers one. */
static int call_each(pp_pool_t *pool, int n, const char *cmd) {
  pp_lease_t *leases[64];
  pp_buf_t reply = {0};
  char req[128];
  int i, got = 0, bad = 0;

  snprintf(req, sizeof(req), "{\"cmd\":\"%s\",\"args\":1}", cmd);
  if (n > 64)
    n = 64;
  for (i = 0; i < n; i++)
    if (pp_lease_acquire(pool, NULL, 60000, &leases[got], NULL) == 0)
      got++;
  for (i = 0; i < got; i++)
    if (pp_lease_call(leases[i], req, strlen(req), 60000, &reply, NULL) != 0)
      bad++;
  for (i = 0; i < got; i++)
    pp_checkin(leases[i]);
  pp_buf_free(&reply);
  return got == n && bad == 0 ? 0 : -1;
}

double g_zyg_1 = -1, g_zyg_spawn_n = -1, g_zyg_n = -1;
double g_zyg_pss_spawn = -1, g_zyg_pss = -1;       /* MiB */
double g_zyg_pss_spawn_gc = -1, g_zyg_pss_gc = -1; /* MiB */

/* Pool-side figures of one N-worker pool of the burning handler: time to
 * ready, and its workers' memory after one call each, then after a full
 * gc.collect() in each. */
static int zygote_pool(const char *start, int n, const char *handler,
                       const char *env, double *t, memsum_t *after_call,
                       memsum_t *after_gc, memsum_t *zyg) {
  pp_pool_t *pool = open_pool_ex(n, 0, handler, env, 1, start, t);

  if (pool == NULL)
    return -1;
  if (call_each(pool, n, "echo") != 0)
    fprintf(stderr, "ppbench: %s pool: a call failed\n", start);
  sleep_s(0.05);
  *after_call = pool_workers_mem(pool);
  if (zyg)
    *zyg = children_mem("portpool_zygote.py");
  if (call_each(pool, n, "gc_collect") != 0)
    fprintf(stderr, "ppbench: %s pool: gc_collect failed\n", start);
  sleep_s(0.05);
  *after_gc = pool_workers_mem(pool);
  pp_pool_close(pool);
  return 0;
}

/* 7. Zygote start: N workers whose handler's import burns S s of CPU.
 * Time to ready of one spawned worker (one import: the baseline), of N
 * spawned workers (N imports on the machine's CPUs) and of N workers
 * forked from a zygote (one import, N forks); the workers' summed PSS in
 * both start modes, each pool measured alone. */
int scen_zygote(void) {
  pin_scenario(0);
  const char *scen = "zygote";
  char hbuf[PATH_MAX], env[64], name[128];
  const char *handler =
      handler_path("bench/handlers/burn_import.py", hbuf, sizeof(hbuf));
  int n = O.prewarm_workers;
  double t1 = 0, tz = 0, ts = 0;
  memsum_t sc, sg, zc, zg, zp = {0};
  pp_pool_t *pool;
  foreign_t fl;

  snprintf(env, sizeof(env), "{PP_BURN_IMPORT: \"%g\"}", O.burn_import);
  printf("\n== zygote start: handler module burns %g s of CPU at import "
         "(bench/handlers/burn_import.py)\n",
         O.burn_import);
  foreign_begin(&fl);
  /* The baseline and the zygote pool back to back, the long spawn last. */
  if ((pool = open_pool_ex(1, 0, handler, env, 1, "spawn", &t1)) == NULL)
    return -1;
  pp_pool_close(pool);
  if (zygote_pool("zygote", n, handler, env, &tz, &zc, &zg, &zp) != 0)
    return -1;
  if (zygote_pool("spawn", n, handler, env, &ts, &sc, &sg, NULL) != 0)
    return -1;
  double fload = foreign_end(&fl);

  /* Notes are the same in every run (report.py shows the first run's):
   * per-run numbers go in figures of their own. */
  figure(scen, "spawn: 1 worker, pp_pool_open until ready", t1, "s",
         "one import: the baseline");
  snprintf(name, sizeof(name), "spawn: %d workers, pp_pool_open until ready",
           n);
  figure(scen, name, ts, "s", "%d imports at once on %ld CPUs", n,
         sysconf(_SC_NPROCESSORS_ONLN));
  snprintf(name, sizeof(name), "zygote: %d workers, pp_pool_open until ready",
           n);
  figure(scen, name, tz, "s", "one import in the zygote, then %d forks", n);
#define MIB(x) ((x) / 1048576.0)
  snprintf(name, sizeof(name), "spawn: %d workers, summed PSS", n);
  figure(scen, name, MIB(sc.pss), "MiB", "after one call on each");
  snprintf(name, sizeof(name), "zygote: %d workers, summed PSS", n);
  figure(scen, name, MIB(zc.pss), "MiB", "after one call on each");
  snprintf(name, sizeof(name), "spawn: %d workers, summed private memory", n);
  figure(scen, name, MIB(sc.priv), "MiB",
         "Private_Clean + Private_Dirty, after one call on each");
  snprintf(name, sizeof(name), "zygote: %d workers, summed private memory", n);
  figure(scen, name, MIB(zc.priv), "MiB",
         "Private_Clean + Private_Dirty, after one call on each");
  figure(scen, "zygote: the zygote process itself, PSS", MIB(zp.pss), "MiB",
         "not in the workers' sum");
  snprintf(name, sizeof(name), "spawn: %d workers, summed PSS after gc", n);
  figure(scen, name, MIB(sg.pss), "MiB",
         "after a full gc.collect() in each (handler's gc_collect)");
  snprintf(name, sizeof(name), "zygote: %d workers, summed PSS after gc", n);
  figure(scen, name, MIB(zg.pss), "MiB",
         "after a full gc.collect() in each (handler's gc_collect)");
  foreign_report(scen, fload);
  g_zyg_1 = t1;
  g_zyg_spawn_n = ts;
  g_zyg_n = tz;
  if (sc.n == n && zc.n == n) {
    g_zyg_pss_spawn = MIB(sc.pss);
    g_zyg_pss = MIB(zc.pss);
  }
  if (sg.n == n && zg.n == n) {
    g_zyg_pss_spawn_gc = MIB(sg.pss);
    g_zyg_pss_gc = MIB(zg.pss);
  }
#undef MIB
  return 0;
}
