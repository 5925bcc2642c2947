"""``fdinfo-<files_id>.img`` (a file table: fd → file id) and ``files.img``
(id → what the file is).

Since CRIU 3.4 one ``files.img`` holds every kind, each entry a ``file_entry``
with ``type``, ``id`` and one kind-specific sub-message.  Older dumps wrote
one image per kind (``reg-files.img``, ``unixsk.img``, ...); :func:`read_files`
reads those too when ``files.img`` is absent.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import StrPath
from .flags import FdType
from .image import Source, open_image
from .records import FdInfo, FileEntry
from .text import image_text, undecodable_escaped

#: ``file_entry`` sub-message field for each fd type.
DETAIL_FIELDS = {
    FdType.REG: "reg", FdType.INETSK: "isk", FdType.NS: "nsf", FdType.PACKETSK: "psk",
    FdType.NETLINKSK: "nlsk", FdType.EVENTFD: "efd", FdType.EVENTPOLL: "epfd",
    FdType.SIGNALFD: "sgfd", FdType.TUNF: "tunf", FdType.TIMERFD: "tfd",
    FdType.INOTIFY: "ify", FdType.FANOTIFY: "ffy", FdType.EXT: "ext", FdType.UNIXSK: "usk",
    FdType.FIFO: "fifo", FdType.PIPE: "pipe", FdType.TTY: "tty", FdType.MEMFD: "memfd",
    FdType.BPFMAP: "bpf", FdType.PIDFD: "pidfd",
}

#: Pre-3.4 per-kind images: file name → fd type.
LEGACY_IMAGES = {
    "reg-files.img": FdType.REG, "inetsk.img": FdType.INETSK, "ns-files.img": FdType.NS,
    "packetsk.img": FdType.PACKETSK, "netlinksk.img": FdType.NETLINKSK,
    "eventfd.img": FdType.EVENTFD, "eventpoll.img": FdType.EVENTPOLL,
    "signalfd.img": FdType.SIGNALFD, "tunfile.img": FdType.TUNF, "timerfd.img": FdType.TIMERFD,
    "inotify.img": FdType.INOTIFY, "fanotify.img": FdType.FANOTIFY, "ext-files.img": FdType.EXT,
    "unixsk.img": FdType.UNIXSK, "fifo.img": FdType.FIFO, "pipes.img": FdType.PIPE,
    "tty.img": FdType.TTY,
}


def read_fdinfo(path: StrPath) -> list[FdInfo]:
    """Return the :class:`FdInfo` list of a file table image."""
    with open_image(path) as image:
        return [
            FdInfo(msg.fd, FdType.of(msg.type), msg.id, msg.flags,
                   Source(image.path, offset, index))
            for index, offset, msg in image.iter_messages()
        ]


def file_name(fd_type: int, detail: Any) -> str | None:
    """What users recognise a file by, from its sub-message, or None."""
    if detail is None:
        return None
    if fd_type == FdType.REG:
        return image_text(detail.name)
    if fd_type == FdType.UNIXSK and detail.name:
        name = bytes(detail.name)
        if name.startswith(b"\0"):
            return "@" + undecodable_escaped(name[1:])
        return undecodable_escaped(name)
    if fd_type == FdType.TTY:
        return f"tty (info {detail.tty_info_id})"
    return None


def read_files(directory: StrPath) -> dict[int, FileEntry]:
    """Return ``{id: FileEntry}`` from ``files.img`` in ``directory`` (or the
    legacy per-kind images when there is no ``files.img``)."""
    path = os.path.join(directory, "files.img")
    if os.path.exists(path):
        return _read_files_img(path)
    files = {}
    for name, fd_type in LEGACY_IMAGES.items():
        legacy = os.path.join(directory, name)
        if not os.path.exists(legacy):
            continue
        with open_image(legacy) as image:
            for index, offset, msg in image.iter_messages():
                files[msg.id] = FileEntry(msg.id, fd_type, file_name(fd_type, msg), msg,
                                          Source(image.path, offset, index))
    return files


def _read_files_img(path):
    files = {}
    with open_image(path) as image:
        for index, offset, msg in image.iter_messages():
            fd_type = FdType.of(msg.type)
            field = DETAIL_FIELDS.get(fd_type)
            detail = None
            if field and field in msg.DESCRIPTOR.fields_by_name and msg.HasField(field):
                detail = getattr(msg, field)
            files[msg.id] = FileEntry(msg.id, fd_type, file_name(fd_type, detail), detail,
                                      Source(image.path, offset, index))
    return files
