"""``info``: what an image is, how many entries, how big."""

from __future__ import annotations

import os
import sys

import click

from decoders.framing import IMG_COMMON, IMG_SERVICE
from decoders.image import open_image

from ..render import write_fields, write_json
from .options import format_option

HEAD_MAGIC_NAMES = {IMG_COMMON: "IMG_COMMON", IMG_SERVICE: "IMG_SERVICE", None: "none"}


def image_info(path):
    """Facts about one image; ``magic`` and ``count`` are crit's `info` keys."""
    with open_image(path) as image:
        if image.is_raw:
            return dict(image.raw_info(), count=0, file=os.fspath(path))
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
    entries carry payloads are parsed, to find where each entry ends.

    \b
    Example:
      crit-plus info pagemap-1.img --format json
    """
    facts = image_info(image)
    out = sys.stdout
    if fmt == "json":
        write_json(facts, out)
    else:
        write_fields([(key, value) for key, value in facts.items()], out)


def register(group):
    """Add ``info`` to the CLI group."""
    group.add_command(info)
