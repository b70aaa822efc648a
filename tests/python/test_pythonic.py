"""The container-like parts of Cache: ``in``, ``get(key, default)``,
``cache[key]``, and what a Cache refuses to be (iterable, sized), and
loaders it refuses (coroutine functions)."""

from __future__ import annotations

import asyncio
from typing import List, Optional

import pytest

import groupcache


def test_in_never_loads_and_sees_only_what_this_node_holds(name: str) -> None:
    calls: List[str] = []

    def loader(key: str) -> Optional[bytes]:
        calls.append(key)
        return None if key == "missing" else b""

    with groupcache.Cache(name, loader=loader) as c:
        assert "k" not in c
        assert calls == []  # `in` did not load
        assert c.get("k") == b""  # an empty value is a value...
        assert "k" in c  # ...and is held
        assert c.stats().gets == 1  # `in` counts no get
        c.set("s", b"v")
        assert "s" in c
        c.remove("s")
        assert "s" not in c
        assert 42 not in c  # not a key: not in, no TypeError
        with pytest.raises(KeyError):
            c.get("missing")
        assert "missing" not in c  # not-found is not cached


def test_an_expired_value_is_not_in(name: str) -> None:
    import time

    with groupcache.Cache(name) as c:
        c.set("k", b"v", ttl=0.05)
        assert "k" in c
        time.sleep(0.1)
        assert "k" not in c


def test_get_with_a_default_is_dict_get(name: str) -> None:
    def loader(key: str) -> Optional[bytes]:
        if key == "boom":
            raise RuntimeError("db down")
        return None if key.startswith("no") else key.encode()

    with groupcache.Cache(name, loader=loader) as c:
        assert c.get("a", None) == b"a"
        assert c.get("nope", None) is None
        sentinel = object()
        assert c.get("nope2", sentinel) is sentinel
        assert c.get("nope3", b"x") == b"x"
        with pytest.raises(KeyError):
            c.get("nope4")  # no default: raises as before
        with pytest.raises(KeyError):
            c["nope5"]
        assert c["a"] == b"a"
        # Only a missing key gives the default: a failure still raises.
        with pytest.raises(groupcache.LoaderError):
            c.get("boom", None)


def test_a_cache_is_not_a_container_of_its_keys(name: str) -> None:
    with groupcache.Cache(name) as c:
        c.set("k", b"v")
        with pytest.raises(TypeError, match="not a container"):
            iter(c)
        with pytest.raises(TypeError, match="not a container"):
            list(c)
        with pytest.raises(TypeError, match="len"):
            len(c)
        assert bool(c)  # truthiness does not go through len()


def test_a_coroutine_loader_is_refused_with_a_pointer_to_aget(name: str) -> None:
    async def loader(key: str) -> bytes:
        return b"v"

    class AsyncCallable:
        async def __call__(self, key: str) -> bytes:
            return b"v"

    for bad in (loader, AsyncCallable()):
        with pytest.raises(TypeError, match="aget"):
            groupcache.Cache(name, loader=bad)  # type: ignore[arg-type]
    asyncio.run(asyncio.sleep(0))  # the coroutine function was never called


def test_in_after_close_raises_closed(name: str) -> None:
    c = groupcache.Cache(name)
    c.close()
    with pytest.raises(groupcache.ClosedError):
        "k" in c  # noqa: B015


def test_ctrl_c_interrupts_a_main_thread_waiting_on_another_threads_load(prelude: str) -> None:
    import subprocess
    import sys
    import textwrap

    code = prelude + textwrap.dedent(
        """
        import os, signal, threading, time, groupcache
        entered = threading.Event()
        def loader(k):
            entered.set()
            time.sleep(5)  # a slow load, on another thread
            return b"v"
        c = groupcache.Cache("slow", loader=loader)
        threading.Thread(target=c.get, args=("k",), daemon=True).start()
        entered.wait()
        sent = []
        def interrupt():
            time.sleep(0.3)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        try:
            c.get("k")  # waits on the other thread's load
            print("not interrupted")
        except KeyboardInterrupt:
            print("%.3f" % (time.monotonic() - sent[0]))
        os._exit(0)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # Reached within the wait slice (0.1 s) plus scheduling, not after 5 s.
    assert float(out.stdout.strip()) < 0.2, out.stdout
