/* test_with_mock.c -- how to test your own code that embeds portpool.
 *
 * The code under test, word_count(), asks a Python handler to count words.
 * Its tests run twice: against the mock adapter (in-process C handlers, no
 * interpreter: fast) and, when PORTPOOL_EXAMPLE_PYTHON names a handler
 * file, against real Python workers (the truth).  Each test opens its own
 * pool from its own derived config and checks, at teardown, that it left no
 * lease, waiter or task behind.  No global switch, no sleep. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <portpool.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the code under test */

static int word_count(pp_pool_t *pool, const char *text) {
  char args[256];
  pp_buf_t reply = {0};
  int n = -1;

  snprintf(args, sizeof(args), "\"%s\"", text);
  if (pp_call_cmd(pool, "words", args, &reply, -1, NULL) == 0)
    n = atoi(reply.data);
  pp_buf_free(&reply);
  return n;
}

/* ---- the mock's version of the handler, in C */

static int mock_words(const char *args, size_t len, pp_buf_t *reply,
                      void *data) {
  size_t i;
  int n = 0, in = 0;

  (void)data;
  for (i = 1; i + 1 < len; i++) { /* inside the JSON string's quotes */
    if (args[i] == ' ')
      in = 0;
    else if (!in)
      in = 1, n++;
  }
  reply->data = malloc(16);
  reply->cap = 16;
  reply->len = (size_t)snprintf(reply->data, 16, "%d", n);
  return 0;
}

/* ---- per-test pools */

typedef struct fixture {
  pp_pool_t *pool;
  pp_mock_t *mock;
} fixture_t;

static int setup(void **state, const char *adapter) {
  const char *python = getenv("PORTPOOL_EXAMPLE_PYTHON");
  char command[1024];
  /* worker.allow_root: the tests may run as root (CI does). */
  const char *over[3] = {"size=2", command, "worker.allow_root=true"};
  fixture_t *f = calloc(1, sizeof(*f));
  pp_pool_options_t opts = {0};
  pp_config_t *base, *cfg;
  pp_diag_t diag;

  pp_config_new(&base);
  if (strcmp(adapter, "mock") == 0) {
    snprintf(command, sizeof(command), "adapter=mock");
    pp_mock_new(&f->mock);
    pp_mock_add(f->mock, "words", mock_words, NULL);
    opts.mock = f->mock;
  } else {
    snprintf(command, sizeof(command), "worker.command=%s", python);
  }
  if (pp_config_derive(base, over, 3, &cfg, &diag) != 0 ||
      pp_test_pool_open(cfg, &opts, 10000, &f->pool, &diag) != 0) {
    fprintf(stderr, "setup (%s): %s\n", adapter, diag.message);
    return -1;
  }
  pp_config_free(cfg);
  pp_config_free(base);
  *state = f;
  return 0;
}

static int setup_mock(void **state) { return setup(state, "mock"); }
static int setup_python(void **state) { return setup(state, "python"); }

static int teardown(void **state) {
  fixture_t *f = *state;
  pp_diag_t diag;
  int r = pp_test_pool_close(f->pool, 5000, &diag);

  if (r != 0)
    fprintf(stderr, "the test leaked: %s\n", diag.message);
  pp_mock_free(f->mock);
  free(f);
  return r == 0 ? 0 : -1;
}

static void test_counts_words(void **state) {
  fixture_t *f = *state;
  assert_int_equal(word_count(f->pool, "the quick brown fox"), 4);
  assert_int_equal(word_count(f->pool, ""), 0);
}

int main(void) {
  const struct CMUnitTest mock_tests[] = {
      cmocka_unit_test_setup_teardown(test_counts_words, setup_mock, teardown),
  };
  const struct CMUnitTest python_tests[] = {
      cmocka_unit_test_setup_teardown(test_counts_words, setup_python,
                                      teardown),
  };
  int failed = cmocka_run_group_tests_name("mock", mock_tests, NULL, NULL);

  if (getenv("PORTPOOL_EXAMPLE_PYTHON"))
    failed += cmocka_run_group_tests_name("python", python_tests, NULL, NULL);
  return failed;
}
