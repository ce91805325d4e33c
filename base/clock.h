/* clock.h -- the monotonic clock and deadline arithmetic: a deadline is
 * an absolute pp__now_ns() value, 0 or UINT64_MAX meaning none. */
#ifndef PP_CLOCK_H
#define PP_CLOCK_H

#include <limits.h>
#include <stdint.h>

/* Nanoseconds on CLOCK_MONOTONIC. */
uint64_t pp__now_ns(void);
/* now_ns plus ms milliseconds, saturating at UINT64_MAX (no deadline in
 * practice) where the sum would wrap: a huge timeout never turns into an
 * immediate one. */
static inline uint64_t pp__deadline_after(uint64_t now_ns, uint64_t ms) {
  if (ms > (UINT64_MAX - now_ns) / 1000000u)
    return UINT64_MAX;
  return now_ns + ms * 1000000u;
}
/* Nanoseconds from now_ns to deadline_ns for uv_cond_timedwait, at most a
 * day (libuv adds the clock to it, which must not wrap); callers loop and
 * check the deadline. */
static inline uint64_t pp__wait_ns(uint64_t deadline_ns, uint64_t now_ns) {
  uint64_t left = deadline_ns - now_ns, day = 86400ull * 1000000000u;
  return left > day ? day : left;
}
/* Milliseconds from now_ns to deadline_ns, rounded up, for poll(): at
 * most INT_MAX. */
static inline int pp__poll_ms(uint64_t deadline_ns, uint64_t now_ns) {
  uint64_t ms = (deadline_ns - now_ns) / 1000000u + 1;
  return ms > INT_MAX ? INT_MAX : (int)ms;
}

#endif
