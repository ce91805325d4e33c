#!/bin/sh
# elastic.sh -- an elastic pool against a fixed one under bursty load
# (issue 17): RUNS runs of `ppbench elastic` (bench/scen_elastic.c) -> the
# section "Elastic pools under bursts" in bench/results/elastic.md, spliced
# into bench/RESULTS.md before the HTTP section (bench/report.py appends
# that file too, so the next bench/run.sh keeps it).
#
# About 11 s per run on 2 cores: per pool 4 s idle and 3 bursts of 64
# callers, plus the pools' start-up.  Nothing here is a test: exit status 0
# whatever PASS/FAIL says (non-zero only when the scenario could not run).
#
# Environment: RUNS (3), BUILD (build-bench), PYTHON (python3; resolved to
# realpath(sys.executable) as the pool does).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD:-$root/build-bench}
runs=${RUNS:-3}
python=${PYTHON:-python3}
start=$(date +%s)

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  >/dev/null
cmake --build "$build" -j2 --target ppbench worker_pyc >/dev/null

out=$(mktemp -d "${TMPDIR:-/tmp}/ppelastic.XXXXXX")
trap 'rm -rf "$out"' EXIT
files=
i=1
while [ "$i" -le "$runs" ]; do
  echo "elastic.sh: run $i of $runs"
  "$build/bench/ppbench" elastic --python "$python" --root "$root" \
    --json "$out/run$i.jsonl" | grep -E '^  elastic/fixed|^TARGET'
  files="$files $out/run$i.jsonl"
  i=$((i + 1))
done
mkdir -p "$here/results"
# shellcheck disable=SC2086
"$python" "$here/report.py" --elastic --command "bench/elastic.sh" \
  --out "$here/results/elastic.md" $files

# Splice: RESULTS.md up to (not including) an earlier elastic section or
# the HTTP section, then this one, then the HTTP section again.
res=$here/RESULTS.md
if [ -f "$res" ]; then
  awk '/^## (Elastic pools under bursts|HTTP face vs gunicorn)/ { exit } { print }' \
    "$res" >"$out/res.md"
  if [ -f "$here/results/http.md" ]; then
    cat "$out/res.md" "$here/results/elastic.md" "$here/results/http.md" >"$res"
  else
    cat "$out/res.md" "$here/results/elastic.md" >"$res"
  fi
else
  cp "$here/results/elastic.md" "$res"
fi
echo "elastic.sh: done in $(($(date +%s) - start)) s; see bench/results/elastic.md"
