"""The page reader on the real fixtures.

Expected bytes are computed independently of crit_plus.memory: from the
decoders' pagemap records and the raw pages files (the offset of a run is the
sum of the PE_PRESENT runs before it, in entry order), or from files on disk.
"""

from __future__ import annotations

import hashlib
import os

import pytest

import crit_plus
from crit_plus import Unavailable, UnavailableError
from decoders import PAGE_SIZE, MapFlags, PageFlags, read_pagemap

SERVICES = ("service-a", "service-b", "service-c", "service-old")
LXD_AFTER = "lxd-web/var/lib/lxd/storage-pools/default/containers-snapshots/web/after"


@pytest.fixture(scope="module")
def opened(fixture_root):
    """name → opened checkpoint, for the service fixtures."""
    return {name: crit_plus.open_checkpoint(fixture_root / name) for name in SERVICES}


def expected_runs(directory, pid):
    """(vaddr, npages, flags, offset in pages file) from the decoders, computed here."""
    pagemap = read_pagemap(os.path.join(directory, f"pagemap-{pid}.img"))
    offset, out = 0, []
    for run in pagemap.runs:
        present = bool(run.flags & PageFlags.PRESENT)
        out.append((run.vaddr, run.nr_pages, run.flags, offset if present else None))
        if present:
            offset += run.nr_pages * PAGE_SIZE
    return pagemap.pages_id, out


@pytest.mark.parametrize("name", SERVICES)
def test_argv_reads_back(opened, name):
    main = opened[name].processes[0]
    workdir = "/srv/app-old" if name == "service-old" else "/srv/app"
    argv = ["python3", f"{workdir}/service.py", workdir]
    if name == "service-old":
        argv.append("--no-inet")  # the second run without inet sockets
    assert list(main.argv) == argv
    assert " ".join(main.argv[:3]) == f"python3 {workdir}/service.py {workdir}"
    for child in main.children:
        assert child.argv == main.argv  # a forked worker keeps its parent's argv


def test_environ_reads_back(opened):
    environ = opened["service-a"].processes[0].environ
    assert environ and all("=" in item for item in environ)
    assert dict(item.split("=", 1) for item in environ)["HOME"] == "/srv/app"


@pytest.mark.parametrize("name", SERVICES)
def test_present_runs_read_from_the_pages_file(opened, fixture_root, name):
    checkpoint = opened[name]
    directory = fixture_root / name
    for process in checkpoint.processes:
        pages_id, runs = expected_runs(directory, process.pid)
        pages = (directory / f"pages-{pages_id}.img").read_bytes()
        for vaddr, npages, _flags, offset in runs[:: max(1, len(runs) // 12)]:
            if offset is None:
                continue
            length = npages * PAGE_SIZE
            assert process.memory.read(vaddr, length) == pages[offset:offset + length]
            # and a slice straddling the middle of the run
            mid = vaddr + (npages // 2) * PAGE_SIZE + 100
            assert process.memory.read(mid, 64) == pages[offset + (mid - vaddr):][:64]


@pytest.mark.parametrize("name", SERVICES)
def test_iter_present_is_the_pages_file(opened, fixture_root, name):
    for process in opened[name].processes:
        memory = process.memory
        expected = (fixture_root / name / f"pages-{memory.pages_id}.img").read_bytes()
        digest, total = hashlib.sha256(), 0
        for vaddr, data in memory.iter_present(chunk_size=64 * 1024):
            assert not isinstance(data, Unavailable)
            assert 0 < len(data) <= 64 * 1024
            assert memory.read(vaddr, min(len(data), 256)) == data[:256]
            digest.update(data)
            total += len(data)
        assert total == len(expected)
        assert digest.digest() == hashlib.sha256(expected).digest()


def test_unlisted_anonymous_pages_are_zero(opened):
    process = opened["service-a"].processes[0]
    checked = 0
    for mapping in process.vmas:
        if mapping.kind not in ("anon", "heap") or not mapping.pages.get("unlisted"):
            continue
        for extent in process.memory.extents(mapping.start, mapping.size):
            if extent.source == "zero":
                assert process.memory.read(extent.vaddr, extent.length) == bytes(extent.length)
                checked += 1
    assert checked


def test_shared_region_and_heartbeat(opened):
    """The service wrote ``shared-region-00`` at the start of its 1 MiB MAP_SHARED
    region and ``child-heartbeat!`` somewhere; both found through the reader."""
    checkpoint = opened["service-a"]
    main, child = checkpoint.processes[:2]
    hits = list(main.memory.search(b"shared-region-00"))
    shared = [a for a in hits if main.memory.find(a).flags & MapFlags.SHARED]
    assert shared
    region = main.memory.find(shared[0])
    assert shared[0] == region.start and region.size == 1 << 20
    assert main.memory.read(shared[0], 16) == b"shared-region-00"
    assert region.backing.kind == "shmem"
    # the child maps the same object: same bytes at the same place
    assert child.memory.find(region.start).backing.shmid == region.backing.shmid
    assert child.memory.read(region.start, 16) == b"shared-region-00"

    beats = {p.pid: list(p.memory.search(b"child-heartbeat!")) for p in (main, child)}
    assert beats[child.pid]
    for pid, addresses in beats.items():
        memory = checkpoint.process(pid).memory
        for address in addresses:
            assert memory.read(address, 16) == b"child-heartbeat!"


def test_shared_memory_reads_the_shmem_pages(opened, fixture_root):
    checkpoint = opened["service-a"]
    main = checkpoint.processes[0]
    for mapping in main.vmas:
        if mapping.backing.kind != "shmem":
            continue
        name = f"pagemap-shmem-{mapping.backing.shmid}.img"
        shm = read_pagemap(fixture_root / "service-a" / name)
        data = (fixture_root / "service-a" / f"pages-{shm.pages_id}.img").read_bytes()
        offset = 0
        for run in shm.runs:
            vaddr = mapping.start + run.vaddr - mapping.pgoff
            length = run.nr_pages * PAGE_SIZE
            if mapping.start <= vaddr < mapping.end:
                assert main.memory.read(vaddr, length) == data[offset:offset + length]
            offset += length
        # past the listed pages of an anonymous shared object: zeros
        tail = mapping.start + PAGE_SIZE * sum(r.nr_pages for r in shm.runs)
        if tail < mapping.end:
            assert main.memory.read(tail, PAGE_SIZE) == bytes(PAGE_SIZE)


def test_memfd_beyond_its_size_is_unavailable(opened):
    main = opened["service-a"].processes[0]
    memfd = next(fd.file for fd in main.fds if fd.kind == "memfd")
    mappings = [m for m in main.vmas if m.file is memfd]
    for mapping in mappings:
        past = mapping.start + (memfd.details["size"] + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
        if past < mapping.end:
            with pytest.raises(UnavailableError, match="SIGBUS"):
                main.memory.read(past, 1)


def test_file_mappings_need_root(opened, fixture_root):
    main = opened["service-a"].processes[0]
    data_bin = next(m for m in main.vmas
                    if m.file is not None and m.file.path == "/srv/app/data.bin")
    assert data_bin.kind == "file-shared"
    with pytest.raises(UnavailableError, match="no root directory"):
        main.memory.read(data_bin.start, 16)
    pieces = list(main.memory.stream(data_bin.start, data_bin.size))
    assert len(pieces) == 1 and isinstance(pieces[0][1], Unavailable)


def test_file_pages_from_root(fixture_root):
    checkpoint = crit_plus.open_checkpoint(fixture_root / LXD_AFTER)
    root = fixture_root / LXD_AFTER / "rootfs"
    init = checkpoint.processes[0]
    checked = 0
    for mapping in init.vmas:
        if mapping.kind != "file":
            continue
        host = root / mapping.file.path.lstrip("/")
        content = host.read_bytes()
        for extent in init.memory.extents(mapping.start, mapping.size):
            if extent.source != "file":
                continue
            file_offset = mapping.pgoff + (extent.vaddr - mapping.start)
            expected = content[file_offset:file_offset + extent.length]
            expected += bytes(extent.length - len(expected))  # the last page past EOF
            assert init.memory.read(extent.vaddr, extent.length) == expected
            checked += 1
    assert checked
    # the same checkpoint opened without a root cannot read those pages
    bare = crit_plus.open_checkpoint(fixture_root / LXD_AFTER / "state")
    first = next(m for m in bare.processes[0].vmas if m.kind == "file")
    with pytest.raises(UnavailableError):
        bare.read(1, first.start, PAGE_SIZE)


def test_kernel_pages_and_holes_are_unavailable(opened):
    memory = opened["service-a"].processes[0].memory
    vvar = next(m for m in memory.vmas if m.kind == "vvar")
    with pytest.raises(UnavailableError, match="kernel"):
        memory.read(vvar.start, 8)
    gap = next(prev.end for prev, cur in zip(memory.vmas, memory.vmas[1:]) if prev.end < cur.start)
    with pytest.raises(UnavailableError, match="not mapped") as info:
        memory.read(gap - 8, 16)
    assert info.value.vaddr == gap and info.value.length > 0
    assert memory.find(gap) is None
    with pytest.raises(UnavailableError):
        opened["service-a"].read(12525, 0, 16)


def test_stream_agrees_with_read(opened):
    memory = opened["service-b"].processes[0].memory
    heap = next(m for m in memory.vmas if m.kind == "heap")
    start, length = heap.start + 1000, heap.size - 3000
    joined, position = b"", start
    for address, data in memory.stream(start, length, chunk_size=3 * PAGE_SIZE):
        assert address == position and not isinstance(data, Unavailable)
        assert len(data) <= 3 * PAGE_SIZE
        joined += data
        position += len(data)
    assert position == start + length
    assert joined == memory.read(start, length)


def test_extents_cover_the_range_in_order(opened):
    memory = opened["service-c"].processes[0].memory
    start, end = memory.vmas[0].start, memory.vmas[-1].end
    position = start
    for extent in memory.extents(start, end - start):
        assert extent.vaddr == position and extent.length > 0
        assert extent.source in ("pages", "file", "zero", "unavailable")
        assert (extent.reason is not None) == (extent.source == "unavailable")
        position += extent.length
    assert position == end


def test_pages_by_kind(opened, facts):
    for name in SERVICES:
        for process, fact in zip(opened[name].processes, facts[name]["processes"]):
            kinds = process.memory.pages_by_kind()
            present = sum(n for flags, n in fact["pages_by_flags"].items()
                          if int(flags) & PageFlags.PRESENT)
            assert kinds["present"] == present and kinds["parent"] == 0 and kinds["lazy"] == 0
            per_vma = sum(m.pages.get("present", 0) for m in process.vmas)
            assert per_vma == present  # every run lies inside a VMA
