"""One image file → its entries, lazily, and the JSON form crit gives it.

``open_image(path)`` reads only the magics.  ``Image.entries()`` parses one
entry at a time; payload bytes (pipe contents, socket queues, ghost file data)
stay in the file as (offset, length) until someone asks for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import EncodeError as ProtobufEncodeError

from .errors import BadMagicError, DecodeError, EntryDecodeError, MissingImageError, TruncatedError
from .framing import (
    Cursor,
    ImageBytes,
    StrPath,
    count_frames,
    frame_bounds,
    read_header,
    reframe,
)
from .kinds import LAYOUTS, Layout, expected_magic, raw_kind, round_up
from .schema import get_schema

if TYPE_CHECKING:  # JSON (decode, show) loads it; reading records does not
    from .jsonform import Converter

_U16_MAX_ITEMS = 1 << 16  # SysV semaphore sets hold at most 32000 semaphores
BATCH_ENTRIES = 4096  # entries parsed per protobuf call by Image.iter_messages


def _varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record came from: file, byte offset of its entry, entry index."""

    path: str
    offset: int
    index: int

    def __str__(self) -> str:
        return f"{os.path.basename(self.path)}: entry {self.index} at offset {self.offset:#x}"


@dataclass(frozen=True, slots=True)
class Payload:
    """Raw bytes after an entry, left in the file.

    ``parts`` is ``((name, offset, length), ...)``; ``messages`` holds the
    ``ipc_msg`` headers of a SysV message queue, one per part; ``size`` is the
    payload size crit reports with ``--nopl``.
    """

    shape: str
    parts: tuple
    size: int
    messages: tuple = ()

    @property
    def length(self) -> int:
        """Total payload bytes."""
        return sum(length for _name, _offset, length in self.parts)


@dataclass(frozen=True, slots=True)
class Entry:
    """One decoded entry: its message (None if the schema lacks the type) and payload."""

    index: int
    offset: int
    type_name: str
    message: object
    data: bytes
    payload: Payload | None
    path: str

    @property
    def source(self) -> Source:
        """The :class:`Source` of this entry."""
        return Source(self.path, self.offset, self.index)


def _has_unknown(batch):
    """Whether a parsed batch holds a field (at any depth) its schema does not know:
    a copy without unknown fields is smaller.  Two C calls for thousands of entries.
    A batch whose messages lack required fields (a damaged image: protobuf refuses
    to size it) may hold some: its messages are then checked one by one."""
    bare = type(batch)()
    bare.CopyFrom(batch)
    bare.DiscardUnknownFields()
    try:
        return bare.ByteSize() != batch.ByteSize()
    except ProtobufEncodeError:
        return True


#: One batch of entries: the first's index, each one's ``(offset, start, end)``, the
#: messages (None for a type the schema lacks).
Batch = tuple[int, list[tuple[int, int, int]], Sequence[Any]]


class Image:
    """An opened image file.  Use :func:`open_image`."""

    def __init__(self, path: StrPath, data: ImageBytes, *, check_name: bool = True,
                 name: str | None = None) -> None:
        self.path = os.fspath(path)
        self.name = name or os.path.basename(self.path)
        self._bytes = data
        self.size = data.size
        self.schema = get_schema()
        self.raw_kind = raw_kind(self.name)
        self.head_magic: int | None = None
        self.magic: int | None = None
        self.magic_name = "RAW" if self.raw_kind else None
        # a raw image (no magic) has no layout; nothing reads it for one
        self.layout: Layout = None  # type: ignore[assignment]
        self._entries_offset = 0
        if self.raw_kind is None:
            self._read_magic(check_name)

    def _read_magic(self, check_name):
        header = read_header(self._bytes)
        self.head_magic = header.head_magic
        self.magic = header.magic
        self._entries_offset = header.entries_offset
        name = self.schema.magic_by_value.get(header.magic)
        if name is None or name in ("IMG_COMMON", "IMG_SERVICE"):
            raise BadMagicError(self.path, header.magic, offset=header.entries_offset - 4)
        expected = expected_magic(self.name) if check_name else None
        if expected is not None and expected != name:
            raise BadMagicError(self.path, name, expected, offset=header.entries_offset - 4)
        self.magic_name = name
        self.layout = LAYOUTS.get(name) or Layout(message="")

    # -- context manager ---------------------------------------------------------
    def close(self) -> None:
        """Release the file."""
        self._bytes.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def is_raw(self) -> bool:
        """True for images without magic or entries (pages, routes, tarballs)."""
        return self.raw_kind is not None

    # -- entries -----------------------------------------------------------------
    def message_class(self, type_name: str | None) -> Any:
        """The message class for ``type_name`` in the loaded schema, or None."""
        return self.schema.message_class(type_name) if type_name else None

    def parse(self, type_name: str, data: bytes, offset: int, index: int) -> Any:
        """Parse ``data`` as ``type_name``; wrap protobuf errors with the position."""
        cls = self.message_class(type_name)
        if cls is None:
            return None
        message = cls()
        try:
            message.MergeFromString(data)
        except (ProtobufDecodeError, RuntimeError, ValueError) as error:
            raise EntryDecodeError(self.path, type_name, str(error) or "invalid message",
                                   offset, index) from None
        return message

    def entries(self) -> Iterator[Entry]:
        """Yield every :class:`Entry` in file order."""
        if self.is_raw:
            return
        if self.magic_name == "GHOST_FILE":
            yield from self._ghost_entries()
            return
        layout = self.layout
        rule = layout.payload
        cursor = Cursor(self._bytes, self._entries_offset)
        while not cursor.at_end:
            frame = cursor.next_frame()
            type_name = layout.message_for(frame.index)
            message = self.parse(type_name, frame.data, frame.offset, frame.index)
            payload = None
            if rule is not None and message is not None:
                payload = self._read_payload(rule, message, cursor)
            yield Entry(frame.index, frame.offset, type_name, message, frame.data, payload,
                        self.path)

    def iter_messages(self, type_name: str | None = None) -> Iterator[tuple[int, int, Any]]:
        """Yield ``(index, offset, message)`` for images without payloads.

        ``type_name`` overrides the layout's message type for every entry.
        A message the schema lacks comes back as None.
        """
        for index, bounds, messages in self.message_batches(type_name):
            for (offset, _start, _end), message in zip(bounds, messages):
                yield index, offset, message
                index += 1

    def message_batches(self, type_name: str | None = None) -> Iterator[Batch]:
        """Yield ``(first index, bounds, messages)`` per batch of entries.

        Entries are parsed :data:`BATCH_ENTRIES` at a time in one protobuf call
        (see :meth:`decoders.schema.Schema.batch_class`): the fastest way
        through a pagemap of millions of entries, with memory bounded by one
        batch.  ``bounds`` holds each entry's ``(offset, start, end)``.
        """
        for index, bounds, messages, _clean in self._batches(type_name, False):
            yield index, bounds, messages

    def _batches(self, type_name, probe_unknown):
        """:meth:`message_batches`, plus per batch whether it is known to hold no field
        the schema lacks (checked with ``probe_unknown``, in C, for the whole batch)."""
        layout = self.layout
        cls = self.message_class(type_name or layout.message)
        first_cls = cls if type_name else self.message_class(layout.message_for(0))
        data = self._bytes.view()
        offset = self._entries_offset
        index = 0
        if first_cls is not cls:
            bounds, offset = frame_bounds(self._bytes, offset, 1)
            if not bounds:
                return
            (head_offset, start, end), = bounds
            name = first_cls.DESCRIPTOR.name if first_cls else ""
            yield 0, bounds, [self.parse(name, data[start:end], head_offset, 0)], False
            index = 1
        batch_cls = self.schema.batch_class(cls) if cls is not None else None
        while True:
            bounds, offset = frame_bounds(self._bytes, offset, BATCH_ENTRIES, index)
            if not bounds:
                return
            if batch_cls is None:
                yield index, bounds, [None] * len(bounds), False
            else:
                batch = self._parse_batch(batch_cls, cls, bounds, data, index)
                yield index, bounds, batch.e, probe_unknown and not _has_unknown(batch)
            index += len(bounds)

    def _parse_batch(self, batch_cls, cls, chunk, data, first_index):
        """Parse the entries of ``chunk`` in one call; pinpoint the bad one on failure."""
        wire = reframe(self._bytes, chunk)
        if wire is None:  # an entry over 2 MiB: frame each one with a full varint
            wire = b"".join(b"\x0a" + _varint(end - start) + data[start:end]
                            for _offset, start, end in chunk)
        batch = batch_cls()
        try:
            batch.MergeFromString(wire)
        except (ProtobufDecodeError, RuntimeError, ValueError):
            name = cls.DESCRIPTOR.name
            for position, (offset, start, end) in enumerate(chunk):
                self.parse(name, data[start:end], offset, first_index + position)
            raise EntryDecodeError(self.path, name, "invalid message", chunk[0][0],
                                   first_index) from None
        return batch

    def _read_payload(self, rule, message, cursor):
        shape = rule.shape
        if shape == "blob":
            length = sum(getattr(message, name) for name in rule.fields)
            offset, length = cursor.payload(length, "payload")
            return Payload(shape, (("data", offset, length),), length)
        if shape == "tcp":
            inq = cursor.payload(message.inq_len, "TCP input queue")
            outq = cursor.payload(message.outq_len, "TCP output queue")
            return Payload(shape, (("inq",) + inq, ("outq",) + outq),
                           message.inq_len + message.outq_len)
        if shape == "u16":
            count = message.nsems
            if count > _U16_MAX_ITEMS:
                raise EntryDecodeError(self.path, "ipc_sem_entry", f"nsems {count} is too large",
                                       cursor.offset, cursor.index - 1)
            offset, _ = cursor.payload(round_up(2 * count, 8), "semaphore values")
            return Payload(shape, (("values", offset, 2 * count),), 2 * count)
        if shape == "shm":
            if getattr(message, "in_pagemaps", False):
                return None
            offset, _ = cursor.payload(round_up(message.size, 4), "shared memory contents")
            return Payload(shape, (("data", offset, message.size),), message.size)
        if shape == "msgq":
            return self._read_msg_queue(message, cursor)
        raise AssertionError(shape)

    def _read_msg_queue(self, message, cursor):
        parts, headers, size = [], [], 0
        for _ in range(message.qnum):
            if cursor.at_end:
                raise TruncatedError(self.path, "message queue", 4, 0, cursor.offset,
                                     cursor.index - 1)
            frame_offset = cursor.offset
            length = self._bytes.u32(frame_offset, "message size", cursor.index - 1)
            header_bytes = self._bytes.take(frame_offset + 4, length, "ipc_msg", cursor.index - 1)
            cursor.offset = frame_offset + 4 + length
            header = self.parse("ipc_msg", header_bytes, frame_offset, cursor.index - 1)
            offset, _ = cursor.payload(round_up(header.msize, 8), "message text")
            parts.append(("message", offset, header.msize))
            headers.append(header)
            size += length + header.msize
        return Payload("msgq", tuple(parts), size, tuple(headers))

    def _ghost_entries(self):
        cursor = Cursor(self._bytes, self._entries_offset)
        frame = cursor.next_frame()
        head = self.parse("ghost_file_entry", frame.data, frame.offset, frame.index)
        if head is None or not head.chunks:
            offset, length = cursor.payload(self.size - cursor.offset, "file contents")
            yield Entry(0, frame.offset, "ghost_file_entry", head, frame.data,
                        Payload("blob", (("data", offset, length),), length), self.path)
            return
        yield Entry(0, frame.offset, "ghost_file_entry", head, frame.data, None, self.path)
        while not cursor.at_end:
            frame = cursor.next_frame()
            chunk = self.parse("ghost_chunk_entry", frame.data, frame.offset, frame.index)
            offset, length = cursor.payload(chunk.len, "file chunk")
            yield Entry(frame.index, frame.offset, "ghost_chunk_entry", chunk, frame.data,
                        Payload("blob", (("data", offset, length),), length), self.path)

    def count(self) -> int:
        """Number of entries; seeks over sizes, parses only where payloads need it."""
        if self.is_raw:
            return 0
        if self.layout.payload is None and self.magic_name != "GHOST_FILE":
            return count_frames(self._bytes, self._entries_offset)
        return sum(1 for _ in self.entries())

    def read(self, offset: int, length: int) -> bytes:
        """Read payload bytes (bounds-checked)."""
        return self._bytes.take(offset, length, "payload")

    # -- JSON --------------------------------------------------------------------
    def json_entries(self, pretty: bool = False, nopl: bool = False,
                     converter: Converter | None = None) -> Iterator[dict]:
        """Yield each entry as crit's JSON dictionary (with ``extra`` for payloads)."""
        from .jsonform import Converter

        converter = converter or Converter(self.schema)
        if self.magic_name in ("PAGEMAP",) or (self.layout and self.layout.payload is None
                                               and self.magic_name != "GHOST_FILE"):
            for _index, _bounds, messages, clean in self._batches(None, True):
                for message in messages:
                    yield converter.message(message, pretty, False, not clean) \
                        if message is not None else {}
            return
        for entry in self.entries():
            if entry.message is None:
                item = {}
            else:
                item = converter.message(entry.message, pretty)
            if entry.payload is not None:
                self._add_extra(item, entry.payload, pretty, nopl, converter)
            yield item

    def _add_extra(self, item, payload, pretty, nopl, converter):
        from .jsonform import encode_bytes

        if nopl:
            if self.magic_name != "GHOST_FILE":
                item["extra"] = f"... <{human_size(payload.size)}>"
            return
        shape = payload.shape
        if shape in ("blob", "shm"):
            (_name, offset, length), = payload.parts
            item["extra"] = encode_bytes(self.read(offset, length))
        elif shape == "tcp":
            item["extra"] = {name: encode_bytes(self.read(offset, length))
                             for name, offset, length in payload.parts}
        elif shape == "u16":
            (_name, offset, length), = payload.parts
            data = self.read(offset, length)
            item["extra"] = [int.from_bytes(data[i:i + 2], "little") for i in range(0, length, 2)]
        elif shape == "msgq":
            extra = []
            for header, (_name, offset, length) in zip(payload.messages, payload.parts):
                extra.append(converter.message(header, pretty))
                extra.append(encode_bytes(self.read(offset, length)))
            item["extra"] = extra

    def to_json(self, pretty: bool = False, nopl: bool = False,
                converter: Converter | None = None) -> dict:
        """The whole image as crit's ``{"magic": ..., "entries": [...]}``."""
        return {"magic": self.magic_name,
                "entries": list(self.json_entries(pretty, nopl, converter))}

    def raw_info(self) -> dict:
        """What crit-plus says of a raw image: its kind and size."""
        from .kinds import RAW_STEMS

        return {"magic": "RAW", "kind": self.raw_kind, "description": RAW_STEMS[str(self.raw_kind)],
                "size": self.size}


def human_size(num: float) -> str:
    """crit's size text for ``--nopl``: 512B, 1.5KB, 4MB."""
    for unit in ("", "K", "M", "G", "T", "P", "E", "Z"):
        if num < 1024.0:
            if int(num) == num:
                return "%d%sB" % (num, unit)
            return "%.1f%sB" % (num, unit)
        num /= 1024.0
    return "%.1fYB" % num


def open_image(path: StrPath, *, check_name: bool = True, pipes: bool = False) -> Image:
    """Open the image at ``path`` read-only and read its magic.  ``pipes``: a FIFO is
    read too (only for an image the user named: :meth:`ImageBytes.open`).

    Raises :class:`~decoders.errors.MissingImageError` if it does not exist,
    :class:`~decoders.errors.BadMagicError` if the magic is unknown or does not
    match the file name (``check_name=False`` skips the name check).
    """
    try:
        data = ImageBytes.open(path, pipes=pipes)
    except FileNotFoundError:
        raise MissingImageError(path) from None
    try:
        return Image(path, data, check_name=check_name)
    except BaseException:
        data.close()
        raise


def read_messages(path: StrPath) -> tuple[Any, ...]:
    """Every message of the image at ``path``, in file order, payloads left in the file:
    batches parsed in C for a kind without payloads (:meth:`Image.iter_messages`), entry
    by entry otherwise (pipe data, socket queues, ghost files).  A message of a type the
    schema lacks, and a raw image, give nothing.

    Raises :class:`~decoders.errors.DecodeError` (``MissingImageError`` when absent).
    """
    with open_image(path) as image:
        if image.is_raw:
            return ()
        if image.layout.payload is None and image.magic_name != "GHOST_FILE":
            return tuple(msg for _index, _offset, msg in image.iter_messages()
                         if msg is not None)
        return tuple(entry.message for entry in image.entries() if entry.message is not None)


def read_messages_until_damage(path: StrPath) -> tuple[tuple[Any, ...], DecodeError | None]:
    """The messages of the image at ``path`` entry by entry (for an image without
    payloads), up to the first one that does not decode: ``(messages, None)``, or the
    messages before the damage and its :class:`~decoders.errors.DecodeError` (a
    ``MissingImageError``, with no messages, when the image is absent)."""
    messages: list[Any] = []
    try:
        with open_image(path) as image:
            for entry in image.entries():
                if entry.message is not None:
                    messages.append(entry.message)
    except DecodeError as error:
        return tuple(messages), error
    return tuple(messages), None


def image_from_bytes(data: bytes, name: str = "<stdin>") -> Image:
    """An :class:`Image` over bytes in memory (standard input, tests)."""
    return Image(name, ImageBytes.from_bytes(data, name), check_name=False, name=name)
