/* values.c -- text to config fields: parses a YAML node (or the lone
 * scalar pp_config_set makes) as a key's value, for every key type, with a
 * message saying what was expected.  Knows the types, not the keys. */
#include "keys.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DURATION_LIKE "a duration like 250ms, 5s or 2m"
#define MEMORY_LIKE "a size like 512MiB, 1GiB, 64KiB or 100MB"
#define LIST_LIKE "a list like [python3, worker.py, handlers.py]"
#define BACKOFF_LIKE "[min, max] like [100ms, 5s]"
#define MODE_LIKE "an octal file mode like 0600"

/* ------------------------------------------------------- fields */

static void num_put(pp_config_t *cfg, size_t off, pp__ctype_t ct, int64_t v) {
  switch (ct) {
  case PP__C_U64:
    *FIELD(cfg, off, uint64_t) = (uint64_t)v;
    break;
  case PP__C_U32:
    *FIELD(cfg, off, uint32_t) = (uint32_t)v;
    break;
  default:
    *FIELD(cfg, off, int) = (int)v;
    break;
  }
}

/* ------------------------------------------------------- numbers */

typedef enum { NUM_OK = 0, NUM_BAD, NUM_NOUNIT, NUM_INEXACT, NUM_RANGE } num_t;

typedef struct unit {
  const char *name;
  uint64_t mult;
} unit_t;

static const unit_t dur_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {NULL, 0}};

static const unit_t mem_units[] = {{"B", 1},
                                   {"KiB", UINT64_C(1) << 10},
                                   {"MiB", UINT64_C(1) << 20},
                                   {"GiB", UINT64_C(1) << 30},
                                   {"TiB", UINT64_C(1) << 40},
                                   {"kB", 1000},
                                   {"MB", 1000000},
                                   {"GB", 1000000000},
                                   {"TB", UINT64_C(1000000000000)},
                                   /* ulimit's and systemd's K, M, G, T */
                                   {"K", UINT64_C(1) << 10},
                                   {"M", UINT64_C(1) << 20},
                                   {"G", UINT64_C(1) << 30},
                                   {"T", UINT64_C(1) << 40},
                                   {NULL, 0}};

#define FRAC_MAX 6 /* digits after the point; keeps frac * unit in range */

/* Reads digits, then optionally '.' and 1..FRAC_MAX digits.  Returns the
 * bytes read, 0 when s does not start so or the number overflows. */
static size_t decimal(const char *s, size_t len, uint64_t *whole,
                      uint64_t *frac, int *nfrac) {
  size_t i = 0;

  *whole = 0, *frac = 0, *nfrac = 0;
  if (len == 0 || s[0] < '0' || s[0] > '9')
    return 0;
  for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
    if (*whole > (UINT64_MAX - 9) / 10)
      return 0;
    *whole = *whole * 10 + (uint64_t)(s[i] - '0');
  }
  if (i + 1 < len && s[i] == '.' && s[i + 1] >= '0' && s[i + 1] <= '9') {
    for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
      if (++*nfrac > FRAC_MAX)
        return 0;
      *frac = *frac * 10 + (uint64_t)(s[i] - '0');
    }
  }
  return i;
}

/* (whole + frac / 10^nfrac) * mult, which must be a whole number. */
static num_t scale(uint64_t whole, uint64_t frac, int nfrac, uint64_t mult,
                   uint64_t *out) {
  static const uint64_t pow10[FRAC_MAX + 1] = {1,     10,     100,    1000,
                                               10000, 100000, 1000000};
  uint64_t f = frac * mult; /* < 10^6 * 2^40, no overflow */

  if (f % pow10[nfrac] != 0)
    return NUM_INEXACT;
  if (whole != 0 && mult > UINT64_MAX / whole)
    return NUM_RANGE;
  if (whole * mult > UINT64_MAX - f / pow10[nfrac])
    return NUM_RANGE;
  *out = whole * mult + f / pow10[nfrac];
  return NUM_OK;
}

/* A number and one of units (the first unit when there is none and
 * bare_ok; else only 0 goes without a unit). */
static num_t with_unit(const char *s, size_t len, const unit_t *units,
                       int bare_ok, uint64_t *out) {
  uint64_t whole, frac;
  int nfrac;
  size_t used = decimal(s, len, &whole, &frac, &nfrac);

  if (used == 0)
    return NUM_BAD;
  if (used == len) {
    if (bare_ok)
      return scale(whole, frac, nfrac, units[0].mult, out);
    return whole == 0 && frac == 0 ? (*out = 0, NUM_OK) : NUM_NOUNIT;
  }
  for (const unit_t *u = units; u->name != NULL; u++) {
    size_t ulen = strlen(u->name);
    /* Memory units are matched in any case (mb, MiB), durations exactly
     * (m is minutes, never months). */
    if (ulen == len - used && (bare_ok ? strncasecmp(s + used, u->name, ulen)
                                       : strncmp(s + used, u->name, ulen)) == 0)
      return scale(whole, frac, nfrac, u->mult, out);
  }
  return NUM_BAD;
}

static num_t parse_int(const char *s, size_t len, int64_t *out) {
  size_t i = 0;
  int neg = 0;
  uint64_t v = 0;

  if (len > 0 && (s[0] == '-' || s[0] == '+'))
    neg = s[0] == '-', i++;
  if (i == len)
    return NUM_BAD;
  for (; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return NUM_BAD;
    if (v <= (UINT64_MAX - 9) / 10)
      v = v * 10 + (uint64_t)(s[i] - '0');
    else
      v = UINT64_MAX;
  }
  if (v > (uint64_t)INT64_MAX)
    return NUM_RANGE;
  *out = neg ? -(int64_t)v : (int64_t)v;
  return NUM_OK;
}

/* ------------------------------------------------------- input */

static int is_null(const yaml_node_t *n) {
  return n->type == YAML_SCALAR_NODE &&
         n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
         pp__null_word((const char *)n->data.scalar.value,
                       n->data.scalar.length);
}

static const char *text_of(const yaml_node_t *n, size_t *len) {
  *len = n->data.scalar.length;
  return (const char *)n->data.scalar.value;
}

static void describe(const yaml_node_t *n, char *buf, size_t cap) {
  size_t len;
  const char *s;

  if (n->type == YAML_MAPPING_NODE)
    snprintf(buf, cap, "a mapping");
  else if (n->type == YAML_SEQUENCE_NODE)
    snprintf(buf, cap, "a sequence");
  else if (is_null(n))
    snprintf(buf, cap, "nothing");
  else {
    s = text_of(n, &len);
    pp__quote_text(s, len, buf, cap);
  }
}

static int expected(pp_diag_t *diag, const yaml_node_t *n, const char *what) {
  char got[96];
  describe(n, got, sizeof(got));
  return pp__diag_at(diag, n, "expected %s, got %s", what, got);
}

/* Like expected(), for a piece of a scalar's text. */
static int expected_text(pp_diag_t *diag, const yaml_node_t *n,
                         const char *what, const char *s, size_t len) {
  char got[96];
  pp__quote_text(s, len, got, sizeof(got));
  return pp__diag_at(diag, n, "expected %s, got %s", what, got);
}

/* A usable scalar: not a collection, not null, no NUL bytes. */
static int plain_value(const yaml_node_t *n) {
  return n->type == YAML_SCALAR_NODE && !is_null(n) &&
         strlen((const char *)n->data.scalar.value) == n->data.scalar.length;
}

/* Whitespace-separated pieces of a scalar, for list-shaped keys. */
static int next_word(const char *s, size_t len, size_t *pos, size_t *start,
                     size_t *wlen) {
  size_t i = *pos;
  while (i < len && strchr(" \t\r\n", s[i]) != NULL)
    i++;
  if (i == len)
    return 0;
  *start = i;
  while (i < len && strchr(" \t\r\n", s[i]) == NULL)
    i++;
  *wlen = i - *start;
  *pos = i;
  return 1;
}

static size_t count_words(const char *s, size_t len) {
  size_t pos = 0, start, wlen, n = 0;
  while (next_word(s, len, &pos, &start, &wlen))
    n++;
  return n;
}

/* The items of a list-shaped value: a sequence's scalars, or the words of
 * one scalar.  `it` walks them. */
typedef struct items {
  yaml_document_t *doc;
  const yaml_node_t *node;
  size_t count, i, pos;
} items_t;

static int items_open(items_t *it, yaml_document_t *doc, const yaml_node_t *n) {
  memset(it, 0, sizeof(*it));
  it->doc = doc, it->node = n;
  if (n->type == YAML_SEQUENCE_NODE) {
    it->count =
        (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    return 1;
  }
  if (plain_value(n)) {
    it->count =
        count_words((const char *)n->data.scalar.value, n->data.scalar.length);
    return 1;
  }
  return 0;
}

/* The next item's text and the node to blame for it.  Returns 0 at the
 * end, -1 with diag filled for an item that is not a string. */
static int items_next(items_t *it, const char **s, size_t *len,
                      const yaml_node_t **at, pp_diag_t *diag) {
  if (it->i == it->count)
    return 0;
  if (it->node->type == YAML_SEQUENCE_NODE) {
    const yaml_node_t *item = yaml_document_get_node(
        it->doc, it->node->data.sequence.items.start[it->i]);
    it->i++;
    *at = item;
    if (!plain_value(item)) {
      expected(diag, item, "a string");
      return -1;
    }
    *s = text_of(item, len);
    return 1;
  }
  size_t start = 0;
  const char *all = (const char *)it->node->data.scalar.value;
  next_word(all, it->node->data.scalar.length, &it->pos, &start, len);
  it->i++;
  *s = all + start;
  *at = it->node;
  return 1;
}

/* ------------------------------------------------------- setters */

static int set_string(pp_config_t *cfg, const pp__key_t *k,
                      const yaml_node_t *n, pp_diag_t *diag) {
  char **field = FIELD(cfg, k->off, char *), *s = NULL;
  int nullable = (k->flags & PP__F_NULLABLE) != 0;
  size_t len = 0;

  if (nullable && is_null(n))
    goto store;
  if (!plain_value(n))
    return expected(diag, n, nullable ? "a string" : "a non-empty string");
  text_of(n, &len);
  if (len == 0 && !nullable)
    return expected(diag, n, "a non-empty string");
  if (len > 0) {
    s = pp__cfg_strndup((const char *)n->data.scalar.value, len);
    if (s == NULL)
      return UV_ENOMEM;
  }
store:
  free(*field);
  *field = s;
  return 0;
}

/* A SIZE scalar: auto (the CPUs, within k's bounds; *is_auto set) or an
 * integer within them.  0, or -1 when it is neither. */
static int size_scalar(const pp__key_t *k, const yaml_node_t *n, int64_t *v,
                       int *is_auto) {
  const char *s;
  size_t len;

  if (!plain_value(n))
    return -1;
  s = text_of(n, &len);
  *is_auto = len == 4 && memcmp(s, "auto", 4) == 0;
  if (*is_auto) {
    *v = pp__config_cpus();
    *v = *v < k->min ? k->min : *v > k->max ? k->max : *v;
    return 0;
  }
  return parse_int(s, len, v) == NUM_OK && *v >= k->min && *v <= k->max ? 0
                                                                        : -1;
}

/* size: {min: N, max: M}, an elastic pool (min >= 1: see scale.c). */
static int set_size_range(pp_config_t *cfg, const pp__key_t *k,
                          yaml_document_t *doc, const yaml_node_t *n,
                          pp_diag_t *diag) {
  const yaml_node_pair_t *p;
  const yaml_node_t *kn, *vn;
  int64_t v[2] = {-1, -1};
  char what[96];
  int i, is_auto;

  for (p = n->data.mapping.pairs.start; doc && p < n->data.mapping.pairs.top;
       p++) {
    kn = yaml_document_get_node(doc, p->key);
    vn = yaml_document_get_node(doc, p->value);
    i = -1;
    if (kn && kn->type == YAML_SCALAR_NODE && kn->data.scalar.length == 3)
      i = memcmp(kn->data.scalar.value, "min", 3) == 0   ? 0
          : memcmp(kn->data.scalar.value, "max", 3) == 0 ? 1
                                                         : -1;
    if (i < 0)
      return pp__diag_at(diag, kn ? kn : n,
                         "expected only min and max in size's mapping");
    if (size_scalar(k, vn, &v[i], &is_auto) != 0) {
      pp__range_text(k, what, sizeof(what));
      return expected(diag, vn, what);
    }
  }
  if (v[0] < 0 || v[1] < 0)
    return pp__diag_at(diag, n, "expected {min: N, max: M} with both given");
  if (v[0] > v[1])
    return pp__diag_at(diag, n,
                       "expected {min: N, max: M} with min <= max, got "
                       "{min: %d, max: %d}",
                       (int)v[0], (int)v[1]);
  cfg->size = (int)v[0];
  cfg->size_max = (int)v[1];
  cfg->elastic = 1;
  *FIELD(cfg, k->off2, int) = 0;
  return 0;
}

static int set_int(pp_config_t *cfg, const pp__key_t *k, yaml_document_t *doc,
                   const yaml_node_t *n, pp_diag_t *diag) {
  char what[96];
  const char *s;
  size_t len;
  int64_t v;
  int is_auto;

  if (k->type == PP__T_SIZE) {
    if (n->type == YAML_MAPPING_NODE)
      return set_size_range(cfg, k, doc, n, diag);
    if (size_scalar(k, n, &v, &is_auto) == 0) {
      num_put(cfg, k->off, k->ctype, v);
      *FIELD(cfg, k->off2, int) = is_auto;
      /* A fixed pool: min = max. */
      cfg->size_max = (int)v;
      cfg->elastic = 0;
      return 0;
    }
  } else if (plain_value(n)) {
    s = text_of(n, &len);
    if (parse_int(s, len, &v) == NUM_OK && v >= k->min && v <= k->max) {
      num_put(cfg, k->off, k->ctype, v);
      return 0;
    }
  }
  pp__range_text(k, what, sizeof(what));
  return expected(diag, n, what);
}

/* One duration from text, with its own messages; n is where to point. */
static int duration_from(const pp__key_t *k, const yaml_node_t *n,
                         const char *s, size_t len, uint64_t *ms,
                         pp_diag_t *diag) {
  char what[96];

  switch (with_unit(s, len, dur_units, 0, ms)) {
  case NUM_OK:
    if ((int64_t)*ms >= k->min && *ms <= (uint64_t)k->max)
      return 0;
    /* fall through */
  case NUM_RANGE:
    pp__range_text(k, what, sizeof(what));
    return expected_text(diag, n, what, s, len);
  case NUM_NOUNIT:
    snprintf(what, sizeof(what), "a duration with a unit, like %.*ss or %.*sms",
             (int)(len > 20 ? 20 : len), s, (int)(len > 20 ? 20 : len), s);
    return expected_text(diag, n, what, s, len);
  case NUM_INEXACT:
    return expected_text(diag, n, "a whole number of milliseconds", s, len);
  default:
    return expected_text(diag, n, DURATION_LIKE, s, len);
  }
}

static int set_duration(pp_config_t *cfg, const pp__key_t *k,
                        const yaml_node_t *n, pp_diag_t *diag) {
  const char *s;
  size_t len;
  uint64_t ms;
  int rc;

  if (!plain_value(n))
    return expected(diag, n, DURATION_LIKE);
  s = text_of(n, &len);
  rc = duration_from(k, n, s, len, &ms, diag);
  if (rc == 0)
    *FIELD(cfg, k->off, uint64_t) = ms;
  return rc;
}

static int set_memory(pp_config_t *cfg, const pp__key_t *k,
                      const yaml_node_t *n, pp_diag_t *diag) {
  char what[96];
  const char *s;
  size_t len;
  uint64_t v;

  if (!plain_value(n))
    return expected(diag, n, MEMORY_LIKE);
  s = text_of(n, &len);
  switch (with_unit(s, len, mem_units, 1, &v)) {
  case NUM_OK:
    if (v >= (uint64_t)k->min && v <= (uint64_t)k->max) {
      num_put(cfg, k->off, k->ctype, (int64_t)v);
      return 0;
    }
    /* fall through */
  case NUM_RANGE:
    pp__range_text(k, what, sizeof(what));
    return expected(diag, n, what);
  case NUM_INEXACT:
    return expected(diag, n, "a whole number of bytes");
  default:
    return expected(diag, n, MEMORY_LIKE);
  }
}

static int set_enum(pp_config_t *cfg, const pp__key_t *k, const yaml_node_t *n,
                    pp_diag_t *diag) {
  char what[96], got[96];
  const char *s;
  size_t len, best = SIZE_MAX;
  int near = -1;

  if (plain_value(n)) {
    s = text_of(n, &len);
    for (int i = 0; k->choices[i] != NULL; i++) {
      const char *c = k->choices[i];
      size_t d = pp__distance(s, len, c, strlen(c));
      if (d == 0) {
        if (k->flags & PP__F_STRVAL) {
          char *dup = pp__cfg_strndup(c, strlen(c));
          if (dup == NULL)
            return UV_ENOMEM;
          free(*FIELD(cfg, k->off, char *));
          *FIELD(cfg, k->off, char *) = dup;
        } else {
          num_put(cfg, k->off, k->ctype, i);
        }
        return 0;
      }
      if (d < best)
        best = d, near = i;
    }
  }
  pp__choices_text(k, what, sizeof(what));
  if (near >= 0 && best <= 2) {
    describe(n, got, sizeof(got));
    return pp__diag_at(diag, n, "expected %s, got %s; did you mean '%s'?", what,
                       got, k->choices[near]);
  }
  return expected(diag, n, what);
}

static int set_mode(pp_config_t *cfg, const pp__key_t *k, const yaml_node_t *n,
                    pp_diag_t *diag) {
  const char *s;
  size_t len, i = 0;
  int v = 0;

  if (!plain_value(n))
    return expected(diag, n, MODE_LIKE);
  s = text_of(n, &len);
  if (len > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'O'))
    i = 2;
  if (i == len || len - i > 6)
    return expected(diag, n, MODE_LIKE);
  for (; i < len; i++) {
    if (s[i] < '0' || s[i] > '7')
      return expected(diag, n, MODE_LIKE);
    v = v * 8 + (s[i] - '0');
  }
  if (v < k->min || v > k->max)
    return expected(diag, n, "an octal file mode from 0000 to 0777");
  num_put(cfg, k->off, k->ctype, v);
  return 0;
}

static void strv_store(pp_config_t *cfg, const pp__key_t *k, char **v,
                       size_t n) {
  pp__strv_free(*FIELD(cfg, k->off, char **));
  *FIELD(cfg, k->off, char **) = v;
  *FIELD(cfg, k->off2, int) = (int)n;
}

static int set_list(pp_config_t *cfg, const pp__key_t *k, yaml_document_t *doc,
                    const yaml_node_t *n, pp_diag_t *diag) {
  const yaml_node_t *at;
  const char *s;
  size_t len, i = 0;
  items_t it;
  char **v;
  int r;

  if (!items_open(&it, doc, n))
    return expected(diag, n, LIST_LIKE);
  v = pp__cfg_malloc((it.count + 1) * sizeof(*v));
  if (v == NULL)
    return UV_ENOMEM;
  v[0] = NULL;
  while ((r = items_next(&it, &s, &len, &at, diag)) == 1) {
    v[i] = pp__cfg_strndup(s, len);
    if (v[i] == NULL) {
      r = UV_ENOMEM;
      goto fail;
    }
    v[++i] = NULL;
  }
  if (r != 0) {
    r = PP_ECONFIG;
    goto fail;
  }
  strv_store(cfg, k, v, i);
  return 0;

fail:
  pp__strv_free(v);
  return r;
}

static int env_name_ok(const char *s, size_t len) {
  if (len == 0 || (s[0] >= '0' && s[0] <= '9'))
    return 0;
  for (size_t i = 0; i < len; i++)
    if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') ||
          (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
      return 0;
  return 1;
}

/* Put NAME=value into v (c entries, room for one more), replacing an entry
 * of the same name; value NULL removes it.  Returns 0 or UV_ENOMEM. */
static int env_put(char **v, size_t *c, const char *name, size_t nlen,
                   const char *value, size_t vlen) {
  size_t i;
  char *e = NULL;

  if (value != NULL) {
    e = pp__cfg_malloc(nlen + vlen + 2);
    if (e == NULL)
      return UV_ENOMEM;
    memcpy(e, name, nlen);
    e[nlen] = '=';
    memcpy(e + nlen + 1, value, vlen);
    e[nlen + vlen + 1] = '\0';
  }
  for (i = 0; i < *c; i++)
    if (strncmp(v[i], name, nlen) == 0 && v[i][nlen] == '=')
      break;
  if (i < *c) {
    free(v[i]);
    if (e != NULL) {
      v[i] = e;
      return 0;
    }
    memmove(v + i, v + i + 1, (*c - i) * sizeof(*v)); /* with the NULL */
    (*c)--;
    return 0;
  }
  if (e != NULL) {
    v[(*c)++] = e;
    v[*c] = NULL;
  }
  return 0;
}

/* worker.env: a mapping NAME: value (null removes NAME), or NAME=value
 * items (a sequence, or words of a scalar), merged into what is there. */
static int set_env(pp_config_t *cfg, const pp__key_t *k, yaml_document_t *doc,
                   const yaml_node_t *n, pp_diag_t *diag) {
  char **old = *FIELD(cfg, k->off, char **), **v;
  size_t c = 0, nin, nold = 0;
  items_t it;
  int rc = 0, r;

  if (n->type == YAML_MAPPING_NODE)
    nin = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  else if (items_open(&it, doc, n))
    nin = it.count;
  else
    return expected(diag, n, "a mapping of NAME: value");
  while (old != NULL && old[nold] != NULL)
    nold++;
  v = pp__cfg_malloc((nold + nin + 1) * sizeof(*v));
  if (v == NULL)
    return UV_ENOMEM;
  v[0] = NULL;
  for (; c < nold; c++) {
    v[c] = pp__cfg_strndup(old[c], strlen(old[c]));
    if (v[c] == NULL) {
      rc = UV_ENOMEM;
      goto fail;
    }
    v[c + 1] = NULL;
  }

  if (n->type == YAML_MAPPING_NODE) {
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
         p < n->data.mapping.pairs.top; p++) {
      yaml_node_t *kn = yaml_document_get_node(doc, p->key);
      yaml_node_t *vn = yaml_document_get_node(doc, p->value);
      const char *name = NULL, *value = NULL;
      size_t nlen = 0, vlen = 0;
      if (plain_value(kn))
        name = text_of(kn, &nlen);
      if (name == NULL || !env_name_ok(name, nlen)) {
        rc = expected(diag, kn, "an environment variable name");
        goto fail;
      }
      for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
        yaml_node_t *qn = yaml_document_get_node(doc, q->key);
        if (qn->data.scalar.length == nlen &&
            memcmp(qn->data.scalar.value, name, nlen) == 0) {
          rc = pp__diag_at(diag, kn, "duplicate variable '%.*s'", (int)nlen,
                           name);
          goto fail;
        }
      }
      if (!is_null(vn)) {
        if (!plain_value(vn)) {
          rc = expected(diag, vn, "a string");
          goto fail;
        }
        value = text_of(vn, &vlen);
      }
      rc = env_put(v, &c, name, nlen, value, vlen);
      if (rc != 0)
        goto fail;
    }
  } else {
    const yaml_node_t *at;
    const char *s, *eq;
    size_t len;
    while ((r = items_next(&it, &s, &len, &at, diag)) == 1) {
      eq = memchr(s, '=', len);
      if (eq == NULL || !env_name_ok(s, (size_t)(eq - s))) {
        rc = expected_text(diag, at, "NAME=value", s, len);
        goto fail;
      }
      rc = env_put(v, &c, s, (size_t)(eq - s), eq + 1,
                   len - (size_t)(eq - s) - 1);
      if (rc != 0)
        goto fail;
    }
    if (r < 0) {
      rc = PP_ECONFIG;
      goto fail;
    }
  }
  strv_store(cfg, k, v, c);
  return 0;

fail:
  pp__strv_free(v);
  return rc;
}

static int set_backoff(pp_config_t *cfg, const pp__key_t *k,
                       yaml_document_t *doc, const yaml_node_t *n,
                       pp_diag_t *diag) {
  uint64_t ms[2];
  const yaml_node_t *at;
  const char *s;
  char a[32], b[32];
  size_t len;
  items_t it;
  int r;

  if (!items_open(&it, doc, n) || it.count != 2)
    return expected(diag, n, BACKOFF_LIKE);
  for (int i = 0; i < 2; i++) {
    r = items_next(&it, &s, &len, &at, diag);
    if (r < 0)
      return PP_ECONFIG;
    if (duration_from(k, at, s, len, &ms[i], diag) != 0)
      return PP_ECONFIG;
  }
  if (ms[0] > ms[1]) {
    pp__dur_text(ms[0], a, sizeof(a));
    pp__dur_text(ms[1], b, sizeof(b));
    return pp__diag_at(diag, n,
                       "expected [min, max] with min <= max, got "
                       "[%s, %s]",
                       a, b);
  }
  *FIELD(cfg, k->off, uint64_t) = ms[0];
  *FIELD(cfg, k->off2, uint64_t) = ms[1];
  return 0;
}

int pp__value_set(pp_config_t *cfg, const pp__key_t *k, yaml_document_t *doc,
                  const yaml_node_t *node, pp_diag_t *diag) {
  if ((k->flags & PP__F_UNSET) && is_null(node)) {
    assert(k->ctype == PP__C_U64);
    *FIELD(cfg, k->off, uint64_t) = PP_LIMIT_UNSET;
    return 0;
  }
  switch (k->type) {
  case PP__T_STRING:
    return set_string(cfg, k, node, diag);
  case PP__T_INT:
  case PP__T_SIZE:
    return set_int(cfg, k, doc, node, diag);
  case PP__T_DURATION:
    return set_duration(cfg, k, node, diag);
  case PP__T_MEMORY:
    return set_memory(cfg, k, node, diag);
  case PP__T_ENUM:
    return set_enum(cfg, k, node, diag);
  case PP__T_LIST:
    return set_list(cfg, k, doc, node, diag);
  case PP__T_ENV:
    return set_env(cfg, k, doc, node, diag);
  case PP__T_BACKOFF:
    return set_backoff(cfg, k, doc, node, diag);
  case PP__T_MODE:
    return set_mode(cfg, k, node, diag);
  }
  return PP_ECONFIG;
}
