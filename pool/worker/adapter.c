/* adapter.c -- owns the glue for adapters that are not the built-in python
 * one (the mock, or a program's own): starting a worker through the
 * adapter's table, and turning its exit report, from any thread, into the
 * same exit path a process takes. */
#include "internal.h"

#include <unistd.h>

static void on_exit_async(uv_async_t *a) {
  pp__proc_t *proc = a->data;
  pp_pool_t *pool = proc->pool;
  void *state = proc->u.custom.adapter_state;

  pp__proc_exited(proc,
                  __atomic_load_n(&proc->u.custom.a_status, __ATOMIC_ACQUIRE),
                  __atomic_load_n(&proc->u.custom.a_signal, __ATOMIC_ACQUIRE));
  pp__lock(pool);
  proc->u.custom.adapter_state = NULL;
  pp__unlock(pool);
  pool->custom.release(state);
}

void pp_adapter_worker_exited(pp_adapter_worker_t *w, int64_t status,
                              int signal) {
  pp__proc_t *proc = (pp__proc_t *)w;

  /* Stored atomically: uv_async_send orders them before the loop's read,
   * but sanitizers cannot see inside libuv. */
  __atomic_store_n(&proc->u.custom.a_status, status, __ATOMIC_RELEASE);
  __atomic_store_n(&proc->u.custom.a_signal, signal, __ATOMIC_RELEASE);
  uv_async_send(&proc->u.custom.exit_async);
}

static int custom_prepare(pp_pool_t *pool, pp_diag_t *diag) {
  (void)pool;
  (void)diag;
  return 0;
}

static int custom_spawn(pp__slot_t *slot, uint32_t generation,
                        pp__proc_t **out) {
  pp_pool_t *pool = slot->pool;
  int child[2], pid = 0, r;
  pp__proc_t *proc;
  void *state = NULL;

  if ((proc = pp__proc_new(slot, generation, PP__PROC_CUSTOM)) == NULL)
    return UV_ENOMEM;
  if ((r = pp__proc_pipes(proc, child)) != 0) {
    pp__proc_abort(proc);
    return r;
  }
  uv_async_init(pool->loop, &proc->u.custom.exit_async, on_exit_async);
  proc->u.custom.exit_async.data = proc;
  proc->handles |= PP__H_ASYNC;
  proc->refs++;
  r = pool->custom.start((pp_adapter_worker_t *)proc, child[0], child[1],
                         pool->custom.data, &state, &pid);
  if (r != 0) {
    close(child[0]);
    close(child[1]);
    pp__proc_abort(proc);
    return r;
  }
  proc->u.custom.adapter_state = state;
  /* pid may be any id (the header says so): no /proc figures (stat_fd
   * stays -1), so no stranger's RSS in status or against max_rss. */
  pp__proc_started(proc, pid > 0 ? pid : 1);
  *out = proc;
  return 0;
}

const pp__adapter_t pp__adapter_custom = {"custom", custom_prepare,
                                          custom_spawn};
