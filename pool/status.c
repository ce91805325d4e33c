/* status.c -- owns the status snapshot: counters and per-worker rows copied
 * under the lock, RSS read from /proc, and the JSON rendering. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void pp__proc_stat_open(pp__proc_t *proc) {
  char path[64];

  snprintf(path, sizeof(path), "/proc/%d/stat", proc->pid);
  if ((proc->stat_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
    pp__log(proc->pool,
            "worker %d (pid %d): %s: %s: status shows no RSS or CPU for "
            "it, and worker.max_rss does not recycle it",
            proc->slot->id, proc->pid, path, strerror(errno));
}

/* RSS and utime + stime (ms) of a process, from the one file that has
 * both: /proc/PID/stat (rss is field 24, in pages; statm's resident),
 * read again from its start through the fd opened when it was surely
 * ours.  Once the process is reaped the read fails (ESRCH): zeros. */
static void read_stat(int fd, uint64_t *rss, uint64_t *cpu_ms) {
  char buf[1024], *p;
  unsigned long long ut, st;
  long long pages;
  ssize_t n;

  *rss = *cpu_ms = 0;
  if (fd < 0)
    return;
  while ((n = pread(fd, buf, sizeof(buf) - 1, 0)) < 0 && errno == EINTR)
    ;
  if (n <= 0)
    return;
  buf[n] = '\0';
  /* Fields after the command name, which may hold spaces: skip to ')'. */
  p = strrchr(buf, ')');
  if (p == NULL ||
      sscanf(p + 1,
             " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu"
             " %*d %*d %*d %*d %*d %*d %*u %*u %lld",
             &ut, &st, &pages) != 3)
    return;
  *cpu_ms = (ut + st) * 1000 / (uint64_t)sysconf(_SC_CLK_TCK);
  *rss = pages > 0 ? (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

uint64_t pp__proc_rss(const pp__proc_t *proc) {
  uint64_t rss, cpu_ms;

  read_stat(proc->stat_fd, &rss, &cpu_ms);
  return rss;
}

_Static_assert(PP_STDERR_TAIL <= PP_STDERR_TAIL_LINES,
               "a status row holds every line of a slot's stderr tail");

/* The line of slot's stderr tail that is j-th of the last n, oldest first. */
static const char *tail_line(const pp__slot_t *slot, int n, int j) {
  return slot->stderr_tail[(slot->stderr_next - (unsigned)n + (unsigned)j) %
                           PP_STDERR_TAIL];
}

static int tail_lines(const pp__slot_t *slot) {
  if (slot->stderr_tail == NULL)
    return 0;
  return slot->stderr_next < PP_STDERR_TAIL ? (int)slot->stderr_next
                                            : PP_STDERR_TAIL;
}

/* At least the bytes the rows' texts take (lock held), without reading
 * them: each stderr line fits in 160, a slow stack is slow_len long. */
static size_t text_bytes(pp_pool_t *pool) {
  const pp__slot_t *slot;
  size_t n = 0;
  int i;

  PP_ASSERT_LOCKED(pool);
  for (i = 0; i < pool->nslots; i++) {
    slot = pool->slots[i];
    n += (size_t)tail_lines(slot) * sizeof(slot->stderr_tail[0]);
    if (slot->slow_stack)
      n += slot->slow_len + 1;
  }
  return n;
}

/* Copy s to *text, which moves past it, within end (cut if it would not
 * fit, which text_bytes rules out): s's copy. */
static const char *keep(char **text, const char *end, const char *s) {
  size_t n = strlen(s), room = (size_t)(end - *text);
  char *copy = *text;

  if (room == 0)
    return "";
  if (n >= room)
    n = room - 1;
  memcpy(copy, s, n);
  copy[n] = '\0';
  *text += n + 1;
  return copy;
}

int pp_pool_status(pp_pool_t *pool, pp_status_t *st) {
  uint64_t now = pp__now_ns();
  pp_worker_status_t *w;
  pp__proc_t **procs; /* row i's process, held while its stat is read */
  pp__slot_t *slot;
  size_t rows, text_cap;
  char *text, *text_end;
  int i, j, held = 0;

  memset(st, 0, sizeof(*st));
  /* The rows and their texts in one block, allocated without the lock; the
   * pool may grow meanwhile (an elastic pool does on its own), or its
   * workers write more to stderr: then again, larger. */
  pp__lock(pool);
  for (;;) {
    int cap = pool->nslots > 0 ? pool->nslots : 1;

    /* Room to spare: stderr that arrives meanwhile rarely costs a retry. */
    text_cap = text_bytes(pool);
    text_cap += text_cap / 2;
    pp__unlock(pool);
    rows = (size_t)cap * sizeof(*st->workers);
    st->workers = malloc(rows + text_cap);
    procs = calloc((size_t)cap, sizeof(*procs));
    if (st->workers == NULL || procs == NULL) {
      free(st->workers);
      free(procs);
      st->workers = NULL;
      return UV_ENOMEM;
    }
    memset(st->workers, 0, rows);
    pp__lock(pool);
    if (pool->nslots <= cap && text_bytes(pool) <= text_cap)
      break;
    free(st->workers);
    free(procs);
  }
  text = (char *)st->workers + rows;
  text_end = text + text_cap;
  snprintf(st->name, sizeof(st->name), "%s", pool->cfg->name);
  snprintf(st->adapter, sizeof(st->adapter), "%s",
           pool->adapter == &pp__adapter_custom ? pool->custom.name
                                                : pool->cfg->adapter);
  st->state = pool->state;
  snprintf(st->reload_error, sizeof(st->reload_error), "%s",
           pool->reload_error);
  st->size = 0;
  pp__slot_count(pool, &st->idle, &st->leased, &st->busy, &st->starting,
                 &st->backoff, &st->fatal);
  st->waiters = pp__waiting(pool);
  st->waiters_max = pool->waiters_max;
  st->uptime_ms = (now - pool->start_ns) / 1000000;
  st->checkouts = pool->checkouts;
  st->checkins = pool->checkins;
  st->reclaimed = pool->reclaimed;
  st->timeouts = pool->timeouts;
  st->rejected = pool->rejected;
  st->requests = pool->requests;
  st->errors = pool->errors;
  st->restarts = pool->restarts;
  st->stale_replies = pool->stale_replies;
  st->recycles = pool->recycles;
  st->slow_requests = pool->slow_requests;
  st->cancels = pool->cancels;
  st->draining = pool->draining;
  st->target_size = pool->target_size ? pool->target_size : pool->nslots;
  st->size_min = pool->size_min;
  st->size_max = pool->size_max;
  st->elastic = pool->elastic;
  st->scale_changes = pool->scale_changes;
  snprintf(st->scale_reason, sizeof(st->scale_reason), "%s",
           pool->scale_reason);
  snprintf(st->scale_blocked, sizeof(st->scale_blocked), "%s",
           pool->scale_blocked);
  st->spawn_to_ready = pool->h_spawn;
  st->queue_wait = pool->h_wait;
  st->run_time = pool->h_run;
  st->withdrawn = pool->withdrawn;
  st->reclaimed_undelivered = pool->reclaimed_undelivered;
  st->reclaimed_idle = pool->reclaimed_idle;
  st->reclaimed_busy = pool->reclaimed_busy;
  /* Out of memory: the snapshot just has no handler list. */
  st->handlers = pool->handlers ? strdup(pool->handlers) : NULL;
  st->handler_kinds = pool->handler_kinds ? strdup(pool->handler_kinds) : NULL;
  st->nworkers = 0;
  for (i = 0; i < pool->nslots; i++) {
    slot = pool->slots[i];
    /* Slots scaled away are not part of the pool any more. */
    if (slot->removing && slot->proc == NULL && slot->next == NULL)
      continue;
    w = &st->workers[st->nworkers++];
    if (!slot->removing)
      st->size++;
    w->id = slot->id;
    w->state = slot->state;
    w->generation = slot->generation;
    w->restarts = slot->restarts;
    w->requests_total = slot->requests_total;
    w->last_exit = slot->last_exit;
    w->last_exit_code = slot->last_exit_code;
    w->last_exit_signal = slot->last_exit_signal;
    if (slot->last_exit == PP_EXIT_NO_HELLO && slot->last_hello_timeout)
      snprintf(w->last_exit_text, sizeof(w->last_exit_text),
               "no HELLO within startup_timeout");
    else if (slot->last_exit == PP_EXIT_STOPPED && slot->last_stop[0])
      snprintf(w->last_exit_text, sizeof(w->last_exit_text), "stopped (%s)",
               slot->last_stop);
    else
      pp_exit_describe(slot->last_exit, slot->last_exit_code,
                       slot->last_exit_signal, w->last_exit_text,
                       sizeof(w->last_exit_text));
    snprintf(w->last_error, sizeof(w->last_error), "%s", pp__slot_error(slot));
    if (slot->lease)
      w->lease = slot->lease->id;
    w->run_time = slot->run_time;
    w->retiring = slot->retiring;
    if (slot->state == PP_WORKER_BACKOFF && slot->backoff_until_ns > now)
      w->next_retry_ms = (slot->backoff_until_ns - now) / 1000000;
    w->stderr_lines = tail_lines(slot);
    for (j = 0; j < w->stderr_lines; j++)
      w->stderr_tail[j] =
          keep(&text, text_end, tail_line(slot, w->stderr_lines, j));
    w->last_slow_stack =
        slot->slow_stack ? keep(&text, text_end, slot->slow_stack) : "";
    if (slot->proc && !slot->proc->exited) {
      w->pid = slot->proc->pid;
      w->requests = slot->proc->requests;
      w->max_requests = slot->proc->max_requests;
      w->reply_spin_us =
          __atomic_load_n(&slot->proc->spin_ns, __ATOMIC_RELAXED) / 1000;
      if (slot->proc->req_start_ns)
        w->request_age_ms = (now - slot->proc->req_start_ns) / 1000000;
      /* Requests handed to it and not answered yet, of every kind. */
      w->in_flight = slot->anum + slot->shared + (slot->proc->orphan_id != 0) +
                     (slot->lease && slot->proc == slot->lease->proc &&
                      (slot->lease->in_flight || slot->lease->thread_call));
      if (slot->proc->hello)
        w->uptime_ms = (now - slot->proc->ready_ns) / 1000000;
      if (slot->proc->stat_fd >= 0) {
        procs[st->nworkers - 1] = slot->proc;
        pp__proc_ref(slot->proc);
        held++;
      }
    }
  }
  pp__unlock(pool);
  PP_FAULT(pool, "status_read");
  /* /proc reads happen outside the lock; a reference keeps each stat_fd
   * open meanwhile. */
  for (i = 0; i < st->nworkers; i++)
    if (procs[i])
      read_stat(procs[i]->stat_fd, &st->workers[i].rss_bytes,
                &st->workers[i].cpu_time_ms);
  if (held > 0) {
    pp__lock(pool);
    for (i = 0; i < st->nworkers; i++)
      if (procs[i])
        pp__proc_unref(procs[i]);
    pp__unlock(pool);
  }
  free(procs);
  return 0;
}

void pp_status_free(pp_status_t *st) {
  if (st == NULL)
    return;
  free(st->workers);
  st->workers = NULL;
  st->nworkers = 0;
  free(st->handlers);
  st->handlers = NULL;
  free(st->handler_kinds);
  st->handler_kinds = NULL;
}

static json_t *histo_json(const pp_histogram_t *h) {
  json_t *b = json_array(), *o;
  int k;

  for (k = 0; b && k < PP_HIST_BUCKETS; k++)
    json_array_append_new(b, json_integer((json_int_t)h->buckets[k]));
  o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o*}", "count",
                (json_int_t)h->count, "sum_us", (json_int_t)h->sum_us, "max_us",
                (json_int_t)h->max_us, "p50_us",
                (json_int_t)pp_histogram_quantile_us(h, 0.5), "p90_us",
                (json_int_t)pp_histogram_quantile_us(h, 0.9), "p99_us",
                (json_int_t)pp_histogram_quantile_us(h, 0.99), "buckets", b);
  return o;
}

/* Length of the valid UTF-8 character at s (n bytes left), or 0: what
 * JSON text may hold (no overlong forms, surrogates or code points past
 * U+10FFFF). */
static size_t utf8_char(const unsigned char *s, size_t n) {
  size_t len, i;
  uint32_t cp;

  if (s[0] < 0x80)
    return 1;
  if (s[0] >= 0xC2 && s[0] <= 0xDF)
    len = 2, cp = s[0] & 0x1F;
  else if (s[0] >= 0xE0 && s[0] <= 0xEF)
    len = 3, cp = s[0] & 0x0F;
  else if (s[0] >= 0xF0 && s[0] <= 0xF4)
    len = 4, cp = s[0] & 0x07;
  else
    return 0;
  if (len > n)
    return 0;
  for (i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = cp << 6 | (s[i] & 0x3F);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return len;
}

/* A JSON string of text a worker wrote (a stderr line, its boot error),
 * which need not be UTF-8 and may have been cut mid-character: each byte
 * that is not part of a valid character becomes U+FFFD.  Never NULL
 * unless out of memory, so a field is never dropped for its bytes. */
static json_t *text_json(const char *text) {
  const unsigned char *s = (const unsigned char *)text;
  size_t n = strlen(text), i = 0, o = 0, k;
  json_t *j;
  char *out;

  if ((j = json_string(text)) != NULL)
    return j;
  if ((out = malloc(3 * n + 1)) == NULL)
    return NULL;
  while (i < n) {
    if ((k = utf8_char(s + i, n - i)) == 0) {
      memcpy(out + o, "\xEF\xBF\xBD", 3);
      o += 3;
      i++;
    } else {
      memcpy(out + o, s + i, k);
      o += k;
      i += k;
    }
  }
  j = json_stringn(out, o);
  free(out);
  return j;
}

char *pp_status_to_json(const pp_status_t *st) {
  json_t *root, *workers, *w, *handlers;
  char *out = NULL;
  int i;

  root = json_pack(
      "{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I, s:I,"
      " s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
      "name", st->name, "adapter", st->adapter, "state",
      pp_pool_state_name(st->state), "size", st->size, "idle", st->idle,
      "leased", st->leased, "busy", st->busy, "starting", st->starting,
      "backoff", st->backoff, "fatal", st->fatal, "waiters", st->waiters,
      "waiters_max", st->waiters_max, "uptime_ms", (json_int_t)st->uptime_ms,
      "checkouts", (json_int_t)st->checkouts, "checkins",
      (json_int_t)st->checkins, "reclaimed", (json_int_t)st->reclaimed,
      "timeouts", (json_int_t)st->timeouts, "rejected",
      (json_int_t)st->rejected, "requests", (json_int_t)st->requests, "errors",
      (json_int_t)st->errors, "restarts", (json_int_t)st->restarts,
      "stale_replies", (json_int_t)st->stale_replies);
  workers = json_array();
  if (root == NULL || workers == NULL)
    goto done;
  for (i = 0; i < st->nworkers; i++) {
    const pp_worker_status_t *ws = &st->workers[i];
    w = json_pack(
        "{s:i, s:i, s:s, s:I, s:I, s:I, s:I, s:i, s:I, s:I, s:o}", "id", ws->id,
        "pid", ws->pid, "state", pp_worker_state_name(ws->state), "generation",
        (json_int_t)ws->generation, "lease", (json_int_t)ws->lease, "requests",
        (json_int_t)ws->requests, "requests_total",
        (json_int_t)ws->requests_total, "restarts", (int)ws->restarts,
        "uptime_ms", (json_int_t)ws->uptime_ms, "rss_bytes",
        (json_int_t)ws->rss_bytes, "last_exit", text_json(ws->last_exit_text));
    if (w == NULL)
      goto done;
    {
      json_t *tail = json_array();
      int j;
      for (j = 0; tail && j < ws->stderr_lines; j++)
        json_array_append_new(tail, text_json(ws->stderr_tail[j]));
      json_object_set_new(w, "stderr_tail", tail ? tail : json_null());
    }
    json_object_set_new(w, "last_error", text_json(ws->last_error));
    json_object_set_new(w, "last_slow_stack",
                        ws->last_slow_stack[0] ? text_json(ws->last_slow_stack)
                                               : json_null());
    json_object_set_new(w, "request_age_ms",
                        json_integer((json_int_t)ws->request_age_ms));
    json_object_set_new(w, "in_flight", json_integer(ws->in_flight));
    json_object_set_new(w, "max_requests",
                        json_integer((json_int_t)ws->max_requests));
    json_object_set_new(w, "next_retry_ms",
                        json_integer((json_int_t)ws->next_retry_ms));
    json_object_set_new(w, "cpu_time_ms",
                        json_integer((json_int_t)ws->cpu_time_ms));
    json_object_set_new(w, "reply_spin_us",
                        json_integer((json_int_t)ws->reply_spin_us));
    json_object_set_new(w, "retiring", json_boolean(ws->retiring));
    json_object_set_new(w, "run_time", histo_json(&ws->run_time));
    if (json_array_append_new(workers, w) != 0)
      goto done;
  }
  json_object_set_new(root, "recycles", json_integer((json_int_t)st->recycles));
  json_object_set_new(root, "slow_requests",
                      json_integer((json_int_t)st->slow_requests));
  json_object_set_new(root, "cancels", json_integer((json_int_t)st->cancels));
  json_object_set_new(root, "draining", json_boolean(st->draining));
  json_object_set_new(root, "target_size", json_integer(st->target_size));
  json_object_set_new(root, "size_min", json_integer(st->size_min));
  json_object_set_new(root, "size_max", json_integer(st->size_max));
  json_object_set_new(root, "elastic", json_boolean(st->elastic));
  json_object_set_new(root, "scale_changes",
                      json_integer((json_int_t)st->scale_changes));
  json_object_set_new(root, "scale_reason", json_string(st->scale_reason));
  json_object_set_new(root, "scale_blocked", json_string(st->scale_blocked));
  json_object_set_new(root, "reload_error", json_string(st->reload_error));
  handlers = st->handlers ? json_loads(st->handlers, 0, NULL) : NULL;
  json_object_set_new(root, "handlers", handlers ? handlers : json_null());
  handlers = st->handler_kinds ? json_loads(st->handler_kinds, 0, NULL) : NULL;
  json_object_set_new(root, "handler_kinds",
                      handlers ? handlers : json_object());
  json_object_set_new(root, "spawn_to_ready", histo_json(&st->spawn_to_ready));
  json_object_set_new(root, "queue_wait", histo_json(&st->queue_wait));
  json_object_set_new(root, "run_time", histo_json(&st->run_time));
  if (json_object_set(root, "workers", workers) != 0 ||
      json_object_set_new(root, "reclaimed_by",
                          json_pack("{s:I, s:I, s:I, s:I}", "withdrawn",
                                    (json_int_t)st->withdrawn, "undelivered",
                                    (json_int_t)st->reclaimed_undelivered,
                                    "idle", (json_int_t)st->reclaimed_idle,
                                    "in_flight",
                                    (json_int_t)st->reclaimed_busy)) != 0)
    goto done;
  out = json_dumps(root, JSON_COMPACT);
done:
  json_decref(workers);
  json_decref(root);
  return out;
}

int pp_pool_drain(pp_pool_t *pool, int undrain) {
  pp__lock(pool);
  if (pool->stopping) {
    pp__unlock(pool);
    return PP_ECLOSED;
  }
  if (pool->draining != !undrain) {
    pool->draining = !undrain;
    pp__trace(pool, PP_TRACE_DRAIN, -1, 0, 0, 0, 0, undrain, NULL);
    if (pool->draining)
      pp__waiters_fail_all(pool, PP_ECLOSED, "pool draining");
  }
  pp__unlock(pool);
  return 0;
}
