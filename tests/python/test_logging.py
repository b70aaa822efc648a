"""The library's log messages reach logging.getLogger("groupcache")."""

from __future__ import annotations

import logging
import socket
import threading
import urllib.error
import urllib.request
from typing import Iterator, List

import pytest
from conftest import PRELUDE

import groupcache
from groupcache import Cache, Pool, _log

logger = logging.getLogger("groupcache")


@pytest.fixture(autouse=True)
def restore_level() -> Iterator[None]:
    before = logger.level
    yield
    logger.setLevel(before)
    groupcache.sync_log_level()


def dead_url() -> str:
    """A URL nothing listens on (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "http://127.0.0.1:%d" % port


def key_owned_by(pool: Pool, url: str) -> str:
    for i in range(1000):
        k = "key-%d" % i
        if pool.owner(k) == url:
            return k
    raise AssertionError("no key of 1000 is owned by %s" % url)


def ours(caplog: pytest.LogCaptureFixture) -> List[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "groupcache"]


def test_a_dead_peer_is_a_warning(caplog: pytest.LogCaptureFixture, name: str) -> None:
    caplog.set_level(logging.WARNING, logger="groupcache")
    dead = dead_url()
    with Pool() as p:
        p.set_peers([p.url, dead])
        key = key_owned_by(p, dead)
        with Cache(name, loader=lambda k: b"loaded here", pool=p) as c:
            assert c.get(key) == b"loaded here"  # the fallback: loaded locally
            assert c.stats().peer_errors == 1
    warnings = [r for r in ours(caplog) if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in ours(caplog)]
    w = warnings[0]
    # The peer's "is failing" line (the per-key "loading key here" line is
    # at debug level: a dead peer is not logged once per key).
    assert dead in w.getMessage() and "is failing" in w.getMessage()
    assert w.groupcache_target.startswith("groupcache::peers")  # type: ignore[attr-defined]
    assert w.threadName == threading.current_thread().name  # logged on the caller's thread
    assert not [r for r in ours(caplog) if r.levelno < logging.WARNING]  # filtered out


def test_levels_follow_the_logger(caplog: pytest.LogCaptureFixture, name: str) -> None:
    caplog.set_level(logging.ERROR, logger="groupcache")
    groupcache.sync_log_level()
    assert _log._level == 1  # the library formats errors only
    dead = dead_url()
    with Pool() as p:
        p.set_peers([p.url, dead])
        with Cache(name, loader=lambda k: b"v", pool=p) as c:
            c.get(key_owned_by(p, dead))
    assert ours(caplog) == []

    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="groupcache")  # picked up at the next pool
    with Pool() as p:
        assert _log._level == 4
        url = p.url
    infos = [r.getMessage() for r in ours(caplog) if r.levelno == logging.INFO]
    assert infos == ["pool %s: serving the peer protocol on %s" % (url, url[len("http://"):]), "pool %s: closing" % url]

    caplog.set_level(groupcache.TRACE, logger="groupcache")
    groupcache.sync_log_level()
    assert _log._level == 5


def test_server_threads_log_and_a_raised_level_is_applied_by_the_callback(
    caplog: pytest.LogCaptureFixture, name: str
) -> None:
    def fail(key: str) -> bytes:
        raise RuntimeError("the database is down")

    caplog.set_level(logging.DEBUG, logger="groupcache")
    with Pool() as p:
        p.set_peers([p.url])
        with Cache(name, loader=fail, pool=p):
            # A peer's GET whose load fails: the server thread answers 500
            # and logs a warning, through the GIL, on its own thread.
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen("%s/_groupcache/%s/k" % (p.url, name), timeout=10)
            assert e.value.code == 500
            warnings = [r for r in ours(caplog) if r.levelno == logging.WARNING]
            assert len(warnings) == 1
            assert "the database is down" in warnings[0].getMessage()
            assert warnings[0].threadName != threading.current_thread().name
            assert warnings[0].groupcache_target.startswith("groupcache::peers")  # type: ignore[attr-defined]

            # The logger now wants errors only, and nobody told the library:
            # the first debug message it sends lowers its level.
            assert _log._level == 4
            logger.setLevel(logging.ERROR)
            caplog.clear()
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen("%s/_groupcache/no-such-cache/k" % p.url, timeout=10)
            assert _log._level == 1
            assert ours(caplog) == []


def test_hits_never_log(caplog: pytest.LogCaptureFixture, name: str) -> None:
    caplog.set_level(groupcache.TRACE, logger="groupcache")
    with Cache(name, loader=lambda k: b"v") as c:
        c.get("k")
        caplog.clear()
        for _ in range(1000):
            c.get("k")
        assert c.get_many(["k"] * 10) == {"k": b"v"}
    assert ours(caplog) == []


def test_exit_while_library_threads_log() -> None:
    """Threads logging through the library while the interpreter exits: the
    callback is removed at exit (atexit, before finalization), cleanly.

    The cache has no loader on purpose: a Python *loader* running on a
    daemon thread once finalization has begun is a separate hazard (the
    thread exits through the library's frames and the process aborts)."""
    import subprocess
    import sys
    import textwrap

    code = PRELUDE + textwrap.dedent(
        """
        import logging, socket, threading, groupcache
        logging.basicConfig(level=logging.DEBUG)
        s = socket.socket(); s.bind(("127.0.0.1", 0)); dead = "http://127.0.0.1:%d" % s.getsockname()[1]; s.close()
        p = groupcache.Pool()
        p.set_peers([p.url, dead])
        c = groupcache.Cache("c", pool=p)
        def hammer():  # a warning per miss, until the very end
            i = 0
            while True:
                try:
                    c.get("k%d" % i)
                except groupcache.GroupcacheError:  # KeyError: no loader
                    pass
                i += 1
        for _ in range(2):
            threading.Thread(target=hammer, daemon=True).start()
        import time; time.sleep(0.3)
        print("exiting")
        """
    )
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout == "exiting\n"
        assert "WARNING:groupcache:" in r.stderr
        assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr[-2000:]


def test_a_dead_peer_is_logged_once_not_once_per_key(caplog: pytest.LogCaptureFixture, name: str) -> None:
    caplog.set_level(logging.INFO, logger="groupcache")
    dead = dead_url()
    with Pool() as p:
        p.set_peers([p.url, dead])
        keys = [k for k in ("key-%d" % i for i in range(2000)) if p.owner(k) == dead][:50]
        assert len(keys) == 50
        with Cache(name, loader=lambda k: k.encode(), pool=p) as c:
            for k in keys:
                assert c.get(k) == k.encode()  # loaded here: the owner is down
            about_dead = [r for r in ours(caplog) if dead in r.getMessage()]
            warnings = [r for r in about_dead if r.levelno >= logging.WARNING]
            # One "is failing" line, not fifty; the per-key lines are debug.
            assert len(warnings) == 1, [r.getMessage() for r in warnings]
            assert "is failing" in warnings[0].getMessage()
            assert c.stats().peer_errors == 50


def test_a_peer_that_answers_again_is_logged_once(caplog: pytest.LogCaptureFixture, name: str) -> None:
    caplog.set_level(logging.INFO, logger="groupcache")
    dead = dead_url()
    port = int(dead.rsplit(":", 1)[1])
    with Pool() as p:
        p.set_peers([p.url, dead])
        keys = [k for k in ("key-%d" % i for i in range(2000)) if p.owner(k) == dead][:4]
        with Cache(name, loader=lambda k: k.encode(), pool=p) as c:
            c.get(keys[0])
            c.get(keys[1])
            # The peer comes up (on the dead URL's port) and answers.
            with Pool("127.0.0.1:%d" % port) as q, Cache(name, loader=lambda k: b"q", pool=q):
                q.set_peers([p.url, dead])
                assert c.get(keys[2]) == b"q"
                assert c.get(keys[3]) == b"q"
            msgs = [r.getMessage() for r in ours(caplog) if dead in r.getMessage() and r.levelno >= logging.INFO]
            assert sum("is failing" in m for m in msgs) == 1, "\n".join(msgs)
            assert sum(" answers again (" in m for m in msgs) == 1, "\n".join(msgs)


def test_a_set_at_a_dead_owner_names_the_set_not_a_get(name: str) -> None:
    dead = dead_url()
    with Pool() as p:
        p.set_peers([p.url, dead])
        key = key_owned_by(p, dead)
        with Cache(name, pool=p) as c:
            with pytest.raises(groupcache.PeerError) as e:
                c.set(key, b"v")
            assert "PUT at " + dead in str(e.value), str(e.value)
            assert "GET" not in str(e.value), str(e.value)
            # Nothing was stored: set and remove leave no local copy behind.
            assert key not in c
            with pytest.raises(groupcache.PeerError) as e:
                c.remove(key)
            assert "DELETE at " + dead in str(e.value), str(e.value)
