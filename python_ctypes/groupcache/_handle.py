"""The lifecycle shared by Cache and Pool: close(), the context manager and
the check every call makes on a closed object."""

from __future__ import annotations

from types import TracebackType
from typing import Optional, Type, TypeVar

from ._errors import ClosedError

_H = TypeVar("_H", bound="Closable")


class Closable:
    """A native object with close(); usable as a context manager."""

    __slots__ = ()
    _closed: bool

    def close(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _closed_message(self) -> str:  # pragma: no cover - overridden
        return "closed"

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(self._closed_message(), None)

    def __enter__(self: _H) -> _H:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
