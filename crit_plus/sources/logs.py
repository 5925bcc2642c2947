"""CRIU and LXC logs kept beside a checkpoint: CRIU version, kernel, error lines.

CRIU's verbose log (``criu dump -v4 -o dump.log``, which LXD and Podman use)
starts like::

    (00.000000) CRIU run id = a9908a71-6d2c-4e15-be7c-327fe6298e00
    (00.000061) Version: 4.2.1 (gitid 0)
    (00.000072) Running on vm Linux 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0 x86_64

``Running on`` is uname's nodename, sysname, release, version and machine.
CRIU's error lines read ``(00.024521) Error (criu/util.c:1534): rlimit: ...``;
liblxc's log lines read ``lxc web 20261125174050.694 ERROR    criu - ...``;
the LXD and Incus daemons' logs say ``level=error`` (``lvl=eror`` before LXD 5).

Logs are read line by line, never whole, and never written; a line longer than
:data:`MAX_LINE` characters is cut there (the rest of it is skipped).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

#: Lines of a CRIU log searched for the version and uname lines.
HEADER_LINES = 50
#: Error lines kept per log file (``error_count`` counts them all).
MAX_ERRORS = 200
#: Characters kept of one log line; the rest of a longer line is skipped.
MAX_LINE = 8192
#: Files of a log directory read as logs, as (glob pattern, kind); LXD names its
#: copies of CRIU's logs FUNCTION_METHOD_TIME.log (``snapshot_dump_...``,
#: ``migration_restore_...``).
LOG_PATTERNS = (("lxc.log", "lxc"), ("lxc.log.old", "lxc"), ("*dump*.log", "criu"),
                ("*restore*.log", "criu"), ("migration_*", "criu"))

_RUN_ID = re.compile(r"^\(\s*[\d.]+\)\s+CRIU run id = (\S+)")
_VERSION = re.compile(r"^\(\s*[\d.]+\)\s+Version:\s+(\S+)(?:\s+\(gitid\s+([^)]*)\))?")
_UNAME = re.compile(r"^\(\s*[\d.]+\)\s+Running on\s+(\S+)\s+(\S+)\s+(\S+)\s+(.*?)\s+(\S+)\s*$")
_CRIU_ERROR = re.compile(r"^(?:\(\s*[\d.]+\)\s+)?(?:pie: \d+: )?Error \(")
_LXC_ERROR = re.compile(r"^lxc\s.*?\s(ERROR|CRIT|ALERT|FATAL)\s")
_DAEMON_ERROR = re.compile(r"(?:^|\s)(?:level=(?:error|fatal|panic)|lvl=(?:eror|crit))(?:\s|$)")


@dataclass(frozen=True)
class LogHeader:
    """What the first lines of a CRIU log say: version, run id, git id, kernel, machine.

    The run id is unique to one CRIU run: two logs with the same one are copies.
    """

    criu_version: str | None = None
    run_id: str | None = None
    gitid: str | None = None
    kernel: str | None = None  # uname release, e.g. 6.18.44-fc-v669
    machine: str | None = None  # uname machine, e.g. x86_64


@dataclass(frozen=True)
class LogFile:
    """One log file a manager kept: its header facts and its error lines.

    ``kind`` is ``criu`` (a CRIU log) or ``lxc`` (liblxc's ``lxc.log``);
    ``this_checkpoint`` is True when the file is a byte-for-byte copy of the
    checkpoint's own ``dump.log`` (LXD copies it to ``snapshot_dump_TIME.log``).
    ``errors`` keeps the first :data:`MAX_ERRORS` error lines, ``error_count``
    counts all of them.
    """

    path: Path
    kind: str
    header: LogHeader
    errors: tuple
    error_count: int
    this_checkpoint: bool = False

    @property
    def name(self):
        """The file name, e.g. ``snapshot_dump_2026-11-25T17:40:42Z.log``."""
        return self.path.name

    def to_dict(self):
        """A JSON-ready dict."""
        return {
            "path": str(self.path), "kind": self.kind,
            "criu_version": self.header.criu_version, "run_id": self.header.run_id,
            "kernel": self.header.kernel,
            "this_checkpoint": self.this_checkpoint, "error_count": self.error_count,
            "errors": list(self.errors),
        }


def text_lines(stream, max_line=MAX_LINE):
    """The lines of a text ``stream`` without their newline, each cut to ``max_line``
    characters (the rest of a longer line is read past in bounded pieces)."""
    while True:
        line = stream.readline(max_line)
        if not line:
            return
        if not line.endswith("\n") and len(line) == max_line:
            rest = line
            while rest and not rest.endswith("\n"):
                rest = stream.readline(max_line)
        yield line.rstrip("\n")


def _lines(path):
    with open(path, encoding="utf-8", errors="replace") as stream:
        yield from text_lines(stream)


def _parse_header(lines):
    version = run_id = gitid = kernel = machine = None
    for line in lines:
        match = _RUN_ID.match(line)
        if match and run_id is None:
            run_id = match.group(1)
            continue
        match = _VERSION.match(line)
        if match and version is None:
            version, gitid = match.group(1), match.group(2)
            continue
        match = _UNAME.match(line)
        if match and kernel is None:
            kernel, machine = match.group(3), match.group(5)
    return LogHeader(version, run_id, gitid, kernel, machine)


def read_header(path):
    """The :class:`LogHeader` of the CRIU log at ``path`` (empty if it has none).

    Only the first :data:`HEADER_LINES` lines are read; raises OSError if the
    file cannot be read.
    """
    head = []
    for line in _lines(path):
        if len(head) >= HEADER_LINES:
            break
        head.append(line)
    return _parse_header(head)


def is_error_line(line):
    """True for a CRIU ``Error (...)`` line, a liblxc ERROR (or worse) line, or an
    LXD/Incus daemon line at level error (or worse)."""
    return bool(_CRIU_ERROR.match(line) or _LXC_ERROR.match(line)
                or _DAEMON_ERROR.search(line))


def find_logs(directories, patterns=LOG_PATTERNS):
    """``{path: kind}`` of the log files in ``directories`` matching ``patterns``,
    sorted by path; missing or unreadable directories are skipped."""
    found = {}
    for directory in directories:
        for pattern, kind in patterns:
            for path in sorted(Path(directory).glob(pattern)):
                if path.is_file() and path not in found:
                    found[path] = kind
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class ErrorContext:
    """Error lines of a log with the lines around them.

    ``lines`` are ``(number, text, is_error)`` triples, numbered from 1 and
    consecutive; error lines closer together than their context are one
    context.
    """

    lines: tuple

    @property
    def first_line(self):
        """The number of the first line shown."""
        return self.lines[0][0]

    @property
    def errors(self):
        """``(number, text)`` of the error lines."""
        return tuple((number, text) for number, text, error in self.lines if error)


def error_contexts(lines, before=3, after=2, limit=MAX_ERRORS):
    """``(contexts, error_count)``: the error lines of ``lines`` (an iterable of
    text lines) with ``before`` lines before and ``after`` lines after each.

    At most ``limit`` contexts are kept (``error_count`` counts every error
    line); memory is bounded by the contexts kept, whatever the log's size.
    """
    contexts, count = [], 0
    history = deque(maxlen=before)  # (number, text) of lines in no context yet
    current, until = None, 0  # the context being built, and its last line so far
    for number, text in enumerate(lines, 1):
        error = is_error_line(text)
        count += error
        if current is not None and number <= until:
            current.append((number, text, error))
            if error:
                until = number + after
            continue
        if not error:
            history.append((number, text))
            continue
        leading = [(n, t, False) for n, t in history]
        history.clear()
        touching = current is not None and (leading[0][0] if leading else number) == until + 1
        if touching:
            current.extend(leading)
        else:
            if current is not None:
                contexts.append(ErrorContext(tuple(current)))
            current = None
            if len(contexts) >= limit:
                continue
            current = leading
        current.append((number, text, True))
        until = number + after
    if current is not None:
        contexts.append(ErrorContext(tuple(current)))
    return contexts, count


def read_log(path, kind, this_checkpoint=False):
    """Read the log at ``path`` into a :class:`LogFile` in one pass; raises OSError if unreadable."""
    path = Path(path)
    head, errors, count = [], [], 0
    for line in _lines(path):
        if len(head) < HEADER_LINES:
            head.append(line)
        if is_error_line(line):
            count += 1
            if len(errors) < MAX_ERRORS:
                errors.append(line)
    header = _parse_header(head) if kind == "criu" else LogHeader()
    return LogFile(path, kind, header, tuple(errors), count, this_checkpoint)


def same_content(first, second, chunk=1 << 20):
    """True if the two files hold the same bytes (sizes compared first)."""
    try:
        if Path(first).stat().st_size != Path(second).stat().st_size:
            return False
        with open(first, "rb") as a, open(second, "rb") as b:
            while True:
                block = a.read(chunk)
                if block != b.read(chunk):
                    return False
                if not block:
                    return True
    except OSError:
        return False
