#!/usr/bin/env bash
# Builds the golang/groupcache interop node: tests/interop/build.sh OUTDIR
# leaves OUTDIR/gonode. Offline, with Debian's Go and /usr/share/gocode
# (installed by scripts/install-go.sh when missing).
set -euo pipefail
out="${1:?usage: tests/interop/build.sh OUTDIR}"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../../scripts/go-env.sh"
"$REPO_ROOT/scripts/install-go.sh" >/dev/null
mkdir -p "$out"
out="$(cd "$out" && pwd)"
(cd "$here/gonode" && "$GO" build -o "$out/gonode" .)
echo "$out/gonode"
