/* pool.c -- owns a pool's life on its loop: start, the slot state machine
 * (starting -> idle -> leased/busy -> ... -> backoff/fatal), HELLO and exit
 * handling, restarts with backoff, readiness, and the graceful stop.
 * Checkout and leases live in checkout.c, the threaded face in blocking.c. */
#include "internal.h"

#include <assert.h>
#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void stop_check_done(pp_pool_t *pool);
static void on_async(uv_async_t *a);

/* The pool lock is held for short steps by many threads; spinning a
 * little before sleeping saves a futex round trip when it is busy. */
static void mutex_init_adaptive(uv_mutex_t *m) {
#if defined(PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP)
  pthread_mutexattr_t a;

  if (pthread_mutexattr_init(&a) == 0) {
    if (pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP) == 0 &&
        pthread_mutex_init(m, &a) == 0) {
      pthread_mutexattr_destroy(&a);
      return;
    }
    pthread_mutexattr_destroy(&a);
  }
#endif
  uv_mutex_init(m);
}

#ifdef PP_CHECKS
static void owner_set(pp_pool_t *pool, int held) {
  __atomic_store_n(&pool->lock_owner, held ? uv_thread_self() : 0,
                   __ATOMIC_RELAXED);
}

void pp__check_failed(const char *what, const char *file, int line) {
  fprintf(stderr, "portpool: %s:%d: precondition failed: %s\n", file, line,
          what);
  abort();
}

int pp__lock_held(pp_pool_t *pool) {
  uv_thread_t self = uv_thread_self(),
              owner = __atomic_load_n(&pool->lock_owner, __ATOMIC_RELAXED);

  return uv_thread_equal(&self, &owner);
}
#else
#define owner_set(pool, held) ((void)0)
#endif

void pp__lock(pp_pool_t *pool) {
  uv_mutex_lock(&pool->lock);
  owner_set(pool, 1);
}

void pp__unlock(pp_pool_t *pool) {
  owner_set(pool, 0);
  uv_mutex_unlock(&pool->lock);
}

void pp__cond_wait(pp_pool_t *pool, uv_cond_t *cond) {
  owner_set(pool, 0);
  uv_cond_wait(cond, &pool->lock);
  owner_set(pool, 1);
}

void pp__cond_timedwait(pp_pool_t *pool, uv_cond_t *cond, uint64_t ns) {
  owner_set(pool, 0);
  uv_cond_timedwait(cond, &pool->lock, ns);
  owner_set(pool, 1);
}
static void loop_work(pp_pool_t *pool);

static void on_wake_idle(uv_idle_t *h) {
  pp_pool_t *pool = h->data;

  pool->wake_idling = 0;
  uv_idle_stop(h);
  loop_work(pool);
}

void pp__wake(pp_pool_t *pool) {
  /* On the loop thread an idle handle does it: no syscall, and the loop
   * does not block in its next poll before running it. */
  if (pool->wake_idle.loop != NULL && !pool->finishing &&
      pp__on_loop_thread(pool)) {
    if (!pool->wake_idling) {
      pool->wake_idling = 1;
      uv_idle_start(&pool->wake_idle, on_wake_idle);
    }
    return;
  }
  uv_async_send(&pool->async);
}

int pp__on_loop_thread(pp_pool_t *pool) {
  uv_thread_t self = uv_thread_self();
  return uv_thread_equal(&self, &pool->loop_thread_id);
}

void pp__log(pp_pool_t *pool, const char *fmt, ...) {
  char line[PP_LINE_MAX + 128];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (pool->opts.log)
    pool->opts.log(pool, line, pool->opts.log_data);
  else
    fprintf(stderr, "portpool[%s] %s\n", pool->cfg->name, line);
}

/* A per-pool generator (xorshift64*) for jitter: no global state; seeded
 * from the start time and the pid, advanced by every draw (lock held). */
uint64_t pp__rand(pp_pool_t *pool) {
  uint64_t x = pool->rng;

  if (x == 0)
    x = (pool->start_ns ^ ((uint64_t)getpid() << 32)) | 1;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  pool->rng = x;
  return x * 0x2545f4914f6cdd1dull;
}

void pp__slot_count(pp_pool_t *pool, int *idle, int *leased, int *busy,
                    int *starting, int *backoff, int *fatal) {
  int i;

  *idle = *leased = *busy = *starting = *backoff = *fatal = 0;
  for (i = 0; i < pool->nslots; i++) {
    if (pool->slots[i]->removing)
      continue;
    switch (pool->slots[i]->state) {
    case PP_WORKER_IDLE:
      (*idle)++;
      break;
    case PP_WORKER_LEASED:
      (*leased)++;
      break;
    case PP_WORKER_BUSY:
      (*busy)++;
      break;
    case PP_WORKER_STARTING:
      (*starting)++;
      break;
    case PP_WORKER_BACKOFF:
      (*backoff)++;
      break;
    case PP_WORKER_FATAL:
      (*fatal)++;
      break;
    default:
      break;
    }
  }
}

static void pend_ready(pp_pool_t *pool, int status) {
  if (pool->ready_reported)
    return;
  pool->ready_reported = 1;
  pool->ready_status = status;
  if (status == 0) {
    pool->state = PP_POOL_READY;
    pool->was_ready = 1;
    pp__trace(pool, PP_TRACE_READY, -1, 0, 0, 0, 0, 0, NULL);
  }
  if (pool->ready_cb) {
    pp__pending_t *p = calloc(1, sizeof(*p));
    if (p) {
      p->kind = PP__PEND_READY;
      pp__queue_insert_tail(&pool->pending, &p->node);
      pp__wake(pool);
    }
  }
  uv_cond_broadcast(&pool->state_cond);
}

static void check_ready(pp_pool_t *pool) {
  int idle, leased, busy, starting, backoff, fatal;

  if (pool->ready_reported)
    return;
  pp__slot_count(pool, &idle, &leased, &busy, &starting, &backoff, &fatal);
  if (idle + leased + busy >= pool->ready_count)
    pend_ready(pool, 0);
}

/* The pool can serve nobody: every slot is fatal. */
static void check_degraded(pp_pool_t *pool) {
  int i;

  for (i = 0; i < pool->nslots; i++)
    if (!pool->slots[i]->removing && pool->slots[i]->state != PP_WORKER_FATAL)
      return;
  if (pool->state == PP_POOL_DEGRADED)
    return;
  pool->state = PP_POOL_DEGRADED;
  pp__trace(pool, PP_TRACE_DEGRADED, -1, 0, 0, 0, 0, PP_EDEGRADED, NULL);
  pp__log(pool, "pool degraded: every worker slot gave up restarting");
  pp__waiters_fail_all(pool, PP_EDEGRADED,
                       "pool degraded: every worker slot gave up restarting");
  pend_ready(pool, PP_EDEGRADED);
}

void pp__slot_release(pp__slot_t *slot) {
  pp_pool_t *pool = slot->pool;
  pp__proc_t *proc = slot->proc;
  pp__queue_t *q;
  pp__waiter_t *w;

  PP_ASSERT_LOCKED(slot->pool);

  if (proc == NULL || proc->dead)
    return;
  if (pool->stopping || slot->removing) {
    slot->state = PP_WORKER_STOPPING;
    pp__proc_fail(proc, PP_EXIT_NONE,
                  pool->stopping ? "pool closing" : "scaled down");
    return;
  }
  if (slot->next && slot->next->hello) {
    /* Its replacement is ready: the old worker retires here, idle. */
    pp__slot_swap(slot);
    proc = slot->proc;
  } else if (proc->max_requests && proc->requests >= proc->max_requests &&
             !slot->retiring) {
    pool->maintain_wanted = 1;
    pp__wake(pool);
  }
  /* Hand-off: the first waiter whose client is alive gets the worker, in
   * this same locked step.  Dead clients' waiters are never chosen. */
  pp__queue_foreach(q, &pool->waiters) {
    w = pp__container_of(q, pp__waiter_t, node);
    if (w->client->dead)
      continue;
    PP_FAULT(pool, "handoff");
    slot->state = PP_WORKER_LEASED;
    pp__waiter_complete(w, 0, pp__lease_new(slot, w->client));
    return;
  }
  slot->state = PP_WORKER_IDLE;
  if (pool->elastic) {
    slot->idle_since_ns = pp__now_ns();
    if (pool->target_size > pool->size_min && pool->scale_due_ns == 0)
      pp__scale_idle(pool); /* its idle window may end in a shrink */
  }
  if (pool->cfg->strategy == PP_PICK_LIFO)
    pp__queue_insert_head(&pool->idle, &slot->idle_node);
  else
    pp__queue_insert_tail(&pool->idle, &slot->idle_node);
  if (pool->pipe_waiters > 0)
    pp__pipe_kick(pool);
  if (pool->async_waiters > 0) {
    /* The loop gives it to them (this may be another thread). */
    pool->async_kick = 1;
    pp__wake(pool);
  }
}

void pp__proc_fail(pp__proc_t *proc, pp_exit_kind_t reason, const char *why) {
  pp_pool_t *pool = proc->pool;
  pp__slot_t *slot = proc->slot;
  pp_lease_t *lease = slot->proc == proc ? slot->lease : NULL;

  PP_ASSERT_LOCKED(proc->pool);

  if (proc->dead)
    return;
  proc->dead = 1;
  proc->kill_reason = reason;
  if (why != proc->detail)
    snprintf(proc->detail, sizeof(proc->detail), "%s", why);
  if (reason == PP_EXIT_PROTOCOL) {
    pp__trace(pool, PP_TRACE_PROTOCOL_ERROR, slot->id, proc->generation,
              proc->pid, lease ? lease->id : 0, 0, PP_EPROTO, why);
    pp__log(pool, "worker %d: protocol error: %s", slot->id, why);
  }
  if (slot->proc == proc) {
    pp__queue_remove(&slot->idle_node);
    if (slot->state == PP_WORKER_IDLE || slot->state == PP_WORKER_STARTING ||
        pool->stopping)
      slot->state = PP_WORKER_STOPPING;
  }
  if (lease && lease->in_flight)
    pp__loop_request_cut(lease, reason);
  if (slot->proc == proc && slot->anum > 0)
    pp__async_ring_fail(proc, reason);
  if (pp__on_loop_thread(pool)) {
    pp__proc_stop(proc, reason == PP_EXIT_PROTOCOL || reason == PP_EXIT_NO_HELLO
                            ? 0
                            : pool->cfg->kill_grace_ms);
  } else {
    proc->stop_wanted = 1;
    pp__queue_remove(&proc->stop_node);
    pp__queue_insert_tail(&pool->stop_list, &proc->stop_node);
    pool->loop_wake = 1;
    pp__wake(pool);
  }
}

void pp__proc_cancel(pp__proc_t *proc, uint32_t id) {
  pp_pool_t *pool = proc->pool;

  if (proc->dead)
    return;
  proc->cancel_id = id;
  if (!pp__on_loop_thread(pool)) {
    proc->cancel_wanted = 1;
    pool->loop_wake = 1;
    pp__wake(pool);
    return;
  }
  if (pp__proc_send(proc, PP_FRAME_CANCEL, id, NULL, 0) != 0) {
    pp__proc_fail(proc, PP_EXIT_NONE, "could not send CANCEL");
    return;
  }
  proc->cancel_sent = 1;
  pp__proc_arm(proc, pool->cfg->cancel_grace_ms);
}

void pp__quiesce_poke(pp_pool_t *pool) {
  if (pool->quiesce_waiting > 0)
    uv_cond_broadcast(&pool->quiesce_cond);
}

/* ---- frames and exits, called by proc.c on the loop with the lock held */

/* Keep the handler names a HELLO lists (a JSON array of strings) as the
 * pool's, for status; the latest HELLO wins, so a reload that changes the
 * handlers shows.  Anything else there is ignored. */
/* The kinds beside them: {"name": "async" | "stream"} for the handlers
 * that are not plain; NULL when the HELLO says none (or not in that
 * form). */
static void hello_kinds(pp_pool_t *pool, json_t *kinds) {
  const char *name, *v;
  json_t *kind;

  free(pool->handler_kinds);
  pool->handler_kinds = NULL;
  if (!json_is_object(kinds) || json_object_size(kinds) == 0)
    return;
  json_object_foreach(kinds, name, kind) {
    v = json_string_value(kind);
    if (v == NULL || (strcmp(v, "async") != 0 && strcmp(v, "stream") != 0))
      return;
  }
  pool->handler_kinds = json_dumps(kinds, JSON_COMPACT | JSON_SORT_KEYS);
}

static void hello_handlers(pp_pool_t *pool, json_t *list, json_t *kinds) {
  size_t i;
  char *text;

  if (!json_is_array(list))
    return;
  for (i = 0; i < json_array_size(list); i++)
    if (!json_is_string(json_array_get(list, i)))
      return;
  text = json_dumps(list, JSON_COMPACT);
  if (text == NULL)
    return; /* out of memory: keep the list we had */
  free(pool->handlers);
  pool->handlers = text;
  hello_kinds(pool, kinds);
}

static int hello_ok(pp__proc_t *proc, const pp_frame_t *f) {
  json_error_t jerr;
  json_t *j = json_loadb(f->payload, f->len, 0, &jerr);
  json_t *v = j ? json_object_get(j, "protocol") : NULL;
  int ok = v && json_is_integer(v) &&
           json_integer_value(v) >= PP_PROTOCOL_MIN &&
           json_integer_value(v) <= PP_PROTOCOL_VERSION;

  if (!ok)
    snprintf(proc->detail, sizeof(proc->detail),
             j ? "HELLO with an unsupported protocol version"
               : "HELLO payload is not JSON");
  else
    hello_handlers(proc->pool, json_object_get(j, "handlers"),
                   json_object_get(j, "kinds"));
  if (ok)
    proc->proto = (int)json_integer_value(v);
  json_decref(j);
  return ok;
}

/* One line of text from a worker, safe to show: control bytes become
 * '?'. */
static void strip_controls(char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      *s = '?';
}

void pp__slot_set_error(pp__slot_t *slot, const char *fmt, ...) {
  char text[PP__ERROR_CAP];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  strip_controls(text);
  free(slot->last_error);
  /* Out of memory: the slot just has no reason to show. */
  slot->last_error = text[0] ? strdup(text) : NULL;
}

void pp__slot_clear_error(pp__slot_t *slot) {
  free(slot->last_error);
  slot->last_error = NULL;
}

const char *pp__slot_error(const pp__slot_t *slot) {
  return slot->last_error ? slot->last_error : "";
}

/* The last line of a traceback that names a place ("File ..., line N,
 * in f"), into out; "" when there is none. */
static void traceback_where(const char *tb, char *out, size_t len) {
  const char *p = tb, *line = NULL, *end = NULL, *e;

  for (; *p; p = *e ? e + 1 : e) {
    e = strchr(p, '\n');
    if (e == NULL)
      e = p + strlen(p);
    while (p < e && *p == ' ')
      p++;
    if (strncmp(p, "File ", 5) == 0) {
      line = p;
      end = e;
    }
  }
  snprintf(out, len, "%.*s", line ? (int)(end - line) : 0, line ? line : "");
}

/* A traceback longer than this keeps only its end in the log, where the
 * exception is. */
#define BOOT_LOG_LINES 200

/* A boot failure the worker reported before HELLO: an ERROR frame with
 * request id 0 ({type, message, traceback}).  Keep "Type: message (File
 * ..., line N)" for the slot; the first one's traceback goes to the log,
 * once per pool.  The worker exits after it. */
static void on_boot_error(pp__proc_t *proc, const pp_frame_t *f) {
  pp__slot_t *slot = proc->slot;
  pp_pool_t *pool = proc->pool;
  json_t *j = json_loadb(f->payload, f->len, 0, NULL);
  const char *type = json_string_value(json_object_get(j, "type"));
  const char *msg = json_string_value(json_object_get(j, "message"));
  const char *tb = json_string_value(json_object_get(j, "traceback"));
  const char *p, *e;
  char where[160];
  int lines = 0;

  traceback_where(tb ? tb : "", where, sizeof(where));
  pp__slot_set_error(slot, "%s%s%s%s%s%s", type ? type : "error",
                     msg && *msg ? ": " : "", msg ? msg : "",
                     where[0] ? " (" : "", where, where[0] ? ")" : "");
  snprintf(proc->detail, sizeof(proc->detail), "%.*s",
           (int)sizeof(proc->detail) - 1, pp__slot_error(slot));
  proc->boot_failed = 1;
  if (!pool->boot_logged && tb && *tb) {
    pool->boot_logged = 1;
    pp__log(pool, "worker %d failed to boot:", slot->id);
    for (p = tb; *p; p++)
      lines += *p == '\n';
    if (lines > BOOT_LOG_LINES)
      pp__log(pool, "worker %d: [the first %d traceback lines not shown]",
              slot->id, lines - BOOT_LOG_LINES);
    for (p = tb; *p; p = *e ? e + 1 : e, lines--) {
      e = strchr(p, '\n');
      if (e == NULL)
        e = p + strlen(p);
      if (e > p && lines <= BOOT_LOG_LINES)
        pp__log(pool, "worker %d: %.*s", slot->id, (int)(e - p), p);
    }
  }
  json_decref(j);
}

void pp__on_frame(pp__proc_t *proc, const pp_frame_t *f) {
  pp__slot_t *slot = proc->slot;
  pp_pool_t *pool = proc->pool;
  pp_lease_t *lease = slot->proc == proc ? slot->lease : NULL;

  PP_ASSERT_LOOP(proc->pool);
  PP_ASSERT_LOCKED(proc->pool);

  if (!proc->hello) {
    if (proc->boot_failed) {
      pp__proc_fail(proc, PP_EXIT_PROTOCOL, "a frame after its boot failure");
      return;
    }
    if (f->type == PP_FRAME_ERROR && f->id == 0) {
      on_boot_error(proc, f);
      return;
    }
    if (f->type != PP_FRAME_HELLO) {
      pp__proc_fail(proc, PP_EXIT_PROTOCOL, "first frame is not HELLO");
      return;
    }
    if (!hello_ok(proc, f)) {
      pp__proc_fail(proc, PP_EXIT_PROTOCOL, proc->detail);
      return;
    }
    if (proc->rlen > PP_FRAME_HEADER + (size_t)f->len) {
      pp__proc_fail(proc, PP_EXIT_PROTOCOL, "bytes after HELLO");
      return;
    }
    proc->hello = 1;
    pp__slot_clear_error(slot);
    pp__scale_booted(pool);
    if (pool->reload_pending && proc->cfg_seq == pool->reload_seq)
      pool->reload_pending = 0; /* the new config boots: it stays */
    proc->ready_ns = pp__now_ns();
    pp__histo_add(&pool->h_spawn, (proc->ready_ns - proc->spawn_ns) / 1000);
    uv_timer_stop(&proc->timer);
    pp__proc_read_stop(proc);
    pp__trace(pool, PP_TRACE_HELLO, slot->id, proc->generation, proc->pid, 0, 0,
              0, proc == slot->next ? "replacement" : NULL);
    if (proc == slot->next)
      pp__next_ready(slot);
    else
      pp__slot_release(slot);
    check_ready(pool);
    return;
  }
  if (f->type == PP_FRAME_REPLY || f->type == PP_FRAME_ERROR) {
    if (slot->proc == proc && slot->anum > 0) {
      pp__async_reply(proc, f);
      return;
    }
    if (lease && lease->in_flight && f->id == lease->req_id) {
      pp__loop_reply(proc, f);
      return;
    }
    if (proc->orphan_id != 0 && pp__chunk_of(f, proc->orphan_id))
      return; /* a stream's chunk whose caller is gone: dropped */
    if (proc->orphan_id != 0 && f->id == proc->orphan_id) {
      /* The reply of a request whose client is gone: count and drop it,
       * never hand it to the next borrower. */
      proc->orphan_id = 0;
      proc->cancel_sent = 0;
      /* A CANCEL another thread asked for it is moot now: sent later, it
       * would arm cancel_grace over the worker's next request. */
      if (proc->cancel_id == f->id)
        proc->cancel_wanted = 0;
      proc->req_start_ns = 0;
      pool->orphans--;
      pp__count_stale(proc);
      pp__quiesce_poke(pool);
      if (proc->rlen > PP_FRAME_HEADER + (size_t)f->len) {
        pp__proc_fail(proc, PP_EXIT_PROTOCOL, "bytes after a reply");
        return;
      }
      pp__trace(pool, PP_TRACE_STALE_REPLY, slot->id, proc->generation,
                proc->pid, 0, 0, 0, NULL);
      uv_timer_stop(&proc->timer);
      pp__proc_read_stop(proc);
      pp__slot_release(slot);
      return;
    }
    pp__proc_fail(proc, PP_EXIT_PROTOCOL, "reply to a request never sent");
    return;
  }
  if (f->type == PP_FRAME_PONG && proc == slot->proc && slot->pinging) {
    pp__on_pong(slot);
    return;
  }
  pp__proc_fail(proc, PP_EXIT_PROTOCOL, "unexpected frame type");
}

void pp__on_proc_read_error(pp__proc_t *proc, int err) {
  pp__proc_read_stop(proc);
  if (err == UV_EOF && !proc->exited) {
    /* Usually the process is dying and its exit is on the way: give it
     * kill_grace to arrive, so the client learns how it died.  A worker
     * that closed fd 4 and lives on is a protocol error then. */
    proc->rep_eof = 1;
    pp__proc_arm(proc, proc->pool->cfg->kill_grace_ms);
    return;
  }
  pp__proc_fail(proc, PP_EXIT_PROTOCOL, "error reading the reply pipe");
}

void pp__on_proc_timer(pp__proc_t *proc) {
  pp__slot_t *slot = proc->slot;
  char why[96];

  PP_ASSERT_LOOP(proc->pool);
  PP_ASSERT_LOCKED(proc->pool);

  if (proc->rep_eof) {
    pp__proc_fail(proc, PP_EXIT_PROTOCOL, "worker closed its reply pipe");
    return;
  }
  if (!proc->hello) {
    snprintf(why, sizeof(why), "no HELLO within startup_timeout (%llums)",
             (unsigned long long)proc->pool->cfg->startup_timeout_ms);
    pp__log(proc->pool, "worker %d: %s; killed", slot->id, why);
    pp__proc_fail(proc, PP_EXIT_NO_HELLO, why);
    return;
  }
  if (slot->proc == proc && slot->anum > 0) {
    switch (pp__async_timer_due(proc)) {
    case 1:
      pp__proc_fail(proc, PP_EXIT_TIMEOUT, "request timed out");
      break;
    case 2:
      pp__proc_fail(proc, PP_EXIT_TIMEOUT, PP__IGNORED_CANCEL);
      break;
    }
    return;
  }
  if (proc->orphan_id != 0 && proc->cancel_sent)
    pp__proc_fail(proc, PP_EXIT_TIMEOUT, PP__IGNORED_CANCEL);
  else if (proc->orphan_id != 0 || (slot->lease && slot->lease->in_flight))
    pp__proc_fail(proc, PP_EXIT_TIMEOUT, "request timed out");
}

/* A worker that ended before HELLO without saying why: its last stderr
 * line, if any, is the best account. */
static void boot_error_from_exit(pp__slot_t *slot, const char *text) {
  const char *line = NULL;

  if (slot->stderr_tail && slot->stderr_next > 0)
    line = slot->stderr_tail[(slot->stderr_next - 1) % PP_STDERR_TAIL];
  pp__slot_set_error(slot, "%s%s%s", text, line ? ": " : ", nothing on stderr",
                     line ? line : "");
}

/* While the pool has never been ready, a boot failure is not retried
 * (unless restart.retry_boot_failures): it would fail the same way. */
static int boot_is_fatal(pp_pool_t *pool) {
  return !pool->was_ready && !pool->stopping && !pool->cfg->retry_boot_failures;
}

/* The slot gives up at once; the first such failure ends the wait for
 * ready with PP_EBOOT and the reason. */
static void slot_boot_failed(pp__slot_t *slot) {
  pp_pool_t *pool = slot->pool;

  slot->state = PP_WORKER_FATAL;
  pp__trace(pool, PP_TRACE_FATAL, slot->id, slot->generation, 0, 0, 0, PP_EBOOT,
            pp__slot_error(slot));
  pp__log(pool, "worker %d failed to boot: %s", slot->id, pp__slot_error(slot));
  if (!pool->boot_failed) {
    pool->boot_failed = 1;
    snprintf(pool->boot_diag, sizeof(pool->boot_diag),
             "worker %d failed to boot: %s", slot->id, pp__slot_error(slot));
    pp__waiters_fail_all(pool, PP_EBOOT, pool->boot_diag);
    pend_ready(pool, PP_EBOOT);
  }
  check_degraded(pool);
}

static void on_backoff(uv_timer_t *t) {
  pp__slot_t *slot = t->data;
  pp_pool_t *pool = slot->pool;

  pp__lock(pool);
  if (!pool->stopping && slot->state == PP_WORKER_BACKOFF)
    pp__spawn_slot(slot);
  pp__unlock(pool);
  pp__run_pending(pool);
}

/* Note a crash in the slot's history and return the crashes within
 * restart.within, this one included.  The history is PP__CRASH_RING
 * entries whatever max_restarts says: with max_restarts below that, each
 * entry is one crash and the count is exact (the oldest entry dropped is
 * more than max_restarts crashes back, so it never decides anything).
 * Above it, crashes less than within / PP__CRASH_RING after an entry's
 * first one join that entry, and an entry counts while its first crash is
 * within the window: the window is then exact to within one such part. */
static uint64_t crash_note(pp__slot_t *slot, uint64_t now) {
  pp_config_t *cfg = slot->pool->cfg;
  uint64_t within = cfg->within_ms * 1000000ull, part = 0, recent = 0;
  struct pp__crash *e = &slot->crashes[slot->crash_head];
  unsigned i;

  if ((uint64_t)cfg->max_restarts >= PP__CRASH_RING)
    part = within / PP__CRASH_RING;
  if (slot->ncrash > 0 && part > 0 && now - e->at_ns < part &&
      e->count < UINT32_MAX) {
    e->count++;
  } else {
    if (slot->ncrash > 0)
      slot->crash_head = (slot->crash_head + 1) % PP__CRASH_RING;
    if (slot->ncrash < PP__CRASH_RING)
      slot->ncrash++;
    e = &slot->crashes[slot->crash_head];
    e->at_ns = now;
    e->count = 1;
  }
  for (i = 0; i < slot->ncrash; i++) {
    e = &slot->crashes[(slot->crash_head + PP__CRASH_RING - i) %
                       PP__CRASH_RING];
    if (now - e->at_ns <= within)
      recent += e->count;
  }
  return recent;
}

/* A crash: restart after a backoff that doubles with each recent crash,
 * with jitter; too many within restart.within makes the slot fatal. */
static void slot_crashed(pp__slot_t *slot) {
  pp_pool_t *pool = slot->pool;
  pp_config_t *cfg = pool->cfg;
  uint64_t now = pp__now_ns(), recent, delay, jitter, i;

  recent = crash_note(slot, now);
  if (recent > (uint64_t)cfg->max_restarts) {
    slot->state = PP_WORKER_FATAL;
    pp__trace(pool, PP_TRACE_FATAL, slot->id, slot->generation, 0, 0, 0, 0,
              NULL);
    pp__log(pool, "worker %d: %llu crashes within %llums; giving up (fatal)",
            slot->id, (unsigned long long)recent,
            (unsigned long long)cfg->within_ms);
    check_degraded(pool);
    return;
  }
  delay = cfg->backoff_min_ms;
  for (i = 1; i < recent && delay < cfg->backoff_max_ms; i++)
    delay *= 2;
  if (delay > cfg->backoff_max_ms)
    delay = cfg->backoff_max_ms;
  jitter = delay / 4;
  if (jitter)
    delay = delay - jitter + pp__rand(pool) % (2 * jitter + 1);
  slot->state = PP_WORKER_BACKOFF;
  slot->backoff_until_ns = now + delay * 1000000ull;
  slot->restarts++;
  pool->restarts++;
  pp__trace(pool, PP_TRACE_RESTART, slot->id, slot->generation, 0, 0, 0,
            (int)delay, NULL);
  uv_timer_start(&slot->backoff, on_backoff, delay, 0);
}

void pp__on_proc_exit(pp__proc_t *proc) {
  pp__slot_t *slot = proc->slot;
  pp_pool_t *pool = proc->pool;
  pp_lease_t *lease = slot->proc == proc ? slot->lease : NULL;
  pp_exit_kind_t kind, limit_kind = PP_EXIT_NONE;
  char text[64], limit_text[64];
  int boot_failure, hello_timeout, rollback;

  PP_ASSERT_LOOP(proc->pool);
  PP_ASSERT_LOCKED(proc->pool);

  if (proc->kill_reason != PP_EXIT_NONE)
    kind = proc->kill_reason;
  else if (proc->hello && (proc->retired || pool->stopping || slot->removing))
    kind = PP_EXIT_STOPPED; /* as planned: say why, not "signal 9" */
  else if (!proc->hello)
    kind = PP_EXIT_NO_HELLO;
  else if (proc->term_signal)
    kind = PP_EXIT_SIGNAL;
  else
    kind = PP_EXIT_NORMAL;
  hello_timeout = proc->kill_reason == PP_EXIT_NO_HELLO;
  /* A limit that explains a death names it (worker.limits.cpu,
   * worker.memory_max), also one before HELLO (a module whose import or
   * setup() takes too much): that stays a boot failure, with the limit's
   * words for its text. */
  if ((kind == PP_EXIT_SIGNAL ||
       (kind == PP_EXIT_NO_HELLO && proc->kill_reason == PP_EXIT_NONE &&
        proc->term_signal)) &&
      (limit_kind = pp__confine_exit(proc, limit_text, sizeof(limit_text))) !=
          PP_EXIT_NONE &&
      kind == PP_EXIT_SIGNAL)
    kind = limit_kind;
  if (kind == PP_EXIT_STOPPED)
    snprintf(text, sizeof(text), "stopped (%.40s)",
             pool->stopping ? "pool closing" : proc->detail);
  else if (hello_timeout) /* not "died before HELLO (signal 9)" */
    snprintf(text, sizeof(text), "no HELLO within startup_timeout");
  else if (limit_kind != PP_EXIT_NONE)
    snprintf(text, sizeof(text), "%s", limit_text);
  else
    pp_exit_describe(kind, (int)proc->exit_status, proc->term_signal, text,
                     sizeof(text));
  /* It ended on its own before HELLO, or was killed for not saying HELLO
   * within startup_timeout: it failed to boot (a replacement too: a
   * reload's error shows in status). */
  boot_failure = kind == PP_EXIT_NO_HELLO &&
                 (proc->kill_reason == PP_EXIT_NONE || hello_timeout) &&
                 !pool->stopping && !slot->removing;
  if (boot_failure && !proc->boot_failed)
    boot_error_from_exit(slot, hello_timeout ? proc->detail : text);
  /* One of a reload's new workers failed to boot: the reload is undone. */
  rollback =
      boot_failure && pool->reload_pending && proc->cfg_seq > pool->reload_base;
  boot_failure = boot_failure && slot->proc == proc;
  if (proc->detail[0] == '\0')
    snprintf(proc->detail, sizeof(proc->detail), "worker %d: %s", slot->id,
             text);
  pp__trace(pool, PP_TRACE_EXIT, slot->id, proc->generation, proc->pid,
            lease ? lease->id : 0, 0, (int)proc->exit_status,
            proc->retired ? "retired" : text);
  if (proc->orphan_id != 0) {
    proc->orphan_id = 0;
    pool->orphans--;
    pp__quiesce_poke(pool);
  }
  slot->last_exit = kind;
  slot->last_hello_timeout = hello_timeout;
  slot->last_exit_code = (int)proc->exit_status;
  slot->last_exit_signal = proc->term_signal;
  if (kind == PP_EXIT_STOPPED)
    snprintf(slot->last_stop, sizeof(slot->last_stop), "%.*s",
             (int)sizeof(slot->last_stop) - 1,
             pool->stopping ? "pool closing" : proc->detail);
  /* A worker retired by its replacement: expected, nothing more. */
  if (proc->retired)
    return;
  /* A stop's SIGTERM is expected; any other exit is news. */
  if (!pool->stopping && !slot->removing)
    pp__log(pool, "worker %d (pid %d) exited: %s", slot->id, proc->pid, text);
  if (proc == slot->next) {
    if (!pool->stopping && !slot->removing) {
      pp__next_failed(slot, proc);
      if (rollback)
        pp__reload_rollback(slot, 1);
    } else {
      slot->next = NULL;
      pp__proc_unref(proc);
    }
    return;
  }
  if (slot->proc != proc)
    return;
  if (lease) {
    lease->ended = 1;
    slot->lease = NULL;
    if (lease->in_flight)
      pp__loop_request_cut(lease, PP_EXIT_NONE);
  }
  if (slot->anum > 0)
    pp__async_ring_fail(proc, PP_EXIT_NONE);
  pp__queue_remove(&slot->idle_node);
  slot->pinging = 0;
  slot->proc = NULL;
  pp__proc_unref(proc);
  if (pool->stopping || slot->removing) {
    slot->state = PP_WORKER_EXITED;
    return;
  }
  if (slot->next) {
    /* Its replacement was starting anyway: it takes over. */
    slot->proc = slot->next;
    slot->next = NULL;
    slot->generation = slot->proc->generation;
    slot->retiring = 0;
    slot->state = PP_WORKER_STARTING;
    if (slot->proc->hello)
      pp__slot_release(slot);
    return;
  }
  if (rollback)
    pp__reload_rollback(slot, 0);
  if (boot_failure)
    pp__scale_boot_failed(slot);
  if (boot_failure && boot_is_fatal(pool))
    slot_boot_failed(slot);
  else
    slot_crashed(slot);
}

/* ---- spawning */

void pp__proc_limits(pp__proc_t *proc) {
  pp_pool_t *pool = proc->pool;

  if (pool->cfg->max_requests > 0)
    proc->max_requests = pool->cfg->max_requests +
                         pp__rand(pool) % (pool->cfg->max_requests / 10 + 1);
  proc->spin_max_ns = (uint32_t)pool->cfg->reply_spin_us * 1000u;
}

/* Why a spawn failed, in words that say what to do. */
static void spawn_error(pp__slot_t *slot, int r) {
  struct rlimit rl;

  if ((r == UV_EMFILE || r == UV_ENFILE) && getrlimit(RLIMIT_NOFILE, &rl) == 0)
    pp__slot_set_error(
        slot,
        "spawn failed: out of file descriptors%s (RLIMIT_NOFILE=%llu): "
        "raise ulimit -n or lower size",
        r == UV_ENFILE ? " system-wide" : "", (unsigned long long)rl.rlim_cur);
  else
    pp__slot_set_error(slot, "spawn failed: %s", uv_strerror(r));
}

void pp__spawn_slot(pp__slot_t *slot) {
  pp_pool_t *pool = slot->pool;
  pp__proc_t *proc;
  int r;

  PP_ASSERT_LOOP(slot->pool);
  PP_ASSERT_LOCKED(slot->pool);

  slot->generation++;
  r = pool->adapter->spawn(slot, slot->generation, &proc);
  if (r != 0) {
    spawn_error(slot, r);
    pp__log(pool, "worker %d: %s", slot->id, pp__slot_error(slot));
    slot->last_exit = PP_EXIT_NO_HELLO;
    slot->last_hello_timeout = 0;
    slot->last_exit_code = r;
    if (boot_is_fatal(pool))
      slot_boot_failed(slot);
    else
      slot_crashed(slot);
    return;
  }
  slot->proc = proc;
  slot->state = PP_WORKER_STARTING;
  proc->cfg_seq = pool->reload_seq;
  pp__proc_limits(proc);
  pp__trace(pool, PP_TRACE_SPAWN, slot->id, proc->generation, proc->pid, 0, 0,
            0, NULL);
  pp__proc_arm(proc, pool->cfg->startup_timeout_ms);
  pp__proc_read_start(proc);
}

/* ---- pending user callbacks */

void pp__run_pending(pp_pool_t *pool) {
  pp__queue_t local, *q;
  pp__pending_t *p;

  PP_ASSERT_LOOP(pool);
  PP_ASSERT_UNLOCKED(pool);

  pp__queue_init(&local);
  pp__lock(pool);
  if (!pp__queue_empty(&pool->pending)) {
    local.next = pool->pending.next;
    local.prev = pool->pending.prev;
    local.next->prev = &local;
    local.prev->next = &local;
    pp__queue_init(&pool->pending);
  }
  pp__unlock(pool);
  while (!pp__queue_empty(&local)) {
    q = local.next;
    pp__queue_remove(q);
    p = pp__container_of(q, pp__pending_t, node);
    switch (p->kind) {
    case PP__PEND_READY:
      free(p);
      if (pool->ready_cb)
        pool->ready_cb(pool, pool->ready_status, pool->ready_data);
      break;
    case PP__PEND_CHECKOUT:
      pp__checkout_deliver(p->u.waiter);
      break;
    case PP__PEND_REPLY:
      pp__reply_deliver(p->u.lease);
      break;
    case PP__PEND_ACALL:
      pp__acall_deliver(pool, p->u.acall);
      break;
    case PP__PEND_CHUNK:
      pp__chunk_deliver(p->u.chunk);
      break;
    }
  }
}

/* ---- start */

pp__slot_t *pp__slot_new(pp_pool_t *pool, int id) {
  pp__slot_t *slot = calloc(1, sizeof(*slot));

  if (slot == NULL)
    return NULL;
  slot->pool = pool;
  slot->id = id;
  slot->state = PP_WORKER_STARTING;
  pp__queue_init(&slot->idle_node);
  pp__queue_init(&slot->aring);
  return slot;
}

static void slot_free(pp__slot_t *slot) {
  free(slot->ring);
  free(slot->stderr_tail);
  free(slot->slow_stack);
  free(slot->last_error);
  free(slot);
}

/* Make room for n slot pointers (lock held when the pool runs). */
int pp__slots_reserve(pp_pool_t *pool, int n) {
  pp__slot_t **p;

  if (n <= pool->slots_cap)
    return 0;
  p = realloc(pool->slots, (size_t)n * sizeof(*p));
  if (p == NULL)
    return UV_ENOMEM;
  pool->slots = p;
  pool->slots_cap = n;
  return 0;
}

static void pool_free(pp_pool_t *pool) {
  pp__queue_t *q;
  int i;

  while (!pp__queue_empty(&pool->clients)) {
    q = pool->clients.next;
    pp__queue_remove(q);
    pp__client_free(pp__container_of(q, pp_client_t, node));
  }
  pp__client_free_leases(&pool->anon);
  while (!pp__queue_empty(&pool->free_leases)) {
    q = pool->free_leases.next;
    pp__queue_remove(q);
    pp__lease_free(pp__container_of(q, pp_lease_t, node));
  }
  pp__confine_close(pool);
  for (i = 0; i < pool->nslots; i++)
    slot_free(pool->slots[i]);
  free(pool->slots);
  free(pool->python);
  free(pool->handlers);
  free(pool->handler_kinds);
  free(pool->subs);
  while (pool->retired) {
    struct pp__retired *r = pool->retired;
    pool->retired = r->next;
    pp_config_free(r->cfg);
    free(r->python);
    free(r);
  }
  pp_config_free(pool->cfg);
  uv_cond_destroy(&pool->state_cond);
  uv_cond_destroy(&pool->users_cond);
  uv_cond_destroy(&pool->quiesce_cond);
  uv_mutex_destroy(&pool->lock);
  free(pool);
}

static const pp__adapter_t *const adapters[] = {&pp__adapter_python, NULL};

int pp__pool_create(const pp_config_t *cfg, const pp_pool_options_t *opts,
                    pp_pool_t **out, pp_diag_t *diag) {
  struct sigaction sa;
  pp_pool_t *pool;
  int r, i, n;

  *out = NULL;
  if ((r = pp_config_validate(cfg, diag)) != 0)
    return r;
  pool = calloc(1, sizeof(*pool));
  if (pool == NULL)
    return UV_ENOMEM;
  pool->confine.cg_fd = -1;
  if ((r = pp_config_copy(cfg, &pool->cfg)) != 0) {
    free(pool);
    return r;
  }
  if (opts)
    pool->opts = *opts;
  mutex_init_adaptive(&pool->lock);
  uv_cond_init(&pool->state_cond);
  uv_cond_init(&pool->users_cond);
  uv_cond_init(&pool->quiesce_cond);
  pp__queue_init(&pool->pipe_queue);
  pp__queue_init(&pool->async_queue);
  pp__queue_init(&pool->task_list);
  pp__queue_init(&pool->idle);
  pp__queue_init(&pool->waiters);
  pp__queue_init(&pool->pending);
  pp__queue_init(&pool->stop_list);
  pp__queue_init(&pool->zprocs);
  pp__queue_init(&pool->zygotes);
  pp__queue_init(&pool->free_leases);
  pp__queue_init(&pool->clients);
  pp__client_init(pool, &pool->anon);
  pool->start_ns = pp__now_ns();
  pool->ncpu = pp__config_cpus();
  pool->nslots = pool->cfg->size;
  pp__scale_config(pool);
  pool->ready_count =
      pool->cfg->min_ready > 0 ? pool->cfg->min_ready : pool->cfg->size;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
    pool->sigpipe_ignored = 1;
  r = UV_ENOMEM;
  n = pool->nslots;
  pool->nslots = 0;
  if (pp__slots_reserve(pool, n) != 0)
    goto fail;
  for (i = 0; i < n; i++) {
    if ((pool->slots[i] = pp__slot_new(pool, i)) == NULL)
      goto fail;
    pool->nslots++;
  }
  if (opts && opts->adapter) {
    /* The program's own adapter, for this pool alone. */
    pool->custom = *opts->adapter;
    pool->adapter = &pp__adapter_custom;
  } else if (strcmp(pool->cfg->adapter, "mock") == 0) {
    pool->custom = pp__mock_adapter;
    pool->custom.data = (void *)(opts ? opts->mock : NULL);
    pool->adapter = &pp__adapter_custom;
  }
  if (pool->adapter == NULL && pool->cfg->start == PP_START_ZYGOTE &&
      strcmp(pool->cfg->adapter, "python") == 0)
    pool->adapter = &pp__adapter_zygote;
  for (i = 0; pool->adapter == NULL && adapters[i] != NULL; i++)
    if (strcmp(adapters[i]->name, pool->cfg->adapter) == 0)
      pool->adapter = adapters[i];
  if (pool->adapter == NULL) {
    pp__diag_set(diag, "adapter '%s' is not available in this build",
                 pool->cfg->adapter);
    if (diag)
      snprintf(diag->key, sizeof(diag->key), "adapter");
    r = PP_ECONFIG;
    goto fail;
  }
  if ((r = pool->adapter->prepare(pool, diag)) != 0)
    goto fail;
  *out = pool;
  return 0;

fail:
  pool_free(pool);
  return r;
}

/* Can a write on this thread to a control client that left raise SIGPIPE
 * without killing the process?  (libuv writes with write(2).) */
static int sigpipe_safe(pp_pool_t *pool) {
  sigset_t cur;

  return pool->sigpipe_ignored ||
         (pthread_sigmask(SIG_BLOCK, NULL, &cur) == 0 &&
          sigismember(&cur, SIGPIPE) == 1);
}

/* On the loop thread: handles, the control socket, then every worker at
 * once, so start-up of N costs about one. */
int pp__pool_begin(pp_pool_t *pool, uv_loop_t *loop, pp_diag_t *diag) {
  int r, i;

  pool->loop = loop;
  pool->loop_thread_id = uv_thread_self();
  if (pool->cfg->socket && (r = pp__control_start(pool, diag)) != 0)
    return r;
  if (pool->cfg->socket && !sigpipe_safe(pool))
    pp__log(pool,
            "control.socket: SIGPIPE is neither ignored nor blocked on the "
            "loop's thread, so a control client that leaves before its reply "
            "kills this process; call signal(SIGPIPE, SIG_IGN) at start, or "
            "block SIGPIPE in the thread that runs the loop");
  uv_async_init(loop, &pool->async, on_async);
  uv_timer_init(loop, &pool->waiter_timer);
  uv_timer_init(loop, &pool->drain_timer);
  uv_timer_init(loop, &pool->tick);
  uv_timer_init(loop, &pool->scale_timer);
  pool->scale_timer.data = pool;
  uv_prepare_init(loop, &pool->async_flush);
  pool->async_flush.data = pool;
  uv_idle_init(loop, &pool->wake_idle);
  pool->wake_idle.data = pool;
  pool->async.data = pool->waiter_timer.data = pool->drain_timer.data = pool;
  pool->tick.data = pool;
  for (i = 0; i < pool->nslots; i++) {
    uv_timer_init(loop, &pool->slots[i]->backoff);
    pool->slots[i]->backoff.data = pool->slots[i];
  }
  pp__lock(pool);
  for (i = 0; i < pool->nslots; i++)
    pp__spawn_slot(pool->slots[i]);
  pp__tick_start(pool);
  pp__unlock(pool);
  return 0;
}

int pp_pool_start(uv_loop_t *loop, const pp_config_t *cfg,
                  const pp_pool_options_t *opts, pp_pool_ready_cb ready_cb,
                  void *data, pp_pool_t **out, pp_diag_t *diag) {
  pp_pool_t *pool;
  int r;

  *out = NULL;
  if ((r = pp__pool_create(cfg, opts, &pool, diag)) != 0)
    return r;
  pool->ready_cb = ready_cb;
  pool->ready_data = data;
  if ((r = pp__pool_begin(pool, loop, diag)) != 0) {
    pool_free(pool);
    return r;
  }
  *out = pool;
  return 0;
}

int pp_pool_ready_diag(pp_pool_t *pool, pp_diag_t *diag) {
  int r;

  assert(pool != NULL);
  pp__lock(pool);
  r = pool->ready_reported ? pool->ready_status : 0;
  if (r != 0)
    pp__checkout_unavailable(pool, diag);
  else
    pp__diag_set(diag, "%s", pool->ready_reported ? "ready" : "warming");
  pp__unlock(pool);
  return r;
}

/* ---- stop */

static void on_final_close(uv_handle_t *h) {
  pp_pool_t *pool = h->data;
  pp_pool_close_cb cb;
  void *data;

  if (--pool->closing_handles > 0)
    return;
  pp__lock(pool);
  pool->state = PP_POOL_CLOSED;
  pp__trace(pool, PP_TRACE_CLOSED, -1, 0, 0, 0, 0, 0, NULL);
  pp__unlock(pool);
  if (pool->blocking)
    return; /* pp_pool_close frees it once the loop thread has returned */
  cb = pool->close_cb;
  data = pool->close_data;
  if (cb)
    cb(pool, data);
  pool_free(pool);
}

static void stop_check_done(pp_pool_t *pool) {
  int i;

  if (!pool->stopping || pool->finishing ||
      (pool->control && !pool->control_done))
    return;
  /* Zygotes go last: their death would end workers still draining. */
  if (pool->nzygotes > 0 && pool->live == pool->nzygotes) {
    pp__zygotes_stop(pool, 1);
    return;
  }
  if (pool->live > 0)
    return;
  pool->finishing = 1;
  pool->closing_handles = pool->nslots + 7;
  uv_close((uv_handle_t *)&pool->tick, on_final_close);
  uv_close((uv_handle_t *)&pool->scale_timer, on_final_close);
  for (i = 0; i < pool->nslots; i++) {
    pool->slots[i]->backoff.data = pool;
    uv_close((uv_handle_t *)&pool->slots[i]->backoff, on_final_close);
  }
  uv_close((uv_handle_t *)&pool->async, on_final_close);
  uv_close((uv_handle_t *)&pool->waiter_timer, on_final_close);
  uv_close((uv_handle_t *)&pool->drain_timer, on_final_close);
  uv_close((uv_handle_t *)&pool->async_flush, on_final_close);
  uv_close((uv_handle_t *)&pool->wake_idle, on_final_close);
}

/* Stop every worker that is not finishing a request; at drain_timeout,
 * the rest too. */
static void stop_workers(pp_pool_t *pool, int all) {
  pp__slot_t *slot;
  pp_lease_t *lease;
  int i;

  for (i = 0; i < pool->nslots; i++) {
    slot = pool->slots[i];
    if (slot->state == PP_WORKER_BACKOFF || slot->state == PP_WORKER_FATAL) {
      uv_timer_stop(&slot->backoff);
      slot->state = PP_WORKER_EXITED;
    }
    if (slot->next)
      pp__proc_fail(slot->next, PP_EXIT_NONE, "pool closing");
    if (slot->proc == NULL)
      continue;
    lease = slot->lease;
    if (!all &&
        (slot->proc->orphan_id != 0 || slot->shared > 0 || slot->anum > 0 ||
         (lease && (lease->in_flight || lease->thread_call))))
      continue;
    if (lease && !lease->thread_call) {
      /* A loop-face request still in flight gets its one callback. */
      if (lease->in_flight)
        pp__loop_request_cut(lease, PP_EXIT_NONE);
      pp__lease_detach(lease);
    }
    if (!slot->proc->stopping) {
      pp__proc_fail(slot->proc, PP_EXIT_NONE, "pool closing");
      slot->state = PP_WORKER_STOPPING;
    }
  }
}

static void on_drain_timeout(uv_timer_t *t) {
  pp_pool_t *pool = t->data;

  pp__lock(pool);
  pp__log(pool, "drain_timeout passed; stopping busy workers");
  stop_workers(pool, 1);
  pp__unlock(pool);
  pp__run_pending(pool);
}

static void control_stopped(pp_pool_t *pool) {
  pp__lock(pool);
  pool->control_done = 1;
  stop_check_done(pool);
  pp__unlock(pool);
}

static void stop_begin(pp_pool_t *pool) {
  if (pool->stopping)
    return;
  pool->stopping = 1;
  pool->state = PP_POOL_CLOSING;
  pp__trace(pool, PP_TRACE_CLOSING, -1, 0, 0, 0, 0, 0, NULL);
  pp__waiters_fail_all(pool, PP_ECLOSED, "pool is closing");
  pend_ready(pool, PP_ECLOSED);
  stop_workers(pool, 0);
  pp__scale_check(pool); /* stops its timer */
  uv_timer_start(&pool->drain_timer, on_drain_timeout,
                 pool->cfg->drain_timeout_ms, 0);
  if (pool->control)
    pp__control_stop(pool, control_stopped);
  stop_check_done(pool);
}

void pp_pool_stop(pp_pool_t *pool, pp_pool_close_cb close_cb, void *data) {
  assert(pool != NULL && !pool->blocking);
  assert(pp__on_loop_thread(pool));
  pp__lock(pool);
  pool->close_cb = close_cb;
  pool->close_data = data;
  stop_begin(pool);
  pp__unlock(pool);
  pp__run_pending(pool);
}

static void on_async(uv_async_t *a) { loop_work(a->data); }

/* What other threads (or the loop itself) asked the loop to do. */
static void loop_work(pp_pool_t *pool) {
  pp__slot_t *slot;
  int i;

  pp__lock(pool);
  if (pool->loop_wake) {
    pool->loop_wake = 0;
    for (i = 0; i < pool->nslots; i++) {
      slot = pool->slots[i];
      if (slot->proc && slot->proc->orphan_handoff) {
        /* A thread's call left its request to the loop: read its reply,
         * up to the request's deadline (before a CANCEL's grace below). */
        uint64_t now = pp__now_ns(), end = slot->proc->orphan_deadline_ns;

        slot->proc->orphan_handoff = 0;
        if (!slot->proc->dead) {
          pp__proc_read_start(slot->proc);
          if (end)
            pp__proc_arm(slot->proc,
                         end > now ? (end - now + 999999) / 1000000 : 1);
          /* What the thread read ahead (a stream's chunks, its answer). */
          pp__proc_read_pending(slot->proc);
        }
      }
      if (slot->proc && slot->proc->cancel_wanted) {
        slot->proc->cancel_wanted = 0;
        pp__proc_cancel(slot->proc, slot->proc->cancel_id);
      }
    }
    if (pool->async_cancels)
      pp__async_send_cancels(pool);
    while (!pp__queue_empty(&pool->stop_list)) {
      pp__proc_t *p =
          pp__container_of(pool->stop_list.next, pp__proc_t, stop_node);
      pp__queue_remove(&p->stop_node);
      p->stop_wanted = 0;
      pp__proc_stop(
          p, p->kill_reason == PP_EXIT_PROTOCOL ? 0 : pool->cfg->kill_grace_ms);
    }
  }
  if (pool->async_kick && !pool->stopping)
    pp__async_admit(pool);
  if (pool->async_due_ns && !pool->stopping) {
    /* Calls other threads queued (pp_call_async): what did not find a
     * place counts against max_waiters now, and its deadline is armed. */
    pp__async_accept(pool);
    if (pool->async_waiters > 0)
      pp__waiter_timer_arm(pool, pool->async_due_ns);
  }
  pool->async_due_ns = 0;
  if (pool->scale_wanted) {
    pool->scale_wanted = 0;
    pp__scale_check(pool);
  }
  if (pool->maintain_wanted && !pool->stopping) {
    pool->maintain_wanted = 0;
    pp__zygotes_stop(pool, 0);
    pp__maintain(pool, 0);
  }
  if (pool->close_requested)
    stop_begin(pool);
  if (pool->stopping && !pool->finishing)
    stop_workers(pool, 0);
  stop_check_done(pool);
  pp__unlock(pool);
  pp__run_pending(pool);
}

/* Free a pool whose loop thread has returned (blocking face). */
void pp__pool_free(pp_pool_t *pool) { pool_free(pool); }

const pp_config_t *pp_pool_config(const pp_pool_t *pool) { return pool->cfg; }
