/* restart.c -- `poolctl restart [ID|--all]`: a rolling replacement of one
 * worker or of all, each new worker started before the old one leaves,
 * then wait until every one named serves with a newer generation. */
#include "poolctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A restart of one worker the pool does not have says so plainly. */
static void refused(json_t *reply, void *data) {
  const pc_rolled_t *rolled = data;

  if (strcmp(pc_str(reply, "error"), "EINVAL") == 0 && rolled->id >= 0)
    pc_err("restart: the pool has no worker %d", rolled->id);
  else
    pc_print_reply_error(reply);
}

int pc_restart(const pc_command_t *cmd, int argc, char **argv,
               const pc_global_t *g) {
  pc_opwait_t w = PC_OPWAIT_DEFAULT;
  pc_rolled_t rolled = {-1, NULL, 0};
  pc_op_t op = {.what = "restart",
                .done = pc_rolled_done,
                .data = &rolled,
                .begin = pc_rolled_begin,
                .refused = refused};
  int all = 0, r;
  long v;

  if ((r = pc_opwait_parse(cmd, argc, argv, &w, "all", &all)) >= 0)
    return r;
  if (argc - optind > 1)
    return pc_usage_error(cmd, "restart: unexpected argument '%s'",
                          argv[optind + 1]);
  if (optind < argc) {
    if (all)
      return pc_usage_error(cmd, "restart: give an ID or --all, not both");
    if (pc_parse_count(cmd, "ID", argv[optind], &v) != 0)
      return PC_EXIT_USAGE;
    if (v > 4095)
      return pc_usage_error(cmd, "restart: no worker %ld", v);
    rolled.id = (int)v;
  }
  /* pc_rolled_begin notes the generations before, to know when each
   * worker was replaced. */
  r = pc_op(g, &w, json_pack("{s:s, s:i}", "op", "restart", "slot", rolled.id),
            &op);
  free(rolled.before);
  return r;
}
