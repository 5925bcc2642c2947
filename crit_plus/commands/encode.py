"""``encode``: crit's JSON form back into an image file."""

from __future__ import annotations

import json
import sys

import click

from decoders.encode import EncodeError, encode_image

from ..output import output_stream, refuse_inputs, refuse_terminal


@click.command()
@click.option("-i", "--in", "in_path", metavar="JSON", help="JSON to read (default: stdin).")
@click.option("-o", "--out", "out_path", metavar="IMG",
              help="Image to write (default, or -: stdout, never a terminal).")
def encode(in_path, out_path):
    """Convert crit's JSON form of an image back to the image (crit's `encode`).

    Accepts both plain and --pretty JSON.  `decode` then `encode` gives back
    the same bytes.  Never writes into a checkpoint unless you name the file,
    nor an image's bytes to a terminal.

    \b
    Example:
      crit-plus decode -i core-1.img -o core.json
      crit-plus encode -i core.json -o /tmp/core-1.img
    """
    source = in_path or "<stdin>"
    refuse_terminal(out_path, "an image's bytes")  # before reading, as the next
    refuse_inputs(out_path, [in_path])  # -o never replaces the input
    try:
        if in_path in (None, "-"):
            document = json.load(sys.stdin)
        else:
            with open(in_path, encoding="utf-8") as handle:
                document = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise EncodeError(source,
                          f"not JSON ({error}); encode expects what decode writes") from None
    data = encode_image(document, source)
    with output_stream(out_path, binary=True) as out:
        out.write(data)
        out.flush()


def register(group):
    """Add ``encode`` to the CLI group."""
    group.add_command(encode)
