/* frame.h -- the bridge wire format: a pure, incremental frame codec.
 * No libuv, no allocation.  A frame is a u32 big-endian length of what
 * follows, then u8 type, u8 flags, u16 zero, u32 request id (big-endian),
 * then the payload (length - 8 bytes). */
#ifndef PP_FRAME_H
#define PP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define PP_FRAME_HEADER 12 /* bytes before the payload */
/* The version a worker says in HELLO.  2 adds the deadline of a REQUEST;
 * the pool sends it only to workers that said 2, and still takes 1. */
#define PP_PROTOCOL_VERSION 2
#define PP_PROTOCOL_MIN 1

/* REQUEST flag (protocol 2): the payload begins with the request's
 * deadline, a u64 big-endian count of nanoseconds on CLOCK_MONOTONIC (the
 * clock of Python's time.monotonic_ns()), the instant after which the pool
 * gives up on it.  The request proper follows. */
#define PP_FRAME_FLAG_DEADLINE 0x01
#define PP_FRAME_DEADLINE_BYTES 8
/* REQUEST and REPLY flag (protocol 2): bytes, not JSON.  A REQUEST's
 * payload (after its deadline) is the handler's name, a zero byte, then
 * the argument's bytes; a REPLY's is the bytes the handler returned. */
#define PP_FRAME_FLAG_BINARY 0x02
/* REQUEST flag (protocol 2): the caller takes a stream.  REPLY flag: a
 * chunk of a stream, more follow; the stream's last REPLY, without it,
 * holds the generator's return value (an ERROR ends it too).  The pool
 * asks for one when the call has a chunk callback (pp_call_opts_t). */
#define PP_FRAME_FLAG_STREAM 0x04
/* The longest handler name a binary REQUEST carries. */
#define PP_FRAME_CMD_MAX 64
#define PP_FRAME_REQUEST_HEADER                                                \
  (PP_FRAME_HEADER + PP_FRAME_DEADLINE_BYTES + PP_FRAME_CMD_MAX + 1)

typedef enum {
  PP_FRAME_HELLO = 1,   /* worker -> pool, first frame: JSON
                           {"protocol":1,"pid":N,"runtime":"python 3.11.7"} */
  PP_FRAME_REQUEST = 2, /* pool -> worker */
  PP_FRAME_REPLY = 3,   /* worker -> pool */
  PP_FRAME_ERROR = 4,   /* worker -> pool: JSON {type, message, traceback};
                           with id 0 in place of HELLO: the worker failed
                           to boot (import error), then exits */
  PP_FRAME_PING = 5,    /* pool -> worker */
  PP_FRAME_PONG = 6,    /* worker -> pool */
  PP_FRAME_CANCEL = 7   /* pool -> worker, id of the request to cancel */
} pp_frame_type_t;

typedef struct pp_frame {
  uint8_t type;
  uint8_t flags;
  uint32_t id;
  const char *payload; /* points into the caller's buffer */
  uint32_t len;
} pp_frame_t;

/* Errors returned by the decoder (negative). */
#define PP_FRAME_ETOOBIG (-1) /* length over max_frame */
#define PP_FRAME_ETYPE (-2)   /* unknown type */
#define PP_FRAME_EHEADER (-3) /* length < 8, or reserved bits not zero */

/* Decode one frame from buf[0..len).  Returns the number of bytes the frame
 * takes (header + payload) and fills *f, with f->payload pointing into buf;
 * 0 when more bytes are needed (check pp_frame_need() for how many); or a
 * negative PP_FRAME_E* code.  Never reads past buf+len, never past the end
 * of the frame.  max_frame bounds the payload length. */
long pp_frame_decode(const char *buf, size_t len, uint32_t max_frame,
                     pp_frame_t *f);

/* How many bytes the frame starting at buf needs in total (header +
 * payload), or PP_FRAME_HEADER when fewer than 4 bytes are there.  Returns
 * a negative PP_FRAME_E* code for a bad length. */
long pp_frame_need(const char *buf, size_t len, uint32_t max_frame);

/* Write a frame header for a payload of `len` bytes into out[12]. */
void pp_frame_header(char out[PP_FRAME_HEADER], uint8_t type, uint8_t flags,
                     uint32_t id, uint32_t len);

/* A REQUEST's header for a payload of len bytes, followed by the
 * deadline when deadline_ns is not 0, then, when cmd is not NULL (a name
 * of at most PP_FRAME_CMD_MAX bytes, without a zero byte), the binary
 * flag's name and zero byte: the payload that follows is the argument's
 * bytes; stream sets the stream flag.  Returns how many bytes it wrote
 * into out. */
size_t pp_frame_request_header(char out[PP_FRAME_REQUEST_HEADER], uint32_t id,
                               uint32_t len, uint64_t deadline_ns,
                               const char *cmd, int stream);

/* The deadline a decoded REQUEST carries into *deadline_ns (0 = none),
 * and f's payload moved past it.  0, or PP_FRAME_EHEADER when the flag
 * is set and the payload is shorter than the deadline. */
int pp_frame_request_deadline(pp_frame_t *f, uint64_t *deadline_ns);

/* 1 if type is a known frame type. */
int pp_frame_type_valid(unsigned type);

#endif
