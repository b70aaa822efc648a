"""examples/workers under real gunicorn: two "hosts" on loopback
(127.0.3.201 and .202), each a gunicorn master with 4 workers, every worker
a node whose membership comes from one DNS name with a port range, served
by dnsmasq. Each of N keys, asked through both hosts, is loaded once across
the 8 workers, by the node the ring of all 8 gives it to."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import INSTALLED, ROOT

import groupcache

RUN = ROOT / "examples" / "workers" / "run.py"
N = 60


def test_each_key_is_loaded_once_across_the_workers_of_two_hosts(tmp_path: Path) -> None:
    log = tmp_path / "loads.log"
    env = dict(os.environ)
    if not INSTALLED:
        env["PYTHONPATH"] = str(ROOT / "python_ctypes")
    out = subprocess.run(
        [sys.executable, str(RUN), "--items", str(N), "--load-log", str(log)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # Every worker of both hosts saw all 8 nodes.
    seen = re.findall(r"node (http://\S+)\s+sees (\d+) peers", out.stdout)
    assert len(seen) == 8 and all(int(n) == 8 for _, n in seen), out.stdout
    nodes = sorted(url for url, _ in seen)
    assert {u.split(":")[1] for u in nodes} == {"//127.0.3.201", "//127.0.3.202"}
    # Each key loaded once, by its owner on the ring of the 8 nodes.
    lines = [line.split() for line in log.read_text().splitlines()]
    loads = collections.Counter(key for _, _, key in lines)
    assert set(loads) == {"item-%d" % i for i in range(N)}
    assert max(loads.values()) == 1, loads.most_common(3)
    with groupcache.Pool("127.0.0.1:0") as ring:
        ring.set_peers(nodes)
        for _, url, key in lines:
            assert ring.owner(key) == url, key
    # Loaded by workers of both hosts.
    assert {url.split(":")[1] for _, url, _ in lines} == {"//127.0.3.201", "//127.0.3.202"}
    assert "each item loaded once across the 8 workers of 2 hosts: yes" in out.stdout
