"""The supervisor: starts N worker processes (worker.py), each a groupcache
node with its own HTTP port, all serving one SQLite database through one
shared cache, and keeps them running until SIGINT/SIGTERM.

    PYTHONPATH=python_ctypes python3 examples/service/serve.py --workers 3 --db /tmp/items.db --seed 100

Everything binds to 127.0.0.1. Ports default to free ones the system picks;
--http-port 8000 gives workers 8000, 8001, ... (--peer-port likewise for the
peer ports). When every worker is up, one line goes to stdout:

    READY {"workers": [{"index": 0, "pid": ..., "http_url": ..., "peer_url": ...}, ...]}

then a line per worker for people. A worker that dies is reported on stderr
and, with --restart, started again on the same ports (its cache starts empty;
the others never noticed it was gone except for a few peer errors).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 30.0  # a worker's hello and ready lines
STOP_TIMEOUT = 5.0  # a worker asked to stop, before SIGKILL


def log(msg: str) -> None:
    print("supervisor[%d] %s" % (os.getpid(), msg), file=sys.stderr, flush=True)


def init_db(path: str, seed: int) -> None:
    """Creates the table if missing (WAL: readers in every worker never wait
    for a writer), and adds items 1..seed if the table is empty."""
    db = sqlite3.connect(path, timeout=10.0)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS items ("
            " id TEXT PRIMARY KEY, data TEXT NOT NULL,"
            " version INTEGER NOT NULL DEFAULT 1, updated REAL NOT NULL)"
        )
        (count,) = db.execute("SELECT COUNT(*) FROM items").fetchone()
        if seed and not count:
            now = time.time()
            db.executemany(
                "INSERT INTO items (id, data, version, updated) VALUES (?, ?, 1, ?)",
                [
                    (str(i), json.dumps({"name": "item %d" % i, "price": i * 100}), now)
                    for i in range(1, seed + 1)
                ],
            )
        db.commit()
    finally:
        db.close()


class StartError(Exception):
    pass


def read_line(proc: "subprocess.Popen[bytes]", deadline: float) -> bytes:
    """One line from a worker's stdout, within the deadline."""
    out = proc.stdout
    assert out is not None
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise StartError("worker pid %d did not answer in time" % proc.pid)
        ready, _, _ = select.select([out], [], [], left)
        if ready:
            chunk = os.read(out.fileno(), 1)  # byte by byte: no read-ahead past the line
            if not chunk:
                raise StartError("worker pid %d exited (status %s)" % (proc.pid, proc.wait()))
            buf += chunk
    return buf


class Slot:
    """One worker: its fixed ports and its current process."""

    def __init__(self, index: int, peer_port: int, http_port: int) -> None:
        self.index = index
        self.peer_port = peer_port
        self.http_port = http_port
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self.info: Dict[str, Any] = {}
        self.next_restart = 0.0

    def spawn(self, args: argparse.Namespace) -> None:
        cmd = [
            sys.executable,
            str(HERE / "worker.py"),
            "--index", str(self.index),
            "--db", args.db,
            "--peer-port", str(self.peer_port),
            "--http-host", args.http_host,
            "--http-port", str(self.http_port),
            "--cache-mb", str(args.cache_mb),
            "--load-delay-ms", str(args.load_delay_ms),
        ]  # fmt: skip
        # stdin stays open for the worker's life: its EOF means "stop".
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def hello(self, deadline: float) -> None:
        assert self.proc is not None
        self.info = json.loads(read_line(self.proc, deadline))
        # Pin the ports the system picked: a restart reuses them, so that
        # the peer list stays right.
        self.peer_port = int(self.info["peer_url"].rsplit(":", 1)[1])
        self.http_port = int(self.info["http_url"].rsplit(":", 1)[1])

    def send_peers(self, urls: List[str]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(urls) + "\n").encode())
        self.proc.stdin.flush()

    def wait_ready(self, deadline: float) -> None:
        assert self.proc is not None
        line = read_line(self.proc, deadline)
        if line != b"ready\n":
            raise StartError("worker %d said %r" % (self.index, line))

    def public(self) -> Dict[str, Any]:
        return {"index": self.index, **self.info}


def ports(base: int, n: int) -> List[int]:
    return [base + i if base else 0 for i in range(n)]


class Stop(Exception):
    pass


def on_signal(signum: int, frame: Any) -> None:
    # Once: a second signal must not cut the shutdown short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


def stop_all(slots: List[Slot]) -> None:
    procs = [s.proc for s in slots if s.proc is not None and s.proc.poll() is None]
    for p in procs:
        try:
            p.stdin.close()  # type: ignore[union-attr]  # EOF: stop
        except OSError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log("worker pid %d did not stop: SIGKILL" % p.pid)
            p.kill()
            p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--db", required=True, help="the SQLite file (created if missing)")
    ap.add_argument("--seed", type=int, default=0, help="add items 1..N to an empty table")
    ap.add_argument("--http-host", default="127.0.0.1")
    ap.add_argument("--http-port", type=int, default=0, help="first HTTP port (0: any free)")
    ap.add_argument("--peer-port", type=int, default=0, help="first peer port (0: any free)")
    ap.add_argument("--cache-mb", type=int, default=64, help="each worker's cache size")
    ap.add_argument("--load-delay-ms", type=float, default=0.0, help="make every row read this slow")
    ap.add_argument("--restart", action="store_true", help="start a worker that died again")
    args = ap.parse_args()
    if args.workers < 1:
        ap.error("--workers must be at least 1")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    init_db(args.db, args.seed)
    slots = [
        Slot(i, pp, hp)
        for i, (pp, hp) in enumerate(
            zip(ports(args.peer_port, args.workers), ports(args.http_port, args.workers))
        )
    ]
    try:
        deadline = time.monotonic() + START_TIMEOUT
        for s in slots:
            s.spawn(args)
        for s in slots:
            s.hello(deadline)
        peers = [s.info["peer_url"] for s in slots]
        for s in slots:
            s.send_peers(peers)
        for s in slots:
            s.wait_ready(deadline)
        out: IO[str] = sys.stdout
        out.write("READY " + json.dumps({"workers": [s.public() for s in slots]}) + "\n")
        for s in slots:
            out.write(
                "worker %d (pid %d): %s   (peer port %s)\n"
                % (s.index, s.info["pid"], s.info["http_url"], s.info["peer_url"])
            )
        out.flush()

        while True:
            time.sleep(0.2)
            alive = 0
            for s in slots:
                assert s.proc is not None
                code = s.proc.poll()
                if code is None:
                    alive += 1
                    continue
                if s.info.get("pid") == s.proc.pid:  # not reported yet
                    log("worker %d (pid %d) exited with status %d" % (s.index, s.proc.pid, code))
                    s.info["pid"] = None
                if args.restart and time.monotonic() >= s.next_restart:
                    s.next_restart = time.monotonic() + 1.0  # at most once a second
                    try:
                        s.spawn(args)
                        s.hello(time.monotonic() + START_TIMEOUT)
                        s.send_peers(peers)
                        s.wait_ready(time.monotonic() + START_TIMEOUT)
                        log("worker %d restarted as pid %d" % (s.index, s.proc.pid))
                        alive += 1
                    except (StartError, OSError, ValueError) as e:
                        log("worker %d could not be restarted: %s" % (s.index, e))
                        if s.proc is not None and s.proc.poll() is None:
                            s.proc.kill()
                            s.proc.wait()
            if not alive and not args.restart:
                log("every worker has exited")
                return 1
    except Stop as e:
        log("%s: stopping the workers" % e)
        return 0
    except StartError as e:
        log("start-up failed: %s" % e)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_all(slots)


if __name__ == "__main__":
    sys.exit(main())
