"""The facts CRIU's ``crit x ps|fds|mems|rss`` shows, taken from the graph (``crit-plus x``).

crit's explorers (``crit/crit/__main__.py`` in CRIU 4.2.1) walk ``pstree.img``
and re-read the images themselves; here every fact comes from the one graph
(:class:`~crit_plus.graph.Checkpoint`: processes, :class:`~crit_plus.files.Fd`,
:class:`~crit_plus.memory.Mapping`, pagemap runs), and only the *choice* and the
*order* are crit's: processes in ``pstree.img`` order (``ps`` in tree order),
files named by what crit names them by (:class:`XFile`), VMAs with CRIU's
status bits, pagemap entries with the VMAs each one overlaps.  Turning these
into crit's text is :mod:`crit_plus.crittext`'s job.

Where crit is wrong, these facts are the right ones (docs/commands/x.md lists
each place): a zombie has no files and no memory (crit crashes), a memfd
mapping is named by the memfd (crit: ``unknown path``), guard regions are not
VMAs, every root of the tree is shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from .explore import ps_rows
from .explore_fds import socket_rows

# -- files ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XFile:
    """A file as crit names it: the fd type's name (``REG``, ``PIPE``, ``UNIXSK``,
    ``FIFO``, ``TTY``...) and the ``files.img`` id, plus what the graph knows of it.

    ``kind``/``name`` are the graph's (None when ``files.img`` has no such id);
    ``path`` a regular file's path; ``pipe_id`` a pipe's; ``ino``/``peer_ino``/
    ``unix_name`` (the name's bytes as the image holds them) a unix socket's.
    """

    type: str
    id: int
    kind: str | None
    name: str | None
    path: str | None = None
    pipe_id: int | None = None
    ino: int | None = None
    peer_ino: int | None = None
    unix_name: bytes | None = None


def x_file(checkpoint, type_name, file_id):
    """The :class:`XFile` of ``files.img`` id ``file_id`` opened as ``type_name``."""
    file = checkpoint.files.get(file_id)
    if file is None:
        return XFile(type_name, file_id, None, None)
    details = file.details
    return XFile(type_name, file_id, file.kind, file.name,
                 path=details.get("path") if file.kind == "file" else None,
                 pipe_id=details.get("pipe_id") if file.kind == "pipe" else None,
                 ino=details.get("ino") if file.kind == "unix" else None,
                 peer_ino=(details.get("peer_ino") or 0) if file.kind == "unix" else None,
                 unix_name=details.get("name_bytes") if file.kind == "unix" else None)


def _type_name(fd_type):
    return getattr(fd_type, "name", None) or str(int(fd_type))


# -- ps --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XPs:
    """One process of ``x ps``, in tree order (``depth`` 0 for a root)."""

    depth: int
    pid: int
    ppid: int
    pgid: int
    sid: int
    comm: str | None


def x_ps(checkpoint):
    """Every process depth-first through the checked tree (every root, not only
    crit's last one), from :func:`~crit_plus.analysis.explore.ps_rows`."""
    return [XPs(row.depth, row.pid, row.ppid, row.pgid, row.sid, row.comm)
            for row in ps_rows(checkpoint, argv=False)]


# -- fds --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XFd:
    """One fd: its number and the file behind it."""

    fd: int
    file: XFile


@dataclass(frozen=True, slots=True)
class XFds:
    """The fds of one process (pstree order), its cwd and root (None: none dumped,
    as for a zombie, which has no files at all)."""

    pid: int
    fds: tuple
    cwd: XFile | None
    root: XFile | None


def _reg(checkpoint, file_id):
    """A file crit looks up as a regular one (cwd, root, exe, a file mapping)."""
    return x_file(checkpoint, "REG", file_id) if file_id is not None else None


def x_fds(checkpoint):
    """The :class:`XFds` of every process, in ``pstree.img`` order (crit's)."""
    result = []
    for process in checkpoint.processes:
        fds = tuple(XFd(fd.fd, x_file(checkpoint, _type_name(fd.type), fd.file_id))
                    for fd in process.fds)
        fs = process.fs
        result.append(XFds(process.pid, fds, _reg(checkpoint, fs.cwd_id if fs else None),
                           _reg(checkpoint, fs.root_id if fs else None)))
    return result


# -- mems --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XVma:
    """One VMA as ``x mems`` and ``x rss`` show it: CRIU's ``vma_entry`` facts and
    the file behind a file mapping (``status`` has ``VMA_FILE_PRIVATE``/``SHARED``)."""

    start: int
    end: int
    prot: int
    flags: int
    status: int
    pgoff: int
    shmid: int
    kind: str
    file: XFile | None


@dataclass(frozen=True, slots=True)
class XMems:
    """The VMAs of one process (pstree order) and its executable; ``vmas`` is None
    when the process has no memory in the checkpoint (a zombie)."""

    pid: int
    exe: XFile | None
    vmas: tuple | None


_FILE_BACKED = (1 << 6) | (1 << 7)  # VMA_FILE_PRIVATE | VMA_FILE_SHARED


def _vmas(checkpoint, process):
    """The :class:`XVma` of every VMA of ``process`` (the graph's mappings: by address,
    guard regions and empty VMAs left out), or None without memory."""
    memory = process.memory
    if memory is None:
        return None
    result = []
    for mapping in memory.vmas:
        vma = mapping.vma
        file = _reg(checkpoint, vma.shmid) if int(vma.status) & _FILE_BACKED else None
        result.append(XVma(vma.start, vma.end, int(vma.prot), int(vma.flags), int(vma.status),
                           vma.pgoff, vma.shmid, mapping.kind, file))
    return tuple(result)


def x_mems(checkpoint):
    """The :class:`XMems` of every process, in ``pstree.img`` order."""
    result = []
    for process in checkpoint.processes:
        vmas = _vmas(checkpoint, process)
        mm = process.mm
        exe = _reg(checkpoint, mm.exe_file_id) if vmas is not None and mm else None
        result.append(XMems(process.pid, exe, vmas))
    return result


# -- rss ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XRssLine:
    """One pagemap entry (image order) and the VMAs it overlaps, by index into the
    process's VMAs; ``again`` is true for the first of them when the previous entry
    listed it already (crit's ``~``)."""

    vaddr: int
    nr_pages: int
    flags: int
    vmas: tuple
    again: bool


@dataclass(frozen=True, slots=True)
class XRss:
    """The pagemap entries of one process (None: no memory in the checkpoint)."""

    pid: int
    vmas: tuple | None
    lines: tuple | None


PAGE_SHIFT = 12


def _rss_lines(vmas, runs):
    """crit's walk: each entry, the VMAs from the first not ending at or before it up
    to the last starting before its end; the last one is looked at again for the next
    entry (never before the first VMA: crit steps to index -1 there)."""
    lines = []
    vmi, previous = 0, -1
    for run in runs:
        while vmi < len(vmas) and vmas[vmi].end <= run.vaddr:
            vmi += 1
        end = run.vaddr + (run.npages << PAGE_SHIFT)
        listed, again = [], False
        while vmi < len(vmas) and vmas[vmi].start < end:
            if vmi == previous:
                again = True
            else:
                listed.append(vmi)
                previous = vmi
            vmi += 1
        vmi = max(vmi - 1, 0)
        lines.append(XRssLine(run.vaddr, run.npages, int(run.flags), tuple(listed), again))
    return tuple(lines)


def x_rss(checkpoint):
    """The :class:`XRss` of every process, in ``pstree.img`` order."""
    result = []
    for process in checkpoint.processes:
        vmas = _vmas(checkpoint, process)
        lines = None if vmas is None else _rss_lines(vmas, process.memory.runs)
        result.append(XRss(process.pid, vmas, lines))
    return result


# -- sk -----------------------------------------------------------------------------------------


def x_sk(checkpoint):
    """Every socket open in some process (:func:`~crit_plus.analysis.explore.socket_rows`)."""
    return socket_rows(checkpoint)


__all__ = ["XFd", "XFds", "XFile", "XMems", "XPs", "XRss", "XRssLine", "XVma", "x_fds",
           "x_file", "x_mems", "x_ps", "x_rss", "x_sk"]
