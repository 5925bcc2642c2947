"""Named values of CRIU image fields: VMA bits, page flags, fd types, task states.

Values are facts of the image format (CRIU's ``criu/include/image.h``,
``images/fdinfo.proto``, ``compel/include/uapi/task-state.h``) and of Linux
(``mmap(2)`` protections and flags).  Code compares against these names,
never against bare numbers.
"""

from __future__ import annotations

import enum
from typing import Any

PAGE_SIZE = 4096  # CRIU does not record it; 4 KiB on x86_64 (and most targets)


class Prot(enum.IntFlag):
    """``mmap`` protection bits of a VMA."""

    NONE = 0
    READ = 0x1
    WRITE = 0x2
    EXEC = 0x4

    def text(self) -> str:
        """``rwx``-style text as in ``/proc/PID/maps`` (without the sharing letter)."""
        return "".join(
            letter if self & bit else "-"
            for letter, bit in (("r", Prot.READ), ("w", Prot.WRITE), ("x", Prot.EXEC))
        )


class MapFlags(enum.IntFlag):
    """``mmap`` flags of a VMA (the ones CRIU keeps)."""

    SHARED = 0x1
    PRIVATE = 0x2
    ANONYMOUS = 0x20
    GROWSDOWN = 0x100
    NORESERVE = 0x4000
    LOCKED = 0x2000


class VmaStatus(enum.IntFlag):
    """CRIU's own classification of a VMA (``VMA_AREA_*``, ``VMA_*``)."""

    NONE = 0
    REGULAR = 1 << 0
    STACK = 1 << 1
    VSYSCALL = 1 << 2
    VDSO = 1 << 3
    HEAP = 1 << 5
    FILE_PRIVATE = 1 << 6
    FILE_SHARED = 1 << 7
    ANON_SHARED = 1 << 8
    ANON_PRIVATE = 1 << 9
    SYSVIPC = 1 << 10
    SOCKET = 1 << 11
    VVAR = 1 << 12
    AIORING = 1 << 13
    MEMFD = 1 << 14
    SHSTK = 1 << 15
    GUARD = 1 << 16
    UPROBES = 1 << 17
    EXT_PLUGIN = 1 << 27
    CLOSE = 1 << 28
    NO_PROT_WRITE = 1 << 29
    PREMMAPED = 1 << 30
    UNSUPP = 1 << 31


class PageFlags(enum.IntFlag):
    """Pagemap entry flags.  No flag at all means PE_PRESENT (old dumps)."""

    NONE = 0
    PARENT = 1 << 0
    LAZY = 1 << 1
    PRESENT = 1 << 2


class NamedInt(enum.IntEnum):
    """An IntEnum whose :meth:`of` keeps values newer than the table as plain ints."""

    @classmethod
    def of(cls, value: int) -> Any:
        """The member for ``value``, or the int itself when this table lacks it."""
        try:
            return cls(value)
        except ValueError:
            return value


class FdType(NamedInt):
    """``fd_types`` of ``fdinfo.proto``: what an fd or a files.img entry is."""

    UND = 0
    REG = 1
    PIPE = 2
    FIFO = 3
    INETSK = 4
    UNIXSK = 5
    EVENTFD = 6
    EVENTPOLL = 7
    INOTIFY = 8
    SIGNALFD = 9
    PACKETSK = 10
    TTY = 11
    FANOTIFY = 12
    NETLINKSK = 13
    NS = 14
    TUNF = 15
    EXT = 16
    TIMERFD = 17
    MEMFD = 18
    BPFMAP = 19
    PIDFD = 20
    CTL_TTY = 65534
    AUTOFS_PIPE = 65535


class TaskState(NamedInt):
    """``task_core_entry.task_state`` as CRIU writes it.

    A zombie is written as DEAD (2) with only a core image; pycriu's name table
    calls 3 "Zombie", which is wrong: 3 is a stopped task.
    """

    ALIVE = 1
    DEAD = 2
    STOPPED = 3
    ZOMBIE_AT_SEIZE = 6

    @property
    def label(self) -> str:
        """The word users expect: alive, zombie, stopped."""
        return {1: "alive", 2: "zombie", 3: "stopped", 6: "zombie"}[self.value]
