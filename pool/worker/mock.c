/* mock.c -- owns the mock adapter: each worker is a thread in this process
 * that speaks the bridge protocol on the pool's pipes and runs C handlers
 * (pp_mock_t) or built-in behaviours (echo, sleep, fail, crash, hang, pid).
 * Because it goes through the same pipes, frames and exit path as a
 * Python process, it yields the same error codes and trace events. */
#include "mock.h"

#include "clock.h"
#include "frame.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* A handler of the mock: the command it answers. */
struct mock_entry {
  char *cmd;
  pp_mock_handler fn;
  void *data;
};

struct pp_mock {
  struct mock_entry *v;
  int n;
};

int pp_mock_new(pp_mock_t **out) {
  *out = calloc(1, sizeof(**out));
  return *out ? 0 : UV_ENOMEM;
}

int pp_mock_add(pp_mock_t *m, const char *cmd, pp_mock_handler fn, void *data) {
  struct mock_entry *v = realloc(m->v, (size_t)(m->n + 1) * sizeof(*v));
  char *c = strdup(cmd);

  if (v == NULL || c == NULL) {
    free(c);
    if (v)
      m->v = v;
    return UV_ENOMEM;
  }
  m->v = v;
  v[m->n].cmd = c;
  v[m->n].fn = fn;
  v[m->n].data = data;
  m->n++;
  return 0;
}

void pp_mock_free(pp_mock_t *m) {
  int i;

  if (m == NULL)
    return;
  for (i = 0; i < m->n; i++)
    free(m->v[i].cmd);
  free(m->v);
  free(m);
}

/* ---- one mock worker */

typedef struct mw {
  pp_adapter_worker_t *w;
  const pp_mock_t *mock;
  int req, rep, ctl; /* ctl: eventfd written by signal() */
  int sig;           /* the signal asked for (atomic) */
  int id;
  uv_thread_t thread;
  char *buf;
  size_t len, cap;
  uint32_t running; /* id of the request being served */
  int cancelled;
} mw_t;

static int write_all(int fd, const char *p, size_t n) {
  ssize_t w;

  while (n > 0) {
    w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int send_flagged(mw_t *m, uint8_t type, uint8_t flags, uint32_t id,
                        const char *p, size_t n) {
  char hdr[PP_FRAME_HEADER];

  pp_frame_header(hdr, type, flags, id, (uint32_t)n);
  if (write_all(m->rep, hdr, sizeof(hdr)) != 0)
    return -1;
  return n ? write_all(m->rep, p, n) : 0;
}

static int send_frame(mw_t *m, uint8_t type, uint32_t id, const char *p,
                      size_t n) {
  return send_flagged(m, type, 0, id, p, n);
}

static int send_error(mw_t *m, uint32_t id, const char *type, const char *msg) {
  json_t *j = json_pack("{s:s, s:s, s:s}", "type", type, "message", msg,
                        "traceback", "");
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  int r = s ? send_frame(m, PP_FRAME_ERROR, id, s, strlen(s)) : -1;

  free(s);
  json_decref(j);
  return r;
}

static const char *const builtins[] = {"echo", "sleep", "fail",         "crash",
                                       "hang", "pid",   "deadline_left"};

/* The handlers this worker answers, as a JSON array: the program's own,
 * then the built-ins they do not shadow.  NULL when out of memory. */
static json_t *handler_list(const pp_mock_t *mock) {
  json_t *list = json_array();
  size_t b;
  int i, shadowed;

  for (i = 0; list && mock && i < mock->n; i++)
    json_array_append_new(list, json_string(mock->v[i].cmd));
  for (b = 0; list && b < sizeof(builtins) / sizeof(builtins[0]); b++) {
    for (shadowed = 0, i = 0; mock && i < mock->n; i++)
      shadowed |= strcmp(mock->v[i].cmd, builtins[b]) == 0;
    if (!shadowed)
      json_array_append_new(list, json_string(builtins[b]));
  }
  return list;
}

/* UnknownCommand naming the handlers, as the python worker's does. */
static int send_unknown(mw_t *m, uint32_t id, const char *cmd) {
  json_t *list = handler_list(m->mock);
  char *names = list ? json_dumps(list, JSON_COMPACT) : NULL;
  json_t *j = json_pack("{s:s, s:s++++, s:s, s:O?}", "type", "UnknownCommand",
                        "message", "unknown command '", cmd,
                        "' (handlers: ", names ? names : "?", ")", "traceback",
                        "", "handlers", list);
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  int r = s ? send_frame(m, PP_FRAME_ERROR, id, s, strlen(s)) : -1;

  free(s);
  free(names);
  json_decref(j);
  json_decref(list);
  return r;
}

/* Wait for input or a signal, up to ms (-1 = forever).  Returns 1 when
 * req is readable, 0 on timeout, -1 when signalled. */
static int wait_input(mw_t *m, int ms) {
  struct pollfd p[2] = {{m->req, POLLIN, 0}, {m->ctl, POLLIN, 0}};
  int r;

  do
    r = poll(p, 2, ms);
  while (r < 0 && errno == EINTR);
  if (__atomic_load_n(&m->sig, __ATOMIC_ACQUIRE))
    return -1;
  return r > 0 && (p[0].revents & (POLLIN | POLLHUP)) ? 1 : 0;
}

/* Wait until the reply pipe has room or a signal came (a stream's
 * writer, whose pool may stop reading to kill it).  0, or -1 when
 * signalled. */
static int wait_output(mw_t *m) {
  struct pollfd p[2] = {{m->rep, POLLOUT, 0}, {m->ctl, POLLIN, 0}};
  int r;

  do
    r = poll(p, 2, -1);
  while (r < 0 && errno == EINTR);
  return __atomic_load_n(&m->sig, __ATOMIC_ACQUIRE) || r < 0 ? -1 : 0;
}

/* Read more of the request stream; 0 on EOF or error. */
static int read_more(mw_t *m) {
  ssize_t n;

  if (m->cap - m->len < 65536) {
    char *b = realloc(m->buf, m->cap + 65536);
    if (b == NULL)
      return 0;
    m->buf = b;
    m->cap += 65536;
  }
  do
    n = read(m->req, m->buf + m->len, m->cap - m->len);
  while (n < 0 && errno == EINTR);
  if (n <= 0)
    return 0;
  m->len += (size_t)n;
  return 1;
}

/* While a request sleeps: answer PINGs, note CANCELs for it, leave other
 * frames queued.  Returns 0, or -1 when the stream ended. */
static int scan_control(mw_t *m) {
  size_t off = 0;
  pp_frame_t f;
  long used;

  while ((used = pp_frame_decode(m->buf + off, m->len - off, UINT32_MAX - 8,
                                 &f)) > 0) {
    if (f.type == PP_FRAME_CANCEL && f.id == m->running) {
      m->cancelled = 1;
    } else if (f.type == PP_FRAME_PING) {
      send_frame(m, PP_FRAME_PONG, f.id, NULL, 0);
    } else {
      off += (size_t)used;
      continue; /* a request for later: keep it */
    }
    memmove(m->buf + off, m->buf + off + used, m->len - off - (size_t)used);
    m->len -= (size_t)used;
  }
  return used < 0 ? -1 : 0;
}

/* Sleep for secs, or until cancelled or signalled.  Returns 1 cancelled,
 * 0 slept, -1 signalled or the stream ended. */
static int mock_sleep(mw_t *m, double secs) {
  uint64_t end = pp__now_ns() + (uint64_t)(secs * 1e9), now;
  int r;

  /* A CANCEL read with the request, already in the buffer, counts. */
  if (scan_control(m) != 0)
    return -1;
  while ((now = pp__now_ns()) < end && !m->cancelled) {
    r = wait_input(m, (int)((end - now) / 1000000) + 1);
    if (r < 0)
      return -1;
    if (r > 0 && (!read_more(m) || scan_control(m) != 0))
      return -1;
  }
  return m->cancelled ? 1 : 0;
}

/* The built-in stream handler: n chunks 0 .. n-1 to a request that takes
 * a stream, then "counted"; a CANCEL between two ends it.  0, or -1 when
 * signalled or the stream ended. */
static int mock_count(mw_t *m, const pp_frame_t *f, json_int_t n) {
  char num[32];
  json_int_t i;
  int r;

  /* A CANCEL read with the request, already in the buffer, counts. */
  if (scan_control(m) != 0)
    return -1;
  if (!(f->flags & PP_FRAME_FLAG_STREAM)) {
    send_error(m, f->id, "TypeError",
               "handler 'count' streams its results: the call must take a "
               "stream (pp_call_opts_t.on_chunk)");
    return 0;
  }
  for (i = 0; i < n; i++) {
    r = wait_input(m, 0);
    if (r < 0 || (r > 0 && (!read_more(m) || scan_control(m) != 0)))
      return -1;
    if (m->cancelled) {
      send_error(m, f->id, "Cancelled", "the stream was cancelled");
      return 0;
    }
    snprintf(num, sizeof(num), "%lld", (long long)i);
    if (wait_output(m) != 0 ||
        send_flagged(m, PP_FRAME_REPLY, PP_FRAME_FLAG_STREAM, f->id, num,
                     strlen(num)) != 0)
      return -1; /* the pool closed the pipe: the worker was stopped */
  }
  send_frame(m, PP_FRAME_REPLY, f->id, "\"counted\"", 9);
  return 0;
}

/* A handler's reply: its bytes when it set out->binary, else JSON text
 * ("null" when it wrote nothing). */
static void reply_out(mw_t *m, uint32_t id, const pp_buf_t *out) {
  if (out->binary)
    send_flagged(m, PP_FRAME_REPLY, PP_FRAME_FLAG_BINARY, id,
                 out->data ? out->data : "", out->data ? out->len : 0);
  else
    send_frame(m, PP_FRAME_REPLY, id, out->data ? out->data : "null",
               out->data ? out->len : 4);
}

/* A binary request (after its deadline): NAME, a zero byte, the bytes.
 * A program's handler gets the bytes as its args; the built-in echo
 * answers them as bytes. */
static int serve_binary(mw_t *m, const pp_frame_t *f) {
  const char *nul = memchr(f->payload, '\0', f->len < 65 ? f->len : 65);
  pp_buf_t out = {0};
  size_t n;
  int i, rc;

  if (nul == NULL || nul == f->payload) {
    send_error(m, f->id, "BadRequest", "binary request without a handler name");
    return 0;
  }
  char cmd[65];
  memcpy(cmd, f->payload, (size_t)(nul - f->payload));
  cmd[nul - f->payload] = '\0';
  n = f->len - (size_t)(nul + 1 - f->payload);
  for (i = 0; m->mock && i < m->mock->n; i++) {
    if (strcmp(m->mock->v[i].cmd, cmd) != 0)
      continue;
    rc = m->mock->v[i].fn(nul + 1, n, &out, m->mock->v[i].data);
    if (rc == 0)
      reply_out(m, f->id, &out);
    else
      send_error(m, f->id, "MockError", out.data ? out.data : "error");
    pp_buf_free(&out);
    return 0;
  }
  if (strcmp(cmd, "echo") == 0)
    send_flagged(m, PP_FRAME_REPLY, PP_FRAME_FLAG_BINARY, f->id, nul + 1, n);
  else
    send_unknown(m, f->id, cmd);
  return 0;
}

/* Serve one request.  Returns 0 to go on, or an exit status + 1000 to end
 * the worker (crash), or -1 when signalled or the stream ended. */
static int serve(mw_t *m, const pp_frame_t *whole) {
  pp_frame_t body = *whole, *f = &body;
  json_error_t jerr;
  json_t *req = NULL, *args;
  const char *cmd = NULL;
  char *atext = NULL, msg[256];
  pp_buf_t out = {0};
  uint64_t deadline;
  int i, r = 0, rc;

  /* Protocol 2: the deadline goes first; past it, the request is not
   * run (as the Python worker does). */
  if (pp_frame_request_deadline(f, &deadline) != 0) {
    send_error(m, f->id, "BadRequest", "deadline flag on a short payload");
    return 0;
  }
  if (deadline && pp__now_ns() >= deadline) {
    snprintf(msg, sizeof(msg),
             "request %u reached the worker after its deadline; not run",
             (unsigned)f->id);
    send_error(m, f->id, "DeadlineExceeded", msg);
    return 0;
  }
  if (f->flags & PP_FRAME_FLAG_BINARY)
    return serve_binary(m, f);
  req = json_loadb(f->payload, f->len, 0, &jerr);
  cmd = req ? json_string_value(json_object_get(req, "cmd")) : NULL;
  m->running = f->id;
  m->cancelled = 0;
  if (cmd == NULL) {
    send_error(m, f->id, "BadRequest",
               "payload is not {\"cmd\": ..., \"args\": ...}");
    goto done;
  }
  args = json_object_get(req, "args");
  /* 15 significant digits: numbers read back as they were written (0.003,
   * not 0.0030000000000000001), as Python's json prints them. */
  atext = json_dumps(args ? args : json_null(),
                     JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
  for (i = 0; m->mock && i < m->mock->n; i++) {
    if (strcmp(m->mock->v[i].cmd, cmd) != 0)
      continue;
    rc = m->mock->v[i].fn(atext, strlen(atext), &out, m->mock->v[i].data);
    if (rc == 0)
      reply_out(m, f->id, &out);
    else
      send_error(m, f->id, "MockError", out.data ? out.data : "error");
    goto done;
  }
  if (strcmp(cmd, "echo") == 0) {
    send_frame(m, PP_FRAME_REPLY, f->id, atext, strlen(atext));
  } else if (strcmp(cmd, "sleep") == 0) {
    r = mock_sleep(m, args ? json_number_value(args) : 0);
    if (r >= 0) {
      if (r == 1)
        send_frame(m, PP_FRAME_REPLY, f->id, "\"cancelled\"", 11);
      else
        send_frame(m, PP_FRAME_REPLY, f->id, atext, strlen(atext));
      r = 0;
    }
  } else if (strcmp(cmd, "count") == 0) {
    r = mock_count(m, f, json_is_integer(args) ? json_integer_value(args) : 0);
  } else if (strcmp(cmd, "fail") == 0) {
    snprintf(msg, sizeof(msg), "boom: %s", atext);
    send_error(m, f->id, "MockError", msg);
  } else if (strcmp(cmd, "crash") == 0) {
    r = 1000 + (json_is_integer(args) ? (int)json_integer_value(args) : 3);
  } else if (strcmp(cmd, "hang") == 0) {
    while (wait_input(m, -1) >= 0)
      if (!read_more(m) || scan_control(m) != 0)
        break;
    r = -1;
  } else if (strcmp(cmd, "deadline_left") == 0) {
    /* As the Python fixture's: [has a deadline, seconds left]. */
    uint64_t now = pp__now_ns();

    if (deadline)
      snprintf(msg, sizeof(msg), "[true,%.6f]",
               deadline > now ? (double)(deadline - now) / 1e9 : 0.0);
    else
      snprintf(msg, sizeof(msg), "[false,null]");
    send_frame(m, PP_FRAME_REPLY, f->id, msg, strlen(msg));
  } else if (strcmp(cmd, "pid") == 0) {
    snprintf(msg, sizeof(msg), "%d", m->id);
    send_frame(m, PP_FRAME_REPLY, f->id, msg, strlen(msg));
  } else {
    send_unknown(m, f->id, cmd);
  }
done:
  free(atext);
  pp_buf_free(&out);
  json_decref(req);
  m->running = 0;
  return r;
}

static void mock_main(void *arg) {
  mw_t *m = arg;
  json_t *j =
      json_pack("{s:i, s:i, s:s, s:o*}", "protocol", PP_PROTOCOL_VERSION, "pid",
                m->id, "runtime", "mock", "handlers", handler_list(m->mock));
  char *hello = j ? json_dumps(j, JSON_COMPACT) : NULL;
  int64_t status = 0;
  pp_frame_t f;
  long used;
  int r;

  json_decref(j);
  r = hello ? send_frame(m, PP_FRAME_HELLO, 0, hello, strlen(hello)) : -1;
  free(hello);
  if (r != 0)
    goto out;
  for (;;) {
    while ((used = pp_frame_decode(m->buf, m->len, UINT32_MAX - 8, &f)) > 0) {
      r = 0;
      if (f.type == PP_FRAME_REQUEST)
        r = serve(m, &f);
      else if (f.type == PP_FRAME_PING)
        send_frame(m, PP_FRAME_PONG, f.id, NULL, 0);
      if (r != 0) {
        if (r >= 1000)
          status = r - 1000;
        goto out;
      }
      /* serve() may have read more: the frame is still at the front. */
      memmove(m->buf, m->buf + used, m->len - (size_t)used);
      m->len -= (size_t)used;
    }
    if (used < 0 || wait_input(m, -1) < 0 || !read_more(m))
      goto out;
  }
out:
  close(m->req);
  close(m->rep);
  m->req = m->rep = -1;
  pp_adapter_worker_exited(m->w, status,
                           __atomic_load_n(&m->sig, __ATOMIC_ACQUIRE));
}

static int mock_start(pp_adapter_worker_t *w, int req, int rep, void *data,
                      void **state, int *pid) {
  mw_t *m = calloc(1, sizeof(*m));
  int r;

  if (m == NULL)
    return UV_ENOMEM;
  m->w = w;
  m->mock = data;
  m->req = req;
  m->rep = rep;
  m->ctl = eventfd(0, EFD_CLOEXEC);
  if (m->ctl < 0) {
    free(m);
    return uv_translate_sys_error(errno);
  }
  /* A pid-like id, unique among live workers of this process. */
  m->id = 1000000 + m->ctl;
  if ((r = uv_thread_create(&m->thread, mock_main, m)) != 0) {
    close(m->ctl);
    free(m);
    return r;
  }
  *state = m;
  *pid = m->id;
  return 0;
}

static void mock_signal(void *state, int sig) {
  mw_t *m = state;
  uint64_t one = 1;

  __atomic_store_n(&m->sig, sig, __ATOMIC_RELEASE);
  if (write(m->ctl, &one, sizeof(one)) < 0) {
    /* Cannot overflow: at most a few signals per worker. */
  }
}

static void mock_release(void *state) {
  mw_t *m = state;

  uv_thread_join(&m->thread);
  close(m->ctl);
  free(m->buf);
  free(m);
}

const pp_adapter_t pp__mock_adapter = {"mock", mock_start, mock_signal,
                                       mock_release, NULL};
