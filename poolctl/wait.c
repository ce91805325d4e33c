/* wait.c -- waiting for a pool to get somewhere (drained, scaled,
 * restarted, reloaded) without sleeping: a trace stream opened before the
 * operation wakes us, and a status request after each batch of events
 * decides.  Also the run every operating command shares (pc_op). */
#include "poolctl.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#define WAIT_STATUS_MS 10000

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long left(int64_t deadline) {
  int64_t l;

  if (deadline < 0)
    return -1;
  l = deadline - now_ms();
  return l > 0 ? (long)l : 0;
}

int pc_watch_open(const char *path, const char *filter, pc_conn_t *c) {
  json_t *req, *reply;
  int r;

  if ((r = pc_conn_open(path, c)) != PC_EXIT_OK)
    return r;
  req = json_pack("{s:s, s:s?}", "op", "trace", "filter", filter);
  if (req == NULL) {
    pc_err("out of memory");
    pc_conn_close(c);
    return PC_EXIT_ERROR;
  }
  r = pc_conn_request(c, req, WAIT_STATUS_MS, &reply);
  json_decref(req);
  if (r == PC_EXIT_OK && !json_is_true(json_object_get(reply, "ok"))) {
    pc_print_reply_error(reply);
    r = PC_EXIT_ERROR;
  }
  json_decref(reply);
  if (r != PC_EXIT_OK)
    pc_conn_close(c);
  return r;
}

/* Wait for at least one event, then take every one already there.
 * Returns PC_EXIT_OK, PC_TIMEOUT, PC_EOF or PC_EXIT_ERROR. */
static int next_events(pc_conn_t *watch, long timeout_ms) {
  char *line;
  int r;

  if ((r = pc_conn_line(watch, timeout_ms, 0, &line)) != PC_EXIT_OK)
    return r;
  do
    r = pc_conn_line(watch, 0, 0, &line);
  while (r == PC_EXIT_OK);
  return r == PC_TIMEOUT ? PC_EXIT_OK : r;
}

int pc_wait_status(pc_conn_t *conn, pc_conn_t *watch, const char *what,
                   pc_done_fn done, void *data, long timeout_ms) {
  int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : -1;
  json_t *reply;
  char why[512];
  int r, d;

  for (;;) {
    if ((r = pc_conn_simple(conn, "status", WAIT_STATUS_MS, &reply)) !=
        PC_EXIT_OK)
      return r;
    why[0] = '\0';
    d = done(json_object_get(reply, "status"), data, why, sizeof(why));
    json_decref(reply);
    if (d > 0)
      return PC_EXIT_OK;
    if (d < 0) {
      pc_err("%s: %s", what, why);
      return PC_EXIT_ERROR;
    }
    if (deadline >= 0 && left(deadline) == 0)
      r = PC_TIMEOUT;
    else
      r = next_events(watch, left(deadline));
    if (r == PC_TIMEOUT) {
      pc_err("%s: not done within %ld ms: %s", what, timeout_ms,
             why[0] ? why : "still waiting");
      return PC_EXIT_ERROR;
    }
    if (r == PC_EOF) {
      pc_err("%s: the pool at %s closed the connection", what, watch->path);
      return PC_EXIT_ERROR;
    }
    if (r != PC_EXIT_OK)
      return PC_EXIT_ERROR;
  }
}

int pc_wait_event(pc_conn_t *watch, const char *what, const char *event,
                  long timeout_ms) {
  int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : -1;
  json_t *ev;
  char *line;
  int r, hit;

  for (;;) {
    r = pc_conn_line(watch, left(deadline), 0, &line);
    if (r == PC_TIMEOUT) {
      pc_err("%s: no %s event within %ld ms", what, event, timeout_ms);
      return PC_EXIT_ERROR;
    }
    if (r == PC_EOF) {
      pc_err("%s: the pool at %s closed the connection", what, watch->path);
      return PC_EXIT_ERROR;
    }
    if (r != PC_EXIT_OK)
      return r;
    ev = json_loads(line, 0, NULL);
    hit = ev && strcmp(pc_str(ev, "event"), event) == 0;
    json_decref(ev);
    if (hit)
      return PC_EXIT_OK;
  }
}

/* ----------------------------------------------- the operating commands */

int pc_opwait_parse(const pc_command_t *cmd, int argc, char **argv,
                    pc_opwait_t *w, const char *extra_name, int *extra_flag) {
  struct option longopts[] = {{"no-wait", no_argument, NULL, 'W'},
                              {"timeout", required_argument, NULL, 't'},
                              {"help", no_argument, NULL, 'h'},
                              {extra_name, no_argument, NULL, 'x'},
                              {NULL, 0, NULL, 0}};
  int c, r;

  if (extra_name == NULL)
    longopts[3].name = NULL;
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (c) {
    case 'W':
      w->wait = 0;
      break;
    case 't':
      if ((r = pc_parse_count(cmd, "--timeout", optarg, &w->timeout_ms)) != 0)
        return r;
      break;
    case 'x':
      *extra_flag = 1;
      break;
    case 'h':
      pc_command_help(cmd, stdout);
      return PC_EXIT_OK;
    default:
      return pc_getopt_error(cmd, c, argv);
    }
  }
  return -1;
}

int pc_op(const pc_global_t *g, const pc_opwait_t *w, json_t *req,
          const pc_op_t *op) {
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  json_t *reply = NULL;
  pc_conn_t conn, watch;
  int r;

  conn.fd = watch.fd = -1;
  if ((r = pc_target(g, path, sizeof(path))) != PC_EXIT_OK)
    goto out;
  /* The trace stream first, so that no event the request causes is
   * missed. */
  if (w->wait && (r = pc_watch_open(path, PC_WAIT_EVENTS, &watch)) != 0)
    goto out;
  if ((r = pc_conn_open(path, &conn)) != PC_EXIT_OK)
    goto out;
  if (w->wait && op->begin && (r = op->begin(&conn, op->data)) != PC_EXIT_OK)
    goto out;
  if (req == NULL) {
    pc_err("out of memory");
    r = PC_EXIT_ERROR;
    goto out;
  }
  if ((r = pc_conn_request(&conn, req, PC_OP_TIMEOUT_MS, &reply)) != PC_EXIT_OK)
    goto out;
  if (!json_is_true(json_object_get(reply, "ok"))) {
    if (op->refused)
      op->refused(reply, op->data);
    else
      pc_print_reply_error(reply);
    r = PC_EXIT_ERROR;
    goto out;
  }
  if (!w->wait)
    goto out;
  if (op->event &&
      (r = pc_wait_event(&watch, op->what, op->event, w->timeout_ms)) != 0) {
    pc_err("%s: %s", op->what, op->no_event);
    goto out;
  }
  r = pc_wait_status(&conn, &watch, op->what, op->done, op->data,
                     w->timeout_ms);
out:
  json_decref(reply);
  json_decref(req);
  /* A failed pc_conn_open or pc_watch_open left its fd at -1. */
  if (conn.fd >= 0)
    pc_conn_close(&conn);
  if (watch.fd >= 0)
    pc_conn_close(&watch);
  return r;
}

int pc_rolled_begin(pc_conn_t *c, void *data) {
  pc_rolled_t *r = data;
  json_t *reply = NULL, *workers, *w;
  size_t i;
  int rc;

  if ((rc = pc_conn_simple(c, "status", PC_OP_TIMEOUT_MS, &reply)) != 0)
    return rc;
  workers = json_object_get(json_object_get(reply, "status"), "workers");
  r->n = (int)json_array_size(workers);
  r->before = calloc((size_t)r->n + 1, sizeof(*r->before));
  if (r->before == NULL) {
    pc_err("out of memory");
    json_decref(reply);
    return PC_EXIT_ERROR;
  }
  json_array_foreach(workers, i, w) r->before[i] =
      (uint32_t)pc_num(w, "generation");
  json_decref(reply);
  return PC_EXIT_OK;
}

static int serving(const char *state) {
  return strcmp(state, "idle") == 0 || strcmp(state, "leased") == 0 ||
         strcmp(state, "busy") == 0;
}

int pc_rolled_done(json_t *st, void *data, char *why, size_t whylen) {
  pc_rolled_t *r = data;
  json_t *workers = json_object_get(st, "workers"), *w;
  const char *state, *err;
  int pending = 0, first = -1;
  size_t i;

  json_array_foreach(workers, i, w) {
    state = pc_str(w, "state");
    err = json_string_value(json_object_get(w, "last_error"));
    /* Its replacements failed to boot and the pool gave up: say why. */
    if ((int)i < r->n && (r->id < 0 || (int)i == r->id) && err && *err &&
        serving(state) && !pc_num(w, "retiring") &&
        (uint32_t)pc_num(w, "generation") <= r->before[i]) {
      snprintf(why, whylen,
               "worker %zu kept its old process: the new one failed to boot: "
               "%s",
               i, err);
      return -1;
    }
    /* New slots (a reload that grows the pool) must have started too. */
    if ((int)i >= r->n && r->id < 0 && strcmp(state, "starting") == 0) {
      if (first < 0)
        first = (int)i;
      pending++;
      continue;
    }
    if ((int)i >= r->n || (r->id >= 0 && (int)i != r->id))
      continue;
    if (strcmp(state, "exited") == 0)
      continue; /* scaled away meanwhile */
    if (!serving(state) || pc_num(w, "retiring") ||
        (uint32_t)pc_num(w, "generation") <= r->before[i]) {
      if (first < 0)
        first = (int)i;
      pending++;
    }
  }
  if (pending == 0)
    return 1;
  w = json_array_get(workers, (size_t)first);
  err = json_string_value(json_object_get(w, "last_error"));
  snprintf(why, whylen,
           "%d worker%s not replaced yet (worker %d: %s, generation "
           "%" JSON_INTEGER_FORMAT "%s%s%s)",
           pending, pending == 1 ? "" : "s", first, pc_str(w, "state"),
           pc_num(w, "generation"), pc_num(w, "retiring") ? ", retiring" : "",
           err && *err ? "; failed to boot: " : "", err && *err ? err : "");
  return 0;
}
