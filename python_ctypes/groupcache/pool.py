"""``Pool``: one node of a groupcache cluster (cache_pool_* in the header).

A pool binds ``listen`` and serves the peer protocol there on the library's
own threads; caches created with ``pool=`` share their keys with the
cluster set by ``set_peers``.  Several pools may live in one process.

The cache_pool_* functions are bound as optional: a library built before
they existed still imports, and only ``Pool()`` raises GroupcacheError.
"""

from __future__ import annotations

import ctypes
import weakref
from typing import Iterable, List, Optional

from . import _lib
from ._handle import Closable
from ._errors import CACHE_BUFFER_TOO_SMALL, CACHE_OK, ClosedError, GroupcacheError, error_for_status
from ._log import sync_log_level

__all__ = ["Pool"]


def _free(handle: int) -> None:
    # A finalizer: must not refer to the Pool.
    _lib.cache_pool_free(handle)


def _encode(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError("%s is str, not %s" % (what, type(text).__name__))
    return text.encode("utf-8")


class Pool(Closable):
    """This process's node in a cluster.

    ``listen``: the address to bind ("127.0.0.1:0" picks a free port).
    ``self_url``: how peers reach this node; default "http://<bound addr>".

    Options (None: the environment's GROUPCACHE_* variable, else the
    default; README.md has the table):
    ``timeout``: seconds a request to a peer may take before the get loads
    locally (default 2.0); ``connect_timeout``: seconds to connect (1.0);
    ``replicas``: points per node on the consistent hash (50; the same on
    every node); ``base_path``: the protocol's path prefix
    ("/_groupcache/"; the same on every node); ``secret``: a shared secret
    that signs every request between nodes, unsigned ones get 401 (the same
    on every node; without one the port serves cache contents to anyone
    who reaches it).

    Limits of the server that answers the other nodes:
    ``max_connections``: connections kept open at once; when full, a new
    one takes the place of the one that has waited longest without
    completing a request (default 0: half the process's soft fd limit, at
    most 16,384); ``header_timeout``: seconds a client has to send a
    request head (10.0); ``idle_timeout``: seconds a keep-alive connection
    may idle between requests (120.0); ``body_timeout``: seconds to send a
    request body (10.0); ``max_body_bytes``: largest request (and response)
    body (64 MiB + 64 KiB); ``body_budget_bytes``: request bodies held at
    once, all connections together (64 MiB); ``max_header_bytes``: largest
    request head (128 KiB); ``server_workers``: threads that run loaders
    for other nodes at once (64).
    """

    __slots__ = ("_handle", "_url", "_closed", "_finalizer", "__weakref__")

    def __init__(
        self,
        listen: str = "127.0.0.1:0",
        self_url: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = None,
        replicas: Optional[int] = None,
        base_path: Optional[str] = None,
        secret: Optional[str] = None,
        max_connections: Optional[int] = None,
        header_timeout: Optional[float] = None,
        idle_timeout: Optional[float] = None,
        body_timeout: Optional[float] = None,
        max_body_bytes: Optional[int] = None,
        body_budget_bytes: Optional[int] = None,
        max_header_bytes: Optional[int] = None,
        server_workers: Optional[int] = None,
    ) -> None:
        self._closed = True  # until the handle exists
        if not available():
            raise GroupcacheError(
                "%s has no peer pools yet (cache_pool_new is missing): rebuild "
                "it from a checkout that has them" % _lib.library_path
            )
        sync_log_level()  # before: the new pool logs that it serves
        opts = _lib.cache_pool_options_new()
        if not opts:  # a malformed GROUPCACHE_* variable
            raise ValueError((_lib.cache_last_error() or b"").decode("utf-8", "replace"))
        out = _lib.Handle()
        try:
            for value, setter in (
                (timeout, _lib.cache_pool_options_set_timeout_ms),
                (connect_timeout, _lib.cache_pool_options_set_connect_timeout_ms),
                (header_timeout, _lib.cache_pool_options_set_header_timeout_ms),
                (idle_timeout, _lib.cache_pool_options_set_idle_timeout_ms),
                (body_timeout, _lib.cache_pool_options_set_body_timeout_ms),
            ):
                if value is not None:
                    if not 0 < value * 1000 < 2**32:
                        raise ValueError("a timeout must be between 1 ms and 49 days, not %r s" % value)
                    setter(opts, max(1, round(value * 1000)))
            for name, value, bits, set_limit in (
                ("max_connections", max_connections, 32, _lib.cache_pool_options_set_max_connections),
                ("max_body_bytes", max_body_bytes, 64, _lib.cache_pool_options_set_max_body_bytes),
                ("body_budget_bytes", body_budget_bytes, 64, _lib.cache_pool_options_set_body_budget_bytes),
                ("max_header_bytes", max_header_bytes, 32, _lib.cache_pool_options_set_max_header_bytes),
                ("server_workers", server_workers, 32, _lib.cache_pool_options_set_server_workers),
            ):
                if value is not None:
                    # ctypes would wrap a negative or huge int silently.
                    if isinstance(value, bool) or not isinstance(value, int):
                        raise TypeError("%s is an int, not %s" % (name, type(value).__name__))
                    if not 0 <= value < 2**bits:
                        raise ValueError("%s out of range: %r" % (name, value))
                    set_limit(opts, value)
            if replicas is not None:
                _lib.cache_pool_options_set_replicas(opts, replicas)
            if base_path is not None:
                _lib.cache_pool_options_set_base_path(opts, _encode(base_path, "base_path"))
            if secret is not None:
                _lib.cache_pool_options_set_secret(opts, _encode(secret, "secret"))
            _lib.cache_pool_new_with_options(
                _encode(listen, "listen"),
                None if self_url is None else _encode(self_url, "self_url"),
                opts,
                ctypes.byref(out),
            )
        finally:
            _lib.cache_pool_options_free(opts)
        self._handle = out
        url = _lib.cache_pool_url(out)
        self._url = url.decode("utf-8", "replace") if url else ""
        self._finalizer = weakref.finalize(self, _free, out.value or 0)
        self._closed = False

    @property
    def url(self) -> str:
        """This node's URL, as the other nodes list it."""
        self._check_open()
        return self._url

    def set_peers(self, urls: Iterable[str]) -> None:
        """The whole cluster, this node included (as Go's HTTPPool.Set).
        A node missing from its own list owns no keys: a client only."""
        encoded: List[bytes] = [_encode(u, "a peer URL") for u in urls]
        self._check_open()
        array = (ctypes.c_char_p * max(1, len(encoded)))(*encoded)
        try:
            _lib.cache_pool_set_peers(self._handle, array, len(encoded))
        except ClosedError:
            raise ClosedError("the pool is closed", None) from None

    def owner(self, key: str) -> str:
        """The URL of the node that owns ``key`` by this node's current
        membership: the node whose loader loads it. This node's own URL when
        it owns the key or has no peers. For operators and tests ("which
        node loads this key?"); it asks no peer and never blocks."""
        if not isinstance(key, str):
            raise TypeError("keys are str, not %s" % type(key).__name__)
        k = key.encode("utf-8", "surrogateescape")
        self._check_open()
        n = ctypes.c_size_t()
        cap = 128
        while True:
            buf = ctypes.create_string_buffer(cap)
            status = _lib.cache_pool_owner(self._handle, k, len(k), buf, cap, ctypes.byref(n))
            if status == CACHE_OK:
                return buf.raw[: n.value].decode("utf-8", "replace")
            if status == CACHE_BUFFER_TOO_SMALL and n.value + 1 > cap:
                cap = n.value + 1  # the membership may change meanwhile: loop
                continue
            err = error_for_status(status, _lib._last_error())
            if isinstance(err, ClosedError):
                raise ClosedError("the pool is closed", None)
            raise err

    @property
    def closed(self) -> bool:
        """Whether close() ran."""
        return self._closed

    def close(self) -> None:
        """Stops serving and frees the node (may wait up to a second for
        requests being served). Its caches keep working as process-local
        caches; later calls on the pool raise ClosedError; a second close()
        does nothing."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()

    def _live_handle(self) -> _lib.Handle:
        self._check_open()
        return self._handle

    def _closed_message(self) -> str:
        return "the pool is closed"

    def __repr__(self) -> str:
        if getattr(self, "_closed", True):
            return "<groupcache.Pool closed>"
        return "<groupcache.Pool %s>" % self._url


def available() -> bool:
    """Whether the loaded library has the pool API."""
    return all(
        _lib.available(f)
        for f in (
            _lib.cache_pool_new,
            _lib.cache_pool_url,
            _lib.cache_pool_set_peers,
            _lib.cache_pool_free,
        )
    )
