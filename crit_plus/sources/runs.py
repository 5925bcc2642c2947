"""Which log belongs to which CRIU run, and which runs belong to a checkpoint.

The one owner of that fact: ``summarize``, ``validate`` and ``report`` all ask
:func:`attribute` (through :meth:`crit_plus.sources.Source.runs`).

What a CRIU log says of its run (:class:`LogRun`, read by :func:`read_run`):

- the **run id**: CRIU 4.x starts every log with ``CRIU run id = UUID`` (made by
  ``util_init()`` before the log opens, printed first when it does), at
  ``-v3`` or more; a log at CRIU's default level (``-v2``: errors and warnings
  only, no timestamps) has no header at all;
- the **operation**: the header does not name it; a restore prints ``Dump CRIU
  run id = UUID`` (the run id the images' ``inventory.img`` records, CRIU >= 3.16)
  and ``Will restore in ...``, a dump ``Dumping processes (pid: ...``, a
  page server ``Starting page server on port``, the lazy-pages daemon ``uffd:
  Waiting for incoming connections``, ``criu check`` its ``... works OK`` probes;
  the last line says how a dump, pre-dump or restore ended (``Dumping finished
  successfully``, ``Restoring FAILED.``, ...).  Without any of them the file name
  decides (``restore.log``, LXD's ``snapshot_restore_TIME.log``, ...);
- the **outcome**: ``succeeded``/``failed`` from that last line; ``cut short`` for
  a verbose log that ends without one (CRIU was killed, or the log is cut);
  ``no failure logged`` for a log at the default level without a ``FAILED``
  line (CRIU logs success only at ``-v3`` or more), and for ``criu check``, whose
  verdict goes to stdout only;
- **when** it ended: the time in LXD's file name (``FUNCTION_METHOD_TIME.log``,
  copied when the run ended; whole seconds), else the file's modification time.

liblxc's ``lxc.log`` names no run: each of its lines has a time, and the lines
of its ``criu.c`` about a restore (``do_restore``, ``__criu_restore``, and
``exec_criu`` before them) are a restore of the instance from its ``state/``.

The rule (:func:`attribute`), for a checkpoint whose ``inventory.img`` records
run id R:

1. a CRIU log of run R is the run that wrote the images (``dump``); other
   files of the same run and operation are its copies (LXD's
   ``snapshot_dump_TIME.log``);
2. a restore log that says ``Dump CRIU run id = R`` is a restore of this
   checkpoint (``restore``); one naming another run id restores another
   checkpoint (``other``), and so does every log of another run;
3. without run ids (a log at the default level, an inventory before CRIU
   3.16): a log in the images directory is of this checkpoint (CRIU writes
   ``-o`` into the work directory, which is the images directory unless
   ``-W`` says otherwise), a restore log as a restore, anything else as its
   dump (``dump.log``); elsewhere it is ``unknown``;
4. a restore without a run id in the manager's logs (liblxc's lines, a CRIU
   restore log at the default level) at time T is a restore of this
   checkpoint only when the manager restores this very directory (the
   instance's ``state/``, an LXC container's checkpoint, not a snapshot:
   LXD and Incus restore a snapshot from a copy of it in the instance's
   ``state/``, whose run only a CRIU restore log can name) and T is not before
   these images were written; otherwise it is ``other``.

So the instance's later stateful stop and its failed restore are never an
earlier snapshot's, and a ``restore.log`` is a restore even when its bytes equal
``dump.log``'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from decoders.framing import open_untrusted
from decoders.lazy import LazyPattern

from .times import mtime_of, parse_timestamp

if TYPE_CHECKING:
    from .logs import LogFile

#: Every operation a log can be of (CRIU's commands that log a run).
OPERATIONS = ("dump", "pre-dump", "restore", "check", "page-server", "lazy-pages")
#: What a log is to a checkpoint: the run that wrote its images, a restore of
#: them, another run, not known; ``manager`` for liblxc's log (see its lines).
ROLES = ("dump", "restore", "other", "unknown", "manager")
#: Bytes read at a log's start for the markers of its operation, and at its end
#: for the line that says how the run ended.
HEAD_BYTES = TAIL_BYTES = 1 << 16

#: Lines only one operation logs, searched in the head, then the tail, in this order.
_OPERATION_MARKS = (
    (b"Dump CRIU run id = ", "restore"), (b"Will restore in ", "restore"),
    (b"Pre-dumping task (pid: ", "pre-dump"), (b"Dumping processes (pid: ", "dump"),
    (b"Starting page server on port", "page-server"),
    (b"uffd: Waiting for incoming connections", "lazy-pages"),
    (b"fdinfo works OK", "check"), (b"vmsplice works OK", "check"),
)
#: Operations whose verdict CRIU prints on stdout only (``criu check``'s "Looks good."):
#: their log has no last line to say how they ended.
_NO_END_LINE = ("check",)
#: The lines with which CRIU ends a run (cr-dump.c, cr-restore.c): (mark, operation, outcome).
_END_MARKS = (
    (b"Pre-dumping FAILED.", "pre-dump", "failed"),
    (b"Pre-dumping finished successfully", "pre-dump", "succeeded"),
    (b"Dumping FAILED.", "dump", "failed"),
    (b"Dumping finished successfully", "dump", "succeeded"),
    (b"Lazy pages transfer FAILED.", "dump", "failed"),
    (b"Lazy pages transfer finished successfully", "dump", "succeeded"),
    (b"Restoring FAILED.", "restore", "failed"),
    (b"Restore finished successfully", "restore", "succeeded"),
)
_DUMP_RUN_ID = LazyPattern(rb"Dump CRIU run id = ([0-9A-Za-z-]+)")
#: A verbose line starts with CRIU's timestamp, ``(SS.UUUUUU)``.
_TIMESTAMPED = LazyPattern(rb"^\(\s*\d+\.\d+\)", re.MULTILINE)
#: Operations in file names, most specific first.
_NAMED = ((LazyPattern(r"pre-?dump"), "pre-dump"), (LazyPattern(r"lazy[-_]?pages"), "lazy-pages"),
          (LazyPattern(r"page[-_]?server"), "page-server"), (LazyPattern(r"restore"), "restore"),
          (LazyPattern(r"dump"), "dump"), (LazyPattern(r"check"), "check"))
#: LXD's and Incus's copies: FUNCTION_METHOD_TIME.log, TIME in RFC 3339 (whole seconds).
_NAME_TIME = LazyPattern(r"_(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))\.log$")
#: liblxc's line: ``lxc NAME YYYYMMDDhhmmss.mmm LEVEL module - file:function:line - text``.
_LXC_LINE = LazyPattern(r"^lxc(?:\s+\S+)?\s+(\d{14})\.(\d{3})\s+\w+\s+(\S+)\s+-\s+\S*?"
                        r"(\w+\.c):(\w+):\d+")


@dataclass(frozen=True, slots=True)
class LogRun:
    """What one CRIU log says of its run.

    ``operation`` is one of :data:`OPERATIONS` (None: nothing says), found in the
    log (``operation_from`` ``log``) or its file name (``name``); ``outcome`` is
    ``succeeded``, ``failed``, ``cut short`` or ``no failure logged`` (see the
    module's docstring); ``dump_run_id`` the run id of the dump a restore read
    (``Dump CRIU run id``); ``verbose`` says the log has CRIU's timestamps
    (``-v3`` or more); ``ended`` is when the run ended, from ``ended_from``
    (``name``: LXD's file name, ``mtime``).
    """

    run_id: str | None
    operation: str | None
    operation_from: str | None
    outcome: str | None
    dump_run_id: str | None
    verbose: bool
    ended: datetime | None
    ended_from: str | None

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"run_id": self.run_id, "operation": self.operation,
                "operation_from": self.operation_from, "outcome": self.outcome,
                "dump_run_id": self.dump_run_id, "verbose": self.verbose,
                "ended": self.ended.isoformat() if self.ended else None,
                "ended_from": self.ended_from}


@dataclass(frozen=True, slots=True)
class ManagerLine:
    """An error line of liblxc's log about a CRIU run: its time (UTC), the
    operation (``restore``, ``dump``, None), its text, and whether it is about
    this checkpoint (``mine``)."""

    time: datetime | None
    operation: str | None
    text: str
    mine: bool

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"time": self.time.isoformat() if self.time else None,
                "operation": self.operation, "text": self.text, "mine": self.mine}


@dataclass(frozen=True, slots=True)
class Subject:
    """The checkpoint logs are attributed to: the run id its ``inventory.img``
    records, its images directory, when it was written, and whether its manager
    restores this directory itself (``in_place``: not a snapshot); ``run_id_from``
    names where the run id was read (``inventory.img``, or the images directory's
    ``dump.log`` when the inventory records none or is missing)."""

    run_id: str | None
    images_dir: Path
    written: datetime | None
    in_place: bool
    run_id_from: str = "inventory.img"


@dataclass(frozen=True, slots=True)
class AttributedLog:
    """One log and what it is to the checkpoint: ``role`` (one of :data:`ROLES`),
    ``reason`` (how that was decided, for people), ``copies`` (names of the other
    files of the same run: they are not listed apart), ``lines`` (liblxc's log:
    its :class:`ManagerLine` about CRIU runs)."""

    log: LogFile
    role: str
    reason: str
    copies: tuple = ()
    lines: tuple = ()

    @property
    def run(self) -> LogRun | None:
        """The :class:`LogRun` of a CRIU log (None for liblxc's)."""
        return self.log.run

    @property
    def failed_restore_lines(self) -> tuple:
        """Lines saying a restore of this checkpoint failed: a CRIU restore log's
        error lines when its run failed, liblxc's restore lines about it."""
        if self.role == "manager":
            return tuple(line.text for line in self.lines
                         if line.mine and line.operation == "restore")
        run = self.run
        if self.role == "restore" and run is not None and run.outcome == "failed":
            return tuple(self.log.errors)
        return ()

    @property
    def failed_restores(self) -> tuple:
        """:attr:`failed_restore_lines` run by run: one tuple of lines per failed restore
        of this checkpoint (a CRIU log is one run; liblxc's lines are split into its runs
        as :func:`manager_runs` reads them)."""
        lines = self.failed_restore_lines
        if not lines or self.role != "manager":
            return (lines,) if lines else ()
        runs = tuple(run.lines for run in manager_runs(lines) if run.lines)
        return runs if sum(map(len, runs)) == len(lines) else (lines,)

    def to_dict(self) -> dict:
        """A JSON-ready dict: the role, the run's facts, the copies, liblxc's lines."""
        return {"role": self.role, "reason": self.reason, "copies": list(self.copies),
                "run": self.run.to_dict() if self.run is not None else None,
                "lines": [line.to_dict() for line in self.lines]}


def operation_of_name(name: str) -> str | None:
    """The operation a log's file name says (``restore.log``, LXD's
    ``snapshot_dump_TIME.log``, ``migration_pre-dump_TIME.log``), or None."""
    lowered = name.lower()
    return next((operation for pattern, operation in _NAMED if pattern.search(lowered)), None)


def _ended(path):
    match = _NAME_TIME.search(path.name)
    named = parse_timestamp(match.group(1)) if match else None
    if named is not None:
        return named, "name"
    when = mtime_of(path)
    return when, "mtime" if when else None


def read_run(path, run_id: str | None) -> LogRun:
    """The :class:`LogRun` of the CRIU log at ``path`` whose header gave ``run_id``:
    only its first and last :data:`HEAD_BYTES` are read.  Raises OSError."""
    path = Path(path)
    with open(open_untrusted(path)[0], "rb") as stream:
        return run_of_stream(stream, path, run_id)


def run_of_stream(stream, path, run_id: str | None) -> LogRun:
    """:func:`read_run` of the open binary, seekable ``stream`` of the log at ``path``."""
    path = Path(path)
    stream.seek(0)
    head = stream.read(HEAD_BYTES)
    size = stream.seek(0, 2)
    if size > HEAD_BYTES:
        stream.seek(max(HEAD_BYTES, size - TAIL_BYTES))
        tail = stream.read(TAIL_BYTES)
    else:
        tail = head
    operation = outcome = None
    ends = [(tail.rfind(mark), op, result) for mark, op, result in _END_MARKS]
    position, op, result = max(ends)
    if position >= 0:
        operation, outcome = op, result
    verbose = bool(_TIMESTAMPED.search(head))
    if outcome is None:
        outcome = "cut short" if verbose else "no failure logged"
    found = "log"
    for mark, op in _OPERATION_MARKS:
        if mark in head or mark in tail:
            operation = operation or op
            break
    if operation is None:
        operation, found = operation_of_name(path.name), "name"
    if outcome == "cut short" and operation in _NO_END_LINE:
        outcome = "no failure logged"
    match = _DUMP_RUN_ID.search(head)
    dump_run_id = match.group(1).decode("ascii") if match else None
    ended, ended_from = _ended(path)
    return LogRun(run_id, operation, found if operation else None, outcome, dump_run_id,
                  verbose, ended, ended_from)


def manager_lines(errors) -> tuple:
    """``(time, operation, text)`` of liblxc's error lines from its ``criu.c``
    (``errors``: the log's error lines); ``exec_criu`` and other helpers take
    the operation of the next line that names one (``do_restore``, ``do_dump``)."""
    found = []
    for text in errors:
        match = _LXC_LINE.match(text)
        if not match or match.group(4) != "criu.c":
            continue
        stamp, millis, _module, _file, function = match.groups()
        try:
            time = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(
                microsecond=int(millis) * 1000, tzinfo=timezone.utc)
        except ValueError:
            time = None
        operation = ("restore" if "restore" in function else
                     "dump" if "dump" in function else None)
        found.append([time, operation, text])
    following = None
    for item in reversed(found):
        if item[1] is None:
            item[1] = following
        following = item[1]
    return tuple(tuple(item) for item in found)


def _not_before(time, written):
    """True when ``time`` is not before ``written`` (whole seconds: file times and
    LXD's names have no more)."""
    return time.replace(microsecond=0) >= written.replace(microsecond=0)


def _restore_without_run_id(subject, time, where):
    """``(role, reason)`` of a restore no run id ties to a dump (rule 4)."""
    if not subject.in_place:
        return "other", (f"{where} restores the instance's state/; LXD and Incus restore a "
                         "snapshot from a copy there, and only a CRIU restore log naming this "
                         "snapshot's run id ties such a restore to it")
    if time is None or subject.written is None:
        return "unknown", f"{where}: no time to order it against these images"
    if _not_before(time, subject.written):
        return "restore", f"{where} restores this directory, after these images were written"
    return "other", f"{where} ran before these images were written"


def _criu_role(log, subject):
    """``(role, reason)`` of a CRIU log (rules 1 to 4)."""
    run, mine = log.run, subject.run_id
    in_dir = Path(log.path).parent == Path(subject.images_dir)
    if run.run_id and mine and run.run_id == mine:
        return "dump", f"CRIU run {mine} wrote these images ({subject.run_id_from})"
    if run.operation == "restore" and run.dump_run_id and mine:
        if run.dump_run_id == mine:
            return "restore", f"restores the images of run {mine} ({subject.run_id_from})"
        return "other", f"restores the images of another dump, run {run.dump_run_id}"
    if run.run_id and mine:
        return "other", f"CRIU run {run.run_id}; these images were written by run {mine}"
    if in_dir:
        if run.operation == "restore":
            return "restore", "a restore log in the images directory (no run ids to compare)"
        if run.operation == "check":
            return "other", "criu check: no checkpoint"
        return "dump", "the CRIU log in the images directory (no run ids to compare)"
    if run.operation == "restore":
        return _restore_without_run_id(subject, run.ended, "this restore (no run ids)")
    return "unknown", "no run id to compare"


def _manager_log(log, subject):
    lines = []
    for time, operation, text in manager_lines(log.errors):
        mine = False
        if operation == "restore":
            mine = _restore_without_run_id(subject, time, "")[0] == "restore"
        lines.append(ManagerLine(time, operation, text, mine))
    restores = [line for line in lines if line.operation == "restore"]
    mine = [line for line in restores if line.mine]
    if not restores:
        reason = "liblxc's log: no restore"
    elif mine and len(mine) < len(restores):
        reason = (f"{len(mine)} of {len(restores)} restore lines are of this directory, after "
                  "these images were written; the others ran before")
    else:
        line = (mine or restores)[0]
        where = (f"the restore at {line.time:%Y-%m-%d %H:%M:%S}" if line.time
                 else "its restore")
        reason = _restore_without_run_id(subject, line.time, where)[1]
    return AttributedLog(log, "manager", reason, (), tuple(lines))


def attribute(logs, subject: Subject) -> tuple:
    """The :class:`AttributedLog` of each of ``logs`` (``LogFile``s of one source)
    to ``subject``, by the rule of this module's docstring, in order; a file of
    the same run and operation as an earlier one (preferring the images
    directory's) is folded into it as a copy."""
    attributed: list[AttributedLog] = []
    primary: dict[tuple, int] = {}
    in_dir = Path(subject.images_dir)
    ordered = sorted(logs, key=lambda log: Path(log.path).parent != in_dir)
    for log in ordered:
        if log.kind != "criu" or log.run is None:
            attributed.append(_manager_log(log, subject))
            continue
        run = log.run
        key = (run.run_id, run.operation) if run.run_id else None
        if key in primary:
            first = primary[key]
            attributed[first] = _with_copy(attributed[first], log.name)
            continue
        role, reason = _criu_role(log, subject)
        if key is not None:
            primary[key] = len(attributed)
        attributed.append(AttributedLog(log, role, reason))
    order = {id(log): index for index, log in enumerate(logs)}
    return tuple(sorted(attributed, key=lambda item: order[id(item.log)]))


def _with_copy(item, name):
    return AttributedLog(item.log, item.role, item.reason, item.copies + (name,), item.lines)


__all__ = ["AttributedLog", "HEAD_BYTES", "LogRun", "ManagerLine", "OPERATIONS", "ROLES",
           "Subject", "attribute", "manager_lines", "operation_of_name", "read_run",
           "run_of_stream"]


#: Any liblxc line: ``(time, millis, level, module, file, function, text)``.
_LXC_FULL = LazyPattern(r"^lxc(?:\s+\S+)?\s+(\d{14})\.(\d{3})\s+([A-Z]+)\s+(\S+)\s+-\s+\S*?"
                        r"(\w+\.c):(\w+):\d+\s+-\s+(.*)$")
_LXC_COMMAND = LazyPattern(r"(?:Using command line|execing:?)\s+(.*\S)")
_LXC_EXIT = LazyPattern(r"criu process exited (\d+)|exited with status (\d+)")
_LXC_ERROR_LEVELS = ("ERROR", "CRIT", "ALERT", "FATAL")


@dataclass(frozen=True, slots=True)
class ManagerRun:
    """One CRIU run liblxc's ``lxc.log`` tells of: its operation, when it began, the
    criu command liblxc ran (only at liblxc's trace level), CRIU's exit status (None:
    not logged), whether liblxc says it failed, and the error lines about it, liblxc's
    lines of other modules that followed included (``(time, module, text)``); ``lines``:
    those error lines whole, as the log has them."""

    operation: str | None
    started: datetime | None
    command: str | None
    exit: int | None
    failed: bool
    errors: tuple
    lines: tuple = ()

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"operation": self.operation,
                "started": self.started.isoformat() if self.started else None,
                "command": self.command, "exit": self.exit, "failed": self.failed,
                "errors": [{"time": time.isoformat() if time else None, "module": module,
                            "text": text} for time, module, text in self.errors]}


def _lxc_time(stamp, millis):
    try:
        return datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(
            microsecond=int(millis) * 1000, tzinfo=timezone.utc)
    except ValueError:
        return None


def manager_runs(lines) -> tuple:
    """The :class:`ManagerRun` of liblxc's log ``lines``, in order.

    A run is the lines of liblxc's ``criu.c`` from the command it runs (``Using
    command line``, at trace level) or its first line, to the line that reports
    how CRIU ended (``criu process exited N``, ``restore process died``, ``dump``
    or ``restore`` lines of another operation start another run); the error lines
    of other modules until the next run belong to it.
    """
    runs: list[dict] = []
    current: dict | None = None
    for line in lines:
        match = _LXC_FULL.match(line)
        if not match:
            continue
        stamp, millis, level, module, file, function, text = match.groups()
        time = _lxc_time(stamp, millis)
        error = level in _LXC_ERROR_LEVELS
        if file != "criu.c":
            if current is not None and error:
                current["errors"].append((time, module, text))
                current["lines"].append(line)
            continue
        operation = ("restore" if "restore" in function else
                     "dump" if "dump" in function else None)
        command = _LXC_COMMAND.search(text)
        exited = _LXC_EXIT.search(text)
        reports_end = bool(exited) or "process died" in text
        if current is None or (current["ended"] and not reports_end) or (
                command and current["command"]) or (
                operation and current["operation"] and operation != current["operation"]):
            current = {"operation": None, "started": time, "command": None, "exit": None,
                       "failed": False, "errors": [], "ended": False, "lines": []}
            runs.append(current)
        if error:
            current["lines"].append(line)
        current["operation"] = current["operation"] or operation
        if command:
            current["command"] = command.group(1)
            words = command.group(1).split()
            verb = next((w for w in words[1:3] if w in OPERATIONS), None)
            current["operation"] = current["operation"] or verb
        if exited:
            current["exit"] = int(exited.group(1) or exited.group(2))
        if error:
            current["failed"] = True
            current["errors"].append((time, module, text))
        if reports_end:
            current["ended"] = True
    return tuple(ManagerRun(run["operation"], run["started"], run["command"], run["exit"],
                            run["failed"], tuple(run["errors"]), tuple(run["lines"]))
                 for run in runs)
