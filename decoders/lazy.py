"""Packages whose public names load on first use (PEP 562).

``import decoders`` or ``import crit_plus`` then costs nothing: a command pays
only for the modules it touches (``crit-plus --help`` never loads protobuf).
"""

from __future__ import annotations

from collections.abc import Callable
import importlib
import sys
import types
from typing import Any


def lazy_exports(package: str,
                 exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return the ``__getattr__`` and ``__dir__`` of ``package`` whose public names,
    ``exports`` (name → submodule), are imported from their submodule when first
    asked for and then kept in the package."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    module = sys.modules[package]
    module.__dict__["_lazy_exports"] = exports
    module.__class__ = _LazyPackage
    return __getattr__, __dir__


class _LazyPackage(types.ModuleType):
    """A package with lazy exports.  Importing a submodule binds it as an attribute of
    its package; where an export has the submodule's name (``crit_plus.sources.resolve``
    is a function of ``sources/resolve.py``), the export keeps the name, as it did when
    the package imported it eagerly."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in self.__dict__["_lazy_exports"] \
                and value.__name__ == f"{self.__name__}.{name}":
            return
        super().__setattr__(name, value)


class LazyPattern:
    """A regular expression compiled the first time it is used, not at import.

    Module-level patterns cost every command that imports their module, used or not
    (``re.compile`` of crit-plus's ~60 patterns was 15 % of ``crit-plus ps``).  Use it
    as the compiled pattern (``LAZY.search(text)``, ``LAZY.pattern``); each attribute is
    fetched from the compiled pattern once, then kept on the instance, so a pattern used
    in a loop costs what a compiled one does.
    """

    def __init__(self, pattern: str | bytes, flags: int = 0) -> None:
        self._source = (pattern, flags)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_source":
            raise AttributeError(name)
        import re  # re caches the compiled pattern: each name compiles it once in all

        pattern: Any = self._source[0]
        value = getattr(re.compile(pattern, self._source[1]), name)
        setattr(self, name, value)
        return value

    def __repr__(self) -> str:
        return f"LazyPattern({self._source[0]!r})"
