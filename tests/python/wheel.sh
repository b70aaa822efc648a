#!/usr/bin/env bash
# The wheel, end to end: builds it with `pip wheel ./python_ctypes` (cargo
# through setuptools-rust, reusing target/), installs it into a fresh venv
# with no Rust toolchain reachable (PATH without any cargo or rustc,
# CARGO=RUSTC=/bin/false, --no-index: nothing fetched, nothing built), then
# runs tests/python against the installed package from a temporary
# directory, with PYTHONPATH and GROUPCACHE_LIB unset
# (GROUPCACHE_TEST_INSTALLED=1: conftest.py refuses the checkout's copy).
#
#   bash tests/python/wheel.sh          # from anywhere; ~1-2 min, most of it cargo
#
# Needs: .venv (scripts/python-venv.sh, run here), cargo for the build, and
# PyPI for pip's isolated build environment and for the tests' requirements
# in the new venv (both cached by pip after the first run). KEEP=1 keeps the
# temporary directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
py="${PYTHON:-python3}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/groupcache-wheel.XXXXXX")"
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$tmp"' EXIT; fi
step() { printf '== wheel.sh: %s\n' "$*"; }

bash "$root/scripts/python-venv.sh" >/dev/null

step "building the wheel (pip wheel ./python_ctypes)"
# A stale setuptools build/ would put files deleted from the package into
# the wheel.
rm -rf "$root/python_ctypes/build"
(cd "$root" && "$root/.venv/bin/python" -m pip wheel --quiet --disable-pip-version-check \
  --no-deps --wheel-dir "$tmp/dist" ./python_ctypes)
rm -rf "$root/python_ctypes/build"
wheels=("$tmp"/dist/groupcache-*.whl)
[ "${#wheels[@]}" = 1 ] && [ -f "${wheels[0]}" ] || { echo "expected one wheel, got: ${wheels[*]}"; exit 1; }
wheel="${wheels[0]}"
echo "$(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"
# What must be inside: the library, the typing marker, every module.
"$py" - "$wheel" "$root/python_ctypes/groupcache" <<'EOF'
import sys, zipfile
from pathlib import Path
names = zipfile.ZipFile(sys.argv[1]).namelist()
want = ["groupcache/py.typed"] + ["groupcache/" + p.name for p in Path(sys.argv[2]).glob("*.py")]
missing = [n for n in want if n not in names]
libs = [n for n in names if n.startswith("groupcache/libgroupcache") and n.endswith(".so")]
extra = [n for n in names if n.startswith("groupcache/") and n.endswith(".py") and n not in want]
assert not missing and len(libs) == 1 and not extra, (missing, libs, extra)
EOF

step "installing it into a fresh venv without Rust"
"$py" -m venv "$tmp/venv"
norust=""
IFS=: read -r -a dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  [ -n "$d" ] || continue
  [ "$d" = "$HOME/.cargo/bin" ] && continue
  { [ -e "$d/cargo" ] || [ -e "$d/rustc" ] || [ -e "$d/rustup" ]; } && continue
  norust="${norust:+$norust:}$d"
done
run_norust() {
  env -u PYTHONPATH -u GROUPCACHE_LIB -u CARGO_TARGET_DIR -u RUSTUP_TOOLCHAIN \
    PATH="$tmp/venv/bin:$norust" CARGO=/bin/false RUSTC=/bin/false "$@"
}
if run_norust bash -c 'command -v cargo || command -v rustc'; then
  echo "cargo or rustc is still on the stripped PATH"; exit 1
fi
run_norust pip install --quiet --disable-pip-version-check --no-index --no-deps "$wheel"
# What the tests need, as for the checkout's .venv (pure Python: no Rust).
run_norust pip install --quiet --disable-pip-version-check -r "$root/tests/python/requirements.txt"

step "running tests/python against the installed package"
mkdir "$tmp/run"
cd "$tmp/run"
run_norust env GROUPCACHE_TEST_INSTALLED=1 PYTHONDONTWRITEBYTECODE=1 \
  python -c 'import groupcache, sys; print("testing", groupcache.__file__, "with", groupcache.library_path)'
run_norust env GROUPCACHE_TEST_INSTALLED=1 PYTHONDONTWRITEBYTECODE=1 \
  python -m pytest -q -p no:cacheprovider "$root/tests/python"
