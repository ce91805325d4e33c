/* pipeline.c -- owns pipelined one-shot calls (worker.pipeline_depth > 1):
 * up to that many pp_call requests queued on one worker, answered in
 * order, without a hop through the loop.  A lease still gets a worker to
 * itself: pipelined calls only use workers nobody leases.
 *
 * Each call lives on its caller's stack and sleeps on its own semaphore,
 * once, until its reply is in its buffer.  The work is done by whichever
 * callers are awake:
 *   - a call takes a place in its worker's ring and appends its frame to
 *     the worker's pending bytes; if nobody is writing, it writes them all
 *     (requests that arrive meanwhile go out in the next batch);
 *   - one call per ring is the reader: it reads every reply there is, fills
 *     the callers' buffers, completes their calls (counters included, so a
 *     woken caller returns without taking the pool lock), gives the freed
 *     places to calls waiting for one, and writes their requests.  When its
 *     own reply is in, it hands the reading to the newest call in the ring.
 * So a call costs one sleep and one wake-up, and reads and writes are
 * batched under load. */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct pp__pcall *place(pp__slot_t *slot, int k) {
  return slot->ring[(slot->ring_head + k) % slot->ring_cap];
}

static int done(struct pp__pcall *c) {
  return __atomic_load_n(&c->done, __ATOMIC_ACQUIRE);
}

/* Where c's failure is told: its caller's diag, or nowhere. */
static char *msg_of(struct pp__pcall *c) {
  return c->diag ? c->diag->message : NULL;
}

static size_t cap_of(struct pp__pcall *c) {
  return c->diag ? sizeof(c->diag->message) : 0;
}

static int ring_init(pp__slot_t *slot, int depth) {
  if (slot->ring)
    return slot->ring_cap >= depth ? 0 : UV_EINVAL;
  slot->ring = calloc((size_t)depth, sizeof(*slot->ring));
  if (slot->ring == NULL)
    return UV_ENOMEM;
  slot->ring_cap = depth;
  slot->ring_head = slot->shared = 0;
  return 0;
}

int pp__idle_turn(pp_pool_t *pool, int async, uint64_t since) {
  pp__queue_t *q = async ? &pool->pipe_queue : &pool->async_queue;
  uint64_t other;

  if (pp__queue_empty(q))
    return 1;
  other = async ? pp__container_of(q->next, struct pp__pcall, node)->start_ns
                : pp__container_of(q->next, pp__acall_t, node)->start_ns;
  return since <= other;
}

int pp__ring_takes(pp_pool_t *pool, pp__slot_t *slot, int queued, int depth,
                   int async, uint64_t since) {
  pp__proc_t *proc = slot->proc;

  if (slot->removing || proc == NULL || proc->dead || !proc->hello ||
      slot->lease != NULL || slot->pinging)
    return 0;
  if (slot->state == PP_WORKER_IDLE)
    return pp__idle_turn(pool, async, since);
  /* Let the ring drain, so that the worker goes through pp__slot_release:
   * to a waiting lease or call of the other kind, to its ready replacement,
   * or to be recycled. */
  if (pool->nwaiters > 0 ||
      (async ? pool->pipe_waiters : pool->async_waiters) > 0 ||
      (slot->next && slot->next->hello) ||
      (proc->max_requests &&
       proc->requests + (uint64_t)queued >= proc->max_requests))
    return 0;
  return queued < depth;
}

/* Can slot take one more pipelined call?  `own`: the slot is busy with
 * pipelined calls (its reader asks), else it must be idle or have some. */
static int usable(pp_pool_t *pool, pp__slot_t *slot, int depth, int own,
                  uint64_t since) {
  if (slot->shared == 0 && !own && slot->state != PP_WORKER_IDLE)
    return 0;
  if (!pp__ring_takes(pool, slot, slot->shared, depth, 0, since))
    return 0;
  if (slot->state == PP_WORKER_IDLE)
    return 1;
  /* Never queue behind calls to a process that has been replaced. */
  return slot->ring_cap >= depth &&
         (slot->shared == 0 || place(slot, 0)->proc == slot->proc);
}

/* The worker with the fewest calls queued, below the depth; an idle one
 * counts as zero.  NULL when every worker is full, leased or not ready. */
static pp__slot_t *pick(pp_pool_t *pool, int depth, uint64_t since) {
  pp__slot_t *best = NULL, *slot;
  int i;

  for (i = 0; i < pool->nslots; i++) {
    slot = pool->slots[i];
    if (!usable(pool, slot, depth, 0, since))
      continue;
    if (best == NULL || slot->shared < best->shared)
      best = slot;
    if (best->shared == 0)
      break;
  }
  return best;
}

/* Append c's frame to the worker's pending bytes. */
static int pend(pp__proc_t *proc, struct pp__pcall *c, uint64_t deadline_ns) {
  size_t need = proc->plen + PP_FRAME_REQUEST_HEADER + c->len, cap;
  char *p;

  if (need > proc->pcap) {
    cap = proc->pcap ? proc->pcap : 1024;
    while (cap < need)
      cap *= 2;
    if ((p = realloc(proc->pbuf, cap)) == NULL)
      return UV_ENOMEM;
    proc->pbuf = p;
    proc->pcap = cap;
  }
  need =
      pp_frame_request_header(proc->pbuf + proc->plen, c->id, (uint32_t)c->len,
                              proc->proto >= 2 ? deadline_ns : 0, NULL, 0);
  if (c->len)
    memcpy(proc->pbuf + proc->plen + need, c->payload, c->len);
  proc->plen += need + c->len;
  return 0;
}

/* Give c the next place in slot's ring (lock held; ring_init done). */
static int place_call(pp_pool_t *pool, pp__slot_t *slot, struct pp__pcall *c) {
  pp__proc_t *proc = slot->proc;
  uint64_t now = pp__now_ns();
  int k, r;

  PP_ASSERT_LOCKED(pool);

  c->id = ++proc->next_id;
  if ((r = pend(proc, c,
                pool->cfg->request_timeout_ms
                    ? pp__deadline_after(now, pool->cfg->request_timeout_ms)
                    : 0)) != 0)
    return r;
  if (slot->shared == 0) {
    pp__queue_remove(&slot->idle_node);
    slot->state = PP_WORKER_BUSY;
    proc->req_start_ns = now;
  }
  k = slot->shared++;
  slot->ring[(slot->ring_head + k) % slot->ring_cap] = c;
  c->proc = proc;
  c->placed = 1;
  pp__proc_ref(proc);
  c->placed_ns = now;
  if (pool->cfg->request_timeout_ms)
    c->deadline_ns = pp__deadline_after(now, pool->cfg->request_timeout_ms);
  pool->shared_calls++;
  pool->checkouts++;
  pp__count_wait(pool, c->start_ns, now);
  pp__count_request(pool, proc, pool->cfg->request_timeout_ms);
  pp__trace(pool, PP_TRACE_REQUEST, slot->id, proc->generation, proc->pid, 0, 0,
            k, "pipelined");
  return 0;
}

/* Threads to wake once the lock is released: a futex wake-up is a system
 * call, and the woken thread should not find the lock taken. */
#define PP__WAKE_BATCH 64
typedef struct {
  struct pp__pcall *c[PP__WAKE_BATCH];
  int n;
} wakes_t;

/* Wake c's thread if it sleeps (lock held): now, or through w after the
 * unlock.  Every post matches one park (parked goes to 0 here, committing
 * us to the post), and the sleeper takes it even when the clock woke it
 * first (see park), so it never returns and destroys the semaphore before
 * sem_post is done with it. */
static void wake(struct pp__pcall *c, wakes_t *w) {
  if (!c->parked)
    return;
  c->parked = 0;
  if (w && w->n < PP__WAKE_BATCH)
    w->c[w->n++] = c;
  else
    sem_post(&c->sem);
}

/* The same, first in line: a new reader is woken before the callers whose
 * calls are done, so that the worker's replies keep being read. */
static void wake_first(struct pp__pcall *c, wakes_t *w) {
  int n = w->n;

  wake(c, w);
  if (w->n > n && n > 0) {
    w->c[n] = w->c[0];
    w->c[0] = c;
  }
}

static void wakes_post(wakes_t *w) {
  int i;

  for (i = 0; i < w->n; i++)
    sem_post(&w->c[i]->sem);
  w->n = 0;
}

/* c is finished (lock held): its counters, and its thread is woken.  A
 * thread that is awake in the pool (the reader, a writer) sees `done`
 * itself and leaves on its own. */
static void finish(pp_pool_t *pool, struct pp__pcall *c, int status,
                   uint64_t now, wakes_t *w) {
  PP_ASSERT_LOCKED(pool);
  c->status = status;
  if (c->placed) {
    pp__count_end(pool, c->proc, c->placed_ns, now, status, c->answered);
    pool->shared_calls--;
    pool->checkins++;
    pp__proc_unref(c->proc);
  }
  /* A thread out of the pool returns without coming back in: it has left
   * already, as far as pp_pool_close is concerned. */
  if (c->away)
    pp__users_leave(pool);
  __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
  wake(c, w);
}

/* The head call leaves the ring (lock held). */
static struct pp__pcall *pop(pp__slot_t *slot) {
  struct pp__pcall *c = place(slot, 0);

  slot->ring_head = (slot->ring_head + 1) % slot->ring_cap;
  slot->shared--;
  if (slot->reader == c)
    slot->reader = NULL;
  /* The next one runs from now: its age for status and the slow log. */
  if (c->proc)
    c->proc->req_start_ns = slot->shared > 0 ? pp__now_ns() : 0;
  return c;
}

/* The reader failed with r: the worker goes, the call at the head fails
 * for r and every call behind it for the worker's end (lock held). */
static void fail_all(pp_pool_t *pool, pp__slot_t *slot, pp__proc_t *proc, int r,
                     uint64_t now) {
  struct pp__pcall *c;
  int first = 1, status;

  PP_ASSERT_LOCKED(pool);

  while (slot->shared > 0) {
    c = pop(slot);
    status =
        first ? pp__call_fail(proc, r, msg_of(c), cap_of(c))
              : pp__call_cut(proc, proc->kill_reason, 0, msg_of(c), cap_of(c));
    finish(pool, c, status, now, NULL);
    first = 0;
  }
  slot->reader = NULL;
}

/* Write n bytes (lock not held).  When the pipe is full the worker is
 * behind; if we are the ring's reader we keep reading replies while we
 * wait, or a worker blocked on a full reply pipe would never read ours. */
static int write_batch(pp_pool_t *pool, pp__proc_t *proc,
                       struct pp__pcall *self, const char *p, size_t n) {
  uint64_t ms = pool->cfg->request_timeout_ms, deadline = 0, now;
  struct pollfd fds[2];
  int reader, slice;
  ssize_t w;

  while (n > 0) {
    w = pp__proc_write_once(proc, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno != EAGAIN)
      return PP_ECRASHED;
    now = pp__now_ns();
    if (ms && deadline == 0)
      deadline = pp__deadline_after(now, ms);
    if (deadline && now >= deadline)
      return PP_ETIMEDOUT;
    pp__lock(pool);
    reader = proc->slot->reader == self;
    pp__unlock(pool);
    /* Not the reader: look again every 100 ms, in case we become it. */
    slice = reader ? -1 : 100;
    if (deadline) {
      int left = pp__poll_ms(deadline, now);
      slice = slice < 0 || left < slice ? left : slice;
    }
    fds[0].fd = proc->req_fd;
    fds[0].events = POLLOUT;
    fds[1].fd = proc->rep_fd;
    fds[1].events = POLLIN;
    if (poll(fds, reader ? 2 : 1, slice) < 0 && errno != EINTR)
      return PP_ECRASHED;
    if (reader && (fds[1].revents & (POLLIN | POLLHUP))) {
      if (pp__proc_rbuf_reserve(proc, 65536) != 0)
        return UV_ENOMEM;
      w = read(proc->rep_fd, proc->rbuf + proc->rlen, proc->rcap - proc->rlen);
      if (w == 0)
        return PP_ECRASHED;
      if (w > 0)
        proc->rlen += (size_t)w;
    }
  }
  return 0;
}

/* Write the worker's pending requests, batch after batch, unless another
 * thread is at it (lock held on entry and exit, released while writing). */
static void flush(pp_pool_t *pool, pp__proc_t *proc, struct pp__pcall *self) {
  size_t n, cap;
  char *p;
  int r;

  PP_ASSERT_LOCKED(pool);

  if (proc->pwriting)
    return;
  pp__proc_ref(proc);
  while (proc->plen > 0 && !proc->dead) {
    p = proc->psend;
    cap = proc->pscap;
    proc->psend = proc->pbuf;
    proc->pscap = proc->pcap;
    proc->pbuf = p;
    proc->pcap = cap;
    n = proc->plen;
    proc->plen = 0;
    proc->pwriting = 1;
    pp__unlock(pool);
    r = write_batch(pool, proc, self, proc->psend, n);
    pp__lock(pool);
    proc->pwriting = 0;
    if (r != 0 && !proc->dead) {
      /* The reader sees the exit and fails every call in the ring. */
      if (r == PP_ETIMEDOUT)
        pp__proc_fail(proc, PP_EXIT_TIMEOUT,
                      "request pipe full past "
                      "request_timeout");
      else
        pp__proc_fail(proc, PP_EXIT_NONE, "request pipe closed");
    }
  }
  if (proc->dead)
    proc->plen = 0;
  pp__proc_unref(proc);
}

static void dequeue(pp_pool_t *pool, struct pp__pcall *c) {
  if (!pp__queue_empty(&c->node)) {
    pp__queue_remove(&c->node);
    pool->pipe_waiters--;
  }
}

/* Read more reply bytes (lock not held): > 0, or PP_ETIMEDOUT, PP_ECRASHED,
 * UV_ENOMEM.  Reads first: under load the reply is already there. */
static long read_more(pp__proc_t *proc, uint64_t deadline_ns) {
  ssize_t n;
  int r, reaped = 0;

  if (pp__proc_rbuf_reserve(proc, pp__proc_rbuf_want(proc)) != 0)
    return UV_ENOMEM;
  for (;;) {
    n = read(proc->rep_fd, proc->rbuf + proc->rlen, proc->rcap - proc->rlen);
    if (n > 0) {
      proc->rlen += (size_t)n;
      return (long)n;
    }
    if (n == 0 || (errno != EINTR && errno != EAGAIN) || reaped)
      return PP_ECRASHED;
    if (errno == EINTR)
      continue;
    if ((r = pp__reply_wait(proc, deadline_ns, &reaped)) != 0)
      return r;
  }
}

/* Give slot's free places to the calls waiting for one (lock held). */
static void admit(pp_pool_t *pool, pp__slot_t *slot, int depth) {
  struct pp__pcall *c;

  PP_ASSERT_LOCKED(pool);

  while (!pp__queue_empty(&pool->pipe_queue) &&
         usable(pool, slot, depth, 1, 0)) {
    c = pp__container_of(pool->pipe_queue.next, struct pp__pcall, node);
    dequeue(pool, c);
    if (place_call(pool, slot, c) != 0)
      finish(pool, c, UV_ENOMEM, 0, NULL);
  }
}

/* Read until at least one of the first n calls of the ring has its answer
 * (lock not held): their replies are stored and *got counted.  Returns 0,
 * or the read's failure (PP_EPROTO: a frame that answers nothing). */
static int read_replies(pp__slot_t *slot, pp__proc_t *proc, int n, int *got) {
  uint32_t max = proc->pool->cfg->max_frame;
  uint64_t deadline = place(slot, 0)->deadline_ns;
  struct pp__pcall *c;
  size_t off = 0;
  pp_frame_t f;
  long used;
  int r = 0;

  for (;;) {
    while (*got < n && off < proc->rlen) {
      used = pp_frame_decode(proc->rbuf + off, proc->rlen - off, max, &f);
      if (used == 0)
        break;
      c = place(slot, *got);
      if (used < 0 ||
          (c->status = pp__call_reply(&f, c->id, pp__reply_store, c->reply,
                                      msg_of(c), cap_of(c))) == PP_EPROTO) {
        c->status = 0;
        r = PP_EPROTO;
        break;
      }
      c->answered = 1;
      off += (size_t)used;
      (*got)++;
    }
    if (*got > 0 || r != 0)
      break;
    used = read_more(proc, deadline);
    if (used < 0) {
      r = (int)used;
      break;
    }
  }
  if (off > 0) {
    memmove(proc->rbuf, proc->rbuf + off, proc->rlen - off);
    proc->rlen -= off;
  }
  return r;
}

/* The reader's turn (lock held on entry and exit; released while reading).
 * Completes at least one call, or fails them all. */
static void read_turn(pp_pool_t *pool, pp__slot_t *slot, pp__proc_t *proc,
                      struct pp__pcall *self) {
  int n = slot->shared, got = 0, r, depth = pool->cfg->pipeline_depth;
  struct pp__pcall *c;
  uint64_t now;
  wakes_t w;

  PP_ASSERT_LOCKED(pool);

  pp__proc_ref(proc);
  pp__unlock(pool);
  /* The first n calls of the ring stay put while we read: only the reader
   * removes calls, and new ones go in behind them. */
  r = read_replies(slot, proc, n, &got);
  if (r == PP_ECRASHED)
    pp__wait_reaped(proc, pool->cfg->kill_grace_ms + 1000);
  now = pp__now_ns();
  w.n = 0;
  pp__lock(pool);
  while (got-- > 0) {
    c = pop(slot);
    finish(pool, c, c->status, now, &w);
  }
  if (r != 0)
    fail_all(pool, slot, proc, r, now);
  if (slot->proc == proc && !proc->dead)
    admit(pool, slot, depth);
  if (slot->shared > 0 && slot->reader == NULL) {
    /* The newest call reads next: its turn covers every reply before its
     * own, so the reading changes hands about once per ring. */
    slot->reader = place(slot, slot->shared - 1);
    wake_first(slot->reader, &w);
  }
  if (slot->shared == 0 && slot->proc == proc && !proc->dead)
    pp__slot_release(slot);
  pp__quiesce_poke(pool);
  /* The worker's next requests first, then the callers' wake-ups. */
  if (slot->proc == proc && !proc->dead && proc->plen > 0)
    flush(pool, proc, self);
  if (w.n > 0) {
    pp__unlock(pool);
    wakes_post(&w);
    pp__lock(pool);
  }
  pp__proc_unref(proc);
}

void pp__pipe_kick(pp_pool_t *pool) {
  struct pp__pcall *c;
  pp__queue_t *q;

  pp__queue_foreach(q, &pool->pipe_queue) {
    c = pp__container_of(q, struct pp__pcall, node);
    if (c->kicked)
      continue;
    c->kicked = 1;
    wake(c, NULL);
    return;
  }
}

void pp__pipe_waiters_fail(pp_pool_t *pool, int status, const char *why) {
  struct pp__pcall *c;

  PP_ASSERT_LOCKED(pool);

  while (!pp__queue_empty(&pool->pipe_queue)) {
    c = pp__container_of(pool->pipe_queue.next, struct pp__pcall, node);
    dequeue(pool, c);
    pp__diag_set(c->diag, "%s", why);
    finish(pool, c, status, 0, NULL);
  }
  pp__quiesce_poke(pool);
}

/* Sleep until woken or until deadline_ns (0 = no limit); lock released
 * meanwhile.  Returns 1 when the call is done (the lock NOT retaken: the
 * caller returns at once), 0 with the lock held again.  Waits in slices of
 * at most a second, so a step of the wall clock (sem_timedwait's clock)
 * costs at most that; the caller looks at its state again either way. */
static int park(pp_pool_t *pool, struct pp__pcall *c, uint64_t deadline_ns) {
  struct timespec ts;
  uint64_t left;
  int posted = 1;

  c->away = c->parked = 1;
  pp__unlock(pool);
  if (deadline_ns == 0) {
    while (sem_wait(&c->sem) != 0 && errno == EINTR)
      ;
  } else {
    left = deadline_ns > pp__now_ns() ? deadline_ns - pp__now_ns() : 0;
    if (left > 1000000000ull)
      left = 1000000000ull;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(left / 1000000000ull);
    ts.tv_nsec += (long)(left % 1000000000ull);
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    while ((posted = sem_timedwait(&c->sem, &ts) == 0) == 0 && errno == EINTR)
      ;
  }
  /* Woken by our post: `done` is final, and nothing more is owed us. */
  if (posted && done(c))
    return 1;
  pp__lock(pool);
  if (!posted && !c->parked) {
    /* The clock woke us, but a post is owed (parked went to 0): it may be
     * made after its poster unlocks, so take it without the lock. */
    pp__unlock(pool);
    while (sem_wait(&c->sem) != 0 && errno == EINTR)
      ;
    if (done(c))
      return 1;
    pp__lock(pool);
  }
  if (done(c)) {
    /* Finished while we took the lock: finish() saw us away and left the
     * pool for us. */
    pp__unlock(pool);
    return 1;
  }
  c->away = c->parked = 0;
  return 0;
}

int pp__pipelined_call(pp_pool_t *pool, const void *payload, size_t len,
                       pp_buf_t *reply, int64_t timeout_ms, pp_diag_t *diag) {
  int depth = pool->cfg->pipeline_depth, r = 0;
  struct pp__pcall c;
  uint64_t wait_until;
  pp__slot_t *slot;

  if (reply)
    reply->len = reply->binary = 0;
  memset(&c, 0, sizeof(c));
  c.payload = payload;
  c.len = len;
  c.reply = reply;
  c.diag = diag;
  c.start_ns = pp__now_ns();
  pp__queue_init(&c.node);
  wait_until = pp__deadline_after(
      c.start_ns,
      timeout_ms < 0 ? pool->cfg->checkout_timeout_ms : (uint64_t)timeout_ms);
  if (sem_init(&c.sem, 0, 0) != 0)
    return UV_ENOMEM;
  pp__lock(pool);
  __atomic_add_fetch(&pool->users, 1, __ATOMIC_RELAXED);
  /* A place: at once if there is one and nobody waits before us; else in
   * FIFO order, given by a reader that freed one (the request is written
   * for us) or by a kick when a worker turns idle (we take it here). */
  while (!c.placed) {
    if (pool->stopping || pool->draining || pool->state == PP_POOL_DEGRADED) {
      dequeue(pool, &c);
      r = pp__checkout_unavailable(pool, diag);
      goto leave;
    }
    if ((c.kicked || pp__queue_empty(&pool->pipe_queue)) &&
        (slot = pick(pool, depth, c.start_ns)) != NULL) {
      dequeue(pool, &c);
      if ((r = ring_init(slot, depth)) != 0 ||
          (r = place_call(pool, slot, &c)) != 0)
        goto leave;
      break;
    }
    c.kicked = 0;
    if (pp__now_ns() >= wait_until) {
      dequeue(pool, &c);
      pool->timeouts++;
      r = pp__checkout_unavailable(pool, diag);
      goto leave;
    }
    if (pp__queue_empty(&c.node)) {
      pp__queue_insert_tail(&pool->pipe_queue, &c.node);
      pool->pipe_waiters++;
      pp__trace(pool, PP_TRACE_CHECKOUT_WAIT, -1, 0, 0, 0, 0,
                pool->pipe_waiters, "pipelined");
      pp__scale_waiting(pool);
    }
    if (park(pool, &c, wait_until))
      goto done;
  }
  /* Woken by a kick: more places may be free (or, placed by a reader, the
   * kick was for another worker turning idle): pass it on. */
  if (c.kicked && pool->pipe_waiters > 0)
    pp__pipe_kick(pool);
  slot = c.proc->slot;
  if (slot->reader == NULL)
    slot->reader = &c;
  flush(pool, c.proc, &c);
  /* Wait for the reply; read when it is our turn. */
  while (!done(&c)) {
    if (slot->reader == NULL)
      slot->reader = &c;
    if (slot->reader == &c) {
      read_turn(pool, slot, c.proc, &c);
      continue;
    }
    if (park(pool, &c, 0))
      goto done;
  }
leave:
  if (r != 0 && !c.placed)
    pp__trace(pool, PP_TRACE_CHECKOUT_FAIL, -1, 0, 0, 0, 0, r, "pipelined");
  pp__quiesce_poke(pool);
  pp__users_leave(pool);
  pp__unlock(pool);
done:
  if (done(&c))
    r = c.status;
  sem_destroy(&c.sem);
  return r;
}
