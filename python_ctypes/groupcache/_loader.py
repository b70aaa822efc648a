"""Python loaders behind the C getter: one trampoline, a registry of slots.

The library calls one module-level ``cache_getter_fn`` (``TRAMPOLINE``),
which lives as long as the module, so C can never call a freed callback.
Its ``user_data`` is an integer slot id, never a pointer to a Python object:
a stale id finds nothing and the load fails cleanly.  The registry holds
each slot weakly; the Cache holds it strongly, so a loader that refers back
to its cache does not keep the cache alive forever.

Nothing ever escapes into C: an exception in the loader, or a result of the
wrong type, is turned into ``cache_sink_fail(message)`` and a failure
status, and the exception is kept for a while so that the Python caller can
chain it (``LoaderError(...) from exc``).
"""

from __future__ import annotations

import atexit
import collections
import collections.abc
import ctypes
import math
import os
import threading
import weakref
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from . import _lib
from ._errors import CACHE_LOADER_FAILED, CACHE_NOT_FOUND, CACHE_OK
from ._keys import decode_key

__all__ = [
    "Value",
    "LoaderResult",
    "Loader",
    "LoaderMany",
    "LoaderSlot",
    "TRAMPOLINE",
    "BATCH_TRAMPOLINE",
    "ttl_to_ms",
]

Value = Union[bytes, bytearray, memoryview]
"""What a loader may return as a value: any bytes-like object."""

LoaderResult = Union[Value, Tuple[Value, Optional[float]], None]
"""bytes-like, ``(value, ttl_seconds)``, or None for "does not exist"."""

Loader = Callable[[str], LoaderResult]
"""A loader: called with a missing key, returns its ``LoaderResult``."""

LoaderMany = Callable[[List[str]], Optional[Mapping[str, Union[LoaderResult, BaseException]]]]
"""A batch loader: called with missing keys, returns a mapping from the
keys it found to their ``LoaderResult``; a key left out (or mapped to None)
does not exist, a key mapped to an exception instance fails alone."""

_INT64_MAX = (1 << 63) - 1

# How many recent failures a cache remembers for chaining; a waiter reads
# its entry right after the load failed, so a few are plenty.
_KEEP_FAILURES = 32


def ttl_to_ms(ttl: Optional[float]) -> int:
    """Seconds (None, 0 or less, or infinite: no expiry) to the library's
    milliseconds, rounding up so that a tiny positive ttl still expires."""
    if ttl is None:
        return 0
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError("ttl must be a number of seconds or None, not %s" % type(ttl).__name__)
    if math.isnan(ttl):
        raise ValueError("ttl is NaN")
    if ttl <= 0 or math.isinf(ttl):
        return 0
    return min(_INT64_MAX, max(1, math.ceil(ttl * 1000)))


def _as_bytes(value: object, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value) if isinstance(value, bytearray) else value.tobytes()
    if isinstance(value, str):
        raise TypeError("%s is str; values are bytes: encode it" % what)
    try:
        return memoryview(value).tobytes()  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            "%s is %s; expected bytes-like, None or (value, ttl_seconds)"
            % (what, type(value).__name__)
        ) from None


def _unpack(result: object) -> Tuple[bytes, int]:
    if isinstance(result, bytes):
        return result, 0
    if isinstance(result, tuple):
        if len(result) != 2:
            raise TypeError(
                "the loader returned a tuple of %d items; expected (value, ttl_seconds)" % len(result)
            )
        value, ttl = result
        return _as_bytes(value, "the loader's value"), ttl_to_ms(ttl)
    return _as_bytes(result, "the loader's result"), 0


def describe(exc: BaseException) -> str:
    """The message a failing loader leaves in the sink."""
    text = str(exc)
    name = type(exc).__qualname__
    return "%s: %s" % (name, text) if text else name


class LoaderSlot:
    """One cache's loader, as the trampoline finds it."""

    __slots__ = ("id", "name", "loader", "loader_many", "_failures", "_lock", "__weakref__")

    def __init__(
        self, slot_id: int, name: str, loader: Optional[Loader], loader_many: Optional[LoaderMany] = None
    ) -> None:
        self.id = slot_id
        self.name = name
        self.loader = loader
        self.loader_many = loader_many
        # key bytes -> (message, exception, thread id)
        self._failures: "collections.OrderedDict[bytes, Tuple[str, BaseException, int]]" = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def load(self, key: bytes, sink: Optional[int]) -> int:
        """Runs the loader for ``key`` and fills ``sink``; never raises."""
        try:
            if self.loader is None:
                raise TypeError("this cache has no loader")
            result = self.loader(decode_key(key))
            if result is None:
                return CACHE_NOT_FOUND
            value, ttl_ms = _unpack(result)
            # Copies the bytes; GIL released meanwhile (CDLL).
            _lib.cache_sink_set(sink, value, len(value), ttl_ms)
            return CACHE_OK
        except BaseException as exc:  # noqa: BLE001 - nothing may reach C
            message = describe(exc)
            self._remember(key, message, exc)
            _lib.cache_sink_fail(sink, message.encode("utf-8", "backslashreplace"))
            return CACHE_LOADER_FAILED

    def load_many(self, keys: List[bytes], sink: Optional[int]) -> int:
        """Runs the batch loader for ``keys`` and fills ``sink``; never
        raises. A failure of the whole call fails each key with its
        message (so that the callers see it, not a bare status)."""
        fail = _lib.cache_batch_sink_fail
        try:
            if self.loader_many is None:
                raise TypeError("this cache has no loader_many")
            names = [decode_key(k) for k in keys]
            result = self.loader_many(names)
            if result is None:
                return CACHE_OK  # none exists
            if not isinstance(result, collections.abc.Mapping):
                raise TypeError(
                    "loader_many returned %s; expected a mapping of keys to values" % type(result).__name__
                )
            get = result.get
            put = _lib.cache_batch_sink_set
            for i, name in enumerate(names):
                found = get(name)
                if found is None:
                    continue
                try:
                    if isinstance(found, BaseException):
                        raise found
                    value, ttl_ms = _unpack(found)
                except BaseException as exc:  # noqa: BLE001 - this key alone
                    message = describe(exc)
                    self._remember(keys[i], message, exc)
                    fail(sink, i, message.encode("utf-8", "backslashreplace"))
                    continue
                if put(sink, i, value, len(value), ttl_ms) != CACHE_OK:
                    fail(sink, i, _lib._last_error().encode("utf-8", "backslashreplace"))
            return CACHE_OK
        except BaseException as exc:  # noqa: BLE001 - nothing may reach C
            message = describe(exc)
            encoded = message.encode("utf-8", "backslashreplace")
            for i, key in enumerate(keys):
                self._remember(key, message, exc)
                fail(sink, i, encoded)
            return CACHE_OK

    def _remember(self, key: bytes, message: str, exc: BaseException) -> None:
        with self._lock:
            self._failures[key] = (message, exc, threading.get_ident())
            self._failures.move_to_end(key)
            while len(self._failures) > _KEEP_FAILURES:
                self._failures.popitem(last=False)

    def failure(self, key: bytes) -> Optional[Tuple[str, BaseException, bool]]:
        """The last failure of a loader of this process for ``key``: its
        message, the exception, and whether it was raised on this thread."""
        with self._lock:
            entry = self._failures.get(key)
        if entry is None:
            return None
        return entry[0], entry[1], entry[2] == threading.get_ident()

    def forget(self) -> None:
        with self._lock:
            self._failures.clear()


_registry: Dict[int, "weakref.ref[LoaderSlot]"] = {}
_next_id = 1
_registry_lock = threading.Lock()


def register(name: str, loader: Optional[Loader], loader_many: Optional[LoaderMany] = None) -> LoaderSlot:
    global _next_id
    with _registry_lock:
        slot = LoaderSlot(_next_id, name, loader, loader_many)
        _next_id += 1  # ids are never reused
        _registry[slot.id] = weakref.ref(slot)
    return slot


def unregister(slot_id: int) -> None:
    with _registry_lock:
        _registry.pop(slot_id, None)


def _locks_after_fork_in_child() -> None:
    """Locks another thread of the parent held at the fork stay held in
    the child, whose threads are gone: give the child fresh ones."""
    global _registry_lock
    _registry_lock = threading.Lock()
    for ref in list(_registry.values()):
        slot = ref()
        if slot is not None:
            slot._lock = threading.Lock()


os.register_at_fork(after_in_child=_locks_after_fork_in_child)


def _trampoline(user_data: Optional[int], key: Optional[int], key_len: int, sink: Optional[int]) -> int:
    try:
        ref = _registry.get(user_data or 0)
        slot = ref() if ref is not None else None
        if slot is None:
            _lib.cache_sink_fail(sink, b"the cache was closed")
            return CACHE_LOADER_FAILED
        key_bytes = ctypes.string_at(key, key_len) if key_len and key else b""
        return slot.load(key_bytes, sink)
    except BaseException:  # noqa: BLE001 - last resort: never into C
        try:
            _lib.cache_sink_fail(sink, b"the Python loader trampoline failed")
        except BaseException:  # noqa: BLE001
            pass
        return CACHE_LOADER_FAILED


TRAMPOLINE = _lib.GETTER_FN(_trampoline)


def _batch_trampoline(
    user_data: Optional[int], keys: Any, key_lens: Any, n: int, sink: Optional[int]
) -> int:
    try:
        ref = _registry.get(user_data or 0)
        slot = ref() if ref is not None else None
        if slot is None:
            for i in range(n):
                _lib.cache_batch_sink_fail(sink, i, b"the cache was closed")
            return CACHE_OK
        at = ctypes.string_at
        key_list = [at(keys[i], key_lens[i]) if key_lens[i] else b"" for i in range(n)]
        return slot.load_many(key_list, sink)
    except BaseException:  # noqa: BLE001 - last resort: never into C
        return CACHE_LOADER_FAILED


BATCH_TRAMPOLINE = _lib.BATCH_GETTER_FN(_batch_trampoline)


def _stop_loaders_at_exit() -> None:
    """At interpreter exit, before daemon threads are torn down: no loader
    is entered any more, and the ones running may finish (up to 2 s, with
    the GIL released). CPython 3.11 ends a daemon thread that re-enters
    Python during finalization with pthread_exit, whose forced unwind must
    not cross the library's frames (it aborts the process); after this, a
    daemon thread can only meet it in ctypes, after the library returned.
    Registered at import, so it runs after atexit handlers registered later
    (which may still load)."""
    _lib.cache_getters_stop(2000)


atexit.register(_stop_loaders_at_exit)
"""The one C callback; module-level, so it lives as long as the library
may call it."""
