"""``ifaddr-<ns>.img``, ``route-<ns>.img``, ``route6-<ns>.img``, ``rule-<ns>.img``: the
addresses, routes and rules of a network namespace, as ``ip addr|route|rule save`` wrote
them (CRIU's ``criu/net.c`` runs iproute2 with the image as its standard output).

Such an image has no CRIU magic.  iproute2 writes a u32 magic of its own (``ip addr
save``: ``0x47361222``, ``ip route save``: ``0x45311224``, ``ip rule save``:
``0x71706986``), then the kernel's netlink dump messages back to back, each a
``struct nlmsghdr`` (u32 length, u16 type, u16 flags, u32 seq, u32 pid) and its body
(``RTM_NEWADDR``, ``RTM_NEWROUTE``, ``RTM_NEWRULE``), at 4-byte aligned offsets.  A bare
magic is an empty table.  The bodies are decoded by pyroute2's message classes
(``ifaddrmsg``, ``rtmsg``, ``fibmsg``), which parse a buffer without a socket.

The images come from other hosts: lengths are checked against the file, at most
:data:`MAX_MESSAGES` messages are read, and anything wrong is one
:class:`~decoders.errors.DecodeError` naming the file and offset.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

from .errors import DecodeError, EntryDecodeError, MissingImageError, StrPath, TruncatedError
from .framing import ImageBytes
from .image import Source

#: Most messages read from one image: a full Internet routing table is about a million.
MAX_MESSAGES = 1 << 21
_HEADER = struct.Struct("<IHHII")
_RTM_NEWADDR, _RTM_NEWROUTE, _RTM_NEWRULE = 20, 24, 32

#: image stem → (what it holds, iproute2's magic, the netlink message type)
KINDS = {
    "ifaddr": ("address", 0x47361222, _RTM_NEWADDR),
    "route": ("route", 0x45311224, _RTM_NEWROUTE),
    "route6": ("route", 0x45311224, _RTM_NEWROUTE),
    "rule": ("rule", 0x71706986, _RTM_NEWRULE),
}


@dataclass(frozen=True, slots=True)
class NetlinkMessage:
    """One message of an ``ip ... save`` dump: ``kind`` (``address``, ``route``,
    ``rule``), the fixed fields of its body (``ifaddrmsg``/``rtmsg``/``fibmsg``: family,
    prefix lengths, scope, table...) and its attributes, as pyroute2 names them
    (``IFA_LOCAL``, ``RTA_GATEWAY``, ``FRA_PRIORITY``...), values made plain (numbers,
    text, tuples of pairs for nested ones)."""

    kind: str
    fields: tuple  # ((name, value), ...)
    attrs: tuple  # ((NAME, value), ...) in message order
    source: Source = field(compare=False)

    def field(self, name: str, default: Any = None) -> Any:
        """The fixed field ``name`` of the body (``family``, ``dst_len``...)."""
        return dict(self.fields).get(name, default)

    def attr(self, name: str, default: Any = None) -> Any:
        """The first attribute ``name`` (``IFA_ADDRESS``, ``RTA_OIF``...), or ``default``."""
        for key, value in self.attrs:
            if key == name:
                return value
        return default


def _classes():
    """pyroute2's message classes, imported on first use (the import costs ~0.2 s)."""
    from pyroute2.netlink.rtnl.fibmsg import fibmsg
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    return {"address": ifaddrmsg, "route": rtmsg, "rule": fibmsg}


def _plain(value: Any) -> Any:
    """A decoded attribute value as numbers, text and tuples of ``(name, value)``."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (int, float, str)) or value is None:
        return value
    attrs = value.get("attrs") if hasattr(value, "get") else None
    if attrs is not None:  # a nested attribute set (RTA_METRICS, RTA_MULTIPATH hops)
        return tuple((name, _plain(inner)) for name, inner in _pairs(attrs))
    if isinstance(value, dict):
        return tuple((str(k), _plain(v)) for k, v in value.items() if k != "header")
    if isinstance(value, (list, tuple)):
        return tuple(_plain(item) for item in value)
    return str(value)


def _pairs(attrs):
    for item in attrs:
        yield item[0], item[1]


def stem_of(path: StrPath) -> str | None:
    """``ifaddr``, ``route``, ``route6`` or ``rule`` for such an image's name, else None."""
    name = os.path.basename(os.fspath(path))
    stem = name.split("-", 1)[0]
    return stem if stem in KINDS and name.endswith(".img") else None


def read_netlink_dump(path: StrPath) -> tuple[NetlinkMessage, ...]:
    """Every message of the ``ip ... save`` image at ``path`` (its kind from its name).

    Raises :class:`~decoders.errors.MissingImageError` when it does not exist and a
    :class:`~decoders.errors.DecodeError` (file, offset, reason) when it is not such a
    dump or is cut short.
    """
    stem = stem_of(path)
    if stem is None:
        raise DecodeError(path, "not an ifaddr, route, route6 or rule image")
    kind, magic, msg_type = KINDS[stem]
    try:
        opened = ImageBytes.open(path)
    except FileNotFoundError:
        raise MissingImageError(path) from None
    with opened as image:
        data = image.view()
        size = image.size
        name = os.fspath(image.path)
        if size == 0:
            return ()
        found = image.u32(0, "iproute2's magic")
        if found != magic:
            raise DecodeError(path, f"not an `ip {kind} save` dump: magic {found:#010x}, "
                                    f"expected {magic:#010x}", offset=0)
        messages: list[NetlinkMessage] = []
        cls = None
        offset = 4
        while offset < size:
            index = len(messages)
            if index >= MAX_MESSAGES:
                raise DecodeError(path, f"more than {MAX_MESSAGES} messages", offset, index)
            if size - offset < _HEADER.size:
                raise TruncatedError(path, "netlink message header", _HEADER.size,
                                     size - offset, offset, index)
            length, found_type = _HEADER.unpack_from(data, offset)[:2]
            if length < _HEADER.size:
                raise DecodeError(path, f"netlink message length {length} is below its "
                                        f"header's {_HEADER.size}", offset, index)
            if length > size - offset:
                raise TruncatedError(path, "netlink message", length, size - offset, offset,
                                     index)
            if found_type != msg_type:
                raise DecodeError(path, f"netlink message type {found_type}, expected "
                                        f"{msg_type} for {stem} images", offset, index)
            cls = cls or _classes()[kind]
            messages.append(_decode(cls, kind, bytes(data[offset:offset + length]),
                                    Source(name, offset, index)))
            offset += (length + 3) & ~3
        return tuple(messages)


def _decode(cls, kind, data, source):
    try:
        msg = cls(data)
        msg.decode()
        fields = tuple((name, _plain(msg[name])) for name, _fmt in msg.fields)
        attrs = tuple((name, _plain(value)) for name, value in _pairs(msg["attrs"]))
    except Exception as error:  # noqa: BLE001 - pyroute2 raises what it meets (struct.error...)
        raise EntryDecodeError(source.path, f"{kind} netlink message",
                               f"{type(error).__name__}: {error}", source.offset,
                               source.index) from None
    return NetlinkMessage(kind, fields, attrs, source)
