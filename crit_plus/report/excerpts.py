"""The error lines of the logs a report gathered, with their context, most
telling first: what the index shows on its first page.

The logs are read back from the bundle's own copies (so line numbers are the
copy's), error lines found by :func:`crit_plus.sources.logs.error_contexts`.
A log whose bytes, kind and CRIU run id equal an earlier one's (LXD's
``snapshot_dump_TIME.log`` is a copy of the checkpoint's ``dump.log``) is listed as
the same, not repeated; a CRIU log is a dump's or a restore's by what the log
attribution (:mod:`crit_plus.sources.runs`) reads in it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..analysis.explain import diagnose, issue_url
from ..analysis.validate_catalog import match_failure
from ..sources.logs import error_contexts, read_header
from ..sources.runs import operation_of_name, read_run

#: Kinds of scanned text, most telling first: liblxc's log says why LXD's
#: restore failed, then CRIU's restore logs, the daemon's log, CRIU's dump logs, and
#: last ``criu check`` (the host's criu, which may not be the one that made the dump).
#: A log with a decisive error (a failed run's) comes before every log without one.
SCAN_ORDER = ("lxc", "restore", "daemon", "dump", "check")
#: Lines shown before and after each error line.
BEFORE, AFTER = 3, 2

#: The scan kind of a CRIU log by its run's operation (a lazy-pages daemon serves a restore).
_SCAN_OF_OPERATION = {"restore": "restore", "lazy-pages": "restore", "check": "check"}


def criu_log_scan(path):
    """``(scan kind, run id)`` of the CRIU log at ``path``: ``restore`` for a restore
    (also a lazy-pages daemon), ``check`` for ``criu check``, else ``dump``, by the
    operation the log attribution reads in it (:func:`crit_plus.sources.runs.read_run`:
    its content first, its name when the content says nothing); the run id from its
    header (None without one)."""
    try:
        run = read_run(path, read_header(path).run_id)
    except OSError:
        return _SCAN_OF_OPERATION.get(operation_of_name(os.path.basename(path)), "dump"), None
    return _SCAN_OF_OPERATION.get(run.operation, "dump"), run.run_id


@dataclass(frozen=True)
class Excerpt:
    """The errors of one gathered log.

    ``member`` is the log's name in the bundle, ``contexts`` its
    :class:`~crit_plus.sources.logs.ErrorContext` list, ``error_count`` every
    error line it has; ``same_as`` names an earlier member with the same bytes
    (its contexts are then empty); ``cut`` says only the log's end was kept.
    ``decisive`` is the error that made a failed run fail (a CRIU log that says
    ``FAILED.``, liblxc's log) as ``crit-plus explain`` reads it, ``diagnosis`` the
    failure catalog's ``{code, cause, fix, issue}`` for it (None: not in the catalog).
    """

    member: str
    origin: str
    kind: str
    contexts: tuple
    error_count: int
    same_as: str | None = None
    cut: bool = False
    decisive: str | None = None
    diagnosis: dict | None = None

    def to_dict(self):
        """A JSON-ready dict: the error lines with their numbers."""
        return {
            "member": self.member, "origin": self.origin, "kind": self.kind,
            "error_count": self.error_count, "same_as": self.same_as, "cut": self.cut,
            "decisive": self.decisive, "diagnosis": self.diagnosis,
            "errors": [{"line": number, "text": text}
                       for context in self.contexts for number, text in context.errors],
        }


def _rank(member):
    kind = member.scan
    return (SCAN_ORDER.index(kind) if kind in SCAN_ORDER else len(SCAN_ORDER), -member.mtime,
            member.name)


def _copy_key(member):
    """What makes two members the same log: the same bytes, kind and CRIU run. A CRIU
    log without a run id (CRIU's default level) is never another's copy: a dump's and a
    restore's can hold the same bytes."""
    if member.scan in ("restore", "dump") and member.run_id is None:
        return member.name
    return member.digest, member.scan, member.run_id


#: Catalog entries that end a failed CRIU run (its last line).
_RUN_FAILED = ("dump-failed", "restore-failed")


def _diagnosis(kind, contexts, fields):
    """``(decisive, diagnosis)`` of a failed run's error lines (see :class:`Excerpt`), the
    fix filled with ``fields`` as explain fills it."""
    texts = [text for context in contexts for _number, text in context.errors]
    ends = [failure.operation for text in texts
            if (failure := match_failure(text)) is not None and failure.code in _RUN_FAILED]
    failed = kind == "lxc" or bool(ends)
    found = diagnose(texts, ends[0] if ends else None, fields) if failed else None
    if found is None:
        return None, None
    failure = found.failure
    if failure is None or failure.role != "cause":
        return found.text, None
    return found.text, {"code": failure.code, "cause": failure.cause, "fix": failure.fix,
                        "check": failure.check, "issue": issue_url(failure.issue)}


def find_excerpts(collection, fields: dict | None = None):
    """The :class:`Excerpt` of every scanned member of ``collection`` that has
    error lines, most telling first: those with a decisive error first, then by
    :data:`SCAN_ORDER` (newest first within a kind).  ``fields`` fill the catalog's
    fixes (``manager``, ``instance``, ``key``:
    :func:`crit_plus.sources.fields.catalog_fields`), as validate, explain and
    summarize fill them; missing ones show as NAME."""
    excerpts: list = []
    first_with: dict = {}
    for member in sorted((m for m in collection.members if m.scan), key=_rank):
        same = first_with.get(_copy_key(member))
        if same is not None:
            if same.error_count:
                excerpts.append(Excerpt(member.name, member.origin, member.scan, (),
                                        same.error_count, same_as=same.member, cut=member.cut))
            continue
        contexts, count = error_contexts(collection.spool.reader(member), BEFORE, AFTER)
        decisive, diagnosis = _diagnosis(member.scan, contexts, fields)
        excerpt = Excerpt(member.name, member.origin, member.scan, tuple(contexts), count,
                          cut=member.cut, decisive=decisive, diagnosis=diagnosis)
        first_with[_copy_key(member)] = excerpt
        if count:
            excerpts.append(excerpt)
    decisive = {excerpt.member for excerpt in excerpts
                if excerpt.decisive is not None and excerpt.kind != "check"}
    excerpts.sort(key=lambda e: (e.same_as or e.member) not in decisive)  # stable
    return excerpts


__all__ = ["AFTER", "BEFORE", "Excerpt", "SCAN_ORDER", "criu_log_scan", "find_excerpts"]
