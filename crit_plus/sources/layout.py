"""Where LXD, Incus and LXC keep instances and their checkpoint state.

LXD ≥ 2.9 and Incus (``ROOT`` is ``/var/lib/lxd``, ``/var/snap/lxd/common/lxd``
or ``/var/lib/incus``)::

    ROOT/storage-pools/POOL/containers/DIR/{backup.yaml, state/}             stateful stop
    ROOT/storage-pools/POOL/containers-snapshots/DIR/SNAP/{backup.yaml, state/}
    ROOT/containers/DIR  ->  storage-pools/POOL/containers/DIR               (symlink)
    ROOT/snapshots/DIR   ->  storage-pools/POOL/containers-snapshots/DIR     (symlink)

``DIR`` is ``NAME`` in the default project and ``PROJECT_NAME`` in others.
LXD 2.0 kept state in ``ROOT/containers/NAME/rootfs/state`` and snapshots in
``ROOT/snapshots/NAME/SNAP``.  Logs: ``/var/log/lxd/DIR/`` (the snap:
``ROOT/logs/DIR/``; Incus: ``/var/log/incus/DIR/``).  LXC keeps containers in
``/var/lib/lxc/NAME/`` (``config`` and ``rootfs/``); its checkpoints go
wherever ``lxc-checkpoint -D`` was pointed.

Nothing here opens a file for writing; paths are handled as given (symlinks are
followed by the file system, never resolved away), so a storage pool mounted
elsewhere still shows the layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Environment variable: a prefix put before every standard root and log path.
ROOT_ENV = "CRIT_PLUS_ROOT"
#: The managers' own variables for a non-standard data directory.
MANAGER_DIR_ENV = {"lxd": "LXD_DIR", "incus": "INCUS_DIR"}
#: Standard data directories, relative to the (fake) root, searched in this order.
STANDARD_ROOTS = {
    "lxd": ("var/lib/lxd", "var/snap/lxd/common/lxd"),
    "incus": ("var/lib/incus",),
    "lxc": ("var/lib/lxc",),
}
#: Files whose presence makes a directory a CRIU image directory.
IMAGE_MARKERS = ("inventory.img", "pstree.img")
DEFAULT_PROJECT = "default"


def fake_root():
    """The root the standard paths hang from: ``$CRIT_PLUS_ROOT`` or ``/``."""
    return Path(os.environ.get(ROOT_ENV) or "/")


def _chosen_dir(path, given_by):
    """``path`` (a data directory the user named with ``given_by``) as a Path; a
    :class:`~crit_plus.sources.errors.SourceError` naming both when it is not a directory."""
    if not os.path.isdir(path):
        from .errors import SourceError

        raise SourceError(str(path), f"{given_by}: no such directory")
    return Path(path)


def standard_roots(manager, lxd_dir=None, root=None):
    """Data directories to search for ``manager``, in order.

    ``lxd_dir`` wins; then ``$LXD_DIR`` / ``$INCUS_DIR``; then the standard
    directories under ``root`` (default: :func:`fake_root`).  Raises
    :class:`~crit_plus.sources.errors.SourceError` when ``lxd_dir`` (``--lxd-dir``) or the
    environment variable (``$LXD_DIR``, ``$INCUS_DIR``), a directory the user chose, is not a
    directory: a mistyped one is not "nothing there".
    """
    if lxd_dir is not None:
        return [_chosen_dir(lxd_dir, "--lxd-dir")]
    variable = MANAGER_DIR_ENV.get(manager)
    if variable and os.environ.get(variable):
        return [_chosen_dir(os.environ[variable], f"${variable}")]
    root = fake_root() if root is None else Path(root)
    return [root / relative for relative in STANDARD_ROOTS[manager]]


def log_dir_candidates(root, dirname):
    """Where a manager whose data directory is ``root`` keeps the logs of instance
    directory ``dirname``: ``PREFIX/var/log/NAME/DIR`` for ``PREFIX/var/lib/NAME``,
    then ``root/logs/DIR`` (the snap, custom data directories)."""
    root = Path(root)
    candidates = [root / "logs" / dirname]
    if len(root.parts) >= 3 and root.parts[-3:-1] == ("var", "lib"):
        prefix = root.parents[2]
        candidates.insert(0, prefix / "var" / "log" / root.name / dirname)
    return candidates


def is_images_dir(path):
    """True if ``path`` is a directory holding CRIU images (``inventory.img`` or ``pstree.img``)."""
    path = Path(path)
    return any((path / marker).is_file() for marker in IMAGE_MARKERS)


def checkpoint_of(image):
    """The checkpoint the image file ``image`` is in, as an output must not land in it:
    the LXD/Incus instance or snapshot directory holding its ``state/`` (beside
    ``backup.yaml``, as ``input_paths`` guards a managed source), else its directory of
    CRIU images; None for an image on its own (no ``inventory.img`` or ``pstree.img``
    beside it)."""
    directory = Path(os.path.abspath(image)).parent
    if not is_images_dir(directory):
        return None
    owner = directory.parent
    return owner if (owner / "backup.yaml").is_file() else directory


def state_dir_of(owner):
    """The image directory of an instance or snapshot directory, or None.

    ``owner/state`` (LXD ≥ 2.9, Incus), else ``owner/rootfs/state`` (LXD 2.0).
    """
    for candidate in (Path(owner) / "state", Path(owner) / "rootfs" / "state"):
        if is_images_dir(candidate):
            return candidate
    return None


#: Sub-directories that hold a checkpoint's images inside the directory a user named,
#: besides a manager's ``state/`` (:func:`state_dir_of`): an unpacked Podman/CRI-O export.
EXPORT_IMAGES_DIRS = ("checkpoint",)


def images_dir_in(path):
    """The image directory ``path`` is or holds, or None: ``path`` itself, an
    instance's or snapshot's ``state/`` (:func:`state_dir_of`), or an unpacked
    Podman/CRI-O export's ``checkpoint/``."""
    path = Path(path)
    if is_images_dir(path):
        return path
    state = state_dir_of(path)
    if state is not None:
        return state
    for name in EXPORT_IMAGES_DIRS:
        if is_images_dir(path / name):
            return path / name
    return None


def rootfs_beside(images_dir):
    """The directory standing for ``/`` of the dumped processes that LXD and Incus keep
    beside an instance's or snapshot's ``state/`` (its ``rootfs/``), or None."""
    images_dir = Path(images_dir)
    candidate = images_dir.parent / "rootfs"
    return candidate if images_dir.name == "state" and candidate.is_dir() else None


def instance_dirname(name, project=None):
    """The directory name LXD gives instance ``name`` of ``project``."""
    if project in (None, "", DEFAULT_PROJECT):
        return name
    return f"{project}_{name}"


def split_dirname(dirname):
    """``(project, name)`` of an instance directory name (names cannot hold ``_``)."""
    project, sep, name = dirname.partition("_")
    return (project, name) if sep and name else (DEFAULT_PROJECT, dirname)


def _pool_dirs(root, kind):
    pools = Path(root) / "storage-pools"
    try:
        names = sorted(entry.name for entry in os.scandir(pools))
    except OSError:
        return [pools / "*" / kind]
    return [pools / name / kind for name in names]


def instance_candidates(root, dirname):
    """Paths where instance directory ``dirname`` may be under ``root``, in order."""
    return [Path(root) / "containers" / dirname] + [
        base / dirname for base in _pool_dirs(root, "containers")]


def snapshot_candidates(root, dirname, snapshot):
    """Paths where snapshot ``snapshot`` of ``dirname`` may be under ``root``, in order."""
    return [Path(root) / "snapshots" / dirname / snapshot,
            Path(root) / "containers-snapshots" / dirname / snapshot] + [
        base / dirname / snapshot for base in _pool_dirs(root, "containers-snapshots")]


def guess_manager(root):
    """``lxd`` or ``incus`` from a data directory's path (``lxd`` when it does not say)."""
    parts = [part.lower() for part in Path(root).parts]
    for part in reversed(parts):
        if part in ("lxd", "incus"):
            return part
    return "lxd"


@dataclass(frozen=True)
class Placement:
    """Where a checkpoint's ``state/`` sits in a manager's layout.

    ``role`` is ``instance`` or ``snapshot``; ``owner`` the instance or
    snapshot directory (holding backup.yaml); ``base`` the directory holding
    ``containers/`` or ``containers-snapshots/`` (a pool, or the root); ``root``
    the manager's data directory; ``dirname`` the instance directory name.
    """

    manager: str
    role: str
    owner: Path
    base: Path
    root: Path
    dirname: str
    snapshot: str | None

    @property
    def project(self):
        """The LXD project (``default`` unless the directory name says otherwise)."""
        return split_dirname(self.dirname)[0]

    @property
    def instance(self):
        """The instance name, without the project prefix."""
        return split_dirname(self.dirname)[1]

    def instance_dirs(self):
        """Where the owning instance's directory may be (for its backup.yaml)."""
        return [self.base / "containers" / self.dirname, self.root / "containers" / self.dirname]

    def log_dirs(self):
        """The manager's log directories for this instance, those that exist."""
        return tuple(path for path in log_dir_candidates(self.root, self.dirname)
                     if path.is_dir())


def place_state_dir(state_dir, manager=None):
    """The :class:`Placement` of an image directory in an LXD/Incus layout, or None.

    Recognised from the path alone: ``.../containers/DIR/state``,
    ``.../containers/DIR/rootfs/state``, ``.../containers-snapshots/DIR/SNAP/state``
    and ``.../snapshots/DIR/SNAP/state``; a directory that only has
    ``backup.yaml`` beside it is placed as an instance named after its parent.
    """
    state_dir = Path(os.path.abspath(state_dir))
    if state_dir.name != "state":
        return None
    owner = state_dir.parent
    if owner.name == "rootfs" and owner.parent.parent.name == "containers":
        owner = owner.parent
    parent = owner.parent
    if parent.name == "containers":
        role, base, dirname, snapshot = "instance", parent.parent, owner.name, None
    elif parent.parent.name in ("containers-snapshots", "snapshots"):
        role, base, dirname, snapshot = "snapshot", parent.parent.parent, parent.name, owner.name
    elif (owner / "backup.yaml").is_file():
        role, base, dirname, snapshot = "instance", parent, owner.name, None
    else:
        return None
    root = base.parent.parent if base.parent.name == "storage-pools" else base
    return Placement(manager or guess_manager(root), role, owner, base, root, dirname, snapshot)


def lxc_container_of(images_dir, levels=3):
    """The LXC container directory (``config`` file and ``rootfs/``) at or above
    ``images_dir`` within ``levels`` levels, or None."""
    current = Path(os.path.abspath(images_dir))
    for _ in range(levels + 1):
        if (current / "config").is_file() and (current / "rootfs").is_dir():
            return current
        if current.parent == current:
            break
        current = current.parent
    return None


def walk_images_dirs(top, max_depth):
    """Yield image directories under ``top`` (itself included), at most ``max_depth`` deep.

    Symbolic links are not followed; inside a ``rootfs`` only ``state`` is
    entered (LXD 2.0), and an image directory is not searched further.
    Unreadable directories are skipped.
    """
    top = Path(top)
    pending = [(top, 0)]
    while pending:
        directory, depth = pending.pop()
        if is_images_dir(directory):
            yield directory
            continue
        if depth >= max_depth:
            continue
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name, reverse=True)
        except OSError:
            continue
        in_rootfs = directory.name == "rootfs"
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
            except OSError:
                continue
            if in_rootfs and entry.name != "state":
                continue
            pending.append((Path(entry.path), depth + 1))
