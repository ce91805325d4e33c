/* fuzz_config.c -- libFuzzer target for the config loader
 * (pp_config_load_string, config/).  Any bytes either load into a config
 * that validates, or fail with PP_ECONFIG and a diagnostic that is a
 * NUL-terminated sentence with a sane position.  A config that loads
 * survives a round trip: every key rendered as text (pp_config_get) and
 * set on a fresh config (pp_config_set) renders the same again, and a deep
 * copy renders the same. */
#include "fuzz.h"

#include "config.h"
#include "diag.h"

#include <string.h>

#define TEXT_MAX 65536

static int terminated(const char *s, size_t cap) {
  return memchr(s, '\0', cap) != NULL;
}

static void check_diag(const pp_diag_t *d) {
  char line[1024];

  FUZZ_CHECK(terminated(d->message, sizeof(d->message)));
  FUZZ_CHECK(d->message[0] != '\0');
  FUZZ_CHECK(terminated(d->file, sizeof(d->file)));
  FUZZ_CHECK(terminated(d->key, sizeof(d->key)));
  FUZZ_CHECK(d->line >= 0 && d->column >= 0);
  pp__diag_format(d, line, sizeof(line));
  FUZZ_CHECK(terminated(line, sizeof(line)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char a[TEXT_MAX], b[TEXT_MAX];
  pp_config_t *cfg = NULL, *fresh = NULL, *copy = NULL;
  const char *key;
  pp_diag_t d;
  int r, i;

  memset(&d, 'A', sizeof(d)); /* no stale NULs to hide a missing one */
  r = pp_config_load_string("fuzz.yaml", (const char *)data, size, &cfg, &d);
  if (r != 0) {
    FUZZ_CHECK(r == PP_ECONFIG || r == UV_ENOMEM);
    FUZZ_CHECK(cfg == NULL);
    check_diag(&d);
    return 0;
  }
  FUZZ_CHECK(cfg != NULL);
  FUZZ_CHECK(pp_config_validate(cfg, &d) == 0);
  FUZZ_CHECK(pp_config_new(&fresh) == 0);
  FUZZ_CHECK(pp_config_copy(cfg, &copy) == 0);
  for (i = 0; (key = pp__config_key_name(i)) != NULL; i++) {
    if (pp_config_get(cfg, key, a, sizeof(a)) != 0)
      continue; /* too long to render here: not a bug */
    r = pp_config_set(fresh, key, a, &d);
    if (r != 0) {
      fprintf(stderr, "%s: rendered as %s, which does not set: %s\n", key, a,
              d.message);
      FUZZ_CHECK(r == 0);
    }
    FUZZ_CHECK(pp_config_get(fresh, key, b, sizeof(b)) == 0);
    if (strcmp(a, b) != 0) {
      fprintf(stderr, "%s: rendered %s, set back renders %s\n", key, a, b);
      FUZZ_CHECK(strcmp(a, b) == 0);
    }
    FUZZ_CHECK(pp_config_get(copy, key, b, sizeof(b)) == 0);
    FUZZ_CHECK(strcmp(a, b) == 0);
  }
  FUZZ_CHECK(pp_config_validate(fresh, &d) == 0);
  pp_config_free(copy);
  pp_config_free(fresh);
  pp_config_free(cfg);
  return 0;
}
