"""async def handlers run on the worker's asyncio loop.  A cancel (pp_cancel,
or a client that went away with on_client_death: cancel) raises
asyncio.CancelledError at the await the handler is in.

    poolctl call fetch_both '{"a": 0.01, "b": 0.02}'   -> ["a", "b"]
"""
import asyncio


async def _fetch(name, delay):
    await asyncio.sleep(delay)
    return name


async def fetch_both(args):
    """Two awaits at once inside one request."""
    return list(
        await asyncio.gather(_fetch("a", args["a"]), _fetch("b", args["b"]))
    )


async def slow(seconds):
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        print("slow: cancelled; cleaning up")
        raise  # let it end the request
    return "done"
