"""Interpreter exit while daemon threads are loading through Python loaders.

CPython 3.11 ends such a thread with pthread_exit when it tries to re-enter
Python during finalization; that forced unwind must never cross the
library's frames (it aborted the process with "FATAL: exception not
rethrown" in about a third of runs before the package stopped loaders at
exit)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import threading, time, groupcache
    def slow(key):
        time.sleep(0.002)
        return key.encode()
    cache = groupcache.Cache("exit", max_bytes=1 << 20, loader=slow)
    def reader(t):
        i = 0
        while True:
            try:
                cache.get("%d-%d" % (t, i))
            except groupcache.GroupcacheError:
                pass
            i += 1
    for t in range(8):
        threading.Thread(target=reader, args=(t,), daemon=True).start()
    time.sleep(0.05)
    print("exiting", flush=True)
    """
)


def test_exit_with_daemon_threads_inside_python_loaders() -> None:
    env = dict(os.environ)
    failures = []
    for _ in range(20):
        r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0 or "exiting" not in r.stdout:
            failures.append((r.returncode, r.stderr[-300:]))
    assert not failures, failures[:3]
