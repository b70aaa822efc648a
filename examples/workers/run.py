"""The workers demo (``make demo``): two "hosts" on loopback, 127.0.3.201
and 127.0.3.202, each a gunicorn master with 4 workers; every worker a
groupcache node on its host's address and a port of PEER_PORT..PEER_PORT+3.
One DNS name, served by Debian's dnsmasq on 127.0.0.1 (what a real
deployment's DNS or a Kubernetes headless Service does), has an A record per
host; every worker finds all 8 nodes from it with the port range.

It asks for every item through both hosts, several times, then shows from
the load log that each item was loaded once, by one worker, across all 8.
Exits non-zero otherwise.

    python examples/workers/run.py [--items 40] [--load-log PATH]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HOSTS = ["127.0.3.201", "127.0.3.202"]
NAME = "cache.workers.test"
WORKERS = 4


def free_port(ips: Sequence[str], span: int, proto: int = socket.SOCK_STREAM) -> int:
    """The first of ``span`` ports free on every address of ``ips``."""
    for _ in range(500):
        with socket.socket(socket.AF_INET, proto) as s:
            s.bind((ips[0], 0))
            base = int(s.getsockname()[1])
        if base + span > 65535:
            continue
        try:
            for ip in ips:
                for p in range(base, base + span):
                    with socket.socket(socket.AF_INET, proto) as s:
                        s.bind((ip, p))
            return base
        except OSError:
            continue
    raise RuntimeError("no %d free ports on %s" % (span, ips))


def dnsmasq_path() -> str:
    for p in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq"):
        if os.access(p, os.X_OK):
            return p
    found = shutil.which("dnsmasq")
    if not found:
        raise SystemExit("dnsmasq is not installed (make demo installs it: apt-get install dnsmasq-base)")
    return found


def start_dns(workdir: Path) -> Tuple["subprocess.Popen[bytes]", str]:
    """dnsmasq on 127.0.0.1: NAME has an A record per host; nothing is
    forwarded anywhere."""
    (workdir / "hosts").write_text("".join("%s %s\n" % (ip, NAME) for ip in HOSTS))
    while True:
        port = free_port(["127.0.0.1"], 1, socket.SOCK_DGRAM)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        break
    args = [
        dnsmasq_path(), "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        "--bind-interfaces", "--listen-address=127.0.0.1", "--port=%d" % port, "--user=root",
        "--pid-file=", "--log-facility=-", "--local=/workers.test/",
        "--addn-hosts=%s" % (workdir / "hosts"),
    ]  # fmt: skip
    log = open(workdir / "dnsmasq.log", "wb")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    wait_for(lambda: listening("127.0.0.1", port), "dnsmasq", proc, workdir / "dnsmasq.log")
    return proc, "127.0.0.1:%d" % port


def listening(ip: str, port: int) -> bool:
    try:
        socket.create_connection((ip, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_for(cond, what: str, proc: "subprocess.Popen[bytes]", log: Path, timeout: float = 60) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise SystemExit("%s exited (%s):\n%s" % (what, proc.returncode, log.read_text(errors="replace")[-3000:]))
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for %s:\n%s" % (what, log.read_text(errors="replace")[-3000:]))
        time.sleep(0.05)


def get(ip: str, port: int, path: str) -> Tuple[int, bytes]:
    c = http.client.HTTPConnection(ip, port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def health(ip: str, port: int, tries: int) -> Dict[int, Tuple[str, int]]:
    """pid -> (node URL, peers it sees), of the workers that answered."""
    seen: Dict[int, Tuple[str, int]] = {}
    for _ in range(tries):
        try:
            status, body = get(ip, port, "/health")
        except OSError:
            continue
        if status == 200:
            pid, url, peers = body.decode().split()
            seen[int(pid)] = (url, int(peers))
    return seen


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--load-log", help="where the workers log each load (default: a temporary file)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import app  # noqa: E402 - the example's module, for make_db

    workdir = Path(tempfile.mkdtemp(prefix="gc-workers-"))
    load_log = Path(args.load_log) if args.load_log else workdir / "loads.log"
    db = str(workdir / "items.db")
    ids = app.make_db(db, args.items)
    http_port = free_port(HOSTS, 1)
    peer_port = free_port(HOSTS, WORKERS)
    dns, nameserver = start_dns(workdir)
    masters: List["subprocess.Popen[bytes]"] = []
    try:
        for ip in HOSTS:
            env = dict(os.environ)
            env.update(
                WORKERS_HOST=ip, WORKERS_HTTP_PORT=str(http_port), WORKERS_NAME=NAME,
                WORKERS_COUNT=str(WORKERS), WORKERS_PEER_PORT=str(peer_port), WORKERS_DB=db,
                WORKERS_LOAD_LOG=str(load_log), GROUPCACHE_NAMESERVER=nameserver,
            )  # fmt: skip
            if (ROOT / "python_ctypes" / "groupcache").is_dir() and "GROUPCACHE_TEST_INSTALLED" not in env:
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python_ctypes"), env.get("PYTHONPATH")]))
            log = open(workdir / ("gunicorn-%s.log" % ip), "wb")
            cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:application"]
            masters.append(subprocess.Popen(cmd, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT))
        print("dnsmasq on %s: %s -> %s" % (nameserver, NAME, " ".join(HOSTS)))
        print("peers_from = %s" % ("dns+http://%s:%d-%d" % (NAME, peer_port, peer_port + WORKERS - 1)))
        # Up when every worker of both hosts answers and sees all 8 nodes.
        workers: Dict[int, Tuple[str, int]] = {}
        for ip, m in zip(HOSTS, masters):
            glog = workdir / ("gunicorn-%s.log" % ip)

            def ready(ip: str = ip) -> bool:
                workers.update(health(ip, http_port, 8))
                mine = [w for w in workers.values() if w[0].startswith("http://%s:" % ip)]
                return len(mine) == WORKERS and all(p == len(HOSTS) * WORKERS for _, p in mine)

            wait_for(ready, "the 4 workers of host %s" % ip, m, glog)
        for pid, (url, peers) in sorted(workers.items(), key=lambda w: w[1][0]):
            print("  worker %6d  node %-24s sees %d peers" % (pid, url, peers))
        # Every item, through both hosts, three times: 6 requests each.
        for _ in range(3):
            for ip in HOSTS:
                for key in ids:
                    status, body = get(ip, http_port, "/item/" + key)
                    if (status, body) != (200, ("value of " + key).encode()):
                        print("item %s from %s: %s %r" % (key, ip, status, body))
                        return 1
        lines = load_log.read_text().splitlines() if load_log.exists() else []
        loads = collections.Counter(line.split()[2] for line in lines)
        by_node = collections.Counter(line.split()[1] for line in lines)
        print("%d items, each asked 6 times through 2 hosts; loads per node:" % len(ids))
        for url, n in sorted(by_node.items()):
            print("  %-24s %d" % (url, n))
        once = set(loads) == set(ids) and max(loads.values()) == 1
        print(
            "each item loaded once across the %d workers of %d hosts: %s"
            % (len(HOSTS) * WORKERS, len(HOSTS), "yes" if once else "NO: %s" % loads.most_common(3))
        )
        return 0 if once else 1
    finally:
        for m in masters:
            m.send_signal(signal.SIGTERM)
        for m in masters:
            try:
                m.wait(30)
            except subprocess.TimeoutExpired:
                m.kill()
                m.wait()
        dns.kill()
        dns.wait()
        if not args.load_log:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
