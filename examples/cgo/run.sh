#!/usr/bin/env bash
# Builds and runs the cgo example (examples/cgo/main.go): a Go program that
# uses libgroupcache through its C header. Exits non-zero if any of its
# checks fails; its last line is `cgo: N passed, N failed`.
#
#   examples/cgo/run.sh              against the checkout (builds the library)
#   examples/cgo/run.sh --pkgconfig  against an installed one, via pkg-config
#                                    (PKG_CONFIG_PATH and, outside the loader's
#                                    paths, LD_LIBRARY_PATH: the caller's)
#
# Offline: Debian's Go in GOPATH mode (scripts/install-go.sh installs it when
# missing, scripts/go-env.sh sets the environment); cgo needs gcc.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../../scripts/go-env.sh"
cd "$REPO_ROOT"

tags=() out="$REPO_ROOT/target/go/cgo-example"
case "${1:-}" in
  --pkgconfig) tags=(-tags pkgconfig) out="$out-pkgconfig" ;;
  "") "${CARGO:-cargo}" build --release --lib --quiet ;;
  *) echo "usage: examples/cgo/run.sh [--pkgconfig]" >&2; exit 2 ;;
esac

"$REPO_ROOT/scripts/install-go.sh" >/dev/null
command -v "${CC:-gcc}" >/dev/null || { echo "cgo: ${CC:-gcc} is missing (cgo needs a C compiler)" >&2; exit 1; }
export CGO_ENABLED=1

# A build cache of its own, new each run: Go's cache keys a cgo package on
# its sources and flags, not on what `#cgo pkg-config:` printed
# (golang/go#24544) nor on the headers it includes (golang/go#24355). A
# shared cache (CI keeps ~/.cache/go-build between runs of one checkout
# path) would link this run's binary with -L of an earlier, deleted
# install PREFIX, or compile it against an earlier header. The standard
# library comes prebuilt with Debian's Go, so this costs about a second.
GOCACHE="$(mktemp -d "${TMPDIR:-/tmp}/groupcache-cgo-gocache.XXXXXX")"
export GOCACHE
trap 'rm -rf "$GOCACHE"' EXIT

mkdir -p "$(dirname "$out")"
(cd "$here" && "$GO" vet "${tags[@]}" . && "$GO" build "${tags[@]}" -o "$out" .)

# Go 1.19/1.20 check at run time that no Go pointer is kept by C (later
# releases moved that check to a build-time GOEXPERIMENT).
case "$("$GO" env GOVERSION)" in
  go1.1[7-9]*|go1.20*) export GODEBUG="${GODEBUG:+$GODEBUG,}cgocheck=2" ;;
esac
"$out"
