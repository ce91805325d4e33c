"""Cooperating with the caller's deadline and cancel.

remaining() is the seconds left before the pool gives up on this request
(the caller's timeout_ms, or worker.request_timeout), None when there is
none; cancelled() turns true once the caller cancelled.  A handler that
sees it cannot finish may raise DeadlineExceeded: the caller gets
PP_ETIMEDOUT.

    poolctl call budget null --timeout 5s     -> 5
    poolctl call crunch 3                     -> "crunched 3 chunks"
"""
import time

import portpool_worker


class DeadlineExceeded(Exception):
    pass


def budget(args):
    """Whole seconds left (None: no deadline)."""
    left = portpool_worker.remaining()
    return None if left is None else round(left)


def crunch(chunks):
    for i in range(int(chunks)):
        if portpool_worker.cancelled():
            return None  # nobody waits for it any more
        left = portpool_worker.remaining()
        if left is not None and left < 0.05:
            raise DeadlineExceeded("%d of %d chunks done" % (i, chunks))
        time.sleep(0.01)  # one chunk of work
    return "crunched %d chunks" % chunks
