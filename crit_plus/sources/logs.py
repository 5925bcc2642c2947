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
:data:`MAX_LINE` characters is cut there (the rest of it is skipped); a FIFO or
device where a log should be is refused, not waited on.
"""

from __future__ import annotations

import fnmatch
import io
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from decoders.framing import open_untrusted
from decoders.lazy import LazyPattern

from .logheader import (  # noqa: F401 (exported here too)
    HEADER_LINES, MAX_LINE, LogHeader, _header_of, read_header, release_tuple, text_lines,
)

if TYPE_CHECKING:  # .runs is loaded when a whole log is read (read_log), not for a header
    from .runs import LogRun

#: Error lines kept per log file (``error_count`` counts them all).
MAX_ERRORS = 200
#: Files of a log directory read as logs, as (glob pattern, kind); LXD names its
#: copies of CRIU's logs FUNCTION_METHOD_TIME.log (``snapshot_dump_...``,
#: ``migration_restore_...``).
LOG_PATTERNS = (("lxc.log", "lxc"), ("lxc.log.old", "lxc"), ("*dump*.log", "criu"),
                ("*restore*.log", "criu"), ("migration_*", "criu"))

#: An error line, as one pattern that works line by line and on a block of lines
#: (MULTILINE; ``[^\S\n]`` is whitespace that never crosses a line end): CRIU's
#: ``Error (file:line)`` (also from its parasite, ``pie: N: Error (``, and from a
#: restored process, ``PID: Error (``, which a restore log prefixes), liblxc's
#: ERROR/CRIT/ALERT/FATAL, the LXD/Incus daemon's level=error (or worse).
_ERROR_PATTERN = (
    r"^(?:\([^\S\n]*[\d.]+\)[^\S\n]+)?(?:[^\S\n]*\d+:[^\S\n]+)?(?:pie: \d+: )?Error \("
    r"|^lxc[^\S\n].*?[^\S\n](?:ERROR|CRIT|ALERT|FATAL)[^\S\n]"
    r"|(?:^|[^\S\n])(?:level=(?:error|fatal|panic)|lvl=(?:eror|crit))(?:[^\S\n]|$)")
_ERROR_LINE = LazyPattern(_ERROR_PATTERN, re.MULTILINE)
_ERROR_LINE_BYTES = LazyPattern(_ERROR_PATTERN.encode(), re.MULTILINE)
#: CRIU ``Error`` lines that are known noise, not failures: ``(code, pattern, why)``.
#: They are no error lines for :func:`is_error_line` and :func:`error_contexts`
#: (``harmless=True`` keeps them); the failure catalog
#: (:data:`crit_plus.analysis.validate_catalog.FAILURES`) shows them as harmless.
HARMLESS = (
    ("rlimit-nofile", r"rlimit: Can't setup RLIMIT_NOFILE for self",
     ("CRIU tries to raise its own open-files limit to the kernel's maximum "
     "(rlimit_unlimit_nofile(), criu/util.c) and logs this with pr_perror when it may not "
     "(no CAP_SYS_RESOURCE, e.g. in a container or under a hard limit); it goes on with the "
     "limit it has. Every run on such a host logs it, the runs that succeed too.")),
)
_HARMLESS_SOURCE = "|".join(f"(?:{pattern})" for _code, pattern, _why in HARMLESS)
_HARMLESS = LazyPattern(_HARMLESS_SOURCE)
_HARMLESS_BYTES = LazyPattern(_HARMLESS_SOURCE.encode())
#: Bytes one of which every error line holds: blocks of a log are searched for
#: them (``bytes.find`` is fast), and only the lines holding one are matched.
_ERROR_MARKS = (b"Error (", b"ERROR", b"CRIT", b"ALERT", b"FATAL", b"level=", b"lvl=")
#: The marks a log of a known kind can hold: CRIU writes only its ``Error (`` lines
#: (searching a megabyte for one mark instead of seven is most of reading a log).
MARKS_BY_KIND = {"criu": (b"Error (",)}
#: Bytes of a log read at a time when searching it for errors.
SCAN_CHUNK = 1 << 20


@dataclass(frozen=True)
class LogFile:
    """One log file a manager kept: its header facts and its error lines.

    ``kind`` is ``criu`` (a CRIU log) or ``lxc`` (liblxc's ``lxc.log``);
    ``run`` is what a CRIU log says of its run (a
    :class:`~crit_plus.sources.runs.LogRun`: run id, operation, outcome, when);
    which checkpoint it belongs to is :func:`crit_plus.sources.runs.attribute`'s.
    ``errors`` keeps the first :data:`MAX_ERRORS` error lines, ``error_count``
    counts all of them.
    """

    path: Path
    kind: str
    header: LogHeader
    errors: tuple
    error_count: int
    run: LogRun | None = None

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
            "run": self.run.to_dict() if self.run is not None else None,
            "error_count": self.error_count,
            "errors": list(self.errors),
        }



def is_error_line(line, harmless=False):
    """True for a CRIU ``Error (...)`` line, a liblxc ERROR (or worse) line, or an
    LXD/Incus daemon line at level error (or worse); a line of :data:`HARMLESS`
    only with ``harmless``."""
    return bool(_ERROR_LINE.search(line)) and (harmless or not is_harmless(line))


def is_harmless(line: str) -> bool:
    """True for a line of :data:`HARMLESS` (known noise, no failure)."""
    return bool(_HARMLESS.search(line))


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


def log_kind(name, patterns=LOG_PATTERNS):
    """The kind (``criu``, ``lxc``) :func:`find_logs` gives a file named ``name``, or
    None: that of the first of ``patterns`` it matches."""
    return next((kind for pattern, kind in patterns if fnmatch.fnmatchcase(name, pattern)), None)


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


class _ContextBuilder:
    """Builds :class:`ErrorContext` objects from lines fed in order, or skipped in
    bulk when they are neither errors nor after an error."""

    def __init__(self, before, after, limit):
        self.before, self.after, self.limit = before, after, limit
        self.contexts, self.count, self.number = [], 0, 0
        self.history = deque(maxlen=before)  # (number, text) of lines in no context yet
        self.current, self.until = None, 0  # the context being built, its last line so far

    @property
    def open_lines(self):
        """How many coming lines belong to the current context whatever they say."""
        return max(0, self.until - self.number) if self.current is not None else 0

    @property
    def full(self):
        """True when no further context will be kept (errors are still counted)."""
        return self.current is None and len(self.contexts) >= self.limit

    def skip(self, count, tail):
        """Pass ``count`` lines that are not errors and after every context's end;
        ``tail`` are their last ``min(count, before)`` texts."""
        self.number += count
        first = self.number - len(tail) + 1
        self.history.extend((first + offset, text) for offset, text in enumerate(tail))

    def line(self, text, error):
        """Feed the next line."""
        self.number += 1
        number = self.number
        self.count += error
        if self.current is not None and number <= self.until:
            self.current.append((number, text, error))
            if error:
                self.until = number + self.after
            return
        if not error:
            self.history.append((number, text))
            return
        leading = [(n, t, False) for n, t in self.history]
        self.history.clear()
        if self.current is not None and (leading[0][0] if leading else number) == self.until + 1:
            self.current.extend(leading)
        else:
            self.close()
            if len(self.contexts) >= self.limit:
                return
            self.current = leading
        self.current.append((number, text, True))
        self.until = number + self.after

    def close(self):
        """Finish the current context."""
        if self.current is not None:
            self.contexts.append(ErrorContext(tuple(self.current)))
        self.current = None


def _blocks(stream, chunk):
    """Blocks of whole lines (each ending in a newline) read from binary ``stream``
    ``chunk`` bytes at a time; a line longer than :data:`MAX_LINE` with no end in
    sight is cut there and the rest of it skipped."""
    pending, discarding = b"", False
    while True:
        data = stream.read(chunk)
        if not data:
            break
        if discarding:
            end = data.find(b"\n")
            if end < 0:
                continue
            data, discarding = data[end + 1:], False
        data = pending + data
        end = data.rfind(b"\n")
        if end >= 0:
            yield data[:end + 1]
            pending = data[end + 1:]
        elif len(data) > MAX_LINE:
            yield data[:MAX_LINE] + b"\n"
            pending, discarding = b"", True
        else:
            pending = data
    if pending:
        yield pending + b"\n"


def _text(line):
    """One kept log line as text: at most :data:`MAX_LINE` bytes, no carriage return."""
    line = line[:MAX_LINE]
    return (line[:-1] if line.endswith(b"\r") else line).decode("utf-8", "replace")


def _last_lines(block, count):
    """The last ``count`` lines of ``block`` (which ends with a newline)."""
    if count <= 0:
        return []
    return [_text(line) for line in block[:-1].rsplit(b"\n", count)[-count:]]


def _error_starts(block, marks=_ERROR_MARKS, harmless=False):
    """The offsets in ``block`` where its error lines start, in order (the lines of
    :data:`HARMLESS` only with ``harmless``)."""
    checked, starts = set(), []
    for mark in marks:
        position = block.find(mark)
        while position >= 0:
            start = block.rfind(b"\n", 0, position) + 1
            end = block.find(b"\n", position)
            if start not in checked:
                checked.add(start)
                if _ERROR_LINE_BYTES.search(block, start, end) and (
                        harmless or not _HARMLESS_BYTES.search(block, start, end)):
                    starts.append(start)
            position = block.find(mark, end)
    return sorted(starts)


def _wanted_ranges(errors, before, after, open_lines, count):
    """Sorted, disjoint ``[low, high]`` line ranges of a block of ``count`` lines that
    must be looked at: each error line with its context, and the ``open_lines``
    first lines (the end of a context begun in an earlier block)."""
    ranges = [[0, min(open_lines, count) - 1]] if open_lines else []
    for index in errors:
        low, high = max(0, index - before), min(count - 1, index + after)
        if ranges and low <= ranges[-1][1] + 1:
            ranges[-1][1] = max(ranges[-1][1], high)
        else:
            ranges.append([low, high])
    return ranges


def _scan_block(builder, block, marks=_ERROR_MARKS, harmless=False):
    starts = _error_starts(block, marks, harmless)
    if builder.full or (not starts and not builder.open_lines):
        builder.count += len(starts)
        lines = block.count(b"\n")
        builder.skip(lines, _last_lines(block, min(lines, builder.before)))
        return
    if not builder.before and not builder.after:
        _scan_error_lines(builder, block, starts)
        return
    errors, line, position = [], 0, 0
    for start in starts:
        line += block.count(b"\n", position, start)
        position = start
        errors.append(line)
    lines = block[:-1].split(b"\n")
    error_set, done = set(errors), 0
    for low, high in _wanted_ranges(errors, builder.before, builder.after, builder.open_lines,
                                    len(lines)):
        if low > done:
            builder.skip(low - done, [_text(text) for text in
                                      lines[max(done, low - builder.before):low]])
        for index in range(low, high + 1):
            builder.line(_text(lines[index]), index in error_set)
        done = high + 1
    if done < len(lines):
        builder.skip(len(lines) - done, [_text(text) for text in
                                         lines[max(done, len(lines) - builder.before):]])


def _scan_error_lines(builder, block, starts):
    """:func:`_scan_block` without context lines: only the error lines are cut out of
    ``block``, the lines between them are counted, not split."""
    position = 0
    for start in starts:
        builder.skip(block.count(b"\n", position, start), [])
        end = block.find(b"\n", start)
        builder.line(_text(block[start:end]), True)
        position = end + 1
    builder.skip(block.count(b"\n", position), [])


def error_contexts(stream, before=3, after=2, limit=MAX_ERRORS, chunk=SCAN_CHUNK,
                   marks=_ERROR_MARKS, harmless=False):
    """``(contexts, error_count)``: the error lines (:func:`is_error_line`) of the
    binary ``stream``, each with ``before`` lines before and ``after`` lines after it.

    Lines are numbered from 1 and given as text (UTF-8, undecodable bytes
    replaced, cut at :data:`MAX_LINE` bytes); error lines closer together than
    their context make one :class:`ErrorContext`.  At most ``limit`` contexts are kept
    (``error_count`` counts every error line).  The log is read in ``chunk``
    pieces and searched block by block, so memory is bounded by the chunk and the
    contexts kept, and only blocks holding errors are looked at line by line.
    ``marks`` narrows the search to what one kind of log can hold
    (:data:`MARKS_BY_KIND`); ``harmless`` keeps the lines of :data:`HARMLESS`.
    """
    builder = _ContextBuilder(before, after, limit)
    for block in _blocks(stream, chunk):
        _scan_block(builder, block, marks, harmless)
    builder.close()
    return builder.contexts, builder.count


def read_log(path, kind):
    """Read the log at ``path`` into a :class:`LogFile`, a CRIU log's run facts
    included; raises OSError if unreadable."""
    from .runs import run_of_stream

    path = Path(path)
    with open(open_untrusted(path)[0], "rb") as stream:  # a regular file: it can seek
        header = _header_of(stream) if kind == "criu" else LogHeader()
        stream.seek(0)
        contexts, count = error_contexts(stream, before=0, after=0,
                                         marks=MARKS_BY_KIND.get(kind, _ERROR_MARKS))
        run = run_of_stream(stream, path, header.run_id) if kind == "criu" else None
    errors = tuple(text for context in contexts for _number, text in context.errors)
    return LogFile(path, kind, header, errors[:MAX_ERRORS], count, run)


#: A line only CRIU writes: its header, its ``Error``/``Warn`` lines (``criu/`` or
#: ``compel/`` sources), the lines a run ends with.
_CRIU_LINE = LazyPattern(
    rb"^(?:\(\s*[\d.]+\)\s+)?(?:\s*\d+: )?(?:pie: \d+: )?(?:CRIU run id = |Version: \d"
    rb"|Running on |(?:Error|Warn) +\((?:criu|compel|soccr)/|Dumping finished successfully"
    rb"|Restore finished successfully|(?:Pre-d|D)umping FAILED|Restoring FAILED)", re.MULTILINE)
#: A liblxc log line (``lxc NAME TIME LEVEL module - file:function:line - text``).
_LXC_ANY = LazyPattern(rb"^lxc(?: \S+)? \d{14}\.\d{3} +[A-Z]+ ", re.MULTILINE)


def sniff_kind(path) -> str | None:
    """``criu`` or ``lxc`` when the first :data:`SCAN_CHUNK` bytes of the file at
    ``path`` hold a line only CRIU (or liblxc) writes, else None (any other text).
    Raises OSError."""
    with open(open_untrusted(path)[0], "rb") as stream:
        head = stream.read(SCAN_CHUNK)
    if _LXC_ANY.search(head):
        return "lxc"
    if _CRIU_LINE.search(head):
        return "criu"
    return None


def read_error_contexts(path, kind: str, before: int = 6, limit: int = MAX_ERRORS):
    """``(contexts, error_count)`` of :func:`error_contexts` for the log at ``path``
    with ``before`` lines before each error, the known noise (:data:`HARMLESS`)
    kept: what ``explain`` reads the decisive error from.  Raises OSError."""
    with open(open_untrusted(path)[0], "rb") as stream:
        return error_contexts(stream, before=before, after=0, limit=limit,
                              marks=MARKS_BY_KIND.get(kind, _ERROR_MARKS), harmless=True)


def read_lines(path, limit: int = 1 << 20):
    """The first ``limit`` lines of the text file at ``path`` (:func:`text_lines`:
    each cut at :data:`MAX_LINE`), for liblxc's log.  Raises OSError."""
    with open(open_untrusted(path)[0], "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
        found: list[str] = []
        for line in text_lines(text):
            if len(found) >= limit:
                break
            found.append(line)
        return found
