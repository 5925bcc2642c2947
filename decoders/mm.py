"""``mm-<pid>.img``: a process's VMAs, executable, argument and environment
ranges and auxiliary vector."""

from __future__ import annotations

from .errors import EntryDecodeError
from .flags import MapFlags, Prot, VmaStatus
from .image import Source, open_image
from .records import Mm, Vma


def read_mm(path):
    """Return the :class:`Mm` of the mm image at ``path``."""
    with open_image(path) as image:
        entries = list(image.iter_messages())
    if not entries:
        raise EntryDecodeError(path, "mm_entry", "the image has no entry", 8, 0)
    index, offset, msg = entries[0]
    source = Source(path, offset, index)
    vmas = tuple(
        Vma(v.start, v.end, v.pgoff, v.shmid, Prot(v.prot), MapFlags(v.flags),
            VmaStatus(v.status), v.fd, source)
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
        raw=msg,
    )
