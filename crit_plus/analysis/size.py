"""Where a checkpoint's bytes go: files on disk, image kinds, processes, VMA kinds.

Everything here comes from ``stat`` and the metadata images (pagemaps, mm,
pstree, ids, files); **no page data is read** (``content.py`` does that, on
request).  The numbers add up exactly:

- ``apparent`` is ``st_size``, ``allocated`` is ``st_blocks × 512`` (holes that
  ``criu dedup`` punches into pages files lower it, the size stays);
- the image kinds partition the directory's regular files, so their sums are
  the directory's total;
- so do the owners: each process (its pages file and its own metadata images),
  each shared-memory object (its pages file and its ``pagemap-shmem``), and
  the checkpoint-wide rest;
- pages are the graph's counts (:mod:`crit_plus.pages`, by state: ``present``
  in this checkpoint's ``pages-*.img``, ``parent`` in the ``parent/`` chain,
  ``lazy`` served by a lazy-pages daemon, ``none`` for entries with no data
  flag): the present pages of the process and shared-memory pagemaps together
  are 4096 × the pages files' expected sizes, and the VMA kinds partition the
  same pages (pages of a process's pagemap in no VMA, or listed twice, land in
  ``outside-vmas``; a shared-memory object counts once, under the kind of the
  first VMA that maps it, or ``unmapped-shmem``).

A process's own metadata is the images named after it or its threads
(``core-<tid>``, ``mm-<pid>``, ``pagemap-<pid>``, ``ids-<pid>``, ``fs-<pid>``,
and the older per-task images) plus ``fdinfo-<files_id>`` for the first process
that uses that file table.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from decoders.lazy import LazyPattern
from decoders.flags import PAGE_SIZE
from decoders.kinds import split_name

from ..findings import ERROR
from ..pages import PageCounts, biggest_mappings

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


def image_kind(name):
    """The kind (one of :data:`KINDS`) an image file name belongs to."""
    return _STEM_KIND.get(split_name(name)[0], "other")


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """``files`` regular files together: ``apparent`` bytes (st_size) and ``allocated``
    bytes (st_blocks × 512)."""

    files: int = 0
    apparent: int = 0
    allocated: int = 0

    @classmethod
    def of(cls, files):
        """The sum of :class:`FileSize` ``files``."""
        files = tuple(files)
        return cls(len(files), sum(f.apparent for f in files), sum(f.allocated for f in files))

    def __add__(self, other):
        return DiskUsage(self.files + other.files, self.apparent + other.apparent,
                         self.allocated + other.allocated)


@dataclass(frozen=True, slots=True)
class FileSize:
    """One regular file of the checkpoint directory."""

    name: str
    kind: str
    apparent: int
    allocated: int


@dataclass(frozen=True, slots=True)
class KindSize:
    """The files of one image kind together; ``largest`` names the biggest (or None)."""

    kind: str
    description: str
    files: int
    apparent: int
    allocated: int
    largest: str | None = None
    largest_apparent: int = 0


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
class OwnerSize:
    """What one owner of pages holds: its pages (by state), its pages file and the
    images that describe it (``metadata_disk``)."""

    pages: PageCounts
    pages_file: str | None
    pages_disk: DiskUsage
    metadata_disk: DiskUsage

    @property
    def disk(self):
        """The pages file and the metadata images together."""
        return self.pages_disk + self.metadata_disk


@dataclass(frozen=True, slots=True)
class ProcessSize(OwnerSize):
    """One process; ``metadata_files`` are its own images (see the module docstring);
    ``pages_unknown`` why its pages are not known (the graph's
    :attr:`~crit_plus.pages.ProcessPages.unknown`: a missing or cut pagemap), else None."""

    pid: int
    comm: str | None
    threads: int
    metadata_files: tuple
    pages_unknown: str | None = None


@dataclass(frozen=True, slots=True)
class SharedSize(OwnerSize):
    """One shared-memory object (``pagemap-shmem-<shmid>.img``): anonymous shared, SysV or memfd.

    ``kind`` is that of the first VMA mapping it, else ``unmapped-shmem`` (a memfd only
    held open, for one); ``name`` the memfd's or the first mapping's name;
    ``metadata_disk`` is its ``pagemap-shmem`` image.
    """

    shmid: int
    kind: str
    name: str | None
    mapped_by: tuple


@dataclass(frozen=True, slots=True)
class VmaKindSize:
    """The VMAs of one kind across all processes, and the pages they hold.

    ``unlisted`` pages are mapped but in no pagemap entry, the process's or (for
    shared memory) the shared object's: zeros, or the backing file's pages.
    """

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
    disk: DiskUsage
    pages: PageCounts


@dataclass(frozen=True, slots=True)
class SizeReport:
    """Everything :func:`measure` finds.

    ``files`` lists every regular file and ``disk`` sums them; ``kinds`` sums
    them by :data:`KINDS` (all kinds, zeros included); ``processes``,
    ``shared`` and ``common`` (the checkpoint-wide images) partition them too.
    ``pages_unknown`` names the pids whose private pages are not known (the graph's
    :attr:`~crit_plus.pages.CheckpointPages.unknown`): ``pages`` is then a lower bound.
    """

    directory: str
    files: tuple
    disk: DiskUsage
    kinds: tuple
    pages: PageCounts
    pages_files: tuple
    processes: tuple
    shared: tuple
    common: DiskUsage
    vma_kinds: tuple
    top_vmas: tuple
    parent_chain: tuple
    dump_stats: dict
    notes: tuple
    pages_unknown: tuple = ()

    @property
    def apparent(self):
        """Bytes of the directory's files (st_size)."""
        return self.disk.apparent

    @property
    def allocated(self):
        """Bytes of disk blocks of the directory's files."""
        return self.disk.allocated

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

#: Findings that leave page counts incomplete: bad or missing memory images, pages
#: the parent chain cannot give, pagemap entries that overlap or lie outside every VMA.
_SIZE_FINDINGS = frozenset(("missing-image", "bad-image", "missing-shmem", "parent-pages",
                            "parent-loop", "pagemap-overlap", "pagemap-outside-vma",
                            "pagemap-unaligned"))
_MEMORY_IMAGES = ("pagemap-", "mm-", "pstree", "parent")


def _finding_notes(checkpoint):
    """Notes for the checkpoint's findings that make its sizes incomplete."""
    notes = []
    for finding in checkpoint.findings:
        if finding.severity != ERROR or finding.code not in _SIZE_FINDINGS:
            continue
        if finding.code in ("missing-image", "bad-image") and \
                not finding.where.startswith(_MEMORY_IMAGES):
            continue
        notes.append(f"{finding.where}: {finding.message}")
    return notes


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
    sums = {kind: [0, 0, 0, None, 0] for kind, _ in KINDS}
    for file in files:
        entry = sums[file.kind]
        entry[0] += 1
        entry[1] += file.apparent
        entry[2] += file.allocated
        if entry[3] is None or file.apparent > entry[4]:
            entry[3], entry[4] = file.name, file.apparent
    return tuple(KindSize(kind, description, *sums[kind]) for kind, description in KINDS)


def _process_metadata(process, by_name, claimed):
    """The :class:`FileSize` s of ``process``'s own images not yet ``claimed``."""
    names = [f"{stem}-{process.pid}.img" for stem in sorted(_PID_STEMS)]
    names += [f"{stem}-{thread.tid}.img" for thread in process.threads
              for stem in sorted(_TID_STEMS)]
    ids = process.ids
    if ids is not None:
        names.append(f"fdinfo-{ids.files_id}.img")
    own = []
    for name in names:
        if name in by_name and name not in claimed:
            claimed.add(name)
            own.append(by_name[name])
    return tuple(own)


def _memfd_names(checkpoint):
    """``{shmid: name}`` of the memfds in ``files.img``."""
    names = {}
    for file in checkpoint.files:
        shmid = file.details.get("shmid") if file.kind == "memfd" else None
        if shmid is not None:
            names.setdefault(shmid, file.name)
    return names


def _table(checkpoint, name):
    """The :class:`~crit_plus.memory.PageTable` of pagemap image ``name``, or None when it
    is missing or cannot be decoded (a finding says why; a zombie has none)."""
    table = checkpoint.page_store.table(name)
    return None if isinstance(table, str) else table


def _pages_files(checkpoint, by_name):
    """Every pages file as a :class:`PagesFileSize`, and notes on sizes that do not add up."""
    result, notes = [], []
    for info in checkpoint.pages_files:
        stat = by_name.get(info.name)
        pages_file = PagesFileSize(info.name, info.pages_id, info.pagemaps, info.present_pages,
                                   stat.apparent if stat else None,
                                   stat.allocated if stat else None)
        result.append(pages_file)
        if not info.pagemaps:
            notes.append(f"{info.name}: no decodable pagemap uses it; its "
                         f"{pages_file.apparent} bytes are nobody's pages")
        elif pages_file.apparent is None:
            if info.present_pages:
                notes.append(f"{info.name} is missing: its pagemap lists "
                             f"{info.present_pages} present pages")
        elif pages_file.apparent != pages_file.expected:
            notes.append(f"{info.name} holds {pages_file.apparent} bytes, its pagemap lists "
                         f"{pages_file.expected} (4096 x {info.present_pages} present pages)")
        if pages_file.holes:
            notes.append(f"{info.name} has {pages_file.holes} bytes of holes "
                         "(pages punched out by criu dedup, or a sparse copy)")
    return tuple(result), notes


def _vma_kinds(checkpoint):
    """The checkpoint's :class:`VmaKindSize` s (:attr:`~crit_plus.graph.Checkpoint.pages`),
    most present pages first."""
    kinds = [VmaKindSize(k.kind, k.vmas, k.mapped, k.pages, k.unlisted)
             for k in checkpoint.pages.kinds]
    kinds.sort(key=lambda k: (-k.pages.present, -k.pages.listed, -k.mapped, k.kind))
    return tuple(kinds)


def _top_vmas(checkpoint, top):
    """The ``top`` biggest VMAs: :func:`crit_plus.pages.biggest_mappings`, the one
    ranking (``summarize`` lists the same)."""
    vmas = []
    for item in biggest_mappings(checkpoint, top):
        process, mapping, counts = item.process, item.mapping, item.pages
        shared = counts.shared is not None
        vmas.append(VmaSize(process.pid, process.comm, mapping.start, mapping.end,
                            mapping.kind, mapping.name, item.counted, counts.unlisted,
                            mapping.backing.shmid if shared else None))
    return tuple(vmas)


def _shared_names(checkpoint):
    """``{shmid: name}``: a memfd's name, else the name of the first mapping of it."""
    names = _memfd_names(checkpoint)
    for process in checkpoint.processes:
        for mapping in process.vmas:
            if mapping.backing.kind == "shmem":
                names.setdefault(mapping.backing.shmid, mapping.name)
    return names


def _disk(file):
    return DiskUsage.of((file,)) if file is not None else DiskUsage()


def measure(checkpoint, *, top=0):
    """Measure ``checkpoint`` (a :class:`~crit_plus.Checkpoint`) without reading page data.

    ``top`` > 0 also lists that many of the biggest VMAs
    (:func:`crit_plus.pages.biggest_mappings`: most pages, then pid, then address).
    """
    files = directory_files(checkpoint)
    by_name = {file.name: file for file in files}
    pages_files, notes = _pages_files(checkpoint, by_name)
    pages_by_id = {p.pages_id: p for p in pages_files}
    claimed = set()

    def claim(name):
        if name is None or name in claimed or name not in by_name:
            return None
        claimed.add(name)
        return by_name[name]

    processes = []
    for process in checkpoint.processes:
        counts, pages_file = process.pages.private, None
        table = _table(checkpoint, f"pagemap-{process.pid}.img")
        if table is not None:
            pages_file = pages_by_id.get(table.pages_id)
        pages_name = pages_file.name if pages_file else None
        meta = _process_metadata(process, by_name, claimed)
        processes.append(ProcessSize(
            pages=counts, pages_file=pages_name, pages_disk=_disk(claim(pages_name)),
            metadata_disk=DiskUsage.of(meta), pid=process.pid, comm=process.comm,
            threads=len(process.threads), metadata_files=tuple(f.name for f in meta),
            pages_unknown=process.pages.unknown))

    shared = []
    names = _shared_names(checkpoint)
    for item in checkpoint.pages.objects:
        pages_file = pages_by_id.get(item.pages_id) if item.pages_id is not None else None
        pages_name = pages_file.name if pages_file else None
        shared.append(SharedSize(
            pages=item.pages or PageCounts(), pages_file=pages_name,
            pages_disk=_disk(claim(pages_name)),
            metadata_disk=_disk(claim(f"pagemap-shmem-{item.shmid}.img")), shmid=item.shmid,
            kind=item.kind, name=names.get(item.shmid), mapped_by=item.mapped_by))

    stats = checkpoint.stats
    dump_stats = {}
    if stats is not None:
        dump_stats = {name: stats.get(name) for name in DUMP_STAT_FIELDS
                      if stats.get(name) is not None}
    return SizeReport(
        directory=checkpoint.directory,
        files=files,
        disk=DiskUsage.of(files),
        kinds=kind_sizes(files),
        pages=checkpoint.pages.total,
        pages_files=pages_files,
        processes=tuple(processes),
        shared=tuple(shared),
        common=DiskUsage.of(f for f in files if f.name not in claimed),
        vma_kinds=_vma_kinds(checkpoint),
        top_vmas=_top_vmas(checkpoint, top) if top else (),
        parent_chain=parent_chain(checkpoint),
        dump_stats=dump_stats,
        notes=tuple(notes + _finding_notes(checkpoint)),
        pages_unknown=checkpoint.pages.unknown,
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
        links.append(ChainLink(depth, current.directory, DiskUsage.of(directory_files(current)),
                               current.pages.total))
        current = current.parent
    return tuple(links)


# -- transfer ----------------------------------------------------------------------------------

#: RATE ::= NUMBER [PREFIX UNIT [PER]];  a bare NUMBER is bytes per second.
_RATE = LazyPattern(
    r"^\s*(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*"
    r"(?:(?P<prefix>[kKmMgGtTpP][iI]?)?(?P<unit>(?i:bits?|bytes?)|[bB])"
    r"(?P<per>\s*/\s*s(?:ec)?|ps)?)?\s*$")
_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_rate(text):
    """A transfer rate in bytes per second, from ``1Gbit/s``, ``100MB/s``, ``10MiB/s``,
    ``500Mbps``, ``1.5Gb/s``, ``40 MByte/s``, ``250000`` (bytes per second).

    ``b``, ``bit``, ``bits`` are bits, ``B``, ``byte``, ``bytes`` bytes; ``k M G T P``
    (either case) are powers of 1000, ``Ki Mi Gi Ti Pi`` powers of 1024; ``/s``,
    ``/sec`` or ``ps`` may follow.  Raises ValueError for anything else.
    """
    match = _RATE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a rate: write it like 1Gbit/s, 500Mbps, 100MB/s "
                         "or 50MiB/s (b = bits, B = bytes)")
    number = float(match.group("number"))
    prefix = (match.group("prefix") or "").lower()
    unit = match.group("unit") or "B"
    scale = 1
    if prefix:
        power = _POWERS[prefix[0]]
        scale = 1024 ** power if prefix.endswith("i") else 1000 ** power
    bits = unit == "b" or unit.lower().startswith("bit")
    rate = number * scale / (8 if bits else 1)
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"{text!r}: a rate must be a finite number more than zero")
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
    scan ``compressed`` and ``deduplicated_compressed`` (estimates for this
    directory: its page data so reduced, the other images as they are).
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
        rest = report.apparent - content.bytes_read
        amounts.append(("compressed", rest + content.compressed_estimate))
        amounts.append(("deduplicated_compressed", rest + content.dedup_compressed_estimate))
    return Transfer(rate, tuple(TransferItem(what, n, n / rate) for what, n in amounts))
