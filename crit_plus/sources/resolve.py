"""What the user typed → a :class:`Source`.

Accepted specs, tried in this order:

1. an existing path:
   - a file that starts like a tar archive → a Podman/CRI-O checkpoint archive;
   - a directory of CRIU images (``inventory.img``); when it is an LXD/Incus
     ``state/`` directory, its backup.yaml and logs come along;
   - an instance or snapshot directory holding ``state/`` (or LXD 2.0's
     ``rootfs/state/``);
2. a name: ``lxd:NAME``, ``lxd:NAME/SNAP``, ``incus:NAME[/SNAP]``,
   ``lxc:NAME[/DIR]``, looked up under the manager's data directories
   (:func:`crit_plus.sources.layout.standard_roots`).

Anything else raises :class:`SourceError`, naming what was tried.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .archive import ArchiveLimits, looks_like_archive, open_archive
from .errors import SourceError
from .layout import (
    EXPORT_IMAGES_DIRS,
    images_dir_in,
    instance_candidates,
    instance_dirname,
    is_images_dir,
    place_state_dir,
    snapshot_candidates,
    standard_roots,
    state_dir_of,
    walk_images_dirs,
)
from .managed import lxd_source, plain_source

#: Name schemes and the manager each one means.
SCHEMES = ("lxd", "incus", "lxc")
MANAGER_TITLES = {"lxd": "LXD", "incus": "Incus", "lxc": "LXC"}
_SCHEME = re.compile(r"^(lxd|incus|lxc):(.*)$")
_BAD_NAME = re.compile(r"(^\.|\.\.|[\x00/\\])")
#: How deep under an LXC container directory checkpoints are searched for.
LXC_SEARCH_DEPTH = 3


def parse_name(spec):
    """``(scheme, instance, snapshot)`` of ``lxd:NAME/SNAP``-style text, else None.

    ``instance`` is None for a bare ``lxd:``; ``snapshot`` None without ``/SNAP``.
    Raises :class:`SourceError` for a name that could leave the data directory.
    """
    match = _SCHEME.match(os.fspath(spec))
    if not match:
        return None
    scheme, rest = match.groups()
    if not rest:
        return scheme, None, None
    instance, _sep, snapshot = rest.partition("/")
    for part in (instance, snapshot) if snapshot else (instance,):
        if not part or _BAD_NAME.search(part):
            raise SourceError(spec, f"not a valid {MANAGER_TITLES[scheme]} name: {part!r}")
    return scheme, instance, snapshot or None


def resolve(spec, *, lxd_dir=None, project=None, limits=None):
    """Turn ``spec`` (a path or ``lxd:NAME[/SNAP]``) into a :class:`Source`.

    ``lxd_dir`` replaces the manager's standard data directories, ``project``
    selects an LXD/Incus project, ``limits`` (:class:`ArchiveLimits`) bounds what
    an archive may make crit-plus write.  An archive's source owns a temporary
    directory: use it as a context manager.  Raises :class:`SourceError`.
    """
    text = os.fspath(spec)
    try:
        if not os.path.lexists(text):
            named = parse_name(text)
            if named is not None:
                return _resolve_name(text, *named, lxd_dir=lxd_dir, project=project)
            raise SourceError(text, "no such file or directory, and not a name like lxd:NAME/SNAP, "
                              "incus:NAME/SNAP or lxc:NAME")
        return _resolve_path(text, limits)
    except PermissionError as error:
        where = error.filename or text
        raise SourceError(text, f"permission denied reading {where} (LXD and Incus keep "
                          "checkpoints readable by root only)", path=where) from None


def _resolve_path(text, limits):
    path = Path(text)
    if path.is_file():
        if looks_like_archive(path):
            return open_archive(path, spec=text, limits=limits)
        if path.suffix == ".img":
            raise SourceError(text, "one image file, not a checkpoint: give its directory "
                              "(crit-plus info and decode read single images)")
        raise SourceError(text, "not a directory of CRIU images nor a tar checkpoint archive")
    if not path.is_dir():
        raise SourceError(text, "not a regular file or directory")
    images = images_dir_in(path)
    if images is not None:
        return source_for_images_dir(text, images)
    raise SourceError(text, "not a checkpoint: no CRIU images here (use `crit-plus list DIR` "
                      "to search below it)",
                      tried=[path / "inventory.img", path / "state", path / "rootfs" / "state",
                             *(path / name for name in EXPORT_IMAGES_DIRS)])


def source_for_images_dir(spec, images_dir, manager=None):
    """The :class:`Source` of an image directory, placed in an LXD/Incus layout if it is one."""
    placement = place_state_dir(images_dir, manager)
    if placement is not None:
        return lxd_source(spec, images_dir, placement)
    return plain_source(spec, images_dir)


def _resolve_name(spec, scheme, instance, snapshot, *, lxd_dir, project):
    if instance is None:
        raise SourceError(spec, f"name an instance: {scheme}:NAME or {scheme}:NAME/SNAP "
                          f"(`crit-plus list {scheme}:` shows them)")
    if scheme == "lxc":
        return _resolve_lxc(spec, instance, snapshot, lxd_dir)
    title = MANAGER_TITLES[scheme]
    dirname = instance_dirname(instance, project)
    tried = []
    for root in standard_roots(scheme, lxd_dir):
        if snapshot:
            candidates = snapshot_candidates(root, dirname, snapshot)
        else:
            candidates = instance_candidates(root, dirname)
        for owner in candidates:
            tried.append(owner)
            if owner.is_dir():
                return _from_owner(spec, owner, scheme, title, instance, snapshot)
    what = f"no snapshot {snapshot!r} of {title} instance {instance!r}" if snapshot else \
        f"no {title} instance {instance!r}"
    if project not in (None, "default"):
        what += f" in project {project!r}"
    raise SourceError(spec, what, tried=tried)


def _from_owner(spec, owner, scheme, title, instance, snapshot):
    state = state_dir_of(owner)
    if state is None:
        if snapshot:
            reason = f"snapshot {snapshot!r} of {title} instance {instance!r} has no state/ " \
                     "(it was not taken with --stateful)"
        else:
            reason = f"{title} instance {instance!r} has no state/ (it was not stopped with " \
                     f"--stateful; its stateful snapshots are listed by `crit-plus list " \
                     f"{scheme}:{instance}`)"
        raise SourceError(spec, reason, tried=[owner / "state", owner / "rootfs" / "state"])
    return source_for_images_dir(spec, state, manager=scheme)


def _resolve_lxc(spec, name, subdir, lxc_dir):
    tried = []
    for root in standard_roots("lxc", lxc_dir):
        container = root / name
        tried.append(container)
        if not container.is_dir():
            continue
        if subdir:
            images = container / subdir
            if not is_images_dir(images):
                raise SourceError(spec, "no CRIU images there", tried=[images])
            return plain_source(spec, images, lxc_name=name)
        found = list(walk_images_dirs(container, LXC_SEARCH_DEPTH))
        if len(found) == 1:
            return plain_source(spec, found[0], lxc_name=name)
        if not found:
            raise SourceError(spec, f"no checkpoint under LXC container {name!r} "
                              "(lxc-checkpoint -D writes where it is told: give that directory)",
                              tried=[container])
        choices = ", ".join(f"lxc:{name}/{p.relative_to(container)}" for p in found)
        raise SourceError(spec, f"LXC container {name!r} holds several checkpoints; pick one: "
                          f"{choices}")
    raise SourceError(spec, f"no LXC container {name!r}", tried=tried)


__all__ = ["ArchiveLimits", "SCHEMES", "parse_name", "resolve", "source_for_images_dir"]
