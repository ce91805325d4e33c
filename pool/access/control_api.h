/* control_api.h -- what the core calls of the control server (control.c):
 * its start and stop, on the pool's loop.  Not installed. */
#ifndef PP_CONTROL_API_H
#define PP_CONTROL_API_H

#include "portpool.h"

/* Listen on control.socket (loop thread).  0, or a negative code with a
 * sentence in diag; nothing is left behind on failure. */
int pp__control_start(pp_pool_t *pool, pp_diag_t *diag);
/* Stop accepting, close every connection; done_cb when all closed. */
void pp__control_stop(pp_pool_t *pool, void (*done_cb)(pp_pool_t *));

#endif
