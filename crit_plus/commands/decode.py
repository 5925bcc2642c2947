"""``decode`` and ``show``: one image as crit's JSON, streamed entry by entry."""

from __future__ import annotations

import os
import re
import sys

import click

from decoders.errors import BadMagicError, DecodeError
from decoders.framing import open_untrusted, read_stream
from decoders.image import image_from_bytes, open_image
from decoders.jsonform import Converter
from decoders.schema import CURRENT_CRIU

from ..describe import count_text
from ..jsontext import write_document
from ..output import output_stream

INDENT = 4  # crit's indent for --pretty and show


class NotAnImageError(DecodeError, ValueError):
    """The file is not an image crit decodes: a raw image, or a text file CRIU or
    liblxc writes beside the images (its one line says which)."""


#: liblxc's ``tty.info`` (``lxc/criu.c``): the container console's ``tty[rdev:dev]``,
#: handed to ``criu restore --inherit-fd``.
_TTY_INFO = re.compile(rb"^tty\[[0-9a-f]+:[0-9a-f]+\]\s*$")
_SNIFF = 4096


def text_file_kind(path):
    """What a file without a magic is, in words, when it is text CRIU or liblxc writes
    (or any text); None for anything else."""
    from ..sources.logs import sniff_kind

    try:
        with open(open_untrusted(path)[0], "rb") as stream:
            head = stream.read(_SNIFF)
        kind = sniff_kind(path)
    except OSError:
        return None
    if kind == "criu":
        return "CRIU's log of a run (text), not an image: `crit-plus explain` reads it"
    if kind == "lxc":
        return "liblxc's log (text), not an image: `crit-plus explain` reads it"
    if _TTY_INFO.match(head):
        return ("liblxc's tty.info (text: the console's tty[rdev:dev], handed to "
                "criu restore --inherit-fd), not an image")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if head and b"\0" not in head:
        return "a text file, not a CRIU image (no magic)"
    return None


def refuse_raw(image):
    """Raise :class:`NotAnImageError` for a raw image: crit refuses one too (``Unknown
    magic``): it has no magic and no entries, so no JSON form ``encode`` takes back."""
    if image.is_raw:
        from decoders.kinds import RAW_STEMS

        path = image.path
        image.close()
        raise NotAnImageError(path, (
            f"a raw image ({RAW_STEMS[str(image.raw_kind)]}, {image.size} bytes): no magic "
            "and no entries, so nothing to decode (crit refuses it too)"))
    return image


def load_image(path):
    """Open ``path`` (``-`` or None: standard input) as an image crit decodes; a raw
    image or a text file (a log, ``tty.info``) is a :class:`NotAnImageError`."""
    if path in (None, "-"):
        return refuse_raw(image_from_bytes(read_stream(sys.stdin.buffer, "<stdin>")))
    try:
        return refuse_raw(open_image(path, pipes=True))  # named by the user: a FIFO too
    except BadMagicError as error:
        what = text_file_kind(path) if error.expected is None else None
        if what is None:
            raise
        raise NotAnImageError(os.fspath(path), what) from None


def write_image_json(image, out, pretty=False, nopl=False, converter=None):
    """Write ``image`` as crit writes it: ``json.dump(img, indent=4 if pretty)``.

    Entries are converted and written a batch at a time, so memory stays
    bounded whatever the image size; the text is the same as crit's.
    """
    converter = converter or Converter(image.schema)
    entries = image.json_entries(pretty=pretty, nopl=nopl, converter=converter)
    write_document(image.magic_name, entries, out, pretty)


def report_unknown_fields(converter, schema):
    """Tell stderr which fields the loaded schema could not name."""
    seen = converter.unknown_seen
    if not seen:
        return
    total = sum(seen.values())
    listed = ", ".join(f"{name} ×{count}" for name, count in sorted(seen.items())[:6])
    more = ", ..." if len(seen) > 6 else ""
    click.echo(
        f"crit-plus: {count_text(total, 'field')} unknown to the CRIU "
        f"{schema.criu_version or '?'} schema "
        f"({listed}{more}), shown by number in \"_unknown_fields\"; the CRIU {CURRENT_CRIU} "
        "schema names them: run `make schema` (see `crit-plus version`)",
        err=True,
    )


def _checkpoint_of(in_path):
    """The checkpoint the image ``in_path`` is in (:func:`crit_plus.sources.checkpoint_of`);
    None for standard input.  The JSON never lands there."""
    from ..sources import checkpoint_of

    return None if in_path in (None, "-") else checkpoint_of(in_path)


def _decode(in_path, out_path, pretty, nopl):
    with load_image(in_path) as image:
        converter = Converter(image.schema)
        with output_stream(out_path, inputs=[in_path, _checkpoint_of(in_path)]) as out:
            write_image_json(image, out, pretty=pretty, nopl=nopl, converter=converter)
            out.write("\n")
            out.flush()
        report_unknown_fields(converter, image.schema)


@click.command()
@click.option("-i", "--in", "in_path", metavar="IMG", help="Image to read (default: stdin).")
@click.option("-o", "--out", "out_path", metavar="FILE", help="Where to write (default: stdout).")
@click.option("--pretty", is_flag=True, help="Indent, and show addresses in hex, flags by name.")
@click.option("--nopl", is_flag=True, help="Do not show payloads (pipe data, socket queues, ...).")
def decode(in_path, out_path, pretty, nopl):
    """Convert an image to JSON, exactly as CRIU's `crit decode` does.

    Every image kind CRIU writes is understood; raw images (pages-*.img,
    route-*, *.tar.gz.img), which crit refuses, are refused with their kind and
    size, and a text file (dump.log, tty.info) is named in one line.  Fields the
    loaded CRIU schema does not know are kept under "_unknown_fields".

    \b
    Example:
      crit-plus decode -i pagemap-1.img --pretty | less
    """
    _decode(in_path, out_path, pretty, nopl)


@click.command()
@click.argument("image", metavar="IMG")
@click.option("--nopl", is_flag=True, help="Do not show payloads (pipe data, socket queues, ...).")
def show(image, nopl):
    """Show an image as pretty JSON (crit's `show`: decode --pretty).

    \b
    Example:
      crit-plus show core-1.img | head
    """
    _decode(image, None, True, nopl)


def register(group):
    """Add ``decode`` and ``show`` to the CLI group."""
    group.add_command(decode)
    group.add_command(show)
