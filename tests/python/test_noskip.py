"""tests/pytest_noskip.py, the plugin that makes `make test` fail on a
skipped test, on a suite of its own in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SUITE = '''
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("needs something that is missing")

@pytest.mark.xfail(reason="known")
def test_xfails():
    assert False
'''


def run(tmp_path: Path, root: Path, no_skip: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = dict(os.environ, PYTHONPATH=str(root / "tests"))
    env.pop("GROUPCACHE_NO_SKIP", None)
    if no_skip:
        env["GROUPCACHE_NO_SKIP"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-c", os.devnull, "-p", "pytest_noskip", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip


def test_a_skip_fails_under_no_skip(tmp_path: Path, root: Path) -> None:
    r = run(tmp_path, root, no_skip=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 failed, 1 passed, 1 xfailed" in r.stdout, r.stdout
    assert "skipped under GROUPCACHE_NO_SKIP=1" in r.stdout and "needs something that is missing" in r.stdout


def test_a_skip_is_a_skip_otherwise(tmp_path: Path, root: Path) -> None:
    r = run(tmp_path, root, no_skip=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 1 skipped, 1 xfailed" in r.stdout, r.stdout
