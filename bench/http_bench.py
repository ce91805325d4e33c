"""http_bench -- bench/http.sh's driver: the same JSON echo served by
`poolctl serve --listen`, gunicorn sync and gunicorn gthread (equal worker
counts), each direct and behind one HAProxy (mode http, balance leastconn),
loaded by wrk (closed loop, N keep-alive connections) in interleaved
rounds; writes the markdown section "HTTP face vs gunicorn" and the rounds
as JSON lines.  Standard library only.  Not a test: exit status 0 whatever
PASS/FAIL says (non-zero only when a server could not start or wrk failed).

  python3 bench/http_bench.py --poolctl build-bench/poolctl --out-md bench/results/http.md
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TIMEOUT = 30.0  # any single wait for a server; only runs out when broken


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_ok(port, body):
    """True when one POST /v1/call/echo on its own connection answers 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"POST /v1/call/echo HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nConnection: close\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def wait_until(what, pred):
    deadline = time.monotonic() + TIMEOUT
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for " + what)
        time.sleep(0.05)  # a benchmark's start-up, not a test


def children(pid):
    out = []
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return out
    for k in kids:
        out.append(k)
        out.extend(children(k))
    return out


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def system_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return busy, sum(v)


class Server:
    """One server process (and its children: workers)."""

    def __init__(self, name, label, argv, tmp, env=None):
        self.name = name
        self.label = label
        self.argv = argv
        self.tmp = tmp
        self.env = env
        self.proc = None
        self.port = None
        self.log = os.path.join(tmp, name + ".log")

    def start(self):
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)

    def pids(self):
        return [self.proc.pid] + children(self.proc.pid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc:
            self.logf.close()

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--poolctl", required=True)
    ap.add_argument("--python", default="/usr/bin/python3",
                    help="the portpool workers' interpreter (gunicorn's, by default)")
    ap.add_argument("--gunicorn", default=shutil.which("gunicorn") or "gunicorn")
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    ap.add_argument("--workers", default="2", help="worker counts, comma-separated: 2,4")
    ap.add_argument("--threads", type=int, default=4, help="gthread threads per worker")
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--duration", type=int, default=3, help="seconds per case per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--json", help="the rounds as JSON lines")
    ap.add_argument("--command", default="bench/http.sh")
    a = ap.parse_args()
    a.workers = [int(x) for x in str(a.workers).split(",")]
    results = []
    for W in a.workers:
        print("== %d workers each" % W, flush=True)
        rounds, servers, order = measure(a, W)
        crashes = servers.pop("crashes")
        labels = {n: s.label for n, s in servers.items()}
        labels["crashes"] = crashes
        results.append((W, rounds, labels, order))
    if a.json:
        with open(a.json, "w") as f:
            for W, rounds, _, _ in results:
                for rows in rounds:
                    for r in rows:
                        r = {k: v for k, v in r.items() if k != "wrk_text"}
                        r["workers"] = W
                        f.write(json.dumps(r) + "\n")
    write_md(a, results)
    return 0


def measure(a, W):
    tmp = tempfile.mkdtemp(prefix="pphttp.")
    lua = os.path.join(HERE, "http_wrk.lua")
    with open(lua) as f:
        body = next(l for l in f if l.startswith("wrk.body")).split("'")[1].encode()
    a.body_len = len(body)
    handlers = os.path.join(HERE, "handlers")

    cfg = os.path.join(tmp, "pool.yaml")
    with open(cfg, "w") as f:
        f.write("name: httpbench\nsize: %d\nworker:\n  allow_root: true\n  pipeline_depth: 2\n  command: [%s, %s, %s]\n"
                "control:\n  socket: %s\n"
                % (W, json.dumps(a.python),
                   json.dumps(os.path.join(ROOT, "bridge", "python", "portpool_worker.py")),
                   json.dumps(os.path.join(handlers, "http_echo.py")),
                   json.dumps(os.path.join(tmp, "pool.sock"))))

    servers = {}
    pp = Server("portpool", "portpool (`poolctl serve --listen`, size %d, pipeline_depth 2)" % W,
                [a.poolctl, "serve", "-c", cfg, "--listen", "127.0.0.1:0"], tmp)
    servers["portpool"] = pp
    gport = {"gsync": free_port(), "gthread": free_port()}
    servers["gsync"] = Server(
        "gsync", "gunicorn sync (`-w %d`)" % W,
        [a.gunicorn, "-w", str(W), "-b", "127.0.0.1:%d" % gport["gsync"],
         "--chdir", handlers, "--log-level", "info", "http_echo_wsgi:app"], tmp)
    servers["gthread"] = Server(
        "gthread", "gunicorn gthread (`-w %d --threads %d`)" % (W, a.threads),
        [a.gunicorn, "-w", str(W), "-k", "gthread", "--threads", str(a.threads),
         "-b", "127.0.0.1:%d" % gport["gthread"], "--chdir", handlers,
         "--log-level", "info", "http_echo_wsgi:app"], tmp)
    order = ["portpool", "gsync", "gthread"]
    hap = None
    try:
        for s in servers.values():
            s.start()
        # portpool prints its port, then "ready: " once all W workers are up.
        wait_until("portpool's listening line",
                   lambda: "listening on http://127.0.0.1:" in pp.log_text()
                   or pp.proc.poll() is not None)
        wait_until("portpool ready", lambda: "ready: " in pp.log_text()
                   or pp.proc.poll() is not None)
        if pp.proc.poll() is not None:
            raise RuntimeError("poolctl serve exited: " + pp.log_text())
        line = next(l for l in pp.log_text().splitlines()
                    if "listening on http://127.0.0.1:" in l)
        pp.port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        for n in ("gsync", "gthread"):
            s = servers[n]
            s.port = gport[n]
            wait_until(n + "'s %d workers" % W,
                       lambda s=s: s.log_text().count("Booting worker") >= W
                       or s.proc.poll() is not None)
            if s.proc.poll() is not None:
                raise RuntimeError(n + " exited: " + s.log_text())
            wait_until(n + " answering", lambda s=s: post_ok(s.port, body))
        wait_until("portpool answering", lambda: post_ok(pp.port, body))

        # One HAProxy, one frontend per server: the same config for each.
        hport = {n: free_port() for n in order}
        hcfg = os.path.join(tmp, "haproxy.cfg")
        with open(hcfg, "w") as f:
            f.write("global\n  maxconn 4096\n\n"
                    "defaults\n  mode http\n  timeout connect 5s\n"
                    "  timeout client 30s\n  timeout server 30s\n\n")
            for n in order:
                f.write("frontend fe_%s\n  bind 127.0.0.1:%d\n  default_backend be_%s\n\n"
                        "backend be_%s\n  balance leastconn\n  server s1 127.0.0.1:%d\n\n"
                        % (n, hport[n], n, n, servers[n].port))
        hap = Server("haproxy", "haproxy", [a.haproxy, "-db", "-f", hcfg], tmp)
        hap.start()
        for n in order:
            wait_until("haproxy frontend for " + n,
                       lambda n=n: post_ok(hport[n], body) or hap.proc.poll() is not None)
            if hap.proc.poll() is not None:
                raise RuntimeError("haproxy exited: " + hap.log_text())

        cases = [(n, p) for p in ("direct", "haproxy") for n in order]
        crashes = []

        def ensure_up():
            """A server found dead (portpool's serve crashed once a load's
            connections closed: see the report) is counted and started
            again on its port; the others must not die."""
            for n in order:
                s = servers[n]
                if s.proc.poll() is None:
                    continue
                crashes.append((n, s.proc.returncode))
                print("%s exited (status %d); starting it again"
                      % (n, s.proc.returncode), flush=True)
                if n != "portpool":
                    raise RuntimeError(n + " exited: " + s.log_text())
                s.logf.close()
                s.argv[-1] = "127.0.0.1:%d" % s.port
                s.start()
                wait_until("portpool ready again", lambda: "ready: " in s.log_text()
                           or s.proc.poll() is not None)
                if s.proc.poll() is not None:
                    raise RuntimeError("poolctl serve exited: " + s.log_text())

        def run_case(n, path, duration):
            ensure_up()
            port = servers[n].port if path == "direct" else hport[n]
            watched = servers[n].pids() + (hap.pids() if path == "haproxy" else [])
            front = servers[n].proc.pid
            before = {pid: cpu_ticks(pid) for pid in watched}
            sb = system_busy()
            t0 = time.monotonic()
            p = subprocess.Popen(
                [a.wrk, "-t", str(a.wrk_threads), "-c", str(a.conns),
                 "-d", "%ds" % duration, "--latency", "-s", lua,
                 "http://127.0.0.1:%d/v1/call/echo" % port],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            out = p.stdout.read().decode(errors="replace")
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            elapsed = time.monotonic() - t0
            sa = system_busy()
            after = {pid: cpu_ticks(pid) for pid in watched}
            died = servers[n].proc.poll() is not None
            if p.returncode != 0:
                raise RuntimeError("wrk failed: " + out)
            line = next((l for l in out.splitlines() if l.startswith("WRKJSON ")), None)
            if line is None:
                raise RuntimeError("wrk said no WRKJSON: " + out)
            r = json.loads(line[8:])
            hz = os.sysconf("SC_CLK_TCK")
            d = {pid: (after[pid] - before[pid]) / hz for pid in watched}
            hap_pids = set(hap.pids()) if path == "haproxy" else set()
            front_s = d.get(front, 0.0)
            hap_s = sum(v for pid, v in d.items() if pid in hap_pids)
            workers_s = sum(v for pid, v in d.items() if pid != front and pid not in hap_pids)
            wrk_s = ru.ru_utime + ru.ru_stime
            ours = (sum(d.values()) + wrk_s) * hz
            tot = sa[1] - sb[1]
            other = max(0.0, ((sa[0] - sb[0]) - ours) / tot * os.cpu_count()) if tot else 0.0
            req = max(r["requests"], 1)
            r.update(server=n, path=path, calls_s=r["requests"] / (r["duration_us"] / 1e6),
                     cpu_front_us=front_s / req * 1e6, cpu_workers_us=workers_s / req * 1e6,
                     cpu_haproxy_us=hap_s / req * 1e6, cpu_wrk_us=wrk_s / req * 1e6,
                     other_cpus=other, elapsed=elapsed, died=died,
                     non2xx=r["status"],
                     sockerr=r["connect"] + r["read"] + r["write"] + r["timeout"],
                     wrk_text=out)
            return r

        # Warm-up: each case once, not counted.
        for n, path in cases:
            run_case(n, path, 1)
        rounds = []
        for i in range(a.rounds):
            rows = []
            # Interleave, and rotate the order each round so no case always
            # follows the same one.
            k = i % len(cases)
            for n, path in cases[k:] + cases[:k]:
                r = run_case(n, path, a.duration)
                r["round"] = i + 1
                rows.append(r)
                print("round %d %-8s %-7s %9.0f calls/s p50 %7.2f ms p99 %7.2f ms "
                      "non-2xx %d sock-err %d  other CPUs %.2f"
                      % (i + 1, n, path, r["calls_s"], r["p50_us"] / 1000,
                         r["p99_us"] / 1000, r["non2xx"], r["sockerr"], r["other_cpus"]),
                      flush=True)
            rounds.append(rows)
        for n in order:
            if servers[n].proc.poll() is not None:
                crashes.append((n, servers[n].proc.returncode))
    finally:
        if hap:
            hap.stop()
        for s in servers.values():
            s.stop()

    shutil.rmtree(tmp, ignore_errors=True)
    servers["crashes"] = crashes
    return rounds, servers, order


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def write_md(a, results):
    def index(rounds):
        get = {}
        for i, rows in enumerate(rounds):
            for r in rows:
                get.setdefault((r["server"], r["path"]), [None] * len(rounds))[i] = r
        return get

    def m(get, key, field):
        return med([r[field] for r in get[key] if r])

    def ratios(get, num, den, field):
        return [(x[field] / y[field]) if x and y and y[field] else None
                for x, y in zip(get[num], get[den])]

    def rtext(rs):
        rs = [x for x in rs if x is not None]
        return "**%.2f×** (%s)" % (statistics.median(rs), " / ".join("%.2f" % x for x in rs))

    _, _, labels0, order0 = results[0]
    ncases = len(index(results[0][1]))
    L = []
    w = L.append
    w("## HTTP face vs gunicorn")
    w("")
    w("Written by `{}` on {} (UTC); `bench/http_bench.py` drives it. Kept "
      "in `bench/results/http.md`; `bench/report.py` appends that file here, "
      "so `bench/run.sh` keeps this section.".format(
          a.command, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")))
    w("")
    w("- The same echo, `POST /v1/call/echo` with a {}-byte JSON body, "
      "answered with the same JSON: portpool's worker runs "
      "`bench/handlers/http_echo.py` (`echo(args): return args`; the worker "
      "parses and encodes the JSON), gunicorn runs "
      "`bench/handlers/http_echo_wsgi.py` (reads the body, `json.loads`, "
      "`json.dumps`). Equal worker counts: {} worker processes in every "
      "server; every Python is `{}` (Python {}; Debian's gunicorn {} runs on "
      "it, so portpool's workers do too).".format(
          a.body_len, " or ".join(str(W) for W in a.workers), a.python,
          subprocess.run([a.python, "-c", "import platform;print(platform.python_version())"],
                         capture_output=True, text=True).stdout.strip(),
          subprocess.run([a.gunicorn, "--version"], capture_output=True,
                         text=True).stdout.split("version")[-1].strip(" )\n")))
    w("- Servers: {}; defaults otherwise (portpool: `worker.concurrency 1`; "
      "`worker.pipeline_depth 2` lets the HTTP face hand a worker its next "
      "request before it answers this one, as gthread's threads queue "
      "requests per worker: the worker count stays equal; gunicorn: "
      "`--keep-alive 2`, no access log).".format(
          "; ".join(labels0[n] for n in order0)))
    w("- Behind HAProxy: one `haproxy -db` ({}), one frontend and backend "
      "per server, `mode http`, `balance leastconn`, one server each, "
      "default keep-alive on both sides (no `maxconn` per server: HAProxy "
      "passes all connections through).".format(
          subprocess.run([a.haproxy, "-v"], capture_output=True, text=True)
          .stdout.split("\n")[0].split(" - ")[0]))
    w("- Load: `wrk -t{} -c{} -d{}s --latency -s bench/http_wrk.lua` (wrk {}): "
      "closed loop, {} connections that wrk keeps alive. **gunicorn sync "
      "closes the connection after every response** (`Connection: close`), "
      "so against it directly wrk opens a new TCP connection per call; "
      "behind HAProxy, HAProxy does that towards gunicorn and keeps wrk's "
      "connections. That is what users get from sync workers. portpool "
      "closes a connection after `listen.keepalive_requests` (1000) calls; "
      "gthread keeps them alive.".format(
          a.wrk_threads, a.conns, a.duration,
          subprocess.run([a.wrk, "-v"], capture_output=True, text=True)
          .stdout.split()[1], a.conns))
    w("- {} rounds; in each the {} cases run one after the other, in an "
      "order rotated every round (after a 1 s warm-up of each). Figures are "
      "medians over the rounds; a ratio is the median of the ratios taken "
      "within each round (each round's in brackets). wrk, the servers and "
      "HAProxy share the machine's {} CPUs, and the machine is shared with "
      "other work (\"other CPUs\": CPUs busy outside these processes "
      "during the case, from /proc/stat).".format(a.rounds, ncases, os.cpu_count()))
    w("")
    w("Target (issue 16, item 5): portpool >= 3× gunicorn sync calls/s at "
      "equal worker count, with a lower p99.")
    w("")
    w("| workers | path | portpool calls/s | gunicorn sync calls/s | ratio (median; per round) | needed | p99 portpool vs gunicorn sync | result |")
    w("|---|---|---|---|---|---|---|---|")
    for W, rounds, labels, order in results:
        get = index(rounds)
        for path in ("direct", "haproxy"):
            pk, gk = ("portpool", path), ("gsync", path)
            rs = ratios(get, pk, gk, "calls_s")
            rr = med(rs)
            p99p, p99g = m(get, pk, "p99_us"), m(get, gk, "p99_us")
            ok = rr >= 3 and p99p < p99g
            w("| {} | {} | {:,.0f} | {:,.0f} | {} | >= 3× | {:.2f} ms vs {:.2f} ms | **{}** |".format(
                W, path, m(get, pk, "calls_s"), m(get, gk, "calls_s"), rtext(rs),
                p99p / 1000, p99g / 1000, "PASS" if ok else "FAIL"))
    w("")
    for W, rounds, labels, order in results:
        get = index(rounds)
        w("### {} workers each".format(W))
        w("")
        w("| server | path | calls/s | p50 ms | p99 ms | non-2xx | socket errors | "
          "CPU µs/call: front | workers | haproxy | wrk | other CPUs |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for path in ("direct", "haproxy"):
            for n in order:
                key = (n, path)
                w("| {} | {} | {:,.0f} | {:.2f} | {:.2f} | {} | {} | {:.0f} | {:.0f} | {} | {:.0f} | {:.2f} |".format(
                    labels[n], path, m(get, key, "calls_s"), m(get, key, "p50_us") / 1000,
                    m(get, key, "p99_us") / 1000,
                    sum(r["non2xx"] for r in get[key] if r),
                    sum(r["sockerr"] for r in get[key] if r),
                    m(get, key, "cpu_front_us"), m(get, key, "cpu_workers_us"),
                    "%.0f" % m(get, key, "cpu_haproxy_us") if path == "haproxy" else "–",
                    m(get, key, "cpu_wrk_us"), m(get, key, "other_cpus")))
        w("")
        if labels["crashes"]:
            w("**{} server exit(s) seen between cases** ({}); each was started "
              "again on its port before the next case. Cases at whose end "
              "(as wrk closed its connections; see the socket errors) the "
              "server died: {}. Any exit here is a bug in `poolctl serve`.".format(
                  len(labels["crashes"]),
                  ", ".join("%s: status %d" % c for c in labels["crashes"]),
                  ", ".join("round %d %s %s" % (r["round"], r["server"], r["path"])
                            for rows in rounds for r in rows if r["died"]) or "none"))
            w("")
        w("| path | portpool ÷ gunicorn sync: calls/s | p99 | portpool ÷ gunicorn gthread: calls/s | p99 |")
        w("|---|---|---|---|---|")
        for path in ("direct", "haproxy"):
            pk = ("portpool", path)
            w("| {} | {} | {} | {} | {} |".format(
                path,
                rtext(ratios(get, pk, ("gsync", path), "calls_s")),
                rtext(ratios(get, pk, ("gsync", path), "p99_us")),
                rtext(ratios(get, pk, ("gthread", path), "calls_s")),
                rtext(ratios(get, pk, ("gthread", path), "p99_us"))))
        w("")
    w("CPU µs/call: \"front\" is the server's own process (`poolctl serve`: "
      "HTTP, the pool and its loop; gunicorn's master: supervision only), "
      "\"workers\" its children (portpool's Python workers; gunicorn's "
      "workers, which also parse HTTP), from /proc/PID/stat over the case "
      "divided by its calls; wrk's from its rusage. Non-2xx and socket "
      "errors are summed over the rounds.")
    w("")
    os.makedirs(os.path.dirname(os.path.abspath(a.out_md)), exist_ok=True)
    with open(a.out_md, "w") as f:
        f.write("\n".join(L) + "\n")
    print("wrote", a.out_md)


if __name__ == "__main__":
    sys.exit(main())
