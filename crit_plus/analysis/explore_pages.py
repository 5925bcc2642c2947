"""The mappings and resident-pages explorers (``mems``, ``rss``).

Part of :mod:`crit_plus.analysis.explore`, which exports these names; a module
of its own so that ``ps`` does not create these records.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..pages import mapping_pages
from .explore import select

# -- mappings ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VmaRow:
    """One VMA: the ``/proc/PID/maps`` facts plus its pages.

    ``pages`` counts pagemap pages by state (``present``, ``parent``, ``lazy``)
    and ``unlisted``, and ``unavailable``: the present or in-parent pages among them
    whose data cannot be found (:meth:`crit_plus.memory.Memory.unavailable_pages`);
    ``shared`` counts the pages of a shared-memory object
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
    """The mappings of one process; ``pages_unknown`` says why their private page counts
    are not known (the graph's :attr:`~crit_plus.pages.ProcessPages.unknown`: a missing
    or cut pagemap): they are 0 in ``vmas`` then, and shown as unknown."""

    depth: int
    pid: int
    comm: str | None
    state: str | None
    exe: str | None
    vmas: tuple
    pages_unknown: str | None = None


def _vma_row(memory, mapping):
    vma = mapping.vma
    counts = {"present": 0, "parent": 0, "lazy": 0, "unlisted": 0}
    counts.update(mapping.pages)
    counts["unavailable"] = memory.unavailable_pages(mapping)
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
                                  exe.name if exe is not None else None, rows,
                                  process.pages.unknown))
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
    process mapping them).  ``pages_unknown`` says why its private pages are not known
    (a missing or cut pagemap: the file and offset; the graph's
    :attr:`~crit_plus.pages.ProcessPages.unknown`): they are then 0 here, and shown
    as unknown (``?``, null in JSON).
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
    pages_unknown: str | None = None

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
                      tuple(_kind_pages(tally) for tally in pages.kinds), pages.unknown)


def rss_table(checkpoint, pid=None):
    """Resident pages of every process (or of ``pid``), tree order (:class:`ProcessRss`)."""
    return [process_rss(process, depth) for depth, process in select(checkpoint, pid)]


__all__ = [
    "KindPages",
    "ProcessRss",
    "ProcessVmas",
    "VmaRow",
    "process_rss",
    "rss_table",
    "vma_table",
]
