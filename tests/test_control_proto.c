/* test_control_proto.c -- the control protocol's request parser
 * (control/control_proto.c) on its own: every op and field, what is fatal
 * and what keeps the connection, the trace filter mask and the uid list. */
#include "helpers.h"

#include "control_proto.h"

#include <string.h>

static int parse(const char *line, pp__ctl_req_t *req, char *err,
                 size_t errlen) {
  return pp__ctl_parse(line, strlen(line), req, err, errlen);
}

static void test_ops(void **state) {
  static const struct {
    const char *line;
    pp__ctl_op_t op;
  } ok[] = {{"{\"op\":\"ping\"}", PP_CTL_PING},
            {"{\"op\":\"status\"}", PP_CTL_STATUS},
            {"{\"op\":\"call\",\"payload\":null}", PP_CTL_CALL},
            {"{\"op\":\"trace\"}", PP_CTL_TRACE},
            {"{\"op\":\"scale\",\"n\":3}", PP_CTL_SCALE},
            {"{\"op\":\"restart\"}", PP_CTL_RESTART},
            {"{\"op\":\"drain\"}", PP_CTL_DRAIN},
            {"{\"op\":\"undrain\"}", PP_CTL_UNDRAIN},
            {"{\"op\":\"stop\"}", PP_CTL_STOP},
            {"{\"op\":\"reload\",\"extra\":[1,2]}", PP_CTL_RELOAD}};
  pp__ctl_req_t req;
  char err[256];
  size_t i;

  (void)state;
  for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    assert_int_equal(parse(ok[i].line, &req, err, sizeof(err)), 0);
    assert_int_equal(req.op, ok[i].op);
    assert_null(req.id);
    pp__ctl_req_free(&req);
    assert_null(req.root);
  }
}

static void test_fields(void **state) {
  pp__ctl_req_t req;
  char err[256];

  (void)state;
  assert_int_equal(parse("{\"op\":\"call\",\"id\":[7],\"payload\":{\"cmd\":"
                         "\"echo\"},\"timeout_ms\":250}\r ",
                         &req, err, sizeof(err)),
                   0);
  assert_string_equal(req.id, "[7]");
  /* The payload is kept as written (compact), not decoded. */
  assert_string_equal(req.payload_raw, "{\"cmd\":\"echo\"}");
  assert_int_equal(req.timeout_ms, 250);
  assert_int_equal(req.stream, 0);
  pp__ctl_req_free(&req);

  assert_int_equal(parse("{\"op\":\"call\",\"payload\":1,\"stream\":true}",
                         &req, err, sizeof(err)),
                   0);
  assert_int_equal(req.stream, 1);
  pp__ctl_req_free(&req);

  assert_int_equal(parse("{\"op\":\"call\",\"payload\":1,\"timeout_ms\":null}",
                         &req, err, sizeof(err)),
                   0);
  assert_int_equal(req.timeout_ms, -1);
  pp__ctl_req_free(&req);

  assert_int_equal(parse("{\"op\":\"scale\",\"n\":4096,\"force\":true}", &req,
                         err, sizeof(err)),
                   0);
  assert_int_equal(req.n, 4096);
  assert_int_equal(req.force, 1);
  pp__ctl_req_free(&req);

  /* An elastic pool's bounds instead of n. */
  assert_int_equal(
      parse("{\"op\":\"scale\",\"min\":2,\"max\":8}", &req, err, sizeof(err)),
      0);
  assert_int_equal(req.n, 0);
  assert_int_equal(req.min, 2);
  assert_int_equal(req.max, 8);
  pp__ctl_req_free(&req);

  assert_int_equal(
      parse("{\"op\":\"restart\",\"slot\":3}", &req, err, sizeof(err)), 0);
  assert_int_equal(req.slot, 3);
  pp__ctl_req_free(&req);
  assert_int_equal(
      parse("{\"op\":\"restart\",\"slot\":-1}", &req, err, sizeof(err)), 0);
  assert_int_equal(req.slot, -1);
  pp__ctl_req_free(&req);

  assert_int_equal(parse("{\"op\":\"trace\",\"filter\":\"hello, exit\"}", &req,
                         err, sizeof(err)),
                   0);
  assert_string_equal(req.filter, "hello, exit");
  pp__ctl_req_free(&req);
}

static void test_errors(void **state) {
  static const struct {
    const char *line;
    int code;
    const char *says;
  } bad[] = {
      {"not json", PP_CTL_EFATAL, "not JSON"},
      {"{\"op\":", PP_CTL_EFATAL, "not JSON"},
      {"", PP_CTL_EFATAL, "not JSON"},
      {"[1,2]", PP_CTL_EINVAL, "JSON object"},
      {"\"ping\"", PP_CTL_EINVAL, "JSON object"},
      {"{}", PP_CTL_EINVAL, "\"op\""},
      {"{\"op\":7}", PP_CTL_EINVAL, "\"op\""},
      {"{\"op\":\"nope\"}", PP_CTL_EINVAL, "nope"},
      {"{\"op\":\"call\"}", PP_CTL_EINVAL, "payload"},
      {"{\"op\":\"call\",\"payload\":1,\"timeout_ms\":-1}", PP_CTL_EINVAL,
       "timeout_ms"},
      {"{\"op\":\"call\",\"payload\":1,\"timeout_ms\":\"1s\"}", PP_CTL_EINVAL,
       "timeout_ms"},
      {"{\"op\":\"call\",\"payload\":1,\"stream\":1}", PP_CTL_EINVAL,
       "\"stream\" must be true or false"},
      {"{\"op\":\"scale\"}", PP_CTL_EINVAL, "\"n\""},
      {"{\"op\":\"scale\",\"n\":0}", PP_CTL_EINVAL, "\"n\""},
      {"{\"op\":\"scale\",\"n\":4097}", PP_CTL_EINVAL, "\"n\""},
      {"{\"op\":\"scale\",\"n\":2.5}", PP_CTL_EINVAL, "\"n\""},
      {"{\"op\":\"scale\",\"n\":2,\"force\":\"yes\"}", PP_CTL_EINVAL, "force"},
      {"{\"op\":\"scale\",\"min\":3,\"max\":2}", PP_CTL_EINVAL, "<="},
      {"{\"op\":\"scale\",\"min\":0,\"max\":2}", PP_CTL_EINVAL, "\"min\""},
      {"{\"op\":\"scale\",\"min\":1,\"max\":4097}", PP_CTL_EINVAL, "\"max\""},
      {"{\"op\":\"restart\",\"slot\":-2}", PP_CTL_EINVAL, "slot"},
      {"{\"op\":\"restart\",\"slot\":\"0\"}", PP_CTL_EINVAL, "slot"},
      {"{\"op\":\"trace\",\"filter\":[\"hello\"]}", PP_CTL_EINVAL, "filter"},
      {"{\"op\":\"trace\",\"filter\":\"hello,,exit\"}", PP_CTL_EINVAL, "empty"},
      {"{\"op\":\"trace\",\"filter\":\"hello,bogus\"}", PP_CTL_EINVAL, "bogus"},
  };
  pp__ctl_req_t req;
  char err[512];
  size_t i;

  (void)state;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    err[0] = '\0';
    if (parse(bad[i].line, &req, err, sizeof(err)) != bad[i].code)
      fail_msg("%s: not %d", bad[i].line, bad[i].code);
    if (strstr(err, bad[i].says) == NULL)
      fail_msg("%s: message '%s' does not say '%s'", bad[i].line, err,
               bad[i].says);
    /* Nothing to free, and freeing is harmless. */
    assert_null(req.root);
    assert_null(req.id);
    pp__ctl_req_free(&req);
  }
  /* Bytes after a NUL are part of the line, not its end. */
  assert_int_equal(
      pp__ctl_parse("{\"op\":\"ping\"}\0x", 15, &req, err, sizeof(err)),
      PP_CTL_EFATAL);
  /* No room for a message is fine. */
  assert_int_equal(parse("{\"op\":\"nope\"}", &req, NULL, 0), PP_CTL_EINVAL);
}

static void test_trace_mask(void **state) {
  uint64_t mask;
  char err[512];

  (void)state;
  assert_int_equal(pp__ctl_trace_mask(NULL, &mask, err, sizeof(err)), 0);
  assert_true(mask & ((uint64_t)1 << PP_TRACE_SPAWN));
  assert_true(mask & ((uint64_t)1 << PP_TRACE_CLOSED));
  assert_int_equal(
      pp__ctl_trace_mask("exit, reload ,closed", &mask, err, sizeof(err)), 0);
  assert_int_equal(mask, ((uint64_t)1 << PP_TRACE_EXIT) |
                             ((uint64_t)1 << PP_TRACE_RELOAD) |
                             ((uint64_t)1 << PP_TRACE_CLOSED));
  assert_int_equal(pp__ctl_trace_mask("exits", &mask, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "exits"));
  assert_non_null(strstr(err, "heartbeat_miss")); /* lists the names */
  assert_int_equal(pp__ctl_trace_mask("", &mask, err, sizeof(err)), -1);
}

/* JSON checked and compacted, never converted: numbers of any size stay
 * as written, and a top-level member's value is found. */
static void test_json_compact(void **state) {
  const char *in = " { \"payload\" : [ 18446744073709551616 ,\r\n 0.1, "
                   "1e400, \"a b\\n\\u00e9\" ] , \"op\":\"call\" } ";
  char out[256];
  size_t at, len;
  long n;

  (void)state;
  n = pp__ctl_json_compact(in, strlen(in), out, "payload", &at, &len);
  assert_true(n > 0);
  out[n] = '\0';
  assert_string_equal(out, "{\"payload\":[18446744073709551616,0.1,1e400,"
                           "\"a b\\n\\u00e9\"],\"op\":\"call\"}");
  assert_int_equal(at, strlen("{\"payload\":"));
  assert_int_equal(len, strlen("[18446744073709551616,0.1,1e400,"
                               "\"a b\\n\\u00e9\"]"));
  /* A nested member of the same name is not the top-level one. */
  n = pp__ctl_json_compact("{\"a\":{\"payload\":1},\"payload\":2}", 31, out,
                           "payload", &at, &len);
  assert_true(n > 0);
  assert_int_equal(len, 1);
  assert_int_equal(out[at], '2');
  n = pp__ctl_json_compact("{\"a\":1}", 7, out, "payload", &at, &len);
  assert_int_equal(n, 7);
  assert_int_equal(len, 0);
  /* Not JSON. */
  assert_int_equal(pp__ctl_json_compact("[1,]", 4, NULL, NULL, NULL, NULL), -1);
  assert_int_equal(pp__ctl_json_compact("01", 2, NULL, NULL, NULL, NULL), -1);
  assert_int_equal(pp__ctl_json_compact("1.", 2, NULL, NULL, NULL, NULL), -1);
  assert_int_equal(pp__ctl_json_compact("\"\x01\"", 3, NULL, NULL, NULL, NULL),
                   -1);
  assert_int_equal(
      pp__ctl_json_compact("\"\xc0\xaf\"", 4, NULL, NULL, NULL, NULL),
      -1); /* overlong UTF-8 */
  assert_int_equal(pp__ctl_json_compact("\"\\x\"", 4, NULL, NULL, NULL, NULL),
                   -1);
  assert_int_equal(pp__ctl_json_compact("1 2", 3, NULL, NULL, NULL, NULL), -1);
  assert_int_equal(pp__ctl_json_compact("nul", 3, NULL, NULL, NULL, NULL), -1);
  assert_int_equal(pp__ctl_json_compact("{\"a\" 1}", 7, NULL, NULL, NULL, NULL),
                   -1);
  assert_int_equal(pp__ctl_json_compact("", 0, NULL, NULL, NULL, NULL), -1);
  assert_int_equal(pp__ctl_json_compact("[1]\0", 4, NULL, NULL, NULL, NULL),
                   -1);
}

/* Deep nesting: up to jansson's limit, and no further. */
static void test_json_depth(void **state) {
  static char deep[2 * PP_CTL_JSON_DEPTH + 2];

  (void)state;
  memset(deep, '[', PP_CTL_JSON_DEPTH);
  memset(deep + PP_CTL_JSON_DEPTH, ']', PP_CTL_JSON_DEPTH);
  assert_int_equal(
      pp__ctl_json_compact(deep, 2 * PP_CTL_JSON_DEPTH, NULL, NULL, NULL, NULL),
      2 * PP_CTL_JSON_DEPTH);
  memset(deep, '[', PP_CTL_JSON_DEPTH + 1);
  memset(deep + PP_CTL_JSON_DEPTH + 1, ']', PP_CTL_JSON_DEPTH + 1);
  assert_int_equal(pp__ctl_json_compact(deep, 2 * PP_CTL_JSON_DEPTH + 2, NULL,
                                        NULL, NULL, NULL),
                   -1);
}

/* Two parsers must not disagree on a key: a key twice, or "payload" /
 * "id" spelled with escapes (which the raw scanner would not see), is
 * refused, whatever comes first. */
static void test_keys_one_meaning(void **state) {
  static const char *const bad[] = {
      "{\"op\":\"call\",\"payload\":{\"cmd\":\"echo\"},"
      "\"pay\\u006coad\":{\"cmd\":\"nums\",\"args\":\"smuggled\"}}",
      "{\"op\":\"call\",\"pay\\u006coad\":{\"cmd\":\"nums\"},"
      "\"payload\":{\"cmd\":\"echo\"}}",
      "{\"op\":\"call\",\"payload\":1,\"payload\":2}",
      "{\"op\":\"ping\",\"op\":\"stop\"}",
      "{\"op\":\"ping\",\"\\u006fp\":\"stop\"}",
      "{\"op\":\"ping\",\"id\":1,\"id\":2}",
  };
  static const char *const escaped[] = {
      "{\"op\":\"call\",\"pay\\u006coad\":{\"cmd\":\"echo\",\"args\":1.10}}",
      "{\"op\":\"ping\",\"\\u0069d\":0.1}",
  };
  pp__ctl_req_t req;
  char err[512];
  size_t i;

  (void)state;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    err[0] = '\0';
    if (parse(bad[i], &req, err, sizeof(err)) != PP_CTL_EINVAL)
      fail_msg("%s: accepted", bad[i]);
    if (strstr(err, "key twice") == NULL)
      fail_msg("%s: message '%s' does not say 'key twice'", bad[i], err);
    assert_null(req.root);
    pp__ctl_req_free(&req);
  }
  for (i = 0; i < sizeof(escaped) / sizeof(escaped[0]); i++) {
    err[0] = '\0';
    if (parse(escaped[i], &req, err, sizeof(err)) != PP_CTL_EINVAL)
      fail_msg("%s: accepted", escaped[i]);
    if (strstr(err, "without escapes") == NULL)
      fail_msg("%s: message '%s' does not say 'without escapes'", escaped[i],
               err);
    assert_null(req.root);
    pp__ctl_req_free(&req);
  }
}

/* The id comes back as written (compact): numbers of any size or
 * precision, strings with their escapes; and an invalid request still
 * has its id for the error reply. */
static void test_id_as_written(void **state) {
  static const struct {
    const char *line, *id;
  } cases[] = {
      {"{\"op\":\"ping\",\"id\":0.1}", "0.1"},
      {"{\"op\":\"ping\",\"id\":18446744073709551616}", "18446744073709551616"},
      {"{\"op\":\"ping\",\"id\":1.0e400}", "1.0e400"},
      {"{\"id\" : { \"a\" : [ 1 , \"x\\u0041\" ] } ,\"op\":\"ping\"}",
       "{\"a\":[1,\"x\\u0041\"]}"},
      {"{\"op\":\"ping\",\"id\":7}", "7"},
      {"{\"op\":\"call\",\"id\":-0.0,\"payload\":2}", "-0.0"},
  };
  pp__ctl_req_t req;
  char err[512];
  size_t i;

  (void)state;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (parse(cases[i].line, &req, err, sizeof(err)) != 0)
      fail_msg("%s: %s", cases[i].line, err);
    assert_non_null(req.id);
    assert_string_equal(req.id, cases[i].id);
    pp__ctl_req_free(&req);
    assert_null(req.id);
  }
  assert_int_equal(
      parse("{\"op\":\"nope\",\"id\":0.1}", &req, err, sizeof(err)),
      PP_CTL_EINVAL);
  assert_string_equal(req.id, "0.1");
  pp__ctl_req_free(&req);
}

/* Too deep is said as such, not as "not JSON". */
static void test_deep_request_message(void **state) {
  static char line[64 + 3000 + 3000 + 2];
  pp__ctl_req_t req;
  char err[512];
  size_t n = 0;

  (void)state;
  n += (size_t)sprintf(line, "{\"op\":\"call\",\"payload\":");
  memset(line + n, '[', 3000);
  n += 3000;
  memset(line + n, ']', 3000);
  n += 3000;
  line[n++] = '}';
  line[n] = '\0';
  assert_int_equal(parse(line, &req, err, sizeof(err)), PP_CTL_EFATAL);
  if (strstr(err, "nests deeper than 2048 levels") == NULL)
    fail_msg("message '%s' does not say how deep is too deep", err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ops),
      cmocka_unit_test(test_fields),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_trace_mask),
      cmocka_unit_test(test_json_compact),
      cmocka_unit_test(test_json_depth),
      cmocka_unit_test(test_keys_one_meaning),
      cmocka_unit_test(test_id_as_written),
      cmocka_unit_test(test_deep_request_message),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
