"""One truth: summarize, ps, rss, mems, size, fds and diff agree on every process
(:func:`tests.consistency.check_consistency`), on every fixture and on synthetic
checkpoints that hold what the fixtures do not (a zombie, a rewritten title, a
stack beside the main one, shared memory mapped twice and held open, a parent
chain, names that are not UTF-8)."""

from __future__ import annotations

import copy
import json

import pytest

import crit_plus
from decoders import FdType
from decoders.flags import PAGE_SIZE as P

from . import consistency
from .conftest import FIXTURES
from .consistency import check_consistency, command_outputs, run_json
from .synth import (
    LAZY,
    PRESENT,
    CheckpointBuilder,
    build_chain,
    hostile_names,
    many_processes,
    message,
    proc,
    run,
    tagged,
    vma,
)

BASE = 0x7F0000000000
STACK = 0x7FFF00000000


#: Every checkpoint of FACTS.json (the fixtures' keys; conftest.checkpoint_dirs unpacks them).
KEYS = sorted(json.loads((FIXTURES / "FACTS.json").read_text()))


@pytest.mark.parametrize("key", KEYS, ids=lambda key: key.split("/")[0] + (
    "/" + key.split("/")[-2] if "/" in key else ""))
def test_every_command_agrees_on_the_fixtures(checkpoint_dirs, facts, key):
    found = check_consistency(checkpoint_dirs[key], facts[key])
    assert sorted(found) == sorted(p["pid"] for p in facts[key]["processes"])
    for process in facts[key]["processes"]:
        assert found[process["pid"]].vmas == process["vmas"]


def _rich(directory):
    """Processes with what the fixtures lack: a zombie whose pstree thread id is
    garbage, a rewritten title, two stacks, shared memory mapped by two processes,
    a memfd only held open, lazy pages, pages outside every VMA."""
    b = CheckpointBuilder(directory)
    b.inventory()
    b.pstree([proc(1), proc(2, ppid=1), proc(3, ppid=1, threads=[987654321]),
              proc(4, ppid=1, threads=[4, 5])])
    b.pagemap("pagemap-shmem-77.img", [run(0, 2, PRESENT, tagged(0, 2, b"S"))])
    held = b.add_file(FdType.MEMFD, "memfd", flags=2, pos=0, fown={}, inode_id=5)
    b.write("memfd.img", "MEMFD_INODE", [message(
        "memfd_inode_entry", name="held", uid=0, gid=0, size=P, shmid=91, seals=0,
        inode_id=5)])
    b.pagemap("pagemap-shmem-91.img", [run(0, 1, PRESENT, tagged(0, 1, b"M"))])
    argv = b"/usr/bin/app\0--flag\0"
    layout = [vma(BASE, BASE + 4 * P), vma(BASE + 8 * P, BASE + 12 * P, kind="heap"),
              vma(BASE + 16 * P, BASE + 20 * P, kind="shared", shmid=77),
              vma(BASE + 32 * P, BASE + 36 * P, kind="stack"),  # grows down: a stack
              vma(STACK - 4 * P, STACK)]                         # holds start_stack
    b.process(1, vmas=layout, runs=[
        run(BASE, 2, PRESENT), run(BASE + 8 * P, 1, PRESENT), run(BASE + 9 * P, 1, LAZY),
        run(BASE + 33 * P, 1, PRESENT), run(BASE + 40 * P, 1, PRESENT),  # in no VMA
        run(STACK - P, 1, PRESENT, argv.ljust(P, b"\0"))],
        fds=[(3, held, FdType.MEMFD)], arg=(STACK - P, STACK - P + len(argv)),
        start_stack=STACK - 2 * P)
    b.process(2, vmas=[vma(BASE + 16 * P, BASE + 20 * P, kind="shared", shmid=77),
                       vma(BASE + 24 * P, BASE + 26 * P, kind="shared", shmid=77, pgoff=P)],
              runs=[], comm="child")
    b.zombie(3)
    title = b"sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups\0HOME=/\0"
    b.process(4, vmas=[vma(STACK - 4 * P, STACK)], threads=[4, 5], comm="sshd",
              runs=[run(STACK - P, 1, PRESENT, title.ljust(P, b"\0"))],
              arg=(STACK - P, STACK - P + 12), env=(STACK - P + 12, STACK - P + len(title)),
              start_stack=STACK - 2 * P)
    b.finish()
    return b


@pytest.fixture
def rich(tmp_path):
    return _rich(tmp_path / "rich").directory


def test_every_command_agrees_on_a_rich_synthetic_checkpoint(rich):
    found = check_consistency(rich)
    assert found[3].threads == 1  # the zombie's pstree thread id is not a thread
    assert found[4].threads == 2
    assert found[1].command_line == ("/usr/bin/app", "--flag")
    assert found[4].command_line == ("sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",)
    kinds = found[1].kinds
    assert kinds["stack"] == (2, 2, 0, 0, 0)  # the growing-down VMA and start_stack's
    assert kinds["heap"] == (1, 1, 0, 1, 0) and kinds["shared"] == (1, 0, 0, 0, 2)
    assert found[1].pages == {"present": 6, "parent": 0, "lazy": 1, "none": 0, "shared": 2}
    assert found[2].pages["shared"] == 2 + 1  # the object's pages in each of its windows


def test_shared_pages_count_once_in_the_checkpoint(rich):
    checkpoint = crit_plus.open_checkpoint(rich)
    pages = checkpoint.pages
    assert pages.private.present == 6 + 1 and pages.private.lazy == 1
    assert pages.shared.present == 3  # object 77's two pages and the held memfd's one
    assert pages.total.present * P == sum(pf.size for pf in checkpoint.pages_files)
    objects = {o.shmid: (o.kind, o.mapped_by) for o in pages.objects}
    assert objects == {77: ("shared", (1, 2)), 91: ("unmapped-shmem", ())}
    size = run_json("size", rich, "--format", "json")
    kinds = {k["kind"]: k for k in size["vma_kinds"]}
    assert kinds["shared"]["pages"]["present"] == 2  # once, though two processes map it
    assert kinds["unmapped-shmem"]["pages"]["present"] == 1
    assert kinds["outside-vmas"]["pages"]["present"] == 1
    summary = run_json("summarize", rich, "--format", "json")
    assert summary["totals"]["shared"] == 3


def test_mems_names_the_main_stack_only(rich):
    rows = {row["start"]: row for row in run_json("mems", rich, "--format", "json")[0]["vmas"]}
    assert rows[STACK - 4 * P]["kind"] == "stack" and rows[STACK - 4 * P]["name"] == "[stack]"
    assert rows[BASE + 32 * P]["kind"] == "stack" and rows[BASE + 32 * P]["name"] is None


@pytest.mark.parametrize("build", ["chain", "hostile", "many"])
def test_every_command_agrees_on_other_synthetic_checkpoints(tmp_path, build):
    if build == "chain":
        directory = build_chain(tmp_path).directory
    elif build == "hostile":
        directory = hostile_names(tmp_path / "hostile").directory
    else:
        directory = many_processes(tmp_path / "many", processes=4, vmas=8, fds=2).directory
    found = check_consistency(directory)
    if build == "chain":
        assert found[1].pages == {"present": 1, "parent": 3, "lazy": 1, "none": 0,
                                  "shared": 0}


def test_entries_without_a_data_flag_count_as_listed_everywhere(tmp_path):
    """A pagemap entry with flags 0 (CRIU never writes one: damaged or hand-made) is a
    ``none`` page: PageCounts.listed counts it, as crit's ``x rss`` does, and so does every
    row's total (summarize's pages, rss's total, size's listed), not present + parent +
    lazy alone."""
    builder = CheckpointBuilder(tmp_path / "ck")
    builder.inventory()
    builder.pstree([proc(1)])
    builder.process(1, vmas=[vma(BASE, BASE + 8 * P)], runs=[
        run(BASE, 2, PRESENT), run(BASE + 2 * P, 1, LAZY), run(BASE + 4 * P, 3, 0)])
    builder.finish()
    found = check_consistency(builder.directory)
    assert found[1].pages == {"present": 2, "parent": 0, "lazy": 1, "none": 3, "shared": 0}
    listed = crit_plus.open_checkpoint(builder.directory).process(1).pages.private.listed
    summary = run_json("summarize", builder.directory, "--format", "json")
    rss = run_json("rss", builder.directory, "--format", "json")
    assert listed == 6 == summary["processes"][0]["pages"] == summary["totals"]["pages"]
    assert summary["top_mappings"][0]["pages"] == listed  # the one VMA holds them all
    assert rss[0]["total"] == sum(kind["total"] for kind in rss[0]["by_kind"]) == listed


@pytest.mark.parametrize("command, path, value", [
    ("summarize", ("processes", 0, "present"), 1),
    ("rss", (0, "by_kind", 0, "vmas"), 1),
    ("mems", (0, "vmas", 0, "kind"), "anon?"),
    ("size", ("processes", 0, "threads"), 1),
    ("ps", (0, "argv"), ["other"]),
    ("fds", (0, "fds"), []),
    ("diff", ("memory", "processes", 0, "vmas"), []),
])
def test_a_disagreement_is_found(rich, monkeypatch, command, path, value):
    """The check fails when any one command says something else."""
    outputs = command_outputs(rich)

    def altered(_image_dir):
        changed = copy.deepcopy(outputs)
        item = changed[command]
        for step in path[:-1]:
            item = item[step]
        old = item[path[-1]]
        item[path[-1]] = old + value if isinstance(old, int) and not isinstance(value, list) \
            else value
        return changed

    monkeypatch.setattr(consistency, "command_outputs", altered)
    with pytest.raises(AssertionError, match="disagreement"):
        check_consistency(rich)


def test_facts_json_is_compared(checkpoint_dirs, facts):
    key = "service-a"
    wrong = copy.deepcopy(facts[key])
    wrong["processes"][0]["pages_by_flags"] = {"4": 1}
    with pytest.raises(AssertionError, match="FACTS.json"):
        check_consistency(checkpoint_dirs[key], wrong)


@pytest.mark.parametrize("key", KEYS)
def test_diff_counts_only_the_checkpoints_own_pages(checkpoint_dirs, key):
    directory = checkpoint_dirs[key]
    diff = run_json("diff", directory, directory, "--format", "json")
    assert diff["memory"]["pages"]["unavailable"] == 0
    checkpoint = crit_plus.open_checkpoint(directory)
    for item in diff["memory"]["processes"]:
        pages = checkpoint.process(item["old_pid"]).pages
        counted = item["pages"]
        assert counted["unchanged"] + counted["changed"] == \
            pages.private.present + pages.private.parent + pages.shared.listed


def test_rss_help_lists_the_kinds_that_can_appear():
    from crit_plus.memory import VMA_KINDS
    from crit_plus.pages import OUTSIDE_VMAS

    from .cli import run_cli

    text = " ".join(run_cli("rss", "--help", check=True).stdout.split())
    listed = text.split("by kind of mapping (", 1)[1].split(")", 1)[0]
    named = [word.strip(" ,;") for word in listed.replace(";", ",").split(",")]
    assert named[:-1] == list(VMA_KINDS)
    assert named[-1] == f"{OUTSIDE_VMAS} for pages in no mapping"


_ZOMBIE_PARENT = """
import os, sys, time
child = os.fork()
if child == 0:
    os._exit(7)
while open(f"/proc/{child}/stat").read().split(") ")[1][0] != "Z":
    time.sleep(0.01)
print(child, flush=True)
time.sleep(600)
"""


@pytest.mark.live
def test_a_real_zombie_has_one_thread_and_every_command_agrees(criu, tmp_path):
    """A process with an unreaped child, dumped by CRIU: the zombie's pstree entry holds
    an unset thread id; it has its leader alone, and the images hold no error."""
    import os
    import subprocess
    import sys

    from .workloads import harness

    parent = subprocess.Popen([sys.executable, "-c", _ZOMBIE_PARENT], stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        zombie = int(parent.stdout.readline())
        harness.dump(criu, parent.pid, tmp_path / "img", leave_running=False,
                     options=("--shell-job",))
    finally:
        harness.kill_group(parent.pid, [parent.pid])
        parent.wait()
    found = check_consistency(tmp_path / "img")
    assert found[zombie].threads == 1 and found[zombie].command_line is None
    checkpoint = crit_plus.open_checkpoint(tmp_path / "img")
    assert checkpoint.process(zombie).is_zombie
    assert [f for f in checkpoint.findings if f.severity == "error"] == []
    assert os.path.exists(tmp_path / "img" / f"core-{zombie}.img")


@pytest.mark.parametrize("key", KEYS, ids=lambda key: key.split("/")[0] + (
    "/" + key.split("/")[-2] if "/" in key else ""))
def test_summarize_and_size_rank_the_biggest_mappings_alike(checkpoint_dirs, key):
    """One ranking (crit_plus.pages.biggest_mappings): summarize's biggest memory holders
    and ``size --top`` list the same mappings in the same order, ties (equal pages, as
    lxd-web/after's 4-page mappings) broken by pid, then address."""
    directory = checkpoint_dirs[key]
    for top in (3, 1000):
        summary = run_json("summarize", directory, "-f", "json", "--top", top)
        size = run_json("size", directory, "-f", "json", "--top", top)
        held = [(m["pid"], m["start"], m["end"], m["pages"]) for m in summary["top_mappings"]]
        ranked = [(v["pid"], v["start"], v["end"], sum(v["pages"][state] for state in
                                                       ("present", "parent", "lazy", "none")))
                  for v in size["top_vmas"]]
        assert held == ranked and held
        assert held == sorted(held, key=lambda m: (-m[3], m[0], m[1]))
