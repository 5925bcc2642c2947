"""The mounts of each mount namespace (``mountpoints-<mnt ns id>.img``), as typed records.

One ``mnt_entry`` per mount, as CRIU read it from ``/proc/PID/mountinfo``
(``criu/mount.c``): its id and its parent's, the file system (``fstype``: CRIU's
enum, or ``fsname`` for the ones it mounts by name), the superblock (``root_dev``),
the root of the mount inside that file system, the mount point, the source, the
file system's options (``options``), the per-mount flags (``flags``: ``MS_RDONLY``...,
``MS_SHARED``/``MS_SLAVE``) and the superblock's (``sb_flags``), the peer groups
(``shared_id``, ``master_id``), and for an external mount the key the restore must
map (``--external mnt[KEY]:PATH``: ``ext_key``, or ``root`` in dumps where
``ext_mount`` is set).  Mounts of one superblock (same ``root_dev`` and file system)
are bind mounts of one another.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from decoders.text import field_text
from decoders.errors import MissingImageError
from decoders.fields import optional
from decoders.image import read_messages_until_damage

from .findings import WARNING, Finding, error_finding, named

if TYPE_CHECKING:
    from .graph import Checkpoint

#: CRIU's ``fstype`` enum (images/mnt.proto) → the kernel's name of the file system
#: (0 UNSUPPORTED: one CRIU does not mount itself, the root; 16 AUTO: named by ``fsname``).
FSTYPES = {
    1: "proc", 2: "sysfs", 3: "devtmpfs", 4: "binfmt_misc", 5: "tmpfs", 6: "devpts",
    7: "simfs", 8: "pstore", 9: "securityfs", 10: "fusectl", 11: "debugfs", 12: "cgroup",
    13: "aufs", 14: "mqueue", 15: "fuse", 17: "overlay", 18: "autofs", 19: "tracefs",
    23: "cgroup2",
}
#: Per-mount flags (``MS_*``, include/uapi/linux/mount.h) as mountinfo names them.
MOUNT_FLAGS = ((0x1, "ro"), (0x2, "nosuid"), (0x4, "nodev"), (0x8, "noexec"),
               (0x400, "noatime"), (0x800, "nodiratime"), (0x200000, "relatime"))
SB_FLAGS = ((0x1, "ro"), (0x10, "sync"), (0x40, "mand"), (0x80, "dirsync"),
            (0x2000000, "lazytime"))
MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 1 << 17, 1 << 18, 1 << 19, 1 << 20
#: Most mounts read from one namespace's image (a host with 100,000 mounts is broken).
MAX_MOUNTS = 1 << 17
#: Most bind mounts of one superblock listed for a mount.
MAX_BINDS = 32


def _names(value: int, table) -> tuple[str, ...]:
    return tuple(name for bit, name in table if value & bit)


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount of a mount namespace (see the module's text for each fact)."""

    mnt_id: int
    parent_mnt_id: int
    mountpoint: str
    root: str
    source: str
    #: the file system's kernel name: ``fsname`` when the image keeps one, else CRIU's
    #: ``fstype`` by name; None for UNSUPPORTED (CRIU does not mount it) or an unknown code
    fstype: str | None
    fstype_code: int
    options: str
    flags: int
    sb_flags: int | None
    root_dev: int
    shared_id: int | None
    master_id: int | None
    external: bool
    ext_key: str | None
    deleted: bool
    where: str  # image and entry

    @property
    def fstype_label(self) -> str:
        """:attr:`fstype`, or ``unsupported`` (CRIU's code 0) / ``unknown(N)``."""
        if self.fstype:
            return self.fstype
        return "unsupported" if self.fstype_code == 0 else f"unknown({self.fstype_code})"

    @property
    def device(self) -> str:
        """``major:minor`` of the superblock (the kernel's dev_t: 12-bit major, 20 minor)."""
        return f"{self.root_dev >> 20}:{self.root_dev & 0xFFFFF}"

    @property
    def mount_options(self) -> tuple[str, ...]:
        """The per-mount options as mountinfo's 6th field: ``rw``/``ro``, ``nosuid``..."""
        names = _names(self.flags, MOUNT_FLAGS)
        return names if "ro" in names else ("rw", *names)

    @property
    def propagation(self) -> tuple[str, ...]:
        """Mountinfo's optional fields: ``shared:N``, ``master:N``, ``unbindable``."""
        found = []
        if self.shared_id:
            found.append(f"shared:{self.shared_id}")
        if self.master_id:
            found.append(f"master:{self.master_id}")
        if self.flags & MS_UNBINDABLE:
            found.append("unbindable")
        return tuple(found)


@dataclass(frozen=True, slots=True)
class MountNamespace:
    """The mounts of one mount namespace (image order), with the tree they form."""

    ns_id: int
    mounts: tuple[Mount, ...]
    #: why the image ends early (``mountpoints-ID.img`` damaged: :attr:`mounts` are
    #: the entries before the damage), or None
    damage: str | None = None

    def tree(self) -> list[tuple[int, Mount]]:
        """``(depth, Mount)`` depth-first from each mount whose parent is not in the
        namespace (its root), children in image order; a parent cycle is cut."""
        ids = {mount.mnt_id for mount in self.mounts}
        children: dict[int, list[Mount]] = {}
        roots = []
        for mount in self.mounts:
            if mount.parent_mnt_id in ids and mount.parent_mnt_id != mount.mnt_id:
                children.setdefault(mount.parent_mnt_id, []).append(mount)
            else:
                roots.append(mount)
        out: list[tuple[int, Mount]] = []
        seen: set[int] = set()
        stack = [(0, mount) for mount in reversed(roots)]
        while stack:
            depth, mount = stack.pop()
            if mount.mnt_id in seen:
                continue
            seen.add(mount.mnt_id)
            out.append((depth, mount))
            stack.extend((depth + 1, kid) for kid in reversed(children.get(mount.mnt_id, ())))
        out.extend((0, mount) for mount in self.mounts if mount.mnt_id not in seen)
        return out

    def binds(self) -> dict[int, tuple[int, ...]]:
        """mnt_id → the other mounts of its superblock (same device and file system):
        bind mounts of one another; at most :data:`MAX_BINDS` each (in image order)."""
        groups: dict[tuple, list[int]] = {}
        for mount in self.mounts:
            groups.setdefault((mount.root_dev, mount.fstype), []).append(mount.mnt_id)
        found = {}
        for mount in self.mounts:
            group = groups[(mount.root_dev, mount.fstype)]
            others = (mnt_id for mnt_id in group if mnt_id != mount.mnt_id)
            found[mount.mnt_id] = tuple(itertools.islice(others, MAX_BINDS))
        return found


def _mount(msg, where: str) -> Mount:
    fstype = field_text(optional(msg, "fsname", "")) or FSTYPES.get(msg.fstype)
    ext_key = optional(msg, "ext_key")
    ext_key = field_text(ext_key) if ext_key is not None else None
    ext_mount = bool(optional(msg, "ext_mount"))
    if ext_mount and ext_key is None:  # older dumps kept the key in root
        ext_key = field_text(msg.root)
    return Mount(msg.mnt_id, msg.parent_mnt_id, field_text(msg.mountpoint),
                 field_text(msg.root), field_text(msg.source), fstype, msg.fstype,
                 field_text(msg.options), msg.flags, optional(msg, "sb_flags"), msg.root_dev,
                 optional(msg, "shared_id") or None, optional(msg, "master_id") or None,
                 ext_mount or ext_key is not None, ext_key, bool(optional(msg, "deleted")),
                 where)


def read_mount_namespace(checkpoint: Checkpoint,
                         ns_id: int) -> tuple[MountNamespace | None, tuple[Finding, ...]]:
    """The :class:`MountNamespace` of ``mountpoints-<ns_id>.img``: None when the image is
    missing; when it is damaged, the mounts before the damage, its ``damage`` and a
    finding."""
    name = f"mountpoints-{ns_id}.img"
    messages, error = checkpoint.decoded(name)
    if isinstance(error, MissingImageError):
        return None, ()
    if error is not None:  # read again entry by entry, keeping those before the damage
        messages, error = read_messages_until_damage(os.path.join(checkpoint.directory, name))
    findings = [] if error is None else [error_finding(error)]
    if len(messages) > MAX_MOUNTS:
        findings.append(Finding(WARNING, "many-mounts",
                                f"{len(messages)} mounts; the first {MAX_MOUNTS} are shown",
                                name, named(id=ns_id)))
    mounts = tuple(_mount(msg, f"{name}: entry {index}")
                   for index, msg in enumerate(messages[:MAX_MOUNTS]))
    return MountNamespace(ns_id, mounts, str(error) if error is not None else None), \
        tuple(findings)
