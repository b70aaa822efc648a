"""Every relative link in the repository's Markdown files resolves: the file
(or folder) exists in the checkout and is not git-ignored (a generated file
would be missing from a fresh clone), and a ``#fragment`` into a Markdown
file names one of its headings, as GitHub spells heading anchors.

Links are read from the Markdown itself: inline links and images
``[text](target "title")``, ``[text](<tar get>)``, reference definitions
``[ref]: target``, and ``href``/``src`` attributes of inline HTML; code
blocks (fenced or indented) and code spans are not links. Absolute URLs
(``https:``, ``mailto:`` ...) are left alone: this test never goes to the
network.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_REF_DEF = re.compile(r"^ {0,3}\[([^\]^][^\]]*)\]:[ \t]*(<[^>]*>|\S+)")
_HTML_ATTR = re.compile(r"""<[a-zA-Z][^>]*?\b(?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_HTML_ID = re.compile(r"""<[a-zA-Z][^>]*?\b(?:id|name)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_LIST_ITEM = re.compile(r"^ {0,3}([-*+]|\d{1,9}[.)])[ \t]")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files(root: Path) -> List[Path]:
    """The repository's Markdown files: tracked ones, and new ones not yet
    added but not ignored either (so the test sees a file before its
    commit)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "*.md"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    files = sorted({root / p for p in out.decode("utf-8").split("\0") if p})
    return [f for f in files if f.is_file()]  # a tracked file deleted in the work tree


def _prose_lines(text: str) -> Iterator[Tuple[int, str]]:
    """(line number, line) outside fenced and indented code blocks. An
    indented line after a blank one is code, unless it continues a list
    item (then it is the item's next paragraph)."""
    fence: Optional[str] = None
    prev_blank = True
    in_code = False
    in_list = False
    for n, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if fence is not None:
            rest = line.strip()[len(m.group(1)) :] if m else "x"
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not rest.strip():
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        blank = not line.strip()
        indented = line.startswith(("    ", "\t"))
        if indented and not blank and not in_list and (prev_blank or in_code):
            in_code = True
            continue
        if not blank:
            in_code = False
            if _LIST_ITEM.match(line):
                in_list = True
            elif not indented and prev_blank:
                in_list = False
        prev_blank = blank
        yield n, line


def _strip_code_spans(line: str) -> str:
    """The line with each code span replaced by spaces (same columns)."""
    out = []
    i = 0
    while i < len(line):
        if line[i] == "`":
            j = i
            while j < len(line) and line[j] == "`":
                j += 1
            ticks = line[i:j]
            end = line.find(ticks, j)
            while end != -1 and end + len(ticks) < len(line) and line[end + len(ticks)] == "`":
                end = line.find(ticks, end + len(ticks) + 1)
            if end == -1:
                out.append(ticks)
                i = j
                continue
            out.append(" " * (end + len(ticks) - i))
            i = end + len(ticks)
        else:
            out.append(line[i])
            i += 1
    return "".join(out)


def _inline_targets(line: str) -> Iterator[str]:
    """Targets of ``[text](target)`` and ``![alt](target)`` in one line
    (code spans already blanked). Nested brackets in the text are allowed,
    as in ``[![badge](img)](link)``."""
    i = 0
    while True:
        i = line.find("](", i)
        if i == -1:
            return
        j = i + 2
        while j < len(line) and line[j] in " \t":
            j += 1
        if j < len(line) and line[j] == "<":
            end = line.find(">", j)
            if end == -1:
                i = j
                continue
            yield line[j + 1 : end]
            i = end
            continue
        depth = 0
        k = j
        while k < len(line):
            c = line[k]
            if c == "\\":
                k += 2
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    break
                depth -= 1
            elif c in " \t" and depth == 0:
                break  # a title follows
            k += 1
        yield line[j:k]
        i = k


def links(text: str) -> List[Tuple[int, str]]:
    """(line number, target) of every link in a Markdown text."""
    found: List[Tuple[int, str]] = []
    for n, line in _prose_lines(text):
        m = _REF_DEF.match(line)
        if m:
            target = m.group(2)
            found.append((n, target[1:-1] if target.startswith("<") else target))
            continue
        prose = _strip_code_spans(line)
        for target in _inline_targets(prose):
            found.append((n, target))
        for m in _HTML_ATTR.finditer(prose):
            found.append((n, m.group(1) if m.group(1) is not None else m.group(2)))
    return [(n, t.strip()) for n, t in found if t.strip()]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: Markdown marks dropped (links
    keep their text, code spans their content), lower case, punctuation
    removed (letters, digits, ``-`` and ``_`` stay, in any script), each
    space a ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links, images
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("`", "")
    text = re.sub(r"(\*\*|__|\*|~~)", "", text)  # emphasis marks (not a lone _)
    out = []
    for c in text.strip().lower():
        if c == " ":
            out.append("-")
        elif c in "-_" or unicodedata.category(c)[0] in "LNM":
            out.append(c)
    return "".join(out)


def anchors(text: str) -> Set[str]:
    """Every anchor a Markdown text defines: its headings' slugs, numbered
    ``-1``, ``-2``... when repeated, as GitHub does, and HTML ids/names."""
    seen: Dict[str, int] = {}
    out: Set[str] = set()
    prev: Optional[str] = None
    for _, line in _prose_lines(text):
        m = _HEADING.match(line)
        title: Optional[str] = m.group(2) if m else None
        if title is None and prev is not None and prev.strip() and _SETEXT.match(line):
            title = prev.strip()
        if title is not None:
            s = slug(title)
            k = seen.get(s, 0)
            seen[s] = k + 1
            out.add(s if k == 0 else "%s-%d" % (s, k))
        for h in _HTML_ID.finditer(line):
            out.add(h.group(1) if h.group(1) is not None else h.group(2))
        prev = None if m else line
    return out


def _ignored(root: Path, paths: List[Path]) -> Set[Path]:
    """Those of ``paths`` that git ignores."""
    if not paths:
        return set()
    r = subprocess.run(
        ["git", "check-ignore", "--no-index", "-z", "--stdin"],
        cwd=root,
        input="\0".join(str(p.relative_to(root)) for p in paths).encode("utf-8") + b"\0",
        capture_output=True,
    )
    if r.returncode not in (0, 1):  # 1: none is ignored
        raise RuntimeError("git check-ignore failed: %s" % r.stderr.decode("utf-8", "replace"))
    return {root / p for p in r.stdout.decode("utf-8").split("\0") if p}


def broken_links(root: Path, files: List[Path]) -> List[str]:
    """Every relative link of ``files`` that does not resolve, as
    ``file:line: target (why)``."""
    from urllib.parse import unquote

    problems: List[Tuple[str, int, str]] = []  # (file, line, message)
    checks: List[Tuple[Tuple[str, int, str], Path, str]] = []  # (where, path, fragment)
    anchor_cache: Dict[Path, Set[str]] = {}
    root = root.resolve()
    for md in files:
        rel = md.relative_to(root)
        for n, target in links(md.read_text(encoding="utf-8")):
            if _SCHEME.match(target) or target.startswith("//"):
                continue  # absolute: not checked here
            where = (str(rel), n, target)
            path_part, _, fragment = target.partition("#")
            path_part = unquote(path_part.split("?", 1)[0])
            if not path_part:
                dest = md
            elif path_part.startswith("/"):
                dest = root / path_part.lstrip("/")
            else:
                dest = md.parent / path_part
            try:
                dest = dest.resolve()
                dest.relative_to(root)
            except ValueError:
                problems.append(where + ("outside the repository",))
                continue
            checks.append((where, dest, unquote(fragment)))
    existing = [d for _, d, _ in checks if d.exists()]
    ignored = _ignored(root, sorted(set(existing)))
    for where, dest, fragment in checks:
        if not dest.exists():
            problems.append(where + ("no such file",))
        elif dest in ignored:
            problems.append(where + ("git-ignored: not in a fresh clone",))
        elif fragment and dest.suffix == ".md" and dest.is_file():
            if dest not in anchor_cache:
                anchor_cache[dest] = anchors(dest.read_text(encoding="utf-8"))
            if fragment not in anchor_cache[dest]:
                problems.append(where + ("no heading with anchor #%s" % fragment,))
    return ["%s:%d: %s (%s)" % p for p in sorted(problems)]


# ---- the repository ------------------------------------------------------------


def test_every_relative_link_in_the_repository_resolves() -> None:
    files = markdown_files(ROOT)
    assert ROOT / "README.md" in files and ROOT / "docs" / "README.md" in files
    assert broken_links(ROOT, files) == []


def test_the_readme_links_the_documentation() -> None:
    targets = {t.partition("#")[0] for _, t in links((ROOT / "README.md").read_text(encoding="utf-8"))}
    for doc in ("docs/README.md", "docs/c-abi.md", "docs/peer-protocol.md", "docs/python.md",
                "docs/operations.md", "docs/performance.md", "BENCHMARKS.md"):  # fmt: skip
        assert doc in targets, doc


# ---- the checker itself ----------------------------------------------------------


def test_slugs_as_github_makes_them() -> None:
    assert slug("Peer authentication") == "peer-authentication"
    assert slug("fork() and prefork servers (gunicorn, uWSGI, multiprocessing)") == (
        "fork-and-prefork-servers-gunicorn-uwsgi-multiprocessing"
    )
    assert slug("`cache_get`: the hit path") == "cache_get-the-hit-path"
    assert slug("Statuses & ownership — the rules") == "statuses--ownership--the-rules"
    assert slug("[The header](include/groupcache.h) in C89") == "the-header-in-c89"
    assert slug("Étape 2: **bold**") == "étape-2-bold"
    text = "# A\n\n## B\n\n```\n# not a heading\n```\n\n## B\n\nSetext\n------\n\n<a id=\"custom\"></a>\n"
    assert anchors(text) == {"a", "b", "b-1", "setext", "custom"}


def test_links_are_found_outside_code_only() -> None:
    text = "\n".join([
        "See [the docs](docs/README.md#top) and ![chart](bench/x.png \"title\").",
        "Not `[code](nope.md)`, and [spaced](<a b.md>).",
        "[![badge](img.svg)](target.md)",
        "",
        "    [indented](code.md)",
        "",
        "```sh",
        "[fenced](code.md)",
        "```",
        "[ref]: ref.md",
        "<img src=\"html.png\"> <a href='page.md#x'>x</a>",
        "- item",
        "    [continued](item.md)",
        "",
        "    [next paragraph of the item](para.md)",
        "",
        "Text.",
        "",
        "    [code again](code.md)",
    ])  # fmt: skip
    assert [t for _, t in links(text)] == [
        "docs/README.md#top", "bench/x.png", "a b.md", "img.svg", "target.md", "ref.md",
        "html.png", "page.md#x", "item.md", "para.md",
    ]  # fmt: skip


def test_the_checker_finds_broken_links(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/generated/\n")
    (tmp_path / "generated").mkdir()
    (tmp_path / "generated" / "page.html").write_text("x")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## Second part\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "README.md").write_text(
        "\n".join([
            "[ok](docs/a.md) [ok anchor](docs/a.md#second-part) [ok dir](src)",
            "[ok self](#readme) [ok abs](https://example.com/x.md) [ok root](/docs/a.md)",
            "[missing](docs/b.md)",
            "[bad anchor](docs/a.md#third-part)",
            "[bad self](#nowhere)",
            "[ignored](generated/page.html)",
            "[outside](../../etc/passwd)",
            "",
            "# README",
        ])  # fmt: skip
    )
    (tmp_path / "docs" / "c.md").write_text("[up](../README.md#readme) [wrong up](../docs.md)\n")
    files = markdown_files(tmp_path)
    assert files == [tmp_path / "README.md", tmp_path / "docs" / "a.md", tmp_path / "docs" / "c.md"]
    problems = broken_links(tmp_path, files)
    assert problems == [
        "README.md:3: docs/b.md (no such file)",
        "README.md:4: docs/a.md#third-part (no heading with anchor #third-part)",
        "README.md:5: #nowhere (no heading with anchor #nowhere)",
        "README.md:6: generated/page.html (git-ignored: not in a fresh clone)",
        "README.md:7: ../../etc/passwd (outside the repository)",
        "docs/c.md:1: ../docs.md (no such file)",
    ]


if __name__ == "__main__":  # pragma: no cover - a quick run without pytest
    bad = broken_links(ROOT, markdown_files(ROOT))
    print("\n".join(bad) or "all links resolve")
    raise SystemExit(1 if bad else 0)
