/* checkout.c -- owns leases, the FIFO queue of waiting checkouts, clients,
 * and the event-loop face's checkout / request / check-in.  A hand-off is
 * one locked step that checks the client is alive (pool.c's
 * pp__slot_release); a reply reaches only the lease that sent it. */
#include "internal.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- leases */

pp_lease_t *pp__lease_new(pp__slot_t *slot, pp_client_t *client) {
  pp_pool_t *pool = slot->pool;
  pp_lease_t *lease = NULL;

  PP_ASSERT_LOCKED(slot->pool);

  if (!pp__queue_empty(&pool->free_leases)) {
    lease = pp__container_of(pool->free_leases.next, pp_lease_t, node);
    pp__queue_remove(&lease->node);
  } else {
    /* Only the first checkouts of a pool allocate: leases are recycled. */
    lease = calloc(1, sizeof(*lease));
    if (lease == NULL)
      return NULL;
    pp__queue_init(&lease->node);
  }
  lease->pool = pool;
  lease->slot = slot;
  lease->proc = slot->proc;
  pp__proc_ref(slot->proc);
  lease->generation = slot->proc->generation;
  lease->id = ++pool->next_lease_id;
  lease->client = client;
  lease->ended = lease->thread_call = lease->in_flight = 0;
  lease->undelivered = lease->reaped = 0;
  lease->free = lease->checked_in = lease->cancelled = 0;
  pool->leases_out++;
  lease->pend_queued = lease->released = 0;
  lease->status = 0;
  lease->reply_len = 0;
  pp__queue_insert_tail(&client->leases, &lease->node);
  slot->lease = lease;
  slot->state = PP_WORKER_LEASED;
  pool->checkouts++;
  pp__trace(pool, PP_TRACE_CHECKOUT, slot->id, lease->generation,
            slot->proc->pid, lease->id, client->id, 0, NULL);
  return lease;
}

void pp__lease_free(pp_lease_t *lease) {
  free(lease->req);
  free(lease->reply);
  free(lease);
}

void pp__lease_detach(pp_lease_t *lease) {
  PP_ASSERT_LOCKED(lease->pool);
  if (lease->proc == NULL)
    return;
  if (lease->slot->lease == lease)
    lease->slot->lease = NULL;
  lease->ended = 1;
  pp__proc_unref(lease->proc);
  lease->proc = NULL;
}

static void lease_recycle(pp_lease_t *lease) {
  pp_client_t *client = lease->client;

  assert(!lease->free && lease->pool->leases_out > 0);
  pp__queue_remove(&lease->node);
  lease->client = NULL;
  lease->free = 1;
  pp__queue_insert_head(&lease->pool->free_leases, &lease->node);
  lease->pool->leases_out--;
  if (client)
    pp__client_maybe_free(client);
  pp__quiesce_poke(lease->pool);
}

void pp__lease_end(pp_lease_t *lease, int reclaimed, const char *why) {
  pp_pool_t *pool = lease->pool;
  pp__slot_t *slot = lease->slot;
  pp__proc_t *proc = lease->proc;

  PP_ASSERT_LOCKED(lease->pool);

  if (reclaimed)
    pool->reclaimed++;
  else
    pool->checkins++;
  pp__trace(pool, reclaimed ? PP_TRACE_RECLAIM : PP_TRACE_CHECKIN, slot->id,
            lease->generation, proc ? proc->pid : 0, lease->id,
            lease->client ? lease->client->id : 0, 0, why);
  if (proc && slot->lease == lease && !proc->dead) {
    slot->lease = NULL;
    if (lease->in_flight) {
      /* The client left while its request runs (on_client_death):
       * finish lets it run to its deadline and drops the reply; cancel
       * sends CANCEL and kills the worker past cancel_grace; kill
       * replaces the worker now. */
      switch (pool->cfg->on_client_death) {
      case PP_DEATH_FINISH:
      case PP_DEATH_CANCEL:
        proc->orphan_id = lease->req_id;
        pool->orphans++;
        if (pp__call_cancels(proc, lease->req && lease->req->done.chunk))
          pp__proc_cancel(proc, lease->req_id);
        break;
      case PP_DEATH_KILL:
        pp__proc_fail(proc, PP_EXIT_NONE,
                      "client left during a request "
                      "(on_client_death: kill)");
        break;
      }
    } else if (proc->orphan_id == 0) {
      /* (A thread's call left to run: released at its reply.) */
      pp__slot_release(slot);
    }
  }
  /* A request still in flight gets its one callback, with PP_ECANCELED. */
  if (lease->in_flight && !lease->pend_queued)
    pp__loop_request_fail(lease, PP_ECANCELED, why ? why : "lease checked in");
  pp__lease_detach(lease);
  if (lease->pend_queued)
    lease->released = 1; /* recycled after its callback runs */
  else if (reclaimed)
    lease->reaped = 1; /* its holder still has it: kept, fenced, until the
                          holder checks it in (even after the client's
                          close), so a stale holder never reaches the
                          lease's next borrower */
  else
    lease_recycle(lease);
}

void pp__lease_checkin(pp_lease_t *lease) {
  PP_ASSERT_LOCKED(lease->pool);
  assert(!lease->released);
  if (lease->reaped)
    lease_recycle(lease); /* already reclaimed with its dead client */
  else
    pp__lease_end(lease, 0, NULL);
}

void pp__client_drop_reaped(pp_client_t *c) {
  pp__queue_t *q, *next;
  pp_lease_t *lease;

  for (q = c->leases.next; q != &c->leases; q = next) {
    next = q->next;
    lease = pp__container_of(q, pp_lease_t, node);
    if (lease->reaped)
      lease_recycle(lease);
  }
}

/* A thread is in pp_lease_call on the lease and its holder is gone (its
 * client died, or another thread checked the lease in): the worker is
 * handled as on_client_death says; the call itself ends the lease when it
 * returns (lock held). */
static void thread_call_abandon(pp_lease_t *lease) {
  pp_pool_t *pool = lease->pool;

  if (lease->proc == NULL || lease->proc->dead)
    return;
  if (pool->cfg->on_client_death == PP_DEATH_CANCEL) {
    /* While it writes, the caller sends CANCEL after its request. */
    if (!lease->writing)
      pp__proc_cancel(lease->proc, lease->proc->next_id);
  } else if (pool->cfg->on_client_death == PP_DEATH_KILL) {
    pp__proc_fail(lease->proc, PP_EXIT_NONE,
                  "client left during a request (on_client_death: kill)");
  }
}

void pp_checkin(pp_lease_t *lease) {
  pp_pool_t *pool;
  int on_loop;

  assert(lease != NULL);
  pool = lease->pool;
  pp__lock(pool);
  /* A second check-in is undefined (the object may be lent again); while
   * the object is unused it is caught here and changes nothing. */
  assert(!lease->free && !lease->released && !lease->checked_in);
  if (lease->free || lease->released || lease->checked_in) {
    pp__unlock(pool);
    return;
  }
  if (lease->thread_call) {
    /* Another thread is mid-call on it: that call ends with PP_ECANCELED
     * and recycles the lease when it returns. */
    lease->checked_in = 1;
    thread_call_abandon(lease);
    pp__unlock(pool);
    return;
  }
  on_loop = pp__on_loop_thread(pool);
  pp__lease_checkin(lease);
  pp__unlock(pool);
  if (on_loop)
    pp__run_pending(pool);
}

int pp_lease_slot(const pp_lease_t *lease) { return lease->slot->id; }
uint32_t pp_lease_generation(const pp_lease_t *lease) {
  return lease->generation;
}
uint64_t pp_lease_id(const pp_lease_t *lease) { return lease->id; }
int pp_lease_pid(const pp_lease_t *lease) {
  return lease->proc ? lease->proc->pid : 0;
}

/* ---- waiters */

pp__slot_t *pp__idle_take(pp_pool_t *pool) {
  pp__slot_t *slot;

  PP_ASSERT_LOCKED(pool);

  if (pp__queue_empty(&pool->idle))
    return NULL;
  slot = pp__container_of(pool->idle.next, pp__slot_t, idle_node);
  pp__queue_remove(&slot->idle_node);
  return slot;
}

int pp__waiting(const pp_pool_t *pool) {
  return pool->nwaiters + pool->pipe_waiters + pool->async_waiters;
}

int pp__checkout_unavailable(pp_pool_t *pool, pp_diag_t *diag) {
  int idle, leased, busy, starting, backoff, fatal, size, waiting;

  if (pool->stopping || pool->draining) {
    pp__diag_set(diag, pool->stopping ? "pool is closing" : "pool draining");
    return PP_ECLOSED;
  }
  if (pool->boot_failed && !pool->was_ready) {
    pp__diag_set(diag, "%s", pool->boot_diag);
    return PP_EBOOT;
  }
  if (pool->state == PP_POOL_DEGRADED) {
    pp__diag_set(diag, "pool degraded: every worker slot gave up restarting");
    return PP_EDEGRADED;
  }
  pp__slot_count(pool, &idle, &leased, &busy, &starting, &backoff, &fatal);
  size = idle + leased + busy + starting + backoff + fatal;
  waiting = pp__waiting(pool);
  if (!pool->ready_reported)
    pp__diag_set(diag, "pool warming (%d/%d ready)", idle + leased + busy,
                 size);
  else if (starting + backoff > 0) {
    /* With min_ready, some may still be starting for the first time:
     * that is not a restart. */
    int first = 0, i;

    for (i = 0; i < pool->nslots; i++)
      if (!pool->slots[i]->removing &&
          pool->slots[i]->state == PP_WORKER_STARTING &&
          pool->slots[i]->generation <= 1)
        first++;
    if (first == starting + backoff)
      pp__diag_set(diag,
                   "all %d workers busy or starting (%d starting), %d "
                   "waiting",
                   size, first, waiting);
    else if (first > 0)
      pp__diag_set(diag,
                   "all %d workers busy, starting or restarting (%d starting, "
                   "%d restarting), %d waiting",
                   size, first, starting + backoff - first, waiting);
    else
      pp__diag_set(diag,
                   "all %d workers busy or restarting (%d restarting), %d "
                   "waiting",
                   size, starting + backoff, waiting);
  } else
    pp__diag_set(diag, "all %d workers busy, %d waiting", size, waiting);
  return PP_ETIMEDOUT;
}

void pp__waiter_complete(pp__waiter_t *w, int status, pp_lease_t *lease) {
  pp_pool_t *pool = w->client->pool;

  PP_ASSERT_LOCKED(w->client->pool);

  pp__queue_remove(&w->node);
  pp__queue_remove(&w->cnode);
  if (w->bind)
    pp__unbind(w->bind);
  pool->nwaiters--;
  w->done = 1;
  w->status = status;
  w->lease = lease;
  if (lease == NULL && status == 0)
    w->status = UV_ENOMEM;
  if (lease) {
    lease->undelivered = 1;
    pp__count_wait(pool, w->enqueue_ns, pp__now_ns());
  }
  pp__quiesce_poke(pool);
  if (status != 0)
    pp__trace(pool, PP_TRACE_CHECKOUT_FAIL, -1, 0, 0, 0, w->client->id, status,
              w->diag ? w->diag->message : w->msg);
  if (w->thread) {
    if (lease && w->call && pool->handoff_open && pool->handed == NULL)
      pool->handed = w; /* posted once its request is written */
    else
      sem_post(&w->u.sem);
    return;
  }
  /* A loop waiter: its callback runs from the loop, after the lock is
   * released.  The pending record lives in the waiter. */
  w->u.loop.pend.kind = PP__PEND_CHECKOUT;
  w->u.loop.pend.u.waiter = w;
  pp__queue_insert_tail(&pool->pending, &w->u.loop.pend.node);
  pp__wake(pool);
}

void pp__waiters_fail_all(pp_pool_t *pool, int status, const char *why) {
  pp__waiter_t *w;

  while (!pp__queue_empty(&pool->waiters)) {
    w = pp__container_of(pool->waiters.next, pp__waiter_t, node);
    pp__waiter_reason(w, "%s", why);
    pp__waiter_complete(w, status, NULL);
  }
  pp__pipe_waiters_fail(pool, status, why);
  pp__async_waiters_fail(pool, status, why);
}

/* Queue w (lock held).  The caller has checked max_waiters. */
void pp__waiter_enqueue(pp_pool_t *pool, pp__waiter_t *w, pp_client_t *c,
                        int64_t timeout_ms) {
  PP_ASSERT_LOCKED(pool);
  uint64_t ms =
      timeout_ms < 0 ? pool->cfg->checkout_timeout_ms : (uint64_t)timeout_ms;

  w->client = c;
  w->enqueue_ns = pp__now_ns();
  w->deadline_ns = pp__deadline_after(w->enqueue_ns, ms);
  w->done = 0;
  w->lease = NULL;
  pp__queue_insert_tail(&pool->waiters, &w->node);
  pp__queue_insert_tail(&c->waiters, &w->cnode);
  pool->nwaiters++;
  if (pool->nwaiters > pool->waiters_max)
    pool->waiters_max = pool->nwaiters;
  pp__trace(pool, PP_TRACE_CHECKOUT_WAIT, -1, 0, 0, 0, c->id, pool->nwaiters,
            NULL);
  pp__scale_waiting(pool);
}

/* Arm the waiter timer for a loop waiter's deadline: O(1), only when it
 * is earlier than what is armed.  The timer's callback expires what is due
 * and re-arms for the earliest one left. */
void pp__waiter_timer_arm(pp_pool_t *pool, uint64_t deadline_ns) {
  uint64_t now;

  if (pool->waiter_due_ns != 0 && pool->waiter_due_ns <= deadline_ns)
    return;
  pool->waiter_due_ns = deadline_ns;
  now = pp__now_ns();
  uv_timer_start(&pool->waiter_timer, pp__on_waiter_timer,
                 deadline_ns > now ? (deadline_ns - now + 999999) / 1000000 : 0,
                 0);
}

void pp__on_waiter_timer(uv_timer_t *t) {
  pp_pool_t *pool = t->data;
  uint64_t first = 0;
  pp_diag_t d;
  pp__queue_t *q, *next;
  pp__waiter_t *w;
  uint64_t now = pp__now_ns();
  int r;

  pp__lock(pool);
  pool->waiter_due_ns = 0;
  for (q = pool->waiters.next; q != &pool->waiters; q = next) {
    next = q->next;
    w = pp__container_of(q, pp__waiter_t, node);
    if (w->thread)
      continue;
    if (w->deadline_ns > now) {
      if (first == 0 || w->deadline_ns < first)
        first = w->deadline_ns;
      continue;
    }
    r = pp__checkout_unavailable(pool, &d);
    pp__waiter_reason(w, "%s", d.message);
    pool->timeouts++;
    pp__waiter_complete(w, r, NULL);
  }
  /* pp_call_async calls: waiting, or placed with a timeout_ms. */
  if (pool->async_waiters > 0 || pool->shared_calls > 0) {
    uint64_t a = pp__async_expire(pool, now);
    if (a && (first == 0 || a < first))
      first = a;
  }
  if (first)
    pp__waiter_timer_arm(pool, first);
  pp__unlock(pool);
  pp__run_pending(pool);
}

/* The badarg window: between a worker being chosen for a waiter and the
 * waiter receiving it, the client may die.  Then the worker goes back (to
 * the next waiter) and the callback gets PP_ECANCELED, never a lease. */
int pp__lease_receive(pp_lease_t *lease, pp_diag_t *diag) {
  pp_pool_t *pool = lease->pool;

  lease->undelivered = 0;
  if (!lease->client->dead)
    return 0;
  pool->reclaimed_undelivered++;
  pp__diag_set(diag, "client closed before receiving the worker");
  pp__lease_end(lease, 1, "client died before receiving the worker");
  if (lease->reaped)
    lease_recycle(lease); /* nobody received it */
  return PP_ECANCELED;
}

void pp__checkout_deliver(pp__waiter_t *w) {
  pp_lease_t *lease = w->lease;
  pp_diag_t d;

  memset(&d, 0, sizeof(d));
  snprintf(d.message, sizeof(d.message), "%s", w->msg);
  if (lease) {
    pp_pool_t *pool = lease->pool;
    PP_FAULT(pool, "deliver");
    pp__lock(pool);
    if ((w->status = pp__lease_receive(lease, &d)) != 0)
      w->lease = NULL;
    pp__unlock(pool);
  }
  w->u.loop.cb(w->lease, w->status, w->status ? &d : NULL, w->u.loop.data);
  free(w);
}

void pp__waiter_reason(pp__waiter_t *w, const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  if (w->diag)
    vsnprintf(w->diag->message, sizeof(w->diag->message), fmt, ap);
  else
    vsnprintf(w->msg, sizeof(w->msg), fmt, ap);
  va_end(ap);
}

/* ---- clients */

void pp__client_init(pp_pool_t *pool, pp_client_t *c) {
  c->pool = pool;
  c->id = ++pool->next_client_id;
  c->dead = 0;
  pp__queue_init(&c->node);
  pp__queue_init(&c->leases);
  pp__queue_init(&c->waiters);
}

int pp_client_open(pp_pool_t *pool, pp_client_t **out) {
  pp_client_t *c;

  assert(pool != NULL && out != NULL);
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    return UV_ENOMEM;
  pp__lock(pool);
  pp__client_init(pool, c);
  pp__queue_insert_tail(&pool->clients, &c->node);
  pp__unlock(pool);
  *out = c;
  return 0;
}

uint64_t pp_client_id(const pp_client_t *client) { return client->id; }
pp_pool_t *pp_client_pool(const pp_client_t *client) { return client->pool; }

void pp__client_free_leases(pp_client_t *c) {
  pp_lease_t *lease;

  while (!pp__queue_empty(&c->leases)) {
    lease = pp__container_of(c->leases.next, pp_lease_t, node);
    pp__queue_remove(&lease->node);
    pp__lease_free(lease);
  }
}

void pp__client_free(pp_client_t *c) {
  pp__client_free_leases(c);
  free(c);
}

void pp__client_maybe_free(pp_client_t *c) {
  PP_ASSERT_LOCKED(c->pool);
  if (!c->closed || c->task_owned || !pp__queue_empty(&c->leases) ||
      c == &c->pool->anon)
    return;
  pp__queue_remove(&c->node);
  free(c);
}

/* Withdraw the waits of a dead client and reclaim its leases (lock held).
 * A lease that a thread is using mid-call is reclaimed by that thread when
 * the call returns; one not yet received, at its delivery. */
static void client_reap(pp_client_t *c) {
  pp_pool_t *pool = c->pool;
  pp__queue_t *q, *next;
  pp__waiter_t *w;
  pp_lease_t *lease;

  while (!pp__queue_empty(&c->waiters)) {
    w = pp__container_of(c->waiters.next, pp__waiter_t, cnode);
    pp__waiter_reason(w, "client closed");
    pool->withdrawn++;
    pp__waiter_complete(w, PP_ECANCELED, NULL);
  }
  for (q = c->leases.next; q != &c->leases; q = next) {
    next = q->next;
    lease = pp__container_of(q, pp_lease_t, node);
    if (lease->undelivered || lease->reaped)
      continue;
    if (lease->thread_call) {
      if (!lease->checked_in)
        thread_call_abandon(lease);
      continue;
    }
    if (lease->in_flight)
      pool->reclaimed_busy++;
    else
      pool->reclaimed_idle++;
    pp__lease_end(lease, 1, "client closed");
  }
}

void pp__client_kill(pp_client_t *c) {
  pp_pool_t *pool = c->pool;

  pp__lock(pool);
  c->dead = 1;
  pp__unlock(pool);
  /* Tests widen the window between death and reaping here; a hand-off in
   * between must skip this client (pp__slot_release checks c->dead). */
  PP_FAULT(pool, "client_dead");
  pp__lock(pool);
  client_reap(c);
  pp__unlock(pool);
}

void pp_client_close(pp_client_t *c) {
  pp_pool_t *pool;
  int on_loop;

  assert(c != NULL && !c->closed);
  pool = c->pool;
  on_loop = pp__on_loop_thread(pool);
  pp__client_kill(c);
  pp__lock(pool);
  /* Its reclaimed leases stay with their holders until checked in; the
   * client is freed with the last of them. */
  c->closed = 1;
  pp__client_maybe_free(c);
  pp__unlock(pool);
  if (on_loop)
    pp__run_pending(pool);
}

/* ---- the event-loop face */

int pp_checkout(pp_pool_t *pool, pp_client_t *client, int64_t timeout_ms,
                pp_checkout_cb cb, void *data) {
  pp__waiter_t *w;
  pp__slot_t *slot;
  int r = 0;

  assert(pool != NULL && cb != NULL);
  assert(client == NULL || !client->closed);
  if (client == NULL)
    client = &pool->anon;
  w = calloc(1, sizeof(*w));
  if (w == NULL)
    return UV_ENOMEM;
  w->u.loop.cb = cb;
  w->u.loop.data = data;
  w->diag = NULL;
  pp__queue_init(&w->node);
  pp__queue_init(&w->cnode);
  pp__lock(pool);
  if (pool->stopping || pool->draining || client->dead) {
    r = client->dead ? PP_ECANCELED : PP_ECLOSED;
  } else if (pool->state == PP_POOL_DEGRADED) {
    r = PP_EDEGRADED;
  } else if ((slot = pp__idle_take(pool)) != NULL) {
    pp__waiter_enqueue(pool, w, client, timeout_ms);
    pp__waiter_complete(w, 0, pp__lease_new(slot, client));
  } else if (pool->nwaiters >= pool->cfg->max_waiters) {
    pool->rejected++;
    r = PP_EBUSY;
  } else {
    pp__waiter_enqueue(pool, w, client, timeout_ms);
    pp__waiter_timer_arm(pool, w->deadline_ns);
  }
  pp__unlock(pool);
  if (r != 0)
    free(w);
  return r;
}

/* Queue the lease's completion for the loop (lock held). */
static void reply_queue(pp_lease_t *lease, int status) {
  pp_pool_t *pool = lease->pool;

  PP_ASSERT_LOCKED(lease->pool);

  lease->in_flight = 0;
  pp__unbind(&lease->req->bind);
  lease->status = status;
  lease->pend.kind = PP__PEND_REPLY;
  lease->pend.u.lease = lease;
  lease->pend_queued = 1;
  pp__queue_insert_tail(&pool->pending, &lease->pend.node);
  pp__wake(pool);
}

/* pp__call_reply's store: the reply kept with the lease. */
static int reply_copy(void *to, const char *p, size_t len, int binary) {
  pp_lease_t *lease = to;
  char *np;

  if (lease->reply_cap < len + 1) {
    np = realloc(lease->reply, len + 1);
    if (np == NULL)
      return UV_ENOMEM;
    lease->reply = np;
    lease->reply_cap = len + 1;
  }
  memcpy(lease->reply, p, len);
  lease->reply[len] = '\0';
  lease->reply_len = len;
  lease->req->reply_binary = binary;
  return 0;
}

/* Keep why the request failed with the lease ("" once one succeeds), in
 * the buffer pp_request allocated at its first request. */
static void lease_say(pp_lease_t *lease, const char *why) {
  snprintf(lease->req->msg, PP__MSG_CAP, "%s", why);
}

/* The request ends without an answer (lock held). */
static void request_end(pp_lease_t *lease, int status, const char *why) {
  lease->reply_len = 0;
  lease_say(lease, why);
  reply_queue(lease, status);
}

void pp__loop_request_fail(pp_lease_t *lease, int status, const char *why) {
  PP_ASSERT_LOCKED(lease->pool);
  pp__count_end(lease->pool, lease->proc, lease->req_start_ns, pp__now_ns(),
                status, 0);
  request_end(lease, status, why);
}

void pp__loop_request_cut(pp_lease_t *lease, pp_exit_kind_t reason) {
  char msg[PP__MSG_CAP];
  int status;

  PP_ASSERT_LOCKED(lease->pool);

  assert(lease->proc != NULL);
  status = pp__call_cut(lease->proc, reason, 1, msg, sizeof(msg));
  pp__count_end(lease->pool, lease->proc, lease->req_start_ns, pp__now_ns(),
                status, 0);
  request_end(lease, status, msg);
}

void pp__request_cancel(pp_lease_t *lease, int stopped) {
  pp_pool_t *pool = lease->pool;
  pp__proc_t *proc = lease->proc;

  PP_ASSERT_LOCKED(lease->pool);
  assert(lease->in_flight && !lease->pend_queued);
  lease->cancelled = 1;
  if (proc && lease->slot->lease == lease && !proc->dead) {
    /* Its reply, if it comes, is the worker's orphan: dropped. */
    lease->slot->lease = NULL;
    proc->orphan_id = lease->req_id;
    pool->orphans++;
    pp__proc_cancel(proc, lease->req_id);
  }
  pp__loop_request_fail(lease, PP_ECANCELED,
                        stopped ? "the stream was stopped by its on_chunk; "
                                  "its worker was sent CANCEL (check the "
                                  "lease in)"
                                : "the call was cancelled; its worker was "
                                  "sent CANCEL (check the lease in)");
  pp__lease_detach(lease);
}

/* The dispatcher (pool.c) sends here only an answer to the request. */
void pp__loop_reply(pp__proc_t *proc, const pp_frame_t *f) {
  pp__slot_t *slot = proc->slot;
  pp_lease_t *lease = slot->lease;
  pp_pool_t *pool = proc->pool;
  char msg[PP__MSG_CAP] = "";
  int status;

  PP_ASSERT_LOOP(proc->pool);
  PP_ASSERT_LOCKED(proc->pool);

  if (lease->req->done.chunk && pp__chunk_of(f, lease->req_id)) {
    if (pp__chunk_queue(pool, proc, NULL, lease, f) != 0)
      pp__proc_fail(proc, PP_EXIT_NONE, "out of memory for a stream chunk");
    return;
  }
  pp__proc_arm(proc, 0);
  pp__proc_read_stop(proc);
  proc->req_start_ns = 0;
  slot->state = PP_WORKER_LEASED;
  status =
      pp__call_reply(f, lease->req_id, reply_copy, lease, msg, sizeof(msg));
  lease_say(lease, status != 0 ? msg : "");
  pp__count_end(pool, proc, lease->req_start_ns, pp__now_ns(), status, 1);
  pp__trace(pool, PP_TRACE_REPLY, slot->id, proc->generation, proc->pid,
            lease->id, lease->client ? lease->client->id : 0, status, NULL);
  reply_queue(lease, status);
  /* Not an answer (a chunk nobody asked for): the real one is still to
   * come, and must never reach the next caller. */
  if (status == PP_EPROTO)
    pp__proc_fail(proc, PP_EXIT_PROTOCOL, msg);
  /* Anything after the reply was never asked for. */
  else if (proc->rlen > PP_FRAME_HEADER + (size_t)f->len)
    pp__proc_fail(proc, PP_EXIT_PROTOCOL, "bytes after the reply");
}

static void reply_diag(const pp_lease_t *lease, pp_diag_t *d) {
  memset(d, 0, sizeof(*d));
  snprintf(d->message, sizeof(d->message), "%s",
           lease->req ? lease->req->msg : "");
}

void pp__reply_deliver(pp_lease_t *lease) {
  pp_pool_t *pool = lease->pool;
  pp__done_t done = lease->req->done;
  pp_diag_t d;

  PP_FAULT(pool, "reply");
  pp__lock(pool);
  lease->pend_queued = 0;
  if (lease->released) {
    /* Checked in (or reclaimed) before we got here: the reply is dropped
     * and counted; the callback still runs once, then the lease is
     * recycled. */
    if (lease->status == 0 || lease->status == PP_EHANDLER)
      pool->stale_replies++;
    pp__unlock(pool);
    reply_diag(lease, &d);
    pp__done_call(&done, lease,
                  lease->status == 0 ? PP_ECANCELED : lease->status, "", 0, 0,
                  &d, 1);
    pp__lock(pool);
    lease_recycle(lease);
    pp__unlock(pool);
    return;
  }
  pp__unlock(pool);
  reply_diag(lease, &d);
  pp__done_call(&done, lease, lease->status, lease->reply ? lease->reply : "",
                lease->reply_len, lease->req->reply_binary,
                lease->status ? &d : NULL, 1);
}

static int request(pp_lease_t *lease, const void *payload, size_t len,
                   const pp_call_opts_t *opts, const pp__done_t *done);

int pp_request(pp_lease_t *lease, const void *payload, size_t len,
               int64_t timeout_ms, pp_reply_cb cb, void *data) {
  pp_call_opts_t o = {.timeout_ms = timeout_ms};
  pp__done_t done = {.reply = cb, .data = data};

  return request(lease, payload, len, &o, &done);
}

int pp_request_with(pp_lease_t *lease, const void *payload, size_t len,
                    const pp_call_opts_t *opts, pp_result_cb cb, void *data) {
  pp__done_t done = {.result = cb, .data = data};

  return request(lease, payload, len, opts, &done);
}

/* Both forms of pp_request. */
static int request(pp_lease_t *lease, const void *payload, size_t len,
                   const pp_call_opts_t *opts, const pp__done_t *done) {
  pp_pool_t *pool = lease->pool;
  int64_t timeout_ms = opts ? opts->timeout_ms : -1;

  if (pp__call_opts_check(pool, opts, 0, NULL) != 0)
    return UV_EINVAL; /* a token of another pool, a bad cmd */
  pp__proc_t *proc;
  uint64_t ms;
  int r;

  assert(pp__on_loop_thread(pool));
  pp__lock(pool);
  assert(!lease->free && !lease->released);
  proc = lease->proc;
  if (lease->in_flight || lease->pend_queued || lease->thread_call) {
    r = UV_EINVAL;
    goto out;
  }
  if (lease->reaped || lease->client->dead || lease->cancelled) {
    /* Reclaimed with its client, or its worker left it for a cancelled
     * call: fenced, never touches a worker. */
    r = PP_ECANCELED;
    goto out;
  }
  if (len > pool->cfg->max_frame) {
    r = PP_ETOOBIG;
    goto out;
  }
  /* The failure text's place, once per lease object (it is kept). */
  if (lease->req == NULL &&
      (lease->req = calloc(1, sizeof(*lease->req))) == NULL) {
    r = UV_ENOMEM;
    goto out;
  }
  if (pp__bind(opts ? opts->cancel : NULL, &lease->req->bind, PP__BIND_REQUEST,
               lease) != 0) {
    r = PP_ECANCELED;
    goto out;
  }
  lease->req->done = *done;
  lease->req->stopped = 0;
  if (opts && opts->on_chunk) {
    lease->req->done.chunk = opts->on_chunk;
    lease->req->done.chunk_data = opts->chunk_data;
  }
  lease->in_flight = 1;
  lease->reply_len = 0;
  lease->req_start_ns = pp__now_ns();
  ms = timeout_ms >= 0 ? (uint64_t)timeout_ms : pool->cfg->request_timeout_ms;
  if (pool->stopping || lease->ended || proc == NULL || proc->dead) {
    /* Refused: it never reaches a worker, and is not counted. */
    request_end(lease, pool->stopping ? PP_ECLOSED : PP_ECRASHED,
                proc && proc->detail[0] ? proc->detail : "worker is gone");
    r = 0;
    goto out;
  }
  lease->req_id = ++proc->next_id;
  proc->req_start_ns = lease->req_start_ns;
  lease->slot->state = PP_WORKER_BUSY;
  pp__trace(pool, PP_TRACE_REQUEST, lease->slot->id, proc->generation,
            proc->pid, lease->id, lease->client ? lease->client->id : 0, 0,
            NULL);
  r = pp__proc_queue_request(
      proc, lease->req_id, payload, len,
      ms ? pp__deadline_after(lease->req_start_ns, ms) : 0,
      opts ? opts->cmd : NULL, lease->req->done.chunk != NULL);
  if (r == 0)
    r = pp__proc_flush(proc);
  if (r == UV_ENOMEM) {
    lease->in_flight = 0;
    pp__unbind(&lease->req->bind);
    goto out;
  }
  pp__count_request(pool, proc, ms);
  if (r != 0) {
    pp__proc_fail(proc, PP_EXIT_NONE, "worker's request pipe is closed");
    r = 0;
    goto out;
  }
  pp__proc_arm(proc, ms);
  pp__proc_read_start(proc);
out:
  pp__unlock(pool);
  return r;
}
