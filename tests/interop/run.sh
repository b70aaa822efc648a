#!/usr/bin/env bash
# The interop test: our nodes (C and Python, over libgroupcache) and real
# golang/groupcache nodes in one cluster on loopback. Installs what it needs:
# Debian's Go and groupcache sources (scripts/install-go.sh), the Rust
# library (cargo build --release --lib), the Python venv (.venv).
#   tests/interop/run.sh [pytest args...]       (make test-interop)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

bash scripts/install-go.sh >/dev/null
${CARGO:-cargo} build --release --lib

if [ -f scripts/python-venv.sh ]; then
  bash scripts/python-venv.sh >/dev/null
elif [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import pytest' 2>/dev/null; then
  "${PYTHON:-python3}" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check pytest
fi

export PYTHONPATH="$root/python_ctypes${PYTHONPATH:+:$PYTHONPATH}"
export GROUPCACHE_LIB="${GROUPCACHE_LIB:-$root/target/release/libgroupcache.so}"
exec .venv/bin/python -m pytest -q -rxs tests/interop "$@"
