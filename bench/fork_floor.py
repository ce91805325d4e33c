"""fork_floor.py -- the fork floor for a zygote pool's time to ready.

Usage: python3 fork_floor.py ROOT HANDLER N

What any Python zygote pays for N workers on this machine, with no pool:
this interpreter imports the worker module and HANDLER as the zygote does,
freezes the collector, then forks N children; each child writes one byte to
a pipe and exits at once.  Prints the seconds from the first fork until the
last byte arrived (every child ran), as the pool's ready time counts from
pp_pool_open until the last HELLO.  bench/scen_scale.c reports it beside
the pool's ready time, as its baseline.
"""

import gc
import os
import sys
import time


def main():
    root, handler, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.path.insert(0, os.path.join(root, "bridge", "python"))
    import portpool_worker as pw

    pw._load_handler(handler)
    r, w = os.pipe()
    gc.freeze()
    t0 = time.monotonic()
    for _ in range(n):
        if os.fork() == 0:
            os.write(w, b"x")
            os._exit(0)
    os.close(w)
    got = 0
    while got < n:
        b = os.read(r, 4096)
        if not b:
            break
        got += len(b)
    t1 = time.monotonic()
    for _ in range(n):
        os.wait()
    if got != n:
        sys.stderr.write("fork_floor: %d of %d children wrote\n" % (got, n))
        return 1
    print("%.6f" % (t1 - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
