"""docs/ is the contract: when the code grows, the pages must say so.

- docs/c-abi.md names every function, status and constant of
  include/groupcache.h;
- docs/operations.md and the README's options tables name every option
  setter of the header, every ``GROUPCACHE_*`` variable the library reads
  and every keyword option of ``Cache`` and ``Pool``;
- docs/operations.md names every metric ``GET /metrics`` serves and every
  counter of ``Stats``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import List, Set

import groupcache

ROOT = Path(__file__).resolve().parents[2]
HEADER = (ROOT / "include" / "groupcache.h").read_text()
C_ABI = (ROOT / "docs" / "c-abi.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
README = (ROOT / "README.md").read_text()


def _code(text: str) -> Set[str]:
    """Every code span of a Markdown text, and each word inside one."""
    spans = set(re.findall(r"`([^`\n]+)`", text))
    return spans | {w for s in spans for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", s)}


def header_functions() -> List[str]:
    names = re.findall(r"^[a-z][^;(]*?\b(cache_\w+|say_hi)\(", HEADER, re.M)
    assert len(names) > 30 and "cache_get" in names
    return names


def header_statuses() -> List[str]:
    names = re.findall(r"^\s*(CACHE_[A-Z_]+) = \d+", HEADER, re.M)
    assert "CACHE_OK" in names and "CACHE_PANIC" in names
    return names


def header_constants() -> List[str]:
    return re.findall(r"^#define ((?:CACHE|GROUPCACHE)_[A-Z_]+) ", HEADER, re.M)


def env_variables() -> Set[str]:
    found: Set[str] = set()
    for path in (ROOT / "src").rglob("*.rs"):
        found |= set(re.findall(r'"(GROUPCACHE_[A-Z0-9_]+)"', path.read_text()))
    assert "GROUPCACHE_LOAD_TIMEOUT_MS" in found and "GROUPCACHE_SECRET" in found
    return found


def test_c_abi_names_every_function_status_and_constant() -> None:
    code = _code(C_ABI)
    missing = [n for n in header_functions() + header_statuses() + header_constants() if n not in code]
    # The version macros are named together ("GROUPCACHE_VERSION_MAJOR, _MINOR...").
    missing = [n for n in missing if not (n.startswith("GROUPCACHE_VERSION_") and "GROUPCACHE_VERSION_MAJOR" in code)]
    assert missing == []


def test_every_status_is_in_the_status_table() -> None:
    rows = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\| (\d+) \| `(CACHE_[A-Z_]+)` \|", C_ABI, re.M)}
    values = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s*(CACHE_[A-Z_]+) = (\d+)", HEADER, re.M)}
    assert rows == values


def test_every_option_is_documented_in_both_tables() -> None:
    setters = re.findall(r"\bcache_(?:pool_)?options_set_(\w+)\(", HEADER)
    assert "load_timeout_ms" in setters and "secret" in setters
    for name, text in (("docs/operations.md", OPERATIONS), ("README.md", README)):
        code = _code(text)
        assert [s for s in setters if s not in code] == [], name
        assert sorted(v for v in env_variables() if v not in code) == [], name


def test_every_python_option_is_documented() -> None:
    def keywords(cls: type) -> List[str]:
        return [
            p.name
            for p in inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc]
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]

    options = keywords(groupcache.Cache) + keywords(groupcache.Pool)
    assert "load_timeout" in options and "secret" in options
    for name, text in (("docs/operations.md", OPERATIONS), ("README.md", README)):
        missing = [o for o in options if not re.search(r"`%s=" % re.escape(o), text)]
        assert missing == [], name


def test_every_metric_and_counter_is_documented() -> None:
    metrics = set(re.findall(r'"(groupcache_[a-z_]+)"', (ROOT / "src" / "peers" / "metrics.rs").read_text()))
    assert "groupcache_gets_total" in metrics and "groupcache_cache_bytes" in metrics
    code = _code(OPERATIONS)
    assert sorted(m for m in metrics if m not in code) == []
    counters = [f.name for f in dataclasses.fields(groupcache.Stats)]
    assert [c for c in counters if c not in code] == []
