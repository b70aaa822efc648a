"""The service example (examples/service/), end to end: the supervisor starts
3 worker processes on free loopback ports over a temporary SQLite database,
and the tests drive them with real HTTP requests (http.client, a timeout on
every request), reading the counters each worker serves at /stats.

Every process of a cluster is in its own session (the supervisor is the
group leader, the workers inherit the group): teardown kills the whole group,
whatever failed. The supervisor also runs under `setpriv --pdeathsig KILL`
when util-linux has it, and its workers die with it (prctl in worker.py), so
a killed pytest leaves nothing behind either.

Run: PYTHONPATH=python_ctypes GROUPCACHE_LIB=target/release/libgroupcache.so \\
     .venv/bin/python -m pytest -q tests/service
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / "examples" / "service" / "serve.py"
REQUEST_TIMEOUT = 10.0  # any one HTTP request
START_TIMEOUT = 30.0  # the supervisor printing READY
STOP_TIMEOUT = 10.0  # the supervisor exiting after SIGTERM
SEEDED = 30  # items "1".."30"
KEYS = [str(i) for i in range(1, SEEDED + 1)]


# ---- HTTP ---------------------------------------------------------------------


def request(
    base: str, method: str, path: str, body: Any = None, timeout: float = REQUEST_TIMEOUT
) -> Tuple[int, bytes]:
    """One request on a new connection: (status, body)."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def get_item(base: str, key: str) -> Tuple[int, Any]:
    status, body = request(base, "GET", "/items/" + urllib.parse.quote(key, safe=""))
    return status, json.loads(body)


def stats(base: str) -> Dict[str, Any]:
    status, body = request(base, "GET", "/stats")
    assert status == 200, body
    out: Dict[str, Any] = json.loads(body)
    return out


def seeded(key: str) -> Dict[str, Any]:
    """The data serve.py --seed gives item `key`."""
    return {"name": "item %s" % key, "price": int(key) * 100}


# ---- a cluster ------------------------------------------------------------------


def with_pdeathsig(argv: List[str]) -> List[str]:
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] + argv if setpriv else argv


def child_env() -> Dict[str, str]:
    """Our environment, with the paths made absolute (the command line gives
    them relative to the checkout)."""
    env = dict(os.environ)
    lib = env.get("GROUPCACHE_LIB")
    if lib:
        env["GROUPCACHE_LIB"] = str((ROOT / lib).resolve())
    if env.get("GROUPCACHE_TEST_INSTALLED") != "1":
        parts = [str(ROOT / "python_ctypes")]
        parts += [str((ROOT / p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


class Cluster:
    """The supervisor and its workers, on free loopback ports."""

    def __init__(self, tmp: Path, workers: int = 3, extra: Sequence[str] = ()) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.db = tmp / "items.db"
        self.out_path = tmp / "supervisor.out"
        self.log_path = tmp / "supervisor.log"
        cmd = with_pdeathsig(
            [sys.executable, str(SERVE), "--workers", str(workers), "--db", str(self.db),
             "--seed", str(SEEDED), *extra]
        )  # fmt: skip
        with open(self.out_path, "wb") as out, open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: killpg at the end
            )
        self.pgid = self.proc.pid
        try:
            self.workers: List[Dict[str, Any]] = self._wait_ready()
        except BaseException:
            self.kill()
            raise
        self.urls = [w["http_url"] for w in self.workers]

    def _wait_ready(self) -> List[Dict[str, Any]]:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for line in self.out_path.read_text().splitlines():
                if line.startswith("READY "):
                    workers: List[Dict[str, Any]] = json.loads(line[len("READY ") :])["workers"]
                    return workers
            if self.proc.poll() is not None:
                pytest.fail("the supervisor exited (%s):\n%s" % (self.proc.returncode, self.log()))
            time.sleep(0.05)
        pytest.fail("the cluster did not start in %ss:\n%s" % (START_TIMEOUT, self.log()))

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return "(no log)"

    def totals(self, urls: Optional[Sequence[str]] = None) -> Dict[str, int]:
        """db_reads and the cache counters, summed over the workers."""
        out: Dict[str, int] = {}
        for url in urls if urls is not None else self.urls:
            s = stats(url)
            for k, v in [("db_reads", s["db_reads"]), *s["cache"].items()]:
                out[k] = out.get(k, 0) + v
        return out

    def stop(self) -> int:
        """SIGTERM to the supervisor, which stops its workers: its status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            return -999

    def kill(self) -> None:
        """Every process of the cluster, now."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass


def alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        return False


def until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Row reads take 50 ms, as a slow query would: concurrent reads overlap.
    c = Cluster(tmp_path_factory.mktemp("service"), extra=["--load-delay-ms", "50"])
    try:
        yield c
    finally:
        c.kill()


# ---- the tests ----------------------------------------------------------------------


def test_health_and_stats(cluster: Cluster) -> None:
    assert len(cluster.workers) == 3
    assert len({w["pid"] for w in cluster.workers}) == 3
    for i, w in enumerate(cluster.workers):
        for url in (w["http_url"], w["peer_url"]):
            assert urllib.parse.urlsplit(url).hostname == "127.0.0.1"
        status, body = request(w["http_url"], "GET", "/health")
        assert status == 200, body
        assert json.loads(body) == {"status": "ok", "worker": i, "pid": w["pid"]}
        s = stats(w["http_url"])
        assert s["worker"] == i and s["peer_url"] == w["peer_url"]
        assert {"gets", "cache_hits", "peer_loads", "local_loads", "hot_hits"} <= set(s["cache"])


def test_reads_load_each_key_once_then_hit(cluster: Cluster) -> None:
    before = cluster.totals()
    first: Dict[str, Any] = {}
    for url in cluster.urls:
        for key in KEYS:
            status, item = get_item(url, key)
            assert status == 200, item
            assert item["data"] == seeded(key) and item["id"] == key
            # The same bytes everywhere: they come from the key's owner.
            assert first.setdefault(key, item) == item
    after = cluster.totals()
    # One database read per key across the whole cluster, 3 workers asking.
    assert after["db_reads"] - before["db_reads"] == len(KEYS)
    assert after["local_loads"] - before["local_loads"] == len(KEYS)
    # ... spread over the nodes: the keys are sharded.
    per_worker = [stats(u)["db_reads"] for u in cluster.urls]
    assert sum(1 for n in per_worker if n) >= 2, per_worker
    assert len({item["loaded_by"] for item in first.values()}) >= 2

    # Again: no database read at all, every get a cache hit (at the worker
    # asked, or at the key's owner when it asked the owner).
    for url in cluster.urls:
        for key in KEYS:
            assert get_item(url, key) == (200, first[key])
    again = cluster.totals()
    assert again["db_reads"] == after["db_reads"]
    assert again["local_loads"] == after["local_loads"]
    assert again["cache_hits"] - after["cache_hits"] >= 3 * len(KEYS)


def test_write_is_visible_on_every_worker_when_it_returns(cluster: Cluster) -> None:
    key = "7"
    # Warm it until some worker that does not own it serves it from its hot
    # cache: the write must reach those copies too, not only the owner's.
    before = cluster.totals()
    for _ in range(200):
        for url in cluster.urls:
            assert get_item(url, key)[0] == 200
        if cluster.totals()["hot_hits"] > before["hot_hits"]:
            break
    else:
        pytest.fail("key %s never reached a hot cache" % key)

    version = get_item(cluster.urls[0], key)[1]["version"]
    for n, writer in enumerate(cluster.urls * 2):
        data = {"name": "renamed %d" % n, "by": writer}
        status, body = request(writer, "PUT", "/items/" + key, data)
        assert status == 200, body
        version += 1
        assert json.loads(body) == {"id": key, "version": version}
        for url in cluster.urls:  # right after the PUT returned, every worker
            status, item = get_item(url, key)
            assert status == 200 and item["data"] == data and item["version"] == version, (url, item)

    # A new item: 201, then visible everywhere.
    status, body = request(cluster.urls[1], "PUT", "/items/new%20one", {"name": "new"})
    assert status == 201, body
    for url in cluster.urls:
        assert get_item(url, "new one")[1]["data"] == {"name": "new"}

    # DELETE: 404 everywhere right after it returns; a second DELETE is 404.
    for k in (key, "new one"):
        status, body = request(cluster.urls[2], "DELETE", "/items/" + urllib.parse.quote(k))
        assert status == 204, body
        for url in cluster.urls:
            assert get_item(url, k)[0] == 404
    assert request(cluster.urls[0], "DELETE", "/items/" + key)[0] == 404


def test_concurrent_reads_of_a_new_key_load_once(cluster: Cluster) -> None:
    key = "stampede"
    status, body = request(cluster.urls[0], "PUT", "/items/" + key, {"name": "herd"})
    assert status == 201, body
    before = cluster.totals()

    per_worker = 10
    barrier = threading.Barrier(per_worker * len(cluster.urls))
    results: List[Any] = []
    lock = threading.Lock()

    def one(url: str) -> None:
        try:
            barrier.wait(REQUEST_TIMEOUT)
            r: Any = get_item(url, key)
        except Exception as e:  # reported below
            r = e
        with lock:
            results.append(r)

    threads = [
        threading.Thread(target=one, args=(url,), daemon=True)
        for url in cluster.urls
        for _ in range(per_worker)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(REQUEST_TIMEOUT * 2)
    assert len(results) == len(threads), "a request never finished"
    assert all(isinstance(r, tuple) and r[0] == 200 for r in results), results
    assert len({json.dumps(r[1], sort_keys=True) for r in results}) == 1
    assert results[0][1]["data"] == {"name": "herd"}
    after = cluster.totals()
    assert after["db_reads"] - before["db_reads"] == 1
    assert after["local_loads"] - before["local_loads"] == 1
    # And before the owner's single-flight, each worker's asyncio loop had
    # already merged its concurrent requests (aget): fewer cache gets than
    # requests (a typical run: 30 requests, 3 gets + 2 from peers).
    gets = (after["gets"] - before["gets"]) - (after["server_requests"] - before["server_requests"])
    assert gets < len(threads), (gets, len(threads))


def test_missing_item_is_404_everywhere(cluster: Cluster) -> None:
    before = cluster.totals()
    for _ in range(2):
        for url in cluster.urls:
            status, body = get_item(url, "no-such-item")
            assert status == 404 and "error" in body
    # "Not found" is never cached: each get asked the database again...
    assert cluster.totals()["db_reads"] - before["db_reads"] == 6
    # ... so a row created afterwards is seen at once.
    assert request(cluster.urls[2], "PUT", "/items/no-such-item", {"now": "here"})[0] == 201
    for url in cluster.urls:
        assert get_item(url, "no-such-item") == (200, get_item(cluster.urls[0], "no-such-item")[1])
        assert get_item(url, "no-such-item")[1]["data"] == {"now": "here"}


def test_http_edges(cluster: Cluster) -> None:
    url = cluster.urls[0]
    assert request(url, "GET", "/nowhere")[0] == 404
    assert request(url, "GET", "/items/")[0] == 400
    assert request(url, "POST", "/items/1", {})[0] == 405
    assert request(url, "PUT", "/items/1", [1, 2])[0] == 400
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("PUT", "/items/1", body=b"{not json", headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert (r.status, r.getheader("X-Worker")) == (400, "0")
        r.read()
        # Keep-alive: more requests on the same connection.
        for key in ("2", "3"):
            conn.request("GET", "/items/" + key)
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read())["data"] == seeded(key)
        conn.request("HEAD", "/items/2")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b""
    finally:
        conn.close()


def test_a_worker_killed_with_sigkill_leaves_the_others_working(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    try:
        owner: Dict[str, int] = {}  # key -> the worker that loaded it: its owner
        for url in c.urls:
            for key in KEYS:
                status, item = get_item(url, key)
                assert status == 200
                owner[key] = item["loaded_by"]
        victim = c.workers[2]
        os.kill(victim["pid"], signal.SIGKILL)
        until(lambda: not alive(victim["pid"]), 10, "the killed worker to die")
        survivors = c.urls[:2]

        t0 = time.monotonic()
        for url in survivors:
            for key in KEYS:  # a third of them were the dead worker's
                status, item = get_item(url, key)
                assert status == 200 and item["data"] == seeded(key), (url, key, item)
        took = time.monotonic() - t0
        assert took < 10, "reads after the kill took %.1fs" % took
        for url in survivors:
            assert request(url, "GET", "/health")[0] == 200
            assert get_item(url, "no-such-item")[0] == 404
        # Writes, with one peer gone, are seen by every live worker at once.
        # Where the dead worker owned the key, the reply says the owner was
        # not reached (remove raised PeerError): the write still counts.
        for key in KEYS:
            status, body = request(survivors[0], "PUT", "/items/" + key, {"v": 2})
            assert status == 200, body
            assert ("warning" in json.loads(body)) == (owner[key] == 2), (key, owner[key], body)
            for url in survivors:
                assert get_item(url, key)[1]["data"] == {"v": 2}
        dead_owned = next(k for k in KEYS if owner[k] == 2)
        status, body = request(survivors[1], "DELETE", "/items/" + dead_owned)
        assert status == 200 and json.loads(body)["deleted"] is True, body
        for url in survivors:
            assert get_item(url, dead_owned)[0] == 404
        assert c.proc.poll() is None, "the supervisor died"
        until(lambda: "exited with status -9" in c.log(1 << 20), 5, "the supervisor to report the death")

        # A clean stop: the supervisor stops the rest and exits 0.
        assert c.stop() == 0, c.log()
        for w in c.workers:
            assert not alive(w["pid"]), w
    finally:
        c.kill()


def test_restart_brings_a_killed_worker_back(tmp_path: Path) -> None:
    c = Cluster(tmp_path, extra=["--restart"])
    try:
        owner: Dict[str, int] = {}
        for url in c.urls:  # warm: the others hold connections to the victim
            for key in KEYS:
                owner[key] = get_item(url, key)[1]["loaded_by"]
        victim = c.workers[1]
        os.kill(victim["pid"], signal.SIGKILL)
        until(lambda: not alive(victim["pid"]), 10, "the killed worker to die")
        # Writes while it is down (its removes cannot reach it).
        outage = ["outage-%d" % i for i in range(8)]
        for key in outage:
            status, body = request(c.urls[0], "PUT", "/items/" + key, {"v": 1})
            assert status == 201, body

        def back() -> bool:
            try:
                status, body = request(victim["http_url"], "GET", "/health", timeout=2)
            except OSError:
                return False
            return status == 200 and json.loads(body)["pid"] != victim["pid"]

        until(back, 20, "the worker to be restarted on its ports")
        assert stats(victim["http_url"])["peer_url"] == victim["peer_url"]
        before = c.totals()
        for url in c.urls:
            for key in KEYS:
                status, item = get_item(url, key)
                assert status == 200 and item["data"] == seeded(key)
        # The ring is the same: the keys the victim owned are loaded again,
        # once each, by the victim; the others stayed cached at their owners.
        after = c.totals()
        lost = sum(1 for k in KEYS if owner[k] == 1)
        assert after["db_reads"] - before["db_reads"] == lost, (lost, c.log())
        assert stats(victim["http_url"])["db_reads"] == lost

        # Invalidation reaches the restarted worker: each key cached on
        # every worker, then rewritten, is new everywhere.
        for n, key in enumerate(outage):
            for _ in range(3):
                for url in c.urls:
                    assert get_item(url, key)[1]["data"] == {"v": 1}
            writer = c.urls[n % 3]
            status, body = request(writer, "PUT", "/items/" + key, {"v": 2})
            assert status == 200 and "warning" not in json.loads(body), body
            for url in c.urls:
                assert get_item(url, key)[1]["data"] == {"v": 2}, (key, url)
    finally:
        c.kill()
