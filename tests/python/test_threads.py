"""Threads: single-flight, the GIL released while loads wait, no deadlock."""

from __future__ import annotations

import threading
import time
from typing import Dict, List

import pytest

import groupcache
from groupcache import Cache


def test_32_threads_on_one_missing_key_call_the_loader_once(name: str) -> None:
    calls: List[str] = []
    lock = threading.Lock()

    def load(key: str) -> bytes:
        with lock:
            calls.append(key)
        time.sleep(0.3)  # long enough for every thread to arrive
        return b"value"

    with Cache(name, loader=load) as c:
        barrier = threading.Barrier(32)
        results: Dict[int, bytes] = {}

        def worker(i: int) -> None:
            barrier.wait()
            results[i] = c.get("the-key")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
            assert not t.is_alive()
        assert calls == ["the-key"]
        assert results == dict.fromkeys(range(32), b"value")
        s = c.stats()
        assert s.gets == 32 and s.loads_deduped == 1 and s.local_loads == 1


def test_32_threads_on_one_failing_key_share_the_failure(name: str) -> None:
    calls: List[str] = []

    def load(key: str) -> bytes:
        calls.append(key)
        time.sleep(0.3)
        raise RuntimeError("nope")

    with Cache(name, loader=load) as c:
        barrier = threading.Barrier(32)
        errors: List[BaseException] = []

        def worker() -> None:
            barrier.wait()
            try:
                c.get("k")
            except groupcache.LoaderError as e:
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(errors) == 32
        assert all("nope" in str(e) for e in errors)
        # waiters on other threads get the same exception chained
        assert all(isinstance(e.__cause__, RuntimeError) for e in errors)
        assert len(calls) < 32  # shared (loads that start after a failure may run again)


def test_loads_release_the_gil_no_deadlock(name: str) -> None:
    """Thread A runs the loader of "k", which waits for the main thread.
    Thread B waits in get("k") on A's load. If B kept the GIL while
    waiting, A's loader could never run again: a deadlock."""
    in_loader = threading.Event()
    release = threading.Event()

    def load(key: str) -> bytes:
        if key == "k":
            in_loader.set()
            assert release.wait(10)
        return key.encode()

    with Cache(name, loader=load) as c:
        out: Dict[str, bytes] = {}
        a = threading.Thread(target=lambda: out.__setitem__("a", c.get("k")))
        a.start()
        assert in_loader.wait(10)
        b = threading.Thread(target=lambda: out.__setitem__("b", c.get("k")))
        b.start()
        time.sleep(0.1)  # B is now waiting on A's load
        # Meanwhile this thread runs Python, hits and other loads:
        assert c.get("other") == b"other"
        assert c.get("other") == b"other"
        release.set()
        a.join(10)
        b.join(10)
        assert not a.is_alive() and not b.is_alive()
        assert out == {"a": b"k", "b": b"k"}


def test_loads_of_different_keys_run_concurrently(name: str) -> None:
    def load(key: str) -> bytes:
        time.sleep(0.3)
        return key.encode()

    with Cache(name, loader=load) as c:
        threads = [threading.Thread(target=c.get, args=("k%d" % i,)) for i in range(8)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert time.monotonic() - t0 < 1.5  # 8 x 0.3 s one after another would be 2.4 s


def test_hits_from_many_threads(name: str) -> None:
    with Cache(name, loader=lambda k: k.encode() * 3) as c:
        keys = ["k%d" % i for i in range(100)]
        errors: List[str] = []

        def worker() -> None:
            for _ in range(50):
                for k in keys:
                    if c.get(k) != k.encode() * 3:
                        errors.append(k)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []


def test_close_while_other_threads_get(name: str) -> None:
    """Closing under load never crashes: the others finish or get
    ClosedError."""
    c = Cache(name, loader=lambda k: (time.sleep(0.001), k.encode())[1])
    stop = threading.Event()
    outcomes: List[str] = []

    def worker(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                c.get("k%d" % (i % 50 + n * 1000))
            except groupcache.ClosedError:
                outcomes.append("closed")
                return
            except groupcache.LoaderError as e:  # a load cut by the close
                outcomes.append("loader: %s" % e)
                return
            i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    c.close()
    time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert outcomes == ["closed"] * 6
    with pytest.raises(groupcache.ClosedError):
        c.get("k1")
