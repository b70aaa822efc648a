"""Every public name has a docstring: what docs/build.sh (pdoc) renders."""

from __future__ import annotations

import ast
import inspect
import warnings
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Set, Tuple

import pytest

import groupcache
from groupcache import _memoize, cache, pool, serializers

MODULES: List[ModuleType] = [groupcache, cache, pool, serializers, _memoize]


def _variable_docs() -> Dict[Tuple[str, str], str]:
    """{(class name or "", variable name): docstring} for every module of
    the package: a string literal right after an assignment, as pdoc reads
    them."""
    docs: Dict[Tuple[str, str], str] = {}
    pkg = Path(groupcache.__file__).parent
    for path in sorted(pkg.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef)):
                continue
            scope = node.name if isinstance(node, ast.ClassDef) else ""
            body = node.body
            for a, b in zip(body, body[1:]):
                if not (
                    isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)
                ):
                    continue
                targets = a.targets if isinstance(a, ast.Assign) else [a.target] if isinstance(a, ast.AnnAssign) else []
                for t in targets:
                    if isinstance(t, ast.Name):
                        docs[(scope, t.id)] = b.value.value
    return docs


def _class_attributes(cls: type) -> Set[str]:
    """Public names annotated in the class body (dataclass and NamedTuple
    fields, class attributes)."""
    return {n for n in cls.__dict__.get("__annotations__", {}) if not n.startswith("_")}


def _missing() -> List[str]:
    var_docs = _variable_docs()
    missing: List[str] = []
    seen: Set[int] = set()
    for module in MODULES:
        if not (module.__doc__ or "").strip():
            missing.append(module.__name__)
        for name in module.__all__:
            obj = getattr(module, name)
            where = "%s.%s" % (module.__name__, name)
            if inspect.ismodule(obj):
                if not (obj.__doc__ or "").strip():
                    missing.append(where)
            elif inspect.isclass(obj) or inspect.isfunction(obj) or callable(obj) and hasattr(obj, "__wrapped__"):
                if id(obj) in seen:
                    continue
                seen.add(id(obj))
                if not (obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__):
                    missing.append(where)
                if inspect.isclass(obj):
                    fields = _class_attributes(obj)
                    for attr in sorted(fields):
                        if not var_docs.get((obj.__name__, attr)):
                            missing.append("%s.%s" % (where, attr))
                    for attr, member in vars(obj).items():
                        if attr.startswith("_") or attr in fields:
                            continue
                        doc = member.fget.__doc__ if isinstance(member, property) else getattr(member, "__doc__", None)
                        if isinstance(member, (staticmethod, classmethod)):
                            doc = member.__func__.__doc__
                        if not doc:
                            missing.append("%s.%s" % (where, attr))
            elif not var_docs.get(("", name)):
                missing.append(where)
    return missing


def test_every_public_name_has_a_docstring() -> None:
    assert _missing() == []


def test_the_checker_finds_a_missing_docstring(monkeypatch: pytest.MonkeyPatch) -> None:
    def undocumented() -> None:
        pass

    monkeypatch.setattr(groupcache, "undocumented", undocumented, raising=False)
    monkeypatch.setattr(groupcache, "__all__", groupcache.__all__ + ["undocumented"])
    assert _missing() == ["groupcache.undocumented"]


def test_pdoc_renders_the_package(tmp_path: Path) -> None:
    """What docs/build.sh does (pdoc is in the tests' requirements)."""
    import pdoc
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc("groupcache", output_directory=tmp_path)
    page = (tmp_path / "groupcache.html").read_text()
    for name in ("Cache.get", "Pool.owner", "memoize", "CacheInfo.currsize", "sync_log_level"):
        assert 'id="%s"' % name in page
    assert (tmp_path / "groupcache" / "serializers.html").is_file()
    assert [str(w.message) for w in caught if "GROUPCACHE_LIB" not in str(w.message)] == []
