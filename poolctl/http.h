/* http.h -- poolctl serve's HTTP face (http.c) and its HAProxy agent-check
 * responder (agent.c), on the pool's loop. */
#ifndef PC_HTTP_H
#define PC_HTTP_H

#include "poolctl.h"

typedef struct pc_http pc_http_t;

/* Listen on host:port (port 0: any free one, see pc_http_port) with the
 * pool's listen.* settings.  0, or -1 with err saying why. */
int pc_http_start(uv_loop_t *loop, pp_pool_t *pool, const char *host, int port,
                  pc_http_t **out, char *err, size_t errlen);
int pc_http_port(const pc_http_t *h);
/* Stop accepting connections (the pool is stopping): new ones are
 * refused; those open are served to their end. */
void pc_http_quiesce(pc_http_t *h);
/* Stop listening and close every connection (after the pool closed:
 * every call has had its answer).  NULL is allowed. */
void pc_http_close(pc_http_t *h);

typedef struct pc_agent pc_agent_t;

/* The agent-check responder on host:port: each connection gets one line,
 * "up ready N%" (the idle share of the workers), "up drain" (draining) or
 * "down" (degraded or stopping), and is closed.  0, or -1 with err. */
int pc_agent_start(uv_loop_t *loop, pp_pool_t *pool, const char *host, int port,
                   pc_agent_t **out, char *err, size_t errlen);
int pc_agent_port(const pc_agent_t *a);
void pc_agent_close(pc_agent_t *a);

#endif
