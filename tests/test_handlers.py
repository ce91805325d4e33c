"""Unit tests of the handler contract on the Python side (unittest, run by
ctest as test_handlers_py): the worker driven through its frame protocol,
as the pool drives it, with fixtures/contract_handlers.py and small modules
written here.  Covers the handler table (@handler, __all__, hooks left out),
the kinds HELLO lists, the lifecycle hooks, worker_id(), and async handlers
(results, errors, CANCEL raising CancelledError, PING while awaiting)."""
import json
import os
import signal
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import drive_worker as dw  # noqa: E402

sys.path.insert(0, os.path.join(dw.ROOT, "bridge", "python"))


def write_module(folder, name, text):
    path = os.path.join(folder, name + ".py")
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.marks = os.path.join(self.tmp.name, "marks")

    def tearDown(self):
        while dw._workers:
            dw._workers.pop().cleanup()
        self.tmp.cleanup()

    def spawn(self, handler, **kw):
        env = {"PP_TEST_MARKS": self.marks, "PORTPOOL_WORKER_ID": "5"}
        env.update(kw.pop("env", {}))
        return dw.spawn(handler, env=env, **kw)

    def read_marks(self):
        try:
            with open(self.marks) as f:
                return [line.split()[0] for line in f]
        except FileNotFoundError:
            return []

    def call(self, w, rid, cmd, args=None):
        w.send_raw(dw.request(rid, cmd, args))
        return w.expect_reply(rid)


class TestTable(Base):
    def test_declared_handlers_only(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        h = w.hello()
        self.assertEqual(
            h["handlers"],
            ["add_later", "blob", "count", "describe", "endless", "fail_later", "flood",
             "give_up", "reverse_bytes", "setups", "ticks", "wait", "whoami"],
        )
        # A public function the module did not declare, and the hooks,
        # are not handlers.
        for name in ("not_declared", "setup", "teardown", "after_fork"):
            w.send_raw(dw.request(1, name))
            w.expect_error(1, "UnknownCommand", dw.UNKNOWN_KEYS)

    def test_kinds_in_hello(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        h = w.hello()
        self.assertEqual(
            h["kinds"],
            {"add_later": "async", "fail_later": "async", "wait": "async",
             "count": "stream", "endless": "stream", "flood": "stream",
             "ticks": "stream"},
        )
        w = self.spawn(dw.fixture("echo_handlers.py"))
        self.assertEqual(w.hello()["kinds"], {"countdown": "stream"})

    def test_decorator_with_all(self):
        path = write_module(
            self.tmp.name,
            "both",
            """
            from portpool_worker import handler
            __all__ = ["listed"]
            def listed(args):
                return "listed"
            @handler("renamed")
            def declared(args):
                return "declared"
            def public(args):
                return "public"
            """,
        )
        w = self.spawn(path)
        self.assertEqual(w.hello()["handlers"], ["listed", "renamed"])
        self.assertEqual(self.call(w, 1, "renamed"), "declared")
        self.assertEqual(self.call(w, 2, "listed"), "listed")

    def test_hook_name_refused(self):
        for text, what in (
            ("__all__ = ['setup']\ndef setup():\n    pass\n", "__all__"),
            (
                "from portpool_worker import handler\n"
                "@handler('teardown')\ndef t(args):\n    pass\n",
                "@handler",
            ),
        ):
            path = write_module(self.tmp.name, "hooky", text)
            w = self.spawn(path)
            err = json.loads(w.expect(dw.ERROR, 0))
            self.assertIn(what, err["message"])
            self.assertIn("lifecycle hook", err["message"])
            self.assertEqual(w.wait(), 1)

    def test_bad_decorator_names(self):
        import _portpool_worker as pw

        with self.assertRaises(ValueError):
            pw.handler("not a name")
        with self.assertRaises(TypeError):
            pw.handler(3)


class TestHooks(Base):
    def test_setup_before_hello_once(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        self.assertEqual(self.read_marks(), ["setup"])
        self.assertEqual(self.call(w, 1, "setups"), 1)

    def test_setup_failure_is_a_boot_failure(self):
        path = write_module(
            self.tmp.name,
            "badsetup",
            """
            def setup():
                raise RuntimeError("no database at db:5432")
            def ping(args):
                return "pong"
            """,
        )
        w = self.spawn(path)
        err = json.loads(w.expect(dw.ERROR, 0))
        self.assertEqual(err["type"], "RuntimeError")
        self.assertIn("no database", err["message"])
        self.assertIn("in setup", err["traceback"])
        self.assertEqual(w.wait(), 1)

    def test_teardown_on_eof(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        w.close_requests()
        self.assertEqual(w.wait(), 0)
        self.assertEqual(self.read_marks(), ["setup", "teardown"])

    def test_teardown_on_sigterm_when_idle(self):
        w = self.spawn(dw.fixture("contract_handlers.py"), leader=True)
        w.hello()
        os.kill(w.pid, signal.SIGTERM)
        w.wait()
        self.assertEqual(self.read_marks(), ["setup", "teardown"])

    def test_no_teardown_when_killed_mid_request(self):
        w = self.spawn(dw.fixture("contract_handlers.py"), leader=True)
        w.hello()
        w.send_raw(dw.request(1, "wait", 30))
        # The request runs once its PING behind it is answered.
        w.send(dw.PING, 2)
        w.expect(dw.PONG, 2)
        os.kill(w.pid, signal.SIGTERM)
        w.wait()
        self.assertEqual(self.read_marks(), ["setup"])

    def test_worker_id(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        self.assertEqual(self.call(w, 1, "whoami"), 5)


class TestAsync(Base):
    def test_results_and_errors(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        self.assertEqual(self.call(w, 1, "add_later", {"a": 2, "b": 3}), 5)
        w.send_raw(dw.request(2, "fail_later", 7))
        err = w.expect_error(2, "ValueError")
        self.assertIn("late: 7", err["message"])
        self.assertEqual(self.call(w, 3, "wait", 0.01), "waited")

    def test_cancel_raises_cancelled_error(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        w.send_raw(dw.request(1, "wait", 30))
        # Answered while the coroutine awaits: the loop watches the pipe.
        w.send(dw.PING, 9)
        w.expect(dw.PONG, 9)
        w.send(dw.CANCEL, 1)
        w.expect_error(1, "Cancelled")
        self.assertEqual(self.read_marks(), ["setup", "cancelled"])
        # The worker goes on.
        self.assertEqual(self.call(w, 2, "add_later", {"a": 1, "b": 1}), 2)

    def test_generator_is_refused_clearly(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        w.send_raw(dw.request(1, "count", 3))
        err = w.expect_error(1, "TypeError")
        self.assertIn("generator", err["message"])


class TestBytes(Base):
    def binary(self, w, rid, cmd, data):
        w.send_raw(dw.frame(dw.REQUEST, rid, cmd.encode() + b"\0" + data, flags=2))
        return w.recv()

    def test_bytes_in_bytes_out(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        data = bytes(range(256)) + b"\0\xff"
        ftype, flags, rid, payload = self.binary(w, 1, "reverse_bytes", data)
        self.assertEqual((ftype, flags, rid), (dw.REPLY, 2, 1))
        self.assertEqual(payload, data[::-1])
        # bytes in, a JSON value out: the handler got bytes.
        ftype, flags, rid, payload = self.binary(w, 2, "describe", b"\0\1\2")
        self.assertEqual((ftype, flags), (dw.REPLY, 0))
        self.assertEqual(json.loads(payload), {"type": "bytes", "len": 3})

    def test_json_in_bytes_out(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        w.send_raw(dw.request(1, "blob", 300))
        ftype, flags, rid, payload = w.recv()
        self.assertEqual((ftype, flags, rid), (dw.REPLY, 2, 1))
        self.assertEqual(payload, (bytes(range(256)) * 2)[:300])

    def test_big_bytes(self):
        # Over the worker's 64 KiB read buffer, both ways.
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        data = os.urandom(3 * 1024 * 1024)
        ftype, flags, rid, payload = self.binary(w, 1, "reverse_bytes", data)
        self.assertEqual((ftype, flags), (dw.REPLY, 2))
        self.assertEqual(payload, data[::-1])

    def test_odd_results_and_errors(self):
        # A released memoryview, and a plain handler raising
        # asyncio.CancelledError itself: errors, and the worker lives on.
        path = write_module(
            self.tmp.name,
            "odd",
            """
            import asyncio
            def released(args):
                m = memoryview(b"abc")
                m.release()
                return m
            def cancels_itself(args):
                raise asyncio.CancelledError()
            def ok(args):
                return "ok"
            """,
        )
        w = self.spawn(path)
        w.hello()
        w.send_raw(dw.request(1, "released"))
        w.expect_error(1, "ValueError")
        w.send_raw(dw.request(2, "cancels_itself"))
        w.expect_error(2, "CancelledError")
        self.assertEqual(self.call(w, 3, "ok"), "ok")

    def test_big_frame_behind_an_async_handler(self):
        # A request over the 64 KiB buffer queued behind an awaiting
        # handler is read and answered once the handler is done.
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        w.send_raw(dw.request(1, "wait", 0.3))
        w.send(dw.PING, 9)
        w.expect(dw.PONG, 9)
        data = os.urandom(200 * 1024)
        w.send_raw(dw.frame(dw.REQUEST, 2, b"reverse_bytes\0" + data, flags=2))
        self.assertEqual(w.expect_reply(1), "waited")
        ftype, flags, rid, payload = w.recv()
        self.assertEqual((ftype, flags, rid), (dw.REPLY, 2, 2))
        self.assertEqual(payload, data[::-1])

    def test_bad_binary_requests(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        ftype, flags, rid, payload = self.binary(w, 1, "nope", b"x")
        self.assertEqual((ftype, rid), (dw.ERROR, 1))
        self.assertEqual(json.loads(payload)["type"], "UnknownCommand")
        w.send_raw(dw.frame(dw.REQUEST, 2, b"no name here", flags=2))
        err = json.loads(w.expect(dw.ERROR, 2))
        self.assertEqual(err["type"], "BadRequest")


class TestStreams(Base):
    """A generator handler streams when its REQUEST takes a stream
    (flag 4): a REPLY flagged 4 per item, then a last REPLY with the
    generator's return value."""

    def stream(self, w, rid, cmd, args):
        w.send_raw(
            dw.frame(dw.REQUEST, rid, json.dumps({"cmd": cmd, "args": args}).encode(),
                     flags=4)
        )

    def frames_until_last(self, w, rid):
        frames = []
        while True:
            ftype, flags, got, payload = w.recv()
            self.assertEqual(got, rid)
            frames.append((ftype, flags, payload))
            if not flags & 4:
                return frames

    def test_items_then_return_value(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        self.stream(w, 1, "count", 3)
        self.assertEqual(
            self.frames_until_last(w, 1),
            [(dw.REPLY, 4, b"0"), (dw.REPLY, 4, b"1"), (dw.REPLY, 4, b"2"),
             (dw.REPLY, 0, b'"counted"')],
        )
        # Bytes items are flagged binary too.
        self.stream(w, 2, "count", {"bytes": 2})
        self.assertEqual(
            self.frames_until_last(w, 2),
            [(dw.REPLY, 6, b"\0\0\0"), (dw.REPLY, 6, b"\1\1\1"),
             (dw.REPLY, 0, b'"counted"')],
        )
        # A plain handler answers a stream request with its one reply.
        self.stream(w, 3, "setups", None)
        self.assertEqual(self.frames_until_last(w, 3), [(dw.REPLY, 0, b"1")])

    def test_async_generator(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        self.stream(w, 1, "ticks", 2)
        self.assertEqual(
            self.frames_until_last(w, 1),
            [(dw.REPLY, 4, b'"tick 0"'), (dw.REPLY, 4, b'"tick 1"'),
             (dw.REPLY, 0, b"null")],
        )

    def test_cancel_closes_the_generator(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        self.stream(w, 1, "endless", None)
        ftype, flags, rid, payload = w.recv()
        self.assertEqual((ftype, flags, rid, payload), (dw.REPLY, 4, 1, b"0"))
        w.send(dw.CANCEL, 1)
        frames = self.frames_until_last(w, 1)
        self.assertEqual(frames[-1][0], dw.ERROR)
        self.assertEqual(json.loads(frames[-1][2])["type"], "Cancelled")
        self.assertTrue(all(f[:2] == (dw.REPLY, 4) for f in frames[:-1]))
        self.assertEqual(self.read_marks(), ["setup", "closed"])
        self.assertEqual(self.call(w, 2, "setups"), 1)

    def test_failure_ends_the_stream(self):
        w = self.spawn(dw.fixture("contract_handlers.py"))
        w.hello()
        self.stream(w, 1, "endless", 2)
        frames = self.frames_until_last(w, 1)
        self.assertEqual(frames[:2], [(dw.REPLY, 4, b"0"), (dw.REPLY, 4, b"1")])
        err = json.loads(frames[2][2])
        self.assertEqual((frames[2][0], err["type"]), (dw.ERROR, "RuntimeError"))
        self.assertIn("failed after 2 items", err["message"])


if __name__ == "__main__":
    unittest.main()
