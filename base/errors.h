/* errors.h -- the text of errors beyond pp_strerror() and pp_err_name()
 * (portpool.h; both in errors.c): the sentence a handler's exception
 * becomes. */
#ifndef PP_ERRORS_H
#define PP_ERRORS_H

#include <stddef.h>

/* "Type: message" from a worker's ERROR payload (JSON {type, message,
 * traceback}) into out, cut to cap bytes at a character boundary: the
 * sentence every PP_EHANDLER carries in its diag. */
void pp__handler_error_text(const char *payload, size_t len, char *out,
                            size_t cap);

#endif
