/* stream.c -- owns a loop-face stream's chunks (pp_call_async_with and
 * pp_request_with given an on_chunk): each chunk the worker sends is
 * copied off the read buffer and queued with the pool's pending work, in
 * order before its call's completion, then handed to on_chunk on the loop
 * with the lock released.  No more than one read's chunks are ever queued:
 * the loop runs them before it reads again, so a slow on_chunk holds the
 * worker at its next write.  A call that ended early (cancelled, past its
 * timeout) gets no more chunks; one whose on_chunk asks to stop is
 * cancelled as pp_cancel would.  The thread faces read their own chunks
 * (blocking.c). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int pp__chunk_queue(pp_pool_t *pool, pp__acall_t *a, pp_lease_t *lease,
                    const pp_frame_t *f) {
  pp__chunk_t *ch;

  PP_ASSERT_LOCKED(pool);
  if ((ch = malloc(sizeof(*ch) + f->len)) == NULL)
    return UV_ENOMEM;
  ch->pool = pool;
  ch->acall = a;
  ch->lease = a ? NULL : lease;
  ch->id = f->id;
  ch->binary = (f->flags & PP_FRAME_FLAG_BINARY) != 0;
  ch->len = f->len;
  memcpy(ch->bytes, f->payload, f->len);
  ch->pend.kind = PP__PEND_CHUNK;
  ch->pend.u.chunk = ch;
  pp__queue_insert_tail(&pool->pending, &ch->pend.node);
  pp__wake(pool);
  return 0;
}

/* The call is still the caller's (lock held): not answered early, and
 * for a lease, the same request, not checked in. */
static int wanted(const pp__chunk_t *ch) {
  const pp_lease_t *lease = ch->lease;

  if (ch->acall)
    return !ch->acall->ghost;
  return !lease->released && !lease->cancelled && lease->req_id == ch->id;
}

void pp__chunk_deliver(pp__chunk_t *ch) {
  pp_pool_t *pool = ch->pool;
  const pp__done_t *done;
  int stop;

  PP_ASSERT_UNLOCKED(pool);
  pp__lock(pool);
  if (!wanted(ch)) {
    pp__unlock(pool);
    free(ch);
    return;
  }
  /* The call's callbacks stay put until its completion, queued after us. */
  done = ch->acall ? &ch->acall->done : &ch->lease->req->done;
  pp__unlock(pool);
  stop = done->chunk(ch->bytes, ch->len, ch->binary, done->chunk_data);
  if (stop) {
    pp__lock(pool);
    /* Not if it ended meanwhile, or its answer is already queued. */
    if (ch->acall && !ch->acall->ghost && !ch->acall->final)
      pp__async_cancel(pool, ch->acall, 1);
    else if (ch->lease && wanted(ch) && ch->lease->in_flight)
      pp__request_cancel(ch->lease, 1);
    pp__unlock(pool);
  }
  free(ch);
}
