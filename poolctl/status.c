/* status.c -- `poolctl status`: ask the pool for its status and print it as
 * a table (header lines, then one row per worker), as the status object on
 * one JSON line (--json), or as OpenMetrics text (--prometheus); --watch
 * repeats it every interval, in place on a terminal. */
#include "poolctl.h"

#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#define STATUS_TIMEOUT_MS 10000

int pc_parse_interval(const pc_command_t *cmd, const char *arg, long *out) {
  char *end;
  double v, unit = 1;

  v = strtod(arg, &end);
  if (end != arg && strcmp(end, "s") == 0)
    unit = 1000;
  else if (end != arg && strcmp(end, "m") == 0)
    unit = 60000;
  else if (end != arg && strcmp(end, "h") == 0)
    unit = 3600000;
  else if (end == arg || (*end && strcmp(end, "ms") != 0))
    v = -1;
  v *= unit;
  if (!(v >= 100 && v <= 86400000))
    return pc_usage_error(
        cmd,
        "%s: --interval wants a duration from 100ms to 24h "
        "(500ms, 2s, 1.5m, 1h; a bare number is milliseconds), "
        "not '%s'",
        cmd->name, arg);
  *out = (long)v;
  return PC_EXIT_OK;
}

/* Like supervisorctl status: a pool that cannot serve, or a worker slot
 * that gave up, is not a success. */
static int unhealthy(json_t *st) {
  const char *state = json_string_value(json_object_get(st, "state"));

  return (state && strcmp(state, "degraded") == 0) || pc_num(st, "fatal") > 0;
}

/* Set by SIGINT/SIGTERM while watching: leave after the current frame. */
static volatile sig_atomic_t stop_watch;

static void on_stop_signal(int sig) {
  (void)sig;
  stop_watch = 1;
}

static void catch_stop(void) {
  struct sigaction sa;

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: the wait between frames ends */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

enum { FMT_TABLE, FMT_JSON, FMT_PROMETHEUS };

static int print_one(json_t *st, int fmt, const pc_cpu_t *prev, int color) {
  char *text;

  switch (fmt) {
  case FMT_JSON:
    text = json_dumps(st, JSON_COMPACT);
    if (text == NULL) {
      pc_err("out of memory");
      return PC_EXIT_ERROR;
    }
    printf("%s\n", text);
    free(text);
    break;
  case FMT_PROMETHEUS:
    pc_print_openmetrics(stdout, st);
    break;
  default:
    pc_print_status(stdout, st, prev, color);
    break;
  }
  return PC_EXIT_OK;
}

int pc_status(const pc_command_t *cmd, int argc, char **argv,
              const pc_global_t *g) {
  static const struct option longopts[] = {
      {"json", no_argument, NULL, 'j'},
      {"prometheus", no_argument, NULL, 'p'},
      {"watch", no_argument, NULL, 'w'},
      {"interval", required_argument, NULL, 'i'},
      {"count", required_argument, NULL, 'c'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  long interval = 1000, count = -1, frame;
  int c, fmt = FMT_TABLE, watch = 0, r, tty, color, sick = 0;
  pc_cpu_t prev = {0}, cur = {0}, tmp;
  json_t *reply = NULL, *st;
  pc_conn_t conn;

  while ((c = getopt_long(argc, argv, ":wh", longopts, NULL)) != -1) {
    switch (c) {
    case 'j':
    case 'p':
      if (fmt != FMT_TABLE && fmt != (c == 'j' ? FMT_JSON : FMT_PROMETHEUS))
        return pc_usage_error(cmd,
                              "status: --json and --prometheus exclude each "
                              "other");
      fmt = c == 'j' ? FMT_JSON : FMT_PROMETHEUS;
      break;
    case 'w':
      watch = 1;
      break;
    case 'i':
      if ((r = pc_parse_interval(cmd, optarg, &interval)) != 0)
        return r;
      watch = 1;
      break;
    case 'c':
      if ((r = pc_parse_count(cmd, "--count", optarg, &count)) != 0)
        return r;
      if (count < 1)
        return pc_usage_error(cmd, "status: --count is at least 1");
      watch = 1;
      break;
    case 'h':
      pc_command_help(cmd, stdout);
      return PC_EXIT_OK;
    default:
      return pc_getopt_error(cmd, c, argv);
    }
  }
  if (optind < argc)
    return pc_usage_error(cmd, "status: unexpected argument '%s'",
                          argv[optind]);
  if ((r = pc_target(g, path, sizeof(path))) != PC_EXIT_OK)
    return r;
  if ((r = pc_conn_open(path, &conn)) != PC_EXIT_OK)
    return r;
  tty = isatty(STDOUT_FILENO);
  color = pc_use_color();
  if (watch)
    catch_stop();
  for (frame = 0; count < 0 || frame < count; frame++) {
    if ((r = pc_conn_simple(&conn, "status", STATUS_TIMEOUT_MS, &reply)) !=
        PC_EXIT_OK)
      break;
    st = json_object_get(reply, "status");
    if (!json_is_object(st)) {
      pc_err("the pool's reply has no status");
      r = PC_EXIT_ERROR;
      break;
    }
    if (watch && tty && fmt != FMT_JSON)
      fputs("\033[H\033[2J", stdout); /* home, clear: redraw in place */
    else if (watch && frame > 0 && fmt == FMT_TABLE)
      fputc('\n', stdout);
    if (pc_cpu_sample(&cur, st) != 0) {
      pc_err("out of memory");
      r = PC_EXIT_ERROR;
      break;
    }
    r = print_one(st, fmt, frame > 0 ? &prev : NULL, color);
    sick = unhealthy(st);
    json_decref(reply);
    reply = NULL;
    fflush(stdout);
    tmp = prev;
    prev = cur;
    cur = tmp;
    if (r != PC_EXIT_OK || !watch || stop_watch ||
        (count >= 0 && frame + 1 >= count))
      break;
    /* The refresh interval of a display, not a synchronisation: a signal
     * ends it early. */
    poll(NULL, 0, (int)interval);
    if (stop_watch)
      break;
  }
  json_decref(reply);
  pc_cpu_free(&prev);
  pc_cpu_free(&cur);
  pc_conn_close(&conn);
  return r == PC_EXIT_OK && sick ? PC_EXIT_DEGRADED : r;
}
