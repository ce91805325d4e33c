/* control_ops.c -- owns what each control request does: a call through
 * the connection's own pool client, status, trace streams (a subscriber
 * that only copies into a bounded buffer and wakes the loop), scale,
 * restart, drain, and stop and reload handed to the program.  Lines come
 * parsed from control_proto.c; bytes go out through control.c. */
#include "control.h"
#include "diag.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* --------------------------------------------------------------- the call */

static void call_end(pp__conn_t *c) {
  c->busy = 0;
  c->active_ns = pp__now_ns(); /* the idle timeout starts again */
  free(c->payload);
  c->payload = NULL;
  free(c->call_id);
  c->call_id = NULL;
}

static void call_fail(pp__conn_t *c, int status, const pp_diag_t *diag) {
  const char *msg =
      diag && diag->message[0] ? diag->message : pp_strerror(status);
  pp__conn_send_error(c, c->call_id, pp_err_name(status), msg, NULL);
}

/* {"ok":true,"id":ID,"reply":REPLY} (key "reply", or "chunk" for a
 * stream's) with the worker's reply spliced in as it wrote it (compact):
 * never decoded and encoded again, so numbers of any size or precision
 * pass through exactly.  Returns 0, or -1 when the reply is not JSON. */
static int send_raw_reply(pp__conn_t *c, const char *key, const char *reply,
                          size_t len) {
  static const char head[] = "{\"ok\":true,";
  const char *id = c->call_id;
  size_t n = 0, idlen = id ? strlen(id) : 0, klen = strlen(key);
  char *line;
  long r;

  line = malloc(sizeof(head) + idlen + klen + 16 + len);
  if (line == NULL) {
    pp__conn_close(c);
    return 0;
  }
  memcpy(line, head, sizeof(head) - 1);
  n = sizeof(head) - 1;
  if (id) {
    memcpy(line + n, "\"id\":", 5);
    memcpy(line + n + 5, id, idlen);
    line[n + 5 + idlen] = ',';
    n += 6 + idlen;
  }
  line[n++] = '"';
  memcpy(line + n, key, klen);
  n += klen;
  memcpy(line + n, "\":", 2);
  n += 2;
  r = pp__ctl_json_compact(reply, len, line + n, NULL, NULL, NULL);
  if (r < 0) {
    free(line);
    return -1;
  }
  n += (size_t)r;
  line[n++] = '}';
  pp__conn_write(c, line, n, 1, 0);
  free(line);
  return 0;
}

/* {"ok":true,"binary":true,"reply_hex":"..."} (key "reply_hex", or
 * "chunk_hex" for a stream's): a handler's bytes, which JSON text cannot
 * carry as they are. */
static void send_binary_reply(pp__conn_t *c, const char *key, const char *reply,
                              size_t len) {
  static const char digits[] = "0123456789abcdef";
  char *hex = malloc(2 * len + 1);
  json_t *v;
  size_t i;

  if (hex == NULL) {
    pp__conn_close(c);
    return;
  }
  for (i = 0; i < len; i++) {
    hex[2 * i] = digits[(unsigned char)reply[i] >> 4];
    hex[2 * i + 1] = digits[(unsigned char)reply[i] & 15];
  }
  hex[2 * len] = '\0';
  v = json_pack("{s:b, s:b, s:s}", "ok", 1, "binary", 1, key, hex);
  free(hex);
  if (v == NULL)
    pp__conn_close(c);
  else
    pp__conn_send(c, v, c->call_id, 0);
}

static void call_reply(pp__conn_t *c, int status, const char *reply, size_t len,
                       int binary, const pp_diag_t *diag) {
  json_t *v;

  if (status == 0 && binary) {
    send_binary_reply(c, "reply_hex", reply, len);
    return;
  }
  if (status == 0) {
    if (len > 0 && send_raw_reply(c, "reply", reply, len) == 0)
      return;
    /* Not JSON: a raw handler's bytes go as text. */
    v = json_pack("{s:b, s:b, s:s%}", "ok", 1, "raw", 1, "reply", reply, len);
    if (v == NULL)
      pp__conn_send_error(c, c->call_id, pp_err_name(PP_EPROTO),
                          "the reply is neither JSON nor UTF-8 text", NULL);
    else
      pp__conn_send(c, v, c->call_id, 0);
    return;
  }
  v = len > 0 ? json_loadb(reply, len, JSON_DECODE_ANY, NULL) : NULL;
  if (status == PP_EHANDLER && json_is_object(v)) {
    /* The diag says "Type: message"; detail has the whole ERROR. */
    pp__conn_send_error(c, c->call_id, pp_err_name(status), diag->message, v);
    return;
  }
  json_decref(v);
  call_fail(c, status, diag);
}

/* A stream's item, as a line before the reply.  One the peer leaves
 * unread past CTL_WQUEUE_MAX stops the stream (bounded memory): its
 * reply then says why. */
static int on_chunk(const char *chunk, size_t len, int binary, void *data) {
  pp__conn_t *c = data;

  if (c->closing || c->client_closed)
    return 1;
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) >=
      CTL_WQUEUE_MAX) {
    c->overrun = 1;
    return 1;
  }
  if (binary) {
    send_binary_reply(c, "chunk_hex", chunk, len);
  } else if (send_raw_reply(c, "chunk", chunk, len) != 0) {
    /* Not JSON: as text, as a reply would go. */
    json_t *v =
        json_pack("{s:b, s:b, s:s%}", "ok", 1, "raw", 1, "chunk", chunk, len);

    if (v == NULL) {
      c->overrun = 2;
      return 1;
    }
    pp__conn_send(c, v, c->call_id, 0);
  }
  return 0;
}

static void on_reply(const pp_result_t *res, void *data) {
  pp__conn_t *c = data;
  pp_lease_t *lease = res->lease;
  pp_diag_t late;

  if (c->call_timer)
    uv_timer_stop(c->call_timer);
  c->call_lease = NULL;
  /* After the client closed, the lease was reclaimed with it; past the
   * call's timeout, the timer checked it in. */
  if (!c->client_closed && !c->call_expired)
    pp_checkin(lease);
  if (c->call_expired && !c->closing) {
    memset(&late, 0, sizeof(late));
    snprintf(late.message, sizeof(late.message),
             "the call ran past its timeout_ms (%lld ms); its worker was "
             "left as on_client_death says",
             (long long)c->timeout_ms);
    call_fail(c, PP_ETIMEDOUT, &late);
  } else if (c->overrun && !c->closing) {
    memset(&late, 0, sizeof(late));
    if (c->overrun == 2)
      snprintf(late.message, sizeof(late.message),
               "the stream was stopped: a chunk is neither JSON nor UTF-8 "
               "text");
    else
      snprintf(late.message, sizeof(late.message),
               "the stream was stopped: the client left %u bytes of its "
               "chunks unread",
               CTL_WQUEUE_MAX);
    call_fail(c, PP_ECANCELED, &late);
  } else if (!c->closing) {
    call_reply(c, res->status, res->reply, res->len, res->binary, res->diag);
  }
  c->call_expired = 0;
  c->overrun = 0;
  call_end(c);
  pp__conn_pump(c);
  pp__conn_unref(c);
}

/* The call's timeout_ms passed while its request runs: the lease goes
 * back with it (on_client_death applies), and on_reply, which still runs
 * once, reports ETIMEDOUT. */
static void on_call_timer(uv_timer_t *t) {
  pp__conn_t *c = t->data;

  if (c->call_lease == NULL || c->client_closed)
    return;
  c->call_expired = 1;
  pp_checkin(c->call_lease);
}

static void on_call_timer_close(uv_handle_t *h) {
  pp__conn_t *c = h->data;

  free(h);
  pp__conn_unref(c);
}

void pp__conn_call_timer_close(pp__conn_t *c) {
  if (c->call_timer == NULL)
    return;
  uv_close((uv_handle_t *)c->call_timer, on_call_timer_close);
  c->call_timer = NULL;
}

/* Arm the call's deadline: 0, or UV_ENOMEM. */
static int call_timer_start(pp__conn_t *c, uint64_t ms) {
  if (c->call_timer == NULL) {
    if ((c->call_timer = malloc(sizeof(*c->call_timer))) == NULL)
      return UV_ENOMEM;
    uv_timer_init(pp__pool_loop(c->pool), c->call_timer);
    c->call_timer->data = c;
    c->refs++; /* dropped by on_call_timer_close */
  }
  uv_timer_start(c->call_timer, on_call_timer, ms, 0);
  return 0;
}

static void on_checkout(pp_lease_t *lease, int status, const pp_diag_t *diag,
                        void *data) {
  pp__conn_t *c = data;
  int64_t spent, left = 0;
  int r;

  if (status != 0) {
    if (!c->closing)
      call_fail(c, status, diag);
    goto done;
  }
  if (c->client_closed)
    goto done; /* granted, then reclaimed with the client: not ours */
  if (c->closing) {
    pp_checkin(lease);
    goto done;
  }
  /* The request runs under worker.request_timeout, the pool's bound; the
   * call's own timeout_ms, what is left of it, under the call timer. */
  if (c->timeout_ms >= 0) {
    spent = (int64_t)((pp__now_ns() - c->call_start_ns) / 1000000);
    left = c->timeout_ms > spent ? c->timeout_ms - spent : 0;
  }
  r = c->timeout_ms >= 0 ? call_timer_start(c, (uint64_t)left) : 0;
  if (r == 0) {
    pp_call_opts_t o = {.timeout_ms = -1};

    if (c->stream) {
      o.on_chunk = on_chunk;
      o.chunk_data = c;
    }
    r = pp_request_with(lease, c->payload, c->payload_len, &o, on_reply, c);
  }
  if (r == 0) {
    c->call_lease = lease;
    return; /* our reference passes to on_reply */
  }
  if (c->call_timer)
    uv_timer_stop(c->call_timer);
  pp_checkin(lease);
  call_fail(c, r, NULL);
done:
  call_end(c);
  pp__conn_pump(c);
  pp__conn_unref(c);
}

/* Why pp_checkout refused at once: it says only PP_ECLOSED, which is a
 * drained pool as often as a closing one. */
static const pp_diag_t *refusal(pp_pool_t *pool, int r, pp_diag_t *diag) {
  pp_status_t st;

  if (r != PP_ECLOSED || pp_pool_status(pool, &st) != 0)
    return NULL;
  memset(diag, 0, sizeof(*diag));
  snprintf(diag->message, sizeof(diag->message), "%s",
           st.draining ? "pool draining" : "pool is closing");
  pp_status_free(&st);
  return diag;
}

static void op_call(pp__conn_t *c, const pp__ctl_req_t *req) {
  pp_diag_t diag;
  int r;

  c->timeout_ms = req->timeout_ms;
  c->stream = req->stream;
  /* The payload goes to the worker as the client wrote it. */
  if (req->payload_raw)
    c->payload = strdup(req->payload_raw);
  else
    c->payload = json_dumps(req->payload, JSON_COMPACT | JSON_ENCODE_ANY);
  if (c->payload == NULL) {
    pp__conn_send_error(c, req->id, "ENOMEM", pp_strerror(UV_ENOMEM), NULL);
    return;
  }
  c->payload_len = strlen(c->payload);
  c->call_id = req->id ? strdup(req->id) : NULL;
  if (req->id && c->call_id == NULL) {
    free(c->payload);
    c->payload = NULL;
    pp__conn_send_error(c, req->id, "ENOMEM", pp_strerror(UV_ENOMEM), NULL);
    return;
  }
  c->call_start_ns = pp__now_ns();
  c->busy = 1;
  c->refs++;
  r = pp_checkout(c->pool, c->client, c->timeout_ms, on_checkout, c);
  if (r != 0) {
    c->refs--;
    call_fail(c, r, refusal(c->pool, r, &diag));
    call_end(c);
  }
}

/* ----------------------------------------------------------------- status */

static void op_status(pp__conn_t *c, const char *id) {
  json_t *root = NULL;
  pp_status_t st;
  char *js;
  int r;

  if ((r = pp_pool_status(c->pool, &st)) != 0) {
    pp__conn_send_code(c, id, r);
    return;
  }
  js = pp_status_to_json(&st);
  if (js)
    root = json_loads(js, 0, NULL);
  free(js);
  /* The pool's process, for `poolctl stop` and for operators. */
  if (root == NULL ||
      json_object_set_new(root, "pid", json_integer(getpid())) != 0) {
    pp_status_free(&st);
    json_decref(root);
    pp__conn_send_code(c, id, UV_ENOMEM);
    return;
  }
  pp_status_free(&st);
  pp__conn_send(c, json_pack("{s:b, s:o}", "ok", 1, "status", root), id, 0);
}

/* ------------------------------------------------------------------ trace */

/* Append s as the body of a JSON string: escapes, and U+FFFD for bytes
 * that are not UTF-8, so every line parses.  Returns the new length, or
 * len unchanged past cap. */
static size_t put_json_text(char *out, size_t len, size_t cap, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t need;
  int n, i;

  while (*p) {
    char esc[8];
    const char *src = esc;

    need = 1;
    if (*p == '"' || *p == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*p;
      need = 2;
      n = 1;
    } else if (*p < 0x20) {
      snprintf(esc, sizeof(esc), "\\u%04x", *p);
      need = 6;
      n = 1;
    } else if (*p < 0x80) {
      esc[0] = (char)*p;
      n = 1;
    } else {
      /* The length of a well-formed sequence, or 0. */
      n = (*p & 0xe0) == 0xc0 && *p >= 0xc2   ? 2
          : (*p & 0xf0) == 0xe0               ? 3
          : (*p & 0xf8) == 0xf0 && *p <= 0xf4 ? 4
                                              : 0;
      for (i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
          n = 0;
      if (n == 0) {
        src = "\xef\xbf\xbd";
        need = 3;
        n = 1;
      } else {
        src = (const char *)p;
        need = (size_t)n;
      }
    }
    if (len + need >= cap)
      return len;
    memcpy(out + len, src, need);
    len += need;
    p += n;
  }
  return len;
}

/* One event as a JSON line (with its '\n'); returns its length. */
static size_t trace_line(const pp_trace_event_t *ev, char *out, size_t cap) {
  struct timespec now;
  size_t n;

  clock_gettime(CLOCK_REALTIME, &now);
  n = (size_t)snprintf(
      out, cap,
      "{\"event\":\"%s\",\"ts_ns\":%" PRIu64 ",\"unix_ms\":%" PRIu64
      ",\"slot\":%d,\"generation\":%" PRIu32 ",\"pid\":%d,\"lease\":%" PRIu64
      ",\"client\":%" PRIu64 ",\"code\":%d",
      pp_trace_name(ev->type), ev->ts_ns,
      (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000, ev->slot,
      ev->generation, ev->pid, ev->lease, ev->client, ev->code);
  if (n >= cap - 4)
    return 0;
  if (ev->detail) {
    memcpy(out + n, ",\"detail\":\"", 11);
    n = put_json_text(out, n + 11, cap - 4, ev->detail);
    out[n++] = '"';
  }
  out[n++] = '}';
  out[n++] = '\n';
  return n;
}

/* The subscriber: any thread, pool lock held.  Copy and wake; nothing
 * else. */
static void on_trace_event(pp_pool_t *pool, const pp_trace_event_t *ev,
                           void *data) {
  pp__conn_t *c = data;
  char line[CTL_TRACE_LINE];
  size_t n;

  (void)pool;
  if ((unsigned)ev->type >= 64 || !(c->tmask & ((uint64_t)1 << ev->type)))
    return;
  n = trace_line(ev, line, sizeof(line));
  uv_mutex_lock(&c->tlock);
  if (!c->tdead) {
    if (n > 0 && c->tlen + n <= CTL_TRACE_BUF) {
      memcpy(c->tbuf + c->tlen, line, n);
      c->tlen += n;
    } else {
      c->tdropped++;
    }
    uv_async_send(c->async);
  }
  uv_mutex_unlock(&c->tlock);
}

/* Loop thread: write what the subscriber buffered, unless the peer is
 * behind (then the buffer fills and events are dropped and counted). */
void pp__ctl_trace_flush(pp__conn_t *c) {
  uint64_t dropped;
  char *data = NULL, note[96];
  size_t len;

  if (c->closing || c->tbuf == NULL ||
      uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) >= CTL_WQUEUE_MAX)
    return;
  uv_mutex_lock(&c->tlock);
  len = c->tlen;
  dropped = c->tdropped;
  if (len > 0 && (data = malloc(len)) != NULL) {
    memcpy(data, c->tbuf, len);
    c->tlen = 0;
  } else if (len > 0) {
    dropped = 0; /* out of memory: try again on the next wake-up */
  }
  if (dropped)
    c->tdropped = 0;
  uv_mutex_unlock(&c->tlock);
  if (data) {
    pp__conn_write(c, data, len, 0, 0);
    free(data);
  }
  if (dropped) {
    snprintf(note, sizeof(note),
             "{\"event\":\"dropped\",\"count\":%" PRIu64 "}", dropped);
    pp__conn_write(c, note, strlen(note), 1, 0);
  }
}

void pp__ctl_on_async(uv_async_t *a) {
  pp__control_t *ctl = a->data;
  pp__queue_t *q, *next;
  pp__conn_t *c;

  /* A write may close a connection (and unlink it) under us. */
  for (q = ctl->conns.next; q != &ctl->conns; q = next) {
    next = q->next;
    c = pp__container_of(q, pp__conn_t, node);
    if (c->tracing)
      pp__ctl_trace_flush(c);
  }
}

static void op_trace(pp__conn_t *c, const pp__ctl_req_t *req) {
  char err[512];
  int r;

  if (pp__ctl_trace_mask(req->filter, &c->tmask, err, sizeof(err)) != 0) {
    pp__conn_send_error(c, req->id, "EINVAL", err, NULL);
    return;
  }
  if (c->tbuf == NULL) { /* else left by a subscription that failed */
    if ((c->tbuf = malloc(CTL_TRACE_BUF)) == NULL) {
      pp__conn_send_code(c, req->id, UV_ENOMEM);
      return;
    }
    uv_mutex_init(&c->tlock);
  }
  c->async = &c->ctl->async;
  if ((r = pp_pool_trace_subscribe(c->pool, on_trace_event, c, &c->trace_id)) !=
      0) {
    pp__conn_send_code(c, req->id, r);
    return;
  }
  c->tracing = 1;
  /* The answer is queued before any event: those are written from the
   * async callback, on a later turn of the loop. */
  pp__conn_send(c, json_pack("{s:b}", "ok", 1), req->id, 0);
}

/* ------------------------------------------------------- operating ops */

/* 1 when the program handles sig itself (poolctl serve does, through
 * libuv): then raising it is asking the program, not killing it. */
static int handles_signal(int sig) {
  struct sigaction sa;

  if (sigaction(sig, NULL, &sa) != 0)
    return 0;
  if (sa.sa_flags & SA_SIGINFO)
    return sa.sa_sigaction != NULL;
  return sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN;
}

/* stop and reload belong to the program that runs the pool, not to the
 * pool: until the core offers a hook for them, they are delivered as the
 * signals such a program already handles (SIGTERM, SIGHUP), after the
 * answer is written. */
static void op_signal(pp__conn_t *c, const char *id, int sig,
                      const char *what) {
  const char *name = sig == SIGTERM ? "SIGTERM" : "SIGHUP";
  char msg[256];

  if (!handles_signal(sig)) {
    snprintf(msg, sizeof(msg),
             "this program (pid %d) does not handle %s, so it cannot %s over "
             "its control socket",
             (int)getpid(), name, what);
    pp__conn_send_error(c, id, "ENOTSUP", msg, NULL);
    return;
  }
  pp__conn_send(c,
                json_pack("{s:b, s:i, s:s}", "ok", 1, "pid", (int)getpid(),
                          "signal", name),
                id, sig);
}

/* reload through the program's hook: its result is the answer. */
static void op_reload_hook(pp__conn_t *c, const char *id) {
  pp_pool_t *pool = c->pool;
  pp_diag_t d;
  char msg[900];
  int r;

  memset(&d, 0, sizeof(d));
  r = pp__pool_options(pool)->control(pool, "reload", &d,
                                      pp__pool_options(pool)->control_data);
  if (r == 0) {
    pp__conn_send(c, json_pack("{s:b, s:i}", "ok", 1, "pid", (int)getpid()), id,
                  0);
    return;
  }
  if (d.message[0] == '\0')
    snprintf(d.message, sizeof(d.message), "%s", pp_strerror(r));
  pp__diag_format(&d, msg, sizeof(msg));
  pp__conn_send_error(c, id, pp_err_name(r), msg, NULL);
}

/* --------------------------------------------------------------- requests */

void pp__ctl_handle_line(pp__conn_t *c, const char *line, size_t n) {
  pp__ctl_req_t req;
  char msg[600];
  int r;

  while (n > 0 &&
         (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
    n--;
  if (n == 0)
    return; /* blank lines are allowed, for hand-typed sessions */
  r = pp__ctl_parse(line, n, &req, msg, sizeof(msg));
  if (r == PP_CTL_EFATAL) {
    pp__conn_send_error(c, NULL, "EINVAL", msg, NULL);
    pp__conn_finish(c);
    return;
  }
  if (r != 0) {
    pp__conn_send_error(c, req.id, "EINVAL", msg, NULL);
    pp__ctl_req_free(&req);
    return;
  }
  switch (req.op) {
  case PP_CTL_PING:
    pp__conn_send(c, json_pack("{s:b}", "ok", 1), req.id, 0);
    break;
  case PP_CTL_STATUS:
    op_status(c, req.id);
    break;
  case PP_CTL_CALL:
    op_call(c, &req);
    break;
  case PP_CTL_TRACE:
    op_trace(c, &req);
    break;
  case PP_CTL_SCALE:
    pp__conn_send_code(
        c, req.id,
        req.min ? pp_pool_resize(c->pool, req.min, req.max, req.force)
                : pp_pool_scale(c->pool, req.n, req.force));
    break;
  case PP_CTL_RESTART:
    pp__conn_send_code(c, req.id, pp_pool_restart(c->pool, req.slot));
    break;
  case PP_CTL_DRAIN:
  case PP_CTL_UNDRAIN:
    pp__conn_send_code(c, req.id,
                       pp_pool_drain(c->pool, req.op == PP_CTL_UNDRAIN));
    break;
  case PP_CTL_STOP:
    if (pp__pool_options(c->pool)->control)
      pp__conn_send(c, json_pack("{s:b, s:i}", "ok", 1, "pid", (int)getpid()),
                    req.id, PP__AFTER_STOP);
    else
      op_signal(c, req.id, SIGTERM, "stop");
    break;
  case PP_CTL_RELOAD:
    if (pp__pool_options(c->pool)->control)
      op_reload_hook(c, req.id);
    else
      op_signal(c, req.id, SIGHUP, "reload");
    break;
  }
  pp__ctl_req_free(&req);
}
