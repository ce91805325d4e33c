/* scale.c -- `poolctl scale N|MIN..MAX [--force]`: grow or shrink the
 * pool live to N workers (a fixed pool), or make it elastic between MIN
 * and MAX; then wait until the workers it wants now (N, or an elastic
 * pool's current count within MIN..MAX) serve and nothing is starting,
 * retiring or stopping. */
#include "poolctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the wait wants: n workers, or (min > 0) the pool's target within
 * min..max. */
typedef struct want {
  int n, min, max;
} want_t;

static int scaled(json_t *st, void *data, char *why, size_t whylen) {
  const want_t *to = data;
  json_t *w;
  int want = to->n, serve = 0, moving = 0;
  const char *s;
  size_t i;

  json_array_foreach(json_object_get(st, "workers"), i, w) {
    s = pc_str(w, "state");
    if (pc_num(w, "retiring") || strcmp(s, "starting") == 0 ||
        strcmp(s, "draining") == 0 || strcmp(s, "stopping") == 0)
      moving++;
    else if (strcmp(s, "idle") == 0 || strcmp(s, "leased") == 0 ||
             strcmp(s, "busy") == 0)
      serve++;
  }
  if (to->min > 0) {
    want = (int)pc_num(st, "target_size");
    if (want < to->min || want > to->max || pc_num(st, "size_min") != to->min ||
        pc_num(st, "size_max") != to->max) {
      snprintf(why, whylen, "the pool has not taken %d..%d yet", to->min,
               to->max);
      return 0;
    }
  }
  if (serve == want && moving == 0)
    return 1;
  snprintf(why, whylen, "%d of %d workers serving, %d starting or stopping",
           serve, want, moving);
  return 0;
}

/* 1 when arg is a whole number (into *out). */
static int whole_number(const char *arg, long *out) {
  char *end;

  errno = 0;
  *out = strtol(arg, &end, 10);
  return errno == 0 && end != arg && *end == '\0';
}

int pc_scale(const pc_command_t *cmd, int argc, char **argv,
             const pc_global_t *g) {
  pc_opwait_t w = PC_OPWAIT_DEFAULT;
  pc_op_t op = {.what = "scale", .done = scaled};
  want_t to = {0, 0, 0};
  json_t *req;
  const char *dots;
  char *end;
  int force = 0, r;
  long v, lo, hi;

  if ((r = pc_opwait_parse(cmd, argc, argv, &w, "force", &force)) >= 0)
    return r;
  if (optind >= argc)
    return pc_usage_error(cmd, "scale: how many workers? (N is missing)");
  if (argc - optind > 1)
    return pc_usage_error(cmd, "scale: unexpected argument '%s'",
                          argv[optind + 1]);
  op.data = &to;
  dots = strstr(argv[optind], "..");
  if (dots) {
    /* MIN..MAX: an elastic pool. */
    errno = 0;
    lo = strtol(argv[optind], &end, 10);
    if (errno != 0 || end != dots || end == argv[optind] ||
        !whole_number(dots + 2, &hi))
      return pc_usage_error(
          cmd, "scale: MIN..MAX wants two numbers from 1 to 4096, not '%s'",
          argv[optind]);
    if (lo < 1 || hi > 4096 || lo > hi)
      return pc_usage_error(
          cmd, "scale: MIN..MAX needs 1 <= MIN <= MAX <= 4096, not %ld..%ld",
          lo, hi);
    to.min = (int)lo;
    to.max = (int)hi;
    req = json_pack("{s:s, s:i, s:i, s:b}", "op", "scale", "min", to.min, "max",
                    to.max, "force", force);
    return pc_op(g, &w, req, &op);
  }
  if (!whole_number(argv[optind], &v))
    return pc_usage_error(
        cmd, "scale: N wants a number from 1 to 4096, not '%s'", argv[optind]);
  if (v < 1 || v > 4096)
    return pc_usage_error(cmd, "scale: N must be from 1 to 4096, not %ld", v);
  to.n = (int)v;
  req = json_pack("{s:s, s:i, s:b}", "op", "scale", "n", to.n, "force", force);
  return pc_op(g, &w, req, &op);
}
