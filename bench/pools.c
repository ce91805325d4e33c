/* pools.c -- the pools and floor workers the scenarios open: the
 * benchmark's pool configuration, pinned pools, pinned floor workers, and
 * the payloads they echo. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

const char *handler_path(const char *rel, char *buf, size_t len) {
  snprintf(buf, len, "%s/%s", O.root, rel);
  return buf;
}

/* Payload of exactly `len` bytes: raw 'x's, or a JSON echo request padded
 * with 'x's in its string argument. */
char *make_payload(size_t len, int json) {
  static const char pre[] = "{\"cmd\":\"echo\",\"args\":\"";
  static const char post[] = "\"}";
  size_t fixed = sizeof(pre) - 1 + sizeof(post) - 1;
  char *p;

  if (json && len < fixed)
    len = fixed;
  p = malloc(len + 1);
  if (p == NULL)
    abort();
  memset(p, 'x', len);
  if (json) {
    memcpy(p, pre, sizeof(pre) - 1);
    memcpy(p + len - (sizeof(post) - 1), post, sizeof(post) - 1);
  }
  p[len] = '\0';
  return p;
}

int cfg_set(pp_config_t *cfg, const char *k, const char *v) {
  pp_diag_t diag;
  int r = pp_config_set(cfg, k, v, &diag);
  if (r != 0)
    fprintf(stderr, "config %s=%s: %s\n", k, v, diag.message);
  return r;
}

/* The pool's worker.pipeline_depth where a scenario does not choose:
 * --pool-depth, else the configuration's default (1). */
static int pool_depth(void) { return O.pool_depth > 0 ? O.pool_depth : 1; }

const char *g_python_flag;

pp_config_t *bench_config(int size, int raw, const char *handler,
                          const char *env_yaml, int depth, const char *start) {
  pp_config_t *cfg;
  char cmd[4 * PATH_MAX], num[32], flag[32] = "";
  int r;

  if (pp_config_new(&cfg) != 0)
    return NULL;
  if (g_python_flag)
    snprintf(flag, sizeof(flag), "\"%s\", ", g_python_flag);
  snprintf(cmd, sizeof(cmd), "[\"%s\", %s\"%s\"%s, \"%s\"]", O.python, flag,
           worker_py, raw ? ", \"--raw\"" : "", handler);
  snprintf(num, sizeof(num), "%d", size);
  r = cfg_set(cfg, "name", "ppbench") || cfg_set(cfg, "size", num) ||
      cfg_set(cfg, "worker.command", cmd) ||
      cfg_set(cfg, "worker.allow_root",
              "true") || /* the bench may run as root */
      cfg_set(cfg, "worker.startup_timeout", "60s") ||
      cfg_set(cfg, "worker.request_timeout", "120s") ||
      cfg_set(cfg, "checkout.timeout", "120s") ||
      cfg_set(cfg, "checkout.max_waiters", "1000000");
  if (r == 0 && depth > 1) {
    snprintf(num, sizeof(num), "%d", depth);
    r = cfg_set(cfg, "worker.pipeline_depth", num);
  }
  if (r == 0 && start)
    r = cfg_set(cfg, "worker.start", start);
  if (r == 0 && env_yaml)
    r = cfg_set(cfg, "worker.env", env_yaml);
  if (r != 0) {
    pp_config_free(cfg);
    return NULL;
  }
  return cfg;
}

pp_pool_t *open_pool_ex(int size, int raw, const char *handler,
                        const char *env_yaml, int depth, const char *start,
                        double *open_s) {
  pp_config_t *cfg = bench_config(size, raw, handler, env_yaml, depth, start);
  pp_pool_t *pool = NULL;
  pp_diag_t diag;
  uint64_t t0;
  int r;

  if (cfg == NULL)
    return NULL;
  t0 = bench_now_ns();
  r = pp_pool_open(cfg, NULL, &pool, &diag);
  if (open_s)
    *open_s = (double)(bench_now_ns() - t0) / 1e9;
  pp_config_free(cfg);
  if (r != 0) {
    fprintf(stderr, "pp_pool_open: %s: %s\n", pp_strerror(r), diag.message);
    return NULL;
  }
  pin_pool(pool);
  return pool;
}

pp_pool_t *open_pool(int size, int raw, const char *handler,
                     const char *env_yaml, double *open_s) {
  return open_pool_ex(size, raw, handler, env_yaml, pool_depth(), NULL, open_s);
}

int spawn_floor(floor_worker_t *w, int n, int raw, const char *handler,
                char *const *env) {
  for (int i = 0; i < n; i++) {
    if (floor_spawn(&w[i], O.python, worker_py, raw, handler, env, 60) != 0) {
      while (i-- > 0)
        floor_close(&w[i]);
      return -1;
    }
    pin_pid(w[i].pid, pin_worker_cpu());
  }
  return 0;
}

void close_floor(floor_worker_t *w, int n) {
  for (int i = 0; i < n; i++)
    floor_close(&w[i]);
}

int pick(int v, int def) { return v > 0 ? v : def; }
