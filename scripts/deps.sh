#!/usr/bin/env bash
# deps.sh -- install what portpool needs from Debian's packages, if missing.
# As root it runs apt-get; otherwise it prints the exact command and stops.
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pc() { have_cmd pkg-config && pkg-config --exists "$1"; }

have_cmd cc || need+=(gcc)
have_cmd make || need+=(make)
have_cmd cmake || need+=(cmake)
have_cmd pkg-config || need+=(pkg-config)
have_cmd python3 || need+=(python3)
have_pc libuv || need+=(libuv1-dev)
have_pc yaml-0.1 || need+=(libyaml-dev)
have_pc cmocka || need+=(libcmocka-dev)
have_pc jansson || need+=(libjansson-dev)
have_pc libmicrohttpd || need+=(libmicrohttpd-dev)
for extra in "$@"; do
  dpkg-query -W -f='${Status}' "$extra" 2>/dev/null | grep -q "ok installed" ||
    need+=("$extra")
done

[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "portpool needs these Debian packages: ${need[*]}" >&2
  echo "install them with:  sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
