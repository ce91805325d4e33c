/* scen_latency.c -- one caller, one worker: the floor beside pp_call and
 * pp_lease_call (latency, raw and JSON mode), and the anatomy of the
 * difference (the floor plus, one at a time, each syscall the pool's call
 * path adds; a profile aid, not part of `all`). */
#include "bench.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* 1. One caller: the floor, pp_call and pp_lease_call on the same handler
 * and payload. */
int scen_latency(int json) {
  pin_scenario(1);
  const char *scen = json ? "latency_json" : "latency_raw";
  char hbuf[PATH_MAX];
  const char *handler =
      handler_path(json ? "fixtures/echo_handlers.py" : "fixtures/raw_echo.py",
                   hbuf, sizeof(hbuf));
  int workers = pick(O.workers, 1), callers = pick(O.callers, 1);
  floor_worker_t *fw = calloc((size_t)workers, sizeof(*fw));
  char *payload = make_payload(O.payload, json);
  size_t len = strlen(payload);
  pp_pool_t *pool;
  char title[160], n1[96], n2[96], n3[96], n4[96];
  int nlease = callers < workers ? callers : workers;

  if (spawn_floor(fw, workers, !json, handler, NULL) != 0)
    return -1;
  pool = open_pool(workers, !json, handler, NULL, NULL);
  if (pool == NULL) {
    close_floor(fw, workers);
    return -1;
  }
  snprintf(n1, sizeof(n1), "floor: C driver <-> worker, blocking");
  snprintf(n4, sizeof(n4), "floor, polling the reply up to 50 us first");
  snprintf(n2, sizeof(n2), "pool: pp_call");
  snprintf(n3, sizeof(n3), "pool: pp_lease_call (lease held)");
  contender_t cf = {.name = n1,
                    .nthreads = workers,
                    .fn = floor_call_thread,
                    .fw = fw,
                    .nfw = workers,
                    .payload = payload,
                    .len = len,
                    .json = json};
  contender_t cp = {.name = n2,
                    .nthreads = callers,
                    .fn = pool_call_thread,
                    .pool = pool,
                    .payload = payload,
                    .len = len,
                    .json = json};
  contender_t cl = {.name = n3,
                    .nthreads = nlease,
                    .fn = pool_lease_thread,
                    .pool = pool,
                    .payload = payload,
                    .len = len,
                    .json = json};
  /* What pp_call does that the floor does not: poll for the reply before
   * sleeping (worker.reply_spin_us).  The same floor workers, polling. */
  contender_t cs4 = {.name = n4,
                     .nthreads = workers,
                     .fn = floor_call_thread,
                     .fw = fw,
                     .nfw = workers,
                     .payload = payload,
                     .len = len,
                     .json = json,
                     .fflags = FLOOR_POLLFIRST | FLOOR_SPIN};
  contender_t *cs[] = {&cf, &cs4, &cp, &cl};

  snprintf(title, sizeof(title),
           "latency, %s mode, %zu B payload, %d caller(s), %d worker(s)",
           json ? "JSON" : "raw", len, callers, workers);
  foreign_t fl;
  foreign_begin(&fl);
  measure(cs, 4);
  double fload = foreign_end(&fl);
  header(title);
  report(scen, &cf, len, NULL);
  report(scen, &cs4, len, &cf);
  report(scen, &cp, len, &cf);
  report(scen, &cl, len, &cf);
  foreign_report(scen, fload);
  pp_pool_close(pool);
  close_floor(fw, workers);
  free(fw);
  free(payload);
  return 0;
}

/* Anatomy of the single-caller overhead: the floor with, one at a time,
 * the syscalls the pool's call path adds (SIGPIPE masking around the
 * write; a non-blocking reply pipe read -> EAGAIN -> poll -> read), then
 * the pool itself with and without SIGPIPE ignored by the program.  One
 * worker process serves every floor variant. */
int scen_anatomy(void) {
  pin_scenario(1);
  const char *scen = "anatomy";
  char hbuf[PATH_MAX];
  const char *handler =
      handler_path("fixtures/raw_echo.py", hbuf, sizeof(hbuf));
  char *payload = make_payload(O.payload, 0);
  struct sigaction ign = {.sa_handler = SIG_IGN}, old;
  floor_worker_t fw, fs;
  pp_pool_t *pa, *pb;

  if (spawn_floor(&fw, 1, 1, handler, NULL) != 0)
    return -1;
  if (floor_spawn_socket(&fs, O.python, worker_py, 1, handler, NULL, 60) != 0) {
    floor_close(&fw);
    return -1;
  }
  pin_pid(fs.pid, pin_worker_cpu());
  pa = open_pool(1, 1, handler, NULL, NULL);
  sigaction(SIGPIPE, &ign, &old);
  pb = open_pool(1, 1, handler, NULL, NULL);
  sigaction(SIGPIPE, &old, NULL);
  if (pa == NULL || pb == NULL) {
    if (pa)
      pp_pool_close(pa);
    if (pb)
      pp_pool_close(pb);
    floor_close(&fw);
    return -1;
  }
#define FC(nm, fl)                                                             \
  {.name = nm,                                                                 \
   .nthreads = 1,                                                              \
   .fn = floor_call_thread,                                                    \
   .fw = &fw,                                                                  \
   .nfw = 1,                                                                   \
   .payload = payload,                                                         \
   .len = O.payload,                                                           \
   .fflags = fl}
  contender_t c0 = FC("floor (blocking read)", 0);
  contender_t c1 = FC("floor + SIGPIPE mask around writev", FLOOR_SIGMASK);
  contender_t c2 = FC("floor + non-blocking read/EAGAIN/poll", FLOOR_POLL);
  contender_t c3 =
      FC("floor + both (the pool's syscalls)", FLOOR_SIGMASK | FLOOR_POLL);
  contender_t c7 = FC("floor + mask + poll first, no EAGAIN read",
                      FLOOR_SIGMASK | FLOOR_POLLFIRST);
  contender_t c9 = FC("floor + mask + poll up to 50 us, then sleep",
                      FLOOR_SIGMASK | FLOOR_POLLFIRST | FLOOR_SPIN);
  contender_t c8 = {.name = "floor over a socketpair, MSG_NOSIGNAL",
                    .nthreads = 1,
                    .fn = floor_call_thread,
                    .fw = &fs,
                    .nfw = 1,
                    .payload = payload,
                    .len = O.payload};
#undef FC
  contender_t c4 = {.name = "pool: pp_lease_call",
                    .nthreads = 1,
                    .fn = pool_lease_thread,
                    .pool = pa,
                    .payload = payload,
                    .len = O.payload};
  contender_t c5 = {.name = "pool: pp_call",
                    .nthreads = 1,
                    .fn = pool_call_thread,
                    .pool = pa,
                    .payload = payload,
                    .len = O.payload};
  contender_t c6 = {.name = "pool: pp_call, SIGPIPE ignored by the program",
                    .nthreads = 1,
                    .fn = pool_call_thread,
                    .pool = pb,
                    .payload = payload,
                    .len = O.payload};
  contender_t *cs[] = {&c0, &c1, &c2, &c3, &c7, &c9, &c8, &c4, &c5, &c6};
  int ncs = (int)(sizeof(cs) / sizeof(cs[0]));
  const char *only = O.only;

  O.only = NULL;
  foreign_t fl;
  foreign_begin(&fl);
  measure(cs, ncs);
  double fload = foreign_end(&fl);
  header("anatomy of the one-caller overhead, raw mode, 1 worker");
  O.only = only;
  for (int i = 0; i < ncs; i++)
    report(scen, cs[i], O.payload, i ? &c0 : NULL);
  foreign_report(scen, fload);
  pp_pool_close(pa);
  pp_pool_close(pb);
  floor_close(&fw);
  floor_close(&fs);
  free(payload);
  return 0;
}
