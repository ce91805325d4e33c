/* results.c -- what a run reports: the rows of the contenders measured,
 * scalar figures, their JSON lines, and the CPU other processes used while
 * a scenario ran.  Main thread only. */
#include "bench.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --------------------------------------------------------- JSON output */

void jstr(FILE *f, const char *s) {
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

/* ----------------------------------------------------------- results */

result_t results[MAX_RESULTS];
int nresults;

result_t *result_get(const char *scen, const char *name) {
  for (int i = 0; i < nresults; i++)
    if (strcmp(results[i].scen, scen) == 0 &&
        strcmp(results[i].name, name) == 0)
      return &results[i];
  return NULL;
}

result_t *result_new(const char *scen, const char *name) {
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

void result_emit(const result_t *r) {
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
void figure(const char *scen, const char *name, double v, const char *unit,
            const char *fmt, ...) {
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
double pid_cpu_s(const char *path, int *ppid) {
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

void foreign_begin(foreign_t *f) {
  f->busy = stat_busy_s();
  f->own = own_cpu_s();
  f->t = bench_now_ns();
}

/* Foreign CPUs busy since foreign_begin (children that exited meanwhile
 * count as foreign: call it while the scenario's workers live). */
double foreign_end(const foreign_t *f) {
  double wall = (double)(bench_now_ns() - f->t) / 1e9;
  double other = (stat_busy_s() - f->busy) - (own_cpu_s() - f->own);

  if (wall <= 0)
    return 0;
  return other > 0 ? other / wall : 0;
}

void foreign_report(const char *scen, double cpus) {
  figure("load", scen, cpus, "CPUs",
         "used by other processes while this scenario was measured");
}
