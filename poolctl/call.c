/* call.c -- `poolctl call CMD [JSON]`: run one handler on a worker of the
 * pool and print its reply as one line of compact JSON; a handler's
 * exception becomes `poolctl: TYPE: MESSAGE` and exit 1. */
#include "poolctl/poolctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* How long the client waits past the call's own timeout for the pool to
 * answer (the pool reports the timeout; this only guards a stuck pool). */
#define CALL_GRACE_MS 10000

static int print_handler_error(json_t *reply, int traceback) {
  json_t *detail = json_object_get(reply, "detail");
  const char *type = json_string_value(json_object_get(detail, "type"));
  const char *msg = json_string_value(json_object_get(detail, "message"));
  const char *tb = json_string_value(json_object_get(detail, "traceback"));

  if (type == NULL) {
    pc_print_reply_error(reply);
    return PC_EXIT_ERROR;
  }
  if (traceback && tb && *tb)
    fprintf(stderr, "%s%s", tb, tb[strlen(tb) - 1] == '\n' ? "" : "\n");
  pc_err("%s: %s", type, msg ? msg : "");
  return PC_EXIT_ERROR;
}

int pc_call(const pc_command_t *cmd, int argc, char **argv,
            const pc_global_t *g) {
  static const struct option longopts[] = {
      {"timeout", required_argument, NULL, 't'},
      {"traceback", no_argument, NULL, 'T'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  json_t *args = NULL, *req = NULL, *reply = NULL;
  long timeout_ms = -1;
  int c, traceback = 0, r = PC_EXIT_ERROR;
  json_error_t jerr;
  char *end, *text;

  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (c) {
    case 't':
      errno = 0;
      timeout_ms = strtol(optarg, &end, 10);
      if (errno || end == optarg || *end || timeout_ms < 0)
        return pc_usage_error(cmd,
                              "call: --timeout wants milliseconds (an "
                              "integer >= 0), not '%s'",
                              optarg);
      break;
    case 'T':
      traceback = 1;
      break;
    case 'h':
      pc_command_help(cmd, stdout);
      return PC_EXIT_OK;
    default:
      return pc_getopt_error(cmd, c, argv);
    }
  }
  if (optind >= argc)
    return pc_usage_error(cmd, "call: which command? (CMD is missing)");
  if (argc - optind > 2)
    return pc_usage_error(cmd, "call: unexpected argument '%s'",
                          argv[optind + 2]);
  if (argc - optind == 2) {
    args = json_loads(argv[optind + 1], JSON_DECODE_ANY, &jerr);
    if (args == NULL)
      return pc_usage_error(cmd,
                            "call: the JSON argument does not parse: %s "
                            "(column %d)",
                            jerr.text, jerr.column);
  }
  if (pc_client_socket(g, path, sizeof(path)) != 0)
    goto out;
  if ((r = pc_check_socket_dir(path)) != PC_EXIT_OK)
    goto out;
  req = json_pack("{s:s, s:{s:s, s:o?}}", "op", "call", "payload", "cmd",
                  argv[optind], "args", json_incref(args));
  if (req && timeout_ms >= 0 &&
      json_object_set_new(req, "timeout_ms", json_integer(timeout_ms)) != 0) {
    json_decref(req);
    req = NULL;
  }
  if (req == NULL) {
    pc_err("out of memory");
    r = PC_EXIT_ERROR;
    goto out;
  }
  r = pc_request(path, req, timeout_ms >= 0 ? timeout_ms + CALL_GRACE_MS : -1,
                 &reply);
  if (r != PC_EXIT_OK)
    goto out;
  if (!json_is_true(json_object_get(reply, "ok"))) {
    r = print_handler_error(reply, traceback);
    goto out;
  }
  text = json_dumps(json_object_get(reply, "reply"),
                    JSON_COMPACT | JSON_ENCODE_ANY);
  if (text == NULL) {
    pc_err("the pool's reply has no \"reply\"");
    r = PC_EXIT_ERROR;
    goto out;
  }
  printf("%s\n", text);
  free(text);
  r = PC_EXIT_OK;
out:
  json_decref(reply);
  json_decref(req);
  json_decref(args);
  return r;
}
