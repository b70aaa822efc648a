"""Batches through the engine: ``loader_many`` in chunks, concurrent
misses without it (a barrier only concurrent loads pass), ``BatchError``
with per-key errors and partial results, single-flight shared with ``get``,
races with ``remove``, ``aget_many`` off the event loop, and a two-node
cluster over loopback where each owner gets one batch. Counts come from the
loaders and ``stats()``; nothing asserts on time."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from typing import Dict, List, Mapping, Union

import pytest

import groupcache
from groupcache import BatchError, Cache, LoaderError, Pool


def _many(calls: List[List[str]]) -> "groupcache.LoaderMany":
    """A batch loader: "no*" keys are left out, "bad*" mapped to an
    exception, "ttl*" get a ttl; a call with "down" raises."""

    def many(keys: List[str]) -> Mapping[str, Union[bytes, tuple, BaseException]]:
        calls.append(list(keys))
        if "down" in keys:
            raise RuntimeError("the database is down")
        out: Dict[str, Union[bytes, tuple, BaseException]] = {}
        for k in keys:
            if k.startswith("no"):
                continue
            if k.startswith("bad"):
                out[k] = ValueError("bad row " + k)
            elif k.startswith("ttl"):
                out[k] = (b"t:" + k.encode(), 60.0)
            else:
                out[k] = b"v:" + k.encode("utf-8", "surrogateescape")
        return out

    return many


def test_misses_load_in_chunks_then_hit(name: str) -> None:
    calls: List[List[str]] = []
    with Cache(name, loader_many=_many(calls), batch_chunk_keys=256) as c:
        keys = ["k%d" % i for i in range(600)]
        assert c.get_many(keys) == {k: b"v:" + k.encode() for k in keys}
        assert sorted(len(x) for x in calls) == [88, 256, 256]
        s = c.stats()
        assert (s.batch_loads, s.batch_loaded_keys, s.local_loads) == (3, 600, 600)
        assert c.get_many(keys) == {k: b"v:" + k.encode() for k in keys}
        assert len(calls) == 3
        assert c.stats().cache_hits == 600
        assert c.loader_many is not None and c.loader is None


def test_found_missing_failed_and_ttl_keys_in_one_batch(name: str) -> None:
    calls: List[List[str]] = []
    with Cache(name, loader_many=_many(calls)) as c:
        c.set("cached", b"c")
        with pytest.raises(BatchError) as e:
            c.get_many(["a", "no-such", "bad1", "cached", "ttl1", "a", "\udcff"])
        assert e.value.results == {"a": b"v:a", "cached": b"c", "ttl1": b"t:ttl1", "\udcff": b"v:\xff"}
        assert list(e.value.errors) == ["bad1"]
        err = e.value.errors["bad1"]
        assert isinstance(err, LoaderError) and "bad row bad1" in str(err)
        assert isinstance(err.__cause__, ValueError)
        assert isinstance(e.value, LoaderError) and "bad1" in str(e.value)
        assert calls == [["a", "no-such", "bad1", "ttl1", "\udcff"]]
        # Failures and not-found are not cached; the rest is.
        assert c.get_many(["no-such", "a"]) == {"a": b"v:a"}
        assert calls[1] == ["no-such"]


def test_a_raising_loader_fails_its_own_call(name: str) -> None:
    calls: List[List[str]] = []
    with Cache(name, loader_many=_many(calls), batch_chunk_keys=2) as c:
        with pytest.raises(BatchError) as e:
            c.get_many(["x", "down", "y", "z"])
        assert sorted(e.value.errors) == ["down", "x"]
        assert all("the database is down" in str(err) for err in e.value.errors.values())
        assert isinstance(e.value.errors["x"].__cause__, RuntimeError)
        assert e.value.results == {"y": b"v:y", "z": b"v:z"}


@pytest.mark.parametrize("bad", [None, 42, [b"x"]])
def test_a_loader_returning_no_mapping(name: str, bad: object) -> None:
    with Cache(name, loader_many=lambda keys: bad) as c:  # type: ignore[arg-type, return-value]
        if bad is None:
            assert c.get_many(["a", "b"]) == {}  # None: none of them exists
        else:
            with pytest.raises(BatchError) as e:
                c.get_many(["a", "b"])
            assert "mapping" in str(e.value.errors["a"])


def test_get_uses_loader_or_loader_many_with_one_key(name: str) -> None:
    calls: List[List[str]] = []
    with Cache(name, loader_many=_many(calls)) as c:
        assert c.get("one") == b"v:one"
        assert calls == [["one"]]
        with pytest.raises(KeyError):
            c.get("nope")
        with pytest.raises(LoaderError, match="bad row"):
            c.get("bad")
    singles: List[str] = []

    def single(key: str) -> bytes:
        singles.append(key)
        return b"s:" + key.encode()

    calls.clear()
    with Cache(name + "b", loader=single, loader_many=_many(calls)) as c:
        assert c.get("a") == b"s:a"
        assert c.get_many(["a", "b", "c"]) == {"a": b"s:a", "b": b"v:b", "c": b"v:c"}
        assert singles == ["a"] and calls == [["b", "c"]]


def test_without_loader_many_misses_load_concurrently(name: str) -> None:
    barrier = threading.Barrier(4, timeout=30)

    def load(key: str) -> bytes:
        barrier.wait()  # only four loads running at once pass
        return key.encode()

    with Cache(name, loader=load, miss_concurrency=4) as c:
        keys = ["c%d" % i for i in range(4)]
        assert c.get_many(keys) == {k: k.encode() for k in keys}
        assert c.stats().local_loads == 4


def test_options_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="batch_chunk_keys"):
        Cache(name, batch_chunk_keys=0)
    with pytest.raises(ValueError, match="miss_concurrency"):
        Cache(name, miss_concurrency=1025)
    with pytest.raises(TypeError):
        Cache(name, batch_chunk_keys="8")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Cache(name, loader_many=42)  # type: ignore[arg-type]

    async def coro(keys: List[str]) -> Dict[str, bytes]:
        return {}

    with pytest.raises(TypeError, match="coroutine"):
        Cache(name, loader_many=coro)  # type: ignore[arg-type]
    Cache(name, batch_chunk_keys=65536, miss_concurrency=1024).close()


def test_environment_sets_the_chunk(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUPCACHE_BATCH_CHUNK_KEYS", "3")
    calls: List[List[str]] = []
    with Cache(name, loader_many=_many(calls)) as c:
        c.get_many(["e%d" % i for i in range(7)])
        assert c.stats().batch_loads == 3
    monkeypatch.setenv("GROUPCACHE_MISS_CONCURRENCY", "0")
    with pytest.raises(ValueError, match="GROUPCACHE_MISS_CONCURRENCY"):
        Cache(name, loader_many=_many(calls))


class _Gate:
    """A loader_many that reports each call and blocks until released."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self.calls: List[List[str]] = []

    def __call__(self, keys: List[str]) -> Dict[str, bytes]:
        self.calls.append(list(keys))
        self.started.release()
        assert self.release.wait(30)
        return {k: b"v:" + k.encode() for k in keys}


def _until_loads(c: Cache, n: int) -> None:
    """Until ``n`` loads were counted, then a little longer for the last
    one to reach its flight."""
    deadline = time.monotonic() + 30
    while c.stats().loads < n and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.05)


def test_a_get_of_a_key_being_batch_loaded_shares_the_batch(name: str) -> None:
    gate = _Gate()
    singles: List[str] = []

    def single(key: str) -> bytes:
        singles.append(key)
        return b"single"

    # max_bytes 0 keeps nothing: a get that did not join the batch's load
    # would have to run the loader itself.
    with Cache(name, max_bytes=0, loader=single, loader_many=gate) as c:
        got: Dict[str, object] = {}
        batch = threading.Thread(target=lambda: got.update(batch=c.get_many(["a", "b"])))
        batch.start()
        assert gate.started.acquire(timeout=30)
        one = threading.Thread(target=lambda: got.update(one=c.get("b")))
        one.start()
        _until_loads(c, 3)
        gate.release.set()
        batch.join(30)
        one.join(30)
        assert got == {"batch": {"a": b"v:a", "b": b"v:b"}, "one": b"v:b"}
        assert singles == []


def test_a_remove_during_a_batch_keeps_the_value_out(name: str) -> None:
    gate = _Gate()
    with Cache(name, loader_many=gate) as c:
        got: List[Dict[str, bytes]] = []
        t = threading.Thread(target=lambda: got.append(c.get_many(["a", "b"])))
        t.start()
        assert gate.started.acquire(timeout=30)
        c.remove("a")
        gate.release.set()
        t.join(30)
        assert got == [{"a": b"v:a", "b": b"v:b"}]
        assert "a" not in c and "b" in c


def test_aget_many_does_not_block_the_event_loop(name: str) -> None:
    gate = _Gate()

    async def main(c: Cache) -> Dict[str, bytes]:
        task = asyncio.ensure_future(c.aget_many(["a", "b"]))
        # The loop keeps running while the batch loader is blocked.
        while not gate.calls:
            await asyncio.sleep(0.001)
        ticks = 0
        for _ in range(5):
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 5 and not task.done()
        gate.release.set()
        return await task

    with Cache(name, loader_many=gate) as c:
        c.set("hit", b"h")
        assert asyncio.run(main(c)) == {"a": b"v:a", "b": b"v:b"}
        assert asyncio.run(c.aget_many(["hit", "a"])) == {"hit": b"h", "a": b"v:a"}
        assert len(gate.calls) == 1


def test_a_two_node_cluster_sends_each_owner_one_batch(name: str) -> None:
    loaded: Dict[str, List[str]] = {"a": [], "b": []}

    def many_at(node: str) -> "groupcache.LoaderMany":
        def many(keys: List[str]) -> Dict[str, bytes]:
            loaded[node].extend(keys)
            return {k: ("value of " + k).encode() for k in keys if not k.startswith("no")}

        return many

    with Pool("127.0.0.1:0") as pa, Pool("127.0.0.1:0") as pb:
        peers = [pa.url, pb.url]
        pa.set_peers(peers)
        pb.set_peers(peers)
        with Cache(name, loader_many=many_at("a"), pool=pa) as ca, Cache(
            name, loader_many=many_at("b"), pool=pb
        ) as cb:
            keys = ["key-%d" % i for i in range(60)]
            owned_by_b = [k for k in keys if pa.owner(k) == pb.url]
            assert owned_by_b and len(owned_by_b) < len(keys)
            missing_at_b = next(k for k in ("no-%d" % i for i in range(100)) if pa.owner(k) == pb.url)
            got = ca.get_many(keys + [missing_at_b])
            assert got == {k: ("value of " + k).encode() for k in keys}
            # Every key loaded once across the cluster, by its owner; A's own
            # keys in one call of its batch loader.
            assert sorted(loaded["b"]) == sorted(owned_by_b + [missing_at_b])
            assert sorted(loaded["a"]) == sorted(set(keys) - set(owned_by_b))
            sa = ca.stats()
            assert sa.batch_loads == 1
            assert sa.peer_batch_requests == 1  # one batch for all of B's keys
            assert sa.peer_loads == len(owned_by_b) + 1  # the not-found is final
            assert cb.stats().server_requests == len(owned_by_b) + 1
            # Warm, from B: its own keys are hits; A's come in one batch.
            assert cb.get_many(keys) == got
            assert cb.stats().peer_batch_requests == 1
            assert sorted(loaded["a"]) == sorted(set(keys) - set(owned_by_b))
            text = urllib.request.urlopen(pa.url + "/metrics", timeout=10).read().decode()
            assert 'groupcache_peer_batch_requests_total{group="%s"} 1' % name in text
            assert 'groupcache_batch_loads_total{group="%s"} 1' % name in text


def test_stats_have_the_batch_counters(name: str) -> None:
    with Cache(name) as c:
        s = c.stats()
        assert (s.batch_loads, s.batch_loaded_keys, s.peer_batch_requests, s.server_batch_requests) == (0, 0, 0, 0)
