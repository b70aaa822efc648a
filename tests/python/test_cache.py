"""Every Cache method, values of every shape, keys of every shape, errors."""

from __future__ import annotations

import dataclasses
import time
from typing import List, Optional

import pytest

import groupcache
from groupcache import Cache


def counting_loader(calls: List[str], prefix: bytes = b"v:"):
    def load(key: str) -> Optional[bytes]:
        calls.append(key)
        return prefix + key.encode("utf-8", "surrogateescape")

    return load


def test_get_loads_once_then_hits(name: str) -> None:
    calls: List[str] = []
    with Cache(name, loader=counting_loader(calls)) as c:
        assert c.get("a") == b"v:a"
        assert c.get("a") == b"v:a"
        assert c["a"] == b"v:a"
        assert calls == ["a"]
        s = c.stats()
        assert s.gets == 3 and s.cache_hits == 2 and s.local_loads == 1
        assert s.main_items == 1 and s.main_bytes == len("a") + len(b"v:a")


def test_get_many(name: str) -> None:
    calls: List[str] = []

    def load(key: str) -> Optional[bytes]:
        calls.append(key)
        return None if key.startswith("no") else key.encode() * 2

    with Cache(name, loader=load) as c:
        c.get("a")
        got = c.get_many(["a", "b", "no1", "c", "no2"])
        assert got == {"a": b"aa", "b": b"bb", "c": b"cc"}
        assert sorted(calls) == ["a", "b", "c", "no1", "no2"]
        assert c.get_many([]) == {}
        assert c.get_many(iter(["b"])) == {"b": b"bb"}
        # duplicates are fine
        assert c.get_many(["a", "a"]) == {"a": b"aa"}


def test_get_many_raises_loader_errors(name: str) -> None:
    def load(key: str) -> bytes:
        raise RuntimeError("down")

    with Cache(name, loader=load) as c:
        with pytest.raises(groupcache.LoaderError, match="down"):
            c.get_many(["x"])


def test_set_get_remove(name: str) -> None:
    with Cache(name) as c:  # set-only: no loader
        c.set("k", b"v")
        assert c.get("k") == b"v"
        c["k2"] = b"w"
        assert c["k2"] == b"w"
        c.remove("k")
        with pytest.raises(KeyError):
            c.get("k")
        del c["k2"]
        with pytest.raises(groupcache.NotFoundError):
            c["k2"]
        c.remove("never-there")  # not an error


def test_set_overrides_loader_and_remove_reloads(name: str) -> None:
    calls: List[str] = []
    with Cache(name, loader=counting_loader(calls)) as c:
        c.set("k", b"mine")
        assert c.get("k") == b"mine"
        assert calls == []
        c.remove("k")
        assert c.get("k") == b"v:k"
        assert calls == ["k"]


def test_set_accepts_bytes_likes(name: str) -> None:
    with Cache(name) as c:
        c.set("a", bytearray(b"ba"))
        c.set("m", memoryview(b"xmvx")[1:3])
        c.set("arr", memoryview(bytes(range(8))).cast("Q"))
        assert c.get("a") == b"ba"
        assert c.get("m") == b"mv"
        assert c.get("arr") == bytes(range(8))
        with pytest.raises(TypeError):
            c.set("s", "text")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            c.set("i", 5)  # type: ignore[arg-type]


def test_ttl_set(name: str) -> None:
    with Cache(name) as c:
        c.set("short", b"x", ttl=0.05)
        c.set("forever", b"y", ttl=None)
        c.set("zero", b"z", ttl=0)
        c.set("neg", b"n", ttl=-1)
        c.set("inf", b"i", ttl=float("inf"))
        assert c.get("short") == b"x"
        time.sleep(0.3)
        with pytest.raises(KeyError):
            c.get("short")
        assert c.get("forever") == b"y"
        assert c.get("zero") == b"z"
        assert c.get("neg") == b"n"
        assert c.get("inf") == b"i"
        with pytest.raises(ValueError):
            c.set("nan", b"x", ttl=float("nan"))
        with pytest.raises(TypeError):
            c.set("s", b"x", ttl="1")  # type: ignore[arg-type]


def test_binary_values_with_nul_bytes(name: str) -> None:
    blob = bytes(range(256)) * 4 + b"\x00\x00end\x00"

    with Cache(name, loader=lambda k: blob) as c:
        assert c.get("loaded") == blob
        assert c.get("loaded") == blob  # the hit path too
        c.set("set", b"\x00")
        assert c.get("set") == b"\x00"
        assert c.get_many(["set", "loaded"]) == {"set": b"\x00", "loaded": blob}


def test_empty_values(name: str) -> None:
    with Cache(name, loader=lambda k: b"") as c:
        assert c.get("e") == b""
        assert c.get("e") == b""  # a hit of b"" takes the slow path; still right
        assert c.stats().local_loads == 1
        c.set("s", b"")
        assert c.get("s") == b""
        assert c.get_many(["e", "s"]) == {"e": b"", "s": b""}


def test_ten_megabyte_value(name: str) -> None:
    big = bytes(range(256)) * (10 * 4096)  # 10 MiB
    assert len(big) == 10 << 20
    with Cache(name, max_bytes=64 << 20, loader=lambda k: big) as c:
        assert c.get("big") == big
        assert c.get("big") == big
        assert c.stats().local_loads == 1
        c.set("big2", big[::-1])
        assert c.get("big2") == big[::-1]


def test_value_larger_than_the_cache_is_returned_not_kept(name: str) -> None:
    calls: List[str] = []
    with Cache(name, max_bytes=100, loader=lambda k: calls.append(k) or b"x" * 1000) as c:
        assert c.get("k") == b"x" * 1000
        assert c.get("k") == b"x" * 1000
        assert len(calls) == 2


def test_max_bytes_zero_keeps_nothing(name: str) -> None:
    calls: List[str] = []
    with Cache(name, max_bytes=0, loader=counting_loader(calls)) as c:
        assert c.get("a") == b"v:a"
        assert c.get("a") == b"v:a"
        assert calls == ["a", "a"]


def test_keys(name: str) -> None:
    seen: List[str] = []

    def load(key: str) -> bytes:
        seen.append(key)
        return key.encode("utf-8", "surrogateescape")

    with Cache(name, loader=load) as c:
        assert c.get("") == b""
        assert c.get("ключ €") == "ключ €".encode()
        assert c.get("a\x00b") == b"a\x00b"
        assert c.get("a") == b"a"  # not confused with "a\x00b"
        assert c.get("k" * 8192) == b"k" * 8192
        with pytest.raises(groupcache.InvalidArgumentError):
            c.get("k" * 8193)
        with pytest.raises(ValueError):
            c.set("k" * 8193, b"")
        with pytest.raises(TypeError):
            c.get(b"bytes")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            c.get(42)  # type: ignore[arg-type]
        with pytest.raises(UnicodeEncodeError):
            c.get("\ud800")  # a lone surrogate surrogateescape cannot map


def test_non_utf8_keys_reach_the_loader_with_surrogateescape(name: str) -> None:
    seen: List[str] = []

    def load(key: str) -> bytes:
        seen.append(key)
        return b"ok"

    with Cache(name, loader=load) as c:
        # A key that arrives as the bytes b"\xff\xfe" (as from C or a peer)
        # is the str "\udcff\udcfe"; using that str sends the same bytes.
        key = b"\xff\xfe".decode("utf-8", "surrogateescape")
        assert c.get(key) == b"ok"
        assert seen == ["\udcff\udcfe"]
        assert seen[0].encode("utf-8", "surrogateescape") == b"\xff\xfe"
        assert c.get(key) == b"ok"  # the hit path encodes the same way
        assert len(seen) == 1
        c.set(key, b"set")
        assert c.get(key) == b"set"


def test_set_only_cache_misses_are_key_errors(name: str) -> None:
    with Cache(name) as c:
        with pytest.raises(KeyError) as e:
            c.get("missing")
        assert isinstance(e.value, groupcache.NotFoundError)
        assert e.value.status == 1
        assert str(e.value) == "'missing'"
        assert c.get_many(["missing"]) == {}


def test_stats_fields(name: str) -> None:
    with Cache(name, loader=lambda k: b"v") as c:
        c.get("x")
        s = c.stats()
        assert isinstance(s, groupcache.Stats)
        names = [
            "gets", "cache_hits", "peer_loads", "peer_errors", "loads", "loads_deduped",
            "local_loads", "local_load_errs", "server_requests",
            "main_bytes", "main_items", "main_gets", "main_hits", "main_evictions",
            "hot_bytes", "hot_items", "hot_gets", "hot_hits", "hot_evictions",
        ]  # fmt: skip
        for field in names:
            assert isinstance(getattr(s, field), int)
        assert s.loads == 1 and s.loads_deduped == 1
        with pytest.raises(dataclasses.FrozenInstanceError):
            s.gets = 5  # type: ignore[misc]  # frozen


def test_constructor_arguments(name: str) -> None:
    with pytest.raises(ValueError):
        Cache(name, max_bytes=-1)
    with pytest.raises(TypeError):
        Cache(name, max_bytes=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Cache(name, loader="not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Cache(b"bytes")  # type: ignore[arg-type]
    for bad in ["", "a/b", "x" * 256, "tab\there"]:
        with pytest.raises(groupcache.InvalidArgumentError) as e:
            Cache(bad)
        assert e.value.status == 2
        assert str(e.value)  # the library's message
    # A NUL would end the name early in C ("a\0b" registered "a").
    for bad in ["a\0b", "\0", name + "\0"]:
        with pytest.raises(ValueError, match="name contains a NUL") as e:
            Cache(bad)
        assert not isinstance(e.value, groupcache.GroupcacheError)  # refused before the library
    c = Cache(name, max_bytes=123)
    assert (c.name, c.max_bytes, c.loader, c.pool, c.closed) == (name, 123, None, None, False)
    assert repr(c) == "<groupcache.Cache %r max_bytes=123 open>" % name
    c.close()
    assert repr(c) == "<groupcache.Cache %r max_bytes=123 closed>" % name


def test_process_local_caches_may_share_a_name(name: str) -> None:
    with Cache(name, loader=lambda k: b"1") as a, Cache(name, loader=lambda k: b"2") as b:
        assert a.get("k") == b"1"
        assert b.get("k") == b"2"


def test_error_hierarchy() -> None:
    for cls, builtin in [
        (groupcache.NotFoundError, KeyError),
        (groupcache.InvalidArgumentError, ValueError),
        (groupcache.AlreadyExistsError, ValueError),
        (groupcache.TimeoutError, TimeoutError),
        (groupcache.GroupcacheOSError, OSError),
    ]:
        assert issubclass(cls, groupcache.GroupcacheError)
        assert issubclass(cls, builtin)
    for cls in [groupcache.LoaderError, groupcache.PeerError, groupcache.ClosedError, groupcache.InternalError]:
        assert issubclass(cls, groupcache.GroupcacheError)


def test_say_hi_and_version(capfd: pytest.CaptureFixture[str]) -> None:
    groupcache.say_hi()
    out = capfd.readouterr().out
    assert out.count("\n") == 1 and "groupcache" in out
    assert groupcache.__version__ == groupcache.library_version()


def test_get_works_when_another_binding_owns_the_default_allocator() -> None:
    """If something else in the process registered a different process-wide
    allocator first, the package falls back to passing its own per call."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import ctypes, glob, importlib.util, os
        # The library the package will load, found without importing it
        # ($GROUPCACHE_LIB, else the one installed in the package folder).
        path = os.environ.get("GROUPCACHE_LIB")
        if not path:
            pkg = importlib.util.find_spec("groupcache").submodule_search_locations[0]
            path = (glob.glob(os.path.join(pkg, "libgroupcache*.so")) or
                    [os.path.join(pkg, "..", "..", "target", "release", "libgroupcache.so")])[0]
        lib = ctypes.CDLL(path)
        other = ctypes.cast(ctypes.pythonapi.PyByteArray_FromStringAndSize, ctypes.c_void_p)
        lib.cache_set_default_alloc.argtypes = [ctypes.c_void_p]
        assert lib.cache_set_default_alloc(other) == 0
        import groupcache
        from groupcache import _lib
        assert not _lib.DEFAULT_ALLOC_SET
        c = groupcache.Cache("fb", max_bytes=1 << 20, loader=lambda k: k.encode() * 2)
        assert c.get("ab") == b"abab" and c.get("ab") == b"abab"
        assert type(c.get("ab")) is bytes
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
