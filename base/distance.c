/* distance.c -- the edit distance behind every "did you mean" (config
 * keys and values, poolctl commands).  Pure: no allocation. */
#include "distance.h"

#include <stdint.h>

#define DIST_MAX 64

size_t pp__distance(const char *a, size_t alen, const char *b, size_t blen) {
  size_t rows[3][DIST_MAX + 1];
  size_t *pp = rows[0], *prev = rows[1], *cur = rows[2];

  if (alen > DIST_MAX || blen > DIST_MAX)
    return SIZE_MAX;
  for (size_t j = 0; j <= blen; j++)
    prev[j] = j;
  for (size_t i = 1; i <= alen; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= blen; j++) {
      size_t cost = a[i - 1] != b[j - 1];
      size_t d = prev[j] + 1;
      if (cur[j - 1] + 1 < d)
        d = cur[j - 1] + 1;
      if (prev[j - 1] + cost < d)
        d = prev[j - 1] + cost;
      /* A swap of two neighbours counts as one edit ("szie"). */
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          pp[j - 2] + 1 < d)
        d = pp[j - 2] + 1;
      cur[j] = d;
    }
    size_t *t = pp;
    pp = prev;
    prev = cur;
    cur = t;
  }
  return prev[blen];
}
