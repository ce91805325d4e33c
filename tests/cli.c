/* cli.c -- child processes, a serve child's output lines, and raw control
 * socket clients for the poolctl suites (cli.h). */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int64_t cli_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cli_remaining(int64_t deadline) {
  int64_t left = deadline - cli_now_ms();
  return left > 0 ? (int)left : 0;
}

/* CLI_WAIT_MS, scaled for slow runs such as valgrind's. */
static int wait_ms(void) { return CLI_WAIT_MS * test_time_scale(); }

const char *cli_poolctl_path(void) {
  const char *p = getenv("PP_POOLCTL");
  assert_non_null(p);
  return p;
}

pid_t cli_spawn(char *const argv[], int *out, int *err) {
  posix_spawn_file_actions_t fa;
  int o[2] = {-1, -1}, e[2] = {-1, -1};
  pid_t pid;

  if (out)
    assert_int_equal(pipe2(o, O_CLOEXEC), 0);
  if (err)
    assert_int_equal(pipe2(e, O_CLOEXEC), 0);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (out)
    posix_spawn_file_actions_adddup2(&fa, o[1], 1);
  else
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  if (err)
    posix_spawn_file_actions_adddup2(&fa, e[1], 2);
  else if (!getenv("PP_TEST_VERBOSE"))
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  assert_int_equal(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  if (out) {
    close(o[1]);
    *out = o[0];
  }
  if (err) {
    close(e[1]);
    *err = e[0];
  }
  return pid;
}

int cli_wait_exit(pid_t pid) {
  int st;

  while (waitpid(pid, &st, 0) < 0)
    assert_int_equal(errno, EINTR);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

static void append(char **s, size_t *n, const char *p, size_t len) {
  *s = realloc(*s, *n + len + 1);
  assert_non_null(*s);
  memcpy(*s + *n, p, len);
  *n += len;
  (*s)[*n] = '\0';
}

void cli_run_argv(cli_run_t *r, char *const argv[]) {
  int64_t deadline = cli_now_ms() + wait_ms();
  struct pollfd p[2];
  size_t nout = 0, nerr = 0;
  int out, err, open_fds = 2, i;
  char buf[4096];
  ssize_t got;
  pid_t pid;

  r->out = calloc(1, 1);
  r->err = calloc(1, 1);
  pid = cli_spawn(argv, &out, &err);
  p[0].fd = out;
  p[1].fd = err;
  while (open_fds > 0) {
    p[0].events = p[1].events = POLLIN;
    i = poll(p, 2, cli_remaining(deadline));
    if (i < 0 && errno == EINTR)
      continue;
    if (i == 0) {
      kill(pid, SIGKILL);
      fail_msg("%s did not finish within %d ms", argv[0], wait_ms());
    }
    for (i = 0; i < 2; i++) {
      if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      got = read(p[i].fd, buf, sizeof(buf));
      if (got > 0) {
        if (i == 0)
          append(&r->out, &nout, buf, (size_t)got);
        else
          append(&r->err, &nerr, buf, (size_t)got);
      } else if (got == 0 || errno != EINTR) {
        close(p[i].fd);
        p[i].fd = -1;
        open_fds--;
      }
    }
  }
  r->code = cli_wait_exit(pid);
  if (getenv("PP_TEST_VERBOSE"))
    fprintf(stderr, "  %s %s ... -> %d\n  out: %s  err: %s", argv[0],
            argv[1] ? argv[1] : "", r->code, r->out, r->err);
}

void cli_poolctl(cli_run_t *r, ...) {
  char *argv[40];
  va_list ap;
  int n = 0;

  argv[n++] = (char *)cli_poolctl_path();
  va_start(ap, r);
  while ((argv[n] = va_arg(ap, char *)) != NULL) {
    n++;
    assert_true(n < 37);
  }
  va_end(ap);
  /* The suites run as root in CI: a pool's workers may too. */
  if (n > 1 && strcmp(argv[1], "serve") == 0) {
    argv[n++] = "--set";
    argv[n++] = "worker.allow_root=true";
    argv[n] = NULL;
  }
  cli_run_argv(r, argv);
}

void cli_run_free(cli_run_t *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

/* ------------------------------------------------------------------ lines */

void cli_lines_init(cli_lines_t *l, int fd) {
  memset(l, 0, sizeof(*l));
  l->fd = fd;
  l->cap = 4096;
  l->buf = calloc(1, l->cap);
  assert_non_null(l->buf);
}

void cli_lines_free(cli_lines_t *l) {
  if (l->fd >= 0)
    close(l->fd);
  l->fd = -1;
  free(l->buf);
  l->buf = NULL;
}

/* Read what is there (waiting up to ms); 0 at EOF, else 1. */
static int lines_fill(cli_lines_t *l, int ms) {
  struct pollfd p;
  ssize_t got;
  int r;

  if (l->len + 1024 > l->cap) {
    l->cap *= 2;
    l->buf = realloc(l->buf, l->cap);
    assert_non_null(l->buf);
  }
  p.fd = l->fd;
  p.events = POLLIN;
  r = poll(&p, 1, ms);
  if (r < 0 && errno == EINTR)
    return 1;
  if (r == 0)
    fail_msg("no output line within %d ms; got so far:\n%s", wait_ms(), l->buf);
  got = read(l->fd, l->buf + l->len, l->cap - l->len - 1);
  if (got < 0 && errno == EINTR)
    return 1;
  if (got <= 0)
    return 0;
  l->len += (size_t)got;
  l->buf[l->len] = '\0';
  return 1;
}

static const char *lines_match(cli_lines_t *l, const char *text, int anywhere) {
  int64_t deadline = cli_now_ms() + wait_ms();
  static char line[4096];
  char *p, *nl, *hit;
  size_t n;

  for (;;) {
    p = l->buf + l->seen;
    while ((nl = strchr(p, '\n')) != NULL) {
      l->seen = (size_t)(nl + 1 - l->buf);
      *nl = '\0';
      hit = anywhere ? strstr(p, text) : NULL;
      *nl = '\n';
      if (anywhere ? hit != NULL : strncmp(p, text, strlen(text)) == 0) {
        n = (size_t)(nl - p) < sizeof(line) - 1 ? (size_t)(nl - p)
                                                : sizeof(line) - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        return line;
      }
      p = nl + 1;
    }
    if (!lines_fill(l, cli_remaining(deadline)))
      fail_msg("the child closed its output before a line with '%s'; "
               "it printed:\n%s",
               text, l->buf);
  }
}

const char *cli_lines_wait(cli_lines_t *l, const char *prefix) {
  return lines_match(l, prefix, 0);
}

const char *cli_lines_find(cli_lines_t *l, const char *needle) {
  return lines_match(l, needle, 1);
}

const char *cli_lines_rest(cli_lines_t *l) {
  int64_t deadline = cli_now_ms() + wait_ms();
  size_t from = l->seen;

  while (lines_fill(l, cli_remaining(deadline)))
    ;
  l->seen = l->len;
  return l->buf + from;
}

/* ----------------------------------------------------------------- server */

void cli_server_start(cli_server_t *s, ...) {
  char *argv[40];
  int out, err, n = 0;
  va_list ap;

  argv[n++] = (char *)cli_poolctl_path();
  argv[n++] = "serve";
  va_start(ap, s);
  while ((argv[n] = va_arg(ap, char *)) != NULL) {
    n++;
    assert_true(n < 37);
  }
  va_end(ap);
  /* The suites run as root in CI: a pool's workers may too. */
  argv[n++] = "--set";
  argv[n++] = "worker.allow_root=true";
  argv[n] = NULL;
  s->pid = cli_spawn(argv, &out, &err);
  cli_lines_init(&s->out, out);
  cli_lines_init(&s->err, err);
  cli_lines_wait(&s->out, "ready: ");
}

void cli_server_kill(cli_server_t *s) {
  if (s->pid > 0) {
    kill(s->pid, SIGKILL);
    cli_wait_exit(s->pid);
    s->pid = 0;
  }
  if (s->out.buf)
    cli_lines_free(&s->out);
  if (s->err.buf)
    cli_lines_free(&s->err);
}

void cli_server_stop(cli_server_t *s) {
  assert_int_equal(kill(s->pid, SIGTERM), 0);
  assert_int_equal(cli_wait_exit(s->pid), 0);
  s->pid = 0;
  cli_server_kill(s);
}

/* ------------------------------------------------------------ raw clients */

cli_conn_t *cli_conn_open(const char *path) {
  cli_conn_t *c = calloc(1, sizeof(*c));
  struct sockaddr_un sa;

  assert_non_null(c);
  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(c->fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
  assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return c;
}

void cli_conn_close(cli_conn_t *c) {
  close(c->fd);
  free(c);
}

int cli_conn_send_n(cli_conn_t *c, const char *s, size_t n) {
  ssize_t w;

  while (n > 0) {
    w = send(c->fd, s, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

void cli_conn_send(cli_conn_t *c, const char *s) {
  assert_int_equal(cli_conn_send_n(c, s, strlen(s)), 0);
}

json_t *cli_conn_recv(cli_conn_t *c) {
  int64_t deadline = cli_now_ms() + wait_ms();
  struct pollfd p;
  json_error_t jerr;
  json_t *v;
  char *nl;
  ssize_t got;
  size_t n;
  int r;

  for (;;) {
    nl = memchr(c->buf, '\n', c->len);
    if (nl) {
      n = (size_t)(nl - c->buf);
      v = json_loadb(c->buf, n, 0, &jerr);
      if (v == NULL)
        fail_msg("reply is not JSON: %.*s", (int)n, c->buf);
      memmove(c->buf, nl + 1, c->len - n - 1);
      c->len -= n + 1;
      return v;
    }
    assert_true(c->len < sizeof(c->buf));
    p.fd = c->fd;
    p.events = POLLIN;
    r = poll(&p, 1, cli_remaining(deadline));
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0)
      fail_msg("no reply within %d ms", wait_ms());
    got = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0 && errno == ECONNRESET)
      return NULL;
    assert_true(got >= 0);
    if (got == 0) {
      assert_int_equal(c->len, 0); /* no half line at EOF */
      return NULL;
    }
    c->len += (size_t)got;
  }
}

int cli_conn_hup(cli_conn_t *c, int timeout_ms) {
  int64_t deadline = cli_now_ms() + timeout_ms;
  struct pollfd p;
  int r;

  for (;;) {
    p.fd = c->fd;
    p.events = 0; /* POLLHUP is reported whatever is asked */
    p.revents = 0;
    r = poll(&p, 1, cli_remaining(deadline));
    if (r < 0 && errno == EINTR)
      continue;
    return r == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
  }
}

void cli_shim(const char *var, const char *value) {
  static char prev[64];
  const char *so = getenv("PP_SHIM");

  if (prev[0]) {
    unsetenv(prev);
    prev[0] = '\0';
  }
  if (var == NULL) {
    unsetenv("LD_PRELOAD");
    return;
  }
  assert_non_null(so);
  assert_int_equal(setenv("LD_PRELOAD", so, 1), 0);
  /* A sanitizer build wants its runtime first; the shim needs none.  The
   * option joins whatever ASAN_OPTIONS the run has (CI sets some). */
  if (!strstr(getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "",
              "verify_asan_link_order=0")) {
    static char opts[512];
    const char *was = getenv("ASAN_OPTIONS");

    snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", was ? was : "",
             was && *was ? ":" : "");
    assert_int_equal(setenv("ASAN_OPTIONS", opts, 1), 0);
  }
  assert_int_equal(setenv(var, value, 1), 0);
  snprintf(prev, sizeof(prev), "%s", var);
}

json_t *cli_conn_status(cli_conn_t *c) {
  json_t *reply, *st;

  cli_conn_send(c, "{\"op\":\"status\"}\n");
  reply = cli_conn_recv(c);
  assert_non_null(reply);
  assert_true(json_is_true(json_object_get(reply, "ok")));
  st = json_incref(json_object_get(reply, "status"));
  assert_non_null(st);
  json_decref(reply);
  return st;
}

json_int_t cli_jint(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);

  if (json_is_boolean(v))
    return json_is_true(v);
  if (!json_is_integer(v))
    fail_msg("\"%s\" is not an integer", key);
  return json_integer_value(v);
}

const char *cli_jstr(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);

  if (!json_is_string(v))
    fail_msg("\"%s\" is not a string", key);
  return json_string_value(v);
}
