/* faults.h -- fault-injection points (faults.c), compiled only into the
 * test build of the library (PP_FAULTS).  The hook runs at each named point
 * so a test can pause or delay the core there and hit a race on every run:
 *   "handoff"     a worker was chosen for a waiter (pool lock held)
 *   "deliver"     ... and the waiter has not received it yet (no lock)
 *   "client_dead" a client was marked dead, before its waits and leases are
 *                 reaped (no lock)
 *   "reply"       a reply was read, before it is delivered (no lock)
 *   "reap"        a worker exited, before the pool processes it (loop
 *                 thread, no lock)
 *   "timer"       a worker's timer fired (request deadline, start-up,
 *                 kill grace), before it acts (loop thread, no lock)
 *   "deadline"    a thread waiting for its reply found the deadline
 *                 passed, before it looks at the pipe once more (no lock)
 * With the lock held ("handoff") the hook may only delay. */
#ifndef PP_FAULTS_H
#define PP_FAULTS_H

#include "portpool.h"

void pp_test_fault_hook(pp_pool_t *pool,
                        void (*cb)(pp_pool_t *pool, const char *point,
                                   void *data),
                        void *data);

#endif
