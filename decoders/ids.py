"""``ids-<pid>.img`` (the keys to shared objects and namespaces) and
``fs-<pid>.img`` (cwd and root)."""

from __future__ import annotations

from typing import Any

from .errors import EntryDecodeError, StrPath
from .image import Source, open_image
from .records import Fs, Ids

NAMESPACES = ("pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time")


def ids_from_message(msg: Any, source: Source) -> Ids:
    """An :class:`Ids` from a ``task_kobj_ids_entry`` (also used by inventory)."""
    namespaces = tuple(
        (name, getattr(msg, f"{name}_ns_id"))
        for name in NAMESPACES
        if f"{name}_ns_id" in msg.DESCRIPTOR.fields_by_name and msg.HasField(f"{name}_ns_id")
    )
    return Ids(msg.vm_id, msg.files_id, msg.fs_id, msg.sighand_id, namespaces, source)


def _single(path, type_name):
    with open_image(path) as image:
        for index, offset, msg in image.iter_messages():
            return msg, Source(image.path, offset, index)
    raise EntryDecodeError(path, type_name, "the image has no entry", 8, 0)


def read_ids(path: StrPath) -> Ids:
    """Return the :class:`Ids` of the ids image at ``path``."""
    msg, source = _single(path, "task_kobj_ids_entry")
    return ids_from_message(msg, source)


def read_fs(path: StrPath) -> Fs:
    """Return the :class:`Fs` of the fs image at ``path``."""
    msg, source = _single(path, "fs_entry")
    return Fs(msg.cwd_id, msg.root_id, msg.umask if msg.HasField("umask") else None, source)
