/* floor.h -- the floor the pool is measured against: a tiny C driver that
 * spawns the same Python worker module the pool runs (fds 3/4 as pipes,
 * stdin /dev/null), waits for its HELLO, then does blocking write + read
 * round trips with the same framing (bridge/frame.h).  No libuv, no locks,
 * no threads of its own: the physical cost of a pipe round trip to a Python
 * frame loop. */
#ifndef PPBENCH_FLOOR_H
#define PPBENCH_FLOOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct floor_worker {
  pid_t pid;
  int req_fd; /* we write requests: the worker's fd 3 */
  int rep_fd; /* we read replies: the worker's fd 4 */
  char *rbuf; /* reply bytes not yet consumed */
  size_t rlen, rcap;
  char *wbuf; /* frames to write (pipelined mode) */
  size_t wcap;
  uint32_t next_id;
  double ready_s; /* spawn until HELLO, seconds */
  /* Variants of floor_call that add, one at a time, what the pool's call
   * path does beyond the floor (the "anatomy" scenario): */
  int flags;   /* FLOOR_* */
  int wake_fd; /* eventfd polled beside rep_fd with FLOOR_POLL */
} floor_worker_t;

/* Block SIGPIPE around each write and restore it (2 rt_sigprocmask). */
#define FLOOR_SIGMASK 1
/* Non-blocking reply pipe: read -> EAGAIN -> poll(rep_fd, eventfd) ->
 * read, as pool/blocking.c's read_frame does. */
#define FLOOR_POLL 2

/* poll(rep_fd, eventfd) first, then read: no speculative read. */
#define FLOOR_POLLFIRST 4
/* With FLOOR_POLLFIRST: poll(.., 0) in a loop for up to 50 us before the
 * blocking poll, as the pool's callers do (worker.reply_spin_us). */
#define FLOOR_SPIN 16
/* Set by floor_spawn_socket: one AF_UNIX socketpair is the worker's fd 3
 * and fd 4; writes are sendmsg(MSG_NOSIGNAL) (no SIGPIPE, so no masking),
 * reads a blocking recv (a deadline would be SO_RCVTIMEO). */
#define FLOOR_SOCKET 8

/* floor_spawn over a socketpair instead of two pipes. */
int floor_spawn_socket(floor_worker_t *w, const char *python,
                       const char *worker_py, int raw, const char *handler,
                       char *const *extra_env, double timeout_s);

/* Switch the variant (sets or clears O_NONBLOCK on the reply pipe). */
int floor_set_flags(floor_worker_t *w, int flags);

/* Spawn `python worker_py [--raw] handler` with fds 3/4 as pipes and wait
 * up to timeout_s for its HELLO.  extra_env: NULL-terminated "K=V" strings
 * added to the environment (may be NULL).  Returns 0 or -1 (message on
 * stderr). */
int floor_spawn(floor_worker_t *w, const char *python, const char *worker_py,
                int raw, const char *handler, char *const *extra_env,
                double timeout_s);

/* One blocking round trip: one writev of header + payload, then reads until
 * the whole reply frame is in.  *reply points into the worker's buffer
 * (valid until the next call).  Returns the reply frame type (3 REPLY, 4
 * ERROR) or -1. */
int floor_call(floor_worker_t *w, const void *payload, size_t len,
               const char **reply, size_t *reply_len);

/* Pipelined: keep `depth` requests in flight on this worker's pipe (each
 * batch of replies read is answered with one write of as many new
 * requests) until *stop becomes nonzero.  Calls whose reply arrived before
 * *stop_ns (set before *stop) are counted in *calls; when lat is non-NULL
 * each one's round trip (ns) is appended to it.  depth * (len + 12) must fit
 * in a pipe (64 KiB), else depth is lowered.  Returns 0 or -1. */
struct samples;
int floor_pipeline(floor_worker_t *w, const void *payload, size_t len,
                   int depth, volatile int *stop, volatile uint64_t *stop_ns,
                   uint64_t *calls, struct samples *lat);

/* Close the pipes (the worker exits on EOF) and reap it. */
void floor_close(floor_worker_t *w);

uint64_t bench_now_ns(void);

/* A growable array of latency samples in nanoseconds. */
typedef struct samples {
  uint64_t *v;
  size_t n, cap;
} samples_t;

void samples_add(samples_t *s, uint64_t ns);
void samples_merge(samples_t *into, const samples_t *from);
void samples_free(samples_t *s);
/* Sorts in place; q in (0, 1]; 0 when empty. */
uint64_t samples_quantile(samples_t *s, double q);

#endif
