"""Tables: crit_plus.render writes tabulate's "simple" text itself for plain cells; it must be
the very text tabulate gives (tabulate still lays out what the fast path declines)."""

from __future__ import annotations

import pytest

from crit_plus import render
from crit_plus.render import Styled, colored

@pytest.mark.parametrize("body, headers", [
    ([], ["PID", "COMMAND"]),  # headers and dashes only
    ([["1", "  `- sleep"], ["22", "   "]], ["PID", "TREE"]),  # leading spaces kept
    ([["", ""], ["x", ""]], ["A", "B"]),  # empty cells, trailing spaces cut
    ([["True", "False"], ["12345678901", "-1.5e3"]], ["FLAG", "N"]),  # not parsed
    ([[colored("zombie", "red", True), "x"], ["alive", colored("y", "dim", True)]],
     ["STATE", "Z"]),  # colour codes take no width
    ([["a" * 60, "b"]], ["WIDE", "LAST COLUMN HEADER"]),
])
def test_plain_tables_are_tabulate_s_text(body, headers):
    text = render._simple_table(body, headers)
    assert text is not None
    assert text == render._tabulate(body, headers)


@pytest.mark.parametrize("cell", ["日本語", "é", "tab\there", Styled("\x1b[31m名\x1b[0m")])
def test_other_text_is_left_to_tabulate(cell):
    body, headers = [[cell, "x"]], ["NAME", "X"]
    assert render._simple_table(body, headers) is None
    out = []

    class Sink:
        write = out.append

    render.write_table([{"n": cell, "x": "x"}], [("n", "NAME"), ("x", "X")], Sink())
    assert "".join(out) == render._tabulate([[render.safe_text(cell) if not isinstance(
        cell, Styled) else cell, "x"]], headers) + "\n"
