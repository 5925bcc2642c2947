"""The typed checkpoint graph: a directory of images as one object to walk.

``open_checkpoint(path)`` reads ``inventory.img`` and ``pstree.img`` only;
everything else is decoded on first use and kept on the instance that asked
(``functools.cached_property``; no module-level caches).  How the images link::

    pstree.img ── pid ──► core-<tid>.img (one per thread; the leader's has the task state)
                     ├──► ids-<pid>.img ── files_id ──► fdinfo-<files_id>.img ── id ──► files.img
                     ├──► mm-<pid>.img   (VMAs; vma.shmid → files.img for file mappings,
                     │                    exe_file_id → files.img)
                     ├──► pagemap-<pid>.img ── pages_id ──► pages-<pages_id>.img
                     │         └── PE_PARENT ──► parent/pagemap-<pid>.img (recursively)
                     └──► fs-<pid>.img   (cwd_id, root_id → files.img)
    shared anonymous / memfd memory ──► pagemap-shmem-<shmid>.img ── pages_id ──► pages-<id>.img

The graph does not trust the images: orphans, duplicate pids, parent cycles,
missing or undecodable images become :class:`~crit_plus.findings.Finding` s,
not exceptions.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from decoders.errors import DecodeError, MissingImageError, StrPath
from decoders.flags import PAGE_SIZE, TaskState, VmaStatus
from decoders.fdinfo import read_fdinfo
from decoders.image import read_messages
from decoders.core import read_core
from decoders.ids import read_fs, read_ids
from decoders.inventory import read_dump_stats, read_inventory
from decoders.lazy import LazyPattern
from decoders.mm import read_mm
from decoders.pstree import read_pstree

from .confinement import (
    CgroupMember,
    SeccompFilter,
    ThreadSeccomp,
    filter_chain,
    read_cgroup_sets,
    read_seccomp_filters,
    restored_seccomp,
)
from .files import Fd, FileObject, FileTable
from .findings import ERROR, INFO, WARNING, Finding, FindingList, error_finding, named
from .memory import AddressSpace, Mapping, PageStore, UnavailableError, backing_for
from .mounts import MountNamespace, read_mount_namespace
from .namespaces import Namespace, read_namespaces
from .netns import NetNamespace, read_net_namespace

if TYPE_CHECKING:
    from decoders.records import (
        Creds,
        DumpStats,
        Fs,
        Ids,
        Mm,
        Pagemap,
        PstreeEntry,
        ThreadCore,
    )

    from .pages import CheckpointPages, ProcessPages  # loaded when .pages is first read
    from .resources import CpuX86, FileLock, MemfdInode, Queues, TtyInfo  # on first use

_ZOMBIE_STATES = (TaskState.DEAD, TaskState.ZOMBIE_AT_SEIZE)


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a zombie ended, decoded from the wait status CRIU keeps in its core
    (``TaskCoreEntry.exit_code``, the ``exit_code`` field of ``/proc/PID/stat``).

    CRIU's ``restore_one_zombie`` (criu/cr-restore.c) reads it the same way: a
    signal in the low 7 bits kills the restored zombie (0x80: a core was dumped),
    otherwise it exits with ``(wait_status >> 8) & 0x7f``.  ``status`` is the byte the
    process passed to exit (``wait_status >> 8 & 0xff``); ``restored_status`` what
    CRIU exits with on restore (differs above 127); ``wait_status`` the undecoded value.
    """

    wait_status: int
    status: int | None
    signal: int | None
    core_dumped: bool

    @classmethod
    def decode(cls, wait_status: int) -> ExitStatus:
        """The :class:`ExitStatus` of ``wait_status``."""
        signal = wait_status & 0x7F
        if signal:
            return cls(wait_status, None, signal, bool(wait_status & 0x80))
        return cls(wait_status, (wait_status >> 8) & 0xFF, None, False)

    @property
    def restored_status(self) -> int | None:
        """The status CRIU's restored zombie exits with (``status & 0x7f``)."""
        return None if self.status is None else self.status & 0x7F

    @property
    def signal_name(self) -> str | None:
        """``SIGKILL``..., or None (no signal, or one Python does not name)."""
        import signal as signals
        if self.signal is None:
            return None
        try:
            return signals.Signals(self.signal).name
        except ValueError:
            return None

    @property
    def text(self) -> str:
        """``exited with status 7`` or ``killed by signal 9 (SIGKILL), core dumped``."""
        if self.signal is None:
            restored = self.restored_status
            again = "" if restored == self.status else f", restored as {restored} by CRIU"
            return f"exited with status {self.status}{again}"
        name = self.signal_name
        named_as = f" ({name})" if name else ""
        return f"killed by signal {self.signal}{named_as}" + (
            ", core dumped" if self.core_dumped else "")

    @property
    def short(self) -> str:
        """``exit 7``, ``SIGKILL`` or ``SIGABRT, core`` (for a table cell)."""
        if self.signal is None:
            return f"exit {self.status}"
        return (self.signal_name or f"signal {self.signal}") + (
            ", core" if self.core_dumped else "")

    def as_json(self) -> dict:
        """The decoded keys: ``status``, ``signal``, ``signal_name``, ``core_dumped``,
        ``text`` and the undecoded ``wait_status``."""
        return {"status": self.status, "signal": self.signal, "signal_name": self.signal_name,
                "core_dumped": self.core_dumped, "text": self.text, "wait_status": self.wait_status}


#: Most bytes, and most strings, of a command line or environment read back from
#: memory (Linux's ARG_MAX is 2 MiB with the usual 8 MiB stack; a damaged mm
#: image can name terabytes, or megabytes of NULs that would be millions of "").
STRINGS_LIMIT = 4 << 20
STRINGS_COUNT_LIMIT = 1 << 17
#: Most bytes of a rewritten process title (the kernel reads one page from arg_start).
MAX_TITLE = PAGE_SIZE
_FILE_BACKED = int(VmaStatus.FILE_PRIVATE | VmaStatus.FILE_SHARED)


def open_checkpoint(path: StrPath, *, root: StrPath | None = None) -> Checkpoint:
    """Open the directory of CRIU images at ``path`` and return a :class:`Checkpoint`.

    ``root`` is a directory that stands for ``/`` of the dumped processes, used to
    read clean pages of file mappings.  Finding the images inside an instance,
    snapshot or export directory (and its ``rootfs/``) is the job of
    :func:`crit_plus.opening.open_checkpoint`, the public ``crit_plus.open_checkpoint``.

    Raises :class:`~decoders.errors.MissingImageError` when ``path`` holds no
    checkpoint, and a :class:`~decoders.errors.DecodeError` when
    ``inventory.img`` or ``pstree.img`` cannot be decoded.
    """
    directory = os.fspath(path)
    if not os.path.isdir(directory):
        reason = "not a directory" if os.path.exists(directory) else "no such directory"
        raise MissingImageError(directory, f"{reason}: a checkpoint is a directory of images")
    if not any(os.path.exists(os.path.join(directory, name))
               for name in ("inventory.img", "pstree.img")):
        raise MissingImageError(
            os.path.join(directory, "inventory.img"),
            "not a CRIU checkpoint: no inventory.img or pstree.img here")
    return Checkpoint(directory, root=root)


def _split_strings(data):
    """NUL-terminated strings (at most :data:`STRINGS_COUNT_LIMIT`) as text; bytes that
    are not UTF-8 kept as surrogate escapes."""
    parts = data.split(b"\0", STRINGS_COUNT_LIMIT)[:STRINGS_COUNT_LIMIT]
    if parts and parts[-1] == b"":
        parts.pop()
    return tuple(part.decode("utf-8", "surrogateescape") for part in parts)



@dataclass(frozen=True, slots=True)
class Thread:
    """One thread of a process (``core-<tid>.img``).

    ``state`` is the task state a core carries (only a group leader's core has
    one; None for the others), ``core`` the decoded record or None when the
    image is missing or bad.
    """

    tid: int
    is_leader: bool
    core: ThreadCore | None

    @property
    def comm(self) -> str | None:
        """The thread's name, or None."""
        return self.core.comm if self.core is not None else None

    @property
    def state(self) -> TaskState | int | None:
        """The :class:`~decoders.flags.TaskState` this thread's core records, or None."""
        return self.core.task_state if self.core is not None else None

    @property
    def creds(self) -> Creds | None:
        """The thread's :class:`~decoders.records.Creds`, or None."""
        return self.core.creds if self.core is not None else None


@dataclass(frozen=True, slots=True)
class PagesFile:
    """One ``pages-<id>.img``: which pagemaps use it, and its size against theirs."""

    name: str
    pages_id: int
    pagemaps: tuple
    present_pages: int
    size: int | None

    @property
    def expected_size(self) -> int:
        """4096 × the PE_PRESENT pages its pagemaps list."""
        return self.present_pages * PAGE_SIZE


class ProcessTree:
    """Parent/child links of the processes, checked instead of trusted.

    A process whose parent is not in the checkpoint is an orphan (a root, with
    a finding); a parent cycle is broken at its first member in pstree order
    (a root, with a finding); more than one root is a finding.
    """

    def __init__(self, entries: Sequence[PstreeEntry]) -> None:
        self.order = [entry.pid for entry in entries]
        ppid = {entry.pid: entry.ppid for entry in entries}
        position = {pid: index for index, pid in enumerate(self.order)}.__getitem__
        findings = []
        parent = {}
        roots = []
        for entry in entries:
            if entry.ppid == 0:
                roots.append(entry.pid)
            elif entry.ppid == entry.pid:
                findings.append(Finding(ERROR, "pid-cycle",
                                        f"pid {entry.pid} is its own parent", "pstree.img",
                                        named(pid=entry.pid)))
                roots.append(entry.pid)
            elif entry.ppid not in ppid:
                findings.append(Finding(
                    ERROR, "orphan",
                    f"pid {entry.pid}: parent pid {entry.ppid} is not in the checkpoint",
                    "pstree.img", named(pid=entry.pid)))
                roots.append(entry.pid)
            else:
                parent[entry.pid] = entry.ppid
        # cycles: walk parent links from every process; a walk that meets itself is a cycle
        state: dict[int, int] = {}  # pid -> 1 visiting, 2 done
        for pid in self.order:
            path = []
            node = pid
            while node in parent and state.get(node) is None:
                state[node] = 1
                path.append(node)
                node = parent[node]
            if node in parent and state.get(node) == 1:
                cycle = path[path.index(node):]
                first = min(cycle, key=position)
                findings.append(Finding(
                    ERROR, "pid-cycle",
                    "parent cycle: " + " -> ".join(str(p) for p in cycle + [cycle[0]]),
                    "pstree.img", named(pid=first)))
                del parent[first]
                roots.append(first)
            for visited in path:
                state[visited] = 2
        roots.sort(key=position)
        top = [pid for pid in roots if ppid[pid] == 0]
        if len(top) > 1:  # CRIU takes the first for the root and stops at the second
            findings.append(Finding(
                WARNING, "many-roots",
                "more than one process has parent 0: " + ", ".join(str(p) for p in top),
                "pstree.img", named(pid=top[1])))
        children: dict[int, list[int]] = {}  # only processes with children: leaves cost nothing
        for pid in self.order:
            if pid in parent:
                children.setdefault(parent[pid], []).append(pid)
        self.roots = tuple(roots)
        self._parent = parent
        self._children = {pid: tuple(kids) for pid, kids in children.items()}
        self.findings = tuple(findings)

    def parent(self, pid: int) -> int | None:
        """The pid of ``pid``'s parent in the tree, or None for a root."""
        return self._parent.get(pid)

    def children(self, pid: int) -> tuple[int, ...]:
        """The pids of ``pid``'s children, in pstree order."""
        return self._children.get(pid, ())

    def walk(self) -> Iterator[tuple[int, int]]:
        """Yield ``(depth, pid)`` depth-first from each root, children in pstree order."""
        stack = [(0, pid) for pid in reversed(self.roots)]
        while stack:
            depth, pid = stack.pop()
            yield depth, pid
            stack.extend((depth + 1, kid) for kid in reversed(self._children.get(pid, ())))


class _Loaded:
    """A value decoded from an image and the findings that came with it."""

    __slots__ = ("value", "findings")

    def __init__(self, value=None, findings=()):
        self.value = value
        self.findings = tuple(findings)


#: Shared by every process: nothing loaded and nothing to say (an optional image that is
#: missing, no file id), and a required image that is missing, whose finding
#: (:meth:`Process._findings_of`) is made only when the findings are asked for.  A hostile
#: ``pstree.img`` of a million pids without images costs no finding object per pid
#: (docs/robustness.md).
_NOTHING = _Loaded()
_MISSING = _Loaded()
_NO_FDS = _Loaded(())


_T = TypeVar("_T")


class _kept(Generic[_T]):  # noqa: N801 (used as a decorator, like cached_property)
    """:func:`functools.cached_property` for a class with ``__slots__``: the value is
    computed on first use and kept in the slot ``_k_<name>`` the class declares."""

    def __init__(self, func: Callable[[Any], _T]) -> None:
        self.func = func
        self.__doc__ = func.__doc__
        self.slot: Any = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = owner.__dict__["_k_" + name]

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _kept[_T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        try:
            return self.slot.__get__(instance, owner)
        except AttributeError:
            value = self.func(instance)
            self.slot.__set__(instance, value)
            return value


class Process:
    """One process of the checkpoint.  Cheap to make; images are read on first use."""

    # slots, not a __dict__ (each ``@_kept`` value in its ``_k_`` slot): a hostile
    # pstree.img lists a million processes
    __slots__ = ("checkpoint", "entry", "pid", "ppid", "pgid", "sid", "_k__cores",
                 "_k__needs_images", "_k__ids", "_k__mm", "_k__fs", "_k__pagemap", "_k_threads",
                 "_k__fds", "_k__cwd", "_k__root", "_k__exe", "_k__memory", "_k_pages",
                 "_k__command_line", "_k_environ", "_k_memory_damage")

    def __init__(self, checkpoint: Checkpoint, entry: PstreeEntry) -> None:
        self.checkpoint = checkpoint
        self.entry = entry
        self.pid = entry.pid
        self.ppid = entry.ppid
        self.pgid = entry.pgid
        self.sid = entry.sid

    def __repr__(self):
        return f"<Process {self.pid} {self.comm!r}>"

    # -- images --------------------------------------------------------------------------
    def _path(self, name):
        return os.path.join(self.checkpoint.directory, name)

    def _load(self, reader, name, *args, required=True):
        try:
            return _Loaded(reader(self._path(name), *args))
        except MissingImageError:
            return _MISSING if required else _NOTHING
        except DecodeError as error:
            return _Loaded(None, [error_finding(error)])

    @_kept
    def _cores(self):
        """tid → loaded core, leader first.  A zombie has its leader alone: CRIU writes
        only ``core-<pid>.img`` for it and leaves its pstree thread ids unset
        (``dump_one_zombie``; ``collect_threads`` refuses zombies with threads), so the
        ids there are not threads."""
        leader = self._load(read_core, f"core-{self.pid}.img", self.pid)
        cores = {self.pid: leader}
        if leader.value is not None and leader.value.task_state in _ZOMBIE_STATES:
            return cores
        for tid in self.entry.threads:
            if tid not in cores:
                cores[tid] = self._load(read_core, f"core-{tid}.img", tid)
        return cores

    @_kept
    def _needs_images(self):
        """True unless the process is a zombie (CRIU writes only its core)."""
        return not self.is_zombie

    @_kept
    def _ids(self):
        return self._load(read_ids, f"ids-{self.pid}.img", required=self._needs_images)

    @_kept
    def _mm(self):
        return self._load(read_mm, f"mm-{self.pid}.img", required=self._needs_images)

    @_kept
    def _fs(self):
        return self._load(read_fs, f"fs-{self.pid}.img", required=self._needs_images)

    @_kept
    def _pagemap(self):
        name = f"pagemap-{self.pid}.img"
        store = self.checkpoint.page_store
        table, error = store.loaded(name)
        if not isinstance(table, str):
            return _Loaded(table)  # its Pagemap record is made only when asked for
        if isinstance(error, MissingImageError):
            return _MISSING if self._needs_images else _NOTHING
        return _Loaded(None, [error_finding(error)])

    # -- identity and state ------------------------------------------------------------
    @property
    def core(self) -> ThreadCore | None:
        """The leader's :class:`~decoders.records.ThreadCore`, or None."""
        return self._cores[self.pid].value

    @_kept
    def threads(self) -> tuple[Thread, ...]:
        """Every :class:`Thread`, leader first: the pstree entry's thread ids (the leader
        added when missing), a zombie's leader alone — the one thread list."""
        return tuple(Thread(tid, tid == self.pid, loaded.value)
                     for tid, loaded in self._cores.items())

    @property
    def comm(self) -> str | None:
        """The process name (the task's ``comm``), or None."""
        core = self.core
        if core is None:
            return None
        return core.task_comm or core.comm

    @property
    def state(self) -> TaskState | int | None:
        """The :class:`~decoders.flags.TaskState` (ALIVE, DEAD = zombie, STOPPED), or None."""
        core = self.core
        return core.task_state if core is not None else None

    @property
    def state_label(self) -> str | None:
        """``alive``, ``zombie``, ``stopped``, ``unknown(N)``, or None without a core."""
        core = self.core
        return core.state_label if core is not None else None

    @property
    def is_zombie(self) -> bool:
        """True when CRIU dumped the process as a zombie (only its core exists)."""
        return self.state in _ZOMBIE_STATES

    @property
    def exit_status(self) -> ExitStatus | None:
        """How a zombie ended (:class:`ExitStatus`), or None for a living process or a
        zombie whose core holds no exit code."""
        core = self.core
        if not self.is_zombie or core is None or core.exit_code is None:
            return None
        return ExitStatus.decode(core.exit_code)

    @property
    def creds(self) -> Creds | None:
        """The leader's :class:`~decoders.records.Creds`, or None."""
        core = self.core
        return core.creds if core is not None else None

    @property
    def ids(self) -> Ids | None:
        """The :class:`~decoders.records.Ids` (files_id, namespaces...), or None."""
        return self._ids.value

    @property
    def ids_findings(self) -> tuple[Finding, ...]:
        """Why :attr:`ids` is None (``ids-PID.img`` missing or damaged), or ()."""
        return tuple(self._ids.findings)

    @property
    def mm(self) -> Mm | None:
        """The :class:`~decoders.records.Mm`, or None (zombies have none)."""
        return self._mm.value

    @property
    def fs(self) -> Fs | None:
        """The :class:`~decoders.records.Fs` (cwd and root ids), or None."""
        return self._fs.value

    @property
    def pagemap(self) -> Pagemap | None:
        """The :class:`~decoders.records.Pagemap` record, or None."""
        table = self._pagemap.value
        return table.pagemap if table is not None else None

    # -- tree ---------------------------------------------------------------------------
    @property
    def parent(self) -> Process | None:
        """The parent :class:`Process` in the checked tree, or None for a root."""
        ppid = self.checkpoint.tree.parent(self.pid)
        return self.checkpoint.process(ppid) if ppid is not None else None

    @property
    def children(self) -> tuple[Process, ...]:
        """The child processes, in pstree order."""
        tree = self.checkpoint.tree
        return tuple(self.checkpoint.process(pid) for pid in tree.children(self.pid))

    # -- files ----------------------------------------------------------------------------
    @_kept
    def _fds(self):
        ids = self.ids
        if ids is None:
            return _NO_FDS
        name = f"fdinfo-{ids.files_id}.img"
        try:
            infos = read_fdinfo(self._path(name))
        except MissingImageError:
            finding = Finding(INFO, "no-fdinfo",
                              f"pid {self.pid}: {name} is missing (no open files)", name,
                              named(pid=self.pid))
            return _Loaded((), [finding] if self._needs_images else [])
        except DecodeError as error:
            return _Loaded((), [error_finding(error)])
        table = self.checkpoint.files
        fds, findings = [], []
        for info in infos:
            file = table.get(info.id)
            if file is None:
                findings.append(Finding(
                    ERROR, "unresolved-fd",
                    f"pid {self.pid} fd {info.fd}: file id {info.id} is not in files.img", name,
                    named(pid=self.pid, fd=info.fd, id=info.id)))
            fds.append(Fd(info.fd, info.type, file, info.flags, info.source, info.id))
        return _Loaded(tuple(fds), findings)

    @property
    def fds(self) -> tuple[Fd, ...]:
        """Every open :class:`~crit_plus.files.Fd`, in fdinfo order."""
        return self._fds.value

    def fd(self, number: int) -> Fd | None:
        """The :class:`~crit_plus.files.Fd` numbered ``number``, or None."""
        for fd in self.fds:
            if fd.fd == number:
                return fd
        return None

    def epoll_targets(self, number: int) -> tuple[tuple[int, int, Fd | None], ...]:
        """``(target fd number, events, Fd or None)`` for each file epoll fd ``number`` watches."""
        fd = self.fd(number)
        if fd is None or fd.file is None:
            return ()
        return tuple((t["fd"], t["events"], self.fd(t["fd"]))
                     for t in fd.file.details.get("targets", ()))

    def _file(self, file_id, what, image):
        if file_id is None:
            return _NOTHING
        file = self.checkpoint.files.get(file_id)
        if file is None:
            return _Loaded(None, [Finding(
                ERROR, "unresolved-file",
                f"pid {self.pid}: {what} (file id {file_id}) is not in files.img", image,
                named(pid=self.pid, id=file_id))])
        return _Loaded(file)

    @_kept
    def _cwd(self):
        fs = self.fs
        return self._file(fs.cwd_id if fs else None, "cwd", f"fs-{self.pid}.img")

    @_kept
    def _root(self):
        fs = self.fs
        return self._file(fs.root_id if fs else None, "root", f"fs-{self.pid}.img")

    @_kept
    def _exe(self):
        mm = self.mm
        return self._file(mm.exe_file_id if mm else None, "executable", f"mm-{self.pid}.img")

    @property
    def cwd(self) -> FileObject | None:
        """The working directory's :class:`~crit_plus.files.FileObject`, or None."""
        return self._cwd.value

    @property
    def root(self) -> FileObject | None:
        """The root directory's :class:`~crit_plus.files.FileObject`, or None."""
        return self._root.value

    @property
    def exe(self) -> FileObject | None:
        """The executable's :class:`~crit_plus.files.FileObject`, or None."""
        return self._exe.value

    # -- memory ---------------------------------------------------------------------------
    @_kept
    def _memory(self):
        mm = self.mm
        if mm is None:
            return _NOTHING
        checkpoint = self.checkpoint
        files = checkpoint.files
        layout, findings = [], []
        cache = checkpoint._backings
        for vma in mm.vmas:
            file = None
            if int(vma.status) & _FILE_BACKED:
                file = files.get(vma.shmid)
                if file is None:
                    findings.append(Finding(
                        ERROR, "unresolved-vma-file",
                        f"VMA {vma.start:#x}-{vma.end:#x} maps file id {vma.shmid}, "
                        "not in files.img", f"mm-{self.pid}.img",
                        named(pid=self.pid, id=vma.shmid, vaddr=f"{vma.start:#x}")))
            layout.append((vma, file, backing_for(vma, file, files, checkpoint.root, cache)))
        name = f"pagemap-{self.pid}.img"
        table = checkpoint.page_store.table(name)
        problem = None
        if isinstance(table, str):
            problem = f"no usable pagemap: {table}"
        space = AddressSpace(name, layout, table if not isinstance(table, str) else None,
                             checkpoint.page_store, problem, start_stack=mm.start_stack)
        return _Loaded(space, findings)

    @property
    def memory(self) -> AddressSpace | None:
        """The :class:`~crit_plus.memory.AddressSpace`, or None without an mm image (zombies)."""
        return self._memory.value

    @_kept
    def memory_damage(self) -> tuple[Finding, ...]:
        """The errors of the images that hold this process's memory (its mm and pagemap,
        the pages file, the ``parent/`` chain, the shared memory it maps): where there
        is one, part or all of its memory cannot be read.  Empty when they are whole
        (and for a zombie, of which CRIU keeps no memory)."""
        parts = [self._mm, self._pagemap, self._memory]
        found = [f for part in parts for f in part.findings]
        if self.memory is not None:
            found.extend(self.memory.findings)
        return tuple(finding for finding in found if finding.severity == ERROR)

    @property
    def vmas(self) -> tuple[Mapping, ...]:
        """The :class:`~crit_plus.memory.Mapping` of every VMA (empty without memory)."""
        memory = self.memory
        return memory.vmas if memory is not None else ()

    @_kept
    def pages(self) -> ProcessPages:
        """The process's :class:`~crit_plus.pages.ProcessPages`: private pages by state,
        shared-memory pages it maps, both by VMA kind (the rule: :mod:`crit_plus.pages`).
        A process with memory whose pagemap is missing or does not decode (cut mid-entry)
        has private pages *unknown* (:attr:`~crit_plus.pages.ProcessPages.unknown`: the
        reason, naming the file and offset), never 0: the one place that decides it."""
        from .pages import process_pages

        table = self.checkpoint.page_store.table(f"pagemap-{self.pid}.img")
        if isinstance(table, str):
            return process_pages(self.memory, None,
                                 table if self.memory is not None else None)
        return process_pages(self.memory, table)

    def _strings(self, start, end):
        memory = self.memory
        if memory is None or end <= start:
            return None
        try:
            data = memory.read(start, min(end - start, STRINGS_LIMIT))
        except UnavailableError:
            return None
        return _split_strings(data)

    @property
    def argv(self) -> tuple[str, ...] | None:
        """The same as :attr:`command_line` (one reader of the argument area)."""
        return self.command_line

    @property
    def command_line(self) -> tuple[str, ...] | None:
        """The command line as ``/proc/PID/cmdline`` gives it and ``ps`` shows it, read back
        from memory; None for a zombie, an empty argument area or unreadable memory.

        As the kernel does (``get_mm_cmdline`` in ``fs/proc/base.c``): when the
        last byte of ``mm`` arg_start..arg_end is a NUL, the arguments are the
        NUL-separated strings there, trailing NULs being padding (a process that
        shortened its title; ``ps`` skips them too); when it is not, the process
        rewrote its title (``setproctitle``: sshd, postgres, nginx workers) and the
        title is the one string from arg_start to the first NUL, read on into the
        environment area when that follows (at most one page, :data:`MAX_TITLE`).
        At most :data:`STRINGS_LIMIT` bytes and :data:`STRINGS_COUNT_LIMIT` strings.
        When it cannot be read, :attr:`command_line_unknown` says why.
        """
        return self._command_line[0]

    @property
    def command_line_unknown(self) -> str | None:
        """Why the command line of a process with memory and an argument area cannot be
        read (its pagemap cut or missing, the pages unavailable: the file and offset
        when a decode error is the cause), or None (read, or there is none to read)."""
        return self._command_line[1]

    @_kept
    def _command_line(self) -> tuple[tuple[str, ...] | None, str | None]:
        mm, memory = self.mm, self.memory
        if mm is None or memory is None or mm.arg_end <= mm.arg_start:
            return None, None
        try:
            return self._read_command_line(mm, memory), None
        except UnavailableError as error:
            unknown = self.pages.unknown
            return None, unknown or error.why

    def _read_command_line(self, mm, memory):
        start, end = mm.arg_start, mm.arg_end
        env_end = mm.env_end if mm.env_start == end and mm.env_end >= end else end
        if memory.read(end - 1, 1) == b"\0":
            data = memory.read(start, min(end - start, STRINGS_LIMIT)).rstrip(b"\0")
            return _split_strings(data + b"\0") if data else ()
        try:
            data = memory.read(start, min(env_end - start, MAX_TITLE))
        except UnavailableError:  # the kernel, too, gives what it can read
            data = memory.read(start, min(end - start, MAX_TITLE))
        return (data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"),)

    @_kept
    def environ(self) -> tuple[str, ...] | None:
        """The environment (``NAME=value`` strings) read back from memory, or None."""
        mm = self.mm
        return self._strings(mm.env_start, mm.env_end) if mm is not None else None

    # -- findings -------------------------------------------------------------------------
    def _findings_of(self, loaded, name):
        """The findings of one loaded image ``name``: a missing one's made here."""
        if loaded is _MISSING:
            return (Finding(ERROR, "missing-image",
                            f"pid {self.pid} needs {name}, which is missing", name,
                            named(pid=self.pid)),)
        return loaded.findings

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Every :class:`~crit_plus.findings.Finding` about this process (decodes its images).
        Made on each call, not kept: :attr:`Checkpoint.findings` keeps what it lists."""
        found = []
        for tid, loaded in self._cores.items():
            found.extend(self._findings_of(loaded, f"core-{tid}.img"))
        if self.core is not None and self.state is None:
            found.append(Finding(ERROR, "no-task-state",
                                 f"pid {self.pid}: the leader's core has no task state",
                                 f"core-{self.pid}.img", named(pid=self.pid)))
        pid = self.pid
        for part, name in ((self._ids, f"ids-{pid}.img"), (self._mm, f"mm-{pid}.img"),
                           (self._fs, f"fs-{pid}.img"), (self._pagemap, f"pagemap-{pid}.img")):
            found.extend(self._findings_of(part, name))
        for part in (self._fds, self._cwd, self._root, self._exe, self._memory):
            found.extend(part.findings)
        if self.is_zombie:
            ended = self.exit_status
            how = f" ({ended.text})" if ended is not None else ""
            for name in (f"mm-{self.pid}.img", f"pagemap-{self.pid}.img"):
                if os.path.exists(self._path(name)):
                    found.append(Finding(WARNING, "zombie-images",
                                         f"zombie pid {self.pid}{how} has {name}", name,
                                         named(pid=self.pid)))
        if self.memory is not None:
            found.extend(self.memory.findings)
        return tuple(found)


_PAGES_NAME = LazyPattern(r"^pages-(\d+)\.img$")
_PAGEMAP_NAME = LazyPattern(r"^pagemap-(?:shmem-)?\d+\.img$")


class Checkpoint:
    """One checkpoint directory.  Use :func:`open_checkpoint`.

    Opening reads ``inventory.img`` and ``pstree.img``; processes, files and
    memory are decoded on first use.  The checkpoint is never written.
    """

    def __init__(self, directory: StrPath, *, root: StrPath | None = None,
                 _seen: Iterable[str] = ()) -> None:
        self.directory = os.fspath(directory)
        self.root = os.fspath(root) if root is not None else None
        self._seen = tuple(_seen) + (os.path.realpath(self.directory),)
        self._open_findings: list[Finding] = []
        self._decoded: dict[str, tuple[tuple, DecodeError | None]] = {}
        self.inventory = self._read_inventory()
        self.pstree = self._read_pstree()

    def __repr__(self):
        return f"<Checkpoint {self.directory} ({len(self.pstree)} processes)>"

    def _read_inventory(self):
        path = os.path.join(self.directory, "inventory.img")
        try:
            return read_inventory(path)
        except MissingImageError:
            self._open_findings.append(Finding(ERROR, "missing-image",
                                               "inventory.img is missing", "inventory.img"))
            return None

    def _read_pstree(self):
        path = os.path.join(self.directory, "pstree.img")
        try:
            return tuple(read_pstree(path))
        except MissingImageError:
            self._open_findings.append(Finding(ERROR, "missing-image",
                                               "pstree.img is missing", "pstree.img"))
            return ()

    # -- processes ------------------------------------------------------------------------
    @functools.cached_property
    def _unique_entries(self):
        first: dict[int, int] = {}
        entries, findings = [], []
        for index, entry in enumerate(self.pstree):
            if entry.pid in first:
                findings.append(Finding(
                    ERROR, "duplicate-pid",
                    f"pid {entry.pid} appears again at entry {index} (first at entry "
                    f"{first[entry.pid]}); the first is used", "pstree.img",
                    named(pid=entry.pid, entry=index)))
                continue
            first[entry.pid] = index
            entries.append(entry)
        return entries, findings

    @functools.cached_property
    def _thread_findings(self):
        """A thread id two processes claim (a zombie's unset ids are not threads)."""
        findings = []
        owner: dict[int, int] = {}
        for process in self.processes:
            for thread in process.threads:
                tid = thread.tid
                if tid in owner and owner[tid] != process.pid:
                    findings.append(Finding(
                        ERROR, "duplicate-tid",
                        f"thread {tid} belongs to pid {owner[tid]} and pid {process.pid}",
                        "pstree.img", named(pid=owner[tid], tid=tid)))
                owner.setdefault(tid, process.pid)
        return findings

    @functools.cached_property
    def processes(self) -> tuple[Process, ...]:
        """Every :class:`Process`, in pstree order (a duplicated pid only once)."""
        return tuple(Process(self, entry) for entry in self._unique_entries[0])

    @functools.cached_property
    def _by_pid(self):
        return {process.pid: process for process in self.processes}

    def process(self, pid: int) -> Process:
        """The :class:`Process` with ``pid``; KeyError if there is none."""
        try:
            return self._by_pid[pid]
        except KeyError:
            raise KeyError(f"no process {pid} in {self.directory}") from None

    @property
    def pids(self) -> tuple[int, ...]:
        """Every pid, in pstree order."""
        return tuple(process.pid for process in self.processes)

    @functools.cached_property
    def tree(self) -> ProcessTree:
        """The checked :class:`ProcessTree`."""
        return ProcessTree(self._unique_entries[0])

    def walk(self) -> Iterator[tuple[int, Process]]:
        """Yield ``(depth, Process)`` depth-first through the tree."""
        for depth, pid in self.tree.walk():
            yield depth, self.process(pid)

    # -- files ------------------------------------------------------------------------------
    @functools.cached_property
    def files(self) -> FileTable:
        """The checkpoint's :class:`~crit_plus.files.FileTable` (``files.img`` resolved)."""
        return FileTable.load(self.directory, self.decoded)

    @functools.cached_property
    def _holders(self):
        holders: dict[int, list[tuple[int, int]]] = {}
        for process in self.processes:
            for fd in process.fds:
                if fd.file is not None:
                    holders.setdefault(fd.file.id, []).append((process.pid, fd.fd))
        return {file_id: tuple(items) for file_id, items in holders.items()}

    def holders(self, file_id: int) -> tuple[tuple[int, int], ...]:
        """``((pid, fd), ...)`` of every fd open on file ``file_id``."""
        return self._holders.get(file_id, ())

    # -- memory ------------------------------------------------------------------------------
    @functools.cached_property
    def _backings(self):
        """file id → Backing, shared by the VMAs of every process mapping that file."""
        return {}

    @functools.cached_property
    def page_store(self) -> PageStore:
        """The :class:`~crit_plus.memory.PageStore` of this directory and its ``parent/`` chain."""
        return PageStore(self.directory)

    def read(self, pid: int, vaddr: int, length: int) -> bytes:
        """The ``length`` bytes at ``vaddr`` of process ``pid`` as CRIU would restore them."""
        memory = self.process(pid).memory
        if memory is None:
            raise UnavailableError(os.path.join(self.directory, f"mm-{pid}.img"), vaddr, length,
                                   f"pid {pid} has no memory image")
        return memory.read(vaddr, length)

    @functools.cached_property
    def pages_files(self) -> tuple[PagesFile, ...]:
        """Every ``pages-<id>.img`` (present or needed) as a :class:`PagesFile`, by id."""
        users: dict[int, list[str]] = {}
        present: dict[int, int] = {}
        for name in self.image_files:
            if not _PAGEMAP_NAME.match(name):
                continue
            table = self.page_store.table(name)
            if isinstance(table, str):
                continue  # reported by the process or shmem findings
            users.setdefault(table.pages_id, []).append(name)
            present[table.pages_id] = present.get(table.pages_id, 0) + \
                table.present_bytes // PAGE_SIZE
        for name in self.image_files:
            match = _PAGES_NAME.match(name)
            if match:
                users.setdefault(int(match.group(1)), [])
        result = []
        for pages_id in sorted(users):
            name = f"pages-{pages_id}.img"
            size = None
            try:
                size = os.stat(os.path.join(self.directory, name)).st_size
            except OSError:
                pass
            result.append(PagesFile(name, pages_id, tuple(users[pages_id]),
                                    present.get(pages_id, 0), size))
        return tuple(result)

    @functools.cached_property
    def pages(self) -> CheckpointPages:
        """The checkpoint's :class:`~crit_plus.pages.CheckpointPages`: every process's
        private pages, every shared-memory object's pages once, by VMA kind."""
        from .pages import checkpoint_pages

        return checkpoint_pages(self)

    @functools.cached_property
    def shmem_ids(self) -> tuple[int, ...]:
        """The ids of every ``pagemap-shmem-<shmid>.img``."""
        ids = []
        for name in self.image_files:
            match = re.match(r"^pagemap-shmem-(\d+)\.img$", name)
            if match:
                ids.append(int(match.group(1)))
        return tuple(sorted(ids))

    # -- images no record reader covers -------------------------------------------------------
    def decoded(self, name: str) -> tuple[tuple[Any, ...], DecodeError | None]:
        """``(messages, error)`` of image ``name`` of this directory, decoded once per
        checkpoint (:func:`decoders.image.read_messages`): the messages and None, or
        ``((), DecodeError)`` — a :class:`~decoders.errors.MissingImageError` when the
        image does not exist.  Every image a record reader does not cover (cgroups, pipe
        data, ttys, mounts, ...) is read through here by the graph layer, which turns the
        messages into records; above it nothing reads them (``tests/test_layers.py``)."""
        if name not in self._decoded:
            try:
                self._decoded[name] = (read_messages(os.path.join(self.directory, name)), None)
            except DecodeError as error:
                self._decoded[name] = ((), error.detached())
        return self._decoded[name]

    def image_error(self, name: str) -> DecodeError | None:
        """Why image ``name`` of this directory does not decode (a
        :class:`~decoders.errors.MissingImageError` when it does not exist), or None: the
        integrity check of the images no record reader covers, without their messages."""
        return self.decoded(name)[1]

    # -- what the dump kept beside processes and files (crit_plus/resources.py) -------------
    @functools.cached_property
    def _cpuinfo(self):
        from .resources import read_cpuinfo

        return _Loaded(*read_cpuinfo(self.decoded))

    @property
    def cpuinfo(self) -> tuple[CpuX86, ...]:
        """The dumping CPU as ``cpuinfo.img`` records it (a
        :class:`~crit_plus.resources.CpuX86` per CPU; empty without the image)."""
        return self._cpuinfo.value

    @functools.cached_property
    def _file_locks(self):
        from .resources import read_file_locks

        return _Loaded(*read_file_locks(self.decoded))

    @property
    def file_locks(self) -> tuple[FileLock, ...]:
        """Every :class:`~crit_plus.resources.FileLock` of ``filelocks.img`` (empty
        without the image)."""
        return self._file_locks.value

    @property
    def ttys(self) -> dict[int, TtyInfo]:
        """id → :class:`~crit_plus.resources.TtyInfo` of ``tty-info.img`` (the file
        table's: :attr:`files`)."""
        return self.files.ttys

    @property
    def memfds(self) -> dict[int, MemfdInode]:
        """inode id → :class:`~crit_plus.resources.MemfdInode` of ``memfd.img`` (the file
        table's: :attr:`files`)."""
        return self.files.memfds

    @functools.cached_property
    def queues(self) -> Queues:
        """The bytes queued in pipes and sockets (:class:`~crit_plus.resources.Queues`)."""
        from .resources import Queues

        return Queues(self.decoded)

    # -- namespaces, mounts, network, confinement ---------------------------------------------
    @functools.cached_property
    def _namespaces(self):
        return _Loaded(*read_namespaces(self))

    @property
    def namespaces(self) -> tuple[Namespace, ...]:
        """Every :class:`~crit_plus.namespaces.Namespace` of the processes, by kind then id:
        who is in it, whether it is the checkpoint's own, its uts names and id maps."""
        return self._namespaces.value

    @functools.cached_property
    def _mount_namespaces(self):
        loaded = {}
        for namespace in self.namespaces:
            if namespace.kind == "mnt":
                loaded[namespace.id] = _Loaded(*read_mount_namespace(self, namespace.id))
        return loaded

    @property
    def mount_namespaces(self) -> tuple[MountNamespace, ...]:
        """The :class:`~crit_plus.mounts.MountNamespace` of every mount namespace whose
        ``mountpoints-ID.img`` is there (a damaged one with the mounts read before the
        damage), by id."""
        return tuple(loaded.value for loaded in self._mount_namespaces.values()
                     if loaded.value is not None)

    @functools.cached_property
    def _net_namespaces(self):
        return {namespace.id: _Loaded(*read_net_namespace(self, namespace.id))
                for namespace in self.namespaces if namespace.kind == "net"}

    @property
    def net_namespaces(self) -> tuple[NetNamespace, ...]:
        """The :class:`~crit_plus.netns.NetNamespace` of every network namespace, by id
        (the host's has no images: its parts are None)."""
        return tuple(loaded.value for loaded in self._net_namespaces.values())

    @functools.cached_property
    def _cgroup_sets(self):
        return _Loaded(*read_cgroup_sets(self))

    @property
    def cgroup_sets(self) -> dict[int, tuple[CgroupMember, ...]]:
        """Every cgroup set of ``cgroup.img``: id → its cgroups (empty without the image)."""
        return self._cgroup_sets.value

    def cgroups(self, cg_set: int | None) -> tuple[CgroupMember, ...] | None:
        """The cgroups of set ``cg_set`` (a thread's ``ThreadCore.cg_set``): () when the
        images name none (no ``cgroup.img``, or no such set in it), None when unknown
        (no ``cg_set``, or ``cgroup.img`` damaged)."""
        if cg_set is None or self._cgroup_sets.findings:
            return None
        return self._cgroup_sets.value.get(cg_set, ())

    @functools.cached_property
    def _seccomp_filters(self):
        return _Loaded(*read_seccomp_filters(self))

    def seccomp_chain(self, thread: Thread) -> tuple[tuple[SeccompFilter, ...] | None,
                                                     tuple[Finding, ...]]:
        """The seccomp filters ``thread`` runs, newest first, and findings; None (and no
        findings: the image's own finding says it) when the thread has a filter and
        ``seccomp.img`` is damaged."""
        last = thread.core.seccomp_filter if thread.core is not None else None
        if last is not None and self._seccomp_filters.findings:
            return None, ()
        return filter_chain(self._seccomp_filters.value, last, f"core-{thread.tid}.img")

    def thread_seccomp(self, process: Process, thread: Thread) -> ThreadSeccomp:
        """The seccomp ``thread`` (one of ``process``'s) runs once restored: its own, or,
        when its core holds none, the leader's if CRIU gives it to every thread (TSYNC),
        else none (:func:`~crit_plus.confinement.restored_seccomp`, the one rule)."""
        own = self._own_seccomp(thread)
        if thread.is_leader:
            return own
        leader = next((t for t in process.threads if t.is_leader), None)
        if leader is None or leader.core is None:
            return restored_seccomp(own.mode, own.chain)
        return restored_seccomp(own.mode, own.chain, self._own_seccomp(leader),
                                leader.core.seccomp_per_process)

    def _own_seccomp(self, thread: Thread) -> ThreadSeccomp:
        mode = thread.core.seccomp_mode if thread.core is not None else None
        return restored_seccomp(mode, self.seccomp_chain(thread)[0])

    @property
    def namespace_findings(self) -> tuple[Finding, ...]:
        """The findings of reading the namespaces' uts and user images."""
        return tuple(self._namespaces.findings)

    @property
    def mount_findings(self) -> tuple[Finding, ...]:
        """The findings of reading the ``mountpoints-ID.img`` images."""
        return tuple(f for part in self._mount_namespaces.values() for f in part.findings)

    @property
    def net_findings(self) -> tuple[Finding, ...]:
        """The findings of reading the network namespaces' images."""
        return tuple(f for part in self._net_namespaces.values() for f in part.findings)

    @property
    def confinement_findings(self) -> tuple[Finding, ...]:
        """The findings of reading ``cgroup.img`` and ``seccomp.img``."""
        return (*self._cgroup_sets.findings, *self._seccomp_filters.findings)

    @property
    def view_findings(self) -> tuple[Finding, ...]:
        """The findings of reading namespace, mount, network, cgroup and seccomp images
        (not part of :attr:`findings`, which validate and summarize report), at most
        :data:`~crit_plus.findings.MAX_PER_CODE` of a code."""
        found = FindingList()
        for part in (self.namespace_findings, self.mount_findings, self.net_findings,
                     self.confinement_findings):
            found.extend(part)
        return tuple(found.result())

    # -- the directory ------------------------------------------------------------------------
    @functools.cached_property
    def image_files(self) -> tuple[str, ...]:
        """Names of the regular files in the checkpoint directory, sorted."""
        names = []
        for entry in os.scandir(self.directory):
            if entry.is_file(follow_symlinks=False):
                names.append(entry.name)
        return tuple(sorted(names))

    @functools.cached_property
    def _stats(self):
        path = os.path.join(self.directory, "stats-dump")
        if not os.path.exists(path):
            return _Loaded()
        try:
            return _Loaded(read_dump_stats(path))
        except DecodeError as error:
            return _Loaded(None, [error_finding(error, severity=WARNING)])

    @property
    def stats(self) -> DumpStats | None:
        """The dump's :class:`~decoders.records.DumpStats` (``stats-dump``), or None."""
        return self._stats.value

    @functools.cached_property
    def parent(self) -> Checkpoint | None:
        """The :class:`Checkpoint` in ``parent/`` (a pre-dump this one builds on), or None."""
        path = os.path.join(self.directory, "parent")
        if not os.path.isdir(path) or os.path.realpath(path) in self._seen:
            return None
        try:
            return Checkpoint(path, root=self.root, _seen=self._seen)
        except DecodeError:
            return None

    # -- findings -------------------------------------------------------------------------------
    @functools.cached_property
    def findings(self) -> tuple[Finding, ...]:
        """Every :class:`~crit_plus.findings.Finding`: the tree, the files, shared memory,
        then each process in pstree order, at most :data:`~crit_plus.findings.MAX_PER_CODE`
        of a code (:class:`~crit_plus.findings.FindingList`).  Decodes every image except
        page data."""
        found = FindingList()
        found.extend(self._open_findings)
        found.extend(self._unique_entries[1])
        found.extend(self._thread_findings)
        found.extend(self.tree.findings)
        found.extend(self.files.findings)
        found.extend(self._stats.findings)
        store = self.page_store
        for shmid in self.shmem_ids:
            table, error = store.loaded(f"pagemap-shmem-{shmid}.img")
            if isinstance(table, str):
                found.add(Finding(ERROR, "bad-image", table, f"pagemap-shmem-{shmid}.img",
                                  named(entry=getattr(error, "entry_index", None),
                                        offset=getattr(error, "offset", None))))
            else:
                found.extend(table.findings)
        problem = store.chain_problem()
        if problem is not None:
            found.add(Finding(ERROR, *problem))
        for process in self.processes:
            found.extend(process.findings)
        return found.result()
