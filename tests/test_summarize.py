"""``summarize`` on every fixture: facts against FACTS.json and pycriu, the LXD
context (backup.yaml, the logs LXD keeps), no page data read, and what is odd."""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from crit_plus.analysis import summary as analysis
from crit_plus.commands.summarize import summary_json, write_summary
from crit_plus.opening import open_source
from decoders import FdType

from .cli import run_cli
from .oracle import crit_json
from .synth import LAZY, PARENT, PRESENT, CheckpointBuilder, proc, run, vma
from .test_sources import _write_archive

FACTS = json.loads((Path(__file__).parent.parent / "fixtures" / "FACTS.json").read_text())
KEYS = sorted(FACTS)
IDS = [key.split("/")[0] + (":" + "/".join(key.split("/")[-3:-1]) if "/" in key else "")
       for key in KEYS]
LXD = "var/lib/lxd/storage-pools/default"


def summarize(path, **options):
    """The :class:`Summary` of a checkpoint path, as the command computes it."""
    with open_source(path) as opened:
        return analysis.summarize(opened.source, opened.checkpoint, **options)


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_summary_matches_facts_and_stats(checkpoint_dirs, key):
    result = run_cli("summarize", checkpoint_dirs[key], "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    facts = FACTS[key]["processes"]
    totals = data["totals"]
    assert totals["processes"] == len(facts)
    assert totals["threads"] == sum(len(p["threads"]) for p in facts)
    assert totals["vmas"] == sum(p["vmas"] for p in facts)
    assert totals["pages"] == sum(sum(p["pages_by_flags"].values()) for p in facts)
    assert totals["fds"] == sum(len(p["fds"]) for p in facts)
    assert sorted(p["pid"] for p in data["processes"]) == sorted(p["pid"] for p in facts)
    for item in data["processes"]:
        fact = next(p for p in facts if p["pid"] == item["pid"])
        assert (item["threads"], item["comm"], item["vmas"], item["fds"]) == \
            (len(fact["threads"]), fact["comm"], fact["vmas"], len(fact["fds"]))
        assert item["pages"] == sum(fact["pages_by_flags"].values())
        assert item["argv"] is None  # not read without --cmdline
    # every field of stats-dump, as CRIU's own decoder reads it
    expected = crit_json(checkpoint_dirs[key] / "stats-dump")["entries"][0]["dump"]
    assert data["stats"] == expected
    assert data["dump"]["run_id"]  # CRIU 4.x records its run id in the inventory
    assert data["dump"]["pages_bytes"] == sum(FACTS[key]["pages_files"].values())


def test_table_shows_every_section(service_a):
    result = run_cli("summarize", service_a)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for section in ("DUMP STATISTICS", "TOTALS", "PROCESSES", "BIGGEST MEMORY HOLDERS",
                    "LOGS", "NOTES"):
        assert section in text
    for label in ("freezing", "frozen", "memory dump", "memory write", "pages scanned",
                  "pages skipped (in parent)", "pages written", "pages left lazy"):
        assert re.search(rf"^{re.escape(label)}\s", text, re.M), label
    assert "ghost-file" in text and "tcp-established" in text
    tree = run_cli("summarize", service_a, "-f", "tree").stdout
    assert re.search(r"^└─ \d+ python3", tree, re.M)


def test_command_lines_on_request(service_a):
    data = json.loads(run_cli("summarize", service_a, "--cmdline", "-f", "json").stdout)
    assert all(p["argv"] and "python" in p["argv"][0] for p in data["processes"])


# -- LXD: what the manager knows beside the images -------------------------------------------------


def test_lxd_snapshot_knows_instance_snapshot_stateful_and_logs(fixture_root):
    before = fixture_root / "lxd-web" / LXD / "containers-snapshots/web/before"
    result = summarize(before)
    origin = result.origin
    assert (origin.kind, origin.instance, origin.snapshot) == ("lxd-snapshot", "web", "before")
    assert origin.stateful is True and origin.taken_at_source == "backup.yaml"
    assert origin.criu_version == "4.2.1" and origin.kernel and origin.machine == "x86_64"
    logs = {log.name: log for log in result.logs}
    own = logs["dump.log"]
    assert own.this_checkpoint and own.run_id == result.dump.run_id
    copy, = own.copies  # LXD's snapshot_dump_*.log of this very dump
    assert copy.startswith("snapshot_dump_") and copy not in logs
    other, = [log for log in result.logs if log.name.startswith("snapshot_dump_")]
    assert not other.this_checkpoint and other.run_id != result.dump.run_id
    lxc = logs["lxc.log"]
    assert lxc.kind == "lxc" and lxc.error_count >= 1
    assert any("lxc.console.path configured on source host but not target" in line
               for line in lxc.errors)
    # liblxc's failed restore is of the instance's state/ (its later stateful stop), not
    # of this snapshot: LXD restores a snapshot from a copy, which no run id here names.
    assert lxc.role == "manager" and not lxc.failed_restore
    assert "instance's state/" in lxc.reason
    assert not [note for note in result.notes if note.where == "lxc.log"]
    text = run_cli("summarize", before).stdout
    assert "LXD stateful snapshot web/before" in text and "stateful (" in text
    assert "lxc.console.path configured on source host but not target" in text
    # CRIU's only error line there, rlimit's, is known noise (sources.logs.HARMLESS)
    assert own.error_count == 0 and "): 0 error lines\n" in text
    assert f"{lxc.error_count} error lines" in text


def test_a_restore_log_is_a_restore(fixture_root):
    """service-c was restored after its dump: restore.log holds the same bytes as
    dump.log (both only CRIU's rlimit error, at the default log level) and is still
    the log of that restore, not a copy of the dump's."""
    result = summarize(fixture_root / "service-c")
    logs = {log.name: log for log in result.logs}
    dump, restore = logs["dump.log"], logs["restore.log"]
    assert (dump.role, dump.operation, dump.copies) == ("dump", "dump", ())
    assert (restore.role, restore.operation) == ("restore", "restore")
    assert restore.outcome == "no failure logged" and not restore.failed_restore
    assert restore.ended >= dump.ended
    text = run_cli("summarize", fixture_root / "service-c").stdout
    assert "restore.log (a restore of this checkpoint, no failure logged" in text
    assert "copied as restore.log" not in text
    data = json.loads(run_cli("summarize", fixture_root / "service-c", "-f", "json").stdout)
    restore_json, = [log for log in data["logs"] if log["name"] == "restore.log"]
    assert restore_json["role"] == "restore" and restore_json["operation"] == "restore"


def test_a_later_stateful_stop_is_not_a_snapshots(fixture_root):
    """lxd-web: the instance's stateful stop (CRIU run 806c06c5...) came after snapshot
    `after` (run aaa3bbc9...), and its restore failed on the console. That failure is
    the instance's state/'s, never the snapshot's."""
    after = summarize(fixture_root / "lxd-web" / LXD / "containers-snapshots/web/after")
    logs = {log.name: log for log in after.logs}
    assert logs["dump.log"].role == "dump" and logs["dump.log"].outcome == "succeeded"
    stop = logs["snapshot_dump_2026-11-25T17:40:46Z.log"]
    assert stop.role == "other" and stop.run_id != after.dump.run_id
    assert logs["lxc.log"].role == "manager" and not logs["lxc.log"].failed_restore
    assert not [n for n in after.notes if n.code in ("restore-failed", "log-errors")
                and n.where != "dump.log"]
    instance = summarize(fixture_root / "lxd-web" / LXD / "containers/web")
    lxc = next(log for log in instance.logs if log.name == "lxc.log")
    assert any("lxc.console.path configured on source host but not target" in line
               for line in lxc.failed_restore)
    failed = [n for n in instance.notes if n.code == "restore-failed"]
    assert failed and failed[0].where == "lxc.log" and failed[0].severity == "warning"
    own = next(log for log in instance.logs if log.role == "dump")
    assert own.copies == ("snapshot_dump_2026-11-25T17:40:46Z.log",)


def test_lxd_stateful_stop_disagreeing_with_backup_yaml(fixture_root):
    instance = fixture_root / "lxd-web" / LXD / "containers/web"
    result = summarize(instance)
    assert result.origin.kind == "lxd-instance" and result.origin.snapshot is None
    assert result.origin.stateful is False
    mismatch = [n for n in result.notes if n.code == "stateful-mismatch"]
    assert mismatch and mismatch[0].origin == "source"
    assert "NOT stateful" in run_cli("summarize", instance).stdout


def test_lxd_by_name_with_a_fake_root(fixture_root):
    result = run_cli("summarize", "lxd:deb/s2", "-f", "json",
                     env={"CRIT_PLUS_ROOT": str(fixture_root / "lxd-deb")})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["origin"]["instance"], data["origin"]["snapshot"]) == ("deb", "s2")
    assert "python3" in [p["comm"] for p in data["processes"]]


@pytest.mark.parametrize("snapshot", ["s1", "s2"])
def test_lxd_logs_of_this_dump_and_of_others(fixture_root, snapshot):
    result = summarize(fixture_root / "lxd-deb" / LXD / "containers-snapshots/deb" / snapshot)
    assert result.origin.criu_version == "4.2.1"
    assert result.origin.kernel.startswith("6.")
    own = result.logs[0]
    assert own.name == "dump.log" and own.run_id == result.dump.run_id
    copy, = own.copies
    other, = [log for log in result.logs if log.name.startswith("snapshot_dump_")]
    assert copy != other.name and not other.this_checkpoint
    assert other.run_id != result.dump.run_id


def test_lxd_log_matched_by_run_id_without_dump_log(fixture_root, tmp_path):
    # a state/ without its dump.log: LXD's copy is recognised by the CRIU run id
    source = fixture_root / "lxd-deb"
    target = tmp_path / "lxd-deb"
    snapshot = "containers-snapshots/deb/s1"
    shutil.copytree(source / LXD / snapshot, target / LXD / snapshot,
                    ignore=shutil.ignore_patterns("dump.log"))
    shutil.copytree(source / "var/log/lxd", target / "var/log/lxd")
    result = summarize(target / LXD / snapshot)
    mine = [log for log in result.logs if log.this_checkpoint]
    assert len(mine) == 1 and mine[0].name.startswith("snapshot_dump_")
    assert mine[0].run_id == result.dump.run_id
    assert result.origin.version_source == mine[0].name
    assert result.origin.criu_version == "4.2.1"


# -- no page data ----------------------------------------------------------------------------------


class PageDataRead(AssertionError):
    """Raised when a pages image is opened."""


@pytest.fixture
def no_page_data(monkeypatch):
    """Fail on any opening of a ``pages-*.img``."""
    pages = re.compile(r"(^|/)pages-\d+\.img$")
    real_open, real_os_open = builtins.open, os.open

    def check(path):
        if isinstance(path, (str, bytes, os.PathLike)) and pages.search(os.fsdecode(path)):
            raise PageDataRead(f"page data opened: {path}")

    def guarded_open(file, *args, **kwargs):
        check(file)
        return real_open(file, *args, **kwargs)

    def guarded_os_open(path, *args, **kwargs):
        check(path)
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_summarize_reads_no_page_data(checkpoint_dirs, key, no_page_data):
    result = summarize(checkpoint_dirs[key])
    assert result.totals.present > 0
    buffer = io.StringIO()
    write_summary(result, buffer)
    json.dumps(summary_json(result))


def test_the_page_data_guard_works(service_a, no_page_data):
    with pytest.raises(PageDataRead):
        summarize(service_a, argv=True)


# -- what is odd, in a synthetic checkpoint (incremental, lazy, zombie, external peer) -------------


@pytest.fixture
def odd_checkpoint(tmp_path):
    """An incremental dump on a parent, with lazy pages, a zombie and an external unix peer."""
    base = 0x10000
    parent = CheckpointBuilder(tmp_path / "parent")
    parent.inventory()
    parent.pstree([proc(1)])
    parent.process(1, vmas=[vma(base, base + 0x8000)], runs=[run(base, 4, PRESENT)])
    parent.finish()
    child = CheckpointBuilder(tmp_path / "child")
    child.inventory()
    child.pstree([proc(1), proc(2, ppid=1)])
    sock = child.add_file(FdType.UNIXSK, "usk", ino=500, type=1, state=1, flags=0, uflags=0,
                          backlog=0, peer=501, name=b"/run/app.sock", fown={}, opts={})
    child.process(1, vmas=[vma(base, base + 0x8000)],
                  runs=[run(base, 2, PARENT), run(base + 0x2000, 2, PRESENT),
                        run(base + 0x4000, 3, LAZY)],
                  fds=[(3, sock, FdType.UNIXSK)], comm="server")
    child.zombie(2, comm="reaped\x1b[2J", exit_code=7 << 8)  # the wait status of exit(7)
    child.parent(parent.directory)
    child.finish()
    return Path(child.directory)


def test_odd_things_are_noted(odd_checkpoint):
    result = summarize(odd_checkpoint)
    codes = {note.code: note for note in result.notes}
    assert "(exited with status 7)" in codes["zombie"].message
    assert "2 pages are taken from it" in codes["parent"].message
    assert codes["lazy-pages"].message.startswith("3 pages are lazy")
    assert "--ext-unix-sk" in codes["external-socket"].message
    assert result.totals.zombies == 1
    assert (result.totals.present, result.totals.parent, result.totals.lazy) == (2, 2, 3)
    assert result.dump.parent.endswith("parent")
    text = run_cli("summarize", odd_checkpoint, "-f", "tree")
    assert text.returncode == 0, text.stderr
    assert "\x1b" not in text.stdout and "reaped\\x1b[2J" in text.stdout
    # counts say their noun in the singular for one
    assert "1 zombie)" in text.stdout and "1 zombies" not in text.stdout
    assert f"({result.totals.threads} thread{'s' * (result.totals.threads != 1)}, " \
        in text.stdout


def test_archive_source(service_a, tmp_path):
    archive = _write_archive(tmp_path / "service.tar.gz", service_a)
    data = json.loads(run_cli("summarize", archive, "-f", "json").stdout)
    assert data["origin"]["kind"] == "podman-archive"
    assert data["origin"]["archive"] == str(archive)
    assert data["origin"]["taken_at_source"] == "config.dump"
    assert data["stats"]["pages_written"] == crit_json(service_a / "stats-dump")[
        "entries"][0]["dump"]["pages_written"]
    # the temporary copy is gone when the command ends: paths name the archive's members
    assert data["origin"]["images_dir"] == f"{archive}: checkpoint/"
    assert [log["path"] for log in data["logs"]] == [f"{archive}: checkpoint/dump.log"]


# -- colour ----------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self):
        return True


def test_colour_on_a_terminal_unless_no_color(odd_checkpoint, monkeypatch):
    result = summarize(odd_checkpoint)
    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured = Terminal()
    write_summary(result, coloured, tree=True)
    assert "\x1b[31mzombie (exit 7)\x1b[0m" in coloured.getvalue()
    assert "reaped\\x1b[2J" in coloured.getvalue()  # names escaped, colours kept
    monkeypatch.setenv("NO_COLOR", "1")
    plain = Terminal()
    write_summary(result, plain, tree=True)
    assert "\x1b" not in plain.getvalue()
    piped = io.StringIO()
    monkeypatch.delenv("NO_COLOR")
    write_summary(result, piped)
    assert "\x1b" not in piped.getvalue()


def test_api_doc_example_of_the_analyses_runs(fixture_root, monkeypatch, capsys):
    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    section = text[text.index("## Analyses"):]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("CRIT_PLUS_ROOT", str(fixture_root / "lxd-web"))
    exec(compile(code, "docs/api.md", "exec"), {})  # noqa: S102 (our own documentation)
    out = capsys.readouterr().out
    assert out.startswith("4.2.1 6 ") and "busybox" in out
