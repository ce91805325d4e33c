r"""Many requests at once in one worker (worker.concurrency).

With, in the pool's config,

    worker.concurrency: 8

each worker runs up to 8 requests at the same time and answers each as
it finishes, out of order (the pool matches replies by request id and
sends a worker up to max(concurrency, pipeline_depth) calls).  Async
handlers run as tasks on the worker's asyncio loop, so a worker waiting
on the network serves others meanwhile; plain handlers run in a thread
pool of that size, so they must be thread-safe: guard shared state with
a lock, as `lookup` does.  deadline(), remaining() and cancelled() answer
for the request the calling task or thread serves.

    poolctl call fetch '"a"'       -> "A"
    poolctl call lookup '"b"'      -> {"key": "b", "hits": 1}
    poolctl call lookup '"b"'      -> {"key": "b", "hits": 2}
"""
import asyncio
import threading

_hits = {}
_lock = threading.Lock()


async def fetch(name):
    """Awaits (a network call, say): other requests run meanwhile."""
    await asyncio.sleep(0.01)
    return name.upper()


def lookup(key):
    """A plain handler: one of up to 8 threads may run it at once."""
    with _lock:
        _hits[key] = _hits.get(key, 0) + 1
        return {"key": key, "hits": _hits[key]}
