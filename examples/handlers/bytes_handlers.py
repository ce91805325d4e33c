r"""Bytes both ways, without JSON or base64.

A call made with pp_call_bytes (or any _with call given opts.cmd) hands the
handler its payload as Python bytes; a handler that returns bytes,
bytearray or memoryview answers with those bytes, and the caller's reply
says so (pp_buf_t.binary, pp_result_t.binary).  Any handler may answer
either way.

    pp_call_bytes(pool, "checksum", b"hello")   -> "2cf24dba5fb0a30e"
    pp_call_bytes(pool, "invert", b"\x00\x0f\xff")  -> b"\xff\xf0\x00"
    poolctl call zeros 4                        -> b"\x00\x00\x00\x00"
"""
import hashlib


def checksum(data):
    """bytes in, a JSON string out."""
    return hashlib.sha256(data).hexdigest()[:16]


def invert(data):
    """bytes in, bytes out: every bit flipped."""
    return bytes(b ^ 0xFF for b in data)


def zeros(n):
    """A JSON argument, bytes out (a memoryview is sent as it is)."""
    return memoryview(bytearray(n))
