/* main.c -- ppbench: the pool beside its floor, in one invocation.
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
 * bench/report.py.  Not a test: nothing here asserts on time.
 *
 * This file: the options, the machine's description, and the order the
 * scenarios run in (one file each, scen_*.c). */
#include "bench.h"

#include <dlfcn.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef PPBENCH_SOURCE_DIR
#define PPBENCH_SOURCE_DIR "."
#endif

opts_t O;
FILE *J; /* JSON lines, or NULL */
char worker_py[PATH_MAX];

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: ppbench [options] "
      "[all|latency|many|cpu|big|prewarm|zygote|memory|anatomy|elastic|scale]\n"
      "  all runs every scenario but anatomy (a profile aid, see "
      "bench/profile.sh)\n"
      "  and elastic (bursts on an elastic pool vs a fixed one, see "
      "bench/elastic.sh)\n"
      "  and scale (cost against pool size and callers, see "
      "bench/scale.sh)\n"
      "  --payload N        payload bytes (default 64; big: 65536)\n"
      "  --callers N        caller threads on the pool (latency 1, many 64)\n"
      "  --workers N        pool size / floor workers (latency 1, many 2)\n"
      "  --depth D          requests in flight per worker for the raw "
      "pipelined\n"
      "                     floor in many (16); the pool there runs at the "
      "same\n"
      "                     worker.pipeline_depth unless --pool-depth says\n"
      "  --pool-depth D     the pool's worker.pipeline_depth in every "
      "scenario\n"
      "                     (default: many runs one pool at --depth and one at "
      "1\n"
      "                     for reference; the other scenarios run at 1, the\n"
      "                     configuration's default)\n"
      "  --duration S       seconds measured per contender per scenario (1)\n"
      "  --rounds N         interleaved windows per contender (10)\n"
      "  --proto raw|json|both   worker mode for latency (all: both)\n"
      "  --python PATH      interpreter (default: python3 on PATH, resolved "
      "to\n"
      "                     realpath(sys.executable) as the pool does)\n"
      "  --root DIR         source tree (default %s)\n"
      "  --json FILE        also write JSON lines for bench/report.py\n"
      "  --waiters N        waiting checkouts for the memory scenario (10000)\n"
      "  --no-alternatives  skip bench/alternatives.py in `all`\n"
      "  --sigpipe-ignore   ignore SIGPIPE before opening pools (the library "
      "then\n"
      "                     skips its per-write signal masking)\n"
      "  --slow-start S     import delay of fixtures/slow_start.py (1.5)\n"
      "  --prewarm-workers N  workers of the prewarm and zygote scenarios (8)\n"
      "  --burn-import S    CPU seconds burnt by the import of\n"
      "                     bench/handlers/burn_import.py (zygote: 1.5)\n"
      "  --burn-ms MS       CPU per call of the cpu scenario's handler (1)\n"
      "  --pin auto|none|cross|same  pin caller threads to CPU 0 and workers "
      "to\n"
      "                     CPU 1 (cross) or CPU 0 (same).  auto (default): "
      "cross\n"
      "                     for the one-worker scenarios (latency, big, "
      "anatomy),\n"
      "                     none for the others.  Unpinned, the scheduler puts "
      "each\n"
      "                     worker process beside or across from the caller\n"
      "                     depending on the machine's load (2.5x apart), and "
      "the\n"
      "                     floor's and the pool's workers may land "
      "differently\n"
      "  --only WHO         measure one side only: floor, pipe, pp_call, "
      "lease,\n"
      "                     pp_call_d1 (many's reference pool at depth 1)\n"
      "                     (for profiling: strace, callgrind, LD_PRELOAD "
      "counters)\n",
      PPBENCH_SOURCE_DIR);
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
         sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release, u.machine, pyver,
         O.python);
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
    fprintf(J,
            ",\"payload\":%zu,\"duration\":%g,\"rounds\":%d,"
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
      !is(O.mode, "zygote") && !is(O.mode, "memory") &&
      !is(O.mode, "anatomy") && !is(O.mode, "elastic") &&
      !is(O.mode, "scale")) {
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
   * history).  The threshold only when the memory scenario runs: fixed,
   * every block past 128 KB is fresh pages each time (a big pool's status
   * snapshot, say), which no program on glibc's default pays after its
   * first free of such a block. */
  if (all || is(O.mode, "memory"))
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
  if (is(O.mode, "elastic"))
    rc |= scen_elastic();
  if (is(O.mode, "scale"))
    rc |= scen_scale();
  loadavg("at end");
  targets();
  if (J)
    fclose(J);
  return rc ? 1 : 0;
}
