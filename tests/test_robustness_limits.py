"""docs/robustness.md's limits table names the constants that set each limit: each named
constant exists, and its value is one the row states (a line cut at "64 KiB" while the code
cut at 8 KiB went unseen)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "robustness.md"
UNITS = {"": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def _rows():
    text = DOC.read_text(encoding="utf-8").split("\n## Limits\n", 1)[1]
    text = text.strip().split("\n\n", 1)[0]
    for line in text.splitlines()[2:]:
        _empty, what, limit, where, _end = [cell.strip() for cell in line.split("|")]
        yield what, limit, where


def _constants(where):
    """The int constants a row's "where" names: `mod.NAME`, then bare `NAME`s of that mod."""
    module = None
    for name in re.findall(r"`([\w.]+)`", where):
        if "." in name:
            module_name, _, name = name.rpartition(".")
            module = importlib.import_module(module_name)
        if module is not None and name.isupper():
            yield name, getattr(module, name)


def _quantities(limit):
    return {int(number.replace(",", "")) * UNITS[unit]
            for number, unit in re.findall(r"\b(\d[\d,]*)(?: (KiB|MiB|GiB))?\b", limit)}


def test_the_limits_table_states_the_code_s_values():
    checked = 0
    for what, limit, where in _rows():
        for name, value in _constants(where):
            assert value in _quantities(limit), (what, name, value, limit)
            checked += 1
    assert checked >= 15
