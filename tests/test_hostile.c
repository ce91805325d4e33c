/* test_hostile.c -- workers, configs and clients that misbehave on purpose:
 * every kind of broken frame, hangs, crash loops, floods on stdout and
 * stderr, forks and subprocesses, SIGKILL of the server, malformed YAML and
 * hostile socket clients.  For each fault the pool survives, the affected
 * client gets a precise code, status says why, and a client on another
 * worker notices nothing.
 *
 * Hostile workers come from two fixtures: fixtures/bad_worker.py speaks the
 * framing itself and breaks it on demand (its per_request mode lets one
 * worker of a pool misbehave while the others serve; BAD_WORKER_ONLY aims a
 * start-up fault at one slot), and fixtures/hostile_handlers.py is a
 * handler module for portpool_worker.py whose handlers keep the framing but
 * flood, fork, spawn, ignore SIGTERM or grow.
 *
 * One executable, four groups, one ctest entry each (argv[1]):
 *   faults     hostile workers, timeouts, crash loops, floods, forks
 *   orphans    nothing survives the pool: SIGKILL of `poolctl serve`,
 *              crashed workers' subprocesses, graceful close
 *   configs    every malformed YAML fixture, hostile socket clients
 *   lifecycle  heartbeat, recycling, next_retry_ms and stderr_tail
 * Every wait is on a trace event, a reply, a line or a process exit, with a
 * timeout that only fires on failure. */
#include "cli.h"
#include "helpers.h"

#include "faults.h"
#include "internal.h" /* a worker's stderr fd, for a log hook */

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


/* Only a broken build waits this long (scaled for slow runs such as
 * valgrind's, PP_TEST_TIME_SCALE). */
#define WAIT_MS (30000 * test_time_scale())
/* The server's connection limit, CTL_CONN_MAX (pool/control.h). */
#define CTL_TEST_CONN_MAX 256

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int64_t now_ms(void) { return (int64_t)(now_ns() / 1000000); }

static int remaining(int64_t deadline) {
  int64_t left = deadline - now_ms();
  return left > 0 ? (int)left : 0;
}

/* ------------------------------------------------------------ processes */

/* 1 when pid is gone or a zombie (it has exited; its parent may not have
 * reaped it yet). */
static int pid_exited(int pid) {
  char path[64], buf[512], *p;
  ssize_t n;
  int fd;

  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 1;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return 1;
  buf[n] = '\0';
  p = strrchr(buf, ')');
  return p != NULL && (p[2] == 'Z' || p[2] == 'X');
}

/* Wait until pid has exited, up to timeout_ms; 0 or -1.  A pidfd is the
 * event (helpers.c's wait_pid_gone); where the kernel or valgrind (3.19
 * lacks pidfd_open) cannot give one, /proc is looked at every 5 ms: an
 * observation with a deadline, not a guess at a duration. */
static int gone_within(int pid, int timeout_ms) {
  int64_t deadline;
  int r;

  errno = 0;
  r = wait_pid_gone(pid, timeout_ms);
  if (r == 0 || errno != ENOSYS)
    return r;
  deadline = (int64_t)(now_ns() / 1000000) + timeout_ms;
  while (!pid_exited(pid)) {
    if ((int64_t)(now_ns() / 1000000) >= deadline)
      return -1;
    poll(NULL, 0, 5);
  }
  return 0;
}

/* ------------------------------------------------- trace and log record */

typedef struct hev {
  pp_trace_type_t type;
  int slot;
  uint32_t generation;
  int pid;
  int code;
  uint64_t ts_ns;
  char detail[128];
} hev_t;

#define MAX_SLOTS 8

/* What a pool told us: every trace event with its time, and its log lines
 * counted per worker and stream (never stored: a flood is 100 MB). */
typedef struct hpool {
  pp_pool_t *pool;
  uv_mutex_t mu;
  uv_cond_t cv;
  hev_t *ev;
  size_t n, cap;
  uint64_t out_x[MAX_SLOTS];     /* bytes of all-'x' stdout lines per slot */
  uint64_t err_x[MAX_SLOTS];     /* the same on stderr */
  size_t longest;                /* longest log line */
  int lingering_pid;             /* from "lingering child N" */
  char last_err[MAX_SLOTS][128]; /* the last stderr line of each slot */
  uint64_t news;                 /* events other than requests and leases */
  uint64_t lines;
  /* Called for each stderr line of a worker, after h_log (pool lock
   * held), when set. */
  void (*err_hook)(pp_pool_t *pool, int slot, void *data);
  void *err_hook_data;
} hpool_t;

static void h_trace(pp_pool_t *pool, const pp_trace_event_t *ev, void *data) {
  hpool_t *h = data;
  hev_t *e;

  (void)pool;
  if (getenv("PP_TEST_VERBOSE"))
    fprintf(stderr, "  trace: %s slot=%d gen=%u pid=%d code=%d %s\n",
            pp_trace_name(ev->type), ev->slot, ev->generation, ev->pid,
            ev->code, ev->detail ? ev->detail : "");
  uv_mutex_lock(&h->mu);
  if (h->n == h->cap) {
    h->cap = h->cap ? h->cap * 2 : 256;
    h->ev = realloc(h->ev, h->cap * sizeof(*h->ev));
    if (h->ev == NULL)
      abort(); /* not on the test's thread: no cmocka assert here */
  }
  e = &h->ev[h->n++];
  e->type = ev->type;
  e->slot = ev->slot;
  e->generation = ev->generation;
  e->pid = ev->pid;
  e->code = ev->code;
  e->ts_ns = ev->ts_ns ? ev->ts_ns : now_ns();
  snprintf(e->detail, sizeof(e->detail), "%s", ev->detail ? ev->detail : "");
  if (ev->type != PP_TRACE_REQUEST && ev->type != PP_TRACE_REPLY &&
      ev->type != PP_TRACE_CHECKOUT && ev->type != PP_TRACE_CHECKIN &&
      ev->type != PP_TRACE_CHECKOUT_WAIT)
    h->news++;
  uv_cond_broadcast(&h->cv);
  uv_mutex_unlock(&h->mu);
}

static int all_x(const char *s, size_t n) {
  size_t i;
  if (n == 0)
    return 0;
  for (i = 0; i < n; i++)
    if (s[i] != 'x')
      return 0;
  return 1;
}

/* Lines are "worker N: text" (stdout), "worker N [stderr]: text", or the
 * pool's own notices. */
static void h_log(pp_pool_t *pool, const char *line, void *data) {
  hpool_t *h = data;
  size_t len = strlen(line);
  const char *p, *msg;
  int slot, err = 0, child;
  void (*hook)(pp_pool_t *, int, void *);
  void *hook_data;

  if (getenv("PP_TEST_VERBOSE") && len < 300)
    fprintf(stderr, "  log: %s\n", line);
  uv_mutex_lock(&h->mu);
  h->lines++;
  if (len > h->longest)
    h->longest = len;
  if (sscanf(line, "worker %d", &slot) == 1 && slot >= 0 && slot < MAX_SLOTS) {
    p = line + 7;
    while (*p >= '0' && *p <= '9')
      p++;
    if (strncmp(p, " [stderr]: ", 11) == 0) {
      err = 1;
      msg = p + 11;
    } else if (strncmp(p, ": ", 2) == 0) {
      msg = p + 2;
    } else {
      msg = NULL;
    }
    if (msg && all_x(msg, strlen(msg))) {
      if (err)
        h->err_x[slot] += strlen(msg);
      else
        h->out_x[slot] += strlen(msg);
    }
    if (msg && sscanf(msg, "lingering child %d", &child) == 1)
      h->lingering_pid = child;
    if (msg && err)
      snprintf(h->last_err[slot], sizeof(h->last_err[slot]), "%s", msg);
  }
  hook = err ? h->err_hook : NULL;
  hook_data = h->err_hook_data;
  uv_cond_broadcast(&h->cv);
  uv_mutex_unlock(&h->mu);
  if (hook)
    hook(pool, slot, hook_data);
}

static int matches(const hev_t *e, pp_trace_type_t type, int slot) {
  return e->type == type && (slot < 0 || e->slot == slot);
}

static size_t count_locked(hpool_t *h, pp_trace_type_t type, int slot) {
  size_t i, c = 0;
  for (i = 0; i < h->n; i++)
    c += matches(&h->ev[i], type, slot);
  return c;
}

/* Events of type (for slot, or any slot when slot < 0) so far. */
static size_t h_count(hpool_t *h, pp_trace_type_t type, int slot) {
  size_t c;
  uv_mutex_lock(&h->mu);
  c = count_locked(h, type, slot);
  uv_mutex_unlock(&h->mu);
  return c;
}

/* Wait for at least count such events; fails the test after timeout_ms. */
static void h_wait(hpool_t *h, pp_trace_type_t type, int slot, size_t count,
                   int timeout_ms) {
  uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull, t;
  size_t got;

  uv_mutex_lock(&h->mu);
  while ((got = count_locked(h, type, slot)) < count) {
    t = now_ns();
    if (t >= deadline)
      break;
    uv_cond_timedwait(&h->cv, &h->mu, deadline - t);
  }
  uv_mutex_unlock(&h->mu);
  if (got < count)
    fail_msg("waited %d ms for %zu %s event(s) of slot %d; saw %zu", timeout_ms,
             count, pp_trace_name(type), slot, got);
}

/* Print every event so far: what a failure message cannot say. */
static void h_dump(hpool_t *h) {
  size_t i;

  uv_mutex_lock(&h->mu);
  for (i = 0; i < h->n; i++)
    fprintf(stderr, "  %8.3f ms %-14s slot=%d gen=%u pid=%d code=%d %s\n",
            (double)(h->ev[i].ts_ns - h->ev[0].ts_ns) / 1e6,
            pp_trace_name(h->ev[i].type), h->ev[i].slot, h->ev[i].generation,
            h->ev[i].pid, h->ev[i].code, h->ev[i].detail);
  uv_mutex_unlock(&h->mu);
}

/* Wait until slot's last stderr line is `text`. */
static void h_wait_stderr(hpool_t *h, int slot, const char *text,
                          int timeout_ms) {
  uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull, t;
  int ok;

  uv_mutex_lock(&h->mu);
  while (!(ok = strcmp(h->last_err[slot], text) == 0)) {
    t = now_ns();
    if (t >= deadline)
      break;
    uv_cond_timedwait(&h->cv, &h->mu, deadline - t);
  }
  uv_mutex_unlock(&h->mu);
  if (!ok)
    fail_msg("slot %d never wrote '%s' on stderr", slot, text);
}

/* The n-th (0-based) event of type for slot; fails the test if missing. */
static hev_t h_nth(hpool_t *h, pp_trace_type_t type, int slot, size_t n) {
  hev_t out;
  size_t i, seen = 0;
  int found = 0;

  memset(&out, 0, sizeof(out));
  uv_mutex_lock(&h->mu);
  for (i = 0; i < h->n && !found; i++)
    if (matches(&h->ev[i], type, slot) && seen++ == n) {
      out = h->ev[i];
      found = 1;
    }
  uv_mutex_unlock(&h->mu);
  if (!found)
    fail_msg("no %s event #%zu for slot %d", pp_trace_name(type), n, slot);
  return out;
}

static void h_init(hpool_t *h) {
  memset(h, 0, sizeof(*h));
  uv_mutex_init(&h->mu);
  uv_cond_init(&h->cv);
}

static void h_free(hpool_t *h) {
  free(h->ev);
  uv_cond_destroy(&h->cv);
  uv_mutex_destroy(&h->mu);
}

static pp_pool_options_t h_options(hpool_t *h) {
  pp_pool_options_t o;
  memset(&o, 0, sizeof(o));
  o.trace = h_trace;
  o.trace_data = h;
  o.log = h_log;
  o.log_data = h;
  return o;
}

/* Open a pool with the blocking face (the config is consumed). */
static hpool_t *h_open(pp_config_t *cfg) {
  hpool_t *h = malloc(sizeof(*h));
  pp_pool_options_t o;
  pp_diag_t d;
  int r;

  assert_non_null(h);
  h_init(h);
  o = h_options(h);
  memset(&d, 0, sizeof(d));
  r = pp_pool_open(cfg, &o, &h->pool, &d);
  pp_config_free(cfg);
  if (r != 0)
    fail_msg("pp_pool_open: %s: %s", pp_strerror(r), d.message);
  return h;
}

static void h_close(hpool_t *h) {
  pp_pool_close(h->pool);
  assert_int_equal(h_count(h, PP_TRACE_CLOSED, -1), 1);
  h_free(h);
  free(h);
}

static void h_status(hpool_t *h, pp_status_t *st) {
  assert_int_equal(pp_pool_status(h->pool, st), 0);
}

static int teardown(void **state);

/* ------------------------------------------------------------- configs */

/* A pool running fixtures/bad_worker.py MODE (see its docstring). */
static pp_config_t *bad_config(const char *mode, int size) {
  pp_config_t *cfg = bad_worker_config(mode, size);

  cfg_set(cfg, "name", "hostile");
  return cfg;
}

static pp_config_t *hostile_config(int size) {
  pp_config_t *cfg = python_config("hostile_handlers.py", size);
  cfg_set(cfg, "name", "hostile");
  return cfg;
}

/* ----------------------------------------------------------- bystanders */

/* A client on another worker that keeps calling echo while a fault
 * happens next door; it must notice nothing.  It runs on its own thread
 * and only records: the test asserts. */
typedef struct bystander {
  hpool_t *h;
  pp_lease_t *lease;
  uv_thread_t thread;
  atomic_int stop;
  int calls, failed, first_err;
  char first_diag[256];
} bystander_t;

static void bystander_main(void *arg) {
  bystander_t *b = arg;
  pp_buf_t reply = {0};
  char payload[64], want[32];
  uint64_t seen = 0, until;
  pp_diag_t d;
  int r, n;

  /* One call whenever the pool reports news (a kill, an exit, a spawn, a
   * HELLO...), and at least every 20 ms, so that its calls overlap every
   * step of the fault next door.  Not a tight loop: a bystander hammering
   * the machine would starve the replacement worker's start-up on a
   * loaded CI host. */
  while (!atomic_load(&b->stop) || b->calls < 5) {
    uv_mutex_lock(&b->h->mu);
    until = now_ns() + 20000000ull;
    while (b->h->news == seen && now_ns() < until && b->calls >= 5 &&
           !atomic_load(&b->stop))
      uv_cond_timedwait(&b->h->cv, &b->h->mu, 5000000ull);
    seen = b->h->news;
    uv_mutex_unlock(&b->h->mu);
    n = snprintf(payload, sizeof(payload), "{\"cmd\":\"echo\",\"args\":%d}",
                 b->calls);
    snprintf(want, sizeof(want), "%d", b->calls);
    memset(&d, 0, sizeof(d));
    r = pp_lease_call(b->lease, payload, (size_t)n, 10000, &reply, &d);
    b->calls++;
    if (r != 0 || strcmp(reply.data, want) != 0) {
      if (b->failed++ == 0) {
        b->first_err = r;
        snprintf(b->first_diag, sizeof(b->first_diag), "%.180s (reply %.60s)",
                 d.message, r == 0 ? reply.data : "-");
      }
    }
  }
  pp_buf_free(&reply);
}

/* The bystander of the test running: a failed test leaves it to the
 * teardown, which stops it before the next test reuses anything. */
static bystander_t *live_bystander;

static void bystander_start(bystander_t *b, hpool_t *h) {
  pp_diag_t d;

  memset(b, 0, sizeof(*b));
  b->h = h;
  atomic_init(&b->stop, 0);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &b->lease, &d), 0);
  assert_int_equal(uv_thread_create(&b->thread, bystander_main, b), 0);
  live_bystander = b;
}

/* Stop it, check it in, and assert that it saw nothing. */
static void bystander_stop(bystander_t *b) {
  uv_mutex_lock(&b->h->mu);
  atomic_store(&b->stop, 1);
  uv_cond_broadcast(&b->h->cv);
  uv_mutex_unlock(&b->h->mu);
  uv_thread_join(&b->thread);
}

static void bystander_end(bystander_t *b) {
  live_bystander = NULL;
  bystander_stop(b);
  pp_checkin(b->lease);
  if (b->failed)
    fail_msg("bystander: %d of %d calls failed; first %s: %s", b->failed,
             b->calls, pp_err_name(b->first_err), b->first_diag);
  assert_true(b->calls >= 5);
}

/* One call on a lease with a JSON payload built from cmd and args. */
static int lcall(pp_lease_t *lease, const char *cmd, const char *args,
                 int64_t timeout_ms, pp_buf_t *reply, pp_diag_t *d) {
  char payload[512];
  int n = snprintf(payload, sizeof(payload), "{\"cmd\":\"%s\",\"args\":%s}",
                   cmd, args ? args : "null");
  memset(d, 0, sizeof(*d));
  return pp_lease_call(lease, payload, (size_t)n, timeout_ms, reply, d);
}

/* After a fault: every slot serves again (one lease per slot at once). */
static void all_slots_serve(hpool_t *h, int size) {
  pp_lease_t *l[MAX_SLOTS];
  pp_buf_t reply = {0};
  pp_diag_t d;
  int i, r;

  for (i = 0; i < size; i++)
    assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &l[i], &d), 0);
  for (i = 0; i < size; i++) {
    r = lcall(l[i], "echo", "\"again\"", 10000, &reply, &d);
    if (r != 0)
      fail_msg("slot %d after the fault: %s: %s", pp_lease_slot(l[i]),
               pp_err_name(r), d.message);
    assert_string_equal(reply.data, "\"again\"");
  }
  for (i = 0; i < size; i++)
    pp_checkin(l[i]);
  pp_buf_free(&reply);
}

/* ======================================================= hostile frames */

/* One misbehaviour of fixtures/bad_worker.py per_request, asked for by the
 * victim's request while a bystander calls the other worker. */
typedef struct fault_case {
  const char *mode;
  int want;                 /* the victim's code */
  const char *reply;        /* its reply when want is 0 */
  pp_exit_kind_t exit_kind; /* the slot's last exit, classified */
  const char *exit_text;    /* in last_exit_text */
  int protocol;             /* a PROTOCOL_ERROR event is expected */
  const char *loop_why;     /* its detail on the event-loop face */
} fault_case_t;

static const fault_case_t fault_cases[] = {
    {"garbage", PP_EPROTO, NULL, PP_EXIT_PROTOCOL, "protocol error", 1,
     "malformed frame header"},
    {"oversize", PP_EPROTO, NULL, PP_EXIT_PROTOCOL, "protocol error", 1,
     "frame over max_frame"},
    {"unknown_type", PP_EPROTO, NULL, PP_EXIT_PROTOCOL, "protocol error", 1,
     "unknown frame type"},
    {"unknown_id", PP_EPROTO, NULL, PP_EXIT_PROTOCOL, "protocol error", 1,
     "reply to a request never sent"},
    /* The first reply answers the request; the second was never asked
     * for: the client keeps its reply, the worker is replaced. */
    {"dup_reply", 0, "\"first\"", PP_EXIT_PROTOCOL, "protocol error", 1,
     "bytes after the reply"},
    {"close_fd4", PP_EPROTO, NULL, PP_EXIT_PROTOCOL, "protocol error", 1,
     "worker closed its reply pipe"},
    {"exit_mid_frame", PP_ECRASHED, NULL, PP_EXIT_NORMAL, "exit 0", 0, NULL},
    {"hang", PP_ETIMEDOUT, NULL, PP_EXIT_TIMEOUT, "killed for timeout", 0,
     NULL},
};

/* What every fault leaves behind: the victim's slot replaced once with
 * its exit classified, the bystander's slot untouched, the pool ready. */
static void check_after_fault(hpool_t *h, const fault_case_t *fc, int slot,
                              int other, const char *why) {
  pp_status_t st;
  hev_t e;

  if (fc->protocol) {
    e = h_nth(h, PP_TRACE_PROTOCOL_ERROR, slot, 0);
    assert_int_equal(e.code, PP_EPROTO);
    assert_true(e.detail[0] != '\0');
    if (why && strstr(e.detail, why) == NULL)
      fail_msg("%s: protocol error detail '%s', want '%s'", fc->mode, e.detail,
               why);
  } else {
    assert_int_equal(h_count(h, PP_TRACE_PROTOCOL_ERROR, -1), 0);
  }
  if (fc->want == PP_ETIMEDOUT) {
    e = h_nth(h, PP_TRACE_KILL, slot, 0);
    assert_int_equal(e.code, SIGTERM);
  }
  h_status(h, &st);
  assert_int_equal(st.state, PP_POOL_READY);
  if (st.workers[slot].last_exit != fc->exit_kind ||
      strstr(st.workers[slot].last_exit_text, fc->exit_text) == NULL) {
    h_dump(h);
    fail_msg("%s: last exit '%s' (kind %d, generation %u), want '%s'", fc->mode,
             st.workers[slot].last_exit_text, (int)st.workers[slot].last_exit,
             st.workers[slot].generation, fc->exit_text);
  }
  assert_int_equal(st.workers[slot].generation, 2);
  assert_int_equal(st.workers[slot].restarts, 1);
  assert_int_equal(st.workers[other].generation, 1);
  assert_int_equal(st.workers[other].restarts, 0);
  assert_int_equal(st.workers[other].last_exit, PP_EXIT_NONE);
  assert_int_equal(st.restarts, 1);
  pp_status_free(&st);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, other), 0);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, -1), 1);
}

static void test_fault_blocking(void **state) {
  const fault_case_t *fc = *state;
  hpool_t *h = h_open(bad_config("per_request", 2));
  pp_buf_t reply = {0};
  pp_lease_t *victim;
  static bystander_t b; /* outlives a failure: see live_bystander */
  pp_diag_t d;
  int r, slot, other, pid;

  bystander_start(&b, h);
  other = pp_lease_slot(b.lease);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &victim, &d), 0);
  slot = pp_lease_slot(victim);
  pid = pp_lease_pid(victim);
  assert_int_not_equal(slot, other);
  r = lcall(victim, fc->mode, NULL, -1, &reply, &d);
  if (r != fc->want)
    fail_msg("%s: got %s (%s), want %s", fc->mode, pp_err_name(r), d.message,
             pp_err_name(fc->want));
  if (fc->reply)
    assert_string_equal(reply.data, fc->reply);
  else
    assert_true(d.message[0] != '\0'); /* the client is told why */
  if (fc->exit_kind == PP_EXIT_NORMAL)
    assert_non_null(strstr(d.message, fc->exit_text));
  pp_checkin(victim);
  h_wait(h, PP_TRACE_EXIT, slot, 1, WAIT_MS);
  h_wait(h, PP_TRACE_HELLO, slot, 2, WAIT_MS);
  bystander_end(&b);
  assert_int_equal(gone_within(pid, WAIT_MS), 0);
  check_after_fault(h, fc, slot, other, NULL);
  all_slots_serve(h, 2);
  pp_buf_free(&reply);
  h_close(h);
}

/* ---- the same faults on the event-loop face (the loop decodes) */

typedef struct lface lface_t;
typedef struct lslot {
  lface_t *f;
  pp_lease_t *lease;
  int co_done, co_status;
  int rp_done, rp_status;
  char reply[256];
  char diag[256];
} lslot_t;

struct lface {
  uv_loop_t loop;
  uv_timer_t guard;
  int timed_out;
  hpool_t h;
  int ready_calls, ready_status;
  int closed;
  lslot_t s[2];
};

static void lf_on_guard(uv_timer_t *t) { ((lface_t *)t->data)->timed_out = 1; }

static void lf_on_ready(pp_pool_t *pool, int status, void *data) {
  lface_t *f = data;
  (void)pool;
  f->ready_status = status;
  f->ready_calls++;
}

static void lf_on_closed(pp_pool_t *pool, void *data) {
  (void)pool;
  ((lface_t *)data)->closed = 1;
}

static void lf_on_checkout(pp_lease_t *lease, int status, const pp_diag_t *diag,
                           void *data) {
  lslot_t *s = data;
  (void)diag;
  s->lease = lease;
  s->co_status = status;
  s->co_done = 1;
}

static void lf_on_reply(pp_lease_t *lease, int status, const char *reply,
                        size_t len, const pp_diag_t *diag, void *data) {
  lslot_t *s = data;
  (void)lease;
  s->rp_status = status;
  snprintf(s->reply, sizeof(s->reply), "%.*s", (int)len, reply);
  snprintf(s->diag, sizeof(s->diag), "%.200s", diag ? diag->message : "");
  s->rp_done = 1;
}

/* Run the loop until pred(f) holds; the guard only fires on failure. */
static void lf_run(lface_t *f, int (*pred)(lface_t *), const char *what) {
  f->timed_out = 0;
  uv_timer_start(&f->guard, lf_on_guard, WAIT_MS, 0);
  while (!pred(f) && !f->timed_out)
    uv_run(&f->loop, UV_RUN_ONCE);
  uv_timer_stop(&f->guard);
  if (f->timed_out)
    fail_msg("loop face: waited %d ms for %s", WAIT_MS, what);
}

static int lf_ready(lface_t *f) { return f->ready_calls > 0; }
static int lf_both_out(lface_t *f) {
  return f->s[0].co_done && f->s[1].co_done;
}
static int lf_both_replied(lface_t *f) {
  return f->s[0].rp_done && f->s[1].rp_done;
}
static int lf_other_replied(lface_t *f) { return f->s[1].rp_done; }
static int lf_closed(lface_t *f) { return f->closed; }

static int lf_victim_slot;
static int lf_replaced(lface_t *f) {
  return h_count(&f->h, PP_TRACE_EXIT, lf_victim_slot) >= 1 &&
         h_count(&f->h, PP_TRACE_HELLO, lf_victim_slot) >= 2;
}

static void lf_start(lface_t *f, pp_config_t *cfg) {
  pp_pool_options_t o;
  pp_diag_t d;
  int r;

  memset(f, 0, sizeof(*f));
  h_init(&f->h);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  uv_timer_init(&f->loop, &f->guard);
  f->guard.data = f;
  o = h_options(&f->h);
  r = pp_pool_start(&f->loop, cfg, &o, lf_on_ready, f, &f->h.pool, &d);
  pp_config_free(cfg);
  if (r != 0)
    fail_msg("pp_pool_start: %s: %s", pp_strerror(r), d.message);
  lf_run(f, lf_ready, "ready");
  assert_int_equal(f->ready_status, 0);
}

static void lf_request(lslot_t *s, const char *payload) {
  s->rp_done = 0;
  assert_int_equal(
      pp_request(s->lease, payload, strlen(payload), -1, lf_on_reply, s), 0);
}

static void lf_stop(lface_t *f) {
  pp_pool_stop(f->h.pool, lf_on_closed, f);
  lf_run(f, lf_closed, "close");
  uv_close((uv_handle_t *)&f->guard, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  h_free(&f->h);
}

static void test_fault_loop(void **state) {
  const fault_case_t *fc = *state;
  char payload[128];
  lface_t *f = calloc(1, sizeof(*f));
  int i, slot, other;

  assert_non_null(f);
  lf_start(f, bad_config("per_request", 2));
  for (i = 0; i < 2; i++) {
    f->s[i].f = f;
    assert_int_equal(
        pp_checkout(f->h.pool, NULL, WAIT_MS, lf_on_checkout, &f->s[i]), 0);
  }
  lf_run(f, lf_both_out, "two checkouts");
  assert_int_equal(f->s[0].co_status, 0);
  assert_int_equal(f->s[1].co_status, 0);
  slot = pp_lease_slot(f->s[0].lease);
  other = pp_lease_slot(f->s[1].lease);
  /* The fault and an ordinary request, in flight together. */
  snprintf(payload, sizeof(payload), "{\"cmd\":\"%s\"}", fc->mode);
  lf_request(&f->s[0], payload);
  lf_request(&f->s[1], "{\"cmd\":\"echo\",\"args\":1}");
  lf_run(f, lf_both_replied, "both replies");
  if (f->s[0].rp_status != fc->want)
    fail_msg("%s: got %s (%s), want %s", fc->mode,
             pp_err_name(f->s[0].rp_status), f->s[0].diag,
             pp_err_name(fc->want));
  if (fc->reply)
    assert_string_equal(f->s[0].reply, fc->reply);
  else
    assert_true(f->s[0].diag[0] != '\0');
  assert_int_equal(f->s[1].rp_status, 0);
  assert_string_equal(f->s[1].reply, "1");
  pp_checkin(f->s[0].lease);
  lf_victim_slot = slot;
  lf_run(f, lf_replaced, "the victim's replacement");
  /* The bystander's lease still works. */
  lf_request(&f->s[1], "{\"cmd\":\"echo\",\"args\":2}");
  lf_run(f, lf_other_replied, "the bystander's second reply");
  assert_int_equal(f->s[1].rp_status, 0);
  assert_string_equal(f->s[1].reply, "2");
  pp_checkin(f->s[1].lease);
  check_after_fault(&f->h, fc, slot, other, fc->loop_why);
  lf_stop(f);
  free(f);
}

/* A stray reply arrives while the worker is idle (nobody reads an idle
 * worker's pipe, without a heartbeat): the next request on that worker
 * reads it first and fails with PP_EPROTO; the worker is replaced. */
static void test_stray_reply_next_request(void **state) {
  hpool_t *h = h_open(bad_config("per_request", 2));
  pp_buf_t reply = {0};
  pp_lease_t *lease;
  pp_status_t st;
  static bystander_t b; /* outlives a failure: see live_bystander */
  pp_diag_t d;
  int r, slot;

  (void)state;
  bystander_start(&b, h);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &lease, &d), 0);
  slot = pp_lease_slot(lease);
  assert_int_equal(lcall(lease, "stray_reply", NULL, -1, &reply, &d), 0);
  assert_string_equal(reply.data, "\"stray\"");
  r = lcall(lease, "echo", "5", -1, &reply, &d);
  assert_int_equal(r, PP_EPROTO);
  pp_checkin(lease);
  h_wait(h, PP_TRACE_HELLO, slot, 2, WAIT_MS);
  bystander_end(&b);
  h_status(h, &st);
  assert_int_equal(st.workers[slot].last_exit, PP_EXIT_PROTOCOL);
  pp_status_free(&st);
  all_slots_serve(h, 2);
  pp_buf_free(&reply);
  h_close(h);
}

/* ======================================================= start-up faults */

/* A fault at start aimed at slot 0 (BAD_WORKER_ONLY=0): slot 0 loops to
 * fatal after max_restarts, classified; slot 1 serves all along and the
 * pool never degrades. */
typedef struct start_case {
  const char *mode;
  const char *startup_timeout;
  pp_exit_kind_t exit_kind;
  const char *exit_text;
  pp_trace_type_t why_event; /* the event whose detail says why */
  const char *why;
} start_case_t;

static const start_case_t start_cases[] = {
    {"bad_version", "10s", PP_EXIT_PROTOCOL, "protocol error",
     PP_TRACE_PROTOCOL_ERROR, "unsupported protocol version"},
    {"no_hello", "1s", PP_EXIT_NO_HELLO, "no HELLO within startup_timeout",
     PP_TRACE_KILL, "no HELLO within startup_timeout"},
    {"hello_twice", "10s", PP_EXIT_PROTOCOL, "protocol error",
     PP_TRACE_PROTOCOL_ERROR, "bytes after HELLO"},
    /* Exit 0 before HELLO is a crash like any other. */
    {"exit_before_hello", "10s", PP_EXIT_NO_HELLO, "died before HELLO (exit 0)",
     PP_TRACE_EXIT, "died before HELLO"},
};

static pp_config_t *one_bad_slot(const char *mode, int size) {
  pp_config_t *cfg = bad_config(mode, size);
  cfg_set(cfg, "worker.env", "{BAD_WORKER_ONLY: '0'}");
  cfg_set(cfg, "min_ready", "1");
  cfg_set(cfg, "restart.max_restarts", "1");
  cfg_set(cfg, "restart.within", "1m");
  /* The bad slot may fail before the good one is ready: these cases are
   * about restarts, not about failing the start. */
  cfg_set(cfg, "restart.retry_boot_failures", "true");
  return cfg;
}

static void test_start_fault(void **state) {
  const start_case_t *sc = *state;
  pp_config_t *cfg = one_bad_slot(sc->mode, 2);
  hpool_t *h;
  pp_buf_t reply = {0};
  pp_status_t st;
  static bystander_t b; /* outlives a failure: see live_bystander */
  pp_diag_t d;
  hev_t e;

  /* Short only where the fault needs it: slot 1 must start in time too,
   * on a loaded machine. */
  cfg_set(cfg, "worker.startup_timeout", sc->startup_timeout);
  h = h_open(cfg);
  bystander_start(&b, h);
  assert_int_equal(pp_lease_slot(b.lease), 1);
  h_wait(h, PP_TRACE_FATAL, 0, 1, WAIT_MS);
  bystander_end(&b);
  assert_int_equal(h_count(h, PP_TRACE_SPAWN, 0), 2);
  assert_int_equal(h_count(h, PP_TRACE_SPAWN, 1), 1);
  assert_int_equal(h_count(h, PP_TRACE_DEGRADED, -1), 0);
  e = h_nth(h, sc->why_event, 0, 0);
  if (strstr(e.detail, sc->why) == NULL)
    fail_msg("%s: %s detail '%s', want '%s'", sc->mode,
             pp_trace_name(sc->why_event), e.detail, sc->why);
  h_status(h, &st);
  assert_int_equal(st.state, PP_POOL_READY);
  assert_int_equal(st.workers[0].state, PP_WORKER_FATAL);
  assert_int_equal(st.workers[0].last_exit, sc->exit_kind);
  if (strstr(st.workers[0].last_exit_text, sc->exit_text) == NULL)
    fail_msg("%s: last exit '%s', want '%s'", sc->mode,
             st.workers[0].last_exit_text, sc->exit_text);
  assert_int_equal(st.workers[1].generation, 1);
  assert_int_equal(st.fatal, 1);
  pp_status_free(&st);
  assert_int_equal(pp_call_cmd(h->pool, "echo", "3", &reply, 5000, &d), 0);
  assert_string_equal(reply.data, "3");
  pp_buf_free(&reply);
  h_close(h);
}

/* max_frame both ways with a well-behaved worker: a request over it fails
 * at once with PP_ETOOBIG and is never sent; a reply over it is replaced
 * by the worker with an ERROR (FrameTooBig), and the worker lives on. */
static void test_max_frame_both_ways(void **state) {
  pp_config_t *cfg = hostile_config(1);
  pp_buf_t reply = {0};
  char big[2100];
  pp_diag_t d;
  hpool_t *h;

  (void)state;
  cfg_set(cfg, "worker.max_frame", "1KiB");
  h = h_open(cfg);
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(pp_call(h->pool, big, strlen(big), &reply, -1, &d),
                   PP_ETOOBIG);
  /* A reply of 2000 characters, over 1 KiB. */
  assert_int_equal(pp_call_cmd(h->pool, "big", "2000", &reply, -1, &d),
                   PP_EHANDLER);
  assert_non_null(strstr(reply.data, "FrameTooBig"));
  assert_int_equal(pp_call_cmd(h->pool, "echo", "1", &reply, -1, &d), 0);
  assert_string_equal(reply.data, "1");
  assert_int_equal(h_count(h, PP_TRACE_EXIT, -1), 0);
  assert_int_equal(h_count(h, PP_TRACE_PROTOCOL_ERROR, -1), 0);
  pp_buf_free(&reply);
  h_close(h);
}

/* hostile_handlers.py imports getoutput from subprocess: a public callable
 * in its namespace, but not a handler.  A call for it, from the library or
 * the control socket, is an UnknownCommand and runs nothing; HELLO (and so
 * status) lists only the module's own functions. */
static void test_undeclared_handler(void **state) {
  char dir[] = "/tmp/pp_undeclared_XXXXXX", marker[64], args[128];
  static const char *names[] = {"getoutput", "subprocess", "Popen", "os"};
  pp_buf_t reply = {0};
  pp_status_t st;
  json_t *j, *list;
  pp_diag_t d;
  hpool_t *h;
  size_t i;

  (void)state;
  assert_non_null(mkdtemp(dir));
  snprintf(marker, sizeof(marker), "%s/ran", dir);
  snprintf(args, sizeof(args), "\"touch %s\"", marker);
  h = h_open(hostile_config(1));
  for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    memset(&d, 0, sizeof(d));
    assert_int_equal(pp_call_cmd(h->pool, names[i], args, &reply, -1, &d),
                     PP_EHANDLER);
    assert_true(strncmp(d.message, "UnknownCommand: unknown command", 31) == 0);
    j = json_loads(reply.data, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")),
                        "UnknownCommand");
    list = json_object_get(j, "handlers");
    assert_true(json_array_size(list) > 5);
    json_decref(j);
    assert_null(strstr(reply.data, "\"getoutput\""));
  }
  assert_int_equal(access(marker, F_OK), -1); /* the shell never ran */
  assert_int_equal(pp_pool_status(h->pool, &st), 0);
  assert_non_null(st.handlers);
  assert_non_null(strstr(st.handlers, "\"spawn_child\""));
  assert_null(strstr(st.handlers, "getoutput"));
  pp_status_free(&st);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, -1), 0);
  pp_buf_free(&reply);
  h_close(h);
  rmdir(dir);
}

/* Every reply a worker builds fits worker.max_frame and is JSON: an
 * exception message far over max_frame comes back as a truncated ERROR
 * (PP_EHANDLER, its type kept, the worker alive), a result over it as
 * FrameTooBig naming the size, and a result with a lone surrogate as a
 * ValueError instead of text that is not JSON. */
static void test_replies_fit(void **state) {
  pp_config_t *cfg = hostile_config(1);
  static const char *sizes[] = {"600", "2000", "100000"};
  pp_buf_t reply = {0};
  json_t *j;
  pp_diag_t d;
  hpool_t *h;
  size_t i;

  (void)state;
  cfg_set(cfg, "worker.max_frame", "1KiB");
  h = h_open(cfg);
  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    memset(&d, 0, sizeof(d));
    assert_int_equal(
        pp_call_cmd(h->pool, "raise_long", sizes[i], &reply, -1, &d),
        PP_EHANDLER);
    assert_true(reply.len <= 1024);
    j = json_loads(reply.data, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")),
                        "ValueError");
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    assert_true(strncmp(d.message, "ValueError: mmmm", 16) == 0);
  }
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_call_cmd(h->pool, "big", "5000", &reply, -1, &d),
                   PP_EHANDLER);
  assert_string_equal(d.message, "FrameTooBig: result of 5002 bytes exceeds "
                                 "worker.max_frame (1024 bytes)");
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_call_cmd(h->pool, "surrogate", NULL, &reply, -1, &d),
                   PP_EHANDLER);
  assert_true(strncmp(d.message,
                      "ValueError: result holds a lone surrogate (\\ud800)",
                      49) == 0);
  j = json_loads(reply.data, 0, NULL);
  assert_non_null(j);
  json_decref(j);
  assert_int_equal(pp_call_cmd(h->pool, "echo", "1", &reply, -1, &d), 0);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, -1), 0);
  assert_int_equal(h_count(h, PP_TRACE_PROTOCOL_ERROR, -1), 0);
  pp_buf_free(&reply);
  h_close(h);
}

/* Every slot fails at start: pp_pool_open gives up with PP_EDEGRADED as
 * soon as the last slot turns fatal, not after its timeouts. */
static void test_open_degraded(void **state) {
  pp_config_t *cfg = bad_config("bad_version", 2);
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  uint64_t t0;
  pp_diag_t d;
  hpool_t h;
  int r;

  (void)state;
  cfg_set(cfg, "restart.max_restarts", "1");
  cfg_set(cfg, "worker.startup_timeout", "20s");
  cfg_set(cfg, "checkout.timeout", "20s");
  h_init(&h);
  o = h_options(&h);
  t0 = now_ns();
  r = pp_pool_open(cfg, &o, &pool, &d);
  pp_config_free(cfg);
  assert_int_equal(r, PP_EDEGRADED);
  assert_null(pool);
  assert_true(now_ns() - t0 < 10000000000ull);
  assert_non_null(strstr(d.message, "degraded"));
  assert_int_equal(h_count(&h, PP_TRACE_FATAL, -1), 2);
  assert_int_equal(h_count(&h, PP_TRACE_SPAWN, -1), 4);
  h_free(&h);
}

/* A degraded pool fails checkouts at once, with the reason, whatever the
 * checkout timeout. */
static void test_degraded_fails_at_once(void **state) {
  pp_config_t *cfg = python_config("echo_handlers.py", 1);
  pp_buf_t reply = {0};
  pp_lease_t *lease;
  pp_status_t st;
  uint64_t t0;
  pp_diag_t d;
  hpool_t *h;
  char *json;

  (void)state;
  cfg_set(cfg, "restart.max_restarts", "0");
  cfg_set(cfg, "checkout.timeout", "20s");
  h = h_open(cfg);
  assert_int_equal(pp_call_cmd(h->pool, "crash", "3", &reply, -1, &d),
                   PP_ECRASHED);
  h_wait(h, PP_TRACE_DEGRADED, -1, 1, WAIT_MS);
  t0 = now_ns();
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_call_cmd(h->pool, "echo", "1", &reply, -1, &d),
                   PP_EDEGRADED);
  assert_non_null(strstr(d.message, "degraded"));
  memset(&d, 0, sizeof(d));
  assert_int_equal(pp_lease_acquire(h->pool, NULL, 20000, &lease, &d),
                   PP_EDEGRADED);
  assert_null(lease);
  assert_non_null(strstr(d.message, "degraded"));
  assert_true(now_ns() - t0 < 1000000000ull);
  h_status(h, &st);
  assert_int_equal(st.state, PP_POOL_DEGRADED);
  assert_int_equal(st.fatal, 1);
  assert_int_equal(st.workers[0].state, PP_WORKER_FATAL);
  assert_string_equal(st.workers[0].last_exit_text, "exit 3");
  json = pp_status_to_json(&st);
  assert_non_null(json);
  assert_non_null(strstr(json, "\"state\":\"degraded\""));
  free(json);
  pp_status_free(&st);
  pp_buf_free(&reply);
  h_close(h);
}

/* Crash loops back off per slot: the delay doubles from backoff[0] with
 * each crash within `within`, with jitter (±25%), and the restart really
 * waits that long; the other slot is untouched. */
static void test_backoff_per_slot(void **state) {
  pp_config_t *cfg = one_bad_slot("exit_before_hello", 2);
  static const int nominal[] = {50, 100, 200, 400};
  pp_status_t st;
  static bystander_t b; /* outlives a failure: see live_bystander */
  hev_t restart, spawn;
  hpool_t *h;
  int i;

  (void)state;
  cfg_set(cfg, "restart.backoff", "[50ms, 1s]");
  cfg_set(cfg, "restart.max_restarts", "4");
  h = h_open(cfg);
  bystander_start(&b, h);
  h_wait(h, PP_TRACE_FATAL, 0, 1, WAIT_MS);
  bystander_end(&b);
  assert_int_equal(h_count(h, PP_TRACE_RESTART, 0), 4);
  assert_int_equal(h_count(h, PP_TRACE_SPAWN, 0), 5);
  for (i = 0; i < 4; i++) {
    restart = h_nth(h, PP_TRACE_RESTART, 0, (size_t)i);
    spawn = h_nth(h, PP_TRACE_SPAWN, 0, (size_t)i + 1);
    if (restart.code < nominal[i] * 3 / 4 || restart.code > nominal[i] * 5 / 4)
      fail_msg("restart %d: delay %d ms, want %d ms ± 25%%", i + 1,
               restart.code, nominal[i]);
    /* The restart waited about that long (libuv's timers count from the
     * loop's cached time, which may be a little older than the event). */
    if (spawn.ts_ns - restart.ts_ns + 10000000ull <
        (uint64_t)restart.code * 900000ull)
      fail_msg("restart %d came %llu ms after a delay of %d ms", i + 1,
               (unsigned long long)((spawn.ts_ns - restart.ts_ns) / 1000000),
               restart.code);
  }
  assert_int_equal(h_count(h, PP_TRACE_RESTART, 1), 0);
  h_status(h, &st);
  assert_int_equal(st.workers[0].restarts, 4);
  assert_int_equal(st.workers[1].restarts, 0);
  pp_status_free(&st);
  h_close(h);
}

/* Crashes further apart than restart.within never add up to fatal. */
static void test_restart_window(void **state) {
  pp_config_t *cfg = one_bad_slot("exit_before_hello", 2);
  hpool_t *h;

  (void)state;
  cfg_set(cfg, "restart.within", "100ms");
  cfg_set(cfg, "restart.backoff", "[400ms, 400ms]");
  h = h_open(cfg);
  h_wait(h, PP_TRACE_SPAWN, 0, 4, WAIT_MS);
  assert_int_equal(h_count(h, PP_TRACE_FATAL, -1), 0);
  h_close(h);
}

/* ============================================================== timeouts */

/* A handler that ignores SIGTERM, past request_timeout: SIGTERM to its
 * group, then SIGKILL once kill_grace has passed. */
static void test_timeout_sigkill_step(void **state) {
  pp_config_t *cfg = hostile_config(2);
  pp_buf_t reply = {0};
  pp_lease_t *victim;
  pp_status_t st;
  static bystander_t b; /* outlives a failure: see live_bystander */
  hev_t term, kill9;
  pp_diag_t d;
  hpool_t *h;
  int slot;

  (void)state;
  cfg_set(cfg, "worker.request_timeout", "300ms");
  cfg_set(cfg, "worker.kill_grace", "400ms");
  h = h_open(cfg);
  bystander_start(&b, h);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &victim, &d), 0);
  slot = pp_lease_slot(victim);
  assert_int_equal(lcall(victim, "stubborn", "30", -1, &reply, &d),
                   PP_ETIMEDOUT);
  assert_non_null(strstr(d.message, "timed out"));
  pp_checkin(victim);
  h_wait(h, PP_TRACE_EXIT, slot, 1, WAIT_MS);
  h_wait(h, PP_TRACE_HELLO, slot, 2, WAIT_MS);
  bystander_end(&b);
  term = h_nth(h, PP_TRACE_KILL, slot, 0);
  kill9 = h_nth(h, PP_TRACE_KILL, slot, 1);
  assert_int_equal(term.code, SIGTERM);
  assert_int_equal(kill9.code, SIGKILL);
  assert_non_null(strstr(kill9.detail, "kill_grace"));
  assert_true(kill9.ts_ns - term.ts_ns >= 350000000ull); /* ~kill_grace */
  h_status(h, &st);
  assert_int_equal(st.workers[slot].last_exit, PP_EXIT_TIMEOUT);
  assert_string_equal(st.workers[slot].last_exit_text, "killed for timeout");
  assert_int_equal(st.workers[slot].last_exit_signal, SIGKILL);
  pp_status_free(&st);
  all_slots_serve(h, 2);
  pp_buf_free(&reply);
  h_close(h);
}

/* The call's own deadline, shorter than request_timeout: PP_ETIMEDOUT at
 * the deadline.  The worker's SIGTERM handler ends it at once (no need
 * for the SIGKILL step: one KILL event, the exit well before
 * kill_grace). */
static void test_timeout_call_deadline(void **state) {
  pp_config_t *cfg = hostile_config(2);
  pp_buf_t reply = {0};
  pp_lease_t *victim;
  pp_status_t st;
  uint64_t t0;
  pp_diag_t d;
  hpool_t *h;
  hev_t term, ex;
  int slot;

  (void)state;
  cfg_set(cfg, "worker.request_timeout", "1m");
  cfg_set(cfg, "worker.kill_grace", "20s");
  h = h_open(cfg);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &victim, &d), 0);
  slot = pp_lease_slot(victim);
  t0 = now_ns();
  assert_int_equal(lcall(victim, "sleep", "30", 200, &reply, &d), PP_ETIMEDOUT);
  assert_true(now_ns() - t0 >= 200000000ull);
  assert_true(now_ns() - t0 < 5000000000ull);
  pp_checkin(victim);
  h_wait(h, PP_TRACE_EXIT, slot, 1, WAIT_MS);
  term = h_nth(h, PP_TRACE_KILL, slot, 0);
  ex = h_nth(h, PP_TRACE_EXIT, slot, 0);
  assert_int_equal(term.code, SIGTERM);
  assert_int_equal(h_count(h, PP_TRACE_KILL, slot), 1);
  assert_true(ex.ts_ns - term.ts_ns < 10000000000ull);
  h_status(h, &st);
  assert_int_equal(st.workers[slot].last_exit, PP_EXIT_TIMEOUT);
  pp_status_free(&st);
  pp_buf_free(&reply);
  h_close(h);
}

/* ====================================================== floods and forks */

static long statm_rss_kb(void) {
  unsigned long size = 0, res = 0;
  FILE *f = fopen("/proc/self/statm", "r");

  if (f == NULL)
    return -1;
  if (fscanf(f, "%lu %lu", &size, &res) != 2)
    res = 0;
  fclose(f);
  return (long)(res * (unsigned long)sysconf(_SC_PAGESIZE) / 1024);
}

/* The peak RSS since the last peak_reset(), or the current RSS where the
 * kernel cannot reset the peak. */
static int peak_resettable;

static void peak_reset(void) {
  int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  peak_resettable = fd >= 0 && write(fd, "5", 1) == 1;
  if (fd >= 0)
    close(fd);
}

static long peak_rss_kb(void) {
  char line[256];
  long kb = -1;
  FILE *f;

  if (!peak_resettable)
    return statm_rss_kb();
  f = fopen("/proc/self/status", "r");
  if (f == NULL)
    return statm_rss_kb();
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

static uint64_t flood_bytes(void) {
  return (uint64_t)env_int("HOSTILE_FLOOD_MB", 100) << 20;
}

/* 100 MB on stdout or stderr with no newline: the pool drains the pipe,
 * logs it in bounded pieces, its memory stays bounded, the worker answers
 * afterwards and the bystander notices nothing.  Every byte reaches the
 * log. */
static void test_flood(void **state) {
  const char *stream = *state;
  int is_err = strcmp(stream, "stderr") == 0;
  hpool_t *h = h_open(hostile_config(2));
  uint64_t total = flood_bytes(), got;
  pp_buf_t reply = {0};
  pp_lease_t *victim;
  char args[128], want[32];
  long base_kb, peak_kb;
  static bystander_t b; /* outlives a failure: see live_bystander */
  pp_diag_t d;
  int slot;

  bystander_start(&b, h);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &victim, &d), 0);
  slot = pp_lease_slot(victim);
  base_kb = statm_rss_kb();
  peak_reset();
  snprintf(args, sizeof(args), "{\"stream\":\"%s\",\"bytes\":%llu}", stream,
           (unsigned long long)total);
  assert_int_equal(lcall(victim, "flood", args, 120000, &reply, &d), 0);
  snprintf(want, sizeof(want), "%llu", (unsigned long long)total);
  assert_string_equal(reply.data, want);
  assert_int_equal(lcall(victim, "echo", "\"still here\"", 10000, &reply, &d),
                   0);
  assert_string_equal(reply.data, "\"still here\"");
  peak_kb = peak_rss_kb();
  if (peak_kb - base_kb > 64 * 1024)
    fail_msg("RSS grew by %ld KiB during the flood (from %ld KiB)",
             peak_kb - base_kb, base_kb);
  pp_checkin(victim);
  bystander_end(&b);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, -1), 0);
  pp_pool_close(h->pool);
  /* After the close every line has been logged: nothing was lost. */
  got = is_err ? h->err_x[slot] : h->out_x[slot];
  if (got != total)
    fail_msg("%s: %llu of %llu bytes reached the log", stream,
             (unsigned long long)got, (unsigned long long)total);
  assert_true(h->longest <= 4096 + 64);
  h_free(h);
  free(h);
  pp_buf_free(&reply);
}

/* Kill a leftover process of a failed test, then assert it had gone. */
static void assert_gone(int pid, int timeout_ms, const char *what) {
  int r = gone_within(pid, timeout_ms);
  if (r != 0) {
    kill(pid, SIGKILL);
    fail_msg("%s (pid %d) still alive after %d ms", what, pid, timeout_ms);
  }
}

/* A handler forks and the worker exits; the child lingers holding every
 * pipe, and has disarmed its parent-death signal.  The client gets
 * PP_ECRASHED naming the exit, the slot restarts, the bystander sees
 * nothing, the close is not held up by the pipes the child holds, and the
 * child does not outlive the pool. */
static void test_fork_exit(void **state) {
  pp_config_t *cfg = hostile_config(2);
  hpool_t *h;
  pp_buf_t reply = {0};
  pp_lease_t *victim;
  pp_status_t st;
  static bystander_t b; /* outlives a failure: see live_bystander */
  pp_diag_t d;
  uint64_t t0;
  int slot, child;

  (void)state;
  /* Bounds the call if the exit went unnoticed (a failure). */
  cfg_set(cfg, "worker.request_timeout", "5s");
  h = h_open(cfg);
  bystander_start(&b, h);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &victim, &d), 0);
  slot = pp_lease_slot(victim);
  assert_int_equal(lcall(victim, "fork_exit", "{\"code\":7,\"defeat\":true}",
                         -1, &reply, &d),
                   PP_ECRASHED);
  assert_non_null(strstr(d.message, "exit 7"));
  pp_checkin(victim);
  h_wait(h, PP_TRACE_HELLO, slot, 2, WAIT_MS);
  bystander_end(&b);
  h_status(h, &st);
  assert_int_equal(st.workers[slot].last_exit, PP_EXIT_NORMAL);
  assert_int_equal(st.workers[slot].last_exit_code, 7);
  pp_status_free(&st);
  all_slots_serve(h, 2);
  uv_mutex_lock(&h->mu);
  child = h->lingering_pid;
  uv_mutex_unlock(&h->mu);
  assert_true(child > 0);
  t0 = now_ns();
  h_close(h);
  pp_buf_free(&reply);
  assert_true(now_ns() - t0 < 5000000000ull);
  assert_gone(child, 2000, "the forked child of an exited worker");
}

/* The same child, escaped into a session of its own (out of reach of
 * the group kill, so it keeps the reply pipe open after the exit): the
 * caller still learns of the exit at once from the process, not at the
 * request timeout. */
static void test_fork_exit_escaped(void **state) {
  pp_config_t *cfg = hostile_config(1);
  pp_buf_t reply = {0};
  uint64_t t0;
  pp_diag_t d;
  hpool_t *h;
  int r, child;

  (void)state;
  cfg_set(cfg, "worker.request_timeout", "5s");
  h = h_open(cfg);
  t0 = now_ns();
  r = pp_call_cmd(h->pool, "fork_exit",
                  "{\"code\":7,\"defeat\":true,\"setsid\":true}", &reply, -1,
                  &d);
  uv_mutex_lock(&h->mu);
  child = h->lingering_pid;
  uv_mutex_unlock(&h->mu);
  if (child > 0)
    kill(child, SIGKILL); /* nobody else will */
  if (r != PP_ECRASHED)
    fail_msg("got %s (%s) after %llu ms, want PP_ECRASHED", pp_err_name(r),
             d.message, (unsigned long long)((now_ns() - t0) / 1000000));
  assert_non_null(strstr(d.message, "exit 7"));
  assert_true(now_ns() - t0 < 4000000000ull);
  pp_buf_free(&reply);
  h_close(h);
}

/* An ordinary forked child (it keeps the parent-death signal that
 * portpool_worker gives children forked by handlers) dies with its
 * worker. */
static void test_fork_child_dies_with_worker(void **state) {
  hpool_t *h = h_open(hostile_config(1));
  pp_buf_t reply = {0};
  pp_diag_t d;
  int child;

  (void)state;
  assert_int_equal(
      pp_call_cmd(h->pool, "fork_exit", "{\"code\":7}", &reply, -1, &d),
      PP_ECRASHED);
  uv_mutex_lock(&h->mu);
  child = h->lingering_pid;
  uv_mutex_unlock(&h->mu);
  assert_true(child > 0);
  assert_gone(child, 2000, "the forked child of an exited worker");
  h_wait(h, PP_TRACE_HELLO, 0, 2, WAIT_MS);
  pp_buf_free(&reply);
  h_close(h);
}

/* ================================================================ orphans */

static int wait_exit(pid_t pid) {
  int st;

  while (waitpid(pid, &st, 0) < 0)
    assert_int_equal(errno, EINTR);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

/* A `poolctl serve` child on a socket in a fresh directory. */
typedef struct serve {
  pid_t pid;
  int out;
  char dir[64];
  char sock[96];
  char lines[8192];
  size_t n;
} serve_t;

/* The server of the test running, killed by the teardown if the test
 * fails before it could stop it. */
static serve_t *live_serve;

static void serve_start_sets(serve_t *s, const char *handlers,
                             const char *const *sets) {
  const char *py = getenv("PP_PYTHON"), *worker = getenv("PP_WORKER_PY");
  char *h = fixture_path(handlers), cmd[2048];
  static char start[64];
  char *argv[24];
  int n = 0;

  memset(s, 0, sizeof(*s));
  snprintf(s->dir, sizeof(s->dir), "/tmp/pp-hostile-XXXXXX");
  assert_non_null(mkdtemp(s->dir));
  snprintf(s->sock, sizeof(s->sock), "%s/pool.sock", s->dir);
  snprintf(cmd, sizeof(cmd), "worker.command=[%s, %s, %s]", py, worker, h);
  free(h);
  argv[n++] = (char *)cli_poolctl_path();
  argv[n++] = "serve";
  argv[n++] = "-S";
  argv[n++] = s->sock;
  argv[n++] = "--set";
  argv[n++] = "size=2";
  argv[n++] = "--set";
  argv[n++] = cmd;
  for (; sets && *sets; sets++) {
    assert_true(n < 18);
    argv[n++] = "--set";
    argv[n++] = (char *)*sets;
  }
  if (getenv("PP_START") && *getenv("PP_START")) {
    snprintf(start, sizeof(start), "worker.start=%s", getenv("PP_START"));
    argv[n++] = "--set";
    argv[n++] = start;
  }
  argv[n] = NULL;
  s->pid = cli_spawn(argv, &s->out, NULL);
  live_serve = s;
}

static void serve_start(serve_t *s, const char *handlers, const char *set1,
                        const char *set2) {
  const char *sets[3] = {set1, set1 ? set2 : NULL, NULL};

  serve_start_sets(s, handlers, sets);
}

/* Read the server's stdout until a line starting with prefix. */
static void serve_wait_line(serve_t *s, const char *prefix) {
  int64_t deadline = now_ms() + WAIT_MS;
  const char *line, *nl;
  struct pollfd p;
  ssize_t got;
  int r;

  for (;;) {
    for (line = s->lines; (nl = strchr(line, '\n')) != NULL; line = nl + 1)
      if (strncmp(line, prefix, strlen(prefix)) == 0)
        return;
    assert_true(s->n + 1 < sizeof(s->lines));
    p.fd = s->out;
    p.events = POLLIN;
    r = poll(&p, 1, remaining(deadline));
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0)
      fail_msg("serve did not print '%s'; it printed:\n%s", prefix, s->lines);
    got = read(s->out, s->lines + s->n, sizeof(s->lines) - s->n - 1);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      fail_msg("serve closed stdout before '%s':\n%s", prefix, s->lines);
    s->n += (size_t)got;
    s->lines[s->n] = '\0';
  }
}

static void serve_cleanup(serve_t *s) {
  live_serve = NULL;
  if (s->pid > 0) {
    kill(s->pid, SIGKILL);
    wait_exit(s->pid);
    s->pid = 0;
  }
  close(s->out);
  unlink(s->sock);
  rmdir(s->dir);
}

/* Stop the server as an operator does (SIGTERM): it must exit 0. */
static void serve_stop(serve_t *s) {
  assert_int_equal(kill(s->pid, SIGTERM), 0);
  assert_int_equal(wait_exit(s->pid), 0);
  s->pid = 0;
  serve_cleanup(s);
}

/* After every test: what a failed test left running is stopped (its pool
 * is left open: a failure leaks, it must not crash the next test). */
static int teardown(void **state) {
  (void)state;
  if (live_bystander) {
    bystander_stop(live_bystander);
    live_bystander = NULL;
  }
  if (live_serve)
    serve_cleanup(live_serve);
  return 0;
}

/* ---- a raw control-socket client (docs/protocol.md) */

/* Send bytes; returns 0, or -1 once the server hung up. */
static int conn_send_n(cli_conn_t *c, const char *s, size_t n) {
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

static void conn_send(cli_conn_t *c, const char *s) {
  assert_int_equal(conn_send_n(c, s, strlen(s)), 0);
}

/* One reply line, parsed; NULL at EOF or a reset. */
static json_t *conn_recv(cli_conn_t *c) {
  int64_t deadline = now_ms() + WAIT_MS;
  struct pollfd p;
  json_t *v;
  char *nl;
  ssize_t got;
  size_t n;
  int r;

  for (;;) {
    nl = memchr(c->buf, '\n', c->len);
    if (nl) {
      n = (size_t)(nl - c->buf);
      v = json_loadb(c->buf, n, 0, NULL);
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
    if (got <= 0)
      return NULL;
    c->len += (size_t)got;
  }
}

/* A call on c; returns the reply value's integer (the handlers used here
 * return pids). */
static json_int_t conn_call_int(cli_conn_t *c, const char *cmd, const char *args) {
  char line[256];
  json_t *v;
  json_int_t n;

  snprintf(line, sizeof(line),
           "{\"op\":\"call\",\"payload\":{\"cmd\":\"%s\",\"args\":%s}}\n", cmd,
           args);
  conn_send(c, line);
  v = conn_recv(c);
  assert_non_null(v);
  if (!json_is_true(json_object_get(v, "ok")))
    fail_msg("call %s failed: %s", cmd,
             json_string_value(json_object_get(v, "message")));
  n = json_integer_value(json_object_get(v, "reply"));
  json_decref(v);
  assert_true(n > 0);
  return n;
}

/* The status object (owned). */
static json_t *conn_status(cli_conn_t *c) {
  json_t *v, *st;

  conn_send(c, "{\"op\":\"status\"}\n");
  v = conn_recv(c);
  assert_non_null(v);
  assert_true(json_is_true(json_object_get(v, "ok")));
  st = json_incref(json_object_get(v, "status"));
  json_decref(v);
  assert_non_null(st);
  return st;
}

/* Poll status until `busy` workers are busy (each reply is the event; the
 * number of tries is bounded). */
static void conn_wait_busy(cli_conn_t *c, int busy) {
  json_t *st;
  int tries, n;

  for (tries = 0; tries < 100000; tries++) {
    st = conn_status(c);
    n = (int)json_integer_value(json_object_get(st, "busy"));
    json_decref(st);
    if (n == busy)
      return;
  }
  fail_msg("status never showed %d busy", busy);
}

/* Every worker pid in status (0 for none); returns how many. */
static int conn_worker_pids(cli_conn_t *c, int *pids, int max) {
  json_t *st = conn_status(c), *w;
  size_t i;
  int n = 0;

  json_array_foreach(json_object_get(st, "workers"), i, w) {
    if (n < max)
      pids[n++] = (int)json_integer_value(json_object_get(w, "pid"));
  }
  json_decref(st);
  return n;
}

/* Wait for every pid to be gone, all within one deadline of ms (times
 * PP_TEST_TIME_SCALE: a guard, not a promise; pdeathsig acts at once, but
 * a worker's handler may wait for CPU beside other suites under ASan). */
static void all_gone_within(const int *pids, const char *const *what, int n,
                            int ms) {
  int64_t deadline;

  ms *= test_time_scale();
  deadline = now_ms() + ms;
  int i, bad = -1;

  for (i = 0; i < n; i++)
    if (pids[i] > 0 && gone_within(pids[i], remaining(deadline)) != 0 &&
        bad < 0)
      bad = i;
  if (bad >= 0) {
    for (i = 0; i < n; i++)
      if (pids[i] > 0)
        kill(pids[i], SIGKILL);
    fail_msg("%s (pid %d) still alive %d ms after the pool died", what[bad],
             pids[bad], ms);
  }
}

/* SIGKILL of `poolctl serve` leaves no worker and no grandchild alive
 * within 2 s: workers idle and busy, and the subprocesses their handlers
 * started (an interpreter, /bin/sleep, a forked child). */
static void test_serve_sigkill_no_survivors(void **state) {
  const char *what[] = {
      "worker",           "worker",       "python subprocess",
      "sleep subprocess", "forked child", "busy worker's subprocess"};
  int pids[6] = {0};
  cli_conn_t *c, *busy;
  static serve_t s; /* the teardown may need it after a failure */

  (void)state;
  serve_start(&s, "hostile_handlers.py", NULL, NULL);
  serve_wait_line(&s, "ready: ");
  c = cli_conn_open(s.sock);
  pids[2] = (int)conn_call_int(c, "spawn_child", "\"python\"");
  pids[3] = (int)conn_call_int(c, "spawn_child", "\"sleep\"");
  pids[4] = (int)conn_call_int(c, "spawn_child", "\"fork\"");
  /* The hot worker takes a long call; the other one spawns a child. */
  busy = cli_conn_open(s.sock);
  conn_send(busy, "{\"op\":\"call\",\"payload\":{\"cmd\":\"sleep\","
                  "\"args\":30}}\n");
  conn_wait_busy(c, 1);
  pids[5] = (int)conn_call_int(c, "spawn_child", "\"python\"");
  assert_int_equal(conn_worker_pids(c, pids, 2), 2);
  assert_true(pids[0] > 0 && pids[1] > 0);
  assert_int_equal(kill(s.pid, SIGKILL), 0);
  assert_int_equal(wait_exit(s.pid), -SIGKILL);
  s.pid = 0;
  all_gone_within(pids, what, 6, 10000);
  assert_null(conn_recv(busy));
  cli_conn_close(busy);
  cli_conn_close(c);
  serve_cleanup(&s);
}

/* The same while the workers are still importing their handlers (no HELLO
 * yet). */
static void test_serve_sigkill_while_starting(void **state) {
  const char *what[] = {"starting worker", "starting worker"};
  int pids[2] = {0};
  cli_conn_t *c;
  static serve_t s; /* the teardown may need it after a failure */

  (void)state;
  /* A zygote forks no worker before its import is done: nothing to see. */
  if (getenv("PP_START") && strcmp(getenv("PP_START"), "zygote") == 0)
    skip();
  serve_start(&s, "slow_start.py", "worker.env={PP_SLOW_START: '30'}",
              "worker.startup_timeout=1m");
  serve_wait_line(&s, "warming 0/2");
  c = cli_conn_open(s.sock);
  assert_int_equal(conn_worker_pids(c, pids, 2), 2);
  assert_true(pids[0] > 0 && pids[1] > 0);
  assert_int_equal(kill(s.pid, SIGKILL), 0);
  wait_exit(s.pid);
  s.pid = 0;
  all_gone_within(pids, what, 2, 10000);
  cli_conn_close(c);
  serve_cleanup(&s);
}

/* A graceful close takes the handlers' subprocesses with the workers. */
static void test_close_kills_grandchildren(void **state) {
  const char *what[] = {"python subprocess", "sleep subprocess", "forked child",
                        "other worker's subprocess"};
  hpool_t *h = h_open(hostile_config(2));
  pp_buf_t reply = {0};
  pp_lease_t *a, *b;
  int pids[4];
  pp_diag_t d;

  (void)state;
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &a, &d), 0);
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &b, &d), 0);
  assert_int_equal(lcall(a, "spawn_child", "\"python\"", -1, &reply, &d), 0);
  pids[0] = atoi(reply.data);
  assert_int_equal(lcall(a, "spawn_child", "\"sleep\"", -1, &reply, &d), 0);
  pids[1] = atoi(reply.data);
  assert_int_equal(lcall(a, "spawn_child", "\"fork\"", -1, &reply, &d), 0);
  pids[2] = atoi(reply.data);
  assert_int_equal(lcall(b, "spawn_child", "\"python\"", -1, &reply, &d), 0);
  pids[3] = atoi(reply.data);
  pp_checkin(a);
  pp_checkin(b);
  h_close(h);
  pp_buf_free(&reply);
  all_gone_within(pids, what, 4, 10000);
}

/* A worker killed for a timeout takes its subprocess with it (the group
 * is signalled), before the pool closes. */
static void test_timeout_kills_grandchild(void **state) {
  hpool_t *h = h_open(hostile_config(1));
  pp_buf_t reply = {0};
  pp_lease_t *lease;
  pp_diag_t d;
  int child;

  (void)state;
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &lease, &d), 0);
  assert_int_equal(lcall(lease, "spawn_child", "\"python\"", -1, &reply, &d),
                   0);
  child = atoi(reply.data);
  assert_int_equal(lcall(lease, "sleep", "30", 200, &reply, &d), PP_ETIMEDOUT);
  pp_checkin(lease);
  h_wait(h, PP_TRACE_EXIT, 0, 1, WAIT_MS);
  assert_gone(child, 2000, "subprocess of a worker killed for a timeout");
  pp_buf_free(&reply);
  h_close(h);
}

/* A worker that crashes on its own (os._exit) while its subprocess runs:
 * nothing signalled that group, yet no interpreter may outlive the pool. */
static void test_crashed_worker_grandchild(void **state) {
  hpool_t *h = h_open(hostile_config(1));
  pp_buf_t reply = {0};
  pp_lease_t *lease;
  pp_diag_t d;
  int child;

  (void)state;
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &lease, &d), 0);
  assert_int_equal(lcall(lease, "spawn_child", "\"python\"", -1, &reply, &d),
                   0);
  child = atoi(reply.data);
  assert_int_equal(lcall(lease, "crash", "3", -1, &reply, &d), PP_ECRASHED);
  pp_checkin(lease);
  h_wait(h, PP_TRACE_HELLO, 0, 2, WAIT_MS);
  h_close(h);
  pp_buf_free(&reply);
  assert_gone(child, 2000, "subprocess of a crashed worker");
}

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

/* Run argv to completion; stdout and stderr collected (malloc'd). */
static int run_capture(char *const argv[], char **out, char **err) {
  int64_t deadline = now_ms() + WAIT_MS;
  size_t n[2] = {0, 0};
  struct pollfd p[2];
  char *buf[2], chunk[4096];
  int fds[2], open_fds = 2, i, r;
  ssize_t got;
  pid_t pid;

  buf[0] = calloc(1, 1);
  buf[1] = calloc(1, 1);
  pid = cli_spawn(argv, &fds[0], &fds[1]);
  while (open_fds > 0) {
    for (i = 0; i < 2; i++) {
      p[i].fd = fds[i];
      p[i].events = POLLIN;
    }
    r = poll(p, 2, remaining(deadline));
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0) {
      kill(pid, SIGKILL);
      fail_msg("%s did not finish", argv[1]);
    }
    for (i = 0; i < 2; i++) {
      if (fds[i] < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      got = read(fds[i], chunk, sizeof(chunk));
      if (got > 0) {
        buf[i] = realloc(buf[i], n[i] + (size_t)got + 1);
        memcpy(buf[i] + n[i], chunk, (size_t)got);
        n[i] += (size_t)got;
        buf[i][n[i]] = '\0';
      } else if (got == 0 || errno != EINTR) {
        close(fds[i]);
        fds[i] = -1;
        open_fds--;
      }
    }
  }
  *out = buf[0];
  *err = buf[1];
  return wait_exit(pid);
}

static void test_malformed_configs(void **state) {
  char dir[64], sock[128], prefix[1200], *path, *out, *err;
  const char *dirpath;
  struct dirent *de;
  size_t i, found;
  DIR *d;
  int code;

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
    code = run_capture(argv, &out, &err);
    snprintf(prefix, sizeof(prefix), "poolctl: %s:%d:%d: ", file, yc->line,
             yc->column);
    if (code != 2 || strncmp(err, prefix, strlen(prefix)) != 0 ||
        strstr(err, yc->says) == NULL ||
        strchr(err, '\n') != err + strlen(err) - 1)
      fail_msg("%s: exit %d, stderr:\n%swant exit 2 and one line '%s...%s'",
               yc->file, code, err, prefix, yc->says);
    assert_string_equal(out, "");
    assert_int_equal(access(sock, F_OK), -1);
    free(out);
    free(err);
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
        conn_send_n(bad, sc->bytes, sc->len ? sc->len : strlen(sc->bytes)), 0);
    v = conn_recv(bad);
    if (v == NULL || !json_is_false(json_object_get(v, "ok")))
      fail_msg("%s: no error reply", sc->name);
    json_decref(v);
    if (sc->fatal) {
      v = conn_recv(bad);
      if (v != NULL)
        fail_msg("%s: the connection stayed open", sc->name);
    } else {
      conn_send(bad, "{\"op\":\"ping\"}\n");
      v = conn_recv(bad);
      if (v == NULL || !json_is_true(json_object_get(v, "ok")))
        fail_msg("%s: the connection did not survive a mere error", sc->name);
      json_decref(v);
    }
    cli_conn_close(bad);
    assert_int_equal(conn_call_int(good, "pid", "null") > 0, 1);
  }
  /* Half a line, then a hang-up. */
  bad = cli_conn_open(s.sock);
  conn_send(bad, "{\"op\":\"call\",\"payload\":{\"cmd\":\"ech");
  cli_conn_close(bad);
  /* More connections than the server serves at once: the extra ones are
   * refused with EBUSY, the first ones and `good` still work. */
  for (i = 0; i < 300; i++)
    many[i] = cli_conn_open(s.sock);
  for (i = 0; i < 300; i++) {
    conn_send_n(many[i], "{\"op\":\"ping\"}\n", 14); /* may be refused */
    v = conn_recv(many[i]);
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
  st = conn_status(good);
  assert_int_equal(json_integer_value(json_object_get(st, "restarts")), 0);
  json_decref(st);
  cli_conn_close(good);
  serve_stop(&s);
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

  static char idle_set[64];

  (void)state;
  /* Long enough that the test's own connections, which are never idle
   * on purpose, are not closed while it is descheduled. */
  snprintf(idle_set, sizeof(idle_set), "control.idle_timeout=%dms",
           1000 * test_time_scale());
  serve_start(&s, "echo_handlers.py", idle_set, NULL);
  serve_wait_line(&s, "ready: ");
  trace = cli_conn_open(s.sock);
  conn_send(trace, "{\"op\":\"trace\",\"filter\":\"reply\"}\n");
  v = conn_recv(trace);
  assert_true(v && json_is_true(json_object_get(v, "ok")));
  json_decref(v);
  slow = cli_conn_open(s.sock);
  conn_send(slow, "{\"op\":\"sta");
  /* More than the server serves at once, all silent. */
  for (i = 0; i < 300; i++)
    idle[i] = cli_conn_open(s.sock);
  for (i = 0; i < 300; i++)
    if (!cli_conn_hup(idle[i], WAIT_MS))
      fail_msg("idle connection %zu still open after %d ms", i, WAIT_MS);
  if (!cli_conn_hup(slow, WAIT_MS))
    fail_msg("the connection with half a request is still open");
  probe = cli_conn_open(s.sock);
  st = conn_status(probe);
  json_decref(st);
  /* The trace stream, older than every idle one, still streams. */
  assert_true(conn_call_int(probe, "pid", "null") > 0);
  v = conn_recv(trace);
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
    conn_send(c, cases[i].req);
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
  static char idle_set[64];
  const char *blanks[] = {"\n", " \r\n", "\t\n"};
  int64_t deadline;
  cli_conn_t *c, *probe;
  struct pollfd p;
  json_t *st;
  char buf[256];
  int i = 0, r, closed = 0;

  (void)state;
  snprintf(idle_set, sizeof(idle_set), "control.idle_timeout=%dms",
           200 * test_time_scale());
  serve_start(&s, "echo_handlers.py", idle_set, NULL);
  serve_wait_line(&s, "ready: ");
  c = cli_conn_open(s.sock);
  deadline = now_ms() + WAIT_MS;
  while (!closed && remaining(deadline) > 0) {
    if (conn_send_n(c, blanks[i % 3], strlen(blanks[i % 3])) != 0)
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
  st = conn_status(probe);
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

  static char idle_set[64];

  (void)state;
  snprintf(idle_set, sizeof(idle_set), "control.idle_timeout=%dms",
           1000 * test_time_scale());
  serve_start(&s, "echo_handlers.py", idle_set, NULL);
  serve_wait_line(&s, "ready: ");
  stalled = cli_conn_open(s.sock);
  conn_send(stalled, "{\"op\":\"call\",\"payload\":{\"cmd\":\"big\","
                     "\"args\":30000000}}\n");
  if (!cli_conn_hup(stalled, WAIT_MS))
    fail_msg("the server still holds a reply for a client that does not "
             "read");
  probe = cli_conn_open(s.sock);
  st = conn_status(probe);
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

/* Start other_uid_clients(sock, n) in a child; returns its pid once it
 * reported how many of its n pings were answered (into *ok).  report[0]
 * (its further report) and go[1] (the word to go on) stay open for the
 * caller. */
static pid_t other_uid_begin(const char *sock, int n, int report[2],
                             int go[2], int *ok) {
  pid_t pid;

  assert_int_equal(pipe(report), 0);
  assert_int_equal(pipe(go), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(report[0]);
    close(go[1]);
    other_uid_clients(sock, n, report[1], go[0]);
  }
  close(report[1]);
  close(go[0]);
  assert_int_equal(read(report[0], ok, sizeof(*ok)), sizeof(*ok));
  return pid;
}

/* Another allowed uid holds every connection: the pool's own user still
 * gets a status through (a reserve of 8 for it), and that uid's next
 * connection is refused with EBUSY.  Needs root, for the second uid. */
static void test_owner_reserve(void **state) {
  static serve_t s;
  const char *sets[] = {"control.allow_uids=[65534]", "control.mode=0666",
                        "control.idle_timeout=1h", NULL};
  int report[2], go[2], ok = 0;
  char buf[512] = {0};
  cli_run_t r;
  ssize_t n;
  pid_t pid;

  (void)state;
  if (geteuid() != 0)
    cli_skip("needs root to run clients as a second uid");
  serve_start_sets(&s, "echo_handlers.py", sets);
  serve_wait_line(&s, "ready: ");
  assert_int_equal(chmod(s.dir, 0711), 0);
  pid = other_uid_begin(s.sock, 256, report, go, &ok);
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
  assert_int_equal(wait_exit(pid), 0);
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
  const char *sets[] = {"control.allow_uids=[65534]", "control.mode=0666",
                        "control.idle_timeout=1h", NULL};
  int report[2], go[2], n = 0, i;
  cli_conn_t *extra;
  json_t *v;
  pid_t pid;

  (void)state;
  if (geteuid() != 0)
    cli_skip("needs root to run clients as a second uid");
  serve_start_sets(&s, "echo_handlers.py", sets);
  serve_wait_line(&s, "ready: ");
  assert_int_equal(chmod(s.dir, 0711), 0);
  for (i = 0; i < CTL_TEST_CONN_MAX; i++) {
    held[i] = cli_conn_open(s.sock);
    conn_send(held[i], "{\"op\":\"ping\"}\n");
    v = conn_recv(held[i]);
    if (v == NULL || !json_is_true(json_object_get(v, "ok")))
      fail_msg("the owner's connection %d was refused", i);
    json_decref(v);
  }
  assert_int_equal(pipe(report), 0);
  assert_int_equal(pipe(go), 0);
  assert_int_equal(kill(s.pid, SIGSTOP), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(report[0]);
    close(go[1]);
    refused_uid_clients(s.sock, 100, report[1], go[0]);
  }
  close(report[1]);
  close(go[0]);
  assert_int_equal(read(report[0], &n, sizeof(n)), sizeof(n));
  assert_int_equal(n, 100);
  extra = cli_conn_open(s.sock);
  assert_int_equal(kill(s.pid, SIGCONT), 0);
  conn_send(extra, "{\"op\":\"status\"}\n");
  v = conn_recv(extra);
  if (v == NULL || !json_is_true(json_object_get(v, "ok")))
    fail_msg("the owner's status behind 100 refused peers failed: %s",
             v ? json_string_value(json_object_get(v, "message")) : "EOF");
  json_decref(v);
  assert_int_equal(write(go[1], "g", 1), 1);
  assert_int_equal(read(report[0], &n, sizeof(n)), sizeof(n));
  assert_int_equal(n, 100);
  close(go[1]);
  close(report[0]);
  assert_int_equal(wait_exit(pid), 0);
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
  code = wait_exit(pid);
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
  serve_start_sets(&s, "echo_handlers.py", sets);
  serve_wait_line(&s, "ready: ");
  assert_int_equal(chmod(s.dir, 0711), 0);
  pid = other_uid_begin(s.sock, 1, report, go, &ok);
  close(go[1]);
  close(report[0]);
  wait_exit(pid);
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

/* ============================================ lifecycle (heartbeat, ...) */

/* A worker that stops answering while idle (SIGSTOP) misses its PINGs and
 * is killed and replaced; the other slot is not disturbed. */
static void test_heartbeat_stopped_worker(void **state) {
  pp_config_t *cfg = hostile_config(2);
  pp_status_t st;
  hpool_t *h;
  int pid;

  (void)state;
  cfg_set(cfg, "worker.heartbeat", "100ms");
  cfg_set(cfg, "worker.heartbeat_misses", "2");
  cfg_set(cfg, "worker.kill_grace", "300ms");
  h = h_open(cfg);
  h_status(h, &st);
  pid = st.workers[0].pid;
  pp_status_free(&st);
  assert_true(pid > 0);
  assert_int_equal(kill(pid, SIGSTOP), 0);
  h_wait(h, PP_TRACE_HEARTBEAT_MISS, 0, 1, WAIT_MS);
  h_wait(h, PP_TRACE_EXIT, 0, 1, WAIT_MS);
  h_wait(h, PP_TRACE_HELLO, 0, 2, WAIT_MS);
  assert_int_equal(gone_within(pid, WAIT_MS), 0);
  assert_int_equal(h_count(h, PP_TRACE_HEARTBEAT_MISS, 1), 0);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, 1), 0);
  h_status(h, &st);
  assert_int_equal(st.workers[0].generation, 2);
  assert_int_not_equal(st.workers[0].last_exit, PP_EXIT_NONE);
  assert_int_equal(st.workers[1].generation, 1);
  pp_status_free(&st);
  all_slots_serve(h, 2);
  h_close(h);
}

/* A reply that arrives while the worker is idle is caught by the
 * heartbeat, before any client is handed that worker. */
static void test_heartbeat_catches_stray_reply(void **state) {
  pp_config_t *cfg = bad_config("per_request", 1);
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_diag_t d;
  hpool_t *h;

  (void)state;
  cfg_set(cfg, "worker.heartbeat", "100ms");
  h = h_open(cfg);
  assert_int_equal(pp_call_cmd(h->pool, "stray_reply", NULL, &reply, -1, &d),
                   0);
  h_wait(h, PP_TRACE_PROTOCOL_ERROR, 0, 1, WAIT_MS);
  h_wait(h, PP_TRACE_HELLO, 0, 2, WAIT_MS);
  h_status(h, &st);
  assert_int_equal(st.workers[0].last_exit, PP_EXIT_PROTOCOL);
  pp_status_free(&st);
  assert_int_equal(pp_call_cmd(h->pool, "echo", "1", &reply, -1, &d), 0);
  assert_string_equal(reply.data, "1");
  pp_buf_free(&reply);
  h_close(h);
}

/* A quick heartbeat leaves healthy workers alone, busy ones included:
 * one worker runs a request 10 heartbeats long, the other idles. */
static void test_heartbeat_spares_healthy(void **state) {
  pp_config_t *cfg = hostile_config(2);
  pp_buf_t reply = {0};
  pp_diag_t d;
  hpool_t *h;

  (void)state;
  cfg_set(cfg, "worker.heartbeat", "50ms");
  cfg_set(cfg, "worker.heartbeat_misses", "2");
  h = h_open(cfg);
  assert_int_equal(pp_call_cmd(h->pool, "sleep", "0.5", &reply, -1, &d), 0);
  all_slots_serve(h, 2);
  assert_int_equal(h_count(h, PP_TRACE_HEARTBEAT_MISS, -1), 0);
  assert_int_equal(h_count(h, PP_TRACE_EXIT, -1), 0);
  pp_buf_free(&reply);
  h_close(h);
}

/* max_requests: once the worker has served its (jittered) limit it is
 * retired; it keeps serving until its replacement said HELLO, so no call
 * fails or waits, and it is a recycle, not a crash. */
static void test_recycle_max_requests(void **state) {
  pp_config_t *cfg = hostile_config(1);
  int64_t deadline = now_ms() + WAIT_MS;
  pp_buf_t reply = {0};
  int first, served = 0, limit;
  pp_status_t st;
  pp_diag_t d;
  hpool_t *h;

  (void)state;
  cfg_set(cfg, "worker.max_requests", "10");
  h = h_open(cfg);
  h_status(h, &st);
  limit = (int)st.workers[0].max_requests;
  pp_status_free(&st);
  if (limit < 10 || limit > 20)
    fail_msg("status max_requests %d for a limit of 10", limit);
  assert_int_equal(pp_call_cmd(h->pool, "pid", NULL, &reply, -1, &d), 0);
  first = atoi(reply.data);
  served = 1;
  /* Each reply is the observation; bounded by the deadline. */
  for (;;) {
    assert_int_equal(pp_call_cmd(h->pool, "pid", NULL, &reply, 10000, &d), 0);
    if (atoi(reply.data) != first)
      break;
    served++;
    if (now_ms() > deadline)
      fail_msg("still the first worker after %d requests (limit %d)", served,
               limit);
  }
  if (served < limit)
    fail_msg("replaced after %d requests; its limit was %d", served, limit);
  assert_int_equal(h_count(h, PP_TRACE_RECYCLE, 0), 1);
  assert_int_equal(gone_within(first, WAIT_MS), 0);
  h_status(h, &st);
  assert_int_equal(st.recycles, 1);
  assert_int_equal(st.restarts, 0);
  assert_int_equal(st.workers[0].restarts, 0);
  pp_status_free(&st);
  pp_buf_free(&reply);
  h_close(h);
}

/* The limits are jittered, so workers do not all recycle together. */
static void test_recycle_jitter(void **state) {
  pp_config_t *cfg = hostile_config(4);
  pp_status_t st;
  hpool_t *h;
  int i, differ = 0;

  (void)state;
  cfg_set(cfg, "worker.max_requests", "1000");
  h = h_open(cfg);
  h_status(h, &st);
  for (i = 0; i < 4; i++) {
    assert_true(st.workers[i].max_requests > 0);
    assert_true(st.workers[i].max_requests <= 2000);
    differ |= st.workers[i].max_requests != st.workers[0].max_requests;
  }
  assert_true(differ);
  pp_status_free(&st);
  h_close(h);
}

/* max_rss: a worker that grew past it is replaced once idle. */
static void test_recycle_max_rss(void **state) {
  pp_config_t *cfg = hostile_config(1);
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_diag_t d;
  hpool_t *h;
  int first;

  (void)state;
  cfg_set(cfg, "worker.max_rss", "100MiB");
  h = h_open(cfg);
  assert_int_equal(pp_call_cmd(h->pool, "pid", NULL, &reply, -1, &d), 0);
  first = atoi(reply.data);
  assert_int_equal(pp_call_cmd(h->pool, "grow", "150", &reply, -1, &d), 0);
  h_wait(h, PP_TRACE_RECYCLE, 0, 1, WAIT_MS);
  h_wait(h, PP_TRACE_HELLO, 0, 2, WAIT_MS);
  assert_int_equal(pp_call_cmd(h->pool, "pid", NULL, &reply, 10000, &d), 0);
  assert_int_not_equal(atoi(reply.data), first);
  h_status(h, &st);
  assert_true(st.recycles >= 1);
  assert_int_equal(st.restarts, 0);
  pp_status_free(&st);
  pp_buf_free(&reply);
  h_close(h);
}

typedef struct hammer {
  hpool_t *h;
  pp_pool_t *pool;
  uv_thread_t thread;
  atomic_int stop;
  int calls, failed, first_err;
} hammer_t;

static void hammer_main(void *arg) {
  hammer_t *m = arg;
  pp_buf_t reply = {0};
  pp_diag_t d;
  int r;

  /* Calls all along, but a few hundred a second, not a tight loop that
   * would starve the replacements' start-up on a loaded host. */
  while (!atomic_load(&m->stop)) {
    uv_mutex_lock(&m->h->mu);
    uv_cond_timedwait(&m->h->cv, &m->h->mu, 2000000ull);
    uv_mutex_unlock(&m->h->mu);
    r = pp_call_cmd(m->pool, "echo", "1", &reply, 10000, &d);
    m->calls++;
    if (r != 0 && m->failed++ == 0)
      m->first_err = r;
  }
  pp_buf_free(&reply);
}

/* max_age with max_recycling 1: workers are replaced one at a time, the
 * replacement started first, so at least size - 1 serve at every moment,
 * and a client calling all along never fails. */
static void test_recycle_max_age_capacity(void **state) {
  pp_config_t *cfg = hostile_config(4);
  int64_t deadline = now_ms() + WAIT_MS;
  int i, serving, least = 4;
  pp_status_t st;
  hammer_t m;
  hpool_t *h;

  (void)state;
  cfg_set(cfg, "worker.max_age", "300ms");
  cfg_set(cfg, "worker.max_recycling", "1");
  h = h_open(cfg);
  memset(&m, 0, sizeof(m));
  m.h = h;
  m.pool = h->pool;
  atomic_init(&m.stop, 0);
  assert_int_equal(uv_thread_create(&m.thread, hammer_main, &m), 0);
  /* Each status snapshot is the observation; bounded by the deadline. */
  while (h_count(h, PP_TRACE_RECYCLE, -1) < 6 && now_ms() < deadline) {
    h_status(h, &st);
    /* A retiring worker still serves until its replacement takes over. */
    for (serving = 0, i = 0; i < st.nworkers; i++)
      if (st.workers[i].state == PP_WORKER_IDLE ||
          st.workers[i].state == PP_WORKER_LEASED ||
          st.workers[i].state == PP_WORKER_BUSY)
        serving++;
    if (serving < least)
      least = serving;
    pp_status_free(&st);
  }
  atomic_store(&m.stop, 1);
  uv_thread_join(&m.thread);
  assert_true(h_count(h, PP_TRACE_RECYCLE, -1) >= 6);
  if (least < 3)
    fail_msg("only %d of 4 workers served at one moment (max_recycling 1)",
             least);
  if (m.failed)
    fail_msg("%d of %d calls failed during recycling; first %s", m.failed,
             m.calls, pp_err_name(m.first_err));
  h_close(h);
}

/* A slot in backoff shows when it will retry. */
static void test_status_next_retry(void **state) {
  pp_config_t *cfg = one_bad_slot("exit_before_hello", 2);
  pp_status_t st;
  hpool_t *h;
  char *json;

  (void)state;
  cfg_set(cfg, "restart.backoff", "[2s, 2s]");
  cfg_set(cfg, "restart.max_restarts", "5");
  h = h_open(cfg);
  h_wait(h, PP_TRACE_RESTART, 0, 1, WAIT_MS);
  h_status(h, &st);
  assert_int_equal(st.workers[0].state, PP_WORKER_BACKOFF);
  if (st.workers[0].next_retry_ms == 0 || st.workers[0].next_retry_ms > 2500)
    fail_msg("next_retry_ms %llu, want 0 < it <= 2500",
             (unsigned long long)st.workers[0].next_retry_ms);
  assert_int_equal(st.workers[1].next_retry_ms, 0);
  json = pp_status_to_json(&st);
  assert_non_null(strstr(json, "\"next_retry_ms\""));
  free(json);
  pp_status_free(&st);
  h_close(h);
}

/* Status keeps the last 20 lines of each slot's stderr, oldest first,
 * also after the worker died (what it said before dying). */
static void test_status_stderr_tail(void **state) {
  pp_config_t *cfg = one_bad_slot("exit_before_hello", 2);
  pp_buf_t reply = {0};
  pp_lease_t *lease;
  pp_status_t st;
  pp_diag_t d;
  hpool_t *h;
  char *json;
  int i, slot;

  (void)state;
  cfg_set(cfg, "restart.max_restarts", "0");
  h = h_open(cfg);
  h_wait(h, PP_TRACE_FATAL, 0, 1, WAIT_MS);
  h_status(h, &st);
  assert_true(st.workers[0].stderr_lines >= 1);
  assert_non_null(
      strstr(st.workers[0].stderr_tail[st.workers[0].stderr_lines - 1],
             "exit_before_hello"));
  json = pp_status_to_json(&st);
  assert_non_null(strstr(json, "\"stderr_tail\""));
  assert_non_null(strstr(json, "exit_before_hello"));
  free(json);
  pp_status_free(&st);
  h_close(h);

  /* 30 lines from a live worker: the last 20 are kept. */
  h = h_open(hostile_config(1));
  assert_int_equal(pp_lease_acquire(h->pool, NULL, WAIT_MS, &lease, &d), 0);
  slot = pp_lease_slot(lease);
  assert_int_equal(lcall(lease, "lines", "30", -1, &reply, &d), 0);
  pp_checkin(lease);
  h_wait_stderr(h, slot, "line 29", WAIT_MS);
  h_status(h, &st);
  assert_int_equal(st.workers[slot].stderr_lines, PP_STDERR_TAIL_LINES);
  for (i = 0; i < PP_STDERR_TAIL_LINES; i++) {
    char want[32];
    snprintf(want, sizeof(want), "line %d", 30 - PP_STDERR_TAIL_LINES + i);
    assert_string_equal(st.workers[slot].stderr_tail[i], want);
  }
  pp_status_free(&st);
  pp_buf_free(&reply);
  h_close(h);
}

/* ================================================================= main */

/* Table-driven tests, each named after its case. */
#define CASE(name, fn, table, i)                                               \
  { name, fn, NULL, teardown, (void *)&table[i] }
#define FAULT(i, n)                                                            \
  CASE("fault_blocking_" n, test_fault_blocking, fault_cases, i)
#define LFAULT(i, n) CASE("fault_loop_" n, test_fault_loop, fault_cases, i)
#define START(i, n) CASE("start_fault_" n, test_start_fault, start_cases, i)

static const char flood_stdout[] = "stdout", flood_stderr[] = "stderr";

/* ---- an escaped child that floods the exited worker's stderr */

typedef struct spew {
  hpool_t *h;
  pp_lease_t *lease;
  int slot;
  atomic_int reaped, done;
  int status, status_r;
  int call_r;
  pp_diag_t d;
} spew_t;

/* The "reap" fault point: the victim has exited, its stderr is about to
 * be drained (loop thread, no lock). */
static void spew_hook(pp_pool_t *pool, const char *point, void *data) {
  spew_t *s = data;

  (void)pool;
  if (strcmp(point, "reap") != 0)
    return;
  uv_mutex_lock(&s->h->mu);
  atomic_store(&s->reaped, 1);
  uv_cond_broadcast(&s->h->cv);
  uv_mutex_unlock(&s->h->mu);
}

/* While the victim's stderr is drained and the bystander has not
 * finished, each line logged waits until the child has written more: the
 * child stays ahead of the reader, however fast the reader is (a failure
 * bound of a second per line, should the child stop). */
static void spew_err_hook(pp_pool_t *pool, int slot, void *data) {
  spew_t *s = data;
  pp__proc_t *proc = pool->slots[slot]->proc; /* pool lock held */
  struct pollfd p;
  uv_os_fd_t fd;

  if (slot != s->slot || !atomic_load(&s->reaped) || atomic_load(&s->done) ||
      proc == NULL || !(proc->handles & PP__H_ERR) ||
      uv_fileno((uv_handle_t *)&proc->err, &fd) != 0)
    return;
  p.fd = fd;
  p.events = POLLIN;
  poll(&p, 1, 1000);
}

static void spew_victim(void *arg) {
  spew_t *s = arg;
  pp_buf_t reply = {0};

  s->call_r = lcall(s->lease, "fork_exit",
                    "{\"code\":7,\"defeat\":true,\"setsid\":true,"
                    "\"spew\":true}",
                    -1, &reply, &s->d);
  pp_buf_free(&reply);
}

/* Another worker's call and a status snapshot, then done. */
static void spew_bystander(void *arg) {
  spew_t *s = arg;
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_diag_t d;
  int r;

  r = lcall(s->lease, "echo", "\"bystander\"", 10000, &reply, &d);
  s->status_r = pp_pool_status(s->h->pool, &st);
  if (s->status_r == 0)
    pp_status_free(&st);
  pp_buf_free(&reply);
  uv_mutex_lock(&s->h->mu);
  s->status = r;
  atomic_store(&s->done, 1);
  uv_cond_broadcast(&s->h->cv);
  uv_mutex_unlock(&s->h->mu);
}

/* A handler forks a child that leaves the worker's process group and
 * writes to the worker's stderr as fast as it can; then the worker exits.
 * Draining that pipe is bounded and holds no lock across reads: another
 * worker's call and a status snapshot complete while the child still
 * writes (the test kills it only afterwards). */
static void test_escaped_child_spews(void **state) {
  pp_config_t *cfg = hostile_config(2);
  uv_thread_t victim, bystander;
  spew_t v, b;
  uint64_t deadline;
  int child, ok;

  (void)state;
  cfg_set(cfg, "worker.request_timeout", "5s");
  memset(&v, 0, sizeof(v));
  memset(&b, 0, sizeof(b));
  v.h = b.h = h_open(cfg);
  assert_int_equal(pp_lease_acquire(v.h->pool, NULL, WAIT_MS, &v.lease, &v.d),
                   0);
  assert_int_equal(pp_lease_acquire(v.h->pool, NULL, WAIT_MS, &b.lease, &b.d),
                   0);
  v.slot = pp_lease_slot(v.lease);
  pp_test_fault_hook(v.h->pool, spew_hook, &v);
  uv_mutex_lock(&v.h->mu);
  v.h->err_hook_data = &v;
  v.h->err_hook = spew_err_hook;
  uv_mutex_unlock(&v.h->mu);
  assert_int_equal(uv_thread_create(&victim, spew_victim, &v), 0);
  /* The worker has exited and its escaped child is known (its first line
   * reaches the log while the worker lives, or in the drain). */
  deadline = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
  uv_mutex_lock(&v.h->mu);
  while ((!atomic_load(&v.reaped) || v.h->lingering_pid <= 0) &&
         now_ns() < deadline)
    uv_cond_timedwait(&v.h->cv, &v.h->mu, 10000000ull);
  child = v.h->lingering_pid;
  uv_mutex_unlock(&v.h->mu);
  assert_true(atomic_load(&v.reaped));
  assert_true(child > 0);
  assert_int_equal(uv_thread_create(&bystander, spew_bystander, &b), 0);
  deadline = now_ns() + 10000000000ull * (uint64_t)test_time_scale();
  uv_mutex_lock(&v.h->mu);
  while (!atomic_load(&b.done) && now_ns() < deadline)
    uv_cond_timedwait(&v.h->cv, &v.h->mu, 10000000ull);
  ok = atomic_load(&b.done);
  uv_mutex_unlock(&v.h->mu);
  atomic_store(&v.done, 1); /* the log hook stops holding the reader back */
  kill(child, SIGKILL);     /* nobody else will; a frozen pool thaws */
  uv_thread_join(&bystander);
  uv_thread_join(&victim);
  pp_test_fault_hook(v.h->pool, NULL, NULL);
  uv_mutex_lock(&v.h->mu);
  v.h->err_hook = NULL;
  uv_mutex_unlock(&v.h->mu);
  if (!ok)
    fail_msg("the pool froze while an escaped child flooded the stderr of "
             "an exited worker");
  assert_int_equal(b.status, 0);
  assert_int_equal(b.status_r, 0);
  assert_int_equal(v.call_r, PP_ECRASHED);
  pp_checkin(v.lease);
  pp_checkin(b.lease);
  h_close(v.h);
}

int main(int argc, char **argv) {
  const struct CMUnitTest faults[] = {
      FAULT(0, "garbage"),
      FAULT(1, "oversize"),
      FAULT(2, "unknown_type"),
      FAULT(3, "unknown_id"),
      FAULT(4, "dup_reply"),
      FAULT(5, "close_fd4"),
      FAULT(6, "exit_mid_frame"),
      FAULT(7, "hang"),
      LFAULT(0, "garbage"),
      LFAULT(1, "oversize"),
      LFAULT(2, "unknown_type"),
      LFAULT(3, "unknown_id"),
      LFAULT(4, "dup_reply"),
      LFAULT(5, "close_fd4"),
      LFAULT(6, "exit_mid_frame"),
      LFAULT(7, "hang"),
      cmocka_unit_test_teardown(test_stray_reply_next_request, teardown),
      START(0, "bad_version"),
      START(1, "no_hello"),
      START(2, "hello_twice"),
      START(3, "exit_before_hello"),
      cmocka_unit_test_teardown(test_max_frame_both_ways, teardown),
      cmocka_unit_test_teardown(test_undeclared_handler, teardown),
      cmocka_unit_test_teardown(test_replies_fit, teardown),
      cmocka_unit_test_teardown(test_open_degraded, teardown),
      cmocka_unit_test_teardown(test_degraded_fails_at_once, teardown),
      cmocka_unit_test_teardown(test_backoff_per_slot, teardown),
      cmocka_unit_test_teardown(test_restart_window, teardown),
      cmocka_unit_test_teardown(test_timeout_sigkill_step, teardown),
      cmocka_unit_test_teardown(test_timeout_call_deadline, teardown),
      {"flood_stdout", test_flood, NULL, teardown, (void *)flood_stdout},
      {"flood_stderr", test_flood, NULL, teardown, (void *)flood_stderr},
      cmocka_unit_test_teardown(test_fork_exit, teardown),
      cmocka_unit_test_teardown(test_fork_exit_escaped, teardown),
      cmocka_unit_test_teardown(test_fork_child_dies_with_worker, teardown),
      cmocka_unit_test_teardown(test_escaped_child_spews, teardown),
  };
  const struct CMUnitTest orphans[] = {
      cmocka_unit_test_teardown(test_serve_sigkill_no_survivors, teardown),
      cmocka_unit_test_teardown(test_serve_sigkill_while_starting, teardown),
      cmocka_unit_test_teardown(test_close_kills_grandchildren, teardown),
      cmocka_unit_test_teardown(test_timeout_kills_grandchild, teardown),
      cmocka_unit_test_teardown(test_crashed_worker_grandchild, teardown),
  };
  const struct CMUnitTest configs[] = {
      cmocka_unit_test_teardown(test_malformed_configs, teardown),
      cmocka_unit_test_teardown(test_hostile_socket_clients, teardown),
      cmocka_unit_test_teardown(test_idle_timeout, teardown),
      cmocka_unit_test_teardown(test_blank_lines_idle, teardown),
      cmocka_unit_test_teardown(test_id_echoed_as_written, teardown),
      cmocka_unit_test_teardown(test_stalled_reader_closed, teardown),
      cmocka_unit_test_teardown(test_owner_reserve, teardown),
      cmocka_unit_test_teardown(test_refused_uid_no_slot, teardown),
      cmocka_unit_test_teardown(test_allow_uids_many, teardown),
  };
  const struct CMUnitTest lifecycle[] = {
      cmocka_unit_test_teardown(test_heartbeat_stopped_worker, teardown),
      cmocka_unit_test_teardown(test_heartbeat_catches_stray_reply, teardown),
      cmocka_unit_test_teardown(test_heartbeat_spares_healthy, teardown),
      cmocka_unit_test_teardown(test_recycle_max_requests, teardown),
      cmocka_unit_test_teardown(test_recycle_jitter, teardown),
      cmocka_unit_test_teardown(test_recycle_max_rss, teardown),
      cmocka_unit_test_teardown(test_recycle_max_age_capacity, teardown),
      cmocka_unit_test_teardown(test_status_next_retry, teardown),
      cmocka_unit_test_teardown(test_status_stderr_tail, teardown),
  };
  const char *group = argc > 1 ? argv[1] : "faults";

  signal(SIGPIPE, SIG_IGN);
  if (argc > 2)
    cmocka_set_test_filter(argv[2]);
  if (strcmp(group, "faults") == 0)
    return cmocka_run_group_tests_name("faults", faults, NULL, NULL);
  if (strcmp(group, "orphans") == 0)
    return cmocka_run_group_tests_name("orphans", orphans, NULL, NULL);
  if (strcmp(group, "configs") == 0)
    return cmocka_run_group_tests_name("configs", configs, NULL, NULL);
  if (strcmp(group, "lifecycle") == 0)
    return cmocka_run_group_tests_name("lifecycle", lifecycle, NULL, NULL);
  fprintf(stderr, "usage: test_hostile {faults|orphans|configs|lifecycle} "
                  "[FILTER]\n");
  return 2;
}
