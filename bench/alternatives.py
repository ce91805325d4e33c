"""alternatives.py -- the same echo through what people use instead of a
worker pool, one caller, one call at a time:

  multiprocessing.Pool(2).apply(echo, (payload,))
  ProcessPoolExecutor(2).submit(echo, payload).result()
  an Erlang port {packet,4} <-> portpool_worker.py --raw (when `escript`
  is on PATH; the port's stdin/stdout become the worker's fds 3/4)

Prints one machine-readable line per alternative, read by ppbench:

  ALT name=NAME p50_us=F p99_us=F calls_s=F n=N
  ALT name=NAME skipped=WHY_WITH_UNDERSCORES

Standard library only.  Usage:
  python3 bench/alternatives.py [--duration S] [--payload N]
      [--python PATH --worker PATH --root DIR]   (for the Erlang port)
"""

import argparse
import concurrent.futures
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time


def echo(x):
    return x


def _stats(lat_ns, seconds):
    lat_ns.sort()
    n = len(lat_ns)
    if n == 0:
        return 0.0, 0.0, 0.0, 0

    def q(p):
        k = max(1, min(n, int(p * n + 0.999999)))
        return lat_ns[k - 1] / 1e3

    return q(0.50), q(0.99), n / seconds, n


def _line(name, lat_ns, seconds):
    p50, p99, cps, n = _stats(lat_ns, seconds)
    print(
        "ALT name=%s p50_us=%.1f p99_us=%.1f calls_s=%.1f n=%d"
        % (name, p50, p99, cps, n),
        flush=True,
    )


def _skip(name, why):
    print("ALT name=%s skipped=%s" % (name, why.replace(" ", "_")), flush=True)


def _timed(call, payload, duration, warmup=300):
    for _ in range(warmup):
        call(payload)
    lat = []
    clock = time.perf_counter_ns
    t_end = clock() + int(duration * 1e9)
    t_start = clock()
    while True:
        t0 = clock()
        r = call(payload)
        t1 = clock()
        if r != payload:
            raise RuntimeError("bad echo")
        lat.append(t1 - t0)
        if t1 >= t_end:
            break
    return lat, (t1 - t_start) / 1e9


def bench_mp_pool(payload, duration):
    with multiprocessing.Pool(2) as pool:
        lat, secs = _timed(lambda p: pool.apply(echo, (p,)), payload, duration)
    _line("multiprocessing.Pool(2).apply", lat, secs)


def bench_ppe(payload, duration):
    with concurrent.futures.ProcessPoolExecutor(2) as ex:
        lat, secs = _timed(lambda p: ex.submit(echo, p).result(), payload, duration)
    _line("ProcessPoolExecutor(2).submit.result", lat, secs)


# The Erlang side: a port with {packet,4} framing speaks the bridge frames
# directly (the 4-byte length is the frame's own length field).
ESCRIPT = r"""#!/usr/bin/env escript
main([Python, Worker, Handler, DurMsS, SizeS]) ->
    DurMs = list_to_integer(DurMsS),
    Size = list_to_integer(SizeS),
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c",
                              "exec \"$0\" \"$1\" --raw \"$2\" 3<&0 4>&1 0</dev/null 1>&2",
                              Python, Worker, Handler]},
                      {packet, 4}, binary, exit_status]),
    receive {Port, {data, <<1, _/binary>>}} -> ok
    after 30000 -> halt(1)
    end,
    Payload = binary:copy(<<"x">>, Size),
    _ = loop(Port, Payload, erlang:monotonic_time(nanosecond) + 200000000, 1, []),
    Deadline = erlang:monotonic_time(nanosecond) + DurMs * 1000000,
    Lat = loop(Port, Payload, Deadline, 1000000, []),
    Sorted = lists:sort(Lat),
    N = length(Sorted),
    P50 = lists:nth(max(1, (N * 50 + 99) div 100), Sorted),
    P99 = lists:nth(max(1, (N * 99 + 99) div 100), Sorted),
    io:format("~b ~b ~b~n", [N, P50, P99]),
    port_close(Port).

loop(Port, Payload, Deadline, Id, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    port_command(Port, <<2, 0, 0:16, Id:32, Payload/binary>>),
    receive {Port, {data, <<3, _:8, _:16, Id:32, _/binary>>}} -> ok end,
    T1 = erlang:monotonic_time(nanosecond),
    Acc1 = [T1 - T0 | Acc],
    if T1 >= Deadline -> Acc1;
       true -> loop(Port, Payload, Deadline, Id + 1, Acc1)
    end.
"""


def bench_erlang(size, duration, python, worker, root):
    name = "erlang_port"
    escript = shutil.which("escript")
    if escript is None:
        _skip(name, "escript not on PATH")
        return
    if not (python and worker and root):
        _skip(name, "needs --python --worker --root")
        return
    handler = os.path.join(root, "fixtures", "raw_echo.py")
    with tempfile.NamedTemporaryFile("w", suffix=".escript", delete=False) as f:
        f.write(ESCRIPT)
        path = f.name
    try:
        out = subprocess.run(
            [escript, path, python, worker, handler, str(int(duration * 1000)), str(size)],
            capture_output=True,
            text=True,
            timeout=duration + 60,
        )
        fields = out.stdout.split()
        if out.returncode != 0 or len(fields) < 3:
            _skip(name, "escript failed: " + (out.stderr.strip().splitlines() or ["?"])[-1][:100])
            return
        n, p50, p99 = (int(x) for x in fields[:3])
        print(
            "ALT name=%s p50_us=%.1f p99_us=%.1f calls_s=%.1f n=%d"
            % (name, p50 / 1e3, p99 / 1e3, n / duration, n),
            flush=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        _skip(name, "escript failed: %s" % exc)
    finally:
        os.unlink(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--payload", type=int, default=64)
    ap.add_argument("--python", default=os.path.realpath(sys.executable))
    ap.add_argument("--worker")
    ap.add_argument("--root")
    a = ap.parse_args()
    payload = b"x" * a.payload
    bench_mp_pool(payload, a.duration)
    bench_ppe(payload, a.duration)
    bench_erlang(a.payload, a.duration, a.python, a.worker, a.root)


if __name__ == "__main__":
    main()
