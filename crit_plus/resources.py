"""What a checkpoint keeps beside processes, memory and ``files.img``, as records.

Each image below is decoded once per checkpoint (:meth:`Checkpoint.decoded
<crit_plus.graph.Checkpoint.decoded>`) and turned into records here, the one place that
reads its messages; analysis and the commands read the records (``tests/test_layers.py``):

- ``cpuinfo.img``: the dumping CPU (``cpuinfo_entry``; x86's ``cpuinfo_x86_entry`` as
  :class:`CpuX86`: vendor, model, capability words, XSAVE components) →
  ``Checkpoint.cpuinfo``; :func:`read_cpuinfo_file` reads one ``criu cpuinfo dump`` wrote;
- ``tty-info.img``: every terminal (``tty_info_entry``) as :class:`TtyInfo`, with its
  device path and CRIU's external key → ``Checkpoint.ttys`` (``FileTable.ttys``);
- ``memfd.img``: every memfd inode (``memfd_inode_entry``) as :class:`MemfdInode` →
  ``Checkpoint.memfds`` (``FileTable.memfds``);
- ``filelocks.img``: every file lock (``file_lock_entry``) as :class:`FileLock` →
  ``Checkpoint.file_locks``;
- ``pipes-data.img``, ``fifo-data.img``, ``sk-queues.img``, ``tcp-stream-<ino:x>.img``:
  the bytes queued in pipes and sockets, as :class:`Queues` → ``Checkpoint.queues``.

A missing image is no finding (CRIU writes these only when there is something to keep);
one that does not decode gives no records and a finding: the file table's findings for
``tty-info.img`` and ``memfd.img`` (in ``Checkpoint.findings``), ``Queues.findings``; for
all of them validate's integrity stage reports the image (``bad-image``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from decoders.errors import DecodeError, MissingImageError
from decoders.fields import optional
from decoders.flags import NamedInt
from decoders.image import read_messages
from decoders.text import field_text

from .findings import Finding, error_finding

#: ``decoded(name)`` → ``(messages, error)``: the graph's :meth:`Checkpoint.decoded`.
Decoded = Callable[[str], "tuple[tuple, DecodeError | None]"]


def _messages(decoded: Decoded, name: str, findings: list[Finding]) -> tuple:
    """Every message of an optional image (missing → none, bad → a finding and none)."""
    messages, error = decoded(name)
    if error is not None and not isinstance(error, MissingImageError):
        findings.append(error_finding(error))
    return messages


# -- the CPU -----------------------------------------------------------------------------------


class CpuVendor(NamedInt):
    """``cpuinfo_x86_entry.vendor``."""

    UNKNOWN = 0
    INTEL = 1
    AMD = 2


@dataclass(frozen=True, slots=True)
class CpuX86:
    """One x86 CPU of ``cpuinfo.img`` (``cpuinfo_x86_entry``).  Optional fields read as
    CRIU's C code reads them: 0 (or ``""``) when the image leaves them out."""

    vendor: CpuVendor | int
    cpu_family: int
    model: int
    stepping: int
    capability_ver: int
    capability: tuple[int, ...]
    model_id: str
    xfeatures_mask: int
    xsave_size: int
    xsave_size_max: int


def cpu_entries(messages: tuple) -> tuple[CpuX86, ...]:
    """The :class:`CpuX86` s of ``cpuinfo.img``'s messages, in the image's order."""
    return tuple(
        CpuX86(CpuVendor.of(entry.vendor_id), entry.cpu_family, entry.model,
               entry.stepping, entry.capability_ver, tuple(entry.capability),
               field_text(optional(entry, "model_id", "")),
               optional(entry, "xfeatures_mask", 0), optional(entry, "xsave_size", 0),
               optional(entry, "xsave_size_max", 0))
        for message in messages for entry in message.x86_entry)


def read_cpuinfo(decoded: Decoded) -> tuple[tuple[CpuX86, ...], tuple[Finding, ...]]:
    """The CPUs of a checkpoint's ``cpuinfo.img`` (none without it), and findings."""
    findings: list[Finding] = []
    return cpu_entries(_messages(decoded, "cpuinfo.img", findings)), tuple(findings)


def read_cpuinfo_file(path: str) -> tuple[CpuX86, ...]:
    """The CPUs of the ``cpuinfo.img`` at ``path`` (``criu cpuinfo dump``'s, outside any
    checkpoint); :class:`~decoders.errors.DecodeError` when it cannot be read."""
    return cpu_entries(read_messages(os.fspath(path)))


# -- terminals ---------------------------------------------------------------------------------


class TtyType(NamedInt):
    """``tty_info_entry.type``."""

    UNKNOWN = 0
    PTY = 1
    CONSOLE = 2
    VT = 3
    CTTY = 4
    EXT_TTY = 5
    SERIAL = 6


def decode_dev(rdev: int) -> tuple[int, int]:
    """(major, minor) of a Linux ``dev_t`` as CRIU stores it (new_encode_dev)."""
    major = (rdev & 0xFFF00) >> 8
    minor = (rdev & 0xFF) | ((rdev >> 12) & 0xFFF00)
    return major, minor


@dataclass(frozen=True, slots=True)
class TtyInfo:
    """One terminal of ``tty-info.img`` (``tty_info_entry``): ``rdev`` the device number
    as CRIU stores it, ``dev`` the device of the file system it was opened on (0 when
    the image has none, as CRIU reads it), ``pty_index`` a pty's number."""

    id: int
    type: TtyType | int
    locked: bool
    exclusive: bool
    packet_mode: bool
    sid: int
    pgrp: int
    rdev: int
    dev: int
    pty_index: int | None
    uid: int | None
    gid: int | None

    @property
    def device(self) -> tuple[int, int]:
        """``(major, minor)`` of the terminal."""
        return decode_dev(self.rdev)

    @property
    def key(self) -> str:
        """CRIU's external id of the terminal, ``tty[RDEV:DEV]`` in hex (``tty_d_name``,
        criu/tty.c): what ``--inherit-fd fd[N]:KEY`` names."""
        return f"tty[{self.rdev:x}:{self.dev:x}]"

    @property
    def path(self) -> str | None:
        """The device path (``/dev/pts/3``, ``/dev/console``...), or None when it cannot be
        told."""
        kind = self.type
        major, minor = self.device
        if kind == TtyType.CONSOLE:
            return "/dev/console"
        if kind == TtyType.CTTY:
            return "/dev/tty"
        if 136 <= major <= 143:
            return f"/dev/pts/{(major - 136) * 256 + minor}"
        if major == 5 and minor == 2:
            return "/dev/ptmx"
        if kind == TtyType.PTY and self.pty_index is not None:
            return f"/dev/pts/{self.pty_index}"
        if major == 4 and minor < 64:
            return f"/dev/tty{minor}"
        if major == 4:
            return f"/dev/ttyS{minor - 64}"
        return None


def read_ttys(decoded: Decoded) -> tuple[dict[int, TtyInfo], tuple[Finding, ...]]:
    """id → :class:`TtyInfo` of ``tty-info.img`` (of an id given twice, the last), and
    findings."""
    findings: list[Finding] = []
    ttys: dict[int, TtyInfo] = {}
    for msg in _messages(decoded, "tty-info.img", findings):
        pty = optional(msg, "pty")
        ttys[msg.id] = TtyInfo(
            msg.id, TtyType.of(msg.type), msg.locked, msg.exclusive, msg.packet_mode,
            msg.sid, msg.pgrp, msg.rdev, optional(msg, "dev", 0),
            pty.index if pty is not None else None, optional(msg, "uid"), optional(msg, "gid"))
    return ttys, tuple(findings)


# -- memfds --------------------------------------------------------------------------------------


#: MFD_HUGETLB (linux/memfd.h): a memfd on hugetlbfs.
MFD_HUGETLB = 0x0004


@dataclass(frozen=True, slots=True)
class MemfdInode:
    """One memfd inode of ``memfd.img`` (``memfd_inode_entry``): its ``name``, ``size``,
    the ``shmid`` whose ``pagemap-shmem-<shmid>.img`` holds its contents, ``seals``,
    ``hugetlb_flag`` (0 when the image has none), ``mode`` (None then)."""

    inode_id: int
    name: str
    uid: int
    gid: int
    size: int
    shmid: int
    seals: int
    hugetlb_flag: int
    mode: int | None

    @property
    def hugetlb(self) -> bool:
        """True when the memfd is on hugetlbfs (``MFD_HUGETLB``)."""
        return bool(self.hugetlb_flag & MFD_HUGETLB)


def read_memfds(decoded: Decoded) -> tuple[dict[int, MemfdInode], tuple[Finding, ...]]:
    """inode id → :class:`MemfdInode` of ``memfd.img`` (of an id given twice, the last), and
    findings."""
    findings: list[Finding] = []
    memfds: dict[int, MemfdInode] = {}
    for msg in _messages(decoded, "memfd.img", findings):
        memfds[msg.inode_id] = MemfdInode(
            msg.inode_id, field_text(msg.name), msg.uid, msg.gid, msg.size, msg.shmid,
            msg.seals, optional(msg, "hugetlb_flag", 0), optional(msg, "mode"))
    return memfds, tuple(findings)


# -- file locks ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileLock:
    """One lock of ``filelocks.img`` (``file_lock_entry``): ``flag`` (``FL_POSIX``,
    ``FL_FLOCK``...), ``type`` (``F_RDLCK``...), the holder's ``pid`` and ``fd``, the
    locked range (``length`` 0: to the end of the file)."""

    flag: int
    type: int
    pid: int
    fd: int
    start: int
    length: int


def read_file_locks(decoded: Decoded) -> tuple[tuple[FileLock, ...], tuple[Finding, ...]]:
    """Every :class:`FileLock` of ``filelocks.img``, and findings."""
    findings: list[Finding] = []
    locks = tuple(FileLock(msg.flag, msg.type, msg.pid, msg.fd, msg.start, msg.len)
                  for msg in _messages(decoded, "filelocks.img", findings))
    return locks, tuple(findings)


# -- queued data ---------------------------------------------------------------------------------


class Queues:
    """The bytes CRIU dumped from pipe buffers and socket queues.

    ``pipe_bytes``: pipe id → bytes (``pipes-data.img`` and ``fifo-data.img``);
    ``socket_packets``: socket file id → ``(packets, bytes)`` (``sk-queues.img``);
    :meth:`tcp`: a TCP socket's queues (its ``tcp-stream-<ino:x>.img``, read when first
    asked for).  ``findings``: images that did not decode (their data counted as none).
    """

    def __init__(self, decoded: Decoded) -> None:
        self._decoded = decoded
        self.findings: list[Finding] = []
        self.socket_packets: dict[int, tuple[int, int]] = {}
        for msg in _messages(decoded, "sk-queues.img", self.findings):
            packets, size = self.socket_packets.get(msg.id_for, (0, 0))
            self.socket_packets[msg.id_for] = (packets + 1, size + msg.length)
        self.pipe_bytes: dict[int, int] = {}
        for name in ("pipes-data.img", "fifo-data.img"):
            for msg in _messages(decoded, name, self.findings):
                self.pipe_bytes[msg.pipe_id] = self.pipe_bytes.get(msg.pipe_id, 0) + msg.bytes
        self._tcp: dict[int, tuple[int, int, int] | None] = {}

    def tcp(self, ino: int) -> tuple[int, int, int] | None:
        """``(inq_len, outq_len, unsq_len)`` of TCP socket ``ino``, or None (no image)."""
        if ino not in self._tcp:
            messages = _messages(self._decoded, f"tcp-stream-{ino:x}.img", self.findings)
            msg = messages[0] if messages else None
            self._tcp[ino] = None if msg is None else (
                msg.inq_len, msg.outq_len, optional(msg, "unsq_len", 0))
        return self._tcp[ino]


__all__ = [
    "MFD_HUGETLB", "CpuVendor", "CpuX86", "FileLock", "MemfdInode", "Queues", "TtyInfo",
    "TtyType", "cpu_entries", "decode_dev", "read_cpuinfo", "read_cpuinfo_file",
    "read_file_locks", "read_memfds", "read_ttys",
]
