"""``validate`` stage 2: what the restore must be given.

Options and external pieces a restore of this checkpoint needs, read from the
images (each also listed as a :class:`~.validate.Requirement`):

- ``--tcp-established`` for connected TCP sockets (``Connected TCP socket in
  image``), ``--tcp-close`` and ``--allow-uprobes`` when the inventory says so,
  the plugins the inventory lists;
- ``--ext-unix-sk`` for unix sockets whose peer CRIU dumped as external;
- ``--shell-job`` when the tree's session leader was not dumped;
- ``--inherit-fd fd[N]:tty[RDEV:DEV]`` for terminals from outside (``EXT_TTY``),
  and liblxc's console (``tty.info``), which LXD and Incus cannot give back;
- ``--root`` for a mount namespace, ``--ext-mount-map`` for external mounts;
- ``--file-locks`` for ``filelocks.img``; ``--cpu-cap`` semantics for ``cpuinfo.img``;
- and what the logs say about earlier restores of this checkpoint (the one
  attribution of :mod:`crit_plus.sources.runs`).

Which of them liblxc passes itself (LXD, Incus, lxc-checkpoint) is recorded
as ``provided_by``.
"""

from __future__ import annotations

from ..describe import count_text
from ..resources import TtyType
from .explain import decisive_first
from ..sources.fields import catalog_fields
from .validate_catalog import match_failure
from .validate_facts import AUTODETECTED, EXTERNAL_DEV
from .validate_integrity import connected_tcp

#: The name under which liblxc-based restores are credited with an option.
LXC = "LXC"
#: Most lines of one failed restore quoted by ``manager-restore-failed``.
LOG_LINES = 3
#: Most mountpoints named in one mount finding.
LISTED = 8


def run(facts, out):
    """Add the requirement findings of ``facts``' checkpoint to ``out``."""
    by_manager = LXC if facts.manager else None
    _inventory(facts, out)
    _tcp(facts, out, by_manager)
    _unix(facts, out)
    _session(facts, out)
    _ttys(facts, out)
    _console(facts, out)
    _mounts(facts, out, by_manager)
    if facts.checkpoint.file_locks:
        count = len(facts.checkpoint.file_locks)
        locks = f"{count} file lock{'' if count == 1 else 's'}"
        out.add("needs-file-locks", f"{locks} dumped", "filelocks.img", image="filelocks.img")
        out.require("--file-locks", locks, by_manager)
    if facts.has_image("cpuinfo.img"):
        out.add("needs-cpu-cap", "cpuinfo.img records the dumping CPU: a restore with "
                "--cpu-cap compares the host with it", "cpuinfo.img", image="cpuinfo.img")
    _logs(facts, out)


def _inventory(facts, out):
    inventory = facts.checkpoint.inventory
    if inventory is None:
        return
    if inventory.tcp_close:
        out.add("needs-tcp-close", "the dump was made with --tcp-close", "inventory.img",
                source=inventory.source)
        out.require("--tcp-close", "the inventory says tcp_close")
    if inventory.allow_uprobes:
        out.add("needs-allow-uprobes", "the dump was made with --allow-uprobes",
                "inventory.img", source=inventory.source)
        out.require("--allow-uprobes", "the inventory says allow_uprobes")
    for plugin in inventory.plugins:
        out.add("needs-plugin", f"the dump used the CRIU plugin {plugin}", "inventory.img",
                source=inventory.source, plugin=plugin)
        out.require(f"plugin {plugin}", "listed in the inventory")


def _tcp(facts, out, by_manager):
    checkpoint = facts.checkpoint
    inventory = checkpoint.inventory
    if inventory is not None and inventory.tcp_close:
        return
    connections = connected_tcp(checkpoint)
    for file in connections:
        where, pid, fd = facts.where(file)
        out.add("needs-tcp-established", f"connected TCP socket {file.name}", where,
                source=file.source, pid=pid, fd=fd)
    if connections:
        out.require("--tcp-established", f"{len(connections)} connected TCP sockets",
                    by_manager)


def _unix(facts, out):
    checkpoint = facts.checkpoint
    files = checkpoint.files
    externals = 0
    for file in files:
        peer = files.get(file.details.get("peer_id")) if file.kind == "unix" else None
        if peer is None or not peer.external or not checkpoint.holders(file.id):
            continue
        externals += 1
        where, pid, fd = facts.where(file)
        peer_name = peer.name or f"socket:[{peer.details.get('ino')}]"
        out.add("needs-ext-unix-sk", f"unix socket {file.name} is connected to {peer_name}, "
                "outside the checkpoint", where, source=file.source, pid=pid, fd=fd,
                peer_name=peer_name)
    if externals:
        out.require("--ext-unix-sk", f"{externals} unix sockets connected outside the tree")


def _session(facts, out):
    checkpoint = facts.checkpoint
    root = facts.root
    if root is None:
        return
    pids = set(checkpoint.pids)
    if root.sid != root.pid and root.sid not in pids:
        out.add("needs-shell-job", f"the root pid {root.pid} is in session {root.sid}, whose "
                "leader was not dumped", f"pid {root.pid}", image="pstree.img",
                pid=root.pid, sid=root.sid)
        out.require("--shell-job", f"session {root.sid} is outside the checkpoint")
    for file in checkpoint.files:
        details = file.details
        if file.kind != "tty" or details.get("tty_type") != TtyType.PTY:
            continue
        sid = details.get("sid")
        if sid and sid not in pids and checkpoint.holders(file.id):
            where, pid, fd = facts.where(file)
            out.add("needs-shell-job", f"terminal {file.name} belongs to session {sid}, "
                    "whose leader was not dumped", where, pid=pid, fd=fd, sid=sid)
            out.require("--shell-job", f"terminal {file.name} of session {sid}")


def _ttys(facts, out):
    checkpoint = facts.checkpoint
    infos = checkpoint.ttys
    users = {}
    for file in checkpoint.files:
        if file.kind == "tty" and file.details.get("tty_type") == TtyType.EXT_TTY:
            for holder in checkpoint.holders(file.id):
                users.setdefault(file.details["tty_info_id"], []).append((holder, file))
    for info_id, holders in users.items():
        info = infos.get(info_id)
        if info is None:
            continue  # missing-tty-info says so
        key = info.key
        (pid, fd), file = holders[0]
        pids = sorted({holder[0] for holder, _file in holders})
        out.add("needs-inherit-tty", f"{len(holders)} fds of pids "
                f"{', '.join(map(str, pids[:LISTED]))} hold the external terminal {key} "
                f"({file.name})", f"pid {pid} fd {fd}", image="tty-info.img", pid=pid, fd=fd,
                key=key, sid=info.sid)
        if key != facts.console_key:  # the console is the lxd-console finding's
            out.require(f"--inherit-fd fd[N]:{key}", f"terminal {file.name} from outside the "
                        "checkpoint")


def _console(facts, out):
    key = facts.console_key
    if key is None:
        return
    source = facts.source
    # what explain and summarize fill the same fix with; an unknown one shows in capitals
    fields = catalog_fields(facts.manager, source.instance if source is not None else None, ())
    failed = [line for _log, lines in _restore_failures(facts) for line in lines
              if "console" in line and "not target" in line]
    evidence = " (the manager's log shows exactly this failure)" if failed else ""
    out.add("lxd-console", f"liblxc dumped the container's console {key} (tty.info); its "
            f"restore needs the new container's console, which LXD and Incus do not "
            f"provide{evidence}", "tty.info", path="tty.info", **{**fields, "key": key})
    out.require(f"--inherit-fd fd[N]:{key}", "the container's console (tty.info)")


def _mounts(facts, out, by_manager):
    if "mnt" not in (facts.new_namespaces or ()):
        return
    out.add("needs-root", "the tree has its own mount namespace", facts.mounts_image or
            "ids", image=facts.mounts_image)
    out.require("--root DIR", "a mount namespace", by_manager)
    auto = [m for m in facts.mounts if m.ext_key == AUTODETECTED]
    keyed = [m for m in facts.mounts if m.ext_key not in (None, AUTODETECTED, EXTERNAL_DEV)]
    if auto:
        names = ", ".join(m.mountpoint for m in auto[:LISTED]) + (" ..." if len(auto) > LISTED
                                                                  else "")
        first = auto[0]
        out.add("needs-ext-mount-auto", f"{len(auto)} mounts CRIU found external by itself: "
                f"{names}", facts.mounts_image, image=facts.mounts_image,
                mnt_id=first.mnt_id, mountpoint=first.mountpoint)
        out.require("--ext-mount-map auto", f"{len(auto)} autodetected external mounts",
                    by_manager)
    if keyed:
        pairs = ", ".join(f"{m.ext_key}:{m.mountpoint}" for m in keyed[:LISTED])
        first = keyed[0]
        out.add("needs-ext-mount", f"{len(keyed)} mounts were external at dump (key:mountpoint): "
                f"{pairs}" + (" ..." if len(keyed) > LISTED else ""), facts.mounts_image,
                image=facts.mounts_image, mnt_id=first.mnt_id, mountpoint=first.mountpoint,
                key="KEY")
    for mount in keyed:
        out.require(f"--ext-mount-map {mount.ext_key}:HOSTPATH", f"external mount at "
                    f"{mount.mountpoint}", by_manager)


def _restore_failures(facts):
    """``(log, lines)`` of each restore of this checkpoint that failed, the lines decisive
    first (explain's reading), as the one attribution says
    (:meth:`crit_plus.sources.Source.runs`): a CRIU restore log of this checkpoint that
    failed, liblxc's lines about each of its restores; never a restore of another
    checkpoint (the instance's later stateful stop)."""
    source = facts.source
    if source is None:
        return []
    inventory = facts.checkpoint.inventory
    return [(item.log, decisive_first(lines, "restore"))
            for item in source.runs(inventory.run_id if inventory is not None else None)
            for lines in item.failed_restores]


def _logs(facts, out):
    """One ``manager-restore-failed`` per failed restore: its decisive line, then up to
    :data:`LOG_LINES` of its lines as evidence."""
    source = facts.source
    for log, lines in _restore_failures(facts):
        first = lines[0].strip()
        failure = match_failure(first, "restore")
        why = f" (cause: {failure.cause})" if failure and failure.role == "cause" else ""
        message = f"{log.name}: {first}{why}"
        if len(lines) > 1:
            rest = " | ".join(line.strip() for line in lines[1:LOG_LINES])
            more = " | ..." if len(lines) > LOG_LINES else ""
            message += f" (the same restore, {count_text(len(lines), 'error line')}: {rest}{more})"
        out.add("manager-restore-failed", message, str(log.path), path=str(log.path),
                line=first, log=log.name, instance=source.instance,
                catalog=failure.code if failure else None)


__all__ = ["LXC", "run"]
