"""Progress bars for long work (page data), on a terminal only.

Bars go to stderr, so stdout stays clean for ``| head`` and ``--format json``.
"""

from __future__ import annotations

import contextlib
import sys

import click


class _Silent:
    """A progress bar that shows nothing (not a terminal, or asked to be quiet)."""

    def update(self, amount):
        """Ignore progress."""


@contextlib.contextmanager
def progress(total, label, *, stream=None, enabled=None):
    """Yield an object with ``update(n)``: a bar on a terminal, silent otherwise.

    ``total`` is in bytes; ``enabled`` forces the choice (tests).
    """
    stream = stream or sys.stderr
    if enabled is None:
        enabled = hasattr(stream, "isatty") and stream.isatty()
    if not enabled or not total:
        yield _Silent()
        return
    with click.progressbar(length=total, label=label, file=stream, show_eta=True,
                           show_percent=True, width=30) as bar:
        yield bar
