/* control_proto.h -- one request line of the control protocol, parsed and
 * checked.  Pure: no libuv, no pool; fuzzed by tests/fuzz. */
#ifndef PP_CONTROL_PROTO_H
#define PP_CONTROL_PROTO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  PP_CTL_PING,
  PP_CTL_STATUS,
  PP_CTL_CALL,
  PP_CTL_TRACE,
  PP_CTL_SCALE,
  PP_CTL_RESTART,
  PP_CTL_DRAIN,
  PP_CTL_UNDRAIN,
  PP_CTL_STOP,
  PP_CTL_RELOAD
} pp__ctl_op_t;

typedef struct pp__ctl_req {
  pp__ctl_op_t op;
  json_t *root;      /* the whole request; owns what the pointers below
                        point into */
  char *id;          /* "id" exactly as the client wrote it (compact),
                        echoed in the reply, or NULL; owned */
  json_t *payload;   /* call: the value sent to the worker (null when
                        payload_raw holds it) */
  char *payload_raw; /* call: the payload exactly as the client wrote it
                        (compact), or NULL; owned */
  size_t payload_len;
  int64_t timeout_ms; /* call: -1 when absent */
  int stream;         /* call: "stream": true, chunks as they come */
  int n;              /* scale: the new size (0: min and max say) */
  int min, max;       /* scale: an elastic pool's bounds (0: n says) */
  int force;          /* scale: kill busy workers */
  int slot;           /* restart: a slot id, -1 = all */
  const char *filter; /* trace: comma-separated event names, or NULL */
} pp__ctl_req_t;

/* Parse one line (without its newline).  Returns 0 with *req filled (free
 * it with pp__ctl_req_free); PP_CTL_EFATAL when the line is not JSON
 * at all (the connection is closed after the error reply); PP_CTL_EINVAL
 * for valid JSON that is not a valid request (not an object, unknown op, a
 * bad field, a key twice, "payload" or "id" written with escapes),
 * answered with an error and the connection kept.  err receives a sentence
 * either way; on PP_CTL_EINVAL only req->id may be set, for the error
 * reply (free it with pp__ctl_req_free). */
#define PP_CTL_EFATAL (-1)
#define PP_CTL_EINVAL (-2)
int pp__ctl_parse(const char *line, size_t len, pp__ctl_req_t *req, char *err,
                  size_t errlen);
void pp__ctl_req_free(pp__ctl_req_t *req);

/* The trace types a filter ("hello, exit") names, as a mask with bit
 * (1 << pp_trace_type_t) per type; NULL names every type.  Returns 0, or -1
 * with a sentence in err for an empty or unknown name. */
int pp__ctl_trace_mask(const char *filter, uint64_t *mask, char *err,
                       size_t errlen);

/* How deep JSON may nest: jansson's own limit. */
#define PP_CTL_JSON_DEPTH 2048

/* Check that in[0..n) is one JSON value (RFC 8259, UTF-8, nesting at most
 * PP_CTL_JSON_DEPTH) with only whitespace around it, and copy it into out
 * (room for n bytes; NULL only checks) without the whitespace outside its
 * strings.  Nothing is decoded: numbers of any size and strings stay byte
 * for byte as written, so a value passes through exactly.  When key is
 * not NULL, [*at, *at + *len) is where in out the value of the last
 * top-level member named key (compared as written) lies; *len is 0 when
 * there is none.  Returns the length written, or -1. */
long pp__ctl_json_compact(const char *in, size_t n, char *out, const char *key,
                          size_t *at, size_t *len);

#endif
