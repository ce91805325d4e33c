/* control.c -- owns the control socket: a Unix-socket server on the pool's
 * loop speaking newline-delimited JSON (docs/protocol.md), the socket
 * file's life (0700 directory, stale files, unlink at stop), the peer's uid
 * check, and each connection's bounded reading and writing of lines.  What
 * a request does lives in control_ops.c, its parsing in control_proto.c.
 * Does not own workers or leases. */
#include "control.h"

#include "control_api.h"
#include "uid.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct {
  uv_write_t req;
  pp__conn_t *conn;
  int signal_after; /* raise this signal once written (stop, reload) */
  char data[];
} ctl_write_t;

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

/* ------------------------------------------------------------ connections */

void pp__conn_unref(pp__conn_t *c) {
  assert(c->refs > 0);
  if (--c->refs > 0)
    return;
  if (c->tbuf) {
    uv_mutex_destroy(&c->tlock);
    free(c->tbuf);
  }
  free(c->call_id);
  free(c->payload);
  free(c->buf);
  free(c);
}

static void ctl_free(pp__control_t *ctl) {
  assert(ctl->lockfd < 0);
  if (ctl->dirfd >= 0)
    close(ctl->dirfd);
  free(ctl->allow);
  free(ctl->lockname);
  free(ctl->name);
  free(ctl->dir);
  free(ctl->path);
  free(ctl);
}

static void ctl_handle_closed(pp__control_t *ctl) {
  pp_pool_t *pool = ctl->pool;
  void (*done)(pp_pool_t *) = ctl->done_cb;

  assert(ctl->handles > 0);
  if (--ctl->handles > 0)
    return;
  ctl_free(ctl);
  if (pool == NULL)
    return; /* detached: a failed start, the pool is already gone */
  pp__pool_set_control(pool, NULL);
  if (done)
    done(pool);
}

static void on_conn_close(uv_handle_t *h) {
  pp__conn_t *c = h->data;
  pp__control_t *ctl = c->ctl;

  /* After this returns no subscriber callback runs for c: the pool calls
   * them with its lock held, and unsubscribing takes that lock. */
  if (c->tracing) {
    c->tracing = 0;
    pp_pool_trace_unsubscribe(c->pool, c->trace_id);
  }
  /* Withdraw its waits and reclaim its leases.  The callbacks still owed
   * to it arrive (inside this call, or later) with an error or a lease we
   * must not touch, which client_closed tells them. */
  if (c->client && !c->client_closed) {
    c->client_closed = 1;
    pp_client_close(c->client);
  }
  pp__queue_remove(&c->node);
  c->ctl = NULL;
  ctl_handle_closed(ctl);
  pp__conn_unref(c);
}

void pp__conn_close(pp__conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  /* Its socket is closed now (uv_close below): the slot is free at once,
   * not only after the close callback, so a client that saw the hang-up
   * finds it free. */
  if (c->counted)
    c->ctl->nconns--;
  c->counted = 0;
  if (c->tbuf) {
    uv_mutex_lock(&c->tlock);
    c->tdead = 1;
    uv_mutex_unlock(&c->tlock);
  }
  if (c->reading)
    uv_read_stop((uv_stream_t *)&c->pipe);
  c->reading = 0;
  pp__conn_call_timer_close(c);
  uv_close((uv_handle_t *)&c->pipe, on_conn_close);
}

/* Close once every queued reply has been written. */
void pp__conn_finish(pp__conn_t *c) {
  c->finishing = 1;
  if (c->reading)
    uv_read_stop((uv_stream_t *)&c->pipe);
  c->reading = 0;
  if (c->writes == 0)
    pp__conn_close(c);
}

static void on_write(uv_write_t *req, int status) {
  ctl_write_t *w = (ctl_write_t *)req;
  pp__conn_t *c = w->conn;

  /* stop and reload are carried out by the program's own signal
   * handler, once the client has its answer. */
  if (w->signal_after == PP__AFTER_STOP) {
    pp_pool_t *pool = c->pool;
    pp_diag_t d;
    pp__pool_options(pool)->control(pool, "stop", &d,
                                    pp__pool_options(pool)->control_data);
  } else if (w->signal_after) {
    kill(getpid(), w->signal_after);
  }
  free(w);
  c->writes--;
  if (status == 0)
    c->active_ns = pp__now_ns(); /* the peer takes its replies */
  if (!c->closing) {
    if (status < 0)
      pp__conn_close(c); /* the peer is gone */
    else if (c->finishing && c->writes == 0)
      pp__conn_close(c);
    else
      pp__conn_pump(c); /* the write queue may have drained */
  }
  pp__conn_unref(c);
}

/* Queue bytes, with a '\n' after them when newline is set.  Never writes
 * to a closing connection.  A failure closes the connection. */
void pp__conn_write(pp__conn_t *c, const char *text, size_t len, int newline,
                    int signal_after) {
  ctl_write_t *w;
  uv_buf_t b;

  if (c->closing)
    return;
  w = malloc(sizeof(*w) + len + 1);
  if (w == NULL) {
    pp__conn_close(c);
    return;
  }
  memcpy(w->data, text, len);
  if (newline)
    w->data[len++] = '\n';
  w->conn = c;
  w->signal_after = signal_after;
  b = uv_buf_init(w->data, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_write) != 0) {
    free(w);
    pp__conn_close(c);
    return;
  }
  c->refs++;
  c->writes++;
}

/* Serialise obj (a reference is stolen) as one reply line, with the
 * request's "id" spliced in as the client wrote it (compact), so that
 * every id comes back byte for byte. */
void pp__conn_send(pp__conn_t *c, json_t *obj, const char *id,
                   int signal_after) {
  size_t n, idlen;
  char *s, *line;

  if (obj == NULL) {
    pp__conn_close(c);
    return;
  }
  s = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  if (s == NULL) {
    pp__conn_close(c);
    return;
  }
  n = strlen(s);
  if (id == NULL || n < 2) {
    pp__conn_write(c, s, n, 1, signal_after);
    free(s);
    return;
  }
  /* s is "{...}": the id goes last, before its '}'. */
  idlen = strlen(id);
  line = malloc(n + idlen + 8);
  if (line == NULL) {
    free(s);
    pp__conn_close(c);
    return;
  }
  memcpy(line, s, n - 1);
  n--;
  if (n > 1)
    line[n++] = ',';
  memcpy(line + n, "\"id\":", 5);
  memcpy(line + n + 5, id, idlen);
  n += 5 + idlen;
  line[n++] = '}';
  free(s);
  pp__conn_write(c, line, n, 1, signal_after);
  free(line);
}

void pp__conn_send_error(pp__conn_t *c, const char *id, const char *name,
                         const char *message, json_t *detail) {
  json_t *o =
      json_pack("{s:b, s:s, s:s}", "ok", 0, "error", name, "message", message);

  if (o && detail)
    json_object_set(o, "detail", detail);
  json_decref(detail);
  pp__conn_send(c, o, id, 0);
}

void pp__conn_send_code(pp__conn_t *c, const char *id, int r) {
  if (r == 0)
    pp__conn_send(c, json_pack("{s:b}", "ok", 1), id, 0);
  else
    pp__conn_send_error(c, id, pp_err_name(r), pp_strerror(r), NULL);
}

/* ---------------------------------------------------------------- reading */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  pp__conn_t *c = h->data;
  size_t cap;
  char *nb;

  (void)suggested;
  if (c->start > 0) {
    memmove(c->buf, c->buf + c->start, c->len - c->start);
    c->len -= c->start;
    c->start = 0;
  }
  if (c->len == 0 && c->cap > 16 * CTL_BUF_MIN) {
    /* A big request is done: do not keep a megabyte per idle peer. */
    free(c->buf);
    c->buf = NULL;
    c->cap = 0;
  }
  if (c->cap - c->len < CTL_BUF_MIN && c->cap < CTL_BUF_MAX) {
    cap = c->cap ? c->cap * 2 : CTL_BUF_MIN;
    if (cap > CTL_BUF_MAX)
      cap = CTL_BUF_MAX;
    nb = realloc(c->buf, cap);
    if (nb) {
      c->buf = nb;
      c->cap = cap;
    }
  }
  /* A zero-length buffer makes libuv report UV_ENOBUFS. */
  *b =
      uv_buf_init(c->buf ? c->buf + c->len : NULL, (unsigned)(c->cap - c->len));
}

/* Start or stop reading: read while the buffer has room, the replies are
 * being taken, and the connection is not on its way out. */
static void conn_update_reading(pp__conn_t *c) {
  int want =
      !c->closing && !c->finishing && !c->eof &&
      c->len - c->start < CTL_BUF_MAX &&
      uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) < CTL_WQUEUE_MAX;

  if (want && !c->reading) {
    if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0) {
      pp__conn_close(c);
      return;
    }
    c->reading = 1;
  } else if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->pipe);
    c->reading = 0;
  }
}

/* 1 when line[0..n) holds only spaces, tabs and '\r': a blank line,
 * which is skipped and is not activity (it does not restart the idle
 * timeout). */
static int blank_line(const char *line, size_t n) {
  while (n > 0 &&
         (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
    n--;
  return n == 0;
}

/* Serve the complete lines in the buffer, one at a time, in order; stop at
 * a call until it is answered.  A trace stream ignores what follows: it
 * reads only to notice the peer hanging up. */
void pp__conn_pump(pp__conn_t *c) {
  char *line, *nl;
  size_t avail, n;

  while (!c->closing && !c->finishing && !c->busy && !c->tracing &&
         uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) <
             CTL_WQUEUE_MAX) {
    line = c->buf + c->start;
    avail = c->len - c->start;
    nl = memchr(line + c->scanned, '\n', avail - c->scanned);
    if (nl == NULL) {
      c->scanned = avail;
      if (avail > CTL_LINE_MAX) {
        pp__conn_send_error(c, NULL, "E2BIG",
                            "request line longer than 1048576 bytes", NULL);
        pp__conn_finish(c);
        return;
      }
      if (!c->eof)
        break;
      /* The peer is done sending: an unterminated last line counts. */
      c->start = c->len;
      c->scanned = 0;
      if (avail > 0) {
        pp__ctl_handle_line(c, line, avail);
        continue;
      }
      pp__conn_finish(c);
      return;
    }
    n = (size_t)(nl - line);
    if (!blank_line(line, n))
      c->active_ns = pp__now_ns();
    c->start += n + 1;
    c->scanned = 0;
    if (c->start == c->len)
      c->start = c->len = 0; /* nothing left: the line stays valid below */
    pp__ctl_handle_line(c, line, n);
  }
  if (c->tracing && !c->closing) {
    c->start = c->len = c->scanned = 0;
    pp__ctl_trace_flush(c);
  }
  conn_update_reading(c);
}

/* 1 when the peer closed both directions (not just shut down writing):
 * then nobody is left to read a reply. */
static int peer_gone(pp__conn_t *c) {
  struct pollfd p;
  uv_os_fd_t fd;

  if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0)
    return 1;
  p.fd = fd;
  p.events = 0;
  p.revents = 0;
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  pp__conn_t *c = s->data;

  (void)b;
  if (nread > 0) {
    c->len += (size_t)nread;
    pp__conn_pump(c);
    return;
  }
  if (nread == 0)
    return;
  c->reading = 0; /* libuv stopped reading at EOF or error */
  if (nread == UV_EOF && !peer_gone(c)) {
    /* Half-closed (`socat`, `nc -N`): answer what was sent, then close;
     * a trace stream goes on until the peer closes for good. */
    c->eof = 1;
    pp__conn_pump(c);
    return;
  }
  /* Gone: closing the client withdraws its checkout or reclaims its lease,
   * whatever the pool is doing for it. */
  pp__conn_close(c);
}

/* ------------------------------------------------------------- accepting */

/* The sweep, a few times per idle timeout: close a connection that has
 * sent no complete request (and has no call or trace stream running) for
 * control.idle_timeout, like a web server's header timeout, and one whose
 * unwritten replies stayed past CTL_WQUEUE_MAX that long (a peer that
 * stopped reading: trace streams too). */
static void on_sweep(uv_timer_t *t) {
  pp__control_t *ctl = t->data;
  uint64_t now = pp__now_ns(), limit = ctl->idle_ms * 1000000;
  pp__queue_t *q, *next;
  pp__conn_t *c;
  size_t wq;

  for (q = ctl->conns.next; q != &ctl->conns; q = next) {
    next = q->next;
    c = pp__container_of(q, pp__conn_t, node);
    if (c->closing)
      continue;
    wq = uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe);
    if (wq <= CTL_WQUEUE_MAX) {
      c->over_ns = 0;
    } else if (c->over_ns == 0) {
      c->over_ns = now;
    } else if (now - c->over_ns >= limit) {
      pp__log(ctl->pool,
              "control socket: closing a connection that has not taken its "
              "replies (%zu bytes) for %" PRIu64 " ms",
              wq, ctl->idle_ms);
      pp__conn_close(c);
      continue;
    }
    if (!c->busy && !c->tracing && now - c->active_ns >= limit)
      pp__conn_close(c);
  }
  if (ctl->nconns == 0)
    uv_timer_stop(t);
}

static int uid_allowed(const pp__control_t *ctl, uid_t uid) {
  int i;

  if (uid == geteuid())
    return 1;
  for (i = 0; i < ctl->nallow; i++)
    if (ctl->allow[i] == (uint32_t)uid)
      return 1;
  return 0;
}

/* Refuse a peer: its one error line goes out with a non-blocking write
 * (a fresh socket's buffer takes a short line; if not, the peer gets the
 * hang-up alone) and it is closed at once.  It never held a slot and
 * nothing stays queued for it, so refused peers cannot crowd out anyone. */
static void refuse(pp__conn_t *c, const char *name, const char *message) {
  char line[256];
  uv_buf_t b;
  int n;

  n = snprintf(line, sizeof(line),
               "{\"ok\":false,\"error\":\"%s\",\"message\":\"%s\"}\n", name,
               message);
  if (n > 0 && (size_t)n < sizeof(line)) {
    b = uv_buf_init(line, (unsigned)n);
    (void)uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
  }
  pp__conn_close(c);
}

static void on_connection(uv_stream_t *server, int status) {
  pp__control_t *ctl = server->data;
  pp_pool_t *pool = ctl->pool;
  struct ucred cred;
  socklen_t clen = sizeof(cred);
  uv_os_fd_t fd;
  pp__conn_t *c;
  char msg[128];
  int r, owner;

  if (status < 0) {
    pp__log(pool, "control socket: accept: %s", uv_strerror(status));
    return;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL) {
    pp__log(pool, "control socket: out of memory for a connection");
    return;
  }
  c->ctl = ctl;
  c->pool = pool;
  c->refs = 1;
  c->call_id = NULL;
  c->active_ns = pp__now_ns();
  uv_pipe_init(pp__pool_loop(pool), &c->pipe, 0);
  c->pipe.data = c;
  ctl->handles++;
  pp__queue_insert_tail(&ctl->conns, &c->node);
  if ((r = uv_accept(server, (uv_stream_t *)&c->pipe)) != 0) {
    pp__log(pool, "control socket: accept: %s", uv_strerror(r));
    pp__conn_close(c);
    return;
  }
  /* Only our own user (and control.allow_uids) may drive the pool,
   * whatever the socket's mode. */
  if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
    refuse(c, "EPERM", "cannot read the peer's credentials");
    return;
  }
  if (!uid_allowed(ctl, cred.uid)) {
    snprintf(msg, sizeof(msg), "uid %u is not allowed", (unsigned)cred.uid);
    refuse(c, "EPERM", msg);
    return;
  }
  /* The pool's own user gets a few more, so that an operator's
   * `poolctl status` gets through whoever holds the others; nobody else
   * can take those. */
  owner = cred.uid == geteuid();
  if (ctl->nconns >= CTL_CONN_MAX + (owner ? CTL_CONN_RESERVE : 0)) {
    snprintf(msg, sizeof(msg),
             "too many control connections (%d in use); try again later",
             ctl->nconns);
    refuse(c, "EBUSY", msg);
    return;
  }
  c->counted = 1;
  ctl->nconns++;
  if ((r = pp_client_open(pool, &c->client)) != 0) {
    c->client = NULL;
    pp__conn_send_error(c, NULL, pp_err_name(r), pp_strerror(r), NULL);
    pp__conn_finish(c);
    return;
  }
  if (ctl->idle_ms > 0 && !uv_is_active((uv_handle_t *)&ctl->timer)) {
    uint64_t every = ctl->idle_ms / 4;
    every = every < 10 ? 10 : every > 1000 ? 1000 : every;
    uv_timer_start(&ctl->timer, on_sweep, every, every);
  }
  conn_update_reading(c);
}

/* ------------------------------------------------------- start and stop */

/* A name in the socket's directory as a path that goes through the open
 * directory (/proc/self/fd/N/NAME), so that the directory we checked is
 * the one used even if its path is swapped meanwhile; without /proc, the
 * checked path itself. */
static int at_path(const pp__control_t *ctl, const char *rel, char *buf,
                   size_t len) {
  int n;

  if (ctl->proc)
    n = snprintf(buf, len, "/proc/self/fd/%d/%s", ctl->dirfd, rel);
  else
    n = snprintf(buf, len, "%s/%s", ctl->dir, rel);
  return n < 0 || (size_t)n >= len ? UV_ENAMETOOLONG : 0;
}

/* Create the socket's directory (its last component, 0700) if it is
 * missing, open it without following a symlink, and check what we opened
 * (OpenSSH's StrictModes rule): owned by us or root, and writable by
 * nobody else, so nobody else can plant or swap a name in it.  Every later
 * use goes through the fd.  0755 is fine; 0770 or 1777 (/tmp) are not. */
static int open_dir(pp__control_t *ctl, pp_diag_t *diag) {
  const char *dir = ctl->dir;
  char self[64];
  struct stat st, pst;
  int fd;

  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    pp__diag_set(diag, "cannot create the socket directory %s: %s", dir,
                 strerror(errno));
    return uv_translate_sys_error(errno);
  }
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ELOOP || err == ENOTDIR)
      pp__diag_set(diag,
                   "unsafe socket directory %s: not a directory (a "
                   "symlink?); use a directory of your own for "
                   "control.socket",
                   dir);
    else
      pp__diag_set(diag, "cannot open the socket directory %s: %s", dir,
                   strerror(err));
    return uv_translate_sys_error(err);
  }
  ctl->dirfd = fd;
  if (fstat(fd, &st) != 0) {
    pp__diag_set(diag, "%s: %s", dir, strerror(errno));
    return uv_translate_sys_error(errno);
  }
  if (st.st_uid != geteuid() && st.st_uid != 0) {
    pp__diag_set(diag,
                 "unsafe socket directory %s: owned by uid %u, not by you "
                 "(uid %u) or root; use a directory of your own for "
                 "control.socket",
                 dir, (unsigned)st.st_uid, (unsigned)geteuid());
    return UV_EACCES;
  }
  if ((st.st_mode & 022) && (st.st_mode & S_ISVTX)) {
    pp__diag_set(diag,
                 "unsafe socket directory %s: it is shared (mode %04o), so "
                 "anyone can plant names in it; put the socket in a "
                 "directory of your own, like %s/portpool-%u/",
                 dir, (unsigned)(st.st_mode & 07777),
                 strcmp(dir, "/") == 0 ? "" : dir, (unsigned)geteuid());
    return UV_EACCES;
  }
  if (st.st_mode & 022) {
    pp__diag_set(diag,
                 "unsafe socket directory %s: mode %04o lets %s write in it; "
                 "`chmod go-w %s`, or use a directory of your own for "
                 "control.socket",
                 dir, (unsigned)(st.st_mode & 07777),
                 (st.st_mode & 020) && (st.st_mode & 002) ? "group and others"
                 : (st.st_mode & 020)                     ? "its group"
                                                          : "others",
                 dir);
    return UV_EACCES;
  }
  snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
  ctl->proc = stat(self, &pst) == 0 && pst.st_dev == st.st_dev &&
              pst.st_ino == st.st_ino;
  return 0;
}

/* Take NAME.lock beside the socket and hold it (flock) for the server's
 * life: of two servers starting on one socket, exactly one gets past
 * here, so the stale-socket check and the takeover below are atomic. */
static int take_lock(pp__control_t *ctl, pp_diag_t *diag) {
  struct stat a, b;
  char pid[32];
  ssize_t n;
  int fd, tries;

  for (tries = 0; tries < 16; tries++) {
    fd = openat(ctl->dirfd, ctl->lockname,
                O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      pp__diag_set(diag, "cannot open the lock file %s/%s: %s", ctl->dir,
                   ctl->lockname, strerror(errno));
      return uv_translate_sys_error(errno);
    }
    if (fstat(fd, &a) != 0 || !S_ISREG(a.st_mode)) {
      pp__diag_set(diag, "%s/%s is not a regular file: remove it", ctl->dir,
                   ctl->lockname);
      close(fd);
      return UV_EEXIST;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      memset(pid, 0, sizeof(pid));
      n = pread(fd, pid, sizeof(pid) - 1, 0);
      close(fd);
      if (err != EWOULDBLOCK) {
        pp__diag_set(diag, "cannot lock %s/%s: %s", ctl->dir, ctl->lockname,
                     strerror(err));
        return uv_translate_sys_error(err);
      }
      pp__diag_set(diag,
                   "a pool is already running at %s: another server holds "
                   "%s (pid %d); stop it first, or give this pool another "
                   "control.socket",
                   ctl->path, ctl->path, n > 0 ? atoi(pid) : 0);
      return UV_EADDRINUSE;
    }
    /* The holder removes the file at stop while still holding it: a lock
     * on a file no longer at the name guards nothing, so try again. */
    if (fstatat(ctl->dirfd, ctl->lockname, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
        a.st_dev == b.st_dev && a.st_ino == b.st_ino)
      break;
    close(fd);
    fd = -1;
  }
  if (fd < 0) {
    pp__diag_set(diag, "cannot lock %s/%s: it keeps changing", ctl->dir,
                 ctl->lockname);
    return UV_EAGAIN;
  }
  ctl->lockfd = fd;
  n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
    pp__log(ctl->pool, "control socket: cannot write our pid into %s/%s",
            ctl->dir, ctl->lockname);
  return 0;
}

/* Remove the lock file while we still hold it, then let it go. */
static void ctl_unlock(pp__control_t *ctl) {
  struct stat a, b;

  if (ctl->lockfd < 0)
    return;
  if (fstat(ctl->lockfd, &a) == 0 &&
      fstatat(ctl->dirfd, ctl->lockname, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
      a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    unlinkat(ctl->dirfd, ctl->lockname, 0);
  close(ctl->lockfd);
  ctl->lockfd = -1;
}

/* With the lock held: what is at the socket's name may be replaced only
 * if it is a socket nobody listens on (left by a pool that died). */
static int check_stale(pp__control_t *ctl, pp_diag_t *diag) {
  struct sockaddr_un sa;
  struct stat st;
  int fd, r, err;

  if (fstatat(ctl->dirfd, ctl->name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      return 0;
    pp__diag_set(diag, "%s: %s", ctl->path, strerror(errno));
    return uv_translate_sys_error(errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    pp__diag_set(diag,
                 "%s exists and is not a socket: remove it, or choose "
                 "another control.socket",
                 ctl->path);
    return UV_EEXIST;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (at_path(ctl, ctl->name, sa.sun_path, sizeof(sa.sun_path)) != 0)
    memcpy(sa.sun_path, ctl->path, strlen(ctl->path) + 1);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return uv_translate_sys_error(errno);
  r = connect(fd, (const struct sockaddr *)&sa, sizeof(sa));
  err = errno;
  close(fd);
  /* A server without our lock (an older build) still answers. */
  if (r == 0 || err == EAGAIN) {
    pp__diag_set(diag, "a pool is already running at %s", ctl->path);
    return UV_EADDRINUSE;
  }
  if (err != ECONNREFUSED) {
    pp__diag_set(diag, "%s: %s", ctl->path, strerror(err));
    return uv_translate_sys_error(err);
  }
  return 0; /* stale: the rename below replaces it atomically */
}

/* Bind and listen in a private directory made for the purpose, set the
 * mode there, then rename the socket into place.  Why not umask or
 * chmod: umask is process-wide (another thread of an embedding program
 * would create files with it), and chmod by path follows a symlink that
 * someone swapped in; fchmod on the socket before bind, which Linux
 * honours, still gives only mode & ~umask.  Inside a 0700 directory of
 * ours nobody else can reach the name, so fchmodat on it changes our
 * socket and nothing else; the rename then publishes a socket that
 * already has its mode and is already listening, replacing a stale one in
 * one step.  Returns the
 * listening fd (>= 0) or an error. */
static int bind_private(pp__control_t *ctl, int mode, pp_diag_t *diag) {
  struct sockaddr_un sa;
  char tmp[64];
  struct stat st;
  int fd = -1, tfd = -1, i, r;

  for (i = 0; i < 100; i++) {
    snprintf(tmp, sizeof(tmp), ".pp-bind-%d-%d", (int)getpid(), i);
    if (mkdirat(ctl->dirfd, tmp, 0700) == 0)
      break;
    if (errno != EEXIST) {
      pp__diag_set(diag, "cannot create %s/%s: %s", ctl->dir, tmp,
                   strerror(errno));
      return uv_translate_sys_error(errno);
    }
  }
  if (i == 100) {
    pp__diag_set(diag, "cannot create a private directory in %s", ctl->dir);
    return UV_EEXIST;
  }
  tfd =
      openat(ctl->dirfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (tfd < 0) {
    r = uv_translate_sys_error(errno);
    pp__diag_set(diag, "%s/%s: %s", ctl->dir, tmp, strerror(errno));
    goto fail;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  {
    char rel[80];
    snprintf(rel, sizeof(rel), "%s/s", tmp);
    if ((r = at_path(ctl, rel, sa.sun_path, sizeof(sa.sun_path))) != 0) {
      pp__diag_set(diag, "socket path too long: %s", ctl->path);
      goto fail;
    }
  }
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r = uv_translate_sys_error(errno);
    pp__diag_set(diag, "socket: %s", strerror(errno));
    goto fail;
  }
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    r = uv_translate_sys_error(errno);
    pp__diag_set(diag, "cannot bind %s: %s", ctl->path, strerror(errno));
    goto fail;
  }
  if (fchmodat(tfd, "s", (mode_t)mode, 0) != 0 ||
      fstatat(tfd, "s", &st, AT_SYMLINK_NOFOLLOW) != 0) {
    r = uv_translate_sys_error(errno);
    pp__diag_set(diag, "cannot set the mode of %s: %s", ctl->path,
                 strerror(errno));
    goto fail;
  }
  if (listen(fd, CTL_BACKLOG) != 0) {
    r = uv_translate_sys_error(errno);
    pp__diag_set(diag, "cannot listen on %s: %s", ctl->path, strerror(errno));
    goto fail;
  }
  if (renameat(tfd, "s", ctl->dirfd, ctl->name) != 0) {
    r = uv_translate_sys_error(errno);
    pp__diag_set(diag, "cannot move the socket into place at %s: %s", ctl->path,
                 strerror(errno));
    goto fail;
  }
  ctl->dev = st.st_dev;
  ctl->ino = st.st_ino;
  ctl->bound = 1;
  close(tfd);
  unlinkat(ctl->dirfd, tmp, AT_REMOVEDIR);
  return fd;

fail:
  if (fd >= 0)
    close(fd);
  if (tfd >= 0) {
    unlinkat(tfd, "s", 0);
    close(tfd);
  }
  unlinkat(ctl->dirfd, tmp, AT_REMOVEDIR);
  return r;
}

/* control.allow_uids: uids and user names (checked when the config was
 * loaded; a user removed since is an error here). */
static int read_allow_uids(pp__control_t *ctl, const pp__control_cfg_t *cfg,
                           pp_diag_t *diag) {
  char why[256];
  int i;

  if (cfg->allow_uids_len <= 0)
    return 0;
  ctl->allow = calloc((size_t)cfg->allow_uids_len, sizeof(*ctl->allow));
  if (ctl->allow == NULL)
    return UV_ENOMEM;
  for (i = 0; i < cfg->allow_uids_len; i++) {
    if (pp__uid_parse(cfg->allow_uids[i], &ctl->allow[i], why, sizeof(why)) !=
        0) {
      pp__diag_set(diag, "%s", why);
      if (diag)
        snprintf(diag->key, sizeof(diag->key), "control.allow_uids");
      return PP_ECONFIG;
    }
  }
  ctl->nallow = cfg->allow_uids_len;
  return 0;
}

static void on_handle_close(uv_handle_t *h) { ctl_handle_closed(h->data); }

/* Remove the socket file if it is still the one we bound. */
static void ctl_unlink(pp__control_t *ctl) {
  struct stat st;

  if (!ctl->bound)
    return;
  ctl->bound = 0;
  if (fstatat(ctl->dirfd, ctl->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      st.st_dev == ctl->dev && st.st_ino == ctl->ino)
    unlinkat(ctl->dirfd, ctl->name, 0);
}

/* Split path into ctl->dir and ctl->name, and name the lock file. */
static int split_path(pp__control_t *ctl, const char *path) {
  const char *slash = strrchr(path, '/');
  size_t n;

  if (slash == NULL) {
    ctl->dir = strdup(".");
    ctl->name = strdup(path);
  } else {
    n = slash == path ? 1 : (size_t)(slash - path);
    ctl->dir = strndup(path, n);
    ctl->name = strdup(slash + 1);
  }
  if (ctl->dir == NULL || ctl->name == NULL)
    return UV_ENOMEM;
  ctl->lockname = malloc(strlen(ctl->name) + 6);
  if (ctl->lockname == NULL)
    return UV_ENOMEM;
  sprintf(ctl->lockname, "%s.lock", ctl->name);
  return 0;
}

int pp__control_start(pp_pool_t *pool, pp_diag_t *diag) {
  const pp__control_cfg_t cfg = pp__pool_control_cfg(pool);
  const char *path = cfg.socket;
  struct sockaddr_un sa;
  pp__control_t *ctl;
  int fd = -1, r;

  assert(pp__pool_control(pool) == NULL);
  if (strlen(path) >= sizeof(sa.sun_path)) {
    pp__diag_set(diag, "socket path too long: %s", path);
    return UV_ENAMETOOLONG;
  }
  ctl = calloc(1, sizeof(*ctl));
  if (ctl == NULL)
    return UV_ENOMEM;
  ctl->dirfd = ctl->lockfd = -1;
  ctl->pool = pool;
  ctl->idle_ms = cfg.idle_timeout_ms;
  pp__queue_init(&ctl->conns);
  if ((ctl->path = strdup(path)) == NULL || split_path(ctl, path) != 0) {
    r = UV_ENOMEM;
    goto fail;
  }
  if (ctl->name[0] == '\0') {
    pp__diag_set(diag, "control.socket %s names a directory, not a socket",
                 path);
    r = UV_EINVAL;
    goto fail;
  }
  if ((r = read_allow_uids(ctl, &cfg, diag)) != 0 ||
      (r = open_dir(ctl, diag)) != 0 || (r = take_lock(ctl, diag)) != 0 ||
      (r = check_stale(ctl, diag)) != 0)
    goto fail;
  /* Bound, moded and listening on a plain socket first, so that every
   * failure up to here leaves no uv handle behind. */
  if ((fd = bind_private(ctl, cfg.socket_mode, diag)) < 0) {
    r = fd;
    fd = -1;
    goto fail;
  }
  uv_pipe_init(pp__pool_loop(pool), &ctl->server, 0);
  ctl->server.data = ctl;
  ctl->handles = 1;
  if ((r = uv_pipe_open(&ctl->server, fd)) != 0) {
    pp__diag_set(diag, "control socket: %s", uv_strerror(r));
    goto fail;
  }
  fd = -1; /* the handle owns it now */
  if ((r = uv_listen((uv_stream_t *)&ctl->server, CTL_BACKLOG,
                     on_connection)) != 0) {
    pp__diag_set(diag, "cannot listen on %s: %s", path, uv_strerror(r));
    goto fail;
  }
  if ((r = uv_async_init(pp__pool_loop(pool), &ctl->async, pp__ctl_on_async)) !=
      0) {
    pp__diag_set(diag, "control socket: %s", uv_strerror(r));
    goto fail;
  }
  ctl->async.data = ctl;
  ctl->async_open = 1;
  ctl->handles++;
  uv_timer_init(pp__pool_loop(pool), &ctl->timer);
  ctl->timer.data = ctl;
  ctl->timer_open = 1;
  ctl->handles++;
  pp__pool_set_control(pool, ctl);
  return 0;

fail:
  ctl_unlink(ctl);
  ctl_unlock(ctl);
  if (fd >= 0)
    close(fd);
  pp__pool_set_control(pool, NULL);
  ctl->pool = NULL;
  if (ctl->handles > 0) {
    /* Detached: its close callback frees it without touching the pool. */
    if (ctl->async_open) {
      ctl->async_open = 0;
      uv_close((uv_handle_t *)&ctl->async, on_handle_close);
    }
    uv_close((uv_handle_t *)&ctl->server, on_handle_close);
  } else {
    ctl_free(ctl);
  }
  return r;
}

void pp__control_stop(pp_pool_t *pool, void (*done_cb)(pp_pool_t *)) {
  pp__control_t *ctl = pp__pool_control(pool);
  pp__queue_t *q;
  pp__conn_t *c;

  /* The pool's lock is held: nothing here may call a public pool function.
   * pp_client_close and unsubscribing run later, from each connection's
   * close callback.  Subscriber callbacks also run under the pool's lock,
   * so none runs now, and once every stream is marked dead none will use
   * the async again before it closes. */
  assert(ctl != NULL && !ctl->stopping);
  ctl->stopping = 1;
  ctl->done_cb = done_cb;
  ctl_unlink(ctl);
  ctl_unlock(ctl);
  uv_close((uv_handle_t *)&ctl->server, on_handle_close);
  if (ctl->timer_open) {
    ctl->timer_open = 0;
    uv_close((uv_handle_t *)&ctl->timer, on_handle_close);
  }
  pp__queue_foreach(q, &ctl->conns) {
    c = pp__container_of(q, pp__conn_t, node);
    if (c->tracing && !c->closing) {
      /* What it has buffered (up to "closing") still goes out, if the
       * kernel takes it now; a stop never waits for a slow reader. */
      pp__ctl_trace_flush(c);
      if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) == 0) {
        uv_mutex_lock(&c->tlock);
        c->tdead = 1;
        uv_mutex_unlock(&c->tlock);
        pp__conn_finish(c);
        continue;
      }
    }
    pp__conn_close(c);
  }
  if (ctl->async_open) {
    ctl->async_open = 0;
    uv_close((uv_handle_t *)&ctl->async, on_handle_close);
  }
}
