"""The namespaces of a checkpoint: which exist, who shares them, and what CRIU kept of each.

Each process's ``ids-<pid>.img`` names its namespaces by CRIU's ids (one id per
namespace, the same for every process in it).  ``inventory.img``'s ``root_ids`` are
the namespaces CRIU itself ran in: a process in one of those shares the host's
namespace, which CRIU neither dumps nor restores (it restores into whatever the
target gives).  Every other namespace is the checkpoint's own and has its images,
named by its id (``criu/image-desc.c``)::

    net   netdev-ID netns-ID ifaddr-ID route-ID route6-ID rule-ID iptables-ID ...
    mnt   mountpoints-ID          uts  utsns-ID          user  userns-ID
    ipc   ipcns-var-ID ipcns-shm-ID ipcns-msg-ID ipcns-sem-ID      time  timens-ID

A user namespace's image holds its uid and gid maps (``userns_entry``), a UTS
namespace's its host and domain names (``utsns_entry``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from decoders.text import field_text
from decoders.errors import MissingImageError
from decoders.ids import NAMESPACES

from .findings import WARNING, Finding, error_finding, named

if TYPE_CHECKING:
    from .graph import Checkpoint

#: kind → the image-name stems of a namespace of that kind (``STEM-ID.img``).
IMAGES = {
    "net": ("netdev", "netns", "ifaddr", "route", "route6", "rule", "iptables", "ip6tables",
            "nftables", "netns-ct", "netns-exp"),
    "mnt": ("mountpoints",),
    "uts": ("utsns",),
    "ipc": ("ipcns-var", "ipcns-shm", "ipcns-msg", "ipcns-sem"),
    "user": ("userns",),
    "time": ("timens",),
}


@dataclass(frozen=True, slots=True)
class IdMap:
    """One extent of a user namespace's uid or gid map, as ``/proc/PID/uid_map``
    shows it: ids ``first``.. inside are ``lower_first``.. outside, ``count`` of them."""

    first: int
    lower_first: int
    count: int


@dataclass(frozen=True, slots=True)
class Namespace:
    """One namespace: ``kind`` (``pid``, ``net``, ``ipc``, ``uts``, ``mnt``, ``user``,
    ``cgroup``, ``time``), CRIU's ``id``, the ``pids`` in it (pstree order), ``own``:
    True when it is the checkpoint's own (not the one CRIU ran in; None when the
    inventory does not say), and the ``images`` of it present in the directory."""

    kind: str
    id: int
    pids: tuple[int, ...]
    own: bool | None
    images: tuple[str, ...]
    #: a UTS namespace's (nodename, domainname); None for other kinds or without utsns-ID
    uts: tuple[str, str] | None = None
    #: a user namespace's uid and gid maps (None without userns-ID)
    uid_map: tuple[IdMap, ...] | None = None
    gid_map: tuple[IdMap, ...] | None = None


def _maps(extents) -> tuple[IdMap, ...]:
    return tuple(IdMap(e.first, e.lower_first, e.count) for e in extents)


def read_namespaces(checkpoint: Checkpoint) -> tuple[tuple[Namespace, ...], tuple[Finding, ...]]:
    """Every namespace of the checkpoint's processes, by kind (``ids`` order) then id,
    and the findings of reading their uts and user images."""
    members: dict[tuple[str, int], list[int]] = {}
    for process in checkpoint.processes:
        ids = process.ids
        if ids is None:
            continue
        for kind, ns_id in ids.namespaces:
            members.setdefault((kind, ns_id), []).append(process.pid)
    inventory = checkpoint.inventory
    host = dict(inventory.root_ids.namespaces) if inventory and inventory.root_ids else None
    present = set(checkpoint.image_files)
    found: list[Namespace] = []
    findings: list[Finding] = []
    order = {kind: index for index, kind in enumerate(NAMESPACES)}
    for (kind, ns_id), pids in sorted(members.items(),
                                      key=lambda item: (order.get(item[0][0], 99), item[0][1])):
        images = tuple(name for stem in IMAGES.get(kind, ())
                       for name in (f"{stem}-{ns_id}.img",) if name in present)
        own = None if host is None or kind not in host else host[kind] != ns_id
        uts = uid_map = gid_map = None
        if kind == "uts" and f"utsns-{ns_id}.img" in present:
            message = _first(checkpoint, f"utsns-{ns_id}.img", findings)
            if message is not None:
                uts = (field_text(message.nodename), field_text(message.domainname))
        if kind == "user" and f"userns-{ns_id}.img" in present:
            message = _first(checkpoint, f"userns-{ns_id}.img", findings)
            if message is not None:
                uid_map, gid_map = _maps(message.uid_map), _maps(message.gid_map)
        if own and kind in ("net", "mnt", "uts", "user") and not images:
            findings.append(Finding(WARNING, "namespace-images",
                                    f"{kind} namespace {ns_id} is the checkpoint's own but "
                                    f"has no images", "ids", named(id=ns_id)))
        found.append(Namespace(kind, ns_id, tuple(pids), own, images, uts, uid_map, gid_map))
    return tuple(found), tuple(findings)


def _first(checkpoint, name, findings):
    """The first message of image ``name`` (None, with a finding, when it does not decode)."""
    messages, error = checkpoint.decoded(name)
    if error is not None and not isinstance(error, MissingImageError):
        findings.append(error_finding(error))
    return messages[0] if messages else None
