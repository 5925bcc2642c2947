"""Podman and CRI-O checkpoint archives, read without unpacking them whole.

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
    rootfs-diff.tar      changes to the root file system (a tar; only its size is read)
    dump.log             CRIU's log (CRI-O; Podman keeps it in checkpoint/)

The archive is read once, as a stream.  Only the image directories and the
small metadata files above are written, into a private temporary directory
(mode 0700) that :meth:`Source.close` removes.  Everything else is skipped.

Safety: the whole archive is refused, with a one-line :class:`ArchiveError`
naming the member, if any member has an absolute path or a ``..`` component,
is a symbolic or hard link (one exception: ``checkpoint/parent`` pointing at
``../pre-checkpoint``, which CRIU itself creates for pre-dumps; crit-plus
recreates that link itself), a device node, a FIFO or another special file,
appears twice, has a path more than :data:`MAX_DEPTH` components deep, or if
the bytes or members to extract exceed :class:`ArchiveLimits`.  Files are
created with ``O_EXCL | O_NOFOLLOW`` under the temporary directory only.

Tar headers are bounded before :mod:`tarfile` reads them (:func:`_tarinfo_class`):
a pax extended header or GNU long-name header over :data:`MAX_HEADER` bytes,
more than :data:`MAX_HEADER_CHAIN` of them in a row, and GNU or pax sparse
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
#: Members whose size is reported but which are never extracted.
SIZE_ONLY = ("rootfs-diff.tar", "devshm-checkpoint.tar")
#: The one link allowed, and the only target it may have.
PARENT_LINK = ("checkpoint/parent", "../pre-checkpoint")
#: Most bytes of one pax extended header or GNU long-name header (tarfile reads it whole),
#: and of all pax global headers together (they accumulate).
MAX_HEADER = 1 * MiB
#: Most extended headers (pax, GNU long name/link) in a row before a member (tarfile
#: reads them recursively).
MAX_HEADER_CHAIN = 8
#: Most components of a member's path (CRIU's image directories are flat).
MAX_DEPTH = 32

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_COMPRESSED_MAGICS = (b"\x1f\x8b", _ZSTD_MAGIC, b"BZh", b"\xfd7zXZ")
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
    if head.startswith(_COMPRESSED_MAGICS):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


@dataclass
class _Extraction:
    """What one pass over the archive found."""

    extracted: dict = field(default_factory=dict)  # member name -> size
    sizes: dict = field(default_factory=dict)      # SIZE_ONLY name -> size
    skipped: int = 0
    total: int = 0
    directories: int = 0                           # directory members made
    total_limit: int = 0                           # ArchiveLimits.total_limit of this archive
    offset: int | None = None                      # where the member being read starts
    parent_link: bool = False
    images_mtime: float | None = None


def _tarinfo_class(archive):
    """A :class:`tarfile.TarInfo` that checks extended headers before tarfile reads them.

    tarfile reads a pax or GNU long-name header whole into memory, follows a chain
    of them by recursion and reads sparse maps without bound: a few MB of
    compressed archive could take gigabytes.  Each is refused here first.
    """
    import tarfile  # archives only: every other source starts without it

    def refuse(info, reason):
        raise ArchiveError(archive, f"refused: the header at offset {info.offset:#x} of the "
                                    f"tar stream: {reason}")

    class Bounded(tarfile.TarInfo):
        chain = 0          # extended headers being read, one inside the other
        global_bytes = 0   # bytes of pax global headers so far

        def _extended(self, tar, kind, read):
            if self.size > MAX_HEADER:
                refuse(self, f"a {kind} header of {self.size} bytes, over the limit of "
                             f"{MAX_HEADER}")
            if Bounded.chain >= MAX_HEADER_CHAIN:
                refuse(self, f"more than {MAX_HEADER_CHAIN} extended headers in a row")
            Bounded.chain += 1
            try:
                return read(tar)
            finally:
                Bounded.chain -= 1

        def _proc_pax(self, tar):
            if self.type == tarfile.XGLTYPE:
                Bounded.global_bytes += self.size
                if Bounded.global_bytes > MAX_HEADER:
                    refuse(self, f"pax global headers of more than {MAX_HEADER} bytes")
            return self._extended(tar, "pax extended", super()._proc_pax)

        def _proc_gnulong(self, tar):
            return self._extended(tar, "GNU long-name", super()._proc_gnulong)

        def _proc_sparse(self, tar):
            refuse(self, "a GNU sparse member")

        def _proc_gnusparse_00(self, *args):
            refuse(self, "a pax sparse member")

        _proc_gnusparse_01 = _proc_gnusparse_10 = _proc_gnusparse_00

    return Bounded


def _open_tar(stream, archive):
    import tarfile  # archives only: every other source starts without it

    bounded = _tarinfo_class(archive)
    head = stream.peek(4)[:4] if hasattr(stream, "peek") else b""
    if head == _ZSTD_MAGIC:
        import zstandard  # imported here: only zstd archives need it

        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
        return tarfile.open(fileobj=reader, mode="r|", tarinfo=bounded)
    try:
        return tarfile.open(fileobj=stream, mode="r|*", tarinfo=bounded)
    except tarfile.TarError as error:
        raise ArchiveError(archive, "not a tar archive (plain, gzip, bzip2, xz or zstd): "
                           f"{error}") from error


def _clean_name(member, archive):
    """The member's path as a relative POSIX path, or raise for a hostile one."""
    name = member.name
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(archive, "refused: absolute path", member=name)
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(archive, "refused: its path leaves the archive ('..')", member=name)
    if len(parts) > MAX_DEPTH:
        raise ArchiveError(archive, f"refused: its path is {len(parts)} components deep, over "
                                    f"the limit of {MAX_DEPTH}",
                           member=name if len(name) <= 200 else name[:200] + "...")
    return "/".join(parts)


def _check_type(member, name, archive):
    """Raise for links and special files; True for the allowed ``checkpoint/parent`` link."""
    if member.issym() or member.islnk():
        if member.issym() and (name, member.linkname.rstrip("/")) == PARENT_LINK:
            return True
        kind = "symbolic link" if member.issym() else "hard link"
        raise ArchiveError(archive, f"refused: {kind} to {member.linkname!r}", member=member.name)
    if member.ischr() or member.isblk():
        raise ArchiveError(archive, "refused: device node", member=member.name)
    if member.isfifo():
        raise ArchiveError(archive, "refused: FIFO", member=member.name)
    if not (member.isreg() or member.isdir()):
        raise ArchiveError(archive, f"refused: unsupported member type {member.type!r}",
                           member=member.name)
    return False


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


def _extract(path, dest, limits):
    """Stream the archive once, extracting what crit-plus reads into ``dest``."""
    import tarfile

    archive = os.fspath(path)
    found = _Extraction()
    try:
        with open(path, "rb") as raw:
            info = os.fstat(raw.fileno())
            found.total_limit = limits.total_limit(
                info.st_size if stat.S_ISREG(info.st_mode) else None)
            with _open_tar(raw, archive) as tar:
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


def _take(tar, member, dest, limits, found, archive):
    name = _clean_name(member, archive)
    is_parent_link = _check_type(member, name, archive)
    if not name:
        return
    if name in SIZE_ONLY and member.isreg():
        found.sizes[name] = member.size
        return
    role = _wanted(name)
    if role is None:
        found.skipped += 1
        return
    if is_parent_link:
        found.parent_link = True
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
    found.extracted[name] = member.size
    if name == "checkpoint/inventory.img":
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


def open_archive(path, spec=None, limits=None):
    """Open a Podman/CRI-O checkpoint archive as a :class:`Source`.

    The images go to a private temporary directory; close the source (or use
    it in a ``with`` block) to remove it.  Raises :class:`ArchiveError`.
    """
    import tempfile

    limits = limits or ArchiveLimits.from_env()
    path = Path(path)
    workdir = tempfile.TemporaryDirectory(prefix="crit-plus-archive-")
    try:
        dest = workdir.name
        os.chmod(dest, 0o700)
        found = _extract(path, dest, limits)
        images = Path(dest, "checkpoint")
        if not is_images_dir(images):
            raise ArchiveError(path, "no checkpoint/ directory with CRIU images (inventory.img) "
                               "— not a Podman or CRI-O checkpoint archive")
        findings = []
        if found.parent_link:
            _link_parent(path, images, findings)
        metadata = _read_metadata(dest, found, findings)
        return _source(spec or os.fspath(path), path, images, metadata, found, findings, workdir)
    except BaseException:
        _discard(workdir)
        raise


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


def _source(spec, path, images, metadata, found, findings, workdir):
    config = metadata.get("config_dump") if isinstance(metadata.get("config_dump"), dict) else {}
    if "config.dump" not in found.extracted:
        findings.append(Finding(INFO, "no-config", "the archive has no config.dump", str(path)))
    taken_at, taken_from = parse_timestamp(config.get("checkpointedTime")), "config.dump"
    if taken_at is None and found.images_mtime is not None:
        taken_at = datetime.fromtimestamp(found.images_mtime, timezone.utc)
        taken_from = "mtime"
    dump_log = next((p for p in (images / "dump.log", Path(workdir.name, "dump.log"))
                     if p.is_file()), None)
    header = read_header(dump_log) if dump_log else None
    return Source(
        spec=spec, images_dir=images, kind="podman-archive", manager=None,
        instance=config.get("name") or None, taken_at=taken_at,
        taken_at_source=taken_from if taken_at else None,
        criu_version=header.criu_version if header else None,
        kernel=header.kernel if header else None,
        criu_run_id=header.run_id if header else None, dump_log=dump_log, log_dirs=(images,),
        metadata=metadata, archive=path, findings=tuple(findings), workdir=workdir,
    )
