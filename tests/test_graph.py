"""The typed checkpoint graph against the real fixtures and FACTS.json.

FACTS.json was computed independently with CRIU's own pycriu; every fixture
must agree with it.  Facts about the service fixtures that FACTS.json does
not hold come from fixtures/README.md (what the service did before the dump).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

import crit_plus
from crit_plus import graph as graph_module
from crit_plus.resources import TtyType
from crit_plus.sources.logs import read_header
from decoders import PAGE_SIZE, FdType, MissingImageError, TaskState, read_fdinfo, read_files

from .oracle import crit_json

SERVICES = ("service-a", "service-b", "service-c", "service-old")


@pytest.fixture(scope="module")
def checkpoints(checkpoint_dirs):
    """Every fixture checkpoint, opened once for this module."""
    return {key: crit_plus.open_checkpoint(path) for key, path in checkpoint_dirs.items()}


def pytest_generate_tests(metafunc):
    if "key" in metafunc.fixturenames:
        import json
        from pathlib import Path

        facts = json.loads((Path(__file__).parent.parent / "fixtures" / "FACTS.json").read_text())
        metafunc.parametrize("key", sorted(facts), ids=lambda k: k.split("/")[0] + ":" +
                             "/".join(k.split("/")[-3:-1]) if "/" in k else k)


# -- agreement with FACTS.json, for every fixture ----------------------------------------------


def test_processes_match_facts(checkpoints, facts, key):
    checkpoint = checkpoints[key]
    expected = facts[key]["processes"]
    assert [p.pid for p in checkpoint.processes] == [p["pid"] for p in expected]
    for process, fact in zip(checkpoint.processes, expected):
        assert process.ppid == fact["ppid"]
        assert (process.pgid, process.sid) == (fact["pgid"], fact["sid"])
        assert [thread.tid for thread in process.threads] == fact["threads"]
        assert process.comm == fact["comm"]
        assert int(process.state) == fact["task_state"]


def test_memory_matches_facts(checkpoints, facts, key):
    checkpoint = checkpoints[key]
    for process, fact in zip(checkpoint.processes, facts[key]["processes"]):
        memory = process.memory
        assert len(process.vmas) == fact["vmas"]
        assert len(memory.runs) == fact["pagemap_entries"]
        assert memory.pages_id == fact["pages_id"]
        by_flags = {str(flags): pages for flags, pages in memory.pages_by_flags().items()}
        assert by_flags == fact["pages_by_flags"]
        assert process.mm.exe_file_id == fact["exe_file_id"]
        assert process.exe is not None and process.exe.id == fact["exe_file_id"]


def test_fds_match_facts(checkpoints, facts, key):
    checkpoint = checkpoints[key]
    for process, fact in zip(checkpoint.processes, facts[key]["processes"]):
        seen = {}
        for fd in process.fds:
            item = {"type": FdType(fd.type).name}
            if fd.type == FdType.REG:
                item["path"] = fd.file.path
                assert fd.name == fd.file.path
            seen[str(fd.fd)] = item
            assert fd.file is not None, f"pid {process.pid} fd {fd.fd} unresolved"
            assert fd.kind == fd.file.kind
        assert seen == fact["fds"]


def test_image_files_and_pages_sizes(checkpoints, facts, key):
    checkpoint = checkpoints[key]
    assert list(checkpoint.image_files) == facts[key]["image_files"]
    sizes = {pages.name: pages.size for pages in checkpoint.pages_files}
    assert sizes == facts[key]["pages_files"]
    # the size of each pages file is 4096 x the present pages its pagemaps list
    present = Counter()
    for process in checkpoint.processes:
        for run in process.memory.runs:
            if run.state == "present":
                present[process.memory.pages_id] += run.npages
    for shmid in checkpoint.shmem_ids:
        table = checkpoint.page_store.table(f"pagemap-shmem-{shmid}.img")
        present[table.pages_id] += sum(r.npages for r in table.runs if r.state == "present")
    for pages in checkpoint.pages_files:
        assert pages.size == PAGE_SIZE * present[pages.pages_id] == pages.expected_size


def test_real_fixtures_have_no_findings(checkpoints, key):
    # every fixture is a real, restorable dump: nothing to report
    assert checkpoints[key].findings == ()


def test_tree_walk_visits_everyone_once(checkpoints, key):
    checkpoint = checkpoints[key]
    walked = [process.pid for _depth, process in checkpoint.walk()]
    assert sorted(walked) == sorted(checkpoint.pids)
    roots = [p.pid for p in checkpoint.processes if p.ppid == 0]
    assert list(checkpoint.tree.roots) == roots
    for depth, process in checkpoint.walk():
        if depth:
            assert process.parent.pid == process.ppid
            assert process in process.parent.children
        else:
            assert process.parent is None


def test_threads_have_cores_comm_and_creds(checkpoints, key):
    for process in checkpoints[key].processes:
        threads = process.threads
        assert threads[0].tid == process.pid and threads[0].is_leader
        for thread in threads:
            assert thread.core is not None
            assert thread.comm
            assert thread.creds is not None
        assert threads[0].state == process.state
        assert all(t.state is None for t in threads[1:])  # only a leader's core has one



def test_creds_are_crits(checkpoints, checkpoint_dirs, key):
    """Every thread's credentials equal what CRIU's own decoder reads from its core."""
    for process in checkpoints[key].processes:
        for thread in process.threads:
            theirs = crit_json(checkpoint_dirs[key] / f"core-{thread.tid}.img")
            creds = theirs["entries"][0]["thread_core"]["creds"]
            ours = thread.creds
            assert [getattr(ours, f) for f in ("uid", "gid", "euid", "egid", "suid", "sgid",
                                               "fsuid", "fsgid")] == \
                [creds[f] for f in ("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid",
                                    "fsgid")], thread.tid
            assert list(ours.cap_eff) == creds["cap_eff"] and \
                list(ours.cap_bnd) == creds["cap_bnd"], thread.tid
            assert list(ours.groups) == creds.get("groups", []), thread.tid

# -- the service: what fixtures/README.md says it did ---------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_service_tree_and_state(checkpoints, name):
    checkpoint = checkpoints[name]
    main = checkpoint.processes[0]
    assert main.ppid == 0 and main.state == TaskState.ALIVE and main.state_label == "alive"
    assert len(main.threads) == 4  # main process with 4 threads
    assert all(child.parent is main for child in main.children)
    assert len(main.children) >= 1  # a forked worker child


@pytest.mark.parametrize("name", SERVICES)
def test_service_cwd_root_exe(checkpoints, name):
    main = checkpoints[name].processes[0]
    workdir = "/srv/app-old" if name == "service-old" else "/srv/app"
    assert main.cwd.path == workdir
    assert main.root.path == "/"
    assert os.path.basename(main.exe.path).startswith("python3")


def test_service_files(checkpoints):
    checkpoint = checkpoints["service-a"]
    main = checkpoint.processes[0]
    by_kind = Counter(fd.kind for fd in main.fds)
    for kind in ("file", "pipe", "fifo", "unix", "inet", "eventfd", "eventpoll", "memfd"):
        assert by_kind[kind] >= 1, kind
    paths = {fd.file.path for fd in main.fds if fd.kind == "file"}
    assert {"/srv/app/service.log", "/srv/app/data.bin", "/srv/app/scratch.tmp"} <= paths

    scratch = next(fd.file for fd in main.fds if fd.file.path == "/srv/app/scratch.tmp")
    assert scratch.deleted and scratch.details["ghost_image"].startswith("ghost-file-")
    ghost = checkpoint.files.ghost(scratch.id)
    assert ghost is not None and ghost.size == scratch.details["size"]
    assert not next(fd.file for fd in main.fds if fd.file.path == "/srv/app/data.bin").deleted

    fifos = [fd.file for fd in main.fds if fd.kind == "fifo"]
    assert len(fifos) == 2 and {f.path for f in fifos} == {"/srv/app/control.fifo"}
    assert len({f.details["pipe_id"] for f in fifos}) == 1

    memfd = next(fd.file for fd in main.fds if fd.kind == "memfd")
    assert memfd.details["name"] == "fixture-memfd" and memfd.name == "/memfd:fixture-memfd"
    assert f"pagemap-shmem-{memfd.details['shmid']}.img" in checkpoint.image_files


def test_service_sockets(checkpoints):
    checkpoint = checkpoints["service-a"]
    main, child = checkpoint.processes[:2]
    unix = [fd for fd in main.fds if fd.kind == "unix"]
    listener = [fd.file for fd in unix if fd.file.path == "/srv/app/control.sock"]
    assert len(listener) == 1 and listener[0].details["state"] == crit_plus.files.SockState.LISTEN
    # the socketpair shared with the child: each end's peer is the other end
    pair = [fd.file for fd in unix if fd.file.details["peer_id"] is not None]
    assert len(pair) == 2
    first, second = pair
    assert first.details["peer_id"] == second.id and second.details["peer_id"] == first.id
    assert first.details["peer_ino"] == second.details["ino"]
    holders = set(checkpoint.holders(first.id)) | set(checkpoint.holders(second.id))
    assert {pid for pid, _fd in holders} == {main.pid, child.pid}

    inet = [fd.file for fd in main.fds if fd.kind == "inet"]
    tcp = [f for f in inet if f.details["proto"] == crit_plus.files.IpProto.TCP]
    udp = [f for f in inet if f.details["proto"] == crit_plus.files.IpProto.UDP]
    assert len(udp) == 1 and udp[0].details["src_addr"] == "127.0.0.1"
    listen = [f for f in tcp if f.details["state"] == crit_plus.files.SockState.LISTEN]
    assert len(listen) == 1 and listen[0].details["src_addr"] == "127.0.0.1"
    connected = [f for f in tcp if f.details["state"] == crit_plus.files.SockState.ESTABLISHED]
    assert len(connected) == 2
    client = next(f for f in connected if f.details["dst_port"] == listen[0].details["src_port"])
    server = next(f for f in connected if f is not client)
    assert client.details["peer_id"] == server.id and server.details["peer_id"] == client.id
    assert client.name == (f"127.0.0.1:{client.details['src_port']}->127.0.0.1:"
                           f"{listen[0].details['src_port']}")


def test_service_epoll_targets(checkpoints):
    main = checkpoints["service-a"].processes[0]
    epoll = next(fd for fd in main.fds if fd.kind == "eventpoll")
    targets = main.epoll_targets(epoll.fd)
    # an epoll instance watching both the eventfd and (one end of) the socketpair
    assert sorted(fd.kind for _n, _events, fd in targets) == ["eventfd", "unix"]
    for number, _events, fd in targets:
        assert fd.fd == number


def test_lxd_files(checkpoints):
    key = next(k for k in checkpoints if k.startswith("lxd-deb") and "/s2/" in k)
    processes = checkpoints[key].processes
    files = [fd.file for p in processes for fd in p.fds]
    watches = [w for f in files if f.kind == "inotify" for w in f.details["watches"]]
    assert watches and all(w["path"] is None or w["path"].startswith("/") for w in watches)
    assert any(w["path"] for w in watches)
    signalfds = [f for f in files if f.kind == "signalfd"]
    assert signalfds and all(f.details["signals"] for f in signalfds)
    timers = [f for f in files if f.kind == "timerfd"]
    assert timers and all("clockid" in f.details for f in timers)
    ttys = [f for f in files if f.kind == "tty"]
    assert ttys and all(f.name and f.name.startswith("/dev/") for f in ttys)
    listeners = [f for f in files if f.kind == "inet" and f.details["src_port"] == 8000]
    assert listeners  # the webapp unit's python3 -m http.server 8000 (s2 only)


# -- what a dump keeps beside processes and files (crit_plus/resources.py) -----------------------


def test_lxd_external_tty_key_is_the_one_liblxc_kept(checkpoints, checkpoint_dirs):
    """The container's console: liblxc wrote its CRIU key to ``tty.info`` at dump time
    (``tty[RDEV:DEV]``); the graph's TtyInfo of the external tty gives the same key, and
    the tty files' details are those of their TtyInfo."""
    keys = [k for k in checkpoints if k.startswith("lxd-")]
    assert keys
    for key in keys:
        checkpoint = checkpoints[key]
        kept = (checkpoint_dirs[key] / "tty.info").read_text().strip()
        external = [t for t in checkpoint.ttys.values() if t.type == TtyType.EXT_TTY]
        assert [t.key for t in external] == [kept], key
        for file in checkpoint.files:
            if file.kind == "tty":
                info = checkpoint.ttys[file.details["tty_info_id"]]
                assert (file.details["tty_type"], file.details["sid"], file.details["rdev"]) \
                    == (info.type, info.sid, info.device)


def test_file_locks_are_held_by_dumped_fds(checkpoints):
    """filelocks.img (the LXD Debian snapshots'): each lock's pid and fd are an fd the
    graph knows; a checkpoint without the image has none."""
    with_locks = [k for k in checkpoints if k.startswith("lxd-deb")]
    assert with_locks
    for key in with_locks:
        checkpoint = checkpoints[key]
        assert checkpoint.file_locks
        for lock in checkpoint.file_locks:
            assert lock.fd in [fd.fd for fd in checkpoint.process(lock.pid).fds]
    assert checkpoints["service-a"].file_locks == ()


def test_memfd_inodes(checkpoints):
    """The service's memfd (``memfd_create("fixture-memfd")``, 1500 bytes written): one
    inode, the one its fd's file names, its contents in its shmem pagemap."""
    checkpoint = checkpoints["service-a"]
    named = [m for m in checkpoint.memfds.values() if m.name == "fixture-memfd"]
    assert len(named) == 1 and named[0].size >= 1500 and not named[0].hugetlb
    memfd = next(fd.file for p in checkpoint.processes for fd in p.fds if fd.kind == "memfd")
    assert memfd.details["inode_id"] == named[0].inode_id
    assert f"pagemap-shmem-{named[0].shmid}.img" in checkpoint.image_files


def test_queues_name_dumped_pipes_and_sockets(checkpoints):
    """pipes-data/fifo-data name the service's pipe and FIFO; the connected TCP sockets
    have their tcp-stream images, the listener none."""
    checkpoint = checkpoints["service-a"]
    pipe_ids = {f.details["pipe_id"] for f in checkpoint.files if f.kind in ("pipe", "fifo")}
    assert checkpoint.queues.pipe_bytes and set(checkpoint.queues.pipe_bytes) <= pipe_ids
    for file in checkpoint.files:
        if file.kind == "inet":
            connected = file.details.get("dst_port") not in (None, 0)
            has_stream = f"tcp-stream-{file.details['ino']:x}.img" in checkpoint.image_files
            assert (checkpoint.queues.tcp(file.details["ino"]) is not None) == has_stream
            assert has_stream == connected, file.name
    assert checkpoint.queues.findings == []


# -- how the graph is built ------------------------------------------------------------------------


def test_open_reads_only_inventory_and_pstree(service_a, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("decoded at open")

    for name in ("read_core", "read_ids", "read_mm", "read_fs", "read_fdinfo"):
        monkeypatch.setattr(graph_module, name, refuse)
    monkeypatch.setattr(graph_module.FileTable, "load", refuse)
    checkpoint = crit_plus.open_checkpoint(service_a)
    assert checkpoint.inventory is not None and len(checkpoint.pstree) == 2
    assert [p.pid for p in checkpoint.processes] == [12525, 12528]  # still nothing decoded
    with pytest.raises(AssertionError, match="decoded at open"):
        checkpoint.processes[0].comm


def test_decoded_once_per_instance_and_not_shared(service_a, monkeypatch):
    calls = Counter()
    real = graph_module.read_mm

    def counting(path):
        calls[path] += 1
        return real(path)

    monkeypatch.setattr(graph_module, "read_mm", counting)
    one = crit_plus.open_checkpoint(service_a)
    for _ in range(3):
        one.processes[0].vmas
        one.processes[0].mm
    assert sum(calls.values()) == 1
    two = crit_plus.open_checkpoint(service_a)
    two.processes[0].mm
    assert sum(calls.values()) == 2  # no module-level cache between instances
    assert one.files is not two.files


def test_fds_agree_with_the_decoders(checkpoints, checkpoint_dirs):
    # every fd of every process resolves to the files.img entry its fdinfo names
    for key, checkpoint in checkpoints.items():
        entries = read_files(checkpoint_dirs[key])
        for process in checkpoint.processes:
            infos = read_fdinfo(os.path.join(checkpoint_dirs[key],
                                              f"fdinfo-{process.ids.files_id}.img"))
            assert [(i.fd, i.id) for i in infos] == [(fd.fd, fd.file.id) for fd in process.fds]
            for fd in process.fds:
                assert entries[fd.file.id].type == fd.file.type


def test_vma_files_resolve(checkpoints):
    for checkpoint in checkpoints.values():
        for process in checkpoint.processes:
            for mapping in process.vmas:
                if mapping.vma.is_file_backed:
                    assert mapping.file is not None and mapping.file.id == mapping.vma.shmid
                else:
                    assert mapping.file is None


def test_open_lxd_snapshot_directory(fixture_root):
    snapshot = (fixture_root / "lxd-web/var/lib/lxd/storage-pools/default/"
                "containers-snapshots/web/after")
    checkpoint = crit_plus.open_checkpoint(snapshot)
    assert checkpoint.directory == str(snapshot / "state")
    assert checkpoint.root == str(snapshot / "rootfs")
    assert crit_plus.open_checkpoint(snapshot / "state").root is None


def test_open_rejects_non_checkpoints(tmp_path):
    with pytest.raises(MissingImageError, match="not a CRIU checkpoint"):
        crit_plus.open_checkpoint(tmp_path)
    with pytest.raises(MissingImageError):
        crit_plus.open_checkpoint(tmp_path / "nowhere")


def test_process_lookup(checkpoints):
    checkpoint = checkpoints["service-a"]
    assert checkpoint.process(12528).ppid == 12525
    with pytest.raises(KeyError):
        checkpoint.process(1)


def test_inventory_and_stats(checkpoints):
    checkpoint = checkpoints["service-a"]
    assert checkpoint.inventory.img_version == 2 and checkpoint.inventory.fdinfo_per_id
    assert checkpoint.stats is not None and checkpoint.stats.fields
    assert checkpoint.parent is None
    # the run id inventory.img records is the one a verbose dump.log starts with
    pairs = [(read_header(os.path.join(c.directory, "dump.log")).run_id, c.inventory.run_id)
             for c in checkpoints.values() if os.path.isfile(os.path.join(c.directory, "dump.log"))]
    verbose = [(logged, ours) for logged, ours in pairs if logged]
    assert verbose and all(logged == ours for logged, ours in verbose)


def test_api_doc_example_runs(service_a, monkeypatch, capsys):
    """docs/api.md's example runs as written against the service-a fixture."""
    import re
    import sys
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    block = re.search(r"## Example.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.setattr(sys, "argv", ["example", str(service_a)])
    exec(compile(block, "docs/api.md", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert out.startswith("2 processes, image version 2\n")
    assert "argv ('python3', '/srv/app/service.py', '/srv/app')" in out
    assert "fd 16: memfd /memfd:fixture-memfd" in out
    assert "unavailable: /usr/bin/python3.11 is not in the images" in out


def test_readme_python_example_runs(fixture_root, monkeypatch, capsys):
    """The README's Python example runs as written (from the fixtures' directory)."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "README.md").read_text()
    block = re.search(r"## Python\n\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(fixture_root)
    exec(compile(block, "README.md", "exec"), {"__name__": "__main__"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["12525 python3 alive 23", "12528 python3 alive 21"]
    assert len(eval(lines[2])) == 16  # noqa: S307 (the bytes the example printed)


def test_equal_page_counts_of_mappings_are_one_read_only_object(checkpoints, key):
    """A mapping's ``pages`` is shared by every mapping of the checkpoint with equal counts
    (in the same order), and cannot be changed; the counts are the pagemap's."""
    checkpoint = checkpoints[key]
    seen: dict[tuple, object] = {}
    for process in checkpoint.processes:
        memory = process.memory
        for mapping in process.vmas:
            counts = mapping.pages
            assert seen.setdefault(tuple(counts.items()), counts) is counts
            table = memory._table
            if table is not None:
                assert counts == table.count_pages(mapping.start, mapping.end)
            with pytest.raises(TypeError):
                counts["present"] = 1
            with pytest.raises(TypeError):
                counts.update(present=1)
            assert dict(counts) == counts
    assert seen


def test_a_process_pagemap_is_the_image_s_records(checkpoints, checkpoint_dirs, key):
    """The graph keeps pagemap entries in arrays; the :class:`Pagemap` it gives back is
    what :func:`read_pagemap` reads, flag sets included."""
    from decoders import read_pagemap

    checkpoint = checkpoints[key]
    for process in checkpoint.processes:
        path = checkpoint_dirs[key] / f"pagemap-{process.pid}.img"
        if not path.exists():
            assert process.pagemap is None
            continue
        read = read_pagemap(path)
        assert process.pagemap == read and process.pagemap.source == read.source
        assert [type(run.flags) for run in process.pagemap.runs] == \
            [type(run.flags) for run in read.runs]
        assert [(run.vaddr, run.npages, run.flags) for run in process.memory.runs] == \
            [(run.vaddr, run.nr_pages, run.flags) for run in read.runs]
