/* alternatives.c -- runs bench/alternatives.py (multiprocessing,
 * ProcessPoolExecutor, an Erlang port when escript exists) and keeps what
 * each reported, for the targets that compare them with pp_call. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

static alt_t alts[8];
static int nalts;

void run_alternatives(void) {
  char cmd[6 * PATH_MAX], line[512];
  FILE *f;

  snprintf(cmd, sizeof(cmd),
           "'%s' '%s/bench/alternatives.py' --duration %g --payload %zu "
           "--python '%s' --worker '%s' --root '%s'",
           O.python, O.root, O.duration, O.payload, O.python, worker_py,
           O.root);
  printf("\n== alternatives (bench/alternatives.py), one caller, %zu B echo\n"
         "   (run halfway through the JSON-mode windows they are compared "
         "with)\n  %-44s %9s %9s %11s\n",
         O.payload, "", "p50 us", "p99 us", "calls/s");
  fflush(stdout);
  if ((f = popen(cmd, "r")) == NULL) {
    perror("popen alternatives.py");
    return;
  }
  while (fgets(line, sizeof(line), f) && nalts < 8) {
    alt_t *a = &alts[nalts];
    char *tok, *save;
    if (strncmp(line, "ALT ", 4) != 0)
      continue;
    memset(a, 0, sizeof(*a));
    for (tok = strtok_r(line + 4, " \n", &save); tok;
         tok = strtok_r(NULL, " \n", &save)) {
      if (strncmp(tok, "name=", 5) == 0)
        snprintf(a->name, sizeof(a->name), "%s", tok + 5);
      else if (strncmp(tok, "p50_us=", 7) == 0)
        a->p50_us = atof(tok + 7);
      else if (strncmp(tok, "p99_us=", 7) == 0)
        a->p99_us = atof(tok + 7);
      else if (strncmp(tok, "calls_s=", 8) == 0)
        a->calls_s = atof(tok + 8);
      else if (strncmp(tok, "skipped=", 8) == 0)
        snprintf(a->skipped, sizeof(a->skipped), "%s", tok + 8);
    }
    for (char *p = a->skipped; *p; p++)
      if (*p == '_')
        *p = ' ';
    if (a->skipped[0]) {
      printf("  %-44s skipped: %s\n", a->name, a->skipped);
    } else {
      result_t *r = result_new("alternatives", a->name);
      r->p50_us = a->p50_us;
      r->p99_us = a->p99_us;
      r->calls_s = a->calls_s;
      printf("  %-44s %9.1f %9.1f %11.0f\n", a->name, a->p50_us, a->p99_us,
             a->calls_s);
      result_emit(r);
    }
    nalts++;
  }
  pclose(f);
}

alt_t *alt_get(const char *name) {
  for (int i = 0; i < nalts; i++)
    if (strcmp(alts[i].name, name) == 0)
      return &alts[i];
  return NULL;
}
