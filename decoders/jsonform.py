"""Messages to and from the JSON form CRIU's ``crit`` uses.

The dictionary of a message has one key per set field, in field-number order:

- integers as numbers; with ``pretty`` (names from pycriu's own tables), fields CRIU marks
  ``(criu).hex`` as ``"0x1f"`` (and every integer inside a hex-marked sub-message), ``dev`` as
  ``"major:minor"``, ``flags`` as ``"PROT_READ | PROT_WRITE"``, ``dict`` as
  names (socket family/type/state, task state), ``ipadd`` as one address;
- enums by name, bytes base64-encoded (``unix_name`` quoted-printable),
  strings as text (bytes that are not UTF-8 as ``\\xHH``: :mod:`decoders.text`),
  nested messages as dictionaries, repeated fields as lists.

crit-plus adds what crit drops: fields the loaded schema does not know.  A field
listed in :data:`decoders.schema.FIELD_OVERLAYS` gets its real name (so a CRIU
4.2 pagemap entry read with an older schema still says ``nr_pages``); any other
goes into ``"_unknown_fields"``: a list of ``{"number", "wire_type", "value"}``
with integers as numbers and length-delimited values (and the content of
groups, which CRIU never writes) base64-encoded.

Task state names differ from pycriu on purpose: CRIU writes 1 (alive),
2 (dead: a zombie) and 3 (stopped); pycriu's table says 3 is "Zombie" and
6 "Stopped", which is wrong.

Conversion plans are compiled once per message type, so a pagemap of millions
of entries costs one dictionary lookup per field.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
import ipaddress
import keyword
import os
import quopri
import sys
from typing import Any

from google.protobuf.descriptor import FieldDescriptor as FD

try:
    from google.protobuf import unknown_fields as _uf
except ImportError:  # protobuf < 4.24: messages have UnknownFields()
    _uf = None

from .schema import Schema, get_schema
from .text import image_text

UNKNOWN_KEY = "_unknown_fields"
#: Distinct flag values whose text each field remembers (real images have a few).
FLAG_TEXTS_KEPT = 4096
KERN_MINORBITS = 20

WIRE_TYPES = {0: "varint", 1: "fixed64", 2: "length", 3: "group", 5: "fixed32"}
#: Wire types whose value is bytes (a group's value is its content, without the end key).
_BYTES_WIRE_TYPES = (2, 3)
WIRE_NUMBERS = {name: number for number, name in WIRE_TYPES.items()}

#: Task state names as CRIU writes them.  pycriu's own table (1 Alive,
#: 3 Zombie, 6 Stopped) is wrong for images: 2 is a zombie, 3 stopped.
TASK_STATE_NAMES = {1: "Alive", 2: "Zombie", 3: "Stopped"}


def _value_tables(schema):
    """The flag and value-name tables of the loaded pycriu, task states corrected."""
    pb2dict = schema.pb2dict
    dict_maps = {name: maps[0] for name, maps in pb2dict.dict_maps.items()}
    dict_maps["gen"] = dict(dict_maps.get("gen", {}), task_state=TASK_STATE_NAMES)
    return dict(pb2dict.flags_maps), dict_maps


_INT_TYPES = frozenset(
    (FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_SINT32,
     FD.TYPE_SINT64, FD.TYPE_FIXED32, FD.TYPE_FIXED64, FD.TYPE_SFIXED32, FD.TYPE_SFIXED64)
)


def flags_to_text(value: int, flag_map: Sequence[tuple[str, int]]) -> str:
    """``5`` with the mmap.prot map → ``"PROT_READ | PROT_EXEC"`` (leftover bits in hex)."""
    names = [name for name, bit in flag_map if value & bit]
    rest = value & ~sum(bit for _, bit in flag_map)
    if rest:
        names.append(f"{rest:#x}")
    return " | ".join(names)


def text_to_flags(text: str, flag_map: Sequence[tuple[str, int]]) -> int:
    """The inverse of :func:`flags_to_text`; numbers are accepted for any part."""
    if text == "":
        return 0
    bits = dict(flag_map)
    return sum(
        bits[part] if part in bits else int(part, 0)
        for part in (piece.strip() for piece in text.split("|"))
    )


def encode_bytes(value: bytes) -> str:
    """Bytes as crit shows them: base64 with a newline every 76 characters."""
    return base64.encodebytes(value).decode("ascii")


def _dev_to_text(value, old_encoding):
    if old_encoding:  # user-space dev_t, as stat() returns it
        return f"{os.major(value)}:{os.minor(value)}"
    return f"{value >> KERN_MINORBITS}:{value & ((1 << KERN_MINORBITS) - 1)}"


def _text_to_dev(text, old_encoding):
    major, minor = (int(part) for part in text.split(":"))
    if old_encoding:
        return os.makedev(major, minor)
    return (major << KERN_MINORBITS) | minor


def _swap_to_network(word):
    """A 32-bit word as the kernel keeps an address (network byte order in host
    memory), read as the number it means: ``ntohl`` (and ``htonl``, its own inverse)."""
    return int.from_bytes(word.to_bytes(4, sys.byteorder), "big")


def _ip_to_text(words):
    if len(words) == 1:
        return str(ipaddress.IPv4Address(_swap_to_network(words[0])))
    if len(words) == 4:
        value = 0
        for word in words:
            value = (value << 32) | _swap_to_network(word)
        return ipaddress.IPv6Address(value).compressed
    return None


def _text_to_ip(text):
    address = ipaddress.ip_address(text)
    value = int(address)
    count = 1 if address.version == 4 else 4
    return [_swap_to_network((value >> (32 * (count - 1 - i))) & 0xFFFFFFFF)
            for i in range(count)]


class _FieldPlan:
    """How one field turns into JSON and back, decided once per message type."""

    __slots__ = ("name", "number", "type", "repeated", "hex", "dev", "odev", "flags",
                 "flags_unknown", "names", "ipadd", "conv", "message", "enum")

    def __init__(self, field: Any, options: Any, flag_maps: dict, dict_maps: dict) -> None:
        self.name = field.name
        self.number = field.number
        self.type = field.type
        self.repeated = field.label == FD.LABEL_REPEATED
        self.hex = bool(options.hex)
        self.dev = bool(options.dev)
        self.odev = bool(options.odev)
        self.flags = flag_maps.get(options.flags) if options.flags else None
        self.flags_unknown = bool(options.flags) and self.flags is None
        names = dict_maps.get(options.dict, {}).get(field.name) if options.dict else None
        self.names = names
        self.ipadd = bool(options.ipadd)
        self.conv = options.conv or None
        self.message = field.message_type
        self.enum = field.enum_type

    def converter(self, pretty, in_hex):
        """A function turning one value into JSON, or None when it is its own JSON
        (and for sub-messages, which :meth:`Converter.message` converts)."""
        kind = self.type
        if kind in (FD.TYPE_BYTES, FD.TYPE_ENUM):
            return self.to_json
        if kind == FD.TYPE_STRING:  # not UTF-8 in the image: bytes, shown escaped
            return image_text
        if kind not in _INT_TYPES or not pretty:
            return None
        if in_hex or self.hex or self.flags_unknown:
            return "0x%x".__mod__
        if self.dev:
            return lambda value: _dev_to_text(value, self.odev)
        if self.flags is not None:
            texts: dict[int, str] = {}  # few distinct values per field: remember each one's text

            def flags(value, flag_map=self.flags):
                text = texts.get(value)
                if text is None:
                    text = flags_to_text(value, flag_map)
                    if len(texts) < FLAG_TEXTS_KEPT:  # bounded, whatever an image holds
                        texts[value] = text
                return text
            return flags
        if self.names is not None:
            return lambda value, names=self.names: names.get(value, value)
        return None

    def to_json(self, value):
        """One bytes value (base64, or crit's quoted-printable for unix socket names)
        or enum value (its name) of this field as JSON."""
        if self.type == FD.TYPE_BYTES:
            if self.conv == "unix_name":
                return quopri.encodestring(value).decode("latin-1")
            return encode_bytes(value)
        enum_value = self.enum.values_by_number.get(value)
        return enum_value.name if enum_value is not None else value

    def from_json(self, value, converter, target):
        """Convert one JSON value of this field back; sub-messages fill ``target``."""
        kind = self.type
        if kind == FD.TYPE_MESSAGE:
            converter.fill(target, value)
            return None
        if kind == FD.TYPE_BYTES:
            if self.conv == "unix_name":
                return quopri.decodestring(value.encode("latin-1"))
            return base64.decodebytes(value.encode("ascii"))
        if kind == FD.TYPE_ENUM:
            if isinstance(value, str):
                return self.enum.values_by_name[value].number
            return value
        if kind in _INT_TYPES and isinstance(value, str):
            if self.dev and ":" in value:
                return _text_to_dev(value, self.odev)
            if self.flags is not None:
                return text_to_flags(value, self.flags)
            if self.names is not None:
                for number, name in self.names.items():
                    if name == value:
                        return number
            return int(value, 0)
        return value


class Converter:
    """Message ⇄ JSON dictionary, with plans cached per message type."""

    def __init__(self, schema: Schema | None = None) -> None:
        self.schema = schema or get_schema()
        self._plans: dict[str, dict] = {}
        # the generated functions depend on the schema only: made once per schema
        self._compiled = self.schema.json_functions
        self._flag_maps, self._dict_maps = _value_tables(self.schema)
        self.unknown_seen: dict[str, int] = {}  # "message.number" -> count, for the stderr note

    def plan(self, descriptor: Any) -> dict:
        """The field plans of a message type, by field number."""
        plans = self._plans.get(descriptor.full_name)
        if plans is None:
            plans = {
                f.number: _FieldPlan(f, self.schema.criu_options(f), self._flag_maps,
                                     self._dict_maps)
                for f in descriptor.fields
            }
            self._plans[descriptor.full_name] = plans
        return plans

    # -- message → JSON ------------------------------------------------------------
    def readers(self, descriptor: Any, pretty: bool, in_hex: bool) -> Any:
        """``(name, repeated, convert, ipadd, nested_hex)`` per field in number order.

        ``convert`` is None where the value is its own JSON (plain integers,
        strings, booleans); ``nested_hex`` is set for sub-messages (None otherwise).
        """
        readers = []
        plans = self.plan(descriptor)
        for number in sorted(plans):
            plan = plans[number]
            nested = (in_hex or plan.hex) if plan.type == FD.TYPE_MESSAGE else None
            readers.append((plan.name, plan.repeated, plan.converter(pretty, in_hex),
                            pretty and plan.ipadd, nested))
        return tuple(readers)

    def message(self, msg: Any, pretty: bool = False, in_hex: bool = False,
                check_unknown: bool = True) -> dict:
        """Return the JSON dictionary of ``msg`` (set fields only, in number order).

        ``check_unknown=False`` skips looking for fields the schema does not know
        (the caller knows there are none: :meth:`decoders.image.Image.json_entries`
        checks a whole batch of entries at once).
        """
        key = (msg.DESCRIPTOR.full_name, pretty, in_hex)
        function = self._compiled.get(key)
        if function is None:
            function = self._compiled[key] = self._compile(msg.DESCRIPTOR, pretty, in_hex)
        return function(msg, check_unknown, self)

    def _compile(self, descriptor, pretty, in_hex):
        """One Python function that converts messages of ``descriptor``: the fields
        unrolled, so a pagemap of millions of entries runs no loop per field.
        Generated source, like :mod:`dataclasses` does for ``__init__``."""
        env = {"_unknown_fields": unknown_fields, "_ip_to_text": _ip_to_text,
               "_descriptor": descriptor, "_pretty": pretty}
        lines = ["def convert(msg, check, conv):", "    out = {}", "    has = msg.HasField"]
        for i, (name, repeated, convert, ipadd, nested) in enumerate(
                self.readers(descriptor, pretty, in_hex)):
            get = f"getattr(msg, {name!r})" if keyword.iskeyword(name) else f"msg.{name}"
            env[f"_c{i}"] = convert
            if nested is not None:
                one = f"conv.message({{}}, _pretty, {nested!r}, check)"
            elif convert is not None:
                one = f"_c{i}({{}})"
            else:
                one = "{}"
            if not repeated:
                lines += [f"    if has({name!r}):", f"        out[{name!r}] = " + one.format(get)]
                continue
            lines += [f"    values = {get}", "    if values:"]
            if ipadd:
                lines += ["        text = _ip_to_text(list(values))",
                          "        if text is not None:",
                          f"            out[{name!r}] = [text]",
                          "        else:",
                          f"            out[{name!r}] = " + _list_of(one)]
            else:
                lines.append(f"        out[{name!r}] = " + _list_of(one))
        lines += ["    if check:", "        unknown = _unknown_fields(msg)", "        if unknown:",
                  "            conv._add_unknown(_descriptor, out, unknown, _pretty)",
                  "    return out"]
        exec("\n".join(lines), env)  # noqa: S102 (source made here from field names)
        return env["convert"]

    def _add_unknown(self, descriptor, out, unknown, pretty):
        overlays = {o.number: o for o in self.schema.overlays_for(descriptor.name, descriptor)}
        rest = []
        for number, wire_type, value in unknown:
            overlay = overlays.get(number)
            if overlay is not None and wire_type in (0, 1, 5):
                for old_number, new_name in overlay.renames.items():
                    old_plan = self.plan(descriptor).get(old_number)
                    if old_plan is not None and old_plan.name in out:
                        out[new_name] = out.pop(old_plan.name)
                out[overlay.name] = value
                continue
            key = f"{descriptor.name}.{number}"
            self.unknown_seen[key] = self.unknown_seen.get(key, 0) + 1
            shown = encode_bytes(value) if isinstance(value, bytes) else value
            rest.append({"number": number, "wire_type": WIRE_TYPES.get(wire_type, wire_type),
                         "value": shown})
        if overlays:
            numbers = {p.name: n for n, p in self.plan(descriptor).items()}
            for overlay in overlays.values():
                numbers[overlay.name] = overlay.number
                numbers.update({name: n for n, name in overlay.renames.items()})
            ordered = sorted(out.items(), key=lambda item: numbers.get(item[0], 1 << 30))
            out.clear()
            out.update(ordered)
        if rest:
            out[UNKNOWN_KEY] = rest

    # -- JSON → message ------------------------------------------------------------
    def fill(self, msg: Any, data: dict) -> Any:
        """Set the fields of ``msg`` from its JSON dictionary ``data``."""
        descriptor = msg.DESCRIPTOR
        plans = self.plan(descriptor)
        by_name = {p.name: p for p in plans.values()}
        extra = bytearray()
        overlays = self.schema.overlays_for(descriptor.name, descriptor)
        renamed = {}
        applied = []
        for overlay in overlays:
            # The new form has the overlay's name *and* the new names of renamed
            # fields; otherwise the name is the old schema's own field.
            if overlay.name in data and all(n in data for n in overlay.renames.values()):
                extra += wire_field(overlay.number, 0, int(data[overlay.name]))
                applied.append(overlay.name)
                for old_number, new_name in overlay.renames.items():
                    renamed[new_name] = plans[old_number].name
        for key, value in data.items():
            if key == UNKNOWN_KEY:
                for item in value:
                    wire = WIRE_NUMBERS.get(item["wire_type"], item["wire_type"])
                    raw = item["value"]
                    if wire in _BYTES_WIRE_TYPES:
                        raw = base64.decodebytes(raw.encode("ascii"))
                    extra += wire_field(item["number"], wire, raw)
                continue
            if key in applied:
                continue
            plan = by_name.get(renamed.get(key, key))
            if plan is None:
                raise ValueError(f"{descriptor.name} has no field {key!r}")
            self._set(msg, plan, value)
        if extra:
            msg.MergeFromString(bytes(extra))
        return msg

    def _set(self, msg, plan, value):
        if plan.repeated:
            container = getattr(msg, plan.name)
            if plan.ipadd and value and isinstance(value[0], str):
                container.extend(_text_to_ip(value[0]))
                return
            for item in value:
                if plan.type == FD.TYPE_MESSAGE:
                    self.fill(container.add(), item)
                else:
                    container.append(plan.from_json(item, self, None))
        elif plan.type == FD.TYPE_MESSAGE:
            sub = getattr(msg, plan.name)
            sub.SetInParent()
            self.fill(sub, value)
        else:
            setattr(msg, plan.name, plan.from_json(value, self, None))


def _list_of(one):
    """Generated source of a list of ``one`` (a ``{}`` template) over ``values``."""
    return "list(values)" if one == "{}" else f"[{one.format('value')} for value in values]"


def unknown_fields(msg: Any) -> tuple[tuple[int, int, Any], ...]:
    """Return the fields of ``msg`` its schema does not know: (number, wire type, value).

    Length-delimited values and groups (their content) come back as ``bytes``,
    the others as ``int``; straight from protobuf's set of unknown fields.
    """
    fields = msg.UnknownFields() if _uf is None else _uf.UnknownFieldSet(msg)
    if not len(fields):
        return ()
    return tuple((f.field_number, f.wire_type, _group_bytes(f.data) if f.wire_type == 3
                  else f.data) for f in fields)


def _group_bytes(fields):
    """The wire bytes of a group's fields (protobuf gives them as a field set)."""
    if isinstance(fields, (bytes, bytearray)):
        return bytes(fields)
    return b"".join(wire_field(f.field_number, f.wire_type, f.data) for f in fields)


def _varint(value):
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def wire_field(number: int, wire_type: int, value: Any) -> bytes:
    """Encode one field in protobuf wire format."""
    key = _varint((number << 3) | wire_type)
    if wire_type == 0:
        return key + _varint(value)
    if wire_type == 1:
        return key + int(value).to_bytes(8, "little")
    if wire_type == 5:
        return key + int(value).to_bytes(4, "little")
    if wire_type == 2:
        return key + _varint(len(value)) + bytes(value)
    if wire_type == 3:  # a group (CRIU writes none): its content, or protobuf's field set
        return key + _group_bytes(value) + _varint((number << 3) | 4)
    raise ValueError(f"unsupported wire type {wire_type}")


def overlay_value(msg: Any, name: str) -> Any:
    """The value of overlay field ``name`` in ``msg`` whether or not the schema knows it."""
    descriptor = msg.DESCRIPTOR
    field = descriptor.fields_by_name.get(name)
    for overlay in get_schema().overlays_for(descriptor.name, descriptor):
        if overlay.name == name:
            for number, _wire, value in unknown_fields(msg):
                if number == overlay.number:
                    return value
            return None
    if field is not None and msg.HasField(name):
        return getattr(msg, name)
    return None


__all__ = [
    "Converter", "UNKNOWN_KEY", "unknown_fields", "wire_field",
    "flags_to_text", "text_to_flags", "encode_bytes", "overlay_value",
]
