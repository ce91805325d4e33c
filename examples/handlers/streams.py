r"""Streamed results: generator handlers.

A generator (or async generator) handler streams: each item it yields goes
to the caller as soon as it is produced, and its return value comes last
(an async generator's is null).  Items are JSON values or bytes, as
results are.  The caller takes the stream: `poolctl call` prints the items
a line each; in C, a call given `opts.on_chunk` (pp_call_opts_t) gets each
item in that callback, on the calling thread (pp_call_with,
pp_lease_call_with) or on the loop (pp_call_async_with, pp_request_with).
A call without on_chunk gets a TypeError: return a list instead, or ask
for a stream.

A slow caller holds the handler at its next yield once the pipe is full;
nothing piles up in memory.  A caller that stops the stream (on_chunk
returns non-zero), cancels it, runs out of time or hangs up closes the
generator: the handler sees GeneratorExit at its yield, and its finally
blocks run.

    poolctl call countdown 3     -> 3 | 2 | 1 | "liftoff"
    poolctl call lines '"a\nb"'  -> "a" | "b" | 2
    poolctl call frames 2        -> b"\x00" | b"\x01" | null
    poolctl call ticker 2        -> "tick 0" | "tick 1" | null
"""
import asyncio


def countdown(n):
    """Yields n .. 1, then returns "liftoff" (the call's reply)."""
    for i in range(n, 0, -1):
        yield i
    return "liftoff"


def lines(text):
    """One item per line of text; returns how many were sent."""
    sent = 0
    try:
        for line in text.splitlines():
            yield line
            sent += 1
    finally:
        # Runs however the stream ends: at its end, or at the yield where
        # the caller stopped, cancelled or left.
        pass
    return sent


def frames(n):
    """Bytes items go as bytes."""
    for i in range(n):
        yield bytes([i])


async def ticker(n):
    """An async generator awaits between items; a CANCEL interrupts its
    await with CancelledError."""
    for i in range(n):
        await asyncio.sleep(0)
        yield "tick %d" % i
