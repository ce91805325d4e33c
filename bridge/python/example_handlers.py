"""example_handlers -- the handlers `poolctl serve` runs when given no config.

Each public function defined here is a handler: it takes the request's
"args" value and returns something JSON can hold.  Names imported from
other modules (os, sys, time) are not handlers.  Try:
poolctl call add '{"a": 1, "b": 2}'.
"""

import os
import sys
import time


def echo(args):
    """Return args unchanged."""
    return args


def add(args):
    """Return args["a"] + args["b"]."""
    return args["a"] + args["b"]


def upper(args):
    """Return the string args in upper case."""
    if not isinstance(args, str):
        raise TypeError("upper() needs a string, not %s" % type(args).__name__)
    return args.upper()


def sleep(args):
    """Sleep args seconds (a number) and return it."""
    seconds = float(args)
    time.sleep(seconds)
    return seconds


def pid(args):
    """Return the worker's process id."""
    return os.getpid()


def info(args):
    """Return the worker's Python version, implementation and process id."""
    return {
        "python": "%d.%d.%d" % sys.version_info[:3],
        "implementation": sys.implementation.name,
        "executable": sys.executable,
        "pid": os.getpid(),
    }
