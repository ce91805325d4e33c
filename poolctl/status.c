/* status.c -- `poolctl status`: ask the pool for its status and print it
 * as a table (a pool line, then one row per worker) or, with --json, as the
 * status object on one line. */
#include "poolctl/poolctl.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#define STATUS_TIMEOUT_MS 10000

#define C_RESET "\033[0m"

static const char *state_color(const char *state) {
  static const struct {
    const char *state, *color;
  } map[] = {{"idle", "\033[32m"},     {"ready", "\033[32m"},
             {"leased", "\033[36m"},   {"busy", "\033[36m"},
             {"starting", "\033[33m"}, {"warming", "\033[33m"},
             {"backoff", "\033[33m"},  {"fatal", "\033[31m"},
             {"degraded", "\033[31m"}, {"draining", "\033[2m"},
             {"stopping", "\033[2m"},  {"exited", "\033[2m"},
             {"closing", "\033[2m"},   {"closed", "\033[2m"}};
  size_t i;

  for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (strcmp(map[i].state, state) == 0)
      return map[i].color;
  return NULL;
}

/* A state name padded to width, coloured when allowed: pad first, so the
 * escape codes do not upset the columns. */
static void put_state(const char *state, int width, int color) {
  const char *c = color ? state_color(state) : NULL;

  if (c)
    printf("%s%-*s%s", c, width, state, C_RESET);
  else
    printf("%-*s", width, state);
}

static json_int_t num(json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  return json_is_integer(v) ? json_integer_value(v) : 0;
}

static const char *str(json_t *obj, const char *key) {
  const char *s = json_string_value(json_object_get(obj, key));
  return s ? s : "?";
}

/* 850ms, 42s, 3m12s, 2h05m, 3d04h. */
static void fmt_duration(uint64_t ms, char *buf, size_t len) {
  uint64_t s = ms / 1000;

  if (ms < 1000)
    snprintf(buf, len, "%" PRIu64 "ms", ms);
  else if (s < 60)
    snprintf(buf, len, "%" PRIu64 "s", s);
  else if (s < 3600)
    snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
  else if (s < 86400)
    snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
  else
    snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s / 3600 % 24);
}

/* 512B, 14.2KiB, 14.2MiB, 1.5GiB. */
static void fmt_bytes(uint64_t b, char *buf, size_t len) {
  static const char *units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = (double)b;
  int i = -1;

  if (b < 1024) {
    snprintf(buf, len, "%" PRIu64 "B", b);
    return;
  }
  while (v >= 1024 && i < 3) {
    v /= 1024;
    i++;
  }
  snprintf(buf, len, "%.1f%s", v, units[i]);
}

static void print_table(json_t *st, int color) {
  json_t *workers = json_object_get(st, "workers"), *w;
  char up[32], rss[32];
  size_t i;

  fmt_duration((uint64_t)num(st, "uptime_ms"), up, sizeof(up));
  printf("pool %s  ", str(st, "name"));
  put_state(str(st, "state"), 0, color);
  printf("  size %" JSON_INTEGER_FORMAT "  idle %" JSON_INTEGER_FORMAT
         "  leased %" JSON_INTEGER_FORMAT "  busy %" JSON_INTEGER_FORMAT
         "  starting %" JSON_INTEGER_FORMAT "  backoff %" JSON_INTEGER_FORMAT
         "  fatal %" JSON_INTEGER_FORMAT "  waiters %" JSON_INTEGER_FORMAT
         "  checkouts %" JSON_INTEGER_FORMAT "  timeouts %" JSON_INTEGER_FORMAT
         "  restarts %" JSON_INTEGER_FORMAT "  uptime %s\n",
         num(st, "size"), num(st, "idle"), num(st, "leased"), num(st, "busy"),
         num(st, "starting"), num(st, "backoff"), num(st, "fatal"),
         num(st, "waiters"), num(st, "checkouts"), num(st, "timeouts"),
         num(st, "restarts"), up);
  printf("\n%-3s %-8s %-9s %9s %9s %8s %9s  %s\n", "ID", "PID", "STATE",
         "REQUESTS", "RESTARTS", "UPTIME", "RSS", "LAST-EXIT");
  json_array_foreach(workers, i, w) {
    if (num(w, "uptime_ms") > 0)
      fmt_duration((uint64_t)num(w, "uptime_ms"), up, sizeof(up));
    else
      snprintf(up, sizeof(up), "-");
    if (num(w, "rss_bytes") > 0)
      fmt_bytes((uint64_t)num(w, "rss_bytes"), rss, sizeof(rss));
    else
      snprintf(rss, sizeof(rss), "-");
    printf("%-3" JSON_INTEGER_FORMAT " ", num(w, "id"));
    if (num(w, "pid") > 0)
      printf("%-8" JSON_INTEGER_FORMAT " ", num(w, "pid"));
    else
      printf("%-8s ", "-");
    put_state(str(w, "state"), 9, color);
    printf(" %9" JSON_INTEGER_FORMAT " %9" JSON_INTEGER_FORMAT " %8s %9s  %s\n",
           num(w, "requests"), num(w, "restarts"), up, rss,
           str(w, "last_exit"));
  }
}

int pc_status(const pc_command_t *cmd, int argc, char **argv,
              const pc_global_t *g) {
  static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  json_t *req = NULL, *reply = NULL, *st;
  int c, json = 0, r;
  char *text;

  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (c) {
    case 'j':
      json = 1;
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
  if (pc_client_socket(g, path, sizeof(path)) != 0)
    return PC_EXIT_ERROR;
  if ((r = pc_check_socket_dir(path)) != PC_EXIT_OK)
    return r;
  req = json_pack("{s:s}", "op", "status");
  if (req == NULL) {
    pc_err("out of memory");
    return PC_EXIT_ERROR;
  }
  r = pc_request(path, req, STATUS_TIMEOUT_MS, &reply);
  json_decref(req);
  if (r != PC_EXIT_OK)
    return r;
  st = json_object_get(reply, "status");
  if (!json_is_true(json_object_get(reply, "ok")) || !json_is_object(st)) {
    pc_print_reply_error(reply);
    json_decref(reply);
    return PC_EXIT_ERROR;
  }
  if (json) {
    text = json_dumps(st, JSON_COMPACT);
    if (text)
      printf("%s\n", text);
    free(text);
  } else {
    print_table(st, pc_use_color());
  }
  json_decref(reply);
  return PC_EXIT_OK;
}
