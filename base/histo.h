/* histo.h -- latency histograms (pp_histogram_t, portpool.h): recording
 * a value; the quantiles are public. */
#ifndef PP_HISTO_H
#define PP_HISTO_H

#include "portpool.h"

#include <stdint.h>

/* Count one value of us microseconds.  O(1), allocates nothing. */
void pp__histo_add(pp_histogram_t *h, uint64_t us);

#endif
