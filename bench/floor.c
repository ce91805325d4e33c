/* floor.c -- the floor driver: spawns the pool's own Python worker module
 * over two pipes and does blocking round trips with bridge/frame.h framing,
 * one at a time or `depth` in flight.  Also the sample arrays the bench
 * shares. */
#include "floor.h"

#include "frame.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_FRAME (64u << 20)

uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- samples */

void samples_add(samples_t *s, uint64_t ns) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 4096;
    uint64_t *v = realloc(s->v, cap * sizeof(*v));
    if (v == NULL)
      return; /* drop the sample rather than die mid-run */
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = ns;
}

void samples_merge(samples_t *into, const samples_t *from) {
  for (size_t i = 0; i < from->n; i++)
    samples_add(into, from->v[i]);
}

void samples_free(samples_t *s) {
  free(s->v);
  s->v = NULL;
  s->n = s->cap = 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

uint64_t samples_quantile(samples_t *s, double q) {
  size_t k;

  if (s->n == 0)
    return 0;
  qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
  /* nearest rank */
  k = (size_t)(q * (double)s->n + 0.999999);
  if (k == 0)
    k = 1;
  if (k > s->n)
    k = s->n;
  return s->v[k - 1];
}

/* ---- worker process */

/* Move fd above 4 so dup2 onto 3/4 in the child always clears CLOEXEC. */
static int high_fd(int fd) {
  int h = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return h;
}

static int rbuf_reserve(floor_worker_t *w, size_t need) {
  size_t cap;
  char *p;

  if (w->rcap - w->rlen >= need)
    return 0;
  cap = w->rcap ? w->rcap : 65536;
  while (cap - w->rlen < need)
    cap *= 2;
  p = realloc(w->rbuf, cap);
  if (p == NULL)
    return -1;
  w->rbuf = p;
  w->rcap = cap;
  return 0;
}

int floor_set_flags(floor_worker_t *w, int flags) {
  int fl = fcntl(w->rep_fd, F_GETFL);

  if (fl < 0)
    return -1;
  flags = (flags & ~FLOOR_SOCKET) | (w->flags & FLOOR_SOCKET);
  if (flags & FLOOR_SOCKET)
    flags &= ~(FLOOR_POLL | FLOOR_POLLFIRST | FLOOR_SIGMASK);
  fl = flags & FLOOR_POLL ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
  if (fcntl(w->rep_fd, F_SETFL, fl) != 0)
    return -1;
  if ((flags & (FLOOR_POLL | FLOOR_POLLFIRST)) && w->wake_fd < 0 &&
      (w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
    return -1;
  w->flags = flags;
  return 0;
}

/* Read until a whole frame is in rbuf; returns its size or -1. */
static long read_frame(floor_worker_t *w, pp_frame_t *f, int timeout_ms) {
  long used;
  ssize_t n;

  for (;;) {
    if (w->rlen > 0) {
      used = pp_frame_decode(w->rbuf, w->rlen, MAX_FRAME, f);
      if (used > 0)
        return used;
      if (used < 0) {
        fprintf(stderr, "floor: bad frame from worker %d\n", (int)w->pid);
        return -1;
      }
      long need = pp_frame_need(w->rbuf, w->rlen, MAX_FRAME);
      if (need > 0 && (size_t)need > w->rlen &&
          rbuf_reserve(w, (size_t)need - w->rlen) != 0)
        return -1;
    }
    if (rbuf_reserve(w, 4096) != 0)
      return -1;
    if (w->flags & FLOOR_POLLFIRST) {
      struct pollfd p[2] = {{.fd = w->rep_fd, .events = POLLIN},
                            {.fd = w->wake_fd, .events = POLLIN}};
      int r = 0;
      if (w->flags & FLOOR_SPIN) {
        uint64_t end = bench_now_ns() + 50000;
        while ((r = poll(p, 2, 0)) == 0 && bench_now_ns() < end)
          ;
      }
      if (r <= 0)
        poll(p, 2, timeout_ms);
    } else if (timeout_ms >= 0) {
      struct pollfd p = {.fd = w->rep_fd, .events = POLLIN};
      int r = poll(&p, 1, timeout_ms);
      if (r == 0) {
        fprintf(stderr, "floor: worker %d: no frame within %d ms\n",
                (int)w->pid, timeout_ms);
        return -1;
      }
    }
    n = read(w->rep_fd, w->rbuf + w->rlen, w->rcap - w->rlen);
    if (n > 0) {
      w->rlen += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd p[2] = {{.fd = w->rep_fd, .events = POLLIN},
                            {.fd = w->wake_fd, .events = POLLIN}};
      poll(p, 2, timeout_ms);
      continue;
    }
    fprintf(stderr, "floor: worker %d closed its reply pipe\n", (int)w->pid);
    return -1;
  }
}

static void consume(floor_worker_t *w, long used) {
  w->rlen -= (size_t)used;
  if (w->rlen > 0)
    memmove(w->rbuf, w->rbuf + used, w->rlen);
}

static int spawn(floor_worker_t *w, const char *python, const char *worker_py,
                 int raw, const char *handler, char *const *extra_env,
                 double timeout_s, int sock);

int floor_spawn(floor_worker_t *w, const char *python, const char *worker_py,
                int raw, const char *handler, char *const *extra_env,
                double timeout_s) {
  return spawn(w, python, worker_py, raw, handler, extra_env, timeout_s, 0);
}

int floor_spawn_socket(floor_worker_t *w, const char *python,
                       const char *worker_py, int raw, const char *handler,
                       char *const *extra_env, double timeout_s) {
  return spawn(w, python, worker_py, raw, handler, extra_env, timeout_s, 1);
}

static int spawn(floor_worker_t *w, const char *python, const char *worker_py,
                 int raw, const char *handler, char *const *extra_env,
                 double timeout_s, int sock) {
  posix_spawn_file_actions_t fa;
  int req[2], rep[2], r;
  size_t n = 0, k = 0, i;
  char **env;
  char parent[64];
  char *argv[6];
  uint64_t t0;
  pp_frame_t f;
  long used;

  memset(w, 0, sizeof(*w));
  w->req_fd = w->rep_fd = w->wake_fd = -1;
  if (sock) {
    /* One full-duplex channel: the worker's end is both its fd 3 and 4. */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      perror("floor: socketpair");
      return -1;
    }
    req[0] = high_fd(sv[1]);
    rep[1] = fcntl(req[0], F_DUPFD_CLOEXEC, 10);
    req[1] = high_fd(sv[0]);
    rep[0] = fcntl(req[1], F_DUPFD_CLOEXEC, 10);
  } else {
    if (pipe2(req, O_CLOEXEC) != 0 || pipe2(rep, O_CLOEXEC) != 0) {
      perror("floor: pipe2");
      return -1;
    }
    req[0] = high_fd(req[0]);
    req[1] = high_fd(req[1]);
    rep[0] = high_fd(rep[0]);
    rep[1] = high_fd(rep[1]);
  }

  while (environ[n])
    n++;
  for (i = 0; extra_env && extra_env[i]; i++)
    n++;
  env = calloc(n + 2, sizeof(*env));
  if (env == NULL)
    return -1;
  for (i = 0; environ[i]; i++)
    if (strncmp(environ[i], "PORTPOOL_", 9) != 0)
      env[k++] = environ[i];
  for (i = 0; extra_env && extra_env[i]; i++)
    env[k++] = extra_env[i];
  snprintf(parent, sizeof(parent), "PORTPOOL_PARENT_PID=%d", (int)getpid());
  env[k++] = parent;

  k = 0;
  argv[k++] = (char *)python;
  argv[k++] = (char *)worker_py;
  if (raw)
    argv[k++] = "--raw";
  argv[k++] = (char *)handler;
  argv[k] = NULL;

  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, req[0], 3);
  posix_spawn_file_actions_adddup2(&fa, rep[1], 4);
  t0 = bench_now_ns();
  r = posix_spawn(&w->pid, python, &fa, NULL, argv, env);
  posix_spawn_file_actions_destroy(&fa);
  free(env);
  close(req[0]);
  close(rep[1]);
  if (r != 0) {
    fprintf(stderr, "floor: spawn %s: %s\n", python, strerror(r));
    close(req[1]);
    close(rep[0]);
    return -1;
  }
  w->req_fd = req[1];
  w->rep_fd = rep[0];
  w->flags = sock ? FLOOR_SOCKET : 0;

  used = read_frame(w, &f, (int)(timeout_s * 1000));
  if (used <= 0 || f.type != PP_FRAME_HELLO) {
    fprintf(stderr, "floor: worker %d did not say HELLO\n", (int)w->pid);
    floor_close(w);
    return -1;
  }
  consume(w, used);
  w->ready_s = (double)(bench_now_ns() - t0) / 1e9;
  return 0;
}

void floor_close(floor_worker_t *w) {
  int status;

  if (w->req_fd >= 0)
    close(w->req_fd);
  if (w->rep_fd >= 0)
    close(w->rep_fd);
  if (w->wake_fd >= 0)
    close(w->wake_fd);
  w->req_fd = w->rep_fd = w->wake_fd = -1;
  if (w->pid > 0) {
    while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR)
      ;
    w->pid = 0;
  }
  free(w->rbuf);
  free(w->wbuf);
  w->rbuf = w->wbuf = NULL;
  w->rlen = w->rcap = w->wcap = 0;
}

static ssize_t writev_masked(int fd, struct iovec *iov, int n) {
  sigset_t set, old;
  ssize_t r;
  int e;

  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  r = writev(fd, iov, n);
  e = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = e;
  return r;
}

static int write_all(floor_worker_t *w, int fd, struct iovec *iov, int n) {
  ssize_t r;

  while (n > 0) {
    if (w->flags & FLOOR_SOCKET) {
      struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
      r = sendmsg(fd, &mh, MSG_NOSIGNAL);
    } else {
      r = w->flags & FLOOR_SIGMASK ? writev_masked(fd, iov, n)
                                   : writev(fd, iov, n);
    }
    if (r < 0) {
      if (errno == EINTR)
        continue;
      perror("floor: write");
      return -1;
    }
    while (n > 0 && (size_t)r >= iov->iov_len) {
      r -= (ssize_t)iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *)iov->iov_base + r;
      iov->iov_len -= (size_t)r;
    }
  }
  return 0;
}

int floor_call(floor_worker_t *w, const void *payload, size_t len,
               const char **reply, size_t *reply_len) {
  char hdr[PP_FRAME_HEADER];
  struct iovec iov[2];
  pp_frame_t f;
  uint32_t id = ++w->next_id;
  long used;

  /* The previous reply was left in rbuf for the caller: drop it now. */
  w->rlen = 0;
  pp_frame_header(hdr, PP_FRAME_REQUEST, 0, id, (uint32_t)len);
  iov[0].iov_base = hdr;
  iov[0].iov_len = sizeof(hdr);
  iov[1].iov_base = (void *)payload;
  iov[1].iov_len = len;
  if (write_all(w, w->req_fd, iov, len ? 2 : 1) != 0)
    return -1;
  used = read_frame(w, &f, -1);
  if (used <= 0)
    return -1;
  if (f.id != id || (size_t)used != w->rlen) {
    fprintf(stderr, "floor: unexpected reply (id %u, want %u)\n", f.id, id);
    return -1;
  }
  *reply = f.payload;
  *reply_len = f.len;
  return f.type;
}

int floor_pipeline(floor_worker_t *w, const void *payload, size_t len,
                   int depth, volatile int *stop, volatile uint64_t *stop_ns,
                   uint64_t *calls, samples_t *lat) {
  size_t frame = PP_FRAME_HEADER + len;
  uint64_t *sent_at;
  uint64_t now;
  struct iovec iov;
  pp_frame_t f;
  long used;
  int inflight = 0, k, i, head = 0, tail = 0;

  if (depth < 1)
    depth = 1;
  if ((size_t)depth * frame > 65536) {
    int d = (int)(65536 / frame);
    depth = d < 1 ? 1 : d;
  }
  if (w->wcap < (size_t)depth * frame) {
    free(w->wbuf);
    w->wbuf = malloc((size_t)depth * frame);
    if (w->wbuf == NULL)
      return -1;
    w->wcap = (size_t)depth * frame;
    for (i = 0; i < depth; i++) {
      pp_frame_header(w->wbuf + (size_t)i * frame, PP_FRAME_REQUEST, 0, 0,
                      (uint32_t)len);
      memcpy(w->wbuf + (size_t)i * frame + PP_FRAME_HEADER, payload, len);
    }
  }
  sent_at = calloc((size_t)depth, sizeof(*sent_at));
  if (sent_at == NULL)
    return -1;
  w->rlen = 0;
  k = depth; /* requests to send now */
  for (;;) {
    if (k > 0 && !*stop) {
      now = bench_now_ns();
      for (i = 0; i < k; i++) {
        char *p = w->wbuf + (size_t)i * frame;
        uint32_t id = ++w->next_id;
        p[8] = (char)(id >> 24);
        p[9] = (char)(id >> 16);
        p[10] = (char)(id >> 8);
        p[11] = (char)id;
        sent_at[head] = now;
        head = (head + 1) % depth;
      }
      iov.iov_base = w->wbuf;
      iov.iov_len = (size_t)k * frame;
      if (write_all(w, w->req_fd, &iov, 1) != 0)
        goto fail;
      inflight += k;
    }
    if (inflight == 0)
      break;
    /* Wait for at least one reply, then take every complete one. */
    used = read_frame(w, &f, -1);
    if (used <= 0)
      goto fail;
    k = 0;
    now = bench_now_ns();
    do {
      if (f.type != PP_FRAME_REPLY || f.len != len)
        goto fail;
      if (!*stop || now <= *stop_ns) {
        (*calls)++;
        if (lat)
          samples_add(lat, now - sent_at[tail]);
      }
      tail = (tail + 1) % depth;
      consume(w, used);
      k++;
      inflight--;
      used = w->rlen ? pp_frame_decode(w->rbuf, w->rlen, MAX_FRAME, &f) : 0;
    } while (used > 0);
    if (used < 0)
      goto fail;
    if (*stop)
      k = 0; /* drain what is in flight, send nothing new */
  }
  free(sent_at);
  return 0;
fail:
  fprintf(stderr, "floor: pipelined run failed on worker %d\n", (int)w->pid);
  free(sent_at);
  return -1;
}
