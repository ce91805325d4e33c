#!/usr/bin/env python3
"""drive_worker -- a dev tool and quick self-test for the Python side of the
bridge: bridge/python/portpool_worker.py, the bundled example handlers and
the fixtures under fixtures/.

Usage: python3 tests/drive_worker.py [-v] [CHECK...]

It spawns workers the way the pool does (requests on fd 3, replies on fd 4,
stdin /dev/null, stdout/stderr pipes, PORTPOOL_PARENT_PID set), speaks the
framing of bridge/frame.h to them, prints one line per check and exits 0
when every check passes.  Nothing waits with sleep: each wait is for a frame,
EOF or a process exit, with a timeout that only fires on failure.
"""

import json
import os
import select
import signal
import struct
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "bridge", "python", "portpool_worker.py")
FIXTURES = os.path.join(ROOT, "fixtures")
PYTHON = os.path.realpath(sys.executable)
TIMEOUT = 10.0  # seconds; only reached when something is broken

HELLO, REQUEST, REPLY, ERROR, PING, PONG, CANCEL = 1, 2, 3, 4, 5, 6, 7
HDR = struct.Struct(">IBBHI")
RUNTIME = "python %d.%d.%d" % sys.version_info[:3]
UNKNOWN_KEYS = ("handlers", "suggestion")
ECHO_HANDLERS = sorted(
    "add big cancelled_sleep countdown crash deadline_left echo env fail gate grow kill_self noisy pid reverse_bytes sleep".split()
)

# A handler module for edge cases the fixtures do not cover.
EXTRAS = r'''
"""Edge cases for drive_worker."""
import os
import sys
from os.path import join  # imported: callable, but not advertised

import portpool_worker


class Thing:
    pass


def unserialisable(args):
    return {1, 2}


def nan(args):
    return float("nan")


def surrogate(args):
    raise ValueError("bad \udcff text")


def whoami(args):
    return {
        "id": portpool_worker.current_request_id,
        # One module: the one whose main loop runs this handler.
        "same_module": portpool_worker is sys.modules["_portpool_worker"],
        "cancelled": portpool_worker.cancelled(),
    }


def inherit(args):
    return [os.get_inheritable(3), os.get_inheritable(4)]


def exit_with(args):
    sys.exit(args)


def _private(args):
    return "private"
'''


class CheckFailed(Exception):
    pass


def check(cond, message="check failed"):
    if not cond:
        raise CheckFailed(message)


def frame(ftype, rid, payload=b"", flags=0):
    return HDR.pack(len(payload) + 8, ftype, flags, 0, rid) + payload


def request(rid, cmd, args=None, omit_args=False):
    body = {"cmd": cmd} if omit_args else {"cmd": cmd, "args": args}
    return frame(REQUEST, rid, json.dumps(body).encode())


class Worker:
    """A child process with the pool's descriptor layout."""

    def __init__(self, argv, env=None, parent_pid=None, leader=False):
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        # Move the child's ends above 10, so that dup2 onto 3 and 4 cannot
        # clobber one of them first.  Everything here is close-on-exec.
        child = []
        for fd in (req_r, rep_w, out_w, err_w):
            child.append(_dup_high(fd))
            os.close(fd)
        c_req, c_rep, c_out, c_err = child
        full_env = dict(os.environ)
        full_env["PORTPOOL_PARENT_PID"] = str(
            os.getpid() if parent_pid is None else parent_pid
        )
        full_env.update(env or {})
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, c_out, 1),
            (os.POSIX_SPAWN_DUP2, c_err, 2),
            (os.POSIX_SPAWN_DUP2, c_req, 3),
            (os.POSIX_SPAWN_DUP2, c_rep, 4),
        ]
        try:
            # leader: a group of its own, as the pool spawns workers.
            self.pid = os.posix_spawn(
                argv[0],
                argv,
                full_env,
                file_actions=actions,
                **({"setpgroup": 0} if leader else {}),
            )
        finally:
            for fd in child:
                os.close(fd)
        self.pidfd = os.pidfd_open(self.pid)
        self.w = req_w
        self.r = rep_r
        self.out_r = out_r
        self.err_r = err_r
        self.rbuf = bytearray()
        self.status = None
        self.out = b""
        self.err = b""

    # -- frames ---------------------------------------------------------

    def send_raw(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self.w, view) :]

    def send(self, ftype, rid, payload=b""):
        self.send_raw(frame(ftype, rid, payload))

    def _fill(self, deadline):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CheckFailed("timed out waiting for the worker")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                break
        data = os.read(self.r, 65536)
        self.rbuf += data
        return bool(data)

    def recv(self, timeout=TIMEOUT):
        """The next frame as (type, flags, id, payload), or None at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.rbuf) >= 12:
                length, ftype, flags, zero, rid = HDR.unpack_from(self.rbuf, 0)
                check(length >= 8 and zero == 0, "bad header from worker")
                if len(self.rbuf) >= length + 4:
                    payload = bytes(self.rbuf[12 : length + 4])
                    del self.rbuf[: length + 4]
                    return ftype, flags, rid, payload
            if not self._fill(deadline):
                check(not self.rbuf, "EOF in the middle of a frame")
                return None

    def recv_bytes(self, timeout=TIMEOUT):
        """Everything the worker writes to fd 4 until EOF, unparsed."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        data = bytes(self.rbuf)
        self.rbuf.clear()
        return data

    def expect(self, ftype, rid, timeout=TIMEOUT):
        f = self.recv(timeout)
        check(f is not None, "worker closed fd 4 (expected a frame)")
        check(
            f[0] == ftype and f[2] == rid,
            "expected frame type %d id %d, got type %d id %d payload %r"
            % (ftype, rid, f[0], f[2], f[3][:200]),
        )
        return f[3]

    def expect_reply(self, rid):
        return json.loads(self.expect(REPLY, rid))

    def expect_error(self, rid, etype, extra=()):
        err = json.loads(self.expect(ERROR, rid))
        check(
            set(err) == {"type", "message", "traceback", *extra},
            "ERROR keys %r" % sorted(err),
        )
        check(err["type"] == etype, "error type %r, wanted %r" % (err["type"], etype))
        return err

    def hello(self, protocol=2):
        h = json.loads(self.expect(HELLO, 0))
        check(h["protocol"] == protocol, "protocol %r" % h.get("protocol"))
        check(h["pid"] == self.pid, "HELLO pid %r != %d" % (h.get("pid"), self.pid))
        check(h["runtime"] == RUNTIME, "runtime %r" % h.get("runtime"))
        check(isinstance(h["handlers"], list), "handlers not a list")
        keys = {"protocol", "pid", "runtime", "handlers"}
        if protocol >= 2:
            keys.add("kinds")
        if "concurrency" in h:  # said only when above 1
            check(isinstance(h["concurrency"], int) and h["concurrency"] > 1,
                  "concurrency %r" % h["concurrency"])
            keys.add("concurrency")
        check(set(h) == keys, "HELLO keys %r" % sorted(h))
        return h

    # -- process --------------------------------------------------------

    def close_requests(self):
        if self.w is not None:
            os.close(self.w)
            self.w = None

    def wait(self, timeout=TIMEOUT):
        """Wait for exit; returns the exit code, or -signal."""
        if self.status is None:
            ready, _, _ = select.select([self.pidfd], [], [], timeout)
            check(ready, "worker did not exit within %.0f s" % timeout)
            _, status = os.waitpid(self.pid, 0)
            self.status = os.waitstatus_to_exitcode(status)
            self.out = _read_all(self.out_r)
            self.err = _read_all(self.err_r)
        return self.status

    def finish(self):
        """EOF on fd 3 must make the worker exit 0."""
        self.close_requests()
        code = self.wait()
        check(
            code == 0,
            "exit status %r after EOF, stderr: %r" % (code, self.err[-500:]),
        )

    def cleanup(self):
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.close_requests()
            self.wait()
        for fd in (self.r, self.out_r, self.err_r, self.pidfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.close_requests()


def _dup_high(fd):
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


def _read_all(fd):
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], TIMEOUT)
        check(ready, "output pipe not closed")
        data = os.read(fd, 65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


_workers = []


def spawn(
    handler, *, raw=False, env=None, parent_pid=None, script=WORKER, leader=False
):
    argv = [PYTHON, script]
    if raw:
        argv.append("--raw")
    argv.append(handler)
    w = Worker(argv, env=env, parent_pid=parent_pid, leader=leader)
    _workers.append(w)
    return w


def fixture(name):
    return os.path.join(FIXTURES, name)


# ---------------------------------------------------------------------------
# Checks.  Each is a function; its docstring is the line printed.


def check_hello_echo_add():
    """HELLO payload, echo and add round trips, args absent -> null"""
    w = spawn(fixture("echo_handlers.py"))
    h = w.hello()
    check(h["handlers"] == ECHO_HANDLERS, "handlers %r" % h["handlers"])
    value = {"a": [1, 2.5, "\u00e9\u4e2d", None, True], "b": {"c": ""}}
    w.send_raw(request(1, "echo", value))
    payload = w.expect(REPLY, 1)
    check(payload == json.dumps(value, separators=(",", ":")).encode(), "compact JSON")
    check(json.loads(payload) == value, "echo value")
    w.send_raw(request(2, "add", {"a": 40, "b": 2}))
    check(w.expect_reply(2) == 42, "add")
    w.send_raw(request(0xFFFFFFFF, "echo", omit_args=True))
    check(w.expect(REPLY, 0xFFFFFFFF) == b"null", "args absent")
    w.finish()


def check_errors():
    """ERROR frames: handler exception, unknown command, bad requests"""
    w = spawn(fixture("echo_handlers.py"))
    w.hello()
    w.send_raw(request(5, "fail", 7))
    err = w.expect_error(5, "ValueError")
    check(err["message"] == "boom: 7", "message %r" % err["message"])
    check("in fail" in err["traceback"], "traceback names the handler")
    check(err["traceback"].rstrip().endswith("ValueError: boom: 7"), "traceback end")
    check("portpool_worker" not in err["traceback"], "worker frames left out")
    for rid, cmd in ((6, "nope"), (7, "_private"), (8, "os"), (9, "__name__")):
        w.send_raw(request(rid, cmd))
        err = w.expect_error(rid, "UnknownCommand", UNKNOWN_KEYS)
        check(cmd in err["message"], "message names the command")
    bad = [
        b"not json",
        b"[1,2]",
        b'{"args":1}',
        b'{"cmd":5}',
        b"\xff\xfe",
        b"",
        b"null",
        # Nested past the interpreter's recursion limit: the scanner raises
        # RecursionError, which must not end the worker.
        b"[" * 100000 + b"]" * 100000,
        b'{"cmd":"echo","args":' + b"[" * 100000 + b"]" * 100000 + b"}",
    ]
    for i, payload in enumerate(bad):
        w.send(REQUEST, 100 + i, payload)
        w.expect_error(100 + i, "BadRequest")
    # The worker survived all of it.
    w.send_raw(request(200, "echo", "still here"))
    check(w.expect_reply(200) == "still here", "alive after errors")
    w.finish()


def check_extras():
    """result not serialisable, NaN, surrogates, current_request_id, fds"""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "extras.py")
        with open(path, "w") as f:
            f.write(EXTRAS)
        w = spawn(path)
        h = w.hello()
        check(
            h["handlers"]
            == ["exit_with", "inherit", "nan", "surrogate", "unserialisable", "whoami"],
            "handlers %r" % h["handlers"],
        )
        w.send_raw(request(1, "unserialisable"))
        err = w.expect_error(1, "TypeError")
        check("not JSON serializable" in err["message"], err["message"])
        w.send_raw(request(2, "nan"))
        w.expect_error(2, "ValueError")
        w.send_raw(request(3, "surrogate"))
        err = w.expect_error(3, "ValueError")
        check("\\udcff" in err["message"], "surrogate escaped: %r" % err["message"])
        w.send_raw(request(77, "whoami"))
        me = w.expect_reply(77)
        check(me == {"id": 77, "same_module": True, "cancelled": False}, repr(me))
        w.send_raw(request(4, "inherit"))
        check(w.expect_reply(4) == [False, False], "fds 3/4 are close-on-exec")
        # Only what HELLO lists is dispatched: not an imported function,
        # not a class.
        w.send_raw(request(5, "join", "a"))
        err = w.expect_error(5, "UnknownCommand", UNKNOWN_KEYS)
        check(err["handlers"] == h["handlers"], "handlers %r" % err["handlers"])
        w.send_raw(request(6, "Thing", 1))
        w.expect_error(6, "UnknownCommand", UNKNOWN_KEYS)
        w.send_raw(request(7, "exit_with", 5))
        check(w.wait() == 5, "sys.exit(5) in a handler exits 5")


def check_declared_only():
    """imported callables are not handlers: getoutput never runs"""
    with tempfile.TemporaryDirectory() as tmp:
        marker = os.path.join(tmp, "ran")
        w = spawn(fixture("hostile_handlers.py"))
        h = w.hello()
        check("getoutput" not in h["handlers"], "handlers %r" % h["handlers"])
        check("echo" in h["handlers"] and "surrogate" in h["handlers"], "own ones")
        for rid, cmd in enumerate(("getoutput", "subprocess", "os", "Popen"), 1):
            w.send_raw(request(rid, cmd, "touch " + marker))
            err = w.expect_error(rid, "UnknownCommand", UNKNOWN_KEYS)
            check(err["handlers"] == h["handlers"], "handlers in the error")
        w.send_raw(request(9, "echo", 1))
        check(w.expect_reply(9) == 1, "alive")
        w.finish()
        check(not os.path.exists(marker), "getoutput ran a shell command")


ALL_MODULE = r'''
from os.path import join
__all__ = ["echo", "join", "_hidden"]


def echo(args):
    return args


def public_but_not_listed(args):
    return "no"


def _hidden(args):
    return "hidden"
'''


def check_dunder_all():
    """__all__ is exactly the table; a bad entry is a start-up error"""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "with_all.py")
        with open(path, "w") as f:
            f.write(ALL_MODULE)
        w = spawn(path)
        h = w.hello()
        check(h["handlers"] == ["_hidden", "echo", "join"], repr(h["handlers"]))
        w.send_raw(request(1, "join", ["a", "b"]))
        w.expect_error(1, "TypeError")  # join(["a", "b"]): it did run
        w.send_raw(request(2, "_hidden"))
        check(w.expect_reply(2) == "hidden", "listed private name")
        w.send_raw(request(3, "public_but_not_listed"))
        w.expect_error(3, "UnknownCommand", UNKNOWN_KEYS)
        w.finish()
        cases = [
            ('__all__ = ["echo", "missing"]', b"'missing', which the module does not"),
            ('__all__ = ["echo", "V"]\nV = 3', b"'V', which is not callable (it is int)"),
            ('__all__ = "echo"', b"must be a list of handler names, not str"),
            ('__all__ = ["echo", 5]', b"holds 5, which is not a name"),
            ('__all__ = ["\\x1b[2J"]', b"holds '\\x1b[2J', which is not a name"),
        ]
        for i, (text, needle) in enumerate(cases):
            path = os.path.join(tmp, "bad_all_%d.py" % i)
            with open(path, "w") as f:
                f.write("def echo(args):\n    return args\n" + text + "\n")
            w = spawn(path)
            err = w.expect_error(0, "HandlerTableError")
            check(needle.decode() in err["message"], "%s: ERROR %r" % (text, err))
            check(w.recv() is None, "%s: no HELLO" % text)
            check(w.wait() == 1, "%s: exit %r" % (text, w.status))


def check_hello_fits():
    """a handler list over max_frame is cut in HELLO, and says so"""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "many.py")
        with open(path, "w") as f:
            for i in range(200):
                f.write("def handler_with_a_long_name_%03d(args):\n" % i)
                f.write("    return %d\n" % i)
        w = spawn(path, env={"PORTPOOL_MAX_FRAME": "1024"})
        payload = w.expect(HELLO, 0)
        check(len(payload) <= 1024, "HELLO of %d bytes" % len(payload))
        h = json.loads(payload)
        check(h.get("handlers_truncated") is True, "no handlers_truncated")
        check(0 < len(h["handlers"]) < 200, "%d handlers" % len(h["handlers"]))
        # Every handler is still served, listed or not.
        w.send_raw(request(1, "handler_with_a_long_name_199"))
        check(w.expect_reply(1) == 199, "the last handler")
        w.finish()


def check_zygote_bad_all():
    """zygote: a bad __all__ reaches the pool as each forked worker's boot failure"""
    import array
    import socket

    zygote = os.path.join(ROOT, "bridge", "python", "portpool_zygote.py")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bad_all.py")
        with open(path, "w") as f:
            f.write('__all__ = ["echo", "missing"]\n')
            f.write("def echo(args):\n    return args\n")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, PORTPOOL_PARENT_PID=str(os.getpid()))
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, theirs.fileno(), 3),
        ]
        argv = [PYTHON, zygote, path]
        pid = os.posix_spawn(PYTHON, argv, env, file_actions=actions)
        theirs.close()
        fds = array.array("i")
        try:
            ours.settimeout(TIMEOUT)
            check(ours.recv(64) == b"R", "the zygote did not say it was ready")
            ours.send(b"F" + struct.pack(">II", 0, 1))
            msg, anc, _, _ = ours.recvmsg(64, socket.CMSG_SPACE(4 * 4))
            check(msg[:1] == b"W", "fork answer %r" % msg)
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % 4])
            check(len(fds) == 4, "fds %r" % list(fds))
            data = _read_all(fds[1])
            length, ftype, _, _, rid = HDR.unpack_from(data, 0)
            check(ftype == ERROR and rid == 0, "frame type %d id %d" % (ftype, rid))
            err = json.loads(data[12 : length + 4])
            check(err["type"] == "HandlerTableError", repr(err))
            check("'missing', which the module does not define" in err["message"], repr(err))
            check(len(data) == length + 4, "more after the boot failure")
        finally:
            ours.close()
            for fd in fds:
                os.close(fd)
            os.waitpid(pid, 0)


def check_unknown_suggests():
    """UnknownCommand lists the handlers and suggests the nearest"""
    w = spawn(fixture("echo_handlers.py"))
    w.hello()
    w.send_raw(request(1, "ech"))
    err = w.expect_error(1, "UnknownCommand", UNKNOWN_KEYS)
    check(err["suggestion"] == "echo", "suggestion %r" % err["suggestion"])
    check(err["handlers"] == ECHO_HANDLERS, "handlers %r" % err["handlers"])
    check("did you mean 'echo'?" in err["message"], err["message"])
    check("add, big, cancelled_sleep" in err["message"], err["message"])
    w.send_raw(request(2, "zzzzzzzz"))
    err = w.expect_error(2, "UnknownCommand", UNKNOWN_KEYS)
    check(err["suggestion"] is None, "suggestion %r" % err["suggestion"])
    check("did you mean" not in err["message"], err["message"])
    w.finish()


def check_reply_is_json():
    """a lone surrogate in a result is an ERROR, never invalid JSON"""
    w = spawn(fixture("hostile_handlers.py"))
    w.hello()
    w.send_raw(request(1, "surrogate"))
    err = w.expect_error(1, "ValueError")
    check("lone surrogate (\\ud800)" in err["message"], err["message"])
    # Pairs are fine, and so is an escaped backslash before "ud800".
    values = ("\U0001f600", "\\ud800", {"k\u00e9": "\U0001f600"})
    for rid, value in enumerate(values, 2):
        w.send_raw(request(rid, "echo", value))
        check(w.expect_reply(rid) == value, "echo %r" % (value,))
    w.finish()


def check_error_fits():
    """ERROR frames are cut to fit max_frame, keeping type and the end"""
    limit = 1024
    w = spawn(fixture("hostile_handlers.py"), env={"PORTPOOL_MAX_FRAME": str(limit)})
    w.hello()
    for rid, n in enumerate((400, 600, 5000, 200000), 1):
        w.send_raw(request(rid, "raise_long", n))
        payload = w.expect(ERROR, rid)
        check(len(payload) <= limit, "ERROR of %d bytes" % len(payload))
        err = json.loads(payload)
        check(err["type"] == "ValueError", "type %r" % err["type"])
        check(err["message"].startswith("mmmm"), "message %r" % err["message"][:40])
        check(err["traceback"].rstrip().endswith("mmmm"), "end of the traceback")
        if n >= 600:
            check(err.get("truncated") is True, "truncated flag for %d" % n)
            check("characters cut" in err["message"], "note in the message")
            check(err["traceback"].startswith("["), "the traceback's head cut")
    w.send_raw(request(9, "echo", "alive"))
    check(w.expect_reply(9) == "alive", "worker lives on")
    w.finish()


def check_ping():
    """PING -> PONG with the same id and an empty payload"""
    w = spawn(fixture("echo_handlers.py"))
    w.hello()
    for rid in (0, 1, 0xDEADBEEF):
        w.send(PING, rid)
        check(w.expect(PONG, rid) == b"", "empty PONG")
    w.finish()


def check_pipelined_and_split():
    """pipelined requests answered in order; a frame written byte by byte"""
    w = spawn(fixture("echo_handlers.py"))
    w.hello()
    batch = b"".join(request(i, "echo", i) for i in range(1, 201))
    batch += frame(PING, 999)
    w.send_raw(batch)
    for i in range(1, 201):
        check(w.expect_reply(i) == i, "reply %d" % i)
    w.expect(PONG, 999)
    data = request(300, "echo", "slow") + frame(PING, 301)
    for i in range(len(data)):
        w.send_raw(data[i : i + 1])
    check(w.expect_reply(300) == "slow", "split request")
    w.expect(PONG, 301)
    w.finish()


def check_big():
    """big replies and requests around and far above the 64 KiB buffer"""
    w = spawn(fixture("echo_handlers.py"))
    w.hello()
    w.send_raw(request(1, "big", 70000))
    check(w.expect_reply(1) == "x" * 70000, "big reply")
    overhead = len(request(0, "echo", ""))  # frame bytes for an empty string
    rid = 10
    for total in (65535, 65536, 65537, 131072, 300000):
        s = "y" * (total - overhead)
        check(len(request(rid, "echo", s)) == total, "frame size %d" % total)
        # A small frame first, so the big one starts mid-buffer.
        w.send_raw(
            request(rid, "echo", "a")
            + request(rid + 1, "echo", s)
            + frame(PING, rid + 2)
        )
        check(w.expect_reply(rid) == "a", "small before big")
        check(w.expect_reply(rid + 1) == s, "big echo of %d bytes" % total)
        w.expect(PONG, rid + 2)
        rid += 3
    w.finish()


def check_noisy():
    """noisy handler: prints reach stdout/stderr, never fd 4"""
    w = spawn(fixture("echo_handlers.py"))
    w.hello()
    w.send_raw(request(1, "noisy"))
    check(w.expect_reply(1) == "quiet", "noisy result")
    w.send(PING, 2)
    w.expect(PONG, 2)
    w.finish()
    check(b"noise on stdout" in w.out, "stdout %r" % w.out)
    check(w.out.endswith(b"noise without newline on stdout"), "stdout tail")
    check(b"\x00\x00\x00\x08\x03" in w.out, "fake header on stdout")
    check(b"noise on stderr" in w.err, "stderr %r" % w.err)
    check(w.err.endswith(b"noise without newline on stderr"), "stderr tail")


def check_env_pid():
    """env and pid handlers see the worker's environment and pid"""
    w = spawn(fixture("echo_handlers.py"), env={"PP_DRIVE_MARK": "m4rk"})
    w.hello()
    names = ["PP_DRIVE_MARK", "PP_DRIVE_UNSET", "PORTPOOL_PARENT_PID"]
    w.send_raw(request(1, "env", names))
    env = w.expect_reply(1)
    want = dict(zip(names, ["m4rk", None, str(os.getpid())]))
    check(env == want, repr(env))
    w.send_raw(request(2, "pid"))
    check(w.expect_reply(2) == w.pid, "pid")
    w.finish()


def check_cancel():
    """CANCEL: running request, queued request, PONG while busy, stale id"""
    w = spawn(fixture("echo_handlers.py"))
    w.hello()
    # CANCEL right behind its REQUEST (likely in the same read).
    w.send_raw(request(1, "cancelled_sleep", 30) + frame(CANCEL, 1))
    check(w.expect_reply(1) == "cancelled", "cancelled in the same read")
    # While the handler runs it polls: a PING is answered before the reply,
    # then a CANCEL ends it.
    w.send_raw(request(2, "cancelled_sleep", 30))
    w.send(PING, 77)
    w.expect(PONG, 77)
    w.send(CANCEL, 2)
    check(w.expect_reply(2) == "cancelled", "cancelled while running")
    # A queued request cancelled before it ran gets ERROR Cancelled.
    w.send_raw(
        request(3, "cancelled_sleep", 30)
        + request(4, "echo", 4)
        + frame(CANCEL, 4)
        + frame(CANCEL, 3)
    )
    check(w.expect_reply(3) == "cancelled", "running one")
    w.expect_error(4, "Cancelled")
    # Same with a request that would have failed: the id is forgotten after.
    w.send_raw(
        request(6, "cancelled_sleep", 30)
        + request(7, "no_such_command")
        + frame(CANCEL, 7)
        + frame(CANCEL, 6)
    )
    check(w.expect_reply(6) == "cancelled", "running one")
    w.expect_error(7, "Cancelled")
    w.send_raw(request(7, "echo", 7))
    check(w.expect_reply(7) == 7, "id 7 reused, not cancelled")
    # A stale CANCEL (for a finished request) is forgotten: the id reused
    # later is not born cancelled.
    w.send(CANCEL, 5)
    w.send_raw(request(5, "cancelled_sleep", 0.03))
    check(w.expect_reply(5) == "done", "stale cancel ignored")
    w.finish()


def deadline_request(rid, cmd, args, at_ns):
    body = json.dumps({"cmd": cmd, "args": args}).encode()
    return frame(REQUEST, rid, struct.pack(">Q", at_ns) + body, flags=1)


def check_deadline():
    """Protocol 2: a REQUEST's deadline, deadline()/remaining(), and a
    request past it not run"""
    w = spawn(fixture("echo_handlers.py"))
    w.hello()
    now = time.monotonic_ns()
    w.send_raw(deadline_request(1, "deadline_left", None, now + 10 * 10**9))
    has, left = w.expect_reply(1)
    check(has and 9.0 < left <= 10.0, "remaining %r" % left)
    w.send_raw(request(2, "deadline_left"))
    check(w.expect_reply(2) == [False, None], "no deadline, none seen")
    # Past its deadline on arrival: not run.
    w.send_raw(deadline_request(3, "echo", 3, time.monotonic_ns() - 1))
    w.expect_error(3, "DeadlineExceeded")
    # Its deadline passes while it waits behind a slower request.
    now = time.monotonic_ns()
    w.send_raw(
        request(4, "sleep", 0.3)
        + deadline_request(5, "echo", 5, now + 100 * 10**6)
        + deadline_request(6, "echo", 6, now + 60 * 10**9)
    )
    check(w.expect_reply(4) == 0.3, "the slow one")
    w.expect_error(5, "DeadlineExceeded")
    check(w.expect_reply(6) == 6, "the one still in time")
    # The flag on a payload too short to hold a deadline.
    w.send_raw(frame(REQUEST, 7, b"1234", flags=1))
    w.expect_error(7, "BadRequest")
    w.finish()


def check_exits():
    """crash -> exit 3 / 7, kill_self -> SIGKILL, EOF -> 0"""
    for args, want in ((None, 3), (7, 7)):
        w = spawn(fixture("echo_handlers.py"))
        w.hello()
        w.send_raw(request(1, "crash", args))
        check(w.recv() is None, "no reply from a crash")
        check(w.wait() == want, "crash exit %r, wanted %d" % (w.status, want))
    w = spawn(fixture("echo_handlers.py"))
    w.hello()
    w.send_raw(request(1, "kill_self"))
    check(w.recv() is None, "no reply")
    check(w.wait() == -signal.SIGKILL, "killed by SIGKILL, got %r" % w.status)
    w = spawn(fixture("echo_handlers.py"))
    w.hello()
    w.finish()
    check(w.err == b"", "quiet exit, stderr %r" % w.err)


def check_protocol_errors():
    """frames the pool must not send -> stderr message and exit 2"""
    cases = [
        ("REPLY to the worker", frame(REPLY, 1, b"{}")),
        ("HELLO to the worker", frame(HELLO, 0)),
        ("type 99", frame(99, 1)),
        ("length 3", b"\x00\x00\x00\x03" + b"\x02" * 8),
        ("reserved bits", HDR.pack(8, REQUEST, 0, 1, 1)),
    ]
    for name, data in cases:
        w = spawn(fixture("echo_handlers.py"))
        w.hello()
        w.send_raw(data)
        check(w.recv() is None, "%s: no frame back" % name)
        check(w.wait() == 2, "%s: exit %r, wanted 2" % (name, w.status))
        check(b"protocol error" in w.err, "%s: stderr %r" % (name, w.err))


def check_raw():
    """--raw mode: bytes pass through verbatim, PING, big payloads"""
    w = spawn(fixture("raw_echo.py"), raw=True)
    check(w.hello()["handlers"] == ["handle"], "raw mode's one handler")
    payloads = [b"", b"\x00\xff\x00binary", bytes(range(256)) * 1000, b"{not json"]
    for rid, payload in enumerate(payloads):
        w.send(REQUEST, rid, payload)
        check(w.expect(REPLY, rid) == payload, "raw payload %d" % rid)
    w.send(PING, 9)
    w.expect(PONG, 9)
    w.finish()


def check_startup_failures():
    """boot failures: one ERROR frame (id 0, with the traceback) instead of HELLO, exit 1"""
    echo = fixture("echo_handlers.py")
    cases = [
        ("--raw without handle()", dict(handler=echo, raw=True), "HandlerTableError", "handle"),
        ("import_error.py", dict(handler=fixture("import_error.py")), "ImportError",
         "import_error.py"),
        ("missing file", dict(handler=fixture("no_such_file.py")), "FileNotFoundError",
         "No such file"),
        ("missing module", dict(handler="no_such_mod_pp"), "ModuleNotFoundError",
         "no_such_mod_pp"),
        ("exit_zero_on_import", dict(handler=fixture("exit_zero_on_import.py")), "SystemExit",
         "sys.exit(0)"),
    ]
    for name, kw, etype, needle in cases:
        w = spawn(**kw)
        err = w.expect_error(0, etype)
        check(needle in err["message"] + err["traceback"], "%s: ERROR %r" % (name, err))
        check(w.recv() is None, "%s: more after the boot failure" % name)
        check(w.wait() == 1, "%s: exit %r, wanted 1" % (name, w.status))
        check(b"Traceback" not in w.err, "%s: traceback also on stderr" % name)
    w = spawn(handler=echo, parent_pid=1)
    check(w.recv_bytes() == b"", "parent already gone: wrote to fd 4")
    check(w.wait() == 1, "parent already gone: exit %r, wanted 1" % (w.status,))
    w = Worker([PYTHON, WORKER])
    _workers.append(w)
    check(w.recv_bytes() == b"" and w.wait() == 1 and b"usage" in w.err, "usage error")


def check_limits():
    """limits: PORTPOOL_LIMITS set before the import, a bad one is a LimitError boot failure; PORTPOOL_HOLD waits for G or E on fd 3"""
    handlers = fixture("limits_handlers.py")
    w = spawn(handlers, env={"PORTPOOL_LIMITS": "nofile=64:64,cpu=100:101,core=0:0"})
    w.hello()
    w.send_raw(request(1, "limits"))
    got = w.expect_reply(1)
    for word in ("nofile=64:64", "cpu=100:101", "core=0:0"):
        check(word in got, "limits: %r has no %s" % (got, word))
    w.finish()
    # Above fs.nr_open: no process may set it, root included.
    w = spawn(handlers, env={"PORTPOOL_LIMITS": "nofile=4000000000:4000000000"})
    err = w.expect_error(0, "LimitError")
    check("worker.limits.nofile" in err["message"], "LimitError %r" % err)
    check(w.wait() == 1, "bad limit: exit %r, wanted 1" % (w.status,))
    # Held: released with G, it says HELLO; refused with E, the reason is
    # its boot failure.
    w = spawn(handlers, env={"PORTPOOL_HOLD": "1"})
    os.write(w.w, b"G")
    w.hello()
    w.finish()
    w = spawn(handlers, env={"PORTPOOL_HOLD": "1"})
    os.write(w.w, b"Eworker.memory_max: cannot move it")
    err = w.expect_error(0, "LimitError")
    check(err["message"] == "worker.memory_max: cannot move it", "E: %r" % err)
    check(w.wait() == 1, "refused: exit %r, wanted 1" % (w.status,))


def check_slow_start():
    """slow_start.py says HELLO after its import delay"""
    t0 = time.monotonic()
    w = spawn(fixture("slow_start.py"), env={"PP_SLOW_START": "0.2"})
    h = w.hello()
    check(time.monotonic() - t0 >= 0.2, "HELLO came before the delay")
    check(h["handlers"] == ["echo"], repr(h["handlers"]))
    w.send_raw(request(1, "echo", "hi"))
    check(w.expect_reply(1) == "hi", "echo")
    w.finish()


def check_example_handlers():
    """example_handlers by module name: echo, add, upper, sleep, pid, info"""
    w = spawn("example_handlers")
    h = w.hello()
    want = ["add", "echo", "info", "pid", "sleep", "upper"]
    check(h["handlers"] == want, repr(h["handlers"]))
    w.send_raw(request(1, "echo", [1]))
    check(w.expect_reply(1) == [1], "echo")
    w.send_raw(request(2, "add", {"a": "x", "b": "y"}))
    check(w.expect_reply(2) == "xy", "add")
    w.send_raw(request(3, "upper", "abc"))
    check(w.expect_reply(3) == "ABC", "upper")
    w.send_raw(request(4, "upper", 5))
    w.expect_error(4, "TypeError")
    w.send_raw(request(5, "sleep", 0.01))
    check(w.expect_reply(5) == 0.01, "sleep")
    w.send_raw(request(6, "pid"))
    check(w.expect_reply(6) == w.pid, "pid")
    w.send_raw(request(7, "info"))
    info = w.expect_reply(7)
    check(info["pid"] == w.pid and "python " + info["python"] == RUNTIME, repr(info))
    w.finish()


def check_max_frame():
    """PORTPOOL_MAX_FRAME: a reply over it becomes ERROR FrameTooBig"""
    w = spawn(fixture("echo_handlers.py"), env={"PORTPOOL_MAX_FRAME": "1000"})
    w.hello()
    w.send_raw(request(1, "big", 998))
    check(w.expect_reply(1) == "x" * 998, "1000 bytes fit")
    w.send_raw(request(2, "big", 999))
    err = w.expect_error(2, "FrameTooBig")
    check(
        err["message"] == "result of 1001 bytes exceeds worker.max_frame (1000 bytes)",
        err["message"],
    )
    w.finish()


def check_parent_death():
    """parent killed with SIGKILL -> worker dies (PR_SET_PDEATHSIG)"""
    # An intermediate parent spawns the worker with fds 3/4 inherited and is
    # killed.  We keep fd 3 open, so the worker cannot be leaving on EOF; a
    # pidfd (opened while the worker is surely alive, so its pid is not yet
    # reused) tells when it has exited.
    script = (
        "import os, signal, sys\n"
        "env = dict(os.environ, PORTPOOL_PARENT_PID=str(os.getpid()))\n"
        "os.posix_spawn(sys.executable, [sys.executable] + sys.argv[1:], env)\n"
        "signal.pause()\n"
    )
    mid = Worker([PYTHON, "-c", script, WORKER, fixture("echo_handlers.py")])
    _workers.append(mid)
    h = json.loads(mid.expect(HELLO, 0))
    check(h["pid"] != mid.pid, "HELLO from the grandchild")
    pidfd = os.pidfd_open(h["pid"])
    try:
        os.kill(mid.pid, signal.SIGKILL)
        check(mid.wait() == -signal.SIGKILL, "intermediate killed")
        ready, _, _ = select.select([pidfd], [], [], TIMEOUT)
        check(ready, "worker outlived its parent")
    finally:
        os.close(pidfd)
    check(mid.recv() is None, "worker's fd 4 closed")


def check_bad_worker():
    """fixtures/bad_worker.py: each MODE misbehaves as documented"""
    bad = fixture("bad_worker.py")

    def start(mode, hello=True):
        w = spawn(mode, script=bad)
        if hello:
            w.hello(protocol=1)  # an older worker: the pool still takes it
        return w

    w = start("garbage")
    w.send_raw(request(1, "echo", 1))
    w.close_requests()
    data = w.recv_bytes()
    check(len(data) == 63 and HDR.unpack_from(data)[0] == 5, "garbage: length 5")
    check(w.wait() == 0, "garbage exits 0 on EOF")

    def first_bytes(mode):
        w = start(mode)
        w.send(PING, 50)
        w.expect(PONG, 50)
        w.send_raw(request(1, "echo", 1))
        w.close_requests()
        data = w.recv_bytes()
        check(w.wait() == 0, "%s exits 0, got %r" % (mode, w.status))
        return data

    data = first_bytes("oversize")
    check(data == HDR.pack(0x7FFFFFFF, REPLY, 0, 0, 1), "oversize header %r" % data)
    data = first_bytes("unknown_type")
    check(HDR.unpack_from(data)[1] == 99, "type 99")
    data = first_bytes("unknown_id")
    check(HDR.unpack_from(data)[1:] == (REPLY, 0, 0, 1001), "id + 1000")
    data = first_bytes("dup_reply")
    first = HDR.unpack_from(data)
    second = HDR.unpack_from(data, first[0] + 4)
    check(first[1] == second[1] == REPLY and first[4] == second[4] == 1, "two replies")
    data = first_bytes("hang")
    check(data == b"", "hang: no reply")

    w = start("close_fd4")
    w.send_raw(request(1, "echo", 1))
    check(w.recv() is None, "close_fd4: EOF on fd 4")
    exited, _, _ = select.select([w.pidfd], [], [], 0)
    check(not exited, "close_fd4: still alive after closing fd 4")
    w.finish()

    w = start("exit_mid_frame")
    w.send_raw(request(1, "echo", 1))
    data = w.recv_bytes()
    check(len(data) == 6, "half a header")
    check(w.wait() == 0, "exit 0")

    w = start("bad_version", hello=False)
    h = json.loads(w.expect(HELLO, 0))
    check(h["protocol"] == 999, "protocol 999")
    w.finish()

    w = start("no_hello", hello=False)
    w.close_requests()
    check(w.recv_bytes() == b"", "no HELLO")
    check(w.wait() == 0, "exit 0")


def bench_round_trips():
    """round trip, sequential (informational)"""
    results = []
    for raw in (False, True):
        w = spawn(fixture("raw_echo.py" if raw else "echo_handlers.py"), raw=raw)
        w.hello()
        data = frame(REQUEST, 1, b"x" * 64) if raw else request(1, "echo", "x" * 50)
        n = 5000
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            w.send_raw(data)
            w.recv()
            samples.append(time.perf_counter() - t0)
        samples.sort()
        results.append(
            "%s p50 %.1f us p99 %.1f us"
            % ("raw" if raw else "json", samples[n // 2] * 1e6, samples[n * 99 // 100] * 1e6)
        )
        w.finish()
    return "; ".join(results)


CHECKS = [
    check_hello_echo_add,
    check_limits,
    check_errors,
    check_extras,
    check_declared_only,
    check_dunder_all,
    check_unknown_suggests,
    check_hello_fits,
    check_zygote_bad_all,
    check_reply_is_json,
    check_error_fits,
    check_ping,
    check_pipelined_and_split,
    check_big,
    check_noisy,
    check_env_pid,
    check_cancel,
    check_deadline,
    check_exits,
    check_protocol_errors,
    check_raw,
    check_startup_failures,
    check_slow_start,
    check_example_handlers,
    check_max_frame,
    check_parent_death,
    check_bad_worker,
]


def main(argv):
    verbose = "-v" in argv
    names = [a for a in argv if not a.startswith("-")]
    failed = 0
    for fn in CHECKS:
        if names and not any(n in fn.__name__ for n in names):
            continue
        try:
            fn()
            print("ok   %-28s %s" % (fn.__name__[6:], fn.__doc__))
        except Exception as exc:
            failed += 1
            print("FAIL %-28s %s: %s" % (fn.__name__[6:], fn.__doc__, exc))
            if verbose:
                traceback.print_exc()
        finally:
            while _workers:
                _workers.pop().cleanup()
    if not names:
        try:
            print("info %-28s %s" % ("bench", bench_round_trips()))
        finally:
            while _workers:
                _workers.pop().cleanup()
    print("%d check(s) failed" % failed if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
