"""A real DNS server on loopback for the ``peers_from`` tests: Debian's
dnsmasq (``make test-python`` installs it), serving an addn-hosts file
(replaced, then re-read on SIGHUP) and SRV records, answering NXDOMAIN for
other names under ``DOMAIN`` and forwarding nothing anywhere."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

DOMAIN = "dns.test"


def dnsmasq_path() -> str:
    for p in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq", "/usr/bin/dnsmasq"):
        if os.access(p, os.X_OK):
            return p
    found = shutil.which("dnsmasq")
    if found is None:
        raise RuntimeError("dnsmasq is not installed: `make test-python` installs it (apt-get install dnsmasq-base)")
    return found


def free_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 (for a moment)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def hosts(name: str, addrs: Sequence[str]) -> str:
    """addn-hosts lines giving ``name.DOMAIN`` each of ``addrs``."""
    return "".join("%s %s.%s\n" % (a, name, DOMAIN) for a in addrs)


class Dnsmasq:
    """``Dnsmasq(hosts_text, srv=[...])``: running until ``stop()``."""

    def __init__(self, hosts_text: str, srv: Sequence[str] = ()) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gc-dnsmasq-"))
        self.port = free_port()
        self.srv = list(srv)
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self._write(hosts_text)
        self.start()

    @property
    def nameserver(self) -> str:
        """For ``Pool(nameserver=...)`` and GROUPCACHE_NAMESERVER."""
        return "127.0.0.1:%d" % self.port

    def _write(self, text: str) -> None:
        tmp = self.dir / "hosts.tmp"
        tmp.write_text(text)
        tmp.replace(self.dir / "hosts")

    def start(self) -> None:
        args: List[str] = [
            dnsmasq_path(),
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--user=root",
            "--pid-file=",
            "--log-facility=-",
            "--local-ttl=0",
            "--port=%d" % self.port,
            "--local=/%s/" % DOMAIN,
            "--addn-hosts=%s" % (self.dir / "hosts"),
        ] + ["--srv-host=%s" % s for s in self.srv]
        with open(self.dir / "log", "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while True:  # ready when its TCP port accepts
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                pass
            if self.proc.poll() is not None:
                err = (self.dir / "log").read_text(errors="replace")
                raise RuntimeError("dnsmasq exited (%s): %s" % (self.proc.returncode, err))
            if time.monotonic() > deadline:
                raise RuntimeError("dnsmasq on port %d did not start" % self.port)
            time.sleep(0.02)

    def set_hosts(self, text: str) -> None:
        """Replaces the hosts file; a running dnsmasq reads it again."""
        self._write(text)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Dnsmasq":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
