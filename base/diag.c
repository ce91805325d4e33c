/* diag.c -- filling and printing a pp_diag_t: a message set printf-style,
 * and the one-line "file:line:col: key: message" form. */
#include "diag.h"

#include <stdarg.h>
#include <stdio.h>

void pp__diag_set(pp_diag_t *diag, const char *fmt, ...) {
  va_list ap;

  if (diag == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(diag->message, sizeof(diag->message), fmt, ap);
  va_end(ap);
}

void pp__diag_format(const pp_diag_t *d, char *buf, size_t len) {
  size_t n = 0;
  int w;

  if (len == 0)
    return;
  buf[0] = '\0';
#define PUT(...)                                                               \
  do {                                                                         \
    w = snprintf(buf + n, len - n, __VA_ARGS__);                               \
    if (w < 0 || (size_t)w >= len - n)                                         \
      return;                                                                  \
    n += (size_t)w;                                                            \
  } while (0)
  if (d->file[0] != '\0')
    PUT("%s", d->file);
  if (d->line > 0) {
    PUT("%s%d", n > 0 ? ":" : "", d->line);
    if (d->column > 0)
      PUT(":%d", d->column);
  }
  if (n > 0)
    PUT(": ");
  if (d->key[0] != '\0')
    PUT("%s: ", d->key);
  PUT("%s", d->message);
#undef PUT
}
