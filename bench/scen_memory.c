/* scen_memory.c -- the pool's own memory: heap per worker and per waiting
 * checkout (loop face, blocking face), the sizes of the core's records
 * from ppbench_sizes, and an idle worker's RSS and PSS.  Runs first, on a
 * fresh heap (see main). */
#include "bench.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

double g_mem_worker = -1, g_mem_worker_idle = -1, g_mem_loop_waiter = -1,
       g_mem_thread_waiter = -1;

/* sizeof() of the core's private structures, from ppbench_sizes (built
 * beside us from pool/internal.h); -1 when it is not there. */
long core_sizeof(const char *type) {
  char exe[PATH_MAX], cmd[PATH_MAX + 32], name[128];
  static char cache[4096];
  static int loaded;
  long v;
  ssize_t n;
  char *slash, *p;
  FILE *f;

  if (!loaded) {
    loaded = 1;
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
      exe[n] = '\0';
      if ((slash = strrchr(exe, '/')) != NULL)
        *slash = '\0';
      snprintf(cmd, sizeof(cmd), "'%s/ppbench_sizes' 2>/dev/null", exe);
      if ((f = popen(cmd, "r")) != NULL) {
        size_t got = fread(cache, 1, sizeof(cache) - 1, f);
        cache[got] = '\0';
        pclose(f);
      }
    }
  }
  for (p = cache; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
    if (sscanf(p, "%127s %ld", name, &v) == 2 && strcmp(name, type) == 0)
      return v;
  return -1;
}

/* Per worker: pools of 1 and of 1+K workers, heap (mallinfo2, every arena)
 * right after pp_pool_open and after one call on every worker. */
static int mem_per_worker(double *idle_b, double *used_b) {
  const char *scen = "memory";
  char hbuf[PATH_MAX];
  const char *handler =
      handler_path("fixtures/echo_handlers.py", hbuf, sizeof(hbuf));
  const int K = 8;
  double h0, h1, h1c, hk0, hk1, hkc;
  double rss_sum = 0, pss_sum = 0, rss, pss, priv;
  const char *req = "{\"cmd\":\"echo\",\"args\":1}";
  pp_lease_t *leases[16];
  pp_buf_t reply = {0};
  pp_status_t st;
  pp_pool_t *pool;
  int i, nw = 0;

  /* The bench's own reply buffer is allocated before any measurement. */
  reply.data = malloc(4096);
  reply.cap = reply.data ? 4096 : 0;
  h0 = heap_bytes();
  if ((pool = open_pool(1, 0, handler, NULL, NULL)) == NULL)
    return -1;
  h1 = heap_bytes() - h0;
  pp_call(pool, req, strlen(req), &reply, -1, NULL);
  h1c = heap_bytes() - h0;
  pp_pool_close(pool);

  hk0 = heap_bytes();
  if ((pool = open_pool(1 + K, 0, handler, NULL, NULL)) == NULL)
    return -1;
  hk1 = heap_bytes() - hk0;
  for (i = 0; i < 1 + K; i++)
    pp_lease_acquire(pool, NULL, -1, &leases[i], NULL);
  for (i = 0; i < 1 + K; i++)
    pp_lease_call(leases[i], req, strlen(req), -1, &reply, NULL);
  for (i = 0; i < 1 + K; i++)
    pp_checkin(leases[i]);
  hkc = heap_bytes() - hk0;
  if (pp_pool_status(pool, &st) == 0) {
    for (i = 0; i < st.nworkers; i++)
      if (st.workers[i].pid > 0) {
        proc_smaps(st.workers[i].pid, &rss, &pss, &priv);
        if (rss > 0) {
          rss_sum += rss;
          pss_sum += pss;
          nw++;
        }
      }
    pp_status_free(&st);
  }
  pp_pool_close(pool);
  pp_buf_free(&reply);

  *idle_b = (hk1 - h1) / K;
  *used_b = (hkc - h1c) / K;
  figure(scen, "pool-side heap per worker, idle", *idle_b, "B",
         "(heap of a %d-worker pool - a 1-worker pool) / %d", 1 + K, K);
  figure(scen, "pool-side heap per worker, after a call", *used_b, "B",
         "after one call on every worker (reply buffers grown)");
  if (core_sizeof("pp__proc_t") > 0)
    figure(scen, "  sizeof(pp__proc_t) + sizeof(pp__slot_t)",
           (double)(core_sizeof("pp__proc_t") + core_sizeof("pp__slot_t")), "B",
           "proc %ld (2 line buffers of %ld), slot %ld",
           core_sizeof("pp__proc_t"), core_sizeof("pp__linebuf_t"),
           core_sizeof("pp__slot_t"));
  if (nw > 0) {
    figure(scen, "one idle Python worker, RSS", rss_sum / nw / 1048576.0, "MiB",
           "mean of %d (worker side, not pool side)", nw);
    figure(scen, "one idle Python worker, PSS", pss_sum / nw / 1048576.0, "MiB",
           NULL);
  }
  return 0;
}

/* Waiting checkouts on the event-loop face: the pool runs on our loop,
 * its one worker is held, then N pp_checkout calls queue. */
typedef struct lf {
  int ready, status, closed;
  pp_lease_t *held;
  int done;
} lf_t;

static void lf_ready(pp_pool_t *p, int status, void *d) {
  (void)p;
  ((lf_t *)d)->ready = 1;
  ((lf_t *)d)->status = status;
}
static void lf_hold(pp_lease_t *l, int status, const pp_diag_t *diag, void *d) {
  (void)status;
  (void)diag;
  ((lf_t *)d)->held = l;
}
static void lf_wait(pp_lease_t *l, int status, const pp_diag_t *diag, void *d) {
  (void)status;
  (void)diag;
  ((lf_t *)d)->done++;
  if (l)
    pp_checkin(l);
}
static void lf_closed(pp_pool_t *p, void *d) {
  (void)p;
  ((lf_t *)d)->closed = 1;
}

static int mem_loop_waiters(int n, double *per) {
  char hbuf[PATH_MAX], cmd[4 * PATH_MAX];
  const char *handler =
      handler_path("fixtures/echo_handlers.py", hbuf, sizeof(hbuf));
  uv_loop_t loop;
  pp_config_t *cfg;
  pp_pool_t *pool;
  pp_diag_t diag;
  lf_t lf = {0};
  double h0, h1;
  uint64_t t0, t1, t_first = 0, t_last = 0;
  int i, r, edge = n >= 1000 ? 100 : n / 10;

  snprintf(cmd, sizeof(cmd), "[\"%s\", \"%s\", \"%s\"]", O.python, worker_py,
           handler);
  pp_config_new(&cfg);
  if (cfg_set(cfg, "size", "1") || cfg_set(cfg, "worker.command", cmd) ||
      cfg_set(cfg, "worker.allow_root", "true") ||
      cfg_set(cfg, "checkout.max_waiters", "1000000") ||
      cfg_set(cfg, "checkout.timeout", "600s")) {
    pp_config_free(cfg);
    return -1;
  }
  uv_loop_init(&loop);
  r = pp_pool_start(&loop, cfg, NULL, lf_ready, &lf, &pool, &diag);
  pp_config_free(cfg);
  if (r != 0) {
    fprintf(stderr, "pp_pool_start: %s: %s\n", pp_strerror(r), diag.message);
    uv_loop_close(&loop);
    return -1;
  }
  while (!lf.ready)
    uv_run(&loop, UV_RUN_ONCE);
  pp_checkout(pool, NULL, -1, lf_hold, &lf);
  while (!lf.held)
    uv_run(&loop, UV_RUN_ONCE);
  h0 = heap_bytes();
  t0 = bench_now_ns();
  for (i = 0; i < n; i++) {
    if (i == edge)
      t_first = bench_now_ns();
    if (i == n - edge)
      t_last = bench_now_ns();
    if ((r = pp_checkout(pool, NULL, 600000, lf_wait, &lf)) != 0) {
      fprintf(stderr, "pp_checkout #%d: %s\n", i, pp_strerror(r));
      break;
    }
  }
  t1 = bench_now_ns();
  h1 = heap_bytes();
  pp_pool_stop(pool, lf_closed, &lf);
  pp_checkin(lf.held);
  while (!lf.closed)
    uv_run(&loop, UV_RUN_ONCE);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);

  *per = (h1 - h0) / n;
  figure("memory", "loop face: pool-side heap per waiting checkout", *per, "B",
         "%d pp_checkout waiters queued", n);
  if (edge > 0) {
    figure("memory", "loop face: pp_checkout enqueue, first waiters",
           (double)(t_first - t0) / edge / 1e3, "us",
           "mean of the first %d enqueues", edge);
    figure("memory", "loop face: pp_checkout enqueue, last waiters",
           (double)(t1 - t_last) / edge / 1e3, "us",
           "mean of the last %d, behind %d waiters", edge, n - edge);
  }
  return 0;
}

/* Waiting checkouts on the blocking face: N threads blocked in
 * pp_lease_acquire.  The waiter record lives on each thread's stack, so
 * the pool-side cost is the heap delta plus that record. */
static volatile int bw_arrived, bw_release;
static pthread_mutex_t bw_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bw_cv = PTHREAD_COND_INITIALIZER;

static void *bw_plain(void *arg) {
  (void)arg;
  pthread_mutex_lock(&bw_mu);
  bw_arrived++;
  while (!bw_release)
    pthread_cond_wait(&bw_cv, &bw_mu);
  pthread_mutex_unlock(&bw_mu);
  return NULL;
}

static void *bw_pool(void *arg) {
  pp_lease_t *lease;
  if (pp_lease_acquire(arg, NULL, 600000, &lease, NULL) == 0)
    pp_checkin(lease);
  return NULL;
}

static int spawn_threads(pthread_t *th, int n, void *(*fn)(void *), void *arg) {
  pthread_attr_t a;
  int i;

  pthread_attr_init(&a);
  pthread_attr_setstacksize(&a, 64 * 1024);
  for (i = 0; i < n; i++)
    if (pthread_create(&th[i], &a, fn, arg) != 0)
      break;
  pthread_attr_destroy(&a);
  return i;
}

static int mem_thread_waiters(int n, double *per_heap) {
  char hbuf[PATH_MAX];
  const char *handler =
      handler_path("fixtures/echo_handlers.py", hbuf, sizeof(hbuf));
  pthread_t *th = calloc((size_t)n, sizeof(*th));
  double h0, h1, hp0, hp1;
  pp_lease_t *held;
  pp_pool_t *pool;
  pp_status_t st;
  uint64_t t0;
  int m, i, waiting = 0;
  long wsz;

  /* Baseline: the same number of threads blocked on a plain condition. */
  h0 = heap_bytes();
  bw_arrived = bw_release = 0;
  m = spawn_threads(th, n, bw_plain, NULL);
  while (bw_arrived < m)
    sleep_s(0.005);
  h1 = heap_bytes();
  pthread_mutex_lock(&bw_mu);
  bw_release = 1;
  pthread_cond_broadcast(&bw_cv);
  pthread_mutex_unlock(&bw_mu);
  for (i = 0; i < m; i++)
    pthread_join(th[i], NULL);

  if ((pool = open_pool(1, 0, handler, NULL, NULL)) == NULL) {
    free(th);
    return -1;
  }
  pp_lease_acquire(pool, NULL, -1, &held, NULL);
  hp0 = heap_bytes();
  m = spawn_threads(th, n, bw_pool, pool);
  t0 = bench_now_ns();
  while (waiting < m && bench_now_ns() - t0 < 60000000000ull) {
    sleep_s(0.01);
    if (pp_pool_status(pool, &st) == 0) {
      waiting = st.waiters;
      pp_status_free(&st);
    }
  }
  hp1 = heap_bytes();
  t0 = bench_now_ns();
  pp_checkin(held); /* each waiter in turn gets the worker and returns it */
  for (i = 0; i < m; i++)
    pthread_join(th[i], NULL);
  figure("memory", "blocking face: time per queued hand-off",
         (double)(bench_now_ns() - t0) / m / 1e3, "us",
         "%d waiters served in FIFO order, check-in to next waiter", m);
  pp_pool_close(pool);
  free(th);

  *per_heap = ((hp1 - hp0) - (h1 - h0)) / m;
  figure("memory", "blocking face: pool-side heap per waiting checkout",
         *per_heap > 0 ? *per_heap : 0, "B",
         "%d threads in pp_lease_acquire, less %d threads waiting on a "
         "plain condition (measured %.0f B: the record is on the stack)",
         waiting, m, *per_heap);
  wsz = core_sizeof("pp__waiter_t");
  if (wsz > 0)
    figure("memory", "blocking face: waiter record on the caller's stack",
           (double)wsz, "B", "sizeof(pp__waiter_t), its semaphore inside");
  return 0;
}

int scen_memory(void) {
  pin_scenario(0);
  double idle, used, per;

  printf("\n== pool-side memory (heap = mallinfo2 uordblks + hblkhd, every "
         "arena)\n");
  if (mem_per_worker(&idle, &used) == 0) {
    g_mem_worker = used > idle ? used : idle;
    g_mem_worker_idle = idle;
  }
  if (mem_loop_waiters(O.waiters, &per) == 0)
    g_mem_loop_waiter = per;
  if (mem_thread_waiters(O.waiters, &per) == 0) {
    long w = core_sizeof("pp__waiter_t");
    /* A small negative heap delta is glibc noise between the two thread
     * groups: count it as zero. */
    g_mem_thread_waiter = (per > 0 ? per : 0) + (w > 0 ? (double)w : 0);
  }
  return 0;
}
