"""Membership from DNS (``Pool(peers_from=...)``) against a real DNS server
on loopback (dnsmasq), with pools bound to the 127.0.3.x addresses it
serves."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from typing import Callable, Iterator, List, Sequence

import pytest
from dnsmasq_server import DOMAIN, Dnsmasq, hosts

from groupcache import Cache, Pool

REFRESH = 0.2


@pytest.fixture
def make_dns() -> Iterator[Callable[[str], Dnsmasq]]:
    """Starts dnsmasq with a hosts file (given at start: a SIGHUP right
    after would race with the first lookup)."""
    made: List[Dnsmasq] = []

    def make(text: str) -> Dnsmasq:
        made.append(Dnsmasq(text))
        return made[-1]

    yield make
    for d in made:
        d.close()


def common_port(ips: Sequence[str], span: int = 1) -> int:
    """A port free on every address of ``ips``, for ``span`` ports from it."""
    while True:
        with socket.socket() as s:
            s.bind((ips[0], 0))
            port = int(s.getsockname()[1])
        if port + span > 65535:
            continue
        ok = True
        for ip in ips:
            for p in range(port, port + span):
                with socket.socket() as s:
                    try:
                        s.bind((ip, p))
                    except OSError:
                        ok = False
        if ok:
            return port


def eventually(cond: Callable[[], bool], within: float = REFRESH * 15) -> bool:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def urls(ips: Sequence[str], port: int, span: int = 1) -> List[str]:
    return sorted("http://%s:%d" % (ip, p) for ip in ips for p in range(port, port + span))


def test_three_pools_find_each_other_and_load_each_key_once(make_dns: Callable[[str], Dnsmasq], name: str) -> None:
    ips = ["127.0.3.1", "127.0.3.2", "127.0.3.3"]
    dns = make_dns(hosts("py3", ips))
    port = common_port(ips)
    spec = "dns+http://py3.%s:%d" % (DOMAIN, port)
    loads: List[str] = []
    pools = [
        Pool("%s:%d" % (ip, port), peers_from=spec, peers_refresh=REFRESH, nameserver=dns.nameserver) for ip in ips
    ]
    caches = [
        Cache(name, loader=lambda k, ip=ip: (loads.append(ip + " " + k), ("v:" + k).encode())[1], pool=p)
        for ip, p in zip(ips, pools)
    ]
    try:
        for p in pools:
            assert p.peers == urls(ips, port)
        for c in caches:
            for i in range(40):
                assert c.get("k%d" % i) == b"v:k%d" % i
        for i in range(40):
            by = [entry.split()[0] for entry in loads if entry.split()[1] == "k%d" % i]
            assert len(by) == 1, (i, by)
            assert "http://%s:%d" % (by[0], port) == pools[0].owner("k%d" % i)
        s = caches[0].stats()
        assert (s.peers, s.membership_changes) == (3, 1)
        with urllib.request.urlopen(pools[0].url + "/metrics", timeout=5) as r:
            text = r.read().decode()
        assert "\ngroupcache_peers 3\n" in text and "\ngroupcache_membership_changes_total 1\n" in text
    finally:
        for c in caches:
            c.close()
        for p in pools:
            p.close()


def test_failures_and_absence_are_logged_once_per_change(
    make_dns: Callable[[str], Dnsmasq], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="groupcache")
    ips = ["127.0.3.11", "127.0.3.12"]
    dns = make_dns(hosts("logs", ips[1:]))  # this node is not listed yet
    port = common_port(ips)
    spec = "dns+http://logs.%s:%d" % (DOMAIN, port)

    def messages(text: str) -> List[str]:
        return [r.getMessage() for r in caplog.records if r.name == "groupcache" and text in r.getMessage()]

    with Pool("%s:%d" % (ips[0], port), peers_from=spec, peers_refresh=REFRESH, nameserver=dns.nameserver) as p:
        assert p.peers == urls(ips[1:], port)
        time.sleep(REFRESH * 4)
        absent = messages("is not among the 1 peers")
        assert len(absent) == 1 and "serves and forwards" in absent[0], absent
        # Listed: one line; the membership change: one line.
        dns.set_hosts(hosts("logs", ips))
        assert eventually(lambda: p.peers == urls(ips, port))
        assert eventually(lambda: len(messages("now among the peers")) == 1)
        # The server stops: one warning, however many refreshes fail.
        dns.stop()
        t0 = time.monotonic()
        # (A query to a dead server fails after its timeouts: half the
        # refresh, at least 100 ms, twice.)
        assert eventually(lambda: len(messages("keeping the 2 peers")) == 1, within=20)
        print("the lookup failed after %.1f s" % (time.monotonic() - t0))
        time.sleep(REFRESH * 6)
        assert len(messages("keeping the 2 peers")) == 1
        assert p.peers == urls(ips, port)
        # Back, with no record of the name: still failing, nothing new logged.
        dns.set_hosts("")
        dns.start()
        time.sleep(2)  # a round in flight to the dead server ends first (~0.2-0.4 s)
        assert len(messages("keeping the")) == 1
        assert p.peers == urls(ips, port)
        dns.set_hosts(hosts("logs", ips))
        assert eventually(lambda: len(messages("answering again")) == 1)
        assert p.peers == urls(ips, port)
        warnings = [r for r in caplog.records if r.name == "groupcache" and r.levelno >= logging.WARNING]
        assert len(warnings) == 2, [r.getMessage() for r in warnings]


def test_set_peers_and_peers_from_do_not_mix(make_dns: Callable[[str], Dnsmasq]) -> None:
    dns = make_dns(hosts("mix", ["127.0.3.21"]))
    spec = "dns+http://mix.%s:8001" % DOMAIN
    with Pool("127.0.3.21:0", peers_from=spec, nameserver=dns.nameserver) as p:
        with pytest.raises(ValueError, match="peers from DNS.*set_peers cannot be used"):
            p.set_peers([p.url])
        assert p.peers == ["http://127.0.3.21:8001"]


@pytest.mark.parametrize(
    "spec, why",
    [
        ("mix.dns.test:8001", "expected dns\\+http://"),
        ("dns+http://mix.dns.test", "a port is needed"),
        ("dns+http://mix.dns.test:8004-8001", "is empty"),
        ("dns+srv+http://mix.dns.test", "_service._proto"),
        ("dns+http://mix.dns.test:8001/x", "'/' is not allowed"),
    ],
)
def test_bad_specs_fail_at_creation_saying_why(spec: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Pool("127.0.3.22:0", peers_from=spec)


def test_bad_option_values() -> None:
    with pytest.raises(ValueError, match="peers_refresh must be at least"):
        Pool(peers_from="dns+http://x.dns.test:1", peers_refresh=0.05)
    with pytest.raises(ValueError, match="expected IP:PORT"):
        Pool(peers_from="dns+http://x.dns.test:1", nameserver="dns.example:53")
    with pytest.raises(TypeError):
        Pool(peers_from=5)  # type: ignore[arg-type]


def test_from_the_environment(make_dns: Callable[[str], Dnsmasq], prelude: str) -> None:
    """GROUPCACHE_PEERS_FROM, _PEERS_REFRESH_MS and _NAMESERVER, in a
    process of its own (the environment is read when a pool is made)."""
    dns = make_dns(hosts("env", ["127.0.3.31", "127.0.3.32"]))
    code = prelude + textwrap.dedent(
        """
        import groupcache, time
        p = groupcache.Pool("127.0.3.31:0")
        print(" ".join(p.peers))
        try:
            p.set_peers([p.url])
        except ValueError as e:
            print("refused:", e)
        """
    )
    env = dict(
        os.environ,
        GROUPCACHE_PEERS_FROM="dns+http://env.%s:9001-9002" % DOMAIN,
        GROUPCACHE_PEERS_REFRESH_MS="250",
        GROUPCACHE_NAMESERVER=dns.nameserver,
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == urls(["127.0.3.31", "127.0.3.32"], 9001, 2)
    assert "GROUPCACHE_PEERS_FROM" in lines[1]
    bad = dict(env, GROUPCACHE_PEERS_REFRESH_MS="10")
    out = subprocess.run([sys.executable, "-c", code], env=bad, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "GROUPCACHE_PEERS_REFRESH_MS" in out.stderr, out.stderr
    bad = dict(env, GROUPCACHE_PEERS_FROM="dns+http://env.dns.test")
    out = subprocess.run([sys.executable, "-c", code], env=bad, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "GROUPCACHE_PEERS_FROM" in out.stderr and "a port is needed" in out.stderr


def test_a_forked_child_keeps_looking_dns_up(make_dns: Callable[[str], Dnsmasq], name: str) -> None:
    """A pool made before fork() is a client-only node in the child: the
    child runs its own refresh on its own runtime, so it routes keys by the
    cluster as DNS says now, not as it was at the fork."""
    ips = ["127.0.3.41", "127.0.3.42", "127.0.3.43"]
    dns = make_dns(hosts("fork", ips[:2]))
    port = common_port(ips)
    spec = "dns+http://fork.%s:%d" % (DOMAIN, port)

    def pool(ip: str) -> Pool:
        return Pool("%s:%d" % (ip, port), peers_from=spec, peers_refresh=REFRESH, nameserver=dns.nameserver)

    pools = [pool(ips[0]), pool(ips[1])]
    caches = [
        Cache(name, loader=lambda k, ip=ip: ("%s %d" % (ip, os.getpid())).encode(), pool=p)
        for ip, p in zip(ips, pools)
    ]
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        status = 1
        try:
            os.close(r)
            report: List[str] = []
            p, c = pools[0], caches[0]
            report.append(" ".join(p.peers))
            # A key the other node owns comes from it; one this node owns
            # comes from the parent (the child serves nothing).
            for i in range(20):
                report.append("%s=%s" % (p.owner("k%d" % i), c.get("k%d" % i).decode()))
            # The parent adds a third node; the child sees it.
            os.write(w, ("\n".join(report) + "\n--\n").encode())
            deadline = time.monotonic() + 10
            want = " ".join(urls(ips, port))
            while " ".join(p.peers) != want and time.monotonic() < deadline:
                time.sleep(0.02)
            os.write(w, (" ".join(p.peers) + "\n").encode())
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    got = b""
    try:
        while b"\n--\n" not in got:
            chunk = os.read(r, 65536)
            assert chunk, got
            got += chunk
        first, rest = got.split(b"\n--\n", 1)
        lines = first.decode().splitlines()
        assert lines[0].split() == urls(ips[:2], port)
        for line in lines[1:]:
            owner, value = line.split("=")
            ip, pid = value.split()
            # Loaded by the owner's loader, in this (the parent) process.
            assert "http://%s:%d" % (ip, port) == owner and int(pid) == os.getpid(), line
        third = pool(ips[2])
        dns.set_hosts(hosts("fork", ips))
        while not rest.endswith(b"\n"):
            chunk = os.read(r, 65536)
            assert chunk, rest
            rest += chunk
        assert rest.decode().split() == urls(ips, port)
        third.close()
    finally:
        os.close(r)
        _, status = os.waitpid(child, 0)
        for c in caches:
            c.close()
        for p in pools:
            p.close()
    assert status == 0
