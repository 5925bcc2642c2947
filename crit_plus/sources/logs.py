"""CRIU and LXC logs kept beside a checkpoint: CRIU version, kernel, error lines.

CRIU's verbose log (``criu dump -v4 -o dump.log``, which LXD and Podman use)
starts like::

    (00.000000) CRIU run id = a9908a71-6d2c-4e15-be7c-327fe6298e00
    (00.000061) Version: 4.2.1 (gitid 0)
    (00.000072) Running on vm Linux 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0 x86_64

``Running on`` is uname's nodename, sysname, release, version and machine.
CRIU's error lines read ``(00.024521) Error (criu/util.c:1534): rlimit: ...``;
liblxc's log lines read ``lxc web 20261125174050.694 ERROR    criu - ...``.

Logs are read line by line, never whole, and never written.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from pathlib import Path

#: Lines of a CRIU log searched for the version and uname lines.
HEADER_LINES = 50
#: Error lines kept per log file (``error_count`` counts them all).
MAX_ERRORS = 200

_RUN_ID = re.compile(r"^\(\s*[\d.]+\)\s+CRIU run id = (\S+)")
_VERSION = re.compile(r"^\(\s*[\d.]+\)\s+Version:\s+(\S+)(?:\s+\(gitid\s+([^)]*)\))?")
_UNAME = re.compile(r"^\(\s*[\d.]+\)\s+Running on\s+(\S+)\s+(\S+)\s+(\S+)\s+(.*?)\s+(\S+)\s*$")
_CRIU_ERROR = re.compile(r"^(?:\(\s*[\d.]+\)\s+)?(?:pie: \d+: )?Error \(")
_LXC_ERROR = re.compile(r"^lxc\s.*?\s(ERROR|CRIT|ALERT|FATAL)\s")


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


def _lines(path):
    with open(path, encoding="utf-8", errors="replace") as stream:
        for line in stream:
            yield line.rstrip("\n")


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
    """True for a CRIU ``Error (...)`` line or a liblxc ERROR (or worse) line."""
    return bool(_CRIU_ERROR.match(line) or _LXC_ERROR.match(line))


#: Bytes of a log scanned at a time by :func:`read_log`.
SCAN_CHUNK = 4 << 20

# What an error line holds somewhere; lines around a mark are checked by is_error_line.
# Each is searched for alone (bytes.find is far faster than a regex alternation).
_ERROR_MARKS = (b"Error (", b" ERROR ", b" CRIT ", b" ALERT ", b" FATAL ")


def _error_lines(path):
    """Every error line of the file at ``path`` (:func:`is_error_line`), found by
    scanning :data:`SCAN_CHUNK` pieces for the words error lines hold, instead of
    matching each line (CRIU's verbose logs are megabytes)."""
    with open(path, "rb") as stream:
        rest = b""
        while True:
            block = stream.read(SCAN_CHUNK)
            if not block:
                yield from _marked_lines(rest)
                return
            data = rest + block
            cut = data.rfind(b"\n") + 1
            yield from _marked_lines(data[:cut])
            rest = data[cut:]


def _marks(data, mark):
    at = data.find(mark)
    while at >= 0:
        yield at
        at = data.find(mark, at + 1)


def _marked_lines(data):
    done = 0  # end of the last line looked at
    for at in heapq.merge(*(_marks(data, mark) for mark in _ERROR_MARKS)):
        if at < done:
            continue
        start = data.rfind(b"\n", 0, at) + 1
        end = data.find(b"\n", at)
        done = end = len(data) if end < 0 else end
        line = data[start:end].decode("utf-8", "replace").rstrip("\r")
        if is_error_line(line):
            yield line


def read_log(path, kind, this_checkpoint=False):
    """Read the log at ``path`` into a :class:`LogFile`; raises OSError if unreadable."""
    path = Path(path)
    errors, count = [], 0
    for line in _error_lines(path):
        count += 1
        if len(errors) < MAX_ERRORS:
            errors.append(line)
    header = read_header(path) if kind == "criu" else LogHeader()
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
