"""A cache in front of a slow data source, with the groupcache package.

    cargo build --release && PYTHONPATH=python_ctypes python3 examples/loader.py
    (or after `pip install ./python_ctypes`: python3 examples/loader.py)

Ten threads ask for the same few users at once; each user is loaded once,
the rest are served from memory. A missing user is a KeyError, a failing
load a LoaderError, and the same cache serves asyncio code with aget.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Dict, List, Optional, Tuple

import groupcache

USERS: Dict[str, str] = {"1": "ada", "2": "grace", "3": "edsger"}
loads: List[str] = []


def load_user(key: str) -> Optional[Tuple[bytes, float]]:
    """The slow source: 100 ms per lookup. None means "no such user"."""
    loads.append(key)
    time.sleep(0.1)
    if key == "down":
        raise ConnectionError("user database unreachable")
    name = USERS.get(key)
    if name is None:
        return None
    return name.encode(), 60.0  # kept for a minute


def main() -> None:
    with groupcache.Cache("users", max_bytes=1 << 20, loader=load_user) as users:
        t0 = time.monotonic()
        threads = [
            threading.Thread(target=lambda: [users.get(k) for k in ("1", "2", "3")])
            for _ in range(10)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("30 gets from 10 threads in %.2f s, %d loads" % (time.monotonic() - t0, len(loads)))
        print("user 1:", users["1"].decode())
        print("many:", {k: v.decode() for k, v in users.get_many(["1", "2", "9"]).items()})
        try:
            users.get("9")
        except KeyError:
            print("user 9: no such user")
        try:
            users.get("down")
        except groupcache.LoaderError as e:
            print("down:", e, "| cause:", repr(e.__cause__))

        async def from_asyncio() -> List[bytes]:
            return list(await asyncio.gather(users.aget("3"), users.aget("1")))

        print("aget:", [v.decode() for v in asyncio.run(from_asyncio())])
        s = users.stats()
        print("stats: %d gets, %d hits, %d loads" % (s.gets, s.cache_hits, s.local_loads))


if __name__ == "__main__":
    main()
