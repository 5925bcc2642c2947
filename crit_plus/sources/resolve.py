"""What the user typed → a :class:`Source`.

Accepted specs, tried in this order:

1. an existing path:
   - a file that starts like a tar archive → a Podman/CRI-O checkpoint archive, a
     Kubernetes pod checkpoint or a checkpoint image tar; an OCI image layout
     directory; ``ARCHIVE:NAME`` picks container NAME of one that holds several;
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

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from decoders.lazy import LazyPattern

from .errors import SourceError
from .layout import (
    EXPORT_IMAGES_DIRS,
    images_dir_in,
    instance_candidates,
    instance_dirname,
    is_images_dir,
    log_dir_candidates,
    place_state_dir,
    snapshot_candidates,
    standard_roots,
    state_dir_of,
    walk_images_dirs,
)
from .fields import catalog_fields
from .managed import lxd_source, plain_source
from .model import Source
from .rootfs import changes_beside

#: Name schemes and the manager each one means.
SCHEMES = ("lxd", "incus", "lxc")
MANAGER_TITLES = {"lxd": "LXD", "incus": "Incus", "lxc": "LXC"}
_SCHEME = LazyPattern(r"^(lxd|incus|lxc):(.*)$")
_BAD_NAME = LazyPattern(r"(^\.|\.\.|[\x00/\\])")
#: How deep below a directory without logs ``explain`` looks for them.
LOG_SEARCH_DEPTH = 2
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
            selected = split_selector(text)
            if selected is not None:
                from .archive import open_archive  # an archive: on first use

                return open_archive(selected[0], spec=text, limits=limits, select=selected[1])
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


def split_selector(text):
    """``(archive, container)`` of ``ARCHIVE:NAME`` text whose ARCHIVE is an existing
    archive file or image layout directory, else None (a path that exists wins).  The
    first colon after which such an archive ends splits: NAME may hold colons (an image
    reference, ``localhost/app:latest``).  An empty NAME (``shop.tar:``) is kept as
    ``""``: opening it says the name is empty and lists the names."""
    from .archive import is_image, looks_like_archive  # on first use: start-up stays short

    text = os.fspath(text)
    at = text.find(":")
    while at > 0:
        head, name = text[:at], text[at + 1:]
        if os.path.lexists(head):
            path = Path(head)
            if (path.is_file() and looks_like_archive(path)) or (path.is_dir() and is_image(path)):
                return head, name
        at = text.find(":", at + 1)
    return None


def _resolve_path(text, limits):
    path = Path(text)
    if path.is_dir() and (path / "oci-layout").is_file() or path.is_file():
        from .archive import is_image, looks_like_archive, open_archive  # on first use

        if path.is_dir() and is_image(path):
            return open_archive(path, spec=text, limits=limits)
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
    if _logs_in(path):
        raise SourceError(text, "not a checkpoint: no CRIU images here, but CRIU logs (a dump "
                          f"that failed?): `crit-plus explain {text}` says why",
                          tried=[path / "inventory.img"])
    raise SourceError(text, "not a checkpoint: no CRIU images here (use `crit-plus list DIR` "
                      "to search below it)",
                      tried=[path / "inventory.img", path / "state", path / "rootfs" / "state",
                             *(path / name for name in EXPORT_IMAGES_DIRS)])


def source_for_images_dir(spec, images_dir, manager=None):
    """The :class:`Source` of an image directory, placed in an LXD/Incus layout if it is one."""
    placement = place_state_dir(images_dir, manager)
    if placement is not None:
        return lxd_source(spec, images_dir, placement)
    source = plain_source(spec, images_dir)
    rootfs = changes_beside(images_dir)  # an unpacked Podman/CRI-O archive
    return source if rootfs is None else dataclasses.replace(source, rootfs=rootfs)


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


# -- the logs of a spec, for `explain` --------------------------------------------------------


@dataclass
class LogSet:
    """The log files a spec leads to: ``logs`` are ``(path, kind, label)`` with ``kind``
    ``criu``, ``lxc`` or None (a file that is neither), ``label`` the path as users
    know it (an archive's member is named after the archive).  ``source`` is an
    archive's :class:`Source` (its temporary directory, whose files keep their
    members' modification times): use the set as a context manager.  ``fields`` are
    what the failure catalog's fixes name, as far as the spec tells
    (:func:`crit_plus.sources.fields.catalog_fields`)."""

    spec: str
    logs: tuple
    source: Source | None = None
    fields: dict = dataclasses.field(default_factory=dict)

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        if self.source is not None:
            self.source.close()


def _logs_in(directory: Path) -> list:
    """``(path, kind)`` of the logs in ``directory``: the files :data:`LOG_PATTERNS`
    name, and any other ``*.log`` file whose content is CRIU's or liblxc's (``criu
    -o NAME``)."""
    from .logs import LOG_PATTERNS, log_kind, sniff_kind

    found: list[tuple[Path, str]] = []
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return found
    for path in entries:
        if not path.is_file() or path.is_symlink():
            continue
        kind = log_kind(path.name, LOG_PATTERNS)
        if kind is None and path.name.endswith(".log"):
            try:
                kind = sniff_kind(path)
            except OSError:
                continue
            if kind is None:
                continue
        if kind is not None:
            found.append((path, kind))
    return found


def _collect(spec, directories, source=None, label=None) -> LogSet:
    seen, logs = set(), []
    for directory in directories:
        for path, kind in _logs_in(Path(directory)):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            logs.append((path, kind, label(path) if label else str(path)))
    return LogSet(spec, tuple(logs), source)


def resolve_logs(spec, *, lxd_dir=None, project=None, limits=None) -> LogSet:
    """The :class:`LogSet` of ``spec``: a log file; a directory (a state or images
    directory after a failed dump, LXD's or Incus's log directory of an instance, a
    ``criu -o`` directory; with a checkpoint's, the manager's log directories too); a
    Podman/CRI-O archive; ``lxd:NAME[/SNAP]``, ``incus:NAME[/SNAP]`` (the instance's
    log directory and its ``state/``), ``lxc:NAME``.  Raises :class:`SourceError`
    when the spec leads nowhere."""
    from .archive import is_image, looks_like_archive, open_archive
    from .logs import sniff_kind

    text = os.fspath(spec)
    selected = None if os.path.lexists(text) else split_selector(text)
    if selected is not None or (os.path.isdir(text) and is_image(text)):
        archive, name = selected or (text, None)
        source = open_archive(archive, spec=text, limits=limits, select=name)
        return _archive_logs(text, source)
    if not os.path.lexists(text):
        named = parse_name(text)
        if named is None:
            raise SourceError(text, "no such file or directory, and not a name like lxd:NAME, "
                              "incus:NAME or lxc:NAME")
        return _named_logs(text, *named, lxd_dir=lxd_dir, project=project)
    path = Path(text)
    if path.is_file():
        if looks_like_archive(path):
            return _archive_logs(text, open_archive(path, spec=text, limits=limits))
        try:
            kind = sniff_kind(path)
        except OSError as error:
            raise SourceError(text, f"cannot read it: {error.strerror or error}") from None
        return LogSet(text, ((path, kind, text),))
    if not path.is_dir():
        raise SourceError(text, "not a regular file or directory")
    dirs = [path]
    state = path if is_images_dir(path) else state_dir_of(path)
    fields: dict = {}
    if state is not None:
        source = source_for_images_dir(text, state)
        dirs += [state, *source.log_dirs]
        fields = source.catalog_fields
    found = _collect(text, dirs)
    if found.logs:
        return dataclasses.replace(found, fields=fields)
    return _collect(text, _subdirs(path, LOG_SEARCH_DEPTH))


def _archive_logs(text, source) -> LogSet:
    """The logs of an archive's container: its images directory's and the ones beside
    it (CRI-O keeps ``dump.log`` beside ``checkpoint/``), named after the archive."""
    work = Path(source.workdir.name) if source.workdir is not None else None
    dirs = list(source.log_dirs) + [source.images_dir.parent]

    def member(found):
        inside = found.relative_to(work) if work and found.is_relative_to(work) else found
        return f"{text}:{inside}"
    found = _collect(text, dirs, source, member)
    return dataclasses.replace(found, fields=source.catalog_fields)


def _subdirs(top: Path, depth: int) -> list:
    """The directories below ``top`` down to ``depth`` levels, sorted, links not followed
    (where ``explain DIR`` looks when DIR itself holds no log: a run's directory
    holding ``images/``, a directory of several runs)."""
    found, level = [], [top]
    for _ in range(depth):
        below = []
        for directory in level:
            try:
                below += sorted(p for p in directory.iterdir()
                                if p.is_dir() and not p.is_symlink())
            except OSError:
                continue
        found += below
        level = below
    return found


def _named_logs(spec, scheme, instance, snapshot, *, lxd_dir, project) -> LogSet:
    if instance is None:
        raise SourceError(spec, f"name an instance: {scheme}:NAME")
    if scheme == "lxc":
        dirs = [root / instance for root in standard_roots("lxc", lxd_dir)]
        dirs += [found for root in dirs if root.is_dir()
                 for found in walk_images_dirs(root, LXC_SEARCH_DEPTH)]
        dirs += [Path("/var/log/lxc")] if not lxd_dir else []
        logs = _collect(spec, [d for d in dirs if d.is_dir()])
        if not logs.logs:
            raise SourceError(spec, f"no logs of LXC container {instance!r}", tried=dirs)
        return logs
    dirname = instance_dirname(instance, project)
    tried, dirs = [], []
    for root in standard_roots(scheme, lxd_dir):
        owners = (snapshot_candidates(root, dirname, snapshot) if snapshot
                  else instance_candidates(root, dirname))
        candidates = list(log_dir_candidates(root, dirname))
        for owner in owners:
            candidates += [owner / "state", owner / "rootfs" / "state"]
        tried += candidates
        dirs += [candidate for candidate in candidates if candidate.is_dir()]
    if not dirs:
        raise SourceError(spec, f"no log directory nor state/ of {MANAGER_TITLES[scheme]} "
                          f"instance {instance!r}", tried=tried)
    states = [directory for directory in dirs if directory.name == "state"]
    return dataclasses.replace(_collect(spec, dirs),
                               fields=catalog_fields(scheme, instance, states))


__all__ = [
    "SCHEMES",
    "LogSet",
    "parse_name",
    "resolve",
    "resolve_logs",
    "source_for_images_dir",
    "split_selector",
]
