"""The demo of the Go c-shared article, on our library: load the shared
library with plain ctypes (no package) and call say_hi().

    cargo build --release && python3 examples/say_hi.py
    GROUPCACHE_LIB=/path/to/libgroupcache.so python3 examples/say_hi.py
"""

import ctypes
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
path = os.environ.get("GROUPCACHE_LIB") or os.path.join(here, "..", "target", "release", "libgroupcache.so")

lib = ctypes.CDLL(path)
lib.say_hi.argtypes = []
lib.say_hi.restype = None
lib.cache_version.argtypes = []
lib.cache_version.restype = ctypes.c_char_p

sys.stdout.flush()  # the library writes to file descriptor 1 itself
lib.say_hi()
print("library version", lib.cache_version().decode())
