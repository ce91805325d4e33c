/* task.c -- owns supervised tasks (a thread with a client of its own,
 * reaped when the function returns, its thread exits or it is cancelled)
 * and quiescence. */
#include "internal.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>

struct pp_task {
  pp_pool_t *pool;
  pp_client_t *client;
  pp_task_fn fn;
  void *data;
  uv_thread_t thread;
  pp__queue_t node; /* in pool->task_list */
  int cancelled;
  int finished;
  int joined;
};

static void task_client_free(pp_task_t *task) {
  pp_pool_t *pool = task->pool;
  pp_client_t *c = task->client;

  pp__lock(pool);
  c->task_owned = 0;
  pp__client_maybe_free(c);
  pp__unlock(pool);
}

/* Runs when fn returns or its thread exits: the task's client dies. */
static void task_end(void *arg) {
  pp_task_t *task = arg;
  pp_pool_t *pool = task->pool;

  pp_client_close(task->client);
  pp__lock(pool);
  /* The function has returned: nobody holds its reclaimed leases now. */
  pp__client_drop_reaped(task->client);
  task->finished = 1;
  pool->tasks--;
  pp__quiesce_poke(pool);
  pp__unlock(pool);
}

static void task_main(void *arg) {
  pp_task_t *task = arg;

  pthread_cleanup_push(task_end, task);
  task->fn(task, task->client, task->data);
  pthread_cleanup_pop(1);
}

int pp_task_spawn(pp_pool_t *pool, pp_task_fn fn, void *data, pp_task_t **out) {
  pp_task_t *task;
  int r;

  assert(pool != NULL && fn != NULL && out != NULL);
  *out = NULL;
  task = calloc(1, sizeof(*task));
  if (task == NULL)
    return UV_ENOMEM;
  task->pool = pool;
  task->fn = fn;
  task->data = data;
  if ((r = pp_client_open(pool, &task->client)) != 0) {
    free(task);
    return r;
  }
  pp__lock(pool);
  /* The client dies when the task ends but is freed only by the join, so
   * a cancel racing the end never touches freed memory. */
  task->client->task_owned = 1;
  if (pool->stopping) {
    pp__unlock(pool);
    pp_client_close(task->client);
    task_client_free(task);
    free(task);
    return PP_ECLOSED;
  }
  pool->tasks++;
  pp__queue_insert_tail(&pool->task_list, &task->node);
  pp__unlock(pool);
  r = uv_thread_create(&task->thread, task_main, task);
  if (r != 0) {
    pp__lock(pool);
    pool->tasks--;
    pp__queue_remove(&task->node);
    pp__unlock(pool);
    pp_client_close(task->client);
    task_client_free(task);
    free(task);
    return r;
  }
  *out = task;
  return 0;
}

void pp_task_cancel(pp_task_t *task) {
  pp_pool_t *pool;

  assert(task != NULL);
  pool = task->pool;
  pp__lock(pool);
  if (task->cancelled || task->finished) {
    pp__unlock(pool);
    return;
  }
  __atomic_store_n(&task->cancelled, 1, __ATOMIC_RELEASE);
  pp__unlock(pool);
  pp__client_kill(task->client);
}

int pp_task_cancelled(const pp_task_t *task) {
  return __atomic_load_n(&task->cancelled, __ATOMIC_ACQUIRE);
}

int pp_task_join(pp_task_t *task) {
  pp_pool_t *pool;
  int r;

  assert(task != NULL && !task->joined);
  pool = task->pool;
  task->joined = 1; /* a join racing this one asserts; after it, the task
                       is freed (undefined) */

  uv_thread_join(&task->thread);
  pp__lock(pool);
  pp__queue_remove(&task->node);
  r = task->cancelled ? PP_ECANCELED : 0;
  pp__unlock(pool);
  task_client_free(task);
  free(task);
  return r;
}

/* pp_pool_close: cancel and join every task not yet joined. */
void pp__tasks_reap(pp_pool_t *pool) {
  pp_task_t *task;

  for (;;) {
    pp__lock(pool);
    if (pp__queue_empty(&pool->task_list)) {
      pp__unlock(pool);
      return;
    }
    task = pp__container_of(pool->task_list.next, pp_task_t, node);
    pp__unlock(pool);
    pp_task_cancel(task);
    pp_task_join(task);
  }
}

static int quiet(pp_pool_t *pool) {
  return pool->tasks == 0 && pool->leases_out == 0 && pp__waiting(pool) == 0 &&
         pool->orphans == 0 && pool->shared_calls == 0;
}

int pp_pool_quiesce(pp_pool_t *pool, int64_t timeout_ms, pp_diag_t *diag) {
  uint64_t deadline = pp__deadline_after(pp__now_ns(), (uint64_t)timeout_ms),
           now;
  int r = 0;

  pp__lock(pool);
  pool->quiesce_waiting++;
  while (!quiet(pool)) {
    now = pp__now_ns();
    if (timeout_ms >= 0 && now >= deadline) {
      pp__diag_set(diag,
                   "not quiet: %d leases out, %d waiting, %d tasks running, "
                   "%d requests finishing for departed clients, %d "
                   "pipelined calls",
                   pool->leases_out, pp__waiting(pool), pool->tasks,
                   pool->orphans, pool->shared_calls);
      r = PP_ETIMEDOUT;
      break;
    }
    if (timeout_ms < 0)
      pp__cond_wait(pool, &pool->quiesce_cond);
    else
      pp__cond_timedwait(pool, &pool->quiesce_cond, pp__wait_ns(deadline, now));
  }
  pool->quiesce_waiting--;
  pp__unlock(pool);
  return r;
}
