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
from dataclasses import dataclass
from pathlib import Path

from .graph import Checkpoint
from .graph import open_checkpoint as open_images_dir
from .sources.layout import images_dir_in, rootfs_beside
from .sources.model import Source
from .sources.resolve import LogSet, resolve, resolve_logs


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
