/* fuzz_frame.c -- libFuzzer target for the bridge frame decoder
 * (bridge/frame.c).  The input's first three bytes choose max_frame and
 * how to split the rest; the rest is a reply stream.  It is decoded twice:
 * whole, frame after frame as the pool consumes them, and again arriving
 * in chunks of arbitrary sizes.  Checked: a frame never claims bytes past
 * the buffer or max_frame, its header re-encodes to the same bytes, "need
 * more" only when the frame really is incomplete, and both decodings give
 * the same frames and the same verdict (the decoder is incremental).  Each
 * decode reads from a heap copy of exactly the bytes it may see, so
 * AddressSanitizer catches any read past them. */
#include "fuzz.h"

#include "frame.h"

#include <string.h>

typedef struct seen {
  uint8_t type, flags;
  uint32_t id, len;
  size_t at; /* offset of the frame in the stream */
} seen_t;

#define MAX_SEEN 4096

typedef struct verdict {
  seen_t frames[MAX_SEEN];
  size_t n;
  long error;  /* 0, or the PP_FRAME_E* that ended the stream */
  size_t used; /* bytes consumed by whole frames */
} verdict_t;

static const uint32_t max_frames[] = {64u << 20, 0, 1, 16, 65536, 0xffffffffu};

/* Decode exactly buf[0..len) from a heap copy of that size. */
static long decode_exact(const char *buf, size_t len, uint32_t max,
                         pp_frame_t *f) {
  char *copy = malloc(len ? len : 1);
  long r;

  FUZZ_CHECK(copy != NULL);
  if (len)
    memcpy(copy, buf, len);
  memset(f, 0, sizeof(*f));
  r = pp_frame_decode(copy, len, max, f);
  if (r > 0) {
    FUZZ_CHECK(f->payload == copy + PP_FRAME_HEADER);
    f->payload = buf + PP_FRAME_HEADER; /* the copy goes away */
  }
  free(copy);
  return r;
}

/* One decode at buf (len bytes available, at stream offset `at`): checks
 * every invariant of one step, records a frame.  Returns the decoder's
 * result.  The decoder is shown no more than the frame's own bytes when
 * they are all there (it must not read past a frame), and a short prefix
 * of an incomplete one (it cannot need more than the header to say "not
 * yet"), so that a big frame arriving byte by byte costs no more than
 * its length. */
static long step(verdict_t *v, const char *buf, size_t len, size_t at,
                 uint32_t max) {
  char hdr[PP_FRAME_HEADER];
  size_t view = len;
  pp_frame_t f;
  long r, need;

  need = pp_frame_need(buf, len, max);
  if (need > 0 && (size_t)need <= len)
    view = (size_t)need;
  else if (need > 0 && len > 2 * PP_FRAME_HEADER)
    view = 2 * PP_FRAME_HEADER;
  r = decode_exact(buf, view, max, &f);
  len = view;
  if (r > 0) {
    FUZZ_CHECK(r >= PP_FRAME_HEADER);
    FUZZ_CHECK((size_t)r <= len);
    FUZZ_CHECK(need == r);
    FUZZ_CHECK(f.len == (uint32_t)(r - PP_FRAME_HEADER));
    FUZZ_CHECK(f.len <= max);
    FUZZ_CHECK(pp_frame_type_valid(f.type));
    pp_frame_header(hdr, f.type, f.flags, f.id, f.len);
    FUZZ_CHECK(memcmp(hdr, buf, PP_FRAME_HEADER) == 0);
    if (v->n < MAX_SEEN) {
      v->frames[v->n].type = f.type;
      v->frames[v->n].flags = f.flags;
      v->frames[v->n].id = f.id;
      v->frames[v->n].len = f.len;
      v->frames[v->n].at = at;
    }
    v->n++;
  } else if (r == 0) {
    /* Incomplete: fewer bytes than the header or than the frame. */
    FUZZ_CHECK(need > 0);
    FUZZ_CHECK(len < PP_FRAME_HEADER || (size_t)need > len);
  } else {
    FUZZ_CHECK(r == PP_FRAME_ETOOBIG || r == PP_FRAME_ETYPE ||
               r == PP_FRAME_EHEADER);
  }
  return r;
}

static void decode_whole(verdict_t *v, const char *buf, size_t len,
                         uint32_t max) {
  long r;

  memset(v, 0, sizeof(*v));
  for (;;) {
    r = step(v, buf + v->used, len - v->used, v->used, max);
    if (r <= 0) {
      v->error = r;
      return;
    }
    v->used += (size_t)r;
  }
}

/* The same bytes arriving in chunks: after each chunk, decode every whole
 * frame available, as the pool's reader does. */
static void decode_chunked(verdict_t *v, const char *buf, size_t len,
                           uint32_t max, uint32_t seed) {
  size_t have = 0, chunk;
  long r;

  memset(v, 0, sizeof(*v));
  while (have < len) {
    seed = seed * 1103515245u + 12345u;
    chunk = 1 + (seed >> 16) % 97;
    if (seed & 0x8000u)
      chunk = 1; /* often byte by byte */
    have += chunk < len - have ? chunk : len - have;
    for (;;) {
      r = step(v, buf + v->used, have - v->used, v->used, max);
      if (r < 0) {
        v->error = r;
        return;
      }
      if (r == 0)
        break;
      v->used += (size_t)r;
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static verdict_t whole, chunked;
  const char *buf;
  uint32_t max, seed;
  size_t len, i;

  if (size < 3)
    return 0;
  max = max_frames[data[0] % (sizeof(max_frames) / sizeof(max_frames[0]))];
  if (data[0] >= 128)
    max = (uint32_t)data[0] * 7; /* small odd limits, near real frames */
  seed = (uint32_t)data[1] << 8 | data[2];
  buf = (const char *)data + 3;
  len = size - 3;

  decode_whole(&whole, buf, len, max);
  decode_chunked(&chunked, buf, len, max, seed);
  FUZZ_CHECK(whole.n == chunked.n);
  FUZZ_CHECK(whole.used == chunked.used);
  FUZZ_CHECK(whole.error == chunked.error);
  for (i = 0; i < whole.n && i < MAX_SEEN; i++) {
    const seen_t *a = &whole.frames[i], *b = &chunked.frames[i];
    FUZZ_CHECK(a->type == b->type && a->flags == b->flags && a->id == b->id &&
               a->len == b->len && a->at == b->at);
  }
  return 0;
}
