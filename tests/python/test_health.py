"""The peer port's health route (GET /healthz) and the drain of Pool.close(),
over real HTTP on loopback: what a Kubernetes readiness probe sees."""

from __future__ import annotations

import http.client
import threading
import time
from typing import Dict, List, Tuple

import pytest

import groupcache


def probe(pool_url: str, path: str = "/healthz", method: str = "GET") -> Tuple[int, bytes, Dict[str, str]]:
    """One request on a new connection, as kubelet sends it."""
    host, port = pool_url.rsplit("/", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def test_healthz_is_200_while_serving() -> None:
    with groupcache.Pool("127.0.0.1:0") as pool:
        status, body, headers = probe(pool.url)
        assert (status, body) == (200, b"ok\n")
        assert headers["cache-control"] == "no-store"
        assert probe(pool.url, method="HEAD")[:2] == (200, b"")
        status, _, headers = probe(pool.url, method="DELETE")
        assert status == 405 and headers["allow"] == "GET, HEAD"


def test_healthz_is_open_with_a_secret_and_says_nothing_else() -> None:
    with groupcache.Pool("127.0.0.1:0", secret="s3cret") as pool:
        cache = groupcache.Cache("h", max_bytes=1 << 20, loader=lambda k: b"secret value", pool=pool)
        cache.get("k")
        assert probe(pool.url)[:2] == (200, b"ok\n")
        # The cache itself stays behind the signature.
        assert probe(pool.url, "/_groupcache/h/k")[0] == 401
        cache.close()


def test_drain_serves_with_503_then_closes() -> None:
    pool = groupcache.Pool("127.0.0.1:0", drain=0.8)
    cache = groupcache.Cache("d", max_bytes=1 << 20, loader=lambda k: ("v:" + k).encode(), pool=pool)
    assert probe(pool.url)[0] == 200
    url = pool.url
    took: List[float] = []

    def close() -> None:
        t = time.monotonic()
        pool.close()
        took.append(time.monotonic() - t)

    closer = threading.Thread(target=close)
    closer.start()
    time.sleep(0.2)
    # Draining: the probe says 503, peers are still answered.
    assert probe(url)[:2] == (503, b"closing\n")
    status, body, _ = probe(url, "/_groupcache/d/key")
    assert status == 200 and body.endswith(b"v:key")
    closer.join(10)
    assert took and took[0] >= 0.8
    with pytest.raises(OSError):
        probe(url)  # the port is closed
    # The cache goes on as a local one.
    assert cache.get("x") == b"v:x"
    cache.close()


def test_drain_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUPCACHE_DRAIN_MS", "300")
    pool = groupcache.Pool("127.0.0.1:0")
    t = time.monotonic()
    pool.close()
    assert time.monotonic() - t >= 0.3
    monkeypatch.setenv("GROUPCACHE_DRAIN_MS", "-1")
    with pytest.raises(ValueError, match="GROUPCACHE_DRAIN_MS"):
        groupcache.Pool("127.0.0.1:0")


def test_drain_is_checked() -> None:
    with pytest.raises(ValueError, match="drain"):
        groupcache.Pool("127.0.0.1:0", drain=-1)
    with pytest.raises(TypeError, match="drain"):
        groupcache.Pool("127.0.0.1:0", drain="5")  # type: ignore[arg-type]
    groupcache.Pool("127.0.0.1:0", drain=0).close()


def test_healthz_answers_while_stuck_loaders_fill_every_worker() -> None:
    """A readiness probe must not fail because loaders are slow: two
    server workers, both inside a loader that waits, more misses queued."""
    release = threading.Event()
    entered: List[str] = []

    def loader(key: str) -> bytes:
        entered.append(key)
        release.wait(30)
        return b"late"

    with groupcache.Pool("127.0.0.1:0", server_workers=2) as pool:
        cache = groupcache.Cache("stuck", max_bytes=1 << 20, loader=loader, pool=pool)
        results: List[int] = []
        threads = [
            threading.Thread(target=lambda i=i: results.append(probe(pool.url, "/_groupcache/stuck/k%d" % i)[0]))
            for i in range(5)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while len(entered) < 2:
            assert time.monotonic() < deadline, "the loaders did not start"
            time.sleep(0.01)
        try:
            for _ in range(5):
                t0 = time.monotonic()
                assert probe(pool.url)[:2] == (200, b"ok\n")
                assert time.monotonic() - t0 < 0.5
            assert len(entered) == 2  # stuck all along, the rest queued
        finally:
            release.set()
        for t in threads:
            t.join(10)
        assert results == [200] * 5
        cache.close()
