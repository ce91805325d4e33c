/* client.c -- poolctl's side of the control socket: connect with a plain
 * blocking socket, check the server is our own user's, send one JSON line,
 * read one JSON line with a bound.  No libuv here. */
#include "poolctl/poolctl.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

static int pc_connect(const char *path, int *out) {
  struct sockaddr_un sa;
  struct ucred cred;
  socklen_t clen = sizeof(cred);
  int fd, err;

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
   * someone else is never trusted with a request. */
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 ||
      cred.uid != geteuid()) {
    pc_err("refusing the server at %s: it does not run as your user", path);
    close(fd);
    return PC_EXIT_ERROR;
  }
  *out = fd;
  return PC_EXIT_OK;
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

/* Read up to the first '\n' into a malloc'd, NUL-terminated string. */
static int read_line(int fd, const char *path, long timeout_ms, char **out) {
  int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : 0;
  size_t len = 0, cap = 0, scanned = 0;
  char *buf = NULL, *nb, *nl;
  struct pollfd p;
  ssize_t r;
  int wait;

  for (;;) {
    if (cap - len < 4096) {
      cap = cap ? cap * 2 : 65536;
      if (cap > PC_REPLY_MAX + 1)
        cap = PC_REPLY_MAX + 1;
      if (cap - len == 0) {
        pc_err("reply from %s longer than %u bytes", path, PC_REPLY_MAX);
        goto fail;
      }
      nb = realloc(buf, cap);
      if (nb == NULL) {
        pc_err("out of memory");
        goto fail;
      }
      buf = nb;
    }
    p.fd = fd;
    p.events = POLLIN;
    wait = -1;
    if (timeout_ms >= 0) {
      wait = (int)(deadline - now_ms());
      if (wait < 0)
        wait = 0;
    }
    r = poll(&p, 1, wait);
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0) {
      pc_err("no reply from %s within %ld ms", path, timeout_ms);
      goto fail;
    }
    r = read(fd, buf + len, cap - len - 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      pc_err("reading from %s: %s", path, strerror(errno));
      goto fail;
    }
    if (r == 0) {
      pc_err("the pool at %s closed the connection without replying", path);
      goto fail;
    }
    len += (size_t)r;
    nl = memchr(buf + scanned, '\n', len - scanned);
    if (nl) {
      *nl = '\0';
      *out = buf;
      return PC_EXIT_OK;
    }
    scanned = len;
  }
fail:
  free(buf);
  return PC_EXIT_ERROR;
}

int pc_request(const char *path, json_t *req, long timeout_ms, json_t **reply) {
  json_error_t jerr;
  char *line = NULL, *text;
  size_t n;
  int fd = -1, r;

  *reply = NULL;
  if ((r = pc_connect(path, &fd)) != PC_EXIT_OK)
    return r;
  r = PC_EXIT_ERROR;
  text = json_dumps(req, JSON_COMPACT);
  if (text == NULL) {
    pc_err("out of memory");
    goto out;
  }
  n = strlen(text);
  text[n] = '\n'; /* json_dumps left room: replace the NUL, send n + 1 */
  if (send_all(fd, text, n + 1) != 0) {
    pc_err("sending to %s: %s", path, strerror(errno));
    free(text);
    goto out;
  }
  free(text);
  if (read_line(fd, path, timeout_ms, &line) != PC_EXIT_OK)
    goto out;
  *reply = json_loads(line, 0, &jerr);
  if (*reply == NULL || !json_is_object(*reply)) {
    pc_err("the pool at %s sent a reply that is not a JSON object", path);
    json_decref(*reply);
    *reply = NULL;
    goto out;
  }
  r = PC_EXIT_OK;
out:
  free(line);
  if (fd >= 0)
    close(fd);
  return r;
}

void pc_print_reply_error(json_t *reply) {
  const char *err = json_string_value(json_object_get(reply, "error"));
  const char *msg = json_string_value(json_object_get(reply, "message"));

  pc_err("%s (%s)", msg ? msg : "request failed", err ? err : "error");
}
