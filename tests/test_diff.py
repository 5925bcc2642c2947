"""``diff`` on the real fixtures: the changes between them are known.

Expectations come from fixtures/README.md and FACTS.json (computed with CRIU's
pycriu), and from the fixtures' page data read back independently here (a
region found by its contents, pages compared one by one through
``AddressSpace.read``), never from the diff itself.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import zlib

import pytest

from crit_plus.analysis.diff import SECTIONS, diff_checkpoints, report_json
from crit_plus.analysis.explore import vma_table
from crit_plus.memory import Unavailable, UnavailableError
from crit_plus.opening import open_source
from decoders import PAGE_SIZE

from .cli import run_cli

WEB = "lxd-web/var/lib/lxd/storage-pools/default/containers-snapshots/web"
DEB = "lxd-deb/var/lib/lxd/storage-pools/default/containers-snapshots/deb"
RANDOM_PAGES = (512 << 10) // PAGE_SIZE  # the service's random region
NEW_RANDOM_PAGES = (256 << 10) // PAGE_SIZE  # new random memory at stage 1


def compare(old, new, **options):
    """The DiffReport of two sources, opened as the command opens them."""
    with open_source(old, lxd_dir=options.pop("lxd_dir", None)) as a, \
            open_source(new, lxd_dir=options.pop("lxd_dir_new", None)) as b:
        return diff_checkpoints(a.checkpoint, b.checkpoint, old_source=a.source,
                                new_source=b.source, **options)


def facts_pids(facts, key):
    return {p["pid"]: p for p in facts[key]["processes"]}


def fd_changes(report, pid):
    return {c.fd: c for c in report.files.fds if c.new_pid == pid}


def random_runs(memory, min_pages):
    """``(start, end)`` of runs of at least ``min_pages`` present pages holding random
    bytes (that zlib cannot compress), found by reading the pages back."""
    pages = set()
    for vaddr, data in memory.iter_present():
        if isinstance(data, Unavailable):
            continue
        for offset in range(0, len(data), PAGE_SIZE):
            if is_random(data[offset:offset + PAGE_SIZE]):
                pages.add(vaddr + offset)
    runs = []
    for address in sorted(pages):
        if runs and runs[-1][1] == address:
            runs[-1][1] += PAGE_SIZE
        else:
            runs.append([address, address + PAGE_SIZE])
    return [tuple(r) for r in runs if (r[1] - r[0]) // PAGE_SIZE >= min_pages]


def is_random(page):
    """True for a page of random bytes (zlib cannot compress it)."""
    return page is not None and len(zlib.compress(page, 1)) > PAGE_SIZE - 64


def read_page(memory, address):
    try:
        return memory.read(address, PAGE_SIZE)
    except UnavailableError:
        return None


def row_at(process_diff, address):
    """The VMA row whose NEW range holds ``address``."""
    for row in process_diff.vmas:
        if row.new is not None and row.new.start <= address < row.new.end:
            return row
    raise AssertionError(f"no NEW VMA holds {address:#x}")


def changed_pages(row):
    return {a for start, end in row.changed_ranges for a in range(start, end, PAGE_SIZE)}


# -- service-a -> service-b ------------------------------------------------------------------


@pytest.fixture(scope="module")
def service_ab(fixture_root):
    return compare(fixture_root / "service-a", fixture_root / "service-b")


@pytest.fixture(scope="module")
def main_pid(facts):
    return next(p["pid"] for p in facts["service-a"]["processes"] if p["ppid"] == 0)


def test_service_one_more_child_nothing_exited(service_ab, facts, main_pid):
    old, new = facts_pids(facts, "service-a"), facts_pids(facts, "service-b")
    section = service_ab.processes
    assert service_ab.pairing.method == "pid"
    assert {info.pid for info in section.started} == set(new) - set(old)
    assert len(section.started) == 1
    child = section.started[0]
    assert child.ppid == main_pid == new[child.pid]["ppid"]
    assert child.argv == next(p.new.argv for p in service_ab.pairing.pairs
                              if p.new.pid == main_pid)  # a fork of the main process
    assert section.exited == ()
    assert {(p.old.pid, p.new.pid) for p in service_ab.pairing.pairs} == \
        {(pid, pid) for pid in old}


def test_service_threads_unchanged(service_ab, facts):
    old, new = facts_pids(facts, "service-a"), facts_pids(facts, "service-b")
    assert all(old[pid]["threads"] == new[pid]["threads"] for pid in old)  # the fixture's fact
    assert service_ab.processes.changed == ()
    assert service_ab.processes.unchanged == len(old)


def test_service_stage_file_opened_udp_closed(service_ab, facts, main_pid):
    old_fds = facts_pids(facts, "service-a")[main_pid]["fds"]
    new_fds = facts_pids(facts, "service-b")[main_pid]["fds"]
    changes = fd_changes(service_ab, main_pid)
    opened = {fd for fd, c in changes.items() if c.change == "opened"}
    closed = {fd for fd, c in changes.items() if c.change == "closed"}
    assert opened == {int(fd) for fd in set(new_fds) - set(old_fds)}
    assert closed == {int(fd) for fd in set(old_fds) - set(new_fds)}
    (opened_fd,), (closed_fd,) = opened, closed
    assert new_fds[str(opened_fd)]["path"] == "/srv/app/stage-1.txt"
    assert changes[opened_fd].new.name == "/srv/app/stage-1.txt"
    assert old_fds[str(closed_fd)]["type"] == "INETSK"
    assert changes[closed_fd].old.kind == "inet" and changes[closed_fd].old.state["proto"] == "UDP"
    stage = [o for o in service_ab.files.objects if o.name == "/srv/app/stage-1.txt"]
    assert [o.change for o in stage] == ["appeared"]
    assert (main_pid, opened_fd) in stage[0].new_holders
    # worker 1 still holds the UDP socket (the workload closes it in the main process only)
    assert not [o for o in service_ab.files.objects if o.kind == "inet"]


def test_service_other_fds_unchanged(service_ab):
    for change in service_ab.files.fds:
        if change.change in ("opened", "closed"):
            continue
        # only the log moved on: the service appends a line at each stage
        assert change.change == "changed", change
        assert change.new.name == "/srv/app/service.log"
        assert [f.field for f in change.fields] == ["pos"]
        assert change.fields[0].new > change.fields[0].old
    workers = [c for c in service_ab.files.fds if c.change != "changed"
               and c.new_pid != service_ab.pairing.pairs[0].new.pid]
    assert workers == []


def test_random_region_every_16th_page_rewritten(service_ab, main_pid):
    pair = next(p for p in service_ab.pairing.pairs if p.old.pid == main_pid)
    old_memory, new_memory = pair.old.memory, pair.new.memory
    (start, end), = random_runs(old_memory, RANDOM_PAGES)  # found by its contents
    assert (end - start) // PAGE_SIZE == RANDOM_PAGES
    process = next(p for p in service_ab.memory.processes if p.old_pid == main_pid)
    row = row_at(process, start)
    assert row.change == "same" and row.new.end >= end and row.more_ranges == 0
    reported = sorted(a for a in changed_pages(row) if start <= a < end)
    assert len(reported) == RANDOM_PAGES // 16
    assert all(b - a == 16 * PAGE_SIZE for a, b in zip(reported, reported[1:]))
    # page by page, independently of the diff: exactly those differ, the rest are equal
    differing = [a for a in range(start, end, PAGE_SIZE)
                 if read_page(old_memory, a) != read_page(new_memory, a)]
    assert differing == reported


def test_new_random_memory_is_reported(service_ab, main_pid):
    pair = next(p for p in service_ab.pairing.pairs if p.old.pid == main_pid)
    old_memory, new_memory = pair.old.memory, pair.new.memory
    process = next(p for p in service_ab.memory.processes if p.old_pid == main_pid)
    fresh = []  # random pages of NEW where OLD had no random bytes
    for start, end in random_runs(new_memory, 1):
        for address in range(start, end, PAGE_SIZE):
            if not is_random(read_page(old_memory, address)):
                fresh.append(address)
    assert len(fresh) >= NEW_RANDOM_PAGES  # the 256 KiB of new random memory
    added = 0
    for address in fresh:
        row = row_at(process, address)
        assert row.change in ("grown", "added", "split"), row.change
        assert row.more_ranges == 0
        if row.old is not None and row.old.start <= address < row.old.end:
            assert address in changed_pages(row)
        else:
            added += 1
    assert added and process.pages.added >= added
    assert (process.vma_changes.get("grown", 0) + process.vma_changes.get("added", 0)) >= 1


def held_pages(memory):
    """Addresses of the pages a process's checkpoint holds: their bytes are in a pages
    image (PE_PRESENT, PE_PARENT, shared memory inside the mapping), per the graph."""
    held = set()
    for mapping in memory.vmas:
        for extent in memory.extents(mapping.start, mapping.size):
            if extent.source == "pages":
                held.update(range(extent.vaddr, extent.vaddr + extent.length, PAGE_SIZE))
    return held


def test_page_totals_add_up_to_the_pages_either_side_holds(service_ab):
    total = None
    pairs = {pair.new.pid: pair for pair in service_ab.pairing.pairs}
    for process in service_ab.memory.processes:
        rows = [row.pages for row in process.vmas]
        summed = rows[0]
        for pages in rows[1:]:
            summed = summed + pages
        assert summed == process.pages
        pair = pairs[process.new_pid]
        old, new = held_pages(pair.old.memory), held_pages(pair.new.memory)
        pages = process.pages
        # file-backed and untouched pages are mapped but not held: not counted
        assert pages.changed + pages.unchanged + pages.unavailable + pages.added \
            + pages.removed == len(old | new)
        total = process.pages if total is None else total + process.pages
    assert total == service_ab.memory.pages
    # two image directories record no root-filesystem changes: rootfs is not compared
    assert service_ab.differing == tuple(name for name in SECTIONS if name != "rootfs")
    assert not service_ab.rootfs.compared


# -- LXD snapshots ---------------------------------------------------------------------------------


def test_lxd_web_new_shell_and_sleep_holding_the_blob(fixture_root, facts):
    before, after = f"{WEB}/before/state", f"{WEB}/after/state"
    report = compare(fixture_root / WEB / "before", fixture_root / WEB / "after",
                     sections=("processes", "files"))
    new = facts_pids(facts, after)
    started = {info.pid: info for info in report.processes.started}
    assert set(started) == set(new) - set(facts_pids(facts, before))
    sleeper = next(info for info in started.values() if info.argv == ("sleep", "777777"))
    shell = started[sleeper.ppid]
    assert shell.comm == "sh" and "sleep 777777 </srv/cache/blob" in " ".join(shell.argv)
    blob_fd = next(int(fd) for fd, f in new[sleeper.pid]["fds"].items()
                   if f.get("path") == "/srv/cache/blob")
    blob = [o for o in report.files.objects if o.name == "/srv/cache/blob"]
    assert [o.change for o in blob] == ["appeared"]
    assert blob[0].new_holders == ((sleeper.pid, blob_fd),)
    assert blob[0].new.state["size"] == 256 << 10
    # the rest is the ticker's `sleep 2`, one exited and one started since
    ticker = {p.old.pid for p in report.pairing.pairs if p.old.comm == "ticker"}
    churn = [info for info in report.processes.started + report.processes.exited
             if info.pid not in (sleeper.pid, shell.pid)]
    assert churn and all(info.argv == ("sleep", "2") and info.ppid in ticker for info in churn)


def test_lxd_deb_http_server_and_its_listening_socket(fixture_root, facts):
    report = compare(fixture_root / DEB / "s1", fixture_root / DEB / "s2",
                     sections=("processes", "files"))
    new = facts_pids(facts, f"{DEB}/s2/state")
    assert set(new) - set(facts_pids(facts, f"{DEB}/s1/state")) == \
        {info.pid for info in report.processes.started}
    (server,) = report.processes.started
    assert server.argv[:3] == ("/usr/bin/python3", "-m", "http.server")
    assert report.processes.exited == ()
    listening = [o for o in report.files.objects if o.change == "appeared" and o.kind == "inet"]
    assert len(listening) == 1
    assert listening[0].new.name == "127.0.0.1:8000"
    assert listening[0].new.state["state"] == "LISTEN"
    assert [pid for pid, _fd in listening[0].new_holders] == [server.pid]


def test_lxd_names_and_snapshot_dirs_agree(fixture_root):
    lxd_dir = fixture_root / "lxd-web/var/lib/lxd"
    by_name = compare("lxd:web/before", "lxd:web/after", lxd_dir=lxd_dir, lxd_dir_new=lxd_dir,
                      sections=("processes", "files"))
    by_dir = compare(fixture_root / WEB / "before", fixture_root / WEB / "after",
                     sections=("processes", "files"))
    named, direct = report_json(by_name), report_json(by_dir)
    for key in ("pairing", "processes", "files"):
        assert named[key] == direct[key]
    assert by_name.old.kind == "lxd-snapshot" and by_name.old.name == "web/before"


# -- another run of the service: other pids, pairing by tree -------------------------------------


def test_another_run_pairs_by_tree_and_matches_sockets_by_what_they_are(fixture_root, facts):
    report = compare(fixture_root / "service-a", fixture_root / "service-old",
                     sections=("processes", "files"))
    old, new = facts_pids(facts, "service-a"), facts_pids(facts, "service-old")
    assert not set(old) & set(new)
    assert report.pairing.method == "tree" and report.pairing.shared_pids == 0
    root = {pid for pid, p in old.items() if p["ppid"] == 0}, \
        {pid for pid, p in new.items() if p["ppid"] == 0}
    child = set(old) - root[0], set(new) - root[1]
    assert {(p.old.pid, p.new.pid) for p in report.pairing.pairs} == \
        {(next(iter(root[0])), next(iter(root[1]))), (next(iter(child[0])), next(iter(child[1])))}
    assert report.processes.started == () == report.processes.exited
    for process in report.processes.changed:  # the second run: another workdir, no inet
        fields = {c.field: c for c in process.changes}
        assert fields["argv"].new[-1] == "--no-inet" and fields["cwd"].new == "/srv/app-old"
        assert "threads" not in fields  # 4 and 1 threads on both sides
    assert not report.files.inodes_compared  # another run: pipes and sockets are new ones
    for change in report.files.fds:
        kinds = {view.kind for view in (change.old, change.new) if view is not None}
        # files moved to /srv/app-old; inet sockets are gone; pipes, socketpairs,
        # eventfd, epoll and memfd are the same things at the same numbers
        assert kinds <= {"file", "fifo", "inet", "unix"}, change
        if change.change == "changed":
            assert change.old.kind == "unix" and change.old.state["path"] is None
    inet = [fd for fd, f in old[next(iter(root[0]))]["fds"].items() if f["type"] == "INETSK"]
    gone = {c.fd for c in report.files.fds if c.old_pid in root[0] and c.old is not None
            and c.old.kind == "inet" and c.change in ("closed", "re-pointed")}
    assert gone == {int(fd) for fd in inet}


# -- identical -----------------------------------------------------------------------------------


def test_every_checkpoint_against_itself_is_identical(checkpoint_dirs):
    for key, directory in checkpoint_dirs.items():
        report = compare(directory, directory)
        assert report.identical, (key, report.differing)
        pages = report.memory.pages
        assert (pages.changed, pages.added, pages.removed, pages.unavailable) == (0, 0, 0, 0), key
        assert report.memory.bytes_read == 0 == report.memory.file_bytes_read  # not read
        # the pages counted are the checkpoint's own, per process as `mems` shows them
        with open_source(directory) as opened:
            own = {rows.pid: sum(row.pages["present"] + row.pages["parent"] + (row.shared or 0)
                                 for row in rows.vmas)
                   for rows in vma_table(opened.checkpoint)}
        assert {p.old_pid: p.pages.unchanged for p in report.memory.processes} == own, key
        assert pages.unchanged == sum(own.values()) > 0


def test_headline_counts_held_pages_and_reads_only_page_data(fixture_root, facts):
    """Two LXD snapshots of 408 KiB and 540 KiB of pages: what is read is page data of
    the checkpoints (not the binaries under rootfs/), and the pages counted are
    theirs (FACTS.json: PE_PRESENT pages, no shared memory)."""
    report = compare(fixture_root / WEB / "before", fixture_root / WEB / "after",
                     sections=("memory",))
    pages_bytes = sum((fixture_root / WEB / side / "state" / name).stat().st_size
                      for side in ("before", "after")
                      for name in facts[f"{WEB}/{side}/state"]["pages_files"])
    assert 0 < report.memory.bytes_read <= pages_bytes
    assert report.memory.file_bytes_read == 0
    pages = report.memory.pages
    for process in report.memory.processes:
        present = [sum(n for flags, n in facts_pids(facts, f"{WEB}/{side}/state")
                       [process.old_pid]["pages_by_flags"].items() if int(flags) & 4)
                   for side in ("before", "after")]
        counted = process.pages.changed + process.pages.unchanged + process.pages.added
        assert max(present) <= counted + process.pages.removed <= sum(present)
    assert pages.unavailable == 0 and pages.changed > 0
    text = run_cli("diff", fixture_root / WEB / "before", fixture_root / WEB / "after",
                   "--only", "memory").stdout
    assert "of page data read" in text and "files under the roots" not in text


def test_a_copy_is_compared_byte_for_byte_and_identical(fixture_root, tmp_path):
    copy = tmp_path / "service-a"
    shutil.copytree(fixture_root / "service-a", copy)
    report = compare(fixture_root / "service-a", copy)
    assert report.identical
    assert report.memory.pages.changed == 0
    present = sum(pf.size for pf in report.pairing.pairs[0].old.checkpoint.pages_files)
    assert report.memory.bytes_read >= present  # every page of data was read on both sides


@pytest.fixture(scope="module")
def one_byte_changed(fixture_root, facts, tmp_path_factory):
    """A copy of service-a with one byte of its random region flipped, and that page's address."""
    main = next(p["pid"] for p in facts["service-a"]["processes"] if p["ppid"] == 0)
    copy = tmp_path_factory.mktemp("flipped") / "service-a"
    shutil.copytree(fixture_root / "service-a", copy)
    with open_source(copy) as opened:
        memory = opened.checkpoint.process(main).memory
        (start, _end), = random_runs(memory, RANDOM_PAGES)
        address = start + 5 * PAGE_SIZE
        (extent,) = memory.extents(address, PAGE_SIZE)
    path = copy / extent.path.rsplit("/", 1)[1]
    path.chmod(0o644)
    with open(path, "r+b") as pages:
        pages.seek(extent.offset + 100)
        byte = pages.read(1)
        pages.seek(extent.offset + 100)
        pages.write(bytes([byte[0] ^ 0xFF]))
    return copy, main, address


def test_one_flipped_byte_is_one_changed_page(fixture_root, one_byte_changed):
    copy, main, address = one_byte_changed
    report = compare(fixture_root / "service-a", copy)
    assert report.differing == ("memory",)
    assert report.memory.pages.changed == 1
    (process,) = [p for p in report.memory.processes if p.pages.changed]
    assert process.old_pid == main
    assert row_at(process, address).changed_ranges == ((address, address + PAGE_SIZE),)


def test_no_content_needs_no_page_data(fixture_root, tmp_path, service_ab):
    copies = []
    for name in ("service-a", "service-b"):
        copy = tmp_path / name
        shutil.copytree(fixture_root / name, copy, ignore=shutil.ignore_patterns("pages-*.img"))
        copies.append(copy)
    report = compare(*copies, sections=("memory",), content=False)
    assert report.memory.content is False and report.memory.bytes_read == 0
    assert report.memory.pages is None
    shape = [[(row.change, row.old, row.new, row.fields) for row in p.vmas]
             for p in report.memory.processes]
    assert shape == [[(row.change, row.old, row.new, row.fields) for row in p.vmas]
                     for p in service_ab.memory.processes]
    assert all(row.pages is None for p in report.memory.processes for row in p.vmas)
    assert report.differing == ("memory",)  # the heap grew


# -- the command -----------------------------------------------------------------------------------


def test_cli_identical_exits_0(service_a):
    result = run_cli("diff", service_a, service_a)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("identical")


def test_cli_different_exits_1_and_names_what(fixture_root):
    result = run_cli("diff", fixture_root / "service-a", fixture_root / "service-b")
    assert result.returncode == 1, result.stderr
    assert "different: processes, files, memory, images" in result.stdout
    assert "started" in result.stdout and "/srv/app/stage-1.txt" in result.stdout
    assert "grown" in result.stdout and result.stderr == ""


def test_cli_only_limits_sections_and_exit_status(fixture_root, one_byte_changed):
    copy, _main, address = one_byte_changed
    rest = run_cli("diff", fixture_root / "service-a", copy, "--only", "processes,files,images",
                   "--format", "json")
    assert rest.returncode == 0, rest.stderr
    data = json.loads(rest.stdout)
    assert data["identical"] is True and data["memory"] is None
    assert data["sections"] == ["processes", "files", "images"]
    memory = run_cli("diff", fixture_root / "service-a", copy, "--only", "memory", "-v")
    assert memory.returncode == 1
    assert f"{address:x}-{address + PAGE_SIZE:x}" in memory.stdout
    bad = run_cli("diff", fixture_root / "service-a", copy, "--only", "memory,stack")
    assert bad.returncode == 2 and "sections are processes, files, memory, images, rootfs" in \
        bad.stderr


def test_cli_json_schema(fixture_root):
    result = run_cli("diff", fixture_root / "service-a", fixture_root / "service-b",
                     "--format", "json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert set(data) == {"schema", "version", "identical", "differs", "sections", "not_compared",
                         "old", "new", "pairing", "processes", "files", "memory", "images",
                         "rootfs"}
    assert data["schema"] == "crit-plus/diff/1" and data["version"] == 1
    assert data["identical"] is False
    assert data["not_compared"] == ["rootfs"]  # the others were, so the verdict stands
    assert data["differs"] == list(SECTIONS[:-1]) and data["sections"] == list(SECTIONS)
    assert data["rootfs"] == {"compared": False, "reason": "either side records no "
                              "root-filesystem changes (only Podman/CRI-O/containerd archives "
                              "do)", "old_problem": None, "new_problem": None, "changes": []}
    assert set(data["old"]) == {"spec", "kind", "name", "images_dir", "errors"}
    assert data["old"]["errors"] == 0 == data["new"]["errors"]
    assert data["pairing"]["method"] == "pid"
    assert {"old_pid", "new_pid", "method"} == set(data["pairing"]["pairs"][0])
    started = data["processes"]["started"][0]
    assert set(started) == {"pid", "ppid", "comm", "argv", "state", "threads", "fds", "vmas"}
    opened = next(c for c in data["files"]["fds"] if c["change"] == "opened")
    assert opened["old"] is None and opened["new"]["name"] == "/srv/app/stage-1.txt"
    assert set(opened) == {"old_pid", "new_pid", "fd", "change", "old", "new", "fields"}
    memory = data["memory"]
    assert memory["content"] is True and memory["hash"] == "xxh3_64"
    assert set(memory["pages"]) == {"changed", "unchanged", "added", "removed", "unavailable",
                                    "moved"}
    grown = next(v for p in memory["processes"] for v in p["vmas"] if v["change"] == "grown")
    assert grown["new"]["end"] > grown["old"]["end"] and grown["new"]["kind"] == "heap"
    assert isinstance(grown["new"]["prot"], int) and grown["pages"]["added"] > 0
    assert all(len(r) == 2 and r[0] < r[1] for r in grown["changed_ranges"])
    images = data["images"]
    assert "core-" + str(data["processes"]["started"][0]["pid"]) + ".img" in images["only_new"]
    assert {"field", "label", "old", "new", "compared", "differs"} == set(images["facts"][0])


def test_cli_archive_and_directory_are_identical(fixture_root, tmp_path):
    archive = tmp_path / "service-a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fixture_root / "service-a", arcname="checkpoint")
    result = run_cli("diff", fixture_root / "service-a", archive, "--format", "json")
    assert result.returncode == 0, result.stdout
    data = json.loads(result.stdout)
    assert data["new"]["kind"] == "podman-archive"
    assert data["memory"]["bytes_read"] > 0  # the archive's copy was read and compared


@pytest.mark.parametrize("damage", ["removed", "cut short"])
def test_cli_side_with_image_errors_exits_2_not_identical(fixture_root, tmp_path, damage):
    """Pages NEW cannot give are not compared, so nothing differs; the verdict still
    may not be 0 (identical): the report is printed and diff exits 2."""
    copy = tmp_path / "copy"
    shutil.copytree(fixture_root / "service-a", copy)
    for pages in copy.glob("pages-*.img"):
        pages.chmod(0o644)
        if damage == "removed":
            pages.unlink()
        else:
            os.truncate(pages, 4096)
    result = run_cli("diff", fixture_root / "service-a", copy, "--only", "memory",
                     "--format", "json")
    data = json.loads(result.stdout)
    assert data["identical"] is True and data["new"]["errors"] >= 1
    assert data["memory"]["pages"]["unavailable"] > 0
    assert result.returncode == 2
    same = run_cli("diff", fixture_root / "service-a", fixture_root / "service-a",
                   "--only", "memory")
    assert same.returncode == 0


def test_cli_unreadable_input_exits_2(fixture_root, tmp_path):
    missing = run_cli("diff", fixture_root / "service-a", tmp_path / "nope")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.startswith("crit-plus: ") and len(missing.stderr.splitlines()) == 1
    broken = tmp_path / "broken"
    shutil.copytree(fixture_root / "service-a", broken)
    (broken / "pstree.img").chmod(0o644)
    (broken / "pstree.img").write_bytes((fixture_root / "service-a/pstree.img").read_bytes()[:13])
    result = run_cli("diff", fixture_root / "service-a", broken)
    assert result.returncode == 2
    assert "pstree.img" in result.stderr and "Traceback" not in result.stderr


def test_cli_says_what_summarize_and_mems_say(fixture_root):
    """One formatter for each fact: addresses and permissions as `mems` prints them, the
    network-lock method and LSM as `summarize` names them, an exited process's state
    as OLD recorded it."""
    before, after = fixture_root / WEB / "before", fixture_root / WEB / "after"
    text = run_cli("diff", before, after, "-v").stdout
    mems = run_cli("mems", after).stdout
    rows = [line.split() for line in text.splitlines()
            if line.split()[:1] == ["same"] and "-" in line.split()[1]]
    assert rows
    for _change, address, perms, *_rest in rows:
        assert f" {address} " in mems and perms in ("r--p", "r-xp", "rw-p", "--xp"), address
    inventory = next(line for line in run_cli("summarize", before).stdout.splitlines()
                     if line.startswith("inventory"))
    assert "network lock iptables" in inventory and "LSM none" in inventory
    lines = text.splitlines()
    assert next(line for line in lines if line.startswith("network lock")).split()[2:] == \
        ["iptables", "iptables"]
    assert next(line for line in lines if line.startswith("LSM ")).split()[1:] == \
        ["none", "none"]
    (exited,) = [line for line in text.splitlines() if line.startswith("exited")]
    assert exited.endswith("alive in OLD)")
    data = json.loads(run_cli("diff", before, after, "--format", "json").stdout)
    lock = next(row for row in data["images"]["facts"] if row["field"] == "network_lock_method")
    assert lock["old"] == lock["new"] == "iptables"


@pytest.mark.parametrize("broken_side", ["old", "new"])
def test_an_unreadable_side_is_named(service_a, tmp_path, broken_side):
    """Both sides have a pstree.img: the one-line error says which checkpoint's is cut."""
    broken = tmp_path / "cut"
    shutil.copytree(service_a, broken)
    (broken / "pstree.img").write_bytes((service_a / "pstree.img").read_bytes()[:10])
    sides = (broken, service_a) if broken_side == "old" else (service_a, broken)
    result = run_cli("diff", *sides, check=False)
    assert result.returncode == 2
    assert result.stderr == f"crit-plus: {broken}: pstree.img: entry 0 at offset 0x8: " \
                            "truncated entry size: needs 4 bytes, 2 left\n"
