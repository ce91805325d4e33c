/* test_operator.c -- poolctl as an operator's tool, end to end: a real
 * `poolctl serve -c FILE` child with real workers on a socket in a fresh
 * directory, driven by poolctl children (status in every format, watch,
 * top under tmux, trace, scale, restart, drain, reload, stop) and by raw
 * clients.  Nothing sleeps: every wait is on a line, a reply, an event or
 * an exit, with a deadline that only passes on failure. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* The shared server. */
static struct {
  char dir[64];
  char sock[128];
  char config[128];
  cli_server_t srv;
} t;

static void write_config(const char *gen, int size) {
  const char *py = getenv("PP_PYTHON"), *worker = getenv("PP_WORKER_PY");
  char *h = fixture_path("echo_handlers.py");
  FILE *f = fopen(t.config, "w");

  assert_non_null(f);
  assert_non_null(py);
  assert_non_null(worker);
  fprintf(f,
          "# written by test_operator\n"
          "name: optest\n"
          "size: %d\n"
          "worker:\n"
          "  command: [\"%s\", \"%s\", \"%s\"]\n"
          "  env: {PP_GEN: \"%s\"}\n"
          "  max_requests: 100000\n"
          "  max_recycling: 1\n"
          "checkout:\n"
          "  timeout: 30s\n",
          size, py, worker, h, gen);
  fclose(f);
  free(h);
}

static int group_setup(void **state) {
  (void)state;
  snprintf(t.dir, sizeof(t.dir), "/tmp/pp-operator-XXXXXX");
  if (mkdtemp(t.dir) == NULL)
    return -1;
  snprintf(t.sock, sizeof(t.sock), "%s/pool.sock", t.dir);
  snprintf(t.config, sizeof(t.config), "%s/pool.yaml", t.dir);
  return 0;
}

static int group_teardown(void **state) {
  char cmd[512];

  (void)state;
  cli_server_kill(&t.srv);
  /* A failed top test may leave its tmux server behind. */
  snprintf(cmd, sizeof(cmd), "%s/tmux.sock", t.dir);
  if (access(cmd, F_OK) == 0) {
    snprintf(cmd, sizeof(cmd), "tmux -S '%s/tmux.sock' kill-server 2>/dev/null",
             t.dir);
    if (system(cmd) != 0) {
      /* already gone */
    }
  }
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t.dir);
  if (system(cmd) != 0)
    return -1;
  return 0;
}

static void need_server(void) {
  if (t.srv.pid <= 0)
    cli_skip("the server did not start");
}

/* A path in the test's directory (static buffer per call). */
static const char *in_dir(const char *name) {
  static char bufs[4][192];
  static int next;
  char *b = bufs[next++ % 4];

  snprintf(b, sizeof(bufs[0]), "%s/%s", t.dir, name);
  return b;
}

static int count_of(const char *hay, const char *needle) {
  int n = 0;

  for (; (hay = strstr(hay, needle)) != NULL; hay += strlen(needle))
    n++;
  return n;
}

/* Worker rows of st in state `state`. */
static int workers_in(json_t *st, const char *state) {
  json_t *w;
  size_t i;
  int n = 0;

  json_array_foreach(json_object_get(st, "workers"), i, w) n +=
      strcmp(cli_jstr(w, "state"), state) == 0;
  return n;
}

/* Rows serving (idle, leased, busy). */
static int serving(json_t *st) {
  return workers_in(st, "idle") + workers_in(st, "leased") +
         workers_in(st, "busy");
}

/* A call sent on a new connection; its reply is read later. */
static cli_conn_t *call_async(const char *cmd, const char *args) {
  cli_conn_t *c = cli_conn_open(t.sock);
  char line[256];

  snprintf(line, sizeof(line),
           "{\"op\":\"call\",\"payload\":{\"cmd\":\"%s\",\"args\":%s}}\n", cmd,
           args);
  cli_conn_send(c, line);
  return c;
}

/* A trace stream on a raw connection, subscribed when this returns. */
static cli_conn_t *trace_open(const char *filter) {
  cli_conn_t *c = cli_conn_open(t.sock);
  char line[256];
  json_t *v;

  if (filter)
    snprintf(line, sizeof(line), "{\"op\":\"trace\",\"filter\":\"%s\"}\n",
             filter);
  else
    snprintf(line, sizeof(line), "{\"op\":\"trace\"}\n");
  cli_conn_send(c, line);
  v = cli_conn_recv(c);
  assert_non_null(v);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  return c;
}

/* Read events from a trace stream until one named `event`. */
static json_t *trace_until(cli_conn_t *c, const char *event) {
  json_t *v;

  for (;;) {
    v = cli_conn_recv(c);
    if (v == NULL)
      fail_msg("the trace stream ended before a '%s' event", event);
    if (strcmp(cli_jstr(v, "event"), event) == 0)
      return v;
    json_decref(v);
  }
}

/* Wait until `busy` workers are busy, re-checking on every event. */
static void wait_busy(cli_conn_t *events, int busy) {
  cli_conn_t *probe = cli_conn_open(t.sock);
  json_t *st, *v;

  for (;;) {
    st = cli_conn_status(probe);
    if (cli_jint(st, "busy") == busy) {
      json_decref(st);
      break;
    }
    json_decref(st);
    v = cli_conn_recv(events);
    assert_non_null(v);
    json_decref(v);
  }
  cli_conn_close(probe);
}

static json_t *status_now(void) {
  cli_conn_t *c = cli_conn_open(t.sock);
  json_t *st = cli_conn_status(c);

  cli_conn_close(c);
  return st;
}

static void expect_ok_reply(cli_conn_t *c) {
  json_t *v = cli_conn_recv(c);

  assert_non_null(v);
  if (!json_is_true(json_object_get(v, "ok")))
    fail_msg("call failed: %s", json_dumps(v, JSON_COMPACT));
  json_decref(v);
}

/* ------------------------------------------------------- without a pool */

static void test_help(void **state) {
  static const char *cmds[] = {"serve",   "status", "top",     "call",
                               "trace",   "scale",  "restart", "drain",
                               "undrain", "stop",   "reload"};
  const char *src = getenv("PP_SOURCE_DIR");
  char page[512], *text = NULL, marker[64];
  size_t i, n = 0;
  cli_run_t r;
  FILE *f;

  (void)state;
  cli_poolctl(&r, "--help", NULL);
  assert_int_equal(r.code, 0);
  for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
    if (strstr(r.out, cmds[i]) == NULL)
      fail_msg("poolctl --help does not list %s", cmds[i]);
  assert_non_null(strstr(r.out, "0  ok"));
  assert_non_null(strstr(r.out, "1  error"));
  assert_non_null(strstr(r.out, "2  usage error"));
  assert_non_null(strstr(r.out, "3  no pool running"));
  cli_run_free(&r);
  for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    cli_poolctl(&r, cmds[i], "--help", NULL);
    assert_int_equal(r.code, 0);
    snprintf(marker, sizeof(marker), "usage: poolctl %s", cmds[i]);
    if (strstr(r.out, marker) == NULL)
      fail_msg("poolctl %s --help printed: %s", cmds[i], r.out);
    assert_non_null(strstr(r.out, "exit codes"));
    assert_string_equal(r.err, "");
    cli_run_free(&r);
  }

  /* The man page documents every command and every exit code. */
  assert_non_null(src);
  snprintf(page, sizeof(page), "%s/docs/poolctl.1", src);
  f = fopen(page, "r");
  assert_non_null(f);
  assert_int_equal(getdelim(&text, &n, '\0', f) > 0, 1);
  fclose(f);
  for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    snprintf(marker, sizeof(marker), ".SS \"%s", cmds[i]);
    if (strstr(text, marker) == NULL && !(strcmp(cmds[i], "undrain") == 0 &&
                                          strstr(text, ".SS \"drain, undrain")))
      fail_msg("poolctl.1 has no section for %s", cmds[i]);
  }
  assert_non_null(strstr(text, ".SH EXIT STATUS"));
  free(text);
}

static void test_usage_errors(void **state) {
  static const char *bad[][5] = {
      {"scale", NULL},
      {"scale", "0", NULL},
      {"scale", "lots", NULL},
      {"scale", "2", "3", NULL},
      {"restart", "1", "--all", NULL},
      {"restart", "x", NULL},
      {"trace", "--filter", "hello,bogus", NULL},
      {"status", "--json", "--prometheus", NULL},
      {"status", "--interval", "5", NULL},
      {"drain", "now", NULL},
      {"stop", "--timeout", "soon", NULL},
  };
  size_t i;
  cli_run_t r;

  (void)state;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cli_poolctl(&r, bad[i][0], bad[i][1], bad[i][2], bad[i][3], NULL);
    if (r.code != 2)
      fail_msg("poolctl %s %s: exit %d, want 2", bad[i][0],
               bad[i][1] ? bad[i][1] : "", r.code);
    assert_true(strncmp(r.err, "poolctl: ", 9) == 0);
    assert_string_equal(r.out, "");
    cli_run_free(&r);
  }
  /* top on something that is not a terminal. */
  cli_poolctl(&r, "top", "-S", "/nonexistent.sock", NULL);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "terminal"));
  cli_run_free(&r);
}

/* Usage messages name the right range and units. */
static void test_usage_messages(void **state) {
  cli_run_t r;

  (void)state;
  cli_poolctl(&r, "scale", "abc", "-S", "/nonexistent.sock", NULL);
  assert_int_equal(r.code, 2);
  assert_non_null(strstr(r.err, "scale: N wants a number from 1 to 4096, "
                                "not 'abc'"));
  cli_run_free(&r);
  cli_poolctl(&r, "status", "--interval", "2x", "-S", "/nonexistent.sock",
              NULL);
  assert_int_equal(r.code, 2);
  assert_non_null(strstr(r.err, "--interval wants a duration"));
  assert_non_null(strstr(r.err, "500ms, 2s"));
  cli_run_free(&r);
  /* Durations with units, up to 24h, are accepted (then: nothing runs
   * there); past 24h is refused. */
  {
    static const char *const ok[] = {"2s", "1.5m", "1h", "24h"};
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
      cli_poolctl(&r, "status", "--interval", ok[i], "-S", "/nonexistent.sock",
                  NULL);
      if (r.code != 3)
        fail_msg("--interval %s: exit %d, %s", ok[i], r.code, r.err);
      cli_run_free(&r);
    }
  }
  cli_poolctl(&r, "status", "--interval", "25h", "-S", "/nonexistent.sock",
              NULL);
  assert_int_equal(r.code, 2);
  cli_run_free(&r);
}

/* Like supervisorctl status: a degraded pool (every slot fatal) is not a
 * success, in any format; the table says how the worker ended. */
static void test_status_degraded(void **state) {
  const char *py = getenv("PP_PYTHON"), *worker = getenv("PP_WORKER_PY");
  char *h = fixture_path("echo_handlers.py"), *cmd;
  cli_server_t other = {0};
  size_t n = strlen(py) + strlen(worker) + strlen(h) + 64;
  const char *sock = in_dir("degraded.sock");
  cli_run_t r;

  (void)state;
  cmd = malloc(n);
  assert_non_null(cmd);
  snprintf(cmd, n, "worker.command=[%s, %s, %s]", py, worker, h);
  cli_server_start(&other, "-S", sock, "--set", "size=1", "--set",
                   "restart.max_restarts=0", "--set", cmd, NULL);
  free(cmd);
  free(h);
  /* "ready: 1 worker", not "1 workers" (the line was read by start). */
  assert_non_null(
      memmem(other.out.buf, other.out.len, "ready: 1 worker, ", 17));
  cli_poolctl(&r, "status", "-S", sock, NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  cli_poolctl(&r, "call", "crash", "3", "-S", sock, NULL);
  assert_int_equal(r.code, 1);
  cli_run_free(&r);
  cli_poolctl(&r, "status", "-S", sock, NULL);
  assert_int_equal(r.code, 4);
  assert_non_null(strstr(r.out, "degraded"));
  assert_non_null(strstr(r.out, "exit 3"));
  cli_run_free(&r);
  cli_poolctl(&r, "status", "--json", "-S", sock, NULL);
  assert_int_equal(r.code, 4);
  cli_run_free(&r);
  cli_server_stop(&other);
}

/* A reload whose new handler module cannot be imported is rolled back:
 * the pool keeps its workers and its config (later restarts use it), no
 * worker is left retiring, and `poolctl reload` and `status` say why. */
static void test_reload_boot_failure(void **state) {
  const char *py = getenv("PP_PYTHON"), *worker = getenv("PP_WORKER_PY");
  const char *sock = in_dir("reload.sock"), *conf = in_dir("reload.yaml");
  const char *handlers[] = {"echo_handlers.py", "import_error.py"};
  cli_server_t other = {0};
  cli_run_t r;
  FILE *f;
  int k;

  (void)state;
  for (k = 0; k < 2; k++) {
    char *h = fixture_path(handlers[k]);

    f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f,
            "size: 2\nworker: {command: [\"%s\", \"%s\", \"%s\"]}\n"
            "restart: {max_restarts: 1}\n",
            py, worker, h);
    fclose(f);
    free(h);
    if (k == 0)
      cli_server_start(&other, "-c", conf, "-S", sock, NULL);
  }
  cli_poolctl(&r, "reload", "-S", sock, NULL);
  assert_int_equal(r.code, 1);
  if (strstr(r.err, "reload rolled back: worker ") == NULL ||
      strstr(r.err, "'s replacement failed to boot: ImportError: fixture "
                    "import_error") == NULL)
    fail_msg("poolctl reload said: %s", r.err);
  cli_run_free(&r);
  cli_poolctl(&r, "status", "-S", sock, NULL);
  assert_int_equal(r.code, 0);
  if (strstr(r.out, "reload rolled back: worker ") == NULL ||
      strstr(r.out, "ImportError: fixture import_error") == NULL ||
      strstr(r.out, "retiring") != NULL)
    fail_msg("poolctl status said: %s", r.out);
  cli_run_free(&r);
  /* Every worker restarts with the config it had. */
  cli_poolctl(&r, "restart", "-S", sock, NULL);
  if (r.code != 0)
    fail_msg("poolctl restart: exit %d: %s", r.code, r.err);
  cli_run_free(&r);
  cli_poolctl(&r, "call", "echo", "1", "-S", sock, NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  cli_server_stop(&other);
}

static void test_not_running(void **state) {
  static const char *cmds[][3] = {
      {"status", NULL},  {"trace", NULL},  {"scale", "2"},
      {"restart", NULL}, {"drain", NULL},  {"undrain", NULL},
      {"stop", NULL},    {"reload", NULL}, {"status", "--prometheus"}};
  size_t i;
  cli_run_t r;

  (void)state;
  for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    cli_poolctl(&r, cmds[i][0], "-S", in_dir("none.sock"), cmds[i][1], NULL);
    if (r.code != 3)
      fail_msg("poolctl %s: exit %d, want 3: %s", cmds[i][0], r.code, r.err);
    assert_non_null(strstr(r.err, "no pool running"));
    cli_run_free(&r);
  }
}

/* ------------------------------------------------------------ the server */

static void test_serve(void **state) {
  (void)state;
  write_config("1", 2);
  cli_server_start(&t.srv, "-c", t.config, "-S", t.sock, NULL);
}

static void test_status_table(void **state) {
  cli_run_t r;
  char pid[32];

  (void)state;
  need_server();
  cli_poolctl(&r, "call", "-S", t.sock, "echo", "1", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  cli_poolctl(&r, "status", "-S", t.sock, NULL);
  assert_int_equal(r.code, 0);
  snprintf(pid, sizeof(pid), "pid %d", (int)t.srv.pid);
  /* The header: name, state, adapter, pid, uptime; counts; reclaims. */
  assert_non_null(strstr(r.out, "pool optest  ready  adapter python"));
  assert_non_null(strstr(r.out, pid));
  assert_non_null(strstr(r.out, "uptime "));
  assert_non_null(strstr(r.out, "workers 2 (target 2)  idle 2"));
  assert_non_null(strstr(r.out, "waiters 0 (max "));
  assert_non_null(strstr(r.out, "checkouts "));
  assert_non_null(strstr(r.out, "timeouts 0"));
  assert_non_null(strstr(r.out, "recycles "));
  assert_non_null(strstr(r.out, "reclaimed 0: withdrawn 0  undelivered 0"));
  /* The table's columns, and a requests count out of the limit. */
  assert_non_null(strstr(r.out, "ID   PID      STATE       GEN  LEASE  REQ-AGE"
                                "    REQUESTS RESTARTS  UPTIME       RSS     "
                                "CPU  LAST-EXIT"));
  assert_non_null(strchr(strstr(r.out, "LAST-EXIT"), '/')); /* n/limit */
  assert_non_null(strstr(r.out, "MiB"));                    /* RSS */
  assert_int_equal(count_of(r.out, "idle      "), 2);       /* the rows */
  assert_null(strchr(r.out, '\033')); /* not a terminal: no colour */
  cli_run_free(&r);
}

static void test_status_json(void **state) {
  json_t *st, *w, *h;
  json_error_t jerr;
  cli_run_t r;
  size_t i;

  (void)state;
  need_server();
  cli_poolctl(&r, "status", "--json", "-S", t.sock, NULL);
  assert_int_equal(r.code, 0);
  st = json_loads(r.out, 0, &jerr);
  if (st == NULL)
    fail_msg("status --json printed: %s", r.out);
  assert_int_equal(cli_jint(st, "pid"), t.srv.pid);
  assert_string_equal(cli_jstr(st, "name"), "optest");
  assert_int_equal(cli_jint(st, "target_size"), 2);
  assert_false(cli_jint(st, "draining"));
  assert_true(cli_jint(st, "recycles") >= 0);
  assert_non_null(json_object_get(st, "reclaimed_by"));
  h = json_object_get(st, "run_time");
  assert_true(cli_jint(h, "count") >= 1);
  assert_true(json_is_array(json_object_get(h, "buckets")));
  assert_int_equal(cli_jint(json_object_get(st, "spawn_to_ready"), "count"), 2);
  json_array_foreach(json_object_get(st, "workers"), i, w) {
    assert_true(cli_jint(w, "pid") > 0);
    assert_true(cli_jint(w, "generation") >= 1);
    assert_true(cli_jint(w, "max_requests") > 0);
    assert_true(cli_jint(w, "cpu_time_ms") >= 0);
    assert_int_equal(cli_jint(w, "request_age_ms"), 0);
    assert_false(cli_jint(w, "retiring"));
    assert_non_null(json_object_get(w, "run_time"));
  }
  json_decref(st);
  cli_run_free(&r);
}

static void test_status_watch(void **state) {
  char *line, *save = NULL;
  cli_run_t r;
  int n = 0;

  (void)state;
  need_server();
  /* Not a terminal: frames one after another, no escape codes; from the
   * second frame on the CPU column is a percentage. */
  cli_poolctl(&r, "status", "--watch", "--interval", "100", "--count", "3",
              "-S", t.sock, NULL);
  assert_int_equal(r.code, 0);
  assert_int_equal(count_of(r.out, "pool optest"), 3);
  assert_int_equal(count_of(r.out, "LAST-EXIT"), 3);
  assert_null(strchr(r.out, '\033'));
  assert_non_null(strstr(strstr(r.out, "LAST-EXIT") + 1, "%"));
  cli_run_free(&r);

  cli_poolctl(&r, "status", "--json", "--count", "2", "--interval", "100", "-S",
              t.sock, NULL);
  assert_int_equal(r.code, 0);
  for (line = strtok_r(r.out, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    json_t *st = json_loads(line, 0, NULL);
    assert_non_null(st);
    json_decref(st);
    n++;
  }
  assert_int_equal(n, 2);
  cli_run_free(&r);
}

static void test_status_prometheus(void **state) {
  static const char *check =
      "import sys\n"
      "from prometheus_client.openmetrics.parser import "
      "text_string_to_metric_families\n"
      "fams = {f.name: f for f in text_string_to_metric_families("
      "open(sys.argv[1]).read())}\n"
      "want = ['portpool_checkouts', 'portpool_timeouts', "
      "'portpool_reclaimed', 'portpool_restarts', 'portpool_recycles', "
      "'portpool_workers', 'portpool_pool_state', "
      "'portpool_spawn_to_ready_seconds', 'portpool_queue_wait_seconds', "
      "'portpool_run_time_seconds']\n"
      "missing = [w for w in want if w not in fams]\n"
      "assert not missing, missing\n"
      "for name in want[-3:]:\n"
      "    f = fams[name]\n"
      "    assert f.type == 'histogram' and f.unit == 'seconds', name\n"
      "    count = [s.value for s in f.samples if s.name == name + "
      "'_count'][0]\n"
      "    assert count >= 1, (name, count)\n"
      "idle = [s.value for s in fams['portpool_workers'].samples "
      "if s.labels['state'] == 'idle']\n"
      "assert idle == [2], idle\n"
      "assert all(s.labels['pool'] == 'optest' for f in fams.values() "
      "for s in f.samples)\n"
      "print('parsed', len(fams), 'families')\n";
  char *argv[] = {"/usr/bin/python3", "-c", (char *)check, NULL, NULL};
  char *probe[] = {"/usr/bin/python3", "-c",
                   "import prometheus_client.openmetrics.parser", NULL};
  const char *file = in_dir("metrics.txt");
  cli_run_t r;
  FILE *f;

  (void)state;
  need_server();
  cli_poolctl(&r, "status", "--prometheus", "-S", t.sock, NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "# TYPE portpool_run_time_seconds histogram"));
  assert_non_null(strstr(r.out, "le=\"+Inf\""));
  assert_true(strlen(r.out) > 6 &&
              strcmp(r.out + strlen(r.out) - 6, "# EOF\n") == 0);
  f = fopen(file, "w");
  assert_non_null(f);
  fputs(r.out, f);
  fclose(f);
  cli_run_free(&r);

  if (access("/usr/bin/python3", X_OK) != 0)
    cli_skip("no /usr/bin/python3 to run the OpenMetrics parser");
  cli_run_argv(&r, probe);
  if (r.code != 0) {
    cli_run_free(&r);
    cli_skip("Debian's python3-prometheus-client is not installed "
             "(apt-get install python3-prometheus-client)");
  }
  cli_run_free(&r);
  argv[3] = (char *)file;
  cli_run_argv(&r, argv);
  if (r.code != 0)
    fail_msg("the OpenMetrics parser refused the output:\n%s", r.err);
  cli_run_free(&r);
}

/* ----------------------------------------------------------------- trace */

static void test_trace(void **state) {
  char *argv[] = {
      (char *)cli_poolctl_path(), "trace",   "-S", t.sock, "--filter",
      "checkout,checkin",         "--count", "2",  NULL};
  cli_lines_t out, err;
  json_t *a, *b, *v;
  const char *rest;
  cli_conn_t *c;
  int o, e;
  pid_t pid;
  cli_run_t r;

  (void)state;
  need_server();
  pid = cli_spawn(argv, &o, &e);
  cli_lines_init(&out, o);
  cli_lines_init(&err, e);
  /* Subscribed from this line on. */
  cli_lines_wait(&err, "poolctl: tracing the pool at ");
  cli_poolctl(&r, "call", "-S", t.sock, "echo", "7", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  a = json_loads(cli_lines_wait(&out, "{"), 0, NULL);
  b = json_loads(cli_lines_wait(&out, "{"), 0, NULL);
  assert_non_null(a);
  assert_non_null(b);
  assert_string_equal(cli_jstr(a, "event"), "checkout");
  assert_string_equal(cli_jstr(b, "event"), "checkin");
  assert_int_equal(cli_jint(a, "lease"), cli_jint(b, "lease"));
  assert_true(cli_jint(a, "pid") > 0);
  assert_true(cli_jint(a, "ts_ns") <= cli_jint(b, "ts_ns"));
  json_decref(a);
  json_decref(b);
  rest = cli_lines_rest(&out);
  assert_string_equal(rest, ""); /* --count 2: nothing more */
  assert_int_equal(cli_wait_exit(pid), 0);
  cli_lines_free(&out);
  cli_lines_free(&err);

  /* The protocol: a bad filter is refused and the connection stays. */
  c = cli_conn_open(t.sock);
  cli_conn_send(c, "{\"op\":\"trace\",\"filter\":\"hello,nope\",\"id\":3}\n"
                   "{\"op\":\"ping\",\"id\":4}\n");
  v = cli_conn_recv(c);
  assert_string_equal(cli_jstr(v, "error"), "EINVAL");
  assert_non_null(strstr(cli_jstr(v, "message"), "nope"));
  assert_int_equal(cli_jint(v, "id"), 3);
  json_decref(v);
  v = cli_conn_recv(c);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  /* A stream ignores later requests; events carry what happened. */
  cli_conn_send(c, "{\"op\":\"trace\",\"filter\":\"scale\"}\n"
                   "{\"op\":\"ping\",\"id\":5}\n");
  v = cli_conn_recv(c);
  assert_true(json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  cli_poolctl(&r, "scale", "-S", t.sock, "2", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  v = cli_conn_recv(c);
  assert_string_equal(cli_jstr(v, "event"), "scale");
  assert_int_equal(cli_jint(v, "code"), 2);
  assert_int_equal(cli_jint(v, "slot"), -1);
  json_decref(v);
  cli_conn_close(c);
}

/* ------------------------------------------------------------ operating */

static void test_scale(void **state) {
  cli_conn_t *events, *a, *b;
  json_t *st, *v;
  cli_run_t r;

  (void)state;
  need_server();
  cli_poolctl(&r, "scale", "-S", t.sock, "3", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  st = status_now();
  assert_int_equal(serving(st), 3);
  assert_int_equal(cli_jint(st, "target_size"), 3);
  json_decref(st);

  cli_poolctl(&r, "scale", "-S", t.sock, "1", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  st = status_now();
  assert_int_equal(serving(st), 1);
  json_decref(st);

  /* Shrinking never kills a busy worker without --force: both calls
   * finish, and scale returns once the second worker has gone. */
  cli_poolctl(&r, "scale", "-S", t.sock, "2", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  events = trace_open("request,reply,checkin,exit,hello");
  a = call_async("sleep", "0.8");
  b = call_async("sleep", "0.8");
  wait_busy(events, 2);
  cli_poolctl(&r, "scale", "-S", t.sock, "1", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  expect_ok_reply(a);
  expect_ok_reply(b);
  cli_conn_close(a);
  cli_conn_close(b);
  st = status_now();
  assert_int_equal(serving(st), 1);
  json_decref(st);

  /* With --force the busy one goes at once; its caller gets an error. */
  cli_poolctl(&r, "scale", "-S", t.sock, "2", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  a = call_async("sleep", "1.5");
  b = call_async("sleep", "1.5");
  wait_busy(events, 2);
  cli_poolctl(&r, "scale", "--force", "-S", t.sock, "1", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  v = cli_conn_recv(a);
  if (json_is_true(json_object_get(v, "ok"))) {
    /* The other one was chosen: a's call finished, b's failed. */
    json_decref(v);
    v = cli_conn_recv(b);
  } else {
    expect_ok_reply(b);
  }
  assert_true(json_is_false(json_object_get(v, "ok")));
  assert_string_equal(cli_jstr(v, "error"), "PP_ECRASHED");
  json_decref(v);
  cli_conn_close(a);
  cli_conn_close(b);
  cli_conn_close(events);

  cli_poolctl(&r, "scale", "-S", t.sock, "2", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
}

static json_int_t generation_of(json_t *st, size_t id) {
  return cli_jint(json_array_get(json_object_get(st, "workers"), id),
                  "generation");
}

static void test_restart(void **state) {
  json_t *before, *after;
  cli_run_t r;

  (void)state;
  need_server();
  before = status_now();
  cli_poolctl(&r, "restart", "-S", t.sock, "0", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  after = status_now();
  assert_true(generation_of(after, 0) > generation_of(before, 0));
  assert_int_equal(generation_of(after, 1), generation_of(before, 1));
  assert_int_equal(serving(after), 2);
  json_decref(before);
  json_decref(after);

  before = status_now();
  cli_poolctl(&r, "restart", "--all", "-S", t.sock, NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  after = status_now();
  assert_true(generation_of(after, 0) > generation_of(before, 0));
  assert_true(generation_of(after, 1) > generation_of(before, 1));
  assert_int_equal(serving(after), 2);
  assert_true(cli_jint(after, "recycles") >= cli_jint(before, "recycles") + 2);
  json_decref(before);
  json_decref(after);

  cli_poolctl(&r, "restart", "-S", t.sock, "7", NULL);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "no worker 7"));
  cli_run_free(&r);
}

static void test_drain(void **state) {
  char *argv[] = {(char *)cli_poolctl_path(), "drain", "-S", t.sock, NULL};
  cli_conn_t *events, *a, *b;
  json_t *v, *st;
  cli_run_t r;
  int out;
  pid_t pid;

  (void)state;
  need_server();
  events = trace_open("request,drain");
  a = call_async("sleep", "0.5");
  wait_busy(events, 1);
  pid = cli_spawn(argv, &out, NULL);
  json_decref(trace_until(events, "drain"));
  /* Drained: a new call is refused at once, saying why. */
  b = call_async("echo", "1");
  v = cli_conn_recv(b);
  assert_string_equal(cli_jstr(v, "error"), "PP_ECLOSED");
  assert_non_null(strstr(cli_jstr(v, "message"), "draining"));
  json_decref(v);
  cli_conn_close(b);
  /* drain returns once the call in flight is done, not before. */
  assert_int_equal(cli_wait_exit(pid), 0);
  close(out);
  st = status_now();
  assert_true(cli_jint(st, "draining"));
  assert_int_equal(cli_jint(st, "busy"), 0);
  assert_int_equal(cli_jint(st, "leased"), 0);
  json_decref(st);
  expect_ok_reply(a);
  cli_conn_close(a);
  cli_conn_close(events);

  cli_poolctl(&r, "undrain", "-S", t.sock, NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  cli_poolctl(&r, "call", "-S", t.sock, "echo", "2", NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "2\n");
  cli_run_free(&r);
  st = status_now();
  assert_false(cli_jint(st, "draining"));
  json_decref(st);
}

/* ---------------------------------------------------- reload under load */

typedef struct loader {
  pthread_t thread;
  volatile int *stop;
  int calls, failures, saw_new;
  char first_failure[512];
  const char *want_after; /* PP_GEN that counts as new */
} loader_t;

static void *load(void *arg) {
  loader_t *l = arg;
  cli_conn_t *c = cli_conn_open(t.sock);
  json_t *v, *env;
  const char *gen;
  char *s;

  while (!__atomic_load_n(l->stop, __ATOMIC_ACQUIRE)) {
    cli_conn_send(c, "{\"op\":\"call\",\"payload\":{\"cmd\":\"env\","
                     "\"args\":[\"PP_GEN\"]}}\n");
    v = cli_conn_recv(c);
    l->calls++;
    if (v == NULL || !json_is_true(json_object_get(v, "ok"))) {
      if (l->failures++ == 0) {
        s = v ? json_dumps(v, JSON_COMPACT) : NULL;
        snprintf(l->first_failure, sizeof(l->first_failure), "%s",
                 s ? s : "connection closed");
        free(s);
      }
      json_decref(v);
      if (v == NULL)
        break;
      continue;
    }
    env = json_object_get(v, "reply");
    gen = json_string_value(json_object_get(env, "PP_GEN"));
    if (gen && strcmp(gen, l->want_after) == 0)
      l->saw_new = 1;
    json_decref(v);
  }
  cli_conn_close(c);
  return NULL;
}

static void test_reload_under_load(void **state) {
  enum { NLOAD = 4 };
  loader_t loaders[NLOAD];
  volatile int stop = 0;
  json_t *st, *w, *v, *before;
  cli_conn_t *events;
  const char *line;
  cli_run_t r;
  size_t i;
  int k;

  (void)state;
  need_server();
  before = status_now();
  memset(loaders, 0, sizeof(loaders));
  for (k = 0; k < NLOAD; k++) {
    loaders[k].stop = &stop;
    loaders[k].want_after = "2";
    assert_int_equal(
        pthread_create(&loaders[k].thread, NULL, load, &loaders[k]), 0);
  }
  /* Under load: the new config (another env, one more worker) is rolled
   * out through `poolctl reload`, which returns when every worker is
   * replaced. */
  events = trace_open("reply");
  for (k = 0; k < 3 * NLOAD; k++)
    json_decref(trace_until(events, "reply")); /* the load is running */
  cli_conn_close(events);
  write_config("2", 3);
  cli_poolctl(&r, "reload", "-S", t.sock, NULL);
  if (r.code != 0)
    fail_msg("poolctl reload: exit %d: %s", r.code, r.err);
  cli_run_free(&r);
  line = cli_lines_wait(&t.srv.out, "reloading (poolctl reload)");
  (void)line;
  cli_lines_wait(&t.srv.out, "reloaded");
  /* Some calls after the roll, on the new workers. */
  events = trace_open("reply");
  for (k = 0; k < 3 * NLOAD; k++)
    json_decref(trace_until(events, "reply"));
  cli_conn_close(events);
  __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
  for (k = 0; k < NLOAD; k++) {
    pthread_join(loaders[k].thread, NULL);
    if (loaders[k].failures)
      fail_msg("loader %d: %d of %d calls failed during the reload; first: "
               "%s",
               k, loaders[k].failures, loaders[k].calls,
               loaders[k].first_failure);
    assert_true(loaders[k].calls > 0);
  }
  st = status_now();
  assert_int_equal(serving(st), 3);
  json_array_foreach(json_object_get(st, "workers"), i, w) {
    if (i < json_array_size(json_object_get(before, "workers")))
      assert_true(cli_jint(w, "generation") > generation_of(before, i));
  }
  json_decref(st);
  json_decref(before);
  cli_poolctl(&r, "call", "-S", t.sock, "env", "[\"PP_GEN\"]", NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "{\"PP_GEN\":\"2\"}\n");
  cli_run_free(&r);

  /* SIGHUP does the same. */
  events = trace_open("reload");
  write_config("3", 2);
  assert_int_equal(kill(t.srv.pid, SIGHUP), 0);
  v = trace_until(events, "reload");
  json_decref(v);
  cli_conn_close(events);
  cli_lines_wait(&t.srv.out, "reloading (SIGHUP)");
  cli_lines_wait(&t.srv.out, "reloaded");

  /* A config that does not load changes nothing, and says why. */
  {
    FILE *f = fopen(t.config, "w");
    assert_non_null(f);
    fputs("name: optest\nsize: [oops\n", f);
    fclose(f);
  }
  /* The reload hook answers with the reason: the command fails. */
  cli_poolctl(&r, "reload", "--no-wait", "-S", t.sock, NULL);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "did not find expected"));
  cli_run_free(&r);
  line = cli_lines_wait(&t.srv.err, "poolctl: reload: keeping the running");
  (void)line;
  cli_poolctl(&r, "call", "-S", t.sock, "echo", "3", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  write_config("3", 2);
}

/* ------------------------------------------------------- a second user */

static int run_as(uid_t uid, gid_t gid, char *const argv[], char *out,
                  size_t outlen) {
  int fds[2], code;
  ssize_t n, got = 0;
  pid_t pid;

  assert_int_equal(pipe(fds), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
      _exit(120);
    execv(argv[0], argv);
    _exit(121);
  }
  close(fds[1]);
  while ((n = read(fds[0], out + got, outlen - 1 - (size_t)got)) > 0)
    got += n;
  out[got > 0 ? got : 0] = '\0';
  close(fds[0]);
  code = cli_wait_exit(pid);
  return code;
}

/* A raw client as uid: connect, read what the server says. */
static int raw_as(uid_t uid, gid_t gid, const char *path, const char *send_line,
                  char *out, size_t outlen) {
  int fds[2], code;
  ssize_t n, got = 0;
  pid_t pid;

  assert_int_equal(pipe(fds), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct sockaddr_un sa;
    char buf[512];
    int fd;

    close(fds[0]);
    if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
      _exit(120);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
      _exit(122);
    if (send_line && write(fd, send_line, strlen(send_line)) < 0)
      _exit(123);
    /* One line is all a refused peer gets; then the server hangs up. */
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
      if (write(fds[1], buf, (size_t)n) != n)
        _exit(124);
      if (memchr(buf, '\n', (size_t)n) && send_line)
        break;
    }
    _exit(0);
  }
  close(fds[1]);
  while ((n = read(fds[0], out + got, outlen - 1 - (size_t)got)) > 0)
    got += n;
  out[got > 0 ? got : 0] = '\0';
  close(fds[0]);
  code = cli_wait_exit(pid);
  return code;
}

static void test_second_uid_refused(void **state) {
  static const char *user = "pp-optest";
  char want[160], out[1024], out2[1024];
  char *useradd[] = {"/usr/sbin/useradd",
                     "--system",
                     "--no-create-home",
                     "--shell",
                     "/usr/sbin/nologin",
                     (char *)user,
                     NULL};
  char *status[] = {(char *)cli_poolctl_path(), "status", "-S", t.sock, NULL};
  struct passwd *pw;
  cli_run_t r;
  int code, code2;

  (void)state;
  need_server();
  if (geteuid() != 0)
    cli_skip("needs root to create a second user and run a client as it");
  pw = getpwnam(user);
  if (pw == NULL) {
    if (access(useradd[0], X_OK) != 0)
      cli_skip("no %s to create the user %s", useradd[0], user);
    cli_run_argv(&r, useradd);
    if (r.code != 0) {
      fprintf(stderr, "useradd: %s", r.err);
      cli_run_free(&r);
      cli_skip("could not create the user %s", user);
    }
    cli_run_free(&r);
    pw = getpwnam(user);
    assert_non_null(pw);
  }
  /* Let the other user reach the socket at all: the directory and the
   * socket's mode are not what refuses it, SO_PEERCRED is. */
  assert_int_equal(chmod(t.dir, 0711), 0);
  assert_int_equal(chmod(t.sock, 0666), 0);
  code = raw_as(pw->pw_uid, pw->pw_gid, t.sock, NULL, out, sizeof(out));
  /* poolctl as that user trusts the server (root's, in root's directory)
   * and shows its refusal. */
  code2 = run_as(pw->pw_uid, pw->pw_gid, status, out2, sizeof(out2));
  assert_int_equal(chmod(t.sock, 0600), 0);
  assert_int_equal(chmod(t.dir, 0700), 0);
  assert_int_equal(code, 0);
  snprintf(want, sizeof(want),
           "{\"ok\":false,\"error\":\"EPERM\",\"message\":\"uid %u is not "
           "allowed\"}\n",
           (unsigned)pw->pw_uid);
  assert_string_equal(out, want);
  assert_int_equal(code2, 1);
  snprintf(want, sizeof(want), "uid %u is not allowed (EPERM)",
           (unsigned)pw->pw_uid);
  if (!strstr(out2, want))
    fail_msg("poolctl as uid %u said: %s", (unsigned)pw->pw_uid, out2);
}

/* The user test_second_uid_refused made, or skip saying why not. */
static struct passwd *second_user(void) {
  struct passwd *pw;

  if (geteuid() != 0)
    cli_skip("needs root to run a client as a second user");
  pw = getpwnam("pp-optest");
  if (pw == NULL)
    cli_skip("the user pp-optest was not created");
  return pw;
}

/* control.allow_uids lets a listed uid in, when the config has the key. */
static void test_allow_uids(void **state) {
  char out[1024], extra[256];
  pp_config_t *cfg;
  cli_server_t other;
  struct passwd *pw;
  pp_diag_t diag;
  int code;

  (void)state;
  need_server();
  pw = second_user();
  assert_int_equal(pp_config_new(&cfg), 0);
  memset(&diag, 0, sizeof(diag));
  code = pp_config_set(cfg, "control.allow_uids", "[1]", &diag);
  pp_config_free(cfg);
  if (code != 0)
    cli_skip("this build's config has no control.allow_uids yet (%s)",
             diag.message);
  snprintf(extra, sizeof(extra), "control.allow_uids=[%u]",
           (unsigned)pw->pw_uid);
  memset(&other, 0, sizeof(other));
  {
    char *cmd = NULL;
    const char *py = getenv("PP_PYTHON"), *worker = getenv("PP_WORKER_PY");
    char *h = fixture_path("echo_handlers.py");
    size_t n = strlen(py) + strlen(worker) + strlen(h) + 64;

    cmd = malloc(n);
    assert_non_null(cmd);
    snprintf(cmd, n, "worker.command=[%s, %s, %s]", py, worker, h);
    cli_server_start(&other, "-S", in_dir("allow.sock"), "--set", "size=1",
                     "--set", "control.mode=0666", "--set", extra, "--set", cmd,
                     NULL);
    free(cmd);
    free(h);
  }
  assert_int_equal(chmod(t.dir, 0711), 0);
  code = raw_as(pw->pw_uid, pw->pw_gid, in_dir("allow.sock"),
                "{\"op\":\"ping\"}\n", out, sizeof(out));
  assert_int_equal(chmod(t.dir, 0700), 0);
  assert_int_equal(code, 0);
  assert_string_equal(out, "{\"ok\":true}\n");
  cli_server_stop(&other);
}

/* ------------------------------------------------------------ top, tmux */

static const char *tmux_path(void) {
  static const char *paths[] = {"/usr/bin/tmux", "/usr/local/bin/tmux"};
  size_t i;

  for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
    if (access(paths[i], X_OK) == 0)
      return paths[i];
  return NULL;
}

static void tmux(cli_run_t *r, ...) {
  char *argv[24];
  va_list ap;
  int n = 0;

  argv[n++] = (char *)tmux_path();
  argv[n++] = "-S";
  argv[n++] = (char *)in_dir("tmux.sock");
  va_start(ap, r);
  while ((argv[n] = va_arg(ap, char *)) != NULL)
    n++;
  va_end(ap);
  cli_run_argv(r, argv);
}

static char *slurp(const char *path) {
  char *text = NULL;
  size_t n = 0;
  FILE *f = fopen(path, "r");

  assert_non_null(f);
  if (getdelim(&text, &n, '\0', f) < 0) {
    free(text);
    text = strdup("");
  }
  fclose(f);
  return text;
}

static void test_top_tmux(void **state) {
  char script[2048], cmd[512], go_path[192], before_path[192];
  char after_path[192], status_path[192], tsock[192];
  const char *tm = tmux_path();
  char *before, *after, *status, *block;
  cli_lines_t screen;
  size_t from;
  int rd, keep, go;
  cli_run_t r;
  FILE *f;

  (void)state;
  need_server();
  if (tm == NULL)
    cli_skip("tmux is not installed (apt-get install tmux)");
  /* The pane runs top twice (left with q, then with Ctrl-C), noting its
   * exit status and the terminal's mode before and after; it starts when
   * the test says go, once the pane's output is piped to us. */
  /* in_dir's buffers rotate: copy the paths first. */
  snprintf(go_path, sizeof(go_path), "%s", in_dir("go"));
  snprintf(before_path, sizeof(before_path), "%s", in_dir("stty.before"));
  snprintf(after_path, sizeof(after_path), "%s", in_dir("stty.after"));
  snprintf(status_path, sizeof(status_path), "%s", in_dir("top.status"));
  snprintf(tsock, sizeof(tsock), "%s", in_dir("tmux.sock"));
  snprintf(script, sizeof(script),
           "read x < '%s'\n"
           "stty -g > '%s'\n"
           "'%s' top -S '%s' --interval 200; echo $? > '%s'\n"
           "echo SECOND-RUN\n"
           "'%s' top -S '%s' --interval 200; echo $? >> '%s'\n"
           "stty -g > '%s'\n"
           "echo COLOR-BEGIN; '%s' status -S '%s'; echo COLOR-END\n"
           "NO_COLOR=1 '%s' status -S '%s'; echo NO-COLOR-END\n"
           "'%s' -S '%s' wait-for -S topdone\n"
           "exec cat\n",
           go_path, before_path, cli_poolctl_path(), t.sock, status_path,
           cli_poolctl_path(), t.sock, status_path, after_path,
           cli_poolctl_path(), t.sock, cli_poolctl_path(), t.sock, tm, tsock);
  f = fopen(in_dir("top.sh"), "w");
  assert_non_null(f);
  fputs(script, f);
  fclose(f);
  assert_int_equal(mkfifo(in_dir("go"), 0600), 0);
  assert_int_equal(mkfifo(in_dir("screen"), 0600), 0);
  rd = open(in_dir("screen"), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  assert_true(rd >= 0);
  keep = open(in_dir("screen"), O_WRONLY | O_CLOEXEC); /* no EOF early */
  assert_true(keep >= 0);
  assert_int_equal(fcntl(rd, F_SETFL, 0), 0);
  cli_lines_init(&screen, rd);

  snprintf(cmd, sizeof(cmd), "sh '%s'", in_dir("top.sh"));
  tmux(&r, "new-session", "-d", "-s", "top", "-x", "132", "-y", "48", cmd,
       NULL);
  if (r.code != 0)
    fail_msg("tmux new-session: %s", r.err);
  cli_run_free(&r);
  snprintf(cmd, sizeof(cmd), "cat >> '%s'", in_dir("screen"));
  tmux(&r, "pipe-pane", "-t", "top", "-O", cmd, NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  /* Read-write: the open never blocks, and the line waits in the FIFO
   * for the script's read. */
  go = open(in_dir("go"), O_RDWR | O_CLOEXEC);
  assert_true(go >= 0);
  assert_int_equal(write(go, "\n", 1), 1);

  /* The table is on the screen. */
  cli_lines_find(&screen, "ID   PID");
  tmux(&r, "capture-pane", "-p", "-t", "top", NULL);
  assert_int_equal(r.code, 0);
  if (!strstr(r.out, "poolctl top") || !strstr(r.out, "pool optest") ||
      !strstr(r.out, "LATENCY") || !strstr(r.out, "queue wait") ||
      !strstr(r.out, "ID   PID      STATE") || !strstr(r.out, "idle"))
    fail_msg("the pane shows:\n%s", r.out);
  cli_run_free(&r);
  tmux(&r, "send-keys", "-t", "top", "q", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);

  /* Again, left with Ctrl-C. */
  cli_lines_find(&screen, "SECOND-RUN");
  cli_lines_find(&screen, "ID   PID");
  tmux(&r, "send-keys", "-t", "top", "C-c", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);

  /* `status` on a terminal is coloured (idle in green), unless NO_COLOR. */
  cli_lines_find(&screen, "COLOR-BEGIN");
  from = screen.seen;
  cli_lines_find(&screen, "COLOR-END");
  block = strndup(screen.buf + from, screen.seen - from);
  assert_non_null(strstr(block, "\033[32midle"));
  free(block);
  from = screen.seen;
  cli_lines_find(&screen, "NO-COLOR-END");
  block = strndup(screen.buf + from, screen.seen - from);
  assert_non_null(strstr(block, "idle"));
  assert_null(strchr(block, '\033'));
  free(block);
  tmux(&r, "wait-for", "topdone", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);

  status = slurp(status_path);
  assert_string_equal(status, "0\n0\n");
  before = slurp(before_path);
  after = slurp(after_path);
  assert_string_equal(before, after); /* the terminal's mode is restored */
  free(status);
  free(before);
  free(after);
  tmux(&r, "kill-server", NULL);
  cli_run_free(&r);
  close(keep);
  close(go);
  cli_lines_free(&screen);
}

/* ------------------------------------------------- an embedding program */

/* Any program that embeds the pool with control.socket set answers
 * poolctl; stop and reload belong to it, and this one (the test) handles
 * neither SIGTERM nor SIGHUP, so they are refused rather than fatal. */
static void test_embedded_pool(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  char sock[192], quoted[200];
  pp_pool_t *pool;
  pp_diag_t diag;
  json_t *st;
  cli_run_t r;

  (void)state;
  snprintf(sock, sizeof(sock), "%s", in_dir("embedded.sock"));
  snprintf(quoted, sizeof(quoted), "\"%s\"", sock);
  cfg_set(cfg, "control.socket", quoted);
  memset(&diag, 0, sizeof(diag));
  if (pp_pool_open(cfg, NULL, &pool, &diag) != 0)
    fail_msg("pp_pool_open: %s", diag.message);
  pp_config_free(cfg);

  cli_poolctl(&r, "status", "--json", "-S", sock, NULL);
  assert_int_equal(r.code, 0);
  st = json_loads(r.out, 0, NULL);
  assert_non_null(st);
  assert_string_equal(cli_jstr(st, "name"), "test");
  assert_int_equal(cli_jint(st, "pid"), getpid());
  json_decref(st);
  cli_run_free(&r);
  cli_poolctl(&r, "call", "-S", sock, "add", "{\"a\": 1, \"b\": 2}", NULL);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "3\n");
  cli_run_free(&r);
  cli_poolctl(&r, "scale", "-S", sock, "2", NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);

  cli_poolctl(&r, "stop", "-S", sock, NULL);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "does not handle SIGTERM"));
  assert_non_null(strstr(r.err, "(ENOTSUP)"));
  cli_run_free(&r);
  cli_poolctl(&r, "reload", "-S", sock, NULL);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "does not handle SIGHUP"));
  cli_run_free(&r);
  cli_poolctl(&r, "status", "-S", sock, NULL);
  assert_int_equal(r.code, 0); /* still there */
  cli_run_free(&r);

  pp_pool_close(pool);
  assert_int_equal(access(sock, F_OK), -1);
}

/* ------------------------------------------------------------------ stop */

static void test_stop(void **state) {
  char *argv[] = {(char *)cli_poolctl_path(),
                  "trace",
                  "-S",
                  t.sock,
                  "--filter",
                  "closing",
                  NULL};
  cli_lines_t out, err;
  json_t *st, *w, *ev;
  int pids[8], n = 0, o, e, i;
  cli_run_t r;
  size_t k;
  pid_t tracer;

  (void)state;
  need_server();
  st = status_now();
  json_array_foreach(json_object_get(st, "workers"), k, w) {
    if (cli_jint(w, "pid") > 0 && n < 8)
      pids[n++] = (int)cli_jint(w, "pid");
  }
  json_decref(st);
  tracer = cli_spawn(argv, &o, &e);
  cli_lines_init(&out, o);
  cli_lines_init(&err, e);
  cli_lines_wait(&err, "poolctl: tracing the pool at ");

  /* stop returns once the serving process is gone. */
  cli_poolctl(&r, "stop", "-S", t.sock, NULL);
  assert_int_equal(r.code, 0);
  cli_run_free(&r);
  assert_int_equal(cli_wait_exit(t.srv.pid), 0);
  t.srv.pid = 0;
  cli_lines_wait(&t.srv.out, "stopping (poolctl stop)");
  cli_lines_wait(&t.srv.out, "stopped");
  assert_int_equal(access(t.sock, F_OK), -1);
  for (i = 0; i < n; i++)
    assert_int_equal(wait_pid_gone(pids[i], CLI_WAIT_MS), 0);

  /* The trace stream saw the pool close, then ended with exit 0. */
  ev = json_loads(cli_lines_wait(&out, "{"), 0, NULL);
  assert_non_null(ev);
  assert_string_equal(cli_jstr(ev, "event"), "closing");
  json_decref(ev);
  assert_int_equal(cli_wait_exit(tracer), 0);
  cli_lines_free(&out);
  cli_lines_free(&err);

  cli_poolctl(&r, "stop", "-S", t.sock, NULL);
  assert_int_equal(r.code, 3);
  cli_run_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_help),
      cmocka_unit_test(test_usage_errors),
      cmocka_unit_test(test_usage_messages),
      cmocka_unit_test(test_not_running),
      cmocka_unit_test(test_serve),
      cmocka_unit_test(test_status_table),
      cmocka_unit_test(test_status_json),
      cmocka_unit_test(test_status_watch),
      cmocka_unit_test(test_status_prometheus),
      cmocka_unit_test(test_status_degraded),
      cmocka_unit_test(test_trace),
      cmocka_unit_test(test_scale),
      cmocka_unit_test(test_restart),
      cmocka_unit_test(test_drain),
      cmocka_unit_test(test_reload_under_load),
      cmocka_unit_test(test_reload_boot_failure),
      cmocka_unit_test(test_second_uid_refused),
      cmocka_unit_test(test_allow_uids),
      cmocka_unit_test(test_top_tmux),
      cmocka_unit_test(test_embedded_pool),
      cmocka_unit_test(test_stop),
  };

  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
