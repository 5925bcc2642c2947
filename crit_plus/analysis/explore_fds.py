"""The fds and sockets explorers (``fds``, ``sk``): rows of every open file.

Part of :mod:`crit_plus.analysis.explore`, which exports these names; a module
of its own so that ``ps`` does not create these records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..files import SockFamily, endpoint_text
from .explore import select

# -- fds ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An fd that holds a file: the other end of a socket or pipe."""

    pid: int
    fd: int


@dataclass(frozen=True, slots=True)
class EpollTarget:
    """One fd an epoll instance watches: its number, ``EPOLL*`` events, and the file."""

    fd: int
    events: int
    kind: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class FdRow:
    """One fd (or ``cwd``/``root``) of a process.

    ``name`` is the graph's name (path, ``pipe:[N]``, ``addr:port``...), ``flags``
    the file's open flags (``O_*``, None when the image has none), ``details``
    the file's facts (see docs/api.md), ``peers`` the fds at the other end (a
    socket's peer, the other ends of a pipe or FIFO), ``targets`` what an epoll
    fd watches (:class:`EpollTarget`), ``queued`` bytes waiting in a
    pipe or socket (None when nothing was dumped).
    """

    fd: int | str
    kind: str
    name: str | None
    file_id: int | None
    flags: int | None
    cloexec: bool | None
    deleted: bool
    details: dict = field(default_factory=dict)
    peers: tuple = ()
    targets: tuple = ()
    queued: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessFds:
    """The fds of one process, with its working and root directories."""

    depth: int
    pid: int
    comm: str | None
    state: str | None
    fds: tuple
    cwd: FdRow | None
    root: FdRow | None


def _file_row(fd, file, flags_fd=None, holders=None, pipes=None, queues=None, process=None):
    """An :class:`FdRow` for ``file`` at ``fd`` (a number, ``cwd`` or ``root``)."""
    if file is None:
        kind = flags_fd.kind if flags_fd is not None else "unknown"
        return FdRow(fd, kind, None, None, None,
                     flags_fd.cloexec if flags_fd is not None else None, False)
    details = dict(file.details)
    peers, targets, queued = (), (), None
    kind = file.kind
    if holders is not None:
        peer_id = details.get("peer_id")
        if peer_id is not None:
            peers = tuple(Endpoint(pid, n) for pid, n in holders(peer_id))
        elif kind in ("pipe", "fifo") and pipes is not None:
            peers = tuple(Endpoint(pid, n) for pid, n in pipes.get(details.get("pipe_id"), ())
                          if not (process is not None and pid == process.pid and n == fd))
    if kind == "eventpoll" and process is not None:
        targets = tuple(EpollTarget(number, events, target.kind if target else None,
                                    target.name if target else None)
                        for number, events, target in process.epoll_targets(fd))
    if queues is not None:
        if kind in ("pipe", "fifo"):
            queued = queues.pipe_bytes.get(details.get("pipe_id"))
        elif kind in ("unix", "inet", "packet", "netlink"):
            packets = queues.socket_packets.get(file.id)
            queued = packets[1] if packets else None
            if kind == "inet" and queued is None and details.get("ino") is not None:
                tcp = queues.tcp(details["ino"])
                if tcp is not None:
                    queued = tcp[0] + tcp[1]
    return FdRow(fd, kind, file.name, file.id, details.get("flags"),
                 flags_fd.cloexec if flags_fd is not None else None,
                 bool(details.get("deleted")), details, peers, targets, queued)


def _pipe_ends(checkpoint):
    """pipe id -> ((pid, fd), ...) of every fd on either end of that pipe or FIFO."""
    ends = {}
    for process in checkpoint.processes:
        for fd in process.fds:
            file = fd.file
            if file is not None and file.kind in ("pipe", "fifo"):
                ends.setdefault(file.details.get("pipe_id"), []).append((process.pid, fd.fd))
    return ends


def fd_table(checkpoint, pid=None):
    """The fds of every process (or of ``pid``), tree order (:class:`ProcessFds`)."""
    queues = checkpoint.queues
    pipes = _pipe_ends(checkpoint)
    result = []
    for depth, process in select(checkpoint, pid):
        rows = tuple(_file_row(fd.fd, fd.file, fd, checkpoint.holders, pipes, queues, process)
                     for fd in process.fds)
        cwd = _file_row("cwd", process.cwd) if process.cwd is not None else None
        root = _file_row("root", process.root) if process.root is not None else None
        result.append(ProcessFds(depth, process.pid, process.comm, process.state_label, rows,
                                 cwd, root))
    return result


# -- sockets -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SocketRow:
    """One socket (a ``files.img`` entry), wherever it is open.

    ``local``/``remote`` are addresses (``addr:port``, a unix path or
    ``@abstract``, None when unbound/unconnected); a unix socket's ``remote``
    is its peer's name, or ``socket:[ino]`` when the peer is unnamed.
    ``holders``/``peer_holders`` are the fds holding it and its peer.
    ``recv_queue``/``send_queue`` are bytes CRIU dumped (None: nothing dumped).
    """

    file_id: int
    ino: int | None
    family: object
    type: object
    proto: object
    state: object
    local: str | None
    remote: str | None
    peer_ino: int | None
    peer_id: int | None
    external_peer: bool
    backlog: int | None
    holders: tuple
    peer_holders: tuple
    recv_queue: int | None
    send_queue: int | None
    queued_packets: int | None
    details: dict = field(default_factory=dict)


_SOCKET_KINDS = ("unix", "inet", "netlink", "packet")


def socket_rows(checkpoint):
    """Every socket open in some process, by family then inode (:class:`SocketRow`)."""
    queues = checkpoint.queues
    files = checkpoint.files
    rows = []
    for file in files:
        if file.kind not in _SOCKET_KINDS:
            continue
        holders = tuple(Endpoint(pid, fd) for pid, fd in checkpoint.holders(file.id))
        if not holders:
            continue  # in files.img only as some other object's part
        rows.append(_socket_row(file, holders, files, checkpoint, queues))
    # A socket without its description (damaged files.img) has no family: sorted first.
    rows.sort(key=lambda r: (-1 if r.family is None else int(r.family), r.ino or 0, r.file_id))
    return rows


def _socket_row(file, holders, files, checkpoint, queues):
    d = file.details
    kind = file.kind
    peer_id = d.get("peer_id")
    peer_holders = tuple(Endpoint(pid, fd) for pid, fd in checkpoint.holders(peer_id)) \
        if peer_id is not None else ()
    recv = send = packets = None
    queued = queues.socket_packets.get(file.id)
    if queued is not None:
        packets, recv = queued
    local = remote = None
    if kind == "unix":
        local = d.get("path")
        peer = files.get(peer_id) if peer_id is not None else None
        if peer is not None:
            remote = peer.name
        elif d.get("peer_ino"):
            remote = f"socket:[{d['peer_ino']}]"
    elif kind == "inet" and d:  # d is empty for an entry without its description
        family = d.get("family")
        any_addr = "::" if family == SockFamily.INET6 else "0.0.0.0"
        local = endpoint_text(d.get("src_addr") or any_addr, d.get("src_port"))
        if d.get("dst_port"):
            remote = endpoint_text(d.get("dst_addr"), d.get("dst_port"))
        tcp = queues.tcp(d["ino"]) if d.get("ino") is not None else None
        if tcp is not None:
            recv, send = tcp[0], tcp[1] + tcp[2]
    elif kind == "netlink":
        local = f"portid {d.get('portid')}" if d.get("portid") is not None else None
        if d.get("dst_portid"):
            remote = f"portid {d.get('dst_portid')}"
    elif kind == "packet":
        local = f"ifindex {d.get('ifindex')}" if d.get("ifindex") else None
    return SocketRow(
        file.id, d.get("ino"), d.get("family"), d.get("type"),
        d.get("proto", d.get("protocol")), d.get("state"), local, remote,
        d.get("peer_ino"), peer_id, bool(d.get("external_peer")), d.get("backlog"),
        holders, peer_holders, recv, send, packets, dict(d))


__all__ = [
    "Endpoint",
    "EpollTarget",
    "FdRow",
    "ProcessFds",
    "SocketRow",
    "fd_table",
    "socket_rows",
]
