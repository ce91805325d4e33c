/* replay.c -- a main() for a fuzz target without libFuzzer: runs
 * LLVMFuzzerTestOneInput once on every file named, or in a directory
 * named, in name order.  Built with the project's own compiler in every
 * build, it turns the seed corpus and every crash ever found into a
 * regression suite (ctest fuzz_replay_*, label unit). */
#include "fuzz.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

static int run_file(const char *path) {
  uint8_t *data = NULL;
  size_t len = 0, cap = 0, got;
  FILE *f = fopen(path, "rb");

  if (f == NULL) {
    perror(path);
    return -1;
  }
  for (;;) {
    if (cap - len < 4096) {
      cap = cap ? cap * 2 : 8192;
      data = realloc(data, cap);
      FUZZ_CHECK(data != NULL);
    }
    got = fread(data + len, 1, cap - len, f);
    len += got;
    if (got == 0)
      break;
  }
  fclose(f);
  /* An exact-size copy, as libFuzzer hands inputs over. */
  {
    uint8_t *exact = malloc(len ? len : 1);
    FUZZ_CHECK(exact != NULL);
    memcpy(exact, data, len);
    free(data);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
  }
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, int *count) {
  char **names = NULL, path[4096];
  size_t n = 0, cap = 0, i;
  struct dirent *de;
  DIR *d = opendir(dir);
  int rc = 0;

  if (d == NULL) {
    perror(dir);
    return -1;
  }
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      names = realloc(names, cap * sizeof(*names));
      FUZZ_CHECK(names != NULL);
    }
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  if (n)
    qsort(names, n, sizeof(*names), by_name);
  for (i = 0; i < n; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    if (run_file(path) != 0)
      rc = -1;
    else
      (*count)++;
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  struct stat st;
  int i, count = 0, rc = 0;

  for (i = 1; i < argc; i++) {
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      rc = 1;
    } else if (S_ISDIR(st.st_mode)) {
      if (run_dir(argv[i], &count) != 0)
        rc = 1;
    } else if (run_file(argv[i]) != 0) {
      rc = 1;
    } else {
      count++;
    }
  }
  printf("%s: %d input(s) replayed\n", argc > 0 ? argv[0] : "replay", count);
  return rc != 0 || count == 0;
}
