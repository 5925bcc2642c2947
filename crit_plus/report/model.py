"""The parts of a report: members, skips, and the report as a whole."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Skipped:
    """Something the report wanted and does not hold, and why."""

    what: str
    why: str


@dataclass(frozen=True)
class Member:
    """A member of the bundle.

    ``origin`` says where it came from (a path, a command line).  Spooled
    members have ``offset`` into the spool; streamed ones (images) have ``path``.
    ``scan`` is the kind of log (see :data:`crit_plus.report.excerpts.SCAN_ORDER`)
    for text searched for error lines (logs, ``criu check``), else None;
    ``digest`` (of the bytes kept) finds copies; ``cut`` says a long file was
    cut to its last bytes (:data:`crit_plus.report.collect.MAX_FILE`); ``run_id``
    is a CRIU log's run id (its header; None without one).
    """

    name: str
    origin: str
    size: int
    mtime: float
    offset: int | None = None
    path: str | None = None
    scan: str | None = None
    digest: str | None = None
    cut: bool = False
    run_id: str | None = None



@dataclass(frozen=True)
class Report:
    """Everything a bundle says, gathered: what the index and ``report.json`` show.

    ``spec`` is what the user named (None with ``--host-only`` alone);
    ``source`` the resolved checkpoint's facts (``Source.to_dict()``, None with
    ``--host-only``); ``collection`` the gathered members, skips and runs;
    ``excerpts`` the logs' errors, most telling first; ``top`` the bundle's top
    directory; ``note`` what the user said happened (``--note``).
    """

    spec: str | None
    source: dict | None
    host_only: bool
    include_images: bool
    note: str | None
    created: datetime
    top: str
    collection: object
    excerpts: tuple
    crit_plus_version: str
