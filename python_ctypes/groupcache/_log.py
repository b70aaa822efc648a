"""The library's log messages, forwarded to ``logging.getLogger("groupcache")``.

The library logs rarely (a peer that fails, an error its server answers a
peer with, a pool that starts or stops) and never on the hit path; see
``cache_log_set`` in include/groupcache.h.  One module-level ctypes callback
(``CALLBACK``, alive as long as the module) receives each message on the
library thread that logged it, takes the GIL, and hands the message to the
``groupcache`` logger at the matching level, with the library's component in
the record's ``groupcache_target`` attribute.

Lazily and only for what would be emitted: nothing is installed at import.
The first ``Cache`` or ``Pool`` installs the callback with the library's
minimum level set to the most verbose level the logger is enabled for, so
the library does not even format the other messages, and no thread takes
the GIL for them.  The level is re-checked (a few of ``logging``'s cached
``isEnabledFor`` lookups) whenever a cache or pool is created, on every
cache miss, and whenever a message arrives that the logger no longer wants
(the library's level is lowered then).  ``sync_log_level()`` applies a change
of the logger's level at once.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Optional

from . import _lib

__all__ = ["TRACE", "logger", "sync_log_level"]

TRACE = 5
"""The ``logging`` level of the library's most verbose messages (its
CACHE_LOG_TRACE), below ``logging.DEBUG``. To see them:
``logging.getLogger("groupcache").setLevel(groupcache.TRACE)``."""

logger = logging.getLogger("groupcache")
"""Where the library's messages go (``logging.getLogger("groupcache")``)."""

# The library's levels (CACHE_LOG_ERROR .. CACHE_LOG_TRACE) as logging's.
_PY_LEVELS = {
    _lib.CACHE_LOG_ERROR: logging.ERROR,
    _lib.CACHE_LOG_WARN: logging.WARNING,
    _lib.CACHE_LOG_INFO: logging.INFO,
    _lib.CACHE_LOG_DEBUG: logging.DEBUG,
    _lib.CACHE_LOG_TRACE: TRACE,
}
_LIB_LEVELS = sorted(_PY_LEVELS)  # most severe first

_lock = threading.Lock()
_installed = False  # the callback is in the library
_level = _lib.CACHE_LOG_OFF  # the minimum level the library was last given
_closed = False  # the interpreter is exiting: never install again


def _lock_after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_lock_after_fork_in_child)


def _wanted() -> int:
    """The most verbose library level the logger would emit, CACHE_LOG_OFF
    for none. Levels are ordered, so the first disabled one ends the search."""
    enabled = logger.isEnabledFor
    want = _lib.CACHE_LOG_OFF
    for lib_level in _LIB_LEVELS:
        if not enabled(_PY_LEVELS[lib_level]):
            break
        want = lib_level
    return want


def sync_log_level() -> None:
    """Makes the library forward exactly the levels the ``groupcache``
    logger emits now (installing the log callback the first time one is
    wanted). Done automatically when a cache or pool is created and on
    cache misses; call it after changing the logger's level to apply the
    change at once."""
    global _installed, _level
    want = _wanted()
    if want == _level or _closed:
        return
    with _lock:
        if _closed:
            return
        if not _installed:
            if want == _lib.CACHE_LOG_OFF:
                return
            # Waits for nothing (no callback yet); GIL released (CDLL).
            _lib.cache_log_set(CALLBACK, None, want)
            _installed = True
            atexit.register(_uninstall)
        else:
            _lib.cache_log_set_level(want)
        _level = want


def _uninstall() -> None:
    """At interpreter exit: no library thread may call into Python once it
    is finalizing. cache_log_set waits for callbacks in progress, which can
    take the GIL meanwhile (CDLL releases it)."""
    global _installed, _level, _closed
    with _lock:
        _closed = True
        if _installed:
            _lib.cache_log_set(_lib.LOG_FN(), None, _lib.CACHE_LOG_OFF)  # a NULL cache_log_fn
            _installed = False
            _level = _lib.CACHE_LOG_OFF


def _on_log(user_data: Optional[int], level: int, target: Optional[bytes], message: Optional[bytes]) -> None:
    global _level
    try:
        py_level = _PY_LEVELS.get(level, logging.ERROR)
        if logger.isEnabledFor(py_level):
            text = message.decode("utf-8", "replace") if message else ""
            where = target.decode("utf-8", "replace") if target else ""
            # The message is the record's msg with no args: never %-formatted.
            logger.log(py_level, text, extra={"groupcache_target": where})
        else:
            # The logger's level went up since the last check: stop the
            # library from formatting what nobody reads. Never blocks.
            want = _wanted()
            _lib.cache_log_set_level(want)
            _level = want
    except BaseException:  # noqa: BLE001 - nothing may reach C
        pass


CALLBACK = _lib.LOG_FN(_on_log)
"""The one C callback; module-level, so it lives as long as the library
may call it."""
