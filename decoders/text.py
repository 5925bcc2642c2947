"""Text from images: names that are not valid UTF-8 become readable, escaped text.

Linux names are bytes: a ``comm`` set with ``prctl(PR_SET_NAME)``, a file
path, a socket name can hold any byte.  CRIU stores them in protobuf
``string`` fields unchecked, and protobuf (upb) hands such a field back as
``bytes`` instead of ``str``.  Every string crit-plus lifts from an image goes
through :func:`image_text`, so the rest of the code only ever sees ``str``.

The escaping (docs/robustness.md): each byte that is not part of valid UTF-8
becomes the four characters ``\\xHH`` (Python's ``backslashreplace``), the
same form crit-plus uses for unix socket names.  Valid UTF-8 is kept as it is.
"""

from __future__ import annotations


def undecodable_escaped(data: bytes | bytearray | memoryview) -> str:
    """``data`` (bytes) as text, each byte that is not valid UTF-8 as ``\\xHH``."""
    return bytes(data).decode("utf-8", "backslashreplace")


def image_text(value: object) -> str | None:
    """The value of a protobuf ``string`` field as ``str`` (None stays None)."""
    if value is None or value.__class__ is str:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return undecodable_escaped(value)
    return str(value)


def field_text(value: object) -> str:
    """A protobuf ``string`` field that is always there (never None) as ``str``."""
    return image_text(value) or ""
