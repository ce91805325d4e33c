/* scen_big.c -- big payloads: the pool's MB/s against the floor's. */
#include "bench.h"

#include <stdlib.h>

/* The floor and the pool measured side by side, then reported: MB/s of
 * len bytes each way, the pool against the floor. */
static void compare(const char *scen, const char *title, contender_t *cf,
                    contender_t *cp, size_t len) {
  contender_t *cs[] = {cf, cp};
  foreign_t fl;
  double fload;

  foreign_begin(&fl);
  measure(cs, 2);
  fload = foreign_end(&fl);
  header(title);
  report(scen, cf, len, NULL);
  report(scen, cp, len, cf);
  foreign_report(scen, fload);
}

/* 5b. 1 MiB of bytes each way: pp_call_bytes to a JSON-mode worker's
 * handler that returns its bytes (the binary frames: no JSON, no base64),
 * beside the raw-mode floor echoing the same MiB. */
static int scen_bytes(void) {
  const char *scen = "bytes";
  char hbuf[PATH_MAX], fbuf[PATH_MAX];
  const char *handler =
      handler_path("bench/handlers/bytes_echo.py", hbuf, sizeof(hbuf));
  const char *floor_handler =
      handler_path("fixtures/raw_echo.py", fbuf, sizeof(fbuf));
  size_t len = 1u << 20;
  char *payload = make_payload(len, 0);
  floor_worker_t fw;
  pp_pool_t *pool;

  if (spawn_floor(&fw, 1, 1, floor_handler, NULL) != 0)
    return -1;
  if ((pool = open_pool(1, 0, handler, NULL, NULL)) == NULL) {
    floor_close(&fw);
    return -1;
  }
  contender_t cf = {.name = "floor: C driver <-> raw worker, blocking",
                    .nthreads = 1,
                    .fn = floor_call_thread,
                    .fw = &fw,
                    .nfw = 1,
                    .payload = payload,
                    .len = len};
  contender_t cp = {.name = "pool: pp_call_bytes",
                    .nthreads = 1,
                    .fn = pool_call_thread,
                    .pool = pool,
                    .payload = payload,
                    .len = len,
                    .cmd = "echo"};
  compare(scen,
          "bytes, 1 MiB each way: pp_call_bytes (JSON-mode worker) vs the "
          "raw floor",
          &cf, &cp, len);
  pp_pool_close(pool);
  floor_close(&fw);
  free(payload);
  return 0;
}

/* 5. 64 KiB payloads, one caller, one worker. */
int scen_big(void) {
  pin_scenario(1);
  const char *scen = "big";
  char hbuf[PATH_MAX];
  const char *handler =
      handler_path("fixtures/raw_echo.py", hbuf, sizeof(hbuf));
  size_t len = O.payload >= 4096 ? O.payload : 65536;
  char *payload = make_payload(len, 0);
  floor_worker_t fw;
  pp_pool_t *pool;
  char title[160];

  if (spawn_floor(&fw, 1, 1, handler, NULL) != 0)
    return -1;
  if ((pool = open_pool(1, 1, handler, NULL, NULL)) == NULL) {
    floor_close(&fw);
    return -1;
  }
  contender_t cf = {.name = "floor: C driver <-> worker, blocking",
                    .nthreads = 1,
                    .fn = floor_call_thread,
                    .fw = &fw,
                    .nfw = 1,
                    .payload = payload,
                    .len = len};
  contender_t cp = {.name = "pool: pp_call",
                    .nthreads = 1,
                    .fn = pool_call_thread,
                    .pool = pool,
                    .payload = payload,
                    .len = len};
  snprintf(title, sizeof(title), "big payloads, raw mode, %zu B each way", len);
  compare(scen, title, &cf, &cp, len);
  pp_pool_close(pool);
  floor_close(&fw);
  free(payload);
  return scen_bytes();
}
