/* maintain.c -- owns what changes a running pool's workers without losing
 * capacity: recycling (max_requests, max_age, max_rss), rolling restart
 * and reload (a replacement starts beside the old worker and takes over
 * once the old one is idle), and heartbeats of idle workers; asks scale.c
 * to meet the pool's size.  All
 * of it runs on the loop with the lock held: from the tick timer, or after
 * an async wake-up from another thread. */
#include "internal.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void retire(pp__slot_t *slot, const char *why) {
  pp_pool_t *pool = slot->pool;

  if (slot->retiring)
    return;
  slot->retiring = 1;
  slot->retire_why = strcmp(why, "restart") == 0  ? "restarted"
                     : strcmp(why, "reload") == 0 ? "reloaded"
                                                  : "recycled";
  pp__trace(pool, PP_TRACE_RECYCLE, slot->id, slot->generation,
            slot->proc ? slot->proc->pid : 0, 0, 0, 0, why);
}

/* The replacement said HELLO, or the old worker became idle: swap them
 * (any thread: pp__slot_release calls it). */
void pp__slot_swap(pp__slot_t *slot) {
  pp_pool_t *pool = slot->pool;
  pp__proc_t *old = slot->proc, *fresh = slot->next;

  PP_ASSERT_LOCKED(slot->pool);

  slot->next = NULL;
  pp__queue_remove(&slot->idle_node);
  slot->proc = fresh;
  slot->generation = fresh->generation;
  slot->retiring = 0;
  slot->missed = 0;
  slot->pinging = 0;
  pool->recycles++;
  if (old) {
    /* Retired, not crashed: its exit is not counted against the slot. */
    old->retired = 1;
    pp__proc_fail(old, PP_EXIT_NONE,
                  slot->retire_why ? slot->retire_why : "recycled");
    pp__proc_unref(old);
  }
}

void pp__next_ready(pp__slot_t *slot) {
  pp__proc_t *cur = slot->proc;

  /* Take over now if the old worker is not lent out; otherwise when it is
   * checked in (pp__slot_release). */
  if (cur == NULL || cur->dead || slot->state == PP_WORKER_IDLE ||
      slot->state == PP_WORKER_STARTING) {
    if (slot->pinging && cur)
      pp__proc_read_stop(cur);
    pp__slot_swap(slot);
    pp__slot_release(slot);
  }
}

void pp__next_failed(pp__slot_t *slot, pp__proc_t *proc) {
  pp_pool_t *pool = slot->pool;

  slot->next = NULL;
  pp__proc_unref(proc);
  slot->replace_failures++;
  if (slot->replace_failures > (unsigned)pool->cfg->max_restarts) {
    pp__log(pool,
            "worker %d: %u replacements failed to start; keeping the "
            "current worker%s%s",
            slot->id, slot->replace_failures, slot->last_error ? ": " : "",
            pp__slot_error(slot));
    slot->retiring = 0;
    slot->replace_failures = 0;
  }
}

static void start_replacement(pp__slot_t *slot) {
  pp_pool_t *pool = slot->pool;
  pp__proc_t *proc;
  int r;

  r = pool->adapter->spawn(slot, slot->generation + 1, &proc);
  if (r != 0) {
    pp__log(pool, "worker %d: replacement spawn failed: %s", slot->id,
            uv_strerror(r));
    slot->replace_failures++;
    return;
  }
  slot->next = proc;
  proc->cfg_seq = pool->reload_seq;
  pp__proc_limits(proc);
  pp__trace(pool, PP_TRACE_SPAWN, slot->id, proc->generation, proc->pid, 0, 0,
            0, "replacement");
  pp__proc_arm(proc, pool->cfg->startup_timeout_ms);
  pp__proc_read_start(proc);
}

static void heartbeat(pp_pool_t *pool) {
  pp__slot_t *slot;
  pp__proc_t *proc;
  char why[64];
  int i;

  for (i = 0; i < pool->nslots; i++) {
    slot = pool->slots[i];
    proc = slot->proc;
    if (proc == NULL || proc->dead || !proc->hello)
      continue;
    if (slot->pinging) {
      slot->missed++;
      pp__trace(pool, PP_TRACE_HEARTBEAT_MISS, slot->id, proc->generation,
                proc->pid, 0, 0, slot->missed, NULL);
      if (slot->missed >= pool->cfg->heartbeat_misses) {
        snprintf(why, sizeof(why), "missed %d heartbeats", slot->missed);
        pp__log(pool, "worker %d: %s; killed", slot->id, why);
        pp__proc_fail(proc, PP_EXIT_TIMEOUT, why);
      }
      continue;
    }
    if (slot->state != PP_WORKER_IDLE)
      continue;
    /* Out of the idle list while it answers: never lent while silent. */
    pp__queue_remove(&slot->idle_node);
    slot->pinging = 1;
    if (pp__proc_send(proc, PP_FRAME_PING, 0, NULL, 0) != 0) {
      pp__proc_fail(proc, PP_EXIT_NONE, "request pipe closed");
      continue;
    }
    pp__proc_read_start(proc);
  }
}

void pp__on_pong(pp__slot_t *slot) {
  uint64_t idle_since = slot->idle_since_ns;

  if (!slot->pinging)
    return;
  slot->pinging = 0;
  slot->missed = 0;
  pp__proc_read_stop(slot->proc);
  pp__slot_release(slot);
  /* A heartbeat is not work: the idle window goes on. */
  if (slot->state == PP_WORKER_IDLE)
    slot->idle_since_ns = idle_since;
}

int pp__stack_dump(pp__proc_t *proc, uint64_t age_ms, int killing) {
  pp__slot_t *slot = proc->slot;
  pp_pool_t *pool = proc->pool;
  int first = proc->slow_ns != proc->req_start_ns;

  PP_ASSERT_LOCKED(pool);
  proc->slow_ns = proc->req_start_ns;
  if (proc->kind == PP__PROC_CUSTOM) {
    /* No process of ours to signal: no stack, and no buffer for one. */
    if (!killing)
      pp__log(pool,
              "worker %d: request running for %llu ms (worker.slow_request); "
              "a %s adapter's worker has no Python stack to dump",
              slot->id, (unsigned long long)age_ms,
              pool->custom.name ? pool->custom.name : "custom");
    return UV_ENOTSUP;
  }
  /* "" until a dump fills it: a failed signal below leaves no garbage. */
  if (slot->slow_stack == NULL &&
      (slot->slow_stack = calloc(1, PP_SLOW_STACK_BYTES)) == NULL)
    return UV_ENOMEM;
  if (pp__proc_signal(proc, SIGUSR1) != 0)
    return UV_ESRCH; /* exited meanwhile, or not a process of ours */
  slot->slow_stack[0] = '\0';
  slot->slow_len = 0;
  slot->slow_lines = PP__SLOW_LINES;
  slot->slow_gen = proc->generation;
  slot->slow_until_ns = pp__now_ns() + PP__SLOW_WINDOW_NS;
  if (first)
    pool->slow_requests++;
  if (killing && strcmp(proc->detail, PP__IGNORED_CANCEL) == 0)
    pp__log(pool,
            "worker %d (pid %d): killed after %llu ms: %s (%llu ms); its "
            "Python stack follows",
            slot->id, proc->pid, (unsigned long long)age_ms, proc->detail,
            (unsigned long long)pool->cfg->cancel_grace_ms);
  else
    pp__log(pool,
            killing ? "worker %d (pid %d): killed for timeout after %llu ms; "
                      "its Python stack follows"
                    : "worker %d (pid %d): request running for %llu ms "
                      "(worker.slow_request); its Python stack follows",
            slot->id, proc->pid, (unsigned long long)age_ms);
  if (first)
    pp__trace(pool, PP_TRACE_SLOW, slot->id, proc->generation, proc->pid,
              slot->lease ? slot->lease->id : 0,
              slot->lease && slot->lease->client ? slot->lease->client->id : 0,
              age_ms > INT32_MAX ? INT32_MAX : (int)age_ms,
              killing ? "timeout" : NULL);
  return 0;
}

/* A request in flight past worker.slow_request: its stack, once per
 * request. */
static void slow_request(pp__slot_t *slot, uint64_t now) {
  pp__proc_t *proc = slot->proc;
  uint64_t ms = slot->pool->cfg->slow_request_ms, age;

  if (proc->dead || proc->req_start_ns == 0 ||
      proc->slow_ns == proc->req_start_ns || now < proc->req_start_ns)
    return;
  age = (now - proc->req_start_ns) / 1000000;
  if (age >= ms)
    pp__stack_dump(proc, age, 0);
}

void pp__maintain(pp_pool_t *pool, int tick) {
  pp_config_t *cfg = pool->cfg;
  uint64_t now = pp__now_ns();
  pp__slot_t *slot;
  pp__proc_t *proc;
  int i, active = 0;

  PP_ASSERT_LOOP(pool);
  PP_ASSERT_LOCKED(pool);

  if (pool->stopping)
    return;
  pp__scale_apply(pool);
  if (tick && cfg->heartbeat_ms &&
      now - pool->last_heartbeat_ns >=
          cfg->heartbeat_ms * 1000000ull - 1000000) {
    pool->last_heartbeat_ns = now;
    heartbeat(pool);
  }
  for (i = 0; i < pool->nslots; i++) {
    slot = pool->slots[i];
    proc = slot->proc;
    if (slot->next)
      active++;
    if (proc == NULL || proc->dead || !proc->hello)
      continue;
    if (tick && cfg->slow_request_ms)
      slow_request(slot, now);
    if (slot->removing || slot->retiring)
      continue;
    if (proc->max_requests && proc->requests >= proc->max_requests)
      retire(slot, "max_requests");
    else if (cfg->max_age_ms &&
             now - proc->ready_ns >= cfg->max_age_ms * 1000000ull)
      retire(slot, "max_age");
    else if (tick && cfg->max_rss && pp__proc_rss(proc) > cfg->max_rss)
      retire(slot, "max_rss");
  }
  for (i = 0; i < pool->nslots && active < cfg->max_recycling; i++) {
    slot = pool->slots[i];
    if (!slot->retiring || slot->next || slot->removing)
      continue;
    if (slot->proc == NULL || slot->proc->dead ||
        (slot->state != PP_WORKER_IDLE && slot->state != PP_WORKER_LEASED &&
         slot->state != PP_WORKER_BUSY)) {
      slot->retiring = 0; /* a fresh process is on its way anyway */
      continue;
    }
    start_replacement(slot);
    active++;
  }
  /* An elastic pool's idle workers are looked at on the tick (no timer
   * of its own while every worker is at work). */
  pp__scale_check(pool);
}

static void on_tick(uv_timer_t *t) {
  pp_pool_t *pool = t->data;

  pp__lock(pool);
  pp__maintain(pool, 1);
  pp__unlock(pool);
  pp__run_pending(pool);
}

void pp__tick_start(pp_pool_t *pool) {
  uint64_t ms = 1000;

  if (pool->cfg->heartbeat_ms && pool->cfg->heartbeat_ms < ms)
    ms = pool->cfg->heartbeat_ms;
  /* worker.slow_request is checked on the tick: at least as often. */
  if (pool->cfg->slow_request_ms && pool->cfg->slow_request_ms < ms)
    ms = pool->cfg->slow_request_ms < 10 ? 10 : pool->cfg->slow_request_ms;
  uv_timer_start(&pool->tick, on_tick, ms, ms);
}

/* A worker of the reloaded config failed to boot before any said HELLO:
 * the config before comes back for every later start, the replacements
 * still on their way stop, and no slot is left retiring toward the new
 * config.  Status and `poolctl reload` show why. */
void pp__reload_rollback(pp__slot_t *slot, int replacement) {
  pp_pool_t *pool = slot->pool;
  struct pp__retired *prev = pool->reload_prev;
  pp_config_t *bad = pool->cfg;
  char *bad_python = pool->python;
  uint32_t base = pool->reload_base;
  pp__slot_t *s;
  int i;

  pool->reload_pending = 0;
  /* The failed config takes the old one's place among the retired (a
   * thread may still read it); the old one is live again. */
  pool->cfg = prev->cfg;
  pool->python = prev->python;
  prev->cfg = bad;
  prev->python = bad_python;
  pool->reload_seq++;
  if (pool->zygote)
    pp__zygote_retire(pool); /* the next fork starts one of the old config */
  pp__scale_config(pool);
  snprintf(pool->reload_error, sizeof(pool->reload_error),
           "reload rolled back: worker %d%s failed to boot: %s", slot->id,
           replacement ? "'s replacement" : " (new config)",
           slot->last_error ? slot->last_error : "no reason given");
  pp__log(pool, "%s; the pool keeps its previous config", pool->reload_error);
  for (i = 0; i < pool->nslots; i++) {
    s = pool->slots[i];
    if (s->retiring && s->retire_why && strcmp(s->retire_why, "reloaded") == 0)
      s->retiring = 0;
    s->replace_failures = 0;
    if (s->next && s->next->cfg_seq > base)
      pp__proc_fail(s->next, PP_EXIT_STOPPED, "reload rolled back");
    if (s->proc && !s->proc->hello && s->proc->cfg_seq > base)
      pp__proc_fail(s->proc, PP_EXIT_STOPPED, "reload rolled back");
  }
  pool->maintain_wanted = 1; /* scale back to the old size */
  pp__wake(pool);
}

/* ---- the public operations */

static int request(pp_pool_t *pool) {
  if (pool->stopping)
    return PP_ECLOSED;
  pool->maintain_wanted = 1;
  pp__wake(pool);
  return 0;
}

int pp_pool_restart(pp_pool_t *pool, int id) {
  int i, r;

  pp__lock(pool);
  if (id >= pool->nslots || (id >= 0 && pool->slots[id]->removing)) {
    pp__unlock(pool);
    return UV_EINVAL;
  }
  for (i = 0; i < pool->nslots; i++)
    if ((id < 0 || i == id) && !pool->slots[i]->removing)
      retire(pool->slots[i], "restart");
  r = request(pool);
  pp__unlock(pool);
  return r;
}

int pp_pool_reload(pp_pool_t *pool, const pp_config_t *cfg, pp_diag_t *diag) {
  pp_config_t *copy = NULL;
  struct pp__retired *old;
  const char *bad = NULL;
  char *python = NULL;
  int r, i;

  if ((r = pp_config_validate(cfg, diag)) != 0)
    return r;
  if (strcmp(cfg->name, pool->cfg->name) != 0)
    bad = "name";
  else if (strcmp(cfg->adapter, pool->cfg->adapter) != 0)
    bad = "adapter";
  else if ((cfg->socket == NULL) != (pool->cfg->socket == NULL) ||
           (cfg->socket && strcmp(cfg->socket, pool->cfg->socket) != 0))
    bad = "control.socket";
  else if (cfg->concurrency != pool->cfg->concurrency)
    /* Workers of both kinds would serve one ring at once: in-order ones
     * and out-of-order ones. */
    bad = "worker.concurrency";
  else if ((cfg->listen == NULL) != (pool->cfg->listen == NULL) ||
           (cfg->listen && strcmp(cfg->listen, pool->cfg->listen) != 0))
    bad = "listen.address";
  else
    bad = pp__confine_reload_bad(pool->cfg, cfg);
  if (bad) {
    pp__diag_set(diag, "cannot change on reload; restart the pool");
    if (diag)
      snprintf(diag->key, sizeof(diag->key), "%s", bad);
    return PP_ECONFIG;
  }
  if ((r = pp_config_copy(cfg, &copy)) != 0)
    return r;
  /* Resolve the interpreter before taking the lock: a shim is run once. */
  if ((r = pp__resolve_python(copy->command[0], &python, diag)) != 0) {
    pp_config_free(copy);
    return r;
  }
  old = malloc(sizeof(*old));
  pp__lock(pool);
  if (pool->stopping || old == NULL) {
    pp__unlock(pool);
    pp_config_free(copy);
    free(python);
    free(old);
    return old ? PP_ECLOSED : UV_ENOMEM;
  }
  /* Threads may still read the old config: it lives until the pool
   * closes. */
  old->cfg = pool->cfg;
  old->python = pool->python;
  old->next = pool->retired;
  pool->retired = old;
  pool->cfg = copy;
  pool->python = python;
  /* A reload over one not yet confirmed rolls back to the config that
   * was confirmed, not to the one in between. */
  if (!pool->reload_pending) {
    pool->reload_base = pool->reload_seq;
    pool->reload_prev = old;
  }
  pool->reload_seq++;
  pool->reload_pending = 1;
  pool->reload_error[0] = '\0';
  if (pool->zygote)
    pp__zygote_retire(pool);
  pp__scale_config(pool);
  for (i = 0; i < pool->nslots; i++)
    if (!pool->slots[i]->removing)
      retire(pool->slots[i], "reload");
  pp__trace(pool, PP_TRACE_RELOAD, -1, 0, 0, 0, 0, copy->size, NULL);
  r = request(pool);
  pp__unlock(pool);
  return r;
}
