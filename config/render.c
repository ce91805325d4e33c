/* render.c -- config fields back to text: each key's YAML form for
 * pp_config_get, the texts messages quote (values, ranges, choices), and
 * the bounds check of a field that may have been changed by hand. */
#include "keys.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int64_t num_get(const pp_config_t *cfg, size_t off, pp__ctype_t ct) {
  switch (ct) {
  case PP__C_U64: {
    uint64_t v = *CFIELD(cfg, off, uint64_t);
    return v > INT64_MAX ? INT64_MAX : (int64_t)v;
  }
  case PP__C_U32:
    return *CFIELD(cfg, off, uint32_t);
  default:
    return *CFIELD(cfg, off, int);
  }
}

/* ------------------------------------------------------- output */

typedef struct out {
  char *p;
  size_t cap, n;
  int full;
} out_t;

static void out_init(out_t *o, char *buf, size_t len) {
  o->p = buf, o->cap = len, o->n = 0, o->full = len == 0;
  if (len > 0)
    buf[0] = '\0';
}

static void put(out_t *o, const char *s, size_t len) {
  if (o->full)
    return;
  if (len >= o->cap - o->n) {
    o->full = 1;
    return;
  }
  memcpy(o->p + o->n, s, len);
  o->n += len;
  o->p[o->n] = '\0';
}

static void puts_(out_t *o, const char *s) { put(o, s, strlen(s)); }

static void putf(out_t *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void putf(out_t *o, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  int w;

  va_start(ap, fmt);
  w = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  if (w < 0 || (size_t)w >= sizeof(tmp))
    o->full = 1;
  else
    put(o, tmp, (size_t)w);
}

int pp__null_word(const char *s, size_t len) {
  return len == 0 || (len == 1 && s[0] == '~') ||
         (len == 4 && (memcmp(s, "null", 4) == 0 || memcmp(s, "Null", 4) == 0 ||
                       memcmp(s, "NULL", 4) == 0));
}

/* A character YAML will not take back as it is, even inside double quotes:
 * NEL, LS and PS are line breaks there (folded into a space), the other C1
 * controls, the BOM, U+FFFE and U+FFFF are not printable.  Returns the
 * length of its UTF-8 sequence at s[i] (0: none) and its escape. */
static size_t special_char(const char *s, size_t len, size_t i, char esc[8]) {
  const unsigned char *u = (const unsigned char *)s + i;
  size_t left = len - i;

  if (left >= 2 && u[0] == 0xc2 && u[1] >= 0x80 && u[1] <= 0x9f) {
    snprintf(esc, 8, "\\x%02x", u[1]); /* \x85 is NEL */
    return 2;
  }
  if (left >= 3 && u[0] == 0xe2 && u[1] == 0x80 &&
      (u[2] == 0xa8 || u[2] == 0xa9)) {
    snprintf(esc, 8, "%s", u[2] == 0xa8 ? "\\L" : "\\P");
    return 3;
  }
  if (left >= 3 && u[0] == 0xef &&
      ((u[1] == 0xbb && u[2] == 0xbf) || (u[1] == 0xbf && u[2] >= 0xbe))) {
    snprintf(esc, 8, "\\u%s",
             u[1] == 0xbb   ? "feff"
             : u[2] == 0xbe ? "fffe"
                            : "ffff");
    return 3;
  }
  return 0;
}

/* Would a plain scalar read back differently (or at all) in a flow
 * collection?  Be generous: quoting is always correct. */
static int needs_quotes(const char *s, size_t len) {
  char esc[8];

  if (pp__null_word(s, len) || strchr("?:,[]{}#&*!|>'\"%@` ", s[0]) != NULL ||
      s[len - 1] == ' ')
    return 1;
  /* "-u" is a plain scalar, "-" and "- x" are not. */
  if (s[0] == '-' && (len == 1 || s[1] == ' '))
    return 1;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f || strchr(",[]{}#:\"'\\", c) != NULL ||
        special_char(s, len, i, esc) > 0)
      return 1;
  }
  return 0;
}

/* One character inside a double-quoted YAML scalar. */
static void put_escaped(out_t *o, unsigned char c) {
  if (c == '"' || c == '\\') {
    char esc[2] = {'\\', (char)c};
    put(o, esc, 2);
  } else if (c == '\n') {
    puts_(o, "\\n");
  } else if (c == '\t') {
    puts_(o, "\\t");
  } else if (c < 0x20 || c == 0x7f) {
    putf(o, "\\x%02x", c);
  } else {
    put(o, (const char *)&c, 1);
  }
}

static void put_quoted(out_t *o, const char *s, size_t len) {
  char esc[8];
  size_t n;

  puts_(o, "\"");
  for (size_t i = 0; i < len; i++) {
    if ((n = special_char(s, len, i, esc)) > 0) {
      puts_(o, esc);
      i += n - 1;
    } else {
      put_escaped(o, (unsigned char)s[i]);
    }
  }
  puts_(o, "\"");
}

/* A string as a YAML scalar. */
static void put_scalar(out_t *o, const char *s, size_t len) {
  if (needs_quotes(s, len))
    put_quoted(o, s, len);
  else
    put(o, s, len);
}

/* ------------------------------------------------------- texts */

void pp__dur_text(uint64_t ms, char *buf, size_t len) {
  static const struct {
    const char *name;
    uint64_t ms;
  } units[] = {{"h", 3600000}, {"m", 60000}, {"s", 1000}};

  if (ms == 0) {
    snprintf(buf, len, "0");
    return;
  }
  for (size_t i = 0; i < sizeof(units) / sizeof(*units); i++)
    if (ms % units[i].ms == 0) {
      snprintf(buf, len, "%" PRIu64 "%s", ms / units[i].ms, units[i].name);
      return;
    }
  snprintf(buf, len, "%" PRIu64 "ms", ms);
}

/* Bytes in the largest binary unit that divides them. */
static void mem_text(uint64_t n, char *buf, size_t len) {
  static const char *const names[] = {"TiB", "GiB", "MiB", "KiB"};

  for (int i = 0; i < 4; i++) {
    uint64_t unit = UINT64_C(1) << (40 - 10 * i);
    if (n != 0 && n % unit == 0) {
      snprintf(buf, len, "%" PRIu64 "%s", n / unit, names[i]);
      return;
    }
  }
  snprintf(buf, len, "%" PRIu64, n);
}

/* What a key accepts, for messages. */
void pp__range_text(const pp__key_t *k, char *buf, size_t len) {
  char a[32], b[32];

  switch (k->type) {
  case PP__T_SIZE:
    snprintf(buf, len, "auto or an integer from %" PRId64 " to %" PRId64,
             k->min, k->max);
    break;
  case PP__T_DURATION:
  case PP__T_BACKOFF:
    pp__dur_text((uint64_t)k->min, a, sizeof(a));
    pp__dur_text((uint64_t)k->max, b, sizeof(b));
    if (k->min == 0)
      snprintf(buf, len, "a duration of at most %s", b);
    else
      snprintf(buf, len, "a duration from %s to %s", a, b);
    break;
  case PP__T_MEMORY:
    mem_text((uint64_t)k->min, a, sizeof(a));
    mem_text((uint64_t)k->max, b, sizeof(b));
    if (k->min == 0)
      snprintf(buf, len, "a size of at most %s", b);
    else
      snprintf(buf, len, "a size from %s to %s", a, b);
    break;
  case PP__T_MODE:
    snprintf(buf, len, "an octal file mode from 0000 to 0777");
    break;
  default:
    if (k->max == INT64_MAX)
      snprintf(buf, len, "an integer of at least %" PRId64, k->min);
    else
      snprintf(buf, len, "an integer from %" PRId64 " to %" PRId64, k->min,
               k->max);
    break;
  }
}

/* `"text"` for messages: escaped, and cut short (with ...) to fit in a
 * buffer of at least 16 bytes. */
void pp__quote_text(const char *s, size_t len, char *buf, size_t cap) {
  out_t o;
  size_t i = 0;

  out_init(&o, buf, cap);
  puts_(&o, "\"");
  /* Leave room for the longest escape, "...", the quote and the NUL. */
  for (; i < len && i < 60 && o.n + 4 + 5 < cap; i++)
    put_escaped(&o, (unsigned char)s[i]);
  if (i < len)
    puts_(&o, "...");
  puts_(&o, "\"");
}

void pp__choices_text(const pp__key_t *k, char *buf, size_t len) {
  out_t o;
  out_init(&o, buf, len);
  puts_(&o, "one of ");
  for (int i = 0; k->choices[i] != NULL; i++) {
    if (i > 0)
      puts_(&o, ", ");
    puts_(&o, k->choices[i]);
  }
}

/* ------------------------------------------------------- rendering */

static void render(const pp_config_t *cfg, const pp__key_t *k, out_t *o) {
  char t[32];
  const char *s;
  char *const *v;

  /* An unset limit renders as nothing, which reads back as null. */
  if ((k->flags & PP__F_UNSET) &&
      *CFIELD(cfg, k->off, uint64_t) == PP_LIMIT_UNSET)
    return;
  switch (k->type) {
  case PP__T_STRING:
    s = *CFIELD(cfg, k->off, char *);
    if (s != NULL)
      put_scalar(o, s, strlen(s));
    break;
  case PP__T_SIZE:
    if (cfg->elastic) {
      putf(o, "{min: %d, max: %d}", cfg->size, cfg->size_max);
      break;
    }
    if (*CFIELD(cfg, k->off2, int)) {
      puts_(o, "auto");
      break;
    }
    /* fall through */
  case PP__T_INT:
    if (k->ctype == PP__C_U64)
      putf(o, "%" PRIu64, *CFIELD(cfg, k->off, uint64_t));
    else
      putf(o, "%" PRId64, num_get(cfg, k->off, k->ctype));
    break;
  case PP__T_DURATION:
    pp__dur_text(*CFIELD(cfg, k->off, uint64_t), t, sizeof(t));
    puts_(o, t);
    break;
  case PP__T_MEMORY:
    mem_text(k->ctype == PP__C_U64 ? *CFIELD(cfg, k->off, uint64_t)
                                   : (uint64_t)num_get(cfg, k->off, k->ctype),
             t, sizeof(t));
    puts_(o, t);
    break;
  case PP__T_ENUM:
    if (k->flags & PP__F_STRVAL) {
      s = *CFIELD(cfg, k->off, char *);
      if (s != NULL)
        put_scalar(o, s, strlen(s));
    } else {
      int64_t i = num_get(cfg, k->off, k->ctype), n = 0;
      while (k->choices[n] != NULL)
        n++;
      if (i >= 0 && i < n)
        puts_(o, k->choices[i]);
      else
        putf(o, "%" PRId64, i);
    }
    break;
  case PP__T_LIST:
  case PP__T_ENV:
    v = *CFIELD(cfg, k->off, char **);
    puts_(o, k->type == PP__T_LIST ? "[" : "{");
    for (size_t i = 0; v != NULL && v[i] != NULL; i++) {
      if (i > 0)
        puts_(o, ", ");
      const char *eq = strchr(v[i], '=');
      if (k->type == PP__T_LIST || eq == NULL) {
        put_scalar(o, v[i], strlen(v[i]));
      } else {
        put_scalar(o, v[i], (size_t)(eq - v[i]));
        puts_(o, ": ");
        put_scalar(o, eq + 1, strlen(eq + 1));
      }
    }
    /* Setting worker.env merges into what is there (the defaults first):
     * a default that was removed is written as NAME: null, so that the
     * text sets back to the same value. */
    if (k->type == PP__T_ENV) {
      int any = v != NULL && v[0] != NULL;
      for (size_t d = 0; k->def_items != NULL && k->def_items[d] != NULL; d++) {
        const char *def = k->def_items[d], *deq = strchr(def, '=');
        size_t nlen = deq ? (size_t)(deq - def) : strlen(def), i = 0;
        while (v != NULL && v[i] != NULL &&
               !(strncmp(v[i], def, nlen) == 0 && v[i][nlen] == '='))
          i++;
        if (v != NULL && v[i] != NULL)
          continue;
        if (any)
          puts_(o, ", ");
        any = 1;
        put(o, def, nlen);
        puts_(o, ": null");
      }
    }
    puts_(o, k->type == PP__T_LIST ? "]" : "}");
    break;
  case PP__T_BACKOFF:
    puts_(o, "[");
    pp__dur_text(*CFIELD(cfg, k->off, uint64_t), t, sizeof(t));
    puts_(o, t);
    puts_(o, ", ");
    pp__dur_text(*CFIELD(cfg, k->off2, uint64_t), t, sizeof(t));
    puts_(o, t);
    puts_(o, "]");
    break;
  case PP__T_MODE:
    putf(o, "%04o", (unsigned)num_get(cfg, k->off, k->ctype));
    break;
  }
}

int pp__value_render(const pp_config_t *cfg, const pp__key_t *k, char *buf,
                     size_t len) {
  out_t o;
  out_init(&o, buf, len);
  render(cfg, k, &o);
  return o.full ? UV_ENOBUFS : 0;
}

/* ------------------------------------------------------- checks */

int pp__value_check(const pp_config_t *cfg, const pp__key_t *k,
                    pp_diag_t *diag) {
  char what[96], got[96];
  const char *s;
  int64_t v;

  switch (k->type) {
  case PP__T_STRING:
    s = *CFIELD(cfg, k->off, char *);
    if (!(k->flags & PP__F_NULLABLE) && (s == NULL || s[0] == '\0'))
      return pp__diag_at(diag, NULL, "expected a non-empty string");
    return 0;
  case PP__T_LIST:
    return 0;
  case PP__T_ENV: {
    char *const *e = *CFIELD(cfg, k->off, char **);
    for (size_t i = 0; e != NULL && e[i] != NULL; i++)
      if (strchr(e[i], '=') == NULL)
        return pp__diag_at(diag, NULL,
                           "expected NAME=value entries, got "
                           "\"%.60s\"",
                           e[i]);
    return 0;
  }
  case PP__T_ENUM:
    s = k->flags & PP__F_STRVAL ? *CFIELD(cfg, k->off, char *) : NULL;
    v = k->flags & PP__F_STRVAL ? -1 : num_get(cfg, k->off, k->ctype);
    for (int i = 0; k->choices[i] != NULL; i++)
      if (v == i || (s != NULL && strcmp(s, k->choices[i]) == 0))
        return 0;
    pp__choices_text(k, what, sizeof(what));
    break;
  case PP__T_BACKOFF: {
    int64_t lo = num_get(cfg, k->off, k->ctype);
    int64_t hi = num_get(cfg, k->off2, k->ctype);
    if (lo >= k->min && lo <= k->max && hi >= k->min && hi <= k->max)
      return 0;
    pp__range_text(k, what, sizeof(what));
    break;
  }
  default:
    if ((k->flags & PP__F_UNSET) &&
        *CFIELD(cfg, k->off, uint64_t) == PP_LIMIT_UNSET)
      return 0;
    v = num_get(cfg, k->off, k->ctype);
    if (v >= k->min && v <= k->max)
      return 0;
    pp__range_text(k, what, sizeof(what));
    break;
  }
  /* The value as it stands (a long one cut short), a number for auto. */
  pp__value_render(cfg, k, got, sizeof(got));
  if (k->type == PP__T_SIZE)
    snprintf(got, sizeof(got), "%d", *CFIELD(cfg, k->off, int));
  return pp__diag_at(diag, NULL, "expected %s, got %s", what,
                     got[0] != '\0' ? got : "nothing");
}
