"""Where the library is found, versions, types, examples, pip install."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest
from conftest import INSTALLED

import groupcache


def run(
    args: list, cwd: Optional[Path] = None, env: Optional[Dict[str, str]] = None, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.pop("GROUPCACHE_LIB", None)
    full_env.update(env or {})
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


PRINT_PATH = "import groupcache; print(groupcache.library_path)"


def test_library_search_order(root: Path, tmp_path: Path) -> None:
    lib = Path(groupcache.library_path)
    pkg = root / "python_ctypes"
    # 1. $GROUPCACHE_LIB wins; a wrong one is an error, not a fallback
    copy = tmp_path / "elsewhere" / "libgroupcache.so"
    copy.parent.mkdir()
    shutil.copy(lib, copy)
    r = run([sys.executable, "-c", PRINT_PATH], env={"PYTHONPATH": str(pkg), "GROUPCACHE_LIB": str(copy)})
    assert r.stdout.strip() == str(copy), r.stderr
    wrong = str(tmp_path / "nope.so")
    r = run([sys.executable, "-c", PRINT_PATH], env={"PYTHONPATH": str(pkg), "GROUPCACHE_LIB": wrong})
    assert r.returncode != 0 and "GROUPCACHE_LIB" in r.stderr and "ImportError" in r.stderr
    # 2. the package's own folder, 3. target/release/ of the checkout
    fake_checkout = tmp_path / "checkout"
    shutil.copytree(pkg / "groupcache", fake_checkout / "python_ctypes" / "groupcache")
    (fake_checkout / "Cargo.toml").write_text("[package]\n")
    r = run([sys.executable, "-c", PRINT_PATH], env={"PYTHONPATH": str(fake_checkout / "python_ctypes")})
    assert r.returncode != 0 and "cargo build --release" in r.stderr
    release = fake_checkout / "target" / "release"
    release.mkdir(parents=True)
    shutil.copy(lib, release / "libgroupcache.so")
    r = run([sys.executable, "-c", PRINT_PATH], env={"PYTHONPATH": str(fake_checkout / "python_ctypes")})
    assert r.stdout.strip() == str(release / "libgroupcache.so"), r.stderr
    inside = fake_checkout / "python_ctypes" / "groupcache" / "libgroupcache.so"
    shutil.copy(lib, inside)
    r = run([sys.executable, "-c", PRINT_PATH], env={"PYTHONPATH": str(fake_checkout / "python_ctypes")})
    assert r.stdout.strip() == str(inside), r.stderr


def test_versions_agree(root: Path) -> None:
    cargo = (root / "Cargo.toml").read_text()
    m = re.search(r'^version = "([^"]+)"', cargo, re.M)
    assert m is not None
    assert groupcache.__version__ == m.group(1) == groupcache.library_version()


def test_examples(root: Path) -> None:
    r = run([sys.executable, str(root / "examples" / "say_hi.py")], env={"GROUPCACHE_LIB": groupcache.library_path})
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert "groupcache" in first
    assert second == "library version %s" % groupcache.__version__
    # The package under test: the checkout's, or the installed one.
    env = {} if INSTALLED else {"PYTHONPATH": str(root / "python_ctypes"), "GROUPCACHE_LIB": groupcache.library_path}
    r = run([sys.executable, str(root / "examples" / "loader.py")], env=env)
    assert r.returncode == 0, r.stderr
    assert "3 loads" in r.stdout and "user 9: no such user" in r.stdout


@pytest.mark.pip_install
def test_pip_install_builds_the_library_into_the_package(root: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    r = run([sys.executable, "-m", "venv", str(venv)])
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    r = run([str(py), "-m", "pip", "install", "--quiet", str(root / "python_ctypes")], cwd=tmp_path, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    code = PRINT_PATH + "; c = groupcache.Cache('x', loader=lambda k: b'ok'); print(c.get('k'))"
    r = run([str(py), "-c", code], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    path, value = r.stdout.splitlines()
    assert path.startswith(str(venv)) and "/site-packages/groupcache/libgroupcache" in path
    assert value == "b'ok'"


@pytest.mark.installed
def test_the_installed_package_is_tested() -> None:
    """Under wheel.sh: the package and its library come from the venv's
    site-packages, not from the checkout."""
    pkg = Path(groupcache.__file__).resolve().parent
    assert pkg.parent.name == "site-packages" and Path(sys.prefix).resolve() in pkg.parents
    lib = Path(groupcache.library_path).resolve()
    assert lib.parent == pkg and lib.name.startswith("libgroupcache")
    assert "GROUPCACHE_LIB" not in os.environ
