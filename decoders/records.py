"""Typed, frozen records the decoders return.

Every record keeps ``source`` (file, offset, entry index) and ``raw``: the
protobuf message it came from, an escape hatch for fields not lifted here —
except the records a checkpoint keeps one or more of per process
(:class:`PstreeEntry`, :class:`ThreadCore`, :class:`Mm`), whose ``raw`` is None: a
core message with its registers and an mm message with every VMA held about 12 KB
a process, and a hostile ``pstree.img`` lists a million pids.
Records hold facts from one image; linking images is ``crit_plus.graph``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .flags import PAGE_SIZE, FdType, MapFlags, PageFlags, Prot, TaskState, VmaStatus
from .image import Source


@dataclass(frozen=True, slots=True)
class PstreeEntry:
    """One process of ``pstree.img``: ids and its threads (tids)."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    threads: tuple
    source: Source = field(compare=False)
    raw: object = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Creds:
    """A thread's credentials (``creds_entry``)."""

    uid: int
    gid: int
    euid: int
    egid: int
    suid: int
    sgid: int
    fsuid: int
    fsgid: int
    groups: tuple
    cap_eff: tuple
    cap_prm: tuple
    cap_bnd: tuple
    lsm_profile: str | None
    no_new_privs: int | None


@dataclass(frozen=True, slots=True)
class Registers:
    """A thread's saved registers, as its core image holds them (``thread_info`` on
    x86_64, ``ti_aarch64`` on aarch64).

    Each part is ``((name, value), ...)`` in the schema's field order, a repeated
    field's value a tuple: ``gp`` the general registers (x86: ``user_x86_regs_entry``,
    aarch64: ``regs``, ``sp``, ``pc``, ``pstate``), ``fp`` the floating-point state
    (x86: the fxsave fields, aarch64: ``vregs``, ``fpsr``, ``fpcr``), ``xsave`` the
    x86 XSAVE components (empty when the image has none); ``tls`` aarch64's TPIDR_EL0.
    """

    arch: str
    gp: tuple
    fp: tuple
    xsave: tuple = ()
    tls: int | None = None

    def value(self, part: str, name: str, default: Any = None) -> Any:
        """The value of field ``name`` of ``part`` (``gp``, ``fp``, ``xsave``)."""
        for key, value in getattr(self, part):
            if key == name:
                return value
        return default


@dataclass(frozen=True, slots=True)
class ThreadCore:
    """One ``core-<tid>.img``: the thread's state; the leader's also the task's.

    ``task_state``, ``exit_code`` and ``task_comm`` (the task's name, which
    ``comm``, the thread's, may differ from) come from the task part (``tc``),
    which only a group leader's core carries; for other threads they are None.
    ``cg_set`` is the id of the thread's set in ``cgroup.img``, or None.
    ``xsave_features`` is the x86 XSAVE feature mask the thread used (the
    restore host's CPU must offer every bit), or None.  ``registers`` the
    thread's :class:`Registers` (None for an architecture not read),
    ``signals`` the raw ``siginfo_t`` bytes of its pending signals (the
    thread's own, then for a leader the process's), ``task_flags`` the task's
    ``PF_*`` flags (leader only), ``nice`` the thread's nice value.
    """

    tid: int
    arch: str
    comm: str | None
    task_state: TaskState | int | None
    exit_code: int | None
    creds: Creds | None
    seccomp_mode: str | None
    xsave_features: int | None
    blocked_signals: int | None
    source: Source = field(compare=False)
    raw: object = field(default=None, repr=False, compare=False)
    registers: Registers | None = field(default=None, compare=False)
    signals: tuple = field(default=(), compare=False)
    task_flags: int | None = field(default=None, compare=False)
    nice: int | None = field(default=None, compare=False)
    task_comm: str | None = None
    cg_set: int | None = None
    #: an x86 thread in 32-bit compat mode (``thread_info.gpregs.mode``)
    compat: bool = False
    #: the thread had registered restartable sequences (``thread_core.rseq_entry``)
    rseq: bool = False
    #: the index in ``seccomp.img`` of the thread's last seccomp filter (its chain
    #: goes on through each filter's ``prev``), or None without filters
    seccomp_filter: int | None = None
    #: the filter came from the task part (``tc.old_seccomp_filter``, dumps of older CRIU,
    #: one per process): CRIU restores it with ``SECCOMP_FILTER_FLAG_TSYNC``, for every thread
    seccomp_per_process: bool = False

    @property
    def state_label(self) -> str | None:
        """``alive``, ``zombie``, ``stopped`` (or ``unknown(N)``), None for non-leaders."""
        if self.task_state is None:
            return None
        if isinstance(self.task_state, TaskState):
            return self.task_state.label
        return f"unknown({self.task_state})"


@dataclass(frozen=True, slots=True)
class Vma:
    """One mapping of a process's address space."""

    start: int
    end: int
    pgoff: int
    shmid: int
    prot: Prot
    flags: MapFlags
    status: VmaStatus
    fd: int
    source: Source = field(compare=False)

    @property
    def size(self) -> int:
        """Bytes mapped."""
        return self.end - self.start

    @property
    def pages(self) -> int:
        """Pages mapped."""
        return (self.end - self.start) // PAGE_SIZE

    @property
    def is_file_backed(self) -> bool:
        """True when ``shmid`` names a file in files.img (file and memfd mappings)."""
        return bool(self.status & (VmaStatus.FILE_PRIVATE | VmaStatus.FILE_SHARED))

    @property
    def is_shared_anon(self) -> bool:
        """True for ``MAP_SHARED|MAP_ANONYMOUS`` (contents in pagemap-shmem-<shmid>)."""
        return bool(self.status & VmaStatus.ANON_SHARED)


@dataclass(frozen=True, slots=True)
class Mm:
    """``mm-<pid>.img``: the address space layout of one process."""

    exe_file_id: int
    arg_start: int
    arg_end: int
    env_start: int
    env_end: int
    start_brk: int
    brk: int
    start_stack: int
    auxv: tuple
    vmas: tuple
    source: Source = field(compare=False)
    raw: object = field(default=None, repr=False, compare=False)


class PageRun(NamedTuple):
    """One pagemap entry: ``nr_pages`` pages from ``vaddr`` with ``flags``.

    A named tuple rather than a dataclass: pagemaps hold millions of runs and
    a tuple is the cheapest immutable record to make.
    """

    vaddr: int
    nr_pages: int
    flags: PageFlags
    index: int  # type: ignore[assignment]  # a field, as tuple.index is a method

    @property
    def end(self) -> int:
        """The address just past the run."""
        return self.vaddr + self.nr_pages * PAGE_SIZE

    @property
    def present(self) -> bool:
        """True when the pages are in this checkpoint's pages file."""
        return bool(self.flags & PageFlags.PRESENT)

    @property
    def in_parent(self) -> bool:
        """True when the pages are in the ``parent/`` checkpoint."""
        return bool(self.flags & PageFlags.PARENT)

    @property
    def lazy(self) -> bool:
        """True when the pages are served later by a lazy-pages daemon."""
        return bool(self.flags & PageFlags.LAZY)


@dataclass(frozen=True, slots=True)
class Pagemap:
    """A ``pagemap-<pid>.img`` or ``pagemap-shmem-<shmid>.img``: which pages were
    dumped and where (``pages_id`` names the ``pages-<id>.img`` with the data)."""

    pages_id: int
    runs: tuple
    source: Source = field(compare=False)

    def pages_by_flags(self) -> dict[int, int]:
        """``{flags value: pages}`` as FACTS.json counts them."""
        counts: dict[int, int] = {}
        for run in self.runs:
            counts[int(run.flags)] = counts.get(int(run.flags), 0) + run.nr_pages
        return counts

    @property
    def present_pages(self) -> int:
        """Pages whose data is in this checkpoint's pages file."""
        return sum(run.nr_pages for run in self.runs if run.present)


@dataclass(frozen=True, slots=True)
class FdInfo:
    """One open file descriptor of a file table (``fdinfo-<files_id>.img``)."""

    fd: int
    type: FdType | int
    id: int
    flags: int
    source: Source = field(compare=False)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One entry of ``files.img`` (or of the pre-3.4 per-kind images).

    ``detail`` is the kind-specific message (``reg``, ``usk``, ``isk``, ...).
    ``name`` is what users recognise where the image has one: a regular file's
    path, a memfd's name, a unix socket's bound name, a tty's index.
    """

    id: int
    type: FdType | int
    name: str | None
    detail: object = field(repr=False)
    source: Source = field(compare=False)


@dataclass(frozen=True, slots=True)
class Ids:
    """``ids-<pid>.img``: the keys linking a process to shared objects."""

    vm_id: int
    files_id: int
    fs_id: int
    sighand_id: int
    namespaces: tuple  # ((name, id), ...) for pid, net, ipc, uts, mnt, user, cgroup, time
    source: Source = field(compare=False)

    def namespace(self, name: str) -> int | None:
        """The id of namespace ``name`` (``"pid"``, ``"mnt"``, ...), or None."""
        return dict(self.namespaces).get(name)


@dataclass(frozen=True, slots=True)
class Fs:
    """``fs-<pid>.img``: the ids of the cwd and root files, and the umask."""

    cwd_id: int
    root_id: int
    umask: int | None
    source: Source = field(compare=False)


@dataclass(frozen=True, slots=True)
class Inventory:
    """``inventory.img``: what the whole dump needs to restore."""

    img_version: int
    fdinfo_per_id: bool
    ns_per_id: bool
    root_ids: Ids | None
    root_cg_set: int | None
    lsm_type: str | None
    dump_uptime: int | None
    pre_dump_mode: str | None
    tcp_close: bool
    network_lock_method: str | None
    plugins: tuple
    run_id: str | None  # CRIU's run id of the dump (CRIU >= 3.16), matching its log's
    source: Source = field(compare=False)
    raw: object = field(default=None, repr=False, compare=False)
    allow_uprobes: bool = False  # dumped with --allow-uprobes (CRIU >= 4.0)


@dataclass(frozen=True, slots=True)
class DumpStats:
    """``stats-dump``: every counter and timing CRIU recorded, by field name.

    Times are in microseconds (CRIU's unit); ``fields`` keeps whatever the
    schema knows, so counters newer than crit-plus still show up.
    """

    fields: tuple  # ((name, value), ...) in field order
    source: Source = field(compare=False)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of counter ``name``."""
        return dict(self.fields).get(name, default)
