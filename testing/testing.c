/* testing.c -- owns the helpers for users' test suites: a pool scoped to
 * one test, opened warm within a bound, and closed only after checking
 * that the test left nothing behind.  Public API (portpool.h), so in every
 * build of the library, unlike faults.c. */
#include "internal.h"

int pp_test_pool_open(const pp_config_t *cfg, const pp_pool_options_t *opts,
                      int64_t timeout_ms, pp_pool_t **out, pp_diag_t *diag) {
  return pp__pool_open(cfg, opts, timeout_ms, out, diag);
}

int pp_test_pool_close(pp_pool_t *pool, int64_t timeout_ms, pp_diag_t *diag) {
  int r = pp_pool_quiesce(pool, timeout_ms, diag);

  pp_pool_close(pool);
  return r;
}
