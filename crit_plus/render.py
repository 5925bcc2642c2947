"""Rows in, text out: tables (tabulate), JSON, key/value blocks.

Commands build plain rows (dicts with machine values) and hand them here; this
module alone decides how they look.  Text from images (paths, comm, socket
names) goes through :func:`safe_text` so control characters cannot garble a
terminal; JSON keeps machine values and stays valid UTF-8.
"""

from __future__ import annotations

import json
import os
import re

from tabulate import tabulate

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe_text(value):
    """``value`` as text with control characters escaped (``\\n``, ``\\x1b``)."""
    text = value if isinstance(value, str) else str(value)
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def use_color(stream):
    """True if ``stream`` is a terminal and ``NO_COLOR`` is not set."""
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def write_json(data, out, indent=2):
    """Write ``data`` as JSON followed by a newline."""
    json.dump(data, out, indent=indent, ensure_ascii=False)
    out.write("\n")


def write_table(rows, columns, out):
    """Write ``rows`` (dicts) as a table with ``columns`` ((key, header), ...)."""
    body = [[_cell(row.get(key)) for key, _header in columns] for row in rows]
    out.write(tabulate(body, headers=[header for _key, header in columns],
                       tablefmt="simple", disable_numparse=True))
    out.write("\n")


def write_fields(pairs, out):
    """Write ``(label, value)`` pairs as an aligned block."""
    width = max((len(label) for label, _ in pairs), default=0)
    for label, value in pairs:
        out.write(f"{label.ljust(width)}  {_cell(value)}\n")


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return safe_text(value)
