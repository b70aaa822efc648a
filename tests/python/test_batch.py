"""get_many through the batch hit path (cache_lookup_many_alloc): hits in
one call, misses loaded one by one, keys the batch cannot carry (a NUL in
a key) on the per-key path."""

from __future__ import annotations

import sys
from typing import List

import pytest

import groupcache
from groupcache import Cache


def test_get_many_batch(name: str) -> None:
    calls: List[str] = []

    def load(key: str) -> object:
        calls.append(key)
        return None if key.startswith("no") else key.encode("utf-8", "surrogateescape") * 2

    with Cache(name, loader=load) as c:
        keys = ["k%d" % i for i in range(100)]
        for k in keys:
            c.get(k)
        calls.clear()
        assert c.get_many(keys) == {k: k.encode() * 2 for k in keys}  # all hits
        assert calls == []
        assert c.get_many(iter(keys[:2])) == {"k0": b"k0k0", "k1": b"k1k1"}
        assert c.get_many([]) == {}
        assert c.get_many([""]) == {"": b""}
        calls.clear()
        mixed = ["k1", "new", "no-such", "k2", "\udcff", "k1"]
        assert c.get_many(mixed) == {"k1": b"k1k1", "new": b"newnew", "k2": b"k2k2", "\udcff": b"\xff\xff"}
        assert sorted(calls) == ["new", "no-such", "\udcff"]
        # keys the batch cannot carry take the per-key path
        assert c.get_many(["a\x00b", "k3"]) == {"a\x00b": b"a\x00ba\x00b", "k3": b"k3k3"}
        with pytest.raises(TypeError):
            c.get_many(["k1", 2])  # type: ignore[list-item]


def test_get_many_batch_refcounts(name: str) -> None:
    with Cache(name) as c:
        c.set("a", b"x" * 50)
        c.set("b", b"y" * 50)
        got = c.get_many(["a", "b"] * 100)
        assert got == {"a": b"x" * 50, "b": b"y" * 50}
        refs = sys.getrefcount(got["a"])
        assert refs == 2  # the dict, getrefcount's argument


def test_get_many_batch_after_close(name: str) -> None:
    c = Cache(name)
    c.set("a", b"1")
    c.close()
    with pytest.raises(groupcache.ClosedError):
        c.get_many(["a"])
