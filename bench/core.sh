#!/usr/bin/env bash
# The core benchmark: our engine and C API beside golang/groupcache, in one
# run, alternating rounds so that both see the same machine. Writes
# bench/out/core.json and bench/out/core.md (merged into BENCHMARKS.md).
#   bash bench/core.sh [ROUNDS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rounds="${1:-3}"
mkdir -p bench/out
cargo build --release --benches -q
ours=$(cargo bench --bench engine --no-run 2>&1 | grep -o 'target/release/deps/engine-[a-z0-9]*' | head -1)
bash bench/go/hit/run.sh >/dev/null 2>&1 || true   # build (and install Go) once
: > bench/out/core.raw
for i in $(seq "$rounds"); do
  echo "round $i/$rounds" >&2
  echo "go $(target/go/bin/gohit)" >> bench/out/core.raw
  echo "rust $($ours)" >> bench/out/core.raw
done
python3 bench/core_report.py bench/out/core.raw bench/out/core.json bench/out/core.md
cat bench/out/core.md
