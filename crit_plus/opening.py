"""Open what a user named — a directory, ``lxd:NAME/SNAP``, an archive — as a
checkpoint graph, with the source's context kept beside it.

Every command that reads a checkpoint goes through :func:`open_source`, so
every command accepts every kind of source (see docs/sources.md).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from .graph import Checkpoint, open_checkpoint
from .sources import Source, resolve


@dataclass(frozen=True)
class Opened:
    """A resolved source and its checkpoint graph."""

    source: Source
    checkpoint: Checkpoint


def default_root(source):
    """The directory standing for ``/`` of the dumped processes, when the
    manager keeps it beside the state (an LXD/Incus snapshot's ``rootfs/``)."""
    candidate = source.images_dir.parent / "rootfs"
    return candidate if source.manager and candidate.is_dir() else None


def input_paths(source):
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
def open_source(spec, *, lxd_dir=None, project=None, root=None):
    """Resolve ``spec`` and open its checkpoint; archives are cleaned up on exit.

    ``root`` overrides :func:`default_root` for reading file-backed pages.
    """
    with resolve(str(spec), lxd_dir=lxd_dir, project=project) as source:
        checkpoint = open_checkpoint(source.images_dir, root=root or default_root(source))
        yield Opened(source, checkpoint)
