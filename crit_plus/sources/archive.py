"""Checkpoint archives, read without unpacking them whole: Podman/CRI-O container
archives, Kubernetes pod checkpoints (:mod:`.pod`) and the layer of a checkpoint
OCI image (:mod:`.oci`).

``podman container checkpoint --export`` (and the kubelet's CRI-O checkpoint)
writes one tar archive, optionally gzip- or zstd-compressed::

    ARCHIVE ::= { MEMBER }
    checkpoint/          CRIU's images (what crit-plus reads)
    pre-checkpoint/      images of a pre-dump, when taken with --with-previous
    config.dump          the container's configuration (JSON)
    spec.dump            its OCI runtime spec (JSON)
    network.status       its network set-up (JSON)
    stats-dump           CRIU's dump statistics (a CRIU image)
    deleted.files        paths deleted from the root file system (JSON list)
    rootfs-diff.tar      changes to the root file system (a tar; only its headers are
                         read, :mod:`.rootfs`)
    dump.log             CRIU's log (CRI-O; Podman keeps it in checkpoint/)

A pod checkpoint holds ``pod.options``, ``pod.dump`` and one such set of files per
container, in a directory ``CONTAINERID-NAME/``.

A container archive is read once, as a stream; a pod checkpoint twice (the first
pass learns its containers, writing nothing; the second extracts the one chosen).
Only the image directories and the small metadata files above are written, into a
private temporary directory (mode 0700) that :meth:`Source.close` removes.
Everything else is skipped.

Safety: the whole archive is refused, with a one-line :class:`ArchiveError`
naming the member, if any member has an absolute path or a ``..`` component,
is a symbolic or hard link (one exception: ``checkpoint/parent`` pointing at
``../pre-checkpoint``, which CRIU itself creates for pre-dumps; crit-plus
recreates that link itself), a device node, a FIFO or another special file,
appears twice, has a path more than :data:`~.tarsafe.MAX_DEPTH` components deep, or if
the bytes or members to extract exceed :class:`ArchiveLimits`.  Files are
created with ``O_EXCL | O_NOFOLLOW`` under the temporary directory only.

Tar headers are bounded before :mod:`tarfile` reads them (:mod:`.tarsafe`):
a pax extended header or GNU long-name header over :data:`~.tarsafe.MAX_HEADER` bytes,
more than :data:`~.tarsafe.MAX_HEADER_CHAIN` of them in a row, and GNU or pax sparse
members (whose maps tarfile would read without bound) refuse the archive,
naming the header's offset in the tar stream.  Any other failure while
extracting (out of memory included) is an :class:`ArchiveError` naming the
archive, and the temporary directory is removed on every error path (and on
SIGTERM: :mod:`crit_plus.cli` turns it into an exception that unwinds).
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from crit_plus.findings import INFO, WARNING, Finding
from decoders.errors import DecodeError
from decoders.framing import open_untrusted
from decoders.inventory import read_dump_stats
from decoders.lazy import LazyPattern

from .errors import ArchiveError
from .layout import is_images_dir
from .tarsafe import (
    COMPRESSED_MAGICS,
    PARENT_LINK,
    bounded_tarinfo,
    check_type,
    clean_name,
    open_tar,
)
from .logs import read_header
from .model import Source, parse_timestamp

GiB = 1 << 30
MiB = 1 << 20
#: Environment variable overriding :attr:`ArchiveLimits.max_total` (``16G``, ``500M``, bytes).
LIMIT_ENV = "CRIT_PLUS_ARCHIVE_LIMIT"
#: Directories of images that are extracted.
IMAGE_DIRS = ("checkpoint", "pre-checkpoint")
#: Metadata files that are extracted, and how they are read.
METADATA_FILES = {
    "config.dump": "json", "spec.dump": "json", "network.status": "json",
    "deleted.files": "json", "bind.mounts": "json", "stats-dump": "criu", "dump.log": "log",
}
#: Most container directories a pod checkpoint may hold.
MAX_CONTAINERS = 1000
#: Members whose size is reported but which are never extracted.
SIZE_ONLY = ("rootfs-diff.tar", "devshm-checkpoint.tar")

_CHUNK = 1 << 20
_SIZE = LazyPattern(r"^\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text):
    """Bytes from ``16G``, ``512M``, ``64KiB`` or a plain number; ValueError otherwise."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 16G, 512M or a number of bytes)")
    number, unit = match.groups()
    return int(number) << (10 * " kmgt".index(unit.lower() or " "))


@dataclass(frozen=True)
class ArchiveLimits:
    """How much an archive may make crit-plus write.

    ``max_total``: bytes extracted in all (default 16 GiB, or
    ``$CRIT_PLUS_ARCHIVE_LIMIT``); ``max_member``: bytes of one extracted
    member (default: ``max_total``); ``max_metadata``: bytes of one metadata
    file, which is read into memory (64 MiB); ``max_members``: files and
    directories extracted (100,000); ``max_ratio``: past ``ratio_floor`` bytes
    (1 GiB), at most this many bytes extracted per byte of the archive file
    (100; None: no ratio check, which is what ``$CRIT_PLUS_ARCHIVE_LIMIT``
    gives: the user has said how much the archive may write).
    """

    max_total: int = 16 * GiB
    max_member: int | None = None
    max_metadata: int = 64 * MiB
    max_members: int = 100_000
    max_ratio: int | None = 100
    ratio_floor: int = 1 * GiB

    @classmethod
    def from_env(cls):
        """Defaults; ``$CRIT_PLUS_ARCHIVE_LIMIT``, when set, is ``max_total`` and turns
        the ratio check off."""
        value = os.environ.get(LIMIT_ENV)
        if not value:
            return cls()
        try:
            return cls(max_total=parse_size(value), max_ratio=None)
        except ValueError as error:
            raise ArchiveError(LIMIT_ENV, str(error)) from None

    def total_limit(self, archive_size):
        """Bytes an archive file of ``archive_size`` bytes may extract (None: not a
        regular file, whose size says nothing)."""
        if self.max_ratio is None or archive_size is None:
            return self.max_total
        return min(self.max_total, max(self.ratio_floor, self.max_ratio * archive_size))

    @property
    def member_limit(self):
        """The effective per-member limit."""
        return self.max_total if self.max_member is None else min(self.max_member, self.max_total)


def looks_like_archive(path):
    """True if ``path`` is a regular file that starts like a (compressed) tar archive (a
    FIFO or a device is not opened)."""
    try:
        with open(open_untrusted(path)[0], "rb") as stream:
            head = stream.read(512)
    except OSError:
        return False
    if head.startswith(COMPRESSED_MAGICS):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


@dataclass
class _Extraction:
    """What one pass over the archive found.

    Names in ``extracted`` and ``sizes`` are relative to ``prefix`` (the container's
    directory of a pod checkpoint, else empty).  A ``survey`` pass (the first)
    also notes what the archive is: layout markers of an image tar, ``pod.options``
    and ``pod.dump``, the top-level directories holding a ``checkpoint/`` and their
    ``config.dump``; ``rootfs`` maps a prefix to its ``rootfs-diff.tar`` listing.
    """

    prefix: str = ""
    survey: bool = True
    write: bool = True
    extracted: dict = field(default_factory=dict)  # member name -> size
    sizes: dict = field(default_factory=dict)      # SIZE_ONLY name -> size
    skipped: int = 0
    total: int = 0
    directories: int = 0                           # directory members made
    total_limit: int = 0                           # ArchiveLimits.total_limit of this archive
    offset: int | None = None                      # where the member being read starts
    parent_link: bool = False
    images_mtime: float | None = None
    image_dir_seen: bool = False                   # PREFIX/checkpoint/ is in the archive
    image_files: int = 0                           # regular files below it
    markers: set = field(default_factory=set)      # top-level image-layout files
    pod_files: dict = field(default_factory=dict)  # pod.options / pod.dump -> bytes
    container_dirs: set = field(default_factory=set)
    container_images: set = field(default_factory=set)  # container_dirs with a CRIU image
    configs: dict = field(default_factory=dict)    # directory ("" top) -> config.dump bytes
    rootfs: dict = field(default_factory=dict)     # prefix -> list_rootfs_tar answer
    archive_label: str = ""                        # the archive, in messages
    kept: int = 0                                  # bytes of survey files kept in memory


def _wanted(name):
    top = name.split("/", 1)[0]
    if top in IMAGE_DIRS:
        return "image"
    if name in METADATA_FILES:
        return "metadata"
    return None


def _target(dest, name, archive, member):
    """The path for ``name`` under ``dest``, checked again after resolving links."""
    target = Path(dest, *name.split("/"))
    real_dest = os.path.realpath(dest)
    if os.path.commonpath([real_dest, os.path.realpath(target)]) != real_dest:
        raise ArchiveError(archive, "refused: it would be written outside the extraction directory",
                           member=member.name)
    return target


def _write_member(tar, member, target, archive):
    os.makedirs(target.parent, mode=0o700, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | \
        getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(target, flags, 0o600)
    except FileExistsError:
        raise ArchiveError(archive, "refused: it appears twice", member=member.name) from None
    source = tar.extractfile(member)
    with os.fdopen(descriptor, "wb") as out:
        while True:
            block = source.read(_CHUNK)
            if not block:
                break
            out.write(block)
        out.flush()
        _keep_mtime(out.fileno(), member.mtime)


def _keep_mtime(descriptor, mtime):
    """Give an extracted file its member's modification time: a log's time is when its
    run ended (:func:`crit_plus.sources.times.mtime_of`), not when it was unpacked.  A time
    the system cannot set (out of range) leaves the file's own."""
    try:
        os.utime(descriptor, (mtime, mtime))
    except (OverflowError, OSError, ValueError, TypeError):
        pass


def _file_stream(path):
    """``(opener, size)`` of an archive file: size None when it is not a regular file."""
    info = os.stat(path)
    size = info.st_size if stat.S_ISREG(info.st_mode) else None
    return (lambda: open(path, "rb")), size


def _extract(opener, archive, dest, limits, found, size=None):
    """Stream the archive once (``opener()`` gives its bytes), extracting what
    crit-plus reads of ``found.prefix`` into ``dest`` and noting what ``found``
    asks for."""
    import tarfile

    try:
        found.total_limit = limits.total_limit(size)
        with opener() as raw, open_tar(raw, archive) as tar:
            for member in tar:
                found.offset = member.offset
                _take(tar, member, dest, limits, found, archive)
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        detail = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise ArchiveError(archive, f"cannot read the archive{_at(found)}: {detail}") from None
    except (MemoryError, RecursionError) as error:
        reason = "out of memory" if isinstance(error, MemoryError) else "nested too deep"
        raise ArchiveError(archive, f"cannot read the archive{_at(found)}: {reason}") from None
    except Exception as error:  # zstandard.ZstdError has no common base with the above
        if type(error).__module__.startswith("zstandard"):
            raise ArchiveError(archive, f"cannot decompress the archive: {error}") from None
        raise
    return found


def _at(found):
    """Where in the tar stream extraction was, for an error message."""
    return "" if found.offset is None else f" (member at offset {found.offset:#x})"


def _small(tar, member, limits, found):
    """The bytes of a small regular member; None past ``max_metadata`` bytes kept in all
    (the survey keeps several: one per container directory)."""
    if not member.isreg() or found.kept + member.size > limits.max_metadata:
        return None
    found.kept += member.size
    return tar.extractfile(member).read()


def _survey(tar, member, name, limits, found):
    """Note what the archive is, from a member outside the extracted directory."""
    from .oci import LAYOUT_MARKERS

    parts = name.split("/")
    if len(parts) == 1 and name in LAYOUT_MARKERS:
        found.markers.add(name)
    elif len(parts) == 1 and name in ("pod.options", "pod.dump"):
        found.pod_files[name] = _small(tar, member, limits, found)
    elif len(parts) >= 2 and parts[1] == "checkpoint" and parts[0] not in found.container_dirs:
        if len(found.container_dirs) >= MAX_CONTAINERS:
            raise ArchiveError(found.archive_label, f"refused: more than {MAX_CONTAINERS} "
                               "container directories", member=member.name)
        found.container_dirs.add(parts[0])
    if len(parts) >= 3 and parts[1] == "checkpoint" and parts[-1].endswith(".img") \
            and member.isreg():
        found.container_images.add(parts[0])
    if parts[-1] == "config.dump" and (len(parts) == 2 or (len(parts) == 1 and not found.write)):
        found.configs["" if len(parts) == 1 else parts[0]] = _small(tar, member, limits, found)
    if parts[-1] == "rootfs-diff.tar" and len(parts) == 2 and member.isreg():
        found.rootfs[parts[0] + "/"] = _listing(tar, member, found)


def _listing(tar, member, found):
    """``rootfs-diff.tar``'s listing; the entries kept are bounded over the whole archive."""
    from .rootfs import MAX_ENTRIES, list_rootfs_tar

    kept = sum(len(listing[0]) for listing in found.rootfs.values())
    return list_rootfs_tar(tar.extractfile(member), found.archive_label, MAX_ENTRIES - kept)


def _written_here(name, found):
    """True if a member named ``name`` is one this pass would extract (an image or
    metadata file of the container at ``found.prefix``)."""
    return name.startswith(found.prefix) and _wanted(name[len(found.prefix):]) is not None


def _take(tar, member, dest, limits, found, archive):
    name = clean_name(member, archive)
    if not (member.isreg() or member.isdir()) and not _written_here(name, found):
        found.skipped += 1  # a link or special file crit-plus never writes nor reads
        return
    is_parent_link = check_type(member, name, archive)
    if not name:
        return
    found.archive_label = archive
    if found.survey:
        _survey(tar, member, name, limits, found)
    prefix = found.prefix
    if not name.startswith(prefix):
        found.skipped += 1
        return
    rel = name[len(prefix):]
    if rel == "checkpoint":
        found.image_dir_seen = True
    if rel in SIZE_ONLY and member.isreg():
        found.sizes[rel] = member.size
        if rel == "rootfs-diff.tar" and prefix not in found.rootfs:
            found.rootfs[prefix] = _listing(tar, member, found)
        return
    role = _wanted(rel)
    if role is None:
        found.skipped += 1
        return
    if role == "image" and member.isreg() and rel.startswith("checkpoint/"):
        found.image_files += 1
    if not found.write:
        return
    if is_parent_link:
        found.parent_link = rel == PARENT_LINK[0]
        return
    if len(found.extracted) + found.directories >= limits.max_members:
        raise ArchiveError(archive, f"refused: more than {limits.max_members} members to extract",
                           member=member.name)
    target = _target(dest, name, archive, member)
    if member.isdir():
        if target.exists() and not target.is_dir():
            raise ArchiveError(archive, "refused: it appears twice", member=member.name)
        os.makedirs(target, mode=0o700, exist_ok=True)
        found.directories += 1
        return
    limit = limits.max_metadata if role == "metadata" else limits.member_limit
    if member.size > limit:
        raise ArchiveError(archive, f"refused: {member.size} bytes, over the limit of {limit}",
                           member=member.name)
    if found.total + member.size > found.total_limit:
        ratio = "" if found.total_limit == limits.max_total else \
            f" ({limits.max_ratio} times the archive's size)"
        raise ArchiveError(archive, f"refused: extracting it would exceed the total limit of "
                           f"{found.total_limit} bytes{ratio} (set {LIMIT_ENV} to raise it)",
                           member=member.name)
    _write_member(tar, member, target, archive)
    found.total += member.size
    found.extracted[rel] = member.size
    if rel == "checkpoint/inventory.img":
        found.images_mtime = member.mtime


_SURROGATE = LazyPattern("[\ud800-\udfff]")


def _without_surrogates(value):
    """``value`` (parsed JSON) with lone surrogates (``"\\ud800"``, which no UTF-8
    output can hold) replaced by U+FFFD."""
    text = json.dumps(value, ensure_ascii=False)
    fixed = _SURROGATE.sub("\ufffd", text)
    return value if fixed == text else json.loads(fixed)


def _read_metadata(dest, found, findings):
    """Parse the extracted metadata files into a JSON-ready dict."""
    metadata = {"rootfs_diff_size": found.sizes.get("rootfs-diff.tar"),
                "devshm_size": found.sizes.get("devshm-checkpoint.tar"),
                "pre_checkpoint": any(n.startswith("pre-checkpoint/") for n in found.extracted),
                "extracted_bytes": found.total, "skipped_members": found.skipped}
    for name, how in METADATA_FILES.items():
        if how == "log":
            continue  # read for the CRIU version and kernel, not kept
        key = name.replace(".", "_").replace("-", "_")
        path = Path(dest, name)
        if name not in found.extracted:
            metadata[key] = None
            continue
        if how == "json":
            try:
                metadata[key] = _without_surrogates(json.loads(path.read_bytes()))
            except (ValueError, OSError, RecursionError) as error:  # RecursionError: [[[[...
                metadata[key] = None
                findings.append(Finding(WARNING, "bad-metadata",
                                        f"cannot be read as JSON: {error}", name))
        elif how == "criu":
            try:
                metadata[key] = dict(read_dump_stats(path).fields)
            except DecodeError as error:
                metadata[key] = None
                findings.append(Finding(WARNING, "bad-metadata", error.reason, name))
    return metadata


@dataclass
class _Opened:
    """What the passes over one archive stream found, for :func:`_source`."""

    kind: str
    base: Path                 # the container's directory in the extraction directory
    found: _Extraction
    container: str | None = None
    extra: dict = field(default_factory=dict)  # metadata: pod, image


def _plain_tar_markers(path):
    """The image-layout files at the top of an uncompressed tar (headers only, seeking
    past the data; empty for anything else)."""
    import tarfile

    from .oci import LAYOUT_MARKERS

    if not looks_like_archive(path):
        return set()
    names = set()
    with open(open_untrusted(path)[0], "rb") as raw:
        if raw.peek(512)[:512].startswith(COMPRESSED_MAGICS):
            return set()
        try:
            with tarfile.open(fileobj=raw, mode="r:", tarinfo=bounded_tarinfo(path)) as tar:
                for member in tar:
                    names.add(member.name.removeprefix("./").rstrip("/"))
                    if len(names) >= ArchiveLimits.max_members:
                        break
        except (tarfile.TarError, OSError, EOFError, ValueError, ArchiveError):
            return set()
    if "checkpoint" in names or "pod.options" in names:
        return set()
    return names & set(LAYOUT_MARKERS)


def is_image(path):
    """True when ``path`` is a checkpoint image's OCI layout directory or image tar."""
    from .oci import is_layout_dir

    path = Path(path)
    return is_layout_dir(path) if path.is_dir() else bool(_plain_tar_markers(path))


def _no_images(label, base, found, where):
    """The one-line error of an archive without CRIU images in ``where``."""
    images = base / "checkpoint"
    if found.image_dir_seen and images.is_dir() and not any(images.iterdir()):
        return ArchiveError(label, f"{where}checkpoint/ is empty: CRIU wrote its images "
                            "elsewhere (an images-dir set in /etc/criu/runc.conf overrides the "
                            "directory runc gives it), so the archive holds no checkpoint")
    return ArchiveError(label, f"no {where}checkpoint/ directory with CRIU images "
                        "(inventory.img) — not a Podman, CRI-O or containerd checkpoint")


def _pod_choice(label, names_label, found, select):
    """``(container name, directory, pod facts)`` of a pod archive's pass-1 findings."""
    from .pod import choose, parse_json, pod_containers, pod_facts

    options = parse_json(found.pod_files.get("pod.options"))
    configs = {d: parse_json(data) for d, data in found.configs.items() if d}
    containers = pod_containers(options, found.container_dirs, configs)
    if not containers:
        raise ArchiveError(label, "a pod checkpoint (pod.options) without a container "
                           "directory holding checkpoint/")
    name = choose(names_label, list(containers), select)
    facts = pod_facts(options, parse_json(found.pod_files.get("pod.dump")))
    facts["containers"] = containers
    return name, containers[name], facts


def _open_stream(opener, size, label, dest, limits, select, names_label=None):
    """Read one archive stream (a file, or an image's layer): a container archive in
    one pass, a pod archive in two (the second extracts the chosen container).
    ``names_label`` is what the names to choose from are pasted after (``label``)."""
    names_label = names_label or label
    found = _extract(opener, label, dest, limits, _Extraction(), size)
    if found.extracted or found.image_dir_seen or not (found.pod_files or found.container_dirs):
        base = Path(dest)
        config = _config_name(base / "config.dump") if "config.dump" in found.extracted else None
        name = config if isinstance(config, str) and config else None
        if select is not None and select != name:
            from .pod import choose

            choose(names_label, [name] if name else [], select)
        if not is_images_dir(base / "checkpoint"):
            if found.markers:
                raise ArchiveError(label, "an image archive that is compressed: decompress it "
                                   "first (crit-plus reads an image tar in place)")
            raise _no_images(label, base, found, "")
        return _Opened("podman-archive", base, found, name)
    name, directory, facts = _pod_choice(label, names_label, found, select)
    second = _Extraction(prefix=directory + "/", survey=False, rootfs=found.rootfs)
    second = _extract(opener, label, dest, limits, second, size)
    base = Path(dest, directory)
    if not is_images_dir(base / "checkpoint"):
        raise _no_images(label, base, second, f"{directory}/")
    return _Opened("pod-archive", base, second, name, {"pod": facts, "container_dir": directory})


def _parse_small(data):
    from .pod import parse_json

    return parse_json(data)


def _config_name(path):
    """The container name an extracted ``config.dump`` records (None if unreadable)."""
    try:
        config = _parse_small(path.read_bytes())
    except OSError:
        return None
    return config.get("name") if isinstance(config, dict) else None


def _pick_layer(layers, label, select):
    """``(layer, what selects inside it, label the names are pasted after)``: the image
    whose reference is ``select`` (``REF``; its pod's containers then listed after
    ``label:REF``), or ``REF:NAME`` (a container of that image), or, when the layout
    holds several, the one whose container is ``select``; the only image otherwise
    (``select`` then names a container in it)."""
    from .pod import choose

    if select is not None:
        for layer in layers:
            if layer.ref and select == layer.ref:
                return layer, None, f"{label}:{select}"
        if len(layers) > 1:
            for layer in layers:
                if layer.container and select == layer.container:
                    return layer, select, f"{label}:{select}"
        for layer in layers:
            if layer.ref and select.startswith(layer.ref + ":"):
                return layer, select[len(layer.ref) + 1:], f"{label}:{layer.ref}"
    if len(layers) == 1:
        return layers[0], select, label
    names = [layer.container or layer.ref or layer.label for layer in layers]
    picked = layers[names.index(choose(label, names, select, what="checkpoint images"))]
    return picked, None, f"{label}:{select}"


def _open_image(path, label, dest, limits, select):
    """A checkpoint image: pick its layer (:func:`_pick_layer`: ``REF``, ``REF:NAME``
    for a container of a pod image, or a container's name), then read the layer as an
    archive."""
    from .oci import image_layers

    layer, inner, names_label = _pick_layer(image_layers(path, label, limits), label, select)
    opened = _open_stream(layer.open, layer.size, label, dest, limits, inner, names_label)
    opened.kind = "oci-image"
    opened.container = opened.container or layer.container
    opened.extra["image"] = {"ref": layer.ref, "layer": layer.label, "layer_size": layer.size,
                             "annotations": layer.annotations}
    return opened


def open_archive(path, spec=None, limits=None, select=None):
    """Open a checkpoint archive as a :class:`Source`: a Podman/CRI-O container
    archive, a Kubernetes pod checkpoint (one container of it: ``select`` names
    it, needed when it holds several), or a checkpoint OCI image (a layout
    directory or an image tar).

    The images go to a private temporary directory; close the source (or use
    it in a ``with`` block) to remove it.  Raises :class:`ArchiveError`, or
    :class:`SourceError` naming the containers to choose from.
    """
    import tempfile

    limits = limits or ArchiveLimits.from_env()
    path = Path(path)
    label = os.fspath(path)
    workdir = tempfile.TemporaryDirectory(prefix="crit-plus-archive-")
    try:
        dest = workdir.name
        os.chmod(dest, 0o700)
        if is_image(path):
            opened = _open_image(path, label, dest, limits, select)
        else:
            opener, size = _file_stream(path)
            opened = _open_stream(opener, size, label, dest, limits, select)
        images = opened.base / "checkpoint"
        findings = []
        if opened.found.parent_link:
            _link_parent(path, images, findings)
        metadata = _read_metadata(opened.base, opened.found, findings)
        metadata.update(opened.extra)
        return _source(spec or label, path, images, metadata, opened, findings, workdir)
    except BaseException:
        _discard(workdir)
        raise


def archive_containers(path, limits=None):
    """The names of the containers a checkpoint archive or image holds, each with
    what to type for it (``ARCHIVE:NAME``, or the archive alone when it holds one):
    ``[(name, spec)]``.  Reads the archive once per image without extracting."""
    from .pod import pod_containers

    limits = limits or ArchiveLimits.from_env()
    path = Path(path)
    label = os.fspath(path)
    if is_image(path):
        from .oci import image_layers

        streams = [(layer.open, layer.size, layer) for layer in image_layers(path, label, limits)]
    else:
        opener, size = _file_stream(path)
        streams = [(opener, size, None)]
    several = len(streams) > 1
    entries = []  # (name, what selects it after ARCHIVE:)
    for opener, size, layer in streams:
        found = _extract(opener, label, None, limits, _Extraction(write=False), size)
        # a NAME/checkpoint/ without images and no pod.options: not a pod (a crit-plus
        # report bundle keeps NAME/checkpoint/dump.log)
        if found.pod_files or (found.container_images and not found.image_dir_seen):
            configs = {d: _parse_small(data) for d, data in found.configs.items() if d}
            before = f"{layer.ref}:" if several and layer is not None and layer.ref else ""
            entries += [(name, before + name) for name in pod_containers(
                _parse_small(found.pod_files.get("pod.options")), found.container_dirs, configs)]
        elif found.image_dir_seen or found.image_files or layer is not None:
            config = _parse_small(found.configs.get(""))
            name = config.get("name") if isinstance(config, dict) else None
            name = name or (layer.container or layer.ref if layer else None) \
                or os.path.basename(label)
            entries.append((name, (layer.container or layer.ref or name)
                            if several and layer is not None else name))
    if len(entries) == 1:
        return [(entries[0][0], label)]
    return [(name, f"{label}:{selected}") for name, selected in entries]


def _discard(workdir):
    """Remove the temporary directory after a failure without hiding the failure: a
    clean-up that fails (out of memory while the failed read still held it) is tried
    once more, and its own error is never raised over the first."""
    for _attempt in range(2):
        try:
            workdir.cleanup()
            return
        except (OSError, MemoryError, RecursionError):
            continue


def _link_parent(path, images, findings):
    """Recreate CRIU's ``checkpoint/parent -> ../pre-checkpoint`` link, if it has a target."""
    if not (images.parent / "pre-checkpoint").is_dir():
        findings.append(Finding(WARNING, "no-pre-checkpoint",
                                "checkpoint/parent points at pre-checkpoint/, which the archive "
                                "lacks: pages kept in the parent are unavailable", str(path)))
        return
    try:
        os.symlink("../pre-checkpoint", images / "parent")
    except FileExistsError:
        raise ArchiveError(path, "refused: it appears twice", member=PARENT_LINK[0]) from None


def _source(spec, path, images, metadata, opened, findings, workdir):
    from .rootfs import changes_of

    found = opened.found
    config = metadata.get("config_dump") if isinstance(metadata.get("config_dump"), dict) else {}
    if "config.dump" not in found.extracted:
        findings.append(Finding(INFO, "no-config", "the archive has no config.dump", str(path)))
    taken_at, taken_from = parse_timestamp(config.get("checkpointedTime")), "config.dump"
    if taken_at is None and found.images_mtime is not None:
        taken_at = datetime.fromtimestamp(found.images_mtime, timezone.utc)
        taken_from = "mtime"
    dump_log = next((p for p in (images / "dump.log", opened.base / "dump.log")
                     if p.is_file()), None)
    header = read_header(dump_log) if dump_log else None
    rootfs = changes_of(found.rootfs.get(found.prefix), metadata.get("deleted_files"),
                        found.sizes.get("rootfs-diff.tar"))
    if rootfs.problem:
        findings.append(Finding(WARNING, "bad-rootfs-diff", rootfs.problem, "rootfs-diff.tar"))
    return Source(
        spec=spec, images_dir=images, kind=opened.kind, manager=None,
        instance=config.get("name") or opened.container or None, taken_at=taken_at,
        taken_at_source=taken_from if taken_at else None,
        criu_version=header.criu_version if header else None,
        kernel=header.kernel if header else None,
        criu_run_id=header.run_id if header else None, dump_log=dump_log, log_dirs=(images,),
        metadata=metadata, archive=path, findings=tuple(findings), workdir=workdir,
        rootfs=rootfs,
    )
