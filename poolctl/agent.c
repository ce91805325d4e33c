/* agent.c -- HAProxy's agent-check responder (listen.agent): each TCP
 * connection gets one line saying how this pool can take traffic, then is
 * closed: "up ready N%" with N the idle share of its workers (HAProxy
 * scales the server's weight by it), "up drain" while draining (no new
 * traffic, the
 * requests in flight finish), "down" when degraded or stopping.  Nothing
 * is read from the peer. */
#include "http.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pc_agent {
  uv_tcp_t server;
  pp_pool_t *pool;
  int port;
};

typedef struct {
  uv_tcp_t tcp;
  uv_write_t w;
  char line[32];
} peer_t;

static void peer_closed(uv_handle_t *h) { free(h->data); }

static void on_written(uv_write_t *w, int status) {
  peer_t *p = w->data;

  (void)status;
  uv_close((uv_handle_t *)&p->tcp, peer_closed);
}

/* The line for the pool as it is now. */
static void say(pp_pool_t *pool, char *line, size_t len) {
  pp_status_t st;
  int pct;

  if (pp_pool_status(pool, &st) != 0) {
    snprintf(line, len, "down\n");
    return;
  }
  /* "up" with each healthy word: HAProxy keeps a server an agent said
   * "down" down until one says "up". */
  if (st.draining)
    snprintf(line, len, "up drain\n");
  else if (st.state != PP_POOL_READY)
    snprintf(line, len, "down\n");
  else {
    /* At least 1%: 0% would take a ready server out entirely. */
    pct = st.size > 0 ? st.idle * 100 / st.size : 0;
    snprintf(line, len, "up ready %d%%\n", pct < 1 ? 1 : pct);
  }
  pp_status_free(&st);
}

static void on_connection(uv_stream_t *server, int status) {
  pc_agent_t *a = server->data;
  peer_t *p;
  uv_buf_t b;

  if (status < 0 || (p = calloc(1, sizeof(*p))) == NULL)
    return;
  uv_tcp_init(server->loop, &p->tcp);
  p->tcp.data = p;
  if (uv_accept(server, (uv_stream_t *)&p->tcp) != 0) {
    uv_close((uv_handle_t *)&p->tcp, peer_closed);
    return;
  }
  say(a->pool, p->line, sizeof(p->line));
  b = uv_buf_init(p->line, (unsigned)strlen(p->line));
  p->w.data = p;
  if (uv_write(&p->w, (uv_stream_t *)&p->tcp, &b, 1, on_written) != 0)
    uv_close((uv_handle_t *)&p->tcp, peer_closed);
}

int pc_agent_start(uv_loop_t *loop, pp_pool_t *pool, const char *host, int port,
                   pc_agent_t **out, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  int namelen = sizeof(ss), r;
  pc_agent_t *a;

  *out = NULL;
  if (strcmp(host, "localhost") == 0)
    host = "127.0.0.1";
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
    snprintf(err, errlen, "listen.agent: '%s' is not an IP address", host);
    return -1;
  }
  if ((a = calloc(1, sizeof(*a))) == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  a->pool = pool;
  uv_tcp_init(loop, &a->server);
  a->server.data = a;
  if ((r = uv_tcp_bind(&a->server, (struct sockaddr *)&ss, 0)) != 0 ||
      (r = uv_listen((uv_stream_t *)&a->server, 64, on_connection)) != 0) {
    snprintf(err, errlen, "listen.agent on %s:%d: %s", host, port,
             uv_strerror(r));
    uv_close((uv_handle_t *)&a->server, (uv_close_cb)free);
    return -1;
  }
  uv_tcp_getsockname(&a->server, (struct sockaddr *)&ss, &namelen);
  a->port =
      ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                     : ((struct sockaddr_in *)&ss)->sin_port);
  *out = a;
  return 0;
}

int pc_agent_port(const pc_agent_t *a) { return a->port; }

void pc_agent_close(pc_agent_t *a) {
  if (a != NULL)
    uv_close((uv_handle_t *)&a->server, (uv_close_cb)free);
}
