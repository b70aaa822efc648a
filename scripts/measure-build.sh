#!/usr/bin/env bash
# Measures what a consumer's build of the library costs: `cargo build
# --release --lib` from an empty target directory (as pip does from the
# sdist), with `--timings`, and prints the wall time, the slowest units and
# the load average (the machine may be shared). Exits non-zero if the build
# took longer than BUDGET seconds (default 120: the target for 2 cores).
#
#   bash scripts/measure-build.sh        # ~1.5 min; leaves target/measure-build/
#
# Not part of `make test` (it rebuilds every dependency); the figures are in
# python_ctypes/README.md and the commit that last changed the build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
budget="${BUDGET:-120}"
dir="$root/target/measure-build"
rm -rf "$dir"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
start=$(date +%s.%N)
cargo build --release --lib --locked --timings --quiet --manifest-path "$root/Cargo.toml" --target-dir "$dir"
end=$(date +%s.%N)
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$dir" "$start" "$end" "$budget" <<'EOF'
import glob, json, re, sys
from pathlib import Path
d, start, end, budget = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
html = Path(sorted(glob.glob(d + "/cargo-timings/cargo-timing-*.html"))[-1]).read_text()
units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);", html, re.S).group(1))
units.sort(key=lambda u: -u["duration"])
wall = end - start
print("clean release build of the library: %.1f s wall (budget %.0f s), %d units" % (wall, budget, len(units)))
print("slowest units (each on one core; they overlap):")
for u in units[:8]:
    print("  %-20s %-10s %6.1f s" % (u["name"], u["version"], u["duration"]))
lib = Path(d) / "release" / "libgroupcache.so"
print("library: %.1f MB" % (lib.stat().st_size / 1e6))
sys.exit(0 if wall <= budget else 1)
EOF
