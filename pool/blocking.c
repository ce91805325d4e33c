/* blocking.c -- the blocking face for threaded programs: a pool on its own
 * loop thread (pp_pool_open / pp_pool_close), checkout that blocks, and
 * calls performed on the caller's thread.  A caller holding a lease writes
 * the request and reads the reply on the worker's pipes itself, so a call
 * costs no hop through the loop; the loop keeps watching the process and
 * wakes the caller through the worker's eventfd if it dies. */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void pp__users_leave(pp_pool_t *pool) {
  if (__atomic_sub_fetch(&pool->users, 1, __ATOMIC_RELAXED) == 0 &&
      pool->stopping)
    uv_cond_broadcast(&pool->users_cond);
}

/* ---- open and close */

static void loop_main(void *arg) {
  pp_pool_t *pool = arg;
  pp_diag_t diag;
  sigset_t pipe;
  int r;

  /* libuv writes to control clients with write(2): one that left before
   * its reply raises SIGPIPE, for this thread, and its default kills the
   * whole process.  Blocked here, it stays pending on this thread and the
   * write fails with EPIPE.  (Processes it spawns get libuv's reset.) */
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, NULL);
  memset(&diag, 0, sizeof(diag));
  r = pp__pool_begin(pool, &pool->own_loop, &diag);
  if (r != 0) {
    pp__lock(pool);
    pool->ready_reported = 1;
    pool->ready_status = r;
    pool->begin_failed = 1;
    pool->begin_diag = diag;
    uv_cond_broadcast(&pool->state_cond);
    pp__unlock(pool);
    uv_run(&pool->own_loop, UV_RUN_DEFAULT); /* let failed handles close */
    return;
  }
  uv_run(&pool->own_loop, UV_RUN_DEFAULT);
}

int pp_pool_open(const pp_config_t *cfg, const pp_pool_options_t *opts,
                 pp_pool_t **out, pp_diag_t *diag) {
  return pp__pool_open(cfg, opts, -1, out, diag);
}

int pp__pool_open(const pp_config_t *cfg, const pp_pool_options_t *opts,
                  int64_t wait_ms, pp_pool_t **out, pp_diag_t *diag) {
  pp_pool_t *pool;
  uint64_t deadline, now;
  int r;

  *out = NULL;
  if ((r = pp__pool_create(cfg, opts, &pool, diag)) != 0)
    return r;
  pool->blocking = 1;
  if ((r = uv_loop_init(&pool->own_loop)) != 0) {
    pp__pool_free(pool);
    return r;
  }
  if ((r = uv_thread_create(&pool->thread, loop_main, pool)) != 0) {
    uv_loop_close(&pool->own_loop);
    pp__pool_free(pool);
    return r;
  }
  deadline = pp__deadline_after(
      pp__now_ns(), wait_ms >= 0 ? (uint64_t)wait_ms
                                 : pool->cfg->startup_timeout_ms +
                                       pool->cfg->checkout_timeout_ms);
  pp__lock(pool);
  while (!pool->ready_reported && (now = pp__now_ns()) < deadline)
    pp__cond_timedwait(pool, &pool->state_cond, pp__wait_ns(deadline, now));
  if (pool->begin_failed) {
    r = pool->ready_status;
    if (diag)
      *diag = pool->begin_diag;
  } else if (!pool->ready_reported) {
    r = pp__checkout_unavailable(pool, diag);
  } else {
    r = pool->ready_status;
    if (r != 0)
      pp__checkout_unavailable(pool, diag);
  }
  pp__unlock(pool);
  if (r != 0) {
    if (pool->begin_failed) {
      uv_thread_join(&pool->thread);
      uv_loop_close(&pool->own_loop);
      pp__pool_free(pool);
    } else {
      pp_pool_close(pool);
    }
    return r;
  }
  *out = pool;
  return 0;
}

void pp_pool_close(pp_pool_t *pool) {
  assert(pool != NULL && pool->blocking);
  /* Stop first, then cancel and join the tasks: a task's request in
   * flight is then bounded by drain_timeout + kill_grace like any other,
   * whatever on_client_death says. */
  pp__lock(pool);
  pool->close_requested = 1;
  pp__wake(pool);
  pp__unlock(pool);
  pp__tasks_reap(pool);
  uv_thread_join(&pool->thread);
  /* Threads woken with PP_ECLOSED may still be on their way out. */
  pp__lock(pool);
  while (__atomic_load_n(&pool->users, __ATOMIC_RELAXED) > 0)
    pp__cond_wait(pool, &pool->users_cond);
  pp__unlock(pool);
  uv_loop_close(&pool->own_loop);
  pp__pool_free(pool);
}

/* ---- checkout */

typedef struct qcall qcall_t;
static int lease_wait(pp_pool_t *pool, pp_client_t *client, int64_t timeout_ms,
                      pp_cancel_t *token, qcall_t *q, pp_lease_t **out,
                      pp_diag_t *diag);
static int qcall_received(const qcall_t *q);

int pp_lease_acquire(pp_pool_t *pool, pp_client_t *client, int64_t timeout_ms,
                     pp_lease_t **out, pp_diag_t *diag) {
  int r;

  pp__lock(pool);
  r = lease_wait(pool, client, timeout_ms, NULL, NULL, out, diag);
  pp__unlock(pool);
  return r;
}

/* sem_wait until deadline_ns (pp__now_ns, CLOCK_MONOTONIC; UINT64_MAX:
 * none): 0 when posted, ETIMEDOUT.  sem_clockwait keeps the deadline on
 * the monotonic clock, as the rest of the pool's: a wall clock set back
 * does not stretch a checkout timeout.  ThreadSanitizer does not know
 * sem_clockwait (it would miss the post's ordering): its builds take
 * sem_timedwait, with the time left added to CLOCK_REALTIME. */
#if defined(__SANITIZE_THREAD__)
#define PP_SEM_REALTIME 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PP_SEM_REALTIME 1
#endif
#endif
static int sem_wait_until(sem_t *sem, uint64_t deadline_ns) {
  struct timespec ts;
  uint64_t now;

  for (;;) {
    if (deadline_ns == UINT64_MAX) {
      if (sem_wait(sem) == 0)
        return 0;
      continue; /* EINTR */
    }
    now = pp__now_ns();
    if (now >= deadline_ns)
      return sem_trywait(sem) == 0 ? 0 : ETIMEDOUT;
#ifdef PP_SEM_REALTIME
    uint64_t left = deadline_ns - now;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(left / 1000000000u);
    ts.tv_nsec += (long)(left % 1000000000u);
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    if (sem_timedwait(sem, &ts) == 0)
      return 0;
#else
    ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
    ts.tv_nsec = (long)(deadline_ns % 1000000000u);
    if (sem_clockwait(sem, CLOCK_MONOTONIC, &ts) == 0)
      return 0;
#endif
  }
}

/* A checkout for a thread (lock held, and held again on return): an idle
 * worker, or a place in the FIFO until one is handed over or its time or
 * token runs out.  q: the pp_call the thread waits to make; the thread
 * that hands it a worker may start it (handoff_begin). */
static int lease_wait(pp_pool_t *pool, pp_client_t *client, int64_t timeout_ms,
                      pp_cancel_t *token, qcall_t *q, pp_lease_t **out,
                      pp_diag_t *diag) {
  pp__waiter_t w;
  pp__bind_t bind;
  pp__slot_t *slot;
  uint64_t until;
  int r = 0;

  assert(pool != NULL && out != NULL);
  assert(client == NULL || !client->closed);
  *out = NULL;
  if (client == NULL)
    client = &pool->anon;
  __atomic_add_fetch(&pool->users, 1, __ATOMIC_RELAXED);
  if (token && token->fired) {
    pp__diag_set(diag, "the call was cancelled before it started");
    r = PP_ECANCELED;
  } else if (pool->stopping || pool->draining || client->dead ||
             pool->state == PP_POOL_DEGRADED) {
    r = client->dead ? PP_ECANCELED : pp__checkout_unavailable(pool, diag);
  } else if ((slot = pp__idle_take(pool)) != NULL) {
    pp__count_wait(pool, 0, 0);
    *out = pp__lease_new(slot, client);
    if (*out == NULL) {
      pp__slot_release(slot);
      r = UV_ENOMEM;
    }
  } else if (pool->nwaiters >= pool->cfg->max_waiters) {
    pool->rejected++;
    pp__diag_set(diag, "%d checkouts already waiting (checkout.max_waiters)",
                 pool->nwaiters);
    r = PP_EBUSY;
  } else {
    memset(&w, 0, sizeof(w));
    pp__queue_init(&w.node);
    pp__queue_init(&w.cnode);
    if (sem_init(&w.u.sem, 0, 0) != 0)
      abort(); /* only for a count over SEM_VALUE_MAX */
    w.thread = 1;
    w.diag = diag;
    w.call = q;
    pp__waiter_enqueue(pool, &w, client, timeout_ms);
    pp__bind(token, &bind, PP__BIND_WAIT, &w); /* not fired: checked */
    w.bind = &bind;
    /* Posted when done: granted (after a handoff, once its request is
     * written), cancelled, or failed.  Past its deadline and not done, it
     * ends itself; done, its post is on its way. */
    until = w.deadline_ns;
    for (;;) {
      pp__unlock(pool);
      r = sem_wait_until(&w.u.sem, until);
      pp__lock(pool);
      if (r == 0)
        break;
      if (!w.done) {
        pool->timeouts++;
        pp__waiter_complete(&w, pp__checkout_unavailable(pool, diag), NULL);
      }
      until = UINT64_MAX;
    }
    sem_destroy(&w.u.sem);
    r = w.status;
    if (w.lease && q && qcall_received(q)) {
      *out = w.lease; /* received by the thread that handed it over */
    } else if (w.lease) {
      /* Chosen for us; we may still die before we take it. */
      pp__unlock(pool);
      PP_FAULT(pool, "deliver");
      pp__lock(pool);
      r = pp__lease_receive(w.lease, diag);
      *out = r == 0 ? w.lease : NULL;
    }
  }
  pp__users_leave(pool);
  return r;
}

/* ---- the call, on the caller's thread */

/* Read until one whole frame is in rbuf.  Returns its size, or
 * PP_ETIMEDOUT, PP_ECRASHED (EOF or the process was reaped), PP_EPROTO. */
long pp__read_frame(pp__proc_t *proc, uint64_t deadline_ns, pp_frame_t *f) {
  uint32_t max = proc->pool->cfg->max_frame;
  long used;
  ssize_t n;
  int r, reaped = 0, polled = 0;

  for (;;) {
    if (proc->rlen > 0) {
      used = pp_frame_decode(proc->rbuf, proc->rlen, max, f);
      if (used > 0)
        return used;
      if (used < 0)
        return PP_EPROTO;
    }
    /* Right after a request, the reply is not there yet: wait first, and
     * spare the read that would only say EAGAIN. */
    if (!polled && proc->rlen == 0) {
      polled = 1;
      goto wait;
    }
    if (pp__proc_rbuf_reserve(proc, pp__proc_rbuf_want(proc)) != 0)
      return UV_ENOMEM;
    n = read(proc->rep_fd, proc->rbuf + proc->rlen, proc->rcap - proc->rlen);
    if (n > 0) {
      proc->rlen += (size_t)n;
      continue;
    }
    if (n == 0)
      return PP_ECRASHED;
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN)
      return PP_ECRASHED;
    if (reaped)
      return PP_ECRASHED;
  wait:
    if ((r = pp__reply_wait(proc, deadline_ns, &reaped)) != 0)
      return r;
  }
}

/* Poll for the reply for up to proc->spin_ns before sleeping.  A sleeping
 * caller is woken by the worker's write through the scheduler, which costs
 * several microseconds more on a VM; a polling one sees the reply as soon
 * as it is written.  Only while the threads in the pool's blocking calls
 * (each with a worker busy for it) and the pollers leave no CPU short: one
 * caller on 2 CPUs polls, two callers do not.  Each turn yields the CPU to
 * anything runnable beside us (the worker itself, when they share one).
 * > 0: something to read. */
static int spin(pp__proc_t *proc, struct pollfd *p, nfds_t n) {
  pp_pool_t *pool = proc->pool;
  int r = 0, users, spinners;
  uint64_t end;

  users = __atomic_load_n(&pool->users, __ATOMIC_RELAXED);
  spinners = __atomic_add_fetch(&pool->spinners, 1, __ATOMIC_RELAXED);
  if (users + spinners <= pool->ncpu) {
    end = pp__now_ns() + __atomic_load_n(&proc->spin_ns, __ATOMIC_RELAXED);
    while ((r = poll(p, n, 0)) == 0 && pp__now_ns() < end)
      sched_yield();
  }
  __atomic_sub_fetch(&pool->spinners, 1, __ATOMIC_RELAXED);
  return r;
}

/* Is the worker pinned to the CPU this thread runs on?  Then polling would
 * only keep it from running (asked when the window would open). */
static int pinned_here(const pp__proc_t *proc) {
  int cpu = sched_getcpu();
  cpu_set_t set;

  if (proc->pid <= 0 || cpu < 0 ||
      sched_getaffinity(proc->pid, sizeof(set), &set) != 0)
    return 0;
  return CPU_COUNT(&set) == 1 && CPU_ISSET(cpu, &set);
}

/* After a wait that ended in poll(2), `waited` ns after it began: like
 * KVM's halt polling, a wait that ended within the ceiling opens or widens
 * the window (10 us, then doubling), a longer one closes it, so slow
 * handlers cost no polling at all. */
void pp__spin_adapt(pp__proc_t *proc, uint64_t waited) {
  uint32_t max = proc->spin_max_ns, cur, next;

  cur = __atomic_load_n(&proc->spin_ns, __ATOMIC_RELAXED);
  if (waited > max)
    next = 0;
  else if (cur == 0)
    next = pinned_here(proc) ? 0 : max < 10000 ? max : 10000;
  else
    next = cur >= max / 2 ? max : cur * 2;
  __atomic_store_n(&proc->spin_ns, next, __ATOMIC_RELAXED);
}

int pp__reply_wait(pp__proc_t *proc, uint64_t deadline_ns, int *reaped) {
  struct pollfd p[3];
  nfds_t n = proc->call_cancel_fd >= 0 ? 3 : 2;
  uint64_t now = 0;
  int ms = -1, r = 0;

  if (deadline_ns || proc->spin_max_ns)
    now = pp__now_ns();
  if (deadline_ns) {
    if (now >= deadline_ns) {
      /* Past the deadline, a reply already in the pipe still counts: the
       * caller may have been paused (SIGSTOP, a slow VM) while it came. */
      PP_FAULT(proc->pool, "deadline");
      ms = 0;
    } else {
      ms = pp__poll_ms(deadline_ns, now);
    }
  }
  p[0].fd = proc->rep_fd;
  p[0].events = POLLIN;
  p[1].fd = proc->wake_fd;
  p[1].events = POLLIN;
  p[2].fd = proc->call_cancel_fd; /* the call's cancel token, if any */
  p[2].events = POLLIN;
  p[2].revents = 0;
  if (ms != 0 && __atomic_load_n(&proc->spin_ns, __ATOMIC_RELAXED))
    r = spin(proc, p, n);
  if (r == 0) {
    r = poll(p, n, ms);
    if (r > 0 && ms != 0 && proc->spin_max_ns)
      pp__spin_adapt(proc, pp__now_ns() - now);
  }
  if (r == 0 && ms == 0)
    return PP_ETIMEDOUT;
  if (r < 0 && errno != EINTR)
    return PP_ECRASHED;
  /* Cancelled, and no answer to read: the caller ends the call. */
  if (r > 0 && (p[2].revents & POLLIN) && !(p[0].revents & POLLIN))
    return PP_ECANCELED;
  /* The process was reaped: read once more, for a reply written just
   * before it died. */
  if (r > 0 && (p[1].revents & POLLIN))
    *reaped = 1;
  return 0;
}

/* After EOF on the reply pipe, give the loop a moment to reap the process,
 * so the error names the exit (signal 9, exit 3, ...). */
void pp__wait_reaped(pp__proc_t *proc, uint64_t ms) {
  struct pollfd p = {.fd = proc->wake_fd, .events = POLLIN};

  while (poll(&p, 1, (int)ms) < 0 && errno == EINTR)
    ;
}

int pp__reply_store(void *to, const char *p, size_t len, int binary) {
  pp_buf_t *reply = to;
  size_t cap;
  char *np;

  if (reply == NULL)
    return 0;
  reply->binary = binary;
  if (reply->cap < len + 1) {
    cap = reply->cap ? reply->cap : 256;
    while (cap < len + 1)
      cap *= 2;
    np = realloc(reply->data, cap);
    if (np == NULL)
      return UV_ENOMEM;
    reply->data = np;
    reply->cap = cap;
  }
  memcpy(reply->data, p, len);
  reply->data[len] = '\0';
  reply->len = len;
  return 0;
}

/* A lease's call on its caller's thread, in plain steps: call_begin (lock
 * held) checks the lease and hands the worker the request; call_io (lock
 * not held) writes it and reads the answer; call_end (lock held) maps and
 * counts the outcome (call.c); call_fence takes the lease away if it was
 * checked in or reclaimed meanwhile. */
typedef struct {
  pp_lease_t *lease;
  pp__proc_t *proc;
  uint32_t id;
  uint64_t sent_ns, deadline_ns;
  uint64_t req_deadline_ns;  /* worker.request_timeout's (or the lease
                                call's timeout), 0 = none */
  uint64_t call_deadline_ns; /* pp_call's timeout_ms, 0 = none */
  uint64_t end_ns;           /* the answer read, or the I/O given up */
  int sent;                  /* the request reached the worker's pipe */
  long used;                 /* the answer's size in rbuf, 0 when none */
  int status;
  int cancelled;        /* set by pp_cancel (lock held) while bound */
  const char *cmd;      /* a binary call's handler, or NULL */
  pp_chunk_cb on_chunk; /* a streamed call's, or NULL */
  void *chunk_data;
  int stopped; /* on_chunk asked to stop the stream */
  pp__bind_t bind;
  pp_cancel_t *token; /* bind's, kept after it is unbound */
  char *msg;          /* why it failed: the caller's diag, or NULL */
  size_t cap;         /* its size, 0 with NULL */
} tcall_t;

/* Refuses the call (its status, nothing changed) or starts it. */
static int call_begin(tcall_t *c, pp_lease_t *lease, size_t len,
                      int64_t timeout_ms, const pp_call_opts_t *opts,
                      pp_diag_t *diag) {
  pp_cancel_t *token = opts ? opts->cancel : NULL;
  pp_pool_t *pool = lease->pool;
  pp__slot_t *slot = lease->slot;
  pp__proc_t *proc = lease->proc;
  uint64_t ms;

  PP_ASSERT_LOCKED(lease->pool);

  /* Read under the lock: a client's death detaches the lease from its
   * worker from another thread. */
  assert(!lease->free && !lease->released && !lease->checked_in &&
         !lease->thread_call);
  memset(c, 0, sizeof(*c));
  c->lease = lease;
  c->proc = proc;
  c->msg = diag ? diag->message : NULL;
  c->cap = diag ? sizeof(diag->message) : 0;
  if (lease->reaped || lease->client->dead) {
    /* Reclaimed with its client: fenced until checked in. */
    pp__diag_set(diag, "client closed; the lease was reclaimed");
    return PP_ECANCELED;
  }
  if (lease->cancelled) {
    pp__diag_set(diag, "a call on this lease was cancelled while it ran, and "
                       "its worker left the lease: check the lease in");
    return PP_ECANCELED;
  }
  if (pool->stopping || lease->ended || proc == NULL || proc->dead) {
    pp__diag_set(diag, "%s",
                 pool->stopping            ? "pool is closing"
                 : proc && proc->detail[0] ? proc->detail
                                           : "worker is gone");
    return pool->stopping ? PP_ECLOSED : PP_ECRASHED;
  }
  if (len > pool->cfg->max_frame) {
    pp__diag_set(diag, "payload of %zu bytes is over worker.max_frame", len);
    return PP_ETOOBIG;
  }
  if (pp__bind(token, &c->bind, PP__BIND_THREAD, &c->cancelled) != 0) {
    pp__diag_set(diag, "the call was cancelled before it started");
    return PP_ECANCELED;
  }
  c->token = token;
  if (opts) {
    c->cmd = opts->cmd;
    c->on_chunk = opts->on_chunk;
    c->chunk_data = opts->chunk_data;
  }
  proc->call_cancel_fd = token ? token->fd : -1;
  lease->thread_call = 1;
  lease->writing = 1;
  __atomic_add_fetch(&pool->users, 1, __ATOMIC_RELAXED);
  slot->state = PP_WORKER_BUSY;
  c->id = ++proc->next_id;
  ms = timeout_ms >= 0 ? (uint64_t)timeout_ms : pool->cfg->request_timeout_ms;
  proc->req_timeout_ms = ms; /* counted at its end: it may not get in */
  pp__trace(pool, PP_TRACE_REQUEST, slot->id, proc->generation, proc->pid,
            lease->id, lease->client->id, 0, NULL);
  c->sent_ns = proc->req_start_ns = pp__now_ns();
  c->deadline_ns = ms ? pp__deadline_after(c->sent_ns, ms) : 0;
  c->req_deadline_ns = c->deadline_ns;
  return 0;
}

static void call_leave(tcall_t *c, int cancel);

/* pp_call's deadline passed while its request runs (lock held): the caller
 * goes, and the worker is left as on_client_death says, as for a client
 * that went away: finish lets the request run (the loop reads and drops
 * its reply), cancel also sends CANCEL (the worker is replaced past
 * cancel_grace), kill replaces the worker now. */
static int call_abandon(tcall_t *c) {
  pp__proc_t *proc = c->proc;

  if (pp__call_expired(proc, c->on_chunk != NULL, c->msg, c->cap))
    return PP_ETIMEDOUT;
  call_leave(c, pp__call_cancels(proc, c->on_chunk != NULL));
  return PP_ETIMEDOUT;
}

/* pp_cancel ended the call while its request runs, or its on_chunk
 * stopped its stream (lock held): the worker gets CANCEL and the loop its
 * reply (dropped), or replaces it past cancel_grace; the lease loses the
 * worker. */
static int call_cancel(tcall_t *c) {
  c->lease->cancelled = 1;
  call_leave(c, 1);
  snprintf(c->msg, c->cap, "the %s; its worker %d was sent CANCEL",
           c->stopped ? "stream was stopped by its on_chunk"
                      : "call was cancelled",
           c->lease->slot->id);
  pp__lease_detach(c->lease);
  return PP_ECANCELED;
}

/* The caller goes and leaves its request running to the loop (lock
 * held): it reads and drops the reply, up to the request's deadline;
 * with cancel the worker also gets CANCEL. */
static void call_leave(tcall_t *c, int cancel) {
  pp__proc_t *proc = c->proc;
  pp_pool_t *pool = proc->pool;

  proc->orphan_id = c->id;
  pool->orphans++;
  /* The loop reads from here on, up to the request's own deadline. */
  proc->orphan_deadline_ns = c->req_deadline_ns;
  proc->orphan_handoff = 1;
  pool->loop_wake = 1;
  pp__wake(pool);
  if (cancel)
    pp__proc_cancel(proc, c->id);
}

/* Writes c's request (lock not held): 0 when it reached the worker. */
static int call_write(tcall_t *c, const void *payload, size_t len, int once) {
  pp__proc_t *proc = c->proc;
  pp_pool_t *pool = proc->pool;
  int r;

  r = pp__proc_write_request(proc, c->id, payload, len, c->deadline_ns, c->cmd,
                             c->on_chunk != NULL, once);
  if (r == UV_EAGAIN)
    return r; /* nothing written: its own thread writes it */
  c->sent = r == 0;
  /* A client that died while we wrote left its CANCEL to us, so that it
   * reaches the worker after the request it cancels. */
  if (pool->cfg->on_client_death == PP_DEATH_CANCEL) {
    pp__lock(pool);
    c->lease->writing = 0;
    if (r == 0 && (c->lease->client->dead || c->lease->checked_in))
      pp__proc_cancel(proc, c->id);
    pp__unlock(pool);
  }
  return r;
}

/* Reads c's answer (lock not held), r being call_write's outcome. */
static void call_read(tcall_t *c, int r, pp_buf_t *reply) {
  pp__proc_t *proc = c->proc;
  pp_pool_t *pool = proc->pool;
  pp_frame_t f;
  long used = 0;

  while (r == 0 && (used = pp__read_frame(proc, c->deadline_ns, &f)) > 0 &&
         c->on_chunk && pp__chunk_of(&f, c->id)) {
    /* A stream's item: its caller takes it here, on its own thread, and
     * nothing more is read meanwhile.  Past its deadline, cancelled, or
     * its client dead or its lease checked in by another thread (its
     * items would go nowhere), the stream ends before the item: what is
     * left unread goes to the loop with the worker (call_leave). */
    pp__lock(pool);
    if (c->lease->client->dead || c->lease->checked_in)
      c->stopped = 1;
    r = c->stopped                                         ? PP_ECANCELED
        : c->cancelled                                     ? PP_ECANCELED
        : c->deadline_ns && pp__now_ns() >= c->deadline_ns ? PP_ETIMEDOUT
                                                           : 0;
    pp__unlock(pool);
    if (r != 0)
      break;
    c->stopped =
        c->on_chunk(f.payload, f.len, (f.flags & PP_FRAME_FLAG_BINARY) != 0,
                    c->chunk_data) != 0;
    memmove(proc->rbuf, proc->rbuf + used, proc->rlen - (size_t)used);
    proc->rlen -= (size_t)used;
    if (c->stopped)
      r = PP_ECANCELED;
  }
  if (r == 0 && used > 0) {
    c->used = used;
    r = pp__call_reply(&f, c->id, pp__reply_store, reply, c->msg, c->cap);
  } else if (r == 0) {
    r = (int)used;
  }
  c->end_ns = pp__now_ns();
  if (r == PP_ECRASHED && c->sent)
    pp__wait_reaped(proc, pool->cfg->kill_grace_ms + 1000);
  PP_FAULT(pool, "reply");
  c->status = r;
}

/* The outcome, mapped and counted; the worker goes back to its lease or
 * is failed.  Returns the call's status. */
static int call_end(tcall_t *c) {
  pp_lease_t *lease = c->lease;
  pp__proc_t *proc = c->proc;
  pp_pool_t *pool = lease->pool;
  pp__slot_t *slot = lease->slot;
  int r = c->status, answered = c->used > 0 && r != PP_EPROTO;
  /* Its pipe was closed before the whole request went in: not a request
   * the worker can answer.  A write that timed out is not that: part of a
   * frame may be in the pipe, so the worker is replaced (pp__call_fail),
   * never left to run on or sent a CANCEL. */
  int unsent = !c->sent && r != PP_ETIMEDOUT;

  PP_ASSERT_LOCKED(lease->pool);

  pp__unbind(&c->bind);
  if (c->cancelled)
    pp__cancel_woke(c->token);
  proc->call_cancel_fd = -1;
  lease->thread_call = 0;
  lease->writing = 0;
  proc->cancel_sent = 0;
  if (c->used > 0) {
    memmove(proc->rbuf, proc->rbuf + c->used, proc->rlen - (size_t)c->used);
    proc->rlen -= (size_t)c->used;
  }
  if (unsent && proc->dead) {
    /* Failed meanwhile (the pool's close, say): its end says why. */
    r = pp__call_cut(proc, proc->kill_reason, 1, c->msg, c->cap);
  } else if (unsent) {
    /* It died while idle and the loop has not reaped it yet. */
    pp__proc_fail(proc, PP_EXIT_NONE, "worker died while idle");
    snprintf(c->msg, c->cap, "worker %d died while idle", slot->id);
    r = PP_ECRASHED;
  } else if (!answered && !proc->dead && c->sent &&
             (c->stopped ||
              (c->cancelled && (r == PP_ECANCELED || r == PP_ETIMEDOUT)))) {
    r = call_cancel(c);
  } else if (!answered && r == PP_ETIMEDOUT && c->sent && c->call_deadline_ns &&
             c->deadline_ns == c->call_deadline_ns) {
    r = call_abandon(c);
  } else if (!answered) {
    r = pp__call_fail(proc, r, c->msg, c->cap);
  } else if (proc->rlen > 0) {
    pp__proc_fail(proc, PP_EXIT_PROTOCOL, "bytes after the reply");
  } else if (slot->lease == lease && !proc->dead) {
    slot->state = PP_WORKER_LEASED;
  }
  if (c->cancelled && r != PP_ECANCELED) {
    /* pp_cancel counted it: the answer read (or the failure) is not the
     * caller's any more. */
    if (answered && (r == 0 || r == PP_EHANDLER))
      pool->stale_replies++;
    snprintf(c->msg, c->cap, "the call was cancelled");
    r = PP_ECANCELED;
  }
  /* A worker failed, or left running the request (call_abandon), keeps
   * its start: status shows its age, a timeout's stack dump says how long
   * it ran. */
  if (!proc->dead && proc->orphan_id == 0)
    proc->req_start_ns = 0;
  if (!unsent) {
    pp__count_request(pool, NULL, 0);
    pp__count_end(pool, proc, c->sent_ns, c->end_ns, r, answered);
  }
  if (answered)
    pp__trace(pool, PP_TRACE_REPLY, slot->id, proc->generation, proc->pid,
              lease->id, lease->client->id, r, NULL);

  if (pool->stopping) {
    pp__proc_fail(proc, PP_EXIT_NONE, "pool closing");
    pp__lease_detach(lease);
  }
  return r;
}

/* Checked in by another thread, or its client died, during the call: the
 * answer is dropped and the lease taken away (1).  0: still the caller's. */
static int call_fence(pp_lease_t *lease, int *r, pp_diag_t *diag) {
  pp_pool_t *pool = lease->pool;

  if (!lease->checked_in && !lease->client->dead)
    return 0;
  if (*r == 0 || *r == PP_EHANDLER)
    pool->stale_replies++;
  if (lease->checked_in) {
    pp__lease_end(lease, 0, "checked in during a request");
    pp__diag_set(diag, "lease checked in during the request");
  } else {
    pool->reclaimed_busy++;
    pp__lease_end(lease, 1, "client closed during a request");
    pp__diag_set(diag, "client closed during the request");
  }
  *r = PP_ECANCELED;
  return 1;
}

/* The call's steps after call_begin: I/O without the lock, the end with
 * it (held again on return).  written: call_write's outcome when the
 * request was written already (a handoff), else NULL. */
static int call_run(tcall_t *c, const void *payload, size_t len,
                    pp_buf_t *reply, pp_diag_t *diag, const int *written) {
  pp_pool_t *pool = c->lease->pool;
  int r;

  pp__unlock(pool);
  call_read(c, written ? *written : call_write(c, payload, len, 0), reply);
  pp__lock(pool);
  r = call_end(c);
  call_fence(c->lease, &r, diag);
  if (r == PP_ECANCELED && reply)
    reply->len = 0; /* an answer read first is not the caller's */
  pp__users_leave(pool);
  return r;
}

int pp_lease_call(pp_lease_t *lease, const void *payload, size_t len,
                  int64_t timeout_ms, pp_buf_t *reply, pp_diag_t *diag) {
  pp_call_opts_t o = {.timeout_ms = timeout_ms};

  return pp_lease_call_with(lease, payload, len, &o, reply, diag);
}

int pp_lease_call_with(pp_lease_t *lease, const void *payload, size_t len,
                       const pp_call_opts_t *opts, pp_buf_t *reply,
                       pp_diag_t *diag) {
  pp_pool_t *pool;
  tcall_t c;
  int r;

  assert(lease != NULL);
  pool = lease->pool;
  if (reply)
    reply->len = reply->binary = 0;
  if ((r = pp__call_opts_check(pool, opts, 0, diag)) != 0)
    return r;
  pp__lock(pool);
  r = call_begin(&c, lease, len, opts ? opts->timeout_ms : -1, opts, diag);
  if (r == 0)
    r = call_run(&c, payload, len, reply, diag, NULL);
  pp__unlock(pool);
  return r;
}

/* A pp_call on a lease of its own (worker.pipeline_depth 1, or a payload
 * too large to pipeline).  While its thread waits for a worker, the
 * thread that checks one in hands it over and writes its request
 * (handoff_begin, handoff_write), so that the worker runs it while its
 * own thread wakes up: workers are not left idle for a wake-up. */
struct qcall {
  tcall_t c;
  const void *payload;
  size_t len;
  uint64_t deadline_ns; /* pp_call's timeout_ms, 0 = none */
  const pp_call_opts_t *opts;
  pp_diag_t *diag;
  int received; /* the lease was received for it (handed over) */
  int begun;    /* call_begin ran for it */
  int tried;    /* and the thread that handed it over wrote its request: */
  int wrote;    /* call_write's outcome */
};

static int qcall_received(const qcall_t *q) { return q->received; }

/* Starts q's call on lease (lock held): 0, or its status (nothing
 * changed). */
static int qcall_begin(qcall_t *q, pp_lease_t *lease) {
  int r;

  if (q->deadline_ns && pp__now_ns() >= q->deadline_ns) {
    /* Its time ran out before the worker was ours: never sent. */
    pp__diag_set(q->diag,
                 "the call ran past its timeout_ms waiting for a worker");
    return PP_ETIMEDOUT;
  }
  r = call_begin(&q->c, lease, q->len, -1, q->opts, q->diag);
  if (r == 0 && q->deadline_ns &&
      (q->c.deadline_ns == 0 || q->deadline_ns < q->c.deadline_ns))
    q->c.deadline_ns = q->c.call_deadline_ns = q->deadline_ns;
  return r;
}

/* The waiter a check-in just handed a worker to (lock held): its lease
 * received and its call begun here, for handoff_write; else (its time is
 * up, its call refused) it is woken to find out itself.  1: to write. */
static int handoff_begin(pp__waiter_t *w) {
  qcall_t *q = w->call;
  pp_lease_t *lease = w->lease;

  if (lease->client->dead || (q->deadline_ns && pp__now_ns() >= q->deadline_ns))
    return 0;
  if (pp__lease_receive(lease, q->diag) != 0)
    return 0; /* (not reached: alive, checked above) */
  q->received = 1;
  if (qcall_begin(q, lease) != 0)
    return 0;
  q->begun = 1;
  return 1;
}

/* handoff_begin's request written (lock not held), then its thread woken:
 * w is gone after the post.  Only what goes in at once (a frame of at most
 * PIPE_BUF bytes, room in the pipe): the handing thread's own call is over
 * and never waits on another's worker; else the woken thread writes. */
static void handoff_write(pp__waiter_t *w, int write) {
  qcall_t *q = w->call;

  if (write) {
    PP_FAULT(q->c.lease->pool, "handoff_write");
    q->wrote = call_write(&q->c, q->payload, q->len, 1);
    q->tried = q->wrote != UV_EAGAIN;
  }
  sem_post(&w->u.sem);
}

/* Runs q on lease (lock held; released on return), then checks the lease
 * in, handing the worker over.  1 when the request never reached its
 * worker (it died idle, unreaped), so that another may take it. */
static int call_leased(pp_lease_t *lease, qcall_t *q, pp_buf_t *reply, int *r) {
  pp_pool_t *pool = lease->pool;
  pp__waiter_t *next;
  int unsent, write = 0;

  *r = q->begun ? 0 : qcall_begin(q, lease);
  if (*r == 0)
    *r = call_run(&q->c, q->payload, q->len, reply, q->diag,
                  q->begun && q->tried ? &q->wrote : NULL);
  unsent = *r == PP_ECRASHED && !q->c.sent;
  q->begun = q->received = q->tried = 0;
  pool->handoff_open = 1;
  if (!lease->free && !lease->reaped)
    pp__lease_checkin(lease);
  pool->handoff_open = 0;
  if ((next = pool->handed) != NULL) {
    pool->handed = NULL;
    write = handoff_begin(next);
  }
  pp__unlock(pool);
  if (next)
    handoff_write(next, write);
  return unsent;
}

int pp_call(pp_pool_t *pool, const void *payload, size_t len, pp_buf_t *reply,
            int64_t timeout_ms, pp_diag_t *diag) {
  pp_call_opts_t o = {.timeout_ms = timeout_ms};

  return pp_call_with(pool, payload, len, reply, &o, diag);
}

/* A pipelined pp_call_with that can end early (a deadline, a token): a
 * pp_call_async_with from this thread, waited for. */
typedef struct {
  sem_t sem;
  int status;
  pp_buf_t *reply;
  pp_diag_t *diag;
} waited_t;

static void waited_cb(const pp_result_t *res, void *data) {
  waited_t *w = data;
  int status = res->status;

  if (res->len > 0 &&
      pp__reply_store(w->reply, res->reply, res->len, res->binary) != 0)
    status = UV_ENOMEM;
  if (res->diag && w->diag)
    snprintf(w->diag->message, sizeof(w->diag->message), "%s",
             res->diag->message);
  w->status = status;
  sem_post(&w->sem);
}

static int call_waited(pp_pool_t *pool, const void *payload, size_t len,
                       pp_buf_t *reply, const pp_call_opts_t *opts,
                       pp_diag_t *diag) {
  waited_t w = {.reply = reply, .diag = diag};
  int r;

  /* The loop runs the callback that wakes us. */
  assert(!pp__on_loop_thread(pool));
  sem_init(&w.sem, 0, 0);
  r = pp_call_async_with(pool, payload, len, opts, waited_cb, &w);
  if (r == 0) {
    while (sem_wait(&w.sem) != 0)
      ; /* EINTR */
    r = w.status;
  } else {
    pp__diag_set(diag, "%s",
                 r == PP_ECANCELED ? "the call was cancelled before it started"
                                   : pp_strerror(r));
  }
  sem_destroy(&w.sem);
  return r;
}

int pp_call_with(pp_pool_t *pool, const void *payload, size_t len,
                 pp_buf_t *reply, const pp_call_opts_t *opts, pp_diag_t *diag) {
  int64_t timeout_ms = opts ? opts->timeout_ms : -1;
  pp_cancel_t *token = opts ? opts->cancel : NULL;
  qcall_t q = {0};
  pp__slot_t *slot;
  pp_lease_t *lease;
  uint64_t now;
  int r, tries = 0;

  assert(pool != NULL);
  if (reply)
    reply->len = reply->binary = 0;
  if ((r = pp__call_opts_check(pool, opts, 1, diag)) != 0)
    return r;
  /* Workers that answer out of order (worker.concurrency) take calls
   * through pp_call_async's rings, which match replies by id.  A stream's
   * chunks come to this thread: a worker of its own. */
  if (pool->cfg->concurrency > 1 && !(opts && opts->on_chunk))
    return call_waited(pool, payload, len, reply, opts, diag);
  if (pool->cfg->pipeline_depth > 1 && len <= PP_PIPELINE_MAX_PAYLOAD &&
      !(opts && opts->on_chunk)) {
    if (timeout_ms >= 0 || token || (opts && opts->cmd))
      return call_waited(pool, payload, len, reply, opts, diag);
    return pp__pipelined_call(pool, payload, len, reply, timeout_ms, diag);
  }
  q.payload = payload;
  q.len = len;
  q.opts = opts;
  q.diag = diag;
  if (timeout_ms >= 0)
    q.deadline_ns = pp__deadline_after(pp__now_ns(), (uint64_t)timeout_ms);
  /* A request that never reached its worker (it died idle, unreaped) is
   * retried on another: the caller does not notice. */
  for (;;) {
    /* The common case in two locked steps: an idle worker is taken and the
     * request set up in one; the reply is booked and the worker returned in
     * the other. */
    pp__lock(pool);
    if (!pool->stopping && !pool->draining &&
        (slot = pp__idle_take(pool)) != NULL) {
      pp__count_wait(pool, 0, 0);
      lease = pp__lease_new(slot, &pool->anon);
      if (lease == NULL) {
        pp__slot_release(slot);
        pp__unlock(pool);
        return UV_ENOMEM;
      }
    } else {
      now = pp__now_ns();
      r = lease_wait(pool, NULL,
                     q.deadline_ns == 0 ? -1
                     : q.deadline_ns > now
                         ? (int64_t)((q.deadline_ns - now) / 1000000)
                         : 0,
                     token, &q, &lease, diag);
      if (r != 0) {
        pp__unlock(pool);
        return r;
      }
    }
    if (!call_leased(lease, &q, reply, &r) || ++tries > pool->nslots)
      return r;
    /* Retried: what the dead worker's turn said is not this call's. */
    if (diag)
      memset(diag, 0, sizeof(*diag));
  }
}

int pp_call_bytes(pp_pool_t *pool, const char *cmd, const void *data,
                  size_t len, pp_buf_t *reply, const pp_call_opts_t *opts,
                  pp_diag_t *diag) {
  pp_call_opts_t o = {.timeout_ms = -1};

  if (opts)
    o = *opts;
  o.cmd = cmd;
  if (cmd == NULL) {
    pp__diag_set(diag, "pp_call_bytes needs a handler name");
    return UV_EINVAL;
  }
  return pp_call_with(pool, data, len, reply, &o, diag);
}

int pp_call_cmd(pp_pool_t *pool, const char *cmd, const char *args_json,
                pp_buf_t *reply, int64_t timeout_ms, pp_diag_t *diag) {
  char stack[1024];
  char *p = stack;
  size_t need;
  int n, r;

  /* A handler name is an ASCII identifier, so it goes into the JSON text
   * without escaping; anything else (a quote could add keys) is refused. */
  if (!pp__identifier(cmd, SIZE_MAX)) {
    pp__diag_set(diag,
                 "command name '%.64s' is not an identifier (letters, digits, "
                 "'_', not starting with a digit); for other names build the "
                 "JSON request and use pp_call",
                 cmd);
    return UV_EINVAL;
  }
  if (args_json == NULL)
    args_json = "null";
  need = strlen(cmd) + strlen(args_json) + 24;
  if (need > sizeof(stack) && (p = malloc(need)) == NULL)
    return UV_ENOMEM;
  /* cmd comes last: JSON decoders here keep the last of duplicate keys,
   * so args text that smuggles in a "cmd" key cannot override it. */
  n = snprintf(p, need, "{\"args\":%s,\"cmd\":\"%s\"}", args_json, cmd);
  r = pp_call(pool, p, (size_t)n, reply, timeout_ms, diag);
  if (p != stack)
    free(p);
  return r;
}
