#!/usr/bin/env bash
# Installs everything why502 needs on Debian 12 and builds it into ./build.
# Used by both README commands and by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # build
  cmake make g++ pkg-config clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libgtest-dev libgmock-dev
  protobuf-compiler libprotobuf-dev
  # the real parts the tests and the demo run
  nginx python3 php-fpm python3-gunicorn curl iproute2 iptables procps psmisc
)
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo): it installs packages and why502 loads BPF programs" >&2
  exit 1
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# Debian starts the packaged nginx/php-fpm on install where it can; the tests run their own.
systemctl stop nginx php8.2-fpm 2>/dev/null || service nginx stop 2>/dev/null || true

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
