/* frame.c -- owns the bridge wire format: encoding frame headers and the
 * incremental, bounds-checked frame decoder.  Pure C: no libuv, no
 * allocation, no I/O; callers own every buffer. */
#include "frame.h"

#include <string.h>

#include <assert.h>
#include <limits.h>

/* Byte offsets inside the 12-byte header. */
#define OFF_TYPE 4
#define OFF_FLAGS 5
#define OFF_RESERVED 6
#define OFF_ID 8

static uint32_t get_u32be(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return ((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) |
         ((uint32_t)u[2] << 8) | (uint32_t)u[3];
}

static void put_u32be(char *p, uint32_t v) {
  unsigned char *u = (unsigned char *)p;
  u[0] = (unsigned char)(v >> 24);
  u[1] = (unsigned char)(v >> 16);
  u[2] = (unsigned char)(v >> 8);
  u[3] = (unsigned char)v;
}

int pp_frame_type_valid(unsigned type) {
  return type >= PP_FRAME_HELLO && type <= PP_FRAME_CANCEL;
}

long pp_frame_need(const char *buf, size_t len, uint32_t max_frame) {
  uint32_t length;

  if (len < 4)
    return PP_FRAME_HEADER;
  length = get_u32be(buf);
  if (length < PP_FRAME_HEADER - 4)
    return PP_FRAME_EHEADER;
  if (length - (PP_FRAME_HEADER - 4) > max_frame)
    return PP_FRAME_ETOOBIG;
#if LONG_MAX - 4 < 0xffffffff
  /* Where long is 32 bits a frame near 4 GiB cannot be described by the
   * return value; treat it as too big rather than overflow. */
  if (length > (uint32_t)(LONG_MAX - 4))
    return PP_FRAME_ETOOBIG;
#endif
  return (long)length + 4;
}

long pp_frame_decode(const char *buf, size_t len, uint32_t max_frame,
                     pp_frame_t *f) {
  const unsigned char *u = (const unsigned char *)buf;
  long need;

  assert(f != NULL);
  assert(buf != NULL || len == 0);

  /* Fields are checked in the order their bytes arrive (length, type,
   * reserved), each as soon as it is complete, so any split of the same
   * bytes across reads yields the same verdict, as early as possible. */
  need = pp_frame_need(buf, len, max_frame);
  if (need < 0)
    return need;
  if (len > OFF_TYPE && !pp_frame_type_valid(u[OFF_TYPE]))
    return PP_FRAME_ETYPE;
  if (len > OFF_RESERVED && u[OFF_RESERVED] != 0)
    return PP_FRAME_EHEADER;
  if (len > OFF_RESERVED + 1 && u[OFF_RESERVED + 1] != 0)
    return PP_FRAME_EHEADER;
  if (len < PP_FRAME_HEADER || len < (size_t)need)
    return 0;

  f->type = u[OFF_TYPE];
  f->flags = u[OFF_FLAGS];
  f->id = get_u32be(buf + OFF_ID);
  f->len = (uint32_t)(need - PP_FRAME_HEADER);
  f->payload = buf + PP_FRAME_HEADER;
  return need;
}

void pp_frame_header(char out[PP_FRAME_HEADER], uint8_t type, uint8_t flags,
                     uint32_t id, uint32_t len) {
  /* The length field counts the 8 header bytes after it. */
  assert(len <= UINT32_MAX - (PP_FRAME_HEADER - 4));
  put_u32be(out, len + (PP_FRAME_HEADER - 4));
  out[OFF_TYPE] = (char)type;
  out[OFF_FLAGS] = (char)flags;
  out[OFF_RESERVED] = 0;
  out[OFF_RESERVED + 1] = 0;
  put_u32be(out + OFF_ID, id);
}

size_t pp_frame_request_header(char out[PP_FRAME_REQUEST_HEADER], uint32_t id,
                               uint32_t len, uint64_t deadline_ns,
                               const char *cmd, int stream) {
  size_t n = PP_FRAME_HEADER, name = cmd ? strlen(cmd) + 1 : 0;
  uint8_t flags = stream ? PP_FRAME_FLAG_STREAM : 0;

  assert(name <= PP_FRAME_CMD_MAX + 1);
  if (deadline_ns) {
    flags |= PP_FRAME_FLAG_DEADLINE;
    put_u32be(out + n, (uint32_t)(deadline_ns >> 32));
    put_u32be(out + n + 4, (uint32_t)deadline_ns);
    n += PP_FRAME_DEADLINE_BYTES;
  }
  if (cmd) {
    flags |= PP_FRAME_FLAG_BINARY;
    memcpy(out + n, cmd, name); /* with its zero byte */
    n += name;
  }
  pp_frame_header(out, PP_FRAME_REQUEST, flags, id,
                  len + (uint32_t)(n - PP_FRAME_HEADER));
  return n;
}

int pp_frame_request_deadline(pp_frame_t *f, uint64_t *deadline_ns) {
  *deadline_ns = 0;
  if (!(f->flags & PP_FRAME_FLAG_DEADLINE))
    return 0;
  if (f->len < PP_FRAME_DEADLINE_BYTES)
    return PP_FRAME_EHEADER;
  *deadline_ns =
      (uint64_t)get_u32be(f->payload) << 32 | get_u32be(f->payload + 4);
  f->payload += PP_FRAME_DEADLINE_BYTES;
  f->len -= PP_FRAME_DEADLINE_BYTES;
  return 0;
}
