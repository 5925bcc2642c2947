"""The GNU build-id of an ELF file, found the way CRIU finds it (``criu/files-reg.c``).

CRIU stores a mapped or opened ELF file's build-id at dump (``reg_file_entry.build_id``,
the note's bytes as little-endian u32 words, zero-padded) and compares it at
restore: "File X has bad build-ID".  It looks only in the first 1 MiB of the
file, through the program headers::

    ELF     ::= e_ident[16] (0x7f 'E' 'L' 'F', EI_CLASS 1|2, EI_DATA 1 little|2 big, ...)
                ... e_phoff (u32|u64) ... e_phentsize u16, e_phnum u16
    PHDR    ::= p_type u32 ...; p_type 4 = PT_NOTE: p_offset, p_filesz say where its notes are
    NOTE    ::= n_namesz u32, n_descsz u32, n_type u32, name (padded to 4), desc (padded to 4)
    build-id = desc of the first note with n_type 3 (NT_GNU_BUILD_ID), 1..512 bytes

Every offset is checked against the bytes read before it is used; a file that
is not ELF, or is malformed, has no build-id (None), as for CRIU.
"""

from __future__ import annotations

import struct

from ..files import open_in_tree

#: CRIU maps at most this much of a file to look for the build-id (``BUILD_ID_MAP_SIZE``).
SCAN_SIZE = 1 << 20
PT_NOTE = 4
NT_GNU_BUILD_ID = 3
_MAX_DESC = 512

# (phoff offset, phoff format, phentsize/phnum offset, phdr: (p_type, p_offset, p_filesz) formats)
_LAYOUT = {
    1: (28, "I", 42, ((0, "I"), (4, "I"), (16, "I"))),
    2: (32, "Q", 54, ((0, "I"), (8, "Q"), (32, "Q"))),
}


def build_id(path):
    """The build-id bytes of the ELF file at ``path``, or None (not ELF, none, unreadable,
    not a regular file: a FIFO or device node is never opened, a link never followed)."""
    try:
        with open(open_in_tree(path)[0], "rb") as stream:
            data = stream.read(SCAN_SIZE)
    except OSError:
        return None
    return build_id_of(data)


def build_id_of(data):
    """The build-id in ``data`` (the first bytes of a file), or None."""
    if len(data) < 64 or data[:4] != b"\x7fELF":
        return None
    layout = _LAYOUT.get(data[4])
    order = {1: "<", 2: ">"}.get(data[5])
    if layout is None or order is None:
        return None
    phoff_at, phoff_fmt, counts_at, fields = layout

    def get(fmt, offset):
        size = struct.calcsize(fmt)
        if offset < 0 or offset + size > len(data):
            return None
        return struct.unpack_from(order + fmt, data, offset)[0]

    phoff = get(phoff_fmt, phoff_at)
    phentsize, phnum = get("H", counts_at), get("H", counts_at + 2)
    if not phoff or not phnum or not phentsize:
        return None
    for index in range(phnum):
        header = phoff + index * phentsize
        values = [get(fmt, header + at) for at, fmt in fields]
        if None in values:
            return None
        p_type, p_offset, p_filesz = values
        if p_type != PT_NOTE:
            continue
        found = _note(get, data, p_offset, min(p_offset + p_filesz, len(data)))
        if found is not None:
            return found
    return None


def _note(get, data, start, end):
    position = start
    while position + 12 <= end:
        namesz, descsz, kind = get("I", position), get("I", position + 4), get("I", position + 8)
        desc = position + 12 + round_up4(namesz)
        if kind == NT_GNU_BUILD_ID:
            if not 0 < descsz <= _MAX_DESC or desc + descsz > len(data):
                return None
            return bytes(data[desc:desc + descsz])
        position = desc + round_up4(descsz)
    return None


def round_up4(value):
    """``value`` rounded up to a multiple of 4 (CRIU stores build-ids in u32 words)."""
    return (value + 3) & ~3




def words_to_bytes(words):
    """CRIU's ``repeated uint32 build_id`` as the bytes it was copied from."""
    return b"".join(struct.pack("<I", word & 0xFFFFFFFF) for word in words)


__all__ = ["SCAN_SIZE", "build_id", "build_id_of", "round_up4", "words_to_bytes"]
