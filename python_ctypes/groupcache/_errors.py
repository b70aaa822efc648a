"""The exceptions, one per failing ``cache_status``, and the mapping to them.

Every error derives from :class:`GroupcacheError` and carries the library's
status code (``.status``) and message.  Where a built-in exception means the
same thing, the error derives from it too, so code that knows nothing about
groupcache still catches it: a missing key is a ``KeyError``, a bad argument
a ``ValueError``, a timeout a ``TimeoutError``, an OS failure an ``OSError``.
"""

from __future__ import annotations

import builtins
from typing import Dict, Mapping, Optional, Type

__all__ = [
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
    "error_for_status",
]

# The values of enum cache_status in include/groupcache.h.
CACHE_OK = 0
CACHE_NOT_FOUND = 1
CACHE_INVALID_ARGUMENT = 2
CACHE_LOADER_FAILED = 3
CACHE_PEER_FAILED = 4
CACHE_TIMEOUT = 5
CACHE_CLOSED = 6
CACHE_BUFFER_TOO_SMALL = 7
CACHE_ALREADY_EXISTS = 8
CACHE_IO = 9
CACHE_PANIC = 10
CACHE_IN_PROGRESS = 11  # cache_get_slice only: never raised

_STATUS_NAMES = {
    CACHE_OK: "CACHE_OK",
    CACHE_NOT_FOUND: "CACHE_NOT_FOUND",
    CACHE_INVALID_ARGUMENT: "CACHE_INVALID_ARGUMENT",
    CACHE_LOADER_FAILED: "CACHE_LOADER_FAILED",
    CACHE_PEER_FAILED: "CACHE_PEER_FAILED",
    CACHE_TIMEOUT: "CACHE_TIMEOUT",
    CACHE_CLOSED: "CACHE_CLOSED",
    CACHE_BUFFER_TOO_SMALL: "CACHE_BUFFER_TOO_SMALL",
    CACHE_ALREADY_EXISTS: "CACHE_ALREADY_EXISTS",
    CACHE_IO: "CACHE_IO",
    CACHE_PANIC: "CACHE_PANIC",
    CACHE_IN_PROGRESS: "CACHE_IN_PROGRESS",
}


class GroupcacheError(Exception):
    """Base of every error this package raises.

    ``status`` is the library's ``cache_status`` code (None when the error
    was found on the Python side).
    """

    status: Optional[int]
    """The library's ``cache_status`` code; None for errors found in Python."""

    def __init__(self, message: object = "", status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


class NotFoundError(GroupcacheError, KeyError):
    """The loader (here or at the key's owner) said the key does not exist.
    A ``KeyError``: ``str()`` is the key's repr, as for a dict."""


class InvalidArgumentError(GroupcacheError, ValueError):
    """A bad name, key, length, URL, or a misuse such as a loader waiting on
    its own load."""


class LoaderError(GroupcacheError):
    """The loader failed: it raised (the exception is chained as
    ``__cause__`` when it ran in this process), or returned a value of the
    wrong type. Nothing was cached."""


class BatchError(LoaderError):
    """``get_many``/``aget_many``: some keys failed (a loader error, a
    timeout...). Raised once the whole batch is done, so nothing is lost:
    ``errors`` maps each failed key to its own exception (a
    ``LoaderError``, ``TimeoutError``...), ``results`` holds the values of
    the keys that did load (keys that do not exist are in neither, as in
    ``get_many``'s result)."""

    errors: Dict[str, GroupcacheError]
    """Each failed key's exception."""
    results: Dict[str, bytes]
    """The values of the keys that loaded: what ``get_many`` would have
    returned for them."""

    def __init__(self, errors: Mapping[str, GroupcacheError], results: Dict[str, bytes]) -> None:
        shown = "; ".join("%r: %s" % (k, e) for k, e in list(errors.items())[:3])
        more = " ..." if len(errors) > 3 else ""
        super().__init__(
            "%d key%s failed: %s%s" % (len(errors), "" if len(errors) == 1 else "s", shown, more),
            CACHE_LOADER_FAILED,
        )
        self.errors = dict(errors)
        self.results = results


class PeerError(GroupcacheError):
    """A peer could not be reached or answered badly, and no fallback
    applied."""


class TimeoutError(GroupcacheError, builtins.TimeoutError):  # noqa: A001
    """A wait exceeded its deadline."""


class ClosedError(GroupcacheError):
    """The cache or pool was closed (or is closing)."""


class AlreadyExistsError(GroupcacheError, ValueError):
    """A name is already in use, e.g. a cache name within a pool."""


class GroupcacheOSError(GroupcacheError, OSError):
    """An operating-system error, e.g. the listen address cannot be bound."""


class InternalError(GroupcacheError):
    """An internal bug of the library was caught at its boundary."""


_ERRORS: Dict[int, Type[GroupcacheError]] = {
    CACHE_NOT_FOUND: NotFoundError,
    CACHE_INVALID_ARGUMENT: InvalidArgumentError,
    CACHE_LOADER_FAILED: LoaderError,
    CACHE_PEER_FAILED: PeerError,
    CACHE_TIMEOUT: TimeoutError,
    CACHE_CLOSED: ClosedError,
    CACHE_ALREADY_EXISTS: AlreadyExistsError,
    CACHE_IO: GroupcacheOSError,
    CACHE_PANIC: InternalError,
}


def status_name(status: int) -> str:
    return _STATUS_NAMES.get(status, "cache_status %d" % status)


def error_for_status(status: int, message: str) -> GroupcacheError:
    """The exception for a non-OK status, with the library's message (or the
    status name when the library gave none)."""
    cls = _ERRORS.get(status, GroupcacheError)
    return cls(message or status_name(status), status)
