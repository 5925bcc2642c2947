"""The root-filesystem changes Podman, CRI-O and containerd save beside a checkpoint.

A container archive holds, beside ``checkpoint/``, the changes of the container's
writable layer since it was created:

- ``rootfs-diff.tar``: every file added or modified, as a tar of their new
  contents (Podman's and CRI-O's ``CRCreateRootFsDiffTar``, containers/common
  ``pkg/crutils/checkpoint_restore_utils.go``; modified directories are left
  out);
- ``deleted.files``: a JSON list of the paths deleted.

Only the headers of ``rootfs-diff.tar`` are read, as the outer archive streams
past (:func:`list_rootfs_tar`): nothing of it is extracted.  The nested tar is
hostile input like the rest: its headers go through the same bounded
:class:`tarfile.TarInfo` as the archive's, at most :data:`MAX_ENTRIES` entries
(and :data:`MAX_CHARS` characters of paths) are kept, the rest counted, a path
longer than :data:`MAX_PATH` is cut, and a
listing that cannot go on says why in ``problem`` (the checkpoint stays readable).

:func:`diff_rootfs` compares two checkpoints' changes, file by file, from the
headers alone (type, size, mode, owner, modification time, link target).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Entries of one rootfs-diff.tar kept (the rest are counted in ``more``).
MAX_ENTRIES = 100_000
#: Characters of a path kept.
MAX_PATH = 4096
#: Characters of paths kept in all (entries past it are counted only).
MAX_CHARS = 16 << 20

_KINDS = {b"0": "file", b"\0": "file", b"7": "file", b"1": "hardlink", b"2": "symlink",
          b"3": "char", b"4": "block", b"5": "dir", b"6": "fifo"}


@dataclass(frozen=True, slots=True)
class RootfsEntry:
    """One member of ``rootfs-diff.tar``: ``path`` as the container sees it
    (``/etc/motd``), ``kind`` (file, dir, symlink, hardlink, char, block, fifo,
    other), ``size`` in bytes, ``mode`` (permission bits), ``uid``/``gid``,
    ``mtime`` (seconds since the epoch), ``link`` (a link's target)."""

    path: str
    kind: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: int
    link: str | None = None

    def facts(self):
        """What :func:`diff_rootfs` compares."""
        return (self.kind, self.size, self.mode, self.uid, self.gid, self.mtime, self.link)


@dataclass(frozen=True, slots=True)
class RootfsChanges:
    """A checkpoint's root-filesystem changes: ``entries`` (added or modified,
    sorted by path, from ``rootfs-diff.tar``'s headers), ``deleted`` (from
    ``deleted.files``), ``tar_size`` (bytes of ``rootfs-diff.tar``; None when the
    archive has none), ``more`` (entries past :data:`MAX_ENTRIES`, counted only),
    ``problem`` (why the listing stopped early, or None)."""

    entries: tuple
    deleted: tuple
    tar_size: int | None
    more: int = 0
    problem: str | None = None

    @property
    def files(self):
        """Entries that are not directories."""
        return sum(1 for entry in self.entries if entry.kind != "dir")

    @property
    def bytes(self):
        """Bytes of the regular files' new contents."""
        return sum(entry.size for entry in self.entries if entry.kind == "file")

    @property
    def empty(self):
        """True when nothing was changed or deleted."""
        return not (self.entries or self.deleted or self.more)


def _path(name):
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    path = "/" + name.strip("/")
    return path if len(path) <= MAX_PATH else path[:MAX_PATH] + "..."


def _entry(info):
    kind = _KINDS.get(info.type, "other")
    link = info.linkname if kind in ("symlink", "hardlink") else None
    return RootfsEntry(_path(info.name), kind, info.size if kind == "file" else 0,
                       info.mode & 0o7777, info.uid, info.gid, int(info.mtime),
                       _path(link) if kind == "hardlink" and link else link)


def list_rootfs_tar(stream, archive, keep=MAX_ENTRIES):
    """``(entries, more, problem)`` of the tar read from ``stream`` (headers only;
    ``archive`` names the outer archive in a problem's text; at most ``keep``
    entries kept, the rest counted in ``more``).  Never raises for bad input: a
    listing cut short says why in ``problem``."""
    import tarfile

    from .tarsafe import bounded_tarinfo
    from .errors import ArchiveError

    entries, more, chars = {}, 0, 0
    try:
        with tarfile.open(fileobj=stream, mode="r|*", tarinfo=bounded_tarinfo(archive)) as tar:
            for info in tar:
                if info.name in ("", ".", "./"):
                    continue
                entry = _entry(info) if len(entries) < keep and chars < MAX_CHARS else None
                if entry is None:
                    more += 1
                    continue
                chars += len(entry.path) + len(entry.link or "")
                entries[entry.path] = entry
    except ArchiveError as error:
        return _sorted(entries), more, f"rootfs-diff.tar: {error.reason}"
    except (tarfile.TarError, EOFError, OSError, ValueError, MemoryError, RecursionError) as error:
        detail = str(error) or type(error).__name__
        return _sorted(entries), more, f"rootfs-diff.tar cannot be read past {len(entries)} " \
                                       f"entries: {detail}"
    return _sorted(entries), more, None


def _sorted(entries):
    return tuple(entries[path] for path in sorted(entries))


def changes_of(listing, deleted_files, tar_size):
    """The :class:`RootfsChanges` of a container: ``listing`` is
    :func:`list_rootfs_tar`'s answer (None without ``rootfs-diff.tar``),
    ``deleted_files`` the parsed ``deleted.files`` (a list of paths, else ignored)."""
    entries, more, problem = listing if listing is not None else ((), 0, None)
    deleted = ()
    if isinstance(deleted_files, list):
        deleted = tuple(sorted({_path(item) for item in deleted_files if isinstance(item, str)}))
    return RootfsChanges(entries, deleted, tar_size, more, problem)


def changes_beside(images_dir, max_metadata=64 << 20):
    """The :class:`RootfsChanges` of an unpacked container archive: ``rootfs-diff.tar``
    and ``deleted.files`` beside its ``checkpoint/`` (``images_dir``); None when
    neither is there.  Read as an archive's are (headers only, links not followed,
    ``deleted.files`` bounded by ``max_metadata`` bytes)."""
    import json
    import os
    from pathlib import Path

    from decoders.errors import DecodeError
    from decoders.framing import open_untrusted

    images_dir = Path(images_dir)
    tar, deleted = images_dir.parent / "rootfs-diff.tar", images_dir.parent / "deleted.files"
    if images_dir.name != "checkpoint" or not (tar.exists() or deleted.exists()):
        return None
    listing, size, paths, problems = None, None, None, []
    if tar.exists():
        try:
            with open(open_untrusted(tar, nofollow=True)[0], "rb") as stream:
                size = os.fstat(stream.fileno()).st_size
                listing = list_rootfs_tar(stream, str(tar))
        except (OSError, DecodeError) as error:
            problems.append(f"{tar.name}: {error}")
    if deleted.exists():
        try:
            with open(open_untrusted(deleted, nofollow=True)[0], "rb") as stream:
                paths = json.loads(stream.read(max_metadata + 1))
        except (OSError, DecodeError, ValueError, RecursionError) as error:
            problems.append(f"{deleted.name}: {error}")
    if problems:
        entries, more, problem = listing or ((), 0, None)
        listing = (entries, more, "; ".join(([problem] if problem else []) + problems))
    return changes_of(listing, paths, size)


@dataclass(frozen=True, slots=True)
class RootfsChange:
    """One path that differs between two checkpoints' root-filesystem changes:
    ``change`` is ``added`` (changed in NEW only), ``removed`` (in OLD only),
    ``changed`` (in both, with other facts), ``deleted`` (deleted in NEW only),
    ``undeleted`` (deleted in OLD only); ``fields`` the facts that differ."""

    path: str
    change: str
    old: RootfsEntry | None
    new: RootfsEntry | None
    fields: tuple = ()


_FIELDS = ("kind", "size", "mode", "uid", "gid", "mtime", "link")


@dataclass(frozen=True)
class RootfsDiff:
    """The rootfs section of ``diff``: ``changes`` sorted by path; ``compared``
    False when a side has no rootfs changes recorded (not a container archive),
    with ``reason``."""

    compared: bool
    changes: tuple = ()
    reason: str | None = None
    old_problem: str | None = None
    new_problem: str | None = None

    @property
    def differs(self):
        """True when a path differs."""
        return bool(self.changes)

    def count(self, change):
        """How many changes of kind ``change``."""
        return sum(1 for item in self.changes if item.change == change)


def diff_rootfs(old, new):
    """The :class:`RootfsDiff` of two :class:`RootfsChanges` (either None: not compared)."""
    if old is None or new is None:
        which = "either side" if old is None and new is None else "OLD" if old is None else "NEW"
        return RootfsDiff(False, reason=f"{which} records no root-filesystem changes (only "
                                        "Podman/CRI-O/containerd archives do)")
    before = {entry.path: entry for entry in old.entries}
    after = {entry.path: entry for entry in new.entries}
    changes = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a is None:
            changes.append(RootfsChange(path, "added", None, b))
        elif b is None:
            changes.append(RootfsChange(path, "removed", a, None))
        elif a.facts() != b.facts():
            fields = tuple(name for name, x, y in zip(_FIELDS, a.facts(), b.facts()) if x != y)
            changes.append(RootfsChange(path, "changed", a, b, fields))
    gone_old, gone_new = set(old.deleted), set(new.deleted)
    changes += [RootfsChange(path, "deleted", None, None) for path in gone_new - gone_old]
    changes += [RootfsChange(path, "undeleted", None, None) for path in gone_old - gone_new]
    changes.sort(key=lambda item: (item.path, item.change))
    return RootfsDiff(True, tuple(changes), None, old.problem, new.problem)


__all__ = ["MAX_ENTRIES", "RootfsChange", "RootfsChanges", "RootfsDiff", "RootfsEntry",
           "changes_beside", "changes_of", "diff_rootfs", "list_rootfs_tar"]
