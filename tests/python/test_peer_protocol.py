"""docs/peer-protocol.md, checked on the wire: a client written from that
page alone (plain http.client, a hand-made protobuf codec, hmac/hashlib)
talks to a real node (a ``groupcache.Pool`` on loopback) and every rule of
the page that can be observed from outside is asserted here. When the
server changes what it answers, this fails until the page says so too."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import socket
import time
import urllib.parse
import zlib
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

import groupcache

DOC = Path(__file__).resolve().parents[2] / "docs" / "peer-protocol.md"
UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def escape(raw: bytes) -> str:
    """"every byte outside A-Z a-z 0-9 - . _ ~ becomes %XX with upper-case hex" """
    return "".join(chr(b) if b in UNRESERVED else "%%%02X" % b for b in raw)


# ---- protobuf, by hand ------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 as two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def fields(data: bytes) -> Dict[int, object]:
    """Field number -> value (bytes for length-delimited, int for varint,
    raw 8 bytes for fixed64)."""
    out: Dict[int, object] = {}
    i = 0
    while i < len(data):
        tag, i = _read_varint(data, i)
        num, wire = tag >> 3, tag & 7
        if wire == 0:
            out[num], i = _read_varint(data, i)
        elif wire == 2:
            n, i = _read_varint(data, i)
            out[num] = data[i : i + n]
            i += n
        elif wire == 1:
            out[num] = data[i : i + 8]
            i += 8
        else:
            raise ValueError("wire type %d" % wire)
    return out


def _read_varint(data: bytes, i: int) -> Tuple[int, int]:
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def set_request(group: bytes, key: bytes, value: bytes, expire: int = 0) -> bytes:
    """SetRequest { string group = 1; string key = 2; bytes value = 3; int64 expire = 4; }"""
    out = b""
    for num, v in ((1, group), (2, key), (3, value)):
        if v:
            out += bytes([num << 3 | 2]) + varint(len(v)) + v
    if expire:
        out += bytes([4 << 3]) + varint(expire)
    return out


def get_many_request(group: bytes, keys: List[bytes], max_response_bytes: int = 0) -> bytes:
    """GetManyRequest { bytes group = 1; repeated bytes keys = 2; uint64 max_response_bytes = 3; }"""
    out = bytes([1 << 3 | 2]) + varint(len(group)) + group if group else b""
    for k in keys:  # repeated: one field per key, the empty key too
        out += bytes([2 << 3 | 2]) + varint(len(k)) + k
    if max_response_bytes:
        out += bytes([3 << 3]) + varint(max_response_bytes)
    return out


def results(body: bytes) -> List[Dict[int, object]]:
    """GetManyResponse { repeated KeyResult results = 1; }, each KeyResult's fields."""
    out = []
    i = 0
    while i < len(body):
        tag, i = _read_varint(body, i)
        assert tag == 1 << 3 | 2, tag
        n, i = _read_varint(body, i)
        out.append(fields(body[i : i + n]))
        i += n
    return out


def test_the_pages_protobuf_examples() -> None:
    assert bytes.fromhex("0a 02 68 69 18 01") == b"\x0a\x02hi" + bytes([3 << 3]) + varint(1)
    assert set_request(b"g", b"\xff\x00k", b"v", 5) == bytes.fromhex("0a 01 67 12 03 ff 00 6b 1a 01 76 20 05")
    text = DOC.read_text()
    assert "`0a 02 68 69 18 01`" in text and "`0a 01 67 12 03 ff 00 6b 1a 01 76 20 05`" in text
    # The batch example.
    req = "0a 01 67  12 01 61  12 07 6d 69 73 73 69 6e 67"
    assert get_many_request(b"g", [b"a", b"missing"]) == bytes.fromhex(req) and req in text
    assert "Content-Length: %d" % len(bytes.fromhex(req)) in text


# ---- ownership -------------------------------------------------------------------


def owner(urls: List[str], key: bytes, replicas: int = 50) -> str:
    """The page's three steps."""
    points: Dict[int, str] = {}
    for url in urls:  # a later node wins a collision
        for i in range(replicas):
            points[zlib.crc32(("%d%s" % (i, url)).encode())] = url
    ring = sorted(points)
    h = zlib.crc32(key)
    for p in ring:
        if p >= h:
            return points[p]
    return points[ring[0]]


def test_owners_are_the_consistent_hash_of_the_page() -> None:
    with groupcache.Pool("127.0.0.1:0") as pool:
        urls = [pool.url, "http://127.0.0.1:1", "http://127.0.0.1:2/", "http://Node-B.example:8000"]
        pool.set_peers(urls)
        keys = ["k%d" % i for i in range(400)] + ["", "a b", "é", "x/y"]
        owners = {k: pool.owner(k) for k in keys}
        assert owners == {k: owner(urls, k.encode()) for k in keys}
        assert len(set(owners.values())) == 4
    with groupcache.Pool("127.0.0.1:0", replicas=3) as pool:
        urls = [pool.url, "http://127.0.0.1:1"]
        pool.set_peers(urls)
        assert all(pool.owner(k) == owner(urls, k.encode(), 3) for k in keys)


# ---- a node on loopback ------------------------------------------------------------


def loader(key: str) -> groupcache.LoaderResult:
    raw = key.encode("utf-8", "surrogateescape")
    if key.startswith("missing:") or key == "missing":  # the page's batch example
        return None
    if key.startswith("fail:"):
        raise RuntimeError("the database is down")
    if key.startswith("ttl:"):
        return b"v:" + raw, 60.0
    return b"v:" + raw


@pytest.fixture(scope="module")
def node() -> Iterator[Tuple[groupcache.Pool, groupcache.Cache]]:
    pool = groupcache.Pool("127.0.0.1:0")
    cache = groupcache.Cache("g", max_bytes=1 << 20, loader=loader, pool=pool)
    yield pool, cache
    cache.close()
    pool.close()


def request(
    url: str, method: str, target: str, body: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None
) -> Tuple[int, Dict[str, str], bytes]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        hs = dict(headers or {})
        if body is not None:
            hs.setdefault("Content-Type", "application/x-protobuf")
        conn.request(method, target, body=body, headers=hs)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get(pool: groupcache.Pool, group: bytes, key: bytes) -> Tuple[int, Dict[str, str], bytes]:
    return request(pool.url, "GET", "/_groupcache/%s/%s" % (escape(group), escape(key)))


def test_get_answers_a_get_response(node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, cache = node
    for key in [b"42", b"a b+c/d%e", "é".encode(), b"\xff\x00k", b"", b"sl/ash/es"]:
        status, headers, body = get(pool, b"g", key)
        assert status == 200, (key, body)
        assert headers["content-type"] == "application/x-protobuf"
        assert headers["x-groupcache-peer"] == "set, remove, batch"
        f = fields(body)
        assert f.get(1, b"") == b"v:" + key and 2 not in f and 3 not in f
    before = cache.stats().server_requests
    get(pool, b"g", b"42")
    assert cache.stats().server_requests == before + 1


def test_the_server_decodes_once_and_reads_plus_as_a_space(node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, _ = node
    for target, key in [
        ("/_groupcache/g/a+b", b"a b"),  # url.QueryEscape's space
        ("/_groupcache/g/%2541", b"%41"),  # once only
        ("/_groupcache/g/%c3%A9", "é".encode()),  # either case of hex
        ("/_groupcache/g/x/y%2Fz", b"x/y/z"),  # the key may hold '/', escaped or not
    ]:
        status, _, body = request(pool.url, "GET", target)
        assert (status, fields(body).get(1)) == (200, b"v:" + key), target


def test_a_ttl_travels_as_expire_in_unix_nanoseconds(node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, _ = node
    status, _, body = get(pool, b"g", b"ttl:1")
    assert status == 200
    expire = fields(body)[3]
    assert isinstance(expire, int)
    assert abs(expire - (time.time() + 60) * 1e9) < 10e9


def test_statuses_of_gets(node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, _ = node
    assert get(pool, b"g", b"missing:1")[::2] == (404, b"not found\n")
    status, headers, body = get(pool, b"g", b"fail:1")
    assert (status, body) == (500, b"loader failed\n")  # the getter's message stays here
    assert headers["content-type"] == "text/plain; charset=utf-8"
    status, _, body = get(pool, b"nope", b"k")
    assert status == 404 and body.startswith(b"no such group")
    status, _, body = request(pool.url, "GET", "/_groupcache/%FF/k")  # not UTF-8
    assert status == 404 and body.startswith(b"no such group")
    assert request(pool.url, "GET", "/elsewhere/g/k")[0] == 404
    assert request(pool.url, "GET", "/_groupcache/g/%zz")[0] == 400
    assert get(pool, b"g", b"k" * 8192)[0] == 200
    assert get(pool, b"g", b"k" * 8193)[0] == 400


def test_the_probe_is_a_400_with_the_header(node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, _ = node
    status, headers, _ = request(pool.url, "GET", "/_groupcache/")
    assert status == 400 and headers["x-groupcache-peer"] == "set, remove, batch"


def test_other_methods_are_405_with_allow(node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, _ = node
    status, headers, _ = request(pool.url, "POST", "/_groupcache/g/k", body=b"")
    assert status == 405 and headers["allow"] == "GET, PUT, DELETE"


def test_put_stores_the_bodys_key_and_delete_drops_it(node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, cache = node
    status, headers, body = request(
        pool.url, "PUT", "/_groupcache/g/put-path", body=set_request(b"g", b"put-body", b"stored")
    )
    assert (status, body) == (200, b"") and headers["x-groupcache-peer"] == "set, remove, batch"
    assert "put-body" in cache and "put-path" not in cache
    assert cache.get("put-body") == b"stored"
    # An empty group is accepted; another group is not; nor is garbage.
    assert request(pool.url, "PUT", "/_groupcache/g/k2", body=set_request(b"", b"k2", b"x"))[0] == 200
    assert cache.get("k2") == b"x"
    assert request(pool.url, "PUT", "/_groupcache/g/k3", body=set_request(b"other", b"k3", b"x"))[0] == 400
    assert request(pool.url, "PUT", "/_groupcache/g/k3", body=b"\xff\xff\xff")[0] == 400
    # expire: Unix nanoseconds, absolute.
    past = int((time.time() - 10) * 1e9)
    assert request(pool.url, "PUT", "/_groupcache/g/old", body=set_request(b"g", b"old", b"x", past))[0] == 200
    assert "old" not in cache
    status, _, body = request(pool.url, "DELETE", "/_groupcache/g/put-body")
    assert (status, body) == (200, b"")
    assert "put-body" not in cache
    assert request(pool.url, "DELETE", "/_groupcache/g/never-there")[0] == 200
    # Keys over 8192 bytes, however they arrive.
    long = b"k" * 8193
    assert request(pool.url, "PUT", "/_groupcache/g/x", body=set_request(b"g", long, b"x"))[0] == 400
    assert request(pool.url, "DELETE", "/_groupcache/g/" + escape(long))[0] == 400


def _raw(url: str, data: bytes) -> socket.socket:
    u = urllib.parse.urlsplit(url)
    s = socket.create_connection((u.hostname, u.port), timeout=10)
    s.sendall(data)
    return s


def _answer(s: socket.socket) -> bytes:
    """Everything the server sends until it closes or stays quiet for 5 s."""
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
            if b"\r\n\r\n" in out and out.split(b"\r\n\r\n", 1)[1].endswith(b"\n"):
                return out
    except socket.timeout:
        return out


def test_the_limits_answer_as_the_page_says() -> None:
    with groupcache.Pool(
        "127.0.0.1:0", header_timeout=0.3, body_timeout=0.3, max_header_bytes=8192,
        body_budget_bytes=2048, max_body_bytes=4096,
    ) as pool, groupcache.Cache("l", max_bytes=1 << 20, loader=loader, pool=pool):  # fmt: skip
        head = "PUT /_groupcache/l/k HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
        # 413 from the Content-Length, before the body is read.
        with _raw(pool.url, (head % 5000).encode()) as s:
            assert _answer(s).startswith(b"HTTP/1.1 413")
        # 408: the body does not arrive within body_timeout.
        with _raw(pool.url, (head % 100).encode() + b"0123456789") as s:
            assert _answer(s).startswith(b"HTTP/1.1 408")
        # 503: bodies in flight share body_budget_bytes (a Content-Length is reserved whole).
        with _raw(pool.url, (head % 1500).encode() + b"x") as stalled:
            time.sleep(0.05)
            with _raw(pool.url, (head % 1500).encode()) as s:
                answer = _answer(s)
                assert answer.startswith(b"HTTP/1.1 503")
                assert answer.endswith(b"too many request bodies in flight; try again\n")
            stalled.close()
        # 431: a head over max_header_bytes.
        big = "GET /_groupcache/l/k HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n" % ("p" * 9000)
        with _raw(pool.url, big.encode()) as s:
            assert _answer(s).startswith(b"HTTP/1.1 431")
        # A head that does not arrive within header_timeout: closed, no answer.
        with _raw(pool.url, b"GET /_groupcache/l/k HTTP/1.1\r\nHo") as s:
            t0 = time.monotonic()
            assert _answer(s) == b"" and time.monotonic() - t0 < 3


def test_metrics_are_prometheus_text(node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, _ = node
    status, headers, body = request(pool.url, "GET", "/metrics")
    assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b'groupcache_gets_total{group="g"} ' in body


# ---- signature v2 ------------------------------------------------------------------

EMPTY = hashlib.sha256(b"").hexdigest()


def sign(secret: bytes, method: str, node: str, target: str, body: bytes, ms: int, nonce: int) -> str:
    digest = hashlib.sha256(body).hexdigest()
    nonce_hex = "%016x" % nonce
    text = "\n".join(["groupcache-auth-v2", method, node, target, str(ms), nonce_hex, digest])
    mac = hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()
    return "v2.%d.%s.%s.%s" % (ms, nonce_hex, digest, mac)


def test_the_pages_test_vector() -> None:
    header = sign(b"s3cret", "GET", "127.0.0.1:8001", "/_groupcache/users/42", b"", 1700000000000, 0x0123456789ABCDEF)
    assert header.split(".")[3] == EMPTY
    assert "x-groupcache-auth: " + header in DOC.read_text()


@pytest.fixture(scope="module")
def signed_node() -> Iterator[Tuple[groupcache.Pool, groupcache.Cache]]:
    pool = groupcache.Pool("127.0.0.1:0", secret="s3cret")
    cache = groupcache.Cache("s", max_bytes=1 << 20, loader=loader, pool=pool)
    yield pool, cache
    cache.close()
    pool.close()


def test_signed_requests(signed_node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, cache = signed_node
    node = urllib.parse.urlsplit(pool.url).netloc  # host:port, as the page says
    nonce = int.from_bytes(os.urandom(8), "big")
    now = int(time.time() * 1000)

    def send(method: str, path: str, payload: bytes = b"", header: Optional[str] = None, **signed: object) -> int:
        """Sends ``method path`` signed as the page says; ``signed`` overrides
        what the signature covers (node, target, body, ms, nonce, secret)."""
        f: Dict[str, object] = {
            "secret": b"s3cret", "node": node, "target": path, "body": payload, "ms": now, "nonce": nonce
        }
        f.update(signed)
        if header is None:
            header = sign(f["secret"], method, f["node"], f["target"], f["body"], f["ms"], f["nonce"])  # type: ignore[arg-type]
        hs = {"x-groupcache-auth": header} if header else {}
        return request(pool.url, method, path, body=payload if method == "PUT" else None, headers=hs)[0]

    t = "/_groupcache/s/k1"
    assert send("GET", t) == 200
    assert send("GET", t) == 200  # a GET may be replayed
    assert send("GET", t, header="") == 401  # unsigned
    assert send("GET", t, secret=b"other") == 401
    assert send("GET", t, node="127.0.0.1:1") == 401  # signed for another node
    assert send("GET", t, target="/_groupcache/s/k2") == 401  # for another target
    assert send("GET", t + "?x=1", target=t) == 401  # the query is signed too
    assert send("GET", t, ms=now - 6 * 60 * 1000) == 401  # five minutes, either way
    assert send("GET", t, ms=now + 6 * 60 * 1000) == 401
    good = sign(b"s3cret", "GET", node, t, b"", now, nonce)
    assert send("GET", t, header=good.replace("v2.", "v2.0", 1)) == 401  # not canonical decimal
    assert send("GET", t, header=good.upper()) == 401  # lower-case hex only
    # Unsigned, a request learns nothing, not even whether the group exists.
    assert send("GET", "/_groupcache/nope/k", header="") == send("GET", t, header="") == 401
    assert send("GET", "/_groupcache/nope/k") == 404
    assert request(pool.url, "GET", "/metrics")[0] == 200  # open
    # PUT: once, and only with the body signed.
    body = set_request(b"s", b"k9", b"signed")
    assert send("PUT", "/_groupcache/s/k9", body, nonce=nonce + 1) == 200
    assert cache.get("k9") == b"signed"
    assert send("PUT", "/_groupcache/s/k9", body, nonce=nonce + 1) == 401  # a replay
    other = set_request(b"s", b"k9", b"forged")
    assert send("PUT", "/_groupcache/s/k9", other, body=body, nonce=nonce + 2) == 401  # signed for another body
    assert cache.get("k9") == b"signed"
    assert send("DELETE", "/_groupcache/s/k9", nonce=nonce + 3) == 200
    assert "k9" not in cache
    assert send("DELETE", "/_groupcache/s/k9", nonce=nonce + 3) == 401


# ---- the batch route --------------------------------------------------------------


def batch(pool: groupcache.Pool, group: bytes, body: bytes, **kw: object) -> Tuple[int, Dict[str, str], bytes]:
    return request(pool.url, "POST", "/_groupcache/" + escape(group), body=body, **kw)  # type: ignore[arg-type]


def test_the_pages_batch_example(node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, _ = node
    text = DOC.read_text()
    status, headers, body = batch(pool, b"g", get_many_request(b"g", [b"a", b"missing"]))
    assert status == 200
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["x-groupcache-peer"] == "set, remove, batch"
    want = "0a 05 0a 03 76 3a 61  0a 0e 20 94 03 2a 09 6e 6f 74 20 66 6f 75 6e 64"
    assert body == bytes.fromhex(want) and want in text


def test_a_batch_answers_each_key_as_its_get_would(node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, cache = node
    keys = [b"b1", b"missing:b", b"fail:b", b"ttl:b", b"", "é/ +%".encode(), b"\xff\x00", b"k" * 8193, b"b1"]
    before = cache.stats().server_requests
    status, _, body = batch(pool, b"g", get_many_request(b"", keys))  # group only in the path
    assert status == 200
    rs = results(body)
    assert len(rs) == len(keys)
    for key, r in zip(keys, rs):
        single = get(pool, b"g", key)
        if single[0] == 200:
            assert 4 not in r and r.get(1, b"") == fields(single[2]).get(1, b""), key
        else:
            assert r[4] == single[0], key
            assert r[5] == single[2].rstrip(b"\n"), key
    assert rs[1][4] == 404 and rs[1][5] == b"not found"
    assert rs[2][4] == 500 and rs[2][5] == b"loader failed"  # the getter's message stays here
    assert rs[7][4] == 400  # over 8192 bytes
    expire = rs[3][3]
    assert isinstance(expire, int) and abs(expire - (time.time() + 60) * 1e9) < 10e9
    # Each key counts as a server request (the 8193-byte key is refused first).
    assert cache.stats().server_requests >= before + len(keys) - 1


def test_the_answer_budget_turns_values_away_with_413(node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, _ = node
    keys = [b"budget-%d" % i for i in range(4)]  # values "v:budget-N", 10 bytes each
    status, _, body = batch(pool, b"g", get_many_request(b"g", keys, max_response_bytes=25))
    assert status == 200
    rs = results(body)
    assert [r.get(4, 0) for r in rs] == [0, 0, 413, 413]
    assert rs[0][1] == b"v:budget-0" and rs[2][5] == b"over the batch answer's size; fetch it alone"
    assert len(body) <= 25 + 160 * len(keys) + 16


def test_bad_batches_are_refused_clearly(node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, _ = node
    status, _, body = batch(pool, b"g", b"\x12\x7f\x7f")
    assert status == 400 and body.startswith(b"decoding GetManyRequest")
    assert batch(pool, b"g", get_many_request(b"other", [b"k"]))[::2] == (
        400,
        b"GetManyRequest group differs from the path's\n",
    )
    status, _, body = batch(pool, b"nope", get_many_request(b"", [b"k"]))
    assert status == 404 and body.startswith(b"no such group")
    status, _, body = batch(pool, b"g", get_many_request(b"g", [b"k"] * 1025))
    assert (status, body) == (400, b"a batch of 1025 keys: this node takes at most 1024 (max_batch_keys)\n")
    assert batch(pool, b"g", get_many_request(b"g", [b"k"] * 1024))[0] == 200
    assert batch(pool, b"g", b"")[::2] == (200, b"")  # no keys, no results
    # Another method on the group's path: 400, as before the route existed.
    assert request(pool.url, "GET", "/_groupcache/g")[0] == 400


def test_signed_batches(signed_node: Tuple[groupcache.Pool, groupcache.Cache]) -> None:
    pool, _ = signed_node
    node = urllib.parse.urlsplit(pool.url).netloc
    now = int(time.time() * 1000)
    nonce = int.from_bytes(os.urandom(8), "big")
    target = "/_groupcache/s"
    body = get_many_request(b"s", [b"a", b"missing:1"])

    def send(payload: bytes, header: str, path: str = target) -> int:
        return request(pool.url, "POST", path, body=payload, headers={"x-groupcache-auth": header} if header else {})[0]

    good = sign(b"s3cret", "POST", node, target, body, now, nonce)
    assert send(body, "") == 401  # unsigned
    assert send(body, sign(b"other", "POST", node, target, body, now, nonce)) == 401
    assert send(get_many_request(b"s", [b"b"]), good) == 401  # other keys under the signature
    assert send(body, good, "/_groupcache/g") == 401  # re-aimed at another group
    assert send(body, sign(b"s3cret", "POST", "127.0.0.1:1", target, body, now, nonce)) == 401  # another node
    status, _, answer = request(pool.url, "POST", target, body=body, headers={"x-groupcache-auth": good})
    assert status == 200 and results(answer)[0][1] == b"v:a" and results(answer)[1][4] == 404
    assert send(body, good) == 401  # a batch is accepted once

