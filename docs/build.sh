#!/usr/bin/env bash
# Renders the Python package's API reference from its docstrings with pdoc
# (from PyPI) into docs/python/ (generated, not checked in):
#   docs/build.sh              # then open docs/python/index.html
#   docs/build.sh OUT_DIR      # elsewhere
# pdoc imports the package, so this builds the library first if needed.
# tests/python/test_docs.py checks that every public name has a docstring.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/docs/python}"
cd "$root"
bash scripts/python-venv.sh >/dev/null
py="$root/.venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check 'pdoc>=15,<17'
lib="$root/target/release/libgroupcache.so"
[ -f "$lib" ] || "${CARGO:-cargo}" build --release --lib
version="$(PYTHONPATH="$root/python_ctypes" "$py" -c 'import groupcache._version as v; print(v.__version__)')"
rm -rf "$out"
# restructuredtext: the docstrings' ``code`` spans. No --math/--mermaid:
# the pages load nothing from the network.
PYTHONPATH="$root/python_ctypes" GROUPCACHE_LIB="$lib" \
  "$py" -m pdoc --docformat restructuredtext --footer-text "groupcache $version" \
  -o "$out" groupcache
echo "$out/index.html"
