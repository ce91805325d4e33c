/* portpool.h -- the whole public API of portpool: a pool of pre-warmed
 * Python worker processes lent to client tasks.
 *
 * Two faces over one core:
 *   - the event-loop face, for programs already on libuv: pp_pool_start()
 *     on the caller's uv_loop_t, then pp_checkout() / pp_request() /
 *     pp_checkin() with callbacks, all on the loop's thread;
 *   - the blocking face, for ordinary threaded programs: pp_pool_open()
 *     returns when the pool is warm, pp_call() is thread-safe, a lease
 *     (pp_lease_acquire()) keeps one worker for several calls, and
 *     pp_pool_close() returns after every worker has been reaped.
 *
 * Errors are negative integers.  libuv's codes (UV_ENOMEM, UV_EINVAL, ...)
 * pass through unchanged; portpool's own live in PP_ERRNO_MAP below.
 * pp_strerror() and pp_err_name() describe both.  A call that returns an
 * error never calls its callback; one that returns 0 calls it exactly once.
 * Human-readable detail goes into an optional pp_diag_t.
 *
 * Misuse is undefined: a NULL handle, a handle used after it was closed,
 * freed or checked in (a pool after pp_pool_close, a client after
 * pp_client_close, a task after pp_task_join, a lease after pp_checkin),
 * a second close, join or check-in.  Debug builds (without NDEBUG) assert
 * on what can be detected; release builds (RelWithDebInfo defines NDEBUG)
 * do not check.
 */
#ifndef PORTPOOL_H
#define PORTPOOL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* The library is built with hidden visibility: what this header declares
 * with PP_EXTERN is its whole ABI (libuv's UV_EXTERN). */
#if defined(__GNUC__)
#define PP_EXTERN __attribute__((visibility("default")))
#else
#define PP_EXTERN /* nothing */
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define PP_VERSION_MAJOR 0
#define PP_VERSION_MINOR 1
#define PP_VERSION_PATCH 0

/* ---------------------------------------------------------------- errors */

/* X(name, value, message).  Values sit far from errno's range so they never
 * collide with libuv's codes. */
#define PP_ERRNO_MAP(X)                                                        \
  X(ETIMEDOUT, -30001, "timed out")                                            \
  X(EBUSY, -30002, "too many waiters")                                         \
  X(EPROTO, -30003, "worker protocol error")                                   \
  X(ECRASHED, -30004, "worker died during the request")                        \
  X(ECLOSED, -30005, "pool is closing or closed")                              \
  X(EDEGRADED, -30006, "pool degraded: no worker can start")                   \
  X(EHANDLER, -30007, "handler raised an exception")                           \
  X(ECONFIG, -30008, "invalid configuration")                                  \
  X(ECANCELED, -30009, "canceled")                                             \
  X(ETOOBIG, -30010, "payload larger than max_frame")                          \
  X(ENOTRUNNING, -30011, "no pool is running there")                           \
  X(EBOOT, -30012, "worker failed to boot")

typedef enum {
#define PP__ERR_ENUM(name, value, msg) PP_##name = (value),
  PP_ERRNO_MAP(PP__ERR_ENUM)
#undef PP__ERR_ENUM
} pp_errno_t;

/* Message for any code returned by portpool or libuv.  Never NULL; the
 * string is static. */
PP_EXTERN const char *pp_strerror(int err);

/* Symbolic name ("PP_EPROTO", "ENOMEM", ...) for any such code. */
PP_EXTERN const char *pp_err_name(int err);

/* Optional detail a failing call fills in: a sentence, and where it applies
 * the file, line, column (1-based; 0 = unknown) and config key.  For
 * PP_EHANDLER, from every call kind (pp_call, pp_lease_call, pp_request,
 * pp_call_async, a control-socket call), the message is the worker's
 * "Type: message" ("ValueError: boom: 1", "UnknownCommand: unknown command
 * 'ech'; did you mean 'echo'? (handlers: ...)"), cut to fit at a UTF-8
 * character boundary; the reply holds the whole ERROR payload. */
typedef struct pp_diag {
  char message[512];
  char file[256];
  int line;
  int column;
  char key[64];
} pp_diag_t;

/* A growable buffer for replies; reuse it across calls to avoid
 * allocating.  Initialise to {0}; free data with pp_buf_free(). */
typedef struct pp_buf {
  char *data;
  size_t len;
  size_t cap;
  int binary; /* set by a call's reply: 1 when it is the bytes a handler
                 returned (bytes, bytearray, memoryview), 0 for JSON text
                 (or a handler error's JSON) */
} pp_buf_t;
PP_EXTERN void pp_buf_free(pp_buf_t *buf);

/* ---------------------------------------------------------------- config */

/* A config is a value: parsed from YAML, filled with defaults, validated,
 * and copied into a pool at start.  Changing a config afterwards changes
 * nothing running, and two config values never affect each other.  Keys are
 * the dotted YAML keys ("checkout.timeout").  Every function is safe to call
 * from any thread on distinct config values. */
typedef struct pp_config pp_config_t;

/* A new config holding every default.  The default worker.command is
 * [python3, DIR/portpool_worker.py, DIR/example_handlers.py], DIR found
 * from where the library was loaded: <libdir>/../share/portpool/python for
 * an installed (or moved) shared library, <bindir>/../share/portpool/python
 * for a program linked with the static one, the source tree's bridge/python
 * for a library in its build tree, else the configured install directory.
 * Returns 0 or UV_ENOMEM. */
PP_EXTERN int pp_config_new(pp_config_t **out);

/* Parse YAML from a file or a buffer into a new config (defaults for what
 * the text leaves out), then validate it.  `name` labels a buffer in
 * messages.  Returns 0, PP_ECONFIG (diag names file, line, column and key,
 * and suggests the nearest valid key for a misspelled one), or an I/O
 * error from libuv's set.  On error *out is NULL.
 *
 * In a file, relative paths are relative to the file's directory: in
 * worker.command the interpreter if it has a slash and every later
 * argument with a slash or ending in .py; control.socket.  Those files of
 * worker.command must exist (the interpreter be executable) when the
 * adapter is python, or the load fails with PP_ECONFIG at their position.
 * A buffer's relative paths, and those given to pp_config_set and the
 * other setters below, are kept as written (relative to the cwd). */
PP_EXTERN int pp_config_load_file(const char *path, pp_config_t **out,
                                  pp_diag_t *diag);
PP_EXTERN int pp_config_load_string(const char *name, const char *yaml,
                                    size_t len, pp_config_t **out,
                                    pp_diag_t *diag);

/* Set one key from text, exactly as its YAML value would be written:
 * ("checkout.timeout", "2s"), ("size", "auto"), ("worker.command",
 * "[python3, w.py, h.py]").  Returns 0 or PP_ECONFIG with diag filled. */
PP_EXTERN int pp_config_set(pp_config_t *cfg, const char *key,
                            const char *value, pp_diag_t *diag);

/* Apply one "key=value" override (the form of `poolctl --set`). */
PP_EXTERN int pp_config_override(pp_config_t *cfg, const char *assignment,
                                 pp_diag_t *diag);

/* Apply overrides from environment variables PREFIX_KEY, where KEY is the
 * dotted key upper-cased with '.' as '_' (PORTPOOL_CHECKOUT_TIMEOUT=2s).
 * Nothing reads the environment unless a program calls this.  Returns 0 or
 * PP_ECONFIG. */
PP_EXTERN int pp_config_apply_env(pp_config_t *cfg, const char *prefix,
                                  pp_diag_t *diag);

/* Check the whole value (ranges, a command for the python adapter, ...).
 * Returns 0 or PP_ECONFIG.  Pools validate on start too. */
PP_EXTERN int pp_config_validate(const pp_config_t *cfg, pp_diag_t *diag);

/* A deep copy.  Returns 0 or UV_ENOMEM. */
PP_EXTERN int pp_config_copy(const pp_config_t *cfg, pp_config_t **out);

/* Render one key's current value as text (the YAML form) into buf.
 * Returns 0, PP_ECONFIG for an unknown key, or UV_ENOBUFS. */
PP_EXTERN int pp_config_get(const pp_config_t *cfg, const char *key, char *buf,
                            size_t len);

/* A config derived from base: a deep copy with each "key=value" of
 * overrides applied in order (n of them).  base is not changed.  Returns
 * 0, PP_ECONFIG (diag names the key) or UV_ENOMEM. */
PP_EXTERN int pp_config_derive(const pp_config_t *base,
                               const char *const *overrides, size_t n,
                               pp_config_t **out, pp_diag_t *diag);

/* Free a config.  NULL is allowed. */
PP_EXTERN void pp_config_free(pp_config_t *cfg);

/* ------------------------------------------------------------ pool, status */

typedef struct pp_pool pp_pool_t;
typedef struct pp_lease pp_lease_t;

/* Worker slot states, in the order a slot usually moves through them. */
#define PP_WORKER_STATE_MAP(X)                                                 \
  X(STARTING, "starting")                                                      \
  X(IDLE, "idle")                                                              \
  X(LEASED, "leased")                                                          \
  X(BUSY, "busy")                                                              \
  X(BACKOFF, "backoff")                                                        \
  X(FATAL, "fatal")                                                            \
  X(DRAINING, "draining")                                                      \
  X(STOPPING, "stopping")                                                      \
  X(EXITED, "exited")

typedef enum {
#define PP__WS_ENUM(name, str) PP_WORKER_##name,
  PP_WORKER_STATE_MAP(PP__WS_ENUM)
#undef PP__WS_ENUM
} pp_worker_state_t;

PP_EXTERN const char *pp_worker_state_name(pp_worker_state_t s);

/* How a worker process last ended. */
typedef enum {
  PP_EXIT_NONE = 0, /* has not exited */
  PP_EXIT_NORMAL,   /* exited with status `code` */
  PP_EXIT_SIGNAL,   /* killed by signal `signal` */
  PP_EXIT_OOM,      /* killed by SIGKILL after passing max_rss, or OOM */
  PP_EXIT_NO_HELLO, /* died or was killed before its HELLO */
  PP_EXIT_TIMEOUT,  /* killed because a request or start-up timed out */
  PP_EXIT_PROTOCOL, /* killed for a protocol error */
  PP_EXIT_STOPPED   /* stopped by the pool, as planned: scale-down,
                       restart, recycle, reload, close ("stopped
                       (scaled down)" in last_exit_text) */
} pp_exit_kind_t;

/* "exit 0", "signal 9", "killed for timeout", ... into buf. */
PP_EXTERN void pp_exit_describe(pp_exit_kind_t kind, int code, int signal,
                                char *buf, size_t len);

typedef enum {
  PP_POOL_STARTING = 0, /* warming: fewer than size (or min_ready) idle */
  PP_POOL_READY,
  PP_POOL_DEGRADED, /* no slot can serve */
  PP_POOL_CLOSING,
  PP_POOL_CLOSED
} pp_pool_state_t;

PP_EXTERN const char *pp_pool_state_name(pp_pool_state_t s);

/* A latency histogram: counts per bucket, bucket k holding values up to
 * pp_histogram_bound_us(k) microseconds (1 us doubling to about 67 s; the
 * last bucket is unbounded), plus exact count, sum and max. */
#define PP_HIST_BUCKETS 28
typedef struct pp_histogram {
  uint64_t buckets[PP_HIST_BUCKETS];
  uint64_t count;
  uint64_t sum_us;
  uint64_t max_us;
} pp_histogram_t;

/* Upper bound of bucket k in microseconds (UINT64_MAX for the last). */
PP_EXTERN uint64_t pp_histogram_bound_us(int k);
/* The q-quantile (0 < q <= 1) in microseconds, the upper bound of the
 * bucket it falls in, clamped to max; 0 when empty. */
PP_EXTERN uint64_t pp_histogram_quantile_us(const pp_histogram_t *h, double q);

#define PP_STDERR_TAIL_LINES 20
/* Bytes kept of a worker's last slow-request stack dump, NUL included. */
#define PP_SLOW_STACK_BYTES 4096

typedef struct pp_worker_status {
  int id;  /* slot number, 0-based */
  int pid; /* 0 when no process */
  pp_worker_state_t state;
  uint32_t generation;     /* bumped at every (re)start */
  uint64_t lease;          /* current lease id, 0 when none */
  uint64_t requests;       /* served by the current process */
  uint64_t requests_total; /* served by the slot over all generations */
  uint32_t restarts;
  uint64_t uptime_ms; /* since HELLO of the current process */
  uint64_t rss_bytes; /* from /proc, 0 when unknown (a custom adapter's
                         worker: its pid may be any id) */
  pp_exit_kind_t last_exit;
  int last_exit_code;
  int last_exit_signal;
  char last_exit_text[64]; /* pp_exit_describe() of the last exit, with
                              why the pool stopped it: "stopped
                              (restarted)" */
  char last_error[320];    /* why its last process failed to boot ("" when
                              it did not): "ImportError: msg (File
                              \"h.py\", line 3, in <module>)", or the
                              last stderr line of one that died before
                              HELLO */
  uint64_t request_age_ms; /* age of the request in flight (with
                              several queued: the oldest, since the one
                              before it was answered), 0 when none */
  int in_flight;           /* requests handed to it and not answered yet
                              (pipelined calls, a lease's, one left
                              running for a caller that went away) */
  uint64_t max_requests;   /* recycle limit of this process (with jitter),
                              0 = none */
  uint64_t next_retry_ms;  /* in backoff: time until the restart */
  uint64_t cpu_time_ms;    /* user+system CPU of the current process */
  uint32_t reply_spin_us;  /* how long a blocking caller now polls for
                              this worker's reply before it sleeps: adapted
                              within worker.reply_spin_us, 0 = at once */
  int retiring;            /* will be replaced once idle (recycle, scale,
                              restart, reload) */
  pp_histogram_t run_time; /* request run times on this slot */
  int stderr_lines;        /* lines in stderr_tail, oldest first */
  /* The texts below live in the snapshot's own memory, freed by
   * pp_status_free, so a row stays under 1 KB and a status costs about
   * the same per worker at any pool size. */
  const char *stderr_tail[PP_STDERR_TAIL_LINES]; /* each at most 159 bytes;
                              NULL from stderr_lines on */
  const char *last_slow_stack; /* the stderr lines (each ending in a
                              newline) that followed the last SIGUSR1 of
                              worker.slow_request: its Python stacks; ""
                              (never NULL) when none.  Kept across restarts
                              of the slot, cut at PP_SLOW_STACK_BYTES */
} pp_worker_status_t;

typedef struct pp_status {
  char name[64];
  char adapter[16];
  pp_pool_state_t state;
  int size;
  int idle, leased, busy, starting, backoff, fatal;
  int waiters, waiters_max;
  uint64_t uptime_ms;
  uint64_t checkouts; /* leases granted */
  uint64_t checkins;  /* leases returned by their client */
  uint64_t reclaimed; /* leases ended by their client's death, below */
  uint64_t withdrawn; /* waits removed because their client died */
  uint64_t reclaimed_undelivered; /* client died between being chosen and
                                     receiving the worker */
  uint64_t reclaimed_idle;        /* client died holding an idle lease */
  uint64_t reclaimed_busy;        /* client died with a request in flight */
  uint64_t timeouts;              /* checkouts that timed out */
  uint64_t rejected;              /* checkouts refused at once (EBUSY) */
  uint64_t requests;              /* requests handed to a worker */
  uint64_t errors;                /* of those, the ones that failed (a
                                     call its caller cancelled is counted
                                     in cancels, not here) */
  uint64_t restarts;
  uint64_t stale_replies;  /* replies dropped because their lease ended */
  uint64_t slow_requests;  /* requests that ran past worker.slow_request
                              (their worker got SIGUSR1 once) */
  uint64_t cancels;        /* calls ended by pp_cancel */
  uint64_t recycles;       /* workers replaced for max_requests, max_rss,
                              max_age, restart or reload */
  int draining;            /* pp_pool_drain: no new checkouts */
  int target_size;         /* workers wanted now: pp_pool_scale's size, or
                              an elastic pool's current count */
  int size_min, size_max;  /* size's bounds; equal for a fixed pool */
  int elastic;             /* size_min < size_max: it grows and shrinks */
  uint64_t scale_changes;  /* times target_size changed (scale events) */
  char scale_reason[96];   /* why it last changed: "config", "operator",
                              "reload", "grow: 3 waiting > 5ms",
                              "shrink: worker 7 idle 30s" */
  char scale_blocked[400]; /* "growth stopped: worker 5 failed to boot:
                              ...": an elastic pool does not grow until a
                              worker boots again or pp_pool_resize; "" */
  pp_histogram_t spawn_to_ready;
  pp_histogram_t queue_wait; /* per checkout (a lease, or a one-shot call
                                placed on its worker): ask to grant */
  pp_histogram_t run_time;   /* per request its worker answered: handed
                                over to answer read, as workers[].run_time */
  int nworkers;
  pp_worker_status_t *workers; /* nworkers rows, owned by the snapshot */
  char *handlers;      /* the handler names the latest HELLO listed, as a JSON
                          array ("[\"add\",\"echo\"]"), owned by the snapshot;
                          NULL before any worker said HELLO or when its worker
                          does not list them */
  char *handler_kinds; /* the kind of each of them that is not a plain
                          function, as a JSON object ("{\"feed\":
                          \"stream\",\"fetch\":\"async\"}"), owned by
                          the snapshot; NULL when all are plain */
  char reload_error[448]; /* "reload rolled back: worker 0's replacement
                             failed to boot: ModuleNotFoundError: ...":
                             the latest reload was undone; "" otherwise
                             (cleared by the next reload) */
} pp_status_t;

/* Snapshot the pool.  Thread-safe.  Free with pp_status_free().  Returns 0
 * or UV_ENOMEM. */
PP_EXTERN int pp_pool_status(pp_pool_t *pool, pp_status_t *out);
PP_EXTERN void pp_status_free(pp_status_t *st);

/* The snapshot as a JSON object text, malloc'd; NULL on ENOMEM. */
PP_EXTERN char *pp_status_to_json(const pp_status_t *st);

/* ------------------------------------------------------------------ trace */

#define PP_TRACE_MAP(X)                                                        \
  X(SPAWN, "spawn")                 /* a worker process was started */         \
  X(HELLO, "hello")                 /* it said HELLO: now idle */              \
  X(READY, "ready")                 /* the pool reached its ready count */     \
  X(EXIT, "exit")                   /* a worker process was reaped */          \
  X(RESTART, "restart")             /* a slot is scheduled to restart */       \
  X(FATAL, "fatal")                 /* a slot gave up restarting */            \
  X(DEGRADED, "degraded")           /* no slot can serve */                    \
  X(CHECKOUT_WAIT, "checkout_wait") /* a client joined the queue */            \
  X(CHECKOUT, "checkout")           /* a lease was granted */                  \
  X(CHECKOUT_FAIL, "checkout_fail") /* a checkout failed (timeout, ...) */     \
  X(REQUEST, "request")             /* a request was sent to a worker */       \
  X(REPLY, "reply")                 /* a reply came back */                    \
  X(CHECKIN, "checkin")             /* a lease was returned */                 \
  X(RECLAIM, "reclaim")             /* a lease ended without its client */     \
  X(STALE_REPLY, "stale_reply")     /* a reply for an ended lease, dropped */  \
  X(KILL, "kill")                   /* the pool signalled a worker */          \
  X(PROTOCOL_ERROR, "protocol_error")                                          \
  X(RECYCLE, "recycle")               /* a worker is retired to be replaced */ \
  X(HEARTBEAT_MISS, "heartbeat_miss") /* an idle worker missed a PONG */       \
  X(SCALE, "scale")                   /* the target size changed */            \
  X(DRAIN, "drain")   /* draining began (code 0) or ended (1) */               \
  X(RELOAD, "reload") /* a new config was applied */                           \
  X(CLOSING, "closing")                                                        \
  X(CLOSED, "closed")                                                          \
  X(SLOW, "slow") /* a request passed worker.slow_request: SIGUSR1 sent */

typedef enum {
#define PP__TR_ENUM(name, str) PP_TRACE_##name,
  PP_TRACE_MAP(PP__TR_ENUM)
#undef PP__TR_ENUM
} pp_trace_type_t;

PP_EXTERN const char *pp_trace_name(pp_trace_type_t t);

typedef struct pp_trace_event {
  pp_trace_type_t type;
  uint64_t ts_ns; /* monotonic clock */
  int slot;       /* -1 when not about one worker */
  uint32_t generation;
  int pid;
  uint64_t lease;     /* 0 when none */
  uint64_t client;    /* 0 when none */
  int code;           /* an error code or an exit status, when relevant */
  const char *detail; /* short text or NULL; valid during the callback */
} pp_trace_event_t;

/* Called for each event on whichever thread caused it, with the pool's
 * lock held: copy what you need and return; never call into the pool from
 * it. */
typedef void (*pp_trace_cb)(pp_pool_t *pool, const pp_trace_event_t *ev,
                            void *data);

/* Log lines: a worker's stdout and stderr, prefixed with its id, and the
 * pool's own notices.  Called on the loop thread, with the pool lock held:
 * as for the trace callback, copy what you need and return; never call
 * into the pool from it (pp_cancel, pp_pool_status, ... would deadlock).
 * The default (NULL) writes to stderr. */
typedef void (*pp_log_cb)(pp_pool_t *pool, const char *line, void *data);

/* ---------------------------------------------------------------- adapters */

/* An adapter makes workers.  Whatever it starts speaks the bridge protocol
 * (DESIGN.md, bridge/frame.h): it reads request frames from req_fd, writes
 * HELLO then reply frames to rep_fd, and ends on EOF of req_fd.  Built in:
 * "python" (interpreter subprocesses) and "mock" (a thread per worker
 * running C handlers, see pp_mock_t).  A program may supply its own in
 * pp_pool_options_t; there is no process-wide registry, so two pools in
 * one process never share or change each other's adapter. */
typedef struct pp_adapter_worker pp_adapter_worker_t;

typedef struct pp_adapter {
  const char *name;
  /* Start one worker.  req_fd and rep_fd now belong to the adapter, which
   * closes them when the worker ends.  Return 0 with the adapter's state
   * for this worker in *state, and its pid (or any id, > 0) in *pid; or a
   * negative error (the fds are then closed by the pool).  The pool never
   * reads /proc or sends signals by that id: such a worker has no RSS or
   * CPU in status, worker.max_rss does not recycle it, and
   * worker.slow_request only logs that it ran long. */
  int (*start)(pp_adapter_worker_t *w, int req_fd, int rep_fd, void *data,
               void **state, int *pid);
  /* Stop it: SIGTERM asks, SIGKILL insists.  It must then end and report
   * with pp_adapter_worker_exited().  Any thread. */
  void (*signal)(void *state, int sig);
  /* The worker has ended and been reported: free its state.  Called on the
   * pool's loop thread. */
  void (*release)(void *state);
  void *data;
} pp_adapter_t;

/* The adapter reports, exactly once and from any thread, that a worker has
 * ended: with an exit status, or the signal that ended it. */
PP_EXTERN void pp_adapter_worker_exited(pp_adapter_worker_t *w, int64_t status,
                                        int signal);

/* ------------------------------------------------------------ mock adapter */

/* The mock adapter's handlers: C functions by command name.  A handler
 * gets the request's "args" as JSON text and writes its reply, JSON text,
 * into `reply`; it returns 0 for a reply, or non-zero for an error whose
 * message is the reply text (the client sees PP_EHANDLER with
 * {"type":"MockError","message":...}).  For a binary call (pp_call_bytes)
 * args is the call's bytes; a handler that sets reply->binary answers in
 * bytes.  Besides these, every mock worker
 * knows: echo (returns args; a binary call's bytes as bytes), sleep (args
 * seconds; ends early when the request is cancelled, returning "cancelled"),
 * fail (PP_EHANDLER), crash (the worker ends with exit status args, default 3:
 * PP_ECRASHED), hang (never answers, whatever CANCEL says: PP_ETIMEDOUT once
 * the request times out), pid, deadline_left ([true, seconds before the
 * request's deadline] or [false, null], as portpool_worker.remaining() sees
 * it), count (a stream: args chunks 0 .. args-1 to a call with on_chunk,
 * then "counted"; a TypeError without one).  A mock worker, like a Python
 * one, fails a request that reaches it past
 * its deadline with {"type":"DeadlineExceeded"} and does not run it. */
typedef int (*pp_mock_handler)(const char *args, size_t len, pp_buf_t *reply,
                               void *data);
typedef struct pp_mock pp_mock_t;

/* A handler table.  Returns 0 or UV_ENOMEM.  Register handlers before the
 * pool starts; the pool keeps a pointer, so free it after the pool. */
PP_EXTERN int pp_mock_new(pp_mock_t **out);
PP_EXTERN int pp_mock_add(pp_mock_t *mock, const char *cmd, pp_mock_handler fn,
                          void *data);
PP_EXTERN void pp_mock_free(pp_mock_t *mock);

/* Options given at start and never changed afterwards. */
typedef struct pp_pool_options {
  pp_trace_cb trace; /* may be NULL */
  void *trace_data;
  pp_log_cb log; /* may be NULL: log to stderr */
  void *log_data;
  /* A program-supplied adapter, used instead of the config's `adapter`
   * (status shows its name).  May be NULL. */
  const pp_adapter_t *adapter;
  /* Handlers for `adapter: mock` (NULL: only the built-in ones). */
  const pp_mock_t *mock;
  /* What the control socket's "stop" and "reload" do: they belong to the
   * program that runs the pool (poolctl serve stops, or re-reads its
   * config and calls pp_pool_reload).  Called on the loop thread, lock not
   * held, with op "stop" (after the client has its answer) or "reload"
   * (its result is the answer: 0, or an error with diag).  NULL: those
   * ops are delivered as SIGTERM / SIGHUP when the program handles them,
   * and refused otherwise. */
  int (*control)(pp_pool_t *pool, const char *op, pp_diag_t *diag, void *data);
  void *control_data;
} pp_pool_options_t;

/* -------------------------------------------------------- event-loop face */

typedef void (*pp_pool_ready_cb)(pp_pool_t *pool, int status, void *data);
typedef void (*pp_pool_close_cb)(pp_pool_t *pool, void *data);

/* Start a pool on `loop` (which the caller runs).  The config is copied.
 * Every worker is spawned at once.  ready_cb (may be NULL) is called once,
 * when the pool is ready (status 0), or with an error if the pool degrades
 * or is stopped first.  A worker that fails to boot before the pool was
 * ever ready (its handler module cannot be imported, raises or exits while
 * being imported, hangs past worker.startup_timeout without a HELLO, or no
 * process can be spawned: out of file descriptors) ends the wait at once with
 * PP_EBOOT, unless restart.retry_boot_failures is true; pp_pool_ready_diag()
 * then says why. Returns 0, PP_ECONFIG, or a libuv error (for example from
 * binding the control socket); on error nothing was started.
 *
 * With control.socket set, the socket's directory must be the process's
 * user's (or root's) and writable by nobody else, wherever it is: UV_EACCES
 * (UV_ENOTDIR for a symlink) otherwise, with diag saying why.  The socket
 * gets control.mode without chmod by path or a change of umask (it is
 * bound in a private directory and renamed into place), and PATH.lock
 * beside it is held while the pool runs: UV_EADDRINUSE when another
 * server holds it ("another server holds PATH (pid N)").  Each control
 * connection idle for control.idle_timeout, or leaving over 4 MiB of
 * replies unread that long, is closed (docs/protocol.md).  libuv writes to
 * control clients with write(2): a client that leaves before its reply
 * raises SIGPIPE on the loop's thread, whose default action kills the
 * process.  So with control.socket, ignore SIGPIPE (signal(SIGPIPE,
 * SIG_IGN)) or block it in the thread that runs the loop; the pool logs a
 * warning when it is neither.  pp_pool_open's own loop thread blocks it. */
PP_EXTERN int pp_pool_start(uv_loop_t *loop, const pp_config_t *cfg,
                            const pp_pool_options_t *opts,
                            pp_pool_ready_cb ready_cb, void *data,
                            pp_pool_t **out, pp_diag_t *diag);

/* Why the pool is not ready: returns the status ready_cb got (0 when ready
 * or not yet reported) and fills diag with the reason.  For PP_EBOOT the
 * message is "worker N failed to boot: Type: message (last traceback
 * line)"; the full traceback is in the pool's log, once.  Thread-safe; may
 * be called from ready_cb. */
PP_EXTERN int pp_pool_ready_diag(pp_pool_t *pool, pp_diag_t *diag);

/* Stop a pool started with pp_pool_start: refuse new checkouts, let
 * in-flight requests finish up to drain_timeout, SIGTERM, SIGKILL after
 * kill_grace.  A pp_request still in flight at drain_timeout gets its
 * callback, once, with PP_ECLOSED.  close_cb runs on the loop after every
 * worker is reaped, every handle closed and the control socket removed;
 * the pool is freed right after it returns. */
PP_EXTERN void pp_pool_stop(pp_pool_t *pool, pp_pool_close_cb close_cb,
                            void *data);

/* A client borrows workers and dies at close: its waiters are withdrawn and
 * its leases reclaimed (README, "what the pool guarantees when a client
 * dies").  A reclaimed lease gives its worker back at once but stays its
 * holder's, fenced: every pp_lease_call and pp_request on it returns
 * PP_ECANCELED without reaching a worker, until the holder checks it in
 * (the client's memory goes with its last lease).  A task's end checks in
 * the leases its function left.  Clients are cheap.  Thread-safe. */
typedef struct pp_client pp_client_t;
PP_EXTERN int pp_client_open(pp_pool_t *pool, pp_client_t **out);
PP_EXTERN void pp_client_close(pp_client_t *client);
PP_EXTERN uint64_t pp_client_id(const pp_client_t *client);
PP_EXTERN pp_pool_t *pp_client_pool(const pp_client_t *client);

/* Checkout on the loop: cb runs on the loop thread with a lease, or with
 * lease NULL and PP_ETIMEDOUT (diag says why: warming, busy, degraded),
 * PP_ECLOSED or PP_ECANCELED (client closed).  timeout_ms < 0 means the
 * config's checkout.timeout.  Returns 0, or PP_EBUSY at once when
 * max_waiters are queued, PP_EDEGRADED, PP_ECLOSED; then cb is not called.
 * client may be NULL (the pool's own anonymous client). */
typedef void (*pp_checkout_cb)(pp_lease_t *lease, int status,
                               const pp_diag_t *diag, void *data);
PP_EXTERN int pp_checkout(pp_pool_t *pool, pp_client_t *client,
                          int64_t timeout_ms, pp_checkout_cb cb, void *data);

/* Send one request on a lease, from the loop thread.  The payload is copied
 * before return.  cb gets the reply (valid only during the callback) with
 * status 0, or status PP_EHANDLER and the worker's ERROR payload (a JSON
 * object with type, message, traceback), or PP_ETIMEDOUT (request_timeout
 * or timeout_ms >= 0; the worker is replaced), PP_ECRASHED, PP_EPROTO,
 * PP_ECLOSED (the pool stopped and the request ran past drain_timeout)
 * with an empty reply, or PP_ECANCELED when the lease was checked in or
 * reclaimed while the request ran: the lease is then gone (do not check it
 * in).  Returns 0, PP_ETOOBIG, UV_EINVAL (a request already in flight on
 * this lease), PP_ECANCELED (the lease was reclaimed with its client;
 * check it in) or UV_ENOMEM; then cb is not called. */
typedef void (*pp_reply_cb)(pp_lease_t *lease, int status, const char *reply,
                            size_t len, const pp_diag_t *diag, void *data);
PP_EXTERN int pp_request(pp_lease_t *lease, const void *payload, size_t len,
                         int64_t timeout_ms, pp_reply_cb cb, void *data);

/* Check out, request, check in, on the loop, for programs with many calls
 * in flight at once: with worker.pipeline_depth N, up to N of them queue
 * on one worker and are answered in order (a lease still gets a worker to
 * itself); with worker.concurrency N, up to N (or pipeline_depth, if
 * more) run on one worker at once and are answered as they finish, and a
 * worker's death fails them all with PP_ECRASHED.  The requests queued in one
 * turn of the loop go out in one write per worker.  From any thread; the
 * payload is copied before return.  From the loop thread a call takes a free
 * place at once; from another (a pp_pool_open pool's callers, say) it queues,
 * and the loop places every call submitted meanwhile in its next turn (one
 * wake-up for all); one that finds no place then counts against
 * checkout.max_waiters (past it, cb gets PP_EBUSY).  cb runs once, on the loop
 * thread (a pp_pool_open pool's own thread) and never from inside this
 * call, with the reply (valid only during the callback) and status 0, or
 * PP_EHANDLER and the worker's ERROR payload, or with an empty reply:
 * PP_ETIMEDOUT (timeout_ms >= 0 bounds the whole call: no worker within
 * it, or the call ran past it while its request runs, which is then left
 * as on_client_death says: finish lets it run and drops its reply, cancel
 * also sends CANCEL, kill replaces the worker; timeout_ms < 0:
 * checkout.timeout bounds the wait; either way the request passing
 * worker.request_timeout replaces the worker), PP_ECRASHED (the worker died, or
 * a request ahead of it timed out), PP_EPROTO, PP_ECLOSED (the pool stopped or
 * drained first), PP_EDEGRADED, UV_ENOMEM.  Returns 0, or PP_ETOOBIG, PP_EBUSY
 * (max_waiters calls are waiting; on the loop thread), PP_ECLOSED,
 * PP_EDEGRADED, UV_ENOMEM, UV_EINVAL (cb is NULL); then cb is not called.  Like
 * every call, not concurrently with pp_pool_close / pp_pool_stop. */
typedef void (*pp_call_cb)(int status, const char *reply, size_t len,
                           const pp_diag_t *diag, void *data);
PP_EXTERN int pp_call_async(pp_pool_t *pool, const void *payload, size_t len,
                            int64_t timeout_ms, pp_call_cb cb, void *data);

/* Return a lease.  After a failed request the worker is already being
 * replaced and only the lease ends.  A lease reclaimed with its client is
 * checked in the same way.  Thread-safe, also while another thread is in
 * pp_lease_call on the lease: that call then returns PP_ECANCELED, and
 * its worker is handled as if its client had died (on_client_death).  The
 * lease is invalid after the call; checking it in twice is undefined
 * (debug builds assert; release builds ignore it while the lease object
 * has not been lent again). */
PP_EXTERN void pp_checkin(pp_lease_t *lease);

/* The worker slot and generation a lease holds, and its id. */
PP_EXTERN int pp_lease_slot(const pp_lease_t *lease);
PP_EXTERN uint32_t pp_lease_generation(const pp_lease_t *lease);
PP_EXTERN uint64_t pp_lease_id(const pp_lease_t *lease);
PP_EXTERN int pp_lease_pid(const pp_lease_t *lease);

/* ---------------------------------------------------------- blocking face */

/* Start a pool on its own loop thread and return once it is ready, or fail:
 * PP_ECONFIG, PP_ETIMEDOUT (not ready within startup_timeout plus the
 * checkout timeout), PP_EDEGRADED, PP_EBOOT (a worker failed to boot, see
 * pp_pool_start: diag has the exception's type, message and last traceback
 * line, within about one worker start-up), or a libuv error (the control
 * socket's as for pp_pool_start).  The config is copied. */
PP_EXTERN int pp_pool_open(const pp_config_t *cfg,
                           const pp_pool_options_t *opts, pp_pool_t **out,
                           pp_diag_t *diag);

/* Close a pool opened with pp_pool_open: the graceful stop of
 * pp_pool_stop(), returning only after every worker process has been
 * reaped, the loop thread joined and the control socket removed.  The stop
 * begins first, then tasks not yet joined are cancelled and joined, so a
 * request in flight, a task's too, whatever on_client_death says, is
 * bounded by worker.drain_timeout + worker.kill_grace (a task's function
 * must still return once its calls fail).  Threads blocked in the pool get
 * PP_ECLOSED, a call cut short by the stop too. */
PP_EXTERN void pp_pool_close(pp_pool_t *pool);

/* Check out one worker for several calls, blocking up to timeout_ms (< 0:
 * the config's checkout.timeout).  Returns 0, PP_ETIMEDOUT (diag says why),
 * PP_EBUSY, PP_EDEGRADED, PP_ECLOSED.  client may be NULL.  Must not be
 * called on the loop thread. */
PP_EXTERN int pp_lease_acquire(pp_pool_t *pool, pp_client_t *client,
                               int64_t timeout_ms, pp_lease_t **out,
                               pp_diag_t *diag);

/* One request on a held lease, performed on the calling thread (no hop
 * through the loop).  The reply is written to `reply` (grown as needed).
 * While replies come back fast, the thread polls for the reply for up to
 * worker.reply_spin_us (default 50) before it sleeps, and only while the
 * threads in blocking calls leave a CPU free (see the README).
 * A reply already in the pipe when the deadline is checked (the caller
 * was paused) is the answer, not a timeout.
 * Returns 0, PP_EHANDLER (reply holds the ERROR payload), PP_ETIMEDOUT,
 * PP_ECRASHED, PP_EPROTO, PP_ETOOBIG, PP_ECLOSED (the pool is closing, or
 * closed past drain_timeout during the call), PP_ECANCELED (the lease's
 * client died, before or during the call, or another thread checked the
 * lease in during it), UV_ENOMEM.  After any error but PP_EHANDLER and
 * PP_ETOOBIG the worker is gone: check the lease in (after PP_ECANCELED
 * too, unless another thread already did). */
PP_EXTERN int pp_lease_call(pp_lease_t *lease, const void *payload, size_t len,
                            int64_t timeout_ms, pp_buf_t *reply,
                            pp_diag_t *diag);

/* Check out, call once, check in.  Thread-safe.  Returns what
 * pp_lease_acquire and pp_lease_call return.
 *
 * timeout_ms (>= 0) bounds the whole call, the wait for a worker and the
 * request: past it the call returns PP_ETIMEDOUT (the diag says "the call
 * ran past its timeout_ms") and the worker is left as on_client_death
 * says for a client that went away: finish (the default) lets the request
 * run and drops its reply, cancel also sends CANCEL (the handler sees
 * portpool_worker.cancelled(); the worker is replaced past cancel_grace),
 * kill replaces it; a request still being written when the time ran out
 * (the worker was not reading) replaces the worker whatever
 * on_client_death says.  worker.request_timeout still bounds the request
 * (past it the worker is replaced).  timeout_ms < 0: checkout.timeout for
 * the wait, worker.request_timeout for the request.  A pipelined call
 * (below) with timeout_ms >= 0 goes through pp_call_async_with, bounded
 * the same way.  timeout_ms 0 returns PP_ETIMEDOUT at once (nothing is
 * sent).  A request that reaches its handler past its deadline is not run
 * and is a timeout too (its worker answers DeadlineExceeded, which every
 * call kind turns into PP_ETIMEDOUT).  Not on the loop thread.
 *
 * With worker.pipeline_depth N > 1, a payload of up to 4 KiB may share a
 * worker with up to N - 1 other pp_calls queued on it, answered in order
 * (a lease still gets a worker to itself).  The calling thread sleeps once
 * until its reply is in; callers waiting for a place are served in FIFO
 * order.  If the worker dies or a request ahead passes its timeout, the
 * calls queued behind it fail with PP_ECRASHED; if pp_pool_close stops it
 * past drain_timeout, with PP_ECLOSED.  With worker.concurrency > 1 every
 * pp_call goes through pp_call_async (the calling thread waits on a
 * semaphore), whose rings take replies out of order. */
PP_EXTERN int pp_call(pp_pool_t *pool, const void *payload, size_t len,
                      pp_buf_t *reply, int64_t timeout_ms, pp_diag_t *diag);

/* pp_call with the payload {"args": args_json, "cmd": cmd} built for you;
 * args_json NULL means null.  cmd must be an ASCII identifier (letters,
 * digits and '_', not starting with a digit), as Python handler names are:
 * it goes into the JSON unescaped, so anything else (a quote could add a
 * second "cmd") returns UV_EINVAL with diag saying so, and nothing is sent;
 * build the JSON yourself and use pp_call for other names.  args_json is
 * pasted as it is, before "cmd" (the key that counts is the last one), so
 * text in it cannot change which handler runs; it must be one JSON value,
 * or the worker answers BadRequest (PP_EHANDLER).  Returns what pp_call
 * returns, or UV_EINVAL. */
PP_EXTERN int pp_call_cmd(pp_pool_t *pool, const char *cmd,
                          const char *args_json, pp_buf_t *reply,
                          int64_t timeout_ms, pp_diag_t *diag);

/* ------------------------------------------------------------- cancelling */

/* A cancel token: give it to calls (pp_call_opts_t.cancel), and any thread
 * may end them with pp_cancel().  One token may serve several calls at
 * once (the fan-out of one piece of work, say); pp_cancel ends every call
 * pending on it, and a call started with a fired token fails at once with
 * PP_ECANCELED, until pp_cancel_reset().  A call cancelled
 *   - while it waits for a worker is withdrawn;
 *   - while its request runs (or waits on its worker behind others) gets
 *     its worker a CANCEL frame: the handler sees
 *     portpool_worker.cancelled(), and the worker is replaced if it has
 *     not answered within cancel_grace (the pp_call_async calls queued
 *     behind it on that worker are then placed again, never lost); the
 *     late answer is dropped (stale_replies), never handed to anyone.
 * The caller gets PP_ECANCELED exactly once, at once: pp_call_with and
 * pp_lease_call_with return it (with an empty reply), the callbacks of
 * pp_call_async_with and pp_request_with get it (on the loop thread,
 * never from inside pp_cancel).  After PP_ECANCELED from
 * pp_lease_call_with or pp_request_with, check the lease in: its worker
 * is gone (or, when its answer had come first, still the lease's), and a
 * later call on it gets PP_ECANCELED (its worker left it).  A
 * call placed again after its worker was replaced counts once more in
 * checkouts and requests. */
typedef struct pp_cancel pp_cancel_t;

/* A token for calls on pool (a call on another pool refuses it with
 * UV_EINVAL).  Returns 0, UV_ENOMEM or a libuv error (its eventfd). */
PP_EXTERN int pp_cancel_new(pp_pool_t *pool, pp_cancel_t **out);
/* Cancel every call pending on the token, and those started with it
 * later.  Any thread, but not from the trace or log callbacks (the pool
 * lock is held there) and not after the pool is closed.  Counted in
 * pp_status_t.cancels (not in errors).  Returns how many calls it ended:
 * each of them gets
 * PP_ECANCELED.  A call it did not count either had finished (it gets
 * its own outcome) or takes the token after this (PP_ECANCELED, "the
 * call was cancelled before it started"). */
PP_EXTERN int pp_cancel(pp_cancel_t *token);
/* 1 once pp_cancel ran on it (until pp_cancel_reset). */
PP_EXTERN int pp_cancel_fired(const pp_cancel_t *token);
/* Make a fired token usable again (not after the pool is closed).  No call
 * may be pending on it (the process aborts, saying so); a thread call it
 * cancelled that is still on its way out is waited for. */
PP_EXTERN void pp_cancel_reset(pp_cancel_t *token);
/* Free a token (before or after its pool is closed).  No call may be
 * pending on it (the process aborts, saying so).  NULL is allowed. */
PP_EXTERN void pp_cancel_free(pp_cancel_t *token);

/* A streamed call's chunk: one item its stream handler (a generator)
 * yielded, as it arrives (valid only during the callback); binary: bytes,
 * else a JSON value.  Return 0 for the next, or non-zero to stop the
 * stream: the call then ends with PP_ECANCELED ("the stream was stopped
 * by its on_chunk") and no chunk follows; its worker gets CANCEL (the
 * generator sees GeneratorExit), as pp_cancel does. */
typedef int (*pp_chunk_cb)(const char *chunk, size_t len, int binary,
                           void *data);

/* What the _with calls take besides the payload. */
typedef struct pp_call_opts {
  int64_t timeout_ms;  /* as the plain call's timeout_ms: < 0 the config's;
                          0 leaves a one-shot call no time (PP_ETIMEDOUT at
                          once, nothing sent) */
  pp_cancel_t *cancel; /* NULL: not cancellable */
  /* NULL: the payload is the JSON request {"cmd": ..., "args": ...}.  A
   * handler name (an identifier of at most 64 characters): the payload is
   * raw bytes, handed to that handler as Python bytes, without JSON or
   * any copy into text (UV_EINVAL for a bad name). */
  const char *cmd;
  /* Not NULL: the call takes a stream.  A generator handler's items come
   * to on_chunk, in order, as the worker sends them; the call's reply is
   * then the generator's return value (null for none).  A handler that is
   * not a generator just replies.  The thread calls (pp_call_with,
   * pp_lease_call_with, pp_call_bytes) call it on the calling thread (a
   * streamed pp_call_with takes a worker of its own, even when pipelined);
   * the loop calls (pp_call_async_with, pp_request_with) on the loop; a
   * streamed loop call also has a worker of its own.  Nothing more is
   * read from the worker while it runs: a slow consumer makes the
   * handler wait at its next yield once the pipe is full (64 KiB), and a
   * stream never holds more than one chunk in memory.  timeout_ms and
   * the token bound the whole stream (checked before each chunk: none is
   * delivered past them); a streamed call whose caller is gone (out of
   * time, cancelled, its client closed, its lease checked in, even from
   * on_chunk) is always sent CANCEL, whatever on_client_death says, unless
   * that says kill.  Its callback comes once, after every chunk. */
  pp_chunk_cb on_chunk;
  void *chunk_data;
} pp_call_opts_t;

/* How a _with call on the loop face ended, for its callback (valid only
 * during it). */
typedef struct pp_result {
  int status;        /* as the plain call's callback */
  const char *reply; /* the reply, or a handler error's JSON */
  size_t len;
  int binary;            /* the reply is bytes a handler returned, not JSON */
  const pp_diag_t *diag; /* why it failed; NULL when status is 0 */
  pp_lease_t *lease;     /* pp_request_with: its lease; else NULL */
  /* The request reached a worker, which may have run it; 0: it never
   * did (refused, or ended while it waited), safe to send again.
   * Always 1 for pp_request_with. */
  int sent;
} pp_result_t;
typedef void (*pp_result_cb)(const pp_result_t *res, void *data);

/* The calls above with options (opts NULL: timeout_ms -1, no token, JSON).
 * The plain calls are these with {.timeout_ms = timeout_ms}.  A pipelined
 * pp_call_with (worker.pipeline_depth > 1) given a token or a timeout_ms >= 0
 * goes through pp_call_async_with, which can end it at either; without both it
 * keeps the caller-reads path of pp_call, bounded in its wait only. */
PP_EXTERN int pp_call_with(pp_pool_t *pool, const void *payload, size_t len,
                           pp_buf_t *reply, const pp_call_opts_t *opts,
                           pp_diag_t *diag);
PP_EXTERN int pp_lease_call_with(pp_lease_t *lease, const void *payload,
                                 size_t len, const pp_call_opts_t *opts,
                                 pp_buf_t *reply, pp_diag_t *diag);
PP_EXTERN int pp_call_async_with(pp_pool_t *pool, const void *payload,
                                 size_t len, const pp_call_opts_t *opts,
                                 pp_result_cb cb, void *data);
PP_EXTERN int pp_request_with(pp_lease_t *lease, const void *payload,
                              size_t len, const pp_call_opts_t *opts,
                              pp_result_cb cb, void *data);

/* A call with bytes for handler cmd: pp_call_with with opts->cmd = cmd
 * (opts may be NULL).  The reply's binary says whether the handler
 * returned bytes or a JSON value. */
PP_EXTERN int pp_call_bytes(pp_pool_t *pool, const char *cmd, const void *data,
                            size_t len, pp_buf_t *reply,
                            const pp_call_opts_t *opts, pp_diag_t *diag);

/* ---------------------------------------------- supervised tasks, quiesce */

/* A task runs fn on a thread of its own with a client the task owns: every
 * checkout the function makes through that client belongs to the task.
 * When fn returns (or its thread exits), or the task is cancelled, the
 * client dies: its waits are withdrawn and its leases reclaimed. */
typedef struct pp_task pp_task_t;
typedef void (*pp_task_fn)(pp_task_t *task, pp_client_t *client, void *data);

/* Start a task.  Returns 0, PP_ECLOSED, or a libuv error (thread creation,
 * UV_ENOMEM); then fn never runs. */
PP_EXTERN int pp_task_spawn(pp_pool_t *pool, pp_task_fn fn, void *data,
                            pp_task_t **out);

/* Cancel: the task's client dies now, so its blocked checkouts return
 * PP_ECANCELED, its calls fail with PP_ECANCELED, its leases are reclaimed
 * (per on_client_death for a request in flight), and pp_task_cancelled()
 * turns true for fn to notice.  Thread-safe; the task must still be
 * joined. */
PP_EXTERN void pp_task_cancel(pp_task_t *task);
PP_EXTERN int pp_task_cancelled(const pp_task_t *task);

/* Wait for the task's function to return and free the task.  Returns 0, or
 * PP_ECANCELED if it was cancelled.  Tasks not joined are cancelled and
 * joined by pp_pool_close.  Joining twice is undefined. */
PP_EXTERN int pp_task_join(pp_task_t *task);

/* Block until the pool is quiet: no task running, no lease out, nobody
 * waiting, no request in flight (including requests still finishing for a
 * client that left).  Returns 0, or PP_ETIMEDOUT after timeout_ms with diag
 * saying what is still outstanding ("2 leases out, 1 waiting, 1 task").
 * Not on the loop thread. */
PP_EXTERN int pp_pool_quiesce(pp_pool_t *pool, int64_t timeout_ms,
                              pp_diag_t *diag);

/* ------------------------------------------------------ test helpers */

/* For users' test suites (cmocka or any other).  pp_test_pool_open opens
 * a pool scoped to one test: warm when it returns, or a clear failure
 * within timeout_ms (which bounds start-up instead of the config's
 * startup_timeout + checkout.timeout); a handler module that cannot be
 * imported fails it at once with PP_EBOOT, as pp_pool_open.
 * pp_test_pool_close quiesces the pool (up to timeout_ms), checks nothing
 * leaked (no lease out, no waiter, no task, no request in flight), then
 * closes it synchronously.  It
 * returns 0, or PP_ETIMEDOUT with diag saying what leaked ("1 leases out,
 * 0 waiting, 0 tasks running"); the pool is closed either way. */
PP_EXTERN int pp_test_pool_open(const pp_config_t *cfg,
                                const pp_pool_options_t *opts,
                                int64_t timeout_ms, pp_pool_t **out,
                                pp_diag_t *diag);
PP_EXTERN int pp_test_pool_close(pp_pool_t *pool, int64_t timeout_ms,
                                 pp_diag_t *diag);

/* ------------------------------------------------------ operating a pool */

/* All thread-safe; each returns at once and the pool carries it out on its
 * loop (watch status or trace events).  Each returns 0, PP_ECLOSED, or
 * UV_EINVAL for a bad argument. */

/* Grow or shrink to n workers (1..4096), and keep the pool at n: an
 * elastic pool becomes a fixed one (pp_pool_resize(pool, n, n, force)).
 * Shrinking retires idle workers first, then busy ones as they finish;
 * force kills busy ones at once (their clients get PP_ECRASHED).  Traced
 * as a `scale` event with the reason "operator". */
PP_EXTERN int pp_pool_scale(pp_pool_t *pool, int n, int force);

/* Make the pool elastic between min and max workers (1 <= min <= max <=
 * 4096), as `size: {min, max}` does: it grows while checkouts wait past
 * scale.up_after and stops workers idle past scale.idle_timeout, never
 * below min.  The current count is brought within [min, max] at once (as
 * pp_pool_scale, with force for busy workers); min == max is a fixed pool.
 * Clears a stop of growth after boot failures.  The next reload takes
 * size from its config again.  Traced as a `scale` event ("operator:
 * {min: 2, max: 8}"). */
PP_EXTERN int pp_pool_resize(pp_pool_t *pool, int min, int max, int force);

/* Rolling restart of slot `id`, or of every slot when id < 0: each
 * replacement is started before the old worker is retired, at most
 * worker.max_recycling at a time, so capacity never dips below
 * size - max_recycling. */
PP_EXTERN int pp_pool_restart(pp_pool_t *pool, int id);

/* Stop handing out workers: new checkouts fail with PP_ECLOSED ("pool
 * draining"), queued ones too; requests in flight finish.  pp_pool_quiesce
 * then tells when they have.  undrain = 0 drains, 1 serves again. */
PP_EXTERN int pp_pool_drain(pp_pool_t *pool, int undrain);

/* Apply a new config to a running pool: a rolling replacement of every
 * worker with the new worker settings (as pp_pool_restart(pool, -1)), a
 * scale to the new size, and the new checkout, restart and timeout
 * settings for what comes next.  No request is dropped.  The name, the
 * adapter and control.* cannot change (PP_ECONFIG naming the key).  The
 * config is copied.  Returns once the pool took the order; the rest is
 * asynchronous.  The new config stands once one of its workers said
 * HELLO.  If one fails to boot before that (its handler cannot be
 * imported, or no HELLO within startup_timeout), the reload is rolled
 * back: the previous config is live again for every later start, the
 * replacements still starting are stopped, the old workers keep serving,
 * and pp_status_t.reload_error says so ("reload rolled back: worker 0's
 * replacement failed to boot: ModuleNotFoundError: ...") until the next
 * reload. */
PP_EXTERN int pp_pool_reload(pp_pool_t *pool, const pp_config_t *cfg,
                             pp_diag_t *diag);

/* Add a trace subscriber besides the one given at start (the control
 * socket streams events this way).  Returns 0 and an id for
 * pp_pool_trace_unsubscribe, or UV_ENOMEM.  The callback runs as the
 * start option's does: any thread, pool lock held. */
PP_EXTERN int pp_pool_trace_subscribe(pp_pool_t *pool, pp_trace_cb cb,
                                      void *data, int *id);
PP_EXTERN void pp_pool_trace_unsubscribe(pp_pool_t *pool, int id);

/* The pool's config as started (read-only, owned by the pool). */
PP_EXTERN const pp_config_t *pp_pool_config(const pp_pool_t *pool);

#ifdef __cplusplus
}
#endif
#endif /* PORTPOOL_H */
