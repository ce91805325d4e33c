/* cancel.c -- owns cancel tokens: a call puts itself on its token while it
 * can be cancelled (pp__bind) and takes itself off when it ends
 * (pp__unbind), both under the pool lock, so pp_cancel and a call's end
 * never both decide its outcome: whichever takes the lock first does.
 * What a cancel does to each kind of call lives with that kind
 * (checkout.c, blocking.c, async.c). */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

int pp_cancel_new(pp_pool_t *pool, pp_cancel_t **out) {
  pp_cancel_t *t = calloc(1, sizeof(*t));

  *out = NULL;
  if (t == NULL)
    return UV_ENOMEM;
  t->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (t->fd < 0) {
    int r = uv_translate_sys_error(errno);

    free(t);
    return r;
  }
  if (uv_cond_init(&t->woke) != 0) {
    close(t->fd);
    free(t);
    return UV_ENOMEM;
  }
  t->pool = pool;
  pp__queue_init(&t->calls);
  *out = t;
  return 0;
}

int pp__bind(pp_cancel_t *token, pp__bind_t *b, pp__bind_kind_t kind,
             void *call) {
  b->token = NULL;
  if (token == NULL)
    return 0;
  PP_ASSERT_LOCKED(token->pool);
  if (token->fired)
    return PP_ECANCELED;
  b->kind = kind;
  b->call = call;
  b->token = token;
  pp__queue_insert_tail(&token->calls, &b->node);
  return 0;
}

void pp__unbind(pp__bind_t *b) {
  if (b->token == NULL)
    return;
  PP_ASSERT_LOCKED(b->token->pool);
  pp__queue_remove(&b->node);
  b->token = NULL;
}

int pp_cancel(pp_cancel_t *token) {
  pp_pool_t *pool = token->pool;
  uint64_t one = 1;
  pp__waiter_t *w;
  pp__bind_t *b;
  int n = 0;

  pp__lock(pool);
  __atomic_store_n(&token->fired, 1, __ATOMIC_RELAXED);
  while (!pp__queue_empty(&token->calls)) {
    b = pp__container_of(token->calls.next, pp__bind_t, node);
    pp__unbind(b);
    n++;
    switch (b->kind) {
    case PP__BIND_WAIT:
      w = b->call;
      pp__waiter_reason(w, "the call was cancelled while it waited for a "
                           "worker");
      pp__waiter_complete(w, PP_ECANCELED, NULL);
      break;
    case PP__BIND_THREAD:
      /* Its thread wakes on fd and ends the call (pp__cancel_woke). */
      *(int *)b->call = 1;
      __atomic_add_fetch(&token->waking, 1, __ATOMIC_RELAXED);
      break;
    case PP__BIND_ASYNC:
      pp__async_cancel(pool, b->call, 0);
      break;
    case PP__BIND_REQUEST:
      pp__request_cancel(b->call, 0);
      break;
    }
  }
  pool->cancels += (uint64_t)n;
  /* Wakes a thread polling for its reply (pp__reply_wait); it stays
   * readable until reset, for the calls started with it later. */
  if (write(token->fd, &one, sizeof(one)) < 0) {
    /* Only EAGAIN (the counter is full): it is readable either way. */
  }
  pp__unlock(pool);
  return n;
}

int pp_cancel_fired(const pp_cancel_t *token) {
  return __atomic_load_n(&token->fired, __ATOMIC_RELAXED);
}

/* A call still on the token: misuse that would corrupt the pool later,
 * stopped here in every build. */
static void pending(pp_cancel_t *token, const char *what) {
  if (pp__queue_empty(&token->calls))
    return;
  fprintf(stderr,
          "portpool: %s: calls are still pending on this cancel token; "
          "wait for them to end (or pp_cancel it) first\n",
          what);
  abort();
}

void pp__cancel_woke(pp_cancel_t *token) {
  PP_ASSERT_LOCKED(token->pool);
  /* The broadcast comes before the count drops: pp_cancel_free, which
   * reads the count without the lock, may destroy the condition as soon
   * as it sees 0. */
  if (__atomic_load_n(&token->waking, __ATOMIC_RELAXED) == 1)
    uv_cond_broadcast(&token->woke);
  __atomic_sub_fetch(&token->waking, 1, __ATOMIC_RELEASE);
}

/* Until the thread calls it cancelled have seen fd (lock held). */
static void wait_woken(pp_cancel_t *token) {
  while (__atomic_load_n(&token->waking, __ATOMIC_RELAXED) > 0)
    pp__cond_wait(token->pool, &token->woke);
}

void pp_cancel_reset(pp_cancel_t *token) {
  uint64_t v;

  pp__lock(token->pool);
  pending(token, "pp_cancel_reset");
  wait_woken(token);
  __atomic_store_n(&token->fired, 0, __ATOMIC_RELAXED);
  while (read(token->fd, &v, sizeof(v)) > 0)
    ;
  pp__unlock(token->pool);
}

void pp_cancel_free(pp_cancel_t *token) {
  if (token == NULL)
    return;
  /* Only while a call it cancelled is still ending is the pool touched
   * (open then): a token may be freed after its pool. */
  if (__atomic_load_n(&token->waking, __ATOMIC_ACQUIRE) > 0) {
    pp__lock(token->pool);
    wait_woken(token);
    pp__unlock(token->pool);
  }
  pending(token, "pp_cancel_free");
  uv_cond_destroy(&token->woke);
  close(token->fd);
  free(token);
}
