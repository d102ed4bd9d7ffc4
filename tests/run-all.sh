#!/usr/bin/env bash
# Every test tier, as root: unit (no root needed), integration (real kernel),
# scenarios (real nginx + faults), hostile (the safety review's attacks), accuracy (the ground-truth lab),
# then the fuzzers for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${WHY502_BUILD:-build}
ctest --test-dir "$build" --output-on-failure -L unit -j2
ctest --test-dir "$build" --output-on-failure -L integration
if ctest --test-dir "$build" -N -L scenario | grep -q "Total Tests: [1-9]"; then
  ctest --test-dir "$build" --output-on-failure -L scenario
fi
if ctest --test-dir "$build" -N -L hostile | grep -q "Total Tests: [1-9]"; then
  ctest --test-dir "$build" --output-on-failure -L hostile
fi
if ctest --test-dir "$build" -N -L accuracy | grep -q "Total Tests: [1-9]"; then
  # Issue 9's goal is 99% right and 1% unknown; main measures 95-98% right and 0-0.4% unknown on
  # the CI seeds (README). The floor below catches regressions until the goal is met; every other
  # assertion (one verdict per 502/504, none on a 2xx, analyze == live) is enforced in full.
  WHY502_ACCURACY_MIN_RIGHT_PERCENT=${WHY502_ACCURACY_MIN_RIGHT_PERCENT:-90} \
  WHY502_ACCURACY_MAX_UNKNOWN_PERCENT=${WHY502_ACCURACY_MAX_UNKNOWN_PERCENT:-2} \
    ctest --test-dir "$build" --output-on-failure -L accuracy
fi
if [ -x tests/fuzz/run.sh ]; then
  tests/fuzz/run.sh "${WHY502_FUZZ_SECONDS:-30}"
fi
