"""portpool_zygote -- imports the handler module once, then forks workers.

Usage: python3 portpool_zygote.py [--raw] HANDLER   (worker.start: zygote)

The pool starts one zygote per pool instead of one interpreter per worker.
fd 3 is a SOCK_SEQPACKET Unix socket to the pool.  Messages:

  pool -> zygote  b"F" + u32 slot + u32 generation      fork a worker
  zygote -> pool  b"W" + u32 slot + u32 generation + i32 pid,
                  with SCM_RIGHTS [request-write, reply-read, stdout-read,
                  stderr-read]                           a worker is forked
  zygote -> pool  b"X" + i32 pid + i32 wait status       a worker was reaped
  zygote -> pool  b"E" + u32 slot + u32 generation + utf-8 text
                                                        the fork failed

A forked worker runs exactly what portpool_worker.py runs after its import:
it leads a new session and process group, has the protocol on fds 3 and 4
and stdout/stderr on pipes of its own, says HELLO and serves.  gc.freeze()
before each fork keeps the imported module's pages shared: the first
collection in a child would otherwise dirty them.

Orphans: the zygote arms PR_SET_PDEATHSIG with SIGTERM and exits on EOF of
fd 3; each worker arms its own parent-death signal against the zygote, so
when the pool dies, the zygote dies, and so does every worker and
everything in their process groups.
"""

import gc
import os
import select
import signal
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import portpool_worker as pw  # noqa: E402

CTL_FD = 3
# The zygote's SIGCHLD wake-up pipe, which a forked worker closes: one
# that kept it could steal the zygote's wake-ups (and so its reaping).
_WAKE = []
_FORK = struct.Struct(">II")
_WORKER = struct.Struct(">IIi")
_EXIT = struct.Struct(">ii")


def _child(ctl, fds, module, raw, slot, limits):
    """In the forked child: become a worker and never return."""
    req_r, rep_w, out_w, err_w = fds
    try:
        # The control socket is fd 3, about to become the request pipe:
        # forget it without closing (dup2 below replaces it).
        ctl.detach()
        os.setsid()
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(req_r, pw.REQ_FD)
        os.dup2(rep_w, pw.REP_FD)
        for fd in fds:
            if fd > pw.REP_FD:
                os.close(fd)
        # Our parent is the zygote now: that is the parent to outlive.
        os.environ["PORTPOOL_PARENT_PID"] = str(os.getppid())
        os.environ["PORTPOOL_WORKER_ID"] = str(slot)
        signal.set_wakeup_fd(-1)
        for fd in _WAKE:
            if fd > pw.REP_FD:
                os.close(fd)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        # Stay frozen: what the zygote imported is never collected here, so
        # a full collection in the worker leaves those shared pages alone.
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        pw._orphan_proof()
        # Its limits (and its cgroup) before after_fork() and setup(), as
        # the zygote read them before it imported the module.
        try:
            pw.apply_limits(limits)
        except pw.LimitError as exc:
            module = exc
        if isinstance(module, BaseException):
            code = pw.boot_failed(module)
        else:
            code = pw.serve_module(module, raw, forked=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _fork(ctl, module, raw, slot, gen, limits):
    fds = []
    try:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        fds = [req_r, req_w, rep_r, rep_w, out_r, out_w, err_r, err_w]
        gc.freeze()
        pid = os.fork()
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        ctl.send(b"E" + _FORK.pack(slot, gen) + str(exc).encode())
        return
    if pid == 0:
        for fd in (req_w, rep_r, out_r, err_r):
            os.close(fd)
        _child(ctl, (req_r, rep_w, out_w, err_w), module, raw, slot, limits)
    for fd in (req_r, rep_w, out_w, err_w):
        os.close(fd)
    parent_ends = [req_w, rep_r, out_r, err_r]
    try:
        ctl.sendmsg(
            [b"W" + _WORKER.pack(slot, gen, pid)],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("4i", *parent_ends))],
        )
    finally:
        for fd in parent_ends:
            os.close(fd)


def _reap(ctl):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        ctl.send(b"X" + _EXIT.pack(pid, status))


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    raw = bool(args) and args[0] == "--raw"
    if raw:
        del args[0]
    if len(args) != 1:
        sys.stderr.write("usage: portpool_zygote.py [--raw] HANDLER\n")
        return pw.EXIT_STARTUP
    pw._prctl_pdeathsig(signal.SIGTERM)
    parent = os.environ.get("PORTPOOL_PARENT_PID")
    if parent and int(parent) != os.getppid():
        return pw.EXIT_STARTUP
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        ctl = socket.socket(fileno=CTL_FD)
    except OSError as exc:
        sys.stderr.write("portpool_zygote: fd 3 is not the pool's socket: %s\n" % exc)
        return pw.EXIT_STARTUP
    # The module's import runs handler code in this process, and what it
    # does here every worker inherits: so the limits are read before it
    # (the module cannot change what workers get), and those that count
    # nothing over the zygote's life are set on the zygote itself, so
    # they bind the import too and no worker can raise them.  nproc and
    # cpu each worker sets after its fork.
    # A module that cannot boot is kept as its exception: each forked
    # worker reports it to the pool as a boot failure (in place of HELLO),
    # so the pool fails its start at once, as with worker.start: spawn.
    limits = ([], False)
    try:
        limits = pw.read_limits()
        pw.set_limits(limits[0], pw.ZYGOTE_LIMITS)
        module = pw._load_handler(args[0])
        # The table each forked worker dispatches to: checked once, here.
        pw.handler_table(module, raw)
    except (Exception, SystemExit) as exc:
        module = exc
    # SIGCHLD wakes the loop through a pipe, so children are reaped at once.
    wake_r, wake_w = os.pipe()
    _WAKE[:] = [wake_r, wake_w]
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    try:
        ctl.send(b"R")
        _serve(ctl, module, raw, wake_r, limits)
    except (ConnectionResetError, BrokenPipeError):
        pass  # the pool went away: as for its close
    return pw.EXIT_OK


def _serve(ctl, module, raw, wake_r, limits):
    """Fork workers as the pool asks, and report their exits, until the pool
    closes the control socket."""
    while True:
        ready, _, _ = select.select([ctl, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 512)
            _reap(ctl)
        if ctl in ready:
            msg = ctl.recv(64)
            if not msg:
                return
            if msg[:1] == b"F" and len(msg) == 1 + _FORK.size:
                slot, gen = _FORK.unpack(msg[1:])
                _fork(ctl, module, raw, slot, gen, limits)
                _reap(ctl)


if __name__ == "__main__":
    sys.exit(main())
