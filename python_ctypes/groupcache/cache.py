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

import asyncio
import concurrent.futures
import ctypes
import threading
import weakref
from dataclasses import dataclass, fields
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterable,
    List,
    NamedTuple,
    Optional,
)

from . import _lib
from ._log import sync_log_level
from ._handle import Closable
from ._errors import CACHE_NOT_FOUND, ClosedError, LoaderError, NotFoundError
from ._loader import TRAMPOLINE, Loader, LoaderSlot, Value, register, ttl_to_ms, unregister

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["Cache", "Stats", "CacheInfo"]

_lookup = _lib.lookup
_lookup3 = _lib.lookup3
_ALLOC = _lib.LOOKUP_ALLOC
_STORE = _lib.STORE_LIST_ITEM
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


def _encode_key(key: object) -> bytes:
    """The slow half of key encoding: keys with lone surrogates, and
    anything that is not a str."""
    if isinstance(key, str):
        # surrogateescape gives back the bytes of a key that was not UTF-8;
        # other lone surrogates cannot be sent (UnicodeEncodeError).
        return key.encode("utf-8", "surrogateescape")
    raise TypeError("keys are str, not %s" % type(key).__name__)


def _decode_key(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


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


def _free(handle: int, slot_id: Optional[int]) -> None:
    # A finalizer: must not refer to the Cache. Safe while other threads are
    # inside calls on the handle (they finish or get CACHE_CLOSED).
    _lib.cache_free(handle)
    if slot_id is not None:
        unregister(slot_id)


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
    """

    __slots__ = (
        "_handle",
        "_harg",
        "_name",
        "_max_bytes",
        "_loader",
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
        if loader is not None and not callable(loader):
            raise TypeError("loader must be callable or None")
        pool_handle = None
        if pool is not None:
            pool_handle = pool._live_handle()
        slot: Optional[LoaderSlot] = register(name, loader) if loader is not None else None
        out = _lib.Handle()
        try:
            _lib.cache_new(
                name.encode("utf-8", "surrogateescape"),
                max_bytes,
                TRAMPOLINE if slot is not None else _NO_GETTER,
                slot.id if slot is not None else None,
                pool_handle,
                ctypes.byref(out),
            )
        except BaseException:
            if slot is not None:
                unregister(slot.id)
            raise
        self._handle = out
        self._harg = _lib.handle_arg(out)  # for the hit path
        self._name = name
        self._max_bytes = max_bytes
        self._loader = loader
        self._slot = slot
        self._pool = pool  # the pool object lives at least as long as its caches
        self._inflight: Dict[bytes, asyncio.Future[bytes]] = {}
        self._finalizer = weakref.finalize(
            self, _free, out.value or 0, slot.id if slot is not None else None
        )
        self._closed = False
        sync_log_level()

    # ---- reads -------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """The value of ``key``: from this node's cache, else from the key's
        owner, else from the loader.

        Raises ``KeyError`` (``NotFoundError``) when the loader returned
        None, ``LoaderError`` when it failed, ``ClosedError`` after close().
        """
        try:
            k = key.encode()
        except (AttributeError, UnicodeEncodeError):
            k = _encode_key(key)
        # One foreign call, GIL kept: a new bytes on a hit, b"" otherwise
        # (a miss, an empty value, a closed cache), which _load sorts out.
        return _lookup3(self._harg, k, len(k)) or self._load(k)

    def _get_explicit_alloc(self, key: str) -> bytes:
        try:
            k = key.encode()
        except (AttributeError, UnicodeEncodeError):
            k = _encode_key(key)
        return _lookup(self._harg, k, len(k), _ALLOC) or self._load(k)

    if not _lib.DEFAULT_ALLOC_SET:  # another binding owns the default allocator
        get = _get_explicit_alloc  # noqa: F811

    __getitem__ = get

    def get_many(self, keys: Iterable[str]) -> Dict[str, bytes]:
        """``{key: value}`` for the keys that exist (the loader returning
        None leaves a key out); other failures raise as in get(). Hits are
        served first, in one pass; the misses then load one by one."""
        if _lib.lookup_many is not None:
            if not isinstance(keys, list):
                keys = list(keys)
            got = self._lookup_batch(keys)
            if got is not None:
                return got
        out: Dict[str, bytes] = {}
        misses: List[Any] = []
        h = self._harg
        for key in keys:
            try:
                k = key.encode()
            except (AttributeError, UnicodeEncodeError):
                k = _encode_key(key)
            v = _lookup(h, k, len(k), _ALLOC)
            if v:
                out[key] = v
            else:
                misses.append(key)
                misses.append(k)
        for i in range(0, len(misses), 2):
            try:
                out[misses[i]] = self._load(misses[i + 1])
            except NotFoundError:
                pass
        return out

    def _lookup_batch(self, keys: List[str]) -> Optional[Dict[str, bytes]]:
        """get_many through one cache_lookup_many_alloc call: the keys go
        NUL-separated, the values come back in a list. None when the batch
        does not apply (non-str keys, a key with a NUL, an empty list)."""
        n = len(keys)
        if n == 0:
            return {}
        try:
            joined = "\0".join(keys)
        except TypeError:
            return None  # the per-key path raises the TypeError
        if joined.count("\0") != n - 1:
            return None
        try:
            kb = joined.encode()
        except UnicodeEncodeError:
            try:
                kb = joined.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                return None
        values: List[Any] = [None] * n
        many = _lib.lookup_many
        assert many is not None
        misses = many(self._harg, kb, len(kb), n, 0, _ALLOC, _STORE, ctypes.py_object(values))
        if misses == 0:
            return dict(zip(keys, values))
        if misses < 0:
            return None
        out: Dict[str, bytes] = {}
        for key, v in zip(keys, values):
            if v:
                out[key] = v
            else:
                try:
                    out[key] = self._load(_encode_key(key))
                except NotFoundError:
                    pass
        return out

    def _peek(self, k: bytes) -> bytes:
        """The hit path alone: the value if this node holds it, else b""
        (also for an empty value, a closed cache: ``_load`` sorts it out)."""
        return _lookup(self._harg, k, len(k), _ALLOC)

    def _load(self, k: bytes) -> bytes:
        """The slow path: cache_get, GIL released, may load."""
        if self._closed:
            raise ClosedError("the cache %r is closed" % self._name, None)
        sync_log_level()  # cheap; a miss may log (a peer that fails)
        out = ctypes.c_void_p()
        try:
            _lib.cache_get(self._handle, k, len(k), ctypes.byref(out))
        except NotFoundError:
            raise NotFoundError(_decode_key(k), CACHE_NOT_FOUND) from None
        except LoaderError as e:
            if self._closed:  # the load was cut short by close()
                raise ClosedError("the cache %r is closed" % self._name, None) from e
            self._chain_loader_error(k, e)
            raise
        except ClosedError:
            raise ClosedError("the cache %r is closed" % self._name, None) from None
        try:
            n = _lib.cache_value_len(out)
            data = _lib.cache_value_data(out)
            return ctypes.string_at(data, n) if n and data else b""
        finally:
            _lib.cache_value_free(out)

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
            k = key.encode()
        except (AttributeError, UnicodeEncodeError):
            k = _encode_key(key)
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

    async def aget_many(self, keys: Iterable[str]) -> Dict[str, bytes]:
        """get_many() for asyncio: the misses load concurrently."""
        keys = list(keys)
        results = await asyncio.gather(*(self.aget(k) for k in keys), return_exceptions=True)
        out: Dict[str, bytes] = {}
        for key, r in zip(keys, results):
            if isinstance(r, NotFoundError):
                continue
            if isinstance(r, BaseException):
                raise r
            out[key] = r
        return out

    # ---- writes --------------------------------------------------------------

    def set(self, key: str, value: Value, ttl: Optional[float] = None) -> None:
        """Stores ``value`` under ``key`` (at the key's owner when in a pool,
        and here). ``ttl`` in seconds; None or <= 0: no expiry."""
        k = _encode_key(key)
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
        k = _encode_key(key)
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
            _lib.cache_stats_get(self._handle, ctypes.byref(s))
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
