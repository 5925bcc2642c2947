"""What confines each process and thread: cgroups, seccomp filters, LSM labels.

- ``cgroup.img`` holds the cgroup *sets* (``cg_set_entry``: an id and, per controller,
  the cgroup path, ``cgns_prefix`` the length of the cgroup namespace's root in it);
  each thread's core names its set (``thread_core.cg_set``), the inventory CRIU's own
  (``root_cg_set``).  A controller named ``""`` is the cgroup v2 hierarchy.
- ``seccomp.img`` holds every seccomp filter once (``seccomp_filter``: the classic BPF
  program, ``prev`` the index of the filter installed before it); a thread's core names
  its last filter (``seccomp_filter``) and its mode (``seccomp_mode``: disabled, strict,
  filter) — the chain is followed back through ``prev`` (``criu/seccomp.c``).  CRIU
  writes a mode only when it is not ``disabled`` (``seccomp_dump_thread``), so a thread
  without one is either disabled or, when every thread of the process ran the same chain
  as the leader, one whose chain CRIU dropped: it marks the leader's filters
  ``SECCOMP_FILTER_FLAG_TSYNC`` instead (``try_use_tsync``), and the restore, installing
  them in the leader, gives them to every thread (:func:`restored_seccomp`).
- The LSM label of a thread is its creds' ``lsm_profile`` (AppArmor profile or SELinux
  context), beside ``no_new_privs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from decoders.text import field_text
from decoders.errors import MissingImageError
from decoders.fields import optional

from .findings import WARNING, Finding, error_finding, named

if TYPE_CHECKING:
    from .graph import Checkpoint

#: A classic BPF instruction (``struct sock_filter``) is 8 bytes.
BPF_INSN = 8
#: ``SECCOMP_FILTER_FLAG_TSYNC`` (<linux/seccomp.h>): installing the filter gives it to
#: every thread of the process.
SECCOMP_FILTER_FLAG_TSYNC = 1


@dataclass(frozen=True, slots=True)
class CgroupMember:
    """A thread's cgroup in one hierarchy: ``controller`` (``cpu,cpuacct``...; ``""``
    for cgroup v2), the ``path`` from the hierarchy's root, and ``cgns_prefix``."""

    controller: str
    path: str
    cgns_prefix: int | None


@dataclass(frozen=True, slots=True)
class SeccompFilter:
    """One filter of ``seccomp.img``: its ``index``, the filter before it (``prev``),
    its ``flags`` (``SECCOMP_FILTER_FLAG_*``), its length in BPF instructions and its
    ``program`` (the instructions' bytes)."""

    index: int
    prev: int | None
    flags: int | None
    instructions: int
    program: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class ThreadSeccomp:
    """The seccomp a thread runs once restored: ``mode`` (``strict``, ``filter``, or None:
    disabled or unknown), its ``chain`` (newest first; None when unknown: ``seccomp.img``
    damaged) and where it comes from, ``source``:

    - ``own``: the thread's core holds it;
    - ``leader``: its core holds none, and the leader's filters carry
      ``SECCOMP_FILTER_FLAG_TSYNC`` (or are an older CRIU's one per process): CRIU found
      every thread's chain the same as the leader's and restores them from the leader;
    - ``none``: its core holds none and nothing gives it one: disabled;
    - ``unknown``: its core holds none and the leader's filters cannot be read."""

    mode: str | None
    chain: tuple[SeccompFilter, ...] | None
    source: str

    @property
    def programs(self) -> tuple[bytes, ...] | None:
        """The chain's programs, newest first (None when unknown): two threads whose
        programs are the same run the same filters, whatever their indexes."""
        return None if self.chain is None else tuple(f.program for f in self.chain)


def read_cgroup_sets(checkpoint: Checkpoint) -> tuple[dict[int, tuple[CgroupMember, ...]],
                                                      tuple[Finding, ...]]:
    """cg_set id → its :class:`CgroupMember` s (``cgroup.img``), and findings."""
    messages, error = checkpoint.decoded("cgroup.img")
    if error is not None:
        return {}, () if isinstance(error, MissingImageError) else (error_finding(error),)
    sets: dict[int, tuple[CgroupMember, ...]] = {}
    for entry in messages:
        for cg_set in entry.sets:
            sets[cg_set.id] = tuple(
                CgroupMember(field_text(ctl.name), field_text(ctl.path),
                             optional(ctl, "cgns_prefix"))
                for ctl in cg_set.ctls)
    return sets, ()


def read_seccomp_filters(checkpoint: Checkpoint) -> tuple[tuple[SeccompFilter, ...],
                                                          tuple[Finding, ...]]:
    """Every filter of ``seccomp.img`` in image order, and findings."""
    messages, error = checkpoint.decoded("seccomp.img")
    if error is not None:
        return (), () if isinstance(error, MissingImageError) else (error_finding(error),)
    filters: list[SeccompFilter] = []
    for entry in messages:
        for item in entry.seccomp_filters:
            filters.append(SeccompFilter(
                len(filters), optional(item, "prev"), optional(item, "flags"),
                len(item.filter) // BPF_INSN, bytes(item.filter)))
    return tuple(filters), ()


def filter_chain(filters: tuple[SeccompFilter, ...], last: int | None,
                 where: str) -> tuple[tuple[SeccompFilter, ...], tuple[Finding, ...]]:
    """The filters a thread runs, newest first, from its ``last`` one back through
    ``prev``; an index out of range or a loop ends the chain with a finding."""
    chain: list[SeccompFilter] = []
    seen: set[int] = set()
    index = last
    while index is not None:
        if index >= len(filters) or index in seen:
            why = "loops" if index in seen else f"names filter {index}, seccomp.img has " \
                                                f"{len(filters)}"
            return tuple(chain), (Finding(WARNING, "seccomp-chain",
                                          f"the seccomp filter chain {why}", where,
                                          named(entry=index)),)
        seen.add(index)
        chain.append(filters[index])
        index = filters[index].prev
    return tuple(chain), ()


def restored_seccomp(mode: str | None, chain: tuple[SeccompFilter, ...] | None,
                     leader: ThreadSeccomp | None = None,
                     per_process: bool = False) -> ThreadSeccomp:
    """What a thread runs once CRIU restores it, from its core's ``mode`` and ``chain``
    (:func:`filter_chain`) and, for a thread other than the leader, the ``leader``'s own
    :class:`ThreadSeccomp`; ``per_process``: the leader's filter is an older CRIU's one
    per process (``ThreadCore.seccomp_per_process``), restored with TSYNC too
    (``criu/cr-restore.c``: ``seccomp_force_tsync``)."""
    if mode not in (None, "disabled"):
        return ThreadSeccomp(mode, chain, "own")
    if leader is None or leader.mode != "filter" or leader.source != "own":
        return ThreadSeccomp(None, (), "none")
    if per_process:
        return ThreadSeccomp(leader.mode, leader.chain, "leader")
    if leader.chain is None:  # seccomp.img damaged: the flags are unknown
        return ThreadSeccomp(None, None, "unknown")
    synced = bool(leader.chain) and bool((leader.chain[0].flags or 0)
                                         & SECCOMP_FILTER_FLAG_TSYNC)
    return ThreadSeccomp(leader.mode, leader.chain, "leader") if synced else \
        ThreadSeccomp(None, (), "none")
