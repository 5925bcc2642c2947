"""Rows in, text out: tables (tabulate), JSON, key/value blocks.

Commands build plain rows (dicts with machine values) and hand them here; this
module alone decides how they look.  Text from images (paths, comm, socket
names) goes through :func:`safe_text` so control characters cannot garble a
terminal; JSON keeps machine values and stays valid UTF-8.
"""

from __future__ import annotations

import json
import os

from decoders.lazy import LazyPattern

#: Control characters (C0, DEL, C1), line and paragraph separators, bidirectional
#: overrides (they reorder what a terminal shows), and the lone surrogates that
#: stand for undecodable bytes (text read from memory with ``surrogateescape``).
_UNSAFE = LazyPattern(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                      r"\udc80-\udcff]")


#: Colours of finding severities in tables (when colour is on).
SEVERITY_COLORS = {"error": "red", "warning": "yellow", "info": "cyan"}

def _escape(match):
    char = match.group()
    if char >= "\udc80":
        return f"\\x{ord(char) - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii")


def safe_text(value):
    """``value`` as text with control characters escaped (``\\n``, ``\\x1b``) and
    bytes that were not UTF-8 shown as ``\\xHH`` (docs/robustness.md)."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape, text)


def use_color(stream):
    """True if ``stream`` is a terminal and ``NO_COLOR`` is not set."""
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


#: Characters JSON may carry raw but a terminal would act on (DEL, C1 controls,
#: separators, bidi overrides) or cannot encode (lone surrogates): written as \uXXXX.
_JSON_UNSAFE = LazyPattern(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


#: The version of each command's ``--format json`` document whose top level is an object
#: (docs/json.md; a hyphen joins a subcommand: ``host-compare``).  :func:`stamped` alone
#: writes the ``"schema"`` key from it; a version goes up when a key is removed or renamed,
#: or its meaning or type changes (a new key is no bump).
JSON_SCHEMAS = {
    "summarize": 1, "size": 1, "validate": 1, "diff": 1, "explain": 1, "version": 1,
    "ns": 2, "mounts": 2, "net": 2, "host": 1, "host-compare": 1, "mem-read": 1,
    "mem-dump": 1, "report": 1,
    "envelope": 1,  # each document of --format jsonl (and the array of --format json)
}


def schema_id(command):
    """``crit-plus/COMMAND/N``: the ``"schema"`` of ``command``'s JSON (:data:`JSON_SCHEMAS`)."""
    return f"crit-plus/{command}/{JSON_SCHEMAS[command]}"


def stamped(command, data):
    """``data`` (a dict) with ``"schema": "crit-plus/COMMAND/N"`` as its first key: the one
    way a command's JSON document gets its schema id (docs/json.md)."""
    return {"schema": schema_id(command), **data}


def write_json(data, out, indent=2):
    """Write ``data`` as JSON followed by a newline.

    Text stays readable UTF-8; characters a terminal would act on are escaped
    as ``\\uXXXX`` (they can only occur inside strings, where that escape means
    the same character), so the output is safe to show and valid UTF-8.
    """
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    out.write(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))
    out.write("\n")


def write_table(rows, columns, out):
    """Write ``rows`` (dicts) as a table with ``columns`` ((key, header), ...)."""
    body = [[_cell(row.get(key)) for key, _header in columns] for row in rows]
    headers = [header for _key, header in columns]
    text = _simple_table(body, headers)
    out.write(_tabulate(body, headers) if text is None else text)
    out.write("\n")


#: The colour codes of :class:`Styled` cells (:func:`colored`): no width on a terminal.
_SGR = LazyPattern(r"\x1b\[[0-9;]*m")


def _simple_table(body, headers):
    """The text :func:`_tabulate` gives, made here when every header and cell is one line
    of printable ASCII (the colour codes of a :class:`Styled` cell aside); None otherwise,
    for tabulate to lay out (wide characters).  The rules are tabulate's "simple" format
    with the options :func:`_tabulate` passes: each column as wide as its widest cell and
    at least its header plus 2, cells left-aligned (numbers are not parsed) and joined by
    two spaces, a line of dashes under the headers, trailing spaces cut.  Skipping
    tabulate's per-cell type detection makes summarize's table of 300 processes ten times
    cheaper; tests/test_render.py holds the two to the same text."""
    widths = []
    for header in headers:
        if not (header.isascii() and header.isprintable()):
            return None
        widths.append(len(header) + 2)
    shown = []  # per row: (cell, its width on a terminal)
    for cells in body:
        row = []
        for index, cell in enumerate(cells):
            visible = _SGR.sub("", cell) if isinstance(cell, Styled) else cell
            if not (visible.isascii() and visible.isprintable()):
                return None
            width = len(visible)
            if width > widths[index]:
                widths[index] = width
            row.append((cell, width))
        shown.append(row)
    lines = ["  ".join(header.ljust(width) for header, width in zip(headers, widths)).rstrip(),
             "  ".join("-" * width for width in widths)]
    for row in shown:
        lines.append("  ".join(cell + " " * (width - seen)
                               for (cell, seen), width in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _tabulate(body, headers):
    """tabulate's simple format, leading spaces kept (tree prefixes are indented).
    tabulate (with ``html``, ``textwrap``, ``wcwidth``) is imported here: JSON output
    does not load it."""
    from tabulate import tabulate

    options = {"headers": headers, "tablefmt": "simple", "disable_numparse": True}
    try:
        return tabulate(body, preserve_whitespace=True, **options)
    except TypeError:  # tabulate before 0.10 reads a module switch instead
        import tabulate as module

        saved, module.PRESERVE_WHITESPACE = module.PRESERVE_WHITESPACE, True
        try:
            return tabulate(body, **options)
        finally:
            module.PRESERVE_WHITESPACE = saved


def write_fields(pairs, out):
    """Write ``(label, value)`` pairs as an aligned block."""
    width = max((len(label) for label, _ in pairs), default=0)
    for label, value in pairs:
        out.write(f"{label.ljust(width)}  {_cell(value)}\n")


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, Styled):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    return safe_text(value)


# -- trees, colour, JSON values and hex dumps (the explorers and summarize) ---------------

_TREE_UTF8 = ("├─ ", "└─ ", "│  ", "   ")
_TREE_ASCII = ("|- ", "`- ", "|  ", "   ")

_COLORS = {"red": "31", "yellow": "33", "green": "32", "cyan": "36", "dim": "2", "bold": "1"}


def tree_prefixes(depths, ascii_only=False):
    """Box-drawing prefixes for rows listed depth-first with these ``depths``."""
    tee, elbow, pipe, blank = _TREE_ASCII if ascii_only else _TREE_UTF8
    depths = list(depths)
    seen = []  # seen[k]: a later row at depth k before any shallower row
    prefixes = [""] * len(depths)
    for i in range(len(depths) - 1, -1, -1):
        depth = max(0, depths[i])
        if len(seen) <= depth:
            seen.extend([False] * (depth + 1 - len(seen)))
        if depth:
            prefixes[i] = "".join(pipe if seen[k] else blank for k in range(1, depth)) + \
                (tee if seen[depth] else elbow)
        seen[depth] = True
        for k in range(depth + 1, len(seen)):
            seen[k] = False
    return prefixes


def _ascii_only(out):
    encoding = getattr(out, "encoding", None) or "utf-8"
    try:
        "├─│└".encode(encoding)
    except (LookupError, UnicodeEncodeError):
        return True
    return False


def tree_continuations(depths, ascii_only=False):
    """What goes before the second and later lines of each row's label (a row made
    taller by a cell folded onto more lines): the lines of :func:`tree_prefixes` carried
    down, 3 columns a level (the row's own, when a sibling follows), then, for a row with
    rows below it, the line going down to them (3 more)."""
    tee, _elbow, pipe, blank = _TREE_ASCII if ascii_only else _TREE_UTF8
    depths = [max(0, depth) for depth in depths]
    prefixes = tree_prefixes(depths, ascii_only)
    carried = []
    for index, (depth, prefix) in enumerate(zip(depths, prefixes)):
        above = prefix[:-3] + (pipe if prefix[-3:] == tee else blank) if depth else ""
        children = index + 1 < len(depths) and depths[index + 1] > depth
        carried.append(above + (pipe if children else ""))
    return carried


def write_tree(rows, columns, out, label, depth="depth"):
    """Write ``rows`` as a table whose ``label`` column is drawn as a tree by ``depth``.

    A label may be a :class:`Styled` text of several lines (escaped already); a row made
    taller by it or by another cell of several lines keeps the tree's lines drawn down
    beside it (:func:`tree_continuations`)."""
    depths = [row.get(depth) or 0 for row in rows]
    ascii_only = _ascii_only(out)
    prefixes = tree_prefixes(depths, ascii_only)
    continuations = None
    drawn = []
    for index, (prefix, row) in enumerate(zip(prefixes, rows)):
        row = dict(row)
        value = row.get(label)
        lines = ["-"] if value is None else \
            (value.split("\n") if isinstance(value, Styled) else [safe_text(value)])
        height = max([len(lines)] + [str(cell).count("\n") + 1
                                     for cell in row.values() if isinstance(cell, str)])
        if height == 1:
            row[label] = prefix + lines[0]
            if isinstance(value, Styled):
                row[label] = Styled(row[label])
        else:
            if continuations is None:
                continuations = tree_continuations(depths, ascii_only)
            lines += [""] * (height - len(lines))
            text = "\n".join([prefix + lines[0]]
                             + [(continuations[index] + line).rstrip() or " "
                                for line in lines[1:]])
            row[label] = Styled(text)
        drawn.append(row)
    write_table(drawn, columns, out)


class Styled(str):
    """Text already escaped and wrapped in colour codes: tables print it as it is
    (tabulate does not count the codes in a column's width)."""


def colored(text, color, enabled):
    """``text`` in ``color`` (red, yellow, green, cyan, dim, bold) when ``enabled``.

    The text is escaped (:func:`safe_text`) before the codes are added, so a
    coloured name from an image cannot smuggle control characters either.
    """
    if not enabled or not color or text is None:
        return text
    return Styled(f"\x1b[{_COLORS[color]}m{safe_text(text)}\x1b[0m")


def jsonable(value):
    """Plain JSON data from dataclasses, enums, tuples, bytes, datetimes.

    Flag sets (``IntFlag``) stay numbers; named values (``IntEnum``) become their
    lower-case name; bytes become hex; text that is not valid Unicode (names
    read with surrogate escapes) gets backslash escapes instead.
    """
    import dataclasses
    import datetime
    import enum

    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, enum.IntFlag):
        return int(value)
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return str(value)


def printable_bytes(data):
    """Bytes as text for people: printable ASCII kept, every other byte ``.``."""
    return bytes(b if 0x20 <= b < 0x7F else 0x2E for b in data).decode("ascii")


def write_hexdump(pieces, out, width=16, squeeze=True):
    """Write ``(address, bytes | marker)`` pieces as ``hexdump -C`` lines.

    A marker (anything with ``length`` and ``reason``) is one line saying which
    bytes are unavailable and why.  With ``squeeze``, runs of identical lines
    are shown as ``*``, as hexdump does.
    """
    pending, at = b"", None
    last, squeezed, end = None, False, None

    def line(address, chunk):
        nonlocal last, squeezed, end
        end = address + len(chunk)
        if squeeze and chunk == last and len(chunk) == width:
            if not squeezed:
                out.write("*\n")
                squeezed = True
            return
        last, squeezed = chunk, False
        cells = [f"{b:02x}" for b in chunk] + ["  "] * (width - len(chunk))
        half = width // 2
        hexes = " ".join(cells[:half]) + "  " + " ".join(cells[half:])
        out.write(f"{address:012x}  {hexes}  |{printable_bytes(chunk)}|\n")

    for address, data in pieces:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            if pending:
                line(at, pending)
                pending = b""
            if squeezed:
                out.write(f"{end:012x}\n")
            last, squeezed = None, False
            out.write(f"{address:012x}  <{data.length} bytes unavailable: "
                      f"{safe_text(data.reason)}>\n")
            continue
        data = bytes(data)
        if pending and at + len(pending) == address:
            data, address = pending + data, at
        elif pending:
            line(at, pending)
        pending = b""
        full = len(data) - len(data) % width
        for offset in range(0, full, width):
            line(address + offset, data[offset:offset + width])
        if full < len(data):
            pending, at = data[full:], address + full
    if pending:
        line(at, pending)
    if squeezed:
        out.write(f"{end:012x}\n")
