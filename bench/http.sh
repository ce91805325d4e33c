#!/bin/sh
# http.sh -- portpool's HTTP face against what users would pick instead:
#   the same JSON echo through `poolctl serve --listen`, gunicorn sync and
#   gunicorn gthread (equal worker counts), each direct and behind one
#   HAProxy (mode http, balance leastconn), loaded by wrk -> the section
#   "HTTP face vs gunicorn" in bench/results/http.md, spliced into
#   bench/RESULTS.md (bench/report.py appends that file too, so the next
#   bench/run.sh keeps it).
#
# Installs Debian's gunicorn, haproxy and wrk if missing (scripts/deps.sh;
# as root).  About 2.5 minutes with the defaults: per worker count, six
# cases x (1 s warm-up + ROUNDS x DURATION s), interleaved.  Nothing here
# is a test: exit status 0 whatever PASS/FAIL says.
#
# Environment: WORKERS (2,4: worker counts, comma-separated), CONNS (16),
# DURATION (3, seconds per case per round), ROUNDS (3), THREADS (4,
# gthread threads per worker), BUILD (build-bench), PYTHON (/usr/bin/python3,
# the interpreter Debian's gunicorn runs on; portpool's workers use it too).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD:-$root/build-bench}
python=${PYTHON:-/usr/bin/python3}
start=$(date +%s)

command -v gunicorn >/dev/null 2>&1 && command -v wrk >/dev/null 2>&1 &&
  { command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; } ||
  bash "$root/scripts/deps.sh" gunicorn haproxy wrk

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  >/dev/null
cmake --build "$build" -j2 --target poolctl worker_pyc >/dev/null

out=$(mktemp -d "${TMPDIR:-/tmp}/pphttp.XXXXXX")
trap 'rm -rf "$out"' EXIT
"$python" "$here/http_bench.py" --poolctl "$build/poolctl" --python "$python" \
  --workers "${WORKERS:-2,4}" --conns "${CONNS:-16}" \
  --duration "${DURATION:-3}" --rounds "${ROUNDS:-3}" --threads "${THREADS:-4}" \
  --out-md "$here/results/http.md" --json "$out/http.jsonl"

# Splice: RESULTS.md up to (not including) an earlier "HTTP face vs
# gunicorn" section, then this one (report.py puts it last as well).
res=$here/RESULTS.md
if [ -f "$res" ]; then
  awk '/^## HTTP face vs gunicorn$/ { exit } { print }' "$res" >"$out/res.md"
  cat "$out/res.md" "$here/results/http.md" >"$res"
else
  cp "$here/results/http.md" "$res"
fi
echo "http.sh: done in $(($(date +%s) - start)) s; see bench/results/http.md"
