/* stream.c -- owns a loop-face stream's chunks (pp_call_async_with and
 * pp_request_with given an on_chunk): each chunk the worker sends is
 * copied off the read buffer and queued with the pool's pending work, in
 * order before its call's completion, then handed to on_chunk on the loop
 * with the lock released.  While a worker's chunk is queued, nothing more
 * is read from it (pp__proc_t.held): a slow on_chunk holds the worker at
 * its next write, and no stream ever has more than one chunk in memory.
 * A call that ended early (cancelled, past its timeout, its lease checked
 * in) gets no more chunks; one whose on_chunk asks to stop is cancelled as
 * pp_cancel would, or, its answer already in, ends with PP_ECANCELED all
 * the same.  The thread faces read their own chunks (blocking.c). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Why a stopped stream's call fails. */
#define STOPPED "the stream was stopped by its on_chunk"

int pp__chunk_queue(pp_pool_t *pool, pp__proc_t *proc, pp__acall_t *a,
                    pp_lease_t *lease, const pp_frame_t *f) {
  pp__chunk_t *ch;

  PP_ASSERT_LOCKED(pool);
  if ((ch = malloc(sizeof(*ch) + f->len)) == NULL)
    return UV_ENOMEM;
  ch->pool = pool;
  ch->proc = proc;
  ch->acall = a;
  ch->lease = a ? NULL : lease;
  ch->lease_id = a ? 0 : lease->id;
  ch->id = f->id;
  ch->binary = (f->flags & PP_FRAME_FLAG_BINARY) != 0;
  ch->len = f->len;
  memcpy(ch->bytes, f->payload, f->len);
  ch->pend.kind = PP__PEND_CHUNK;
  ch->pend.u.chunk = ch;
  pp__queue_insert_tail(&pool->pending, &ch->pend.node);
  /* Reading waits for its delivery. */
  pp__proc_ref(proc);
  proc->held++;
  pp__wake(pool);
  return 0;
}

/* The call is still the caller's (lock held): not answered early nor
 * stopped, and for a lease the same checkout's same request, its
 * callback not yet run. */
static int wanted(const pp__chunk_t *ch) {
  const pp_lease_t *lease = ch->lease;

  if (ch->acall)
    return !ch->acall->ghost && !ch->acall->stopped;
  return lease->id == ch->lease_id && lease->req_id == ch->id &&
         (lease->in_flight || lease->pend_queued) && !lease->released &&
         !lease->cancelled && !lease->req->stopped;
}

/* on_chunk asked to stop (lock held): cancelled as pp_cancel would, or,
 * when its answer is already queued, that answer becomes PP_ECANCELED. */
static void stop(pp__chunk_t *ch) {
  pp_pool_t *pool = ch->pool;
  pp__acall_t *a = ch->acall;
  pp_lease_t *lease = ch->lease;

  if (a && !a->final) {
    pp__async_cancel(pool, a, 1);
  } else if (a) {
    a->stopped = 1;
    if (a->status == 0 || a->status == PP_EHANDLER)
      pool->stale_replies++;
    a->status = PP_ECANCELED;
    a->reply_len = 0;
    snprintf(a->msg, sizeof(a->msg), "%s", STOPPED);
  } else if (lease->in_flight) {
    pp__request_cancel(lease, 1);
  } else {
    lease->req->stopped = 1;
    if (lease->status == 0 || lease->status == PP_EHANDLER)
      pool->stale_replies++;
    lease->status = PP_ECANCELED;
    lease->reply_len = 0;
    snprintf(lease->req->msg, PP__MSG_CAP, "%s", STOPPED);
  }
}

void pp__chunk_deliver(pp__chunk_t *ch) {
  pp_pool_t *pool = ch->pool;
  pp__proc_t *proc = ch->proc;
  const pp__done_t *done = NULL;

  PP_ASSERT_UNLOCKED(pool);
  pp__lock(pool);
  /* The call's callbacks stay put until its completion, queued after us. */
  if (wanted(ch))
    done = ch->acall ? &ch->acall->done : &ch->lease->req->done;
  pp__unlock(pool);
  if (done && done->chunk(ch->bytes, ch->len, ch->binary, done->chunk_data)) {
    pp__lock(pool);
    if (wanted(ch))
      stop(ch);
    pp__unlock(pool);
  }
  pp__lock(pool);
  /* The worker may be read again once its last chunk is delivered. */
  if (--proc->held == 0)
    pp__proc_read_pending(proc);
  pp__proc_unref(proc);
  pp__unlock(pool);
  free(ch);
}
