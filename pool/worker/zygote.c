/* zygote.c -- owns worker.start: zygote.  One interpreter per pool imports
 * the handler module once (bridge/python/portpool_zygote.py) and forks a
 * worker for each request the pool sends on a SOCK_SEQPACKET socket; the
 * worker's four pipe ends come back with SCM_RIGHTS.  The pool watches
 * each worker's exit through a pidfd (it is the zygote's child, not ours)
 * and classifies it with the wait status the zygote reports.  Restarts and
 * recycles fork from the zygote too; if the zygote dies, the next fork
 * starts a new one. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct pp__zygote {
  pp_pool_t *pool;
  pp__queue_t node; /* in pool->zygotes */
  int workers;      /* forked (or being forked) and not yet freed */
  int retired;      /* replaced (reload): stops once workers is 0 */
  uv_process_t process;
  uv_poll_t poll;
  int fd;    /* our end of the socket, -1 when closed */
  int open;  /* handles not yet closed */
  int alive; /* the process has not exited */
  int stopping;
  /* Fork requests the socket had no room for yet (ZREQ bytes each, in
   * order): its buffer holds a few hundred, and a pool may ask for more
   * at once; they go as the zygote reads (on_socket, UV_WRITABLE). */
  unsigned char *pend;
  size_t plen, pcap;
};

#define ZREQ 9 /* 'F' + slot + generation */

int pp__pidfd_signal(int pidfd, int sig) {
  return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* A zygote is freed once its handles are closed and no worker it forked
 * is left (lock held; any thread). */
static void zygote_maybe_free(pp__zygote_t *z) {
  pp_pool_t *pool = z->pool;

  if (z->open > 0 || z->workers > 0)
    return;
  if (pool->zygote == z)
    pool->zygote = NULL;
  pp__queue_remove(&z->node);
  pool->nzygotes--;
  free(z->pend);
  free(z);
  pool->live--;
  if (pool->stopping)
    pp__wake(pool);
}

static void zygote_close_cb(uv_handle_t *h) {
  pp__zygote_t *z = h->data;
  pp_pool_t *pool = z->pool;

  pp__lock(pool);
  z->open--;
  zygote_maybe_free(z);
  pp__unlock(pool);
}

/* Asked of the zygote and not adopted: its fork may still come. */
static int is_forking(const pp__proc_t *proc) {
  return proc->u.zygote.state == PP__ZW_FORKING ||
         proc->u.zygote.state == PP__ZW_ABANDONED;
}

static int is_forking_gen(const pp__proc_t *proc, uint32_t gen) {
  return proc && proc->kind == PP__PROC_ZYGOTE && is_forking(proc) &&
         proc->generation == gen;
}

/* The worker of (slot, gen) waiting for its fork, or NULL. */
static pp__proc_t *forking(pp_pool_t *pool, uint32_t id, uint32_t gen) {
  pp__slot_t *slot;

  if (id >= (uint32_t)pool->nslots)
    return NULL;
  slot = pool->slots[id];
  if (is_forking_gen(slot->proc, gen))
    return slot->proc;
  if (is_forking_gen(slot->next, gen))
    return slot->next;
  return NULL;
}

/* No fork of it will be adopted: it ends from a zero timer, where
 * pp__zygote_timer finds it (loop thread). */
static void end_unforked(pp__proc_t *proc) {
  proc->u.zygote.state = PP__ZW_ABANDONED;
  uv_timer_start(&proc->timer, pp__proc_timer_cb, 0, 0);
}

/* A worker whose fork will never come: it ends now (lock held). */
static void abandon(pp__proc_t *proc, const char *why) {
  if (proc->u.zygote.state != PP__ZW_FORKING)
    return;
  snprintf(proc->detail, sizeof(proc->detail), "%s", why);
  end_unforked(proc);
}

/* It ended with the wait status st, as the zygote reported it (loop
 * thread, lock NOT held). */
static void exited_with(pp__proc_t *proc, int st) {
  proc->u.zygote.state = PP__ZW_ENDED;
  pp__proc_exited(proc, WIFEXITED(st) ? WEXITSTATUS(st) : 0,
                  WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void abandon_all(pp__zygote_t *z, const char *why) {
  pp__queue_t *q;
  pp__proc_t *p;

  pp__queue_foreach(q, &z->pool->zprocs) {
    p = pp__container_of(q, pp__proc_t, u.zygote.znode);
    if (p->u.zygote.zygote == z && p->u.zygote.state == PP__ZW_FORKING)
      abandon(p, why);
  }
}

/* The worker's status will never come (its zygote is gone): one whose
 * pidfd fired already ends now, as killed by the parent-death signal
 * (lock held; the exit runs from a zero timer). */
static void orphan_all(pp__zygote_t *z) {
  pp__queue_t *q;
  pp__proc_t *p;

  pp__queue_foreach(q, &z->pool->zprocs) {
    p = pp__container_of(q, pp__proc_t, u.zygote.znode);
    if (p->u.zygote.zygote != z || p->u.zygote.state != PP__ZW_EXIT_SEEN)
      continue;
    p->u.zygote.zstatus = SIGKILL; /* a wait status: killed by signal 9 */
    p->u.zygote.state = PP__ZW_EXIT_PENDING;
    uv_timer_start(&p->timer, pp__proc_timer_cb, 0, 0);
  }
}

static void on_pidfd(uv_poll_t *h, int status, int events) {
  pp__proc_t *proc = h->data;
  pp_pool_t *pool = proc->pool;
  int st = 0, known, zygote_gone;

  (void)status;
  (void)events;
  pp__lock(pool);
  uv_poll_stop(h);
  known = proc->u.zygote.state == PP__ZW_STATUS_KNOWN;
  st = proc->u.zygote.zstatus;
  /* Its own zygote (a reload's new one does not report for it). */
  zygote_gone = !proc->u.zygote.zygote->alive;
  proc->u.zygote.state = known || zygote_gone ? PP__ZW_ENDED : PP__ZW_EXIT_SEEN;
  pp__unlock(pool);
  /* Tests wait here: the exit seen, its status not yet. */
  if (!known && !zygote_gone)
    PP_FAULT(pool, "pidfd");
  /* Its status comes from the zygote, which reaps it; without a zygote
   * it died of the parent-death signal, by SIGKILL. */
  if (known)
    exited_with(proc, st);
  else if (zygote_gone)
    pp__proc_exited(proc, 0, SIGKILL);
}

/* The zygote reaped pid: find the worker and, if its pidfd fired already,
 * end it now (lock held; the exit runs from a zero timer). */
static void reaped(pp_pool_t *pool, int pid, int st) {
  pp__queue_t *q;
  pp__proc_t *p;

  /* Every forked worker, in a slot or retired from one. */
  pp__queue_foreach(q, &pool->zprocs) {
    p = pp__container_of(q, pp__proc_t, u.zygote.znode);
    if (p->pid != pid || (p->u.zygote.state != PP__ZW_RUNNING &&
                          p->u.zygote.state != PP__ZW_EXIT_SEEN))
      continue;
    p->u.zygote.zstatus = st;
    if (p->u.zygote.state == PP__ZW_EXIT_SEEN) {
      p->u.zygote.state = PP__ZW_EXIT_PENDING;
      uv_timer_start(&p->timer, pp__proc_timer_cb, 0, 0);
    } else {
      p->u.zygote.state = PP__ZW_STATUS_KNOWN;
    }
    return;
  }
}

/* A pidfd on pid when it is a child of the zygote z, and in *stat_fd its
 * /proc/PID/stat, kept open; -1 when no process has that pid (it died and
 * was reaped), -2 when it is not z's.  The
 * zygote ran the handler module's import, so the pid it reports is not
 * trusted: the pool, maybe root, signals the worker's process group
 * (kill(-pid): pid 1 would be every process) and moves it into a
 * cgroup.  The pidfd is opened first, so the process read in /proc is the
 * one it names (or, if that one was reaped meanwhile, another child of
 * the zygote's: its pidfd then fires at once). */
static int child_pidfd(const pp__zygote_t *z, int pid, int *stat_fd) {
  char path[64], buf[512], *p;
  long ppid = -1;
  ssize_t n = -1;
  int pidfd, fd;

  *stat_fd = -1;
  if (pid <= 1 || pid == z->process.pid)
    return -2;
  pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0)
    return -1;
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0)
    n = read(fd, buf, sizeof(buf) - 1);
  /* "pid (comm) state ppid ...": comm may hold ") ", so the last ')'. */
  if (n > 0) {
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 1, " %*c %ld", &ppid) != 1)
      ppid = -1;
  }
  if (ppid != (long)z->process.pid) {
    if (fd >= 0)
      close(fd);
    close(pidfd);
    return -2;
  }
  /* The stat fd is the pidfd's process only if that one was still alive
   * after the open (else another child of the zygote may have its pid
   * now); if not, its pidfd fires at once anyway. */
  if (fd >= 0) {
    struct pollfd pf = {.fd = pidfd, .events = POLLIN};
    int r;

    while ((r = poll(&pf, 1, 0)) < 0 && errno == EINTR)
      ;
    if (r != 0) {
      if (r < 0)
        pp__log(z->pool,
                "zygote: worker pid %d: poll on its pidfd: %s: status "
                "shows no RSS or CPU for it, and worker.max_rss does not "
                "recycle it",
                pid, strerror(errno));
      close(fd);
      fd = -1;
    }
  }
  *stat_fd = fd;
  return pidfd;
}

/* Adopt a forked worker's fds (lock held). */
static void adopt(pp__zygote_t *z, uint32_t id, uint32_t gen, int pid,
                  const int fds[4]) {
  pp_pool_t *pool = z->pool;
  pp__proc_t *proc = forking(pool, id, gen);
  int i, stat_fd, pidfd = child_pidfd(z, pid, &stat_fd);

  if (pidfd < 0 || proc == NULL || proc->u.zygote.state == PP__ZW_ABANDONED) {
    for (i = 0; i < 4; i++)
      close(fds[i]);
    if (stat_fd >= 0)
      close(stat_fd);
    /* Stopped while it was being forked: it is not wanted.  Never signal
     * a pid that is not the zygote's child. */
    if (pidfd >= 0) {
      pp__pidfd_signal(pidfd, SIGKILL);
      close(pidfd);
    } else if (pidfd == -2) {
      pp__log(pool, "zygote: the pid it reported, %d, is not its child", pid);
    }
    if (pidfd < 0 && proc && proc->u.zygote.state != PP__ZW_ABANDONED)
      abandon(proc, pidfd == -2 ? "the zygote reported a pid not its child"
                                : "pidfd_open failed");
    return;
  }
  proc->u.zygote.state = PP__ZW_RUNNING;
  proc->u.zygote.pidfd = pidfd;
  proc->stat_fd = stat_fd;
  proc->req_fd = fds[0];
  proc->rep_fd = fds[1];
  pp__proc_set_nonblock(proc->req_fd);
  pp__proc_set_nonblock(proc->rep_fd);
  pp__proc_output_init(proc);
  uv_pipe_open(&proc->out, fds[2]);
  uv_pipe_open(&proc->err, fds[3]);
  uv_poll_init(pool->loop, &proc->u.zygote.pidpoll, pidfd);
  proc->u.zygote.pidpoll.data = proc;
  proc->handles |= PP__H_PIDFD;
  proc->refs++;
  uv_poll_start(&proc->u.zygote.pidpoll, UV_READABLE, on_pidfd);
  pp__proc_started(proc, pid);
  pp__confine_adopt(proc);
  pp__proc_read_start(proc);
}

static void on_socket(uv_poll_t *h, int status, int events);

/* Send the queued fork requests the socket has room for, and watch it
 * for room while some are left (loop thread, lock held).  A send that
 * fails otherwise (the zygote is gone) drops them: its exit abandons
 * every fork not adopted. */
static void zygote_flush(pp__zygote_t *z) {
  size_t off = 0;
  ssize_t n;

  while (off < z->plen && z->fd >= 0) {
    n = send(z->fd, z->pend + off, ZREQ, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      break;
    if (n != ZREQ) {
      off = z->plen;
      break;
    }
    off += ZREQ;
  }
  memmove(z->pend, z->pend + off, z->plen - off);
  z->plen -= off;
  if (z->fd >= 0)
    uv_poll_start(&z->poll, UV_READABLE | (z->plen ? UV_WRITABLE : 0),
                  on_socket);
}

/* Queue a fork request (see pend). */
static int zygote_ask(pp__zygote_t *z, const unsigned char req[ZREQ]) {
  if (z->plen + ZREQ > z->pcap) {
    size_t cap = z->pcap ? z->pcap * 2 : 64 * ZREQ;
    unsigned char *p = realloc(z->pend, cap);

    if (p == NULL)
      return UV_ENOMEM;
    z->pend = p;
    z->pcap = cap;
  }
  memcpy(z->pend + z->plen, req, ZREQ);
  z->plen += ZREQ;
  if (z->plen == ZREQ) /* else it waits behind the others, and for room */
    zygote_flush(z);
  return 0;
}

static void on_socket(uv_poll_t *h, int status, int events) {
  pp__zygote_t *z = h->data;
  pp_pool_t *pool = z->pool;
  char buf[256], cbuf[CMSG_SPACE(4 * sizeof(int))];
  struct iovec iov = {buf, sizeof(buf)};
  struct msghdr msg;
  struct cmsghdr *cm;
  uint32_t id, gen;
  int32_t pid, st;
  int fds[4];
  ssize_t n;

  pp__lock(pool);
  if (status >= 0 && (events & UV_WRITABLE))
    zygote_flush(z);
  for (;;) {
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof(cbuf);
    n = status < 0 ? -1 : recvmsg(z->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      break;
    if (n <= 0) {
      /* The zygote is gone or going: stop listening; its exit follows. */
      uv_poll_stop(h);
      z->plen = 0;
      break;
    }
    cm = CMSG_FIRSTHDR(&msg);
    if (buf[0] == 'W' && n == 13 && cm && cm->cmsg_type == SCM_RIGHTS &&
        cm->cmsg_len == CMSG_LEN(4 * sizeof(int))) {
      memcpy(fds, CMSG_DATA(cm), sizeof(fds));
      memcpy(&id, buf + 1, 4);
      memcpy(&gen, buf + 5, 4);
      memcpy(&pid, buf + 9, 4);
      adopt(z, ntohl(id), ntohl(gen), (int)ntohl((uint32_t)pid), fds);
    } else if (buf[0] == 'X' && n == 9) {
      memcpy(&pid, buf + 1, 4);
      memcpy(&st, buf + 5, 4);
      reaped(pool, (int)ntohl((uint32_t)pid), (int)ntohl((uint32_t)st));
    } else if (buf[0] == 'E' && n >= 9) {
      memcpy(&id, buf + 1, 4);
      memcpy(&gen, buf + 5, 4);
      pp__proc_t *p = forking(pool, ntohl(id), ntohl(gen));
      if (p)
        abandon(p, "the zygote could not fork");
    }
  }
  pp__unlock(pool);
  pp__run_pending(pool);
}

static void zygote_stop(pp__zygote_t *z);

static void on_zygote_exit(uv_process_t *p, int64_t status, int sig) {
  pp__zygote_t *z = p->data;
  pp_pool_t *pool = z->pool;

  pp__lock(pool);
  z->alive = 0;
  if (!z->stopping)
    pp__log(pool, "zygote (pid %d) exited: %s %d; forks start a new one",
            p->pid, sig ? "signal" : "exit", sig ? sig : (int)status);
  if (pool->zygote == z)
    pool->zygote = NULL;
  abandon_all(z, "the zygote exited");
  orphan_all(z);
  if (z->fd >= 0) {
    uv_close((uv_handle_t *)&z->poll, zygote_close_cb);
    close(z->fd);
    z->fd = -1;
  } else {
    z->open--;
  }
  uv_close((uv_handle_t *)&z->process, zygote_close_cb);
  pp__unlock(pool);
  pp__run_pending(pool);
}

/* The zygote's command: worker.command with portpool_worker.py replaced by
 * portpool_zygote.py beside it. */
static int zygote_start(pp_pool_t *pool) {
  pp_config_t *cfg = pool->cfg;
  uv_process_options_t opts;
  uv_stdio_container_t stdio[4];
  char **args = NULL, **env = NULL, *script = NULL;
  const char *w = cfg->command[1], *slash = strrchr(w, '/');
  size_t dir = slash ? (size_t)(slash - w) + 1 : 0;
  pp__zygote_t *z;
  int sv[2], i, r = UV_ENOMEM;

  z = calloc(1, sizeof(*z));
  args = calloc((size_t)cfg->command_len + 1, sizeof(*args));
  script = malloc(dir + sizeof("portpool_zygote.py"));
  env = pp__build_env(pool->slots[0]);
  if (z == NULL || args == NULL || script == NULL || env == NULL)
    goto fail;
  memcpy(script, w, dir);
  memcpy(script + dir, "portpool_zygote.py", sizeof("portpool_zygote.py"));
  args[0] = pool->python;
  args[1] = script;
  for (i = 2; i < cfg->command_len; i++)
    args[i] = cfg->command[i];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    r = uv_translate_sys_error(errno);
    goto fail;
  }
  memset(&opts, 0, sizeof(opts));
  memset(stdio, 0, sizeof(stdio));
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 1;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  stdio[3].flags = UV_INHERIT_FD;
  stdio[3].data.fd = sv[1];
  opts.file = pool->python;
  opts.args = args;
  opts.env = env;
  opts.stdio = stdio;
  opts.stdio_count = 4;
  opts.flags = UV_PROCESS_DETACHED;
  pp__confine_spawn_opts(pool, &opts.flags, &opts.uid, &opts.gid);
  opts.exit_cb = on_zygote_exit;
  z->pool = pool;
  z->process.data = z;
  pool->live++; /* until freed: handles closed, workers gone */
  pool->zygote = z;
  pp__queue_insert_tail(&pool->zygotes, &z->node);
  pool->nzygotes++;
  r = uv_spawn(pool->loop, &z->process, &opts);
  close(sv[1]);
  z->open = 1; /* the process handle, closed even after a failed spawn */
  if (r != 0) {
    close(sv[0]);
    pp__log(pool, "zygote: spawn %s: %s", pool->python, uv_strerror(r));
    uv_close((uv_handle_t *)&z->process, zygote_close_cb);
    z = NULL; /* freed by its close callback */
    goto fail;
  }
  z->alive = 1;
  z->fd = sv[0];
  uv_poll_init(pool->loop, &z->poll, z->fd);
  z->poll.data = z;
  z->open++;
  uv_poll_start(&z->poll, UV_READABLE, on_socket);
  r = 0;
fail:
  if (r != 0)
    free(z);
  free(args);
  free(script);
  if (env)
    pp__free_env(env);
  return r;
}

static void zygote_stop(pp__zygote_t *z) {
  if (z->stopping)
    return;
  z->stopping = 1;
  /* EOF on its socket ends it; SIGTERM in case it is importing. */
  if (z->fd >= 0) {
    uv_close((uv_handle_t *)&z->poll, zygote_close_cb);
    close(z->fd);
    z->fd = -1;
    z->open++; /* balanced by on_zygote_exit's decrement */
  }
  if (z->alive)
    uv_process_kill(&z->process, SIGTERM);
}

void pp__zygotes_stop(pp_pool_t *pool, int all) {
  pp__queue_t *q;
  pp__zygote_t *z;

  pp__queue_foreach(q, &pool->zygotes) {
    z = pp__container_of(q, pp__zygote_t, node);
    if (all || (z->retired && z->workers == 0))
      zygote_stop(z);
  }
}

void pp__zygote_retire(pp_pool_t *pool) {
  if (pool->zygote) {
    pool->zygote->retired = 1;
    pool->zygote = NULL; /* the next fork starts a new one */
    pool->maintain_wanted = 1;
    pp__wake(pool);
  }
}

int pp__zygote_signal(pp__proc_t *proc, int sig) {
  PP_ASSERT_LOOP(proc->pool);

  switch (proc->u.zygote.state) {
  case PP__ZW_FORKING:
  case PP__ZW_ABANDONED:
    /* No process yet: end it from the loop, without a signal. */
    end_unforked(proc);
    return 1;
  case PP__ZW_RUNNING:
  case PP__ZW_STATUS_KNOWN:
    /* Its pidfd has not fired yet. */
    if (proc->u.zygote.pidfd >= 0)
      pp__pidfd_signal(proc->u.zygote.pidfd, sig);
    return 0;
  default:
    return 0;
  }
}

int pp__zygote_signal_one(pp__proc_t *proc, int sig) {
  PP_ASSERT_LOOP(proc->pool);

  if ((proc->u.zygote.state != PP__ZW_RUNNING &&
       proc->u.zygote.state != PP__ZW_STATUS_KNOWN) ||
      proc->u.zygote.pidfd < 0)
    return UV_ESRCH;
  return pp__pidfd_signal(proc->u.zygote.pidfd, sig) == 0 ? 0 : -errno;
}

int pp__zygote_timer(pp__proc_t *proc) {
  PP_ASSERT_LOOP(proc->pool);

  switch (proc->u.zygote.state) {
  case PP__ZW_EXIT_PENDING:
    /* Its pidfd fired and its status came after. */
    exited_with(proc, proc->u.zygote.zstatus);
    return 1;
  case PP__ZW_ABANDONED:
    /* Stopped before it existed (a fork still pending): it ends here. */
    proc->u.zygote.state = PP__ZW_ENDED;
    pp__proc_exited(proc, 1, 0);
    return 1;
  default:
    return 0;
  }
}

void pp__zygote_worker_gone(pp__proc_t *proc) {
  pp__zygote_t *z = proc->u.zygote.zygote;

  PP_ASSERT_LOCKED(proc->pool);

  proc->u.zygote.zygote = NULL;
  if (--z->workers == 0 && z->retired && z->open > 0) {
    z->pool->maintain_wanted = 1;
    pp__wake(z->pool);
  }
  zygote_maybe_free(z);
}

static int zygote_prepare(pp_pool_t *pool, pp_diag_t *diag) {
  pp_config_t *cfg = pool->cfg;
  const char *w = cfg->command_len >= 3 ? cfg->command[1] : "";
  const char *base = strrchr(w, '/');
  int r;

  base = base ? base + 1 : w;
  if (strcmp(base, "portpool_worker.py") != 0) {
    pp__diag_set(diag, "worker.start: zygote needs worker.command to run "
                       "portpool_worker.py HANDLER");
    if (diag)
      snprintf(diag->key, sizeof(diag->key), "worker.start");
    return PP_ECONFIG;
  }
  if ((r = pp__confine_prepare(pool, diag)) != 0)
    return r;
  if ((r = pp__resolve_python(cfg->command[0], &pool->python, diag)) != 0)
    return r;
  return pp__confine_reach_check(pool, diag);
}

static int zygote_spawn(pp__slot_t *slot, uint32_t generation,
                        pp__proc_t **out) {
  pp_pool_t *pool = slot->pool;
  unsigned char req[ZREQ];
  uint32_t v;
  pp__proc_t *proc;
  int r;

  PP_ASSERT_LOOP(pool);
  if ((pool->zygote == NULL || !pool->zygote->alive) &&
      (r = zygote_start(pool)) != 0)
    return r;
  if ((proc = pp__proc_new(slot, generation, PP__PROC_ZYGOTE)) == NULL)
    return UV_ENOMEM;
  /* Its pipes come from the zygote; the eventfd that wakes a caller
   * blocked on its reply when it is reaped is ours. */
  proc->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (proc->wake_fd < 0) {
    r = uv_translate_sys_error(errno);
    pp__proc_abort(proc);
    return r;
  }
  pp__proc_timer_init(proc);
  proc->u.zygote.state = PP__ZW_FORKING;
  proc->u.zygote.zygote = pool->zygote;
  pool->zygote->workers++;
  pp__queue_insert_tail(&pool->zprocs, &proc->u.zygote.znode);
  proc->spawn_ns = pp__now_ns();
  req[0] = 'F';
  v = htonl((uint32_t)slot->id);
  memcpy(req + 1, &v, 4);
  v = htonl(generation);
  memcpy(req + 5, &v, 4);
  if ((r = zygote_ask(pool->zygote, req)) != 0) {
    pp__proc_abort(proc);
    return r;
  }
  *out = proc;
  return 0;
}

const pp__adapter_t pp__adapter_zygote = {"python", zygote_prepare,
                                          zygote_spawn};
