#!/usr/bin/env bash
# The Python benchmark with everything it needs: the library, the bench
# venv, Debian's redis-server (started and stopped by bench.py itself on
# loopback and a unix socket), and the Go c-shared baseline (built by
# bench.py through bench/go/cshared/build.sh). Writes bench/out/python.md
# and bench/python/hits.png.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cargo build --release --lib -q
bash scripts/python-venv.sh bench >/dev/null
if ! command -v redis-server >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
fi
GROUPCACHE_LIB="$root/target/release/libgroupcache.so" PYTHONPATH=python_ctypes .venv/bin/python bench/python/bench.py "$@"
