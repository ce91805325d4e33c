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
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void on_close(uv_handle_t *h);

void pp__proc_ref(pp__proc_t *proc) { proc->refs++; }

void pp__proc_unref(pp__proc_t *proc) {
  pp_pool_t *pool = proc->pool;

  if (--proc->refs > 0)
    return;
  pp__queue_remove(&proc->stop_node);
  if (proc->req_fd >= 0)
    close(proc->req_fd);
  if (proc->rep_fd >= 0)
    close(proc->rep_fd);
  if (proc->wake_fd >= 0)
    close(proc->wake_fd);
  free(proc->rbuf);
  free(proc->wbuf);
  free(proc);
  pool->live--;
  if (pool->stopping && pool->live == 0)
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

static void log_line(pp__proc_t *proc, int is_err, const char *s, size_t n) {
  pp__slot_t *slot = proc->slot;
  char *tail;

  while (n > 0 && (s[n - 1] == '\r'))
    n--;
  pp__log(proc->pool, "worker %d%s: %.*s", slot->id, is_err ? " [stderr]" : "",
          (int)n, s);
  if (is_err) {
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
 * lines before an exit (a traceback) reach the log and the stderr tail. */
static void drain_output(pp__proc_t *proc, uv_pipe_t *p, unsigned bit) {
  pp__linebuf_t *lb = p == &proc->err ? &proc->errline : &proc->outline;
  uv_os_fd_t fd;
  ssize_t n;

  if ((proc->handles & bit) == 0 || uv_fileno((uv_handle_t *)p, &fd) != 0)
    return;
  for (;;) {
    n = read(fd, lb->buf + lb->len, PP_LINE_MAX - lb->len);
    if (n <= 0)
      break;
    lb->len += (size_t)n;
    lines_flush(proc, lb, p == &proc->err, 0);
  }
  lines_flush(proc, lb, p == &proc->err, 1);
}

/* ---- reading replies on the loop */

int pp__proc_rbuf_reserve(pp__proc_t *proc, size_t need) {
  size_t cap;
  char *p;

  if (proc->rcap - proc->rlen >= need)
    return 0;
  cap = proc->rcap ? proc->rcap : 4096;
  while (cap - proc->rlen < need)
    cap *= 2;
  p = realloc(proc->rbuf, cap);
  if (p == NULL)
    return UV_ENOMEM;
  proc->rbuf = p;
  proc->rcap = cap;
  return 0;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  pp__proc_t *proc = h->data;
  pp_pool_t *pool = proc->pool;
  uint32_t max = pool->cfg->max_frame;
  pp_frame_t f;
  ssize_t n;
  long used;

  (void)events;
  pp__lock(pool);
  if (status < 0) {
    pp__on_proc_read_error(proc, status);
    goto out;
  }
  for (;;) {
    if (pp__proc_rbuf_reserve(proc, 65536) != 0) {
      pp__on_proc_read_error(proc, UV_ENOMEM);
      goto out;
    }
    n = read(proc->rep_fd, proc->rbuf + proc->rlen, proc->rcap - proc->rlen);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      break;
    if (n <= 0) {
      pp__on_proc_read_error(proc, n == 0 ? UV_EOF : uv_translate_sys_error(errno));
      goto out;
    }
    proc->rlen += (size_t)n;
    /* Decode every complete frame; pp__on_frame may stop our reading (a
     * reply ends a loop-face request), so check after each one. */
    while (proc->rpolling && !proc->dead) {
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
    if (!proc->rpolling || proc->dead)
      break;
  }
out:
  pp__unlock(pool);
  pp__run_pending(pool);
}

void pp__proc_read_start(pp__proc_t *proc) {
  if (proc->rpolling || !(proc->handles & PP__H_RPOLL))
    return;
  proc->rpolling = 1;
  uv_poll_start(&proc->rpoll, UV_READABLE, on_readable);
}

void pp__proc_read_stop(pp__proc_t *proc) {
  if (!proc->rpolling)
    return;
  proc->rpolling = 0;
  uv_poll_stop(&proc->rpoll);
}

/* ---- writing */

/* writev that turns a dead reader into EPIPE instead of a SIGPIPE that
 * would kill the embedding program: SIGPIPE is blocked around the call and
 * a pending one consumed, unless the program already ignores it. */
static ssize_t writev_nosig(pp_pool_t *pool, int fd, struct iovec *iov,
                            int n) {
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
    pp__proc_fail(proc, PP_EXIT_PROTOCOL, "request pipe closed");
  pp__unlock(proc->pool);
  pp__run_pending(proc->pool);
}

int pp__proc_send(pp__proc_t *proc, uint8_t type, uint32_t id,
                  const void *payload, size_t len) {
  size_t need = PP_FRAME_HEADER + len;
  size_t cap;
  char *p;

  if (proc->wcap - proc->wlen < need) {
    cap = proc->wcap ? proc->wcap : 256;
    while (cap - proc->wlen < need)
      cap *= 2;
    p = realloc(proc->wbuf, cap);
    if (p == NULL)
      return UV_ENOMEM;
    proc->wbuf = p;
    proc->wcap = cap;
  }
  pp_frame_header(proc->wbuf + proc->wlen, type, 0, id, (uint32_t)len);
  if (len > 0)
    memcpy(proc->wbuf + proc->wlen + PP_FRAME_HEADER, payload, len);
  proc->wlen += need;
  return flush_wbuf(proc);
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
      ms = (int)((deadline_ns - now + 999999) / 1000000);
    }
    r = poll(&p, 1, ms);
    if (r > 0)
      return 0;
    if (r < 0 && errno != EINTR)
      return uv_translate_sys_error(errno);
  }
}

int pp__proc_write_blocking(pp__proc_t *proc, uint8_t type, uint32_t id,
                            const void *payload, size_t len,
                            uint64_t deadline_ns) {
  char hdr[PP_FRAME_HEADER];
  struct iovec iov[2];
  int n = len > 0 ? 2 : 1;
  ssize_t w;
  int r;

  pp_frame_header(hdr, type, 0, id, (uint32_t)len);
  iov[0].iov_base = hdr;
  iov[0].iov_len = sizeof(hdr);
  iov[1].iov_base = (void *)payload;
  iov[1].iov_len = len;
  while (n > 0) {
    w = writev_nosig(proc->pool, proc->req_fd, iov + (2 - n), n);
    if (w < 0 && errno == EAGAIN) {
      r = poll_until(proc->req_fd, POLLOUT, deadline_ns);
      if (r != 0)
        return r;
      continue;
    }
    if (w < 0)
      return PP_ECRASHED;
    while (n > 0 && (size_t)w >= iov[2 - n].iov_len) {
      w -= (ssize_t)iov[2 - n].iov_len;
      n--;
    }
    if (n > 0) {
      iov[2 - n].iov_base = (char *)iov[2 - n].iov_base + w;
      iov[2 - n].iov_len -= (size_t)w;
    }
  }
  return 0;
}

/* ---- stopping */

static void signal_group(pp__proc_t *proc, int sig) {
  /* The pid is ours until its exit callback has run: no reuse race. */
  if (proc->exited || proc->pid <= 0)
    return;
  if (kill(-proc->pid, sig) != 0)
    kill(proc->pid, sig);
}

static void on_timer(uv_timer_t *t) {
  pp__proc_t *proc = t->data;

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
    pp__on_proc_timer(proc);
  }
  pp__unlock(proc->pool);
  pp__run_pending(proc->pool);
}

void pp__proc_arm(pp__proc_t *proc, uint64_t ms) {
  if (proc->handles & PP__H_TIMER) {
    if (ms)
      uv_timer_start(&proc->timer, on_timer, ms, 0);
    else
      uv_timer_stop(&proc->timer);
  }
}

void pp__proc_stop(pp__proc_t *proc, uint64_t grace_ms) {
  if (proc->exited)
    return;
  if (proc->stopping && grace_ms > 0)
    return;
  proc->dead = 1;
  proc->stopping = 1;
  pp__trace(proc->pool, PP_TRACE_KILL, proc->slot->id, proc->generation,
            proc->pid, 0, 0, grace_ms ? SIGTERM : SIGKILL, proc->detail);
  signal_group(proc, grace_ms ? SIGTERM : SIGKILL);
  if (grace_ms && (proc->handles & PP__H_TIMER))
    uv_timer_start(&proc->timer, on_timer, grace_ms, 0);
}

/* ---- exit */

static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal) {
  pp__proc_t *proc = p->data;
  pp_pool_t *pool = proc->pool;
  uint64_t one = 1;

  /* Tests pause here: the process is gone but the pool has not heard. */
  PP_FAULT(pool, "reap");
  pp__lock(pool);
  proc->exited = 1;
  proc->dead = 1;
  proc->exit_status = status;
  proc->term_signal = term_signal;
  drain_output(proc, &proc->out, PP__H_OUT);
  drain_output(proc, &proc->err, PP__H_ERR);
  if (proc->rpolling)
    pp__proc_read_stop(proc);
  close_handle(proc, (uv_handle_t *)&proc->process, PP__H_PROCESS);
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

/* ---- spawn */

static char **build_env(pp__slot_t *slot) {
  pp_config_t *cfg = slot->pool->cfg;
  size_t n = 0, i, k, j;
  char **env;
  char buf[4][96];

  while (environ[n])
    n++;
  env = calloc(n + (size_t)cfg->env_len + 5, sizeof(*env));
  if (env == NULL)
    return NULL;
  snprintf(buf[0], sizeof(buf[0]), "PORTPOOL_PARENT_PID=%d", (int)getpid());
  snprintf(buf[1], sizeof(buf[1]), "PORTPOOL_WORKER_ID=%d", slot->id);
  snprintf(buf[2], sizeof(buf[2]), "PORTPOOL_POOL=%.80s", cfg->name);
  snprintf(buf[3], sizeof(buf[3]), "PORTPOOL_MAX_FRAME=%u", cfg->max_frame);
  k = 0;
  /* Inherited variables, less those the config or we set. */
  for (i = 0; i < n; i++) {
    const char *eq = strchr(environ[i], '=');
    size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
    int skip = strncmp(environ[i], "PORTPOOL_", 9) == 0;
    for (j = 0; !skip && j < (size_t)cfg->env_len; j++)
      skip = strncmp(cfg->env[j], environ[i], klen) == 0 &&
             cfg->env[j][klen] == '=';
    if (!skip)
      env[k++] = environ[i];
  }
  for (j = 0; j < (size_t)cfg->env_len; j++)
    env[k++] = cfg->env[j];
  for (j = 0; j < 4; j++)
    env[k++] = strdup(buf[j]);
  for (j = 1; j <= 4; j++)
    if (env[k - j] == NULL) {
      for (j = 1; j <= 4; j++)
        free(env[k - j]);
      free(env);
      return NULL;
    }
  return env;
}

static void free_env(char **env) {
  size_t n = 0;

  while (env[n])
    n++;
  /* The last four entries are ours. */
  free(env[n - 1]);
  free(env[n - 2]);
  free(env[n - 3]);
  free(env[n - 4]);
  free(env);
}

static void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int pp__proc_spawn(pp__slot_t *slot, uint32_t generation, pp__proc_t **out) {
  pp_pool_t *pool = slot->pool;
  pp_config_t *cfg = pool->cfg;
  uv_process_options_t opts;
  uv_stdio_container_t stdio[5];
  int req[2] = {-1, -1}, rep[2] = {-1, -1};
  char **env = NULL;
  char **args = NULL;
  pp__proc_t *proc;
  int r, i;

  proc = calloc(1, sizeof(*proc));
  if (proc == NULL)
    return UV_ENOMEM;
  proc->pool = pool;
  proc->slot = slot;
  proc->req_fd = proc->rep_fd = proc->wake_fd = -1;
  pp__queue_init(&proc->stop_node);
  proc->generation = generation;
  pool->live++;
  proc->refs = 1; /* ours until spawn succeeds or fails */

  r = UV_ENOMEM;
  args = calloc((size_t)cfg->command_len + 1, sizeof(*args));
  env = build_env(slot);
  if (args == NULL || env == NULL)
    goto fail;
  args[0] = pool->python;
  for (i = 1; i < cfg->command_len; i++)
    args[i] = cfg->command[i];

  if (pipe2(req, O_CLOEXEC) != 0 || pipe2(rep, O_CLOEXEC) != 0) {
    r = uv_translate_sys_error(errno);
    goto fail;
  }
  proc->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (proc->wake_fd < 0) {
    r = uv_translate_sys_error(errno);
    goto fail;
  }
  proc->req_fd = req[1];
  proc->rep_fd = rep[0];
  set_nonblock(proc->req_fd);
  set_nonblock(proc->rep_fd);

  uv_pipe_init(pool->loop, &proc->out, 0);
  uv_pipe_init(pool->loop, &proc->err, 0);
  proc->handles |= PP__H_OUT | PP__H_ERR;
  proc->out.data = proc->err.data = proc;

  memset(&opts, 0, sizeof(opts));
  memset(stdio, 0, sizeof(stdio));
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&proc->out;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&proc->err;
  stdio[3].flags = UV_INHERIT_FD;
  stdio[3].data.fd = req[0];
  stdio[4].flags = UV_INHERIT_FD;
  stdio[4].data.fd = rep[1];
  opts.file = pool->python;
  opts.args = args;
  opts.env = env;
  opts.stdio = stdio;
  opts.stdio_count = 5;
  /* Its own session and process group, so a stop reaches the handler's
   * own subprocesses too. */
  opts.flags = UV_PROCESS_DETACHED;
  opts.exit_cb = on_exit_cb;
  proc->process.data = proc;
  proc->handles |= PP__H_PROCESS;
  r = uv_spawn(pool->loop, &proc->process, &opts);
  close(req[0]);
  close(rep[1]);
  req[0] = rep[1] = -1;
  if (r != 0) {
    snprintf(proc->detail, sizeof(proc->detail), "spawn %s: %s", pool->python,
             uv_strerror(r));
    goto fail;
  }
  proc->pid = proc->process.pid;
  proc->spawn_ns = pp__now_ns();

  uv_poll_init(pool->loop, &proc->rpoll, proc->rep_fd);
  uv_poll_init(pool->loop, &proc->wpoll, proc->req_fd);
  uv_timer_init(pool->loop, &proc->timer);
  proc->rpoll.data = proc->wpoll.data = proc->timer.data = proc;
  proc->handles |= PP__H_RPOLL | PP__H_WPOLL | PP__H_TIMER;
  proc->refs += 6; /* one per handle; the first ref becomes the slot's */
  uv_read_start((uv_stream_t *)&proc->out, on_alloc, on_output);
  uv_read_start((uv_stream_t *)&proc->err, on_alloc, on_output);
  free(args);
  free_env(env);
  *out = proc;
  return 0;

fail:
  if (req[0] >= 0)
    close(req[0]);
  if (rep[1] >= 0)
    close(rep[1]);
  if (proc->req_fd < 0 && req[1] >= 0)
    close(req[1]);
  if (proc->rep_fd < 0 && rep[0] >= 0)
    close(rep[0]);
  free(args);
  if (env)
    free_env(env);
  /* Handles initialised so far still need their one uv_close each; the
   * proc is freed by the last close callback. */
  proc->refs += __builtin_popcount(proc->handles);
  close_handle(proc, (uv_handle_t *)&proc->process, PP__H_PROCESS);
  close_handle(proc, (uv_handle_t *)&proc->out, PP__H_OUT);
  close_handle(proc, (uv_handle_t *)&proc->err, PP__H_ERR);
  pp__proc_unref(proc);
  return r;
}

/* ---- interpreter resolution */

static int find_in_path(const char *name, char *out, size_t len) {
  const char *path = getenv("PATH");
  const char *p, *end;

  if (path == NULL)
    path = "/usr/local/bin:/usr/bin:/bin";
  for (p = path; *p; p = *end ? end + 1 : end) {
    end = strchr(p, ':');
    if (end == NULL)
      end = p + strlen(p);
    snprintf(out, len, "%.*s/%s", (int)(end - p), p, name);
    if (access(out, X_OK) == 0)
      return 0;
  }
  return UV_ENOENT;
}

/* Run a script interpreter once to ask where the real binary is. */
static int ask_python(const char *shim, char *out, size_t len) {
  char *argv[] = {(char *)shim, "-c",
                  "import os,sys;print(os.path.realpath(sys.executable))",
                  NULL};
  posix_spawn_file_actions_t fa;
  int fds[2], status, r = UV_EINVAL;
  pid_t pid;
  ssize_t n;
  size_t got = 0;

  if (pipe2(fds, O_CLOEXEC) != 0)
    return uv_translate_sys_error(errno);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  if (posix_spawn(&pid, shim, &fa, NULL, argv, environ) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    close(fds[0]);
    close(fds[1]);
    return UV_ENOENT;
  }
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  while (got + 1 < len && (n = read(fds[0], out + got, len - got - 1)) != 0) {
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      break;
    got += (size_t)n;
  }
  close(fds[0]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  out[got] = '\0';
  while (got > 0 && (out[got - 1] == '\n' || out[got - 1] == '\r'))
    out[--got] = '\0';
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && got > 0 &&
      access(out, X_OK) == 0)
    r = 0;
  return r;
}

int pp__resolve_python(const char *cmd0, char **out, pp_diag_t *diag) {
  char found[PATH_MAX], real[PATH_MAX], magic[2];
  const char *base;
  int fd, r;

  if (strchr(cmd0, '/') == NULL) {
    if (find_in_path(cmd0, found, sizeof(found)) != 0) {
      pp__diag_set(diag, "worker.command: %s not found on PATH", cmd0);
      return PP_ECONFIG;
    }
  } else {
    snprintf(found, sizeof(found), "%s", cmd0);
  }
  if (realpath(found, real) == NULL || access(real, X_OK) != 0) {
    pp__diag_set(diag, "worker.command: %s is not an executable", found);
    return PP_ECONFIG;
  }
  base = strrchr(cmd0, '/');
  base = base ? base + 1 : cmd0;
  fd = open(real, O_RDONLY | O_CLOEXEC);
  r = fd >= 0 ? (int)read(fd, magic, 2) : -1;
  if (fd >= 0)
    close(fd);
  /* A script called python* is a shim (pyenv, asdf): exec'ing it would cost
   * every start ~75 ms, so ask it once for the binary it runs. */
  if (r == 2 && magic[0] == '#' && magic[1] == '!' &&
      strncmp(base, "python", 6) == 0) {
    if (ask_python(real, found, sizeof(found)) == 0)
      snprintf(real, sizeof(real), "%s", found);
  }
  *out = strdup(real);
  return *out ? 0 : UV_ENOMEM;
}

static int python_prepare(pp_pool_t *pool, pp_diag_t *diag) {
  return pp__resolve_python(pool->cfg->command[0], &pool->python, diag);
}

const pp__adapter_t pp__adapter_python = {"python", python_prepare,
                                          pp__proc_spawn};
