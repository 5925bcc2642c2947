"""Memory of a checkpointed process: read, dump and search (``mem``, ``core``).

Part of :mod:`crit_plus.analysis.explore`, which exports these names; a module
of its own so that ``ps`` does not create these records.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from decoders.errors import DecodeError

from ..memory import CHUNK_SIZE, Unavailable

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
    "Hit",
    "MemoryGrep",
    "NoMemoryError",
    "REGEX_WINDOW",
    "memory_of",
    "read_memory",
    "unavailable_extents",
    "vma_at",
]
