/* proc.c -- owns one worker process of the python adapter: its spawn, its
 * pipes (requests on fd 3, replies on fd 4, stdout and stderr logged line
 * by line), frame writes, the stop sequence and the reference count that
 * frees it.  It does not decide what a frame or an exit means: pool.c does. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

extern char **environ;

static void on_close(uv_handle_t *h);

void pp__proc_ref(pp__proc_t *proc) { proc->refs++; }

void pp__proc_unref(pp__proc_t *proc) {
  pp_pool_t *pool = proc->pool;

  if (--proc->refs > 0)
    return;
  free(proc->outline.buf);
  free(proc->errline.buf);
  pp__queue_remove(&proc->stop_node);
  if (proc->kind == PP__PROC_ZYGOTE) {
    if (proc->u.zygote.pidfd >= 0)
      close(proc->u.zygote.pidfd);
    pp__queue_remove(&proc->u.zygote.znode);
    if (proc->u.zygote.zygote)
      pp__zygote_worker_gone(proc);
  }
  if (proc->req_fd >= 0)
    close(proc->req_fd);
  if (proc->rep_fd >= 0)
    close(proc->rep_fd);
  if (proc->wake_fd >= 0)
    close(proc->wake_fd);
  if (proc->stat_fd >= 0)
    close(proc->stat_fd);
  free(proc->rbuf);
  free(proc->wbuf);
  free(proc->pbuf);
  free(proc->psend);
  free(proc);
  pool->live--;
  if (pool->stopping && pool->live <= pool->nzygotes)
    pp__wake(pool);
}

static void close_handle(pp__proc_t *proc, uv_handle_t *h, unsigned bit) {
  if ((proc->handles & bit) == 0)
    return;
  proc->handles &= ~bit;
  h->data = proc;
  uv_close(h, on_close);
}

static void on_close(uv_handle_t *h) {
  pp__proc_t *proc = h->data;
  pp_pool_t *pool = proc->pool;

  pp__lock(pool);
  pp__proc_unref(proc);
  pp__unlock(pool);
}

/* ---- logging of stdout and stderr */

/* A stderr line that may belong to the slot's slow-request dump (lock
 * held): kept while the dump lasts, whatever does not fit dropped. */
static void slow_capture(pp__proc_t *proc, const char *s, size_t n) {
  pp__slot_t *slot = proc->slot;
  size_t room;

  if (slot->slow_lines <= 0 || slot->slow_gen != proc->generation)
    return;
  if (pp__now_ns() > slot->slow_until_ns) {
    slot->slow_lines = 0;
    return;
  }
  slot->slow_lines--;
  room = PP_SLOW_STACK_BYTES - 1 - slot->slow_len;
  if (n + 1 > room) {
    slot->slow_lines = 0; /* full: the dump is cut after a whole line */
    return;
  }
  memcpy(slot->slow_stack + slot->slow_len, s, n);
  slot->slow_len += n;
  slot->slow_stack[slot->slow_len++] = '\n';
  slot->slow_stack[slot->slow_len] = '\0';
}

static void log_line(pp__proc_t *proc, int is_err, const char *s, size_t n) {
  pp__slot_t *slot = proc->slot;
  char *tail;

  while (n > 0 && (s[n - 1] == '\r'))
    n--;
  /* Kept before it is logged: a log callback that saw the line finds it
   * in status. */
  if (is_err)
    slow_capture(proc, s, n);
  pp__log(proc->pool, "worker %d%s: %.*s", slot->id, is_err ? " [stderr]" : "",
          (int)n, s);
  if (is_err) {
    if (slot->stderr_tail == NULL &&
        (slot->stderr_tail = calloc(PP_STDERR_TAIL, 160)) == NULL)
      return;
    tail = slot->stderr_tail[slot->stderr_next % PP_STDERR_TAIL];
    snprintf(tail, sizeof(slot->stderr_tail[0]), "%.*s", (int)n, s);
    slot->stderr_next++;
  }
}

/* Split what arrived in lb into lines; keep the unfinished rest.  A line
 * that fills the buffer is logged as it is, so memory stays bounded. */
static void lines_flush(pp__proc_t *proc, pp__linebuf_t *lb, int is_err,
                        int final) {
  size_t start = 0;
  char *nl;

  while (start < lb->len &&
         (nl = memchr(lb->buf + start, '\n', lb->len - start)) != NULL) {
    log_line(proc, is_err, lb->buf + start, (size_t)(nl - lb->buf) - start);
    start = (size_t)(nl - lb->buf) + 1;
  }
  if (start < lb->len && (final || (start == 0 && lb->len == PP_LINE_MAX))) {
    log_line(proc, is_err, lb->buf + start, lb->len - start);
    start = lb->len;
  }
  memmove(lb->buf, lb->buf + start, lb->len - start);
  lb->len -= start;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  pp__proc_t *proc = h->data;
  pp__linebuf_t *lb =
      h == (uv_handle_t *)&proc->out ? &proc->outline : &proc->errline;

  (void)hint;
  if (lb->buf == NULL && (lb->buf = malloc(PP_LINE_MAX)) == NULL) {
    buf->base = NULL;
    buf->len = 0; /* libuv reports UV_ENOBUFS; the stream is closed */
    return;
  }
  buf->base = lb->buf + lb->len;
  buf->len = PP_LINE_MAX - lb->len;
}

static void on_output(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  pp__proc_t *proc = s->data;
  int is_err = s == (uv_stream_t *)&proc->err;
  pp__linebuf_t *lb = is_err ? &proc->errline : &proc->outline;

  (void)buf;
  pp__lock(proc->pool);
  if (n > 0) {
    lb->len += (size_t)n;
    lines_flush(proc, lb, is_err, 0);
  } else if (n < 0) {
    lines_flush(proc, lb, is_err, 1);
    close_handle(proc, (uv_handle_t *)s, is_err ? PP__H_ERR : PP__H_OUT);
  }
  pp__unlock(proc->pool);
}

/* Read what is left in a stdout/stderr pipe without blocking, so the last
 * lines before an exit (a traceback) reach the log and the stderr tail.
 * At most PP_DRAIN_MAX bytes: a child that left the worker's process group
 * (setsid) may hold the pipe and write without end; the rest is dropped
 * when the pipe closes.  Loop thread, lock NOT held: it is taken only to
 * log the lines, never across a read (only the loop thread touches the
 * line buffers). */
#define PP_DRAIN_MAX (16 * PP_LINE_MAX)
static void drain_output(pp__proc_t *proc, uv_pipe_t *p, unsigned bit) {
  pp__linebuf_t *lb = p == &proc->err ? &proc->errline : &proc->outline;
  pp_pool_t *pool = proc->pool;
  size_t total = 0;
  uv_os_fd_t fd;
  ssize_t n;

  if ((proc->handles & bit) == 0 || uv_fileno((uv_handle_t *)p, &fd) != 0)
    return;
  if (lb->buf == NULL && (lb->buf = malloc(PP_LINE_MAX)) == NULL)
    return;
  while (total < PP_DRAIN_MAX) {
    n = read(fd, lb->buf + lb->len, PP_LINE_MAX - lb->len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    total += (size_t)n;
    lb->len += (size_t)n;
    pp__lock(pool);
    lines_flush(proc, lb, p == &proc->err, 0);
    pp__unlock(pool);
  }
  pp__lock(pool);
  lines_flush(proc, lb, p == &proc->err, 1);
  pp__unlock(pool);
}

/* ---- reading replies on the loop */

/* Room to ask for from the next read: the rest of the frame being read
 * (so a large reply is read in one go), at least 512 bytes; no more, so
 * an idle worker's buffer stays small. */
size_t pp__proc_rbuf_want(const pp__proc_t *proc) {
  long need = pp_frame_need(proc->rbuf, proc->rlen, proc->pool->cfg->max_frame);
  size_t want =
      need > 0 && (size_t)need > proc->rlen ? (size_t)need - proc->rlen : 0;

  return want > 512 ? want : 512;
}

int pp__proc_rbuf_reserve(pp__proc_t *proc, size_t need) {
  size_t cap;
  char *p;

  if (proc->rcap - proc->rlen >= need)
    return 0;
  cap = proc->rcap ? proc->rcap : 512;
  while (cap - proc->rlen < need)
    cap *= 2;
  p = realloc(proc->rbuf, cap);
  if (p == NULL)
    return UV_ENOMEM;
  proc->rbuf = p;
  proc->rcap = cap;
  return 0;
}

static void on_readable(uv_poll_t *h, int status, int events);

/* The reply pipe's poll, on or off. Each uv_poll_start or uv_poll_stop
 * costs an epoll_ctl, so pp__proc_read_stop leaves it on (a worker lent on
 * the loop's faces is polled again for its next request at once), and it
 * goes off only when it fires with nobody reading (on_readable) or while
 * a stream's chunk is held. */
static void rpoll_on(pp__proc_t *proc) {
  if (!proc->rpoll_on) {
    proc->rpoll_on = 1;
    uv_poll_start(&proc->rpoll, UV_READABLE, on_readable);
  }
}

static void rpoll_off(pp__proc_t *proc) {
  if (proc->rpoll_on) {
    proc->rpoll_on = 0;
    uv_poll_stop(&proc->rpoll);
  }
}

/* Read and handle every frame the reply pipe holds now (loop thread, lock
 * held). */
static void read_frames(pp__proc_t *proc) {
  pp_pool_t *pool = proc->pool;
  uint32_t max = pool->cfg->max_frame;
  pp_frame_t f;
  ssize_t n;
  long used;

  PP_ASSERT_LOOP(proc->pool);
  PP_ASSERT_LOCKED(proc->pool);

  for (;;) {
    /* Decode every complete frame; pp__on_frame may stop our reading (a
     * reply ends a loop-face request) or hold it (a stream's chunk), so
     * check after each one. */
    while (proc->rpolling && !proc->dead && !proc->held) {
      used = pp_frame_decode(proc->rbuf, proc->rlen, max, &f);
      if (used == 0)
        break;
      if (used < 0) {
        pp__proc_fail(proc, PP_EXIT_PROTOCOL,
                      used == PP_FRAME_ETOOBIG ? "frame over max_frame"
                      : used == PP_FRAME_ETYPE ? "unknown frame type"
                                               : "malformed frame header");
        goto out;
      }
      pp__on_frame(proc, &f);
      /* The frame's bytes are consumed after the handler copied what it
       * needed. */
      memmove(proc->rbuf, proc->rbuf + used, proc->rlen - (size_t)used);
      proc->rlen -= (size_t)used;
    }
    if (!proc->rpolling || proc->dead || proc->held)
      break;
    if (pp__proc_rbuf_reserve(proc, pp__proc_rbuf_want(proc)) != 0) {
      pp__on_proc_read_error(proc, UV_ENOMEM);
      goto out;
    }
    n = read(proc->rep_fd, proc->rbuf + proc->rlen, proc->rcap - proc->rlen);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      break;
    if (n <= 0) {
      pp__on_proc_read_error(proc,
                             n == 0 ? UV_EOF : uv_translate_sys_error(errno));
      goto out;
    }
    proc->rlen += (size_t)n;
  }
  /* Held: the poll waits for the chunks' delivery (pp__proc_read_pending),
   * or it would fire again at once for the bytes left unread. */
  if (proc->held && proc->rpolling && !proc->dead)
    rpoll_off(proc);
out:
  return;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  pp__proc_t *proc = h->data;
  pp_pool_t *pool = proc->pool;

  (void)events;
  pp__lock(pool);
  if (!proc->rpolling) /* left on by pp__proc_read_stop: nobody reads */
    rpoll_off(proc);
  else if (status < 0)
    pp__on_proc_read_error(proc, status);
  else
    read_frames(proc);
  pp__unlock(pool);
  pp__run_pending(pool);
}

void pp__proc_read_start(pp__proc_t *proc) {
  PP_ASSERT_LOOP(proc->pool);
  if (proc->rpolling || !(proc->handles & PP__H_RPOLL))
    return;
  proc->rpolling = 1;
  if (!proc->held) /* else pp__proc_read_pending starts it */
    rpoll_on(proc);
}

void pp__proc_read_pending(pp__proc_t *proc) {
  PP_ASSERT_LOOP(proc->pool);
  PP_ASSERT_LOCKED(proc->pool);
  if (!proc->rpolling || proc->dead || proc->held)
    return;
  rpoll_on(proc);
  read_frames(proc);
}

void pp__proc_read_stop(pp__proc_t *proc) {
  PP_ASSERT_LOOP(proc->pool);
  if (!proc->rpolling)
    return;
  proc->rpolling = 0; /* the poll stays on: see rpoll_on */
}

/* ---- writing */

/* writev that turns a dead reader into EPIPE instead of a SIGPIPE that
 * would kill the embedding program: SIGPIPE is blocked around the call and
 * a pending one consumed, unless the program already ignores it. */
static ssize_t writev_nosig(pp_pool_t *pool, int fd, struct iovec *iov, int n) {
  sigset_t set, old, pend;
  struct timespec zero = {0, 0};
  ssize_t r;
  int e;

  if (pool->sigpipe_ignored) {
    do
      r = writev(fd, iov, n);
    while (r < 0 && errno == EINTR);
    return r;
  }
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  do
    r = writev(fd, iov, n);
  while (r < 0 && errno == EINTR);
  e = errno;
  if (r < 0 && e == EPIPE && !sigismember(&old, SIGPIPE)) {
    sigpending(&pend);
    if (sigismember(&pend, SIGPIPE))
      sigtimedwait(&set, NULL, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = e;
  return r;
}

static void on_writable(uv_poll_t *h, int status, int events);

static int flush_wbuf(pp__proc_t *proc) {
  struct iovec iov;
  ssize_t n;

  while (proc->woff < proc->wlen) {
    iov.iov_base = proc->wbuf + proc->woff;
    iov.iov_len = proc->wlen - proc->woff;
    n = writev_nosig(proc->pool, proc->req_fd, &iov, 1);
    if (n < 0 && errno == EAGAIN)
      break;
    if (n < 0)
      return PP_ECRASHED;
    proc->woff += (size_t)n;
  }
  if (proc->woff == proc->wlen) {
    proc->woff = proc->wlen = 0;
    if (proc->wpolling) {
      proc->wpolling = 0;
      uv_poll_stop(&proc->wpoll);
    }
  } else if (!proc->wpolling && (proc->handles & PP__H_WPOLL)) {
    proc->wpolling = 1;
    uv_poll_start(&proc->wpoll, UV_WRITABLE, on_writable);
  }
  return 0;
}

static void on_writable(uv_poll_t *h, int status, int events) {
  pp__proc_t *proc = h->data;

  (void)events;
  pp__lock(proc->pool);
  if (status < 0 || flush_wbuf(proc) != 0)
    pp__proc_fail(proc, PP_EXIT_NONE, "request pipe closed");
  pp__unlock(proc->pool);
  pp__run_pending(proc->pool);
}

int pp__proc_send(pp__proc_t *proc, uint8_t type, uint32_t id,
                  const void *payload, size_t len) {
  int r = pp__proc_queue(proc, type, id, payload, len);

  PP_ASSERT_LOOP(proc->pool);
  PP_ASSERT_LOCKED(proc->pool);

  return r != 0 ? r : flush_wbuf(proc);
}

int pp__proc_flush(pp__proc_t *proc) { return flush_wbuf(proc); }

/* Room for need more bytes in wbuf: 0 or UV_ENOMEM. */
static int wbuf_reserve(pp__proc_t *proc, size_t need) {
  size_t cap;
  char *p;

  if (proc->wcap - proc->wlen >= need)
    return 0;
  cap = proc->wcap ? proc->wcap : 256;
  while (cap - proc->wlen < need)
    cap *= 2;
  p = realloc(proc->wbuf, cap);
  if (p == NULL)
    return UV_ENOMEM;
  proc->wbuf = p;
  proc->wcap = cap;
  return 0;
}

int pp__proc_queue(pp__proc_t *proc, uint8_t type, uint32_t id,
                   const void *payload, size_t len) {
  if (wbuf_reserve(proc, PP_FRAME_HEADER + len) != 0)
    return UV_ENOMEM;
  pp_frame_header(proc->wbuf + proc->wlen, type, 0, id, (uint32_t)len);
  if (len > 0)
    memcpy(proc->wbuf + proc->wlen + PP_FRAME_HEADER, payload, len);
  proc->wlen += PP_FRAME_HEADER + len;
  return 0;
}

/* The deadline proc's worker is told (protocol 2), else 0. */
static uint64_t told(const pp__proc_t *proc, uint64_t deadline_ns) {
  return proc->proto >= 2 ? deadline_ns : 0;
}

int pp__proc_queue_request(pp__proc_t *proc, uint32_t id, const void *payload,
                           size_t len, uint64_t deadline_ns, const char *cmd,
                           int stream) {
  size_t n;

  if (wbuf_reserve(proc, PP_FRAME_REQUEST_HEADER + len) != 0)
    return UV_ENOMEM;
  n = pp_frame_request_header(proc->wbuf + proc->wlen, id, (uint32_t)len,
                              told(proc, deadline_ns), cmd,
                              stream && proc->proto >= 2);
  if (len > 0)
    memcpy(proc->wbuf + proc->wlen + n, payload, len);
  proc->wlen += n + len;
  return 0;
}

static int poll_until(int fd, short events, uint64_t deadline_ns) {
  struct pollfd p = {.fd = fd, .events = events};
  uint64_t now;
  int ms, r;

  for (;;) {
    ms = -1;
    if (deadline_ns) {
      now = pp__now_ns();
      if (now >= deadline_ns)
        return PP_ETIMEDOUT;
      ms = pp__poll_ms(deadline_ns, now);
    }
    r = poll(&p, 1, ms);
    if (r > 0)
      return 0;
    if (r < 0 && errno != EINTR)
      return uv_translate_sys_error(errno);
  }
}

/* Write every byte of iov[0..n), blocking with poll on EAGAIN; once: not
 * before the first byte, UV_EAGAIN instead (nothing written). */
static int write_iov(pp__proc_t *proc, struct iovec *iov, int n,
                     uint64_t deadline_ns, int once) {
  ssize_t w;
  int r;

  while (n > 0) {
    w = writev_nosig(proc->pool, proc->req_fd, iov, n);
    if (w < 0 && errno == EAGAIN && once)
      return UV_EAGAIN;
    if (w < 0 && errno == EAGAIN) {
      r = poll_until(proc->req_fd, POLLOUT, deadline_ns);
      if (r != 0)
        return r;
      continue;
    }
    if (w < 0)
      return PP_ECRASHED;
    once = 0;
    while (n > 0 && (size_t)w >= iov->iov_len) {
      w -= (ssize_t)iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *)iov->iov_base + w;
      iov->iov_len -= (size_t)w;
    }
  }
  return 0;
}

int pp__proc_write_request(pp__proc_t *proc, uint32_t id, const void *payload,
                           size_t len, uint64_t deadline_ns, const char *cmd,
                           int stream, int once) {
  char hdr[PP_FRAME_REQUEST_HEADER];
  struct iovec iov[2];

  iov[0].iov_base = hdr;
  iov[0].iov_len =
      pp_frame_request_header(hdr, id, (uint32_t)len, told(proc, deadline_ns),
                              cmd, stream && proc->proto >= 2);
  iov[1].iov_base = (void *)payload;
  iov[1].iov_len = len;
  /* At most PIPE_BUF bytes go into a pipe whole or not at all (a custom
   * adapter's socket may take part: the rest is written as any request's). */
  if (once && iov[0].iov_len + len > PIPE_BUF)
    return UV_EAGAIN;
  return write_iov(proc, iov, len > 0 ? 2 : 1, deadline_ns, once);
}

ssize_t pp__proc_write_once(pp__proc_t *proc, const char *p, size_t len) {
  struct iovec iov = {.iov_base = (void *)p, .iov_len = len};

  return writev_nosig(proc->pool, proc->req_fd, &iov, 1);
}

/* ---- stopping */

static void signal_group(pp__proc_t *proc, int sig) {
  /* The pid is ours until its exit callback has run: no reuse race. */
  if (proc->exited)
    return;
  if (proc->kind == PP__PROC_ZYGOTE && pp__zygote_signal(proc, sig))
    return;
  if (proc->pid <= 0)
    return;
  if (proc->kind == PP__PROC_CUSTOM) {
    proc->pool->custom.signal(proc->u.custom.adapter_state, sig);
    return;
  }
  if (kill(-proc->pid, sig) != 0)
    kill(proc->pid, sig);
}

int pp__proc_signal(pp__proc_t *proc, int sig) {
  PP_ASSERT_LOOP(proc->pool);

  /* The pid is ours until its exit callback has run: no reuse race. */
  if (proc->exited || proc->pid <= 0)
    return UV_ESRCH;
  if (proc->kind == PP__PROC_CUSTOM)
    return UV_ENOTSUP;
  if (proc->kind == PP__PROC_ZYGOTE)
    return pp__zygote_signal_one(proc, sig);
  return kill(proc->pid, sig) == 0 ? 0 : -errno;
}

void pp__proc_timer_cb(uv_timer_t *t) {
  pp__proc_t *proc = t->data;

  /* A zygote worker's exit may be waiting for this timer. */
  if (proc->kind == PP__PROC_ZYGOTE && pp__zygote_timer(proc))
    return;
  /* Tests pause here: the deadline passed, the timer has not acted. */
  PP_FAULT(proc->pool, "timer");
  pp__lock(proc->pool);
  if (proc->cancel_sent && !proc->stopping) {
    proc->cancel_sent = 0;
    pp__proc_fail(proc, PP_EXIT_TIMEOUT,
                  "no answer within cancel_grace after CANCEL");
  } else if (proc->stopping) {
    pp__trace(proc->pool, PP_TRACE_KILL, proc->slot->id, proc->generation,
              proc->pid, 0, 0, SIGKILL, "kill_grace passed");
    signal_group(proc, SIGKILL);
  } else {
    /* A reply that arrived in time but was not read yet counts: after a
     * pause (SIGSTOP, a slow VM) the loop runs its timers before it polls
     * for I/O. */
    int eof = proc->rep_eof;
    if (proc->rpolling && !proc->dead)
      read_frames(proc);
    if (!proc->dead && proc->rep_eof == eof)
      pp__on_proc_timer(proc);
  }
  pp__unlock(proc->pool);
  pp__run_pending(proc->pool);
}

void pp__proc_arm(pp__proc_t *proc, uint64_t ms) {
  PP_ASSERT_LOOP(proc->pool);
  if (proc->handles & PP__H_TIMER) {
    if (ms)
      uv_timer_start(&proc->timer, pp__proc_timer_cb, ms, 0);
    else
      uv_timer_stop(&proc->timer);
  }
}

void pp__proc_stop(pp__proc_t *proc, uint64_t grace_ms) {
  PP_ASSERT_LOOP(proc->pool);
  PP_ASSERT_LOCKED(proc->pool);
  if (proc->exited)
    return;
  if (proc->stopping && grace_ms > 0)
    return;
  /* Killed for its timeout: first where it was stuck (SIGUSR1 comes
   * before SIGTERM, the lower number being delivered first). */
  if (proc->kill_reason == PP_EXIT_TIMEOUT && grace_ms > 0 &&
      proc->req_start_ns != 0 && proc->kind != PP__PROC_CUSTOM)
    pp__stack_dump(proc, (pp__now_ns() - proc->req_start_ns) / 1000000, 1);
  proc->dead = 1;
  proc->stopping = 1;
  pp__trace(proc->pool, PP_TRACE_KILL, proc->slot->id, proc->generation,
            proc->pid, 0, 0, grace_ms ? SIGTERM : SIGKILL, proc->detail);
  signal_group(proc, grace_ms ? SIGTERM : SIGKILL);
  if (grace_ms && (proc->handles & PP__H_TIMER))
    uv_timer_start(&proc->timer, pp__proc_timer_cb, grace_ms, 0);
}

/* ---- exit */

void pp__proc_exited(pp__proc_t *proc, int64_t status, int term_signal) {
  pp_pool_t *pool = proc->pool;
  uint64_t one = 1;

  /* Tests pause here: the process is gone but the pool has not heard. */
  PP_FAULT(pool, "reap");
  pp__lock(pool);
  proc->exited = 1;
  proc->dead = 1;
  proc->exit_status = status;
  proc->term_signal = term_signal;
  /* Whatever the worker started dies with it: it led its own process
   * group, and a pid cannot be reused while it still names a group with
   * members, so this reaches only what it left behind. */
  if (proc->kind != PP__PROC_CUSTOM && proc->pid > 0)
    kill(-proc->pid, SIGKILL);
  pp__unlock(pool);
  drain_output(proc, &proc->out, PP__H_OUT);
  drain_output(proc, &proc->err, PP__H_ERR);
  pp__lock(pool);
  if (proc->rpolling)
    pp__proc_read_stop(proc);
  close_handle(proc, (uv_handle_t *)&proc->u.spawned.process, PP__H_PROCESS);
  close_handle(proc, (uv_handle_t *)&proc->u.custom.exit_async, PP__H_ASYNC);
  close_handle(proc, (uv_handle_t *)&proc->u.zygote.pidpoll, PP__H_PIDFD);
  close_handle(proc, (uv_handle_t *)&proc->out, PP__H_OUT);
  close_handle(proc, (uv_handle_t *)&proc->err, PP__H_ERR);
  close_handle(proc, (uv_handle_t *)&proc->rpoll, PP__H_RPOLL);
  close_handle(proc, (uv_handle_t *)&proc->wpoll, PP__H_WPOLL);
  close_handle(proc, (uv_handle_t *)&proc->timer, PP__H_TIMER);
  pp__on_proc_exit(proc);
  /* Wake a thread blocked on this worker's reply, now that the exit is
   * classified. */
  if (write(proc->wake_fd, &one, sizeof(one)) < 0) {
    /* An eventfd write only fails on overflow, which cannot happen here. */
  }
  pp__unlock(pool);
  pp__run_pending(pool);
}

/* ---- making a worker: the parts every adapter shares */

pp__proc_t *pp__proc_new(pp__slot_t *slot, uint32_t generation,
                         pp__proc_kind_t kind) {
  pp_pool_t *pool = slot->pool;
  pp__proc_t *proc = calloc(1, sizeof(*proc));

  if (proc == NULL)
    return NULL;
  proc->pool = pool;
  proc->slot = slot;
  proc->kind = kind;
  proc->req_fd = proc->rep_fd = proc->wake_fd = proc->call_cancel_fd = -1;
  proc->stat_fd = -1;
  pp__queue_init(&proc->stop_node);
  if (kind == PP__PROC_ZYGOTE) {
    proc->u.zygote.pidfd = -1;
    pp__queue_init(&proc->u.zygote.znode);
  }
  proc->generation = generation;
  pool->live++;
  proc->refs = 1; /* ours until the start succeeds or fails */
  return proc;
}

void pp__proc_set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int pp__proc_pipes(pp__proc_t *proc, int child[2]) {
  int req[2], rep[2];

  child[0] = child[1] = -1;
  if (pipe2(req, O_CLOEXEC) != 0)
    return uv_translate_sys_error(errno);
  if (pipe2(rep, O_CLOEXEC) != 0) {
    close(req[0]);
    close(req[1]);
    return uv_translate_sys_error(errno);
  }
  proc->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (proc->wake_fd < 0) {
    close(req[0]);
    close(req[1]);
    close(rep[0]);
    close(rep[1]);
    return uv_translate_sys_error(errno);
  }
  proc->req_fd = req[1];
  proc->rep_fd = rep[0];
  pp__proc_set_nonblock(proc->req_fd);
  pp__proc_set_nonblock(proc->rep_fd);
  child[0] = req[0];
  child[1] = rep[1];
  return 0;
}

void pp__proc_output_init(pp__proc_t *proc) {
  uv_pipe_init(proc->pool->loop, &proc->out, 0);
  uv_pipe_init(proc->pool->loop, &proc->err, 0);
  proc->handles |= PP__H_OUT | PP__H_ERR;
  proc->refs += 2;
  proc->out.data = proc->err.data = proc;
}

void pp__proc_timer_init(pp__proc_t *proc) {
  if (proc->handles & PP__H_TIMER)
    return;
  uv_timer_init(proc->pool->loop, &proc->timer);
  proc->timer.data = proc;
  proc->handles |= PP__H_TIMER;
  proc->refs++;
}

void pp__proc_started(pp__proc_t *proc, int pid) {
  pp_pool_t *pool = proc->pool;

  proc->pid = pid;
  proc->spawn_ns = pp__now_ns();
  uv_poll_init(pool->loop, &proc->rpoll, proc->rep_fd);
  uv_poll_init(pool->loop, &proc->wpoll, proc->req_fd);
  pp__proc_timer_init(proc);
  proc->rpoll.data = proc->wpoll.data = proc;
  /* Each handle holds a reference from its init to its close callback;
   * the first reference becomes the slot's. */
  proc->handles |= PP__H_RPOLL | PP__H_WPOLL;
  proc->refs += 2;
  if (proc->handles & PP__H_OUT) {
    uv_read_start((uv_stream_t *)&proc->out, on_alloc, on_output);
    uv_read_start((uv_stream_t *)&proc->err, on_alloc, on_output);
  }
}

void pp__proc_abort(pp__proc_t *proc) {
  /* Handles initialised so far still need their one uv_close each; the
   * proc is freed by the last close callback. */
  close_handle(proc, (uv_handle_t *)&proc->u.spawned.process, PP__H_PROCESS);
  close_handle(proc, (uv_handle_t *)&proc->u.custom.exit_async, PP__H_ASYNC);
  close_handle(proc, (uv_handle_t *)&proc->timer, PP__H_TIMER);
  close_handle(proc, (uv_handle_t *)&proc->out, PP__H_OUT);
  close_handle(proc, (uv_handle_t *)&proc->err, PP__H_ERR);
  pp__proc_unref(proc);
}
