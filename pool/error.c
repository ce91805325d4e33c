/* error.c -- names and messages for error codes, states and trace events,
 * all generated from the X-macro tables in portpool.h. */
#include "portpool.h"

#include <stdio.h>
#include <stdlib.h>

const char *pp_strerror(int err) {
  switch (err) {
#define PP__ERR_MSG(name, value, msg)                                         \
  case PP_##name:                                                             \
    return msg;
    PP_ERRNO_MAP(PP__ERR_MSG)
#undef PP__ERR_MSG
  case 0:
    return "success";
  default:
    return uv_strerror(err);
  }
}

const char *pp_err_name(int err) {
  switch (err) {
#define PP__ERR_NAME(name, value, msg)                                        \
  case PP_##name:                                                             \
    return "PP_" #name;
    PP_ERRNO_MAP(PP__ERR_NAME)
#undef PP__ERR_NAME
  case 0:
    return "OK";
  default:
    return uv_err_name(err);
  }
}

const char *pp_worker_state_name(pp_worker_state_t s) {
  switch (s) {
#define PP__WS_NAME(name, str)                                                \
  case PP_WORKER_##name:                                                      \
    return str;
    PP_WORKER_STATE_MAP(PP__WS_NAME)
#undef PP__WS_NAME
  }
  return "unknown";
}

const char *pp_trace_name(pp_trace_type_t t) {
  switch (t) {
#define PP__TR_NAME(name, str)                                                \
  case PP_TRACE_##name:                                                       \
    return str;
    PP_TRACE_MAP(PP__TR_NAME)
#undef PP__TR_NAME
  }
  return "unknown";
}

const char *pp_pool_state_name(pp_pool_state_t s) {
  switch (s) {
  case PP_POOL_STARTING:
    return "warming";
  case PP_POOL_READY:
    return "ready";
  case PP_POOL_DEGRADED:
    return "degraded";
  case PP_POOL_CLOSING:
    return "closing";
  case PP_POOL_CLOSED:
    return "closed";
  }
  return "unknown";
}

void pp_exit_describe(pp_exit_kind_t kind, int code, int signal, char *buf,
                      size_t len) {
  switch (kind) {
  case PP_EXIT_NONE:
    snprintf(buf, len, "-");
    break;
  case PP_EXIT_NORMAL:
    snprintf(buf, len, "exit %d", code);
    break;
  case PP_EXIT_SIGNAL:
    snprintf(buf, len, "signal %d", signal);
    break;
  case PP_EXIT_OOM:
    snprintf(buf, len, "out of memory");
    break;
  case PP_EXIT_NO_HELLO:
    if (signal)
      snprintf(buf, len, "died before HELLO (signal %d)", signal);
    else
      snprintf(buf, len, "died before HELLO (exit %d)", code);
    break;
  case PP_EXIT_TIMEOUT:
    snprintf(buf, len, "killed for timeout");
    break;
  case PP_EXIT_PROTOCOL:
    snprintf(buf, len, "protocol error");
    break;
  }
}

void pp_buf_free(pp_buf_t *buf) {
  if (buf == NULL)
    return;
  free(buf->data);
  buf->data = NULL;
  buf->len = buf->cap = 0;
}
