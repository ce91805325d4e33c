/* shim.c -- an LD_PRELOAD library that plays an attacker (or a slow
 * client) at the exact moment a race needs, so that tests of those races
 * are deterministic.  Each act is off unless its variable is set:
 *   PP_SHIM_SWAP_TARGET=FILE  right after a bind() of a Unix socket in a
 *       directory that someone else could write in (group or others may
 *       write, or another uid owns it), swap the socket file for a
 *       symlink to FILE, as another user could in that window;
 *   PP_SHIM_SEND_AFTER_HUP=1  before each send(), wait until the peer has
 *       hung up (the failure-only bound is 60 s), as a client whose
 *       request comes late would. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int bind(int fd, const struct sockaddr *sa, socklen_t len) {
  int (*real)(int, const struct sockaddr *, socklen_t) =
      (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT,
                                                              "bind");
  const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
  const char *target = getenv("PP_SHIM_SWAP_TARGET");
  char dir[sizeof(un->sun_path)], moved[sizeof(un->sun_path) + 8];
  struct stat st;
  char *slash;
  int r = real(fd, sa, len);

  if (r != 0 || target == NULL || sa->sa_family != AF_UNIX ||
      un->sun_path[0] == '\0')
    return r;
  snprintf(dir, sizeof(dir), "%s", un->sun_path);
  slash = strrchr(dir, '/');
  if (slash == NULL)
    snprintf(dir, sizeof(dir), ".");
  else
    *slash = '\0';
  if (stat(dir, &st) != 0 ||
      ((st.st_mode & 022) == 0 && st.st_uid == geteuid()))
    return r; /* nobody else can touch a name in there */
  snprintf(moved, sizeof(moved), "%s.moved", un->sun_path);
  if (rename(un->sun_path, moved) == 0)
    symlink(target, un->sun_path);
  return r;
}

ssize_t send(int fd, const void *buf, size_t n, int flags) {
  ssize_t (*real)(int, const void *, size_t, int) =
      (ssize_t(*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
  struct pollfd p;

  if (getenv("PP_SHIM_SEND_AFTER_HUP")) {
    p.fd = fd;
    p.events = 0; /* POLLHUP is always reported */
    p.revents = 0;
    poll(&p, 1, 60000);
  }
  return real(fd, buf, n, flags);
}
