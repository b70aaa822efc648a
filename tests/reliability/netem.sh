#!/usr/bin/env bash
# Runs the netem_loopback test of tests/reliability_peers.rs inside a fresh
# network namespace whose loopback has tc netem delay and loss: real packet
# loss and TCP retransmits, loopback only. Needs root (ip netns, tc).
#   tests/reliability/netem.sh [DELAY] [LOSS]     default: 5ms 5%
set -euo pipefail
cd "$(dirname "$0")/../.."
delay="${1:-5ms}"
loss="${2:-5%}"
ns="gcnetem$$"
bin="$(cargo test --release --test integration --no-run 2>&1 \
  | grep -o 'target/release/deps/integration-[a-z0-9]*' | tail -1)"
[ -x "$bin" ] || { echo "could not build the integration tests" >&2; exit 1; }
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
ip netns exec "$ns" ip link set lo up
if ! ip netns exec "$ns" tc qdisc add dev lo root netem delay "$delay" loss "$loss"; then
  echo "netem is not available in this kernel (no sch_netem): netem_loopback cannot run here;" >&2
  echo "lossy_slow_links_still_give_right_values (a loopback proxy) covers the same faults" >&2
  exit 1
fi
echo "netns $ns: lo with netem delay $delay loss $loss"
ip netns exec "$ns" env GC_NETEM=1 "$bin" --ignored --exact reliability_peers::netem_loopback --nocapture
