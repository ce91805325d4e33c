/* pool_access.c -- owns the accessors of pool_access.h: what control/ may
 * read and set of a pool without the core's structures. */
#include "pool_access.h"

#include "internal.h"

pp__control_cfg_t pp__pool_control_cfg(const pp_pool_t *pool) {
  pp__control_cfg_t c;

  c.socket = pool->cfg->socket;
  c.socket_mode = pool->cfg->socket_mode;
  c.idle_timeout_ms = pool->cfg->idle_timeout_ms;
  c.allow_uids = pool->cfg->allow_uids;
  c.allow_uids_len = pool->cfg->allow_uids_len;
  return c;
}

uv_loop_t *pp__pool_loop(const pp_pool_t *pool) { return pool->loop; }

const pp_pool_options_t *pp__pool_options(const pp_pool_t *pool) {
  return &pool->opts;
}

struct pp__control *pp__pool_control(const pp_pool_t *pool) {
  return pool->control;
}

void pp__pool_set_control(pp_pool_t *pool, struct pp__control *ctl) {
  pool->control = ctl;
}
