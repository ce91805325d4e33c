/* test_frame.c -- unit tests for the bridge frame codec (bridge/frame.c):
 * round trips, split-invariance of the incremental decoder at every split
 * point, early rejection of bad headers, and bounds (every buffer handed to
 * the decoder is malloc'd to its exact size, so ASan sees any over-read). */
/* cmocka needs these before its header, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
// clang-format on

#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define MAX_RECS 64

/* One frame as the test wants it on the wire. */
typedef struct {
  uint8_t type;
  uint8_t flags;
  uint32_t id;
  uint32_t len;
} spec_t;

/* One decoded frame, with where its payload sits in the original stream. */
typedef struct {
  uint8_t type;
  uint8_t flags;
  uint32_t id;
  uint32_t len;
  size_t stream_off;
} rec_t;

/* A simulated pool-side reader: it appends each chunk to a pending buffer
 * that is always malloc'd to exactly the bytes it holds, decodes every
 * complete frame, and keeps the remainder for the next chunk. */
typedef struct {
  const char *stream; /* the whole stream, to check payload bytes */
  uint32_t max_frame;
  char *buf; /* pending bytes are buf[off..len); buf is len bytes */
  size_t off;
  size_t len;
  size_t consumed; /* stream bytes taken by decoded frames */
  rec_t recs[MAX_RECS];
  size_t nrecs;
  long err; /* first negative decode result, or 0 */
} reader_t;

static uint32_t rng_state;

static uint32_t rng(void) {
  /* xorshift32: deterministic, so a failure reproduces. */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 17;
  rng_state ^= rng_state << 5;
  return rng_state;
}

/* A copy of p[0..n) in a buffer of exactly n bytes (NULL when n is 0, so
 * that even a one-byte read of an empty buffer faults). */
static char *dup_exact(const void *p, size_t n) {
  char *b;

  if (n == 0)
    return NULL;
  b = malloc(n);
  assert_non_null(b);
  memcpy(b, p, n);
  return b;
}

static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* Builds the frames of specs[] back to back, payload bytes pseudo-random so
 * that a payload pointer off by one is noticed.  Returns an exact-size
 * malloc'd buffer and its size in *n. */
static char *build_stream(const spec_t *specs, size_t nspecs, size_t *n) {
  size_t total = 0, at = 0, i, j;
  char *s;

  for (i = 0; i < nspecs; i++)
    total += PP_FRAME_HEADER + specs[i].len;
  s = malloc(total);
  assert_non_null(s);
  for (i = 0; i < nspecs; i++) {
    pp_frame_header(s + at, specs[i].type, specs[i].flags, specs[i].id,
                    specs[i].len);
    at += PP_FRAME_HEADER;
    for (j = 0; j < specs[i].len; j++)
      s[at++] = (char)(rng() >> 24);
  }
  *n = total;
  return s;
}

static void reader_init(reader_t *r, const char *stream, uint32_t max_frame) {
  memset(r, 0, sizeof(*r));
  r->stream = stream;
  r->max_frame = max_frame;
}

static void reader_free(reader_t *r) {
  free(r->buf);
  r->buf = NULL;
}

static void reader_feed(reader_t *r, const char *chunk, size_t n) {
  size_t pending = r->len - r->off;
  char *nb;
  pp_frame_t f;
  long rc, need;

  if (r->err != 0 || n == 0)
    return;
  nb = malloc(pending + n);
  assert_non_null(nb);
  if (pending > 0)
    memcpy(nb, r->buf + r->off, pending);
  memcpy(nb + pending, chunk, n);
  free(r->buf);
  r->buf = nb;
  r->off = 0;
  r->len = pending + n;

  for (;;) {
    size_t avail = r->len - r->off;
    const char *at = r->buf + r->off;

    memset(&f, 0xA5, sizeof(f));
    rc = pp_frame_decode(at, avail, r->max_frame, &f);
    need = pp_frame_need(at, avail, r->max_frame);
    if (rc < 0) {
      r->err = rc;
      return;
    }
    if (rc == 0) {
      /* Needing more bytes must agree with pp_frame_need. */
      if (need < 0) {
        /* Only possible if decode missed an error: fail loudly. */
        assert_int_equal(need, 0);
      }
      if (avail >= 4)
        assert_true((size_t)need > avail || avail < PP_FRAME_HEADER);
      else
        assert_int_equal(need, PP_FRAME_HEADER);
      return;
    }
    assert_int_equal(rc, need);
    assert_true((size_t)rc <= avail);
    assert_int_equal((size_t)rc, PP_FRAME_HEADER + (size_t)f.len);
    assert_ptr_equal(f.payload, at + PP_FRAME_HEADER);
    assert_true(r->nrecs < MAX_RECS);
    r->recs[r->nrecs].type = f.type;
    r->recs[r->nrecs].flags = f.flags;
    r->recs[r->nrecs].id = f.id;
    r->recs[r->nrecs].len = f.len;
    r->recs[r->nrecs].stream_off = r->consumed + PP_FRAME_HEADER;
    if (f.len > 0)
      assert_memory_equal(f.payload, r->stream + r->consumed + PP_FRAME_HEADER,
                          f.len);
    r->nrecs++;
    r->consumed += (size_t)rc;
    r->off += (size_t)rc;
  }
}

static void assert_same_result(const reader_t *a, const reader_t *b) {
  size_t i;

  assert_int_equal(a->err, b->err);
  assert_int_equal(a->nrecs, b->nrecs);
  assert_int_equal(a->consumed, b->consumed);
  if (a->err == 0)
    assert_int_equal(a->len - a->off, b->len - b->off);
  for (i = 0; i < a->nrecs; i++) {
    assert_int_equal(a->recs[i].type, b->recs[i].type);
    assert_int_equal(a->recs[i].flags, b->recs[i].flags);
    assert_int_equal(a->recs[i].id, b->recs[i].id);
    assert_int_equal(a->recs[i].len, b->recs[i].len);
    assert_int_equal(a->recs[i].stream_off, b->recs[i].stream_off);
  }
}

/* Decodes the stream split into two chunks at every point, and fed one byte
 * at a time, and checks every way gives the same result as `ref`. */
static void check_every_split(const char *s, size_t n, uint32_t max_frame,
                              const reader_t *ref) {
  reader_t r;
  size_t k;

  for (k = 0; k <= n; k++) {
    reader_init(&r, s, max_frame);
    reader_feed(&r, s, k);
    reader_feed(&r, s + k, n - k);
    assert_same_result(&r, ref);
    reader_free(&r);
  }
  reader_init(&r, s, max_frame);
  for (k = 0; k < n; k++)
    reader_feed(&r, s + k, 1);
  assert_same_result(&r, ref);
  reader_free(&r);
}

static void test_round_trip(void **state) {
  static const char payload[] = "hello, worker";
  const uint32_t plen = (uint32_t)(sizeof(payload) - 1);
  char hdr[PP_FRAME_HEADER];
  char *buf;
  pp_frame_t f;
  long rc;

  (void)state;
  pp_frame_header(hdr, PP_FRAME_REQUEST, 0x5a, 0x01020304u, plen);
  /* Big-endian length of what follows (8 + payload), type, flags, zero,
   * big-endian id. */
  {
    const unsigned char want[PP_FRAME_HEADER] = {
        0, 0, 0, (unsigned char)(8 + plen), 2, 0x5a, 0, 0, 1, 2, 3, 4};
    assert_memory_equal(hdr, want, sizeof(want));
  }

  buf = malloc(PP_FRAME_HEADER + plen);
  assert_non_null(buf);
  memcpy(buf, hdr, PP_FRAME_HEADER);
  memcpy(buf + PP_FRAME_HEADER, payload, plen);
  rc = pp_frame_decode(buf, PP_FRAME_HEADER + plen, 1024, &f);
  assert_int_equal(rc, PP_FRAME_HEADER + plen);
  assert_int_equal(f.type, PP_FRAME_REQUEST);
  assert_int_equal(f.flags, 0x5a);
  assert_int_equal(f.id, 0x01020304u);
  assert_int_equal(f.len, plen);
  assert_ptr_equal(f.payload, buf + PP_FRAME_HEADER);
  assert_memory_equal(f.payload, payload, plen);
  assert_int_equal(pp_frame_need(buf, PP_FRAME_HEADER + plen, 1024),
                   PP_FRAME_HEADER + plen);
  free(buf);

  /* Extreme ids and an empty payload. */
  pp_frame_header(hdr, PP_FRAME_PONG, 0, UINT32_MAX, 0);
  buf = dup_exact(hdr, sizeof(hdr));
  rc = pp_frame_decode(buf, sizeof(hdr), 0, &f);
  assert_int_equal(rc, PP_FRAME_HEADER);
  assert_int_equal(f.type, PP_FRAME_PONG);
  assert_int_equal(f.id, UINT32_MAX);
  assert_int_equal(f.len, 0);
  free(buf);
}

static void test_stream_every_split(void **state) {
  static const spec_t specs[] = {
      {PP_FRAME_HELLO, 0, 0, 40},         {PP_FRAME_REPLY, 1, 1, 0},
      {PP_FRAME_REPLY, 0, 2, 1},          {PP_FRAME_ERROR, 0xff, 3, 70000},
      {PP_FRAME_PONG, 0, 0xffffffffu, 0}, {PP_FRAME_REPLY, 0, 4, 11},
      {PP_FRAME_REPLY, 0, 5, 12},         {PP_FRAME_CANCEL, 0, 6, 13},
  };
  const size_t nspecs = sizeof(specs) / sizeof(specs[0]);
  reader_t ref;
  size_t n, i;
  char *s;

  (void)state;
  rng_state = 12345;
  s = build_stream(specs, nspecs, &n);

  /* The reference: the whole stream in one chunk, checked against specs.
   * max_frame equals the largest payload, which must be accepted. */
  reader_init(&ref, s, 70000);
  reader_feed(&ref, s, n);
  assert_int_equal(ref.err, 0);
  assert_int_equal(ref.nrecs, nspecs);
  assert_int_equal(ref.consumed, n);
  for (i = 0; i < nspecs; i++) {
    assert_int_equal(ref.recs[i].type, specs[i].type);
    assert_int_equal(ref.recs[i].flags, specs[i].flags);
    assert_int_equal(ref.recs[i].id, specs[i].id);
    assert_int_equal(ref.recs[i].len, specs[i].len);
  }

  check_every_split(s, n, 70000, &ref);
  reader_free(&ref);

  /* One byte less of max_frame: the big frame is refused, and the frames
   * before it are still delivered, at every split. */
  reader_init(&ref, s, 69999);
  reader_feed(&ref, s, n);
  assert_int_equal(ref.err, PP_FRAME_ETOOBIG);
  assert_int_equal(ref.nrecs, 3);
  check_every_split(s, n, 69999, &ref);
  reader_free(&ref);
  free(s);
}

/* A good frame followed by a bad one: the good one is delivered and the
 * same error reported however the bytes are split. */
static void check_bad_after_good(const unsigned char *bad, size_t badlen,
                                 long want) {
  static const spec_t good = {PP_FRAME_REPLY, 0, 7, 5};
  reader_t ref;
  size_t n;
  char *s, *g;

  g = build_stream(&good, 1, &n);
  s = malloc(n + badlen);
  assert_non_null(s);
  memcpy(s, g, n);
  memcpy(s + n, bad, badlen);
  free(g);

  reader_init(&ref, s, 1024);
  reader_feed(&ref, s, n + badlen);
  assert_int_equal(ref.err, want);
  assert_int_equal(ref.nrecs, 1);
  check_every_split(s, n + badlen, 1024, &ref);
  reader_free(&ref);
  free(s);
}

static void test_errors_split_invariant(void **state) {
  /* length 7 < 8 */
  static const unsigned char shortlen[] = {0, 0, 0, 7, 3, 0, 0, 0, 0, 0, 0, 1};
  /* payload 1025 > max_frame 1024 */
  static const unsigned char big[] = {0, 0, 0x04, 0x09, 3, 0, 0, 0, 0, 0, 0, 1};
  /* type 99 */
  static const unsigned char type[] = {0, 0, 0, 8, 99, 0, 0, 0, 0, 0, 0, 1};
  /* reserved not zero */
  static const unsigned char rsv[] = {0, 0, 0, 8, 3, 0, 0, 1, 0, 0, 0, 1};
  /* both a bad type and bad reserved bits: the type (earlier) wins */
  static const unsigned char both[] = {0, 0, 0, 8, 0, 0, 1, 0, 0, 0, 0, 1};

  (void)state;
  rng_state = 99;
  check_bad_after_good(shortlen, sizeof(shortlen), PP_FRAME_EHEADER);
  check_bad_after_good(big, sizeof(big), PP_FRAME_ETOOBIG);
  check_bad_after_good(type, sizeof(type), PP_FRAME_ETYPE);
  check_bad_after_good(rsv, sizeof(rsv), PP_FRAME_EHEADER);
  check_bad_after_good(both, sizeof(both), PP_FRAME_ETYPE);
}

static void test_oversize_from_length_only(void **state) {
  static const uint32_t max_frame = 1024;
  unsigned char len4[4];
  char *b;
  pp_frame_t f;

  (void)state;
  /* A huge length is refused from the 4 length bytes alone. */
  put_be32(len4, 0xffffffffu);
  b = dup_exact(len4, 4);
  assert_int_equal(pp_frame_decode(b, 4, max_frame, &f), PP_FRAME_ETOOBIG);
  assert_int_equal(pp_frame_need(b, 4, max_frame), PP_FRAME_ETOOBIG);
  free(b);

  put_be32(len4, 0x7fffffffu);
  b = dup_exact(len4, 4);
  assert_int_equal(pp_frame_decode(b, 4, max_frame, &f), PP_FRAME_ETOOBIG);
  free(b);

  /* One byte over max_frame. */
  put_be32(len4, 8 + max_frame + 1);
  b = dup_exact(len4, 4);
  assert_int_equal(pp_frame_decode(b, 4, max_frame, &f), PP_FRAME_ETOOBIG);
  free(b);

  /* Exactly max_frame is fine: more bytes are needed. */
  put_be32(len4, 8 + max_frame);
  b = dup_exact(len4, 4);
  assert_int_equal(pp_frame_decode(b, 4, max_frame, &f), 0);
  assert_int_equal(pp_frame_need(b, 4, max_frame), PP_FRAME_HEADER + max_frame);
  free(b);

  /* max_frame 0 allows header-only frames and nothing else. */
  put_be32(len4, 9);
  b = dup_exact(len4, 4);
  assert_int_equal(pp_frame_decode(b, 4, 0, &f), PP_FRAME_ETOOBIG);
  free(b);
}

static void test_unknown_type(void **state) {
  static const unsigned bad_types[] = {0, 8, 99, 255};
  unsigned char h[PP_FRAME_HEADER];
  size_t i, n;
  unsigned t;
  char *b;
  pp_frame_t f;

  (void)state;
  for (t = 0; t < 256; t++)
    assert_int_equal(pp_frame_type_valid(t), t >= 1 && t <= 7);

  for (i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
    memset(h, 0, sizeof(h));
    put_be32(h, 8);
    h[4] = (unsigned char)bad_types[i];
    /* Known as soon as the type byte is there, and with a full header. */
    for (n = 5; n <= PP_FRAME_HEADER; n++) {
      b = dup_exact(h, n);
      assert_int_equal(pp_frame_decode(b, n, 1024, &f), PP_FRAME_ETYPE);
      free(b);
    }
  }

  /* Non-zero reserved u16, either byte. */
  for (i = 6; i <= 7; i++) {
    memset(h, 0, sizeof(h));
    put_be32(h, 8);
    h[4] = PP_FRAME_REPLY;
    h[i] = 0x80;
    for (n = i + 1; n <= PP_FRAME_HEADER; n++) {
      b = dup_exact(h, n);
      assert_int_equal(pp_frame_decode(b, n, 1024, &f), PP_FRAME_EHEADER);
      free(b);
    }
  }
}

static void test_short_length(void **state) {
  unsigned char h[PP_FRAME_HEADER];
  uint32_t l;
  size_t n;
  char *b;
  pp_frame_t f;

  (void)state;
  for (l = 0; l < 8; l++) {
    memset(h, 0, sizeof(h));
    put_be32(h, l);
    h[4] = PP_FRAME_REPLY;
    for (n = 4; n <= PP_FRAME_HEADER; n++) {
      b = dup_exact(h, n);
      assert_int_equal(pp_frame_decode(b, n, 1024, &f), PP_FRAME_EHEADER);
      assert_int_equal(pp_frame_need(b, n, 1024), PP_FRAME_EHEADER);
      free(b);
    }
  }
}

/* Every prefix of a frame, in a buffer of exactly that size, decodes to
 * "need more" without touching a byte past the end; the whole frame decodes
 * and a frame followed by more bytes decodes to just the frame. */
static void test_never_reads_past_buffer(void **state) {
  static const uint32_t sizes[] = {0, 1, 20, 300};
  char frame[PP_FRAME_HEADER + 300 + 7];
  size_t i, n, total;
  char *b;
  pp_frame_t f;
  long rc;

  (void)state;
  assert_int_equal(pp_frame_decode(NULL, 0, 1024, &f), 0);
  assert_int_equal(pp_frame_need(NULL, 0, 1024), PP_FRAME_HEADER);

  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    total = PP_FRAME_HEADER + sizes[i];
    pp_frame_header(frame, PP_FRAME_REQUEST, 0, (uint32_t)i, sizes[i]);
    memset(frame + PP_FRAME_HEADER, 'p', sizes[i] + 7);
    for (n = 0; n < total; n++) {
      b = dup_exact(frame, n);
      assert_int_equal(pp_frame_decode(b, n, 1024, &f), 0);
      rc = pp_frame_need(b, n, 1024);
      assert_int_equal(rc, n < 4 ? PP_FRAME_HEADER : (long)total);
      free(b);
    }
    for (n = total; n <= total + 7; n++) {
      b = dup_exact(frame, n);
      rc = pp_frame_decode(b, n, 1024, &f);
      assert_int_equal(rc, (long)total);
      assert_int_equal(f.len, sizes[i]);
      assert_ptr_equal(f.payload, b + PP_FRAME_HEADER);
      free(b);
    }
  }
}

/* Random streams of valid frames, some with a byte or two flipped, fed in
 * random chunks: every chunking agrees with the one-chunk decode. */
static void test_fuzz_random_chunks(void **state) {
  spec_t specs[6];
  reader_t ref, r;
  size_t nspecs, n, i, at, k;
  int iter, round;
  char *s;

  (void)state;
  rng_state = 0xC0FFEEu;
  for (iter = 0; iter < 3000; iter++) {
    nspecs = 1 + rng() % 6;
    for (i = 0; i < nspecs; i++) {
      specs[i].type = (uint8_t)(1 + rng() % 7);
      specs[i].flags = (uint8_t)rng();
      specs[i].id = rng();
      specs[i].len = rng() % 4 == 0 ? 0 : rng() % 600;
    }
    s = build_stream(specs, nspecs, &n);
    for (k = rng() % 3; k > 0; k--)
      s[rng() % n] ^= (char)(1u << (rng() % 8));

    reader_init(&ref, s, 512);
    reader_feed(&ref, s, n);
    for (round = 0; round < 8; round++) {
      reader_init(&r, s, 512);
      for (at = 0; at < n; at += k) {
        k = 1 + rng() % 40;
        if (k > n - at)
          k = n - at;
        reader_feed(&r, s + at, k);
      }
      assert_same_result(&r, &ref);
      reader_free(&r);
    }
    reader_free(&ref);
    free(s);
  }
}

/* A REQUEST's deadline (protocol 2): written after the header with the
 * flag, read back and stripped; none without it; a flagged payload too
 * short to hold one is refused. */
static void test_request_deadline(void **state) {
  char buf[PP_FRAME_REQUEST_HEADER + 5];
  uint64_t at = 0x0123456789abcdefull, got;
  pp_frame_t f;
  size_t n;

  (void)state;
  n = pp_frame_request_header(buf, 9, 5, at, NULL, 0);
  assert_int_equal(n, PP_FRAME_HEADER + PP_FRAME_DEADLINE_BYTES);
  memcpy(buf + n, "hello", 5);
  assert_int_equal(pp_frame_decode(buf, n + 5, 1024, &f), (long)(n + 5));
  assert_int_equal(f.type, PP_FRAME_REQUEST);
  assert_int_equal(f.flags, PP_FRAME_FLAG_DEADLINE);
  assert_int_equal(pp_frame_request_deadline(&f, &got), 0);
  assert_true(got == at);
  assert_int_equal(f.len, 5);
  assert_memory_equal(f.payload, "hello", 5);

  n = pp_frame_request_header(buf, 9, 5, 0, NULL, 0);
  assert_int_equal(n, PP_FRAME_HEADER);
  memcpy(buf + n, "hello", 5);
  assert_int_equal(pp_frame_decode(buf, n + 5, 1024, &f), (long)(n + 5));
  assert_int_equal(f.flags, 0);
  assert_int_equal(pp_frame_request_deadline(&f, &got), 0);
  assert_true(got == 0);
  assert_int_equal(f.len, 5);

  pp_frame_header(buf, PP_FRAME_REQUEST, PP_FRAME_FLAG_DEADLINE, 9, 7);
  assert_int_equal(pp_frame_decode(buf, PP_FRAME_HEADER + 7, 1024, &f),
                   PP_FRAME_HEADER + 7);
  assert_int_equal(pp_frame_request_deadline(&f, &got), PP_FRAME_EHEADER);

  /* Binary: the handler's name and a zero byte after the deadline. */
  n = pp_frame_request_header(buf, 9, 5, at, "rev", 0);
  assert_int_equal(n, PP_FRAME_HEADER + PP_FRAME_DEADLINE_BYTES + 4);
  memcpy(buf + n, "hello", 5);
  assert_int_equal(pp_frame_decode(buf, n + 5, 1024, &f), (long)(n + 5));
  assert_int_equal(f.flags, PP_FRAME_FLAG_DEADLINE | PP_FRAME_FLAG_BINARY);
  assert_int_equal(pp_frame_request_deadline(&f, &got), 0);
  assert_true(got == at);
  assert_int_equal(f.len, 9);
  assert_memory_equal(f.payload, "rev\0hello", 9);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_stream_every_split),
      cmocka_unit_test(test_errors_split_invariant),
      cmocka_unit_test(test_oversize_from_length_only),
      cmocka_unit_test(test_unknown_type),
      cmocka_unit_test(test_short_length),
      cmocka_unit_test(test_never_reads_past_buffer),
      cmocka_unit_test(test_fuzz_random_chunks),
      cmocka_unit_test(test_request_deadline),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
