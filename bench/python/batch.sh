#!/usr/bin/env bash
# Issue 10's batch benchmark (bench/python/batch.py): this tree against the
# library as it was before batches (BASELINE_REV, built once into
# target/bench-baseline/<rev>), and redis-py MGET on a local redis-server.
# Writes bench/out/batch.md.
#   bash bench/python/batch.sh [--reps N] [--rounds N]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
rev="${BASELINE_REV:-ff83aec}"
cargo build --release --lib -q
bash scripts/python-venv.sh bench >/dev/null
if ! command -v redis-server >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
fi
base="$root/target/bench-baseline/$rev"
if [ ! -f "$base/lib/libgroupcache.so" ]; then
  rm -rf "$base/src"
  mkdir -p "$base/src"
  git archive "$rev" | tar -x -C "$base/src"
  (cd "$base/src" && cargo build --release --lib -q --target-dir "$base/target")
  mkdir -p "$base/lib"
  cp "$base/target/release/libgroupcache.so" "$base/lib/"
  rm -rf "$base/target"
fi
.venv/bin/python bench/python/batch.py \
  --new-lib "$root/target/release/libgroupcache.so" --new-py "$root/python_ctypes" \
  --old-lib "$base/lib/libgroupcache.so" --old-py "$base/src/python_ctypes" --old-rev "$rev" "$@"
