/* diag.h -- helpers for the optional pp_diag_t every fallible call takes:
 * human-readable detail beside the error code. */
#ifndef PP_DIAG_H
#define PP_DIAG_H

#include "portpool.h"

#include <stddef.h>

/* Set diag's message, printf-style, cut to fit; nothing when diag is
 * NULL.  The other fields are left as they are. */
void pp__diag_set(pp_diag_t *diag, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A diagnostic as one line, "FILE:LINE:COL: KEY: MESSAGE", leaving out the
 * parts that are empty or 0.  Always NUL-terminates (truncates) when len >
 * 0. */
void pp__diag_format(const pp_diag_t *d, char *buf, size_t len);

#endif
