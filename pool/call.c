/* call.c -- how every call ends, whatever its kind: a lease's call on its
 * caller's thread (blocking.c) or on the loop (checkout.c), a pipelined
 * pp_call (pipeline.c), a pp_call_async (async.c).  One mapping from what
 * the reader saw to the call's status, the worker's kill reason and the
 * diag, and one place that counts it:
 *   queue_wait  per checkout (a lease granted, a one-shot call placed on
 *               its worker), from the ask to the grant;
 *   requests    requests handed to a worker; errors: those that ended with
 *               a status other than 0;
 *   run_time    per request its worker answered (a REPLY or an ERROR
 *               frame), from handing it over to reading the answer, in the
 *               pool's histogram and in its worker's alike. */
#include "internal.h"

/* msg may be NULL with cap 0 (nobody asked why): snprintf writes nothing. */

#include <jansson.h>
#include <stdio.h>
#include <string.h>

void pp__count_wait(pp_pool_t *pool, uint64_t start_ns, uint64_t now) {
  PP_ASSERT_LOCKED(pool);
  pp__histo_add(&pool->h_wait, now > start_ns ? (now - start_ns) / 1000 : 0);
}

void pp__count_request(pp_pool_t *pool, pp__proc_t *proc, uint64_t timeout_ms) {
  PP_ASSERT_LOCKED(pool);
  pool->requests++;
  if (proc)
    proc->req_timeout_ms = timeout_ms;
}

void pp__count_end(pp_pool_t *pool, pp__proc_t *proc, uint64_t sent_ns,
                   uint64_t now, int status, int answered) {
  uint64_t us;

  PP_ASSERT_LOCKED(pool);

  /* A call its caller cancelled did not fail: counted in cancels. */
  if (status != 0 && status != PP_ECANCELED)
    pool->errors++;
  if (!answered)
    return;
  us = now > sent_ns ? (now - sent_ns) / 1000 : 0;
  proc->requests++;
  proc->slot->requests_total++;
  pp__histo_add(&pool->h_run, us);
  pp__histo_add(&proc->slot->run_time, us);
}

void pp__count_stale(pp__proc_t *proc) {
  PP_ASSERT_LOCKED(proc->pool);
  proc->pool->stale_replies++;
  proc->requests++;
  proc->slot->requests_total++;
}

void pp__done_call(const pp__done_t *done, pp_lease_t *lease, int status,
                   const char *reply, size_t len, int binary,
                   const pp_diag_t *diag, int sent) {
  pp_result_t res;

  if (done->result) {
    res.status = status;
    res.reply = reply;
    res.len = len;
    res.binary = binary;
    res.diag = diag;
    res.lease = lease;
    res.sent = sent;
    done->result(&res, done->data);
  } else if (done->reply) {
    done->reply(lease, status, reply, len, diag, done->data);
  } else {
    done->call(status, reply, len, diag, done->data);
  }
}

int pp__identifier(const char *s, size_t max) {
  size_t i;

  for (i = 0; s[i] != '\0'; i++)
    if (i >= max || !(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') ||
                      (s[i] >= 'A' && s[i] <= 'Z') ||
                      (i > 0 && s[i] >= '0' && s[i] <= '9')))
      return 0;
  return i > 0;
}

int pp__call_opts_check(pp_pool_t *pool, const pp_call_opts_t *opts,
                        int one_shot, pp_diag_t *diag) {
  if (opts == NULL)
    return 0;
  /* A binary call's name goes into the frame: one that fits it. */
  if (opts->cmd && !pp__identifier(opts->cmd, PP_FRAME_CMD_MAX)) {
    pp__diag_set(diag,
                 "handler name '%.64s' is not an identifier of at most %d "
                 "characters",
                 opts->cmd, PP_FRAME_CMD_MAX);
    return UV_EINVAL;
  }
  if (opts->cancel && opts->cancel->pool != pool) {
    pp__diag_set(diag, "the cancel token belongs to another pool");
    return UV_EINVAL;
  }
  if (one_shot && opts->timeout_ms == 0) {
    pp__diag_set(diag, "timeout_ms 0 leaves the call no time (give -1 for "
                       "the config's timeouts)");
    return PP_ETIMEDOUT;
  }
  return 0;
}

int pp__call_cancels(const pp__proc_t *proc, int stream) {
  pp__death_t d = proc->pool->cfg->on_client_death;

  return d == PP_DEATH_CANCEL || (stream && d == PP_DEATH_FINISH);
}

int pp__call_expired(pp__proc_t *proc, int stream, char *msg, size_t cap) {
  PP_ASSERT_LOCKED(proc->pool);
  static const char *const left[] = {
      [PP_DEATH_FINISH] = "runs the request on and drops its reply "
                          "(on_client_death: finish)",
      [PP_DEATH_CANCEL] = "was sent CANCEL (on_client_death: cancel)",
      [PP_DEATH_KILL] = "is replaced (on_client_death: kill)"};

  snprintf(msg, cap, "the call ran past its timeout_ms; its worker %d %s",
           proc->slot->id,
           stream && proc->pool->cfg->on_client_death == PP_DEATH_FINISH
               ? "was sent CANCEL (a stream's items would go nowhere)"
               : left[proc->pool->cfg->on_client_death]);
  if (proc->pool->cfg->on_client_death != PP_DEATH_KILL)
    return 0;
  pp__proc_fail(proc, PP_EXIT_NONE,
                "a call ran past its timeout_ms (on_client_death: kill)");
  return 1;
}

/* An ERROR payload of type DeadlineExceeded (protocol 2). */
static int deadline_exceeded(const char *p, size_t len) {
  json_t *j;
  int yes;

  if (len > 4096 || memmem(p, len, "DeadlineExceeded", 16) == NULL)
    return 0;
  j = json_loadb(p, len, 0, NULL);
  yes = j && json_is_string(json_object_get(j, "type")) &&
        strcmp(json_string_value(json_object_get(j, "type")),
               "DeadlineExceeded") == 0;
  json_decref(j);
  return yes;
}

int pp__call_reply(const pp_frame_t *f, uint32_t id,
                   int (*store)(void *to, const char *p, size_t len,
                                int binary),
                   void *to, char *msg, size_t cap) {
  if ((f->type != PP_FRAME_REPLY && f->type != PP_FRAME_ERROR) || f->id != id)
    return PP_EPROTO;
  if (f->type == PP_FRAME_REPLY && (f->flags & PP_FRAME_FLAG_STREAM)) {
    /* Chunks go to on_chunk first (pp__chunk_of): never the answer. */
    if (msg)
      snprintf(msg, cap, "a stream chunk for a call that takes no stream");
    return PP_EPROTO;
  }
  if (store(to, f->payload, f->len,
            f->type == PP_FRAME_REPLY &&
                (f->flags & PP_FRAME_FLAG_BINARY) != 0) != 0) {
    snprintf(msg, cap, "out of memory for the reply");
    return UV_ENOMEM;
  }
  if (f->type == PP_FRAME_REPLY)
    return 0;
  if (msg)
    pp__handler_error_text(f->payload, f->len, msg, cap);
  /* The worker got it past its deadline and did not run it: a timeout,
   * as the caller's own deadline would have said. */
  if (deadline_exceeded(f->payload, f->len))
    return PP_ETIMEDOUT;
  return PP_EHANDLER;
}

int pp__chunk_of(const pp_frame_t *f, uint32_t id) {
  return f->type == PP_FRAME_REPLY && (f->flags & PP_FRAME_FLAG_STREAM) &&
         f->id == id;
}

int pp__call_cut(const pp__proc_t *proc, pp_exit_kind_t reason, int first,
                 char *msg, size_t cap) {
  const char *detail = proc->detail[0] ? proc->detail : "worker died";

  PP_ASSERT_LOCKED(proc->pool);

  switch (reason) {
  case PP_EXIT_TIMEOUT:
    if (!first) {
      snprintf(msg, cap, "worker replaced: a request ahead timed out");
      return PP_ECRASHED;
    }
    snprintf(msg, cap, "request timed out after %llums; worker %d replaced",
             (unsigned long long)proc->req_timeout_ms, proc->slot->id);
    return PP_ETIMEDOUT;
  case PP_EXIT_PROTOCOL:
    snprintf(msg, cap, "worker %d: %s", proc->slot->id, detail);
    return PP_EPROTO;
  default:
    /* Any call the pool's close cuts is PP_ECLOSED: stopped by it (past
     * drain_timeout), or a worker that died on its own meanwhile. */
    if (proc->pool->stopping) {
      if (proc->stopping || !proc->exited)
        snprintf(msg, cap,
                 "pool is closing: the request ran past "
                 "drain_timeout");
      else
        snprintf(msg, cap, "pool is closing; %s", detail);
      return PP_ECLOSED;
    }
    snprintf(msg, cap, "%s", detail);
    return PP_ECRASHED;
  }
}

int pp__call_fail(pp__proc_t *proc, int r, char *msg, size_t cap) {
  PP_ASSERT_LOCKED(proc->pool);
  switch (r) {
  case PP_ETIMEDOUT:
    pp__proc_fail(proc, PP_EXIT_TIMEOUT, "request timed out");
    break;
  case PP_EPROTO:
    pp__proc_fail(proc, PP_EXIT_PROTOCOL,
                  "reply is not a valid frame for this request");
    break;
  case UV_ENOMEM:
    /* Our memory, not the worker's fault; but the reply stream is lost. */
    pp__proc_fail(proc, PP_EXIT_NONE, "out of memory reading the reply");
    snprintf(msg, cap, "out of memory for the reply");
    return UV_ENOMEM;
  default:
    /* EOF or the process reaped: an exit names how it died; a pipe closed
     * by a worker that lives on is a protocol error. */
    if (!proc->exited)
      pp__proc_fail(proc, PP_EXIT_PROTOCOL, "worker closed its reply pipe");
    break;
  }
  return pp__call_cut(proc, proc->kill_reason, 1, msg, cap);
}
