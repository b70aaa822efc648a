"""A walk through the service: starts serve.py (3 workers, a temporary SQLite
database with 30 items), sends it real HTTP requests, prints what the
workers' /stats say, and stops it.

Run: PYTHONPATH=python_ctypes python3 examples/service/demo.py
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, List, Tuple

HERE = Path(__file__).resolve().parent
ITEMS = [str(i) for i in range(1, 31)]
TIMEOUT = 10.0


def request(base: str, method: str, path: str, body: Any = None) -> Tuple[int, Any]:
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=TIMEOUT)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def db_reads(urls: List[str]) -> List[int]:
    return [request(u, "GET", "/stats")[1]["db_reads"] for u in urls]


def total(urls: List[str], field: str) -> int:
    return sum(request(u, "GET", "/stats")[1]["cache"][field] for u in urls)


def main() -> int:
    tmp = tempfile.mkdtemp(prefix="groupcache-service-")
    cmd = [sys.executable, str(HERE / "serve.py"), "--workers", "3",
           "--db", os.path.join(tmp, "items.db"), "--seed", str(len(ITEMS)),
           "--load-delay-ms", "20"]  # fmt: skip
    out_path = os.path.join(tmp, "supervisor.out")
    log_path = os.path.join(tmp, "service.log")  # the processes' stderr
    with open(out_path, "w") as out, open(log_path, "w") as log:
        sup = subprocess.Popen(cmd, stdout=out, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        workers = None
        while workers is None:
            if sup.poll() is not None or time.monotonic() > deadline:
                print("the service did not start:\n" + open(log_path).read()[-3000:])
                return 1
            for line in open(out_path):
                if line.startswith("READY "):
                    workers = json.loads(line[6:])["workers"]
            time.sleep(0.05)
        urls = [w["http_url"] for w in workers]
        print("3 workers, each a groupcache node; their HTTP ports:")
        for w in workers:
            print("  worker %d (pid %d): %s  peer port %s" % (w["index"], w["pid"], w["http_url"], w["peer_url"]))

        # 1. Every worker reads every item.
        for u in urls:
            for k in ITEMS:
                assert request(u, "GET", "/items/" + k)[0] == 200
        reads = db_reads(urls)
        print("\n1. GET /items/1..%d on each worker (%d requests): database reads per worker %s,"
              " total %d: one per item, cluster-wide" % (len(ITEMS), 3 * len(ITEMS), reads, sum(reads)))

        # 2. Again: all from the cache.
        hits = total(urls, "cache_hits")
        for u in urls:
            for k in ITEMS:
                request(u, "GET", "/items/" + k)
        print("2. the same %d requests again: %d database reads, %d more cache hits"
              % (3 * len(ITEMS), sum(db_reads(urls)) - sum(reads), total(urls, "cache_hits") - hits))

        # 3. A stampede on a new item.
        request(urls[0], "PUT", "/items/new", {"name": "brand new"})
        before = sum(db_reads(urls))
        barrier = threading.Barrier(30)
        codes: List[int] = []

        def one(u: str) -> None:
            barrier.wait()
            codes.append(request(u, "GET", "/items/new")[0])

        threads = [threading.Thread(target=one, args=(u,)) for u in urls for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("3. 30 concurrent GET /items/new (10 per worker): statuses %s, %d database read"
              % (sorted(set(codes)), sum(db_reads(urls)) - before))

        # 4. A write, seen everywhere as soon as it returns.
        status, reply = request(urls[0], "PUT", "/items/7", {"name": "item 7, renamed", "price": 1})
        seen = [request(u, "GET", "/items/7")[1] for u in urls]
        print("4. PUT /items/7 on worker 0 -> %d %s; right after, workers 0, 1, 2 serve %s"
              % (status, reply, [(s["data"]["name"], s["version"]) for s in seen]))

        # 5. A delete, and a missing item.
        status, _ = request(urls[1], "DELETE", "/items/7")
        print("5. DELETE /items/7 on worker 1 -> %d; GET /items/7 on each worker -> %s;"
              " GET /items/nope -> %s" % (status, [request(u, "GET", "/items/7")[0] for u in urls],
                                         [request(u, "GET", "/items/nope")[0] for u in urls]))

        # 6. A worker dies.
        owner = {k: request(urls[0], "GET", "/items/" + k)[1]["loaded_by"] for k in ITEMS if k != "7"}
        os.kill(workers[2]["pid"], signal.SIGKILL)
        time.sleep(0.3)
        t0 = time.monotonic()
        ok = sum(request(u, "GET", "/items/" + k)[0] == 200 for u in urls[:2] for k in owner)
        took = time.monotonic() - t0
        k2 = next(k for k in owner if owner[k] == 2)
        status, reply = request(urls[0], "PUT", "/items/" + k2, {"name": "written while its owner is down"})
        print("6. SIGKILL worker 2: workers 0 and 1 answered %d/%d reads in %.2fs"
              " (worker 2's items loaded locally);\n   PUT /items/%s (worker 2 owned it) -> %d, warning: %s"
              % (ok, 2 * len(owner), took, k2, status, reply.get("warning", "none")))
        print("   worker 1 now serves %r" % request(urls[1], "GET", "/items/" + k2)[1]["data"]["name"])
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            code = sup.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(sup.pid, signal.SIGKILL)
            code = sup.wait()
    for name in os.listdir(tmp):  # the database; the log stays
        if name.startswith("items.db") or name == "supervisor.out":
            os.unlink(os.path.join(tmp, name))
    print("\nstopped (supervisor exit status %d); what the workers logged: %s" % (code, log_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
