"""What a report gathers, before it is written: members, skips, program runs.

Gathering and writing are apart because the index, the bundle's first member,
lists everything gathered and skipped: so every member's bytes are copied once,
while gathering, into one spool file (one file descriptor and bounded memory
however many members there are) and the tar is written from the spool.  Text
copied from the machine is redacted on the way in (:mod:`.redact`): YAML
documents parsed and written again, everything else by the shape of its
secrets.  Only checkpoint images (``--include-images``) are not spooled: they
are streamed from their files at write time.

Member names are relative to the bundle's top directory, ``/``-separated.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from dataclasses import dataclass, field

from ..files import open_in_tree
from .model import Member, Skipped
from .redact import MAX_YAML, RedactionError, redact_chunks, redact_yaml

#: Bytes kept of one copied file; of a longer file the last ones are kept (logs
#: end with what went wrong), from the start of a line.
MAX_FILE = 64 << 20
_CHUNK = 1 << 20


class Spool:
    """One temporary file holding every spooled member's bytes, back to back."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()

    def append(self, chunks):
        """Write ``chunks`` at the end → ``(offset, size, sha256 hex)``."""
        self.file.seek(0, os.SEEK_END)
        offset, digest = self.file.tell(), hashlib.sha256()
        for chunk in chunks:
            self.file.write(chunk)
            digest.update(chunk)
        return offset, self.file.tell() - offset, digest.hexdigest()

    def chunks(self, offset, size):
        """The bytes of ``offset``..``offset+size``, in bounded chunks."""
        self.file.seek(offset)
        left = size
        while left:
            block = self.file.read(min(_CHUNK, left))
            if not block:
                raise OSError(f"report spool ended {left} bytes early")
            left -= len(block)
            yield block

    def reader(self, member):
        """A spooled ``member`` as a binary stream."""
        return io.BufferedReader(_Window(self.file, member.offset, member.size), _CHUNK)

    def close(self):
        """Remove the spool."""
        self.file.close()


class _Window(io.RawIOBase):
    """A read-only view of ``size`` bytes of ``file`` from ``offset``."""

    def __init__(self, file, offset, size):
        super().__init__()
        self._file, self._position, self._end = file, offset, offset + size

    def readable(self):
        """A window is read-only."""
        return True

    def readinto(self, buffer):
        """Read the next bytes of the window into ``buffer``."""
        self._file.seek(self._position)
        data = self._file.read(min(len(buffer), self._end - self._position))
        buffer[:len(data)] = data
        self._position += len(data)
        return len(data)


def _file_chunks(stream, size_hint, limit):
    """``(chunks, cut)``: a file's bytes, the last ``limit`` of them (from a line
    start) when its size says it is longer; files whose size is unknown
    (``/proc``) are read up to ``limit``."""
    cut = size_hint > limit
    if cut:
        stream.seek(size_hint - limit)
        stream.readline(_CHUNK)  # skip to the next line start

    def chunks():
        left = limit
        while left > 0:
            block = stream.read(min(_CHUNK, left))
            if not block:
                return
            left -= len(block)
            yield block
    return chunks(), cut


@dataclass
class Collection:
    """Everything gathered for one bundle, in the order it was gathered."""

    spool: Spool = field(default_factory=Spool)
    members: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    runs: list = field(default_factory=list)  # (what, Ran, member name or None)
    self_runs: list = field(default_factory=list)  # (selfrun.SelfRun, member or None)
    limit: int = MAX_FILE

    def skip(self, what, why):
        """Record that ``what`` is not in the bundle, and ``why``."""
        self.skipped.append(Skipped(what, why))

    def add_bytes(self, name, data, origin, *, redact=True, scan=None, mtime=None):
        """Add ``data`` as member ``name``; text from the machine is redacted."""
        chunks = redact_chunks([data]) if redact else [data]
        offset, size, digest = self.spool.append(chunks)
        self.members.append(Member(name, origin, size, time.time() if mtime is None else mtime,
                                   offset=offset, scan=scan, digest=digest))

    def add_text(self, name, text, origin, **options):
        """Add ``text`` (str) as member ``name``."""
        self.add_bytes(name, text.encode("utf-8", "backslashreplace"), origin, **options)

    def add_file(self, name, path, *, redact=True, scan=None, run_id=None, root=None):
        """Copy the file at ``path`` in as member ``name``; returns False (and
        records a skip) if it cannot be read.  Only a regular file is copied, and
        a symbolic link is not followed (out of ``root``, when ``path`` is under
        it: :func:`~crit_plus.files.open_in_tree`)."""
        path = os.path.abspath(path)
        try:
            with open(open_in_tree(path, root)[0], "rb") as stream:
                self.add_stream(name, stream, path, redact=redact, scan=scan, run_id=run_id)
        except OSError as error:
            self.skip(path, f"cannot be read: {error.strerror or error}")
            return False
        return True

    def add_stream(self, name, stream, origin, *, redact=True, scan=None, run_id=None):
        """Copy the binary file object ``stream`` (from its start) in as member ``name``.

        Raises OSError if it cannot be read.
        """
        stream.seek(0)
        info = os.fstat(stream.fileno())
        chunks, cut = _file_chunks(stream, info.st_size, self.limit)
        offset, size, digest = self.spool.append(redact_chunks(chunks) if redact else chunks)
        self.members.append(Member(name, origin, size, info.st_mtime, offset=offset, scan=scan,
                                   digest=digest, cut=cut, run_id=run_id))

    def add_yaml(self, name, data, origin, *, mtime=None, header=b""):
        """Add the YAML document ``data`` (bytes) as member ``name``, its secrets
        hidden by parsing (:func:`~.redact.redact_yaml`), after the comment lines
        ``header``; a document that cannot be parsed is skipped, not copied.
        Returns True if added."""
        try:
            redacted = redact_yaml(data, name)
        except RedactionError as error:
            self.skip(origin, f"not copied: its secrets cannot be found ({error})")
            return False
        self.add_bytes(name, header + redacted, origin, mtime=mtime)
        return True

    def add_yaml_file(self, name, path):
        """:meth:`add_yaml` of the file at ``path`` (at most :data:`~.redact.MAX_YAML` bytes
        read; never waits on a FIFO)."""
        from decoders.framing import open_untrusted

        path = os.path.abspath(path)
        try:
            fd, info = open_untrusted(path)
            with open(fd, "rb") as stream:
                data = stream.read(MAX_YAML + 1)
        except OSError as error:
            self.skip(path, f"cannot be read: {error.strerror or error}")
            return False
        return self.add_yaml(name, data, path, mtime=info.st_mtime)

    def add_streamed(self, name, path):
        """Add the file at ``path`` as member ``name``, copied as is when the bundle
        is written (checkpoint images); returns False (and records a skip) if it
        cannot be read (only regular files, links not followed)."""
        path = os.path.abspath(path)
        try:
            with open(open_in_tree(path)[0], "rb") as stream:
                info = os.fstat(stream.fileno())
        except OSError as error:
            self.skip(path, f"cannot be read: {error.strerror or error}")
            return False
        self.members.append(Member(name, path, info.st_size, info.st_mtime, path=path))
        return True

    def close(self):
        """Remove the spool."""
        self.spool.close()


__all__ = ["Collection", "MAX_FILE", "Spool"]
