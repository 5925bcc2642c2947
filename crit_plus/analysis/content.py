"""What the page data holds: zero pages, duplicates, and how well it compresses.

One sequential pass over every ``pages-<id>.img`` of the checkpoint (the data
of one pagemap each: a process or a shared-memory object, its *owner*)::

    pages-<id>.img ::= { PAGE(4096 bytes) }   the PE_PRESENT pages of one pagemap,
                                              in pagemap order; bytes past what the
                                              pagemap lists are not pages of anyone

Each file is read with ``preadv`` in ``chunk_size`` pieces into one reused
buffer, so memory is bounded by the chunk whatever the checkpoint's size.
Owners are scanned one after the other: processes in pstree order, then the
shared-memory objects by shmid.  For every page:

- its 64-bit xxh3 digest (``xxhash``: ~30 GB/s in C, so hashing costs less than
  the loop around it); a page whose digest is the zero page's is compared byte
  for byte, so **zero pages** are exact;
- a non-zero page is a **duplicate within** its owner if that owner already had
  the same contents, a **duplicate across** owners if an earlier owner had
  them, and **unique** (the first copy) otherwise.  One table ``digest → last
  owner that had it`` tells the three apart.  Equal digests are taken as equal
  contents: with 64-bit digests the chance of any false match among n distinct
  pages is about n² / 2⁶⁵ (below 10⁻⁷ for 8 GiB of distinct pages).

**Bounded table.**  The table keeps at most ``table_cap`` digests (default
2**19, i.e. 2 GiB of distinct non-zero pages, about 40 MiB).  When it would
grow past that, it becomes a content-hash sample: only digests below a limit
are kept, and the limit halves (dropping half the table) each time it fills
again.  Every copy of a contents is therefore either always in the sample or
never, so within/across/unique are exact *for the sampled contents*; counts
are kept per owner by digest magnitude, so at the end the counts of contents
still in the sample are scaled by 2**level.  ``exact`` says whether that
happened; zero-page and page totals stay exact either way.

**Compressed size.**  All the page data, owner after owner, is one stream (as
``tar | zstd`` sees the pages files), cut into 1 MiB blocks.  Every block is
compressed with zstd level 3 when there are at most ``full_compression_bytes``
(64 MiB) of page data, else a fixed pseudo-random subset (Knuth's
multiplicative hash of the block index, chosen before the bytes are seen)
holding a ``sample_fraction`` (1/16) of them, or 64 MiB if that is more.  The
ratio of the sampled blocks is applied to all the data.  The
deduplicated-and-compressed estimate applies the compressed bytes per non-zero
byte of the sampled blocks to the unique (distinct non-zero) pages.
docs/commands/size.md says why zstd, and how close the estimates come.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

import xxhash
import zstandard

from decoders.flags import PAGE_SIZE
from decoders.framing import open_untrusted

from ..memory import aligned_buffer, read_into

#: Bytes read at a time from a pages file (one reused buffer).
CHUNK_SIZE = 8 << 20

#: Distinct non-zero page digests kept exactly before sampling starts.
TABLE_CAP = 1 << 19

#: Size of a compression sample block.
BLOCK_SIZE = 1 << 20

#: Page data compressed in full up to this many bytes; beyond, a sample.
FULL_COMPRESSION_BYTES = 64 << 20

#: Fraction of blocks compressed beyond FULL_COMPRESSION_BYTES (at least that many bytes).
SAMPLE_FRACTION = 1 / 16

COMPRESSOR = "zstd"
COMPRESSION_LEVEL = 3
HASH_NAME = "xxh3-64"

_ZERO_PAGE = bytes(PAGE_SIZE)
_PROCESS_PAGEMAP = re.compile(r"^pagemap-(\d+)\.img$")
_SHMEM_PAGEMAP = re.compile(r"^pagemap-shmem-(\d+)\.img$")
_BITS = 64
page_digest = xxhash.xxh3_64_intdigest


@dataclass(frozen=True, slots=True)
class PageContents:
    """Pages by what they hold: ``pages`` (listed as present) = ``zero + dup_within +
    dup_across + unique + unreadable``.

    ``dup_within``: contents the same owner already had; ``dup_across``: contents an
    earlier owner had; ``unique``: first copies; ``unreadable``: not in the pages file.
    """

    pages: int
    zero: int
    dup_within: int
    dup_across: int
    unique: int
    unreadable: int

    @property
    def distinct(self):
        """Distinct page contents (the zero page counts as one)."""
        return self.unique + (1 if self.zero else 0)

    @property
    def dedup_saving(self):
        """Bytes saved by storing every contents once and no zero pages."""
        return (self.zero + self.dup_within + self.dup_across) * PAGE_SIZE


@dataclass(frozen=True, slots=True)
class OwnerContent(PageContents):
    """The pages of one pagemap: ``pid`` for a process, ``shmid`` for a shared object."""

    pid: int | None
    shmid: int | None
    comm: str | None
    pages_file: str


@dataclass(frozen=True, slots=True)
class ContentReport(PageContents):
    """The page data of a checkpoint, read once: the counts of every owner together.

    ``compressed_estimate`` is the page data's size after zstd,
    ``dedup_compressed_estimate`` after dedup and zstd.  ``exact`` is False when
    the duplicate counts are scaled from a content-hash sample of ``sample_rate``.
    """

    bytes_read: int
    exact: bool
    sample_rate: float
    hash_name: str
    table_cap: int
    table_peak: int
    compressor: str | None
    compression_level: int | None
    sampled_bytes: int
    sampled_compressed: int
    compressed_estimate: int | None
    dedup_compressed_estimate: int | None
    owners: tuple

    @property
    def compression_ratio(self):
        """Compressed / original bytes of the sampled blocks, or None."""
        if not self.sampled_bytes:
            return None
        return self.sampled_compressed / self.sampled_bytes


class _Owner:
    """Counters of one owner while scanning: per category, by digest magnitude."""

    def __init__(self, pid, shmid, comm, pages_file, pages):
        self.pid, self.shmid, self.comm = pid, shmid, comm
        self.pages_file = pages_file
        self.pages = pages
        self.zero = 0
        self.read = 0
        # index = 64 - digest.bit_length(): digests below 2**(64 - L) have index >= L
        self.unique = [0] * (_BITS + 1)
        self.within = [0] * (_BITS + 1)
        self.across = [0] * (_BITS + 1)


def _owners(checkpoint):
    """``(owner, path, listed bytes)`` for every pages file, processes in pstree order first."""
    comms = {process.pid: process.comm for process in checkpoint.processes}
    order = {pid: i for i, pid in enumerate(comms)}
    entries = []
    for info in checkpoint.pages_files:
        if not info.pagemaps:
            continue  # no decodable pagemap lists pages in it
        pid = shmid = None
        for name in info.pagemaps:
            match = _PROCESS_PAGEMAP.match(name)
            if match:
                pid = int(match.group(1))
                break
            match = _SHMEM_PAGEMAP.match(name)
            if match and shmid is None:
                shmid = int(match.group(1))
        if pid is not None:
            shmid = None
        owner = _Owner(pid, shmid, comms.get(pid), info.name, info.present_pages)
        key = (0, order.get(pid, len(order)), pid) if pid is not None else (1, shmid or 0, 0)
        entries.append((key, owner, os.path.join(checkpoint.directory, info.name),
                        info.present_pages * PAGE_SIZE))
    entries.sort(key=lambda item: item[0])
    return [(owner, path, listed) for _key, owner, path, listed in entries]


def _regular_size(path):
    """The size of ``path`` if it is a regular file, else None (missing, FIFO, device...)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def content_bytes(checkpoint):
    """The bytes :func:`scan_content` will read: the listed pages each pages file holds."""
    total = 0
    for _owner, path, listed in _owners(checkpoint):
        size = _regular_size(path)
        if size is not None:
            total += min(listed, size - size % PAGE_SIZE)
    return total


class _Sampler:
    """Picks the blocks to compress: all of them for small data, else a fixed
    pseudo-random fraction (Knuth's multiplicative hash of the block index)."""

    def __init__(self, total_bytes, full_bytes, fraction):
        if total_bytes <= full_bytes:
            share = 1.0
        else:
            share = min(1.0, max(fraction, full_bytes / total_bytes))
        self.threshold = int(share * (1 << 32))
        self.index = 0

    def take(self):
        """True if the next block is to be compressed."""
        index = self.index
        self.index += 1
        return (index * 2654435761) & 0xFFFFFFFF < self.threshold


def scan_content(checkpoint, *, progress=None, chunk_size=CHUNK_SIZE, table_cap=TABLE_CAP,
                 compress=True, full_compression_bytes=FULL_COMPRESSION_BYTES,
                 sample_fraction=SAMPLE_FRACTION):
    """Read every page of ``checkpoint`` once and return a :class:`ContentReport`.

    ``progress(n)`` is called with the bytes of each piece read.  Only this
    checkpoint's pages files are read (pages in ``parent/`` are not).  A pages
    file that is missing or not a regular file is not opened: its pages count
    as unreadable.
    """
    if chunk_size < PAGE_SIZE or chunk_size % PAGE_SIZE:
        raise ValueError("chunk_size must be a positive multiple of the page size")
    if table_cap < 1:
        raise ValueError("table_cap must be positive")
    owners = _owners(checkpoint)
    sample = None
    if compress:
        sample = _CompressionSample(content_bytes(checkpoint), full_compression_bytes,
                                    sample_fraction)
    state = _ScanState(table_cap)
    buffer, start = aligned_buffer(chunk_size)
    view = memoryview(buffer)[start:start + chunk_size]
    try:
        for owner, path, listed in owners:
            owner_index = state.add_owner()
            size = _regular_size(path)
            if size is None:
                continue
            fd = open_untrusted(path)[0]  # never waits, should it have become a FIFO since
            try:
                offset, end = 0, min(listed, size - size % PAGE_SIZE)
                while offset < end:
                    want = min(chunk_size, end - offset)
                    got = read_into(fd, view[:want], offset)
                    got -= got % PAGE_SIZE
                    if not got:
                        break
                    data = view[:got]
                    zeros = state.scan(data, owner, owner_index)
                    if sample is not None:
                        sample.feed(data, zeros)
                    offset += got
                    owner.read += got
                    if progress is not None:
                        progress(got)
                    if got < want:
                        break
            finally:
                os.close(fd)
    finally:
        view.release()
    if sample is not None:
        sample.finish()
    return state.report(owners, sample)


class _ScanState:
    """The dedup table and the compression sums of one scan."""

    def __init__(self, table_cap):
        self.cap = table_cap
        self.seen = {}            # digest -> index of the last owner that had it
        self.limit = 1 << _BITS   # digests >= limit are outside the sample
        self.level = 0            # the sample keeps 1 / 2**level of the contents
        self.peak = 0
        self.owners = 0
        self.zero_digest = page_digest(_ZERO_PAGE)

    def add_owner(self):
        """A new owner's index (owners are scanned one after the other)."""
        self.owners += 1
        return self.owners - 1

    def scan(self, data, owner, me):
        """Classify the pages of ``data`` (a memoryview, whole pages) for ``owner``;
        return the offset of every zero page in it, for the compression estimate."""
        seen = self.seen
        digest = page_digest
        zero_digest = self.zero_digest
        zero_page = _ZERO_PAGE
        unique, within, across = owner.unique, owner.within, owner.across
        limit = self.limit
        zeros = []
        for start in range(0, len(data), PAGE_SIZE):
            page = data[start:start + PAGE_SIZE]
            d = digest(page)
            if d == zero_digest and page.tobytes() == zero_page:
                zeros.append(start)
                continue
            if d >= limit:
                continue
            lz = _BITS - d.bit_length()
            last = seen.get(d)
            if last is None:
                seen[d] = me
                unique[lz] += 1
                if len(seen) > self.cap:
                    self._shrink()
                    seen = self.seen
                    limit = self.limit
            elif last == me:
                within[lz] += 1
            else:
                seen[d] = me
                across[lz] += 1
        owner.zero += len(zeros)
        return zeros

    def _shrink(self):
        """Halve the sample until the table fits its cap again.

        The kept digests go into a new dict: deleting in place would leave the old
        table's slots behind, and CPython would later grow it to twice the size.
        """
        self.peak = max(self.peak, len(self.seen))
        while len(self.seen) > self.cap:
            self.level += 1
            self.limit >>= 1
            limit = self.limit
            self.seen = {d: owner for d, owner in self.seen.items() if d < limit}

    def report(self, owners, sample):
        """The :class:`ContentReport` of what was scanned (``sample``: the
        :class:`_CompressionSample`, or None without compression)."""
        level = self.level
        scale = 1 << level
        self.peak = max(self.peak, len(self.seen))
        results, read = [], 0
        for owner, _path, _listed in owners:
            read_pages = owner.read // PAGE_SIZE
            nonzero = read_pages - owner.zero
            within = sum(owner.within[level:]) * scale
            across = sum(owner.across[level:]) * scale
            if level:
                within = min(within, nonzero)
                across = min(across, nonzero - within)
            results.append(OwnerContent(
                pages=owner.pages, zero=owner.zero, dup_within=within, dup_across=across,
                unique=nonzero - within - across, unreadable=owner.pages - read_pages,
                pid=owner.pid, shmid=owner.shmid, comm=owner.comm, pages_file=owner.pages_file))
            read += owner.read
        totals = {name: sum(getattr(r, name) for r in results)
                  for name in ("pages", "zero", "dup_within", "dup_across", "unique",
                               "unreadable")}
        compressed_estimate = dedup_compressed = None
        if sample is not None:
            compressed_estimate, dedup_compressed = sample.estimates(read, totals["unique"])
        return ContentReport(
            **totals, bytes_read=read, exact=level == 0, sample_rate=1 / scale,
            hash_name=HASH_NAME, table_cap=self.cap, table_peak=self.peak,
            compressor=COMPRESSOR if sample is not None else None,
            compression_level=COMPRESSION_LEVEL if sample is not None else None,
            sampled_bytes=sample.sampled if sample is not None else 0,
            sampled_compressed=sample.compressed if sample is not None else 0,
            compressed_estimate=compressed_estimate, dedup_compressed_estimate=dedup_compressed,
            owners=tuple(results))


class _CompressionSample:
    """zstd on 1 MiB blocks of all the page data taken as one stream (owner after owner,
    as ``tar | zstd`` would see the pages files, without tar's headers); the blocks to
    compress are picked by a :class:`_Sampler` before their bytes are seen."""

    def __init__(self, total_bytes, full_bytes, fraction, block=BLOCK_SIZE):
        self.compressor = zstandard.ZstdCompressor(level=COMPRESSION_LEVEL)
        self.sampler = _Sampler(total_bytes, full_bytes, fraction)
        self.block = block
        self.taken = self.sampler.take()
        self.fill = 0          # bytes of the current block seen so far
        self.pieces = []       # their copies, when the block is taken
        self.zero_bytes = 0    # zero pages among them
        self.sampled = self.compressed = self.nonzero = 0

    def feed(self, data, zeros):
        """Add ``data`` (whole pages) whose zero pages start at the offsets ``zeros``."""
        pos, size, zi = 0, len(data), 0
        while pos < size:
            end = pos + min(self.block - self.fill, size - pos)
            if self.taken:
                piece = data[pos:end]
                # a whole block is compressed before the buffer is read into again: no copy
                self.pieces.append(piece if end - pos == self.block else piece.tobytes())
                while zi < len(zeros) and zeros[zi] < end:
                    if zeros[zi] >= pos:
                        self.zero_bytes += PAGE_SIZE
                    zi += 1
            self.fill += end - pos
            pos = end
            if self.fill == self.block:
                self._close()

    def finish(self):
        """Compress the last, partial block."""
        if self.fill:
            self._close()

    def _close(self):
        if self.taken:
            data = self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)
            self.sampled += len(data)
            self.compressed += len(self.compressor.compress(data))
            self.nonzero += len(data) - self.zero_bytes
        self.pieces, self.fill, self.zero_bytes = [], 0, 0
        self.taken = self.sampler.take()

    def estimates(self, total, unique_pages):
        """``(compressed, deduplicated and compressed)`` estimates for ``total`` bytes of
        page data holding ``unique_pages`` distinct non-zero pages."""
        if not self.sampled:
            return 0, 0
        compressed = round(total * self.compressed / self.sampled)
        if not self.nonzero:
            return compressed, 0
        deduplicated = round(unique_pages * PAGE_SIZE * self.compressed / self.nonzero)
        return compressed, min(deduplicated, compressed)
