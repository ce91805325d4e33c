/* poolctl.h -- what the poolctl subcommands share: exit codes, the global
 * options, the command table's entry type, message helpers and the socket
 * path rules (main.c), and the blocking socket client (client.c). */
#ifndef POOLCTL_H
#define POOLCTL_H

#include <jansson.h>
#include <stdio.h>

/* The exit codes, documented in `poolctl --help`. */
#define PC_EXIT_MAP(X)                                                         \
  X(OK, 0, "ok")                                                               \
  X(ERROR, 1, "error (the request failed, the handler raised, ...)")           \
  X(USAGE, 2, "usage error (bad option or argument, bad config)")              \
  X(NOT_RUNNING, 3, "no pool running at the socket")

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
/* A socket directory inside /tmp must be ours and mode 0700 (or not exist
 * yet).  Returns PC_EXIT_OK, or PC_EXIT_ERROR with a message printed. */
int pc_check_socket_dir(const char *path);
/* 1 when colour may be used on stdout: a terminal, and NO_COLOR unset. */
int pc_use_color(void);

/* ---- client.c: one request, one reply, over plain blocking sockets */

/* Send req (not consumed) as one line to the pool at path and parse the
 * one-line reply into *reply.  timeout_ms < 0 waits as long as the pool
 * takes.  Returns PC_EXIT_OK, PC_EXIT_NOT_RUNNING (nothing listens at
 * path) or PC_EXIT_ERROR; the message is printed. */
int pc_request(const char *path, json_t *req, long timeout_ms, json_t **reply);
/* Print a {"ok":false,...} reply as "poolctl: MESSAGE (ERROR)". */
void pc_print_reply_error(json_t *reply);

#endif
