#!/usr/bin/env python3
"""The leak check of Cache.get_buffer (issue 10): 10^6 views of 64 KiB
values, each value removed from the cache while viewed (so its view holds
the only reference), up to 256 alive at once and dropped in random order.
Prints RSS before and after each 10^5 and fails if it grew by more than
16 MiB past the first 10^5 (a leak of one value per call would be 64 GB).

    PYTHONPATH=python_ctypes .venv/bin/python bench/python/buffer_leak.py [calls]

Also checks that no value is held by a library-made view at the end
(cache_py_live_views). _GROUPCACHE_CTYPES_VIEWS=1 runs it on the ctypes
views instead.
"""

from __future__ import annotations

import gc
import os
import random
import sys
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python_ctypes"))
import groupcache  # noqa: E402
from groupcache import _lib  # noqa: E402
from groupcache import cache as cache_mod  # noqa: E402


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print("views made by", "ctypes" if cache_mod._library_views_off else "the library")
    c = groupcache.Cache("leak", max_bytes=64 << 20)
    value = b"v" * (64 << 10)
    rng = random.Random(7)
    held: List[memoryview] = []
    base = 0
    step = max(1, calls // 10)
    for i in range(calls):
        key = "k%d" % (i % 512)
        c.set(key, value)
        held.append(c.get_buffer(key))
        c.remove(key)
        if len(held) > 256:
            held.pop(rng.randrange(len(held)))
        if (i + 1) % step == 0:
            gc.collect()
            now = rss()
            if not base:
                base = now
            print("%9d calls: RSS %7.1f MiB (%+.1f MiB since the first %d)"
                  % (i + 1, now / 2**20, (now - base) / 2**20, step), flush=True)  # fmt: skip
    while held:
        held.pop(rng.randrange(len(held)))
    gc.collect()
    grown = rss() - base
    print("all views dropped: RSS %+.1f MiB since the first %d calls" % (grown / 2**20, step))
    if grown > 16 << 20:
        raise SystemExit("RSS grew by %d bytes: a leak" % grown)
    live = _lib.cache_py_live_views()
    print("values held by library views: %d" % live)
    if live:
        raise SystemExit("%d values still held with no view left: a leak" % live)


if __name__ == "__main__":
    main()
