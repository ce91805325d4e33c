/* scale.c -- owns the pool's size: the target the workers are scaled to,
 * a fixed pool's (size: N, pp_pool_scale) and an elastic pool's, which
 * grows while checkouts wait past scale.up_after and shrinks by workers
 * idle for scale.idle_timeout (size: {min, max}, pp_pool_resize).  Does
 * not start or stop processes itself: pool.c spawns a slot, and a slot
 * scaled away stops through the same path as any stop.  Loop thread, lock
 * held, unless a function says otherwise. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* A duration for a reason's text: 5ms, 30s, 2m. */
static void dur_text(uint64_t ms, char *buf, size_t len) {
  if (ms >= 60000 && ms % 60000 == 0)
    snprintf(buf, len, "%llum", (unsigned long long)(ms / 60000));
  else if (ms >= 1000 && ms % 1000 == 0)
    snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
  else
    snprintf(buf, len, "%llums", (unsigned long long)ms);
}

static int slot_gone(const pp__slot_t *slot) {
  return slot->removing && slot->proc == NULL && slot->next == NULL;
}

/* Retire a slot for good (scale down): its worker stops as "scaled down"
 * (PP_EXIT_STOPPED). */
static void remove_slot(pp__slot_t *slot, int force) {
  pp__proc_t *proc = slot->proc;

  slot->removing = 1;
  slot->retiring = 0;
  if (slot->next) {
    pp__proc_fail(slot->next, PP_EXIT_NONE, "scaled down");
  }
  switch (slot->state) {
  case PP_WORKER_BACKOFF:
  case PP_WORKER_FATAL:
    uv_timer_stop(&slot->backoff);
    slot->state = PP_WORKER_EXITED;
    break;
  case PP_WORKER_LEASED:
  case PP_WORKER_BUSY:
    if (force && proc)
      pp__proc_fail(proc, PP_EXIT_NONE, "scaled down (forced)");
    /* Otherwise it goes when checked in. */
    break;
  default:
    if (proc && !proc->dead) {
      slot->state = PP_WORKER_STOPPING;
      pp__proc_fail(proc, PP_EXIT_NONE, "scaled down");
    }
    break;
  }
}

static int live_slots(pp_pool_t *pool) {
  int i, n = 0;

  for (i = 0; i < pool->nslots; i++)
    if (!pool->slots[i]->removing)
      n++;
  return n;
}

void pp__scale_apply(pp_pool_t *pool) {
  int live = live_slots(pool), i, pass;
  pp__slot_t *slot;

  /* Grow: reuse slots that are gone, then add new ones.  A slot started
   * here takes the pool's start path: a zygote fork or a spawn. */
  for (i = 0; i < pool->nslots && live < pool->target_size; i++) {
    slot = pool->slots[i];
    if (!slot_gone(slot) || slot->lease)
      continue;
    slot->removing = 0;
    slot->ncrash = 0;
    live++;
    pp__spawn_slot(slot);
  }
  while (live < pool->target_size) {
    if (pp__slots_reserve(pool, pool->nslots + 1) != 0 ||
        (slot = pp__slot_new(pool, pool->nslots)) == NULL) {
      pp__log(pool, "scale: out of memory at %d workers", live);
      pool->target_size = live;
      break;
    }
    uv_timer_init(pool->loop, &slot->backoff);
    slot->backoff.data = slot;
    pool->slots[pool->nslots++] = slot;
    live++;
    pp__spawn_slot(slot);
  }
  /* Shrink: idle workers first, then those not serving, then busy ones
   * (which go when checked in, or at once with force). */
  for (pass = 0; pass < 3 && live > pool->target_size; pass++) {
    for (i = pool->nslots - 1; i >= 0 && live > pool->target_size; i--) {
      slot = pool->slots[i];
      if (slot->removing)
        continue;
      if (pass == 0 && slot->state != PP_WORKER_IDLE)
        continue;
      if (pass == 1 &&
          (slot->state == PP_WORKER_LEASED || slot->state == PP_WORKER_BUSY))
        continue;
      remove_slot(slot, pool->scale_force);
      live--;
    }
  }
}

/* The target becomes n, for the reason given: counted, kept for status
 * and traced (code: the new target, detail: the reason). */
static void set_target(pp_pool_t *pool, int n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_target(pp_pool_t *pool, int n, const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(pool->scale_reason, sizeof(pool->scale_reason), fmt, ap);
  va_end(ap);
  pool->target_size = n;
  pool->scale_changes++;
  pp__trace(pool, PP_TRACE_SCALE, -1, 0, 0, 0, 0, n, pool->scale_reason);
}

static void arm(pp_pool_t *pool, uint64_t due_ns, uint64_t now);

static void on_scale_timer(uv_timer_t *t) {
  pp_pool_t *pool = t->data;

  pp__lock(pool);
  pool->scale_due_ns = 0;
  pp__scale_check(pool);
  pp__unlock(pool);
  pp__run_pending(pool);
}

/* Arm the scale timer for due_ns (0: stop it). */
static void arm(pp_pool_t *pool, uint64_t due_ns, uint64_t now) {
  if (due_ns == 0) {
    if (pool->scale_due_ns)
      uv_timer_stop(&pool->scale_timer);
    pool->scale_due_ns = 0;
    return;
  }
  if (pool->scale_due_ns == due_ns)
    return;
  pool->scale_due_ns = due_ns;
  uv_timer_start(&pool->scale_timer, on_scale_timer,
                 due_ns > now ? (due_ns - now + 999999) / 1000000 : 0, 0);
}

/* How many checkouts of every kind (leases, pipelined and async calls)
 * have waited since `before` or earlier; *all gets how many wait in all,
 * *workers how many workers they need (a lease takes one; pipelined and
 * async calls share one, as many as its pipeline holds), *next the
 * earliest start of the others (0: none). */
static int waiting_since(pp_pool_t *pool, uint64_t before, int *all,
                         int *workers, uint64_t *next) {
  const pp_config_t *cfg = pool->cfg;
  int depth = cfg->concurrency > cfg->pipeline_depth ? cfg->concurrency
                                                     : cfg->pipeline_depth;
  pp__queue_t *q;
  uint64_t at;
  int n = 0, kind, leases = 0;

  *next = 0;
  *all = 0;
  for (kind = 0; kind < 3; kind++) {
    pp__queue_t *head = kind == 0   ? &pool->waiters
                        : kind == 1 ? &pool->pipe_queue
                                    : &pool->async_queue;
    pp__queue_foreach(q, head) {
      if (kind == 0) {
        pp__waiter_t *w = pp__container_of(q, pp__waiter_t, node);
        if (w->client->dead)
          continue;
        at = w->enqueue_ns;
      } else if (kind == 1) {
        at = pp__container_of(q, struct pp__pcall, node)->start_ns;
      } else {
        at = pp__container_of(q, pp__acall_t, node)->start_ns;
      }
      (*all)++;
      leases += kind == 0;
      if (at <= before)
        n++;
      else if (*next == 0 || at < *next)
        *next = at;
    }
  }
  if (depth < 1)
    depth = 1;
  *workers = leases + (*all - leases + depth - 1) / depth;
  return n;
}

/* Once a checkout has waited past scale.up_after, grow by the workers
 * every checkout waiting needs (pipelined calls share one; a burst's
 * callers arrive within a few ms of each other: the first look takes
 * them all, not a staircase of looks), less the workers
 * already starting or idle for them, at most scale.max_starting starting
 * at once and up to size's max.  Never more than are waiting: growth
 * cannot overshoot the demand.  *due: when to look again (0: nobody
 * waits). */
static void grow(pp_pool_t *pool, uint64_t now, uint64_t *due) {
  uint64_t up = pool->cfg->scale_up_after_ms * 1000000ull, next;
  int late, waiting, need, starting = 0, coming = 0, add, i;
  char after[32];

  if (pool->target_size >= pool->size_max || pool->scale_blocked[0])
    return;
  late = waiting_since(pool, now >= up ? now - up : 0, &waiting, &need, &next);
  if (late == 0) {
    *due = next ? next + up : 0;
    return;
  }
  /* Still waiting: look again when the next one passes up_after, or in
   * up_after at the latest (the starting ones may not suffice). */
  *due = now + (up ? up : 1000000);
  if (next && next + up < *due)
    *due = next + up;
  /* Workers starting will serve some of them, and so will idle ones the
   * loop has not handed over yet (async calls are admitted on its next
   * turn). */
  for (i = 0; i < pool->nslots; i++)
    if (!pool->slots[i]->removing &&
        (pool->slots[i]->state == PP_WORKER_STARTING ||
         pool->slots[i]->state == PP_WORKER_IDLE))
      coming++;
  for (i = 0; i < pool->nslots; i++)
    if (!pool->slots[i]->removing &&
        pool->slots[i]->state == PP_WORKER_STARTING)
      starting++;
  add = need - coming;
  if (add > pool->cfg->scale_max_starting - starting)
    add = pool->cfg->scale_max_starting - starting;
  if (add > pool->size_max - pool->target_size)
    add = pool->size_max - pool->target_size;
  if (add <= 0)
    return;
  dur_text(pool->cfg->scale_up_after_ms, after, sizeof(after));
  set_target(pool, pool->target_size + add, "grow: %d waiting, the oldest > %s",
             waiting, after);
  pp__scale_apply(pool);
}

/* Stop one worker above size's min that has been idle (not busy, not
 * lent) for scale.idle_timeout: the one idle longest.  One at a time: one
 * per look, and the next look on the loop's next turn, so a checkout that
 * arrives meanwhile ends the shrink.  *due: when to look again. */
static void shrink(pp_pool_t *pool, uint64_t now, uint64_t *due) {
  uint64_t idle = pool->cfg->scale_idle_timeout_ms * 1000000ull, at;
  pp__slot_t *slot, *best = NULL;
  pp__queue_t *q;
  char ago[32];
  int i;

  if (pool->target_size <= pool->size_min || pp__waiting(pool) > 0)
    return;
  for (i = 0; i < pool->nslots; i++) {
    slot = pool->slots[i];
    /* A slot that failed for good serves nobody: it goes first. */
    if (!slot->removing && slot->state == PP_WORKER_FATAL) {
      remove_slot(slot, 0);
      set_target(pool, pool->target_size - 1, "shrink: worker %d failed",
                 slot->id);
      *due = now;
      return;
    }
  }
  pp__queue_foreach(q, &pool->idle) {
    slot = pp__container_of(q, pp__slot_t, idle_node);
    if (best == NULL || slot->idle_since_ns < best->idle_since_ns)
      best = slot;
  }
  if (best == NULL)
    return; /* all at work: the next to turn idle arms the timer */
  at = best->idle_since_ns + idle;
  if (now < at) {
    if (*due == 0 || at < *due)
      *due = at;
    return;
  }
  dur_text((now - best->idle_since_ns) / 1000000, ago, sizeof(ago));
  remove_slot(best, 0);
  set_target(pool, pool->target_size - 1, "shrink: worker %d idle %s", best->id,
             ago);
  *due = now; /* the next one, if its window passed too, on the next turn */
}

void pp__scale_check(pp_pool_t *pool) {
  uint64_t now = pp__now_ns(), due = 0;

  PP_ASSERT_LOOP(pool);
  PP_ASSERT_LOCKED(pool);

  if (pool->stopping || pool->finishing) {
    arm(pool, 0, now);
    return;
  }
  if (pool->elastic && !pool->draining) {
    grow(pool, now, &due);
    shrink(pool, now, &due);
  }
  arm(pool, due, now);
}

void pp__scale_soon(pp_pool_t *pool) {
  PP_ASSERT_LOOP(pool);
  if (pool->elastic && !pool->stopping && !pool->finishing)
    arm(pool, pp__now_ns(), pp__now_ns());
}

void pp__scale_waiting(pp_pool_t *pool) {
  PP_ASSERT_LOCKED(pool);
  if (!pool->elastic || pool->scale_due_ns || pool->scale_wanted ||
      pool->target_size >= pool->size_max || pool->stopping)
    return;
  if (pp__on_loop_thread(pool) && !pool->finishing) {
    uint64_t now = pp__now_ns();
    arm(pool, now + pool->cfg->scale_up_after_ms * 1000000ull, now);
    return;
  }
  /* Timers are the loop's: it arms this one at its next turn. */
  pool->scale_wanted = 1;
  pp__wake(pool);
}

void pp__scale_idle(pp_pool_t *pool) {
  PP_ASSERT_LOCKED(pool);
  if (pool->stopping || pool->scale_due_ns || pool->scale_wanted)
    return;
  if (pp__on_loop_thread(pool) && !pool->finishing) {
    uint64_t now = pp__now_ns();
    arm(pool, now + pool->cfg->scale_idle_timeout_ms * 1000000ull, now);
    return;
  }
  pool->scale_wanted = 1;
  pp__wake(pool);
}

void pp__scale_boot_failed(pp__slot_t *slot) {
  pp_pool_t *pool = slot->pool;

  if (!pool->elastic || !pool->was_ready || pool->scale_blocked[0])
    return;
  snprintf(pool->scale_blocked, sizeof(pool->scale_blocked),
           "growth stopped: worker %d failed to boot: %s", slot->id,
           slot->last_error ? slot->last_error : "no reason given");
  pp__log(pool, "%s", pool->scale_blocked);
  pp__trace(pool, PP_TRACE_SCALE, slot->id, slot->generation, 0, 0, 0,
            pool->target_size, pool->scale_blocked);
}

void pp__scale_booted(pp_pool_t *pool) {
  if (pool->scale_blocked[0] == '\0')
    return;
  pool->scale_blocked[0] = '\0';
  pp__log(pool, "a worker booted: growth resumes");
  pp__scale_soon(pool);
}

void pp__scale_config(pp_pool_t *pool) {
  const pp_config_t *cfg = pool->cfg;
  int was = pool->target_size;

  pool->size_min = cfg->size;
  pool->size_max = cfg->elastic ? cfg->size_max : cfg->size;
  pool->elastic = cfg->elastic && cfg->size < cfg->size_max;
  pool->scale_blocked[0] = '\0';
  if (!pool->elastic || was == 0)
    pool->target_size = cfg->size;
  else if (was < pool->size_min)
    pool->target_size = pool->size_min;
  else if (was > pool->size_max)
    pool->target_size = pool->size_max;
  if (was == 0)
    snprintf(pool->scale_reason, sizeof(pool->scale_reason), "config");
  else
    set_target(pool, pool->target_size, "reload");
}

/* ---- the public operations */

int pp_pool_resize(pp_pool_t *pool, int min, int max, int force) {
  pp__queue_t *q;
  uint64_t now = pp__now_ns();
  int target;

  if (min < 1 || min > max || max > 4096)
    return UV_EINVAL;
  pp__lock(pool);
  if (pool->stopping) {
    pp__unlock(pool);
    return PP_ECLOSED;
  }
  /* Idle workers of a pool that was fixed start their idle window now. */
  if (!pool->elastic)
    pp__queue_foreach(q, &pool->idle) {
      pp__container_of(q, pp__slot_t, idle_node)->idle_since_ns = now;
    }
  pool->size_min = min;
  pool->size_max = max;
  pool->elastic = min < max;
  pool->scale_force = force;
  pool->scale_blocked[0] = '\0';
  target = pool->target_size < min   ? min
           : pool->target_size > max ? max
                                     : pool->target_size;
  if (min == max)
    set_target(pool, target, "operator%s", force ? " (force)" : "");
  else
    set_target(pool, target, "operator: {min: %d, max: %d}%s", min, max,
               force ? " (force)" : "");
  pool->maintain_wanted = 1;
  pp__wake(pool);
  pp__unlock(pool);
  return 0;
}

int pp_pool_scale(pp_pool_t *pool, int n, int force) {
  return pp_pool_resize(pool, n, n, force);
}
