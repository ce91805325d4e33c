/* http.c -- `poolctl serve --listen`: the pool's HTTP face, on the pool's
 * own libuv loop.  libmicrohttpd parses HTTP (never us): it runs without
 * threads of its own, in its epoll mode, and the loop watches its epoll fd
 * and its timeout.  A call suspends its connection until the pool answers:
 *
 *   POST /v1/call/NAME   the body is the argument (JSON, or bytes with
 *                        Content-Type: application/octet-stream); the
 *                        reply is the result, with the matching type; a
 *                        stream handler's items go out chunked
 *   GET /readyz          200 ready, 503 warming, degraded or draining
 *   GET /livez           200 while the loop runs
 *   GET /metrics         the OpenMetrics text of `status --prometheus`
 *
 * Each call has a pool client of its own, as a control connection has: a
 * client that hangs up (MHD ends the request, or, while the call waits
 * for the pool, a sweep sees POLLRDHUP on its socket) is closed, so
 * on_client_death decides what becomes of its request.  X-Deadline-Ms /
 * Request-Timeout bound the whole call, as poolctl call --timeout does.  Beyond
 * loopback a bearer token is required (listen.token_file), compared in constant
 * time. */
#include "http.h"
#include "config.h"
#include "diag.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* The most a token file may hold. */
#define TOKEN_MAX 4096
/* The most a TLS key or certificate file may hold. */
#define PEM_MAX (1 << 20)
/* Bytes a stream's response buffers before it holds the worker back. */
#define STREAM_BUF (256 * 1024)

struct pc_http {
  uv_loop_t *loop;
  pp_pool_t *pool;
  struct MHD_Daemon *d;
  uv_poll_t poll; /* MHD's epoll fd */
  uv_timer_t timer;
  /* MHD's work, once per loop iteration (soon): the check runs it after
   * the iteration's I/O callbacks; the idle keeps that iteration from
   * blocking in its poll when the work was asked for before it. */
  uv_check_t check;
  uv_idle_t idle;
  int open;    /* poll and timer initialised */
  int closing; /* pc_http_close called */
  char *token; /* NULL: none needed */
  size_t token_len;
  char *cert, *key; /* PEM text for MHD, or NULL */
  int keepalive;    /* listen.keepalive_requests */
  uint32_t max_frame;
  int port;    /* bound */
  int running; /* in MHD_run: a wake-up asks for another round */
  int again;
  struct hreq *suspended; /* waiting for the pool, newest first */
  uv_timer_t sweep;       /* looks for hang-ups among them */
  /* The handlers that stream (a pipelined call cannot take a stream),
   * from the pool's status; stale once a worker said HELLO again. */
  char *kinds;
  atomic_int kinds_stale;
  atomic_int hello_seen; /* a worker said HELLO: the kinds are known */
  int trace_id;          /* its HELLO watch; -1: none */
};

/* What a connection carries across its requests (keep-alive). */
typedef struct hconn {
  int requests;
} hconn_t;

typedef enum { R_CALL, R_OTHER } route_t;

/* One HTTP request.  Freed when both MHD is done with it (completed) and
 * no pool callback is owed to it (busy). */
typedef struct hreq {
  pc_http_t *h;
  struct MHD_Connection *conn;
  route_t route;
  char cmd[65];
  int binary; /* the body is bytes */
  char *body;
  size_t len, cap;
  int too_big;
  int64_t timeout_ms; /* -1: the config's */
  uint64_t start_ns;
  pp_client_t *client;
  int piped;            /* the call goes through the pipeline (no lease) */
  pp_cancel_t *token;   /* piped: cancels it on a hang-up */
  pp_lease_t *lease;    /* while its request runs */
  uv_timer_t *deadline; /* timeout_ms past: the lease is checked in */
  int expired;
  struct hreq *prev, *next; /* in h->suspended while suspended */
  uint64_t suspended_ns;
  int hung;        /* the sweep saw its peer hang up */
  int hung_done;   /* piped: its hang-up was acted on */
  int busy;        /* pool callbacks owed (or a call into the pool under
                      way that may run one) */
  int close_after; /* the connection's last request (keep-alive bound) */
  int completed;   /* MHD is done with it */
  int suspended;
  int answered; /* the answer below is ready to be queued */
  unsigned code;
  char *out;
  size_t out_len;
  const char *ctype;
  int retry_after;
  int started; /* its request went to a worker: it may have run */
  /* A stream: chunks buffered for MHD's reader. */
  int streaming, stream_done, stream_failed;
  char *sbuf;
  size_t slen, scap;
} hreq_t;

static uint64_t now_ns(void) { return uv_hrtime(); }

/* ------------------------------------------------------------ the loop */

static void arm(pc_http_t *h);

/* MHD's work, never nested: a wake-up from inside it (a pool callback
 * that ran under one of MHD's) asks for one more round. */
static void run(pc_http_t *h) {
  if (h->d == NULL)
    return;
  if (h->running) {
    h->again = 1;
    return;
  }
  h->running = 1;
  do {
    h->again = 0;
    MHD_run(h->d);
  } while (h->again && h->d);
  h->running = 0;
  arm(h);
}

static void on_check(uv_check_t *c) {
  pc_http_t *h = c->data;

  uv_check_stop(&h->check);
  uv_idle_stop(&h->idle);
  run(h);
}

/* Nothing to do: while active it keeps the loop's poll from blocking;
 * on_check stops it (libuv decides the poll's timeout after the idle
 * callbacks ran). */
static void on_idle(uv_idle_t *i) { (void)i; }

/* MHD's work is due: it runs once this loop iteration has gathered every
 * reply and connection ready with it (one MHD_run for all of them, not
 * one each); from inside MHD_run, one more round. */
static void soon(pc_http_t *h) {
  if (h->running) {
    h->again = 1;
    return;
  }
  if (h->d == NULL || h->closing)
    return;
  uv_check_start(&h->check, on_check);
  uv_idle_start(&h->idle, on_idle);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)status;
  (void)events;
  soon(p->data);
}

static void on_timer(uv_timer_t *t) { soon(t->data); }

/* MHD's next timeout on the loop's timer (none: MHD has work ready now). */
static void arm(pc_http_t *h) {
  MHD_UNSIGNED_LONG_LONG ms;

  if (h->d == NULL || h->closing)
    return;
  if (MHD_get_timeout(h->d, &ms) != MHD_YES) {
    uv_timer_stop(&h->timer);
  } else if (ms == 0) {
    uv_timer_stop(&h->timer);
    soon(h);
  } else {
    uv_timer_start(&h->timer, on_timer, ms, 0);
  }
}

/* ------------------------------------------------------------ answers */

static void answer(hreq_t *r, unsigned code, const char *ctype,
                   const char *body, size_t len) {
  free(r->out);
  r->out = malloc(len + 1);
  if (r->out == NULL) {
    code = MHD_HTTP_INTERNAL_SERVER_ERROR;
    len = 0;
  } else {
    memcpy(r->out, body, len);
  }
  r->out_len = len;
  r->code = code;
  r->ctype = ctype;
  r->answered = 1;
}

/* {"error": NAME, "message": MSG} with extra members (NULL: none). */
static void answer_error(hreq_t *r, unsigned code, const char *name,
                         const char *msg, json_t *extra) {
  json_t *v = json_pack("{s:s, s:s}", "error", name, "message", msg);
  char *text;

  if (v && extra)
    json_object_update(v, extra);
  text = v ? json_dumps(v, JSON_COMPACT) : NULL;
  answer(r, code, "application/json", text ? text : "{}",
         text ? strlen(text) : 2);
  free(text);
  json_decref(v);
}

static enum MHD_Result queue(hreq_t *r) {
  struct MHD_Response *resp;
  enum MHD_Result ok;
  char n[16];

  /* The response takes the buffer: no second copy. */
  resp = MHD_create_response_from_buffer(r->out_len, r->out,
                                         MHD_RESPMEM_MUST_FREE);
  if (resp == NULL)
    return MHD_NO;
  r->out = NULL;
  if (r->ctype)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
  if (r->retry_after) {
    snprintf(n, sizeof(n), "%d", r->retry_after);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, n);
  }
  if (r->close_after)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  /* Whether a failed call may have run: a client or balancer retries
   * only "no" (every 503 is "no"). */
  if (r->route == R_CALL && r->code >= 500)
    MHD_add_response_header(resp, "X-Call-Started", r->started ? "yes" : "no");
  ok = MHD_queue_response(r->conn, r->code, resp);
  MHD_destroy_response(resp);
  return ok;
}

/* ------------------------------------------------------------ hang-ups */

/* A suspended connection is not watched by MHD.  Those suspended longer
 * than HUP_AFTER_MS are looked at every HUP_EVERY_MS (one poll(2) with
 * POLLRDHUP each): a fast call costs nothing, a slow one's abandoned
 * worker is freed within a tenth of a second. */
#define HUP_AFTER_MS 50
#define HUP_EVERY_MS 100

static void suspended_add(hreq_t *r) {
  pc_http_t *h = r->h;

  r->suspended_ns = now_ns();
  r->prev = NULL;
  r->next = h->suspended;
  if (h->suspended)
    h->suspended->prev = r;
  h->suspended = r;
}

static void suspended_remove(hreq_t *r) {
  pc_http_t *h = r->h;

  if (r->prev)
    r->prev->next = r->next;
  else if (h->suspended == r)
    h->suspended = r->next;
  if (r->next)
    r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

static void maybe_free(hreq_t *r);

/* A piped call's peer is gone: as on_client_death says for a client that
 * died, except that kill sends CANCEL too (the worker holds other
 * callers' requests in its pipeline: one hang-up does not cost them
 * theirs); finish lets it run and drops its reply. */
static void piped_hang_up(hreq_t *r) {
  r->hung_done = 1;
  if (r->token &&
      pp_pool_config(r->h->pool)->on_client_death != PP_DEATH_FINISH)
    pp_cancel(r->token);
}

/* The peer closed its side while its call runs: its client dies, and
 * on_client_death decides what becomes of the request. */
static void hang_up(hreq_t *r) {
  pp_client_t *client = r->client;

  r->hung = 0;
  if (r->piped) {
    piped_hang_up(r);
    return;
  }
  if (client == NULL)
    return;
  /* Closing it may run the call's callback, and MHD then end the request,
   * at once: r stays until we are done. */
  r->client = NULL;
  r->busy++;
  pp_client_close(client);
  r->busy--;
  maybe_free(r);
}

static void on_sweep(uv_timer_t *t) {
  pc_http_t *h = t->data;
  uint64_t now = now_ns();
  const union MHD_ConnectionInfo *ci;
  struct pollfd p;
  hreq_t *r;

  /* Mark first (no callback runs), then end the marked ones one by one:
   * ending one may change the list. */
  for (r = h->suspended; r != NULL; r = r->next) {
    if (now - r->suspended_ns < HUP_AFTER_MS * 1000000ull ||
        (r->client == NULL && !r->piped) || r->hung_done)
      continue;
    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL)
      continue;
    p.fd = ci->connect_fd;
    p.events = POLLRDHUP;
    p.revents = 0;
    if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
      r->hung = 1;
  }
  for (;;) {
    for (r = h->suspended; r != NULL && !r->hung; r = r->next)
      ;
    if (r == NULL)
      break;
    hang_up(r);
  }
}

/* ------------------------------------------------------------ lifetime */

static void deadline_closed(uv_handle_t *hd) { free(hd); }

static void req_free(hreq_t *r) {
  suspended_remove(r);
  if (r->deadline) {
    uv_close((uv_handle_t *)r->deadline, deadline_closed);
    r->deadline = NULL;
  }
  if (r->client)
    pp_client_close(r->client);
  pp_cancel_free(r->token);
  free(r->body);
  free(r->out);
  free(r->sbuf);
  free(r);
}

static void maybe_free(hreq_t *r) {
  if (r->completed && !r->busy)
    req_free(r);
}

/* The connection waits for the pool (watched for hang-ups meanwhile). */
static void suspend(hreq_t *r) {
  r->suspended = 1;
  MHD_suspend_connection(r->conn);
  suspended_add(r);
}

/* The pool answered: the connection wakes to send it. */
static void wake(hreq_t *r) {
  if (r->suspended && !r->completed) {
    r->suspended = 0;
    suspended_remove(r);
    MHD_resume_connection(r->conn);
  }
  soon(r->h);
}

/* ------------------------------------------------------------ the call */

/* An error status as HTTP. */
static void answer_status(hreq_t *r, int status, const pp_diag_t *diag,
                          const char *reply, size_t len) {
  const char *msg =
      diag && diag->message[0] ? diag->message : pp_strerror(status);
  json_t *detail;

  /* Cut while it ran (pp_pool_close past drain_timeout): it may have
   * run, so not a 503. */
  if (status == PP_ECLOSED && r->started)
    status = PP_ECRASHED;
  switch (status) {
  case PP_ETIMEDOUT:
    answer_error(r, MHD_HTTP_GATEWAY_TIMEOUT, pp_err_name(status), msg, NULL);
    return;
  case PP_EBUSY:
  case PP_ECLOSED:
  case PP_EDEGRADED:
    answer_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, pp_err_name(status), msg,
                 NULL);
    /* Worth trying again soon, unless every worker gave up. */
    r->retry_after = status == PP_EDEGRADED ? 0 : 1;
    return;
  case PP_ETOOBIG:
    answer_error(r, MHD_HTTP_CONTENT_TOO_LARGE, pp_err_name(status), msg, NULL);
    return;
  case PP_EHANDLER:
    detail = len > 0 ? json_loadb(reply, len, 0, NULL) : NULL;
    if (json_is_object(detail) &&
        json_is_string(json_object_get(detail, "type")) &&
        strcmp(json_string_value(json_object_get(detail, "type")),
               "UnknownCommand") == 0) {
      answer_error(r, MHD_HTTP_NOT_FOUND, "UnknownCommand", msg, detail);
    } else if (json_is_object(detail)) {
      char *text = json_dumps(detail, JSON_COMPACT);

      /* The worker's {type, message, traceback}, as it sent it. */
      answer(r, MHD_HTTP_UNPROCESSABLE_CONTENT, "application/json",
             text ? text : "{}", text ? strlen(text) : 2);
      free(text);
    } else {
      answer_error(r, MHD_HTTP_UNPROCESSABLE_CONTENT, pp_err_name(status), msg,
                   NULL);
    }
    json_decref(detail);
    return;
  case PP_ECRASHED:
  case PP_EPROTO:
    answer_error(r, MHD_HTTP_BAD_GATEWAY, pp_err_name(status), msg, NULL);
    return;
  default:
    answer_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, pp_err_name(status), msg,
                 NULL);
  }
}

/* A stream's chunk, for MHD's reader: one line per JSON item (NDJSON),
 * bytes as they are.  Past STREAM_BUF unsent, the stream is stopped. */
static int on_chunk(const char *chunk, size_t len, int binary, void *data) {
  hreq_t *r = data;
  size_t need = r->slen + len + 1;
  char *p;

  if (r->completed)
    return 1; /* the peer is gone */
  if (!r->streaming) {
    /* The first chunk: the response starts now, chunked. */
    r->streaming = 1;
    r->ctype = binary ? "application/octet-stream" : "application/x-ndjson";
    r->code = MHD_HTTP_OK;
    r->answered = 1;
  }
  if (r->slen > STREAM_BUF) {
    r->stream_failed = 1;
    return 1;
  }
  if (need > r->scap) {
    if ((p = realloc(r->sbuf, need * 2)) == NULL) {
      r->stream_failed = 1;
      return 1;
    }
    r->sbuf = p;
    r->scap = need * 2;
  }
  memcpy(r->sbuf + r->slen, chunk, len);
  r->slen += len;
  if (!binary)
    r->sbuf[r->slen++] = '\n';
  wake(r);
  return 0;
}

static void on_reply(const pp_result_t *res, void *data) {
  hreq_t *r = data;
  pp_lease_t *lease = res->lease;

  if (r->deadline)
    uv_timer_stop(r->deadline);
  r->lease = NULL;
  if (r->client && !r->expired)
    pp_checkin(lease);
  r->busy--;
  if (r->completed) {
    maybe_free(r);
    return;
  }
  if (r->streaming) {
    /* The stream's end; a failure after its start can only cut it. */
    r->stream_done = 1;
    if (res->status != 0)
      r->stream_failed = 1;
  } else if (r->expired) {
    pp_diag_t d;

    memset(&d, 0, sizeof(d));
    snprintf(d.message, sizeof(d.message),
             "the call ran past its deadline (%lld ms); its worker was left "
             "as on_client_death says",
             (long long)r->timeout_ms);
    answer_status(r, PP_ETIMEDOUT, &d, NULL, 0);
  } else if (res->status == 0) {
    answer(r, MHD_HTTP_OK,
           res->binary ? "application/octet-stream" : "application/json",
           res->reply, res->len);
  } else {
    answer_status(r, res->status, res->diag, res->reply, res->len);
  }
  wake(r);
}

static void on_deadline(uv_timer_t *t) {
  hreq_t *r = t->data;

  if (r->lease == NULL || r->client == NULL)
    return;
  r->expired = 1;
  pp_checkin(r->lease);
}

/* The request for r's body: the body itself for bytes (o->cmd names the
 * handler), else {"args": BODY, "cmd": NAME} in *json (to free), the body
 * as the client wrote it (the worker says BadRequest if it is not JSON;
 * cmd last wins). */
static int payload_of(hreq_t *r, pp_call_opts_t *o, char **payload, size_t *len,
                      char **json) {
  size_t n = r->len + strlen(r->cmd) + 32;

  *payload = r->body;
  *len = r->len;
  *json = NULL;
  if (r->binary) {
    o->cmd = r->cmd;
    return 0;
  }
  if ((*json = malloc(n)) == NULL)
    return UV_ENOMEM;
  *len = (size_t)snprintf(*json, n, "{\"args\":%.*s,\"cmd\":\"%s\"}",
                          r->len ? (int)r->len : 4, r->len ? r->body : "null",
                          r->cmd);
  *payload = *json;
  return 0;
}

static void on_checkout(pp_lease_t *lease, int status, const pp_diag_t *diag,
                        void *data) {
  hreq_t *r = data;
  pp_call_opts_t o = {.timeout_ms = -1, .on_chunk = on_chunk, .chunk_data = r};
  int64_t left;
  char *payload, *json;
  size_t len;
  int rc;

  if (status != 0 || r->completed || r->client == NULL) {
    if (status == 0 && r->client)
      pp_checkin(lease);
    r->busy--;
    if (r->completed) {
      maybe_free(r);
      return;
    }
    answer_status(r, status ? status : PP_ECANCELED, diag, NULL, 0);
    wake(r);
    return;
  }
  if (payload_of(r, &o, &payload, &len, &json) != 0) {
    pp_checkin(lease);
    r->busy--;
    answer_status(r, UV_ENOMEM, NULL, NULL, 0);
    wake(r);
    return;
  }
  rc = 0;
  if (r->timeout_ms >= 0) {
    left = r->timeout_ms - (int64_t)((now_ns() - r->start_ns) / 1000000);
    if ((r->deadline = malloc(sizeof(*r->deadline))) == NULL) {
      rc = UV_ENOMEM;
    } else {
      uv_timer_init(r->h->loop, r->deadline);
      r->deadline->data = r;
      uv_timer_start(r->deadline, on_deadline, left > 0 ? (uint64_t)left : 0,
                     0);
    }
  }
  if (rc == 0)
    rc = pp_request_with(lease, payload, len, &o, on_reply, r);
  free(json);
  if (rc == 0) {
    r->lease = lease;
    r->started = 1;
    return; /* on_reply is owed */
  }
  pp_checkin(lease);
  r->busy--;
  answer_status(r, rc, NULL, NULL, 0);
  wake(r);
}

static void on_piped(const pp_result_t *res, void *data) {
  hreq_t *r = data;

  r->busy--;
  if (r->completed) {
    maybe_free(r);
    return;
  }
  /* Refused, or ended while it waited for a worker (its deadline, a
   * drain): never started, and a 503 for a drain, not a 502. */
  r->started = res->sent;
  if (res->status == 0)
    answer(r, MHD_HTTP_OK,
           res->binary ? "application/octet-stream" : "application/json",
           res->reply, res->len);
  else
    answer_status(r, res->status, res->diag, res->reply, res->len);
  wake(r);
}

/* Does handler `name` stream?  From the pool's handler kinds, read again
 * once a worker said HELLO (a reload may have changed them). */
static int streams(pc_http_t *h, const char *name) {
  char key[80];
  pp_status_t st;

  /* No worker said HELLO yet (serve listens while its pool warms): the
   * kinds are unknown, and a lease serves either kind. */
  if (h->trace_id >= 0 && !atomic_load(&h->hello_seen))
    return 1;
  if (atomic_exchange(&h->kinds_stale, 0) &&
      pp_pool_status(h->pool, &st) == 0) {
    free(h->kinds);
    h->kinds = st.handler_kinds ? strdup(st.handler_kinds) : NULL;
    pp_status_free(&st);
  }
  /* {"name": "stream", ...}: names are identifiers, nothing to unescape. */
  snprintf(key, sizeof(key), "\"%s\":\"stream\"", name);
  return h->kinds && strstr(h->kinds, key) != NULL;
}

/* A pipelined pool (worker.pipeline_depth or worker.concurrency above 1)
 * takes a call that does not stream through its pipeline: a worker has
 * the next request before it answers this one (no lease, no wait for a
 * wake-up between them).  A hang-up cancels it (piped_hang_up). */
static int piped_start(hreq_t *r) {
  const pp_config_t *cfg = pp_pool_config(r->h->pool);
  pp_call_opts_t o = {.timeout_ms = r->timeout_ms};
  char *payload, *json;
  size_t len;
  int rc;

  if ((cfg->pipeline_depth <= 1 && cfg->concurrency <= 1) ||
      streams(r->h, r->cmd))
    return 1;
  r->piped = 1;
  if (cfg->on_client_death != PP_DEATH_FINISH &&
      (rc = pp_cancel_new(r->h->pool, &r->token)) != 0)
    goto fail;
  o.cancel = r->token;
  if ((rc = payload_of(r, &o, &payload, &len, &json)) != 0)
    goto fail;
  r->busy++;
  r->started = 1; /* until it says otherwise: it may run */
  rc = pp_call_async_with(r->h->pool, payload, len, &o, on_piped, r);
  free(json);
  if (rc == 0) {
    suspend(r);
    return 0;
  }
  r->busy--;
  r->started = 0;
fail:
  answer_status(r, rc, NULL, NULL, 0);
  return 0;
}

/* The body is in: the call starts, and the connection waits for it. */
static void call_start(hreq_t *r) {
  int rc;

  if (piped_start(r) == 0)
    return;

  if ((rc = pp_client_open(r->h->pool, &r->client)) != 0) {
    answer_status(r, rc, NULL, NULL, 0);
    return;
  }
  r->busy++;
  rc = pp_checkout(r->h->pool, r->client, r->timeout_ms, on_checkout, r);
  if (rc != 0) {
    pp_diag_t d;
    pp_status_t st;

    r->busy--;
    memset(&d, 0, sizeof(d));
    if (rc == PP_ECLOSED && pp_pool_status(r->h->pool, &st) == 0) {
      snprintf(d.message, sizeof(d.message), "%s",
               st.draining ? "pool draining" : "pool is closing");
      pp_status_free(&st);
    }
    answer_status(r, rc, &d, NULL, 0);
    return;
  }
  suspend(r);
}

/* ------------------------------------------------------------ streams */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  hreq_t *r = cls;
  size_t n;

  (void)pos;
  if (r->slen > 0) {
    n = r->slen < max ? r->slen : max;
    memcpy(buf, r->sbuf, n);
    memmove(r->sbuf, r->sbuf + n, r->slen - n);
    r->slen -= n;
    return (ssize_t)n;
  }
  if (r->stream_done)
    return r->stream_failed ? MHD_CONTENT_READER_END_WITH_ERROR
                            : MHD_CONTENT_READER_END_OF_STREAM;
  /* Nothing yet: wait for the next chunk (on_chunk wakes us), watching
   * for the peer hanging up meanwhile. */
  suspend(r);
  return 0;
}

static enum MHD_Result queue_stream(hreq_t *r) {
  struct MHD_Response *resp;
  enum MHD_Result ok;

  resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read,
                                           r, NULL);
  if (resp == NULL)
    return MHD_NO;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
  if (r->close_after)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  ok = MHD_queue_response(r->conn, MHD_HTTP_OK, resp);
  MHD_destroy_response(resp);
  return ok;
}

/* ------------------------------------------------------------ routing */

static int authorized(pc_http_t *h, struct MHD_Connection *conn) {
  const char *v =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
  unsigned char diff = 0;
  size_t i, n;

  if (h->token == NULL)
    return 1;
  if (v == NULL || strncmp(v, "Bearer ", 7) != 0)
    return 0;
  v += 7;
  n = strlen(v);
  /* Constant time in the token: every byte compared, whatever differs. */
  diff = n != h->token_len;
  for (i = 0; i < h->token_len; i++)
    diff |= (unsigned char)h->token[i] ^ (unsigned char)(i < n ? v[i] : 0);
  return diff == 0;
}

/* X-Deadline-Ms: N, or Request-Timeout: SECONDS; -1 when neither. */
static int deadline_of(struct MHD_Connection *conn, int64_t *ms) {
  const char *v;
  char *end;
  double s;
  long long n;

  *ms = -1;
  if ((v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                       "X-Deadline-Ms")) != NULL) {
    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 0)
      return -1;
    *ms = n;
  } else if ((v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                              "Request-Timeout")) != NULL) {
    errno = 0;
    s = strtod(v, &end);
    if (errno || end == v || *end || !(s >= 0) || s > 315360000.0)
      return -1;
    *ms = (int64_t)(s * 1000.0);
  }
  return 0;
}

static void answer_ready(hreq_t *r) {
  pp_status_t st;
  const char *why = NULL;

  if (pp_pool_status(r->h->pool, &st) != 0) {
    answer(r, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", "unknown\n", 8);
    return;
  }
  if (st.draining)
    why = "draining\n";
  else if (st.state == PP_POOL_DEGRADED)
    why = "degraded\n";
  else if (st.state != PP_POOL_READY)
    why = "warming\n";
  pp_status_free(&st);
  if (why)
    answer(r, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", why, strlen(why));
  else
    answer(r, MHD_HTTP_OK, "text/plain", "ready\n", 6);
}

static void answer_metrics(hreq_t *r) {
  pp_status_t st;
  json_t *root = NULL;
  char *js = NULL, *text = NULL;
  size_t len = 0;
  FILE *f;

  if (pp_pool_status(r->h->pool, &st) == 0) {
    js = pp_status_to_json(&st);
    pp_status_free(&st);
  }
  if (js)
    root = json_loads(js, 0, NULL);
  free(js);
  if (root && (f = open_memstream(&text, &len)) != NULL) {
    pc_print_openmetrics(f, root);
    fclose(f);
  }
  json_decref(root);
  if (text)
    answer(r, MHD_HTTP_OK,
           "application/openmetrics-text; version=1.0.0; charset=utf-8", text,
           len);
  else
    answer_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "ENOMEM", "out of memory",
                 NULL);
  free(text);
}

static void count_request(hreq_t *r);

/* The first look at a request: its route, and what can be answered now. */
static void begin(hreq_t *r, const char *url, const char *method) {
  pc_http_t *h = r->h;
  const char *ct, *cl;
  const char *name;
  size_t n;

  if (strcmp(url, "/livez") == 0 || strcmp(url, "/readyz") == 0 ||
      strcmp(url, "/metrics") == 0) {
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
      answer_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "EINVAL", "use GET", NULL);
      return;
    }
    if (strcmp(url, "/livez") == 0)
      answer(r, MHD_HTTP_OK, "text/plain", "ok\n", 3);
    else if (strcmp(url, "/readyz") == 0)
      answer_ready(r);
    else if (!authorized(h, r->conn))
      answer_error(r, MHD_HTTP_UNAUTHORIZED, "EACCES",
                   "a bearer token is needed (Authorization: Bearer ...)",
                   NULL);
    else
      answer_metrics(r);
    return;
  }
  if (strncmp(url, "/v1/call/", 9) != 0) {
    answer_error(r, MHD_HTTP_NOT_FOUND, "ENOENT",
                 "no such path: POST /v1/call/NAME, GET /readyz, /livez, "
                 "/metrics",
                 NULL);
    return;
  }
  if (strcmp(method, "POST") != 0) {
    answer_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "EINVAL", "a call is a POST",
                 NULL);
    return;
  }
  if (!authorized(h, r->conn)) {
    answer_error(r, MHD_HTTP_UNAUTHORIZED, "EACCES",
                 "a bearer token is needed (Authorization: Bearer ...)", NULL);
    return;
  }
  name = url + 9;
  n = strlen(name);
  if (n == 0 || n >= sizeof(r->cmd) ||
      strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789_") != n ||
      (name[0] >= '0' && name[0] <= '9')) {
    answer_error(r, MHD_HTTP_NOT_FOUND, "UnknownCommand",
                 "a handler name is an identifier of 1 to 64 characters", NULL);
    return;
  }
  memcpy(r->cmd, name, n + 1);
  ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                   MHD_HTTP_HEADER_CONTENT_TYPE);
  r->binary = ct && strncmp(ct, "application/octet-stream", 24) == 0;
  if (deadline_of(r->conn, &r->timeout_ms) != 0) {
    answer_error(r, MHD_HTTP_BAD_REQUEST, "EINVAL",
                 "X-Deadline-Ms wants milliseconds, Request-Timeout seconds",
                 NULL);
    return;
  }
  cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                   MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (cl && strtoull(cl, NULL, 10) > h->max_frame) {
    answer_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "PP_ETOOBIG",
                 "the body is over worker.max_frame", NULL);
    return;
  }
  r->route = R_CALL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls) {
  pc_http_t *h = cls;
  hreq_t *r = *req_cls;
  size_t cap;
  char *p;

  (void)version;
  if (r == NULL) {
    if ((r = calloc(1, sizeof(*r))) == NULL)
      return MHD_NO;
    r->h = h;
    r->conn = conn;
    r->route = R_OTHER;
    r->timeout_ms = -1;
    r->start_ns = now_ns();
    *req_cls = r;
    count_request(r);
    begin(r, url, method);
    /* A call refused before its body: MHD closes rather than read a body
     * nobody wants.  Other answers go at MHD's next call (keep-alive). */
    return r->answered && strcmp(method, "POST") == 0 ? queue(r) : MHD_YES;
  }
  if (r->streaming)
    return queue_stream(r);
  if (r->answered && *upload_size == 0)
    return queue(r);
  if (*upload_size > 0) {
    /* The body, bounded by worker.max_frame. */
    if (!r->answered && r->len + *upload_size > h->max_frame) {
      /* The rest is read and dropped, and 413 answered at its end (MHD
       * cannot answer in the middle of a chunked body); a body that goes
       * on past 4 times the limit has its connection closed. */
      r->too_big = 1;
      answer_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "PP_ETOOBIG",
                   "the body is over worker.max_frame", NULL);
    }
    if (r->too_big) {
      r->len += *upload_size;
      *upload_size = 0;
      return r->len / 4 > h->max_frame ? MHD_NO : MHD_YES;
    }
    if (!r->answered) {
      if (r->len + *upload_size > r->cap) {
        cap = r->cap ? r->cap : 4096;
        while (cap < r->len + *upload_size)
          cap *= 2;
        if ((p = realloc(r->body, cap)) == NULL)
          return MHD_NO;
        r->body = p;
        r->cap = cap;
      }
      memcpy(r->body + r->len, upload, *upload_size);
      r->len += *upload_size;
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (r->route == R_CALL && !r->busy && !r->answered) {
    call_start(r);
    if (r->answered && !r->suspended)
      return queue(r);
  }
  return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
  hreq_t *r = *req_cls;

  (void)cls;
  (void)conn;
  (void)toe;
  if (r == NULL)
    return;
  *req_cls = NULL;
  r->completed = 1;
  /* A call still running: the client is gone (on_client_death).  Closing
   * it may run the call's callback at once: r stays until we are done. */
  if (r->busy && r->piped) {
    piped_hang_up(r);
  } else if (r->busy && r->client) {
    r->busy++;
    pp_client_close(r->client);
    r->client = NULL;
    r->busy--;
  }
  maybe_free(r);
}

/* Keep-alive bounded: past listen.keepalive_requests on one connection,
 * MHD is told to close it after the answer. */
static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_ctx,
                          enum MHD_ConnectionNotificationCode toe) {
  (void)conn;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    *socket_ctx = calloc(1, sizeof(hconn_t));
  } else {
    free(*socket_ctx);
    *socket_ctx = NULL;
    /* At listen.max_connections MHD stopped accepting; it listens again
     * in its next round, which nothing else may bring soon. */
    ((pc_http_t *)cls)->again = 1;
  }
}

/* Count the request on its connection; the last one allowed closes it. */
static void count_request(hreq_t *r) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  hconn_t *hc = ci ? ci->socket_context : NULL;

  if (hc == NULL || r->h->keepalive == 0)
    return;
  if (++hc->requests >= r->h->keepalive)
    r->close_after = 1;
}

/* ------------------------------------------------------------ start */

/* Read a whole small file into a string (NUL-terminated).  A symlink is
 * followed (a Kubernetes Secret's files are symlinks), but what is checked
 * is the file opened and read: a regular file, and for a secret one that
 * others (beyond its owner and group) cannot read. */
static int slurp(const char *path, size_t max, int secret, char **out,
                 size_t *len, char *err, size_t errlen) {
  struct stat sb;
  char *buf;
  ssize_t n;
  size_t got = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

  if (fd < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (size_t)sb.st_size > max) {
    snprintf(err, errlen, "%s: not a regular file of at most %zu bytes", path,
             max);
    close(fd);
    return -1;
  }
  if (secret && (sb.st_mode & 007)) {
    snprintf(err, errlen,
             "%s: others may read it (mode %03o); chmod o-rwx %s (a secret "
             "must be readable by its owner and group only)",
             path, (unsigned)(sb.st_mode & 0777), path);
    close(fd);
    return -1;
  }
  if ((buf = malloc((size_t)sb.st_size + 1)) == NULL) {
    close(fd);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  while (got < (size_t)sb.st_size &&
         (n = read(fd, buf + got, (size_t)sb.st_size - got)) > 0)
    got += (size_t)n;
  close(fd);
  buf[got] = '\0';
  *out = buf;
  if (len)
    *len = got;
  return 0;
}

static int token_load(pc_http_t *h, const char *path, char *err,
                      size_t errlen) {
  if (slurp(path, TOKEN_MAX, 1, &h->token, &h->token_len, err, errlen) != 0)
    return -1;
  /* A trailing newline is the editor's, not the token's. */
  while (h->token_len > 0 && (h->token[h->token_len - 1] == '\n' ||
                              h->token[h->token_len - 1] == '\r'))
    h->token[--h->token_len] = '\0';
  if (h->token_len < 16) {
    snprintf(err, errlen,
             "%s: the token must be at least 16 characters "
             "(openssl rand -hex 32 > %s)",
             path, path);
    return -1;
  }
  return 0;
}

/* The listening socket, bound here so that port 0 can be read back. */
static int listen_socket(const char *host, int port, int *bound, char *err,
                         size_t errlen) {
  struct sockaddr_storage ss;
  socklen_t sl;
  int fd, one = 1, v6 = strchr(host, ':') != NULL;

  memset(&ss, 0, sizeof(ss));
  if (v6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
      goto bad_host;
    sl = sizeof(*a);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
      host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
      goto bad_host;
    sl = sizeof(*a);
  }
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return -1;
  }
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 128) != 0) {
    snprintf(err, errlen, "listen on %s:%d: %s", host, port, strerror(errno));
    close(fd);
    return -1;
  }
  sl = sizeof(ss);
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  *bound = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                    : ((struct sockaddr_in *)&ss)->sin_port);
  return fd;
bad_host:
  snprintf(err, errlen,
           "listen.address: '%s' is not an IP address (or localhost)", host);
  return -1;
}

/* A worker said HELLO: its handlers' kinds may be new (any thread, pool
 * lock held: only a flag). */
static void on_trace(pp_pool_t *pool, const pp_trace_event_t *ev, void *data) {
  pc_http_t *h = data;

  (void)pool;
  /* Stale first: whoever sees hello_seen then reads the kinds again. */
  if (ev->type == PP_TRACE_HELLO) {
    atomic_store(&h->kinds_stale, 1);
    atomic_store(&h->hello_seen, 1);
  }
}

int pc_http_start(uv_loop_t *loop, pp_pool_t *pool, const char *host, int port,
                  pc_http_t **out, char *err, size_t errlen) {
  const pp_config_t *cfg = pp_pool_config(pool);
  const union MHD_DaemonInfo *info;
  /* TURBO: accept4, no shutdown(2) before close, fewer checks per turn. */
  unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO;
  unsigned int timeout_s;
  pc_http_t *h;
  int fd;

  *out = NULL;
  if ((h = calloc(1, sizeof(*h))) == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  h->loop = loop;
  h->pool = pool;
  h->trace_id = -1;
  atomic_init(&h->kinds_stale, 1);
  atomic_init(&h->hello_seen, 0);
  h->max_frame = cfg->max_frame;
  h->keepalive = cfg->keepalive_requests;
  timeout_s = (unsigned)((cfg->listen_timeout_ms + 999) / 1000);
  if (cfg->token_file && token_load(h, cfg->token_file, err, errlen) != 0)
    goto fail;
  if (cfg->tls_cert) {
    if (slurp(cfg->tls_cert, PEM_MAX, 0, &h->cert, NULL, err, errlen) != 0 ||
        slurp(cfg->tls_key, PEM_MAX, 1, &h->key, NULL, err, errlen) != 0)
      goto fail;
    flags |= MHD_USE_TLS;
  }
  if ((fd = listen_socket(host, port, &h->port, err, errlen)) < 0)
    goto fail;
  {
    /* HTTPS when given a key; an empty list (its END) otherwise. */
    struct MHD_OptionItem tls[] = {{MHD_OPTION_HTTPS_MEM_KEY, 0, h->key},
                                   {MHD_OPTION_HTTPS_MEM_CERT, 0, h->cert},
                                   {MHD_OPTION_END, 0, NULL}};

    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)cfg->listen_max_conns,
        MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_ARRAY,
        h->key ? tls : tls + 2, MHD_OPTION_END);
  }
  if (h->d == NULL) {
    close(fd);
    snprintf(err, errlen, "the HTTP server did not start%s",
             h->key ? " (is the TLS key or certificate bad?)" : "");
    goto fail;
  }
  info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
  if (info == NULL) {
    snprintf(err, errlen, "libmicrohttpd gave no epoll fd");
    goto fail;
  }
  uv_poll_init(loop, &h->poll, info->epoll_fd);
  uv_timer_init(loop, &h->timer);
  uv_timer_init(loop, &h->sweep);
  uv_check_init(loop, &h->check);
  uv_idle_init(loop, &h->idle);
  h->poll.data = h->timer.data = h->sweep.data = h;
  h->check.data = h->idle.data = h;
  h->open = 1;
  if (pp_pool_trace_subscribe(pool, on_trace, h, &h->trace_id) != 0)
    h->trace_id = -1; /* the kinds are then read once, at the first call */
  uv_poll_start(&h->poll, UV_READABLE, on_poll);
  uv_timer_start(&h->sweep, on_sweep, HUP_EVERY_MS, HUP_EVERY_MS);
  arm(h);
  *out = h;
  return 0;
fail:
  if (h->d)
    MHD_stop_daemon(h->d);
  free(h->token);
  free(h->cert);
  free(h->key);
  free(h);
  return -1;
}

int pc_http_port(const pc_http_t *h) { return h->port; }

void pc_http_quiesce(pc_http_t *h) {
  MHD_socket fd;

  if (h == NULL || h->d == NULL || h->closing)
    return;
  /* The pool is stopping (and drops its subscribers when it is freed,
   * before pc_http_close): no more HELLO watch. */
  if (h->trace_id >= 0) {
    pp_pool_trace_unsubscribe(h->pool, h->trace_id);
    h->trace_id = -1;
  }
  /* Refused from now on (a balancer retries a refused connection), not
   * left in the kernel's queue to be reset when the daemon stops. */
  fd = MHD_quiesce_daemon(h->d);
  if (fd != MHD_INVALID_SOCKET)
    close(fd);
}

static void on_closed(uv_handle_t *hd) {
  pc_http_t *h = hd->data;

  if (--h->open > 0)
    return;
  free(h->token);
  free(h->cert);
  free(h->key);
  free(h->kinds);
  free(h);
}

void pc_http_close(pc_http_t *h) {
  if (h == NULL || h->closing)
    return;
  h->closing = 1;
  /* Every call's callback has run (the pool closed first): the
   * connections still open are closed with the daemon. */
  MHD_stop_daemon(h->d);
  h->d = NULL;
  h->open = 5;
  uv_close((uv_handle_t *)&h->check, on_closed);
  uv_close((uv_handle_t *)&h->idle, on_closed);
  uv_close((uv_handle_t *)&h->poll, on_closed);
  uv_close((uv_handle_t *)&h->timer, on_closed);
  uv_close((uv_handle_t *)&h->sweep, on_closed);
}
