"""The explorers' facts: processes, fds, sockets, mappings, resident pages, memory search.

What ``crit x ps|fds|mems|rss`` shows, computed from the typed graph instead of
from raw dictionaries, plus what crit does not have (sockets, memory search).
Every function takes a :class:`~crit_plus.graph.Checkpoint` and returns
frozen dataclasses of machine values (ints, strings, tuples, enums); turning
them into text is :mod:`crit_plus.describe`'s job, printing the commands'.

A zombie (CRIU writes only its core) has no fds, mappings or pages: it gets an
empty row, never an exception.  Only :func:`ps_rows` with ``env`` and the
memory functions read page data; the others read metadata images only.

Auxiliary images read here, through :mod:`decoders` (message headers only; the
payload bytes stay in the file)::

    sk-queues.img           { sk_packet_entry(id_for = socket file id, length) PAYLOAD }
    tcp-stream-<ino:x>.img  tcp_stream_entry(inq_len, outq_len, unsq_len) PAYLOAD
    pipes-data.img, fifo-data.img   { pipe_data_entry(pipe_id, bytes) PAYLOAD }
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field

from decoders.errors import DecodeError, MissingImageError

from ..files import SockFamily, endpoint_text
from ..memory import CHUNK_SIZE, Unavailable
from ..pages import mapping_pages

# -- processes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PsRow:
    """One process, in tree order (``depth`` 0 for a root).

    ``argv``/``environ`` are read back from the process's memory (None when it
    cannot be read, e.g. a zombie); ``environ`` only when asked for.
    """

    depth: int
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str | None
    threads: int
    comm: str | None
    argv: tuple | None
    environ: tuple | None = None


def ps_rows(checkpoint, *, argv=True, env=False):
    """Every process depth-first through the checked tree (:class:`PsRow`).

    ``argv`` reads each command line back from memory
    (:attr:`~crit_plus.graph.Process.command_line`), ``env`` each environment;
    without them no page data is read.
    """
    rows = []
    for depth, process in checkpoint.walk():
        rows.append(PsRow(
            depth, process.pid, process.ppid, process.pgid, process.sid, process.state_label,
            len(process.threads), process.comm,
            process.command_line if argv else None,
            process.environ if env else None))
    return rows


def select(checkpoint, pid=None):
    """``(depth, Process)`` of every process in tree order, or of ``pid`` alone
    (``KeyError`` when it is not in the checkpoint)."""
    if pid is None:
        return list(checkpoint.walk())
    return [(0, checkpoint.process(pid))]


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


class Queues:
    """Bytes queued in sockets and pipes, from the auxiliary images (decoded once per
    checkpoint: :meth:`~crit_plus.graph.Checkpoint.decoded`)."""

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint
        self.socket_packets = {}  # socket file id -> (packets, bytes)
        self.pipe_bytes = {}  # pipe id -> bytes
        self.problems = []
        for msg in self._messages("sk-queues.img"):
            packets, size = self.socket_packets.get(msg.id_for, (0, 0))
            self.socket_packets[msg.id_for] = (packets + 1, size + msg.length)
        for name in ("pipes-data.img", "fifo-data.img"):
            for msg in self._messages(name):
                self.pipe_bytes[msg.pipe_id] = self.pipe_bytes.get(msg.pipe_id, 0) + msg.bytes
        self._tcp = {}

    def _messages(self, name):
        messages, error = self.checkpoint.decoded(name)
        if error is not None and not isinstance(error, MissingImageError):
            self.problems.append(str(error))
        return messages

    def tcp(self, ino):
        """``(inq_len, outq_len, unsq_len)`` of TCP socket ``ino``, or None."""
        if ino not in self._tcp:
            messages = self._messages(f"tcp-stream-{ino:x}.img")
            msg = messages[0] if messages else None
            self._tcp[ino] = None if msg is None else (
                msg.inq_len, msg.outq_len, getattr(msg, "unsq_len", 0))
        return self._tcp[ino]


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
    queues = Queues(checkpoint)
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
    queues = Queues(checkpoint)
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


# -- mappings ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VmaRow:
    """One VMA: the ``/proc/PID/maps`` facts plus its pages.

    ``pages`` counts pagemap pages by state (``present``, ``parent``, ``lazy``)
    and ``unlisted``; ``shared`` counts the pages of a shared-memory object
    (``pagemap-shmem-<shmid>.img``) dumped inside this VMA's window (None for
    private mappings); ``backing`` says what unlisted pages hold.
    """

    start: int
    end: int
    prot: int
    flags: int
    status: int
    pgoff: int
    kind: str
    name: str | None
    file_id: int | None
    shmid: int | None
    pages: dict
    shared: int | None
    backing: str

    @property
    def size(self):
        """Bytes mapped."""
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class ProcessVmas:
    """The mappings of one process."""

    depth: int
    pid: int
    comm: str | None
    state: str | None
    exe: str | None
    vmas: tuple


def _vma_row(memory, mapping):
    vma = mapping.vma
    counts = {"present": 0, "parent": 0, "lazy": 0, "unlisted": 0}
    counts.update(mapping.pages)
    pages = mapping_pages(memory, mapping)
    shared = pages.shared.listed if pages.shared is not None else None
    shmid = mapping.backing.shmid if pages.shared is not None else None
    return VmaRow(vma.start, vma.end, int(vma.prot), int(vma.flags), int(vma.status), vma.pgoff,
                  mapping.kind, mapping.name, mapping.file.id if mapping.file is not None else None,
                  shmid, counts, shared, mapping.backing.kind)


def vma_table(checkpoint, pid=None):
    """The mappings of every process (or of ``pid``), tree order (:class:`ProcessVmas`)."""
    result = []
    for depth, process in select(checkpoint, pid):
        memory = process.memory
        rows = tuple(_vma_row(memory, m) for m in memory.vmas) if memory is not None else ()
        exe = process.exe
        result.append(ProcessVmas(depth, process.pid, process.comm, process.state_label,
                                  exe.name if exe is not None else None, rows))
    return result


# -- resident pages --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KindPages:
    """Pages of the VMAs of one kind (heap, stack, file, anon, ...): a process's
    :class:`~crit_plus.pages.KindTally` as ``rss`` shows it."""

    kind: str
    vmas: int
    present: int
    parent: int
    lazy: int
    none: int
    shared: int

    @property
    def total(self):
        """Pages listed in the pagemap: :attr:`crit_plus.pages.PageCounts.listed`."""
        return self.present + self.parent + self.lazy + self.none


@dataclass(frozen=True, slots=True)
class ProcessRss:
    """Resident pages of one process (:attr:`crit_plus.graph.Process.pages`).

    ``present``/``parent``/``lazy``/``none`` count every pagemap entry (as crit's
    ``x rss`` lists them; :class:`~crit_plus.pages.PageCounts`); ``shared`` the pages
    of shared-memory objects listed inside its shared mappings (counted in every
    process mapping them).
    """

    depth: int
    pid: int
    comm: str | None
    state: str | None
    vmas: int
    present: int
    parent: int
    lazy: int
    none: int
    shared: int
    by_kind: tuple

    @property
    def total(self):
        """Pages the pagemap lists: :attr:`crit_plus.pages.PageCounts.listed`."""
        return self.present + self.parent + self.lazy + self.none


def _kind_pages(tally):
    private = tally.private
    return KindPages(tally.kind, tally.vmas, private.present, private.parent, private.lazy,
                     private.none, tally.shared.listed)


def process_rss(process, depth=0):
    """The :class:`ProcessRss` of one process."""
    pages = process.pages
    private = pages.private
    return ProcessRss(depth, process.pid, process.comm, process.state_label, pages.vmas,
                      private.present, private.parent, private.lazy, private.none,
                      pages.shared.listed,
                      tuple(_kind_pages(tally) for tally in pages.kinds))


def rss_table(checkpoint, pid=None):
    """Resident pages of every process (or of ``pid``), tree order (:class:`ProcessRss`)."""
    return [process_rss(process, depth) for depth, process in select(checkpoint, pid)]


# -- memory: read, dump, grep ------------------------------------------------------------------


class NoMemoryError(DecodeError, LookupError):
    """A process has no memory in the checkpoint (a zombie, a missing or bad mm image)."""


def memory_of(checkpoint, pid):
    """The :class:`~crit_plus.memory.AddressSpace` of ``pid``.

    ``KeyError`` when the pid is not in the checkpoint, :class:`NoMemoryError`
    with the reason when it has no memory (a zombie, a missing mm image).
    """
    process = checkpoint.process(pid)
    memory = process.memory
    if memory is None:
        if process.is_zombie:
            raise NoMemoryError(os.path.join(checkpoint.directory, f"core-{pid}.img"),
                                f"pid {pid} is a zombie: CRIU keeps no memory of it")
        name = f"mm-{pid}.img"
        why = next((finding.message for finding in process.findings if finding.where == name),
                   "missing or unreadable")  # the decode error, with its offset
        raise NoMemoryError(os.path.join(checkpoint.directory, name),
                            f"pid {pid} has no memory in this checkpoint: {why}")
    return memory


def read_memory(checkpoint, pid, address, length, chunk_size=CHUNK_SIZE):
    """``(address, bytes | Unavailable)`` pieces of ``length`` bytes at ``address`` of ``pid``."""
    return memory_of(checkpoint, pid).stream(address, length, chunk_size)


def unavailable_extents(memory, address, length):
    """The :class:`~crit_plus.memory.Extent` s of [address, address+length) that cannot be read."""
    return [e for e in memory.extents(address, length) if e.source == "unavailable"]


def vma_at(checkpoint, pid, address):
    """The :class:`~crit_plus.memory.Mapping` of ``pid`` holding ``address``;
    :class:`NoMemoryError` (a LookupError) if none does."""
    memory = memory_of(checkpoint, pid)
    mapping = memory.find(address)
    if mapping is None:
        raise NoMemoryError(memory.path, f"no mapping of pid {pid} holds {address:#x}")
    return mapping


@dataclass(frozen=True, slots=True)
class Hit:
    """One match of :class:`MemoryGrep`: where, in which VMA, and the bytes around it.

    ``before``/``after`` are up to ``context`` bytes around ``match`` (fewer at
    the edge of dumped data).
    """

    pid: int
    comm: str | None
    address: int
    match: bytes
    before: bytes
    after: bytes
    vma_start: int
    vma_end: int
    vma_prot: int
    vma_flags: int
    vma_kind: str
    vma_name: str | None

    @property
    def vma_offset(self):
        """Offset of the match inside its VMA."""
        return self.address - self.vma_start


#: Longest regular-expression match guaranteed to be found across a piece boundary.
REGEX_WINDOW = 4096


class MemoryGrep:
    """Search the dumped memory of processes for a byte string or regular expression.

    Dumped memory is what the pages images hold for each process: its own
    pagemap's pages (and those its ``parent/`` chain gives) and the pages of
    shared-memory objects inside its shared mappings, at the addresses the
    process sees them.  Zero-filled, file-backed and unavailable memory are
    not searched.  Data is streamed in ``chunk_size`` pieces; a match across
    two pieces is found when the pieces are adjacent in memory.

    ``total`` (bytes to search) is known before the search starts, so a
    caller can show progress: :meth:`hits` calls ``progress(nbytes)`` per piece.
    """

    def __init__(self, checkpoint, pattern, *, pids=None, regex=False, ignore_case=False,
                 context=16, chunk_size=CHUNK_SIZE, kinds=None, perms=None, start=None,
                 end=None, files=False):
        pattern = bytes(pattern)
        #: only VMAs of these kinds (``Mapping.kind``), with at least these protections
        #: (``Prot`` bits), overlapping [start, end), matches starting in it (a match
        #: may end past end, as grep's on a region); ``files``: file-backed pages read from
        #: the checkpoint's root too (as ``mem read`` does), not only the pages images
        self.kinds = frozenset(kinds) if kinds else None
        self.perms = int(perms or 0)
        self.start = start if start is not None else 0
        self.end = end if end is not None else 1 << 64
        self.sources = ("pages", "file") if files else ("pages",)
        if not pattern:
            raise ValueError("the pattern is empty")
        self.checkpoint = checkpoint
        self.pattern = pattern
        self.context = max(0, int(context))
        self.chunk_size = chunk_size
        self.literal = not regex and not ignore_case
        flags = re.IGNORECASE if ignore_case else 0
        self.regex = None if self.literal else re.compile(
            pattern if regex else re.escape(pattern), flags | re.DOTALL)
        self.window = len(pattern) - 1 if self.literal else REGEX_WINDOW
        if pids is None:
            self.processes = [p for _depth, p in checkpoint.walk()]
        else:
            self.processes = [checkpoint.process(pid) for pid in pids]

    @functools.cached_property
    def plan(self):
        """``[(process, mapping, ((vaddr, length), ...)), ...]``: what will be searched."""
        plan = []
        for process in self.processes:
            memory = process.memory
            if memory is None:
                continue
            for mapping in memory.vmas:
                if not self._selected(mapping):
                    continue
                # a match that starts before end counts whole: read on past end by
                # the pattern's window (hits() drops the matches that start past it)
                low = max(mapping.start, self.start)
                high = min(mapping.start + mapping.size, self.end + self.window)
                spans = tuple((e.vaddr, e.length) for e in memory.extents(low, high - low)
                              if e.source in self.sources)
                if spans:
                    plan.append((process, mapping, spans))
        return plan

    def _selected(self, mapping):
        """Whether ``mapping`` is of a kind, protection and place the search asks for."""
        if self.kinds is not None and mapping.kind not in self.kinds:
            return False
        if int(mapping.vma.prot) & self.perms != self.perms:
            return False
        return mapping.start < self.end and mapping.start + mapping.size > self.start

    @property
    def total(self):
        """Bytes of dumped memory the search reads."""
        return sum(length for _p, _m, spans in self.plan for _a, length in spans)

    def hits(self, progress=None):
        """Yield every :class:`Hit`, process by process, by address within a process."""
        for process, mapping, spans in self.plan:
            memory = process.memory
            prev, prev_end = b"", None
            for vaddr, length in spans:
                for addr, data in memory.stream(vaddr, length, self.chunk_size):
                    if isinstance(data, Unavailable):  # pages file short: a finding elsewhere
                        prev, prev_end = b"", None
                        continue
                    if prev_end != addr:
                        prev = b""
                    for hit in self._scan(process, mapping, prev, data, addr):
                        if hit.address < self.end:
                            yield hit
                    if progress is not None:
                        progress(len(data))
                    prev, prev_end = data, addr + len(data)

    def _scan(self, process, mapping, prev, data, addr):
        window = self.window
        # matches across the seam: start in prev, end in data
        if prev and window:
            head = prev[-window:]
            seam = head + data[:window]
            for start, end in self._find(seam):
                if start < len(head) < end:
                    yield self._hit(process, mapping, addr - len(head) + start, seam[start:end],
                                    prev, data, addr)
        for start, end in self._find(data):
            yield self._hit(process, mapping, addr + start, data[start:end], prev, data, addr)

    def _find(self, buf):
        if self.literal:
            needle = self.pattern
            size = len(needle)
            at = buf.find(needle)
            while at != -1:
                yield at, at + size
                at = buf.find(needle, at + 1)
        else:
            for match in self.regex.finditer(buf):
                if match.end() > match.start():
                    yield match.start(), match.end()

    def _hit(self, process, mapping, address, match, prev, data, data_addr):
        ctx = self.context
        rel = address - data_addr  # may be negative (match starts in prev)
        if rel >= ctx:
            before = data[rel - ctx:rel]
        elif rel >= 0:
            before = prev[len(prev) - (ctx - rel):] + data[:rel] if prev else data[:rel]
        else:
            before = prev[max(0, len(prev) + rel - ctx):len(prev) + rel]
        end = rel + len(match)  # > 0: every match ends inside data
        after = data[end:end + ctx]
        vma = mapping.vma
        return Hit(process.pid, process.comm, address, match, before, after, vma.start, vma.end,
                   int(vma.prot), int(vma.flags), mapping.kind, mapping.name)


__all__ = [
    "Endpoint", "EpollTarget", "FdRow", "Hit", "KindPages", "MemoryGrep",
    "NoMemoryError", "ProcessFds", "ProcessRss", "ProcessVmas", "PsRow", "Queues", "REGEX_WINDOW",
    "SocketRow", "VmaRow", "fd_table", "memory_of", "process_rss", "ps_rows",
    "read_memory", "rss_table", "select", "socket_rows", "unavailable_extents",
    "vma_at", "vma_table",
]
