#!/usr/bin/env bash
# Builds and runs the golang/groupcache hit/memory benchmark; prints one JSON
# object on stdout. Extra arguments go to the benchmark (e.g. -rounds=9).
# The binary is left in target/go/bin/gohit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../../../scripts/go-env.sh"
"$REPO_ROOT/scripts/install-go.sh" >&2
mkdir -p "$REPO_ROOT/target/go/bin"
(cd "$here" && "$GO" build -o "$REPO_ROOT/target/go/bin/gohit" .)
exec "$REPO_ROOT/target/go/bin/gohit" "$@"
