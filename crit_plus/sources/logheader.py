"""The header of a CRIU log: version, run id, git id, kernel and machine.

Read for every checkpoint with a ``dump.log`` (``Source`` facts), so it is a module
of its own: reading it does not load :mod:`crit_plus.sources.logs` (error lines,
runs).  :mod:`crit_plus.sources.logs` exports these names too.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from decoders.framing import open_untrusted
from decoders.lazy import LazyPattern

#: Lines of a CRIU log searched for the version and uname lines.
HEADER_LINES = 50
#: Characters (bytes, when searching for errors) kept of one log line; the rest of
#: a longer line is skipped.
MAX_LINE = 8192

_RUN_ID = LazyPattern(r"^\(\s*[\d.]+\)\s+CRIU run id = (\S+)")
_VERSION = LazyPattern(r"^\(\s*[\d.]+\)\s+Version:\s+(\S+)(?:\s+\(gitid\s+([^)]*)\))?")
_UNAME = LazyPattern(r"^\(\s*[\d.]+\)\s+Running on\s+(\S+)\s+(\S+)\s+(\S+)\s+(.*?)\s+(\S+)\s*$")


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


def release_tuple(text):
    """The leading numbers of a CRIU version or kernel release, for comparing them:
    ``6.18.44-fc`` → (6, 18, 44), ``4.2-rc1`` → (4, 2); None without a number."""
    match = re.match(r"^\s*v?(\d+(?:\.\d+)*)", text or "")
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def read_header(path):
    """The :class:`LogHeader` of the CRIU log at ``path`` (empty if it has none).

    Only the first :data:`HEADER_LINES` lines are read; raises OSError if the
    file cannot be read.
    """
    with open(open_untrusted(path)[0], "rb") as stream:
        return _header_of(stream)


def _header_of(stream):
    """The :class:`LogHeader` of the first :data:`HEADER_LINES` lines of binary
    ``stream``; the stream is left open (its position past them)."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace")
    try:
        head = []
        for line in text_lines(text):
            if len(head) >= HEADER_LINES:
                break
            head.append(line)
    finally:
        text.detach()
    return _parse_header(head)


__all__ = ["HEADER_LINES", "MAX_LINE", "LogHeader", "read_header", "release_tuple",
           "text_lines"]
