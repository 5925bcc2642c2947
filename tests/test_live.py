"""Real CRIU in the loop: dump the service workload, read the dump with crit-plus,
check it against what the workload knows about itself, and restore it.

The workload (``tests/workloads/service.py``) writes a JSON description of
itself: pids, tids, every fd with its ``/proc`` target, position and flags,
the addresses of marker strings and the SHA-256 of memory regions.  CRIU
(``scripts/install-criu``; ``$CRIT_PLUS_CRIU`` or its default path) dumps it;
``crit_plus.open_checkpoint`` must give back the same facts.  See docs/live.md.

Skipped, with the reason, where no working CRIU >= 4.2 is present or not root
(the ``criu`` fixture in tests/conftest.py; it fails instead under
``CRIT_PLUS_LIVE=required``, as ``make test`` sets it).
Every process started here is killed by its process group in a finalizer,
and every wait is bounded.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import crit_plus
from crit_plus.sources import resolve
from tests.workloads import harness
from tests.workloads.service import (
    PIPE_TEXT,
    SCRATCH_TEXT,
    SOCKETPAIR_TEXT,
    TCP_CLIENT_TEXT,
    TCP_SERVER_TEXT,
)

pytestmark = pytest.mark.live

O_ACCMODE = 0o3
O_APPEND = 0o2000
O_CLOEXEC = 0o2000000


@dataclass
class Dump:
    """One dump of the service: its images and what the service said just before."""

    name: str
    directory: Path
    info: dict
    marker: str
    seconds: float
    left_running: bool
    notes: dict = field(default_factory=dict)


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(criu, tmp_path_factory):
    """The service dumped twice with --leave-running: at stage 0, then at stage 1."""
    base = tmp_path_factory.mktemp("live-running")
    marker = f"running-{os.getpid()}"
    service = harness.Service.start(base / "app", base / "info.json", marker=marker)
    try:
        dumps = {}
        for stage in (0, 1):
            if stage:
                service.advance()
            info = service.info
            seconds = harness.dump(criu, service.pid, base / f"stage-{stage}", leave_running=True)
            still = [pid for pid in service.pids if harness.alive(pid)]
            dumps[stage] = Dump(f"running-stage-{stage}", base / f"stage-{stage}", info, marker,
                                seconds, True, {"alive_after": still})
        # the service still answers after the second dump
        dumps["after"] = service.advance()
        yield dumps
    finally:
        service.kill()


@pytest.fixture(scope="module")
def final(criu, tmp_path_factory):
    """The service dumped once at stage 0 without --leave-running (CRIU ends it)."""
    base = tmp_path_factory.mktemp("live-final")
    marker = f"final-{os.getpid()}"
    service = harness.Service.start(base / "app", base / "info.json", marker=marker)
    ports = harness.tcp_ports(service.info)
    try:
        seconds = harness.dump(criu, service.pid, base / "images", leave_running=False)
        left = service.reap()
        dump = Dump("final-stage-0", base / "images", service.info, marker, seconds, False,
                    {"left": left, "service": service, "base": base})
        yield dump
    finally:
        service.kill()
        harness.unlock_network(ports)


@pytest.fixture(params=["running-stage-0", "running-stage-1", "final-stage-0"])
def dumped(request):
    """Each dump in turn."""
    if request.param == "final-stage-0":
        return request.getfixturevalue("final")
    return request.getfixturevalue("running")[int(request.param[-1])]


def _open(dump, **kw):
    return crit_plus.open_checkpoint(dump.directory, **kw)


def _fail_on(problems, dump):
    assert not problems, f"{dump.name} ({dump.directory}): " + "\n  ".join([""] + problems)


# -- CRIU itself ------------------------------------------------------------------------------


def test_criu_is_new_enough_and_works(criu):
    out = subprocess.run([criu, "--version"], capture_output=True, text=True, timeout=30)
    assert harness.parse_version(out.stdout)[:2] >= harness.MIN_VERSION
    ok, output = harness.criu_check(criu)
    assert ok, output


def test_leave_running_keeps_the_service_running(running):
    for stage in (0, 1):
        dump = running[stage]
        assert sorted(dump.notes["alive_after"]) == sorted(p["pid"] for p in dump.info["processes"])
    # it handled a signal after both dumps: stage 2, one more worker
    assert running["after"]["stage"] == 2
    assert len(running["after"]["processes"]) == 4


def test_dump_without_leave_running_ends_the_service(final):
    assert final.notes["left"] == [], f"pids still there after the dump: {final.notes['left']}"


# -- the process tree ----------------------------------------------------------------------------


def test_processes_match(dumped):
    checkpoint = _open(dumped)
    info = dumped.info
    problems = []
    want = {p["pid"]: p for p in info["processes"]}
    if sorted(checkpoint.pids) != sorted(want):
        problems.append(f"pids {sorted(checkpoint.pids)} != {sorted(want)}")
    main_pid = info["processes"][0]["pid"]
    for pid, facts in want.items():
        try:
            process = checkpoint.process(pid)
        except KeyError:
            continue
        # CRIU records the root's parent as 0 (it is outside the dump)
        ppid = 0 if pid == main_pid else facts["ppid"]
        got = {"ppid": process.ppid, "pgid": process.pgid, "sid": process.sid,
               "tids": [t.tid for t in process.threads], "comm": process.comm,
               "state": process.state_label, "leader-first": process.threads[0].is_leader,
               "argv": list(process.argv or ()),
               "cwd": process.cwd.path if process.cwd else None,
               "exe": process.exe.path if process.exe else None}
        expected = {"ppid": ppid, "pgid": facts["pgid"], "sid": facts["sid"],
                    "tids": facts["tids"], "comm": facts["comm"], "state": "alive",
                    "leader-first": True, "argv": info["argv"],
                    "cwd": facts["cwd"], "exe": facts["exe"]}
        for key in expected:
            if got[key] != expected[key]:
                problems.append(f"{pid} {key}: graph {got[key]!r}, workload {expected[key]!r}")
        env = f"{harness.ENV_MARKER}={dumped.marker}"
        if env not in (process.environ or ()):
            problems.append(f"{pid} environ lacks {env!r}: {process.environ!r}")
    workers = sorted(p["pid"] for p in info["processes"][1:])
    if list(checkpoint.tree.roots) != [main_pid]:
        problems.append(f"roots {checkpoint.tree.roots} != [{main_pid}]")
    if sorted(checkpoint.tree.children(main_pid)) != workers:
        problems.append(f"children {checkpoint.tree.children(main_pid)} != {workers}")
    _fail_on(problems, dumped)


# -- files ----------------------------------------------------------------------------------------

_SOCKET = re.compile(r"socket:\[(\d+)\]$")
_PIPE = re.compile(r"pipe:\[(\d+)\]$")
_MEMFD = re.compile(r"/memfd:(.*) \(deleted\)$")


def _check_fd(fd, facts, info, problems, where):
    """One fd of the graph against the workload's /proc view of it."""
    target, role = facts["target"], facts["role"]
    file = fd.file
    if file is None:
        problems.append(f"{where}: no file object (target {target})")
        return
    details = file.details
    if "flags" in facts and fd.cloexec != bool(facts["flags"] & O_CLOEXEC):
        problems.append(f"{where}: cloexec {fd.cloexec}, /proc flags {facts['flags']:o}")
    if m := _SOCKET.match(target):
        if fd.kind not in ("unix", "inet") or details.get("ino") != int(m.group(1)):
            problems.append(f"{where}: {fd.kind} ino {details.get('ino')}, /proc says {target}")
    elif m := _PIPE.match(target):
        if fd.kind != "pipe" or details.get("pipe_id") != int(m.group(1)):
            problems.append(f"{where}: {fd.kind} {fd.name}, /proc says {target}")
    elif target == "anon_inode:[eventfd]":
        if fd.kind != "eventfd":
            problems.append(f"{where}: {fd.kind}, /proc says {target}")
    elif target == "anon_inode:[eventpoll]":
        if fd.kind != "eventpoll":
            problems.append(f"{where}: {fd.kind}, /proc says {target}")
    elif m := _MEMFD.match(target):
        if fd.kind != "memfd" or details.get("name") != m.group(1):
            problems.append(f"{where}: {fd.kind} {details.get('name')!r}, /proc says {target}")
    elif target.startswith("/"):
        deleted = target.endswith(" (deleted)")
        path = target[: -len(" (deleted)")] if deleted else target
        want_kind = "fifo" if role and role.startswith("fifo") else "file"
        if fd.kind != want_kind or file.path != path:
            problems.append(f"{where}: {fd.kind} {file.path!r}, /proc says {want_kind} {path!r}")
        if want_kind == "file":
            if bool(file.deleted) != deleted:
                problems.append(f"{where}: deleted={file.deleted}, /proc says {target}")
            if "flags" in facts:
                for bit, name in ((O_ACCMODE, "access mode"), (O_APPEND, "O_APPEND")):
                    if (details["flags"] & bit) != (facts["flags"] & bit):
                        problems.append(f"{where}: {name} {details['flags']:o} "
                                        f"vs /proc {facts['flags']:o}")
            if "pos" in facts and details.get("pos") != facts["pos"]:
                problems.append(f"{where}: pos {details.get('pos')}, /proc says {facts['pos']}")
    else:
        problems.append(f"{where}: unexpected /proc target {target}")

    # what the service opened it as
    tcp = info["tcp"]
    if role == "tcp-listen":
        want = ("TCP", "LISTEN", tuple(tcp["listen"]))
        got = (getattr(details.get("proto"), "name", None),
               getattr(details.get("state"), "name", None),
               (details.get("src_addr"), details.get("src_port")))
        if got != want:
            problems.append(f"{where} listener: {got} != {want}")
    elif role in ("tcp-client", "tcp-server"):
        local, remote = (tcp["client"], tcp["listen"]) if role == "tcp-client" \
            else (tcp["server"], tcp["client"])
        want = ("TCP", "ESTABLISHED", tuple(local), tuple(remote))
        got = (getattr(details.get("proto"), "name", None),
               getattr(details.get("state"), "name", None),
               (details.get("src_addr"), details.get("src_port")),
               (details.get("dst_addr"), details.get("dst_port")))
        if got != want:
            problems.append(f"{where} {role}: {got} != {want}")
        if details.get("peer_id") is None:
            problems.append(f"{where} {role}: no peer_id (both ends were dumped)")
    elif role == "udp":
        got = (getattr(details.get("proto"), "name", None),
               (details.get("src_addr"), details.get("src_port")))
        if got != ("UDP", tuple(info["udp"])):
            problems.append(f"{where} udp: {got} != {('UDP', tuple(info['udp']))}")
    elif role == "unix-listen":
        want = ("LISTEN", info["files"]["control.sock"])
        got = (getattr(details.get("state"), "name", None), details.get("path"))
        if got != want or fd.name != want[1]:
            problems.append(f"{where} unix listener: {got}, name {fd.name!r} != {want}")
    elif role == "scratch":
        if not file.deleted:
            problems.append(f"{where}: scratch.tmp not shown deleted")
    elif role == "eventfd":
        if details.get("counter") != 7:
            problems.append(f"{where}: eventfd counter {details.get('counter')} != 7")


def test_fds_match(dumped):
    checkpoint = _open(dumped)
    info = dumped.info
    problems = []
    for facts in info["processes"]:
        process = checkpoint.process(facts["pid"])
        got = {fd.fd: fd for fd in process.fds}
        want = {int(n): f for n, f in facts["fds"].items()}
        if sorted(got) != sorted(want):
            problems.append(f"{facts['pid']} fds {sorted(got)} != /proc {sorted(want)}")
        for number in sorted(set(got) & set(want)):
            _check_fd(got[number], want[number], info, problems, f"{facts['pid']} fd {number}")
    _fail_on(problems, dumped)


def _by_role(checkpoint, info):
    """{(pid, role): Fd} for the fds the service knows the role of."""
    out = {}
    for facts in info["processes"]:
        process = checkpoint.process(facts["pid"])
        for number, f in facts["fds"].items():
            if f["role"]:
                out[(facts["pid"], f["role"])] = process.fd(int(number))
    return out


def test_peers_are_linked(dumped):
    """Both ends of the socketpair and of the TCP connection point at each other;
    the pipe's ends in two processes share one pipe id; epoll watches what it should."""
    checkpoint = _open(dumped)
    info = dumped.info
    main, worker = info["processes"][0]["pid"], info["processes"][1]["pid"]
    fds = _by_role(checkpoint, info)
    client, server = fds[(main, "tcp-client")], fds[(main, "tcp-server")]
    assert client.file.details["peer_id"] == server.file.id
    assert server.file.details["peer_id"] == client.file.id
    ours, theirs = fds[(main, "socketpair-main")], fds[(worker, "socketpair-worker")]
    assert ours.file.details["peer_ino"] == theirs.file.details["ino"]
    assert ours.file.details["peer_id"] == theirs.file.id
    assert theirs.file.details["peer_id"] == ours.file.id
    assert not ours.file.details["external_peer"]
    assert fds[(main, "pipe-read")].file.details["pipe_id"] \
        == fds[(worker, "pipe-write")].file.details["pipe_id"]
    # one open file shared by both processes is one file id, held by both
    log = fds[(main, "log")].file.id
    assert fds[(worker, "log")].file.id == log
    assert {(main, "log"), (worker, "log")} \
        <= {(pid, role) for pid, role in _roles_of(checkpoint, info, log)}
    epoll = fds[(main, "epoll")]
    watched = {target for target, _events, _fd in checkpoint.process(main).epoll_targets(epoll.fd)}
    assert watched == {fds[(main, "eventfd")].fd, ours.fd}


def _roles_of(checkpoint, info, file_id):
    roles = {(p["pid"], int(n)): f["role"] for p in info["processes"] for n, f in p["fds"].items()}
    return [(pid, roles.get((pid, fd))) for pid, fd in checkpoint.holders(file_id)]


def test_deleted_file_contents_are_in_the_dump(dumped):
    checkpoint = _open(dumped)
    main = dumped.info["processes"][0]["pid"]
    scratch = _by_role(checkpoint, dumped.info)[(main, "scratch")].file
    assert scratch.deleted
    ghost = checkpoint.files.ghost(scratch.id)
    assert ghost is not None, f"no ghost contents for {scratch}"
    data = bytearray(ghost.size)
    with open(ghost.image, "rb") as image:
        for offset, length, image_offset in ghost.extents:
            image.seek(image_offset)
            data[offset:offset + length] = image.read(length)
    assert bytes(data) == SCRATCH_TEXT


# -- memory ---------------------------------------------------------------------------------------


def test_memory_matches(dumped):
    """Every marker at the address the workload reported, every region's SHA-256,
    the shared region seen from every process, the heap marker found by search."""
    checkpoint = _open(dumped)
    problems = []
    for marker in dumped.info["markers"]:
        memory = checkpoint.process(marker["pid"]).memory
        text = marker["text"].encode()
        try:
            got = memory.read(marker["address"], len(text))
        except crit_plus.UnavailableError as error:
            got = f"unavailable: {error.why}"
        if got != text:
            mapping = memory.find(marker["address"])
            problems.append(f"{marker['pid']} {marker['name']} at {marker['address']:#x} "
                            f"({mapping.kind if mapping else 'unmapped'}): {got!r} != {text!r}")
    for region in dumped.info["regions"]:
        memory = checkpoint.process(region["pid"]).memory
        digest = hashlib.sha256()
        for _address, chunk in memory.stream(region["address"], region["size"]):
            digest.update(chunk if isinstance(chunk, bytes) else b"<unavailable>")
        if digest.hexdigest() != region["sha256"]:
            problems.append(f"{region['pid']} region {region['name']} at {region['address']:#x}: "
                            "SHA-256 differs")
    main = dumped.info["processes"][0]["pid"]
    heap = next(m for m in dumped.info["markers"] if m["name"] == "heap")
    found = list(checkpoint.process(main).memory.search(heap["text"].encode()))
    if heap["address"] not in found:
        problems.append(f"search for the heap marker found {[hex(a) for a in found]}, "
                        f"not {heap['address']:#x}")
    _fail_on(problems, dumped)


def test_file_mapping_reads_from_root(dumped):
    """data.bin is mapped MAP_SHARED: its pages are not in the images, they come
    from the file; with root='/' the reader gives the file's bytes."""
    checkpoint = _open(dumped, root="/")
    path = dumped.info["files"]["data.bin"]
    main = checkpoint.process(dumped.info["processes"][0]["pid"])
    mapping = next(m for m in main.memory.vmas if m.name == path)
    assert mapping.backing.kind == "file"
    with open(path, "rb") as f:
        want = f.read(mapping.size)
    assert main.memory.read(mapping.start, mapping.size) == want
    with pytest.raises(crit_plus.UnavailableError):
        _open(dumped).process(main.pid).memory.read(mapping.start, 16)


def test_no_error_findings_and_pages_sizes(dumped):
    """A dump CRIU made and can restore has no error findings, and each
    pages-<id>.img is 4096 x its present pages."""
    checkpoint = _open(dumped)
    errors = [f for f in checkpoint.findings if f.severity == crit_plus.ERROR]
    assert errors == []
    for pages in checkpoint.pages_files:
        assert pages.size == pages.expected_size, pages


def test_stage_one_differs_from_stage_zero(running):
    """What the service did between the two dumps shows in the graph."""
    before, after = _open(running[0]), _open(running[1])
    info = running[1].info
    new_worker = info["processes"][-1]["pid"]
    assert new_worker not in before.pids and new_worker in after.pids
    main = info["processes"][0]["pid"]
    paths_after = {fd.file.path for fd in after.process(main).fds if fd.kind == "file"}
    paths_before = {fd.file.path for fd in before.process(main).fds if fd.kind == "file"}
    assert info["files"]["stage-1.txt"] in paths_after - paths_before
    udp = [fd for fd in before.process(main).fds if fd.kind == "inet"
           and getattr(fd.file.details["proto"], "name", "") == "UDP"]
    assert len(udp) == 1
    assert not [fd for fd in after.process(main).fds if fd.kind == "inet"
                and getattr(fd.file.details["proto"], "name", "") == "UDP"]
    stage = next(m for m in info["markers"] if m["name"] == "stage-1")
    assert after.read(main, stage["address"], len(stage["text"])) == stage["text"].encode()
    assert not list(before.process(main).memory.search(stage["text"].encode()))


# -- restore --------------------------------------------------------------------------------------


def test_restore_runs_the_tree_again(criu, final):
    """``criu restore -d`` of an untouched copy of the final dump succeeds; the
    restored tree has the same pids, threads, command line and files, CRIU's
    network lock is lifted, the queued socket bytes are back, and the restored
    service still works (a signal makes it fork a worker and report stage 1)."""
    service, info = final.notes["service"], final.info
    assert final.notes["left"] == []
    copy = harness.pristine_copy(final.directory, final.notes["base"] / "restore-copy")
    ports = harness.tcp_ports(info)
    assert harness.lock_rules(ports), "a final dump with --tcp-established locks the connection"
    harness.restore(criu, copy)
    try:
        _restore_log_is_this_checkpoints(copy)
        pids = [p["pid"] for p in info["processes"]]
        assert harness.wait_until(lambda: all(harness.alive(p) for p in pids), 15), \
            f"restored pids not all alive: {[p for p in pids if not harness.alive(p)]}"
        for facts in info["processes"]:
            pid = facts["pid"]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert f.read().split(b"\0")[:-1] == [a.encode() for a in info["argv"]]
            assert sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")) == facts["tids"]
            assert os.getpgid(pid) == facts["pgid"] and os.getsid(pid) == facts["sid"]
            now = {n: os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
            assert sorted(now, key=int) == sorted(facts["fds"], key=int)
            for n, f in facts["fds"].items():
                kind = lambda t: t.split("[")[0] if "[" in t else t  # noqa: E731 inodes change
                assert kind(now[n]) == kind(f["target"]), (pid, n, now[n], f["target"])
        assert harness.lock_rules(ports) == []
        service.info = info
        after = service.advance(timeout=30)
        assert after["stage"] == 1 and after["processes"][0]["pid"] == pids[0]
        assert len(after["processes"]) == len(pids) + 1
        assert after["pending"] == info["pending"] == {
            "tcp-client": TCP_SERVER_TEXT.decode(), "tcp-server": TCP_CLIENT_TEXT.decode(),
            "socketpair-main": SOCKETPAIR_TEXT.decode()}
        with open(info["files"]["service.log"]) as f:
            assert f.read().endswith("stage 1\n")
    finally:
        left = service.kill()
        assert left == [], f"restored pids survived SIGKILL: {left}"


def _restore_log_is_this_checkpoints(directory):
    """CRIU's own restore log names the dump it read (``Dump CRIU run id``, the run id
    inventory.img records): the log attribution makes it this checkpoint's restore, and
    its dump log the run that wrote the images, each with the outcome CRIU logged."""
    run_id = crit_plus.open_checkpoint(directory).inventory.run_id
    source = resolve(str(directory))
    items = {item.log.name: item for item in source.runs(run_id)}
    dump, restore = items["dump.log"], items["restore.log"]
    assert (dump.role, dump.run.run_id, dump.run.operation, dump.run.outcome) == (
        "dump", run_id, "dump", "succeeded")
    assert (restore.role, restore.run.operation, restore.run.outcome) == (
        "restore", "restore", "succeeded")
    assert restore.run.dump_run_id == run_id and restore.run.run_id not in (None, run_id)
    assert restore.run.operation_from == "log" and restore.run.ended >= dump.run.ended


def test_pipe_data_is_in_the_dump(final):
    """The worker's unread bytes in the pipe are in pipes-data.img (payload after the entry)."""
    data = (final.directory / "pipes-data.img").read_bytes()
    assert PIPE_TEXT in data

