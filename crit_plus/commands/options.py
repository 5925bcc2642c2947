"""Options and helpers every command shares."""

from __future__ import annotations

import sys

import click

FORMATS = ("table", "json")


def format_option(choices=FORMATS, default="table"):
    """``--format/-f``: how to print the result."""
    return click.option(
        "--format", "-f", "fmt", type=click.Choice(choices), default=default, show_default=True,
        help="Output format: " + ", ".join(choices) + ".",
    )


def open_output(path, binary=False):
    """A writable stream for ``-o PATH`` (stdout when PATH is None or ``-``)."""
    if path in (None, "-"):
        return sys.stdout.buffer if binary else sys.stdout
    return open(path, "wb" if binary else "w", encoding=None if binary else "utf-8")
