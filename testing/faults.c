/* faults.c -- owns the fault-injection points (faults.h): the hook a test
 * sets, called at each PP_FAULT() of the core.  Compiled only into the
 * test build of the library (portpool_testing, PP_FAULTS). */
#include "faults.h"

#include "internal.h"

#ifndef PP_FAULTS
#error "faults.c belongs to the fault build (PP_FAULTS) only"
#endif

void pp__fault(pp_pool_t *pool, const char *point) {
  if (pool->fault_cb)
    pool->fault_cb(pool, point, pool->fault_data);
}

void pp_test_fault_hook(pp_pool_t *pool,
                        void (*cb)(pp_pool_t *, const char *, void *),
                        void *data) {
  pp__lock(pool);
  pool->fault_cb = cb;
  pool->fault_data = data;
  pp__unlock(pool);
}
