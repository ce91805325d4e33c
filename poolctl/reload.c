/* reload.c -- `poolctl reload`: have the serving process re-read its
 * config (what SIGHUP does to `poolctl serve`), then wait for the pool to
 * report the reload and for every worker to be replaced. */
#include "poolctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

/* Done when every worker was replaced; failed at once when the pool rolled
 * the reload back (a new worker failed to boot): it says why. */
static int reload_done(json_t *st, void *data, char *why, size_t whylen) {
  const char *undone = json_string_value(json_object_get(st, "reload_error"));

  if (undone && *undone) {
    snprintf(why, whylen, "%s; the pool kept its previous config", undone);
    return -1;
  }
  return pc_rolled_done(st, data, why, whylen);
}

int pc_reload(const pc_command_t *cmd, int argc, char **argv,
              const pc_global_t *g) {
  pc_opwait_t w = PC_OPWAIT_DEFAULT;
  pc_rolled_t rolled = {-1, NULL, 0};
  /* A config the server cannot load leaves it as it was, with the reason
   * in its log: then no reload event comes. */
  pc_op_t op = {.what = "reload",
                .done = reload_done,
                .data = &rolled,
                .begin = pc_rolled_begin,
                .event = "reload",
                .no_event = "the pool kept its config; its log says why"};
  int r;

  if ((r = pc_opwait_parse(cmd, argc, argv, &w, NULL, NULL)) >= 0)
    return r;
  if (optind < argc)
    return pc_usage_error(cmd, "reload: unexpected argument '%s'",
                          argv[optind]);
  r = pc_op(g, &w, json_pack("{s:s}", "op", "reload"), &op);
  free(rolled.before);
  return r;
}
