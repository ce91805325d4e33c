/* call.c -- `poolctl call CMD [JSON]`: run one handler on a worker of the
 * pool and print its reply as one line of compact JSON; a stream
 * handler's items come first, a line each, as they arrive; a handler's
 * exception becomes `poolctl: TYPE: MESSAGE` and exit 1. */
#include "poolctl.h"

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

/* The request line, with the argument as the user wrote it: it is only
 * checked here, never decoded and encoded, so numbers of any size or
 * precision reach the handler exactly.  Returns it (malloc'd) or NULL. */
static char *call_line(const char *cmd, const char *args, long timeout_ms) {
  char *name = NULL, *line = NULL, *p;
  json_t *s = json_string(cmd);
  size_t n;

  if (s)
    name = json_dumps(s, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(s);
  if (name == NULL)
    return NULL;
  n = strlen(name) + (args ? strlen(args) : 4) + 96;
  if ((line = malloc(n)) != NULL) {
    /* It takes a stream: a generator's items are printed as they come
     * (a handler that is not one just replies). */
    snprintf(line, n,
             "{\"op\":\"call\",\"stream\":true,\"payload\":{\"cmd\":%s,"
             "\"args\":%s}",
             name, args ? args : "null");
    if (timeout_ms >= 0)
      snprintf(line + strlen(line), n - strlen(line), ",\"timeout_ms\":%ld",
               timeout_ms);
    strcat(line, "}");
    /* A line break in valid JSON is whitespace outside strings (inside
     * them it is escaped): a space keeps the request one line. */
    for (p = line; *p; p++)
      if (*p == '\n' || *p == '\r')
        *p = ' ';
  }
  free(name);
  return line;
}

/* hex (from "reply_hex") as b"...": printable ASCII as it is, the rest as
 * \xNN, as Python writes bytes. */
static void print_bytes(const char *hex) {
  unsigned v;
  size_t i;

  fputs("b\"", stdout);
  for (i = 0; hex[i] && hex[i + 1]; i += 2) {
    if (sscanf(hex + i, "%2x", &v) != 1)
      break;
    if (v == '\\' || v == '"')
      printf("\\%c", (char)v);
    else if (v >= 0x20 && v < 0x7f)
      putchar((int)v);
    else
      printf("\\x%02x", v);
  }
  fputs("\"\n", stdout);
}

/* The value as the worker wrote it, when the pool sent it spliced in
 * {"ok":true,"KEY":VALUE} (head: that line's start up to the value);
 * NULL otherwise. */
static const char *raw_value(const char *head, char *line, size_t *len) {
  size_t n = strlen(line), h = strlen(head);

  if (n <= h || strncmp(line, head, h) != 0 || line[n - 1] != '}')
    return NULL;
  *len = n - h - 1;
  return line + h;
}

static const char *raw_reply(char *line, size_t *len) {
  return raw_value("{\"ok\":true,\"reply\":", line, len);
}

/* Print line if it is one of a stream's items: 1, else 0. */
static int print_chunk(char *line) {
  const char *raw;
  json_t *v, *hex, *text;
  size_t len;
  char *s;

  if ((raw = raw_value("{\"ok\":true,\"chunk\":", line, &len)) != NULL) {
    fwrite(raw, 1, len, stdout);
    putchar('\n');
    fflush(stdout);
    return 1;
  }
  if (strstr(line, "\"chunk") == NULL ||
      (v = json_loads(line, 0, NULL)) == NULL)
    return 0;
  hex = json_object_get(v, "chunk_hex");
  text = json_object_get(v, "chunk");
  if (json_is_string(hex)) {
    print_bytes(json_string_value(hex));
  } else if (text && (s = json_dumps(text, JSON_COMPACT | JSON_ENCODE_ANY))) {
    printf("%s\n", s);
    free(s);
  } else {
    json_decref(v);
    return 0;
  }
  fflush(stdout);
  json_decref(v);
  return 1;
}

int pc_call(const pc_command_t *cmd, int argc, char **argv,
            const pc_global_t *g) {
  static const struct option longopts[] = {
      {"timeout", required_argument, NULL, 't'},
      {"traceback", no_argument, NULL, 'T'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  json_t *args = NULL, *reply = NULL;
  long timeout_ms = -1;
  int c, traceback = 0, r = PC_EXIT_ERROR;
  const char *raw, *argtext = NULL;
  char *end, *text, *req = NULL, *line;
  json_error_t jerr;
  pc_conn_t conn;
  size_t len;

  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (c) {
    case 't':
      errno = 0;
      timeout_ms = strtol(optarg, &end, 10);
      /* At most ~10 years: past that a deadline would not fit a clock. */
      if (errno || end == optarg || *end || timeout_ms < 0 ||
          timeout_ms > 315360000000L)
        return pc_usage_error(cmd,
                              "call: --timeout wants milliseconds (an "
                              "integer from 0 to 315360000000, ten years), "
                              "not '%s'",
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
    /* Checked only: integers past 64 bits are fine (INT_AS_REAL), and so
     * is a float past a double, which only jansson cannot hold. */
    argtext = argv[optind + 1];
    args =
        json_loads(argtext, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
    if (args == NULL && strstr(jerr.text, "overflow") == NULL)
      return pc_usage_error(cmd,
                            "call: the JSON argument does not parse: %s "
                            "(column %d)",
                            jerr.text, jerr.column);
  }
  if (pc_client_socket(g, path, sizeof(path)) != 0)
    goto out;
  if ((r = pc_check_socket_dir(path, g->socket != NULL)) != PC_EXIT_OK)
    goto out;
  req = call_line(argv[optind], argtext, timeout_ms);
  if (req == NULL) {
    pc_err("out of memory");
    r = PC_EXIT_ERROR;
    goto out;
  }
  if ((r = pc_conn_open(path, &conn)) != PC_EXIT_OK)
    goto out;
  r = pc_conn_request_text(&conn, req, strlen(req),
                           timeout_ms >= 0 ? timeout_ms + CALL_GRACE_MS : -1,
                           &line);
  while (r == PC_EXIT_OK && print_chunk(line)) {
    r = pc_conn_line(&conn, timeout_ms >= 0 ? timeout_ms + CALL_GRACE_MS : -1,
                     0, &line);
    if (r == PC_TIMEOUT || r == PC_EOF) {
      pc_err("the pool at %s %s", path,
             r == PC_EOF ? "closed the connection in the middle of a stream"
                         : "sent nothing more within the call's timeout");
      r = PC_EXIT_ERROR;
    }
  }
  if (r == PC_EXIT_OK && (raw = raw_reply(line, &len)) != NULL) {
    /* Printed exactly as the handler's worker wrote it. */
    fwrite(raw, 1, len, stdout);
    putchar('\n');
    pc_conn_close(&conn);
    goto out;
  }
  if (r == PC_EXIT_OK) {
    reply = json_loads(line, JSON_DECODE_INT_AS_REAL, &jerr);
    if (!json_is_object(reply)) {
      pc_err("the pool at %s sent a reply that is not a JSON object", path);
      r = PC_EXIT_ERROR;
    }
  }
  pc_conn_close(&conn);
  if (r != PC_EXIT_OK)
    goto out;
  if (!json_is_true(json_object_get(reply, "ok"))) {
    r = print_handler_error(reply, traceback);
    goto out;
  }
  if (json_is_string(json_object_get(reply, "reply_hex"))) {
    /* A handler's bytes: shown as a bytes literal, never raw on a
     * terminal. */
    print_bytes(json_string_value(json_object_get(reply, "reply_hex")));
    r = PC_EXIT_OK;
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
  free(req);
  json_decref(args);
  return r;
}
