/* malloc_count.c -- libmalloc_count.so, an LD_PRELOAD counter for the
 * profile: calls to malloc/calloc/realloc/aligned allocation, free,
 * pthread_mutex_lock/trylock, pthread_cond_signal/broadcast and
 * pthread_cond_wait/timedwait, process-wide.  ppbench finds
 * malloc_count_get() with dlsym and reports each per call.
 *
 *   LD_PRELOAD=build-bench/bench/libmalloc_count.so build-bench/bench/ppbench
 * latency
 *
 * The counting (one relaxed atomic add per event) inflates timings a
 * little: use it for counts, not for the comparison. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

enum { MC_ALLOC, MC_FREE, MC_LOCK, MC_COND_SIGNAL, MC_COND_WAIT, MC_N };
static uint64_t counts[MC_N];

#define COUNT(i) __atomic_fetch_add(&counts[i], 1, __ATOMIC_RELAXED)

void malloc_count_get(uint64_t out[MC_N]) {
  for (int i = 0; i < MC_N; i++)
    out[i] = __atomic_load_n(&counts[i], __ATOMIC_RELAXED);
}

/* glibc's own entry points: no dlsym bootstrap problem. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

void *malloc(size_t n) {
  COUNT(MC_ALLOC);
  return __libc_malloc(n);
}
void *calloc(size_t n, size_t m) {
  COUNT(MC_ALLOC);
  return __libc_calloc(n, m);
}
void *realloc(void *p, size_t n) {
  COUNT(MC_ALLOC);
  return __libc_realloc(p, n);
}
void free(void *p) {
  if (p)
    COUNT(MC_FREE);
  __libc_free(p);
}
int posix_memalign(void **out, size_t align, size_t n) {
  COUNT(MC_ALLOC);
  *out = __libc_memalign(align, n);
  return *out ? 0 : 12;
}

#define NEXT(ret, name, params)                                                \
  static ret(*real_##name) params;                                             \
  if (real_##name == NULL)                                                     \
  real_##name = (ret(*) params)dlsym(RTLD_NEXT, #name)

int pthread_mutex_lock(pthread_mutex_t *m) {
  NEXT(int, pthread_mutex_lock, (pthread_mutex_t *));
  COUNT(MC_LOCK);
  return real_pthread_mutex_lock(m);
}
int pthread_mutex_trylock(pthread_mutex_t *m) {
  NEXT(int, pthread_mutex_trylock, (pthread_mutex_t *));
  COUNT(MC_LOCK);
  return real_pthread_mutex_trylock(m);
}
int pthread_cond_signal(pthread_cond_t *c) {
  NEXT(int, pthread_cond_signal, (pthread_cond_t *));
  COUNT(MC_COND_SIGNAL);
  return real_pthread_cond_signal(c);
}
int pthread_cond_broadcast(pthread_cond_t *c) {
  NEXT(int, pthread_cond_broadcast, (pthread_cond_t *));
  COUNT(MC_COND_SIGNAL);
  return real_pthread_cond_broadcast(c);
}
int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m) {
  NEXT(int, pthread_cond_wait, (pthread_cond_t *, pthread_mutex_t *));
  COUNT(MC_COND_WAIT);
  return real_pthread_cond_wait(c, m);
}
int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                           const struct timespec *t) {
  NEXT(int, pthread_cond_timedwait,
       (pthread_cond_t *, pthread_mutex_t *, const struct timespec *));
  COUNT(MC_COND_WAIT);
  return real_pthread_cond_timedwait(c, m, t);
}
