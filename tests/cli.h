/* cli.h -- support for tests that drive poolctl as users do: child
 * processes with their output collected, a `poolctl serve` child whose
 * output lines are waited on, and raw clients of the control socket.
 * Every wait is on an event (a line, a reply, an exit) with a deadline that
 * only passes on failure. */
#ifndef PP_TEST_CLI_H
#define PP_TEST_CLI_H

#include "helpers.h"

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

/* Generous: only a broken build takes this long.  cli.c's own waits
 * multiply it by test_time_scale() (PP_TEST_TIME_SCALE). */
#define CLI_WAIT_MS 60000

/* CLOCK_MONOTONIC in milliseconds. */
int64_t cli_now_ms(void);
/* Milliseconds left until deadline (cli_now_ms() time), 0 once it passed. */
int cli_remaining(int64_t deadline);

/* The poolctl under test ($PP_POOLCTL). */
const char *cli_poolctl_path(void);

/* Spawn argv with stdin from /dev/null; stdout and stderr on new pipes
 * (*out / *err) or /dev/null when NULL (stderr inherited when NULL and
 * PP_TEST_VERBOSE is set). */
pid_t cli_spawn(char *const argv[], int *out, int *err);
/* Reap the child; its exit status, or minus the signal that ended it. */
int cli_wait_exit(pid_t pid);

typedef struct cli_run {
  int code; /* exit status, or minus the signal that ended it */
  char *out;
  char *err;
} cli_run_t;

/* Run argv to completion, collecting stdout and stderr. */
void cli_run_argv(cli_run_t *r, char *const argv[]);
/* Run poolctl with the arguments given (NULL-terminated). */
void cli_poolctl(cli_run_t *r, ...);
void cli_run_free(cli_run_t *r);

/* A line reader on a child's pipe: wait for the next line that starts
 * with prefix, past the ones already matched. */
typedef struct cli_lines {
  int fd;
  char *buf;
  size_t len, cap;
  size_t seen; /* lines before this offset were consumed */
} cli_lines_t;

void cli_lines_init(cli_lines_t *l, int fd);
void cli_lines_free(cli_lines_t *l);
/* The matching line (NUL-terminated, valid until the next call); fails
 * the test at EOF or after CLI_WAIT_MS. */
const char *cli_lines_wait(cli_lines_t *l, const char *prefix);
/* The same for the next line that contains needle anywhere. */
const char *cli_lines_find(cli_lines_t *l, const char *needle);
/* Read until EOF (the child closed the pipe); returns everything unseen. */
const char *cli_lines_rest(cli_lines_t *l);

/* Run the children spawned from now on with tests/shim.c preloaded and
 * its act var=value on (var NULL: preload nothing again). */
void cli_shim(const char *var, const char *value);

/* A `poolctl serve` child. */
typedef struct cli_server {
  pid_t pid;
  cli_lines_t out, err;
} cli_server_t;

/* Start `poolctl serve ARGS...` (NULL-terminated) and wait for "ready:". */
void cli_server_start(cli_server_t *s, ...);
/* SIGKILL it if it still runs (after a failure), and close its pipes. */
void cli_server_kill(cli_server_t *s);
/* Stop it as an operator does (SIGTERM): it must exit 0; then as
 * cli_server_kill. */
void cli_server_stop(cli_server_t *s);

/* A raw client of the control socket. */
typedef struct cli_conn {
  int fd;
  char buf[1 << 16];
  size_t len;
} cli_conn_t;

cli_conn_t *cli_conn_open(const char *path);
void cli_conn_close(cli_conn_t *c);
/* Send n bytes; 0, or -1 once the server hung up. */
int cli_conn_send_n(cli_conn_t *c, const char *s, size_t n);
/* Send a string; fails the test if the server hung up. */
void cli_conn_send(cli_conn_t *c, const char *s);
/* The next line, parsed; NULL at EOF or a reset.  Fails the test on a
 * line that is not JSON, half a line at EOF, or no line within
 * CLI_WAIT_MS. */
json_t *cli_conn_recv(cli_conn_t *c);
/* 1 once the server has hung up on c (nothing read from it), 0 when it
 * has not within timeout_ms. */
int cli_conn_hup(cli_conn_t *c, int timeout_ms);
/* One status request; the status object (owned). */
json_t *cli_conn_status(cli_conn_t *c);

json_int_t cli_jint(json_t *o, const char *key);
const char *cli_jstr(json_t *o, const char *key);

/* Print why a test skips, then skip it. */
#define cli_skip(...)                                                          \
  do {                                                                         \
    fprintf(stderr, "[ SKIPPED  ] %s: ", __func__);                            \
    fprintf(stderr, __VA_ARGS__);                                              \
    fputc('\n', stderr);                                                       \
    skip();                                                                    \
  } while (0)

#endif
