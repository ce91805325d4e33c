/* scale.c -- `poolctl scale N [--force]`: grow or shrink the pool live,
 * then wait until exactly N workers serve and nothing is starting,
 * retiring or stopping. */
#include "poolctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int scaled(json_t *st, void *data, char *why, size_t whylen) {
  json_t *w;
  int want = *(int *)data, serve = 0, moving = 0;
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
  json_t *req;
  int force = 0, n, r;
  long v;

  if ((r = pc_opwait_parse(cmd, argc, argv, &w, "force", &force)) >= 0)
    return r;
  if (optind >= argc)
    return pc_usage_error(cmd, "scale: how many workers? (N is missing)");
  if (argc - optind > 1)
    return pc_usage_error(cmd, "scale: unexpected argument '%s'",
                          argv[optind + 1]);
  if (!whole_number(argv[optind], &v))
    return pc_usage_error(
        cmd, "scale: N wants a number from 1 to 4096, not '%s'", argv[optind]);
  if (v < 1 || v > 4096)
    return pc_usage_error(cmd, "scale: N must be from 1 to 4096, not %ld", v);
  n = (int)v;
  op.data = &n;
  req = json_pack("{s:s, s:i, s:b}", "op", "scale", "n", n, "force", force);
  return pc_op(g, &w, req, &op);
}
