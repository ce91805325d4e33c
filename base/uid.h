/* uid.h -- a user named by uid or by name, as a uid (uid.c). */
#ifndef PP_UID_H
#define PP_UID_H

#include <stddef.h>
#include <stdint.h>

/* One control.allow_uids entry, a uid or a user name, as a uid.  Returns
 * 0, or PP_ECONFIG with a sentence in why (an unknown user, a bad
 * number). */
int pp__uid_parse(const char *entry, uint32_t *uid, char *why, size_t len);

#endif
