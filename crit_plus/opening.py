"""Open what a user named — a directory, ``lxd:NAME/SNAP``, an archive — as a
checkpoint graph, with the source's context kept beside it.

Every command that reads a checkpoint goes through this module: :func:`open_source`
(resolve and open), or :func:`resolve_source` and :func:`open_graph` for a command
that needs the source before the images are opened (``validate`` reports an
unreadable checkpoint; ``version`` reads only its logs).  So every command accepts
every kind of source (see docs/sources.md), and only :mod:`crit_plus.sources` knows
where managers keep images.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .graph import Checkpoint
from .graph import open_checkpoint as open_images_dir
from .sources.errors import SourceError
from .sources.layout import images_dir_in, rootfs_beside
from .sources.model import Source
from .sources.resolve import LogSet, parse_name, resolve, resolve_logs


@dataclass(frozen=True)
class Opened:
    """A resolved source and its checkpoint graph."""

    source: Source
    checkpoint: Checkpoint


def default_root(source: Source) -> Path | None:
    """The directory standing for ``/`` of the dumped processes, when the
    manager keeps it beside the state (an LXD/Incus snapshot's ``rootfs/``)."""
    return rootfs_beside(source.images_dir) if source.manager else None


def resolve_source(spec: object, *, lxd_dir: str | None = None,
                   project: str | None = None) -> contextlib.AbstractContextManager[Source]:
    """:func:`crit_plus.sources.resolve` of what the user typed; archives are cleaned
    up when the returned context ends."""
    return resolve(str(spec), lxd_dir=lxd_dir, project=project)


def resolve_log_set(spec: object, *, lxd_dir: str | None = None,
                    project: str | None = None) -> LogSet:
    """:func:`crit_plus.sources.resolve.resolve_logs` of what the user typed (``explain``):
    the logs it leads to, checkpoint or not; archives are cleaned up when the returned
    context ends."""
    return resolve_logs(str(spec), lxd_dir=lxd_dir, project=project)


def open_graph(source: Source, *, root: str | os.PathLike[str] | None = None) -> Checkpoint:
    """The checkpoint graph of a resolved ``source``; ``root`` overrides
    :func:`default_root` for reading file-backed pages."""
    return open_images_dir(source.images_dir, root=root or default_root(source))


def input_paths(source: Source) -> list[str | os.PathLike[str]]:
    """What an output must not replace or land in, for a command reading ``source``
    (:func:`crit_plus.output.refuse_inputs`): the images directory and the
    directories of its ``parent/`` chain, a managed checkpoint's instance or
    snapshot directory, the log directories, the archive it came from."""
    from .memory import MAX_PARENT_DEPTH

    paths = [source.images_dir, *source.log_dirs, source.archive]
    if source.manager:
        paths.append(source.images_dir.parent)
    directory = os.path.realpath(source.images_dir)
    for _generation in range(MAX_PARENT_DEPTH):
        directory = os.path.realpath(os.path.join(directory, "parent"))
        if not os.path.isdir(directory) or directory in paths:
            break
        paths.append(directory)
    return [path for path in paths if path is not None]


@contextlib.contextmanager
def open_source(spec: object, *, lxd_dir: str | None = None, project: str | None = None,
                root: str | os.PathLike[str] | None = None) -> Iterator[Opened]:
    """Resolve ``spec`` and open its checkpoint; archives are cleaned up on exit.

    ``root`` overrides :func:`default_root` for reading file-backed pages.
    """
    with resolve_source(spec, lxd_dir=lxd_dir, project=project) as source:
        yield Opened(source, open_graph(source, root=root))


@dataclass(frozen=True)
class Target:
    """One checkpoint of several named on a command line: ``label`` says which to people
    and in each JSON line; ``source`` is set when a manager-wide name (``lxd:``) found it,
    ``spec`` (what the user typed) otherwise; ``problem`` says why it could not be
    enumerated at all (a state directory the manager's tree holds but that cannot be read)."""

    label: str
    spec: str | None = None  # what to resolve
    source: Source | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Targets:
    """The checkpoints several sources name, in order, and where manager-wide names
    searched (for "no checkpoints found").  Each is taken once (:meth:`take`), so that
    memory holds the checkpoints not done yet, not those done."""

    items: list[Target | None]  # None: taken (:func:`take`)
    searched: tuple[Path, ...] = ()
    several: bool = False

    def take(self, index: int) -> Target:
        """Target ``index``, no longer held here: what reading it cached (its logs) goes
        with it once it is done."""
        target, self.items[index] = self.items[index], None
        if target is None:
            raise LookupError(f"target {index} was taken already")
        return target


#: Managers whose bare name (``lxd:``) means every checkpoint they keep.
ENUMERABLE = ("lxd", "incus")


def manager_wide(spec: object) -> str | None:
    """``lxd`` or ``incus`` when ``spec`` is a bare ``lxd:``/``incus:`` (and no path of that
    name exists): every checkpoint that manager keeps; None otherwise."""
    text = os.fspath(spec)  # type: ignore[call-overload]
    if os.path.lexists(text):
        return None
    try:
        named = parse_name(text)
    except SourceError:
        return None
    if named is None or named[0] not in ENUMERABLE or named[1] is not None:
        return None
    return named[0]


def managed_name(source: Source) -> str:
    """What to type for a checkpoint a manager keeps: ``lxd:web/snap0`` (its project is
    given by ``--project``)."""
    name = f"{source.manager}:{source.instance}"
    return name + f"/{source.snapshot}" if source.snapshot else name


def target_label(source: Source) -> str:
    """How a checkpoint a manager keeps is named: ``lxd:web/snap0``, the project after."""
    name = managed_name(source)
    if source.project not in (None, "default"):
        name += f" (project {source.project})"
    return name


def expand_targets(specs: tuple[str, ...] | list[str], *, lxd_dir: str | None = None,
                   project: str | None = None) -> Targets:
    """The checkpoints ``specs`` name, in the order given: each spec is one checkpoint,
    except a bare ``lxd:``/``incus:``, which is every checkpoint that manager keeps
    (:func:`crit_plus.sources.discover`, sorted as ``crit-plus list`` shows them).
    Nothing is opened here.  ``several`` is true for more than one spec or any
    manager-wide one: the commands then give one result per checkpoint."""
    from .sources.discover import discover

    items: list[Target] = []
    searched: list[Path] = []
    wide = False
    for spec in specs:
        manager = manager_wide(spec)
        if manager is None:
            items.append(Target(str(spec), spec=str(spec)))
            continue
        wide = True
        # backup.yaml parsed is not kept (tens of KiB each; what these commands use of it is
        # kept as the source's fields: stateful, taken_at, backup_path)
        found = discover(f"{manager}:", lxd_dir=lxd_dir, project=project, keep_backup=False)
        searched += found.searched
        # each source's spec is its name, as if typed (summarize's origin says which)
        items += [Target(target_label(source), source=replace(source, spec=managed_name(source)))
                  for source in found.sources]
        for problem in found.problems:
            place, _sep, why = problem.partition(": ")
            items.append(Target(place, problem=why or problem))
    return Targets(list(items), tuple(searched), wide or len(specs) > 1)


@contextlib.contextmanager
def resolve_target(target: Target, *, lxd_dir: str | None = None,
                   project: str | None = None) -> Iterator[Source]:
    """The :class:`Source` of one :class:`Target` (an archive's extraction removed when the
    context ends); a target that could not be enumerated raises its one-line
    :class:`~crit_plus.sources.SourceError`."""
    if target.problem is not None:
        raise SourceError(target.label, target.problem)
    if target.source is not None:
        yield target.source
        return
    with resolve_source(target.spec, lxd_dir=lxd_dir, project=project) as source:
        yield source


def open_checkpoint(path: str | os.PathLike[str], *,
                    root: str | os.PathLike[str] | None = None) -> Checkpoint:
    """Open the checkpoint at ``path`` and return a :class:`~crit_plus.graph.Checkpoint`
    (the library's ``crit_plus.open_checkpoint``).

    ``path`` is a directory of CRIU images, or a directory that holds one as
    ``state/`` (LXD and Incus containers and snapshots) or ``checkpoint/``
    (an unpacked Podman/CRI-O export).  ``root`` is a directory that stands for
    ``/`` of the dumped processes, used to read clean pages of file mappings;
    for an LXD snapshot opened by its directory (not by its ``state/``), its
    ``rootfs/`` is used when ``root`` is not given.

    Raises :class:`~decoders.errors.MissingImageError` when ``path`` holds no
    checkpoint, and a :class:`~decoders.errors.DecodeError` when
    ``inventory.img`` or ``pstree.img`` cannot be decoded.
    """
    images = images_dir_in(path) if os.path.isdir(path) else None
    if images is None or os.path.samefile(images, path):
        return open_images_dir(path, root=root)
    return open_images_dir(images, root=root or rootfs_beside(images))
