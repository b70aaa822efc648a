"""aget: never blocks the event loop; loads of different keys overlap; one
key, one load."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Awaitable, Callable, List, Tuple, TypeVar

import pytest

import groupcache
from groupcache import Cache

T = TypeVar("T")


async def with_ticker(work: Callable[[], Awaitable[T]], period: float = 0.01) -> Tuple[T, float, int]:
    """Runs ``work`` beside a ticker; returns its result, the longest gap
    between ticks (how long the loop was blocked, at worst) and the ticks."""
    gaps: List[float] = []
    stop = False

    async def ticker() -> None:
        last = time.monotonic()
        while not stop:
            await asyncio.sleep(period)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(period * 2)
    try:
        result = await work()
    finally:
        stop = True
        await task
    return result, max(gaps), len(gaps)


def test_aget_keeps_the_loop_responsive_and_loads_concurrently(name: str) -> None:
    calls: List[str] = []
    lock = threading.Lock()

    def slow_load(key: str) -> bytes:
        with lock:
            calls.append(key)
        time.sleep(0.5)  # a blocking loader: it must not block the loop
        return key.encode()

    async def main() -> None:
        with Cache(name, loader=slow_load) as c:
            keys = ["k%d" % i for i in range(20)]

            async def work() -> List[bytes]:
                return list(await asyncio.gather(*(c.aget(k) for k in keys)))

            t0 = time.monotonic()
            values, worst_gap, ticks = await with_ticker(work)
            elapsed = time.monotonic() - t0
            assert values == [k.encode() for k in keys]
            assert sorted(calls) == sorted(keys)
            # 20 loads of 0.5 s one after another would be 10 s.
            assert elapsed < 3.0
            assert worst_gap < 0.25, worst_gap
            assert ticks >= 20
            # hits answer without a thread
            t1 = time.monotonic()
            for k in keys:
                assert await c.aget(k) == k.encode()
            assert time.monotonic() - t1 < 0.5

    asyncio.run(main())


def test_agets_on_one_key_share_one_load(name: str) -> None:
    calls: List[str] = []

    def load(key: str) -> bytes:
        calls.append(key)
        time.sleep(0.3)
        return b"shared"

    async def main() -> None:
        with Cache(name, loader=load) as c:

            async def work() -> List[bytes]:
                return list(await asyncio.gather(*(c.aget("one") for _ in range(100))))

            values, worst_gap, _ = await with_ticker(work)
            assert values == [b"shared"] * 100
            assert calls == ["one"]
            assert worst_gap < 0.25
            assert c._inflight == {}  # nothing left behind

    asyncio.run(main())


def test_aget_errors(name: str) -> None:
    def load(key: str) -> Any:
        if key == "none":
            return None
        if key == "boom":
            raise ValueError("boom")
        return b"ok"

    async def main() -> None:
        c = Cache(name, loader=load)
        with pytest.raises(KeyError):
            await c.aget("none")
        with pytest.raises(groupcache.LoaderError) as e:
            await c.aget("boom")
        assert isinstance(e.value.__cause__, ValueError)
        results = await asyncio.gather(*(c.aget("boom") for _ in range(10)), return_exceptions=True)
        assert all(isinstance(r, groupcache.LoaderError) for r in results)
        assert await c.aget("x") == b"ok"
        assert await c.aget_many(["x", "none", "y"]) == {"x": b"ok", "y": b"ok"}
        with pytest.raises(groupcache.LoaderError):
            await c.aget_many(["x", "boom"])
        with pytest.raises(TypeError):
            await c.aget(1)  # type: ignore[arg-type]
        c.close()
        with pytest.raises(groupcache.ClosedError):
            await c.aget("x")  # was cached: still closed
        with pytest.raises(groupcache.ClosedError):
            await c.aget("never")

    asyncio.run(main())


def test_cancelling_one_aget_does_not_cancel_the_others(name: str) -> None:
    release = threading.Event()

    def load(key: str) -> bytes:
        release.wait(10)
        return b"v"

    async def main() -> None:
        with Cache(name, loader=load) as c:
            first = asyncio.create_task(c.aget("k"))
            second = asyncio.create_task(c.aget("k"))
            await asyncio.sleep(0.05)
            first.cancel()
            await asyncio.sleep(0.05)
            release.set()
            assert await second == b"v"
            with pytest.raises(asyncio.CancelledError):
                await first

    asyncio.run(main())


def test_aget_from_two_event_loops(name: str) -> None:
    def load(key: str) -> bytes:
        time.sleep(0.1)
        return key.encode()

    with Cache(name, loader=load) as c:
        out: List[bytes] = []

        def run() -> None:
            out.append(asyncio.run(c.aget("same")))

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert out == [b"same"] * 4
        assert c.stats().local_loads == 1  # the library shares across loops
