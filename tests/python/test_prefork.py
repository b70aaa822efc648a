"""examples/prefork under real gunicorn: four worker processes, each a node
made in post_fork, one cache across them. Every key is loaded once,
whichever worker a request lands on; a killed worker is replaced and takes
its port back."""

from __future__ import annotations

import collections
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
from conftest import INSTALLED, ROOT

EXAMPLE = ROOT / "examples" / "prefork"
WORKERS = 4

sys.path.insert(0, str(EXAMPLE))
import app as prefork_app  # noqa: E402


def _free_ports(n: int) -> int:
    """The first of n consecutive free loopback ports."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no %d consecutive free ports" % n)


def _get(port: int, path: str) -> Tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _wait_for(cond, what: str, timeout: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def _workers_seen(port: int, n: int) -> set:
    """The pids of the workers that answered n /health requests with 200."""
    seen = set()
    for _ in range(n):
        status, body = _get(port, "/health")
        if status == 200:
            seen.add(int(body.split()[0]))
    return seen


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Dict[str, object]]:
    db = str(tmp_path / "items.db")
    ids = prefork_app.make_db(db, 100)
    http_port = _free_ports(1)
    peer_port = _free_ports(WORKERS)
    load_log = tmp_path / "loads.log"
    env = dict(os.environ)
    env.update(
        PREFORK_HTTP="127.0.0.1:%d" % http_port,
        PREFORK_PEER_PORT=str(peer_port),
        PREFORK_WORKERS=str(WORKERS),
        PREFORK_DB=db,
        PREFORK_LOAD_LOG=str(load_log),
    )
    if not INSTALLED:
        env["PYTHONPATH"] = str(ROOT / "python_ctypes")
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:application"]
    log_path = tmp_path / "gunicorn.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(gunicorn, cwd=EXAMPLE, env=env, stdout=log, stderr=subprocess.STDOUT)

    def up(cond):  # noqa: ANN001, ANN202
        def check() -> bool:
            if proc.poll() is not None:
                raise AssertionError("gunicorn exited (%s):\n%s" % (proc.returncode, log_path.read_text()))
            return bool(cond())

        return check

    try:
        try:
            _wait_for(
                up(lambda: all(_listening(peer_port + i) for i in range(WORKERS)) and _listening(http_port)),
                "the workers' peer ports and the service",
                timeout=60.0,
            )
            # Every worker has its cache (a worker answers /health only
            # then): before that, a peer asking it for "items" would load
            # locally.
            _wait_for(up(lambda: len(_workers_seen(http_port, 8)) == WORKERS), "every worker's node", 60.0)
        except AssertionError as e:
            raise AssertionError("%s\ngunicorn's log:\n%s" % (e, log_path.read_text()[-4000:])) from None
        yield {"proc": proc, "port": http_port, "peer_port": peer_port, "ids": ids, "log": load_log}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _loads(log: Path) -> "collections.Counter[str]":
    if not log.exists():
        return collections.Counter()
    return collections.Counter(line.split()[1] for line in log.read_text().splitlines())


def _check_all(port: int, ids: List[str], rounds: int) -> None:
    for _ in range(rounds):
        for key in ids:
            status, body = _get(port, "/item/" + key)
            assert (status, body) == (200, ("value of " + key).encode()), key


def test_every_key_is_loaded_once_across_the_gunicorn_workers(service: Dict[str, object]) -> None:
    port, ids, log = service["port"], service["ids"], service["log"]
    assert isinstance(port, int) and isinstance(ids, list) and isinstance(log, Path)
    _check_all(port, ids, 3)
    loads = _loads(log)
    assert set(loads) == set(ids)
    assert max(loads.values()) == 1, loads.most_common(3)
    # Each key was loaded by the worker that owns it, whichever worker the
    # request landed on (the kernel may hand most to one): every worker
    # loaded its share.
    pids = {line.split()[0] for line in log.read_text().splitlines()}
    assert len(pids) == WORKERS, pids
    assert _get(port, "/item/no-such-item")[0] == 404


def test_a_killed_worker_is_replaced_and_takes_its_port_back(service: Dict[str, object]) -> None:
    port, ids, peer_port, log = service["port"], service["ids"], service["peer_port"], service["log"]
    assert isinstance(port, int) and isinstance(ids, list) and isinstance(peer_port, int)
    assert isinstance(log, Path)
    _check_all(port, ids, 1)
    status, body = _get(port, "/health")
    assert status == 200
    victim = int(body.split()[0])
    os.kill(victim, signal.SIGKILL)
    # Up again when WORKERS distinct workers answer, none of them the
    # victim: the replacement made its node in post_fork, before serving.
    seen: set = set()

    def replaced() -> bool:
        status, body = _get(port, "/health")
        if status == 200:
            seen.add(int(body.split()[0]))
        seen.discard(victim)
        return len(seen) == WORKERS

    _wait_for(replaced, "the replacement worker")
    assert all(_listening(peer_port + i) for i in range(WORKERS))
    # Every key still reads right; the victim's keys were loaded again by
    # the replacement (its cache died with it), the others were not.
    _check_all(port, ids, 2)
    loads = _loads(log)
    assert set(loads) == set(ids)
    assert max(loads.values()) <= 2, loads.most_common(3)
