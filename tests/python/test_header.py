"""The package binds the C header, all of it and nothing else, spelled the
same: every function, status and constant of include/groupcache.h, read
from the header itself (so a function added there fails this test until
the package binds it)."""

from __future__ import annotations

import ast
import ctypes
import importlib
import re
from pathlib import Path
from typing import Dict, List, NamedTuple, Set

import pytest

import groupcache
from groupcache import _errors, _lib

HEADER = Path(__file__).resolve().parents[2] / "include" / "groupcache.h"


class Function(NamedTuple):
    name: str
    returns: str
    params: List[str]


class Header(NamedTuple):
    functions: Dict[str, Function]
    statuses: Dict[str, int]
    defines: Dict[str, int]
    stats_fields: List[str]


def _eval_int(expr: str, known: Dict[str, int]) -> int:
    """An integer #define's value: literals, earlier defines, + - * / ( )."""

    def ev(n: ast.AST) -> int:
        if isinstance(n, ast.Constant) and isinstance(n.value, int):
            return n.value
        if isinstance(n, ast.Name):
            return known[n.id]
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return -ev(n.operand)
        if isinstance(n, ast.BinOp):
            a, b = ev(n.left), ev(n.right)
            if isinstance(n.op, ast.Add):
                return a + b
            if isinstance(n.op, ast.Sub):
                return a - b
            if isinstance(n.op, ast.Mult):
                return a * b
            if isinstance(n.op, ast.FloorDiv):
                return a // b
        raise ValueError("not an integer expression: %s" % ast.dump(n))

    return ev(ast.parse(expr.replace("/", "//"), mode="eval").body)


def parse_header(text: str) -> Header:
    """The declarations of the header as C sees it (no __cplusplus blocks)."""
    code = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    code = re.sub(r"//[^\n]*", " ", code)
    code = re.sub(r"#ifdef __cplusplus\n.*?#endif[^\n]*", " ", code, flags=re.S)
    defines: Dict[str, int] = {}
    for m in re.finditer(r"^\s*#\s*define\s+(\w+)[ \t]+([^\n]+)$", code, re.M):
        defines[m.group(1)] = _eval_int(m.group(2).strip(), defines)
    code = re.sub(r"^\s*#[^\n]*$", " ", code, flags=re.M)

    # Top-level statements: split at ';' outside braces.
    statements: List[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(code):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == ";" and depth == 0:
            statements.append(" ".join(code[start:i].split()))
            start = i + 1
    assert " ".join(code[start:].split()) == "", "text after the last declaration"

    functions: Dict[str, Function] = {}
    statuses: Dict[str, int] = {}
    stats_fields: List[str] = []
    for st in statements:
        if st.startswith("typedef enum cache_status {"):
            body = st[st.index("{") + 1 : st.rindex("}")]
            for item in body.split(","):
                name, value = (p.strip() for p in item.split("="))
                statuses[name] = int(value)
        elif st.startswith("typedef struct cache_stats {"):
            body = st[st.index("{") + 1 : st.rindex("}")]
            for field in body.split(";"):
                if field.strip():
                    ty, name = field.split()
                    assert ty == "uint64_t", field
                    stats_fields.append(name)
        elif st.startswith("typedef "):
            continue
        else:
            m = re.fullmatch(r"(.+?)\s*\b(\w+)\((.*)\)", st)
            assert m, "not a function declaration: %r" % st
            params = [] if m.group(3).strip() == "void" else [p.strip() for p in m.group(3).split(",")]
            functions[m.group(2)] = Function(m.group(2), m.group(1).strip(), params)
    return Header(functions, statuses, defines, stats_fields)


@pytest.fixture(scope="module")
def header() -> Header:
    return parse_header(HEADER.read_text())


def test_the_parser_reads_the_whole_header(header: Header) -> None:
    """Guards the parser itself: what it finds matches a plain count of the
    header's text, so a declaration it cannot read fails here."""
    text = HEADER.read_text()
    assert len(header.functions) >= 40
    assert header.functions["cache_get"].params == [
        "struct cache *c",
        "const uint8_t *key",
        "size_t key_len",
        "struct cache_value **out",
    ]
    assert header.functions["cache_last_error"].params == []
    assert header.functions["cache_value_free"].returns == "void"
    assert header.statuses["CACHE_OK"] == 0 and len(header.statuses) >= 11
    assert header.defines["CACHE_MAX_KEY_LEN"] == 8192
    assert header.stats_fields[0] == "gets"
    # Every function's name followed by "(" at the start of a declaration.
    declared = set(re.findall(r"^[a-z][\w ]*?\**\b(\w+)\(", text, re.M)) - {"main"}
    assert declared == set(header.functions)
    assert set(re.findall(r"^#define (\w+) ", text, re.M)) == set(header.defines)


def _foreign(value: object) -> bool:
    """A function of libgroupcache as ctypes binds it (not a Python
    callback, which has no __name__)."""
    return isinstance(value, (_lib._cdll._FuncPtr, _lib._pydll._FuncPtr))


def test_every_function_is_bound_with_its_name_and_arity(header: Header) -> None:
    library = ctypes.CDLL(_lib.library_path)
    problems: List[str] = []
    for name, fn in sorted(header.functions.items()):
        bound = getattr(_lib, name, None)
        if bound is None:
            problems.append("%s: not bound in groupcache._lib" % name)
            continue
        if not _foreign(bound) or bound.__name__ != name:
            problems.append("%s: _lib.%s is %r, not the C function %s" % (name, name, bound, name))
            continue
        here = ctypes.cast(bound, ctypes.c_void_p).value
        there = ctypes.cast(getattr(library, name), ctypes.c_void_p).value
        if here != there:
            problems.append("%s: bound to another library's symbol" % name)
        if bound.argtypes is not None and len(bound.argtypes) != len(fn.params):
            problems.append(
                "%s: %d argtypes, the header has %d parameters" % (name, len(bound.argtypes), len(fn.params))
            )
        if (fn.returns == "void") != (bound.restype is None):
            problems.append("%s: returns %s, restype %r" % (name, fn.returns, bound.restype))
    assert not problems, "\n".join(problems)


def _package_modules() -> List[object]:
    """The package's Python modules (not the library, which an installed
    package keeps beside them under an extension module's name)."""
    pkg = Path(groupcache.__file__).parent
    return [groupcache] + [
        importlib.import_module("groupcache." + p.stem) for p in sorted(pkg.glob("*.py")) if p.stem != "__init__"
    ]


def test_nothing_is_bound_that_the_header_lacks(header: Header) -> None:
    bound: Set[str] = set()
    for module in _package_modules():
        for value in vars(module).values():
            if _foreign(value):
                bound.add(value.__name__)
    # Also what the sources name without keeping it in a module attribute.
    for path in Path(groupcache.__file__).parent.glob("*.py"):
        src = path.read_text()
        bound.update(re.findall(r'_(?:cdll|pydll)\.(\w+)', src))
        bound.update(re.findall(r'_(?:cdll|pydll)\[\s*"(\w+)"\s*\]', src))
        bound.update(re.findall(r'_bind\(\s*"(\w+)"', src))
        if path.name != "_lib.py":
            assert not re.search(r"\b(CDLL|PyDLL)\(", src), "%s opens a library: bind in _lib.py" % path.name
    bound -= {"_FuncPtr"}
    assert bound - set(header.functions) == set()
    assert set(header.functions) <= bound


def test_statuses_are_the_header_s(header: Header) -> None:
    ours = {k: v for k, v in vars(_errors).items() if k.startswith("CACHE_") and isinstance(v, int)}
    assert ours == header.statuses
    assert _errors._STATUS_NAMES == {v: k for k, v in header.statuses.items()}
    for name, value in header.statuses.items():
        if value == header.statuses["CACHE_OK"]:
            continue
        err = _errors.error_for_status(value, "m")
        assert isinstance(err, groupcache.GroupcacheError) and err.status == value, name


def test_constants_are_the_header_s(header: Header) -> None:
    ours = {
        k: v
        for k, v in vars(_lib).items()
        if re.fullmatch(r"(CACHE|GROUPCACHE)_[A-Z0-9_]+", k) and isinstance(v, int) and k not in header.statuses
    }
    assert ours == header.defines


def test_the_stats_struct_is_the_header_s(header: Header) -> None:
    fields = [(name, ty) for name, ty in _lib.CacheStats._fields_]
    assert fields == [(name, ctypes.c_uint64) for name in header.stats_fields]
    assert [f.name for f in groupcache.Stats.__dataclass_fields__.values()] == header.stats_fields


def test_the_library_is_the_header_s_version() -> None:
    assert _lib.cache_version_number() == _lib.GROUPCACHE_VERSION_NUMBER
    assert _lib.cache_version().decode() == "%d.%d.%d" % (
        _lib.GROUPCACHE_VERSION_MAJOR,
        _lib.GROUPCACHE_VERSION_MINOR,
        _lib.GROUPCACHE_VERSION_PATCH,
    )


def test_cache_get_into_binding(name: str) -> None:
    """The one binding the package does not call itself."""
    with groupcache.Cache(name) as c:
        c.set("k", b"value")
        n = ctypes.c_size_t()
        small = ctypes.create_string_buffer(2)
        st = _lib.cache_get_into(c._handle, b"k", 1, small, len(small), ctypes.byref(n))
        assert (st, n.value) == (_errors.CACHE_BUFFER_TOO_SMALL, 5)
        buf = ctypes.create_string_buffer(16)
        st = _lib.cache_get_into(c._handle, b"k", 1, buf, len(buf), ctypes.byref(n))
        assert (st, buf.raw[: n.value]) == (_errors.CACHE_OK, b"value")
