/* trace.c -- trace event emission and subscriptions.  Events go to the
 * subscriber given at start, with the pool lock held. */
#include "internal.h"

#include <stdlib.h>

void pp__trace(pp_pool_t *pool, pp_trace_type_t type, int slot, uint32_t gen,
               int pid, uint64_t lease, uint64_t client, int code,
               const char *detail) {
  pp_trace_event_t ev;
  int i;

  if (pool->opts.trace == NULL && pool->nsubs == 0)
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
  if (pool->opts.trace)
    pool->opts.trace(pool, &ev, pool->opts.trace_data);
  for (i = 0; i < pool->nsubs; i++)
    pool->subs[i].cb(pool, &ev, pool->subs[i].data);
}

int pp_pool_trace_subscribe(pp_pool_t *pool, pp_trace_cb cb, void *data,
                            int *id) {
  struct pp__sub *p;

  pp__lock(pool);
  p = realloc(pool->subs, (size_t)(pool->nsubs + 1) * sizeof(*p));
  if (p == NULL) {
    pp__unlock(pool);
    return UV_ENOMEM;
  }
  pool->subs = p;
  p[pool->nsubs].id = *id = ++pool->next_sub_id;
  p[pool->nsubs].cb = cb;
  p[pool->nsubs].data = data;
  pool->nsubs++;
  pp__unlock(pool);
  return 0;
}

void pp_pool_trace_unsubscribe(pp_pool_t *pool, int id) {
  int i;

  pp__lock(pool);
  for (i = 0; i < pool->nsubs; i++)
    if (pool->subs[i].id == id) {
      pool->subs[i] = pool->subs[--pool->nsubs];
      break;
    }
  pp__unlock(pool);
}
