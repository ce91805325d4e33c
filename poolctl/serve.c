/* serve.c -- `poolctl serve`: load the config (or the built-in default),
 * apply --set overrides, run the pool in the foreground on a libuv loop
 * with its control socket, print warm-up progress, stop gracefully on
 * SIGINT or SIGTERM, and reload on SIGHUP (the file read again, the same
 * overrides applied, the workers replaced one by one). */
#include "config.h"
#include "diag.h"
#include "http.h"
#include "keys.h"
#include "poolctl.h"

#include "portpool.h"

#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct serve {
  uv_loop_t loop;
  pp_pool_t *pool;
  uv_signal_t sigint, sigterm, sighup;
  /* What the config was built from, to build it again on SIGHUP. */
  const char *file;
  char **sets;
  int nsets;
  const pc_global_t *g;
  int signals_open;
  int stopping;
  int size;
  int hellos;
  int ready;
  int boot_failed; /* a worker failed to boot: exit PC_EXIT_BOOT */
  int failed;      /* out of memory after the start: exit PC_EXIT_ERROR */
  char socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
  pc_http_t *http;   /* --listen / listen.address, or NULL */
  pc_agent_t *agent; /* listen.agent, or NULL */
} serve_t;

/* One progress line on stdout, flushed: tests and scripts read it through
 * a pipe. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
}

/* Runs with the pool's lock held: print, never call into the pool. */
static void on_trace(pp_pool_t *pool, const pp_trace_event_t *ev, void *data) {
  serve_t *s = data;

  (void)pool;
  switch (ev->type) {
  case PP_TRACE_HELLO:
    if (!s->ready && s->hellos < s->size)
      say("warming %d/%d", ++s->hellos, s->size);
    break;
  case PP_TRACE_READY:
    s->ready = 1;
    say("ready: %d worker%s, socket %s", s->size, s->size == 1 ? "" : "s",
        s->socket);
    break;
  case PP_TRACE_FATAL:
    if (ev->code == PP_EBOOT)
      s->boot_failed = 1;
    break;
  case PP_TRACE_DEGRADED:
    if (s->boot_failed)
      break; /* said once, with the reason, by on_ready */
    pc_err("pool degraded: every worker slot gave up restarting; see the "
           "log above (still serving status)");
    break;
  case PP_TRACE_SCALE:
    if (ev->detail && strncmp(ev->detail, "growth stopped", 14) == 0)
      say("%s", ev->detail);
    else
      say("scaling to %d workers%s%s%s", ev->code, ev->detail ? " (" : "",
          ev->detail ? ev->detail : "", ev->detail ? ")" : "");
    break;
  case PP_TRACE_DRAIN:
    say("%s", ev->code ? "serving again" : "draining");
    break;
  case PP_TRACE_RELOAD:
    say("reloaded");
    break;
  default:
    break;
  }
}

/* How many workers pool has (status' size).  Returns 0 or UV_ENOMEM. */
static int pool_size(pp_pool_t *pool, int *size) {
  pp_status_t st;
  int r;

  if ((r = pp_pool_status(pool, &st)) != 0)
    return r;
  *size = st.size;
  pp_status_free(&st);
  return 0;
}

static void on_pool_closed(pp_pool_t *pool, void *data) {
  serve_t *s = data;

  (void)pool;
  s->pool = NULL;
  /* Every call had its answer: the HTTP face closes what is left. */
  pc_http_close(s->http);
  pc_agent_close(s->agent);
  s->http = NULL;
  s->agent = NULL;
  if (s->signals_open) {
    s->signals_open = 0;
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sighup, NULL);
  }
}

static void stop_serving(serve_t *s, const char *why) {
  if (s->stopping)
    return;
  s->stopping = 1;
  say("stopping (%s)", why);
  pc_http_quiesce(s->http);
  pp_pool_stop(s->pool, on_pool_closed, s);
}

/* A worker that fails to boot before the pool was ever ready ends serve
 * at once, as gunicorn's "Worker failed to boot": its traceback is in the
 * log above (once), the reason here. */
static void on_ready(pp_pool_t *pool, int status, void *data) {
  serve_t *s = data;
  pp_diag_t d;

  if (status != PP_EBOOT)
    return;
  memset(&d, 0, sizeof(d));
  pp_pool_ready_diag(pool, &d);
  s->boot_failed = 1;
  pc_err("%s", d.message);
  stop_serving(s, "a worker failed to boot");
}

static void on_signal(uv_signal_t *h, int signum) {
  stop_serving(h->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* A YAML double-quoted scalar, so that any path survives pp_config_set. */
static int yaml_quote(const char *in, char *out, size_t len) {
  size_t n = 0;

  if (len < 3)
    return -1;
  out[n++] = '"';
  for (; *in; in++) {
    if (n + 3 >= len)
      return -1;
    if (*in == '"' || *in == '\\')
      out[n++] = '\\';
    out[n++] = *in;
  }
  out[n++] = '"';
  out[n] = '\0';
  return 0;
}

/* The value of a string key as text.  pp_config_get gives its YAML form:
 * a string in double quotes, with escapes, when it needs them (a path
 * with a space or a colon, the name "null").  Returns 0, or -1 when the
 * text does not fit in len. */
static int config_string(const pp_config_t *cfg, const char *key, char *out,
                         size_t len) {
  char yaml[1024], hex[5];
  const char *p = yaml + 1;
  unsigned long c;
  size_t n = 0, digits, need;
  int esc;

  if (pp_config_get(cfg, key, yaml, sizeof(yaml)) != 0)
    return -1;
  if (yaml[0] != '"')
    return snprintf(out, len, "%s", yaml) < (int)len ? 0 : -1;
  for (; *p != '\0' && *p != '"'; p++) {
    c = (unsigned char)*p;
    esc = c == '\\';
    if (esc && *++p == '\0')
      return -1;
    if (esc) {
      switch (*p) {
      case 'n':
        c = '\n';
        break;
      case 't':
        c = '\t';
        break;
      case 'L':
        c = 0x2028;
        break;
      case 'P':
        c = 0x2029;
        break;
      case 'x':
      case 'u':
        digits = *p == 'x' ? 2 : 4;
        if (strlen(p + 1) < digits)
          return -1;
        memcpy(hex, p + 1, digits);
        hex[digits] = '\0';
        c = strtoul(hex, NULL, 16);
        p += digits;
        break;
      default: /* \" and \\ */
        c = (unsigned char)*p;
        break;
      }
    }
    /* An escape is a code point, in UTF-8; any other byte is itself. */
    need = !esc || c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
    if (n + need >= len)
      return -1;
    if (need == 1) {
      out[n++] = (char)c;
    } else if (need == 2) {
      out[n++] = (char)(0xc0 | c >> 6);
      out[n++] = (char)(0x80 | (c & 0x3f));
    } else {
      out[n++] = (char)(0xe0 | c >> 12);
      out[n++] = (char)(0x80 | (c >> 6 & 0x3f));
      out[n++] = (char)(0x80 | (c & 0x3f));
    }
  }
  out[n] = '\0';
  return 0;
}

static int config_error(const char *what, const pp_diag_t *d, int r) {
  char text[1024];

  if (d->message[0] == '\0') {
    pc_err("%s: %s", what, pp_strerror(r));
  } else {
    pp__diag_format(d, text, sizeof(text));
    if (d->file[0] != '\0')
      pc_err("%s", text);
    else
      pc_err("%s: %s", what, text);
  }
  return PC_EXIT_USAGE;
}

/* The built-in default allows root: one line says so when it applies. */
static void root_warning(const pp_config_t *cfg) {
  char user[64] = "", allow[16] = "", adapter[16] = "";

  pp_config_get(cfg, "worker.user", user, sizeof(user));
  pp_config_get(cfg, "worker.allow_root", allow, sizeof(allow));
  pp_config_get(cfg, "adapter", adapter, sizeof(adapter));
  if (geteuid() == 0 && user[0] == '\0' && strcmp(allow, "true") == 0 &&
      strcmp(adapter, "python") == 0)
    fprintf(stderr, "poolctl: warning: running as root, so workers run as root "
                    "(the built-in default allows it); set worker.user: nobody "
                    "(--set worker.user=nobody) to run them unprivileged\n");
}

/* Build the config: file or default, -n, --set..., and the socket. */
static int make_config(const char *file, char **sets, int nsets,
                       const pc_global_t *g, pp_config_t **out, char *socket,
                       size_t socklen, pp_diag_t *why) {
  pp_config_t *cfg = NULL;
  char quoted[2 * sizeof(((struct sockaddr_un *)0)->sun_path) + 3];
  char name[sizeof(((struct sockaddr_un *)0)->sun_path)];
  pp_diag_t d;
  int i, r, n;

  memset(&d, 0, sizeof(d));
  if (file) {
    if ((r = pp_config_load_file(file, &cfg, &d)) != 0) {
      if (d.file[0] == '\0')
        snprintf(d.file, sizeof(d.file), "%s", file);
      if (why)
        *why = d;
      return config_error(file, &d, r);
    }
  } else if ((r = pp_config_new(&cfg)) != 0) {
    /* The built-in default: the library finds its bundled worker and
     * example handlers wherever it is installed (pp_config_new). */
    pc_err("out of memory");
    return PC_EXIT_ERROR;
  } else if ((r = pp_config_set(cfg, "worker.allow_root", "true", &d)) != 0) {
    /* The built-in default runs its example handlers even as root (the
     * README's first command, often run as root on a fresh machine); a
     * config file must say so itself.  root_warning() says it. */
    goto bad;
  }
  if (g->name && (r = pp_config_set(cfg, "name", g->name, &d)) != 0)
    goto bad;
  for (i = 0; i < nsets; i++) {
    memset(&d, 0, sizeof(d));
    if ((r = pp_config_override(cfg, sets[i], &d)) != 0) {
      pp_config_free(cfg);
      if (why)
        *why = d;
      return config_error("--set", &d, r);
    }
  }
  if (file == NULL)
    root_warning(cfg);
  /* The socket: -S, else control.socket from the config, else the
   * default for the pool's name.  A value too long for a socket path
   * fails config_string or pc_default_socket. */
  if (g->socket) {
    n = snprintf(socket, socklen, "%s", g->socket);
  } else if ((n = config_string(cfg, "control.socket", socket, socklen)) == 0 &&
             socket[0] == '\0') {
    n = config_string(cfg, "name", name, sizeof(name));
    if (n == 0)
      n = pc_default_socket(name, socket, socklen);
  }
  if (n < 0 || (size_t)n >= socklen) {
    pc_err("socket path too long; use -S PATH with a shorter one");
    pp_config_free(cfg);
    return PC_EXIT_USAGE;
  }
  if (yaml_quote(socket, quoted, sizeof(quoted)) != 0) {
    pc_err("socket path too long: %s", socket);
    pp_config_free(cfg);
    return PC_EXIT_USAGE;
  }
  memset(&d, 0, sizeof(d));
  if ((r = pp_config_set(cfg, "control.socket", quoted, &d)) != 0)
    goto bad;
  *out = cfg;
  return PC_EXIT_OK;
bad:
  pp_config_free(cfg);
  if (why)
    *why = d;
  return config_error("config", &d, r);
}

/* Reload: build the config as at start and hand it to the pool, which
 * replaces its workers one by one.  A config that does not load or
 * cannot be applied leaves the pool as it is; d says why. */
static int reload(serve_t *s, pp_diag_t *d) {
  char socket[sizeof(s->socket)];
  pp_config_t *cfg = NULL;
  int r;

  memset(d, 0, sizeof(*d));
  if (make_config(s->file, s->sets, s->nsets, s->g, &cfg, socket,
                  sizeof(socket), d) != PC_EXIT_OK) {
    pc_err("reload: keeping the running config");
    return PP_ECONFIG;
  }
  r = pp_pool_reload(s->pool, cfg, d);
  pp_config_free(cfg);
  if (r != 0) {
    config_error("reload", d, r);
    pc_err("reload: keeping the running config");
  }
  return r;
}

static void on_sighup(uv_signal_t *h, int signum) {
  serve_t *s = h->data;
  pp_diag_t d;

  (void)signum;
  if (s->stopping)
    return;
  say("reloading (SIGHUP)");
  reload(s, &d);
}

/* The control socket's stop and reload (poolctl stop, poolctl reload). */
static int on_control(pp_pool_t *pool, const char *op, pp_diag_t *d,
                      void *data) {
  serve_t *s = data;

  (void)pool;
  if (strcmp(op, "stop") == 0) {
    stop_serving(s, "poolctl stop");
    return 0;
  }
  if (s->stopping) {
    snprintf(d->message, sizeof(d->message), "stopping");
    return PP_ECLOSED;
  }
  say("reloading (poolctl reload)");
  return reload(s, d);
}

/* The HTTP face and its agent-check responder, when listen.address says
 * so: 0, or -1 (printed). */
static int listen_start(serve_t *s) {
  const pp_config_t *cfg = pp_pool_config(s->pool);
  char host[256], err[512];
  int port;

  if (cfg->listen == NULL || cfg->listen[0] == '\0')
    return 0;
  /* Checked with the config: it parses. */
  pp__listen_parse(cfg->listen, host, sizeof(host), &port);
  if (pc_http_start(&s->loop, s->pool, host, port, &s->http, err,
                    sizeof(err)) != 0) {
    pc_err("%s", err);
    return -1;
  }
  say("listening on %s://%s%s%s:%d", cfg->tls_cert ? "https" : "http",
      strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
      pc_http_port(s->http));
  if (cfg->agent_port == 0)
    return 0;
  if (pc_agent_start(&s->loop, s->pool, host, cfg->agent_port, &s->agent, err,
                     sizeof(err)) != 0) {
    pc_err("%s", err);
    return -1;
  }
  say("agent-check on %s:%d", host, pc_agent_port(s->agent));
  return 0;
}

/* Mark every fd we inherited above stderr close-on-exec: whatever our
 * parent left open (a pipe, a file a root wrapper opened) would otherwise
 * pass through uv_spawn to every worker, also to one run as worker.user.
 * The pool's own fds are close-on-exec already.  Best effort. */
static void cloexec_inherited(void) {
  DIR *dir = opendir("/proc/self/fd");
  struct dirent *e;

  if (dir == NULL)
    return;
  while ((e = readdir(dir)) != NULL) {
    int fd = atoi(e->d_name);
    if (fd > 2 && fd != dirfd(dir))
      fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
  }
  closedir(dir);
}

int pc_serve(const pc_command_t *cmd, int argc, char **argv,
             const pc_global_t *g) {
  static const struct option longopts[] = {
      {"config", required_argument, NULL, 'c'},
      {"set", required_argument, NULL, 's'},
      {"listen", required_argument, NULL, 'l'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  pp_pool_options_t opts;
  pp_config_t *cfg = NULL;
  const char *file = NULL;
  char listen_set[300] = "";
  char **sets;
  int c, nsets = 0, r;
  serve_t s;
  pp_diag_t d;

  sets = calloc((size_t)argc + 2, sizeof(*sets));
  if (sets == NULL) {
    pc_err("out of memory");
    return PC_EXIT_ERROR;
  }
  while ((c = getopt_long(argc, argv, ":c:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'c':
      file = optarg;
      break;
    case 's':
      if (strchr(optarg, '=') == NULL) {
        free(sets);
        return pc_usage_error(cmd, "serve: --set wants KEY=VALUE, not '%s'",
                              optarg);
      }
      sets[nsets++] = optarg;
      break;
    case 'l':
      /* The same as --set listen.address=..., the value quoted. */
      strcpy(listen_set, "listen.address=");
      if (yaml_quote(optarg, listen_set + 15, sizeof(listen_set) - 15) != 0) {
        free(sets);
        return pc_usage_error(cmd, "serve: --listen wants HOST:PORT, not '%s'",
                              optarg);
      }
      break;
    case 'h':
      free(sets);
      pc_command_help(cmd, stdout);
      return PC_EXIT_OK;
    default:
      free(sets);
      return pc_getopt_error(cmd, c, argv);
    }
  }
  if (optind < argc) {
    free(sets);
    return pc_usage_error(cmd, "serve: unexpected argument '%s'", argv[optind]);
  }
  if (listen_set[0])
    sets[nsets++] = listen_set; /* last: it wins over --set */
  cloexec_inherited();
  memset(&s, 0, sizeof(s));
  s.file = file;
  s.sets = sets;
  s.nsets = nsets;
  s.g = g;
  r = make_config(file, sets, nsets, g, &cfg, s.socket, sizeof(s.socket), NULL);
  if (r != PC_EXIT_OK) {
    free(sets);
    return r;
  }
  /* The socket's directory is checked by the library, in the same step
   * as it is opened and used (pp_pool_start). */

  /* A peer that hangs up must cost an EPIPE, not the whole server. */
  signal(SIGPIPE, SIG_IGN);
  if ((r = uv_loop_init(&s.loop)) != 0) {
    pc_err("uv_loop_init: %s", uv_strerror(r));
    pp_config_free(cfg);
    free(sets);
    return PC_EXIT_ERROR;
  }
  memset(&opts, 0, sizeof(opts));
  opts.trace = on_trace;
  opts.trace_data = &s;
  opts.control = on_control;
  opts.control_data = &s;
  memset(&d, 0, sizeof(d));
  r = pp_pool_start(&s.loop, cfg, &opts, on_ready, &s, &s.pool, &d);
  pp_config_free(cfg);
  if (r != 0) {
    if (r == PP_ECONFIG)
      r = config_error("config", &d, r);
    else {
      pc_err("%s", d.message[0] ? d.message : pp_strerror(r));
      r = PC_EXIT_ERROR;
    }
    /* A failed start may leave handles closing; let them finish. */
    uv_run(&s.loop, UV_RUN_DEFAULT);
    uv_loop_close(&s.loop);
    free(sets);
    return r;
  }
  /* The size as the pool resolved it (auto: one worker per CPU).  No
   * worker said HELLO yet: that is read on the loop. */
  if ((r = pool_size(s.pool, &s.size)) != 0) {
    pc_err("pool status: %s", pp_strerror(r));
    s.failed = 1;
    stop_serving(&s, "out of memory");
  } else if (listen_start(&s) != 0) {
    s.failed = 1;
    stop_serving(&s, "the HTTP face did not start");
  } else {
    say("warming 0/%d", s.size);
    uv_signal_init(&s.loop, &s.sigint);
    uv_signal_init(&s.loop, &s.sigterm);
    uv_signal_init(&s.loop, &s.sighup);
    s.sigint.data = s.sigterm.data = s.sighup.data = &s;
    s.signals_open = 1;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_signal_start(&s.sighup, on_sighup, SIGHUP);
  }

  uv_run(&s.loop, UV_RUN_DEFAULT);
  free(sets);
  if ((r = uv_loop_close(&s.loop)) != 0) {
    pc_err("handles left open at exit: %s", uv_strerror(r));
    return PC_EXIT_ERROR;
  }
  say("stopped");
  if (s.failed)
    return PC_EXIT_ERROR;
  return s.boot_failed ? PC_EXIT_BOOT : PC_EXIT_OK;
}
