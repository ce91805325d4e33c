/* embed.c -- a small C program that embeds portpool: open a pool from a
 * YAML file, call a Python handler from 4 threads, print the replies, close.
 * The config names a control socket, so while it runs an operator can
 * watch it: `poolctl status -S /tmp/portpool-embed-example/embed.sock`.
 *
 *   ./build/embed examples/embed.yaml
 */
#include <portpool.h>

#include <stdio.h>
#include <stdlib.h>

#define THREADS 4
#define CALLS 5

typedef struct job {
  pp_pool_t *pool;
  int id;
  int failures;
} job_t;

static void worker(void *arg) {
  job_t *job = arg;
  pp_buf_t reply = {0};
  pp_diag_t diag;
  char args[64];
  int i, r;

  for (i = 0; i < CALLS; i++) {
    snprintf(args, sizeof(args), "{\"a\": %d, \"b\": %d}", job->id, i);
    r = pp_call_cmd(job->pool, "add", args, &reply, -1, &diag);
    if (r == 0) {
      printf("thread %d: add(%d, %d) = %s\n", job->id, job->id, i, reply.data);
    } else {
      fprintf(stderr, "thread %d: %s: %s\n", job->id, pp_strerror(r),
              diag.message);
      job->failures++;
    }
  }
  pp_buf_free(&reply);
}

int main(int argc, char **argv) {
  pp_config_t *cfg;
  pp_pool_t *pool;
  pp_diag_t diag;
  uv_thread_t threads[THREADS];
  job_t jobs[THREADS];
  int i, r, failures = 0;

  if (argc != 2) {
    fprintf(stderr, "usage: %s CONFIG.yaml\n", argv[0]);
    return 2;
  }
  r = pp_config_load_file(argv[1], &cfg, &diag);
  if (r != 0) {
    fprintf(stderr, "%s:%d:%d: %s: %s\n", diag.file, diag.line, diag.column,
            diag.key, diag.message);
    return 2;
  }
  r = pp_pool_open(cfg, NULL, &pool, &diag);
  pp_config_free(cfg);
  if (r != 0) {
    fprintf(stderr, "embed: %s: %s\n", pp_strerror(r), diag.message);
    return 1;
  }
  {
    char sock[256];
    if (pp_config_get(pp_pool_config(pool), "control.socket", sock,
                      sizeof(sock)) == 0 &&
        sock[0])
      printf("control socket: poolctl status -S %s\n", sock);
  }
  for (i = 0; i < THREADS; i++) {
    jobs[i].pool = pool;
    jobs[i].id = i;
    jobs[i].failures = 0;
    uv_thread_create(&threads[i], worker, &jobs[i]);
  }
  for (i = 0; i < THREADS; i++) {
    uv_thread_join(&threads[i]);
    failures += jobs[i].failures;
  }
  pp_pool_close(pool);
  printf("%d calls, %d failed\n", THREADS * CALLS, failures);
  return failures ? 1 : 0;
}
