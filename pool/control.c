/* control.c -- placeholder until the control socket lands. */
#include "internal.h"

int pp__control_start(pp_pool_t *pool, pp_diag_t *diag) {
  (void)pool;
  pp__diag_set(diag, "control socket not built yet");
  return UV_ENOSYS;
}

void pp__control_stop(pp_pool_t *pool, void (*done_cb)(pp_pool_t *)) {
  done_cb(pool);
}
