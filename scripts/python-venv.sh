#!/usr/bin/env bash
# Creates (if missing) and updates the Python venv the Python tests and
# benchmarks use: /work/main/.venv, i.e. <checkout>/.venv (gitignored).
# Idempotent: a second run only checks that the requirements are installed.
#   scripts/python-venv.sh            # then: .venv/bin/python -m pytest tests/python
# PYTHON picks the interpreter (default python3).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
# `scripts/python-venv.sh bench` adds what the benchmark compares against;
# tests and the demo need only the test requirements.
reqs=(-r "$root/tests/python/requirements.txt")
if [ "${1:-}" = bench ]; then
  reqs+=(-r "$root/bench/python/requirements.txt")
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${reqs[@]}"
echo "$venv"
