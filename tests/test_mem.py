"""``mem read``, ``mem grep`` and ``mem dump`` on the real fixtures (and a synthetic seam).

The service fixtures wrote ``shared-region-NN`` and ``child-heartbeat!`` into
their memory before the dump (tests/workloads/service.py); ``mem grep`` must
find them, and every hit must read back as the pattern.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import shutil

import pytest

import crit_plus
from crit_plus.analysis import explore
from crit_plus.commands import mem as mem_command

from .cli import run_cli
from .synth import PRESENT, CheckpointBuilder, proc, run, vma

SERVICES = ("service-a", "service-b", "service-c", "service-old")


def _naive_hits(checkpoint, needle):
    """(pid, address) of every occurrence of ``needle`` in dumped pages, each span read whole."""
    found = set()
    for process in checkpoint.processes:
        memory = process.memory
        for mapping in memory.vmas:
            for extent in memory.extents(mapping.start, mapping.size):
                if extent.source != "pages":
                    continue
                data = memory.read(extent.vaddr, extent.length)
                at = data.find(needle)
                while at != -1:
                    found.add((process.pid, extent.vaddr + at))
                    at = data.find(needle, at + 1)
    return found


@pytest.mark.parametrize("name", SERVICES)
def test_grep_finds_what_the_service_wrote(fixture_root, name):
    directory = fixture_root / name
    checkpoint = crit_plus.open_checkpoint(directory)
    for text in ("shared-region-00", "child-heartbeat!"):
        result = run_cli("mem", "grep", directory, text, "--format", "json")
        assert result.returncode == 0, result.stderr
        hits = json.loads(result.stdout)
        assert hits, f"{text} not found in {name}"
        for hit in hits:
            assert bytes.fromhex(hit["match"]) == text.encode()
            assert checkpoint.read(hit["pid"], hit["address"], len(text)) == text.encode()
            assert hit["vma_start"] <= hit["address"] < hit["vma_end"]
        # the shared region is seen by the main process and its worker alike
        shared = {h["pid"] for h in hits if h["vma_kind"] in ("memfd", "shared")}
        assert len(shared) >= 2
        assert {(h["pid"], h["address"]) for h in hits} == \
            _naive_hits(checkpoint, text.encode())


def test_grep_across_chunk_seams_equals_a_whole_read(service_a):
    checkpoint = crit_plus.open_checkpoint(service_a)
    needle = b"region"
    search = explore.MemoryGrep(checkpoint, needle, chunk_size=4096)
    assert {(h.pid, h.address) for h in search.hits()} == _naive_hits(checkpoint, needle)


def test_grep_matches_across_two_pagemap_runs(tmp_path):
    builder = CheckpointBuilder(tmp_path / "seam")
    builder.inventory()
    builder.pstree([proc(1)])
    base = 0x400000
    first = bytearray(4096)
    first[-5:] = b"SECRE"
    second = bytearray(4096)
    second[:6] = b"T-KEY!"
    builder.process(1, vmas=[vma(base, base + 0x3000)],
                    runs=[run(base, 1, PRESENT, bytes(first)),
                          run(base + 0x1000, 1, PRESENT, bytes(second))])
    builder.finish()
    checkpoint = crit_plus.open_checkpoint(builder.directory)
    for regex in (False, True):
        pattern = rb"SECRET-K[A-Z]+" if regex else b"SECRET-KEY"
        hits = list(explore.MemoryGrep(checkpoint, pattern, regex=regex, chunk_size=4096,
                                       context=4).hits())
        assert [(h.address, h.match) for h in hits] == [(base + 4091, hits[0].match)]
        assert hits[0].match.startswith(b"SECRET-KEY")
        assert hits[0].before == b"\0" * 4 and hits[0].after.startswith(b"!")


def test_grep_options(service_a):
    regex = run_cli("mem", "grep", service_a, r"shared-region-\d\d", "--regex", "-f", "json")
    assert regex.returncode == 0
    assert all(bytes.fromhex(h["match"]).startswith(b"shared-region-")
               for h in json.loads(regex.stdout))
    upper = run_cli("mem", "grep", service_a, "CHILD-HEARTBEAT!", "-i", "-m", "1")
    assert upper.returncode == 0 and len(upper.stdout.splitlines()) == 1
    assert "child-heartbeat!" in upper.stdout
    as_hex = run_cli("mem", "grep", service_a, "--hex", "63 68 69 6c 64 2d 68", "-f", "json")
    assert len(json.loads(as_hex.stdout)) == len(json.loads(
        run_cli("mem", "grep", service_a, "child-h", "-f", "json").stdout))
    pid = json.loads(regex.stdout)[0]["pid"]
    one = json.loads(run_cli("mem", "grep", service_a, "shared-region-00", "--pid", str(pid),
                             "-f", "json").stdout)
    assert one and {h["pid"] for h in one} == {pid}
    missing = run_cli("mem", "grep", service_a, "no such bytes anywhere \x01")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("no match in ")
    bad = run_cli("mem", "grep", service_a, "([", "--regex")
    assert bad.returncode == 2 and "not a regular expression" in bad.stderr


def test_grep_exit_codes_are_greps(service_a, tmp_path):
    """0 a match, 1 no match, 2 trouble: an input that cannot be read (not 1, which
    says "no match"), a pid not in the checkpoint, a missing pattern."""
    assert run_cli("mem", "grep", service_a, "child-heartbeat!", "-m", "1").returncode == 0
    assert run_cli("mem", "grep", service_a, "no such bytes \x02").returncode == 1
    for args in ((tmp_path / "nowhere", "x"), (tmp_path, "x"), (service_a, "x", "--pid", "1"),
                 (service_a,)):
        result = run_cli("mem", "grep", *args)
        assert result.returncode == 2 and result.stdout == "", args
        (line,) = result.stderr.splitlines()
        assert line.startswith("crit-plus: ")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for image in service_a.iterdir():
        (damaged / image.name).write_bytes(image.read_bytes())
    (damaged / "pstree.img").write_bytes(b"\0" * 3)
    result = run_cli("mem", "grep", damaged, "x")
    assert result.returncode == 2 and "pstree.img" in result.stderr


def test_grep_progress_on_a_terminal(service_a, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    checkpoint = crit_plus.open_checkpoint(service_a)
    search = explore.MemoryGrep(checkpoint, b"child-heartbeat!")
    seen = []
    assert len(list(search.hits(seen.append))) > 0
    assert sum(seen) == search.total > 0  # every byte searched is reported
    stderr, stdout = Terminal(), io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    monkeypatch.setattr(mem_command, "PROGRESS_MIN", 0)
    count = mem_command._write_hits(explore.MemoryGrep(checkpoint, b"child-heartbeat!"),
                                    "table", None, stdout)
    assert count > 0 and "searching" in stderr.getvalue()
    quiet = io.StringIO()  # not a terminal: no bar
    monkeypatch.setattr("sys.stderr", quiet)
    mem_command._write_hits(explore.MemoryGrep(checkpoint, b"child-heartbeat!"), "table", None,
                            stdout)
    assert quiet.getvalue() == ""


def test_read_hexdump_raw_and_json(service_a, tmp_path):
    checkpoint = crit_plus.open_checkpoint(service_a)
    process = checkpoint.processes[0]
    heap = next(m for m in process.vmas if m.kind == "heap")
    data = checkpoint.read(process.pid, heap.start, 64)
    dump = run_cli("mem", "read", service_a, process.pid, f"{heap.start:x}", "64")
    assert dump.returncode == 0, dump.stderr
    first = dump.stdout.splitlines()[0].split("  ")
    assert first[0] == f"{heap.start:012x}"
    assert bytes.fromhex((first[1] + first[2]).replace(" ", "")) == data[:16]
    out = tmp_path / "heap.bin"
    raw = run_cli("mem", "read", service_a, process.pid, hex(heap.start), "4k", "-o", out)
    assert raw.returncode == 0 and out.read_bytes() == checkpoint.read(process.pid,
                                                                       heap.start, 4096)
    pieces = json.loads(run_cli("mem", "read", service_a, process.pid, hex(heap.start), "32",
                                "-f", "json").stdout)["pieces"]
    assert bytes.fromhex(pieces[0]["data"]) == data[:32]


def file_mapping(process, dumped):
    """A file mapping of ``process`` none of whose pages are in the images (``dumped``
    False: without a root, the checkpoint holds none of its bytes), or one with some
    pages in the images and some not (``dumped`` True)."""
    for mapping in process.vmas:
        held = mapping.pages.get("present", 0) + mapping.pages.get("parent", 0)
        if mapping.kind == "file" and bool(held) == dumped and held * 4096 < mapping.size:
            return mapping
    raise AssertionError(f"no such file mapping in pid {process.pid}")


def no_bytes_line(result, address):
    """The one line of ``mem read``/``mem dump``'s exit 3, checked: it names the address,
    says the checkpoint holds nothing there, blames no image, names no Python parameter."""
    assert result.returncode == mem_command.EXIT_NO_DATA, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("crit-plus: error: ") and f"{address:#x}" in line
    assert "holds no bytes" in line or "no mapping" in line
    assert ".img" not in line and "pagemap" not in line and "root=" not in line
    return line


def test_read_what_cannot_be_read_says_why(service_a, tmp_path):
    checkpoint = crit_plus.open_checkpoint(service_a)
    process = checkpoint.processes[0]
    text = file_mapping(process, dumped=False)  # no root: not in the images
    shown = run_cli("mem", "read", service_a, process.pid, hex(text.start), "32")
    assert "unavailable" in shown.stdout  # the hex dump says it too
    line = no_bytes_line(shown, text.start)
    assert f"{text.start:08x}-{text.end:08x}" in line and text.name in line
    assert "--root" in line
    refused = run_cli("mem", "read", service_a, process.pid, hex(text.start), "32",
                      "-o", tmp_path / "x")
    no_bytes_line(refused, text.start)
    assert not (tmp_path / "x").exists()
    unmapped = run_cli("mem", "read", service_a, process.pid, "10", "4")
    assert "not mapped" in unmapped.stdout
    assert "no mapping" in no_bytes_line(unmapped, 0x10)
    partly = file_mapping(process, dumped=True)
    some = run_cli("mem", "read", service_a, process.pid, hex(partly.start), hex(partly.size))
    assert some.returncode == 0 and "unavailable" in some.stdout  # some bytes: a dump
    bad = run_cli("mem", "read", service_a, process.pid, "xyz")
    assert bad.returncode == 2 and "not a hex address" in bad.stderr


def test_dump_a_mapping(service_a, tmp_path):
    checkpoint = crit_plus.open_checkpoint(service_a)
    process = checkpoint.processes[0]
    heap = next(m for m in process.vmas if m.kind == "heap")
    out = tmp_path / "heap.bin"
    result = run_cli("mem", "dump", service_a, process.pid, "--vma", hex(heap.start + 100),
                     "-o", out, "-f", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["vma"]["start"] == heap.start and report["unavailable"] == []
    assert out.read_bytes() == checkpoint.read(process.pid, heap.start, heap.size)
    text = file_mapping(process, dumped=True)
    holes = run_cli("mem", "dump", service_a, process.pid, "--vma", hex(text.start),
                    "-o", tmp_path / "text.bin")
    assert holes.returncode == 0 and "left as zeros" in holes.stderr
    assert (tmp_path / "text.bin").stat().st_size == text.size
    nothing = file_mapping(process, dumped=False)
    refused = run_cli("mem", "dump", service_a, process.pid, "--vma", hex(nothing.start + 5),
                      "-o", tmp_path / "none.bin")
    assert "--root" in no_bytes_line(refused, nothing.start)
    assert not (tmp_path / "none.bin").exists()  # no file of zeros passed off as memory
    outside = run_cli("mem", "dump", service_a, process.pid, "--vma", "10", "-o", tmp_path / "n")
    assert "no mapping" in no_bytes_line(outside, 0x10)


def test_dump_with_holes_into_a_pipe_or_device(service_a, tmp_path):
    """A file mapping without --root has holes: a regular file gets them sparse, a
    pipe (-o /dev/stdout) or /dev/null cannot seek, so zeros are written there."""
    checkpoint = crit_plus.open_checkpoint(service_a)
    process = checkpoint.processes[0]
    text = file_mapping(process, dumped=True)
    args = ["mem", "dump", service_a, process.pid, "--vma", hex(text.start)]
    into_file = run_cli(*args, "-o", tmp_path / "text.bin")
    assert into_file.returncode == 0 and "left as zeros" in into_file.stderr
    piped = subprocess.run([sys.executable, "-m", "crit_plus", *map(str, args), "-o",
                            "/dev/stdout"], capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == (tmp_path / "text.bin").read_bytes()
    assert len(piped.stdout) == text.size
    discarded = run_cli(*args, "-o", os.devnull)
    assert discarded.returncode == 0, discarded.stderr


def test_dump_reads_file_mappings_from_a_snapshots_rootfs(fixture_root, tmp_path):
    snapshot = fixture_root / "lxd-web/var/lib/lxd/storage-pools/default/containers-snapshots" \
                              "/web/before"
    checkpoint = crit_plus.open_checkpoint(snapshot)  # its rootfs/ is the root
    process = checkpoint.processes[0]
    text = next(m for m in process.vmas if m.kind == "file" and m.name == "/bin/busybox")
    out = tmp_path / "busybox-text.bin"
    result = run_cli("mem", "dump", snapshot, process.pid, "--vma", hex(text.start), "-o", out)
    assert result.returncode == 0 and "left as zeros" not in result.stderr
    busybox = (snapshot / "rootfs/bin/busybox").read_bytes()
    expected = busybox[text.pgoff:text.pgoff + text.size]
    assert out.read_bytes()[:len(expected)] == expected


def test_read_of_a_zombie_holds_no_bytes(tmp_path):
    """CRIU keeps no memory of a zombie: exit 3 and why, not "damaged image" (exit 1)."""
    builder = CheckpointBuilder(tmp_path / "ck")
    builder.inventory()
    builder.pstree([proc(1), proc(2, ppid=1)])
    builder.process(1, vmas=[vma(0x10000, 0x11000)], runs=[run(0x10000, 1, PRESENT)])
    builder.zombie(2)
    builder.finish()
    for args in (("read", "2", "10000", "16"), ("dump", "2", "--vma", "10000", "-o",
                                                tmp_path / "z.bin")):
        result = run_cli("mem", args[0], builder.directory, *args[1:])
        assert "zombie" in no_bytes_line(result, 0x10000)


def _cut(path, keep):
    """Replace the file at ``path`` (a copy's) with its first ``keep`` bytes."""
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[:keep])


@pytest.mark.parametrize("damage, named", [
    ("pagemap-12528.img", ("pagemap-12528.img", "offset 0x")),
    ("pages-4.img", ("pagemap-12528.img", "pages-4.img holds")),
])
def test_grep_of_damaged_memory_is_not_a_no_match(service_a, tmp_path, damage, named):
    """Where a process's memory cannot be read in full, "no match" (1) would be a false
    answer: one line naming the damaged image (exit 2); matches elsewhere are printed,
    with one note saying which process could not be searched in full."""
    copy = tmp_path / "service-a"
    shutil.copytree(service_a, copy)
    _cut(copy / damage, 100)
    for fmt in ("table", "json"):
        result = run_cli("mem", "grep", copy, "no such bytes \x02", "--format", fmt)
        assert result.returncode == 2 and result.stdout == "", result
        (line,) = result.stderr.splitlines()
        assert line.startswith("crit-plus: ") and "pid 12528" in line, line
        assert all(text in line for text in named), line
    result = run_cli("mem", "grep", copy, "child-heartbeat!", "--format", "json")
    assert result.returncode == 0 and json.loads(result.stdout), result
    (note,) = result.stderr.splitlines()
    assert note.startswith("crit-plus: note: ") and "pid 12528" in note and named[0] in note
    # a process whose images are whole is searched as before
    result = run_cli("mem", "grep", copy, "no such bytes \x02", "--pid", "12525")
    assert result.returncode == 1 and "no match" in result.stderr
