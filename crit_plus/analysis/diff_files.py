"""Open files: fds opened, closed, re-pointed or changed; files, sockets and pipes that
appeared or disappeared in the whole checkpoint.

Two views (see docs/commands/diff.md):

- per paired process, fd by fd number: ``opened`` (NEW only), ``closed`` (OLD
  only), ``re-pointed`` (the number now names another file), ``changed`` (the
  same file, another position, size, flags, socket state, ...);
- per checkpoint, every file held by any fd, by identity: ``appeared``,
  ``disappeared``, ``changed`` (socket state or address, queued pipe bytes,
  file size, deleted).

A file's identity is what stays the same between two dumps of one system:
the path of a regular file or FIFO (a deleted one too), the inode of a pipe or
socket.  Inode numbers are only comparable when the processes were paired by
pid (one pid namespace: the same system dumped twice) and some pipe or socket
inode is common to both (one kernel run); otherwise (another container, a
restore, which makes new pipes and sockets) sockets are known by what they
are (family, type, protocol, addresses or path) and pipes only as pipes.  Anonymous-inode
files (eventfd, epoll, timerfd, signalfd, inotify) have no identity beyond their kind: they
are compared fd by fd only.

The bytes queued in a pipe are the graph's (``Checkpoint.queues.pipe_bytes``, from
``pipes-data.img`` and ``fifo-data.img``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


from ..files import kind_of
from .diff_processes import PID, FieldChange

#: Kinds whose files are followed through the whole checkpoint.
TRACKED = ("file", "fifo", "pipe", "unix", "inet", "netlink", "packet", "memfd", "tty")
_INODE_KINDS = ("pipe", "unix", "inet", "netlink")


@dataclass(frozen=True)
class FileView:
    """A file as one side shows it: ``kind``, ``name`` and the values compared (``state``)."""

    kind: str
    name: str | None
    state: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class FdChange:
    """One fd of a paired process: ``change`` is opened, closed, re-pointed or changed."""

    old_pid: int
    new_pid: int
    fd: int
    change: str
    old: FileView | None
    new: FileView | None
    fields: tuple = ()


@dataclass(frozen=True)
class ObjectChange:
    """A file of the whole checkpoint that appeared, disappeared or changed.

    ``old_holders``/``new_holders`` are ``((pid, fd), ...)``.
    """

    kind: str
    name: str | None
    change: str
    old: FileView | None
    new: FileView | None
    old_holders: tuple
    new_holders: tuple
    fields: tuple = ()


@dataclass(frozen=True)
class FilesDiff:
    """The files section: fd changes of paired processes, and the checkpoint's files."""

    fds: tuple
    objects: tuple
    inodes_compared: bool

    @property
    def differs(self):
        """True when any fd or file changed."""
        return bool(self.fds or self.objects)


# -- identity and state -------------------------------------------------------------------


def _value(value):
    return int(value) if hasattr(value, "__index__") and not isinstance(value, bool) else value


def identity(fd, inodes):
    """The identity of the file behind ``fd`` (a tuple); ``inodes`` says whether inode
    numbers are comparable between the two checkpoints."""
    file = fd.file
    if file is None:
        return ("unresolved", kind_of(fd.type))
    kind, d = file.kind, file.details
    if kind in ("file", "fifo"):
        return (kind, d.get("path") or file.name)
    if kind in _INODE_KINDS and inodes:
        return (kind, d.get("pipe_id") if kind == "pipe" else d.get("ino"))
    if kind == "pipe":
        return ("pipe",)
    if kind == "unix":
        return ("unix", _value(d.get("type")), d.get("path"))
    if kind == "inet":
        return ("inet", _value(d.get("family")), _value(d.get("type")), _value(d.get("proto")),
                d.get("src_addr"), d.get("src_port"), d.get("dst_addr"), d.get("dst_port"))
    if kind == "netlink":
        return ("netlink", d.get("protocol"))
    if kind == "packet":
        return ("packet", _value(d.get("type")), d.get("protocol"))
    if kind == "memfd":
        return ("memfd", d.get("name"))
    if kind == "tty":
        return ("tty", file.name)
    return (kind,)


def _enum_name(value):
    return getattr(value, "name", value)


def file_state(file, queued=None):
    """The values of ``file`` that are compared, by kind (machine values)."""
    d = file.details
    kind = file.kind
    if kind == "file":
        state = {"pos": d.get("pos"), "size": d.get("size"), "flags": d.get("flags"),
                 "mode": d.get("mode"), "deleted": d.get("deleted", False)}
        if d.get("ghost_image"):
            state["ghost"] = True
        return state
    if kind in ("fifo", "pipe"):
        state = {"flags": d.get("flags")}
        if queued is not None:
            state["queued"] = queued.get(d.get("pipe_id"), 0)
        return state
    if kind == "unix":  # its path, not its name: socket:[inode] when it has none
        return {"path": d.get("path"), "state": _enum_name(d.get("state")),
                "type": _enum_name(d.get("type")), "backlog": d.get("backlog"),
                "flags": d.get("flags")}
    if kind == "inet":
        return {"name": file.name, "state": _enum_name(d.get("state")),
                "proto": _enum_name(d.get("proto")), "backlog": d.get("backlog"),
                "flags": d.get("flags")}
    if kind == "netlink":
        return {"state": d.get("state"), "groups": d.get("groups")}
    if kind == "memfd":
        return {"size": d.get("size"), "pos": d.get("pos"), "flags": d.get("flags"),
                "seals": d.get("seals")}
    if kind == "eventfd":
        return {"counter": d.get("counter"), "flags": d.get("flags")}
    if kind == "eventpoll":
        return {"targets": tuple(sorted(t["fd"] for t in d.get("targets", ())))}
    if kind == "signalfd":
        return {"signals": d.get("signals"), "flags": d.get("flags")}
    if kind == "timerfd":
        return {"clockid": d.get("clockid"), "interval": d.get("interval"),
                "flags": d.get("flags")}
    if kind == "inotify":
        return {"watches": tuple(sorted((w.get("path") or "", w.get("mask"))
                                        for w in d.get("watches", ())))}
    if kind == "tty":
        return {"flags": d.get("flags")}
    return {}


#: Values that belong to the file itself (not to one open file description):
#: compared across the whole checkpoint.
_OBJECT_FIELDS = {
    "file": ("size", "deleted", "mode"), "fifo": ("queued",), "pipe": ("queued",),
    "unix": ("path", "state", "backlog"), "inet": ("name", "state", "backlog"),
    "netlink": ("state",), "memfd": ("size", "seals"),
}


def view(fd_or_file, queued=None):
    """The :class:`FileView` of an fd (or a file object)."""
    file = getattr(fd_or_file, "file", fd_or_file)
    if file is None:
        return FileView(kind_of(fd_or_file.type), None, {})
    return FileView(file.kind, file.name, file_state(file, queued))


def _changes(old, new, names=None):
    keys = names if names is not None else sorted(set(old) | set(new))
    return tuple(FieldChange(k, old.get(k), new.get(k)) for k in keys
                 if old.get(k) != new.get(k))


# -- checkpoint-wide helpers ---------------------------------------------------------------


def _inodes(checkpoint):
    found = set()
    for process in checkpoint.processes:
        for fd in process.fds:
            file = fd.file
            if file is not None and file.kind in _INODE_KINDS:
                d = file.details
                found.add((file.kind, d.get("pipe_id") if file.kind == "pipe" else d.get("ino")))
    return found


def inodes_comparable(old, new):
    """True when some pipe or socket inode is in both checkpoints (one kernel run)."""
    return bool(_inodes(old) & _inodes(new))


def _objects(checkpoint, inodes, queued):
    objects = {}
    for process in checkpoint.processes:
        for fd in process.fds:
            file = fd.file
            if file is None or file.kind not in TRACKED:
                continue
            key = identity(fd, inodes)
            entry = objects.get(key)
            if entry is None:
                entry = objects[key] = (view(file, queued), [])
            entry[1].append((process.pid, fd.fd))
    return objects


# -- the section ----------------------------------------------------------------------------


def diff_fds(pair, inodes):
    """The :class:`FdChange` s of one paired process."""
    o, n = pair.old, pair.new
    old_fds = {fd.fd: fd for fd in o.fds}
    new_fds = {fd.fd: fd for fd in n.fds}
    changes = []
    for number in sorted(set(old_fds) | set(new_fds)):
        a, b = old_fds.get(number), new_fds.get(number)
        if a is None:
            changes.append(FdChange(o.pid, n.pid, number, "opened", None, view(b)))
        elif b is None:
            changes.append(FdChange(o.pid, n.pid, number, "closed", view(a), None))
        elif identity(a, inodes) != identity(b, inodes):
            changes.append(FdChange(o.pid, n.pid, number, "re-pointed", view(a), view(b)))
        else:
            va, vb = view(a), view(b)
            fields = _changes(va.state, vb.state)
            if a.cloexec != b.cloexec:
                fields += (FieldChange("cloexec", a.cloexec, b.cloexec),)
            if fields:
                changes.append(FdChange(o.pid, n.pid, number, "changed", va, vb, fields))
    return changes


def diff_files(pairing, old, new):
    """The :class:`FilesDiff` of two checkpoints and their process :class:`Pairing`."""
    inodes = pairing.method == PID and inodes_comparable(old, new)
    fds = []
    for pair in pairing.pairs:
        fds.extend(diff_fds(pair, inodes))
    old_objects = _objects(old, inodes, old.queues.pipe_bytes)
    new_objects = _objects(new, inodes, new.queues.pipe_bytes)
    objects = []
    for key, (new_view, holders) in new_objects.items():
        found = old_objects.get(key)
        if found is None:
            objects.append(ObjectChange(new_view.kind, new_view.name, "appeared", None, new_view,
                                        (), tuple(holders)))
            continue
        old_view, old_holders = found
        fields = _changes(old_view.state, new_view.state, _OBJECT_FIELDS.get(new_view.kind, ()))
        if fields:
            objects.append(ObjectChange(new_view.kind, new_view.name, "changed", old_view,
                                        new_view, tuple(old_holders), tuple(holders), fields))
    for key, (old_view, holders) in old_objects.items():
        if key not in new_objects:
            objects.append(ObjectChange(old_view.kind, old_view.name, "disappeared", old_view,
                                        None, tuple(holders), ()))
    order = {"disappeared": 0, "appeared": 1, "changed": 2}
    objects.sort(key=lambda c: (TRACKED.index(c.kind), order[c.change], c.name or ""))
    return FilesDiff(tuple(fds), tuple(objects), inodes)
