/* uid.c -- a user or group named by id or by name, as an id:
 * control.allow_uids, worker.user and worker.group, checked when a config
 * is loaded (config/) and read again when the control socket starts
 * (control/) or the pool opens (pool/worker/confine.c). */
#include "uid.h"

#include "portpool.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pp__uid_parse(const char *entry, uint32_t *uid, char *why, size_t len) {
  struct passwd pw, *res = NULL;
  unsigned long long v = 0;
  const char *p = entry;
  char buf[4096];
  int r;

  if (*p >= '0' && *p <= '9') {
    for (; *p >= '0' && *p <= '9' && v <= UINT32_MAX; p++)
      v = v * 10 + (unsigned)(*p - '0');
    /* (uid_t)-1 means "no change" to chown and setuid: never a user. */
    if (*p != '\0' || v >= UINT32_MAX) {
      snprintf(why, len, "\"%.64s\" is not a uid (0 to %u) nor a user name",
               entry, UINT32_MAX - 1);
      return PP_ECONFIG;
    }
    *uid = (uint32_t)v;
    return 0;
  }
  r = getpwnam_r(entry, &pw, buf, sizeof(buf), &res);
  if (r != 0 || res == NULL) {
    snprintf(why, len,
             "no user named \"%.64s\" on this system%s%s (give a uid or an "
             "existing user name)",
             entry, r ? ": " : "", r ? strerror(r) : "");
    return PP_ECONFIG;
  }
  *uid = (uint32_t)res->pw_uid;
  return 0;
}

int pp__user_parse(const char *entry, uint32_t *uid, uint32_t *gid, char *why,
                   size_t len) {
  struct passwd pw, *res = NULL;
  char buf[4096];
  int r;

  if ((r = pp__uid_parse(entry, uid, why, len)) != 0)
    return r;
  *gid = UINT32_MAX;
  if (getpwuid_r((uid_t)*uid, &pw, buf, sizeof(buf), &res) == 0 && res != NULL)
    *gid = (uint32_t)res->pw_gid;
  return 0;
}

int pp__gid_parse(const char *entry, uint32_t *gid, char *why, size_t len) {
  struct group gr, *res = NULL;
  unsigned long long v = 0;
  const char *p = entry;
  char *buf = NULL, *nb;
  size_t cap = 8192;
  int r;

  if (*p >= '0' && *p <= '9') {
    for (; *p >= '0' && *p <= '9' && v <= UINT32_MAX; p++)
      v = v * 10 + (unsigned)(*p - '0');
    if (*p != '\0' || v >= UINT32_MAX) {
      snprintf(why, len, "\"%.64s\" is not a gid (0 to %u) nor a group name",
               entry, UINT32_MAX - 1);
      return PP_ECONFIG;
    }
    *gid = (uint32_t)v;
    return 0;
  }
  /* A group with many members needs more than 8 KiB: ERANGE, grow. */
  do {
    if ((nb = realloc(buf, cap)) == NULL) {
      r = ENOMEM;
      break;
    }
    buf = nb;
    r = getgrnam_r(entry, &gr, buf, cap, &res);
    cap *= 2;
  } while (r == ERANGE && cap <= ((size_t)1 << 22));
  if (r == 0 && res != NULL)
    *gid = (uint32_t)res->gr_gid;
  free(buf);
  if (r != 0 || res == NULL) {
    snprintf(why, len,
             "no group named \"%.64s\" on this system%s%s (give a gid or an "
             "existing group name)",
             entry, r ? ": " : "", r ? strerror(r) : "");
    return PP_ECONFIG;
  }
  return 0;
}
