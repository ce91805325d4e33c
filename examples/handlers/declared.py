"""Declare exactly what clients may call with @handler; nothing else in the
module is ever called, whatever it imports or defines.

    poolctl call greet '"Ada"'            -> "hello, Ada"
    poolctl call version null             -> "1.2"
    poolctl call check_output '"id"'      -> PP_EHANDLER UnknownCommand
"""
from subprocess import check_output  # noqa: F401 -- imported, never a handler

from portpool_worker import handler


@handler
def greet(name):
    return "hello, %s" % name


@handler("version")  # served as "version", whatever the function is called
def _version(args):
    return "1.2"


def internal(args):
    """Public, but the module declares its handlers: not callable."""
    return "never"
