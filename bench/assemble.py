"""Assembles BENCHMARKS.md from the sections the benchmarks wrote."""
import datetime
import os
import platform
import subprocess

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = os.path.join(root, "bench", "out")


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


sections = [
    ("core.md", "Core: hits, misses, stampede, memory (issue 2)", "bash bench/core.sh 3"),
    ("python.md", "Python: per-hit cost and memory against other caches (issue 3)", "bash bench/python/run.sh"),
    (
        "python-buffer.md",
        "Python: zero-copy reads, Cache.get_buffer (issue 10)",
        "bash bench/python/run.sh --buffer --rounds 20",
    ),
    ("peers.md", "Peers: remote fetches against golang/groupcache (issue 4)", "bash bench/peers.sh"),
    (
        "peers-tls.md",
        "Peers over TLS: https with mutual TLS against plain http (issue 11)",
        "PEERS_ONLY=tls bash bench/peers.sh 3 2",
    ),
    ("batch.md", "Batches: get_many of 1,000 keys over 3 nodes (issue 10)", "bash bench/python/batch.sh"),
]
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
md = [
    "# Benchmarks",
    "",
    "All figures come from `make bench` (which runs `bash bench/all.sh`); each",
    "section names the command that produced it, so any one can be rerun alone.",
    "These machines are shared and noisy: compare the figures within a section",
    "(measured in the same run), not across runs.",
    "",
    f"Machine: {os.cpu_count()} cores, {cpu_model()}; {platform.system()} {platform.release()}.",
    f"Commit: {rev or 'unknown'}; assembled {datetime.date.today().isoformat()}.",
    "",
]
for name, title, cmd in sections:
    path = os.path.join(out, name)
    md.append(f"## {title}")
    md.append("")
    md.append(f"Command: `{cmd}`.")
    md.append("")
    if os.path.exists(path):
        md.append(open(path).read().rstrip())
    else:
        md.append("_Not run yet._")
    md.append("")
open(os.path.join(root, "BENCHMARKS.md"), "w").write("\n".join(md))
