"""crit's JSON text, written fast and streamed.

crit writes ``json.dump(image, indent=4 if pretty else None)``.  The text here
is identical, but produced entry by entry (memory bounded by a batch of
entries), and the indented form avoids the standard library's pure-Python
indenting encoder, which is the slowest part of decoding a large image.
"""

from __future__ import annotations

import json
from itertools import islice
from json.encoder import encode_basestring_ascii

BATCH = 1024  # entries serialised per json.dumps call in the compact form


def _scalar(value):
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return int.__repr__(value)
    return json.dumps(value)


def indented(value, level, step="    "):
    """``json.dumps(value, indent=4)`` text for a value nested ``level`` deep."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = "\n" + step * (level + 1)
        items = (inner + encode_basestring_ascii(str(k)) + ": " + indented(v, level + 1, step)
                 for k, v in value.items())
        return "{" + ",".join(items) + "\n" + step * level + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        inner = "\n" + step * (level + 1)
        return "[" + ",".join(inner + indented(v, level + 1, step) for v in value) + \
            "\n" + step * level + "]"
    return _scalar(value)


def write_document(magic, entries, out, pretty):
    """Write ``{"magic": magic, "entries": [...]}`` as crit does, streaming ``entries``."""
    if not pretty:
        out.write('{"magic": %s, "entries": [' % _scalar(magic))
        separator = ""
        entries = iter(entries)
        while True:
            batch = list(islice(entries, BATCH))
            if not batch:
                break
            out.write(separator + json.dumps(batch)[1:-1])
            separator = ", "
        out.write("]}")
        return
    out.write('{\n    "magic": %s,\n    "entries": [' % _scalar(magic))
    first = True
    for entry in entries:
        out.write(("\n" if first else ",\n") + "        " + indented(entry, 2))
        first = False
    out.write(("\n    ]" if not first else "]") + "\n}")
