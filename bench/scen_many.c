/* scen_many.c -- many callers on few workers: the pool's throughput
 * against the raw floor, blocking and pipelined. */
#include "bench.h"

#include <stdlib.h>

/* 3. Many callers: 64 threads on 2 workers against the raw floor on the
 * same 2 workers at depth 1 and at depth D.  The pool runs at
 * worker.pipeline_depth D too (--pool-depth overrides), and, for
 * reference, a second pool at depth 1 (no pipelining). */
int g_many_depth = -1, g_many_pool_depth = -1;
int g_many_callers = -1, g_many_workers = -1;

int scen_many(void) {
  pin_scenario(0);
  const char *scen = "many";
  char hbuf[PATH_MAX];
  const char *handler =
      handler_path("fixtures/raw_echo.py", hbuf, sizeof(hbuf));
  int workers = pick(O.workers, 2), callers = pick(O.callers, 64);
  int depth = pick(O.depth, 16);
  int pdepth = O.pool_depth > 0 ? O.pool_depth : depth;
  floor_worker_t *fw = calloc((size_t)workers, sizeof(*fw));
  char *payload = make_payload(O.payload, 0);
  pp_pool_t *pool, *pool1 = NULL;
  char title[160], n1[96], n2[96], n3[96], n4[96], n5[96];
  int ncs = 4;

  if (spawn_floor(fw, workers, 1, handler, NULL) != 0)
    return -1;
  pool = open_pool_ex(workers, 1, handler, NULL, pdepth, NULL, NULL);
  if (pool != NULL && pdepth != 1) {
    pool1 = open_pool_ex(workers, 1, handler, NULL, 1, NULL, NULL);
    if (pool1 == NULL) {
      pp_pool_close(pool);
      pool = NULL;
    }
  }
  if (pool == NULL) {
    close_floor(fw, workers);
    return -1;
  }
  g_many_depth = depth;
  g_many_pool_depth = pdepth;
  g_many_callers = callers;
  g_many_workers = workers;
  snprintf(n1, sizeof(n1), "floor: %d workers x depth 1", workers);
  snprintf(n2, sizeof(n2), "floor: %d workers x depth %d (pipelined)", workers,
           depth);
  snprintf(n3, sizeof(n3), "pool: %d callers pp_call, pipeline_depth %d",
           callers, pdepth);
  snprintf(n4, sizeof(n4), "pool: %d callers pp_call, pipeline_depth 1",
           callers);
  snprintf(n5, sizeof(n5), "pool: %d pp_call_async, pipeline_depth %d", callers,
           pdepth);
  contender_t c1 = {.name = n1,
                    .nthreads = workers,
                    .fn = floor_call_thread,
                    .fw = fw,
                    .nfw = workers,
                    .payload = payload,
                    .len = O.payload};
  contender_t cd = {.name = n2,
                    .nthreads = workers,
                    .fn = floor_pipe_thread,
                    .fw = fw,
                    .nfw = workers,
                    .payload = payload,
                    .len = O.payload,
                    .depth = depth};
  contender_t cp = {.name = n3,
                    .nthreads = callers,
                    .fn = pool_call_thread,
                    .pool = pool,
                    .payload = payload,
                    .len = O.payload};
  contender_t cp1 = {.name = n4,
                     .nthreads = callers,
                     .fn = pool_call_thread,
                     .pool = pool1,
                     .payload = payload,
                     .len = O.payload,
                     .ref = 1};
  /* The loop face: one thread, `callers` calls in flight at once. */
  contender_t ca = {.name = n5,
                    .nthreads = 1,
                    .fn = pool_async_thread,
                    .payload = payload,
                    .len = O.payload,
                    .depth = pdepth,
                    .acallers = callers,
                    .aworkers = workers,
                    .handler = handler};
  contender_t *cs[] = {&c1, &cd, &ca, &cp, &cp1};

  if (pool1)
    ncs = 5;
  snprintf(title, sizeof(title),
           "many callers, raw mode, %zu B payload, %d callers, %d workers",
           O.payload, callers, workers);
  foreign_t fl;
  foreign_begin(&fl);
  measure(cs, ncs);
  double fload = foreign_end(&fl);
  header(title);
  for (int i = 0; i < ncs; i++)
    report(scen, cs[i], O.payload, i ? &c1 : NULL);
  foreign_report(scen, fload);
  pp_pool_close(pool);
  if (pool1)
    pp_pool_close(pool1);
  close_floor(fw, workers);
  free(fw);
  free(payload);
  return 0;
}
