#!/usr/bin/env bash
# Puts Debian's promtool at BUILD/tools/promtool for the tests (`promtool check metrics/rules`)
# without installing the prometheus package: that package brings a server, and enabling it on a
# production host is not ours to do. The .deb comes from the host's own apt sources; only the one
# binary is extracted from it. Usage: deploy/fetch-promtool.sh BUILD_DIR
set -euo pipefail
build=$(realpath -m "${1:?usage: fetch-promtool.sh BUILD_DIR}")
out="$build/tools/promtool"
if [ -x "$out" ] && "$out" --version >/dev/null 2>&1; then
  exit 0
fi
work=$(mktemp -d /tmp/why502-promtool.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download prometheus >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  apt-get download prometheus >/dev/null
fi
dpkg-deb -x prometheus_*.deb root
mkdir -p "$(dirname "$out")"
install -m 0755 root/usr/bin/promtool "$out"
"$out" --version >/dev/null
echo "promtool: $out" >&2
