/* bench.h -- what ppbench's files share: the options, the results and
 * figures a run reports, the contenders a scenario measures, the pools and
 * floor workers it opens, the scenarios themselves and the numbers they
 * keep for the targets.  Everything here is called from the main thread
 * unless its comment says otherwise. */
#ifndef PPBENCH_BENCH_H
#define PPBENCH_BENCH_H

#include "floor.h"

#include <portpool.h>

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* ------------------------------------------------------------ options */

typedef struct opts {
  const char *mode;
  size_t payload;
  int callers, workers, depth, pool_depth;
  double duration;   /* seconds of measurement per contender per scenario */
  int rounds;        /* interleaved windows per contender */
  const char *proto; /* raw | json | both */
  char python[PATH_MAX];
  const char *root;
  const char *json_path;
  int waiters;
  int alternatives;
  int sigpipe_ignore;
  double slow_start;
  int prewarm_workers;
  double burn_import; /* CPU seconds of bench/handlers/burn_import.py */
  double burn_ms;
  const char *only;
  const char *pin; /* none | cross | same */
} opts_t;

/* main.c: the parsed options, the JSON lines file (or NULL) and the path
 * of bridge/python/portpool_worker.py. */
extern opts_t O;
extern FILE *J;
extern char worker_py[PATH_MAX];

/* ------------------------------------------- results (results.c) */

/* bench/malloc_count.c, when preloaded, counts allocations, mutex locks and
 * condition-variable operations; the bench reports them per call. */
enum { MC_ALLOC, MC_FREE, MC_LOCK, MC_COND_SIGNAL, MC_COND_WAIT, MC_N };
typedef void (*mc_get_fn)(uint64_t out[MC_N]);
extern mc_get_fn mc_get; /* measure.c; NULL when not preloaded */
extern pid_t main_tid;   /* measure.c; the main thread, set by main */

typedef struct result {
  char scen[32];
  char name[64];
  double p50_us, p99_us, calls_s, mb_s;
  uint64_t n, errors;
  double per_call[MC_N]; /* -1 when not counted */
  double csw;            /* other threads' context switches per call */
} result_t;

#define MAX_RESULTS 64
extern result_t results[MAX_RESULTS];
extern int nresults;

/* Writes s to f as a JSON string. */
void jstr(FILE *f, const char *s);
/* The result of scen/name, or NULL. */
result_t *result_get(const char *scen, const char *name);
/* The result of scen/name, a new zeroed one if there is none yet; NULL when
 * all MAX_RESULTS are taken. */
result_t *result_new(const char *scen, const char *name);
/* Writes r as a JSON line (when --json). */
void result_emit(const result_t *r);
/* Prints a scalar figure (times, memory): name, value, unit and a note
 * (printf format, or NULL), and writes it as a JSON line. */
void figure(const char *scen, const char *name, double v, const char *unit,
            const char *fmt, ...);

/* utime + stime + cutime + cstime of the process whose /proc/PID/stat is
 * path, in seconds; *ppid its parent (0 when unreadable). */
double pid_cpu_s(const char *path, int *ppid);

/* Rss, Pss and private bytes, of a process or summed (procmem.c). */
typedef struct memsum {
  int n;
  double rss, pss, priv;
} memsum_t;
/* Rss, Pss and private (Private_Clean + Private_Dirty) bytes of a process,
 * from /proc/PID/smaps_rollup; 0 when it is gone. */
void proc_smaps(int pid, double *rss, double *pss, double *priv);
/* Summed over the pool's workers (their pids from pp_pool_status). */
memsum_t pool_workers_mem(pp_pool_t *pool);
/* Our children whose command line mentions `needle` (the zygote). */
memsum_t children_mem(const char *needle);
/* This process's heap in use, every arena (mallinfo2). */
double heap_bytes(void);

/* CPU used by other processes while a scenario runs: foreign_begin before,
 * foreign_end (CPUs busy meanwhile) while the scenario's workers still
 * live, foreign_report prints it as a figure. */
typedef struct foreign {
  double busy, own;
  uint64_t t;
} foreign_t;

void foreign_begin(foreign_t *f);
double foreign_end(const foreign_t *f);
void foreign_report(const char *scen, double cpus);

/* -------------------------------------------- contenders (measure.c) */

/* One side of a comparison: threads running fn over what they share. */
typedef struct contender {
  const char *name;
  int nthreads;
  void *(*fn)(void *);
  /* what the threads share */
  floor_worker_t *fw;
  int nfw;
  pp_pool_t *pool;
  const char *payload;
  size_t len;
  int depth;
  int json;        /* check replies as JSON, not byte-equal */
  const char *cmd; /* pool_call_thread: pp_call_bytes to this handler */
  int fflags;      /* floor variant, FLOOR_* */
  int ref;         /* a reference pool (many: depth 1), --only pp_call_d1 */
  /* pool_async_thread: its own pool on its own loop */
  int acallers, aworkers;
  const char *handler;
  /* accumulated over windows */
  samples_t lat;
  uint64_t calls, errors;
  double seconds;
  uint64_t mc[MC_N];
  uint64_t csw;
} contender_t;

/* The contenders' thread functions (contender_t.fn). */
void *floor_call_thread(void *arg); /* floor_call on c->fw, depth 1 */
void *floor_pipe_thread(void *arg); /* floor_pipeline at c->depth */
void *pool_call_thread(void *arg);  /* pp_call on c->pool */
void *pool_lease_thread(void *arg); /* pp_lease_call, the lease held */
void *pool_async_thread(void *arg); /* pp_call_async on a pool of its own */

/* Interleaves the contenders' windows (warm-up each, then --rounds rounds
 * of one window each); those --only leaves out are not run. */
void measure(contender_t **cs, int n);
/* Run once halfway through the next measure(), then cleared. */
extern void (*mid_hook)(void);
/* Prints c's line (x against base when base is not NULL) and records it
 * as scen's result; NULL when c was not measured. */
result_t *report(const char *scen, contender_t *c, size_t bytes,
                 const contender_t *base);
/* Prints a scenario's title and the column heads of report(). */
void header(const char *title);
void sleep_s(double s);

/* --pin: callers on CPU 0, workers on CPU 1 (cross) or CPU 0 (same).
 * pin_scenario sets the current scenario's choice (auto: cross for
 * one-worker scenarios); pin_worker_cpu is the workers' CPU, -1 for none;
 * pin_pid pins a process (cpu -1: leaves it); pin_pool pins a pool's
 * workers. */
void pin_scenario(int one_worker);
int pin_worker_cpu(void);
void pin_pid(pid_t pid, int cpu);
void pin_pool(pp_pool_t *pool);

/* ------------------------------------------ pools and floors (pools.c) */

/* O.root/rel into buf; returns buf. */
const char *handler_path(const char *rel, char *buf, size_t len);
/* Payload of exactly `len` bytes (JSON: an echo request), malloc'd. */
char *make_payload(size_t len, int json);
/* pp_config_set, its message on stderr when it fails. */
int cfg_set(pp_config_t *cfg, const char *k, const char *v);
/* Set around an open: an interpreter option before the worker script. */
extern const char *g_python_flag;
/* The benchmark's pool configuration; NULL if it does not build. */
pp_config_t *bench_config(int size, int raw, const char *handler,
                          const char *env_yaml, int depth, const char *start);
/* A pool of `size` workers on `handler`, pinned; env_yaml adds worker.env;
 * depth is worker.pipeline_depth, start worker.start (spawn | zygote);
 * *open_s (if not NULL) the time pp_pool_open took.  NULL on failure. */
pp_pool_t *open_pool_ex(int size, int raw, const char *handler,
                        const char *env_yaml, int depth, const char *start,
                        double *open_s);
/* open_pool_ex at the default depth (--pool-depth, else 1), worker.start
 * left as configured. */
pp_pool_t *open_pool(int size, int raw, const char *handler,
                     const char *env_yaml, double *open_s);
/* n floor workers, pinned; 0, or -1 with none left running. */
int spawn_floor(floor_worker_t *w, int n, int raw, const char *handler,
                char *const *env);
void close_floor(floor_worker_t *w, int n);
/* v when positive, else def. */
int pick(int v, int def);

/* ----------------------------------------------------------- scenarios */

/* Each returns 0, or -1 when it could not run. */
int scen_latency(int json); /* scen_latency.c */
int scen_anatomy(void);     /* scen_latency.c */
int scen_many(void);
int scen_cpu(void);
int scen_big(void);
int scen_prewarm(void);
int scen_memory(void);
int scen_zygote(void);
int scen_elastic(void); /* not in `all`: bench/elastic.sh */
int scen_scale(void);   /* not in `all`: bench/scale.sh */

/* sizeof() of a core's private type (or "type.member" offset) from
 * ppbench_sizes; -1 when unknown.  scen_memory.c */
long core_sizeof(const char *type);

/* What the scenarios keep for the targets (targets.c); -1 until a
 * scenario measured them. */
extern int g_many_depth, g_many_pool_depth; /* floor's, pool's */
extern int g_many_callers, g_many_workers;
extern double g_prewarm_1, g_prewarm_n;        /* s to ready: 1, N workers */
extern double g_prewarm_s1, g_prewarm_sn;      /* the same, python -S */
extern double g_mem_worker, g_mem_worker_idle; /* B per worker */
extern double g_mem_loop_waiter, g_mem_thread_waiter; /* B per waiter */
extern double g_zyg_1, g_zyg_spawn_n, g_zyg_n;        /* s to ready */
extern double g_zyg_pss_spawn, g_zyg_pss;             /* MiB, summed PSS */
extern double g_zyg_pss_spawn_gc, g_zyg_pss_gc;       /* MiB, after gc */
/* scen_elastic.c: elastic {min: 1, max: 16} and fixed 16 under bursts:
 * queue wait (ms), worker-seconds, peak summed PSS (MiB). */
extern double g_el_p50, g_el_p99, g_fx_p50, g_fx_p99;
extern double g_el_ws, g_fx_ws, g_el_pss, g_fx_pss;

/* ---------------------------------------- alternatives (alternatives.c) */

typedef struct alt {
  char name[64];
  double p50_us, p99_us, calls_s;
  char skipped[160];
} alt_t;

/* Runs bench/alternatives.py, prints its lines and records each measured
 * one as an "alternatives" result. */
void run_alternatives(void);
/* The alternative called name, or NULL when it did not report. */
alt_t *alt_get(const char *name);

/* ------------------------------------------------ targets (targets.c) */

/* Prints one TARGET line per target this run measured. */
void targets(void);

#endif
