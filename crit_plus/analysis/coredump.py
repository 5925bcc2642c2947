"""An ELF core file of a checkpointed process, as the kernel would write it.

Notes are built by pure functions from the graph's records (:class:`Process`,
:class:`~decoders.records.ThreadCore` and its :class:`~decoders.records.Registers`,
the :class:`~crit_plus.memory.Mapping` s); memory is the bytes CRIU would restore,
read through :class:`~crit_plus.memory.AddressSpace` (present pages, the ``parent/``
chain, shared memory, files under a root), streamed with bounded memory.

Layout: the ELF header, the program headers (one ``PT_NOTE``, then ``PT_LOAD`` s by
address), the notes, then each loaded segment's bytes page-aligned.  A VMA is one
``PT_LOAD``, split where the checkpoint cannot give its bytes: such a stretch is a
``PT_LOAD`` with no file bytes (``p_filesz`` 0), so that gdb reads it from the mapped
file it knows (the executable, the libraries) instead of zeros.  Zero pages are
holes of the output (never written).

Note layouts follow the kernel's (``include/linux/elfcore.h``, ``fs/binfmt_elf.c``)
for x86_64 and aarch64, both little-endian 64-bit.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Self

from decoders.errors import DecodeError
from decoders.flags import PAGE_SIZE, Prot, TaskState
from decoders.framing import open_untrusted

from ..memory import AddressSpace, Unavailable
from .explore_memory import memory_of

if TYPE_CHECKING:
    from decoders.records import Registers

    from ..graph import Process, Thread

NT_PRSTATUS = 1
NT_FPREGSET = 2
NT_PRPSINFO = 3
NT_AUXV = 6
NT_SIGINFO = 0x53494749
NT_FILE = 0x46494C45
NT_X86_XSTATE = 0x202
NT_ARM_TLS = 0x401

PT_LOAD = 1
PT_NOTE = 4
PF_X, PF_W, PF_R = 1, 2, 4
PN_XNUM = 0xFFFF
EHDR_SIZE = 64
PHDR_SIZE = 56
SHDR_SIZE = 64

#: e_machine of each architecture the core images name (core_entry.mtype).
MACHINES = {"X86_64": 62, "AARCH64": 183}

#: The x86 XSAVE components CRIU keeps: (image field, feature bits, offset in the
#: standard (non-compacted) XSAVE area, size, item format).
_XSAVE_PARTS = (
    ("ymmh_space", 1 << 2, 576, 256, "I"),
    ("bndreg_state", 1 << 3, 960, 64, "Q"),
    ("bndcsr_state", 1 << 4, 1024, 64, "Q"),
    ("opmask_reg", 1 << 5, 1088, 64, "Q"),
    ("zmm_upper", 1 << 6, 1152, 512, "Q"),
    ("hi16_zmm", 1 << 7, 1664, 1024, "Q"),
    ("pkru", 1 << 9, 2688, 8, "I"),
)
_X87_SSE = 0b11
#: Where the kernel puts XCR0 in the fxsave area's software-reserved bytes (gdb reads it).
_XCR0_OFFSET = 464


class CoreError(DecodeError, LookupError):
    """The process cannot be written as a core: its core image is missing or names an
    architecture crit-plus writes no cores for."""


@dataclass(frozen=True, slots=True)
class Note:
    """One ELF note: its owner name (``CORE``, ``LINUX``), type and descriptor bytes."""

    name: bytes
    type: int
    desc: bytes

    def encode(self) -> bytes:
        """The note as it is in the file: header, name and descriptor, each 4-aligned."""
        name = self.name + b"\0"
        return (struct.pack("<III", len(name), len(self.desc), self.type)
                + _pad4(name) + _pad4(self.desc))


@dataclass(frozen=True, slots=True)
class Segment:
    """One ``PT_LOAD``: ``filesz`` is ``memsz`` where the checkpoint has the bytes, else 0."""

    vaddr: int
    memsz: int
    filesz: int
    flags: int


@dataclass(slots=True)
class CoreFile:
    """What :func:`write_core` wrote: its size, the page bytes copied, the note types, the
    ``PT_LOAD`` count, the mapped bytes the checkpoint cannot give (``absent_bytes``:
    segments without file bytes) and stretches a pages or backing file lacked
    (:class:`~crit_plus.memory.Unavailable`, left as zeros)."""

    pid: int
    arch: str
    size: int = 0
    data_bytes: int = 0
    notes: list = field(default_factory=list)
    segments: int = 0
    absent_bytes: int = 0
    unavailable: list = field(default_factory=list)


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _round_page(value: int) -> int:
    return -(-value // PAGE_SIZE) * PAGE_SIZE


# -- notes ---------------------------------------------------------------------------------
def architecture(process: Process) -> str:
    """The architecture of ``process``'s core images (``X86_64``, ``AARCH64``);
    :class:`CoreError` when they name none crit-plus writes cores for."""
    core = process.core
    name = f"core-{process.pid}.img"
    if core is None:
        why = next((finding.message for finding in process.findings if finding.where == name),
                   "missing or unreadable")  # the decode error, with its offset
        raise CoreError(os.path.join(process.checkpoint.directory, name),
                        f"no registers to write: {why}")
    if core.arch not in MACHINES:
        raise CoreError(core.source.path, f"core_entry.mtype is {core.arch}: crit-plus writes "
                        f"cores for {', '.join(sorted(MACHINES))} only",
                        core.source.offset, core.source.index)
    return core.arch


def _signal_mask(signals) -> int:
    mask = 0
    for info in signals:
        if len(info) >= 4:
            signo = struct.unpack_from("<i", info)[0]
            if 0 < signo <= 64:
                mask |= 1 << (signo - 1)
    return mask


def _gp_values(registers: Registers) -> list[int]:
    if registers.arch == "X86_64":
        return [value for name, value in registers.gp if name != "mode"][:27]
    regs = list(registers.value("gp", "regs", ()))[:31]
    regs += [0] * (31 - len(regs))
    return regs + [registers.value("gp", name, 0) for name in ("sp", "pc", "pstate")]


def prstatus(process: Process, thread: Thread) -> Note:
    """NT_PRSTATUS of ``thread``: its tid, the process's ids, pending and blocked
    signals and its general registers (zeros when its core image holds none)."""
    core = thread.core
    arch = architecture(process)
    count = 27 if arch == "X86_64" else 34
    registers = core.registers if core is not None else None
    regs = _gp_values(registers) if registers is not None else [0] * count
    regs += [0] * (count - len(regs))
    signals = core.signals if core is not None else ()
    blocked = (core.blocked_signals or 0) if core is not None else 0
    head = struct.pack("<iiih2xQQiiii", 0, 0, 0, 0, _signal_mask(signals), blocked,
                       thread.tid, process.ppid, process.pgid, process.sid)
    times = bytes(64)  # utime, stime, cutime, cstime: CRIU keeps none
    body = struct.pack(f"<{count}Q", *(value & (1 << 64) - 1 for value in regs))
    return Note(b"CORE", NT_PRSTATUS, head + times + body + struct.pack("<i4x", 1))


def _words(values, fmt: str, size: int) -> bytes:
    data = struct.pack(f"<{len(values)}{fmt}", *values)[:size]
    return data + bytes(size - len(data))


def _fxsave(registers: Registers, xcr0: int) -> bytearray:
    """The 512-byte fxsave area (``user_i387_struct``) of x86 fp registers."""
    value = registers.value
    area = bytearray(512)
    struct.pack_into("<HHHHQQII", area, 0, value("fp", "cwd", 0) & 0xFFFF,
                     value("fp", "swd", 0) & 0xFFFF, value("fp", "twd", 0) & 0xFFFF,
                     value("fp", "fop", 0) & 0xFFFF, value("fp", "rip", 0),
                     value("fp", "rdp", 0), value("fp", "mxcsr", 0),
                     value("fp", "mxcsr_mask", 0))
    area[32:160] = _words(value("fp", "st_space", ()), "I", 128)
    area[160:416] = _words(value("fp", "xmm_space", ()), "I", 256)
    if xcr0:
        struct.pack_into("<Q", area, _XCR0_OFFSET, xcr0)
    return area


def _xcr0(registers: Registers) -> int:
    xcr0 = _X87_SSE
    for name, bits, _offset, _size, _fmt in _XSAVE_PARTS:
        if registers.value("xsave", name):
            xcr0 |= bits
    if xcr0 & 0b1110_0000:  # AVX-512 needs AVX
        xcr0 |= 1 << 2
    return xcr0


def fp_notes(thread: Thread) -> list[Note]:
    """NT_FPREGSET (and NT_X86_XSTATE on x86_64, NT_ARM_TLS on aarch64) of ``thread``;
    none when its core image holds no registers."""
    core = thread.core
    registers = core.registers if core is not None else None
    if registers is None:
        return []
    if registers.arch == "AARCH64":
        value = registers.value
        fpsimd = (_words(value("fp", "vregs", ()), "Q", 512)
                  + struct.pack("<II8x", value("fp", "fpsr", 0), value("fp", "fpcr", 0)))
        return [Note(b"CORE", NT_FPREGSET, fpsimd),
                Note(b"LINUX", NT_ARM_TLS, struct.pack("<Q", registers.tls or 0))]
    notes = [Note(b"CORE", NT_FPREGSET, bytes(_fxsave(registers, 0)))]
    if registers.xsave:
        xcr0 = _xcr0(registers)
        size = max([576] + [offset + size for name, bits, offset, size, _fmt in _XSAVE_PARTS
                            if xcr0 & bits])
        area = _fxsave(registers, xcr0) + bytearray(size - 512)
        struct.pack_into("<Q", area, 512, registers.value("xsave", "xstate_bv", 0) & xcr0)
        for name, bits, offset, length, fmt in _XSAVE_PARTS:
            if xcr0 & bits:
                area[offset:offset + length] = _words(registers.value("xsave", name, ()), fmt,
                                                      length)
        notes.append(Note(b"LINUX", NT_X86_XSTATE, bytes(area)))
    return notes


def siginfo(thread: Thread) -> Note | None:
    """NT_SIGINFO: the first signal pending for ``thread`` (its ``siginfo_t`` as the
    image holds it), or None when none is pending — a checkpoint has no fatal signal."""
    signals = thread.core.signals if thread.core is not None else ()
    if not signals:
        return None
    return Note(b"CORE", NT_SIGINFO, _words(list(signals[0]), "B", 128))


#: pr_state and pr_sname of each task state (``fill_psinfo``: the index in "RSDTZW").
_STATES = {TaskState.ALIVE: (0, b"R"), TaskState.STOPPED: (3, b"T"),
           TaskState.DEAD: (4, b"Z"), TaskState.ZOMBIE_AT_SEIZE: (4, b"Z")}


def prpsinfo(process: Process) -> Note:
    """NT_PRPSINFO: state, ids, credentials, name and (the first 80 bytes of) the
    command line."""
    core = process.core
    # an unknown or missing state takes the default
    state, sname = _STATES.get(core.task_state, (0, b"R")) if core is not None else (0, b"R")  # type: ignore[arg-type]
    creds = process.creds
    uid, gid = (creds.uid, creds.gid) if creds is not None else (0, 0)
    nice = (core.nice or 0) if core is not None else 0
    flags = (core.task_flags or 0) if core is not None else 0
    argv = process.command_line or ()
    args = " ".join(argv).encode("utf-8", "surrogateescape")[:79]
    comm = (process.comm or "").encode("utf-8", "surrogateescape")[:15]
    desc = struct.pack("<bcbb4xQIIiiii16s80s", state, sname, int(state == 4),
                       max(-128, min(127, nice)), flags, uid & 0xFFFFFFFF, gid & 0xFFFFFFFF,
                       process.pid, process.ppid, process.pgid, process.sid, comm, args)
    return Note(b"CORE", NT_PRPSINFO, desc)


def auxv(process: Process) -> Note | None:
    """NT_AUXV: the saved auxiliary vector (``mm.mm_saved_auxv``), up to its AT_NULL."""
    mm = process.mm
    if mm is None or not mm.auxv:
        return None
    values = list(mm.auxv)
    pairs = []
    for i in range(0, len(values) - 1, 2):
        if values[i] == 0:
            break
        pairs += values[i:i + 2]
    pairs += [0, 0]
    return Note(b"CORE", NT_AUXV, struct.pack(f"<{len(pairs)}Q", *pairs))


def _file_name(mapping) -> str | None:
    file = mapping.file
    if file is None or not file.name:
        return None
    name = file.name
    return f"{name} (deleted)" if file.deleted and not name.endswith(" (deleted)") else name


def file_note(memory: AddressSpace) -> Note | None:
    """NT_FILE: every file mapping, its range, page offset and path."""
    rows = [(mapping, name) for mapping in memory.vmas
            if (name := _file_name(mapping)) is not None]
    if not rows:
        return None
    head = struct.pack("<QQ", len(rows), PAGE_SIZE)
    ranges = b"".join(struct.pack("<QQQ", m.start, m.end, m.pgoff // PAGE_SIZE)
                      for m, _name in rows)
    names = b"".join(name.encode("utf-8", "surrogateescape") + b"\0" for _m, name in rows)
    return Note(b"CORE", NT_FILE, head + ranges + names)


def process_notes(process: Process) -> list[Note]:
    """Every note of ``process``'s core: NT_PRPSINFO, then per
    thread (leader first) NT_PRSTATUS, FP and extended state, NT_SIGINFO; NT_AUXV,
    NT_FILE."""
    architecture(process)
    notes = [prpsinfo(process)]
    for thread in process.threads:
        notes.append(prstatus(process, thread))
        info = siginfo(thread)
        if info is not None:
            notes.append(info)
        notes += fp_notes(thread)
    # a process dumped as a core has memory (a zombie has none and is refused before)
    notes += [note for note in (auxv(process), file_note(process.memory))  # type: ignore[arg-type]
              if note is not None]
    return notes


# -- memory --------------------------------------------------------------------------------
def _flags(prot) -> int:
    prot = int(prot)
    return ((PF_R if prot & Prot.READ else 0) | (PF_W if prot & Prot.WRITE else 0)
            | (PF_X if prot & Prot.EXEC else 0))


def segments(memory: AddressSpace) -> Iterator[Segment]:
    """The ``PT_LOAD`` s of ``memory``: each VMA, split where the checkpoint has no bytes
    (those stretches get ``filesz`` 0)."""
    for mapping in memory.vmas:
        flags = _flags(mapping.prot)
        current = None  # [vaddr, memsz, available]
        for extent in memory.extents(mapping.start, mapping.size):
            available = extent.source != "unavailable"
            if current is not None and current[2] == available:
                current[1] += extent.length
                continue
            if current is not None:
                yield Segment(current[0], current[1], current[1] if current[2] else 0, flags)
            current = [extent.vaddr, extent.length, available]
        if current is not None:
            yield Segment(current[0], current[1], current[1] if current[2] else 0, flags)


def _headers(machine: int, phnum: int) -> bytes:
    """The ELF header (with ``PN_XNUM`` and one section header past 65534 segments)."""
    extended = phnum >= PN_XNUM
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    phoff = EHDR_SIZE + (SHDR_SIZE if extended else 0)  # after the section header
    return ident + struct.pack("<HHIQQQIHHHHHH", 4, machine, 1, 0, phoff,
                               EHDR_SIZE if extended else 0, 0, EHDR_SIZE, PHDR_SIZE,
                               PN_XNUM if extended else phnum, SHDR_SIZE if extended else 0,
                               1 if extended else 0, 0)


def _phdr(kind: int, flags: int, offset: int, vaddr: int, filesz: int, memsz: int,
          align: int) -> bytes:
    return struct.pack("<IIQQQQQQ", kind, flags, offset, vaddr, 0, filesz, memsz, align)


def write_core(process: Process, out: BinaryIO) -> CoreFile:
    """Write the core of ``process`` to ``out`` (a seekable binary file, written from
    its start); return what was written.  :class:`CoreError` when the process has no
    registers to write, :class:`~crit_plus.analysis.explore.NoMemoryError` no memory."""
    arch = architecture(process)
    memory = memory_of(process.checkpoint, process.pid)
    notes = process_notes(process)
    note_bytes = b"".join(note.encode() for note in notes)
    loads = list(segments(memory))
    phnum = 1 + len(loads)
    extended = phnum >= PN_XNUM
    start = EHDR_SIZE + (SHDR_SIZE if extended else 0) + PHDR_SIZE * phnum
    data_at = _round_page(start + len(note_bytes))
    result = CoreFile(process.pid, arch, notes=[note.type for note in notes],
                      segments=len(loads))
    out.write(_headers(MACHINES[arch], phnum))
    if extended:  # section 0 carries the real segment count (sh_info)
        out.write(struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, phnum, 0, 0))
    table = [_phdr(PT_NOTE, 0, start, 0, len(note_bytes), 0, 4)]
    offset = data_at
    placed = []
    for seg in loads:
        table.append(_phdr(PT_LOAD, seg.flags, offset, seg.vaddr, seg.filesz, seg.memsz,
                           PAGE_SIZE))
        placed.append((seg, offset))
        offset += seg.filesz
    result.absent_bytes = sum(seg.memsz for seg in loads if not seg.filesz)
    out.write(b"".join(table))
    out.write(note_bytes)
    with _Copier(out) as copier:
        for seg, at in placed:
            if seg.filesz:
                result.data_bytes += _write_segment(memory, seg, at, copier,
                                                    result.unavailable)
    out.seek(0, os.SEEK_END)
    out.truncate(offset)
    result.size = offset
    return result


class _Copier:
    """Copies stretches of pages and backing files into the output: in the kernel
    (``copy_file_range``: no copy through Python) where it can, else by reading."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self._fds: dict[str, int] = {}
        self._kernel = hasattr(os, "copy_file_range")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        for fd in self._fds.values():
            os.close(fd)

    def copy(self, path: str, offset: int, length: int, position: int) -> int:
        """Copy up to ``length`` bytes of ``path`` at ``offset`` to the output at
        ``position``; return how many were copied (fewer: at the end of the file, or
        when the kernel cannot copy between these files — the caller reads the rest)."""
        if not self._kernel:
            return 0
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = open_untrusted(path)[0]
        self.out.flush()
        done = 0
        try:
            while done < length:
                n = os.copy_file_range(fd, self.out.fileno(), min(length - done, 1 << 30),
                                       offset + done, position + done)
                if n == 0:
                    break
                done += n
        except OSError as error:
            if error.errno not in _NO_KERNEL_COPY:
                raise
            self._kernel = False
        return done


#: copy_file_range errors that mean "copy by reading" (another file system, an output
#: that is not a regular file, an old kernel).
_NO_KERNEL_COPY = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF)


def _write_segment(memory: AddressSpace, seg: Segment, at: int, copier: _Copier,
                   holes: list) -> int:
    """Copy the bytes of ``seg`` to the output at ``at``; zero pages stay holes.  Returns
    the bytes written; a stretch a pages or backing file lacks is added to ``holes``."""
    out = copier.out
    written = 0
    for extent in memory.extents(seg.vaddr, seg.memsz):
        if extent.source not in ("pages", "file"):
            continue
        position = at + extent.vaddr - seg.vaddr
        # pages and file extents always name their path and offset
        done = copier.copy(extent.path, extent.offset, extent.length, position)  # type: ignore[arg-type]
        written += done
        if done == extent.length:
            continue
        out.seek(position + done)
        for _address, data in memory.stream(extent.vaddr + done, extent.length - done):
            if isinstance(data, Unavailable):
                holes.append(data)
                out.seek(at + data.vaddr + data.length - seg.vaddr)
                continue
            out.write(data)
            written += len(data)
    return written
