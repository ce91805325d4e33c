/* errors.c -- names and messages for error codes, states and trace events,
 * all generated from the X-macro tables in portpool.h; the one sentence a
 * PP_EHANDLER carries. */
#include "errors.h"

#include "portpool.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *pp_strerror(int err) {
  switch (err) {
#define PP__ERR_MSG(name, value, msg)                                          \
  case PP_##name:                                                              \
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
#define PP__ERR_NAME(name, value, msg)                                         \
  case PP_##name:                                                              \
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
#define PP__WS_NAME(name, str)                                                 \
  case PP_WORKER_##name:                                                       \
    return str;
    PP_WORKER_STATE_MAP(PP__WS_NAME)
#undef PP__WS_NAME
  }
  return "unknown";
}

const char *pp_trace_name(pp_trace_type_t t) {
  switch (t) {
#define PP__TR_NAME(name, str)                                                 \
  case PP_TRACE_##name:                                                        \
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
    if (signal == SIGXCPU) /* RLIMIT_CPU: worker.limits.cpu */
      snprintf(buf, len, "exceeded its CPU time limit (signal %d)", signal);
    else
      snprintf(buf, len, "signal %d", signal);
    break;
  case PP_EXIT_OOM:
    snprintf(buf, len, "out of memory (memory_max)");
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
  case PP_EXIT_STOPPED:
    snprintf(buf, len, "stopped");
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

/* Copy src into out (cap > 0 bytes), cut short at a UTF-8 character
 * boundary so that the text stays valid for JSON encoders. */
static void copy_utf8(char *out, size_t cap, const char *src) {
  size_t n = strlen(src);

  if (n >= cap) {
    n = cap - 1;
    /* Back off continuation bytes (10xxxxxx) to the start of a character,
     * and drop that start too: its character does not fit. */
    while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
      n--;
  }
  memcpy(out, src, n);
  out[n] = '\0';
}

void pp__handler_error_text(const char *payload, size_t len, char *out,
                            size_t cap) {
  json_t *v = json_loadb(payload, len, 0, NULL);
  json_t *type = json_object_get(v, "type");
  json_t *msg = json_object_get(v, "message");
  size_t n;

  if (cap == 0)
    return;
  if (!json_is_string(type)) {
    copy_utf8(out, cap,
              "handler raised an exception (its ERROR payload has "
              "no type)");
    json_decref(v);
    return;
  }
  copy_utf8(out, cap, json_string_value(type));
  n = strlen(out);
  if (json_is_string(msg) && json_string_length(msg) > 0 && n + 2 < cap) {
    memcpy(out + n, ": ", 3);
    copy_utf8(out + n + 2, cap - n - 2, json_string_value(msg));
  }
  json_decref(v);
}
