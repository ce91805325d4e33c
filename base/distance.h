/* distance.h -- the edit distance behind every "did you mean": config/'s
 * key and value suggestions and poolctl's command suggestion (distance.c).
 * Internal (pp__), not part of the public API. */
#ifndef PP_DISTANCE_H
#define PP_DISTANCE_H

#include <stddef.h>

/* Optimal string alignment distance between a (alen bytes) and b (blen
 * bytes): insertions, deletions, substitutions and swaps of neighbours
 * each count one.  SIZE_MAX when either is over 64 bytes. */
size_t pp__distance(const char *a, size_t alen, const char *b, size_t blen);

#endif
