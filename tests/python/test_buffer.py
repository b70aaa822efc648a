"""Cache.get_buffer: a read-only memoryview over the library's own copy of
a value (issue 10, zero-copy reads): alive and unchanged while a view or a
slice of it lives, freed when the last one goes."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import hashlib
import os
import random
import socket
import subprocess
import sys
import sysconfig
import threading
import types
from typing import Any, Callable, Iterator, List

import numpy
import pytest
from conftest import rss_bytes

import groupcache
from groupcache import _lib
from groupcache import cache as cache_mod


@pytest.fixture(autouse=True, params=["library", "ctypes"])
def views(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test twice: with the views the library builds (cache_lookup_view,
    where the package could initialize it, which the first test checks) and
    with the ctypes fallback (PyPy, free-threaded builds, a failed init)."""
    cache_mod._use_library_views(request.param == "library")
    try:
        yield request.param
    finally:
        cache_mod._use_library_views(True)


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many values the package's views hold now: those of the library
    (cache_py_live_views) plus the ctypes owners alive (counted through
    the module global that places them and their finalizer)."""
    made: List[int] = []
    gone: List[int] = []
    real_at, real_free = cache_mod._held_at, cache_mod._held_free

    def at(addr: int, n: int) -> Any:
        made.append(addr)
        return real_at(addr, n)

    def finalize(value: int) -> None:
        gone.append(1)
        real_free(value)

    monkeypatch.setattr(cache_mod, "_held_at", at)
    monkeypatch.setattr(cache_mod, "_held_free", finalize)
    gc.collect()  # views in earlier tests' garbage would go mid-test
    return lambda: _lib.cache_py_live_views() + len(made) - len(gone)


def test_the_library_builds_the_views_on_this_interpreter(name: str, views: str) -> None:
    # Every interpreter the package is tested on is a CPython 3.9+ with a
    # GIL: the fallback must not hide a broken init there.
    assert cache_mod._library_views_off is None
    c = groupcache.Cache(name)
    c.set("k", b"value")
    v = c.get_buffer("k")
    assert cache_mod._library_views() == (views == "library")
    holder = v.obj
    if views == "library":
        assert type(holder).__name__ == "_ValueHolder" and type(holder).__module__ == "groupcache"
        assert memoryview(holder).readonly and bytes(memoryview(holder)) == b"value"
        with pytest.raises((TypeError, BufferError)):
            ctypes.c_char.from_buffer(holder)  # asks for a writable buffer
        if sys.version_info >= (3, 10):
            with pytest.raises(TypeError):
                type(holder)()
        else:  # 3.9 cannot forbid it: an instance nobody filled is empty
            assert bytes(memoryview(type(holder)())) == b""
    with pytest.raises((TypeError, BufferError)):
        ctypes.c_char.from_buffer(v)


def test_why_the_library_views_would_be_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_GROUPCACHE_CTYPES_VIEWS", "1")
    assert "_GROUPCACHE_CTYPES_VIEWS" in str(cache_mod._init_library_views())
    monkeypatch.delenv("_GROUPCACHE_CTYPES_VIEWS")
    real = sysconfig.get_config_var
    monkeypatch.setattr(
        sysconfig, "get_config_var", lambda n: 1 if n == "Py_GIL_DISABLED" else real(n)
    )
    assert "free-threaded" in str(cache_mod._init_library_views())
    monkeypatch.undo()
    monkeypatch.setattr(sys, "implementation", types.SimpleNamespace(name="pypy"))
    assert "not CPython" in str(cache_mod._init_library_views())
    monkeypatch.undo()
    monkeypatch.setattr(_lib, "cache_py_init", lambda api, fn: 2)
    monkeypatch.setattr(_lib, "_last_error", lambda: "refused")
    assert cache_mod._init_library_views() == "cache_py_init: refused"
    monkeypatch.undo()
    assert cache_mod._init_library_views() is None, "a second init is OK"


_CHILD_INIT = r"""
import ctypes, sys
import groupcache
from groupcache import _lib, cache
assert cache._library_views_off == "_GROUPCACHE_CTYPES_VIEWS is set", cache._library_views_off
c = groupcache.Cache("child")
c.set("k", b"fallback")
v = c.get_buffer("k")
assert v == b"fallback" and v.readonly and type(v.obj).__name__ == "_Held"

api = ctypes.pythonapi
def addr(n):
    return ctypes.cast(getattr(api, n), ctypes.c_void_p).value
def spec(**kw):
    s = cache._py_api()
    for k, val in kw.items():
        setattr(s, k, val)
    return s

def refused(s, why):
    fn = ctypes.c_void_p()
    st = _lib.cache_py_init(ctypes.byref(s) if s is not None else None, ctypes.byref(fn))
    assert not fn.value, "written on CACHE_OK only"
    assert st == 2, (why, st)
    msg = _lib._last_error()
    assert why in msg, (why, msg)

# (Before an init cache_lookup_view returns NULL: the package never calls
# it then.)
assert _lib.cache_py_live_views() == 0
refused(None, "`api` is NULL")
refused(spec(size=8), "cache_py_api.size is 8")
refused(spec(memoryview_from_object=None), "function is NULL")
refused(spec(none=None), "none is NULL")
refused(spec(object_size=12), "object_size 12")
NULL_SPEC = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(lambda p: None)
refused(spec(type_from_spec=ctypes.cast(NULL_SPEC, ctypes.c_void_p).value), "PyType_FromSpec failed")
NO_SLOT = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)(lambda t, n: None)
refused(spec(type_get_slot=ctypes.cast(NO_SLOT, ctypes.c_void_p).value), "ignores buffer slots")
NO_FN = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(lambda *a: None)
refused(spec(cfunction_new=ctypes.cast(NO_FN, ctypes.c_void_p).value), "PyCFunction_NewEx failed")
flags = spec().type_flags
refused(spec(type_flags=flags | 1 << 10), "type_flags")  # BASETYPE
refused(spec(type_flags=flags | 1 << 14), "type_flags")  # HAVE_GC
# Still the fallback, still working; then a good init switches over, with
# a PyUnicode_AsUTF8AndSize that counts its calls (lookup_view must not
# call it once PyLong_AsVoidPtr failed, with that exception still set).
assert c.get_buffer("k") == b"fallback"
real_utf8 = api.PyUnicode_AsUTF8AndSize
real_utf8.restype = ctypes.c_void_p
real_utf8.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
utf8_calls = []
def utf8(o, size):
    utf8_calls.append(1)
    return real_utf8(o, size)
UTF8 = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(utf8)
fn = ctypes.c_void_p()
counting = spec(unicode_as_utf8_and_size=ctypes.cast(UTF8, ctypes.c_void_p).value)
assert _lib.cache_py_init(ctypes.byref(counting), None) == 0
assert _lib.cache_py_init(None, ctypes.byref(fn)) == 0, "initialized: OK, the first call's functions stay"
view = ctypes.cast(fn, ctypes.py_object).value
assert view.__name__ == "lookup_view" and "get_buffer" in view.__doc__
h = c._handle.value
v2 = view(h, "k")
assert v2 == b"fallback" and v2.readonly and type(v2.obj).__name__ == "_ValueHolder"
assert _lib.cache_py_live_views() == 1
del v2
assert _lib.cache_py_live_views() == 0
# Whatever it cannot take is None, with no exception left behind.
c["k\udcff"] = b"s"
for args in [(h, "nope"), (h, b"k"), (h, "k\udcff"), ("h", "k"), (None, "k"), (0, "k"), (h,), (h, "k", 1), ()]:
    assert view(*args) is None, args
assert view(h, "k") == b"fallback" and utf8_calls
del utf8_calls[:]
for args in [("h", "k"), (None, "k"), (1.5, "k"), (1 << 80, "k")]:
    assert view(*args) is None and not utf8_calls, (args, utf8_calls)
w = _lib.cache_lookup_view(_lib.handle_arg(c._handle), b"k", 1)
assert w == b"fallback" and type(w.obj).__name__ == "_ValueHolder" and _lib.cache_py_live_views() == 1
del w
assert _lib.cache_py_live_views() == 0
assert _lib.cache_lookup_view(_lib.handle_arg(c._handle), b"nope", 4) is None
print("ok")
"""


def test_a_failed_init_falls_back_to_ctypes_views() -> None:
    """In a child forced to the fallback (nothing initialized yet): each
    bad cache_py_api is refused with its reason, get_buffer keeps working
    through ctypes, and a good init afterwards makes library views."""
    env = dict(os.environ, _GROUPCACHE_CTYPES_VIEWS="1")
    r = subprocess.run([sys.executable, "-c", _CHILD_INIT], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


_CHILD_SUBINTERPRETER = r"""
import _testcapi, sys
SUB = "import sys; sys.path[:0] = %r\n" % (sys.path[:2],) + '''
import groupcache
from groupcache import cache
assert "subinterpreter" in str(cache._library_views_off), cache._library_views_off
c = groupcache.Cache("sub")
c.set("k", b"sub value")
v = c.get_buffer("k")
assert v == b"sub value" and type(v.obj).__name__ == "_Held", type(v.obj)
'''
FIRST = sys.argv[1] == "sub-first"
if FIRST:
    assert _testcapi.run_in_subinterp(SUB) == 0
import groupcache
from groupcache import _lib, cache
assert cache._library_views_off is None, cache._library_views_off
if not FIRST:
    assert _testcapi.run_in_subinterp(SUB) == 0
c = groupcache.Cache("main")
c.set("k", b"main value")
v = c.get_buffer("k")
assert v == b"main value" and type(v.obj).__name__ == "_ValueHolder" and _lib.cache_py_live_views() == 1
print("ok")
"""


@pytest.mark.parametrize("order", ["sub-first", "main-first"])
def test_subinterpreters_get_the_ctypes_views(order: str, prelude: str) -> None:
    """The library's view type and builtin belong to the interpreter that
    initialized them: a subinterpreter uses the ctypes views, whether it
    imports the package before the main interpreter (which still gets the
    library's) or after. (run_in_subinterp returns 0 even when the code
    raised: the subinterpreter's own asserts print to stderr, checked.)"""
    r = subprocess.run(
        [sys.executable, "-c", prelude + _CHILD_SUBINTERPRETER, order],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok" and "Error" not in r.stderr, (
        r.stdout[-2000:],
        r.stderr[-3000:],
    )


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


def test_the_value_is_freed_when_the_last_view_goes(name: str, live: Callable[[], int]) -> None:
    c = groupcache.Cache(name)
    c.set("k", b"v" * 100)
    base = live()
    v = c.get_buffer("k")
    assert live() == base + 1
    s = v[1:3]
    del v
    assert live() == base + 1, "a slice keeps the value"
    del s
    assert live() == base
    w = c.get_buffer("k")
    w.release()
    assert live() == base, "release() frees it at once"
    with pytest.raises(ValueError):
        w[0]
    with c.get_buffer("k") as u:
        assert u[0] == ord("v") and live() == base + 1
    assert live() == base
    views = [c.get_buffer("k") for _ in range(100)]
    assert live() == base + 100
    random.Random(1).shuffle(views)
    while views:
        views.pop()
    assert live() == base


def test_many_views_and_slices_dropped_in_random_order(name: str, live: Callable[[], int]) -> None:
    c = groupcache.Cache(name, max_bytes=1 << 20)
    values = {"k%d" % i: os.urandom(i * 37 % 5000) for i in range(50)}
    for k, val in values.items():
        c.set(k, val)
    base = live()
    rng = random.Random(3)
    held: List[Any] = []
    for _ in range(5000):
        k = "k%d" % rng.randrange(50)
        v = c.get_buffer(k)
        n = len(v)
        a, b = sorted((rng.randrange(n + 1), rng.randrange(n + 1)))
        held.append((k, a, b, v[a:b] if rng.random() < 0.5 else v))
        if rng.random() < 0.2:
            c.remove(k)
            c.set(k, values[k])
        if len(held) > 300:
            held.pop(rng.randrange(len(held)))
    for k, a, b, v in held:
        assert bytes(v) == (values[k][a:b] if len(v) != len(values[k]) else values[k])
    del v  # the loop's last
    rng.shuffle(held)
    while held:
        held.pop()
    gc.collect()
    assert live() == base


def test_threads_get_views_concurrently(name: str, live: Callable[[], int]) -> None:
    values = {"k%d" % i: bytes([i]) * (100 + i * 50) for i in range(40)}
    # Keys come and go (the writer): a miss loads the same value.
    c = groupcache.Cache(name, max_bytes=256 << 10, loader=values.get)
    for k, val in values.items():
        c.set(k, val)
    base = live()
    errors: List[BaseException] = []
    stop = threading.Event()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        mine: List[Any] = []
        try:
            for _ in range(3000):
                k = "k%d" % rng.randrange(40)
                v = c.get_buffer(k)
                if bytes(v) != values[k]:
                    raise AssertionError("%s: wrong bytes" % k)
                mine.append((k, v[rng.randrange(len(v)) :]))
                if len(mine) > 50:
                    mine.pop(rng.randrange(len(mine)))
            for k, v in mine:
                if bytes(v) != values[k][len(values[k]) - len(v) :]:
                    raise AssertionError("%s: a view changed" % k)
            del v, mine
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    def writer() -> None:
        rng = random.Random(99)
        while not stop.is_set():
            k = "k%d" % rng.randrange(40)
            c.remove(k)
            c.set(k, values[k])
            c.set("filler%d" % rng.randrange(1000), b"f" * 2000)  # evictions

    ts = [threading.Thread(target=reader, args=(i,)) for i in range(6)]
    w = threading.Thread(target=writer)
    w.start()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    stop.set()
    w.join()
    assert not errors, errors[0]
    gc.collect()
    assert live() == base


def test_empty_values_missing_keys_defaults_loads_and_errors(name: str, live: Callable[[], int]) -> None:
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
    n = live()
    c.close()
    with pytest.raises(groupcache.ClosedError):
        c.get_buffer("a")
    assert live() == n


def _view_obj_is_the_value_only(c: groupcache.Cache, key: str, v: memoryview, value: bytes, views: str) -> None:
    """What ``v.obj`` lets anyone do: view exactly the value's bytes (never
    past them), read-only where the library made the view (the ctypes
    fallback's is writable memory, as documented); the view itself is
    read-only, and the cache's value stays what it was."""
    assert v.readonly and bytes(v) == value
    with pytest.raises(TypeError):
        memoryview(v).cast("B")[0:1] = b"X"
    under = memoryview(v.obj)
    assert len(under) == under.nbytes == len(value), "view.obj reaches past the value"
    assert bytes(under) == bytes(v.obj) == value
    if views == "library":
        assert type(v.obj).__name__ == "_ValueHolder" and under.readonly
        if value:
            with pytest.raises(TypeError):
                under[0:1] = b"X"
        with pytest.raises((TypeError, BufferError)):
            ctypes.c_char.from_buffer(v.obj)
    assert c.get(key) == value and bytes(c.get_buffer(key)) == value


def test_view_obj_of_hits_misses_async_and_surrogate_keys(name: str, views: str) -> None:
    """Every way get_buffer and aget_buffer answer (a hit, a load, an empty
    value, a key with a lone surrogate) gives the same kind of view: on
    library views its obj is the library's read-only holder (loads and
    surrogate keys included), and in the fallback an array of exactly the
    value's length (was: a writable 4 GiB array, whose bytes() crashed)."""
    c = groupcache.Cache(name, loader=lambda k: b"loaded:" + k.encode("utf-8", "surrogateescape"))
    c.set("hit", b"hello world")
    c.set("empty", b"")
    c["k\udcff"] = b"surrogate key"
    _view_obj_is_the_value_only(c, "hit", c.get_buffer("hit"), b"hello world", views)
    _view_obj_is_the_value_only(c, "miss", c.get_buffer("miss"), b"loaded:miss", views)
    _view_obj_is_the_value_only(c, "empty", c.get_buffer("empty"), b"", views)
    _view_obj_is_the_value_only(c, "k\udcff", c.get_buffer("k\udcff"), b"surrogate key", views)
    _view_obj_is_the_value_only(c, "\udc80", c.get_buffer("\udc80"), b"loaded:\x80", views)

    async def main() -> None:
        _view_obj_is_the_value_only(c, "amiss", await c.aget_buffer("amiss"), b"loaded:amiss", views)
        _view_obj_is_the_value_only(c, "amiss", await c.aget_buffer("amiss"), b"loaded:amiss", views)
        _view_obj_is_the_value_only(c, "k\udcff", await c.aget_buffer("k\udcff"), b"surrogate key", views)

    asyncio.run(main())


def test_the_fallback_makes_one_array_type_per_length_and_keeps_few(name: str) -> None:
    """The ctypes views are arrays of exactly the value's length, of types
    made by the package (not ``c_ubyte * n``, which ctypes keeps forever),
    of which it keeps a bounded number."""
    cache_mod._use_library_views(False)
    c = groupcache.Cache(name, max_bytes=1 << 20)
    n = cache_mod._HELD_TYPES_MAX + 50
    for i in range(1, n + 1):
        c.set("k", b"x" * i)
        v = c.get_buffer("k")
        assert len(memoryview(v.obj)) == i and bytes(v.obj) == b"x" * i
        assert len(cache_mod._held_types) <= cache_mod._HELD_TYPES_MAX
    assert type(v.obj) is cache_mod._held_types[n] and type(v.obj).__mro__[1] is ctypes.Array


def test_a_get_buffer_reentered_between_the_lookup_and_its_reads(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ctypes path reads the value's data and length back from a
    per-thread struct after its lookup call: a get_buffer re-entered on the
    same thread right then (a signal handler, a GC finalizer: here, forced
    after every lookup call) must not overwrite it (it did, and the outer
    view then showed the inner value, freed under it: /tmp/rz/sig3.py under
    ASan)."""
    cache_mod._use_library_views(False)
    c = groupcache.Cache(name, max_bytes=1 << 20)
    c.set("main", b"M" * 64)
    real = cache_mod._lookup_value
    depth = [0]
    reentered = [0]

    def lookup_then_reenter(*args: Any) -> Any:
        value = real(*args)
        if depth[0] == 0:
            depth[0] += 1
            try:
                c.set("other", b"O" * 4096)
                w = c.get_buffer("other")
                c.remove("other")  # the view holds the entry's last hold
                assert bytes(w) == b"O" * 4096
                del w
                reentered[0] += 1
            finally:
                depth[0] -= 1
        return value

    monkeypatch.setattr(cache_mod, "_lookup_value", lookup_then_reenter)
    for _ in range(3):
        v = c.get_buffer("main")
        assert len(v) == 64 and bytes(v) == b"M" * 64
        p = c._peek_buffer(b"main")
        assert p is not None and bytes(p) == b"M" * 64
    assert reentered[0] == 6


@pytest.mark.parametrize("hold", ["cache_get", "get_buffer"])
def test_the_last_hold_on_a_removed_entry_frees_it_at_once(name: str, hold: str) -> None:
    """A value (cache_get's, a view's) that is the last holder of a removed
    entry frees the entry when it is freed, not in a later batch of
    reclaim: before, a shared value's free was deferred until 32 more came
    along, and 50 MB of removed entries stayed allocated while the process
    idled (/tmp/rz/retain2.py). 10 MB values are their own mappings, so
    RSS shows it."""
    mb = 1 << 20
    c = groupcache.Cache(name, max_bytes=64 * mb)
    keys = ["big%d" % i for i in range(5)]
    for i, k in enumerate(keys):
        c.set(k, bytes([i + 1]) * (10 * mb))
    held: List[Any] = []
    for k in keys:
        if hold == "cache_get":
            out = ctypes.c_void_p()
            kb = k.encode()
            assert _lib.cache_get(c._handle, kb, len(kb), ctypes.byref(out)) == 0
            held.append(out.value)
        else:
            held.append(c.get_buffer(k))
    t = threading.Thread(target=lambda: [c.remove(k) for k in keys])
    t.start()
    t.join()  # the values hold the entries alone now
    gc.collect()
    before = rss_bytes()
    if hold == "cache_get":
        for h in held:
            _lib.cache_value_free(h)
    held.clear()
    gc.collect()
    released = before - rss_bytes()
    assert released > 40 * mb, "freeing the last holds of 50 MB released %d bytes" % released


class _OddStr(str):
    """A str whose encode() lies: keys are the str's own UTF-8 on every
    path (the view builtin reads it directly), never this."""

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return b"other"


def test_a_str_subclass_key_is_its_own_utf8_on_every_path(name: str) -> None:
    loaded: List[str] = []

    def loader(key: str) -> bytes:
        loaded.append(key)
        return b"loaded:" + str.encode(key)

    c = groupcache.Cache(name, loader=loader)
    c.set("k", b"v" * 100)
    c.set("other", b"OTHER")
    k = _OddStr("k")
    assert bytes(c.get_buffer(k)) == c.get(k) == c[k] == b"v" * 100
    assert k in c and c.get_many([k]) == {"k": b"v" * 100}
    assert c.get(_OddStr("miss")) == b"loaded:miss" and bytes(c.get_buffer(_OddStr("miss"))) == b"loaded:miss"
    assert bytes(c.get_buffer(_OddStr("miss2"))) == b"loaded:miss2" and c.get(_OddStr("miss2")) == b"loaded:miss2"

    async def main() -> None:
        assert await c.aget(k) == b"v" * 100 and bytes(await c.aget_buffer(k)) == b"v" * 100

    asyncio.run(main())
    assert "other" not in loaded


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


def test_a_forked_child_reads_a_view_it_inherited(name: str, live: Callable[[], int]) -> None:
    c = groupcache.Cache(name)
    c.set("k", b"parent's value" * 1000)
    base = live()
    v = c.get_buffer("k")[5:]
    c.remove("k")
    c.set("other", b"o" * 5000)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its status
        ok = v == (b"parent's value" * 1000)[5:] and live() == base + 1
        del v
        ok = ok and live() == base
        views = [c.get_buffer("other") for _ in range(100)]
        ok = ok and all(w == b"o" * 5000 for w in views) and live() == base + 100
        random.Random(5).shuffle(views)
        del views
        os._exit(0 if ok and live() == base else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert v == (b"parent's value" * 1000)[5:] and live() == base + 1


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

    rounds(20_000)  # warm up: allocator arenas, handle tables
    gc.collect()
    before = rss_bytes()
    rounds(100_000)
    gc.collect()
    grown = rss_bytes() - before
    # 100,000 leaked values would be 6.4 GB; one would be 64 KiB.
    assert grown < 16 << 20, "RSS grew by %d bytes" % grown
