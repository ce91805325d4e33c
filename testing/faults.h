/* faults.h -- fault-injection points and test access to the core
 * (faults.c), compiled only into the test build of the library (PP_FAULTS). The
 * hook runs at each named point so a test can pause or delay the core there and
 * hit a race on every run: "handoff"     a worker was chosen for a waiter (pool
 * lock held) "deliver"     ... and the waiter has not received it yet (no lock)
 *   "client_dead" a client was marked dead, before its waits and leases are
 *                 reaped (no lock)
 *   "reply"       a reply was read, before it is delivered (no lock)
 *   "reap"        a worker exited, before the pool processes it (loop
 *                 thread, no lock)
 *   "timer"       a worker's timer fired (request deadline, start-up,
 *                 kill grace), before it acts (loop thread, no lock)
 *   "handoff_write" a thread that checked in its pp_call's worker is
 *                 about to write the request of the waiter it handed the
 *                 worker to (no lock)
 *   "deadline"    a thread waiting for its reply found the deadline
 *                 passed, before it looks at the pipe once more (no lock)
 *   "status_read" pp_pool_status copied its rows and holds their workers,
 *                 before it reads their /proc figures (no lock)
 * With the lock held ("handoff") the hook may only delay. */
#ifndef PP_FAULTS_H
#define PP_FAULTS_H

#include "portpool.h"

#include <stdint.h>

void pp_test_fault_hook(pp_pool_t *pool,
                        void (*cb)(pp_pool_t *pool, const char *point,
                                   void *data),
                        void *data);

/* What tests may see of the core, so that they need no internal header:
 *   pp_test_reply_fd        the reply pipe of slot's current worker, -1
 *                           when none (while the test holds that worker
 *                           in place: its lease's call, or a paused loop)
 *   pp_test_stderr_fd       the pool's end of that worker's stderr pipe,
 *                           -1 when closed; only from a hook that runs
 *                           with the pool lock held (a log callback)
 *   pp_test_quiesce_waiting 1 while a thread waits in pp_pool_quiesce
 *   pp_test_spin_adapt      the reply-polling window after a wait of
 *                           `waited` ns, for a window `cur` and a ceiling
 *                           `max` (pp__spin_adapt's rule, on a worker
 *                           pinned to no CPU) */
int pp_test_reply_fd(pp_pool_t *pool, int slot);
int pp_test_stderr_fd(pp_pool_t *pool, int slot);
int pp_test_quiesce_waiting(pp_pool_t *pool);
uint32_t pp_test_spin_adapt(uint32_t cur, uint32_t max, uint64_t waited);

#endif
