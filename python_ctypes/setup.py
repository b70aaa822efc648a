"""Builds the groupcache package: Python modules plus libgroupcache, the
project's Rust library, compiled with cargo and loaded through ctypes.

The package is pure Python and the library does not link libpython, so one
wheel serves every Python 3 and is tagged ``py3-none-<platform>``; on Linux
the platform is ``manylinux_X_Y_<arch>``, where glibc X.Y is the newest
symbol version the built library asks for (read from its ELF
``.gnu.version_r`` below; ``auditwheel show`` agrees, see
tests/python/wheel.sh).

Commands added to setuptools' (everything else is pyproject.toml):

- ``build_rust``, part of ``build``: ``cargo build --release --lib`` of the
  crate (the checkout's root, or ``rust/`` in an sdist), then the library,
  without debug info, into the package as ``libgroupcache.so``.  In an
  editable install (``pip install -e``) it only runs cargo: the package
  then loads ``target/release/`` of the checkout, so every later
  ``cargo build`` is what it uses, and no copy inside the package can go
  stale (one left by an older install is removed).
- ``sdist`` adds the crate (Cargo.toml, Cargo.lock, build.rs, src/) under
  ``rust/``, so an sdist builds the same wheel wherever Rust is installed.
- ``bdist_wheel`` tags the wheel as above.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from setuptools import Command, Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build import build
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.errors import ExecError, PlatformError

HERE = Path(__file__).resolve().parent

if sys.platform == "darwin":
    LIB_NAME = "libgroupcache.dylib"
elif sys.platform == "win32":
    LIB_NAME = "groupcache.dll"
else:
    LIB_NAME = "libgroupcache.so"

# The crate's files an sdist carries (Cargo.lock: the same dependencies as
# the checkout's build; benches, tests and examples are not needed).
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs", "LICENSE"]
CRATE_DIRS = ["src"]


def crate_dir() -> Path:
    """The Rust crate to build: ``rust/`` inside an sdist, else the
    checkout's root (python_ctypes/..)."""
    for d in (HERE / "rust", HERE.parent):
        if (d / "Cargo.toml").is_file() and (d / "src" / "lib.rs").is_file():
            return d
    raise PlatformError(
        "groupcache: no Rust crate next to %s (expected ../Cargo.toml in a checkout "
        "or rust/Cargo.toml in an sdist)" % HERE
    )


def tell(message: str) -> None:
    """Shows a line to the person running pip. pip captures a build's
    output and shows it only with ``-v`` (or on failure), so the line goes
    to the terminal (/dev/tty) as well, when there is one."""
    print(message, file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        return
    try:
        with open("/dev/tty", "w") as tty:
            tty.write("\n" + message + "\n")
    except OSError:
        pass  # no terminal (CI, a log): stderr above is all there is


class build_rust(Command):
    description = "compile libgroupcache with cargo and put it into the package"
    user_options: List[Tuple[str, Optional[str], str]] = []
    # Set by setuptools' editable_wheel (pip install -e).
    editable_mode = False

    def initialize_options(self) -> None:
        self.build_lib: Optional[str] = None
        self._outputs: List[str] = []

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def run(self) -> None:
        crate = crate_dir()
        cargo = os.environ.get("CARGO", "cargo")
        if shutil.which(cargo) is None:
            raise PlatformError(
                "groupcache: building from source needs Rust's cargo (https://rustup.rs), "
                "which is not on PATH; or install a prebuilt wheel of groupcache"
            )
        target = Path(os.environ.get("CARGO_TARGET_DIR") or crate / "target")
        cmd = [cargo, "build", "--release", "--lib", "--locked",
               "--manifest-path", str(crate / "Cargo.toml"), "--target-dir", str(target)]  # fmt: skip
        tell(
            "groupcache: compiling the Rust library (cargo build --release --lib in %s); "
            "from scratch this takes 1-2 minutes on 2 cores, `pip -v` shows cargo's progress" % crate
        )
        try:
            subprocess.run(cmd, check=True)
        except subprocess.CalledProcessError as e:
            raise ExecError("groupcache: `%s` failed (exit status %d)" % (" ".join(cmd), e.returncode))
        built = target / "release" / LIB_NAME
        if not built.is_file():
            raise ExecError("groupcache: cargo succeeded but %s is missing" % built)
        package = HERE / "groupcache"
        if self.editable_mode and crate == HERE.parent:
            # The package in the checkout finds target/release/ itself; a copy
            # inside it would be found first and go stale.
            for stale in package.glob("*groupcache*" + os.path.splitext(LIB_NAME)[1]):
                tell("groupcache: removing %s (the editable package uses %s)" % (stale, built))
                stale.unlink()
            if target != crate / "target":
                tell("groupcache: the editable package looks for its library in %s, not in "
                     "CARGO_TARGET_DIR=%s: set GROUPCACHE_LIB=%s" % (crate / "target" / "release", target, built))  # fmt: skip
            return
        if self.editable_mode:
            # An unpacked sdist: no checkout's target/ for the package to find.
            dest = package / LIB_NAME
        else:
            assert self.build_lib is not None
            dest = Path(self.build_lib) / "groupcache" / LIB_NAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        strip_debug_info(built, dest)
        self._outputs = [str(dest)]

    def get_outputs(self) -> List[str]:
        return self._outputs

    def get_output_mapping(self) -> Dict[str, str]:
        return {}


def strip_debug_info(src: Path, dest: Path) -> None:
    """Copies the library without its debug info (the symbols stay).
    Without a ``strip`` program it is copied as it is (the release profile
    already builds without debug info)."""
    tmp = dest.with_name(dest.name + ".tmp")
    strip = os.environ.get("STRIP", "strip")
    args = ["-S"] if sys.platform == "darwin" else ["--strip-debug"]
    if sys.platform != "win32" and shutil.which(strip):
        shutil.copyfile(src, tmp)
        r = subprocess.run([strip, *args, str(tmp)], capture_output=True, text=True)
        if r.returncode != 0:
            raise ExecError("groupcache: %s %s failed: %s" % (strip, " ".join(args), r.stderr.strip()))
    else:
        print("groupcache: no %r program; the library is copied with its debug info" % strip, file=sys.stderr)
        shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)


class build_py_fresh(build_py):
    """build_py that starts from an empty build/lib/groupcache, so a module
    deleted from the package does not live on in the next wheel."""

    def run(self) -> None:
        if not self.editable_mode:
            shutil.rmtree(Path(self.build_lib) / "groupcache", ignore_errors=True)
        super().run()


class build_with_rust(build):
    sub_commands = build.sub_commands + [("build_rust", None)]


def glibc_versions(path: Path) -> Set[Tuple[int, ...]]:
    """The ``GLIBC_x.y`` symbol versions an ELF shared library needs (its
    SHT_GNU_verneed section); empty for a library that needs none (musl,
    or not ELF)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        return set()
    wide = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if wide:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
        shdr = end + "IIQQQQIIQQ"
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
        shdr = end + "IIIIIIIIII"
    sections = [struct.unpack_from(shdr, data, shoff + i * shentsize) for i in range(shnum)]
    found: Set[Tuple[int, ...]] = set()
    for _name, sh_type, _flags, _addr, offset, _size, link, count, _align, _entsize in sections:
        if sh_type != 0x6FFFFFFE:  # SHT_GNU_verneed
            continue
        strtab = sections[link][4]
        need = offset
        for _ in range(count):
            _version, aux_count, _file, aux, next_need = struct.unpack_from(end + "HHIII", data, need)
            a = need + aux
            for _ in range(aux_count):
                _hash, _aflags, _other, name, next_aux = struct.unpack_from(end + "IHHII", data, a)
                text = data[strtab + name : data.index(b"\0", strtab + name)].decode("ascii", "replace")
                if text.startswith("GLIBC_"):
                    parts = text[len("GLIBC_") :].split(".")
                    if all(p.isdigit() for p in parts):
                        found.add(tuple(int(p) for p in parts))
                a += next_aux
            if not next_need:
                break
            need += next_need
    return found


class bdist_wheel_py3(bdist_wheel):
    """Tags the wheel ``py3-none-<platform>``: the package has no Python
    extension (ctypes loads the library), so any Python 3 can use it."""

    def get_tag(self) -> Tuple[str, str, str]:
        _impl, _abi, plat = super().get_tag()
        lib = Path(self.bdist_dir) / "groupcache" / LIB_NAME
        if plat.startswith("linux_") and not self.plat_name_supplied and lib.is_file():
            versions = glibc_versions(lib)
            if versions:
                major, minor = max(versions)[:2]
                plat = "manylinux_%d_%d_%s" % (major, minor, plat[len("linux_") :])
        return "py3", "none", plat


class BinaryDistribution(Distribution):
    """A distribution with a platform library: its wheel is not "pure"
    (installed to platlib, tagged with the platform), although it has no
    extension module setuptools would know of."""

    def has_ext_modules(self) -> bool:
        return True


class sdist_with_crate(sdist):
    """Adds the Rust crate the package is built from, under ``rust/``."""

    def make_release_tree(self, base_dir: str, files: List[str]) -> None:
        super().make_release_tree(base_dir, files)
        crate = crate_dir()
        dest = Path(base_dir) / "rust"
        for name in CRATE_FILES:
            if (crate / name).is_file():
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(crate / name, dest / name)
        for d in CRATE_DIRS:
            shutil.copytree(crate / d, dest / d, ignore=shutil.ignore_patterns("*.orig", "*.rej", "*~"))


setup(
    distclass=BinaryDistribution,
    cmdclass={
        "build": build_with_rust,
        "build_py": build_py_fresh,
        "build_rust": build_rust,
        "bdist_wheel": bdist_wheel_py3,
        "sdist": sdist_with_crate,
    },
)
