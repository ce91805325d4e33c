/* control.c -- owns the control socket: a Unix-socket server on the pool's
 * loop speaking newline-delimited JSON (docs/protocol.md), the socket
 * file's life (0700 directory, stale files, unlink at stop), the peer's uid
 * check, and each connection's bounded reading and writing of lines.  What
 * a request does lives in control_ops.c, its parsing in control_proto.c.
 * Does not own workers or leases. */
#include "control.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
  json_decref(c->call_id);
  free(c->payload);
  free(c->buf);
  free(c);
}

static void ctl_handle_closed(pp__control_t *ctl) {
  pp_pool_t *pool = ctl->pool;
  void (*done)(pp_pool_t *) = ctl->done_cb;

  assert(ctl->handles > 0);
  if (--ctl->handles > 0)
    return;
  free(ctl->path);
  free(ctl);
  if (pool == NULL)
    return; /* detached: a failed start, the pool is already gone */
  pool->control = NULL;
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
  ctl->nconns--;
  c->ctl = NULL;
  ctl_handle_closed(ctl);
  pp__conn_unref(c);
}

void pp__conn_close(pp__conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  if (c->tbuf) {
    uv_mutex_lock(&c->tlock);
    c->tdead = 1;
    uv_mutex_unlock(&c->tlock);
  }
  if (c->reading)
    uv_read_stop((uv_stream_t *)&c->pipe);
  c->reading = 0;
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
    pool->opts.control(pool, "stop", &d, pool->opts.control_data);
  } else if (w->signal_after) {
    kill(getpid(), w->signal_after);
  }
  free(w);
  c->writes--;
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
 * request's "id" when it had one. */
void pp__conn_send(pp__conn_t *c, json_t *obj, json_t *id, int signal_after) {
  char *s;

  if (obj == NULL) {
    pp__conn_close(c);
    return;
  }
  if (id)
    json_object_set(obj, "id", id);
  s = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  if (s == NULL) {
    pp__conn_close(c);
    return;
  }
  pp__conn_write(c, s, strlen(s), 1, signal_after);
  free(s);
}

void pp__conn_send_error(pp__conn_t *c, json_t *id, const char *name,
                         const char *message, json_t *detail) {
  json_t *o =
      json_pack("{s:b, s:s, s:s}", "ok", 0, "error", name, "message", message);

  if (o && detail)
    json_object_set(o, "detail", detail);
  json_decref(detail);
  pp__conn_send(c, o, id, 0);
}

void pp__conn_send_code(pp__conn_t *c, json_t *id, int r) {
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

static int uid_allowed(const pp__control_t *ctl, uid_t uid) {
  int i;

  if (uid == geteuid())
    return 1;
  for (i = 0; i < ctl->nallow; i++)
    if (ctl->allow[i] == (uint32_t)uid)
      return 1;
  return 0;
}

static void on_connection(uv_stream_t *server, int status) {
  pp__control_t *ctl = server->data;
  pp_pool_t *pool = ctl->pool;
  struct ucred cred;
  socklen_t clen = sizeof(cred);
  uv_os_fd_t fd;
  pp__conn_t *c;
  char msg[128];
  int r;

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
  uv_pipe_init(pool->loop, &c->pipe, 0);
  c->pipe.data = c;
  ctl->handles++;
  ctl->nconns++;
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
    pp__conn_send_error(c, NULL, "EPERM", "cannot read the peer's credentials",
                        NULL);
    pp__conn_finish(c);
    return;
  }
  if (!uid_allowed(ctl, cred.uid)) {
    snprintf(msg, sizeof(msg), "uid %u is not allowed", (unsigned)cred.uid);
    pp__conn_send_error(c, NULL, "EPERM", msg, NULL);
    pp__conn_finish(c);
    return;
  }
  if (ctl->nconns > CTL_CONN_MAX) {
    pp__conn_send_error(c, NULL, "EBUSY", "too many control connections", NULL);
    pp__conn_finish(c);
    return;
  }
  if ((r = pp_client_open(pool, &c->client)) != 0) {
    c->client = NULL;
    pp__conn_send_error(c, NULL, pp_err_name(r), pp_strerror(r), NULL);
    pp__conn_finish(c);
    return;
  }
  conn_update_reading(c);
}

/* ------------------------------------------------------- start and stop */

/* Create the socket's directory (the last component only) as 0700. */
static int make_parent(const char *path, pp_diag_t *diag) {
  const char *slash = strrchr(path, '/');
  char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
  size_t n;

  if (slash == NULL || slash == path)
    return 0;
  n = (size_t)(slash - path);
  memcpy(dir, path, n);
  dir[n] = '\0';
  if (mkdir(dir, 0700) == 0 || errno == EEXIST)
    return 0;
  pp__diag_set(diag, "cannot create the socket directory %s: %s", dir,
               strerror(errno));
  return uv_translate_sys_error(errno);
}

/* A socket file left by a pool that died is removed; one that answers is a
 * running pool. */
static int clear_stale(const char *path, const struct sockaddr_un *sa,
                       pp_diag_t *diag) {
  struct stat st;
  int fd, r, err;

  if (lstat(path, &st) != 0) {
    if (errno == ENOENT)
      return 0;
    pp__diag_set(diag, "%s: %s", path, strerror(errno));
    return uv_translate_sys_error(errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    pp__diag_set(diag, "%s exists and is not a socket", path);
    return UV_EEXIST;
  }
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return uv_translate_sys_error(errno);
  r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
  err = errno;
  close(fd);
  if (r == 0 || err == EAGAIN) {
    pp__diag_set(diag, "a pool is already running at %s", path);
    return UV_EADDRINUSE;
  }
  if (err != ECONNREFUSED) {
    pp__diag_set(diag, "%s: %s", path, strerror(err));
    return uv_translate_sys_error(err);
  }
  if (unlink(path) != 0 && errno != ENOENT) {
    pp__diag_set(diag, "cannot remove the stale socket %s: %s", path,
                 strerror(errno));
    return uv_translate_sys_error(errno);
  }
  return 0;
}

/* control.allow_uids, when this build's config has the key. */
static int read_allow_uids(pp__control_t *ctl, const pp_config_t *cfg,
                           pp_diag_t *diag) {
  char text[2048];
  int n;

  if (pp_config_get(cfg, "control.allow_uids", text, sizeof(text)) != 0)
    return 0; /* no such key (yet): only our own uid */
  n = pp__ctl_parse_uids(text, ctl->allow, CTL_ALLOW_MAX);
  if (n < 0) {
    pp__diag_set(diag,
                 "control.allow_uids: expected a list of at most %d numeric "
                 "uids, got %.200s",
                 CTL_ALLOW_MAX, text);
    if (diag)
      snprintf(diag->key, sizeof(diag->key), "control.allow_uids");
    return PP_ECONFIG;
  }
  ctl->nallow = n;
  return 0;
}

static void on_handle_close(uv_handle_t *h) { ctl_handle_closed(h->data); }

/* Remove the socket file if it is still the one we bound. */
static void ctl_unlink(pp__control_t *ctl) {
  struct stat st;

  if (!ctl->bound)
    return;
  ctl->bound = 0;
  if (lstat(ctl->path, &st) == 0 && st.st_dev == ctl->dev &&
      st.st_ino == ctl->ino)
    unlink(ctl->path);
}

int pp__control_start(pp_pool_t *pool, pp_diag_t *diag) {
  const char *path = pool->cfg->socket;
  struct sockaddr_un sa;
  pp__control_t *ctl;
  struct stat st;
  int fd = -1, r;

  assert(pool->control == NULL);
  if (strlen(path) >= sizeof(sa.sun_path)) {
    pp__diag_set(diag, "socket path too long: %s", path);
    return UV_ENAMETOOLONG;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  ctl = calloc(1, sizeof(*ctl));
  if (ctl == NULL || (ctl->path = strdup(path)) == NULL) {
    free(ctl);
    return UV_ENOMEM;
  }
  pp__queue_init(&ctl->conns);
  if ((r = read_allow_uids(ctl, pool->cfg, diag)) != 0 ||
      (r = make_parent(path, diag)) != 0 ||
      (r = clear_stale(path, &sa, diag)) != 0)
    goto fail;
  /* Bind, chmod and listen on a plain socket first, so that every failure
   * up to here leaves no uv handle behind. */
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r = uv_translate_sys_error(errno);
    pp__diag_set(diag, "socket: %s", strerror(errno));
    goto fail;
  }
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    r = uv_translate_sys_error(errno);
    if (errno == EADDRINUSE)
      pp__diag_set(diag, "a pool is already running at %s", path);
    else
      pp__diag_set(diag, "cannot bind %s: %s", path, strerror(errno));
    goto fail;
  }
  if (lstat(path, &st) == 0) {
    ctl->dev = st.st_dev;
    ctl->ino = st.st_ino;
    ctl->bound = 1;
  }
  /* Nobody can connect before listen(), so the umask's mode never shows. */
  if (chmod(path, (mode_t)pool->cfg->socket_mode) != 0) {
    r = uv_translate_sys_error(errno);
    pp__diag_set(diag, "cannot chmod %s: %s", path, strerror(errno));
    goto fail;
  }
  if (listen(fd, CTL_BACKLOG) != 0) {
    r = uv_translate_sys_error(errno);
    pp__diag_set(diag, "cannot listen on %s: %s", path, strerror(errno));
    goto fail;
  }
  uv_pipe_init(pool->loop, &ctl->server, 0);
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
  if ((r = uv_async_init(pool->loop, &ctl->async, pp__ctl_on_async)) != 0) {
    pp__diag_set(diag, "control socket: %s", uv_strerror(r));
    goto fail;
  }
  ctl->async.data = ctl;
  ctl->async_open = 1;
  ctl->handles++;
  ctl->pool = pool;
  pool->control = ctl;
  return 0;

fail:
  ctl_unlink(ctl);
  if (fd >= 0)
    close(fd);
  pool->control = NULL;
  if (ctl->handles > 0) {
    /* Detached: its close callback frees it without touching the pool. */
    ctl->pool = NULL;
    uv_close((uv_handle_t *)&ctl->server, on_handle_close);
  } else {
    free(ctl->path);
    free(ctl);
  }
  return r;
}

void pp__control_stop(pp_pool_t *pool, void (*done_cb)(pp_pool_t *)) {
  pp__control_t *ctl = pool->control;
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
  uv_close((uv_handle_t *)&ctl->server, on_handle_close);
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
