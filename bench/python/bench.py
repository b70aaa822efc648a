#!/usr/bin/env python3
"""Per-hit cost and memory per entry of groupcache from Python, against the
floor of a ctypes call, the Go c-shared approaches, Python's own caches and
Redis.

    scripts/python-venv.sh && cargo build --release
    .venv/bin/python bench/python/bench.py            # ~5 minutes
    .venv/bin/python bench/python/bench.py --quick    # a smoke run

Writes bench/out/python.md (the tables), then bench/python/chart.py draws
bench/python/hits.png (groupcache against the alternatives, for the README)
and bench/python/variants.png (our own call path, for BENCHMARKS.md) from
those tables. Needs a C compiler (the floor, shim.c),
redis-server (Debian package redis-server), and for the Go row
bench/go/cshared/build.sh (run here when its library is missing).

How hits are timed: every contestant's loop does one pass of `get(key)`
over its keys (1,000 keys, all present: 10 MB of 10 KiB values, more than
the CPU caches hold); passes of all contestants are interleaved round after
round, in a new random order each round, and each keeps its fastest pass
(per hit): a busy moment on this shared machine hurts every contestant
alike, the order favours none, and the minimum is what the code costs. The
loop overhead (~15 ns) is in every row, the floor's included. Everything runs in this one process except the
two Go approaches, each in a child: after a burst of calls the Go runtime's
own threads stay busy for a while, which slowed whichever contestant ran
next (by ~50 ns per call on this 2-core machine), and pygroupcache's
symbols (cache_get...) clash with ours.

Memory per entry: a fresh process per contestant inserts 1,000,000
entries (16-byte keys, 100-byte values) and reports its RSS growth (for
Redis, the server's) divided by the entries.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "python_ctypes"))

SIZES = {"16 B": 16, "10 KiB": 10 << 10}


def value_of(i: int, size: int) -> bytes:
    """Deterministic ASCII (pygroupcache decodes values as UTF-8)."""
    unit = b"%016d" % i
    return (unit * (size // 16 + 1))[:size]


def keys_for(tag: str, n: int) -> List[str]:
    return ["%s%012d" % (tag[:4].ljust(4, "-"), i) for i in range(n)]  # 16 bytes


def rss_of(pid: int) -> int:
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    return rss_of(os.getpid())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_busy() -> Tuple[float, float]:
    """(all CPUs' busy seconds, this process tree's CPU seconds)."""
    with open("/proc/stat") as f:
        parts = [float(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = parts[3] + parts[4]
    t = os.times()
    return (sum(parts) - idle) / tick, t.user + t.system + t.children_user + t.children_system


# ---- helpers built here ------------------------------------------------------


def build_shim(scratch: Path) -> ctypes.CDLL:
    so = scratch / "libgcbench.so"
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(so), str(HERE / "shim.c")], check=True)
    return ctypes.CDLL(str(so))


def go_cshared_lib() -> Optional[str]:
    out = ROOT / "target" / "go" / "cshared"
    so = out / "libgcshared.so"
    if not so.exists():
        r = subprocess.run([str(ROOT / "bench/go/cshared/build.sh"), str(out)], capture_output=True, text=True)
        if r.returncode != 0:
            print("Go approach skipped: build.sh failed:\n" + r.stderr[-2000:], file=sys.stderr)
            return None
    return str(so)


class Redis:
    """A redis-server of our own on loopback (TCP) and a unix socket."""

    def __init__(self, scratch: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found (apt-get install redis-server)")
        self.port = free_port()
        self.sock = str(scratch / ("redis-%d.sock" % self.port))
        self.proc = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--unixsocket", self.sock,
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--protected-mode", "yes",
             "--dir", str(scratch)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(unix_socket_path=self.sock).ping()
                break
            except Exception as e:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from e
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- contestants --------------------------------------------------------------

Loop = Callable[[], None]


class Contestant:
    def __init__(self, name: str, group: str, note: str = "") -> None:
        self.name = name
        self.group = group
        self.note = note
        self.loops: Dict[str, Tuple[Loop, int]] = {}
        self.best: Dict[str, float] = {}


_LOOP = """
def loop():
    for k in keys:
        %s
"""


def make_loop(get: Callable[..., Any], keys: List[Any], call: str = "get(k)") -> Loop:
    """A loop with a code object of its own: CPython specializes each call
    site for the kind of callable it sees, and one loop shared by all
    contestants would keep being de-specialized, slowing some more than
    others."""
    ns: Dict[str, Any] = {"get": get, "keys": keys}
    exec(compile(_LOOP % call, "<loop>", "exec"), ns)
    return ns["loop"]  # type: ignore[no-any-return]


def verify(get: Callable[[Any], Any], keys: List[Any], expect: Callable[[int], Any]) -> None:
    for i in (0, len(keys) // 2, len(keys) - 1):
        got = get(keys[i])
        if got != expect(i):
            raise AssertionError("%r: got %r..., want %r..." % (keys[i], got[:20], expect(i)[:20]))


def contestants(args: argparse.Namespace, scratch: Path, redis_srv: Optional[Redis]) -> List[Contestant]:
    import groupcache
    from groupcache import _lib

    n = args.keys
    out: List[Contestant] = []
    shim = build_shim(scratch)

    # -- the floor
    cdll_nop = shim.gcb_nop
    cdll_nop.argtypes = []
    cdll_nop.restype = None
    pydll_nop = ctypes.PyDLL(shim._name).gcb_nop
    pydll_nop.argtypes = []
    pydll_nop.restype = None
    version = ctypes.CDLL(_lib.library_path).cache_version  # restype: the default int
    for name, fn, note in [
        ("ctypes no-op call (CDLL)", cdll_nop, "the floor: `void f(void)` through ctypes.CDLL"),
        ("ctypes no-op call (PyDLL)", pydll_nop, "the same through ctypes.PyDLL (GIL kept)"),
        ("ctypes cache_version() (CDLL)", version, "a real library call that does nothing"),
    ]:
        c = Contestant(name, "floor", note)
        for label in SIZES:
            c.loops[label] = (make_loop(fn, keys_for("nop", n), call="get()"), n)
        out.append(c)

    # -- ours
    caches: Dict[str, Any] = {}
    for label, size in SIZES.items():
        cache = groupcache.Cache("bench-%d" % size, max_bytes=256 << 20)
        keys = keys_for("g%d" % size, n)
        for i, k in enumerate(keys):
            cache.set(k, value_of(i, size))
        verify(cache.get, keys, lambda i, size=size: value_of(i, size))
        assert cache.get_many(keys[:3]) == {k: value_of(i, size) for i, k in enumerate(keys[:3])}
        caches[label] = (cache, keys)

    def ours(name: str, note: str, build: Callable[[Any, List[str], int], Tuple[Loop, int]]) -> None:
        c = Contestant(name, "ours", note)
        for label, size in SIZES.items():
            cache, keys = caches[label]
            c.loops[label] = build(cache, keys, size)
        out.append(c)

    ours("groupcache Cache.get", "this package: one PyDLL call per hit",
         lambda cache, keys, size: (make_loop(cache.get, keys), len(keys)))
    ours("groupcache Cache.get_many, per key", "this package: get_many(1,000 keys) / 1,000",
         lambda cache, keys, size: ((lambda: cache.get_many(keys)), len(keys)))  # fmt: skip

    look = _lib.lookup
    look3 = _lib.lookup3
    alloc = _lib.LOOKUP_ALLOC

    def raw(cache: Any, keys: List[str], size: int) -> Tuple[Loop, int]:
        h = cache._harg
        for i in (0, len(keys) - 1):
            k = keys[i].encode()
            assert look3(h, k, len(k)) == value_of(i, size)

        def loop() -> None:
            for k in keys:
                kb = k.encode()
                look3(h, kb, len(kb))

        return loop, len(keys)

    def raw_alloc(cache: Any, keys: List[str], size: int) -> Tuple[Loop, int]:
        h = cache._harg

        def loop() -> None:
            for k in keys:
                kb = k.encode()
                look(h, kb, len(kb), alloc)

        return loop, len(keys)

    def raw_void_p(cache: Any, keys: List[str], size: int) -> Tuple[Loop, int]:
        h = cache._handle  # a c_void_p object
        a = ctypes.c_void_p(_lib._ALLOC_ADDR)

        def loop() -> None:
            for k in keys:
                kb = k.encode()
                look(h, kb, len(kb), a)

        return loop, len(keys)

    def raw_argtypes(cache: Any, keys: List[str], size: int) -> Tuple[Loop, int]:
        h = cache._handle
        checked = _lib.lookup_checked
        a = _lib._ALLOC_ADDR

        def loop() -> None:
            for k in keys:
                kb = k.encode()
                checked(h, kb, len(kb), a)

        return loop, len(keys)

    ours("  the lookup call alone, as get makes it", "encode + cache_lookup, pointers as ctypes cparams", raw)
    ours("  the lookup call, the allocator passed",
         "the same through cache_lookup_alloc (one argument more)", raw_alloc)
    ours("  the lookup call, c_void_p arguments",
         "cache_lookup_alloc, ctypes converting c_void_p objects on each call", raw_void_p)
    ours("  the lookup call, argtypes declared", "cache_lookup_alloc through declared argtypes", raw_argtypes)

    # -- Python caches
    def python_cache(name: str, note: str, build: Callable[[List[str], int], Callable[[str], Any]]) -> None:
        c = Contestant(name, "python", note)
        for label, size in SIZES.items():
            keys = keys_for("py%d" % size, n)
            get = build(keys, size)
            verify(get, keys, lambda i, size=size: value_of(i, size))
            c.loops[label] = (make_loop(get, keys), n)
        out.append(c)

    def lru_cached(keys: List[str], size: int) -> Callable[[str], Any]:
        index = {k: i for i, k in enumerate(keys)}

        @functools.lru_cache(maxsize=1 << 16)
        def load(key: str) -> bytes:
            return value_of(index[key], size)

        for k in keys:
            load(k)
        return load

    def mapping(
        factory: Callable[[], Any], getter: str = "__getitem__"
    ) -> Callable[[List[str], int], Callable[[str], Any]]:
        def build(keys: List[str], size: int) -> Callable[[str], Any]:
            m = factory()
            for i, k in enumerate(keys):
                m[k] = value_of(i, size)
            return getattr(m, getter)  # type: ignore[no-any-return]

        return build

    import cachebox
    import cachetools
    import lru
    import moka_py

    def moka(keys: List[str], size: int) -> Callable[[str], Any]:
        m = moka_py.Moka(1 << 16)
        for i, k in enumerate(keys):
            m.set(k, value_of(i, size))
        return m.get  # type: ignore[no-any-return]

    python_cache("functools.lru_cache", "a hit of an lru_cache'd function", lru_cached)
    python_cache("cachetools.LRUCache", "cachetools %s, cache[key]" % cachetools.__version__,
                 mapping(lambda: cachetools.LRUCache(1 << 16)))  # fmt: skip
    python_cache("lru-dict", "lru.LRU, cache[key]", mapping(lambda: lru.LRU(1 << 16)))
    python_cache("cachebox.LRUCache", "cachebox %s, cache[key]" % cachebox.__version__,
                 mapping(lambda: cachebox.LRUCache(1 << 16)))  # fmt: skip
    python_cache("moka-py", "moka_py.Moka.get", moka)

    # -- Redis
    if redis_srv is not None:
        import redis

        rn = max(50, n // 5)
        for name, client in [
            ("redis-py over TCP (loopback)", redis.Redis(host="127.0.0.1", port=redis_srv.port)),
            ("redis-py over a unix socket", redis.Redis(unix_socket_path=redis_srv.sock)),
        ]:
            c = Contestant(name, "redis", "redis %s, GET on a local redis-server" % redis.__version__)
            for label, size in SIZES.items():
                keys = keys_for("rd%d" % size, rn)
                pipe = client.pipeline()
                for i, k in enumerate(keys):
                    pipe.set(k, value_of(i, size))
                pipe.execute()
                verify(client.get, keys, lambda i, size=size: value_of(i, size))
                c.loops[label] = (make_loop(client.get, keys), rn)
            out.append(c)
    return out


def run_rounds(cs: List[Contestant], rounds: int) -> None:
    gc.collect()
    gc.disable()
    try:
        for label in SIZES:
            for c in cs:
                if label in c.loops:
                    c.loops[label][0]()  # warm up
        rng = random.Random(1)
        order = list(cs)
        for _round in range(rounds):
            # A new order each round: a pass's speed depends a little on
            # which pass ran before it (by up to ~40 ns per call here).
            rng.shuffle(order)
            for label in SIZES:
                for c in order:
                    if label not in c.loops:
                        continue
                    loop, n = c.loops[label]
                    t0 = time.perf_counter()
                    loop()
                    dt = (time.perf_counter() - t0) / n * 1e9
                    if dt < c.best.get(label, float("inf")):
                        c.best[label] = dt
    finally:
        gc.enable()


# ---- children -------------------------------------------------------------------


def child_pygroupcache(args: argparse.Namespace) -> None:
    """Hit cost of pygroupcache (PyPI), in a process of its own."""
    import pygroupcache

    port = free_port()
    pygroupcache.setup("127.0.0.1:%d" % port, "http://127.0.0.1:%d" % port)
    deadline = time.monotonic() + 10
    while not pygroupcache.initialized():
        if time.monotonic() > deadline:
            raise RuntimeError("pygroupcache did not start")
        time.sleep(0.01)
    result: Dict[str, Any] = {}
    n = max(50, args.keys // 5)
    for label, size in SIZES.items():
        keys = keys_for("pg%d" % size, n)
        for i, k in enumerate(keys):
            pygroupcache.set(k, value_of(i, size).decode())
        for i in (0, n - 1):
            assert pygroupcache.get(keys[i]) == value_of(i, size).decode()
        best = float("inf")
        get = pygroupcache.get
        before = rss()
        gets = 0
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for k in keys:
                get(k)
            best = min(best, (time.perf_counter() - t0) / n * 1e9)
            gets += n
        result[label] = best
        result[label + " leak"] = (rss() - before) / gets
    print(json.dumps(result))


def child_go(args: argparse.Namespace) -> None:
    """Hit cost of the Go c-shared approach done right (bench/go/cshared),
    in a process of its own: after each burst of calls, the Go runtime's
    own threads stay busy for a while and slowed whichever contestant ran
    next in a shared process."""
    sys.path.insert(0, str(ROOT / "bench/go/cshared"))
    from gcshared import GCShared

    g = GCShared(args.lib, max_bytes=256 << 20)
    loops: Dict[str, Tuple[Loop, int]] = {}
    for label, size in SIZES.items():
        keys = keys_for("go%d" % size, args.keys)
        for i, k in enumerate(keys):
            g.set(k, value_of(i, size))
        verify(g.get, keys, lambda i, size=size: value_of(i, size))
        loops[label] = (make_loop(g.get, keys), args.keys)
    c = Contestant("go", "go")
    c.loops = loops
    run_rounds([c], args.rounds)
    print(json.dumps(c.best))


def child_trim(args: argparse.Namespace) -> None:
    """get and get_many of this package in a process started with glibc's
    trim threshold raised (GLIBC_TUNABLES, set by the parent): get_many of
    1,000 10 KiB values builds 10 MB of bytes that glibc otherwise hands
    back to the kernel, page by page, when they are freed."""
    import groupcache

    result: Dict[str, Any] = {}
    for label, size in SIZES.items():
        cache = groupcache.Cache("trim-%d" % size, max_bytes=256 << 20)
        keys = keys_for("t%d" % size, args.keys)
        for i, k in enumerate(keys):
            cache.set(k, value_of(i, size))
        get, get_many = cache.get, cache.get_many
        best_get = best_many = float("inf")
        gc.disable()
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for k in keys:
                get(k)
            t1 = time.perf_counter()
            get_many(keys)
            t2 = time.perf_counter()
            best_get = min(best_get, (t1 - t0) / len(keys) * 1e9)
            best_many = min(best_many, (t2 - t1) / len(keys) * 1e9)
        gc.enable()
        result[label] = {"get": best_get, "get_many": best_many}
    print(json.dumps(result))


def child_memory(args: argparse.Namespace) -> None:
    """RSS growth per entry after args.entries inserts of 16-byte keys and
    100-byte values, in a fresh process."""
    name = args.memory_child
    n = args.entries
    key = "%016d".__mod__
    val = b"%0100d".__mod__
    extra: Dict[str, Any] = {}
    gc.collect()
    pid = os.getpid()
    if name == "groupcache":
        import groupcache

        c = groupcache.Cache("mem", max_bytes=1 << 30)
        before = rss()
        for i in range(n):
            c.set(key(i), val(i))
        s = c.stats()
        assert s.main_items == n, s
        assert c.get(key(n - 1)) == val(n - 1)
    elif name == "dict":
        before = rss()
        d = {}
        for i in range(n):
            d[key(i)] = val(i)
    elif name == "functools.lru_cache":
        f = functools.lru_cache(maxsize=n * 2)(lambda k: val(int(k)))
        before = rss()
        for i in range(n):
            f(key(i))
    elif name in ("cachetools.LRUCache", "lru-dict", "cachebox.LRUCache", "moka-py"):
        if name == "cachetools.LRUCache":
            import cachetools

            m: Any = cachetools.LRUCache(n * 2)
        elif name == "lru-dict":
            import lru

            m = lru.LRU(n * 2)
        elif name == "cachebox.LRUCache":
            import cachebox

            m = cachebox.LRUCache(n * 2)
        else:
            import moka_py

            m = moka_py.Moka(n * 2)
        setter = m.set if name == "moka-py" else m.__setitem__
        before = rss()
        for i in range(n):
            setter(key(i), val(i))
    elif name == "go-cshared":
        sys.path.insert(0, str(ROOT / "bench/go/cshared"))
        from gcshared import GCShared

        g = GCShared(args.lib, max_bytes=1 << 30)
        for i in range(n):  # the getter's source (a Go map), not counted
            g.set(key(i), val(i))
        gc.collect()
        before = rss()
        for i in range(n):  # each get fills the group's cache
            g.get(key(i))
        extra["note"] = "group cache only; the Go map the getter reads is excluded"
    elif name == "pygroupcache":
        import pygroupcache

        port = free_port()
        pygroupcache.setup("127.0.0.1:%d" % port, "http://127.0.0.1:%d" % port)
        while not pygroupcache.initialized():
            time.sleep(0.01)
        before = rss()
        for i in range(n):
            pygroupcache.set(key(i), val(i).decode())
    elif name == "redis":
        import redis

        client = redis.Redis(unix_socket_path=args.redis_sock)
        pid = args.redis_pid
        before = rss_of(pid)
        pipe = client.pipeline(transaction=False)
        for i in range(n):
            pipe.set(key(i), val(i))
            if i % 10000 == 9999:
                pipe.execute()
        pipe.execute()
        assert client.dbsize() == n
    else:
        raise SystemExit("unknown contestant " + name)
    gc.collect()
    after = rss_of(pid)
    print(json.dumps(dict(extra, per_entry=(after - before) / n)))


MEMORY = [
    "groupcache",
    "go-cshared",
    "pygroupcache",
    "dict",
    "functools.lru_cache",
    "cachetools.LRUCache",
    "lru-dict",
    "cachebox.LRUCache",
    "moka-py",
    "redis",
]


def memory_runs(args: argparse.Namespace, scratch: Path, golib: Optional[str]) -> Dict[str, Dict[str, Any]]:
    results: Dict[str, Dict[str, Any]] = {}
    for name in MEMORY:
        cmd = [sys.executable, __file__, "--memory-child", name, "--entries", str(args.entries)]
        srv: Optional[Redis] = None
        if name == "go-cshared":
            if not golib:
                continue
            cmd += ["--lib", golib]
        if name == "redis":
            srv = Redis(scratch)  # a fresh server: RSS never shrinks
            cmd += ["--redis-sock", srv.sock, "--redis-pid", str(srv.proc.pid)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        finally:
            if srv is not None:
                srv.stop()
        if r.returncode != 0:
            print("memory %s failed:\n%s" % (name, r.stderr[-2000:]), file=sys.stderr)
            continue
        results[name] = json.loads(r.stdout.strip().splitlines()[-1])
        print("memory %-22s %6.0f bytes/entry" % (name, results[name]["per_entry"]), flush=True)
    return results


# ---- report -----------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    cs: List[Contestant],
    pyg: Optional[Dict[str, float]],
    trim: Optional[Dict[str, Dict[str, float]]],
    mem: Dict[str, Dict[str, Any]],
    others_cpu: float,
    wall: float,
) -> str:
    by = {c.name: c for c in cs}
    floor = by["ctypes no-op call (CDLL)"].best
    pfloor = by["ctypes no-op call (PyDLL)"].best
    lines: List[str] = []
    w = lines.append
    w("`bench/python/bench.py`, %s, Python %s, %d keys per pass, best of %d interleaved rounds; "
      "other processes used %.0f%% of the machine's CPU during the run (%.0f s)."
      % (time.strftime("%Y-%m-%d"), platform.python_version(), args.keys, args.rounds,
         others_cpu * 100, wall))  # fmt: skip
    w("")
    w("### Cost of one hit (ns; lower is better)")
    w("")
    w("| | 16 B | 10 KiB | 16 B vs the floor | what |")
    w("|---|---:|---:|---:|---|")
    rows: List[Tuple[str, Dict[str, float], str]] = [(c.name, c.best, c.note) for c in cs]
    if pyg:
        rows.append(("pygroupcache (PyPI)", {k: pyg[k] for k in SIZES},
                     "Go 1.18 c-shared; own process; leaks %.0f B per 10 KiB get" % pyg["10 KiB leak"]))  # fmt: skip
    if trim:
        for what in ("get", "get_many"):
            per_key = ", per key" if what == "get_many" else ""
            rows.append(("groupcache Cache.%s%s, glibc trim threshold raised" % (what, per_key),
                         {k: trim[k][what] for k in SIZES},
                         "own process, GLIBC_TUNABLES=glibc.malloc.trim_threshold=1GiB"))  # fmt: skip
    for name, best, note in rows:
        vs_floor = best["16 B"] / floor["16 B"]
        w("| %s | %.0f | %.0f | %.1fx | %s |" % (name, best["16 B"], best["10 KiB"], vs_floor, note))
    w("")
    w("![Our call path against the floor of a ctypes call, ns per hit](bench/python/variants.png)")
    w("")
    w("(bench/python/chart.py draws this, and the README's comparison with the other caches, hits.png, "
      "from these tables.)")
    w("")
    w("### Memory per entry (1,000,000 entries: 16-byte keys, 100-byte values)")
    w("")
    w("| | RSS growth per entry (B) | over key + value |")
    w("|---|---:|---:|")
    for name, m in mem.items():
        note = (" (%s)" % m["note"]) if "note" in m else ""
        w("| %s%s | %.0f | %+.0f |" % (name, note, m["per_entry"], m["per_entry"] - 116))
    w("")
    # targets
    get = by["groupcache Cache.get"].best
    many = by["groupcache Cache.get_many, per key"].best
    ct = by["cachetools.LRUCache"].best
    go = by.get("Go c-shared done right (gcshared)")
    w("### Targets")
    w("")
    w("| target | measured | met |")
    w("|---|---|---|")

    def target(what: str, measured: str, ok: bool) -> None:
        w("| %s | %s | %s |" % (what, measured, "yes" if ok else "**no**"))

    target("16 B hit <= 4x the no-op ctypes call",
           "%.1fx CDLL no-op (%.1fx the PyDLL no-op)" % (get["16 B"] / floor["16 B"], get["16 B"] / pfloor["16 B"]),
           get["16 B"] <= 4 * floor["16 B"])  # fmt: skip
    if go:
        r = go.best["10 KiB"] / get["10 KiB"]
        target("10 KiB hit >= 3x faster than the Go approach done right", "%.1fx" % r, r >= 3)
    if pyg:
        r = pyg["10 KiB"] / get["10 KiB"]
        target("10 KiB hit >= 50x faster than pygroupcache", "%.1fx" % r, r >= 50)
    for label in SIZES:
        target("get_many per key <= a cachetools.LRUCache hit (%s)" % label,
               "%.0f vs %.0f ns" % (many[label], ct[label]), many[label] <= ct[label])  # fmt: skip
    if "groupcache" in mem:
        pe = mem["groupcache"]["per_entry"]
        target("RSS per entry <= key + value + 64 B (180 B)", "%.0f B" % pe, pe <= 116 + 64)
    w("")
    return "\n".join(lines) + "\n"


BUFFER_SIZES = {"16 B": (16, 1000), "10 KiB": (10 << 10, 1000), "1 MiB": (1 << 20, 64)}
"""Values and keys per size. Every pass makes ~1,000 calls: the 64 keys of
1 MiB are gone through 16 times. (With one pass of 64 calls, the cost of
starting a pass with cold CPU caches, which Cache.get's pass of 64 MiB of
copies just flushed, weighed 16 times more per call than at the other
sizes: +300 ns a call that a steady loop does not show.)"""
BUFFER_REPEAT = {"1 MiB": 16}


def buffer_run(args: argparse.Namespace) -> None:
    """`--buffer`: Cache.get_buffer (zero-copy views, issue 10) at 16 B,
    10 KiB and 1 MiB, Cache.get alongside, and pygroupcache's 10 KiB get in
    a child, in one run; each view is dropped as the next get starts.
    Writes bench/out/python-buffer.md."""
    import groupcache

    cs: List[Contestant] = []
    for what in ("get_buffer", "get"):
        c = Contestant("groupcache Cache.%s" % what, "ours")
        for label, (size, n) in BUFFER_SIZES.items():
            cache = groupcache.Cache("buf-%s-%d" % (what, size), max_bytes=256 << 20)
            keys = keys_for("b%d" % size, n)
            for i, k in enumerate(keys):
                cache.set(k, value_of(i, size))
            verify(getattr(cache, what), keys, lambda i, size=size: value_of(i, size))
            rep = BUFFER_REPEAT.get(label, 1)
            c.loops[label] = (make_loop(getattr(cache, what), keys * rep), n * rep)
        cs.append(c)
    gc.collect()
    gc.disable()
    try:
        rng = random.Random(1)
        for _round in range(args.rounds):
            rng.shuffle(cs)
            for label in BUFFER_SIZES:
                for c in cs:
                    loop, n = c.loops[label]
                    t0 = time.perf_counter()
                    loop()
                    dt = (time.perf_counter() - t0) / n * 1e9
                    c.best[label] = min(dt, c.best.get(label, float("inf")))
    finally:
        gc.enable()
    r = subprocess.run([sys.executable, __file__, "--pygroupcache-child", "--keys", str(args.keys),
                        "--rounds", str(max(3, args.rounds // 4))],
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    if r.returncode != 0:
        raise SystemExit("pygroupcache failed:\n" + r.stderr[-2000:])
    pyg = json.loads(r.stdout.strip().splitlines()[-1])
    by = {c.name: c.best for c in cs}
    buf, get = by["groupcache Cache.get_buffer"], by["groupcache Cache.get"]
    lines = [
        "`bench/python/bench.py --buffer`, %s, Python %s, best of %d interleaved rounds "
        "(1,000 keys per pass; at 1 MiB 64 keys 16 times over); each view is dropped when the next "
        "get starts."
        % (time.strftime("%Y-%m-%d"), platform.python_version(), args.rounds),
        "",
        "| ns per hit | 16 B | 10 KiB | 1 MiB |",
        "|---|---:|---:|---:|",
    ]
    for name, best in (("groupcache Cache.get_buffer", buf), ("groupcache Cache.get", get)):
        lines.append("| %s | %.0f | %.0f | %.0f |" % (name, best["16 B"], best["10 KiB"], best["1 MiB"]))
    lines.append("| pygroupcache get (own process) | %.0f | %.0f | — |" % (pyg["16 B"], pyg["10 KiB"]))
    worst = max(buf.values()) / buf["16 B"]
    vs_pyg = pyg["10 KiB"] / buf["10 KiB"]
    lines += [
        "",
        "| target | measured | met |",
        "|---|---|---|",
        "| get_buffer at 10 KiB and 1 MiB within 1.5x of its 16 B cost | %.2fx at worst | %s |"
        % (worst, "yes" if worst <= 1.5 else "**no**"),
        "| 10 KiB get_buffer >= 25x faster than pygroupcache's 10 KiB get | %.1fx | %s |"
        % (vs_pyg, "yes" if vs_pyg >= 25 else "**no**"),
        "",
    ]
    text = "\n".join(lines)
    out = args.out.parent / "python-buffer.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few rounds, 100,000 entries")
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "python.md")
    ap.add_argument("--charts-dir", type=Path, default=HERE, help="where chart.py writes hits.png and variants.png")
    ap.add_argument("--buffer", action="store_true", help="only the get_buffer rows (zero-copy views)")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    ap.add_argument("--pygroupcache-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--trim-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--go-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--lib", help=argparse.SUPPRESS)
    ap.add_argument("--redis-sock", help=argparse.SUPPRESS)
    ap.add_argument("--redis-pid", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return child_memory(args)
    if args.pygroupcache_child:
        return child_pygroupcache(args)
    if args.trim_child:
        return child_trim(args)
    if args.go_child:
        return child_go(args)
    if args.buffer:
        return buffer_run(args)
    if args.quick:
        args.rounds = min(args.rounds, 8)
        args.entries = min(args.entries, 100_000)

    t0 = time.monotonic()
    busy0, ours0 = cpu_busy()
    with tempfile.TemporaryDirectory(prefix="gcbench-") as tmp:
        scratch = Path(tmp)
        redis_srv: Optional[Redis] = None
        try:
            redis_srv = Redis(scratch)
        except RuntimeError as e:
            print("Redis rows skipped: %s" % e, file=sys.stderr)
        try:
            cs = contestants(args, scratch, redis_srv)
            run_rounds(cs, args.rounds)
        finally:
            if redis_srv is not None:
                redis_srv.stop()
        for c in cs:
            print("%-48s %8.1f %8.1f ns" % (c.name, c.best.get("16 B", 0), c.best.get("10 KiB", 0)), flush=True)
        golib = go_cshared_lib()
        if golib:
            r = subprocess.run([sys.executable, __file__, "--go-child", "--lib", golib, "--keys", str(args.keys),
                                "--rounds", str(args.rounds)], capture_output=True, text=True, timeout=900)  # fmt: skip
            if r.returncode == 0:
                c = Contestant("Go c-shared done right (gcshared)", "go",
                               "bench/go/cshared: golang/groupcache, current Go, c-shared, values freed; "
                               "own process")  # fmt: skip
                c.best = json.loads(r.stdout.strip().splitlines()[-1])
                cs.insert(next(i for i, x in enumerate(cs) if x.group == "python"), c)
                print("%-48s %8.1f %8.1f ns" % (c.name, c.best["16 B"], c.best["10 KiB"]), flush=True)
            else:
                print("Go child failed:\n" + r.stderr[-2000:], file=sys.stderr)
        pyg: Optional[Dict[str, float]] = None
        r = subprocess.run([sys.executable, __file__, "--pygroupcache-child", "--keys", str(args.keys),
                            "--rounds", str(max(3, args.rounds // 4))],
                           capture_output=True, text=True, timeout=900)  # fmt: skip
        if r.returncode == 0:
            pyg = json.loads(r.stdout.strip().splitlines()[-1])
            print("%-48s %8.1f %8.1f ns" % ("pygroupcache", pyg["16 B"], pyg["10 KiB"]), flush=True)
        else:
            print("pygroupcache failed:\n" + r.stderr[-2000:], file=sys.stderr)
        trim: Optional[Dict[str, Dict[str, float]]] = None
        env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.trim_threshold=%d" % (1 << 30))
        r = subprocess.run([sys.executable, __file__, "--trim-child", "--keys", str(args.keys),
                            "--rounds", str(args.rounds)],
                           capture_output=True, text=True, timeout=900, env=env)  # fmt: skip
        if r.returncode == 0:
            trim = json.loads(r.stdout.strip().splitlines()[-1])
        else:
            print("trim child failed:\n" + r.stderr[-2000:], file=sys.stderr)
        mem = {} if args.no_memory else memory_runs(args, scratch, golib)
    busy1, ours1 = cpu_busy()
    wall = time.monotonic() - t0
    others = max(0.0, ((busy1 - busy0) - (ours1 - ours0)) / (wall * (os.cpu_count() or 1)))
    text = report(args, cs, pyg, trim, mem, others, wall)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    sys.path.insert(0, str(HERE))
    import chart

    pngs = chart.render(args.out.resolve(), args.charts_dir)
    print(text)
    print("wrote %s, %s and %s" % (args.out, *pngs))


if __name__ == "__main__":
    main()
