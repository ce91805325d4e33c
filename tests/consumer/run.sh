#!/usr/bin/env bash
# run.sh BUILD_DIR SOURCE_DIR PYTHON -- the packaging test: `cmake --install`
# the build into a fresh prefix, check what landed there, build and run the
# consumer project against it through find_package (shared and static) and
# through pkg-config, and run the installed poolctl, which must find the
# installed Python worker module on its own.  Waits on output lines and
# process exits only.
set -euo pipefail

build=$1
src=$2
py=$3
tmp=$(mktemp -d /tmp/pp-install-XXXXXX)
server=
cleanup() {
  if [ -n "$server" ]; then kill -KILL "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
prefix=$tmp/prefix

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

echo "== cmake --install into $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
  { cat "$tmp/install.log"; fail "cmake --install"; }

for f in include/portpool.h bin/poolctl \
  share/portpool/python/portpool_worker.py \
  share/portpool/python/_portpool_worker.py \
  share/portpool/python/example_handlers.py; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
man=$(find "$prefix" -path '*/man1/poolctl.1')
[ -n "$man" ] || fail "not installed: the poolctl.1 man page"
so=$(find "$prefix" -name 'libportpool.so*' | head -n1)
[ -n "$so" ] || fail "not installed: libportpool.so"
a=$(find "$prefix" -name 'libportpool.a')
[ -n "$a" ] || fail "not installed: libportpool.a"
libdir=$(dirname "$so")
pcdir=$(dirname "$(find "$prefix" -name portpool.pc)")
[ -f "$pcdir/portpool.pc" ] || fail "not installed: portpool.pc"
[ -n "$(find "$prefix" -name portpoolConfig.cmake)" ] ||
  fail "not installed: portpoolConfig.cmake"
[ -n "$(find "$prefix" -name portpoolTargets.cmake)" ] ||
  fail "not installed: portpoolTargets.cmake"
if command -v groff >/dev/null; then
  warnings=$(groff -man -Tutf8 -ww -z "$man" 2>&1)
  [ -z "$warnings" ] || fail "poolctl.1: $warnings"
fi

# Moved trees work: the package files find the prefix from where they are.
echo "== pkg-config: $(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs portpool)"
[ "$(PKG_CONFIG_PATH=$pcdir pkg-config --modversion portpool)" = "$(
  "$prefix/bin/poolctl" --version | cut -d' ' -f2)" ] ||
  fail "portpool.pc and poolctl disagree on the version"

for via in cmake cmake-static pkg-config; do
  echo "== consumer through $via"
  PKG_CONFIG_PATH=$pcdir cmake -S "$src/tests/consumer" -B "$tmp/b-$via" \
    -DPORTPOOL_VIA="$via" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_BUILD_TYPE=Release >"$tmp/configure-$via.log" 2>&1 ||
    { cat "$tmp/configure-$via.log"; fail "configure ($via)"; }
  cmake --build "$tmp/b-$via" >"$tmp/build-$via.log" 2>&1 ||
    { cat "$tmp/build-$via.log"; fail "build ($via)"; }
  LD_LIBRARY_PATH=$libdir "$tmp/b-$via/consumer" \
    "$prefix/share/portpool/python" "$py" | tee "$tmp/run-$via.log"
  grep -q 'echo -> {"installed": *true}' "$tmp/run-$via.log" ||
    fail "consumer ($via) did not call the pool"
done
# The default worker.command comes from where the library is, not from
# the source tree it was built from: move the installed tree elsewhere and
# a default pool still starts, with the moved copy of the worker module.
echo "== default worker.command from a moved prefix"
moved=$tmp/elsewhere/moved-prefix
mkdir -p "$tmp/elsewhere"
mv "$prefix" "$moved"
mlibdir=$moved/${libdir#"$prefix"/}
(cd "$tmp/elsewhere" && PATH=$(dirname "$py"):$PATH LD_LIBRARY_PATH=$mlibdir \
  "$tmp/b-cmake/consumer") | tee "$tmp/run-default.log"
grep -q "worker.command: \[python3, $moved/share/portpool/python/portpool_worker.py, $moved/share/portpool/python/example_handlers.py\]" \
  "$tmp/run-default.log" ||
  fail "the default worker.command is not the moved prefix's module"
grep -q 'echo -> {"installed": *true}' "$tmp/run-default.log" ||
  fail "a default pool from the moved prefix did not answer"

if [ -n "$(readelf -d "$tmp/b-cmake-static/consumer" | grep NEEDED |
  grep libportpool)" ]; then
  fail "the static consumer needs libportpool.so"
fi

echo "== installed poolctl serve, moved too, finds its worker module"
mkfifo "$tmp/out"
sock=$tmp/pool.sock
(cd "$tmp/elsewhere" && PATH=$(dirname "$py"):$PATH LD_LIBRARY_PATH=$mlibdir \
  exec "$moved/bin/poolctl" serve -S "$sock" \
  --set size=1 >"$tmp/out") &
server=$!
exec 3<"$tmp/out"
ready=
while IFS= read -r -t 60 line <&3; do
  echo "serve: $line"
  case $line in
  ready:*)
    ready=1
    break
    ;;
  esac
done
[ -n "$ready" ] || fail "the installed poolctl serve never got ready"
reply=$(LD_LIBRARY_PATH=$mlibdir "$moved/bin/poolctl" -S "$sock" call add '{"a": 40, "b": 2}')
[ "$reply" = 42 ] || fail "call through the installed poolctl: $reply"
LD_LIBRARY_PATH=$mlibdir "$moved/bin/poolctl" -S "$sock" stop
wait "$server" || fail "poolctl serve exited with $?"
server=
exec 3<&-
echo "ok"
