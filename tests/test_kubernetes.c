/* test_kubernetes.c -- examples/kubernetes/ checked by tools rather than
 * read: every document of every *.yaml parses (libyaml), the pool.yaml in
 * the ConfigMap loads and validates with portpool's own loader, and the
 * Deployment, Service, Secret, ServiceMonitor and autoscaler agree with it
 * (ports, probe paths, the control socket and token file, the preStop
 * drain and the grace period).  The preStop command line is run against a
 * live `poolctl serve` (mock adapter), and every portpool_* metric the
 * autoscaler queries must be in that pool's `status --prometheus`. */
#include "cli.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <portpool.h>

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#ifndef PP_TEST_KUBE_DIR
#define PP_TEST_KUBE_DIR ""
#endif

#define MAX_DOCS 32
/* What grace must leave beyond the sum of the waits it covers. */
#define GRACE_MARGIN_MS 5000

typedef struct {
  char file[256];
  yaml_document_t doc;
} kdoc_t;

static kdoc_t docs[MAX_DOCS];
static int ndocs;
/* The live pool, killed and its directory removed by the group teardown
 * even when a check failed. */
static cli_server_t srv;
static char dir[] = "/tmp/pp-kube-XXXXXX";
static int have_dir;

/* ----------------------------------------------------------- yaml access */

static const char *kube_dir(void) {
  const char *d = getenv("PP_KUBE_DIR");

  return d && *d ? d : PP_TEST_KUBE_DIR;
}

static yaml_node_t *root(kdoc_t *k) {
  return yaml_document_get_root_node(&k->doc);
}

static const char *scalar(kdoc_t *k, yaml_node_t *n) {
  (void)k;
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value
                                          : NULL;
}

/* The value of key in mapping n, or NULL. */
static yaml_node_t *get(kdoc_t *k, yaml_node_t *n, const char *key) {
  yaml_node_pair_t *p;

  if (n == NULL || n->type != YAML_MAPPING_NODE)
    return NULL;
  for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    const char *s = scalar(k, yaml_document_get_node(&k->doc, p->key));
    if (s && strcmp(s, key) == 0)
      return yaml_document_get_node(&k->doc, p->value);
  }
  return NULL;
}

/* Follow a dotted path of mapping keys: "spec.template.spec". */
static yaml_node_t *at(kdoc_t *k, yaml_node_t *n, const char *path) {
  char key[64];
  const char *dot;
  size_t len;

  while (n && *path) {
    dot = strchr(path, '.');
    len = dot ? (size_t)(dot - path) : strlen(path);
    assert_true(len < sizeof(key));
    memcpy(key, path, len);
    key[len] = '\0';
    n = get(k, n, key);
    path += len + (dot != NULL);
  }
  return n;
}

static const char *str_at(kdoc_t *k, yaml_node_t *n, const char *path) {
  return scalar(k, at(k, n, path));
}

static long long int_at(kdoc_t *k, yaml_node_t *n, const char *path) {
  const char *s = str_at(k, n, path);
  char *end;
  long long v;

  if (s == NULL)
    fail_msg("%s: %s is missing", k->file, path);
  v = strtoll(s, &end, 0);
  if (*end)
    fail_msg("%s: %s: expected an integer, got '%s'", k->file, path, s);
  return v;
}

/* The i-th item of sequence n, or NULL past its end. */
static yaml_node_t *item(kdoc_t *k, yaml_node_t *n, int i) {
  if (n == NULL || n->type != YAML_SEQUENCE_NODE ||
      i >= n->data.sequence.items.top - n->data.sequence.items.start)
    return NULL;
  return yaml_document_get_node(&k->doc, n->data.sequence.items.start[i]);
}

/* The one document of this kind (fails when there are two), or NULL. */
static kdoc_t *find_kind(const char *kind) {
  kdoc_t *found = NULL;
  int i;

  for (i = 0; i < ndocs; i++) {
    const char *k = str_at(&docs[i], root(&docs[i]), "kind");
    if (k && strcmp(k, kind) == 0) {
      if (found)
        fail_msg("two %s documents: %s and %s", kind, found->file,
                 docs[i].file);
      found = &docs[i];
    }
  }
  return found;
}

static kdoc_t *need_kind(const char *kind) {
  kdoc_t *k = find_kind(kind);

  if (k == NULL)
    fail_msg("no %s in %s", kind, kube_dir());
  return k;
}

/* ----------------------------------------------------------- pool.yaml */

/* A duration as pp_config_get renders it (250ms, 10s, 2m, 1h, 1.5s, 0). */
static long long dur_ms(const char *s) {
  char *end;
  double v = strtod(s, &end);

  if (strcmp(end, "ms") == 0 || *end == '\0')
    return (long long)v;
  if (strcmp(end, "s") == 0)
    return (long long)(v * 1000);
  if (strcmp(end, "m") == 0)
    return (long long)(v * 60000);
  if (strcmp(end, "h") == 0)
    return (long long)(v * 3600000);
  fail_msg("not a duration: '%s'", s);
  return 0;
}

static pp_config_t *pool_config(void) {
  kdoc_t *cm = need_kind("ConfigMap");
  const char *text;
  pp_config_t *cfg = NULL;
  pp_diag_t d;
  int r;

  text = scalar(cm, get(cm, get(cm, root(cm), "data"), "pool.yaml"));
  if (text == NULL)
    fail_msg("%s: the ConfigMap has no data.pool.yaml", cm->file);
  memset(&d, 0, sizeof(d));
  r = pp_config_load_string("pool.yaml", text, strlen(text), &cfg, &d);
  if (r != 0)
    fail_msg("%s: pool.yaml:%d:%d: %s: %s", cm->file, d.line, d.column, d.key,
             d.message);
  assert_int_equal(pp_config_validate(cfg, &d), 0);
  return cfg;
}

static const char *cfg_text(pp_config_t *cfg, const char *key) {
  static char bufs[4][512];
  static int next;
  char *b = bufs[next++ % 4];

  assert_int_equal(pp_config_get(cfg, key, b, sizeof(bufs[0])), 0);
  /* Strings render quoted when they need it; ours never do. */
  return b;
}

static int listen_port(pp_config_t *cfg) {
  const char *a = cfg_text(cfg, "listen.address");
  const char *colon = strrchr(a, ':');

  if (colon == NULL)
    fail_msg("listen.address '%s' is not HOST:PORT", a);
  return atoi(colon + 1);
}

/* ----------------------------------------------------------- deployment */

static yaml_node_t *pod_spec(kdoc_t *dep) {
  yaml_node_t *s = at(dep, root(dep), "spec.template.spec");

  assert_non_null(s);
  return s;
}

/* The container that runs `poolctl serve`. */
static yaml_node_t *serve_container(kdoc_t *dep) {
  yaml_node_t *cs = get(dep, pod_spec(dep), "containers"), *c, *cmd;
  int i, j;

  for (i = 0; (c = item(dep, cs, i)) != NULL; i++) {
    cmd = get(dep, c, "command");
    for (j = 0; item(dep, cmd, j) != NULL; j++)
      if (strcmp(scalar(dep, item(dep, cmd, j)), "serve") == 0)
        return c;
  }
  fail_msg("%s: no container runs `poolctl serve`", dep->file);
  return NULL;
}

/* A port as a probe or Service names it: a number, or the name of one of
 * the container's ports. */
static int resolve_port(kdoc_t *dep, yaml_node_t *c, const char *port) {
  yaml_node_t *p;
  int i;

  if (port == NULL)
    fail_msg("%s: a port is missing", dep->file);
  if (isdigit((unsigned char)port[0]))
    return atoi(port);
  for (i = 0; (p = item(dep, get(dep, c, "ports"), i)) != NULL; i++)
    if (str_at(dep, p, "name") && strcmp(str_at(dep, p, "name"), port) == 0)
      return (int)int_at(dep, p, "containerPort");
  fail_msg("%s: no container port is named '%s'", dep->file, port);
  return -1;
}

/* The volume mounted at the longest mountPath that holds path, and that
 * mountPath; fails when no mount holds it. */
static yaml_node_t *volume_of(kdoc_t *dep, yaml_node_t *c, const char *path,
                              const char **mount) {
  yaml_node_t *m, *v, *best = NULL;
  size_t bestlen = 0, n;
  const char *mp;
  int i;

  for (i = 0; (m = item(dep, get(dep, c, "volumeMounts"), i)) != NULL; i++) {
    mp = str_at(dep, m, "mountPath");
    n = strlen(mp);
    if (strncmp(path, mp, n) == 0 && (path[n] == '/' || path[n] == '\0') &&
        n > bestlen) {
      best = m;
      bestlen = n;
    }
  }
  if (best == NULL)
    fail_msg("%s: %s is on no volume of the container", dep->file, path);
  *mount = str_at(dep, best, "mountPath");
  for (i = 0; (v = item(dep, get(dep, pod_spec(dep), "volumes"), i)) != NULL;
       i++)
    if (strcmp(str_at(dep, v, "name"), str_at(dep, best, "name")) == 0)
      return v;
  fail_msg("%s: no volume named %s", dep->file, str_at(dep, best, "name"));
  return NULL;
}

/* The words of a preStop command: its argv, or for `sh -c SCRIPT` the
 * script's words with ; and && as words of their own. */
static int words(kdoc_t *dep, yaml_node_t *cmd, char **out, int max) {
  const char *a0 = scalar(dep, item(dep, cmd, 0));
  const char *a1 = scalar(dep, item(dep, cmd, 1));
  char *script, *tok, *save;
  int n = 0, i;

  assert_non_null(a0);
  if (strlen(a0) >= 2 && strcmp(a0 + strlen(a0) - 2, "sh") == 0 && a1 &&
      strcmp(a1, "-c") == 0) {
    script = strdup(scalar(dep, item(dep, cmd, 2)));
    assert_non_null(script);
    for (tok = strtok_r(script, " \t\n", &save); tok && n < max;
         tok = strtok_r(NULL, " \t\n", &save)) {
      size_t len = strlen(tok);
      int semi = len > 1 && tok[len - 1] == ';';
      if (semi)
        tok[len - 1] = '\0';
      out[n++] = strdup(tok);
      if (semi && n < max)
        out[n++] = strdup(";");
    }
    free(script);
    return n;
  }
  for (i = 0; item(dep, cmd, i) && n < max; i++)
    out[n++] = strdup(scalar(dep, item(dep, cmd, i)));
  return n;
}

/* ----------------------------------------------------------- the suite */

static int load_all(void **state) {
  DIR *d;
  struct dirent *e;
  char path[512], line[256];
  FILE *f;
  yaml_parser_t p;
  size_t n;

  (void)state;
  if ((d = opendir(kube_dir())) == NULL) {
    fprintf(stderr, "%s: cannot open\n", kube_dir());
    return -1;
  }
  while ((e = readdir(d)) != NULL) {
    n = strlen(e->d_name);
    if (n < 6 || strcmp(e->d_name + n - 5, ".yaml") != 0)
      continue;
    snprintf(path, sizeof(path), "%s/%s", kube_dir(), e->d_name);
    if ((f = fopen(path, "rb")) == NULL)
      return -1;
    /* Every file starts with its `name -- purpose` line. */
    if (fgets(line, sizeof(line), f) == NULL || strncmp(line, "# ", 2) != 0 ||
        strncmp(line + 2, e->d_name, n) != 0 ||
        strncmp(line + 2 + n, " -- ", 4) != 0) {
      fprintf(stderr, "%s: the first line is not '# %s -- purpose'\n", path,
              e->d_name);
      return -1;
    }
    rewind(f);
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    for (;;) {
      if (ndocs == MAX_DOCS)
        return -1;
      if (!yaml_parser_load(&p, &docs[ndocs].doc)) {
        fprintf(stderr, "%s:%zu:%zu: %s\n", path, p.problem_mark.line + 1,
                p.problem_mark.column + 1, p.problem ? p.problem : "?");
        return -1;
      }
      if (yaml_document_get_root_node(&docs[ndocs].doc) == NULL) {
        yaml_document_delete(&docs[ndocs].doc);
        break;
      }
      snprintf(docs[ndocs].file, sizeof(docs[0].file), "%s", e->d_name);
      ndocs++;
    }
    yaml_parser_delete(&p);
    fclose(f);
  }
  closedir(d);
  return ndocs > 0 ? 0 : -1;
}

static int free_all(void **state) {
  char cmd[64];

  (void)state;
  cli_server_kill(&srv);
  if (have_dir) {
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
      return -1;
  }
  while (ndocs > 0)
    yaml_document_delete(&docs[--ndocs].doc);
  return 0;
}

/* Each document is a Kubernetes object with a name. */
static void objects_are_named(void **state) {
  int i;

  (void)state;
  for (i = 0; i < ndocs; i++) {
    kdoc_t *k = &docs[i];
    if (!str_at(k, root(k), "apiVersion") || !str_at(k, root(k), "kind") ||
        !str_at(k, root(k), "metadata.name"))
      fail_msg("%s: document %d lacks apiVersion, kind or metadata.name",
               k->file, i);
  }
  need_kind("Deployment");
  need_kind("Service");
  need_kind("Secret");
  if (!find_kind("ScaledObject") && !find_kind("HorizontalPodAutoscaler"))
    fail_msg("no ScaledObject or HorizontalPodAutoscaler");
}

/* The ConfigMap's pool.yaml is a valid config that listens beyond
 * loopback with a token, and `poolctl serve -c` reads that file. */
static void config_loads(void **state) {
  pp_config_t *cfg = pool_config();
  kdoc_t *dep = need_kind("Deployment"), *cm = need_kind("ConfigMap");
  yaml_node_t *c = serve_container(dep), *cmd = get(dep, c, "command"), *v;
  const char *file = NULL, *mount, *slash;
  int i;

  (void)state;
  assert_true(listen_port(cfg) > 0);
  /* size: auto counts the node's CPUs, not the container's CPU limit. */
  if (strcmp(cfg_text(cfg, "size"), "auto") == 0)
    fail_msg("%s: pool.yaml has size: auto, which counts the node's CPUs "
             "(sysconf), not the pod's; give a number",
             cm->file);
  assert_string_not_equal(cfg_text(cfg, "listen.token_file"), "");
  assert_string_not_equal(cfg_text(cfg, "control.socket"), "");
  for (i = 0; item(dep, cmd, i); i++)
    if (strcmp(scalar(dep, item(dep, cmd, i)), "-c") == 0 ||
        strcmp(scalar(dep, item(dep, cmd, i)), "--config") == 0)
      file = scalar(dep, item(dep, cmd, i + 1));
  if (file == NULL)
    fail_msg("%s: poolctl serve has no -c FILE", dep->file);
  v = volume_of(dep, c, file, &mount);
  assert_string_equal(str_at(dep, v, "configMap.name"),
                      str_at(cm, root(cm), "metadata.name"));
  slash = strrchr(file, '/');
  assert_string_equal(slash + 1, "pool.yaml");
  pp_config_free(cfg);
}

/* Probes, the container port and the Service all reach listen.address. */
static void ports_agree(void **state) {
  pp_config_t *cfg = pool_config();
  kdoc_t *dep = need_kind("Deployment"), *svc = need_kind("Service");
  yaml_node_t *c = serve_container(dep), *p, *sel, *labels;
  yaml_node_pair_t *pair;
  int port = listen_port(cfg), found = 0, i;

  (void)state;
  for (i = 0; (p = item(dep, get(dep, c, "ports"), i)) != NULL; i++)
    found += int_at(dep, p, "containerPort") == port;
  assert_int_equal(found, 1);
  assert_string_equal(str_at(dep, c, "readinessProbe.httpGet.path"), "/readyz");
  assert_int_equal(
      resolve_port(dep, c, str_at(dep, c, "readinessProbe.httpGet.port")),
      port);
  assert_string_equal(str_at(dep, c, "livenessProbe.httpGet.path"), "/livez");
  assert_int_equal(
      resolve_port(dep, c, str_at(dep, c, "livenessProbe.httpGet.port")), port);
  p = item(svc, at(svc, root(svc), "spec.ports"), 0);
  assert_non_null(p);
  assert_null(item(svc, at(svc, root(svc), "spec.ports"), 1));
  assert_int_equal(resolve_port(dep, c, str_at(svc, p, "targetPort")), port);
  /* The Service selects the pods. */
  sel = at(svc, root(svc), "spec.selector");
  labels = at(dep, root(dep), "spec.template.metadata.labels");
  assert_non_null(sel);
  for (pair = sel->data.mapping.pairs.start; pair < sel->data.mapping.pairs.top;
       pair++) {
    const char *k = scalar(svc, yaml_document_get_node(&svc->doc, pair->key));
    const char *v = scalar(svc, yaml_document_get_node(&svc->doc, pair->value));
    /* get, not str_at: label keys hold dots. */
    assert_non_null(scalar(dep, get(dep, labels, k)));
    assert_string_equal(scalar(dep, get(dep, labels, k)), v);
  }
  pp_config_free(cfg);
}

/* The control socket and the token file live where portpool accepts them:
 * the socket in a directory of its own below an emptyDir (whose root is
 * mode 0777, which the control socket refuses), the token as a regular
 * file (a Secret volume holds symlinks, which the token loader refuses)
 * put there by an init container from a Secret that exists. */
static void files_fit(void **state) {
  pp_config_t *cfg = pool_config();
  kdoc_t *dep = need_kind("Deployment"), *sec = need_kind("Secret");
  yaml_node_t *c = serve_container(dep), *v, *ic, *sv = NULL, *m;
  const char *sock = cfg_text(cfg, "control.socket");
  const char *token = cfg_text(cfg, "listen.token_file");
  const char *mount, *dir_end;
  int i, j, filled = 0;

  (void)state;
  v = volume_of(dep, c, sock, &mount);
  assert_non_null(get(dep, v, "emptyDir"));
  dir_end = strrchr(sock, '/');
  if ((size_t)(dir_end - sock) <= strlen(mount))
    fail_msg("%s: control.socket %s sits in the emptyDir's root %s (mode "
             "0777): put it in a subdirectory",
             dep->file, sock, mount);
  v = volume_of(dep, c, token, &mount);
  if (get(dep, v, "secret") && !str_at(dep, v, "subPath"))
    fail_msg("%s: listen.token_file %s is in a Secret volume: its files are "
             "symlinks, which the token loader refuses",
             dep->file, token);
  for (i = 0; (ic = item(dep, get(dep, pod_spec(dep), "initContainers"), i));
       i++) {
    int mounts_it = 0;
    for (j = 0; (m = item(dep, get(dep, ic, "volumeMounts"), j)); j++)
      mounts_it |= strcmp(str_at(dep, m, "name"), str_at(dep, v, "name")) == 0;
    for (j = 0; mounts_it && item(dep, get(dep, ic, "command"), j); j++)
      filled |= strstr(scalar(dep, item(dep, get(dep, ic, "command"), j)),
                       token) != NULL;
  }
  if (get(dep, v, "emptyDir") && !filled)
    fail_msg("%s: no init container writes %s", dep->file, token);
  for (i = 0; (v = item(dep, get(dep, pod_spec(dep), "volumes"), i)); i++)
    if (get(dep, v, "secret"))
      sv = v;
  assert_non_null(sv);
  assert_string_equal(str_at(dep, sv, "secret.secretName"),
                      str_at(sec, root(sec), "metadata.name"));
  pp_config_free(cfg);
}

/* The preStop hook drains through the pool's socket, waiting at least
 * request_timeout, and the grace period covers the hook, drain_timeout
 * and kill_grace. */
static void prestop_and_grace(void **state) {
  pp_config_t *cfg = pool_config();
  kdoc_t *dep = need_kind("Deployment");
  yaml_node_t *c = serve_container(dep);
  yaml_node_t *cmd = at(dep, c, "lifecycle.preStop.exec.command");
  char *w[64];
  const char *sock = NULL;
  long long sleep_ms = 0, wait_ms = 60000, grace_ms, need;
  int n, i, drain = 0, poolctl = -1;

  (void)state;
  if (cmd == NULL)
    fail_msg("%s: no lifecycle.preStop.exec.command", dep->file);
  n = words(dep, cmd, w, 64);
  for (i = 0; i < n; i++) {
    if (strcmp(w[i], "sleep") == 0 && i + 1 < n)
      sleep_ms = (long long)(strtod(w[i + 1], NULL) * 1000);
    if (strcmp(w[i], "poolctl") == 0 || strstr(w[i], "/poolctl"))
      poolctl = i;
    if (poolctl < 0 || strcmp(w[i], ";") == 0 || strcmp(w[i], "&&") == 0)
      continue;
    if ((strcmp(w[i], "-S") == 0 || strcmp(w[i], "--socket") == 0) && i + 1 < n)
      sock = w[i + 1];
    if (strcmp(w[i], "drain") == 0)
      drain = 1;
    if (strcmp(w[i], "--timeout") == 0 && i + 1 < n)
      wait_ms = atoll(w[i + 1]);
  }
  if (poolctl < 0 || !drain)
    fail_msg("%s: preStop does not run `poolctl drain`", dep->file);
  if (sock == NULL)
    fail_msg("%s: preStop's poolctl has no -S SOCKET", dep->file);
  assert_string_equal(sock, cfg_text(cfg, "control.socket"));
  assert_true(wait_ms >= dur_ms(cfg_text(cfg, "worker.request_timeout")));
  grace_ms = int_at(dep, pod_spec(dep), "terminationGracePeriodSeconds") * 1000;
  need = sleep_ms + wait_ms + dur_ms(cfg_text(cfg, "worker.drain_timeout")) +
         dur_ms(cfg_text(cfg, "worker.kill_grace")) + GRACE_MARGIN_MS;
  if (grace_ms < need)
    fail_msg("%s: terminationGracePeriodSeconds is %lld ms, the preStop "
             "sleep, drain wait, drain_timeout and kill_grace need %lld",
             dep->file, grace_ms, need);
  for (i = 0; i < n; i++)
    free(w[i]);
  pp_config_free(cfg);
}

/* Collect every portpool_* name in the autoscaler's scalars (queries or
 * metric names) into names (space-separated, each once). */
static void metric_names(kdoc_t *k, char *names, size_t len, char *states,
                         size_t slen) {
  yaml_node_t *n;
  const char *s, *p, *q;
  char name[128];
  size_t i;

  names[0] = states[0] = '\0';
  for (n = k->doc.nodes.start; n < k->doc.nodes.top; n++) {
    if (n->type != YAML_SCALAR_NODE)
      continue;
    s = (const char *)n->data.scalar.value;
    for (p = s; (p = strstr(p, "portpool_")) != NULL; p = q) {
      for (q = p, i = 0;
           (isalnum((unsigned char)*q) || *q == '_') && i + 1 < sizeof(name);
           q++)
        name[i++] = *q;
      name[i] = '\0';
      if (strstr(names, name) == NULL) {
        strncat(names, name, len - strlen(names) - 2);
        strcat(names, " ");
      }
    }
    for (p = s; (p = strstr(p, "state=\"")) != NULL; p = q) {
      q = strchr(p + 7, '"');
      assert_non_null(q);
      snprintf(name, sizeof(name), "%.*s ", (int)(q + 1 - p), p);
      if (strstr(states, name) == NULL)
        strncat(states, name, slen - strlen(states) - 1);
    }
  }
}

/* Every portpool_* metric the autoscaler uses is in what a running pool
 * prints, with its state labels; waiters, busy/size and the queue-wait
 * histogram are all there; the pool label names this pool; and preStop's
 * drain command line works against the running pool. */
static void autoscaler_metrics_exist(void **state) {
  pp_config_t *cfg = pool_config();
  kdoc_t *as = find_kind("ScaledObject"), *dep = need_kind("Deployment");
  kdoc_t *sm = find_kind("ServiceMonitor"), *svc = need_kind("Service");
  char sock[128], pool_set[300], pool_label[300];
  char names[4096], states[512], sample[700], *tok, *save, *w[64];
  const char *name = cfg_text(cfg, "name");
  cli_run_t r;
  char *argv[64];
  int n, i, a = 0;

  (void)state;
  if (as == NULL)
    as = need_kind("HorizontalPodAutoscaler");
  assert_string_equal(str_at(as, root(as), "spec.scaleTargetRef.name"),
                      str_at(dep, root(dep), "metadata.name"));
  metric_names(as, names, sizeof(names), states, sizeof(states));
  assert_non_null(strstr(names, "portpool_waiters "));
  assert_non_null(strstr(names, "portpool_workers "));
  assert_non_null(strstr(names, "portpool_size "));
  assert_non_null(strstr(names, "portpool_queue_wait_seconds_bucket "));
  assert_non_null(strstr(states, "state=\"busy\" "));
  snprintf(pool_label, sizeof(pool_label), "pool=\"%s\"", name);
  for (i = 0; i < as->doc.nodes.top - as->doc.nodes.start; i++) {
    yaml_node_t *nd = as->doc.nodes.start + i;
    if (nd->type == YAML_SCALAR_NODE &&
        strstr((char *)nd->data.scalar.value, "portpool_") &&
        strstr((char *)nd->data.scalar.value, "{") &&
        !strstr((char *)nd->data.scalar.value, pool_label))
      fail_msg("%s: a query lacks %s: %s", as->file, pool_label,
               (char *)nd->data.scalar.value);
  }
  if (sm) {
    assert_string_equal(
        str_at(sm, item(sm, at(sm, root(sm), "spec.endpoints"), 0), "port"),
        str_at(svc, item(svc, at(svc, root(svc), "spec.ports"), 0), "name"));
    assert_string_equal(
        str_at(sm, item(sm, at(sm, root(sm), "spec.endpoints"), 0), "path"),
        "/metrics");
  }

  assert_non_null(mkdtemp(dir));
  have_dir = 1;
  snprintf(sock, sizeof(sock), "%s/pool.sock", dir);
  snprintf(pool_set, sizeof(pool_set), "name=%s", name);
  cli_server_start(&srv, "-S", sock, "--set", "adapter=mock", "--set", "size=2",
                   "--set", pool_set, NULL);
  cli_poolctl(&r, "status", "--prometheus", "-S", sock, NULL);
  assert_int_equal(r.code, 0);
  for (tok = strtok_r(names, " ", &save); tok;
       tok = strtok_r(NULL, " ", &save)) {
    snprintf(sample, sizeof(sample), "\n%s{%s", tok, pool_label);
    if (strstr(r.out, sample) == NULL)
      fail_msg("%s: %s is not a sample of `poolctl status --prometheus`",
               as->file, tok);
  }
  for (tok = strtok_r(states, " ", &save); tok;
       tok = strtok_r(NULL, " ", &save)) {
    snprintf(sample, sizeof(sample), "portpool_workers{%s,%s}", pool_label,
             tok);
    if (strstr(r.out, sample) == NULL)
      fail_msg("%s: no %s in `poolctl status --prometheus`", as->file, sample);
  }
  cli_run_free(&r);

  /* preStop's poolctl command, on this pool's socket. */
  n = words(dep,
            at(dep, serve_container(dep), "lifecycle.preStop.exec.command"), w,
            64);
  for (i = 0;
       i < n && strcmp(w[i], "poolctl") != 0 && !strstr(w[i], "/poolctl"); i++)
    ;
  argv[a++] = (char *)cli_poolctl_path();
  for (i++; i < n && strcmp(w[i], ";") != 0 && strcmp(w[i], "&&") != 0; i++) {
    if (strcmp(w[i], "exec") == 0)
      continue;
    argv[a++] = i > 0 && strcmp(w[i - 1], "-S") == 0 ? sock : w[i];
  }
  argv[a] = NULL;
  cli_run_argv(&r, argv);
  if (r.code != 0)
    fail_msg("preStop's poolctl exited %d: %s", r.code, r.err);
  cli_run_free(&r);
  cli_poolctl(&r, "status", "--prometheus", "-S", sock, NULL);
  snprintf(sample, sizeof(sample), "portpool_draining{%s} 1", pool_label);
  assert_non_null(strstr(r.out, sample));
  cli_run_free(&r);
  for (i = 0; i < n; i++)
    free(w[i]);
  cli_server_stop(&srv);
  pp_config_free(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(objects_are_named),
      cmocka_unit_test(config_loads),
      cmocka_unit_test(ports_agree),
      cmocka_unit_test(files_fit),
      cmocka_unit_test(prestop_and_grace),
      cmocka_unit_test(autoscaler_metrics_exist),
  };
  return cmocka_run_group_tests(tests, load_all, free_all);
}
