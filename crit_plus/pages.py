"""Page counts: one type, one tally by VMA kind, one rule for shared pages.

The commands that count pages from the pagemaps (``summarize``, ``rss``, ``mems``,
``size``) take their numbers from here, through :attr:`crit_plus.graph.Process.pages`
and :attr:`crit_plus.graph.Checkpoint.pages`.  Only pagemaps are read, never page
data.  The rule (docs/format.md, "Counting pages"):

- a process's **private** pages are the entries of its ``pagemap-<pid>.img``,
  by state (:func:`crit_plus.memory.page_state`: ``present``, ``parent``,
  ``lazy``, ``none``) — what crit's ``x rss`` and ``FACTS.json`` count;
- a page of a **shared-memory object** (``pagemap-shmem-<shmid>.img``:
  anonymous shared memory, SysV IPC, memfd) belongs to the object.  A
  process's **shared** pages are the object's pages listed inside the windows
  of its VMAs that map it (one count per VMA, as ``/proc/PID/smaps`` sums Rss
  per VMA);  a process's total is private + shared;
- the **checkpoint's** pages are every process's private pages plus every
  object's pages **once** (all its pagemap lists, mapped or not): the present
  ones are what the pages files hold, CRIU's ``pages written`` + ``shared
  pages written``;
- **by kind** (:func:`crit_plus.memory.vma_kind`): private pages under the kind
  of the VMA holding them (``outside-vmas`` for pages of no VMA); for a
  process, shared pages under the kind of the VMA mapping them; for the
  checkpoint, an object's pages once, under the kind of the first VMA (pstree
  order, then address) that maps it, or ``unmapped-shmem`` when none does (a
  memfd only held open).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING

from decoders.flags import PAGE_SIZE

if TYPE_CHECKING:
    from .graph import Checkpoint, Process
    from .memory import AddressSpace, Mapping, PageTable

#: Kind of private pages that lie in no VMA of their process.
OUTSIDE_VMAS = "outside-vmas"
#: Kind of a shared-memory object no VMA maps.
UNMAPPED_SHMEM = "unmapped-shmem"


@dataclass(frozen=True, slots=True)
class PageCounts:
    """Pages by where a restore finds them (pagemap flags, :func:`crit_plus.memory.page_state`).

    ``present``: in this checkpoint's pages files; ``parent``: in the
    ``parent/`` chain (PE_PARENT); ``lazy``: PE_LAZY alone, served by a
    lazy-pages daemon, not in any image; ``none``: entries with no data flag
    (an explicit ``flags`` of 0: CRIU never writes one, so a damaged or hand-made
    pagemap), listed but with no data anywhere.  :attr:`listed` counts all four, as
    crit's ``x rss`` does; every row that shows a total (summarize's ``pages``,
    rss's ``total``, size's ``listed``) is this one.
    """

    present: int = 0
    parent: int = 0
    lazy: int = 0
    none: int = 0

    @property
    def listed(self) -> int:
        """Every page the pagemap lists."""
        return self.present + self.parent + self.lazy + self.none

    @property
    def present_bytes(self) -> int:
        """Bytes of this checkpoint's page data."""
        return self.present * PAGE_SIZE

    @property
    def parent_bytes(self) -> int:
        """Bytes of page data the parent chain holds."""
        return self.parent * PAGE_SIZE

    def __add__(self, other: PageCounts) -> PageCounts:
        return PageCounts(self.present + other.present, self.parent + other.parent,
                          self.lazy + other.lazy, self.none + other.none)

    def __sub__(self, other: PageCounts) -> PageCounts:
        return PageCounts(self.present - other.present, self.parent - other.parent,
                          self.lazy - other.lazy, self.none - other.none)

    @staticmethod
    def listed_in(counts: dict | None) -> int:
        """:attr:`listed` of a ``{"present": n, ...}`` dict (missing keys 0), without making
        a :class:`PageCounts`: once per VMA, that object is most of the cost."""
        if not counts:
            return 0
        return (counts.get("present", 0) + counts.get("parent", 0) + counts.get("lazy", 0)
                + counts.get("none", 0))

    @classmethod
    def of(cls, counts: dict | None) -> PageCounts:
        """From a ``{"present": n, "parent": n, "lazy": n, "none": n}`` dict (missing keys 0)."""
        if not counts:
            return cls()
        return cls(counts.get("present", 0), counts.get("parent", 0), counts.get("lazy", 0),
                   counts.get("none", 0))


_ZERO = PageCounts()


@dataclass(frozen=True, slots=True)
class KindTally:
    """The VMAs of one kind and the pages they hold.

    ``mapped`` is bytes; ``private`` the pagemap pages inside these VMAs,
    ``shared`` the shared-memory objects' pages (see the module docstring for
    when they are counted); ``unlisted`` pages are mapped but in no pagemap
    entry (the process's, or for shared memory the object's): zeros, or the
    backing file's pages.
    """

    kind: str
    vmas: int = 0
    mapped: int = 0
    private: PageCounts = _ZERO
    shared: PageCounts = _ZERO
    unlisted: int = 0

    @property
    def pages(self) -> PageCounts:
        """Private and shared pages together."""
        return self.private + self.shared

    @property
    def total(self) -> int:
        """Every page listed (private + shared)."""
        return self.private.listed + self.shared.listed

    def __add__(self, other: KindTally) -> KindTally:
        return KindTally(self.kind, self.vmas + other.vmas, self.mapped + other.mapped,
                         self.private + other.private, self.shared + other.shared,
                         self.unlisted + other.unlisted)


def _sorted(kinds):
    """Kind tallies, most pages first, then by name."""
    return tuple(sorted(kinds.values(), key=lambda k: (-k.total, -k.private.present, k.kind)))


@dataclass(frozen=True, slots=True)
class MappingPages:
    """The pages of one VMA: ``private`` (its process's pagemap), ``shared`` (the
    object's pages in its window, None for private mappings), ``unlisted``."""

    private: PageCounts
    shared: PageCounts | None
    unlisted: int


def mapping_pages(memory: AddressSpace, mapping: Mapping) -> MappingPages:
    """The :class:`MappingPages` of ``mapping`` of ``memory`` (an
    :class:`~crit_plus.memory.AddressSpace`)."""
    own = mapping.pages
    window = memory.shared_counts(mapping)
    if window is None:
        return MappingPages(PageCounts.of(own), None, own.get("unlisted", 0))
    return MappingPages(PageCounts.of(own), PageCounts.of(window), window.get("unlisted", 0))


@dataclass(frozen=True, slots=True)
class ProcessPages:
    """A process's pages: ``private`` (its whole pagemap), ``shared`` (objects' pages in
    its VMAs' windows), ``kinds`` (:class:`KindTally` by VMA kind, most pages first;
    they add up to ``private`` and ``shared``).  ``unknown`` says why the private pages
    are not known (a process with memory whose pagemap is missing or cut: the message
    names the file and offset); they are then 0 here and must be shown as unknown."""

    vmas: int
    private: PageCounts
    shared: PageCounts
    kinds: tuple
    unknown: str | None = None

    @property
    def known(self) -> bool:
        """True when the private pages are known (:attr:`unknown` is None)."""
        return self.unknown is None

    @property
    def total(self) -> int:
        """Private + shared pages listed."""
        return self.private.listed + self.shared.listed

    def kind(self, name: str) -> KindTally:
        """The tally of kind ``name`` (an empty one when there is none)."""
        return next((k for k in self.kinds if k.kind == name), KindTally(name))


#: The pages of a process without memory or pagemap images (a zombie, a missing image).
_NO_PAGES = ProcessPages(0, _ZERO, _ZERO, ())


def process_pages(memory: AddressSpace | None, table: PageTable | None = None,
                  unknown: str | None = None) -> ProcessPages:
    """The :class:`ProcessPages` of a process: its
    :class:`~crit_plus.memory.AddressSpace` (None: no mm image, a zombie) and its
    pagemap's :class:`~crit_plus.memory.PageTable` (None: none, or unreadable, with
    ``unknown`` saying why the private pages are then not known)."""
    if memory is None and table is None:
        return _NO_PAGES  # one object for every process without images
    private = PageCounts.of(table.pages_by_state()) if table is not None else _ZERO
    sums: dict[str, list[int]] = {}  # kind -> [vmas, mapped, 4 private, 4 shared, unlisted]
    for mapping in memory.vmas if memory is not None else ():
        own = mapping.pages  # plain ints here: 100 000 VMAs must stay cheap
        entry = sums.get(mapping.kind)
        if entry is None:
            entry = sums[mapping.kind] = [0] * 11
        entry[0] += 1
        entry[1] += mapping.size
        entry[2] += own.get("present", 0)
        entry[3] += own.get("parent", 0)
        entry[4] += own.get("lazy", 0)
        entry[5] += own.get("none", 0)
        if mapping.backing.kind == "shmem" and memory is not None:
            counts = mapping_pages(memory, mapping)
            window = counts.shared or _ZERO
            entry[6] += window.present
            entry[7] += window.parent
            entry[8] += window.lazy
            entry[9] += window.none
            entry[10] += counts.unlisted
        else:
            entry[10] += own.get("unlisted", 0)
    kinds = {kind: KindTally(kind, v[0], v[1], PageCounts(*v[2:6]), PageCounts(*v[6:10]), v[10])
             for kind, v in sums.items()}
    in_vmas = sum((k.private for k in kinds.values()), _ZERO)
    shared = sum((k.shared for k in kinds.values()), _ZERO)
    outside = private - in_vmas
    if outside != _ZERO:
        kinds[OUTSIDE_VMAS] = KindTally(OUTSIDE_VMAS, private=outside)
    vmas = len(memory.vmas) if memory is not None else 0
    return ProcessPages(vmas, private, shared, _sorted(kinds), unknown)


@dataclass(frozen=True, slots=True)
class SharedObject:
    """One shared-memory object (``pagemap-shmem-<shmid>.img``): its pages (None when its
    pagemap cannot be read), the kind it is counted under and the pids mapping it."""

    shmid: int
    pages: PageCounts | None
    kind: str
    mapped_by: tuple
    pages_id: int | None


@dataclass(frozen=True, slots=True)
class CheckpointPages:
    """The checkpoint's pages: every process's ``private`` pages, every object's pages
    once (``shared``), ``kinds`` (:class:`KindTally`, objects counted once) and
    ``objects`` (:class:`SharedObject`, by shmid).  ``unknown`` names the pids whose
    private pages are not known (:attr:`ProcessPages.unknown`: a missing or cut
    pagemap): they count 0 here, so ``private`` and ``total`` are then a lower bound."""

    private: PageCounts
    shared: PageCounts
    kinds: tuple
    objects: tuple
    unknown: tuple = ()

    @property
    def total(self) -> PageCounts:
        """Private and shared pages together: what the pages files and the parent chain hold."""
        return self.private + self.shared


def checkpoint_pages(checkpoint: Checkpoint) -> CheckpointPages:
    """The :class:`CheckpointPages` of a :class:`~crit_plus.graph.Checkpoint`."""
    kinds: dict[str, KindTally] = {}
    users: dict[int, dict[int, None]] = {}  # shmid -> pids in order, each once
    first_kind: dict[int, str] = {}
    private = _ZERO
    unknown = []
    for process in checkpoint.processes:
        pages = process.pages
        private += pages.private
        if pages.unknown is not None:
            unknown.append(process.pid)
        memory = process.memory
        for mapping in memory.vmas if memory is not None else ():
            backing = mapping.backing
            if backing.kind == "shmem" and backing.shmid is not None:
                users.setdefault(backing.shmid, {})[process.pid] = None
                first_kind.setdefault(backing.shmid, mapping.kind)
        for tally in pages.kinds:  # objects' pages are added once, below
            tally = KindTally(tally.kind, tally.vmas, tally.mapped, tally.private, _ZERO,
                              tally.unlisted)
            kinds[tally.kind] = kinds[tally.kind] + tally if tally.kind in kinds else tally
    objects, shared = [], _ZERO
    store = checkpoint.page_store
    for shmid in checkpoint.shmem_ids:
        table = store.table(f"pagemap-shmem-{shmid}.img")
        counts = None if isinstance(table, str) else PageCounts.of(table.pages_by_state())
        kind = first_kind.get(shmid, UNMAPPED_SHMEM)
        objects.append(SharedObject(shmid, counts, kind, tuple(users.get(shmid, ())),
                                    None if isinstance(table, str) else table.pages_id))
        if counts is not None:
            shared += counts
            tally = KindTally(kind, shared=counts)
            kinds[kind] = kinds[kind] + tally if kind in kinds else tally
    return CheckpointPages(private, shared, _sorted(kinds), tuple(objects), tuple(unknown))


@dataclass(frozen=True, slots=True)
class RankedMapping:
    """One mapping of the one biggest-mappings ranking (:func:`biggest_mappings`):
    ``process`` (a :class:`~crit_plus.graph.Process`), ``mapping`` and its ``pages``."""

    process: Process
    mapping: Mapping
    pages: MappingPages

    @property
    def counted(self) -> PageCounts:
        """The pages it holds: the object's in its window for a shared mapping, else
        its own (private) pages."""
        return self.pages.shared if self.pages.shared is not None else self.pages.private

    @property
    def size(self) -> int:
        """The pages it is ranked by: :attr:`counted`'s listed pages."""
        return self.counted.listed


def ranking_key(size: int, pid: int, start: int) -> tuple[int, int, int]:
    """The one order of "biggest" mappings: most pages first, then the lower pid, then
    the lower start address (docs/format.md, "Counting pages")."""
    return (-size, pid, start)


def biggest_mappings(checkpoint: Checkpoint, top: int) -> tuple[RankedMapping, ...]:
    """The ``top`` mappings holding the most pages (:attr:`RankedMapping.size`; a
    shared mapping counts its object's pages in its window, so several processes can
    show the same pages), in :func:`ranking_key` order; mappings holding no page are
    not ranked.  What ``summarize`` and ``size --top`` both list."""
    ranked = []
    for process in checkpoint.processes:
        memory = process.memory
        if memory is None:
            continue
        for mapping in memory.vmas:
            item = RankedMapping(process, mapping, mapping_pages(memory, mapping))
            if item.size:
                ranked.append(item)
    return tuple(heapq.nsmallest(top, ranked, key=lambda item: ranking_key(
        item.size, item.process.pid, item.mapping.start)))
