"""The handler examples (examples/handlers/*.py) do what their docstrings
say: every line `poolctl call NAME 'ARGS' [--timeout Ns] -> RESULT` in a
module's docstring is run against a real worker serving that module, and
RESULT is checked: a JSON value, `b"..."` for bytes, `PP_EHANDLER Type` for
an ERROR of that type, or `ITEM | ITEM | ... | RESULT` for a stream (the
call takes one, as poolctl's does).  A docstring line `worker.concurrency: N`
starts the worker as a pool with that setting would.  docs/handlers.md points at these files, so the contract's examples
cannot drift from what the worker does."""
import ast
import glob
import json
import os
import re
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import drive_worker as dw  # noqa: E402

EXAMPLES = os.path.join(dw.ROOT, "examples", "handlers")
LINE = re.compile(
    r"^\s*poolctl call (\w+) (?:'([^']*)'|(\S+))(?:\s+--timeout (\d+)s)?\s+-> (.+?)\s*$"
)
# A binary call: pp_call_bytes(pool, "NAME", b"...") -> RESULT
BYTES_LINE = re.compile(
    r'^\s*pp_call_bytes\(pool, "(\w+)", (b"[^"]*")\)\s+-> (.+?)\s*$'
)


def calls_of(path):
    with open(path) as f:
        text = f.read()
    doc = text.split('"""')[1] if text.lstrip("r").startswith('"""') else ""
    calls = []
    for line in doc.splitlines():
        m = LINE.match(line)
        if m:
            cmd, quoted, bare, timeout, want = m.groups()
            calls.append((cmd, quoted if quoted is not None else bare, timeout, want))
            continue
        m = BYTES_LINE.match(line)
        if m:
            cmd, data, want = m.groups()
            calls.append((cmd, ast.literal_eval(data), None, want))
    return calls


class TestExamples(unittest.TestCase):
    def tearDown(self):
        while dw._workers:
            dw._workers.pop().cleanup()

    def check_item(self, w, rid, cmd, want, stream):
        """The next REPLY: want as bytes (b"...") or JSON; a stream's item
        when stream (4) is set, else the last answer."""
        ftype, flags, got_id, payload = w.recv()
        binary = 2 if want.startswith('b"') else 0
        self.assertEqual((ftype, flags, got_id), (dw.REPLY, stream | binary, rid), cmd)
        if binary:
            self.assertEqual(payload, ast.literal_eval(want), cmd)
        else:
            self.assertEqual(json.loads(payload), json.loads(want), cmd)

    def test_every_example(self):
        paths = sorted(glob.glob(os.path.join(EXAMPLES, "*.py")))
        self.assertGreaterEqual(len(paths), 5)
        for path in paths:
            calls = calls_of(path)
            with self.subTest(example=os.path.basename(path)):
                self.assertTrue(calls, "%s documents no call" % path)
                env = {"PORTPOOL_WORKER_ID": "0"}
                m = re.search(r"^\s*worker\.concurrency: (\d+)\s*$", open(path).read(), re.M)
                if m:
                    env["PORTPOOL_CONCURRENCY"] = m.group(1)
                w = dw.spawn(path, env=env)
                w.hello()
                for rid, (cmd, args, timeout, want) in enumerate(calls, 1):
                    if isinstance(args, bytes):
                        # Binary: the name, a zero byte, the bytes.
                        w.send_raw(dw.frame(dw.REQUEST, rid,
                                            cmd.encode() + b"\0" + args, flags=2))
                    else:
                        body = json.dumps({"cmd": cmd, "args": json.loads(args)}).encode()
                    if isinstance(args, bytes):
                        pass
                    elif timeout:
                        at = time.monotonic_ns() + int(timeout) * 10**9
                        w.send_raw(
                            dw.frame(dw.REQUEST, rid, struct.pack(">Q", at) + body, flags=1)
                        )
                    else:
                        stream = 4 if " | " in want else 0
                        w.send_raw(dw.frame(dw.REQUEST, rid, body, flags=stream))
                    if " | " in want:
                        *items, want = want.split(" | ")
                        for item in items:
                            self.check_item(w, rid, cmd, item, 4)
                        self.check_item(w, rid, cmd, want, 0)
                    elif want.startswith("PP_EHANDLER "):
                        err = json.loads(w.expect(dw.ERROR, rid))
                        self.assertEqual(err["type"], want.split()[1], (cmd, err))
                    else:
                        self.check_item(w, rid, cmd, want, 0)
                w.close_requests()
                self.assertEqual(w.wait(), 0)


if __name__ == "__main__":
    unittest.main()
