"""Readiness check of a standalone worker (worker.py --standalone): GET
/healthz on this node's groupcache peer port; exit status 0 on 200, 1
otherwise (a 503 while the pool drains, a refused connection, a timeout).

    python3 healthcheck.py        # settings from the environment, as the worker's

Kubernetes runs it as an exec readiness probe (examples/kubernetes) when the
peer port speaks mutual TLS: kubelet's own httpGet probes present no client
certificate, so the server would refuse their handshake. This script
presents the node's own certificate (GROUPCACHE_TLS_CERT / _KEY) and checks
the server's against GROUPCACHE_TLS_CA. It connects to 127.0.0.1, which the
certificate does not name: the chain is checked, the host name is not (it is
this pod's own port). Without TLS, an httpGet probe on /healthz does the same
job and costs no process.

Reads: SERVICE_PEER_PORT (default 8001, as worker.py), GROUPCACHE_PEERS_FROM
and SERVICE_PEERS (https or not, as worker.py decides), GROUPCACHE_TLS_CERT,
GROUPCACHE_TLS_KEY, GROUPCACHE_TLS_CA. Standard library only.
"""

from __future__ import annotations

import http.client
import os
import ssl
import sys
from typing import Dict, Optional

PATH = "/healthz"
TIMEOUT = 2.0  # under the probe's timeoutSeconds
DEFAULT_PEER_PORT = "8001"  # worker.ENV_DEFAULTS["SERVICE_PEER_PORT"]


def uses_tls(env: Dict[str, str]) -> bool:
    spec = env.get("GROUPCACHE_PEERS_FROM", "")
    if spec:
        return spec.split("://", 1)[0].endswith("https")
    return any(u.strip().startswith("https://") for u in env.get("SERVICE_PEERS", "").split(","))


def tls_context(env: Dict[str, str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=env.get("GROUPCACHE_TLS_CA") or None)
    ctx.check_hostname = False  # 127.0.0.1: our own port (see above)
    ctx.verify_mode = ssl.CERT_REQUIRED
    cert, key = env.get("GROUPCACHE_TLS_CERT"), env.get("GROUPCACHE_TLS_KEY")
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def check(env: Optional[Dict[str, str]] = None) -> int:
    """The status /healthz answered; 0 if it did not answer."""
    e = dict(os.environ if env is None else env)
    port = int(e.get("SERVICE_PEER_PORT", DEFAULT_PEER_PORT))
    conn: http.client.HTTPConnection
    if uses_tls(e):
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT, context=tls_context(e))
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", PATH)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException) as err:
        print("healthcheck: %s" % err, file=sys.stderr)
        return 0
    finally:
        conn.close()


def main() -> int:
    status = check()
    if status != 200:
        print("healthcheck: %s answered %s" % (PATH, status or "nothing"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
