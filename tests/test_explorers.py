"""The explorers (ps, fds, sk, mems, rss) against CRIU's own ``crit x`` and FACTS.json.

On every fixture crit-plus must show the same facts as CRIU 4.2.1's crit
explorers (run from CRIU's source tree, see tests/crit_explorers.py), and be
right where crit is wrong or crashes: a zombie, the CRIU 4.1 pagemap schema,
Debian's crit 3.17 on CRIU 4.2 page counts, a memfd mapping, several roots,
output piped into ``head``.
"""

from __future__ import annotations

import json
import quopri
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import crit_plus
from crit_plus.analysis import explore
from crit_plus.files import KINDS
from decoders import FdType, MapFlags, Prot

from . import crit_explorers
from .cli import run_cli
from .synth import PRESENT, CheckpointBuilder, proc, run, vma

FACTS = json.loads((Path(__file__).parent.parent / "fixtures" / "FACTS.json").read_text())
KEYS = sorted(FACTS)
IDS = [key.split("/")[0] + (":" + "/".join(key.split("/")[-3:-1]) if "/" in key else "")
       for key in KEYS]
NEWER_SCHEMA = [key for key in KEYS if key != "service-old"]  # CRIU 4.2: nr_pages in field 5

needs_crit = pytest.mark.skipif(crit_explorers.available() is not None,
                                reason=crit_explorers.available() or "")


@pytest.fixture(scope="module")
def checkpoints(checkpoint_dirs):
    """Every fixture checkpoint, opened once for this module."""
    return {key: crit_plus.open_checkpoint(path) for key, path in checkpoint_dirs.items()}


# -- the same facts as crit's explorers, on every fixture ------------------------------------------


@needs_crit
@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_ps_equals_crit(checkpoints, checkpoint_dirs, key):
    crit = crit_explorers.parse_ps(crit_explorers.run("ps", checkpoint_dirs[key]))
    ours = [(row.pid, row.pgid, row.sid, row.depth, row.comm)
            for row in explore.ps_rows(checkpoints[key], argv=False)]
    assert ours == crit


def _crit_and_ours(what, directory, checkpoint, table):
    """crit's ``x WHAT`` parsed, and crit-plus's table: both of the same processes."""
    crit = getattr(crit_explorers, f"parse_{what}")(crit_explorers.run(what, directory))
    ours = table(checkpoint)
    assert sorted(crit) == sorted(item.pid for item in ours)
    return crit, ours


def _unix_name(text):
    raw = quopri.decodestring(text.encode())
    if raw.startswith(b"\0"):
        return "@" + raw[1:].decode()
    return raw.rstrip(b"\0").decode()


def _check_fd(crit_text, row):
    """One fd as crit prints it against crit-plus's row."""
    generic = crit_text.rpartition(".")
    if row.kind == "file":
        assert crit_text == row.name
    elif row.kind == "pipe":
        assert crit_text == f"pipe[{row.details['pipe_id']}]"
    elif row.kind == "unix":
        inner = crit_text[len("unix["):-1]  # unix[INO (PEER) NAME]
        head, _sep, rest = inner.partition(")")
        ino, peer = head.split(" (")
        name = rest.strip() or None
        assert int(ino) == row.details["ino"]
        assert int(peer) == (row.details["peer_ino"] or 0)
        assert (_unix_name(name) if name else None) == row.details["path"]
    else:  # crit prints TYPE.id for every other kind
        assert generic[2].isdigit(), crit_text
        assert int(generic[2]) == row.file_id
        assert KINDS[FdType[generic[0]]] == row.kind


@needs_crit
@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_fds_equal_crit(checkpoints, checkpoint_dirs, key):
    crit, table = _crit_and_ours("fds", checkpoint_dirs[key], checkpoints[key], explore.fd_table)
    checked = 0
    for item in table:
        theirs = crit[item.pid]
        assert sorted(k for k in theirs if isinstance(k, int)) == [row.fd for row in item.fds]
        for row in item.fds:
            _check_fd(theirs[row.fd], row)
            checked += 1
        assert theirs["cwd"] == item.cwd.name and theirs["root"] == item.root.name
    assert checked > 0


def _crit_vma_name(text):
    """(name, shared, pgoff, irregular) from crit's text after the protection."""
    irregular = text.endswith(" *")
    text = text[:-2] if irregular else text
    shared = text.endswith(" (s)")
    text = text[:-4] if shared else text
    name, _sep, offset = text.partition(" + ")
    return name, shared, int(offset, 16) if offset else 0, irregular


@needs_crit
@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_mems_equal_crit(checkpoints, checkpoint_dirs, key):
    crit, table = _crit_and_ours("mems", checkpoint_dirs[key], checkpoints[key],
                                 explore.vma_table)
    memfds = 0
    for item in table:
        stacks = 0
        exe, vmas = crit[item.pid]
        assert exe == item.exe
        assert [(start, end) for start, end, _p, _n in vmas] == \
            [(row.start, row.end) for row in item.vmas]
        for (_start, _end, prot, text), row in zip(vmas, item.vmas):
            assert prot == Prot(row.prot).text()
            name, shared, pgoff, _irregular = _crit_vma_name(text)
            if row.kind in ("file", "file-shared"):
                assert (name, shared, pgoff) == (row.name, row.kind == "file-shared", row.pgoff)
            elif row.kind == "memfd":  # crit looks for a regular file and gives up
                assert name == "unknown path" and row.name.startswith("/memfd:")
                memfds += 1
            elif row.kind == "stack":  # crit: [stack?] for MAP_GROWSDOWN; /proc: [stack]
                assert name == "[stack?]" and row.flags & MapFlags.GROWSDOWN
                assert row.name in ("[stack]", None)
                stacks += row.name == "[stack]"
            elif row.kind in ("vdso", "vsyscall"):
                assert name == f"[{row.kind}]" == row.name
            elif row.kind == "shared":
                assert name.startswith("shmem[")
            else:
                assert name != "[stack?]"  # every growing-down VMA is a stack
        assert stacks == 1, "one VMA holds mm.start_stack: /proc's [stack]"
    if key.startswith("service"):
        assert memfds, "the service maps a memfd"


@needs_crit
@pytest.mark.parametrize("key", NEWER_SCHEMA, ids=[IDS[KEYS.index(k)] for k in NEWER_SCHEMA])
def test_rss_equals_crit(checkpoints, checkpoint_dirs, key):
    crit = crit_explorers.parse_rss(crit_explorers.run("rss", checkpoint_dirs[key]))
    for process in checkpoints[key].processes:
        ours = [(r.vaddr, r.npages) for r in process.memory.runs]
        assert crit[process.pid] == ours
        rss = explore.process_rss(process)
        assert rss.present + rss.parent + rss.lazy == sum(n for _vaddr, n in crit[process.pid])


# -- where crit is wrong or crashes ----------------------------------------------------------------


@needs_crit
def test_crit_rss_crashes_on_the_older_schema_we_do_not(checkpoints, checkpoint_dirs, facts):
    # CRIU 4.1 dumps keep the page count in field 2; crit 4.2.1 reads only field 5
    with pytest.raises(KeyError, match="nr_pages"):
        crit_explorers.run("rss", checkpoint_dirs["service-old"])
    for process, fact in zip(checkpoints["service-old"].processes,
                             facts["service-old"]["processes"]):
        rss = explore.process_rss(process)
        assert rss.present == sum(fact["pages_by_flags"].values()) > 0


DEBIAN_CRIT = shutil.which("crit") or "/usr/bin/crit"


@pytest.mark.skipif(not Path(DEBIAN_CRIT).exists(), reason="no distribution crit installed")
def test_old_crit_reads_zero_pages_from_criu_42_we_read_them(checkpoint_dirs, facts):
    version = subprocess.run([DEBIAN_CRIT, "--version"], capture_output=True, text=True)
    if version.returncode == 0:  # crit learnt --version in CRIU 3.18, with the newer schema
        pytest.skip(f"{DEBIAN_CRIT} is not an old crit ({version.stdout.strip()})")
    directory = checkpoint_dirs["service-a"]
    text = subprocess.run([DEBIAN_CRIT, "x", str(directory), "rss"], capture_output=True,
                          text=True, timeout=120).stdout
    theirs = crit_explorers.parse_rss(text)
    assert theirs and all(n == 0 for runs in theirs.values() for _vaddr, n in runs)
    result = run_cli("rss", directory, "--format", "json")
    ours = {item["pid"]: item["present"] for item in json.loads(result.stdout)}
    assert ours == {p["pid"]: sum(p["pages_by_flags"].values())
                    for p in facts["service-a"]["processes"]}


@pytest.fixture
def with_zombie(tmp_path):
    """A checkpoint whose second process is a zombie (only its core image)."""
    builder = CheckpointBuilder(tmp_path / "zombie")
    builder.inventory()
    builder.pstree([proc(1), proc(2, ppid=1)])
    base = 0x10000
    builder.process(1, vmas=[vma(base, base + 0x4000)], runs=[run(base, 2, PRESENT)],
                    comm="parent")
    builder.zombie(2, comm="defunct", exit_code=3)
    builder.finish()
    return builder.directory


@needs_crit
def test_crit_crashes_on_a_zombie_we_show_it(with_zombie):
    with pytest.raises(FileNotFoundError, match="ids-2.img"):
        crit_explorers.run("fds", with_zombie)
    with pytest.raises(FileNotFoundError, match="mm-2.img"):
        crit_explorers.run("mems", with_zombie)
    ps = json.loads(run_cli("ps", with_zombie, "-f", "json").stdout)
    assert [(p["pid"], p["state"], p["argv"]) for p in ps] == [(1, "alive", None),
                                                                (2, "zombie", None)]
    for command in ("fds", "mems", "rss"):
        result = run_cli(command, with_zombie)
        assert result.returncode == 0, result.stderr
        lines = [line for line in result.stdout.splitlines() if line.startswith("2 ")]
        assert lines and "zombie" in lines[0] or command == "rss", (command, result.stdout)
    rss = json.loads(run_cli("rss", with_zombie, "-f", "json").stdout)
    assert rss[1]["pid"] == 2 and rss[1]["total"] == 0 and rss[1]["state"] == "zombie"
    read = run_cli("mem", "read", with_zombie, "2", "10000")
    assert read.returncode == 3  # no bytes there, not a damaged image (1)
    assert read.stderr.strip() == "crit-plus: error: pid 2 holds no bytes at 0x10000-0x10100: " \
                                  "it is a zombie, and CRIU keeps no memory of a zombie"


@needs_crit
def test_crit_shows_one_root_we_show_all(tmp_path):
    builder = CheckpointBuilder(tmp_path / "roots")
    builder.inventory()
    builder.pstree([proc(1), proc(5)])
    builder.process(1, comm="first")
    builder.process(5, comm="second")
    builder.finish()
    crit = crit_explorers.parse_ps(crit_explorers.run("ps", builder.directory))
    assert [row[0] for row in crit] == [5]
    ours = json.loads(run_cli("ps", builder.directory, "-f", "json").stdout)
    assert [(p["pid"], p["depth"]) for p in ours] == [(1, 0), (5, 0)]


@pytest.fixture
def many_vmas(tmp_path):
    """One process with 6000 VMAs: enough text to outgrow a pipe's buffer."""
    builder = CheckpointBuilder(tmp_path / "many")
    builder.inventory()
    builder.pstree([proc(1)])
    vmas = [vma(0x100000 + i * 0x2000, 0x101000 + i * 0x2000) for i in range(6000)]
    builder.process(1, vmas=vmas)
    builder.finish()
    return builder.directory


def _first_line_then_close(command):
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.readline()
    process.stdout.close()
    error = process.stderr.read().decode()
    process.wait(timeout=120)
    return first, error, process.returncode


@needs_crit
def test_piped_into_head_crit_breaks_we_end_quietly(many_vmas):
    first, error, _code = _first_line_then_close(crit_explorers.command("mems", many_vmas))
    assert first.strip() == b"1"
    assert "BrokenPipeError" in error
    for command in ("mems", "fds", "rss", "ps", "summarize"):
        first, error, code = _first_line_then_close(
            [sys.executable, "-m", "crit_plus", command, str(many_vmas)])
        assert first and error == "" and code == 0, (command, error)


# -- against FACTS.json (independent of crit) ------------------------------------------------------


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_explorers_match_facts(checkpoints, facts, key):
    checkpoint = checkpoints[key]
    expected = {p["pid"]: p for p in facts[key]["processes"]}
    rows = explore.ps_rows(checkpoint)
    assert sorted(row.pid for row in rows) == sorted(expected)
    for row in rows:
        fact = expected[row.pid]
        assert (row.ppid, row.pgid, row.sid, row.comm) == (fact["ppid"], fact["pgid"],
                                                            fact["sid"], fact["comm"])
        assert row.threads == len(fact["threads"]) and row.state == "alive"
        assert row.argv and row.argv[0]  # every real process has a command line
    for item in explore.rss_table(checkpoint):
        fact = expected[item.pid]
        assert item.vmas == fact["vmas"]
        assert item.total == sum(fact["pages_by_flags"].values())
        assert sum(kind.total for kind in item.by_kind) == item.total
        assert sum(kind.vmas for kind in item.by_kind) == item.vmas
    for item in explore.fd_table(checkpoint):
        fds = {str(row.fd): row for row in item.fds}
        assert sorted(fds) == sorted(expected[item.pid]["fds"])
        for number, fact in expected[item.pid]["fds"].items():
            assert fds[number].kind == KINDS[FdType[fact["type"]]]
            if "path" in fact:
                assert fds[number].name == fact["path"]
    for item in explore.vma_table(checkpoint):
        assert len(item.vmas) == expected[item.pid]["vmas"]


# -- what crit does not show -----------------------------------------------------------------------


def test_fds_say_what_users_recognise(service_a):
    result = run_cli("fds", service_a, "--format", "json")
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    main, worker = table[0], table[1]
    by_kind = {}
    for row in main["fds"]:
        by_kind.setdefault(row["kind"], []).append(row)
    assert any(r["description"].endswith("scratch.tmp (deleted)") for r in by_kind["file"])
    assert any("fixture-memfd" in r["description"] for r in by_kind["memfd"])
    assert by_kind["eventfd"][0]["description"].startswith("eventfd count=")
    epoll = by_kind["eventpoll"][0]
    assert "anon_inode:[eventfd]" in epoll["description"]
    assert {t["fd"] for t in epoll["targets"]} <= {r["fd"] for r in main["fds"]}
    pipe = by_kind["pipe"][0]
    assert f"pipe:[{pipe['details']['pipe_id']}]" in pipe["description"]
    assert f"{worker['pid']}:" in pipe["description"]  # the worker holds the other end
    unix_pair = [r for r in by_kind["unix"] if r["details"]["peer_ino"]]
    assert unix_pair and all(r["peers"] for r in unix_pair)
    fifo = by_kind["fifo"]
    assert {r["mode"] for r in fifo} == {"r", "w"}
    assert main["cwd"]["name"] == "/srv/app" and main["root"]["name"] == "/"
    tree = run_cli("fds", service_a, "--format", "tree")
    assert tree.returncode == 0 and "├─ cwd" in tree.stdout
    one = json.loads(run_cli("fds", service_a, str(worker["pid"]), "-f", "json").stdout)
    assert [item["pid"] for item in one] == [worker["pid"]]


def test_sk_pairs_sockets_across_processes(service_a):
    rows = json.loads(run_cli("sk", service_a, "-f", "json").stdout)
    by_ino = {row["ino"]: row for row in rows}
    for row in rows:
        if row["family"] == "unix" and row["peer_ino"]:
            peer = by_ino[row["peer_ino"]]
            assert peer["peer_ino"] == row["ino"]
            assert row["peer_holders"] == peer["holders"]
    tcp = [row for row in rows if row["proto"] == "tcp" and row["state"] == "established"]
    assert len(tcp) == 2
    assert tcp[0]["local"] == tcp[1]["remote"] and tcp[1]["local"] == tcp[0]["remote"]
    assert sum(row["recv_queue"] or 0 for row in tcp) > 0  # tcp-stream-*.img holds queued data
    table = run_cli("sk", service_a, "--family", "unix")
    assert "/srv/app/control.sock" in table.stdout and "inet" not in table.stdout


def test_sk_names_netlink_protocols(checkpoint_dirs):
    key = next(k for k in KEYS if k.startswith("lxd-deb"))
    result = run_cli("sk", checkpoint_dirs[key], "--family", "netlink")
    assert "kobject_uevent" in result.stdout and "audit" in result.stdout


def test_mems_like_proc_maps(service_a, checkpoints):
    process = checkpoints["service-a"].processes[0]
    result = run_cli("mems", service_a, str(process.pid))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[2].split()[1:] == ["exe", "-", "-", "-", "-", "-", "-", "-", "-",
                                    process.exe.name]
    heap = next(m for m in process.vmas if m.kind == "heap")
    line = next(ln for ln in lines if ln.split()[1] == f"{heap.start:08x}-{heap.end:08x}")
    assert "[heap]" in line and "rw-p" in line
    data = json.loads(run_cli("mems", service_a, str(process.pid), "-f", "json").stdout)
    vmas = data[0]["vmas"]
    assert len(vmas) == len(process.vmas)
    assert sum(v["pages"]["present"] for v in vmas) == process.memory.pages_by_kind()["present"]
    shared = [v for v in vmas if v["shared"] is not None]
    assert shared and all(v["perms"].endswith("s") for v in shared)


def test_rss_tree_and_totals(service_a, checkpoints):
    result = run_cli("rss", service_a, "--format", "tree")
    assert result.returncode == 0
    assert "├─ heap" in result.stdout or "└─ heap" in result.stdout
    data = json.loads(run_cli("rss", service_a, "-f", "json").stdout)
    for item, process in zip(data, checkpoints["service-a"].processes):
        assert item["total"] == sum(process.memory.pages_by_kind().values())


def test_fds_name_signals_clocks_and_watches(checkpoint_dirs):
    """systemd's signalfds list signal names (real-time ones as numbers), its timerfds
    name their clock, and one inotify watch is "1 watch"; the JSON keeps the numbers."""
    key = next(k for k in KEYS if k.endswith("deb/s1/state"))
    table = json.loads(run_cli("fds", checkpoint_dirs[key], "-f", "json").stdout)
    rows = [row for item in table for row in item["fds"]]
    by_kind = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    assert by_kind["signalfd"] and by_kind["timerfd"] and by_kind["inotify"]
    for row in by_kind["signalfd"]:
        names = [signal.Signals(n).name[3:] if n < 32 else str(n)
                 for n in row["details"]["signals"]]
        assert row["description"] == "signalfd: " + ",".join(names)
    assert any("TERM" in row["description"] for row in by_kind["signalfd"])
    clocks = {time.CLOCK_REALTIME: "realtime", time.CLOCK_MONOTONIC: "monotonic",
              time.CLOCK_BOOTTIME: "boottime"}
    for row in by_kind["timerfd"]:
        assert row["description"] == f"timerfd ({clocks[row['details']['clockid']]} clock)"
    for row in by_kind["inotify"]:
        count = len(row["details"]["watches"])
        assert row["description"] == f"inotify: {count} {'watch' if count == 1 else 'watches'}"
    assert any(len(row["details"]["watches"]) == 1 for row in by_kind["inotify"])


def test_ps_reads_command_lines_and_env_only_on_request(checkpoint_dirs, service_a):
    key = next(k for k in KEYS if k.endswith("deb/s2/state"))
    rows = json.loads(run_cli("ps", checkpoint_dirs[key], "-f", "json").stdout)
    by_comm = {row["comm"]: row for row in rows}
    assert by_comm["python3"]["argv"][:3] == ["/usr/bin/python3", "-m", "http.server"]
    # sshd rewrote its title over the end of argv: read on, as /proc/PID/cmdline does
    assert by_comm["sshd"]["argv"][0].startswith("sshd: /usr/sbin/sshd -D [listener]")
    assert all("environ" not in row for row in rows)
    with_env = json.loads(run_cli("ps", service_a, "--env", "-f", "json").stdout)
    assert any(item.startswith("PATH=") for item in with_env[0]["environ"])
    table = run_cli("ps", service_a, "--env")
    assert "environment of" in table.stdout


def test_unknown_pid_is_a_usage_error(service_a):
    result = run_cli("fds", service_a, "999999")
    assert result.returncode == 2
    assert "no process 999999" in result.stderr


def test_control_characters_in_names_are_escaped(tmp_path):
    builder = CheckpointBuilder(tmp_path / "evil")
    builder.inventory()
    builder.pstree([proc(1)])
    evil_file = builder.add_reg("/tmp/log\n\x1b[2Jfake prompt$ ", size=0)
    base = 0x10000
    builder.process(1, vmas=[vma(base, base + 0x1000)], runs=[run(base, 1, PRESENT)],
                    comm="x\x1b]0;owned\x07", exe="/usr/bin/\x1b[31mred",
                    fds=[(3, evil_file, FdType.REG)])
    builder.finish()
    for command in ("ps", "fds", "mems", "rss", "summarize"):
        formats = ("table", "tree") if command in ("ps", "fds", "rss", "summarize") else ("table",)
        for fmt in formats:
            result = run_cli(command, builder.directory, "-f", fmt)
            assert result.returncode == 0, (command, result.stderr)
            assert not set(result.stdout) & {"\x1b", "\x07", "\r"}, (command, fmt)
            assert "\\x1b" in result.stdout, (command, fmt)
    fds = run_cli("fds", builder.directory)
    line = next(ln for ln in fds.stdout.splitlines() if ln.split()[:2] == ["1", "3"])
    assert "/tmp/log\\n\\x1b[2Jfake prompt$" in line
    data = json.loads(run_cli("fds", builder.directory, "-f", "json").stdout)
    assert data[0]["fds"][0]["name"] == "/tmp/log\n\x1b[2Jfake prompt$ "  # JSON keeps the value


@pytest.mark.parametrize("command", ["ps", "fds", "sk", "mems", "rss"])
def test_explorers_say_when_the_images_have_errors(command, fixture_root, tmp_path):
    """The explorers show no findings: on damaged images they still answer (exit 0) and
    say once on stderr that the rows may be incomplete; on whole ones they say nothing."""
    copy = tmp_path / "copy"
    shutil.copytree(fixture_root / "service-a", copy)
    (copy / "core-12528.img").chmod(0o644)
    (copy / "core-12528.img").unlink()
    damaged = run_cli(command, copy)
    assert damaged.returncode == 0 and damaged.stdout
    assert damaged.stderr == (f"crit-plus: note: 1 error in the images of {copy} "
                              "(core-12528.img), so this may be incomplete: `crit-plus "
                              "validate` says which\n")
    whole = run_cli(command, fixture_root / "service-a")
    assert whole.returncode == 0 and whole.stderr == ""
