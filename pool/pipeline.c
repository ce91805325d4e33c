/* pipeline.c -- owns pipelined one-shot calls (worker.pipeline_depth > 1):
 * up to that many pp_call requests queued on one worker, answered in
 * order, without a hop through the loop.  Each call takes the next place
 * in its worker's ring and writes its request under the worker's write
 * lock, so write order is id order; only the call at the head of the ring
 * reads, and when its reply is in it hands the reading to the next one
 * (whose reply may already sit in the read buffer).  A lease still gets a
 * worker to itself: pipelined calls only use workers nobody leases. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static struct pp__pcall *place(pp__slot_t *slot, int k) {
  return &slot->ring[(slot->ring_head + k) % slot->ring_cap];
}

static int ring_init(pp__slot_t *slot, int depth) {
  int i;

  if (slot->ring)
    return slot->ring_cap >= depth ? 0 : UV_EINVAL;
  slot->ring = calloc((size_t)depth, sizeof(*slot->ring));
  if (slot->ring == NULL)
    return UV_ENOMEM;
  for (i = 0; i < depth; i++)
    uv_cond_init(&slot->ring[i].cond);
  slot->ring_cap = depth;
  slot->ring_head = slot->shared = 0;
  if (!slot->wlock_init) {
    uv_mutex_init(&slot->wlock);
    slot->wlock_init = 1;
  }
  return 0;
}

/* The worker with the fewest calls queued, below the depth; an idle one
 * counts as zero.  NULL when every worker is full, leased or not ready. */
static pp__slot_t *pick(pp_pool_t *pool, int depth) {
  pp__slot_t *best = NULL, *slot;
  int i;

  for (i = 0; i < pool->nslots; i++) {
    slot = pool->slots[i];
    if (slot->removing || slot->proc == NULL || slot->proc->dead ||
        !slot->proc->hello || slot->lease != NULL || slot->pinging)
      continue;
    if (slot->shared == 0 && slot->state != PP_WORKER_IDLE)
      continue;
    if (slot->shared >= depth || (slot->ring && slot->ring_cap < depth))
      continue;
    /* Never queue behind calls to a process that has been replaced. */
    if (slot->shared > 0 && place(slot, 0)->proc != slot->proc)
      continue;
    if (best == NULL || slot->shared < best->shared)
      best = slot;
    if (best->shared == 0)
      break;
  }
  return best;
}

/* Every call still queued on slot fails with its code (lock held). */
static void fail_all(pp__slot_t *slot, int status, const char *why) {
  struct pp__pcall *c;

  while (slot->shared > 0) {
    c = place(slot, 0);
    c->done = 1;
    c->status = status;
    pp__diag_set(c->diag, "%s", why);
    uv_cond_signal(&c->cond);
    slot->ring_head = (slot->ring_head + 1) % slot->ring_cap;
    slot->shared--;
  }
}

/* The call at the head reads one frame for itself (lock held on entry and
 * exit; released while reading). */
static void read_head(pp_pool_t *pool, pp__slot_t *slot, pp__proc_t *proc,
                      uint64_t deadline, uint64_t ms) {
  struct pp__pcall *c = place(slot, 0);
  pp_frame_t f;
  long used;
  int r = 0;

  slot->reading = 1;
  pp__unlock(pool);
  used = pp__read_frame(proc, deadline, &f);
  if (used > 0) {
    if ((f.type != PP_FRAME_REPLY && f.type != PP_FRAME_ERROR) ||
        f.id != c->id)
      r = PP_EPROTO;
    else if (pp__reply_store(c->reply, f.payload, f.len) != 0)
      r = UV_ENOMEM;
    else if (f.type == PP_FRAME_ERROR)
      r = PP_EHANDLER;
  } else {
    r = (int)used;
  }
  if (r == PP_ECRASHED)
    pp__wait_reaped(proc, pool->cfg->kill_grace_ms + 1000);
  pp__lock(pool);
  slot->reading = 0;
  if (used > 0) {
    memmove(proc->rbuf, proc->rbuf + used, proc->rlen - (size_t)used);
    proc->rlen -= (size_t)used;
  }
  switch (r) {
  case 0:
  case PP_EHANDLER:
  case UV_ENOMEM:
    c->done = 1;
    c->status = r;
    if (r == PP_EHANDLER)
      pp__diag_set(c->diag, "handler raised an exception");
    slot->ring_head = (slot->ring_head + 1) % slot->ring_cap;
    slot->shared--;
    proc->requests++;
    slot->requests_total++;
    if (r != 0)
      pool->errors++;
    /* The next call in line reads now. */
    if (slot->shared > 0)
      uv_cond_signal(&place(slot, 0)->cond);
    break;
  case PP_ETIMEDOUT:
    pool->errors += (uint64_t)slot->shared;
    pp__proc_fail(proc, PP_EXIT_TIMEOUT, "request timed out");
    c->done = 1;
    c->status = PP_ETIMEDOUT;
    pp__diag_set(c->diag, "request timed out after %llums; worker %d replaced",
                 (unsigned long long)ms, slot->id);
    slot->ring_head = (slot->ring_head + 1) % slot->ring_cap;
    slot->shared--;
    fail_all(slot, PP_ECRASHED, "worker replaced: a request ahead timed out");
    break;
  default:
    pool->errors += (uint64_t)slot->shared;
    if (r == PP_EPROTO)
      pp__proc_fail(proc, PP_EXIT_PROTOCOL,
                    "reply is not a valid frame for this request");
    else if (!proc->exited)
      pp__proc_fail(proc, PP_EXIT_PROTOCOL, "worker closed its reply pipe");
    fail_all(slot, r == PP_EPROTO ? PP_EPROTO : PP_ECRASHED,
             proc->detail[0] ? proc->detail : "worker died");
    break;
  }
}

int pp__pipelined_call(pp_pool_t *pool, const void *payload, size_t len,
                       pp_buf_t *reply, int64_t timeout_ms, pp_diag_t *diag) {
  int depth = pool->cfg->pipeline_depth, r, k;
  uint64_t start, deadline = 0, ms, wait_until, now;
  struct pp__pcall *c;
  pp__slot_t *slot;
  pp__proc_t *proc;

  if (reply)
    reply->len = 0;
  start = pp__now_ns();
  wait_until = start + (uint64_t)(timeout_ms < 0 ? (int64_t)pool->cfg->checkout_timeout_ms
                                                 : timeout_ms) *
                           1000000ull;
  pp__lock(pool);
  pool->users++;
  for (;;) {
    if (pool->stopping || pool->draining ||
        pool->state == PP_POOL_DEGRADED) {
      r = pp__checkout_unavailable(pool, diag);
      goto out;
    }
    if ((slot = pick(pool, depth)) != NULL)
      break;
    now = pp__now_ns();
    if (now >= wait_until) {
      pool->timeouts++;
      r = pp__checkout_unavailable(pool, diag);
      goto out;
    }
    pool->pipe_waiters++;
    uv_cond_timedwait(&pool->pipe_cond, &pool->lock, wait_until - now);
    pool->pipe_waiters--;
  }
  if ((r = ring_init(slot, depth)) != 0)
    goto out;
  proc = slot->proc;
  if (slot->shared == 0) {
    pp__queue_remove(&slot->idle_node);
    slot->state = PP_WORKER_BUSY;
  }
  k = slot->shared++;
  pool->shared_calls++;
  pool->checkouts++;
  pool->requests++;
  pp__histo_add(&pool->h_wait, (pp__now_ns() - start) / 1000);
  c = place(slot, k);
  c->id = ++proc->next_id;
  c->done = 0;
  c->status = 0;
  c->reply = reply;
  c->diag = diag;
  c->proc = proc;
  pp__proc_ref(proc);
  pp__trace(pool, PP_TRACE_REQUEST, slot->id, proc->generation, proc->pid, 0,
            0, k, "pipelined");
  ms = pool->cfg->request_timeout_ms;
  if (ms)
    deadline = pp__now_ns() + ms * 1000000ull;
  /* Write in id order: the write lock is taken before the pool lock is
   * released, so the next call's write waits for ours. */
  uv_mutex_lock(&slot->wlock);
  pp__unlock(pool);
  r = pp__proc_write_blocking(proc, PP_FRAME_REQUEST, c->id, payload, len,
                              deadline);
  uv_mutex_unlock(&slot->wlock);
  pp__lock(pool);
  if (r != 0 && !c->done) {
    pp__proc_fail(proc, PP_EXIT_NONE, "request pipe closed");
    /* The head's reader sees the exit and fails every queued call. */
  }
  while (!c->done) {
    if (place(slot, 0) == c && !slot->reading && slot->proc == proc) {
      read_head(pool, slot, proc, deadline, ms);
      continue;
    }
    if (slot->proc != proc && !slot->reading) {
      /* Replaced under us and nobody reads: fail what is left. */
      fail_all(slot, PP_ECRASHED, proc->detail[0] ? proc->detail
                                                  : "worker replaced");
      continue;
    }
    uv_cond_wait(&c->cond, &pool->lock);
  }
  r = c->status;
  pp__histo_add(&pool->h_run, (pp__now_ns() - start) / 1000);
  pool->shared_calls--;
  pool->checkins++;
  if (slot->shared == 0 && slot->proc == proc && !proc->dead)
    pp__slot_release(slot);
  if (pool->pipe_waiters > 0)
    uv_cond_signal(&pool->pipe_cond);
  pp__quiesce_poke(pool);
  pp__proc_unref(proc);
out:
  pp__users_leave(pool);
  pp__unlock(pool);
  return r;
}
