"""burst.py -- the elastic scenario's handler (bench/scen_elastic.c).

`work(ms)` sleeps ms milliseconds, as a handler waiting on a database or a
service does, and returns time.monotonic_ns() taken as it started: the
caller's clock (CLOCK_MONOTONIC) minus its own start is the call's queue
wait, to the microsecond."""
import time


def work(ms):
    start = time.monotonic_ns()
    time.sleep(ms / 1000.0)
    return start
