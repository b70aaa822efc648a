"""One worker of the service: a groupcache node and an HTTP server, in one
asyncio process.  Started by serve.py (the supervisor), not by hand.

Start-up, over stdin/stdout with the supervisor:
  1. bind the peer port (a ``groupcache.Pool``) and the HTTP port, then print
     one JSON line: {"pid", "peer_url", "http_url"};
  2. read one JSON line from stdin: every worker's peer URL (the whole
     cluster, this worker included), hand it to ``Pool.set_peers``;
  3. print "ready".
After that, stdin reaching EOF (the supervisor went away or asks us to stop),
SIGTERM or SIGINT make the worker stop.  Logs go to stderr.

HTTP (a minimal HTTP/1.1 server on asyncio streams, keep-alive, no chunked
bodies):
  GET    /items/<id>   the item as JSON, through the cache (404: no such row)
  PUT    /items/<id>   JSON object body: insert or update the row, then
                       invalidate the key in the whole cluster
  DELETE /items/<id>   delete the row, then invalidate
  GET    /stats        this worker's cache counters and database reads
  GET    /health       {"status": "ok", ...} (503 "draining" while stopping)

Standalone (``--standalone``: one node per container, as in
examples/kubernetes): no supervisor; the settings come from the
environment (see ``Settings.from_env``), the membership from
GROUPCACHE_PEERS_FROM (DNS, read by the library) or SERVICE_PEERS (a static
list), and SIGTERM starts the pool's drain (GROUPCACHE_DRAIN_MS, read by the
library) while HTTP keeps being served, then stops.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import ctypes
import dataclasses
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

import groupcache

MAX_HEAD = 16 << 10  # request line + headers
MAX_BODY = 1 << 20
IDLE_TIMEOUT = 30.0  # a keep-alive connection waiting for its next request
BODY_TIMEOUT = 10.0  # reading a request body
MAX_ID = 256  # bytes of an item id, UTF-8

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


logger = logging.getLogger("service")


def log(msg: str) -> None:
    logger.warning("%s", msg)


def die_with_parent() -> None:
    """Linux: SIGKILL this process when the supervisor dies, however it dies
    (stdin EOF covers the polite cases; this covers a hung worker)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl
        os._exit(1)


# ---- the database ------------------------------------------------------------


class Items:
    """The rows, in SQLite: items(id TEXT PRIMARY KEY, data TEXT (JSON),
    version INTEGER, updated REAL).  One connection per thread: the loader
    runs on aget's threads and on the library's threads serving peers."""

    def __init__(self, path: str, worker: int, load_delay: float) -> None:
        self.path = path
        self.worker = worker
        self.load_delay = load_delay
        self.reads = 0  # loader calls: what the cache saves us
        self._lock = threading.Lock()
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db: Optional[sqlite3.Connection] = getattr(self._local, "db", None)
        if db is None:
            # Autocommit: every read sees the latest committed write.
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            self._local.db = db
        return db

    def load(self, key: str) -> Optional[bytes]:
        """The cache's loader: the item's JSON, or None for a missing row
        (the cache then raises KeyError, and caches nothing)."""
        with self._lock:
            self.reads += 1
        if self.load_delay:
            time.sleep(self.load_delay)  # a slow query, so that stampedes overlap
        row = self._db().execute(
            "SELECT data, version, updated FROM items WHERE id = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        item = {
            "id": key,
            "data": json.loads(row[0]),
            "version": row[1],
            "updated": row[2],
            "loaded_by": self.worker,  # which node ran the query
        }
        return json.dumps(item, separators=(",", ":")).encode()

    def put(self, key: str, data: Any) -> Tuple[bool, int]:
        """Inserts or updates; (created, version)."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT version FROM items WHERE id = ?", (key,)).fetchone()
            version = 1 if row is None else row[0] + 1
            db.execute(
                "INSERT OR REPLACE INTO items (id, data, version, updated) VALUES (?, ?, ?, ?)",
                (key, json.dumps(data), version, time.time()),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return row is None, version

    def delete(self, key: str) -> bool:
        return self._db().execute("DELETE FROM items WHERE id = ?", (key,)).rowcount > 0


# ---- HTTP ---------------------------------------------------------------------


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Response = Tuple[int, Optional[bytes], Dict[str, str]]


def as_json(status: int, obj: Any, **headers: str) -> Response:
    return status, json.dumps(obj, separators=(",", ":")).encode(), dict(headers)


def error(status: int, message: str, **headers: str) -> Response:
    return as_json(status, {"error": message}, **headers)


# ---- standalone settings (examples/kubernetes) -------------------------------------

# Every variable a standalone worker reads, with its default. The manifests
# in examples/kubernetes set these (tests/service/test_kubernetes.py checks
# that they set nothing else and that the ports agree).
ENV_DEFAULTS: Dict[str, str] = {
    "SERVICE_HTTP_PORT": "8000",  # the service's own HTTP port
    "SERVICE_PEER_PORT": "8001",  # the groupcache peer port (/healthz is there)
    "SERVICE_LISTEN_HOST": "127.0.0.1",  # where both bind (0.0.0.0 in a pod)
    "SERVICE_ADVERTISE_HOST": "",  # this node's address in peer URLs (the pod IP); "": the bound one
    "SERVICE_DB": "/tmp/items.db",  # the SQLite file, created and seeded if missing
    "SERVICE_SEED": "100",  # items 1..N in a new database
    "SERVICE_CACHE_MB": "64",
    "SERVICE_PEERS": "",  # static peer URLs, comma-separated (without GROUPCACHE_PEERS_FROM)
}

# The library's own variables this example looks at (the library reads them
# itself, with every other GROUPCACHE_* option): the membership spec decides
# the scheme of this node's URL and that no static list is set; the TLS
# files make the node serve https.
LIBRARY_ENV = ("GROUPCACHE_PEERS_FROM", "GROUPCACHE_TLS_CERT", "GROUPCACHE_TLS_KEY", "GROUPCACHE_TLS_CA")


@dataclasses.dataclass
class Settings:
    http_port: int
    peer_port: int
    listen_host: str
    advertise_host: str
    db: str
    seed: int
    cache_mb: int
    peers: List[str]
    peers_from: str

    @staticmethod
    def from_env(env: "Optional[Dict[str, str]]" = None) -> "Settings":
        e = dict(os.environ if env is None else env)
        v = {k: e.get(k, d) for k, d in ENV_DEFAULTS.items()}

        def number(name: str, lo: int, hi: int) -> int:
            try:
                n = int(v[name])
            except ValueError:
                raise SystemExit("%s=%r is not a whole number" % (name, v[name])) from None
            if not lo <= n <= hi:
                raise SystemExit("%s must be %d to %d, not %d" % (name, lo, hi, n))
            return n

        peers = [u.strip() for u in v["SERVICE_PEERS"].split(",") if u.strip()]
        peers_from = e.get("GROUPCACHE_PEERS_FROM", "")
        if peers and peers_from:
            raise SystemExit("SERVICE_PEERS and GROUPCACHE_PEERS_FROM: set one")
        return Settings(
            http_port=number("SERVICE_HTTP_PORT", 0, 65535),
            peer_port=number("SERVICE_PEER_PORT", 0, 65535),
            listen_host=v["SERVICE_LISTEN_HOST"],
            advertise_host=v["SERVICE_ADVERTISE_HOST"],
            db=v["SERVICE_DB"],
            seed=number("SERVICE_SEED", 0, 10**9),
            cache_mb=number("SERVICE_CACHE_MB", 1, 1 << 20),
            peers=peers,
            peers_from=peers_from,
        )

    def scheme(self) -> str:
        """https when the membership spec says so (dns+https://,
        dns+srv+https://) or the static URLs are https."""
        if self.peers_from:
            return "https" if self.peers_from.split("://", 1)[0].endswith("https") else "http"
        return "https" if any(u.startswith("https://") for u in self.peers) else "http"

    def self_url(self) -> Optional[str]:
        """This node's URL as the membership spells it: the advertised host
        (in a pod, its IP, which is what DNS gives the other nodes) or the
        bound one, and the peer port. None: the library's default
        (``http://<bound address>``, for port 0 on loopback)."""
        host = self.advertise_host or self.listen_host
        if not self.peer_port:
            if self.advertise_host or self.scheme() != "http":
                raise SystemExit("SERVICE_PEER_PORT=0 takes neither SERVICE_ADVERTISE_HOST nor https")
            return None
        if host in ("0.0.0.0", "::", ""):
            raise SystemExit("SERVICE_LISTEN_HOST=%s: set SERVICE_ADVERTISE_HOST (the pod IP)" % host)
        if ":" in host and not host.startswith("["):
            host = "[%s]" % host  # IPv6
        return "%s://%s:%d" % (self.scheme(), host, self.peer_port)


class Worker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.index: int = args.index
        self.items = Items(args.db, args.index, args.load_delay_ms / 1000.0)
        self.pool = groupcache.Pool(
            listen="%s:%d" % (args.peer_host, args.peer_port), self_url=args.self_url
        )
        self.cache = groupcache.Cache(
            "items", max_bytes=args.cache_mb << 20, loader=self.items.load, pool=self.pool
        )
        # PUT and DELETE block twice: on SQLite, then on cache.remove (which
        # waits for the owner and every peer). Neither may run on the loop.
        self.blocking = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="write")
        self.ready = asyncio.Event()  # set once the peer list is in
        self.http_url = ""
        self.connections: "set[asyncio.StreamWriter]" = set()
        self.draining = False  # stopping: /health says 503, the rest is served

    # -- routes --

    async def route(self, method: str, target: str, body: bytes) -> Response:
        path = target.split("?", 1)[0]
        if path == "/health":
            if method != "GET":
                return error(405, "use GET", Allow="GET")
            if self.draining:
                return as_json(503, {"status": "draining", "worker": self.index, "pid": os.getpid()})
            return as_json(200, {"status": "ok", "worker": self.index, "pid": os.getpid()})
        if path == "/stats":
            if method != "GET":
                return error(405, "use GET", Allow="GET")
            return as_json(200, self.stats())
        if path.startswith("/items/"):
            try:
                key = urllib.parse.unquote(path[len("/items/") :], errors="strict")
            except UnicodeDecodeError:
                return error(400, "the id is not UTF-8")
            if not key or len(key.encode()) > MAX_ID:
                return error(400, "the id must be 1 to %d bytes" % MAX_ID)
            if method == "GET":
                return await self.get_item(key)
            if method == "PUT":
                return await self.put_item(key, body)
            if method == "DELETE":
                return await self.delete_item(key)
            return error(405, "use GET, PUT or DELETE", Allow="GET, PUT, DELETE")
        return error(404, "no such route: " + path)

    async def get_item(self, key: str) -> Response:
        try:
            # A hit answers at once; a miss loads (here, or at the key's
            # owner) on a thread, never blocking the loop.
            value = await self.cache.aget(key)
        except groupcache.NotFoundError:
            return error(404, "no item %r" % key)
        except groupcache.TimeoutError as e:
            return error(504, str(e))
        except groupcache.PeerError as e:
            return error(502, str(e))
        except groupcache.LoaderError as e:
            return error(503, "loading failed: %s" % e)
        return 200, value, {}

    async def put_item(self, key: str, body: bytes) -> Response:
        try:
            data = json.loads(body)
        except ValueError:
            return error(400, "the body is not JSON")
        if not isinstance(data, dict):
            return error(400, "the body must be a JSON object")
        loop = asyncio.get_running_loop()
        created, version = await loop.run_in_executor(self.blocking, self.items.put, key, data)
        failed, warning = await self.invalidate(key)
        if failed:
            return failed
        reply = {"id": key, "version": version}
        if warning:
            reply["warning"] = warning
        return as_json(201 if created else 200, reply)

    async def delete_item(self, key: str) -> Response:
        loop = asyncio.get_running_loop()
        deleted = await loop.run_in_executor(self.blocking, self.items.delete, key)
        failed, warning = await self.invalidate(key)
        if failed:
            return failed
        if not deleted:
            return error(404, "no item %r" % key)
        if warning:
            return as_json(200, {"id": key, "deleted": True, "warning": warning})
        return 204, None, {}

    async def invalidate(self, key: str) -> Tuple[Optional[Response], str]:
        """Drops key from every node's cache: the owner's main cache and
        every hot cache. Returns once they all did, or could not be reached.

        (None, ""): done. (None, warning): every node that answered dropped
        it, but the key's owner could not be reached: if it is down, it holds
        nothing; if it is alive behind a partition, it may serve the old value
        to whoever reaches it. (response, _): the write is saved, the cache
        was not touched (e.g. this worker is shutting down)."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.blocking, self.cache.remove, key)
        except (groupcache.PeerError, groupcache.TimeoutError) as e:
            log("invalidating %r: %s" % (key, e))
            return None, "the key's owner could not be reached: %s" % e
        except groupcache.GroupcacheError as e:
            return as_json(503, {"error": "saved, but not invalidated: %s" % e, "saved": True}), ""
        return None, ""

    def stats(self) -> Dict[str, Any]:
        return {
            "worker": self.index,
            "pid": os.getpid(),
            "peer_url": self.pool.url,
            "http_url": self.http_url,
            "db_reads": self.items.reads,
            "cache": dataclasses.asdict(self.cache.stats()),
        }

    # -- the HTTP/1.1 connection loop --

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections.add(writer)
        try:
            while await self.serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as e:  # a bug: log it, drop the connection
            log("connection failed: %r" % e)
        finally:
            self.connections.discard(writer)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Reads one request, writes its response; False: close."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
        except asyncio.IncompleteReadError:
            return False  # the client closed (between requests, or mid-head)
        except asyncio.TimeoutError:
            return False  # idle
        except asyncio.LimitOverrunError:
            await self.respond(writer, "GET", *error(431, "request head over %d bytes" % MAX_HEAD), close=True)
            return False
        try:
            method, target, version, headers = parse_head(head)
        except HTTPError as e:
            await self.respond(writer, "GET", *error(e.status, str(e)), close=True)
            return False
        conn = headers.get("connection", "").lower()
        keep = (version == "HTTP/1.1" and "close" not in conn) or (
            version == "HTTP/1.0" and "keep-alive" in conn
        )
        try:
            body = await read_body(reader, headers)
        except HTTPError as e:
            await self.respond(writer, method, *error(e.status, str(e)), close=True)
            return False
        if not self.ready.is_set():
            resp = error(503, "starting", **{"Retry-After": "1"})
        else:
            try:
                resp = await self.route("GET" if method == "HEAD" else method, target, body)
            except Exception as e:
                log("%s %s failed: %r" % (method, target, e))
                resp = error(500, "%s: %s" % (type(e).__name__, e))
        await self.respond(writer, method, *resp, close=not keep)
        return keep

    async def respond(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        status: int,
        body: Optional[bytes],
        headers: Dict[str, str],
        close: bool,
    ) -> None:
        lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Unknown"))]
        if status != 204:
            lines.append("Content-Type: application/json")
            lines.append("Content-Length: %d" % len(body or b""))
        lines.append("X-Worker: %d" % self.index)
        lines.extend("%s: %s" % kv for kv in headers.items())
        if close:
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if body and method != "HEAD" and status != 204:
            writer.write(body)
        await writer.drain()


def parse_head(head: bytes) -> Tuple[str, str, str, Dict[str, str]]:
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HTTPError(400, "bad request line")
    method, target, version = parts
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HTTPError(400, "bad header line")
        headers[name.lower()] = value.strip()
    return method, target, version, headers


async def read_body(reader: asyncio.StreamReader, headers: Dict[str, str]) -> bytes:
    if "transfer-encoding" in headers:
        raise HTTPError(501, "chunked bodies are not supported: send Content-Length")
    length = headers.get("content-length")
    if length is None:
        return b""
    if not length.isdigit():
        raise HTTPError(400, "bad Content-Length")
    n = int(length)
    if n > MAX_BODY:
        raise HTTPError(413, "bodies are at most %d bytes" % MAX_BODY)
    try:
        return await asyncio.wait_for(reader.readexactly(n), BODY_TIMEOUT)
    except asyncio.TimeoutError:
        raise HTTPError(408, "the body took too long") from None


# ---- start-up and shutdown -------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    w = Worker(args)
    server = await asyncio.start_server(
        w.serve_connection, args.http_host, args.http_port, limit=MAX_HEAD
    )
    host, port = server.sockets[0].getsockname()[:2]
    w.http_url = "http://%s:%d" % (host, port)

    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    hello = {"pid": os.getpid(), "peer_url": w.pool.url, "http_url": w.http_url}
    sys.stdout.write(json.dumps(hello) + "\n")
    sys.stdout.flush()

    line = await stdin.readline()
    if not line:
        return  # the supervisor is gone
    w.pool.set_peers(json.loads(line))
    w.ready.set()
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def until_eof() -> None:
        while await stdin.read(4096):
            pass
        stop.set()

    eof = asyncio.ensure_future(until_eof())
    await stop.wait()
    eof.cancel()
    await stop_http(w, server)
    w.cache.close()
    w.pool.close()
    w.blocking.shutdown(wait=False, cancel_futures=True)


async def stop_http(w: Worker, server: asyncio.AbstractServer) -> None:
    server.close()
    for conn in list(w.connections):  # idle keep-alive connections too
        conn.transport.abort()
    try:
        await asyncio.wait_for(server.wait_closed(), 2.0)
    except asyncio.TimeoutError:
        pass


async def main_standalone(st: Settings) -> None:
    """One node per container: settings from the environment, no
    supervisor. SIGTERM: the pool drains (its /healthz says 503 for
    GROUPCACHE_DRAIN_MS while peers are still answered; this service's
    /health says 503 too), then everything stops."""
    from serve import init_db  # the same table and seed as the supervisor's

    init_db(st.db, st.seed)
    loop = asyncio.get_running_loop()
    args = argparse.Namespace(
        index=0, db=st.db, peer_host=st.listen_host, peer_port=st.peer_port,
        self_url=st.self_url(), cache_mb=st.cache_mb, load_delay_ms=0.0,
    )  # fmt: skip
    w = Worker(args)
    server = await asyncio.start_server(w.serve_connection, st.listen_host, st.http_port, limit=MAX_HEAD)
    host, port = server.sockets[0].getsockname()[:2]
    w.http_url = "http://%s:%d" % (host, port)
    if st.peers:
        w.pool.set_peers(st.peers)
    # else: GROUPCACHE_PEERS_FROM, looked up by the library itself.
    w.ready.set()
    log("serving http on %s, peers on %s (%s)" % (w.http_url, w.pool.url, st.peers_from or "static peers"))
    print(json.dumps({"pid": os.getpid(), "peer_url": w.pool.url, "http_url": w.http_url}), flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log("stopping: draining the pool")
    w.draining = True
    # close() blocks for the drain while the pool serves on: off the loop,
    # so that this service's HTTP is served meanwhile too.
    await loop.run_in_executor(None, w.pool.close)
    await stop_http(w, server)
    w.cache.close()
    w.blocking.shutdown(wait=False, cancel_futures=True)
    log("stopped")


def main() -> None:
    if sys.argv[1:] == ["--standalone"]:  # examples/kubernetes: all from the environment
        logging.basicConfig(level=logging.WARNING, format="node[%(process)d] %(name)s: %(message)s")
        settings = Settings.from_env()
        try:
            asyncio.run(main_standalone(settings))
        except KeyboardInterrupt:
            pass
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--peer-port", type=int, default=0)
    p.add_argument("--http-host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=0)
    p.add_argument("--cache-mb", type=int, default=64)
    p.add_argument("--load-delay-ms", type=float, default=0.0)
    args = p.parse_args()
    args.peer_host = "127.0.0.1"
    args.self_url = None
    # The library's own warnings (a peer that failed, a key loaded here
    # instead) arrive through the "groupcache" logger: to stderr, tagged.
    logging.basicConfig(
        level=logging.WARNING,
        format="worker %d[%%(process)d] %%(name)s: %%(message)s" % args.index,
    )
    die_with_parent()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
