/* test_blocking.c -- the blocking face against real Python workers: calls,
 * leases, handler errors, crashes, timeouts, checkout reasons, backpressure,
 * threads, and close/reopen.  Every wait is on a trace event or a reply. */
#include "faults.h"
#include "cli.h"
#include "helpers.h"

#include <errno.h>
#include <poll.h>

#include <jansson.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct fixture {
  rec_t rec;
  pp_pool_t *pool;
  pp_buf_t reply;
  pp_diag_t diag;
} fixture_t;

static fixture_t *open_pool(pp_config_t *cfg) {
  fixture_t *f = calloc(1, sizeof(*f));
  pp_pool_options_t o;
  int r;

  assert_non_null(f);
  rec_init(&f->rec);
  o = rec_options(&f->rec);
  r = pp_pool_open(cfg, &o, &f->pool, &f->diag);
  if (r != 0)
    fail_msg("pp_pool_open: %s: %s", pp_strerror(r), f->diag.message);
  pp_config_free(cfg);
  return f;
}

static void close_pool(fixture_t *f) {
  pp_pool_close(f->pool);
  assert_int_equal(rec_count(&f->rec, PP_TRACE_CLOSED), 1);
  pp_buf_free(&f->reply);
  rec_free(&f->rec);
  free(f);
}

static void assert_json_eq(const char *got, const char *want) {
  json_t *a = json_loads(got, JSON_DECODE_ANY, NULL);
  json_t *b = json_loads(want, JSON_DECODE_ANY, NULL);
  if (a == NULL || b == NULL || !json_equal(a, b))
    fail_msg("JSON differs: got %s, want %s", got, want);
  json_decref(a);
  json_decref(b);
}

static void test_call_echo(void **state) {
  fixture_t *f = open_pool(python_config("echo_handlers.py", 2));
  pp_status_t st;
  int r;

  (void)state;
  r = pp_call_cmd(f->pool, "echo", "{\"x\": 1}", &f->reply, -1, &f->diag);
  assert_int_equal(r, 0);
  assert_json_eq(f->reply.data, "{\"x\": 1}");
  r = pp_call_cmd(f->pool, "add", "{\"a\": 2, \"b\": 40}", &f->reply, -1,
                  &f->diag);
  assert_int_equal(r, 0);
  assert_json_eq(f->reply.data, "42");
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_equal(st.idle, 2);
  assert_int_equal(st.checkouts, 2);
  assert_int_equal(st.checkins, 2);
  assert_int_equal(st.requests, 2);
  assert_string_equal(pp_pool_state_name(st.state), "ready");
  assert_true(st.workers[0].pid > 0 && st.workers[1].pid > 0);
  pp_status_free(&st);
  close_pool(f);
}

/* Every worker is spawned before any HELLO is awaited: the spawn events of
 * all slots come before the first HELLO. */
static void test_spawn_all_before_hello(void **state) {
  fixture_t *f = open_pool(python_config("echo_handlers.py", 4));
  long first_hello, last_spawn = -1, i;

  (void)state;
  first_hello = rec_find(&f->rec, PP_TRACE_HELLO, 0);
  assert_true(first_hello >= 0);
  for (i = rec_find(&f->rec, PP_TRACE_SPAWN, 0); i >= 0;
       i = rec_find(&f->rec, PP_TRACE_SPAWN, (size_t)i + 1))
    last_spawn = i;
  assert_int_equal(rec_count(&f->rec, PP_TRACE_SPAWN), 4);
  assert_true(last_spawn < first_hello);
  assert_int_equal(rec_count(&f->rec, PP_TRACE_READY), 1);
  close_pool(f);
}

static void test_handler_exception(void **state) {
  fixture_t *f = open_pool(python_config("echo_handlers.py", 1));
  json_t *j;
  int r;

  (void)state;
  r = pp_call_cmd(f->pool, "fail", "\"bad input\"", &f->reply, -1, &f->diag);
  assert_int_equal(r, PP_EHANDLER);
  j = json_loads(f->reply.data, 0, NULL);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "type")),
                      "ValueError");
  assert_string_equal(json_string_value(json_object_get(j, "message")),
                      "boom: bad input");
  assert_non_null(strstr(json_string_value(json_object_get(j, "traceback")),
                         "echo_handlers.py"));
  json_decref(j);
  /* The worker survives a handler exception. */
  r = pp_call_cmd(f->pool, "echo", "7", &f->reply, -1, &f->diag);
  assert_int_equal(r, 0);
  assert_int_equal(rec_count(&f->rec, PP_TRACE_EXIT), 0);
  r = pp_call_cmd(f->pool, "no_such_handler", NULL, &f->reply, -1, &f->diag);
  assert_int_equal(r, PP_EHANDLER);
  assert_non_null(strstr(f->reply.data, "UnknownCommand"));
  close_pool(f);
}

/* A PP_EHANDLER's diag says "Type: message" for pp_call (one worker per
 * call, and pipelined) and pp_lease_call; a long message is cut to the
 * diag's buffer at a character boundary. */
static void test_handler_diag(void **state) {
  static const char *depths[] = {"1", "4"};
  const char *fail2 = "{\"cmd\":\"fail\",\"args\":2}";
  char args[1024], *p = args;
  pp_lease_t *lease;
  pp_config_t *cfg;
  fixture_t *f;
  json_t *s;
  int i, k;

  (void)state;
  /* "boom: " and 300 two-byte characters: 606 bytes, over 511. */
  *p++ = '"';
  for (k = 0; k < 300; k++)
    p += sprintf(p, "\xc3\xa9");
  *p++ = '"';
  *p = '\0';
  for (i = 0; i < 2; i++) {
    cfg = python_config("echo_handlers.py", 1);
    cfg_set(cfg, "worker.pipeline_depth", depths[i]);
    f = open_pool(cfg);
    memset(&f->diag, 0, sizeof(f->diag));
    assert_int_equal(
        pp_call_cmd(f->pool, "fail", "\"bad\"", &f->reply, -1, &f->diag),
        PP_EHANDLER);
    assert_string_equal(f->diag.message, "ValueError: boom: bad");
    memset(&f->diag, 0, sizeof(f->diag));
    assert_int_equal(
        pp_call_cmd(f->pool, "fail", args, &f->reply, -1, &f->diag),
        PP_EHANDLER);
    assert_true(strncmp(f->diag.message, "ValueError: boom: \xc3\xa9", 20) ==
                0);
    assert_true(strlen(f->diag.message) >= sizeof(f->diag.message) - 2);
    s = json_string(f->diag.message); /* NULL if not valid UTF-8 */
    assert_non_null(s);
    json_decref(s);
    assert_int_equal(pp_lease_acquire(f->pool, NULL, -1, &lease, &f->diag), 0);
    memset(&f->diag, 0, sizeof(f->diag));
    assert_int_equal(
        pp_lease_call(lease, fail2, strlen(fail2), -1, &f->reply, &f->diag),
        PP_EHANDLER);
    assert_string_equal(f->diag.message, "ValueError: boom: 2");
    pp_checkin(lease);
    close_pool(f);
  }
}

/* pp_call_cmd takes identifiers only: a name that would add keys to the
 * JSON (a quote, a second "cmd") is refused with UV_EINVAL before anything
 * is sent, and the worker never runs the command smuggled in. */
static void test_call_cmd_names(void **state) {
  static const char *bad[] = {"echo\",\"cmd\":\"crash",
                              "fail\", \"cmd\": \"crash",
                              "",
                              "1abc",
                              "a b",
                              "a.b",
                              "echo\\",
                              "caf\xc3\xa9",
                              "a\nb"};
  fixture_t *f = open_pool(python_config("echo_handlers.py", 1));
  pp_status_t st;
  size_t i;

  (void)state;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    memset(&f->diag, 0, sizeof(f->diag));
    if (pp_call_cmd(f->pool, bad[i], "3", &f->reply, -1, &f->diag) != UV_EINVAL)
      fail_msg("pp_call_cmd accepted the name '%s'", bad[i]);
    assert_non_null(strstr(f->diag.message, "is not an identifier"));
  }
  /* Identifiers pass: unknown ones reach the worker. */
  assert_int_equal(pp_call_cmd(f->pool, "_x1", NULL, &f->reply, -1, &f->diag),
                   PP_EHANDLER);
  assert_non_null(strstr(f->diag.message, "UnknownCommand"));
  assert_int_equal(pp_call_cmd(f->pool, "echo", "5", &f->reply, -1, &f->diag),
                   0);
  assert_string_equal(f->reply.data, "5");
  /* Arguments that smuggle in a "cmd" key do not override the name. */
  assert_int_equal(pp_call_cmd(f->pool, "echo", "6,\"cmd\":\"crash\"",
                               &f->reply, -1, &f->diag),
                   0);
  assert_string_equal(f->reply.data, "6");
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_equal(st.requests, 3); /* nothing else was sent */
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  assert_int_equal(rec_count(&f->rec, PP_TRACE_EXIT), 0);
  close_pool(f);
}

static void test_crash_mid_request(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  fixture_t *f = open_pool(cfg);
  pp_status_t st;
  int r, pid1, pid2;

  (void)state;
  assert_int_equal(pp_call_cmd(f->pool, "pid", NULL, &f->reply, -1, &f->diag),
                   0);
  pid1 = atoi(f->reply.data);
  r = pp_call_cmd(f->pool, "crash", "3", &f->reply, -1, &f->diag);
  assert_int_equal(r, PP_ECRASHED);
  assert_non_null(strstr(f->diag.message, "exit 3"));
  /* The slot restarts after its backoff: wait for the second HELLO. */
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_HELLO, 2, 10000), 0);
  assert_int_equal(rec_count(&f->rec, PP_TRACE_RESTART), 1);
  assert_int_equal(pp_call_cmd(f->pool, "pid", NULL, &f->reply, 5000, &f->diag),
                   0);
  pid2 = atoi(f->reply.data);
  assert_int_not_equal(pid1, pid2);
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_equal(st.restarts, 1);
  assert_int_equal(st.workers[0].generation, 2);
  assert_string_equal(st.workers[0].last_exit_text, "exit 3");
  pp_status_free(&st);
  close_pool(f);
}

static void test_killed_by_signal(void **state) {
  fixture_t *f = open_pool(python_config("echo_handlers.py", 1));
  int r;

  (void)state;
  r = pp_call_cmd(f->pool, "kill_self", NULL, &f->reply, -1, &f->diag);
  assert_int_equal(r, PP_ECRASHED);
  assert_non_null(strstr(f->diag.message, "signal 9"));
  close_pool(f);
}

static void count_log(pp_pool_t *pool, const char *line, void *data) {
  (void)pool;
  if (strstr(line, "worker 0") && strstr(line, "noise"))
    (*(int *)data)++;
}

/* A handler that prints, even bytes that look like a frame header, leaves
 * the protocol intact: stdout and stderr go to the log. */
static void test_print_keeps_protocol(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pp_pool_options_t o;
  pp_pool_t *pool;
  pp_buf_t reply = {0};
  pp_diag_t d;
  int lines = 0, r, i;

  (void)state;
  memset(&o, 0, sizeof(o));
  o.log = count_log;
  o.log_data = &lines;
  assert_int_equal(pp_pool_open(cfg, &o, &pool, &d), 0);
  pp_config_free(cfg);
  for (i = 0; i < 3; i++) {
    r = pp_call_cmd(pool, "noisy", NULL, &reply, -1, &d);
    assert_int_equal(r, 0);
    assert_string_equal(reply.data, "\"quiet\"");
  }
  r = pp_call_cmd(pool, "echo", "[1,2]", &reply, -1, &d);
  assert_int_equal(r, 0);
  assert_string_equal(reply.data, "[1,2]");
  pp_pool_close(pool);
  /* Log lines are delivered on the loop; after close every one arrived. */
  assert_true(lines >= 3);
  pp_buf_free(&reply);
}

static void test_lease_keeps_worker(void **state) {
  fixture_t *f = open_pool(python_config("echo_handlers.py", 3));
  pp_lease_t *lease;
  char first[32];
  int i;

  (void)state;
  assert_int_equal(pp_lease_acquire(f->pool, NULL, -1, &lease, &f->diag), 0);
  assert_int_equal(
      pp_lease_call(lease, "{\"cmd\":\"pid\"}", 13, -1, &f->reply, &f->diag),
      0);
  snprintf(first, sizeof(first), "%s", f->reply.data);
  assert_int_equal(atoi(first), pp_lease_pid(lease));
  for (i = 0; i < 20; i++) {
    assert_int_equal(
        pp_lease_call(lease, "{\"cmd\":\"pid\"}", 13, -1, &f->reply, &f->diag),
        0);
    assert_string_equal(f->reply.data, first);
  }
  pp_checkin(lease);
  close_pool(f);
}

static void test_checkout_timeout_busy(void **state) {
  fixture_t *f = open_pool(python_config("echo_handlers.py", 1));
  pp_lease_t *held, *other;
  int r;

  (void)state;
  assert_int_equal(pp_lease_acquire(f->pool, NULL, -1, &held, &f->diag), 0);
  r = pp_lease_acquire(f->pool, NULL, 50, &other, &f->diag);
  assert_int_equal(r, PP_ETIMEDOUT);
  assert_null(other);
  assert_non_null(strstr(f->diag.message, "all 1 workers busy, 1 waiting"));
  pp_checkin(held);
  assert_int_equal(pp_lease_acquire(f->pool, NULL, 50, &other, &f->diag), 0);
  pp_checkin(other);
  close_pool(f);
}

typedef struct waiter_arg {
  pp_pool_t *pool;
  int status;
  int pid;
} waiter_arg_t;

static void waiter_thread(void *arg) {
  waiter_arg_t *a = arg;
  pp_lease_t *lease;
  pp_diag_t d;

  a->status = pp_lease_acquire(a->pool, NULL, 30000, &lease, &d);
  if (a->status == 0) {
    a->pid = pp_lease_pid(lease);
    pp_checkin(lease);
  }
}

static void test_max_waiters(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  fixture_t *f;
  pp_lease_t *held, *other;
  waiter_arg_t a = {0};
  uv_thread_t t;
  int r;

  (void)state;
  cfg_set(cfg, "checkout.max_waiters", "1");
  f = open_pool(cfg);
  a.pool = f->pool;
  assert_int_equal(pp_lease_acquire(f->pool, NULL, -1, &held, &f->diag), 0);
  assert_int_equal(uv_thread_create(&t, waiter_thread, &a), 0);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_CHECKOUT_WAIT, 1, 10000), 0);
  r = pp_lease_acquire(f->pool, NULL, 10000, &other, &f->diag);
  assert_int_equal(r, PP_EBUSY);
  assert_non_null(strstr(f->diag.message, "max_waiters"));
  pp_checkin(held);
  uv_thread_join(&t);
  assert_int_equal(a.status, 0);
  assert_true(a.pid > 0);
  close_pool(f);
}

static void test_request_timeout(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  fixture_t *f;
  int r;

  (void)state;
  cfg_set(cfg, "worker.request_timeout", "200ms");
  f = open_pool(cfg);
  r = pp_call_cmd(f->pool, "sleep", "30", &f->reply, -1, &f->diag);
  assert_int_equal(r, PP_ETIMEDOUT);
  assert_non_null(strstr(f->diag.message, "timed out"));
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_EXIT, 1, 10000), 0);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_HELLO, 2, 10000), 0);
  r = pp_call_cmd(f->pool, "echo", "1", &f->reply, 5000, &f->diag);
  assert_int_equal(r, 0);
  close_pool(f);
}

typedef struct caller_arg {
  pp_pool_t *pool;
  int id;
  int calls;
  int ok;
} caller_arg_t;

static void caller_thread(void *arg) {
  caller_arg_t *a = arg;
  pp_buf_t reply = {0};
  char args[64], want[64];
  pp_diag_t d;
  int i;

  for (i = 0; i < a->calls; i++) {
    snprintf(args, sizeof(args), "[%d,%d]", a->id, i);
    snprintf(want, sizeof(want), "[%d,%d]", a->id, i);
    if (pp_call_cmd(a->pool, "echo", args, &reply, 30000, &d) == 0 &&
        strcmp(reply.data, want) == 0)
      a->ok++;
  }
  pp_buf_free(&reply);
}

static void test_threads(void **state) {
  int size = env_int("POOL_SIZE", 4), clients = env_int("CLIENTS", 8);
  fixture_t *f = open_pool(python_config("echo_handlers.py", size));
  caller_arg_t *args = calloc((size_t)clients, sizeof(*args));
  uv_thread_t *t = calloc((size_t)clients, sizeof(*t));
  pp_status_t st;
  int i;

  (void)state;
  for (i = 0; i < clients; i++) {
    args[i].pool = f->pool;
    args[i].id = i;
    args[i].calls = 200;
    assert_int_equal(uv_thread_create(&t[i], caller_thread, &args[i]), 0);
  }
  for (i = 0; i < clients; i++) {
    uv_thread_join(&t[i]);
    assert_int_equal(args[i].ok, 200);
  }
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_equal(st.idle, size);
  assert_int_equal(st.checkouts, (uint64_t)clients * 200);
  assert_int_equal(st.checkins, (uint64_t)clients * 200);
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  free(args);
  free(t);
  close_pool(f);
}

/* A thread checking in its pp_call's worker writes the request of the
 * caller waiting next (the handoff), so the worker does not sit idle while
 * that caller wakes.  Every reply still reaches its own caller, with a
 * timeout_ms on every call; and a worker that dies just before a handed
 * request is written costs its caller nothing: the request never reached
 * it, so it is retried on the replacement. */
typedef struct {
  int handoffs; /* atomic */
  int kill_at;  /* kill the worker before this handoff's write, 0 = never */
  int killed;
} handoff_t;

static void handoff_hook(pp_pool_t *pool, const char *point, void *data) {
  handoff_t *h = data;
  pp_status_t st;
  char path[64], buf[256], *p;
  int n, pid;
  FILE *fp;

  if (strcmp(point, "handoff_write") != 0)
    return;
  n = __atomic_add_fetch(&h->handoffs, 1, __ATOMIC_RELAXED);
  if (n != h->kill_at)
    return;
  assert_int_equal(pp_pool_status(pool, &st), 0);
  pid = st.workers[0].pid;
  pp_status_free(&st);
  assert_true(pid > 0);
  assert_int_equal(kill(pid, SIGKILL), 0);
  /* Dead once a zombie (or reaped): its pipes are closed. */
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  for (;;) {
    if ((fp = fopen(path, "r")) == NULL)
      break;
    buf[0] = '\0';
    if (fgets(buf, sizeof(buf), fp) == NULL)
      buf[0] = '\0';
    fclose(fp);
    if ((p = strrchr(buf, ')')) != NULL && p[1] == ' ' &&
        (p[2] == 'Z' || p[2] == 'X'))
      break;
    sched_yield();
  }
  h->killed = 1;
}

static void handoff_run(int kill_at) {
  enum { CALLERS = 8, CALLS = 100 };
  fixture_t *f = open_pool(python_config("echo_handlers.py", 1));
  caller_arg_t args[CALLERS];
  uv_thread_t t[CALLERS];
  handoff_t h = {.kill_at = kill_at};
  pp_status_t st;
  int i;

  memset(args, 0, sizeof(args));
  pp_test_fault_hook(f->pool, handoff_hook, &h);
  for (i = 0; i < CALLERS; i++) {
    args[i].pool = f->pool;
    args[i].id = i;
    args[i].calls = CALLS;
    assert_int_equal(uv_thread_create(&t[i], caller_thread, &args[i]), 0);
  }
  for (i = 0; i < CALLERS; i++) {
    uv_thread_join(&t[i]);
    assert_int_equal(args[i].ok, CALLS);
  }
  pp_test_fault_hook(f->pool, NULL, NULL);
  /* 8 callers on one worker: most calls waited, and were handed over. */
  assert_true(h.handoffs > CALLERS);
  assert_int_equal(h.killed, kill_at > 0);
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_equal(st.restarts, kill_at > 0 ? 1 : 0);
  assert_int_equal(st.requests, (uint64_t)CALLERS * CALLS);
  assert_int_equal(st.errors, 0);
  assert_int_equal(st.waiters, 0);
  pp_status_free(&st);
  close_pool(f);
}

static void test_handoff_writes_next(void **state) {
  (void)state;
  handoff_run(0);
}

static void test_handoff_to_dead_worker(void **state) {
  (void)state;
  handoff_run(20);
}

static int worker_pid(fixture_t *f);

/* A JSON string of n 'x's, quotes included: n + 2 bytes and a NUL. */
static char *json_xs(size_t n) {
  char *s = malloc(n + 3);

  assert_non_null(s);
  s[0] = '"';
  memset(s + 1, 'x', n);
  s[n + 1] = '"';
  s[n + 2] = '\0';
  return s;
}

/* A handed-over request that does not go in at once (larger than
 * PIPE_BUF, or no room in the pipe) is left to its own thread: the thread
 * that handed the worker over returns with its own answer, and never waits
 * on a worker that does not read (stopped here, at the handoff). */
typedef struct {
  pp_pool_t *pool;
  const char *cmd, *args;
  pp_buf_t reply;
  pp_diag_t diag;
  int status;
  int done; /* atomic */
  sem_t ended;
} ocall_t;

static void ocall_thread(void *arg) {
  ocall_t *o = arg;

  o->status = pp_call_cmd(o->pool, o->cmd, o->args, &o->reply, -1, &o->diag);
  __atomic_store_n(&o->done, 1, __ATOMIC_RELEASE);
  sem_post(&o->ended);
}

/* Waits for o's call to return, up to ms (a timeout that only fires when
 * the call is stuck): 0 when it did. */
static int ocall_wait(ocall_t *o, int ms) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  while (sem_timedwait(&o->ended, &ts) != 0)
    if (errno != EINTR)
      return -1;
  return 0;
}

typedef struct {
  int pid; /* the worker stopped, 0 = not yet */
} stop_t;

static void stop_hook(pp_pool_t *pool, const char *point, void *data) {
  stop_t *s = data;
  pp_status_t st;

  if (strcmp(point, "handoff_write") != 0 || s->pid != 0)
    return;
  assert_int_equal(pp_pool_status(pool, &st), 0);
  s->pid = st.workers[0].pid;
  pp_status_free(&st);
  assert_true(s->pid > 0);
  assert_int_equal(kill(s->pid, SIGSTOP), 0);
}

static void test_handoff_never_waits_on_worker(void **state) {
  enum { BIG = 256 * 1024 };
  fixture_t *f = open_pool(python_config("echo_handlers.py", 1));
  char fifo[128], gate[200], *big = json_xs(BIG);
  ocall_t a = {0}, b = {0};
  stop_t s = {0};
  pp_status_t st;
  uv_thread_t ta, tb;

  (void)state;
  fifo_make(fifo, sizeof(fifo), "handoff-stop");
  snprintf(gate, sizeof(gate), "{\"fifo\":\"%s\"}", fifo);
  a = (ocall_t){.pool = f->pool, .cmd = "gate", .args = gate};
  b = (ocall_t){.pool = f->pool, .cmd = "echo", .args = big};
  sem_init(&a.ended, 0, 0);
  sem_init(&b.ended, 0, 0);
  /* Set before any call: the hook acts at the first handoff only. */
  pp_test_fault_hook(f->pool, stop_hook, &s);
  /* a holds the only worker (its handler waits on the fifo), b waits. */
  assert_int_equal(uv_thread_create(&ta, ocall_thread, &a), 0);
  for (;;) {
    int busy;
    assert_int_equal(pp_pool_status(f->pool, &st), 0);
    busy = st.busy + st.leased;
    pp_status_free(&st);
    if (busy)
      break;
    sched_yield();
  }
  assert_int_equal(uv_thread_create(&tb, ocall_thread, &b), 0);
  assert_int_equal(
      rec_wait(&f->rec, PP_TRACE_CHECKOUT_WAIT, 1, 10000 * test_time_scale()),
      0);
  fifo_release(fifo);
  /* a's answer came; the worker is stopped with b's request not in. */
  assert_int_equal(ocall_wait(&a, 10000 * test_time_scale()), 0);
  assert_true(s.pid > 0);
  assert_int_equal(a.status, 0);
  assert_int_equal(__atomic_load_n(&b.done, __ATOMIC_ACQUIRE), 0);
  /* b writes its own request once the worker reads again. */
  assert_int_equal(kill(s.pid, SIGCONT), 0);
  uv_thread_join(&tb);
  uv_thread_join(&ta);
  pp_test_fault_hook(f->pool, NULL, NULL);
  assert_int_equal(b.status, 0);
  assert_int_equal(b.reply.len, BIG + 2);
  assert_memory_equal(b.reply.data, big, BIG + 2);
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(st.errors, 0);
  pp_status_free(&st);
  sem_destroy(&a.ended);
  sem_destroy(&b.ended);
  pp_buf_free(&a.reply);
  pp_buf_free(&b.reply);
  unlink(fifo);
  free(big);
  close_pool(f);
}

/* pp_pool_status holds the workers it copied until it has read their /proc
 * figures.  One that dies and is replaced meanwhile is read through the
 * fd opened when it started: zeros (it was reaped), never the figures of
 * whoever has its pid now; and the status's own thread may be the one
 * that frees it. */
typedef struct {
  int fired;
  int crash; /* the crash call's status */
  int echo;  /* the call after it, on the replacement */
} die_t;

static void die_hook(pp_pool_t *pool, const char *point, void *data) {
  die_t *s = data;
  pp_buf_t reply = {0};

  if (strcmp(point, "status_read") != 0 || s->fired)
    return;
  s->fired = 1;
  s->crash = pp_call_cmd(pool, "crash", "3", &reply, -1, NULL);
  s->echo = pp_call_cmd(pool, "echo", "1", &reply, -1, NULL);
  pp_buf_free(&reply);
}

static void test_status_worker_dies_meanwhile(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  fixture_t *f;
  die_t s = {0};
  pp_status_t st;
  int pid;

  (void)state;
  cfg_set(cfg, "restart.backoff", "[0ms, 0ms]");
  f = open_pool(cfg);
  pid = worker_pid(f);
  pp_test_fault_hook(f->pool, die_hook, &s);
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  pp_test_fault_hook(f->pool, NULL, NULL);
  assert_true(s.fired);
  assert_int_equal(s.crash, PP_ECRASHED);
  assert_int_equal(s.echo, 0);
  assert_int_equal(st.workers[0].pid, pid);
  assert_int_equal(st.workers[0].rss_bytes, 0);
  assert_int_equal(st.workers[0].cpu_time_ms, 0);
  pp_status_free(&st);
  /* The replacement's own figures. */
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_not_equal(st.workers[0].pid, pid);
  assert_true(st.workers[0].rss_bytes > 1024 * 1024);
  pp_status_free(&st);
  close_pool(f);
}

/* A request whose write times out (the worker does not read) may be in
 * the pipe in part: the worker is replaced, not left to run on a frame it
 * will never finish reading. */
static void test_write_timeout_replaces_worker(void **state) {
  enum { BIG = 1024 * 1024 };
  fixture_t *f = open_pool(python_config("echo_handlers.py", 1));
  char *big = json_xs(BIG);
  pp_status_t st;
  int pid;

  (void)state;
  pid = worker_pid(f);
  assert_int_equal(kill(pid, SIGSTOP), 0);
  assert_int_equal(pp_call_cmd(f->pool, "echo", big, &f->reply, 300, &f->diag),
                   PP_ETIMEDOUT);
  assert_int_equal(
      rec_wait(&f->rec, PP_TRACE_EXIT, 1, 10000 * test_time_scale()), 0);
  assert_int_equal(
      rec_wait(&f->rec, PP_TRACE_HELLO, 2, 10000 * test_time_scale()), 0);
  assert_int_equal(pp_call_cmd(f->pool, "echo", "1", &f->reply, -1, &f->diag),
                   0);
  assert_string_equal(f->reply.data, "1");
  assert_int_not_equal(worker_pid(f), pid);
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_equal(st.restarts, 1);
  pp_status_free(&st);
  free(big);
  close_pool(f);
}

/* Pipelined calls: several callers share each worker up to the depth,
 * every reply reaches its own caller, and a crash fails only the calls
 * queued on that worker. */
static void test_pipelined_calls(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 2);
  caller_arg_t args[16];
  uv_thread_t t[16];
  pp_status_t st;
  fixture_t *f;
  int i;

  (void)state;
  cfg_set(cfg, "worker.pipeline_depth", "4");
  f = open_pool(cfg);
  for (i = 0; i < 16; i++) {
    args[i].pool = f->pool;
    args[i].id = i;
    args[i].calls = 300;
    args[i].ok = 0;
    assert_int_equal(uv_thread_create(&t[i], caller_thread, &args[i]), 0);
  }
  for (i = 0; i < 16; i++) {
    uv_thread_join(&t[i]);
    assert_int_equal(args[i].ok, 300);
  }
  assert_int_equal(pp_pool_quiesce(f->pool, 10000, &f->diag), 0);
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_equal(st.checkouts, 16 * 300);
  assert_int_equal(st.checkins, 16 * 300);
  assert_int_equal(st.idle, 2);
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  /* A crash in the pipeline: that call sees it, the pool recovers. */
  assert_int_equal(pp_call_cmd(f->pool, "crash", "4", &f->reply, -1, &f->diag),
                   PP_ECRASHED);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_HELLO, 3, 10000), 0);
  assert_int_equal(pp_call_cmd(f->pool, "echo", "1", &f->reply, -1, &f->diag),
                   0);
  close_pool(f);
}

static uint32_t reply_spin_us(fixture_t *f) {
  pp_status_t st;
  uint32_t us;

  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  us = st.workers[0].reply_spin_us;
  pp_status_free(&st);
  return us;
}

/* The polling window's rule, without a clock: a wait that ended within the
 * ceiling opens it at 10 us, then doubles it up to the ceiling; a longer
 * one closes it. */
static void test_reply_spin_adapt(void **state) {
  uint32_t window = 0;
  static const struct {
    uint64_t waited;
    uint32_t window;
  } steps[] = {{5000, 10000},  {15000, 20000}, {30000, 40000}, {45000, 50000},
               {50000, 50000}, {50001, 0},     {0, 10000},     {999999, 0}};
  size_t i;

  (void)state;
  for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
    window = pp_test_spin_adapt(window, 50000, steps[i].waited);
    assert_int_equal(window, steps[i].window);
  }
  /* A ceiling below the first step. */
  assert_int_equal(pp_test_spin_adapt(window, 4000, 1000), 4000);
}

/* With real workers: whatever pace the replies have, the window stays
 * within worker.reply_spin_us, and a reply that took longer than that
 * closes it; at 0 it never opens.  (On a loaded machine every reply may
 * take longer than the ceiling, and then it never opens: the rule itself
 * is test_reply_spin_adapt.)  Both call paths: a lease (depth 1) and the
 * pipeline. */
static void reply_spin_case(const char *depth) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  fixture_t *f;
  int i;

  cfg_set(cfg, "worker.pipeline_depth", depth);
  cfg_set(cfg, "worker.reply_spin_us", "400");
  f = open_pool(cfg);
  for (i = 0; i < 200; i++) {
    assert_int_equal(pp_call_cmd(f->pool, "echo", "1", &f->reply, -1, &f->diag),
                     0);
    assert_true(reply_spin_us(f) <= 400);
  }
  /* 20 ms is past the ceiling: polling stops at once. */
  assert_int_equal(
      pp_call_cmd(f->pool, "sleep", "0.02", &f->reply, -1, &f->diag), 0);
  assert_int_equal(reply_spin_us(f), 0);
  close_pool(f);

  cfg = python_config("echo_handlers.py", 1);
  cfg_set(cfg, "worker.pipeline_depth", depth);
  cfg_set(cfg, "worker.reply_spin_us", "0");
  f = open_pool(cfg);
  for (i = 0; i < 200; i++) {
    assert_int_equal(pp_call_cmd(f->pool, "echo", "1", &f->reply, -1, &f->diag),
                     0);
    assert_int_equal(reply_spin_us(f), 0);
  }
  close_pool(f);
}

/* A worker pinned to the caller's own CPU: polling would only keep it from
 * running, so the window never opens. */
static void test_reply_spin_pinned_beside(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  cpu_set_t mine, one;
  pp_status_t st;
  fixture_t *f;
  int i, pid;

  (void)state;
  cfg_set(cfg, "worker.reply_spin_us", "400");
  f = open_pool(cfg);
  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  pid = st.workers[0].pid;
  pp_status_free(&st);
  assert_int_equal(sched_getaffinity(0, sizeof(mine), &mine), 0);
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
  assert_int_equal(sched_setaffinity(pid, sizeof(one), &one), 0);
  for (i = 0; i < 200; i++) {
    assert_int_equal(pp_call_cmd(f->pool, "echo", "1", &f->reply, -1, &f->diag),
                     0);
    assert_int_equal(reply_spin_us(f), 0);
  }
  assert_int_equal(sched_setaffinity(0, sizeof(mine), &mine), 0);
  close_pool(f);
}

static void test_reply_spin(void **state) {
  (void)state;
  reply_spin_case("1");
  reply_spin_case("4");
}

/* Close is synchronous: the workers are reaped when it returns, so a new
 * pool (same name, same socket) starts on the next line, 50 times. */
static void test_close_reopen(void **state) {
  char dir[64] = "/tmp/pp-test-reopen-XXXXXX", sock[128];
  int i, pid;

  (void)state;
  /* A directory of our own: the pool refuses a socket right in /tmp. */
  assert_non_null(mkdtemp(dir));
  snprintf(sock, sizeof(sock), "%s/pool.sock", dir);
  for (i = 0; i < 50; i++) {
    pp_config_t *cfg = python_config("echo_handlers.py", 1);
    fixture_t *f;
    cfg_set(cfg, "control.socket", sock);
    f = open_pool(cfg);
    assert_int_equal(pp_call_cmd(f->pool, "pid", NULL, &f->reply, -1, &f->diag),
                     0);
    pid = atoi(f->reply.data);
    close_pool(f);
    assert_false(pid_alive(pid));
    assert_int_equal(access(sock, F_OK), -1);
  }
  assert_int_equal(rmdir(dir), 0); /* no lock file or socket left behind */
}

/* The signals a process blocks (SigBlk in /proc/PID/status). */
static unsigned long long sigblk_of(int pid) {
  unsigned long long mask = ~0ull;
  char path[64], line[256];
  FILE *fp;

  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  fp = fopen(path, "r");
  assert_non_null(fp);
  while (fgets(line, sizeof(line), fp))
    if (sscanf(line, "SigBlk: %llx", &mask) == 1)
      break;
  fclose(fp);
  return mask;
}

/* Control clients that send requests and go away before the answers: the
 * pool's loop thread writes to closed sockets, which raises SIGPIPE for
 * that thread.  The process that hosts the pool does not die of it (this
 * suite leaves SIGPIPE at its default, as a program may), and the pool
 * serves on. */
static void test_control_client_gone(void **state) {
  char dir[64] = "/tmp/pp-test-gone-XXXXXX", sock[128];
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  cli_conn_t *c;
  json_t *st;
  fixture_t *f;
  int i;

  (void)state;
  assert_non_null(mkdtemp(dir));
  snprintf(sock, sizeof(sock), "%s/pool.sock", dir);
  cfg_set(cfg, "control.socket", sock);
  f = open_pool(cfg);
  for (i = 0; i < 20; i++) {
    c = cli_conn_open(sock);
    assert_non_null(c);
    cli_conn_send(c, "{\"op\":\"status\"}\n{\"op\":\"trace\"}\n");
    cli_conn_close(c);
  }
  c = cli_conn_open(sock);
  assert_non_null(c);
  st = cli_conn_status(c);
  assert_non_null(st);
  json_decref(st);
  cli_conn_close(c);
  assert_int_equal(pp_call_cmd(f->pool, "echo", "1", &f->reply, -1, &f->diag),
                   0);
  /* The loop thread's mask is its own: workers start with SIGPIPE not
   * blocked. */
  assert_int_equal(sigblk_of(worker_pid(f)) & (1ull << (SIGPIPE - 1)), 0);
  close_pool(f);
  assert_int_equal(rmdir(dir), 0);
}

typedef struct lcall {
  pp_lease_t *lease;
  char payload[256];
  int64_t timeout_ms;
  int status;
  pp_diag_t diag;
  pp_buf_t reply;
} lcall_t;

static void lcall_main(void *arg) {
  lcall_t *k = arg;

  k->status = pp_lease_call(k->lease, k->payload, strlen(k->payload),
                            k->timeout_ms, &k->reply, &k->diag);
}

/* Just under 2^64 ns in ms: added to the clock in ns it wraps into the
 * past. */
#define PP_TEST_HUGE_MS ((int64_t)18446744073709)

/* Waits with a huge timeout, behind the only worker. */
typedef struct longwait {
  pp_pool_t *pool;
  pp_lease_t *lease;
  int status;
} longwait_t;

static void longwait_acquire(void *arg) {
  longwait_t *w = arg;

  w->status = pp_lease_acquire(w->pool, NULL, PP_TEST_HUGE_MS, &w->lease, NULL);
}

static void longwait_quiesce(void *arg) {
  longwait_t *w = arg;

  w->status = pp_pool_quiesce(w->pool, PP_TEST_HUGE_MS, NULL);
}

/* A timeout too large for a deadline in nanoseconds waits (it used to
 * wrap into one already past: PP_ETIMEDOUT at once), for a call, a
 * checkout and quiesce alike.  Each wait ends only when a lease it waits
 * for is checked in, whenever the thread began waiting. */
static void test_huge_timeouts_wait(void **state) {
  fixture_t *f = open_pool(python_config("echo_handlers.py", 1));
  longwait_t a, q;
  pp_lease_t *held;
  uv_thread_t t;

  (void)state;
  assert_int_equal(
      pp_call_cmd(f->pool, "echo", "1", &f->reply, PP_TEST_HUGE_MS, &f->diag),
      0);
  assert_string_equal(f->reply.data, "1");
  assert_int_equal(pp_lease_acquire(f->pool, NULL, -1, &held, &f->diag), 0);
  memset(&a, 0, sizeof(a));
  a.pool = f->pool;
  assert_int_equal(uv_thread_create(&t, longwait_acquire, &a), 0);
  assert_int_equal(
      rec_wait(&f->rec, PP_TRACE_CHECKOUT_WAIT, 1, 10000 * test_time_scale()),
      0);
  pp_checkin(held);
  uv_thread_join(&t);
  assert_int_equal(a.status, 0);
  memset(&q, 0, sizeof(q));
  q.pool = f->pool;
  q.status = 1;
  assert_int_equal(uv_thread_create(&t, longwait_quiesce, &q), 0);
  /* Check in only once quiesce waits for it. */
  for (;;) {
    int waiting;

    waiting = pp_test_quiesce_waiting(f->pool);
    if (waiting)
      break;
    sched_yield();
  }
  pp_checkin(a.lease);
  uv_thread_join(&t);
  assert_int_equal(q.status, 0);
  close_pool(f);
}

/* A blocking call cut short by pp_pool_close (its worker stopped past
 * drain_timeout) gets PP_ECLOSED, as the header says, not PP_ECRASHED. */
static void test_close_cuts_call_closed(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  fixture_t *f;
  char fifo[128];
  uv_thread_t t;
  lcall_t k;

  (void)state;
  cfg_set(cfg, "worker.drain_timeout", "100ms");
  cfg_set(cfg, "worker.kill_grace", "200ms");
  f = open_pool(cfg);
  memset(&k, 0, sizeof(k));
  k.timeout_ms = -1;
  fifo_make(fifo, sizeof(fifo), "close-cuts-call");
  snprintf(k.payload, sizeof(k.payload),
           "{\"cmd\":\"gate\",\"args\":{\"fifo\":\"%s\"}}", fifo);
  assert_int_equal(pp_lease_acquire(f->pool, NULL, -1, &k.lease, &f->diag), 0);
  assert_int_equal(uv_thread_create(&t, lcall_main, &k), 0);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_REQUEST, 1, 10000), 0);
  /* Returns once the caller has left the pool (it never checks in: the
   * lease goes with the pool). */
  close_pool(f);
  uv_thread_join(&t);
  unlink(fifo);
  assert_int_equal(k.status, PP_ECLOSED);
  assert_non_null(strstr(k.diag.message, "closing"));
  pp_buf_free(&k.reply);
}

/* The same when the request never got through: the worker is stopped
 * (SIGSTOP) and the 4 MiB request fills its pipe; pp_pool_close kills it
 * past drain_timeout + kill_grace while the caller still writes. */
static void big_call_main(void *arg) {
  lcall_t *k = arg;
  size_t len = 4u << 20;
  char *p = malloc(len);

  assert_non_null(p);
  memset(p, ' ', len);
  p[0] = '1'; /* a JSON number, padded */
  k->status =
      pp_lease_call(k->lease, p, len, k->timeout_ms, &k->reply, &k->diag);
  free(p);
}

static void test_close_cuts_unsent_call_closed(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  fixture_t *f;
  uv_thread_t t;
  lcall_t k;

  (void)state;
  cfg_set(cfg, "worker.drain_timeout", "100ms");
  cfg_set(cfg, "worker.kill_grace", "200ms");
  cfg_set(cfg, "worker.max_frame", "8MiB");
  f = open_pool(cfg);
  memset(&k, 0, sizeof(k));
  k.timeout_ms = 0; /* no deadline: only the close ends the write */
  assert_int_equal(pp_lease_acquire(f->pool, NULL, -1, &k.lease, &f->diag), 0);
  assert_int_equal(kill(pp_lease_pid(k.lease), SIGSTOP), 0);
  assert_int_equal(uv_thread_create(&t, big_call_main, &k), 0);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_REQUEST, 1, 10000), 0);
  close_pool(f);
  uv_thread_join(&t);
  assert_int_equal(k.status, PP_ECLOSED);
  assert_non_null(strstr(k.diag.message, "closing"));
  pp_buf_free(&k.reply);
}

/* ---- pp_call's timeout_ms bounds the whole call */

/* The worker's pid, by a call. */
static int worker_pid(fixture_t *f) {
  pp_buf_t reply = {0};
  int pid;

  assert_int_equal(pp_call_cmd(f->pool, "pid", NULL, &reply, -1, &f->diag), 0);
  pid = atoi(reply.data);
  pp_buf_free(&reply);
  return pid;
}

/* A one-worker pool where pp_call (depth 1) runs `cmd` with `args` and a
 * 200 ms timeout_ms, which it runs past; on_client_death as given.  The
 * call gets PP_ETIMEDOUT; returns the fixture and the worker's pid before. */
static fixture_t *call_past_deadline(const char *death, const char *cmd,
                                     const char *args, int *pid) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pp_buf_t reply = {0};
  fixture_t *f;
  pp_diag_t d;

  cfg_set(cfg, "on_client_death", death);
  cfg_set(cfg, "worker.request_timeout", "5m");
  f = open_pool(cfg);
  *pid = worker_pid(f);
  assert_int_equal(pp_call_cmd(f->pool, cmd, args, &reply, 200, &d),
                   PP_ETIMEDOUT);
  assert_non_null(strstr(d.message, "timeout_ms"));
  pp_buf_free(&reply);
  return f;
}

/* The worker was kept: no restart, no exit, and the one error is the
 * call that ran past its deadline. */
static void assert_kept_one_error(fixture_t *f) {
  pp_status_t st;

  assert_int_equal(pp_pool_status(f->pool, &st), 0);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(st.errors, 1);
  assert_int_equal(st.stale_replies, 1);
  pp_status_free(&st);
  assert_int_equal(rec_count(&f->rec, PP_TRACE_EXIT), 0);
}

/* finish: the request runs on and its reply is dropped; the worker is
 * kept and serves the next call. */
static void test_call_deadline_finish(void **state) {
  char fifo[128], args[200];
  fixture_t *f;
  int pid;

  (void)state;
  fifo_make(fifo, sizeof(fifo), "call-deadline");
  snprintf(args, sizeof(args), "{\"fifo\":\"%s\"}", fifo);
  f = call_past_deadline("finish", "gate", args, &pid);
  fifo_release(fifo);
  unlink(fifo);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_STALE_REPLY, 1, 10000), 0);
  assert_int_equal(worker_pid(f), pid);
  assert_kept_one_error(f);
  close_pool(f);
}

/* cancel: the handler sees portpool_worker.cancelled() and returns; its
 * reply is dropped; the worker is kept. */
static void test_call_deadline_cancel(void **state) {
  fixture_t *f;
  int pid;

  (void)state;
  f = call_past_deadline("cancel", "cancelled_sleep", "60", &pid);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_STALE_REPLY, 1, 10000), 0);
  assert_int_equal(worker_pid(f), pid);
  assert_kept_one_error(f);
  close_pool(f);
}

/* kill: the worker is replaced at once. */
static void test_call_deadline_kill(void **state) {
  fixture_t *f;
  int pid;

  (void)state;
  f = call_past_deadline("kill", "sleep", "60", &pid);
  assert_int_equal(rec_wait(&f->rec, PP_TRACE_EXIT, 1, 10000), 0);
  assert_int_not_equal(worker_pid(f), pid);
  close_pool(f);
}

/* A reply that arrived before the caller looked at its deadline (it was
 * paused: SIGSTOP, a slow VM) is the answer, not a timeout, and the
 * worker is kept. */
static void test_reply_in_pipe_at_deadline(void **state) {
  fixture_t *f = open_pool(python_config("echo_handlers.py", 1));
  char fifo[128];
  late_t l;
  lcall_t k;

  (void)state;
  memset(&k, 0, sizeof(k));
  memset(&l, 0, sizeof(l));
  fifo_make(fifo, sizeof(fifo), "reply-at-deadline");
  l.point = "deadline";
  l.fifo = fifo;
  k.timeout_ms = 200;
  snprintf(k.payload, sizeof(k.payload),
           "{\"cmd\":\"gate\",\"args\":{\"fifo\":\"%s\"}}", fifo);
  assert_int_equal(pp_lease_acquire(f->pool, NULL, -1, &k.lease, &f->diag), 0);
  pp_test_fault_hook(f->pool, late_hook, &l);
  lcall_main(&k);
  pp_test_fault_hook(f->pool, NULL, NULL);
  unlink(fifo);
  assert_true(l.fired);
  assert_true(l.readable);
  assert_int_equal(k.status, 0);
  assert_string_equal(k.reply.data, "\"opened\"");
  pp_checkin(k.lease);
  assert_workers_kept(f->pool, &f->rec);
  pp_buf_free(&k.reply);
  close_pool(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_call_echo),
      cmocka_unit_test(test_spawn_all_before_hello),
      cmocka_unit_test(test_handler_exception),
      cmocka_unit_test(test_handler_diag),
      cmocka_unit_test(test_call_cmd_names),
      cmocka_unit_test(test_huge_timeouts_wait),
      cmocka_unit_test(test_crash_mid_request),
      cmocka_unit_test(test_killed_by_signal),
      cmocka_unit_test(test_print_keeps_protocol),
      cmocka_unit_test(test_lease_keeps_worker),
      cmocka_unit_test(test_checkout_timeout_busy),
      cmocka_unit_test(test_max_waiters),
      cmocka_unit_test(test_request_timeout),
      cmocka_unit_test(test_threads),
      cmocka_unit_test(test_handoff_writes_next),
      cmocka_unit_test(test_status_worker_dies_meanwhile),
      cmocka_unit_test(test_handoff_to_dead_worker),
      cmocka_unit_test(test_handoff_never_waits_on_worker),
      cmocka_unit_test(test_write_timeout_replaces_worker),
      cmocka_unit_test(test_pipelined_calls),
      cmocka_unit_test(test_reply_spin_adapt),
      cmocka_unit_test(test_reply_spin),
      cmocka_unit_test(test_reply_spin_pinned_beside),
      cmocka_unit_test(test_close_reopen),
      cmocka_unit_test(test_control_client_gone),
      cmocka_unit_test(test_close_cuts_call_closed),
      cmocka_unit_test(test_close_cuts_unsent_call_closed),
      cmocka_unit_test(test_call_deadline_finish),
      cmocka_unit_test(test_call_deadline_cancel),
      cmocka_unit_test(test_call_deadline_kill),
      cmocka_unit_test(test_reply_in_pipe_at_deadline),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
