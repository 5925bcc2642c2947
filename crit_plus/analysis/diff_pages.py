"""Page contents of one process compared page by page, address by address.

Counted are the pages the checkpoints hold: a page address of the process
counts when at least one side *holds* it, i.e. its bytes are in that
checkpoint — PE_PRESENT pages in ``pages-<id>.img``, PE_PARENT pages through
``parent/``, pages of shared memory (``pagemap-shmem-<shmid>.img``) inside
the mapping (:func:`holds`).  Over those pages::

    page ::= changed | unchanged | unavailable   mapped on both sides
           | added                               mapped in NEW only
           | removed                             mapped in OLD only

A checkpoint compared with itself thus counts its own pages, all unchanged.
Pages neither side holds (untouched anonymous memory, clean file pages,
lazy pages) are not counted and not compared.

Each side's bytes come from :meth:`crit_plus.memory.AddressSpace.extents`,
i.e. CRIU's restore rules: a page one side holds is compared with what the
other side would restore there — its own page, zeros (unlisted private
anonymous memory) or the file under ``root`` (read from the root, counted
apart: :attr:`PageReader.file_bytes_read`).  A page the other side cannot give
(a file mapping without ``root``, vvar, lazy pages, a pages file cut short) is
``unavailable``: not compared, not a difference.

Reading is streamed in ``chunk_size`` pieces into two reused buffers (memory is
bounded by them): zero against zero, or the same bytes of the same file on
both sides (a checkpoint against itself, a shared ``parent/``), are unchanged
without reading; otherwise a chunk of each side is read and compared as a
whole (``memcmp``), and only a chunk that differs is narrowed down, a
sixteenth at a time, to its pages.

**Moved pages**: a NEW page that differs at its address (changed or added)
whose contents OLD held at another address of the process (a changed or
removed page) is counted as ``moved`` as well (mremap, a buffer copied
elsewhere, ASLR after a restore elsewhere).  Pages are matched by their 64-bit
xxh3 digest (the ``xxhash`` library; only differing, non-zero pages are
hashed, at most ``MAX_DIGESTS`` per side and process).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import xxhash

from decoders.flags import PAGE_SIZE
from decoders.framing import open_untrusted

from ..memory import aligned_buffer, read_into

#: The digest of a page, for pages that moved: xxh3, ~35x cheaper per page than blake2b
#: (docs/commands/diff.md); the library's own function, no wrapper in the page loop.
page_digest = xxhash.xxh3_64_intdigest
HASH_NAME = "xxh3_64"

#: Bytes read at a time from each side (two page-aligned buffers of this size are kept):
#: 256 KiB to 8 MiB measure the same (docs/performance.md); small keeps memory and
#: cache use low, and 16384 pieces for 4 GiB cost little Python time.
CHUNK_SIZE = 256 << 10

#: Files kept open at once (pages files, parents, backing files); the oldest is closed.
MAX_OPEN_FILES = 32

#: Ranges of changed pages listed per VMA; further ones are only counted.
MAX_RANGES = 32

#: Digests of differing pages kept per side and process for moved pages.
MAX_DIGESTS = 1 << 18

_ZERO_PAGE = bytes(PAGE_SIZE)


@dataclass(frozen=True, slots=True)
class PageCounts:
    """Pages by what happened to them (see the module docstring); ``moved`` counts
    pages already counted as changed or added whose contents OLD had elsewhere."""

    changed: int = 0
    unchanged: int = 0
    added: int = 0
    removed: int = 0
    unavailable: int = 0
    moved: int = 0

    @property
    def differs(self):
        """True when any page changed, was added or removed."""
        return bool(self.changed or self.added or self.removed)

    def __add__(self, other):
        return PageCounts(*(a + b for a, b in zip(_counts(self), _counts(other))))


def _counts(pages):
    return (pages.changed, pages.unchanged, pages.added, pages.removed, pages.unavailable,
            pages.moved)


class PageReader:
    """Page data of both sides: files opened as needed (at most :data:`MAX_OPEN_FILES`),
    one reused page-aligned buffer per side, a chunk of zeros.

    ``bytes_read`` counts the page data read from the checkpoints (pages images,
    both sides); ``file_bytes_read`` what was read from files (under a root, ghost
    files) to compare a page one side holds with the file the other side maps.
    """

    def __init__(self, chunk_size):
        self.chunk_size = chunk_size
        self.zeros = bytes(chunk_size)
        self._zero_view = memoryview(self.zeros)
        self._sides = []
        for _side in range(2):
            buffer, offset = aligned_buffer(chunk_size)
            self._sides.append((buffer, offset, memoryview(buffer)[offset:offset + chunk_size]))
        self._fds = {}
        self.bytes_read = 0
        self.file_bytes_read = 0

    def close(self):
        """Close the files and release the buffers."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        for _buffer, _offset, view in self._sides:
            view.release()
        self._zero_view.release()

    def _fd(self, path):
        fd = self._fds.get(path)
        if fd is None:
            if len(self._fds) >= MAX_OPEN_FILES:  # thousands of processes: bounded fds
                os.close(self._fds.pop(next(iter(self._fds))))
            fd = self._fds[path] = open_untrusted(path)[0]
        return fd

    def load(self, side, extent, delta, length):
        """``length`` bytes from ``delta`` into ``extent``, as ``(data, offset, view)``:
        they are ``data[offset:offset+length]`` and ``view[:length]`` — the zero chunk,
        or side ``side``'s buffer filled from the file.  None when the file ends
        before (it changed since the checkpoint was opened)."""
        if extent.source == "zero":
            return self.zeros, 0, self._zero_view
        fd = self._fd(extent.path)
        buffer, base, view = self._sides[side]
        if read_into(fd, view[:length], extent.offset + delta) < length:
            return None
        if extent.source == "pages":
            self.bytes_read += length
        else:
            self.file_bytes_read += length
        return buffer, base, view


def differing_pages(old, base, new, start, size):
    """Offsets of the pages of ``old[base+start : base+start+size]`` that differ from
    ``new[start : start+size]`` (a memoryview), in order.

    ``old`` is a bytes or bytearray: ``old.startswith(new[a:b], base + a)`` compares
    without copying (``memcmp``).  A stretch that differs is cut in sixteen and
    each part compared again, down to single pages, so equal data costs one
    comparison and Python runs only around the pages that differ.
    """
    step = max(PAGE_SIZE, size // 16 // PAGE_SIZE * PAGE_SIZE)
    end = start + size
    for offset in range(start, end, step):
        length = min(step, end - offset)
        if old.startswith(new[offset:offset + length], base + offset):
            continue
        if length <= PAGE_SIZE:
            yield offset
        else:
            yield from differing_pages(old, base, new, offset, length)


_ZERO_DIGEST = page_digest(_ZERO_PAGE)


class _Tally:
    """Page counts, changed ranges and digests of one process, row by row."""

    def __init__(self, rows):
        self.counts = [[0] * 6 for _ in range(rows)]  # PageCounts field order
        self.ranges = [[] for _ in range(rows)]
        self.more = [0] * rows
        self.last_end = [None] * rows
        self.old_digests = set()
        self.new_digests = []  # (row, digest)
        self.complete = True

    def changed_page(self, row, address):
        """Count one changed page at ``address`` and extend the row's ranges."""
        self.counts[row][0] += 1
        ranges = self.ranges[row]
        if self.last_end[row] == address:
            if not self.more[row]:
                ranges[-1][1] = address + PAGE_SIZE
        elif len(ranges) < MAX_RANGES and not self.more[row]:
            ranges.append([address, address + PAGE_SIZE])
        else:
            self.more[row] += 1
        self.last_end[row] = address + PAGE_SIZE

    def full(self, side):
        """True (and moved pages incomplete) when side 0 (OLD) or 1 (NEW) keeps no more digests."""
        if len(self.new_digests if side else self.old_digests) < MAX_DIGESTS:
            return False
        self.complete = False
        return True

    def old_page(self, page):
        """Remember a differing OLD page's contents (for moved pages)."""
        if not self.full(0):
            digest = page_digest(page)
            if digest != _ZERO_DIGEST:
                self.old_digests.add(digest)

    def new_page(self, row, page):
        """Remember a differing NEW page's contents (for moved pages)."""
        if not self.full(1):
            digest = page_digest(page)
            if digest != _ZERO_DIGEST:
                self.new_digests.append((row, digest))

    def finish(self):
        """Count moved pages; return per-row ``(PageCounts, ranges, more)``."""
        old = self.old_digests
        for row, digest in self.new_digests:
            if digest in old:
                self.counts[row][5] += 1
        return [(PageCounts(*counts), tuple(tuple(r) for r in ranges), more)
                for counts, ranges, more in zip(self.counts, self.ranges, self.more)]


class Locator:
    """Where extents' bytes are, to skip comparing bytes with themselves."""

    def __init__(self):
        self._real = {}

    def _location(self, extent):
        real = self._real.get(extent.path)
        if real is None:
            real = self._real[extent.path] = os.path.realpath(extent.path)
        return real, extent.offset

    def needs_reading(self, old, new):
        """True unless the bytes of extents ``old`` and ``new`` (one range) are
        known without reading: unavailable on a side, zero on both, or the same
        bytes of the same file."""
        kinds = (old.source, new.source)
        if "unavailable" in kinds or kinds == ("zero", "zero"):
            return False
        if "zero" in kinds:
            return True
        return self._location(old) != self._location(new)

_COMPARE, _ADDED, _REMOVED = 0, 1, 2


def _sweep(olds, news):
    """Yield ``(start, end, i, j)`` over every address either side maps: ``i``/``j``
    the OLD/NEW VMA holding it, or None.  Both lists are sorted by start."""
    points = sorted({p for view in olds for p in (view.start, view.end)}
                    | {p for view in news for p in (view.start, view.end)})
    i = j = 0
    for start, end in zip(points, points[1:]):
        while i < len(olds) and olds[i].end <= start:
            i += 1
        while j < len(news) and news[j].end <= start:
            j += 1
        in_old = i if i < len(olds) and olds[i].start <= start else None
        in_new = j if j < len(news) and news[j].start <= start else None
        if in_old is not None or in_new is not None:
            yield start, end, in_old, in_new


def _paired_extents(olds, news):
    """Yield ``(start, end, old extent, new extent)`` over two extent lists of one range."""
    i = j = 0
    pos = olds[0].vaddr if olds else None
    while i < len(olds) and j < len(news):
        old, new = olds[i], news[j]
        end = min(old.vaddr + old.length, new.vaddr + new.length)
        yield pos, end, old, new
        pos = end
        if old.vaddr + old.length == end:
            i += 1
        if new.vaddr + new.length == end:
            j += 1


def holds(extent):
    """True when ``extent``'s bytes are in the checkpoint: a pages image (PE_PRESENT,
    PE_PARENT through ``parent/``, shared memory), not zeros, a file or nothing."""
    return extent.source == "pages"


def iter_tasks(old_memory, new_memory, olds, news, old_row, new_row):
    """The work of comparing one process's pages, in address order: ``(what, start,
    end, row, old extent, new extent)`` (``what``: compare, added, removed).  Only
    stretches at least one side :func:`holds` are work: the pages counted."""
    for start, end, i, j in _sweep(olds, news):
        if i is not None and j is not None:
            extents = _paired_extents(old_memory.extents(start, end - start),
                                      new_memory.extents(start, end - start))
            for s, e, old, new in extents:
                if holds(old) or holds(new):
                    yield _COMPARE, s, e, new_row[j], old, new
        elif j is not None:
            for extent in new_memory.extents(start, end - start):
                if holds(extent):
                    yield (_ADDED, extent.vaddr, extent.vaddr + extent.length, new_row[j], None,
                           extent)
        else:
            for extent in old_memory.extents(start, end - start):
                if holds(extent):
                    yield (_REMOVED, extent.vaddr, extent.vaddr + extent.length, old_row[i],
                           extent, None)


def task_bytes(locator, task):
    """Bytes of page data a task reads (both sides), the unit of progress."""
    what, start, end, _row, old, new = task
    if what == _COMPARE:
        return 2 * (end - start) if locator.needs_reading(old, new) else 0
    return end - start  # an added or removed page is held: read for moved pages


def _compare(reader, locator, tally, row, start, end, old, new, update):
    if not locator.needs_reading(old, new):
        unavailable = "unavailable" in (old.source, new.source)
        tally.counts[row][4 if unavailable else 1] += (end - start) // PAGE_SIZE
        return
    chunk = reader.chunk_size
    for pos in range(start, end, chunk):
        length = min(chunk, end - pos)
        a = reader.load(0, old, pos - old.vaddr, length)
        b = reader.load(1, new, pos - new.vaddr, length)
        if a is None or b is None:
            tally.counts[row][4] += (end - pos) // PAGE_SIZE
            return
        (old_data, old_base, old_view), new_view = a, b[2]
        changed = 0
        if not old_data.startswith(new_view[:length], old_base):
            for offset in differing_pages(old_data, old_base, new_view, 0, length):
                changed += 1
                tally.changed_page(row, pos + offset)
                tally.old_page(old_view[offset:offset + PAGE_SIZE])
                tally.new_page(row, new_view[offset:offset + PAGE_SIZE])
        tally.counts[row][1] += length // PAGE_SIZE - changed
        update(2 * length)


def _one_side(reader, tally, row, start, end, extent, side, update):
    """Count added (side 1) or removed (side 0) pages; hash their page data for moved pages."""
    tally.counts[row][3 - side] += (end - start) // PAGE_SIZE
    if tally.full(side):  # no room for their digests: not read at all
        update(end - start)
        return
    chunk = reader.chunk_size
    for pos in range(start, end, chunk):
        length = min(chunk, end - pos)
        loaded = reader.load(side, extent, pos - extent.vaddr, length)
        if loaded is None:
            return
        view = loaded[2]
        for offset in range(0, length, PAGE_SIZE):
            page = view[offset:offset + PAGE_SIZE]
            if side:
                tally.new_page(row, page)
            else:
                tally.old_page(page)
        update(length)


def compare_process(reader, locator, tasks, rows, update):
    """Run a process's tasks (:func:`iter_tasks`); per-row results (see :meth:`_Tally.finish`)
    and whether moved pages were counted completely."""
    tally = _Tally(rows)
    for what, start, end, row, old, new in tasks:
        if what == _COMPARE:
            _compare(reader, locator, tally, row, start, end, old, new, update)
        elif what == _ADDED:
            _one_side(reader, tally, row, start, end, new, 1, update)
        else:
            _one_side(reader, tally, row, start, end, old, 0, update)
    return tally.finish(), tally.complete
