#!/usr/bin/env bash
# Installs what building why502 and running `why502 demo` need on Debian 12, and builds ./build.
# The README's first command. Test dependencies come with deploy/setup-tests.sh.
# Nothing here starts, stops or reconfigures a service (see deploy/install-packages.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo): it installs packages and why502 loads BPF programs" >&2
  exit 1
fi
. deploy/install-packages.sh

packages=(
  # build: the BPF object (clang, bpftool), libbpf, the C++ libraries
  cmake make g++ pkg-config clang bpftool libbpf-dev libelf-dev zlib1g-dev
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  prometheus-cpp-dev # watch --metrics (with its civetweb HTTP server)
  # the demo's lab runs a private nginx (its own config, in its own network namespace)
  nginx
)
install_packages "${packages[@]}"

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target why502
