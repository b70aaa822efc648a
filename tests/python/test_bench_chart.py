"""The README's chart (bench/python/hits.png) is drawn by
bench/python/chart.py from BENCHMARKS.md's tables: the rows it needs are
there, with numbers, and each is drawn in the right group. (Drawing needs
matplotlib, a benchmark requirement; this reads the tables only.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _chart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_chart", ROOT / "bench" / "python" / "chart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmarks_md_has_what_the_readme_chart_draws() -> None:
    chart = _chart()
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    hits = chart.hits(text)
    kinds = {name: chart.kind(name) for name in hits}
    # The front page: ours against each kind of alternative.
    assert kinds["groupcache Cache.get"] == "ours"
    for name, kind in [
        ("functools.lru_cache", "python"),
        ("cachetools.LRUCache", "python"),
        ("redis-py over TCP (loopback)", "redis"),
        ("Go c-shared done right (gcshared)", "go"),
        ("pygroupcache (PyPI)", "go"),
    ]:
        assert kinds[name] == kind, name
        assert hits[name]["16 B"] > 0 and hits[name]["10 KiB"] > 0
    # Our internal variants go to BENCHMARKS.md's chart, not the README's.
    internal = [n for n, k in kinds.items() if k in ("floor", "variant")]
    assert "ctypes no-op call (CDLL)" in internal
    assert any("glibc trim threshold" in n for n in internal)
    assert not any(n.startswith("groupcache") and "trim" in n for n, k in kinds.items() if k == "ours")
    memory = chart.memory(text)
    assert memory["groupcache"] > 116 and memory["dict"] > 116 and memory["redis"] > 0


def test_the_table_reader_reads_numbers_only() -> None:
    chart = _chart()
    text = "\n".join([
        "### Cost of one hit (ns)", "", "| | 16 B | 10 KiB |", "|---|---:|---:|",
        "| a | 1,234 | 5.5 |", "| b | — | 3 |", "", "### Memory per entry", "",
        "| | B | over |", "|---|---:|---:|", "| a | 169 | +53 |",
    ])  # fmt: skip
    assert chart.hits(text) == {"a": {"16 B": 1234.0, "10 KiB": 5.5}}
    assert chart.memory(text) == {"a": 169.0}
