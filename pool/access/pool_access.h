/* pool_access.h -- the narrow view of a pool that control/ is built on,
 * beside the public API: the few things of the core the control server
 * reads or sets.  Implemented in pool_access.c, pp__log in pool.c.  Not
 * installed. */
#ifndef PP_POOL_ACCESS_H
#define PP_POOL_ACCESS_H

#include "portpool.h"

#include <stdint.h>

struct pp__control;

/* The control.* settings of the pool's config, read when the server
 * starts (a reload cannot change the socket). */
typedef struct pp__control_cfg {
  const char *socket;       /* control.socket */
  int socket_mode;          /* control.mode */
  uint64_t idle_timeout_ms; /* control.idle_timeout, 0 = none */
  char *const *allow_uids;  /* control.allow_uids, as written */
  int allow_uids_len;
} pp__control_cfg_t;

pp__control_cfg_t pp__pool_control_cfg(const pp_pool_t *pool);
/* The loop the pool runs on. */
uv_loop_t *pp__pool_loop(const pp_pool_t *pool);
/* The options the pool was started with: the program's control hook. */
const pp_pool_options_t *pp__pool_options(const pp_pool_t *pool);
/* The pool's control server, NULL when none (loop thread). */
struct pp__control *pp__pool_control(const pp_pool_t *pool);
void pp__pool_set_control(pp_pool_t *pool, struct pp__control *ctl);
/* A line for the program's log hook, or stderr (pool.c). */
void pp__log(pp_pool_t *pool, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
