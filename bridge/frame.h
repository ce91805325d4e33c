/* frame.h -- the bridge wire format: a pure, incremental frame codec.
 * No libuv, no allocation.  A frame is a u32 big-endian length of what
 * follows, then u8 type, u8 flags, u16 zero, u32 request id (big-endian),
 * then the payload (length - 8 bytes). */
#ifndef PP_FRAME_H
#define PP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define PP_FRAME_HEADER 12 /* bytes before the payload */
#define PP_PROTOCOL_VERSION 1

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

/* 1 if type is a known frame type. */
int pp_frame_type_valid(unsigned type);

#endif
