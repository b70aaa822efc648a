"""``Pool``: one node of a groupcache cluster (cache_pool_* in the header).

A pool binds ``listen`` and serves the peer protocol there on the library's
own threads; caches created with ``pool=`` share their keys with the
cluster set by ``set_peers``.  Several pools may live in one process.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from typing import Any, Callable, Iterable, List, Optional, Tuple, Union

from . import _lib
from ._errors import CACHE_BUFFER_TOO_SMALL, CACHE_OK, ClosedError, error_for_status
from ._handle import Closable
from ._keys import encode_key
from ._log import sync_log_level

__all__ = ["Pool"]


def _free(handle: int) -> None:
    # A finalizer: must not refer to the Pool.
    _lib.cache_pool_free(handle)


def _encode(text: str, what: str) -> bytes:
    """A string argument as the NUL-terminated bytes C takes. A NUL inside
    would cut it short there (``"a\\0b"`` would mean ``"a"``): refused."""
    if not isinstance(text, str):
        raise TypeError("%s is str, not %s" % (what, type(text).__name__))
    if "\0" in text:
        raise ValueError("%s contains a NUL character: %r" % (what, text))
    return text.encode("utf-8")


MAX_REPLICAS = 10_000
"""The most points per node on the consistent hash (``replicas``)."""

_MAX_MS = 2**32 - 1  # the C setters take uint32_t milliseconds


def _timeout_ms(value: object, what: str) -> int:
    """Seconds to the library's milliseconds: 1 ms to about 49.7 days,
    checked here, before ctypes would wrap or truncate it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%s is a number of seconds, not %s" % (what, type(value).__name__))
    ms = value * 1000
    if not 0 < ms <= _MAX_MS:  # also NaN and infinities
        raise ValueError("%s must be more than 0 and at most %d seconds, not %r" % (what, _MAX_MS // 1000, value))
    return min(_MAX_MS, max(1, round(ms)))


def _drain_ms(value: object) -> int:
    """``drain`` seconds to milliseconds: 0 (no drain) to about 49.7 days."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("drain is a number of seconds, not %s" % type(value).__name__)
    ms = value * 1000
    if not 0 <= ms <= _MAX_MS:  # also NaN and infinities
        raise ValueError("drain must be 0 to %d seconds, not %r" % (_MAX_MS // 1000, value))
    return round(ms)
MIN_PEERS_REFRESH = 0.1
"""The shortest ``peers_refresh``, in seconds."""
StrPath = Union[str, "os.PathLike[str]"]


def _path(value: object, what: str) -> bytes:
    """A file path (str or os.PathLike) as the bytes C takes."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError("%s is a path (str or os.PathLike), not %s" % (what, type(value).__name__))
    if not value:
        raise ValueError("%s is empty" % what)
    return _encode(value, what)


def _replicas(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("replicas is an int, not %s" % type(value).__name__)
    if not 1 <= value <= MAX_REPLICAS:
        raise ValueError("replicas must be 1 to %d, not %d" % (MAX_REPLICAS, value))
    return value


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
    that signs every request between nodes, bound to the node it is
    addressed to; requests not signed for this node get 401 (the same on
    every node, and ``self_url`` must be this node's URL as the peer lists
    spell it; without a secret the port serves cache contents to anyone
    who reaches it).

    Membership from DNS, instead of ``set_peers``: ``peers_from`` is
    "dns+http://NAME:PORT" (a peer "http://ADDR:PORT" per A and AAAA record
    of NAME), "dns+http://NAME:FIRST-LAST" (a port range: a peer per
    address per port, for several worker processes per host, each a node
    on its own port), "dns+srv+http://_service._proto.NAME" (SRV records),
    or the same with "https". NAME is looked up when the pool is made (the
    constructor waits for the answer, at most 5 s) and every
    ``peers_refresh`` seconds (default 5.0; at least 0.1), as
    /etc/resolv.conf and /etc/hosts say, or at ``nameserver`` ("IP:PORT").
    The peers are the URLs found, sorted: every node computes the same
    list, and finds itself by ``self_url`` (the default,
    "http://<bound address>", matches when it binds the address DNS
    gives). A lookup that fails or finds nothing keeps the last good
    membership. ``set_peers`` then raises ``ValueError``. See
    docs/operations.md, "Membership from DNS".
    TLS between nodes (README.md, docs/operations.md): ``tls_cert`` and
    ``tls_key``: PEM files of this node's certificate chain and key; with
    them the node serves https only, ``self_url`` defaults to
    "https://<bound addr>" and every peer URL must be https:// (a cluster
    does not mix http and https). ``tls_ca``: PEM file of the CA that
    peers' certificates must chain to: servers are checked against it and
    clients are asked for a certificate from it (mutual TLS; works with
    ``secret`` too): one that does not verify fails the handshake, and a
    client that presents none (a readiness probe) is answered
    ``GET``/``HEAD /healthz`` only, 403 for everything else. The files are
    read when the pool is made (a bad one is a ``ValueError``) and again
    when they change (new connections use the new certificate).
    ``tls_server_name``: the DNS name every peer's certificate is checked
    against instead of the host of its URL (the connection still goes to
    the URL's address): for IP-address URLs from ``peers_from`` and one
    certificate naming the cluster (e.g. the headless Service's name).

    Prefork servers (gunicorn, uWSGI, multiprocessing): create pools and
    caches in each worker after the fork (gunicorn's ``post_fork``; see
    examples/prefork). A pool created before the fork is, in the child, a
    client-only node: it reaches its peers on connections of its own,
    serves nothing (the parent keeps the port) and fetches the keys the
    parent owns from the parent. Every method works in the child.

    Arguments are checked here: a NUL inside a string, or ``replicas``
    outside 1 to 10000, or a timeout outside 1 ms to about 49.7 days, is
    a ``ValueError`` naming it.

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
    for other nodes at once (64); ``max_batch_keys``: most keys in one
    batch request between nodes (1024; the same on every node).

    ``drain``: seconds ``close()`` keeps the node serving before it stops
    accepting, while ``GET /healthz`` on the peer port answers 503 instead
    of 200, so that readiness probes and DNS-based membership drop the node
    while its peers' requests are still answered (default 0: no drain;
    ``close()`` blocks for this long). See docs/operations.md, "Health and
    shutdown".
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
        drain: Optional[float] = None,
        max_batch_keys: Optional[int] = None,
        peers_from: Optional[str] = None,
        peers_refresh: Optional[float] = None,
        nameserver: Optional[str] = None,
        tls_cert: Optional[StrPath] = None,
        tls_key: Optional[StrPath] = None,
        tls_ca: Optional[StrPath] = None,
        tls_server_name: Optional[str] = None,
    ) -> None:
        self._closed = True  # until the handle exists
        # Every argument is checked before anything is made: ctypes would
        # wrap an int to 32 bits and C would stop a string at a NUL.
        timeout_ms = None if timeout is None else _timeout_ms(timeout, "timeout")
        connect_ms = None if connect_timeout is None else _timeout_ms(connect_timeout, "connect_timeout")
        replicas = None if replicas is None else _replicas(replicas)
        base_path_b = None if base_path is None else _encode(base_path, "base_path")
        secret_b = None if secret is None else _encode(secret, "secret")
        drain_ms = None if drain is None else _drain_ms(drain)
        tls = [
            (None if v is None else _path(v, name), setter)
            for name, v, setter in (
                ("tls_cert", tls_cert, _lib.cache_pool_options_set_tls_cert),
                ("tls_key", tls_key, _lib.cache_pool_options_set_tls_key),
                ("tls_ca", tls_ca, _lib.cache_pool_options_set_tls_ca),
            )
        ]
        server_name_b = None if tls_server_name is None else _encode(tls_server_name, "tls_server_name")
        listen_b = _encode(listen, "listen")
        self_url_b = None if self_url is None else _encode(self_url, "self_url")
        peers_from_b = None if peers_from is None else _encode(peers_from, "peers_from")
        nameserver_b = None if nameserver is None else _encode(nameserver, "nameserver")
        refresh_ms = None
        if peers_refresh is not None:
            refresh_ms = _timeout_ms(peers_refresh, "peers_refresh")
            if peers_refresh < MIN_PEERS_REFRESH:
                raise ValueError(
                    "peers_refresh must be at least %s seconds, not %r" % (MIN_PEERS_REFRESH, peers_refresh)
                )
        sync_log_level()  # before: the new pool logs that it serves
        opts = _lib.cache_pool_options_new()
        if not opts:  # a malformed GROUPCACHE_* variable
            raise ValueError((_lib.cache_last_error() or b"").decode("utf-8", "replace"))
        out = _lib.Handle()
        try:
            if timeout_ms is not None:
                _lib.cache_pool_options_set_timeout_ms(opts, timeout_ms)
            if connect_ms is not None:
                _lib.cache_pool_options_set_connect_timeout_ms(opts, connect_ms)
            for what, value, setter in (
                ("header_timeout", header_timeout, _lib.cache_pool_options_set_header_timeout_ms),
                ("idle_timeout", idle_timeout, _lib.cache_pool_options_set_idle_timeout_ms),
                ("body_timeout", body_timeout, _lib.cache_pool_options_set_body_timeout_ms),
            ):
                if value is not None:
                    setter(opts, _timeout_ms(value, what))
            for name, value, bits, set_limit in (
                ("max_connections", max_connections, 32, _lib.cache_pool_options_set_max_connections),
                ("max_body_bytes", max_body_bytes, 64, _lib.cache_pool_options_set_max_body_bytes),
                ("body_budget_bytes", body_budget_bytes, 64, _lib.cache_pool_options_set_body_budget_bytes),
                ("max_header_bytes", max_header_bytes, 32, _lib.cache_pool_options_set_max_header_bytes),
                ("server_workers", server_workers, 32, _lib.cache_pool_options_set_server_workers),
                ("max_batch_keys", max_batch_keys, 32, _lib.cache_pool_options_set_max_batch_keys),
            ):
                if value is not None:
                    # ctypes would wrap a negative or huge int silently.
                    if isinstance(value, bool) or not isinstance(value, int):
                        raise TypeError("%s is an int, not %s" % (name, type(value).__name__))
                    if not 0 <= value < 2**bits:
                        raise ValueError("%s out of range: %r" % (name, value))
                    set_limit(opts, value)
            optional: Tuple[Tuple[Any, Callable[..., int]], ...] = (
                (replicas, _lib.cache_pool_options_set_replicas),
                (base_path_b, _lib.cache_pool_options_set_base_path),
                (secret_b, _lib.cache_pool_options_set_secret),
                (drain_ms, _lib.cache_pool_options_set_drain_ms),
                (peers_from_b, _lib.cache_pool_options_set_peers_from),
                (refresh_ms, _lib.cache_pool_options_set_peers_refresh_ms),
                (nameserver_b, _lib.cache_pool_options_set_nameserver),
                *tls,
                (server_name_b, _lib.cache_pool_options_set_tls_server_name),
            )
            for arg, set_arg in optional:
                if arg is not None:
                    set_arg(opts, arg)
            _lib.cache_pool_new_with_options(listen_b, self_url_b, opts, ctypes.byref(out))
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
        A node missing from its own list owns no keys: a client only.
        ``ValueError`` for a pool whose peers come from ``peers_from``."""
        encoded: List[bytes] = [_encode(u, "a peer URL") for u in urls]
        self._check_open()
        array = (ctypes.c_char_p * max(1, len(encoded)))(*encoded)
        try:
            _lib.cache_pool_set_peers(self._handle, array, len(encoded))
        except ClosedError:
            raise ClosedError("the pool is closed", None) from None

    @property
    def peers(self) -> List[str]:
        """The membership: the URLs last given to ``set_peers``, or found by
        ``peers_from`` (sorted). For operators and tests ("which nodes does
        this node see?"); never blocks."""
        self._check_open()
        return self._text(256, lambda buf, cap, n: _lib.cache_pool_peers(self._handle, buf, cap, n)).splitlines()

    def owner(self, key: str) -> str:
        """The URL of the node that owns ``key`` by this node's current
        membership: the node whose loader loads it. This node's own URL when
        it owns the key or has no peers. For operators and tests ("which
        node loads this key?"); it asks no peer and never blocks."""
        k = encode_key(key)
        self._check_open()
        return self._text(128, lambda buf, cap, n: _lib.cache_pool_owner(self._handle, k, len(k), buf, cap, n))

    def _text(self, cap: int, call: Callable[[Any, int, Any], int]) -> str:
        """What ``call(buf, cap, &len)`` (cache_pool_peers, cache_pool_owner)
        writes, with a buffer grown until it fits (the membership may change
        between two calls: loop)."""
        n = ctypes.c_size_t()
        while True:
            buf = ctypes.create_string_buffer(cap)
            status = call(buf, cap, ctypes.byref(n))
            if status == CACHE_OK:
                return buf.raw[: n.value].decode("utf-8", "replace")
            if status == CACHE_BUFFER_TOO_SMALL and n.value + 1 > cap:
                cap = n.value + 1
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
        """Stops serving and frees the node (first, with ``drain``, goes on
        serving for that long with ``GET /healthz`` answering 503; then may
        wait up to a second for requests being served). Its caches keep working as process-local
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

