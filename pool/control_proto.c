/* control_proto.c -- owns the request side of the control protocol: one
 * line of text in, a checked request out (docs/protocol.md), plus the pure
 * helpers the control socket needs (trace filters, uid lists).  No libuv,
 * no pool, no allocation besides jansson's: the fuzz target drives it. */
#include "control_proto.h"

#include "portpool.h"

#include <stdarg.h>
#include <stdio.h>
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

int pp__ctl_parse_uids(const char *text, uint32_t *uids, int max) {
  const char *p = text;
  unsigned long long v;
  int n = 0;

  if (text == NULL)
    return 0;
  while (*p == ' ' || *p == '\t')
    p++;
  if (strcmp(p, "~") == 0 || strcmp(p, "null") == 0)
    return 0;
  for (;;) {
    while (*p && strchr("[]-, \t\r\n", *p)) {
      if (*p == '-' && p[1] >= '0' && p[1] <= '9')
        return -1; /* a negative number, not a block item */
      p++;
    }
    if (*p == '\0')
      return n;
    if (*p < '0' || *p > '9')
      return -1;
    v = 0;
    while (*p >= '0' && *p <= '9') {
      v = v * 10 + (unsigned)(*p++ - '0');
      if (v > UINT32_MAX)
        return -1;
    }
    if (*p && !strchr("], \t\r\n", *p))
      return -1;
    if (n >= max)
      return -1;
    uids[n++] = (uint32_t)v;
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
    v = json_object_get(root, "n");
    if (v == NULL || json_is_null(v)) {
      say(err, errlen, "scale needs \"n\", the new number of workers");
      return -1;
    }
    n = 0;
    if (get_int(root, "n", 1, CTL_SIZE_MAX, &n, err, errlen) != 0)
      return -1;
    req->n = (int)n;
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

int pp__ctl_parse(const char *line, size_t len, pp__ctl_req_t *req, char *err,
                  size_t errlen) {
  json_error_t jerr;
  json_t *op;
  const char *name;
  size_t i;

  memset(req, 0, sizeof(*req));
  req->timeout_ms = -1;
  req->slot = -1;
  if (err && errlen)
    err[0] = '\0';
  while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' ||
                     line[len - 1] == '\t'))
    len--;
  req->root = json_loadb(line, len, JSON_DECODE_ANY, &jerr);
  if (req->root == NULL) {
    say(err, errlen, "request is not JSON: %s (column %d)", jerr.text,
        jerr.column);
    return PP_CTL_EFATAL;
  }
  if (!json_is_object(req->root)) {
    say(err, errlen, "a request must be a JSON object");
    goto invalid;
  }
  op = json_object_get(req->root, "op");
  name = json_string_value(op);
  if (name == NULL) {
    say(err, errlen, "a request needs a string \"op\"");
    goto invalid;
  }
  for (i = 0; i < NOPS; i++)
    if (strcmp(ops[i].name, name) == 0)
      break;
  if (i == NOPS) {
    say(err, errlen,
        "unknown op \"%.200s\" (expected ping, status, call, trace, scale, "
        "restart, drain, undrain, stop or reload)",
        name);
    goto invalid;
  }
  req->op = ops[i].op;
  if (parse_fields(req, err, errlen) != 0)
    goto invalid;
  req->id = json_object_get(req->root, "id");
  return 0;

invalid:
  pp__ctl_req_free(req);
  return PP_CTL_EINVAL;
}

void pp__ctl_req_free(pp__ctl_req_t *req) {
  if (req == NULL)
    return;
  json_decref(req->root);
  req->root = NULL;
  req->id = NULL;
  req->payload = NULL;
  req->filter = NULL;
}
