/* uid.c -- a user named by uid or by name, as a uid: control.allow_uids,
 * checked when a config is loaded (config/) and read again when the
 * control socket starts (control/). */
#include "uid.h"

#include "portpool.h"

#include <pwd.h>
#include <stdio.h>
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
