"""fork(): prefork servers (gunicorn, uWSGI, multiprocessing with "fork").

The scenario that once handed workers each other's values: a parent does a
remote get (so a keep-alive connection to a peer exists), keeps gets in
flight on other threads, then forks workers that each get keys owned by
that peer. Every child must get exactly its own values, never hang, never
crash, and be able to close what it inherited; the parent must keep
working and serving afterwards.

The scenario runs in a fresh interpreter (not in pytest's process) and the
peer node in another one, so that nothing here depends on what pytest has
running.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import PRELUDE

# The peer: a node whose loader answers "B:<key>", driven over stdin.
PEER = PRELUDE + textwrap.dedent(
    """
    import sys, groupcache
    pool = groupcache.Pool("127.0.0.1:0")
    cache = groupcache.Cache("fork", loader=lambda k: ("B:" + k).encode(), pool=pool)
    print(pool.url, flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "peers":
            pool.set_peers(arg.split())
            print("ok", flush=True)
        elif cmd == "get":
            print(cache.get(arg).decode(), flush=True)
        elif cmd == "loads":
            print(cache.stats().local_loads, flush=True)
        else:
            break
    """
)

# The forking parent. argv: the peer's URL. Prints one JSON line.
PARENT = PRELUDE + textwrap.dedent(
    """
    import asyncio, json, os, signal, sys, threading, time, groupcache
    peer_url = sys.argv[1]
    pool = groupcache.Pool("127.0.0.1:0")
    cache = groupcache.Cache("fork", loader=lambda k: ("A:" + k).encode(), pool=pool)
    pool.set_peers([pool.url, peer_url])
    print(pool.url, flush=True)
    sys.stdin.readline()  # the peer knows us now

    def owned_by(url, prefix, n):
        out, i = [], 0
        while len(out) < n:
            k = "%s-%d" % (prefix, i)
            if pool.owner(k) == url:
                out.append(k)
            i += 1
        return out

    # One remote get: a keep-alive connection to the peer on this thread.
    first = owned_by(peer_url, "first", 1)[0]
    assert cache.get(first) == ("B:" + first).encode()

    # Gets in flight on other threads while the fork happens.
    stop = threading.Event()
    def churn(t):
        i = 0
        while not stop.is_set():
            k = "churn-%d-%d" % (t, i % 500)
            v = cache.get(k)
            want = ("B:" if pool.owner(k) == peer_url else "A:") + k
            assert v == want.encode(), (k, v)
            if i % 7 == 0:
                cache.set("set-%d-%d" % (t, i % 50), b"x")
            i += 1
    threads = [threading.Thread(target=churn, args=(t,), daemon=True) for t in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)

    def child(w):
        signal.alarm(30)  # a hang ends the child with SIGALRM: a failure
        wrong = []
        for k in owned_by(peer_url, "w%d" % w, 200):
            v = cache.get(k)
            if v != ("B:" + k).encode():
                wrong.append((k, v.decode(errors="replace")))
        # Keys the parent owns: the parent serves them (a child serves
        # nothing), so they carry the parent's loader's answer.
        for k in owned_by(pool.url, "p%d" % w, 20):
            v = cache.get(k)
            if v != ("A:" + k).encode():
                wrong.append((k, v.decode(errors="replace")))
        # aget runs on a thread pool: the parent's threads are gone.
        k = owned_by(peer_url, "async%d" % w, 1)[0]
        if asyncio.run(cache.aget(k)) != ("B:" + k).encode():
            wrong.append((k, "aget"))
        t0 = time.monotonic()
        cache.close()
        pool.close()
        close_s = time.monotonic() - t0
        with open(os.environ["FORK_OUT"] + ".%d" % w, "w") as f:
            json.dump({"wrong": wrong[:5], "n_wrong": len(wrong), "close_s": close_s}, f)
        os._exit(0)

    pids = []
    for w in range(4):
        pid = os.fork()
        if pid == 0:
            try:
                child(w)
            finally:
                os._exit(3)
        pids.append(pid)
    statuses = [os.waitpid(p, 0)[1] for p in pids]
    stop.set()
    for t in threads:
        t.join(5)

    # The parent still works: its connection to the peer, its own loads.
    after = owned_by(peer_url, "after", 20) + owned_by(pool.url, "mine", 20)
    ok_after = all(
        cache.get(k) == (("B:" if pool.owner(k) == peer_url else "A:") + k).encode() for k in after
    )
    print(json.dumps({"statuses": statuses, "ok_after": ok_after,
                      "mine": owned_by(pool.url, "served", 5)}), flush=True)
    sys.stdin.readline()  # stay up until the peer fetched from us
    """
)


def test_forked_workers_get_their_own_values_and_the_parent_keeps_serving(tmp_path) -> None:
    peer = subprocess.Popen(
        [sys.executable, "-c", PEER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    parent = None
    try:
        assert peer.stdout is not None and peer.stdin is not None
        peer_url = peer.stdout.readline().strip()
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, peer_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**__import__("os").environ, "FORK_OUT": str(tmp_path / "child")},
        )
        assert parent.stdout is not None and parent.stdin is not None
        parent_url = parent.stdout.readline().strip()
        assert parent_url.startswith("http://"), parent_url
        peer.stdin.write("peers %s %s\n" % (parent_url, peer_url))
        peer.stdin.flush()
        assert peer.stdout.readline().strip() == "ok"
        parent.stdin.write("go\n")
        parent.stdin.flush()
        deadline = time.monotonic() + 120
        line = ""
        while not line and time.monotonic() < deadline and parent.poll() is None:
            line = parent.stdout.readline()
        assert line, "the parent printed nothing (exit status %r)" % parent.poll()
        report = json.loads(line)
        # Each child exited 0 (a signal or another status is a crash, hang or failure).
        assert report["statuses"] == [0, 0, 0, 0], report
        for w in range(4):
            child = json.loads((tmp_path / ("child.%d" % w)).read_text())
            assert child["n_wrong"] == 0, child
            # Closing what a child inherited does not wait on the parent's threads.
            assert child["close_s"] < 0.5, child
        assert report["ok_after"]
        # The parent still serves: the peer fetches keys the parent owns.
        for k in report["mine"]:
            peer.stdin.write("get %s\n" % k)
            peer.stdin.flush()
            assert peer.stdout.readline().strip() == "A:" + k
        parent.stdin.write("done\n")
        parent.stdin.flush()
        assert parent.wait(30) == 0
    finally:
        for p in (parent, peer):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_a_cache_without_a_pool_keeps_its_contents_in_the_child_and_does_not_wait_for_parent_loads(
    prelude: str,
) -> None:
    code = prelude + textwrap.dedent(
        """
        import os, signal, threading, groupcache
        release = threading.Event()
        entered = threading.Event()
        parent = os.getpid()
        def loader(k):
            if k == "slow" and os.getpid() == parent:
                entered.set()
                release.wait()
            return ("v:" + k).encode()
        cache = groupcache.Cache("solo", loader=loader)
        cache.set("kept", b"copied")
        t = threading.Thread(target=cache.get, args=("slow",), daemon=True)
        t.start()
        entered.wait()
        pid = os.fork()
        if pid == 0:
            signal.alarm(20)
            ok = cache.get("kept") == b"copied" and cache.get("slow") == b"v:slow"
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        release.set()
        t.join()
        print(status)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0", out.stdout + out.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))


def test_a_grandchild_does_not_close_what_took_the_listeners_number(prelude: str, tmp_path) -> None:  # noqa: ANN001
    """The child closes its copy of the pool's listening socket; a file it
    opens next gets that number. A fork of the child must not close it
    again (it once did: the number was kept after the first close)."""
    data = tmp_path / "data"
    data.write_bytes(b"still open")
    code = prelude + textwrap.dedent(
        """
        import os, signal, sys, groupcache
        pool = groupcache.Pool("127.0.0.1:0")
        pid = os.fork()
        if pid == 0:
            signal.alarm(20)
            f = open(sys.argv[1], "rb")  # likely the listener's old number
            g = os.fork()
            if g == 0:
                try:
                    os.fstat(f.fileno())
                    ok = f.read() == b"still open"
                except OSError:
                    ok = False
                os._exit(0 if ok else 1)
            _, st = os.waitpid(g, 0)
            os._exit(0 if os.waitstatus_to_exitcode(st) == 0 else 2)
        _, st = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(st))
        pool.close()
        """
    )
    out = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0", out.stdout + out.stderr
