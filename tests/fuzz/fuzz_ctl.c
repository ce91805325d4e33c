/* fuzz_ctl.c -- libFuzzer target for the control protocol's request
 * parser (pp__ctl_parse, control/control_proto.c): one line of arbitrary
 * bytes, not NUL-terminated, either parses into a request whose fields fit
 * its op, or fails with PP_CTL_EFATAL / PP_CTL_EINVAL and a sentence; and
 * pp__ctl_json_compact accepts what jansson accepts, idempotently. */
#include "fuzz.h"

#include "control_proto.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *line = malloc(size ? size : 1); /* exactly size bytes: ASan sees past */
  pp__ctl_req_t req;
  char err[256];
  int r;

  FUZZ_CHECK(line != NULL);
  if (size)
    memcpy(line, data, size);
  memset(&req, 0, sizeof(req));
  memset(err, 'A', sizeof(err));
  r = pp__ctl_parse(line, size, &req, err, sizeof(err));
  if (r == 0) {
    FUZZ_CHECK(req.root != NULL);
    FUZZ_CHECK(req.op >= PP_CTL_PING && req.op <= PP_CTL_RELOAD);
    if (req.op == PP_CTL_CALL)
      FUZZ_CHECK(req.payload != NULL && req.timeout_ms >= -1);
    if (req.op == PP_CTL_SCALE)
      FUZZ_CHECK(req.n >= 1);
    if (req.op == PP_CTL_RESTART)
      FUZZ_CHECK(req.slot >= -1);
    pp__ctl_req_free(&req);
  } else {
    FUZZ_CHECK(r == PP_CTL_EFATAL || r == PP_CTL_EINVAL);
    FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
    FUZZ_CHECK(req.root == NULL);
    pp__ctl_req_free(&req); /* an invalid request keeps its id */
  }
  /* The pass-through check: whatever jansson reads, it accepts too, and
   * its compact copy is a fixed point. */
  {
    char *out = malloc(size + 1), *again = malloc(size + 1);
    json_t *v = json_loadb(line, size, JSON_DECODE_ANY, NULL);
    long n, m;

    FUZZ_CHECK(out != NULL && again != NULL);
    n = pp__ctl_json_compact(line, size, out, NULL, NULL, NULL);
    /* jansson takes a NUL byte after a bare scalar as the end ("2\0 "
     * reads as 2); JSON has no NUL outside strings, and the compactor
     * refuses it, so such inputs are left out of the comparison. */
    if (v != NULL && memchr(line, '\0', size) == NULL)
      FUZZ_CHECK(n >= 0);
    if (n >= 0) {
      m = pp__ctl_json_compact(out, (size_t)n, again, NULL, NULL, NULL);
      FUZZ_CHECK(m == n && memcmp(out, again, (size_t)n) == 0);
    }
    json_decref(v);
    free(again);
    free(out);
  }
  free(line);
  return 0;
}
