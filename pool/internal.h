/* internal.h -- the pool core's shared structures: pool, slot, lease,
 * waiter, client (a worker process: worker/worker.h).  Everything here is
 * guarded by pool->lock unless a comment says otherwise.  Not installed. */
#ifndef PP_INTERNAL_H
#define PP_INTERNAL_H

#include "portpool.h"

#include "clock.h"
#include "config.h"
#include "confine.h"
#include "control_api.h"
#include "diag.h"
#include "errors.h"
#include "frame.h"
#include "histo.h"
#include "mock.h"
#include "pool_access.h"
#include "queue.h"
#include "worker.h"

#include <assert.h>
#include <semaphore.h>
#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

/* Assertions on (see PP_ASSERT_LOCKED below). */
#if defined(PP_FAULTS) || !defined(NDEBUG)
#define PP_CHECKS 1
#endif

typedef struct pp__slot pp__slot_t;
typedef struct pp__proc pp__proc_t;
typedef struct pp__waiter pp__waiter_t;
typedef struct pp__pending pp__pending_t;
typedef struct pp__zygote pp__zygote_t;
typedef struct pp__acall pp__acall_t;

/* A pending call's place on its cancel token (cancel.c): in token->calls
 * while the call can still be cancelled.  What pp_cancel does with it: */
typedef enum {
  PP__BIND_WAIT,   /* a thread waiting for a worker: withdrawn */
  PP__BIND_THREAD, /* a thread's request running: *flag set; the thread,
                      woken by the token's eventfd, ends it */
  PP__BIND_ASYNC,  /* a pp_call_async: pp__async_cancel */
  PP__BIND_REQUEST /* a pp_request in flight: pp__request_cancel */
} pp__bind_kind_t;

typedef struct pp__bind {
  pp__queue_t node;
  pp__bind_kind_t kind;
  void *call;         /* pp__waiter_t, int flag, pp__acall_t, pp_lease_t */
  pp_cancel_t *token; /* NULL: not bound */
} pp__bind_t;

struct pp_cancel {
  pp_pool_t *pool;
  int fd;    /* eventfd, readable once fired (wakes a thread in a call) */
  int fired; /* under the pool lock */
  pp__queue_t calls; /* pp__bind_t */
  /* Thread calls it cancelled that have not yet woken and ended (they
   * poll fd): reset and free wait for them (atomic; changed under the
   * lock). */
  int waking;
  uv_cond_t woke;
};

/* The callback a loop-face call was given: one of the three forms. */
typedef struct pp__done {
  pp_call_cb call;     /* pp_call_async */
  pp_reply_cb reply;   /* pp_request */
  pp_result_cb result; /* the _with forms */
  void *data;
  pp_chunk_cb chunk; /* a streamed call's (stream.c), or NULL */
  void *chunk_data;
} pp__done_t;

/* Work the loop must do after the lock is released: user callbacks. */
typedef enum {
  PP__PEND_CHECKOUT, /* waiter completed: call its cb, free it */
  PP__PEND_READY,    /* call the ready callback */
  PP__PEND_REPLY,    /* a loop-face request completed */
  PP__PEND_ACALL,    /* a pp_call_async completed: call its cb, free it */
  PP__PEND_CHUNK     /* a stream's chunk: call its on_chunk, free it */
} pp__pend_kind_t;

struct pp__pending {
  pp__queue_t node;
  pp__pend_kind_t kind;
  union {
    pp__waiter_t *waiter;
    pp_lease_t *lease;
    pp__acall_t *acall;
    struct pp__chunk *chunk;
  } u;
};

/* A chunk of a loop-face stream on its way to on_chunk (stream.c), queued
 * in order with its call's completion, which it precedes. */
typedef struct pp__chunk {
  pp__pending_t pend;
  pp_pool_t *pool;
  pp__proc_t *proc;   /* its worker (a reference), held until delivery */
  pp__acall_t *acall; /* its pp_call_async_with, or NULL for */
  pp_lease_t *lease;  /* its pp_request_with's lease, */
  uint64_t lease_id;  /* ... checked out as this */
  uint32_t id;        /* the request's */
  int binary;
  size_t len;
  char bytes[];
} pp__chunk_t;

/* A pp_call_async (async.c), allocated with a copy of its payload; only
 * the loop thread touches it, under the lock, until its callback. */
struct pp__acall {
  pp__queue_t node; /* pool->async_queue, then its slot's aring */
  pp__done_t done;
  char cmd[PP_FRAME_CMD_MAX + 1]; /* a binary call's handler; "" JSON */
  int binary;                     /* its reply is bytes */
  uint64_t start_ns;              /* entry, for the wait and run histograms */
  uint64_t placed_ns;             /* written to its worker */
  uint64_t deadline_ns;           /* waiting: the checkout deadline; placed: the
                                     request deadline, 0 = none */
  uint64_t call_deadline_ns; /* timeout_ms's, for the whole call; 0 = none */
  uint32_t id;
  int placed;
  pp__proc_t *proc; /* placed on, while placed */
  int submitted;    /* queued by another thread, not yet counted against
                       checkout.max_waiters by the loop */
  /* Past call_deadline_ns while its request runs: answered PP_ETIMEDOUT,
   * it stays in its ring until its reply (dropped) or its worker's end;
   * freed by whichever of that and its callback comes last. */
  int ghost;
  int delivered; /* its callback ran */
  int gone;      /* off its ring */
  int final;     /* answered by its worker: its callback is queued */
  int stopped;   /* its on_chunk stopped its stream */
  /* Cancelled (pp_cancel) while placed: a ghost whose worker is sent
   * CANCEL (by the loop: cancel_wanted until then); at the head of its
   * ring it must answer by cancel_due_ns, or its worker is replaced and
   * the calls behind it placed again. */
  int cancelled;
  int cancel_wanted;
  uint64_t cancel_due_ns;
  pp__bind_t bind;
  int status;
  pp__pending_t pend;
  char *reply;
  size_t reply_len;
  char msg[512]; /* why it failed (a pp_diag_t message) */
  size_t len;
  char payload[];
};

/* A pipelined call, on its caller's stack (pipeline.c).  Fields are read
 * and written under the pool lock, except `done` (atomic: the caller looks
 * at it after its semaphore wakes it, without the lock) and the reply and
 * a handler error's diag, which only the slot's reader fills while the
 * call is in the ring. */
struct pp__pcall {
  pp__queue_t node; /* in pool->pipe_queue while waiting for a place */
  pp__proc_t *proc; /* the worker it was written to, once placed */
  const void *payload;
  size_t len;
  pp_buf_t *reply;
  pp_diag_t *diag;
  uint64_t start_ns;    /* entry: its queue wait counts from here */
  uint64_t placed_ns;   /* written to its worker: its run time */
  uint64_t deadline_ns; /* request timeout, from placement; 0 = none */
  uint32_t id;
  int placed;   /* has a place in a ring */
  int answered; /* its worker answered (REPLY or ERROR) */
  int away;     /* its thread is out of the pool, in park() */
  int parked;   /* ... and a post will wake it */
  int kicked;   /* woken to look for a place again */
  int done;     /* atomic; status and reply are final */
  int status;
  sem_t sem;
};

/* Entries in a slot's crash history: restart.max_restarts up to
 * PP__CRASH_RING - 1 is counted exactly, above it per 1/PP__CRASH_RING of
 * restart.within. */
#define PP__CRASH_RING 32

/* A slot is a place for one worker; it outlives its processes. */
struct pp__slot {
  pp_pool_t *pool;
  int id;
  pp_worker_state_t state;
  uint32_t generation;
  pp__proc_t *proc;      /* current process, or NULL */
  pp_lease_t *lease;     /* current lease, or NULL */
  pp__queue_t idle_node; /* in pool->idle while idle */
  uv_timer_t backoff;    /* restart delay */
  int backoff_open;
  uint32_t restarts;
  /* Recent crashes, newest at crash_head: PP__CRASH_RING (time, count)
   * entries, whatever restart.max_restarts says (pool.c, slot_crashed). */
  struct pp__crash {
    uint64_t at_ns; /* the entry's first crash */
    uint32_t count; /* crashes it holds */
  } crashes[PP__CRASH_RING];
  unsigned crash_head;
  unsigned ncrash; /* entries in use; 0 forgets every crash */
  uint64_t requests_total;
  pp_histogram_t run_time;
  uint64_t backoff_until_ns; /* when a backoff restart is due */
  int retiring;              /* to be replaced (recycle, restart, reload) */
  pp__proc_t *next;          /* the replacement, starting beside proc */
  unsigned replace_failures;
  int removing;           /* scaled away: not restarted */
  uint64_t idle_since_ns; /* an elastic pool's: when it last turned idle */
  int pinging;            /* heartbeat PING out; not in the idle list */
  /* Pipelined one-shot calls in flight, oldest first: a ring of
   * pipeline_depth places.  One of their callers at a time reads replies
   * for all of them (the reader). */
  struct pp__pcall **ring;
  int ring_cap, ring_head, shared;
  /* pp_call_async calls queued on the worker, oldest first (async.c); a
   * worker serves these or pipelined pp_calls, one kind at a time. */
  pp__queue_t aring;
  int anum;
  int astream; /* ... one of them a stream, which has the worker alone */
  struct pp__pcall *reader; /* reads for the ring; NULL when empty */
  int missed;               /* heartbeats missed in a row */
  pp_exit_kind_t last_exit;
  int last_exit_code;
  int last_exit_signal;
  char (*stderr_tail)[160]; /* PP_STDERR_TAIL lines, at the first one */
  unsigned stderr_next;
  /* The last slow-request dump (maintain.c starts it, proc.c fills it):
   * the stderr lines of generation slow_gen that follow its SIGUSR1, at
   * most PP__SLOW_LINES of them within PP__SLOW_WINDOW_NS, in
   * PP_SLOW_STACK_BYTES (allocated at the first dump). */
  char *slow_stack;
  size_t slow_len;
  int slow_lines; /* lines still to take; 0 = not capturing */
  uint32_t slow_gen;
  uint64_t slow_until_ns;
  const char *retire_why; /* static text: "restarted", "recycled", ... */
  char last_stop[32];     /* with last_exit PP_EXIT_STOPPED: why */
  int last_hello_timeout; /* last_exit PP_EXIT_NO_HELLO was the kill at
                             startup_timeout */
  char *last_error;       /* why the last process failed to boot:
                            "Type: message (File ..., line N)", or its
                            last stderr line (pp__slot_set_error); NULL
                            when none (pp__slot_error says "") */
};

/* A slow-request dump is the next PP__SLOW_LINES stderr lines of the
 * worker within PP__SLOW_WINDOW_NS of its SIGUSR1: faulthandler writes
 * them at once from its signal handler. */
#define PP__SLOW_LINES 40
#define PP__SLOW_WINDOW_NS 1000000000ull

/* Why a worker is replaced when a cancelled request's handler did not
 * answer its CANCEL in time. */
#define PP__IGNORED_CANCEL "the handler ignored CANCEL for worker.cancel_grace"

/* The size of a diag message. */
#define PP__MSG_CAP sizeof(((pp_diag_t *)0)->message)

/* One checkout: a worker bound to a client, fenced by (slot, generation,
 * id).  Lease objects are recycled through pool->free_leases. */
struct pp_lease {
  pp_pool_t *pool;
  pp__slot_t *slot;
  pp__proc_t *proc; /* holds a reference */
  uint32_t generation;
  uint64_t id;
  pp_client_t *client;
  pp__queue_t node; /* in client->leases, or pool->free_leases */
  int ended;        /* the worker is gone; only check-in remains */
  int undelivered;  /* granted to a waiter that has not received it */
  int reaped;       /* reclaimed with its dead client: the object is
                       kept, fenced (calls get PP_ECANCELED), until
                       its holder checks it in */
  int free;         /* in pool->free_leases: a second check-in is
                       caught here while the object is unused */
  int checked_in;   /* pp_checkin from another thread during a
                       thread call: recycled when the call returns */
  int thread_call;  /* a thread is doing I/O in pp_lease_call */
  int writing;      /* ... and has not finished writing the request */
  int cancelled;    /* a call on it was cancelled (pp_cancel) while its
                       request ran: the worker left it */
  /* Loop-face request in flight. */
  int in_flight;
  uint32_t req_id;
  uint64_t req_start_ns;
  struct pp__lreq *req; /* allocated by the object's first pp_request */
  /* Its completion, queued for the loop: status, reply copy, diag. */
  pp__pending_t pend;
  int pend_queued;
  int released; /* checked in while a completion was queued */
  int status;
  char *reply;
  size_t reply_len, reply_cap;
};

/* A lease's loop-face request state, allocated by the lease object's first
 * pp_request and kept with it (the blocking face never needs it). */
struct pp__lreq {
  pp__done_t done;       /* its callback */
  pp__bind_t bind;       /* its cancel token */
  int reply_binary;      /* the reply is bytes a handler returned */
  int stopped;           /* its on_chunk stopped its stream */
  char msg[PP__MSG_CAP]; /* why it failed ("" once one succeeds) */
};

struct pp_client {
  pp_pool_t *pool;
  uint64_t id;
  int dead;         /* no new checkouts; waits withdrawn */
  int closed;       /* the handle was released: freed once no lease
                       references it */
  int task_owned;   /* closed by its task's end, not by the user */
  pp__queue_t node; /* in pool->clients */
  pp__queue_t leases;
  pp__queue_t waiters;
};

/* A queued checkout.  Thread waiters live on the caller's stack and wait
 * on their own condition; loop waiters are allocated and complete through
 * pool->pending. */
struct pp__waiter {
  pp__queue_t node;  /* in pool->waiters */
  pp__queue_t cnode; /* in client->waiters */
  pp_client_t *client;
  uint64_t deadline_ns;
  uint64_t enqueue_ns;
  pp_lease_t *lease; /* set on grant */
  pp_diag_t *diag;   /* thread waiter: the caller's diag, or NULL */
  int done;          /* granted or failed: out of every list */
  int status;
  int thread;       /* a blocked thread, not a loop callback */
  pp__bind_t *bind; /* thread waiter: its place on its call's cancel
                       token (on the caller's stack), or NULL */
  char msg[68];     /* loop waiter: the failure reason */
  void *call;       /* thread waiter: the pp_call it waits to make, which the
                       thread that hands it a worker may start (blocking.c's
                       handoff), or NULL */
  union {
    sem_t sem; /* thread waiter: posted when done (and, after a handoff,
                  its request written) */
    struct {   /* loop waiter */
      pp_checkout_cb cb;
      void *data;
      pp__pending_t pend;
    } loop;
  } u;
};

struct pp__control;

/* A trace subscriber (pp_pool_trace_subscribe). */
struct pp__sub {
  int id;
  pp_trace_cb cb;
  void *data;
};

/* A config replaced by reload, kept until the pool closes. */
struct pp__retired {
  pp_config_t *cfg;
  char *python;
  struct pp__retired *next;
};

struct pp_pool {
  uv_loop_t *loop;
  pp_config_t *cfg;
  pp_pool_options_t opts;
  uv_mutex_t lock;
#ifdef PP_CHECKS
  uv_thread_t lock_owner; /* atomic: the thread holding lock, or 0 */
#endif
  uv_async_t async;        /* wakes the loop for pending work */
  uv_timer_t waiter_timer; /* earliest loop-waiter deadline */
  uint64_t waiter_due_ns;  /* when it is armed for, 0 = not armed */
  uv_thread_t loop_thread_id;

  pp_pool_state_t state;
  const pp__adapter_t *adapter;
  pp_adapter_t custom; /* a program-supplied or the mock adapter */
  char *python;        /* resolved interpreter */
  char *handlers;      /* JSON array of the latest HELLO's handler
                          names, or NULL (none said so yet) */
  char *handler_kinds; /* JSON object of its non-plain handlers' kinds,
                          or NULL */

  /* worker.user, worker.limits, worker.memory_max (confine.c) */
  pp__confine_t confine;

  int nslots;
  pp__slot_t **slots; /* nslots pointers; a slot never moves */
  int slots_cap;
  int ready_count; /* idle workers needed to call the pool ready */
  int ready_reported;
  pp_pool_ready_cb ready_cb;
  void *ready_data;
  int ready_status;
  int was_ready;       /* reached ready once: boot failures retry */
  int boot_failed;     /* a worker failed to boot before that */
  int boot_logged;     /* a boot failure's traceback was logged */
  char boot_diag[512]; /* why, for PP_EBOOT diags */

  pp__queue_t idle;    /* idle slots, take from the head */
  pp__queue_t waiters; /* FIFO */
  int nwaiters;
  int waiters_max;
  /* A thread checking in its pp_call's worker takes the waiter it hands
   * it to, to write that waiter's request itself (blocking.c): open while
   * it checks in, the waiter kept here unposted. */
  int handoff_open;
  pp__waiter_t *handed;
  pp__queue_t pending;   /* pp__pending_t, for the loop */
  pp__queue_t stop_list; /* procs a thread asked the loop to stop */
  int loop_wake;         /* async work: stop wanted on some proc, ... */
  pp__queue_t free_leases;
  pp__queue_t clients;
  pp_client_t anon; /* the pool's own client, for NULL */
  uint64_t next_lease_id;
  uint64_t next_client_id;
  int users;        /* threads inside blocking calls; atomic, also
                       read without the lock (pp__reply_wait) */
  int spinners;     /* atomic: threads polling for a reply */
  int ncpu;         /* CPUs we may run on */
  int shared_calls; /* pipelined calls in flight */
  int pipe_waiters;
  pp__queue_t pipe_queue;  /* pp__pcall waiting for a place, FIFO */
  pp__queue_t async_queue; /* pp__acall waiting for a place, FIFO */
  int async_waiters;
  int async_unaccepted;     /* of those, submitted by other threads and not yet
                               counted against max_waiters (pp__async_accept) */
  int async_cancels;        /* another thread cancelled placed calls: the
                               loop sends their CANCELs */
  int async_kick;           /* a worker turned idle off the loop, or a
                               call came from another thread: admit */
  uint64_t async_due_ns;    /* earliest deadline of the calls other threads
                               queued, for the loop to arm; 0 = none */
  uv_prepare_t async_flush; /* writes queued requests before the loop polls */
  /* pp__wake on the loop thread: the loop's work runs before it next
   * polls, without the async handle's eventfd round trip. */
  uv_idle_t wake_idle;
  int wake_idling;
  int async_flushing;
  uv_cond_t users_cond;

  /* quiescence */
  int leases_out; /* leases not in free_leases */
  int orphans;    /* requests running for a client that left */
  int tasks;      /* supervised tasks running */
  pp__queue_t task_list;
  int quiesce_waiting;
  uv_cond_t quiesce_cond;
#ifdef PP_FAULTS
  void (*fault_cb)(pp_pool_t *pool, const char *point, void *data);
  void *fault_data;
#endif

  struct pp__sub *subs; /* trace subscribers besides opts.trace */
  int nsubs, next_sub_id;
  int draining;
  int target_size;
  int scale_force;
  /* scale.c: a fixed pool has size_min == size_max == target_size; an
   * elastic one moves target_size between them. */
  int size_min, size_max;
  int elastic;
  uv_timer_t scale_timer;  /* armed while someone waits, or while an idle
                              worker above min would time out */
  uint64_t scale_due_ns;   /* what it is armed for, 0 = not armed */
  int scale_wanted;        /* a checkout queued off the loop: arm it */
  uint64_t scale_changes;  /* target changes */
  char scale_reason[96];   /* why the target last changed */
  char scale_blocked[400]; /* why growth stopped, "" when it may grow */
  int maintain_wanted;     /* a thread asked for scale/restart/reload */
  uv_timer_t tick;         /* maintenance: recycling, heartbeat */
  uint64_t last_heartbeat_ns;
  struct pp__retired *retired; /* configs replaced by reload, kept until
                                  close */
  /* A reload is live once a worker of the new config said HELLO; until
   * then a boot failure of one rolls the pool back to reload_prev's. */
  uint32_t reload_seq;  /* bumped by each reload (and roll-back) */
  uint32_t reload_base; /* reload_seq of the config to roll back to */
  int reload_pending;
  struct pp__retired *reload_prev; /* the config to roll back to */
  char reload_error[448]; /* "reload rolled back: ...", until the next */
  pp_histogram_t h_spawn, h_wait, h_run;

  /* counters */
  uint64_t recycles;
  uint64_t slow_requests; /* past worker.slow_request (maintain.c) */
  uint64_t cancels;       /* calls pp_cancel ended (cancel.c) */
  uint64_t checkouts, checkins, reclaimed, timeouts, rejected;
  uint64_t withdrawn; /* waits removed because their client died */
  uint64_t reclaimed_undelivered, reclaimed_idle, reclaimed_busy;
  uint64_t requests, errors, restarts, stale_replies;
  uint64_t start_ns;
  uint64_t rng; /* pp__rand's state */
  int sigpipe_ignored;

  /* stop */
  int stopping;
  int finishing; /* closing the pool's own handles */
  int closing_handles;
  int close_requested; /* pp_pool_close asked the loop to stop */
  int control_done;
  int live; /* procs not yet fully closed + slot timers */
  uv_timer_t drain_timer;
  pp_pool_close_cb close_cb;
  void *close_data;

  /* blocking face */
  int blocking; /* opened by pp_pool_open: owns loop and thread */
  uv_loop_t own_loop;
  uv_thread_t thread;
  uv_cond_t state_cond; /* signalled on ready and on closed */
  int begin_failed;     /* the loop thread could not start the pool */
  pp_diag_t begin_diag;

  struct pp__control *control;
  struct pp__zygote *zygote; /* worker.start: zygote, the current one */
  pp__queue_t zygotes;       /* every zygote not yet closed */
  int nzygotes;
  pp__queue_t zprocs; /* workers the zygote forked, until freed */
};

/* ---- pool.c */
void pp__lock(pp_pool_t *pool);
void pp__unlock(pp_pool_t *pool);
/* Wait on cond with pool->lock held (released meanwhile), forever or up
 * to ns nanoseconds. */
void pp__cond_wait(pp_pool_t *pool, uv_cond_t *cond);
void pp__cond_timedwait(pp_pool_t *pool, uv_cond_t *cond, uint64_t ns);

/* The preconditions comments state, checked wherever assertions are on:
 * in the test library (PP_FAULTS) and in builds without NDEBUG.  The
 * lock's owner is only tracked then. */
#ifdef PP_CHECKS
int pp__lock_held(pp_pool_t *pool);
/* Print where and abort (NDEBUG does not turn these off). */
_Noreturn void pp__check_failed(const char *what, const char *file, int line);
#define PP_CHECK(e) ((e) ? (void)0 : pp__check_failed(#e, __FILE__, __LINE__))
#define PP_ASSERT_LOCKED(pool) PP_CHECK(pp__lock_held(pool))
#define PP_ASSERT_UNLOCKED(pool) PP_CHECK(!pp__lock_held(pool))
#define PP_ASSERT_LOOP(pool) PP_CHECK(pp__on_loop_thread(pool))
#else
#define PP_ASSERT_LOCKED(pool) ((void)0)
#define PP_ASSERT_UNLOCKED(pool) ((void)0)
#define PP_ASSERT_LOOP(pool) ((void)0)
#endif

/* Ask the loop to run pending work (any thread; lock not needed). */
void pp__wake(pp_pool_t *pool);
/* Run queued user callbacks; loop thread, lock NOT held. */
void pp__run_pending(pp_pool_t *pool);
/* A worker became idle (lock held): hand it to the first live waiter or put
 * it in the idle list. */
void pp__slot_release(pp__slot_t *slot);
/* Why slot's last process failed to boot: at most PP__ERROR_CAP - 1 bytes,
 * control bytes shown as '?'; allocated only for a slot that failed (lock
 * held).  pp__slot_error: the text, "" when none. */
#define PP__ERROR_CAP 320
void pp__slot_set_error(pp__slot_t *slot, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pp__slot_clear_error(pp__slot_t *slot);
const char *pp__slot_error(const pp__slot_t *slot);
/* The proc of slot died or must go (lock held).  Called on any thread:
 * marks it dead, and when on the loop starts stopping it, otherwise asks
 * the loop to. */
void pp__proc_fail(pp__proc_t *proc, pp_exit_kind_t reason, const char *why);
int pp__on_loop_thread(pp_pool_t *pool);
void pp__slot_count(pp_pool_t *pool, int *idle, int *leased, int *busy,
                    int *starting, int *backoff, int *fatal);

void pp__spawn_slot(pp__slot_t *slot);
pp__slot_t *pp__slot_new(pp_pool_t *pool, int id);
int pp__slots_reserve(pp_pool_t *pool, int n);
uint64_t pp__rand(pp_pool_t *pool);
int pp__pool_create(const pp_config_t *cfg, const pp_pool_options_t *opts,
                    pp_pool_t **out, pp_diag_t *diag);
int pp__pool_begin(pp_pool_t *pool, uv_loop_t *loop, pp_diag_t *diag);
void pp__pool_free(pp_pool_t *pool);
/* Called by proc.c on the loop with the lock held. */
void pp__on_frame(pp__proc_t *proc, const pp_frame_t *f);
void pp__on_proc_exit(pp__proc_t *proc);
void pp__on_proc_timer(pp__proc_t *proc);
void pp__on_proc_read_error(pp__proc_t *proc, int err);
/* Something quiescence depends on changed (lock held). */
void pp__quiesce_poke(pp_pool_t *pool);
/* Ask the loop to send CANCEL for proc->orphan_id or the thread call in
 * flight, then kill the worker if cancel_grace passes (lock held). */
void pp__proc_cancel(pp__proc_t *proc, uint32_t id);

/* ---- maintain.c (loop thread, lock held; pp__slot_swap, pp__next_failed
 * on any thread) */
void pp__maintain(pp_pool_t *pool, int tick);
void pp__tick_start(pp_pool_t *pool);
void pp__slot_swap(pp__slot_t *slot);
void pp__next_ready(pp__slot_t *slot);
void pp__next_failed(pp__slot_t *slot, pp__proc_t *proc);
void pp__on_pong(pp__slot_t *slot);
/* SIGUSR1 to proc's worker, whose faulthandler writes every thread's
 * Python stack to stderr; the lines that follow are kept as the slot's
 * last dump and logged.  For a request past worker.slow_request, or
 * (killing) one about to be killed for its timeout.  Counted in
 * slow_requests, and traced `slow`, once per request.  0, or UV_ESRCH
 * when it cannot be signalled (it exited meanwhile), UV_ENOTSUP for a
 * custom adapter's worker (only a log line says it ran long), UV_ENOMEM. */
int pp__stack_dump(pp__proc_t *proc, uint64_t age_ms, int killing);

/* A worker of a reloaded config not yet confirmed failed to boot (its
 * error in slot->last_error): back to the config before (maintain.c). */
void pp__reload_rollback(pp__slot_t *slot, int replacement);

/* ---- scale.c */
/* Start or stop workers to meet target_size. */
void pp__scale_apply(pp_pool_t *pool);
/* An elastic pool grows for the checkouts that waited past
 * scale.up_after and shrinks by a worker idle past scale.idle_timeout;
 * re-arms its timer for the next look, or stops it. */
void pp__scale_check(pp_pool_t *pool);
/* Look on the loop's next turn (loop thread): a scaled-down worker
 * exited, a worker booted. */
void pp__scale_soon(pp_pool_t *pool);
/* A checkout of any kind joined a queue (any thread, lock held): an
 * elastic pool below its max arms its timer (the loop does, woken, when
 * this is another thread). */
void pp__scale_waiting(pp_pool_t *pool);
/* A worker of an elastic pool above its min turned idle and the scale
 * timer is not armed (any thread, lock held): the loop arms it for the
 * end of the worker's idle window. */
void pp__scale_idle(pp_pool_t *pool);
/* A worker failed to boot after the pool was ready: an elastic pool stops
 * growing, and status says why, until a worker boots again or the
 * operator resizes (pp__scale_booted clears it). */
void pp__scale_boot_failed(pp__slot_t *slot);
void pp__scale_booted(pp_pool_t *pool);
/* min, max and the target from pool->cfg: at start and on reload. */
void pp__scale_config(pp_pool_t *pool);

/* ---- checkout.c */
/* Grant: bind slot to a fresh lease for client (lock held). */
pp_lease_t *pp__lease_new(pp__slot_t *slot, pp_client_t *client);
/* pp_checkin's work (lock held). */
void pp__lease_checkin(pp_lease_t *lease);
/* End a lease (lock held): return or retire its worker.  A checked-in
 * lease is recycled; a reclaimed one stays with its holder (reaped) until
 * it is checked in; one with a callback owed is recycled after it. */
void pp__lease_end(pp_lease_t *lease, int reclaimed, const char *why);
/* A task's end: recycle the leases its function left reclaimed (lock
 * held); nobody holds them any more. */
void pp__client_drop_reaped(pp_client_t *c);
/* Take an idle slot, or NULL (lock held). */
pp__slot_t *pp__idle_take(pp_pool_t *pool);
/* The waiter's side of a hand-off (lock held): 0, or PP_ECANCELED when
 * its client died after the worker was chosen (the lease is reclaimed and
 * the worker goes to the next waiter). */
int pp__lease_receive(pp_lease_t *lease, pp_diag_t *diag);
/* Checkout failure text: warming / busy / degraded (lock held). */
int pp__checkout_unavailable(pp_pool_t *pool, pp_diag_t *diag);
void pp__waiter_complete(pp__waiter_t *w, int status, pp_lease_t *lease);
/* Record why a waiter fails: in its caller's diag, or its own message. */
void pp__waiter_reason(pp__waiter_t *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pp__waiters_fail_all(pp_pool_t *pool, int status, const char *why);
void pp__waiter_timer_arm(pp_pool_t *pool, uint64_t deadline_ns);
void pp__waiter_enqueue(pp_pool_t *pool, pp__waiter_t *w, pp_client_t *c,
                        int64_t timeout_ms);
void pp__on_waiter_timer(uv_timer_t *t);
/* A reply or error frame for a loop-face lease (lock held; unlocks to call
 * back and relocks). */
void pp__loop_reply(pp__proc_t *proc, const pp_frame_t *f);
/* Fail the loop-face request in flight on a lease (lock held; calls back
 * with the lock released): with status and why, or (cut) because its
 * worker failed for reason (pp__call_cut says how). */
void pp__loop_request_fail(pp_lease_t *lease, int status, const char *why);
void pp__loop_request_cut(pp_lease_t *lease, pp_exit_kind_t reason);
/* pp_cancel on a lease's request in flight (any thread), or its on_chunk
 * stopping its stream (stopped): its callback gets PP_ECANCELED, the
 * worker CANCEL, and the lease loses its worker. */
void pp__request_cancel(pp_lease_t *lease, int stopped);
void pp__client_init(pp_pool_t *pool, pp_client_t *c);
/* Mark c dead, withdraw its waits and reclaim its leases (lock NOT held:
 * it takes the lock, with a fault point after marking). */
void pp__client_kill(pp_client_t *c);
/* Free c if it was closed and no lease references it (lock held). */
void pp__client_maybe_free(pp_client_t *c);
void pp__client_free(pp_client_t *c);
void pp__client_free_leases(pp_client_t *c);
void pp__lease_free(pp_lease_t *lease);
/* Drop the lease's hold on its worker (lock held): the lease ends, its
 * holder's later check-in only recycles it. */
void pp__lease_detach(pp_lease_t *lease);
/* Loop thread, lock not held: call the user back. */
void pp__checkout_deliver(pp__waiter_t *w);
void pp__reply_deliver(pp_lease_t *lease);
/* Checkouts of every kind waiting: leases, pipelined and async calls. */
int pp__waiting(const pp_pool_t *pool);

/* ---- call.c: how every call ends (lock held unless said) */
/* A checkout's wait ended, queued since start_ns: a lease granted, or a
 * one-shot call placed on its worker (queue_wait). */
void pp__count_wait(pp_pool_t *pool, uint64_t start_ns, uint64_t now);
/* A request goes to proc's worker, with timeout_ms (0 = none); proc
 * NULL: only count it (a thread call counts at its end, once it knows the
 * request got in). */
void pp__count_request(pp_pool_t *pool, pp__proc_t *proc, uint64_t timeout_ms);
/* The answer to a request whose caller is gone arrived: dropped, counted
 * in the worker's requests but not in run time. */
void pp__count_stale(pp__proc_t *proc);
/* A request handed to proc's worker at sent_ns ended with status: errors,
 * and when the worker answered it (REPLY or ERROR frame) its run time,
 * in the pool's and the worker's histograms.  proc may be NULL when the
 * request never reached a worker. */
void pp__count_end(pp_pool_t *pool, pp__proc_t *proc, uint64_t sent_ns,
                   uint64_t now, int status, int answered);
/* The status a frame read for request id gives its call (lock not
 * needed): 0 or PP_EHANDLER with the payload stored through store(to)
 * (UV_ENOMEM when that fails), or PP_EPROTO (not an answer to id: hand
 * it to pp__call_fail).  msg gets why it failed (NULL with cap 0:
 * nobody asks). */
int pp__call_reply(const pp_frame_t *f, uint32_t id,
                   int (*store)(void *to, const char *p, size_t len,
                                int binary),
                   void *to, char *msg, size_t cap);
/* 1 if f is a chunk of request id's stream (a REPLY flagged stream): the
 * call's on_chunk takes it, and the answer is still to come. */
int pp__chunk_of(const pp_frame_t *f, uint32_t id);
/* A reader's failure r (PP_ETIMEDOUT, PP_EPROTO, UV_ENOMEM, else the
 * reply pipe closed or the process reaped): fails the worker with the
 * matching kill reason and returns the call's status, msg saying why. */
int pp__call_fail(pp__proc_t *proc, int r, char *msg, size_t cap);
/* 1 if s is an ASCII identifier (letters, digits, '_', not starting with
 * a digit) of 1 to max characters, as handler names are: safe to paste
 * into a request unescaped. */
int pp__identifier(const char *s, size_t max);
/* Call a loop-face call's callback, in the form it was given (lock not
 * held).  sent: the request reached a worker (pp_result_t). */
void pp__done_call(const pp__done_t *done, pp_lease_t *lease, int status,
                   const char *reply, size_t len, int binary,
                   const pp_diag_t *diag, int sent);
/* A call's options (lock not needed): 0, UV_EINVAL for a token of another
 * pool or a bad cmd, PP_ETIMEDOUT for a one-shot call's timeout_ms 0 (no
 * time at all; a lease call's 0 is no timeout); diag says which. */
int pp__call_opts_check(pp_pool_t *pool, const pp_call_opts_t *opts,
                        int one_shot, pp_diag_t *diag);
/* A call ran past its timeout_ms while its request runs on proc: msg says
 * so, and the worker is left as on_client_death says, as for a client
 * that went away (a stream is cancelled under finish too).  With kill it is
 * failed here (returns 1); otherwise 0, and the caller lets the request run
 * (finish) or cancels it (cancel). */
int pp__call_expired(pp__proc_t *proc, int stream, char *msg, size_t cap);
/* Whether a call abandoned on proc (its caller gone or out of time) is
 * sent CANCEL: on_client_death: cancel, or a stream (its items would go
 * nowhere) unless the worker is killed instead. */
int pp__call_cancels(const pp__proc_t *proc, int stream);
/* The status of a call cut short because its worker failed for reason;
 * `first`: the call the reason is about (the oldest in flight), the
 * others behind a timed-out one get PP_ECRASHED. */
int pp__call_cut(const pp__proc_t *proc, pp_exit_kind_t reason, int first,
                 char *msg, size_t cap);

/* ---- blocking.c, shared with pipeline.c */
void pp__users_leave(pp_pool_t *pool);
long pp__read_frame(pp__proc_t *proc, uint64_t deadline_ns, pp_frame_t *f);
/* Wait until the reply pipe is readable or the process was reaped (sets
 * *reaped), up to deadline_ns (0: no limit).  0, PP_ETIMEDOUT, PP_ECRASHED. */
int pp__reply_wait(pp__proc_t *proc, uint64_t deadline_ns, int *reaped);
/* pp_pool_open waiting at most wait_ms for readiness (< 0: the config's
 * startup_timeout + checkout.timeout). */
int pp__pool_open(const pp_config_t *cfg, const pp_pool_options_t *opts,
                  int64_t wait_ms, pp_pool_t **out, pp_diag_t *diag);
/* The reply-polling window after a wait that slept, `waited` ns in all. */
void pp__spin_adapt(pp__proc_t *proc, uint64_t waited);
void pp__wait_reaped(pp__proc_t *proc, uint64_t ms);
/* Store a reply in the pp_buf_t `to` (NULL: drop it): 0 or UV_ENOMEM. */
int pp__reply_store(void *to, const char *p, size_t len, int binary);
/* ---- async.c (loop thread, lock held unless said) */
/* A reply for a worker serving pp_call_async calls. */
void pp__async_reply(pp__proc_t *proc, const pp_frame_t *f);
/* Fail the calls queued on proc, which died or must go for reason. */
void pp__async_ring_fail(pp__proc_t *proc, pp_exit_kind_t reason);
/* Give free places to the waiting calls. */
void pp__async_admit(pp_pool_t *pool);
/* Calls other threads queued since the loop's last turn: the loop places
 * what fits (pp__async_admit first), then counts the rest against
 * checkout.max_waiters, failing the excess with PP_EBUSY. */
void pp__async_accept(pp_pool_t *pool);
/* The request timer fired: 1 if the oldest call's deadline has passed,
 * 2 if it was cancelled and cancel_grace passed without its answer, else
 * the timer is armed again (libuv counts from the loop's cached time, so
 * it can fire early) and 0. */
int pp__async_timer_due(pp__proc_t *proc);
/* Expire the waiting calls whose checkout deadline passed, and abandon
 * the placed ones past their timeout_ms; returns the earliest deadline
 * left, 0 when none. */
uint64_t pp__async_expire(pp_pool_t *pool, uint64_t now);
void pp__async_waiters_fail(pp_pool_t *pool, int status, const char *why);
/* Call a completed call's callback and free it (lock NOT held). */
void pp__acall_deliver(pp_pool_t *pool, pp__acall_t *a);
/* pp_cancel on a call (any thread), or its on_chunk stopping its stream
 * (stopped): withdrawn while it waits; placed, it answers PP_ECANCELED
 * now and its worker gets CANCEL. */
void pp__async_cancel(pp_pool_t *pool, pp__acall_t *a, int stopped);
/* The loop sends the CANCELs other threads asked for. */
void pp__async_send_cancels(pp_pool_t *pool);
void pp__async_flush_cb(uv_prepare_t *h);

/* ---- pipeline.c */
/* One-shot calls that share a worker up to worker.pipeline_depth; larger
 * payloads take a lease of their own. */
#define PP_PIPELINE_MAX_PAYLOAD 4096
int pp__pipelined_call(pp_pool_t *pool, const void *payload, size_t len,
                       pp_buf_t *reply, int64_t timeout_ms, pp_diag_t *diag);
/* A worker became idle (lock held): wake a call waiting for a place. */
void pp__pipe_kick(pp_pool_t *pool);
/* Fail every call waiting for a place (lock held): stop, drain, degraded. */
void pp__pipe_waiters_fail(pp_pool_t *pool, int status, const char *why);
/* Whose turn is an idle worker when both kinds of pipelined calls wait:
 * a call that arrived at `since` may take one unless the other kind's
 * oldest waiting call is older (async: a pp_call_async asks). */
int pp__idle_turn(pp_pool_t *pool, int async, uint64_t since);
/* Can slot take one more pipelined call of a kind (async: pp_call_async,
 * else the blocking face's) that arrived at `since`, `queued` of that kind
 * being on it?  The caller has checked the slot is idle or serves that
 * kind.  An idle worker takes one on its kind's turn (pp__idle_turn).  A
 * ring takes no more than `depth`, and none, so that it drains through
 * pp__slot_release, while a lease or a call of the other kind waits, when
 * the worker's replacement is ready or when it reached max_requests. */
int pp__ring_takes(pp_pool_t *pool, pp__slot_t *slot, int queued, int depth,
                   int async, uint64_t since);

/* ---- stream.c: a loop-face stream's chunks */
/* Queue chunk f of the stream of a (or, a NULL, of lease's request) for
 * its on_chunk (lock held): 0, or UV_ENOMEM. */
int pp__chunk_queue(pp_pool_t *pool, pp__proc_t *proc, pp__acall_t *a,
                    pp_lease_t *lease, const pp_frame_t *f);
/* Hand it to on_chunk, unless its call ended early meanwhile, and stop
 * the stream when asked; frees it (loop thread, lock NOT held). */
void pp__chunk_deliver(pp__chunk_t *ch);

/* ---- cancel.c (lock held) */
/* Put a call on token (NULL: none): 0, or PP_ECANCELED when it fired. */
int pp__bind(pp_cancel_t *token, pp__bind_t *b, pp__bind_kind_t kind,
             void *call);
/* Take it off again (not bound: nothing). */
void pp__unbind(pp__bind_t *b);
/* A thread call that token cancelled has ended: it no longer polls the
 * token's eventfd. */
void pp__cancel_woke(pp_cancel_t *token);

/* ---- task.c */
void pp__tasks_reap(pp_pool_t *pool);

/* ---- trace.c */
void pp__trace(pp_pool_t *pool, pp_trace_type_t type, int slot, uint32_t gen,
               int pid, uint64_t lease, uint64_t client, int code,
               const char *detail);

/* ---- faults.c (testing/; the test build only) */
#ifdef PP_FAULTS
void pp__fault(pp_pool_t *pool, const char *point);
#define PP_FAULT(pool, point) pp__fault((pool), (point))
#else
#define PP_FAULT(pool, point) ((void)0)
#endif

#endif
