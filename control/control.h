/* control.h -- what the control socket's two halves share: control.c
 * (the listening socket, connections, reading and writing lines) and
 * control_ops.c (what each request does: call, status, trace, the
 * operating ops).  Built on the public API and pool_access.h, never on the
 * core's internal.h.  Not installed. */
#ifndef PP_CONTROL_H
#define PP_CONTROL_H

#include "pool_access.h"

#include "clock.h"
#include "control_proto.h"
#include "diag.h"
#include "queue.h"

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

/* The longest request line, without its '\n'.  The read buffer of a
 * connection never holds more than this plus the newline. */
#define CTL_LINE_MAX (1u << 20)
#define CTL_BUF_MAX (CTL_LINE_MAX + 1)
#define CTL_BUF_MIN 4096
/* Reply bytes the kernel has not taken yet, past which a connection stops
 * reading requests and starting calls until its peer catches up; one that
 * stays past it for control.idle_timeout is closed, so a peer that stops
 * reading pins at most one reply, for a bounded time. */
#define CTL_WQUEUE_MAX (4u << 20)
#define CTL_CONN_MAX 256
/* Connections past CTL_CONN_MAX kept for the pool's own uid, so that its
 * operator can always get a `status` through. */
#define CTL_CONN_RESERVE 8
#define CTL_BACKLOG 128
/* Trace lines a connection buffers between two turns of the loop; past
 * it, events are dropped and counted, never queued without bound. */
#define CTL_TRACE_BUF (128u << 10)
#define CTL_TRACE_LINE 768
typedef struct pp__conn pp__conn_t;
typedef struct pp__control pp__control_t;

struct pp__control {
  pp_pool_t *pool; /* NULL when detached after a failed start */
  uv_pipe_t server;
  uv_async_t async; /* trace subscribers wake the loop through it */
  int async_open;
  char *path;
  /* The socket's directory, opened and checked once; every later use of
   * it (bind, the lock file, unlink) goes through this fd. */
  int dirfd;
  int proc;       /* /proc/self/fd/N reaches it (else the path does) */
  char *dir;      /* its path, for messages */
  char *name;     /* the socket's file name in dirfd */
  char *lockname; /* NAME.lock beside it, flock'ed while we serve */
  int lockfd;
  dev_t dev; /* the socket file we bound: unlinked only if */
  ino_t ino; /* it is still ours */
  int bound;
  uv_timer_t timer; /* the idle and stall sweep over the connections */
  int timer_open;
  uint64_t idle_ms; /* control.idle_timeout, 0 = none */
  unsigned handles; /* open uv handles: server, async, connections */
  int nconns;       /* accepted connections not closing yet (a refused
                       peer never counts) */
  pp__queue_t conns;
  int stopping;
  void (*done_cb)(pp_pool_t *);
  uint32_t *allow; /* control.allow_uids besides our own */
  int nallow;
};

/* One connection.  Reference-counted: +1 for its handle until the close
 * callback, +1 per write in flight, +1 while a checkout or request callback
 * is owed to it.  Freed when the count reaches zero. */
struct pp__conn {
  pp__control_t *ctl; /* NULL once its handle is closed */
  pp_pool_t *pool;
  uv_pipe_t pipe;
  pp__queue_t node; /* in ctl->conns while the handle is open */
  int refs;
  pp_client_t *client; /* NULL for a refused peer */
  int client_closed;   /* its leases are gone: never touch them */
  int counted;         /* accepted: holds one of ctl->nconns */
  int closing;         /* uv_close called: never write again */
  int finishing;       /* close once the queued replies are written */
  int eof;             /* the peer shut down its writing side */
  int reading;
  unsigned writes;
  /* The idle timeout counts from the last thing the peer finished (the
   * connection, a request line, a reply taken); over_ns is when its
   * unwritten replies went past CTL_WQUEUE_MAX (0: they are not). */
  uint64_t active_ns;
  uint64_t over_ns;
  /* Request bytes: [start, len) unconsumed, [start, start + scanned)
   * known to hold no '\n'. */
  char *buf;
  size_t start, len, scanned, cap;
  /* The call being served; requests after it wait in buf. */
  int busy;
  char *payload;
  size_t payload_len;
  int64_t timeout_ms;
  uint64_t call_start_ns;
  char *call_id; /* its request's "id" as written, or NULL */
  int stream;    /* it takes a stream: chunk lines before the reply */
  int overrun;   /* ... stopped: the peer left CTL_WQUEUE_MAX unread */
  /* timeout_ms bounds the whole call: past it the lease is checked in
   * with the request running (the worker finishes, gets CANCEL or is
   * killed, as on_client_death says) and the client gets ETIMEDOUT.
   * The timer is allocated at the first call with a timeout and closed
   * with the connection (it holds a reference). */
  uv_timer_t *call_timer;
  pp_lease_t *call_lease; /* the lease its request runs on, or NULL */
  int call_expired;       /* the timer checked that lease in */
  /* A trace stream.  The subscriber callback runs on any thread with the
   * pool's lock held: it only appends to tbuf under tlock and wakes the
   * loop, which writes tbuf out.  Lock order: pool lock, then tlock. */
  int tracing;    /* subscribed: every later request is ignored */
  int trace_id;   /* from pp_pool_trace_subscribe */
  uint64_t tmask; /* bit per pp_trace_type_t wanted */
  uv_mutex_t tlock;
  char *tbuf;
  size_t tlen;
  uint64_t tdropped; /* events that did not fit since the last flush */
  int tdead;         /* the async may be closing: never send to it */
  uv_async_t *async;
};

/* ---- control_ops.c (loop thread) */
/* Close the call timer, if the connection has one. */
void pp__conn_call_timer_close(pp__conn_t *c);

/* ---- control.c (loop thread) */

/* Drop a reference; the connection is freed with the last. */
void pp__conn_unref(pp__conn_t *c);
/* Close now: queued replies are dropped, the client dies. */
void pp__conn_close(pp__conn_t *c);
/* Close once every queued reply has been written. */
void pp__conn_finish(pp__conn_t *c);
/* Queue bytes, with a '\n' after them when newline is set; raise
 * signal_after (0: none) in this process once they are written.  A
 * closing connection is never written to; a failure closes it. */
void pp__conn_write(pp__conn_t *c, const char *text, size_t len, int newline,
                    int signal_after);
/* Serialise obj (a reference is stolen) as one line, with the request's
 * "id" (its compact JSON text as the client wrote it) when not NULL. */
void pp__conn_send(pp__conn_t *c, json_t *obj, const char *id,
                   int signal_after);
/* signal_after value: call the program's control hook with "stop". */
#define PP__AFTER_STOP (-1)
/* {"ok":false,"error":NAME,"message":...,"detail":...}; detail is stolen
 * and may be NULL. */
void pp__conn_send_error(pp__conn_t *c, const char *id, const char *name,
                         const char *message, json_t *detail);
/* {"ok":true} for r == 0, else the error named by r. */
void pp__conn_send_code(pp__conn_t *c, const char *id, int r);
/* Serve the buffered request lines that can be served now. */
void pp__conn_pump(pp__conn_t *c);

/* ---- control_ops.c (loop thread) */

/* Carry out one request line (without its newline). */
void pp__ctl_handle_line(pp__conn_t *c, const char *line, size_t n);
/* Write what a trace stream has buffered, if its peer keeps up. */
void pp__ctl_trace_flush(pp__conn_t *c);
/* The async callback: flush every trace stream. */
void pp__ctl_on_async(uv_async_t *a);

#endif
