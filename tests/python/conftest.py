"""Test setup: import the package from the checkout (python_ctypes/), which
loads the library from $GROUPCACHE_LIB or target/release/.  Set
GROUPCACHE_TEST_INSTALLED=1 to test the package pip installed instead (as
tests/python/wheel.sh does): then neither this process nor the Python
subprocesses the tests start look at the checkout's package."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Any, Iterator, List

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = os.environ.get("GROUPCACHE_TEST_INSTALLED") == "1"
if not INSTALLED:
    sys.path.insert(0, str(ROOT / "python_ctypes"))

import groupcache  # noqa: E402

if INSTALLED and Path(groupcache.__file__).resolve().is_relative_to(ROOT / "python_ctypes"):
    raise RuntimeError(
        "GROUPCACHE_TEST_INSTALLED=1 but groupcache was imported from the checkout "
        "(%s): run pytest from outside it, without PYTHONPATH" % groupcache.__file__
    )

PRELUDE = "" if INSTALLED else "import sys; sys.path.insert(0, %r)\n" % str(ROOT / "python_ctypes")
"""Code that makes a Python subprocess import the package under test."""

_names = itertools.count()


@pytest.fixture
def name() -> str:
    """A cache name no other test uses."""
    return "t%d" % next(_names)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def prelude() -> str:
    """``PRELUDE``: prepend it to the code of a ``python -c`` subprocess."""
    return PRELUDE


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """Tests marked for another run are deselected here (and listed at the
    end): ``installed`` ones run under tests/python/wheel.sh, ``pip_install``
    ones with GROUPCACHE_TEST_PIP=1 (make test-python-wheel)."""
    pip = os.environ.get("GROUPCACHE_TEST_PIP") == "1"
    keep: List[pytest.Item] = []
    drop: List[pytest.Item] = []
    for item in items:
        if item.get_closest_marker("installed") and not INSTALLED:
            drop.append(item)
        elif item.get_closest_marker("pip_install") and (INSTALLED or not pip):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        _deselected.extend(item.nodeid for item in drop)


_deselected: List[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for nodeid in _deselected:
        terminalreporter.write_line("deselected (marked for another run, see pytest.ini): %s" % nodeid)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def pool() -> Iterator[groupcache.Pool]:
    p = groupcache.Pool("127.0.0.1:0")
    try:
        yield p
    finally:
        p.close()
