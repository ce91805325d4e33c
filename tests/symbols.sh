#!/usr/bin/env bash
# symbols.sh LIB HEADER -- the shared library exports exactly what the
# public header declares with PP_EXTERN: no internal pp__ symbol, nothing
# undeclared, and every declared function.
set -euo pipefail
lib=$1
header=$2
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | sort)
declared=$(grep -oE '^PP_EXTERN [^(]*\bpp_[a-z0-9_]+\(' "$header" |
  grep -oE 'pp_[a-z0-9_]+\($' | tr -d '(' | sort)
status=0
internal=$(grep '^pp__' <<<"$exported" || true)
if [ -n "$internal" ]; then
  echo "exported internal symbols:" $internal
  status=1
fi
extra=$(comm -23 <(echo "$exported") <(echo "$declared"))
if [ -n "$extra" ]; then
  echo "exported but not declared PP_EXTERN in $header:" $extra
  status=1
fi
missing=$(comm -13 <(echo "$exported") <(echo "$declared"))
if [ -n "$missing" ]; then
  echo "declared PP_EXTERN but not exported:" $missing
  status=1
fi
echo "$(wc -l <<<"$exported") symbols exported"
exit $status
