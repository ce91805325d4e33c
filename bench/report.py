"""report.py -- turn the JSON lines of several `ppbench all --json` runs into
bench/RESULTS.md: every figure beside its baseline measured in the same run,
the ratios (the median of the per-run ratios, and each run's), the targets
of issue 7 and PASS/FAIL, and the machine.  Standard library only.

  python3 bench/report.py --out bench/RESULTS.md --command "bench/run.sh" RUN1.jsonl RUN2.jsonl ...

With --elastic, the runs are `ppbench elastic --json` runs and --out gets
the section "Elastic pools under bursts" alone (bench/elastic.sh writes it
to bench/results/elastic.md, which the full report appends).
"""

import argparse
import datetime
import json
import os
import statistics
import sys


def load(paths):
    runs = []
    for path in paths:
        rows = []
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
        runs.append(rows)
    return runs


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1):
    if v is None:
        return "–"
    if abs(v) >= 100000:
        return "{:,.0f}".format(v)
    if abs(v) >= 1000:
        return "{:,.0f}".format(v)
    return "{:.{d}f}".format(v, d=digits)


def ratio_text(values, digits=2):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    m = statistics.median(values)
    per = " / ".join("{:.{d}f}".format(v, d=digits) for v in values)
    return "**{:.{d}f}×** ({})".format(m, per, d=digits) if len(values) > 1 else "**{:.{d}f}×**".format(m, d=digits)


SCENARIOS = [
    ("latency_raw", "One caller, raw mode (`--raw`, fixtures/raw_echo.py), 64 B"),
    ("latency_json", "One caller, JSON mode (fixtures/echo_handlers.py `echo`), 64 B request"),
    ("many", "Many callers: 64 threads, 2 workers, raw mode, 64 B; the pool at the floor's depth (`worker.pipeline_depth`) and at depth 1"),
    ("cpu", "CPU-bound handler (bench/handlers/burn.py, ~1 ms of CPU per call)"),
    ("big", "64 KiB payloads each way, one caller, raw mode"),
    ("bytes", "1 MiB of bytes each way: `pp_call_bytes` to a JSON-mode worker's bytes handler (bench/handlers/bytes_echo.py) vs the raw-mode floor"),
]


ELASTIC = "elastic {min: 1, max: 16}"
FIXED = "fixed 16"


def elastic_section(runs, command):
    """The elastic scenario's figures side by side, the ratios within each
    run, and targets 17a/17b."""
    def fig(rows, name):
        for r in rows:
            if r["kind"] == "figure" and r.get("scenario") == "elastic" and r["name"] == name:
                return r["value"]
        return None

    measures = [("queue wait p50 in bursts", "ms"),
                ("queue wait p99 in bursts", "ms"),
                ("worker-seconds", "s"),
                ("peak summed PSS", "MiB")]
    L = []
    w = L.append
    w("## Elastic pools under bursts (issue 17)")
    w("")
    w("Written by `{}` on {} (UTC): {} run{} of `ppbench elastic` "
      "(bench/scen_elastic.c). Kept in `bench/results/elastic.md`; "
      "`bench/report.py` appends that file here, so `bench/run.sh` keeps this "
      "section.".format(command, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"),
                        len(runs), "" if len(runs) == 1 else "s"))
    w("")
    w("- Load: 3 cycles of 1 s idle, then a burst of 64 caller threads that "
      "each make 8 `pp_call`s, back to back, of a handler that sleeps 10 ms "
      "(`bench/handlers/burst.py`, standing for a handler waiting on I/O), "
      "then 1 s idle at the end. Queue wait: a call's start to its handler's "
      "start (the handler returns `time.monotonic_ns()`, the caller's clock).")
    w("- Pools, one after the other in each run, both `worker.start: zygote`: "
      "`size: {min: 1, max: 16}` with `scale.up_after: 1ms` (bursts of "
      "10 ms calls: the default 5 ms would make a first-wave caller wait half "
      "a call more before growth begins), "
      "`scale.max_starting: 16` (forks from the zygote are cheap: a burst "
      "may start as many as wait; the default, 4, suits spawned workers) "
      "and `scale.idle_timeout: 250ms` (the bench compresses time: its idle "
      "second stands for minutes; the default is 30s); and a fixed "
      "`size: 16`.")
    w("- Worker-seconds: live worker processes (starting, serving or "
      "stopping) summed over the run, sampled every 5 ms from "
      "`pp_pool_status`. Peak PSS: the workers' summed PSS plus the zygote's, "
      "at the end of each burst (the most workers the pool had), the largest "
      "of the three.")
    w("")
    w("| figure | elastic {min: 1, max: 16} | fixed 16 | elastic / fixed |")
    w("|---|---|---|---|")
    ratios = {}
    for what, unit in measures:
        ev = [fig(rows, "{}: {}".format(ELASTIC, what)) for rows in runs]
        fv = [fig(rows, "{}: {}".format(FIXED, what)) for rows in runs]
        rs = [e / f if e is not None and f else None for e, f in zip(ev, fv)]
        ratios[what] = rs
        w("| {} ({}) | {} | {} | {} |".format(
            what, unit, fmt(med(ev), 1), fmt(med(fv), 1), ratio_text(rs)))
    peak = [fig(rows, "{}: most workers alive".format(ELASTIC)) for rows in runs]
    w("")
    w("The elastic pool had at most {} workers alive (sampled).".format(
        fmt(max([p for p in peak if p is not None] or [0]), 0)))
    w("")
    w("| target | ratio | verdict |")
    w("|---|---|---|")
    for tid, what, limit, text in (
            ("17a", "queue wait p99 in bursts", 1.5,
             "elastic p99 queue wait in bursts <= 1.5× the fixed pool's"),
            ("17b", "worker-seconds", 0.5,
             "elastic worker-seconds <= 0.5× the fixed pool's")):
        rs = [r for r in ratios[what] if r is not None]
        verdict = ("PASS" if statistics.median(rs) <= limit else "FAIL") if rs else "NOT MEASURED"
        w("| {} {} | {} | {} |".format(tid, text, ratio_text(rs), verdict))
    w("")
    w("Where the p99 goes: every burst starts on one worker. The first wave "
      "of 64 calls waits `scale.up_after` (1 ms), then for the zygote to fork "
      "15 workers at once and for each to say HELLO, which takes about 15 ms "
      "on this machine's 2 shared CPUs: a fork costs the zygote 0.3 ms and "
      "the child about 1.2 ms to HELLO, most of it the copy-on-write faults "
      "of some 490 pages its interpreter touches (`PPBENCH_ELASTIC_TRACE=1 ppbench elastic` "
      "prints the pool's scale, spawn and hello events); those first-wave "
      "calls are the slowest 1 %. After that both pools queue alike (the p50s "
      "match). The elastic pool's p99 is the fixed pool's plus that growth "
      "time, so the ratio moves with the handler's duration: 10 ms here.")
    w("")
    loads = []
    for rows in runs:
        for r in rows:
            if r["kind"] == "figure" and r.get("scenario") == "load" and r.get("name") == "elastic":
                loads.append(r["value"])
    if loads:
        w("CPUs busy outside the benchmark while it ran, per run: {} (2 CPUs, "
          "shared with other work).".format(" / ".join(fmt(v, 2) for v in loads)))
        w("")
    return L


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", default="bench/run.sh")
    ap.add_argument("--profile", help="a markdown file appended as is")
    ap.add_argument("--elastic", action="store_true",
                    help="write the elastic section alone (bench/elastic.sh)")
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    runs = load(a.runs)
    nruns = len(runs)
    if a.elastic:
        with open(a.out, "w") as f:
            f.write("\n".join(elastic_section(runs, a.command)).rstrip() + "\n")
        print("wrote", a.out)
        return 0

    machine = next((r for r in runs[0] if r["kind"] == "machine"), {})

    def results(kind):
        """{(scenario, name): [row per run or None]} in first-seen order."""
        out = {}
        for i, rows in enumerate(runs):
            for r in rows:
                if r["kind"] != kind:
                    continue
                key = (r.get("scenario"), r.get("name") or r.get("id"))
                out.setdefault(key, [None] * nruns)[i] = r
        return out

    res = results("result")
    figs = results("figure")
    tgts = results("target")

    L = []
    w = L.append
    w("# portpool benchmark results")
    w("")
    w("Written by `{}` on {} (UTC). Do not edit by hand: run it again.".format(
        a.command, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")))
    w("")
    w("- Machine: {} CPUs, Linux {}, Python {} (`{}`, the interpreter the "
      "pool resolves: realpath of `sys.executable`; the floor execs the same)".format(
          machine.get("nproc", "?"), machine.get("kernel", "?"),
          machine.get("python", "?"), machine.get("python_path", "?")))
    w("- {} runs of `ppbench all`; in each run every side is measured for "
      "{} s in {} interleaved windows (floor, pool, floor, pool, …) with both "
      "alive, so drift hits both alike. Figures are medians over the runs; a "
      "ratio is the median of the ratios taken **within** each run (each "
      "run's ratio in brackets).".format(
          nruns, machine.get("duration", "?"), machine.get("rounds", "?")))
    pin = machine.get("pin", "auto")
    w("- Placement: {}.".format(
        "callers pinned to CPU 0 and workers to CPU 1 in the one-worker "
        "scenarios (one caller, 64 KiB), unpinned elsewhere (`--pin auto`). "
        "Unpinned, the scheduler puts a worker beside or across from its "
        "caller depending on the machine's load (round trips ~6 µs vs "
        "~16 µs), and the floor's and the pool's workers can land "
        "differently, which moved single-run ratios by up to 1.9×; "
        "`bench/profile.sh` measures both placements" if pin == "auto"
        else "`--pin {}`".format(pin)))
    loads = []
    for rows in runs:
        ls = [r["loadavg"].split()[0] for r in rows if r["kind"] == "load"]
        if ls:
            loads.append("→".join(ls))
    if loads:
        w("- 1-minute load average at the start→end of each run: {} "
          "(this machine is shared; see \"Other processes\" below).".format(
              ", ".join(loads)))
    w("- The floor: `bench/floor.c`, a C driver that spawns the same "
      "`bridge/python/portpool_worker.py` with fds 3/4 as pipes, waits for "
      "HELLO and does blocking `writev` + `read` round trips with the "
      "`bridge/frame.h` framing; no pool, no libuv, no locks.")
    w("")

    # ---- targets
    w("## Targets (issues 7, 17 and 18)")
    w("")
    w("| # | target | pool | baseline | ratio (median; per run) | needed | result |")
    w("|---|---|---|---|---|---|---|")
    for (scen, tid), rows in tgts.items():
        rows_ok = [r for r in rows if r]
        r0 = rows_ok[0]
        statuses = [r["status"] for r in rows_ok]
        if r0["status"] in ("NOT IMPLEMENTED", "SKIPPED", "NOT MEASURED"):
            w("| {} | {} | – | – | – | – | **{}**: {} |".format(
                tid, r0["text"], r0["status"], r0["note"]))
            continue
        ratios = [r["ratio"] if r else None for r in rows]
        m = med(ratios)
        unit = r0["unit"]
        if r0["op"] == "info":
            needed, verdict = "–", "info"
        else:
            ok = m <= r0["limit"] if r0["op"] == "<=" else m >= r0["limit"]
            verdict = "**{}**".format("PASS" if ok else "FAIL")
            if len(set(statuses)) > 1:
                verdict += " (runs: {})".format(", ".join(statuses))
            needed = "{} {}×".format(r0["op"], r0["limit"])
        w("| {} | {}{} | {} {} | {} {} | {} | {} | {} |".format(
            tid, r0["text"],
            " — " + r0["note"] if r0["note"] else "",
            fmt(med([r["value"] for r in rows_ok])), unit,
            fmt(med([r["baseline"] for r in rows_ok])), unit,
            ratio_text(ratios), needed, verdict))
    w("")

    # ---- foreign load
    keys = [k for k in figs if k[0] == "load"]
    if keys:
        w("### Other processes")
        w("")
        w("CPUs used by processes other than the benchmark while each scenario "
          "was measured (system-wide busy time from /proc/stat less the "
          "benchmark's own process tree). A target that needs both CPUs "
          "(3: many callers; 4: CPU-bound; 6: pre-warm; 7a's baseline and "
          "7*: spawned imports) cannot show its quiet-machine ratio while "
          "this is high.")
        w("")
        w("| scenario | " + " | ".join("run %d" % (i + 1) for i in range(nruns)) + " |")
        w("|---|" + "---|" * nruns)
        for k in keys:
            w("| {} | {} |".format(k[1], " | ".join(
                "{:.2f}".format(r["value"]) if r else "–" for r in figs[k])))
        w("")

    # ---- scenarios
    for scen, title in SCENARIOS:
        keys = [k for k in res if k[0] == scen]
        if not keys:
            continue
        w("## " + title)
        w("")
        base = keys[0]
        big = scen in ("big", "bytes")
        w("| path | p50 µs | p99 µs | calls/s |{} × baseline p50 | × baseline p99 | × baseline calls/s |".format(
            " MB/s |" if big else ""))
        w("|---|---|---|---|{}---|---|---|".format("---|" if big else ""))
        for k in keys:
            rows = res[k]
            ok = [r for r in rows if r]
            cells = [k[1] + (" *(baseline)*" if k == base else ""),
                     fmt(med([r["p50_us"] for r in ok])),
                     fmt(med([r["p99_us"] for r in ok])),
                     fmt(med([r["calls_s"] for r in ok]), 0)]
            if big:
                cells.append(fmt(med([r["mb_s"] for r in ok])))
            if k == base:
                cells += ["1", "1", "1"]
            else:
                for field in ("p50_us", "p99_us", "calls_s"):
                    rs = []
                    for r, b in zip(rows, res[base]):
                        if r and b and b[field]:
                            rs.append(r[field] / b[field])
                    cells.append(ratio_text(rs))
            w("| " + " | ".join(cells) + " |")
        w("")

    # ---- alternatives
    keys = [k for k in res if k[0] == "alternatives"]
    if keys:
        w("## Alternatives, one caller, 64 B echo (`bench/alternatives.py`)")
        w("")
        pool = res.get(("latency_json", "pool: pp_call"))
        w("| path | p50 µs | p99 µs | calls/s | p50 ÷ pool pp_call p50 (JSON) |")
        w("|---|---|---|---|---|")
        for k in keys:
            rows = res[k]
            ok = [r for r in rows if r]
            rs = []
            if pool:
                for r, p in zip(rows, pool):
                    if r and p and p["p50_us"]:
                        rs.append(r["p50_us"] / p["p50_us"])
            w("| {} | {} | {} | {} | {} |".format(
                k[1], fmt(med([r["p50_us"] for r in ok])),
                fmt(med([r["p99_us"] for r in ok])),
                fmt(med([r["calls_s"] for r in ok]), 0), ratio_text(rs, 1)))
        w("")
        skipped = [r for rows in tgts.values() for r in rows
                   if r and r.get("id") == "2c" and r["status"] == "SKIPPED"]
        if skipped:
            w("An Erlang port is measured only when `escript` is on PATH; it "
              "was not on this machine, so target 2c is skipped.")
            w("")

    # ---- figures
    for scen, title in (("prewarm", "Pre-warm (fixtures/slow_start.py, import sleeps 1.5 s), 1 vs 8 workers"),
                        ("zygote", "Zygote start (bench/handlers/burn_import.py, import burns 1.5 s of CPU): 1 spawned worker, 8 spawned, 8 forked from a zygote"),
                        ("memory", "Pool-side memory")):
        keys = [k for k in figs if k[0] == scen]
        if not keys:
            continue
        w("## " + title)
        w("")
        w("| figure | value | per run | how |")
        w("|---|---|---|---|")
        for k in keys:
            rows = figs[k]
            ok = [r for r in rows if r]
            vals = [r["value"] for r in ok]
            w("| {} | {} {} | {} | {} |".format(
                k[1].strip(), fmt(med(vals), 2 if ok[0]["unit"] in ("s", "MiB", "us") else 0),
                ok[0]["unit"], " / ".join(fmt(v, 2 if ok[0]["unit"] in ("s", "MiB", "us") else 0) for v in vals),
                ok[0]["note"]))
        w("")

    # ---- counters, when a run had them
    counted = [(k, v) for k, v in res.items()
               if any(r and "allocs_per_call" in r for r in v)]
    if counted:
        w("## Per-call counters (LD_PRELOAD libmalloc_count.so)")
        w("")
        w("| scenario | path | allocs | mutex locks | cond signals | cond waits | other threads' csw |")
        w("|---|---|---|---|---|---|---|")
        for k, rows in counted:
            r = next(r for r in rows if r)
            w("| {} | {} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.3f} |".format(
                k[0], k[1], r.get("allocs_per_call", 0), r.get("mutex_locks_per_call", 0),
                r.get("cond_signals_per_call", 0), r.get("cond_waits_per_call", 0),
                r.get("other_thread_csw_per_call", 0)))
        w("")

    if a.profile:
        with open(a.profile) as f:
            w(f.read().rstrip())
            w("")

    # bench/elastic.sh's section, measured apart, before http.sh's.
    elastic_md = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "results", "elastic.md")
    if os.path.exists(elastic_md):
        with open(elastic_md) as f:
            w(f.read().rstrip())
            w("")

    # bench/scale.sh's section (how cost grows with size), measured apart.
    scale_md = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "results", "scale.md")
    if os.path.exists(scale_md):
        with open(scale_md) as f:
            w(f.read().rstrip())
            w("")

    # bench/http.sh's section (HTTP face vs gunicorn), measured apart: kept
    # last, as http.sh splices it.
    http_md = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "results", "http.md")
    if os.path.exists(http_md):
        with open(http_md) as f:
            w(f.read().rstrip())
            w("")

    with open(a.out, "w") as f:
        f.write("\n".join(L) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    sys.exit(main())
