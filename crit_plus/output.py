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
import sys
import tempfile


@contextlib.contextmanager
def whole_file(path, binary=True, permissions=None):
    """Yield a stream writing ``path`` whole or not at all (see the module).

    The file gets ``permissions``, by default what ``open`` would give it (0666
    less the umask)."""
    path = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(path)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{base}.",
                                             suffix=".partial")
    try:
        os.fchmod(descriptor, _default_permissions() if permissions is None else permissions)
        mode, encoding = ("wb", None) if binary else ("w", "utf-8")
        with os.fdopen(descriptor, mode, encoding=encoding) as stream:
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
