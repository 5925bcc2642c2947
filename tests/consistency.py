"""One truth: every command says the same thing about the same checkpoint.

:func:`check_consistency` runs ``summarize``, ``ps``, ``rss``, ``mems``, ``size``,
``fds`` and ``diff`` (the checkpoint against itself) with ``--format json``, in
process through :func:`crit_plus.cli.main`, and compares, for every process, what
each of them shows:

=================  ==========================================================
fact               shown by
=================  ==========================================================
VMA count          summarize, rss, mems (rows), diff (memory: VMA pairs)
pages by state     summarize, rss, size (private: present, parent, lazy);
                   summarize, rss, mems (shared-memory pages it maps)
pages by kind      rss (by_kind) and mems (rows summed by kind); checkpoint-wide
                   size's ``vma_kinds`` = the processes' private pages by kind
                   plus each shared object once (size's ``shared``)
fd count           summarize, fds
thread count       summarize, ps, size
command line       summarize (``--cmdline``), ps
=================  ==========================================================

and ``FACTS.json`` where it has the fact (VMA count, pages by pagemap flags,
threads, fds).  A checkpoint diffed against itself must be identical: no
process started, exited or changed, no page changed.

Use it on any checkpoint directory (the fixtures, synthetic checkpoints, real
zdtm dumps): ``check_consistency(path)`` raises ``AssertionError`` listing every
disagreement, and returns the facts it agreed on (pid → :class:`Facts`).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field

from crit_plus.cli import main
from crit_plus.memory import page_state

#: The commands compared, with the options each needs.
COMMANDS = {
    "summarize": ("summarize", "{dir}", "--cmdline", "--format", "json"),
    "ps": ("ps", "{dir}", "--format", "json"),
    "rss": ("rss", "{dir}", "--format", "json"),
    "mems": ("mems", "{dir}", "--format", "json"),
    "size": ("size", "{dir}", "--format", "json"),
    "fds": ("fds", "{dir}", "--format", "json"),
    "diff": ("diff", "{dir}", "{dir}", "--format", "json"),
}
#: Private pages by state (:func:`crit_plus.memory.page_state`); each command's total of
#: them (summarize's ``pages``, rss's ``total``, size's ``listed``) is compared too.
STATES = ("present", "parent", "lazy", "none")


@dataclass
class Facts:
    """What the commands agreed on for one process."""

    pid: int
    vmas: int | None = None
    pages: dict = field(default_factory=dict)   # state -> private pages; "shared" -> pages
    kinds: dict = field(default_factory=dict)   # kind -> (vmas, present, parent, lazy, shared)
    fds: int | None = None
    threads: int | None = None
    command_line: tuple | None = None


def run_json(*args):
    """Run one crit-plus command in process; its JSON output (AssertionError on failure)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in args])
    text = out.getvalue()
    # diff says with its exit code that the checkpoints differ or hold errors; its
    # report is still whole
    if code != 0 and not (args[0] == "diff" and text.startswith(("{", "["))):
        raise AssertionError(f"crit-plus {' '.join(map(str, args))} exited {code}: "
                             f"{err.getvalue().strip()}")
    return json.loads(text)


def command_outputs(image_dir):
    """``{command: JSON output}`` of every command of :data:`COMMANDS` on ``image_dir``."""
    return {name: run_json(*(str(image_dir) if a == "{dir}" else a for a in args))
            for name, args in COMMANDS.items()}


class _Agreement:
    """Collects one value per (pid, fact) from each command; records disagreements."""

    def __init__(self):
        self.values = {}    # (pid, fact) -> (command, value)
        self.problems = []

    def see(self, command, pid, fact, value):
        key = (pid, fact)
        if key not in self.values:
            self.values[key] = (command, value)
            return
        first, seen = self.values[key]
        if seen != value:
            self.problems.append(f"pid {pid} {fact}: {first} says {seen!r}, "
                                 f"{command} says {value!r}")

    def get(self, pid, fact):
        return self.values.get((pid, fact), (None, None))[1]


def _kinds_of_rss(item):
    return {k["kind"]: (k["vmas"], k["present"], k["parent"], k["lazy"], k["shared"])
            for k in item["by_kind"]}


def _kinds_of_mems(item):
    kinds = {}
    for row in item["vmas"]:
        pages = row["pages"]
        old = kinds.get(row["kind"], (0, 0, 0, 0, 0))
        kinds[row["kind"]] = (old[0] + 1, old[1] + pages["present"], old[2] + pages["parent"],
                              old[3] + pages["lazy"], old[4] + (row["shared"] or 0))
    return kinds


def _pages_by_flags(flags):
    """FACTS.json's ``pages_by_flags`` (pagemap flags value → pages) by state."""
    states = dict.fromkeys(STATES, 0)
    for value, pages in flags.items():
        state = page_state(int(value))
        states[state] = states.get(state, 0) + pages
    return states


def check_consistency(image_dir, facts=None):
    """Check that every command shows the same facts of every process of the
    checkpoint at ``image_dir`` (and ``facts``, its ``FACTS.json`` entry, if given).

    Raises AssertionError naming every disagreement; returns ``{pid: Facts}``.
    """
    out = command_outputs(image_dir)
    seen = _Agreement()
    see = seen.see
    for p in out["summarize"]["processes"]:
        pid = p["pid"]
        see("summarize", pid, "vmas", p["vmas"])
        for state in STATES:
            see("summarize", pid, state, p[state])
        see("summarize", pid, "listed", p["pages"])
        see("summarize", pid, "shared", p["shared"])
        see("summarize", pid, "fds", p["fds"])
        see("summarize", pid, "threads", p["threads"])
        see("summarize", pid, "command line", _argv(p["argv"]))
    for p in out["ps"]:
        see("ps", p["pid"], "threads", p["threads"])
        see("ps", p["pid"], "command line", _argv(p["argv"]))
    for p in out["rss"]:
        pid = p["pid"]
        see("rss", pid, "vmas", p["vmas"])
        for state in STATES:
            see("rss", pid, state, p[state])
        see("rss", pid, "listed", p["total"])
        see("rss", pid, "shared", p["shared"])
        kinds = _kinds_of_rss(p)
        outside = kinds.pop("outside-vmas", (0, 0, 0, 0, 0))
        total = tuple(sum(k[i] for k in kinds.values()) for i in range(5))
        inside = (p["vmas"], p["present"] - outside[1], p["parent"] - outside[2],
                  p["lazy"] - outside[3], p["shared"])
        if total != inside:
            seen.problems.append(f"pid {pid}: rss's kinds add up to {total}, its totals "
                                 f"(less outside-vmas) are {inside}")
        see("rss", pid, "kinds", kinds)
    for p in out["mems"]:
        pid = p["pid"]
        see("mems", pid, "vmas", len(p["vmas"]))
        see("mems", pid, "kinds", _kinds_of_mems(p))
        see("mems", pid, "shared", sum(row["shared"] or 0 for row in p["vmas"]))
    for p in out["size"]["processes"]:
        pid = p["pid"]
        for state in STATES:
            see("size", pid, state, p["pages"][state])
        see("size", pid, "listed", p["pages"]["listed"])
        see("size", pid, "threads", p["threads"])
    for p in out["fds"]:
        see("fds", p["pid"], "fds", sum(1 for fd in p["fds"] if isinstance(fd["fd"], int)))
    _check_size_kinds(out, seen)
    _check_diff(out["diff"], seen)
    pids = [p["pid"] for p in out["ps"]]
    for name, items in (("summarize", out["summarize"]["processes"]), ("rss", out["rss"]),
                        ("mems", out["mems"]), ("size", out["size"]["processes"]),
                        ("fds", out["fds"])):
        if sorted(p["pid"] for p in items) != sorted(pids):
            seen.problems.append(f"{name} lists pids {sorted(p['pid'] for p in items)}, "
                                 f"ps {sorted(pids)}")
    if facts is not None:
        _check_facts(facts, seen)
    if seen.problems:
        raise AssertionError(f"{image_dir}: {len(seen.problems)} disagreements:\n  "
                             + "\n  ".join(seen.problems))
    return {pid: Facts(pid, seen.get(pid, "vmas"),
                       {name: seen.get(pid, name) for name in STATES + ("shared",)},
                       seen.get(pid, "kinds") or {}, seen.get(pid, "fds"),
                       seen.get(pid, "threads"), seen.get(pid, "command line"))
            for pid in pids}


def _argv(argv):
    return tuple(argv) if argv is not None else None


def _check_size_kinds(out, seen):
    """size's VMA kinds: the processes' private pages by kind, each shared object once."""
    expected = {}
    for p in out["rss"]:
        for kind in p["by_kind"]:
            old = expected.get(kind["kind"], (0, 0, 0, 0))
            expected[kind["kind"]] = (old[0] + kind["vmas"], old[1] + kind["present"],
                                      old[2] + kind["parent"], old[3] + kind["lazy"])
    for item in out["size"]["shared"]:
        old = expected.get(item["kind"], (0, 0, 0, 0))
        pages = item["pages"]
        expected[item["kind"]] = (old[0], old[1] + pages["present"], old[2] + pages["parent"],
                                  old[3] + pages["lazy"])
    got = {k["kind"]: (k["vmas"], k["pages"]["present"], k["pages"]["parent"],
                       k["pages"]["lazy"]) for k in out["size"]["vma_kinds"]}
    if got != expected:
        seen.problems.append(f"size's VMA kinds {got} are not the processes' kinds plus the "
                             f"shared objects {expected}")
    total = out["size"]["pages"]
    kinds_total = tuple(sum(v[i] for v in got.values()) for i in (1, 2, 3))
    if kinds_total != (total["present"], total["parent"], total["lazy"]):
        seen.problems.append(f"size's VMA kinds add up to {kinds_total} pages, its total is "
                             f"{total}")


def _check_diff(diff, seen):
    """A checkpoint against itself: identical, every process paired and unchanged, no page
    changed; its VMAs per process are the other commands'."""
    processes = diff["processes"]
    if not diff["identical"] or diff["differs"]:
        seen.problems.append(f"diff against itself: identical={diff['identical']}, "
                             f"differs={diff['differs']}")
    if processes["started"] or processes["exited"] or processes["changed"]:
        seen.problems.append(f"diff against itself: {len(processes['started'])} started, "
                             f"{len(processes['exited'])} exited, "
                             f"{len(processes['changed'])} changed")
    memory = diff["memory"]
    if memory["pages"]["changed"]:
        seen.problems.append(f"diff against itself: {memory['pages']['changed']} pages changed")
    for item in memory["processes"]:
        if item["old_pid"] != item["new_pid"]:
            seen.problems.append(f"diff against itself pairs pid {item['old_pid']} with "
                                 f"{item['new_pid']}")
        seen.see("diff", item["old_pid"], "vmas", len(item["vmas"]))
        kinds = {}
        for vma in item["vmas"]:
            if vma["change"] != "same" or vma["old"] != vma["new"]:
                seen.problems.append(f"pid {item['old_pid']}: diff against itself: VMA "
                                     f"{vma['old']} is {vma['change']}")
            kind = vma["new"]["kind"]
            kinds[kind] = kinds.get(kind, 0) + 1
        seen.see("diff", item["old_pid"], "vmas by kind", kinds)
        mems = seen.get(item["old_pid"], "kinds") or {}
        by_kind = {kind: counts[0] for kind, counts in mems.items()}
        if by_kind != kinds:
            seen.problems.append(f"pid {item['old_pid']}: diff's VMA kinds {kinds}, "
                                 f"mems' {by_kind}")


def _check_facts(facts, seen):
    """FACTS.json (computed with CRIU's pycriu) where it has the fact."""
    for process in facts["processes"]:
        pid = process["pid"]
        if "vmas" in process:
            seen.see("FACTS.json", pid, "vmas", process["vmas"])
        if "pages_by_flags" in process:
            for state, pages in _pages_by_flags(process["pages_by_flags"]).items():
                seen.see("FACTS.json", pid, state, pages)
            seen.see("FACTS.json", pid, "listed", sum(process["pages_by_flags"].values()))
        if "threads" in process:
            seen.see("FACTS.json", pid, "threads", len(process["threads"]))
        if "fds" in process:
            seen.see("FACTS.json", pid, "fds", len(process["fds"]))
