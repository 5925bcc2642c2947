"""Which process of one checkpoint is which process of the other, and what changed in it.

Pairing (see docs/commands/diff.md)::

    auto ::= pid   when the checkpoints share pids and, for at least half of the
                   smaller side, the process with a shared pid runs the same
                   command line (the same pid namespace, or a restore that kept pids)
           | tree  otherwise (another container, a restore in a new namespace)
    pid  ::= equal pids are one process
    tree ::= roots paired by command line; then, under each pair, children paired
             by command line, then by comm, in pstree order; what is left paired
             by command line anywhere ("command line")

A process's command line is the graph's (:attr:`crit_plus.graph.Process.command_line`,
as ``ps`` shows it), or its ``comm`` when that cannot be read (zombies,
kernel-provided names).
"""

from __future__ import annotations

import functools
from collections import defaultdict, deque
from dataclasses import dataclass


PID, TREE, COMMAND_LINE = "pid", "tree", "command line"


@dataclass(frozen=True, slots=True)
class Pair:
    """``old`` and ``new`` are one process; ``method`` says how that was decided."""

    old: object
    new: object
    method: str


@dataclass(frozen=True)
class Pairing:
    """Every process paired, started (NEW only) or exited (OLD only).

    ``method`` is ``pid`` or ``tree`` (the whole pairing); ``reason`` one
    sentence on why; ``shared_pids``/``agreeing`` the numbers behind it.
    """

    method: str
    reason: str
    pairs: tuple
    exited: tuple
    started: tuple
    shared_pids: int
    agreeing: int

    @functools.cached_property
    def _new_by_old(self):
        return {pair.old.pid: pair.new.pid for pair in self.pairs}

    def new_pid_of(self, old_pid):
        """The NEW pid paired with OLD ``old_pid``, or None."""
        return self._new_by_old.get(old_pid)


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One value that differs: ``field`` was ``old``, is ``new`` (machine values)."""

    field: str
    old: object
    new: object


@dataclass(frozen=True, slots=True)
class NotCompared:
    """A value of a paired process one side cannot give (its command line, when its
    pagemap is cut): not compared, never counted as a change; ``reason`` says which
    side and why (the file and offset)."""

    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A process as one side shows it (for started and exited processes)."""

    pid: int
    ppid: int
    comm: str | None
    argv: tuple | None
    state: str | None
    threads: int
    fds: int
    vmas: int


@dataclass(frozen=True)
class ProcessDiff:
    """A paired process: its pids on both sides, how it was paired, what changed.

    ``changes`` are :class:`FieldChange` s (``comm``, ``state``, ``argv``,
    ``exe``, ``cwd``, ``root``, ``parent``, ``pgid``, ``sid``, ``threads``,
    ``creds.<field>``, ``cgroup.<controller>``); ``threads_added`` and
    ``threads_gone`` are tids (pid pairing) — with tree pairing tids are not
    comparable and only the count is (``threads`` change); ``not_compared`` are
    :class:`NotCompared` s, values a side cannot give (not changes).
    """

    old_pid: int
    new_pid: int
    comm: str | None
    method: str
    changes: tuple
    threads_added: tuple
    threads_gone: tuple
    not_compared: tuple = ()

    @property
    def changed(self):
        """True when anything differs."""
        return bool(self.changes or self.threads_added or self.threads_gone)


@dataclass(frozen=True)
class ProcessesDiff:
    """The processes section: the pairing, started, exited and changed processes;
    ``not_compared`` the ``(old_pid, new_pid, NotCompared)`` of every paired process
    (changed or not) with a value a side cannot give."""

    pairing: Pairing
    started: tuple
    exited: tuple
    changed: tuple
    unchanged: int
    not_compared: tuple = ()

    @property
    def differs(self):
        """True when any process started, exited or changed."""
        return bool(self.started or self.exited or self.changed)


# -- pairing ---------------------------------------------------------------------------


def command_key(process):
    """What identifies a process's program: its command line, else ``("comm", comm)``."""
    argv = process.command_line
    if argv:
        return tuple(argv)
    return ("comm", process.comm)


def pair_processes(old, new, match="auto"):
    """Pair the processes of checkpoints ``old`` and ``new`` (:class:`Pairing`).

    ``match`` is ``auto``, ``pid`` or ``tree`` (see the module docstring).
    """
    if match not in ("auto", PID, TREE):
        raise ValueError(f"unknown match {match!r}")
    new_pids = set(new.pids)
    shared = [pid for pid in old.pids if pid in new_pids]
    # a command line a side cannot read (a cut pagemap) neither agrees nor disagrees
    unreadable = sum(1 for pid in shared if _unreadable(old.process(pid), new.process(pid)))
    agreeing = sum(1 for pid in shared
                   if not _unreadable(old.process(pid), new.process(pid))
                   and command_key(old.process(pid)) == command_key(new.process(pid)))
    smaller = min(len(old.processes), len(new.processes)) - unreadable
    if match == PID:
        method, reason = PID, "asked for (--match pid)"
    elif match == TREE:
        method, reason = TREE, "asked for (--match tree)"
    elif shared and agreeing * 2 >= smaller:
        method = PID
        unread = f" ({unreadable} unreadable, not compared)" if unreadable else ""
        reason = (f"{agreeing} of {len(shared)} shared pids run the same command line"
                  f"{unread}: one pid namespace")
    else:
        method = TREE
        reason = (f"{len(shared)} shared pids, {agreeing} with the same command line: "
                  "pids are not comparable (another container, or a restore in a new "
                  "pid namespace)")
    pairs = _pair_by_pid(old, new, shared) if method == PID else _pair_by_tree(old, new)
    paired_old = {pair.old.pid for pair in pairs}
    paired_new = {pair.new.pid for pair in pairs}
    exited = tuple(p for _d, p in old.walk() if p.pid not in paired_old)
    started = tuple(p for _d, p in new.walk() if p.pid not in paired_new)
    order = {pid: i for i, (_d, pid) in enumerate(new.tree.walk())}
    pairs = tuple(sorted(pairs, key=lambda pair: order.get(pair.new.pid, 0)))
    return Pairing(method, reason, pairs, exited, started, len(shared), agreeing)


def _unreadable(old_process, new_process):
    """True when either side cannot read the process's command line."""
    return bool(old_process.command_line_unknown or new_process.command_line_unknown)


def _pair_by_pid(old, new, shared):
    return [Pair(old.process(pid), new.process(pid), PID) for pid in shared]


def _pair_by_tree(old, new):
    pairs = []
    used_old, used_new = set(), set()

    def match(olds, news, method, loose):
        found = []
        waiting = defaultdict(deque)
        for process in news:
            if process.pid not in used_new:
                waiting[command_key(process)].append(process)
        rest = []
        for process in olds:
            if process.pid in used_old:
                continue
            queue = waiting.get(command_key(process))
            if queue:
                found.append((process, queue.popleft()))
            else:
                rest.append(process)
        if loose:  # same comm, in order, for what the command line could not pair
            by_comm = defaultdict(deque)
            taken = {id(n) for _o, n in found}
            for queue in waiting.values():
                for process in queue:
                    if id(process) not in taken:
                        by_comm[process.comm].append(process)
            for process in rest:
                queue = by_comm.get(process.comm)
                if queue:
                    found.append((process, queue.popleft()))
        for o, n in found:
            used_old.add(o.pid)
            used_new.add(n.pid)
            pairs.append(Pair(o, n, method))
        return found

    def descend(found):
        queue = deque(found)
        while queue:
            o, n = queue.popleft()
            queue.extend(match(o.children, n.children, TREE, True))

    roots_old = [old.process(pid) for pid in old.tree.roots]
    roots_new = [new.process(pid) for pid in new.tree.roots]
    descend(match(roots_old, roots_new, TREE, True))
    leftover_old = [p for _d, p in old.walk() if p.pid not in used_old]
    leftover_new = [p for _d, p in new.walk() if p.pid not in used_new]
    descend(match(leftover_old, leftover_new, COMMAND_LINE, False))
    return pairs


# -- what changed ----------------------------------------------------------------------


def process_info(process):
    """A :class:`ProcessInfo` of ``process``."""
    return ProcessInfo(process.pid, process.ppid, process.comm, process.command_line,
                       process.state_label, len(process.threads), len(process.fds),
                       len(process.vmas))


def cgroup_sets(checkpoint):
    """``{cg_set id: {controller: path}}`` from the graph's ``Checkpoint.cgroup_sets``
    (``cgroup.img``; empty when absent).  A thread's core names its set
    (``ThreadCore.cg_set``).  The unified hierarchy's controller name is ``""``.
    """
    return {set_id: {member.controller: member.path for member in members}
            for set_id, members in checkpoint.cgroup_sets.items()}


def cgroup_of(process, sets):
    """``{controller: path}`` of ``process``, or None when it cannot be told."""
    core = process.core
    if core is None or core.cg_set is None or not sets:
        return None
    return sets.get(core.cg_set)


_CREDS = ("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid", "groups",
          "cap_eff", "cap_prm", "cap_bnd", "lsm_profile", "no_new_privs")


def _file_name(file):
    return file.name if file is not None else None


def diff_process(pair, pairing_method, old_sets, new_sets, parent_of):
    """The :class:`ProcessDiff` of one :class:`Pair`.

    ``parent_of(old_ppid)`` gives the NEW pid paired with an OLD parent (to see
    whether the parent is still the same process when pids are not comparable).
    """
    o, n = pair.old, pair.new
    changes = []

    def check(field, old_value, new_value):
        if old_value != new_value:
            changes.append(FieldChange(field, old_value, new_value))

    check("comm", o.comm, n.comm)
    check("state", o.state_label, n.state_label)
    not_compared = []
    unknown = [f"{side} {why}" for side, why in (("OLD", o.command_line_unknown),
                                                  ("NEW", n.command_line_unknown)) if why]
    if unknown:
        not_compared.append(NotCompared("argv", "; ".join(unknown)))
    else:
        check("argv", o.argv, n.argv)
    check("exe", _file_name(o.exe), _file_name(n.exe))
    check("cwd", _file_name(o.cwd), _file_name(n.cwd))
    check("root", _file_name(o.root), _file_name(n.root))
    old_parent = o.checkpoint.tree.parent(o.pid)
    new_parent = n.checkpoint.tree.parent(n.pid)
    if pairing_method == PID:
        check("parent", old_parent, new_parent)
        check("pgid", o.pgid, n.pgid)
        check("sid", o.sid, n.sid)
    else:
        expected = parent_of(old_parent) if old_parent is not None else None
        if expected != new_parent:
            changes.append(FieldChange("parent", old_parent, new_parent))
    added = gone = ()
    if pairing_method == PID:
        old_tids = [t.tid for t in o.threads]
        new_tids = [t.tid for t in n.threads]
        old_set, new_set = set(old_tids), set(new_tids)
        added = tuple(t for t in new_tids if t not in old_set)
        gone = tuple(t for t in old_tids if t not in new_set)
    else:
        check("threads", len(o.threads), len(n.threads))
    old_creds, new_creds = o.creds, n.creds
    if old_creds is not None and new_creds is not None:
        for name in _CREDS:
            check(f"creds.{name}", getattr(old_creds, name), getattr(new_creds, name))
    old_cg, new_cg = cgroup_of(o, old_sets), cgroup_of(n, new_sets)
    if old_cg is not None and new_cg is not None:
        for controller in sorted(set(old_cg) | set(new_cg)):
            check(f"cgroup.{controller}", old_cg.get(controller), new_cg.get(controller))
    return ProcessDiff(o.pid, n.pid, n.comm, pair.method, tuple(changes), added, gone,
                       tuple(not_compared))


def diff_processes(pairing):
    """The :class:`ProcessesDiff` of a :class:`Pairing`."""
    old_sets = new_sets = None
    changed, unchanged, not_compared = [], 0, []
    if pairing.pairs:
        old_sets = cgroup_sets(pairing.pairs[0].old.checkpoint)
        new_sets = cgroup_sets(pairing.pairs[0].new.checkpoint)
    for pair in pairing.pairs:
        result = diff_process(pair, pairing.method, old_sets, new_sets, pairing.new_pid_of)
        not_compared.extend((result.old_pid, result.new_pid, item)
                            for item in result.not_compared)
        if result.changed:
            changed.append(result)
        else:
            unchanged += 1
    return ProcessesDiff(pairing, tuple(process_info(p) for p in pairing.started),
                         tuple(process_info(p) for p in pairing.exited), tuple(changed),
                         unchanged, tuple(not_compared))
