/* config.h -- the config value behind pp_config_t: what the pool core reads.
 * Only config.c writes these fields; everything else treats a config held by
 * a pool as read-only. */
#ifndef PP_CONFIG_H
#define PP_CONFIG_H

#include "portpool.h"

#include <stdint.h>

/* A worker.limits.* value that was not given: inherited. */
#define PP_LIMIT_UNSET UINT64_MAX

typedef enum { PP_PICK_LIFO = 0, PP_PICK_FIFO } pp__pick_t;
typedef enum { PP_START_SPAWN = 0, PP_START_ZYGOTE } pp__start_t;
typedef enum {
  PP_DEATH_FINISH = 0,
  PP_DEATH_CANCEL,
  PP_DEATH_KILL
} pp__death_t;

struct pp_config {
  char *name;    /* "name", default "portpool" */
  int size;      /* "size", resolved count (auto = CPUs) */
  int size_auto; /* 1 when given as auto (rendered back as auto) */
  int min_ready; /* "min_ready", 0 = size */
  /* Elastic pools: `size: {min: N, max: M}` sets size (the minimum, the
   * workers started at open) and size_max; a plain number or auto sets
   * both to it.  scale.* say when an elastic pool grows and shrinks. */
  int size_max;                   /* "size"'s max; read only when elastic */
  int elastic;                    /* 1 when size was {min, max} */
  uint64_t scale_up_after_ms;     /* "scale.up_after", 5ms */
  int scale_max_starting;         /* "scale.max_starting", 4 */
  uint64_t scale_idle_timeout_ms; /* "scale.idle_timeout", 30s */
  char *adapter;                  /* "adapter": "python" | "mock" */

  /* worker.* */
  char **command; /* "worker.command": NULL-terminated argv */
  int command_len;
  char **env; /* "worker.env": NULL-terminated "K=V" list,
                 added to the inherited environment */
  int env_len;
  uint64_t startup_timeout_ms; /* "worker.startup_timeout", 10s */
  uint64_t request_timeout_ms; /* "worker.request_timeout", 30s; 0 = none */
  uint64_t slow_request_ms;    /* "worker.slow_request", 0 = off */
  uint64_t max_requests;       /* "worker.max_requests", 0 = never */
  uint64_t max_rss;            /* "worker.max_rss" bytes, 0 = never */
  uint64_t max_age_ms;         /* "worker.max_age", 0 = never */
  int max_recycling;           /* "worker.max_recycling", 1 */
  uint32_t max_frame;          /* "worker.max_frame" bytes, 64MiB */
  uint64_t heartbeat_ms;       /* "worker.heartbeat", 0 = off (default 0) */
  int heartbeat_misses;        /* "worker.heartbeat_misses", 3 */
  uint64_t kill_grace_ms;      /* "worker.kill_grace", 2s */
  uint64_t drain_timeout_ms;   /* "worker.drain_timeout", 5s */
  uint64_t cancel_grace_ms;    /* "worker.cancel_grace", 1s */
  int pipeline_depth;          /* "worker.pipeline_depth", 1 */
  int concurrency;             /* "worker.concurrency", 1 */
  int reply_spin_us;           /* "worker.reply_spin_us", 50 */
  pp__start_t start;           /* "worker.start", spawn | zygote */

  /* worker.limits.*, worker.memory_max, worker.user/group/allow_root:
   * what a worker may use and who it runs as (pool/worker/confine.c).  A
   * limit is PP_LIMIT_UNSET when not given: the worker inherits ours. */
  uint64_t lim_nofile; /* "worker.limits.nofile", RLIMIT_NOFILE */
  uint64_t lim_nproc;  /* "worker.limits.nproc", RLIMIT_NPROC */
  uint64_t lim_as;     /* "worker.limits.as" bytes, RLIMIT_AS */
  uint64_t lim_cpu;    /* "worker.limits.cpu" seconds, RLIMIT_CPU */
  uint64_t lim_core;   /* "worker.limits.core" bytes, RLIMIT_CORE */
  uint64_t memory_max; /* "worker.memory_max" bytes, cgroup v2; 0 = none */
  char *user;          /* "worker.user", NULL = ours */
  char *group;         /* "worker.group", NULL = the user's group */
  int allow_root;      /* "worker.allow_root", false */

  /* checkout.* */
  uint64_t checkout_timeout_ms; /* "checkout.timeout", 5s */
  pp__pick_t strategy;          /* "checkout.strategy", lifo */
  int max_waiters;              /* "checkout.max_waiters", 1024 */

  /* restart.* */
  int max_restarts;        /* "restart.max_restarts", 10 */
  uint64_t within_ms;      /* "restart.within", 60s */
  uint64_t backoff_min_ms; /* "restart.backoff": [min, max] */
  uint64_t backoff_max_ms; /* default [100ms, 5s] */
  int retry_boot_failures; /* "restart.retry_boot_failures", false (0) */

  pp__death_t on_client_death; /* "on_client_death", finish */

  /* control.* */
  char *socket;      /* "control.socket", NULL = no socket */
  int socket_mode;   /* "control.mode", 0600 (YAML "0600") */
  char **allow_uids; /* "control.allow_uids": numeric uids as
                        text, NULL-terminated; default none */
  int allow_uids_len;
  uint64_t idle_timeout_ms; /* "control.idle_timeout", 10s; 0 = none */

  /* listen.*: poolctl serve's HTTP face (poolctl/http.c) */
  char *listen;               /* "listen.address", NULL = none */
  char *token_file;           /* "listen.token_file", NULL = none */
  int listen_insecure;        /* "listen.insecure", false */
  char *tls_cert, *tls_key;   /* "listen.tls.cert" / ".key", NULL = none */
  int agent_port;             /* "listen.agent", 0 = none */
  int listen_max_conns;       /* "listen.max_connections", 256 */
  uint64_t listen_timeout_ms; /* "listen.timeout", 30s; 0 = none */
  int keepalive_requests;     /* "listen.keepalive_requests", 1000 */
};

/* The number of CPUs, for `auto` (at least 1): those this process may
 * run on, within its cgroup's CPU quota (cpus.c). */
int pp__config_cpus(void);
/* The same, from a /proc/self/cgroup-format file and a cgroup root (for
 * tests on a fake tree). */
int pp__config_cpus_in(const char *self_cgroup, const char *root);

/* The i-th config key (dotted name) and its one-line description, for
 * listings; NULL when i is out of range. */
const char *pp__config_key_name(int i);
const char *pp__config_key_doc(int i);

#ifdef PP_FAULTS
/* Tests only: make the n-th allocation (0-based) that config code makes on
 * this thread from now on fail, once; n < 0 turns it off.  libyaml's own
 * allocations are not counted. */
void pp__config_fault_alloc(long n);
#endif

#endif
