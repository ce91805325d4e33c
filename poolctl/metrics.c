/* metrics.c -- a status object as OpenMetrics text (`poolctl status
 * --prometheus`): counters, gauges per pool and worker state, per-worker
 * gauges, and the pool's latency histograms with the library's own bucket
 * bounds.  Every family is labelled with the pool's name. */
#include "poolctl.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  FILE *out;
  char pool[256]; /* pool="NAME", escaped */
} om_t;

/* A label value with \\, " and newlines escaped. */
static void escape(const char *in, char *out, size_t len) {
  size_t n = 0;

  for (; *in && n + 3 < len; in++) {
    if (*in == '\\' || *in == '"') {
      out[n++] = '\\';
      out[n++] = *in;
    } else if (*in == '\n') {
      out[n++] = '\\';
      out[n++] = 'n';
    } else {
      out[n++] = *in;
    }
  }
  out[n] = '\0';
}

static void family(om_t *m, const char *name, const char *type,
                   const char *unit, const char *help) {
  fprintf(m->out, "# TYPE %s %s\n", name, type);
  if (unit)
    fprintf(m->out, "# UNIT %s %s\n", name, unit);
  fprintf(m->out, "# HELP %s %s\n", name, help);
}

static void counter(om_t *m, const char *name, const char *help, json_int_t v) {
  family(m, name, "counter", NULL, help);
  fprintf(m->out, "%s_total{%s} %" JSON_INTEGER_FORMAT "\n", name, m->pool,
          v < 0 ? 0 : v);
}

static void gauge(om_t *m, const char *name, const char *unit, const char *help,
                  json_int_t v) {
  family(m, name, "gauge", unit, help);
  fprintf(m->out, "%s{%s} %" JSON_INTEGER_FORMAT "\n", name, m->pool, v);
}

/* Microseconds as exact decimal seconds: 1 -> 0.000001, 2000000 -> 2.0. */
static void seconds(uint64_t us, char *buf, size_t len) {
  char frac[8];
  int n;

  snprintf(frac, sizeof(frac), "%06" PRIu64, us % 1000000);
  for (n = 6; n > 1 && frac[n - 1] == '0'; n--)
    frac[n - 1] = '\0';
  snprintf(buf, len, "%" PRIu64 ".%s", us / 1000000, frac);
}

static void histogram(om_t *m, json_t *st, const char *key, const char *name,
                      const char *help) {
  pp_histogram_t h;
  uint64_t cum = 0;
  char le[32], sum[32];
  int k;

  if (pc_histogram(json_object_get(st, key), &h) != 0)
    return;
  family(m, name, "histogram", "seconds", help);
  /* The last bucket is unbounded: it is the +Inf bucket. */
  for (k = 0; k < PP_HIST_BUCKETS - 1; k++) {
    cum += h.buckets[k];
    seconds(pp_histogram_bound_us(k), le, sizeof(le));
    fprintf(m->out, "%s_bucket{%s,le=\"%s\"} %" PRIu64 "\n", name, m->pool, le,
            cum);
  }
  cum += h.buckets[PP_HIST_BUCKETS - 1];
  /* count is what the buckets hold; they are copied together, but take
   * the larger so the +Inf bucket always equals _count. */
  if (h.count > cum)
    cum = h.count;
  fprintf(m->out, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name, m->pool,
          cum);
  seconds(h.sum_us, sum, sizeof(sum));
  fprintf(m->out, "%s_count{%s} %" PRIu64 "\n", name, m->pool, cum);
  fprintf(m->out, "%s_sum{%s} %s\n", name, m->pool, sum);
}

/* One gauge per worker: name{pool,worker="ID"} key-of-w. */
static void per_worker(om_t *m, json_t *workers, const char *name,
                       const char *type, const char *unit, const char *help,
                       const char *key, double scale) {
  json_t *w;
  size_t i;

  family(m, name, type, unit, help);
  json_array_foreach(workers, i, w) {
    if (pc_num(w, "pid") <= 0 && strcmp(key, "restarts") != 0 &&
        strcmp(key, "requests_total") != 0)
      continue; /* no process: no RSS, CPU or uptime */
    fprintf(m->out, "%s%s{%s,worker=\"%" JSON_INTEGER_FORMAT "\"} ", name,
            strcmp(type, "counter") == 0 ? "_total" : "", m->pool,
            pc_num(w, "id"));
    if (scale == 1)
      fprintf(m->out, "%" JSON_INTEGER_FORMAT "\n", pc_num(w, key));
    else
      fprintf(m->out, "%.3f\n", (double)pc_num(w, key) * scale);
  }
}

void pc_print_openmetrics(FILE *out, json_t *st) {
  static const char *pool_states[] = {"warming", "ready", "degraded", "closing",
                                      "closed"};
  json_t *workers = json_object_get(st, "workers"), *w;
  json_t *by = json_object_get(st, "reclaimed_by");
  char name[200], uptime[32];
  om_t m;
  size_t i;
  int s, n;

  m.out = out;
  escape(pc_str(st, "name"), name, sizeof(name));
  snprintf(m.pool, sizeof(m.pool), "pool=\"%s\"", name);

  family(&m, "portpool_pool_state", "gauge", NULL,
         "1 for the pool's current state, 0 for the others");
  for (i = 0; i < sizeof(pool_states) / sizeof(pool_states[0]); i++)
    fprintf(out, "portpool_pool_state{%s,state=\"%s\"} %d\n", m.pool,
            pool_states[i], strcmp(pc_str(st, "state"), pool_states[i]) == 0);
  family(&m, "portpool_workers", "gauge", NULL, "Worker slots by state");
  for (s = 0; s <= PP_WORKER_EXITED; s++) {
    const char *sn = pp_worker_state_name((pp_worker_state_t)s);
    n = 0;
    json_array_foreach(workers, i, w) n += strcmp(pc_str(w, "state"), sn) == 0;
    fprintf(out, "portpool_workers{%s,state=\"%s\"} %d\n", m.pool, sn, n);
  }
  gauge(&m, "portpool_size", NULL, "Worker slots", pc_num(st, "size"));
  gauge(&m, "portpool_target_size", NULL, "Worker slots asked for by scale",
        json_object_get(st, "target_size") ? pc_num(st, "target_size")
                                           : pc_num(st, "size"));
  if (json_object_get(st, "size_min")) {
    gauge(&m, "portpool_size_min", NULL,
          "Fewest workers an elastic pool keeps (= size when fixed)",
          pc_num(st, "size_min"));
    gauge(&m, "portpool_size_max", NULL,
          "Most workers an elastic pool grows to (= size when fixed)",
          pc_num(st, "size_max"));
    gauge(&m, "portpool_scale_blocked", NULL,
          "1 while an elastic pool does not grow: new workers failed to boot",
          json_string_length(json_object_get(st, "scale_blocked")) > 0);
    counter(&m, "portpool_scale_changes",
            "Times the target size changed (grow, shrink, operator, reload)",
            pc_num(st, "scale_changes"));
  }
  gauge(&m, "portpool_draining", NULL, "1 while the pool is drained",
        pc_num(st, "draining"));
  gauge(&m, "portpool_waiters", NULL, "Checkouts waiting for a worker",
        pc_num(st, "waiters"));
  gauge(&m, "portpool_waiters_max", NULL, "Most checkouts ever waiting at once",
        pc_num(st, "waiters_max"));
  family(&m, "portpool_uptime_seconds", "gauge", "seconds",
         "Time since the pool started");
  seconds((uint64_t)pc_num(st, "uptime_ms") * 1000, uptime, sizeof(uptime));
  fprintf(out, "portpool_uptime_seconds{%s} %s\n", m.pool, uptime);

  counter(&m, "portpool_checkouts", "Leases granted", pc_num(st, "checkouts"));
  counter(&m, "portpool_checkins", "Leases returned by their client",
          pc_num(st, "checkins"));
  counter(&m, "portpool_timeouts", "Checkouts that timed out",
          pc_num(st, "timeouts"));
  counter(&m, "portpool_rejected", "Checkouts refused at once (max_waiters)",
          pc_num(st, "rejected"));
  counter(&m, "portpool_requests", "Requests sent to workers",
          pc_num(st, "requests"));
  counter(&m, "portpool_errors", "Requests that failed", pc_num(st, "errors"));
  counter(&m, "portpool_restarts", "Worker restarts after a crash or timeout",
          pc_num(st, "restarts"));
  counter(&m, "portpool_recycles",
          "Workers replaced for max_requests, max_rss, max_age, restart or "
          "reload",
          pc_num(st, "recycles"));
  counter(&m, "portpool_slow_requests",
          "Requests that ran past worker.slow_request (stack dumped)",
          pc_num(st, "slow_requests"));
  counter(&m, "portpool_cancels", "Calls their caller ended with pp_cancel",
          pc_num(st, "cancels"));
  counter(&m, "portpool_stale_replies",
          "Replies dropped because their lease had ended",
          pc_num(st, "stale_replies"));
  family(&m, "portpool_reclaimed", "counter", NULL,
         "Leases and waits ended by their client's death, by when it died");
  fprintf(out,
          "portpool_reclaimed_total{%s,reason=\"withdrawn\"} "
          "%" JSON_INTEGER_FORMAT "\n"
          "portpool_reclaimed_total{%s,reason=\"undelivered\"} "
          "%" JSON_INTEGER_FORMAT "\n"
          "portpool_reclaimed_total{%s,reason=\"idle\"} "
          "%" JSON_INTEGER_FORMAT "\n"
          "portpool_reclaimed_total{%s,reason=\"in_flight\"} "
          "%" JSON_INTEGER_FORMAT "\n",
          m.pool, pc_num(by, "withdrawn"), m.pool, pc_num(by, "undelivered"),
          m.pool, pc_num(by, "idle"), m.pool, pc_num(by, "in_flight"));

  histogram(&m, st, "spawn_to_ready", "portpool_spawn_to_ready_seconds",
            "From spawning a worker to its HELLO");
  histogram(&m, st, "queue_wait", "portpool_queue_wait_seconds",
            "Time a checkout waited for a worker");
  histogram(&m, st, "run_time", "portpool_run_time_seconds",
            "Request run time on a worker");

  per_worker(&m, workers, "portpool_worker_requests", "counter", NULL,
             "Requests served by the slot over all its processes",
             "requests_total", 1);
  per_worker(&m, workers, "portpool_worker_restarts", "counter", NULL,
             "Restarts of the slot", "restarts", 1);
  per_worker(&m, workers, "portpool_worker_rss_bytes", "gauge", "bytes",
             "Resident memory of the worker process", "rss_bytes", 1);
  per_worker(&m, workers, "portpool_worker_cpu_seconds", "counter", "seconds",
             "CPU time of the current worker process", "cpu_time_ms", 0.001);
  per_worker(&m, workers, "portpool_worker_uptime_seconds", "gauge", "seconds",
             "Time since the worker process said HELLO", "uptime_ms", 0.001);
  fputs("# EOF\n", out);
}
