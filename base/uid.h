/* uid.h -- a user named by uid or by name, as a uid (uid.c). */
#ifndef PP_UID_H
#define PP_UID_H

#include <stddef.h>
#include <stdint.h>

/* One control.allow_uids entry, a uid or a user name, as a uid.  Returns
 * 0, or PP_ECONFIG with a sentence in why (an unknown user, a bad
 * number). */
int pp__uid_parse(const char *entry, uint32_t *uid, char *why, size_t len);

/* worker.user, a uid or a user name, as a uid and that user's primary
 * group (*gid is UINT32_MAX when the uid has no passwd entry).  Returns 0,
 * or PP_ECONFIG with the reason in why. */
int pp__user_parse(const char *entry, uint32_t *uid, uint32_t *gid, char *why,
                   size_t len);

/* worker.group, a gid or a group name, as a gid.  Returns 0, or PP_ECONFIG
 * with the reason in why. */
int pp__gid_parse(const char *entry, uint32_t *gid, char *why, size_t len);

#endif
