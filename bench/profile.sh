#!/bin/sh
# bench/profile.sh -- where the pool's call path spends time beyond the
# floor; writes bench/PROFILE.md.  Run bench/run.sh (or its build step)
# first.  About 3 minutes.
#
#  1. anatomy: the floor with, one at a time, the syscalls the pool's call
#     path adds, then the pool, pinned same-CPU and cross-CPU
#     (ppbench anatomy --pin same|cross);
#  2. syscalls and context switches per call, from kernel counters
#     (perf stat -e syscalls:sys_enter_*, context-switches; falls back to
#     strace -f -c when perf cannot count), one caller and 64 callers;
#  3. allocations, mutex locks and condition-variable operations per call
#     (LD_PRELOAD build-bench/bench/libmalloc_count.so);
#  4. user-space instructions per call (valgrind --tool=callgrind; perf's
#     hardware counters are not available in this VM);
#  5. the threaded path: the machine's CPU by process, object and symbol
#     while 64 threads call pp_call (perf record -e cpu-clock -a);
#  6. the threaded path's CPU per call by side (the Python workers, the
#     calling process) against the floor's (utime + stime from /proc).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD:-$root/build-bench}
python=${PYTHON:-python3}
bin=$build/bench/ppbench
out=$(mktemp -d "${TMPDIR:-/tmp}/ppprofile.XXXXXX")
trap 'rm -rf "$out"' EXIT
md=$here/PROFILE.md

cmake --build "$build" -j2 --target ppbench malloc_count >/dev/null

{
  echo "# Profile of the blocking call path"
  echo
  echo "Written by \`bench/profile.sh\` on $(date -u '+%Y-%m-%d %H:%M') UTC;"
  echo "$(nproc) CPUs, Linux $(uname -r). Raw mode, 64 B payload, one worker."
  echo
  echo "## 1. Anatomy (ppbench anatomy): the floor plus each piece of the pool's call path"
  echo
  echo "Rows are measured in one run, interleaved; × is against the first row."
  for pin in same cross; do
    echo
    echo "### --pin $pin"
    echo
    echo '```'
    "$bin" anatomy --pin "$pin" --duration 3 --rounds 15 | grep -E '^  '
    echo '```'
  done
} >"$md"

# ---- 2. syscalls and context switches per call
ev=raw_syscalls:sys_enter,syscalls:sys_enter_read,syscalls:sys_enter_poll
ev=$ev,syscalls:sys_enter_writev,syscalls:sys_enter_write
ev=$ev,syscalls:sys_enter_rt_sigprocmask,syscalls:sys_enter_futex
ev=$ev,context-switches,cpu-migrations
counted=perf
if ! perf stat -x, -e "$ev" true >/dev/null 2>&1; then
  counted=strace
fi
for spec in "latency floor" "latency pp_call" "latency lease" \
            "many floor" "many pipe" "many pp_call" "many pp_call_d1"; do
  set -- $spec
  tag=$1_$2
  if [ "$counted" = perf ]; then
    perf stat -x, -e "$ev" -o "$out/$tag.csv" -- \
      "$bin" "$1" --only "$2" --duration 2 --rounds 4 \
      --json "$out/$tag.json" >/dev/null 2>&1
  else
    strace -f -c -o "$out/$tag.strace" \
      "$bin" "$1" --only "$2" --duration 1 --rounds 2 \
      --json "$out/$tag.json" >/dev/null 2>&1
  fi
done
"$python" - "$out" "$counted" >>"$md" <<'EOF'
import json, os, sys
out, how = sys.argv[1], sys.argv[2]
print()
print("## 2. Syscalls and context switches per call (%s)" % (
    "perf stat, kernel tracepoints; whole process tree: the Python worker's "
    "own read + write are in every row" if how == "perf" else "strace -f -c"))
print()
print("Counts include the 0.15 s warm-up of each window, so they are ~4% high on"
      " every row alike; compare rows.")
print()
cols = ["sys_enter", "read", "writev", "write", "poll", "rt_sigprocmask",
        "futex", "context-switches", "cpu-migrations"]
print("| run | calls | " + " | ".join(cols) + " |")
print("|---|---|" + "---|" * len(cols))
labels = {
    "latency_floor": "latency floor",
    "latency_pp_call": "latency pp_call",
    "latency_lease": "latency lease",
    "many_floor": "many: floor, depth 1",
    "many_pipe": "many: floor, depth 16 (pipelined)",
    "many_pp_call": "many: 64 callers pp_call, pipeline_depth 16",
    "many_pp_call_d1": "many: 64 callers pp_call, pipeline_depth 1",
}
for tag in labels:
    try:
        n = sum(json.loads(l).get("n", 0) for l in open(os.path.join(out, tag + ".json"))
                if '"result"' in l)
    except OSError:
        continue
    row = {}
    if how == "perf":
        for line in open(os.path.join(out, tag + ".csv")):
            f = line.strip().split(",")
            if len(f) > 3 and f[0][:1].isdigit():
                row[f[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:", "")] = float(f[0])
    else:
        for line in open(os.path.join(out, tag + ".strace")):
            f = line.split()
            if len(f) >= 5 and f[0][:1].isdigit():
                row[f[-1]] = float(f[3])
        row["sys_enter"] = sum(row.values())
    print("| %s | %d | %s |" % (labels[tag], n, " | ".join(
        "%.2f" % (row.get(c, 0) / n) if n else "–" for c in cols)))
EOF

# ---- 3. allocations, locks, condition variables per call
{
  echo
  echo "## 3. Allocations, mutex locks, condition-variable operations per call"
  echo
  echo "LD_PRELOAD=libmalloc_count.so; timings in these runs are inflated by the counting."
  echo
  echo '```'
  LD_PRELOAD=$build/bench/libmalloc_count.so "$bin" latency --duration 1 \
    --proto raw | grep -E '^  [a-z]'
  LD_PRELOAD=$build/bench/libmalloc_count.so "$bin" many --duration 1 |
    grep -E '^  [a-z]'
  echo '```'
} >>"$md"

# ---- 4. instructions per call (callgrind)
if command -v valgrind >/dev/null 2>&1; then
  for who in floor pp_call; do
    # PPBENCH_REEXEC=1: ppbench must not re-execute itself (to turn the
    # glibc tcache off for its memory figures) under valgrind, whose
    # /proc/self/exe is valgrind's own tool.
    PPBENCH_REEXEC=1 valgrind --tool=callgrind --callgrind-out-file="$out/cg_$who.out" \
      "$bin" latency --only "$who" --duration 1 --rounds 1 >/dev/null 2>&1
  done
  callgrind_annotate --inclusive=yes --tree=calling "$out/cg_pp_call.out" \
    >"$out/cg_pp_call.txt" 2>/dev/null
  callgrind_annotate --inclusive=yes --tree=calling "$out/cg_floor.out" \
    >"$out/cg_floor.txt" 2>/dev/null
  "$python" - "$out" >>"$md" <<'EOF'
import re, sys
out = sys.argv[1]
def callees(path, fn):
    """Inclusive Ir and call counts of fn's callees, and fn's own inclusive Ir."""
    text = open(path).read().splitlines()
    rows, total, inside = [], None, False
    for line in text:
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+\*\s+\S*:(\S+) ", line)
        if m:
            inside = m.group(2) == fn
            if inside:
                total = int(m.group(1).replace(",", ""))
            continue
        if inside:
            m = re.match(r"\s*([\d,]+) \([^)]*\)\s+>\s+\S*:(\S+) \(([\d,]+)x\)", line)
            if m:
                rows.append((m.group(2), int(m.group(1).replace(",", "")),
                             int(m.group(3).replace(",", ""))))
            elif not line.strip():
                inside = False
    return total, rows
def calls_of(path, fn):
    for line in open(path):
        m = re.search(r">\s+\S*:%s \(([\d,]+)x\)" % re.escape(fn), line)
        if m:
            return int(m.group(1).replace(",", ""))
    return 0
print()
print("## 4. User-space instructions per call (callgrind, bench process only)")
print()
ft, _ = callees(out + "/cg_floor.txt", "floor_call")
fn = calls_of(out + "/cg_floor.txt", "floor_call")
pt, prow = callees(out + "/cg_pp_call.txt", "pp_call")
pn = calls_of(out + "/cg_pp_call.txt", "pp_call")
if fn and pn:
    print("- floor_call: **%.0f** Ir per call; pp_call: **%.0f** Ir per call (%.1f×)." % (
        ft / fn, pt / pn, (pt / pn) / (ft / fn)))
    print()
    print("| pp_call callee | Ir per pp_call | calls per pp_call |")
    print("|---|---|---|")
    for name, ir, n in prow:
        print("| %s | %.0f | %.2f |" % (name, ir / pn, n / pn))
    for fnname in ("call_leased", "call_run", "call_read", "call_write",
                   "pp_checkin", "pp__lease_end", "writev_nosig.isra.0",
                   "writev_nosig"):
        tot, rows = callees(out + "/cg_pp_call.txt", fnname)
        if not rows:
            continue
        print()
        print("| %s callee | Ir per pp_call | calls per pp_call |" % fnname)
        print("|---|---|---|")
        for name, ir, n in rows:
            print("| %s | %.0f | %.2f |" % (name, ir / pn, n / pn))
EOF
fi
# ---- 5. the threaded path: where the CPU goes with 64 threads in pp_call
# (perf record's software clock over the whole machine; no hardware
# counters needed).
if perf record -q -e cpu-clock -a -o "$out/thr.data" -- \
  "$bin" many --only pp_call_d1 --duration 2 --rounds 2 \
  --json "$out/thr.json" >/dev/null 2>&1; then
  perf report -i "$out/thr.data" --stdio --sort comm,dso 2>/dev/null \
    >"$out/thr.txt" || true
  perf report -i "$out/thr.data" --stdio --sort comm,sym 2>/dev/null \
    >"$out/thr_sym.txt" || true
  "$python" - "$out" >>"$md" <<'EOF'
import json, re, sys
out = sys.argv[1]
def rows(path, n):
    got = []
    for line in open(path):
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(.+?)\s*$", line)
        if m:
            got.append((float(m.group(1)), m.group(2), m.group(3)))
    return got[:n]
calls = 0.0
for line in open(out + "/thr.json"):
    if '"result"' in line:
        r = json.loads(line)
        calls = max(calls, r.get("calls_s", 0))
print()
print("## 5. The threaded path: 64 threads in pp_call, 2 workers, depth 1")
print()
print("`perf record -e cpu-clock -a` over `ppbench many --only pp_call_d1` "
      "(%.0f calls/s while recorded): the share of the machine's two CPUs "
      "by process and object (`exe` is ppbench: the 64 caller threads; "
      "`swapper` is idle)." % calls)
print()
print("| share | process | object |")
print("|---|---|---|")
for pct, comm, dso in rows(out + "/thr.txt", 12):
    print("| %.1f%% | %s | %s |" % (pct, comm, dso))
print()
print("Top symbols:")
print()
print("| share | process | symbol |")
print("|---|---|---|")
for pct, comm, sym in rows(out + "/thr_sym.txt", 15):
    print("| %.1f%% | %s | `%s` |" % (pct, comm, sym))
EOF
fi
# ---- 6. CPU per call by side: utime + stime of the two measured workers
# and of ppbench over 4 s in the middle of an 8 s window, over the calls
# made meanwhile (the window's calls/s x 4).  Workers: the floor's are the
# first two portpool_worker processes ppbench starts, the depth-1 pool's
# the last two (scen_many.c opens floor, pool, pool at depth 1).
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_split() { # $1: floor or pp_call_d1 -> "python_ticks ppbench_ticks"
  "$bin" many --only "$1" --duration 8 --rounds 1 --json "$out/cpu_$1.json" \
    >/dev/null 2>&1 &
  pb=$!
  who=$1
  sleep 2.5 # ppbench's start and the pools' warm-up: then inside the window
  # shellcheck disable=SC2046
  set -- $(pgrep -P "$pb" -f portpool_worker | sort -n)
  if [ "$#" -lt 6 ]; then
    wait "$pb" || true
    return 1
  fi
  if [ "$who" = floor ]; then a=$1 b=$2; else a=$5 b=$6; fi
  a0=$(ticks "$a") b0=$(ticks "$b") p0=$(ticks "$pb")
  sleep 4
  a1=$(ticks "$a") b1=$(ticks "$b") p1=$(ticks "$pb")
  wait "$pb" || true
  echo "$((a1 - a0 + b1 - b0)) $((p1 - p0))"
}
rows6=
for who in floor pp_call_d1; do
  r=$(cpu_split "$who") || continue
  rows6="$rows6$who $r
"
done
if [ -n "$rows6" ]; then
  printf '%s' "$rows6" >"$out/cpu_rows.txt"
  "$python" - "$out" "$(getconf CLK_TCK)" >>"$md" <<'EOF'
import json, sys
out, hz = sys.argv[1], float(sys.argv[2])
names = {"floor": "floor: 2 callers, each on its own worker",
         "pp_call_d1": "pool: 64 threads in pp_call, 2 workers"}
print()
print("## 6. The threaded path: CPU per call, by side (depth 1)")
print()
print("utime + stime (/proc/PID/stat) of the two workers measured and of "
      "the calling process (the pool's 64 threads, or the floor's 2) over "
      "4 s in the middle of an 8 s window, divided by the calls made "
      "meanwhile.")
print()
print("| side | calls/s | Python workers µs/call | calling process µs/call "
      "| total µs/call | CPUs busy |")
print("|---|---|---|---|---|---|")
for line in open(out + "/cpu_rows.txt"):
    who, py, pb = line.split()
    calls = 0.0
    for l in open(out + "/cpu_%s.json" % who):
        if '"result"' in l:
            calls = max(calls, json.loads(l).get("calls_s", 0))
    if calls <= 0:
        continue
    n = calls * 4
    pyu, pbu = int(py) / hz * 1e6 / n, int(pb) / hz * 1e6 / n
    print("| %s | %.0f | %.1f | %.1f | %.1f | %.2f |" % (
        names[who], calls, pyu, pbu, pyu + pbu, (int(py) + int(pb)) / hz / 4))
EOF
fi
echo "profile.sh: wrote $md"
