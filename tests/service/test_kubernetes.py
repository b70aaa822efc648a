"""examples/kubernetes: the manifests against the Kubernetes API schemas
(kubernetes-validate, whose schemas ship in the package: no network), their
names, ports, environment and probe against what the example reads and the
library serves, and the example's standalone mode (what each pod runs) over
real HTTP on loopback: two nodes configured from the manifest's environment
(mutual TLS with a certificate that names only the manifest's
GROUPCACHE_TLS_SERVER_NAME, over IP-address URLs), readiness on /healthz as
kubelet's HTTPS probe asks it (no client certificate, nothing verified), the
drain on SIGTERM.

Building the image cannot be tested here (no container engine runs): the
Dockerfile is checked for what it copies and runs.

Run: PYTHONPATH=python_ctypes GROUPCACHE_LIB=target/release/libgroupcache.so \\
     .venv/bin/python -m pytest -q tests/service/test_kubernetes.py
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "examples" / "kubernetes"
SERVICE = ROOT / "examples" / "service"
MANIFESTS = ["service.yaml", "deployment.yaml"]  # core kinds: schema-checked
CERT_MANAGER = "certificate.yaml"  # cert-manager kinds: no schema ships; cross-checked below
KUBE_VERSIONS = ["1.30.0", "1.37.0"]  # an older supported release and the newest the package knows

# The library's environment variables the manifests may set that README's
# options table does not list yet (none now: peers_from and the TLS files
# have their rows). A name listed here that the table gains fails the test
# below, so that the list never outlives its reason.
PENDING_LIBRARY_ENV: Dict[str, str] = {}

sys.path.insert(0, str(SERVICE))
import worker  # noqa: E402  (imports groupcache: the package under test)

# ---- the manifests ------------------------------------------------------------------


def load(name: str) -> List[Dict[str, Any]]:
    with open(K8S / name) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def one(docs: List[Dict[str, Any]], kind: str, name: str) -> Dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, "%s/%s: %d found" % (kind, name, len(found))
    return found[0]


@pytest.fixture(scope="module")
def docs() -> List[Dict[str, Any]]:
    return [d for n in MANIFESTS for d in load(n)]


@pytest.fixture(scope="module")
def deployment(docs: List[Dict[str, Any]]) -> Dict[str, Any]:
    return one(docs, "Deployment", "items")


@pytest.fixture(scope="module")
def container(deployment: Dict[str, Any]) -> Dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


@pytest.fixture(scope="module")
def env(container: Dict[str, Any]) -> Dict[str, Any]:
    """name -> value (or the valueFrom mapping)."""
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), "a variable set twice"
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def validate(paths: List[Path], version: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_manifests_pass_the_api_schemas(version: str) -> None:
    r = validate([K8S / n for n in MANIFESTS], version)
    assert r.returncode == 0, r.stdout + r.stderr
    passed = re.findall(r"passed for resource (\S+)", r.stdout + r.stderr)
    assert sorted(passed) == ["deployment/items", "service/groupcache-peers", "service/items"], r.stdout


def test_the_validator_catches_mistakes(tmp_path: Path) -> None:
    """The check can fail: a wrong type and a misspelt field are errors."""
    text = (K8S / "deployment.yaml").read_text()
    for bad, broken in [
        ("containerPort: 8001", "containerPort: peer-port"),
        ("readinessProbe:", "readinesProbe:"),
    ]:
        assert bad in text
        p = tmp_path / "broken.yaml"
        p.write_text(text.replace(bad, broken, 1))
        r = validate([p], KUBE_VERSIONS[-1])
        assert r.returncode != 0, "accepted %r:\n%s" % (broken, r.stdout + r.stderr)


def test_cert_manager_objects_are_only_unknown_to_the_validator() -> None:
    r = validate([K8S / CERT_MANAGER], KUBE_VERSIONS[-1])
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert lines and all("Couldn't find schema for kind" in ln and "cert-manager.io/v1" in ln for ln in lines), lines


def port_named(container: Dict[str, Any], name: str) -> int:
    (p,) = [p for p in container["ports"] if p["name"] == name]
    assert p.get("protocol", "TCP") == "TCP"
    port: int = p["containerPort"]
    return port


def test_services_select_the_pods_and_their_ports(
    docs: List[Dict[str, Any]], deployment: Dict[str, Any], container: Dict[str, Any]
) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    match = deployment["spec"]["selector"]["matchLabels"]
    assert match.items() <= labels.items(), "the Deployment's selector misses its pods"
    peers = one(docs, "Service", "groupcache-peers")
    http_svc = one(docs, "Service", "items")
    for svc in (peers, http_svc):
        assert svc["spec"]["selector"].items() <= labels.items(), svc["metadata"]["name"]
    # Headless, and only ready pods in DNS (a closing node leaves it).
    assert peers["spec"]["clusterIP"] == "None"
    assert peers["spec"].get("publishNotReadyAddresses", False) is False
    (pp,) = peers["spec"]["ports"]
    assert pp["targetPort"] == "peer" and pp["port"] == port_named(container, "peer")
    (hp,) = http_svc["spec"]["ports"]
    assert hp["targetPort"] == "http"


def test_environment_is_what_the_example_and_the_library_read(env: Dict[str, Any], container: Dict[str, Any]) -> None:
    # Every SERVICE_* is one the example reads; every GROUPCACHE_* a
    # library option (README's table, or pending a merge); nothing else.
    documented = set(re.findall(r"`(GROUPCACHE_[A-Z0-9_]+)`", (ROOT / "README.md").read_text()))
    for name in env:
        if name.startswith("SERVICE_"):
            assert name in worker.ENV_DEFAULTS, "%s: worker.py does not read it" % name
        elif name.startswith("GROUPCACHE_"):
            assert name in documented or name in PENDING_LIBRARY_ENV, "%s: not a library option" % name
        else:
            pytest.fail("%s: neither the example's nor the library's" % name)
    # The pending list holds only what is still undocumented.
    landed = sorted(set(PENDING_LIBRARY_ENV) & documented)
    assert not landed, "now in README's options table: remove %s from PENDING_LIBRARY_ENV" % landed
    # The library's variables the example looks at itself are real too.
    for name in worker.LIBRARY_ENV:
        assert name in documented or name in PENDING_LIBRARY_ENV, name

    # Ports: the manifest's values are the example's defaults and the
    # container's ports.
    assert (
        int(env["SERVICE_PEER_PORT"]) == port_named(container, "peer") == int(worker.ENV_DEFAULTS["SERVICE_PEER_PORT"])
    )
    assert (
        int(env["SERVICE_HTTP_PORT"]) == port_named(container, "http") == int(worker.ENV_DEFAULTS["SERVICE_HTTP_PORT"])
    )
    # The node binds every interface and names itself by the pod IP.
    assert env["SERVICE_LISTEN_HOST"] == "0.0.0.0"
    assert env["SERVICE_ADVERTISE_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    # The settings parse as the example parses them.
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    st = worker.Settings.from_env({**plain, "SERVICE_ADVERTISE_HOST": "10.1.2.3"})
    assert st.self_url() == "https://10.1.2.3:%d" % port_named(container, "peer")
    assert st.cache_mb > 0 and st.seed > 0 and st.db.startswith("/data/")


def test_membership_points_at_the_headless_service(
    docs: List[Dict[str, Any]], env: Dict[str, Any], container: Dict[str, Any]
) -> None:
    m = re.fullmatch(r"dns\+(https?)://([a-z0-9.-]+):(\d+)", env["GROUPCACHE_PEERS_FROM"])
    assert m, env["GROUPCACHE_PEERS_FROM"]
    scheme, host, port = m.groups()
    assert host.split(".")[0] == one(docs, "Service", "groupcache-peers")["metadata"]["name"]
    assert int(port) == port_named(container, "peer")
    # https because TLS is on, and then all three files are set, and the
    # name peers' certificates are checked against (their URLs are pod IPs).
    tls = {k for k in env if k.startswith("GROUPCACHE_TLS_")}
    assert scheme == "https" and tls == {
        "GROUPCACHE_TLS_CERT",
        "GROUPCACHE_TLS_KEY",
        "GROUPCACHE_TLS_CA",
        "GROUPCACHE_TLS_SERVER_NAME",
    }


def test_tls_files_come_from_the_mounted_secret(
    deployment: Dict[str, Any], container: Dict[str, Any], env: Dict[str, Any]
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if "secret" in volumes[m["name"]]]
    assert mount.get("readOnly") is True and "subPath" not in mount, "updates of a subPath mount never reach the pod"
    secret = volumes[mount["name"]]["secret"]
    for var, key in [
        ("GROUPCACHE_TLS_CERT", "tls.crt"),
        ("GROUPCACHE_TLS_KEY", "tls.key"),
        ("GROUPCACHE_TLS_CA", "ca.crt"),
    ]:
        assert env[var] == "%s/%s" % (mount["mountPath"], key)
    # Readable by the node's group (fsGroup), by nobody else.
    assert secret["defaultMode"] == 0o440 and pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    # certificate.yaml makes that Secret, for both uses, named for the Service.
    cert = one(load(CERT_MANAGER), "Certificate", "groupcache-tls")
    assert cert["spec"]["secretName"] == secret["secretName"]
    assert {"server auth", "client auth"} <= set(cert["spec"]["usages"])
    # The name the nodes check each other's certificates against is the one
    # it carries (and no address: pod IPs cannot be known in advance).
    name = env["GROUPCACHE_TLS_SERVER_NAME"]
    assert cert["spec"]["dnsNames"] == [name] and cert["spec"]["commonName"] == name
    assert "ipAddresses" not in cert["spec"]
    issuer = one(load(CERT_MANAGER), "Issuer", cert["spec"]["issuerRef"]["name"])
    ca = one(load(CERT_MANAGER), "Certificate", issuer["spec"]["ca"]["secretName"])
    assert ca["spec"]["isCA"] is True and ca["spec"]["secretName"] != secret["secretName"]


def test_readiness_probe_is_healthz_on_the_peer_port_and_the_drain_fits(
    deployment: Dict[str, Any], container: Dict[str, Any], env: Dict[str, Any]
) -> None:
    probe = container["readinessProbe"]
    # kubelet's own GET, no exec: over TLS (the peer port speaks only
    # https), on the port named peer, which is SERVICE_PEER_PORT. It
    # presents no client certificate; the node serves /healthz to such a
    # client (checked over real TLS below).
    assert set(probe) == {"httpGet", "periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold"}
    assert probe["httpGet"] == {"path": "/healthz", "port": "peer", "scheme": "HTTPS"}
    assert port_named(container, "peer") == int(env["SERVICE_PEER_PORT"])
    assert env["GROUPCACHE_PEERS_FROM"].startswith("dns+https://")
    # The drain outlasts the probe noticing (period x threshold) plus a DNS
    # refresh (5 s), and fits in the grace period with time to stop.
    drain = int(env["GROUPCACHE_DRAIN_MS"]) / 1000
    assert drain >= probe["periodSeconds"] * probe["failureThreshold"] + 5
    assert drain + 5 <= deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_dockerfile_installs_the_wheel_and_runs_the_standalone_worker(container: Dict[str, Any]) -> None:
    text = (K8S / "Dockerfile").read_text()
    assert re.search(r"^COPY dist/groupcache-\*\.whl ", text, re.M)
    assert re.search(r"pip install .*groupcache-\*\.whl", text)
    copied = re.search(r"^COPY (examples/service/.*) /app/$", text, re.M)
    assert copied
    files = copied.group(1).split()
    for f in files:
        assert (ROOT / f).is_file(), f
    # The worker imports serve.init_db.
    assert {"examples/service/worker.py", "examples/service/serve.py"} <= set(files)
    assert 'ENTRYPOINT ["python3", "/app/worker.py", "--standalone"]' in text
    assert re.search(r"^USER 65532:65532$", text, re.M)
    # The README's build command makes the image the Deployment runs.
    readme = (K8S / "README.md").read_text()
    assert "-t %s ." % container["image"] in readme


# ---- the standalone worker, as each pod runs it, on loopback ----------------------


def free_ports(n: int) -> List[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def kubelet_probe(port: int, path: str = "/healthz") -> Tuple[int, bytes]:
    """A GET as kubelet's httpGet probe with scheme HTTPS sends it: TLS, no
    client certificate, the server's certificate not verified."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return _get_on(http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx), path)


def get(port: int, path: str) -> Tuple[int, bytes]:
    return _get_on(http.client.HTTPConnection("127.0.0.1", port, timeout=10), path)


def _get_on(conn: http.client.HTTPConnection, path: str) -> Tuple[int, bytes]:
    """GET `path` on `conn`, then close it: (status, body)."""
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def child_env(extra: Dict[str, str]) -> Dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("GROUPCACHE_", "SERVICE_"))}
    if os.environ.get("GROUPCACHE_LIB"):
        e["GROUPCACHE_LIB"] = str((ROOT / os.environ["GROUPCACHE_LIB"]).resolve())
    if os.environ.get("GROUPCACHE_TEST_INSTALLED") != "1":
        e["PYTHONPATH"] = str(ROOT / "python_ctypes")
    e.update(extra)
    return e


class Node:
    def __init__(self, env: Dict[str, str], log: Path) -> None:
        self.http = int(env["SERVICE_HTTP_PORT"])
        self.peer = int(env["SERVICE_PEER_PORT"])
        self.env = env
        self.log = log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(SERVICE / "worker.py"), "--standalone"],
                env=child_env(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
            )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # its hello: bound and serving
        if not line:
            pytest.fail("the node exited:\n" + log.read_text())
        self.hello = json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def secret_like(tmp_path: Path, name: str) -> Dict[str, str]:
    """Files like the Secret's: the test CA (tests/tls/make-certs.sh), and a
    certificate from it for `name` only (DNS, no address, both uses), as
    certificate.yaml asks of cert-manager. Returns the GROUPCACHE_TLS_*
    file variables."""
    d = tmp_path / "tls"
    subprocess.run(["bash", str(ROOT / "tests/tls/make-certs.sh"), str(d)], check=True)
    ext = d / "ext.cnf"
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:%s\n" % name
    )
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(d / "tls.key"))
    run("req", "-new", "-key", str(d / "tls.key"), "-subj", "/CN=" + name, "-out", str(d / "tls.csr"))
    run(
        "x509", "-req", "-in", str(d / "tls.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
        "-CAcreateserial", "-sha256", "-days", "2", "-extfile", str(ext), "-out", str(d / "tls.crt"),
    )  # fmt: skip
    return {
        "GROUPCACHE_TLS_CERT": str(d / "tls.crt"),
        "GROUPCACHE_TLS_KEY": str(d / "tls.key"),
        "GROUPCACHE_TLS_CA": str(d / "ca.pem"),
    }


@pytest.fixture
def nodes(tmp_path: Path, env: Dict[str, Any]) -> Iterator[List[Node]]:
    """Two nodes with the manifest's settings, but on loopback: static
    https peers at IP addresses (as DNS gives pod IPs; DNS membership is
    another suite's business), the Secret's files made for the manifest's
    GROUPCACHE_TLS_SERVER_NAME, and a drain of 2 s, not 15."""
    ports = free_ports(4)
    peers = ",".join("https://127.0.0.1:%d" % p for p in ports[1::2])
    base = {k: v for k, v in env.items() if isinstance(v, str) and k not in PENDING_LIBRARY_ENV}
    del base["GROUPCACHE_PEERS_FROM"]
    tls = secret_like(tmp_path, env["GROUPCACHE_TLS_SERVER_NAME"])
    made: List[Node] = []
    try:
        for i in range(2):
            e = dict(base)
            e.update(tls)
            e.update(
                SERVICE_HTTP_PORT=str(ports[2 * i]), SERVICE_PEER_PORT=str(ports[2 * i + 1]),
                SERVICE_LISTEN_HOST="127.0.0.1", SERVICE_ADVERTISE_HOST="127.0.0.1",
                SERVICE_DB=str(tmp_path / ("items%d.db" % i)), SERVICE_PEERS=peers,
                GROUPCACHE_DRAIN_MS="2000",
            )  # fmt: skip
            made.append(Node(e, tmp_path / ("node%d.log" % i)))
        yield made
    finally:
        for n in made:
            n.stop()


def test_standalone_nodes_share_one_cache_and_drain_on_sigterm(nodes: List[Node]) -> None:
    a, b = nodes
    for n in nodes:
        assert n.hello["peer_url"] == "https://127.0.0.1:%d" % n.peer
        # The readiness probe passes; the same client gets nothing else.
        assert kubelet_probe(n.peer) == (200, b"ok\n")
        for path in ("/metrics", "/_groupcache/items/1"):
            assert kubelet_probe(n.peer, path) == (403, b"client certificate required\n"), path
    # One cache: each item is read from a database once, by its owner,
    # whichever node is asked (the nodes accept each other's certificate
    # by GROUPCACHE_TLS_SERVER_NAME: it names no address).
    for key in map(str, range(1, 21)):
        _, body_a = get(a.http, "/items/" + key)
        _, body_b = get(b.http, "/items/" + key)
        assert body_a == body_b and json.loads(body_a)["id"] == key
    reads = [json.loads(get(n.http, "/stats")[1])["db_reads"] for n in nodes]
    assert sum(reads) == 20 and min(reads) > 0, reads
    for n in nodes:
        assert json.loads(get(n.http, "/stats")[1])["cache"]["peer_errors"] == 0
    a.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 1.5
    while kubelet_probe(a.peer)[0] != 503:
        assert time.monotonic() < deadline, "no 503 after SIGTERM"
        time.sleep(0.02)
    # Draining: the probe fails, the node still serves its peers and its
    # HTTP API, and says so on /health.
    assert get(a.http, "/health")[0] == 503
    assert get(a.http, "/items/1")[0] == 200
    before = json.loads(get(b.http, "/stats")[1])["cache"]
    for key in map(str, range(21, 61)):  # not cached yet: about half are a's
        assert get(b.http, "/items/" + key)[0] == 200
    after = json.loads(get(b.http, "/stats")[1])["cache"]
    assert after["peer_errors"] == before["peer_errors"], "a peer request failed during the drain"
    assert after["peer_loads"] > before["peer_loads"], "no key of the draining node was asked"
    assert kubelet_probe(b.peer)[0] == 200
    assert a.proc.wait(10) == 0
    with pytest.raises(OSError):
        kubelet_probe(a.peer)
    assert "draining the pool" in a.log.read_text()


def test_standalone_settings_are_checked() -> None:
    with pytest.raises(SystemExit, match="SERVICE_PEER_PORT"):
        worker.Settings.from_env({"SERVICE_PEER_PORT": "http"})
    with pytest.raises(SystemExit, match="set one"):
        worker.Settings.from_env({"SERVICE_PEERS": "http://a:1", "GROUPCACHE_PEERS_FROM": "dns+http://x:1"})
    with pytest.raises(SystemExit, match="SERVICE_ADVERTISE_HOST"):
        worker.Settings.from_env({"SERVICE_LISTEN_HOST": "0.0.0.0"}).self_url()
    st = worker.Settings.from_env(
        {"GROUPCACHE_PEERS_FROM": "dns+srv+https://_gc._tcp.x", "SERVICE_ADVERTISE_HOST": "fd00::1"}
    )
    assert st.self_url() == "https://[fd00::1]:8001"
    assert worker.Settings.from_env({}).self_url() == "http://127.0.0.1:8001"
