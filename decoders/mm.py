"""``mm-<pid>.img``: a process's VMAs, executable, argument and environment
ranges and auxiliary vector."""

from __future__ import annotations

import os

from .errors import EntryDecodeError, StrPath
from .flags import MapFlags, Prot, VmaStatus
from .image import Source, open_image
from .records import Mm, Vma


class _Flags(dict):
    """value → flag set of one ``IntFlag`` type, made on first use (one per read)."""

    def __init__(self, kind: type) -> None:
        super().__init__()
        self.kind = kind

    def __missing__(self, value):
        made = self[value] = self.kind(value)
        return made


def read_mm(path: StrPath) -> Mm:
    """Return the :class:`Mm` of the mm image at ``path``."""
    with open_image(path) as image:
        entries = list(image.iter_messages())
    if not entries:
        raise EntryDecodeError(path, "mm_entry", "the image has no entry", 8, 0)
    index, offset, msg = entries[0]
    source = Source(os.fspath(path), offset, index)
    # a process has few distinct prot/flags/status values: make each flag set once
    prots, flags, statuses = _Flags(Prot), _Flags(MapFlags), _Flags(VmaStatus)
    vmas = tuple(
        Vma(v.start, v.end, v.pgoff, v.shmid, prots[v.prot], flags[v.flags],
            statuses[v.status], v.fd, source)
        for v in msg.vmas
    )
    return Mm(
        exe_file_id=msg.exe_file_id,
        arg_start=msg.mm_arg_start,
        arg_end=msg.mm_arg_end,
        env_start=msg.mm_env_start,
        env_end=msg.mm_env_end,
        start_brk=msg.mm_start_brk,
        brk=msg.mm_brk,
        start_stack=msg.mm_start_stack,
        auxv=tuple(msg.mm_saved_auxv),
        vmas=vmas,
        source=source,
        raw=None,
    )
