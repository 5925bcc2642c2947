"""Touch everything the checkpoint graph offers, the way the commands built on it do.

The fuzz suite runs :func:`walk_checkpoint` on every damaged checkpoint: the
graph (docs/api.md) promises findings instead of exceptions, so nothing but a
:class:`~decoders.errors.DecodeError` from opening (an undecodable
``inventory.img``/``pstree.img``, no checkpoint at all) may come out of it,
whatever commands are registered today.
"""

from __future__ import annotations

from crit_plus import UnavailableError, open_checkpoint
from crit_plus.render import jsonable, safe_text

#: Bytes read from each VMA start and from each process's command line, at most.
READ_LIMIT = 256


def walk_checkpoint(path, *, pages=True):
    """Open the checkpoint at ``path`` and use every part of the graph API.

    Returns the number of findings (a value, so the work is not optimised away).
    With ``pages`` the first bytes of every mapping are read and every present
    page is streamed (bounded chunks).
    """
    checkpoint = open_checkpoint(path)
    repr(checkpoint)
    _ = checkpoint.inventory, checkpoint.pstree, checkpoint.pids, checkpoint.stats
    for _depth, process in checkpoint.walk():
        _process(checkpoint, process, pages)
    for file in checkpoint.files:
        safe_text(file.name or "")
        jsonable(file.details)
        checkpoint.holders(file.id)
        checkpoint.files.ghost(file.id)
    for pages_file in checkpoint.pages_files:
        _ = pages_file.expected_size, pages_file.size
    _ = checkpoint.shmem_ids, checkpoint.image_files
    parent = checkpoint.parent
    generations = 0
    while parent is not None and generations < 8:
        _ = parent.pids, parent.findings
        parent = parent.parent
        generations += 1
    findings = checkpoint.findings
    for finding in findings:
        str(finding)
    return len(findings)


def _process(checkpoint, process, pages):
    repr(process)
    _ = (process.comm, process.state_label, process.is_zombie, process.creds, process.ids,
         process.fs, process.pagemap, process.cwd, process.root, process.exe,
         process.parent, process.children)
    for thread in process.threads:
        _ = thread.comm, thread.state, thread.creds
    for fd in process.fds:
        _ = fd.kind, fd.name, fd.cloexec
        if fd.file is not None:
            process.epoll_targets(fd.fd)
    _ = process.argv, process.environ
    memory = process.memory
    if memory is None:
        return
    memory.pages_by_kind()
    for mapping in memory.vmas:
        _ = mapping.name, mapping.kind, mapping.pages, mapping.backing, mapping.size
        if pages:
            memory.extents(mapping.start, min(mapping.size, 1 << 20))
            for _addr, _data in memory.stream(mapping.start, min(mapping.size, READ_LIMIT)):
                pass
            try:
                memory.read(mapping.start, min(mapping.size, READ_LIMIT))
            except UnavailableError:
                pass
    if pages:
        for _vaddr, _data in memory.iter_present():
            pass
    jsonable(process.findings)
