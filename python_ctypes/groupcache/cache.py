"""``Cache``: one groupcache group, from Python.

Keys are ``str``, sent as UTF-8 (lone surrogates from ``surrogateescape``
go back to the bytes they came from, so a key a loader received can be used
again).  Values are ``bytes``.

A hit is one foreign call that keeps the GIL (``cache_lookup_alloc`` through
``PyDLL``, which builds the ``bytes`` itself).  Anything else, a miss, a
load, a closed cache, an empty value, goes to ``cache_get`` through ``CDLL``,
which releases the GIL: the load may run a Python loader on another thread,
and a thread that kept the GIL while waiting for it would deadlock.
"""

from __future__ import annotations

import array
import asyncio
import concurrent.futures
import ctypes
import inspect
import itertools
import math
import os
import sys
import sysconfig
import threading
import weakref
from dataclasses import dataclass, fields
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Tuple,
)

from . import _lib
from ._errors import (
    CACHE_IN_PROGRESS,
    CACHE_INVALID_ARGUMENT,
    CACHE_NOT_FOUND,
    CACHE_OK,
    BatchError,
    ClosedError,
    GroupcacheError,
    InvalidArgumentError,
    LoaderError,
    NotFoundError,
    error_for_status,
)
from ._handle import Closable
from ._keys import decode_key, encode_key
from ._loader import (
    BATCH_TRAMPOLINE,
    TRAMPOLINE,
    Loader,
    LoaderMany,
    LoaderSlot,
    Value,
    register,
    ttl_to_ms,
    unregister,
)
from ._log import sync_log_level

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["Cache", "Stats", "CacheInfo"]

_lookup = _lib.lookup
_lookup3 = _lib.lookup3
_lookup_many = _lib.lookup_many
_ALLOC = _lib.LOOKUP_ALLOC
_STORE = _lib.STORE_LIST_ITEM
_values_alloc = _lib.values_alloc

_SIZE_T = next((c for c in "LQI" if array.array(c).itemsize == ctypes.sizeof(ctypes.c_size_t)), None)
"""The array typecode of a C size_t, which is also a pointer's size where
one is found (every platform the library builds on)."""
if ctypes.sizeof(ctypes.c_void_p) != ctypes.sizeof(ctypes.c_size_t):  # pragma: no cover
    _SIZE_T = None


def _key_arrays(kbs: List[bytes], n: int) -> Tuple[Any, Any, Any]:
    """cache_get_many's ``keys`` and ``key_lens`` for ``kbs``, and what
    must stay alive until the call returns. Built at C speed where the
    platform allows: the keys joined into one bytes object, the pointers
    its address plus each key's offset (an array of ``c_char_p`` made from
    the keys costs ~0.3 µs a key, most of a warm batch's time in Python)."""
    if _SIZE_T is None:  # pragma: no cover
        return kbs, (ctypes.c_char_p * n)(*kbs), (ctypes.c_size_t * n)(*map(len, kbs))
    buf = b"".join(kbs)
    lens = array.array(_SIZE_T, map(len, kbs))
    base = ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p).value or 0
    ptrs = array.array(_SIZE_T, itertools.accumulate(lens, initial=base))
    ptrs.pop()
    return buf, (ctypes.c_char_p * n).from_buffer(ptrs), (ctypes.c_size_t * n).from_buffer(lens)
_NO_GETTER = _lib.GETTER_FN()  # a NULL cache_getter_fn: a set-only cache


@dataclass(frozen=True)
class Stats:
    """groupcache's Stats and CacheStats: counters since the cache was
    created; ``*_bytes`` and ``*_items`` are current sizes."""

    gets: int
    """Every get, including hits."""
    cache_hits: int
    """Gets answered from the main or hot cache."""
    peer_loads: int
    """Values (or "not found") fetched from the owner peer."""
    peer_errors: int
    """Peer calls that failed."""
    loads: int
    """Gets that missed the cache."""
    loads_deduped: int
    """Loads left after single-flight: the real work."""
    local_loads: int
    """Successful loader calls on this node."""
    local_load_errs: int
    """Failed (or "not found") loader calls on this node."""
    server_requests: int
    """Gets that arrived from peers."""
    main_bytes: int
    """Bytes (keys and values) in the main cache: keys this node owns."""
    main_items: int
    """Entries in the main cache."""
    main_gets: int
    """Lookups in the main cache."""
    main_hits: int
    """Lookups the main cache answered."""
    main_evictions: int
    """Entries the main cache dropped to stay within its bytes."""
    hot_bytes: int
    """Bytes in the hot cache: copies of popular keys other nodes own."""
    hot_items: int
    """Entries in the hot cache."""
    hot_gets: int
    """Lookups in the hot cache (those the main cache missed)."""
    hot_hits: int
    """Lookups the hot cache answered."""
    hot_evictions: int
    """Entries the hot cache dropped to stay within its bytes."""
    batch_loads: int
    """Calls of ``loader_many`` on this node."""
    batch_loaded_keys: int
    """Keys passed to ``loader_many``, over all its calls."""
    peer_batch_requests: int
    """Batch fetches from the keys' owners: one per owner per ``get_many``."""
    server_batch_requests: int
    """Batch gets that arrived from peers (their keys count in
    ``server_requests`` too)."""
    peers: int
    """Distinct nodes in the membership of the cache's pool, this one
    included when listed (0 without a pool)."""
    membership_changes: int
    """Times the pool's membership changed (``set_peers`` with another
    list, or a DNS lookup of ``peers_from`` that found one)."""


_STATS_FIELDS = tuple(f.name for f in fields(Stats))


class CacheInfo(NamedTuple):
    """``functools.lru_cache``'s ``cache_info()`` tuple, from a cache's
    counters. Sizes are in bytes, as in cachetools with ``getsizeof``:
    ``maxsize`` is the cache's ``max_bytes``, ``currsize`` the bytes of
    keys and values it holds (main and hot). ``stats()`` has the rest."""

    hits: int
    """Gets answered from this node's memory (``Stats.cache_hits``)."""
    misses: int
    """Gets that had to load, from the key's owner or the loader
    (``Stats.loads``)."""
    maxsize: int
    """The bound in bytes (``max_bytes``)."""
    currsize: int
    """Bytes held now (``Stats.main_bytes + Stats.hot_bytes``)."""


def _value_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, str):
        raise TypeError("values are bytes, not str: encode it")
    try:
        return memoryview(value).tobytes()  # type: ignore[arg-type]
    except TypeError:
        raise TypeError("values are bytes-like, not %s" % type(value).__name__) from None


_executor_lock = threading.Lock()
_load_executor: Optional[concurrent.futures.ThreadPoolExecutor] = None

LOAD_THREADS = 64
"""Threads that run ``aget`` loads (created as needed). Loads wait on I/O or
on a loader; more threads than cores is the point."""


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _load_executor
    ex = _load_executor
    if ex is None:
        with _executor_lock:
            ex = _load_executor
            if ex is None:
                ex = _load_executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=LOAD_THREADS, thread_name_prefix="groupcache-load"
                )
    return ex


def _executor_after_fork_in_child() -> None:
    """A child of ``fork()`` has none of the parent's threads: forget the
    parent's executor (its idle workers would be counted but never run
    anything) and its lock (another thread may have held it)."""
    global _executor_lock, _load_executor
    _executor_lock = threading.Lock()
    _load_executor = None


os.register_at_fork(after_in_child=_executor_after_fork_in_child)


def _load_timeout_ms(load_timeout: Optional[float]) -> Optional[int]:
    """``load_timeout`` seconds as the library's milliseconds (0: no limit),
    or None for "the environment's, else none"."""
    if load_timeout is None:
        return None
    if isinstance(load_timeout, bool) or not isinstance(load_timeout, (int, float)):
        raise TypeError("load_timeout is a number of seconds or None, not %s" % type(load_timeout).__name__)
    if math.isinf(load_timeout) and load_timeout > 0:
        return 0
    if not 0 < load_timeout * 1000 < 2**32:  # also NaN
        raise ValueError(
            "load_timeout must be between 1 ms and 49 days (or math.inf: none), not %r s" % load_timeout
        )
    return max(1, math.ceil(load_timeout * 1000))


def _count_option(value: Optional[int], name: str, most: int) -> Optional[int]:
    """A whole-number option in 1..most, or None for "the environment's,
    else the default"."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s is an int or None, not %s" % (name, type(value).__name__))
    if not 1 <= value <= most:
        raise ValueError("%s must be 1 to %d, not %d" % (name, most, value))
    return value


def _check_loader(fn: object, name: str) -> None:
    if fn is None:
        return
    if not callable(fn):
        raise TypeError("%s must be callable or None" % name)
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 (not a callable test: an object's async __call__)
    ):
        raise TypeError(
            "%s is a coroutine function, but loaders run on library threads "
            "without an event loop: pass a plain function (it may block), and "
            "use aget() to get from asyncio code" % name
        )


def _free(handle: int, slot_id: Optional[int]) -> None:
    # A finalizer: must not refer to the Cache. Safe while other threads are
    # inside calls on the handle (they finish or get CACHE_CLOSED).
    _lib.cache_free(handle)
    if slot_id is not None:
        unregister(slot_id)


class _Byte(ctypes.Union):
    """One byte, as a buffer of format "B": a ctypes c_ubyte's is "<B",
    which a memoryview cannot index, and a cast would cost another view."""

    _fields_ = [("b", ctypes.c_ubyte)]


_ArrayType: Any = type(ctypes.Array)
"""ctypes' metaclass of array types, to make them without ``_Byte * n``
(ctypes keeps every type made that way, one per length, forever)."""

_HELD_TYPES_MAX = 256
"""How many array types (one per value length) _held_type keeps for
reuse; past that it starts over. Only a cost: a type is made per
length when missing, and lives as long as the views of its length."""

_held_types: Dict[int, Any] = {}


def _held_del(self: Any) -> None:
    """__del__ of the array types of _held_type: frees the value."""
    _held_free(self._value)


def _held_type(n: int) -> Any:
    """The array type of exactly ``n`` bytes that ctypes views are made
    of: one value the library holds for Python (a ``cache_value``, the
    cache's own copy of the bytes) as a ctypes array at its address, no
    longer than the value (a view's ``obj``, which can be viewed again,
    never reaches past it). The views keep the array alive: a memoryview
    keeps the object it was made from, and a slice of a view keeps that;
    when the last view goes, the array goes and frees the value."""
    t = _held_types.get(n)
    if t is None:
        if len(_held_types) >= _HELD_TYPES_MAX:
            _held_types.clear()
        t = _ArrayType(
            "_Held",
            (ctypes.Array,),
            {"_type_": _Byte, "_length_": n, "__slots__": ("_value",), "__del__": _held_del},
        )
        _held_types[n] = t
    return t


def _held_at(data: int, n: int) -> Any:
    """An array of ``n`` bytes at ``data`` (see _held_type)."""
    return _held_type(n).from_address(data)


_value_free = _lib.value_free_gil
_held_free = _value_free
_lookup_value = _lib.lookup_value
_view_out_tls = threading.local()


def _new_view_out() -> Any:
    """A cache_value_view for cache_lookup_value to write into, as (the
    pointer argument, a view of its two words, the struct)."""
    out = _lib.CacheValueView()
    return (
        ctypes.c_void_p.from_param(ctypes.addressof(out)),
        memoryview(out).cast("B").cast("Q"),
        out,
    )


def _take_view_out() -> Any:
    """This thread's cache_value_view (_new_view_out), taken out of its
    slot until _view_out_tls.out is set back to it: kept per thread (another
    thread may run between the call and the reads) and out of reach during
    the call, so that a get_buffer re-entered on this thread between the
    call and the reads (a signal handler, a finalizer run by the GC) makes
    its own instead of overwriting this one."""
    t = getattr(_view_out_tls, "out", None) or _new_view_out()
    _view_out_tls.out = None
    return t


def _view_of(value: int, data: Optional[int], n: int) -> memoryview:
    """A read-only view of the value ``value`` (a cache_value handle this
    call takes over) of ``n`` bytes at ``data``."""
    if not n or not data:
        _value_free(value)
        return memoryview(b"")
    held = _held_at(data, n)
    held._value = value
    return memoryview(held).toreadonly()


def _view_of_handle_ctypes(value: int) -> memoryview:
    """A read-only view of the value ``value`` (a cache_value handle this
    call takes over), made by ctypes."""
    return _view_of(value, _lib.cache_value_data(value), _lib.cache_value_len(value))


def _view_of_handle_library(value: int) -> memoryview:
    """_view_of_handle_ctypes() made by the library (cache_py_value_view):
    the same view as a hit's."""
    view = _value_view(value)
    if view is None:  # CPython could not allocate (the value is freed)
        raise MemoryError("no memory for a view of the value")
    return view


_value_view = _lib.cache_py_value_view
_view_of_handle = _view_of_handle_ctypes


_CTYPES_VIEWS_ENV = "_GROUPCACHE_CTYPES_VIEWS"
"""A private switch: set to 1, the package never lets the library build
its views (cache_py_init) and uses the ctypes ones (tests and
comparisons)."""


def _init_library_views() -> Optional[str]:
    """Lets the library build get_buffer's views by handing it the
    interpreter's own functions (cache_py_init, src/ffi/pyview.rs): a hit
    is then one call of the builtin ``_view_fn`` it makes, straight to a
    memoryview. Returns None when it can, else why not; then get_buffer
    makes its views with ctypes (slower, same behaviour). Only on CPython
    3.9+ with a GIL (not PyPy, not a free-threaded build, whose object
    header differs)."""
    global _view_fn
    if os.environ.get(_CTYPES_VIEWS_ENV, "") not in ("", "0"):
        return "%s is set" % _CTYPES_VIEWS_ENV
    if sys.implementation.name != "cpython":
        return "not CPython (%s)" % sys.implementation.name
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return "a free-threaded CPython"
    if sys.version_info < (3, 9):  # pragma: no cover - requires-python is 3.9
        return "CPython before 3.9 ignores buffer slots of PyType_FromSpec"
    if not _in_main_interpreter():
        return "a subinterpreter (the views' type and builtin are the main interpreter's)"
    try:
        spec = _py_api()
    except AttributeError as e:  # pragma: no cover - all are public API
        return "a CPython function is missing: %s" % e
    fn = ctypes.c_void_p()
    if _lib.cache_py_init(ctypes.byref(spec), ctypes.byref(fn)) != CACHE_OK:
        return "cache_py_init: %s" % _lib._last_error()
    _view_fn = ctypes.cast(fn, ctypes.py_object).value
    return None


def _in_main_interpreter() -> bool:
    """Whether this is the main interpreter: the library makes its view
    type and builtin once per process, with the functions and objects of
    the interpreter that asked first, so only the main interpreter may use
    them (a subinterpreter gets the ctypes views). PyInterpreterState_Get
    and PyInterpreterState_Main are public on CPython 3.9+."""
    proto = ctypes.PYFUNCTYPE(ctypes.c_void_p)
    current = proto(("PyInterpreterState_Get", ctypes.pythonapi))()
    main = proto(("PyInterpreterState_Main", ctypes.pythonapi))()
    return bool(current) and current == main


def _py_api() -> Any:
    """The struct cache_py_api of this interpreter."""
    api = ctypes.pythonapi

    def addr(name: str) -> Optional[int]:
        return ctypes.cast(getattr(api, name), ctypes.c_void_p).value

    flags = 1 << 18  # Py_TPFLAGS_DEFAULT
    if sys.version_info >= (3, 10):
        flags |= 1 << 7 | 1 << 8  # DISALLOW_INSTANTIATION, IMMUTABLETYPE
    return _lib.CachePyApi(
        size=ctypes.sizeof(_lib.CachePyApi),
        object_size=object.__basicsize__,
        type_flags=flags,
        none=id(None),
        type_from_spec=addr("PyType_FromSpec"),
        type_get_slot=addr("PyType_GetSlot"),
        type_generic_alloc=addr("PyType_GenericAlloc"),
        object_free=addr("PyObject_Free"),
        buffer_fill_info=addr("PyBuffer_FillInfo"),
        memoryview_from_object=addr("PyMemoryView_FromObject"),
        incref=addr("Py_IncRef"),
        decref=addr("Py_DecRef"),
        err_clear=addr("PyErr_Clear"),
        cfunction_new=addr("PyCFunction_NewEx"),
        long_as_void_ptr=addr("PyLong_AsVoidPtr"),
        unicode_as_utf8_and_size=addr("PyUnicode_AsUTF8AndSize"),
    )


def _no_view_fn(handle: int, key: str) -> None:
    """_view_fn where the library makes no views (never called then)."""
    return None


_view_fn: Callable[[int, str], Optional[memoryview]] = _no_view_fn
_library_views_off: Optional[str] = _init_library_views()
"""Why get_buffer makes its views with ctypes (None: the library makes
them)."""
_lookup_view = _lib.lookup_view


def _free_load_result(fut: "asyncio.Future[int]") -> None:
    """Frees the value of a load whose awaiter went away (cancelled)."""
    if not fut.cancelled() and fut.exception() is None:
        _value_free(fut.result())


_WAIT_SLICE_MS = 100
"""How long the main thread waits on another thread's load between two
chances for a signal handler (Ctrl-C) to run."""

_str_encode = str.encode
"""UTF-8 of a key, the str's own, never a subclass's encode() (which the
library's view builtin and ``"\\0".join`` do not call either): one key
whatever the path. Not a str: TypeError, which encode_key words."""

_NO_DEFAULT: Any = object()
"""get()'s "no default given"."""


class Cache(Closable):
    """A groupcache group: values loaded by ``loader`` on a miss, kept in
    up to ``max_bytes`` (keys + values), shared with the cluster of ``pool``
    if given.

    ``loader(key) -> bytes | None | (bytes, ttl_seconds)``: None means the
    key does not exist (``KeyError``, not cached); an exception or a value
    of the wrong type becomes ``LoaderError`` and nothing is cached. It is
    called on the thread that needs the value (or a server thread answering
    a peer), at most once at a time per key; several keys may load at once
    on several threads. Without a loader the cache only holds what ``set``
    put there.

    ``load_timeout``: seconds a load may take before the callers waiting on
    it give up with ``groupcache.TimeoutError`` (a built-in
    ``TimeoutError``); the load is then abandoned: the next get loads the
    key again, and what the stuck loader returns, if it ever does, is not
    cached. The caller whose thread runs the loader cannot be interrupted:
    it waits for its loader and gets its result. None (the default): the
    environment's ``GROUPCACHE_LOAD_TIMEOUT_MS``, else no limit (as
    golang/groupcache); ``math.inf``: no limit whatever the environment.

    ``loader_many(keys: list[str]) -> Mapping[str, bytes | (bytes,
    ttl_seconds)]``: a batch loader (one ``WHERE id IN (...)`` instead of a
    query a key). ``get_many`` loads its misses through it, at most
    ``batch_chunk_keys`` keys a call (default 256); keys left out (or mapped
    to None) do not exist; a key mapped to an exception instance fails
    alone; an exception raised fails every key of the call. Without it,
    ``get_many`` runs ``loader`` on up to ``miss_concurrency`` keys at once
    (default 16). ``get`` uses ``loader``, or ``loader_many`` with one key
    when only it is given. Both options default to the environment's
    ``GROUPCACHE_BATCH_CHUNK_KEYS`` and ``GROUPCACHE_MISS_CONCURRENCY``.
    """

    __slots__ = (
        "_handle",
        "_harg",
        "_hid",
        "_name",
        "_max_bytes",
        "_loader",
        "_loader_many",
        "_slot",
        "_pool",
        "_closed",
        "_finalizer",
        "_inflight",
        "__weakref__",
    )

    def __init__(
        self,
        name: str,
        max_bytes: int = 64 << 20,
        loader: Optional[Loader] = None,
        pool: Optional[Pool] = None,
        *,
        load_timeout: Optional[float] = None,
        loader_many: Optional[LoaderMany] = None,
        batch_chunk_keys: Optional[int] = None,
        miss_concurrency: Optional[int] = None,
    ) -> None:
        self._closed = True  # until the handle exists (__del__-free: see _free)
        if not isinstance(name, str):
            raise TypeError("name is str, not %s" % type(name).__name__)
        if "\0" in name:
            # C takes the name NUL-terminated: "a\0b" would register "a".
            raise ValueError("name contains a NUL character: %r" % name)
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
            raise TypeError("max_bytes is an int, not %s" % type(max_bytes).__name__)
        if not 0 <= max_bytes < 1 << 64:
            raise ValueError("max_bytes must be in 0 .. 2**64-1, not %d" % max_bytes)
        _check_loader(loader, "loader")
        _check_loader(loader_many, "loader_many")
        timeout_ms = _load_timeout_ms(load_timeout)
        chunk = _count_option(batch_chunk_keys, "batch_chunk_keys", 65536)
        concurrency = _count_option(miss_concurrency, "miss_concurrency", 1024)
        pool_handle = None
        if pool is not None:
            pool_handle = pool._live_handle()
        slot: Optional[LoaderSlot] = None
        if loader is not None or loader_many is not None:
            slot = register(name, loader, loader_many)
        out = _lib.Handle()
        opts: Optional[int] = None
        try:
            if timeout_ms is not None or loader_many is not None or chunk is not None or concurrency is not None:
                opts = _lib.cache_options_new()
                if not opts:  # a malformed GROUPCACHE_* variable
                    raise InvalidArgumentError(_lib._last_error(), CACHE_INVALID_ARGUMENT)
                if timeout_ms is not None:
                    _lib.cache_options_set_load_timeout_ms(opts, timeout_ms)
                if loader_many is not None and slot is not None:
                    _lib.cache_options_set_batch_getter(opts, BATCH_TRAMPOLINE, slot.id)
                if chunk is not None:
                    _lib.cache_options_set_batch_chunk_keys(opts, chunk)
                if concurrency is not None:
                    _lib.cache_options_set_miss_concurrency(opts, concurrency)
            # NULL options: the defaults and the environment.
            _lib.cache_new_with_options(
                name.encode("utf-8", "surrogateescape"),
                max_bytes,
                TRAMPOLINE if loader is not None else _NO_GETTER,
                slot.id if slot is not None else None,
                pool_handle,
                opts,
                ctypes.byref(out),
            )
        except BaseException:
            if slot is not None:
                unregister(slot.id)
            raise
        finally:
            _lib.cache_options_free(opts)
        self._handle = out
        self._harg = _lib.handle_arg(out)  # for the hit path
        self._hid = out.value or 0  # for get_buffer's
        self._name = name
        self._max_bytes = max_bytes
        self._loader = loader
        self._loader_many = loader_many
        self._slot = slot
        self._pool = pool  # the pool object lives at least as long as its caches
        self._inflight: Dict[bytes, asyncio.Future[bytes]] = {}
        self._finalizer = weakref.finalize(
            self, _free, out.value or 0, slot.id if slot is not None else None
        )
        self._closed = False
        sync_log_level()

    # ---- reads -------------------------------------------------------------

    def get(self, key: str, default: Any = _NO_DEFAULT) -> Any:
        """The value of ``key``: from this node's cache, else from the key's
        owner, else from the loader.

        Raises ``KeyError`` (``NotFoundError``) when the loader returned
        None, unless ``default`` is given: then returns it, as ``dict.get``
        does (only for a missing key: other failures still raise).
        Raises ``LoaderError`` when the loader failed, ``TimeoutError`` when
        it waited on another thread's load past ``load_timeout``,
        ``ClosedError`` after close(). On the main thread, Ctrl-C
        interrupts a wait on another thread's load within about 0.1 s
        (``KeyboardInterrupt``; the load goes on for its other callers).
        """
        try:
            k = _str_encode(key)
        except (TypeError, UnicodeEncodeError):
            k = encode_key(key)
        # One foreign call, GIL kept: a new bytes on a hit, b"" otherwise
        # (a miss, an empty value, a closed cache), which _load sorts out.
        return _lookup3(self._harg, k, len(k)) or (
            self._load(k) if default is _NO_DEFAULT else self._load_or(k, default)
        )

    def _get_explicit_alloc(self, key: str, default: Any = _NO_DEFAULT) -> Any:
        try:
            k = _str_encode(key)
        except (TypeError, UnicodeEncodeError):
            k = encode_key(key)
        return _lookup(self._harg, k, len(k), _ALLOC) or (
            self._load(k) if default is _NO_DEFAULT else self._load_or(k, default)
        )

    if not _lib.DEFAULT_ALLOC_SET:  # another binding owns the default allocator
        get = _get_explicit_alloc  # noqa: F811

    def get_buffer(self, key: str, default: Any = _NO_DEFAULT) -> Any:
        """The value of ``key`` as a read-only ``memoryview`` of the
        library's own copy of it: no copy of the bytes, whatever their size
        (a hit costs the same for 16 bytes and for a megabyte). Loads on a
        miss, raises and takes ``default`` exactly as get().

        The view, and any slice of it, stays valid and unchanged while it
        lives, even after the key is removed, evicted or set again and
        after close(); the memory (key and value) is freed when the last
        view of it goes, or at ``view.release()`` (also the end of a
        ``with`` block). Until then it counts beyond ``max_bytes``: release
        views of large values you do not keep. It works wherever a buffer
        does: ``socket.send``, asyncio transports, ``hashlib``,
        ``bytes(view)``, ``numpy.frombuffer`` (a read-only array).
        """
        # One call, GIL kept: the builtin the library made returns a new
        # read-only memoryview on a hit, None otherwise (a miss, a closed
        # cache, a key it cannot take as UTF-8); an empty value also goes
        # the slow path, which answers it.
        return _view_fn(self._hid, key) or self._get_buffer_miss(key, default)

    def _get_buffer_miss(self, key: str, default: Any) -> Any:
        try:
            k = _str_encode(key)
        except (TypeError, UnicodeEncodeError):
            k = encode_key(key)
            # The builtin answers None for keys it cannot take as UTF-8
            # (lone surrogates): a hit of those is found by their encoded
            # bytes. Any other key the builtin looked up already.
            view = self._peek_buffer(k)
            if view:
                return view
        return self._load_buffer(k, default)

    def _get_buffer_ctypes(self, key: str, default: Any = _NO_DEFAULT) -> Any:
        # get_buffer() with views made by ctypes, where the library cannot
        # make them (see _init_library_views); its docstring is get_buffer's.
        try:
            k = _str_encode(key)
        except (TypeError, UnicodeEncodeError):
            k = encode_key(key)
        view = self._peek_buffer_ctypes(k)
        if view is not None:
            return view
        return self._load_buffer(k, default)

    _get_buffer_library = get_buffer

    def _peek_buffer(self, k: bytes) -> Optional[memoryview]:
        """A view of the value of ``k`` if this node holds it, else None."""
        view: Optional[memoryview] = _lookup_view(self._harg, k, len(k))
        return view

    _peek_buffer_library = _peek_buffer

    def _peek_buffer_ctypes(self, k: bytes) -> Optional[memoryview]:
        """_peek_buffer() with a view made by ctypes."""
        t = _take_view_out()
        # One foreign call, GIL kept: the value's handle (and its data and
        # length in *out) on a hit, None otherwise (a miss, a closed cache).
        # (An exception raised by a signal handler between this call and
        # _view_of would leak this one value: a window of a few bytecodes;
        # the miss path cleans up after itself.)
        value = _lookup_value(self._harg, k, len(k), t[0])
        if value:
            data, n = t[1]
            _view_out_tls.out = t
            return _view_of(value, data, n)
        _view_out_tls.out = t
        return None

    def _load_buffer(self, k: bytes, default: Any) -> Any:
        try:
            value = self._load_value(k)
        except NotFoundError:
            if default is _NO_DEFAULT:
                raise
            return default
        return _view_of_handle(value)

    def __getitem__(self, key: str) -> bytes:
        """``cache[key]``: get() without a default (``KeyError`` when the
        key does not exist)."""
        try:
            k = _str_encode(key)
        except (TypeError, UnicodeEncodeError):
            k = encode_key(key)
        return _lookup(self._harg, k, len(k), _ALLOC) or self._load(k)

    def __contains__(self, key: object) -> bool:
        """``key in cache``: whether this node holds a value for ``key``
        now. Never loads and never asks a peer: a key another node owns is
        "in" only while this node keeps a hot copy."""
        if not isinstance(key, str):
            return False
        k = encode_key(key)
        if self._closed:
            raise ClosedError("the cache %r is closed" % self._name, None)
        status = _lib.cache_contains(self._handle, k, len(k))
        if status == CACHE_OK:
            return True
        if status == CACHE_NOT_FOUND:
            return False
        raise error_for_status(status, _lib._last_error())

    def __iter__(self) -> Iterator[str]:
        raise TypeError(
            "a Cache is not a container of its keys: it holds what was loaded "
            "lately, on several nodes; use get(), get_many() or `key in cache`"
        )

    def __len__(self) -> int:
        raise TypeError(
            "a Cache has no len(): it is not a container of its keys; "
            "stats() has main_items and hot_items for this node"
        )

    def __bool__(self) -> bool:
        # Without this, bool() would call __len__ and raise.
        return True

    def _load_or(self, k: bytes, default: Any) -> Any:
        try:
            return self._load(k)
        except NotFoundError:
            return default

    def get_many(self, keys: Iterable[str]) -> Dict[str, bytes]:
        """``{key: value}`` for the keys that exist (a key the loader says
        does not exist is left out). Hits are served first, in one pass;
        the misses are then loaded together: each owner node is asked once
        for its keys, all at once, while this node loads its own through
        ``loader_many`` (in chunks of ``batch_chunk_keys``), else through
        ``loader``, ``miss_concurrency`` keys at once. A key someone else
        is loading is waited for, never loaded twice.

        Raises ``BatchError`` (a ``LoaderError``) once the whole batch is
        done if any key failed: ``.errors`` has each failed key's exception
        (``LoaderError``, ``TimeoutError``...), ``.results`` the values of
        the others. ``ClosedError`` after close(). On the main thread,
        Ctrl-C interrupts a wait on another thread's load within about
        0.1 s (the loads go on)."""
        if not isinstance(keys, list):
            keys = list(keys)
        out, misses = self._hits(keys)
        if misses:
            self._load_many(out, misses)
        return out

    def _hits(self, keys: List[str]) -> Tuple[Dict[str, bytes], List[Tuple[str, bytes]]]:
        """The hits, and the misses as (key, encoded key): through one
        cache_lookup_many_alloc call where the keys allow it (str keys
        without NUL: they go NUL-separated, the values come back in a
        list), else key by key."""
        n = len(keys)
        if n == 0:
            return {}, []
        kb: Optional[bytes] = None
        try:
            joined = "\0".join(keys)
        except TypeError:
            joined = None  # the per-key path raises the TypeError
        if joined is not None and joined.count("\0") == n - 1:
            try:
                kb = joined.encode()
            except UnicodeEncodeError:
                try:
                    kb = encode_key(joined)
                except UnicodeEncodeError:
                    kb = None
        if kb is not None:
            values: List[Any] = [None] * n
            left = _lookup_many(self._harg, kb, len(kb), n, 0, _ALLOC, _STORE, ctypes.py_object(values))
            if left == 0:
                return dict(zip(keys, values)), []
            if left > 0:
                out: Dict[str, bytes] = {}
                misses: List[Tuple[str, bytes]] = []
                for key, v in zip(keys, values):
                    if v:
                        out[key] = v
                    else:
                        misses.append((key, encode_key(key)))
                return out, misses
        out = {}
        misses = []
        h = self._harg
        for key in keys:
            try:
                k = _str_encode(key)
            except (TypeError, UnicodeEncodeError):
                k = encode_key(key)
            v = _lookup(h, k, len(k), _ALLOC)
            if v:
                out[key] = v
            else:
                misses.append((key, k))
        return out, misses

    def _load_many(self, out: Dict[str, bytes], misses: List[Tuple[str, bytes]]) -> None:
        """The slow path of get_many: cache_get_many (GIL released) for the
        misses, their values added to ``out``; BatchError if any failed."""
        if self._closed:
            raise ClosedError("the cache %r is closed" % self._name, None)
        sync_log_level()  # cheap; a miss may log (a peer that fails)
        errors: Dict[str, GroupcacheError] = {}
        sliced = threading.current_thread() is threading.main_thread()
        while misses:
            n = len(misses)
            kbs = [k for _, k in misses]
            statuses = (ctypes.c_int32 * n)()
            vals = (ctypes.c_void_p * n)()
            msgs = (ctypes.c_void_p * n)()
            objs: List[Any] = [None] * n
            texts: List[Any] = [None] * n
            keep, key_ptrs, key_lens = _key_arrays(kbs, n)
            args = (key_ptrs, key_lens, n)
            try:
                if sliced:
                    # As _load: waits on other threads' loads come back in
                    # slices (CACHE_IN_PROGRESS), so that Ctrl-C gets in.
                    _lib.cache_get_many_slice(self._handle, *args, _WAIT_SLICE_MS, statuses, vals, msgs)
                else:
                    _lib.cache_get_many(self._handle, *args, statuses, vals, msgs)
            except ClosedError:
                raise ClosedError("the cache %r is closed" % self._name, None) from None
            finally:
                # Frees every value (none were made if the call failed).
                _values_alloc(vals, n, _ALLOC, _STORE, ctypes.py_object(objs))
                _values_alloc(msgs, n, _ALLOC, _STORE, ctypes.py_object(texts))
                del keep
            codes = statuses[:]
            if codes.count(CACHE_OK) == n:
                out.update(zip([key for key, _ in misses], objs))
                break
            again: List[Tuple[str, bytes]] = []
            for i, (key, k) in enumerate(misses):
                status = codes[i]
                if status == CACHE_OK:
                    out[key] = objs[i]
                elif status == CACHE_IN_PROGRESS:
                    again.append((key, k))
                elif status != CACHE_NOT_FOUND:
                    errors[key] = self._key_error(k, status, (texts[i] or b"").decode("utf-8", "replace"))
            misses = again
        if errors:
            raise BatchError(errors, out)

    def _key_error(self, k: bytes, status: int, message: str) -> GroupcacheError:
        """One key's exception in a BatchError, chained to what the loader
        raised in this process when it is known."""
        e = error_for_status(status, message)
        if isinstance(e, LoaderError) and self._slot is not None:
            for_key = self._slot.failure(k)
            if for_key is not None and for_key[0] in message:
                e.__cause__ = for_key[1]
        return e

    def _peek(self, k: bytes) -> bytes:
        """The hit path alone: the value if this node holds it, else b""
        (also for an empty value, a closed cache: ``_load`` sorts it out)."""
        return _lookup(self._harg, k, len(k), _ALLOC)

    def _load(self, k: bytes) -> bytes:
        """The slow path: cache_get, GIL released, may load."""
        value = self._load_value(k)
        try:
            n = _lib.cache_value_len(value)
            data = _lib.cache_value_data(value)
            return ctypes.string_at(data, n) if n and data else b""
        finally:
            _lib.cache_value_free(value)

    def _load_value(self, k: bytes) -> int:
        """cache_get, GIL released, may load: the value's handle, which the
        caller frees (or hands to a view)."""
        if self._closed:
            raise ClosedError("the cache %r is closed" % self._name, None)
        sync_log_level()  # cheap; a miss may log (a peer that fails)
        out = ctypes.c_void_p()
        try:
            if threading.current_thread() is threading.main_thread():
                # Signals reach Python code only on the main thread, and only
                # between bytecodes: wait on other threads' loads in slices,
                # so that Ctrl-C interrupts the wait (KeyboardInterrupt
                # raised here, between two slices) instead of waiting it out.
                while True:
                    status = _lib.cache_get_slice(self._handle, k, len(k), _WAIT_SLICE_MS, ctypes.byref(out))
                    if status != CACHE_IN_PROGRESS:
                        break
                if status != CACHE_OK:
                    raise error_for_status(status, _lib._last_error())
            else:
                _lib.cache_get(self._handle, k, len(k), ctypes.byref(out))
        except NotFoundError:
            raise NotFoundError(decode_key(k), CACHE_NOT_FOUND) from None
        except LoaderError as e:
            if self._closed:  # the load was cut short by close()
                raise ClosedError("the cache %r is closed" % self._name, None) from e
            self._chain_loader_error(k, e)
            raise
        except ClosedError:
            raise ClosedError("the cache %r is closed" % self._name, None) from None
        return out.value or 0

    def _chain_loader_error(self, k: bytes, e: LoaderError) -> None:
        if self._slot is None:
            return
        message = str(e)
        for_key = self._slot.failure(k)
        if for_key is None:
            return
        text, cause, same_thread = for_key
        if text not in message:
            return
        if same_thread and not isinstance(cause, Exception):
            # KeyboardInterrupt, SystemExit...: not the loader's failure to
            # report but the caller's to see.
            raise cause
        e.__cause__ = cause

    # ---- async ---------------------------------------------------------------

    async def aget(self, key: str) -> bytes:
        """get() for asyncio: a hit answers at once; a miss loads on a
        worker thread (see ``LOAD_THREADS``) without blocking the event
        loop. Concurrent agets of one key in one loop share one load; loads
        of different keys run concurrently."""
        try:
            k = _str_encode(key)
        except (TypeError, UnicodeEncodeError):
            k = encode_key(key)
        v = _lookup(self._harg, k, len(k), _ALLOC)
        if v:
            return v
        if self._closed:
            raise ClosedError("the cache %r is closed" % self._name, None)
        loop = asyncio.get_running_loop()
        fut = self._inflight.get(k)
        if fut is None or fut.get_loop() is not loop or fut.done():
            fut = loop.run_in_executor(_executor(), self._load, k)
            self._inflight[k] = fut
            fut.add_done_callback(self._landed(k))
        # shield: one awaiter being cancelled must not cancel the others'
        # load (nor can it stop the thread, which finishes regardless).
        return await asyncio.shield(fut)

    def _landed(self, k: bytes) -> "Any":
        inflight = self._inflight

        def done(fut: "asyncio.Future[bytes]") -> None:
            if inflight.get(k) is fut:
                del inflight[k]
            if not fut.cancelled():
                fut.exception()  # retrieved: no "never retrieved" warning

        return done

    async def aget_buffer(self, key: str) -> memoryview:
        """get_buffer() for asyncio: a hit answers at once; a miss loads on
        a worker thread (see ``LOAD_THREADS``) without blocking the event
        loop. Each call gets a view of its own."""
        try:
            k = _str_encode(key)
        except (TypeError, UnicodeEncodeError):
            k = encode_key(key)
        view = self._peek_buffer(k)
        if view is not None:
            return view
        if self._closed:
            raise ClosedError("the cache %r is closed" % self._name, None)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.run_in_executor(_executor(), self._load_value, k)
        try:
            value = await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The load goes on; free what it returns.
            fut.add_done_callback(_free_load_result)
            raise
        return _view_of_handle(value)

    async def aget_many(self, keys: Iterable[str]) -> Dict[str, bytes]:
        """get_many() for asyncio: hits answer at once; the misses load as
        one batch (as get_many loads them) on a worker thread (see
        ``LOAD_THREADS``), without blocking the event loop. Raises as
        get_many does (``BatchError``)."""
        if not isinstance(keys, list):
            keys = list(keys)
        out, misses = self._hits(keys)
        if not misses:
            return out
        if self._closed:
            raise ClosedError("the cache %r is closed" % self._name, None)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(_executor(), self._load_many, out, misses)
        return out

    # ---- writes --------------------------------------------------------------

    def set(self, key: str, value: Value, ttl: Optional[float] = None) -> None:
        """Stores ``value`` under ``key`` (at the key's owner when in a pool,
        and here), then drops the copies other peers keep, so every node
        sees the new value once this returns. ``ttl`` in seconds; None or
        <= 0: no expiry. A load of the key in flight will not overwrite it.

        Raises ``PeerError`` (its message names the PUT and the owner) when
        the key's owner could not be reached. Then nothing is stored: this
        node's copy of the key is dropped too (a local value the owner does
        not have would disagree with what every other node gets), so the
        next get loads from the owner again. ``remove`` behaves the same
        way: it drops the local copy whether or not the owner answered."""
        k = encode_key(key)
        v = _value_bytes(value)
        ms = ttl_to_ms(ttl)
        self._check_open()
        try:
            _lib.cache_set(self._handle, k, len(k), v, len(v), ms)
        except ClosedError:
            raise ClosedError("the cache %r is closed" % self._name, None) from None

    def __setitem__(self, key: str, value: Value) -> None:
        self.set(key, value)

    def remove(self, key: str) -> None:
        """Removes ``key`` everywhere (here, at its owner, at every peer);
        not an error if it was not cached. Returns once the owner and every
        reachable peer have dropped it or timed out.

        Raises ``PeerError`` when the key's owner could not be reached: the
        key was still dropped here and at every other peer, but the owner
        may hold the old value until it expires or is evicted. A load of the
        key in flight will not cache the old value."""
        k = encode_key(key)
        self._check_open()
        try:
            _lib.cache_remove(self._handle, k, len(k))
        except ClosedError:
            raise ClosedError("the cache %r is closed" % self._name, None) from None

    def __delitem__(self, key: str) -> None:
        self.remove(key)

    # ---- the rest ------------------------------------------------------------

    def stats(self) -> Stats:
        """The counters (a snapshot)."""
        self._check_open()
        s = _lib.CacheStats()
        try:
            # With the size of the struct this package knows: a library with
            # more counters fills only these, an older one zeroes the rest.
            _lib.cache_stats_get_sized(self._handle, ctypes.byref(s), ctypes.sizeof(s))
        except ClosedError:
            raise ClosedError("the cache %r is closed" % self._name, None) from None
        return Stats(*(getattr(s, f) for f in _STATS_FIELDS))

    def cache_info(self) -> CacheInfo:
        """``hits, misses, maxsize, currsize``, as ``functools.lru_cache``'s
        ``cache_info()`` (sizes in bytes, see ``CacheInfo``)."""
        s = self.stats()
        return CacheInfo(s.cache_hits, s.loads, self._max_bytes, s.main_bytes + s.hot_bytes)

    @property
    def name(self) -> str:
        """The cache's name (the group's, shared by the cluster's nodes)."""
        return self._name

    @property
    def max_bytes(self) -> int:
        """The bound on keys and values held, in bytes."""
        return self._max_bytes

    @property
    def loader(self) -> Optional[Loader]:
        """The loader given at creation, or None (a set-only cache)."""
        return self._loader

    @property
    def loader_many(self) -> Optional[LoaderMany]:
        """The batch loader given at creation, or None."""
        return self._loader_many

    @property
    def pool(self) -> Optional[Pool]:
        """The pool whose cluster the cache shares keys with, or None."""
        return self._pool

    @property
    def closed(self) -> bool:
        """Whether close() ran."""
        return self._closed

    def close(self) -> None:
        """Frees the cache. Calls in progress on other threads finish or
        raise ClosedError; later calls raise ClosedError; a second close()
        does nothing. Values already returned stay valid (they are bytes)."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()
        if self._slot is not None:
            self._slot.forget()

    def _closed_message(self) -> str:
        return "the cache %r is closed" % self._name

    def __repr__(self) -> str:
        state = "closed" if getattr(self, "_closed", True) else "open"
        return "<groupcache.Cache %r max_bytes=%d %s>" % (
            getattr(self, "_name", "?"),
            getattr(self, "_max_bytes", 0),
            state,
        )


Cache._get_buffer_ctypes.__doc__ = Cache.get_buffer.__doc__


def _use_library_views(on: bool) -> None:
    """Whether get_buffer's views come from the library (cache_lookup_view,
    if _init_library_views succeeded) or from ctypes: the ctypes ones are
    the fallback, switched to by tests too."""
    global _view_of_handle
    fast = on and _library_views_off is None
    _view_of_handle = _view_of_handle_library if fast else _view_of_handle_ctypes
    Cache.get_buffer = Cache._get_buffer_library if fast else Cache._get_buffer_ctypes  # type: ignore[method-assign]
    Cache._peek_buffer = Cache._peek_buffer_library if fast else Cache._peek_buffer_ctypes  # type: ignore[method-assign]


def _library_views() -> bool:
    """Whether get_buffer's views come from the library now."""
    return Cache.get_buffer is Cache._get_buffer_library


_use_library_views(True)
