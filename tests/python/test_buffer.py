"""Cache.get_buffer: a read-only memoryview over the library's own copy of
a value (issue 10, zero-copy reads): alive and unchanged while a view or a
slice of it lives, freed when the last one goes."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import random
import socket
from typing import Any, List

import numpy
import pytest

import groupcache
from groupcache import cache as cache_mod


@pytest.fixture
def frees(monkeypatch: pytest.MonkeyPatch) -> List[int]:
    """The cache_value handles the views' owners free, in order (the hook
    is the module global their finalizer calls)."""
    freed: List[int] = []
    real = cache_mod._value_free

    def counting(value: int) -> None:
        freed.append(value)
        real(value)

    monkeypatch.setattr(cache_mod, "_value_free", counting)
    return freed


def test_a_view_is_the_value_read_only_and_sliceable(name: str) -> None:
    c = groupcache.Cache(name)
    c.set("k", b"hello, world")
    v = c.get_buffer("k")
    assert isinstance(v, memoryview)
    assert v.readonly and v.format == "B" and v.nbytes == 12 and v.contiguous
    assert v == b"hello, world" and bytes(v) == b"hello, world" and v[0] == ord("h")
    assert v[7:].tobytes() == b"world" and v[::2].tobytes() == b"hlo ol"
    with pytest.raises(TypeError):
        v[0] = 0
    with pytest.raises(TypeError):
        v[7:][0] = 0
    with pytest.raises(TypeError):
        memoryview(v).cast("B")[0] = 0
    with pytest.raises(ValueError):
        numpy.frombuffer(v, dtype=numpy.uint8).setflags(write=True)
    assert c.get("k") == b"hello, world"


def test_views_of_one_value_share_the_cache_copy_and_each_is_its_own(name: str) -> None:
    c = groupcache.Cache(name)
    c.set("k", b"x" * 1000)
    a, b = c.get_buffer("k"), c.get_buffer("k")
    assert a is not b
    addr = numpy.frombuffer(a, numpy.uint8).ctypes.data
    assert numpy.frombuffer(b, numpy.uint8).ctypes.data == addr, "no copy: the same bytes"
    a.release()
    assert b == b"x" * 1000


def test_the_value_outlives_remove_set_eviction_and_close(name: str) -> None:
    c = groupcache.Cache(name, max_bytes=10_000)
    c.set("removed", b"r" * 100)
    c.set("replaced", b"old")
    c.set("evicted", b"e" * 1000)
    removed = c.get_buffer("removed")[10:20]  # a slice alone keeps it
    replaced = c.get_buffer("replaced")
    evicted = c.get_buffer("evicted")
    gc.collect()
    c.remove("removed")
    c.set("replaced", b"new")
    assert c.get("replaced") == b"new"
    for i in range(5000):  # until eviction reaches it (CLOCK, per shard)
        c.set("filler%d" % i, b"f" * 1000)
        if "evicted" not in c:
            break
    assert "evicted" not in c and c.stats().main_evictions > 0
    for i in range(50):  # the freed neighbours' memory is reused meanwhile
        c.set("more%d" % i, bytes([i]) * 1000)
    assert removed == b"r" * 10 and replaced == b"old" and evicted == b"e" * 1000
    c.close()
    for i in range(20):
        other = groupcache.Cache("%s-%d" % (name, i))
        other.set("k", b"z" * 1000)
        other.close()
    assert removed == b"r" * 10 and replaced == b"old" and evicted == b"e" * 1000


def test_the_value_is_freed_when_the_last_view_goes(name: str, frees: List[int]) -> None:
    c = groupcache.Cache(name)
    c.set("k", b"v" * 100)
    v = c.get_buffer("k")
    s = v[1:3]
    del v
    assert frees == [], "a slice keeps the value"
    del s
    assert len(frees) == 1
    w = c.get_buffer("k")
    w.release()
    assert len(frees) == 2, "release() frees it at once"
    with pytest.raises(ValueError):
        w[0]
    with c.get_buffer("k") as u:
        assert u[0] == ord("v")
    assert len(frees) == 3
    views = [c.get_buffer("k") for _ in range(100)]
    random.Random(1).shuffle(views)
    while views:
        views.pop()
    assert len(frees) == 103 and len(set(frees)) == 103


def test_empty_values_missing_keys_defaults_loads_and_errors(name: str, frees: List[int]) -> None:
    calls: List[str] = []

    def loader(key: str) -> Any:
        calls.append(key)
        if key == "missing":
            return None
        if key == "broken":
            raise RuntimeError("disk on fire")
        return b"" if key == "empty" else b"loaded:" + key.encode()

    c = groupcache.Cache(name, loader=loader)
    assert c.get_buffer("a") == b"loaded:a"
    assert c.get_buffer("a") == b"loaded:a" and calls == ["a"], "the second is a hit"
    assert c.get_buffer("empty") == b"" and c.get_buffer("empty").readonly
    with pytest.raises(KeyError):
        c.get_buffer("missing")
    assert c.get_buffer("missing", None) is None
    with pytest.raises(groupcache.LoaderError) as e:
        c.get_buffer("broken", None)
    assert isinstance(e.value.__cause__, RuntimeError)
    with pytest.raises(groupcache.InvalidArgumentError):
        c.get_buffer("k" * 9000)
    with pytest.raises(TypeError):
        c.get_buffer(b"bytes")  # type: ignore[arg-type]
    gc.collect()
    n = len(frees)
    c.close()
    with pytest.raises(groupcache.ClosedError):
        c.get_buffer("a")
    assert len(frees) == n


def test_a_set_only_cache_and_keys_loaded_by_get(name: str) -> None:
    c = groupcache.Cache(name)
    with pytest.raises(KeyError):
        c.get_buffer("nothing")
    c["k\udcff"] = b"surrogate key"
    assert c.get_buffer("k\udcff") == b"surrogate key"


def test_buffers_go_where_buffers_go(name: str) -> None:
    c = groupcache.Cache(name)
    data = os.urandom(300_000)
    c.set("k", data)
    v = c.get_buffer("k")
    assert hashlib.sha256(v).digest() == hashlib.sha256(data).digest()
    assert bytes(v) == data and bytearray(v[:5]) == data[:5]
    arr = numpy.frombuffer(v, dtype=numpy.uint8)
    assert not arr.flags.writeable and arr[100] == data[100] and len(arr) == len(data)
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(True)
        b.settimeout(10)
        got = bytearray()
        sent = 0
        while sent < len(v):
            sent += a.send(v[sent : sent + 65536])
            while len(got) < sent:
                got += b.recv(1 << 20)
        assert bytes(got) == data

    async def through_a_transport() -> bytes:
        x, y = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=x)
        r2, w2 = await asyncio.open_connection(sock=y)
        writer.write(c.get_buffer("k"))  # no other reference to the view
        await writer.drain()
        writer.close()
        out = await r2.readexactly(len(data))
        w2.close()
        return out

    assert asyncio.run(through_a_transport()) == data


def test_aget_buffer_hits_and_loads_off_the_loop(name: str) -> None:
    c = groupcache.Cache(name, loader=lambda k: None if k == "none" else k.encode() * 2)

    async def main() -> None:
        assert await c.aget_buffer("ab") == b"abab"  # a load
        v = await c.aget_buffer("ab")  # a hit
        assert v.readonly and v == b"abab"
        with pytest.raises(KeyError):
            await c.aget_buffer("none")

    asyncio.run(main())


def test_a_forked_child_reads_a_view_it_inherited(name: str) -> None:
    c = groupcache.Cache(name)
    c.set("k", b"parent's value" * 1000)
    v = c.get_buffer("k")[5:]
    c.remove("k")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its status
        ok = v == (b"parent's value" * 1000)[5:]
        del v
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert v == (b"parent's value" * 1000)[5:]


def test_views_dropped_in_random_order_leak_nothing(name: str) -> None:
    """10^5 views of 64 KiB values, each value removed from the cache while
    viewed (so the view holds its only reference), dropped in random order:
    RSS comes back flat. (bench/python/buffer_leak.py runs 10^6.)"""
    c = groupcache.Cache(name, max_bytes=64 << 20)
    value = b"v" * (64 << 10)
    rng = random.Random(7)
    held: List[memoryview] = []

    def rounds(n: int) -> None:
        for i in range(n):
            key = "k%d" % (i % 512)
            c.set(key, value)
            held.append(c.get_buffer(key))
            c.remove(key)
            if len(held) > 256:
                held.pop(rng.randrange(len(held)))
        while held:
            held.pop(rng.randrange(len(held)))

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    rounds(20_000)  # warm up: allocator arenas, handle tables
    gc.collect()
    before = rss()
    rounds(100_000)
    gc.collect()
    grown = rss() - before
    # 100,000 leaked values would be 6.4 GB; one would be 64 KiB.
    assert grown < 16 << 20, "RSS grew by %d bytes" % grown
