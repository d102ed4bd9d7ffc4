#!/usr/bin/env bash
# The README's second command, with tests/run-all.sh: installs what the test tiers use on top of
# deploy/setup.sh, then builds why502 and every test. Like setup.sh it never starts, stops or
# reconfigures a service: the tests start their own nginx, php-fpm and gunicorn, and do not care
# whether the distribution's are running.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "setup-tests.sh: run as root (sudo): it installs packages and the tests load BPF programs" >&2
  exit 1
fi
bash deploy/setup.sh
. deploy/install-packages.sh

packages=(
  libgtest-dev libgmock-dev        # every tier
  protobuf-compiler                # protoc checks the Perfetto encoder (unit, integration)
  python3 python3-gunicorn php-fpm # real upstreams (scenarios)
  curl iproute2 iptables procps    # traffic, links, firewall faults, sysctl (integration, scenarios)
  systemd                          # systemd-analyze scores deploy/why502.service (unit)
  clang llvm libclang-rt-14-dev    # libFuzzer + ASan and its symbolizer (tests/fuzz/run.sh)
)
install_packages "${packages[@]}"

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
# promtool checks the metrics and the alert rule (scenarios); extracted, not installed (see there).
bash deploy/fetch-promtool.sh build

