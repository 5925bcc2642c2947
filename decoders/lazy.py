"""Packages whose public names load on first use (PEP 562).

``import decoders`` or ``import crit_plus`` then costs nothing: a command pays
only for the modules it touches (``crit-plus --help`` never loads protobuf).
"""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package, exports):
    """Return the ``__getattr__`` and ``__dir__`` of ``package`` whose public names,
    ``exports`` (name → submodule), are imported from their submodule when first
    asked for and then kept in the package."""

    def __getattr__(name):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
