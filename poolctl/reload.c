/* reload.c -- `poolctl reload`: have the serving process re-read its
 * config (what SIGHUP does to `poolctl serve`), then wait for the pool to
 * report the reload and for every worker to be replaced. */
#include "poolctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/un.h>

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
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  pc_opwait_t w = PC_OPWAIT_DEFAULT;
  pc_rolled_t rolled = {-1, NULL, 0};
  pc_conn_t conn, watch;
  int r;

  if ((r = pc_opwait_parse(cmd, argc, argv, &w, NULL, NULL)) >= 0)
    return r;
  if (optind < argc)
    return pc_usage_error(cmd, "reload: unexpected argument '%s'",
                          argv[optind]);
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
  if ((r = pc_conn_simple(&conn, "reload", PC_OP_TIMEOUT_MS, NULL)) != 0 ||
      !w.wait)
    goto out;
  /* A config the server cannot load leaves it as it was, with the reason
   * in its log: then no reload event comes. */
  if ((r = pc_wait_event(&watch, "reload", "reload", w.timeout_ms)) != 0) {
    pc_err("reload: the pool kept its config; its log says why");
    goto out;
  }
  r = pc_wait_status(&conn, &watch, "reload", reload_done, &rolled,
                     w.timeout_ms);
out:
  free(rolled.before);
  pc_conn_close(&conn);
out_watch:
  if (watch.fd >= 0)
    pc_conn_close(&watch);
  return r;
}
