"""``info``: what an image is, how many entries, how big."""

from __future__ import annotations

import json
import os
import sys

import click

from decoders.framing import IMG_COMMON, IMG_SERVICE

from ..render import write_fields
from .decode import INDENT, load_image
from .options import format_option

HEAD_MAGIC_NAMES = {IMG_COMMON: "IMG_COMMON", IMG_SERVICE: "IMG_SERVICE", None: "none"}


def image_info(path):
    """Facts about one image; ``magic`` and ``count`` are crit's `info` keys.  A raw
    image or a text file is a :class:`~crit_plus.commands.decode.NotAnImageError`."""
    with load_image(path) as image:
        entries = image.count()
        if image.magic_name == "PAGEMAP" and entries:
            entries -= 1  # crit counts a pagemap's entries after its head (pagemap_handler)
        return {
            "magic": image.magic_name,
            "count": entries,
            "file": os.fspath(path),
            "size": image.size,
            "head_magic": HEAD_MAGIC_NAMES.get(image.head_magic, hex(image.head_magic or 0)),
            "message": image.layout.message or None,
            "payload": image.layout.payload.shape if image.layout.payload else None,
        }


@click.command()
@click.argument("image", metavar="IMG")
@format_option()
def info(image, fmt):
    """Show an image's kind, entry count and size without decoding its entries.

    Entries are counted by hopping over their size prefixes; only images whose
    entries carry payloads are parsed, to find where each entry ends.  The JSON
    is crit's `info`, byte for byte: {"magic": ..., "count": ...} (a count crit
    gets wrong, for images whose entries carry payloads, is right here).  A raw
    image or a text file (dump.log, tty.info) is said in one line, exit 1.

    \b
    Example:
      crit-plus info pagemap-1.img --format json
    """
    facts = image_info(image)
    out = sys.stdout
    if fmt == "json":  # crit: json.dump(infs, sys.stdout, indent=4); print()
        out.write(json.dumps({"magic": facts["magic"], "count": facts["count"]},
                             indent=INDENT) + "\n")
    else:
        write_fields([(key, value) for key, value in facts.items()], out)


def register(group):
    """Add ``info`` to the CLI group."""
    group.add_command(info)
