"""Page access: the bytes CRIU would restore at an address, never copied into the model.

Where a process's memory lives (CRIU's ``criu/pagemap.c``, ``criu/shmem.c``)::

    pagemap-<pid>.img     ::= HEAD(pages_id) { ENTRY(vaddr, nr_pages, flags) }
    pages-<pages_id>.img  ::= the pages of every PE_PRESENT entry, back to back,
                              in entry order, no header
    pagemap-shmem-<shmid>.img ::= the same, with ``vaddr`` an offset in the
                              shared-memory object (anonymous MAP_SHARED, SysV,
                              memfd contents)

An address resolves as follows:

1. find its VMA (sorted VMA starts + bisect); none → unavailable ("not mapped");
2. find its pagemap run (sorted run starts + bisect):

   - PE_PARENT → the same-named pagemap in ``parent/``, recursively (a
     ``parent/`` that leads back to a checkpoint already visited is a loop);
   - PE_PRESENT → ``pages-<id>.img`` at the run's offset; the offset advances
     over PE_PRESENT runs only;
   - PE_LAZY alone → unavailable: a lazy-pages daemon served it, it is not in
     the images;

3. an address no run lists takes its VMA's :class:`Backing`: zeros for private
   anonymous memory; ``pagemap-shmem-<shmid>.img`` for shared anonymous,
   SysV and memfd memory (offset in the object = vaddr - vma.start + pgoff;
   unlisted there → zeros); the backing file for file mappings when it is
   reachable under the ``root`` given to ``open_checkpoint`` (or the contents
   of ``ghost-file-<id>.img`` for a deleted file); otherwise unavailable.

Nothing is ever invented: what the images (and ``root``) cannot give is an
:class:`Unavailable` marker, or an :class:`UnavailableError` from
:meth:`AddressSpace.read`.  Runs are ``(vaddr, npages, flags, file,
file_offset)``; data is read with ``os.pread`` in chunks of at most
``chunk_size`` bytes, so memory stays bounded by the chunk.
"""

from __future__ import annotations

import functools
import itertools
import operator
import os
import stat
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from decoders.errors import DecodeError, MissingImageError, StrPath, TruncatedError
from decoders.flags import PAGE_SIZE, MapFlags, PageFlags, Prot, VmaStatus
from decoders.framing import open_untrusted
from decoders.pagemap import read_pagemap

from .findings import ERROR, WARNING, Finding, named

if TYPE_CHECKING:
    from decoders.records import Pagemap, Vma

    from .files import FileObject, FileTable, GhostContents

#: Default size of the pieces bulk readers read and yield.
CHUNK_SIZE = 4 << 20


def aligned_buffer(size: int) -> tuple[bytearray, int]:
    """``(buffer, offset)``: a bytearray holding ``size`` bytes from ``offset`` on a page
    boundary, to read page data into.  The kernel copies into an unaligned destination
    several times slower (4.5x measured for a bytearray's own start, 16 bytes past a
    cache line)."""
    import ctypes  # here, not at start-up: only diff and size --content use it

    buffer = bytearray(size + PAGE_SIZE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    return buffer, -address % PAGE_SIZE


def read_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``fd`` at ``offset``: the bytes read, fewer only at the end
    of the file."""
    got = 0
    size = len(view)
    while got < size:
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            break
        got += n
    return got

#: How many generations of ``parent/`` are followed at most (CRIU itself follows
#: the chain until it runs out of file descriptors).
MAX_PARENT_DEPTH = 64

# Span kinds: (start, end, kind, path, offset, reason)
_PAGES, _FILE, _ZERO, _NONE = 0, 1, 2, 3
#: Where a stretch of memory comes from: (start, end, kind, path, offset, reason).
Span = tuple[int, int, int, Any, Any, Any]
_SOURCE_NAMES = {_PAGES: "pages", _FILE: "file", _ZERO: "zero", _NONE: "unavailable"}

_F_PARENT = int(PageFlags.PARENT)
_F_LAZY = int(PageFlags.LAZY)
_F_PRESENT = int(PageFlags.PRESENT)

LAZY_REASON = "lazy: the lazy-pages daemon served these pages, they are not in the images"

#: Findings of one kind beyond this many are summed up in one more finding.
FINDINGS_CAP = 5


class UnavailableError(DecodeError, LookupError):
    """Bytes asked of :meth:`AddressSpace.read` that the checkpoint cannot give.

    ``vaddr`` and ``length`` say which bytes, ``reason`` why (not mapped, lazy,
    backing file not reachable, missing from the parent, ...).
    """

    def __init__(self, path: StrPath, vaddr: int, length: int, reason: str) -> None:
        self.vaddr = vaddr
        self.length = length
        self.why = reason
        super().__init__(path, f"{length} bytes at {vaddr:#x} are unavailable: {reason}")


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Marker for bytes the checkpoint cannot give: ``length`` bytes from ``vaddr``, and why."""

    vaddr: int
    length: int
    reason: str


@dataclass(frozen=True, slots=True)
class Run:
    """One pagemap entry, located: ``npages`` pages from ``vaddr`` with ``flags``.

    ``file``/``file_offset`` say where the data is for PE_PRESENT runs (the
    ``pages-<id>.img`` path and byte offset), None otherwise.
    """

    vaddr: int
    npages: int
    flags: PageFlags
    file: str | None
    file_offset: int | None

    @property
    def end(self) -> int:
        """The address just past the run."""
        return self.vaddr + self.npages * PAGE_SIZE

    @property
    def size(self) -> int:
        """Bytes the run covers."""
        return self.npages * PAGE_SIZE

    @property
    def state(self) -> str:
        """``present``, ``parent``, ``lazy`` or ``none`` (see :func:`page_state`)."""
        return page_state(self.flags)


def page_state(flags: int) -> str:
    """Where pages with pagemap ``flags`` come from on restore.

    ``parent`` (PE_PARENT: an earlier checkpoint; CRIU checks it first),
    ``present`` (PE_PRESENT: this checkpoint's pages file, lazily restorable or
    not), ``lazy`` (PE_LAZY alone: not in the images) or ``none``.
    """
    flags = int(flags)
    if flags & _F_PARENT:
        return "parent"
    if flags & _F_PRESENT:
        return "present"
    if flags & _F_LAZY:
        return "lazy"
    return "none"


_STATES = tuple(page_state(flags) for flags in range(8))


@dataclass(frozen=True, slots=True)
class Extent:
    """Where ``length`` bytes from ``vaddr`` come from.

    ``source`` is ``pages`` (a pages image), ``file`` (a backing file or a
    ghost-file image), ``zero`` or ``unavailable``; ``path``/``offset`` locate
    the bytes for the first two, ``reason`` explains the last.
    """

    vaddr: int
    length: int
    source: str
    path: str | None = None
    offset: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Backing:
    """What a VMA holds where no pagemap run lists a page.

    ``kind`` is ``zero`` (private anonymous memory), ``shmem`` (the object of
    ``pagemap-shmem-<shmid>.img``; ``size`` bounds a memfd), ``file`` (the file
    at host ``path``, ``size`` bytes), ``ghost`` (a deleted file's contents in
    the ghost image ``path``, laid out by ``extents``) or ``none`` (``reason``
    says why the contents are unavailable).
    """

    kind: str
    shmid: int | None = None
    path: str | None = None
    size: int | None = None
    extents: tuple = ()
    reason: str | None = None

    @classmethod
    def zero(cls) -> Backing:
        """Unlisted pages read as zeros."""
        return cls("zero")

    @classmethod
    def unavailable(cls, reason: str) -> Backing:
        """Unlisted pages cannot be read, because of ``reason``."""
        return cls("none", reason=reason)

    @classmethod
    def shmem(cls, shmid: int, size: int | None = None) -> Backing:
        """Unlisted pages come from shared-memory object ``shmid``."""
        return cls("shmem", shmid=shmid, size=size)

    @classmethod
    def file(cls, path: str, size: int) -> Backing:
        """Unlisted pages come from the host file ``path`` of ``size`` bytes."""
        return cls("file", path=path, size=size)

    @classmethod
    def ghost(cls, contents: GhostContents) -> Backing:
        """Unlisted pages come from a ghost-file image (:class:`~crit_plus.files.GhostContents`)."""
        return cls("ghost", path=contents.image, size=contents.size,
                   extents=tuple(sorted(contents.extents)))


@dataclass(frozen=True, slots=True)
class Mapping:
    """One VMA of a process, with the file behind it, its kind and its pages by state.

    ``pages`` maps ``present``/``parent``/``lazy``/``none`` (pagemap runs inside
    the VMA) and ``unlisted`` (pages no run lists: see ``backing``) to counts: a
    read-only :class:`PageCountMap`, one object for all mappings with equal counts.
    """

    vma: Vma
    file: FileObject | None
    backing: Backing
    pages: dict = field(default_factory=dict, compare=False, hash=False)  # PageCountMap
    #: What the mapping is (:func:`vma_kind`): heap, stack, vdso, file, memfd, shared, anon...
    kind: str = "anon"
    #: True for the VMA holding ``mm.start_stack`` (``/proc/PID/maps``' ``[stack]``).
    initial_stack: bool = False

    @property
    def start(self) -> int:
        """First address."""
        return self.vma.start

    @property
    def end(self) -> int:
        """Address just past the mapping."""
        return self.vma.end

    @property
    def size(self) -> int:
        """Bytes mapped."""
        return self.vma.end - self.vma.start

    @property
    def pgoff(self) -> int:
        """Offset (bytes) in the file or shared object of the first byte."""
        return self.vma.pgoff

    @property
    def prot(self) -> Prot:
        """Protection (:class:`decoders.Prot`)."""
        return self.vma.prot

    @property
    def flags(self) -> MapFlags:
        """mmap flags (:class:`decoders.MapFlags`)."""
        return self.vma.flags

    @property
    def status(self) -> VmaStatus:
        """CRIU's VMA status (:class:`decoders.VmaStatus`)."""
        return self.vma.status

    @property
    def name(self) -> str | None:
        """What ``/proc/PID/maps`` shows: the file's name, ``[heap]``, ``[stack]``... or None.

        ``[stack]`` is the VMA holding ``mm.start_stack`` (as the kernel names it);
        another growing-down VMA is a ``stack`` too, without a name (crit: ``[stack?]``).
        """
        if self.file is not None and self.file.name:
            return self.file.name
        kind = self.kind
        if kind == "stack":
            return "[stack]" if self.initial_stack else None
        if kind in ("heap", "vdso", "vvar", "vsyscall"):
            return f"[{kind}]"
        return None


#: CRIU's status bits that name what a VMA is, checked in this order (``criu/proc_parse.c``
#: sets them from ``/proc/PID/maps`` and ``smaps``).
_KIND_BITS = tuple((int(bit), name) for bit, name in (
    (VmaStatus.HEAP, "heap"),
    (VmaStatus.VDSO, "vdso"),
    (VmaStatus.VVAR, "vvar"),
    (VmaStatus.VSYSCALL, "vsyscall"),
    (VmaStatus.SYSVIPC, "sysvipc"),
    (VmaStatus.SOCKET, "socket"),
    (VmaStatus.AIORING, "aio"),
    (VmaStatus.MEMFD, "memfd"),
    (VmaStatus.FILE_SHARED, "file-shared"),
    (VmaStatus.FILE_PRIVATE, "file"),
    (VmaStatus.ANON_SHARED, "shared"),
))
#: Every VMA kind :func:`vma_kind` gives.
VMA_KINDS = tuple(name for _bit, name in _KIND_BITS) + ("stack", "anon")
_GROWSDOWN = int(MapFlags.GROWSDOWN)

#: Every kind :func:`vma_kind` gives, in the order help texts list them.
VMA_KINDS = ("anon", "heap", "stack", "file", "file-shared", "memfd", "shared", "sysvipc",
             "vdso", "vvar", "vsyscall", "socket", "aio")


def holds_start_stack(vma: Vma, start_stack: int | None) -> bool:
    """True for the VMA the kernel calls ``[stack]``: the one holding ``mm.start_stack``
    (``vma_is_initial_stack``: start <= start_stack <= end)."""
    return start_stack is not None and vma.start <= start_stack <= vma.end


def vma_kind(vma: Vma, start_stack: int | None = None) -> str:
    """What a VMA is — the one rule every command shows.

    ``heap``, ``vdso``, ``vvar``, ``vsyscall``, ``sysvipc``, ``socket``, ``aio``,
    ``memfd``, ``file-shared``, ``file``, ``shared`` from CRIU's status bits;
    otherwise (private anonymous memory) ``stack`` for a VMA growing down
    (``MAP_GROWSDOWN``: CRIU's own test for a stack, ``criu/mem.c``) or holding
    ``start_stack`` (``/proc/PID/maps``' ``[stack]``), else ``anon``.  CRIU never
    sets its ``VMA_AREA_STACK`` bit, so it is not read.
    """
    status = int(vma.status)  # plain ints: IntFlag arithmetic is ~10x slower
    for bit, name in _KIND_BITS:
        if status & bit:
            return name
    if int(vma.flags) & _GROWSDOWN or holds_start_stack(vma, start_stack):
        return "stack"
    return "anon"


def round_up(value: int) -> int:
    """``value`` rounded up to a whole page."""
    return (value + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE


def _cap(findings, items, severity, code, where, summary):
    """Append one finding per ``(message, params)`` in ``items`` up to the cap, then a
    summary."""
    for message, params in items[:FINDINGS_CAP]:
        findings.append(Finding(severity, code, message, where, params))
    if len(items) > FINDINGS_CAP:
        findings.append(Finding(severity, code,
                                f"and {len(items) - FINDINGS_CAP} more: {summary}", where))


class PageTable:
    """One pagemap image, located and sorted for lookup.

    ``runs`` are in image order with their pages-file offsets; lookups use
    parallel sorted arrays (starts, ends, flags, offsets) and bisect.  Entries
    out of order are sorted; pages listed twice keep their first listing
    (both are findings).  The entries are kept in arrays of machine integers,
    not as the decoded :class:`~decoders.records.PageRun` s (a tenth of the
    memory): :attr:`pagemap` makes them again when asked for.
    """

    def __init__(self, pagemap: Pagemap, directory: str, name: str, label: str = "") -> None:
        self.name = name
        self.directory = directory
        self.pages_id = pagemap.pages_id
        self._source = pagemap.source
        self.pages_name = f"{label}pages-{pagemap.pages_id}.img"
        self.pages_path = os.path.join(directory, f"pages-{pagemap.pages_id}.img")
        findings = []
        # the entries' fields in image order, as lists of ints (packed into arrays in _sort)
        runs = pagemap.runs
        vaddrs = [run[0] for run in runs]
        nr_pages = [run[1] for run in runs]
        values = [int(run[2]) for run in runs]
        indexes = [run[3] for run in runs]
        # per entry: where its data starts in the pages file, or -1 (not PE_PRESENT)
        file_offsets: list[int] = []
        offset = 0
        for value, pages in zip(values, nr_pages):
            if value & _F_PRESENT:
                file_offsets.append(offset)
                offset += pages * PAGE_SIZE
            else:
                file_offsets.append(-1)
        self.present_bytes = offset
        self.pages_size, problem = _pages_file(self.pages_path)
        if self.pages_size is None:
            self.missing_reason: str | None = f"{self.pages_name} {problem}"
            if offset:
                findings.append(Finding(
                    ERROR, "missing-pages",
                    f"{self.missing_reason}; the pagemap lists {offset // PAGE_SIZE} "
                    "present pages", name))
        else:
            self.missing_reason = None
            if self.pages_size < offset:
                findings.append(Finding(
                    ERROR, "pages-size",
                    f"{self.pages_name} holds {self.pages_size} bytes, the pagemap needs {offset} "
                    f"(4096 x {offset // PAGE_SIZE} present pages)", name))
            elif self.pages_size > offset:
                findings.append(Finding(
                    WARNING, "pages-size",
                    f"{self.pages_name} holds {self.pages_size} bytes, more than the {offset} "
                    "its pagemap lists", name))
        self.data_end = self.pages_size or 0
        self._sort(vaddrs, nr_pages, values, file_offsets, findings)
        self._indexes = _packed(indexes)
        self.findings = tuple(findings)

    @functools.cached_property
    def pagemap(self) -> Pagemap:
        """The :class:`~decoders.records.Pagemap` read from the image (made again from
        the arrays on first use, equal to what :func:`~decoders.pagemap.read_pagemap`
        read)."""
        from decoders.records import Pagemap, PageRun

        make, flags = tuple.__new__, _page_flags
        return Pagemap(self.pages_id, tuple(
            make(PageRun, (vaddr, pages, flags(value), index))
            for vaddr, pages, value, index in zip(self._vaddrs, self._nr_pages,
                                                  self._run_flags, self._indexes)),
            self._source)

    @functools.cached_property
    def runs(self) -> tuple[Run, ...]:
        """Every :class:`Run`, in image order (made on first use)."""
        path = self.pages_path
        return tuple(Run(vaddr, pages, _page_flags(value),
                         path if offset >= 0 else None, offset if offset >= 0 else None)
                     for vaddr, pages, value, offset in zip(self._vaddrs, self._nr_pages,
                                                            self._run_flags,
                                                            self._file_offsets))

    def pages_by_state(self) -> dict[str, int]:
        """Pages of every entry by :func:`page_state`: ``{"present": n, "parent": n,
        "lazy": n}`` (and ``none`` for entries with no data flag, if any)."""
        counts = {"present": 0, "parent": 0, "lazy": 0}
        for value, pages in zip(self._run_flags, self._nr_pages):
            state = _STATES[value & 7]
            counts[state] = counts.get(state, 0) + pages
        return counts

    def _sort(self, vaddrs, nr_pages, values, file_offsets, findings):
        """Set the sorted arrays (``starts``, ``ends``, ``flags``, ``offsets``) and the
        image-order ones from the entries' fields; add the findings of the entries."""
        order: range | list[int] = range(len(vaddrs))
        if not _increasing(vaddrs):
            order = sorted(order, key=lambda i: (vaddrs[i], i))
            if order != list(range(len(vaddrs))):
                i = next(i for i in range(1, len(vaddrs)) if vaddrs[i] < vaddrs[i - 1])
                findings.append(Finding(
                    WARNING, "pagemap-unsorted",
                    f"pagemap entries are not sorted by address: entry {i + 1} at "
                    f"{vaddrs[i]:#x} comes after {vaddrs[i - 1]:#x}", self.name,
                    named(entry=i + 1, vaddr=f"{vaddrs[i]:#x}")))
        starts, ends, flags, offsets = [], [], [], []
        overlaps, empty, unaligned = [], [], []
        prev_end = None
        for i in order:
            start, pages = vaddrs[i], nr_pages[i]
            if pages <= 0:
                empty.append((f"entry {i + 1} at {start:#x} lists no pages",
                              named(entry=i + 1, vaddr=f"{start:#x}")))
                continue
            if start % PAGE_SIZE:
                unaligned.append((f"entry {i + 1} starts at {start:#x}, not on a page "
                                  "boundary", named(entry=i + 1, vaddr=f"{start:#x}")))
            end = start + pages * PAGE_SIZE
            offset = file_offsets[i]
            if prev_end is not None and start < prev_end:
                overlaps.append((
                    f"entry {i + 1} ({start:#x}-{end:#x}) overlaps an earlier entry up to "
                    f"{prev_end:#x}; the first listing is used",
                    named(entry=i + 1, vaddr=f"{start:#x}")))
                if end <= prev_end:
                    continue
                if offset >= 0:
                    offset += prev_end - start
                start = prev_end
            starts.append(start)
            ends.append(end)
            flags.append(values[i])
            offsets.append(offset)
            prev_end = end
        _cap(findings, overlaps, ERROR, "pagemap-overlap", self.name, "overlapping entries")
        _cap(findings, empty, WARNING, "pagemap-empty-entry", self.name, "empty entries")
        _cap(findings, unaligned, ERROR, "pagemap-unaligned", self.name, "unaligned entries")
        # machine integers, not a Python int each: 8 bytes an entry instead of 40; in image
        # order too, the same arrays when sorting changed nothing (CRIU writes them sorted)
        self.starts, self.ends = _packed(starts, "Q"), _packed(ends, "Q")
        self.flags, self.offsets = _packed(flags), _packed(offsets)
        self._vaddrs = self.starts if vaddrs == starts else _packed(vaddrs, "Q")
        self._run_flags = self.flags if values == flags else _packed(values)
        self._file_offsets = self.offsets if offsets == file_offsets else _packed(file_offsets)
        self._nr_pages = _packed(nr_pages)

    def segments(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """Yield ``(s, e, index)`` covering [start, end): ``index`` of the sorted run
        holding s..e, or -1 for a stretch no run lists."""
        starts, ends = self.starts, self.ends
        count = len(starts)
        i = bisect_right(starts, start) - 1
        if i < 0:
            i = 0
        elif start >= ends[i]:
            i += 1
        pos = start
        while pos < end:
            if i >= count:
                yield pos, end, -1
                return
            run_start = starts[i]
            if pos < run_start:
                stop = min(run_start, end)
                yield pos, stop, -1
                pos = stop
                continue
            stop = min(ends[i], end)
            yield pos, stop, i
            pos = stop
            i += 1

    def data_spans(self, i: int, start: int, end: int) -> Iterator[Span]:
        """Spans of a PE_PRESENT run's bytes s..e: in the pages file up to its end."""
        offset = self.offsets[i] + (start - self.starts[i])
        available = self.data_end - offset
        if available >= end - start:
            yield start, end, _PAGES, self.pages_path, offset, None
            return
        cut = start + max(available, 0)
        if cut > start:
            yield start, cut, _PAGES, self.pages_path, offset, None
        yield cut, end, _NONE, None, 0, self.unavailable_reason

    @property
    def unavailable_reason(self) -> str:
        """Why present pages past the end of the pages file cannot be read."""
        return self.missing_reason or f"{self.pages_name} ends at {self.data_end:#x}, " \
                                      f"before the data of these pages"

    def count_pages(self, start: int, end: int) -> dict[str, int]:
        """Pages of [start, end) by state, and ``unlisted`` pages.

        The same counts as summing :meth:`segments`, without making them: runs
        are sorted and disjoint, so their ends are sorted too and one bisect
        finds the first run that reaches into the range.
        """
        return self._count(start, end, bisect_right(self.ends, start))

    def count_ranges(self, ranges: Iterable[tuple[int, int]],
                     shared: dict[tuple, PageCountMap] | None = None) -> list[PageCountMap]:
        """:meth:`count_pages` of each ``(start, end)`` of ``ranges`` (sorted by start),
        in one sweep over the runs, as read-only :class:`PageCountMap` s: equal counts
        are one object, kept in ``shared`` (a :class:`PageStore`'s, so that the whole
        checkpoint's VMAs share a few)."""
        if shared is None:
            shared = {}
        ends = self.ends
        count = len(ends)
        result = []
        i, prev_end = 0, None
        for start, end in ranges:
            if prev_end is not None and start < prev_end:  # overlapping ranges: look it up
                counts = self.count_pages(start, end)
            else:
                while i < count and ends[i] <= start:
                    i += 1
                counts = self._count(start, end, i)
                prev_end = end
            key = tuple(counts.items())  # in order: the counts' JSON keeps it
            made = shared.get(key)
            if made is None:
                made = shared[key] = PageCountMap(counts)
            result.append(made)
        return result

    def _count(self, start, end, i):
        """Counts of [start, end) from sorted run ``i``, the first that ends after ``start``."""
        starts, ends, flags = self.starts, self.ends, self.flags
        counts: dict[str, int] = {}
        count = len(starts)
        pos = start
        while i < count and starts[i] < end:
            s = starts[i] if starts[i] > pos else pos
            e = ends[i] if ends[i] < end else end
            if s > pos:
                counts["unlisted"] = counts.get("unlisted", 0) + (s - pos) // PAGE_SIZE
            state = _STATES[flags[i] & 7]
            counts[state] = counts.get(state, 0) + (e - s) // PAGE_SIZE
            pos = e
            i += 1
        if pos < end:
            counts["unlisted"] = counts.get("unlisted", 0) + (end - pos) // PAGE_SIZE
        return counts


class PageCountMap(dict):
    """Pages by state (``{"present": n, "unlisted": n, ...}``, a :class:`Mapping`'s
    ``pages``), read-only: equal counts are one object shared by every mapping that
    has them (a checkpoint of 500,000 VMAs has a few distinct ones), so changing one
    raises TypeError; ``dict(counts)`` is a copy to change."""

    __slots__ = ()

    def _read_only(self, *_args, **_kwargs):
        raise TypeError("page counts are shared between mappings: change a dict() copy")

    __setitem__ = __delitem__ = __ior__ = _read_only
    setdefault = pop = popitem = clear = update = _read_only

    def __reduce__(self):
        return (PageCountMap, (dict(self),))

    def __copy__(self):
        return self

    def __deepcopy__(self, _memo):
        return self


def _page_flags(value: int) -> PageFlags:
    """The :class:`~decoders.flags.PageFlags` of a flags value."""
    return _FLAG_SETS.get(value) or PageFlags(value)


_FLAG_SETS = {value: PageFlags(value) for value in range(8)}

#: The counts of a mapping without a pagemap.
_NO_COUNTS = PageCountMap()


def _packed(values: list[int], typecode: str = "q") -> array | list[int]:
    """``values`` as an array of 64-bit integers (``typecode`` ``q``: signed, ``Q``:
    unsigned; 8 bytes each instead of a list's pointer to an int object, 40 bytes),
    or the list itself when one does not fit (a hostile pagemap's end past 2**64)."""
    try:
        return array(typecode, values)
    except OverflowError:
        return values


def _increasing(values):
    """True when ``values`` strictly increase (then sorting them changes nothing)."""
    return all(map(operator.lt, values, itertools.islice(values, 1, None)))


def _file_size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _pages_file(path):
    """``(size, None)`` of a usable pages file, or ``(None, why not)``: a regular file,
    never a symbolic link at the name itself (as :class:`_Files` opens it)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None, "is missing"
    except OSError as error:
        return None, f"cannot be read: {error.strerror or error}"
    if stat.S_ISLNK(info.st_mode):
        return None, "is a symbolic link, not a regular file"
    if not stat.S_ISREG(info.st_mode):
        return None, "is not a regular file"
    return info.st_size, None


class PageStore:
    """The pagemaps of one checkpoint directory and the chain of its ``parent/``.

    Tables are decoded on first use and kept per instance.  ``parent`` is the
    store of ``parent/`` (a symlink or directory CRIU's ``--prev-images-dir``
    made), or None; a parent that leads back to a directory already in the
    chain is refused (``parent_problem`` says so).
    """

    def __init__(self, directory: str, label: str = "", seen: Iterable[str] = ()) -> None:
        self.directory = os.fspath(directory)
        self.label = label
        self.real = os.path.realpath(self.directory)
        self._seen = tuple(seen) + (self.real,)
        self._tables: dict[str, tuple[PageTable | str, DecodeError | None]] = {}
        #: The distinct :class:`PageCountMap` s of the mappings, by their items.
        self.count_maps: dict[tuple, PageCountMap] = {}
        self._parent = None
        self._parent_known = False
        #: Why ``parent/`` is not followed, as ``(code, message)`` (``parent-link-broken``,
        #: ``parent-loop``), or None.
        self.parent_problem = None

    def _load(self, name):
        loaded = self._tables.get(name)
        if loaded is not None:
            return loaded
        path = os.path.join(self.directory, name)
        try:
            loaded = (PageTable(read_pagemap(path), self.directory, name, self.label), None)
        except MissingImageError as error:
            # not kept: asking again costs one stat, keeping costs memory per name (a
            # hostile pstree.img names a million pids without images)
            return (f"{self.label}{name} is missing", error.detached())
        except DecodeError as error:
            loaded = (f"{self.label}{error}", error.detached())
        self._tables[name] = loaded
        return loaded

    def loaded(self, name: str) -> tuple[PageTable | str, DecodeError | None]:
        """``(table, None)`` or ``(why not, error)`` of pagemap image ``name``: :meth:`table`
        and :meth:`error` in one look (a missing image is looked for on each call)."""
        return self._load(name)

    def table(self, name: str) -> PageTable | str:
        """The :class:`PageTable` of pagemap image ``name``, or a string saying why not."""
        return self._load(name)[0]

    def error(self, name: str) -> DecodeError | None:
        """The :class:`~decoders.errors.DecodeError` that kept ``name`` from loading, or None
        (a :class:`~decoders.errors.MissingImageError` when it does not exist)."""
        return self._load(name)[1]

    @property
    def parent(self) -> PageStore | None:
        """The :class:`PageStore` of ``parent/``, or None (see :attr:`parent_problem`)."""
        if not self._parent_known:
            self._parent_known = True
            self._parent, self.parent_problem = self._open_parent()
        return self._parent

    def _open_parent(self):
        path = os.path.join(self.directory, "parent")
        name = f"{self.label}parent"
        if not os.path.lexists(path):
            return None, None
        if not os.path.isdir(path):
            what = "is not a directory"
            if os.path.islink(path):
                what = (f"points at {os.readlink(path)}, which "
                        + (what if os.path.exists(path) else "does not exist"))
            return None, ("parent-link-broken", f"{name} {what}")
        real = os.path.realpath(path)
        if real in self._seen:
            return None, ("parent-loop",
                          f"{name} leads back to {real}, already in the chain (a loop)")
        if len(self._seen) > MAX_PARENT_DEPTH:
            return None, ("parent-loop", f"the parent/ chain is longer than {MAX_PARENT_DEPTH}")
        return PageStore(path, f"{name}/", self._seen), None

    def chain_problem(self) -> tuple[str, str, str] | None:
        """``(code, message, where)`` of the first problem down the whole ``parent/``
        chain (a dangling link, a loop, too many generations), or None."""
        store = self
        while store.parent is not None:
            store = store.parent
        if store.parent_problem is None:
            return None
        code, message = store.parent_problem
        return code, message, f"{store.label}parent"

    def from_parent(self, name: str, start: int, end: int) -> Iterator[Span]:
        """Spans for [start, end) that ``name`` marks PE_PARENT: resolved in the parent chain."""
        parent = self.parent
        if parent is None:
            reason = self.parent_problem[1] if self.parent_problem else \
                f"in the parent checkpoint, but {self.label or 'the checkpoint'} has no parent/"
            yield start, end, _NONE, None, 0, reason
            return
        table = parent.table(name)
        if isinstance(table, str):
            yield start, end, _NONE, None, 0, f"in the parent checkpoint, but {table}"
            return

        def missing(s, e):
            yield s, e, _NONE, None, 0, f"in the parent checkpoint, but not in {parent.label}{name}"

        yield from resolve(parent, table, start, end, missing)


def resolve(store: PageStore, table: PageTable, start: int, end: int,
            gap: Callable[[int, int], Iterable[Span]]) -> Iterator[Span]:
    """Spans of [start, end) in ``table`` of ``store``; unlisted stretches go to ``gap(s, e)``."""
    for s, e, i in table.segments(start, end):
        if i < 0:
            yield from gap(s, e)
            continue
        flags = table.flags[i]
        if flags & _F_PARENT:
            yield from store.from_parent(table.name, s, e)
        elif flags & _F_PRESENT:
            yield from table.data_spans(i, s, e)
        elif flags & _F_LAZY:
            yield s, e, _NONE, None, 0, LAZY_REASON
        else:
            yield s, e, _NONE, None, 0, "the pagemap entry is neither present, in parent nor lazy"


def coalesce(spans: Iterable[Span]) -> Iterator[Span]:
    """Merge adjacent spans that read from the same place (or are both zero, or
    unavailable for the same reason)."""
    current = None
    for span in spans:
        if span[0] == span[1]:
            continue
        if current is not None and span[0] == current[1] and span[2] == current[2]:
            kind = span[2]
            if (kind == _ZERO
                    or (kind == _NONE and span[5] == current[5])
                    or (kind in (_PAGES, _FILE) and span[3] == current[3]
                        and span[4] == current[4] + (current[1] - current[0]))):
                current[1] = span[1]
                continue
        if current is not None:
            yield tuple(current)
        current = list(span)
    if current is not None:
        yield tuple(current)


class _Files:
    """File descriptors opened read-only for one read or stream, closed at the end."""

    def __init__(self):
        self._fds = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _fd(self, path):
        fd = self._fds.get(path)
        if fd is None:
            # a regular file, never a link at the name itself (a pages-N.img linking to a
            # host file would show that file's bytes as memory), or UnreadableImageError;
            # links on the way (parent/, a root's files resolved inside it) are followed
            fd, _info = open_untrusted(path, nofollow=True)
            self._fds[path] = fd
        return fd

    def pread_upto(self, path, length, offset):
        """Up to ``length`` bytes at ``offset`` (fewer only at the end of the file)."""
        fd = self._fd(path)
        data = os.pread(fd, length, offset)
        if len(data) == length or not data:
            return data
        parts = [data]
        got = len(data)
        while got < length:
            more = os.pread(fd, length - got, offset + got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def pread(self, path, length, offset):
        """Exactly ``length`` bytes at ``offset``; a short file is a TruncatedError."""
        data = self.pread_upto(path, length, offset)
        if len(data) != length:
            raise TruncatedError(path, "page data", length, len(data), offset)
        return data


class AddressSpace:
    """The memory of one process as CRIU would restore it.

    Built by :class:`crit_plus.graph.Process` from its VMAs (each with the file
    behind it and a :class:`Backing`), its pagemap (a :class:`PageTable`, or
    None with ``problem`` saying why there is none) and the checkpoint's
    :class:`PageStore`; ``start_stack`` (``mm.start_stack``) names the main stack.
    """

    def __init__(self, name: str, layout: Sequence[tuple], table: PageTable | None,
                 store: PageStore, problem: str | None = None, path: str | None = None,
                 start_stack: int | None = None) -> None:
        self.name = name
        self.path = path or os.path.join(store.directory, name)
        self._table = table
        self._store = store
        self._problem = problem
        findings = list(table.findings) if table is not None else []
        # CRIU's VMA_AREA_GUARD entries (MADV_GUARD_INSTALL regions, appended after the VMAs
        # by collect_madv_guards) lie inside real VMAs: not VMAs, not in /proc/PID/maps;
        # ``guards`` keeps their (start, end), :attr:`mappings` leaves them out
        self.guards = tuple((item[0].start, item[0].end) for item in layout
                            if int(item[0].status) & _GUARD)
        if self.guards:
            layout = [item for item in layout if not int(item[0].status) & _GUARD]
        empty = [(f"VMA {item[0].start:#x}-{item[0].end:#x} is empty or ends before it starts; "
                  "left out", named(vaddr=f"{item[0].start:#x}"))
                 for item in layout if item[0].end <= item[0].start]
        _cap(findings, empty, ERROR, "vma-empty", name, "empty VMAs")
        if empty:
            layout = [item for item in layout if item[0].end > item[0].start]
        ordered = layout
        starts = [item[0].start for item in layout]
        if not _increasing(starts):  # CRIU writes them sorted; sort anything else
            ordered = sorted(layout, key=lambda item: (item[0].start, item[0].end))
            if [item[0] for item in ordered] != [item[0] for item in layout]:
                findings.append(Finding(WARNING, "vma-unsorted", "VMAs are not sorted", name))
            starts = [item[0].start for item in ordered]
        ends = [item[0].end for item in ordered]
        if table is not None:
            counts = table.count_ranges(zip(starts, ends), store.count_maps)
        else:
            counts = [_NO_COUNTS] * len(ordered)
        self.mappings = tuple(Mapping(vma, file, backing, pages, vma_kind(vma, start_stack),
                                      holds_start_stack(vma, start_stack))
                              for (vma, file, backing), pages in zip(ordered, counts))
        self._starts = starts
        self._ends = ends
        self._check_vmas(findings)
        self._layout_findings = tuple(findings)

    # -- layout ------------------------------------------------------------------------
    @property
    def vmas(self) -> tuple[Mapping, ...]:
        """The :class:`Mapping` of every VMA, by address."""
        return self.mappings

    @property
    def runs(self) -> tuple[Run, ...]:
        """The :class:`Run` of every pagemap entry, in image order."""
        return self._table.runs if self._table is not None else ()

    @property
    def pages_id(self) -> int | None:
        """The id of this process's ``pages-<id>.img``, or None."""
        return self._table.pages_id if self._table is not None else None

    @property
    def pages_path(self) -> str | None:
        """The path of this process's ``pages-<id>.img``, or None."""
        return self._table.pages_path if self._table is not None else None

    def find(self, vaddr: int) -> Mapping | None:
        """The :class:`Mapping` holding ``vaddr``, or None."""
        i = bisect_right(self._starts, vaddr) - 1
        if i >= 0 and vaddr < self._ends[i]:
            return self.mappings[i]
        return None

    def pages_by_kind(self) -> dict[str, int]:
        """Pages of the pagemap by state: ``{"present": n, "parent": n, "lazy": n}``
        (and ``none`` for entries with no data flag, if any)."""
        if self._table is None:
            return {"present": 0, "parent": 0, "lazy": 0}
        return self._table.pages_by_state()

    def unavailable_pages(self, mapping: Mapping) -> int:
        """Pages of ``mapping`` the pagemap lists as present or in parent whose data
        cannot be found (a pages file missing or short, a parent missing or without
        them): the pages a restore would fail on.  Lazy pages are not counted."""
        table = self._table
        if table is None:
            return 0
        missing = 0
        for s, e, i in table.segments(mapping.start, mapping.end):
            if i < 0:
                continue
            flags = table.flags[i]
            if flags & _F_PARENT:
                spans = self._store.from_parent(table.name, s, e)
            elif flags & _F_PRESENT:
                spans = table.data_spans(i, s, e)
            else:
                continue
            missing += sum(-((start - stop) // PAGE_SIZE)  # a partly missing page counts
                           for start, stop, kind, _path, _offset, _reason in spans
                           if kind == _NONE)
        return missing

    def pages_by_flags(self) -> dict[int, int]:
        """Pages of the pagemap by raw flags value (as ``FACTS.json`` counts them)."""
        counts: dict[int, int] = {}
        for run in self.runs:
            counts[int(run.flags)] = counts.get(int(run.flags), 0) + run.npages
        return counts

    # -- findings ----------------------------------------------------------------------
    @functools.cached_property
    def findings(self) -> tuple[Finding, ...]:
        """Problems of the pagemap, the VMAs and the parent chain, as :class:`Finding`."""
        found = list(self._layout_findings)
        self._check_runs(found)
        self._check_sources(found)
        return tuple(found)

    def _check_vmas(self, findings):
        overlaps = []
        starts, ends = self._starts, self._ends
        for i in range(1, len(starts)):
            if starts[i] < ends[i - 1]:
                overlaps.append((f"VMA {starts[i]:#x}-{ends[i]:#x} overlaps "
                                 f"{starts[i - 1]:#x}-{ends[i - 1]:#x}",
                                 named(vaddr=f"{starts[i]:#x}")))
        _cap(findings, overlaps, ERROR, "vma-overlap", self.name, "overlapping VMAs")

    def _check_runs(self, findings):
        table = self._table
        if table is None:
            return
        outside = []
        for start, end in zip(table.starts, table.ends):
            uncovered = self._uncovered(start, end)
            if uncovered:
                outside.append((f"pages {start:#x}-{end:#x}: {uncovered // PAGE_SIZE} of them "
                                "are in no VMA", named(vaddr=f"{start:#x}")))
        _cap(findings, outside, ERROR, "pagemap-outside-vma", self.name,
             "entries outside every VMA")

    def _uncovered(self, start, end):
        missing = 0
        pos = start
        i = bisect_right(self._starts, pos) - 1
        if i >= 0 and end <= self._ends[i]:
            return 0  # the usual case: one VMA holds the whole entry
        if i < 0:
            i = 0
        while pos < end:
            if i < len(self.mappings) and self._starts[i] <= pos < self._ends[i]:
                pos = min(end, self._ends[i])
                i += 1
                continue
            if i < len(self.mappings) and self._ends[i] <= pos:
                i += 1
                continue
            nxt = self._starts[i] if i < len(self.mappings) else end
            stop = min(end, max(nxt, pos + 1))
            missing += stop - pos
            pos = stop
        return missing

    def _check_sources(self, findings):
        """Follow PE_PARENT runs into the parent chain and shared objects into their
        pagemaps; report what a restore could not find."""
        table = self._table
        problems: dict[str, tuple[int, int]] = {}
        if table is not None:
            for i, flags in enumerate(table.flags):
                if flags & _F_PARENT:
                    start, end = table.starts[i], table.ends[i]
                    spans = self._store.from_parent(table.name, start, end)
                    for s, e, kind, _path, _offset, reason in spans:
                        if kind == _NONE:
                            pages, first = problems.get(reason, (0, s))
                            problems[reason] = (pages + (e - s) // PAGE_SIZE, first)
        for reason, (pages, first) in problems.items():
            findings.append(Finding(ERROR, "parent-pages", f"{pages} pages marked in parent: "
                                    f"{reason}", self.name, named(vaddr=f"{first:#x}")))
        seen = set()
        for mapping in self.mappings:
            backing = mapping.backing
            if backing.kind != "shmem" or backing.shmid in seen:
                continue
            seen.add(backing.shmid)
            shm = self._store.table(f"pagemap-shmem-{backing.shmid}.img")
            if isinstance(shm, str):
                findings.append(Finding(
                    ERROR, "missing-shmem",
                    f"shared memory {mapping.start:#x}-{mapping.end:#x} needs {shm}", self.name,
                    named(vaddr=f"{mapping.start:#x}")))

    # -- resolving ---------------------------------------------------------------------
    def _spans(self, start, end):
        mappings = self.mappings
        count = len(mappings)
        i = bisect_right(self._starts, start) - 1
        if i < 0:
            i = 0
        pos = start
        while pos < end:
            while i < count and self._ends[i] <= pos:
                i += 1
            if i < count and self._starts[i] <= pos:
                mapping = mappings[i]
                stop = min(end, mapping.end)
                yield from self._vma_spans(mapping, pos, stop)
                pos = stop
                i += 1
                continue
            stop = min(end, self._starts[i]) if i < count else end
            yield pos, stop, _NONE, None, 0, "not mapped"
            pos = stop

    def _vma_spans(self, mapping, start, end):
        table = self._table
        if table is None:
            yield start, end, _NONE, None, 0, self._problem or "the process has no pagemap"
            return
        yield from resolve(self._store, table, start, end,
                           lambda s, e: self._backing_spans(mapping, s, e))

    def _backing_spans(self, mapping, start, end):
        backing = mapping.backing
        kind = backing.kind
        if kind == "zero":
            yield start, end, _ZERO, None, 0, None
            return
        if kind == "none":
            yield start, end, _NONE, None, 0, backing.reason
            return
        delta = mapping.start - mapping.pgoff  # vaddr = object offset + delta
        for s, e, k, path, offset, reason in self._object_spans(backing, start - delta,
                                                                end - delta):
            yield s + delta, e + delta, k, path, offset, reason

    def _object_spans(self, backing, start, end):
        """Spans of bytes [start, end) of a shared object or file."""
        limit = end
        if backing.size is not None:
            limit = min(end, round_up(backing.size))
        if start < limit:
            kind = backing.kind
            if kind == "shmem":
                name = f"pagemap-shmem-{backing.shmid}.img"
                table = self._store.table(name)
                if isinstance(table, str):
                    yield start, limit, _NONE, None, 0, table
                else:
                    yield from resolve(self._store, table, start, limit, _zeros)
            elif kind == "file":
                yield from _file_spans(backing.path, backing.size, ((0, backing.size, 0),),
                                       start, limit)
            elif kind == "ghost":
                yield from _file_spans(backing.path, backing.size, backing.extents, start, limit)
        if max(start, limit) < end:
            what = "memfd" if backing.kind == "shmem" else "file"
            yield (max(start, limit), end, _NONE, None, 0,
                   f"beyond the end of the mapped {what} ({backing.size} bytes): a restored "
                   "process would get SIGBUS")

    # -- reading -----------------------------------------------------------------------
    def extents(self, vaddr: int, length: int) -> list[Extent]:
        """Where each stretch of [vaddr, vaddr+length) comes from, as :class:`Extent` s."""
        spans = coalesce(self._spans(vaddr, vaddr + length))
        return [Extent(s, e - s, _SOURCE_NAMES[kind], path,
                       offset if kind in (_PAGES, _FILE) else None, reason)
                for s, e, kind, path, offset, reason in spans]

    def shared_counts(self, mapping: Mapping) -> dict[str, int] | None:
        """The shared-memory object's pages inside ``mapping``'s window, by state, and
        ``unlisted`` (pages of the window its pagemap does not list); None when the
        mapping is not of a shared-memory object.  When the object's pagemap cannot be
        read, every page of the window is ``unlisted``."""
        backing = mapping.backing
        if backing.kind != "shmem":
            return None
        table = self._store.table(f"pagemap-shmem-{backing.shmid}.img")
        if isinstance(table, str):
            return {"unlisted": mapping.size // PAGE_SIZE}
        return table.count_pages(mapping.pgoff, mapping.pgoff + mapping.size)

    def read(self, vaddr: int, length: int) -> bytes:
        """The ``length`` bytes at ``vaddr`` as CRIU would restore them.

        Raises :class:`UnavailableError` if any of them cannot be given (see
        :meth:`stream` to get what can be read with markers for the rest).
        """
        if length < 0:
            raise ValueError("length must not be negative")
        pieces = []
        with _Files() as files:
            for s, e, kind, path, offset, reason in coalesce(self._spans(vaddr, vaddr + length)):
                if kind == _NONE:
                    raise UnavailableError(self.path, s, e - s, reason)
                if kind == _ZERO:
                    pieces.append(bytes(e - s))
                else:
                    pieces.append(files.pread(path, e - s, offset))
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    def stream(self, vaddr: int, length: int,
               chunk_size: int = CHUNK_SIZE) -> Iterator[tuple[int, bytes | Unavailable]]:
        """Yield ``(address, bytes | Unavailable)`` covering [vaddr, vaddr+length) in order.

        Each data piece is at most ``chunk_size`` bytes; an unreadable stretch
        is one :class:`Unavailable` marker.  Memory use is bounded by the chunk.
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        zeros = None
        with _Files() as files:
            for s, e, kind, path, offset, reason in coalesce(self._spans(vaddr, vaddr + length)):
                if kind == _NONE:
                    yield s, Unavailable(s, e - s, reason)
                    continue
                for pos in range(s, e, chunk_size):
                    n = min(chunk_size, e - pos)
                    if kind == _ZERO:
                        if zeros is None:
                            zeros = bytes(chunk_size)
                        yield pos, zeros if n == chunk_size else bytes(n)
                    else:
                        yield pos, files.pread(path, n, offset + (pos - s))

    def iter_present(self,
                     chunk_size: int = CHUNK_SIZE) -> Iterator[tuple[int, bytes | Unavailable]]:
        """Yield ``(vaddr, bytes)`` for every PE_PRESENT page of this checkpoint.

        Pieces follow the pages file's order, at most ``chunk_size`` bytes each
        (small runs are read together and split).  Where the pages file is
        missing or short, the data is an :class:`Unavailable` marker instead.
        """
        table = self._table
        if table is None:
            return
        present = [run for run in table.runs if run.file is not None and run.npages > 0]
        batch: list[tuple[int, int, int]] = []  # (vaddr, file offset, size)
        batch_bytes = 0
        with _Files() as files:
            for run in present:
                offset = run.file_offset
                if offset is None:  # not in the pages file (left out above)
                    continue
                size = run.size
                if batch and batch_bytes + size > chunk_size:
                    yield from self._emit(files, table, batch)
                    batch, batch_bytes = [], 0
                if size * 4 >= chunk_size:  # large runs: read directly, no batching copy
                    if batch:
                        yield from self._emit(files, table, batch)
                        batch, batch_bytes = [], 0
                    # only what the pages file holds is read; the rest is one marker
                    have = max(0, min(size, table.data_end - offset))
                    for k in range(0, have, chunk_size):
                        n = min(chunk_size, have - k)
                        yield from self._emit(files, table,
                                              [(run.vaddr + k, offset + k, n)])
                    if have < size:
                        yield run.vaddr + have, Unavailable(run.vaddr + have, size - have,
                                                            table.unavailable_reason)
                    continue
                batch.append((run.vaddr, offset, size))
                batch_bytes += size
            if batch:
                yield from self._emit(files, table, batch)

    def _emit(self, files, table, batch):
        base = batch[0][1]
        total = batch[-1][1] + batch[-1][2] - base
        data = files.pread_upto(table.pages_path, total, base) if table.pages_size is not None \
            else b""
        # merge runs contiguous in both address and file
        groups: list[list[int]] = []
        for vaddr, offset, size in batch:
            if groups and groups[-1][0] + groups[-1][2] == vaddr and \
                    groups[-1][1] + groups[-1][2] == offset:
                groups[-1][2] += size
            else:
                groups.append([vaddr, offset, size])
        for vaddr, offset, size in groups:
            rel = offset - base
            have = max(0, min(size, len(data) - rel))
            if have:
                yield vaddr, data if (rel == 0 and have == len(data)) else data[rel:rel + have]
            if have < size:
                yield vaddr + have, Unavailable(vaddr + have, size - have,
                                                table.unavailable_reason)

    def search(self, needle: bytes, chunk_size: int = CHUNK_SIZE) -> Iterator[int]:
        """Yield every address where ``needle`` occurs in readable memory, by address.

        Reads VMA by VMA through :meth:`stream`; unavailable stretches are skipped.
        """
        needle = bytes(needle)
        if not needle:
            raise ValueError("needle must not be empty")
        keep = len(needle) - 1
        for mapping in self.mappings:
            tail, tail_at = b"", mapping.start
            for addr, data in self.stream(mapping.start, mapping.size, chunk_size):
                if isinstance(data, Unavailable):
                    tail = b""
                    continue
                if tail and tail_at + len(tail) == addr:
                    buf, base = tail + data, tail_at
                else:
                    buf, base = data, addr
                at = buf.find(needle)
                while at != -1:
                    yield base + at
                    at = buf.find(needle, at + 1)
                if keep:
                    tail = buf[-keep:]
                    tail_at = base + len(buf) - len(tail)


def _zeros(start, end):
    yield start, end, _ZERO, None, 0, None


def _file_spans(path, size, extents, start, end):
    """Spans of bytes [start, end) of a file whose data lies at ``extents``
    ((file_offset, length, offset_in_path), sorted); bytes in no extent but below
    the page-rounded size are zeros."""
    pos = start
    for file_offset, length, at in extents:
        ext_end = file_offset + length
        if ext_end <= pos:
            continue
        if file_offset >= end:
            break
        if file_offset > pos:
            yield pos, file_offset, _ZERO, None, 0, None
            pos = file_offset
        stop = min(end, ext_end)
        yield pos, stop, _FILE, path, at + (pos - file_offset), None
        pos = stop
        if pos >= end:
            return
    if pos < end:
        yield pos, end, _ZERO, None, 0, None


_KERNEL = int(VmaStatus.VVAR | VmaStatus.VSYSCALL)
_GUARD = int(VmaStatus.GUARD)
_SHMEM = int(VmaStatus.ANON_SHARED | VmaStatus.SYSVIPC)
_FILE_STATUS = int(VmaStatus.FILE_PRIVATE | VmaStatus.FILE_SHARED)
_RECREATED = int(VmaStatus.AIORING | VmaStatus.SOCKET | VmaStatus.UPROBES | VmaStatus.SHSTK)


def backing_for(vma: Vma, file: FileObject | None, files: FileTable | None, root: str | None,
                cache: dict | None = None) -> Backing:
    """The :class:`Backing` of ``vma`` given the file it maps (or None).

    ``files`` is the checkpoint's :class:`~crit_plus.files.FileTable` (for
    ghost contents), ``root`` the directory standing for ``/`` or None;
    ``cache`` (a dict the caller keeps) saves resolving one file per VMA.
    """
    status = int(vma.status)
    if status & _KERNEL:
        return Backing.unavailable(f"{vma_kind(vma)} pages are provided by the kernel, not dumped")
    if status & _SHMEM:
        return Backing.shmem(vma.shmid)
    if status & _FILE_STATUS:
        if file is None:
            return Backing.unavailable(f"the mapped file (id {vma.shmid}) is not in files.img")
        if cache is None:
            return _file_backing(file, files, root)
        if file.id not in cache:
            cache[file.id] = _file_backing(file, files, root)
        return cache[file.id]
    if status & _RECREATED:
        return Backing.unavailable(f"{vma_kind(vma)} memory is recreated by the restore, "
                                   "not dumped")
    return _ZERO_BACKING


def _file_backing(file, files, root):
    from decoders.flags import FdType

    from .files import resolve_in_root

    if file.type == FdType.MEMFD:
        shmid = file.details.get("shmid")
        if shmid is None:
            return Backing.unavailable(f"memfd inode {file.details.get('inode_id')} "
                                       "is not in memfd.img")
        return Backing.shmem(shmid, file.details.get("size"))
    if file.type != FdType.REG:
        return Backing.unavailable(f"the mapped {file.kind} file cannot be read")
    ghost = files.ghost(file.id) if files is not None else None
    if ghost is not None:
        return Backing.ghost(ghost)
    if file.details.get("remap") is not None and file.details.get("link_remap_path"):
        path = file.details["link_remap_path"]
    else:
        path = file.name
    if root is None:
        return Backing.unavailable(f"{path} is not in the images, and no root directory "
                                   "(a copy of the processes' /) was given to read it from")
    host = resolve_in_root(root, path)
    if host is None or not os.path.isfile(host):
        return Backing.unavailable(f"{path} is not found under {root}")
    size = _file_size(host)
    recorded = file.details.get("size")
    if recorded is not None and size != recorded:
        return Backing.unavailable(f"{host} has {size} bytes but was {recorded} at dump time: "
                                   "it changed since")
    return Backing.file(host, size)


_ZERO_BACKING = Backing("zero")
