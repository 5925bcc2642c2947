"""Open files of a checkpoint: ``files.img`` entries resolved into what users recognise.

One :class:`FileTable` per checkpoint turns every ``files.img`` entry into a
:class:`FileObject` — a kind (``file``, ``pipe``, ``unix``, ``inet``, ...),
a name (a path, ``pipe:[N]``, ``127.0.0.1:80``, ...) and a ``details`` dict of
machine values — using the images that complete an entry:

- ``remap-fpath.img``: a file id → a remap id; ``GHOST`` means the file was
  deleted and its contents are in ``ghost-file-<remap id in hex>.img``, ``LINKED``
  that it survives as another (link-remap) file;
- ``memfd.img``: the memfd inode by ``inode_id`` (name, size, and the
  ``shmid`` whose ``pagemap-shmem-<shmid>.img`` holds the contents);
- ``tty-info.img``: the tty behind a ``tty_file_entry``
  (both read as records by :mod:`crit_plus.resources`, kept as ``FileTable.memfds`` and
  ``FileTable.ttys``);
- unix sockets are paired across processes by inode (``peer`` is the peer's
  ``ino``); TCP connections whose both ends were dumped are paired by address;
- ``eventpoll-tfd.img`` / ``inotify-wd.img`` of dumps older than CRIU 3.4
  (newer ones keep targets and watches inside the file entry).

Rendering to text (flag names, tables) is not done here: ``details`` holds
numbers, enums (``IntEnum``: both a number and a name) and resolved facts.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import posixpath
import stat
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from decoders.errors import DecodeError, MissingImageError, StrPath
from decoders.fdinfo import read_files
from decoders.flags import FdType, NamedInt
from decoders.framing import open_untrusted
from decoders.image import Source, open_image, read_messages
from decoders.text import image_text, undecodable_escaped

from .findings import ERROR, WARNING, Finding, error_finding, named

if TYPE_CHECKING:
    from .resources import MemfdInode, TtyInfo

#: CRIU's ``USK_EXTERN`` (``unix_sk_entry.uflags``): the socket is outside the checkpoint.
USK_EXTERN = 1
#: ``kind`` of a file, by fd type.
KINDS = {
    FdType.UND: "unknown", FdType.REG: "file", FdType.PIPE: "pipe", FdType.FIFO: "fifo",
    FdType.INETSK: "inet", FdType.UNIXSK: "unix", FdType.EVENTFD: "eventfd",
    FdType.EVENTPOLL: "eventpoll", FdType.INOTIFY: "inotify", FdType.SIGNALFD: "signalfd",
    FdType.PACKETSK: "packet", FdType.TTY: "tty", FdType.FANOTIFY: "fanotify",
    FdType.NETLINKSK: "netlink", FdType.NS: "ns", FdType.TUNF: "tun", FdType.EXT: "ext",
    FdType.TIMERFD: "timerfd", FdType.MEMFD: "memfd", FdType.BPFMAP: "bpfmap",
    FdType.PIDFD: "pidfd", FdType.CTL_TTY: "tty", FdType.AUTOFS_PIPE: "pipe",
}

#: What ``/proc/PID/fd`` shows for anonymous-inode files.
ANON_NAMES = {
    FdType.EVENTFD: "anon_inode:[eventfd]", FdType.EVENTPOLL: "anon_inode:[eventpoll]",
    FdType.SIGNALFD: "anon_inode:[signalfd]", FdType.TIMERFD: "anon_inode:[timerfd]",
    FdType.INOTIFY: "anon_inode:inotify", FdType.FANOTIFY: "anon_inode:[fanotify]",
    FdType.PIDFD: "anon_inode:[pidfd]", FdType.BPFMAP: "anon_inode:bpf-map",
    FdType.TUNF: "/dev/net/tun",
}


def kind_of(fd_type: int) -> str:
    """The ``kind`` word for an fd type (``unknown(N)`` for types newer than this table)."""
    try:
        return KINDS[FdType(fd_type)]
    except (ValueError, KeyError):
        return f"unknown({int(fd_type)})"


class SockFamily(NamedInt):
    """Socket address families CRIU dumps."""

    UNIX = 1
    INET = 2
    INET6 = 10
    NETLINK = 16
    PACKET = 17


class SockType(NamedInt):
    """Socket types."""

    STREAM = 1
    DGRAM = 2
    RAW = 3
    RDM = 4
    SEQPACKET = 5
    PACKET = 10


class SockState(NamedInt):
    """Socket states as the kernel reports them (TCP's names; unix sockets use
    ESTABLISHED, LISTEN and CLOSE for unconnected)."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11


class IpProto(NamedInt):
    """IP protocols."""

    ICMP = 1
    TCP = 6
    UDP = 17
    ICMPV6 = 58
    UDPLITE = 136
    SCTP = 132


class RemapType(NamedInt):
    """``remap_file_path_entry.remap_type``."""

    LINKED = 0
    GHOST = 1
    PROCFS = 2


@dataclass(frozen=True, slots=True)
class FileObject:
    """One open file of the checkpoint (an entry of ``files.img``), resolved.

    ``kind`` is a word (:data:`KINDS`), ``name`` what users recognise (a path,
    ``pipe:[N]``, ``127.0.0.1:80``, ``/memfd:name``...) or None, ``details``
    the kind's facts as machine values (see docs/api.md for the keys).
    """

    id: int
    type: FdType | int
    kind: str
    name: str | None
    details: dict = field(default_factory=dict, compare=False, hash=False)
    entry: object = field(default=None, repr=False, compare=False, hash=False)

    @property
    def source(self) -> Source | None:
        """Where the entry was read (:class:`decoders.Source`), or None."""
        return getattr(self.entry, "source", None)

    @property
    def path(self) -> str | None:
        """The path of a regular file, FIFO or bound unix socket, else None."""
        return self.details.get("path")

    @property
    def deleted(self) -> bool:
        """True when the file was unlinked at dump time (a ghost or link-remapped file)."""
        return bool(self.details.get("deleted"))

    @property
    def external(self) -> bool:
        """True when CRIU dumped the file as external, to be given back at restore: a
        regular file's ``ext``, a unix socket whose ``uflags`` have ``USK_EXTERN``."""
        detail = getattr(self.entry, "detail", None)
        if detail is None:
            return False
        if self.kind == "file":
            return bool(_get(detail, "ext", False))
        if self.kind == "unix":
            return bool(detail.uflags & USK_EXTERN)
        return False

    @property
    def build_id(self) -> tuple[int, ...]:
        """A regular file's GNU build-id as CRIU records it (``reg_file_entry.build_id``,
        32-bit words), or ``()``."""
        detail = getattr(self.entry, "detail", None)
        if self.kind != "file" or detail is None:
            return ()
        return tuple(detail.build_id)


@dataclass(frozen=True, slots=True)
class Fd:
    """One file descriptor of a process: its number and the file behind it.

    ``file`` is None when the fdinfo entry names an id missing from
    ``files.img`` (the checkpoint's findings say so).  ``flags`` are the fd
    flags (``FD_CLOEXEC`` is 1).
    """

    fd: int
    type: FdType | int
    file: FileObject | None
    flags: int
    source: object = field(default=None, repr=False, compare=False)
    #: The ``files.img`` id the fdinfo entry names (kept when ``file`` is None).
    file_id: int | None = None

    @property
    def kind(self) -> str:
        """The file's kind word (from fdinfo's type when the file is unresolved)."""
        return self.file.kind if self.file is not None else kind_of(self.type)

    @property
    def name(self) -> str | None:
        """What users recognise the file by, or None."""
        return self.file.name if self.file is not None else None

    @property
    def cloexec(self) -> bool:
        """True when the fd is closed on exec."""
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class GhostContents:
    """Where a deleted file's contents are inside ``ghost-file-<id>.img``.

    ``extents`` is ``((file_offset, length, image_offset), ...)``; bytes of
    the file in no extent are zero (a chunked ghost file skips holes).
    """

    image: str
    size: int
    mode: int
    extents: tuple


# -- helpers ----------------------------------------------------------------------


def _get(msg, name, default=None):
    """Field ``name`` of ``msg`` if the schema knows it and it is set (strings as
    :func:`~decoders.text.image_text`)."""
    if msg is None or name not in msg.DESCRIPTOR.fields_by_name:
        return default
    fdesc = msg.DESCRIPTOR.fields_by_name[name]
    text = fdesc.type == fdesc.TYPE_STRING
    if fdesc.label == fdesc.LABEL_REPEATED:
        values = getattr(msg, name)
        return tuple(image_text(v) for v in values) if text else tuple(values)
    if not msg.HasField(name):
        return default
    value = getattr(msg, name)
    return image_text(value) if text else value


def ip_text(family: int, words: Iterable[int]) -> str:
    """The text of an address stored as CRIU's ``repeated uint32`` (network bytes in host u32s)."""
    raw = b"".join(struct.pack("<I", w & 0xFFFFFFFF) for w in words)
    try:
        if family == SockFamily.INET6 or len(raw) == 16:
            return str(ipaddress.IPv6Address(raw[:16].ljust(16, b"\0")))
        return str(ipaddress.IPv4Address(raw[:4].ljust(4, b"\0")))
    except ipaddress.AddressValueError:
        return raw.hex()


def endpoint_text(address: str | None, port: int) -> str | None:
    """``addr:port`` (``[addr]:port`` for IPv6)."""
    if address is None:
        return None
    if ":" in address:
        return f"[{address}]:{port}"
    return f"{address}:{port}"


def unix_name(raw: bytes | None) -> str | None:
    """A unix socket name as text: a path, ``@abstract`` or None when unbound."""
    name = bytes(raw or b"")
    if not name:
        return None
    if name.startswith(b"\0"):
        return "@" + undecodable_escaped(name[1:])
    return undecodable_escaped(name.rstrip(b"\0"))


def resolve_in_root(root: StrPath, path: str, max_links: int = 40) -> str | None:
    """The host path of ``path`` inside ``root``, as if ``root`` were ``/``.

    Symbolic links are followed inside the root (an absolute target restarts at
    ``root``; ``..`` never climbs above it).  Returns None when a component is
    missing or the links loop.
    """
    if root is None or not path:
        return None
    root = os.path.realpath(root)
    pending = [part for part in path.split("/") if part not in ("", ".")]
    done: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        try:
            info = os.lstat(candidate)
        except (OSError, ValueError):  # missing, unreadable, or a NUL in the name
            return None
        if stat.S_ISLNK(info.st_mode):
            hops += 1
            if hops > max_links:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        done.append(part)
    return os.path.join(root, *done)


def open_in_tree(path: StrPath, root: StrPath | None = None) -> tuple[int, os.stat_result]:
    """Open a file that came from a checkpoint, a target root or a copied tree; return
    ``(fd, stat result)`` (the caller closes ``fd``).

    The one opener for such paths: :func:`decoders.framing.open_untrusted` (never
    blocks on a FIFO, never opens a device, regular files only), and a symbolic
    link at ``path`` itself is refused.  When ``path`` lies under ``root``, the
    links on its way are resolved inside ``root`` (:func:`resolve_in_root`), so a
    copied tree's links (``var/log/lxd -> /var/log/...``) never reach host files;
    a ``root`` of ``/`` is the host itself, whose links are followed.
    Raises OSError (``FileNotFoundError``, or
    :class:`~decoders.errors.UnreadableImageError` naming the reason).
    """
    if root is not None and os.path.realpath(root) == os.sep:
        return open_untrusted(path)
    if root is not None:
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
        if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
            resolved = resolve_in_root(root, relative)
            if resolved is None:
                raise FileNotFoundError(errno.ENOENT, "not found inside " + os.fspath(root),
                                        os.fspath(path))
            path = resolved
    return open_untrusted(path, nofollow=True)


# -- the table ------------------------------------------------------------------------


class FileTable:
    """Every file of one checkpoint, resolved: ``{id: FileObject}`` plus findings.

    Build it with :meth:`load`; it reads ``files.img`` (or the pre-3.4 per-kind
    images) and the images that complete its entries, once: ``memfds`` (inode id →
    :class:`~crit_plus.resources.MemfdInode`) and ``ttys`` (id →
    :class:`~crit_plus.resources.TtyInfo`) are those records, the graph's
    ``Checkpoint.memfds`` and ``Checkpoint.ttys``.
    """

    def __init__(self, directory: str, objects: dict[int, FileObject], findings: Iterable[Finding],
                 remaps: dict[int, tuple[int, int]], memfds: dict[int, MemfdInode] | None = None,
                 ttys: dict[int, TtyInfo] | None = None) -> None:
        self.directory = directory
        self.objects = objects
        self.findings = tuple(findings)
        self._remaps = remaps
        self.memfds = memfds if memfds is not None else {}
        self.ttys = ttys if ttys is not None else {}
        self._ghosts: dict[int, GhostContents | None] = {}

    def get(self, file_id: int) -> FileObject | None:
        """The :class:`FileObject` with ``file_id``, or None."""
        return self.objects.get(file_id)

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self) -> Iterator[FileObject]:
        return iter(self.objects.values())

    def ghost(self, file_id: int) -> GhostContents | None:
        """The :class:`GhostContents` of a deleted file, or None (not a ghost, or unreadable)."""
        remap = self._remaps.get(file_id)
        if remap is None or remap[1] != RemapType.GHOST:
            return None
        if file_id not in self._ghosts:
            path = os.path.join(self.directory, ghost_image_name(remap[0]))
            try:
                self._ghosts[file_id] = ghost_contents(path)
            except DecodeError:
                self._ghosts[file_id] = None
        return self._ghosts[file_id]

    @classmethod
    def load(cls, directory: str,
             decoded: Callable[[str], tuple[tuple, DecodeError | None]] | None = None) -> FileTable:
        """Read and resolve the files of the checkpoint in ``directory``.

        ``decoded(name)`` → ``(messages, error)`` reads the images besides ``files.img``
        (the graph's :meth:`~crit_plus.graph.Checkpoint.decoded`, so each is decoded
        once per checkpoint); by default they are decoded here."""
        if decoded is None:
            decoded = functools.partial(_decode, directory)
        findings = []
        entries = {}
        try:
            entries = read_files(directory)
        except DecodeError as error:
            findings.append(error_finding(error))
        from .resources import read_memfds, read_ttys

        memfds, found = read_memfds(decoded)
        findings.extend(found)
        ttys, found = read_ttys(decoded)
        findings.extend(found)
        remaps = {}
        for msg in _read_all(decoded, "remap-fpath.img", findings):
            remaps[msg.orig_id] = (msg.remap_id, RemapType.of(_get(msg, "remap_type", 0)))
        legacy_tfds = _group(_read_all(decoded, "eventpoll-tfd.img", findings))
        legacy_wds = _group(_read_all(decoded, "inotify-wd.img", findings))
        context = _Context(directory, entries, memfds, ttys, remaps, legacy_tfds, legacy_wds,
                           findings)
        objects = {file_id: context.build(entry) for file_id, entry in entries.items()}
        return cls(directory, objects, findings, remaps, memfds, ttys)


def _decode(directory, name):
    """``(messages, error)`` of image ``name`` in ``directory``, as
    :meth:`crit_plus.graph.Checkpoint.decoded` gives them."""
    try:
        return read_messages(os.path.join(directory, name)), None
    except DecodeError as error:
        return (), error


def _read_all(decoded, name, findings):
    """Every message of an optional image (missing → empty, bad → finding)."""
    messages, error = decoded(name)
    if error is not None and not isinstance(error, MissingImageError):
        findings.append(error_finding(error))
    return messages


def _group(messages):
    grouped: dict[int, list] = {}
    for msg in messages:
        grouped.setdefault(msg.id, []).append(msg)
    return grouped


def ghost_image_name(remap_id: int) -> str:
    """The name of a deleted file's contents image: ``ghost-file-%x.img``, the remap id in
    hex as CRIU names it (``CR_FD_GHOST_FILE`` in criu/image-desc.c)."""
    return f"ghost-file-{remap_id:x}.img"


def ghost_contents(path: str) -> GhostContents:
    """Read the layout of ``ghost-file-<id>.img`` at ``path`` (contents stay in the file)."""
    extents = []
    head = None
    size = 0
    with open_image(path) as image:
        for entry in image.entries():
            if entry.index == 0:
                head = entry.message
                if entry.payload is not None:
                    (_name, offset, length), = entry.payload.parts
                    extents.append((0, length, offset))
                    size = length
                continue
            (_name, offset, length), = entry.payload.parts
            extents.append((entry.message.off, length, offset))
            size = max(size, entry.message.off + length)
    if head is not None and _get(head, "size") is not None:
        size = max(size, head.size)
    return GhostContents(path, size, head.mode if head is not None else 0, tuple(extents))


class _Context:
    """The images a FileObject is built from; one per :meth:`FileTable.load`."""

    def __init__(self, directory, entries, memfds, ttys, remaps, tfds, wds, findings):
        self.directory = directory
        self.entries = entries
        self.memfds = memfds
        self.ttys = ttys
        self.remaps = remaps
        self.tfds = tfds
        self.wds = wds
        self.findings = findings
        self.unix_by_ino: dict[int, int] = {}
        self.inet_by_ends: dict[tuple, int] = {}
        for file_id, entry in entries.items():
            detail = entry.detail
            if entry.type == FdType.UNIXSK and detail is not None:
                self.unix_by_ino.setdefault(detail.ino, file_id)
            elif entry.type == FdType.INETSK and detail is not None:
                ends = self._inet_ends(detail)
                if ends is not None:
                    self.inet_by_ends.setdefault(ends, file_id)

    @staticmethod
    def _inet_ends(detail):
        if not detail.dst_port:
            return None
        return (detail.family, detail.proto,
                ip_text(detail.family, detail.src_addr), detail.src_port,
                ip_text(detail.family, detail.dst_addr), detail.dst_port)

    def build(self, entry):
        """The :class:`FileObject` of one ``files.img`` entry."""
        fd_type = entry.type
        detail = entry.detail
        kind = kind_of(fd_type)
        if detail is None:
            self.findings.append(Finding(
                WARNING, "empty-file-entry",
                f"file id {entry.id} ({kind}) has no {kind} description", _where(entry),
                named(id=entry.id)))
            return FileObject(entry.id, fd_type, kind, None, {}, entry)
        builder = getattr(self, "_" + kind, None) if isinstance(fd_type, FdType) else None
        name, details = builder(entry, detail) if builder else (ANON_NAMES.get(fd_type), {})
        if name is None:
            name = ANON_NAMES.get(fd_type)
        return FileObject(entry.id, fd_type, kind, name, details, entry)

    # -- one method per kind, returning (name, details) --------------------------------
    def _file(self, entry, reg):
        name = image_text(reg.name)
        details = {"path": name, "flags": reg.flags, "pos": reg.pos,
                   "size": _get(reg, "size"), "mode": _get(reg, "mode"),
                   "mnt_id": _get(reg, "mnt_id"), "deleted": False, "remap": None}
        remap = self.remaps.get(entry.id)
        if remap is not None:
            remap_id, remap_type = remap
            details["remap"] = remap_type
            if remap_type == RemapType.GHOST:
                ghost = ghost_image_name(remap_id)
                details["deleted"] = True
                details["ghost_image"] = ghost
                if not os.path.exists(os.path.join(self.directory, ghost)):
                    self.findings.append(Finding(
                        ERROR, "missing-ghost",
                        f"deleted file {name} (id {entry.id}) needs {ghost}, which is missing",
                        ghost, named(id=entry.id)))
            elif remap_type == RemapType.LINKED:
                details["deleted"] = True
                linked = self.entries.get(remap_id)
                details["link_remap_id"] = remap_id
                details["link_remap_path"] = linked.name if linked is not None else None
        return name, details

    def _pipe(self, entry, pipe):
        return f"pipe:[{pipe.pipe_id}]", {"pipe_id": pipe.pipe_id, "flags": pipe.flags}

    def _fifo(self, entry, fifo):
        regf_id = _get(fifo, "regf_id")
        reg = self.entries.get(regf_id) if regf_id is not None else None
        path = reg.name if reg is not None else None
        details = {"pipe_id": fifo.pipe_id, "regf_id": regf_id, "path": path}
        if reg is not None and reg.detail is not None:
            details["flags"] = reg.detail.flags
        return path or f"fifo:[{fifo.pipe_id}]", details

    def _unix(self, entry, usk):
        name = unix_name(usk.name)
        name_dir = _get(usk, "name_dir")
        if name and name_dir and not name.startswith(("/", "@")):
            name = posixpath.join(name_dir, name)
        peer_ino = usk.peer or None
        peer_id = self.unix_by_ino.get(peer_ino) if peer_ino else None
        details = {
            "family": SockFamily.UNIX, "ino": usk.ino, "type": SockType.of(usk.type),
            "state": SockState.of(usk.state), "flags": usk.flags, "backlog": usk.backlog,
            "path": name, "peer_ino": peer_ino, "peer_id": peer_id,
            "external_peer": bool(peer_ino) and peer_id is None,
            "deleted": bool(_get(usk, "deleted", False)),
            "name_bytes": bytes(usk.name),
        }
        return name or f"socket:[{usk.ino}]", details

    def _inet(self, entry, isk):
        family = SockFamily.of(isk.family)
        src = ip_text(isk.family, isk.src_addr) if len(isk.src_addr) else None
        dst = ip_text(isk.family, isk.dst_addr) if len(isk.dst_addr) else None
        peer_id = None
        ends = self._inet_ends(isk)
        if ends is not None:
            peer_id = self.inet_by_ends.get((ends[0], ends[1], ends[4], ends[5], ends[2], ends[3]))
        details = {
            "family": family, "ino": isk.ino, "type": SockType.of(isk.type),
            "proto": IpProto.of(isk.proto), "state": SockState.of(isk.state),
            "src_addr": src, "src_port": isk.src_port, "dst_addr": dst, "dst_port": isk.dst_port,
            "backlog": isk.backlog, "flags": isk.flags, "peer_id": peer_id,
            "ifname": _get(isk, "ifname"),
        }
        name = endpoint_text(src or ("::" if family == SockFamily.INET6 else "0.0.0.0"),
                             isk.src_port)
        if isk.dst_port:  # a peer port without its address (damaged): "?" for the address
            name = f"{name}->{endpoint_text(dst or '?', isk.dst_port)}"
        return name, details

    def _netlink(self, entry, nlsk):
        return f"netlink:[{nlsk.ino}]", {
            "family": SockFamily.NETLINK, "ino": nlsk.ino, "protocol": nlsk.protocol,
            "state": nlsk.state, "portid": nlsk.portid, "dst_portid": nlsk.dst_portid,
            "groups": tuple(nlsk.groups)}

    def _packet(self, entry, psk):
        return f"packet:[{psk.id}]", {"family": SockFamily.PACKET, "type": SockType.of(psk.type),
                                      "protocol": psk.protocol, "ifindex": psk.ifindex}

    def _eventfd(self, entry, efd):
        return None, {"counter": efd.counter, "flags": efd.flags}

    def _eventpoll(self, entry, epfd):
        tfds = list(epfd.tfd) or self.tfds.get(entry.id, [])
        targets = tuple({"fd": t.tfd, "events": t.events, "data": t.data,
                         "inode": _get(t, "inode"), "dev": _get(t, "dev")} for t in tfds)
        return None, {"flags": epfd.flags, "targets": targets}

    def _timerfd(self, entry, tfd):
        return None, {"clockid": tfd.clockid, "ticks": tfd.ticks, "flags": tfd.flags,
                      "settime_flags": tfd.settime_flags,
                      "value": (tfd.vsec, tfd.vnsec), "interval": (tfd.isec, tfd.insec)}

    def _signalfd(self, entry, sgfd):
        mask = sgfd.sigmask
        signals = tuple(n + 1 for n in range(64) if mask >> n & 1)
        return None, {"sigmask": mask, "signals": signals, "flags": sgfd.flags}

    def _inotify(self, entry, ify):
        wds = list(ify.wd) or self.wds.get(entry.id, [])
        watches = []
        for wd in wds:
            handle = _get(wd, "f_handle")
            watches.append({"wd": wd.wd, "mask": wd.mask, "ino": wd.i_ino, "dev": wd.s_dev,
                            "path": _get(handle, "path")})
        return None, {"flags": ify.flags, "watches": tuple(watches)}

    def _fanotify(self, entry, ffy):
        marks = []
        for mark in ffy.mark:
            mount = _get(mark, "me")
            handle = _get(_get(mark, "ie"), "f_handle")
            marks.append({"type": mark.type, "mask": mark.mask,
                          "path": _get(mount, "path") or _get(handle, "path")})
        return None, {"flags": ffy.flags, "faflags": ffy.faflags, "marks": tuple(marks)}

    def _memfd(self, entry, memfd):
        inode = self.memfds.get(memfd.inode_id)
        details = {"inode_id": memfd.inode_id, "flags": memfd.flags, "pos": memfd.pos,
                   "name": None, "size": None, "shmid": None, "seals": None}
        if inode is None:
            self.findings.append(Finding(
                ERROR, "missing-memfd-inode",
                f"memfd file id {entry.id} names inode {memfd.inode_id}, not in memfd.img",
                _where(entry), named(id=entry.id)))
            return f"memfd:[{memfd.inode_id}]", details
        name = inode.name
        details.update(name=name, size=inode.size, shmid=inode.shmid, seals=inode.seals)
        return f"/memfd:{name}", details

    def _tty(self, entry, tty):
        info = self.ttys.get(tty.tty_info_id)
        regf_id = _get(tty, "regf_id")
        reg = self.entries.get(regf_id) if regf_id is not None else None
        path = reg.name if reg is not None else info.path if info is not None else None
        details = {"tty_info_id": tty.tty_info_id, "flags": tty.flags, "path": path,
                   "tty_type": info.type if info is not None else None,
                   "rdev": info.device if info is not None else None,
                   "sid": info.sid if info is not None else None,
                   "pgrp": info.pgrp if info is not None else None}
        if info is None:
            self.findings.append(Finding(
                WARNING, "missing-tty-info",
                f"tty file id {entry.id} names tty {tty.tty_info_id}, not in tty-info.img",
                _where(entry), named(id=entry.id)))
        return path, details

    def _ns(self, entry, nsf):
        return f"ns:[{nsf.ns_id}]", {"ns_id": nsf.ns_id, "ns_cflag": nsf.ns_cflag,
                                     "flags": nsf.flags}

    def _pidfd(self, entry, pidfd):
        return None, {"nspid": pidfd.nspid, "ino": pidfd.ino, "flags": pidfd.flags}

    def _tun(self, entry, tunf):
        return None, {"netdev": _get(tunf, "netdev")}

    def _ext(self, entry, ext):
        return f"ext:[{ext.id}]", {}

    def _bpfmap(self, entry, bpf):
        return None, {"map_id": _get(bpf, "map_id"), "map_type": _get(bpf, "map_type")}


def _where(entry):
    source = getattr(entry, "source", None)
    return os.path.basename(source.path) if source is not None else "files.img"


__all__ = [
    "ANON_NAMES", "Fd", "FileObject", "FileTable", "GhostContents", "IpProto", "KINDS",
    "RemapType", "SockFamily", "SockState", "SockType",
    "endpoint_text", "ghost_contents", "ghost_image_name", "ip_text", "kind_of",
    "resolve_in_root", "unix_name",
]
