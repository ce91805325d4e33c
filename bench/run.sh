#!/bin/sh
# bench/run.sh -- the whole comparison in one command:
#   build (cmake, Release) -> RUNS runs of `ppbench all` -> bench/RESULTS.md
#
# Every ratio is taken within one run (the pool and its baseline measured
# side by side, in interleaved windows); RESULTS.md shows the median of the
# runs' ratios and each run's.  About 2.5 minutes on 2 cores with the
# defaults, each run ~40 s (of which ~11 s are the zygote scenario's three
# pools of a handler whose import burns 1.5 s of CPU), plus up to
# QUIET_WAIT seconds before each run while a busy machine calms down.
# Nothing here is a test: no timing assertion, exit status 0
# whatever PASS/FAIL says (non-zero only when a scenario could not run).
#
# Environment: RUNS (3), DURATION (seconds per side per scenario, 1),
# BUILD (build-bench), PYTHON (python3; resolved to realpath(sys.executable)
# as the pool does), QUIET_WAIT (10), PPBENCH_ARGS (extra ppbench options).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD:-$root/build-bench}
runs=${RUNS:-3}
duration=${DURATION:-1}
python=${PYTHON:-python3}
start=$(date +%s)

# What the comparison runs beside the pool: Debian's Erlang runtime for the
# port alternative (escript; erlang-base, ~40 MB).  NO_ERLANG=1 skips it
# (target 2c is then reported as skipped).
if [ -z "${NO_ERLANG:-}" ] && ! command -v escript >/dev/null 2>&1; then
  bash "$root/scripts/deps.sh" erlang-base ||
    echo "run.sh: erlang-base not installed: the Erlang port is skipped" >&2
fi

# The benchmark needs neither the test suites nor poolctl: build only what
# it runs.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  >/dev/null
cmake --build "$build" -j2 --target ppbench
# The worker's bytecode, as the normal build writes it: without it every
# worker compiles _portpool_worker.py at start (PYTHONDONTWRITEBYTECODE
# keeps Python from caching it), which shows in start-up and memory.
cmake --build "$build" -j2 --target worker_pyc
cmake --build "$build" -j2 --target ppbench_sizes >/dev/null 2>&1 ||
  echo "run.sh: ppbench_sizes did not build: no sizeof breakdown" >&2

# CPUs busy system-wide over one second (nothing of ours runs then).
busy_cpus() {
  set -- $(head -1 /proc/stat)
  b0=$(($2 + $3 + $4 + $7 + $8 + $9)) t0=$(($2 + $3 + $4 + $5 + $6 + $7 + $8 + $9))
  sleep 1
  set -- $(head -1 /proc/stat)
  b1=$(($2 + $3 + $4 + $7 + $8 + $9)) t1=$(($2 + $3 + $4 + $5 + $6 + $7 + $8 + $9))
  # hundredths of a CPU
  echo $(((b1 - b0) * 100 * $(nproc) / (t1 - t0 + 1)))
}

# On a shared machine, wait (up to QUIET_WAIT seconds, default 10) for
# other processes to leave the CPUs alone before each run.  The load seen
# while each scenario ran is in RESULTS.md either way.
quiet() {
  waited=0 b=0
  while [ "$waited" -lt "${QUIET_WAIT:-10}" ]; do
    b=$(busy_cpus)
    [ "$b" -lt 30 ] && return 0
    waited=$((waited + 1))
  done
  echo "run.sh: other processes keep $(printf '%d.%02d' $((b / 100)) $((b % 100))) CPUs busy; running anyway"
}

out=$(mktemp -d "${TMPDIR:-/tmp}/ppbench.XXXXXX")
trap 'rm -rf "$out"' EXIT
i=1
while [ "$i" -le "$runs" ]; do
  quiet
  echo "== run $i of $runs"
  # shellcheck disable=SC2086
  "$build/bench/ppbench" all --duration "$duration" --python "$python" \
    --json "$out/run$i.jsonl" ${PPBENCH_ARGS:-} >"$out/run$i.txt"
  grep '^TARGET' "$out/run$i.txt"
  i=$((i + 1))
done
"$python" "$here/report.py" --out "$here/RESULTS.md" \
  --command "bench/run.sh" "$out"/run*.jsonl
echo "run.sh: done in $(($(date +%s) - start)) s; see bench/RESULTS.md"
