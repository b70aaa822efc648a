"""memoize, serializers, cache_info: the functools/cachetools vocabulary."""

from __future__ import annotations

import json
import math
import pickle
import threading
import time
from typing import Any, Dict, List

import pytest

import groupcache
from groupcache import Cache, CacheInfo, Pool, memoize, serializers


def test_memoize_a_str_function(name: str) -> None:
    calls: List[str] = []

    @memoize(name, serializer=serializers.JSON, max_bytes=1 << 20)
    def user(user_id: str) -> Dict[str, Any]:
        """Loads a user."""
        calls.append(user_id)
        return {"id": user_id, "tags": ["a", "b"]}

    assert user.__name__ == "user" and user.__doc__ == "Loads a user." and user.__wrapped__ is not None
    assert user.cache_info() == CacheInfo(hits=0, misses=0, maxsize=1 << 20, currsize=0)
    first = user("42")
    assert first == {"id": "42", "tags": ["a", "b"]}
    first["tags"].append("mutated")  # a caller's copy: the cache is not changed
    assert user("42") == {"id": "42", "tags": ["a", "b"]}
    assert calls == ["42"]
    info = user.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (1, 1, 1 << 20)
    assert info.currsize == len("42") + len(json.dumps(first, separators=(",", ":"))) - len(',"mutated"')
    assert user.cache.name == name and user.cache.get("42") == b'{"id":"42","tags":["a","b"]}'
    with pytest.raises(TypeError, match="key="):
        user(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key="):
        user("a", "b")
    user.close()
    with pytest.raises(groupcache.ClosedError):
        user("43")


def test_exceptions_reach_the_caller_and_are_not_cached(name: str) -> None:
    calls = []

    @memoize(name, serializer=serializers.Str)
    def flaky(key: str) -> str:
        calls.append(key)
        if len(calls) == 1:
            raise ValueError("first call fails")
        return "ok " + key

    with pytest.raises(ValueError, match="first call fails") as e:
        flaky("k")
    assert not isinstance(e.value, groupcache.GroupcacheError)
    assert e.value.__context__ is None
    assert flaky("k") == "ok k" and flaky("k") == "ok k"
    assert calls == ["k", "k"]

    @memoize(name + "-bad", serializer=serializers.Str)
    def wrong_type(key: str) -> str:
        return b"bytes" # type: ignore[return-value]

    with pytest.raises(TypeError, match="Str serializer"):
        wrong_type("k")
    wrong_type.close()
    flaky.close()


def test_key_and_key_to_args(name: str) -> None:
    calls: List[int] = []

    @memoize(name, key=str, key_to_args=lambda k: (int(k),), serializer=serializers.JSON, ttl=60)
    def square(n: int) -> int:
        calls.append(n)
        return n * n

    assert [square(3), square(3), square(4)] == [9, 9, 16]
    assert calls == [3, 4]
    # A get without a call (as a peer's request) rebuilds the arguments.
    assert square.cache.get("5") == b"25" and calls == [3, 4, 5]
    assert square(5) == 25 and calls == [3, 4, 5]
    square.cache_remove(3)
    assert square(3) == 9 and calls == [3, 4, 5, 3]
    square.cache_clear()
    assert square.cache_info() == CacheInfo(0, 0, 64 << 20, 0)
    assert square(4) == 16 and calls[-1] == 4
    assert square.cache_info().misses == 1
    square.close()

    @memoize(name + "-nokey", key=lambda a, b: "%s+%s" % (a, b), serializer=serializers.JSON)
    def add(a: int, b: int) -> int:
        return a + b

    assert add(1, 2) == 3 and add(1, 2) == 3
    with pytest.raises(groupcache.LoaderError, match="key_to_args"):
        add.cache.get("5+6")  # no call, no key_to_args: cannot load
    add.close()


def test_memoize_across_two_nodes(name: str) -> None:
    """The key's owner runs the function, asked by a peer that sends only
    the key; each value is computed once in the cluster."""
    runs: Dict[str, List[int]] = {"a": [], "b": []}

    def make(node: str, pool: Pool) -> Any:
        @memoize(name, key=str, key_to_args=lambda k: (int(k),), serializer=serializers.JSON, pool=pool)
        def cube(n: int) -> int:
            runs[node].append(n)
            return n**3

        return cube

    with Pool() as pa, Pool() as pb:
        for p in (pa, pb):
            p.set_peers([pa.url, pb.url])
        ca, cb = make("a", pa), make("b", pb)
        for n in range(30):
            assert ca(n) == n**3 and cb(n) == n**3
        assert sorted(runs["a"] + runs["b"]) == list(range(30))
        assert runs["b"] and runs["a"]
        for n in runs["b"]:
            assert pa.owner(str(n)) == pb.url
        # cache_clear on one node keeps the other's values (it owns them)
        before_a, before_b = list(runs["a"]), list(runs["b"])
        ca.cache_clear()
        for n in range(30):
            assert ca(n) == n**3
        assert runs["b"] == before_b
        assert runs["a"][len(before_a) :] == [n for n in range(30) if pa.owner(str(n)) == pa.url]
        ca.close()
        cb.close()


def test_concurrent_calls_share_one_run(name: str) -> None:
    runs: List[str] = []
    started = threading.Barrier(8)

    @memoize(name, serializer=serializers.Bytes)
    def slow(key: str) -> bytes:
        runs.append(key)
        time.sleep(0.2)
        return key.encode() * 2

    results: List[bytes] = []

    def call() -> None:
        started.wait()
        results.append(slow("k"))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"kk"] * 8 and runs == ["k"]
    info = slow.cache_info()
    assert info.hits + info.misses == 8
    slow.close()


def test_ttl(name: str) -> None:
    runs: List[str] = []

    @memoize(name, serializer=serializers.Str, ttl=0.3)
    def now(key: str) -> str:
        runs.append(key)
        return "v%d" % len(runs)

    assert now("k") == "v1" and now("k") == "v1"
    time.sleep(0.4)
    assert now("k") == "v2"
    now.close()


def test_cache_aside_on_a_given_cache(name: str) -> None:
    runs: List[str] = []
    with Cache(name) as c:

        @memoize(c, serializer=serializers.Str, ttl=60)
        def shout(key: str) -> str:
            runs.append(key)
            return key.upper()

        assert shout("hi") == "HI" and shout("hi") == "HI" and runs == ["hi"]
        assert c.get("hi") == b"HI"
        with pytest.raises(TypeError, match="cache_clear"):
            shout.cache_clear()
        shout.cache_remove("hi")
        assert shout("hi") == "HI" and runs == ["hi", "hi"]
        shout.close()  # not memoize's cache: left open
        assert not c.closed

    with Cache(name + "-loader", loader=lambda k: b"") as c2:
        with pytest.raises(TypeError, match="without a loader"):
            memoize(c2, serializer=serializers.Str)(str.upper)


def test_methods_and_bad_arguments(name: str) -> None:
    class Repo:
        def __init__(self, prefix: str) -> None:
            self.prefix = prefix

        @memoize(name, key=lambda self, k: self.prefix + k, serializer=serializers.Str)
        def get(self, k: str) -> str:
            return self.prefix + k.upper()

    assert Repo("a:").get("x") == "a:X" and Repo("b:").get("x") == "b:X"
    assert Repo.get.cache_info().misses == 2
    Repo("a:").get("x")
    assert Repo("a:").get.cache_info().hits == 1
    Repo.get.close()

    with pytest.raises(TypeError):
        memoize(name + "-x")  # type: ignore[call-arg]  # no serializer: never a default
    with pytest.raises(TypeError, match="encode"):
        memoize(name + "-x", serializer=object())(str)  # type: ignore[arg-type]

    async def coro(k: str) -> str:
        return k

    with pytest.raises(TypeError, match="coroutine"):
        memoize(name + "-x", serializer=serializers.Str)(coro)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        memoize(42, serializer=serializers.Str)(str)  # type: ignore[arg-type]

    @memoize(name + "-k", key=lambda k: 42, serializer=serializers.Str)  # type: ignore[arg-type,return-value]
    def f(k: str) -> str:
        return k

    with pytest.raises(TypeError, match="str"):
        f("x")
    f.close()


def test_serializers() -> None:
    S = serializers
    assert S.Bytes.decode(S.Bytes.encode(bytearray(b"ab"))) == b"ab"
    assert S.Bytes.encode(memoryview(b"xy")) == b"xy"
    with pytest.raises(TypeError):
        S.Bytes.encode("str")  # type: ignore[arg-type]
    assert S.Str.encode("héllo") == "héllo".encode() and S.Str.decode(b"\xc3\xa9") == "é"
    with pytest.raises(TypeError):
        S.Str.encode(b"bytes")  # type: ignore[arg-type]
    latin = S.StrSerializer("latin-1")
    assert latin.decode(latin.encode("é")) == "é" and latin.encode("é") == b"\xe9"
    value = {"a": [1, 2.5, None, True], "é": "ü"}
    assert S.JSON.encode(value) == '{"a":[1,2.5,null,true],"é":"ü"}'.encode()
    assert S.JSON.decode(S.JSON.encode(value)) == value
    with pytest.raises(ValueError):
        S.JSON.encode(math.nan)
    with pytest.raises(TypeError):
        S.JSON.encode({1, 2})
    sets = S.JSONSerializer(default=sorted, sort_keys=True)
    assert sets.encode({"b": {2, 1}, "a": 0}) == b'{"a":0,"b":[1,2]}'
    obj = {"set": {1, 2}, "tuple": (1, "x")}
    assert S.Pickle.decode(S.Pickle.encode(obj)) == obj
    assert pickle.loads(S.Pickle.encode(obj)) == obj
    assert [repr(s) for s in (S.Bytes, S.Str, S.JSON, S.Pickle)] == [
        "groupcache.serializers.Bytes",
        "groupcache.serializers.Str",
        "groupcache.serializers.JSON",
        "groupcache.serializers.Pickle",
    ]


def test_cache_info_of_a_cache(name: str) -> None:
    with Cache(name, max_bytes=1000, loader=lambda k: b"12345") as c:
        assert c.cache_info() == CacheInfo(0, 0, 1000, 0)
        c.get("a")
        c.get("a")
        c["b"]
        hits, misses, maxsize, currsize = c.cache_info()
        assert (hits, misses, maxsize, currsize) == (1, 2, 1000, 2 * (1 + 5))


def test_many_loads_a_batch_in_one_call(name: str) -> None:
    """many= is the cache's loader_many: get_many loads the misses in one
    call; calls of the function itself still run it for their key."""
    batches: List[List[str]] = []
    singles: List[str] = []

    def fetch_many(ids: List[str]) -> Dict[str, Dict[str, Any]]:
        batches.append(sorted(ids))
        return {i: {"id": i} for i in ids if i != "missing"}

    @memoize(name, serializer=serializers.JSON, many=fetch_many, ttl=60)
    def user(user_id: str) -> Dict[str, Any]:
        singles.append(user_id)
        return {"id": user_id, "single": True}

    keys = ["%d" % i for i in range(40)] + ["missing"]
    got = user.get_many(keys)
    assert got == {k: {"id": k} for k in keys if k != "missing"}
    assert batches == [sorted(keys)] and singles == []
    got["0"]["id"] = "mutated"  # each caller decodes its own copy
    assert user.get_many(iter(["0", "1"])) == {"0": {"id": "0"}, "1": {"id": "1"}}
    assert len(batches) == 1  # hits
    assert user("0") == {"id": "0"}  # cached by the batch
    assert user("new") == {"id": "new", "single": True} and singles == ["new"]
    s = user.cache.stats()
    assert (s.batch_loads, s.batch_loaded_keys) == (1, 41)
    # cache_clear rebuilds the cache with many= still in place.
    user.cache_clear()
    assert user.get_many(["0", "1"]) == {"0": {"id": "0"}, "1": {"id": "1"}}
    assert batches[-1] == ["0", "1"] and user.cache.stats().batch_loads == 1
    user.close()


def test_many_errors_and_bad_arguments(name: str) -> None:
    def bad_many(ids: List[str]) -> Any:
        return [1, 2]  # not a mapping

    @memoize(name, serializer=serializers.JSON, many=bad_many)
    def f(k: str) -> int:
        return 1

    with pytest.raises(groupcache.BatchError) as e:
        f.get_many(["a", "b"])
    assert set(e.value.errors) == {"a", "b"} and "mapping" in str(e.value.errors["a"])
    assert f("a") == 1  # the function itself is unaffected
    f.close()
    with Cache(name + "-given") as c:
        with pytest.raises(TypeError, match="many= needs a cache memoize makes"):
            memoize(c, serializer=serializers.JSON, many=bad_many)(lambda k: 1)
    with pytest.raises(TypeError, match="many must be callable"):
        memoize(name, serializer=serializers.JSON, many=42)(lambda k: 1)  # type: ignore[arg-type]

    async def coro(ids: List[str]) -> Dict[str, int]:
        return {}

    with pytest.raises(TypeError, match="coroutine"):
        memoize(name, serializer=serializers.JSON, many=coro)(lambda k: 1)  # type: ignore[arg-type]


def test_get_many_without_many_uses_the_function(name: str) -> None:
    runs: List[str] = []

    @memoize(name, serializer=serializers.Str)
    def upper(k: str) -> str:
        runs.append(k)
        return k.upper()

    assert upper.get_many(["a", "b", "a"]) == {"a": "A", "b": "B"}
    assert sorted(runs) == ["a", "b"]
    upper.close()
