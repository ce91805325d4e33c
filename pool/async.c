/* async.c -- owns pp_call_async: one-shot calls on the loop face, up to
 * worker.pipeline_depth of them queued on one worker and answered in
 * order.  Everything happens on the loop thread, without a thread hop:
 *   - a call takes a place in the ring of the least-loaded worker (an idle
 *     worker counts as empty) and appends its frame to the worker's output;
 *     a uv_prepare handle writes every worker's output once per turn of the
 *     loop, just before it polls, so the calls made in one turn (the
 *     callbacks of one batch of replies, say) go out in one write;
 *   - the loop reads the worker's replies while its ring is not empty,
 *     completes the call at the head for each, fills the freed places from
 *     the FIFO of waiting calls, and runs the callbacks once the pool lock
 *     is released;
 *   - a worker serves either these calls or the blocking face's pipelined
 *     calls (pipeline.c) or a lease, one at a time: each kind only takes a
 *     worker that is idle or already its own.
 * A ring stops taking calls and drains when a lease waits, when the
 * worker's replacement is ready or when it reached max_requests, as the
 * blocking face's rings do.
 *
 * With worker.concurrency N > 1 a ring holds up to max(N, pipeline_depth)
 * calls, which the worker runs N at once and answers in any order: a reply
 * finds its call by request id, every call has its own deadline and
 * cancel grace, and a worker's end fails them all (any may have begun). */
#include "internal.h"

#include <assert.h>

#include <stdlib.h>
#include <string.h>

/* Can slot take one more call that arrived at `since`: an idle worker, or
 * one serving these calls (pp__ring_takes says when).  A stream takes a
 * worker of its own: none behind it, nor it behind others. */
static int usable(pp_pool_t *pool, pp__slot_t *slot, int depth, uint64_t since,
                  int stream) {
  return (slot->anum > 0 || slot->state == PP_WORKER_IDLE) && !slot->astream &&
         (!stream || slot->anum == 0) &&
         pp__ring_takes(pool, slot, slot->anum, depth, 1, since);
}

/* How many calls one worker's ring holds. */
static int ring_depth(const pp_pool_t *pool) {
  const pp_config_t *cfg = pool->cfg;

  return cfg->concurrency > cfg->pipeline_depth ? cfg->concurrency
                                                : cfg->pipeline_depth;
}

static pp__slot_t *pick(pp_pool_t *pool, int depth, uint64_t since,
                        int stream) {
  pp__slot_t *best = NULL, *slot;
  int i;

  for (i = 0; i < pool->nslots; i++) {
    slot = pool->slots[i];
    if (!usable(pool, slot, depth, since, stream))
      continue;
    if (best == NULL || slot->anum < best->anum)
      best = slot;
    if (best->anum == 0)
      break;
  }
  return best;
}

/* a leaves the queue of calls waiting for a worker. */
static void unqueue(pp_pool_t *pool, pp__acall_t *a) {
  pp__queue_remove(&a->node);
  pool->async_waiters--;
  if (a->submitted) {
    a->submitted = 0;
    pool->async_unaccepted--;
  }
}

/* a leaves its worker's ring. */
static void ring_remove(pp__slot_t *slot, pp__acall_t *a) {
  pp__queue_remove(&a->node);
  slot->anum--;
  if (a->done.chunk)
    slot->astream = 0;
}

/* a is finished: its callback runs after the lock is released.  proc:
 * the worker it was placed on (NULL: none); answered: it replied. */
static void complete(pp_pool_t *pool, pp__acall_t *a, int status,
                     pp__proc_t *proc, int answered, uint64_t now) {
  PP_ASSERT_LOCKED(pool);
  pp__unbind(&a->bind);
  a->status = status;
  a->final = 1;
  if (a->placed) {
    pp__count_end(pool, proc, a->placed_ns, now, status, answered);
    pool->shared_calls--;
    pool->checkins++;
  }
  a->pend.kind = PP__PEND_ACALL;
  a->pend.u.acall = a;
  pp__queue_insert_tail(&pool->pending, &a->pend.node);
  pp__wake(pool);
  pp__quiesce_poke(pool);
}

/* A call that never reached a worker fails. */
static void fail(pp_pool_t *pool, pp__acall_t *a, int status, const char *why,
                 uint64_t now) {
  snprintf(a->msg, sizeof(a->msg), "%.159s", why);
  complete(pool, a, status, NULL, 0, now);
}

void pp__acall_deliver(pp_pool_t *pool, pp__acall_t *a) {
  pp_diag_t d;
  int keep = 0;

  memset(&d, 0, sizeof(d));
  snprintf(d.message, sizeof(d.message), "%s", a->msg);
  pp__done_call(&a->done, NULL, a->status, a->reply ? a->reply : "",
                a->reply_len, a->binary, a->status ? &d : NULL, a->placed);
  if (a->ghost) {
    /* Still in its ring: freed when it leaves (ghost_done). */
    pp__lock(pool);
    a->delivered = 1;
    keep = !a->gone;
    pp__unlock(pool);
  }
  if (keep)
    return;
  free(a->reply);
  free(a);
}

/* A ghost leaves its ring (lock held): answered, its reply is dropped and
 * counted stale. */
static void ghost_done(pp_pool_t *pool, pp__proc_t *proc, pp__acall_t *a,
                       int answered) {
  pool->shared_calls--;
  pool->checkins++;
  if (answered)
    pp__count_stale(proc);
  pp__quiesce_poke(pool);
  if (a->delivered) {
    free(a->reply);
    free(a);
  } else {
    a->gone = 1;
  }
}

/* A placed call answered before its worker did (lock held): a ghost from
 * now on, its callback queued with status. */
static void answer_early(pp_pool_t *pool, pp__proc_t *proc, pp__acall_t *a,
                         int status, uint64_t now) {
  pp__unbind(&a->bind);
  a->ghost = 1;
  a->status = status;
  pp__count_end(pool, proc, a->placed_ns, now, status, 0);
  a->pend.kind = PP__PEND_ACALL;
  a->pend.u.acall = a;
  pp__queue_insert_tail(&pool->pending, &a->pend.node);
  pp__wake(pool);
}

/* a ran past its timeout_ms while its request runs on proc (lock held):
 * its caller gets PP_ETIMEDOUT now; the request is left as
 * on_client_death says: finish lets it run (its reply is dropped), cancel
 * also sends CANCEL, kill replaces the worker (the calls behind it then
 * fail as for any worker's end).  Returns 1 when the worker was failed. */
static void arm(pp__proc_t *proc, uint64_t now);

static int abandon(pp_pool_t *pool, pp__proc_t *proc, pp__acall_t *a,
                   uint64_t now) {
  answer_early(pool, proc, a, PP_ETIMEDOUT, now);
  if (pp__call_expired(proc, a->done.chunk != NULL, a->msg, sizeof(a->msg)))
    return 1;
  /* CANCEL by itself: pp__proc_cancel's grace timer would take the
   * ring's request timer. */
  if (!pp__call_cancels(proc, a->done.chunk != NULL))
    return 0;
  if (pp__proc_send(proc, PP_FRAME_CANCEL, a->id, NULL, 0) != 0) {
    pp__proc_fail(proc, PP_EXIT_NONE, "could not send CANCEL");
    return 1;
  }
  /* Its worker must answer within cancel_grace (the ring's timer), as
   * for pp_cancel. */
  a->cancelled = 1;
  arm(proc, now);
  return 0;
}

static void flush_soon(pp_pool_t *pool, pp__proc_t *proc) {
  proc->wflush = 1;
  if (!pool->async_flushing) {
    pool->async_flushing = 1;
    uv_prepare_start(&pool->async_flush, pp__async_flush_cb);
  }
}

void pp__async_flush_cb(uv_prepare_t *h) {
  pp_pool_t *pool = h->data;
  pp__proc_t *proc;
  int i;

  pp__lock(pool);
  pool->async_flushing = 0;
  uv_prepare_stop(&pool->async_flush);
  for (i = 0; i < pool->nslots; i++) {
    proc = pool->slots[i]->proc;
    if (proc == NULL || !proc->wflush)
      continue;
    proc->wflush = 0;
    if (!proc->dead && pp__proc_flush(proc) != 0)
      pp__proc_fail(proc, PP_EXIT_NONE, "request pipe closed");
  }
  pp__unlock(pool);
  pp__run_pending(pool);
}

/* When call a must have been answered, 0 = never: its request deadline,
 * and for a cancelled one cancel_grace after its CANCEL went and it began
 * (the worker answers a CANCEL for a request it has not begun when it
 * reaches it): at the head of its ring, or at once on a worker that runs
 * calls concurrently. */
static uint64_t call_due(pp_pool_t *pool, pp__acall_t *a, uint64_t now) {
  uint64_t due = a->deadline_ns;

  if (a->cancelled && !a->cancel_wanted) {
    if (a->cancel_due_ns == 0)
      a->cancel_due_ns = pp__deadline_after(now, pool->cfg->cancel_grace_ms);
    if (due == 0 || a->cancel_due_ns < due)
      due = a->cancel_due_ns;
  }
  return due;
}

/* The ring's earliest due time (0 = none), and the call it is for: the
 * head's, or with concurrency every call's. */
static uint64_t ring_due(pp__proc_t *proc, uint64_t now, pp__acall_t **which) {
  pp__slot_t *slot = proc->slot;
  uint64_t due = 0, d;
  pp__queue_t *q;
  pp__acall_t *a;

  pp__queue_foreach(q, &slot->aring) {
    a = pp__container_of(q, pp__acall_t, node);
    d = call_due(proc->pool, a, now);
    if (d != 0 && (due == 0 || d < due)) {
      due = d;
      *which = a;
    }
    if (proc->pool->cfg->concurrency == 1)
      break; /* the calls behind the head have not begun */
  }
  return due;
}

/* The request timer follows the ring's earliest due time. */
static void arm(pp__proc_t *proc, uint64_t now) {
  pp__acall_t *which = NULL;
  uint64_t due = proc->slot->anum > 0 ? ring_due(proc, now, &which) : 0;

  if (due == 0)
    pp__proc_arm(proc, 0);
  else
    pp__proc_arm(proc, due > now ? (due - now + 999999) / 1000000 : 1);
}

int pp__async_timer_due(pp__proc_t *proc) {
  pp__acall_t *which = NULL;
  uint64_t now = pp__now_ns(), due = ring_due(proc, now, &which);

  if (due == 0 || due > now) {
    arm(proc, now);
    return 0;
  }
  proc->culprit_id = which->id; /* its status says why (ring_fail) */
  return which->cancelled && due == which->cancel_due_ns ? 2 : 1;
}

static int place(pp_pool_t *pool, pp__slot_t *slot, pp__acall_t *a,
                 uint64_t now) {
  pp__proc_t *proc = slot->proc;
  uint64_t ms = pool->cfg->request_timeout_ms;
  int r;

  uint64_t deadline = ms ? pp__deadline_after(now, ms) : 0;

  /* The worker is told the earlier of the request's and the call's. */
  a->id = ++proc->next_id;
  if ((r = pp__proc_queue_request(
           proc, a->id, a->payload, a->len,
           a->call_deadline_ns &&
                   (deadline == 0 || a->call_deadline_ns < deadline)
               ? a->call_deadline_ns
               : deadline,
           a->cmd[0] ? a->cmd : NULL, a->done.chunk != NULL)) != 0)
    return r;
  a->placed = 1;
  a->proc = proc;
  a->placed_ns = now;
  a->deadline_ns = deadline;
  pp__queue_insert_tail(&slot->aring, &a->node);
  slot->astream = a->done.chunk != NULL;
  if (slot->anum++ == 0) {
    pp__queue_remove(&slot->idle_node);
    slot->state = PP_WORKER_BUSY;
    proc->req_start_ns = now;
    pp__proc_read_start(proc);
    arm(proc, now);
  }
  pool->shared_calls++;
  pool->checkouts++;
  pp__count_wait(pool, a->start_ns, now);
  pp__count_request(pool, proc, ms);
  if (a->call_deadline_ns)
    pp__waiter_timer_arm(pool, a->call_deadline_ns);
  pp__trace(pool, PP_TRACE_REQUEST, slot->id, proc->generation, proc->pid, 0, 0,
            slot->anum - 1, "async");
  flush_soon(pool, proc);
  return 0;
}

void pp__async_admit(pp_pool_t *pool) {
  int depth = ring_depth(pool);
  uint64_t now = pp__now_ns();
  pp__slot_t *slot;
  pp__acall_t *a;

  PP_ASSERT_LOOP(pool);
  PP_ASSERT_LOCKED(pool);

  pool->async_kick = 0;
  while (pool->async_waiters > 0) {
    a = pp__container_of(pool->async_queue.next, pp__acall_t, node);
    if ((slot = pick(pool, depth, a->start_ns, a->done.chunk != NULL)) == NULL)
      break;
    unqueue(pool, a);
    if (a->call_deadline_ns && now >= a->call_deadline_ns) {
      /* Its time ran out while it waited: never sent. */
      pool->timeouts++;
      fail(pool, a, PP_ETIMEDOUT,
           "the call ran past its timeout_ms waiting for a worker", now);
    } else if (place(pool, slot, a, now) != 0) {
      fail(pool, a, UV_ENOMEM, "out of memory", now);
    }
  }
}

/* pp__call_reply's store: a copy of the reply for the callback. */
static int store(void *to, const char *p, size_t len, int binary) {
  pp__acall_t *a = to;

  if ((a->reply = malloc(len + 1)) == NULL)
    return UV_ENOMEM;
  memcpy(a->reply, p, len);
  a->reply[len] = '\0';
  a->reply_len = len;
  a->binary = binary;
  return 0;
}

void pp__async_accept(pp_pool_t *pool) {
  uint64_t now = pp__now_ns();
  pp__queue_t *q, *next;
  pp__acall_t *a;
  int ahead, seen = 0, behind = 0;

  PP_ASSERT_LOCKED(pool);
  if (pool->async_unaccepted == 0)
    return;
  /* The calls submitted since the last turn are at the tail (with any the
   * loop queued meanwhile, accepted as they came): only that part is
   * walked, so a turn costs what arrived in it, not what waits. */
  for (q = pool->async_queue.prev;
       seen < pool->async_unaccepted && q != &pool->async_queue; q = q->prev) {
    a = pp__container_of(q, pp__acall_t, node);
    seen += a->submitted;
    behind++;
  }
  assert(seen == pool->async_unaccepted);
  q = q->next;
  ahead = pp__waiting(pool) - behind;
  /* In FIFO order: a call is refused when max_waiters wait ahead of it. */
  for (; q != &pool->async_queue; q = next) {
    next = q->next;
    a = pp__container_of(q, pp__acall_t, node);
    if (!a->submitted || ahead < pool->cfg->max_waiters) {
      if (a->submitted) {
        a->submitted = 0;
        pool->async_unaccepted--;
      }
      ahead++;
      continue;
    }
    unqueue(pool, a);
    pool->rejected++;
    fail(pool, a, PP_EBUSY, "too many calls waiting (checkout.max_waiters)",
         now);
  }
}

/* The call a reply is for: the head of the ring, or on a worker that
 * answers out of order the one with its id (the head when none has: a
 * reply for no call is the head's protocol error). */
static pp__acall_t *answered_call(pp__slot_t *slot, uint32_t id) {
  pp__acall_t *head = pp__container_of(slot->aring.next, pp__acall_t, node);
  pp__queue_t *q;
  pp__acall_t *a;

  if (slot->pool->cfg->concurrency == 1 || head->id == id)
    return head;
  pp__queue_foreach(q, &slot->aring) {
    a = pp__container_of(q, pp__acall_t, node);
    if (a->id == id)
      return a;
  }
  return head;
}

void pp__async_reply(pp__proc_t *proc, const pp_frame_t *f) {
  pp__slot_t *slot = proc->slot;
  pp_pool_t *pool = proc->pool;
  uint64_t now = pp__now_ns();
  pp__acall_t *a = answered_call(slot, f->id), *head;
  int status;

  PP_ASSERT_LOOP(proc->pool);
  PP_ASSERT_LOCKED(proc->pool);

  if (a->done.chunk && pp__chunk_of(f, a->id)) {
    /* A chunk of the stream at the head; a ghost's are dropped. */
    if (!a->ghost && pp__chunk_queue(pool, proc, a, NULL, f) != 0)
      pp__proc_fail(proc, PP_EXIT_NONE, "out of memory for a stream chunk");
    return;
  }
  status = a->ghost &&
                   (f->type == PP_FRAME_ERROR ||
                    (f->type == PP_FRAME_REPLY &&
                     !(f->flags & PP_FRAME_FLAG_STREAM))) &&
                   f->id == a->id
               ? 0
               : pp__call_reply(f, a->id, store, a, a->msg, sizeof(a->msg));

  if (status == PP_EPROTO) {
    /* Every call in the ring fails with the worker (pp__async_ring_fail). */
    pp__proc_fail(proc, PP_EXIT_PROTOCOL,
                  pool->cfg->concurrency == 1
                      ? "reply is not for the oldest request queued"
                      : "reply is not for a request in flight");
    return;
  }
  ring_remove(slot, a);
  if (a->ghost) {
    pp__trace(pool, PP_TRACE_STALE_REPLY, slot->id, proc->generation, proc->pid,
              0, 0, 0, "async");
    ghost_done(pool, proc, a, 1);
  } else {
    pp__trace(pool, PP_TRACE_REPLY, slot->id, proc->generation, proc->pid, 0, 0,
              status, "async");
    complete(pool, a, status, proc, 1, now);
  }
  /* The next one runs from now (with concurrency, the oldest left runs
   * from its placing): its age for status and the slow log. */
  head = slot->anum > 0 ? pp__container_of(slot->aring.next, pp__acall_t, node)
                        : NULL;
  proc->req_start_ns = head == NULL                  ? 0
                       : pool->cfg->concurrency == 1 ? now
                                                     : head->placed_ns;
  arm(proc, now);
  if (slot->anum == 0) {
    pp__proc_read_stop(proc);
    /* Anything after the last reply was never asked for. */
    if (proc->rlen > PP_FRAME_HEADER + (size_t)f->len) {
      pp__proc_fail(proc, PP_EXIT_PROTOCOL, "bytes after the last reply");
      return;
    }
    pp__slot_release(slot);
  }
  pp__async_admit(pool);
}

/* Put a call its worker never began back at the head of the waiting
 * calls, in order (before `at`): the loop places it again. */
static void requeue(pp_pool_t *pool, pp__acall_t *a, pp__queue_t *at,
                    uint64_t now) {
  pool->shared_calls--;
  a->placed = 0;
  a->proc = NULL;
  a->deadline_ns =
      a->call_deadline_ns
          ? a->call_deadline_ns
          : pp__deadline_after(now, pool->cfg->checkout_timeout_ms);
  pp__queue_insert_tail(at, &a->node); /* before at */
  pool->async_waiters++;
  pool->async_kick = 1;
  pp__scale_waiting(pool);
  pp__waiter_timer_arm(pool, a->deadline_ns);
  pp__wake(pool);
}

void pp__async_ring_fail(pp__proc_t *proc, pp_exit_kind_t reason) {
  pp__slot_t *slot = proc->slot;
  pp_pool_t *pool = proc->pool;
  uint64_t now = pp__now_ns();
  pp__queue_t *at = pool->async_queue.next;
  pp__acall_t *a;
  int first = 1, status, behind_cancel = 0;

  PP_ASSERT_LOCKED(proc->pool);

  while (slot->anum > 0) {
    a = pp__container_of(slot->aring.next, pp__acall_t, node);
    ring_remove(slot, a);
    if (a->ghost) {
      /* The worker ran a cancelled call when it ended: the calls behind
       * it had not begun, and are not harmed. */
      if (first && a->cancelled)
        behind_cancel = 1;
      ghost_done(pool, proc, a, 0);
      continue;
    }
    if (behind_cancel && pool->cfg->concurrency == 1 && !pool->stopping &&
        !pool->draining) {
      requeue(pool, a, at, now);
      continue;
    }
    if (pool->cfg->concurrency > 1 && reason == PP_EXIT_TIMEOUT &&
        a->id != proc->culprit_id) {
      /* Beside the call that timed out (or ignored its CANCEL), not
       * behind it: its own time had not run out. */
      snprintf(a->msg, sizeof(a->msg),
               "worker %d replaced: a request beside it timed out or "
               "ignored its CANCEL",
               slot->id);
      status = PP_ECRASHED;
    } else {
      status = pp__call_cut(proc, reason, pool->cfg->concurrency > 1 || first,
                            a->msg, sizeof(a->msg));
    }
    complete(pool, a, status, proc, 0, now);
    first = 0;
  }
}

/* CANCEL for placed call a (loop thread, lock held); at the head of its
 * ring, its grace runs from now. */
static void send_cancel(pp__proc_t *proc, pp__acall_t *a, uint64_t now) {
  a->cancel_wanted = 0;
  if (pp__proc_send(proc, PP_FRAME_CANCEL, a->id, NULL, 0) != 0) {
    pp__proc_fail(proc, PP_EXIT_NONE, "could not send CANCEL");
    return;
  }
  if (proc->slot->aring.next == &a->node || proc->pool->cfg->concurrency > 1)
    arm(proc, now);
}

void pp__async_cancel(pp_pool_t *pool, pp__acall_t *a, int stopped) {
  uint64_t now = pp__now_ns();
  pp__proc_t *proc = a->proc;

  PP_ASSERT_LOCKED(pool);
  if (!a->placed) {
    unqueue(pool, a);
    fail(pool, a, PP_ECANCELED,
         "the call was cancelled while it waited for a worker", now);
    return;
  }
  answer_early(pool, proc, a, PP_ECANCELED, now);
  a->cancelled = 1;
  snprintf(a->msg, sizeof(a->msg), "the %s; its worker %d was sent CANCEL",
           stopped ? "stream was stopped by its on_chunk"
                   : "call was cancelled",
           proc->slot->id);
  if (pp__on_loop_thread(pool)) {
    send_cancel(proc, a, now);
  } else {
    a->cancel_wanted = 1;
    pool->async_cancels = 1;
    pool->loop_wake = 1;
    pp__wake(pool);
  }
}

void pp__async_send_cancels(pp_pool_t *pool) {
  uint64_t now = pp__now_ns();
  pp__queue_t *q, *next;
  pp__acall_t *a;
  int i;

  PP_ASSERT_LOOP(pool);
  pool->async_cancels = 0;
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *slot = pool->slots[i];

    for (q = slot->aring.next; slot->anum > 0 && q != &slot->aring; q = next) {
      next = q->next;
      a = pp__container_of(q, pp__acall_t, node);
      if (a->cancel_wanted)
        send_cancel(slot->proc, a, now);
    }
  }
}

uint64_t pp__async_expire(pp_pool_t *pool, uint64_t now) {
  pp__queue_t *q, *next;
  uint64_t first = 0;
  pp__acall_t *a;
  pp_diag_t d;
  int r, i;

  for (q = pool->async_queue.next; q != &pool->async_queue; q = next) {
    next = q->next;
    a = pp__container_of(q, pp__acall_t, node);
    if (a->deadline_ns > now) {
      if (first == 0 || a->deadline_ns < first)
        first = a->deadline_ns;
      continue;
    }
    unqueue(pool, a);
    pool->timeouts++;
    r = pp__checkout_unavailable(pool, &d);
    if (a->call_deadline_ns && r == PP_ETIMEDOUT) {
      /* Its own timeout_ms ran out, not checkout.timeout. */
      char why[PP__MSG_CAP];

      snprintf(why, sizeof(why),
               "the call ran past its timeout_ms waiting for a worker (%.200s)",
               d.message);
      fail(pool, a, r, why, now);
    } else {
      fail(pool, a, r, d.message, now);
    }
  }
  /* Placed calls past their own deadline. */
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *slot = pool->slots[i];

    if (slot->anum == 0 || slot->proc == NULL)
      continue;
    pp__queue_foreach(q, &slot->aring) {
      a = pp__container_of(q, pp__acall_t, node);
      if (a->ghost || a->call_deadline_ns == 0)
        continue;
      if (a->call_deadline_ns > now) {
        if (first == 0 || a->call_deadline_ns < first)
          first = a->call_deadline_ns;
        continue;
      }
      if (abandon(pool, slot->proc, a, now))
        break; /* the worker failed: its ring is gone */
    }
  }
  return first;
}

void pp__async_waiters_fail(pp_pool_t *pool, int status, const char *why) {
  uint64_t now = pp__now_ns();
  pp__acall_t *a;

  while (pool->async_waiters > 0) {
    a = pp__container_of(pool->async_queue.next, pp__acall_t, node);
    unqueue(pool, a);
    fail(pool, a, status, why, now);
  }
}

static int async_call(pp_pool_t *pool, const void *payload, size_t len,
                      const pp_call_opts_t *opts, const pp__done_t *done);

int pp_call_async(pp_pool_t *pool, const void *payload, size_t len,
                  int64_t timeout_ms, pp_call_cb cb, void *data) {
  pp_call_opts_t o = {.timeout_ms = timeout_ms};
  pp__done_t done = {.call = cb, .data = data};

  if (cb == NULL)
    return UV_EINVAL;
  return async_call(pool, payload, len, &o, &done);
}

int pp_call_async_with(pp_pool_t *pool, const void *payload, size_t len,
                       const pp_call_opts_t *opts, pp_result_cb cb,
                       void *data) {
  pp__done_t done = {.result = cb, .data = data};

  if (cb == NULL)
    return UV_EINVAL;
  return async_call(pool, payload, len, opts, &done);
}

/* Both forms of pp_call_async. */
static int async_call(pp_pool_t *pool, const void *payload, size_t len,
                      const pp_call_opts_t *opts, const pp__done_t *done) {
  int64_t timeout_ms = opts ? opts->timeout_ms : -1;
  pp_cancel_t *token = opts ? opts->cancel : NULL;
  uint64_t ms, now;
  pp__slot_t *slot;
  pp__acall_t *a;
  int r = 0, loop;

  if ((r = pp__call_opts_check(pool, opts, 1, NULL)) != 0)
    return r;
  if ((a = calloc(1, sizeof(*a) + len)) == NULL)
    return UV_ENOMEM;
  a->done = *done;
  if (opts && opts->on_chunk) {
    a->done.chunk = opts->on_chunk;
    a->done.chunk_data = opts->chunk_data;
  }
  if (opts && opts->cmd)
    snprintf(a->cmd, sizeof(a->cmd), "%s", opts->cmd);
  a->len = len;
  if (len)
    memcpy(a->payload, payload, len);
  pp__queue_init(&a->node);
  now = a->start_ns = pp__now_ns();
  /* timeout_ms bounds the whole call: waiting, then running. */
  if (timeout_ms >= 0)
    a->call_deadline_ns = pp__deadline_after(now, (uint64_t)timeout_ms);
  pp__lock(pool);
  loop = pp__on_loop_thread(pool);
  if (token && token->fired) {
    r = PP_ECANCELED;
  } else if (len > pool->cfg->max_frame) {
    r = PP_ETOOBIG;
  } else if (pool->stopping || pool->draining) {
    r = PP_ECLOSED;
  } else if (pool->state == PP_POOL_DEGRADED) {
    r = PP_EDEGRADED;
  } else if (loop && pool->async_waiters == 0 &&
             (slot = pick(pool, ring_depth(pool), now,
                          a->done.chunk != NULL)) != NULL) {
    r = place(pool, slot, a, now);
  } else if (loop && pp__waiting(pool) >= pool->cfg->max_waiters) {
    pool->rejected++;
    r = PP_EBUSY;
  } else {
    ms = timeout_ms < 0 ? pool->cfg->checkout_timeout_ms : (uint64_t)timeout_ms;
    a->deadline_ns = pp__deadline_after(now, ms);
    pp__queue_insert_tail(&pool->async_queue, &a->node);
    pool->async_waiters++;
    pp__trace(pool, PP_TRACE_CHECKOUT_WAIT, -1, 0, 0, 0, 0, pool->async_waiters,
              "async");
    pp__scale_waiting(pool);
    if (loop) {
      pp__waiter_timer_arm(pool, a->deadline_ns);
    } else {
      a->submitted = 1;
      pool->async_unaccepted++;
      /* Another thread: the loop places it and arms its deadline, once
       * per turn for every call submitted meanwhile (uv_async coalesces
       * the wake-ups). */
      if (pool->async_due_ns == 0 || a->deadline_ns < pool->async_due_ns)
        pool->async_due_ns = a->deadline_ns;
      pool->async_kick = 1;
      pp__wake(pool);
    }
  }
  if (r == 0)
    pp__bind(token, &a->bind, PP__BIND_ASYNC, a); /* not fired: checked */
  pp__unlock(pool);
  if (r != 0)
    free(a);
  return r;
}
