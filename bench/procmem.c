/* procmem.c -- what processes use in memory, from /proc: a pool's workers
 * and our own children (a zygote), for the memory scenarios. */
#include "bench.h"

#include <dirent.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Rss, Pss and private (Private_Clean + Private_Dirty) bytes of a process,
 * from /proc/PID/smaps_rollup; 0 when it is gone. */
void proc_smaps(int pid, double *rss, double *pss, double *priv) {
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

/* Summed over the pool's workers (their pids from pp_pool_status). */
memsum_t pool_workers_mem(pp_pool_t *pool) {
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
memsum_t children_mem(const char *needle) {
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

double heap_bytes(void) {
  struct mallinfo2 mi = mallinfo2();
  return (double)mi.uordblks + (double)mi.hblkhd;
}
