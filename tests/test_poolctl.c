/* test_poolctl.c -- poolctl end to end: a real `poolctl serve` child on a
 * socket in a fresh directory, driven by `poolctl status` / `poolctl call`
 * children and by raw socket clients speaking docs/protocol.md.  Every wait
 * is on an event (a line on a pipe, a reply, a process exit) with a timeout
 * that only fires on failure; nothing sleeps. */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Generous: only a broken build takes this long. */
#define WAIT_MS 60000

typedef struct run {
  int code; /* exit status, or -1 when killed */
  char *out;
  char *err;
} run_t;

/* The `poolctl serve` child shared by the tests that need a pool. */
static struct {
  char dir[64];
  char sock[96];
  pid_t pid;
  int ready;        /* it printed its ready line */
  int out;          /* its stdout */
  char lines[8192]; /* what it printed so far */
  size_t nlines;
  int pids[2]; /* its workers, from status */
} srv = {.pid = 0, .out = -1};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining(int64_t deadline) {
  int64_t left = deadline - now_ms();
  return left > 0 ? (int)left : 0;
}

static const char *poolctl_path(void) {
  const char *p = getenv("PP_POOLCTL");
  assert_non_null(p);
  return p;
}

static void run_free(run_t *r) {
  free(r->out);
  free(r->err);
}

/* ------------------------------------------------------------ processes */

/* Spawn argv with stdin from /dev/null; stdout and stderr on new pipes
 * (*out / *err), or /dev/null when NULL (stderr is inherited when NULL and
 * PP_TEST_VERBOSE is set). */
static pid_t spawn(char *const argv[], int *out, int *err) {
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

static int wait_exit(pid_t pid) {
  int st;

  while (waitpid(pid, &st, 0) < 0)
    assert_int_equal(errno, EINTR);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void append(char **s, size_t *n, const char *p, size_t len) {
  *s = realloc(*s, *n + len + 1);
  assert_non_null(*s);
  memcpy(*s + *n, p, len);
  *n += len;
  (*s)[*n] = '\0';
}

/* Run poolctl with the given arguments (NULL-terminated) to completion,
 * collecting stdout and stderr. */
static void poolctl(run_t *r, ...) {
  char *argv[32], buf[4096];
  struct pollfd p[2];
  size_t nout = 0, nerr = 0;
  int64_t deadline = now_ms() + WAIT_MS;
  int out, err, open_fds = 2, i, n = 0;
  pid_t pid;
  ssize_t got;
  va_list ap;

  argv[n++] = (char *)poolctl_path();
  va_start(ap, r);
  while ((argv[n] = va_arg(ap, char *)) != NULL) {
    n++;
    assert_true(n < 31);
  }
  va_end(ap);
  r->out = calloc(1, 1);
  r->err = calloc(1, 1);
  pid = spawn(argv, &out, &err);
  p[0].fd = out;
  p[1].fd = err;
  while (open_fds > 0) {
    p[0].events = p[1].events = POLLIN;
    i = poll(p, 2, remaining(deadline));
    if (i < 0 && errno == EINTR)
      continue;
    if (i == 0) {
      kill(pid, SIGKILL);
      fail_msg("poolctl did not finish within %d ms", WAIT_MS);
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
  r->code = wait_exit(pid);
  if (getenv("PP_TEST_VERBOSE"))
    fprintf(stderr, "  poolctl %s ... -> %d\n  out: %s  err: %s", argv[1],
            r->code, r->out, r->err);
}

/* ------------------------------------------------------------ the server */

/* Read the server's stdout until a line starting with prefix arrives. */
static void serve_wait_line(const char *prefix) {
  int64_t deadline = now_ms() + WAIT_MS;
  struct pollfd p;
  char *line, *nl;
  ssize_t got;
  size_t off = 0;
  int r;

  for (;;) {
    /* Scan the complete lines we have for the prefix. */
    line = srv.lines + off;
    while ((nl = strchr(line, '\n')) != NULL) {
      if (strncmp(line, prefix, strlen(prefix)) == 0)
        return;
      line = nl + 1;
    }
    off = (size_t)(line - srv.lines);
    assert_true(srv.nlines + 1 < sizeof(srv.lines));
    p.fd = srv.out;
    p.events = POLLIN;
    r = poll(&p, 1, remaining(deadline));
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0)
      fail_msg("serve did not print '%s' within %d ms; it printed:\n%s", prefix,
               WAIT_MS, srv.lines);
    got = read(srv.out, srv.lines + srv.nlines,
               sizeof(srv.lines) - srv.nlines - 1);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      fail_msg("serve closed stdout before '%s'; it printed:\n%s", prefix,
               srv.lines);
    srv.nlines += (size_t)got;
    srv.lines[srv.nlines] = '\0';
  }
}

static char *worker_command(void) {
  const char *py = getenv("PP_PYTHON"), *worker = getenv("PP_WORKER_PY");
  char *h = fixture_path("echo_handlers.py"), *s;
  size_t n;

  assert_non_null(py);
  assert_non_null(worker);
  n = strlen(py) + strlen(worker) + strlen(h) + 64;
  s = malloc(n);
  assert_non_null(s);
  snprintf(s, n, "worker.command=[%s, %s, %s]", py, worker, h);
  free(h);
  return s;
}

/* Leave a stale socket file where the server will bind: bound, never
 * listened on, then closed.  The server must clear it. */
static void make_stale_socket(const char *path) {
  struct sockaddr_un sa;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);

  assert_true(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  close(fd);
}

static int group_setup(void **state) {
  (void)state;
  snprintf(srv.dir, sizeof(srv.dir), "/tmp/pp-poolctl-XXXXXX");
  if (mkdtemp(srv.dir) == NULL)
    return -1;
  snprintf(srv.sock, sizeof(srv.sock), "%s/pool.sock", srv.dir);
  return 0;
}

static int group_teardown(void **state) {
  char path[256];

  (void)state;
  if (srv.pid > 0) {
    /* A test failed with the server up: its workers die with it. */
    kill(srv.pid, SIGKILL);
    wait_exit(srv.pid);
    srv.pid = 0;
  }
  if (srv.out >= 0)
    close(srv.out);
  unlink(srv.sock);
  snprintf(path, sizeof(path), "%s/other.sock", srv.dir);
  unlink(path);
  rmdir(srv.dir);
  return 0;
}

static void need_server(void) {
  if (srv.pid <= 0 || !srv.ready)
    skip();
}

/* ---------------------------------------------------------- raw clients */

typedef struct conn {
  int fd;
  char buf[1 << 16];
  size_t len;
} conn_t;

static conn_t *conn_open(void) {
  conn_t *c = calloc(1, sizeof(*c));
  struct sockaddr_un sa;

  assert_non_null(c);
  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(c->fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", srv.sock);
  assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return c;
}

static void conn_close(conn_t *c) {
  close(c->fd);
  free(c);
}

static void conn_send(conn_t *c, const char *s) {
  size_t n = strlen(s);
  ssize_t w;

  while (n > 0) {
    w = send(c->fd, s, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    assert_true(w > 0);
    s += w;
    n -= (size_t)w;
  }
}

/* Read one reply line and parse it.  Returns NULL at EOF (or a reset). */
static json_t *conn_recv(conn_t *c) {
  int64_t deadline = now_ms() + WAIT_MS;
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
    r = poll(&p, 1, remaining(deadline));
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0)
      fail_msg("no reply within %d ms", WAIT_MS);
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

/* One status request on c; returns the status object (owned). */
static json_t *conn_status(conn_t *c) {
  json_t *reply, *st;

  conn_send(c, "{\"op\":\"status\"}\n");
  reply = conn_recv(c);
  assert_non_null(reply);
  assert_true(json_is_true(json_object_get(reply, "ok")));
  st = json_incref(json_object_get(reply, "status"));
  assert_non_null(st);
  json_decref(reply);
  return st;
}

static json_int_t jint(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  assert_true(json_is_integer(v));
  return json_integer_value(v);
}

static const char *jstr(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  assert_true(json_is_string(v));
  return json_string_value(v);
}

/* ---------------------------------------------------- without a server */

static void test_help_and_usage(void **state) {
  run_t r;

  (void)state;
  poolctl(&r, "--help", NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "serve"));
  assert_non_null(strstr(r.out, "status"));
  assert_non_null(strstr(r.out, "call"));
  assert_non_null(strstr(r.out, "--socket PATH"));
  assert_non_null(strstr(r.out, "exit codes"));
  assert_non_null(strstr(r.out, "3  no pool running"));
  assert_string_equal(r.err, "");
  run_free(&r);

  poolctl(&r, "status", "--help", NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "usage: poolctl status"));
  run_free(&r);

  poolctl(&r, "bogus", NULL);
  assert_int_equal(r.code, 2);
  assert_string_equal(r.out, "");
  assert_true(strncmp(r.err, "poolctl: ", 9) == 0);
  assert_non_null(strstr(r.err, "bogus"));
  run_free(&r);

  poolctl(&r, NULL);
  assert_int_equal(r.code, 2);
  assert_true(strncmp(r.err, "poolctl: ", 9) == 0);
  run_free(&r);

  poolctl(&r, "status", "--frobnicate", NULL);
  assert_int_equal(r.code, 2);
  assert_true(strncmp(r.err, "poolctl: ", 9) == 0);
  run_free(&r);

  poolctl(&r, "status", "-S", NULL);
  assert_int_equal(r.code, 2);
  run_free(&r);
}

static void test_not_running(void **state) {
  run_t r;

  (void)state;
  poolctl(&r, "status", "-S", "/nonexistent.sock", NULL);
  assert_int_equal(r.code, 3);
  assert_non_null(strstr(r.err, "poolctl: no pool running at "
                                "/nonexistent.sock"));
  run_free(&r);

  /* -S after the command, or before it: the same. */
  poolctl(&r, "--socket", "/nonexistent.sock", "call", "echo", "1", NULL);
  assert_int_equal(r.code, 3);
  run_free(&r);
}

/* "NAME:LINE:COL: " somewhere in text. */
static int has_file_line_col(const char *text, const char *name) {
  const char *p = strstr(text, name);
  int line, col;
  char colon;

  if (p == NULL)
    return 0;
  return sscanf(p + strlen(name), ":%d:%d%c", &line, &col, &colon) == 3 &&
         line > 0 && col > 0 && colon == ':';
}

static void test_bad_config(void **state) {
  char *bad = fixture_path("config/syntax_bracket.yaml");
  char *unknown = fixture_path("config/unknown_key.yaml");
  char sock[192];
  run_t r;

  (void)state;
  snprintf(sock, sizeof(sock), "%s/other.sock", srv.dir);
  poolctl(&r, "serve", "-S", sock, "-c", bad, NULL);
  assert_int_equal(r.code, 2);
  assert_true(strncmp(r.err, "poolctl: ", 9) == 0);
  if (!has_file_line_col(r.err, "syntax_bracket.yaml"))
    fail_msg("no file:line:col in: %s", r.err);
  run_free(&r);

  poolctl(&r, "serve", "-S", sock, "-c", unknown, NULL);
  assert_int_equal(r.code, 2);
  if (!has_file_line_col(r.err, "unknown_key.yaml"))
    fail_msg("no file:line:col in: %s", r.err);
  assert_non_null(strstr(r.err, "chekout"));
  run_free(&r);

  poolctl(&r, "serve", "-S", sock, "--set", "size=banana", NULL);
  assert_int_equal(r.code, 2);
  assert_non_null(strstr(r.err, "size"));
  run_free(&r);

  poolctl(&r, "serve", "-S", sock, "-c", "/nonexistent/pool.yaml", NULL);
  assert_int_equal(r.code, 2);
  assert_non_null(strstr(r.err, "/nonexistent/pool.yaml"));
  run_free(&r);

  /* Nothing was left behind. */
  assert_int_equal(access(sock, F_OK), -1);
  free(bad);
  free(unknown);
}

/* ------------------------------------------------------- with a server */

static void test_serve_ready(void **state) {
  char *cmd = worker_command();
  char *argv[] = {(char *)poolctl_path(),
                  "serve",
                  "-S",
                  srv.sock,
                  "--set",
                  "size=2",
                  "--set",
                  cmd,
                  NULL};

  (void)state;
  make_stale_socket(srv.sock);
  srv.pid = spawn(argv, &srv.out, NULL);
  free(cmd);
  serve_wait_line("ready: ");
  srv.ready = 1;
  assert_non_null(strstr(srv.lines, "warming 0/2\n"));
  assert_non_null(strstr(srv.lines, "warming 2/2\n"));
  assert_non_null(strstr(srv.lines, "ready: 2 workers, socket "));
  assert_non_null(strstr(srv.lines, srv.sock));
}

static void test_socket_mode(void **state) {
  struct stat st;

  (void)state;
  need_server();
  assert_int_equal(lstat(srv.sock, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_second_serve_refused(void **state) {
  char *cmd = worker_command();
  run_t r;

  (void)state;
  need_server();
  poolctl(&r, "serve", "-S", srv.sock, "--set", "size=1", "--set", cmd, NULL);
  free(cmd);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "poolctl: a pool is already running at"));
  assert_null(strstr(r.out, "ready"));
  run_free(&r);
  /* The running pool's socket is untouched. */
  assert_int_equal(access(srv.sock, F_OK), 0);
}

static void test_status_json(void **state) {
  json_t *st, *workers, *w;
  json_error_t jerr;
  size_t i;
  run_t r;

  (void)state;
  need_server();
  poolctl(&r, "status", "--json", "-S", srv.sock, NULL);
  assert_int_equal(r.code, 0);
  /* One line of JSON. */
  assert_non_null(strchr(r.out, '\n'));
  assert_null(strchr(strchr(r.out, '\n') + 1, '\n'));
  st = json_loads(r.out, 0, &jerr);
  if (st == NULL)
    fail_msg("status --json printed: %s", r.out);
  assert_string_equal(jstr(st, "state"), "ready");
  assert_int_equal(jint(st, "size"), 2);
  workers = json_object_get(st, "workers");
  assert_int_equal(json_array_size(workers), 2);
  json_array_foreach(workers, i, w) {
    assert_string_equal(jstr(w, "state"), "idle");
    assert_true(jint(w, "pid") > 0);
    srv.pids[i] = (int)jint(w, "pid");
  }
  json_decref(st);
  run_free(&r);
}

static void test_status_table(void **state) {
  run_t r;

  (void)state;
  need_server();
  /* Options after the command, and -S last. */
  poolctl(&r, "status", "-S", srv.sock, NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "pool portpool"));
  assert_non_null(strstr(r.out, "ready"));
  assert_non_null(strstr(r.out, "PID"));
  assert_non_null(strstr(r.out, "LAST-EXIT"));
  assert_non_null(strstr(r.out, "idle"));
  assert_null(strchr(r.out, '\033')); /* not a terminal: no colour */
  run_free(&r);
}

static void test_call_echo(void **state) {
  json_t *got, *want;
  run_t r;

  (void)state;
  need_server();
  poolctl(&r, "call", "-S", srv.sock, "echo", "{\"x\": 1}", NULL);
  assert_int_equal(r.code, 0);
  got = json_loads(r.out, JSON_DECODE_ANY, NULL);
  want = json_pack("{s:i}", "x", 1);
  assert_non_null(got);
  assert_true(json_equal(got, want));
  json_decref(got);
  json_decref(want);
  assert_string_equal(r.out, "{\"x\":1}\n");
  run_free(&r);

  /* Options after the arguments; no argument means null. */
  poolctl(&r, "call", "echo", "-S", srv.sock, "--timeout", "20000", NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "null\n");
  run_free(&r);

  poolctl(&r, "-S", srv.sock, "call", "add", "{\"a\": 2, \"b\": 40}", NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "42\n");
  run_free(&r);
}

static void test_call_errors(void **state) {
  run_t r;

  (void)state;
  need_server();
  poolctl(&r, "call", "-S", srv.sock, "fail", "1", NULL);
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_non_null(strstr(r.err, "poolctl: ValueError: boom: 1"));
  run_free(&r);

  poolctl(&r, "call", "-S", srv.sock, "no_such_handler", NULL);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "poolctl: UnknownCommand"));
  run_free(&r);

  poolctl(&r, "call", "-S", srv.sock, "echo", "{x", NULL);
  assert_int_equal(r.code, 2);
  assert_true(strncmp(r.err, "poolctl: ", 9) == 0);
  run_free(&r);

  poolctl(&r, "call", "-S", srv.sock, NULL);
  assert_int_equal(r.code, 2);
  run_free(&r);

  poolctl(&r, "call", "-S", srv.sock, "echo", "1", "--timeout", "soon", NULL);
  assert_int_equal(r.code, 2);
  run_free(&r);
}

static void test_raw_protocol(void **state) {
  conn_t *c;
  json_t *v;

  (void)state;
  need_server();
  c = conn_open();
  /* Pipelined: answered in order, an unknown op keeps the connection. */
  conn_send(c, "{\"op\":\"ping\",\"id\":1}\n"
               "\n"
               "{\"op\":\"nope\"}\n"
               "{\"op\":\"call\",\"id\":\"c\",\"payload\":{\"cmd\":\"add\","
               "\"args\":{\"a\":1,\"b\":2}}}\r\n"
               "{\"op\":7}\n"
               "{\"op\":\"ping\"}\n");
  v = conn_recv(c);
  assert_true(json_is_true(json_object_get(v, "ok")));
  assert_int_equal(jint(v, "id"), 1);
  json_decref(v);
  v = conn_recv(c);
  assert_true(json_is_false(json_object_get(v, "ok")));
  assert_string_equal(jstr(v, "error"), "EINVAL");
  assert_non_null(strstr(jstr(v, "message"), "nope"));
  json_decref(v);
  v = conn_recv(c);
  assert_true(json_is_true(json_object_get(v, "ok")));
  assert_string_equal(jstr(v, "id"), "c");
  assert_int_equal(jint(v, "reply"), 3);
  json_decref(v);
  v = conn_recv(c);
  assert_string_equal(jstr(v, "error"), "EINVAL");
  json_decref(v);
  v = conn_recv(c);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);

  /* A handler error carries the worker's ERROR payload as detail. */
  conn_send(c, "{\"op\":\"call\",\"payload\":{\"cmd\":\"fail\",\"args\":7}}\n");
  v = conn_recv(c);
  assert_true(json_is_false(json_object_get(v, "ok")));
  assert_string_equal(jstr(v, "error"), "PP_EHANDLER");
  assert_string_equal(jstr(json_object_get(v, "detail"), "type"), "ValueError");
  assert_non_null(
      strstr(jstr(json_object_get(v, "detail"), "traceback"), "Traceback"));
  json_decref(v);

  /* Half-close: what was sent is still answered, then EOF. */
  conn_send(c, "{\"op\":\"call\",\"payload\":{\"cmd\":\"echo\",\"args\":5}}\n"
               "{\"op\":\"ping\",\"id\":9}");
  shutdown(c->fd, SHUT_WR);
  v = conn_recv(c);
  assert_int_equal(jint(v, "reply"), 5);
  json_decref(v);
  v = conn_recv(c);
  assert_int_equal(jint(v, "id"), 9);
  json_decref(v);
  assert_null(conn_recv(c));
  conn_close(c);
}

static void test_garbage_disconnects(void **state) {
  conn_t *c, *other;
  json_t *v;
  run_t r;

  (void)state;
  need_server();
  other = conn_open();
  c = conn_open();
  conn_send(c, "this is not json\n{\"op\":\"ping\"}\n");
  v = conn_recv(c);
  assert_non_null(v);
  assert_true(json_is_false(json_object_get(v, "ok")));
  assert_string_equal(jstr(v, "error"), "EINVAL");
  json_decref(v);
  assert_null(conn_recv(c)); /* disconnected; the ping is never answered */
  conn_close(c);
  /* JSON that is not an object is an error the connection survives. */
  c = conn_open();
  conn_send(c, "[1,2]\n{\"op\":\"ping\"}\n");
  v = conn_recv(c);
  assert_non_null(v);
  assert_string_equal(jstr(v, "error"), "EINVAL");
  assert_non_null(strstr(jstr(v, "message"), "JSON object"));
  json_decref(v);
  v = conn_recv(c);
  assert_non_null(v);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  conn_close(c);

  /* Only that client: another connection and new ones still work. */
  conn_send(other, "{\"op\":\"ping\"}\n");
  v = conn_recv(other);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  conn_close(other);
  poolctl(&r, "status", "--json", "-S", srv.sock, NULL);
  assert_int_equal(r.code, 0);
  run_free(&r);
}

static void test_long_line_disconnects(void **state) {
  size_t total = (1u << 20) + 16, sent = 0, n;
  char chunk[65536];
  conn_t *c;
  json_t *v;
  ssize_t w;

  (void)state;
  need_server();
  memset(chunk, 'x', sizeof(chunk));
  c = conn_open();
  while (sent < total) {
    n = total - sent < sizeof(chunk) ? total - sent : sizeof(chunk);
    w = send(c->fd, chunk, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      break; /* the server already hung up: expected */
    sent += (size_t)w;
  }
  v = conn_recv(c);
  assert_non_null(v);
  assert_string_equal(jstr(v, "error"), "E2BIG");
  json_decref(v);
  assert_null(conn_recv(c));
  conn_close(c);
}

/* A peer of another uid is refused, whatever the socket's mode.  Needs
 * root: the child takes another euid but keeps fsuid 0 to reach the
 * socket. */
static void test_other_uid_refused(void **state) {
  int fds[2], code;
  char buf[512] = {0};
  ssize_t n;
  pid_t pid;

  (void)state;
  need_server();
  if (geteuid() != 0)
    skip();
  assert_int_equal(pipe(fds), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct sockaddr_un sa;
    int fd, got = 0;

    close(fds[0]);
    if (setresuid(0, 65534, 0) != 0)
      _exit(10);
    setfsuid(0);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", srv.sock);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
      _exit(11);
    while ((n = read(fd, buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
      got += (int)n;
    if (write(fds[1], buf, (size_t)got) != got)
      _exit(12);
    _exit(0);
  }
  close(fds[1]);
  code = wait_exit(pid);
  assert_int_equal(code, 0);
  n = read(fds[0], buf, sizeof(buf) - 1);
  close(fds[0]);
  assert_true(n > 0);
  buf[n] = '\0';
  assert_string_equal(buf, "{\"ok\":false,\"error\":\"EPERM\",\"message\":"
                           "\"uid 65534 is not allowed\"}\n");
}

/* Send a call on a new connection (its reply is read later). */
static conn_t *call_async(const char *cmd, const char *args) {
  conn_t *c = conn_open();
  char line[256];

  snprintf(line, sizeof(line),
           "{\"op\":\"call\",\"payload\":{\"cmd\":\"%s\",\"args\":%s}}\n", cmd,
           args);
  conn_send(c, line);
  return c;
}

/* Poll status on probe until status[key] == value; each status reply is
 * the event, and the number of tries is bounded.  Returns the status. */
static json_t *wait_status(conn_t *probe, const char *key, int value) {
  json_t *st;
  int tries;

  for (tries = 0; tries < 100000; tries++) {
    st = conn_status(probe);
    if (jint(st, key) == value)
      return st;
    json_decref(st);
  }
  fail_msg("status never showed %s == %d", key, value);
  return NULL;
}

/* Wait until `busy` workers are busy; returns the pid of the last. */
static int wait_busy(conn_t *probe, int busy) {
  json_t *st = wait_status(probe, "busy", busy), *w;
  int pid = 0;
  size_t i;

  json_array_foreach(json_object_get(st, "workers"), i, w) {
    if (strcmp(jstr(w, "state"), "busy") == 0)
      pid = (int)jint(w, "pid");
  }
  json_decref(st);
  return pid;
}

static void test_disconnect_mid_call(void **state) {
  conn_t *a, *b, *c, *probe;
  json_t *st, *v, *w;
  int orphan_pid;
  size_t i;

  (void)state;
  need_server();
  probe = conn_open();
  /* A's request runs on one worker; A hangs up mid-call. */
  a = call_async("sleep", "2");
  orphan_pid = wait_busy(probe, 1);
  conn_close(a);
  /* B holds the other worker for longer than A's request still runs; C
   * then has to wait for a worker and gets the one A left, once its
   * request finished and its reply was dropped. */
  b = call_async("sleep", "2.5");
  wait_busy(probe, 2);
  c = call_async("pid", "null");
  v = conn_recv(c);
  assert_true(json_is_true(json_object_get(v, "ok")));
  assert_int_equal(jint(v, "reply"), orphan_pid);
  json_decref(v);
  v = conn_recv(b);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  conn_close(b);
  conn_close(c);

  st = conn_status(probe);
  assert_int_equal(jint(st, "idle"), 2);
  assert_true(jint(st, "reclaimed") >= 1);
  assert_true(jint(st, "stale_replies") >= 1);
  assert_int_equal(jint(st, "restarts"), 0);
  json_array_foreach(json_object_get(st, "workers"), i, w) {
    assert_string_equal(jstr(w, "state"), "idle");
    assert_int_equal(jint(w, "pid"), srv.pids[i]);
  }
  json_decref(st);
  conn_close(probe);
}

static void test_disconnect_while_waiting(void **state) {
  conn_t *a, *b, *waiting[5], *probe;
  json_int_t checkouts;
  json_t *st, *v;
  int i;

  (void)state;
  need_server();
  probe = conn_open();
  st = conn_status(probe);
  checkouts = jint(st, "checkouts");
  json_decref(st);
  a = call_async("sleep", "1");
  b = call_async("sleep", "1");
  wait_busy(probe, 2);
  for (i = 0; i < 5; i++)
    waiting[i] = call_async("pid", "null");
  json_decref(wait_status(probe, "waiters", 5));
  for (i = 0; i < 5; i++)
    conn_close(waiting[i]);
  json_decref(wait_status(probe, "waiters", 0));
  v = conn_recv(a);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  v = conn_recv(b);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  conn_close(a);
  conn_close(b);
  /* Nobody is left: both workers idle, and no dead waiter was ever given
   * a worker (only a and b checked out). */
  st = conn_status(probe);
  assert_int_equal(jint(st, "idle"), 2);
  assert_int_equal(jint(st, "checkouts"), checkouts + 2);
  assert_int_equal(jint(st, "timeouts"), 0);
  json_decref(st);
  conn_close(probe);
}

static void test_sigterm_stops(void **state) {
  conn_t *idle, *busy, *probe;
  run_t r;
  int i;

  (void)state;
  need_server();
  /* Neither an idle connection nor one with a call running holds the
   * stop up; both are closed. */
  idle = conn_open();
  busy = call_async("sleep", "0.5");
  probe = conn_open();
  wait_busy(probe, 1);
  conn_close(probe);
  assert_int_equal(kill(srv.pid, SIGTERM), 0);
  serve_wait_line("stopped");
  assert_non_null(strstr(srv.lines, "stopping (SIGTERM)\n"));
  assert_int_equal(wait_exit(srv.pid), 0);
  srv.pid = 0;
  assert_null(conn_recv(idle)); /* closed by the server */
  conn_close(idle);
  assert_null(conn_recv(busy));
  conn_close(busy);
  assert_int_equal(access(srv.sock, F_OK), -1);
  assert_int_equal(errno, ENOENT);
  for (i = 0; i < 2; i++) {
    assert_true(srv.pids[i] > 0);
    assert_int_equal(wait_pid_gone(srv.pids[i], WAIT_MS), 0);
  }
  poolctl(&r, "status", "-S", srv.sock, NULL);
  assert_int_equal(r.code, 3);
  run_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_help_and_usage),
      cmocka_unit_test(test_not_running),
      cmocka_unit_test(test_bad_config),
      cmocka_unit_test(test_serve_ready),
      cmocka_unit_test(test_socket_mode),
      cmocka_unit_test(test_second_serve_refused),
      cmocka_unit_test(test_status_json),
      cmocka_unit_test(test_status_table),
      cmocka_unit_test(test_call_echo),
      cmocka_unit_test(test_call_errors),
      cmocka_unit_test(test_raw_protocol),
      cmocka_unit_test(test_garbage_disconnects),
      cmocka_unit_test(test_long_line_disconnects),
      cmocka_unit_test(test_other_uid_refused),
      cmocka_unit_test(test_disconnect_mid_call),
      cmocka_unit_test(test_disconnect_while_waiting),
      cmocka_unit_test(test_sigterm_stops),
  };

  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
