"""The checks every tar crit-plus reads goes through: bounded headers, safe names and types.

Python's :mod:`tarfile` reads a pax extended or GNU long-name header whole into
memory, follows a chain of them by recursion and reads sparse maps without
bound: :func:`bounded_tarinfo` refuses each from its size first.  :func:`clean_name`
refuses absolute paths, ``..`` and paths over :data:`MAX_DEPTH` components;
:func:`check_type` refuses links (but CRIU's ``checkpoint/parent ->
../pre-checkpoint``), devices, FIFOs and other special members.  Used by the
checkpoint archive reader (:mod:`.archive`), the image reader (:mod:`.oci`) and
the ``rootfs-diff.tar`` lister (:mod:`.rootfs`); see docs/sources.md, "Safety".
"""

from __future__ import annotations

import re

from .errors import ArchiveError

MiB = 1 << 20
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

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
COMPRESSED_MAGICS = (b"\x1f\x8b", ZSTD_MAGIC, b"BZh", b"\xfd7zXZ")


def bounded_tarinfo(archive):
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


def open_tar(stream, archive):
    """A streaming :class:`tarfile.TarFile` over ``stream`` (plain, gzip, bzip2, xz or zstd), its
    headers bounded."""
    import tarfile  # archives only: every other source starts without it

    bounded = bounded_tarinfo(archive)
    head = stream.peek(4)[:4] if hasattr(stream, "peek") else b""
    if head == ZSTD_MAGIC:
        import zstandard  # imported here: only zstd archives need it

        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
        return tarfile.open(fileobj=reader, mode="r|", tarinfo=bounded)
    try:
        return tarfile.open(fileobj=stream, mode="r|*", tarinfo=bounded)
    except tarfile.TarError as error:
        raise ArchiveError(archive, "not a tar archive (plain, gzip, bzip2, xz or zstd): "
                           f"{error}") from error


def clean_name(member, archive):
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


def is_parent_link(name, linkname):
    """CRIU's ``checkpoint/parent -> ../pre-checkpoint``, at the top or in a pod's
    container directory."""
    parts = name.split("/")
    return (len(parts) <= 3 and parts[-2:] == PARENT_LINK[0].split("/")
            and linkname.rstrip("/") == PARENT_LINK[1])


def check_type(member, name, archive):
    """Raise for links and special files; True for an allowed ``checkpoint/parent`` link."""
    if member.issym() or member.islnk():
        if member.issym() and is_parent_link(name, member.linkname):
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
