/* keys.h -- private to config/: the key table and the helpers that
 * config.c (values and API), parse.c (YAML) and values.c (value codecs)
 * share.  Nothing outside config/ includes this. */
#ifndef PP_CONFIG_KEYS_H
#define PP_CONFIG_KEYS_H

#include "config.h"
#include "distance.h"

#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

/* How a key's text maps to its field(s). */
typedef enum {
  PP__T_STRING,   /* char * */
  PP__T_INT,      /* int, or uint64_t by ctype, within [min, max] */
  PP__T_SIZE,     /* int or `auto` (= CPUs, sets the int at off2) */
  PP__T_DURATION, /* uint64_t milliseconds: 250ms, 5s, 2m, 1h, 1.5s */
  PP__T_MEMORY,   /* bytes, uint64_t or uint32_t: 512MiB, 100MB, 4096 */
  PP__T_ENUM,     /* an index into choices, or the choice's char * */
  PP__T_LIST,     /* char ** (NULL-terminated), length int at off2 */
  PP__T_ENV,      /* like LIST, entries "NAME=value", merged per name */
  PP__T_BACKOFF,  /* two durations [min, max]: uint64_t at off, off2 */
  PP__T_MODE      /* int file mode, written in octal: 0600 */
} pp__type_t;

/* The C type of a numeric field. */
typedef enum { PP__C_INT = 0, PP__C_U32, PP__C_U64 } pp__ctype_t;

#define PP__F_NULLABLE 1u /* STRING: empty or null means NULL */
#define PP__F_STRVAL 2u   /* ENUM: the field is a char * holding the name */
#define PP__F_UNSET                                                            \
  8u /* INT/MEMORY (uint64_t): null or empty means unset,                      \
        stored as PP_LIMIT_UNSET and rendered as nothing */
#define PP__F_PYDIR                                                            \
  4u /* LIST: default items after the first are file                           \
        names in pp__python_dir() */

typedef struct pp__key {
  const char *name; /* dotted, as in the YAML */
  pp__type_t type;
  unsigned flags;
  size_t off;                   /* the field */
  size_t off2;                  /* LIST/ENV length, BACKOFF max, SIZE auto */
  pp__ctype_t ctype;            /* of the field at off, for numbers */
  int64_t min, max;             /* numeric bounds (ms for durations) */
  const char *const *choices;   /* ENUM names, NULL-terminated */
  const char *def;              /* the default, as its text */
  const char *const *def_items; /* LIST/ENV default entries */
  const char *doc;              /* one line for --help and docs */
} pp__key_t;

#define PP__NKEYS 56 /* 53 + scale.* */
extern const pp__key_t pp__keys[PP__NKEYS];

/* The key named exactly `name` (len bytes), or NULL. */
const pp__key_t *pp__key_find(const char *name, size_t len);

/* 1 when some key starts with "name." (a section such as "worker"). */
int pp__key_is_section(const char *name, size_t len);

/* The nearest valid key or section to a misspelled one, copied into out;
 * 0 when none is near enough. */
int pp__key_suggest(const char *typed, char *out, size_t len);

/* Allocation used by every config file, so tests can make any one fail
 * (see pp__config_fault_alloc).  All return NULL on failure. */
void *pp__cfg_malloc(size_t n);
void *pp__cfg_realloc(void *p, size_t n);
char *pp__cfg_strndup(const char *s, size_t n);

/* The directory of the installed Python worker module (portpool_worker.py,
 * example_handlers.py) into out: beside the library that holds this code,
 * <libdir>/../share/portpool/python (or <bindir>/../share/... for a
 * program linked with the static library); the source tree's copy only
 * when the library was loaded from its build tree; else the configured
 * install directory.  Truncated to fit len. */
void pp__python_dir(char *out, size_t len);

/* A relative path made absolute against dir (dir/path, malloc'd) into
 * *out; *out is NULL when path is absolute or empty.  Returns 0 or
 * UV_ENOMEM. */
int pp__path_rebase(const char *dir, const char *path, char **out);

/* Free a NULL-terminated string vector (NULL is fine). */
void pp__strv_free(char **v);

/* Copy src into a fixed diag field of cap bytes, cut short if need be. */
void pp__diag_copy(char *dst, size_t cap, const char *src);

/* Clear diag (if not NULL) and set its file and key (either may be NULL). */
void pp__diag_reset(pp_diag_t *diag, const char *file, const char *key);

/* Fill diag (if not NULL) with a message and the 1-based position of
 * `node` (none when node is NULL).  Returns PP_ECONFIG. */
int pp__diag_at(pp_diag_t *diag, const yaml_node_t *node, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Parse `node` (a scalar, sequence or mapping of `doc`; doc may be NULL
 * for a lone scalar) as key k's value and store it in cfg.  On error cfg
 * is unchanged.  Returns 0, PP_ECONFIG (diag message and position filled,
 * not file or key) or UV_ENOMEM. */
int pp__value_set(pp_config_t *cfg, const pp__key_t *k, yaml_document_t *doc,
                  const yaml_node_t *node, pp_diag_t *diag);

/* The field at byte offset off of a config, as a T. */
#define FIELD(cfg, off, T) ((T *)(void *)((char *)(cfg) + (off)))
#define CFIELD(cfg, off, T)                                                    \
  ((T const *)(const void *)((const char *)(cfg) + (off)))

/* YAML's null: empty, ~, null, Null or NULL (in a plain scalar). */
int pp__null_word(const char *s, size_t len);

/* Texts for messages: a duration (5s, 250ms), what key k accepts ("an
 * integer from 1 to 1024"), "one of lifo, fifo", and a value quoted and
 * escaped (cut short to fit; cap >= 16). */
void pp__dur_text(uint64_t ms, char *buf, size_t len);
void pp__range_text(const pp__key_t *k, char *buf, size_t len);
void pp__choices_text(const pp__key_t *k, char *buf, size_t len);
void pp__quote_text(const char *s, size_t len, char *buf, size_t cap);

/* Render key k's value in its YAML form.  Returns 0 or UV_ENOBUFS. */
int pp__value_render(const pp_config_t *cfg, const pp__key_t *k, char *buf,
                     size_t len);

/* Check key k's value in cfg against its bounds or choices, as a config
 * changed by hand might break them.  Returns 0 or PP_ECONFIG (message only). */
int pp__value_check(const pp_config_t *cfg, const pp__key_t *k,
                    pp_diag_t *diag);

/* Parse `text` as a single YAML value (for pp_config_set's flow forms).
 * On success *root is the document's root node, or NULL for empty text;
 * delete the document afterwards.  Returns 0, PP_ECONFIG (diag message)
 * or UV_ENOMEM; on error there is no document to delete. */
int pp__yaml_value(const char *text, size_t len, yaml_document_t *doc,
                   yaml_node_t **root, pp_diag_t *diag);

/* Validation, naming the failing key in diag->key.  Returns 0 or
 * PP_ECONFIG. */
int pp__config_check(const pp_config_t *cfg, pp_diag_t *diag);
/* listen.address split: HOST (brackets of [::1] dropped) and PORT
 * (0..65535).  0, or -1 when it is not HOST:PORT. */
int pp__listen_parse(const char *addr, char *host, size_t hostlen, int *port);
/* 1 if host is a loopback address or name. */
int pp__listen_loopback(const char *host);

#endif
