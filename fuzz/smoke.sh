#!/usr/bin/env bash
# A short fuzzing smoke run: each cargo-fuzz target for SECS seconds
# (default 10; 5 targets: 50 s of fuzzing, about 85 s in all once built) from the checked-in seeds plus
# the local corpus (fuzz/corpus/, not checked in). Fails on any finding;
# the input is then in fuzz/artifacts/TARGET/. Longer runs: RELIABILITY.md.
#
#   fuzz/smoke.sh [SECS]
#
# cargo-fuzz needs nightly flags; on the stable toolchain they are allowed
# with RUSTC_BOOTSTRAP=1 (set here). The first build takes ~2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (once)"
  cargo install cargo-fuzz --locked --quiet
fi
targets=(http_request http_request_signed batch_request proto_decode unescape)
cargo fuzz build -O 2>&1 | grep -v "^ *Compiling\|^ *Finished\|Blocking" || true
passed=0
failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="fuzz/target/smoke-$t.log"
  if cargo fuzz run -O "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
       -max_total_time="$secs" -max_len=8192 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -o 'number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "fuzz $t: ok, $runs runs in ${secs}s, corpus $(ls "fuzz/corpus/$t" | wc -l) files"
    passed=$((passed + 1))
  else
    echo "fuzz $t: FINDING (log: $log)"
    grep -E 'panicked|ERROR|Test unit written' "$log" | head -5 || true
    failed=$((failed + 1))
  fi
done
echo "fuzz smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
