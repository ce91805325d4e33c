/* python.c -- owns the python adapter: resolving the interpreter once per
 * pool, the worker's environment, and spawning it with the protocol on
 * fds 3 and 4 and stdout/stderr on pipes the pool logs. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal) {
  pp__proc_exited(p->data, status, term_signal);
}

/* The variables pp__build_env sets itself, last in the array. */
#define PP__OWN_ENV 7

char **pp__build_env(pp__slot_t *slot) {
  pp_config_t *cfg = slot->pool->cfg;
  size_t n = 0, i, k, j;
  char **env;
  char buf[PP__OWN_ENV][192];

  while (environ[n])
    n++;
  env = calloc(n + (size_t)cfg->env_len + PP__OWN_ENV + 1, sizeof(*env));
  if (env == NULL)
    return NULL;
  snprintf(buf[0], sizeof(buf[0]), "PORTPOOL_PARENT_PID=%d", (int)getpid());
  snprintf(buf[1], sizeof(buf[1]), "PORTPOOL_WORKER_ID=%d", slot->id);
  snprintf(buf[2], sizeof(buf[2]), "PORTPOOL_POOL=%.80s", cfg->name);
  snprintf(buf[3], sizeof(buf[3]), "PORTPOOL_MAX_FRAME=%u", cfg->max_frame);
  snprintf(buf[4], sizeof(buf[4]), "PORTPOOL_CONCURRENCY=%d", cfg->concurrency);
  /* worker.limits.*, and whether it waits to be put in its cgroup. */
  if (pp__confine_limits_env(cfg, buf[5], sizeof(buf[5])) != 0)
    return NULL;
  snprintf(buf[6], sizeof(buf[6]), "PORTPOOL_HOLD=%d",
           pp__confine_holds(slot->pool));
  k = 0;
  /* Inherited variables, less those the config or we set. */
  for (i = 0; i < n; i++) {
    const char *eq = strchr(environ[i], '=');
    size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
    int skip = strncmp(environ[i], "PORTPOOL_", 9) == 0;
    for (j = 0; !skip && j < (size_t)cfg->env_len; j++)
      skip = strncmp(cfg->env[j], environ[i], klen) == 0 &&
             cfg->env[j][klen] == '=';
    if (!skip)
      env[k++] = environ[i];
  }
  for (j = 0; j < (size_t)cfg->env_len; j++)
    env[k++] = cfg->env[j];
  for (j = 0; j < PP__OWN_ENV; j++)
    env[k++] = strdup(buf[j]);
  for (j = 1; j <= PP__OWN_ENV; j++)
    if (env[k - j] == NULL) {
      for (j = 1; j <= PP__OWN_ENV; j++)
        free(env[k - j]);
      free(env);
      return NULL;
    }
  return env;
}

void pp__free_env(char **env) {
  size_t n = 0;

  while (env[n])
    n++;
  /* The last PP__OWN_ENV entries are ours. */
  for (size_t j = 1; j <= PP__OWN_ENV; j++)
    free(env[n - j]);
  free(env);
}

int pp__proc_spawn(pp__slot_t *slot, uint32_t generation, pp__proc_t **out) {
  pp_pool_t *pool = slot->pool;
  pp_config_t *cfg = pool->cfg;
  uv_process_options_t opts;
  uv_stdio_container_t stdio[5];
  int child[2] = {-1, -1};
  char **env = NULL;
  char **args = NULL;
  pp__proc_t *proc;
  int r, i;

  if ((proc = pp__proc_new(slot, generation, PP__PROC_SPAWNED)) == NULL)
    return UV_ENOMEM;
  r = UV_ENOMEM;
  args = calloc((size_t)cfg->command_len + 1, sizeof(*args));
  env = pp__build_env(slot);
  if (args == NULL || env == NULL)
    goto fail;
  args[0] = pool->python;
  for (i = 1; i < cfg->command_len; i++)
    args[i] = cfg->command[i];
  if ((r = pp__proc_pipes(proc, child)) != 0)
    goto fail;
  pp__proc_output_init(proc);

  memset(&opts, 0, sizeof(opts));
  memset(stdio, 0, sizeof(stdio));
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&proc->out;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&proc->err;
  stdio[3].flags = UV_INHERIT_FD;
  stdio[3].data.fd = child[0];
  stdio[4].flags = UV_INHERIT_FD;
  stdio[4].data.fd = child[1];
  opts.file = pool->python;
  opts.args = args;
  opts.env = env;
  opts.stdio = stdio;
  opts.stdio_count = 5;
  /* Its own session and process group, so a stop reaches the handler's
   * own subprocesses too. */
  opts.flags = UV_PROCESS_DETACHED;
  pp__confine_spawn_opts(pool, &opts.flags, &opts.uid, &opts.gid);
  opts.exit_cb = on_exit_cb;
  proc->u.spawned.process.data = proc;
  proc->handles |= PP__H_PROCESS;
  proc->refs++;
  r = uv_spawn(pool->loop, &proc->u.spawned.process, &opts);
  close(child[0]);
  close(child[1]);
  if (r != 0) {
    snprintf(proc->detail, sizeof(proc->detail), "spawn %s: %s", pool->python,
             uv_strerror(r));
    goto fail;
  }
  pp__proc_started(proc, proc->u.spawned.process.pid);
  pp__proc_stat_open(proc);
  pp__confine_adopt(proc);
  free(args);
  pp__free_env(env);
  *out = proc;
  return 0;

fail:
  free(args);
  if (env)
    pp__free_env(env);
  pp__proc_abort(proc);
  return r;
}

/* ---- interpreter resolution */

static int find_in_path(const char *name, char *out, size_t len) {
  const char *path = getenv("PATH");
  const char *p, *end;

  if (path == NULL)
    path = "/usr/local/bin:/usr/bin:/bin";
  for (p = path; *p; p = *end ? end + 1 : end) {
    end = strchr(p, ':');
    if (end == NULL)
      end = p + strlen(p);
    snprintf(out, len, "%.*s/%s", (int)(end - p), p, name);
    if (access(out, X_OK) == 0)
      return 0;
  }
  return UV_ENOENT;
}

/* Run a script interpreter once to ask where the real binary is. */
static int ask_python(const char *shim, char *out, size_t len) {
  char *argv[] = {(char *)shim, "-c",
                  "import os,sys;print(os.path.realpath(sys.executable))",
                  NULL};
  posix_spawn_file_actions_t fa;
  int fds[2], status, r = UV_EINVAL;
  pid_t pid;
  ssize_t n;
  size_t got = 0;

  if (pipe2(fds, O_CLOEXEC) != 0)
    return uv_translate_sys_error(errno);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  if (posix_spawn(&pid, shim, &fa, NULL, argv, environ) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    close(fds[0]);
    close(fds[1]);
    return UV_ENOENT;
  }
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  while (got + 1 < len && (n = read(fds[0], out + got, len - got - 1)) != 0) {
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      break;
    got += (size_t)n;
  }
  close(fds[0]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  out[got] = '\0';
  while (got > 0 && (out[got - 1] == '\n' || out[got - 1] == '\r'))
    out[--got] = '\0';
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && got > 0 &&
      access(out, X_OK) == 0)
    r = 0;
  return r;
}

int pp__resolve_python(const char *cmd0, char **out, pp_diag_t *diag) {
  char found[PATH_MAX], real[PATH_MAX], magic[2];
  const char *base;
  int fd, r;

  if (strchr(cmd0, '/') == NULL) {
    if (find_in_path(cmd0, found, sizeof(found)) != 0) {
      pp__diag_set(diag, "worker.command: %s not found on PATH", cmd0);
      return PP_ECONFIG;
    }
  } else {
    snprintf(found, sizeof(found), "%s", cmd0);
  }
  if (realpath(found, real) == NULL || access(real, X_OK) != 0) {
    pp__diag_set(diag, "worker.command: %s is not an executable", found);
    return PP_ECONFIG;
  }
  base = strrchr(cmd0, '/');
  base = base ? base + 1 : cmd0;
  fd = open(real, O_RDONLY | O_CLOEXEC);
  r = fd >= 0 ? (int)read(fd, magic, 2) : -1;
  if (fd >= 0)
    close(fd);
  /* A script called python* is a shim (pyenv, asdf): exec'ing it would cost
   * every start ~75 ms, so ask it once for the binary it runs. */
  if (r == 2 && magic[0] == '#' && magic[1] == '!' &&
      strncmp(base, "python", 6) == 0) {
    if (ask_python(real, found, sizeof(found)) == 0)
      snprintf(real, sizeof(real), "%s", found);
  }
  *out = strdup(real);
  return *out ? 0 : UV_ENOMEM;
}

static int python_prepare(pp_pool_t *pool, pp_diag_t *diag) {
  int r = pp__confine_prepare(pool, diag);
  if (r != 0)
    return r;
  if ((r = pp__resolve_python(pool->cfg->command[0], &pool->python, diag)) != 0)
    return r;
  return pp__confine_reach_check(pool, diag);
}

const pp__adapter_t pp__adapter_python = {"python", python_prepare,
                                          pp__proc_spawn};
