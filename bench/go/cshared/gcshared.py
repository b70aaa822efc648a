"""ctypes binding for libgcshared.so (golang/groupcache as a Go c-shared
library, built by build.sh in this folder).

    cache = GCShared("/path/to/libgcshared.so", max_bytes=64 << 20)
    cache.set("k", b"value")
    cache.get("k")        # b"value"; None for a key never set

Every value gc_get hands out is copied into a Python bytes object and freed
with gc_free at once, so nothing leaks. One group per process (the Go side
keeps it in a global); creating a second GCShared reuses it.

`python3 gcshared.py LIB` runs a small timing and leak check and prints JSON.
"""
import ctypes
import os
import threading

__all__ = ["GCShared"]

_string_at = ctypes.string_at


class GCShared:
    def __init__(self, path=None, max_bytes=64 << 20):
        path = path or os.environ.get("GCSHARED_LIB") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "libgcshared.so")
        lib = ctypes.CDLL(path)
        lib.gc_setup.argtypes = [ctypes.c_int64]
        lib.gc_setup.restype = ctypes.c_int
        lib.gc_set.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                               ctypes.c_char_p, ctypes.c_size_t]
        lib.gc_set.restype = ctypes.c_int
        lib.gc_get.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                               ctypes.POINTER(ctypes.c_size_t)]
        lib.gc_get.restype = ctypes.c_void_p
        lib.gc_free.argtypes = [ctypes.c_void_p]
        lib.gc_free.restype = None
        rc = lib.gc_setup(max_bytes)
        if rc == 2:
            raise ValueError("max_bytes must be >= 0")
        self._lib = lib
        self._get = lib.gc_get
        self._free = lib.gc_free
        self._set = lib.gc_set
        self._tls = threading.local()  # one out-length cell per thread

    def _new_cell(self):
        n = ctypes.c_size_t()
        self._tls.cell = (n, ctypes.byref(n))
        return self._tls.cell

    def set(self, key, value):
        k = key.encode() if isinstance(key, str) else bytes(key)
        v = bytes(value)
        if self._set(k, len(k), v, len(v)) != 0:
            raise ValueError("gc_set failed")

    def get(self, key):
        k = key.encode() if key.__class__ is str else key
        try:
            n, ref = self._tls.cell
        except AttributeError:
            n, ref = self._new_cell()
        p = self._get(k, len(k), ref)
        if not p:
            return None
        try:
            return _string_at(p, n.value)
        finally:
            self._free(p)


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _main(argv):
    import json
    import time

    c = GCShared(argv[1] if len(argv) > 1 else None, max_bytes=256 << 20)
    out = {}
    for name, size in (("16", 16), ("10k", 10 << 10)):
        keys = ["%s-key-%08d" % (name, i) for i in range(1000)]
        for k in keys:
            c.set(k, bytes((i * 31 + len(k)) % 251 for i in range(size)))
            assert len(c.get(k)) == size
        runs = []
        for _ in range(7):
            t0 = time.perf_counter()
            for _ in range(100):
                for k in keys:
                    c.get(k)
            runs.append((time.perf_counter() - t0) / (100 * len(keys)) * 1e9)
        out["py_get_%s_ns" % name] = round(sorted(runs)[len(runs) // 2], 1)
        out["py_get_%s_ns_best" % name] = round(min(runs), 1)
    assert c.get("never-set") is None
    c.set("empty", b"")
    assert c.get("empty") == b""

    # Leak check: 200k gets of a 10 KiB value; RSS must stay flat.
    k = "10k-key-00000001"
    for _ in range(20000):
        c.get(k)
    before = _rss_bytes()
    for _ in range(200000):
        c.get(k)
    after = _rss_bytes()
    out["leak_check_gets"] = 200000
    out["leak_check_rss_before"] = before
    out["leak_check_rss_after"] = after
    out["leak_check_growth_bytes"] = after - before
    out["leak_check_ok"] = after - before < 4 << 20  # 200k x 10 KiB would be 2 GB
    print(json.dumps(out))
    return 0 if out["leak_check_ok"] else 1


if __name__ == "__main__":
    import sys
    sys.exit(_main(sys.argv))
