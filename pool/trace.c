/* trace.c -- the monotonic clock, trace event emission and diag helpers.
 * Events go to the subscriber given at start, with the pool lock held. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

uint64_t pp__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void pp__trace(pp_pool_t *pool, pp_trace_type_t type, int slot, uint32_t gen,
               int pid, uint64_t lease, uint64_t client, int code,
               const char *detail) {
  pp_trace_event_t ev;

  if (pool->opts.trace == NULL)
    return;
  ev.type = type;
  ev.ts_ns = pp__now_ns();
  ev.slot = slot;
  ev.generation = gen;
  ev.pid = pid;
  ev.lease = lease;
  ev.client = client;
  ev.code = code;
  ev.detail = detail;
  pool->opts.trace(pool, &ev, pool->opts.trace_data);
}

void pp__diag_set(pp_diag_t *diag, const char *fmt, ...) {
  va_list ap;

  if (diag == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(diag->message, sizeof(diag->message), fmt, ap);
  va_end(ap);
}
