# The stubs below carry signatures only; their bodies never run.
# mypy: disable-error-code="empty-body"
"""Finds and loads libgroupcache, and declares its C functions once.

Where the library is looked for, in this order (API.md):

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
exception with ``cache_last_error()``'s text.  The one exception is the hot
``lookup`` below, which has no ``argtypes`` on purpose (see there).
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
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, TypeVar

from ._errors import CACHE_OK, GroupcacheError, error_for_status

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
    optional: bool = False,
) -> Callable[[F], F]:
    """Declares the C function ``name`` once, in the style of
    llama-cpp-python: the decorated stub carries the Python signature for
    type checkers; the call goes straight to ctypes.

    ``status``: the function returns a cache_status; a non-OK one raises.
    ``optional``: the function may be missing from an older library (the
    pool API); calling it then raises GroupcacheError instead of failing at
    import.
    """

    def decorate(stub: F) -> F:
        try:
            fn = getattr(_cdll, name)
        except AttributeError:
            if not optional:
                raise
            return _missing(name, stub)
        fn.argtypes = list(argtypes)
        fn.restype = restype
        if status:
            fn.errcheck = _check_status
        fn.__doc__ = stub.__doc__
        return fn  # type: ignore[no-any-return]

    return decorate


def _missing(name: str, stub: F) -> F:
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise GroupcacheError(
            "%s has no %s(): it was built before that function existed; "
            "rebuild it (cargo build --release)" % (library_path, name)
        )

    unavailable.__name__ = name
    unavailable.__doc__ = stub.__doc__
    unavailable.available = False  # type: ignore[attr-defined]
    return unavailable  # type: ignore[return-value]


def available(fn: Callable[..., Any]) -> bool:
    """Whether a function bound with ``optional=True`` exists."""
    return getattr(fn, "available", True) is not False


# ---- errors, version, demo -------------------------------------------------


@_bind("cache_last_error", [], c_char_p)
def cache_last_error() -> Optional[bytes]:
    """The message for the last non-OK status on this thread."""
    ...


@_bind("cache_version", [], c_char_p)
def cache_version() -> bytes:
    """The library version, e.g. b"0.1.0"."""
    ...


@_bind("say_hi", [], None)
def say_hi() -> None:
    """Prints one greeting line to stdout."""
    ...


# ---- caches ------------------------------------------------------------------

# int32_t (*cache_getter_fn)(void *user_data, const uint8_t *key,
#                            size_t key_len, cache_sink *sink)
GETTER_FN = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_size_t, c_void_p)


class CacheStats(Structure):
    """struct cache_stats."""

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


@_bind("cache_free", [c_void_p], None)
def cache_free(c: Any) -> None: ...


@_bind("cache_get", [c_void_p, c_char_p, c_size_t, POINTER(c_void_p)], c_int32, status=True)
def cache_get(c: Handle, key: bytes, key_len: int, out: Any) -> int: ...


@_bind("cache_value_data", [c_void_p], c_void_p)
def cache_value_data(v: Handle) -> Optional[int]: ...


@_bind("cache_value_len", [c_void_p], c_size_t)
def cache_value_len(v: Handle) -> int: ...


@_bind("cache_value_free", [c_void_p], None)
def cache_value_free(v: Handle) -> None: ...


@_bind(
    "cache_set",
    [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_int64],
    c_int32,
    status=True,
)
def cache_set(c: Handle, key: bytes, key_len: int, value: bytes, value_len: int, ttl_ms: int) -> int: ...


@_bind("cache_remove", [c_void_p, c_char_p, c_size_t], c_int32, status=True)
def cache_remove(c: Handle, key: bytes, key_len: int) -> int: ...


@_bind("cache_stats_get", [c_void_p, POINTER(CacheStats)], c_int32, status=True)
def cache_stats_get(c: Handle, out: Any) -> int: ...


@_bind("cache_sink_set", [c_void_p, c_char_p, c_size_t, c_int64], c_int32, status=True)
def cache_sink_set(sink: Optional[int], value: bytes, value_len: int, ttl_ms: int) -> int: ...


@_bind("cache_getters_stop", [ctypes.c_uint32], c_int32)
def cache_getters_stop(timeout_ms: int) -> int:
    """Stops calling getters (loaders) for good and waits up to timeout_ms
    for running ones; through CDLL, so the GIL is released while waiting.
    Called once at interpreter exit (see _loader)."""
    ...


@_bind("cache_sink_fail", [c_void_p, c_char_p], c_int32)
def cache_sink_fail(sink: Optional[int], message: bytes) -> int:
    """No errcheck: it is called from the loader trampoline, which must not
    raise."""
    ...


# ---- the hit path ------------------------------------------------------------

# cache_lookup_alloc(cache *c, const uint8_t *key, size_t key_len,
#                    cache_alloc_fn alloc) through PyDLL, returning what
# alloc returned as a Python object.  alloc is PyBytes_FromStringAndSize, so
# a hit is a new bytes object and anything else b"" (alloc(NULL, 0)).
# restype py_object takes over the reference alloc created (ctypes' O_get
# adds one and GetResult drops it again), so nothing leaks; a test checks.
#
# No argtypes, on purpose: converting through declared argtypes costs about
# as much as the rest of the call (PERFORMANCE-NOTES.md; bench/python
# measures both).  Callers pass pre-converted arguments:
#   lookup(handle_arg(h), key: bytes, len(key): int, LOOKUP_ALLOC)
# The pointers go as ctypes "cparam" objects (c_void_p.from_param(int)),
# which ctypes copies as they are, cheaper than a c_void_p instance (which
# it converts to such an object on every call) and unlike a plain int
# (which would go as a 32-bit C int).  The length does go as a C int, which
# the x86-64 and AArch64 calling conventions widen to the size_t the
# function reads (libffi sign-extends it; keys are at most 8 KiB, and a
# longer one is only looked up with a wrong length, a miss, before
# cache_get rejects it).
lookup: Callable[[Any, bytes, int, Any], bytes] = _pydll.cache_lookup_alloc
_pydll.cache_lookup_alloc.restype = ctypes.py_object


# cache_lookup(cache *c, const uint8_t *key, size_t key_len): the same with
# the process-wide allocator set once below (cache_set_default_alloc), one
# argument less (~20 ns a hit).  Once set it is never unset, so it never
# returns NULL (which ctypes 3.11 would crash on for a py_object result):
# a freed cache is alloc(NULL, 0) = b"" as with cache_lookup_alloc.
lookup3: Callable[[Any, bytes, int], bytes] = _pydll.cache_lookup
_pydll.cache_lookup.restype = ctypes.py_object


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

_set_default_alloc = _cdll.cache_set_default_alloc
_set_default_alloc.argtypes = [c_void_p]
_set_default_alloc.restype = c_int32
DEFAULT_ALLOC_SET: bool = _set_default_alloc(_ALLOC_ADDR) == 0
"""Whether ``lookup3`` may be used: False only if another binding in this
process registered a different allocator first (then ``lookup`` is used)."""

# The batch hit path, if the library has it (bench/python/FFI-PROPOSAL.md):
#   ptrdiff_t cache_lookup_many_alloc(cache *c, const uint8_t *keys,
#       size_t keys_len, size_t n, uint8_t sep, cache_alloc_fn alloc,
#       cache_store_fn store, void *ctx)
# called like `lookup`, with pre-converted arguments and no argtypes:
#   lookup_many(handle_arg(h), keys, len(keys), n, 0, LOOKUP_ALLOC,
#               STORE_LIST_ITEM, py_object(list_of_n))
# store is PyList_SetItem, which takes over the reference alloc made.
lookup_many: Optional[Callable[..., int]]
try:
    lookup_many = _pydll.cache_lookup_many_alloc
    _pydll.cache_lookup_many_alloc.restype = ctypes.c_ssize_t
except AttributeError:
    lookup_many = None

STORE_LIST_ITEM: Any = c_void_p.from_param(ctypes.cast(ctypes.pythonapi.PyList_SetItem, c_void_p).value)
"""``PyList_SetItem`` as a cache_store_fn, pre-converted."""

# ---- pools (optional until the peers work lands in the library) -------------


@_bind("cache_pool_new", [c_char_p, c_char_p, POINTER(c_void_p)], c_int32, status=True, optional=True)
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


@_bind("cache_pool_url", [c_void_p], c_char_p, optional=True)
def cache_pool_url(p: Handle) -> Optional[bytes]: ...


@_bind(
    "cache_pool_set_peers",
    [c_void_p, POINTER(c_char_p), c_size_t],
    c_int32,
    status=True,
    optional=True,
)
def cache_pool_set_peers(p: Handle, urls: Any, n: int) -> int: ...


@_bind("cache_pool_free", [c_void_p], None, optional=True)
def cache_pool_free(p: Any) -> None: ...


# cache_status cache_pool_owner(const cache_pool *p, const uint8_t *key,
#     size_t key_len, char *buf, size_t cap, size_t *out_len)
# No errcheck: CACHE_BUFFER_TOO_SMALL is an answer (the length needed),
# which Pool.owner handles by retrying with a larger buffer.
@_bind(
    "cache_pool_owner",
    [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, POINTER(c_size_t)],
    c_int32,
    optional=True,
)
def cache_pool_owner(p: Handle, key: bytes, key_len: int, buf: Any, cap: int, out_len: Any) -> int: ...


# ---- logging -------------------------------------------------------------------

# void (*cache_log_fn)(void *user_data, int32_t level, const char *target,
#                      const char *message)
LOG_FN = CFUNCTYPE(None, c_void_p, c_int32, c_char_p, c_char_p)


@_bind("cache_log_set", [LOG_FN, c_void_p, c_int32], c_int32, status=True, optional=True)
def cache_log_set(log_fn: Any, user_data: Optional[int], min_level: int) -> int:
    """Installs (or, with a NULL log_fn, removes) the log callback; waits
    for calls of the previous one in progress (GIL released: CDLL)."""
    ...


@_bind("cache_log_set_level", [c_int32], c_int32, optional=True)
def cache_log_set_level(min_level: int) -> int:
    """Changes the installed callback's minimum level; never blocks. No
    errcheck: it is called from the log callback, which must not raise."""
    ...
