"""The memory section: for each paired process, its VMAs (:mod:`.diff_vmas`) and,
unless asked not to, its page contents (:mod:`.diff_pages`).

Processes are planned first (which stretches of pages to compare, and how many
bytes that reads, for the progress bar), then compared one after the other
with one :class:`~.diff_pages.PageReader`: two buffers of ``chunk_size``
bytes, whatever the checkpoints' size.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from decoders.flags import PAGE_SIZE

from .diff_pages import (CHUNK_SIZE, HASH_NAME, Locator, PageCounts, PageReader,
                         compare_process, iter_tasks, task_bytes)
from .diff_vmas import VmaView, match_vmas

#: Tasks (stretches of pages to compare) kept from planning to comparing, over all
#: processes; a process planned beyond this is planned again when compared.
MAX_KEPT_TASKS = 1 << 18

#: Bytes of page data between two progress updates.
PROGRESS_STEP = 32 << 20


@dataclass(frozen=True)
class VmaDiff:
    """One VMA row: its ``change``, both views, the fields that differ, its pages.

    ``pages`` is None when contents were not compared; ``changed_ranges`` holds
    up to :data:`MAX_RANGES` ``(start, end)`` runs of changed pages, and
    ``more_ranges`` counts the runs left out.
    """

    change: str
    old: VmaView | None
    new: VmaView | None
    fields: tuple = ()
    pages: PageCounts | None = None
    changed_ranges: tuple = ()
    more_ranges: int = 0

    @property
    def view(self):
        """The NEW view, or the OLD one for a removed VMA."""
        return self.new if self.new is not None else self.old

    @property
    def differs(self):
        """True when the VMA or any of its pages changed."""
        return self.change != "same" or (self.pages is not None and self.pages.differs)


@dataclass(frozen=True)
class ProcessMemoryDiff:
    """The memory of one paired process: VMA rows in address order and page totals.

    ``moved_complete`` is False when more differing pages than
    :data:`MAX_DIGESTS` were seen (``moved`` is then a lower bound).
    """

    old_pid: int
    new_pid: int
    comm: str | None
    vmas: tuple
    pages: PageCounts | None
    moved_complete: bool = True

    @property
    def differs(self):
        """True when any VMA or page differs."""
        return any(row.differs for row in self.vmas)

    @property
    def vma_changes(self):
        """``{change: count}`` of the rows that are not ``same``."""
        counts = {}
        for row in self.vmas:
            if row.change != "same":
                counts[row.change] = counts.get(row.change, 0) + 1
        return counts


@dataclass(frozen=True)
class MemoryDiff:
    """The memory section: every paired process, page totals, what was read.

    ``content`` says whether page contents were compared; ``pages`` counts the
    pages the checkpoints hold (see :mod:`.diff_pages`); ``bytes_read`` is the
    page data read from the checkpoints' pages images, both sides together;
    ``file_bytes_read`` what was read from files (under a root, ghost files) to
    compare held pages with a file mapping's contents; ``hash`` names the digest
    used for moved pages.
    """

    processes: tuple
    content: bool
    pages: PageCounts | None
    bytes_read: int
    file_bytes_read: int = 0
    hash: str = HASH_NAME

    @property
    def differs(self):
        """True when any paired process's memory differs."""
        return any(process.differs for process in self.processes)


# -- the section -------------------------------------------------------------


def _views(process):
    memory = process.memory
    if memory is None:
        return None, []
    return memory, [VmaView.of(mapping) for mapping in memory.vmas]


def _prepare(pairing, content, locator):
    """Match every pair's VMAs and plan its pages: ``[(pair, rows, plan, tasks)]`` and
    the bytes to read (tasks are None when not kept, see :data:`MAX_KEPT_TASKS`)."""
    prepared, total, kept = [], 0, 0
    for pair in pairing.pairs:
        old_memory, olds = _views(pair.old)
        new_memory, news = _views(pair.new)
        rows, old_row, new_row = match_vmas(olds, news)
        plan = (old_memory, new_memory, olds, news, old_row, new_row)
        tasks = None
        if content:
            tasks = list(iter_tasks(*plan))
            total += sum(task_bytes(locator, task) for task in tasks)
            kept += len(tasks)
            if kept > MAX_KEPT_TASKS:  # planned again when its turn comes
                kept -= len(tasks)
                tasks = None
        prepared.append((pair, rows, plan, tasks))
    return prepared, total


def _process_diff(pair, rows, per_row, complete, content):
    vmas = tuple(VmaDiff(change, old, new, fields, pages, ranges, more)
                 for (change, old, new, fields), (pages, ranges, more) in zip(rows, per_row))
    vmas = tuple(sorted(vmas, key=lambda row: (row.view.start, row.view.end)))
    pages = sum((row.pages for row in vmas), PageCounts()) if content else None
    return ProcessMemoryDiff(pair.old.pid, pair.new.pid, pair.new.comm, vmas, pages, complete)


def diff_memory(pairing, *, content=True, chunk_size=CHUNK_SIZE, progress=None):
    """The :class:`MemoryDiff` of every pair of a :class:`~.diff_processes.Pairing`.

    With ``content`` false no page data is read: VMA rows only.  ``progress``,
    if given, is called with the total bytes to read and returns a context
    manager yielding an object with ``update(n)`` (see :mod:`crit_plus.progress`).
    """
    if chunk_size < PAGE_SIZE or chunk_size % PAGE_SIZE:
        raise ValueError("chunk_size must be a positive multiple of the page size")
    locator = Locator()
    prepared, total = _prepare(pairing, content, locator)
    results = []
    reader = PageReader(chunk_size) if content else None
    try:
        with _progress(progress, total) as bar:
            update = _Batched(bar.update)
            for pair, rows, plan, tasks in prepared:
                per_row, complete = [(None, (), 0)] * len(rows), True
                if content:
                    per_row, complete = compare_process(
                        reader, locator, tasks if tasks is not None else iter_tasks(*plan),
                        len(rows), update)
                results.append(_process_diff(pair, rows, per_row, complete, content))
            update.flush()
    finally:
        if reader is not None:
            reader.close()
    pages = sum((p.pages for p in results), PageCounts()) if content else None
    if reader is None:
        return MemoryDiff(tuple(results), content, pages, 0)
    return MemoryDiff(tuple(results), content, pages, reader.bytes_read, reader.file_bytes_read)


class _NoBar:
    """Progress nobody watches."""

    def update(self, amount):
        """Ignore progress."""


class _Batched:
    """Passes progress on every :data:`PROGRESS_STEP` bytes (a bar redraws on each update)."""

    def __init__(self, update):
        self._update = update
        self._pending = 0

    def __call__(self, amount):
        self._pending += amount
        if self._pending >= PROGRESS_STEP:
            self._update(self._pending)
            self._pending = 0

    def flush(self):
        """Pass on what is left."""
        if self._pending:
            self._update(self._pending)
            self._pending = 0


def _progress(factory, total):
    if factory is None or not total:
        return contextlib.nullcontext(_NoBar())
    return factory(total)
