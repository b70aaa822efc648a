"""A pytest plugin (pytest.ini loads it for every suite): with
GROUPCACHE_NO_SKIP=1, which `make test` sets, a test that skips fails
instead, with its skip reason, so that nothing passes by not running.
Tests that need something the make target does not provide are marked and
deselected instead (see pytest.ini's markers), and the target that provides
it selects them."""

from __future__ import annotations

import os
from typing import Any, Generator

import pytest

ACTIVE = os.environ.get("GROUPCACHE_NO_SKIP") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if ACTIVE and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = "skipped under GROUPCACHE_NO_SKIP=1 (make test runs everything): %s" % reason


def pytest_report_header(config: pytest.Config) -> str:
    if ACTIVE:
        return "GROUPCACHE_NO_SKIP=1: a skipped test fails"
    return "GROUPCACHE_NO_SKIP=unset: a skipped test is reported"
