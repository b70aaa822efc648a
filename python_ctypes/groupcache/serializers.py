"""Serializers for ``memoize``: how a function's results become the bytes a
cache holds and its peers send each other, and back.

A serializer is any object with ``encode(value) -> bytes`` and
``decode(data: bytes) -> value`` (the ``Serializer`` protocol).  ``memoize``
always takes one explicitly; there is no default, because the choice decides
what a peer can make this process do:

- ``Bytes``, ``Str`` and ``JSON`` decode into plain data only, whatever a
  peer (or anyone who can reach the pool's port) sends.
- ``Pickle`` round-trips almost any Python object, and unpickling runs code
  chosen by whoever produced the bytes. In a cluster, values arrive from
  other nodes over HTTP, and the peer port answers anyone who can reach it:
  ``Pickle`` lets any of them run code in this process. Use it only for a
  process-local cache, or a cluster on a network where every machine that
  can reach the peer port is trusted as much as this one. It is never chosen
  for you.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Callable, Dict, Optional, Protocol, TypeVar

__all__ = [
    "Serializer",
    "Bytes",
    "Str",
    "JSON",
    "Pickle",
    "BytesSerializer",
    "StrSerializer",
    "JSONSerializer",
    "PickleSerializer",
]

T = TypeVar("T")


class Serializer(Protocol[T]):
    """What ``memoize`` needs: a pair of functions that round-trip values of
    type ``T`` through bytes. ``decode(encode(v))`` must equal ``v``, on any
    node of the cluster (so: no process-specific state)."""

    def encode(self, value: T) -> bytes:
        """The bytes to cache for ``value``."""
        ...

    def decode(self, data: bytes) -> T:
        """The value back from cached bytes (possibly sent by a peer)."""
        ...


class BytesSerializer:
    """Values that are bytes already: stored as they are. ``encode`` also
    takes ``bytearray`` and ``memoryview``; ``decode`` returns ``bytes``."""

    def encode(self, value: bytes) -> bytes:
        """``value`` as ``bytes``; a ``str`` or non-bytes-like is a
        ``TypeError``."""
        if isinstance(value, bytes):
            return value
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        raise TypeError("the Bytes serializer takes bytes-like values, not %s" % type(value).__name__)

    def decode(self, data: bytes) -> bytes:
        """``data`` itself."""
        return data

    def __repr__(self) -> str:
        return "groupcache.serializers.Bytes"


class StrSerializer:
    """``str`` values, stored encoded (UTF-8 unless told otherwise)."""

    def __init__(self, encoding: str = "utf-8") -> None:
        self.encoding = encoding
        """The text encoding used both ways."""

    def encode(self, value: str) -> bytes:
        """``value`` encoded; a non-``str`` is a ``TypeError``."""
        if not isinstance(value, str):
            raise TypeError("the Str serializer takes str values, not %s" % type(value).__name__)
        return value.encode(self.encoding)

    def decode(self, data: bytes) -> str:
        """``data`` decoded (strictly: bad bytes raise)."""
        return data.decode(self.encoding)

    def __repr__(self) -> str:
        if self.encoding == "utf-8":
            return "groupcache.serializers.Str"
        return "groupcache.serializers.StrSerializer(%r)" % self.encoding


class JSONSerializer:
    """JSON-compatible values (dict, list, str, int, float, bool, None),
    stored as compact UTF-8 JSON. Decoding yields a fresh object on every
    call, so callers cannot change each other's results. Tuples come back as
    lists and dict keys as strings, as with ``json`` itself; ``default`` and
    ``object_hook`` are passed to ``json.dumps`` and ``json.loads`` for other
    types."""

    def __init__(
        self,
        *,
        default: Optional[Callable[[Any], Any]] = None,
        object_hook: Optional[Callable[[Dict[str, Any]], Any]] = None,
        sort_keys: bool = False,
    ) -> None:
        self.default = default
        """``json.dumps``' hook for objects JSON cannot encode."""
        self.object_hook = object_hook
        """``json.loads``' hook applied to every decoded object."""
        self.sort_keys = sort_keys
        """Whether object keys are written sorted."""

    def encode(self, value: Any) -> bytes:
        """``json.dumps(value)`` as UTF-8; what JSON cannot represent (and
        ``default`` does not convert) is a ``TypeError``; NaN and infinities
        are a ``ValueError`` (they are not JSON)."""
        return json.dumps(
            value,
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
            default=self.default,
            sort_keys=self.sort_keys,
        ).encode("utf-8")

    def decode(self, data: bytes) -> Any:
        """``json.loads`` of ``data``."""
        return json.loads(data, object_hook=self.object_hook)

    def __repr__(self) -> str:
        if self.default is None and self.object_hook is None and not self.sort_keys:
            return "groupcache.serializers.JSON"
        return "groupcache.serializers.JSONSerializer(...)"


class PickleSerializer:
    """Any picklable value, with ``pickle``.

    **Decoding runs code chosen by whoever produced the bytes.** In a
    cluster those bytes come from other nodes, over a port that answers
    anyone who can reach it. Use this only for a process-local cache or a
    fully trusted network; see the module's documentation. ``protocol`` is
    the pickle protocol (5 by default: every supported Python reads it)."""

    def __init__(self, protocol: int = 5) -> None:
        self.protocol = protocol
        """The pickle protocol ``encode`` writes."""

    def encode(self, value: Any) -> bytes:
        """``pickle.dumps(value)``."""
        return pickle.dumps(value, protocol=self.protocol)

    def decode(self, data: bytes) -> Any:
        """``pickle.loads(data)``: trusts ``data`` (see the class)."""
        return pickle.loads(data)  # noqa: S301 - the user chose Pickle by name

    def __repr__(self) -> str:
        return "groupcache.serializers.Pickle"


Bytes: Serializer[bytes] = BytesSerializer()
"""bytes values, stored as they are."""

Str: Serializer[str] = StrSerializer()
"""str values, stored as UTF-8."""

JSON: Serializer[Any] = JSONSerializer()
"""JSON-compatible values, stored as compact UTF-8 JSON."""

Pickle: Serializer[Any] = PickleSerializer()
"""Any picklable value. Unpickling what a peer sent runs code that peer
chose: only for process-local caches or fully trusted networks."""
