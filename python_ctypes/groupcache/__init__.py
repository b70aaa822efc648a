"""groupcache: a caching and cache-filling library that shards keys across
its peers (after golang/groupcache), through ctypes over its Rust C library.

    import groupcache

    def load_user(key: str) -> bytes | None:
        return db.fetch(key)            # None: the key does not exist

    with groupcache.Cache("users", max_bytes=64 << 20, loader=load_user) as users:
        users.get("42")                 # loads once, then served from memory
        users["42"]                     # the same
        await users.aget("42")          # from asyncio, without blocking the loop

    @groupcache.memoize("squares", key=str, key_to_args=lambda k: (int(k),),
                        serializer=groupcache.serializers.JSON)
    def square(n: int) -> int:
        return n * n                    # runs once per n, then from the cache

The library's log messages (a peer that fails, an error its server answers
a peer with, a pool starting or stopping) go to
``logging.getLogger("groupcache")``, only for the levels that logger emits
(``TRACE`` is below ``DEBUG``); each record's ``groupcache_target`` says
which part of the library logged. The hit path never logs.

The library is found at $GROUPCACHE_LIB, in this package's folder, or in
target/release/ of the checkout the package sits in; ``library_path`` says
which was loaded.
"""

from __future__ import annotations

import sys

from . import _lib, serializers
from ._errors import (
    AlreadyExistsError,
    BatchError,
    ClosedError,
    GroupcacheError,
    GroupcacheOSError,
    InternalError,
    InvalidArgumentError,
    LoaderError,
    NotFoundError,
    PeerError,
    TimeoutError,
)
from ._loader import Loader, LoaderMany, LoaderResult, Value
from ._log import TRACE, sync_log_level
from ._memoize import Memoized, memoize
from ._version import __version__
from .cache import Cache, CacheInfo, Stats
from .pool import Pool

__all__ = [
    "__version__",
    "library_path",
    "library_version",
    "say_hi",
    "Cache",
    "Pool",
    "Stats",
    "CacheInfo",
    "memoize",
    "Memoized",
    "serializers",
    "sync_log_level",
    "TRACE",
    "Loader",
    "LoaderResult",
    "LoaderMany",
    "Value",
    "GroupcacheError",
    "NotFoundError",
    "InvalidArgumentError",
    "LoaderError",
    "BatchError",
    "PeerError",
    "TimeoutError",
    "ClosedError",
    "AlreadyExistsError",
    "GroupcacheOSError",
    "InternalError",
]

library_path: str = _lib.library_path
"""The shared library in use."""


def library_version() -> str:
    """The loaded library's version (cache_version())."""
    return _lib.cache_version().decode("ascii")


def say_hi() -> None:
    """Prints the library's greeting line (the Go c-shared article's demo)."""
    sys.stdout.flush()  # the library writes to fd 1 directly
    _lib.say_hi()
