"""Which log belongs to which CRIU run (crit_plus.sources.runs): the rule on the real
fixtures' logs and, for what no fixture holds (a restore naming its dump's run id, a
failed or cut-short run, a restore before the dump), on logs written line for line as
CRIU 4.2.1 and liblxc write them (log.c, cr-restore.c, image.c, lxc's criu.c)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from crit_plus.sources import resolve
from crit_plus.sources.logs import read_log
from crit_plus.sources.runs import Subject, attribute, manager_lines, operation_of_name, read_run

DUMP_ID = "a9908a71-6d2c-4e15-be7c-327fe6298e00"
OTHER_ID = "806c06c5-bdf3-4d45-949e-df30c2fbcaae"
RESTORE_ID = "6007d0b8-f295-4a76-abe9-83d5a8684294"
WRITTEN = datetime(2026, 11, 25, 17, 40, 42, tzinfo=timezone.utc)
LXD = "var/lib/lxd/storage-pools/default"


def _header(run_id):
    return (f"(00.000000) CRIU run id = {run_id}\n"
            "(00.000061) Version: 4.2.1 (gitid 0)\n"
            "(00.000072) Running on vm Linux 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0 x86_64\n")


def dump_log(run_id, end="(00.263879) Dumping finished successfully\n"):
    return (_header(run_id) + "(00.027195) Dumping processes (pid: 24375 comm: systemd)\n"
            + end)


def restore_log(run_id, dump_id, end="(00.071483) Restore finished successfully. "
                                     "Tasks resumed.\n"):
    dumped = f"(00.059501) Dump CRIU run id = {dump_id}\n" if dump_id else ""
    return _header(run_id) + dumped + "(00.059579) Will restore in 0 namespaces\n" + end


def write(path, text, when=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if when is not None:
        os.utime(path, (when.timestamp(), when.timestamp()))
    return path


def logs_of(*paths):
    return [read_log(path, "lxc" if path.name.startswith("lxc.log") else "criu")
            for path in paths]


def roles(items):
    return {item.log.name: item.role for item in items}


def test_operation_outcome_and_time_from_the_log(tmp_path):
    run = read_run(write(tmp_path / "x.log", restore_log(RESTORE_ID, DUMP_ID)), RESTORE_ID)
    assert (run.operation, run.operation_from, run.outcome) == ("restore", "log", "succeeded")
    assert run.dump_run_id == DUMP_ID and run.verbose and run.ended_from == "mtime"
    failed = write(tmp_path / "y.log", restore_log(RESTORE_ID, DUMP_ID,
                                                   "(00.1) Error (criu/cr-restore.c:2331): "
                                                   "Restoring FAILED.\n"))
    assert read_run(failed, None).outcome == "failed"
    cut = write(tmp_path / "z.log", dump_log(DUMP_ID, ""))
    assert read_run(cut, None).outcome == "cut short"
    lxd = write(tmp_path / "snapshot_dump_2026-11-25T17:40:42Z.log", dump_log(DUMP_ID))
    run = read_run(lxd, DUMP_ID)
    assert (run.operation, run.outcome, run.ended, run.ended_from) == (
        "dump", "succeeded", WRITTEN, "name")
    quiet = write(tmp_path / "pre-dump.log", "Error (criu/util.c:1534): rlimit: ...\n")
    run = read_run(quiet, None)
    assert (run.operation, run.operation_from, run.outcome, run.verbose) == (
        "pre-dump", "name", "no failure logged", False)


@pytest.mark.parametrize("name,operation", [
    ("restore.log", "restore"), ("dump.log", "dump"), ("snapshot_dump_T.log", "dump"),
    ("migration_pre-dump_T.log", "pre-dump"), ("migration_restore_T.log", "restore"),
    ("lazy-pages.log", "lazy-pages"), ("page-server.log", "page-server"),
    ("check.log", "check"), ("lxc.log", None)])
def test_operation_of_name(name, operation):
    assert operation_of_name(name) == operation


def test_run_ids_decide(tmp_path):
    images, logs = tmp_path / "images", tmp_path / "log"
    paths = [write(images / "dump.log", dump_log(DUMP_ID)),
             write(logs / "snapshot_dump_2026-11-25T17:40:42Z.log", dump_log(DUMP_ID)),
             write(logs / "snapshot_dump_2026-11-25T17:40:46Z.log", dump_log(OTHER_ID)),
             write(logs / "snapshot_restore_2026-11-25T17:41:00Z.log",
                   restore_log(RESTORE_ID, DUMP_ID)),
             write(logs / "migration_restore_2026-11-25T17:41:05Z.log",
                   restore_log(RESTORE_ID[::-1], OTHER_ID))]
    items = attribute(logs_of(*paths), Subject(DUMP_ID, images, WRITTEN, in_place=False))
    assert roles(items) == {"dump.log": "dump",
                            "snapshot_dump_2026-11-25T17:40:46Z.log": "other",
                            "snapshot_restore_2026-11-25T17:41:00Z.log": "restore",
                            "migration_restore_2026-11-25T17:41:05Z.log": "other"}
    assert items[0].copies == ("snapshot_dump_2026-11-25T17:40:42Z.log",)
    # the same logs seen from the other checkpoint
    items = attribute(logs_of(*paths), Subject(OTHER_ID, images, WRITTEN, in_place=True))
    assert roles(items)["dump.log"] == "other"
    assert roles(items)["migration_restore_2026-11-25T17:41:05Z.log"] == "restore"


def test_a_failed_restore_of_this_checkpoint(tmp_path):
    images = tmp_path / "images"
    failed = write(tmp_path / "log/snapshot_restore_T.log", restore_log(
        RESTORE_ID, DUMP_ID, "(00.2) Error (criu/cr-restore.c:2331): Restoring FAILED.\n"))
    item, = attribute(logs_of(failed), Subject(DUMP_ID, images, WRITTEN, in_place=False))
    assert item.role == "restore" and item.failed_restore_lines == (
        "(00.2) Error (criu/cr-restore.c:2331): Restoring FAILED.",)


def test_without_run_ids_the_images_directory_decides(tmp_path):
    """CRIU at its default level writes no header: the same bytes in dump.log and
    restore.log are two runs, the dump and a restore of this directory."""
    text = "Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self\n"
    images = tmp_path / "images"
    paths = [write(images / "dump.log", text), write(images / "restore.log", text),
             write(tmp_path / "elsewhere/dump.log", text)]
    items = attribute(logs_of(*paths), Subject(DUMP_ID, images, WRITTEN, in_place=True))
    assert [item.role for item in items] == ["dump", "restore", "unknown"]
    assert all(item.copies == () for item in items)


LXC_LINES = (
    "lxc web {t} ERROR    criu - ../src/lxc/criu.c:exec_criu:467 - Invalid argument - "
    "lxc.console.path configured on source host but not target\n"
    "lxc web {t} ERROR    criu - ../src/lxc/criu.c:do_restore:1038 - Invalid argument - "
    "Failed to execute criu\n"
    "lxc 20261125174121.212 ERROR    af_unix - ../src/lxc/af_unix.c:"
    "lxc_abstract_unix_recv_fds_iov:218 - Connection reset by peer - Failed to receive\n")


def test_liblxc_lines_have_a_time_and_an_operation():
    lines = manager_lines(LXC_LINES.format(t="20261125174050.694").splitlines())
    assert [(time.isoformat(), operation) for time, operation, _text in lines] == [
        ("2026-11-25T17:40:50.694000+00:00", "restore")] * 2


@pytest.mark.parametrize("stamp,in_place,mine", [
    ("20261125174050.694", True, True),    # after the dump, of this directory
    ("20261125174030.000", True, False),   # before these images were written
    ("20261125174050.694", False, False),  # a snapshot: restored from a copy elsewhere
])
def test_liblxc_restores_by_place_and_time(tmp_path, stamp, in_place, mine):
    lxc = write(tmp_path / "log/lxc.log", LXC_LINES.format(t=stamp))
    item, = attribute(logs_of(lxc), Subject(DUMP_ID, tmp_path / "state", WRITTEN, in_place))
    assert item.role == "manager"
    assert bool(item.failed_restore_lines) is mine
    assert len([line for line in item.lines if line.mine]) == (2 if mine else 0)


def test_liblxc_restores_before_and_after_the_dump(tmp_path):
    text = LXC_LINES.format(t="20261125174030.000") + LXC_LINES.format(t="20261125174050.694")
    lxc = write(tmp_path / "log/lxc.log", text)
    item, = attribute(logs_of(lxc), Subject(DUMP_ID, tmp_path / "state", WRITTEN, True))
    assert [line.mine for line in item.lines] == [False, False, True, True]
    assert item.reason.startswith("2 of 4 restore lines")
    assert all("20261125174050.694" in line for line in item.failed_restore_lines)


def test_one_failed_restore_is_one_run_of_lines(tmp_path):
    """liblxc logs one failed restore in several lines (the console line, "Failed to
    execute criu", "criu process exited 1"): they are one restore, and a second restore
    after it is another."""
    exited = ("lxc web {t} ERROR    criu - ../src/lxc/criu.c:do_restore:1070 - criu process "
              "exited 1, output:\n")
    one = LXC_LINES + exited
    text = one.format(t="20261125174050.694") + one.format(t="20261125174210.100")
    lxc = write(tmp_path / "log/lxc.log", text)
    item, = attribute(logs_of(lxc), Subject(DUMP_ID, tmp_path / "state", WRITTEN, True))
    runs = item.failed_restores
    assert [len(lines) for lines in runs] == [3, 3]
    assert all("174050.694" in line for line in runs[0]) and "exited 1" in runs[0][-1]
    assert all("174210.100" in line for line in runs[1])
    assert sum(runs, ()) == item.failed_restore_lines


def test_lxd_web_fixture(fixture_root):
    """The real lxd-web logs: the stop's failed restore is the instance's state/'s only."""
    lxd_dir = fixture_root / "lxd-web" / "var/lib/lxd"
    instance = resolve("lxd:web", lxd_dir=lxd_dir)
    after = resolve("lxd:web/after", lxd_dir=lxd_dir)
    for source, mine in ((instance, True), (after, False)):
        items = {item.log.name: item for item in source.runs()}
        assert bool(items["lxc.log"].failed_restore_lines) is mine
        assert len(items["lxc.log"].failed_restores) == (1 if mine else 0)
        assert items["dump.log"].role == "dump" and items["dump.log"].run.outcome == "succeeded"
    stop = {item.log.name: item for item in after.runs()}[
        "snapshot_dump_2026-11-25T17:40:46Z.log"]
    assert stop.role == "other" and stop.run.run_id == instance.criu_run_id
    assert Path(stop.log.path).parent.name == "web"
