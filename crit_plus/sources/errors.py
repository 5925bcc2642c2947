"""Errors of source resolution: what the user typed matched no checkpoint, or an
archive was refused.

Both are :class:`~decoders.errors.DecodeError` subclasses, so the CLI's error
boundary prints them as one line and exits 1.  Their message starts with what
the user typed (or the archive's name), not with a file's basename:

    lxd:web/nope: no snapshot 'nope' of LXD instance 'web' (tried: /var/lib/lxd/...)
    ckpt.tar.zst: member '../x': refused: its path leaves the archive
"""

from __future__ import annotations

import os

from decoders.errors import DecodeError


class SourceError(DecodeError, LookupError):
    """A spec (path or ``lxd:NAME/SNAP`` name) does not lead to a checkpoint.

    ``spec`` is what the user typed, ``reason`` why it failed and ``tried`` the
    places looked at, in order; ``path`` is the file or directory concerned,
    when there is one.
    """

    def __init__(self, spec, reason, tried=(), path=None):
        self.spec = os.fspath(spec)
        self.tried = tuple(os.fspath(place) for place in tried)
        super().__init__(path if path is not None else self.spec, reason)

    def describe(self):
        """Return the one-line message: spec, reason, what was tried."""
        text = f"{self.spec}: {self.reason}"
        if self.tried:
            text += " (tried: " + ", ".join(self.tried) + ")"
        return text


class ArchiveError(SourceError, ValueError):
    """A checkpoint archive was refused or could not be read.

    ``member`` names the archive member concerned (None for the archive as a
    whole).
    """

    def __init__(self, archive, reason, member=None):
        self.member = member
        self.archive = os.fspath(archive)
        where = os.path.basename(self.archive) or self.archive
        if member is not None:
            reason = f"member {member!r}: {reason}"
        super().__init__(where, reason, path=self.archive)
