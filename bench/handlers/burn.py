"""burn -- a --raw handler module for the CPU-bound benchmark: handle()
runs a fixed loop of BENCH_BURN_LOOPS iterations (about BENCH_BURN_MS, default
1, milliseconds of CPU), then echoes the payload.  The work is a loop count,
not a clock, so two workers sharing one core take twice as long: what the
benchmark must see if the pool serialised them.  ppbench runs
`python burn.py --calibrate` once and gives every worker the same count;
without BENCH_BURN_LOOPS the module calibrates itself at import against CPU
time (time.process_time)."""

import os
import sys
import time

_MS = float(os.environ.get("BENCH_BURN_MS", "1"))


def _spin(n):
    x = 0
    for i in range(n):
        x += i
    return x


def _calibrate():
    n = 20000
    while True:
        t0 = time.process_time()
        _spin(n)
        dt = time.process_time() - t0
        if dt >= 0.02:
            return max(1, int(n * (_MS / 1000.0) / dt))
        n *= 2


_LOOPS = int(os.environ.get("BENCH_BURN_LOOPS", "0")) or _calibrate()


def handle(payload):
    """Burn ~BENCH_BURN_MS ms of CPU and return payload."""
    _spin(_LOOPS)
    return payload


if __name__ == "__main__" and sys.argv[1:] == ["--calibrate"]:
    # The median of five calibrations, for BENCH_BURN_LOOPS.
    print(sorted([_LOOPS] + [_calibrate() for _ in range(4)])[2])
