/* worker.h -- the worker kinds' one interface to the core: a worker
 * process (struct pp__proc), how an adapter makes one (pp__adapter_t),
 * and what proc.c, python.c, zygote.c and adapter.c give the core.
 * Included by internal.h.  Not installed. */
#ifndef PP_WORKER_H
#define PP_WORKER_H

#include "portpool.h"

#include "queue.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct pp__slot pp__slot_t;
typedef struct pp__proc pp__proc_t;
typedef struct pp__zygote pp__zygote_t;

/* Lines of a worker's stdout/stderr are split in these buffers; a longer
 * line is cut and logged in pieces, so memory stays bounded. */
#define PP_LINE_MAX 4096
#define PP_STDERR_TAIL 20

typedef struct pp__linebuf {
  char *buf; /* PP_LINE_MAX bytes, allocated at the first output */
  size_t len;
} pp__linebuf_t;

/* Which adapter made a worker, and so how its exit is seen: fixed by
 * pp__proc_new, it says which member of pp__proc.u is in use. */
typedef enum pp__proc_kind {
  PP__PROC_SPAWNED, /* a child process of ours (python.c) */
  PP__PROC_ZYGOTE,  /* forked by the pool's zygote (zygote.c) */
  PP__PROC_CUSTOM   /* made by pool->custom, not by a process (adapter.c) */
} pp__proc_kind_t;

/* Where a zygote worker is in its life (zygote.c; loop thread).  It only
 * moves forward:
 *   FORKING -> ABANDONED -> ENDED
 *   FORKING -> RUNNING -> EXIT_SEEN or STATUS_KNOWN -> EXIT_PENDING or ENDED
 * Its exit is known from two reports that come in either order, the pidfd
 * and the zygote's wait status; each order is a state, and the second
 * report ends it (from the timer when it is the status: the socket
 * callback that reads it holds the lock). */
typedef enum pp__zstate {
  PP__ZW_FORKING,      /* asked of the zygote, fds not here yet */
  PP__ZW_ABANDONED,    /* stopped while forking, or the fork failed: it
                          ends from the timer; a fork that still comes is
                          killed */
  PP__ZW_RUNNING,      /* fds adopted; the pidfd is watched */
  PP__ZW_EXIT_SEEN,    /* the pidfd fired; waiting for the wait status */
  PP__ZW_STATUS_KNOWN, /* the zygote reported its status; the pidfd has
                          not fired */
  PP__ZW_EXIT_PENDING, /* both known: exit from the timer */
  PP__ZW_ENDED         /* pp__proc_exited ran for it */
} pp__zstate_t;

/* One worker process: one generation of a slot, of one kind (a common part,
 * then u, the part only its kind has).  Reference-counted: +1 for
 * each open uv handle, +1 for the slot while it is current, +1 for each
 * lease that holds it.  Its fds are closed and its memory freed when the
 * count reaches zero, which may happen on any thread once every handle is
 * closed. */
struct pp__proc {
  pp_pool_t *pool;
  pp__slot_t *slot;
  uint32_t generation;
  int refs;
  pp__proc_kind_t kind; /* which adapter made it: which of u is in use */

  /* What only one kind of worker has, first how its exit is seen: a child
   * process, a zygote child's pidfd, or an adapter's report. */
  union {
    struct {
      uv_process_t process;
    } spawned;
    /* zygote workers: no uv_process_t; the exit is seen through a pidfd
     * and classified by the zygote's wait status.  Where it is was five
     * flags (forking, abandoned, pidfd_fired, zstatus_known, zexit_pending)
     * of which only seven combinations occur: one state, not five facts. */
    struct {
      uv_poll_t pidpoll;
      pp__zstate_t state;   /* where it is in its life */
      int pidfd;            /* from RUNNING on; -1 before */
      int zstatus;          /* wait status reported by the zygote */
      pp__zygote_t *zygote; /* the zygote that forked it */
      pp__queue_t znode;    /* in pool->zprocs */
    } zygote;
    /* custom workers: the adapter reports the exit, from any thread */
    struct {
      uv_async_t exit_async;
      void *adapter_state; /* the adapter's state */
      int64_t a_status;    /* the exit it reported (atomic) */
      int a_signal;
    } custom;
  } u;

  uv_pipe_t out;    /* the worker's stdout */
  uv_pipe_t err;    /* the worker's stderr */
  uv_poll_t rpoll;  /* readable on rep_fd, while the loop reads */
  uv_poll_t wpoll;  /* writable on req_fd, while the loop has output */
  uv_timer_t timer; /* start-up timeout, request timeout, kill grace */
  unsigned handles; /* bit per open handle, see PP__H_* */

  int req_fd;         /* we write requests; the worker's fd 3 */
  int rep_fd;         /* we read replies; the worker's fd 4 */
  int wake_fd;        /* eventfd: written when the process is reaped */
  int call_cancel_fd; /* the cancel token's eventfd of the thread call in
                         flight (pp_lease_call_with), -1 when none */
  int stat_fd;        /* /proc/PID/stat, opened while the pid was surely
                         this worker's: status and max_rss read it again,
                         with no path lookup and no pid reused; -1 */
  int pid;

  /* Its life, common to every kind: independent facts, so flags and not
   * one state.  A worker dies before or after HELLO; stopping and exited
   * each imply dead but not each other (it may exit unasked, or not yet);
   * boot_failed excludes hello but is asked apart from it; retired and
   * rep_eof come at any time.  stop_wanted and cancel_wanted are requests
   * from other threads to the loop, cleared when it acts, beside the
   * loop's own facts stopping and cancel_sent. */
  int hello;  /* HELLO received */
  int proto;  /* the protocol version its HELLO said */
  int dead;   /* unusable: killed, exited or broke the protocol */
  int exited; /* exit callback ran: pid is no longer ours */
  int rpolling, wpolling;
  int rpoll_on; /* rpoll started (it may outlive rpolling: proc.c) */
  /* Stream chunks queued for their on_chunk and not yet delivered: while
   * any are, reading waits (its poll stopped, rpolling kept), so that a
   * slow consumer holds the worker at its next write (stream.c). */
  int held;
  int stopping;          /* SIGTERM sent, kill timer armed */
  int stop_wanted;       /* a thread asked the loop to stop it */
  pp__queue_t stop_node; /* in pool->stop_list while stop_wanted */
  int cancel_wanted;     /* a thread asked the loop to send CANCEL */
  int cancel_sent;       /* CANCEL sent; killed if cancel_grace passes */
  uint32_t cancel_id;
  int rep_eof;      /* EOF on rep_fd; waiting for the exit */
  int retired;      /* replaced by a successor: its exit is expected */
  int boot_failed;  /* sent a boot failure (ERROR, id 0) before HELLO */
  uint32_t cfg_seq; /* pool->reload_seq when spawned: its config */
  pp_exit_kind_t kill_reason; /* why we killed it, for the exit class */
  int64_t exit_status;
  int term_signal;
  char detail[160]; /* why it died, for the client's diag */

  /* Reply stream, decoded with the frame codec.  Owned by whoever does the
   * I/O: the loop, or the one thread in pp_lease_call. */
  char *rbuf;
  size_t rlen, rcap;
  /* Loop-face output not yet written. */
  char *wbuf;
  size_t wlen, woff, wcap;
  /* Pipelined requests not yet written (pbuf, appended under the lock) and
   * the batch one thread is writing without it (psend). */
  char *pbuf, *psend;
  size_t plen, pcap, pscap;
  int pwriting;
  int wflush; /* wbuf has pp_call_async requests to write */

  uint32_t next_id;
  uint32_t orphan_id;          /* request whose lease ended before its reply */
  uint32_t culprit_id;         /* the async call whose deadline or cancel grace
                                  passed (async.c), for its status */
  uint64_t orphan_deadline_ns; /* a thread's orphan: its request deadline */
  int orphan_handoff; /* a thread left its request to the loop: read it */
  uint64_t requests;
  uint64_t max_requests; /* recycle after this many (jittered), 0 = never */
  /* Polling for a reply before sleeping (pp__reply_wait): the window now,
   * adapted by whoever does the I/O (atomic: status reads it), and its
   * ceiling, from the config. */
  uint32_t spin_ns, spin_max_ns;
  uint64_t req_start_ns;   /* the request in flight, 0 when none */
  uint64_t slow_ns;        /* req_start_ns of the request that got its
                              slow-request SIGUSR1 (maintain.c) */
  uint64_t req_timeout_ms; /* its timeout, for the diag (call.c) */
  uint64_t spawn_ns, ready_ns;
  int in_cgroup;     /* moved into its slot's cgroup (confine.c) */
  uint64_t oom_base; /* that cgroup's oom_kill count when it moved in */
  pp__linebuf_t outline, errline;
};

enum {
  PP__H_PROCESS = 1 << 0,
  PP__H_OUT = 1 << 1,
  PP__H_ERR = 1 << 2,
  PP__H_RPOLL = 1 << 3,
  PP__H_WPOLL = 1 << 4,
  PP__H_TIMER = 1 << 5,
  PP__H_ASYNC = 1 << 6,
  PP__H_PIDFD = 1 << 7
};

/* How workers are made.  The python adapter spawns interpreter processes
 * (proc.c); the mock adapter of the adapters issue plugs in here.  Tables
 * are constant: no adapter is chosen process-wide, each pool names its
 * own. */
typedef struct pp__adapter {
  const char *name;
  /* Resolve what the adapter needs once per pool (the interpreter). */
  int (*prepare)(pp_pool_t *pool, pp_diag_t *diag);
  /* Start a process for a slot, of the given generation (loop thread,
   * lock held). */
  int (*spawn)(pp__slot_t *slot, uint32_t generation, pp__proc_t **out);
} pp__adapter_t;

extern const pp__adapter_t pp__adapter_python;
extern const pp__adapter_t pp__adapter_custom;
extern const pp__adapter_t pp__adapter_zygote;

/* ---- proc.c */
/* Parts of a start every adapter shares: allocate a worker of a kind; make
 * the two protocol pipes (child[0] reads requests, child[1] writes
 * replies); set up the stdout/stderr pipes; once started, the handles; or
 * undo on failure. */
pp__proc_t *pp__proc_new(pp__slot_t *slot, uint32_t generation,
                         pp__proc_kind_t kind);
int pp__proc_pipes(pp__proc_t *proc, int child[2]);
void pp__proc_output_init(pp__proc_t *proc);
void pp__proc_timer_init(pp__proc_t *proc);
void pp__proc_timer_cb(uv_timer_t *t);
void pp__proc_set_nonblock(int fd);
void pp__proc_started(pp__proc_t *proc, int pid);
void pp__proc_abort(pp__proc_t *proc);
/* The worker ended (loop thread, lock NOT held). */
void pp__proc_exited(pp__proc_t *proc, int64_t status, int term_signal);
void pp__proc_ref(pp__proc_t *proc);
/* Decode the frames already in rbuf, then read on (loop thread, lock
 * held; not from a frame's handler): after a thread that read ahead
 * handed the worker to the loop, or once held chunks were delivered. */
void pp__proc_read_pending(pp__proc_t *proc);
/* Drop a reference (lock held); frees when the last goes. */
void pp__proc_unref(pp__proc_t *proc);
/* Loop thread: SIGTERM the group, SIGKILL after grace (0 = SIGKILL now). */
void pp__proc_stop(pp__proc_t *proc, uint64_t grace_ms);
/* Loop thread: send sig to the worker's own process, not its group (a
 * spawned or a zygote worker; UV_ENOTSUP for a custom adapter's).
 * Returns 0 or a negative errno (UV_ESRCH once it has exited). */
int pp__proc_signal(pp__proc_t *proc, int sig);
/* Loop thread: arm the proc's timer (start-up or request timeout) for ms
 * milliseconds; 0 disarms it. */
void pp__proc_arm(pp__proc_t *proc, uint64_t ms);
/* Loop thread: start or stop watching rep_fd. */
void pp__proc_read_start(pp__proc_t *proc);
void pp__proc_read_stop(pp__proc_t *proc);
/* Loop thread: queue a frame and write as much as the pipe takes. */
int pp__proc_send(pp__proc_t *proc, uint8_t type, uint32_t id,
                  const void *payload, size_t len);
/* The same in two steps: append the frame (UV_ENOMEM), and later write
 * what the pipe takes (PP_ECRASHED when it is closed). */
int pp__proc_queue(pp__proc_t *proc, uint8_t type, uint32_t id,
                   const void *payload, size_t len);
int pp__proc_flush(pp__proc_t *proc);
/* Append a REQUEST, which tells a protocol-2 worker its deadline_ns
 * (0 = none); with cmd (not NULL), the payload is bytes for handler cmd
 * (binary); with stream, the caller takes a stream (protocol 2): 0 or
 * UV_ENOMEM. */
int pp__proc_queue_request(pp__proc_t *proc, uint32_t id, const void *payload,
                           size_t len, uint64_t deadline_ns, const char *cmd,
                           int stream);
/* Write a whole REQUEST (with its deadline, cmd and stream, as above) on
 * the calling thread, blocking up to deadline_ns (0 = forever).  Returns
 * 0, PP_ETIMEDOUT or PP_ECRASHED.  once: write only a frame that goes in
 * at once: UV_EAGAIN (nothing written) where it is larger than PIPE_BUF
 * or there is no room for it now.  A pipe takes such a frame whole; a
 * custom adapter's socket may take part, and the rest is written as
 * without once. */
int pp__proc_write_request(pp__proc_t *proc, uint32_t id, const void *payload,
                           size_t len, uint64_t deadline_ns, const char *cmd,
                           int stream, int once);
/* One write(2) of what fits now, SIGPIPE kept away: bytes written, or -1
 * with errno (EAGAIN: the pipe is full). */
ssize_t pp__proc_write_once(pp__proc_t *proc, const char *p, size_t len);
/* Make room for `need` more bytes in rbuf.  Returns 0 or UV_ENOMEM. */
int pp__proc_rbuf_reserve(pp__proc_t *proc, size_t need);
size_t pp__proc_rbuf_want(const pp__proc_t *proc);

/* ---- python.c */
int pp__proc_spawn(pp__slot_t *slot, uint32_t generation, pp__proc_t **out);
char **pp__build_env(pp__slot_t *slot);
void pp__free_env(char **env);
/* Resolve the interpreter once per pool (a shim costs ~75 ms a start). */
int pp__resolve_python(const char *cmd0, char **out, pp_diag_t *diag);

/* ---- zygote.c */
/* Stop every zygote (all) or those retired with no worker left. */
void pp__zygotes_stop(pp_pool_t *pool, int all);
/* Reload: forks go to a new zygote; the old one lives on until its last
 * worker is gone (its death would end them). */
void pp__zygote_retire(pp_pool_t *pool);
void pp__zygote_worker_gone(pp__proc_t *proc);
/* Loop thread: a signal for a zygote worker.  Returns 1 when it has no
 * process yet (it then ends from its timer, unsignalled); otherwise sends
 * sig through its pidfd if that has not fired, and returns 0: the caller
 * signals its process group. */
int pp__zygote_signal(pp__proc_t *proc, int sig);
/* Loop thread: sig to a running zygote worker's process through its
 * pidfd.  Returns 0 or a negative errno (UV_ESRCH when it has no live
 * process). */
int pp__zygote_signal_one(pp__proc_t *proc, int sig);
/* Loop thread, lock NOT held: its timer fired.  Returns 1 when that ended
 * it (its fork abandoned, or its exit waiting for the timer). */
int pp__zygote_timer(pp__proc_t *proc);
int pp__pidfd_signal(int pidfd, int sig);

/* ---- status.c */
/* Open proc's /proc/PID/stat (stat_fd); only while pid cannot be anyone
 * else's: a child we reap ourselves, not reaped yet. */
void pp__proc_stat_open(pp__proc_t *proc);
/* Its resident set in bytes, 0 when unknown. */
uint64_t pp__proc_rss(const pp__proc_t *proc);

/* ---- pool.c */
/* Its recycling limits from the config (max_requests, jittered). */
void pp__proc_limits(pp__proc_t *proc);

#endif
