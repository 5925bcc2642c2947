"""``pstree.img``: the process tree, one entry per process."""

from __future__ import annotations

from .errors import StrPath
from .image import Source, open_image
from .records import PstreeEntry


def read_pstree(path: StrPath) -> list[PstreeEntry]:
    """Return the :class:`PstreeEntry` list of the pstree image at ``path``."""
    with open_image(path) as image:
        return [
            PstreeEntry(msg.pid, msg.ppid, msg.pgid, msg.sid, tuple(msg.threads),
                        Source(image.path, offset, index), msg)
            for index, offset, msg in image.iter_messages()
        ]
