"""``diff`` where the real fixtures cannot show it: processes restored with other pids
(another pid namespace), VMAs split and moved, pages moved, parent chains, zombies.

Checkpoints are built with pycriu's message classes and CRIU's framing
(tests/synth.py); each test says what it builds and what must come out.
"""

from __future__ import annotations

import os
import random

import pytest

import crit_plus
from crit_plus.analysis.diff import diff_checkpoints, report_json
from crit_plus.analysis.diff_pages import differing_pages
from decoders import PAGE_SIZE as P
from decoders.flags import Prot

from .synth import LAZY, PARENT, PRESENT, CheckpointBuilder, proc, run, vma

ARGV = 0x10000


def build(directory, processes, parent=None):
    """A checkpoint of ``processes``: dicts with pid, ppid, argv, comm and optional
    vmas/runs (beside a one-page VMA holding the argv), or zombie=True."""
    builder = CheckpointBuilder(directory)
    builder.inventory()
    builder.pstree([proc(p["pid"], p.get("ppid", 0)) for p in processes])
    for p in processes:
        comm = p.get("comm") or p["argv"][0].rsplit("/", 1)[-1]
        if p.get("zombie"):
            builder.zombie(p["pid"], comm=comm)
            continue
        data = b"\0".join(a.encode() for a in p["argv"]) + b"\0"
        builder.process(p["pid"], comm=comm, arg=(ARGV, ARGV + len(data)),
                        vmas=[vma(ARGV, ARGV + P)] + list(p.get("vmas", ())),
                        runs=[run(ARGV, 1, PRESENT, data.ljust(P, b"\0"))]
                        + list(p.get("runs", ())))
    if parent is not None:
        builder.parent(parent)
    builder.finish()
    return crit_plus.open_checkpoint(directory)


def diff(old, new, **options):
    return diff_checkpoints(old, new, **options)


# -- pairing ------------------------------------------------------------------------------------

TREE = [  # pid, ppid, argv
    (1, 0, ["/sbin/init"]),
    (2, 1, ["nginx", "-g", "master"]),
    (3, 2, ["nginx", "-g", "worker"]),
    (4, 2, ["nginx", "-g", "worker"]),
    (5, 1, ["cron"]),
    (6, 1, ["atd"]),
]


def tree_checkpoint(directory, pids, changes=None, extra=()):
    """TREE with pids renamed by ``pids`` (old → new); ``changes`` replaces argvs by old pid."""
    changes = changes or {}
    processes = []
    for pid, ppid, argv in TREE:
        if pid not in pids:
            continue
        processes.append({"pid": pids[pid], "ppid": pids.get(ppid, 0),
                          "argv": changes.get(pid, argv)})
    return build(directory, processes + list(extra))


@pytest.fixture
def original(tmp_path):
    return tree_checkpoint(tmp_path / "old", {pid: pid for pid, _ppid, _argv in TREE})


def test_restored_with_other_pids_pairs_by_tree_and_command_line(tmp_path, original):
    shifted = {1: 101, 2: 102, 3: 103, 4: 104, 5: 105}  # atd is gone, sshd is new
    new = tree_checkpoint(tmp_path / "new", shifted, changes={5: ["cron", "-f"]},
                          extra=[{"pid": 106, "ppid": 101, "argv": ["sshd"]}])
    report = diff(original, new)
    pairing = report.pairing
    assert pairing.method == "tree" and pairing.shared_pids == 0
    assert "not comparable" in pairing.reason
    assert {(p.old.pid, p.new.pid) for p in pairing.pairs} == set(shifted.items())
    assert {p.method for p in pairing.pairs} == {"tree"}
    assert [info.pid for info in report.processes.exited] == [6]
    assert [info.pid for info in report.processes.started] == [106]
    (cron,) = report.processes.changed  # paired by comm under the same parent
    assert (cron.old_pid, cron.new_pid) == (5, 105)
    assert [(c.field, c.old, c.new) for c in cron.changes] == \
        [("argv", ("cron",), ("cron", "-f"))]
    # the same addresses hold the same bytes, but for the page with cron's new argv
    assert [(p.old_pid, p.pages.changed) for p in report.memory.processes if p.differs] == \
        [(5, 1)]
    data = report_json(report)
    assert data["pairing"]["method"] == "tree"


def test_same_pids_other_programs_pairs_by_tree(tmp_path, original):
    # a restore in a new namespace handed out the pids in another order
    swapped = {1: 1, 2: 5, 3: 6, 4: 2, 5: 3, 6: 4}
    new = tree_checkpoint(tmp_path / "new", swapped)
    report = diff(original, new)
    assert report.pairing.method == "tree"
    assert report.pairing.shared_pids == 6 and report.pairing.agreeing == 1
    assert {(p.old.pid, p.new.pid) for p in report.pairing.pairs} == set(swapped.items())
    # the same programs in the same tree: identical, whatever their pids (the pairing says)
    assert report.processes.changed == () and report.identical
    forced = diff(original, new, match="pid")
    assert forced.pairing.method == "pid" and forced.processes.changed


def test_command_line_anywhere_when_the_tree_moved(tmp_path, original):
    # the cron process was re-parented to nginx's master: paired by its command line
    new = build(tmp_path / "new", [{"pid": 11, "argv": ["/sbin/init"]},
                                   {"pid": 12, "ppid": 11, "argv": ["nginx", "-g", "master"]},
                                   {"pid": 15, "ppid": 12, "argv": ["cron"]}])
    report = diff(original, new)
    methods = {(p.old.pid, p.new.pid): p.method for p in report.pairing.pairs}
    assert methods == {(1, 11): "tree", (2, 12): "tree", (5, 15): "command line"}
    (cron,) = report.processes.changed
    assert [(c.field, c.old, c.new) for c in cron.changes] == [("parent", 1, 12)]


# -- VMAs ----------------------------------------------------------------------------------------

def pages(tag, count):
    return b"".join(bytes([tag + i]) * P for i in range(count))


def one_process(directory, vmas, runs):
    return build(directory, [{"pid": 1, "argv": ["app"], "vmas": vmas, "runs": runs}])


RW, RO = Prot.READ | Prot.WRITE, Prot.READ


def test_vma_changes_and_their_pages(tmp_path):
    old = one_process(tmp_path / "old", [
        vma(0x100000, 0x104000), vma(0x200000, 0x202000), vma(0x300000, 0x304000),
        vma(0x400000, 0x402000), vma(0x500000, 0x504000), vma(0x600000, 0x601000)],
        [run(0x100000, 4, PRESENT, pages(1, 4)), run(0x200000, 2, PRESENT, pages(10, 2)),
         run(0x300000, 4, PRESENT, pages(20, 4)), run(0x400000, 2, PRESENT, pages(30, 2)),
         run(0x500000, 4, PRESENT, pages(40, 4)), run(0x600000, 1, PRESENT, pages(50, 1))])
    changed_e = pages(40, 2) + pages(100, 1) + pages(43, 1)
    new = one_process(tmp_path / "new", [
        vma(0x100000, 0x104000), vma(0x200000, 0x204000), vma(0x300000, 0x302000),
        vma(0x400000, 0x402000, prot=RO), vma(0x500000, 0x502000),
        vma(0x502000, 0x504000, prot=RO), vma(0x700000, 0x701000)],
        [run(0x100000, 4, PRESENT, pages(1, 4)), run(0x200000, 4, PRESENT, pages(10, 4)),
         run(0x300000, 2, PRESENT, pages(20, 2)), run(0x400000, 2, PRESENT, pages(30, 2)),
         run(0x500000, 4, PRESENT, changed_e), run(0x700000, 1, PRESENT, pages(60, 1))])
    (process,) = diff(old, new).memory.processes
    rows = {row.view.start: row for row in process.vmas if row.view.start != ARGV}
    summary = {start: (row.change, row.pages.changed, row.pages.unchanged, row.pages.added,
                       row.pages.removed) for start, row in rows.items()}
    assert summary == {
        0x100000: ("same", 0, 4, 0, 0),
        0x200000: ("grown", 0, 2, 2, 0),
        0x300000: ("shrunk", 0, 2, 0, 2),
        0x400000: ("protection", 0, 2, 0, 0),
        0x500000: ("shrunk", 0, 2, 0, 0),  # its other half is still mapped, split off:
        0x502000: ("split", 1, 1, 0, 0),
        0x600000: ("removed", 0, 0, 0, 1),
        0x700000: ("added", 0, 0, 1, 0),
    }
    assert [(f.field, f.old, f.new) for f in rows[0x400000].fields] == [("prot", RW, RO)]
    assert [(f.field, f.old, f.new) for f in rows[0x502000].fields] == [("prot", RW, RO)]
    assert rows[0x502000].old.start == 0x500000  # split from
    assert rows[0x502000].changed_ranges == ((0x502000, 0x503000),)
    assert process.vma_changes == {"grown": 1, "shrunk": 2, "protection": 1, "split": 1,
                                   "removed": 1, "added": 1}


def test_pages_moved_elsewhere(tmp_path):
    rng = random.Random(8)
    data = rng.randbytes(4 * P)
    old = one_process(tmp_path / "old", [vma(0x800000, 0x805000)],
                      [run(0x800000, 4, PRESENT, data)])  # the fifth page is zero
    new = one_process(tmp_path / "new", [vma(0x900000, 0x905000, kind="heap")],
                      [run(0x900000, 4, PRESENT, data)])
    (process,) = diff(old, new).memory.processes
    assert process.vma_changes == {"removed": 1, "added": 1}
    # the fifth page is held by neither side (unlisted anonymous memory): not counted
    assert (process.pages.removed, process.pages.added, process.pages.moved) == (4, 4, 4)
    assert process.moved_complete
    no_content = diff(old, new, content=False).memory
    assert no_content.pages is None and no_content.bytes_read == 0


def test_parent_pages_are_not_read_twice(tmp_path):
    old = one_process(tmp_path / "pre", [vma(0x100000, 0x110000)],
                      [run(0x100000, 16, PRESENT, pages(1, 16))])
    new = build(tmp_path / "dump", [{"pid": 1, "argv": ["app"], "vmas": [vma(0x100000, 0x110000)],
                                     "runs": [run(0x100000, 11, PARENT),
                                              run(0x10b000, 1, LAZY),
                                              run(0x10c000, 4, PRESENT,
                                                  pages(13, 2) + pages(200, 2))]}],
                parent=tmp_path / "pre")
    report = diff(old, new)
    (process,) = report.memory.processes
    row = next(r for r in process.vmas if r.view.start == 0x100000)
    assert (row.pages.changed, row.pages.unchanged, row.pages.unavailable) == (2, 13, 1)
    assert row.changed_ranges == ((0x10e000, 0x110000),)
    # pages in parent/ are the OLD checkpoint's own bytes; only the 4 present ones are read
    # (and the argv page of each side: another pages file)
    assert report.memory.bytes_read == 2 * (4 + 1) * P


def test_a_process_that_became_a_zombie(tmp_path):
    old = build(tmp_path / "old", [{"pid": 1, "argv": ["sh"]},
                                   {"pid": 2, "ppid": 1, "argv": ["job"]}])
    new = build(tmp_path / "new", [{"pid": 1, "argv": ["sh"]},
                                   {"pid": 2, "ppid": 1, "argv": ["job"], "zombie": True}])
    report = diff(old, new)
    (job,) = report.processes.changed
    assert ("state", "alive", "zombie") in [(c.field, c.old, c.new) for c in job.changes]
    gone = next(p for p in report.memory.processes if p.old_pid == 2)
    assert [row.change for row in gone.vmas] == ["removed"]
    assert gone.pages.removed == 1 and gone.pages.added == 0


# -- the comparison itself ------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3, 16, 17, 100, 2048])
def test_differing_pages_finds_exactly_the_pages_that_differ(count):
    rng = random.Random(count)
    old = rng.randbytes(count * P)
    new = bytearray(old)
    chosen = sorted(rng.sample(range(count), k=min(count, 1 + count // 7)))
    chosen = sorted(set(chosen) | {0, count - 1})
    for page in chosen:
        new[page * P + rng.randrange(P)] ^= 0x5A
    found = list(differing_pages(old, 0, memoryview(bytes(new)), 0, count * P))
    assert found == [page * P for page in chosen]
    assert list(differing_pages(old, 0, memoryview(old), 0, count * P)) == []
    shifted = b"x" * 7 + old  # the OLD bytes further into their buffer
    assert list(differing_pages(shifted, 7, memoryview(bytes(new)), 0, count * P)) == found


def test_small_chunks_give_the_same_answer(fixture_root):
    old = crit_plus.open_checkpoint(fixture_root / "service-a")
    new = crit_plus.open_checkpoint(fixture_root / "service-b")
    big = report_json(diff(old, new, sections=("memory",)))
    small = report_json(diff(old, new, sections=("memory",), chunk_size=3 * P))
    assert big["memory"] == small["memory"]
    with pytest.raises(ValueError):
        diff(old, new, sections=("memory",), chunk_size=P + 1)


def test_progress_counts_to_its_total(fixture_root, tmp_path):
    import contextlib
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(fixture_root / "service-b", copy)
    seen = {}

    class Bar:
        def update(self, amount):
            seen["done"] = seen.get("done", 0) + amount

    @contextlib.contextmanager
    def progress(total):
        seen["total"] = total
        yield Bar()

    old = crit_plus.open_checkpoint(fixture_root / "service-b")
    report = diff(old, crit_plus.open_checkpoint(copy), sections=("memory",), progress=progress)
    assert seen["total"] == seen["done"] == report.memory.bytes_read > 0
    assert os.path.getsize(copy / "pages-3.img") * 2 <= report.memory.bytes_read


def test_processes_planned_again_give_the_same_answer(fixture_root, monkeypatch):
    from crit_plus.analysis import diff_memory

    old = crit_plus.open_checkpoint(fixture_root / "service-a")
    new = crit_plus.open_checkpoint(fixture_root / "service-b")
    kept = report_json(diff(old, new, sections=("memory",)))
    monkeypatch.setattr(diff_memory, "MAX_KEPT_TASKS", 1)  # nothing kept: planned twice
    again = report_json(diff(old, new, sections=("memory",)))
    assert kept["memory"] == again["memory"]


def test_errors_in_the_images_are_said(tmp_path, original):
    broken = tree_checkpoint(tmp_path / "new", {pid: pid for pid, _ppid, _argv in TREE})
    os.remove(os.path.join(broken.directory, "mm-3.img"))
    report = diff(original, crit_plus.open_checkpoint(broken.directory))
    assert report.old.errors == 0 and report.new.errors >= 1
    assert report_json(report)["new"]["errors"] == report.new.errors
    gone = next(p for p in report.memory.processes if p.old_pid == 3)
    assert {row.change for row in gone.vmas} == {"removed"}


def test_open_files_stay_bounded(fixture_root, tmp_path, monkeypatch):
    import shutil

    from crit_plus.analysis import diff_pages

    copy = tmp_path / "copy"
    shutil.copytree(fixture_root / "service-b", copy)
    old = crit_plus.open_checkpoint(fixture_root / "service-b")
    expected = report_json(diff(old, crit_plus.open_checkpoint(copy), sections=("memory",)))
    monkeypatch.setattr(diff_pages, "MAX_OPEN_FILES", 1)  # every switch of file reopens
    again = report_json(diff(old, crit_plus.open_checkpoint(copy), sections=("memory",)))
    assert again["memory"] == expected["memory"]


def test_moved_pages_beyond_the_digest_bound_are_a_lower_bound(tmp_path, monkeypatch):
    from crit_plus.analysis import diff_pages

    data = random.Random(9).randbytes(4 * P)
    old = one_process(tmp_path / "old", [vma(0x800000, 0x804000)],
                      [run(0x800000, 4, PRESENT, data)])
    new = one_process(tmp_path / "new", [vma(0x900000, 0x904000)],
                      [run(0x900000, 4, PRESENT, data)])
    monkeypatch.setattr(diff_pages, "MAX_DIGESTS", 2)
    (process,) = diff(old, new).memory.processes
    assert not process.moved_complete
    assert process.pages.moved == 2 and (process.pages.added, process.pages.removed) == (4, 4)


def _file_process(directory, root, runs):
    """One process mapping /lib/libx.so (2 pages, under ``root``) privately at 0x700000."""
    builder = CheckpointBuilder(directory)
    builder.inventory()
    builder.pstree([proc(1)])
    lib = builder.add_reg("/lib/libx.so", size=2 * P)
    data = b"app\0"
    builder.process(1, comm="app", arg=(ARGV, ARGV + len(data)),
                    vmas=[vma(ARGV, ARGV + P), vma(0x700000, 0x702000, kind="file", shmid=lib)],
                    runs=[run(ARGV, 1, PRESENT, data.ljust(P, b"\0"))] + runs)
    builder.finish()
    return crit_plus.open_checkpoint(directory, root=root)


def test_only_held_pages_count_and_root_reads_are_apart(tmp_path):
    """A private file mapping: OLD holds its second page (written to), NEW holds
    neither (both clean again).  Counted is the one page a side holds, compared with
    the file under NEW's root; the first page, held by neither, is not counted."""
    root = tmp_path / "root"
    (root / "lib").mkdir(parents=True)
    (root / "lib/libx.so").write_bytes(pages(50, 2))
    old = _file_process(tmp_path / "old", root, [run(0x701000, 1, PRESENT, pages(99, 1))])
    new = _file_process(tmp_path / "new", root, [])
    report = diff(old, new)
    (process,) = report.memory.processes
    row = next(r for r in process.vmas if r.view.start == 0x700000)
    assert (row.pages.changed, row.pages.unchanged, row.pages.unavailable) == (1, 0, 0)
    assert process.pages.unchanged == 1  # the argv page
    assert report.memory.file_bytes_read == P  # NEW's clean page, from the root
    assert report.memory.bytes_read == 2 * P + P  # both argv pages and OLD's held page
    bare = diff(_file_process(tmp_path / "old2", None, [run(0x701000, 1, PRESENT, pages(99, 1))]),
                _file_process(tmp_path / "new2", None, []))
    (process,) = bare.memory.processes
    assert (process.pages.changed, process.pages.unavailable) == (0, 1)  # no root: not compared
    assert bare.memory.file_bytes_read == 0
