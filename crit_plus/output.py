"""Files crit-plus writes for the user: whole, or not at all.

A command that fails half-way (a damaged image met in the middle of a decode,
an interrupt) must not leave a truncated file that looks like a result.  The
output is written to a hidden temporary file beside the target, flushed to
disk and renamed over it only when complete; on failure the temporary file is
removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile


@contextlib.contextmanager
def whole_file(path, binary=True, permissions=None):
    """Yield a stream writing ``path`` whole or not at all (see the module).

    The file gets ``permissions``, by default what ``open`` would give it (0666
    less the umask).  A symbolic link is followed (the file it names is
    replaced, not the link); something that is not a regular file (``/dev/null``,
    a terminal, a FIFO) is written in place, as ``open`` would."""
    mode, encoding = ("wb", None) if binary else ("w", "utf-8")
    try:
        in_place = not stat.S_ISREG(os.stat(path).st_mode)  # follows links (/dev/stdout)
    except FileNotFoundError:
        in_place = False
    if in_place:
        with open(path, mode, encoding=encoding) as stream:
            yield stream
        return
    path = os.path.realpath(os.fspath(path))
    directory, base = os.path.split(path)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{base}.",
                                             suffix=".partial")
    try:
        with os.fdopen(descriptor, mode, encoding=encoding) as stream:
            os.fchmod(stream.fileno(),
                      _default_permissions() if permissions is None else permissions)
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def output_stream(path, binary=False):
    """``-o PATH`` of a command: a :func:`whole_file` stream, or standard output when
    ``path`` is None or ``-`` (left open)."""
    if path in (None, "-"):
        yield sys.stdout.buffer if binary else sys.stdout
        return
    with whole_file(path, binary=binary) as stream:
        yield stream


def _default_permissions():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
