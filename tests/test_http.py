#!/usr/bin/env python3
"""test_http.py -- `poolctl serve --listen` end to end (unittest, stdlib
only): real servers with real Python workers, driven over HTTP (calls, JSON
and bytes both ways, streams as chunked NDJSON, every error mapping,
deadlines, hang-ups and on_client_death), the probes and /metrics, the
bearer token, the refusal to listen beyond loopback without one, TLS, the
HAProxy agent-check responder, the keep-alive bound and the connection
bound.

Every test waits for lines and events, with timeouts that only fire on a
failure (scaled by PP_TEST_TIME_SCALE); nothing sleeps to synchronise.
Paths come from PP_POOLCTL, PP_PYTHON, PP_WORKER_PY and PP_FIXTURES (ctest
sets them), else from this tree and build/."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
POOLCTL = os.environ.get("PP_POOLCTL", os.path.join(ROOT, "build", "poolctl"))
PYTHON = os.environ.get("PP_PYTHON", sys.executable)
WORKER = os.environ.get(
    "PP_WORKER_PY", os.path.join(ROOT, "bridge", "python", "portpool_worker.py"))
FIXTURES = os.environ.get("PP_FIXTURES", os.path.join(ROOT, "fixtures"))
SCALE = float(os.environ.get("PP_TEST_TIME_SCALE", "1") or "1")


def limit(seconds):
    """A timeout that only a failure reaches."""
    return seconds * SCALE


# ------------------------------------------------------------- the server


class Lines:
    """A pipe read line by line on a thread; wait() for a line matching."""

    def __init__(self, pipe):
        self.lines = []
        self.cond = threading.Condition()
        self.eof = False
        self.thread = threading.Thread(target=self._read, args=(pipe,),
                                       daemon=True)
        self.thread.start()

    def _read(self, pipe):
        for raw in pipe:
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait(self, pattern, timeout=30):
        """The first match of pattern (a regex) in a line, waiting for it."""
        rx = re.compile(pattern)
        seen = 0
        end = time.monotonic() + limit(timeout)
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                if self.eof:
                    raise AssertionError("no line matching %r before EOF: %r"
                                         % (pattern, self.lines))
                left = end - time.monotonic()
                if left <= 0 or not self.cond.wait(left):
                    raise AssertionError("no line matching %r in time: %r"
                                         % (pattern, self.lines))

    def text(self):
        with self.cond:
            return "\n".join(self.lines)


class Cleanups:
    """addCleanup for what a whole class shares."""

    def __init__(self):
        self.fns = []

    def addCleanup(self, fn, *args):
        self.fns.append((fn, args))

    def run(self):
        while self.fns:
            fn, args = self.fns.pop()
            fn(*args)


class Server:
    """`poolctl serve -c CONFIG` in a fresh directory.  config: the top
    level of the config as a dict (written as JSON, which is YAML)."""

    def __init__(self, tc, fixture="contract_handlers.py", size=2,
                 config=None, args=(), listen="127.0.0.1:0", env=None,
                 wait_ready=True):
        self.dir = tempfile.mkdtemp(prefix="pp-http-")
        tc.addCleanup(shutil.rmtree, self.dir, True)
        self.sock = os.path.join(self.dir, "pool.sock")
        self.marks = os.path.join(self.dir, "marks")
        cfg = {
            "size": size,
            "worker": {
                "command": [PYTHON, WORKER, os.path.join(FIXTURES, fixture)],
                "env": {"PP_TEST_MARKS": self.marks},
                # CI runs the suites as root: workers may run as root.
                "allow_root": True,
            },
            "checkout": {"timeout": "30s"},
            "control": {"socket": self.sock},
        }
        for key, value in (config or {}).items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key].update(value)
            else:
                cfg[key] = value
        self.config = os.path.join(self.dir, "pool.yaml")
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        argv = [POOLCTL, "serve", "-c", self.config]
        if listen:
            argv += ["--listen", listen]
        argv += list(args)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env,
                                     start_new_session=True)
        tc.addCleanup(self.kill)
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)
        self.port = self.agent = None
        self.scheme = None
        if listen is None and "listen" not in cfg:
            return
        if wait_ready is None:
            return  # the caller expects a refusal
        m = self.out.wait(r"^listening on (https?)://(\S+):(\d+)$")
        self.scheme, self.host, self.port = m.group(1), m.group(2), \
            int(m.group(3))
        if cfg.get("listen", {}).get("agent") is not None:
            self.agent = int(self.out.wait(r"^agent-check on \S+:(\d+)$")
                             .group(1))
        if wait_ready:
            self.out.wait(r"^ready: ")

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()

    def stop(self):
        """SIGTERM: serve stops, exit 0."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(limit(30))

    # HTTP

    def conn(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=limit(timeout))

    def request(self, method, path, body=None, headers=None, conn=None):
        """(status, headers (a Message), body bytes); a new connection
        unless conn is given."""
        c = conn or self.conn()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.headers, r.read()
        finally:
            if conn is None:
                c.close()

    def call(self, name, args=None, raw=None, headers=None):
        """POST /v1/call/NAME with args as JSON, or raw bytes."""
        h = dict(headers or {})
        if raw is not None:
            h["Content-Type"] = "application/octet-stream"
            body = raw
        else:
            h["Content-Type"] = "application/json"
            body = json.dumps(args).encode()
        return self.request("POST", "/v1/call/" + name, body, h)

    def hold(self, name, args):
        """A call sent on a raw socket, its answer not read: the socket."""
        s = socket.create_connection(("127.0.0.1", self.port),
                                     timeout=limit(30))
        body = json.dumps(args).encode()
        s.sendall(b"POST /v1/call/%s HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (name.encode(), len(body),
                                                     body))
        return s

    # the agent-check responder

    def agent_line(self):
        with socket.create_connection(("127.0.0.1", self.agent),
                                      timeout=limit(30)) as s:
            data = b""
            while True:
                chunk = s.recv(100)
                if not chunk:
                    return data.decode()
                data += chunk

    # the control socket

    def control(self):
        return Control(self.sock)

    def poolctl(self, *args):
        return subprocess.run([POOLCTL] + list(args) + ["-S", self.sock],
                              capture_output=True, text=True,
                              timeout=limit(60))

    def marks_text(self):
        try:
            with open(self.marks) as f:
                return f.read()
        except FileNotFoundError:
            return ""


class Control:
    """A raw control connection: status, and trace events."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(limit(30))
        self.s.connect(path)
        self.f = self.s.makefile("rwb")

    def close(self):
        self.f.close()
        self.s.close()

    def send(self, obj):
        self.f.write(json.dumps(obj).encode() + b"\n")
        self.f.flush()

    def recv(self):
        line = self.f.readline()
        if not line:
            raise AssertionError("the control connection closed")
        return json.loads(line)

    def status(self):
        self.send({"op": "status"})
        v = self.recv()
        assert v.get("ok"), v
        return v["status"]

    def trace(self, events):
        """Subscribe: events come on this connection from now on."""
        self.send({"op": "trace", "filter": events})
        v = self.recv()
        assert v.get("ok"), v
        return self

    def until(self, server, check):
        """Read events until check(status) holds, checking on each one.
        self must be a trace subscription; status comes on another
        connection.  The last status."""
        probe = server.control()
        try:
            while True:
                st = probe.status()
                if check(st):
                    return st
                self.recv()
        finally:
            probe.close()


# Every event after which a worker's state may have changed.
EVENTS = ("request,reply,checkin,reclaim,stale_reply,kill,exit,spawn,hello,"
          "restart")


def until_busy(server, events, n):
    return events.until(server, lambda st: st["busy"] == n)


def until_idle(server, events):
    return events.until(server, lambda st: st["idle"] == st["size"])


def free_port():
    """A TCP port free now on 127.0.0.1, for listen.agent (0 there means
    no responder)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_opened(fifo):
    """Wait until a handler opens the FIFO for writing (and closes it)."""
    done = []

    def reader():
        fd = os.open(fifo, os.O_RDONLY)
        while os.read(fd, 100):
            pass
        os.close(fd)
        done.append(True)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(limit(30))
    if not done:
        raise AssertionError("the handler never opened " + fifo)


def read_response(f):
    """(status, {lowercased header: value}, body) of one response with a
    Content-Length, read from the file f of a raw socket."""
    status = int(f.readline().split()[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return status, headers, f.read(int(headers["content-length"]))


def ndjson(body):
    return [json.loads(line) for line in body.decode().splitlines()]


# ------------------------------------------------------------ the calls


class TestCalls(unittest.TestCase):
    """One server for the calls that leave it as they found it."""

    @classmethod
    def setUpClass(cls):
        cls.cleanups = Cleanups()
        try:
            cls.srv = Server(cls.cleanups, size=2,
                             config={"on_client_death": "cancel"})
        except BaseException:
            cls.cleanups.run()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cleanups.run()

    def test_json_call(self):
        st, h, body = self.srv.call("add_later", {"a": 2, "b": 40})
        self.assertEqual(st, 200)
        self.assertEqual(h["Content-Type"], "application/json")
        self.assertEqual(json.loads(body), 42)

    def test_json_string_and_object(self):
        st, h, body = self.srv.call("describe", "héllo")
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body), {"type": "str", "len": 5})

    def test_bytes_in_bytes_out(self):
        data = bytes(range(256)) * 3 + b"\x00\r\n"
        st, h, body = self.srv.call("reverse_bytes", raw=data)
        self.assertEqual(st, 200)
        self.assertEqual(h["Content-Type"], "application/octet-stream")
        self.assertEqual(body, data[::-1])

    def test_bytes_in_json_out(self):
        st, h, body = self.srv.call("describe", raw=b"\x00\xff{not json")
        self.assertEqual(st, 200)
        self.assertEqual(h["Content-Type"], "application/json")
        self.assertEqual(json.loads(body), {"type": "bytes", "len": 11})

    def test_json_in_bytes_out(self):
        st, h, body = self.srv.call("blob", 300)
        self.assertEqual(st, 200)
        self.assertEqual(h["Content-Type"], "application/octet-stream")
        self.assertEqual(body, (bytes(range(256)) * 2)[:300])

    def test_stream_ndjson(self):
        c = self.srv.conn()
        c.request("POST", "/v1/call/count", body=b"5",
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Content-Type"), "application/x-ndjson")
        self.assertEqual(r.getheader("Transfer-Encoding"), "chunked")
        self.assertIsNone(r.getheader("Content-Length"))
        body = r.read()
        c.close()
        self.assertTrue(body.endswith(b"\n"))
        # The items, one per line; the return value ("counted") is not sent.
        self.assertEqual(ndjson(body), [0, 1, 2, 3, 4])
        self.assertNotIn(b"counted", body)

    def test_stream_of_bytes(self):
        st, h, body = self.srv.call("count", {"bytes": 3})
        self.assertEqual(st, 200)
        self.assertEqual(h["Content-Type"], "application/octet-stream")
        self.assertEqual(h["Transfer-Encoding"], "chunked")
        self.assertEqual(body, b"\x00\x00\x00\x01\x01\x01\x02\x02\x02")

    def test_stream_failing_before_its_first_item_422(self):
        st, h, body = self.srv.call("endless", 0)
        self.assertEqual(st, 422)
        self.assertEqual(h["Content-Type"], "application/json")
        v = json.loads(body)
        self.assertEqual(v["type"], "RuntimeError")
        self.assertEqual(v["message"], "failed after 0 items")

    def test_stream_failing_after_items_is_cut(self):
        """A failure after the 200 went out can only cut the stream: the
        items so far, then no last chunk."""
        c = self.srv.conn()
        self.addCleanup(c.close)
        c.request("POST", "/v1/call/endless", body=b"3",
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        with self.assertRaises(http.client.IncompleteRead) as cm:
            r.read()
        self.assertEqual(cm.exception.partial, b"0\n1\n2\n")

    def test_stream_then_keepalive(self):
        """A stream's end leaves the connection usable for the next."""
        c = self.srv.conn()
        for n in (2, 3):
            st, h, body = self.srv.request(
                "POST", "/v1/call/count", str(n).encode(),
                {"Content-Type": "application/json"}, conn=c)
            self.assertEqual(st, 200)
            self.assertEqual(ndjson(body), list(range(n)))
        st, h, body = self.srv.request("GET", "/livez", conn=c)
        self.assertEqual(st, 200)
        c.close()

    def test_handler_exception_422(self):
        st, h, body = self.srv.call("fail_later", [1, "x"])
        self.assertEqual(st, 422)
        self.assertEqual(h["Content-Type"], "application/json")
        v = json.loads(body)
        self.assertEqual(v["type"], "ValueError")
        self.assertEqual(v["message"], "late: [1, 'x']")
        self.assertIn("fail_later", v["traceback"])
        self.assertIn("Traceback", v["traceback"])

    def test_body_not_json_422(self):
        """A JSON call whose body does not parse: the worker's BadRequest,
        as a handler error."""
        st, h, body = self.srv.request("POST", "/v1/call/describe", b"{bad",
                                       {"Content-Type": "application/json"})
        self.assertEqual(st, 422)
        self.assertEqual(json.loads(body)["type"], "BadRequest")
        # Without a Content-Type the body is JSON too.
        st, h, body = self.srv.request("POST", "/v1/call/describe", b'"abc"')
        self.assertEqual((st, json.loads(body)), (200, {"type": "str",
                                                        "len": 3}))

    def test_unknown_handler_404_with_suggestion(self):
        st, h, body = self.srv.call("coutn", 1)
        self.assertEqual(st, 404)
        self.assertEqual(h["Content-Type"], "application/json")
        v = json.loads(body)
        self.assertEqual(v["error"], "UnknownCommand")
        self.assertEqual(v["suggestion"], "count")
        self.assertIn("count", v["handlers"])
        self.assertIn("reverse_bytes", v["handlers"])
        self.assertNotIn("not_declared", v["handlers"])
        self.assertIn("coutn", v["message"])
        st, h, body = self.srv.call("zzzzzzzzzz", 1)
        self.assertEqual(st, 404)
        self.assertIsNone(json.loads(body)["suggestion"])

    def test_bad_name_or_path_404(self):
        for path in ("/v1/call/", "/v1/call/1abc", "/v1/call/a-b",
                     "/v1/call/a/b", "/v1/call/" + "x" * 65, "/v1/calls/count",
                     "/", "/nowhere"):
            st, h, body = self.srv.request("POST", path, b"1")
            self.assertEqual(st, 404, path)
            self.assertEqual(h["Content-Type"], "application/json", path)
            self.assertIn("error", json.loads(body), path)
        # 64 characters is still a name: the worker says it is unknown.
        st, h, body = self.srv.call("x" * 64, 1)
        self.assertEqual(st, 404)
        self.assertIn("handlers", json.loads(body))

    def test_wrong_method_405(self):
        for method, path in (("GET", "/v1/call/count"),
                             ("PUT", "/v1/call/count"),
                             ("DELETE", "/v1/call/count"),
                             ("POST", "/readyz"), ("POST", "/livez"),
                             ("POST", "/metrics")):
            st, h, body = self.srv.request(method, path, b"1")
            self.assertEqual(st, 405, (method, path))
            self.assertEqual(json.loads(body)["error"], "EINVAL")

    def test_bad_deadline_400(self):
        for hdr in ({"X-Deadline-Ms": "soon"}, {"X-Deadline-Ms": "-5"},
                    {"X-Deadline-Ms": "12ms"}, {"X-Deadline-Ms": ""},
                    {"Request-Timeout": "never"},
                    {"Request-Timeout": "-1"}, {"Request-Timeout": "nan"},
                    {"Request-Timeout": "inf"}):
            st, h, body = self.srv.call("add_later", {"a": 1, "b": 2},
                                        headers=hdr)
            self.assertEqual(st, 400, hdr)
            self.assertEqual(json.loads(body)["error"], "EINVAL")

    def test_deadline_in_time(self):
        for hdr in ({"X-Deadline-Ms": "60000"}, {"Request-Timeout": "60"},
                    {"Request-Timeout": "59.5"}):
            st, h, body = self.srv.call("add_later", {"a": 1, "b": 2},
                                        headers=hdr)
            self.assertEqual(st, 200, hdr)
            self.assertEqual(json.loads(body), 3)

    def test_deadline_504(self):
        events = self.srv.control().trace(EVENTS)
        self.addCleanup(events.close)
        for hdr in ({"X-Deadline-Ms": "300"}, {"Request-Timeout": "0.3"}):
            st, h, body = self.srv.call("wait", {"secs": 600}, headers=hdr)
            self.assertEqual(st, 504, hdr)
            self.assertEqual(h["Content-Type"], "application/json")
            self.assertEqual(json.loads(body)["error"], "PP_ETIMEDOUT")
            # on_client_death: cancel: the worker is cancelled, not held
            # for its 600 s.
            until_idle(self.srv, events)

    def test_deadline_exceeded_by_handler_504(self):
        st, h, body = self.srv.call("give_up", None)
        self.assertEqual(st, 504)
        v = json.loads(body)
        self.assertEqual(v["error"], "PP_ETIMEDOUT")
        self.assertIn("DeadlineExceeded", v["message"])

    def test_livez(self):
        st, h, body = self.srv.request("GET", "/livez")
        self.assertEqual(st, 200)
        self.assertTrue(h["Content-Type"].startswith("text/plain"))
        st, h, body = self.srv.request("HEAD", "/livez")
        self.assertEqual(st, 200)

    def test_readyz_ready(self):
        st, h, body = self.srv.request("GET", "/readyz")
        self.assertEqual(st, 200)
        self.assertEqual(body, b"ready\n")
        self.assertTrue(h["Content-Type"].startswith("text/plain"))

    def test_metrics(self):
        self.assertEqual(self.srv.call("add_later", {"a": 0, "b": 0})[0], 200)
        st, h, body = self.srv.request("GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(h["Content-Type"].startswith(
            "application/openmetrics-text"), h["Content-Type"])
        text = body.decode()
        self.assertIn('portpool_pool_state{pool="portpool",state="ready"} 1',
                      text)
        self.assertIn('portpool_workers{pool="portpool",state="idle"}', text)
        self.assertTrue(text.endswith("# EOF\n"), text[-100:])
        # The same families as `poolctl status --prometheus`.
        r = self.srv.poolctl("status", "--prometheus")
        self.assertEqual(r.returncode, 0, r.stderr)

        def families(t):
            return sorted(l for l in t.splitlines() if l.startswith("# TYPE"))
        self.assertEqual(families(text), families(r.stdout))
        self.assertGreater(len(families(text)), 5)

    def test_many_requests_on_one_connection(self):
        c = self.srv.conn()
        for i in range(20):
            st, h, body = self.srv.request(
                "POST", "/v1/call/add_later",
                json.dumps({"a": i, "b": 1}).encode(),
                {"Content-Type": "application/json"}, conn=c)
            self.assertEqual(st, 200)
            self.assertEqual(json.loads(body), i + 1)
            self.assertNotEqual((h["Connection"] or "").lower(), "close")
        c.close()

    def test_hangup_cancels_the_call(self):
        """on_client_death: cancel: a client that hangs up while its call
        runs has its worker cancelled (CancelledError in the handler), and
        the worker serves again."""
        events = self.srv.control().trace(EVENTS)
        self.addCleanup(events.close)
        cancelled = self.srv.marks_text().count("cancelled")
        fifo = os.path.join(self.srv.dir, "ready-hangup")
        os.mkfifo(fifo)
        s = self.srv.hold("wait", {"secs": 600, "ready": fifo})
        # The handler runs (a CANCEL before it starts would skip it).
        wait_opened(fifo)
        s.close()
        until_idle(self.srv, events)
        self.assertEqual(self.srv.marks_text().count("cancelled"),
                         cancelled + 1)
        self.assertEqual(self.srv.call("add_later", {"a": 1, "b": 1})[2], b"2")

    def test_hangup_closes_a_stream(self):
        """A client that hangs up in the middle of a stream: the generator
        is closed (its finally runs) and the worker serves again."""
        events = self.srv.control().trace(EVENTS)
        self.addCleanup(events.close)
        closed = self.srv.marks_text().count("closed")
        s = self.srv.hold("endless", None)
        f = s.makefile("rb")
        self.assertTrue(f.readline().startswith(b"HTTP/1.1 200"))
        while f.readline() not in (b"\r\n", b""):
            pass
        # The first chunk: "0\n" as a chunk of 2 bytes.
        self.assertEqual(f.readline(), b"2\r\n")
        self.assertEqual(f.readline(), b"0\n")
        self.assertEqual(f.readline(), b"\r\n")
        f.close()
        s.close()
        until_idle(self.srv, events)
        self.assertEqual(self.srv.marks_text().count("closed"), closed + 1)


class TestBodies(unittest.TestCase):
    """worker.max_frame bounds the body: 413."""

    def setUp(self):
        self.srv = Server(self, size=1,
                          config={"worker": {"max_frame": 4096}})

    def test_413_by_content_length(self):
        st, h, body = self.srv.call("describe", raw=b"x" * 5000)
        self.assertEqual(st, 413)
        self.assertEqual(json.loads(body)["error"], "PP_ETOOBIG")
        # Under the bound: served.
        st, h, body = self.srv.call("describe", raw=b"x" * 3000)
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body), {"type": "bytes", "len": 3000})

    def test_413_by_a_chunked_body(self):
        c = self.srv.conn()
        chunks = [b"y" * 1000] * 6
        c.request("POST", "/v1/call/describe", body=iter(chunks),
                  headers={"Content-Type": "application/octet-stream"},
                  encode_chunked=True)
        r = c.getresponse()
        self.assertEqual(r.status, 413)
        self.assertEqual(json.loads(r.read())["error"], "PP_ETOOBIG")
        c.close()
        # A chunked body under the bound is served whole.
        c = self.srv.conn()
        c.request("POST", "/v1/call/describe", body=iter([b"z" * 1000] * 3),
                  headers={"Content-Type": "application/octet-stream"},
                  encode_chunked=True)
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.read()), {"type": "bytes", "len": 3000})
        c.close()


class TestErrors(unittest.TestCase):
    """Plain functions (echo_handlers.py): crashes and exceptions."""

    def setUp(self):
        self.srv = Server(self, fixture="echo_handlers.py", size=1)

    def test_crash_502_then_replaced(self):
        st, h, body = self.srv.call("crash", 3)
        self.assertEqual(st, 502)
        self.assertEqual(h["Content-Type"], "application/json")
        self.assertEqual(json.loads(body)["error"], "PP_ECRASHED")
        # The slot is replaced: the next call is served (it waits for the
        # new worker).
        st, h, body = self.srv.call("echo", {"back": True})
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body), {"back": True})

    def test_exception_422(self):
        st, h, body = self.srv.call("fail", "it")
        self.assertEqual(st, 422)
        v = json.loads(body)
        self.assertEqual(v["type"], "ValueError")
        self.assertEqual(v["message"], "boom: it")

    def test_stream_with_bytes_items(self):
        # countdown yields JSON items and then bytes: the type is the
        # first item's; the items are all there.
        st, h, body = self.srv.call("countdown", 2)
        self.assertEqual(st, 200)
        self.assertEqual(h["Transfer-Encoding"], "chunked")
        self.assertTrue(body.startswith(b"2\n1\n"), body)
        self.assertIn(b"\x00go", body)


class TestBusyAndDrain(unittest.TestCase):
    def test_busy_503(self):
        srv = Server(self, size=1,
                     config={"on_client_death": "cancel",
                             "checkout": {"max_waiters": 0}})
        events = srv.control().trace(EVENTS)
        self.addCleanup(events.close)
        held = srv.hold("wait", {"secs": 600})
        until_busy(srv, events, 1)
        st, h, body = srv.call("add_later", {"a": 1, "b": 2})
        self.assertEqual(st, 503)
        self.assertEqual(h["Retry-After"], "1")
        self.assertEqual(json.loads(body)["error"], "PP_EBUSY")
        held.close()
        until_idle(srv, events)
        st, h, body = srv.call("add_later", {"a": 1, "b": 2})
        self.assertEqual(st, 200)

    def test_deadline_while_waiting_504(self):
        """X-Deadline-Ms bounds the wait for a worker too."""
        srv = Server(self, size=1, config={"on_client_death": "cancel"})
        events = srv.control().trace(EVENTS)
        self.addCleanup(events.close)
        held = srv.hold("wait", {"secs": 600})
        until_busy(srv, events, 1)
        st, h, body = srv.call("add_later", {"a": 1, "b": 2},
                               headers={"X-Deadline-Ms": "200"})
        self.assertEqual(st, 504)
        self.assertEqual(json.loads(body)["error"], "PP_ETIMEDOUT")
        held.close()
        until_idle(srv, events)
        self.assertEqual(srv.call("add_later", {"a": 1, "b": 2})[0], 200)

    def test_drain_readyz_agent_and_back(self):
        srv = Server(self, size=2, config={"listen": {"agent": free_port()}})
        self.assertIsNotNone(srv.agent)
        self.assertEqual(srv.request("GET", "/readyz")[2], b"ready\n")
        self.assertEqual(srv.agent_line(), "up ready 100%\n")
        r = srv.poolctl("drain")
        self.assertEqual(r.returncode, 0, r.stderr)
        st, h, body = srv.request("GET", "/readyz")
        self.assertEqual((st, body), (503, b"draining\n"))
        self.assertEqual(srv.agent_line(), "up drain\n")
        st, h, body = srv.call("add_later", {"a": 1, "b": 2})
        self.assertEqual(st, 503)
        self.assertEqual(h["Retry-After"], "1")
        v = json.loads(body)
        self.assertEqual(v["error"], "PP_ECLOSED")
        self.assertIn("draining", v["message"])
        # /livez says the process lives, drained or not.
        self.assertEqual(srv.request("GET", "/livez")[0], 200)
        r = srv.poolctl("undrain")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(srv.request("GET", "/readyz")[:3:2],
                         (200, b"ready\n"))
        self.assertEqual(srv.agent_line(), "up ready 100%\n")
        self.assertEqual(srv.call("add_later", {"a": 1, "b": 2})[0], 200)

    def test_agent_idle_share(self):
        srv = Server(self, size=2,
                     config={"on_client_death": "cancel",
                             "listen": {"agent": free_port()}})
        events = srv.control().trace(EVENTS)
        self.addCleanup(events.close)
        a = srv.hold("wait", {"secs": 600})
        until_busy(srv, events, 1)
        self.assertEqual(srv.agent_line(), "up ready 50%\n")
        b = srv.hold("wait", {"secs": 600})
        until_busy(srv, events, 2)
        # No worker idle: still at least 1%, never 0.
        self.assertEqual(srv.agent_line(), "up ready 1%\n")
        a.close()
        b.close()
        until_idle(srv, events)
        self.assertEqual(srv.agent_line(), "up ready 100%\n")

    def test_warming(self):
        srv = Server(self, fixture="slow_start.py", size=1,
                     config={"listen": {"agent": free_port()},
                             "worker": {"env": {"PP_SLOW_START": "600"},
                                        "startup_timeout": "20m"}},
                     wait_ready=False)
        st, h, body = srv.request("GET", "/readyz")
        self.assertEqual((st, body), (503, b"warming\n"))
        self.assertEqual(srv.request("GET", "/livez")[0], 200)
        self.assertEqual(srv.agent_line(), "down\n")
        # Stopped while warming: serve exits at once.
        self.assertEqual(srv.stop(), 0)

    def test_hangup_kill_replaces_the_worker(self):
        """on_client_death: kill: a client that hangs up while its call
        runs has its worker killed and replaced."""
        srv = Server(self, size=1, config={"on_client_death": "kill"})
        events = srv.control().trace(EVENTS)
        self.addCleanup(events.close)
        self.assertEqual(srv.marks_text().count("setup"), 1)
        s = srv.hold("wait", {"secs": 600})
        until_busy(srv, events, 1)
        s.close()
        while events.recv()["event"] != "hello":
            pass
        until_idle(srv, events)
        self.assertEqual(srv.marks_text().count("setup"), 2)
        self.assertNotIn("cancelled", srv.marks_text())
        self.assertEqual(srv.call("setups", None)[:3:2], (200, b"1"))

    def test_degraded(self):
        """Every slot gave up restarting: /readyz says degraded, the agent
        says down, and a call is refused with 503 and no Retry-After."""
        srv = Server(self, fixture="echo_handlers.py", size=1,
                     config={"restart": {"max_restarts": 0},
                             "listen": {"agent": free_port()}})
        st, h, body = srv.call("crash", 3)
        self.assertEqual(st, 502)
        srv.err.wait(r"pool degraded")
        st, h, body = srv.request("GET", "/readyz")
        self.assertEqual((st, body), (503, b"degraded\n"))
        self.assertEqual(srv.agent_line(), "down\n")
        st, h, body = srv.call("echo", 1)
        self.assertEqual(st, 503)
        self.assertIsNone(h["Retry-After"])
        self.assertEqual(json.loads(body)["error"], "PP_EDEGRADED")
        self.assertEqual(srv.request("GET", "/livez")[0], 200)
        st, h, body = srv.request("GET", "/metrics")
        self.assertIn(
            'portpool_pool_state{pool="portpool",state="degraded"} 1',
            body.decode())

    def test_hangup_finish_drops_the_reply(self):
        """on_client_death: finish: the request runs on and its reply is
        dropped (a stale_reply); the worker serves again after."""
        srv = Server(self, fixture="echo_handlers.py", size=1,
                     config={"on_client_death": "finish"})
        events = srv.control().trace(EVENTS)
        self.addCleanup(events.close)
        fifo = os.path.join(srv.dir, "gate")
        os.mkfifo(fifo)
        s = srv.hold("gate", {"fifo": fifo})
        until_busy(srv, events, 1)
        s.close()
        # The client's death is seen (its lease reclaimed) while the
        # handler still waits at its gate.
        while events.recv()["event"] != "reclaim":
            pass
        # Open the gate: the handler returns, its reply has nobody.
        opened = []
        t = threading.Thread(target=lambda: opened.append(
            os.open(fifo, os.O_WRONLY)), daemon=True)
        t.start()
        t.join(limit(30))
        self.assertTrue(opened, "the gate was never opened by the handler")
        os.close(opened[0])
        while events.recv()["event"] != "stale_reply":
            pass
        st = until_idle(srv, events)
        self.assertGreaterEqual(st["stale_replies"], 1)
        self.assertEqual(srv.call("echo", 7)[2], b"7")


class TestPiped(unittest.TestCase):
    """A pipelined pool (worker.pipeline_depth 2): calls that do not stream
    go through the pipeline (a worker has the next request before it
    answers this one); streams keep a worker of their own."""

    def server(self, death="cancel", **extra):
        cfg = {"on_client_death": death,
               "worker": {"pipeline_depth": 2}}
        cfg.update(extra)
        return Server(self, size=1, config=cfg)

    def test_calls_errors_and_streams(self):
        srv = self.server()
        st, h, body = srv.call("add_later", {"a": 2, "b": 40})
        self.assertEqual((st, body), (200, b"42"))
        data = bytes(range(256))
        st, h, body = srv.call("reverse_bytes", raw=data)
        self.assertEqual((st, h["Content-Type"], body),
                         (200, "application/octet-stream", data[::-1]))
        st, h, body = srv.call("fail_later", 1)
        self.assertEqual(st, 422)
        self.assertEqual(json.loads(body)["type"], "ValueError")
        st, h, body = srv.call("add_latr", {})
        self.assertEqual(st, 404)
        self.assertIn("add_later", json.loads(body)["message"])
        # A stream handler still streams (a lease, not the pipeline).
        st, h, body = srv.call("count", 3)
        self.assertEqual(st, 200)
        self.assertEqual(ndjson(body), [0, 1, 2])

    def test_two_in_flight_on_one_worker(self):
        """The second call is in the worker's pipe while the first runs:
        that is the pipeline (a lease would make it wait for a worker)."""
        srv = self.server()
        ctl = srv.control()
        self.addCleanup(ctl.close)
        events = srv.control().trace(EVENTS)
        self.addCleanup(events.close)
        fifo = os.path.join(srv.dir, "ready-piped")
        os.mkfifo(fifo)
        held = srv.hold("wait", {"secs": 600, "ready": fifo})
        wait_opened(fifo)
        second = srv.hold("add_later", {"a": 1, "b": 1})
        st = events.until(srv, lambda st: st["workers"][0]["in_flight"] == 2)
        self.assertEqual(st["size"], 1)
        # The first hangs up: cancelled (on_client_death: cancel); the
        # second is answered by the same worker.
        held.close()
        f = second.makefile("rb")
        code, hdrs, body = read_response(f)
        self.assertEqual((code, body), (200, b"2"))
        f.close()
        second.close()
        until_idle(srv, events)
        self.assertEqual(srv.marks_text().count("cancelled"), 1)
        self.assertEqual(ctl.status()["restarts"], 0)

    def test_hangup_finish_lets_it_run(self):
        """on_client_death: finish: a piped call whose client hangs up runs
        to its end (no CANCEL); the worker serves on."""
        srv = self.server(death="finish")
        events = srv.control().trace(EVENTS)
        self.addCleanup(events.close)
        fifo = os.path.join(srv.dir, "ready-finish")
        os.mkfifo(fifo)
        held = srv.hold("wait", {"secs": 1, "ready": fifo})
        wait_opened(fifo)
        held.close()
        until_idle(srv, events)
        self.assertEqual(srv.marks_text().count("cancelled"), 0)
        self.assertEqual(srv.call("add_later", {"a": 1, "b": 2})[2], b"3")

    def test_deadline_504(self):
        srv = self.server()
        events = srv.control().trace(EVENTS)
        self.addCleanup(events.close)
        st, h, body = srv.call("wait", {"secs": 600},
                               headers={"X-Deadline-Ms": "100"})
        self.assertEqual(st, 504)
        self.assertEqual(h["X-Call-Started"], "yes")
        until_idle(srv, events)
        self.assertEqual(srv.marks_text().count("cancelled"), 1)

    def test_deadline_while_waiting_never_started(self):
        """A piped call whose deadline passes while it waits for room in a
        pipeline never reached a worker: 504, X-Call-Started: no."""
        srv = self.server()
        events = srv.control().trace(EVENTS)
        self.addCleanup(events.close)
        fifo = os.path.join(srv.dir, "ready-waiting")
        os.mkfifo(fifo)
        first = srv.hold("wait", {"secs": 600, "ready": fifo})
        wait_opened(fifo)
        second = srv.hold("wait", {"secs": 600})
        events.until(srv, lambda st: st["workers"][0]["in_flight"] == 2)
        st, h, body = srv.call("add_later", {"a": 1, "b": 2},
                               headers={"X-Deadline-Ms": "50"})
        self.assertEqual(st, 504)
        self.assertEqual(h["X-Call-Started"], "no")
        first.close()
        second.close()
        until_idle(srv, events)

    def test_stream_before_first_hello(self):
        """A stream's call that comes while the pool warms (no worker said
        HELLO: the handlers' kinds are unknown) takes a lease and streams,
        not the pipeline."""
        gdir = tempfile.mkdtemp(prefix="pp-gate-")
        self.addCleanup(shutil.rmtree, gdir, True)
        gate = os.path.join(gdir, "gate")
        os.mkfifo(gate)
        cfg = {"on_client_death": "cancel",
               "worker": {"pipeline_depth": 2,
                          "env": {"PP_TEST_SETUP_GATE": gate}}}
        srv = Server(self, size=1, config=cfg, wait_ready=False)
        events = srv.control().trace("checkout_wait,hello")
        self.addCleanup(events.close)
        got = []
        t = threading.Thread(target=lambda: got.append(srv.call("count", 3)))
        t.start()
        events.until(srv, lambda st: st["waiters"] == 1)
        os.close(os.open(gate, os.O_WRONLY))  # the worker goes on
        t.join()
        st, h, body = got[0]
        self.assertEqual(st, 200)
        self.assertEqual(ndjson(body), [0, 1, 2])

    def test_busy_503_never_started(self):
        """Past the pipeline and max_waiters: 503, X-Call-Started: no."""
        srv = self.server(checkout={"max_waiters": 0})
        events = srv.control().trace(EVENTS)
        self.addCleanup(events.close)
        fifo = os.path.join(srv.dir, "ready-busy")
        os.mkfifo(fifo)
        first = srv.hold("wait", {"secs": 600, "ready": fifo})
        wait_opened(fifo)
        second = srv.hold("wait", {"secs": 600})
        events.until(srv, lambda st: st["workers"][0]["in_flight"] == 2)
        st, h, body = srv.call("add_later", {"a": 1, "b": 2})
        self.assertEqual(st, 503)
        self.assertEqual(h["X-Call-Started"], "no")
        self.assertEqual(json.loads(body)["error"], "PP_EBUSY")
        first.close()
        second.close()
        until_idle(srv, events)


# ------------------------------------------------------------ the listener


def write_token(directory, token, mode=0o600):
    path = os.path.join(directory, "token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.write(fd, token.encode())
    os.close(fd)
    os.chmod(path, mode)
    return path


class TestListener(unittest.TestCase):
    def tempdir(self):
        d = tempfile.mkdtemp(prefix="pp-http-t-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def refused(self, **kw):
        """serve exits non-zero before listening: (code, stderr)."""
        srv = Server(self, wait_ready=None, **kw)
        code = srv.proc.wait(limit(30))
        srv.out.thread.join(limit(30))
        srv.err.thread.join(limit(30))
        self.assertNotIn("listening on", srv.out.text())
        return code, srv.err.text()

    def test_token(self):
        token = "s3cret-token-0123456789abcdef"
        path = write_token(self.tempdir(), token + "\n")
        srv = Server(self, config={"listen": {"token_file": path}})
        # /v1/* and /metrics need it.
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"},
                        {"Authorization": "Bearer " + token[:-1]},
                        {"Authorization": "Bearer " + token + "x"},
                        {"Authorization": "Basic " + token},
                        {"Authorization": token}):
            st, h, body = srv.call("add_later", {"a": 1, "b": 2},
                                   headers=headers)
            self.assertEqual(st, 401, headers)
            self.assertEqual(json.loads(body)["error"], "EACCES")
            self.assertEqual(srv.request("GET", "/metrics", None,
                                         headers)[0], 401, headers)
        good = {"Authorization": "Bearer " + token}
        st, h, body = srv.call("add_later", {"a": 1, "b": 2}, headers=good)
        self.assertEqual((st, body), (200, b"3"))
        self.assertEqual(srv.request("GET", "/metrics", None, good)[0], 200)
        # The probes stay open.
        self.assertEqual(srv.request("GET", "/readyz")[:3:2],
                         (200, b"ready\n"))
        self.assertEqual(srv.request("GET", "/livez")[0], 200)

    def test_token_file_readable_by_others_refused(self):
        path = write_token(self.tempdir(), "0123456789abcdef0123", 0o644)
        code, err = self.refused(config={"listen": {"token_file": path}})
        self.assertNotEqual(code, 0)
        self.assertIn(path, err)
        self.assertIn("chmod o-rwx", err)

    def test_token_too_short_refused(self):
        path = write_token(self.tempdir(), "short-token\n")
        code, err = self.refused(config={"listen": {"token_file": path}})
        self.assertNotEqual(code, 0)
        self.assertIn("at least 16", err)

    def test_token_file_missing_refused(self):
        path = os.path.join(self.tempdir(), "nope")
        code, err = self.refused(config={"listen": {"token_file": path}})
        self.assertNotEqual(code, 0)
        self.assertIn(path, err)

    def test_beyond_loopback_needs_a_token(self):
        code, err = self.refused(listen="0.0.0.0:0")
        self.assertEqual(code, 2)  # a config error
        self.assertIn("listen.token_file", err)
        self.assertIn("listen.insecure", err)

    def test_beyond_loopback_insecure(self):
        srv = Server(self, listen="0.0.0.0:0",
                     config={"listen": {"insecure": True}})
        self.assertEqual(srv.host, "0.0.0.0")
        st, h, body = srv.call("add_later", {"a": 2, "b": 2})
        self.assertEqual((st, body), (200, b"4"))

    def test_beyond_loopback_with_token(self):
        token = "another-token-abcdefghijklmnop"
        path = write_token(self.tempdir(), token)
        srv = Server(self, listen="0.0.0.0:0",
                     config={"listen": {"token_file": path}})
        self.assertEqual(srv.call("add_later", {"a": 2, "b": 2})[0], 401)
        st, h, body = srv.call("add_later", {"a": 2, "b": 2},
                               headers={"Authorization": "Bearer " + token})
        self.assertEqual((st, body), (200, b"4"))

    def test_tls(self):
        d = self.tempdir()
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-subj", "/CN=localhost", "-days", "1",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", key, "-out", cert],
            capture_output=True, timeout=limit(120))
        self.assertEqual(r.returncode, 0, r.stderr)
        srv = Server(self, config={"listen": {"tls": {"cert": cert,
                                                      "key": key}}})
        self.assertEqual(srv.scheme, "https")
        ctx = ssl.create_default_context(cafile=cert)
        c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx,
                                        timeout=limit(30))
        st, h, body = srv.request("POST", "/v1/call/reverse_bytes",
                                  b"\x01\x02\x03",
                                  {"Content-Type":
                                   "application/octet-stream"}, conn=c)
        self.assertEqual((st, body), (200, b"\x03\x02\x01"))
        st, h, body = srv.request("POST", "/v1/call/count", b"3",
                                  {"Content-Type": "application/json"},
                                  conn=c)
        self.assertEqual((st, ndjson(body)), (200, [0, 1, 2]))
        self.assertEqual(srv.request("GET", "/readyz", conn=c)[2],
                         b"ready\n")
        c.close()
        # A client that does not trust the certificate is refused.
        c = http.client.HTTPSConnection(
            "127.0.0.1", srv.port, context=ssl.create_default_context(),
            timeout=limit(30))
        with self.assertRaises(ssl.SSLCertVerificationError):
            c.request("GET", "/livez")
        c.close()
        # Plain HTTP on the TLS port gets no HTTP answer.
        c = srv.conn()
        with self.assertRaises((http.client.HTTPException, OSError)):
            c.request("GET", "/livez")
            c.getresponse().read()
        c.close()

    def test_tls_cert_without_key_refused(self):
        d = self.tempdir()
        code, err = self.refused(config={"listen": {"tls": {
            "cert": os.path.join(d, "cert.pem")}}})
        self.assertNotEqual(code, 0)
        self.assertIn("listen.tls.key", err)

    def test_keepalive_bound(self):
        """listen.keepalive_requests 2: the 2nd answer on a connection says
        Connection: close, and the server closes it."""
        srv = Server(self, size=1,
                     config={"listen": {"keepalive_requests": 2}})
        s = socket.create_connection(("127.0.0.1", srv.port),
                                     timeout=limit(30))
        self.addCleanup(s.close)
        f = s.makefile("rb")
        self.addCleanup(f.close)
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, body = read_response(f)
        self.assertEqual((st, body), (200, b"ok\n"))
        self.assertNotEqual(h.get("connection", "").lower(), "close")
        body = b'{"a":1,"b":1}'
        s.sendall(b"POST /v1/call/add_later HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        st, h, body = read_response(f)
        self.assertEqual((st, body), (200, b"2"))
        self.assertEqual(h.get("connection", "").lower(), "close")
        self.assertEqual(f.read(), b"")  # closed by the server
        # A new connection starts its count again.
        c = srv.conn()
        st, h, body = srv.request("GET", "/livez", conn=c)
        self.assertNotEqual((h["Connection"] or "").lower(), "close")
        c.close()

    def test_keepalive_bound_on_a_stream(self):
        """The Nth request closes its connection even when it is a
        stream."""
        srv = Server(self, size=1,
                     config={"listen": {"keepalive_requests": 2}})
        c = srv.conn()
        self.addCleanup(c.close)
        self.assertEqual(srv.request("GET", "/livez", conn=c)[0], 200)
        st, h, body = srv.request("POST", "/v1/call/count", b"2",
                                  {"Content-Type": "application/json"},
                                  conn=c)
        self.assertEqual((st, ndjson(body)), (200, [0, 1]))
        self.assertEqual((h["Connection"] or "").lower(), "close")
        c.close()

    def test_max_connections(self):
        srv = Server(self, size=1,
                     config={"listen": {"max_connections": 2}})
        # Two connections, each answered once and kept open.
        conns = []
        for _ in range(2):
            c = srv.conn()
            self.assertEqual(srv.request("GET", "/livez", conn=c)[0], 200)
            conns.append(c)
        # A third waits unserved (the kernel's backlog holds it).
        s = socket.create_connection(("127.0.0.1", srv.port),
                                     timeout=limit(30))
        self.addCleanup(s.close)
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        # Rounds of the server's loop on the second connection meanwhile:
        # without the bound, the third would have had its answer by now.
        for _ in range(3):
            self.assertEqual(srv.request("GET", "/livez", conn=conns[1])[0],
                             200)
        s.setblocking(False)
        with self.assertRaises(BlockingIOError):
            s.recv(100)
        s.setblocking(True)
        s.settimeout(limit(30))
        # The first one ends (Connection: close), and the loop turns (a
        # request on the second): the third is served.
        st, h, body = srv.request("GET", "/livez",
                                  headers={"Connection": "close"},
                                  conn=conns[0])
        self.assertEqual(st, 200)
        conns[0].close()
        self.assertEqual(srv.request("GET", "/livez", conn=conns[1])[0], 200)
        f = s.makefile("rb")
        self.assertTrue(f.readline().startswith(b"HTTP/1.1 200"))
        f.close()
        conns[1].close()

    def test_max_connections_freed_slot_serves_the_next(self):
        """A connection waiting over listen.max_connections is served as
        soon as one closes, not at the next unrelated wake-up of the loop
        (here none comes: listen.timeout is long)."""
        srv = Server(self, size=1,
                     config={"listen": {"max_connections": 1,
                                        "timeout": "10m"}})
        c = srv.conn()
        self.assertEqual(srv.request("GET", "/livez", conn=c)[0], 200)
        s = socket.create_connection(("127.0.0.1", srv.port),
                                     timeout=limit(10))
        self.addCleanup(s.close)
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, body = srv.request("GET", "/livez",
                                  headers={"Connection": "close"}, conn=c)
        self.assertEqual(st, 200)
        c.close()
        f = s.makefile("rb")
        try:
            line = f.readline()
        except TimeoutError:
            line = b"(timed out)"
        f.close()
        self.assertTrue(line.startswith(b"HTTP/1.1 200"), line)

    def test_stop_while_serving(self):
        srv = Server(self, size=1)
        self.assertEqual(srv.call("add_later", {"a": 1, "b": 1})[0], 200)
        self.assertEqual(srv.stop(), 0)
        srv.out.wait(r"^stopped$")


if __name__ == "__main__":
    unittest.main(verbosity=2)
