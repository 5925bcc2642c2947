"""What the error boundary (:mod:`crit_plus.cli`) and the commands share: the one
line that names what went wrong with an input, and quieting standard output after
its reader went away.

Kept apart from ``cli.py`` so that commands never import the command line (no
import cycle: ``cli`` → ``commands`` → here).
"""

from __future__ import annotations

import os
import sys

from decoders.errors import DecodeError


def error_text(error: BaseException) -> str:
    """The one line that says what went wrong with an input: a
    :class:`~decoders.errors.DecodeError`'s file, entry and offset, or an OSError's
    file and reason."""
    if isinstance(error, DecodeError):
        return str(error)
    filename = getattr(error, "filename", None)
    name = f"{filename}: " if filename else ""
    return f"{name}{getattr(error, 'strerror', None) or error}"


def quiet_broken_pipe() -> None:
    """Point stdout at /dev/null so Python's exit flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
