"""The public API of the decoders and of the graph layer carries type hints (mypy checks
them: `make check`): every public function and method of these modules annotates each
parameter and its return."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The modules whose public API is typed (pyproject.toml's strict-ish mypy modules).
TYPED = sorted([*(ROOT / "decoders").glob("*.py"),
                *(ROOT / "crit_plus" / f"{name}.py"
                  for name in ("graph", "memory", "pages", "files", "findings", "opening",
                               "boundary", "resources"))])


def _public_functions(tree):
    """``(qualified name, def node)`` of every public function and method (``__init__``
    included) outside private classes."""
    def visit(body, prefix):
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                yield from visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                private = node.name.startswith("_") and node.name != "__init__"
                if not private:
                    yield f"{prefix}{node.name}", node, bool(prefix)
    yield from visit(tree.body, "")


def _missing(node, is_method):
    args = node.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    if is_method and params and params[0].arg in ("self", "cls"):
        params = params[1:]
    missing = [p.arg for p in params if p.annotation is None]
    missing += [f"*{a.arg}" for a in (args.vararg, args.kwarg) if a and a.annotation is None]
    if node.returns is None:
        missing.append("return")
    return missing


@pytest.mark.parametrize("path", TYPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_public_functions_are_annotated(path):
    tree = ast.parse(path.read_text(), str(path))
    untyped = [f"{name} ({', '.join(missing)})"
               for name, node, is_method in _public_functions(tree)
               if (missing := _missing(node, is_method))]
    assert not untyped, f"{path.relative_to(ROOT)}: no type hints on " + "; ".join(untyped)


def test_the_check_sees_an_unannotated_function():
    tree = ast.parse("def f(a, b: int) -> int: ...\nclass C:\n    def m(self, x): ...\n")
    found = {name: _missing(node, method) for name, node, method in _public_functions(tree)}
    assert found == {"f": ["a"], "C.m": ["x", "return"]}
