"""portpool_worker -- the worker side of the portpool bridge protocol.

Usage: python3 portpool_worker.py [--raw] HANDLER

HANDLER is a path to a .py file or an importable module name.  The pool
writes frames to this process on fd 3 and reads its frames from fd 4; stdin
is /dev/null and stdout/stderr are pipes the pool logs line by line, so a
handler's print() can never corrupt the protocol.

A frame is a u32 big-endian length of what follows, then u8 type, u8 flags,
u16 zero, u32 big-endian request id, then the payload (see bridge/frame.h).

JSON mode (default): a REQUEST payload is {"cmd": NAME, "args": VALUE}; the
handler NAME is called with VALUE (None when absent) and its result is sent
back as a compact JSON REPLY.  The handlers are the module's own public
functions (callables, not classes, whose __module__ is the handler module
and whose name does not start with "_"), or, when the module defines
__all__, exactly the names it lists; anything else in the namespace (a
function it imported, `from subprocess import getoutput`) is never called.
An __all__ entry that is not an identifier, not defined or not callable is a
boot failure, as is a module that cannot be imported (or raises or calls
sys.exit() while being imported): in place of HELLO the worker sends one
ERROR frame with request id 0 carrying {"type", "message", "traceback"},
then exits 1 (on stderr instead when fd 4 is not a pipe).  HELLO lists the
handlers.
Raw mode (--raw): the module defines handle(payload: bytes) -> bytes, the
one handler, and payloads pass through untouched.  Failures become an
ERROR frame carrying JSON {"type": ..., "message": ..., "traceback": ...};
the worker keeps running.  An unknown NAME gives type "UnknownCommand" with
two more keys: "handlers" (the list) and "suggestion" (the nearest name, or
null), both also in the message.

Environment: PORTPOOL_PARENT_PID, the pool's pid (if the parent is already
another process at start-up, the worker exits 1 at once); PORTPOOL_MAX_FRAME,
optional, the pool's max_frame: a result larger than it is replaced by an
ERROR of type "FrameTooBig" ("result of N bytes exceeds worker.max_frame")
instead of being sent and killing the worker, and an ERROR frame that would
not fit is cut: the message keeps its start, the traceback its end, and
the payload gets "truncated": true.  A result holding a lone surrogate
("\\ud800"), which JSON text cannot carry, becomes a ValueError.

Limits: PORTPOOL_LIMITS ("nofile=64:64,cpu=2:3": worker.limits.* as
name=soft:hard) is applied with resource.setrlimit before the handler is
imported; with PORTPOOL_HOLD=1 (worker.memory_max) the worker then reads
one byte from fd 3: b"G" once the pool has moved it into its cgroup, or
b"E" and a reason.  A limit that cannot be applied, or an "E", is a boot
failure of type LimitError.

Orphans: no process of a worker outlives its pool.  The pool starts each
worker as the leader of its own process group (and session); the worker
arms PR_SET_PDEATHSIG with SIGTERM, so it hears of the pool's death even
by SIGKILL, and its SIGTERM handler kills the whole group with SIGKILL --
itself and every subprocess its handlers started (subprocess, os.fork,
multiprocessing).  The pool's own stop signals the group too.  A child a
handler forks from the main thread also gets a parent-death signal
(SIGKILL), so it dies with the worker even if the worker just exits; on
EOF of fd 3 the worker kills what is left in its group, then exits 0.
Limits: a handler that replaces the SIGTERM handler must kill its children
itself; a subprocess that moves to a session or group of its own
(setsid, start_new_session=True) leaves the group and is not reached; and
when the worker is not a group leader (run by hand), SIGTERM only ends the
worker.  A worker that gets SIGTERM exits by SIGKILL ("signal 9").

Handlers may `import portpool_worker` and call cancelled() to learn whether
the pool has cancelled the request they are running; current_request_id is
the id of that request (None between requests); deadline() is the
time.monotonic() instant after which the pool gives up on it and
remaining() the seconds left (both None when it has no deadline).  A
request that reaches its handler past its deadline is answered with an
ERROR of type "DeadlineExceeded" and not run.  Frames are handled in
order, one request at a time: a PING is answered between requests, or
during one whenever its handler calls cancelled(); a queued request that is
cancelled before it runs gets an ERROR of type "Cancelled"; a CANCEL for a
request already answered is ignored.  That is worker.concurrency 1; with
PORTPOOL_CONCURRENCY=N (2..1024; anything but 1..1024 fails the start) the
worker runs up to N requests at once from an asyncio loop and replies out
of order by id: async handlers as tasks (a CANCEL cancels the task), plain
handlers and a generator's next() in a thread pool of N (they must be
thread-safe), the rest queued in arrival order; deadline(), remaining(),
cancelled() and current_request_id then answer for the calling task or
thread's own request, and HELLO carries "concurrency": N (see the notes
in _portpool_worker.py).

ERROR types: the handler's exception class name; "UnknownCommand";
"BadRequest" (payload not UTF-8 JSON, or not an object with a string cmd);
"TypeError"/"ValueError" (result not JSON-serialisable, NaN, a lone
surrogate); "Cancelled"; "DeadlineExceeded"; "FrameTooBig".

Exit status: 0 on EOF of fd 3 (or when the pool stops reading fd 4);
1 when it cannot start (usage, a boot failure, parent already gone,
fds 3/4 missing, a bad PORTPOOL_CONCURRENCY); 2 on a protocol error from
the pool (malformed frame or a frame type the pool must not send); a
handler's sys.exit()/os._exit() or a signal otherwise.
"""

import sys

# The code is in _portpool_worker.py.  Run as a script, a file is compiled
# at every start (10 ms for that one); imported, it comes from the bytecode
# cache the build writes.  There is one module either way: `import
# portpool_worker` (handlers, the zygote) gives _portpool_worker.
import _portpool_worker

sys.modules["portpool_worker"] = _portpool_worker

if __name__ == "__main__":
    sys.exit(_portpool_worker.main())
