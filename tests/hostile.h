/* hostile.h -- support shared by the hostile suites (test_hostile_*.c):
 * a trace and log recorder to wait on, configs for the hostile fixtures,
 * process exits, a `poolctl serve` child in a fresh directory and calls
 * over a raw control-socket client.  The millisecond clock, reaping a
 * child, the serve child's process and output, and the client itself are
 * cli.h's (cli_now_ms, cli_wait_exit, cli_server_t, cli_conn_*).
 *
 * Hostile workers come from two fixtures: fixtures/bad_worker.py speaks the
 * framing itself and breaks it on demand (its per_request mode lets one
 * worker of a pool misbehave while the others serve; BAD_WORKER_ONLY aims a
 * start-up fault at one slot), and fixtures/hostile_handlers.py is a
 * handler module for portpool_worker.py whose handlers keep the framing but
 * flood, fork, spawn, ignore SIGTERM or grow.
 *
 * Every wait is on a trace event, a reply, a line or a process exit, with a
 * timeout that only fires on failure. */
#ifndef PP_TEST_HOSTILE_H
#define PP_TEST_HOSTILE_H

#include "cli.h"
#include "helpers.h"

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

/* Only a broken build waits this long (scaled for slow runs such as
 * valgrind's, PP_TEST_TIME_SCALE). */
#define WAIT_MS (30000 * test_time_scale())

/* CLOCK_MONOTONIC in nanoseconds (cli_now_ms() in milliseconds). */
uint64_t now_ns(void);

/* ------------------------------------------------------------ processes */

/* Wait until pid has exited, up to timeout_ms; 0 or -1.  A pidfd is the
 * event (helpers.c's wait_pid_gone); where the kernel or valgrind (3.19
 * lacks pidfd_open) cannot give one, /proc is looked at every 5 ms: an
 * observation with a deadline, not a guess at a duration. */
int gone_within(int pid, int timeout_ms);
/* Kill a leftover process of a failed test, then assert it had gone. */
void assert_gone(int pid, int timeout_ms, const char *what);

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

/* Events of type (for slot, or any slot when slot < 0) so far. */
size_t h_count(hpool_t *h, pp_trace_type_t type, int slot);
/* Wait for at least count such events; fails the test after timeout_ms. */
void h_wait(hpool_t *h, pp_trace_type_t type, int slot, size_t count,
            int timeout_ms);
/* Print every event so far: what a failure message cannot say. */
void h_dump(hpool_t *h);
/* Wait until slot's last stderr line is `text`. */
void h_wait_stderr(hpool_t *h, int slot, const char *text, int timeout_ms);
/* The n-th (0-based) event of type for slot; fails the test if missing. */
hev_t h_nth(hpool_t *h, pp_trace_type_t type, int slot, size_t n);

/* An empty record, and its release (the pool is not touched). */
void h_init(hpool_t *h);
void h_free(hpool_t *h);
/* Pool options whose trace and log callbacks record into h. */
pp_pool_options_t h_options(hpool_t *h);
/* Open a pool with the blocking face (the config is consumed); fails the
 * test on error.  h_close closes it, checks the CLOSED event and frees
 * everything. */
hpool_t *h_open(pp_config_t *cfg);
void h_close(hpool_t *h);
/* pp_pool_status, failing the test on error. */
void h_status(hpool_t *h, pp_status_t *st);

/* ------------------------------------------------------------- configs */

/* A pool running fixtures/bad_worker.py MODE (see its docstring). */
pp_config_t *bad_config(const char *mode, int size);
/* A pool running fixtures/hostile_handlers.py. */
pp_config_t *hostile_config(int size);
/* bad_config(mode, size) with the fault aimed at slot 0 only
 * (BAD_WORKER_ONLY=0): min_ready 1, one restart within a minute, boot
 * failures retried. */
pp_config_t *one_bad_slot(const char *mode, int size);

/* ---------------------------------------------------------------- calls */

/* One call on a lease with a JSON payload built from cmd and args. */
int lcall(pp_lease_t *lease, const char *cmd, const char *args,
          int64_t timeout_ms, pp_buf_t *reply, pp_diag_t *d);
/* After a fault: every slot serves again (one lease per slot at once). */
void all_slots_serve(hpool_t *h, int size);

/* ------------------------------------------------ a `poolctl serve` child */

/* A `poolctl serve` child on a socket in a fresh directory: a cli_server_t
 * whose stdout is read (its stderr is not piped). */
typedef struct serve {
  cli_server_t srv;
  char dir[64];
  char sock[96];
} serve_t;

/* Start `poolctl serve` with two workers running the fixture handlers,
 * with worker.start from PP_START, and with the --set values in sets
 * (NULL-terminated, or NULL).  serve_start takes up to two: set1 and set2,
 * where a NULL ends the list.  The server of the test running is
 * remembered for hostile_teardown. */
void serve_start_sets(serve_t *s, const char *handlers,
                      const char *const *sets);
void serve_start(serve_t *s, const char *handlers, const char *set1,
                 const char *set2);
/* Read the server's stdout until a line starting with prefix
 * (cli_lines_wait). */
void serve_wait_line(serve_t *s, const char *prefix);
/* SIGKILL the server if it runs, and remove its socket and directory. */
void serve_cleanup(serve_t *s);
/* Stop the server as an operator does (SIGTERM): it must exit 0. */
void serve_stop(serve_t *s);

/* After every test: what a failed test left running is stopped (its pool
 * is left open: a failure leaks, it must not crash the next test). */
int hostile_teardown(void **state);

/* ---- calls on a raw control-socket client (cli.h, docs/protocol.md) */

/* A call on c; returns the reply value's integer (the handlers used here
 * return pids). */
json_int_t conn_call_int(cli_conn_t *c, const char *cmd, const char *args);
/* Every worker pid in status (0 for none); returns how many. */
int conn_worker_pids(cli_conn_t *c, int *pids, int max);

#endif
