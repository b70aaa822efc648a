#!/usr/bin/env bash
# The peer benchmark (issue 4): remote fetches between two nodes on
# loopback, ours beside golang/groupcache in one run. Each side runs node A
# (the driver) in one process and node B (the owner of every key fetched)
# in a child process; both do the same phases with the same keys, 16-byte
# values and phase length (bench/go/peers/main.go, tests/peers_perf.rs).
# Rounds alternate Go, ours, Go, ours... so both see the same machine.
# Each round also runs ours over https with mutual TLS (certificates from
# tests/tls/make-certs.sh), concurrency 16 only: the TLS row, against ours
# over plain http in the same round.
# Writes bench/out/peers.raw, bench/out/peers.json, bench/out/peers.md.
#   bash bench/peers.sh [ROUNDS] [PHASE_SECONDS]     (default 3 rounds, 2 s)
# About 7 x ROUNDS x PHASE_SECONDS of running, plus the builds.
#   PEERS_ONLY=tls bash bench/peers.sh [ROUNDS] [PHASE_SECONDS]
# runs only the TLS comparison (ours, concurrency 16, plain then TLS, each
# round), into bench/out/peers-tls.{raw,json,md}.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rounds="${1:-3}"
secs="${2:-2}"
mkdir -p bench/out

only="${PEERS_ONLY:-}"
case "$only" in ""|tls) ;; *) echo "PEERS_ONLY: tls or nothing, not $only" >&2; exit 2 ;; esac
pki="$root/target/bench-pki"
bash tests/tls/make-certs.sh "$pki"

# Go: build offline against Debian's golang/groupcache (as bench/go/peers/run.sh).
[ -n "$only" ] || (
  . scripts/go-env.sh
  scripts/install-go.sh >&2
  mkdir -p target/go/bin
  cd bench/go/peers && "$GO" build -o "$REPO_ROOT/target/go/bin/gopeers" .
)
gobin=target/go/bin/gopeers
gover="$([ -n "$only" ] || { . scripts/go-env.sh && "$GO" version; })"

# Ours: the ignored test binary, run directly (no cargo in the measurement).
ours="$(cargo test --release --test integration --no-run 2>&1 \
  | grep -o 'target/release/deps/integration-[a-z0-9]*' | tail -1)"
[ -x "$ours" ] || { echo "could not build tests/peers_perf.rs" >&2; exit 1; }

out=bench/out/peers${only:+-$only}
raw=$out.raw
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
{
  echo "meta {\"rounds\":$rounds,\"phase_seconds\":$secs,\"cores\":$(nproc),\"go\":\"$gover\",\"rustc\":\"$(rustc --version)\",\"command\":\"${only:+PEERS_ONLY=$only }bash bench/peers.sh${1:+ $1}${2:+ $2}\",\"loadavg_start\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
} > "$raw"
# Ours, with the given environment (phases, TLS), as a raw line `$1 {...}`.
ours_run() {
  local who="$1"
  shift
  local la
  la="$(cut -d' ' -f1-3 /proc/loadavg)"
  env "$@" PEERS_PERF_MS=$((secs * 1000)) PEERS_PERF_JSON="$tmp" \
    "$ours" --ignored --exact peers_perf::remote_fetch_rate --nocapture >/dev/null
  echo "$who {\"loadavg\":\"$la\",\"result\":$(cat "$tmp")}" >> "$raw"
}
for i in $(seq "$rounds"); do
  if [ -z "$only" ]; then
    echo "round $i/$rounds: go" >&2
    echo "go {\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"result\":$("$gobin" -dur="${secs}s")}" >> "$raw"
    echo "round $i/$rounds: ours" >&2
    ours_run rust
  else
    echo "round $i/$rounds: ours, plain http, concurrency 16" >&2
    ours_run rust PEERS_PERF_PHASES=remote_c16
  fi
  echo "round $i/$rounds: ours over TLS, concurrency 16" >&2
  ours_run rust_tls PEERS_PERF_PHASES=remote_c16 PEERS_PERF_TLS="$pki"
done
echo "end {\"loadavg_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$raw"
python3 bench/peers_report.py "$raw" "$out.json" "$out.md"
cat "$out.md"
