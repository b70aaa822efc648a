"""Pool: nodes of a cluster, several in one process."""

from __future__ import annotations

import threading
from typing import Dict, List

import pytest

import groupcache
from groupcache import Cache, Pool


def test_pool_basics(pool: Pool) -> None:
    assert pool.url.startswith("http://127.0.0.1:")
    assert repr(pool) == "<groupcache.Pool %s>" % pool.url
    pool.set_peers([pool.url])
    pool.set_peers([])  # a client only
    with pytest.raises(groupcache.InvalidArgumentError):
        pool.set_peers(["not a url"])
    with pytest.raises(TypeError):
        pool.set_peers([b"http://x"])  # type: ignore[list-item]


def test_self_url_and_bad_addresses() -> None:
    with Pool("127.0.0.1:0", self_url="http://node-a.example:8000") as p:
        assert p.url == "http://node-a.example:8000"
    with pytest.raises(groupcache.InvalidArgumentError):
        Pool("not an address")
    with Pool("127.0.0.1:0") as p:
        port = p.url.rsplit(":", 1)[1]
        with pytest.raises(groupcache.GroupcacheOSError) as e:
            Pool("127.0.0.1:" + port)  # taken
        assert isinstance(e.value, OSError)


def test_pool_close(name: str) -> None:
    p = Pool()
    c = Cache(name, loader=lambda k: b"v", pool=p)
    assert c.pool is p
    p.close()
    p.close()
    assert p.closed and repr(p) == "<groupcache.Pool closed>"
    for call in (lambda: p.url, lambda: p.set_peers([])):
        with pytest.raises(groupcache.ClosedError):
            call()
    with pytest.raises(groupcache.ClosedError):
        Cache(name + "x", pool=p)
    assert c.get("k") == b"v"  # its caches go on, process-local
    c.close()


def test_names_are_unique_within_a_pool(pool: Pool, name: str) -> None:
    a = Cache(name, pool=pool)
    with pytest.raises(groupcache.AlreadyExistsError):
        Cache(name, pool=pool)
    with Cache(name):  # process-local: no conflict
        pass
    a.close()
    Cache(name, pool=pool).close()  # freed: the name is free again


def test_two_nodes_share_keys(name: str) -> None:
    loads: Dict[str, List[str]] = {"a": [], "b": []}
    lock = threading.Lock()

    def loader(node: str):
        def load(key: str) -> bytes:
            with lock:
                loads[node].append(key)
            return ("value of " + key).encode()

        return load

    with Pool() as pa, Pool() as pb:
        peers = [pa.url, pb.url]
        pa.set_peers(peers)
        pb.set_peers(peers)
        with Cache(name, loader=loader("a"), pool=pa) as ca, Cache(name, loader=loader("b"), pool=pb) as cb:
            keys = ["key-%d" % i for i in range(40)]
            for k in keys:
                assert ca.get(k) == ("value of " + k).encode()
            # each key was loaded once, by its owner; B owns some of them
            assert sorted(loads["a"] + loads["b"]) == sorted(keys)
            assert loads["b"], "node B owns no key of 40?"
            assert ca.stats().peer_loads == len(loads["b"])
            assert cb.stats().server_requests == len(loads["b"])
            # B answers its own keys from memory, A's through A
            for k in keys:
                assert cb.get(k) == ("value of " + k).encode()
            assert sorted(loads["a"] + loads["b"]) == sorted(keys)
            # remove reaches the owner
            owned_by_b = loads["b"][0]
            ca.remove(owned_by_b)
            assert cb.get(owned_by_b) == ("value of " + owned_by_b).encode()
            assert loads["b"].count(owned_by_b) == 2
            # a peer's loader failing reaches the caller
            ca.set("k-set", b"via a")
            assert cb.get("k-set") == b"via a"


def test_not_found_at_the_owner_is_a_key_error(name: str) -> None:
    with Pool() as pa, Pool() as pb:
        pa.set_peers([pb.url])  # A is a client of B only
        pb.set_peers([pb.url])
        with Cache(name, pool=pa, loader=lambda k: b"a") as ca, Cache(name, pool=pb, loader=lambda k: None) as cb:
            with pytest.raises(KeyError):
                ca.get("x")
            with pytest.raises(KeyError):
                cb.get("x")


def test_interpreter_exit_with_open_pools(prelude: str) -> None:
    import subprocess
    import sys
    import textwrap

    code = prelude + textwrap.dedent(
        """
        import sys, threading
        import groupcache
        pa, pb = groupcache.Pool(), groupcache.Pool()
        for p in (pa, pb):
            p.set_peers([pa.url, pb.url])
        ca = groupcache.Cache("c", loader=lambda k: k.encode(), pool=pa)
        cb = groupcache.Cache("c", loader=lambda k: k.encode(), pool=pb)
        for i in range(50):
            assert ca.get("k%d" % i) == b"k%d" % i
        def hammer():  # still fetching from the peer while the interpreter exits
            i = 0
            while True:
                try:
                    cb.get("x%d" % i)
                except groupcache.GroupcacheError:
                    pass
                i += 1
        threading.Thread(target=hammer, daemon=True).start()
        print("exiting")
        """
    )
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "exiting\n"


def test_a_peer_request_runs_the_python_loader_on_a_server_thread(name: str) -> None:
    """A key that is not UTF-8, arriving from a peer (here: an HTTP request
    as golang/groupcache would send it), reaches the Python loader decoded
    with surrogateescape, on one of the library's own threads."""
    import urllib.request

    seen: List[str] = []
    threads: List[int] = []

    def load(key: str) -> bytes:
        seen.append(key)
        threads.append(threading.get_ident())
        return b"loaded for a peer"

    with Pool() as p:
        p.set_peers([p.url])
        with Cache(name, loader=load, pool=p) as c:
            url = "%s/_groupcache/%s/%s" % (p.url, name, "%FF%FEkey")
            with urllib.request.urlopen(url, timeout=10) as r:
                body = r.read()
            assert b"loaded for a peer" in body  # a protobuf GetResponse
            assert seen == ["\udcff\udcfekey"]
            assert threads[0] != threading.get_ident()
            assert c.stats().server_requests == 1
            # and the value is now cached under those bytes
            assert c.get("\udcff\udcfekey") == b"loaded for a peer"
            assert len(seen) == 1


def test_owner(name: str) -> None:
    with Pool() as pa, Pool() as pb:
        assert pa.owner("anything") == pa.url  # no peers: itself
        pa.set_peers([pb.url])  # a client of B only
        assert pa.owner("k") == pb.url
        for p in (pa, pb):
            p.set_peers([pa.url, pb.url])
        keys = ["key-%d" % i for i in range(50)]
        owners = {k: pa.owner(k) for k in keys}
        assert set(owners.values()) == {pa.url, pb.url}
        assert all(pb.owner(k) == owners[k] for k in keys)  # the nodes agree
        assert pa.owner("\udcff") in (pa.url, pb.url)  # a non-UTF-8 key
        # ... and the owner is the node whose loader runs
        loaded_by: Dict[str, str] = {}
        ca = Cache(name, loader=lambda k: (loaded_by.setdefault(k, pa.url), b"")[1], pool=pa)
        cb = Cache(name, loader=lambda k: (loaded_by.setdefault(k, pb.url), b"")[1], pool=pb)
        for k in keys:
            ca.get(k)
        assert loaded_by == owners
        ca.close()
        cb.close()
        with pytest.raises(TypeError):
            pa.owner(b"k")  # type: ignore[arg-type]
    with pytest.raises(groupcache.ClosedError):
        pa.owner("k")


def test_owner_with_a_long_url() -> None:
    long_url = "http://" + "n" * 300 + ".example:8000"  # over owner()'s first buffer
    with Pool("127.0.0.1:0", self_url=long_url) as p:
        assert p.owner("k") == long_url
        p.set_peers([long_url, long_url + "/x"])
        assert {p.owner("k%d" % i) for i in range(40)} == {long_url, long_url + "/x"}


def test_pool_options_and_secret() -> None:
    """Options reach the library: a shared secret lets two nodes talk, a
    wrong one makes the asking node load locally, an unsigned HTTP request
    gets 401; a silent peer costs the timeout given here."""
    import socket
    import time
    import urllib.error
    import urllib.request

    a = groupcache.Pool(secret="s3cret", timeout=0.3, connect_timeout=0.2, replicas=50, base_path="/_groupcache/")
    b = groupcache.Pool(secret="s3cret")
    x = groupcache.Pool(secret="wrong")
    for p in (a, b):
        p.set_peers([a.url, b.url])
    x.set_peers([x.url, b.url])
    loads = []
    ca = groupcache.Cache("sec", max_bytes=1 << 20, loader=lambda k: loads.append(("a", k)) or k.encode(), pool=a)
    cb = groupcache.Cache("sec", max_bytes=1 << 20, loader=lambda k: loads.append(("b", k)) or k.encode(), pool=b)
    cx = groupcache.Cache("sec", max_bytes=1 << 20, loader=lambda k: loads.append(("x", k)) or k.encode(), pool=x)
    key = next(k for k in map(str, range(1000)) if a.owner(k) == b.url and x.owner(k) == b.url)
    assert ca.get(key) == key.encode()
    assert cx.get(key) == key.encode()
    assert ("a", key) not in loads and ("b", key) in loads and ("x", key) in loads
    assert cx.stats().peer_errors == 1 and ca.stats().peer_errors == 0
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(b.url + "/_groupcache/sec/" + key, timeout=5)
    assert e.value.code == 401 and key.encode() not in e.value.read()
    # A silent peer: the 0.3 s timeout, not the default 2 s.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    s_url = "http://127.0.0.1:%d" % silent.getsockname()[1]
    a.set_peers([a.url, s_url])
    # A key this node does not hold already (a fetched key may be kept as a
    # hot copy): its get must go to the silent owner.
    k2 = next(k for k in map(str, range(1000)) if a.owner(k) == s_url and k not in ca)
    t0 = time.monotonic()
    assert ca.get(k2) == k2.encode()
    assert 0.2 < time.monotonic() - t0 < 1.5
    silent.close()
    for c in (ca, cb, cx):
        c.close()
    for p in (a, b, x):
        p.close()
    with pytest.raises(ValueError):
        groupcache.Pool(timeout=0)
    with pytest.raises(ValueError):
        groupcache.Pool(secret="")


def test_a_nul_inside_a_string_argument_is_refused(name: str) -> None:
    """C takes NUL-terminated strings: "a\\0b" used to reach it as "a"."""
    cases = [
        (lambda: Pool("127.0.0.1:0\0junk"), "listen"),
        (lambda: Pool(self_url="http://a:1\0/b"), "self_url"),
        (lambda: Pool(base_path="/_groupcache/\0x/"), "base_path"),
        (lambda: Pool(secret="s3\0cret"), "secret"),
    ]
    for make, what in cases:
        with pytest.raises(ValueError, match=what + " contains a NUL"):
            make()
    with Pool() as p:
        with pytest.raises(ValueError, match="peer URL contains a NUL"):
            p.set_peers([p.url, "http://127.0.0.1:1\0x"])
        assert p.owner("k") == p.url  # the list was not changed
        with pytest.raises(ValueError, match="name contains a NUL"):
            Cache(name + "\0b", pool=p)
        Cache(name, pool=p).close()  # the cut-off name was never registered


def test_out_of_range_options_are_refused_naming_them() -> None:
    """ctypes passes ints as uint32_t: 2**32 + 50 became 50 and -1 became
    4294967295. Each is refused in Python, naming the option."""
    for value in (2**32 + 50, -1, 0, groupcache.pool.MAX_REPLICAS + 1, 2**64):
        with pytest.raises(ValueError, match="replicas") as e:
            Pool(replicas=value)
        assert str(value) in str(e.value)
    for bad_type in (True, 5.0, "5", None.__class__):
        with pytest.raises(TypeError, match="replicas"):
            Pool(replicas=bad_type)  # type: ignore[arg-type]
    for opt in ("timeout", "connect_timeout"):
        for value in (0, -1, 2**32, float("nan"), float("inf"), -float("inf"), 4294967.296):
            with pytest.raises(ValueError, match=opt):
                Pool(**{opt: value})  # type: ignore[arg-type]
        for bad_type in (True, "1", b"1"):
            with pytest.raises(TypeError, match=opt):
                Pool(**{opt: bad_type})  # type: ignore[arg-type]
    # The limits themselves are fine; a tiny positive timeout is 1 ms.
    with Pool(replicas=groupcache.pool.MAX_REPLICAS, timeout=4294967.295, connect_timeout=0.0001):
        pass
    with Pool(replicas=1):
        pass


def test_out_of_range_environment_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in [
        ("GROUPCACHE_REPLICAS", "4294967346"),
        ("GROUPCACHE_REPLICAS", "0"),
        ("GROUPCACHE_REPLICAS", "10001"),
        ("GROUPCACHE_TIMEOUT_MS", "0"),
        ("GROUPCACHE_CONNECT_TIMEOUT_MS", "-1"),
    ]:
        monkeypatch.setenv(var, value)
        with pytest.raises(ValueError, match=var):
            Pool()
        monkeypatch.delenv(var)
    Pool().close()


def test_garbage_auth_headers_get_401_not_a_dead_connection() -> None:
    """A header with multi-byte characters where hex belongs once panicked
    the server's connection thread: no answer, and close() then waited out
    its grace period for the thread that never ended."""
    import http.client
    import time

    p = Pool(secret="s3cret")
    host, port = p.url[len("http://") :].rsplit(":", 1)
    secs = int(time.time())
    for value in [
        "%d.a%sa" % (secs, "\u00e9" * 31),
        "v2.%d000.%s.%s.%s" % (secs, "a" + "\u00e9" * 7 + "a", "0" * 64, "0" * 64),
        "\u00ff" * 200,
        "v2....",
    ]:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.putrequest("GET", "/_groupcache/g/k")
        conn.putheader("x-groupcache-auth", value.encode("utf-8"))
        conn.endheaders()
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (401, b"unauthorized\n")
        conn.close()
    t0 = time.monotonic()
    p.close()
    assert time.monotonic() - t0 < 0.9


def test_server_limits() -> None:
    """The server's limits reach the library and are enforced: a client
    that sends nothing is closed at the head deadline; with two connections
    allowed, a third client is served in the place of the longest-waiting
    stalled one; a PUT over the body limit gets 413; bad values are refused."""
    import socket
    import time
    import urllib.request

    p = groupcache.Pool(
        max_connections=2,
        header_timeout=0.3,
        idle_timeout=5.0,
        body_timeout=1.0,
        max_body_bytes=4096,
        body_budget_bytes=1 << 20,
        max_header_bytes=16384,
        server_workers=2,
        max_batch_keys=2,
    )
    c = groupcache.Cache("lim", max_bytes=1 << 20, loader=lambda k: k.encode(), pool=p)
    host, port = p.url[len("http://") :].rsplit(":", 1)
    addr = (host, int(port))

    silent = socket.create_connection(addr)
    silent.settimeout(3)
    t0 = time.monotonic()
    assert silent.recv(100) == b""
    assert 0.2 < time.monotonic() - t0 < 1.5
    silent.close()

    stalled = []
    for _ in range(2):
        s = socket.create_connection(addr)
        s.sendall(b"GET /_groupcache/lim/k HTTP/1.1\r\nHost:")
        stalled.append(s)
        time.sleep(0.02)
    with urllib.request.urlopen(p.url + "/_groupcache/lim/third", timeout=5) as r:
        assert r.status == 200
    stalled[0].settimeout(1)
    assert stalled[0].recv(100) == b""  # made room
    for s in stalled:
        s.close()

    s = socket.create_connection(addr)
    s.settimeout(5)
    s.sendall(b"PUT /_groupcache/lim/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 413")
    s.close()

    # max_batch_keys=2: a batch request (GetManyRequest, keys in field 2)
    # of two keys is answered, one of three refused with a 400.
    for n, want in ((2, b"HTTP/1.1 200"), (3, b"HTTP/1.1 400")):
        body = b"".join(b"\x12\x01" + bytes([97 + i]) for i in range(n))
        s = socket.create_connection(addr)
        s.settimeout(5)
        s.sendall(
            b"POST /_groupcache/lim HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert s.recv(100).startswith(want), n
        s.close()
    c.close()
    p.close()

    for kwargs in (
        {"server_workers": 0},
        {"server_workers": -1},
        {"max_connections": 2**40},
        {"max_body_bytes": 10},
        {"body_budget_bytes": 0},
        {"max_header_bytes": 100},
        {"header_timeout": 0},
        {"max_batch_keys": 0},
        {"max_batch_keys": 2**32},
    ):
        with pytest.raises((ValueError, groupcache.InvalidArgumentError)):
            groupcache.Pool(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        groupcache.Pool(server_workers=2.5)  # type: ignore[arg-type]
