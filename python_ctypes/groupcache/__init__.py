"""groupcache: a caching and cache-filling library that shards keys across
its peers (after golang/groupcache), through ctypes over its Rust C library.

    import groupcache

    def load_user(key: str) -> bytes | None:
        return db.fetch(key)            # None: the key does not exist

    with groupcache.Cache("users", max_bytes=64 << 20, loader=load_user) as users:
        users.get("42")                 # loads once, then served from memory
        users["42"]                     # the same
        await users.aget("42")          # from asyncio, without blocking the loop

The library is found at $GROUPCACHE_LIB, in this package's folder, or in
target/release/ of the checkout the package sits in; ``library_path`` says
which was loaded.
"""

from __future__ import annotations

import sys

from . import _lib
from ._errors import (
    AlreadyExistsError,
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
from ._loader import Loader, LoaderResult, Value
from ._version import __version__
from .cache import Cache, Stats
from .pool import Pool

__all__ = [
    "__version__",
    "library_path",
    "library_version",
    "say_hi",
    "Cache",
    "Pool",
    "Stats",
    "Loader",
    "LoaderResult",
    "Value",
    "GroupcacheError",
    "NotFoundError",
    "InvalidArgumentError",
    "LoaderError",
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
