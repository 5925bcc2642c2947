"""``diff``: what changed between two checkpoints, section by section.

:func:`diff_checkpoints` pairs the processes of OLD and NEW once
(:mod:`.diff_processes`) and hands the pairing to each section asked for:

- ``processes`` — started, exited, changed (:mod:`.diff_processes`);
- ``files`` — fds opened, closed, re-pointed, changed; files, sockets, pipes
  that appeared, disappeared or changed (:mod:`.diff_files`);
- ``memory`` — VMAs and page contents (:mod:`.diff_memory`; the only section
  that reads page data, and only when ``content`` is true);
- ``images`` — image files on one side only, the dump's facts side by side
  (:mod:`.diff_images`);
- ``rootfs`` — the root-filesystem changes two container archives record: files
  added, removed or changed between their ``rootfs-diff.tar`` and
  ``deleted.files`` (:func:`crit_plus.sources.rootfs.diff_rootfs`; headers only).

:func:`report_json` is the stable JSON form (schema in docs/commands/diff.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..findings import ERROR, finding_count
from ..render import jsonable, stamped
from .diff_files import diff_files
from .diff_images import diff_images
from .diff_memory import CHUNK_SIZE, diff_memory
from .diff_processes import diff_processes, pair_processes

#: Every section, in report order.
SECTIONS = ("processes", "files", "memory", "images", "rootfs")

#: Version of the JSON form; bumped when a key changes meaning or goes away.
JSON_VERSION = 1


@dataclass(frozen=True, slots=True)
class Side:
    """One side of the comparison: what the user named, where the images are, and how
    many error findings its images have (a diff of broken images can mislead)."""

    spec: str
    kind: str | None
    name: str
    images_dir: str
    errors: int = 0

    @classmethod
    def of(cls, checkpoint, source=None):
        """The side of ``checkpoint`` opened from ``source``
        (a :class:`~crit_plus.sources.Source`)."""
        errors = finding_count(checkpoint.findings, ERROR)
        if source is None:
            directory = checkpoint.directory
            return cls(directory, None, directory, directory, errors)
        return cls(source.spec, source.kind, source.name, source.images_label, errors)


@dataclass(frozen=True)
class DiffReport:
    """Everything ``crit-plus diff`` shows; a section not asked for is None."""

    old: Side
    new: Side
    sections: tuple
    pairing: object
    processes: object
    files: object
    memory: object
    images: object
    rootfs: object = None

    @property
    def differing(self):
        """The names of the sections that differ, in report order."""
        return tuple(name for name in self.sections if getattr(self, name).differs)

    @property
    def not_compared(self):
        """The sections asked for that could not be compared (``rootfs`` when a side
        records no root-filesystem changes), in report order."""
        return tuple(name for name in self.sections
                     if not getattr(getattr(self, name), "compared", True))

    @property
    def compared(self):
        """True when at least one section asked for was compared: when none was,
        nothing can be said identical."""
        return len(self.not_compared) < len(self.sections)

    @property
    def identical(self):
        """True when something was compared and no section asked for differs."""
        return self.compared and not self.differing


def diff_checkpoints(old, new, *, old_source=None, new_source=None, sections=SECTIONS,
                     content=True, match="auto", chunk_size=CHUNK_SIZE, progress=None):
    """Compare checkpoints ``old`` and ``new`` (:class:`~crit_plus.graph.Checkpoint` s).

    ``sections`` picks what to compare (a subset of :data:`SECTIONS`);
    ``content`` false skips page data; ``match`` is the process pairing
    (``auto``, ``pid``, ``tree``); ``progress`` is passed to
    :func:`~.diff_memory.diff_memory`.
    """
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section {unknown[0]!r}; sections are {', '.join(SECTIONS)}")
    chosen = tuple(name for name in SECTIONS if name in sections)
    pairing = None
    if set(chosen) & {"processes", "files", "memory"}:
        pairing = pair_processes(old, new, match)
    return DiffReport(
        Side.of(old, old_source), Side.of(new, new_source), chosen, pairing,
        diff_processes(pairing) if "processes" in chosen else None,
        diff_files(pairing, old, new) if "files" in chosen else None,
        diff_memory(pairing, content=content, chunk_size=chunk_size, progress=progress)
        if "memory" in chosen else None,
        diff_images(old, new, old_source, new_source) if "images" in chosen else None,
        _rootfs(old_source, new_source) if "rootfs" in chosen else None)


def _rootfs(old_source, new_source):
    from ..sources.rootfs import diff_rootfs

    return diff_rootfs(getattr(old_source, "rootfs", None), getattr(new_source, "rootfs", None))


# -- JSON -------------------------------------------------------------------------------------


def _changes(fields):
    return [{"field": change.field, "old": jsonable(change.old), "new": jsonable(change.new)}
            for change in fields]


def _pairing_json(pairing):
    return {"method": pairing.method, "reason": pairing.reason,
            "shared_pids": pairing.shared_pids, "agreeing": pairing.agreeing,
            "pairs": [{"old_pid": pair.old.pid, "new_pid": pair.new.pid, "method": pair.method}
                      for pair in pairing.pairs]}


def _processes_json(section):
    return {
        "started": jsonable(section.started),
        "exited": jsonable(section.exited),
        "changed": [{"old_pid": p.old_pid, "new_pid": p.new_pid, "comm": p.comm,
                     "method": p.method, "changes": _changes(p.changes),
                     "threads_added": list(p.threads_added), "threads_gone": list(p.threads_gone)}
                    for p in section.changed],
        "unchanged": section.unchanged,
        "not_compared": [{"old_pid": old_pid, "new_pid": new_pid, "field": item.field,
                          "reason": item.reason}
                         for old_pid, new_pid, item in section.not_compared],
    }


def _files_json(section):
    return {
        "inodes_compared": section.inodes_compared,
        "fds": [{"old_pid": c.old_pid, "new_pid": c.new_pid, "fd": c.fd, "change": c.change,
                 "old": jsonable(c.old), "new": jsonable(c.new), "fields": _changes(c.fields)}
                for c in section.fds],
        "objects": [{"kind": c.kind, "name": c.name, "change": c.change,
                     "old": jsonable(c.old), "new": jsonable(c.new),
                     "old_holders": [list(h) for h in c.old_holders],
                     "new_holders": [list(h) for h in c.new_holders],
                     "fields": _changes(c.fields)}
                    for c in section.objects],
    }


def _vma_json(row):
    return {"change": row.change, "old": jsonable(row.old), "new": jsonable(row.new),
            "fields": _changes(row.fields), "pages": jsonable(row.pages),
            "changed_ranges": [list(r) for r in row.changed_ranges],
            "more_ranges": row.more_ranges}


def _memory_json(section):
    return {
        "content": section.content, "hash": section.hash, "bytes_read": section.bytes_read,
        "file_bytes_read": section.file_bytes_read, "pages": jsonable(section.pages),
        "processes": [{"old_pid": p.old_pid, "new_pid": p.new_pid, "comm": p.comm,
                       "pages": jsonable(p.pages), "moved_complete": p.moved_complete,
                       "vma_changes": p.vma_changes, "vmas": [_vma_json(row) for row in p.vmas]}
                      for p in section.processes],
    }


def _fact_json(row):
    return {"field": row.field, "label": row.label, "old": jsonable(row.old),
            "new": jsonable(row.new), "compared": row.compared, "differs": row.differs}


def _images_json(section):
    return {"only_old": list(section.only_old), "only_new": list(section.only_new),
            "facts": [_fact_json(row) for row in section.facts],
            "stats": [_fact_json(row) for row in section.stats]}


def _rootfs_json(section):
    return {"compared": section.compared, "reason": section.reason,
            "old_problem": section.old_problem, "new_problem": section.new_problem,
            "changes": [{"path": c.path, "change": c.change, "old": jsonable(c.old),
                         "new": jsonable(c.new), "fields": list(c.fields)}
                        for c in section.changes]}


_SECTION_JSON = {"processes": _processes_json, "files": _files_json, "memory": _memory_json,
                 "images": _images_json, "rootfs": _rootfs_json}


def report_json(report):
    """The JSON form of a :class:`DiffReport` (plain dicts and lists)."""
    data = {"version": JSON_VERSION, "identical": report.identical,
            "differs": list(report.differing), "sections": list(report.sections),
            "not_compared": list(report.not_compared),
            "old": jsonable(report.old), "new": jsonable(report.new),
            "pairing": _pairing_json(report.pairing) if report.pairing is not None else None}
    for name in SECTIONS:
        section = getattr(report, name)
        data[name] = _SECTION_JSON[name](section) if section is not None else None
    return stamped("diff", data)
