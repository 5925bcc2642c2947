"""crit's JSON form of an image → the image's bytes (``crit-plus encode``).

The inverse of :meth:`decoders.image.Image.to_json`: the same framing (see
:mod:`decoders.framing`), messages filled by :class:`decoders.jsonform.Converter`
(pretty values, unknown fields and overlay fields included), payloads from
each entry's ``extra``.  Decoding then encoding gives back the same bytes.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from google.protobuf.message import EncodeError as ProtobufEncodeError

from .errors import DecodeError
from .framing import IMG_COMMON, IMG_SERVICE
from .jsonform import Converter
from .kinds import LAYOUTS, Layout, round_up
from .schema import get_schema

_SERVICE_IMAGES = ("STATS", "IRMAP_CACHE")
_U32 = struct.Struct("<I")


class EncodeError(DecodeError, ValueError):
    """The JSON does not describe a valid image."""


def _frame(message, source, index):
    try:
        data = message.SerializeToString()
    except ProtobufEncodeError as error:  # required fields missing
        raise EncodeError(source, str(error), entry_index=index) from None
    return _U32.pack(len(data)) + data


def _b64(text):
    return base64.decodebytes(text.encode("ascii"))


def _pad(data, alignment):
    return data + b"\0" * (round_up(len(data), alignment) - len(data))


class _Encoder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.schema = get_schema()
        self.converter = Converter(self.schema)

    def message(self, type_name, data, index):
        cls = self.schema.message_class(type_name)
        if cls is None:
            raise EncodeError(self.source, f"the loaded schema has no message {type_name}",
                              entry_index=index)
        try:
            return self.converter.fill(cls(), data)
        except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as error:
            raise EncodeError(self.source, f"cannot encode {type_name}: {error}",
                              entry_index=index) from None

    def payload(self, rule, message, extra, index):
        if extra is None:
            if rule.shape == "shm" and getattr(message, "in_pagemaps", False):
                return b""
            raise EncodeError(self.source, "entry lacks its payload ('extra')", entry_index=index)
        shape = rule.shape
        if shape == "blob":
            return _b64(extra)
        if shape == "shm":
            return _pad(_b64(extra)[: message.size], 4)
        if shape == "tcp":
            return _b64(extra["inq"]) + _b64(extra["outq"])
        if shape == "u16":
            return _pad(b"".join(int(v).to_bytes(2, "little") for v in extra), 8)
        if shape == "msgq":
            out = bytearray()
            for header, text in zip(extra[0::2], extra[1::2]):
                msg = self.message("ipc_msg", header, index)
                out += _frame(msg, self.source, index) + _pad(_b64(text)[: msg.msize], 8)
            return bytes(out)
        raise AssertionError(shape)

    def image(self, document):
        try:
            magic_name = document["magic"]
            entries = document["entries"]
        except (KeyError, TypeError):
            raise EncodeError(self.source,
                              "expected an object with 'magic' and 'entries'") from None
        if magic_name == "RAW":
            raise EncodeError(self.source, "a raw image has no JSON form to encode")
        magic = self.schema.magic_by_name.get(magic_name)
        if magic is None:
            raise EncodeError(self.source, f"unknown magic {magic_name!r}")
        out = bytearray()
        if magic_name != "INVENTORY":
            out += _U32.pack(IMG_SERVICE if magic_name in _SERVICE_IMAGES else IMG_COMMON)
        out += _U32.pack(magic)
        layout = LAYOUTS.get(magic_name) or Layout(message="")
        if not isinstance(entries, list):
            raise EncodeError(self.source, "'entries' must be a list")
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise EncodeError(self.source, "an entry must be an object", entry_index=index)
            entry = dict(entry)
            extra = entry.pop("extra", None)
            message = self.message(layout.message_for(index), entry, index)
            out += _frame(message, self.source, index)
            try:
                if magic_name == "GHOST_FILE" and extra is not None:
                    out += _b64(extra)
                elif layout.payload is not None:
                    out += self.payload(layout.payload, message, extra, index)
            except (ValueError, TypeError, KeyError, AttributeError) as error:
                raise EncodeError(self.source, f"bad payload ('extra'): {error}",
                                  entry_index=index) from None
        return bytes(out)


def encode_image(document: Any, source: str = "<json>") -> bytes:
    """Return the bytes of the image that ``document`` (crit's JSON form) describes."""
    return _Encoder(source).image(document)
