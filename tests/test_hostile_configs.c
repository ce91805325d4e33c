/* test_hostile_configs.c -- hostile input: every malformed YAML fixture
 * given to `poolctl serve -c`, and hostile control-socket clients (broken
 * lines, idle and stalled connections, more connections than the server
 * serves, peers of other uids). */
#include "hostile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The server's connection limit, CTL_CONN_MAX (control/control.h). */
#define CTL_TEST_CONN_MAX 256

/* ======================================================== hostile input */

/* Every YAML fixture in fixtures/config/: the malformed ones with where
 * `poolctl serve -c` must point (exit 2, "poolctl: FILE:LINE:COL: ..."),
 * and the valid ones (line 0), which are not served here.  A fixture
 * missing from this table fails the test. */
typedef struct yaml_case {
  const char *file;
  int line, column;
  const char *says; /* part of the message */
} yaml_case_t;

static const yaml_case_t yaml_cases[] = {
    {"full.yaml", 0, 0, NULL},
    {"minimal.yaml", 0, 0, NULL},
    {"bad_duration.yaml", 3, 12, "checkout.timeout"},
    {"bad_enum.yaml", 2, 13, "checkout.strategy"},
    {"bad_size.yaml", 2, 7, "size"},
    {"bare_duration.yaml", 1, 27, "worker.startup_timeout"},
    {"duplicate_key.yaml", 4, 1, "duplicate key"},
    {"min_ready_over_size.yaml", 2, 12, "min_ready"},
    {"not_mapping.yaml", 1, 1, "must be a mapping"},
    {"syntax_bracket.yaml", 4, 18, "did not find expected"},
    {"syntax_tab.yaml", 3, 1, "cannot start any token"},
    {"unknown_key.yaml", 2, 1, "did you mean 'checkout'"},
    {"unknown_nested.yaml", 4, 3, "did you mean 'worker.command'"},
    /* Hostile ones. */
    {"alias_loop.yaml", 2, 9, "worker.command"},
    {"billion_laughs.yaml", 4, 8, "worker.command"},
    {"deep_nesting.yaml", 4, 74, "collections nested more than 64 deep"},
    {"invalid_utf8.yaml", 2, 10, "UTF-8"},
    {"nul_byte.yaml", 1, 8, "control characters"},
    {"huge_int.yaml", 1, 7, "size"},
    {"two_documents.yaml", 3, 1, "one YAML document"},
    {"key_not_scalar.yaml", 1, 3, "expected a key name"},
    {"section_scalar.yaml", 2, 9, "expected a mapping of worker.* keys"},
    {"long_key.yaml", 1, 5001, ""},
    {"empty_command.yaml", 2, 12, "needs a command"},
    {"negative_duration.yaml", 2, 15, "worker.kill_grace"},
    /* Checked when loaded, not when the socket starts. */
    {"unknown_user.yaml", 3, 15,
     "control.allow_uids: no user named \"no-such-user-pp\""},
};

#define NYAML (sizeof(yaml_cases) / sizeof(yaml_cases[0]))

static void test_malformed_configs(void **state) {
  char dir[64], sock[128], prefix[1200], *path;
  const char *dirpath;
  struct dirent *de;
  size_t i, found;
  cli_run_t r;
  DIR *d;

  (void)state;
  /* Every fixture is in the table. */
  path = fixture_path("config");
  d = opendir(path);
  assert_non_null(d);
  while ((de = readdir(d)) != NULL) {
    size_t len = strlen(de->d_name);
    if (len < 5 || strcmp(de->d_name + len - 5, ".yaml") != 0)
      continue;
    for (found = 0, i = 0; i < NYAML; i++)
      found |= strcmp(yaml_cases[i].file, de->d_name) == 0;
    if (!found)
      fail_msg("fixtures/config/%s is not in yaml_cases", de->d_name);
  }
  closedir(d);
  dirpath = path;

  snprintf(dir, sizeof(dir), "/tmp/pp-yaml-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(sock, sizeof(sock), "%s/never.sock", dir);
  for (i = 0; i < NYAML; i++) {
    const yaml_case_t *yc = &yaml_cases[i];
    char file[512];
    char *argv[] = {
        (char *)cli_poolctl_path(), "serve", "-S", sock, "-c", file, NULL};

    if (yc->line == 0)
      continue;
    snprintf(file, sizeof(file), "%s/%s", dirpath, yc->file);
    cli_run_argv(&r, argv);
    snprintf(prefix, sizeof(prefix), "poolctl: %s:%d:%d: ", file, yc->line,
             yc->column);
    if (r.code != 2 || strncmp(r.err, prefix, strlen(prefix)) != 0 ||
        strstr(r.err, yc->says) == NULL ||
        strchr(r.err, '\n') != r.err + strlen(r.err) - 1)
      fail_msg("%s: exit %d, stderr:\n%swant exit 2 and one line '%s...%s'",
               yc->file, r.code, r.err, prefix, yc->says);
    assert_string_equal(r.out, "");
    assert_int_equal(access(sock, F_OK), -1);
    cli_run_free(&r);
  }
  rmdir(dir);
  free(path);
}

/* Hostile control-socket clients, each on its own connection while a
 * well-behaved client keeps talking: each gets an error (and a connection
 * that is not JSON is closed), never takes the server or its workers
 * down, and nobody else notices. */
typedef struct sock_case {
  const char *name;
  const char *bytes;
  size_t len; /* 0: strlen */
  int fatal;  /* the connection is closed after the error */
} sock_case_t;

static void test_hostile_socket_clients(void **state) {
  static char deep[100002];
  sock_case_t cases[] = {
      {"deep nesting", deep, 0, 1},
      {"NUL byte", "{\"op\":\"ping\"}\0trailing\n", 24, 1},
      {"invalid UTF-8", "{\"op\":\"call\",\"payload\":\"\xff\xfe\"}\n", 0, 1},
      {"not an object", "[1,2,3]\n", 0, 0},
      /* Valid JSON past a double: passed on as written, and the worker
       * refuses a payload that is not a call. */
      {"number past a double", "{\"op\":\"call\",\"payload\":1e999}\n", 0, 0},
      {"unknown op", "{\"op\":\"self_destruct\"}\n", 0, 0},
      {"op not a string", "{\"op\":{\"op\":\"ping\"}}\n", 0, 0},
      {"payload the worker refuses", "{\"op\":\"call\",\"payload\":\"x\"}\n", 0,
       0},
  };
  cli_conn_t *good, *bad, *many[300];
  int pids[2], pids2[2], busy_refused = 0;
  json_t *v, *st;
  static serve_t s; /* the teardown may need it after a failure */
  size_t i;

  (void)state;
  memset(deep, '[', sizeof(deep) - 2);
  deep[sizeof(deep) - 2] = '\n';
  serve_start(&s, "echo_handlers.py", NULL, NULL);
  serve_wait_line(&s, "ready: ");
  good = cli_conn_open(s.sock);
  assert_int_equal(conn_worker_pids(good, pids, 2), 2);
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const sock_case_t *sc = &cases[i];
    if (getenv("PP_TEST_VERBOSE"))
      fprintf(stderr, "  hostile client: %s\n", sc->name);
    bad = cli_conn_open(s.sock);
    assert_int_equal(
        cli_conn_send_n(bad, sc->bytes, sc->len ? sc->len : strlen(sc->bytes)),
        0);
    v = cli_conn_recv(bad);
    if (v == NULL || !json_is_false(json_object_get(v, "ok")))
      fail_msg("%s: no error reply", sc->name);
    json_decref(v);
    if (sc->fatal) {
      v = cli_conn_recv(bad);
      if (v != NULL)
        fail_msg("%s: the connection stayed open", sc->name);
    } else {
      cli_conn_send(bad, "{\"op\":\"ping\"}\n");
      v = cli_conn_recv(bad);
      if (v == NULL || !json_is_true(json_object_get(v, "ok")))
        fail_msg("%s: the connection did not survive a mere error", sc->name);
      json_decref(v);
    }
    cli_conn_close(bad);
    assert_int_equal(conn_call_int(good, "pid", "null") > 0, 1);
  }
  /* Half a line, then a hang-up. */
  bad = cli_conn_open(s.sock);
  cli_conn_send(bad, "{\"op\":\"call\",\"payload\":{\"cmd\":\"ech");
  cli_conn_close(bad);
  /* More connections than the server serves at once: the extra ones are
   * refused with EBUSY, the first ones and `good` still work. */
  for (i = 0; i < 300; i++)
    many[i] = cli_conn_open(s.sock);
  for (i = 0; i < 300; i++) {
    cli_conn_send_n(many[i], "{\"op\":\"ping\"}\n", 14); /* may be refused */
    v = cli_conn_recv(many[i]);
    if (v != NULL && json_is_false(json_object_get(v, "ok")))
      busy_refused++;
    json_decref(v);
  }
  for (i = 0; i < 300; i++)
    cli_conn_close(many[i]);
  /* 256, and 8 more for the pool's own uid (the test's). */
  assert_true(busy_refused >= 300 - 256 - 8);
  assert_int_equal(conn_call_int(good, "pid", "null") > 0, 1);
  /* The workers never noticed. */
  assert_int_equal(conn_worker_pids(good, pids2, 2), 2);
  assert_int_equal(pids[0], pids2[0]);
  assert_int_equal(pids[1], pids2[1]);
  st = cli_conn_status(good);
  assert_int_equal(json_integer_value(json_object_get(st, "restarts")), 0);
  json_decref(st);
  cli_conn_close(good);
  serve_stop(&s);
}

/* Start `poolctl serve` on the echo handlers with control.idle_timeout
 * of ms times PP_TEST_TIME_SCALE, and wait until it is ready. */
static void serve_idle_timeout(serve_t *s, int ms) {
  char idle_set[64];

  snprintf(idle_set, sizeof(idle_set), "control.idle_timeout=%dms",
           ms * test_time_scale());
  serve_start(s, "echo_handlers.py", idle_set, NULL);
  serve_wait_line(s, "ready: ");
}

/* Idle control connections are closed after control.idle_timeout (so 256
 * of them cannot lock operators out), and so is one that sends half a
 * request and stops; a trace stream is not idle while it reads; and once
 * the idle ones are gone, status gets through again. */
static void test_idle_timeout(void **state) {
  static serve_t s; /* the teardown may need it after a failure */
  static cli_conn_t *idle[300];
  cli_conn_t *slow, *trace, *probe;
  json_t *v, *st;
  size_t i;

  (void)state;
  /* Long enough that the test's own connections, which are never idle
   * on purpose, are not closed while it is descheduled. */
  serve_idle_timeout(&s, 1000);
  trace = cli_conn_open(s.sock);
  cli_conn_send(trace, "{\"op\":\"trace\",\"filter\":\"reply\"}\n");
  v = cli_conn_recv(trace);
  assert_true(v && json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  slow = cli_conn_open(s.sock);
  cli_conn_send(slow, "{\"op\":\"sta");
  /* More than the server serves at once, all silent. */
  for (i = 0; i < 300; i++)
    idle[i] = cli_conn_open(s.sock);
  for (i = 0; i < 300; i++)
    if (!cli_conn_hup(idle[i], WAIT_MS))
      fail_msg("idle connection %zu still open after %d ms", i, WAIT_MS);
  if (!cli_conn_hup(slow, WAIT_MS))
    fail_msg("the connection with half a request is still open");
  probe = cli_conn_open(s.sock);
  st = cli_conn_status(probe);
  json_decref(st);
  /* The trace stream, older than every idle one, still streams. */
  assert_true(conn_call_int(probe, "pid", "null") > 0);
  v = cli_conn_recv(trace);
  if (v == NULL ||
      strcmp(json_string_value(json_object_get(v, "event")), "reply") != 0)
    fail_msg("the trace stream was closed or sent no reply event");
  json_decref(v);
  for (i = 0; i < 300; i++)
    cli_conn_close(idle[i]);
  cli_conn_close(slow);
  cli_conn_close(trace);
  cli_conn_close(probe);
  serve_stop(&s);
}

/* Every reply carries its request's id as written: a number jansson
 * would round or refuse, through ping, a call, an error and a bad
 * request. */
static void test_id_echoed_as_written(void **state) {
  static serve_t s;
  static const struct {
    const char *req, *id;
  } cases[] = {
      {"{\"op\":\"ping\",\"id\":0.1}\n", "\"id\":0.1}"},
      {"{\"op\":\"ping\",\"id\":18446744073709551616}\n",
       "\"id\":18446744073709551616}"},
      {"{\"op\":\"call\",\"id\": [ 0.1 , 1e400 ],\"payload\":{\"cmd\":"
       "\"pid\",\"args\":null}}\n",
       "\"id\":[0.1,1e400],"},
      {"{\"op\":\"nope\",\"id\":0.10}\n", "\"id\":0.10}"},
      {"{\"op\":\"scale\",\"id\":1E+2,\"n\":0}\n", "\"id\":1E+2}"},
  };
  cli_conn_t *c;
  char line[4096];
  size_t i, len;
  char *nl;

  (void)state;
  serve_start(&s, "echo_handlers.py", NULL, NULL);
  serve_wait_line(&s, "ready: ");
  c = cli_conn_open(s.sock);
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cli_conn_send(c, cases[i].req);
    /* The raw bytes: read up to the newline ourselves. */
    for (;;) {
      nl = memchr(c->buf, '\n', c->len);
      if (nl)
        break;
      struct pollfd p = {c->fd, POLLIN, 0};
      ssize_t got;
      if (poll(&p, 1, WAIT_MS) != 1)
        fail_msg("no reply to %s", cases[i].req);
      got = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
      if (got <= 0)
        fail_msg("hung up on %s", cases[i].req);
      c->len += (size_t)got;
    }
    len = (size_t)(nl - c->buf);
    snprintf(line, sizeof(line), "%.*s", (int)len, c->buf);
    memmove(c->buf, nl + 1, c->len - len - 1);
    c->len -= len + 1;
    if (strstr(line, cases[i].id) == NULL)
      fail_msg("%s got %s, without %s", cases[i].req, line, cases[i].id);
  }
  cli_conn_close(c);
  serve_stop(&s);
}

/* Blank lines are skipped, and are not activity: a client that only
 * sends them (every quarter of the idle timeout) is still closed once
 * control.idle_timeout passes. */
static void test_blank_lines_idle(void **state) {
  static serve_t s;
  const char *blanks[] = {"\n", " \r\n", "\t\n"};
  int64_t deadline;
  cli_conn_t *c, *probe;
  struct pollfd p;
  json_t *st;
  char buf[256];
  int i = 0, r, closed = 0;

  (void)state;
  serve_idle_timeout(&s, 200);
  c = cli_conn_open(s.sock);
  deadline = cli_now_ms() + WAIT_MS;
  while (!closed && cli_remaining(deadline) > 0) {
    if (cli_conn_send_n(c, blanks[i % 3], strlen(blanks[i % 3])) != 0)
      break; /* the server hung up */
    i++;
    /* The pace of the blank lines; the close ends the wait at once. */
    p.fd = c->fd;
    p.events = POLLIN;
    p.revents = 0;
    r = poll(&p, 1, 50 * test_time_scale());
    if (r < 0 && errno != EINTR)
      break;
    if (r == 1) {
      ssize_t got = read(c->fd, buf, sizeof(buf));
      if (got > 0)
        fail_msg("a blank line got a reply: %.*s", (int)got, buf);
      closed = 1;
    }
  }
  if (!closed && !cli_conn_hup(c, 0))
    fail_msg("a client sending only blank lines (%d of them) was not closed "
             "by the %d ms idle timeout within %d ms",
             i, 200 * test_time_scale(), WAIT_MS);
  cli_conn_close(c);
  probe = cli_conn_open(s.sock);
  st = cli_conn_status(probe);
  json_decref(st);
  cli_conn_close(probe);
  serve_stop(&s);
}

/* A client that asks for a big reply and never reads it is closed once
 * its unwritten reply stays past the bound (4 MiB) for the timeout: the
 * server does not pin 30 MB per such client for ever. */
static void test_stalled_reader_closed(void **state) {
  static serve_t s;
  cli_conn_t *stalled, *probe;
  json_t *st;

  (void)state;
  serve_idle_timeout(&s, 1000);
  stalled = cli_conn_open(s.sock);
  cli_conn_send(stalled, "{\"op\":\"call\",\"payload\":{\"cmd\":\"big\","
                         "\"args\":30000000}}\n");
  if (!cli_conn_hup(stalled, WAIT_MS))
    fail_msg("the server still holds a reply for a client that does not "
             "read");
  probe = cli_conn_open(s.sock);
  st = cli_conn_status(probe);
  assert_int_equal(json_integer_value(json_object_get(st, "restarts")), 0);
  json_decref(st);
  assert_true(conn_call_int(probe, "pid", "null") > 0);
  cli_conn_close(probe);
  cli_conn_close(stalled);
  serve_stop(&s);
}

/* As uid 65534: open n connections and ping on each (writing how many
 * answered ok to the pipe), then, when the parent says so, one more,
 * whose first line goes to the pipe too; hold them until told to go. */
static void other_uid_clients(const char *sock, int n, int report, int go) {
  struct sockaddr_un sa;
  char buf[512], c;
  int i, fd, ok = 0;
  ssize_t got;

  if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534))
    _exit(10);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
  for (i = 0; i <= n; i++) {
    if (i == n && read(go, &c, 1) != 1)
      _exit(11);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
      _exit(12);
    send(fd, "{\"op\":\"ping\"}\n", 14, MSG_NOSIGNAL);
    got = read(fd, buf, sizeof(buf) - 1);
    buf[got > 0 ? got : 0] = '\0';
    if (i < n) {
      ok += strstr(buf, "\"ok\":true") != NULL;
      if (i == n - 1 && write(report, &ok, sizeof(ok)) != sizeof(ok))
        _exit(13);
    } else if (write(report, buf, strlen(buf)) < 0) {
      _exit(14);
    }
  }
  close(report);
  while (read(go, &c, 1) > 0)
    ;
  _exit(0);
}

/* Clients of another uid, run in a child: other_uid_clients or
 * refused_uid_clients. */
typedef void uid_clients_fn(const char *sock, int n, int report, int go);

/* Start clients(sock, n) in a child; returns its pid once it wrote its
 * first report, an int (into *first).  report[0] (its further report) and
 * go[1] (the word to go on) stay open for the caller. */
static pid_t uid_clients_begin(uid_clients_fn *clients, const char *sock, int n,
                               int report[2], int go[2], int *first) {
  pid_t pid;

  assert_int_equal(pipe(report), 0);
  assert_int_equal(pipe(go), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(report[0]);
    close(go[1]);
    clients(sock, n, report[1], go[0]);
  }
  close(report[1]);
  close(go[0]);
  assert_int_equal(read(report[0], first, sizeof(*first)), sizeof(*first));
  return pid;
}

/* Uid 65534 may connect (besides the owner), the socket's directory lets
 * it in, and idle connections stay. */
static const char *const allow_nobody[] = {"control.allow_uids=[65534]",
                                           "control.mode=0666",
                                           "control.idle_timeout=1h", NULL};

/* Start `poolctl serve` on the echo handlers with sets, wait until it is
 * ready, then open its directory to other uids (0711). */
static void serve_for_other_uids(serve_t *s, const char *const *sets) {
  serve_start_sets(s, "echo_handlers.py", sets);
  serve_wait_line(s, "ready: ");
  assert_int_equal(chmod(s->dir, 0711), 0);
}

/* Another allowed uid holds every connection: the pool's own user still
 * gets a status through (a reserve of 8 for it), and that uid's next
 * connection is refused with EBUSY.  Needs root, for the second uid. */
static void test_owner_reserve(void **state) {
  static serve_t s;
  int report[2], go[2], ok = 0;
  char buf[512] = {0};
  cli_run_t r;
  ssize_t n;
  pid_t pid;

  (void)state;
  if (geteuid() != 0)
    cli_skip("needs root to run clients as a second uid");
  serve_for_other_uids(&s, allow_nobody);
  pid = uid_clients_begin(other_uid_clients, s.sock, 256, report, go, &ok);
  assert_int_equal(ok, 256);
  cli_poolctl(&r, "status", "-S", s.sock, NULL);
  if (r.code != 0)
    fail_msg("the owner's status was refused: %s", r.err);
  cli_run_free(&r);
  assert_int_equal(write(go[1], "g", 1), 1);
  n = read(report[0], buf, sizeof(buf) - 1);
  assert_true(n > 0);
  if (!strstr(buf, "\"error\":\"EBUSY\"") ||
      !strstr(buf, "too many control connections"))
    fail_msg("uid 65534's connection 257 got: %s", buf);
  close(go[1]);
  close(report[0]);
  assert_int_equal(cli_wait_exit(pid), 0);
  serve_stop(&s);
}

/* As uid 65533 (not allowed): connect n times, read nothing, report how
 * many connects went through; when told to, count the refusals (an EPERM
 * line, then the hang-up) and report that; hold the rest until told to
 * go. */
static void refused_uid_clients(const char *sock, int n, int report, int go) {
  static int fds[128];
  struct sockaddr_un sa;
  char buf[512], c;
  int i, refused = 0;
  ssize_t got;

  if (n > 128 || setresgid(65533, 65533, 65533) != 0 ||
      setresuid(65533, 65533, 65533))
    _exit(10);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
  for (i = 0; i < n; i++) {
    fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) != 0)
      _exit(12);
  }
  if (write(report, &n, sizeof(n)) != sizeof(n) || read(go, &c, 1) != 1)
    _exit(13);
  for (i = 0; i < n; i++) {
    struct pollfd p = {fds[i], POLLIN, 0};
    size_t len = 0;

    got = -1;
    for (;;) {
      if (poll(&p, 1, WAIT_MS) != 1)
        break;
      got = read(fds[i], buf + len, sizeof(buf) - 1 - len);
      if (got <= 0)
        break;
      len += (size_t)got;
    }
    buf[len] = '\0';
    refused += got == 0 && strstr(buf, "\"error\":\"EPERM\"") != NULL;
  }
  if (write(report, &refused, sizeof(refused)) != sizeof(refused))
    _exit(14);
  close(report);
  while (read(go, &c, 1) > 0)
    ;
  _exit(0);
}

/* Peers of a uid that is not allowed never hold a slot: with the owner's
 * 256 connections open, 100 refused ones queued ahead of the owner's
 * next (the server stopped while they queue, so one turn of its loop
 * accepts them all) do not push that one past the limit; each refused
 * peer got its EPERM line and was hung up.  Needs root. */
static void test_refused_uid_no_slot(void **state) {
  static serve_t s;
  static cli_conn_t *held[CTL_TEST_CONN_MAX];
  int report[2], go[2], n = 0, i;
  cli_conn_t *extra;
  json_t *v;
  pid_t pid;

  (void)state;
  if (geteuid() != 0)
    cli_skip("needs root to run clients as a second uid");
  serve_for_other_uids(&s, allow_nobody);
  for (i = 0; i < CTL_TEST_CONN_MAX; i++) {
    held[i] = cli_conn_open(s.sock);
    cli_conn_send(held[i], "{\"op\":\"ping\"}\n");
    v = cli_conn_recv(held[i]);
    if (v == NULL || !json_is_true(json_object_get(v, "ok")))
      fail_msg("the owner's connection %d was refused", i);
    json_decref(v);
  }
  assert_int_equal(kill(s.srv.pid, SIGSTOP), 0);
  pid = uid_clients_begin(refused_uid_clients, s.sock, 100, report, go, &n);
  assert_int_equal(n, 100);
  extra = cli_conn_open(s.sock);
  assert_int_equal(kill(s.srv.pid, SIGCONT), 0);
  cli_conn_send(extra, "{\"op\":\"status\"}\n");
  v = cli_conn_recv(extra);
  if (v == NULL || !json_is_true(json_object_get(v, "ok")))
    fail_msg("the owner's status behind 100 refused peers failed: %s",
             v ? json_string_value(json_object_get(v, "message")) : "EOF");
  json_decref(v);
  assert_int_equal(write(go[1], "g", 1), 1);
  assert_int_equal(read(report[0], &n, sizeof(n)), sizeof(n));
  assert_int_equal(n, 100);
  close(go[1]);
  close(report[0]);
  assert_int_equal(cli_wait_exit(pid), 0);
  cli_conn_close(extra);
  for (i = 0; i < CTL_TEST_CONN_MAX; i++)
    cli_conn_close(held[i]);
  serve_stop(&s);
}

/* `poolctl -S SOCK status` run as uid 65534; its exit code, its stderr
 * into err. */
static int poolctl_status_as_nobody(const char *sock, char *err, size_t len) {
  int pipefd[2], code;
  ssize_t n, got = 0;
  pid_t pid;

  assert_int_equal(pipe(pipefd), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);

    dup2(null, 1);
    dup2(pipefd[1], 2);
    if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0)
      _exit(126);
    execl(cli_poolctl_path(), "poolctl", "-S", sock, "status", (char *)NULL);
    _exit(127);
  }
  close(pipefd[1]);
  while ((n = read(pipefd[0], err + got, len - 1 - (size_t)got)) > 0)
    got += n;
  err[got] = '\0';
  close(pipefd[0]);
  code = cli_wait_exit(pid);
  return code;
}

/* control.allow_uids with 180 entries, uids and a user name, more than
 * 2 KiB as text: none is dropped (the last one, "nobody", gets in).
 * Needs root. */
static void test_allow_uids_many(void **state) {
  static serve_t s;
  static char allow[4096];
  const char *sets[] = {allow, "control.mode=0666", NULL};
  int report[2], go[2], ok = 0;
  size_t len;
  pid_t pid;
  int i;

  (void)state;
  if (geteuid() != 0)
    cli_skip("needs root to run a client as a second uid");
  if (getpwnam("nobody") == NULL || getpwnam("nobody")->pw_uid != 65534)
    cli_skip("no user nobody with uid 65534");
  len = (size_t)snprintf(allow, sizeof(allow), "control.allow_uids=[");
  for (i = 0; i < 179; i++)
    len += (size_t)snprintf(allow + len, sizeof(allow) - len, "%d, ",
                            1000000000 + i);
  snprintf(allow + len, sizeof(allow) - len, "nobody]");
  serve_for_other_uids(&s, sets);
  pid = uid_clients_begin(other_uid_clients, s.sock, 1, report, go, &ok);
  close(go[1]);
  close(report[0]);
  cli_wait_exit(pid);
  if (ok != 1)
    fail_msg("uid 65534 (nobody, the 180th of control.allow_uids) was "
             "refused");
  /* poolctl itself serves an allowed user: the server runs as the owner
   * of the socket's directory (root here), not as the caller. */
  {
    char err[1024];
    int code = poolctl_status_as_nobody(s.sock, err, sizeof(err));

    if (code != 0)
      fail_msg("poolctl status as nobody: exit %d: %s", code, err);
  }
  serve_stop(&s);
}

/* ================================================================= main */

/* argv[1], when given, is a cmocka test filter (a name or a pattern). */
int main(int argc, char **argv) {
  const struct CMUnitTest configs[] = {
      cmocka_unit_test_teardown(test_malformed_configs, hostile_teardown),
      cmocka_unit_test_teardown(test_hostile_socket_clients, hostile_teardown),
      cmocka_unit_test_teardown(test_idle_timeout, hostile_teardown),
      cmocka_unit_test_teardown(test_blank_lines_idle, hostile_teardown),
      cmocka_unit_test_teardown(test_id_echoed_as_written, hostile_teardown),
      cmocka_unit_test_teardown(test_stalled_reader_closed, hostile_teardown),
      cmocka_unit_test_teardown(test_owner_reserve, hostile_teardown),
      cmocka_unit_test_teardown(test_refused_uid_no_slot, hostile_teardown),
      cmocka_unit_test_teardown(test_allow_uids_many, hostile_teardown),
  };

  signal(SIGPIPE, SIG_IGN);
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests_name("configs", configs, NULL, NULL);
}
