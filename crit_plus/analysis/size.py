"""Where a checkpoint's bytes go: files on disk, image kinds, processes, VMA kinds.

Everything here comes from ``stat`` and the metadata images (pagemaps, mm,
pstree, ids); **no page data is read** (``content.py`` does that, on request).
The numbers add up exactly:

- ``apparent`` is ``st_size``, ``allocated`` is ``st_blocks × 512`` (holes that
  ``criu dedup`` punches into pages files lower it, the size stays);
- the image kinds partition the directory's regular files, so their sums are
  the directory's total;
- pages are counted from the pagemaps by state (``present`` in this
  checkpoint's ``pages-*.img``, ``parent`` in the ``parent/`` chain, ``lazy``
  served by a lazy-pages daemon, ``none`` for holes): the present pages of the
  process and shared-memory pagemaps together are 4096 × the pages files'
  expected sizes, and the VMA kinds partition the same pages (pages of a
  process's pagemap in no VMA land in ``outside-vmas``; a shared-memory object
  counts once, under the kind of the first VMA that maps it).

Per-process metadata is the images named after the process or its threads
(``core-<tid>``, ``mm-<pid>``, ``pagemap-<pid>``, ``ids-<pid>``, ``fs-<pid>``,
and the older per-task images) plus ``fdinfo-<files_id>`` for the first process
that uses that file table; everything else is the checkpoint's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from decoders.flags import PAGE_SIZE, MapFlags
from decoders.kinds import split_name

from ..memory import page_state

# -- image kinds -------------------------------------------------------------------------

#: Image kinds in the order they are shown, with what they hold.
KINDS = (
    ("pages", "page data (pages-*.img)"),
    ("pagemaps", "where each page is (pagemap-*.img)"),
    ("core", "threads: registers, signals, task state (core-*.img)"),
    ("mm", "address space layouts (mm-*.img)"),
    ("files", "file table, fds, sockets, pipes, ttys (files.img, fdinfo-*.img, ...)"),
    ("ghost-files", "contents of deleted open files (ghost-file-*.img)"),
    ("tmpfs", "tmpfs contents as tar.gz (tmpfs-*.tar.gz.img)"),
    ("tcp-streams", "queued TCP data (tcp-stream-*.img)"),
    ("socket-queues", "queued socket packets (sk-queues.img)"),
    ("pipe-data", "buffered pipe and FIFO data (pipes-data.img, fifo-data.img)"),
    ("other", "everything else: namespaces, mounts, cgroups, logs, ..."),
)

_STEM_KIND = {
    "pages": "pages",
    "pagemap": "pagemaps", "pagemap-shmem": "pagemaps",
    "core": "core",
    "mm": "mm",
    "ghost-file": "ghost-files",
    "tmpfs": "tmpfs", "tmpfs-dev": "tmpfs",
    "tcp-stream": "tcp-streams",
    "sk-queues": "socket-queues",
    "pipes-data": "pipe-data", "fifo-data": "pipe-data",
}
for _stem in ("files", "fdinfo", "reg-files", "ext-files", "ns-files", "eventfd", "eventpoll",
              "eventpoll-tfd", "signalfd", "timerfd", "inotify", "inotify-wd", "fanotify",
              "fanotify-mark", "pipes", "fifo", "unixsk", "inetsk", "packetsk", "netlinksk",
              "tty", "tty-info", "tty-data", "remap-fpath", "memfd", "bpfmap-file", "tunfile",
              "filelocks"):
    _STEM_KIND[_stem] = "files"

#: Images named by a pid (``mm-<pid>.img``) or by a thread id (``core-<tid>.img``).
_PID_STEMS = frozenset(("mm", "pagemap", "ids", "fs", "creds", "sigacts", "itimers",
                        "posix-timers", "rlimit", "signal-p", "vmas"))
_TID_STEMS = frozenset(("core", "signal-s"))

_PAGES_NAME = re.compile(r"^pages-(\d+)\.img$")
_SHMEM_PAGEMAP = re.compile(r"^pagemap-shmem-(\d+)\.img$")
_PROCESS_PAGEMAP = re.compile(r"^pagemap-(\d+)\.img$")


def image_kind(name):
    """The kind (one of :data:`KINDS`) an image file name belongs to."""
    return _STEM_KIND.get(split_name(name)[0], "other")


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageCounts:
    """Pages by where a restore finds them (pagemap flags, see :func:`crit_plus.page_state`).

    ``present``: in this checkpoint's pages files; ``parent``: in the
    ``parent/`` chain (PE_PARENT); ``lazy``: PE_LAZY alone, served by a
    lazy-pages daemon, not in any image; ``none``: entries with no data flag.
    """

    present: int = 0
    parent: int = 0
    lazy: int = 0
    none: int = 0

    @property
    def listed(self):
        """Every page the pagemap lists."""
        return self.present + self.parent + self.lazy + self.none

    @property
    def present_bytes(self):
        """Bytes of this checkpoint's page data."""
        return self.present * PAGE_SIZE

    @property
    def parent_bytes(self):
        """Bytes of page data the parent chain holds."""
        return self.parent * PAGE_SIZE

    def __add__(self, other):
        return PageCounts(self.present + other.present, self.parent + other.parent,
                          self.lazy + other.lazy, self.none + other.none)

    def __sub__(self, other):
        return PageCounts(self.present - other.present, self.parent - other.parent,
                          self.lazy - other.lazy, self.none - other.none)

    @classmethod
    def of(cls, counts):
        """From a ``{"present": n, "parent": n, "lazy": n, "none": n}`` dict (missing keys 0)."""
        return cls(counts.get("present", 0), counts.get("parent", 0), counts.get("lazy", 0),
                   counts.get("none", 0))

    @classmethod
    def of_runs(cls, runs):
        """Counted over pagemap :class:`~crit_plus.Run` s (every entry, as CRIU writes it)."""
        counts = {}
        for run in runs:
            state = page_state(run.flags)
            counts[state] = counts.get(state, 0) + run.npages
        return cls.of(counts)


@dataclass(frozen=True, slots=True)
class FileSize:
    """One regular file of the checkpoint directory."""

    name: str
    kind: str
    apparent: int
    allocated: int


@dataclass(frozen=True, slots=True)
class KindSize:
    """The files of one image kind together."""

    kind: str
    description: str
    files: int
    apparent: int
    allocated: int


@dataclass(frozen=True, slots=True)
class PagesFileSize:
    """One ``pages-<id>.img``: which pagemap uses it, its size against what that pagemap lists."""

    name: str
    pages_id: int
    pagemaps: tuple
    present_pages: int
    apparent: int | None
    allocated: int | None

    @property
    def expected(self):
        """4096 × the present pages its pagemaps list."""
        return self.present_pages * PAGE_SIZE

    @property
    def holes(self):
        """Bytes of the file not backed by disk blocks (punched by ``criu dedup``), at least 0."""
        if self.apparent is None or self.allocated is None:
            return 0
        return max(0, self.apparent - self.allocated)


@dataclass(frozen=True, slots=True)
class ProcessSize:
    """One process: its pages and its own metadata images."""

    pid: int
    comm: str | None
    threads: int
    pages: PageCounts
    pages_file: str | None
    pages_apparent: int
    pages_allocated: int
    metadata_files: tuple
    metadata_apparent: int
    metadata_allocated: int


@dataclass(frozen=True, slots=True)
class SharedSize:
    """One shared-memory object (``pagemap-shmem-<shmid>.img``): anonymous shared, SysV or memfd.

    ``kind`` is that of the first VMA mapping it, ``memfd`` for a memfd only held
    open, else ``unmapped-shmem``; ``name`` the memfd's or the mapping's name.
    """

    shmid: int
    kind: str
    name: str | None
    mapped_by: tuple
    pages: PageCounts
    pages_file: str | None
    pages_apparent: int
    pages_allocated: int


@dataclass(frozen=True, slots=True)
class VmaKindSize:
    """The VMAs of one kind across all processes, and the pages they hold."""

    kind: str
    vmas: int
    mapped: int
    pages: PageCounts
    unlisted: int


@dataclass(frozen=True, slots=True)
class VmaSize:
    """One VMA of one process (for the biggest-VMAs list).

    A shared mapping counts the pages its object holds in the mapping's window
    (``shmid`` says which object): several processes can show the same pages.
    """

    pid: int
    comm: str | None
    start: int
    end: int
    kind: str
    name: str | None
    pages: PageCounts
    unlisted: int
    shmid: int | None

    @property
    def mapped(self):
        """Bytes mapped."""
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One checkpoint of the ``parent/`` chain (depth 1 is ``parent/``)."""

    depth: int
    directory: str
    files: int
    apparent: int
    allocated: int
    pages: PageCounts


@dataclass(frozen=True, slots=True)
class SizeReport:
    """Everything :func:`measure` finds.  ``files`` lists every regular file;
    ``kinds`` sums them by :data:`KINDS` (all kinds, zeros included)."""

    directory: str
    files: tuple
    apparent: int
    allocated: int
    kinds: tuple
    pages: PageCounts
    pages_files: tuple
    processes: tuple
    shared: tuple
    vma_kinds: tuple
    top_vmas: tuple
    parent_chain: tuple
    dump_stats: dict
    notes: tuple

    @property
    def kind_sizes(self):
        """``{kind: KindSize}``."""
        return {kind.kind: kind for kind in self.kinds}

    @property
    def parent_bytes(self):
        """Bytes of pages this checkpoint takes from the parent chain."""
        return self.pages.parent_bytes


# -- measuring -------------------------------------------------------------------------------

#: Counters of ``stats-dump`` that concern size, passed through as CRIU wrote them.
DUMP_STAT_FIELDS = ("pages_scanned", "pages_skipped_parent", "pages_written", "pages_lazy",
                    "shpages_scanned", "shpages_skipped_parent", "shpages_written")


def _stat(path):
    """``(apparent, allocated)`` of ``path``, or ``(None, None)`` if it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_blocks * 512


def directory_files(checkpoint):
    """Every regular file of the checkpoint directory as a :class:`FileSize`, by name."""
    files = []
    for name in checkpoint.image_files:
        apparent, allocated = _stat(os.path.join(checkpoint.directory, name))
        if apparent is None:
            continue
        files.append(FileSize(name, image_kind(name), apparent, allocated))
    return tuple(files)


def kind_sizes(files):
    """Sum ``files`` by image kind: a :class:`KindSize` for every kind of :data:`KINDS`."""
    sums = {kind: [0, 0, 0] for kind, _ in KINDS}
    for file in files:
        entry = sums[file.kind]
        entry[0] += 1
        entry[1] += file.apparent
        entry[2] += file.allocated
    return tuple(KindSize(kind, description, *sums[kind]) for kind, description in KINDS)


def vma_kind(mapping, mm=None):
    """The kind of a VMA for sizing: the graph's :attr:`Mapping.kind`, except that an
    anonymous VMA holding ``mm.start_stack`` or growing down is ``stack`` (CRIU does
    not set VMA_AREA_STACK on the main stack; ``/proc/PID/maps`` calls the VMA
    holding start_stack ``[stack]``)."""
    kind = mapping.kind
    if kind == "anon":
        if mm is not None and mapping.start <= mm.start_stack < mapping.end:
            return "stack"
        if int(mapping.flags) & MapFlags.GROWSDOWN:
            return "stack"
    return kind


def _mapping_name(mapping, kind):
    name = mapping.name
    if name is None and kind == "stack":
        return "[stack]"
    return name


def _process_metadata(process, files, claimed_fdinfo):
    tids = {str(thread.tid) for thread in process.threads}
    pid = str(process.pid)
    own = []
    for file in files:
        stem, ident = split_name(file.name)
        if (stem in _PID_STEMS and ident == pid) or (stem in _TID_STEMS and ident in tids):
            own.append(file)
    ids = process.ids
    if ids is not None:
        name = f"fdinfo-{ids.files_id}.img"
        if name not in claimed_fdinfo:
            for file in files:
                if file.name == name:
                    claimed_fdinfo.add(name)
                    own.append(file)
                    break
    return tuple(own)


def _memfd_names(checkpoint):
    """``{shmid: name}`` of the memfds in ``files.img``."""
    names = {}
    for file in checkpoint.files:
        shmid = file.details.get("shmid") if file.kind == "memfd" else None
        if shmid is not None:
            names.setdefault(shmid, file.name)
    return names


def _shared_tables(checkpoint):
    """``{shmid: PageTable}`` of every decodable ``pagemap-shmem-<shmid>.img``."""
    tables = {}
    for shmid in checkpoint.shmem_ids:
        table = checkpoint.page_store.table(f"pagemap-shmem-{shmid}.img")
        if not isinstance(table, str):
            tables[shmid] = table
    return tables


def measure(checkpoint, *, top=0):
    """Measure ``checkpoint`` (a :class:`~crit_plus.Checkpoint`) without reading page data.

    ``top`` > 0 also lists that many of the biggest VMAs (by present pages, then
    pages from the parent and lazy pages, then mapped size).
    """
    files = directory_files(checkpoint)
    by_name = {file.name: file for file in files}
    notes = []

    # pages files
    pages_files = []
    for info in checkpoint.pages_files:
        stat = by_name.get(info.name)
        pages_file = PagesFileSize(info.name, info.pages_id, info.pagemaps, info.present_pages,
                                   stat.apparent if stat else None,
                                   stat.allocated if stat else None)
        pages_files.append(pages_file)
        if pages_file.apparent is None:
            if info.present_pages:
                notes.append(f"{info.name} is missing: its pagemap lists "
                             f"{info.present_pages} present pages")
        elif pages_file.apparent != pages_file.expected:
            notes.append(f"{info.name} holds {pages_file.apparent} bytes, its pagemap lists "
                         f"{pages_file.expected} (4096 x {info.present_pages} present pages)")
        if pages_file.holes:
            notes.append(f"{info.name} has {pages_file.holes} bytes of holes "
                         "(pages punched out by criu dedup, or a sparse copy)")
    pages_by_id = {p.pages_id: p for p in pages_files}

    # processes, their VMAs by kind, the shared objects they map
    shared_tables = _shared_tables(checkpoint)
    shared_users = {}   # shmid -> [pids]
    shared_kind = {}    # shmid -> kind of the first VMA mapping it
    shared_name = _memfd_names(checkpoint)  # shmid -> name
    kinds = {}          # kind -> [vmas, mapped, PageCounts, unlisted]
    vmas = []
    processes = []
    claimed_fdinfo = set()
    total = PageCounts()
    for process in checkpoint.processes:
        memory = process.memory
        counts = PageCounts()
        pages_file = None
        if memory is not None:
            counts = PageCounts.of_runs(memory.runs)
            pages_file = pages_by_id.get(memory.pages_id)
            in_vmas = PageCounts()
            mm = process.mm
            for mapping in memory.vmas:
                kind = vma_kind(mapping, mm)
                own = PageCounts.of(mapping.pages)
                in_vmas += own
                unlisted = mapping.pages.get("unlisted", 0)
                shmid = mapping.backing.shmid if mapping.backing.kind == "shmem" else None
                window, window_unlisted = own, unlisted
                if shmid is not None:
                    users = shared_users.setdefault(shmid, [])
                    if process.pid not in users:
                        users.append(process.pid)
                    shared_kind.setdefault(shmid, kind)
                    shared_name.setdefault(shmid, _mapping_name(mapping, kind))
                    table = shared_tables.get(shmid)
                    if table is not None:
                        start = mapping.pgoff
                        window_counts = table.count_pages(start, start + mapping.size)
                        window = PageCounts.of(window_counts)
                        window_unlisted = window_counts.get("unlisted", 0)
                entry = kinds.setdefault(kind, [0, 0, PageCounts(), 0])
                entry[0] += 1
                entry[1] += mapping.size
                entry[2] += own
                entry[3] += unlisted
                if top:
                    vmas.append(VmaSize(process.pid, process.comm, mapping.start, mapping.end,
                                        kind, _mapping_name(mapping, kind), window,
                                        window_unlisted, shmid))
            outside = counts - in_vmas
            if outside.listed:
                entry = kinds.setdefault("outside-vmas", [0, 0, PageCounts(), 0])
                entry[2] += outside
        total += counts
        meta = _process_metadata(process, files, claimed_fdinfo)
        processes.append(ProcessSize(
            process.pid, process.comm, len(process.threads), counts,
            pages_file.name if pages_file else None,
            (pages_file.apparent or 0) if pages_file else 0,
            (pages_file.allocated or 0) if pages_file else 0,
            tuple(file.name for file in meta), sum(f.apparent for f in meta),
            sum(f.allocated for f in meta)))

    shared = []
    memfd_shmids = set(_memfd_names(checkpoint))
    for shmid in checkpoint.shmem_ids:
        table = shared_tables.get(shmid)
        counts = PageCounts.of_runs(table.runs) if table is not None else PageCounts()
        pages_file = pages_by_id.get(table.pages_id) if table is not None else None
        kind = shared_kind.get(shmid)
        if kind is None:
            kind = "memfd" if shmid in memfd_shmids else "unmapped-shmem"
        total += counts
        entry = kinds.setdefault(kind, [0, 0, PageCounts(), 0])
        entry[2] += counts
        shared.append(SharedSize(
            shmid, kind, shared_name.get(shmid), tuple(shared_users.get(shmid, ())), counts,
            pages_file.name if pages_file else None,
            (pages_file.apparent or 0) if pages_file else 0,
            (pages_file.allocated or 0) if pages_file else 0))

    vma_kinds = tuple(VmaKindSize(kind, v[0], v[1], v[2], v[3])
                      for kind, v in sorted(kinds.items(),
                                            key=lambda item: (-item[1][2].present,
                                                              -item[1][2].listed,
                                                              -item[1][1], item[0])))
    top_vmas = ()
    if top:
        vmas.sort(key=lambda v: (-v.pages.present, -(v.pages.parent + v.pages.lazy),
                                 -v.mapped, v.pid, v.start))
        top_vmas = tuple(vmas[:top])

    stats = checkpoint.stats
    dump_stats = {}
    if stats is not None:
        dump_stats = {name: stats.get(name) for name in DUMP_STAT_FIELDS
                      if stats.get(name) is not None}
    return SizeReport(
        directory=checkpoint.directory,
        files=files,
        apparent=sum(f.apparent for f in files),
        allocated=sum(f.allocated for f in files),
        kinds=kind_sizes(files),
        pages=total,
        pages_files=tuple(pages_files),
        processes=tuple(processes),
        shared=tuple(shared),
        vma_kinds=vma_kinds,
        top_vmas=top_vmas,
        parent_chain=parent_chain(checkpoint),
        dump_stats=dump_stats,
        notes=tuple(notes),
    )


def parent_chain(checkpoint):
    """Every checkpoint of the ``parent/`` chain as a :class:`ChainLink`, nearest first.

    The graph stops at a ``parent/`` leading back into the chain.
    """
    links = []
    depth = 0
    current = checkpoint.parent
    while current is not None:
        depth += 1
        files = directory_files(current)
        counts = PageCounts()
        for process in current.processes:
            if process.memory is not None:
                counts += PageCounts.of_runs(process.memory.runs)
        for table in _shared_tables(current).values():
            counts += PageCounts.of_runs(table.runs)
        links.append(ChainLink(depth, current.directory, len(files),
                               sum(f.apparent for f in files), sum(f.allocated for f in files),
                               counts))
        current = current.parent
    return tuple(links)


# -- transfer ----------------------------------------------------------------------------------

_RATE = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[A-Za-z]*)\s*"
                   r"(?P<per>/\s*s(?:ec)?|ps)?\s*$")
_PREFIX = {"": 1, "k": 10 ** 3, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12,
           "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}


def parse_rate(text):
    """A transfer rate in bytes per second, from ``1Gbit/s``, ``100MB/s``, ``10MiB/s``,
    ``500Mbps``, ``1.5Gb/s``, ``250000`` (bytes per second).

    ``b``/``bit`` are bits and ``B`` bytes; ``k M G T`` are powers of 1000,
    ``Ki Mi Gi Ti`` powers of 1024.  Raises ValueError for anything else.
    """
    match = _RATE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a rate: write it like 1Gbit/s, 100MB/s or 50MiB/s")
    number = float(match.group("number"))
    unit = match.group("unit")
    per = match.group("per")
    bits = None
    for suffix, is_bits in (("bit", True), ("b", True), ("B", False)):
        if unit.endswith(suffix):
            prefix, bits = unit[: -len(suffix)], is_bits
            break
    if bits is None:
        if unit or per:
            raise ValueError(f"{text!r}: unknown unit {unit!r} (use bit/s, b/s or B/s with "
                             "an optional k, M, G, T, Ki, Mi, Gi, Ti)")
        prefix, bits = "", False
    if prefix not in _PREFIX:
        raise ValueError(f"{text!r}: unknown prefix {prefix!r} (use k, M, G, T, Ki, Mi, Gi, Ti)")
    rate = number * _PREFIX[prefix] / (8 if bits else 1)
    if rate <= 0:
        raise ValueError(f"{text!r}: a rate must be more than zero")
    return rate


@dataclass(frozen=True, slots=True)
class TransferItem:
    """``nbytes`` to move and how long that takes at the rate."""

    what: str
    nbytes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Transfer:
    """Transfer times of a checkpoint at ``rate`` bytes per second.

    ``items`` (by ``what``): ``whole`` (this directory plus the pages it takes
    from the parent chain: what moving it without the chain costs),
    ``in_parent`` (the part the parent chain already holds), ``this`` (this
    directory: what is left once the chain has been moved), and with a content
    scan ``compressed`` and ``deduplicated_compressed`` (estimates: the page
    data so reduced, the other images as they are).
    """

    rate: float
    items: tuple

    def get(self, what):
        """The :class:`TransferItem` named ``what``, or None."""
        for item in self.items:
            if item.what == what:
                return item
        return None


def transfer(report, rate, content=None):
    """Transfer times of :class:`SizeReport` ``report`` at ``rate`` bytes/s (with the
    estimates of a :class:`~crit_plus.analysis.content.ContentReport` if given)."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    amounts = [("whole", report.apparent + report.parent_bytes),
               ("in_parent", report.parent_bytes),
               ("this", report.apparent)]
    if content is not None and content.compressed_estimate is not None:
        rest = report.apparent - report.kind_sizes["pages"].apparent
        amounts.append(("compressed", rest + content.compressed_estimate))
        amounts.append(("deduplicated_compressed", rest + content.dedup_compressed_estimate))
    return Transfer(rate, tuple(TransferItem(what, n, n / rate) for what, n in amounts))
