/* cpus.c -- how many CPUs `size: auto` counts: the CPUs this process may
 * run on (its affinity mask: taskset, cpusets), within the CPU quota of
 * its cgroup and of each cgroup above it (cgroup v2 cpu.max, v1
 * cpu.cfs_quota_us / cpu.cfs_period_us), rounded up: what a container
 * runtime's --cpus sets.  A container that sees 64 host CPUs but may use
 * 2 gets 2 workers, not 64. */
#include "config.h"

#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The first line of a small file, without its newline; 0 or -1. */
static int read_line(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "re");
  size_t n;

  if (f == NULL)
    return -1;
  if (fgets(buf, (int)cap, f) == NULL) {
    fclose(f);
    return -1;
  }
  fclose(f);
  n = strcspn(buf, "\n");
  buf[n] = '\0';
  return 0;
}

/* CPUs the quota in dir allows (rounded up), or 0 for none there. */
static long quota_in(const char *dir, int v2) {
  char path[PATH_MAX], line[128];
  long long quota, period = 0;

  if (v2) {
    if (snprintf(path, sizeof(path), "%s/cpu.max", dir) >= (int)sizeof(path) ||
        read_line(path, line, sizeof(line)) != 0 ||
        sscanf(line, "%lld %lld", &quota, &period) != 2)
      return 0; /* "max 100000" (no quota) does not scan either */
  } else {
    if (snprintf(path, sizeof(path), "%s/cpu.cfs_quota_us", dir) >=
            (int)sizeof(path) ||
        read_line(path, line, sizeof(line)) != 0 ||
        sscanf(line, "%lld", &quota) != 1)
      return 0;
    if (snprintf(path, sizeof(path), "%s/cpu.cfs_period_us", dir) >=
            (int)sizeof(path) ||
        read_line(path, line, sizeof(line)) != 0 ||
        sscanf(line, "%lld", &period) != 1)
      return 0;
  }
  if (quota <= 0 || period <= 0)
    return 0; /* -1: none (v1) */
  return (long)((quota + period - 1) / period);
}

/* The smallest quota on the cgroup at path (under mount) and its
 * ancestors, up to the root of what this process sees; 0 for none. */
static long quota_up(const char *mount, char *path, int v2) {
  char dir[PATH_MAX];
  long best = 0, q;
  char *slash;

  for (;;) {
    if (snprintf(dir, sizeof(dir), "%s%s", mount, path) < (int)sizeof(dir) &&
        (q = quota_in(dir, v2)) > 0 && (best == 0 || q < best))
      best = q;
    if ((slash = strrchr(path, '/')) == NULL || path[1] == '\0')
      return best;
    slash[slash == path ? 1 : 0] = '\0'; /* "/a/b" -> "/a" -> "/" */
  }
}

/* The quota's CPUs from self_cgroup (/proc/self/cgroup's format) and the
 * cgroup file systems under root; 0 for none. */
static long cgroup_cpus(const char *self_cgroup, const char *root) {
  char line[PATH_MAX], mount[PATH_MAX], *ctl, *path;
  long best = 0, q;
  FILE *f = fopen(self_cgroup, "re");

  if (f == NULL)
    return 0;
  while (fgets(line, sizeof(line), f) != NULL) {
    line[strcspn(line, "\n")] = '\0';
    /* hierarchy-ID:controllers:path */
    if ((ctl = strchr(line, ':')) == NULL ||
        (path = strchr(ctl + 1, ':')) == NULL)
      continue;
    *ctl++ = '\0';
    *path++ = '\0';
    if (path[0] != '/')
      continue;
    if (strcmp(line, "0") == 0 && ctl[0] == '\0') {
      q = quota_up(root, path, 1); /* v2: one hierarchy */
    } else {
      const char *c = ctl;
      size_t n;
      int cpu = 0;

      /* v1: the hierarchy with the cpu controller, mounted as "cpu" (a
       * link to "cpu,cpuacct" where they are together). */
      for (; *c; c += n + (c[n] == ',')) {
        n = strcspn(c, ",");
        cpu |= n == 3 && memcmp(c, "cpu", 3) == 0;
      }
      if (!cpu ||
          snprintf(mount, sizeof(mount), "%s/cpu", root) >= (int)sizeof(mount))
        continue;
      q = quota_up(mount, path, 0);
    }
    if (q > 0 && (best == 0 || q < best))
      best = q;
  }
  fclose(f);
  return best;
}

int pp__config_cpus_in(const char *self_cgroup, const char *root) {
  cpu_set_t set;
  long n = 0, q;

  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    n = CPU_COUNT(&set);
  if (n < 1)
    n = sysconf(_SC_NPROCESSORS_ONLN);
  if ((q = cgroup_cpus(self_cgroup, root)) > 0 && q < n)
    n = q;
  return n < 1 ? 1 : n > INT32_MAX ? INT32_MAX : (int)n;
}

int pp__config_cpus(void) {
  return pp__config_cpus_in("/proc/self/cgroup", "/sys/fs/cgroup");
}
