"""Per-worker state and the lifecycle hooks.

setup() runs once in every worker, after the import and before it says
HELLO: open connections, load models.  If it raises, the worker cannot boot
and the pool's start fails at once with PP_EBOOT and the exception.
after_fork() runs first in a worker the zygote forked (worker.start:
zygote): re-open what must not be shared across fork.  teardown() runs on a
graceful stop (the pool closing, scaling down, recycling), bounded by
worker.kill_grace.

    poolctl call hits null                -> 1
    poolctl call hits null                -> 2
    poolctl call who null                 -> {"worker": 0}
"""
import os
import random

import portpool_worker

state = {}


def after_fork():
    # A forked worker inherits the zygote's random state: re-seed it.
    random.seed()


def setup():
    state["hits"] = 0
    state["log"] = open(os.devnull, "w")  # stands for a connection


def teardown():
    state["log"].close()


def hits(args):
    """State lives as long as this worker process: it starts again when
    the worker is replaced (max_requests, a crash, a restart)."""
    state["hits"] += 1
    return state["hits"]


def who(args):
    return {"worker": portpool_worker.worker_id()}
