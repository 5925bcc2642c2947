"""Which generated module of a pycriu defines each message: the schema's index.

pycriu's ``images`` package builds the message classes of all of CRIU's ~75
``.proto`` files when it is imported (about 60 ms), while a command needs a
handful.  With this index, :mod:`decoders.schema` imports only the module that
defines a message, when the message is first asked for.

The index is a small text file, ``CRIT_PLUS_INDEX``, beside ``CRIT_PLUS_SCHEMA``
in the pycriu that ``make schema`` builds (``scripts/build-pycriu`` runs
``python -m decoders.schema_index PACKAGE_DIR``).  It is made from the
generated modules' source alone: each holds its ``.proto`` file as a serialized
``FileDescriptorProto``, whose top-level message names are read here without
importing protobuf.  A pycriu without an index (a distribution's) is loaded whole,
as pycriu itself does.

Format: a header line, one ``module NAME`` line per generated module (the
directory must hold exactly these, or the index is stale and ignored), one
``message NAME MODULE`` line per top-level message.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator

from .lazy import LazyPattern

INDEX_FILE = "CRIT_PLUS_INDEX"
HEADER = "crit-plus schema index 1"

#: The serialized descriptor in a generated module: ``AddSerializedFile(b'...')``
#: (protoc 3.20 and later) or ``serialized_pb=b'...'`` / ``_b('...')`` (older).
_SERIALIZED = LazyPattern(  # only when an index is made (make schema)
    rb"""(?:AddSerializedFile\(|serialized_pb=(?:_b\()?)(b?'(?:[^'\\]|\\.)*')""", re.DOTALL)
#: FileDescriptorProto's ``message_type`` field; DescriptorProto's ``name``.
_MESSAGE_TYPE = 4
_NAME = 1


class SchemaIndexError(ValueError):
    """A generated module whose messages cannot be read from its source."""


def generated_modules(images_dir: str) -> list[str]:
    """The generated modules (``*_pb2``) of a pycriu ``images`` directory, sorted."""
    return sorted(name[:-3] for name in os.listdir(images_dir) if name.endswith("_pb2.py"))


def build(images_dir: str) -> dict[str, str]:
    """Message name → the generated module defining it, for every module in ``images_dir``."""
    import ast  # only when an index is made (make schema)

    index: dict[str, str] = {}
    for module in generated_modules(images_dir):
        path = os.path.join(images_dir, module + ".py")
        with open(path, "rb") as handle:
            found = _SERIALIZED.search(handle.read())
        if found is None:
            raise SchemaIndexError(f"{path}: no serialized descriptor found")
        literal = ast.literal_eval(found.group(1).decode("latin-1"))
        data = literal if isinstance(literal, bytes) else literal.encode("latin-1")
        for name in _message_names(data, path):
            index[name] = module
    return index


def _message_names(data: bytes, path: str) -> list[str]:
    """Top-level message names of a serialized ``FileDescriptorProto``."""
    names = []
    for number, value in _fields(data, path):
        if number == _MESSAGE_TYPE:
            name = next((v for n, v in _fields(value, path) if n == _NAME), None)
            if name is None:
                raise SchemaIndexError(f"{path}: a message without a name")
            names.append(name.decode("utf-8"))
    return names


def _fields(data: bytes, path: str) -> Iterator[tuple[int, bytes]]:
    """Yield (number, bytes) of the length-delimited fields of a message; skip the rest."""
    offset = 0
    while offset < len(data):
        key, offset = _varint(data, offset, path)
        wire = key & 7
        if wire == 0:
            _, offset = _varint(data, offset, path)
        elif wire == 2:
            length, offset = _varint(data, offset, path)
            yield key >> 3, data[offset:offset + length]
            offset += length
        elif wire in (1, 5):
            offset += 8 if wire == 1 else 4
        else:
            raise SchemaIndexError(f"{path}: wire type {wire} in a descriptor")


def _varint(data: bytes, offset: int, path: str) -> tuple[int, int]:
    value = shift = 0
    while offset < len(data):
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7
    raise SchemaIndexError(f"{path}: truncated descriptor")


def write(package_dir: str) -> str:
    """Write ``package_dir``'s index (atomically); return its path."""
    images_dir = os.path.join(package_dir, "images")
    index = build(images_dir)
    lines = [HEADER]
    lines += [f"module {module}" for module in generated_modules(images_dir)]
    lines += [f"message {name} {module}" for name, module in sorted(index.items())]
    path = os.path.join(package_dir, INDEX_FILE)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(temporary, path)
    return path


def read(package_dir: str) -> dict[str, str] | None:
    """``package_dir``'s index: message name → module; None when there is none, or when
    it does not list exactly the generated modules the directory holds (stale)."""
    try:
        with open(os.path.join(package_dir, INDEX_FILE), encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        present = generated_modules(os.path.join(package_dir, "images"))
    except OSError:
        return None
    if not lines or lines[0] != HEADER:
        return None
    modules, index = [], {}
    for line in lines[1:]:
        parts = line.split()
        if len(parts) == 2 and parts[0] == "module":
            modules.append(parts[1])
        elif len(parts) == 3 and parts[0] == "message":
            index[parts[1]] = parts[2]
        else:
            return None
    known = set(modules)
    if sorted(modules) != present or not all(module in known for module in index.values()):
        return None
    return index


def main(argv: list[str]) -> int:
    """``python -m decoders.schema_index PACKAGE_DIR``: write the index of a pycriu."""
    if len(argv) != 1:
        print("usage: python -m decoders.schema_index PYCRIU_PACKAGE_DIR", file=sys.stderr)
        return 2
    try:
        print(write(argv[0]))
    except (OSError, SchemaIndexError) as error:
        print(f"schema_index: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
