/* restart.c -- `poolctl restart [ID|--all]`: a rolling replacement of one
 * worker or of all, each new worker started before the old one leaves,
 * then wait until every one named serves with a newer generation. */
#include "poolctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

int pc_restart(const pc_command_t *cmd, int argc, char **argv,
               const pc_global_t *g) {
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  pc_opwait_t w = PC_OPWAIT_DEFAULT;
  pc_rolled_t rolled = {-1, NULL, 0};
  json_t *req, *reply = NULL;
  pc_conn_t conn, watch;
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
  if ((r = pc_target(g, path, sizeof(path))) != PC_EXIT_OK)
    return r;
  watch.fd = -1;
  if (w.wait && (r = pc_watch_open(path, PC_WAIT_EVENTS, &watch)) != 0)
    return r;
  if ((r = pc_conn_open(path, &conn)) != PC_EXIT_OK)
    goto out_watch;
  /* The generations before, to know when each worker was replaced. */
  if (w.wait && (r = pc_rolled_begin(&conn, &rolled)) != PC_EXIT_OK)
    goto out;
  req = json_pack("{s:s, s:i}", "op", "restart", "slot", rolled.id);
  if (req == NULL) {
    pc_err("out of memory");
    r = PC_EXIT_ERROR;
    goto out;
  }
  r = pc_conn_request(&conn, req, PC_OP_TIMEOUT_MS, &reply);
  json_decref(req);
  if (r != PC_EXIT_OK)
    goto out;
  if (!json_is_true(json_object_get(reply, "ok"))) {
    if (strcmp(pc_str(reply, "error"), "EINVAL") == 0 && rolled.id >= 0)
      pc_err("restart: the pool has no worker %d", rolled.id);
    else
      pc_print_reply_error(reply);
    r = PC_EXIT_ERROR;
    goto out;
  }
  if (w.wait)
    r = pc_wait_status(&conn, &watch, "restart", pc_rolled_done, &rolled,
                       w.timeout_ms);
out:
  free(rolled.before);
  json_decref(reply);
  pc_conn_close(&conn);
out_watch:
  if (watch.fd >= 0)
    pc_conn_close(&watch);
  return r;
}
