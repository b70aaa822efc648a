#!/usr/bin/env bash
# The Python package as a package index would get it, end to end:
#
# 1. `pip wheel ./python_ctypes` (on a terminal, so that pip shows the line
#    the build prints) makes one py3-none-manylinux_X_Y_<arch> wheel of at
#    most 5 MB: the library inside has no debug info, does not link
#    libpython, and `auditwheel show` agrees with the wheel's tag; the
#    metadata has what an index expects.
# 2. An sdist (`python -m build --sdist`) carries the crate and builds the
#    same wheel (cargo into target/, where only the crate itself compiles).
# 3. An editable install (`pip install -e`) leaves no library inside the
#    package (a stale one is removed) and loads target/release/.
# 4. For every minor version of Python 3 on the machine that
#    requires-python allows (Debian's /usr/bin/python3 and the pyenv
#    versions, one interpreter per minor, Debian's for its own; or
#    PYTHONS="..."),
#    the wheel is installed into a fresh venv with no Rust toolchain
#    reachable (PATH without cargo or rustc, CARGO=RUSTC=/bin/false,
#    --no-index: nothing fetched, nothing built) and tests/python runs
#    against the installed package from a temporary directory, without
#    PYTHONPATH or GROUPCACHE_LIB (GROUPCACHE_TEST_INSTALLED=1: conftest.py
#    refuses the checkout's copy).
#
#   bash tests/python/wheel.sh     # from anywhere; ~1 min per interpreter
#   PYTHONS="python3.12" bash tests/python/wheel.sh
#
# Needs cargo, and PyPI (or pip's cache) for pip's isolated build
# environment, auditwheel and build in .venv, and the tests' requirements in
# each new venv. Prints `wheel: N passed, N failed`; KEEP=1 keeps the
# temporary directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/groupcache-wheel.XXXXXX")"
stale="$root/python_ctypes/groupcache/libgroupcache.cpython-stale.so"
cleanup() {
  rm -f "$stale"
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
step() { printf '== wheel.sh: %s\n' "$*"; }
passed=0 failed=0
check() { # check NAME COMMAND...: runs the command, counts and reports it
  local name="$1"; shift
  if "$@"; then passed=$((passed + 1)); echo "  ok   $name"
  else failed=$((failed + 1)); echo "  FAIL $name"; fi
}
vpy="$root/.venv/bin/python"
pipq=(--quiet --disable-pip-version-check)

bash "$root/scripts/python-venv.sh" >/dev/null
"$vpy" -m pip install "${pipq[@]}" -r "$root/tests/python/packaging-requirements.txt"
version="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml" | head -n1)"
arch="$(uname -m)"

# ---- 1. the wheel ----------------------------------------------------------
step "building the wheel (pip wheel ./python_ctypes)"
build_log="$tmp/pip-wheel.log"
pip_wheel=("$vpy" -m pip wheel --disable-pip-version-check --no-deps --wheel-dir "$tmp/dist" ./python_ctypes)
if command -v script >/dev/null; then
  # A terminal, as a person has: pip hides the build's output, but the
  # build also writes its line to /dev/tty.
  (cd "$root" && script -qec "$(printf '%q ' "${pip_wheel[@]}")" "$build_log" >/dev/null) \
    || { cat "$build_log"; exit 1; }
else
  (cd "$root" && "${pip_wheel[@]}" >"$build_log" 2>&1) || { cat "$build_log"; exit 1; }
fi
wheels=("$tmp"/dist/groupcache-*.whl)
[ "${#wheels[@]}" = 1 ] && [ -f "${wheels[0]}" ] || { echo "expected one wheel, got: ${wheels[*]}"; exit 1; }
wheel="${wheels[0]}"
name="$(basename "$wheel")"
size=$(stat -c %s "$wheel")
echo "   $name ($((size / 1024)) KiB)"
if command -v script >/dev/null; then
  check "pip shows that it is compiling the Rust library" grep -q "compiling the Rust library" "$build_log"
fi
check "tagged groupcache-$version-py3-none-manylinux_X_Y_$arch" \
  bash -c '[[ "$1" =~ ^groupcache-$2-py3-none-manylinux_[0-9]+_[0-9]+_$3\.whl$ ]]' _ "$name" "${version//./\\.}" "$arch"
check "at most 5 MB" test "$size" -le $((5 * 1000 * 1000))

mkdir "$tmp/unpacked"
(cd "$tmp/unpacked" && "$vpy" -m zipfile -e "$wheel" .)
lib="$tmp/unpacked/groupcache/libgroupcache.so"
check "the library has no debug info" bash -c '! readelf -S --wide "$1" | grep -q " \.debug_"' _ "$lib"
check "the library does not link libpython" bash -c '! readelf -d "$1" | grep -q "NEEDED.*libpython"' _ "$lib"
# The contents and the metadata an index reads.
check "contents and metadata" "$vpy" - "$wheel" "$root" <<'EOF'
import email, re, sys, zipfile
from pathlib import Path
wheel, root = sys.argv[1], Path(sys.argv[2])
z = zipfile.ZipFile(wheel)
names = z.namelist()
pkg = root / "python_ctypes" / "groupcache"
want = ["groupcache/py.typed", "groupcache/libgroupcache.so"] + ["groupcache/" + p.name for p in pkg.glob("*.py")]
missing = [n for n in want if n not in names]
extra = [n for n in names if n.startswith("groupcache/") and n not in want]
assert not missing and not extra, ("missing", missing, "extra", extra)
info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
meta = email.message_from_bytes(z.read(info + "/METADATA"))
wheel_meta = email.message_from_bytes(z.read(info + "/WHEEL"))
assert wheel_meta["Root-Is-Purelib"] == "false", wheel_meta
assert meta["Name"] == "groupcache" and meta["License-Expression"] == "Apache-2.0", meta
assert info + "/licenses/LICENSE" in names and meta["License-File"] == "LICENSE"
assert meta["Requires-Python"] == ">=3.9", meta["Requires-Python"]
classifiers = meta.get_all("Classifier")
for c in ("Programming Language :: Python :: 3", "Operating System :: POSIX :: Linux", "Typing :: Typed"):
    assert c in classifiers, (c, classifiers)
assert meta.get_all("Project-URL"), "no Project-URL"
assert meta["Description-Content-Type"] == "text/markdown"
readme = (root / "python_ctypes" / "README.md").read_text()
assert meta.get_payload().strip() == readme.strip(), "long description != python_ctypes/README.md"
EOF

step "auditwheel show"
"$root/.venv/bin/auditwheel" show "$wheel" >"$tmp/auditwheel.log" 2>&1 || { cat "$tmp/auditwheel.log"; exit 1; }
tag="${name%.whl}"; tag="${tag##*-}"
audit_tag="$(tr '\n' ' ' <"$tmp/auditwheel.log" | sed -n 's/.*consistent with the following platform tag: *"\([^"]*\)".*/\1/p')"
echo "   auditwheel: consistent with $audit_tag; glibc symbol versions up to" \
  "$(objdump -T "$lib" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n1)"
check "auditwheel: the wheel's tag ($tag) is the one its library allows" test "$audit_tag" = "$tag"

# ---- 2. the sdist ----------------------------------------------------------
step "the sdist, and the wheel it builds (cargo into target/)"
"$vpy" -m build --sdist --outdir "$tmp/sdist" "$root/python_ctypes" >"$tmp/sdist.log" 2>&1 \
  || { cat "$tmp/sdist.log"; exit 1; }
sdist=("$tmp"/sdist/groupcache-"$version".tar.gz)
check "sdist carries the crate" bash -c 'tar tzf "$1" | grep -qx "groupcache-$2/rust/Cargo.lock" &&
  tar tzf "$1" | grep -qx "groupcache-$2/rust/src/lib.rs"' _ "${sdist[0]}" "$version"
# Unpacked at the same place each run, so cargo's target/sdist stays valid
# (pip would unpack it to a new temporary directory and rebuild the crate).
rm -rf "$root/target/sdist/src" && mkdir -p "$root/target/sdist/src"
tar xzf "${sdist[0]}" -C "$root/target/sdist/src"
# Into the checkout's own target/: the registry crates are built already
# (same Cargo.lock, same profile), so only the crate itself compiles (a
# consumer's clean build is timed by scripts/measure-build.sh instead).
CARGO_TARGET_DIR="$root/target" "$vpy" -m pip wheel "${pipq[@]}" --no-deps \
  --wheel-dir "$tmp/dist-sdist" "$root/target/sdist/src/groupcache-$version" >"$tmp/sdist-wheel.log" 2>&1 \
  || { cat "$tmp/sdist-wheel.log"; exit 1; }
check "the sdist builds the same wheel (name, files, Python sources, exported symbols)" \
  "$vpy" - "$wheel" "$tmp"/dist-sdist/*.whl <<'EOF'
import os, subprocess, sys, tempfile, zipfile
from pathlib import Path
a, b = (zipfile.ZipFile(p) for p in sys.argv[1:3])
assert Path(sys.argv[1]).name == Path(sys.argv[2]).name, sys.argv[1:3]
assert sorted(a.namelist()) == sorted(b.namelist()), set(a.namelist()) ^ set(b.namelist())
for n in a.namelist():
    if n.endswith(".py") or n.endswith("METADATA"):
        assert a.read(n) == b.read(n), n
def symbols(z):
    with tempfile.TemporaryDirectory() as d:
        p = z.extract("groupcache/libgroupcache.so", d)
        out = subprocess.run(["nm", "-D", "--defined-only", p], check=True, capture_output=True, text=True).stdout
        return sorted(line.split()[-1] for line in out.splitlines())
sa, sb = symbols(a), symbols(b)
assert sa == sb and any(s == "cache_get" for s in sa), set(sa) ^ set(sb)
EOF

# ---- 3. an editable install -------------------------------------------------
step "an editable install (pip install -e ./python_ctypes)"
"$root/.venv/bin/python" -m venv "$tmp/venv-editable"
cp "$lib" "$stale" # what an older in-place build left behind
"$tmp/venv-editable/bin/python" -m pip install "${pipq[@]}" -e "$root/python_ctypes" >"$tmp/editable.log" 2>&1 \
  || { cat "$tmp/editable.log"; exit 1; }
check "editable: no library left inside the package" \
  bash -c '! compgen -G "$1/python_ctypes/groupcache/*groupcache*.so" >/dev/null' _ "$root"
check "editable: the package loads target/release/ (what cargo build refreshes)" test \
  "$(cd "$tmp" && env -u PYTHONPATH -u GROUPCACHE_LIB "$tmp/venv-editable/bin/python" -c \
    'import groupcache; print(groupcache.library_path)')" = "$root/target/release/libgroupcache.so"
rm -rf "$tmp/venv-editable"

# ---- 4. installed without Rust, on every interpreter --------------------------
min="$(sed -n 's/^requires-python *= *">=\([0-9.]*\)".*/\1/p' "$root/python_ctypes/pyproject.toml")"
pythons=()
if [ -n "${PYTHONS:-}" ]; then
  read -r -a pythons <<<"$PYTHONS"
else
  candidates=(/usr/bin/python3 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/*/bin/python3)
  # Each one that requires-python allows, oldest version first.
  while read -r _ p; do pythons+=("$p"); done < <(
    for p in "${candidates[@]}"; do
      [ -x "$p" ] || continue
      "$p" -c 'import sys; v = sys.version_info[:3]
if v[:2] >= tuple(map(int, sys.argv[1].split("."))): print("%d.%d.%d" % v, sys.argv[2])' "$min" "$p" || true
    done | sort -V | awk '
      # One interpreter per minor version (Debian'"'"'s for its own): a
      # second 3.11 adds minutes, not coverage.
      { split($1, v, "."); m = v[1] "." v[2]
        if (!(m in pick) || $2 == "/usr/bin/python3") pick[m] = $0
        if (!(m in order)) order[m] = ++n }
      END { for (m in pick) print order[m], pick[m] }' | sort -n | cut -d" " -f2-)
  [ -x /usr/bin/python3 ] || { echo "wheel.sh: no /usr/bin/python3 (Debian's)"; exit 1; }
fi
[ "${#pythons[@]}" -gt 0 ] || { echo "wheel.sh: no Python >= $min found"; exit 1; }

norust=""
IFS=: read -r -a dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  [ -n "$d" ] || continue
  [ "$d" = "$HOME/.cargo/bin" ] && continue
  { [ -e "$d/cargo" ] || [ -e "$d/rustc" ] || [ -e "$d/rustup" ]; } && continue
  norust="${norust:+$norust:}$d"
done
tested=()
for py in "${pythons[@]}"; do
  pyver="$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
  venv="$tmp/venv-$pyver-$(echo "$py" | md5sum | cut -c1-6)"
  step "Python $pyver ($py): the wheel in a fresh venv without Rust, then tests/python"
  "$py" -m venv "$venv"
  run_norust() {
    env -u PYTHONPATH -u GROUPCACHE_LIB -u CARGO_TARGET_DIR -u RUSTUP_TOOLCHAIN \
      PATH="$venv/bin:$norust" CARGO=/bin/false RUSTC=/bin/false "$@"
  }
  if run_norust bash -c 'command -v cargo || command -v rustc'; then
    echo "cargo or rustc is still on the stripped PATH"; exit 1
  fi
  run_norust pip install "${pipq[@]}" --no-index --no-deps "$wheel"
  # What the tests need, as for the checkout's .venv (pure Python: no Rust).
  run_norust pip install "${pipq[@]}" -r "$root/tests/python/requirements.txt"
  mkdir -p "$tmp/run"
  (
    cd "$tmp/run"
    run_norust env GROUPCACHE_TEST_INSTALLED=1 PYTHONDONTWRITEBYTECODE=1 \
      python -c 'import groupcache, sys; print("   testing", groupcache.__file__, "with", groupcache.library_path)'
    run_norust env GROUPCACHE_TEST_INSTALLED=1 PYTHONDONTWRITEBYTECODE=1 \
      python -m pytest -q -p no:cacheprovider "$root/tests/python"
  ) && ok=1 || ok=0
  check "Python $pyver ($py): the installed wheel passes tests/python" test "$ok" = 1
  tested+=("$pyver ($py)")
  rm -rf "$venv"
done

echo "wheel.sh: tested $name on: ${tested[*]}"
echo "wheel: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
