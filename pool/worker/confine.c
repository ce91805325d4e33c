/* confine.c -- owns what a worker process may use and who it runs as:
 * worker.user / group / allow_root (checked when the pool opens, applied
 * by uv_spawn), worker.limits.* (passed in PORTPOOL_LIMITS; the worker's
 * bootstrap applies them to itself before it imports a handler), and
 * worker.memory_max (one cgroup v2 per slot under a delegated subtree; an
 * OOM kill there is classified as such).  Does not start processes
 * (python.c, zygote.c) nor decide what an exit means otherwise (pool.c).
 *
 * The cgroup layout, under the cgroup the pool was started in (which must
 * be delegated to it): the pool moves itself into a leaf,
 * "portpool-supervisor" (cgroup v2 allows processes only in leaves once a
 * cgroup enables controllers for its children), enables +memory for the
 * children, and makes "<pool name>.w<slot>" per slot with memory.max.  A
 * worker starts in the supervisor's cgroup (a spawn, or a fork of the
 * zygote, which lives there too), and blocks on one byte of fd 3 before
 * it loads its handler: the pool moves it into its slot's cgroup and then
 * writes "G" (or "E" and why not, which the worker reports as a boot
 * failure).  So no handler code ever runs outside its cgroup; what the
 * interpreter touched before the move stays charged to the supervisor
 * (cgroup v2 does not move charges), as do the pages a zygote child
 * shares with the zygote. */
#include "internal.h"
#include "uid.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUPERVISOR "portpool-supervisor"

#ifdef PP_FAULTS
static _Thread_local char fake_proc[256];

void pp__confine_fake_proc(const char *dir) {
  snprintf(fake_proc, sizeof(fake_proc), "%s", dir ? dir : "");
}
#define PROC_DIR (fake_proc[0] ? fake_proc : "/proc/self")
#else
#define PROC_DIR "/proc/self"
#endif

/* ------------------------------------------------------------ files */

/* Read a small file (at dirfd, not following a symlink) into buf,
 * NUL-terminated.  Returns bytes read or -1 with errno. */
static ssize_t read_at(int dirfd, const char *name, char *buf, size_t len) {
  ssize_t n, got = 0;
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

  if (fd < 0)
    return -1;
  while ((size_t)got + 1 < len &&
         (n = read(fd, buf + got, len - (size_t)got - 1)) != 0) {
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      errno = e;
      return -1;
    }
    got += n;
  }
  buf[got] = '\0';
  close(fd);
  return got;
}

/* Read a /proc file that may be large (mountinfo on a host with many
 * mounts) whole into *buf, growing it up to 16 MiB; cut files would make
 * a mount look absent.  Returns bytes read or -1 with errno (EFBIG when
 * it does not fit). */
static ssize_t read_whole_at(int dirfd, const char *name, char **buf,
                             size_t *cap) {
  for (;;) {
    ssize_t n = read_at(dirfd, name, *buf, *cap);
    char *p;
    if (n < 0 || (size_t)n + 1 < *cap)
      return n;
    if (*cap >= (size_t)1 << 24) {
      errno = EFBIG;
      return -1;
    }
    if ((p = realloc(*buf, *cap * 2)) == NULL)
      return -1;
    *buf = p;
    *cap *= 2;
  }
}

/* Write text to name at dirfd, created when absent (a fake tree; cgroupfs
 * files always exist).  Returns 0 or -1 with errno. */
static int write_at(int dirfd, const char *name, const char *text) {
  size_t len = strlen(text);
  int fd =
      openat(dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_CREAT, 0644);
  ssize_t n;

  if (fd < 0)
    return -1;
  do
    n = write(fd, text, len);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)len) {
    int e = n < 0 ? errno : EIO;
    close(fd);
    errno = e;
    return -1;
  }
  return close(fd);
}

/* The directory name at dirfd, made if absent.  Returns an fd or -1. */
static int subdir(int dirfd, const char *name) {
  if (mkdirat(dirfd, name, 0755) != 0 && errno != EEXIST)
    return -1;
  return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
}

/* ------------------------------------------------------------ cgroup v2 */

/* diag's message (cut to fit) and key worker.memory_max; PP_ECONFIG. */
static int cg_fail(pp_diag_t *diag, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int cg_fail(pp_diag_t *diag, const char *fmt, ...) {
  va_list ap;

  if (diag == NULL)
    return PP_ECONFIG;
  va_start(ap, fmt);
  vsnprintf(diag->message, sizeof(diag->message), fmt, ap);
  va_end(ap);
  snprintf(diag->key, sizeof(diag->key), "worker.memory_max");
  return PP_ECONFIG;
}

/* Our cgroup v2 directory from mountinfo and cgroup in PROC_DIR, into
 * path.  Returns 0 or PP_ECONFIG (diag says what is missing). */
static int cg_find(char *path, size_t len, pp_diag_t *diag) {
  static const char fix[] = "; or unset worker.memory_max";
  char *buf = NULL, mount[256] = "", rel[256] = "", *line, *save, *p;
  int dirfd, r = PP_ECONFIG;
  size_t cap = 1 << 16;

  if ((buf = malloc(cap)) == NULL)
    return UV_ENOMEM;
  dirfd = open(PROC_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0 || read_whole_at(dirfd, "cgroup", &buf, &cap) < 0) {
    cg_fail(diag,
            "it needs cgroup v2, and %s/cgroup cannot "
            "be read%s",
            PROC_DIR, fix);
    goto done;
  }
  for (line = strtok_r(buf, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    if (strncmp(line, "0::", 3) == 0 && strlen(line + 3) >= sizeof(rel)) {
      cg_fail(diag, "this process's cgroup path is longer than %zu bytes%s",
              sizeof(rel) - 1, fix);
      goto done;
    } else if (strncmp(line, "0::", 3) == 0) {
      snprintf(rel, sizeof(rel), "%s", line + 3);
    }
  }
  if (rel[0] == '\0') {
    cg_fail(diag,
            "it needs cgroup v2, and this process is in no "
            "cgroup v2 hierarchy (no \"0::\" line in %s/cgroup): the system "
            "runs cgroup v1 only; boot with systemd.unified_cgroup_"
            "hierarchy=1%s",
            PROC_DIR, fix);
    goto done;
  }
  if (read_whole_at(dirfd, "mountinfo", &buf, &cap) < 0) {
    cg_fail(diag, "cannot read %s/mountinfo: %s%s", PROC_DIR, strerror(errno),
            fix);
    goto done;
  }
  /* "id parent maj:min root mountpoint options ... - cgroup2 src opts" */
  for (line = strtok_r(buf, "\n", &save); line && mount[0] == '\0';
       line = strtok_r(NULL, "\n", &save)) {
    char root[256], mp[256];
    p = strstr(line, " - ");
    if (p == NULL || strncmp(p + 3, "cgroup2 ", 8) != 0)
      continue;
    if (sscanf(line, "%*s %*s %*s %255s %255s", root, mp) == 2 &&
        strcmp(root, "/") == 0)
      snprintf(mount, sizeof(mount), "%s", mp);
  }
  if (mount[0] == '\0') {
    cg_fail(diag,
            "it needs cgroup v2, and no cgroup2 filesystem is "
            "mounted (none in %s/mountinfo); mount one at /sys/fs/cgroup%s",
            PROC_DIR, fix);
    goto done;
  }
  snprintf(path, len, "%s%s", mount, strcmp(rel, "/") == 0 ? "" : rel);
  r = 0;
done:
  if (dirfd >= 0)
    close(dirfd);
  free(buf);
  return r;
}

/* A word in a space-separated list. */
static int has_word(const char *list, const char *word) {
  size_t n = strlen(word);
  for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
    if ((p == list || p[-1] == ' ') &&
        (p[n] == '\0' || p[n] == ' ' || p[n] == '\n'))
      return 1;
  return 0;
}

/* Check that the cgroup at path is usable for worker.memory_max and set
 * it up: our leaf, +memory for children.  On success c->cg_fd is open. */
static int cg_setup(pp__confine_t *c, char *path, pp_diag_t *diag) {
  static const char deleg[] =
      "run the pool in a cgroup delegated to it (a systemd service with "
      "Delegate=yes, or systemd-run -p Delegate=yes ...), or unset "
      "worker.memory_max";
  char ctrl[512], pid[32], *base;
  int fd = -1, leaf = -1;

  /* Opened before in this process (another pool): we are in our leaf. */
  base = strrchr(path, '/');
  if (base && strcmp(base + 1, SUPERVISOR) == 0)
    *base = '\0';
  snprintf(c->cg_path, sizeof(c->cg_path), "%.255s", path);
  fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    cg_fail(diag, "cannot open the pool's cgroup %s: %s", path,
            strerror(errno));
    goto fail;
  }
  if (read_at(fd, "cgroup.controllers", ctrl, sizeof(ctrl)) < 0) {
    cg_fail(diag, "%s is not a cgroup v2 directory: %s", path, strerror(errno));
    goto fail;
  }
  ctrl[strcspn(ctrl, "\n")] = '\0';
  if (!has_word(ctrl, "memory")) {
    cg_fail(diag,
            "it needs the cgroup v2 memory controller, and "
            "it is not available in %.200s (its controllers: \"%.100s\"): "
            "on a hybrid system memory is bound to cgroup v1 (boot with "
            "systemd.unified_cgroup_hierarchy=1), or the parent cgroup does "
            "not enable it for ours; %s",
            path, ctrl, deleg);
    goto fail;
  }
  if (strcmp(path + strlen(path) - 1, "/") == 0 || strchr(path, '/') == NULL ||
      faccessat(fd, "cgroup.subtree_control", W_OK, 0) != 0 ||
      faccessat(fd, "cgroup.procs", W_OK, 0) != 0 ||
      faccessat(fd, ".", W_OK, 0) != 0) {
    cg_fail(diag,
            "it needs a cgroup v2 subtree delegated to the "
            "pool, and %.200s is not writable by it (cgroup.procs, "
            "cgroup.subtree_control, new directories); %s",
            path, deleg);
    goto fail;
  }
  /* No internal processes: we leave for a leaf before children get
   * controllers. */
  if ((leaf = subdir(fd, SUPERVISOR)) < 0) {
    cg_fail(diag, "cannot make %s/" SUPERVISOR ": %s", path, strerror(errno));
    goto fail;
  }
  snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
  if (write_at(leaf, "cgroup.procs", pid) != 0) {
    cg_fail(diag, "cannot move the pool into %s/" SUPERVISOR ": %s", path,
            strerror(errno));
    goto fail;
  }
  if (write_at(fd, "cgroup.subtree_control", "+memory\n") != 0) {
    cg_fail(diag,
            "cannot enable the memory controller for "
            "the workers' cgroups under %.200s: %s (another process in "
            "that cgroup? give the pool a cgroup of its own; %s)",
            path, strerror(errno), deleg);
    goto fail;
  }
  close(leaf);
  c->cg_fd = fd;
  return 0;
fail:
  if (leaf >= 0)
    close(leaf);
  if (fd >= 0)
    close(fd);
  return PP_ECONFIG;
}

/* A slot's cgroup name: "<pool name>.w<id>", the name made safe. */
static void cg_name(const pp_pool_t *pool, int id, char *out, size_t len) {
  size_t n = 0;
  const char *s = pool->cfg->name;

  for (; *s && n + 1 < len && n < 64; s++)
    out[n++] = (*s == '/' || *s == '.' || *s == '\n' || *s == ' ') ? '_' : *s;
  snprintf(out + n, len - n, ".w%d", id);
}

/* The oom_kill count in a cgroup's memory.events (0 when unreadable). */
static uint64_t oom_kills(int dirfd) {
  char buf[512], *p;

  if (read_at(dirfd, "memory.events", buf, sizeof(buf)) < 0)
    return 0;
  for (p = buf; (p = strstr(p, "oom_kill ")) != NULL; p++)
    if (p == buf || p[-1] == '\n')
      return strtoull(p + 9, NULL, 10);
  return 0;
}

/* ------------------------------------------------------------ rlimits */

typedef struct {
  const char *key, *name;
  int resource;
  size_t off;
} rlim_key_t;

static const rlim_key_t rlims[] = {
    {"worker.limits.nofile", "nofile", RLIMIT_NOFILE,
     offsetof(pp_config_t, lim_nofile)},
    {"worker.limits.nproc", "nproc", RLIMIT_NPROC,
     offsetof(pp_config_t, lim_nproc)},
    {"worker.limits.as", "as", RLIMIT_AS, offsetof(pp_config_t, lim_as)},
    {"worker.limits.cpu", "cpu", RLIMIT_CPU, offsetof(pp_config_t, lim_cpu)},
    {"worker.limits.core", "core", RLIMIT_CORE,
     offsetof(pp_config_t, lim_core)},
};
#define NRLIMS (sizeof(rlims) / sizeof(rlims[0]))

static uint64_t rlim_value(const pp_config_t *cfg, const rlim_key_t *k) {
  return *(const uint64_t *)(const void *)((const char *)cfg + k->off);
}

/* soft = hard = the value, so a handler cannot raise it; but cpu's hard
 * limit is a second later: the kernel sends SIGXCPU at the soft limit and
 * SIGKILL at the hard one, so the worker dies of SIGXCPU, which names the
 * cause (one that catches SIGXCPU is killed a second later). */
static uint64_t rlim_hard(const rlim_key_t *k, uint64_t v) {
  return k->resource == RLIMIT_CPU ? v + 1 : v;
}

int pp__confine_limits_env(const pp_config_t *cfg, char *buf, size_t len) {
  size_t n = (size_t)snprintf(buf, len, "PORTPOOL_LIMITS=");
  const char *sep = "";

  for (size_t i = 0; i < NRLIMS && n < len; i++) {
    uint64_t v = rlim_value(cfg, &rlims[i]);
    if (v == PP_LIMIT_UNSET)
      continue;
    n += (size_t)snprintf(buf + n, len - n, "%s%s=%llu:%llu", sep,
                          rlims[i].name, (unsigned long long)v,
                          (unsigned long long)rlim_hard(&rlims[i], v));
    sep = ",";
  }
  return n < len ? 0 : UV_ENOBUFS;
}

/* ------------------------------------------------------------ prepare */

static int fail_key(pp_diag_t *diag, const char *key) {
  if (diag)
    snprintf(diag->key, sizeof(diag->key), "%s", key);
  return PP_ECONFIG;
}

static int ids_prepare(pp_pool_t *pool, pp_diag_t *diag) {
  const pp_config_t *cfg = pool->cfg;
  pp__confine_t *c = &pool->confine;
  uid_t euid = geteuid();
  uint32_t pgid = UINT32_MAX;
  char why[256];

  if (cfg->user == NULL || cfg->user[0] == '\0') {
    if (euid == 0 && !cfg->allow_root) {
      pp__diag_set(diag, "the pool runs as root and would start its workers as "
                         "root: set worker.user (and worker.group) to an "
                         "unprivileged user, or worker.allow_root: true to run "
                         "them as root anyway");
      return fail_key(diag, "worker.user");
    }
    return 0;
  }
  if (pp__user_parse(cfg->user, &c->uid, &pgid, why, sizeof(why)) != 0) {
    pp__diag_set(diag, "%s", why);
    return fail_key(diag, "worker.user");
  }
  if (cfg->group != NULL && cfg->group[0] != '\0' &&
      pp__gid_parse(cfg->group, &c->gid, why, sizeof(why)) != 0) {
    pp__diag_set(diag, "%s", why);
    return fail_key(diag, "worker.group");
  }
  if (euid != 0) {
    /* Naming ourselves changes nothing: allowed. */
    if (c->uid == (uint32_t)euid &&
        (cfg->group == NULL || cfg->group[0] == '\0' ||
         c->gid == (uint32_t)getegid()))
      return 0;
    pp__diag_set(diag,
                 "worker.user is %.64s, but the pool does not run as root "
                 "(euid %u): only root can start workers as another user; "
                 "unset worker.user (workers then run as the pool's own "
                 "user), or start the pool as root",
                 cfg->user, (unsigned)euid);
    return fail_key(diag, "worker.user");
  }
  /* No worker.group: the user's primary group. */
  if (cfg->group == NULL || cfg->group[0] == '\0') {
    if (pgid == UINT32_MAX) {
      pp__diag_set(diag,
                   "uid %.32s has no entry in the user database, so no "
                   "primary group: set worker.group too",
                   cfg->user);
      return fail_key(diag, "worker.group");
    }
    c->gid = pgid;
  }
  if (c->uid == 0 && !cfg->allow_root) {
    pp__diag_set(diag,
                 "worker.user %.64s is root (uid 0): workers would run as "
                 "root; name an unprivileged user in worker.user, or set "
                 "worker.allow_root: true to run them as root anyway",
                 cfg->user);
    return fail_key(diag, "worker.user");
  }
  /* As PHP-FPM: group root is refused too (root's files open to it). */
  if (c->gid == 0 && !cfg->allow_root) {
    pp__diag_set(diag,
                 "workers would run in group root (gid 0)%s: name an "
                 "unprivileged group in worker.group, or set "
                 "worker.allow_root: true to allow it",
                 cfg->group && cfg->group[0] ? "" : ", worker.user's own");
    return fail_key(diag, "worker.group");
  }
  c->setid = 1;
  return 0;
}

/* 1 when uid:gid may use path (need: S_IXOTH to run it, S_IROTH to read
 * it), judged by mode bits: every directory on the way searchable, the
 * file itself readable or executable.  (ACLs are not looked at.) */
static int reachable(const char *path, uint32_t uid, uint32_t gid,
                     unsigned need, char *bad, size_t len) {
  char p[1024];
  struct stat st;
  size_t i, n = strlen(path);
  unsigned want;

  if (n >= sizeof(p) || path[0] != '/')
    return 1;
  memcpy(p, path, n + 1);
  for (i = 1; i <= n; i++) {
    if (p[i] != '/' && p[i] != '\0')
      continue;
    p[i] = '\0';
    want = i == n ? need : S_IXOTH;
    if (stat(p, &st) == 0) {
      unsigned m = st.st_uid == uid   ? (st.st_mode >> 6) & 7u
                   : st.st_gid == gid ? (st.st_mode >> 3) & 7u
                                      : st.st_mode & 7u;
      if ((m & want) != want) {
        snprintf(bad, len, "%.200s (mode %04o, owner %u)", p,
                 (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
        return 0;
      }
    }
    if (i < n)
      p[i] = '/';
  }
  return 1;
}

int pp__confine_reach_check(pp_pool_t *pool, pp_diag_t *diag) {
  const pp_config_t *cfg = pool->cfg;
  const pp__confine_t *c = &pool->confine;
  char bad[256];

  if (!c->setid)
    return 0;
  for (int i = 0; i < cfg->command_len && i < 3; i++) {
    const char *path = i == 0 ? pool->python : cfg->command[i];
    if (path == NULL || reachable(path, c->uid, c->gid,
                                  i == 0 ? S_IXOTH : S_IROTH, bad, sizeof(bad)))
      continue;
    pp__diag_set(diag,
                 "workers run as %.64s (uid %u), which cannot %s %.200s: "
                 "%s is not open to it; install the %s where that user "
                 "can reach it, or run workers as another user",
                 cfg->user, (unsigned)c->uid, i == 0 ? "run" : "read", path,
                 bad, i == 0 ? "interpreter" : "file");
    return fail_key(diag, "worker.user");
  }
  return 0;
}

/* A limit above our own hard limit can only be set by a privileged
 * worker: one that runs as root (ours, not worker.user's). */
static int rlims_check(pp_pool_t *pool, pp_diag_t *diag) {
  const pp_config_t *cfg = pool->cfg;
  int privileged = geteuid() == 0 && !pool->confine.setid;
  struct rlimit rl;

  for (size_t i = 0; i < NRLIMS; i++) {
    uint64_t v = rlim_value(cfg, &rlims[i]), hard;
    if (v == PP_LIMIT_UNSET || privileged)
      continue;
    hard = rlim_hard(&rlims[i], v);
    if (getrlimit(rlims[i].resource, &rl) != 0 ||
        rl.rlim_max == RLIM_INFINITY || hard <= (uint64_t)rl.rlim_max)
      continue;
    pp__diag_set(diag,
                 "%llu is above the pool's own hard limit (%llu), which an "
                 "unprivileged worker cannot raise: lower the value, or "
                 "raise the pool's hard limit (ulimit -H, or Limit...= in "
                 "its systemd unit)",
                 (unsigned long long)v, (unsigned long long)rl.rlim_max);
    return fail_key(diag, rlims[i].key);
  }
  return 0;
}

int pp__confine_prepare(pp_pool_t *pool, pp_diag_t *diag) {
  pp__confine_t *c = &pool->confine;
  char path[512];
  int r;

  c->cg_fd = -1;
  if ((r = ids_prepare(pool, diag)) != 0)
    return r;
  if ((r = rlims_check(pool, diag)) != 0)
    return r;
  if (pool->cfg->memory_max == 0)
    return 0;
  if ((r = cg_find(path, sizeof(path), diag)) != 0)
    return r;
  return cg_setup(c, path, diag);
}

void pp__confine_close(pp_pool_t *pool) {
  pp__confine_t *c = &pool->confine;
  char name[96];

  if (c->cg_fd < 0)
    return;
  /* Empty once their workers are gone; one still busy stays. */
  for (int i = 0; i < pool->nslots; i++) {
    cg_name(pool, pool->slots[i]->id, name, sizeof(name));
    unlinkat(c->cg_fd, name, AT_REMOVEDIR);
  }
  close(c->cg_fd);
  c->cg_fd = -1;
}

void pp__confine_spawn_opts(const pp_pool_t *pool, unsigned *flags,
                            uint32_t *uid, uint32_t *gid) {
  if (!pool->confine.setid)
    return;
  /* libuv also drops supplementary groups (setgroups(0, NULL)) when
   * either flag is given. */
  *flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
  *uid = pool->confine.uid;
  *gid = pool->confine.gid;
}

int pp__confine_holds(const pp_pool_t *pool) {
  return pool->confine.cg_fd >= 0;
}

/* ------------------------------------------------------------ workers */

/* Tell the held worker to go on ("G") or why it cannot ("E..."): one
 * write to its empty request pipe, short enough to be atomic. */
static void release(pp__proc_t *proc, const char *why) {
  char msg[256];
  size_t n;

  msg[0] = why ? 'E' : 'G';
  n = 1;
  if (why != NULL) {
    n += strlen(why) < sizeof(msg) - 1 ? strlen(why) : sizeof(msg) - 1;
    memcpy(msg + 1, why, n - 1);
  }
  if (pp__proc_write_once(proc, msg, n) != (ssize_t)n)
    pp__log(proc->pool, "worker %d: cannot release it: %s", proc->slot->id,
            strerror(errno));
}

/* Set worker.limits.* on the worker from here too (prlimit), before it
 * is released and before its HELLO is read.  A zygote's fork sets them
 * itself, but the zygote ran the handler module's import, which may have
 * changed that code: from the pool they hold whatever the fork runs, from
 * its first request on.  (The zygote itself has nofile, as and core.)
 * The pool may when it runs as the worker's user or has
 * CAP_SYS_RESOURCE. */
static void rlims_impose(pp__proc_t *proc) {
  const pp_config_t *cfg = proc->pool->cfg;
  struct rlimit rl;

  for (size_t i = 0; i < NRLIMS; i++) {
    uint64_t v = rlim_value(cfg, &rlims[i]);
    if (v == PP_LIMIT_UNSET)
      continue;
    rl.rlim_cur = (rlim_t)v;
    rl.rlim_max = (rlim_t)rlim_hard(&rlims[i], v);
    /* Gone (ESRCH), or another user's process to a root without
     * CAP_SYS_RESOURCE, as in some containers (EPERM): the worker's own
     * setrlimit is what holds then. */
    if (prlimit(proc->pid, rlims[i].resource, &rl, NULL) != 0 &&
        errno != ESRCH && errno != EPERM)
      pp__log(proc->pool, "worker %d: cannot set %s: %s", proc->slot->id,
              rlims[i].key, strerror(errno));
  }
}

void pp__confine_adopt(pp__proc_t *proc) {
  pp_pool_t *pool = proc->pool;
  pp__confine_t *c = &pool->confine;
  char name[96], text[64], why[240];
  int fd;

  rlims_impose(proc);
  if (c->cg_fd < 0)
    return;
  cg_name(pool, proc->slot->id, name, sizeof(name));
  snprintf(text, sizeof(text), "%llu\n",
           (unsigned long long)pool->cfg->memory_max);
  fd = subdir(c->cg_fd, name);
  if (fd < 0 || write_at(fd, "memory.max", text) != 0) {
    snprintf(why, sizeof(why),
             "worker.memory_max: cannot set up cgroup %.80s/%.40s: %.40s",
             c->cg_path, name, strerror(errno));
    goto fail;
  }
  proc->oom_base = oom_kills(fd);
  snprintf(text, sizeof(text), "%d\n", proc->pid);
  if (write_at(fd, "cgroup.procs", text) != 0) {
    snprintf(why, sizeof(why),
             "worker.memory_max: cannot move the worker into cgroup "
             "%.80s/%.40s: %.40s",
             c->cg_path, name, strerror(errno));
    goto fail;
  }
  close(fd);
  proc->in_cgroup = 1;
  release(proc, NULL);
  return;
fail:
  if (fd >= 0)
    close(fd);
  pp__log(pool, "worker %d: %s", proc->slot->id, why);
  release(proc, why);
}

pp_exit_kind_t pp__confine_exit(pp__proc_t *proc, char *text, size_t len) {
  const pp_config_t *cfg = proc->pool->cfg;
  pp__confine_t *c = &proc->pool->confine;
  char name[96];
  int fd;

  if (proc->term_signal == SIGXCPU && cfg->lim_cpu != PP_LIMIT_UNSET) {
    snprintf(text, len,
             "exceeded its CPU time limit (worker.limits.cpu: %llu s)",
             (unsigned long long)cfg->lim_cpu);
    return PP_EXIT_SIGNAL;
  }
  if (proc->term_signal != SIGKILL || !proc->in_cgroup || c->cg_fd < 0)
    return PP_EXIT_NONE;
  cg_name(proc->pool, proc->slot->id, name, sizeof(name));
  fd = openat(c->cg_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return PP_EXIT_NONE;
  if (oom_kills(fd) <= proc->oom_base) {
    close(fd);
    return PP_EXIT_NONE;
  }
  close(fd);
  snprintf(text, len, "out of memory (memory_max)");
  return PP_EXIT_OOM;
}

const char *pp__confine_reload_bad(const pp_config_t *old,
                                   const pp_config_t *cfg) {
  const char *a, *b;

  a = old->user ? old->user : "";
  b = cfg->user ? cfg->user : "";
  if (strcmp(a, b) != 0)
    return "worker.user";
  a = old->group ? old->group : "";
  b = cfg->group ? cfg->group : "";
  if (strcmp(a, b) != 0)
    return "worker.group";
  if (old->allow_root != cfg->allow_root)
    return "worker.allow_root";
  if ((old->memory_max == 0) != (cfg->memory_max == 0))
    return "worker.memory_max";
  return NULL;
}
