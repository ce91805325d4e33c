/* paths.c -- owns where files are: the directory of the Python worker
 * module, found from the place the library (or the program it is linked
 * into) was loaded from, and relative paths made absolute against a
 * directory (a config file's).  Does not read configs. */
#include "keys.h"

#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Set by CMakeLists.txt: the source copy of the module and the build tree
 * (used only by a library loaded from that build tree), and the module's
 * place relative to the installed library and to installed programs
 * (GNUInstallDirs), then as configured (a static library linked into a
 * program outside the prefix). */
#ifndef PP_PYTHON_DIR
#define PP_PYTHON_DIR "bridge/python"
#endif
#ifndef PP_BUILD_DIR
#define PP_BUILD_DIR ""
#endif
#ifndef PP_LIB_TO_PYTHON
#define PP_LIB_TO_PYTHON "../share/portpool/python"
#endif
#ifndef PP_BIN_TO_PYTHON
#define PP_BIN_TO_PYTHON "../share/portpool/python"
#endif
#ifndef PP_PYTHON_INSTALL_DIR
#define PP_PYTHON_INSTALL_DIR "/usr/local/share/portpool/python"
#endif

/* The real directory of the object holding this code: the shared library,
 * or for the static library the program it was linked into. */
static int object_dir(char *out, size_t len) {
  char real[PATH_MAX], *slash;
  struct link_map *map = NULL;
  Dl_info info;

  if (dladdr1((void *)object_dir, &info, (void **)&map, RTLD_DL_LINKMAP) == 0)
    return -1;
  /* The main program's link map has an empty name. */
  if (map != NULL && map->l_name != NULL && map->l_name[0] != '\0') {
    if (realpath(map->l_name, real) == NULL)
      return -1;
  } else if (realpath("/proc/self/exe", real) == NULL) {
    return -1;
  }
  slash = strrchr(real, '/');
  if (slash == NULL || (size_t)(slash - real) >= len)
    return -1;
  memcpy(out, real, (size_t)(slash - real));
  out[slash - real] = '\0';
  return 0;
}

/* 1 when dir is the build tree or under it. */
static int in_build_tree(const char *dir) {
  char build[PATH_MAX];
  size_t n;

  if (PP_BUILD_DIR[0] == '\0' || realpath(PP_BUILD_DIR, build) == NULL)
    return 0;
  n = strlen(build);
  return strncmp(dir, build, n) == 0 && (dir[n] == '\0' || dir[n] == '/');
}

/* 1 when dir/rel holds portpool_worker.py; its real path into out. */
static int module_at(const char *dir, const char *rel, char *out, size_t len) {
  char path[PATH_MAX + 64], real[PATH_MAX];

  if ((size_t)snprintf(path, sizeof(path), "%s%s%s", dir, rel[0] ? "/" : "",
                       rel) >= sizeof(path) ||
      realpath(path, real) == NULL || strlen(real) >= len)
    return 0;
  snprintf(path, sizeof(path), "%s/portpool_worker.py", real);
  if (access(path, R_OK) != 0)
    return 0;
  snprintf(out, len, "%s", real);
  return 1;
}

void pp__python_dir(char *out, size_t len) {
  char dir[PATH_MAX];

  if (object_dir(dir, sizeof(dir)) == 0) {
    if (in_build_tree(dir) && module_at(PP_PYTHON_DIR, "", out, len))
      return;
    if (module_at(dir, PP_LIB_TO_PYTHON, out, len) ||
        module_at(dir, PP_BIN_TO_PYTHON, out, len))
      return;
  }
  snprintf(out, len, "%s", PP_PYTHON_INSTALL_DIR);
}

int pp__path_rebase(const char *dir, const char *path, char **out) {
  size_t dlen = strlen(dir), plen = strlen(path);
  char *p;

  *out = NULL;
  if (path[0] == '/' || path[0] == '\0')
    return 0;
  p = pp__cfg_malloc(dlen + plen + 2);
  if (p == NULL)
    return UV_ENOMEM;
  memcpy(p, dir, dlen);
  p[dlen] = '/';
  memcpy(p + dlen + 1, path, plen + 1);
  *out = p;
  return 0;
}
