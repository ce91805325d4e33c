/* main.c -- poolctl's entry point: the command table, the global options
 * (-S/--socket, -n/--name, accepted before or after the command), help and
 * usage errors, and the socket path rules the commands share.  Each
 * command lives in its own file. */
#include "poolctl.h"

#include "distance.h"
#include "portpool.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const pc_command_t commands[] = {
    {"serve", pc_serve,
     "serve [-c FILE] [--set KEY=VALUE]... [--listen HOST:PORT] [-S PATH]",
     "run a pool in the foreground until SIGINT or SIGTERM",
     "  -c, --config FILE    load the pool's config from a YAML file "
     "(default:\n"
     "                       `size: auto` workers running the bundled\n"
     "                       example handlers)\n"
     "      --set KEY=VALUE  override one config key, as in the YAML\n"
     "                       (--set size=4 --set checkout.timeout=2s);\n"
     "                       repeatable, applied in order after the file\n"
     "  -n, --name NAME      same as --set name=NAME\n"
     "      --listen H:P     serve HTTP too (listen.address): POST\n"
     "                       /v1/call/NAME, GET /readyz /livez /metrics;\n"
     "                       beyond loopback it needs listen.token_file\n"
     "  -S, --socket PATH    the control socket (default: control.socket\n"
     "                       from the config, else the default path)\n"
     "signals: SIGINT or SIGTERM stop the pool gracefully; SIGHUP reloads:\n"
     "the config file is read again, the same --set overrides applied, and\n"
     "the workers replaced one by one without dropping a request\n"},
    {"status", pc_status, "status [--json|--prometheus] [--watch] [-S PATH]",
     "show the pool and each worker",
     "      --json           print the status object as one JSON line\n"
     "      --prometheus     print OpenMetrics text (counters, gauges,\n"
     "                       latency histograms) for a scraper\n"
     "  -w, --watch          repeat every interval (in place on a\n"
     "                       terminal); the CPU column turns into %\n"
     "      --interval D     the watch interval: 500ms, 2s, 1m, 1h (a bare\n"
     "                       number is ms; default 1s, 100ms to 24h)\n"
     "      --count N        stop after N refreshes\n"
     "  exits 4 when the pool is degraded or a worker slot is fatal\n"
     "  -n, --name NAME      the pool's name, for the default socket\n"
     "  -S, --socket PATH    the control socket\n"},
    {"top", pc_top, "top [--interval D] [-S PATH]",
     "a live full-screen view: workers, queue length over time, latency",
     "      --interval D     refresh interval: 500ms, 2s (a bare number is\n"
     "                       ms; default 1s, min 100ms)\n"
     "  keys: q or Ctrl-C leave; any other key refreshes at once\n"
     "  -n, --name NAME      the pool's name, for the default socket\n"
     "  -S, --socket PATH    the control socket\n"},
    {"call", pc_call, "call CMD [JSON] [--timeout MS] [-S PATH]",
     "call a handler on a worker and print its reply as JSON (a stream\n"
     "handler's items first, a line each, as they come)",
     "  CMD                  the handler function's name\n"
     "  JSON                 its argument (default null); put `--` before\n"
     "                       an argument that starts with '-'\n"
     "      --timeout MS     bound the whole call (checkout and request)\n"
     "      --traceback      on a handler error, print the traceback too\n"
     "  -n, --name NAME      the pool's name, for the default socket\n"
     "  -S, --socket PATH    the control socket\n"},
    {"trace", pc_trace, "trace [--filter EVENT,...] [--count N] [-S PATH]",
     "print the pool's lifecycle events as JSON lines, live",
     "      --filter LIST    only these events, comma-separated (spawn,\n"
     "                       hello, ready, exit, restart, fatal, degraded,\n"
     "                       checkout_wait, checkout, checkout_fail,\n"
     "                       request, reply, checkin, reclaim, stale_reply,\n"
     "                       kill, protocol_error, recycle, heartbeat_miss,\n"
     "                       scale, drain, reload, closing, closed, slow)\n"
     "      --count N        leave after N events\n"
     "  ends when the pool stops (exit 0) or on Ctrl-C\n"
     "  -n, --name NAME      the pool's name, for the default socket\n"
     "  -S, --socket PATH    the control socket\n"},
    {"scale", pc_scale, "scale N|MIN..MAX [--force] [--no-wait] [--timeout MS]",
     "grow or shrink the pool to N workers, or make it elastic, live",
     "  N                    the new number of workers (1 to 4096): a\n"
     "                       fixed pool\n"
     "  MIN..MAX             an elastic pool: it grows up to MAX while\n"
     "                       checkouts wait past scale.up_after and stops\n"
     "                       workers idle past scale.idle_timeout down to\n"
     "                       MIN (1 <= MIN <= MAX <= 4096)\n"
     "      --force          shrink at once: kill busy workers too (their\n"
     "                       calls fail); without it busy workers finish\n"
     "                       their request first, idle ones go first\n"
     "      --no-wait        return once the pool took the order\n"
     "      --timeout MS     wait at most this long (default 60000)\n"
     "  -n, --name NAME      the pool's name, for the default socket\n"
     "  -S, --socket PATH    the control socket\n"},
    {"restart", pc_restart, "restart [ID|--all] [--no-wait] [--timeout MS]",
     "replace workers one by one, keeping capacity",
     "  ID                   the worker slot to replace\n"
     "      --all            every worker (the default), a rolling restart\n"
     "                       that never takes more than\n"
     "                       worker.max_recycling out of service\n"
     "      --no-wait        return once the pool took the order\n"
     "      --timeout MS     wait at most this long (default 60000)\n"
     "  -n, --name NAME      the pool's name, for the default socket\n"
     "  -S, --socket PATH    the control socket\n"},
    {"drain", pc_drain, "drain [--no-wait] [--timeout MS]",
     "stop handing out workers and wait for the work in flight",
     "      --no-wait        return at once; new checkouts already fail\n"
     "      --timeout MS     wait at most this long (default 60000)\n"
     "  undo with `poolctl undrain`\n"
     "  -n, --name NAME      the pool's name, for the default socket\n"
     "  -S, --socket PATH    the control socket\n"},
    {"undrain", pc_drain, "undrain", "hand out workers again after a drain",
     "  -n, --name NAME      the pool's name, for the default socket\n"
     "  -S, --socket PATH    the control socket\n"},
    {"stop", pc_stop, "stop [--no-wait] [--timeout MS]",
     "stop the serving process gracefully and wait until it is gone",
     "      --no-wait        return once the stop was asked for\n"
     "      --timeout MS     wait at most this long (default 60000)\n"
     "  -n, --name NAME      the pool's name, for the default socket\n"
     "  -S, --socket PATH    the control socket\n"},
    {"reload", pc_reload, "reload [--no-wait] [--timeout MS]",
     "re-read the server's config and roll the workers onto it",
     "      --no-wait        return once the reload was asked for\n"
     "      --timeout MS     wait at most this long (default 60000)\n"
     "  the same as SIGHUP to `poolctl serve`; no request is dropped\n"
     "  -n, --name NAME      the pool's name, for the default socket\n"
     "  -S, --socket PATH    the control socket\n"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* ------------------------------------------------------------- messages */

void pc_err(const char *fmt, ...) {
  va_list ap;

  fflush(stdout);
  fputs("poolctl: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

int pc_usage_error(const pc_command_t *cmd, const char *fmt, ...) {
  va_list ap;

  fflush(stdout);
  fputs("poolctl: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (cmd)
    fprintf(stderr, "usage: poolctl %s\n", cmd->usage);
  fprintf(stderr, "Try 'poolctl %s%s--help'.\n", cmd ? cmd->name : "",
          cmd ? " " : "");
  return PC_EXIT_USAGE;
}

int pc_getopt_error(const pc_command_t *cmd, int c, char **argv) {
  const char *arg = argv[optind - 1];

  if (c == ':')
    return pc_usage_error(cmd, "%s: option '%s' needs a value", cmd->name, arg);
  if (optopt && strncmp(arg, "--", 2) != 0)
    return pc_usage_error(cmd, "%s: unknown option '-%c'", cmd->name, optopt);
  return pc_usage_error(cmd, "%s: unknown option '%s'", cmd->name, arg);
}

static void global_options(FILE *out) {
  fputs("global options (before or after the command):\n"
        "  -S, --socket PATH    the pool's control socket; default\n"
        "                       $XDG_RUNTIME_DIR/portpool/NAME.sock, or\n"
        "                       /tmp/portpool-UID/NAME.sock without\n"
        "                       XDG_RUNTIME_DIR\n"
        "  -n, --name NAME      the pool name in the default socket path\n"
        "                       (default: portpool)\n"
        "  -h, --help           show help (poolctl COMMAND --help for one\n"
        "                       command)\n"
        "  -V, --version        show the version\n",
        out);
}

static void exit_codes(FILE *out) {
  fputs("exit codes:\n", out);
#define PC__EXIT_HELP(name, value, text)                                       \
  fprintf(out, "  %d  %s\n", value, text);
  PC_EXIT_MAP(PC__EXIT_HELP)
#undef PC__EXIT_HELP
}

void pc_command_help(const pc_command_t *cmd, FILE *out) {
  fprintf(out, "usage: poolctl %s\n\n%c%s.\n\noptions:\n%s", cmd->usage,
          toupper((unsigned char)cmd->summary[0]), cmd->summary + 1, cmd->help);
  fputs("  -h, --help           show this help\n\n", out);
  exit_codes(out);
}

static void main_help(FILE *out) {
  size_t i;

  fputs("usage: poolctl [-S PATH] [-n NAME] COMMAND [ARGS...]\n\n"
        "Run a pool of pre-warmed Python workers (serve) and talk to it\n"
        "over its control socket.\n\ncommands:\n",
        out);
  for (i = 0; i < NCOMMANDS; i++)
    fprintf(out, "  %-8s %s\n           usage: poolctl %s\n", commands[i].name,
            commands[i].summary, commands[i].usage);
  fputs("  help     show this help, or one command's: poolctl help COMMAND\n\n",
        out);
  global_options(out);
  fputc('\n', out);
  exit_codes(out);
}

static const pc_command_t *find_command(const char *name) {
  size_t i;

  for (i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

/* The command nearest to a misspelt one (at most 2 edits, or a third of
 * its length), or NULL; the config's "did you mean" uses the same
 * distance. */
static const char *near_command(const char *name) {
  size_t i, d, len = strlen(name), best = SIZE_MAX;
  size_t limit = len / 3 > 2 ? len / 3 : 2;
  const char *near = NULL;

  for (i = 0; i < NCOMMANDS; i++) {
    d = pp__distance(name, len, commands[i].name, strlen(commands[i].name));
    if (d < best)
      best = d, near = commands[i].name;
  }
  return best <= limit && best < len ? near : NULL;
}

/* ---------------------------------------------------------- socket path */

int pc_default_socket(const char *name, char *buf, size_t len) {
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  int n;

  if (xdg && *xdg)
    n = snprintf(buf, len, "%s/portpool/%s.sock", xdg, name);
  else
    n = snprintf(buf, len, "/tmp/portpool-%u/%s.sock", (unsigned)geteuid(),
                 name);
  return n < 0 || (size_t)n >= len ? -1 : 0;
}

int pc_client_socket(const pc_global_t *g, char *buf, size_t len) {
  const char *name = g->name ? g->name : "portpool";

  if (g->socket) {
    if (strlen(g->socket) >= len) {
      pc_err("socket path too long: %s", g->socket);
      return -1;
    }
    memcpy(buf, g->socket, strlen(g->socket) + 1);
    return 0;
  }
  if (pc_default_socket(name, buf, len) != 0) {
    pc_err("the default socket path for pool '%s' is too long", name);
    return -1;
  }
  return 0;
}

int pc_check_socket_dir(const char *path, int named) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  struct stat st;
  size_t n;

  if (slash == NULL)
    return PC_EXIT_OK;
  n = slash == path ? 1 : (size_t)(slash - path);
  if (n >= sizeof(dir))
    return PC_EXIT_OK;
  memcpy(dir, path, n);
  dir[n] = '\0';
  /* The rule the server applies to the directory it binds in (OpenSSH's
   * StrictModes): ours or root's, and nobody else may write in it.  The
   * server's uid is checked on connecting too (SO_PEERCRED). */
  if (lstat(dir, &st) != 0)
    return PC_EXIT_OK; /* not there yet: the server creates it as 0700 */
  if (!S_ISDIR(st.st_mode)) {
    pc_err("unsafe socket directory %s: not a directory", dir);
    return PC_EXIT_ERROR;
  }
  if (!named && st.st_uid != geteuid() && st.st_uid != 0) {
    pc_err("unsafe socket directory %s: owned by uid %u, not by you (uid "
           "%u) or root (for another user's server, name its socket with "
           "-S)",
           dir, (unsigned)st.st_uid, (unsigned)geteuid());
    return PC_EXIT_ERROR;
  }
  if ((st.st_mode & 022) != 0) {
    pc_err("unsafe socket directory %s: mode %04o lets %s write in it "
           "(`chmod go-w %s`)",
           dir, (unsigned)(st.st_mode & 07777),
           (st.st_mode & 020) && (st.st_mode & 002) ? "group and others"
           : (st.st_mode & 020)                     ? "its group"
                                                    : "others",
           dir);
    return PC_EXIT_ERROR;
  }
  return PC_EXIT_OK;
}

int pc_use_color(void) {
  return isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;
}

int pc_parse_count(const pc_command_t *cmd, const char *opt, const char *arg,
                   long *out) {
  char *end;
  long v;

  errno = 0;
  v = strtol(arg, &end, 10);
  if (errno || end == arg || *end || v < 0)
    return pc_usage_error(cmd, "%s: %s wants a number >= 0, not '%s'",
                          cmd->name, opt, arg);
  *out = v;
  return PC_EXIT_OK;
}

int pc_target(const pc_global_t *g, char *buf, size_t len) {
  if (pc_client_socket(g, buf, len) != 0)
    return PC_EXIT_ERROR;
  return pc_check_socket_dir(buf, g->socket != NULL);
}

/* ----------------------------------------------------------------- main */

/* Take -S/--socket and -n/--name out of argv wherever they are (until a
 * `--`), so that every command accepts them in any position. */
static int take_global(int argc, char **argv, pc_global_t *g, char **rest,
                       int *nrest, int *help, int *version) {
  const char **slot;
  int i, n = 0, dashdash = 0;
  const char *a;
  const char *cmd = NULL;

  for (i = 1; i < argc; i++) {
    a = argv[i];
    slot = NULL;
    if (!dashdash && strcmp(a, "--") == 0) {
      dashdash = 1;
    } else if (!dashdash &&
               (strcmp(a, "-S") == 0 || strcmp(a, "--socket") == 0)) {
      slot = &g->socket;
    } else if (!dashdash &&
               (strcmp(a, "-n") == 0 || strcmp(a, "--name") == 0)) {
      slot = &g->name;
    } else if (!dashdash && strncmp(a, "--socket=", 9) == 0) {
      g->socket = a + 9;
      continue;
    } else if (!dashdash && strncmp(a, "--name=", 7) == 0) {
      g->name = a + 7;
      continue;
    } else if (!dashdash && strncmp(a, "-S", 2) == 0) {
      g->socket = a + 2;
      continue;
    } else if (!dashdash && strncmp(a, "-n", 2) == 0) {
      g->name = a + 2;
      continue;
    } else if (cmd == NULL && !dashdash &&
               (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
      *help = 1;
      continue;
    } else if (cmd == NULL && !dashdash &&
               (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0)) {
      *version = 1;
      continue;
    } else if (cmd == NULL && a[0] == '-' && !dashdash) {
      return pc_usage_error(NULL, "unknown option '%s'", a);
    } else if (cmd == NULL) {
      cmd = a;
    }
    if (slot) {
      if (i + 1 >= argc)
        return pc_usage_error(cmd ? find_command(cmd) : NULL,
                              "option '%s' needs a value", a);
      *slot = argv[++i];
      if (**slot == '\0')
        return pc_usage_error(NULL, "option '%s' needs a non-empty value", a);
      continue;
    }
    if (cmd == NULL && dashdash)
      continue; /* a `--` before the command means nothing */
    rest[n++] = argv[i];
  }
  rest[n] = NULL;
  *nrest = n;
  return PC_EXIT_OK;
}

int main(int argc, char **argv) {
  pc_global_t g = {NULL, NULL};
  const pc_command_t *cmd;
  char **rest;
  int n = 0, help = 0, version = 0, r;

  rest = calloc((size_t)argc + 1, sizeof(*rest));
  if (rest == NULL) {
    pc_err("out of memory");
    return PC_EXIT_ERROR;
  }
  r = take_global(argc, argv, &g, rest, &n, &help, &version);
  if (r != PC_EXIT_OK)
    goto out;
  if (version) {
    printf("poolctl %d.%d.%d\n", PP_VERSION_MAJOR, PP_VERSION_MINOR,
           PP_VERSION_PATCH);
    goto out;
  }
  if (n > 0 && strcmp(rest[0], "help") == 0) {
    help = 1;
    memmove(rest, rest + 1, (size_t)n * sizeof(*rest));
    n--;
    if (n > 1) {
      r = pc_usage_error(NULL, "help takes at most one command");
      goto out;
    }
  }
  if (n == 0) {
    if (help) {
      main_help(stdout);
    } else {
      r = pc_usage_error(NULL, "no command given");
    }
    goto out;
  }
  cmd = find_command(rest[0]);
  if (cmd == NULL) {
    const char *near = near_command(rest[0]);
    if (near)
      r = pc_usage_error(NULL, "unknown command '%s'; did you mean '%s'?",
                         rest[0], near);
    else
      r = pc_usage_error(NULL, "unknown command '%s'", rest[0]);
    goto out;
  }
  if (help) {
    pc_command_help(cmd, stdout);
    goto out;
  }
  optind = 0; /* GNU getopt: start afresh on the command's argv */
  opterr = 0;
  r = cmd->run(cmd, n, rest, &g);
out:
  free(rest);
  if (fflush(stdout) != 0 && r == PC_EXIT_OK)
    r = PC_EXIT_ERROR;
  return r;
}
