#!/usr/bin/env bash
# `make bench`: every benchmark, then BENCHMARKS.md assembled from their
# sections (bench/out/*.md). Each section says which command produced it.
#   bash bench/all.sh [core] [python] [buffer] [peers] [tls] [batch]    (default: all)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mkdir -p bench/out
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(core python buffer peers tls batch)
for p in "${parts[@]}"; do
  case "$p" in
    core)   bash bench/core.sh 3 ;;
    python) [ -f bench/python/run.sh ] && bash bench/python/run.sh ;;
    peers)  [ -f bench/peers.sh ] && bash bench/peers.sh ;;
    buffer) bash bench/python/run.sh --buffer --rounds 20 ;;
    tls)    PEERS_ONLY=tls bash bench/peers.sh 3 2 ;;
    batch)  bash bench/python/batch.sh ;;
    *) echo "unknown part $p" >&2; exit 2 ;;
  esac
done
python3 bench/assemble.py
echo "wrote BENCHMARKS.md"
