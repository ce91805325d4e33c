/* faults.c -- owns the fault-injection points (faults.h): the hook a test
 * sets, called at each PP_FAULT() of the core; and what tests may see of
 * the core.  Compiled only into the
 * test build of the library (portpool_testing, PP_FAULTS). */
#include "faults.h"

#include "internal.h"

#include <string.h>

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

/* slot's current worker, or NULL. */
static pp__proc_t *slot_proc(pp_pool_t *pool, int slot) {
  if (slot < 0 || slot >= pool->nslots)
    return NULL;
  return pool->slots[slot]->proc;
}

int pp_test_reply_fd(pp_pool_t *pool, int slot) {
  pp__proc_t *proc = slot_proc(pool, slot);

  return proc ? proc->rep_fd : -1;
}

int pp_test_stderr_fd(pp_pool_t *pool, int slot) {
  pp__proc_t *proc = slot_proc(pool, slot);
  uv_os_fd_t fd;

  PP_ASSERT_LOCKED(pool);
  if (proc == NULL || !(proc->handles & PP__H_ERR) ||
      uv_fileno((uv_handle_t *)&proc->err, &fd) != 0)
    return -1;
  return fd;
}

int pp_test_quiesce_waiting(pp_pool_t *pool) {
  int waiting;

  pp__lock(pool);
  waiting = pool->quiesce_waiting;
  pp__unlock(pool);
  return waiting;
}

uint32_t pp_test_spin_adapt(uint32_t cur, uint32_t max, uint64_t waited) {
  pp__proc_t proc;

  memset(&proc, 0, sizeof(proc)); /* pid 0: pinned to no CPU of ours */
  proc.spin_ns = cur;
  proc.spin_max_ns = max;
  pp__spin_adapt(&proc, waited);
  return proc.spin_ns;
}
