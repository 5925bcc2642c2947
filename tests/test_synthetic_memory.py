"""Synthetic checkpoints for what the real dumps here cannot show: parent chains,
lazy pages, pre-3.5 ``in_parent``, broken pagemaps, odd process trees, zombies,
shared memory, ghost files and backing files under a root.

Every image is built with tests/synth.py (pycriu message classes, real framing);
expected bytes are the data the test itself wrote.
"""

from __future__ import annotations

import os

import pytest

import crit_plus
from crit_plus import Unavailable, UnavailableError
from crit_plus.analysis.validate import validate
from decoders import PAGE_SIZE, FdType, MissingImageError
from tests.synth import (
    LAZY,
    PARENT,
    PRESENT,
    CheckpointBuilder,
    build_chain,
    message,
    minimal,
    page_pattern,
    proc,
    run,
    tagged,
    vma,
)

P = PAGE_SIZE
BASE = 0x7F0000000000


def codes(findings):
    """The finding codes, in order."""
    return [finding.code for finding in findings]


# -- parent chains --------------------------------------------------------------------------------


@pytest.mark.parametrize("parent_as", ["symlink", "directory"])
def test_three_generations(tmp_path, parent_as):
    gen2 = build_chain(tmp_path, parent_as)
    checkpoint = crit_plus.open_checkpoint(gen2.directory)
    memory = checkpoint.process(1).memory
    assert memory.read(BASE, P) == tagged(BASE, 1, b"g0")
    assert memory.read(BASE + P, P) == tagged(BASE + P, 1, b"g1")
    assert memory.read(BASE + 2 * P, P) == tagged(BASE + 2 * P, 1, b"g2")
    assert memory.read(BASE + 3 * P, P) == tagged(BASE, 4, b"g0")[3 * P:]
    assert memory.read(BASE + 5 * P, 3 * P) == bytes(3 * P)
    # a read across generations joins them
    assert memory.read(BASE + P - 10, 20) == (tagged(BASE, 1, b"g0")[-10:]
                                              + tagged(BASE + P, 1, b"g1")[:10])
    with pytest.raises(UnavailableError, match="lazy"):
        memory.read(BASE + 4 * P, 1)
    assert memory.pages_by_kind() == {"present": 1, "parent": 3, "lazy": 1}
    sources = [(e.source, os.path.basename(os.path.dirname(e.path)) if e.path else None)
               for e in memory.extents(BASE, 4 * P)]
    assert [s for s, _ in sources] == ["pages", "pages", "pages", "pages"]
    assert checkpoint.findings == ()
    assert checkpoint.parent is not None and checkpoint.parent.parent is not None
    assert checkpoint.parent.parent.parent is None


def test_parent_loop_is_refused(tmp_path):
    vmas = [vma(BASE, BASE + 2 * P)]
    one = minimal(tmp_path / "one", vmas=vmas, runs=[run(BASE, 1, PARENT)])
    two = minimal(tmp_path / "two", vmas=vmas, runs=[run(BASE, 1, PARENT)])
    one.parent(two.directory)
    two.parent(one.directory)
    checkpoint = crit_plus.open_checkpoint(one.directory)
    with pytest.raises(UnavailableError, match="loop"):
        checkpoint.read(1, BASE, 8)
    assert "parent-pages" in codes(checkpoint.findings)
    loop, = [f for f in checkpoint.findings if f.code == "parent-loop"]
    assert loop.where == "parent/parent" and "leads back to" in loop.message
    assert checkpoint.parent is not None and checkpoint.parent.parent is None
    pieces = list(checkpoint.process(1).memory.stream(BASE, 2 * P))
    assert isinstance(pieces[0][1], Unavailable) and pieces[1][1] == bytes(P)


def test_parent_missing_or_incomplete(tmp_path):
    vmas = [vma(BASE, BASE + 4 * P)]
    alone = minimal(tmp_path / "alone", vmas=vmas, runs=[run(BASE, 1, PARENT)])
    checkpoint = crit_plus.open_checkpoint(alone.directory)
    with pytest.raises(UnavailableError, match="no parent"):
        checkpoint.read(1, BASE, 1)
    assert codes(checkpoint.findings) == ["parent-pages"]

    older = minimal(tmp_path / "older", vmas=vmas, runs=[run(BASE, 1, PRESENT)])
    newer = minimal(tmp_path / "newer", vmas=vmas, runs=[run(BASE, 2, PARENT)])
    newer.parent(older.directory)
    checkpoint = crit_plus.open_checkpoint(newer.directory)
    assert checkpoint.read(1, BASE, P) == page_pattern(BASE, 1)
    with pytest.raises(UnavailableError, match="not in parent/pagemap-1.img"):
        checkpoint.read(1, BASE + P, 1)
    finding, = checkpoint.findings
    assert finding.code == "parent-pages" and finding.message.startswith("1 pages")
    assert dict(finding.params) == {"vaddr": hex(BASE + P)}  # the first page not found
    said = validate(checkpoint).findings[0].criu_says
    assert said.startswith(f"Missing {BASE + P:#x} in parent pagemap")

    os.symlink("gone", older.path("parent"))  # the parent's own parent/ dangles
    broken = [f for f in crit_plus.open_checkpoint(newer.directory).findings
              if f.code == "parent-link-broken"]
    assert [(f.where, f.message) for f in broken] == [
        ("parent/parent", "parent/parent points at gone, which does not exist")]
    os.remove(older.path("parent"))

    os.remove(older.path("pages-1.img"))  # the parent lists the page, its data is gone
    checkpoint = crit_plus.open_checkpoint(newer.directory)
    with pytest.raises(UnavailableError, match="parent/pages-1.img is missing"):
        checkpoint.read(1, BASE, 1)
    assert codes(checkpoint.findings) == ["parent-pages", "parent-pages"]


def test_pre_3_5_in_parent_entries(tmp_path):
    vmas = [vma(BASE, BASE + 4 * P)]
    older = minimal(tmp_path / "older", vmas=vmas, runs=[
        run(BASE, 2, PRESENT, tagged(BASE, 2, b"old"), style="compat")])
    newer = minimal(tmp_path / "newer", vmas=vmas, runs=[
        run(BASE, 1, PARENT, style="in_parent"),
        run(BASE + P, 1, PRESENT, tagged(BASE + P, 1, b"new"), style="in_parent"),
    ])
    newer.parent(older.directory)
    checkpoint = crit_plus.open_checkpoint(newer.directory)
    memory = checkpoint.process(1).memory
    assert [r.flags for r in memory.runs] == [PARENT, PRESENT]
    assert memory.read(BASE, 2 * P) == tagged(BASE, 2, b"old")[:P] + tagged(BASE + P, 1, b"new")
    assert checkpoint.findings == ()


# -- the pages-file offset and pagemap oddities ---------------------------------------------------


def test_offset_advances_over_present_runs_only(tmp_path):
    a = tagged(BASE, 2, b"A")
    d = tagged(BASE + 6 * P, 1, b"D")
    older = minimal(tmp_path / "older", vmas=[vma(BASE, BASE + 8 * P)],
                    runs=[run(BASE + 2 * P, 1, PRESENT, tagged(BASE + 2 * P, 1, b"B"))])
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + 8 * P)], runs=[
        run(BASE, 2, PRESENT, a),
        run(BASE + 2 * P, 1, PARENT),
        run(BASE + 4 * P, 1, LAZY),
        run(BASE + 6 * P, 1, PRESENT | LAZY, d),
    ])
    builder.parent(older.directory)
    memory = crit_plus.open_checkpoint(builder.directory).process(1).memory
    assert [r.file_offset for r in memory.runs] == [0, None, None, 2 * P]
    assert memory.read(BASE + 6 * P, P) == d
    assert memory.read(BASE, 2 * P) == a
    assert memory.read(BASE + 2 * P, P) == tagged(BASE + 2 * P, 1, b"B")
    assert memory.read(BASE + 3 * P, P) == bytes(P)  # a hole between runs
    assert memory.pages_by_kind() == {"present": 3, "parent": 1, "lazy": 1}
    present = list(memory.iter_present())
    assert [v for v, _ in present] == [BASE, BASE + 6 * P]
    assert b"".join(data for _, data in present) == a + d


def test_unsorted_entries_keep_file_order_offsets(tmp_path):
    x = tagged(BASE + 3 * P, 1, b"X")
    y = tagged(BASE + P, 1, b"Y")
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + 4 * P)],
                      runs=[run(BASE + 3 * P, 1, PRESENT, x), run(BASE + P, 1, PRESENT, y)])
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    assert checkpoint.read(1, BASE + P, P) == y
    assert checkpoint.read(1, BASE + 3 * P, P) == x
    assert codes(checkpoint.findings) == ["pagemap-unsorted"]
    unsorted, = checkpoint.findings
    assert unsorted.message.endswith(f"entry 2 at {BASE + P:#x} comes after {BASE + 3 * P:#x}")
    assert validate(checkpoint).findings[0].criu_says == \
        f"Page entry address {BASE + P:#x} outside of VMA"


def test_overlapping_entries_keep_the_first_listing(tmp_path):
    p = tagged(BASE, 2, b"P")
    q = tagged(BASE + P, 1, b"Q")
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + 4 * P)],
                      runs=[run(BASE, 2, PRESENT, p), run(BASE + P, 1, PRESENT, q)])
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    assert checkpoint.read(1, BASE, 2 * P) == p
    assert codes(checkpoint.findings) == ["pagemap-overlap"]
    assert checkpoint.findings[0].severity == crit_plus.ERROR


def test_entries_outside_every_vma(tmp_path):
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + 2 * P)],
                      runs=[run(BASE, 1, PRESENT), run(BASE + P, 3, PRESENT)])
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    finding, = checkpoint.findings
    assert finding.code == "pagemap-outside-vma" and "2 of them" in finding.message
    assert checkpoint.read(1, BASE + P, P) == page_pattern(BASE + P, 1)
    with pytest.raises(UnavailableError, match="not mapped"):
        checkpoint.read(1, BASE + 2 * P, 1)
    assert checkpoint.process(1).vmas[0].pages == {"present": 2}


def test_many_overlaps_are_summed_up(tmp_path):
    runs = [run(BASE, 1, PRESENT) for _ in range(9)]
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + P)], runs=runs)
    found = crit_plus.open_checkpoint(builder.directory).findings
    assert codes(found) == ["pagemap-overlap"] * 6
    assert found[-1].message.startswith("and 3 more") and found[-1].params == ()
    assert [dict(f.params) for f in found[:2]] == [{"entry": 2, "vaddr": hex(BASE)},
                                                    {"entry": 3, "vaddr": hex(BASE)}]


def test_truncated_and_missing_pages_files(tmp_path):
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + 4 * P)],
                      runs=[run(BASE, 3, PRESENT)])
    pages = builder.path("pages-1.img")
    with open(pages, "rb") as handle:
        data = handle.read()
    builder.write_raw("pages-1.img", data[:P + 100])
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    assert codes(checkpoint.findings) == ["pages-size"]
    assert checkpoint.read(1, BASE, P + 100) == data[:P + 100]
    with pytest.raises(UnavailableError, match="ends at"):
        checkpoint.read(1, BASE + P, P)
    pieces = list(checkpoint.process(1).memory.iter_present())
    assert pieces[0] == (BASE, data[:P + 100])
    assert isinstance(pieces[1][1], Unavailable) and pieces[1][1].length == 2 * P - 100

    os.remove(pages)
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    assert codes(checkpoint.findings) == ["missing-pages"]
    with pytest.raises(UnavailableError, match="pages-1.img is missing"):
        checkpoint.read(1, BASE, 1)


def test_lazy_runs(tmp_path):
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + 4 * P)],
                      runs=[run(BASE, 2, LAZY), run(BASE + 2 * P, 1, PRESENT | LAZY)])
    memory = crit_plus.open_checkpoint(builder.directory).process(1).memory
    assert memory.pages_by_kind()["lazy"] == 2 and memory.runs[0].state == "lazy"
    assert memory.read(BASE + 2 * P, P) == page_pattern(BASE + 2 * P, 1)
    pieces = list(memory.stream(BASE, 4 * P))
    marker = pieces[0][1]
    assert isinstance(marker, Unavailable) and marker.length == 2 * P and "lazy" in marker.reason
    assert pieces[1] == (BASE + 2 * P, page_pattern(BASE + 2 * P, 1))
    assert pieces[2] == (BASE + 3 * P, bytes(P))
    with pytest.raises(UnavailableError) as info:
        memory.read(BASE + P, 2 * P)
    assert (info.value.vaddr, info.value.length) == (BASE + P, P)


# -- shared memory, ghost files, files under a root -----------------------------------------------


def test_shared_anonymous_memory_uses_pgoff(tmp_path):
    shared = vma(BASE, BASE + 4 * P, kind="shared", shmid=77, pgoff=2 * P)
    builder = minimal(tmp_path / "ck", vmas=[shared])
    s = tagged(0x2000, 1, b"S")
    builder.pagemap("pagemap-shmem-77.img", [run(0x2000, 1, PRESENT, s),
                                             run(0x5000, 1, PRESENT, tagged(0x5000, 1, b"T"))])
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    memory = checkpoint.process(1).memory
    assert memory.read(BASE, P) == s  # offset 0x2000 in the object = pgoff
    assert memory.read(BASE + P, 2 * P) == bytes(2 * P)
    assert memory.read(BASE + 3 * P, P) == tagged(0x5000, 1, b"T")
    assert checkpoint.findings == ()
    assert memory.vmas[0].backing.kind == "shmem" and memory.vmas[0].pages == {"unlisted": 4}

    os.remove(builder.path("pagemap-shmem-77.img"))
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    assert codes(checkpoint.findings) == ["missing-shmem"]
    with pytest.raises(UnavailableError, match="pagemap-shmem-77.img is missing"):
        checkpoint.read(1, BASE, 1)


def test_memfd_mapping(tmp_path):
    builder = CheckpointBuilder(tmp_path / "ck")
    builder.inventory()
    builder.pstree([proc(1)])
    memfd_id = builder.add_file(FdType.MEMFD, "memfd", flags=2, pos=0, fown={}, inode_id=5)
    builder.write("memfd.img", "MEMFD_INODE", [message(
        "memfd_inode_entry", name="buf", uid=0, gid=0, size=P + 10, shmid=91, seals=0,
        inode_id=5)])
    builder.pagemap("pagemap-shmem-91.img", [run(0, 1, PRESENT, tagged(0, 1, b"M"))])
    builder.process(1, vmas=[vma(BASE, BASE + 3 * P, kind="memfd", shmid=memfd_id)],
                    fds=[(3, memfd_id, FdType.MEMFD)])
    builder.finish()
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    process = checkpoint.process(1)
    assert process.fd(3).file.name == "/memfd:buf" and process.fd(3).kind == "memfd"
    assert process.vmas[0].file is process.fd(3).file
    assert checkpoint.read(1, BASE, P) == tagged(0, 1, b"M")
    assert checkpoint.read(1, BASE + P, P) == bytes(P)  # inside the memfd's size: zeros
    with pytest.raises(UnavailableError, match="SIGBUS"):
        checkpoint.read(1, BASE + 2 * P, 1)
    assert checkpoint.findings == ()


def ghost_builder(tmp_path, chunked):
    builder = CheckpointBuilder(tmp_path / ("chunked" if chunked else "plain"))
    builder.inventory()
    builder.pstree([proc(1)])
    content = b"".join(bytes([i]) * 1000 for i in range(1, 11))  # 10000 bytes
    file_id = builder.add_reg("/tmp/gone.bin", size=len(content))
    builder.write("remap-fpath.img", "REMAP_FPATH", [message(
        "remap_file_path_entry", orig_id=file_id, remap_id=7, remap_type=1)])
    if chunked:  # the first 4096 bytes are a hole
        head = message("ghost_file_entry", uid=0, gid=0, mode=0o100644, chunks=True,
                       size=len(content))
        entries = [head, (message("ghost_chunk_entry", len=len(content) - 4096, off=4096),
                          content[4096:])]
        content = bytes(4096) + content[4096:]
    else:
        entries = [(message("ghost_file_entry", uid=0, gid=0, mode=0o100644), content)]
    builder.write("ghost-file-7.img", "GHOST_FILE", entries)
    builder.process(1, vmas=[vma(BASE, BASE + 3 * P, kind="file", shmid=file_id, pgoff=P)],
                    fds=[(4, file_id, FdType.REG)])
    builder.finish()
    return builder, content


@pytest.mark.parametrize("chunked", [False, True])
def test_deleted_file_mapping_reads_the_ghost_image(tmp_path, chunked):
    builder, content = ghost_builder(tmp_path, chunked)
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    fd = checkpoint.process(1).fd(4)
    assert fd.file.deleted and fd.file.details["ghost_image"] == "ghost-file-7.img"
    # the VMA maps from file offset 4096: 10000 - 4096 bytes, zeros to the page end
    data = checkpoint.read(1, BASE, 2 * P)
    assert data == content[P:] + bytes(2 * P - (len(content) - P))
    with pytest.raises(UnavailableError, match="SIGBUS"):
        checkpoint.read(1, BASE + 2 * P, 1)
    assert checkpoint.findings == ()


def test_missing_ghost_image_is_a_finding(tmp_path):
    builder, _content = ghost_builder(tmp_path, False)
    os.remove(builder.path("ghost-file-7.img"))
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    assert codes(checkpoint.findings) == ["missing-ghost"]
    with pytest.raises(UnavailableError):
        checkpoint.read(1, BASE, 1)


def test_backing_files_under_a_root(tmp_path):
    root = tmp_path / "rootfs"
    (root / "usr/lib").mkdir(parents=True)
    (root / "etc").mkdir()
    library = bytes(range(256)) * 40  # 10240 bytes
    (root / "usr/lib/libx.so").write_bytes(library)
    os.symlink("/usr/lib", root / "lib")  # absolute: resolved inside the root
    os.symlink("../../../../../../etc", root / "usr/lib/up")  # cannot climb out
    (root / "etc/changed").write_bytes(b"x" * 100)

    builder = CheckpointBuilder(tmp_path / "ck")
    builder.inventory()
    builder.pstree([proc(1)])
    lib = builder.add_reg("/lib/libx.so", size=len(library))
    changed = builder.add_reg("/usr/lib/up/changed", size=5)
    private = tagged(BASE + P, 1, b"dirty")
    builder.process(1, vmas=[
        vma(BASE, BASE + 4 * P, kind="file", shmid=lib),
        vma(BASE + 8 * P, BASE + 9 * P, kind="file", shmid=changed),
    ], runs=[run(BASE + P, 1, PRESENT, private)])
    builder.finish()

    checkpoint = crit_plus.open_checkpoint(builder.directory, root=root)
    assert checkpoint.read(1, BASE, P) == library[:P]
    assert checkpoint.read(1, BASE + P, P) == private  # a dirty private page wins
    assert checkpoint.read(1, BASE + 2 * P, P) == library[2 * P:] + bytes(3 * P - len(library))
    with pytest.raises(UnavailableError, match="SIGBUS"):
        checkpoint.read(1, BASE + 3 * P, 1)
    with pytest.raises(UnavailableError, match="changed since"):
        checkpoint.read(1, BASE + 8 * P, 1)

    bare = crit_plus.open_checkpoint(builder.directory)
    with pytest.raises(UnavailableError, match="no root directory"):
        bare.read(1, BASE, 1)
    assert bare.read(1, BASE + P, P) == private


def test_resolve_in_root_stays_inside(tmp_path):
    from crit_plus.files import resolve_in_root

    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a/file").write_text("x")
    os.symlink("/a", root / "abs")
    os.symlink("../../../../a/file", root / "a/rel")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    real = os.path.realpath(root)
    assert resolve_in_root(root, "/abs/file") == os.path.join(real, "a", "file")
    assert resolve_in_root(root, "/a/rel") == os.path.join(real, "a", "file")
    assert resolve_in_root(root, "/../../a/file") == os.path.join(real, "a", "file")
    assert resolve_in_root(root, "/loop1") is None
    assert resolve_in_root(root, "/missing") is None
    assert resolve_in_root(None, "/a/file") is None


# -- process trees, zombies, missing and broken images --------------------------------------------


def test_untrusted_process_tree(tmp_path):
    builder = CheckpointBuilder(tmp_path / "ck")
    builder.inventory()
    entries = [proc(1), proc(2, ppid=3), proc(3, ppid=2), proc(4, ppid=99), proc(5, ppid=5),
               proc(6, ppid=1), proc(1, ppid=0, threads=[1, 8]), proc(7), proc(9, ppid=7,
                                                                           threads=[9, 6])]
    builder.pstree(entries)
    for pid in (1, 2, 3, 4, 5, 7):
        builder.zombie(pid)
    for pid in (6, 9):  # alive: a zombie's pstree thread ids are not threads
        builder.process(pid)
    builder.finish()
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    assert checkpoint.pids == (1, 2, 3, 4, 5, 6, 7, 9)
    found = checkpoint.findings
    assert sorted(set(codes(found))) == ["duplicate-pid", "duplicate-tid", "many-roots", "orphan",
                                         "pid-cycle"]
    assert codes(found).count("pid-cycle") == 2  # 2 -> 3 -> 2, and 5 -> 5
    cycle = next(f for f in found if f.code == "pid-cycle" and "->" in f.message)
    assert cycle.message.endswith("2 -> 3 -> 2") and dict(cycle.params) == {"pid": 2}
    roots = next(f for f in found if f.code == "many-roots")
    assert dict(roots.params) == {"pid": 7}  # the second process with parent 0 stops CRIU
    said = {f.code: f.criu_says for f in validate(checkpoint).findings}
    assert said["many-roots"] == "Parent missed on non-root task with pid 7, image corruption!"
    assert said["pid-cycle"] == "Can't find a parent for 2"
    shared = next(f for f in found if f.code == "duplicate-tid")
    assert shared.message == "thread 6 belongs to pid 6 and pid 9"
    assert dict(shared.params) == {"pid": 6, "tid": 6}
    tree = checkpoint.tree
    assert tree.roots == (1, 2, 4, 5, 7)
    assert tree.children(2) == (3,) and tree.parent(3) == 2 and tree.parent(2) is None
    walked = [(depth, p.pid) for depth, p in checkpoint.walk()]
    assert walked == [(0, 1), (1, 6), (0, 2), (1, 3), (0, 4), (0, 5), (0, 7), (1, 9)]


def test_zombie(tmp_path):
    builder = CheckpointBuilder(tmp_path / "ck")
    builder.inventory()
    builder.pstree([proc(1), proc(2, ppid=1)])
    builder.process(1, vmas=[vma(BASE, BASE + P)], runs=[run(BASE, 1)])
    builder.zombie(2, exit_code=3)
    builder.finish()
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    zombie = checkpoint.process(2)
    assert zombie.is_zombie and zombie.state_label == "zombie" and int(zombie.state) == 2
    assert zombie.core.exit_code == 3 and zombie.comm == "zombie"
    assert zombie.memory is None and zombie.vmas == () and zombie.fds == ()
    assert zombie.argv is None and zombie.exe is None and zombie.ids is None
    assert zombie.parent is checkpoint.process(1)
    assert checkpoint.findings == ()
    with pytest.raises(UnavailableError, match="no memory image"):
        checkpoint.read(2, BASE, 1)
    assert checkpoint.read(1, BASE, P) == page_pattern(BASE, 1)


def test_a_zombies_unset_thread_ids_are_not_threads(tmp_path):
    """CRIU leaves a zombie's pstree thread ids unset (dump_one_zombie writes its core
    alone): whatever they hold is neither a thread nor a duplicate of another's."""
    builder = CheckpointBuilder(tmp_path / "ck")
    builder.inventory()
    builder.pstree([proc(1, threads=[1, 2]), proc(3, ppid=1, threads=[2]),
                    proc(4, ppid=1, threads=[0])])
    builder.process(1, threads=[1, 2])
    builder.zombie(3)
    builder.zombie(4)
    builder.finish()
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    assert [[t.tid for t in p.threads] for p in checkpoint.processes] == [[1, 2], [3], [4]]
    assert checkpoint.findings == ()


def test_stopped_task(tmp_path):
    builder = minimal(tmp_path / "ck", task_state=3)
    process = crit_plus.open_checkpoint(builder.directory).process(1)
    assert process.state_label == "stopped" and not process.is_zombie


def test_missing_and_broken_images_are_findings(tmp_path):
    builder = CheckpointBuilder(tmp_path / "ck")
    builder.inventory()
    builder.pstree([proc(1, threads=[1, 2]), proc(3, ppid=1)])
    builder.process(1, vmas=[vma(BASE, BASE + P)], threads=(1, 2))
    builder.process(3, vmas=[vma(BASE, BASE + P)])
    builder.finish()
    os.remove(builder.path("core-2.img"))
    os.remove(builder.path("mm-1.img"))
    builder.write_raw("pagemap-3.img", open(builder.path("pagemap-3.img"), "rb").read()[:-3])
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    found = checkpoint.findings
    assert codes(found) == ["missing-image", "missing-image", "bad-image"]
    assert [f.where for f in found] == ["core-2.img", "mm-1.img", "pagemap-3.img"]
    one, three = checkpoint.processes
    assert one.threads[1].core is None and one.memory is None and one.exe is None
    assert three.memory is not None and three.pagemap is None
    with pytest.raises(UnavailableError, match="no usable pagemap"):
        three.memory.read(BASE, 1)


def test_no_inventory_or_pstree(tmp_path):
    builder = minimal(tmp_path / "ck")
    os.remove(builder.path("inventory.img"))
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    assert checkpoint.inventory is None and codes(checkpoint.findings) == ["missing-image"]
    os.remove(builder.path("pstree.img"))
    with pytest.raises(MissingImageError):
        crit_plus.open_checkpoint(builder.directory)


def test_corrupt_pstree_raises_a_decode_error(tmp_path):
    from decoders import DecodeError

    builder = minimal(tmp_path / "ck")
    builder.write_raw("pstree.img", open(builder.path("pstree.img"), "rb").read()[:-2])
    with pytest.raises(DecodeError, match="pstree.img"):
        crit_plus.open_checkpoint(builder.directory)


# -- files ----------------------------------------------------------------------------------------


def test_unresolved_fds_and_external_peers(tmp_path):
    builder = CheckpointBuilder(tmp_path / "ck")
    builder.inventory()
    builder.pstree([proc(1)])
    sock = builder.add_file(FdType.UNIXSK, "usk", ino=500, type=1, state=1, flags=0, uflags=0,
                            backlog=0, peer=501, name=b"\0abstract", fown={}, opts={})
    builder.process(1, fds=[(0, sock, FdType.UNIXSK), (1, 999, FdType.PIPE)])
    builder.finish()
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    process = checkpoint.process(1)
    sock_fd, pipe_fd = process.fds
    assert sock_fd.file.name == "@abstract"
    assert sock_fd.file.details["external_peer"] and sock_fd.file.details["peer_id"] is None
    assert pipe_fd.file is None and pipe_fd.kind == "pipe" and pipe_fd.name is None
    finding, = checkpoint.findings
    assert finding.code == "unresolved-fd" and "999" in finding.message
    assert dict(finding.params) == {"pid": 1, "fd": 1, "id": 999}  # for programs (validate)
    assert checkpoint.holders(sock) == ((1, 0),)


# -- readers --------------------------------------------------------------------------------------


def test_search_across_chunks_and_runs(tmp_path):
    needle = b"needle-in-memory"
    first = bytearray(page_pattern(BASE, 2))
    first[2 * P - 5:] = needle[:5]
    second = bytearray(page_pattern(BASE + 2 * P, 1))
    second[:len(needle) - 5] = needle[5:]
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + 4 * P)],
                      runs=[run(BASE, 2, PRESENT, bytes(first)),
                            run(BASE + 2 * P, 1, PRESENT, bytes(second))])
    memory = crit_plus.open_checkpoint(builder.directory).process(1).memory
    for chunk in (P // 2, P, 3 * P, 1 << 20):
        assert list(memory.search(needle, chunk_size=chunk)) == [BASE + 2 * P - 5]


def test_stream_chunks_are_bounded(tmp_path):
    data = b"".join(tagged(BASE + i * P, 1, b"%d" % i) for i in range(64))
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + 80 * P)],
                      runs=[run(BASE, 64, PRESENT, data)])
    memory = crit_plus.open_checkpoint(builder.directory).process(1).memory
    chunk = 5 * P + 123
    pieces = list(memory.stream(BASE, 80 * P, chunk_size=chunk))
    assert all(len(d) <= chunk for _a, d in pieces)
    assert b"".join(d for _a, d in pieces) == data + bytes(16 * P)
    present = list(memory.iter_present(chunk_size=chunk))
    assert all(len(d) <= chunk for _a, d in present)
    assert b"".join(d for _a, d in present) == data
    with pytest.raises(ValueError):
        list(memory.stream(BASE, P, chunk_size=0))
