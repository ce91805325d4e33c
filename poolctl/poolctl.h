/* poolctl.h -- what the poolctl subcommands share: exit codes, the global
 * options, the command table's entry type, message helpers and the socket
 * path rules (main.c), the blocking socket client (client.c), waiting on a
 * pool without sleeping and the operating commands' common run (wait.c),
 * and how status is shown (format.c, metrics.c).  One file per subcommand
 * besides these. */
#ifndef POOLCTL_H
#define POOLCTL_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "portpool.h"

/* The exit codes, documented in `poolctl --help`. */
#define PC_EXIT_MAP(X)                                                         \
  X(OK, 0, "ok")                                                               \
  X(ERROR, 1, "error (the request failed, the handler raised, ...)")           \
  X(USAGE, 2, "usage error (bad option or argument, bad config)")              \
  X(NOT_RUNNING, 3, "no pool running at the socket")                           \
  X(BOOT, 3, "serve: a worker failed to boot (as gunicorn)")                   \
  X(DEGRADED, 4, "status: the pool is degraded or a worker slot is fatal")

typedef enum {
#define PC__EXIT_ENUM(name, value, text) PC_EXIT_##name = (value),
  PC_EXIT_MAP(PC__EXIT_ENUM)
#undef PC__EXIT_ENUM
} pc_exit_t;

/* Options every subcommand accepts, before or after its name. */
typedef struct pc_global {
  const char *socket; /* -S, --socket PATH; NULL when not given */
  const char *name;   /* -n, --name NAME; NULL when not given */
} pc_global_t;

typedef struct pc_command pc_command_t;

/* A subcommand.  argv[0] is the command's name; the global options have
 * been taken out.  Returns a pc_exit_t. */
typedef int (*pc_run_fn)(const pc_command_t *cmd, int argc, char **argv,
                         const pc_global_t *g);

struct pc_command {
  const char *name;
  pc_run_fn run;
  const char *usage;   /* "call CMD [JSON] [--timeout MS]" */
  const char *summary; /* one line for the command list */
  const char *help;    /* option lines for `poolctl CMD --help` */
};

int pc_serve(const pc_command_t *cmd, int argc, char **argv,
             const pc_global_t *g);
int pc_status(const pc_command_t *cmd, int argc, char **argv,
              const pc_global_t *g);
int pc_call(const pc_command_t *cmd, int argc, char **argv,
            const pc_global_t *g);
int pc_top(const pc_command_t *cmd, int argc, char **argv,
           const pc_global_t *g);
int pc_trace(const pc_command_t *cmd, int argc, char **argv,
             const pc_global_t *g);
int pc_scale(const pc_command_t *cmd, int argc, char **argv,
             const pc_global_t *g);
int pc_restart(const pc_command_t *cmd, int argc, char **argv,
               const pc_global_t *g);
int pc_drain(const pc_command_t *cmd, int argc, char **argv,
             const pc_global_t *g); /* drain and undrain */
int pc_stop(const pc_command_t *cmd, int argc, char **argv,
            const pc_global_t *g);
int pc_reload(const pc_command_t *cmd, int argc, char **argv,
              const pc_global_t *g);

/* ---- main.c: messages and option parsing helpers */

/* "poolctl: MESSAGE\n" on stderr. */
void pc_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error: the message, then the command's usage line, on stderr.
 * Returns PC_EXIT_USAGE. */
int pc_usage_error(const pc_command_t *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* `poolctl CMD --help` text on out. */
void pc_command_help(const pc_command_t *cmd, FILE *out);
/* Report a getopt_long failure (its return value c) for cmd.  Returns
 * PC_EXIT_USAGE. */
int pc_getopt_error(const pc_command_t *cmd, int c, char **argv);

/* ---- main.c: the socket path */

/* The default socket of pool `name`: $XDG_RUNTIME_DIR/portpool/NAME.sock,
 * or /tmp/portpool-UID/NAME.sock.  Returns 0, or -1 when it does not fit. */
int pc_default_socket(const char *name, char *buf, size_t len);
/* The socket a client command talks to: -S, else the default for -n NAME
 * (default "portpool").  Returns 0 or -1 (message printed). */
int pc_client_socket(const pc_global_t *g, char *buf, size_t len);
/* A socket directory must be writable by nobody but its owner (or not
 * exist yet), as the server requires.  Its owner must be us or root,
 * except for a path the user named (-S): a server of another user's that
 * lists us in control.allow_uids lives in that user's directory, and
 * pc_conn_open then trusts exactly that user.  Returns PC_EXIT_OK, or
 * PC_EXIT_ERROR with a message printed. */
int pc_check_socket_dir(const char *path, int named);
/* 1 when colour may be used on stdout: a terminal, and NO_COLOR unset. */
int pc_use_color(void);

/* Parse a non-negative integer option value (milliseconds, a count).
 * Returns 0, or a usage error (printed) as PC_EXIT_USAGE. */
/* --interval: a duration from 100ms to 24h, "500ms", "2s", "1.5s", "1m";
 * a bare number is milliseconds.  Returns 0 or a usage error (printed). */
int pc_parse_interval(const pc_command_t *cmd, const char *arg, long *out);
int pc_parse_count(const pc_command_t *cmd, const char *opt, const char *arg,
                   long *out);
/* The socket path of a client command, with its directory checked.
 * Returns PC_EXIT_OK or an exit code (message printed). */
int pc_target(const pc_global_t *g, char *buf, size_t len);

/* ---- client.c: the control socket over plain blocking sockets */

/* One connection to a pool. */
typedef struct pc_conn {
  int fd;
  int pid; /* the server's process, from SO_PEERCRED */
  const char *path;
  char *buf;
  size_t len, cap, scanned;
  int used; /* a request went out on it */
} pc_conn_t;

/* What pc_conn_line returns besides the exit codes. */
#define PC_TIMEOUT (-1) /* nothing within the timeout */
#define PC_EOF (-2)     /* the pool closed the connection */
#define PC_EINTR (-3)   /* a signal arrived (only with intr set) */

/* Connect to the pool at path and check it runs as our user.  Returns
 * PC_EXIT_OK, PC_EXIT_NOT_RUNNING (nothing listens at path) or
 * PC_EXIT_ERROR; the message is printed. */
int pc_conn_open(const char *path, pc_conn_t *c);
void pc_conn_close(pc_conn_t *c);
/* Send req (not consumed) as one line.  Returns PC_EXIT_OK or
 * PC_EXIT_ERROR (printed). */
int pc_conn_send(pc_conn_t *c, json_t *req);
/* The next line, NUL-terminated and valid until the next call, waiting
 * up to timeout_ms (< 0: no limit).  Returns PC_EXIT_OK, PC_TIMEOUT,
 * PC_EOF, PC_EINTR (when intr is set and a signal interrupted the wait)
 * or PC_EXIT_ERROR (printed). */
int pc_conn_line(pc_conn_t *c, long timeout_ms, int intr, char **line);
/* The next line parsed as a JSON object.  Returns PC_EXIT_OK or
 * PC_EXIT_ERROR; a timeout or EOF is printed as an error. */
int pc_conn_recv(pc_conn_t *c, long timeout_ms, json_t **reply);
/* Send req and read its reply.  When the server closed the connection
 * before taking req (it was refused: too many connections, a uid not
 * allowed), the line it wrote first is the reply. */
int pc_conn_request(pc_conn_t *c, json_t *req, long timeout_ms, json_t **reply);
/* Send text (one request line, without its newline) and point *line at
 * the reply line as the server wrote it (valid until the next call on c).
 * Returns PC_EXIT_OK or PC_EXIT_ERROR (printed). */
int pc_conn_request_text(pc_conn_t *c, const char *text, size_t n,
                         long timeout_ms, char **line);
/* A request {"op": op} with no arguments; the reply must be ok (else it
 * is printed and PC_EXIT_ERROR returned).  *reply may be NULL.  A status
 * or ping on a connection the server closed for being idle
 * (control.idle_timeout) connects again and is sent once more. */
int pc_conn_simple(pc_conn_t *c, const char *op, long timeout_ms,
                   json_t **reply);

/* Send req (not consumed) as one line to the pool at path and parse the
 * one-line reply into *reply.  timeout_ms < 0 waits as long as the pool
 * takes.  Returns PC_EXIT_OK, PC_EXIT_NOT_RUNNING (nothing listens at
 * path) or PC_EXIT_ERROR; the message is printed. */
int pc_request(const char *path, json_t *req, long timeout_ms, json_t **reply);
/* Print a {"ok":false,...} reply as "poolctl: MESSAGE (ERROR)". */
void pc_print_reply_error(json_t *reply);

/* ---- wait.c: waiting for the pool to reach a state, without sleeping;
 * the operating commands (scale, restart, drain, reload) */

/* Decides from a status object whether the wait is over: 1 done, 0 not
 * yet (with what is still pending in why), -1 failed (why says how). */
typedef int (*pc_done_fn)(json_t *status, void *data, char *why, size_t whylen);

/* A trace stream opened before an operation, so that no event it causes
 * is missed; events wake the waits below. */
int pc_watch_open(const char *path, const char *filter, pc_conn_t *c);
/* Check status on conn until done says so, re-checking after each batch of
 * events on watch, for at most timeout_ms (< 0: no limit).  Returns
 * PC_EXIT_OK, or PC_EXIT_ERROR with the reason printed (prefixed by what,
 * e.g. "drain"). */
int pc_wait_status(pc_conn_t *conn, pc_conn_t *watch, const char *what,
                   pc_done_fn done, void *data, long timeout_ms);
/* Wait for an event named event on watch.  Returns PC_EXIT_OK, or
 * PC_EXIT_ERROR (printed: timeout, or the pool closed). */
int pc_wait_event(pc_conn_t *watch, const char *what, const char *event,
                  long timeout_ms);

/* The events that can end a wait (pc_watch_open's filter for the
 * operating commands). */
#define PC_WAIT_EVENTS                                                         \
  "spawn,hello,exit,restart,fatal,degraded,checkin,reclaim,reply,recycle,"     \
  "scale,drain,reload,kill,closing"

/* What the operating commands share: --no-wait and --timeout MS. */
typedef struct pc_opwait {
  int wait;        /* 0 with --no-wait */
  long timeout_ms; /* default 60000 */
} pc_opwait_t;
#define PC_OPWAIT_DEFAULT                                                      \
  { 1, 60000 }

/* Parse argv for an operating command: --no-wait, --timeout MS, --help,
 * and one extra flag --EXTRA_NAME setting *extra_flag (both may be NULL).
 * Returns -1 to go on (optind at the positionals) or an exit code. */
int pc_opwait_parse(const pc_command_t *cmd, int argc, char **argv,
                    pc_opwait_t *w, const char *extra_name, int *extra_flag);

/* How long an operating command waits for the server to answer. */
#define PC_OP_TIMEOUT_MS 10000

/* An operating command's own part: what it is called, and how it knows
 * the pool got there; the rest is pc_op's. */
typedef struct pc_op {
  const char *what; /* "scale": prefixes the wait's messages */
  pc_done_fn done;  /* decides the wait (pc_wait_status) */
  void *data;       /* given to every callback below */
  /* Optional: run on the request's connection before the request goes
   * out, when waiting (restart and reload note the generations).  Returns
   * an exit code, PC_EXIT_OK to go on; it prints its own errors. */
  int (*begin)(pc_conn_t *conn, void *data);
  /* Optional: prints a reply that is not ok, instead of
   * pc_print_reply_error. */
  void (*refused)(json_t *reply, void *data);
  /* Optional: an event to see on the trace stream before status decides
   * (reload's "reload"), and what to say after the wait's message when
   * it does not come. */
  const char *event;
  const char *no_event;
} pc_op_t;

/* Run an operating command: find the socket (pc_target), open the trace
 * stream when waiting (w->wait), connect, op->begin, send req and check
 * its reply is ok, then wait for op->event and for op->done within
 * w->timeout_ms.  req is taken (freed here); NULL stands for out of
 * memory.  Returns a pc_exit_t, any error printed. */
int pc_op(const pc_global_t *g, const pc_opwait_t *w, json_t *req,
          const pc_op_t *op);

/* Done when each row id of before (all when id < 0) serves again with a
 * newer generation, and nothing is retiring or starting. */
typedef struct pc_rolled {
  int id;
  uint32_t *before;
  int n;
} pc_rolled_t;
/* Ask c for status and note every worker's generation in the
 * pc_rolled_t data's before (malloc'd, n rows; the caller frees it), as
 * a pc_op_t begin.  An exit code (PC_EXIT_OK). */
int pc_rolled_begin(pc_conn_t *c, void *data);
int pc_rolled_done(json_t *st, void *data, char *why, size_t whylen);

/* ---- format.c: what status and top print */

json_int_t pc_num(json_t *obj, const char *key);
const char *pc_str(json_t *obj, const char *key);
/* 850ms, 42s, 3m12s, 2h05m, 3d04h. */
void pc_fmt_duration(uint64_t ms, char *buf, size_t len);
/* 512B, 14.2KiB, 14.2MiB, 1.5GiB. */
void pc_fmt_bytes(uint64_t b, char *buf, size_t len);
/* 850us, 12.3ms, 4.20s. */
void pc_fmt_us(uint64_t us, char *buf, size_t len);
/* The ANSI colour of a pool or worker state name, or NULL. */
const char *pc_state_color(const char *state);
#define PC_RESET "\033[0m"
/* A histogram from the status object ({count, sum_us, max_us, buckets})
 * into h; 0, or -1 when absent or malformed. */
int pc_histogram(json_t *obj, pp_histogram_t *h);

/* CPU use between two status samples: per worker slot, the pid and its
 * cpu_time_ms, at the pool's uptime_ms. */
typedef struct pc_cpu {
  uint64_t at_ms;
  int n;
  int *pid;
  uint64_t *cpu_ms;
} pc_cpu_t;
/* Remember st's numbers in s (growing it); 0 or -1 (out of memory). */
int pc_cpu_sample(pc_cpu_t *s, json_t *st);
/* CPU % of worker w of st since prev, or -1 when unknown. */
double pc_cpu_percent(const pc_cpu_t *prev, json_t *st, json_t *w);
void pc_cpu_free(pc_cpu_t *s);

/* The pool's header lines and worker table, as `poolctl status` prints
 * them, to out.  prev (may be NULL) turns the CPU column into %. */
void pc_print_status(FILE *out, json_t *st, const pc_cpu_t *prev, int color);
/* The two halves: the pool's lines, and the worker table. */
void pc_print_header(FILE *out, json_t *st, int color);
void pc_print_workers(FILE *out, json_t *st, const pc_cpu_t *prev, int color);

/* ---- metrics.c */

/* The status as OpenMetrics text (ending with "# EOF"). */
void pc_print_openmetrics(FILE *out, json_t *st);

#endif
