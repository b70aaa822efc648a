"""TLS between nodes from Python: ``Pool(tls_cert=, tls_key=, tls_ca=)``,
the GROUPCACHE_TLS_* variables, refusals seen by Python's own ssl client,
and a forked child that fetches over TLS. Certificates are made at test
time by tests/tls/make-certs.sh (the openssl CLI)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
from conftest import PRELUDE, ROOT

from groupcache import Cache, Pool


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(["bash", str(ROOT / "tests/tls/make-certs.sh"), str(d)], check=True)
    return d


def mtls(pki: Path, cert: str = "node") -> Dict[str, Path]:
    return {"tls_cert": pki / (cert + ".pem"), "tls_key": pki / (cert + ".key"), "tls_ca": pki / "ca.pem"}


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def tls_get(port: int, pki: Path, client: Optional[str]) -> Tuple[Optional[bytes], bytes]:
    """One GET over Python's ssl, trusting the test CA, presenting
    ``client`` (a name in the PKI) if given. Returns the server's
    certificate (DER) and the answer (b"" if refused)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki / "ca.pem"))
    if client:
        ctx.load_cert_chain(str(pki / (client + ".pem")), str(pki / (client + ".key")))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            der = s.getpeercert(binary_form=True)
            answer = b""
            try:
                s.sendall(b"GET /_groupcache/g/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            except (ssl.SSLError, OSError):
                pass
            return der, answer


def der_of(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())


def test_https_cluster_with_mutual_tls_and_a_secret(pki: Path, name: str) -> None:
    loads: Dict[str, List[str]] = {"a": [], "b": []}

    def loader(node: str):  # type: ignore[no-untyped-def]
        def load(key: str) -> bytes:
            loads[node].append(key)
            return ("v:" + key).encode()

        return load

    with Pool(secret="s", **mtls(pki)) as pa, Pool(secret="s", **mtls(pki, "node2")) as pb:
        assert pa.url.startswith("https://127.0.0.1:")
        peers = [pa.url, pb.url]
        pa.set_peers(peers)
        pb.set_peers(peers)
        with Cache(name, loader=loader("a"), pool=pa) as ca, Cache(name, loader=loader("b"), pool=pb) as cb:
            keys = ["key-%d" % i for i in range(40)]
            for k in keys:
                assert ca.get(k) == ("v:" + k).encode()
                assert cb.get(k) == ("v:" + k).encode()
            assert sorted(loads["a"] + loads["b"]) == sorted(keys)
            assert loads["b"]
            # Server side: B answered A's requests, on a port that speaks
            # only TLS (a plain request gets no HTTP answer).
            assert cb.stats().server_requests >= len(loads["b"])
            with socket.create_connection(("127.0.0.1", port_of(pb.url)), timeout=5) as s:
                s.sendall(b"GET /_groupcache/g/k HTTP/1.1\r\nHost: x\r\n\r\n")
                got = b""
                try:
                    got = s.recv(100)
                except OSError:
                    pass
                assert not got.startswith(b"HTTP/"), got
            # B presents its certificate; a client with one from the CA
            # reaches HTTP (401: unsigned), one with a certificate that does
            # not verify is refused at the handshake, one without gets 403.
            der, answer = tls_get(port_of(pb.url), pki, "node")
            assert der == der_of(pki / "node2.pem")
            assert answer.startswith(b"HTTP/1.1 401"), answer
            for client in ("other", "expired"):
                _, answer = tls_get(port_of(pb.url), pki, client)
                assert answer == b"", (client, answer)
            _, answer = tls_get(port_of(pb.url), pki, None)
            assert answer.startswith(b"HTTP/1.1 403"), answer


def test_tls_options_from_the_environment(pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"GROUPCACHE_TLS_CERT": "node.pem", "GROUPCACHE_TLS_KEY": "node.key", "GROUPCACHE_TLS_CA": "ca.pem"}
    for var, f in env.items():
        monkeypatch.setenv(var, str(pki / f))
    with Pool() as p:
        assert p.url.startswith("https://")
        der, answer = tls_get(port_of(p.url), pki, "node2")
        assert der == der_of(pki / "node.pem") and answer.startswith(b"HTTP/1.1 "), answer
    monkeypatch.setenv("GROUPCACHE_TLS_CA", "")
    with pytest.raises(ValueError, match="GROUPCACHE_TLS_CA"):
        Pool()


def test_bad_tls_arguments_are_refused(pki: Path) -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        Pool(tls_cert=pki / "node.pem")
    with pytest.raises(ValueError, match="tls_key"):
        Pool(tls_cert=pki / "node.pem", tls_key=pki / "node2.key")
    with pytest.raises(ValueError, match="missing.pem"):
        Pool(tls_cert=str(pki / "node.pem"), tls_key=str(pki / "node.key"), tls_ca=str(pki / "missing.pem"))
    with pytest.raises(ValueError, match="empty"):
        Pool(tls_cert="", tls_key=pki / "node.key")
    with pytest.raises(TypeError, match="tls_ca"):
        Pool(tls_ca=42)  # type: ignore[arg-type]
    with Pool(**mtls(pki)) as tls, Pool() as plain:
        with pytest.raises(ValueError, match="https://"):
            tls.set_peers([tls.url, plain.url])
        with pytest.raises(ValueError, match="needs TLS"):
            plain.set_peers([tls.url])


# A parent with two TLS nodes; a forked child (a client-only node) gets a
# key that node B owns: B's loader (run by the parent's server) answers
# "B:<key>", the child's own would answer "A:<key>".
FORK = PRELUDE + textwrap.dedent(
    """
    import os, sys, groupcache
    d = sys.argv[1]
    tls = dict(tls_cert=d + "/node.pem", tls_key=d + "/node.key", tls_ca=d + "/ca.pem")
    pa, pb = groupcache.Pool(**tls), groupcache.Pool(**tls)
    ca = groupcache.Cache("f", loader=lambda k: ("A:" + k).encode(), pool=pa)
    cb = groupcache.Cache("f", loader=lambda k: ("B:" + k).encode(), pool=pb)
    for p in (pa, pb):
        p.set_peers([pa.url, pb.url])
    keys = [k for k in ("k%d" % i for i in range(200)) if pa.owner(k) == pb.url][:5]
    assert ca.get(keys[0]) == ("B:" + keys[0]).encode()  # a connection in the parent
    pid = os.fork()
    if pid == 0:
        ok = all(ca.get(k) == ("B:" + k).encode() for k in keys[1:])
        ok = ok and ca.stats().peer_errors == 0
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status), "served", cb.stats().server_requests, flush=True)
    """
)


def test_a_forked_child_fetches_over_tls(pki: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", FORK, str(pki)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[:2] == ["child", "0"], out.stdout + out.stderr
    assert int(words[3]) >= 5, out.stdout  # 1 from the parent, 4 from the child


def probe_get(port: int, path: str) -> bytes:
    """A GET as kubelet's HTTPS probe sends it: no client certificate, the
    server's certificate not checked. Returns the whole answer."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as s:
            s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return answer
                answer += chunk


def test_a_probe_without_a_certificate_reaches_healthz_only(pki: Path, name: str) -> None:
    with Pool(**mtls(pki)) as p, Cache(name, loader=lambda k: b"v", pool=p) as c:
        port = port_of(p.url)
        assert probe_get(port, "/healthz").startswith(b"HTTP/1.1 200"), probe_get(port, "/healthz")
        for path in ("/_groupcache/%s/k" % name, "/metrics", "/_groupcache/"):
            answer = probe_get(port, path)
            assert answer.startswith(b"HTTP/1.1 403") and answer.endswith(b"client certificate required\n"), (
                path,
                answer,
            )
        assert c.stats().loads == 0 and c.stats().server_requests == 0


def test_only_tls_1_3_is_spoken(pki: Path, name: str) -> None:
    """A client that offers at most TLS 1.2 is refused at the handshake,
    with or without a good certificate; the same client allowed 1.3 gets
    its answer."""
    with Pool(**mtls(pki)) as p, Cache(name, loader=lambda k: b"v", pool=p):
        port = port_of(p.url)
        for top in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(str(pki / "ca.pem"))
            ctx.load_cert_chain(str(pki / "node.pem"), str(pki / "node.key"))
            ctx.maximum_version = top
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                if top == ssl.TLSVersion.TLSv1_2:
                    with pytest.raises(ssl.SSLError):
                        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                    continue
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    assert s.version() == "TLSv1.3"
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    assert s.recv(100).startswith(b"HTTP/1.1 200")


def test_tls_server_name_checks_peers_by_name(pki: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """cluster.pem names "groupcache-peers" only, no address: nodes on
    IP-address URLs accept each other by that name, and not without it."""
    cluster = mtls(pki, "cluster")
    for server_name, fetched in (("groupcache-peers", True), (None, False)):
        loads: Dict[str, List[str]] = {"a": [], "b": []}
        with Pool("127.0.3.1:0", tls_server_name=server_name, **cluster) as pa, Pool(
            "127.0.3.2:0", tls_server_name=server_name, **cluster
        ) as pb:
            peers = [pa.url, pb.url]
            pa.set_peers(peers)
            pb.set_peers(peers)
            with Cache(name, loader=lambda k: loads["a"].append(k) or b"a", pool=pa) as ca, Cache(
                name, loader=lambda k: loads["b"].append(k) or b"b", pool=pb
            ):
                keys = ["key-%d" % i for i in range(30)]
                for k in keys:
                    ca.get(k)
                # With the name, B loads the keys it owns; without, A
                # reaches no peer and loads everything itself.
                assert bool(loads["b"]) == fetched, (server_name, loads)
                assert len(loads["a"]) + len(loads["b"]) == len(keys)
                assert (ca.stats().peer_errors > 0) != fetched
    # From the environment too, and checked there.
    monkeypatch.setenv("GROUPCACHE_TLS_SERVER_NAME", "groupcache-peers")
    with Pool("127.0.3.1:0", **cluster) as p:
        assert p.url.startswith("https://127.0.3.1:")
    monkeypatch.setenv("GROUPCACHE_TLS_SERVER_NAME", "bad name")
    with pytest.raises(ValueError, match="GROUPCACHE_TLS_SERVER_NAME"):
        Pool(**cluster)
    monkeypatch.delenv("GROUPCACHE_TLS_SERVER_NAME")
    with pytest.raises(ValueError, match="tls_server_name"):
        Pool(**cluster, tls_server_name="https://groupcache-peers")
    with pytest.raises(ValueError, match="tls_server_name needs tls_cert"):
        Pool(tls_server_name="groupcache-peers")
