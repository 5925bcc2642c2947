"""Errors raised while decoding CRIU images.

Every error is a :class:`DecodeError` that knows *where* it happened: the image
file, the index of the entry being read and the byte offset in the file.  Its
message reads like ``core-42.img: entry 0 at offset 0x8: truncated: needs 120
bytes, 64 left``.  Subclasses also inherit the matching builtin exception
(``FileNotFoundError``, ``EOFError``, ``ValueError``) so callers can catch
either.
"""

from __future__ import annotations

import os
from typing import Union

#: A path as the readers take it.
StrPath = Union[str, "os.PathLike[str]"]


class DecodeError(Exception):
    """Base error: an image could not be read as CRIU wrote it."""

    #: What holds the image when that is not where the user looked (the name of
    #: the archive it was extracted from), said first; None otherwise.
    container = None

    def __init__(self, path: StrPath | None, reason: str, offset: int | None = None,
                 entry_index: int | None = None) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.reason = reason
        self.offset = offset
        self.entry_index = entry_index
        super().__init__(self.describe())

    def describe(self) -> str:
        """Return the one-line message: file, entry, offset, reason."""
        where = [os.path.basename(self.path) if self.path else "<input>"]
        if self.container:
            where.insert(0, self.container)
        position = []
        if self.entry_index is not None:
            position.append(f"entry {self.entry_index}")
        if self.offset is not None:
            position.append(f"at offset {self.offset:#x}")
        if position:
            where.append(" ".join(position))
        return ": ".join(where + [self.reason])

    def __str__(self) -> str:
        return self.describe()

    def __reduce__(self):
        return (_rebuild, (type(self), self.__dict__.copy()))

    def detached(self) -> DecodeError:
        """This error without its traceback and the exceptions it was raised from, to be
        kept: a kept traceback keeps its frames, and their callers' frames, whose locals
        hold the error (a reference cycle that only the cyclic collector frees, which
        crit-plus pauses while a command runs)."""
        self.__traceback__ = None
        self.__context__ = None
        self.__cause__ = None
        return self


def _rebuild(cls, state):
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error.describe())
    return error


class BadMagicError(DecodeError, ValueError):
    """The file's magic is not a CRIU magic, or not the one its name implies."""

    def __init__(self, path: StrPath | None, magic: int | str, expected: str | None = None,
                 offset: int = 0) -> None:
        self.magic = magic
        self.expected = expected
        if expected is None:
            reason = f"unknown magic {magic:#010x} (not a CRIU image, or a raw one)"
        else:
            reason = f"magic {magic} does not match the file name, which implies {expected}"
        super().__init__(path, reason, offset=offset)


class TruncatedError(DecodeError, EOFError):
    """The file ends before the bytes the format promises."""

    def __init__(self, path: StrPath | None, what: str, needed: int, available: int, offset: int,
                 entry_index: int | None = None) -> None:
        self.what = what
        self.needed = needed
        self.available = available
        reason = f"truncated {what}: needs {needed} bytes, {available} left"
        super().__init__(path, reason, offset=offset, entry_index=entry_index)


class EntryDecodeError(DecodeError, ValueError):
    """An entry's bytes are not a valid message of the expected type."""

    def __init__(self, path: StrPath | None, message_type: str, detail: str, offset: int | None,
                 entry_index: int | None) -> None:
        self.message_type = message_type
        self.detail = detail
        reason = f"cannot decode {message_type}: {detail}"
        super().__init__(path, reason, offset=offset, entry_index=entry_index)


class SchemaError(DecodeError, LookupError):
    """The loaded CRIU schema (pycriu) lacks something an image needs."""


class MissingImageError(DecodeError, FileNotFoundError):
    """An image the checkpoint needs is not there."""

    def __init__(self, path: StrPath | None, reason: str = "image is missing") -> None:
        super().__init__(path, reason)


class UnreadableImageError(DecodeError, OSError):
    """The image exists but cannot be read (permissions, a directory, I/O error)."""

    def __init__(self, path: StrPath | None, error: BaseException | str) -> None:
        self.error = error
        detail = error.strerror or str(error) if isinstance(error, OSError) else str(error)
        super().__init__(path, f"cannot read: {detail}")


class PycriuNotFound(ImportError):
    """No usable pycriu (CRIU's Python library, the schema) could be loaded; the message
    says how to get one (:func:`decoders.schema.get_schema`).  Defined here so that the
    command line's error boundary does not load the schema's module."""
