"""Files crit-plus writes for the user: whole, or not at all.

A command that fails half-way (a damaged image met in the middle of a decode,
an interrupt) must not leave a truncated file that looks like a result.  The
output is written to a hidden temporary file beside the target, flushed to
disk and renamed over it only when complete; on failure (SIGTERM included:
crit_plus/signals.py) the temporary file is removed and the target is left as it
was.

``-o -`` is standard output (:func:`output_stream`); raw bytes are never written to
a terminal (:func:`refuse_terminal`).  An output never replaces or lands among the
command's inputs (:func:`refuse_inputs`): ``decode -i D/pstree.img -o
D/pstree.img`` or ``mem dump -o D/pages-3.img`` is refused before anything is read or
written.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys


class OutputRefused(ValueError):
    """An output that must not be written: one of the inputs, inside a checkpoint, ...

    ``command`` is the command line's command path when it was raised under one
    (``crit-plus core``; None otherwise): the CLI says the refusal as a usage error,
    ``crit-plus: error: ... (see `crit-plus core --help`)``."""

    def __init__(self, message):
        super().__init__(message)
        click = sys.modules.get("click")  # never imported here: a library caller has none
        context = click.get_current_context(silent=True) if click is not None else None
        self.command = context.command_path if context is not None else None


def _inside(path, directory):
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def refuse_inputs(output, inputs):
    """Raise :class:`OutputRefused` if ``output`` is one of ``inputs`` (the same file,
    links followed) or lies inside one that is a directory (a checkpoint, the logs
    being read).  ``None`` and ``-`` (standard input or output) are never refused."""
    if to_stdout(output):
        return
    from .render import safe_text  # imported here: the CLI starts without it

    for source in inputs:
        if source in (None, "-"):
            continue
        if os.path.isdir(source):
            if _inside(output, source):
                raise OutputRefused(f"{safe_text(output)} is inside {safe_text(source)}: "
                                    "crit-plus never writes into its input (a checkpoint, "
                                    "the logs it reads); write it elsewhere")
        elif _same_file(output, source):
            raise OutputRefused(f"{safe_text(output)} is the input {safe_text(source)}: "
                                "crit-plus never replaces its input; write it elsewhere")


def _same_file(first, second):
    try:
        return os.path.samefile(first, second)
    except (OSError, ValueError):  # either is missing: not the same existing file
        return os.path.realpath(first) == os.path.realpath(second)


@contextlib.contextmanager
def whole_file(path, binary=True, permissions=None, inputs=()):
    """Yield a stream writing ``path`` whole or not at all (see the module).

    The file gets ``permissions``, by default what ``open`` would give it (0666
    less the umask).  A symbolic link is followed (the file it names is
    replaced, not the link); something that is not a regular file (``/dev/null``,
    a terminal, a FIFO) is written in place, as ``open`` would.  ``path`` must not
    be one of ``inputs`` (:func:`refuse_inputs`)."""
    refuse_inputs(path, inputs)
    mode, encoding = ("wb", None) if binary else ("w", "utf-8")
    try:
        in_place = not stat.S_ISREG(os.stat(path).st_mode)  # follows links (/dev/stdout)
    except FileNotFoundError:
        in_place = False
    if in_place:
        with open(path, mode, encoding=encoding) as stream:
            yield stream
        return
    import tempfile  # imported here: the CLI starts without it

    given = os.fspath(path)
    path = os.path.realpath(given)
    directory, base = os.path.split(path)
    try:
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{base}.",
                                                 suffix=".partial")
    except OSError as error:  # name the file asked for, not the temporary one
        raise OSError(error.errno, error.strerror, given) from None
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


def to_stdout(path) -> bool:
    """Whether an ``-o`` value names standard output: ``-`` (the Unix convention) or
    None (no ``-o``: a command whose result goes to standard output by default)."""
    return path is None or os.fspath(path) == "-"


def refuse_terminal(path, what):
    """Raise :class:`OutputRefused` when ``path`` names standard output
    (:func:`to_stdout`) and standard output is a terminal: ``what`` (raw bytes: memory, an
    image) would garble the screen.  Call it before anything is read."""
    if not to_stdout(path):
        return
    try:
        terminal = sys.stdout is not None and sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced by a caller, or closed
        terminal = False
    if terminal:
        raise OutputRefused(f"{what} not written to a terminal: redirect standard output "
                            "(> FILE, | xxd) or give -o FILE")


@contextlib.contextmanager
def output_stream(path, binary=False, inputs=()):
    """``-o PATH`` of a command: a :func:`whole_file` stream, or standard output when
    ``path`` is None or ``-`` (left open); ``path`` must not be one of ``inputs``."""
    if to_stdout(path):
        if binary:
            with _stdout_bytes() as stream:
                yield stream
        else:
            yield sys.stdout
        return
    with whole_file(path, binary=binary, inputs=inputs) as stream:
        yield stream


@contextlib.contextmanager
def _stdout_bytes():
    """Standard output for bytes, every byte written or an error: under ``python -u`` or
    ``PYTHONUNBUFFERED`` ``sys.stdout.buffer`` is the raw file, whose ``write`` may write
    part of a buffer (a pipe whose reader went away) and say nothing; a buffered writer on
    the same descriptor (left open) writes all or raises (``BrokenPipeError``)."""
    sys.stdout.flush()  # text written before goes first
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a caller's stream (tests): no descriptor
        yield sys.stdout.buffer
        return
    with open(descriptor, "wb", closefd=False) as stream:
        yield stream


def _default_permissions():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
