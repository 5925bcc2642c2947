"""The framing every CRIU image shares, read with every length checked.

Grammar (integers are little-endian, as CRIU writes them on x86_64)::

    IMAGE_FILE ::= [ HEAD_MAGIC ] MAGIC { ENTRY }
    HEAD_MAGIC ::= u32      0x54564319 (IMG_COMMON) | 0x55105940 (IMG_SERVICE);
                            absent in inventory.img, whose MAGIC comes first
    MAGIC      ::= u32      the image kind (pycriu's magic table)
    ENTRY      ::= SIZE MESSAGE [ PAYLOAD ]
    SIZE       ::= u32      the length of MESSAGE
    MESSAGE    ::= SIZE bytes of one protobuf message
    PAYLOAD    ::= raw bytes whose length a field of MESSAGE gives
                   (pipes-data, sk-queues, tcp-stream, ghost-file, ...)

Raw images (``pages-*.img``, ``route-*``, ``*.tar.gz.img``, ...) have no
magic at all; :mod:`decoders.kinds` recognises them by name.

This is the only module that touches image bytes.  A length larger than the
bytes left is a :class:`~decoders.errors.TruncatedError`, never an allocation.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Union

from .errors import StrPath, TruncatedError, UnreadableImageError

IMG_COMMON = 0x54564319
IMG_SERVICE = 0x55105940
HEAD_MAGICS = (IMG_COMMON, IMG_SERVICE)
INVENTORY_MAGIC = 0x58313116

_U32 = struct.Struct("<I")
#: The bytes of an image: held in memory, or mapped.
Buffer = Union[bytes, mmap.mmap]

#: Most bytes read from a pipe or standard input (they are held in memory; the
#: largest metadata images, pagemaps of huge sparse processes, are tens of MiB).
STREAM_LIMIT = 256 << 20

_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def open_untrusted(path: StrPath, *, pipes: bool = False,
                   nofollow: bool = False) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading, never blocking; return ``(fd, stat result)``.

    Checkpoints come from other hosts: where an image should be there may be a
    FIFO (an ordinary open would wait for a writer forever), a device
    (``/dev/zero`` never ends; opening ``/dev/watchdog`` or a serial tty acts on
    the hardware) or a directory.  What stands at ``path`` must be a regular
    file (or, with ``pipes``, a FIFO or pipe, read by :func:`read_stream` up to
    :data:`STREAM_LIMIT`): anything else is refused from ``stat`` without being
    opened.  It is then opened with ``O_NONBLOCK`` and checked again by
    ``fstat`` (it may have been swapped).  With ``nofollow``, a symbolic link at
    ``path`` itself is refused (``O_NOFOLLOW``): for files of a copied tree,
    whose links could name host files (``crit_plus.files.open_in_tree``).
    Raises ``FileNotFoundError`` when there is nothing at ``path`` and
    :class:`~decoders.errors.UnreadableImageError` otherwise.
    """
    try:
        _check_kind(path, (os.lstat if nofollow else os.stat)(path).st_mode, pipes)
    except (FileNotFoundError, UnreadableImageError):
        raise
    except OSError as error:
        raise UnreadableImageError(path, error) from None
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | \
        getattr(os, "O_NOCTTY", 0) | (getattr(os, "O_NOFOLLOW", 0) if nofollow else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise UnreadableImageError(path, error) from None
    try:
        info = os.fstat(fd)
        _check_kind(path, info.st_mode, pipes)
        os.set_blocking(fd, True)  # a FIFO without a writer now reads as empty
    except BaseException as error:
        os.close(fd)
        if isinstance(error, OSError) and not isinstance(error, UnreadableImageError):
            raise UnreadableImageError(path, error) from None
        raise
    return fd, info


def _check_kind(path, mode, pipes):
    """Raise :class:`~decoders.errors.UnreadableImageError` unless ``mode`` is a regular
    file's (or, with ``pipes``, a FIFO's)."""
    if stat.S_ISREG(mode) or (pipes and stat.S_ISFIFO(mode)):
        return
    kind = "a symbolic link" if stat.S_ISLNK(mode) else \
        next((name for test, name in _FILE_KINDS if test(mode)), "not a file")
    raise UnreadableImageError(path, f"not a regular file but {kind}")


class _FdReader:
    """``read(n)`` on a raw file descriptor (for :func:`read_stream`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, size):
        return os.read(self.fd, size)


def read_stream(stream: Any, path: StrPath, limit: int = STREAM_LIMIT) -> bytes:
    """All bytes of a binary ``stream`` (a pipe, standard input), at most ``limit``.

    More than ``limit`` bytes is an :class:`~decoders.errors.UnreadableImageError`:
    what is read this way is held in memory.
    """
    parts: list[bytes] = []
    total = 0
    while True:
        block = stream.read(min(1 << 20, limit + 1 - total))
        if not block:
            return b"".join(parts)
        parts.append(block)
        total += len(block)
        if total > limit:
            raise UnreadableImageError(path, f"more than {limit} bytes from a pipe; "
                                             "give the image as a file")


#: Images up to this size are read whole: cheaper than mapping them (most images
#: are a few KiB, and a checkpoint of 500 processes has thousands).
READ_WHOLE = 1 << 20


class ImageBytes:
    """Read-only, bounds-checked access to the bytes of one image file.

    Regular files larger than :data:`READ_WHOLE` are memory-mapped (nothing is
    copied until an entry is taken); smaller ones and other inputs (a pipe,
    ``bytes``) are held in memory.
    """

    def __init__(self, path: StrPath, data: Buffer,
                 closer: Callable[[], None] | None = None) -> None:
        self.path = path
        self._data = data
        self._closer = closer
        self.size = len(data)

    @classmethod
    def open(cls, path: StrPath, *, pipes: bool = False) -> ImageBytes:
        """Map the regular file at ``path`` read-only; anything else is an
        :class:`~decoders.errors.UnreadableImageError`.  With ``pipes`` (an image the
        user named, ``decode -i <(zcat core.img.gz)``), a FIFO or pipe is read too, up to
        :data:`STREAM_LIMIT` bytes: a writer that never writes would make that wait, so an
        image found in a checkpoint directory is never opened so."""
        fd, info = open_untrusted(path, pipes=pipes)
        try:
            if stat.S_ISFIFO(info.st_mode):
                return cls(path, read_stream(_FdReader(fd), path))
            if info.st_size <= READ_WHOLE:  # small: read whole, cheaper than mapping
                return cls(path, os.read(fd, info.st_size) if info.st_size else b"")
            mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except OSError as error:
            raise UnreadableImageError(path, error) from None
        finally:
            os.close(fd)
        return cls(path, mapped, closer=mapped.close)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview,
                   path: StrPath = "<input>") -> ImageBytes:
        """Wrap bytes already in memory (stdin, tests)."""
        return cls(path, bytes(data))

    def close(self) -> None:
        """Release the mapping; later reads fail."""
        if self._closer is not None:
            self._closer()
            self._closer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def u32(self, offset: int, what: str, entry_index: int | None = None) -> int:
        """Return the u32 at ``offset``; raise if fewer than 4 bytes are left."""
        self.require(offset, 4, what, entry_index)
        return _U32.unpack_from(self._data, offset)[0]

    def take(self, offset: int, length: int, what: str, entry_index: int | None = None) -> bytes:
        """Return ``length`` bytes at ``offset`` as ``bytes``, bounds-checked."""
        self.require(offset, length, what, entry_index)
        return self._data[offset : offset + length]

    def require(self, offset: int, length: int, what: str, entry_index: int | None = None) -> None:
        """Raise :class:`TruncatedError` unless ``length`` bytes exist at ``offset``."""
        if length < 0 or offset + length > self.size:
            raise TruncatedError(
                self.path, what, length, max(self.size - offset, 0), offset, entry_index
            )

    def view(self) -> Buffer:
        """The underlying buffer, for tight loops that check bounds themselves."""
        return self._data


@dataclass(frozen=True, slots=True)
class Header:
    """What precedes the entries: the optional head magic and the image magic."""

    head_magic: int | None
    magic: int
    entries_offset: int


def read_header(image: ImageBytes) -> Header:
    """Read the magics at the start of ``image`` (an :class:`ImageBytes`)."""
    first = image.u32(0, "magic")
    if first in HEAD_MAGICS:
        return Header(first, image.u32(4, "image magic"), 8)
    return Header(None, first, 4)


@dataclass(frozen=True, slots=True)
class Frame:
    """One entry's message bytes and where they were found."""

    index: int
    offset: int  # offset of the SIZE prefix
    data: bytes

    @property
    def end(self) -> int:
        """Offset just past the message (where a payload would start)."""
        return self.offset + 4 + len(self.data)


class Cursor:
    """Walks the entries of an image, handing out frames and payloads in order."""

    def __init__(self, image: ImageBytes, offset: int) -> None:
        self.image = image
        self.offset = offset
        self.index = 0

    @property
    def at_end(self) -> bool:
        """True when no bytes are left."""
        return self.offset >= self.image.size

    def next_frame(self) -> Frame:
        """Read the next SIZE + MESSAGE; return a :class:`Frame`."""
        offset = self.offset
        size = self.image.u32(offset, "entry size", self.index)
        if offset + 4 + size > self.image.size:
            raise _cut_entry(self.image, offset, size, self.index)
        data = self.image.take(offset + 4, size, f"entry of {size} bytes", self.index)
        frame = Frame(self.index, offset, data)
        self.offset = offset + 4 + size
        self.index += 1
        return frame

    def payload(self, length: int, what: str) -> tuple[int, int]:
        """Return the (offset, length) of a payload after the current entry and skip it.

        The bytes are not read: callers read them with :meth:`read_payload` or
        leave them in place.
        """
        self.image.require(self.offset, length, what, self.index - 1)
        offset = self.offset
        self.offset += length
        return offset, length

    def read_payload(self, length: int, what: str) -> bytes:
        """Read and return ``length`` payload bytes after the current entry."""
        offset, length = self.payload(length, what)
        return self.image.take(offset, length, what, self.index - 1)


def _cut_entry(image, offset, length, index):
    """The error for entry ``index`` (its size prefix at ``offset``) promising ``length``
    bytes the file does not hold: every reader names the entry by its prefix's offset."""
    return TruncatedError(image.path, f"entry of {length} bytes", length,
                          image.size - offset - 4, offset, index)


def count_frames(image: ImageBytes, offset: int) -> int:
    """Count SIZE-prefixed entries from ``offset`` by seeking, without parsing."""
    count = 0
    size = image.size
    data = image.view()
    while offset < size:
        if offset + 4 > size:
            raise TruncatedError(image.path, "entry size", 4, size - offset, offset, count)
        length = _U32.unpack_from(data, offset)[0]
        if offset + 4 + length > size:
            raise _cut_entry(image, offset, length, count)
        offset += 4 + length
        count += 1
    return count


def frame_bounds(image: ImageBytes, offset: int, limit: int,
                 first_index: int = 0) -> tuple[list[tuple[int, int, int]], int]:
    """Return up to ``limit`` entries' ``(offset, start, end)`` from ``offset``,
    bounds-checked, and the offset after the last one.

    The fast path for images without payloads (pagemaps can hold millions of
    entries): one tight loop, no object per entry beyond the tuple.
    ``first_index`` is the index of the first entry, for error messages.
    """
    size = image.size
    data = image.view()
    unpack = _U32.unpack_from
    bounds: list[tuple[int, int, int]] = []
    append = bounds.append
    while offset < size and len(bounds) < limit:
        start = offset + 4
        if start > size:
            raise TruncatedError(image.path, "entry size", 4, size - offset, offset,
                                 first_index + len(bounds))
        end = start + unpack(data, offset)[0]
        if end > size:
            raise _cut_entry(image, offset, end - start, first_index + len(bounds))
        append((offset, start, end))
        offset = end
    return bounds, offset


#: Largest entry :func:`reframe` can rewrite in place (a 3-byte varint length).
REFRAME_MAX = (1 << 21) - 1


def reframe(image: ImageBytes, bounds: Sequence[tuple[int, int, int]]) -> bytes | None:
    """The entries of ``bounds`` as one protobuf message: ``repeated bytes e = 1``.

    Each entry's 4-byte SIZE becomes a 4-byte field header: the key of field 1
    (length-delimited) and the length as a 3-byte varint (protobuf parsers
    accept padded varints).  One copy of the region, one small write per
    entry, then a single protobuf parse reads every entry.
    """
    first = bounds[0][0]
    data = image.view()
    out = bytearray(data[first : bounds[-1][2]])
    headers: dict[int, bytes] = {}  # entries of one image have few distinct sizes
    for offset, start, end in bounds:
        length = end - start
        header = headers.get(length)
        if header is None:
            if length > REFRAME_MAX:
                return None
            header = headers[length] = bytes(
                (0x0A, (length & 0x7F) | 0x80, ((length >> 7) & 0x7F) | 0x80, length >> 14)
            )
        position = offset - first
        out[position : position + 4] = header
    return bytes(out)


def iter_frame_bounds(image: ImageBytes, offset: int,
                      batch: int = 4096) -> Iterator[tuple[int, int, int]]:
    """Yield ``(offset, start, end)`` of each entry's message (see :func:`frame_bounds`)."""
    index = 0
    while True:
        bounds, offset = frame_bounds(image, offset, batch, index)
        if not bounds:
            return
        index += len(bounds)
        yield from bounds
