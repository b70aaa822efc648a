"""A stuck loader and ``Cache(..., load_timeout=)``: callers waiting on the
stuck load give up with ``groupcache.TimeoutError`` (a built-in
``TimeoutError``), the key loads again, and the stuck load's late result is
not cached over the newer one.

The timeouts are about a second so that the waiter reaches the load before
its deadline on a loaded machine (one that arrives later rightly loads the
key itself instead of timing out)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List

import pytest

import groupcache
from groupcache import Cache


class StuckLoader:
    """The first call blocks until ``release`` is set and returns b"stale";
    later calls return b"fresh" at once."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls: List[str] = []
        self._lock = threading.Lock()

    def __call__(self, key: str) -> bytes:
        with self._lock:
            self.calls.append(key)
            first = len(self.calls) == 1
        if first:
            self.entered.set()
            assert self.release.wait(30), "never released"
            return b"stale"
        return b"fresh"


def _in_thread(fn: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    out["thread"] = t
    return out


def test_waiters_on_a_stuck_loader_time_out_and_the_key_loads_again(name: str) -> None:
    loader = StuckLoader()
    with Cache(name, loader=loader, load_timeout=1.0) as c:
        leader = _in_thread(lambda: c.get("k"))
        assert loader.entered.wait(10)
        t0 = time.monotonic()
        waiter = _in_thread(lambda: c.get("k"))
        waiter["thread"].join(30)
        took = time.monotonic() - t0
        err = waiter.get("error")
        assert isinstance(err, groupcache.TimeoutError), waiter
        assert isinstance(err, TimeoutError)  # the built-in one
        assert isinstance(err, groupcache.GroupcacheError)
        assert err.status == 5
        assert "load timeout" in str(err)
        assert 0.5 <= took < 30
        # The stuck load was abandoned: this get loads the key afresh.
        assert c.get("k") == b"fresh"
        assert loader.calls == ["k", "k"]
        # The stuck loader returns at last: its own caller gets its value,
        # which is not cached over the newer one.
        loader.release.set()
        leader["thread"].join(30)
        assert leader.get("value") == b"stale", leader
        assert c.get("k") == b"fresh"
        assert loader.calls == ["k", "k"]


def test_a_get_after_the_timeout_does_not_wait(name: str) -> None:
    loader = StuckLoader()
    with Cache(name, loader=loader, load_timeout=0.2) as c:
        leader = _in_thread(lambda: c.get("k"))
        assert loader.entered.wait(10)
        time.sleep(0.4)
        t0 = time.monotonic()
        assert c.get("k") == b"fresh"
        assert time.monotonic() - t0 < 5
        loader.release.set()
        leader["thread"].join(30)
        assert leader.get("value") == b"stale", leader
        assert c.get("k") == b"fresh"


def test_aget_waiters_time_out_too(name: str) -> None:
    import asyncio

    loader = StuckLoader()
    with Cache(name, loader=loader, load_timeout=1.0) as c:
        leader = _in_thread(lambda: c.get("k"))
        assert loader.entered.wait(10)
        with pytest.raises(groupcache.TimeoutError):
            asyncio.run(c.aget("k"))
        loader.release.set()
        leader["thread"].join(30)


def test_without_a_load_timeout_waiters_wait(name: str) -> None:
    loader = StuckLoader()
    with Cache(name, loader=loader) as c:
        leader = _in_thread(lambda: c.get("k"))
        assert loader.entered.wait(10)
        waiter = _in_thread(lambda: c.get("k"))
        waiter["thread"].join(0.5)
        assert waiter["thread"].is_alive(), "gave up without a load timeout"
        loader.release.set()
        waiter["thread"].join(30)
        leader["thread"].join(30)
        assert waiter.get("value") == leader.get("value") == b"stale"
        assert loader.calls == ["k"]


@pytest.mark.parametrize("bad", [0, -1, 0.0, float("nan"), -math.inf, 2.0**32])
def test_bad_load_timeouts_are_value_errors(name: str, bad: float) -> None:
    with pytest.raises(ValueError):
        Cache(name, loader=lambda k: b"v", load_timeout=bad)


@pytest.mark.parametrize("bad", ["1", True, [1]])
def test_load_timeout_is_a_number(name: str, bad: Any) -> None:
    with pytest.raises(TypeError):
        Cache(name, loader=lambda k: b"v", load_timeout=bad)


def test_inf_is_no_limit(name: str) -> None:
    with Cache(name, loader=lambda k: b"v", load_timeout=math.inf) as c:
        assert c.get("k") == b"v"


def _run(code: str, prelude: str, **env: str) -> "subprocess.CompletedProcess[str]":
    e = dict(os.environ, **env)
    return subprocess.run(
        [sys.executable, "-c", prelude + code], env=e, capture_output=True, text=True, timeout=120
    )


def test_the_environment_sets_the_default(prelude: str) -> None:
    code = """
import threading, groupcache
entered, release = threading.Event(), threading.Event()
def load(key):
    if not entered.is_set():
        entered.set()
        release.wait(30)
        return b"stale"
    return b"fresh"
c = groupcache.Cache("env", loader=load)
t = threading.Thread(target=c.get, args=("k",))
t.start()
entered.wait(10)
try:
    c.get("k")
    print("no timeout")
except TimeoutError as e:
    print("timeout", type(e).__name__)
release.set()
t.join()
print(c.get("k").decode())
"""
    r = _run(code, prelude, GROUPCACHE_LOAD_TIMEOUT_MS="1000")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["timeout", "TimeoutError", "fresh"], r.stdout + r.stderr
    # A malformed variable is an error naming it, not silently ignored.
    r = _run(
        "import groupcache\ngroupcache.Cache('x', loader=lambda k: b'v')\n",
        prelude,
        GROUPCACHE_LOAD_TIMEOUT_MS="soon",
    )
    assert r.returncode != 0
    assert "GROUPCACHE_LOAD_TIMEOUT_MS" in r.stderr and "InvalidArgumentError" in r.stderr
    # ...also when load_timeout is given (the options object reads it first).
    r = _run(
        "import groupcache\ngroupcache.Cache('x', loader=lambda k: b'v', load_timeout=1)\n",
        prelude,
        GROUPCACHE_LOAD_TIMEOUT_MS="soon",
    )
    assert r.returncode != 0 and "GROUPCACHE_LOAD_TIMEOUT_MS" in r.stderr
