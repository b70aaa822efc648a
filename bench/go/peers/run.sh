#!/usr/bin/env bash
# Builds and runs the golang/groupcache peer benchmark (node A in this
# process, node B a child process, loopback only); prints one JSON object.
# Extra arguments go to the benchmark (e.g. -dur=5s). Takes about 5 x -dur.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../../../scripts/go-env.sh"
"$REPO_ROOT/scripts/install-go.sh" >&2
mkdir -p "$REPO_ROOT/target/go/bin"
(cd "$here" && "$GO" build -o "$REPO_ROOT/target/go/bin/gopeers" .)
exec "$REPO_ROOT/target/go/bin/gopeers" "$@"
