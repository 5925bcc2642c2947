"""The views of namespaces, mounts, networks and confinement (``ns``, ``mounts``, ``net``,
``ps --long``): the graph's facts (crit_plus/namespaces.py, mounts.py, netns.py,
confinement.py) gathered per namespace and per thread, as frozen dataclasses of machine
values.  Nothing here reads an image itself."""

from __future__ import annotations

from dataclasses import dataclass

from ..confinement import CgroupMember, ThreadSeccomp
from ..findings import FindingList
from ..mounts import Mount
from ..namespaces import Namespace
from ..netns import NetNamespace
from ..render import schema_id

#: JSON schemas of the views (docs/commands/ns.md, mounts.md, net.md): a change of a
#: field's meaning bumps the number.
NS_SCHEMA = schema_id("ns")
MOUNTS_SCHEMA = schema_id("mounts")
NET_SCHEMA = schema_id("net")


@dataclass(frozen=True, slots=True)
class MountRow:
    """One mount in tree order: ``depth`` under its namespace's root, the mounts of
    the same superblock (``binds``)."""

    depth: int
    mount: Mount
    binds: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MountTable:
    """The mounts of one mount namespace and the pids in it."""

    ns_id: int
    pids: tuple[int, ...]
    rows: tuple[MountRow, ...]
    #: why ``mountpoints-ID.img`` ends early (the rows are the mounts before), or None
    damage: str | None = None


@dataclass(frozen=True, slots=True)
class NetView:
    """One network namespace: the pids in it, whether it is the checkpoint's own, and
    what CRIU kept of it."""

    ns_id: int
    pids: tuple[int, ...]
    own: bool | None
    net: NetNamespace


@dataclass(frozen=True, slots=True)
class ThreadDetail:
    """What confines one thread: ids, capabilities, seccomp, LSM, cgroups."""

    tid: int
    uid: int | None
    euid: int | None
    gid: int | None
    egid: int | None
    groups: tuple[int, ...]
    cap_eff: int | None
    cap_prm: int | None
    cap_bnd: int | None
    no_new_privs: int | None
    seccomp_mode: str | None
    #: filter indexes in seccomp.img, newest first (None: unknown, seccomp.img damaged)
    seccomp_filters: tuple[int, ...] | None
    seccomp_instructions: int | None  # BPF instructions of those filters
    lsm_profile: str | None
    cg_set: int | None
    #: () when the images name none, None when unknown (no cg_set, cgroup.img damaged)
    cgroups: tuple[CgroupMember, ...] | None
    #: where the seccomp the thread runs once restored comes from (``own``: the fields
    #: above; ``leader``: none above, the leader's filters given to every thread by TSYNC;
    #: ``none``: disabled; ``unknown``): :class:`~crit_plus.confinement.ThreadSeccomp`
    seccomp_source: str = "none"


#: The confinement a ``ps --long`` row shows, each compared across a process's threads.
ASPECTS = ("uid", "gid", "cap_eff", "seccomp", "lsm", "cgroup")


@dataclass(frozen=True, slots=True)
class ProcessDetail:
    """The :class:`ThreadDetail` of every thread of one process, leader first, and, per
    aspect of :data:`ASPECTS`, how many threads share the leader's (``sharing``)."""

    pid: int
    threads: tuple[ThreadDetail, ...]
    sharing: tuple[tuple[str, int], ...] = ()

    def shared_by(self, aspect: str) -> int:
        """How many threads (the leader included) have the leader's ``aspect`` (one of
        :data:`ASPECTS`; the seccomp compared as restored: mode and filter programs)."""
        return dict(self.sharing).get(aspect, len(self.threads))

    @property
    def leader(self) -> ThreadDetail | None:
        """The group leader's detail, or None (no core)."""
        return self.threads[0] if self.threads else None


def namespaces(checkpoint) -> tuple[Namespace, ...]:
    """Every namespace of the checkpoint's processes (the graph's list)."""
    return checkpoint.namespaces


def unknown_namespace_pids(checkpoint) -> tuple[int, ...]:
    """The processes whose namespaces are unknown (``ids-PID.img`` missing or damaged:
    a zombie has none and is in no list), in pstree order."""
    return tuple(process.pid for process in checkpoint.processes
                 if process.ids is None and process.ids_findings)


def namespace_findings(checkpoint) -> tuple:
    """The findings of ``ns``: why a process's ids are unknown, then those of reading
    the uts and user images."""
    return (*(finding for process in checkpoint.processes if process.ids is None
              for finding in process.ids_findings), *checkpoint.namespace_findings)


def mount_findings(checkpoint) -> tuple:
    """The findings of reading the mountpoints images."""
    return checkpoint.mount_findings


def net_findings(checkpoint) -> tuple:
    """The findings of reading the network namespaces' images."""
    return checkpoint.net_findings


def _pids(checkpoint, kind, ns_id):
    for namespace in checkpoint.namespaces:
        if namespace.kind == kind and namespace.id == ns_id:
            return namespace.pids, namespace.own
    return (), None


def mount_tables(checkpoint) -> tuple[MountTable, ...]:
    """The mount tree of every mount namespace with a ``mountpoints`` image."""
    tables = []
    for space in checkpoint.mount_namespaces:
        binds = space.binds()
        rows = tuple(MountRow(depth, mount, binds[mount.mnt_id]) for depth, mount in space.tree())
        tables.append(MountTable(space.ns_id, _pids(checkpoint, "mnt", space.ns_id)[0], rows,
                                 space.damage))
    return tuple(tables)


def net_views(checkpoint) -> tuple[NetView, ...]:
    """Every network namespace of the processes, with what its images hold."""
    views = []
    for net in checkpoint.net_namespaces:
        pids, own = _pids(checkpoint, "net", net.ns_id)
        views.append(NetView(net.ns_id, pids, own, net))
    return tuple(views)


def _caps(words) -> int | None:
    """A capability set as one number (CRIU keeps it as u32 words, low first)."""
    if not words:
        return None
    value = 0
    for index, word in enumerate(words):
        value |= int(word) << (32 * index)
    return value


def process_details(checkpoint, pid=None) -> tuple[ProcessDetail, ...]:
    """:class:`ProcessDetail` of every process in tree order (or of ``pid``); the findings
    of following their seccomp chains are :func:`seccomp_findings`'."""
    selected = [checkpoint.process(pid)] if pid is not None else \
        [process for _depth, process in checkpoint.walk()]
    details = []
    for process in selected:
        threads, keys = [], []
        for thread in process.threads:
            core, creds = thread.core, thread.creds
            chain, _findings = checkpoint.seccomp_chain(thread)
            cg_set = core.cg_set if core is not None else None
            restored = checkpoint.thread_seccomp(process, thread)
            threads.append(ThreadDetail(
                thread.tid,
                creds.uid if creds else None, creds.euid if creds else None,
                creds.gid if creds else None, creds.egid if creds else None,
                tuple(creds.groups) if creds else (),
                _caps(creds.cap_eff) if creds else None, _caps(creds.cap_prm) if creds else None,
                _caps(creds.cap_bnd) if creds else None,
                creds.no_new_privs if creds else None,
                core.seccomp_mode if core is not None else None,
                None if chain is None else tuple(f.index for f in chain),
                None if chain is None else sum(f.instructions for f in chain),
                creds.lsm_profile if creds else None,
                cg_set, checkpoint.cgroups(cg_set), restored.source))
            keys.append(_aspect_keys(threads[-1], restored))
        sharing = tuple((aspect, sum(key[aspect] in (keys[0][aspect], _UNKNOWN)
                                     for key in keys))
                        for aspect in ASPECTS) if keys else ()
        details.append(ProcessDetail(process.pid, tuple(threads), sharing))
    return tuple(details)


#: An aspect whose value cannot be known (a thread without filters of its own whose
#: leader's filters are unreadable): never counted as a difference.
_UNKNOWN = object()


def _aspect_keys(detail: ThreadDetail, seccomp: ThreadSeccomp) -> dict[str, object]:
    """What two threads must share to show the same ``ps --long`` cell, per aspect: the
    seccomp as restored (a thread given the leader's filters by TSYNC shares them), the
    cgroups by their paths (CRIU gives threads of the same cgroups sets of their own)."""
    restored = _UNKNOWN if seccomp.source == "unknown" else (seccomp.mode, seccomp.programs)
    return {"uid": (detail.uid, detail.euid), "gid": (detail.gid, detail.egid),
            "cap_eff": detail.cap_eff, "seccomp": restored,
            "lsm": detail.lsm_profile, "cgroup": detail.cgroups}


def seccomp_findings(checkpoint) -> tuple:
    """The findings of following every thread's seccomp chain (at most
    :data:`~crit_plus.findings.MAX_PER_CODE` of a code)."""
    found = FindingList()
    for process in checkpoint.processes:
        for thread in process.threads:
            found.extend(checkpoint.seccomp_chain(thread)[1])
    return tuple(found.result())
