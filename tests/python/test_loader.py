"""What a loader may return, and what happens when it fails."""

from __future__ import annotations

import time
from typing import Any, List

import pytest

import groupcache
from groupcache import Cache


def test_loader_that_raises(name: str) -> None:
    calls: List[str] = []

    def load(key: str) -> bytes:
        calls.append(key)
        raise ValueError("database is down for %s" % key)

    with Cache(name, loader=load) as c:
        with pytest.raises(groupcache.LoaderError) as e:
            c.get("k")
        assert "database is down for k" in str(e.value)
        assert "ValueError" in str(e.value)
        assert isinstance(e.value.__cause__, ValueError)
        assert str(e.value.__cause__) == "database is down for k"
        assert e.value.status == 3
        # nothing cached: the next get calls the loader again
        with pytest.raises(groupcache.LoaderError):
            c.get("k")
        assert calls == ["k", "k"]
        s = c.stats()
        assert s.local_load_errs == 2 and s.main_items == 0


def test_loader_error_then_success_is_cached(name: str) -> None:
    fail = [True]

    def load(key: str) -> bytes:
        if fail[0]:
            raise OSError("flaky")
        return b"ok"

    with Cache(name, loader=load) as c:
        with pytest.raises(groupcache.LoaderError):
            c.get("k")
        fail[0] = False
        assert c.get("k") == b"ok"
        fail[0] = True
        assert c.get("k") == b"ok"


@pytest.mark.parametrize(
    "result, words",
    [
        ("text", "str"),
        (42, "int"),
        ([b"x"], "list"),
        ((b"x",), "tuple of 1"),
        ((b"x", 1.0, 2), "tuple of 3"),
        ((b"x", "soon"), "ttl"),
        (("x", 1.0), "str"),
        ((None, 1.0), "NoneType"),
        ((b"x", float("nan")), "NaN"),
    ],
)
def test_loader_returning_the_wrong_type(name: str, result: Any, words: str) -> None:
    calls: List[str] = []

    def load(key: str) -> Any:
        calls.append(key)
        return result

    with Cache(name, loader=load) as c:
        with pytest.raises(groupcache.LoaderError) as e:
            c.get("k")
        assert words in str(e.value)
        assert isinstance(e.value.__cause__, (TypeError, ValueError))
        with pytest.raises(groupcache.LoaderError):
            c.get("k")
        assert calls == ["k", "k"]  # not cached


def test_loader_returning_none(name: str) -> None:
    calls: List[str] = []

    def load(key: str) -> None:
        calls.append(key)
        return None

    with Cache(name, loader=load) as c:
        with pytest.raises(KeyError):
            c.get("k")
        with pytest.raises(groupcache.NotFoundError):
            c["k"]
        assert calls == ["k", "k"]  # "not found" is not cached
        assert c.get_many(["k"]) == {}


def test_loader_returning_bytes_likes_and_ttls(name: str) -> None:
    results = {
        "bytearray": bytearray(b"ba"),
        "memoryview": memoryview(b"_mv_")[1:3],
        "tuple": (b"t", None),
        "tuple-int": (bytearray(b"ti"), 60),
        "short": (b"s", 0.05),
    }
    calls: List[str] = []

    def load(key: str) -> Any:
        calls.append(key)
        return results[key]

    with Cache(name, loader=load) as c:
        assert c.get("bytearray") == b"ba"
        assert c.get("memoryview") == b"mv"
        assert c.get("tuple") == b"t"
        assert c.get("tuple-int") == b"ti"
        assert c.get("short") == b"s"
        assert c.get("short") == b"s"
        assert calls.count("short") == 1
        time.sleep(0.3)
        assert c.get("short") == b"s"
        assert calls.count("short") == 2  # expired, loaded again
        assert c.get("tuple-int") == b"ti"
        assert calls.count("tuple-int") == 1
        for v in (c.get("bytearray"), c.get("memoryview")):
            assert type(v) is bytes


def test_keyboard_interrupt_in_the_loader_reaches_the_caller(name: str) -> None:
    def load(key: str) -> bytes:
        raise KeyboardInterrupt

    with Cache(name, loader=load) as c:
        with pytest.raises(KeyboardInterrupt):
            c.get("k")


def test_loader_may_use_the_cache(name: str) -> None:
    holder: List[Cache] = []

    def load(key: str) -> bytes:
        if key.startswith("sum:"):
            a, b = key[4:].split("+")
            return holder[0].get(a) + b"+" + holder[0].get(b)
        if key == "self":
            return holder[0].get("self")  # waits on its own load: refused
        return key.encode()

    with Cache(name, loader=load) as c:
        holder.append(c)
        assert c.get("sum:x+y") == b"x+y"
        assert c.get("x") == b"x"
        with pytest.raises(groupcache.LoaderError) as e:
            c.get("self")
        assert isinstance(e.value.__cause__, groupcache.InvalidArgumentError)


def test_loader_error_messages_are_not_mixed_up_between_keys(name: str) -> None:
    def load(key: str) -> bytes:
        raise LookupError("no " + key)

    with Cache(name, loader=load) as c:
        for key in ("a", "b", "a"):
            with pytest.raises(groupcache.LoaderError) as e:
                c.get(key)
            assert str(e.value.__cause__) == "no %s" % key


def test_many_caches_many_loaders(name: str) -> None:
    caches = [Cache("%s-%d" % (name, i), loader=lambda k, i=i: b"%d" % i) for i in range(50)]
    try:
        for i, c in enumerate(caches):
            assert c.get("k") == b"%d" % i
    finally:
        for c in caches:
            c.close()
