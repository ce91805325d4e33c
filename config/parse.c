/* parse.c -- YAML text to a config: reads the file, loads it with libyaml,
 * walks nested, flow and dotted keys onto the key table, and turns libyaml's
 * errors, unknown and duplicate keys into diagnostics with positions.  The
 * values themselves are parsed by values.c. */
#include "keys.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct loader {
  pp_config_t *cfg;
  yaml_document_t *doc;
  pp_diag_t *diag;
  /* Where each key was set, for duplicates across forms (`checkout:
   * {timeout: ..}` and `checkout.timeout: ..`) and validation messages. */
  const yaml_node_t *key_at[PP__NKEYS];
  const yaml_node_t *value_at[PP__NKEYS];
  /* The file's directory, which relative paths in it are relative to;
   * NULL for text that is not a file (they stay relative to the cwd). */
  const char *dir;
} loader_t;

#define KEY_MAX 128 /* longest dotted key we look up */

static const char *kind(const yaml_node_t *n) {
  return n->type == YAML_MAPPING_NODE    ? "a mapping"
         : n->type == YAML_SEQUENCE_NODE ? "a sequence"
                                         : "a scalar";
}

static int null_node(const yaml_node_t *n) {
  return n->type == YAML_SCALAR_NODE &&
         n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
         pp__null_word((const char *)n->data.scalar.value,
                       n->data.scalar.length);
}

static void set_key(pp_diag_t *diag, const char *key) {
  if (diag != NULL)
    pp__diag_copy(diag->key, sizeof(diag->key), key);
}

/* ------------------------------------------------------- suggestions */

static const char *last_part(const char *s) {
  const char *dot = strrchr(s, '.');
  return dot ? dot + 1 : s;
}

/* A candidate scores its distance to the whole typed key, or one more than
 * the distance between last parts, so `timeout` at the top level still
 * finds checkout.timeout. */
static size_t score(const char *typed, const char *cand, size_t clen) {
  size_t d = pp__distance(typed, strlen(typed), cand, clen);
  const char *tl = last_part(typed), *cl = cand;
  for (size_t i = 0; i < clen; i++)
    if (cand[i] == '.')
      cl = cand + i + 1;
  size_t d2 = pp__distance(tl, strlen(tl), cl, clen - (size_t)(cl - cand));
  if (d2 != SIZE_MAX && d2 + 1 < d)
    d = d2 + 1;
  return d;
}

int pp__key_suggest(const char *typed, char *out, size_t len) {
  size_t tlen = strlen(typed);
  size_t limit = tlen / 3 > 2 ? tlen / 3 : 2;
  size_t best = SIZE_MAX;
  const char *bname = NULL;
  size_t blen = 0;

  for (int i = 0; i < PP__NKEYS; i++) {
    const char *n = pp__keys[i].name;
    size_t d = score(typed, n, strlen(n));
    if (d < best) {
      best = d, bname = n, blen = strlen(n);
    }
    /* Sections too ("chekout" -> "checkout"). */
    const char *dot = strchr(n, '.');
    if (dot != NULL) {
      d = score(typed, n, (size_t)(dot - n));
      if (d < best)
        best = d, bname = n, blen = (size_t)(dot - n);
    }
  }
  if (bname == NULL || best > limit || blen >= len)
    return 0;
  memcpy(out, bname, blen);
  out[blen] = '\0';
  return 1;
}

static int walk(loader_t *l, const yaml_node_t *map, const char *prefix);

/* One `name: value` pair of a mapping under prefix. */
static int pair(loader_t *l, const yaml_node_pair_t *p,
                const yaml_node_pair_t *first, const char *prefix) {
  const yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
  const yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
  char full[KEY_MAX + 2];
  const pp__key_t *k;
  size_t plen = strlen(prefix), nlen;
  const char *name;

  if (kn->type != YAML_SCALAR_NODE) {
    set_key(l->diag, prefix);
    return pp__diag_at(l->diag, kn, "expected a key name, got %s", kind(kn));
  }
  name = (const char *)kn->data.scalar.value;
  nlen = kn->data.scalar.length;
  if (plen + 1 + nlen > KEY_MAX || strlen(name) != nlen) {
    set_key(l->diag, prefix);
    return pp__diag_at(l->diag, kn, "unknown key '%.60s...'", name);
  }
  snprintf(full, sizeof(full), "%s%s%s", prefix, plen ? "." : "", name);
  set_key(l->diag, full);

  /* The same name twice in one mapping, whatever it names. */
  for (const yaml_node_pair_t *q = first; q < p; q++) {
    const yaml_node_t *qn = yaml_document_get_node(l->doc, q->key);
    if (qn->type == YAML_SCALAR_NODE && qn->data.scalar.length == nlen &&
        memcmp(qn->data.scalar.value, name, nlen) == 0)
      return pp__diag_at(
          l->diag, kn, "duplicate key, first set at line %d, column %d",
          (int)qn->start_mark.line + 1, (int)qn->start_mark.column + 1);
  }

  k = pp__key_find(full, strlen(full));
  if (k != NULL) {
    size_t i = (size_t)(k - pp__keys);
    if (l->key_at[i] != NULL)
      return pp__diag_at(l->diag, kn,
                         "duplicate key, first set at line %d, column %d",
                         (int)l->key_at[i]->start_mark.line + 1,
                         (int)l->key_at[i]->start_mark.column + 1);
    l->key_at[i] = kn;
    l->value_at[i] = vn;
    return pp__value_set(l->cfg, k, l->doc, vn, l->diag);
  }
  if (pp__key_is_section(full, strlen(full))) {
    if (vn->type == YAML_MAPPING_NODE)
      return walk(l, vn, full);
    if (null_node(vn)) /* `worker:` with everything commented out */
      return 0;
    return pp__diag_at(l->diag, vn, "expected a mapping of %s.* keys, got %s",
                       full, kind(vn));
  }

  char near[64];
  if (pp__key_suggest(full, near, sizeof(near)))
    return pp__diag_at(l->diag, kn, "unknown key; did you mean '%s'?", near);
  return pp__diag_at(l->diag, kn, "unknown key");
}

static int walk(loader_t *l, const yaml_node_t *map, const char *prefix) {
  const yaml_node_pair_t *first = map->data.mapping.pairs.start;

  for (const yaml_node_pair_t *p = first; p < map->data.mapping.pairs.top;
       p++) {
    int rc = pair(l, p, first, prefix);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* 1-based line and column of a byte offset, for reader errors. */
static void offset_mark(const char *text, size_t len, size_t off, int *line,
                        int *col) {
  *line = 1, *col = 1;
  for (size_t i = 0; i < off && i < len; i++) {
    if (text[i] == '\n')
      (*line)++, *col = 1;
    else
      (*col)++;
  }
}

static int yaml_failed(const yaml_parser_t *p, const char *text, size_t len,
                       pp_diag_t *diag) {
  if (p->error == YAML_MEMORY_ERROR)
    return UV_ENOMEM;
  if (diag == NULL)
    return PP_ECONFIG;
  const char *problem = p->problem ? p->problem : "invalid YAML";
  if (p->error == YAML_READER_ERROR) {
    offset_mark(text, len, p->problem_offset, &diag->line, &diag->column);
    snprintf(diag->message, sizeof(diag->message), "%s", problem);
    return PP_ECONFIG;
  }
  diag->line = (int)p->problem_mark.line + 1;
  diag->column = (int)p->problem_mark.column + 1;
  if (p->context != NULL && (p->context_mark.line != p->problem_mark.line ||
                             p->context_mark.column != p->problem_mark.column))
    snprintf(diag->message, sizeof(diag->message),
             "%s (%s at line %d, column %d)", problem, p->context,
             (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
  else if (p->context != NULL)
    snprintf(diag->message, sizeof(diag->message), "%s (%s)", problem,
             p->context);
  else
    snprintf(diag->message, sizeof(diag->message), "%s", problem);
  return PP_ECONFIG;
}

/* libyaml's scanner is quadratic in the depth of flow collections (80 KB
 * of "[" takes seconds), and a config needs a handful of levels: walk the
 * events first and stop at the first collection deeper than this.  Syntax
 * errors are left to the loader, which reports them. */
#define PP__MAX_NESTING 64

static int nesting_ok(const char *text, size_t len, pp_diag_t *diag) {
  yaml_parser_t parser;
  yaml_event_t ev;
  int depth = 0, rc = 0, end = 0;

  if (!yaml_parser_initialize(&parser))
    return UV_ENOMEM;
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  while (!end && rc == 0 && yaml_parser_parse(&parser, &ev)) {
    switch (ev.type) {
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
      if (++depth > PP__MAX_NESTING) {
        rc = PP_ECONFIG;
        if (diag) {
          diag->line = (int)ev.start_mark.line + 1;
          diag->column = (int)ev.start_mark.column + 1;
          snprintf(diag->message, sizeof(diag->message),
                   "collections nested more than %d deep", PP__MAX_NESTING);
        }
      }
      break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      depth--;
      break;
    case YAML_STREAM_END_EVENT:
      end = 1;
      break;
    default:
      break;
    }
    yaml_event_delete(&ev);
  }
  if (rc == 0 && parser.error == YAML_MEMORY_ERROR)
    rc = UV_ENOMEM;
  yaml_parser_delete(&parser);
  return rc;
}

int pp__yaml_value(const char *text, size_t len, yaml_document_t *doc,
                   yaml_node_t **root, pp_diag_t *diag) {
  yaml_parser_t parser;
  int rc = 0;

  *root = NULL;
  if ((rc = nesting_ok(text, len, diag)) != 0)
    return rc;
  if (!yaml_parser_initialize(&parser))
    return UV_ENOMEM;
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, doc))
    rc = yaml_failed(&parser, text, len, diag);
  else
    *root = yaml_document_get_root_node(doc);
  yaml_parser_delete(&parser);
  return rc;
}

/* Validate, pointing at the value of the key the check names when the
 * text set it. */
static int check(loader_t *l) {
  int rc = pp__config_check(l->cfg, l->diag);
  const pp__key_t *k;

  if (rc != 0 && l->diag != NULL) {
    k = pp__key_find(l->diag->key, strlen(l->diag->key));
    if (k != NULL && l->value_at[k - pp__keys] != NULL) {
      const yaml_node_t *at = l->value_at[k - pp__keys];
      l->diag->line = (int)at->start_mark.line + 1;
      l->diag->column = (int)at->start_mark.column + 1;
    }
  }
  return rc;
}

/* ------------------------------------------------------- file paths */

/* The node of item i of key k's value, for messages: the sequence item,
 * or the whole value when it was written as one string. */
static const yaml_node_t *item_node(loader_t *l, const pp__key_t *k, int i) {
  const yaml_node_t *v = l->value_at[k - pp__keys];

  if (v->type == YAML_SEQUENCE_NODE &&
      i < v->data.sequence.items.top - v->data.sequence.items.start)
    return yaml_document_get_node(l->doc, v->data.sequence.items.start[i]);
  return v;
}

/* Replace *s by its absolute form against the file's directory. */
static int rebase_one(loader_t *l, char **s) {
  char *abs;
  int rc = pp__path_rebase(l->dir, *s, &abs);

  if (rc == 0 && abs != NULL) {
    free(*s);
    *s = abs;
  }
  return rc;
}

/* An argument of worker.command that names a file: the interpreter when
 * it has a slash (a bare name is looked up on PATH), after it anything
 * with a slash or ending in .py (the worker script, a handler file; not an
 * option or a module name such as myapp.handlers). */
static int names_file(const char *arg, int i) {
  size_t n = strlen(arg);

  if (strchr(arg, '/') != NULL)
    return 1;
  return i > 0 && arg[0] != '-' && n > 3 && strcmp(arg + n - 3, ".py") == 0;
}

/* Paths the file set, relative to its directory (as nginx and systemd
 * read theirs): worker.command's files, control.socket and the listen.*
 * files.  Then the files of worker.command must be there, checked now
 * with the file's position rather than when a pool starts. */
static int rebase_paths(loader_t *l) {
  pp_config_t *cfg = l->cfg;
  const pp__key_t *k = pp__key_find("worker.command", 14);
  struct {
    const char *key;
    char **path;
  } files[] = {{"control.socket", &cfg->socket},
               {"listen.token_file", &cfg->token_file},
               {"listen.tls.cert", &cfg->tls_cert},
               {"listen.tls.key", &cfg->tls_key}};
  const pp__key_t *fk;
  size_t f;
  int rc, i;

  for (f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
    fk = pp__key_find(files[f].key, strlen(files[f].key));
    if (l->value_at[fk - pp__keys] != NULL && *files[f].path != NULL &&
        (rc = rebase_one(l, files[f].path)) != 0)
      return rc;
  }
  if (l->value_at[k - pp__keys] == NULL)
    return 0;
  for (i = 0; i < cfg->command_len; i++) {
    int relative = cfg->command[i][0] != '/';
    if (!names_file(cfg->command[i], i))
      continue;
    if ((rc = rebase_one(l, &cfg->command[i])) != 0)
      return rc;
    if (strcmp(cfg->adapter, "python") != 0 ||
        access(cfg->command[i], i == 0 ? X_OK : R_OK) == 0)
      continue;
    set_key(l->diag, k->name);
    return pp__diag_at(
        l->diag, item_node(l, k, i), "%s %s: %s%s",
        i == 0 ? "interpreter" : "file", cfg->command[i], strerror(errno),
        relative ? " (relative paths are read from the config file's "
                   "directory)"
                 : "");
  }
  return 0;
}

/* Load one document from text into cfg, and validate it. */
static int load(loader_t *l, const char *text, size_t len) {
  yaml_parser_t parser;
  yaml_document_t doc, next;
  const yaml_node_t *root;
  int rc;

  if ((rc = nesting_ok(text, len, l->diag)) != 0)
    return rc;
  if (!yaml_parser_initialize(&parser))
    return UV_ENOMEM;
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &doc)) {
    rc = yaml_failed(&parser, text, len, l->diag);
    goto fail_parser;
  }
  l->doc = &doc;
  root = yaml_document_get_root_node(&doc);

  /* A second document would be silently ignored: refuse it. */
  if (!yaml_parser_load(&parser, &next)) {
    rc = yaml_failed(&parser, text, len, l->diag);
    goto fail_doc;
  }
  if (yaml_document_get_root_node(&next) != NULL) {
    rc = pp__diag_at(l->diag, yaml_document_get_root_node(&next),
                     "expected one YAML document, found another");
    yaml_document_delete(&next);
    goto fail_doc;
  }
  yaml_document_delete(&next);

  rc = 0;
  /* An empty file (or a lone null) means all defaults. */
  if (root != NULL && !null_node(root)) {
    if (root->type != YAML_MAPPING_NODE) {
      rc = pp__diag_at(l->diag, root,
                       "the top level must be a mapping of keys, got %s",
                       kind(root));
      goto fail_doc;
    }
    rc = walk(l, root, "");
  }
  if (rc == 0 && l->dir != NULL)
    rc = rebase_paths(l);
  if (rc == 0)
    rc = check(l);

fail_doc:
  yaml_document_delete(&doc);
  l->doc = NULL;
fail_parser:
  yaml_parser_delete(&parser);
  return rc;
}

/* Text named `name` into a new config; relative paths in it are relative
 * to dir (NULL: left as written). */
static int load_text(const char *name, const char *dir, const char *yaml,
                     size_t len, pp_config_t **out, pp_diag_t *diag) {
  loader_t l;
  pp_config_t *cfg = NULL;
  int rc;

  *out = NULL;
  pp__diag_reset(diag, name, NULL);
  rc = pp_config_new(&cfg);
  if (rc != 0)
    return rc;
  memset(&l, 0, sizeof(l));
  l.cfg = cfg;
  l.diag = diag;
  l.dir = dir;
  rc = load(&l, yaml != NULL ? yaml : "", len);
  if (rc != 0) {
    pp_config_free(cfg);
    return rc;
  }
  *out = cfg;
  return 0;
}

int pp_config_load_string(const char *name, const char *yaml, size_t len,
                          pp_config_t **out, pp_diag_t *diag) {
  assert(out != NULL && (yaml != NULL || len == 0));
  return load_text(name, NULL, yaml, len, out, diag);
}

/* The absolute directory of path (symlinks in it resolved) into dir. */
static int dir_of(const char *path, char *dir, size_t len) {
  char part[PATH_MAX];
  const char *slash = strrchr(path, '/');

  if (slash == NULL)
    snprintf(part, sizeof(part), ".");
  else if (slash == path)
    snprintf(part, sizeof(part), "/");
  else if ((size_t)(slash - path) < sizeof(part))
    snprintf(part, sizeof(part), "%.*s", (int)(slash - path), path);
  else
    return UV_ENAMETOOLONG;
  if (realpath(part, dir) == NULL)
    return -errno;
  if (strlen(dir) >= len)
    return UV_ENAMETOOLONG;
  return 0;
}

/* The whole file, NUL-terminated, in *text.  Returns 0 or a negated errno
 * (libuv's codes on Unix). */
static int read_file(const char *path, char **text, size_t *len) {
  FILE *f;
  char *buf = NULL, *grown;
  size_t cap = 0, n = 0, got;
  int rc = 0;

  f = fopen(path, "rbe");
  if (f == NULL)
    return -errno;
  for (;;) {
    if (cap - n < 4096) {
      cap = cap ? cap * 2 : 8192;
      grown = pp__cfg_realloc(buf, cap);
      if (grown == NULL) {
        rc = UV_ENOMEM;
        goto fail;
      }
      buf = grown;
    }
    got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0)
      break;
  }
  if (ferror(f)) {
    rc = errno ? -errno : UV_EIO;
    goto fail;
  }
  fclose(f);
  buf[n] = '\0';
  *text = buf;
  *len = n;
  return 0;

fail:
  free(buf);
  fclose(f);
  return rc;
}

int pp_config_load_file(const char *path, pp_config_t **out, pp_diag_t *diag) {
  char dir[PATH_MAX];
  char *text = NULL;
  size_t len = 0;
  int rc;

  assert(path != NULL && out != NULL);
  *out = NULL;
  rc = read_file(path, &text, &len);
  if (rc != 0) {
    pp__diag_reset(diag, path, NULL);
    pp__diag_at(diag, NULL, "cannot read: %s", uv_strerror(rc));
    return rc;
  }
  rc = dir_of(path, dir, sizeof(dir));
  if (rc != 0) {
    free(text);
    pp__diag_reset(diag, path, NULL);
    pp__diag_at(diag, NULL, "cannot find its directory: %s", uv_strerror(rc));
    return rc;
  }
  rc = load_text(path, dir, text, len, out, diag);
  free(text);
  return rc;
}
