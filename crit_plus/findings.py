"""Findings: what is wrong or odd in a checkpoint, collected instead of raised.

The graph does not trust the images.  A missing image, an orphan process, a
pagemap entry outside every VMA or an fd whose file is not in ``files.img``
becomes a :class:`Finding` on the object it concerns; ``Checkpoint.findings``
gathers them all.  Only input that makes the checkpoint unreadable as a whole
(no ``inventory.img`` and no ``pstree.img``) raises.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

ERROR = "error"
WARNING = "warning"
INFO = "info"

#: Severities, most serious first.
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem or remark.

    ``severity`` is ``error`` (a restore would fail or data is lost),
    ``warning`` (suspicious, may still restore) or ``info``; ``code`` is a
    short stable identifier (``orphan``, ``missing-image``, ...) for programs;
    ``message`` is one sentence for people; ``where`` names the image file or
    object concerned (``pagemap-42.img``, ``pid 42``); ``params`` are the values
    the message names, for programs (``(("pid", 42), ("fd", 3))``: see :func:`named`).
    """

    severity: str
    code: str
    message: str
    where: str
    params: tuple = field(default=(), compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


#: The names :attr:`Finding.params` use: a pid, a thread id, an fd number, a
#: files.img id, an entry index, a byte offset in the image, an address (hex text).
PARAM_NAMES = ("pid", "tid", "fd", "id", "entry", "offset", "vaddr")


def named(**values: object) -> tuple[tuple[str, object], ...]:
    """:attr:`Finding.params` from keyword values (None values left out)."""
    unknown = set(values) - set(PARAM_NAMES)
    if unknown:
        raise TypeError(f"unknown finding params: {sorted(unknown)}")
    return tuple((name, value) for name, value in values.items() if value is not None)


def error_finding(error: object, code: str = "bad-image", severity: str = ERROR) -> Finding:
    """A :class:`Finding` for a :class:`~decoders.errors.DecodeError` that was caught."""
    path = getattr(error, "path", None)
    entry_index = getattr(error, "entry_index", None)
    offset = getattr(error, "offset", None)
    where = os.path.basename(path) if path else "checkpoint"
    reason = getattr(error, "reason", None) or str(error)
    position = []
    if entry_index is not None:
        position.append(f"entry {entry_index}")
    if offset is not None:
        position.append(f"at offset {offset:#x}")
    message = (" ".join(position) + ": " + reason) if position else reason
    return Finding(severity, code, message, where, named(entry=entry_index, offset=offset))
