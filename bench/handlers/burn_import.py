"""burn_import -- a handler module whose import burns PP_BURN_IMPORT (default
1.5) seconds of CPU time, for the zygote-start benchmark (issue 7, target 7).

The import is a busy loop measured with time.process_time, so it is CPU
work, not a sleep: eight spawned workers importing it at once on two cores
take about four times as long as one; a zygote imports it once and forks.
After the import it serves echo(args) like fixtures/echo_handlers.py, and
gc_collect(args), which runs a full gc.collect() in the worker: the
benchmark measures the workers' memory before and after it (in a child of
a zygote, the first full collection touches every object the zygote
imported unless they stay frozen)."""

import gc
import os
import time

_SECONDS = float(os.environ.get("PP_BURN_IMPORT", "1.5"))


def _burn(seconds):
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        for i in range(1000):
            x += i
    return x


_burn(_SECONDS)


def echo(args):
    """Return args unchanged."""
    return args


def gc_collect(args):
    """Run a full collection; return how many objects it found unreachable."""
    return gc.collect()
