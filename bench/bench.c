/* bench.c -- ppbench: the pool beside its floor, in one invocation.
 *
 *   ppbench [options] [all|latency|many|cpu|big|prewarm|zygote|memory]
 *
 * Every scenario keeps both sides alive at once and interleaves their
 * measurement windows (floor, pool, floor, pool, ...), so drift on a noisy
 * machine hits both alike; only ratios measured within one run are
 * compared against the targets of issue 7.  `all` also runs
 * bench/alternatives.py (multiprocessing, ProcessPoolExecutor, an Erlang
 * port when escript exists) and prints one TARGET line per target with its
 * ratio and PASS/FAIL.  --json FILE writes every figure as JSON lines for
 * bench/report.py.  Not a test: nothing here asserts on time. */
#include "floor.h"

#include <portpool.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifndef PPBENCH_SOURCE_DIR
#define PPBENCH_SOURCE_DIR "."
#endif

/* ------------------------------------------------------------ options */

typedef struct opts {
  const char *mode;
  size_t payload;
  int callers, workers, depth, pool_depth;
  double duration; /* seconds of measurement per contender per scenario */
  int rounds;      /* interleaved windows per contender */
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

static opts_t O;
static FILE *J; /* JSON lines, or NULL */
static char worker_py[PATH_MAX];

static void usage(FILE *f) {
  fprintf(f,
"usage: ppbench [options] [all|latency|many|cpu|big|prewarm|zygote|memory|anatomy]\n"
"  all runs every scenario but anatomy (a profile aid, see bench/profile.sh)\n"
"  --payload N        payload bytes (default 64; big: 65536)\n"
"  --callers N        caller threads on the pool (latency 1, many 64)\n"
"  --workers N        pool size / floor workers (latency 1, many 2)\n"
"  --depth D          requests in flight per worker for the raw pipelined\n"
"                     floor in many (16); the pool there runs at the same\n"
"                     worker.pipeline_depth unless --pool-depth says\n"
"  --pool-depth D     the pool's worker.pipeline_depth in every scenario\n"
"                     (default: many runs one pool at --depth and one at 1\n"
"                     for reference; the other scenarios run at 1, the\n"
"                     configuration's default)\n"
"  --duration S       seconds measured per contender per scenario (1)\n"
"  --rounds N         interleaved windows per contender (10)\n"
"  --proto raw|json|both   worker mode for latency (all: both)\n"
"  --python PATH      interpreter (default: python3 on PATH, resolved to\n"
"                     realpath(sys.executable) as the pool does)\n"
"  --root DIR         source tree (default %s)\n"
"  --json FILE        also write JSON lines for bench/report.py\n"
"  --waiters N        waiting checkouts for the memory scenario (10000)\n"
"  --no-alternatives  skip bench/alternatives.py in `all`\n"
"  --sigpipe-ignore   ignore SIGPIPE before opening pools (the library then\n"
"                     skips its per-write signal masking)\n"
"  --slow-start S     import delay of fixtures/slow_start.py (1.5)\n"
"  --prewarm-workers N  workers of the prewarm and zygote scenarios (8)\n"
"  --burn-import S    CPU seconds burnt by the import of\n"
"                     bench/handlers/burn_import.py (zygote: 1.5)\n"
"  --burn-ms MS       CPU per call of the cpu scenario's handler (1)\n"
"  --pin auto|none|cross|same  pin caller threads to CPU 0 and workers to\n"
"                     CPU 1 (cross) or CPU 0 (same).  auto (default): cross\n"
"                     for the one-worker scenarios (latency, big, anatomy),\n"
"                     none for the others.  Unpinned, the scheduler puts each\n"
"                     worker process beside or across from the caller\n"
"                     depending on the machine's load (2.5x apart), and the\n"
"                     floor's and the pool's workers may land differently\n"
"  --only WHO         measure one side only: floor, pipe, pp_call, lease,\n"
"                     pp_call_d1 (many's reference pool at depth 1)\n"
"                     (for profiling: strace, callgrind, LD_PRELOAD counters)\n",
          PPBENCH_SOURCE_DIR);
}

/* --------------------------------------------------------- JSON output */

static void jstr(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      fputc('\\', f);
    if ((unsigned char)*s < 0x20)
      fprintf(f, "\\u%04x", *s);
    else
      fputc(*s, f);
  }
  fputc('"', f);
}

/* ------------------------------------------------------- counters (LD_PRELOAD) */

/* bench/malloc_count.c, when preloaded, counts allocations, mutex locks and
 * condition-variable operations; the bench reports them per call. */
enum { MC_ALLOC, MC_FREE, MC_LOCK, MC_COND_SIGNAL, MC_COND_WAIT, MC_N };
typedef void (*mc_get_fn)(uint64_t out[MC_N]);
static mc_get_fn mc_get;

/* Context switches of the process's threads that are not the bench's own
 * caller threads nor the main thread: the pool's loop thread (and libuv's
 * pool, if any).  Extra wake-ups per call show here. */
static pid_t main_tid;

static uint64_t task_csw(pid_t tid) {
  char path[64], line[256];
  uint64_t v, sum = 0;
  FILE *f;

  snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
  if ((f = fopen(path, "r")) == NULL)
    return 0;
  while (fgets(line, sizeof(line), f)) {
    if (sscanf(line, "voluntary_ctxt_switches: %lu", &v) == 1)
      sum += v;
    else if (sscanf(line, "nonvoluntary_ctxt_switches: %lu", &v) == 1)
      sum += v;
  }
  fclose(f);
  return sum;
}

static uint64_t other_csw(const pid_t *skip, int nskip) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  uint64_t sum = 0;
  pid_t tid;
  int i, skipped;

  if (d == NULL)
    return 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    tid = (pid_t)atoi(e->d_name);
    skipped = tid == main_tid;
    for (i = 0; !skipped && i < nskip; i++)
      skipped = skip[i] == tid;
    if (!skipped)
      sum += task_csw(tid);
  }
  closedir(d);
  return sum;
}

/* ----------------------------------------------------------- results */

typedef struct result {
  char scen[32];
  char name[64];
  double p50_us, p99_us, calls_s, mb_s;
  uint64_t n, errors;
  double per_call[MC_N]; /* -1 when not counted */
  double csw;            /* other threads' context switches per call */
} result_t;

#define MAX_RESULTS 64
static result_t results[MAX_RESULTS];
static int nresults;

static result_t *result_get(const char *scen, const char *name) {
  for (int i = 0; i < nresults; i++)
    if (strcmp(results[i].scen, scen) == 0 &&
        strcmp(results[i].name, name) == 0)
      return &results[i];
  return NULL;
}

static result_t *result_new(const char *scen, const char *name) {
  result_t *r = result_get(scen, name);

  if (r == NULL && nresults < MAX_RESULTS) {
    r = &results[nresults++];
    memset(r, 0, sizeof(*r));
    snprintf(r->scen, sizeof(r->scen), "%s", scen);
    snprintf(r->name, sizeof(r->name), "%s", name);
    for (int i = 0; i < MC_N; i++)
      r->per_call[i] = -1;
    r->csw = -1;
  }
  return r;
}

static void result_emit(const result_t *r) {
  static const char *mc_names[MC_N] = {"allocs", "frees", "mutex_locks",
                                       "cond_signals", "cond_waits"};
  if (J == NULL)
    return;
  fprintf(J, "{\"kind\":\"result\",\"scenario\":");
  jstr(J, r->scen);
  fprintf(J, ",\"name\":");
  jstr(J, r->name);
  fprintf(J,
          ",\"p50_us\":%.3f,\"p99_us\":%.3f,\"calls_s\":%.1f,\"mb_s\":%.2f,"
          "\"n\":%llu,\"errors\":%llu",
          r->p50_us, r->p99_us, r->calls_s, r->mb_s, (unsigned long long)r->n,
          (unsigned long long)r->errors);
  for (int i = 0; i < MC_N; i++)
    if (r->per_call[i] >= 0)
      fprintf(J, ",\"%s_per_call\":%.3f", mc_names[i], r->per_call[i]);
  if (r->csw >= 0)
    fprintf(J, ",\"other_thread_csw_per_call\":%.4f", r->csw);
  fprintf(J, "}\n");
  fflush(J);
}

/* A scalar figure (times, memory): name, value, unit. */
static void figure(const char *scen, const char *name, double v,
                   const char *unit, const char *fmt, ...) {
  char note[256] = "";
  va_list ap;

  if (fmt) {
    va_start(ap, fmt);
    vsnprintf(note, sizeof(note), fmt, ap);
    va_end(ap);
  }
  printf("  %-44s %12.3f %-6s %s\n", name, v, unit, note);
  if (J) {
    fprintf(J, "{\"kind\":\"figure\",\"scenario\":");
    jstr(J, scen);
    fprintf(J, ",\"name\":");
    jstr(J, name);
    fprintf(J, ",\"value\":%.6g,\"unit\":", v);
    jstr(J, unit);
    fprintf(J, ",\"note\":");
    jstr(J, note);
    fprintf(J, "}\n");
    fflush(J);
  }
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
    printf("TARGET %-3s %-58s %.4g / %.4g %s = %.3fx (target %s %.2fx)  %s%s%s\n",
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

/* -------------------------------------------------------- foreign load */

/* CPU used by processes that are not this benchmark (other users of a
 * shared machine) while a scenario runs, in CPUs: system-wide busy time
 * from /proc/stat less the time of this process and its children (the
 * workers of the pools and of the floor). */
static double stat_busy_s(void) {
  unsigned long long v[10] = {0};
  FILE *f = fopen("/proc/stat", "r");
  int n = 0;

  if (f) {
    n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
               &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
  }
  if (n < 8)
    return 0;
  /* user nice system [idle iowait] irq softirq steal */
  return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) /
         (double)sysconf(_SC_CLK_TCK);
}

/* utime + stime + cutime + cstime of one process (its reaped children
 * included), and its parent. */
static double pid_cpu_s(const char *path, int *ppid) {
  char buf[1024], *p;
  unsigned long long ut = 0, st = 0, cut = 0, cst = 0;
  FILE *f = fopen(path, "r");
  size_t n;

  *ppid = 0;
  if (f == NULL)
    return 0;
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  if ((p = strrchr(buf, ')')) == NULL)
    return 0;
  /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt
   * majflt cmajflt utime stime cutime cstime */
  if (sscanf(p + 2,
             "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
             ppid, &ut, &st, &cut, &cst) != 5)
    return 0;
  return (double)(ut + st + cut + cst) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU of this process and every live descendant (with what they reaped). */
static double own_cpu_s(void) {
  enum { MAXP = 8192 };
  static int pids[MAXP], ppids[MAXP], mine[MAXP];
  static double cpu[MAXP];
  DIR *d = opendir("/proc");
  struct dirent *e;
  char path[300];
  int n = 0, me = (int)getpid(), changed, i, k;
  double sum = 0;

  if (d == NULL)
    return 0;
  while ((e = readdir(d)) != NULL && n < MAXP) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9')
      continue;
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    pids[n] = atoi(e->d_name);
    cpu[n] = pid_cpu_s(path, &ppids[n]);
    mine[n] = pids[n] == me;
    n++;
  }
  closedir(d);
  do {
    changed = 0;
    for (i = 0; i < n; i++)
      if (!mine[i])
        for (k = 0; k < n; k++)
          if (mine[k] && ppids[i] == pids[k]) {
            mine[i] = changed = 1;
            break;
          }
  } while (changed);
  for (i = 0; i < n; i++)
    if (mine[i])
      sum += cpu[i];
  return sum;
}

typedef struct foreign {
  double busy, own;
  uint64_t t;
} foreign_t;

static void foreign_begin(foreign_t *f) {
  f->busy = stat_busy_s();
  f->own = own_cpu_s();
  f->t = bench_now_ns();
}

/* Foreign CPUs busy since foreign_begin (children that exited meanwhile
 * count as foreign: call it while the scenario's workers live). */
static double foreign_end(const foreign_t *f) {
  double wall = (double)(bench_now_ns() - f->t) / 1e9;
  double other = (stat_busy_s() - f->busy) - (own_cpu_s() - f->own);

  if (wall <= 0)
    return 0;
  return other > 0 ? other / wall : 0;
}

static void foreign_report(const char *scen, double cpus) {
  figure("load", scen, cpus, "CPUs",
         "used by other processes while this scenario was measured");
}

/* ------------------------------------------------------------- pinning */

/* --pin: callers on CPU 0; workers on CPU 1 (cross) or CPU 0 (same).  The
 * scheduler otherwise flips between the two placements with the machine's
 * load, and a round trip costs ~2.5x more across CPUs. */
static const char *pin_now = "none"; /* the current scenario's */

/* auto: cross for the one-worker latency scenarios (latency, big,
 * anatomy), none for the others (2 workers need both CPUs). */
static void pin_scenario(int one_worker) {
  if (strcmp(O.pin, "auto") == 0)
    pin_now = one_worker ? "cross" : "none";
  else
    pin_now = O.pin;
}

static int pin_worker_cpu(void) {
  if (strcmp(pin_now, "cross") == 0)
    return 1;
  if (strcmp(pin_now, "same") == 0)
    return 0;
  return -1;
}

static void pin_pid(pid_t pid, int cpu) {
  cpu_set_t set;

  if (cpu < 0)
    return;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(pid, sizeof(set), &set) != 0)
    perror("sched_setaffinity");
}

static void pin_self(void) {
  if (pin_worker_cpu() >= 0)
    pin_pid(0, 0);
}

static void pin_pool(pp_pool_t *pool) {
  pp_status_t st;

  if (pin_worker_cpu() < 0 || pp_pool_status(pool, &st) != 0)
    return;
  for (int i = 0; i < st.nworkers; i++)
    if (st.workers[i].pid > 0)
      pin_pid(st.workers[i].pid, pin_worker_cpu());
  pp_status_free(&st);
}

/* ----------------------------------------------------------- contenders */

typedef struct contender contender_t;

typedef struct tctx {
  contender_t *c;
  int index;
  pid_t tid;
  samples_t lat;
  uint64_t calls, errors;
} tctx_t;

struct contender {
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
  int json; /* check replies as JSON, not byte-equal */
  int fflags; /* floor variant, FLOOR_* */
  int ref;    /* a reference pool (many: depth 1), --only pp_call_d1 */
  /* pool_async_thread: its own pool on its own loop */
  int acallers, aworkers;
  const char *handler;
  /* accumulated over windows */
  samples_t lat;
  uint64_t calls, errors;
  double seconds;
  uint64_t mc[MC_N];
  uint64_t csw;
};

static volatile int g_stop;
static volatile uint64_t g_stop_ns;
static pthread_barrier_t g_go;

static int counted(uint64_t t1) { return !g_stop || t1 <= g_stop_ns; }

static int reply_ok(const contender_t *c, const char *p, size_t n) {
  if (c->json)
    return n > 0 && p[0] == '"';
  return n == c->len && (n == 0 || (p[0] == c->payload[0] &&
                                    p[n - 1] == c->payload[n - 1]));
}

static void *floor_call_thread(void *arg) {
  tctx_t *t = arg;
  contender_t *c = t->c;
  floor_worker_t *w = &c->fw[t->index % c->nfw];
  const char *rep;
  size_t rlen;
  uint64_t t0, t1;
  int r;

  t->tid = (pid_t)syscall(SYS_gettid);
  pin_self();
  floor_set_flags(w, c->fflags);
  pthread_barrier_wait(&g_go);
  while (!g_stop) {
    t0 = bench_now_ns();
    r = floor_call(w, c->payload, c->len, &rep, &rlen);
    t1 = bench_now_ns();
    if (r < 0) {
      t->errors++;
      break;
    }
    if (!counted(t1))
      break;
    if (r != 3 || !reply_ok(c, rep, rlen))
      t->errors++;
    t->calls++;
    samples_add(&t->lat, t1 - t0);
  }
  return NULL;
}

static void *floor_pipe_thread(void *arg) {
  tctx_t *t = arg;
  contender_t *c = t->c;
  floor_worker_t *w = &c->fw[t->index % c->nfw];

  t->tid = (pid_t)syscall(SYS_gettid);
  pin_self();
  floor_set_flags(w, 0);
  pthread_barrier_wait(&g_go);
  if (floor_pipeline(w, c->payload, c->len, c->depth, &g_stop, &g_stop_ns,
                     &t->calls, &t->lat) != 0)
    t->errors++;
  return NULL;
}

static void *pool_call_thread(void *arg) {
  tctx_t *t = arg;
  contender_t *c = t->c;
  pp_buf_t reply = {0};
  pp_diag_t diag;
  uint64_t t0, t1;
  int r;

  t->tid = (pid_t)syscall(SYS_gettid);
  pin_self();
  pthread_barrier_wait(&g_go);
  while (!g_stop) {
    t0 = bench_now_ns();
    r = pp_call(c->pool, c->payload, c->len, &reply, -1, &diag);
    t1 = bench_now_ns();
    if (!counted(t1))
      break;
    if (r != 0 || !reply_ok(c, reply.data, reply.len)) {
      if (t->errors++ == 0)
        fprintf(stderr, "pp_call: %s: %s\n", pp_strerror(r), diag.message);
      continue;
    }
    t->calls++;
    samples_add(&t->lat, t1 - t0);
  }
  pp_buf_free(&reply);
  return NULL;
}

static void *pool_lease_thread(void *arg) {
  tctx_t *t = arg;
  contender_t *c = t->c;
  pp_buf_t reply = {0};
  pp_lease_t *lease = NULL;
  pp_diag_t diag;
  uint64_t t0, t1;
  int r;

  t->tid = (pid_t)syscall(SYS_gettid);
  pin_self();
  /* The lease is taken before the window opens: this measures the call
   * alone, without checkout and check-in. */
  r = pp_lease_acquire(c->pool, NULL, -1, &lease, &diag);
  pthread_barrier_wait(&g_go);
  if (r != 0) {
    fprintf(stderr, "pp_lease_acquire: %s: %s\n", pp_strerror(r),
            diag.message);
    t->errors++;
    return NULL;
  }
  while (!g_stop) {
    t0 = bench_now_ns();
    r = pp_lease_call(lease, c->payload, c->len, -1, &reply, &diag);
    t1 = bench_now_ns();
    if (!counted(t1))
      break;
    if (r != 0 || !reply_ok(c, reply.data, reply.len)) {
      if (t->errors++ == 0)
        fprintf(stderr, "pp_lease_call: %s: %s\n", pp_strerror(r),
                diag.message);
      if (r != 0 && r != PP_EHANDLER)
        break;
      continue;
    }
    t->calls++;
    samples_add(&t->lat, t1 - t0);
  }
  pp_checkin(lease);
  pp_buf_free(&reply);
  return NULL;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

/* One measurement window of `seconds` for c; record = 0 for a warm-up. */
static void window(contender_t *c, double seconds, int record) {
  int n = c->nthreads, i;
  pthread_t *th = calloc((size_t)n, sizeof(*th));
  tctx_t *t = calloc((size_t)n, sizeof(*t));
  pid_t *tids = calloc((size_t)n, sizeof(*tids));
  uint64_t mc0[MC_N] = {0}, mc1[MC_N] = {0}, csw0, csw1, t0;

  g_stop = 0;
  g_stop_ns = 0;
  pthread_barrier_init(&g_go, NULL, (unsigned)n + 1);
  for (i = 0; i < n; i++) {
    t[i].c = c;
    t[i].index = i;
    pthread_create(&th[i], NULL, c->fn, &t[i]);
  }
  pthread_barrier_wait(&g_go);
  for (i = 0; i < n; i++)
    tids[i] = t[i].tid;
  csw0 = other_csw(tids, n);
  if (mc_get)
    mc_get(mc0);
  t0 = bench_now_ns();
  sleep_s(seconds);
  if (mc_get)
    mc_get(mc1);
  csw1 = other_csw(tids, n);
  g_stop_ns = bench_now_ns();
  __sync_synchronize();
  g_stop = 1;
  __sync_synchronize();
  for (i = 0; i < n; i++)
    pthread_join(th[i], NULL);
  pthread_barrier_destroy(&g_go);
  if (record) {
    c->seconds += (double)(g_stop_ns - t0) / 1e9;
    for (i = 0; i < n; i++) {
      samples_merge(&c->lat, &t[i].lat);
      c->calls += t[i].calls;
      c->errors += t[i].errors;
    }
    for (i = 0; i < MC_N; i++)
      c->mc[i] += mc1[i] - mc0[i];
    /* A thread that ended meanwhile takes its count away: never below 0. */
    c->csw += csw1 > csw0 ? csw1 - csw0 : 0;
  }
  for (i = 0; i < n; i++)
    samples_free(&t[i].lat);
  free(th);
  free(t);
  free(tids);
}

static void *pool_async_thread(void *arg);

/* --only: floor (depth 1), pipe (pipelined floor), pp_call, lease,
 * pp_call_d1 (many: the reference pool at pipeline_depth 1), async. */
static int selected(const contender_t *c) {
  if (O.only == NULL)
    return 1;
  if (c->fn == floor_call_thread)
    return strcmp(O.only, "floor") == 0;
  if (c->fn == floor_pipe_thread)
    return strcmp(O.only, "pipe") == 0;
  if (c->fn == pool_call_thread)
    return strcmp(O.only, c->ref ? "pp_call_d1" : "pp_call") == 0;
  if (c->fn == pool_lease_thread)
    return strcmp(O.only, "lease") == 0;
  if (c->fn == pool_async_thread)
    return strcmp(O.only, "async") == 0;
  return 0;
}

/* Interleave the contenders' windows: warm-up each, then `rounds` rounds
 * of one window each. */
/* Run once halfway through the next measure(): `all` measures the
 * alternatives in the middle of the JSON-mode pool windows they are
 * compared with. */
static void (*mid_hook)(void);

static void measure(contender_t **cs, int n) {
  void (*hook)(void) = mid_hook;
  int r, i;

  mid_hook = NULL;
  for (i = 0; i < n; i++)
    if (selected(cs[i]))
      window(cs[i], 0.15, 0);
  for (r = 0; r < O.rounds; r++) {
    if (hook && r == O.rounds / 2)
      hook();
    for (i = 0; i < n; i++)
      if (selected(cs[i]))
        window(cs[i], O.duration / O.rounds, 1);
  }
  if (hook && O.rounds < 2)
    hook();
}

static result_t *report(const char *scen, contender_t *c, size_t bytes,
                        const contender_t *base) {
  result_t *r;
  int i;

  if (c->seconds <= 0)
    return NULL; /* not selected by --only */
  r = result_new(scen, c->name);

  r->n = c->calls;
  r->errors = c->errors;
  r->p50_us = (double)samples_quantile(&c->lat, 0.50) / 1e3;
  r->p99_us = (double)samples_quantile(&c->lat, 0.99) / 1e3;
  r->calls_s = c->seconds > 0 ? (double)c->calls / c->seconds : 0;
  r->mb_s = r->calls_s * (double)bytes / 1e6;
  if (mc_get && c->calls)
    for (i = 0; i < MC_N; i++)
      r->per_call[i] = (double)c->mc[i] / (double)c->calls;
  if (c->calls)
    r->csw = (double)c->csw / (double)c->calls;
  printf("  %-44s %9.1f %9.1f %11.0f", c->name, r->p50_us, r->p99_us,
         r->calls_s);
  if (bytes >= 4096)
    printf(" %9.1f MB/s", r->mb_s);
  if (base && base != c) {
    result_t *b = result_get(scen, base->name);
    if (b && b->p50_us > 0 && b->calls_s > 0)
      printf("   x%.2f p50  x%.2f p99  x%.2f calls/s", r->p50_us / b->p50_us,
             r->p99_us / b->p99_us, r->calls_s / b->calls_s);
  }
  if (mc_get)
    printf("   [allocs %.2f, locks %.2f, cond signal %.2f wait %.2f /call]",
           r->per_call[MC_ALLOC], r->per_call[MC_LOCK],
           r->per_call[MC_COND_SIGNAL], r->per_call[MC_COND_WAIT]);
  if (r->csw > 0.005)
    printf("   [other threads %.3f csw/call]", r->csw);
  if (c->errors)
    printf("   ERRORS %llu", (unsigned long long)c->errors);
  printf("\n");
  result_emit(r);
  samples_free(&c->lat);
  return r;
}

static void header(const char *title) {
  printf("\n== %s\n  %-44s %9s %9s %11s\n", title, "", "p50 us", "p99 us",
         "calls/s");
}

/* ------------------------------------------------------------- helpers */

static const char *handler_path(const char *rel, char *buf, size_t len) {
  snprintf(buf, len, "%s/%s", O.root, rel);
  return buf;
}

/* Payload of exactly `len` bytes: raw 'x's, or a JSON echo request padded
 * with 'x's in its string argument. */
static char *make_payload(size_t len, int json) {
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

static int cfg_set(pp_config_t *cfg, const char *k, const char *v) {
  pp_diag_t diag;
  int r = pp_config_set(cfg, k, v, &diag);
  if (r != 0)
    fprintf(stderr, "config %s=%s: %s\n", k, v, diag.message);
  return r;
}

/* The pool's worker.pipeline_depth where a scenario does not choose:
 * --pool-depth, else the configuration's default (1). */
static int pool_depth(void) { return O.pool_depth > 0 ? O.pool_depth : 1; }

/* A pool of `size` workers on `handler`; env_yaml adds worker.env; depth
 * is worker.pipeline_depth, start worker.start (spawn | zygote). */
/* The benchmark's pool configuration; NULL if it does not build. */
/* Set around an open: an interpreter option before the worker script. */
static const char *g_python_flag;

static pp_config_t *bench_config(int size, int raw, const char *handler,
                                 const char *env_yaml, int depth,
                                 const char *start) {
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

static pp_pool_t *open_pool_ex(int size, int raw, const char *handler,
                               const char *env_yaml, int depth,
                               const char *start, double *open_s) {
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

static pp_pool_t *open_pool(int size, int raw, const char *handler,
                            const char *env_yaml, double *open_s) {
  return open_pool_ex(size, raw, handler, env_yaml, pool_depth(), NULL,
                      open_s);
}

/* The loop face: a thread runs a uv loop with a pool of its own, started
 * before the window opens, and keeps c->acallers pp_call_async calls in
 * flight, each sent again from its callback until the window closes. */
typedef struct async_run {
  uv_loop_t loop;
  pp_pool_t *pool;
  contender_t *c;
  tctx_t *t;
  int inflight;
  int ready, ready_status, closed;
} async_run_t;

typedef struct async_caller {
  async_run_t *run;
  uint64_t t0;
} async_caller_t;

static void async_done(int status, const char *reply, size_t len,
                       const pp_diag_t *diag, void *data) {
  async_caller_t *a = data;
  async_run_t *r = a->run;
  tctx_t *t = r->t;
  uint64_t t1 = bench_now_ns();

  if (status != 0 || !reply_ok(r->c, reply, len)) {
    if (t->errors++ == 0)
      fprintf(stderr, "pp_call_async: %s: %s\n", pp_strerror(status),
              diag ? diag->message : "wrong reply");
  } else if (counted(t1)) {
    t->calls++;
    samples_add(&t->lat, t1 - a->t0);
  }
  if (g_stop) {
    r->inflight--;
    return;
  }
  a->t0 = bench_now_ns();
  if (pp_call_async(r->pool, r->c->payload, r->c->len, -1, async_done, a) !=
      0) {
    t->errors++;
    r->inflight--;
  }
}

static void async_ready(pp_pool_t *pool, int status, void *data) {
  async_run_t *r = data;
  (void)pool;
  r->ready = 1;
  r->ready_status = status;
}

static void async_closed(pp_pool_t *pool, void *data) {
  async_run_t *r = data;
  (void)pool;
  r->closed = 1;
}

static void *pool_async_thread(void *arg) {
  tctx_t *t = arg;
  contender_t *c = t->c;
  async_caller_t *callers = calloc((size_t)c->acallers, sizeof(*callers));
  async_run_t r = {.c = c, .t = t};
  pp_config_t *cfg;
  pp_diag_t diag;
  int i, ok = 0;

  t->tid = (pid_t)syscall(SYS_gettid);
  pin_self();
  uv_loop_init(&r.loop);
  cfg = bench_config(c->aworkers, !c->json, c->handler, NULL, c->depth, NULL);
  if (callers && cfg &&
      pp_pool_start(&r.loop, cfg, NULL, async_ready, &r, &r.pool, &diag) == 0) {
    while (!r.ready)
      uv_run(&r.loop, UV_RUN_ONCE);
    ok = r.ready_status == 0;
  }
  pp_config_free(cfg);
  pthread_barrier_wait(&g_go);
  for (i = 0; ok && i < c->acallers; i++) {
    callers[i].run = &r;
    callers[i].t0 = bench_now_ns();
    if (pp_call_async(r.pool, c->payload, c->len, -1, async_done,
                      &callers[i]) == 0)
      r.inflight++;
    else
      t->errors++;
  }
  while (r.inflight > 0)
    uv_run(&r.loop, UV_RUN_ONCE);
  if (!ok)
    t->errors++;
  if (r.pool) {
    pp_pool_stop(r.pool, async_closed, &r);
    while (!r.closed)
      uv_run(&r.loop, UV_RUN_ONCE);
  }
  uv_run(&r.loop, UV_RUN_DEFAULT);
  uv_loop_close(&r.loop);
  free(callers);
  return NULL;
}

static int spawn_floor(floor_worker_t *w, int n, int raw, const char *handler,
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

static void close_floor(floor_worker_t *w, int n) {
  for (int i = 0; i < n; i++)
    floor_close(&w[i]);
}

static int pick(int v, int def) { return v > 0 ? v : def; }

/* ------------------------------------------------------------ scenarios */

/* 1. One caller: the floor, pp_call and pp_lease_call on the same handler
 * and payload. */
static int scen_latency(int json) {
  pin_scenario(1);
  const char *scen = json ? "latency_json" : "latency_raw";
  char hbuf[PATH_MAX];
  const char *handler = handler_path(
      json ? "fixtures/echo_handlers.py" : "fixtures/raw_echo.py", hbuf,
      sizeof(hbuf));
  int workers = pick(O.workers, 1), callers = pick(O.callers, 1);
  floor_worker_t *fw = calloc((size_t)workers, sizeof(*fw));
  char *payload = make_payload(O.payload, json);
  size_t len = strlen(payload);
  pp_pool_t *pool;
  char title[160], n1[96], n2[96], n3[96], n4[96];
  int nlease = callers < workers ? callers : workers;

  if (spawn_floor(fw, workers, !json, handler, NULL) != 0)
    return -1;
  pool = open_pool(workers, !json, handler, NULL, NULL);
  if (pool == NULL) {
    close_floor(fw, workers);
    return -1;
  }
  snprintf(n1, sizeof(n1), "floor: C driver <-> worker, blocking");
  snprintf(n4, sizeof(n4), "floor, polling the reply up to 50 us first");
  snprintf(n2, sizeof(n2), "pool: pp_call");
  snprintf(n3, sizeof(n3), "pool: pp_lease_call (lease held)");
  contender_t cf = {.name = n1, .nthreads = workers, .fn = floor_call_thread,
                    .fw = fw, .nfw = workers, .payload = payload, .len = len,
                    .json = json};
  contender_t cp = {.name = n2, .nthreads = callers, .fn = pool_call_thread,
                    .pool = pool, .payload = payload, .len = len,
                    .json = json};
  contender_t cl = {.name = n3, .nthreads = nlease, .fn = pool_lease_thread,
                    .pool = pool, .payload = payload, .len = len,
                    .json = json};
  /* What pp_call does that the floor does not: poll for the reply before
   * sleeping (worker.reply_spin_us).  The same floor workers, polling. */
  contender_t cs4 = {.name = n4, .nthreads = workers, .fn = floor_call_thread,
                     .fw = fw, .nfw = workers, .payload = payload, .len = len,
                     .json = json,
                     .fflags = FLOOR_POLLFIRST | FLOOR_SPIN};
  contender_t *cs[] = {&cf, &cs4, &cp, &cl};

  snprintf(title, sizeof(title),
           "latency, %s mode, %zu B payload, %d caller(s), %d worker(s)",
           json ? "JSON" : "raw", len, callers, workers);
  foreign_t fl;
  foreign_begin(&fl);
  measure(cs, 4);
  double fload = foreign_end(&fl);
  header(title);
  report(scen, &cf, len, NULL);
  report(scen, &cs4, len, &cf);
  report(scen, &cp, len, &cf);
  report(scen, &cl, len, &cf);
  foreign_report(scen, fload);
  pp_pool_close(pool);
  close_floor(fw, workers);
  free(fw);
  free(payload);
  return 0;
}

/* Anatomy of the single-caller overhead: the floor with, one at a time,
 * the syscalls the pool's call path adds (SIGPIPE masking around the
 * write; a non-blocking reply pipe read -> EAGAIN -> poll -> read), then
 * the pool itself with and without SIGPIPE ignored by the program.  One
 * worker process serves every floor variant. */
static int scen_anatomy(void) {
  pin_scenario(1);
  const char *scen = "anatomy";
  char hbuf[PATH_MAX];
  const char *handler = handler_path("fixtures/raw_echo.py", hbuf,
                                     sizeof(hbuf));
  char *payload = make_payload(O.payload, 0);
  struct sigaction ign = {.sa_handler = SIG_IGN}, old;
  floor_worker_t fw, fs;
  pp_pool_t *pa, *pb;

  if (spawn_floor(&fw, 1, 1, handler, NULL) != 0)
    return -1;
  if (floor_spawn_socket(&fs, O.python, worker_py, 1, handler, NULL, 60) !=
      0) {
    floor_close(&fw);
    return -1;
  }
  pin_pid(fs.pid, pin_worker_cpu());
  pa = open_pool(1, 1, handler, NULL, NULL);
  sigaction(SIGPIPE, &ign, &old);
  pb = open_pool(1, 1, handler, NULL, NULL);
  sigaction(SIGPIPE, &old, NULL);
  if (pa == NULL || pb == NULL) {
    if (pa)
      pp_pool_close(pa);
    if (pb)
      pp_pool_close(pb);
    floor_close(&fw);
    return -1;
  }
#define FC(nm, fl)                                                            \
  {.name = nm, .nthreads = 1, .fn = floor_call_thread, .fw = &fw, .nfw = 1,  \
   .payload = payload, .len = O.payload, .fflags = fl}
  contender_t c0 = FC("floor (blocking read)", 0);
  contender_t c1 = FC("floor + SIGPIPE mask around writev", FLOOR_SIGMASK);
  contender_t c2 = FC("floor + non-blocking read/EAGAIN/poll", FLOOR_POLL);
  contender_t c3 = FC("floor + both (the pool's syscalls)",
                      FLOOR_SIGMASK | FLOOR_POLL);
  contender_t c7 = FC("floor + mask + poll first, no EAGAIN read",
                      FLOOR_SIGMASK | FLOOR_POLLFIRST);
  contender_t c9 = FC("floor + mask + poll up to 50 us, then sleep",
                      FLOOR_SIGMASK | FLOOR_POLLFIRST | FLOOR_SPIN);
  contender_t c8 = {.name = "floor over a socketpair, MSG_NOSIGNAL",
                    .nthreads = 1, .fn = floor_call_thread, .fw = &fs,
                    .nfw = 1, .payload = payload, .len = O.payload};
#undef FC
  contender_t c4 = {.name = "pool: pp_lease_call", .nthreads = 1,
                    .fn = pool_lease_thread, .pool = pa, .payload = payload,
                    .len = O.payload};
  contender_t c5 = {.name = "pool: pp_call", .nthreads = 1,
                    .fn = pool_call_thread, .pool = pa, .payload = payload,
                    .len = O.payload};
  contender_t c6 = {.name = "pool: pp_call, SIGPIPE ignored by the program",
                    .nthreads = 1, .fn = pool_call_thread, .pool = pb,
                    .payload = payload, .len = O.payload};
  contender_t *cs[] = {&c0, &c1, &c2, &c3, &c7, &c9, &c8, &c4, &c5, &c6};
  int ncs = (int)(sizeof(cs) / sizeof(cs[0]));
  const char *only = O.only;

  O.only = NULL;
  foreign_t fl;
  foreign_begin(&fl);
  measure(cs, ncs);
  double fload = foreign_end(&fl);
  header("anatomy of the one-caller overhead, raw mode, 1 worker");
  O.only = only;
  for (int i = 0; i < ncs; i++)
    report(scen, cs[i], O.payload, i ? &c0 : NULL);
  foreign_report(scen, fload);
  pp_pool_close(pa);
  pp_pool_close(pb);
  floor_close(&fw);
  floor_close(&fs);
  free(payload);
  return 0;
}

/* 3. Many callers: 64 threads on 2 workers against the raw floor on the
 * same 2 workers at depth 1 and at depth D.  The pool runs at
 * worker.pipeline_depth D too (--pool-depth overrides), and, for
 * reference, a second pool at depth 1 (no pipelining). */
static int g_many_depth = -1, g_many_pool_depth = -1;

static int scen_many(void) {
  pin_scenario(0);
  const char *scen = "many";
  char hbuf[PATH_MAX];
  const char *handler = handler_path("fixtures/raw_echo.py", hbuf,
                                     sizeof(hbuf));
  int workers = pick(O.workers, 2), callers = pick(O.callers, 64);
  int depth = pick(O.depth, 16);
  int pdepth = O.pool_depth > 0 ? O.pool_depth : depth;
  floor_worker_t *fw = calloc((size_t)workers, sizeof(*fw));
  char *payload = make_payload(O.payload, 0);
  pp_pool_t *pool, *pool1 = NULL;
  char title[160], n1[96], n2[96], n3[96], n4[96], n5[96];
  int ncs = 4;

  if (spawn_floor(fw, workers, 1, handler, NULL) != 0)
    return -1;
  pool = open_pool_ex(workers, 1, handler, NULL, pdepth, NULL, NULL);
  if (pool != NULL && pdepth != 1) {
    pool1 = open_pool_ex(workers, 1, handler, NULL, 1, NULL, NULL);
    if (pool1 == NULL) {
      pp_pool_close(pool);
      pool = NULL;
    }
  }
  if (pool == NULL) {
    close_floor(fw, workers);
    return -1;
  }
  g_many_depth = depth;
  g_many_pool_depth = pdepth;
  snprintf(n1, sizeof(n1), "floor: %d workers x depth 1", workers);
  snprintf(n2, sizeof(n2), "floor: %d workers x depth %d (pipelined)",
           workers, depth);
  snprintf(n3, sizeof(n3), "pool: %d callers pp_call, pipeline_depth %d",
           callers, pdepth);
  snprintf(n4, sizeof(n4), "pool: %d callers pp_call, pipeline_depth 1",
           callers);
  snprintf(n5, sizeof(n5), "pool: %d pp_call_async, pipeline_depth %d",
           callers, pdepth);
  contender_t c1 = {.name = n1, .nthreads = workers, .fn = floor_call_thread,
                    .fw = fw, .nfw = workers, .payload = payload,
                    .len = O.payload};
  contender_t cd = {.name = n2, .nthreads = workers, .fn = floor_pipe_thread,
                    .fw = fw, .nfw = workers, .payload = payload,
                    .len = O.payload, .depth = depth};
  contender_t cp = {.name = n3, .nthreads = callers, .fn = pool_call_thread,
                    .pool = pool, .payload = payload, .len = O.payload};
  contender_t cp1 = {.name = n4, .nthreads = callers, .fn = pool_call_thread,
                     .pool = pool1, .payload = payload, .len = O.payload,
                     .ref = 1};
  /* The loop face: one thread, `callers` calls in flight at once. */
  contender_t ca = {.name = n5, .nthreads = 1, .fn = pool_async_thread,
                    .payload = payload, .len = O.payload, .depth = pdepth,
                    .acallers = callers, .aworkers = workers,
                    .handler = handler};
  contender_t *cs[] = {&c1, &cd, &ca, &cp, &cp1};

  if (pool1)
    ncs = 5;
  snprintf(title, sizeof(title),
           "many callers, raw mode, %zu B payload, %d callers, %d workers",
           O.payload, callers, workers);
  foreign_t fl;
  foreign_begin(&fl);
  measure(cs, ncs);
  double fload = foreign_end(&fl);
  header(title);
  for (int i = 0; i < ncs; i++)
    report(scen, cs[i], O.payload, i ? &c1 : NULL);
  foreign_report(scen, fload);
  pp_pool_close(pool);
  if (pool1)
    pp_pool_close(pool1);
  close_floor(fw, workers);
  free(fw);
  free(payload);
  return 0;
}

static long burn_calibrate(const char *handler) {
  char cmd[2 * PATH_MAX + 64], out[64] = "";
  FILE *f;

  snprintf(cmd, sizeof(cmd), "BENCH_BURN_MS=%g '%s' '%s' --calibrate",
           O.burn_ms, O.python, handler);
  if ((f = popen(cmd, "r")) == NULL)
    return -1;
  if (fgets(out, sizeof(out), f) == NULL)
    out[0] = '\0';
  pclose(f);
  return atol(out);
}

/* 4. CPU-bound handler: one worker against two, each with twice as many
 * callers as workers so no worker waits for a caller. */
static int scen_cpu(void) {
  pin_scenario(0);
  const char *scen = "cpu";
  char hbuf[PATH_MAX], env[96], fenv[64];
  char *floor_env[] = {fenv, NULL};
  floor_worker_t fw;
  const char *handler = handler_path("bench/handlers/burn.py", hbuf,
                                     sizeof(hbuf));
  char *payload = make_payload(O.payload, 0);
  pp_pool_t *p1, *p2;
  char title[160];

  /* One loop count for every worker of both pools: the same work per
   * call on both sides of the ratio. */
  long loops = burn_calibrate(handler);
  if (loops <= 0)
    return -1;
  snprintf(env, sizeof(env), "{BENCH_BURN_LOOPS: \"%ld\"}", loops);
  snprintf(fenv, sizeof(fenv), "BENCH_BURN_LOOPS=%ld", loops);
  p1 = open_pool(1, 1, handler, env, NULL);
  p2 = p1 ? open_pool(2, 1, handler, env, NULL) : NULL;
  if (p2 == NULL || spawn_floor(&fw, 1, 1, handler, floor_env) != 0) {
    if (p1)
      pp_pool_close(p1);
    if (p2)
      pp_pool_close(p2);
    return -1;
  }
  contender_t cf = {.name = "floor: 1 worker, blocking", .nthreads = 1,
                    .fn = floor_call_thread, .fw = &fw, .nfw = 1,
                    .payload = payload, .len = O.payload};
  contender_t c1 = {.name = "pool: 1 worker, 2 callers", .nthreads = 2,
                    .fn = pool_call_thread, .pool = p1, .payload = payload,
                    .len = O.payload};
  contender_t c2 = {.name = "pool: 2 workers, 4 callers", .nthreads = 4,
                    .fn = pool_call_thread, .pool = p2, .payload = payload,
                    .len = O.payload};
  contender_t *cs[] = {&c1, &c2, &cf};

  snprintf(title, sizeof(title),
           "CPU-bound handler (~%g ms of CPU per call), raw mode", O.burn_ms);
  foreign_t fl;
  foreign_begin(&fl);
  measure(cs, 3);
  double fload = foreign_end(&fl);
  header(title);
  report(scen, &c1, O.payload, NULL);
  report(scen, &c2, O.payload, &c1);
  report(scen, &cf, O.payload, &c1);
  foreign_report(scen, fload);
  pp_pool_close(p1);
  pp_pool_close(p2);
  floor_close(&fw);
  free(payload);
  return 0;
}

/* 5. 64 KiB payloads, one caller, one worker. */
static int scen_big(void) {
  pin_scenario(1);
  const char *scen = "big";
  char hbuf[PATH_MAX];
  const char *handler = handler_path("fixtures/raw_echo.py", hbuf,
                                     sizeof(hbuf));
  size_t len = O.payload >= 4096 ? O.payload : 65536;
  char *payload = make_payload(len, 0);
  floor_worker_t fw;
  pp_pool_t *pool;
  char title[160];

  if (spawn_floor(&fw, 1, 1, handler, NULL) != 0)
    return -1;
  if ((pool = open_pool(1, 1, handler, NULL, NULL)) == NULL) {
    floor_close(&fw);
    return -1;
  }
  contender_t cf = {.name = "floor: C driver <-> worker, blocking",
                    .nthreads = 1, .fn = floor_call_thread, .fw = &fw,
                    .nfw = 1, .payload = payload, .len = len};
  contender_t cp = {.name = "pool: pp_call", .nthreads = 1,
                    .fn = pool_call_thread, .pool = pool, .payload = payload,
                    .len = len};
  contender_t *cs[] = {&cf, &cp};

  snprintf(title, sizeof(title), "big payloads, raw mode, %zu B each way",
           len);
  foreign_t fl;
  foreign_begin(&fl);
  measure(cs, 2);
  double fload = foreign_end(&fl);
  header(title);
  report(scen, &cf, len, NULL);
  report(scen, &cp, len, &cf);
  foreign_report(scen, fload);
  pp_pool_close(pool);
  floor_close(&fw);
  free(payload);
  return 0;
}

static double g_prewarm_1 = -1, g_prewarm_n = -1;
static double g_prewarm_s1 = -1, g_prewarm_sn = -1;

/* 6. Pre-warm: time to ready of 1 and of N workers whose handler module
 * sleeps at import. */
static double median3(const double *v) {
  double a = v[0], b = v[1], c = v[2];

  if (a > b) { double t = a; a = b; b = t; }
  if (b > c) b = c;
  return a > b ? a : b;
}

static int scen_prewarm(void) {
  pin_scenario(0);
  const char *scen = "prewarm";
  char hbuf[PATH_MAX], env[64], name[96];
  const char *handler = handler_path("fixtures/slow_start.py", hbuf,
                                     sizeof(hbuf));
  int n = O.prewarm_workers, i, k;
  double t1 = 0, tn = 0, s1[3], sn[3], q1[3], qn[3];
  pp_pool_t *pool;

  foreign_t fl;
  snprintf(env, sizeof(env), "{PP_SLOW_START: \"%g\"}", O.slow_start);
  printf("\n== pre-warm: handler module sleeps %g s at import\n",
         O.slow_start);
  foreign_begin(&fl);
  /* Each a single event of ~1.6 s: three of each, interleaved (1, n, 1, n,
   * ...), and the median of each.  Then the same with `python -S`: what
   * the interpreter's site hooks cost (this machine's pyenv runs .pth
   * files that import certifi: ~45 ms of CPU per start). */
  for (k = 0; k < 2; k++) {
    g_python_flag = k ? "-S" : NULL;
    for (i = 0; i < 3; i++) {
      if ((pool = open_pool(1, 0, handler, env, k ? &q1[i] : &s1[i])) == NULL)
        return -1;
      pp_pool_close(pool);
      if ((pool = open_pool(n, 0, handler, env, k ? &qn[i] : &sn[i])) == NULL)
        return -1;
      pp_pool_close(pool);
    }
  }
  g_python_flag = NULL;
  t1 = median3(s1);
  tn = median3(sn);
  g_prewarm_s1 = median3(q1);
  g_prewarm_sn = median3(qn);
  figure(scen, "pool: 1 worker, pp_pool_open until ready", t1, "s", NULL);
  snprintf(name, sizeof(name), "pool: %d workers, pp_pool_open until ready",
           n);
  figure(scen, name, tn, "s", NULL);
  figure(scen, "pool: 1 worker, python -S (no site hooks)", g_prewarm_s1, "s",
         NULL);
  snprintf(name, sizeof(name), "pool: %d workers, python -S (no site hooks)",
           n);
  figure(scen, name, g_prewarm_sn, "s", NULL);
  foreign_report(scen, foreign_end(&fl));
  g_prewarm_1 = t1;
  g_prewarm_n = tn;
  return 0;
}

/* ---- memory */

static double heap_bytes(void) {
  struct mallinfo2 mi = mallinfo2();
  return (double)mi.uordblks + (double)mi.hblkhd;
}

static void proc_rss_pss(int pid, double *rss, double *pss) {
  char path[64], line[256];
  long v;
  FILE *f;

  *rss = *pss = 0;
  snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
  if ((f = fopen(path, "r")) == NULL)
    return;
  while (fgets(line, sizeof(line), f)) {
    if (sscanf(line, "Rss: %ld kB", &v) == 1)
      *rss = (double)v * 1024;
    else if (sscanf(line, "Pss: %ld kB", &v) == 1)
      *pss = (double)v * 1024;
  }
  fclose(f);
}

/* sizeof() of the core's private structures, from ppbench_sizes (built
 * beside us from pool/internal.h); -1 when it is not there. */
static long core_sizeof(const char *type) {
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
  const char *handler = handler_path("fixtures/echo_handlers.py", hbuf,
                                     sizeof(hbuf));
  const int K = 8;
  double h0, h1, h1c, hk0, hk1, hkc;
  double rss_sum = 0, pss_sum = 0, rss, pss;
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
        proc_rss_pss(st.workers[i].pid, &rss, &pss);
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
           (double)(core_sizeof("pp__proc_t") + core_sizeof("pp__slot_t")),
           "B", "proc %ld (2 line buffers of %ld), slot %ld",
           core_sizeof("pp__proc_t"), core_sizeof("pp__linebuf_t"),
           core_sizeof("pp__slot_t"));
  if (nw > 0) {
    figure(scen, "one idle Python worker, RSS", rss_sum / nw / 1048576.0,
           "MiB", "mean of %d (worker side, not pool side)", nw);
    figure(scen, "one idle Python worker, PSS", pss_sum / nw / 1048576.0,
           "MiB", NULL);
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
static void lf_hold(pp_lease_t *l, int status, const pp_diag_t *diag,
                    void *d) {
  (void)status;
  (void)diag;
  ((lf_t *)d)->held = l;
}
static void lf_wait(pp_lease_t *l, int status, const pp_diag_t *diag,
                    void *d) {
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
  const char *handler = handler_path("fixtures/echo_handlers.py", hbuf,
                                     sizeof(hbuf));
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
  figure("memory", "loop face: pool-side heap per waiting checkout", *per,
         "B", "%d pp_checkout waiters queued", n);
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

static int spawn_threads(pthread_t *th, int n, void *(*fn)(void *),
                         void *arg) {
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

/* Bytes of the blocking face's condition variable when it sits beside the
 * waiter record on the caller's stack (older cores), 0 when it is inside
 * the record (ppbench_sizes prints its offset there). */
static long waiter_cond_beside(void) {
  if (core_sizeof("pp__waiter_t.u.cond") >= 0)
    return 0;
  return core_sizeof("uv_cond_t");
}

static int mem_thread_waiters(int n, double *per_heap) {
  char hbuf[PATH_MAX];
  const char *handler = handler_path("fixtures/echo_handlers.py", hbuf,
                                     sizeof(hbuf));
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
  if (wsz > 0) {
    long cond = waiter_cond_beside();
    if (cond > 0)
      figure("memory", "blocking face: waiter record on the caller's stack",
             (double)(wsz + cond), "B", "sizeof(pp__waiter_t) %ld + uv_cond_t "
             "%ld beside it", wsz, cond);
    else
      figure("memory", "blocking face: waiter record on the caller's stack",
             (double)wsz, "B", "sizeof(pp__waiter_t), its uv_cond_t inside");
  }
  return 0;
}

static double g_mem_worker = -1, g_mem_worker_idle = -1, g_mem_loop_waiter = -1,
              g_mem_thread_waiter = -1;

static int scen_memory(void) {
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
    long w = core_sizeof("pp__waiter_t"), c = waiter_cond_beside();
    /* A small negative heap delta is glibc noise between the two thread
     * groups: count it as zero. */
    g_mem_thread_waiter = (per > 0 ? per : 0) + (w > 0 ? (double)w : 0) +
                          (c > 0 ? (double)c : 0);
  }
  return 0;
}

/* ---- zygote start */

/* Rss, Pss and private (Private_Clean + Private_Dirty) bytes of a process,
 * from /proc/PID/smaps_rollup; 0 when it is gone. */
static void proc_smaps(int pid, double *rss, double *pss, double *priv) {
  char path[64], line[256];
  long v;
  FILE *f;

  *rss = *pss = *priv = 0;
  snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
  if ((f = fopen(path, "r")) == NULL)
    return;
  while (fgets(line, sizeof(line), f)) {
    if (sscanf(line, "Rss: %ld kB", &v) == 1)
      *rss = (double)v * 1024;
    else if (sscanf(line, "Pss: %ld kB", &v) == 1)
      *pss = (double)v * 1024;
    else if (sscanf(line, "Private_Clean: %ld kB", &v) == 1 ||
             sscanf(line, "Private_Dirty: %ld kB", &v) == 1)
      *priv += (double)v * 1024;
  }
  fclose(f);
}

typedef struct memsum {
  int n;
  double rss, pss, priv;
} memsum_t;

/* Summed over the pool's workers (their pids from pp_pool_status). */
static memsum_t pool_workers_mem(pp_pool_t *pool) {
  memsum_t m = {0};
  pp_status_t st;
  double rss, pss, priv;

  if (pp_pool_status(pool, &st) != 0)
    return m;
  for (int i = 0; i < st.nworkers; i++) {
    if (st.workers[i].pid <= 0)
      continue;
    proc_smaps(st.workers[i].pid, &rss, &pss, &priv);
    if (rss > 0) {
      m.n++;
      m.rss += rss;
      m.pss += pss;
      m.priv += priv;
    }
  }
  pp_status_free(&st);
  return m;
}

/* Our children whose command line mentions `needle` (the zygote). */
static memsum_t children_mem(const char *needle) {
  memsum_t m = {0};
  DIR *d = opendir("/proc");
  struct dirent *e;
  char path[300], buf[4096];
  double rss, pss, priv;
  int me = (int)getpid(), ppid;
  size_t n, i;
  FILE *f;

  if (d == NULL)
    return m;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9')
      continue;
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    pid_cpu_s(path, &ppid);
    if (ppid != me)
      continue;
    snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
    if ((f = fopen(path, "r")) == NULL)
      continue;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    for (i = 0; i < n; i++)
      if (buf[i] == '\0')
        buf[i] = ' ';
    buf[n] = '\0';
    if (strstr(buf, needle) == NULL)
      continue;
    proc_smaps(atoi(e->d_name), &rss, &pss, &priv);
    m.n++;
    m.rss += rss;
    m.pss += pss;
    m.priv += priv;
  }
  closedir(d);
  return m;
}

/* One JSON call of `cmd` on every worker of the pool, each through its own
 * lease so that every worker answers one. */
static int call_each(pp_pool_t *pool, int n, const char *cmd) {
  pp_lease_t *leases[64];
  pp_buf_t reply = {0};
  char req[128];
  int i, got = 0, bad = 0;

  snprintf(req, sizeof(req), "{\"cmd\":\"%s\",\"args\":1}", cmd);
  if (n > 64)
    n = 64;
  for (i = 0; i < n; i++)
    if (pp_lease_acquire(pool, NULL, 60000, &leases[got], NULL) == 0)
      got++;
  for (i = 0; i < got; i++)
    if (pp_lease_call(leases[i], req, strlen(req), 60000, &reply, NULL) != 0)
      bad++;
  for (i = 0; i < got; i++)
    pp_checkin(leases[i]);
  pp_buf_free(&reply);
  return got == n && bad == 0 ? 0 : -1;
}

static double g_zyg_1 = -1, g_zyg_spawn_n = -1, g_zyg_n = -1;
static double g_zyg_pss_spawn = -1, g_zyg_pss = -1;
static double g_zyg_pss_spawn_gc = -1, g_zyg_pss_gc = -1;

/* Pool-side figures of one N-worker pool of the burning handler: time to
 * ready, and its workers' memory after one call each, then after a full
 * gc.collect() in each. */
static int zygote_pool(const char *start, int n, const char *handler,
                       const char *env, double *t, memsum_t *after_call,
                       memsum_t *after_gc, memsum_t *zyg) {
  pp_pool_t *pool = open_pool_ex(n, 0, handler, env, 1, start, t);

  if (pool == NULL)
    return -1;
  if (call_each(pool, n, "echo") != 0)
    fprintf(stderr, "ppbench: %s pool: a call failed\n", start);
  sleep_s(0.05);
  *after_call = pool_workers_mem(pool);
  if (zyg)
    *zyg = children_mem("portpool_zygote.py");
  if (call_each(pool, n, "gc_collect") != 0)
    fprintf(stderr, "ppbench: %s pool: gc_collect failed\n", start);
  sleep_s(0.05);
  *after_gc = pool_workers_mem(pool);
  pp_pool_close(pool);
  return 0;
}

/* 7. Zygote start: N workers whose handler's import burns S s of CPU.
 * Time to ready of one spawned worker (one import: the baseline), of N
 * spawned workers (N imports on the machine's CPUs) and of N workers
 * forked from a zygote (one import, N forks); the workers' summed PSS in
 * both start modes, each pool measured alone. */
static int scen_zygote(void) {
  pin_scenario(0);
  const char *scen = "zygote";
  char hbuf[PATH_MAX], env[64], name[128];
  const char *handler = handler_path("bench/handlers/burn_import.py", hbuf,
                                     sizeof(hbuf));
  int n = O.prewarm_workers;
  double t1 = 0, tz = 0, ts = 0;
  memsum_t sc, sg, zc, zg, zp = {0};
  pp_pool_t *pool;
  foreign_t fl;

  snprintf(env, sizeof(env), "{PP_BURN_IMPORT: \"%g\"}", O.burn_import);
  printf("\n== zygote start: handler module burns %g s of CPU at import "
         "(bench/handlers/burn_import.py)\n", O.burn_import);
  foreign_begin(&fl);
  /* The baseline and the zygote pool back to back, the long spawn last. */
  if ((pool = open_pool_ex(1, 0, handler, env, 1, "spawn", &t1)) == NULL)
    return -1;
  pp_pool_close(pool);
  if (zygote_pool("zygote", n, handler, env, &tz, &zc, &zg, &zp) != 0)
    return -1;
  if (zygote_pool("spawn", n, handler, env, &ts, &sc, &sg, NULL) != 0)
    return -1;
  double fload = foreign_end(&fl);

  /* Notes are the same in every run (report.py shows the first run's):
   * per-run numbers go in figures of their own. */
  figure(scen, "spawn: 1 worker, pp_pool_open until ready", t1, "s",
         "one import: the baseline");
  snprintf(name, sizeof(name), "spawn: %d workers, pp_pool_open until ready",
           n);
  figure(scen, name, ts, "s", "%d imports at once on %ld CPUs", n,
         sysconf(_SC_NPROCESSORS_ONLN));
  snprintf(name, sizeof(name), "zygote: %d workers, pp_pool_open until ready",
           n);
  figure(scen, name, tz, "s", "one import in the zygote, then %d forks", n);
#define MIB(x) ((x) / 1048576.0)
  snprintf(name, sizeof(name), "spawn: %d workers, summed PSS", n);
  figure(scen, name, MIB(sc.pss), "MiB", "after one call on each");
  snprintf(name, sizeof(name), "zygote: %d workers, summed PSS", n);
  figure(scen, name, MIB(zc.pss), "MiB", "after one call on each");
  snprintf(name, sizeof(name), "spawn: %d workers, summed private memory", n);
  figure(scen, name, MIB(sc.priv), "MiB",
         "Private_Clean + Private_Dirty, after one call on each");
  snprintf(name, sizeof(name), "zygote: %d workers, summed private memory",
           n);
  figure(scen, name, MIB(zc.priv), "MiB",
         "Private_Clean + Private_Dirty, after one call on each");
  figure(scen, "zygote: the zygote process itself, PSS", MIB(zp.pss), "MiB",
         "not in the workers' sum");
  snprintf(name, sizeof(name), "spawn: %d workers, summed PSS after gc", n);
  figure(scen, name, MIB(sg.pss), "MiB",
         "after a full gc.collect() in each (handler's gc_collect)");
  snprintf(name, sizeof(name), "zygote: %d workers, summed PSS after gc", n);
  figure(scen, name, MIB(zg.pss), "MiB",
         "after a full gc.collect() in each (handler's gc_collect)");
#undef MIB
  foreign_report(scen, fload);
  g_zyg_1 = t1;
  g_zyg_spawn_n = ts;
  g_zyg_n = tz;
  if (sc.n == n && zc.n == n) {
    g_zyg_pss_spawn = sc.pss;
    g_zyg_pss = zc.pss;
  }
  if (sg.n == n && zg.n == n) {
    g_zyg_pss_spawn_gc = sg.pss;
    g_zyg_pss_gc = zg.pss;
  }
  return 0;
}

/* ------------------------------------------------------- alternatives */

typedef struct alt {
  char name[64];
  double p50_us, p99_us, calls_s;
  char skipped[160];
} alt_t;

static alt_t alts[8];
static int nalts;

static void run_alternatives(void) {
  char cmd[6 * PATH_MAX], line[512];
  FILE *f;

  snprintf(cmd, sizeof(cmd),
           "'%s' '%s/bench/alternatives.py' --duration %g --payload %zu "
           "--python '%s' --worker '%s' --root '%s'",
           O.python, O.root, O.duration, O.payload, O.python, worker_py,
           O.root);
  printf("\n== alternatives (bench/alternatives.py), one caller, %zu B echo\n"
         "   (run halfway through the JSON-mode windows they are compared "
         "with)\n  %-44s %9s %9s %11s\n",
         O.payload, "", "p50 us", "p99 us", "calls/s");
  fflush(stdout);
  if ((f = popen(cmd, "r")) == NULL) {
    perror("popen alternatives.py");
    return;
  }
  while (fgets(line, sizeof(line), f) && nalts < 8) {
    alt_t *a = &alts[nalts];
    char *tok, *save;
    if (strncmp(line, "ALT ", 4) != 0)
      continue;
    memset(a, 0, sizeof(*a));
    for (tok = strtok_r(line + 4, " \n", &save); tok;
         tok = strtok_r(NULL, " \n", &save)) {
      if (strncmp(tok, "name=", 5) == 0)
        snprintf(a->name, sizeof(a->name), "%s", tok + 5);
      else if (strncmp(tok, "p50_us=", 7) == 0)
        a->p50_us = atof(tok + 7);
      else if (strncmp(tok, "p99_us=", 7) == 0)
        a->p99_us = atof(tok + 7);
      else if (strncmp(tok, "calls_s=", 8) == 0)
        a->calls_s = atof(tok + 8);
      else if (strncmp(tok, "skipped=", 8) == 0)
        snprintf(a->skipped, sizeof(a->skipped), "%s", tok + 8);
    }
    for (char *p = a->skipped; *p; p++)
      if (*p == '_')
        *p = ' ';
    if (a->skipped[0]) {
      printf("  %-44s skipped: %s\n", a->name, a->skipped);
    } else {
      result_t *r = result_new("alternatives", a->name);
      r->p50_us = a->p50_us;
      r->p99_us = a->p99_us;
      r->calls_s = a->calls_s;
      printf("  %-44s %9.1f %9.1f %11.0f\n", a->name, a->p50_us, a->p99_us,
             a->calls_s);
      result_emit(r);
    }
    nalts++;
  }
  pclose(f);
}

static alt_t *alt_get(const char *name) {
  for (int i = 0; i < nalts; i++)
    if (strcmp(alts[i].name, name) == 0)
      return &alts[i];
  return NULL;
}

/* ------------------------------------------------------------ targets */

static void targets(void) {
  result_t *f, *p, *a, *b;
  char note[256];

  printf("\n== targets (issue 7), each a ratio within this run\n");
  f = result_get("latency_raw", "floor: C driver <-> worker, blocking");
  p = result_get("latency_raw", "pool: pp_call");
  if (f && p) {
    target("1a", "pp_call p50 <= 1.2x floor p50 (raw)", p->p50_us, f->p50_us,
           "us", "<=", 1.2, NULL, NULL);
    target("1b", "pp_call p99 <= 2x floor p99 (raw)", p->p99_us, f->p99_us,
           "us", "<=", 2.0, NULL, NULL);
  }
  f = result_get("latency_raw", "floor, polling the reply up to 50 us first");
  if (f && p)
    target("1a*", "(info) pp_call p50 vs a floor that polls as it does",
           p->p50_us, f->p50_us, "us", "info", 0, NULL,
           "raw mode; the floor polls its reply pipe up to 50 us before it "
           "sleeps, as pp_call does (worker.reply_spin_us)");
  f = result_get("latency_json", "floor: C driver <-> worker, blocking");
  p = result_get("latency_json", "pool: pp_call");
  if (f && p) {
    target("1c", "pp_call p50 <= 1.2x floor p50 (JSON)", p->p50_us,
           f->p50_us, "us", "<=", 1.2, NULL, NULL);
    target("1d", "pp_call p99 <= 2x floor p99 (JSON)", p->p99_us, f->p99_us,
           "us", "<=", 2.0, NULL, NULL);
  }
  /* Against the alternatives: their p50 over the pool's, JSON mode (they
   * pickle their arguments; the pool's JSON mode is the fair match). */
  p = result_get("latency_json", "pool: pp_call");
  if (p == NULL)
    p = result_get("latency_raw", "pool: pp_call");
  if (p && nalts > 0) {
    alt_t *al;
    /* Each beside its ceiling: the alternative against the floor itself
     * (JSON mode, same run), the most any pool over these pipes could
     * show. */
    f = result_get("latency_json", "floor: C driver <-> worker, blocking");
    if ((al = alt_get("multiprocessing.Pool(2).apply")) && !al->skipped[0]) {
      target("2a", "multiprocessing.Pool.apply p50 >= 10x pp_call p50",
             al->p50_us, p->p50_us, "us", ">=", 10, NULL, NULL);
      if (f)
        target("2a*", "(info) ceiling: multiprocessing.Pool.apply p50 vs "
               "floor p50", al->p50_us, f->p50_us, "us", "info", 0, NULL,
               "JSON mode; a pool as fast as the floor would show this");
    }
    if ((al = alt_get("ProcessPoolExecutor(2).submit.result")) &&
        !al->skipped[0]) {
      target("2b", "ProcessPoolExecutor p50 >= 10x pp_call p50", al->p50_us,
             p->p50_us, "us", ">=", 10, NULL, NULL);
      if (f)
        target("2b*", "(info) ceiling: ProcessPoolExecutor p50 vs floor p50",
               al->p50_us, f->p50_us, "us", "info", 0, NULL,
               "JSON mode; a pool as fast as the floor would show this");
    }
    if ((al = alt_get("erlang_port")) != NULL) {
      if (al->skipped[0])
        target("2c", "Erlang port p50 > pp_call p50", 0, 0, "us", ">=", 1,
               "SKIPPED", al->skipped);
      else
        target("2c", "Erlang port p50 > pp_call p50", al->p50_us, p->p50_us,
               "us", ">=", 1, NULL, NULL);
    }
  }
  if (g_many_depth > 0) {
    char suffix[48];
    result_t *p1 = NULL, *pt = NULL;
    a = b = f = NULL;
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
    if (a && b) {
      snprintf(note, sizeof(note),
               "pool: 64 pp_call_async calls in flight (loop face) at "
               "worker.pipeline_depth %d, floor at %d in flight per "
               "worker%s", g_many_pool_depth, g_many_depth,
               g_many_pool_depth == g_many_depth ? "" : " (not the same depth)");
      target("3", "64 callers x 2 workers >= 0.6x raw pipelined floor",
             b->calls_s, a->calls_s, "calls/s", ">=", 0.6, NULL, note);
    }
    if (a && pt) {
      snprintf(note, sizeof(note),
               "64 threads each blocked in pp_call, worker.pipeline_depth "
               "%d: every call costs a thread a sleep and a wake-up",
               g_many_pool_depth);
      target("3t*", "(info) the same with 64 caller threads (blocking face)",
             pt->calls_s, a->calls_s, "calls/s", "info", 0, NULL, note);
    }
    if (p1 && f && p1 != b)
      target("3*", "(info) without pipelining: pool at depth 1 vs floor at "
             "depth 1", p1->calls_s, f->calls_s, "calls/s", "info", 0, NULL,
             "reference: worker.pipeline_depth 1 (the default)");
  }
  a = result_get("cpu", "pool: 1 worker, 2 callers");
  b = result_get("cpu", "pool: 2 workers, 4 callers");
  if (a && b)
    target("4", "CPU-bound: 2 workers >= 1.8x one worker", b->calls_s,
           a->calls_s, "calls/s", ">=", 1.8, NULL, NULL);
  f = result_get("big", "floor: C driver <-> worker, blocking");
  p = result_get("big", "pool: pp_call");
  if (f && p)
    target("5", "64 KiB payloads >= 0.8x floor MB/s", p->mb_s, f->mb_s,
           "MB/s", ">=", 0.8, NULL, NULL);
  if (g_prewarm_1 > 0) {
    snprintf(note, sizeof(note), "%d workers vs 1, import sleeps %g s",
             O.prewarm_workers, O.slow_start);
    target("6", "pre-warm: 8 slow workers ready <= 1.15x one", g_prewarm_n,
           g_prewarm_1, "s", "<=", 1.15, NULL, note);
    target("6*", "(info) the same with python -S: no site hooks",
           g_prewarm_sn, g_prewarm_s1, "s", "info", 0, NULL,
           "the interpreter's start-up without site.py and the .pth files "
           "it runs; 8 starts share 2 CPUs");
  }
  if (g_zyg_1 > 0) {
    snprintf(note, sizeof(note),
             "worker.start: zygote, %d workers vs one spawned worker, import "
             "burns %g s of CPU", O.prewarm_workers, O.burn_import);
    target("7a", "zygote: 8 CPU-heavy workers ready <= 1.3x one import",
           g_zyg_n, g_zyg_1, "s", "<=", 1.3, NULL, note);
    snprintf(note, sizeof(note), "%d spawned workers vs one, %ld CPUs; "
             "issue 7: about 4x on 2 cores", O.prewarm_workers,
             sysconf(_SC_NPROCESSORS_ONLN));
    target("7*", "(info) spawn: 8 CPU-heavy workers ready vs one import",
           g_zyg_spawn_n, g_zyg_1, "s", "info", 0, NULL, note);
  }
  if (g_zyg_pss > 0) {
    snprintf(note, sizeof(note),
             "%d workers each, after one call on each; smaps_rollup Pss of "
             "the pids in pp_pool_status; zygote process not included",
             O.prewarm_workers);
    target("7b", "zygote: 8 workers' summed PSS <= 0.5x 8 spawned",
           g_zyg_pss / 1048576.0, g_zyg_pss_spawn / 1048576.0, "MiB", "<=",
           0.5, NULL, note);
  }
  if (g_zyg_pss_gc > 0)
    target("7b*", "(info) same, after a full gc.collect() in every worker",
           g_zyg_pss_gc / 1048576.0, g_zyg_pss_spawn_gc / 1048576.0, "MiB",
           "info", 0, NULL,
           "the handler's gc_collect command; the first full collection in a "
           "forked worker touches what the zygote froze unless it stays "
           "frozen");
  if (g_mem_worker >= 0) {
    long lease = core_sizeof("pp_lease_t");
    snprintf(note, sizeof(note),
             "heap per worker after one call on each; idle: %.0f B%s", 
             g_mem_worker_idle,
             lease > 0 ? "; the difference is mostly the lease object kept "
                         "for reuse" : "");
    if (lease > 0)
      snprintf(note + strlen(note), sizeof(note) - strlen(note),
               " (sizeof(pp_lease_t) %ld)", lease);
    target("8a", "pool-side memory per worker <= 4 KiB", g_mem_worker, 4096,
           "B", "<=", 1, NULL, note);
  }
  if (g_mem_loop_waiter >= 0)
    target("8b", "per waiting checkout <= 256 B (loop face)",
           g_mem_loop_waiter, 256, "B", "<=", 1, NULL, "heap per pp_checkout "
           "waiter");
  if (g_mem_thread_waiter >= 0)
    target("8c", "per waiting checkout <= 256 B (blocking face)",
           g_mem_thread_waiter, 256, "B", "<=", 1, NULL,
           "heap delta + the waiter record on the caller's stack");
}


/* ----------------------------------------------------------- machine */

static int resolve_python(const char *cmd0, char *out, size_t len) {
  char cmd[PATH_MAX + 96];
  FILE *f;
  size_t n;

  snprintf(cmd, sizeof(cmd),
           "'%s' -c 'import os,sys;print(os.path.realpath(sys.executable))'",
           cmd0);
  if ((f = popen(cmd, "r")) == NULL)
    return -1;
  n = fread(out, 1, len - 1, f);
  pclose(f);
  out[n] = '\0';
  while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
    out[--n] = '\0';
  return n > 0 && access(out, X_OK) == 0 ? 0 : -1;
}

static void loadavg(const char *when) {
  char buf[128] = "";
  FILE *f = fopen("/proc/loadavg", "r");

  if (f) {
    if (fgets(buf, sizeof(buf), f))
      buf[strcspn(buf, "\n")] = '\0';
    fclose(f);
  }
  printf("load average %s: %s\n", when, buf);
  if (J) {
    fprintf(J, "{\"kind\":\"load\",\"when\":\"%s\",\"loadavg\":", when);
    jstr(J, buf);
    fprintf(J, "}\n");
  }
}

static void machine(void) {
  struct utsname u;
  char pyver[128] = "?", cmd[PATH_MAX + 64];
  FILE *f;

  uname(&u);
  snprintf(cmd, sizeof(cmd),
           "'%s' -c 'import sys;print(sys.version.split()[0])'", O.python);
  if ((f = popen(cmd, "r")) != NULL) {
    if (fgets(pyver, sizeof(pyver), f))
      pyver[strcspn(pyver, "\n")] = '\0';
    pclose(f);
  }
  printf("machine: %ld CPUs, %s %s %s, python %s (%s)\n",
         sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release, u.machine,
         pyver, O.python);
  printf("payload %zu B, %g s per contender per scenario in %d interleaved "
         "windows, pinning %s, counters %s, SIGPIPE %s\n",
         O.payload, O.duration, O.rounds, O.pin,
         mc_get ? "on (LD_PRELOAD malloc_count: timings are inflated)" : "off",
         O.sigpipe_ignore ? "ignored" : "default");
  if (J) {
    fprintf(J, "{\"kind\":\"machine\",\"nproc\":%ld,\"kernel\":",
            sysconf(_SC_NPROCESSORS_ONLN));
    jstr(J, u.release);
    fprintf(J, ",\"python\":");
    jstr(J, pyver);
    fprintf(J, ",\"python_path\":");
    jstr(J, O.python);
    fprintf(J, ",\"payload\":%zu,\"duration\":%g,\"rounds\":%d,"
               "\"counters\":%s,\"sigpipe_ignored\":%d,\"pin\":\"%s\"}\n",
            O.payload, O.duration, O.rounds, mc_get ? "true" : "false",
            O.sigpipe_ignore, O.pin);
  }
}

/* --------------------------------------------------------------- main */

static int is(const char *a, const char *b) { return strcmp(a, b) == 0; }

/* mallinfo2 counts chunks parked in a thread's tcache as in use, so the
 * memory figures would move with whatever the bench freed earlier.  The
 * benchmark re-executes itself once with the tcache off (a glibc tunable,
 * read only at start-up) and drops the tunable from the environment the
 * workers inherit.  No hot path here allocates, so nothing else changes. */
static void tcache_off(char **argv) {
  const char *orig = getenv("GLIBC_TUNABLES");
  char buf[1024];

  if (getenv("PPBENCH_REEXEC")) {
    const char *o = getenv("PPBENCH_TUNABLES_ORIG");
    if (o && *o)
      setenv("GLIBC_TUNABLES", o, 1);
    else
      unsetenv("GLIBC_TUNABLES");
    unsetenv("PPBENCH_TUNABLES_ORIG");
    unsetenv("PPBENCH_REEXEC");
    return;
  }
  snprintf(buf, sizeof(buf), "%s%sglibc.malloc.tcache_count=0",
           orig ? orig : "", orig && *orig ? ":" : "");
  setenv("PPBENCH_TUNABLES_ORIG", orig ? orig : "", 1);
  setenv("GLIBC_TUNABLES", buf, 1);
  setenv("PPBENCH_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  /* If that fails, run as is. */
  unsetenv("PPBENCH_REEXEC");
  unsetenv("PPBENCH_TUNABLES_ORIG");
  if (orig)
    setenv("GLIBC_TUNABLES", orig, 1);
  else
    unsetenv("GLIBC_TUNABLES");
}

int main(int argc, char **argv) {
  const char *py = "python3";
  int i, all, rc = 0;

  tcache_off(argv);

  O.mode = "all";
  O.payload = 64;
  O.callers = O.workers = O.depth = -1;
  O.pool_depth = -1; /* many: the floor's depth; elsewhere 1 */
  O.duration = 1.0;
  O.rounds = 10;
  O.proto = NULL;
  O.root = PPBENCH_SOURCE_DIR;
  O.waiters = 10000;
  O.alternatives = 1;
  O.slow_start = 1.5;
  O.prewarm_workers = 8;
  O.burn_import = 1.5;
  O.burn_ms = 1;
  O.pin = "auto";
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (is(a, name) && v && (i++, 1))
    if (ARG("--payload"))
      O.payload = (size_t)atol(v);
    else if (ARG("--callers"))
      O.callers = atoi(v);
    else if (ARG("--workers"))
      O.workers = atoi(v);
    else if (ARG("--depth"))
      O.depth = atoi(v);
    else if (ARG("--pool-depth"))
      O.pool_depth = atoi(v);
    else if (ARG("--duration"))
      O.duration = atof(v);
    else if (ARG("--rounds"))
      O.rounds = atoi(v);
    else if (ARG("--proto"))
      O.proto = v;
    else if (ARG("--python"))
      py = v;
    else if (ARG("--root"))
      O.root = v;
    else if (ARG("--json"))
      O.json_path = v;
    else if (ARG("--waiters"))
      O.waiters = atoi(v);
    else if (ARG("--slow-start"))
      O.slow_start = atof(v);
    else if (ARG("--prewarm-workers"))
      O.prewarm_workers = atoi(v);
    else if (ARG("--burn-import"))
      O.burn_import = atof(v);
    else if (ARG("--burn-ms"))
      O.burn_ms = atof(v);
    else if (ARG("--only"))
      O.only = v;
    else if (ARG("--pin"))
      O.pin = v;
    else if (is(a, "--no-alternatives"))
      O.alternatives = 0;
    else if (is(a, "--sigpipe-ignore"))
      O.sigpipe_ignore = 1;
    else if (is(a, "-h") || is(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (a[0] != '-')
      O.mode = a;
    else {
      usage(stderr);
      return 2;
    }
#undef ARG
  }
  if (O.rounds < 1)
    O.rounds = 1;
  if (O.prewarm_workers < 1)
    O.prewarm_workers = 1;
  if (O.waiters < 1)
    O.waiters = 1;
  all = is(O.mode, "all");
  if (!all && !is(O.mode, "latency") && !is(O.mode, "many") &&
      !is(O.mode, "cpu") && !is(O.mode, "big") && !is(O.mode, "prewarm") &&
      !is(O.mode, "zygote") &&
      !is(O.mode, "memory") && !is(O.mode, "anatomy")) {
    fprintf(stderr, "ppbench: unknown mode %s\n", O.mode);
    usage(stderr);
    return 2;
  }
  if (!is(O.pin, "auto") && !is(O.pin, "none") && !is(O.pin, "cross") &&
      !is(O.pin, "same")) {
    fprintf(stderr, "ppbench: --pin auto|none|cross|same\n");
    return 2;
  }
  if (O.proto == NULL)
    O.proto = all ? "both" : "raw";
  if (resolve_python(py, O.python, sizeof(O.python)) != 0) {
    fprintf(stderr, "ppbench: cannot resolve the interpreter %s\n", py);
    return 1;
  }
  snprintf(worker_py, sizeof(worker_py), "%s/bridge/python/portpool_worker.py",
           O.root);
  if (access(worker_py, R_OK) != 0) {
    fprintf(stderr, "ppbench: %s not found (use --root)\n", worker_py);
    return 1;
  }
  if (O.json_path && (J = fopen(O.json_path, "w")) == NULL) {
    perror(O.json_path);
    return 1;
  }
  if (O.sigpipe_ignore)
    signal(SIGPIPE, SIG_IGN);
  main_tid = (pid_t)syscall(SYS_gettid);
  mc_get = (mc_get_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "malloc_count_get");
  setvbuf(stdout, NULL, _IOLBF, 0);
  machine();
  loadavg("at start");

  /* Memory first, on a fresh heap, with a fixed mmap threshold (glibc's
   * dynamic one moves with what earlier scenarios freed) and one arena
   * (a thread arena's own header is counted as in use by mallinfo2, and
   * whether a pool's loop thread creates one or reuses one depends on
   * history). */
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  mallopt(M_ARENA_MAX, 1);
  if (all || is(O.mode, "memory"))
    rc |= scen_memory();
  if (all || is(O.mode, "latency")) {
    if (!is(O.proto, "json"))
      rc |= scen_latency(0);
    if (all && O.alternatives && is(O.proto, "raw"))
      run_alternatives();
    if (all && O.alternatives && !is(O.proto, "raw"))
      mid_hook = run_alternatives;
    if (!is(O.proto, "raw"))
      rc |= scen_latency(1);
  }
  if (all || is(O.mode, "many"))
    rc |= scen_many();
  if (all || is(O.mode, "cpu"))
    rc |= scen_cpu();
  if (all || is(O.mode, "big"))
    rc |= scen_big();
  if (all || is(O.mode, "prewarm"))
    rc |= scen_prewarm();
  if (all || is(O.mode, "zygote"))
    rc |= scen_zygote();
  if (is(O.mode, "anatomy"))
    rc |= scen_anatomy();
  loadavg("at end");
  targets();
  if (J)
    fclose(J);
  return rc ? 1 : 0;
}
