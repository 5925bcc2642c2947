"""The decoders' fuzz target: one input → one image file, read every way crit-plus reads one.

Input layout: byte 0 picks the image's file name (:data:`NAMES`, so the kind
follows from the name as it does in a checkpoint), the rest are the file's
bytes.  :func:`one_input` writes the file into a scratch directory and runs on
it the magic check, entry counting, lazy entries with payloads, batched
parsing, crit's JSON (plain, pretty, without payloads), the typed reader of
its kind, the files table and the page table; when the image decodes, its JSON
is encoded back and decoded again and must give the same JSON.

Only a :class:`~decoders.errors.DecodeError` may come out; anything else (or a
round trip that changes the JSON) is a finding.  ``tests/fuzz_atheris.py``
drives this with atheris (``make fuzz``); ``tests/test_fuzz_regressions.py``
replays every input kept in ``tests/fuzz_findings/`` and the seed corpus.
"""

from __future__ import annotations

import os
from pathlib import Path

from crit_plus.files import FileTable, ghost_contents
from crit_plus.memory import PageTable
from decoders.core import read_core
from decoders.encode import EncodeError, encode_image
from decoders.errors import DecodeError
from decoders.fdinfo import read_fdinfo, read_files
from decoders.ids import read_fs, read_ids
from decoders.image import image_from_bytes, open_image
from decoders.inventory import read_dump_stats, read_inventory
from decoders.mm import read_mm
from decoders.pagemap import read_pagemap
from decoders.pstree import read_pstree


def _pagemap(path):
    table = PageTable(read_pagemap(path), os.path.dirname(path), os.path.basename(path))
    table.count_pages(0, 1 << 47)
    list(table.segments(0, 1 << 20))


def _files(path):
    directory = os.path.dirname(path)
    read_files(directory)
    table = FileTable.load(directory)
    for file in table:
        table.ghost(file.id)


#: File name → the typed reader crit-plus uses for it (None: the generic path only).
READERS = {
    "inventory.img": read_inventory,
    "pstree.img": lambda path: list(read_pstree(path)),
    "core-1.img": lambda path: read_core(path, 1),
    "mm-1.img": read_mm,
    "ids-1.img": read_ids,
    "fs-1.img": read_fs,
    "pagemap-1.img": _pagemap,
    "pagemap-shmem-1.img": _pagemap,
    "fdinfo-1.img": read_fdinfo,
    "files.img": _files,
    "memfd.img": _files,
    "remap-fpath.img": _files,
    "tty-info.img": _files,
    "ghost-file-1.img": ghost_contents,
    "stats-dump": read_dump_stats,
    "pipes-data.img": None,
    "fifo-data.img": None,
    "sk-queues.img": None,
    "tcp-stream-1.img": None,
    "ipcns-shm-1.img": None,
    "ipcns-msg-1.img": None,
    "ipcns-sem-1.img": None,
    "bpfmap-data.img": None,
    "vmas-1.img": None,
    "mountpoints-1.img": None,
    "cgroup.img": None,
    "tty-data.img": None,
}
#: The names byte 0 chooses from, in a fixed order.
NAMES = tuple(READERS)


def input_for(name, data):
    """The fuzz input that makes :func:`one_input` write ``data`` as ``name``."""
    return bytes([NAMES.index(name)]) + bytes(data)


def one_input(data, directory):
    """Read ``data`` (see the module docstring) every way; raise on anything but a DecodeError."""
    if not data:
        return
    name = NAMES[data[0] % len(NAMES)]
    body = data[1:]
    path = os.path.join(directory, name)
    for old in os.listdir(directory):  # one image at a time: the others are "missing"
        os.unlink(os.path.join(directory, old))
    Path(path).write_bytes(body)
    try:
        with open_image(path) as image:
            image.count()
            for _entry in image.entries():
                pass
            for pretty, nopl in ((False, False), (True, True)):
                for _item in image.json_entries(pretty=pretty, nopl=nopl):
                    pass
            if image.layout is not None and image.layout.payload is None:
                for _item in image.iter_messages():
                    pass
            document = image.to_json(pretty=True)
    except DecodeError:
        document = None
    reader = READERS[name]
    if reader is not None:
        try:
            reader(path)
        except DecodeError:
            pass
    if document is not None:
        _round_trip(document, name)


def _round_trip(document, name):
    """decode → encode → decode gives the same JSON (as crit's encode promises).

    An entry without a required field decodes (crit shows it too) but is not
    encoded: CRIU's own reader (protobuf-c) would refuse the image.
    """
    try:
        encoded = encode_image(document, name)
    except EncodeError as error:
        if "missing required fields" in str(error):
            return
        raise AssertionError(f"{name}: its own JSON does not encode: {error}") from None
    with image_from_bytes(encoded, name) as again:
        assert again.to_json(pretty=True) == document, f"{name}: the JSON changed on a round trip"
