/* config.c -- owns the key table (names, types, bounds, defaults, docs)
 * and the config value's life: new, copy, free, set, get, overrides, the
 * environment, validation, diagnostics.  YAML and key suggestions are in
 * parse.c, text to field in values.c, field to text in render.c. */
#include "config.h"
#include "keys.h"
#include "uid.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* ------------------------------------------------------------ the table */

/* The C type of a field, so the table cannot disagree with config.h. */
/* clang-format off */
#define PP__CTYPE(f)                                                          \
  _Generic(((pp_config_t *)0)->f, uint64_t: PP__C_U64,                        \
           uint32_t: PP__C_U32, default: PP__C_INT)
/* clang-format on */
#define KEY(n, t, f)                                                           \
  .name = n, .type = PP__T_##t, .off = offsetof(pp_config_t, f),               \
  .ctype = PP__CTYPE(f)
#define AT2(f) .off2 = offsetof(pp_config_t, f)

/* Durations stop at 100 years, far past any timer, so sums never wrap. */
#define DUR_MAX INT64_C(3153600000000)
#define KiB INT64_C(1024)

/* Enum fields are stored through int. */
_Static_assert(sizeof(pp__pick_t) == sizeof(int), "enum is not an int");
_Static_assert(sizeof(pp__death_t) == sizeof(int), "enum is not an int");
_Static_assert(sizeof(pp__start_t) == sizeof(int), "enum is not an int");

static const char *const adapters[] = {"python", "mock", NULL};
static const char *const strategies[] = {"lifo", "fifo", NULL};
static const char *const deaths[] = {"finish", "cancel", "kill", NULL};
static const char *const starts[] = {"spawn", "zygote", NULL};
static const char *const no_yes[] = {"false", "true", NULL};
static const char *const no_items[] = {NULL};

/* Found at run time in pp__python_dir() (paths.c). */
static const char *const default_command[] = {"python3", "portpool_worker.py",
                                              "example_handlers.py", NULL};
static const char *const default_env[] = {
    "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1", NULL};

/* One row per key, in the order listings show them.  Defaults are text
 * and go through the same parser as user input. */
/* clang-format off */
const pp__key_t pp__keys[PP__NKEYS] = {
  {KEY("name", STRING, name), .def = "portpool",
   .doc = "pool name, shown in status and logs"},
  {KEY("size", SIZE, size), AT2(size_auto), .min = 1, .max = 4096,
   .def = "auto",
   .doc = "number of workers, auto for one per CPU it may use (affinity "
          "mask and cgroup CPU quota), or {min: N, max: M} for an elastic "
          "pool"},
  {KEY("min_ready", INT, min_ready), .min = 0, .max = 4096, .def = "0",
   .doc = "idle workers needed before the pool is ready; 0 = size"},
  /* Elastic pools (scale.c). */
  {KEY("scale.up_after", DURATION, scale_up_after_ms), .max = DUR_MAX,
   .def = "5ms",
   .doc = "an elastic pool grows once a checkout has waited this long"},
  {KEY("scale.max_starting", INT, scale_max_starting), .min = 1,
   .max = 4096, .def = "4",
   .doc = "workers an elastic pool starts at once, at most"},
  {KEY("scale.idle_timeout", DURATION, scale_idle_timeout_ms),
   .min = 1, .max = DUR_MAX, .def = "30s",
   .doc = "an elastic pool stops a worker above min idle this long"},
  {KEY("adapter", ENUM, adapter), .flags = PP__F_STRVAL, .choices = adapters,
   .def = "python",
   .doc = "how workers are made: python processes or an in-process mock"},

  {KEY("worker.command", LIST, command), AT2(command_len),
   .flags = PP__F_PYDIR, .def_items = default_command,
   .doc = "a worker's argv: [python3, worker.py, handlers.py]"},
  {KEY("worker.env", ENV, env), AT2(env_len), .def_items = default_env,
   .doc = "environment added for workers, NAME: value; null drops a name"},
  {KEY("worker.startup_timeout", DURATION, startup_timeout_ms),
   .max = DUR_MAX, .def = "10s", .doc = "time a worker has to say HELLO"},
  {KEY("worker.request_timeout", DURATION, request_timeout_ms),
   .max = DUR_MAX, .def = "30s", .doc = "time a request may run; 0 = none"},
  {KEY("worker.slow_request", DURATION, slow_request_ms), .max = DUR_MAX,
   .def = "0",
   .doc = "log a request's Python stack once it runs this long; 0 = off"},
  {KEY("worker.max_requests", INT, max_requests), .min = 0,
   .max = INT64_MAX, .def = "0",
   .doc = "recycle a worker after this many requests; 0 = never"},
  {KEY("worker.max_rss", MEMORY, max_rss), .min = 0, .max = INT64_MAX,
   .def = "0", .doc = "recycle a worker above this resident memory; 0 = never"},
  {KEY("worker.max_age", DURATION, max_age_ms), .max = DUR_MAX, .def = "0",
   .doc = "recycle a worker this long after it started; 0 = never"},
  {KEY("worker.max_recycling", INT, max_recycling), .min = 1, .max = 4096,
   .def = "1", .doc = "workers being recycled at the same time, at most"},
  {KEY("worker.max_frame", MEMORY, max_frame), .min = KiB,
   .max = KiB * KiB * KiB, .def = "64MiB",
   .doc = "largest frame a worker may send or be sent"},
  {KEY("worker.heartbeat", DURATION, heartbeat_ms), .max = DUR_MAX,
   .def = "0", .doc = "ping idle workers this often; 0 = off"},
  {KEY("worker.heartbeat_misses", INT, heartbeat_misses), .min = 1,
   .max = 1000, .def = "3",
   .doc = "unanswered pings before a worker is killed"},
  {KEY("worker.kill_grace", DURATION, kill_grace_ms), .max = DUR_MAX,
   .def = "2s", .doc = "time between SIGTERM and SIGKILL"},
  {KEY("worker.drain_timeout", DURATION, drain_timeout_ms), .max = DUR_MAX,
   .def = "5s",
   .doc = "time in-flight requests get to finish when the pool stops"},
  {KEY("worker.cancel_grace", DURATION, cancel_grace_ms), .max = DUR_MAX,
   .def = "1s",
   .doc = "time a cancelled request (pp_cancel, or on_client_death: "
          "cancel) gets before its worker is killed"},
  {KEY("worker.pipeline_depth", INT, pipeline_depth), .min = 1, .max = 1024,
   .def = "1", .doc = "requests in flight per worker"},
  {KEY("worker.concurrency", INT, concurrency), .min = 1, .max = 1024,
   .def = "1",
   .doc = "requests one worker runs at once, answered out of order: async "
          "handlers on its asyncio loop, plain ones in a thread pool of "
          "that size"},
  {KEY("worker.reply_spin_us", INT, reply_spin_us), .min = 0, .max = 1000,
   .def = "50",
   .doc = "microseconds a blocking caller polls for a reply before it "
          "sleeps, at most; adapts to the replies' pace; 0 = never"},
  {KEY("worker.start", ENUM, start), .choices = starts, .def = "spawn",
   .doc = "spawn: one interpreter per worker; zygote: fork workers from one "
          "that imported the handlers once"},

  /* Per-worker limits (pool/worker/confine.c). */
  {KEY("worker.limits.nofile", INT, lim_nofile), .flags = PP__F_UNSET,
   .min = 16, .max = 1 << 20, .def = "",
   .doc = "open files a worker may have (RLIMIT_NOFILE); unset = ours"},
  {KEY("worker.limits.nproc", INT, lim_nproc), .flags = PP__F_UNSET,
   .min = 1, .max = 1 << 22, .def = "",
   .doc = "processes the worker's user may have (RLIMIT_NPROC; root "
          "ignores it); unset = ours"},
  {KEY("worker.limits.as", MEMORY, lim_as), .flags = PP__F_UNSET,
   .min = 16 * KiB * KiB, .max = INT64_MAX, .def = "",
   .doc = "address space of a worker (RLIMIT_AS): past it allocations fail "
          "with MemoryError; unset = ours"},
  {KEY("worker.limits.cpu", INT, lim_cpu), .flags = PP__F_UNSET, .min = 1,
   .max = INT32_MAX, .def = "",
   .doc = "CPU seconds a worker may use over its life (RLIMIT_CPU): past "
          "it the worker is killed and replaced; unset = ours"},
  {KEY("worker.limits.core", MEMORY, lim_core), .flags = PP__F_UNSET,
   .min = 0, .max = INT64_MAX, .def = "",
   .doc = "largest core dump of a worker (RLIMIT_CORE); 0 = none; unset = "
          "ours"},
  {KEY("worker.memory_max", MEMORY, memory_max), .min = 0, .max = INT64_MAX,
   .def = "0",
   .doc = "memory of a worker in its own cgroup v2 (memory.max; needs a "
          "delegated cgroup); 0 = none"},
  {KEY("worker.user", STRING, user), .flags = PP__F_NULLABLE,
   .doc = "user (name or uid) workers run as when the pool runs as root"},
  {KEY("worker.group", STRING, group), .flags = PP__F_NULLABLE,
   .doc = "group (name or gid) of workers; default worker.user's own"},
  {KEY("worker.allow_root", ENUM, allow_root), .choices = no_yes,
   .def = "false",
   .doc = "true: workers may run as root (a pool run as root without "
          "worker.user)"},

  {KEY("checkout.timeout", DURATION, checkout_timeout_ms), .max = DUR_MAX,
   .def = "5s", .doc = "time a checkout waits for a worker"},
  {KEY("checkout.strategy", ENUM, strategy), .choices = strategies,
   .def = "lifo",
   .doc = "which idle worker is lent: lifo keeps hot workers hot, or fifo"},
  {KEY("checkout.max_waiters", INT, max_waiters), .min = 0,
   .max = INT32_MAX, .def = "1024",
   .doc = "clients that may wait; past it checkout fails at once"},

  {KEY("restart.max_restarts", INT, max_restarts), .min = 0,
   .max = INT32_MAX, .def = "10",
   .doc = "restarts within restart.within before a slot gives up"},
  {KEY("restart.within", DURATION, within_ms), .max = DUR_MAX, .def = "60s",
   .doc = "the window restart.max_restarts counts in"},
  {KEY("restart.backoff", BACKOFF, backoff_min_ms), AT2(backoff_max_ms),
   .max = DUR_MAX, .def = "100ms 5s",
   .doc = "delay before a restart, [min, max], doubling with jitter"},
  {KEY("restart.retry_boot_failures", ENUM, retry_boot_failures),
   .choices = no_yes, .def = "false",
   .doc = "true: a worker that fails to boot before the pool was ever "
          "ready is restarted; false: the start fails at once"},

  {KEY("on_client_death", ENUM, on_client_death), .choices = deaths,
   .def = "finish",
   .doc = "a dead client's request in flight: finish, cancel or kill"},

  {KEY("control.socket", STRING, socket), .flags = PP__F_NULLABLE,
   .doc = "Unix socket for poolctl; none when empty"},
  {KEY("control.mode", MODE, socket_mode), .min = 0, .max = 0777,
   .def = "0600", .doc = "file mode of the control socket"},
  {KEY("control.allow_uids", LIST, allow_uids), AT2(allow_uids_len),
   .def_items = no_items,
   .doc = "other uids (or user names) allowed on the control socket, "
          "besides our own"},
  {KEY("control.idle_timeout", DURATION, idle_timeout_ms), .max = DUR_MAX,
   .def = "10s",
   .doc = "close a control connection idle (or not reading) this long; "
          "0 = never"},

  {KEY("listen.address", STRING, listen), .flags = PP__F_NULLABLE,
   .doc = "HOST:PORT of poolctl serve's HTTP face (127.0.0.1:8080); none "
          "when empty"},
  {KEY("listen.token_file", STRING, token_file), .flags = PP__F_NULLABLE,
   .doc = "file holding the bearer token HTTP calls and /metrics need; "
          "required to listen beyond loopback (or listen.insecure)"},
  {KEY("listen.insecure", ENUM, listen_insecure), .choices = no_yes,
   .def = "false",
   .doc = "true: listen beyond loopback without a token"},
  {KEY("listen.tls.cert", STRING, tls_cert), .flags = PP__F_NULLABLE,
   .doc = "PEM certificate (chain) file: serve HTTPS"},
  {KEY("listen.tls.key", STRING, tls_key), .flags = PP__F_NULLABLE,
   .doc = "PEM private key file of listen.tls.cert"},
  {KEY("listen.agent", INT, agent_port), .min = 0, .max = 65535, .def = "0",
   .doc = "TCP port of the HAProxy agent-check responder, on the listen "
          "host; 0 = none"},
  {KEY("listen.max_connections", INT, listen_max_conns), .min = 1,
   .max = 65536, .def = "256", .doc = "HTTP connections open at once"},
  {KEY("listen.timeout", DURATION, listen_timeout_ms), .max = DUR_MAX,
   .def = "30s",
   .doc = "close an HTTP connection idle this long, or slower to send its "
          "request (headers and body); 0 = never"},
  {KEY("listen.keepalive_requests", INT, keepalive_requests), .min = 0,
   .max = INT32_MAX, .def = "1000",
   .doc = "requests on one HTTP connection before it is closed; 0 = no "
          "limit"},
};
/* clang-format on */

const pp__key_t *pp__key_find(const char *name, size_t len) {
  for (int i = 0; i < PP__NKEYS; i++)
    if (strlen(pp__keys[i].name) == len &&
        memcmp(pp__keys[i].name, name, len) == 0)
      return &pp__keys[i];
  return NULL;
}

int pp__key_is_section(const char *name, size_t len) {
  for (int i = 0; i < PP__NKEYS; i++)
    if (strncmp(pp__keys[i].name, name, len) == 0 &&
        pp__keys[i].name[len] == '.')
      return 1;
  return 0;
}

const char *pp__config_key_name(int i) {
  return i >= 0 && i < PP__NKEYS ? pp__keys[i].name : NULL;
}

const char *pp__config_key_doc(int i) {
  return i >= 0 && i < PP__NKEYS ? pp__keys[i].doc : NULL;
}

/* ------------------------------------------------------- allocation */

#ifdef PP_FAULTS
/* Test builds only: a per-thread countdown to one failing allocation. */
static _Thread_local long fault_countdown = -1;

void pp__config_fault_alloc(long n) { fault_countdown = n; }

static int fault_hit(void) {
  if (fault_countdown < 0)
    return 0;
  return fault_countdown-- == 0;
}
#else
#define fault_hit() 0
#endif

void *pp__cfg_malloc(size_t n) { return fault_hit() ? NULL : malloc(n); }

void *pp__cfg_realloc(void *p, size_t n) {
  return fault_hit() ? NULL : realloc(p, n);
}

char *pp__cfg_strndup(const char *s, size_t n) {
  char *d = pp__cfg_malloc(n + 1);
  if (d != NULL) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

void pp__strv_free(char **v) {
  if (v == NULL)
    return;
  for (char **p = v; *p != NULL; p++)
    free(*p);
  free(v);
}

/* ------------------------------------------------------- diagnostics */

int pp__diag_at(pp_diag_t *diag, const yaml_node_t *node, const char *fmt,
                ...) {
  va_list ap;

  if (diag == NULL)
    return PP_ECONFIG;
  va_start(ap, fmt);
  vsnprintf(diag->message, sizeof(diag->message), fmt, ap);
  va_end(ap);
  diag->line = node ? (int)node->start_mark.line + 1 : 0;
  diag->column = node ? (int)node->start_mark.column + 1 : 0;
  return PP_ECONFIG;
}

void pp__diag_copy(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap)
    n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

void pp__diag_reset(pp_diag_t *diag, const char *file, const char *key) {
  if (diag == NULL)
    return;
  memset(diag, 0, sizeof(*diag));
  pp__diag_copy(diag->file, sizeof(diag->file), file ? file : "");
  pp__diag_copy(diag->key, sizeof(diag->key), key ? key : "");
}

/* ------------------------------------------------------- the value */

static int owns_string(const pp__key_t *k) {
  return k->type == PP__T_STRING ||
         (k->type == PP__T_ENUM && (k->flags & PP__F_STRVAL));
}

static int owns_strv(const pp__key_t *k) {
  return k->type == PP__T_LIST || k->type == PP__T_ENV;
}

static void value_free(pp_config_t *cfg, const pp__key_t *k) {
  if (owns_string(k)) {
    free(*FIELD(cfg, k->off, char *));
    *FIELD(cfg, k->off, char *) = NULL;
  } else if (owns_strv(k)) {
    pp__strv_free(*FIELD(cfg, k->off, char **));
    *FIELD(cfg, k->off, char **) = NULL;
    *FIELD(cfg, k->off2, int) = 0;
  }
}

static void value_forget(pp_config_t *cfg, const pp__key_t *k) {
  if (owns_string(k))
    *FIELD(cfg, k->off, char *) = NULL;
  else if (owns_strv(k))
    *FIELD(cfg, k->off, char **) = NULL;
}

/* A copy of a NULL-terminated string vector, and its length. */
static int strv_dup(const char *const *src, char ***out, size_t *len) {
  size_t n = 0;
  char **d;

  while (src[n] != NULL)
    n++;
  d = pp__cfg_malloc((n + 1) * sizeof(*d));
  if (d == NULL)
    return UV_ENOMEM;
  d[0] = NULL;
  for (size_t i = 0; i < n; i++) {
    d[i] = pp__cfg_strndup(src[i], strlen(src[i]));
    if (d[i] == NULL) {
      pp__strv_free(d);
      return UV_ENOMEM;
    }
    d[i + 1] = NULL;
  }
  *out = d;
  *len = n;
  return 0;
}

static int value_copy(pp_config_t *dst, const pp_config_t *src,
                      const pp__key_t *k) {
  if (owns_string(k)) {
    const char *s = *CFIELD(src, k->off, char *);
    if (s != NULL) {
      char *d = pp__cfg_strndup(s, strlen(s));
      if (d == NULL)
        return UV_ENOMEM;
      *FIELD(dst, k->off, char *) = d;
    }
  } else if (owns_strv(k)) {
    char **const *s = CFIELD(src, k->off, char **);
    char **d;
    size_t n;
    if (*s == NULL)
      return 0;
    if (strv_dup((const char *const *)*s, &d, &n) != 0)
      return UV_ENOMEM;
    *FIELD(dst, k->off, char **) = d;
    *FIELD(dst, k->off2, int) = (int)n;
  }
  return 0;
}

/* The text of a value as given to pp_config_set: flow collections and
 * quoted scalars are read as YAML, anything else is taken as it is. */
static int set_text(pp_config_t *cfg, const pp__key_t *k, const char *value,
                    pp_diag_t *diag) {
  yaml_document_t doc;
  yaml_node_t *root, lone;
  int rc;

  if (value[0] != '\0' && strchr("[{\"'", value[0]) != NULL) {
    rc = pp__yaml_value(value, strlen(value), &doc, &root, diag);
    if (rc != 0)
      return rc;
    if (root != NULL)
      rc = pp__value_set(cfg, k, &doc, root, diag);
    else
      rc = pp__diag_at(diag, NULL, "expected a value");
    yaml_document_delete(&doc);
    return rc;
  }
  memset(&lone, 0, sizeof(lone));
  lone.type = YAML_SCALAR_NODE;
  lone.data.scalar.value = (yaml_char_t *)(uintptr_t)value;
  lone.data.scalar.length = strlen(value);
  lone.data.scalar.style = YAML_PLAIN_SCALAR_STYLE;
  return pp__value_set(cfg, k, NULL, &lone, diag);
}

/* Key k's default list, with PP__F_PYDIR file names made paths. */
static int default_items(const pp__key_t *k, char ***out, size_t *n) {
  char dir[PATH_MAX], *p;
  char **v;

  if (strv_dup(k->def_items, &v, n) != 0)
    return UV_ENOMEM;
  if (k->flags & PP__F_PYDIR) {
    pp__python_dir(dir, sizeof(dir));
    for (size_t i = 1; i < *n; i++) {
      if (pp__path_rebase(dir, v[i], &p) != 0) {
        pp__strv_free(v);
        return UV_ENOMEM;
      }
      free(v[i]);
      v[i] = p;
    }
  }
  *out = v;
  return 0;
}

static int value_default(pp_config_t *cfg, const pp__key_t *k) {
  if (k->def_items != NULL) {
    char **v;
    size_t n;
    if (default_items(k, &v, &n) != 0)
      return UV_ENOMEM;
    value_free(cfg, k);
    *FIELD(cfg, k->off, char **) = v;
    *FIELD(cfg, k->off2, int) = (int)n;
    return 0;
  }
  if (k->def == NULL)
    return 0;
  /* The table's defaults go through the same parser as user text. */
  int rc = set_text(cfg, k, k->def, NULL);
  assert(rc != PP_ECONFIG && "a default in the key table does not parse");
  return rc;
}

void pp_config_free(pp_config_t *cfg) {
  if (cfg == NULL)
    return;
  for (int i = 0; i < PP__NKEYS; i++)
    value_free(cfg, &pp__keys[i]);
  free(cfg);
}

static pp_config_t *config_alloc(void) {
  pp_config_t *cfg = pp__cfg_malloc(sizeof(*cfg));
  if (cfg != NULL)
    memset(cfg, 0, sizeof(*cfg));
  return cfg;
}

int pp_config_new(pp_config_t **out) {
  pp_config_t *cfg;
  int rc;

  assert(out != NULL);
  *out = NULL;
  cfg = config_alloc();
  if (cfg == NULL)
    return UV_ENOMEM;
  for (int i = 0; i < PP__NKEYS; i++) {
    rc = value_default(cfg, &pp__keys[i]);
    if (rc != 0)
      goto fail;
  }
  *out = cfg;
  return 0;

fail:
  pp_config_free(cfg);
  return rc;
}

int pp_config_copy(const pp_config_t *cfg, pp_config_t **out) {
  pp_config_t *copy;
  int rc = 0;

  assert(cfg != NULL && out != NULL);
  *out = NULL;
  copy = config_alloc();
  if (copy == NULL)
    return UV_ENOMEM;
  *copy = *cfg;
  /* Forget the pointers shared with cfg first, so a failure part way
   * frees only what the copy owns. */
  for (int i = 0; i < PP__NKEYS; i++)
    value_forget(copy, &pp__keys[i]);
  for (int i = 0; i < PP__NKEYS && rc == 0; i++)
    rc = value_copy(copy, cfg, &pp__keys[i]);
  if (rc != 0) {
    pp_config_free(copy);
    return rc;
  }
  *out = copy;
  return 0;
}

/* ------------------------------------------------------- set and get */

static int unknown_key(const char *key, pp_diag_t *diag) {
  char near[64];

  if (pp__key_suggest(key, near, sizeof(near)))
    return pp__diag_at(diag, NULL, "unknown key; did you mean '%s'?", near);
  return pp__diag_at(diag, NULL, "unknown key");
}

int pp_config_set(pp_config_t *cfg, const char *key, const char *value,
                  pp_diag_t *diag) {
  const pp__key_t *k;
  int rc;

  assert(cfg != NULL && key != NULL && value != NULL);
  k = pp__key_find(key, strlen(key));
  if (k == NULL) {
    pp__diag_reset(diag, NULL, key);
    return unknown_key(key, diag);
  }
  rc = set_text(cfg, k, value, diag);
  if (rc == PP_ECONFIG && diag != NULL) {
    /* Positions inside a one-line value mean nothing to a reader. */
    char msg[sizeof(diag->message)];
    memcpy(msg, diag->message, sizeof(msg));
    pp__diag_reset(diag, NULL, k->name);
    memcpy(diag->message, msg, sizeof(msg));
  }
  return rc;
}

static int is_space(char c) { return c == ' ' || c == '\t'; }

int pp_config_override(pp_config_t *cfg, const char *assignment,
                       pp_diag_t *diag) {
  char key[128];
  const char *eq, *v;
  size_t klen;

  assert(cfg != NULL && assignment != NULL);
  eq = strchr(assignment, '=');
  if (eq == NULL) {
    pp__diag_reset(diag, NULL, NULL);
    return pp__diag_at(diag, NULL, "expected key=value, got \"%.200s\"",
                       assignment);
  }
  while (is_space(*assignment))
    assignment++;
  klen = (size_t)(eq - assignment);
  while (klen > 0 && is_space(assignment[klen - 1]))
    klen--;
  if (klen == 0 || klen >= sizeof(key)) {
    pp__diag_reset(diag, NULL, NULL);
    return pp__diag_at(diag, NULL, "expected key=value, got \"%.200s\"",
                       assignment);
  }
  memcpy(key, assignment, klen);
  key[klen] = '\0';
  v = eq + 1;
  while (is_space(*v))
    v++;
  return pp_config_set(cfg, key, v, diag);
}

int pp_config_apply_env(pp_config_t *cfg, const char *prefix, pp_diag_t *diag) {
  pp_config_t *work = NULL, tmp;
  char var[192];
  int rc;

  assert(cfg != NULL && prefix != NULL && strlen(prefix) < 128);
  /* Work on a copy so a bad variable leaves cfg as it was. */
  rc = pp_config_copy(cfg, &work);
  if (rc != 0)
    return rc;
  for (int i = 0; i < PP__NKEYS; i++) {
    const char *name = pp__keys[i].name, *value;
    size_t n = (size_t)snprintf(var, sizeof(var), "%s%s", prefix,
                                prefix[0] != '\0' ? "_" : "");
    for (; *name != '\0' && n + 1 < sizeof(var); name++)
      var[n++] = *name == '.' ? '_' : (char)toupper((unsigned char)*name);
    var[n] = '\0';
    value = getenv(var);
    if (value == NULL)
      continue;
    rc = pp_config_set(work, pp__keys[i].name, value, diag);
    if (rc != 0) {
      if (rc == PP_ECONFIG && diag != NULL)
        pp__diag_copy(diag->file, sizeof(diag->file), var);
      goto done;
    }
  }
  /* Keep the new value; the old one goes with work. */
  tmp = *cfg;
  *cfg = *work;
  *work = tmp;

done:
  pp_config_free(work);
  return rc;
}

int pp_config_get(const pp_config_t *cfg, const char *key, char *buf,
                  size_t len) {
  const pp__key_t *k;

  assert(cfg != NULL && key != NULL && buf != NULL);
  k = pp__key_find(key, strlen(key));
  if (k == NULL)
    return PP_ECONFIG;
  return pp__value_render(cfg, k, buf, len);
}

/* ------------------------------------------------------- validation */

static const pp__key_t *key_named(const char *name) {
  const pp__key_t *k = pp__key_find(name, strlen(name));
  assert(k != NULL);
  return k;
}

static int fail_key(pp_diag_t *diag, const char *key) {
  if (diag != NULL)
    pp__diag_copy(diag->key, sizeof(diag->key), key);
  return PP_ECONFIG;
}

int pp__listen_parse(const char *addr, char *host, size_t hostlen, int *port) {
  const char *colon = addr ? strrchr(addr, ':') : NULL;
  const char *h = addr;
  size_t n;
  char *end;
  long p;

  if (colon == NULL || colon[1] == '\0')
    return -1;
  n = (size_t)(colon - addr);
  /* [::1]:8080 */
  if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
    h = addr + 1;
    n -= 2;
  }
  if (n == 0 || n >= hostlen)
    return -1;
  memcpy(host, h, n);
  host[n] = '\0';
  errno = 0;
  p = strtol(colon + 1, &end, 10);
  if (errno || *end || p < 0 || p > 65535)
    return -1;
  *port = (int)p;
  return 0;
}

int pp__listen_loopback(const char *host) {
  return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
         strcmp(host, "localhost") == 0;
}

/* The HTTP face's settings hold together: an address that parses, a token
 * or an explicit insecure beyond loopback, a TLS key with its cert. */
static int listen_check(const pp_config_t *cfg, pp_diag_t *diag) {
  char host[256];
  int port;

  if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
    pp__diag_at(diag, NULL,
                "listen.tls.cert and listen.tls.key go together: give both "
                "for HTTPS, or neither");
    return fail_key(diag, cfg->tls_cert ? "listen.tls.key" : "listen.tls.cert");
  }
  if (cfg->listen == NULL || cfg->listen[0] == '\0')
    return 0;
  if (pp__listen_parse(cfg->listen, host, sizeof(host), &port) != 0) {
    pp__diag_at(diag, NULL,
                "expected HOST:PORT (127.0.0.1:8080, [::1]:8080), got '%.100s'",
                cfg->listen);
    return fail_key(diag, "listen.address");
  }
  if (!pp__listen_loopback(host) && cfg->token_file == NULL &&
      !cfg->listen_insecure) {
    pp__diag_at(diag, NULL,
                "%.100s is not a loopback address: anyone who can reach it "
                "could run handlers; set listen.token_file (a bearer token "
                "clients must send) or, behind a trusted network only, "
                "listen.insecure: true",
                host);
    return fail_key(diag, "listen.address");
  }
  return 0;
}

/* worker.user and worker.group name a user and a group that exist, and a
 * user with no passwd entry comes with a group.  Whether the pool may use
 * them (it runs as root) is checked when it opens (pool/worker/confine.c). */
static int worker_check(const pp_config_t *cfg, pp_diag_t *diag) {
  uint32_t uid, gid = UINT32_MAX, pgid = UINT32_MAX;
  char why[256];

  if (cfg->user != NULL && cfg->user[0] != '\0' &&
      pp__user_parse(cfg->user, &uid, &pgid, why, sizeof(why)) != 0) {
    pp__diag_at(diag, NULL, "%s", why);
    return fail_key(diag, "worker.user");
  }
  if (cfg->group != NULL && cfg->group[0] != '\0') {
    if (pp__gid_parse(cfg->group, &gid, why, sizeof(why)) != 0) {
      pp__diag_at(diag, NULL, "%s", why);
      return fail_key(diag, "worker.group");
    }
  } else if (cfg->user != NULL && cfg->user[0] != '\0' && pgid == UINT32_MAX) {
    pp__diag_at(diag, NULL,
                "uid %.32s has no entry in the user database, so no primary "
                "group: set worker.group too",
                cfg->user);
    return fail_key(diag, "worker.group");
  }
  if ((cfg->group != NULL && cfg->group[0] != '\0') &&
      (cfg->user == NULL || cfg->user[0] == '\0')) {
    pp__diag_at(diag, NULL,
                "worker.group needs worker.user: name the user workers run "
                "as too");
    return fail_key(diag, "worker.group");
  }
  /* The pool sets these itself (PORTPOOL_LIMITS, PORTPOOL_HOLD, ...), and
   * a worker's bootstrap takes the first of two copies: one given here
   * would silently override worker.limits.* and the cgroup hold. */
  for (int i = 0; i < cfg->env_len; i++)
    if (strncmp(cfg->env[i], "PORTPOOL_", 9) == 0) {
      pp__diag_at(diag, NULL,
                  "%.*s is the pool's own variable, set for each worker: "
                  "leave it out of worker.env (worker.limits.* and "
                  "worker.memory_max set PORTPOOL_LIMITS and PORTPOOL_HOLD)",
                  (int)strcspn(cfg->env[i], "="), cfg->env[i]);
      return fail_key(diag, "worker.env");
    }
  if (cfg->memory_max != 0 && cfg->memory_max < 4 * KiB * KiB) {
    pp__diag_at(diag, NULL,
                "expected 0 (none) or at least 4MiB, got %llu bytes: a "
                "Python worker cannot start in less",
                (unsigned long long)cfg->memory_max);
    return fail_key(diag, "worker.memory_max");
  }
  return 0;
}

int pp__config_check(const pp_config_t *cfg, pp_diag_t *diag) {
  const size_t sun_path = sizeof(((struct sockaddr_un *)0)->sun_path);
  char a[32], why[256];
  uint32_t uid;

  for (int i = 0; i < PP__NKEYS; i++)
    if (pp__value_check(cfg, &pp__keys[i], diag) != 0)
      return fail_key(diag, pp__keys[i].name);
  if (cfg->min_ready > cfg->size) {
    pp__diag_at(diag, NULL, "expected at most size%s (%d), got %d",
                cfg->elastic ? "'s min" : "", cfg->size, cfg->min_ready);
    return fail_key(diag, "min_ready");
  }
  if (cfg->elastic && (cfg->size_max < cfg->size || cfg->size_max > 4096)) {
    pp__diag_at(diag, NULL,
                "expected {min: N, max: M} with min <= max <= "
                "4096, got {min: %d, max: %d}",
                cfg->size, cfg->size_max);
    return fail_key(diag, "size");
  }
  if (strcmp(cfg->adapter, "python") == 0 &&
      (cfg->command_len < 1 || cfg->command == NULL ||
       cfg->command[0] == NULL || cfg->command[0][0] == '\0')) {
    pp__diag_at(diag, NULL,
                "the python adapter needs a command, like "
                "[python3, worker.py, handlers.py]");
    return fail_key(diag, "worker.command");
  }
  if (cfg->backoff_min_ms > cfg->backoff_max_ms) {
    const pp__key_t *k = key_named("restart.backoff");
    pp__value_render(cfg, k, a, sizeof(a));
    pp__diag_at(diag, NULL, "expected [min, max] with min <= max, got %s", a);
    return fail_key(diag, k->name);
  }
  if (cfg->socket != NULL && strlen(cfg->socket) >= sun_path) {
    pp__diag_at(diag, NULL,
                "expected a socket path shorter than %zu bytes, got %zu bytes",
                sun_path, strlen(cfg->socket));
    return fail_key(diag, "control.socket");
  }
  for (int i = 0; i < cfg->allow_uids_len; i++)
    if (pp__uid_parse(cfg->allow_uids[i], &uid, why, sizeof(why)) != 0) {
      pp__diag_at(diag, NULL, "%s", why);
      return fail_key(diag, "control.allow_uids");
    }
  if (worker_check(cfg, diag) != 0)
    return PP_ECONFIG;
  return listen_check(cfg, diag);
}

int pp_config_validate(const pp_config_t *cfg, pp_diag_t *diag) {
  assert(cfg != NULL);
  pp__diag_reset(diag, NULL, NULL);
  return pp__config_check(cfg, diag);
}

int pp_config_derive(const pp_config_t *base, const char *const *overrides,
                     size_t n, pp_config_t **out, pp_diag_t *diag) {
  pp_config_t *cfg;
  size_t i;
  int r;

  *out = NULL;
  if ((r = pp_config_copy(base, &cfg)) != 0)
    return r;
  for (i = 0; i < n; i++) {
    if ((r = pp_config_override(cfg, overrides[i], diag)) != 0) {
      pp_config_free(cfg);
      return r;
    }
  }
  *out = cfg;
  return 0;
}
