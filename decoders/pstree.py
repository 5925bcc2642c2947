"""``pstree.img``: the process tree, one entry per process."""

from __future__ import annotations

from .errors import StrPath
from .image import Source, open_image
from .records import PstreeEntry


def read_pstree(path: StrPath) -> list[PstreeEntry]:
    """Return the :class:`PstreeEntry` list of the pstree image at ``path``.

    The entries keep no raw message (every field is a record field): a pstree.img of a
    million entries is a million records kept while the checkpoint is open."""
    with open_image(path) as image:
        where = image.path
        return [
            PstreeEntry(msg.pid, msg.ppid, msg.pgid, msg.sid, tuple(msg.threads) or (),
                        Source(where, offset, index))
            for index, offset, msg in image.iter_messages()
        ]
