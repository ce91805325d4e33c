/* control.c -- owns the control socket: a Unix-socket server on the pool's
 * loop speaking newline-delimited JSON (docs/protocol.md), with one
 * pp_client_t per connection so a peer that hangs up mid-call has its wait
 * withdrawn and its lease reclaimed.  Does not own workers or leases; it
 * borrows them through the public event-loop face like any other client. */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The longest request line, without its '\n'.  The read buffer of a
 * connection never holds more than this plus the newline. */
#define CTL_LINE_MAX (1u << 20)
#define CTL_BUF_MAX (CTL_LINE_MAX + 1)
#define CTL_BUF_MIN 4096
/* Reply bytes the kernel has not taken yet, past which a connection stops
 * reading requests until its peer catches up. */
#define CTL_WQUEUE_MAX (4u << 20)
#define CTL_CONN_MAX 256
#define CTL_BACKLOG 128

typedef struct pp__conn pp__conn_t;
typedef struct pp__control pp__control_t;

struct pp__control {
  pp_pool_t *pool; /* NULL when detached after a failed start */
  uv_pipe_t server;
  char *path;
  dev_t dev; /* the socket file we bound: unlinked only if */
  ino_t ino; /* it is still ours */
  int bound;
  unsigned handles; /* open uv handles: the server + connections */
  int nconns;
  pp__queue_t conns;
  int stopping;
  void (*done_cb)(pp_pool_t *);
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
  int closing;         /* uv_close called: never write again */
  int finishing;       /* close once the queued replies are written */
  int eof;             /* the peer shut down its writing side */
  int reading;
  unsigned writes;
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
  json_t *call_id;
};

typedef struct {
  uv_write_t req;
  pp__conn_t *conn;
  char data[];
} ctl_write_t;

static void conn_pump(pp__conn_t *c);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

/* ------------------------------------------------------------ connections */

static void conn_unref(pp__conn_t *c) {
  assert(c->refs > 0);
  if (--c->refs > 0)
    return;
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
  conn_unref(c);
}

static void conn_close(pp__conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  if (c->reading)
    uv_read_stop((uv_stream_t *)&c->pipe);
  c->reading = 0;
  uv_close((uv_handle_t *)&c->pipe, on_conn_close);
}

/* Close once every queued reply has been written. */
static void conn_finish(pp__conn_t *c) {
  c->finishing = 1;
  if (c->reading)
    uv_read_stop((uv_stream_t *)&c->pipe);
  c->reading = 0;
  if (c->writes == 0)
    conn_close(c);
}

static void on_write(uv_write_t *req, int status) {
  ctl_write_t *w = (ctl_write_t *)req;
  pp__conn_t *c = w->conn;

  free(w);
  c->writes--;
  if (!c->closing) {
    if (status < 0)
      conn_close(c); /* the peer is gone */
    else if (c->finishing && c->writes == 0)
      conn_close(c);
    else
      conn_pump(c); /* the write queue may have drained */
  }
  conn_unref(c);
}

/* Queue one reply line (text + '\n').  Never writes to a closing
 * connection.  A failure closes the connection. */
static void conn_write(pp__conn_t *c, const char *text, size_t len) {
  ctl_write_t *w;
  uv_buf_t b;

  if (c->closing)
    return;
  w = malloc(sizeof(*w) + len + 1);
  if (w == NULL) {
    conn_close(c);
    return;
  }
  memcpy(w->data, text, len);
  w->data[len] = '\n';
  w->conn = c;
  b = uv_buf_init(w->data, (unsigned)(len + 1));
  if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_write) != 0) {
    free(w);
    conn_close(c);
    return;
  }
  c->refs++;
  c->writes++;
}

/* Serialise obj (a reference is stolen) as one reply line, with the
 * request's "id" when it had one. */
static void conn_send(pp__conn_t *c, json_t *obj, json_t *id) {
  char *s;

  if (obj == NULL) {
    conn_close(c);
    return;
  }
  if (id)
    json_object_set(obj, "id", id);
  s = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  if (s == NULL) {
    conn_close(c);
    return;
  }
  conn_write(c, s, strlen(s));
  free(s);
}

static void conn_send_error(pp__conn_t *c, json_t *id, const char *name,
                            const char *message, json_t *detail) {
  json_t *o =
      json_pack("{s:b, s:s, s:s}", "ok", 0, "error", name, "message", message);

  if (o && detail)
    json_object_set(o, "detail", detail);
  json_decref(detail);
  conn_send(c, o, id);
}

/* --------------------------------------------------------------- the call */

static void call_end(pp__conn_t *c) {
  c->busy = 0;
  free(c->payload);
  c->payload = NULL;
  json_decref(c->call_id);
  c->call_id = NULL;
}

static void call_fail(pp__conn_t *c, int status, const pp_diag_t *diag) {
  const char *msg =
      diag && diag->message[0] ? diag->message : pp_strerror(status);
  conn_send_error(c, c->call_id, pp_err_name(status), msg, NULL);
}

static void call_reply(pp__conn_t *c, int status, const char *reply, size_t len,
                       const pp_diag_t *diag) {
  json_t *v, *type, *msg;
  char text[600];

  v = len > 0 ? json_loadb(reply, len, JSON_DECODE_ANY, NULL) : NULL;
  if (status == 0) {
    /* Workers normally reply JSON; a raw handler's bytes go as text. */
    if (v == NULL) {
      v = json_pack("{s:b, s:s%, s:b}", "ok", 1, "reply", reply, len, "raw", 1);
      if (v == NULL)
        conn_send_error(c, c->call_id, pp_err_name(PP_EPROTO),
                        "the reply is neither JSON nor UTF-8 text", NULL);
      else
        conn_send(c, v, c->call_id);
    } else
      conn_send(c, json_pack("{s:b, s:o}", "ok", 1, "reply", v), c->call_id);
    return;
  }
  if (status == PP_EHANDLER && json_is_object(v)) {
    type = json_object_get(v, "type");
    msg = json_object_get(v, "message");
    snprintf(text, sizeof(text), "%s: %s",
             json_is_string(type) ? json_string_value(type) : "Error",
             json_is_string(msg) ? json_string_value(msg) : "");
    conn_send_error(c, c->call_id, pp_err_name(status), text, v);
    return;
  }
  json_decref(v);
  call_fail(c, status, diag);
}

static void on_reply(pp_lease_t *lease, int status, const char *reply,
                     size_t len, const pp_diag_t *diag, void *data) {
  pp__conn_t *c = data;

  /* After the client closed, the lease was reclaimed with it. */
  if (!c->client_closed)
    pp_checkin(lease);
  if (!c->closing)
    call_reply(c, status, reply, len, diag);
  call_end(c);
  conn_pump(c);
  conn_unref(c);
}

static void on_checkout(pp_lease_t *lease, int status, const pp_diag_t *diag,
                        void *data) {
  pp__conn_t *c = data;
  int64_t ms = -1, spent;
  int r;

  if (status != 0) {
    if (!c->closing)
      call_fail(c, status, diag);
    goto done;
  }
  if (c->client_closed)
    goto done; /* granted, then reclaimed with the client: not ours */
  if (c->closing) {
    pp_checkin(lease);
    goto done;
  }
  if (c->timeout_ms >= 0) {
    /* timeout_ms bounds the whole call; 0 would mean no request timeout. */
    spent = (int64_t)((pp__now_ns() - c->call_start_ns) / 1000000);
    ms = c->timeout_ms - spent > 0 ? c->timeout_ms - spent : 1;
  }
  r = pp_request(lease, c->payload, c->payload_len, ms, on_reply, c);
  if (r == 0)
    return; /* our reference passes to on_reply */
  pp_checkin(lease);
  call_fail(c, r, NULL);
done:
  call_end(c);
  conn_pump(c);
  conn_unref(c);
}

static void op_call(pp__conn_t *c, json_t *req, json_t *id) {
  json_t *payload = json_object_get(req, "payload");
  json_t *tmo = json_object_get(req, "timeout_ms");
  int r;

  if (payload == NULL) {
    conn_send_error(c, id, "EINVAL", "call needs a \"payload\"", NULL);
    return;
  }
  c->timeout_ms = -1;
  if (tmo && !json_is_null(tmo)) {
    if (!json_is_integer(tmo) || json_integer_value(tmo) < 0) {
      conn_send_error(c, id, "EINVAL", "\"timeout_ms\" must be an integer >= 0",
                      NULL);
      return;
    }
    c->timeout_ms = json_integer_value(tmo);
  }
  c->payload = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY);
  if (c->payload == NULL) {
    conn_send_error(c, id, "ENOMEM", pp_strerror(UV_ENOMEM), NULL);
    return;
  }
  c->payload_len = strlen(c->payload);
  c->call_id = json_incref(id);
  c->call_start_ns = pp__now_ns();
  c->busy = 1;
  c->refs++;
  r = pp_checkout(c->pool, c->client, c->timeout_ms, on_checkout, c);
  if (r != 0) {
    c->refs--;
    call_fail(c, r, NULL);
    call_end(c);
  }
}

/* ----------------------------------------------------------- other ops */

static void op_status(pp__conn_t *c, json_t *id) {
  pp_status_t st;
  char *js, *line = NULL, *ids = NULL;
  size_t n;
  int r;

  if ((r = pp_pool_status(c->pool, &st)) != 0) {
    conn_send_error(c, id, pp_err_name(r), pp_strerror(r), NULL);
    return;
  }
  js = pp_status_to_json(&st);
  pp_status_free(&st);
  if (id)
    ids = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
  n = (js ? strlen(js) : 0) + (ids ? strlen(ids) : 0) + 40;
  if (js)
    line = malloc(n);
  if (line == NULL || (id && ids == NULL)) {
    conn_send_error(c, id, "ENOMEM", pp_strerror(UV_ENOMEM), NULL);
  } else {
    /* The status object is already JSON text: splice it in. */
    if (ids)
      snprintf(line, n, "{\"ok\":true,\"id\":%s,\"status\":%s}", ids, js);
    else
      snprintf(line, n, "{\"ok\":true,\"status\":%s}", js);
    conn_write(c, line, strlen(line));
  }
  free(line);
  free(ids);
  free(js);
}

static void handle_line(pp__conn_t *c, const char *line, size_t n) {
  json_error_t jerr;
  json_t *req, *op, *id;
  const char *name;
  char msg[300];

  while (n > 0 &&
         (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
    n--;
  if (n == 0)
    return; /* blank lines are allowed, for hand-typed sessions */
  req = json_loadb(line, n, JSON_DECODE_ANY, &jerr);
  if (req == NULL) {
    snprintf(msg, sizeof(msg), "request is not JSON: %s (column %d)", jerr.text,
             jerr.column);
    conn_send_error(c, NULL, "EINVAL", msg, NULL);
    conn_finish(c);
    return;
  }
  id = json_is_object(req) ? json_object_get(req, "id") : NULL;
  op = json_is_object(req) ? json_object_get(req, "op") : NULL;
  name = json_is_string(op) ? json_string_value(op) : NULL;
  if (!json_is_object(req)) {
    conn_send_error(c, NULL, "EINVAL", "a request must be a JSON object", NULL);
  } else if (name == NULL) {
    conn_send_error(c, id, "EINVAL", "a request needs a string \"op\"", NULL);
  } else if (strcmp(name, "ping") == 0) {
    conn_send(c, json_pack("{s:b}", "ok", 1), id);
  } else if (strcmp(name, "status") == 0) {
    op_status(c, id);
  } else if (strcmp(name, "call") == 0) {
    op_call(c, req, id);
  } else {
    snprintf(msg, sizeof(msg),
             "unknown op \"%.200s\" (expected ping, status or call)", name);
    conn_send_error(c, id, "EINVAL", msg, NULL);
  }
  json_decref(req);
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
      conn_close(c);
      return;
    }
    c->reading = 1;
  } else if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->pipe);
    c->reading = 0;
  }
}

/* Serve the complete lines in the buffer, one at a time, in order; stop at
 * a call until it is answered. */
static void conn_pump(pp__conn_t *c) {
  char *line, *nl;
  size_t avail, n;

  while (!c->closing && !c->finishing && !c->busy &&
         uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) <
             CTL_WQUEUE_MAX) {
    line = c->buf + c->start;
    avail = c->len - c->start;
    nl = memchr(line + c->scanned, '\n', avail - c->scanned);
    if (nl == NULL) {
      c->scanned = avail;
      if (avail > CTL_LINE_MAX) {
        conn_send_error(c, NULL, "E2BIG",
                        "request line longer than 1048576 bytes", NULL);
        conn_finish(c);
        return;
      }
      if (!c->eof)
        break;
      /* The peer is done sending: an unterminated last line counts. */
      c->start = c->len;
      c->scanned = 0;
      if (avail > 0) {
        handle_line(c, line, avail);
        continue;
      }
      conn_finish(c);
      return;
    }
    n = (size_t)(nl - line);
    c->start += n + 1;
    c->scanned = 0;
    if (c->start == c->len)
      c->start = c->len = 0; /* nothing left: the line stays valid below */
    handle_line(c, line, n);
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
    conn_pump(c);
    return;
  }
  if (nread == 0)
    return;
  c->reading = 0; /* libuv stopped reading at EOF or error */
  if (nread == UV_EOF && !peer_gone(c)) {
    /* Half-closed (`socat`, `nc -N`): answer what was sent, then close. */
    c->eof = 1;
    conn_pump(c);
    return;
  }
  /* Gone: closing the client withdraws its checkout or reclaims its lease,
   * whatever the pool is doing for it. */
  conn_close(c);
}

/* ------------------------------------------------------------- accepting */

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
    conn_close(c);
    return;
  }
  /* Only our own user may drive the pool, whatever the socket's mode. */
  if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
    conn_send_error(c, NULL, "EPERM", "cannot read the peer's credentials",
                    NULL);
    conn_finish(c);
    return;
  }
  if (cred.uid != geteuid()) {
    snprintf(msg, sizeof(msg), "uid %u is not allowed", (unsigned)cred.uid);
    conn_send_error(c, NULL, "EPERM", msg, NULL);
    conn_finish(c);
    return;
  }
  if (ctl->nconns > CTL_CONN_MAX) {
    conn_send_error(c, NULL, "EBUSY", "too many control connections", NULL);
    conn_finish(c);
    return;
  }
  if ((r = pp_client_open(pool, &c->client)) != 0) {
    c->client = NULL;
    conn_send_error(c, NULL, pp_err_name(r), pp_strerror(r), NULL);
    conn_finish(c);
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

static void on_server_close(uv_handle_t *h) { ctl_handle_closed(h->data); }

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
  if ((r = make_parent(path, diag)) != 0 ||
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
    uv_close((uv_handle_t *)&ctl->server, on_server_close);
  } else {
    free(ctl->path);
    free(ctl);
  }
  return r;
}

void pp__control_stop(pp_pool_t *pool, void (*done_cb)(pp_pool_t *)) {
  pp__control_t *ctl = pool->control;
  pp__queue_t *q;

  /* The pool's lock is held: nothing here may call a public pool function.
   * pp_client_close runs later, from each connection's close callback. */
  assert(ctl != NULL && !ctl->stopping);
  ctl->stopping = 1;
  ctl->done_cb = done_cb;
  ctl_unlink(ctl);
  uv_close((uv_handle_t *)&ctl->server, on_server_close);
  pp__queue_foreach(q, &ctl->conns) {
    conn_close(pp__container_of(q, pp__conn_t, node));
  }
}
