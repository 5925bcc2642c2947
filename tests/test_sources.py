"""Sources: LXD/Incus/LXC names and directories, Podman archives, and what they refuse.

The LXD trees are the real ``lxd-web`` and ``lxd-deb`` fixtures, laid out as
LXD 5.0 wrote them; other layouts (symlinked ``containers/``, projects, LXD
2.0, Incus, LXC) are built in ``tmp_path`` from links into those fixtures.
Podman archives are built here from the real ``service-a`` images.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from crit_plus.sources import (
    ArchiveError,
    ArchiveLimits,
    SourceError,
    parse_name,
    parse_timestamp,
    resolve,
)
from crit_plus.sources.archive import parse_size

from .container_archives import write_compressed
from crit_plus.sources.logs import find_logs, log_kind
from decoders import read_pstree

POOL = "var/lib/lxd/storage-pools/default"
LXC_CONSOLE_ERROR = "lxc.console.path configured on source host but not target"


@pytest.fixture(scope="module")
def web_root(fixture_root):
    """The lxd-web fake root (holds var/lib/lxd and var/log/lxd)."""
    return fixture_root / "lxd-web"


@pytest.fixture(scope="module")
def deb_root(fixture_root):
    """The lxd-deb fake root."""
    return fixture_root / "lxd-deb"


def _tree_state(top):
    """(path, size, mtime) of every file under ``top``: to show nothing was written."""
    return sorted((str(p), p.lstat().st_size, p.lstat().st_mtime_ns)
                  for p in Path(top).rglob("*") if not p.is_dir())


# -- LXD names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, snapshot", [("lxd:web/before", "before"),
                                            ("lxd:web/after", "after")])
def test_lxd_snapshot_by_name(web_root, spec, snapshot):
    source = resolve(spec, lxd_dir=web_root / "var/lib/lxd")
    assert source.kind == "lxd-snapshot" and source.manager == "lxd"
    assert (source.instance, source.snapshot, source.project) == ("web", snapshot, "default")
    assert source.images_dir == web_root / POOL / "containers-snapshots/web" / snapshot / "state"
    assert (source.images_dir / "inventory.img").is_file()
    assert source.backup["container"]["name"] == "web"
    assert source.backup_path == source.images_dir.parent / "backup.yaml"
    assert source.stateful is True  # recorded in containers/web/backup.yaml's snapshots
    assert source.taken_at_source == "backup.yaml"
    assert (source.criu_version, source.kernel) == ("4.2.1", "6.18.44-fc-v669")
    assert not source.findings


def test_snapshot_times_come_from_backup_yaml(web_root):
    lxd_dir = web_root / "var/lib/lxd"
    before = resolve("lxd:web/before", lxd_dir=lxd_dir)
    after = resolve("lxd:web/after", lxd_dir=lxd_dir)
    assert before.taken_at == datetime(2026, 11, 25, 17, 40, 42, 978718, tzinfo=timezone.utc)
    assert after.taken_at > before.taken_at


def test_taken_at_is_the_dumps_not_a_later_restores(fixture_root, tmp_path):
    """service-c was restored after its dump: restore.log (and so the directory's own
    time) is 2 s later than the images.  "taken at" is the dump's end: stats-dump's time
    (CRIU's last image), else inventory.img's, else the directory's, each said."""
    real = resolve(str(fixture_root / "service-c"))
    stats = (fixture_root / "service-c" / "stats-dump").stat().st_mtime
    assert (fixture_root / "service-c" / "restore.log").stat().st_mtime > stats
    assert real.taken_at == datetime.fromtimestamp(stats, timezone.utc)
    assert real.taken_at_source == "stats-dump mtime"
    copy = tmp_path / "service-c"
    shutil.copytree(fixture_root / "service-c", copy)
    later = stats + 3600
    os.utime(copy / "restore.log", (later, later))
    os.utime(copy, (later, later))
    assert resolve(str(copy)).taken_at.timestamp() == stats
    (copy / "stats-dump").unlink()
    os.utime(copy / "inventory.img", (stats - 1, stats - 1))
    os.utime(copy, (later, later))
    source = resolve(str(copy))
    assert (source.taken_at.timestamp(), source.taken_at_source) == (stats - 1,
                                                                     "inventory.img mtime")
    (copy / "inventory.img").unlink()
    os.utime(copy, (later, later))
    source = resolve(str(copy))
    assert (source.taken_at.timestamp(), source.taken_at_source) == (later, "directory mtime")


def test_stateful_stop_by_name(web_root):
    source = resolve("lxd:web", lxd_dir=web_root / "var/lib/lxd")
    assert source.kind == "lxd-instance" and source.snapshot is None
    assert source.images_dir == web_root / POOL / "containers/web/state"
    assert source.backup["container"]["name"] == "web"
    # LXD wrote backup.yaml before the stateful stop: it still says not stateful.
    assert source.stateful is False
    assert [f.code for f in source.findings] == ["stateful-mismatch"]
    assert source.taken_at_source == "stats-dump mtime" and source.taken_at is not None


def test_web_logs_hold_the_console_restore_error(web_root):
    source = resolve("lxd:web", lxd_dir=web_root / "var/lib/lxd")
    names = {log.name: log for log in source.logs}
    assert {"lxc.log", "dump.log", "snapshot_dump_2026-11-25T17:40:42Z.log",
            "snapshot_dump_2026-11-25T17:40:46Z.log"} <= set(names)
    assert any(LXC_CONSOLE_ERROR in line and " ERROR " in line
               for name, line in source.log_errors if name == "lxc.log")
    # CRIU's rlimit line is known noise (sources.logs.HARMLESS), not an error line
    assert "Error (criu/util.c" in (web_root / POOL / "containers/web/state/dump.log").read_text()
    assert not any("Error (criu/util.c" in line for name, line in source.log_errors
                   if name == "dump.log")
    # LXD names its copy of CRIU's log by the second: the stop, in the same second as
    # the "after" snapshot, overwrote that snapshot's copy. The run id says whose it is.
    roles = {item.log.name: item for item in source.runs()}
    assert roles["dump.log"].role == "dump"
    assert roles["dump.log"].copies == ("snapshot_dump_2026-11-25T17:40:46Z.log",)
    assert "snapshot_dump_2026-11-25T17:40:46Z.log" not in roles
    assert roles["snapshot_dump_2026-11-25T17:40:42Z.log"].role == "other"


def test_snapshot_log_copy_is_recognised(web_root):
    before = resolve("lxd:web/before", lxd_dir=web_root / "var/lib/lxd")
    mine = [(item.log.name, item.copies) for item in before.runs() if item.role == "dump"]
    assert mine == [("dump.log", ("snapshot_dump_2026-11-25T17:40:42Z.log",))]


def test_deb_snapshots(deb_root):
    lxd_dir = deb_root / "var/lib/lxd"
    s1 = resolve("lxd:deb/s1", lxd_dir=lxd_dir)
    assert (s1.instance, s1.snapshot, s1.kind) == ("deb", "s1", "lxd-snapshot")
    assert s1.stateful is True  # recorded by s2's copy of backup.yaml (no instance dir here)
    assert s1.taken_at == datetime(2026, 11, 25, 17, 42, 19, 836079, tzinfo=timezone.utc)
    logs = {log.name: log for log in s1.logs}
    dump = logs["snapshot_dump_2026-11-25T17:42:19Z.log"]
    assert dump.run.run_id == s1.criu_run_id and dump.header.criu_version == "4.2.1"
    assert {item.log.name: item.copies for item in s1.runs() if item.role == "dump"} == \
        {"dump.log": ("snapshot_dump_2026-11-25T17:42:19Z.log",)}
    assert dump.header.kernel == "6.18.44-fc-v669" and dump.header.machine == "x86_64"
    assert logs["snapshot_dump_2026-11-25T17:42:27Z.log"].header.criu_version == "4.2.1"
    s2 = resolve("lxd:deb/s2", lxd_dir=lxd_dir)
    assert s2.stateful is None and s2.taken_at_source == "stats-dump mtime"
    assert [f.code for f in s2.findings] == ["snapshot-unrecorded"]


def test_fake_root_from_environment(web_root, monkeypatch):
    monkeypatch.setenv("CRIT_PLUS_ROOT", str(web_root))
    monkeypatch.delenv("LXD_DIR", raising=False)
    source = resolve("lxd:web/after")
    assert source.images_dir == web_root / POOL / "containers-snapshots/web/after/state"
    assert web_root / "var/log/lxd/web" in source.log_dirs


def test_resolving_writes_nothing(web_root):
    before = _tree_state(web_root)
    for spec in ("lxd:web", "lxd:web/before", "lxd:web/after"):
        source = resolve(spec, lxd_dir=web_root / "var/lib/lxd")
        source.logs, source.size  # noqa: B018 (read everything lazily read)
    assert _tree_state(web_root) == before


# -- directories -----------------------------------------------------------------------------

@pytest.mark.parametrize("relative, kind, snapshot", [
    ("containers/web", "lxd-instance", None),
    ("containers/web/state", "lxd-instance", None),
    ("containers-snapshots/web/before", "lxd-snapshot", "before"),
    ("containers-snapshots/web/after/state", "lxd-snapshot", "after"),
])
def test_directory_forms(web_root, relative, kind, snapshot):
    source = resolve(web_root / POOL / relative)
    assert (source.kind, source.manager, source.instance, source.snapshot) == \
        (kind, "lxd", "web", snapshot)
    assert source.images_dir.name == "state"
    assert source.backup is not None and source.backup["container"]["name"] == "web"
    assert web_root / "var/log/lxd/web" in source.log_dirs


def test_plain_image_directory(service_a):
    source = resolve(service_a)
    assert (source.kind, source.manager, source.backup, source.stateful) == \
        ("criu-dir", None, None, None)
    assert source.images_dir == service_a
    assert source.criu_version is None  # this dump.log was written without -v4
    assert [log.name for log in source.logs] == ["dump.log"]
    assert source.logs[0].error_count == 0  # its one Error line is rlimit's known noise


def _link(path, target):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target, target_is_directory=True)
    return path


def test_symlinked_containers_and_snapshots(web_root, tmp_path):
    lxd_dir = tmp_path / "var/lib/lxd"
    _link(lxd_dir / "containers/web", web_root / POOL / "containers/web")
    _link(lxd_dir / "snapshots/web", web_root / POOL / "containers-snapshots/web")
    stop = resolve("lxd:web", lxd_dir=lxd_dir)
    assert stop.images_dir == lxd_dir / "containers/web/state" and stop.kind == "lxd-instance"
    before = resolve("lxd:web/before", lxd_dir=lxd_dir)
    assert before.images_dir == lxd_dir / "snapshots/web/before/state"
    assert before.stateful is True and before.taken_at_source == "backup.yaml"


def test_pool_symlink_is_followed(web_root, tmp_path):
    """/var/lib/lxd/containers/NAME → storage-pools/POOL/containers/NAME, as LXD makes it."""
    lxd_dir = tmp_path / "var/lib/lxd"
    _link(lxd_dir / "storage-pools/fast/containers/web", web_root / POOL / "containers/web")
    _link(lxd_dir / "containers/web", "../storage-pools/fast/containers/web")
    source = resolve("lxd:web", lxd_dir=lxd_dir)
    assert source.images_dir.resolve() == (web_root / POOL / "containers/web/state").resolve()


def test_project_directory_names(web_root, tmp_path):
    lxd_dir = tmp_path / "var/lib/lxd"
    _link(lxd_dir / "storage-pools/default/containers/shop_web", web_root / POOL / "containers/web")
    source = resolve("lxd:web", lxd_dir=lxd_dir, project="shop")
    assert (source.instance, source.project) == ("web", "shop")
    assert "project-mismatch" in [f.code for f in source.findings]
    with pytest.raises(SourceError, match="in project 'other'"):
        resolve("lxd:web", lxd_dir=lxd_dir, project="other")


def test_lxd_2_0_rootfs_state(service_a, tmp_path):
    lxd_dir = tmp_path / "var/lib/lxd"
    _link(lxd_dir / "containers/old/rootfs/state", service_a)
    source = resolve("lxd:old", lxd_dir=lxd_dir)
    assert (source.kind, source.instance) == ("lxd-instance", "old")
    assert source.images_dir == lxd_dir / "containers/old/rootfs/state"
    assert "no-backup-yaml" in [f.code for f in source.findings]


def test_incus_snapshot(web_root, tmp_path, monkeypatch):
    monkeypatch.setenv("CRIT_PLUS_ROOT", str(tmp_path))
    monkeypatch.delenv("INCUS_DIR", raising=False)
    pool = tmp_path / "var/lib/incus/storage-pools/default"
    _link(pool / "containers-snapshots/web/before",
          web_root / POOL / "containers-snapshots/web/before")
    source = resolve("incus:web/before")
    assert (source.kind, source.manager, source.snapshot) == ("incus-snapshot", "incus", "before")


def test_lxc_container(service_a, tmp_path, monkeypatch):
    monkeypatch.setenv("CRIT_PLUS_ROOT", str(tmp_path))
    container = tmp_path / "var/lib/lxc/c1"
    (container / "rootfs").mkdir(parents=True)
    (container / "config").write_text("lxc.uts.name = c1\n")
    (container / "ckpt").mkdir()
    for name in ("inventory.img", "pstree.img"):
        (container / "ckpt" / name).write_bytes((service_a / name).read_bytes())
    source = resolve("lxc:c1")
    assert (source.kind, source.instance, source.images_dir) == ("lxc", "c1", container / "ckpt")
    assert resolve(container / "ckpt").kind == "lxc"


def test_bad_backup_yaml_is_a_finding(service_a, tmp_path):
    owner = tmp_path / "containers/bad"
    _link(owner / "state", service_a)
    (owner / "backup.yaml").write_text("container: [unclosed\n")
    source = resolve(owner)
    assert source.backup is None
    assert [f.code for f in source.findings] == ["bad-backup-yaml"]


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, words", [
    ("lxd:nope", ["no LXD instance 'nope'", "tried:", "containers/nope"]),
    ("lxd:web/nope", ["no snapshot 'nope' of LXD instance 'web'", "containers-snapshots/web/nope"]),
    ("lxd:../etc", ["not a valid LXD name"]),
    ("lxd:", ["name an instance"]),
    ("nothing-here", ["no such file or directory"]),
])
def test_errors_are_one_clear_line(web_root, spec, words):
    with pytest.raises(SourceError) as caught:
        resolve(spec, lxd_dir=web_root / "var/lib/lxd")
    message = str(caught.value)
    assert message.startswith(spec + ":") and "\n" not in message
    for word in words:
        assert word in message


def test_instance_without_state(tmp_path):
    lxd_dir = tmp_path / "lxd"
    (lxd_dir / "containers/cold").mkdir(parents=True)
    with pytest.raises(SourceError, match="has no state/"):
        resolve("lxd:cold", lxd_dir=lxd_dir)


def test_directory_that_is_not_a_checkpoint(web_root, tmp_path):
    with pytest.raises(SourceError, match="not a checkpoint"):
        resolve(web_root)
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    with pytest.raises(SourceError, match="nor a tar checkpoint archive"):
        resolve(junk)


def test_parse_name():
    assert parse_name("lxd:web/before") == ("lxd", "web", "before")
    assert parse_name("incus:web") == ("incus", "web", None)
    assert parse_name("/var/lib/lxd") is None


def test_parse_timestamp():
    assert parse_timestamp("2026-11-25T17:40:42.978718767Z") == \
        datetime(2026, 11, 25, 17, 40, 42, 978718, tzinfo=timezone.utc)
    assert parse_timestamp("2023-01-10T10:00:00+01:00").isoformat() == "2023-01-10T10:00:00+01:00"
    assert parse_timestamp("0001-01-01T00:00:00Z") is None
    assert parse_timestamp("yesterday") is None


# -- Podman / CRI-O archives -----------------------------------------------------------------

CONFIG = {"id": "4f1c", "name": "service", "rootfsImageName": "localhost/service:latest",
          "createdTime": "2026-11-25T17:39:00.5Z",
          "checkpointedTime": "2026-11-25T17:39:26.123456789Z"}


def _add_bytes(tar, name, data, **fields):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


def _rootfs_diff():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as inner:
        _add_bytes(inner, "etc/motd", b"changed\n" * 100)
    return buffer.getvalue()


def _write_archive(path, service_a, extra=None, before=None, checkpoint_dir="checkpoint"):
    """A Podman-layout archive of service-a; ``extra(tar)`` adds members after it."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if before:
            before(tar)
        tar.add(service_a, arcname=checkpoint_dir)
        _add_bytes(tar, "config.dump", json.dumps(CONFIG).encode())
        _add_bytes(tar, "spec.dump", json.dumps({"ociVersion": "1.0.2", "process": {}}).encode())
        _add_bytes(tar, "network.status", b"[]")
        _add_bytes(tar, "deleted.files", json.dumps(["/etc/issue"]).encode())
        _add_bytes(tar, "stats-dump", (service_a / "stats-dump").read_bytes())
        _add_bytes(tar, "rootfs-diff.tar", _rootfs_diff())
        _add_bytes(tar, "volumes/data.tar", b"\0" * 1024)
        if extra:
            extra(tar)
    return write_compressed(path, raw.getvalue())


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A private temp root, so tests can see what extraction leaves behind."""
    directory = tmp_path / "scratch"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tar.zst"])
def test_podman_archive(service_a, tmp_path, scratch, suffix):
    archive = _write_archive(tmp_path / f"service{suffix}", service_a)
    with resolve(archive) as source:
        assert source.kind == "podman-archive" and source.manager is None
        assert source.archive == archive and source.instance == "service"
        workdir = source.images_dir.parent
        assert workdir.parent == scratch
        assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
        assert [entry.pid for entry in read_pstree(source.images_dir / "pstree.img")] == \
            [12525, 12528]
        assert sorted(p.name for p in source.images_dir.iterdir()) == \
            sorted(p.name for p in service_a.iterdir())
        meta = source.metadata
        assert meta["config_dump"]["name"] == "service"
        assert meta["spec_dump"]["ociVersion"] == "1.0.2"
        assert meta["network_status"] == [] and meta["deleted_files"] == ["/etc/issue"]
        assert meta["stats_dump"]["pages_written"] == 3254
        assert meta["rootfs_diff_size"] == len(_rootfs_diff())
        assert not (workdir / "rootfs-diff.tar").exists()
        assert not (workdir / "volumes").exists() and meta["skipped_members"] == 1
        assert source.taken_at == datetime(2026, 11, 25, 17, 39, 26, 123456, tzinfo=timezone.utc)
        assert source.taken_at_source == "config.dump"
    assert not workdir.exists()
    assert list(scratch.iterdir()) == []


def test_archive_with_pre_checkpoint_parent_link(service_a, tmp_path, scratch):
    def extra(tar):
        # its own bytes, not tar.add: once another test has hard-linked the fixture's
        # inventory.img (nlink > 1), tarfile would write a hard link to checkpoint/'s copy
        _add_bytes(tar, "pre-checkpoint/inventory.img", (service_a / "inventory.img").read_bytes())
        link = tarfile.TarInfo("checkpoint/parent")
        link.type, link.linkname = tarfile.SYMTYPE, "../pre-checkpoint"
        tar.addfile(link)

    with resolve(_write_archive(tmp_path / "pre.tar", service_a, extra)) as source:
        parent = source.images_dir / "parent"
        assert parent.is_symlink() and os.readlink(parent) == "../pre-checkpoint"
        assert (parent / "inventory.img").is_file() and source.metadata["pre_checkpoint"]
    assert list(scratch.iterdir()) == []


def _hostile(tar, kind):
    info = tarfile.TarInfo()
    if kind == "absolute":
        info.name = "/tmp/crit-plus-evil"
    elif kind == "dotdot":
        info.name = "checkpoint/../../x"
    elif kind == "symlink":
        info.name, info.type = "checkpoint/core-1.img", tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
    elif kind == "hardlink":
        info.name, info.type = "checkpoint/core-2.img", tarfile.LNKTYPE
        info.linkname = "config.dump"
    elif kind == "device":
        info.name, info.type, info.devmajor, info.devminor = "checkpoint/mem", tarfile.CHRTYPE, 1, 1
    elif kind == "fifo":
        info.name, info.type = "checkpoint/pipe", tarfile.FIFOTYPE
    elif kind == "parent-elsewhere":
        info.name, info.type, info.linkname = "checkpoint/parent", tarfile.SYMTYPE, "/"
    data = b"owned\n" if info.type == tarfile.REGTYPE else None
    if data:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data else None)


@pytest.mark.parametrize("kind, words", [
    ("absolute", ["'/tmp/crit-plus-evil'", "absolute path"]),
    ("dotdot", ["'checkpoint/../../x'", "leaves the archive"]),
    ("symlink", ["'checkpoint/core-1.img'", "symbolic link"]),
    ("hardlink", ["'checkpoint/core-2.img'", "hard link"]),
    ("device", ["'checkpoint/mem'", "device node"]),
    ("fifo", ["'checkpoint/pipe'", "FIFO"]),
    ("parent-elsewhere", ["'checkpoint/parent'", "symbolic link to '/'"]),
])
@pytest.mark.parametrize("where", ["after", "before"])
def test_hostile_archives_are_refused(service_a, tmp_path, scratch, kind, words, where):
    hook = {where: lambda tar: _hostile(tar, kind)}
    archive = _write_archive(tmp_path / "evil.tar", service_a,
                             extra=hook.get("after"), before=hook.get("before"))
    outside = _tree_state(tmp_path)
    with pytest.raises(ArchiveError) as caught:
        resolve(archive)
    message = str(caught.value)
    assert message.startswith("evil.tar: member ") and "\n" not in message
    for word in words:
        assert word in message
    assert list(scratch.iterdir()) == []  # the partial extraction was removed
    assert _tree_state(tmp_path) == outside
    assert not Path("/tmp/crit-plus-evil").exists()


def test_size_limits(service_a, tmp_path, scratch):
    archive = _write_archive(tmp_path / "big.tar", service_a)
    with pytest.raises(ArchiveError, match=r"big.tar: member '.*': refused: .*total limit"):
        resolve(archive, limits=ArchiveLimits(max_total=7 << 20))
    with pytest.raises(ArchiveError, match=r"member 'checkpoint/pages-\d.img': refused: \d+ bytes, "
                                           r"over the limit of 4096"):
        resolve(archive, limits=ArchiveLimits(max_member=4096))
    with pytest.raises(ArchiveError, match="member 'config.dump'"):
        resolve(archive, limits=ArchiveLimits(max_metadata=16))
    assert list(scratch.iterdir()) == []


def test_size_limit_from_environment(service_a, tmp_path, scratch, monkeypatch):
    archive = _write_archive(tmp_path / "big.tar", service_a)
    monkeypatch.setenv("CRIT_PLUS_ARCHIVE_LIMIT", "7M")
    with pytest.raises(ArchiveError, match="total limit of 7340032"):
        resolve(archive)
    assert parse_size("16G") == 16 << 30 and parse_size("64KiB") == 65536
    with pytest.raises(ValueError):
        parse_size("lots")


def test_duplicate_member_is_refused(service_a, tmp_path, scratch):
    archive = _write_archive(tmp_path / "dup.tar", service_a,
                             extra=lambda tar: _add_bytes(tar, "checkpoint/pstree.img", b"x"))
    with pytest.raises(ArchiveError, match="'checkpoint/pstree.img': refused: it appears twice"):
        resolve(archive)
    assert list(scratch.iterdir()) == []


def test_archive_without_checkpoint(service_a, tmp_path, scratch):
    archive = _write_archive(tmp_path / "other.tar", service_a, checkpoint_dir="images")
    with pytest.raises(ArchiveError, match="no checkpoint/ directory"):
        resolve(archive)
    assert list(scratch.iterdir()) == []


def test_truncated_archive(service_a, tmp_path, scratch):
    archive = _write_archive(tmp_path / "cut.tar.gz", service_a)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="cut.tar.gz: cannot read the archive"):
        resolve(archive)
    assert list(scratch.iterdir()) == []


def test_log_kind_names_what_find_logs_finds(fixture_root, tmp_path):
    """The report copies a log directory and names each file's kind by its name
    (log_kind) instead of searching the directory again (find_logs)."""
    directories = [fixture_root / "lxd-web/var/log/lxd/web",
                   fixture_root / "lxd-deb/var/log/lxd/deb"]
    extra = tmp_path / "logs"
    extra.mkdir()
    for name in ("lxc.log.old", "migration_dump_x.log", "restore.log", "console.log",
                 ".hidden_dump.log", "lxc.conf"):
        (extra / name).write_text("x\n")
    for directory in directories + [extra]:
        found = {path.name: kind for path, kind in find_logs([directory]).items()}
        named = {path.name: log_kind(path.name) for path in directory.iterdir()}
        assert found == {name: kind for name, kind in named.items() if kind}, directory
    assert log_kind("lxc.log") == "lxc" and log_kind("snapshot_dump_1.log") == "criu"


def test_unrecorded_snapshots_cost_linear_parses(deb_root, web_root, tmp_path, monkeypatch):
    """Listing an instance with n snapshots no backup.yaml records parses O(n) backup.yaml
    files, not each sibling's copy once per snapshot (n²); what is found is unchanged."""
    from crit_plus.sources import discover, managed

    from . import damage

    parses = []
    load = managed.load_backup

    def counted(path):
        parses.append(Path(path))
        return load(path)

    monkeypatch.setattr(managed, "load_backup", counted)

    def listing(count):
        top = tmp_path / f"n{count}"
        damage.clone(web_root / "var/lib/lxd", top)
        snapshots = top / "storage-pools/default/containers-snapshots/web"
        for index in range(count):  # copies of before: no backup.yaml records them
            damage.clone(snapshots / "before", snapshots / f"u{index:03d}")
        parses.clear()
        found = discover("lxd:", lxd_dir=top)
        shutil.rmtree(top)
        return found, len(parses)

    few, few_parses = listing(4)
    many, many_parses = listing(24)
    unrecorded = [s for s in many.sources if (s.snapshot or "").startswith("u")]
    assert len(unrecorded) == 24 and all(s.stateful is None for s in unrecorded)
    assert all("snapshot-unrecorded" in [f.code for f in s.findings] for s in unrecorded)
    recorded = {s.snapshot: (s.stateful, s.taken_at_source) for s in many.sources}
    assert recorded["before"] == recorded["after"] == (True, "backup.yaml")
    # the old lookup parsed about n² files here (24 x 27 = 648)
    assert many_parses - few_parses <= 3 * (24 - 4) and many_parses <= 3 * 24 + 10
    # a snapshot only a sibling's copy records is still found (lxd-deb: s1 by s2's)
    deb = discover("lxd:", lxd_dir=deb_root / "var/lib/lxd")
    assert {s.snapshot: s.stateful for s in deb.sources if s.snapshot} == \
        {"s1": True, "s2": None}
