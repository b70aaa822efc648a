"""A WSGI service run by gunicorn with several worker processes, sharing one
groupcache: every worker is a node, and each key is loaded by one worker,
once, whichever worker a request lands on.

The recipe for prefork servers (gunicorn, uWSGI, multiprocessing):
create caches and pools in each worker, after the fork (gunicorn's
``post_fork`` hook, see gunicorn.conf.py; uWSGI's ``@postfork``). A
worker is a node on a port of its own: the ports PEER_PORT ..
PEER_PORT + WORKERS - 1 form the cluster, and a starting worker takes the
first one free (a worker that gunicorn restarts takes its predecessor's
port back). A cache or pool made before the fork keeps working in the
children too (the library abandons the parent's connections and threads
there), but a child's pool then serves nothing: the parent does.

Routes: ``GET /item/<id>`` (the item's value, loaded from the "database"
on a miss), ``GET /health`` (which worker and node answered).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional

import groupcache

HERE = Path(__file__).resolve().parent

WORKERS = int(os.environ.get("PREFORK_WORKERS", "4"))
PEER_PORT = int(os.environ.get("PREFORK_PEER_PORT", "9800"))
DB = os.environ.get("PREFORK_DB", str(HERE / "items.db"))
LOAD_LOG = os.environ.get("PREFORK_LOAD_LOG")  # one line per load, for tests

PEERS = ["http://127.0.0.1:%d" % (PEER_PORT + i) for i in range(WORKERS)]

pool: Optional[groupcache.Pool] = None
cache: Optional[groupcache.Cache] = None


def load_item(key: str) -> Optional[bytes]:
    """The loader: a query, run by the key's owner only."""
    with sqlite3.connect(DB) as db:
        row = db.execute("SELECT value FROM items WHERE id = ?", (key,)).fetchone()
    if LOAD_LOG:
        with open(LOAD_LOG, "a") as f:
            f.write("%d %s\n" % (os.getpid(), key))
    return None if row is None else row[0].encode()


def start_node(log: Any = None) -> None:
    """Makes this worker's pool and cache. Call it after the fork."""
    global pool, cache
    last: Optional[Exception] = None
    for url in PEERS:
        try:
            pool = groupcache.Pool(url.replace("http://", ""), self_url=url)
            break
        except OSError as e:  # the port is another worker's
            last = e
    if pool is None:
        raise RuntimeError("no free peer port in %s: %s" % (PEERS, last))
    pool.set_peers(PEERS)
    cache = groupcache.Cache("items", 64 << 20, loader=load_item, pool=pool)
    if log is not None:
        log.info("worker %d is node %s", os.getpid(), pool.url)


def application(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if cache is None or pool is None:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"no node yet\n"]
    if path == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [("%d %s\n" % (os.getpid(), pool.url)).encode()]
    if path.startswith("/item/"):
        key = path[len("/item/"):]
        try:
            value = cache.get(key)
        except KeyError:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such item\n"]
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [value]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def make_db(path: str, n: int) -> List[str]:
    """A database of n items ("item-0" = "value of item-0", ...)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, value TEXT)")
        ids = ["item-%d" % i for i in range(n)]
        db.executemany(
            "INSERT OR REPLACE INTO items VALUES (?, ?)", [(i, "value of " + i) for i in ids]
        )
    return ids
