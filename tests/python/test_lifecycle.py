"""close(), use after close, garbage collection, and leaks."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path
from typing import Any, Callable, List

import pytest
from conftest import PRELUDE, rss_bytes

import groupcache
from groupcache import Cache, _loader


def test_every_call_after_close_raises_closed_error(name: str) -> None:
    c = Cache(name, loader=lambda k: b"v")
    c.get("cached")
    c.close()
    assert c.closed
    calls: List[Callable[[], Any]] = [
        lambda: c.get("cached"),
        lambda: c.get("other"),
        lambda: c["cached"],
        lambda: c.get_many(["cached", "other"]),
        lambda: c.set("k", b"v"),
        lambda: c.__setitem__("k", b"v"),
        lambda: c.remove("k"),
        lambda: c.__delitem__("k"),
        lambda: c.stats(),
        lambda: c.__enter__(),
        lambda: asyncio.run(c.aget("cached")),
        lambda: asyncio.run(c.aget("other")),
    ]
    for call in calls:
        with pytest.raises(groupcache.ClosedError):
            call()
    c.close()  # twice: a no-op


def test_context_manager_closes_even_on_error(name: str) -> None:
    with pytest.raises(RuntimeError):
        with Cache(name) as c:
            c.set("k", b"v")
            raise RuntimeError("inside")
    assert c.closed
    with pytest.raises(groupcache.ClosedError):
        c.get("k")


def test_a_closed_caches_name_is_free_again(name: str) -> None:
    a = Cache(name, loader=lambda k: b"a")
    a.close()
    with Cache(name, loader=lambda k: b"b") as b:
        assert b.get("k") == b"b"


def test_hit_values_are_owned_once() -> None:
    """restype py_object takes over the reference PyBytes_FromStringAndSize
    created: exactly one owner, no leak, no early free."""
    with Cache("refs") as c:
        c.set("k", b"x" * 100)
        v = c.get("k")
        assert sys.getrefcount(v) == 2  # v, and getrefcount's argument
        vs = [c.get("k") for _ in range(1000)]
        assert all(sys.getrefcount(x) == 3 for x in vs)  # + the list
        del vs
        assert v == b"x" * 100


def test_rss_stays_flat_over_200k_gets_of_a_10k_value(name: str) -> None:
    value = bytes(range(256)) * 40  # 10 KiB
    with Cache(name, loader=lambda k: value) as c:
        for _ in range(20_000):  # warm up allocator pools
            c.get("k")
        before = rss_bytes()
        for _ in range(200_000):
            c.get("k")
        grown = rss_bytes() - before
    # A leak of the value would be 2 GB; of anything per call, megabytes.
    assert grown < 4 << 20, grown


def test_rss_stays_flat_on_the_slow_paths(name: str) -> None:
    value = b"y" * 10240
    with Cache(name, max_bytes=0, loader=lambda k: value) as c:  # every get loads
        for _ in range(5_000):
            c.get("k")
        before = rss_bytes()
        for _ in range(20_000):
            c.get("k")
        grown = rss_bytes() - before
    assert grown < 4 << 20, grown
    with Cache(name + "e") as c:  # empty values go through cache_get
        c.set("e", b"")
        for _ in range(5_000):
            c.get("e")
        before = rss_bytes()
        for _ in range(50_000):
            c.get("e")
        grown = rss_bytes() - before
    assert grown < 4 << 20, grown


def test_garbage_collection_frees_the_native_cache(name: str) -> None:
    # A cache whose loader refers back to it: a cycle, which the collector
    # must still free (the registry holds loaders weakly).
    holder: List[Cache] = []
    # (`del holder` below empties the cell the loader reads, after its last call.)
    c = Cache(name, loader=lambda k: holder[0].name.encode())  # noqa: F821
    holder.append(c)
    assert c.get("k") == name.encode()
    slot_id = c._slot.id  # type: ignore[union-attr]
    ref = weakref.ref(c)
    del c, holder
    gc.collect()
    assert ref() is None
    assert slot_id not in _loader._registry


def test_dropped_caches_do_not_leak_native_memory(name: str) -> None:
    value = b"z" * 10240

    def churn(n: int, start: int) -> None:
        for i in range(start, start + n):  # caches of 1 MiB of values each
            c = Cache("%s-%d" % (name, i), loader=lambda k: value)
            for j in range(100):
                c.get("k%d" % j)
            del c  # no close(): the finalizer frees it
        gc.collect()

    churn(100, 0)  # the allocators reach their working size
    before = rss_bytes()
    churn(400, 100)
    grown = rss_bytes() - before
    assert grown < 32 << 20, grown  # 400 MiB if the caches leaked


def run_python(code: str, root: Path) -> subprocess.CompletedProcess[str]:
    env_code = PRELUDE
    return subprocess.run(
        [sys.executable, "-c", env_code + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_interpreter_exit_with_open_caches_and_loads_in_flight(root: Path) -> None:
    r = run_python(
        """
        import threading, time, groupcache
        caches = [groupcache.Cache("c%d" % i, loader=lambda k: (time.sleep(5), b"")[1]) for i in range(3)]
        keep = groupcache.Cache("kept", loader=lambda k: b"v")
        keep.get("x")
        for c in caches:  # daemon threads blocked in loads at exit
            threading.Thread(target=c.get, args=("k",), daemon=True).start()
        time.sleep(0.2)
        print("exiting")
        """,
        root,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "exiting\n"
