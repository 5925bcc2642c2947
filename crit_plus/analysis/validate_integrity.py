"""``validate`` stage 1: the images alone.

What CRIU's restore reads, checked before it reads it:

- every image decodes and its magic matches its name (images the graph reads
  are checked by the graph; the rest here; raw images have no magic);
- the graph's findings (:attr:`~crit_plus.graph.Checkpoint.findings`): missing
  per-process images, the process tree, fds and file mappings resolved in
  ``files.img``, ghost files, pagemaps against VMAs and pages files;
- every image CRIU writes in every dump is there
  (:data:`~.validate_catalog.ALWAYS_WRITTEN`: the graph reports the per-process
  ones, ``files.img``, ``seccomp.img`` and ``timens-0.img`` are checked here),
  each missing one with what CRIU's restore prints and does without it; a
  missing fdinfo image is an error when files.img holds files nothing else opens;
- ``inventory.img``: ``img_version`` 1 or 2, ``fdinfo_per_id``, ``root_cg_set``
  (``check_img_inventory``);
- ``pstree.img`` order (a parent before its children, ``read_pstree_image``),
  one architecture, pid 1 at the root of a new pid namespace;
- the ``parent/`` chain: no dangling link, no loop (``open_parent``);
- unix socket peers resolve (``fixup_unix_peer``); connected TCP sockets have
  their ``tcp-stream-<ino>.img``;
- stray per-process images and unused pages images (info).
"""

from __future__ import annotations

import os

from decoders.errors import MissingImageError
from decoders.kinds import expected_magic, raw_kind
from decoders.lazy import LazyPattern

from ..files import USK_EXTERN, IpProto, SockFamily
from ..findings import ERROR, WARNING
from .validate_catalog import always_written, check

#: Images the graph decodes itself (its findings report them).
_GRAPH_IMAGES = LazyPattern(
    r"^(?:(?:core|ids|mm|fs|pagemap|fdinfo)-\d+\.img|pagemap-shmem-\d+\.img|inventory\.img|"
    r"pstree\.img|files\.img|memfd\.img|tty-info\.img|remap-fpath\.img|eventpoll-tfd\.img|"
    r"inotify-wd\.img|stats-dump)$")
_PER_PROCESS = LazyPattern(r"^(core|ids|mm|fs|pagemap|fdinfo)-(\d+)\.img$")
_PID_IMAGE = LazyPattern(r"^(?:core|ids|mm|fs|pagemap)-(\d+)\.img$")
#: Images a restore never reads: one that does not decode is only a warning.
NOT_RESTORED = frozenset({"stats-dump", "stats-restore", "irmap-cache.img"})


def run(facts, out):
    """Add the integrity findings of ``facts``' checkpoint to ``out``."""
    _dump_failed(facts, out)
    _images(facts, out)
    _inventory(facts, out)
    _pstree(facts, out)
    _graph(facts, out)
    _always_written(facts, out)
    _architectures(facts, out)
    _pid_namespace(facts, out)
    _unix_peers(facts, out)
    _tcp_streams(facts, out)
    _strays(facts, out)


def _dump_failed(facts, out):
    """``dump-failed`` when the log of the dump that wrote the images says it failed
    (:func:`~.dump_failure.dump_failure`, the one answer)."""
    failure = facts.dump_failure
    if failure is None:
        return
    source = facts.source
    out.add("dump-failed", f"{failure.sentence}; {failure.consequence}", failure.log,
            severity=ERROR if failure.partial else WARNING, path=failure.path,
            target=source.spec, log=failure.path, catalog=failure.catalog)


def report_decode_error(out, error, name=None):
    """Add a ``bad-image`` finding for a :class:`~decoders.errors.DecodeError` (an error,
    or a warning for an image the restore never reads)."""
    name = name or os.path.basename(error.path or "checkpoint")
    out.add("bad-image", error.reason, name, severity=WARNING if name in NOT_RESTORED else ERROR,
            image=name, offset=error.offset, entry=error.entry_index)


def _images(facts, out):
    for name in facts.checkpoint.image_files:
        if _GRAPH_IMAGES.match(name) or raw_kind(name) or expected_magic(name) is None:
            continue
        error = facts.image_error(name)
        if error is not None and not isinstance(error, MissingImageError):
            report_decode_error(out, error, name)


def _inventory(facts, out):
    inventory = facts.checkpoint.inventory
    if inventory is None:
        return  # the graph reports the missing image
    where = "inventory.img"
    if inventory.img_version not in (1, 2):
        out.add("inventory-version", f"img_version is {inventory.img_version}, CRIU reads 1 "
                "and 2", where, source=inventory.source, version=inventory.img_version)
    if not inventory.fdinfo_per_id:
        out.add("inventory-too-old", "fdinfo_per_id is not set: the images predate CRIU 1.3",
                where, source=inventory.source)
    if inventory.root_cg_set == 0:
        out.add("root-cg-set", "root_cg_set is 0", where, source=inventory.source)


def _pstree(facts, out):
    checkpoint = facts.checkpoint
    if not checkpoint.pstree:
        if facts.has_image("pstree.img"):
            out.add("no-processes", "pstree.img lists no process", "pstree.img",
                    image="pstree.img")
        return
    pids = {entry.pid for entry in checkpoint.pstree}
    seen = set()
    for entry in checkpoint.pstree:
        if entry.ppid and entry.ppid in pids and entry.ppid not in seen:
            out.add("pstree-order", f"pid {entry.pid} comes before its parent {entry.ppid}",
                    "pstree.img", source=entry.source, pid=entry.pid)
        seen.add(entry.pid)


def _graph_params(finding):
    """The values a graph finding names (pid, fd, file id, offset...), with the pid of a
    per-process image (``core-42.img``) when the finding names none."""
    params = dict(finding.params)
    if "pid" not in params:
        match = _PID_IMAGE.match(finding.where)
        if match:
            params["pid"] = int(match.group(1))
    return params


def _graph(facts, out):
    orphans = None
    for finding in facts.checkpoint.findings:
        spec = check(finding.code)
        params = _graph_params(finding)
        image = finding.where if finding.where.endswith(".img") or \
            finding.where == "stats-dump" else None
        if finding.code in PARENT_CODES:  # where is parent/parent...: the link itself
            params["path"] = os.path.join(facts.directory, finding.where)
        severity, message, silent = spec.severity or finding.severity, finding.message, \
            _criu_silent(finding)
        if finding.code == "missing-image":
            silent = _written_params(finding.where, params)
        elif finding.code == "no-fdinfo":
            orphans = _unopened_files(facts.checkpoint) if orphans is None else orphans
            severity, message, silent = _no_fdinfo(finding, orphans)
        out.add(finding.code, message, finding.where, severity=severity, image=image,
                criu_silent=silent, **params)


def _written_params(name, params):
    """Fill ``params`` with what :data:`ALWAYS_WRITTEN` says of image ``name``; return True
    when CRIU prints no error of its own without it."""
    written = always_written(name)
    if written is None:
        params.update(says=None, scope="every dump that needs it",
                      lacks="it fails on the first entry it needs.")
        return False
    params.update(says=written.criu_says, scope=written.scope, lacks=written.lacks)
    return written.criu_says is None


def _unopened_files(checkpoint):
    """The files.img entries nothing in the checkpoint opens: no fd, mapping, cwd, root,
    executable, link remap or fifo/tty path.  CRIU dumps a file only for one of these, so
    such a file was opened by an fd of a missing fdinfo image (unix sockets outside the tree,
    ``USK_EXTERN``, are dumped for their peers and left out)."""
    used = set()
    for process in checkpoint.processes:
        used.update(file.id for file in (process.cwd, process.root, process.exe) if file)
        used.update(mapping.file.id for mapping in process.vmas if mapping.file is not None)
    for file in checkpoint.files:
        used.update(file.details.get(key) for key in ("link_remap_id", "regf_id"))
    return [file for file in checkpoint.files
            if file.id not in used and not checkpoint.holders(file.id)
            and not (file.kind == "unix" and file.external)]


def _no_fdinfo(finding, orphans):
    """``(severity, message, criu_silent)`` of the graph's ``no-fdinfo`` finding."""
    message = finding.message.replace(" (no open files)", "")
    if not orphans:
        return WARNING, (message + ": CRIU writes none for a file table without fds; if "
                         "the process had any, the restore gives it none"), True
    names = ", ".join(file.name or f"id {file.id}" for file in orphans[:3])
    more = f" and {len(orphans) - 3} more" if len(orphans) > 3 else ""
    files = "1 file" if len(orphans) == 1 else f"{len(orphans)} files"
    return ERROR, (f"{message}: files.img holds {files} nothing else in the checkpoint "
                   f"opens ({names}{more}), so their fds were in it"), False


def _always_written(facts, out):
    """The images :data:`ALWAYS_WRITTEN` lists that the graph does not read itself:
    ``files.img``, ``seccomp.img`` and the time namespace's ``timens-<id>.img``, each
    written in every dump of a living process."""
    checkpoint = facts.checkpoint
    if not any(process.core is not None and not process.is_zombie
               for process in checkpoint.processes):
        return
    names = ["files.img", "seccomp.img"]
    timens = _timens_image(facts)
    if timens is not None:
        names.append(timens)
    for name in names:
        if facts.has_image(name):
            continue
        params = {}
        silent = _written_params(name, params)
        message = f"{name} is missing"
        if name == "seccomp.img":
            filtered = _seccomp_threads(checkpoint)
            if filtered:
                tids = ", ".join(map(str, filtered[:5]))
                message += (f": thread {tids} has seccomp filters" if len(filtered) == 1
                            else f": threads {tids} have seccomp filters")
            else:
                silent = True
                message += ": no thread has seccomp filters, so the restore itself works"
        out.add("missing-image", message, name, image=name, criu_silent=silent, **params)


def _timens_image(facts):
    """``timens-0.img``, or ``timens-<id>.img`` for a tree with its own time namespace; None
    when unknown or when the dump's CRIU predates time namespaces (3.14)."""
    namespaces = facts.new_namespaces
    version = facts.dump_versions[0]
    if namespaces is None or (version and _older(version, (3, 14))):
        return None
    if "time" in namespaces:
        ns_id = facts.root.ids.namespace("time")
        return f"timens-{ns_id}.img" if ns_id else None
    return "timens-0.img"


def _older(version, than):
    try:
        return tuple(int(part) for part in str(version).split(".")[:2]) < than
    except ValueError:
        return False


def _seccomp_threads(checkpoint):
    """Thread ids whose core says seccomp mode ``filter``."""
    return [thread.tid for process in checkpoint.processes for thread in process.threads
            if thread.core is not None and thread.core.seccomp_mode == "filter"]


#: Graph findings about the ``parent/`` link (their ``where`` is the link's relative path).
PARENT_CODES = frozenset({"parent-link-broken", "parent-loop"})


def _criu_silent(finding):
    """CRIU 4.2.1 prints nothing about this pages image: one of private memory cut short
    (its restore retries the read at the end of the image forever, checked by a real
    restore in tests/test_live_validate.py), or one longer than its pagemaps (the extra
    bytes are never read).  The catalog's message is the one for shared memory cut short."""
    if finding.code != "pages-size":
        return False
    return finding.severity != ERROR or _PID_IMAGE.match(finding.where) is not None


def _architectures(facts, out):
    root = facts.root
    if root is None or root.core is None:
        return
    expected = root.core.arch
    for process in facts.checkpoint.processes:
        for thread in process.threads:
            if thread.core is not None and thread.core.arch != expected:
                out.add("arch-mixed", f"thread {thread.tid} is {thread.core.arch}, the root "
                        f"{root.pid} is {expected}", f"core-{thread.tid}.img",
                        source=thread.core.source, pid=process.pid, mtype=thread.core.arch)


def _pid_namespace(facts, out):
    root = facts.root
    if root is not None and "pid" in (facts.new_namespaces or ()) and root.pid != 1:
        out.add("pidns-init", f"the tree has its own pid namespace, but its root is pid "
                f"{root.pid}", f"pid {root.pid}", image="pstree.img", pid=root.pid)


def _unix_peers(facts, out):
    checkpoint = facts.checkpoint
    for file in checkpoint.files:
        if file.kind != "unix" or not file.details.get("peer_ino"):
            continue
        if file.details.get("peer_id") is not None:
            continue
        where, pid, fd = facts.where(file)
        ino, peer = file.details["ino"], file.details["peer_ino"]
        out.add("unresolved-peer", f"unix socket {ino} ({file.name}) names peer {peer}, which "
                "is not in files.img", where, source=file.source, pid=pid, fd=fd, peer=peer,
                ino=ino)


def connected_tcp(checkpoint):
    """The files of TCP sockets with a peer address (CRIU's ``tcp_connection``)."""
    return [file for file in checkpoint.files
            if file.kind == "inet" and file.details.get("proto") == IpProto.TCP
            and file.details.get("dst_port")]


def _tcp_streams(facts, out):
    checkpoint = facts.checkpoint
    inventory = checkpoint.inventory
    if inventory is not None and inventory.tcp_close:
        return  # restored closed: the streams are not read
    for file in connected_tcp(checkpoint):
        name = f"tcp-stream-{file.details['ino']:x}.img"
        if not facts.has_image(name):
            pid, fd = facts.holder(file)
            family = "TCPv6" if file.details.get("family") == SockFamily.INET6 else "TCP"
            out.add("missing-tcp-stream", f"{family} connection {file.name} needs {name}, "
                    "which is missing", f"pid {pid} fd {fd}" if pid else name, image=name,
                    pid=pid, fd=fd)


def _strays(facts, out):
    checkpoint = facts.checkpoint
    pids = set(checkpoint.pids)
    tids = {thread.tid for process in checkpoint.processes for thread in process.threads}
    tables = {process.ids.files_id for process in checkpoint.processes if process.ids}
    known = {"core": tids, "fdinfo": tables}
    for name in checkpoint.image_files:
        match = _PER_PROCESS.match(name)
        if match is None:
            continue
        kind, number = match.group(1), int(match.group(2))
        if number not in known.get(kind, pids):
            owner = "file table" if kind == "fdinfo" else "thread" if kind == "core" else "pid"
            out.add("stray-image", f"{name}: no {owner} {number} in pstree.img", name,
                    image=name)
    for pages in checkpoint.pages_files:
        if pages.size is not None and not pages.pagemaps:
            out.add("unused-pages", f"{pages.name} ({pages.size} bytes) is named by no "
                    "pagemap", pages.name, image=pages.name)


__all__ = ["NOT_RESTORED", "USK_EXTERN", "connected_tcp", "report_decode_error", "run"]
