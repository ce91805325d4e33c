/* client.c -- poolctl's side of the control socket: connect with a plain
 * blocking socket, check the server is our own user's (and learn its pid),
 * send JSON lines, read lines with a bound on time and size.  No libuv
 * here. */
#include "poolctl.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* A reply can carry a worker's reply (max_frame, 64 MiB by default) as
 * JSON; anything longer is refused rather than buffered. */
#define PC_REPLY_MAX (256u << 20)

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The owner of the directory path's socket is in, when nobody else may
 * write in it; else (uid_t)-1, which no server has. */
static uid_t dir_owner(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  struct stat st;
  size_t n = slash == NULL ? 1 : slash == path ? 1 : (size_t)(slash - path);

  if (n >= sizeof(dir))
    return (uid_t)-1;
  memcpy(dir, slash ? path : ".", n);
  dir[n] = '\0';
  if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || (st.st_mode & 022))
    return (uid_t)-1;
  return st.st_uid;
}

int pc_conn_open(const char *path, pc_conn_t *c) {
  struct sockaddr_un sa;
  struct ucred cred;
  socklen_t clen = sizeof(cred);
  int fd, err;

  memset(c, 0, sizeof(*c));
  c->fd = -1;
  c->path = path;
  if (strlen(path) >= sizeof(sa.sun_path)) {
    pc_err("socket path too long: %s", path);
    return PC_EXIT_ERROR;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    pc_err("socket: %s", strerror(errno));
    return PC_EXIT_ERROR;
  }
  while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    err = errno;
    if (err == EINTR)
      continue;
    close(fd);
    if (err == ENOENT || err == ECONNREFUSED) {
      pc_err("no pool running at %s", path);
      return PC_EXIT_NOT_RUNNING;
    }
    pc_err("cannot connect to %s: %s", path, strerror(err));
    return PC_EXIT_ERROR;
  }
  /* The server checks our uid; we check its, so a socket planted by
   * someone else is never trusted with a request: it must run as us,
   * root, or the owner of the directory the socket is in (which
   * pc_check_socket_dir found writable by nobody else). */
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 ||
      (cred.uid != geteuid() && cred.uid != 0 && cred.uid != dir_owner(path))) {
    pc_err("refusing the server at %s: it runs as uid %u, neither you nor "
           "the owner of its directory",
           path, (unsigned)cred.uid);
    close(fd);
    return PC_EXIT_ERROR;
  }
  c->fd = fd;
  c->pid = (int)cred.pid;
  return PC_EXIT_OK;
}

void pc_conn_close(pc_conn_t *c) {
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  free(c->buf);
  c->buf = NULL;
  c->len = c->cap = c->scanned = 0;
}

static int send_all(int fd, const char *p, size_t n) {
  ssize_t w;

  while (n > 0) {
    w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Send req as one line; 0 or an errno value (not printed). */
static int conn_send(pc_conn_t *c, json_t *req) {
  char *text;
  size_t n;
  int err = 0;

  text = json_dumps(req, JSON_COMPACT);
  if (text == NULL)
    return ENOMEM;
  n = strlen(text);
  text[n] = '\n'; /* json_dumps left room: replace the NUL, send n + 1 */
  c->used = 1;
  if (send_all(c->fd, text, n + 1) != 0)
    err = errno;
  free(text);
  return err;
}

int pc_conn_send(pc_conn_t *c, json_t *req) {
  int err = conn_send(c, req);

  if (err == 0)
    return PC_EXIT_OK;
  pc_err("sending to %s: %s", c->path, strerror(err));
  return PC_EXIT_ERROR;
}

int pc_conn_line(pc_conn_t *c, long timeout_ms, int intr, char **line) {
  int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : 0;
  struct pollfd p;
  char *nb, *nl;
  ssize_t r;
  size_t cap;
  int wait;

  /* Drop the line handed out last time. */
  if (c->scanned > 0) {
    memmove(c->buf, c->buf + c->scanned, c->len - c->scanned);
    c->len -= c->scanned;
    c->scanned = 0;
  }
  for (;;) {
    nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
    if (nl) {
      *nl = '\0';
      c->scanned = (size_t)(nl - c->buf) + 1;
      *line = c->buf;
      return PC_EXIT_OK;
    }
    if (c->cap - c->len < 4096) {
      cap = c->cap ? c->cap * 2 : 65536;
      if (cap > PC_REPLY_MAX + 1)
        cap = PC_REPLY_MAX + 1;
      if (cap - c->len <= 1) {
        pc_err("reply from %s longer than %u bytes", c->path, PC_REPLY_MAX);
        return PC_EXIT_ERROR;
      }
      nb = realloc(c->buf, cap);
      if (nb == NULL) {
        pc_err("out of memory");
        return PC_EXIT_ERROR;
      }
      c->buf = nb;
      c->cap = cap;
    }
    p.fd = c->fd;
    p.events = POLLIN;
    wait = -1;
    if (timeout_ms >= 0) {
      int64_t left = deadline - now_ms();
      /* poll() takes an int: a longer wait goes round again. */
      wait = left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
    }
    r = poll(&p, 1, wait);
    if (r < 0 && errno == EINTR) {
      if (intr)
        return PC_EINTR;
      continue;
    }
    if (r == 0 && now_ms() < deadline)
      continue; /* a wait longer than poll() takes */
    if (r == 0)
      return PC_TIMEOUT;
    r = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && errno == ECONNRESET)
      return PC_EOF;
    if (r < 0) {
      pc_err("reading from %s: %s", c->path, strerror(errno));
      return PC_EXIT_ERROR;
    }
    if (r == 0)
      return PC_EOF;
    c->len += (size_t)r;
  }
}

/* The next line as a JSON object, or PC_EOF (not printed) when quiet_eof
 * is set and the server closed the connection. */
static int conn_recv(pc_conn_t *c, long timeout_ms, int quiet_eof,
                     json_t **reply) {
  json_error_t jerr;
  char *line;
  int r;

  *reply = NULL;
  r = pc_conn_line(c, timeout_ms, 0, &line);
  if (r == PC_TIMEOUT) {
    pc_err("no reply from %s within %ld ms", c->path, timeout_ms);
    return PC_EXIT_ERROR;
  }
  if (r == PC_EOF && quiet_eof)
    return PC_EOF;
  if (r == PC_EOF) {
    pc_err("the pool at %s closed the connection without replying", c->path);
    return PC_EXIT_ERROR;
  }
  if (r != PC_EXIT_OK)
    return PC_EXIT_ERROR;
  *reply = json_loads(line, 0, &jerr);
  if (*reply == NULL || !json_is_object(*reply)) {
    pc_err("the pool at %s sent a reply that is not a JSON object", c->path);
    json_decref(*reply);
    *reply = NULL;
    return PC_EXIT_ERROR;
  }
  return PC_EXIT_OK;
}

int pc_conn_recv(pc_conn_t *c, long timeout_ms, json_t **reply) {
  return conn_recv(c, timeout_ms, 0, reply);
}

/* Send req and read its reply; PC_EOF (not printed) as conn_recv. */
static int conn_request(pc_conn_t *c, json_t *req, long timeout_ms,
                        int quiet_eof, json_t **reply) {
  int err;

  *reply = NULL;
  err = conn_send(c, req);
  if (err == EPIPE || err == ECONNRESET) {
    /* Refused at once (too many connections, a uid it does not allow):
     * the server wrote why before it closed; that line is the answer. */
    if (conn_recv(c, 1000, 1, reply) == PC_EXIT_OK)
      return PC_EXIT_OK;
  }
  if (err != 0) {
    pc_err("sending to %s: %s", c->path, strerror(err));
    return PC_EXIT_ERROR;
  }
  return conn_recv(c, timeout_ms, quiet_eof, reply);
}

int pc_conn_request_text(pc_conn_t *c, const char *text, size_t n,
                         long timeout_ms, char **line) {
  char *buf = malloc(n + 1);
  int err = 0, r;

  if (buf == NULL) {
    pc_err("out of memory");
    return PC_EXIT_ERROR;
  }
  memcpy(buf, text, n);
  buf[n] = '\n';
  c->used = 1;
  if (send_all(c->fd, buf, n + 1) != 0)
    err = errno;
  free(buf);
  if (err != 0 && err != EPIPE && err != ECONNRESET) {
    pc_err("sending to %s: %s", c->path, strerror(err));
    return PC_EXIT_ERROR;
  }
  /* After EPIPE, the line the server wrote before closing is the answer. */
  r = pc_conn_line(c, err ? 1000 : timeout_ms, 0, line);
  if (r == PC_EXIT_OK)
    return r;
  if (err != 0)
    pc_err("sending to %s: %s", c->path, strerror(err));
  else if (r == PC_TIMEOUT)
    pc_err("no reply from %s within %ld ms", c->path, timeout_ms);
  else if (r == PC_EOF)
    pc_err("the pool at %s closed the connection without replying", c->path);
  return PC_EXIT_ERROR;
}

int pc_conn_request(pc_conn_t *c, json_t *req, long timeout_ms,
                    json_t **reply) {
  return conn_request(c, req, timeout_ms, 0, reply);
}

/* 1 when the server closed c and nothing it sent is left to read. */
static int closed_by_server(pc_conn_t *c) {
  ssize_t n;
  char b;

  if (c->len > c->scanned)
    return 0;
  n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 ||
         (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static int reconnect(pc_conn_t *c) {
  const char *path = c->path;

  pc_conn_close(c);
  return pc_conn_open(path, c);
}

int pc_conn_simple(pc_conn_t *c, const char *op, long timeout_ms,
                   json_t **out) {
  json_t *req = json_pack("{s:s}", "op", op), *reply = NULL;
  int idem = strcmp(op, "status") == 0 || strcmp(op, "ping") == 0;
  int r;

  if (out)
    *out = NULL;
  if (req == NULL) {
    pc_err("out of memory");
    return PC_EXIT_ERROR;
  }
  /* A connection kept between status requests (top, --watch, the waits
   * of the operating commands) may have been closed for being idle. */
  if (idem && c->used && closed_by_server(c) &&
      (r = reconnect(c)) != PC_EXIT_OK) {
    json_decref(req);
    return r;
  }
  r = conn_request(c, req, timeout_ms, idem, &reply);
  if (r == PC_EOF) { /* closed just as we sent: once more */
    if ((r = reconnect(c)) == PC_EXIT_OK)
      r = conn_request(c, req, timeout_ms, 0, &reply);
  }
  json_decref(req);
  if (r != PC_EXIT_OK)
    return r;
  if (!json_is_true(json_object_get(reply, "ok"))) {
    pc_print_reply_error(reply);
    json_decref(reply);
    return PC_EXIT_ERROR;
  }
  if (out)
    *out = reply;
  else
    json_decref(reply);
  return PC_EXIT_OK;
}

int pc_request(const char *path, json_t *req, long timeout_ms, json_t **reply) {
  pc_conn_t c;
  int r;

  *reply = NULL;
  if ((r = pc_conn_open(path, &c)) != PC_EXIT_OK)
    return r;
  r = pc_conn_request(&c, req, timeout_ms, reply);
  pc_conn_close(&c);
  return r;
}

void pc_print_reply_error(json_t *reply) {
  const char *err = json_string_value(json_object_get(reply, "error"));
  const char *msg = json_string_value(json_object_get(reply, "message"));

  pc_err("%s (%s)", msg ? msg : "request failed", err ? err : "error");
}
