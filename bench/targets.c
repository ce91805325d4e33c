/* targets.c -- the targets of issues 7, 17 and 18 as one table: each row the
 * ratio of two numbers measured in this run (value / baseline) and the ratio it
 * needs.  targets() prints one TARGET line (and a JSON line) for every row
 * whose two numbers were measured, and leaves the others out. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Where a row's number comes from: a field of one result of this run
 * (RES: scenario, contender name, field), or a variable (VAR).  A result
 * that is not there or a negative variable is "not measured". */
typedef struct num {
  const char *scen, *name;
  size_t field; /* offsetof(result_t, ...) */
  const double *v;
} num_t;

#define RES(scen, name, field)                                                 \
  { scen, name, offsetof(result_t, field), NULL }
#define VAR(x)                                                                 \
  { NULL, NULL, 0, &(x) }

typedef struct row {
  const char *id, *text;
  num_t value, baseline;
  const char *unit;
  const char *op; /* "<=" or ">=" limit; "info": the ratio, no verdict */
  double limit;
  const char *note;    /* NULL, or said after the figures */
  const char *skipped; /* when not empty: printed as SKIPPED, with why */
} row_t;

/* The contenders' names the rows read (scen_latency.c, scen_cpu.c,
 * scen_big.c). */
#define LAT_RAW "latency_raw"
#define LAT_JSON "latency_json"
#define FLOOR "floor: C driver <-> worker, blocking"
#define POLLING_FLOOR "floor, polling the reply up to 50 us first"
#define CALL "pool: pp_call"

/* Numbers and notes that take more than one lookup: collect() sets them
 * before the table is walked; -1 when not measured. */
static double call_p50 = -1; /* JSON mode's pp_call, else raw mode's */
static double mp_p50 = -1, ppe_p50 = -1, erlang_p50 = -1;
static char erlang_skipped[160];
static double many_floor = -1, many_pipe = -1, many_async = -1;
static double many_threads = -1, many_ref = -1;
static double many_threads_p99 = -1, many_ref_p99 = -1;
/* The floors' p99 with each of the pool's callers queued behind its share
 * of the others: p99 x callers / (workers x requests in flight each). */
static double many_floor_q99 = -1, many_pipe_q99 = -1;
static char note_18c[256], note_18d[256];
static char note_3[256], note_3t[256], note_6[256], note_7a[256], note_7s[256],
    note_7b[256], note_8a[256];

static const double kib4 = 4096, b256 = 256;
static const char ceiling[] =
    "JSON mode; a pool as fast as the floor would show this";

static const row_t rows[] = {
    /* id, text,
     * value, baseline,
     * unit, op, limit, note, skipped */
    {"1a", "pp_call p50 <= 1.2x floor p50 (raw)", RES(LAT_RAW, CALL, p50_us),
     RES(LAT_RAW, FLOOR, p50_us), "us", "<=", 1.2, NULL, NULL},
    {"1b", "pp_call p99 <= 2x floor p99 (raw)", RES(LAT_RAW, CALL, p99_us),
     RES(LAT_RAW, FLOOR, p99_us), "us", "<=", 2.0, NULL, NULL},
    {"1a*", "(info) pp_call p50 vs a floor that polls as it does",
     RES(LAT_RAW, CALL, p50_us), RES(LAT_RAW, POLLING_FLOOR, p50_us), "us",
     "info", 0,
     "raw mode; the floor polls its reply pipe up to 50 us before it "
     "sleeps, as pp_call does (worker.reply_spin_us)",
     NULL},
    {"1c", "pp_call p50 <= 1.2x floor p50 (JSON)", RES(LAT_JSON, CALL, p50_us),
     RES(LAT_JSON, FLOOR, p50_us), "us", "<=", 1.2, NULL, NULL},
    {"1d", "pp_call p99 <= 2x floor p99 (JSON)", RES(LAT_JSON, CALL, p99_us),
     RES(LAT_JSON, FLOOR, p99_us), "us", "<=", 2.0, NULL, NULL},

    /* Against the alternatives: their p50 over the pool's, JSON mode (they
     * pickle their arguments; the pool's JSON mode is the fair match).
     * Each beside its ceiling: the alternative against the floor itself
     * (JSON mode, same run), the most any pool over these pipes could
     * show. */
    {"2a", "multiprocessing.Pool.apply p50 >= 10x pp_call p50", VAR(mp_p50),
     VAR(call_p50), "us", ">=", 10, NULL, NULL},
    {"2a*", "(info) ceiling: multiprocessing.Pool.apply p50 vs floor p50",
     VAR(mp_p50), RES(LAT_JSON, FLOOR, p50_us), "us", "info", 0, ceiling, NULL},
    {"2b", "ProcessPoolExecutor p50 >= 10x pp_call p50", VAR(ppe_p50),
     VAR(call_p50), "us", ">=", 10, NULL, NULL},
    {"2b*", "(info) ceiling: ProcessPoolExecutor p50 vs floor p50",
     VAR(ppe_p50), RES(LAT_JSON, FLOOR, p50_us), "us", "info", 0, ceiling,
     NULL},
    {"2c", "Erlang port p50 > pp_call p50", VAR(erlang_p50), VAR(call_p50),
     "us", ">=", 1, NULL, erlang_skipped},

    {"3", "64 callers x 2 workers >= 0.6x raw pipelined floor", VAR(many_async),
     VAR(many_pipe), "calls/s", ">=", 0.6, note_3, NULL},

    /* Issue 18: threads blocked in pp_call, at the default depth and
     * pipelined, against the floors; and one caller's latency kept. */
    {"18a", "64 threads pp_call, depth 1 >= 0.9x floor at depth 1",
     VAR(many_ref), VAR(many_floor), "calls/s", ">=", 0.9,
     "worker.pipeline_depth 1 (the default), 2 workers; the floor keeps one "
     "request in flight per worker",
     NULL},
    {"18b", "64 threads pp_call, depth 16 >= 0.8x pipelined floor",
     VAR(many_threads), VAR(many_pipe), "calls/s", ">=", 0.8, note_3t, NULL},
    {"18c", "p99 of 18a <= 3x its floor's p99, queued", VAR(many_ref_p99),
     VAR(many_floor_q99), "us", "<=", 3, note_18c, NULL},
    {"18d", "p99 of 18b <= 3x its floor's p99, queued", VAR(many_threads_p99),
     VAR(many_pipe_q99), "us", "<=", 3, note_18d, NULL},
    {"18e", "one caller: pp_call p50 <= 1.1x floor p50 (raw)",
     RES(LAT_RAW, CALL, p50_us), RES(LAT_RAW, FLOOR, p50_us), "us", "<=", 1.1,
     NULL, NULL},

    {"4", "CPU-bound: 2 workers >= 1.8x one worker",
     RES("cpu", "pool: 2 workers, 4 callers", calls_s),
     RES("cpu", "pool: 1 worker, 2 callers", calls_s), "calls/s", ">=", 1.8,
     NULL, NULL},
    {"5", "64 KiB payloads >= 0.8x floor MB/s", RES("big", CALL, mb_s),
     RES("big", FLOOR, mb_s), "MB/s", ">=", 0.8, NULL, NULL},

    {"6", "pre-warm: 8 slow workers ready <= 1.15x one", VAR(g_prewarm_n),
     VAR(g_prewarm_1), "s", "<=", 1.15, note_6, NULL},
    {"6*", "(info) the same with python -S: no site hooks", VAR(g_prewarm_sn),
     VAR(g_prewarm_s1), "s", "info", 0,
     "the interpreter's start-up without site.py and the .pth files it "
     "runs; 8 starts share 2 CPUs",
     NULL},

    {"7a", "zygote: 8 CPU-heavy workers ready <= 1.3x one import", VAR(g_zyg_n),
     VAR(g_zyg_1), "s", "<=", 1.3, note_7a, NULL},
    {"7*", "(info) spawn: 8 CPU-heavy workers ready vs one import",
     VAR(g_zyg_spawn_n), VAR(g_zyg_1), "s", "info", 0, note_7s, NULL},
    {"7b", "zygote: 8 workers' summed PSS <= 0.5x 8 spawned", VAR(g_zyg_pss),
     VAR(g_zyg_pss_spawn), "MiB", "<=", 0.5, note_7b, NULL},
    {"7b*", "(info) same, after a full gc.collect() in every worker",
     VAR(g_zyg_pss_gc), VAR(g_zyg_pss_spawn_gc), "MiB", "info", 0,
     "the handler's gc_collect command; the first full collection in a "
     "forked worker touches what the zygote froze unless it stays frozen",
     NULL},

    {"17a", "elastic {1..16}: p99 queue wait in bursts <= 1.5x fixed 16",
     VAR(g_el_p99), VAR(g_fx_p99), "ms", "<=", 1.5,
     "bench/elastic.sh: zygote, 64 callers per burst", NULL},
    {"17b", "elastic {1..16}: worker-seconds <= 0.5x fixed 16", VAR(g_el_ws),
     VAR(g_fx_ws), "s", "<=", 0.5, NULL, NULL},
    {"17*", "(info) elastic {1..16}: p50 queue wait in bursts vs fixed",
     VAR(g_el_p50), VAR(g_fx_p50), "ms", "info", 0, NULL, NULL},
    {"17*", "(info) elastic {1..16}: peak summed PSS vs fixed", VAR(g_el_pss),
     VAR(g_fx_pss), "MiB", "info", 0, NULL, NULL},

    {"8a", "pool-side memory per worker <= 4 KiB", VAR(g_mem_worker), VAR(kib4),
     "B", "<=", 1, note_8a, NULL},
    {"8b", "per waiting checkout <= 256 B (loop face)", VAR(g_mem_loop_waiter),
     VAR(b256), "B", "<=", 1, "heap per pp_checkout waiter", NULL},
    {"8c", "per waiting checkout <= 256 B (blocking face)",
     VAR(g_mem_thread_waiter), VAR(b256), "B", "<=", 1,
     "heap delta + the waiter record on the caller's stack", NULL},
};

/* The alternatives' p50s, kept only when there is a pp_call p50 to hold
 * them against. */
static void collect_alternatives(void) {
  result_t *p = result_get(LAT_JSON, CALL);
  alt_t *al;

  if (p == NULL)
    p = result_get(LAT_RAW, CALL);
  if (p == NULL)
    return;
  call_p50 = p->p50_us;
  if ((al = alt_get("multiprocessing.Pool(2).apply")) && !al->skipped[0])
    mp_p50 = al->p50_us;
  if ((al = alt_get("ProcessPoolExecutor(2).submit.result")) && !al->skipped[0])
    ppe_p50 = al->p50_us;
  if ((al = alt_get("erlang_port")) != NULL) {
    if (al->skipped[0])
      snprintf(erlang_skipped, sizeof(erlang_skipped), "%s", al->skipped);
    else
      erlang_p50 = al->p50_us;
  }
}

/* many's rows, found by the depths in their names (scen_many.c). */
static void collect_many(void) {
  result_t *a = NULL, *b = NULL, *f = NULL, *p1 = NULL, *pt = NULL;
  char suffix[48];

  if (g_many_depth <= 0)
    return;
  snprintf(suffix, sizeof(suffix), "x depth %d (pipelined)", g_many_depth);
  for (int i = 0; i < nresults; i++) {
    result_t *r = &results[i];
    const char *d = strstr(r->name, "pipeline_depth ");
    if (strcmp(r->scen, "many") != 0)
      continue;
    if (strncmp(r->name, "floor:", 6) == 0 && strstr(r->name, suffix))
      a = r;
    else if (strncmp(r->name, "floor:", 6) == 0 &&
             strstr(r->name, "x depth 1") &&
             strstr(r->name, "pipelined") == NULL)
      f = r;
    else if (d && strstr(r->name, "pp_call_async") &&
             atoi(d + 15) == g_many_pool_depth)
      b = r;
    else if (d && atoi(d + 15) == g_many_pool_depth)
      pt = r;
    if (d && atoi(d + 15) == 1)
      p1 = r;
  }
  many_pipe = a ? a->calls_s : -1;
  many_async = b ? b->calls_s : -1;
  many_threads = pt ? pt->calls_s : -1;
  many_threads_p99 = pt ? pt->p99_us : -1;
  many_floor = f ? f->calls_s : -1;
  /* The reference without pipelining, unless that is the async row. */
  many_ref = p1 && p1 != b ? p1->calls_s : -1;
  many_ref_p99 = p1 && p1 != b ? p1->p99_us : -1;
  /* A floor caller has its worker to itself; each of the pool's callers
   * waits for the calls queued ahead of it (Little's law), which no
   * handoff removes: its p99 is held against the floor's scaled by that
   * queue, callers / (workers x in flight per worker). */
  if (f && g_many_callers > 0 && g_many_workers > 0) {
    double q1 = (double)g_many_callers / g_many_workers;
    double qd = q1 / g_many_depth > 1 ? q1 / g_many_depth : 1;
    many_floor_q99 = f->p99_us * q1;
    many_pipe_q99 = a ? a->p99_us * qd : -1;
    snprintf(note_18c, sizeof(note_18c),
             "floor p99 %.1f us x %.0f queued per worker (%d callers, %d "
             "workers, 1 in flight each)",
             f->p99_us, q1, g_many_callers, g_many_workers);
    if (a)
      snprintf(note_18d, sizeof(note_18d),
               "pipelined floor p99 %.1f us x %.2g (%d callers, %d workers x "
               "%d in flight)",
               a->p99_us, qd, g_many_callers, g_many_workers, g_many_depth);
  }
  snprintf(note_3, sizeof(note_3),
           "pool: 64 pp_call_async calls in flight (loop face) at "
           "worker.pipeline_depth %d, floor at %d in flight per worker%s",
           g_many_pool_depth, g_many_depth,
           g_many_pool_depth == g_many_depth ? "" : " (not the same depth)");
  snprintf(note_3t, sizeof(note_3t),
           "64 threads each blocked in pp_call, worker.pipeline_depth %d, "
           "against the floor at %d in flight per worker",
           g_many_pool_depth, g_many_depth);
}

/* The notes that carry this run's settings. */
static void collect_notes(void) {
  snprintf(note_6, sizeof(note_6), "%d workers vs 1, import sleeps %g s",
           O.prewarm_workers, O.slow_start);
  snprintf(note_7a, sizeof(note_7a),
           "worker.start: zygote, %d workers vs one spawned worker, import "
           "burns %g s of CPU",
           O.prewarm_workers, O.burn_import);
  snprintf(note_7s, sizeof(note_7s),
           "%d spawned workers vs one, %ld CPUs; "
           "issue 7: about 4x on 2 cores",
           O.prewarm_workers, sysconf(_SC_NPROCESSORS_ONLN));
  snprintf(note_7b, sizeof(note_7b),
           "%d workers each, after one call on each; smaps_rollup Pss of "
           "the pids in pp_pool_status; zygote process not included",
           O.prewarm_workers);
  /* Only when memory ran: core_sizeof runs ppbench_sizes. */
  if (g_mem_worker >= 0) {
    long lease = core_sizeof("pp_lease_t");
    snprintf(note_8a, sizeof(note_8a),
             "heap per worker after one call on each; idle: %.0f B%s",
             g_mem_worker_idle,
             lease > 0 ? "; the difference is mostly the lease object kept "
                         "for reuse"
                       : "");
    if (lease > 0)
      snprintf(note_8a + strlen(note_8a), sizeof(note_8a) - strlen(note_8a),
               " (sizeof(pp_lease_t) %ld)", lease);
  }
}

/* A row's number, -1 when it was not measured. */
static double num_get(const num_t *n) {
  const result_t *r;

  if (n->v)
    return *n->v;
  r = result_get(n->scen, n->name);
  return r ? *(const double *)((const char *)r + n->field) : -1;
}

/* One target line: value op limit * baseline, or a note when it cannot be
 * measured.  op "info": a ratio printed for reference, no verdict. */
static void target(const char *id, const char *text, double value,
                   double baseline, const char *unit, const char *op,
                   double limit, const char *status_override,
                   const char *note) {
  double ratio = baseline > 0 ? value / baseline : 0;
  const char *status;

  if (status_override)
    status = status_override;
  else if (value <= 0 || baseline <= 0)
    status = "NOT MEASURED";
  else if (strcmp(op, "info") == 0)
    status = "INFO";
  else if (strcmp(op, "<=") == 0)
    status = ratio <= limit ? "PASS" : "FAIL";
  else
    status = ratio >= limit ? "PASS" : "FAIL";
  if (status_override || value <= 0 || baseline <= 0)
    printf("TARGET %-3s %-58s %s%s%s\n", id, text, status, note ? ": " : "",
           note ? note : "");
  else if (strcmp(op, "info") == 0)
    printf("TARGET %-3s %-58s %.4g / %.4g %s = %.3fx  INFO%s%s\n", id, text,
           value, baseline, unit, ratio, note ? "  -- " : "", note ? note : "");
  else
    printf(
        "TARGET %-3s %-58s %.4g / %.4g %s = %.3fx (target %s %.2fx)  %s%s%s\n",
        id, text, value, baseline, unit, ratio, op, limit, status,
        note ? "  -- " : "", note ? note : "");
  if (J) {
    fprintf(J, "{\"kind\":\"target\",\"id\":");
    jstr(J, id);
    fprintf(J, ",\"text\":");
    jstr(J, text);
    fprintf(J,
            ",\"value\":%.6g,\"baseline\":%.6g,\"unit\":\"%s\",\"ratio\":%.6g,"
            "\"op\":\"%s\",\"limit\":%g,\"status\":",
            value, baseline, unit, ratio, op, limit);
    jstr(J, status);
    fprintf(J, ",\"note\":");
    jstr(J, note ? note : "");
    fprintf(J, "}\n");
    fflush(J);
  }
}

void targets(void) {
  printf("\n== targets (issues 7, 17, 18), each a ratio within this run\n");
  collect_alternatives();
  collect_many();
  collect_notes();
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    const row_t *t = &rows[i];
    double value = num_get(&t->value), baseline = num_get(&t->baseline);

    if (t->skipped && t->skipped[0])
      target(t->id, t->text, 0, 0, t->unit, t->op, t->limit, "SKIPPED",
             t->skipped);
    else if (value >= 0 && baseline >= 0)
      target(t->id, t->text, value, baseline, t->unit, t->op, t->limit, NULL,
             t->note);
  }
}
