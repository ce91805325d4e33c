/* drain.c -- `poolctl drain` (stop handing out workers, then wait until
 * no worker is lent out) and `poolctl undrain` (serve again). */
#include "poolctl.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

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
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  int undrain = strcmp(cmd->name, "undrain") == 0, r;
  pc_opwait_t w = PC_OPWAIT_DEFAULT;
  pc_conn_t conn, watch;

  if ((r = pc_opwait_parse(cmd, argc, argv, &w, NULL, NULL)) >= 0)
    return r;
  if (optind < argc)
    return pc_usage_error(cmd, "%s: unexpected argument '%s'", cmd->name,
                          argv[optind]);
  if (undrain)
    w.wait = 0;
  if ((r = pc_target(g, path, sizeof(path))) != PC_EXIT_OK)
    return r;
  watch.fd = -1;
  if (w.wait && (r = pc_watch_open(path, PC_WAIT_EVENTS, &watch)) != 0)
    return r;
  if ((r = pc_conn_open(path, &conn)) != PC_EXIT_OK)
    goto out;
  r = pc_conn_simple(&conn, cmd->name, PC_OP_TIMEOUT_MS, NULL);
  if (r == PC_EXIT_OK && w.wait)
    r = pc_wait_status(&conn, &watch, "drain", drained, NULL, w.timeout_ms);
  pc_conn_close(&conn);
out:
  if (watch.fd >= 0)
    pc_conn_close(&watch);
  return r;
}
