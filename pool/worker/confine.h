/* confine.h -- what a worker process may use and who it runs as:
 * worker.limits.* (rlimits the worker applies to itself), worker.user /
 * group / allow_root, and worker.memory_max (a cgroup v2 per slot)
 * (confine.c).  Included by internal.h.  Not installed. */
#ifndef PP_CONFINE_H
#define PP_CONFINE_H

#include "portpool.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pp_config pp_config_t;
typedef struct pp__proc pp__proc_t;

/* A pool's confinement, fixed when it opens (loop thread after that). */
typedef struct pp__confine {
  int setid;         /* start workers (and the zygote) as uid:gid */
  uint32_t uid;      /* worker.user, resolved */
  uint32_t gid;      /* worker.group, or the user's primary group */
  int cg_fd;         /* the delegated cgroup directory, -1 = no memory_max */
  char cg_path[256]; /* its path, for messages */
} pp__confine_t;

/* Before the first worker of a process adapter (python, zygote): resolve
 * worker.user/group, refuse root without worker.allow_root, check each
 * worker.limits.* against what a worker can set, and for
 * worker.memory_max set up the cgroup subtree (the pool moves itself into
 * a leaf of its own).  Returns 0, or PP_ECONFIG with diag naming the key
 * and saying what is missing and how to fix it. */
int pp__confine_prepare(pp_pool_t *pool, pp_diag_t *diag);

/* After the interpreter is resolved (pool->python): when workers run as
 * worker.user, that user can run it and read worker.command's files, by
 * their mode bits.  Returns 0 or PP_ECONFIG (diag says which path). */
int pp__confine_reach_check(pp_pool_t *pool, pp_diag_t *diag);

/* Remove the workers' cgroups (best effort) and close what prepare
 * opened.  Safe on a pool that never prepared. */
void pp__confine_close(pp_pool_t *pool);

/* The spawn flags and ids for uv_spawn of a worker or a zygote. */
void pp__confine_spawn_opts(const pp_pool_t *pool, unsigned *flags,
                            uint32_t *uid, uint32_t *gid);

/* PORTPOOL_LIMITS=name=soft:hard,... for the worker's bootstrap (empty
 * value when no limit is set) into buf.  Returns 0 or UV_ENOBUFS. */
int pp__confine_limits_env(const pp_config_t *cfg, char *buf, size_t len);

/* 1 when a new worker waits for one byte on fd 3 before it loads its
 * handlers (worker.memory_max: it must be in its cgroup first). */
int pp__confine_holds(const pp_pool_t *pool);

/* Just started (spawned, or a zygote fork adopted; lock held, loop
 * thread): set worker.limits.* on it (prlimit; the worker sets them
 * itself too), then move it into its slot's cgroup and let it go on, or
 * tell it why it cannot (it then fails to boot with that message).  The
 * cgroup part is a no-op without worker.memory_max. */
void pp__confine_adopt(pp__proc_t *proc);

/* Its exit, when a limit explains it: PP_EXIT_OOM for a SIGKILL while
 * its cgroup counted a new oom_kill, PP_EXIT_SIGNAL for SIGXCPU under
 * worker.limits.cpu, each with its text in text; PP_EXIT_NONE when no
 * limit explains it (text untouched).  Loop thread. */
pp_exit_kind_t pp__confine_exit(pp__proc_t *proc, char *text, size_t len);

/* A reload may not change who workers run as nor their cgroups: the key
 * that differs between old and new, or NULL. */
const char *pp__confine_reload_bad(const pp_config_t *old,
                                   const pp_config_t *cfg);

#ifdef PP_FAULTS
/* Tests only: read "mountinfo" and "cgroup" from dir instead of
 * /proc/self (a fake cgroup2 tree in a temporary directory), for pools
 * opened on this thread from now on; NULL turns it off. */
void pp__confine_fake_proc(const char *dir);
#endif

#endif
