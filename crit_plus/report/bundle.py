"""Writing a report bundle: a ``.tar.gz`` written atomically, never into a checkpoint.

::

    BUNDLE ::= TOP/INDEX.md  TOP/report.json  { TOP/MEMBER }     (gzip-compressed tar)

The bundle is written to a temporary file beside the output (mode 0600: it
holds logs) and renamed over the output only when complete: an interrupted
report leaves no partial bundle.  Members carry their source file's
modification time, owner 0 and mode 0644.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import time

from ..files import open_in_tree
from ..output import OutputRefused, refuse_inputs, whole_file
from ..progress import progress

_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def top_directory(output):
    """The bundle's top directory: the output's file name without ``.tar.gz``."""
    name = os.path.basename(os.fspath(output))
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[:-len(suffix)]
            break
    return _UNSAFE.sub("_", name).strip("._") or "crit-plus-report"


def check_output(output, protected=()):
    """Refuse (:class:`OutputRefused`) an output that is ``-``, a directory, whose
    directory does not exist, or that lies inside one of the ``protected``
    directories (the checkpoint, the logs being gathered)."""
    if os.fspath(output) == "-":
        raise OutputRefused("a bundle is written to a file, not to stdout: give -o FILE.tar.gz")
    output = os.path.abspath(os.fspath(output))
    if os.path.isdir(output):
        raise OutputRefused(f"{output} is a directory: name the .tar.gz file to write")
    parent = os.path.dirname(output)
    if not os.path.isdir(parent):
        raise OutputRefused(f"{parent} does not exist")
    refuse_inputs(output, protected)
    return output


def _info(name, size, mtime, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_spooled(tar, top, member, spool):
    tar.addfile(_info(f"{top}/{member.name}", member.size, member.mtime), spool.reader(member))


def _add_streamed(tar, top, member, bar):
    with open(open_in_tree(member.path)[0], "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        tar.addfile(_info(f"{top}/{member.name}", size, member.mtime), stream)
    bar.update(size)


def write_bundle(output, top, heads, collection):
    """Write the bundle to ``output`` atomically; returns the output's size.

    ``heads`` are ``(name, bytes)`` pairs written first (the index, report.json);
    then every member of ``collection``.
    """
    streamed = sum(m.size for m in collection.members if m.path is not None)
    with whole_file(output, permissions=0o600) as raw:
        with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            now = time.time()
            for name, data in heads:
                tar.addfile(_info(f"{top}/{name}", len(data), now), io.BytesIO(data))
            with progress(streamed, "images") as bar:
                for member in collection.members:
                    if member.path is not None:
                        _add_streamed(tar, top, member, bar)
                    else:
                        _add_spooled(tar, top, member, collection.spool)
    return os.stat(output).st_size


__all__ = ["OutputRefused", "check_output", "top_directory", "write_bundle"]
