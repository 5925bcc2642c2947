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


class Indenter:
    """``json.dumps(value, indent=4)`` text, fast: the hot path of ``show`` on big images.

    Type checks by identity, the common scalars (int, str) inline, and the text
    of each key and each indent made once per instance (one per document).
    """

    def __init__(self, step="    "):
        self.step = step
        self._keys = {}
        self._pads = {}

    def pad(self, level):
        """A newline and the indent of ``level``."""
        text = self._pads.get(level)
        if text is None:
            text = self._pads[level] = "\n" + self.step * level
        return text

    def text(self, value, level):
        """The indented JSON text of ``value`` nested ``level`` deep."""
        kind = type(value)
        if kind is dict:
            if not value:
                return "{}"
            pad = self.pad(level + 1)
            keys = self._keys
            parts = []
            for key, item in value.items():
                name = keys.get(key)
                if name is None:
                    name = keys[key] = encode_basestring_ascii(str(key)) + ": "
                item_kind = type(item)
                if item_kind is int:
                    parts.append(pad + name + int.__repr__(item))
                elif item_kind is str:
                    parts.append(pad + name + encode_basestring_ascii(item))
                else:
                    parts.append(pad + name + self.text(item, level + 1))
            return "{" + ",".join(parts) + self.pad(level) + "}"
        if isinstance(value, (list, tuple)):
            if not value:
                return "[]"
            pad = self.pad(level + 1)
            return "[" + ",".join(pad + self.text(v, level + 1) for v in value) + \
                self.pad(level) + "]"
        if isinstance(value, dict):
            return self.text(dict(value), level)
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
    text = Indenter().text
    for entry in entries:
        out.write(("\n" if first else ",\n") + "        " + text(entry, 2))
        first = False
    out.write(("\n    ]" if not first else "]") + "\n}")
