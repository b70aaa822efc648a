"""A WSGI service run by gunicorn on several hosts, several worker processes
per host, sharing one groupcache; the cluster's membership comes from DNS.

Every worker is a node on a port of its own on its host's address: the
ports PEER_PORT .. PEER_PORT + WORKERS - 1 (a starting worker takes the
first one free, so a worker that gunicorn restarts takes its
predecessor's port back). One DNS name (SERVICE_NAME) has an A record per
host; every node looks it up with the port range,

    Pool(..., peers_from="dns+http://SERVICE_NAME:PEER_PORT-LAST_PORT")

and so finds every worker of every host, and a host that joins or leaves
is seen within a refresh, with no list to compute or hand out. Each key is
loaded by one worker of one host, once, whichever worker a request lands
on. As with examples/prefork, pools and caches are made in each worker
after the fork (gunicorn's ``post_fork``).

Environment: WORKERS_HOST (this host's address: the service binds
WORKERS_HOST:WORKERS_HTTP_PORT, the nodes WORKERS_HOST:PEER_PORT+i),
WORKERS_NAME (the DNS name of all hosts), WORKERS_PEER_PORT, WORKERS_COUNT
(workers per host), WORKERS_DB (SQLite), WORKERS_LOAD_LOG (one line per
load, for the demo and tests) and GROUPCACHE_NAMESERVER (a DNS server in
place of /etc/resolv.conf's, as the demo's dnsmasq).

Routes: ``GET /item/<id>`` (the item, loaded from the database on a miss
by its owner), ``GET /health`` (the worker's pid, node URL and how many
peers it sees).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional

import groupcache

HERE = Path(__file__).resolve().parent

HOST = os.environ.get("WORKERS_HOST", "127.0.3.201")
HTTP_PORT = int(os.environ.get("WORKERS_HTTP_PORT", "8900"))
NAME = os.environ.get("WORKERS_NAME", "cache.workers.test")
WORKERS = int(os.environ.get("WORKERS_COUNT", "4"))
PEER_PORT = int(os.environ.get("WORKERS_PEER_PORT", "9900"))
DB = os.environ.get("WORKERS_DB", str(HERE / "items.db"))
LOAD_LOG = os.environ.get("WORKERS_LOAD_LOG")

PEERS_FROM = "dns+http://%s:%d-%d" % (NAME, PEER_PORT, PEER_PORT + WORKERS - 1)

pool: Optional[groupcache.Pool] = None
cache: Optional[groupcache.Cache] = None


def load_item(key: str) -> Optional[bytes]:
    """The loader: a query, run by the key's owner only."""
    with sqlite3.connect(DB) as db:
        row = db.execute("SELECT value FROM items WHERE id = ?", (key,)).fetchone()
    if LOAD_LOG and pool is not None:
        with open(LOAD_LOG, "a") as f:
            f.write("%d %s %s\n" % (os.getpid(), pool.url, key))
    return None if row is None else row[0].encode()


def start_node(log: Any = None) -> None:
    """Makes this worker's pool and cache. Call it after the fork."""
    global pool, cache
    last: Optional[Exception] = None
    for port in range(PEER_PORT, PEER_PORT + WORKERS):
        try:
            # The default self URL, http://HOST:port, is how DNS and the
            # port range spell this node.
            pool = groupcache.Pool("%s:%d" % (HOST, port), peers_from=PEERS_FROM, peers_refresh=1.0)
            break
        except OSError as e:  # the port is another worker's
            last = e
    if pool is None:
        raise RuntimeError("no free peer port on %s from %d: %s" % (HOST, PEER_PORT, last))
    cache = groupcache.Cache("items", 64 << 20, loader=load_item, pool=pool)
    if log is not None:
        log.info("worker %d is node %s; peers from %s: %d", os.getpid(), pool.url, PEERS_FROM, len(pool.peers))


def application(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if cache is None or pool is None:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"no node yet\n"]
    if path == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [("%d %s %d\n" % (os.getpid(), pool.url, len(pool.peers))).encode()]
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
        db.executemany("INSERT OR REPLACE INTO items VALUES (?, ?)", [(i, "value of " + i) for i in ids])
    return ids
