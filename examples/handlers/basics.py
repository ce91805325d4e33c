"""Plain handlers: a JSON value in, a JSON value out.

    poolctl call upper '"hello"'          -> "HELLO"
    poolctl call stats '[3, 1, 2]'        -> {"n": 3, "min": 1, "max": 3, "mean": 2.0}
    poolctl call stats '[]'               -> PP_EHANDLER ValueError
"""


def upper(text):
    """args is whatever JSON the caller sent: here a string."""
    return text.upper()


def stats(numbers):
    """Raise to fail the call: the caller gets PP_EHANDLER and
    "ValueError: ...", and this worker goes on serving."""
    if not numbers:
        raise ValueError("stats of an empty list")
    # print() is safe: it goes to the pool's log, prefixed with the worker.
    print("stats of %d numbers" % len(numbers))
    return {
        "n": len(numbers),
        "min": min(numbers),
        "max": max(numbers),
        "mean": sum(numbers) / len(numbers),
    }


def _helper():
    """Starts with "_": never callable by a client."""
