/* stop.c -- `poolctl stop`: ask the serving process to stop gracefully,
 * then wait until that process (the socket's peer) has exited. */
#include "poolctl.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

/* A descriptor that becomes readable when pid exits, or -1 (kernels
 * before 5.3). */
static int pid_watch(int pid) {
#ifdef SYS_pidfd_open
  return pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
#else
  (void)pid;
  return -1;
#endif
}

int pc_stop(const pc_command_t *cmd, int argc, char **argv,
            const pc_global_t *g) {
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)], *line;
  pc_opwait_t w = PC_OPWAIT_DEFAULT;
  struct pollfd p;
  pc_conn_t conn;
  int r, pidfd, pid;

  if ((r = pc_opwait_parse(cmd, argc, argv, &w, NULL, NULL)) >= 0)
    return r;
  if (optind < argc)
    return pc_usage_error(cmd, "stop: unexpected argument '%s'", argv[optind]);
  if ((r = pc_target(g, path, sizeof(path))) != PC_EXIT_OK)
    return r;
  if ((r = pc_conn_open(path, &conn)) != PC_EXIT_OK)
    return r;
  pid = conn.pid;
  /* Watch the process before asking, so a recycled pid cannot fool us. */
  pidfd = w.wait ? pid_watch(pid) : -1;
  if ((r = pc_conn_simple(&conn, "stop", PC_OP_TIMEOUT_MS, NULL)) != 0 ||
      !w.wait)
    goto out;
  if (pidfd >= 0) {
    p.fd = pidfd;
    p.events = POLLIN;
    do
      r = poll(&p, 1, w.timeout_ms > 0 ? (int)w.timeout_ms : -1);
    while (r < 0 && errno == EINTR);
    if (r == 0) {
      pc_err("stop: the pool (pid %d) is still stopping after %ld ms", pid,
             w.timeout_ms);
      r = PC_EXIT_ERROR;
    } else {
      r = PC_EXIT_OK;
    }
    goto out;
  }
  /* No pidfd: the pool closes every connection when it stops. */
  do
    r = pc_conn_line(&conn, w.timeout_ms, 0, &line);
  while (r == PC_EXIT_OK);
  if (r == PC_TIMEOUT) {
    pc_err("stop: the pool (pid %d) is still running after %ld ms", pid,
           w.timeout_ms);
    r = PC_EXIT_ERROR;
  } else {
    r = r == PC_EOF ? PC_EXIT_OK : PC_EXIT_ERROR;
  }
out:
  if (pidfd >= 0)
    close(pidfd);
  pc_conn_close(&conn);
  return r;
}
