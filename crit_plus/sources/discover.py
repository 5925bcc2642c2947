"""Find the checkpoints a manager keeps, or every image directory below a path.

Used by ``crit-plus list``.  A manager's data directory is enumerated by its
layout (storage pools first, then the top-level ``containers/`` and
``snapshots/`` links, each ``state/`` once); a plain directory is walked to a
bounded depth, for image directories and for checkpoint archives (Podman/CRI-O
container archives, Kubernetes pod checkpoints, checkpoint OCI images): each
file that starts like a tar is read once to name its containers
(:func:`crit_plus.sources.archive.archive_containers`), nothing extracted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import SourceError
from .layout import (
    guess_manager,
    log_dir_candidates,
    place_state_dir,
    split_dirname,
    standard_roots,
    state_dir_of,
    walk_images_dirs,
)
from .logs import find_logs
from .managed import BackupCache, lxd_source
from .resolve import parse_name, source_for_images_dir
from .runs import LogRun, read_run

#: Default depth of the walk below a directory given to ``list``.
DEFAULT_DEPTH = 10


@dataclass(frozen=True)
class Discovery:
    """The sources found, where they were searched for, and what could not be read."""

    sources: tuple
    searched: tuple
    problems: tuple = ()
    failed_dumps: tuple = ()
    archives: tuple = ()


@dataclass(frozen=True)
class ArchiveEntry:
    """A container found in an archive below a directory: what to type for it
    (``spec``: the archive, or ``ARCHIVE:NAME``), the archive and the container's
    name; ``problem`` says why the archive could not be read (spec is then the
    archive alone)."""

    spec: str
    path: Path
    name: str | None
    problem: str | None = None


@dataclass(frozen=True)
class FailedDump:
    """An instance whose last dump (stateful snapshot, stop or migration) failed: the
    newest CRIU dump log of its log directory, and what it says of its run
    (:class:`crit_plus.sources.runs.LogRun`)."""

    manager: str
    instance: str
    project: str | None
    path: Path
    run: LogRun

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"manager": self.manager, "instance": self.instance, "project": self.project,
                "log": str(self.path), "run": self.run.to_dict()}


#: The CRIU logs of a dump in a manager's log directory (LXD's FUNCTION_METHOD_TIME.log).
_DUMP_LOGS = (("*dump*.log", "criu"), ("migration_*", "criu"))


def _failed_dumps(manager, roots, instance, project) -> list:
    """:class:`FailedDump` of each instance (of ``roots``) whose newest dump log failed
    or was cut short."""
    found = []
    for root in roots:
        names: set[str] = set()
        for base in [*_subdirs(Path(root) / "storage-pools"), Path(root)]:
            names.update(path.name for path in _subdirs(base / "containers"))
        for dirname in sorted(names):
            owner_project, name = split_dirname(dirname)
            if (instance is not None and name != instance) or (
                    project is not None and owner_project != project):
                continue
            dirs = [d for d in log_dir_candidates(root, dirname) if d.is_dir()]
            runs = []
            for path in find_logs(dirs, _DUMP_LOGS):
                try:
                    run = read_run(path, None)
                except OSError:
                    continue
                if run.operation in ("dump", "pre-dump") and run.ended is not None:
                    runs.append((run.ended, str(path), path, run))
            if runs:
                _ended, _name, path, run = max(runs)
                if run.outcome in ("failed", "cut short"):
                    found.append(FailedDump(manager, name, owner_project, path, run))
    return found


def _subdirs(directory):
    try:
        return sorted(Path(entry.path) for entry in os.scandir(directory)
                      if entry.is_dir())
    except OSError:
        return []


def _owner_dirs(root):
    """Instance and snapshot directories under a data directory, pools first."""
    root = Path(root)
    bases = [pool for pool in _subdirs(root / "storage-pools")] + [root]
    for base in bases:
        yield from _subdirs(base / "containers")
        for kind in ("containers-snapshots", "snapshots"):
            for instance_dir in _subdirs(base / kind):
                yield from _subdirs(instance_dir)


def _manager_sources(manager, roots, instance, project, problems, keep_backup=True):
    seen = set()
    backups = BackupCache()  # each backup.yaml parsed once, not once per snapshot
    for root in roots:
        for owner in _owner_dirs(root):
            state = state_dir_of(owner)
            if state is None:
                continue
            real = os.path.realpath(state)
            if real in seen:
                continue
            seen.add(real)
            placement = place_state_dir(state, manager)
            if placement is None:
                continue
            if instance is not None and placement.instance != instance:
                continue
            if project is not None and placement.project != project:
                continue
            try:
                source = lxd_source(str(state), state, placement, backups)
            except (SourceError, OSError) as error:
                problems.append(f"{state}: {error}")
                continue
            yield source if keep_backup else replace(source, backup=None)


def _walk_sources(top, max_depth, problems):
    seen = set()
    for images_dir in walk_images_dirs(top, max_depth):
        real = os.path.realpath(images_dir)
        if real in seen:
            continue
        seen.add(real)
        try:
            yield source_for_images_dir(str(images_dir), images_dir)
        except (SourceError, OSError) as error:
            problems.append(f"{images_dir}: {error}")


def _walk_archive_files(top, max_depth):
    """Files that start like a tar archive and OCI image layout directories below
    ``top`` (links not followed, image directories not entered), sorted."""
    from .archive import looks_like_archive
    from .layout import is_images_dir
    from .oci import is_layout_dir

    found, pending = [], [(Path(top), 0)]
    while pending:
        directory, depth = pending.pop()
        if is_layout_dir(directory):
            found.append(directory)
            continue
        if is_images_dir(directory) or depth > max_depth:
            continue
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), depth + 1))
                elif entry.is_file(follow_symlinks=False) and looks_like_archive(entry.path):
                    found.append(Path(entry.path))
            except OSError:
                continue
    return sorted(found)


def _archive_entries(top, max_depth):
    from .archive import archive_containers

    entries = []
    for path in _walk_archive_files(top, max_depth):
        try:
            entries += [ArchiveEntry(spec, path, name)
                        for name, spec in archive_containers(path)]
        except SourceError as error:
            entries.append(ArchiveEntry(str(path), path, None, error.describe()))
        except OSError as error:
            entries.append(ArchiveEntry(str(path), path, None, f"{path}: {error}"))
    return entries


def _sort_key(source):
    taken = source.taken_at.timestamp() if source.taken_at else float("inf")
    stop_last = source.kind.endswith("-instance")  # a stateful stop is newer than its snapshots
    return (source.manager or "", source.project or "", source.instance or "", stop_last, taken,
            source.snapshot or "", str(source.images_dir))


def discover(where=None, *, lxd_dir=None, project=None, max_depth=DEFAULT_DEPTH,
             keep_backup=True):
    """Find checkpoints: under every manager (``where`` None), one manager
    (``lxd:``, ``incus:``), one instance (``lxd:NAME``) or a directory.

    Returns a :class:`Discovery`; sources are sorted by manager, project,
    instance and time.  ``lxc:`` is not enumerable (LXC checkpoints live
    wherever ``lxc-checkpoint -D`` put them): walk a directory instead.
    ``keep_backup=False`` leaves each source's parsed ``backup`` out (None; its facts stay:
    ``stateful``, ``taken_at``, ``backup_path``), so that thousands of them stay small.
    """
    problems = []
    if where is not None and os.path.isdir(where):
        sources = list(_walk_sources(Path(where), max_depth, problems))
        return Discovery(tuple(sorted(sources, key=_sort_key)), (Path(where),), tuple(problems),
                         archives=tuple(_archive_entries(where, max_depth)))
    if where is None:
        instance = None
        managers = [guess_manager(lxd_dir)] if lxd_dir is not None else ["lxd", "incus"]
    else:
        named = parse_name(where)
        if named is None:
            raise SourceError(where, "not a directory, and not lxd:, incus: or lxd:NAME")
        scheme, instance, snapshot = named
        if scheme == "lxc":
            raise SourceError(where, "LXC checkpoints have no standard place: "
                              "give the directory to search (crit-plus list DIR)")
        if snapshot:
            raise SourceError(where, "list takes an instance, not a snapshot (use lxd:NAME)")
        managers = [scheme]
    sources, searched, failed = [], [], []
    for manager in managers:
        roots = standard_roots(manager, lxd_dir)
        searched += roots
        sources += _manager_sources(manager, roots, instance, project, problems, keep_backup)
        failed += _failed_dumps(manager, roots, instance, project)
    return Discovery(tuple(sorted(sources, key=_sort_key)), tuple(searched), tuple(problems),
                     tuple(failed))
