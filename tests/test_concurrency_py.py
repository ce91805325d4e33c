"""test_concurrency_py -- unit tests of worker.concurrency on the Python side
(unittest, run by ctest as test_concurrency_py): a real worker started with
PORTPOOL_CONCURRENCY=N, driven through its frame protocol on real pipes as
the pool drives it, with fixtures/concurrency_handlers.py.

Nothing here sleeps: handlers are held and released through FIFOs, and
every wait has a timeout that only fires when something is broken."""
import json
import os
import select
import signal
import struct
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import drive_worker as dw  # noqa: E402

FIXTURE = dw.fixture("concurrency_handlers.py")
STREAM = 4
BINARY = 2
DEADLINE = 1


class Fifo:
    """A FIFO the test holds open read-write: handlers open their end
    without blocking, and it never reads EOF while the test lives."""

    def __init__(self, folder, name):
        self.path = os.path.join(folder, name)
        os.mkfifo(self.path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        self.buf = b""

    def open_gate(self, times=1):
        os.write(self.fd, b"x" * times)

    def line(self):
        """The next line a handler signalled."""
        deadline = time.monotonic() + dw.TIMEOUT
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not ready:
                raise AssertionError("no signal on %s" % self.path)
            self.buf += os.read(self.fd, 4096)
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def lines(self, n):
        return [self.line() for _ in range(n)]

    def pending(self):
        """What is there now, without waiting."""
        try:
            self.buf += os.read(self.fd, 4096)
        except BlockingIOError:
            pass
        return self.buf

    def close(self):
        os.close(self.fd)


def request(rid, cmd, args=None, flags=0, deadline=None):
    body = json.dumps({"cmd": cmd, "args": args}).encode()
    if deadline is not None:
        flags |= DEADLINE
        body = struct.pack(">Q", deadline) + body
    return dw.frame(dw.REQUEST, rid, body, flags=flags)


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.marks = os.path.join(self.tmp.name, "marks")
        self.fifos = []
        self.sig = self.fifo("signal")

    def tearDown(self):
        while dw._workers:
            dw._workers.pop().cleanup()
        for f in self.fifos:
            f.close()
        self.tmp.cleanup()

    def fifo(self, name):
        f = Fifo(self.tmp.name, name)
        self.fifos.append(f)
        return f

    def spawn(self, n, handler=FIXTURE, **kw):
        env = {"PP_TEST_MARKS": self.marks, "PORTPOOL_CONCURRENCY": str(n)}
        w = dw.spawn(handler, env=env, **kw)
        hello = json.loads(w.expect(dw.HELLO, 0))
        self.assertEqual(hello["concurrency"], n)
        self.assertEqual(hello["pid"], w.pid)
        return w

    def block(self, w, rid, tag, gate, **kw):
        args = {"tag": tag, "gate": gate.path, "signal": self.sig.path}
        w.send_raw(request(rid, "block", args, **kw))

    def replies(self, w, n):
        """The next n final frames as {id: (type, flags, payload)}."""
        got = {}
        while len(got) < n:
            ftype, flags, rid, payload = w.recv()
            self.assertNotIn(rid, got)
            got[rid] = (ftype, flags, payload)
        return got

    def sync(self, w, rid=999):
        """Every frame sent so far has been read and handled."""
        w.send(dw.PING, rid)
        w.expect(dw.PONG, rid)

    def read_marks(self):
        try:
            with open(self.marks) as f:
                return [line.split()[0] for line in f]
        except FileNotFoundError:
            return []


class TestStartup(Base):
    def test_bad_values_fail_at_start(self):
        for value in ("0", "1025", "four", "", "-2", "+3", " 2", "2.0"):
            w = dw.spawn(FIXTURE, env={"PORTPOOL_CONCURRENCY": value})
            self.assertIsNone(w.recv(), value)  # no HELLO: fd 4 closes
            self.assertEqual(w.wait(), 1, value)
            err = w.err.decode()
            self.assertIn("PORTPOOL_CONCURRENCY=%r" % value, err)
            self.assertIn("from 1 to 1024", err)
            self.assertNotIn("Traceback", err)

    def test_one_is_the_sequential_worker(self):
        w = dw.spawn(FIXTURE, env={"PORTPOOL_CONCURRENCY": "1"})
        self.assertNotIn("concurrency", w.hello())
        w.send_raw(request(1, "echo", [1]))
        self.assertEqual(w.expect_reply(1), [1])
        w.finish()

    def test_limits(self):
        w = self.spawn(1024)
        w.send_raw(request(1, "echo", "x"))
        self.assertEqual(w.expect_reply(1), "x")
        w.finish()


class TestConcurrent(Base):
    def test_out_of_order_async(self):
        w = self.spawn(4)
        hold = {"key": "k", "tag": "slow", "signal": self.sig.path}
        w.send_raw(request(1, "hold", hold))
        self.assertEqual(self.sig.line(), "started slow")
        w.send_raw(request(2, "add_later", {"a": 2, "b": 3}))
        self.assertEqual(w.expect_reply(2), 5)  # the fast one first
        w.send_raw(request(3, "release", "k"))
        got = self.replies(w, 2)
        self.assertEqual(json.loads(got[3][2]), "k")
        self.assertEqual(got[1][0], dw.REPLY)
        out = json.loads(got[1][2])
        self.assertEqual((out["tag"], out["id"]), ("slow", 1))
        w.finish()

    def test_out_of_order_plain(self):
        w = self.spawn(2)
        gate = self.fifo("gate")
        self.block(w, 1, "a", gate)
        self.assertEqual(self.sig.line(), "started a")
        w.send_raw(request(2, "echo", "fast"))
        self.assertEqual(w.expect_reply(2), "fast")
        gate.open_gate()
        out = w.expect_reply(1)
        self.assertEqual((out["tag"], out["id"]), ("a", 1))
        self.assertTrue(out["thread"].startswith("portpool-handler"))
        w.finish()

    def test_n_plain_handlers_run_at_once(self):
        n = 4
        w = self.spawn(n)
        w.send_raw(b"".join(
            request(i, "barrier", {"n": n, "key": "b"}) for i in range(1, n + 1)
        ))
        got = self.replies(w, n)
        self.assertEqual(set(got), set(range(1, n + 1)))
        for ftype, _, payload in got.values():
            self.assertEqual(ftype, dw.REPLY, payload)
        # Each in a thread of its own.
        self.assertEqual(len({p for _, _, p in got.values()}), n)
        w.finish()

    def test_one_more_waits_for_a_free_slot(self):
        w = self.spawn(2)
        gates = [self.fifo("gate%d" % i) for i in range(3)]
        for i in range(3):
            self.block(w, i + 1, str(i + 1), gates[i])
        self.assertEqual(sorted(self.sig.lines(2)), ["started 1", "started 2"])
        self.sync(w)  # request 3 has been read
        self.assertEqual(self.sig.pending(), b"")
        gates[2].open_gate()  # ready for it, whenever it runs
        gates[0].open_gate()
        self.assertEqual(w.expect_reply(1)["tag"], "1")
        self.assertEqual(self.sig.line(), "started 3")
        out = w.expect_reply(3)
        self.assertEqual(out["running_at_start"], 2)  # 2 still running
        gates[1].open_gate()
        self.assertEqual(w.expect_reply(2)["tag"], "2")
        w.finish()

    def test_ping_while_busy(self):
        w = self.spawn(3)
        gates = [self.fifo("gate%d" % i) for i in range(2)]
        self.block(w, 1, "1", gates[0])
        self.block(w, 2, "2", gates[1])
        w.send_raw(request(3, "hold", {"key": "k", "tag": "3",
                                       "signal": self.sig.path}))
        self.assertEqual(sorted(self.sig.lines(3)),
                         ["started 1", "started 2", "started 3"])
        for i in range(5):
            self.sync(w, 100 + i)
        # A fourth request waits, and PING is still answered.
        w.send_raw(request(4, "echo", 4))
        self.sync(w, 200)
        gates[0].open_gate()
        self.assertEqual(self.replies(w, 2).keys(), {1, 4})
        gates[1].open_gate()
        w.send_raw(request(5, "release", "k"))
        self.assertEqual(self.replies(w, 3).keys(), {2, 3, 5})
        w.finish()

    def test_errors_and_table_rules(self):
        w = self.spawn(2)
        w.send_raw(request(1, "fail", 7))
        err = w.expect_error(1, "ValueError")
        self.assertEqual(err["message"], "failed: 7")
        self.assertIn("in fail", err["traceback"])
        self.assertNotIn("_portpool_worker", err["traceback"])
        w.send_raw(request(2, "fail_later", 8))
        err = w.expect_error(2, "KeyError")
        self.assertIn("in fail_later", err["traceback"])
        # Hooks and undeclared names are not handlers.
        for rid, name in ((3, "setup"), (4, "teardown"), (5, "nope")):
            w.send_raw(request(rid, name))
            w.expect_error(rid, "UnknownCommand", dw.UNKNOWN_KEYS)
        w.send_raw(dw.frame(dw.REQUEST, 6, b"{not json"))
        w.expect_error(6, "BadRequest")
        w.send_raw(dw.frame(dw.REQUEST, 7, b"{}"))
        w.expect_error(7, "BadRequest")
        # A generator called without a stream.
        w.send_raw(request(8, "steps", {"n": 1, "tag": "s", "gate": "x"}))
        self.assertIn("generator", w.expect_error(8, "TypeError")["message"])
        # A deadline that passed before the request ran: not run.
        w.send_raw(request(9, "echo", 9, deadline=time.monotonic_ns() - 1))
        w.expect_error(9, "DeadlineExceeded")
        w.send_raw(dw.frame(dw.REQUEST, 10, b"\0\0", flags=DEADLINE))
        w.expect_error(10, "BadRequest")
        self.assertEqual(self.call(w, 11, "echo", [11]), [11])
        w.finish()

    def test_max_frame_and_protocol_errors(self):
        w = dw.spawn(FIXTURE, env={"PORTPOOL_CONCURRENCY": "2",
                                   "PORTPOOL_MAX_FRAME": "1000"})
        w.expect(dw.HELLO, 0)
        w.send_raw(request(1, "echo", "x" * 2000))
        w.expect_error(1, "FrameTooBig")
        w.send_raw(request(2, "echo", "ok"))
        self.assertEqual(w.expect_reply(2), "ok")
        w.send(9, 3)  # a frame type the pool never sends
        self.assertIsNone(w.recv())
        self.assertEqual(w.wait(), 2)
        self.assertIn(b"protocol error", w.err)

    def call(self, w, rid, cmd, args=None):
        w.send_raw(request(rid, cmd, args))
        return w.expect_reply(rid)

    def test_sys_exit_ends_the_worker(self):
        w = self.spawn(2)
        gate = self.fifo("gate")
        self.block(w, 1, "a", gate)
        self.assertEqual(self.sig.line(), "started a")
        w.send_raw(request(2, "exit_with", 3))
        self.assertEqual(w.wait(), 3)


class TestRequestContext(Base):
    def test_isolation_between_requests(self):
        w = self.spawn(3)
        g1, g2 = self.fifo("g1"), self.fifo("g2")
        far = time.monotonic_ns() + 3600 * 10**9
        self.block(w, 1, "a", g1, deadline=far)
        self.block(w, 2, "b", g2)
        self.assertEqual(sorted(self.sig.lines(2)), ["started a", "started b"])
        # An async one in between, with a deadline of its own.
        w.send_raw(request(3, "context_later", deadline=far + 5))
        out = w.expect_reply(3)
        self.assertEqual((out["id"], out["deadline"]), (3, (far + 5) / 1e9))
        self.assertEqual((out["has_remaining"], out["cancelled"]), (True, False))
        self.assertEqual(out["thread"], "MainThread")
        w.send(dw.CANCEL, 2)
        self.sync(w)
        g1.open_gate()
        g2.open_gate()
        got = self.replies(w, 2)
        a, b = json.loads(got[1][2]), json.loads(got[2][2])
        keys = ("id", "deadline", "has_remaining", "cancelled")
        self.assertEqual([a[k] for k in keys], [1, far / 1e9, True, False])
        self.assertEqual([b[k] for k in keys], [2, None, False, True])
        self.assertNotEqual(a["thread"], b["thread"])
        w.finish()


class TestCancel(Base):
    def test_cancel_running_async(self):
        w = self.spawn(2)
        gate = self.fifo("gate")
        self.block(w, 1, "plain", gate)
        w.send_raw(request(2, "hold", {"key": "k", "tag": "async",
                                       "signal": self.sig.path}))
        self.assertEqual(sorted(self.sig.lines(2)), ["started async", "started plain"])
        w.send(dw.CANCEL, 2)
        err = w.expect_error(2, "Cancelled")
        self.assertIn("while it ran", err["message"])
        self.assertEqual(self.sig.line(), "cancelled async")
        # The other one goes on.
        gate.open_gate()
        self.assertEqual(w.expect_reply(1)["cancelled"], False)
        w.finish()

    def test_cancel_running_plain(self):
        w = self.spawn(2)
        gate = self.fifo("gate")
        w.send_raw(request(1, "poll_cancel", {"tag": "p", "gate": gate.path,
                                              "signal": self.sig.path}))
        self.assertEqual(self.sig.line(), "started p")
        w.send(dw.CANCEL, 1)
        self.assertEqual(w.expect_reply(1), {"cancelled": True, "id": 1})
        w.finish()

    def test_cancel_queued(self):
        w = self.spawn(2)
        gates = [self.fifo("gate%d" % i) for i in range(3)]
        for i in range(3):
            self.block(w, i + 1, str(i + 1), gates[i])
        self.assertEqual(sorted(self.sig.lines(2)), ["started 1", "started 2"])
        w.send(dw.CANCEL, 3)
        err = w.expect_error(3, "Cancelled")
        self.assertIn("before it ran", err["message"])
        # Unknown and finished ids are ignored.
        w.send(dw.CANCEL, 3)
        w.send(dw.CANCEL, 42)
        self.sync(w)
        gates[0].open_gate()
        gates[1].open_gate()
        self.assertEqual(self.replies(w, 2).keys(), {1, 2})
        w.finish()
        self.assertEqual(self.sig.pending(), b"")  # 3 never started

    def test_cancel_with_its_request(self):
        w = self.spawn(2)
        w.send_raw(request(1, "hold", {"key": "k", "tag": "h"})
                   + dw.frame(dw.CANCEL, 1))
        w.expect_error(1, "Cancelled")
        w.finish()


class TestStreams(Base):
    def stream(self, w, rid, tag, gate, n, **extra):
        args = {"tag": tag, "gate": gate.path, "n": n, "signal": self.sig.path}
        args.update(extra)
        w.send_raw(request(rid, "steps", args, flags=STREAM))

    def test_two_streams_interleave(self):
        w = self.spawn(2)
        ga, gb = self.fifo("ga"), self.fifo("gb")
        self.stream(w, 1, "a", ga, 2)
        self.stream(w, 2, "b", gb, 2, bytes=True)
        # The test decides the order: each gate byte lets one item out;
        # after its last item a generator returns at once.
        for gate, want in ((gb, [(2, 6, b"b0")]), (ga, [(1, 4, b'"a0"')]),
                           (gb, [(2, 6, b"b1"), (2, 0, b'"b"')]),
                           (ga, [(1, 4, b'"a1"'), (1, 0, b'"a"')])):
            gate.open_gate()
            for rid, flags, payload in want:
                self.assertEqual(w.recv(), (dw.REPLY, flags, rid, payload))
        self.assertEqual(self.sig.lines(2), ["closed b", "closed a"])
        w.finish()

    def test_async_generator_beside_a_held_stream(self):
        w = self.spawn(2)
        ga = self.fifo("ga")
        self.stream(w, 1, "a", ga, 1)
        w.send_raw(request(2, "aticks", 3, flags=STREAM))
        frames = []
        while True:
            ftype, flags, rid, payload = w.recv()
            self.assertEqual(rid, 2)
            frames.append((ftype, flags, payload))
            if not flags & STREAM:
                break
        self.assertEqual(frames, [
            (dw.REPLY, 4, b'"tick 0"'), (dw.REPLY, 4, b'"tick 1"'),
            (dw.REPLY, 4, b'"tick 2"'), (dw.REPLY, 0, b"null")])
        ga.open_gate()
        self.assertEqual(w.recv(), (dw.REPLY, 4, 1, b'"a0"'))
        self.assertEqual(w.recv(), (dw.REPLY, 0, 1, b'"a"'))
        w.finish()

    def test_cancel_closes_the_generator(self):
        w = self.spawn(2)
        ga = self.fifo("ga")
        self.stream(w, 1, "a", ga, 100)
        ga.open_gate()
        self.assertEqual(w.recv(), (dw.REPLY, 4, 1, b'"a0"'))
        w.send(dw.CANCEL, 1)
        self.sync(w)
        ga.open_gate()  # the item it waits for now is its last
        self.assertEqual(w.recv(), (dw.REPLY, 4, 1, b'"a1"'))
        self.assertEqual(w.expect_error(1, "Cancelled")["type"], "Cancelled")
        self.assertEqual(self.sig.line(), "closed a")  # GeneratorExit
        w.finish()

    def test_cancel_an_async_generator(self):
        w = self.spawn(2)
        args = {"key": "k", "tag": "g", "signal": self.sig.path}
        w.send_raw(request(1, "aheld", args, flags=STREAM))
        self.assertEqual(w.recv(), (dw.REPLY, 4, 1, b'"first"'))
        w.send(dw.CANCEL, 1)
        self.assertIn("while it ran", w.expect_error(1, "Cancelled")["message"])
        self.assertEqual(self.sig.line(), "closed g")
        w.finish()


class TestBytes(Base):
    def test_bytes_in_bytes_out(self):
        w = self.spawn(2)
        gate = self.fifo("gate")
        self.block(w, 1, "a", gate)
        self.assertEqual(self.sig.line(), "started a")
        small = bytes(range(256))
        big = os.urandom(300 * 1024)  # over the 64 KiB read buffer
        w.send_raw(dw.frame(dw.REQUEST, 2, b"reverse_bytes\0" + small, flags=BINARY))
        w.send_raw(dw.frame(dw.REQUEST, 3, b"reverse_bytes\0" + big, flags=BINARY))
        got = self.replies(w, 2)
        self.assertEqual(got[2], (dw.REPLY, BINARY, small[::-1]))
        self.assertEqual(got[3], (dw.REPLY, BINARY, big[::-1]))
        gate.open_gate()
        self.assertEqual(w.expect_reply(1)["tag"], "a")
        w.finish()

    def test_raw_mode(self):
        w = self.spawn(3, handler=dw.fixture("raw_echo.py"), raw=True)
        w.send_raw(dw.frame(dw.REQUEST, 1, b"\0\1\2") + dw.frame(dw.REQUEST, 2, b"two"))
        got = self.replies(w, 2)
        self.assertEqual(got, {1: (dw.REPLY, 0, b"\0\1\2"), 2: (dw.REPLY, 0, b"two")})
        w.finish()


class TestEof(Base):
    def test_eof_drains_running_and_queued(self):
        w = self.spawn(2)
        gates = [self.fifo("gate%d" % i) for i in range(3)]
        for i in range(3):
            self.block(w, i + 1, str(i + 1), gates[i])
        self.assertEqual(sorted(self.sig.lines(2)), ["started 1", "started 2"])
        w.close_requests()
        for g in gates:
            g.open_gate()
        got = self.replies(w, 3)
        self.assertEqual({rid: f[0] for rid, f in got.items()},
                         {1: dw.REPLY, 2: dw.REPLY, 3: dw.REPLY})
        self.assertIsNone(w.recv())
        self.assertEqual(w.wait(), 0)
        self.assertEqual(self.read_marks(), ["setup", "teardown"])

    def test_sigterm(self):
        # Idle: teardown() runs.  Busy: it does not.
        w = self.spawn(2, leader=True)
        self.sync(w)
        os.kill(w.pid, signal.SIGTERM)
        w.wait()
        self.assertEqual(self.read_marks(), ["setup", "teardown"])
        os.unlink(self.marks)
        w = self.spawn(2, leader=True)
        gate = self.fifo("gate")
        self.block(w, 1, "a", gate)
        self.assertEqual(self.sig.line(), "started a")
        os.kill(w.pid, signal.SIGTERM)
        w.wait()
        self.assertEqual(self.read_marks(), ["setup"])


if __name__ == "__main__":
    unittest.main()
