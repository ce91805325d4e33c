"""_portpool_worker -- the code of portpool_worker.py, which documents it.

Imported (from its cached bytecode) by portpool_worker.py and by
portpool_zygote.py; `import portpool_worker` gives this module.
"""

import os
import sys

if __name__ == "__main__":
    # Handlers `import portpool_worker`; without this alias that import would
    # load this file a second time as a separate module with its own state.
    sys.modules.setdefault("portpool_worker", sys.modules[__name__])

import json
import re
import struct
import time

PROTOCOL_VERSION = 2
# REQUEST flag (protocol 2): the payload starts with the request's deadline,
# u64 big-endian nanoseconds on CLOCK_MONOTONIC (time.monotonic_ns()).
FLAG_DEADLINE = 1
# REQUEST and REPLY flag (protocol 2): bytes, not JSON.  A REQUEST's payload
# (after its deadline) is the handler's name, a zero byte, the argument.
FLAG_BINARY = 2
# REQUEST: the caller takes a stream; REPLY: a chunk of one, more follow
# (protocol 2).  A generator handler answers a stream request with one
# chunk per item it yields, then a last REPLY (without the flag) holding
# its return value.
FLAG_STREAM = 4

HELLO = 1
REQUEST = 2
REPLY = 3
ERROR = 4
PING = 5
PONG = 6
CANCEL = 7

REQ_FD = 3  # pool -> worker
REP_FD = 4  # worker -> pool
BUF_SIZE = 65536  # also the most one read asks for
HEADER = 12

EXIT_OK = 0
EXIT_STARTUP = 1
EXIT_PROTOCOL = 2

_HDR = struct.Struct(">IBBHI")
_pack = _HDR.pack
_unpack_from = _HDR.unpack_from
_unpack_deadline = struct.Struct(">Q").unpack_from
_monotonic_ns = time.monotonic_ns
# The longest handler name a binary REQUEST carries (bridge/frame.h).
PP_CMD_MAX = 64
# allow_nan=False: NaN and Infinity are not JSON, and the pool's parser (and
# most clients') refuse them; such a result becomes an ERROR (ValueError).
_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_encode = _encoder.encode
_loads = json.loads

# The request path skips the Python layers of json.loads() and
# JSONEncoder.encode() and calls what they end up calling, built once:
# - _scan_once(text, 0) -> (value, end) is the scanner json.loads() runs; the
#   runner falls back to json.loads() itself unless it parsed the whole text,
#   so leading/trailing whitespace, a BOM and every error (type and message)
#   come out exactly as json.loads() makes them.
# - _iterencode(value, 0) -> chunks is the C encoder encode() would build on
#   each call, with the same settings.  It shares one dict (_markers) of the
#   containers being encoded, for circular references; the C encoder leaves
#   entries in it when it fails, so it is cleared after every failure.
_scan_once = json.JSONDecoder().scan_once
_markers = {}
_encode_str = json.encoder.encode_basestring_ascii  # ensure_ascii=True
if json.encoder.c_make_encoder is not None:
    _iterencode = json.encoder.c_make_encoder(
        _markers,
        _encoder.default,
        _encode_str,
        _encoder.indent,
        _encoder.key_separator,
        _encoder.item_separator,
        _encoder.sort_keys,
        _encoder.skipkeys,
        _encoder.allow_nan,
    )
else:
    # No C encoder (not CPython): encode() itself, in one chunk.
    def _iterencode(value, _level):
        return (_encode(value),)


# Id of the request a handler is running, None between requests.
current_request_id = None

# Ids of cancelled requests that are running or still queued in _deferred.
_cancelled_ids = set()
# REQUEST frames read by cancelled() while a handler ran, as (id, flags, bytes),
# in arrival order; they are older than anything still in the buffer.
_deferred = []

# Read state shared by the main loop and cancelled(): frames not yet
# consumed are _buf[_start:_end].
_buf = bytearray(BUF_SIZE)
_mv = memoryview(_buf)
_start = 0
_end = 0
_eof = False
_rfile = None
_poller = None
_max_reply = 0xFFFFFFFF - 8


# The deadline of request _deadline_rid, in time.monotonic_ns(): the
# request being handled has one when it is that request (set by the frame
# loop only for requests that carry one, so the others cost nothing).
_deadline_rid = None
_deadline_at = 0


def deadline():
    """Return the time.monotonic() value after which the pool gives up on
    the request being handled (the earlier of the call's timeout and
    worker.request_timeout), or None when it has none or outside a
    request."""
    if _concurrent:
        req = _req_var.get()
        if req is None or req.deadline is None:
            return None
        return req.deadline / 1e9
    rid = current_request_id
    if rid is None or rid != _deadline_rid:
        return None
    return _deadline_at / 1e9


def remaining():
    """Return the seconds left before deadline() (0.0 once it passed), or
    None when the request has no deadline."""
    if _concurrent:
        req = _req_var.get()
        if req is None or req.deadline is None:
            return None
        left = (req.deadline - time.monotonic_ns()) / 1e9
        return left if left > 0.0 else 0.0
    rid = current_request_id
    if rid is None or rid != _deadline_rid:
        return None
    left = (_deadline_at - time.monotonic_ns()) / 1e9
    return left if left > 0.0 else 0.0


def _run_flagged(run, rid, flags, data):
    """Run a REQUEST whose header has flags: take its deadline, and fail it
    without running the handler when the deadline has passed (it waited
    behind other requests too long)."""
    global _deadline_rid, _deadline_at, _stream_rid
    if flags & FLAG_STREAM:
        _stream_rid = rid
    run_body = _runner_for(run, flags)
    if not flags & FLAG_DEADLINE:
        run_body(rid, data)
        return
    if len(data) < 8:
        _send_error(rid, "BadRequest", "deadline flag on a short payload")
        return
    at = _unpack_deadline(data, 0)[0]
    if _monotonic_ns() >= at:
        _send_expired(rid)
        return
    _deadline_rid = rid
    _deadline_at = at
    run_body(rid, data[8:])


def _runner_for(run, flags):
    """The runner of a REQUEST with these flags: run, or run.binary."""
    if flags & FLAG_BINARY:
        run_body = getattr(run, "binary", None)
        if run_body is not None:
            return run_body
    return run  # raw mode: payloads are bytes already


def _send_expired(rid):
    _cancelled_ids.discard(rid)
    _send_error(
        rid,
        "DeadlineExceeded",
        "request %d reached the handler after its deadline; not run" % rid,
    )


def cancelled():
    """Return True if the pool has cancelled the request being handled.

    Call it from a handler now and then during long work; it costs one
    non-blocking poll of the request pipe.  While it runs, PINGs queued
    behind the current request are answered too.  Outside a request it
    returns False.

    With worker.concurrency > 1 it answers for the request the calling
    code runs for (its task or thread), without any I/O: the worker's
    loop reads CANCEL frames while handlers run.
    """
    if _concurrent:
        req = _req_var.get()
        return req is not None and req.cancelled
    rid = current_request_id
    if rid is None:
        return False
    _absorb()
    _poll_more()
    return rid in _cancelled_ids


def _flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def _die(code, message=None):
    """Exit at once, from anywhere (also from inside a handler)."""
    if message is not None:
        try:
            sys.stderr.write("portpool_worker[%d]: %s\n" % (os.getpid(), message))
        except Exception:
            pass
    _flush_std()
    os._exit(code)


# From this payload size on, the header and payload go out with one writev()
# instead of being copied into one bytes object first; below it the copy is
# cheaper than writev()'s own cost.
_WRITEV_MIN = 4096


def _send(ftype, rid, payload=b"", flags=0):
    size = len(payload)
    try:
        if size < _WRITEV_MIN:
            data = _pack(size + 8, ftype, flags, 0, rid) + payload
            n = os.write(REP_FD, data)
            if n != len(data):
                view = memoryview(data)
                while n < len(data):
                    n += os.write(REP_FD, view[n:])
        else:
            # Big bytes go out as they are: no copy into one buffer.
            header = _pack(size + 8, ftype, flags, 0, rid)
            n = os.writev(REP_FD, (header, payload))
            if n != size + HEADER:
                # A partial write (a signal): the rest one buffer at a time.
                while n < HEADER:
                    n += os.write(REP_FD, header[n:])
                view = memoryview(payload)
                n -= HEADER
                while n < size:
                    n += os.write(REP_FD, view[n:])
    except (BrokenPipeError, ConnectionResetError):
        # The pool stopped reading: it is gone or closing us down.
        _die(EXIT_OK)
    except OSError as exc:
        _die(EXIT_STARTUP, "cannot write to fd %d: %s" % (REP_FD, exc))


def _clean(text):
    # Lone surrogates would turn into \udxxx escapes that strict JSON
    # parsers on the pool side refuse.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _cut_end(text, keep):
    """text with all but its first keep characters replaced by a note."""
    if len(text) <= keep:
        return text
    return text[:keep] + " [... %d characters cut]" % (len(text) - keep)


def _cut_start(text, keep):
    """text with all but its last keep characters replaced by a note."""
    if len(text) <= keep:
        return text
    return "[%d characters cut ...] " % (len(text) - keep) + text[len(text) - keep :]


def _error_payload(fields):
    """The ERROR payload for fields (type, message, traceback, extras), cut
    to fit max_frame: first the extras go, then the message keeps its
    start and the traceback its end (where the exception is), the type at
    most 200 characters."""
    payload = _encode(fields).encode()
    if len(payload) <= _max_reply:
        return payload
    etype, message, tb = fields["type"], fields["message"], fields["traceback"]
    room = max(_max_reply - 256, 0)  # the keys, the notes, the quotes
    while True:
        # JSON escapes make a character 1 to 12 bytes: shrink until it fits.
        short = {
            "type": _cut_end(etype, 200),
            "message": _cut_end(message, room // 4),
            "traceback": _cut_start(tb, room - room // 4),
            "truncated": True,
        }
        payload = _encode(short).encode()
        if len(payload) <= _max_reply or room == 0:
            return payload
        room = room * _max_reply // len(payload) * 9 // 10


def _send_error(rid, etype, message, tb="", **extra):
    fields = {
        "type": _clean(etype),
        "message": _clean(message),
        "traceback": _clean(tb),
    }
    fields.update(extra)
    _send(ERROR, rid, _error_payload(fields))


def _send_exception(rid, exc, skip_frames=1):
    """Send exc as an ERROR frame, leaving out the worker's own frames (the
    first skip_frames of its traceback; None: no traceback at all)."""
    import traceback

    tb = exc.__traceback__
    if skip_frames is None:
        tb = None
    for _ in range(skip_frames or 0):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable %s>" % type(exc).__name__
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:
        text = ""
    _send_error(rid, type(exc).__name__, message, text)


def _send_cancelled(rid):
    _send_error(rid, "Cancelled", "request %d was cancelled before it ran" % rid)


def _send_reply(rid, out, flags=0):
    # The runners inline the common case (a reply that fits) to save a call.
    if len(out) > _max_reply:
        _send_error(
            rid,
            "FrameTooBig",
            "result of %d bytes exceeds worker.max_frame (%d bytes)"
            % (len(out), _max_reply),
        )
    else:
        _send(REPLY, rid, out, flags)


# What a handler may return to answer in bytes, not JSON.
_BYTES_TYPES = frozenset((bytes, bytearray, memoryview))


def _send_bytes(rid, out):
    """A handler returned bytes: they are the reply, flagged binary.  A
    memoryview goes out as it is (len() counts items, so its bytes)."""
    if type(out) is memoryview:
        try:
            out = out.cast("B") if out.c_contiguous else out.tobytes()
        except (ValueError, TypeError) as exc:  # released, or not castable
            _send_exception(rid, exc, skip_frames=None)
            return
    _send_reply(rid, out, FLAG_BINARY)


# In a JSON text the encoder made (ensure_ascii, lower-case hex): a high
# surrogate escape followed by a low one (a pair, fine), a lone surrogate
# escape (group 1), or any other escape, skipped whole so that an escaped
# backslash followed by "ud800" is no match.  (json imports re already.)
_ESCAPES = re.compile(
    rb"\\ud[89ab][0-9a-f]{2}\\ud[c-f][0-9a-f]{2}"
    rb"|(\\ud[89a-f][0-9a-f]{2})|\\."
)


def _lone_surrogate(out):
    """The first lone surrogate escape ("\\ud800") in the encoded reply
    out, or None.  Python strings may hold them; JSON text may not."""
    for m in _ESCAPES.finditer(out):
        if m.group(1):
            return m.group(1).decode()
    return None


def _send_surrogate_error(rid, escape):
    _send_error(
        rid,
        "ValueError",
        "result holds a lone surrogate (%s), which JSON text cannot carry; "
        "return bytes as base64, or clean the string with "
        ".encode('utf-8', 'replace').decode()" % escape,
    )


def _send_unknown(rid, cmd, names):
    """UnknownCommand for cmd: the message and the payload name the
    handlers and the nearest one."""
    import difflib

    near = difflib.get_close_matches(cmd, names, n=1)
    suggestion = near[0] if near else None
    shown = ", ".join(names[:20]) if names else "none"
    if len(names) > 20:
        shown += ", ... (%d in all)" % len(names)
    message = "unknown command %r" % cmd
    if suggestion is not None:
        message += "; did you mean %r?" % suggestion
    message += " (handlers: %s)" % shown
    _send_error(
        rid, "UnknownCommand", message, handlers=names, suggestion=suggestion
    )


def _on_cancel(rid):
    if _concurrent:
        _conc.cancel(rid)
        return
    # Record only ids that are running or queued here: a CANCEL for a request
    # already answered raced with its reply and is dropped, so the set never
    # grows and a reused id is never born cancelled.
    if rid == current_request_id:
        _cancelled_ids.add(rid)
        return
    for qid, _, _ in _deferred:
        if qid == rid:
            _cancelled_ids.add(rid)
            return


def _bad_type(ftype, rid):
    _die(
        EXIT_PROTOCOL,
        "protocol error: frame type %d (id %d) is not one the pool sends"
        % (ftype, rid),
    )


def _bad_header(length, ftype, reserved, rid):
    _die(
        EXIT_PROTOCOL,
        "protocol error: malformed frame header "
        "(length %d, type %d, reserved %d, id %d)"
        % (length, ftype, reserved, rid),
    )


def _absorb():
    """Consume the complete frames in the buffer without running handlers:
    PING is answered, CANCEL recorded, REQUEST queued in _deferred."""
    global _start
    buf = _buf
    while _end - _start >= HEADER:
        length, ftype, _flags, reserved, rid = _unpack_from(buf, _start)
        if length < 8 or reserved:
            _bad_header(length, ftype, reserved, rid)
        total = length + 4
        if _end - _start < total:
            if ftype not in (REQUEST, PING, CANCEL):
                _bad_type(ftype, rid)
            return
        begin = _start + HEADER
        _start += total
        if ftype == PING:
            _send(PONG, rid)
        elif ftype == CANCEL:
            _on_cancel(rid)
        elif ftype == REQUEST:
            _deferred.append((rid, _flags, bytes(buf[begin : begin + length - 8])))
        else:
            _bad_type(ftype, rid)


def _compact():
    """Move the unconsumed bytes to the front of the buffer."""
    global _start, _end
    if _start == _end:
        _start = _end = 0
    elif _start:
        n = _end - _start
        _buf[:n] = _buf[_start:_end]
        _start = 0
        _end = n


def _poll_more():
    """Read whatever the pool has already written, without blocking."""
    global _end, _eof, _poller
    if _eof:
        return
    if _poller is None:
        import select

        _poller = select.poll()
        _poller.register(REQ_FD, select.POLLIN)
    while _poller.poll(0):
        _compact()
        if _end == BUF_SIZE:
            # A frame bigger than the buffer is pending; the main loop reads
            # it after the handler returns.
            return
        try:
            n = _rfile.readinto(_mv[_end:])
        except ConnectionResetError:
            n = 0
        if not n:
            _eof = True
            return
        _end += n
        _absorb()


def _read_big(total):
    """Read the rest of a frame of `total` bytes that does not fit in the
    buffer; returns its payload as a bytearray."""
    global _start, _end
    payload = bytearray(total - HEADER)
    have = _end - _start - HEADER
    payload[:have] = _buf[_start + HEADER : _end]
    _start = _end = 0
    view = memoryview(payload)
    readinto = _rfile.readinto
    while have < len(payload):
        try:
            n = readinto(view[have : have + BUF_SIZE])
        except ConnectionResetError:
            n = 0
        if not n:
            # EOF in the middle of a frame: the pool is gone.
            sys.exit(EXIT_OK)
        have += n
    return payload


# What a handler returns that is not its result yet: a coroutine (an async
# def handler) runs to its end on the worker's asyncio loop; a generator is
# a stream handler.
async def _probe():
    pass


_c = _probe()
_CoroutineType = type(_c)
_c.close()
del _c
_GeneratorType = type((lambda: (yield))())


async def _agen():
    yield


_AsyncGeneratorType = type(_agen())
_NOT_VALUES = frozenset((_CoroutineType, _GeneratorType, _AsyncGeneratorType))


def _send_base_exception(rid, exc):
    """A handler ended with a BaseException that is not an exit (an
    asyncio.CancelledError, a GeneratorExit): "Cancelled" when the pool
    cancelled the request, else the exception as any other."""
    cancelled = rid in _cancelled_ids
    _cancelled_ids.discard(rid)
    _send_ended(rid, exc, cancelled)


def _send_ended(rid, exc, cancelled):
    if cancelled:
        _send_error(rid, "Cancelled", "request %d was cancelled while it ran" % rid)
    else:
        _send_exception(rid, exc)


_aloop = None


# The request that takes a stream (its REQUEST had FLAG_STREAM), if any.
_stream_rid = None


def _settle(value, name):
    """The result of a handler that returned a coroutine or a generator: a
    coroutine runs to its end; a generator streams its items, when the
    request takes a stream.  Returns what the final REPLY holds."""
    if type(value) is _CoroutineType:
        return _run_coroutine(value)
    rid = current_request_id
    if rid is not None and rid == _stream_rid:
        if type(value) is _GeneratorType:
            return _stream(value, rid)
        return _run_coroutine(_astream(value, rid))
    _not_a_stream(value, name)


def _not_a_stream(value, name):
    """A generator handler called without a stream: close it, raise."""
    value.close()
    raise TypeError(
        "handler %r streams its results (it is a generator): the call must "
        "take a stream, or the handler return a list instead" % name
    )


def _send_chunk(rid, item):
    """One item of a stream: a REPLY flagged as a chunk (and binary for
    bytes).  One that cannot be sent ends the stream with an error."""
    flags = FLAG_STREAM
    if type(item) in _BYTES_TYPES:
        out = item.tobytes() if type(item) is memoryview else item
        flags |= FLAG_BINARY
    else:
        out = _encode(item).encode()
    if len(out) > _max_reply:
        raise ValueError(
            "stream item of %d bytes exceeds worker.max_frame (%d bytes)"
            % (len(out), _max_reply)
        )
    _send(REPLY, rid, out, flags)


def _stream(gen, rid):
    """Send a generator's items as they come; between items a CANCEL
    closes it (the handler sees GeneratorExit).  A slow caller slows it:
    the write blocks once the pipe is full."""
    try:
        while True:
            if cancelled():
                gen.close()
                raise _StreamCancelled()
            _send_chunk(rid, next(gen))
    except StopIteration as stop:
        return stop.value


async def _astream(agen, rid):
    """The same for an async generator, on the worker's asyncio loop (a
    CANCEL cancels it at its await)."""
    try:
        async for item in agen:
            _send_chunk(rid, item)
    finally:
        await agen.aclose()


class _StreamCancelled(BaseException):
    """A stream cancelled between two items (reported as Cancelled)."""


def _run_coroutine(coro):
    """Run an async handler's coroutine on the worker's asyncio loop, to its
    end.  While it runs, the request pipe is watched: a PING is answered,
    and a CANCEL for this request cancels the task (the handler sees
    asyncio.CancelledError at its await)."""
    global _aloop
    import asyncio

    if _aloop is None:
        _aloop = asyncio.new_event_loop()
        asyncio.set_event_loop(_aloop)
    loop = _aloop
    task = loop.create_task(coro)
    rid = current_request_id

    def readable():
        _poll_more()
        if _eof:
            loop.remove_reader(REQ_FD)
            task.cancel()
        elif rid in _cancelled_ids:
            task.cancel()
        elif _end == BUF_SIZE:
            # A queued frame bigger than the buffer: it is read after the
            # handler returns.  Watching the pipe until then would only
            # spin (what is behind it, a CANCEL too, waits with it).
            loop.remove_reader(REQ_FD)

    # Frames read with the request are already in the buffer: a PING is
    # answered now, a CANCEL cancels before the first await.
    _absorb()
    if rid in _cancelled_ids:
        task.cancel()
    loop.add_reader(REQ_FD, readable)
    try:
        return loop.run_until_complete(task)
    finally:
        loop.remove_reader(REQ_FD)


def _make_json_runner(table, launch=None):
    """The runner of JSON mode: run(rid, data) parses a REQUEST's payload,
    calls the handler and sends its reply; run.binary(rid, data) the same
    for a binary REQUEST.  With launch (worker.concurrency > 1), run()
    only parses and looks the handler up, then hands it to
    launch(rid, fn, name, arg, send_result), which runs it and later calls
    send_result(rid, result); everything else is shared by both modes."""
    # The hot path: everything it uses is a local of this closure.
    names = sorted(table)
    loads = _loads
    scan_once = _scan_once
    iterencode = _iterencode
    markers = _markers
    encode_str = _encode_str
    join = "".join
    cancelled_ids = _cancelled_ids
    send = _send
    not_values = _NOT_VALUES
    bytes_types = _BYTES_TYPES

    def send_result(rid, result):
        """Send what a handler returned: JSON, or its bytes."""
        if type(result) in bytes_types:
            _send_bytes(rid, result)
            return
        try:
            if type(result) is str:
                # What encode() does for a string: no encoder call.
                out = encode_str(result).encode()
            else:
                out = join(iterencode(result, 0)).encode()
        except Exception as exc:
            markers.clear()
            # TypeError for objects JSON cannot hold; ValueError for NaN or
            # a circular reference.
            _send_exception(rid, exc, skip_frames=None)
            return
        if b"\\ud" in out:
            escape = _lone_surrogate(out)
            if escape is not None:
                _send_surrogate_error(rid, escape)
                return
        if len(out) <= _max_reply:
            send(REPLY, rid, out)
        else:
            _send_reply(rid, out)

    if launch is None:

        def dispatch(rid, cmd, arg):
            """Call handler cmd with arg and send what it returns."""
            global current_request_id
            if cancelled_ids and rid in cancelled_ids:
                # Queued behind another request and cancelled before it ran.
                cancelled_ids.discard(rid)
                _send_cancelled(rid)
                return
            fn = table.get(cmd)
            if fn is None:
                _send_unknown(rid, cmd, names)
                return
            current_request_id = rid
            try:
                result = fn(arg)
                if type(result) in not_values:
                    result = _settle(result, cmd)
            except Exception as exc:
                current_request_id = None
                cancelled_ids.discard(rid)
                _send_exception(rid, exc)
                return
            except BaseException as exc:
                if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                    raise  # the handler ends the worker, as it asked
                current_request_id = None
                _send_base_exception(rid, exc)
                return
            current_request_id = None
            if cancelled_ids:
                cancelled_ids.discard(rid)
            send_result(rid, result)

    else:

        def dispatch(rid, cmd, arg):
            """Hand handler cmd to the concurrent runner."""
            fn = table.get(cmd)
            if fn is None:
                _send_unknown(rid, cmd, names)
                return
            launch(rid, fn, cmd, arg, send_result)

    def run(rid, data):
        try:
            # Strict UTF-8 (json.loads(bytes) would also take UTF-16/32 and
            # lone surrogates).
            text = str(data, "utf-8")
            try:
                req, end = scan_once(text, 0)
            except StopIteration:
                end = -1
            if end != len(text):
                # Not one value filling the text: json.loads() says what it
                # is (whitespace around it is fine, anything else an error).
                req = loads(text)
        except ValueError as exc:
            _send_error(rid, "BadRequest", "request is not valid UTF-8 JSON: %s" % exc)
            return
        except RecursionError:
            _send_error(rid, "BadRequest", "request nests too deeply to parse")
            return
        cmd = req.get("cmd") if type(req) is dict else None
        if type(cmd) is not str:
            _send_error(
                rid,
                "BadRequest",
                'request must be a JSON object with a string "cmd"',
            )
            return
        dispatch(rid, cmd, req.get("args"))

    def run_binary(rid, data):
        """A binary REQUEST: NAME, a zero byte, the argument as bytes."""
        view = memoryview(data)
        end = bytes(view[: PP_CMD_MAX + 1]).find(b"\0")
        if end <= 0:
            _send_error(rid, "BadRequest", "binary request without a handler name")
            return
        dispatch(rid, str(view[:end], "ascii", "replace"), bytes(view[end + 1 :]))

    run.binary = run_binary
    return run


def _make_raw_runner(handle, launch=None):
    """The runner of raw mode (handle(bytes) -> bytes); launch as for
    _make_json_runner()."""
    cancelled_ids = _cancelled_ids
    send = _send

    def send_result(rid, out):
        if type(out) is not bytes:
            if not isinstance(out, (bytes, bytearray, memoryview)):
                _send_error(
                    rid,
                    "TypeError",
                    "handle() must return bytes, not %s" % type(out).__name__,
                )
                return
            # len() of a memoryview counts items, not bytes.
            out = bytes(out)
        if len(out) <= _max_reply:
            send(REPLY, rid, out)
        else:
            _send_reply(rid, out)

    if launch is None:

        def run(rid, data):
            global current_request_id
            if cancelled_ids and rid in cancelled_ids:
                # Queued behind another request and cancelled before it ran.
                cancelled_ids.discard(rid)
                _send_cancelled(rid)
                return
            current_request_id = rid
            try:
                out = handle(bytes(data))
                if type(out) in _NOT_VALUES:
                    out = _settle(out, "handle")
            except Exception as exc:
                current_request_id = None
                cancelled_ids.discard(rid)
                _send_exception(rid, exc)
                return
            except BaseException as exc:
                if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                    raise  # the handler ends the worker, as it asked
                current_request_id = None
                _send_base_exception(rid, exc)
                return
            current_request_id = None
            if cancelled_ids:
                cancelled_ids.discard(rid)
            send_result(rid, out)

    else:

        def run(rid, data):
            launch(rid, handle, "handle", bytes(data), send_result)

    def run_binary(rid, data):
        # A binary call names its handler: raw mode has only handle().
        end = bytes(memoryview(data)[: PP_CMD_MAX + 1]).find(b"\0")
        run(rid, memoryview(data)[end + 1 :] if end >= 0 else data)

    run.binary = run_binary
    return run


def _serve(run):
    """The frame loop: runs until EOF on fd 3."""
    global _start, _end, _deadline_rid, _deadline_at
    unpack_deadline = _unpack_deadline
    monotonic_ns = _monotonic_ns
    buf = _buf
    mv = _mv
    unpack_from = _unpack_from
    readinto = _rfile.readinto
    deferred = _deferred
    while True:
        # Frames that cancelled() read while a handler ran come first.
        if deferred:
            rid, flags, data = deferred.pop(0)
            _run_flagged(run, rid, flags, data)
            continue
        avail = _end - _start
        if avail >= HEADER:
            length, ftype, _flags, reserved, rid = unpack_from(buf, _start)
            if length < 8 or reserved:
                _bad_header(length, ftype, reserved, rid)
            total = length + 4
            if avail >= total:
                begin = _start + HEADER
                _start += total
                if ftype == REQUEST:
                    # A view, not a copy: run() decodes it before anything
                    # can overwrite the buffer.
                    if not _flags:
                        run(rid, mv[begin : begin + length - 8])
                    elif _flags == FLAG_DEADLINE and length >= 16:
                        # Inline: the pool sends a deadline with nearly
                        # every request.
                        at = unpack_deadline(buf, begin)[0]
                        if monotonic_ns() < at:
                            _deadline_rid = rid
                            _deadline_at = at
                            run(rid, mv[begin + 8 : begin + length - 8])
                        else:
                            _send_expired(rid)
                    else:
                        _run_flagged(run, rid, _flags, mv[begin : begin + length - 8])
                elif ftype == PING:
                    _send(PONG, rid)
                elif ftype == CANCEL:
                    # Nothing runs and nothing is queued here, so this
                    # CANCEL raced with the reply of a finished request.
                    _on_cancel(rid)
                else:
                    _bad_type(ftype, rid)
                continue
            if ftype != REQUEST and ftype != PING and ftype != CANCEL:
                _bad_type(ftype, rid)
            if total > BUF_SIZE:
                _run_flagged(run, rid, _flags, _read_big(total))
                continue
        if _eof:
            return
        # Need more bytes.
        if _start == _end:
            _start = _end = 0
        elif _start:
            _compact()
        try:
            # Usually the buffer is empty: read into all of it, no slice.
            n = readinto(mv[_end:] if _end else mv)
        except ConnectionResetError:
            n = 0
        if not n:
            return
        _end += n


# ---------------------------------------------------------------------------
# worker.concurrency > 1: many requests at once (PORTPOOL_CONCURRENCY=N).
#
# The pool starts the worker with PORTPOOL_CONCURRENCY=N (1..1024; absent
# or 1: the one-at-a-time loop above, unchanged).  With N > 1 one asyncio
# loop on the main thread reads fd 3 (add_reader, non-blocking reads into
# the same buffer, the same frame checks) and writes every frame to fd 4
# (blocking: a pool that reads slowly holds the worker there).  Up to N
# requests run at once; the rest wait in arrival order.  Replies go out as
# each request ends, so out of order, matched by request id.
# - An async def handler runs as a task on the loop; a CANCEL cancels the
#   task (asyncio.CancelledError at its await) and the reply is the
#   "Cancelled" ERROR.
# - A plain handler runs in a ThreadPoolExecutor of N threads, so it must
#   be thread-safe; a CANCEL turns its cancelled() true.
# - A generator streams as with N = 1; a sync generator's next() runs in
#   the thread pool, and a CANCEL closes it (GeneratorExit) before its
#   next item.  An async generator runs on the loop, cancelled as a task.
# - deadline(), remaining(), cancelled() and current_request_id answer
#   for the request the calling task or thread runs for (a ContextVar); in
#   a thread a handler starts itself they say "no request" (None, False).
# - An async handler that blocks without awaiting holds the loop: every
#   other request, and PING, wait for it.
# - A handler's sys.exit() ends the worker at once, whatever else runs.
# - A request cancelled while it waits is answered "Cancelled" and never
#   runs; one whose deadline passed while it waited, "DeadlineExceeded".
# - PING is answered as soon as it is read, however many handlers run.
# - EOF on fd 3: no more requests are read; those already read run and
#   are answered, then teardown() runs and the worker exits 0.  SIGTERM
#   runs teardown() only when no request is running or waiting.
# - HELLO carries "concurrency": N.

_concurrent = False  # True once the worker serves with N > 1
_conc = None  # the _Concurrent server then
_req_var = None  # its ContextVar: the _Request a task or thread runs for

_CONCURRENCY_MAX = 1024


def _concurrency():
    """worker.concurrency from PORTPOOL_CONCURRENCY (absent: 1), or None
    after saying on stderr why the value is bad."""
    text = os.environ.get("PORTPOOL_CONCURRENCY")
    if text is None:
        return 1
    if text.isascii() and text.isdigit() and 1 <= int(text) <= _CONCURRENCY_MAX:
        return int(text)
    sys.stderr.write(
        "portpool_worker: PORTPOOL_CONCURRENCY=%r is not a number of "
        "requests from 1 to %d (worker.concurrency)\n" % (text, _CONCURRENCY_MAX)
    )
    _flush_std()
    return None


def __getattr__(name):
    # With N > 1, current_request_id is no global: several requests run at
    # once, and each task or thread sees the id of its own.
    if name == "current_request_id" and _concurrent:
        req = _req_var.get()
        return None if req is None else req.rid
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


class _Request:
    """A request read with N > 1, from its arrival to its answer."""

    __slots__ = ("rid", "flags", "data", "deadline", "started", "cancelled",
                 "task", "cancellable")

    def __init__(self, rid, flags, data, deadline):
        self.rid = rid
        self.flags = flags
        self.data = data
        self.deadline = deadline  # monotonic ns, or None
        self.started = False
        self.cancelled = False
        self.task = None
        # True while its task awaits the handler's coroutine or async
        # generator itself: only then does a CANCEL cancel the task.
        self.cancellable = False


def _call(fn, *args):
    """fn(*args) in a handler thread, as (True, result) or (False, the
    exception): its traceback then starts here, one frame to skip."""
    try:
        return True, fn(*args)
    except BaseException as exc:
        return False, exc


def _next(gen):
    """A generator's next item in a handler thread: (0, item), (1, its
    return value) or (2, the exception)."""
    try:
        return 0, next(gen)
    except StopIteration as stop:
        return 1, stop.value
    except BaseException as exc:
        return 2, exc


class _Concurrent:
    """The server with N > 1 (see above)."""

    def __init__(self, n):
        global _concurrent, _req_var, _aloop
        import asyncio
        import collections
        import contextvars
        from concurrent.futures import ThreadPoolExecutor

        self.n = n
        self.loop = _aloop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.executor = ThreadPoolExecutor(
            max_workers=n, thread_name_prefix="portpool-handler"
        )
        self.copy_context = contextvars.copy_context
        self.reqs = {}  # id -> _Request, waiting or running
        self.pending = collections.deque()  # waiting, in arrival order
        self.running = 0
        self.eof = False
        self.big = None  # [type, flags, id, payload, have] of a big frame
        self.run = None
        _req_var = contextvars.ContextVar("portpool_request", default=None)
        _concurrent = True
        # From now on the module's __getattr__ answers it, per request.
        globals().pop("current_request_id", None)

    def idle(self):
        return not self.reqs

    def serve(self, run):
        """Serve until EOF on fd 3 and every request read is answered."""
        self.run = run
        os.set_blocking(REQ_FD, False)
        self.loop.add_reader(REQ_FD, self.readable)
        self.wake_on_signals()
        try:
            self.loop.run_forever()
        except SystemExit as exc:
            # A handler's sys.exit() ends the worker, as with N = 1, without
            # waiting for the handlers still running in threads.
            code = exc.code
            if code is None:
                code = 0
            elif not isinstance(code, int):
                sys.stderr.write("%s\n" % (code,))
                code = 1
            _kill_group_members()
            _die(code)
        self.executor.shutdown(wait=True)

    def wake_on_signals(self):
        """A signal the kernel hands to a handler thread must still wake
        the loop, on the main thread, where Python runs signal handlers
        (SIGTERM's): the C handler writes a byte to a pipe the loop
        watches."""
        import _signal as signal

        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

        def drain():
            try:
                while os.read(rfd, 4096):
                    pass
            except BlockingIOError:
                pass

        try:
            signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        except ValueError:  # not the main thread: nothing to wake
            os.close(rfd)
            os.close(wfd)
            return
        self.loop.add_reader(rfd, drain)

    # -- reading ----------------------------------------------------------

    def readable(self):
        global _start, _end
        big = self.big
        if big is not None:
            self.read_big(big)
            return
        _compact()
        try:
            n = _rfile.readinto(_mv[_end:])
        except ConnectionResetError:
            n = 0
        if n is None:  # nothing yet (EAGAIN)
            return
        if not n:
            self.at_eof()
            return
        _end += n
        # PING answered, CANCEL to cancel(), REQUEST to _deferred.
        _absorb()
        self.take_deferred()
        if _end - _start >= HEADER:
            length, ftype, flags, _reserved, rid = _unpack_from(_buf, _start)
            total = length + 4
            if total > BUF_SIZE:
                # Bigger than the buffer: read into a payload of its own.
                payload = bytearray(total - HEADER)
                have = _end - _start - HEADER
                payload[:have] = _buf[_start + HEADER : _end]
                _start = _end = 0
                self.big = [ftype, flags, rid, payload, have]
        self.pump()

    def read_big(self, big):
        ftype, flags, rid, payload, have = big
        try:
            n = _rfile.readinto(memoryview(payload)[have:])
        except ConnectionResetError:
            n = 0
        if n is None:
            return
        if not n:
            self.at_eof()  # EOF in the middle of a frame: the pool is gone
            return
        have += n
        big[4] = have
        if have < len(payload):
            return
        self.big = None
        if ftype == REQUEST:
            self.enqueue(rid, flags, payload)
        elif ftype == PING:
            _send(PONG, rid)
        else:
            self.cancel(rid)
        self.pump()

    def at_eof(self):
        self.eof = True
        self.big = None
        self.loop.remove_reader(REQ_FD)
        self.pump()

    def take_deferred(self):
        if _deferred:
            for rid, flags, data in _deferred:
                self.enqueue(rid, flags, data)
            _deferred.clear()

    def enqueue(self, rid, flags, data):
        at = None
        if flags & FLAG_DEADLINE:
            if len(data) < 8:
                _send_error(rid, "BadRequest", "deadline flag on a short payload")
                return
            at = _unpack_deadline(data, 0)[0]
            data = memoryview(data)[8:]
        req = _Request(rid, flags, data, at)
        self.reqs[rid] = req
        self.pending.append(req)

    def cancel(self, rid):
        # Requests read before this CANCEL are known first.
        self.take_deferred()
        req = self.reqs.get(rid)
        if req is None:
            return  # unknown, or answered already: it raced with the reply
        if not req.started:
            self.pending.remove(req)
            del self.reqs[rid]
            _send_cancelled(rid)
            return
        req.cancelled = True
        if req.cancellable:
            req.task.cancel()

    # -- running ----------------------------------------------------------

    def pump(self):
        """Start waiting requests while fewer than N run; stop the loop
        once EOF came and all is answered."""
        pending = self.pending
        while pending and self.running < self.n:
            self.start(pending.popleft())
        if self.eof and not self.reqs:
            self.loop.stop()

    def start(self, req):
        rid = req.rid
        req.started = True
        self.running += 1
        if req.deadline is not None and _monotonic_ns() >= req.deadline:
            _send_expired(rid)
        else:
            # Parses the request; answers it at once (BadRequest,
            # UnknownCommand), or calls launch().
            _runner_for(self.run, req.flags)(rid, req.data)
        req.data = None
        if req.task is None:
            self.done(req)

    def done(self, req):
        self.running -= 1
        if self.reqs.get(req.rid) is req:
            del self.reqs[req.rid]

    def launch(self, rid, fn, name, arg, send_result):
        """Run handler fn for request rid, in a copy of the context where
        the request is the current one: a plain handler in the thread
        pool (its result handled by called() on the loop), anything else
        in a task on the loop."""
        req = self.reqs[rid]
        ctx = self.copy_context()
        ctx.run(_req_var.set, req)
        if handler_kind(fn) == "plain":
            later = self.loop.call_soon_threadsafe
            called = self.called

            def back(future):  # in the handler thread
                later(called, req, future.result(), ctx, name, send_result)

            req.task = self.executor.submit(ctx.run, _call, fn, arg)
            req.task.add_done_callback(back)
            return
        req.task = ctx.run(
            self.loop.create_task,
            self.handle(req, fn, arg, None, name, send_result),
        )

    def called(self, req, outcome, ctx, name, send_result):
        """A plain handler returned (or raised) in its thread."""
        ok, result = outcome
        if not ok:
            self.failed(req, result)
        elif type(result) in _NOT_VALUES:
            # A coroutine or a generator: a task of its own takes over.
            req.task = ctx.run(
                self.loop.create_task,
                self.handle(req, None, None, result, name, send_result),
            )
            return
        else:
            send_result(req.rid, result)
        self.done(req)
        self.pump()

    async def handle(self, req, fn, arg, result, name, send_result):
        """fn(arg) when fn is given (an async def or a generator function:
        the call only makes the coroutine or generator), else the result
        of a plain handler; a coroutine runs to its end, a generator
        streams; then the reply."""
        rid = req.rid
        try:
            try:
                if fn is not None:
                    result = fn(arg)
                kind = type(result)
                if kind in _NOT_VALUES:
                    if kind is not _CoroutineType and not req.flags & FLAG_STREAM:
                        _not_a_stream(result, name)  # closes it, raises TypeError
                    if kind is _GeneratorType:
                        ok, result = await self.stream(req, result)
                        if not ok:
                            return
                    else:
                        if kind is _AsyncGeneratorType:
                            result = _astream(result, rid)
                        req.cancellable = True
                        if req.cancelled:
                            req.task.cancel()  # CancelledError at its first await
                        try:
                            result = await result
                        finally:
                            req.cancellable = False
            except Exception as exc:
                _send_exception(rid, exc)
                return
            except BaseException as exc:
                if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                    raise  # the handler ends the worker, as it asked
                _send_ended(rid, exc, req.cancelled)
                return
            send_result(rid, result)
        finally:
            self.done(req)
            self.pump()

    def in_thread(self, fn, *args):
        """fn(*args) in the thread pool, in a copy of this task's context."""
        return self.loop.run_in_executor(
            self.executor, self.copy_context().run, fn, *args
        )

    def failed(self, req, exc):
        """Answer a request whose handler raised exc in a thread."""
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            raise exc
        if isinstance(exc, Exception):
            _send_exception(req.rid, exc)
        else:
            _send_ended(req.rid, exc, req.cancelled)

    async def stream(self, req, gen):
        """A sync generator's items as chunks, each next() in the thread
        pool; a CANCEL closes it before its next item.  Returns (True, its
        return value), or (False, None) once the request is answered."""
        rid = req.rid
        try:
            while True:
                if req.cancelled:
                    await self.in_thread(_call, gen.close)
                    _send_ended(rid, None, True)
                    return False, None
                step, value = await self.in_thread(_next, gen)
                if step == 1:
                    return True, value
                if step == 2:
                    self.failed(req, value)
                    return False, None
                _send_chunk(rid, value)
        except Exception as exc:  # an item that cannot be sent
            await self.in_thread(_call, gen.close)
            _send_exception(rid, exc)
            return False, None


# The worker's own pid, for the SIGTERM handler (a forked child inherits
# the handler but must not act as the worker).
_worker_pid = None
PR_SET_PDEATHSIG = 1


_libc = None


def _prctl_pdeathsig(sig):
    """Arm the parent-death signal; False when it cannot be (not Linux).
    libc's handle is kept: a zygote's forked workers reuse the zygote's
    (loading it costs a third of a millisecond, on each fork)."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        return _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    except Exception:
        return False


def _is_group_leader():
    try:
        return os.getpgrp() == os.getpid()
    except OSError:
        return False


# The handler module being served, for teardown().
_module = None
_tearing_down = False


def _teardown():
    """Call the module's teardown() once, on a graceful stop: EOF of the
    request pipe, or SIGTERM while no request runs.  What it raises is
    printed (it goes to the pool's log), and the worker still exits."""
    global _tearing_down
    fn = getattr(_module, "teardown", None)
    if fn is None or _tearing_down:
        return
    _tearing_down = True
    try:
        fn()
    except BaseException:
        import traceback

        traceback.print_exc()
    _flush_std()


def worker_id():
    """The pool's slot number of this worker (0-based), stable across its
    restarts; None outside a pool."""
    try:
        return int(os.environ["PORTPOOL_WORKER_ID"])
    except (KeyError, ValueError):
        return None


def _on_sigterm(signum, frame):
    """SIGTERM, from the pool's stop or from the parent-death signal: take
    the whole process group down, the handlers' own subprocesses included.
    Between requests it is a graceful stop: teardown() runs first (the pool
    kills the worker once worker.kill_grace has passed)."""
    import _signal as signal

    if os.getpid() == _worker_pid and _is_group_leader():
        if _conc.idle() if _concurrent else current_request_id is None:
            _teardown()
        _flush_std()
        os.killpg(0, signal.SIGKILL)  # ourselves included
    # A forked child that kept the handler, or a worker run outside a pool
    # (not a group leader: its group is someone else's): die as SIGTERM
    # would have killed it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _kill_group_members():
    """On a normal exit (EOF on fd 3), kill what the handlers left running
    in our process group, so no grandchild outlives the worker; the worker
    itself still exits 0.  Only when we lead the group (as in a pool)."""
    import _signal as signal

    if not _is_group_leader() or not os.path.isdir("/proc/self"):
        return
    me = os.getpid()
    # A member may fork while we look: look again until none is left.
    for _ in range(10):
        found = False
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            try:
                with open("/proc/%s/stat" % name, "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            # Fields after the parenthesised command: state ppid pgrp ...
            fields = stat[stat.rfind(b")") + 2 :].split()
            if len(fields) < 3 or int(fields[2]) != me or fields[0] == b"Z":
                continue
            found = True
            try:
                os.kill(int(name), signal.SIGKILL)
            except OSError:
                pass
        if not found:
            return


def _at_fork_child(parent, on_main_thread):
    """In a child a handler forked: die with the worker.  Only for forks
    from the main thread: the parent-death signal follows the forking
    thread, which must live as long as the worker does."""
    import _signal as signal

    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):
        pass
    if on_main_thread and _prctl_pdeathsig(signal.SIGKILL):
        if os.getppid() != parent:
            os._exit(1)  # the worker died before the signal was armed


def _orphan_proof():
    """No process of ours outlives the pool.  The pool spawns each worker as
    the leader of its own process group; the parent-death signal (SIGTERM)
    reaches us if the pool dies, even by SIGKILL, and the SIGTERM handler
    then kills the whole group.  Children forked by handlers get a
    parent-death signal of their own."""
    global _worker_pid
    # The C modules, already loaded at start-up: `signal` would import enum.
    import _signal as signal
    import _thread

    _worker_pid = os.getpid()
    signal.signal(signal.SIGTERM, _on_sigterm)
    main_thread = _thread.get_ident()
    fork_state = {}

    def before():
        fork_state["parent"] = os.getpid()
        fork_state["main"] = _thread.get_ident() == main_thread

    def after_in_child():
        _at_fork_child(fork_state.get("parent"), fork_state.get("main", False))

    os.register_at_fork(before=before, after_in_child=after_in_child)
    _prctl_pdeathsig(signal.SIGTERM)
    # If the parent died before the death signal was armed, we were already
    # re-parented: leave now rather than live on as an orphan.
    ppid = os.getppid()
    try:
        expected = int(os.environ.get("PORTPOOL_PARENT_PID", ppid))
    except ValueError:
        expected = ppid
    if ppid != expected:
        os._exit(EXIT_STARTUP)


def _stacks_on_sigusr1():
    """SIGUSR1 from the pool (worker.slow_request) writes every thread's
    Python stack to stderr, from faulthandler's C signal handler, so it
    works while a handler is stuck, even in C code holding the GIL.  The
    pool logs stderr line by line.  Called in serve_module(), so a worker
    forked by the zygote registers it too, on its own stderr."""
    import _signal as signal
    import faulthandler

    try:
        faulthandler.register(
            signal.SIGUSR1, file=sys.stderr, all_threads=True, chain=False
        )
    except (AttributeError, ValueError, OSError, RuntimeError):
        pass  # no SIGUSR1 here, or stderr has no file descriptor


def _load_handler(spec):
    import importlib

    if spec.endswith(".py") or os.sep in spec:
        import importlib.util

        path = os.path.abspath(spec)
        name = os.path.splitext(os.path.basename(path))[0]
        if name in sys.modules:
            name = "_portpool_handler_" + name
        # Like running the file as a script: its folder is importable, so it
        # can import its sibling modules.
        sys.path.insert(0, os.path.dirname(path))
        mspec = importlib.util.spec_from_file_location(name, path)
        if mspec is None:
            raise ImportError("cannot load handler file %r" % path)
        module = importlib.util.module_from_spec(mspec)
        sys.modules[name] = module
        try:
            mspec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    return importlib.import_module(spec)


def boot_failed(exc, what=None):
    """This worker cannot boot (its handler module failed to import, raised
    or called sys.exit() while being imported, or its __all__ is bad): tell
    the pool in place of HELLO, with an ERROR frame of request id 0 carrying
    {type, message, traceback}; the pool shows the traceback once and fails
    its start at once.  Not under a pool (fd 4 is no pipe), on stderr.
    Returns the exit status."""
    import stat
    import traceback

    if isinstance(exc, SystemExit):
        etype = "SystemExit"
        message = "the handler module called sys.exit(%r) while being imported" % (
            exc.code,
        )
    else:
        etype = type(exc).__name__
        try:
            message = str(exc)
        except Exception:
            message = "<unprintable %s>" % etype
    if isinstance(exc, (HandlerTableError, LimitError)):
        text = ""
    else:
        try:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        except Exception:
            text = ""
    try:
        mode = os.fstat(REP_FD).st_mode
        piped = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
    except OSError:
        piped = False
    if piped:
        _send_error(0, etype, message, text)
    else:
        sys.stderr.write("portpool_worker: %s\n" % (what or "cannot boot"))
        sys.stderr.write(text or "%s: %s\n" % (etype, message))
    _flush_std()
    return EXIT_STARTUP


class HandlerTableError(Exception):
    """A handler module's __all__ names something that is not a handler."""


class LimitError(Exception):
    """The pool's worker.limits.* or worker.memory_max cannot be applied:
    a boot failure, reported in place of HELLO."""


# worker.limits.* keys, as PORTPOOL_LIMITS names them, and their rlimits.
_RLIMITS = {
    "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC",
    "as": "RLIMIT_AS",
    "cpu": "RLIMIT_CPU",
    "core": "RLIMIT_CORE",
}


def read_limits():
    """PORTPOOL_LIMITS ("name=soft:hard,...") and PORTPOOL_HOLD, parsed:
    ([(key, resource, soft, hard), ...], hold).  A zygote reads them once,
    before it imports the handler module, so that nothing the module does
    to os.environ changes what its workers get.  Raises LimitError."""
    text = os.environ.get("PORTPOOL_LIMITS", "")
    limits = []
    if text:
        import resource

        for item in text.split(","):
            name, _, value = item.partition("=")
            soft, _, hard = value.partition(":")
            key = "worker.limits." + name
            if name not in _RLIMITS:
                raise LimitError("unknown limit %r in PORTPOOL_LIMITS" % name)
            try:
                limits.append(
                    (key, getattr(resource, _RLIMITS[name]), int(soft),
                     int(hard or soft))
                )
            except ValueError as exc:
                raise LimitError("cannot apply %s (%s): %s" % (key, soft, exc))
    return limits, os.environ.get("PORTPOOL_HOLD") == "1"


# The limits a zygote sets on itself before it imports the handler module
# (its workers inherit them, and cannot raise them): none of them counts
# what the zygote does over its life, as nproc (its forks) and cpu do.
ZYGOTE_LIMITS = ("worker.limits.nofile", "worker.limits.as",
                 "worker.limits.core")


def set_limits(limits, only=None):
    """setrlimit each of limits (from read_limits; only the keys in only,
    when given).  Raises LimitError."""
    if not limits:
        return  # no import of resource: a zygote's fork boots faster
    import resource

    for key, which, soft, hard in limits:
        if only is not None and key not in only:
            continue
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError) as exc:
            raise LimitError(
                "cannot apply %s (%s): %s; its hard limit is %r"
                % (key, soft, exc, resource.getrlimit(which)[1])
            )


def apply_limits(parsed=None):
    """Confine this worker before any handler code runs: the rlimits the
    pool passes in PORTPOOL_LIMITS ("name=soft:hard,..."; soft = hard
    except cpu's hard, a second later, so SIGXCPU names the cause), then,
    with PORTPOOL_HOLD=1 (worker.memory_max), wait for the pool to move
    this process into its cgroup: it writes b"G" on fd 3, or b"E" and
    why it could not.  Called by main() before the handler is imported,
    and by a zygote-forked worker before it serves, with what the zygote
    read (read_limits()) before its import.  Raises LimitError."""
    limits, hold = read_limits() if parsed is None else parsed
    set_limits(limits)
    if hold:
        try:
            first = os.read(REQ_FD, 1)
        except OSError as exc:
            raise LimitError("worker.memory_max: waiting for the pool: %s" % exc)
        if first == b"E":
            raise LimitError(os.read(REQ_FD, 512).decode("utf-8", "replace"))
        if first != b"G":
            raise LimitError("worker.memory_max: the pool did not release "
                             "this worker into its cgroup")


# Module functions the worker calls itself, never a client: setup() once
# per worker before HELLO, after_fork() first in a zygote-forked worker,
# teardown() on a graceful stop.
HOOKS = ("setup", "after_fork", "teardown")


def handler(fn=None, *, name=None):
    """Declare a handler: `@handler` under its own name, `@handler("name")`
    or `@handler(name="name")` under another.  A module that declares any
    handler this way serves exactly those (and the names of its __all__, if
    it has one): nothing else in it is ever called."""
    if isinstance(fn, str) and name is None:
        fn, name = None, fn
    if name is not None and (not isinstance(name, str) or not name.isidentifier()):
        raise ValueError("handler name %r is not an identifier" % (name,))

    def mark(f):
        if not callable(f):
            raise TypeError("@handler needs a function, not %s" % type(f).__name__)
        label = f.__name__ if name is None else name
        if not isinstance(label, str) or not label.isidentifier():
            raise ValueError("handler name %r is not an identifier" % (label,))
        f._portpool_handler = label
        return f

    return mark if fn is None else mark(fn)


def handler_kind(fn):
    """"plain", "async" (an async def: run on the worker's asyncio loop) or
    "stream" (a generator or async generator)."""
    # From the code object's flags, as inspect does, without importing
    # inspect (a dozen modules, in every worker: a zygote's forks would
    # each pay for them in private memory).
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    flags = getattr(code, "co_flags", 0)
    if flags & (_CO_GENERATOR | _CO_ASYNC_GENERATOR):
        return "stream"
    if flags & _CO_COROUTINE:
        return "async"
    return "plain"


# co_flags bits (Include/cpython/code.h), stable since Python 3.6.
_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200


def handler_table(module, raw=False):
    """The handlers a worker dispatches to, as {name: callable}; nothing
    else in the module's namespace is ever called.

    Raw mode: {"handle": module.handle}.  JSON mode: exactly the names in
    __all__ when the module defines it (each must name a callable in the
    module, else HandlerTableError); otherwise the module's own public
    functions: callables that are not classes, whose __module__ is the
    handler module and whose name does not start with "_".  Names are
    identifiers (str.isidentifier()) in either case.  A name the module
    imported (`from subprocess import getoutput`) is not a
    handler."""
    namespace = module.__dict__
    mname = getattr(module, "__name__", "?")
    if raw:
        handle = namespace.get("handle")
        if not callable(handle):
            raise HandlerTableError(
                "--raw needs a handle(payload) function in %r" % mname
            )
        return {"handle": handle}
    declared = {
        value._portpool_handler: value
        for value in list(namespace.values())
        if callable(value)
        and isinstance(getattr(value, "_portpool_handler", None), str)
        and getattr(value, "__module__", None) == mname
    }
    for key in declared:
        if key in HOOKS:
            raise HandlerTableError(
                "@handler in %r names %r, a lifecycle hook the worker calls "
                "itself: give the handler another name" % (mname, key)
            )
    if "__all__" not in namespace:
        if declared:
            return declared
        return {
            key: value
            for key, value in namespace.items()
            if not key.startswith("_")
            and key not in HOOKS
            and key.isidentifier()
            and callable(value)
            and not isinstance(value, type)
            and getattr(value, "__module__", None) == mname
        }
    names = namespace["__all__"]
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)):
        raise HandlerTableError(
            "__all__ in %r must be a list of handler names, not %s"
            % (mname, type(names).__name__)
        )
    table = {}
    for key in names:
        if type(key) is not str or not key.isidentifier():
            raise HandlerTableError(
                "__all__ in %r holds %r, which is not a name" % (mname, key)
            )
        if key not in namespace:
            raise HandlerTableError(
                "__all__ in %r names %r, which the module does not define"
                % (mname, key)
            )
        if not callable(namespace[key]):
            raise HandlerTableError(
                "__all__ in %r names %r, which is not callable (it is %s): "
                "remove it from __all__"
                % (mname, key, type(namespace[key]).__name__)
            )
        if key in HOOKS:
            raise HandlerTableError(
                "__all__ in %r names %r, a lifecycle hook the worker calls "
                "itself: remove it from __all__" % (mname, key)
            )
        table[key] = namespace[key]
    table.update(declared)
    return table


def _hello_payload(names, kinds=None, concurrency=1):
    """HELLO with the handler names, and the kind of each that is not plain
    ({"name": "async" | "stream"}), cut (and "handlers_truncated") if they
    would not fit max_frame; "concurrency" when it is more than 1."""
    kinds = kinds or {}
    hello = {
        "protocol": PROTOCOL_VERSION,
        "pid": os.getpid(),
        "runtime": "python %d.%d.%d" % sys.version_info[:3],
        "handlers": names,
        "kinds": {n: kinds[n] for n in names if kinds.get(n, "plain") != "plain"},
    }
    if concurrency > 1:
        hello["concurrency"] = concurrency
    payload = _encode(hello).encode()
    while len(payload) > _max_reply and names:
        names = names[: len(names) // 2]
        hello["handlers"] = names
        hello["kinds"] = {n: k for n, k in hello["kinds"].items() if n in names}
        hello["handlers_truncated"] = True
        payload = _encode(hello).encode()
    return payload


def main(argv=None):
    _orphan_proof()

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except Exception:
            pass

    args = list(sys.argv[1:] if argv is None else argv)
    raw = False
    if args and args[0] == "--raw":
        raw = True
        del args[0]
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write("usage: portpool_worker.py [--raw] HANDLER\n")
        return EXIT_STARTUP
    # Before the import: a bad setting fails fast, whatever the module does.
    if _concurrency() is None:
        return EXIT_STARTUP
    try:
        apply_limits()
    except LimitError as exc:
        return boot_failed(exc, "cannot apply its limits")

    try:
        module = _load_handler(args[0])
    except (Exception, SystemExit) as exc:
        return boot_failed(exc, "cannot import handler %r" % args[0])
    return serve_module(module, raw)


def serve_module(module, raw=False, forked=False):
    """Speak the protocol on fds 3 and 4 for an imported handler module:
    HELLO, then serve until EOF.  Used by main() and, after a fork, by the
    zygote (portpool_zygote.py).  Returns the exit status."""
    global _rfile, _max_reply
    try:
        os.set_inheritable(REQ_FD, False)
        os.set_inheritable(REP_FD, False)
        os.set_blocking(REQ_FD, True)
        os.set_blocking(REP_FD, True)
        _rfile = open(REQ_FD, "rb", buffering=0, closefd=False)
    except OSError as exc:
        sys.stderr.write(
            "portpool_worker: fds %d and %d must be the pool's pipes: %s\n"
            % (REQ_FD, REP_FD, exc)
        )
        return EXIT_STARTUP

    concurrency = _concurrency()
    if concurrency is None:
        return EXIT_STARTUP
    _stacks_on_sigusr1()
    try:
        _max_reply = min(_max_reply, int(os.environ["PORTPOOL_MAX_FRAME"]))
    except (KeyError, ValueError):
        pass

    try:
        table = handler_table(module, raw)
    except HandlerTableError as exc:
        return boot_failed(exc)
    # The hooks: after_fork() first in a zygote-forked worker, then
    # setup(); either raising (or calling sys.exit()) is a boot failure.
    for hook in (("after_fork",) if forked else ()) + ("setup",):
        fn = getattr(module, hook, None)
        if fn is None:
            continue
        try:
            fn()
        except (Exception, SystemExit) as exc:
            return boot_failed(exc, "%s() failed" % hook)
    global _module, _conc
    _module = module
    # The mode is chosen once, here: N = 1 keeps the one-at-a-time frame
    # loop (_serve) untouched; N > 1 serves from an asyncio loop.
    launch = None
    if concurrency > 1:
        _conc = _Concurrent(concurrency)
        launch = _conc.launch
    if raw:
        run = _make_raw_runner(table["handle"], launch)
    else:
        run = _make_json_runner(table, launch)

    _send(
        HELLO,
        0,
        _hello_payload(
            sorted(table),
            {n: handler_kind(f) for n, f in table.items()},
            concurrency,
        ),
    )
    try:
        if _conc is None:
            _serve(run)
        else:
            _conc.serve(run)
        _teardown()
    finally:
        # EOF, or a handler's sys.exit(): nothing we started stays behind.
        _kill_group_members()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
