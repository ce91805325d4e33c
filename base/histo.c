/* histo.c -- owns latency histograms: power-of-two buckets from 1 us, an
 * O(1) record, and quantiles read back from the buckets. */
#include "histo.h"

uint64_t pp_histogram_bound_us(int k) {
  if (k >= PP_HIST_BUCKETS - 1)
    return UINT64_MAX;
  return (uint64_t)1 << k;
}

void pp__histo_add(pp_histogram_t *h, uint64_t us) {
  int k = 0;

  if (us > 1)
    k = 64 - __builtin_clzll(us - 1); /* smallest k with 2^k >= us */
  if (k > PP_HIST_BUCKETS - 1)
    k = PP_HIST_BUCKETS - 1;
  h->buckets[k]++;
  h->count++;
  h->sum_us += us;
  if (us > h->max_us)
    h->max_us = us;
}

uint64_t pp_histogram_quantile_us(const pp_histogram_t *h, double q) {
  uint64_t rank, seen = 0;
  int k;

  if (h->count == 0)
    return 0;
  rank = (uint64_t)(q * (double)h->count + 0.999999);
  if (rank < 1)
    rank = 1;
  for (k = 0; k < PP_HIST_BUCKETS; k++) {
    seen += h->buckets[k];
    if (seen >= rank)
      return pp_histogram_bound_us(k) < h->max_us ? pp_histogram_bound_us(k)
                                                  : h->max_us;
  }
  return h->max_us;
}
