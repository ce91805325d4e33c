/* trace.c -- `poolctl trace`: subscribe to the pool's lifecycle events and
 * print each as one JSON line as it arrives, until the pool stops, Ctrl-C,
 * or --count events. */
#include "poolctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* Check every name of a comma-separated filter against the library's
 * event names, so a typo is a usage error here rather than a refusal from
 * the pool. */
static int check_filter(const pc_command_t *cmd, const char *filter) {
  const char *p = filter, *end, *name;
  size_t n;
  int t, found;

  for (;;) {
    end = strchr(p, ',');
    n = end ? (size_t)(end - p) : strlen(p);
    found = 0;
    for (t = 0; !found && t < 64; t++) {
      name = pp_trace_name((pp_trace_type_t)t);
      if (strcmp(name, "unknown") == 0)
        break;
      found = strlen(name) == n && strncmp(name, p, n) == 0;
    }
    if (!found)
      return pc_usage_error(cmd,
                            "trace: unknown event '%.*s' in --filter (see "
                            "poolctl trace --help)",
                            (int)n, p);
    if (end == NULL)
      return PC_EXIT_OK;
    p = end + 1;
  }
}

int pc_trace(const pc_command_t *cmd, int argc, char **argv,
             const pc_global_t *g) {
  static const struct option longopts[] = {
      {"filter", required_argument, NULL, 'f'},
      {"count", required_argument, NULL, 'c'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  const char *filter = NULL;
  long count = -1, seen = 0;
  pc_conn_t conn;
  char *line;
  int c, r;

  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (c) {
    case 'f':
      if ((r = check_filter(cmd, optarg)) != PC_EXIT_OK)
        return r;
      filter = optarg;
      break;
    case 'c':
      if ((r = pc_parse_count(cmd, "--count", optarg, &count)) != 0)
        return r;
      break;
    case 'h':
      pc_command_help(cmd, stdout);
      return PC_EXIT_OK;
    default:
      return pc_getopt_error(cmd, c, argv);
    }
  }
  if (optind < argc)
    return pc_usage_error(cmd, "trace: unexpected argument '%s'", argv[optind]);
  if ((r = pc_target(g, path, sizeof(path))) != PC_EXIT_OK)
    return r;
  if ((r = pc_watch_open(path, filter, &conn)) != PC_EXIT_OK)
    return r;
  /* Like tcpdump's "listening on": on stderr, so scripts (and tests) know
   * from when no event is missed. */
  fprintf(stderr, "poolctl: tracing the pool at %s\n", path);
  while (count < 0 || seen < count) {
    r = pc_conn_line(&conn, -1, 0, &line);
    if (r == PC_EOF) {
      r = PC_EXIT_OK; /* the pool stopped: the stream is over */
      break;
    }
    if (r != PC_EXIT_OK)
      break;
    /* The lines are the pool's JSON, passed through as they are. */
    if (puts(line) == EOF || fflush(stdout) != 0) {
      r = PC_EXIT_ERROR;
      break;
    }
    if (strncmp(line, "{\"event\":\"dropped\"", 18) != 0)
      seen++;
  }
  pc_conn_close(&conn);
  return r;
}
