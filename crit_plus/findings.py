"""Findings: what is wrong or odd in a checkpoint, collected instead of raised.

The graph does not trust the images.  A missing image, an orphan process, a
pagemap entry outside every VMA or an fd whose file is not in ``files.img``
becomes a :class:`Finding` on the object it concerns; ``Checkpoint.findings``
gathers them all.  Only input that makes the checkpoint unreadable as a whole
(no ``inventory.img`` and no ``pstree.img``) raises.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

ERROR = "error"
WARNING = "warning"
INFO = "info"

#: Severities, most serious first.
SEVERITIES = (ERROR, WARNING, INFO)
#: Each severity's noun for a count other than one (``2 warnings``, ``3 info``).
SEVERITY_PLURALS = {ERROR: "errors", WARNING: "warnings", INFO: "info"}


def severity_count(count: int, severity: str) -> str:
    """``1 error``, ``0 errors``, ``3 info``: a count of findings of ``severity``."""
    return f"{count} {severity if count == 1 else SEVERITY_PLURALS[severity]}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem or remark.

    ``severity`` is ``error`` (a restore would fail or data is lost),
    ``warning`` (suspicious, may still restore) or ``info``; ``code`` is a
    short stable identifier (``orphan``, ``missing-image``, ...) for programs;
    ``message`` is one sentence for people; ``where`` names the image file or
    object concerned (``pagemap-42.img``, ``pid 42``); ``params`` are the values
    the message names, for programs (``(("pid", 42), ("fd", 3))``: see :func:`named`).
    """

    severity: str
    code: str
    message: str
    where: str
    params: tuple = field(default=(), compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


#: The names :attr:`Finding.params` use: a pid, a thread id, an fd number, a
#: files.img id, an entry index, a byte offset in the image, an address (hex text),
#: how many findings of the code a summary stands for (:class:`FindingList`).
PARAM_NAMES = ("pid", "tid", "fd", "id", "entry", "offset", "vaddr", "more")


def named(**values: object) -> tuple[tuple[str, object], ...]:
    """:attr:`Finding.params` from keyword values (None values left out)."""
    unknown = set(values) - set(PARAM_NAMES)
    if unknown:
        raise TypeError(f"unknown finding params: {sorted(unknown)}")
    return tuple((name, value) for name, value in values.items() if value is not None)


def error_finding(error: object, code: str = "bad-image", severity: str = ERROR) -> Finding:
    """A :class:`Finding` for a :class:`~decoders.errors.DecodeError` that was caught."""
    path = getattr(error, "path", None)
    entry_index = getattr(error, "entry_index", None)
    offset = getattr(error, "offset", None)
    where = os.path.basename(path) if path else "checkpoint"
    reason = getattr(error, "reason", None) or str(error)
    position = []
    if entry_index is not None:
        position.append(f"entry {entry_index}")
    if offset is not None:
        position.append(f"at offset {offset:#x}")
    message = (" ".join(position) + ": " + reason) if position else reason
    return Finding(severity, code, message, where, named(entry=entry_index, offset=offset))


#: Findings of one code listed at most; the others are counted in one summary finding.
MAX_PER_CODE = 20


class FindingList:
    """Findings gathered for one checkpoint, at most ``limit`` of each code.

    Hostile images can make one problem repeat without bound (a pstree of
    100,000 pids without images: five findings each); every list of findings a
    command shows is gathered here, so the first ``limit`` of a code are kept
    and the rest only counted: :meth:`result` ends with one summary finding per
    code that had more (its ``params`` say ``more=K``).
    """

    def __init__(self, limit: int = MAX_PER_CODE,
                 summary: Callable[[str, str, int, int], Finding] | None = None) -> None:
        self.limit = limit
        self._summary = summary or _summary_finding
        self._kept: list[Finding] = []
        self._seen: dict[str, int] = {}  # code -> findings of it seen
        self._worst: dict[str, str] = {}  # code -> the most serious severity of the ones not kept

    def add(self, finding: Finding, more: int | None = None) -> bool:
        """Keep ``finding`` if fewer than ``limit`` of its code are kept; True if kept.

        ``more`` (default: the finding's own ``more`` param) says ``finding`` is a
        summary standing for that many findings: they are counted, it is not kept.
        """
        if more is None:
            more = dict(getattr(finding, "params", ())).get("more")
        code = finding.code
        seen = self._seen.get(code, 0)
        if more:
            self._seen[code] = max(seen, self.limit) + more
        else:
            self._seen[code] = seen + 1
            if seen < self.limit:
                self._kept.append(finding)
                return True
        worst = self._worst.get(code, INFO)
        self._worst[code] = min(worst, finding.severity, key=SEVERITIES.index)
        return False

    def extend(self, findings: Iterable[Finding]) -> None:
        """:meth:`add` each of ``findings``."""
        for finding in findings:
            self.add(finding)

    def result(self) -> tuple[Finding, ...]:
        """The kept findings, then one summary per code that had more than ``limit``."""
        summaries = [self._summary(severity, code, self._seen[code] - self.limit, self.limit)
                     for code, severity in self._worst.items()]
        return tuple(self._kept + summaries)


def summary_message(code: str, more: int, limit: int) -> str:
    """The message of a summary finding standing for ``more`` findings of ``code``."""
    return f"{more} more {code} findings not listed (only the first {limit} of each kind are)"


def _summary_finding(severity: str, code: str, more: int, limit: int) -> Finding:
    return Finding(severity, code, summary_message(code, more, limit), "checkpoint",
                   named(more=more))


def finding_count(findings: Iterable[Finding], severity: str | None = None) -> int:
    """How many findings ``findings`` stand for (of ``severity``, if given): a summary
    of :class:`FindingList` counts for the findings it stands for."""
    return sum(dict(finding.params).get("more", 1) for finding in findings
               if severity is None or finding.severity == severity)

