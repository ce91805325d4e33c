/* faces.c -- one call on any of its five faces, for the suites that run a
 * table over them (test_cancel, test_stream): started, waited for with a
 * guard that fires only on failure, and checked to end exactly once. */
#include "faces.h"

#include <stdio.h>
#include <string.h>

const char *const face_name[F_N] = {"pp_call", "pp_call pipelined",
                                    "pp_lease_call", "pp_call_async",
                                    "pp_request"};

size_t plen(const call_t *c) { return c->plen ? c->plen : strlen(c->payload); }

void call_end(call_t *c, int status, const char *reply, size_t len, int binary,
              const char *msg) {
  uv_mutex_lock(&c->mu);
  c->ends++;
  c->status = status;
  c->binary = binary;
  c->reply_len = len < sizeof(c->reply) - 1 ? len : sizeof(c->reply) - 1;
  memcpy(c->reply, reply ? reply : "", reply ? c->reply_len : 0);
  c->reply[reply ? c->reply_len : 0] = '\0';
  snprintf(c->msg, sizeof(c->msg), "%s", msg ? msg : "");
  uv_cond_broadcast(&c->cv);
  uv_mutex_unlock(&c->mu);
}

static void blocking_main(void *arg) {
  call_t *c = arg;
  pp_buf_t reply = {0};
  pp_diag_t d;
  int r;

  memset(&d, 0, sizeof(d));
  if (c->face == F_LEASE) {
    r = pp_lease_acquire(c->pool, NULL, -1, &c->lease, &d);
    if (r == 0) {
      r = pp_lease_call_with(c->lease, c->payload, plen(c), &c->opts, &reply,
                             &d);
      pp_checkin(c->lease);
    }
  } else {
    r = pp_call_with(c->pool, c->payload, plen(c), &reply, &c->opts, &d);
  }
  call_end(c, r, reply.data, reply.len, reply.binary, d.message);
  pp_buf_free(&reply);
}

/* A call on a lease the test holds (test_edges). */
void lease_call_main(void *arg) {
  call_t *c = arg;
  pp_buf_t reply = {0};
  pp_diag_t d;
  int r;

  memset(&d, 0, sizeof(d));
  r = pp_lease_call_with(c->lease, c->payload, plen(c), &c->opts, &reply, &d);
  call_end(c, r, reply.data, reply.len, reply.binary, d.message);
  pp_buf_free(&reply);
}

void on_async(const pp_result_t *res, void *data) {
  call_end(data, res->status, res->reply, res->len, res->binary,
           res->diag ? res->diag->message : NULL);
}

static void on_request(const pp_result_t *res, void *data) {
  call_t *c = data;

  if (!c->checked_in) /* else the test did */
    pp_checkin(res->lease);
  call_end(data, res->status, res->reply, res->len, res->binary,
           res->diag ? res->diag->message : NULL);
}

static void on_checkout(pp_lease_t *lease, int status, const pp_diag_t *d,
                        void *data) {
  call_t *c = data;
  int r = status;

  if (r == 0) {
    c->lease = lease;
    r = pp_request_with(lease, c->payload, plen(c), &c->opts, on_request, c);
    if (r != 0)
      pp_checkin(lease);
  }
  if (r != 0)
    call_end(c, r, NULL, 0, 0,
             r == PP_ECANCELED ? "the call was cancelled before it started"
             : d               ? d->message
                               : "pp_request_with refused");
}

/* pp_request runs on the loop thread: an echo's callback takes us there. */
static void on_loop(int status, const char *reply, size_t len,
                    const pp_diag_t *d, void *data) {
  call_t *c = data;
  int r;

  (void)reply;
  (void)len;
  (void)d;
  /* Any answer will do (a fixture without echo says UnknownCommand): its
   * callback runs on the loop. */
  r = status != 0 && status != PP_EHANDLER
          ? status
          : pp_checkout(c->pool, NULL, -1, on_checkout, c);
  if (r != 0)
    call_end(c, r, NULL, 0, 0, "could not reach the loop");
}

const char kick[] = "{\"cmd\":\"echo\",\"args\":0}";

void call_prepare(call_t *c, pp_pool_t *pool, face_t face, const char *payload,
                  int64_t timeout_ms, pp_cancel_t *token) {
  memset(c, 0, sizeof(*c));
  c->pool = pool;
  c->face = face;
  snprintf(c->payload, sizeof(c->payload), "%s", payload);
  c->opts.timeout_ms = timeout_ms;
  c->opts.cancel = token;
  uv_mutex_init(&c->mu);
  uv_cond_init(&c->cv);
}

void call_start(call_t *c, pp_pool_t *pool, face_t face, const char *payload,
                int64_t timeout_ms, pp_cancel_t *token) {
  call_prepare(c, pool, face, payload, timeout_ms, token);
  call_go(c);
}

/* A binary call: n bytes of data for handler cmd. */
void call_start_bytes(call_t *c, pp_pool_t *pool, face_t face, const char *cmd,
                      const void *data, size_t n) {
  memset(c, 0, sizeof(*c));
  c->pool = pool;
  c->face = face;
  assert_true(n > 0 && n < sizeof(c->payload));
  memcpy(c->payload, data, n);
  c->plen = n;
  c->opts.timeout_ms = -1;
  c->opts.cmd = cmd;
  uv_mutex_init(&c->mu);
  uv_cond_init(&c->cv);
  call_go(c);
}

void call_go(call_t *c) {
  pp_pool_t *pool = c->pool;
  int r;

  switch (c->face) {
  case F_ASYNC:
    r = pp_call_async_with(pool, c->payload, plen(c), &c->opts, on_async, c);
    if (r != 0) /* refused: the caller learns it here, once */
      call_end(c, r, NULL, 0, 0,
               r == PP_ECANCELED ? "the call was cancelled before it started"
                                 : pp_strerror(r));
    break;
  case F_REQUEST:
    assert_int_equal(pp_call_async(pool, kick, strlen(kick), -1, on_loop, c),
                     0);
    break;
  default:
    assert_int_equal(uv_thread_create(&c->thread, blocking_main, c), 0);
  }
}

/* Wait for the call's end (a guard that fires only on failure), and
 * check it ended once. */
void call_wait(call_t *c) {
  uint64_t limit = 60000000000ull * (uint64_t)test_time_scale();

  uv_mutex_lock(&c->mu);
  while (c->ends == 0)
    if (uv_cond_timedwait(&c->cv, &c->mu, limit) != 0)
      break;
  uv_mutex_unlock(&c->mu);
  if (c->ends == 0)
    fail_msg("%s: the call did not end", face_name[c->face]);
  if (c->face != F_ASYNC && c->face != F_REQUEST)
    uv_thread_join(&c->thread);
  if (c->status != 0)
    print_message("%s: %s: %s (%s)\n", face_name[c->face], c->payload,
                  pp_err_name(c->status), c->msg);
}

void call_free(call_t *c) {
  /* Nothing may end it a second time after the pool is quiet. */
  assert_int_equal(c->ends, 1);
  uv_mutex_destroy(&c->mu);
  uv_cond_destroy(&c->cv);
}
