/* test_poolctl.c -- poolctl end to end: a real `poolctl serve` child on a
 * socket in a fresh directory, driven by `poolctl status` / `poolctl call`
 * children and by raw socket clients speaking docs/protocol.md.  Every wait
 * is on an event (a line on a pipe, a reply, a process exit) with a timeout
 * that only fires on failure; nothing sleeps. */
#include "cli.h"
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* ------------------------------------------------------------ the server */

/* Read the server's stdout until a line starting with prefix arrives. */
static void serve_wait_line(const char *prefix) {
  int64_t deadline = cli_now_ms() + CLI_WAIT_MS;
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
    r = poll(&p, 1, cli_remaining(deadline));
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0)
      fail_msg("serve did not print '%s' within %d ms; it printed:\n%s", prefix,
               CLI_WAIT_MS, srv.lines);
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

static char *worker_command_for(const char *handlers) {
  const char *py = getenv("PP_PYTHON"), *worker = getenv("PP_WORKER_PY");
  char *h = fixture_path(handlers), *s;
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

static char *worker_command(void) {
  return worker_command_for("echo_handlers.py");
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
    cli_wait_exit(srv.pid);
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

static cli_conn_t *conn_open(void) { return cli_conn_open(srv.sock); }

/* ---------------------------------------------------- without a server */

static void test_help_and_usage(void **state) {
  cli_run_t r;

  (void)state;
  cli_poolctl(&r, "--help", NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "serve"));
  assert_non_null(strstr(r.out, "status"));
  assert_non_null(strstr(r.out, "call"));
  assert_non_null(strstr(r.out, "--socket PATH"));
  assert_non_null(strstr(r.out, "exit codes"));
  assert_non_null(strstr(r.out, "3  no pool running"));
  assert_string_equal(r.err, "");
  cli_run_free(&r);

  cli_poolctl(&r, "status", "--help", NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "usage: poolctl status"));
  cli_run_free(&r);

  cli_poolctl(&r, "bogus", NULL);
  assert_int_equal(r.code, 2);
  assert_string_equal(r.out, "");
  assert_true(strncmp(r.err, "poolctl: ", 9) == 0);
  assert_non_null(strstr(r.err, "bogus"));
  assert_null(strstr(r.err, "did you mean")); /* nothing is near */
  cli_run_free(&r);

  /* A misspelt command: the nearest one is suggested. */
  cli_poolctl(&r, "stauts", NULL);
  assert_int_equal(r.code, 2);
  assert_non_null(strstr(
      r.err, "poolctl: unknown command 'stauts'; did you mean 'status'?"));
  cli_run_free(&r);
  cli_poolctl(&r, "help", "resatrt", NULL);
  assert_int_equal(r.code, 2);
  assert_non_null(strstr(r.err, "did you mean 'restart'?"));
  cli_run_free(&r);

  cli_poolctl(&r, NULL);
  assert_int_equal(r.code, 2);
  assert_true(strncmp(r.err, "poolctl: ", 9) == 0);
  cli_run_free(&r);

  cli_poolctl(&r, "status", "--frobnicate", NULL);
  assert_int_equal(r.code, 2);
  assert_true(strncmp(r.err, "poolctl: ", 9) == 0);
  cli_run_free(&r);

  cli_poolctl(&r, "status", "-S", NULL);
  assert_int_equal(r.code, 2);
  cli_run_free(&r);
}

static void test_not_running(void **state) {
  cli_run_t r;

  (void)state;
  cli_poolctl(&r, "status", "-S", "/nonexistent.sock", NULL);
  assert_int_equal(r.code, 3);
  assert_non_null(strstr(r.err, "poolctl: no pool running at "
                                "/nonexistent.sock"));
  cli_run_free(&r);

  /* -S after the command, or before it: the same. */
  cli_poolctl(&r, "--socket", "/nonexistent.sock", "call", "echo", "1", NULL);
  assert_int_equal(r.code, 3);
  cli_run_free(&r);
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
  cli_run_t r;

  (void)state;
  snprintf(sock, sizeof(sock), "%s/other.sock", srv.dir);
  cli_poolctl(&r, "serve", "-S", sock, "-c", bad, NULL);
  assert_int_equal(r.code, 2);
  assert_true(strncmp(r.err, "poolctl: ", 9) == 0);
  if (!has_file_line_col(r.err, "syntax_bracket.yaml"))
    fail_msg("no file:line:col in: %s", r.err);
  cli_run_free(&r);

  cli_poolctl(&r, "serve", "-S", sock, "-c", unknown, NULL);
  assert_int_equal(r.code, 2);
  if (!has_file_line_col(r.err, "unknown_key.yaml"))
    fail_msg("no file:line:col in: %s", r.err);
  assert_non_null(strstr(r.err, "chekout"));
  cli_run_free(&r);

  cli_poolctl(&r, "serve", "-S", sock, "--set", "size=banana", NULL);
  assert_int_equal(r.code, 2);
  assert_non_null(strstr(r.err, "size"));
  cli_run_free(&r);

  cli_poolctl(&r, "serve", "-S", sock, "-c", "/nonexistent/pool.yaml", NULL);
  assert_int_equal(r.code, 2);
  assert_non_null(strstr(r.err, "/nonexistent/pool.yaml"));
  cli_run_free(&r);

  /* Nothing was left behind. */
  assert_int_equal(access(sock, F_OK), -1);
  free(bad);
  free(unknown);
}

static int count_of(const char *hay, const char *needle) {
  int n = 0;

  while ((hay = strstr(hay, needle)) != NULL) {
    n++;
    hay += strlen(needle);
  }
  return n;
}

/* A handler that cannot be imported: serve prints the traceback once and
 * exits 3 at once (as gunicorn's "Worker failed to boot"), not a crash
 * loop, whatever the start-up bounds. */
static void test_serve_boot_failure(void **state) {
  char *cmd = worker_command_for("import_error.py");
  char sock[192];
  cli_run_t r;

  (void)state;
  snprintf(sock, sizeof(sock), "%s/boot.sock", srv.dir);
  cli_poolctl(&r, "serve", "-S", sock, "--set", "size=2", "--set", cmd, "--set",
              "worker.startup_timeout=10m", NULL);
  free(cmd);
  assert_int_equal(r.code, 3);
  if (count_of(r.err, "Traceback (most recent call last)") != 1)
    fail_msg("want the traceback once; stderr:\n%s", r.err);
  assert_non_null(strstr(r.err, "poolctl: worker "));
  assert_non_null(strstr(r.err, "failed to boot: ImportError: fixture "
                                "import_error: this handler module cannot be "
                                "imported"));
  assert_null(strstr(r.err, "degraded"));
  assert_non_null(strstr(r.out, "stopping (a worker failed to boot)"));
  assert_int_equal(access(sock, F_OK), -1);
  cli_run_free(&r);
}

/* A handler that hangs at import: no HELLO within startup_timeout fails
 * the start-up like an import error: serve exits 3 and says why. */
static void test_serve_hang_at_import(void **state) {
  char *cmd = worker_command_for("hang_on_import.py");
  char sock[192];
  cli_run_t r;

  (void)state;
  snprintf(sock, sizeof(sock), "%s/hang.sock", srv.dir);
  cli_poolctl(&r, "serve", "-S", sock, "--set", "size=1", "--set", cmd, "--set",
              "worker.startup_timeout=300ms", "--set",
              "worker.kill_grace=100ms", NULL);
  free(cmd);
  if (r.code != 3 ||
      strstr(r.err, "failed to boot: no HELLO within startup_timeout "
                    "(300ms)") == NULL)
    fail_msg("exit %d; stderr:\n%s", r.code, r.err);
  assert_int_equal(access(sock, F_OK), -1);
  cli_run_free(&r);
}

/* Out of file descriptors at start-up: serve says so, and how to fix it,
 * and exits 3, instead of warming for ever. */
static void test_serve_out_of_fds(void **state) {
  char *cmd = worker_command();
  char sock[192], script[1024];
  cli_run_t r;
  char *argv[] = {"/bin/sh", "-c", script, NULL};

  (void)state;
  snprintf(sock, sizeof(sock), "%s/fds.sock", srv.dir);
  snprintf(script, sizeof(script),
           "ulimit -n 32 && exec '%s' serve -S '%s' --set size=16 --set '%s'",
           cli_poolctl_path(), sock, cmd);
  free(cmd);
  cli_run_argv(&r, argv);
  assert_int_equal(r.code, 3);
  if (strstr(r.err,
             "failed to boot: spawn failed: out of file descriptors "
             "(RLIMIT_NOFILE=32): raise ulimit -n or lower size") == NULL)
    fail_msg("stderr:\n%s", r.err);
  assert_int_equal(access(sock, F_OK), -1);
  cli_run_free(&r);
}

/* ------------------------------------------------------- with a server */

static void test_serve_ready(void **state) {
  char *cmd = worker_command();
  char *argv[] = {(char *)cli_poolctl_path(),
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
  srv.pid = cli_spawn(argv, &srv.out, NULL);
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
  cli_run_t r;

  (void)state;
  need_server();
  cli_poolctl(&r, "serve", "-S", srv.sock, "--set", "size=1", "--set", cmd,
              NULL);
  free(cmd);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "poolctl: a pool is already running at"));
  assert_null(strstr(r.out, "ready"));
  cli_run_free(&r);
  /* The running pool's socket is untouched. */
  assert_int_equal(access(srv.sock, F_OK), 0);
}

static void test_status_json(void **state) {
  json_t *st, *workers, *w;
  json_error_t jerr;
  size_t i;
  cli_run_t r;

  (void)state;
  need_server();
  cli_poolctl(&r, "status", "--json", "-S", srv.sock, NULL);
  assert_int_equal(r.code, 0);
  /* One line of JSON. */
  assert_non_null(strchr(r.out, '\n'));
  assert_null(strchr(strchr(r.out, '\n') + 1, '\n'));
  st = json_loads(r.out, 0, &jerr);
  if (st == NULL)
    fail_msg("status --json printed: %s", r.out);
  assert_string_equal(cli_jstr(st, "state"), "ready");
  assert_int_equal(cli_jint(st, "size"), 2);
  /* The handlers the workers' HELLO listed: echo_handlers.py's own. */
  w = json_object_get(st, "handlers");
  assert_true(json_is_array(w));
  assert_int_equal(json_array_size(w), 16);
  assert_string_equal(json_string_value(json_array_get(w, 0)), "add");
  assert_string_equal(json_string_value(json_array_get(w, 6)), "echo");
  workers = json_object_get(st, "workers");
  assert_int_equal(json_array_size(workers), 2);
  json_array_foreach(workers, i, w) {
    assert_string_equal(cli_jstr(w, "state"), "idle");
    assert_true(cli_jint(w, "pid") > 0);
    srv.pids[i] = (int)cli_jint(w, "pid");
  }
  json_decref(st);
  cli_run_free(&r);
}

static void test_status_table(void **state) {
  cli_run_t r;

  (void)state;
  need_server();
  /* Options after the command, and -S last. */
  cli_poolctl(&r, "status", "-S", srv.sock, NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "pool portpool"));
  assert_non_null(strstr(r.out, "ready"));
  assert_non_null(strstr(r.out, "PID"));
  assert_non_null(strstr(r.out, "LAST-EXIT"));
  assert_non_null(strstr(r.out, "idle"));
  assert_non_null(strstr(
      r.out,
      "\nhandlers add, big, cancelled_sleep, countdown (stream), crash"));
  assert_null(strchr(r.out, '\033')); /* not a terminal: no colour */
  cli_run_free(&r);
}

static void test_call_echo(void **state) {
  json_t *got, *want;
  cli_run_t r;

  (void)state;
  need_server();
  cli_poolctl(&r, "call", "-S", srv.sock, "echo", "{\"x\": 1}", NULL);
  assert_int_equal(r.code, 0);
  got = json_loads(r.out, JSON_DECODE_ANY, NULL);
  want = json_pack("{s:i}", "x", 1);
  assert_non_null(got);
  assert_true(json_equal(got, want));
  json_decref(got);
  json_decref(want);
  assert_string_equal(r.out, "{\"x\":1}\n");
  cli_run_free(&r);

  /* Options after the arguments; no argument means null. */
  cli_poolctl(&r, "call", "echo", "-S", srv.sock, "--timeout", "20000", NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "null\n");
  cli_run_free(&r);

  cli_poolctl(&r, "-S", srv.sock, "call", "add", "{\"a\": 2, \"b\": 40}", NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "42\n");
  cli_run_free(&r);

  /* A handler's bytes (even ones that read as JSON) are shown as bytes,
   * never as JSON or raw on the terminal. */
  cli_poolctl(&r, "-S", srv.sock, "call", "reverse_bytes",
              "\"21\\u0001\\\\\\\"\\u00e9\"", NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "b\"\\xa9\\xc3\\\"\\\\\\x0112\"\n");
  cli_run_free(&r);
  cli_poolctl(&r, "-S", srv.sock, "call", "reverse_bytes", "\"321\"", NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "b\"123\"\n");
  cli_run_free(&r);
}

/* A stream handler's items are printed a line each, bytes as bytes, then
 * its return value; over the socket they are "chunk" lines, and a call
 * that does not ask for a stream gets the handler's TypeError. */
static void test_call_stream(void **state) {
  cli_conn_t *c;
  cli_run_t r;
  json_t *v;

  (void)state;
  need_server();
  cli_poolctl(&r, "call", "-S", srv.sock, "countdown", "2", NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "2\n1\nb\"\\x00go\"\n\"liftoff\"\n");
  cli_run_free(&r);

  c = cli_conn_open(srv.sock);
  cli_conn_send(c, "{\"op\":\"call\",\"id\":3,\"stream\":true,"
                   "\"payload\":{\"cmd\":\"countdown\",\"args\":1}}\n");
  v = cli_conn_recv(c);
  assert_int_equal(cli_jint(v, "chunk"), 1);
  assert_int_equal(cli_jint(v, "id"), 3);
  json_decref(v);
  v = cli_conn_recv(c);
  assert_string_equal(cli_jstr(v, "chunk_hex"), "00676f");
  json_decref(v);
  v = cli_conn_recv(c);
  assert_string_equal(cli_jstr(v, "reply"), "liftoff");
  json_decref(v);
  cli_conn_send(c, "{\"op\":\"call\",\"payload\":{\"cmd\":\"countdown\","
                   "\"args\":1}}\n");
  v = cli_conn_recv(c);
  assert_false(json_is_true(json_object_get(v, "ok")));
  assert_non_null(strstr(cli_jstr(v, "message"), "take a stream"));
  json_decref(v);
  cli_conn_close(c);
}

/* A client that hangs up in the middle of an endless stream stops it:
 * the generator is closed and its worker's last answer comes back
 * (stale_reply), whatever on_client_death says (finish here). */
static void test_call_stream_hangup(void **state) {
  cli_conn_t *c, *trace;
  json_t *v;
  int seen = 0;

  (void)state;
  need_server();
  trace = cli_conn_open(srv.sock);
  cli_conn_send(trace, "{\"op\":\"trace\",\"filter\":\"stale_reply\"}\n");
  c = cli_conn_open(srv.sock);
  cli_conn_send(c, "{\"op\":\"call\",\"stream\":true,\"payload\":"
                   "{\"cmd\":\"countdown\",\"args\":1000000000000}}\n");
  v = cli_conn_recv(c);
  assert_int_equal(cli_jint(v, "chunk"), 1000000000000);
  json_decref(v);
  cli_conn_close(c);
  /* Lines until the event (the subscription's own answer first). */
  while (!seen && (v = cli_conn_recv(trace)) != NULL) {
    seen = json_is_string(json_object_get(v, "event")) &&
           strcmp(cli_jstr(v, "event"), "stale_reply") == 0;
    json_decref(v);
  }
  assert_true(seen);
  cli_conn_close(trace);
}

/* A call past its timeout_ms (here 0: nothing can be that fast) gets
 * ETIMEDOUT at once, and its worker is left to finish the request
 * (on_client_death: finish): it is not killed, its late reply is dropped,
 * and it serves again. */
static void test_call_timeout_leaves_worker(void **state) {
  json_int_t restarts, stale, now_stale = 0;
  char fifo[128], args[256];
  int64_t deadline;
  cli_conn_t *c;
  cli_run_t r;
  json_t *st;

  (void)state;
  need_server();
  fifo_make(fifo, sizeof(fifo), "call-timeout");
  snprintf(args, sizeof(args), "{\"fifo\": \"%s\"}", fifo);
  c = conn_open();
  st = cli_conn_status(c);
  restarts = cli_jint(st, "restarts");
  stale = cli_jint(st, "stale_replies");
  json_decref(st);
  cli_poolctl(&r, "call", "-S", srv.sock, "gate", args, "--timeout", "0", NULL);
  assert_int_equal(r.code, 1);
  if (!strstr(r.err, "timeout_ms"))
    fail_msg("poolctl said: %s", r.err);
  cli_run_free(&r);
  /* The handler still runs: released, it answers, and the answer is
   * dropped. */
  fifo_release(fifo);
  unlink(fifo);
  deadline = cli_now_ms() + CLI_WAIT_MS;
  while (now_stale <= stale && cli_now_ms() < deadline) {
    st = cli_conn_status(c);
    now_stale = cli_jint(st, "stale_replies");
    json_decref(st);
  }
  assert_int_equal(now_stale, stale + 1);
  st = cli_conn_status(c);
  assert_int_equal(cli_jint(st, "restarts"), restarts);
  json_decref(st);
  cli_conn_close(c);
  cli_poolctl(&r, "call", "-S", srv.sock, "echo", "2", NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "2\n");
  cli_run_free(&r);
}

static void test_call_errors(void **state) {
  cli_run_t r;

  (void)state;
  need_server();
  cli_poolctl(&r, "call", "-S", srv.sock, "fail", "1", NULL);
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_non_null(strstr(r.err, "poolctl: ValueError: boom: 1"));
  cli_run_free(&r);

  cli_poolctl(&r, "call", "-S", srv.sock, "no_such_handler", NULL);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "poolctl: UnknownCommand"));
  cli_run_free(&r);

  /* A misspelt handler: the nearest one, and the list. */
  cli_poolctl(&r, "call", "-S", srv.sock, "ehco", NULL);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err,
                         "poolctl: UnknownCommand: unknown command "
                         "'ehco'; did you mean 'echo'? (handlers: add, "));
  cli_run_free(&r);

  cli_poolctl(&r, "call", "-S", srv.sock, "echo", "{x", NULL);
  assert_int_equal(r.code, 2);
  assert_true(strncmp(r.err, "poolctl: ", 9) == 0);
  cli_run_free(&r);

  cli_poolctl(&r, "call", "-S", srv.sock, NULL);
  assert_int_equal(r.code, 2);
  cli_run_free(&r);

  cli_poolctl(&r, "call", "-S", srv.sock, "echo", "1", "--timeout", "soon",
              NULL);
  assert_int_equal(r.code, 2);
  cli_run_free(&r);
}

static void test_raw_protocol(void **state) {
  cli_conn_t *c;
  json_t *v;

  (void)state;
  need_server();
  c = conn_open();
  /* Pipelined: answered in order, an unknown op keeps the connection. */
  cli_conn_send(c, "{\"op\":\"ping\",\"id\":1}\n"
                   "\n"
                   "{\"op\":\"nope\"}\n"
                   "{\"op\":\"call\",\"id\":\"c\",\"payload\":{\"cmd\":\"add\","
                   "\"args\":{\"a\":1,\"b\":2}}}\r\n"
                   "{\"op\":7}\n"
                   "{\"op\":\"ping\"}\n");
  v = cli_conn_recv(c);
  assert_true(json_is_true(json_object_get(v, "ok")));
  assert_int_equal(cli_jint(v, "id"), 1);
  json_decref(v);
  v = cli_conn_recv(c);
  assert_true(json_is_false(json_object_get(v, "ok")));
  assert_string_equal(cli_jstr(v, "error"), "EINVAL");
  assert_non_null(strstr(cli_jstr(v, "message"), "nope"));
  json_decref(v);
  v = cli_conn_recv(c);
  assert_true(json_is_true(json_object_get(v, "ok")));
  assert_string_equal(cli_jstr(v, "id"), "c");
  assert_int_equal(cli_jint(v, "reply"), 3);
  json_decref(v);
  v = cli_conn_recv(c);
  assert_string_equal(cli_jstr(v, "error"), "EINVAL");
  json_decref(v);
  v = cli_conn_recv(c);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);

  /* A handler error carries the worker's ERROR payload as detail. */
  cli_conn_send(
      c, "{\"op\":\"call\",\"payload\":{\"cmd\":\"fail\",\"args\":7}}\n");
  v = cli_conn_recv(c);
  assert_true(json_is_false(json_object_get(v, "ok")));
  assert_string_equal(cli_jstr(v, "error"), "PP_EHANDLER");
  assert_string_equal(cli_jstr(json_object_get(v, "detail"), "type"),
                      "ValueError");
  assert_non_null(
      strstr(cli_jstr(json_object_get(v, "detail"), "traceback"), "Traceback"));
  json_decref(v);

  /* Half-close: what was sent is still answered, then EOF. */
  cli_conn_send(c,
                "{\"op\":\"call\",\"payload\":{\"cmd\":\"echo\",\"args\":5}}\n"
                "{\"op\":\"ping\",\"id\":9}");
  shutdown(c->fd, SHUT_WR);
  v = cli_conn_recv(c);
  assert_int_equal(cli_jint(v, "reply"), 5);
  json_decref(v);
  v = cli_conn_recv(c);
  assert_int_equal(cli_jint(v, "id"), 9);
  json_decref(v);
  assert_null(cli_conn_recv(c));
  cli_conn_close(c);
}

static void test_garbage_disconnects(void **state) {
  cli_conn_t *c, *other;
  json_t *v;
  cli_run_t r;

  (void)state;
  need_server();
  other = conn_open();
  c = conn_open();
  cli_conn_send(c, "this is not json\n{\"op\":\"ping\"}\n");
  v = cli_conn_recv(c);
  assert_non_null(v);
  assert_true(json_is_false(json_object_get(v, "ok")));
  assert_string_equal(cli_jstr(v, "error"), "EINVAL");
  json_decref(v);
  assert_null(cli_conn_recv(c)); /* disconnected; the ping is never answered */
  cli_conn_close(c);
  /* JSON that is not an object is an error the connection survives. */
  c = conn_open();
  cli_conn_send(c, "[1,2]\n{\"op\":\"ping\"}\n");
  v = cli_conn_recv(c);
  assert_non_null(v);
  assert_string_equal(cli_jstr(v, "error"), "EINVAL");
  assert_non_null(strstr(cli_jstr(v, "message"), "JSON object"));
  json_decref(v);
  v = cli_conn_recv(c);
  assert_non_null(v);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  cli_conn_close(c);

  /* Only that client: another connection and new ones still work. */
  cli_conn_send(other, "{\"op\":\"ping\"}\n");
  v = cli_conn_recv(other);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  cli_conn_close(other);
  cli_poolctl(&r, "status", "--json", "-S", srv.sock, NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
}

static void test_long_line_disconnects(void **state) {
  size_t total = (1u << 20) + 16, sent = 0, n;
  char chunk[65536];
  cli_conn_t *c;
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
  v = cli_conn_recv(c);
  assert_non_null(v);
  assert_string_equal(cli_jstr(v, "error"), "E2BIG");
  json_decref(v);
  assert_null(cli_conn_recv(c));
  cli_conn_close(c);
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
  code = cli_wait_exit(pid);
  assert_int_equal(code, 0);
  n = read(fds[0], buf, sizeof(buf) - 1);
  close(fds[0]);
  assert_true(n > 0);
  buf[n] = '\0';
  assert_string_equal(buf, "{\"ok\":false,\"error\":\"EPERM\",\"message\":"
                           "\"uid 65534 is not allowed\"}\n");
}

/* Send a call on a new connection (its reply is read later). */
static cli_conn_t *call_async(const char *cmd, const char *args) {
  cli_conn_t *c = conn_open();
  char line[256];

  snprintf(line, sizeof(line),
           "{\"op\":\"call\",\"payload\":{\"cmd\":\"%s\",\"args\":%s}}\n", cmd,
           args);
  cli_conn_send(c, line);
  return c;
}

/* Poll status on probe until status[key] == value; each status reply is
 * the event, and the number of tries is bounded.  Returns the status. */
static json_t *wait_status(cli_conn_t *probe, const char *key, int value) {
  json_t *st;
  int tries;

  for (tries = 0; tries < 100000; tries++) {
    st = cli_conn_status(probe);
    if (cli_jint(st, key) == value)
      return st;
    json_decref(st);
  }
  fail_msg("status never showed %s == %d", key, value);
  return NULL;
}

/* Wait until `busy` workers are busy; returns the pid of the last. */
static int wait_busy(cli_conn_t *probe, int busy) {
  json_t *st = wait_status(probe, "busy", busy), *w;
  int pid = 0;
  size_t i;

  json_array_foreach(json_object_get(st, "workers"), i, w) {
    if (strcmp(cli_jstr(w, "state"), "busy") == 0)
      pid = (int)cli_jint(w, "pid");
  }
  json_decref(st);
  return pid;
}

static void test_disconnect_mid_call(void **state) {
  cli_conn_t *a, *b, *c, *probe;
  json_t *st, *v, *w;
  int orphan_pid;
  size_t i;

  (void)state;
  need_server();
  probe = conn_open();
  /* A's request runs on one worker; A hangs up mid-call. */
  a = call_async("sleep", "2");
  orphan_pid = wait_busy(probe, 1);
  cli_conn_close(a);
  /* B holds the other worker for longer than A's request still runs; C
   * then has to wait for a worker and gets the one A left, once its
   * request finished and its reply was dropped. */
  b = call_async("sleep", "2.5");
  wait_busy(probe, 2);
  c = call_async("pid", "null");
  v = cli_conn_recv(c);
  assert_true(json_is_true(json_object_get(v, "ok")));
  assert_int_equal(cli_jint(v, "reply"), orphan_pid);
  json_decref(v);
  v = cli_conn_recv(b);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  cli_conn_close(b);
  cli_conn_close(c);

  st = cli_conn_status(probe);
  assert_int_equal(cli_jint(st, "idle"), 2);
  assert_true(cli_jint(st, "reclaimed") >= 1);
  assert_true(cli_jint(st, "stale_replies") >= 1);
  assert_int_equal(cli_jint(st, "restarts"), 0);
  json_array_foreach(json_object_get(st, "workers"), i, w) {
    assert_string_equal(cli_jstr(w, "state"), "idle");
    assert_int_equal(cli_jint(w, "pid"), srv.pids[i]);
  }
  json_decref(st);
  cli_conn_close(probe);
}

static void test_disconnect_while_waiting(void **state) {
  cli_conn_t *a, *b, *waiting[5], *probe;
  json_int_t checkouts;
  json_t *st, *v;
  int i;

  (void)state;
  need_server();
  probe = conn_open();
  st = cli_conn_status(probe);
  checkouts = cli_jint(st, "checkouts");
  json_decref(st);
  a = call_async("sleep", "1");
  b = call_async("sleep", "1");
  wait_busy(probe, 2);
  for (i = 0; i < 5; i++)
    waiting[i] = call_async("pid", "null");
  json_decref(wait_status(probe, "waiters", 5));
  for (i = 0; i < 5; i++)
    cli_conn_close(waiting[i]);
  json_decref(wait_status(probe, "waiters", 0));
  v = cli_conn_recv(a);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  v = cli_conn_recv(b);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  cli_conn_close(a);
  cli_conn_close(b);
  /* Nobody is left: both workers idle, and no dead waiter was ever given
   * a worker (only a and b checked out). */
  st = cli_conn_status(probe);
  assert_int_equal(cli_jint(st, "idle"), 2);
  assert_int_equal(cli_jint(st, "checkouts"), checkouts + 2);
  assert_int_equal(cli_jint(st, "timeouts"), 0);
  json_decref(st);
  cli_conn_close(probe);
}

static void test_sigterm_stops(void **state) {
  cli_conn_t *idle, *busy, *probe;
  cli_run_t r;
  int i;

  (void)state;
  need_server();
  /* Neither an idle connection nor one with a call running holds the
   * stop up; both are closed. */
  idle = conn_open();
  busy = call_async("sleep", "0.5");
  probe = conn_open();
  wait_busy(probe, 1);
  cli_conn_close(probe);
  assert_int_equal(kill(srv.pid, SIGTERM), 0);
  serve_wait_line("stopped");
  assert_non_null(strstr(srv.lines, "stopping (SIGTERM)\n"));
  assert_int_equal(cli_wait_exit(srv.pid), 0);
  srv.pid = 0;
  assert_null(cli_conn_recv(idle)); /* closed by the server */
  cli_conn_close(idle);
  assert_null(cli_conn_recv(busy));
  cli_conn_close(busy);
  assert_int_equal(access(srv.sock, F_OK), -1);
  assert_int_equal(errno, ENOENT);
  for (i = 0; i < 2; i++) {
    assert_true(srv.pids[i] > 0);
    assert_int_equal(wait_pid_gone(srv.pids[i], CLI_WAIT_MS), 0);
  }
  cli_poolctl(&r, "status", "-S", srv.sock, NULL);
  assert_int_equal(r.code, 3);
  cli_run_free(&r);
}

/* ------------------------------------------- the socket's file and lock */

/* A fresh directory of mode `mode` under base (made with mkdtemp, so the
 * name is ours); its path into dir. */
static void fresh_dir(const char *base, mode_t mode, char *dir, size_t len) {
  snprintf(dir, len, "%s/pp-sec-XXXXXX", base);
  assert_non_null(mkdtemp(dir));
  assert_int_equal(chmod(dir, mode), 0);
}

/* Someone who can write in the socket's directory swaps the socket for a
 * symlink right after bind (tests/shim.c does it in that very window):
 * the server must never change the mode of what the link points at.  A
 * directory outside /tmp, since that is where nothing checked it. */
static void test_socket_symlink_swap(void **state) {
  char dir[128], sock[160], target[192], cwd[96], out[4096];
  char *cmd = worker_command();
  char *argv[] = {(char *)cli_poolctl_path(),
                  "serve",
                  "-S",
                  sock,
                  "--set",
                  "size=1",
                  "--set",
                  cmd,
                  NULL};
  int64_t deadline = cli_now_ms() + CLI_WAIT_MS;
  size_t len = 0;
  struct stat st;
  struct pollfd p;
  int fd, code;
  ssize_t got;
  pid_t pid;

  (void)state;
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  fresh_dir(cwd, 0777, dir, sizeof(dir));
  snprintf(sock, sizeof(sock), "%s/pool.sock", dir);
  snprintf(target, sizeof(target), "%s/victim", cwd);
  fd = open(target, O_CREAT | O_WRONLY | O_TRUNC, 0644);
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(chmod(target, 0644), 0);
  cli_shim("PP_SHIM_SWAP_TARGET", target);
  pid = cli_spawn(argv, &fd, NULL);
  cli_shim(NULL, NULL);
  free(cmd);
  /* Until it exits, or has its socket set up (it says "warming"). */
  out[0] = '\0';
  while (strstr(out, "warming") == NULL && len + 1 < sizeof(out)) {
    p.fd = fd;
    p.events = POLLIN;
    if (poll(&p, 1, cli_remaining(deadline)) <= 0)
      break;
    got = read(fd, out + len, sizeof(out) - 1 - len);
    if (got <= 0)
      break;
    len += (size_t)got;
    out[len] = '\0';
  }
  close(fd);
  kill(pid, SIGKILL);
  code = cli_wait_exit(pid);
  assert_int_equal(stat(target, &st), 0);
  if ((st.st_mode & 0777) != 0644)
    fail_msg("the server changed the mode of %s through a symlink to %04o",
             target, (unsigned)(st.st_mode & 0777));
  /* It refused the directory anybody could write in. */
  assert_int_equal(code, 1);
  assert_null(strstr(out, "warming"));
  unlink(target);
  unlink(sock);
  snprintf(target, sizeof(target), "%s.moved", sock);
  unlink(target);
  rmdir(dir);
}

/* The socket's directory must be ours (or root's) and writable by nobody
 * else (OpenSSH's StrictModes), wherever it is, in the library: a
 * group-writable one, one owned by another uid, or a symlink is refused
 * with a message that says why; a private 0755 one is fine. */
static void test_socket_dir_rules(void **state) {
  char dir[128], link[160], sock[192], cwd[96];
  char *cmd = worker_command();
  cli_server_t s;
  cli_run_t r;

  (void)state;
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  /* Group-writable, outside /tmp. */
  fresh_dir(cwd, 0770, dir, sizeof(dir));
  snprintf(sock, sizeof(sock), "%s/pool.sock", dir);
  cli_poolctl(&r, "serve", "-S", sock, "--set", "size=1", "--set", cmd, NULL);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "unsafe socket directory"));
  assert_non_null(strstr(r.err, "mode 0770 lets its group write in it"));
  assert_int_equal(access(sock, F_OK), -1);
  cli_run_free(&r);
  /* The client applies the same rule, and names who may write the same
   * way: its group, others, or both. */
  cli_poolctl(&r, "status", "-S", sock, NULL);
  assert_int_not_equal(r.code, 0);
  if (!strstr(r.err, "mode 0770 lets its group write in it"))
    fail_msg("poolctl status on a 0770 directory said: %s", r.err);
  cli_run_free(&r);
  assert_int_equal(chmod(dir, 0757), 0);
  cli_poolctl(&r, "status", "-S", sock, NULL);
  if (!strstr(r.err, "mode 0757 lets others write in it"))
    fail_msg("poolctl status on a 0757 directory said: %s", r.err);
  cli_run_free(&r);
  assert_int_equal(chmod(dir, 0777), 0);
  cli_poolctl(&r, "status", "-S", sock, NULL);
  if (!strstr(r.err, "mode 0777 lets group and others write in it"))
    fail_msg("poolctl status on a 0777 directory said: %s", r.err);
  cli_run_free(&r);
  /* A symlink to a private directory. */
  assert_int_equal(chmod(dir, 0700), 0);
  snprintf(link, sizeof(link), "%s.link", dir);
  assert_int_equal(symlink(dir, link), 0);
  snprintf(sock, sizeof(sock), "%s/pool.sock", link);
  cli_poolctl(&r, "serve", "-S", sock, "--set", "size=1", "--set", cmd, NULL);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "not a directory (a symlink?)"));
  cli_run_free(&r);
  unlink(link);
  /* Owned by someone else (created before us, say), even mode 0700. */
  if (geteuid() == 0) {
    assert_int_equal(chown(dir, 65534, 65534), 0);
    snprintf(sock, sizeof(sock), "%s/pool.sock", dir);
    cli_poolctl(&r, "serve", "-S", sock, "--set", "size=1", "--set", cmd, NULL);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.err, "owned by uid 65534, not by you"));
    assert_int_equal(access(sock, F_OK), -1);
    cli_run_free(&r);
    assert_int_equal(chown(dir, 0, 0), 0);
  }
  rmdir(dir);
  /* 0755 and ours, in /tmp: served, and poolctl talks to it. */
  fresh_dir("/tmp", 0755, dir, sizeof(dir));
  snprintf(sock, sizeof(sock), "%s/pool.sock", dir);
  cli_server_start(&s, "-S", sock, "--set", "size=1", "--set", cmd, NULL);
  cli_poolctl(&r, "status", "--json", "-S", sock, NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  cli_server_stop(&s);
  /* Stopped: neither the socket nor its lock file is left. */
  assert_int_equal(rmdir(dir), 0);
  free(cmd);
}

/* The built-in default (no config file) runs its example handlers even as
 * root, and says so in one line with the way out. */
static void test_serve_default_root_warning(void **state) {
  char dir[64], sock[96];
  const char *line;
  cli_server_t s;

  (void)state;
  fresh_dir("/tmp", 0700, dir, sizeof(dir));
  snprintf(sock, sizeof(sock), "%s/pool.sock", dir);
  cli_server_start(&s, "-S", sock, "--set", "size=1", NULL);
  if (geteuid() == 0) {
    line = cli_lines_find(&s.err, "poolctl: warning: running as root");
    assert_non_null(strstr(line, "worker.user"));
  }
  cli_server_stop(&s);
  assert_int_equal(rmdir(dir), 0);
}

/* An fd serve inherited without close-on-exec does not reach its
 * workers (which may run as another user): a worker has 0..4 and the one
 * that lists them. */
static void test_serve_inherited_fd_not_passed(void **state) {
  char dir[64], sock[96], *cmd = worker_command_for("limits_handlers.py");
  int fd, i;
  json_t *list;
  cli_server_t s;
  cli_run_t r;

  (void)state;
  fresh_dir("/tmp", 0700, dir, sizeof(dir));
  snprintf(sock, sizeof(sock), "%s/pool.sock", dir);
  /* Left open to exec on purpose: the server inherits it. */
  fd = open("/dev/null", O_RDONLY);
  assert_true(fd >= 0);
  assert_int_equal(dup2(fd, 77), 77);
  close(fd);
  cli_server_start(&s, "-S", sock, "--set", "size=1", "--set",
                   "worker.allow_root=true", "--set", cmd, NULL);
  close(77);
  cli_poolctl(&r, "-S", sock, "call", "fds", NULL);
  assert_int_equal(r.code, 0);
  list = json_loads(r.out, 0, NULL);
  assert_non_null(list);
  assert_true(json_is_array(list));
  /* 0-4 and the listing's own directory fd, nothing else. */
  assert_int_equal(json_array_size(list), 6);
  for (i = 0; i < 5; i++)
    assert_int_equal(json_integer_value(json_array_get(list, (size_t)i)), i);
  json_decref(list);
  cli_run_free(&r);
  cli_server_stop(&s);
  free(cmd);
  assert_int_equal(rmdir(dir), 0);
}

/* A server that is starting holds the lock and has bound its socket but
 * does not listen yet (the test plays it): a second server must not take
 * the socket for stale, and says who holds it. */
static void test_two_servers_one_socket(void **state) {
  char dir[64], sock[96], lock[104], pid[32];
  char *cmd = worker_command();
  struct sockaddr_un sa;
  cli_server_t s;
  struct stat a, b;
  cli_run_t r;
  int fd, lfd;

  (void)state;
  fresh_dir("/tmp", 0700, dir, sizeof(dir));
  snprintf(sock, sizeof(sock), "%s/pool.sock", dir);
  snprintf(lock, sizeof(lock), "%s.lock", sock);
  lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  assert_true(lfd >= 0);
  assert_int_equal(flock(lfd, LOCK_EX | LOCK_NB), 0);
  snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
  assert_int_equal(write(lfd, pid, strlen(pid)), (ssize_t)strlen(pid));
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(stat(sock, &a), 0);

  cli_poolctl(&r, "serve", "-S", sock, "--set", "size=1", "--set", cmd, NULL);
  assert_int_equal(r.code, 1);
  snprintf(pid, sizeof(pid), "(pid %d)", (int)getpid());
  if (!strstr(r.err, "another server holds") || !strstr(r.err, pid))
    fail_msg("the second server said: %s", r.err);
  cli_run_free(&r);
  /* The first one's socket is still the one it bound. */
  assert_int_equal(stat(sock, &b), 0);
  assert_true(a.st_ino == b.st_ino);

  /* Once it is gone (lock released, socket stale), a server takes over;
   * a second one started beside it fails, and the first still answers. */
  close(fd);
  close(lfd);
  cli_server_start(&s, "-S", sock, "--set", "size=1", "--set", cmd, NULL);
  cli_poolctl(&r, "serve", "-S", sock, "--set", "size=1", "--set", cmd, NULL);
  assert_int_equal(r.code, 1);
  snprintf(pid, sizeof(pid), "(pid %d)", (int)s.pid);
  if (!strstr(r.err, "another server holds") || !strstr(r.err, pid))
    fail_msg("the second server said: %s", r.err);
  cli_run_free(&r);
  cli_poolctl(&r, "status", "--json", "-S", sock, NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  cli_server_stop(&s);
  assert_int_equal(access(lock, F_OK), -1);
  assert_int_equal(rmdir(dir), 0);
  free(cmd);
}

/* Numbers reach the handler and come back exactly as written: floats
 * that need 17 digits in a double's shortest form are not rewritten, and
 * integers past 64 bits are neither refused nor turned into strings, by
 * poolctl or by the socket. */
static void test_numbers_exact(void **state) {
  const char *args = "[0.1,1e+300,18446744073709551616,-9223372036854775809,"
                     "2.5e-08,123456789012345678901234567890]";
  char want[256];
  cli_conn_t *c;
  cli_run_t r;
  char line[512];
  ssize_t n;
  size_t got = 0;

  (void)state;
  need_server();
  cli_poolctl(&r, "call", "-S", srv.sock, "echo", args, NULL);
  assert_int_equal(r.code, 0);
  snprintf(want, sizeof(want), "%s\n", args);
  assert_string_equal(r.out, want);
  cli_run_free(&r);
  /* The same on the raw socket, with an id, and a line break in the
   * payload's whitespace. */
  c = conn_open();
  cli_conn_send(c, "{\"op\":\"call\",\"id\":7,\"payload\":{\"cmd\":\"echo\","
                   "\"args\": [18446744073709551616,\r 0.1]}}\n");
  while (got == 0 || line[got - 1] != '\n') {
    n = read(c->fd, line + got, sizeof(line) - 1 - got);
    assert_true(n > 0);
    got += (size_t)n;
  }
  line[got] = '\0';
  assert_string_equal(line, "{\"ok\":true,\"id\":7,\"reply\":"
                            "[18446744073709551616,0.1]}\n");
  cli_conn_close(c);
}

/* The server refuses a connection past its limit with a line, then
 * closes; a poolctl whose request comes after that close (tests/shim.c
 * holds its send until then) prints the server's reason, not EPIPE. */
static void test_refusal_after_epipe(void **state) {
  char dir[64], sock[96];
  char *cmd = worker_command();
  cli_conn_t *many[270];
  cli_server_t s;
  json_t *v;
  cli_run_t r;
  int i, n = 0;

  (void)state;
  fresh_dir("/tmp", 0700, dir, sizeof(dir));
  snprintf(sock, sizeof(sock), "%s/pool.sock", dir);
  cli_server_start(&s, "-S", sock, "--set", "size=1", "--set", cmd, "--set",
                   "control.idle_timeout=1h", NULL);
  /* Every connection, the owner's reserve too. */
  for (i = 0; i < 270; i++) {
    many[i] = cli_conn_open(sock);
    /* One refused may have been closed already. */
    if (send(many[i]->fd, "{\"op\":\"ping\"}\n", 14, MSG_NOSIGNAL) < 0)
      continue;
    v = cli_conn_recv(many[i]);
    n += json_is_true(json_object_get(v, "ok"));
    json_decref(v);
  }
  assert_int_equal(n, 256 + 8);
  cli_shim("PP_SHIM_SEND_AFTER_HUP", "1");
  cli_poolctl(&r, "status", "-S", sock, NULL);
  cli_shim(NULL, NULL);
  assert_int_equal(r.code, 1);
  if (!strstr(r.err, "too many control connections") ||
      !strstr(r.err, "(EBUSY)") || strstr(r.err, "Broken pipe"))
    fail_msg("poolctl said: %s", r.err);
  cli_run_free(&r);
  for (i = 0; i < 270; i++)
    cli_conn_close(many[i]);
  cli_server_stop(&s);
  rmdir(dir);
  free(cmd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_help_and_usage),
      cmocka_unit_test(test_not_running),
      cmocka_unit_test(test_bad_config),
      cmocka_unit_test(test_serve_boot_failure),
      cmocka_unit_test(test_serve_default_root_warning),
      cmocka_unit_test(test_serve_inherited_fd_not_passed),
      cmocka_unit_test(test_serve_hang_at_import),
      cmocka_unit_test(test_serve_out_of_fds),
      cmocka_unit_test(test_serve_ready),
      cmocka_unit_test(test_socket_mode),
      cmocka_unit_test(test_second_serve_refused),
      cmocka_unit_test(test_status_json),
      cmocka_unit_test(test_status_table),
      cmocka_unit_test(test_call_echo),
      cmocka_unit_test(test_call_stream),
      cmocka_unit_test(test_call_stream_hangup),
      cmocka_unit_test(test_call_errors),
      cmocka_unit_test(test_call_timeout_leaves_worker),
      cmocka_unit_test(test_raw_protocol),
      cmocka_unit_test(test_garbage_disconnects),
      cmocka_unit_test(test_long_line_disconnects),
      cmocka_unit_test(test_other_uid_refused),
      cmocka_unit_test(test_disconnect_mid_call),
      cmocka_unit_test(test_disconnect_while_waiting),
      cmocka_unit_test(test_numbers_exact),
      cmocka_unit_test(test_sigterm_stops),
      cmocka_unit_test(test_socket_symlink_swap),
      cmocka_unit_test(test_socket_dir_rules),
      cmocka_unit_test(test_two_servers_one_socket),
      cmocka_unit_test(test_refusal_after_epipe),
  };

  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
