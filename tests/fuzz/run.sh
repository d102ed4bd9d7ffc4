#!/bin/bash
# Builds the nginx parser fuzzers with clang (libFuzzer + ASan) in build-fuzz/ and runs each for
# a bounded time, corpus seeded from tests/fixtures/nginx. Exit non-zero on any crash.
#   tests/fuzz/run.sh [SECONDS_PER_FUZZER=60]
set -euo pipefail
SECS=${1:-60}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${WHY502_FUZZ_BUILD:-$ROOT/build-fuzz}
FIX=$ROOT/tests/fixtures/nginx
CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S "$ROOT" -B "$BUILD" -DWHY502_FUZZ=ON \
  -DCMAKE_C_COMPILER="${CC:-clang}" -DCMAKE_CXX_COMPILER="${CXX:-clang++}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
FUZZERS=(error_line_fuzzer access_line_fuzzer config_fuzzer)
cmake --build "$BUILD" -j2 --target "${FUZZERS[@]}"

seed() { # seed dir from fixture lines, one file per line
  local dir=$1 src=$2 prefix=${3:-}
  mkdir -p "$dir"
  local i=0 name
  name=$(basename "$src")
  while IFS= read -r line; do
    printf '%b%s' "$prefix" "$line" > "$dir/${name}_$i"; i=$((i + 1))
  done < "$src"
}
CORPUS=$BUILD/fuzz-corpus
rm -rf "$CORPUS"
seed "$CORPUS/error_line_fuzzer" "$FIX/error.log"
# lines a client wrote part of: forged contexts, non-UTF-8 bytes, escape sequences
seed "$CORPUS/error_line_fuzzer" "$ROOT/tests/fuzz/seeds/error_forged.log"
seed "$CORPUS/access_line_fuzzer" "$FIX/access_combined.log" '\x00'
seed "$CORPUS/access_line_fuzzer" "$FIX/access_upstream.log" '\x01'
seed "$CORPUS/access_line_fuzzer" "$FIX/access_json.log" '\x02'
mkdir -p "$CORPUS/config_fuzzer"
cp "$FIX/nginx_T.txt" "$CORPUS/config_fuzzer/seed_dump"

status=0
for f in "${FUZZERS[@]}"; do
  echo "== $f (${SECS}s)"
  mkdir -p "$BUILD/fuzz-artifacts/$f"
  if ! "$BUILD/tests/$f" -max_total_time="$SECS" -max_len=1048576 -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="$BUILD/fuzz-artifacts/$f/" -print_final_stats=1 "$CORPUS/$f" \
       > "$BUILD/fuzz-artifacts/$f.log" 2>&1; then
    echo "CRASH in $f: see $BUILD/fuzz-artifacts/$f.log"; tail -40 "$BUILD/fuzz-artifacts/$f.log"
    status=1
  else
    grep -E 'stat::number_of_executed_units|cov:' "$BUILD/fuzz-artifacts/$f.log" | tail -2
  fi
done
exit $status
