#!/usr/bin/env python3
"""Charts of the Python benchmark's measured numbers, read back from its
Markdown tables (bench/python/bench.py writes them to bench/out/python.md,
and bench/assemble.py copies them into BENCHMARKS.md):

- ``hits.png``, for the README: groupcache against what a user would pick
  instead (Python's own caches, Redis through redis-py, the Go c-shared
  approach done right, pygroupcache), per hit and per entry in memory;
- ``variants.png``, for BENCHMARKS.md: our own call path against the floor
  of a ctypes call, and its variants (how the lookup is called, glibc's
  trim threshold).

    .venv/bin/python bench/python/chart.py                 # from BENCHMARKS.md
    .venv/bin/python bench/python/chart.py bench/out/python.md

bench/python/bench.py runs this after each run. Needs matplotlib
(bench/python/requirements.txt).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

SIZES = ("16 B", "10 KiB")

COLORS = {
    "ours": "#1f77b4",
    "python": "#2ca02c",
    "redis": "#9467bd",
    "go": "#d62728",
    "floor": "#999999",
    "variant": "#7fb2e5",
}
LEGEND = {
    "ours": "groupcache (this library)",
    "python": "Python in-process caches (one process only)",
    "redis": "Redis, redis-py GET on a local server",
    "go": "Go groupcache through c-shared",
    "floor": "the floor: a ctypes call that does nothing",
    "variant": "variants of our own call path",
}


def _cells(line: str) -> List[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _number(cell: str) -> Optional[float]:
    m = re.fullmatch(r"[+]?([0-9][0-9,]*(?:\.[0-9]+)?)", cell.replace("**", "").strip())
    return float(m.group(1).replace(",", "")) if m else None


def table_after(text: str, heading: str) -> List[List[str]]:
    """The rows (cells) of the first Markdown table after the heading whose
    text starts with ``heading``; the header row and the rule excluded."""
    lines = text.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if line.lstrip("#").strip().startswith(heading) and line.startswith("#")),
        None,
    )
    if start is None:
        raise ValueError("no heading %r" % heading)
    rows: List[List[str]] = []
    in_table = False
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            in_table = True
            rows.append(_cells(line))
        elif in_table or line.startswith("#"):
            break
    if len(rows) < 3:
        raise ValueError("no table after %r" % heading)
    return rows[2:]


def hits(text: str) -> Dict[str, Dict[str, float]]:
    """{row name: {"16 B": ns, "10 KiB": ns}} from "Cost of one hit"."""
    out: Dict[str, Dict[str, float]] = {}
    for cells in table_after(text, "Cost of one hit"):
        a, b = _number(cells[1]), _number(cells[2])
        if a is not None and b is not None:
            out[cells[0]] = {"16 B": a, "10 KiB": b}
    return out


def memory(text: str) -> Dict[str, float]:
    """{row name: RSS bytes per entry} from "Memory per entry"."""
    out: Dict[str, float] = {}
    for cells in table_after(text, "Memory per entry"):
        v = _number(cells[1])
        if v is not None:
            out[cells[0]] = v
    return out


def kind(name: str) -> str:
    """Which bar colour a hit row gets."""
    n = name.strip().lower()
    if n.startswith("ctypes"):
        return "floor"
    if n.startswith("the lookup call") or "trim threshold" in n:
        return "variant"
    if n.startswith("groupcache"):
        return "ours"
    if "redis" in n:
        return "redis"
    if "go c-shared" in n or "go-cshared" in n or "pygroupcache" in n:
        return "go"
    return "python"


def label(name: str) -> str:
    """A hit or memory row's name, as the front-page chart shows it."""
    n = name.strip()
    n = re.sub(r"^groupcache Cache\.", "groupcache ", n)
    n = n.replace("Go c-shared done right (gcshared)", "Go groupcache, c-shared, done right")
    n = re.sub(r"^go-cshared.*", "Go groupcache, c-shared, done right", n)
    n = re.sub(r"^pygroupcache( \(PyPI\))?$", "pygroupcache (PyPI, Go c-shared)", n)
    n = n.replace("redis-py over TCP (loopback)", "Redis: redis-py, TCP loopback")
    n = n.replace("redis-py over a unix socket", "Redis: redis-py, unix socket")
    if n == "redis":
        n = "Redis (the server's RSS)"
    return n


def _bars(  # type: ignore[no-untyped-def]
    ax,
    names: List[str],
    values: List[Optional[float]],
    kinds: List[str],
    title: str,
    xlabel: str,
    log: bool = True,
    invert: bool = True,
) -> None:
    """Horizontal bars, first row on top (``invert``: once per y axis, so
    not again for an axis that shares it)."""
    ys = list(range(len(names)))
    shown = [v if v is not None else 0 for v in values]
    ax.barh(ys, shown, color=[COLORS[k] for k in kinds])
    real = [v for v in values if v]
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(real) / 2, max(real) * 6)
    else:
        ax.set_xlim(0, max(real) * 1.15)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_yticks(ys)
    ax.set_yticklabels(names, fontsize=8.5)
    if invert:
        ax.invert_yaxis()
    for y, v in zip(ys, values):
        ax.text(
            (v or 0) * (1.08 if log else 1) + (0 if log else max(real) * 0.01),
            y,
            "%s" % ("{:,.0f}".format(v) if v is not None else "not measured"),
            va="center",
            fontsize=8,
        )
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", which="major", alpha=0.25)


def front_chart(h: Dict[str, Dict[str, float]], mem: Dict[str, float], path: Path, source: str) -> None:
    """groupcache against the alternatives: hits (16 B and 10 KiB values)
    and memory per entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    order = {"ours": 0, "python": 1, "redis": 2, "go": 3}
    rows = [(n, v) for n, v in h.items() if kind(n) in order]
    # Ours: get, then get_many; the others by their 16 B hit.
    rows.sort(key=lambda r: (order[kind(r[0])], 0 if kind(r[0]) == "ours" else r[1]["16 B"], r[0]))
    mrows = [(n, v) for n, v in mem.items() if kind(n) in order]
    mrows.sort(key=lambda r: (order[kind(r[0])], r[1]))

    fig = plt.figure(figsize=(12.5, 0.33 * (len(rows) + len(mrows)) + 3.4))
    grid = fig.add_gridspec(2, 2, height_ratios=[len(rows) + 1.5, len(mrows) + 1.5], hspace=0.4, wspace=0.08)
    names = [label(n) for n, _ in rows]
    kinds = [kind(n) for n, _ in rows]
    left = fig.add_subplot(grid[0, 0])
    right = fig.add_subplot(grid[0, 1], sharey=left)
    for ax, size in ((left, "16 B"), (right, "10 KiB")):
        title = "one hit, %s value" % size
        _bars(ax, names, [v[size] for _, v in rows], kinds, title, "ns per hit (log scale)", invert=ax is left)
    plt.setp(right.get_yticklabels(), visible=False)
    bottom = fig.add_subplot(grid[1, :])
    _bars(
        bottom,
        [label(n) for n, _ in mrows],
        [v for _, v in mrows],
        [kind(n) for n, _ in mrows],
        "memory per entry: 1,000,000 entries of a 16-byte key and a 100-byte value",
        "bytes of RSS per entry (dotted: the key and value themselves, 116 B)",
        log=False,
    )
    bottom.axvline(116, color="#333333", linestyle=":", linewidth=1.2)
    fig.legend(
        handles=[Patch(color=COLORS[k], label=LEGEND[k]) for k in order],
        loc="lower center",
        ncol=2,
        fontsize=8.5,
        frameon=False,
    )
    fig.suptitle(
        "groupcache from Python against what you would use instead (lower is better)",
        fontsize=12,
    )
    fig.text(0.5, 0.935, "measured by make bench, figures from %s" % source, ha="center", fontsize=8, color="#555555")
    fig.subplots_adjust(left=0.22, right=0.97, top=0.89, bottom=0.1)
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


def variants_chart(h: Dict[str, Dict[str, float]], path: Path, source: str) -> None:
    """Our call path against the ctypes floor, and its variants."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = [(n, v) for n, v in h.items() if kind(n) in ("floor", "ours", "variant")]
    names = [n.strip() for n, _ in rows]
    kinds = [kind(n) for n, _ in rows]
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 0.36 * len(rows) + 2.2), sharey=True)
    for ax, size in zip(axes, SIZES):
        title = "one hit, %s value" % size
        _bars(ax, names, [v[size] for _, v in rows], kinds, title, "ns per hit (log scale)", invert=ax is axes[0])
    plt.setp(axes[1].get_yticklabels(), visible=False)
    fig.legend(
        handles=[Patch(color=COLORS[k], label=LEGEND[k]) for k in ("floor", "ours", "variant")],
        loc="lower center",
        ncol=3,
        fontsize=8.5,
        frameon=False,
    )
    fig.suptitle("groupcache's Python call path against the floor of a ctypes call (%s)" % source, fontsize=11)
    fig.subplots_adjust(left=0.34, right=0.97, top=0.88, bottom=0.17, wspace=0.08)
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


def render(source: Path, out_dir: Path = HERE) -> Tuple[Path, Path]:
    text = source.read_text(encoding="utf-8")
    h = hits(text)
    mem = memory(text)
    try:
        what = str(source.relative_to(ROOT))
    except ValueError:
        what = source.name
    front, variants = out_dir / "hits.png", out_dir / "variants.png"
    front_chart(h, mem, front, what)
    variants_chart(h, variants, what)
    return front, variants


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", nargs="?", type=Path, default=ROOT / "BENCHMARKS.md",
                    help="a Markdown file with the benchmark's tables (default: BENCHMARKS.md)")  # fmt: skip
    ap.add_argument("--out-dir", type=Path, default=HERE)
    args = ap.parse_args()
    for p in render(args.source.resolve(), args.out_dir):
        print(p)


if __name__ == "__main__":
    main()
