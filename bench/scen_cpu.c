/* scen_cpu.c -- a CPU-bound handler: does a second worker double the
 * calls per second? */
#include "bench.h"

#include <stdlib.h>

/* The loop count for --burn-ms of CPU per call (`burn.py --calibrate`),
 * the same for every worker; <= 0 when it fails. */
static long burn_calibrate(const char *handler) {
  char cmd[2 * PATH_MAX + 64], out[64] = "";
  FILE *f;

  snprintf(cmd, sizeof(cmd), "BENCH_BURN_MS=%g '%s' '%s' --calibrate",
           O.burn_ms, O.python, handler);
  if ((f = popen(cmd, "r")) == NULL)
    return -1;
  if (fgets(out, sizeof(out), f) == NULL)
    out[0] = '\0';
  pclose(f);
  return atol(out);
}

/* 4. CPU-bound handler: one worker against two, each with twice as many
 * callers as workers so no worker waits for a caller. */
int scen_cpu(void) {
  pin_scenario(0);
  const char *scen = "cpu";
  char hbuf[PATH_MAX], env[96], fenv[64];
  char *floor_env[] = {fenv, NULL};
  floor_worker_t fw;
  const char *handler =
      handler_path("bench/handlers/burn.py", hbuf, sizeof(hbuf));
  char *payload = make_payload(O.payload, 0);
  pp_pool_t *p1, *p2;
  char title[160];

  /* One loop count for every worker of both pools: the same work per
   * call on both sides of the ratio. */
  long loops = burn_calibrate(handler);
  if (loops <= 0)
    return -1;
  snprintf(env, sizeof(env), "{BENCH_BURN_LOOPS: \"%ld\"}", loops);
  snprintf(fenv, sizeof(fenv), "BENCH_BURN_LOOPS=%ld", loops);
  p1 = open_pool(1, 1, handler, env, NULL);
  p2 = p1 ? open_pool(2, 1, handler, env, NULL) : NULL;
  if (p2 == NULL || spawn_floor(&fw, 1, 1, handler, floor_env) != 0) {
    if (p1)
      pp_pool_close(p1);
    if (p2)
      pp_pool_close(p2);
    return -1;
  }
  contender_t cf = {.name = "floor: 1 worker, blocking",
                    .nthreads = 1,
                    .fn = floor_call_thread,
                    .fw = &fw,
                    .nfw = 1,
                    .payload = payload,
                    .len = O.payload};
  contender_t c1 = {.name = "pool: 1 worker, 2 callers",
                    .nthreads = 2,
                    .fn = pool_call_thread,
                    .pool = p1,
                    .payload = payload,
                    .len = O.payload};
  contender_t c2 = {.name = "pool: 2 workers, 4 callers",
                    .nthreads = 4,
                    .fn = pool_call_thread,
                    .pool = p2,
                    .payload = payload,
                    .len = O.payload};
  contender_t *cs[] = {&c1, &c2, &cf};

  snprintf(title, sizeof(title),
           "CPU-bound handler (~%g ms of CPU per call), raw mode", O.burn_ms);
  foreign_t fl;
  foreign_begin(&fl);
  measure(cs, 3);
  double fload = foreign_end(&fl);
  header(title);
  report(scen, &c1, O.payload, NULL);
  report(scen, &c2, O.payload, &c1);
  report(scen, &cf, O.payload, &c1);
  foreign_report(scen, fload);
  pp_pool_close(p1);
  pp_pool_close(p2);
  floor_close(&fw);
  free(payload);
  return 0;
}
