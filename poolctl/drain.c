/* drain.c -- `poolctl drain` (stop handing out workers, then wait until
 * no worker is lent out) and `poolctl undrain` (serve again). */
#include "poolctl.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static int drained(json_t *st, void *data, char *why, size_t whylen) {
  (void)data;
  if (pc_num(st, "leased") == 0 && pc_num(st, "busy") == 0)
    return 1;
  snprintf(why, whylen,
           "%" JSON_INTEGER_FORMAT " workers lent out, %" JSON_INTEGER_FORMAT
           " of them busy",
           pc_num(st, "leased") + pc_num(st, "busy"), pc_num(st, "busy"));
  return 0;
}

int pc_drain(const pc_command_t *cmd, int argc, char **argv,
             const pc_global_t *g) {
  pc_opwait_t w = PC_OPWAIT_DEFAULT;
  pc_op_t op = {.what = "drain", .done = drained};
  int r;

  if ((r = pc_opwait_parse(cmd, argc, argv, &w, NULL, NULL)) >= 0)
    return r;
  if (optind < argc)
    return pc_usage_error(cmd, "%s: unexpected argument '%s'", cmd->name,
                          argv[optind]);
  if (strcmp(cmd->name, "undrain") == 0)
    w.wait = 0;
  return pc_op(g, &w, json_pack("{s:s}", "op", cmd->name), &op);
}
