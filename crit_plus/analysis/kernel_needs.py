"""What a checkpoint needs from the restoring kernel, in CRIU's own terms.

:func:`kernel_needs` maps what the images show the processes use to the names
``criu check --feature NAME`` tests (:data:`~.host.FEATURES`), each with the
image that shows the use; :func:`filesystems_needed` lists the file system
types the restore mounts.  Both read :class:`~.validate_facts.RestoreFacts` and
the graph only; the host side is :class:`~.host.HostFacts`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..mounts import FSTYPES

#: ``inventory.network_lock_method`` (criu/include/cr_options.h): 1 is nftables.
NETWORK_LOCK_NFTABLES = 1
#: TCP states CRIU restores only with ``tcp_half_closed`` (criu/sk-tcp.c).
HALF_CLOSED = {"FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT", "LAST_ACK", "CLOSING"}
#: Namespaces the restore creates → the feature CRIU tests for them.
NAMESPACE_FEATURES = {"time": "timens", "user": "userns", "cgroup": "cgroupns"}


@dataclass(frozen=True, slots=True)
class Need:
    """A kernel feature the restore needs: its CRIU name, the image that shows the use,
    and what uses it (for messages)."""

    feature: str
    image: str
    why: str


def kernel_needs(facts) -> list:
    """The :class:`Need` s of a checkpoint, one per feature (the first image that shows it)."""
    needs: dict = {}

    def need(feature, image, why):
        needs.setdefault(feature, Need(feature, image, why))

    root = facts.root
    for name in sorted(facts.new_namespaces or ()):
        if name in NAMESPACE_FEATURES and root is not None:
            need(NAMESPACE_FEATURES[name], f"ids-{root.pid}.img",
                 f"the tree runs in its own {name} namespace")
    inventory = facts.checkpoint.inventory
    if inventory is not None and inventory.network_lock_method == str(NETWORK_LOCK_NFTABLES):
        need("network_lock_nftables", "inventory.img", "the network was locked with nftables")
    for process in facts.checkpoint.processes:
        _process_needs(process, need)
    for file in facts.checkpoint.files:
        state = getattr(file.details.get("state"), "name", "") if file.kind == "inet" else ""
        if file.kind == "tun":
            need("tun", "tunfile.img",
                 "a process holds a tun/tap device")
        elif file.kind == "timerfd":
            need("timerfd", "timerfd.img", "a process holds a timerfd")
        elif state in HALF_CLOSED:
            need("tcp_half_closed", "files.img", f"a TCP connection is in state {state}")
    for memfd in facts.checkpoint.memfds.values():
        if memfd.hugetlb:
            need("memfd_hugetlb", "memfd.img", f"memfd {memfd.name!r} is on hugetlbfs")
            break
    for mount in facts.mounts:
        if mount.fstype == "autofs":
            need("autofs", facts.mounts_image, f"{mount.mountpoint} is an autofs mount")
    return list(needs.values())


def _process_needs(process, need):
    for thread in process.threads:
        core = thread.core
        if core is None:
            continue
        image = f"core-{thread.tid}.img"
        if core.seccomp_mode == "filter":
            need("seccomp_filters", image, f"thread {thread.tid} has seccomp filters")
        if core.arch == "IA32" or core.compat:
            need("compat_cr", image, f"thread {thread.tid} is a 32-bit task")
        rseq = core.rseq
        if rseq:
            need("get_rseq_conf", image, f"thread {thread.tid} registered rseq")
    if process.memory is not None and process.pages.private.lazy:
        need("uffd", f"pagemap-{process.pid}.img",
             f"pid {process.pid} has {process.pages.private.lazy} lazy pages "
             "(restore with --lazy-pages)")


def fs_name(mount) -> str | None:
    """The kernel's name of a mount's file system (``Mount.fstype``: ``fsname`` when the
    image keeps one), a FUSE subtype as ``fuse``."""
    name = mount.fstype
    if name and name.startswith("fuse."):
        return "fuse"
    return name


def filesystems_needed(facts) -> dict:
    """File system type → the first mountpoint CRIU mounts with it (external mounts and
    bind mounts of other mounts are not mounted by type, and are left out)."""
    found: dict = {}
    for mount in facts.mounts:
        if mount.ext_key is not None:
            continue
        name = fs_name(mount)
        if name:
            found.setdefault(name, mount.mountpoint)
    return found


__all__ = ["FSTYPES", "Need", "filesystems_needed", "fs_name", "kernel_needs"]
