"""``mem grep --kind/--perms/--range/--root`` on the real fixtures: each filter gives
exactly the unfiltered matches that satisfy it, and ``--root`` finds text in the clean
pages of file mappings (not in the images) that ``mem read --root`` reads back."""

from __future__ import annotations

import json

import pytest

from tests.cli import run_cli

WEB = "lxd-web/var/lib/lxd/storage-pools/default/containers/web"
NEEDLE = "shared-region-00"


def _hits(*args):
    done = run_cli("mem", "grep", *args, "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout) if done.returncode == 0 else []


def _key(hit):
    return hit["pid"], hit["address"]


@pytest.fixture(scope="module")
def every_hit(service_a):
    hits = _hits(service_a, NEEDLE)
    assert len({hit["vma_kind"] for hit in hits}) >= 2  # matches in several kinds of mapping
    return hits


def test_kind_keeps_the_matches_in_mappings_of_that_kind(service_a, every_hit):
    kinds = sorted({hit["vma_kind"] for hit in every_hit})
    for kind in kinds:
        assert [_key(h) for h in _hits(service_a, NEEDLE, "--kind", kind)] == [
            _key(h) for h in every_hit if h["vma_kind"] == kind]
    both = _hits(service_a, NEEDLE, *(arg for kind in kinds[:2] for arg in ("--kind", kind)))
    assert {_key(h) for h in both} == {_key(h) for h in every_hit if h["vma_kind"] in kinds[:2]}


def test_perms_keep_mappings_with_at_least_those_permissions(service_a, every_hit):
    shared = [h for h in every_hit if h["perms"][3] == "s"]
    assert shared and len(shared) < len(every_hit)
    writable = _hits(service_a, NEEDLE, "--perms", "rw")
    assert [_key(h) for h in writable] == [_key(h) for h in every_hit if "w" in h["perms"]]
    assert _hits(service_a, NEEDLE, "--perms", "x") == [
        h for h in every_hit if "x" in h["perms"]]


def test_range_keeps_the_matches_inside_it(service_a, every_hit):
    first = every_hit[0]["address"]
    start, end = first - 16, first + 16
    inside = _hits(service_a, NEEDLE, "--range", f"{start:x}-{end:x}")
    assert inside and [_key(h) for h in inside] == [
        _key(h) for h in every_hit if start <= h["address"] < end]
    bad = run_cli("mem", "grep", service_a, NEEDLE, "--range", "10-5")
    assert bad.returncode == 2 and "--range" in bad.stderr
    bad = run_cli("mem", "grep", service_a, NEEDLE, "--perms", "rq")
    assert bad.returncode == 2 and "--perms" in bad.stderr


def test_range_counts_a_match_that_starts_inside_and_ends_past_it(service_a, every_hit):
    # as grep on a region: a match counts when it starts in [START, END), wherever it ends
    address = every_hit[0]["address"]
    for start, end in ((address, address + 1), (address - 4, address + len(NEEDLE) - 1)):
        shown = _hits(service_a, NEEDLE, "--range", f"{start:x}-{end:x}")
        assert [_key(h) for h in shown] == [
            _key(h) for h in every_hit if start <= h["address"] < end]
        assert shown[0]["address"] == address
    # one that starts before START does not, even when it ends inside the range
    assert address not in {h["address"] for h in _hits(
        service_a, NEEDLE, "--range", f"{address + 1:x}-{address + len(NEEDLE) + 8:x}")}


def test_root_searches_file_mappings_as_mem_read_reads_them(fixture_root):
    state, rootfs = fixture_root / WEB / "state", fixture_root / WEB / "rootfs"
    assert _hits(state, "BusyBox v", "--kind", "file") == []  # clean pages: not dumped
    hits = _hits(state, "BusyBox v", "--kind", "file", "--root", rootfs, "-m", "3")
    assert hits and all(h["vma_kind"] == "file" and h["vma_name"] == "/bin/busybox" for h in hits)
    for hit in hits:
        read = run_cli("mem", "read", state, hit["pid"], hex(hit["address"]), "9",
                       "--root", rootfs, "--format", "json")
        assert read.returncode == 0, read.stderr
        pieces = json.loads(read.stdout)
        pieces = pieces["pieces"] if isinstance(pieces, dict) else pieces
        assert "".join(p.get("data", "") for p in pieces) == b"BusyBox v".hex()


def test_file_pages_are_searched_only_with_root_given(fixture_root):
    """mem grep lxd:web searches no file-backed page by default (docs/commands/mem.md), though
    mem read reads them from the snapshot's rootfs/ by default; its help says exactly that."""
    source = ("lxd:web", "--lxd-dir", fixture_root / "lxd-web/var/lib/lxd")
    rootfs = fixture_root / WEB / "rootfs"
    assert _hits(*source[:1], "BusyBox v", *source[1:], "--kind", "file") == []
    hit = _hits(*source[:1], "BusyBox v", *source[1:], "--kind", "file", "--root", rootfs,
                "-m", "1")[0]
    read = run_cli("mem", "read", *source, hit["pid"], hex(hit["address"]), "9",
                   "--format", "json")
    assert read.returncode == 0, read.stderr
    pieces = json.loads(read.stdout)
    pieces = pieces["pieces"] if isinstance(pieces, dict) else pieces
    assert "".join(p.get("data", "") for p in pieces) == b"BusyBox v".hex()  # rootfs/: default
    help_text = " ".join(run_cli("mem", "grep", "--help").stdout.split())
    assert "Only when given: unlike mem read, mem grep does not search a snapshot's rootfs/ " \
        "by default." in help_text
