"""The main demo: a groupcache cluster of three Python worker processes.

Each worker is one node: a `groupcache.Pool` on loopback and a
`groupcache.Cache` whose loader reads a row from one SQLite database. The
coordinator (this process) drives the workers over pipes and prints what
their counters say:

1. every key is loaded once across the whole cluster;
2. a stampede of concurrent gets on every worker is one load;
3. a hot key is served locally after a few fetches from its owner;
4. an UPDATE followed by `remove` is seen by every worker (the
   invalidation the original groupcache lacks);
5. `get_many` of 100 new rows: one `loader_many` call (one
   `SELECT ... WHERE id IN (...)`) on each owner, all at once;
6. a worker killed with SIGKILL, and the others still answering.

Run: PYTHONPATH=python_ctypes python3 examples/cluster_demo.py
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from typing import Any

ROWS = 120


def worker(name: str, db_path: str, conn: Any) -> None:
    """One node. Answers commands from the coordinator until told to stop."""
    import logging

    import groupcache

    # The library logs each failed peer call (step 6 makes many) to the
    # "groupcache" logger; this demo shows the counters instead.
    logging.getLogger("groupcache").setLevel(logging.ERROR)

    loads = {"n": 0}
    lock = threading.Lock()

    def load_row(key: str) -> bytes | None:
        with lock:
            loads["n"] += 1
        time.sleep(0.05)  # a slow query, so that concurrent gets overlap
        db = sqlite3.connect(db_path)
        try:
            row = db.execute("SELECT name FROM users WHERE id = ?", (int(key),)).fetchone()
        finally:
            db.close()
        return None if row is None else row[0].encode()

    batches = {"calls": 0, "keys": 0}

    def load_rows(keys: list[str]) -> dict[str, bytes]:
        """The batch loader: one query for many rows (get_many uses it)."""
        with lock:
            batches["calls"] += 1
            batches["keys"] += len(keys)
        time.sleep(0.05)  # one slow query, however many rows
        db = sqlite3.connect(db_path)
        try:
            q = "SELECT id, name FROM users WHERE id IN (%s)" % ",".join("?" * len(keys))
            rows = db.execute(q, [int(k) for k in keys]).fetchall()
        finally:
            db.close()
        return {str(i): name.encode() for i, name in rows}

    pool = groupcache.Pool(listen="127.0.0.1:0")
    conn.send(pool.url)
    pool.set_peers(conn.recv())
    cache = groupcache.Cache("users", max_bytes=16 << 20, loader=load_row, pool=pool, loader_many=load_rows)
    conn.send("ready")

    def stats() -> dict[str, int]:
        s = cache.stats()
        out = {f: getattr(s, f) for f in ("gets", "cache_hits", "peer_loads", "peer_errors",
                                           "local_loads", "hot_hits", "hot_items", "server_requests")}
        out["loader_calls"] = loads["n"]
        out["batch_calls"] = batches["calls"]
        out["batch_keys"] = batches["keys"]
        return out

    while True:
        cmd, *args = conn.recv()
        try:
            if cmd == "get_each":
                conn.send([cache.get(k) for k in args[0]])
            elif cmd == "get_many":
                got = cache.get_many(args[0])
                conn.send([got.get(k) for k in args[0]])
            elif cmd == "stampede":
                key, n = args
                results: list[bytes] = []
                barrier = threading.Barrier(n)

                def one() -> None:
                    barrier.wait()
                    v = cache.get(key)
                    with lock:
                        results.append(v)

                threads = [threading.Thread(target=one) for _ in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                conn.send(results)
            elif cmd == "repeat":
                key, n = args
                conn.send([cache.get(key) for _ in range(n)][-1])
            elif cmd == "owner":
                conn.send(pool.owner(args[0]))
            elif cmd == "remove":
                cache.remove(args[0])
                conn.send("ok")
            elif cmd == "stats":
                conn.send(stats())
            elif cmd == "stop":
                cache.close()
                pool.close()
                conn.send("bye")
                return
        except Exception as e:  # report, keep serving
            conn.send(e)


def main() -> None:
    ctx = mp.get_context("spawn")  # fresh interpreters: never fork a process with threads
    tmp = tempfile.mkdtemp(prefix="groupcache-demo-")
    db_path = os.path.join(tmp, "users.db")
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"user {i}") for i in range(ROWS)])
    db.commit()

    names = ["worker-a", "worker-b", "worker-c"]
    procs, pipes = [], []
    for n in names:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=worker, args=(n, db_path, child), daemon=True)
        p.start()
        procs.append(p)
        pipes.append(parent)
    urls = [c.recv() for c in pipes]
    for c in pipes:
        c.send(urls)
    for c in pipes:
        assert c.recv() == "ready"
    print(f"cluster of {len(names)} workers: {', '.join(urls)}")

    def ask(i: int, *cmd: Any) -> Any:
        pipes[i].send(cmd)
        r = pipes[i].recv()
        if isinstance(r, Exception):
            raise r
        return r

    def all_stats(alive: list[int]) -> list[dict[str, int]]:
        return [ask(i, "stats") for i in alive]

    # 1. Every worker reads every row; each row is loaded once, cluster-wide.
    keys = [str(i) for i in range(100)]
    answers = [ask(i, "get_each", keys) for i in range(3)]
    assert all(a == answers[0] for a in answers), "every worker sees the same bytes"
    st = all_stats([0, 1, 2])
    calls = [s["loader_calls"] for s in st]
    print(f"\n1. each worker read {len(keys)} rows; loader calls per worker {calls}, "
          f"total {sum(calls)} (one per key across the cluster)")

    # 2. A stampede: 16 threads on each worker ask for one new row at once.
    db.execute("INSERT INTO users VALUES (?, ?)", (ROWS, "a brand-new user"))
    db.commit()
    before = sum(s["loader_calls"] for s in all_stats([0, 1, 2]))
    for c in pipes:
        c.send(("stampede", str(ROWS), 16))
    got = [v for c in pipes for v in c.recv()]
    after = sum(s["loader_calls"] for s in all_stats([0, 1, 2]))
    print(f"2. stampede: {len(got)} concurrent gets on 3 workers -> {after - before} load "
          f"(value {got[0]!r})")

    # 3. A hot key: worker-a asks 2,000 times for a row another worker owns.
    hot_key = next(k for k in keys if ask(0, "owner", k) != urls[0])
    before = ask(0, "stats")
    ask(0, "repeat", hot_key, 2000)
    after = ask(0, "stats")
    print(f"3. hot key {hot_key!r}: 2000 gets on worker-a -> "
          f"{after['peer_loads'] - before['peer_loads']} fetches from its owner, "
          f"{after['hot_hits'] - before['hot_hits']} served from worker-a's hot cache")

    # 4. UPDATE a row, remove the key once, every worker sees the new value.
    db.execute("UPDATE users SET name = ? WHERE id = 7", ("user 7, renamed",))
    db.commit()
    stale = [ask(i, "get_each", ["7"])[0] for i in range(3)]
    ask(1, "remove", "7")
    fresh = [ask(i, "get_each", ["7"])[0] for i in range(3)]
    print(f"4. UPDATE row 7: before remove the workers serve {sorted(set(stale))}; "
          f"after worker-b's remove: {sorted(set(fresh))}")
    assert set(fresh) == {b"user 7, renamed"}

    # 5. Batches: 100 rows no worker has read, in one get_many on worker-a.
    db.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"user {i}") for i in range(1000, 1100)])
    db.commit()
    new_keys = [str(i) for i in range(1000, 1100)]
    before = all_stats([0, 1, 2])
    t0 = time.monotonic()
    got = ask(0, "get_many", new_keys)
    took = time.monotonic() - t0
    after = all_stats([0, 1, 2])
    assert got == [f"user {k}".encode() for k in new_keys]
    bcalls = [a["batch_calls"] - b["batch_calls"] for a, b in zip(after, before)]
    bkeys = [a["batch_keys"] - b["batch_keys"] for a, b in zip(after, before)]
    singles = sum(a["loader_calls"] - b["loader_calls"] for a, b in zip(after, before))
    print(f"5. get_many of {len(new_keys)} new rows on worker-a: loader_many calls per worker {bcalls} "
          f"(rows {bkeys}), per-key loads {singles}, in {took:.2f}s (each call one 50 ms query, all at once; "
          f"one by one it would be {len(new_keys) * 0.05:.0f}s)")
    assert bcalls == [1, 1, 1] and sum(bkeys) == len(new_keys) and singles == 0

    # 6. Kill worker-c; the others still answer every key.
    os.kill(procs[2].pid, signal.SIGKILL)
    procs[2].join()
    t0 = time.monotonic()
    answers = [ask(i, "get_many", keys) for i in (0, 1)]
    took = time.monotonic() - t0
    ok = all(len(a) == len(keys) and None not in a for a in answers)
    st = all_stats([0, 1])
    print(f"6. worker-c killed: worker-a and worker-b answered all {len(keys)} keys again "
          f"({'ok' if ok else 'MISSING'}) in {took:.2f}s; peer errors "
          f"{[s['peer_errors'] for s in st]}")

    for i in (0, 1):
        ask(i, "stop")
        procs[i].join(5)
    db.close()
    print("\ndemo done")


if __name__ == "__main__":
    sys.exit(main())
