"""Packages whose public names load on first use (PEP 562).

``import decoders`` or ``import crit_plus`` then costs nothing: a command pays
only for the modules it touches (``crit-plus --help`` never loads protobuf).
"""

from __future__ import annotations

from collections.abc import Callable
import importlib
import sys
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

    return __getattr__, __dir__
