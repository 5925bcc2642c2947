"""The explorers' facts: processes, fds, sockets, mappings, resident pages, memory search.

What ``crit x ps|fds|mems|rss`` shows, computed from the typed graph instead of
from raw dictionaries, plus what crit does not have (sockets, memory search).
Every function takes a :class:`~crit_plus.graph.Checkpoint` and returns
frozen dataclasses of machine values (ints, strings, tuples, enums); turning
them into text is :mod:`crit_plus.describe`'s job, printing the commands'.

A zombie (CRIU writes only its core) has no fds, mappings or pages: it gets an
empty row, never an exception.  Only :func:`ps_rows` with ``env`` and the
memory functions read page data; the others read metadata images only.

The bytes queued in pipes and sockets (``pipes-data.img``, ``fifo-data.img``,
``sk-queues.img``, ``tcp-stream-<ino:x>.img``) are the graph's
(:attr:`Checkpoint.queues <crit_plus.graph.Checkpoint.queues>`,
:class:`crit_plus.resources.Queues`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..graph import ExitStatus

# -- processes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PsRow:
    """One process, in tree order (``depth`` 0 for a root).

    ``argv``/``environ`` are read back from the process's memory (None when it
    cannot be read, e.g. a zombie); ``environ`` only when asked for; ``exit`` how a
    zombie ended (:class:`~crit_plus.graph.ExitStatus`, None for the living);
    ``argv_unknown`` says why a command line that exists cannot be read (a cut or
    missing pagemap: the file and offset), None otherwise.
    """

    depth: int
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str | None
    threads: int
    comm: str | None
    argv: tuple | None
    environ: tuple | None = None
    exit: ExitStatus | None = None
    argv_unknown: str | None = None


def ps_rows(checkpoint, *, argv=True, env=False):
    """Every process depth-first through the checked tree (:class:`PsRow`).

    ``argv`` reads each command line back from memory
    (:attr:`~crit_plus.graph.Process.command_line`), ``env`` each environment;
    without them no page data is read.
    """
    rows = []
    for depth, process in checkpoint.walk():
        rows.append(PsRow(
            depth, process.pid, process.ppid, process.pgid, process.sid, process.state_label,
            len(process.threads), process.comm,
            process.command_line if argv else None,
            process.environ if env else None, process.exit_status,
            process.command_line_unknown if argv else None))
    return rows


def select(checkpoint, pid=None):
    """``(depth, Process)`` of every process in tree order, or of ``pid`` alone
    (``KeyError`` when it is not in the checkpoint)."""
    if pid is None:
        return list(checkpoint.walk())
    return [(0, checkpoint.process(pid))]

#: The explorers of other commands, in modules of their own, loaded on first use
#: (``ps`` then creates one record class, not twelve); importing a name from here
#: works as if it were defined here.
_PARTS = {
    **dict.fromkeys(("Endpoint", "EpollTarget", "FdRow", "ProcessFds", "SocketRow",
                     "fd_table", "socket_rows"), "explore_fds"),
    **dict.fromkeys(("KindPages", "ProcessRss", "ProcessVmas", "VmaRow", "process_rss",
                     "rss_table", "vma_table"), "explore_pages"),
    **dict.fromkeys(("Hit", "MemoryGrep", "NoMemoryError", "REGEX_WINDOW", "memory_of",
                     "read_memory", "unavailable_extents", "vma_at"), "explore_memory"),
}


def __getattr__(name: str) -> Any:
    part = _PARTS.get(name)
    if part is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"crit_plus.analysis.{part}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PARTS))


__all__ = ["PsRow", "ps_rows", "select", *_PARTS]
