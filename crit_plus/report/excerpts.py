"""The error lines of the logs a report gathered, with their context, most
telling first: what the index shows on its first page.

The logs are read back from the bundle's own copies (so line numbers are the
copy's), error lines found by :func:`crit_plus.sources.logs.error_contexts`.
A log whose bytes equal an earlier one's (LXD's ``snapshot_dump_TIME.log`` is a
copy of the checkpoint's ``dump.log``) is listed as the same, not repeated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..sources.logs import error_contexts

#: Kinds of scanned text, most telling first: liblxc's log says why LXD's
#: restore failed, then CRIU's restore logs, the daemon's log, ``criu check``,
#: CRIU's dump logs.
SCAN_ORDER = ("lxc", "restore", "daemon", "check", "dump")
#: Lines shown before and after each error line.
BEFORE, AFTER = 3, 2

_RESTORE = re.compile(r"restore|migrat", re.IGNORECASE)


def criu_log_kind(name):
    """``restore`` for a CRIU log of a restore or migration (by its file name), else ``dump``."""
    return "restore" if _RESTORE.search(name) else "dump"


@dataclass(frozen=True)
class Excerpt:
    """The errors of one gathered log.

    ``member`` is the log's name in the bundle, ``contexts`` its
    :class:`~crit_plus.sources.logs.ErrorContext` list, ``error_count`` every
    error line it has; ``same_as`` names an earlier member with the same bytes
    (its contexts are then empty); ``cut`` says only the log's end was kept.
    """

    member: str
    origin: str
    kind: str
    contexts: tuple
    error_count: int
    same_as: str | None = None
    cut: bool = False

    def to_dict(self):
        """A JSON-ready dict: the error lines with their numbers."""
        return {
            "member": self.member, "origin": self.origin, "kind": self.kind,
            "error_count": self.error_count, "same_as": self.same_as, "cut": self.cut,
            "errors": [{"line": number, "text": text}
                       for context in self.contexts for number, text in context.errors],
        }


def _rank(member):
    kind = member.scan
    return (SCAN_ORDER.index(kind) if kind in SCAN_ORDER else len(SCAN_ORDER), -member.mtime,
            member.name)


def find_excerpts(collection):
    """The :class:`Excerpt` of every scanned member of ``collection`` that has
    error lines, most telling first (see :data:`SCAN_ORDER`; newest first within
    a kind)."""
    excerpts, first_with = [], {}
    for member in sorted((m for m in collection.members if m.scan), key=_rank):
        same = first_with.get(member.digest)
        if same is not None:
            if same.error_count:
                excerpts.append(Excerpt(member.name, member.origin, member.scan, (),
                                        same.error_count, same_as=same.member, cut=member.cut))
            continue
        contexts, count = error_contexts(collection.spool.reader(member), BEFORE, AFTER)
        excerpt = Excerpt(member.name, member.origin, member.scan, tuple(contexts), count,
                          cut=member.cut)
        first_with[member.digest] = excerpt
        if count:
            excerpts.append(excerpt)
    return excerpts


__all__ = ["AFTER", "BEFORE", "Excerpt", "SCAN_ORDER", "criu_log_kind", "find_excerpts"]
