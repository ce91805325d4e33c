/* faces.h -- one call on any of its five faces (faces.c): pp_call at
 * depth 1, pp_call pipelined, pp_lease_call, pp_call_async from another
 * thread, pp_request on the loop. */
#ifndef PP_TEST_FACES_H
#define PP_TEST_FACES_H

#include "helpers.h"

typedef enum { F_CALL, F_PIPE, F_LEASE, F_ASYNC, F_REQUEST, F_N } face_t;

extern const char *const face_name[F_N];
/* An echo on the loop face, whose callback starts F_REQUEST's call. */
extern const char kick[];

typedef struct call {
  pp_pool_t *pool;
  face_t face;
  char payload[128];
  pp_call_opts_t opts;
  uv_thread_t thread;
  uv_mutex_t mu;
  uv_cond_t cv;
  int ends; /* how many times the call ended: must be 1 */
  int status;
  size_t plen; /* the payload's length: 0 for a string */
  char reply[256];
  size_t reply_len;
  int binary; /* the reply is bytes */
  char msg[512];
  pp_lease_t *lease; /* F_LEASE's, or F_REQUEST's (on the loop) */
  int checked_in;    /* F_REQUEST: the test checked the lease in itself */
} call_t;

size_t plen(const call_t *c);
/* Record the call's end (any thread). */
void call_end(call_t *c, int status, const char *reply, size_t len, int binary,
              const char *msg);
/* pp_call_async_with's callback for a call_t (data). */
void on_async(const pp_result_t *res, void *data);
/* A thread's pp_lease_call_with on c->lease, which the test holds. */
void lease_call_main(void *arg);
/* Set the call up without starting it (c->opts may then be changed). */
void call_prepare(call_t *c, pp_pool_t *pool, face_t face, const char *payload,
                  int64_t timeout_ms, pp_cancel_t *token);
void call_go(call_t *c);
void call_start(call_t *c, pp_pool_t *pool, face_t face, const char *payload,
                int64_t timeout_ms, pp_cancel_t *token);
/* A binary call: n bytes of data for handler cmd. */
void call_start_bytes(call_t *c, pp_pool_t *pool, face_t face, const char *cmd,
                      const void *data, size_t n);
/* Wait for its end (a guard that fires only on failure). */
void call_wait(call_t *c);
/* Check it ended once, and free what it holds. */
void call_free(call_t *c);

#endif
