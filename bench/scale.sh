#!/bin/sh
# scale.sh -- how cost grows with size (issue 18, item 3): RUNS runs of
# `ppbench scale` (bench/scen_scale.c) -> PNG plots (gnuplot, installed
# from Debian through scripts/deps.sh if missing) bench/results/
# scale_workers.png and scale_callers.png, and the section "How cost grows
# with size" in bench/results/scale.md, spliced into bench/RESULTS.md
# before the HTTP section (bench/report.py appends that file too, so the
# next bench/run.sh keeps it).
#
# About 25 s per run on 2 cores: zygote pools of 1 to 1024 workers, then 11
# caller points of ~0.75 s.  Nothing here is a test: exit status 0 whatever
# the figures say (non-zero only when the scenario could not run at all).
#
# Environment: RUNS (1), BUILD (build-bench), PYTHON (python3; resolved to
# realpath(sys.executable) as the pool does).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD:-$root/build-bench}
runs=${RUNS:-1}
python=${PYTHON:-python3}
start=$(date +%s)

command -v gnuplot >/dev/null 2>&1 || bash "$root/scripts/deps.sh" gnuplot-nox

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  >/dev/null
cmake --build "$build" -j2 --target ppbench worker_pyc >/dev/null

out=$(mktemp -d "${TMPDIR:-/tmp}/ppscale.XXXXXX")
trap 'rm -rf "$out"' EXIT
files=
i=1
while [ "$i" -le "$runs" ]; do
  echo "scale.sh: run $i of $runs"
  # A pool that fails to open still leaves the other points: keep going.
  "$build/bench/ppbench" scale --python "$python" --root "$root" \
    --json "$out/run$i.jsonl" | grep -E '^  (workers|threads|inflight)' || true
  files="$files $out/run$i.jsonl"
  i=$((i + 1))
done
mkdir -p "$here/results"
# The last run's figures stay beside the plots, to redo them.
cp "$out/run$runs.jsonl" "$here/results/scale.jsonl"
# shellcheck disable=SC2086
"$python" "$here/scale_report.py" --command "bench/scale.sh" \
  --out "$here/results/scale.md" --plots "$here/results" $files

# Splice: RESULTS.md up to (not including) an earlier scale section or the
# HTTP section, then this one, then the HTTP section again.
res=$here/RESULTS.md
if [ -f "$res" ]; then
  awk '/^## (How cost grows with size|HTTP face vs gunicorn)/ { exit } { print }' \
    "$res" >"$out/res.md"
  if [ -f "$here/results/http.md" ]; then
    cat "$out/res.md" "$here/results/scale.md" "$here/results/http.md" >"$res"
  else
    cat "$out/res.md" "$here/results/scale.md" >"$res"
  fi
else
  cp "$here/results/scale.md" "$res"
fi
echo "scale.sh: done in $(($(date +%s) - start)) s; see bench/results/scale.md"
