/* control_proto.c -- owns the request side of the control protocol: one
 * line of text in, a checked request out (docs/protocol.md), plus the pure
 * helpers the control socket needs (trace filters, JSON passed through as
 * written).  No libuv,
 * no pool, no allocation besides jansson's: the fuzz target drives it. */
#include "control_proto.h"

#include "portpool.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every trace type fits one bit of a filter mask. */
#define PP__TR_COUNT(name, str) +1
enum { CTL_NTRACE = 0 PP_TRACE_MAP(PP__TR_COUNT) };
#undef PP__TR_COUNT
_Static_assert(CTL_NTRACE <= 64, "a trace filter is a 64-bit mask");

static const char *const trace_names[] = {
#define PP__TR_STR(name, str) str,
    PP_TRACE_MAP(PP__TR_STR)
#undef PP__TR_STR
};

static const struct {
  const char *name;
  pp__ctl_op_t op;
} ops[] = {{"ping", PP_CTL_PING},   {"status", PP_CTL_STATUS},
           {"call", PP_CTL_CALL},   {"trace", PP_CTL_TRACE},
           {"scale", PP_CTL_SCALE}, {"restart", PP_CTL_RESTART},
           {"drain", PP_CTL_DRAIN}, {"undrain", PP_CTL_UNDRAIN},
           {"stop", PP_CTL_STOP},   {"reload", PP_CTL_RELOAD}};

#define NOPS (sizeof(ops) / sizeof(ops[0]))

/* The largest pool pp_pool_scale accepts, and so the largest slot id + 1. */
#define CTL_SIZE_MAX 4096

static void say(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;

  if (err == NULL || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* The trace type named by s[0..n), or -1. */
static int trace_type(const char *s, size_t n) {
  int i;

  for (i = 0; i < CTL_NTRACE; i++)
    if (strlen(trace_names[i]) == n && memcmp(trace_names[i], s, n) == 0)
      return i;
  return -1;
}

/* "unknown event "x" (events: spawn, hello, ...)" into err. */
static void unknown_event(const char *s, size_t n, char *err, size_t errlen) {
  size_t used;
  int i;

  say(err, errlen,
      "\"filter\": unknown event \"%.*s\" (events:", (int)(n > 64 ? 64 : n), s);
  for (i = 0; err && errlen && i < CTL_NTRACE; i++) {
    used = strlen(err);
    snprintf(err + used, errlen - used, " %s%s", trace_names[i],
             i + 1 < CTL_NTRACE ? "," : ")");
  }
}

int pp__ctl_trace_mask(const char *filter, uint64_t *mask, char *err,
                       size_t errlen) {
  const char *p = filter, *end;
  size_t n;
  int t;

  if (filter == NULL) {
    *mask = CTL_NTRACE == 64 ? ~(uint64_t)0 : ((uint64_t)1 << CTL_NTRACE) - 1;
    return 0;
  }
  *mask = 0;
  for (;;) {
    while (*p == ' ')
      p++;
    end = strchr(p, ',');
    n = end ? (size_t)(end - p) : strlen(p);
    while (n > 0 && p[n - 1] == ' ')
      n--;
    if (n == 0) {
      say(err, errlen, "\"filter\" has an empty event name");
      return -1;
    }
    if ((t = trace_type(p, n)) < 0) {
      unknown_event(p, n, err, errlen);
      return -1;
    }
    *mask |= (uint64_t)1 << t;
    if (end == NULL)
      return 0;
    p = end + 1;
  }
}

/* An optional integer field in [lo, hi]: 0 with *out set (left alone when
 * absent or null), -1 otherwise. */
static int get_int(json_t *root, const char *key, json_int_t lo, json_int_t hi,
                   json_int_t *out, char *err, size_t errlen) {
  json_t *v = json_object_get(root, key);

  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < lo ||
      json_integer_value(v) > hi) {
    if (hi == INT64_MAX)
      say(err, errlen, "\"%s\" must be an integer >= %lld", key, (long long)lo);
    else
      say(err, errlen, "\"%s\" must be an integer from %lld to %lld", key,
          (long long)lo, (long long)hi);
    return -1;
  }
  *out = json_integer_value(v);
  return 0;
}

static int parse_fields(pp__ctl_req_t *req, char *err, size_t errlen) {
  json_t *root = req->root, *v;
  json_int_t n;

  switch (req->op) {
  case PP_CTL_CALL:
    req->payload = json_object_get(root, "payload");
    if (req->payload == NULL) {
      say(err, errlen, "call needs a \"payload\"");
      return -1;
    }
    n = -1;
    if (get_int(root, "timeout_ms", 0, INT64_MAX, &n, err, errlen) != 0)
      return -1;
    req->timeout_ms = n;
    v = json_object_get(root, "stream");
    if (v && !json_is_boolean(v)) {
      say(err, errlen, "\"stream\" must be true or false");
      return -1;
    }
    req->stream = json_is_true(v);
    return 0;
  case PP_CTL_TRACE:
    v = json_object_get(root, "filter");
    if (v == NULL || json_is_null(v))
      return 0;
    if (!json_is_string(v)) {
      say(err, errlen,
          "\"filter\" must be a string of event names separated by commas");
      return -1;
    }
    req->filter = json_string_value(v);
    {
      uint64_t mask;
      return pp__ctl_trace_mask(req->filter, &mask, err, errlen);
    }
  case PP_CTL_SCALE:
    /* "n": a fixed size; or "min" and "max": an elastic pool. */
    v = json_object_get(root, "n");
    if ((v == NULL || json_is_null(v)) && json_object_get(root, "min") &&
        json_object_get(root, "max")) {
      json_int_t lo = 0, hi = 0;
      if (get_int(root, "min", 1, CTL_SIZE_MAX, &lo, err, errlen) != 0 ||
          get_int(root, "max", 1, CTL_SIZE_MAX, &hi, err, errlen) != 0)
        return -1;
      if (lo > hi) {
        say(err, errlen, "scale needs \"min\" <= \"max\"");
        return -1;
      }
      req->min = (int)lo;
      req->max = (int)hi;
    } else if (v == NULL || json_is_null(v)) {
      say(err, errlen,
          "scale needs \"n\", the new number of workers, or \"min\" and "
          "\"max\"");
      return -1;
    } else {
      n = 0;
      if (get_int(root, "n", 1, CTL_SIZE_MAX, &n, err, errlen) != 0)
        return -1;
      req->n = (int)n;
    }
    v = json_object_get(root, "force");
    if (v == NULL || json_is_null(v))
      req->force = 0;
    else if (json_is_boolean(v))
      req->force = json_is_true(v);
    else if (json_is_integer(v) &&
             (json_integer_value(v) == 0 || json_integer_value(v) == 1))
      req->force = (int)json_integer_value(v);
    else {
      say(err, errlen, "\"force\" must be true or false");
      return -1;
    }
    return 0;
  case PP_CTL_RESTART:
    n = -1;
    if (get_int(root, "slot", -1, CTL_SIZE_MAX - 1, &n, err, errlen) != 0)
      return -1;
    req->slot = (int)n;
    return 0;
  default:
    return 0;
  }
}

/* Move the value of the top-level member key out of the compact request
 * text[0..*n) into a malloc'd copy (*raw, *rawlen), leaving null in its
 * place.  Returns 0 (*raw NULL when there is no such member), -1 out of
 * memory. */
static int take_member(char *text, size_t *n, const char *key, char **raw,
                       size_t *rawlen) {
  size_t at, len;

  *raw = NULL;
  *rawlen = 0;
  /* text is compact already: scanning it again writes nothing, and the
   * offsets it gives are offsets into text. */
  if (text[0] != '{' ||
      pp__ctl_json_compact(text, *n, NULL, key, &at, &len) < 0 || len == 0)
    return 0;
  *raw = malloc(len + 1);
  if (*raw == NULL)
    return -1;
  memcpy(*raw, text + at, len);
  (*raw)[len] = '\0';
  *rawlen = len;
  /* "null" is at most as long as any value but a one-digit number. */
  memmove(text + at + 4, text + at + len, *n - at - len);
  memcpy(text + at, "null", 4);
  *n = *n - len + 4;
  return 0;
}

/* The request as jansson should see it: compact, with the call's payload
 * and the id taken out (kept byte for byte in req->payload_raw, req->id)
 * and null in their places, so that no number in them is ever converted.
 * Returns the text (malloc'd) or NULL: not JSON (*fatal set) or out of
 * memory. */
static char *take_raw(const char *line, size_t len, pp__ctl_req_t *req,
                      size_t *outlen, int *fatal) {
  size_t idlen;
  char *text;
  long n;

  *fatal = 0;
  text = malloc(len + 8); /* two one-digit values may become null */
  if (text == NULL)
    return NULL;
  n = pp__ctl_json_compact(line, len, text, NULL, NULL, NULL);
  if (n < 0) {
    *fatal = 1;
    free(text);
    return NULL;
  }
  *outlen = (size_t)n;
  if (take_member(text, outlen, "payload", &req->payload_raw,
                  &req->payload_len) != 0 ||
      take_member(text, outlen, "id", &req->id, &idlen) != 0) {
    free(text);
    return NULL;
  }
  return text;
}

/* On an invalid request, everything but the id goes. */
static int invalid(pp__ctl_req_t *req) {
  char *id = req->id;

  req->id = NULL;
  pp__ctl_req_free(req);
  req->id = id;
  return PP_CTL_EINVAL;
}

int pp__ctl_parse(const char *line, size_t len, pp__ctl_req_t *req, char *err,
                  size_t errlen) {
  json_error_t jerr;
  json_t *op;
  const char *name;
  size_t i, tlen = 0;
  char *text;
  int fatal;

  memset(req, 0, sizeof(*req));
  req->timeout_ms = -1;
  req->slot = -1;
  if (err && errlen)
    err[0] = '\0';
  while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' ||
                     line[len - 1] == '\t'))
    len--;
  text = take_raw(line, len, req, &tlen, &fatal);
  if (text == NULL && fatal) {
    /* jansson says where, for the message. */
    json_t *v = json_loadb(line, len, JSON_DECODE_ANY, &jerr);
    if (v == NULL && json_error_code(&jerr) == json_error_stack_overflow)
      say(err, errlen,
          "request nests deeper than %d levels (column %d); send a flatter "
          "request",
          PP_CTL_JSON_DEPTH, jerr.column);
    else if (v == NULL)
      say(err, errlen, "request is not JSON: %s (column %d)", jerr.text,
          jerr.column);
    else
      say(err, errlen, "request is not JSON");
    json_decref(v);
    return PP_CTL_EFATAL;
  }
  if (text == NULL) {
    say(err, errlen, "out of memory");
    return invalid(req);
  }
  /* One parser decides what a key is: two members of the same name (as
   * jansson decodes them) would let the raw scanner and jansson disagree
   * on which one counts. */
  req->root =
      json_loadb(text, tlen, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
  free(text);
  if (req->root == NULL && json_error_code(&jerr) == json_error_duplicate_key) {
    say(err, errlen,
        "request has a key twice: %s (column %d); send each key once",
        jerr.text, jerr.column);
    return invalid(req);
  }
  if (req->root == NULL) {
    /* Valid JSON that jansson cannot hold: a number out of its range. */
    say(err, errlen, "request field out of range: %s (column %d)", jerr.text,
        jerr.column);
    return invalid(req);
  }
  if (!json_is_object(req->root)) {
    say(err, errlen, "a request must be a JSON object");
    return invalid(req);
  }
  /* "payload" and "id" are taken as written, found by their plain bytes:
   * one spelled with escapes (\u0070ayload) is refused, not decoded. */
  if ((req->payload_raw == NULL && json_object_get(req->root, "payload")) ||
      (req->id == NULL && json_object_get(req->root, "id"))) {
    say(err, errlen,
        "write the keys \"payload\" and \"id\" plainly, without escapes "
        "(\\u...) in them");
    return invalid(req);
  }
  op = json_object_get(req->root, "op");
  name = json_string_value(op);
  if (name == NULL) {
    say(err, errlen, "a request needs a string \"op\"");
    return invalid(req);
  }
  for (i = 0; i < NOPS; i++)
    if (strcmp(ops[i].name, name) == 0)
      break;
  if (i == NOPS) {
    say(err, errlen,
        "unknown op \"%.200s\" (expected ping, status, call, trace, scale, "
        "restart, drain, undrain, stop or reload)",
        name);
    return invalid(req);
  }
  req->op = ops[i].op;
  if (parse_fields(req, err, errlen) != 0)
    return invalid(req);
  return 0;
}

void pp__ctl_req_free(pp__ctl_req_t *req) {
  if (req == NULL)
    return;
  json_decref(req->root);
  req->root = NULL;
  free(req->payload_raw);
  req->payload_raw = NULL;
  req->payload_len = 0;
  free(req->id);
  req->id = NULL;
  req->payload = NULL;
  req->filter = NULL;
}

/* ------------------------------------------------------ JSON, as written */

typedef struct jscan {
  const unsigned char *s;
  size_t n, i;
  char *out;
  size_t o;
} jscan_t;

static void j_ws(jscan_t *j) {
  while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' ||
                         j->s[j->i] == '\n' || j->s[j->i] == '\r'))
    j->i++;
}

static void j_copy(jscan_t *j, size_t from) {
  if (j->out)
    memcpy(j->out + j->o, j->s + from, j->i - from);
  j->o += j->i - from;
}

static int j_hex(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}

/* The length of the well-formed UTF-8 sequence at s[0..n), or 0. */
static size_t j_utf8(const unsigned char *s, size_t n) {
  size_t len, k;
  unsigned cp;

  if (s[0] >= 0xc2 && s[0] <= 0xdf)
    len = 2, cp = s[0] & 0x1fu;
  else if (s[0] >= 0xe0 && s[0] <= 0xef)
    len = 3, cp = s[0] & 0x0fu;
  else if (s[0] >= 0xf0 && s[0] <= 0xf4)
    len = 4, cp = s[0] & 0x07u;
  else
    return 0;
  if (n < len)
    return 0;
  for (k = 1; k < len; k++) {
    if ((s[k] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[k] & 0x3fu);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return len;
}

/* A string at j->i; its body (without quotes) is s[*body, *body + *blen). */
static int j_string(jscan_t *j, size_t *body, size_t *blen) {
  size_t from = j->i, k;
  unsigned char c;

  if (j->i >= j->n || j->s[j->i] != '"')
    return -1;
  j->i++;
  *body = j->i;
  while (j->i < j->n) {
    c = j->s[j->i];
    if (c == '"') {
      *blen = j->i - *body;
      j->i++;
      j_copy(j, from);
      return 0;
    }
    if (c < 0x20)
      return -1;
    if (c == '\\') {
      if (j->i + 1 >= j->n)
        return -1;
      c = j->s[j->i + 1];
      if (c == 'u') {
        if (j->i + 6 > j->n)
          return -1;
        for (k = 2; k < 6; k++)
          if (!j_hex(j->s[j->i + k]))
            return -1;
        j->i += 6;
      } else if (strchr("\"\\/bfnrt", c) != NULL && c != '\0') {
        j->i += 2;
      } else {
        return -1;
      }
    } else if (c >= 0x80) {
      if ((k = j_utf8(j->s + j->i, j->n - j->i)) == 0)
        return -1;
      j->i += k;
    } else {
      j->i++;
    }
  }
  return -1;
}

static int j_digits(jscan_t *j) {
  size_t from = j->i;

  while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9')
    j->i++;
  return j->i > from ? 0 : -1;
}

/* A number, any size: it is copied, never converted. */
static int j_number(jscan_t *j) {
  size_t from = j->i;

  if (j->i < j->n && j->s[j->i] == '-')
    j->i++;
  if (j->i < j->n && j->s[j->i] == '0')
    j->i++;
  else if (j_digits(j) != 0)
    return -1;
  if (j->i < j->n && j->s[j->i] == '.') {
    j->i++;
    if (j_digits(j) != 0)
      return -1;
  }
  if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
    j->i++;
    if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-'))
      j->i++;
    if (j_digits(j) != 0)
      return -1;
  }
  j_copy(j, from);
  return 0;
}

static int j_word(jscan_t *j, const char *w) {
  size_t len = strlen(w), from = j->i;

  if (j->n - j->i < len || memcmp(j->s + j->i, w, len) != 0)
    return -1;
  j->i += len;
  j_copy(j, from);
  return 0;
}

static void j_put(jscan_t *j, char c) {
  if (j->out)
    j->out[j->o] = c;
  j->o++;
  j->i++;
}

long pp__ctl_json_compact(const char *in, size_t n, char *out, const char *key,
                          size_t *at, size_t *len) {
  char stack[PP_CTL_JSON_DEPTH];
  jscan_t j = {(const unsigned char *)in, n, 0, out, 0};
  int depth = 0, want_key = 0, member = 0;
  size_t body, blen, vstart = 0;
  unsigned char c;

  if (at)
    *at = 0;
  if (len)
    *len = 0;
  for (;;) {
    /* A member's key, then a value. */
    j_ws(&j);
    if (want_key) {
      if (j_string(&j, &body, &blen) != 0)
        return -1;
      if (depth == 1)
        member =
            key && strlen(key) == blen && memcmp(in + body, key, blen) == 0;
      j_ws(&j);
      if (j.i >= n || j.s[j.i] != ':')
        return -1;
      j_put(&j, ':');
      j_ws(&j);
      if (depth == 1)
        vstart = j.o;
      want_key = 0;
    }
    if (j.i >= n)
      return -1;
    c = j.s[j.i];
    if (c == '{' || c == '[') {
      if (depth == PP_CTL_JSON_DEPTH)
        return -1;
      stack[depth++] = (char)c;
      j_put(&j, (char)c);
      j_ws(&j);
      if (j.i < n && j.s[j.i] == (c == '{' ? '}' : ']')) {
        depth--;
        j_put(&j, (char)j.s[j.i]);
      } else {
        if (c == '{')
          want_key = 1;
        continue;
      }
    } else if (c == '"') {
      if (j_string(&j, &body, &blen) != 0)
        return -1;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      if (j_number(&j) != 0)
        return -1;
    } else if (j_word(&j, c == 't'   ? "true"
                          : c == 'f' ? "false"
                                     : "null") != 0) {
      return -1;
    }
    /* After a value: close containers, or go on to the next item. */
    for (;;) {
      if (member && depth == 1) {
        if (at)
          *at = vstart;
        if (len)
          *len = j.o - vstart;
        member = 0;
      }
      j_ws(&j);
      if (depth == 0) {
        if (j.i != n)
          return -1;
        return (long)j.o;
      }
      if (j.i >= n)
        return -1;
      c = j.s[j.i];
      if (c == ',') {
        j_put(&j, ',');
        want_key = stack[depth - 1] == '{';
        break;
      }
      if (c != (stack[depth - 1] == '{' ? '}' : ']'))
        return -1;
      depth--;
      j_put(&j, (char)c);
    }
  }
}
