/* helpers.h -- shared test support: configs for real Python workers, and a
 * trace recorder that tests wait on instead of sleeping. */
#ifndef PP_TEST_HELPERS_H
#define PP_TEST_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "portpool.h"

typedef struct rec_event {
  pp_trace_type_t type;
  int slot;
  uint32_t generation;
  int pid;
  uint64_t lease;
  uint64_t client;
  int code;
  char detail[128];
} rec_event_t;

typedef struct rec {
  uv_mutex_t mu;
  uv_cond_t cv;
  rec_event_t *ev;
  size_t n, cap;
  /* Events of each type so far: rec_wait looks at one counter, not at
   * every event (suites under load record hundreds of thousands, and the
   * pool's trace callback waits for this mutex). */
  size_t counts[PP_TRACE_SLOW + 1];
} rec_t;

void rec_init(rec_t *r);
void rec_free(rec_t *r);
void rec_cb(pp_pool_t *pool, const pp_trace_event_t *ev, void *data);
size_t rec_count(rec_t *r, pp_trace_type_t type);
/* Wait until at least `count` events of `type` were recorded.  Returns 0,
 * or -1 once timeout_ms passed (a failure, never a synchronisation). */
int rec_wait(rec_t *r, pp_trace_type_t type, size_t count, int timeout_ms);
/* Index of the first event of type at or after `from`, or -1. */
long rec_find(rec_t *r, pp_trace_type_t type, size_t from);

/* A pool of `size` fixtures/bad_worker.py MODE (see its docstring), which
 * restarts fast: backoff [10ms, 100ms], kill_grace 300ms, request_timeout
 * 500ms. */
pp_config_t *bad_worker_config(const char *mode, int size);

/* A FIFO that echo_handlers.py's `gate` handler blocks on until
 * fifo_release opens it for writing and closes it (that open blocks until
 * the handler has it open for reading). */
void fifo_make(char *path, size_t len, const char *tag);
void fifo_release(const char *path);

/* A pool paused (SIGSTOP, a slow VM) while a reply arrives, made exact:
 * with late_hook as the fault hook and data a late_t, the first time the
 * pool reaches fault point `point` the hook releases `fifo` (a `gate`
 * handler's) and returns only once the reply is in slot 0's reply pipe,
 * unread.  fired and readable say what happened. */
typedef struct late {
  const char *point;
  const char *fifo;
  int fired, readable;
} late_t;
void late_hook(pp_pool_t *pool, const char *point, void *data);
/* The pool's workers were all kept: no restart, no error, no exit event
 * in rec. */
void assert_workers_kept(pp_pool_t *pool, rec_t *rec);

/* Options that record into r and keep worker logs quiet unless
 * PP_TEST_VERBOSE is set. */
pp_pool_options_t rec_options(rec_t *r);

/* pp_pool_open with r's options (r initialised first), or fail the test
 * with the diag; cfg is freed. */
pp_pool_t *rec_pool_open(rec_t *r, pp_config_t *cfg);

/* Full path of a fixture file (static buffer per call site is not safe
 * across threads; the result is malloc'd and freed by the caller). */
char *fixture_path(const char *name);

/* A config for `size` real Python workers running a fixture handler module
 * through bridge/python/portpool_worker.py.  Fails the test on error. */
pp_config_t *python_config(const char *handlers, int size);
/* Set key=value on cfg, failing the test on error. */
void cfg_set(pp_config_t *cfg, const char *key, const char *value);

/* Failure guards (waits that only time out when something is wrong) are
 * multiplied by PP_TEST_TIME_SCALE, for slow runs such as valgrind's. */
int test_time_scale(void);

/* The path in environment variable `name` (PP_PYTHON, PP_FIXTURES,
 * PP_WORKER_PY, PP_POOLCTL, PP_EMBED), which defaults to the one this build
 * knows; fails the test with a message saying what to set when it is
 * missing or names nothing. */
const char *test_path(const char *name);

/* Environment integer with a default (POOL_SIZE, CLIENTS, ...). */
int env_int(const char *name, int dflt);

/* 1 if a process exists (kill(pid, 0)). */
int pid_alive(int pid);
/* Wait until the pid is gone, up to timeout_ms.  Returns 0 or -1. */
int wait_pid_gone(int pid, int timeout_ms);
/* How many lines of file (fixtures' PP_TEST_MARKS) are "what PID". */
int marks_count(const char *file, const char *what);

#endif
