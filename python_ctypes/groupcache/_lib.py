# The stubs below carry signatures only; their bodies never run.
# mypy: disable-error-code="empty-body"
"""Finds and loads libgroupcache, and declares its C functions and
constants once, spelled as in include/groupcache.h (tests/python/
test_header.py checks that every function and constant of the header is
here, and nothing else).

Where the library is looked for, in this order:

1. ``$GROUPCACHE_LIB``, a path to the shared library (an error if it is set
   and wrong: a silent fallback would hide which library is in use);
2. this package's own folder (a wheel, or ``pip install ./python_ctypes``,
   puts it there);
3. ``target/release/`` of the development checkout the package sits in, so
   ``cargo build --release`` and ``PYTHONPATH=python_ctypes`` is enough.  An
   editable install (``pip install -e ./python_ctypes``) runs cargo and puts
   no copy into the package, so this is what it loads: the output of the
   latest ``cargo build --release``, never a stale copy.

The library is opened twice, which dlopen makes one mapping:

- ``_cdll`` (``ctypes.CDLL``) releases the GIL around each call.  Everything
  that may block goes through it: a load runs a Python loader, possibly on
  another thread, which must be able to take the GIL.
- ``_pydll`` (``ctypes.PyDLL``) keeps the GIL.  Only the hit path uses it
  (``cache_lookup_alloc``, which never blocks and never loads): it calls
  ``PyBytes_FromStringAndSize`` from inside the library, which needs the GIL,
  and it saves the release/reacquire.

Each function is declared once with ``argtypes``, ``restype`` and, for those
returning a ``cache_status``, an ``errcheck`` that raises the matching
exception with ``cache_last_error()``'s text.  The exceptions are the hit
paths (``cache_lookup*``), which have no ``argtypes`` on purpose (see there).
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, TypeVar

from ._errors import CACHE_OK, error_for_status

__all__ = ["library_path", "Handle", "CacheStats", "GETTER_FN"]

if sys.platform == "darwin":  # pragma: no cover - Linux is what is tested
    _LIB_NAME = "libgroupcache.dylib"
elif sys.platform == "win32":  # pragma: no cover
    _LIB_NAME = "groupcache.dll"
else:
    _LIB_NAME = "libgroupcache.so"


def _find_library() -> Tuple[Path, List[str]]:
    tried: List[str] = []
    env = os.environ.get("GROUPCACHE_LIB")
    if env:
        p = Path(env)
        if p.is_file():
            return p, tried
        raise ImportError(
            "GROUPCACHE_LIB=%s: no such file (unset it to use the library "
            "inside the package or the checkout's target/release/)" % env
        )
    tried.append("$GROUPCACHE_LIB (not set)")
    here = Path(__file__).resolve().parent
    p = here / _LIB_NAME
    if p.is_file():
        return p, tried
    tried.append(str(p))
    # python_ctypes/groupcache/ -> the checkout is two levels up.
    for root in list(here.parents)[:3]:  # (parents takes a slice only from 3.10 on)
        if (root / "Cargo.toml").is_file():
            p = root / "target" / "release" / _LIB_NAME
            if p.is_file():
                return p, tried
            tried.append(str(p))
            break
    raise ImportError(
        "groupcache: cannot find %s; looked at: %s. Build it with "
        "`cargo build --release` in the checkout, install the package with "
        "`pip install ./python_ctypes`, or set GROUPCACHE_LIB to its path."
        % (_LIB_NAME, "; ".join(tried))
    )


_path, _ = _find_library()
library_path: str = str(_path)
"""The path of the shared library this package loaded."""

_cdll = ctypes.CDLL(library_path)
_pydll = ctypes.PyDLL(library_path)

# A cache or pool handle as C sees it: an opaque pointer-sized integer.
# It is kept as a c_void_p object so that it can be passed to functions
# without argtypes (a plain int would be passed as a 32-bit C int).
Handle = c_void_p

F = TypeVar("F", bound=Callable[..., Any])


def _last_error() -> str:
    msg = cache_last_error()
    return msg.decode("utf-8", "replace") if msg else ""


def _check_status(result: int, func: Any, args: Tuple[Any, ...]) -> int:
    """errcheck for functions returning a cache_status."""
    if result != CACHE_OK:
        raise error_for_status(result, _last_error())
    return result


def _bind(
    name: str,
    argtypes: Sequence[Any],
    restype: Any,
    *,
    status: bool = False,
) -> Callable[[F], F]:
    """Declares the C function ``name`` once, in the style of
    llama-cpp-python: the decorated stub carries the Python signature for
    type checkers; the call goes straight to ctypes. A library without the
    function fails the import (AttributeError): it is not the library this
    package was written for.

    ``status``: the function returns a cache_status; a non-OK one raises.
    """

    def decorate(stub: F) -> F:
        fn = getattr(_cdll, name)
        fn.argtypes = list(argtypes)
        fn.restype = restype
        if status:
            fn.errcheck = _check_status
        fn.__doc__ = stub.__doc__
        return fn  # type: ignore[no-any-return]

    return decorate


# ---- the header's constants ----------------------------------------------------
# (the cache_status values are in _errors)

CACHE_MAX_KEY_LEN = 8192
"""Longest key accepted, in bytes."""
CACHE_MAX_NAME_LEN = 255
"""Longest cache name accepted, in bytes."""

# cache_log_set's levels.
CACHE_LOG_OFF = 0
CACHE_LOG_ERROR = 1
CACHE_LOG_WARN = 2
CACHE_LOG_INFO = 3
CACHE_LOG_DEBUG = 4
CACHE_LOG_TRACE = 5

# The version of the header this package was written against; the
# library's is cache_version_number().
GROUPCACHE_VERSION_MAJOR = 0
GROUPCACHE_VERSION_MINOR = 1
GROUPCACHE_VERSION_PATCH = 0
GROUPCACHE_VERSION_NUMBER = (
    GROUPCACHE_VERSION_MAJOR * 1000000 + GROUPCACHE_VERSION_MINOR * 1000 + GROUPCACHE_VERSION_PATCH
)


# ---- errors, version, demo -------------------------------------------------


@_bind("cache_last_error", [], c_char_p)
def cache_last_error() -> Optional[bytes]:
    """The message for the last non-OK status on this thread."""


@_bind("cache_version", [], c_char_p)
def cache_version() -> bytes:
    """The library version, e.g. b"0.1.0"."""


@_bind("cache_version_number", [], c_uint32)
def cache_version_number() -> int:
    """The library version as one number, MAJOR * 1000000 + MINOR * 1000 +
    PATCH."""


@_bind("say_hi", [], None)
def say_hi() -> None:
    """Prints one greeting line to stdout."""


# ---- caches ------------------------------------------------------------------

# int32_t (*cache_getter_fn)(void *user_data, const uint8_t *key,
#                            size_t key_len, cache_sink *sink)
GETTER_FN = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_size_t, c_void_p)


class CacheStats(Structure):
    """struct cache_stats, as this package knows it; read it with
    cache_stats_get_sized, giving its size, so that a library with more or
    fewer counters fills only what both know."""

    _fields_ = [
        (name, c_uint64)
        for name in (
            "gets",
            "cache_hits",
            "peer_loads",
            "peer_errors",
            "loads",
            "loads_deduped",
            "local_loads",
            "local_load_errs",
            "server_requests",
            "main_bytes",
            "main_items",
            "main_gets",
            "main_hits",
            "main_evictions",
            "hot_bytes",
            "hot_items",
            "hot_gets",
            "hot_hits",
            "hot_evictions",
            "batch_loads",
            "batch_loaded_keys",
            "peer_batch_requests",
            "server_batch_requests",
            # membership (after 0.1)
            "peers",
            "membership_changes",
        )
    ]


@_bind(
    "cache_new",
    [c_char_p, c_uint64, GETTER_FN, c_void_p, c_void_p, POINTER(c_void_p)],
    c_int32,
    status=True,
)
def cache_new(
    name: bytes,
    max_bytes: int,
    getter: Any,
    user_data: Optional[int],
    pool: Optional[Handle],
    out: Any,
) -> int: ...


@_bind(
    "cache_new_with_options",
    [c_char_p, c_uint64, GETTER_FN, c_void_p, c_void_p, c_void_p, POINTER(c_void_p)],
    c_int32,
    status=True,
)
def cache_new_with_options(
    name: bytes,
    max_bytes: int,
    getter: Any,
    user_data: Optional[int],
    pool: Optional[Handle],
    options: Optional[int],
    out: Any,
) -> int: ...


@_bind("cache_options_new", [], c_void_p)
def cache_options_new() -> Optional[int]: ...


@_bind("cache_options_free", [c_void_p], None)
def cache_options_free(options: Optional[int]) -> None: ...


@_bind("cache_options_set_load_timeout_ms", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_options_set_load_timeout_ms(options: Optional[int], ms: int) -> int: ...


# int32_t (*cache_batch_getter_fn)(void *user_data, const uint8_t *const *keys,
#     const size_t *key_lens, size_t n, cache_batch_sink *sink)
BATCH_GETTER_FN = CFUNCTYPE(c_int32, c_void_p, POINTER(c_void_p), POINTER(c_size_t), c_size_t, c_void_p)


@_bind("cache_options_set_batch_getter", [c_void_p, BATCH_GETTER_FN, c_void_p], c_int32, status=True)
def cache_options_set_batch_getter(options: Optional[int], getter: Any, user_data: Optional[int]) -> int: ...


@_bind("cache_options_set_batch_chunk_keys", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_options_set_batch_chunk_keys(options: Optional[int], n: int) -> int: ...


@_bind("cache_options_set_miss_concurrency", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_options_set_miss_concurrency(options: Optional[int], n: int) -> int: ...


@_bind("cache_batch_sink_set", [c_void_p, c_size_t, c_char_p, c_size_t, c_int64], c_int32)
def cache_batch_sink_set(sink: Optional[int], index: int, value: bytes, value_len: int, ttl_ms: int) -> int:
    """No errcheck: called from the batch loader trampoline, which checks
    the status itself."""


@_bind("cache_batch_sink_fail", [c_void_p, c_size_t, c_char_p], c_int32)
def cache_batch_sink_fail(sink: Optional[int], index: int, message: bytes) -> int:
    """No errcheck: called from the batch loader trampoline."""


_GET_MANY_ARGS = [c_void_p, POINTER(c_char_p), POINTER(c_size_t), c_size_t]
_GET_MANY_OUT = [POINTER(c_int32), POINTER(c_void_p), POINTER(c_void_p)]


@_bind("cache_get_many", _GET_MANY_ARGS + _GET_MANY_OUT, c_int32, status=True)
def cache_get_many(c: Handle, keys: Any, key_lens: Any, n: int, statuses: Any, values: Any, messages: Any) -> int:
    """Loads; through CDLL, so the GIL is released meanwhile."""


@_bind("cache_get_many_slice", _GET_MANY_ARGS + [ctypes.c_uint32] + _GET_MANY_OUT, c_int32, status=True)
def cache_get_many_slice(
    c: Handle, keys: Any, key_lens: Any, n: int, slice_ms: int, statuses: Any, values: Any, messages: Any
) -> int:
    """cache_get_many whose waits on other threads' loads end after
    ``slice_ms`` with a per-key CACHE_IN_PROGRESS (the caller loops)."""


@_bind("cache_free", [c_void_p], None)
def cache_free(c: Any) -> None: ...


@_bind("cache_get", [c_void_p, c_char_p, c_size_t, POINTER(c_void_p)], c_int32, status=True)
def cache_get(c: Handle, key: bytes, key_len: int, out: Any) -> int: ...


# No errcheck: CACHE_BUFFER_TOO_SMALL is an answer (the length needed).
# The package reads values with cache_get; this is bound for callers that
# bring their own buffer.
@_bind(
    "cache_get_into",
    [c_void_p, c_char_p, c_size_t, c_void_p, c_size_t, POINTER(c_size_t)],
    c_int32,
)
def cache_get_into(c: Handle, key: bytes, key_len: int, buf: Any, cap: int, out_len: Any) -> int: ...


@_bind("cache_get_slice", [c_void_p, c_char_p, c_size_t, ctypes.c_uint32, POINTER(c_void_p)], c_int32)
def cache_get_slice(c: Handle, key: bytes, key_len: int, slice_ms: int, out: Any) -> int:
    """cache_get that returns CACHE_IN_PROGRESS after ``slice_ms`` of waiting
    on another thread's load (not raised: the caller loops)."""


@_bind("cache_value_data", [c_void_p], c_void_p)
def cache_value_data(v: Any) -> Optional[int]: ...


@_bind("cache_value_len", [c_void_p], c_size_t)
def cache_value_len(v: Any) -> int: ...


@_bind("cache_value_free", [c_void_p], None)
def cache_value_free(v: Any) -> None: ...


@_bind(
    "cache_set",
    [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_int64],
    c_int32,
    status=True,
)
def cache_set(c: Handle, key: bytes, key_len: int, value: bytes, value_len: int, ttl_ms: int) -> int: ...


@_bind("cache_remove", [c_void_p, c_char_p, c_size_t], c_int32, status=True)
def cache_remove(c: Handle, key: bytes, key_len: int) -> int: ...


@_bind("cache_contains", [c_void_p, c_char_p, c_size_t], c_int32)
def cache_contains(c: Handle, key: bytes, key_len: int) -> int:
    """CACHE_OK if this node holds the key, CACHE_NOT_FOUND if not (not
    raised: the caller sorts the statuses)."""


@_bind("cache_stats_get", [c_void_p, POINTER(CacheStats)], c_int32, status=True)
def cache_stats_get(c: Handle, out: Any) -> int:
    """The first 19 counters only (0.1's struct); use cache_stats_get_sized."""


@_bind("cache_stats_get_sized", [c_void_p, POINTER(CacheStats), c_size_t], c_int32, status=True)
def cache_stats_get_sized(c: Handle, out: Any, out_size: int) -> int: ...


@_bind("cache_sink_set", [c_void_p, c_char_p, c_size_t, c_int64], c_int32, status=True)
def cache_sink_set(sink: Optional[int], value: bytes, value_len: int, ttl_ms: int) -> int: ...


@_bind("cache_getters_stop", [ctypes.c_uint32], c_int32)
def cache_getters_stop(timeout_ms: int) -> int:
    """Stops calling getters (loaders) for good and waits up to timeout_ms
    for running ones; through CDLL, so the GIL is released while waiting.
    Called once at interpreter exit (see _loader)."""


@_bind("cache_sink_fail", [c_void_p, c_char_p], c_int32)
def cache_sink_fail(sink: Optional[int], message: bytes) -> int:
    """No errcheck: it is called from the loader trampoline, which must not
    raise."""


# ---- the hit path ------------------------------------------------------------

# cache_lookup_alloc(cache *c, const uint8_t *key, size_t key_len,
#                    cache_alloc_fn alloc) through PyDLL, returning what
# alloc returned as a Python object.  alloc is PyBytes_FromStringAndSize, so
# a hit is a new bytes object and anything else b"" (alloc(NULL, 0)).
# restype py_object takes over the reference alloc created (ctypes' O_get
# adds one and GetResult drops it again), so nothing leaks; a test checks.
#
# No argtypes, on purpose: converting each argument through declared
# argtypes costs about as much as the rest of the call (~25 ns an argument
# against ~25 ns for the engine's hit; bench/python/bench.py measures the
# call with and without them).  Callers pass pre-converted arguments:
#   lookup(handle_arg(h), key: bytes, len(key): int, LOOKUP_ALLOC)
# The pointers go as ctypes "cparam" objects (c_void_p.from_param(int)),
# which ctypes copies as they are, cheaper than a c_void_p instance (which
# it converts to such an object on every call) and unlike a plain int
# (which would go as a 32-bit C int).  The length does go as a C int, which
# the x86-64 and AArch64 calling conventions widen to the size_t the
# function reads (libffi sign-extends it; keys are at most 8 KiB, and a
# longer one is only looked up with a wrong length, a miss, before
# cache_get rejects it).
cache_lookup_alloc: Callable[[Any, bytes, int, Any], bytes] = _pydll.cache_lookup_alloc
cache_lookup_alloc.restype = ctypes.py_object  # type: ignore[attr-defined]
lookup = cache_lookup_alloc


# cache_lookup(cache *c, const uint8_t *key, size_t key_len): the same with
# the process-wide allocator set once below (cache_set_default_alloc), one
# argument less (~20 ns a hit).  Once set it is never unset, so it never
# returns NULL (which ctypes 3.11 would crash on for a py_object result):
# a freed cache is alloc(NULL, 0) = b"" as with cache_lookup_alloc.
cache_lookup: Callable[[Any, bytes, int], bytes] = _pydll.cache_lookup
cache_lookup.restype = ctypes.py_object  # type: ignore[attr-defined]
lookup3 = cache_lookup


def handle_arg(handle: Handle) -> Any:
    """A handle as a pre-converted argument for ``lookup``."""
    return c_void_p.from_param(handle.value or 0)


# The same function with argtypes, for measurement and for callers that
# prefer checked arguments.
# (Indexing makes a new function object; attribute access would share one.)
lookup_checked: Callable[[Any, bytes, int, Any], bytes] = _pydll["cache_lookup_alloc"]
lookup_checked.argtypes = [c_void_p, c_char_p, c_size_t, c_void_p]  # type: ignore[attr-defined]
lookup_checked.restype = ctypes.py_object  # type: ignore[attr-defined]

_ALLOC_ADDR = ctypes.cast(ctypes.pythonapi.PyBytes_FromStringAndSize, c_void_p).value
LOOKUP_ALLOC: Any = c_void_p.from_param(_ALLOC_ADDR)
"""``PyBytes_FromStringAndSize`` as a cache_alloc_fn, pre-converted."""

# cache_status cache_set_default_alloc(cache_alloc_fn alloc); no errcheck:
# CACHE_ALREADY_EXISTS is an answer (another binding was first).
cache_set_default_alloc: Callable[[Any], int] = _cdll.cache_set_default_alloc
cache_set_default_alloc.argtypes = [c_void_p]  # type: ignore[attr-defined]
cache_set_default_alloc.restype = c_int32  # type: ignore[attr-defined]
DEFAULT_ALLOC_SET: bool = cache_set_default_alloc(_ALLOC_ADDR) == CACHE_OK
"""Whether ``lookup3`` may be used: False only if another binding in this
process registered a different allocator first (then ``lookup`` is used)."""

# The batch hit path:
#   ptrdiff_t cache_lookup_many_alloc(cache *c, const uint8_t *keys,
#       size_t keys_len, size_t n, uint8_t sep, cache_alloc_fn alloc,
#       cache_store_fn store, void *ctx)
# called like `lookup`, with pre-converted arguments and no argtypes:
#   lookup_many(handle_arg(h), keys, len(keys), n, 0, LOOKUP_ALLOC,
#               STORE_LIST_ITEM, py_object(list_of_n))
# store is PyList_SetItem, which takes over the reference alloc made.
cache_lookup_many_alloc: Callable[..., int] = _pydll.cache_lookup_many_alloc
cache_lookup_many_alloc.restype = ctypes.c_ssize_t  # type: ignore[attr-defined]
lookup_many = cache_lookup_many_alloc

# ptrdiff_t cache_values_alloc(cache_value **values, size_t n,
#     cache_alloc_fn alloc, cache_store_fn store, void *ctx)
# through PyDLL (the GIL is held: alloc builds bytes objects), called like
# lookup_many: values_alloc(values_array, n, LOOKUP_ALLOC, STORE_LIST_ITEM,
# py_object(list_of_n)). It frees every value and NULLs the array.
cache_values_alloc: Callable[..., int] = _pydll.cache_values_alloc
cache_values_alloc.restype = ctypes.c_ssize_t  # type: ignore[attr-defined]
values_alloc = cache_values_alloc

STORE_LIST_ITEM: Any = c_void_p.from_param(ctypes.cast(ctypes.pythonapi.PyList_SetItem, c_void_p).value)
"""``PyList_SetItem`` as a cache_store_fn, pre-converted."""

# The zero-copy hit path (Cache.get_buffer):
#   cache_value *cache_lookup_value(cache *c, const uint8_t *key,
#       size_t key_len, cache_value_view *out)
# through PyDLL (it never blocks), called like `lookup` with pre-converted
# arguments and no argtypes:
#   lookup_value(handle_arg(h), key, len(key), out_arg)
# It returns the new value's handle (an int; None on a miss) and writes its
# data and length into *out, which the caller reads back (one call instead
# of three).
cache_lookup_value: Callable[[Any, bytes, int, Any], Optional[int]] = _pydll.cache_lookup_value
cache_lookup_value.restype = c_void_p  # type: ignore[attr-defined]
lookup_value = cache_lookup_value


class CacheValueView(Structure):
    """struct cache_value_view: where cache_lookup_value puts a value's data
    and length."""

    _fields_ = [("data", c_void_p), ("len", c_size_t)]


# cache_value_free through PyDLL, for the finalizer of a buffer view: it
# never blocks, and keeping the GIL saves its release and reacquire.
value_free_gil: Callable[[Optional[int]], None] = _pydll["cache_value_free"]
value_free_gil.argtypes = [c_void_p]  # type: ignore[attr-defined]
value_free_gil.restype = None  # type: ignore[attr-defined]

# The zero-copy hit path built with CPython's own functions (src/ffi/
# pyview.rs): cache_py_init takes the addresses of a few stable-ABI
# functions once (see cache.py, which decides whether to use it), then
#   cache_lookup_view(cache *c, const uint8_t *key, size_t key_len)
# through PyDLL returns a new read-only memoryview on a hit and None
# otherwise (never NULL once initialized: ctypes 3.11 would crash on that
# for a py_object result), called like `lookup` with pre-converted
# arguments and no argtypes:
#   lookup_view(handle_arg(h), key, len(key))


class CachePyApi(Structure):
    """struct cache_py_api: the CPython functions cache_py_init takes."""

    _fields_ = [
        ("size", c_size_t),
        ("object_size", ctypes.c_ssize_t),
        ("type_flags", c_uint32),
        ("none", c_void_p),
        ("type_from_spec", c_void_p),
        ("type_get_slot", c_void_p),
        ("type_generic_alloc", c_void_p),
        ("object_free", c_void_p),
        ("buffer_fill_info", c_void_p),
        ("memoryview_from_object", c_void_p),
        ("incref", c_void_p),
        ("decref", c_void_p),
        ("err_clear", c_void_p),
        ("cfunction_new", c_void_p),
        ("long_as_void_ptr", c_void_p),
        ("unicode_as_utf8_and_size", c_void_p),
    ]


# Through PyDLL: it calls into CPython, which needs the GIL.  No errcheck:
# a failure means "use the ctypes views" (cache.py), not an exception.
# Its second argument receives the builtin lookup_view(handle: int,
# key: str) get_buffer calls (a borrowed reference, valid for good).
cache_py_init: Callable[[Any, Any], int] = _pydll.cache_py_init
cache_py_init.argtypes = [POINTER(CachePyApi), POINTER(c_void_p)]  # type: ignore[attr-defined]
cache_py_init.restype = c_int32  # type: ignore[attr-defined]

cache_lookup_view: Callable[[Any, bytes, int], Optional[memoryview]] = _pydll.cache_lookup_view
cache_lookup_view.restype = ctypes.py_object  # type: ignore[attr-defined]
lookup_view = cache_lookup_view

# cache_py_value_view(cache_value *v): the same view of a value this
# process owns (a load's, from cache_get), taking the handle over; through
# PyDLL (it builds the memoryview). None for a freed handle or when CPython
# could not allocate; only called once cache_py_init succeeded.
cache_py_value_view: Callable[[Optional[int]], Optional[memoryview]] = _pydll.cache_py_value_view
cache_py_value_view.argtypes = [c_void_p]  # type: ignore[attr-defined]
cache_py_value_view.restype = ctypes.py_object  # type: ignore[attr-defined]


# Values held by cache_lookup_view's memoryviews now (a leak check);
# through PyDLL: with the GIL kept, no view can go during the call.
cache_py_live_views: Callable[[], int] = _pydll.cache_py_live_views
cache_py_live_views.argtypes = []  # type: ignore[attr-defined]
cache_py_live_views.restype = c_size_t  # type: ignore[attr-defined]


# ---- pools ---------------------------------------------------------------------


@_bind("cache_pool_new", [c_char_p, c_char_p, POINTER(c_void_p)], c_int32, status=True)
def cache_pool_new(listen_addr: bytes, self_url: Optional[bytes], out: Any) -> int: ...


@_bind(
    "cache_pool_new_with_options",
    [c_char_p, c_char_p, c_void_p, POINTER(c_void_p)],
    c_int32,
    status=True,
)
def cache_pool_new_with_options(listen_addr: bytes, self_url: Optional[bytes], options: Any, out: Any) -> int: ...


@_bind("cache_pool_options_new", [], c_void_p)
def cache_pool_options_new() -> Optional[int]: ...


@_bind("cache_pool_options_free", [c_void_p], None)
def cache_pool_options_free(options: Optional[int]) -> None: ...


@_bind("cache_pool_options_set_timeout_ms", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_pool_options_set_timeout_ms(options: Optional[int], ms: int) -> int: ...


@_bind("cache_pool_options_set_connect_timeout_ms", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_pool_options_set_connect_timeout_ms(options: Optional[int], ms: int) -> int: ...


@_bind("cache_pool_options_set_replicas", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_pool_options_set_replicas(options: Optional[int], replicas: int) -> int: ...


@_bind("cache_pool_options_set_base_path", [c_void_p, c_char_p], c_int32, status=True)
def cache_pool_options_set_base_path(options: Optional[int], base_path: bytes) -> int: ...


@_bind("cache_pool_options_set_secret", [c_void_p, c_char_p], c_int32, status=True)
def cache_pool_options_set_secret(options: Optional[int], secret: bytes) -> int: ...


@_bind("cache_pool_options_set_tls_cert", [c_void_p, c_char_p], c_int32, status=True)
def cache_pool_options_set_tls_cert(options: Optional[int], path: Optional[bytes]) -> int: ...


@_bind("cache_pool_options_set_tls_key", [c_void_p, c_char_p], c_int32, status=True)
def cache_pool_options_set_tls_key(options: Optional[int], path: Optional[bytes]) -> int: ...


@_bind("cache_pool_options_set_tls_ca", [c_void_p, c_char_p], c_int32, status=True)
def cache_pool_options_set_tls_ca(options: Optional[int], path: Optional[bytes]) -> int: ...


@_bind("cache_pool_options_set_tls_server_name", [c_void_p, c_char_p], c_int32, status=True)
def cache_pool_options_set_tls_server_name(options: Optional[int], name: Optional[bytes]) -> int: ...


@_bind("cache_pool_options_set_max_connections", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_pool_options_set_max_connections(options: Optional[int], n: int) -> int: ...


@_bind("cache_pool_options_set_header_timeout_ms", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_pool_options_set_header_timeout_ms(options: Optional[int], ms: int) -> int: ...


@_bind("cache_pool_options_set_idle_timeout_ms", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_pool_options_set_idle_timeout_ms(options: Optional[int], ms: int) -> int: ...


@_bind("cache_pool_options_set_body_timeout_ms", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_pool_options_set_body_timeout_ms(options: Optional[int], ms: int) -> int: ...


@_bind("cache_pool_options_set_max_body_bytes", [c_void_p, ctypes.c_uint64], c_int32, status=True)
def cache_pool_options_set_max_body_bytes(options: Optional[int], n: int) -> int: ...


@_bind("cache_pool_options_set_body_budget_bytes", [c_void_p, ctypes.c_uint64], c_int32, status=True)
def cache_pool_options_set_body_budget_bytes(options: Optional[int], n: int) -> int: ...


@_bind("cache_pool_options_set_max_header_bytes", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_pool_options_set_max_header_bytes(options: Optional[int], n: int) -> int: ...


@_bind("cache_pool_options_set_drain_ms", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_pool_options_set_drain_ms(options: Optional[int], ms: int) -> int: ...


@_bind("cache_pool_options_set_server_workers", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_pool_options_set_server_workers(options: Optional[int], n: int) -> int: ...


@_bind("cache_pool_options_set_max_batch_keys", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_pool_options_set_max_batch_keys(options: Optional[int], n: int) -> int: ...
@_bind("cache_pool_options_set_peers_from", [c_void_p, c_char_p], c_int32, status=True)
def cache_pool_options_set_peers_from(options: Optional[int], spec: Optional[bytes]) -> int: ...


@_bind("cache_pool_options_set_peers_refresh_ms", [c_void_p, ctypes.c_uint32], c_int32, status=True)
def cache_pool_options_set_peers_refresh_ms(options: Optional[int], ms: int) -> int: ...


@_bind("cache_pool_options_set_nameserver", [c_void_p, c_char_p], c_int32, status=True)
def cache_pool_options_set_nameserver(options: Optional[int], addr: Optional[bytes]) -> int: ...


@_bind("cache_pool_url", [c_void_p], c_char_p)
def cache_pool_url(p: Handle) -> Optional[bytes]: ...


@_bind(
    "cache_pool_set_peers",
    [c_void_p, POINTER(c_char_p), c_size_t],
    c_int32,
    status=True,
)
def cache_pool_set_peers(p: Handle, urls: Any, n: int) -> int: ...


@_bind("cache_pool_free", [c_void_p], None)
def cache_pool_free(p: Any) -> None: ...


# cache_status cache_pool_owner(const cache_pool *p, const uint8_t *key,
#     size_t key_len, char *buf, size_t cap, size_t *out_len)
# No errcheck: CACHE_BUFFER_TOO_SMALL is an answer (the length needed),
# which Pool.owner handles by retrying with a larger buffer.
@_bind(
    "cache_pool_owner",
    [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, POINTER(c_size_t)],
    c_int32,
)
def cache_pool_owner(p: Handle, key: bytes, key_len: int, buf: Any, cap: int, out_len: Any) -> int: ...


# cache_status cache_pool_peers(const cache_pool *p, char *buf, size_t cap,
#     size_t *out_len); no errcheck, as cache_pool_owner.
@_bind("cache_pool_peers", [c_void_p, c_char_p, c_size_t, POINTER(c_size_t)], c_int32)
def cache_pool_peers(p: Handle, buf: Any, cap: int, out_len: Any) -> int: ...


# ---- logging -------------------------------------------------------------------

# void (*cache_log_fn)(void *user_data, int32_t level, const char *target,
#                      const char *message)
LOG_FN = CFUNCTYPE(None, c_void_p, c_int32, c_char_p, c_char_p)


@_bind("cache_log_set", [LOG_FN, c_void_p, c_int32], c_int32, status=True)
def cache_log_set(log_fn: Any, user_data: Optional[int], min_level: int) -> int:
    """Installs (or, with a NULL log_fn, removes) the log callback; waits
    for calls of the previous one in progress (GIL released: CDLL)."""


@_bind("cache_log_set_level", [c_int32], c_int32)
def cache_log_set_level(min_level: int) -> int:
    """Changes the installed callback's minimum level; never blocks. No
    errcheck: it is called from the log callback, which must not raise."""
