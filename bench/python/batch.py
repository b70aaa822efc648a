"""Issue 10's batch targets, measured in one run (bench/python/batch.sh).

1. Cold: 1,000 keys spread over 3 nodes (each node a process of its own,
   each with a SQLite loader), fetched by one ``get_many`` on node 0.
   - "batched": this tree, ``loader_many`` running one
     ``SELECT ... WHERE id IN (...)`` per chunk; the keys other nodes own
     travel in one batch request per owner.
   - "today": the library as of ``BASELINE_REV`` (the commit before
     batches), whose ``get_many`` loads each miss in turn with ``loader``
     (one ``SELECT ... WHERE id = ?`` and, for a key another node owns, one
     peer request).
   Each repetition uses 1,000 keys no node has seen. Target: batched at
   least 20x faster, with ``loader_many`` called once per owner node per
   chunk (checked: the nodes count their calls).
2. Warm: 1,000 keys of 16 bytes over the same 3 nodes, ``get_many`` from
   node 0 against redis-py's ``MGET`` of the same keys on a local
   redis-server. Target: no slower.

Every node and the driver are separate processes started here; the
results are checked value by value before anything is timed.

Usage: bench/python/batch.py --new-lib PATH --new-py DIR --old-lib PATH --old-py DIR [--reps N]
(bench/python/batch.sh builds both libraries and passes these).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

HERE = Path(__file__).resolve().parent
N_KEYS = 1000
WARM_VALUE = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def row_value(i: int) -> bytes:
    """A row's payload: 16 bytes, derived from the id (checked on arrival)."""
    return ("u%015d" % i).encode()


def make_db(path: str, rows: int) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    db.executemany("INSERT INTO users VALUES (?, ?)", ((i, row_value(i)) for i in range(rows)))
    db.commit()
    db.close()


# ---- one node (a process) -------------------------------------------------------


def node_main(args: argparse.Namespace) -> None:
    """One node: a Pool on its port, a Cache "users" whose loaders read the
    SQLite table. Reads commands on stdin, answers one JSON line each."""
    import groupcache

    ports = [int(p) for p in args.ports.split(",")]
    urls = ["http://127.0.0.1:%d" % p for p in ports]
    pool = groupcache.Pool("127.0.0.1:%d" % ports[args.index], urls[args.index])
    pool.set_peers(urls)
    local = threading.local()
    counts = {"loader": 0, "loader_many": 0, "loader_many_keys": 0}
    lock = threading.Lock()

    def conn() -> sqlite3.Connection:
        c = getattr(local, "db", None)
        if c is None:
            c = local.db = sqlite3.connect(args.db, check_same_thread=False)
        return c

    def load_one(key: str) -> Optional[bytes]:
        with lock:
            counts["loader"] += 1
        row = conn().execute("SELECT payload FROM users WHERE id = ?", (int(key[5:]),)).fetchone()
        return None if row is None else bytes(row[0])

    def load_many(keys: List[str]) -> Mapping[str, bytes]:
        with lock:
            counts["loader_many"] += 1
            counts["loader_many_keys"] += len(keys)
        ids = [int(k[5:]) for k in keys]
        q = "SELECT id, payload FROM users WHERE id IN (%s)" % ",".join("?" * len(ids))
        return {"user:%d" % i: bytes(p) for i, p in conn().execute(q, ids)}

    if args.batched:
        cache = groupcache.Cache("users", 64 << 20, load_one, pool, loader_many=load_many)  # type: ignore[call-arg]
    else:
        cache = groupcache.Cache("users", 64 << 20, load_one, pool)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "counts":
            with lock:
                out: Dict[str, Any] = dict(counts)
        elif op == "cold":
            out = {"seconds": []}
            for rep in range(cmd["reps"]):
                first = cmd["first"] + rep * N_KEYS
                keys = ["user:%d" % i for i in range(first, first + N_KEYS)]
                t0 = time.perf_counter()
                got = cache.get_many(keys)
                out["seconds"].append(time.perf_counter() - t0)
                check(got, keys)
        elif op == "prime":
            # Loads key sets at their owners (and nowhere else but here).
            for j in range(cmd["sets"]):
                keys = ["user:%d" % i for i in range(cmd["first"] + j * N_KEYS, cmd["first"] + (j + 1) * N_KEYS)]
                check(cache.get_many(keys), keys)
            out = {}
        elif op == "warm_once":
            # Each set once: this node's own keys are hits, the others are
            # warm at their owners and not yet in this node's hot cache.
            out = {"seconds": []}
            for j in range(cmd["sets"]):
                keys = ["user:%d" % i for i in range(cmd["first"] + j * N_KEYS, cmd["first"] + (j + 1) * N_KEYS)]
                t0 = time.perf_counter()
                got = cache.get_many(keys)
                out["seconds"].append(time.perf_counter() - t0)
                check(got, keys)
        elif op == "warm":
            keys = ["user:%d" % i for i in range(cmd["first"], cmd["first"] + N_KEYS)]
            check(cache.get_many(keys), keys)  # load them once, everywhere
            check(cache.get_many(keys), keys)
            out = {"seconds": timed(lambda: cache.get_many(keys), cmd["rounds"])}
        elif op == "quit":
            break
        else:
            raise SystemExit("unknown op %r" % op)
        print(json.dumps(out), flush=True)
    cache.close()
    pool.close()


def check(got: Mapping[str, bytes], keys: List[str]) -> None:
    if len(got) != len(keys):
        raise AssertionError("get_many returned %d of %d keys" % (len(got), len(keys)))
    for k in keys:
        if got[k] != row_value(int(k[5:])):
            raise AssertionError("%s: got %r" % (k, got[k]))


def timed(f: Any, rounds: int) -> List[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return out


# ---- the driver -----------------------------------------------------------------


class Cluster:
    """Three node processes of one build of the library."""

    def __init__(self, lib: str, pydir: str, db: str, batched: bool) -> None:
        ports = ",".join(str(free_port()) for _ in range(3))
        env = dict(os.environ, GROUPCACHE_LIB=lib, PYTHONPATH=pydir)
        self.procs = []
        for i in range(3):
            cmd = [sys.executable, __file__, "node", "--index", str(i), "--ports", ports, "--db", db]
            if batched:
                cmd.append("--batched")
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
            self.procs.append(p)
        for p in self.procs:
            self._read(p)

    @staticmethod
    def _read(p: "subprocess.Popen[str]") -> Dict[str, Any]:
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line:
            raise RuntimeError("a node exited (code %s)" % p.wait())
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, i: int, **cmd: Any) -> Dict[str, Any]:
        p = self.procs[i]
        assert p.stdin is not None
        p.stdin.write(json.dumps(cmd) + "\n")
        p.stdin.flush()
        return self._read(p)

    def counts(self) -> List[Dict[str, int]]:
        return [self.ask(i, op="counts") for i in range(3)]

    def close(self) -> None:
        for p in self.procs:
            try:
                assert p.stdin is not None
                p.stdin.write(json.dumps({"op": "quit"}) + "\n")
                p.stdin.close()
            except BrokenPipeError:
                pass
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def redis_mget(scratch: Path, first: int, rounds: int) -> List[float]:
    sys.path.insert(0, str(HERE))
    import redis

    from bench import Redis  # the bench's own redis-server on loopback

    srv = Redis(scratch)
    try:
        r = redis.Redis(host="127.0.0.1", port=srv.port)
        keys = ["user:%d" % i for i in range(first, first + N_KEYS)]
        r.mset({k: row_value(int(k[5:])) for k in keys})
        got = r.mget(keys)
        assert got == [row_value(int(k[5:])) for k in keys]
        return timed(lambda: r.mget(keys), rounds)
    finally:
        srv.stop()


def us(xs: List[float]) -> float:
    return statistics.median(xs) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", nargs="?", default="drive")
    ap.add_argument("--index", type=int)
    ap.add_argument("--ports")
    ap.add_argument("--db")
    ap.add_argument("--batched", action="store_true")
    ap.add_argument("--new-lib")
    ap.add_argument("--new-py")
    ap.add_argument("--old-lib")
    ap.add_argument("--old-py")
    ap.add_argument("--old-rev", default="")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--sets", type=int, default=30)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--out", default=str(HERE.parent / "out" / "batch.md"))
    args = ap.parse_args()
    if args.mode == "node":
        node_main(args)
        return
    with tempfile.TemporaryDirectory(prefix="gc-batch-") as tmp:
        scratch = Path(tmp)
        db = str(scratch / "users.db")
        sets = args.sets
        cold_rows = N_KEYS * 2 * args.reps
        warm_first = {"old": cold_rows, "new": cold_rows + sets * N_KEYS}
        hot_first = {"old": cold_rows + 2 * sets * N_KEYS, "new": cold_rows + 2 * sets * N_KEYS + N_KEYS}
        rows = cold_rows + 2 * sets * N_KEYS + 2 * N_KEYS
        make_db(db, rows)
        res: Dict[str, Any] = {}
        # Today: per-key loads.
        old = Cluster(args.old_lib, args.old_py, db, batched=False)
        try:
            res["old_cold"] = old.ask(0, op="cold", reps=args.reps, first=0)["seconds"]
            old.ask(1, op="prime", sets=sets, first=warm_first["old"])
            res["old_warm"] = old.ask(0, op="warm_once", sets=sets, first=warm_first["old"])["seconds"]
            res["old_hot"] = old.ask(0, op="warm", first=hot_first["old"], rounds=args.rounds)["seconds"]
        finally:
            old.close()
        new = Cluster(args.new_lib, args.new_py, db, batched=True)
        try:
            res["new_cold"] = []
            calls_seen: List[List[int]] = []  # per repetition, per node
            keys_seen: List[List[int]] = []
            singles = 0
            for rep in range(args.reps):
                before = new.counts()
                first = (args.reps + rep) * N_KEYS
                res["new_cold"] += new.ask(0, op="cold", reps=1, first=first)["seconds"]
                after = new.counts()
                calls_seen.append([a["loader_many"] - b["loader_many"] for a, b in zip(after, before)])
                keys_seen.append([a["loader_many_keys"] - b["loader_many_keys"] for a, b in zip(after, before)])
                singles += sum(a["loader"] - b["loader"] for a, b in zip(after, before))
            new.ask(1, op="prime", sets=sets, first=warm_first["new"])
            res["new_warm"] = new.ask(0, op="warm_once", sets=sets, first=warm_first["new"])["seconds"]
            res["new_hot"] = new.ask(0, op="warm", first=hot_first["new"], rounds=args.rounds)["seconds"]
        finally:
            new.close()
        res["redis_mget"] = redis_mget(scratch, hot_first["new"], args.rounds)

    # Once per owner node per chunk: a node that owns k of a repetition's
    # keys needs ceil(k / chunk) calls for them, and every key is loaded once.
    for calls, keys in zip(calls_seen, keys_seen):
        if sum(keys) != N_KEYS:
            raise AssertionError("loader_many loaded %d keys, want %d" % (sum(keys), N_KEYS))
        want = [-(-k // args.chunk) for k in keys]
        if calls != want:
            raise AssertionError("loader_many calls per node %s, want %s (keys %s)" % (calls, want, keys))
    if singles:
        raise AssertionError("%d per-key loader calls during batched get_many" % singles)
    old_c, new_c = us(res["old_cold"]), us(res["new_cold"])
    old_w, new_w, red = us(res["old_warm"]), us(res["new_warm"]), us(res["redis_mget"])
    old_h, new_h = us(res["old_hot"]), us(res["new_hot"])
    lines = [
        "3 node processes per system on loopback, a SQLite table of 16-byte rows; node 0 calls",
        "`get_many`; medians. \"today\" is the library at %s,"
        % (args.old_rev or "the baseline commit"),
        "whose `get_many` loads each miss in turn; \"batched\" is this tree with `loader_many`",
        "(`SELECT ... WHERE id IN (...)`, chunks of %d keys)." % args.chunk,
        "",
        "| case | today | batched | redis-py MGET | ratio |",
        "|---|---:|---:|---:|---|",
        "| 1,000 cold keys | %.0f µs | %.0f µs | | batched %.1fx faster than today |" % (old_c, new_c, old_c / new_c),
        "| 1,000 warm keys (16 B), each set once: at their owners, not in node 0's hot cache |"
        " %.0f µs | %.0f µs | %.0f µs | batched %.2fx the time of MGET |" % (old_w, new_w, red, new_w / red),
        "| the same 1,000 keys again and again (node 0's hot cache fills, 1 in 10 per fetch) |"
        " %.0f µs | %.0f µs | %.0f µs | batched %.2fx the time of MGET |" % (old_h, new_h, red, new_h / red),
        "",
        "Checked in the same run: every repetition called `loader_many` once per owner node per",
        "chunk (first repetition, keys per node %s, calls %s) and the per-key `loader` never."
        % (keys_seen[0], calls_seen[0]),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    print(json.dumps({"cold_speedup": old_c / new_c, "warm_vs_mget": new_w / red, "hot_vs_mget": new_h / red}))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
