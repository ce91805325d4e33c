/* format.c -- how poolctl shows a status object to people: durations,
 * sizes, latencies, state colours, CPU use between two samples, and the
 * header lines and worker table that `status` prints and `top` reuses. */
#include "poolctl.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_int_t pc_num(json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);

  if (json_is_boolean(v))
    return json_is_true(v);
  return json_is_integer(v) ? json_integer_value(v) : 0;
}

const char *pc_str(json_t *obj, const char *key) {
  const char *s = json_string_value(json_object_get(obj, key));
  return s ? s : "?";
}

void pc_fmt_duration(uint64_t ms, char *buf, size_t len) {
  uint64_t s = ms / 1000;

  if (ms < 1000)
    snprintf(buf, len, "%" PRIu64 "ms", ms);
  else if (s < 60)
    snprintf(buf, len, "%" PRIu64 "s", s);
  else if (s < 3600)
    snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
  else if (s < 86400)
    snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
  else
    snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s / 3600 % 24);
}

void pc_fmt_bytes(uint64_t b, char *buf, size_t len) {
  static const char *units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = (double)b;
  int i = -1;

  if (b < 1024) {
    snprintf(buf, len, "%" PRIu64 "B", b);
    return;
  }
  while (v >= 1024 && i < 3) {
    v /= 1024;
    i++;
  }
  snprintf(buf, len, "%.1f%s", v, units[i]);
}

void pc_fmt_us(uint64_t us, char *buf, size_t len) {
  if (us < 1000)
    snprintf(buf, len, "%" PRIu64 "us", us);
  else if (us < 1000000)
    snprintf(buf, len, "%.1fms", (double)us / 1000);
  else
    snprintf(buf, len, "%.2fs", (double)us / 1000000);
}

const char *pc_state_color(const char *state) {
  static const struct {
    const char *state, *color;
  } map[] = {{"idle", "\033[32m"},     {"ready", "\033[32m"},
             {"leased", "\033[36m"},   {"busy", "\033[36m"},
             {"starting", "\033[33m"}, {"warming", "\033[33m"},
             {"backoff", "\033[33m"},  {"fatal", "\033[31m"},
             {"degraded", "\033[31m"}, {"draining", "\033[2m"},
             {"stopping", "\033[2m"},  {"exited", "\033[2m"},
             {"closing", "\033[2m"},   {"closed", "\033[2m"}};
  size_t i;

  for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (strcmp(map[i].state, state) == 0)
      return map[i].color;
  return NULL;
}

int pc_histogram(json_t *obj, pp_histogram_t *h) {
  json_t *b = json_object_get(obj, "buckets"), *v;
  size_t k;

  memset(h, 0, sizeof(*h));
  if (!json_is_object(obj) || !json_is_array(b) ||
      json_array_size(b) > PP_HIST_BUCKETS)
    return -1;
  json_array_foreach(b, k, v) {
    if (!json_is_integer(v) || json_integer_value(v) < 0)
      return -1;
    h->buckets[k] = (uint64_t)json_integer_value(v);
  }
  h->count = (uint64_t)pc_num(obj, "count");
  h->sum_us = (uint64_t)pc_num(obj, "sum_us");
  h->max_us = (uint64_t)pc_num(obj, "max_us");
  return 0;
}

/* ------------------------------------------------------------------- CPU */

int pc_cpu_sample(pc_cpu_t *s, json_t *st) {
  json_t *workers = json_object_get(st, "workers"), *w;
  size_t n = json_array_size(workers), i;
  uint64_t *cpu;
  int *pid;

  if (n > (size_t)s->n) {
    pid = realloc(s->pid, n * sizeof(*pid));
    if (pid == NULL)
      return -1;
    s->pid = pid;
    cpu = realloc(s->cpu_ms, n * sizeof(*cpu));
    if (cpu == NULL)
      return -1;
    s->cpu_ms = cpu;
  }
  s->n = (int)n;
  s->at_ms = (uint64_t)pc_num(st, "uptime_ms");
  json_array_foreach(workers, i, w) {
    s->pid[i] = (int)pc_num(w, "pid");
    s->cpu_ms[i] = (uint64_t)pc_num(w, "cpu_time_ms");
  }
  return 0;
}

double pc_cpu_percent(const pc_cpu_t *prev, json_t *st, json_t *w) {
  json_int_t id = pc_num(w, "id"), pid = pc_num(w, "pid");
  uint64_t now = (uint64_t)pc_num(st, "uptime_ms");
  uint64_t cpu = (uint64_t)pc_num(w, "cpu_time_ms");

  if (prev == NULL || id < 0 || id >= prev->n || pid <= 0 ||
      prev->pid[id] != pid || now <= prev->at_ms || cpu < prev->cpu_ms[id] ||
      json_object_get(w, "cpu_time_ms") == NULL)
    return -1;
  return 100.0 * (double)(cpu - prev->cpu_ms[id]) / (double)(now - prev->at_ms);
}

void pc_cpu_free(pc_cpu_t *s) {
  free(s->pid);
  free(s->cpu_ms);
  memset(s, 0, sizeof(*s));
}

/* ----------------------------------------------------------------- table */

/* A state name padded to width, coloured when allowed: pad first, so the
 * escape codes do not upset the columns. */
static void put_state(FILE *out, const char *state, int width, int color) {
  const char *c = color ? pc_state_color(state) : NULL;

  if (c)
    fprintf(out, "%s%-*s%s", c, width, state, PC_RESET);
  else
    fprintf(out, "%-*s", width, state);
}

/* "handlers add, echo, ..." from the names the workers' HELLO listed, on
 * one line of at most about 100 columns; nothing when the pool has none. */
static void print_handlers(FILE *out, json_t *names, json_t *kinds) {
  size_t i, n = json_array_size(names), col = 8;
  const char *name, *kind;

  if (n == 0)
    return;
  fputs("handlers", out);
  for (i = 0; i < n; i++) {
    name = json_string_value(json_array_get(names, i));
    if (name == NULL)
      continue;
    if (i > 0 && col + strlen(name) > 90) {
      fprintf(out, " ... (%zu in all)", n);
      break;
    }
    fputs(i ? ", " : " ", out);
    /* A worker other than ours may send any text: no escape codes. */
    for (const char *c = name; *c; c++)
      fputc((unsigned char)*c < 0x20 || *c == 0x7f ? '?' : *c, out);
    col += strlen(name) + 2;
    /* Not a plain function: say which (the pool keeps only these). */
    kind = json_string_value(json_object_get(kinds, name));
    if (kind) {
      fprintf(out, " (%s)", kind);
      col += strlen(kind) + 3;
    }
  }
  fputc('\n', out);
}

void pc_print_header(FILE *out, json_t *st, int color) {
  json_t *by = json_object_get(st, "reclaimed_by");
  char up[32];

  pc_fmt_duration((uint64_t)pc_num(st, "uptime_ms"), up, sizeof(up));
  fprintf(out, "pool %s  ", pc_str(st, "name"));
  put_state(out, pc_str(st, "state"), 0, color);
  if (pc_num(st, "draining"))
    fputs("  (draining)", out);
  fprintf(out, "  adapter %s  pid %" JSON_INTEGER_FORMAT "  uptime %s\n",
          pc_str(st, "adapter"), pc_num(st, "pid"), up);
  fprintf(out,
          "workers %" JSON_INTEGER_FORMAT " (target %" JSON_INTEGER_FORMAT
          ")  idle %" JSON_INTEGER_FORMAT "  leased %" JSON_INTEGER_FORMAT
          "  busy %" JSON_INTEGER_FORMAT "  starting %" JSON_INTEGER_FORMAT
          "  backoff %" JSON_INTEGER_FORMAT "  fatal %" JSON_INTEGER_FORMAT
          "\n",
          pc_num(st, "size"),
          json_object_get(st, "target_size") ? pc_num(st, "target_size")
                                             : pc_num(st, "size"),
          pc_num(st, "idle"), pc_num(st, "leased"), pc_num(st, "busy"),
          pc_num(st, "starting"), pc_num(st, "backoff"), pc_num(st, "fatal"));
  if (json_is_true(json_object_get(st, "elastic")))
    fprintf(out,
            "elastic %" JSON_INTEGER_FORMAT "..%" JSON_INTEGER_FORMAT
            "  last change: %s\n",
            pc_num(st, "size_min"), pc_num(st, "size_max"),
            pc_str(st, "scale_reason"));
  if (json_string_length(json_object_get(st, "scale_blocked")) > 0)
    fprintf(out, "%s\n", pc_str(st, "scale_blocked"));
  fprintf(
      out,
      "waiters %" JSON_INTEGER_FORMAT " (max %" JSON_INTEGER_FORMAT
      ")  checkouts %" JSON_INTEGER_FORMAT "  timeouts %" JSON_INTEGER_FORMAT
      "  rejected %" JSON_INTEGER_FORMAT "  requests %" JSON_INTEGER_FORMAT
      "  errors %" JSON_INTEGER_FORMAT "  restarts %" JSON_INTEGER_FORMAT
      "  recycles %" JSON_INTEGER_FORMAT "  slow %" JSON_INTEGER_FORMAT "\n",
      pc_num(st, "waiters"), pc_num(st, "waiters_max"), pc_num(st, "checkouts"),
      pc_num(st, "timeouts"), pc_num(st, "rejected"), pc_num(st, "requests"),
      pc_num(st, "errors"), pc_num(st, "restarts"), pc_num(st, "recycles"),
      pc_num(st, "slow_requests"));
  fprintf(out,
          "reclaimed %" JSON_INTEGER_FORMAT ": withdrawn %" JSON_INTEGER_FORMAT
          "  undelivered %" JSON_INTEGER_FORMAT "  idle %" JSON_INTEGER_FORMAT
          "  in-flight %" JSON_INTEGER_FORMAT
          "  (stale replies %" JSON_INTEGER_FORMAT
          ", cancels %" JSON_INTEGER_FORMAT ")\n",
          pc_num(st, "reclaimed"), pc_num(by, "withdrawn"),
          pc_num(by, "undelivered"), pc_num(by, "idle"),
          pc_num(by, "in_flight"), pc_num(st, "stale_replies"),
          pc_num(st, "cancels"));
  print_handlers(out, json_object_get(st, "handlers"),
                 json_object_get(st, "handler_kinds"));
}

/* Where each worker's last slow-request dump found it (worker.slow_request):
 * the innermost Python frame of the dump, faulthandler's first `File`
 * line; the whole dump is in status --json (last_slow_stack). */
static void print_slow_stacks(FILE *out, json_t *workers) {
  const char *stack, *at, *c;
  json_t *w;
  size_t i;

  json_array_foreach(workers, i, w) {
    stack = json_string_value(json_object_get(w, "last_slow_stack"));
    if (stack == NULL || (at = strstr(stack, "File \"")) == NULL)
      continue;
    fprintf(out, "slow: worker %" JSON_INTEGER_FORMAT " was at ",
            pc_num(w, "id"));
    for (c = at; *c && *c != '\n'; c++)
      fputc((unsigned char)*c < 0x20 || *c == 0x7f ? '?' : *c, out);
    fputs("  (status --json: last_slow_stack)\n", out);
  }
}

/* One worker row's cells that need formatting. */
static void worker_cells(json_t *st, json_t *w, const pc_cpu_t *prev, char *age,
                         char *reqs, char *up, char *rss, char *cpu,
                         size_t len) {
  double pct;

  if (pc_num(w, "request_age_ms") > 0)
    pc_fmt_duration((uint64_t)pc_num(w, "request_age_ms"), age, len);
  else
    snprintf(age, len, "-");
  if (pc_num(w, "max_requests") > 0)
    snprintf(reqs, len, "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT,
             pc_num(w, "requests"), pc_num(w, "max_requests"));
  else
    snprintf(reqs, len, "%" JSON_INTEGER_FORMAT, pc_num(w, "requests"));
  if (pc_num(w, "uptime_ms") > 0)
    pc_fmt_duration((uint64_t)pc_num(w, "uptime_ms"), up, len);
  else
    snprintf(up, len, "-");
  if (pc_num(w, "rss_bytes") > 0)
    pc_fmt_bytes((uint64_t)pc_num(w, "rss_bytes"), rss, len);
  else
    snprintf(rss, len, "-");
  pct = pc_cpu_percent(prev, st, w);
  if (pct >= 0)
    snprintf(cpu, len, "%.1f%%", pct);
  else if (pc_num(w, "pid") > 0 && json_object_get(w, "cpu_time_ms"))
    snprintf(cpu, len, "%.2fs", (double)pc_num(w, "cpu_time_ms") / 1000);
  else
    snprintf(cpu, len, "-");
}

void pc_print_status(FILE *out, json_t *st, const pc_cpu_t *prev, int color) {
  const char *undone = json_string_value(json_object_get(st, "reload_error"));

  pc_print_header(out, st, color);
  /* The latest reload was undone: the pool runs its previous config. */
  if (undone && *undone)
    fprintf(out, "%s; the pool kept its previous config\n", undone);
  fputc('\n', out);
  pc_print_workers(out, st, prev, color);
}

void pc_print_workers(FILE *out, json_t *st, const pc_cpu_t *prev, int color) {
  json_t *workers = json_object_get(st, "workers"), *w;
  char age[32], reqs[48], up[32], rss[32], cpu[32], lease[32], state[32];
  const char *err;
  int retiring = 0;
  size_t i;

  fprintf(out, "%-4s %-8s %-10s %4s %6s %8s %11s %8s %7s %9s %7s  %s\n", "ID",
          "PID", "STATE", "GEN", "LEASE", "REQ-AGE", "REQUESTS", "RESTARTS",
          "UPTIME", "RSS", "CPU", "LAST-EXIT");
  json_array_foreach(workers, i, w) {
    worker_cells(st, w, prev, age, reqs, up, rss, cpu, sizeof(age));
    if (pc_num(w, "lease") > 0)
      snprintf(lease, sizeof(lease), "%" JSON_INTEGER_FORMAT,
               pc_num(w, "lease"));
    else
      snprintf(lease, sizeof(lease), "-");
    fprintf(out, "%-4" JSON_INTEGER_FORMAT " ", pc_num(w, "id"));
    if (pc_num(w, "pid") > 0)
      fprintf(out, "%-8" JSON_INTEGER_FORMAT " ", pc_num(w, "pid"));
    else
      fprintf(out, "%-8s ", "-");
    /* A worker to be replaced once idle is marked with '*'. */
    snprintf(state, sizeof(state), "%s%s", pc_str(w, "state"),
             pc_num(w, "retiring") ? "*" : "");
    retiring |= pc_num(w, "retiring") != 0;
    if (color && pc_state_color(pc_str(w, "state")))
      fprintf(out, "%s%-10s%s", pc_state_color(pc_str(w, "state")), state,
              PC_RESET);
    else
      fprintf(out, "%-10s", state);
    fprintf(out,
            " %4" JSON_INTEGER_FORMAT " %6s %8s %11s %8" JSON_INTEGER_FORMAT
            " %7s %9s %7s  %s",
            pc_num(w, "generation"), lease, age, reqs, pc_num(w, "restarts"),
            up, rss, cpu, pc_str(w, "last_exit"));
    /* Died before HELLO: say why (the pool strips control bytes). */
    err = json_string_value(json_object_get(w, "last_error"));
    if (err && *err)
      fprintf(out, ": %s", err);
    fputc('\n', out);
  }
  if (retiring)
    fputs("* retiring: replaced once idle\n", out);
  print_slow_stacks(out, workers);
}
