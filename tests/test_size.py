"""``size``: exact sums on every real fixture, synthetic checkpoints for what a real
dump here cannot show (holes, parent chains, lazy pages, known page contents), and
proof that without ``--content`` no page data is read.

Oracles: ``os.stat`` for sizes, FACTS.json (computed with CRIU's pycriu) for pages
files and pagemap page counts, CRIU's own ``stats-dump`` counters, pycriu-decoded
mm/pagemap images for the biggest VMAs, an independent sha256 page scan for the
content analysis, and zstd itself for the compression estimate.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import pty
import shutil
import subprocess
import sys
import tarfile
import textwrap

import pytest
import zstandard

import crit_plus
from crit_plus.analysis import content as content_analysis
from crit_plus.analysis import size as size_analysis
from crit_plus.analysis.size import PageCounts, parse_rate
from decoders import PAGE_SIZE
from decoders.schema import get_schema
from tests.synth import (
    LAZY,
    PARENT,
    PRESENT,
    CheckpointBuilder,
    build_chain,
    minimal,
    page_pattern,
    proc,
    run,
    vma,
)

from .cli import run_cli

P = PAGE_SIZE
BASE = 0x7F0000000000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(directory, top=0):
    """``size_analysis.measure`` of the checkpoint in ``directory``."""
    return size_analysis.measure(crit_plus.open_checkpoint(directory), top=top)


def state_of(flags):
    """CRIU's restore order for a pagemap entry: PE_PARENT first, then PE_PRESENT, PE_LAZY."""
    if flags & PARENT:
        return "parent"
    if flags & PRESENT:
        return "present"
    return "lazy" if flags & LAZY else "none"


# -- real fixtures: every number against an independent source -------------------------------


def test_disk_totals_are_the_files_on_disk(checkpoint_dirs, facts):
    for key, directory in checkpoint_dirs.items():
        report = measure(directory)
        assert [f.name for f in report.files] == facts[key]["image_files"], key
        apparent = allocated = 0
        for file in report.files:
            st = os.stat(directory / file.name)
            assert (file.apparent, file.allocated) == (st.st_size, st.st_blocks * 512)
            apparent += st.st_size
            allocated += st.st_blocks * 512
        assert (report.disk.files, report.apparent, report.allocated) == \
            (len(facts[key]["image_files"]), apparent, allocated)
        # the image kinds partition the directory; each names its biggest file
        for kind in report.kinds:
            mine = [f for f in report.files if f.kind == kind.kind]
            assert kind.largest_apparent == max((f.apparent for f in mine), default=0)
        assert sum(k.files for k in report.kinds) == report.disk.files
        assert sum(k.apparent for k in report.kinds) == apparent
        assert sum(k.allocated for k in report.kinds) == allocated
        # and so do the owners: processes, shared objects, checkpoint-wide images
        owners = report.common
        for item in report.processes + report.shared:
            owners += item.disk
        assert owners == report.disk, key


def test_pages_files_and_page_counts_match_facts(checkpoint_dirs, facts):
    for key, directory in checkpoint_dirs.items():
        report = measure(directory)
        expected_files = facts[key]["pages_files"]
        assert {p.name: p.apparent for p in report.pages_files} == expected_files, key
        assert all(p.apparent == p.expected for p in report.pages_files)
        assert report.kind_sizes["pages"].apparent == sum(expected_files.values())
        assert report.pages.present * P == sum(expected_files.values())
        assert report.notes == ()
        by_pid = {p.pid: p for p in report.processes}
        for fact in facts[key]["processes"]:
            counts = {}
            for flags, pages in fact["pages_by_flags"].items():
                state = state_of(int(flags))
                counts[state] = counts.get(state, 0) + pages
            process = by_pid[fact["pid"]]
            assert process.pages == PageCounts.of(counts), (key, fact["pid"])
            assert process.pages_file == f"pages-{fact['pages_id']}.img"
            assert process.pages_disk.apparent == expected_files[process.pages_file]
        # the VMA kinds partition the same pages
        assert sum((v.pages for v in report.vma_kinds), PageCounts()) == report.pages


def test_page_counts_agree_with_criu_stats_dump(checkpoint_dirs):
    for key, directory in checkpoint_dirs.items():
        report = measure(directory)
        stats = report.dump_stats
        assert stats, key
        assert stats["pages_written"] == sum(p.pages.present for p in report.processes), key
        assert stats["shpages_written"] == sum(s.pages.present for s in report.shared), key
        assert stats["pages_skipped_parent"] == report.pages.parent == 0
        assert stats["pages_lazy"] == report.pages.lazy == 0


def _pycriu_entries(path):
    with open(path, "rb") as handle:
        return get_schema().images.load(handle)["entries"]


def _present_per_vma(directory, pid):
    """``{(start, end): present pages}`` of one process, from pycriu-decoded images."""
    vmas = _pycriu_entries(directory / f"mm-{pid}.img")[0]["vmas"]
    runs = [(e["vaddr"], e.get("nr_pages") or e.get("compat_nr_pages") or 0, e["flags"])
            for e in _pycriu_entries(directory / f"pagemap-{pid}.img")[1:]]
    present = {}
    for v in vmas:
        pages = 0
        for vaddr, count, flags in runs:
            if state_of(flags) == "present":
                lo, hi = max(vaddr, v["start"]), min(vaddr + count * P, v["end"])
                pages += max(0, hi - lo) // P
        present[(v["start"], v["end"])] = pages
    return present


@pytest.mark.parametrize("key", ["service-a", "service-c"])
def test_top_vmas_match_pycriu(checkpoint_dirs, facts, key):
    directory = checkpoint_dirs[key]
    report = measure(directory, top=6)
    oracle = {}
    for fact in facts[key]["processes"]:
        for span, pages in _present_per_vma(directory, fact["pid"]).items():
            oracle[(fact["pid"],) + span] = pages
    assert len(report.top_vmas) == 6
    assert [v.pages.present for v in report.top_vmas] == sorted(oracle.values(),
                                                                reverse=True)[:6]
    comms = {fact["pid"]: fact["comm"] for fact in facts[key]["processes"]}
    for item in report.top_vmas:
        assert oracle[(item.pid, item.start, item.end)] == item.pages.present
        assert item.comm == comms[item.pid]
    heap = [v for v in report.top_vmas if v.kind == "heap"]
    assert heap and all(v.name == "[heap]" for v in heap)


# -- synthetic: holes, parent chains, lazy pages ---------------------------------------------


def punch_hole(path, offset, length):
    """``fallocate(PUNCH_HOLE | KEEP_SIZE)``, as ``criu dedup`` does; skip where unsupported."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fd = os.open(path, os.O_RDWR)
    try:
        if libc.fallocate(fd, 0x02 | 0x01, offset, length) != 0:
            pytest.skip(f"fallocate(PUNCH_HOLE): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def test_holes_punched_by_dedup_lower_allocated_only(tmp_path):
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + 64 * P)],
                      runs=[run(BASE, 64, PRESENT)])
    pages = builder.path("pages-1.img")
    os.sync()
    before = measure(builder.directory)
    punch_hole(pages, 8 * P, 48 * P)
    after = measure(builder.directory)
    st = os.stat(pages)
    if st.st_blocks * 512 >= st.st_size:
        pytest.skip("this file system does not keep holes")
    assert after.apparent == before.apparent
    freed = before.pages_files[0].allocated - st.st_blocks * 512
    assert freed > 0 and after.allocated == before.allocated - freed
    (info,) = after.pages_files
    assert (info.apparent, info.allocated) == (64 * P, st.st_blocks * 512)
    assert info.holes == 64 * P - st.st_blocks * 512 >= 48 * P - 2 * 4096
    assert after.kind_sizes["pages"].allocated == st.st_blocks * 512
    assert after.pages.present == 64  # the pagemap still lists every page
    assert any("holes" in note and "criu dedup" in note for note in after.notes)


def test_sparse_copy_shows_holes(tmp_path):
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + 256 * P)],
                      runs=[run(BASE, 256, PRESENT)], write_pages=False)
    pages = builder.path("pages-1.img")
    with open(pages, "wb") as handle:  # first and last page written, a hole between
        handle.write(b"x" * P)
        handle.seek(255 * P)
        handle.write(b"y" * P)
    st = os.stat(pages)
    if st.st_blocks * 512 >= st.st_size:
        pytest.skip("this file system does not keep holes")
    report = measure(builder.directory)
    (info,) = report.pages_files
    assert (info.apparent, info.allocated, info.holes) == \
        (256 * P, st.st_blocks * 512, 256 * P - st.st_blocks * 512)
    assert report.allocated < report.apparent


def test_parent_chain_and_lazy_pages(tmp_path):
    gen2 = build_chain(tmp_path)
    report = measure(gen2.directory, top=1)
    assert report.pages == PageCounts(present=1, parent=3, lazy=1)
    assert report.processes[0].pages == report.pages
    assert [(v.kind, v.pages, v.unlisted) for v in report.vma_kinds] == \
        [("anon", PageCounts(present=1, parent=3, lazy=1), 3)]
    assert report.top_vmas[0].pages == report.pages
    assert [(link.depth, link.pages) for link in report.parent_chain] == [
        (1, PageCounts(present=1, parent=3)), (2, PageCounts(present=4))]
    for link in report.parent_chain:
        files = [n for n in os.listdir(link.directory)
                 if os.path.isfile(os.path.join(link.directory, n))
                 and not os.path.islink(os.path.join(link.directory, n))]
        assert link.disk.files == len(files)
        assert link.disk.apparent == sum(os.path.getsize(os.path.join(link.directory, n))
                                         for n in files)
    assert report.pages_files[0].apparent == P  # the chain's pages are not in this directory
    rate = 1e6
    moving = size_analysis.transfer(report, rate)
    assert moving.get("whole").nbytes == report.apparent + 3 * P
    assert moving.get("in_parent").nbytes == 3 * P
    assert moving.get("this").nbytes == report.apparent
    assert moving.get("whole").seconds == (report.apparent + 3 * P) / rate
    assert moving.get("compressed") is None


def test_shared_memory_counts_once_under_its_first_mapping(tmp_path):
    builder = CheckpointBuilder(tmp_path / "ck")
    builder.inventory()
    builder.pstree([proc(1), proc(2, ppid=1)])
    shared = vma(BASE, BASE + 4 * P, kind="shared", shmid=77)
    for pid in (1, 2):
        builder.process(pid, vmas=[vma(BASE - 8 * P, BASE - 4 * P), shared],
                        runs=[run(BASE - 8 * P, 2, PRESENT)])
    builder.pagemap("pagemap-shmem-77.img", [run(0, 3, PRESENT)])
    builder.finish()
    report = measure(builder.directory, top=10)
    (item,) = report.shared
    assert (item.shmid, item.kind, item.mapped_by, item.pages) == \
        (77, "shared", (1, 2), PageCounts(present=3))
    assert item.disk.files == 2  # its pages file and pagemap-shmem-77.img
    kinds = {v.kind: v for v in report.vma_kinds}
    assert kinds["shared"].pages == PageCounts(present=3) and kinds["shared"].vmas == 2
    assert kinds["shared"].unlisted == 2  # one page of the 4-page window, in each process
    assert kinds["anon"].pages == PageCounts(present=4)
    assert report.pages == PageCounts(present=7)
    windows = [v for v in report.top_vmas if v.shmid == 77]
    assert [(v.pid, v.pages.present, v.unlisted) for v in windows] == [(1, 3, 1), (2, 3, 1)]


# -- content: synthetic pages whose zero and duplicate pages are known -----------------------


def page(tag):
    """One distinct page, recognisable by ``tag``."""
    return page_pattern(0, 1, b"/" + tag.encode())


ZERO = bytes(P)


def known_content(tmp_path):
    """pid 1 (A B A 0 0 C), its forked child pid 2 (A B D D 0), shared object 5 (C E)."""
    layout = {1: [page("A"), page("B"), page("A"), ZERO, ZERO, page("C")],
              2: [page("A"), page("B"), page("D"), page("D"), ZERO]}
    builder = CheckpointBuilder(tmp_path / "ck")
    builder.inventory()
    builder.pstree([proc(1), proc(2, ppid=1)])
    for pid, pages in layout.items():
        builder.process(pid, vmas=[vma(BASE, BASE + 8 * P), vma(BASE + 64 * P, BASE + 68 * P,
                                                                kind="shared", shmid=5)],
                        runs=[run(BASE, len(pages), PRESENT, b"".join(pages))])
    builder.pagemap("pagemap-shmem-5.img", [run(0, 2, PRESENT, page("C") + page("E"))])
    builder.finish()
    return builder


def test_content_counts_known_pages(tmp_path):
    builder = known_content(tmp_path)
    scan = content_analysis.scan_content(crit_plus.open_checkpoint(builder.directory))
    assert (scan.pages, scan.zero, scan.dup_within, scan.dup_across, scan.unique,
            scan.unreadable) == (13, 3, 2, 3, 5, 0)
    owners = [(o.pid, o.shmid, o.pages, o.zero, o.dup_within, o.dup_across, o.unique)
              for o in scan.owners]
    assert owners == [(1, None, 6, 2, 1, 0, 3), (2, None, 5, 1, 1, 2, 1),
                      (None, 5, 2, 0, 0, 1, 1)]
    assert scan.exact and scan.sample_rate == 1
    assert scan.dedup_saving == 8 * P
    assert scan.distinct == 6  # A B C D E and the zero page
    assert scan.bytes_read == 13 * P
    # below 1 MiB the whole stream is one block: the estimate is zstd -3 itself
    stream = b"".join(open(builder.path(name), "rb").read()
                      for name in ("pages-1.img", "pages-2.img", "pages-3.img"))
    expected = len(zstandard.ZstdCompressor(level=3).compress(stream))
    assert (scan.sampled_bytes, scan.compressed_estimate) == (13 * P, expected)
    assert 0 < scan.dedup_compressed_estimate <= scan.compressed_estimate


def test_content_without_compression(tmp_path):
    builder = known_content(tmp_path)
    scan = content_analysis.scan_content(crit_plus.open_checkpoint(builder.directory),
                                         compress=False)
    assert (scan.compressor, scan.compressed_estimate, scan.sampled_bytes) == (None, None, 0)
    assert (scan.zero, scan.dup_within, scan.dup_across, scan.unique) == (3, 2, 3, 5)


def fixture_owners(directory):
    """Pages files in the scan's owner order (pstree order, then shmem by id), found with
    pycriu."""
    pids = [e["pid"] for e in _pycriu_entries(directory / "pstree.img")]
    shmids = sorted(int(n[len("pagemap-shmem-"):-4]) for n in os.listdir(directory)
                    if n.startswith("pagemap-shmem-"))
    names = [f"pagemap-{pid}.img" for pid in pids
             if os.path.exists(directory / f"pagemap-{pid}.img")]
    names += [f"pagemap-shmem-{shmid}.img" for shmid in shmids]
    return [directory / f"pages-{_pycriu_entries(directory / n)[0]['pages_id']}.img"
            for n in names]


def sha256_scan(paths):
    """zero, within, across, unique page counts with sha256 digests (an independent scan)."""
    last_owner = {}
    counts = dict(zero=0, within=0, across=0, unique=0)
    for owner, path in enumerate(paths):
        data = open(path, "rb").read()
        for at in range(0, len(data), P):
            chunk = data[at:at + P]
            if chunk == ZERO:
                counts["zero"] += 1
                continue
            digest = hashlib.sha256(chunk).digest()
            if digest not in last_owner:
                counts["unique"] += 1
            elif last_owner[digest] == owner:
                counts["within"] += 1
            else:
                counts["across"] += 1
            last_owner[digest] = owner
    return counts


def test_content_of_every_fixture_matches_an_independent_scan(checkpoint_dirs):
    for key, directory in checkpoint_dirs.items():
        scan = content_analysis.scan_content(crit_plus.open_checkpoint(directory))
        expected = sha256_scan(fixture_owners(directory))
        got = dict(zero=scan.zero, within=scan.dup_within, across=scan.dup_across,
                   unique=scan.unique)
        assert got == expected, key
        assert scan.exact and scan.unreadable == 0
        report = measure(directory)
        assert scan.pages == report.pages.present
        assert scan.bytes_read == report.kind_sizes["pages"].apparent
        # the estimate is zstd -3 on 1 MiB blocks of the pages files one after the other;
        # zstd -3 on the whole stream also matches across blocks (its window is 2 MiB)
        stream = b"".join(open(p, "rb").read() for p in fixture_owners(directory))
        real = len(zstandard.ZstdCompressor(level=3).compress(stream))
        if len(stream) <= 1 << 20:
            assert scan.compressed_estimate == real, key
        assert real <= scan.compressed_estimate <= 1.15 * real, key


def test_service_workers_share_pages(checkpoint_dirs):
    # service-a's forked worker: most of its pages are its parent's (README: forked child)
    scan = content_analysis.scan_content(crit_plus.open_checkpoint(checkpoint_dirs["service-a"]))
    parent, child = scan.owners[0], scan.owners[1]
    assert child.dup_across > child.unique
    assert parent.dup_across == 0
    assert scan.zero >= 2 * 256  # 1 MiB written with zeros, in both processes


def distinct_pages(count, salt):
    """``count`` distinct pages."""
    return b"".join(page_pattern(i * P, 1, b"/%s" % salt.encode()) for i in range(count))


def test_table_cap_switches_to_a_content_sample(tmp_path):
    # pid 1: 3000 distinct pages; pid 2: the same 3000 again plus 1000 of its own
    one = distinct_pages(3000, "one")
    two = one + distinct_pages(1000, "two")
    builder = CheckpointBuilder(tmp_path / "ck")
    builder.inventory()
    builder.pstree([proc(1), proc(2, ppid=1)])
    for pid, data in ((1, one), (2, two)):
        builder.process(pid, vmas=[vma(BASE, BASE + 4096 * P)],
                        runs=[run(BASE, len(data) // P, PRESENT, data)])
    builder.finish()
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    exact = content_analysis.scan_content(checkpoint, compress=False)
    assert (exact.dup_across, exact.unique, exact.exact) == (3000, 4000, True)
    sampled = content_analysis.scan_content(checkpoint, compress=False, table_cap=256)
    assert not sampled.exact and sampled.sample_rate <= 1 / 16
    assert sampled.table_peak <= 257  # the table never holds more than the cap (+ the one added)
    assert sampled.pages == 7000 and sampled.zero == 0
    assert abs(sampled.dup_across - 3000) <= 0.25 * 3000
    assert sampled.dup_across + sampled.unique + sampled.dup_within == 7000


def test_compression_sample_estimates_the_whole(tmp_path):
    # 16 MiB: text-like pages (compressible) and random pages, in 1 MiB stretches
    rng = __import__("random").Random(6)
    words = [bytes(rng.choice(b"abcdefghij ") for _ in range(7)) for _ in range(200)]
    blocks = []
    for i in range(16):
        if i % 2:
            blocks.append(rng.randbytes(1 << 20))
        else:
            blocks.append(b"".join(rng.choice(words) for _ in range((1 << 20) // 7 + 1))
                          [:1 << 20])
    data = b"".join(blocks)
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + len(data))],
                      runs=[run(BASE, len(data) // P, PRESENT, data)])
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    full = content_analysis.scan_content(checkpoint)
    assert full.sampled_bytes == len(data)
    sampled = content_analysis.scan_content(checkpoint, full_compression_bytes=4 << 20,
                                            sample_fraction=1 / 4)
    assert 3 << 20 <= sampled.sampled_bytes <= 6 << 20  # about a quarter of the blocks
    assert abs(sampled.compressed_estimate - full.compressed_estimate) <= \
        0.2 * full.compressed_estimate


def test_unreadable_pages_are_counted_not_read(tmp_path):
    builder = known_content(tmp_path)
    os.truncate(builder.path("pages-2.img"), 3 * P)      # short: 2 of pid 2's pages gone
    os.remove(builder.path("pages-3.img"))               # missing: the shared object's
    os.remove(builder.path("pages-1.img"))
    os.mkfifo(builder.path("pages-1.img"))               # not a regular file: never opened
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    scan = content_analysis.scan_content(checkpoint)
    assert [(o.pages, o.unreadable) for o in scan.owners] == [(6, 6), (5, 2), (2, 2)]
    assert scan.unreadable == 10 and scan.bytes_read == 3 * P
    assert content_analysis.content_bytes(checkpoint) == 3 * P
    report = measure(builder.directory)
    assert len(report.notes) == 3


# -- no page data without --content -----------------------------------------------------------

_GUARD = textwrap.dedent("""
    import os, sys

    def guard(event, args):
        # every open of a pages image, through any Python API, fails
        if event == "open" and isinstance(args[0], (str, bytes)):
            name = os.path.basename(os.fsdecode(args[0]))
            if name.startswith("pages-") and name.endswith(".img"):
                raise PermissionError(13, "page data must not be read", os.fsdecode(args[0]))

    sys.addaudithook(guard)
    from crit_plus.cli import main
    codes = [main(list(args)) for args in __import__("json").loads(sys.argv[1])]
    print("codes", codes)
""")


def run_guarded(*invocations):
    """Run the CLI in one fresh interpreter where opening any pages-*.img raises."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", _GUARD, json.dumps(invocations)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


def test_no_page_data_is_read_without_content(checkpoint_dirs, tmp_path):
    dirs = [str(d) for d in checkpoint_dirs.values()] + [str(build_chain(tmp_path).directory)]
    invocations = [["size", d, "--format", fmt, "--top", "5", "--bandwidth", "1Gbit/s"]
                   for d in dirs for fmt in ("json", "table")]
    result = run_guarded(*invocations)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("codes " + str([0] * len(invocations)))
    # the guard is real: with --content the first pages file read trips it
    tripped = run_guarded(["size", dirs[0], "--content"])
    assert "codes [1]" in tripped.stdout
    assert "page data must not be read" in tripped.stderr and "pages-" in tripped.stderr


# -- rates and transfer times -------------------------------------------------------------------


@pytest.mark.parametrize("text, rate", [
    ("1Gbit/s", 125e6), ("1 Gbit/s", 125e6), ("1gbit/s", 125e6), ("1Gb/s", 125e6),
    ("500Mbps", 62.5e6), ("100MB/s", 100e6), ("8Bps", 8), ("10MiB/s", 10 * 2 ** 20),
    ("1.5GiB/s", 1.5 * 2 ** 30), ("2 Gibit/s", 2 ** 31 / 8), ("40 MByte/s", 40e6),
    ("250000", 250000), ("1e3 kB/s", 1e6), ("100 bits/sec", 12.5), ("1Tbit", 125e9),
])
def test_parse_rate(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "0", "0 Gbit/s", "-1MB/s", "1 GHz", "1 X/s",
                                  "1e999 B/s", "Gbit/s", "1 Mi", "1.2.3 MB/s"])
def test_parse_rate_refuses(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_transfer_with_content_estimates(tmp_path):
    builder = known_content(tmp_path)
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    report = size_analysis.measure(checkpoint)
    scan = content_analysis.scan_content(checkpoint)
    moving = size_analysis.transfer(report, 1000.0, scan)
    rest = report.apparent - 13 * P
    assert [(i.what, i.nbytes) for i in moving.items] == [
        ("whole", report.apparent), ("in_parent", 0), ("this", report.apparent),
        ("compressed", rest + scan.compressed_estimate),
        ("deduplicated_compressed", rest + scan.dedup_compressed_estimate)]
    assert all(i.seconds == i.nbytes / 1000.0 for i in moving.items)


# -- the command -----------------------------------------------------------------------------------

TOP_KEYS = {"schema", "directory", "disk", "files", "pages", "kinds", "pages_files", "processes",
            "shared", "common", "vma_kinds", "top_vmas", "parent_chain", "dump_stats", "notes",
            "pages_unknown_pids", "content", "transfer"}


def test_json_schema_and_numbers(checkpoint_dirs):
    directory = checkpoint_dirs["service-a"]
    result = run_cli("size", directory, "--format", "json", "--content", "--top", "3",
                     "--bandwidth", "1Gbit/s")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    data = json.loads(result.stdout)
    assert set(data) == TOP_KEYS
    report = measure(directory, top=3)
    assert data["disk"] == {"files": report.disk.files, "apparent": report.apparent,
                            "allocated": report.allocated}
    assert set(data["pages"]) == {"present", "parent", "lazy", "none", "listed",
                                  "present_bytes", "parent_bytes"}
    assert data["pages"]["present"] == report.pages.present
    assert [k["kind"] for k in data["kinds"]] == [k for k, _ in size_analysis.KINDS]
    assert set(data["kinds"][0]) == {"kind", "description", "files", "apparent", "allocated",
                                     "largest", "largest_apparent"}
    assert data["files"] == [{"name": f.name, "kind": f.kind, "apparent": f.apparent,
                              "allocated": f.allocated} for f in report.files]
    assert set(data["pages_files"][0]) == {"name", "pages_id", "pagemaps", "present_pages",
                                           "apparent", "allocated", "expected", "holes"}
    assert set(data["processes"][0]) == {"pid", "comm", "threads", "pages", "pages_file",
                                         "pages_disk", "metadata_files", "metadata_disk",
                                         "disk", "pages_unknown"}
    assert [p["pid"] for p in data["processes"]] == [p.pid for p in report.processes]
    assert set(data["shared"][0]) == {"shmid", "kind", "name", "mapped_by", "pages",
                                      "pages_file", "pages_disk", "metadata_disk", "disk"}
    assert set(data["vma_kinds"][0]) == {"kind", "vmas", "mapped", "pages", "unlisted"}
    assert len(data["top_vmas"]) == 3
    assert set(data["top_vmas"][0]) == {"pid", "comm", "start", "end", "mapped", "kind", "name",
                                        "pages", "unlisted", "shmid"}
    assert data["top_vmas"][0]["start"] == report.top_vmas[0].start
    content = data["content"]
    assert content["pages"] == report.pages.present
    assert content["dedup_saving"] == (content["zero"] + content["dup_within"] +
                                       content["dup_across"]) * P
    assert {"compressor", "compressed_estimate", "dedup_compressed_estimate", "exact",
            "owners", "distinct", "compression_ratio"} <= set(content)
    assert content["compressor"] == "zstd" and content["compression_level"] == 3
    assert data["transfer"]["rate"] == 125e6
    assert [i["what"] for i in data["transfer"]["items"]] == [
        "whole", "in_parent", "this", "compressed", "deduplicated_compressed"]
    assert data["transfer"]["items"][0]["seconds"] == report.apparent / 125e6


def test_json_without_options_has_nulls(checkpoint_dirs):
    result = run_cli("size", checkpoint_dirs["service-old"], "--format", "json")
    data = json.loads(result.stdout)
    assert (data["content"], data["transfer"], data["top_vmas"]) == (None, None, [])


def test_table_output(tmp_path):
    gen2 = build_chain(tmp_path)
    result = run_cli("size", gen2.directory, "--top", "2", "--bandwidth", "8Mbit/s",
                     "--content")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for heading in ("By image kind", "By process", "By VMA kind", "Biggest 1 VMAs",
                    "parent/ chain", "Page contents", "Transfer at 8 Mbit/s (1 MB/s)"):
        assert heading in out
    assert "1 present (4.0 KiB), 3 in parent/ (12.0 KiB), 1 lazy" in out
    assert "parent/parent/" in out


def test_table_escapes_control_characters(tmp_path):
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + P)], runs=[run(BASE, 1)],
                      comm="evil\x1b[2J")
    result = run_cli("size", builder.directory, "--top", "1", "--content")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "evil\\x1b[2J" in result.stdout


def test_bad_rate_is_a_usage_error(checkpoint_dirs):
    result = run_cli("size", checkpoint_dirs["service-a"], "--bandwidth", "fast")
    assert result.returncode == 2
    assert "'fast' is not a rate" in result.stderr and "Traceback" not in result.stderr


def test_not_a_checkpoint(tmp_path):
    result = run_cli("size", tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1


def test_piped_into_head_ends_quietly(checkpoint_dirs):
    pipeline = subprocess.run(
        f"{sys.executable} -m crit_plus size {checkpoint_dirs['service-c']} --top 50 "
        "| head -n 2; exit ${PIPESTATUS[0]}",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=120)
    assert pipeline.returncode == 0 and pipeline.stderr == ""
    assert pipeline.stdout.startswith("checkpoint  ")


def test_progress_bar_on_a_terminal(tmp_path):
    builder = known_content(tmp_path)
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "crit_plus", "size",
                                    str(builder.directory), "--content"],
                                   stdout=subprocess.PIPE, stderr=follower)
        os.close(follower)
        stdout, _ = process.communicate(timeout=120)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError as error:  # EIO once the child has closed the terminal
                assert error.errno == errno.EIO
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert process.returncode == 0
    assert b"reading pages" in seen and b"100%" in seen
    assert b"reading pages" not in stdout


def test_archived_checkpoint_is_measured_like_its_directory(checkpoint_dirs, tmp_path):
    # every command accepts every source kind: a Podman-style archive of service-a
    archive = tmp_path / "export.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(checkpoint_dirs["service-a"], arcname="checkpoint")
    result = run_cli("size", archive, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    report = measure(checkpoint_dirs["service-a"])
    assert data["pages"]["present"] == report.pages.present
    assert sum(k["apparent"] for k in data["kinds"]) == report.apparent


def test_same_numbers_under_debian_12_pycriu(checkpoint_dirs):
    # Debian 12's pycriu 3.17.1 reads every CRIU 4.2 page count as 0; size must not
    old = run_cli("version", "--format", "json", env={"CRIT_PLUS_PYCRIU": "system"})
    version = json.loads(old.stdout)["schema_criu_version"] if old.returncode == 0 else "4.2"
    if tuple(int(p) for p in version.split(".")[:2]) >= (4, 2):
        pytest.skip("no older distribution pycriu on this machine")
    for key in ("service-a", "service-old"):
        args = ("size", checkpoint_dirs[key], "--format", "json", "--top", "5")
        ours = json.loads(run_cli(*args).stdout)
        skewed = run_cli(*args, env={"CRIT_PLUS_PYCRIU": "system"})
        assert skewed.returncode == 0, skewed.stderr
        assert json.loads(skewed.stdout) == ours, key


def test_damaged_images_become_notes(checkpoint_dirs, tmp_path):
    directory = tmp_path / "damaged"
    shutil.copytree(checkpoint_dirs["service-a"], directory)
    for name, keep in (("pagemap-12525.img", 100), ("mm-12528.img", 30)):
        path = directory / name
        os.chmod(path, 0o644)
        data = path.read_bytes()[:keep]
        path.write_bytes(data)
    os.remove(directory / "pages-2.img")
    report = measure(directory, top=3)
    notes = "\n".join(report.notes)
    assert "pagemap-12525.img: entry 6 at offset 0x59: truncated" in notes
    assert "mm-12528.img: entry 0 at offset 0x8: truncated" in notes
    assert "pages-2.img is missing" in notes
    assert "pages-3.img: no decodable pagemap uses it" in notes
    by_pid = {p.pid: p for p in report.processes}
    assert by_pid[12525].pages == PageCounts()             # its pagemap cannot be read
    assert by_pid[12528].pages == PageCounts(present=1620)  # its pagemap can, without its mm
    scan = content_analysis.scan_content(crit_plus.open_checkpoint(directory))
    assert [(o.pid, o.shmid, o.unreadable) for o in scan.owners] == \
        [(12528, None, 0), (None, 2161, 0), (None, 2162, 1)]
    result = run_cli("size", directory, "--content", "--top", "3")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.count("\nnote: ") == 4
