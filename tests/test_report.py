"""``crit-plus report``: the bug-report bundle, on the real ``lxd-web`` fixture laid
out under a fake root (its ``lxc.log`` holds the real console restore error).

External programs run through a recording fake runner (the real ``criu`` is
used only in the test that asks for it); crit-plus's own commands run in-process,
and fake commands registered in the click group prove that their output is
captured and that their failures do not stop a report.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import click
import pytest

from crit_plus import cli as cli_module
from crit_plus.commands.report import default_output
from crit_plus.report import (
    NoPrograms,
    OutputRefused,
    Ran,
    ReportError,
    ReportRequest,
    Runner,
    build_report,
)
from crit_plus.report import bundle as bundle_module
from crit_plus.report.collect import Collection
from crit_plus.report.host import CPUINFO, HOST_FILES, cpuinfo_text, gather_host
from crit_plus.report.instance import Instance, add_log_dir
from crit_plus.report.programs import CRIU_ENV, find_criu
from crit_plus.report.redact import MARK, redact, redact_chunks
from crit_plus.report.selfrun import (
    NO_COMMANDS, NOT_AVAILABLE, Commands, command_args, run_command,
)
from crit_plus.sources.logs import (MARKS_BY_KIND, MAX_LINE, error_contexts, is_error_line,
                                    text_lines)
from decoders.errors import DecodeError

from .cli import run_cli
from .workloads import harness

#: crit-plus's commands as the CLI hands them to the report (commands/report.py).
OWN = Commands(cli_module.cli, cli_module.main)

POOL = "var/lib/lxd/storage-pools/default"
CONSOLE_ERROR = "lxc.console.path configured on source host but not target"
SECRET = "hunter2-do-not-share"
DAEMON_ERROR = ('time="2026-11-25T17:41:21Z" level=error msg="Failed starting instance" '
                'instance=web err="Failed to run: forkstart"')
CPUINFO_TEXT = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model name\t: Fake CPU
flags\t\t: fpu sse sse2 avx avx2 xsave
power management:

processor\t: 1
vendor_id\t: GenuineIntel
flags\t\t: fpu sse
"""
REAL_CRIU = harness.DEFAULT_CRIU


# -- the fake root and the fake machine -----------------------------------------------------

@pytest.fixture(scope="module")
def web_fixture(fixture_root):
    """The unpacked lxd-web fixture (read-only)."""
    return fixture_root / "lxd-web"


@pytest.fixture
def fake_root(web_fixture, tmp_path, monkeypatch):
    """A host root: the lxd-web tree (linked, read-only) plus the host files a
    report reads, an ``lxc.conf`` and a daemon log holding a secret environment
    value; ``$CRIT_PLUS_ROOT`` points at it."""
    root = tmp_path / "root"
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/lxd").symlink_to(web_fixture / "var/lib/lxd", target_is_directory=True)
    logs = root / "var/log/lxd/web"
    logs.mkdir(parents=True)
    for log in sorted((web_fixture / "var/log/lxd/web").iterdir()):
        (logs / log.name).write_bytes(log.read_bytes())
    (logs / "lxc.conf").write_text(f"lxc.uts.name = web\nlxc.environment = TOKEN={SECRET}\n")
    (root / "var/log/lxd/lxd.log").write_text(
        'time="2026-11-25T17:40:40Z" level=info msg="Starting up"\n' + DAEMON_ERROR + "\n"
        f'time="2026-11-25T17:41:22Z" level=debug msg="config environment.TOKEN={SECRET}"\n')
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text(CPUINFO_TEXT)
    (root / "proc/self/mountinfo").write_text("22 1 0:21 / / rw,relatime - ext4 /dev/vda rw\n")
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/lxd-bridge").write_text('USE_LXD_BRIDGE="true"\n')
    monkeypatch.setenv("CRIT_PLUS_ROOT", str(root))
    for variable in ("LXD_DIR", "INCUS_DIR", CRIU_ENV):
        monkeypatch.delenv(variable, raising=False)
    return root


CONFIG_SHOW = f"""architecture: x86_64
config:
  environment.TOKEN: {SECRET}
  image.os: busybox
devices: {{}}
"""


class FakeRunner(Runner):
    """Programs by name → ``(exit code, stdout)``; records every command line.

    ``criu check`` prints an error line like CRIU's on a kernel it cannot use.
    """

    DEFAULT = {
        "uname": (0, "Linux fake 6.18.44 #1 SMP x86_64 GNU/Linux\n"),
        "dmesg": (0, "[    0.000000] Linux version 6.18.44\n"),
        "criu": (1, "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\n"),
        "lxc": (0, None),
    }

    def __init__(self, programs=None):
        super().__init__()
        self.programs = dict(self.DEFAULT if programs is None else programs)
        self.calls = []

    def which(self, program, fallbacks=()):
        return f"/fake/bin/{program}" if program in self.programs else None

    def run(self, argv):
        argv = tuple(argv)
        self.calls.append(argv)
        code, out = self.programs[os.path.basename(argv[0])]
        if out is None:  # lxc: answers by subcommand
            out = CONFIG_SHOW if "config" in argv else f"output of {' '.join(argv[1:])}\n"
        return Ran(argv, code, out.encode())


def _members(path):
    """``{name without the top directory: bytes}`` of a bundle, and the ordered names."""
    with tarfile.open(path) as tar:
        names = tar.getnames()
        data = {name.split("/", 1)[1]: tar.extractfile(name).read() for name in names}
    return data, names


def _build(tmp_path, spec="lxd:web", runner=None, **request):
    output = tmp_path / "out" / "web-report.tar.gz"
    output.parent.mkdir(exist_ok=True)
    runner = FakeRunner() if runner is None else runner
    report, size = build_report(ReportRequest(output=str(output), spec=spec, **request),
                                runner=runner, commands=OWN)
    data, names = _members(output)
    return report, data, names, runner


# -- the bundle ------------------------------------------------------------------------------

def test_console_error_is_on_the_index_first_page(fake_root, tmp_path):
    report, data, names, _runner = _build(tmp_path)
    assert names[0] == "web-report/INDEX.md" and names[1] == "web-report/report.json"
    assert all(name.startswith("web-report/") for name in names)
    index = data["INDEX.md"].decode().splitlines()
    assert index[0] == "# crit-plus report: lxd:web"
    assert "no memory contents, no environment variables and no checkpoint images" in index[2]
    first_page = "\n".join(index[:40])
    assert CONSOLE_ERROR in first_page
    assert "logs/var/log/lxd/web/lxc.log" in first_page
    # The error is quoted with its context, as the bundle's copy numbers it.
    lxc_log = data["logs/var/log/lxd/web/lxc.log"].decode().splitlines()
    assert CONSOLE_ERROR in lxc_log[0]
    assert any(line.strip().startswith("1 > ") and CONSOLE_ERROR in line for line in index)


def test_bundle_holds_what_maintainers_ask_for(fake_root, web_fixture, tmp_path):
    report, data, names, runner = _build(tmp_path, note="lxc start web: Error: Failed to run")
    for member in ("host/uname.txt", "host/dmesg.txt", "host/criu-version.txt",
                   "host/criu-check.txt", "host/cpuinfo.txt", "host/mountinfo.txt",
                   "host/lxd-bridge.txt", "host/lxd-info.txt", "instance/info.txt",
                   "instance/config.yaml", "instance/mountinfo.txt", "instance/backup.yaml",
                   "logs/var/log/lxd/lxd.log", "logs/var/log/lxd/web/lxc.log",
                   "logs/var/log/lxd/web/lxc.conf",
                   "logs/var/log/lxd/web/snapshot_dump_2026-11-25T17:40:42Z.log",
                   "checkpoint/source.json", "checkpoint/images.txt", "checkpoint/dump.log",
                   "crit-plus/version.json", "crit-plus/version.txt"):
        assert member in data, member
    assert ("/fake/bin/lxc", "info", "web") in runner.calls
    assert ("/fake/bin/lxc", "config", "show", "--expanded", "web") in runner.calls
    assert ("/fake/bin/lxc", "exec", "web", "--", "cat", "/proc/self/mountinfo") in runner.calls
    assert ("/fake/bin/criu", "check", "--all") in runner.calls
    assert data["host/cpuinfo.txt"].decode().splitlines() == [
        "vendor_id\t: GenuineIntel", "cpu family\t: 6", "model name\t: Fake CPU",
        "flags\t\t: fpu sse sse2 avx avx2 xsave"]
    assert data["host/uname.txt"].startswith(b"$ /fake/bin/uname -a\n# exit code 0\nLinux fake")
    # Copies are byte for byte (the daemon log has a redacted line, so not that one).
    fixture_log = web_fixture / "var/log/lxd/web/lxc.log"
    assert data["logs/var/log/lxd/web/lxc.log"] == fixture_log.read_bytes()
    images_dir = fake_root / POOL / "containers/web/state"
    assert data["checkpoint/dump.log"] == (images_dir / "dump.log").read_bytes()
    # The note comes before the errors; the errors of every kind reach the index.
    index = data["INDEX.md"].decode()
    assert index.index("lxc start web: Error: Failed to run") < index.index(CONSOLE_ERROR)
    assert "Failed starting instance" in index  # the daemon's level=error line
    assert "Unexpected rt vDSO area bounds" in index  # criu check
    # CRIU's dump log holds only rlimit's line, known noise: not an error to quote
    assert "Can't setup RLIMIT_NOFILE" not in index
    # liblxc's failed restore: its decisive error and cause first, as `explain` reads them
    decisive = index.index("**Decisive error** (as `crit-plus explain` reads it): `lxc web")
    assert CONSOLE_ERROR in index[decisive:decisive + 300]
    assert index.index("- cause: liblxc restores a container dumped with its console") > decisive
    assert "- predicted by validate's `lxd-console`" in index
    # The index's source facts are crit-plus's reading of the checkpoint.
    source = json.loads(data["checkpoint/source.json"])
    assert (source["kind"], source["instance"], source["criu_version"]) == \
        ("lxd-instance", "web", "4.2.1")
    listing = data["checkpoint/images.txt"].decode()
    assert all(path.name in listing for path in images_dir.iterdir())


def test_catalog_fix_is_filled_as_explain_fills_it(fake_root, tmp_path):
    """The decisive error's fix names the manager's command, the instance and the console
    key (tty.info), filled as validate, explain and summarize fill it: no KEY, INSTANCE."""
    from crit_plus.analysis.explain import diagnose
    from crit_plus.opening import resolve_source

    _report, data, _names, _runner = _build(tmp_path)
    with resolve_source("lxd:web") as source:
        explained = diagnose([CONSOLE_ERROR], None, source.catalog_fields).failure.fix
    fix = json.loads(data["report.json"])["errors"][0]["diagnosis"]["fix"]
    assert fix == explained
    for filled in ("lxc start --stateless web", "fd[N]:tty[8800:4b]"):
        assert filled in fix and filled in data["INDEX.md"].decode()
    assert "INSTANCE" not in fix and "KEY" not in fix


def test_report_json_matches_the_bundle(fake_root, tmp_path):
    report, data, names, _runner = _build(tmp_path)
    summary = json.loads(data["report.json"])
    assert summary["schema"] == 1 and summary["spec"] == "lxd:web"
    assert ["web-report/INDEX.md", "web-report/report.json"] + \
        [f"web-report/{m['name']}" for m in summary["members"]] == names
    first = summary["errors"][0]
    assert first["member"] == "logs/var/log/lxd/web/lxc.log" and first["kind"] == "lxc"
    assert first["errors"][0] == {"line": 1, "text": data["logs/var/log/lxd/web/lxc.log"]
                                  .decode().splitlines()[0]}
    # The CRIU logs (the checkpoint's dump.log and LXD's copies) hold only rlimit's line,
    # known noise (sources.logs.HARMLESS): no excerpt of them.
    assert not [e for e in summary["errors"] if e["kind"] != "lxc" and "dump" in e["member"]]
    copies = {e["member"]: e["same_as"] for e in summary["errors"] if e["same_as"]}
    for copy, original in copies.items():
        assert data[copy] == data[original]
    assert summary["error_count"] == sum(e["error_count"] for e in summary["errors"]
                                         if not e["same_as"])


def test_no_images_memory_or_environment(fake_root, tmp_path):
    _report, data, names, _runner = _build(tmp_path)
    assert not [name for name in data if name.endswith(".img") or name.startswith("images/")]
    everything = b"".join(data.values())
    assert SECRET.encode() not in everything
    assert b"environment.TOKEN: " + MARK in data["instance/config.yaml"]
    assert b"lxc.environment = TOKEN=" + MARK in data["logs/var/log/lxd/web/lxc.conf"]
    pages = (fake_root / POOL / "containers/web/state/pages-1.img").read_bytes()
    assert pages[:4096] not in everything


def test_include_images_adds_them_and_says_so(fake_root, tmp_path):
    _report, data, _names, _runner = _build(tmp_path, include_images=True)
    images_dir = fake_root / POOL / "containers/web/state"
    for path in images_dir.iterdir():
        assert data[f"images/{path.name}"] == path.read_bytes()
    index = data["INDEX.md"].decode().splitlines()
    assert "INCLUDES THE CHECKPOINT IMAGES" in index[2]
    assert SECRET.encode() not in b"".join(
        value for name, value in data.items() if not name.startswith("images/"))


def test_lxc_absent_is_reported_not_fatal(fake_root, tmp_path):
    runner = FakeRunner({k: v for k, v in FakeRunner.DEFAULT.items() if k != "lxc"})
    report, data, _names, _runner = _build(tmp_path, runner=runner)
    assert not any(name.startswith("instance/") and name != "instance/backup.yaml"
                   for name in data)
    skipped = {s["what"]: s["why"] for s in json.loads(data["report.json"])["skipped"]}
    assert skipped["lxc info, lxc info web, lxc config show --expanded web, "
                   "/proc/self/mountinfo inside web"] == "lxc not found on $PATH"
    assert "lxc not found on $PATH" in data["INDEX.md"].decode()
    assert CONSOLE_ERROR in data["INDEX.md"].decode()
    assert "host/criu-check.txt" in data


def test_cli_with_a_fake_root_runs_no_programs(fake_root, tmp_path):
    output = tmp_path / "cli.tar.gz"
    done = run_cli("report", "lxd:web", "-o", output, "--format", "json",
                   env={"CRIT_PLUS_ROOT": str(fake_root)})
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["output"] == str(output) and summary["bytes"] == output.stat().st_size
    data, names = _members(output)
    assert [name.split("/", 1)[1] for name in names] == summary["members"]
    assert summary["errors"][0]["errors"][0]["text"].endswith(CONSOLE_ERROR)
    whys = {s["what"]: s["why"] for s in summary["skipped"]}
    assert whys["uname -a"].startswith("uname not run: the host root is")
    assert "lxc not run" in whys["lxc info, lxc info web, lxc config show --expanded web, "
                                 "/proc/self/mountinfo inside web"]
    text = run_cli("report", "lxd:web", "-o", tmp_path / "t.tar.gz",
                   env={"CRIT_PLUS_ROOT": str(fake_root)})
    assert text.returncode == 0
    assert text.stdout.startswith(f"wrote {tmp_path / 't.tar.gz'} (")
    assert CONSOLE_ERROR in text.stdout.splitlines()[2]


def test_snapshot_report(fake_root, tmp_path):
    report, data, _names, runner = _build(tmp_path, spec="lxd:web/before")
    source = json.loads(data["checkpoint/source.json"])
    assert (source["kind"], source["snapshot"]) == ("lxd-snapshot", "before")
    assert ("/fake/bin/lxc", "info", "web") in runner.calls
    assert CONSOLE_ERROR in data["INDEX.md"].decode()


def test_snapshot_report_says_whose_runs_the_logs_are(fake_root, tmp_path):
    """The failed restore in liblxc's log is the instance's later stateful stop's, not
    snapshot `after`'s: the index says so, beside the error lines it still shows."""
    _report, data, _names, _runner = _build(tmp_path, spec="lxd:web/after")
    logs = {log["name"]: log for log in json.loads(data["checkpoint/source.json"])["logs"]}
    assert logs["dump.log"]["role"] == "dump" and logs["dump.log"]["run"]["outcome"] == \
        "succeeded"
    assert logs["snapshot_dump_2026-11-25T17:40:46Z.log"]["role"] == "other"
    assert logs["lxc.log"]["role"] == "manager" and not logs["lxc.log"]["failed_restore"]
    index = data["INDEX.md"].decode()
    assert "### Logs and their CRIU runs" in index
    assert "(liblxc; the manager's log: its restores are not this checkpoint's)" in index


def test_plain_criu_directory_with_a_restore_log(fixture_root, tmp_path, monkeypatch):
    """service-c's restore.log holds the same bytes as its dump.log (CRIU's default log
    level writes no run id): it is shown as the restore it is, not as a copy."""
    monkeypatch.setenv("CRIT_PLUS_ROOT", str(tmp_path))
    report, data, _names, _runner = _build(tmp_path, spec=str(fixture_root / "service-c"))
    assert data["checkpoint/restore.log"] == data["checkpoint/dump.log"]
    # both hold only rlimit's line, known noise: no excerpt quotes them as errors
    assert not [e for e in report.excerpts if e.member.startswith("checkpoint/")]
    logs = {log["name"]: log for log in json.loads(data["checkpoint/source.json"])["logs"]}
    assert logs["restore.log"]["role"] == "restore" and logs["dump.log"]["role"] == "dump"
    assert "| `restore.log` | restore | - | no failure logged |" in data["INDEX.md"].decode()
    assert "| a restore of this checkpoint |" in data["INDEX.md"].decode()


def test_plain_criu_directory(service_a, tmp_path, monkeypatch):
    monkeypatch.setenv("CRIT_PLUS_ROOT", str(tmp_path))
    _report, data, _names, runner = _build(tmp_path, spec=str(service_a))
    assert not any(call[0].endswith("/lxc") for call in runner.calls)
    assert "checkpoint/dump.log" in data and "crit-plus/version.json" in data
    assert "not an LXD or Incus checkpoint (criu-dir)" in data["INDEX.md"].decode()


def test_podman_archive(service_a, tmp_path, monkeypatch):
    from .test_sources import _write_archive

    monkeypatch.setenv("CRIT_PLUS_ROOT", str(tmp_path))
    archive = tmp_path / "service.tar.gz"
    _write_archive(archive, service_a)
    _report, data, _names, _runner = _build(tmp_path, spec=str(archive))
    source = json.loads(data["checkpoint/source.json"])
    assert source["kind"] == "podman-archive"
    assert {"spec_dump", "config_dump"} <= set(source["metadata_withheld"])
    assert b"ociVersion" not in b"".join(data.values())  # metadata is named, not copied
    runs = json.loads(data["report.json"])["crit_plus_commands"]
    version = next(run for run in runs if run["command"] == "version")
    assert version["status"] == "ok"
    assert version["argv"][1] == source["images_dir"] != str(archive)  # not unpacked again
    assert not Path(source["images_dir"]).exists()  # the unpacked copy is gone


# -- reading only what it may ----------------------------------------------------------------

def _record_reads(monkeypatch):
    """Record every path opened or listed; fail on any real subprocess."""
    seen = []
    real_open, real_os_open = builtins.open, os.open
    real_scandir, real_listdir = os.scandir, os.listdir

    def note(path):
        if isinstance(path, (str, bytes, os.PathLike)):
            seen.append(os.fsdecode(os.fspath(path)))

    def recording(real):
        def wrapper(path=".", *args, **kwargs):
            note(path)
            return real(path, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(builtins, "open", recording(real_open))
    monkeypatch.setattr(io, "open", recording(real_open))
    monkeypatch.setattr(os, "open", recording(real_os_open))
    monkeypatch.setattr(os, "scandir", recording(real_scandir))
    monkeypatch.setattr(os, "listdir", recording(real_listdir))

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"a real program was run: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    return seen


def _under(path, *tops):
    real = os.path.realpath(path)
    return any(real == os.path.realpath(top) or
               real.startswith(os.path.realpath(top).rstrip(os.sep) + os.sep) for top in tops)


def test_reads_nothing_outside_the_fake_root(fake_root, web_fixture, tmp_path, monkeypatch):
    import crit_plus.html as html_package
    from decoders.schema import get_schema

    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    schema = get_schema()  # crit-plus's own schema, loaded before the report
    seen = _record_reads(monkeypatch)
    _report, data, _names, _runner = _build(tmp_path)
    monkeypatch.undo()
    assert CONSOLE_ERROR in data["INDEX.md"].decode()
    # The fake root (its var/lib/lxd links to the fixture), the spool and the output;
    # crit-plus's own files: the schema, the HTML page's templates (crit_plus/html/).
    templates = Path(html_package.__file__).parent / "templates"
    allowed = (fake_root, web_fixture, spool, tmp_path / "out", schema.package_dir,
               templates)
    outside = sorted({path for path in seen if not _under(path, *allowed)})
    assert outside == []
    assert any(_under(path, fake_root / "var/log/lxd/web") for path in seen)


def test_host_facts_read_only_the_allowed_host_files(tmp_path, monkeypatch):
    """On the real root, the host gatherer opens exactly its allow-list."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    collection = Collection()
    seen = _record_reads(monkeypatch)
    try:
        gather_host(collection, "/", FakeRunner())
    finally:
        monkeypatch.undo()
        collection.close()
    allowed = {"/" + CPUINFO} | {"/" + relative for relative, _member, _what in HOST_FILES}
    opened = {path for path in seen if not _under(path, spool)}
    assert opened <= allowed and "/proc/cpuinfo" in opened


# -- crit-plus's own commands ----------------------------------------------------------------

def _fake_command(name, calls, behaviour, memory_default=False):
    """A command like crit-plus's: PATH, source options, --env/--content, --format."""

    @click.command(name)
    @click.argument("path")
    @click.option("--lxd-dir")
    @click.option("--project")
    @click.option("--env", is_flag=True, default=memory_default)
    @click.option("--content/--no-content", default=memory_default)
    @click.option("--format", "-f", "fmt", type=click.Choice(("table", "json")), default="table")
    def command(path, lxd_dir, project, env, content, fmt):
        calls.append({"path": path, "env": env, "content": content, "fmt": fmt})
        behaviour(fmt)

    return command


def _prints(fmt):
    if fmt == "json":
        click.echo(json.dumps({"processes": 7}))
    else:
        click.echo("PROCESSES  7")
    click.echo("a warning", err=True)


def _crashes(fmt):
    raise RuntimeError("bug in a command")


def _fails(fmt):
    click.echo("partial")
    raise DecodeError("core-1.img", "truncated entry", offset=8)


def test_fake_commands_output_captured_and_failures_isolated(fake_root, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(cli_module.cli.commands, "summarize",
                        _fake_command("summarize", calls, _prints))
    monkeypatch.setitem(cli_module.cli.commands, "size", _fake_command("size", calls, _crashes))
    monkeypatch.setitem(cli_module.cli.commands, "validate",
                        _fake_command("validate", calls, _fails))
    streams = (sys.stdout, sys.stderr)
    _report, data, _names, _runner = _build(tmp_path)
    assert (sys.stdout, sys.stderr) == streams  # given back, even after a crash
    assert json.loads(data["crit-plus/summarize.json"]) == {"processes": 7}
    assert data["crit-plus/summarize.txt"] == b"PROCESSES  7\n"
    assert data["crit-plus/summarize.json.stderr.txt"] == b"a warning\n"
    assert b"RuntimeError: bug in a command" in data["crit-plus/size.json.stderr.txt"]
    assert data["crit-plus/validate.txt"] == b"partial\n"
    assert data["crit-plus/validate.txt.stderr.txt"] == \
        b"crit-plus: core-1.img: at offset 0x8: truncated entry\n"
    # Never asked for memory contents; the checkpoint named as the user named it.
    assert len(calls) == 6
    assert all(not call["env"] and not call["content"] for call in calls)
    assert {call["fmt"] for call in calls} == {"json", "table"}
    assert {call["path"] for call in calls} == {"lxd:web"}
    runs = {(r["command"], r["format"]): r for r in
            json.loads(data["report.json"])["crit_plus_commands"]}
    assert runs["summarize", "json"]["status"] == "ok"
    assert runs["summarize", "json"]["argv"] == ["summarize", "lxd:web", "--format", "json"]
    assert (runs["size", "table"]["status"], runs["size", "table"]["exit_code"]) == \
        ("crashed", None)
    assert runs["size", "table"]["message"] == "crashed: RuntimeError: bug in a command"
    assert (runs["validate", "json"]["status"], runs["validate", "json"]["exit_code"]) == \
        ("nonzero-exit", 1)
    # The report itself went on to the end.
    assert CONSOLE_ERROR in data["INDEX.md"].decode()


def test_source_options_are_passed_only_when_given_and_declared(monkeypatch):
    calls = []
    command = _fake_command("summarize", calls, _prints)
    assert command_args(command, "lxd:web", {"lxd_dir": "/srv/lxd", "project": None,
                                              "root": "/srv/rootfs"}, "json") == \
        ["lxd:web", "--lxd-dir", "/srv/lxd", "--format", "json"]
    assert command_args(command, None, {}, "table") == []


def test_command_reading_memory_by_default_is_refused(monkeypatch):
    calls = []
    monkeypatch.setitem(cli_module.cli.commands, "summarize",
                        _fake_command("summarize", calls, _prints, memory_default=True))
    run = run_command(OWN, "summarize", "lxd:web", {}, "json")
    assert run.status == "refused" and "--env" in run.message
    assert calls == []


def test_unregistered_command_is_not_available(monkeypatch):
    monkeypatch.delitem(cli_module.COMMAND_MODULES, "version")
    monkeypatch.delitem(cli_module.cli.commands, "version", raising=False)
    run = run_command(OWN, "version", None, {}, "json")
    assert (run.status, run.message, run.stdout) == ("not-available", NOT_AVAILABLE, None)


def test_no_commands_given_runs_none(fake_root, tmp_path):
    """A library caller of build_report that gives no commands gets the bundle, with
    crit-plus's commands listed as not run (report/ cannot find them: it is below the CLI)."""
    output = tmp_path / "out" / "bare.tar.gz"
    output.parent.mkdir()
    build_report(ReportRequest(output=str(output), spec="lxd:web"), runner=FakeRunner())
    data, _names = _members(output)
    runs = json.loads(data["report.json"])["crit_plus_commands"]
    assert runs and {(run["status"], run["message"]) for run in runs} == \
        {("not-available", NO_COMMANDS)}
    assert not [name for name in data if name.startswith("crit-plus/")]


def test_the_report_command_runs_the_commands_it_is_given(fake_root, tmp_path):
    """`crit-plus report` hands the CLI's group and entry point down to the report: its
    bundle holds their output (what the in-process tests pass as OWN)."""
    output = tmp_path / "cli.tar.gz"
    done = run_cli("report", "lxd:web", "-o", str(output), "--format", "json",
                   env={"CRIT_PLUS_ROOT": str(fake_root)})
    assert done.returncode == 0, done.stderr
    statuses = {run["command"]: run["status"]
                for run in json.loads(done.stdout)["crit_plus_commands"]}
    assert statuses["version"] == "ok" and "not-available" not in statuses.values()


def test_real_version_output_is_the_command_line_output(fake_root, tmp_path):
    _report, data, _names, _runner = _build(tmp_path)
    direct = run_cli("version", "lxd:web", "--format", "json",
                     env={"CRIT_PLUS_ROOT": str(fake_root)})
    assert json.loads(data["crit-plus/version.json"]) == json.loads(direct.stdout)
    table = run_cli("version", "lxd:web", env={"CRIT_PLUS_ROOT": str(fake_root)})
    assert data["crit-plus/version.txt"].decode() == table.stdout


@pytest.mark.parametrize("command", ["summarize", "size", "validate"])
def test_real_command_output_is_the_command_line_output(command, fake_root, tmp_path):
    """Runs once the summarize/size/validate commands are merged into crit-plus."""
    if cli_module.cli.get_command(None, command) is None:
        pytest.skip(f"`crit-plus {command}` is not registered in this crit-plus yet "
                    "(its branch is not merged): the report records it as not available")
    _report, data, _names, _runner = _build(tmp_path)
    runs = {(r["command"], r["format"]): r for r in
            json.loads(data["report.json"])["crit_plus_commands"]}
    env = {"CRIT_PLUS_ROOT": str(fake_root)}
    direct_json = run_cli(command, "lxd:web", "--format", "json", env=env)
    direct_table = run_cli(command, "lxd:web", env=env)
    assert runs[command, "json"]["exit_code"] == direct_json.returncode
    assert runs[command, "table"]["exit_code"] == direct_table.returncode
    assert json.loads(data[f"crit-plus/{command}.json"]) == json.loads(direct_json.stdout)
    assert data[f"crit-plus/{command}.txt"].decode() == direct_table.stdout
    assert "--env" not in runs[command, "json"]["argv"]
    assert "--content" not in runs[command, "json"]["argv"]


# -- host-only (the target of a migration) ---------------------------------------------------

def test_host_only_has_host_facts_and_the_instance_logs(fake_root, tmp_path):
    _report, data, _names, runner = _build(tmp_path, host_only=True)
    assert "host/criu-check.txt" in data and "host/uname.txt" in data
    assert not [name for name in data if name.startswith(("checkpoint/", "images/"))]
    assert "logs/var/log/lxd/web/lxc.log" in data
    assert CONSOLE_ERROR in data["INDEX.md"].decode()
    runs = json.loads(data["report.json"])["crit_plus_commands"]
    assert {run["command"] for run in runs} == {"version"}
    assert all(run["argv"][1:] in ([], ["--format", "json"]) for run in runs)
    assert "`--host-only`" in data["INDEX.md"].decode()


def test_host_only_without_a_name(fake_root, tmp_path):
    _report, data, _names, runner = _build(tmp_path, spec=None, host_only=True)
    assert ("/fake/bin/lxc", "info") in runner.calls
    assert not any(name.startswith("logs/var/log/lxd/web/") for name in data)
    whys = {s["what"]: s["why"] for s in json.loads(data["report.json"])["skipped"]}
    assert whys["incus info"] == "incus not found on $PATH"


@pytest.mark.parametrize("spec, options", [
    ("/tmp", {}), ("lxc:c1", {}), ("lxd:web", {"include_images": True}),
])
def test_host_only_refuses_a_checkpoint(fake_root, tmp_path, spec, options):
    with pytest.raises(ReportError):
        _build(tmp_path, spec=spec, host_only=True, **options)


# -- where it writes ---------------------------------------------------------------------------

def _tree(top):
    return sorted((str(p), p.lstat().st_size, p.lstat().st_mtime_ns)
                  for p in Path(top).rglob("*"))


@pytest.mark.parametrize("inside", [
    POOL + "/containers/web/state", POOL + "/containers/web", "var/log/lxd/web",
])
def test_output_inside_the_checkpoint_is_refused(fake_root, web_fixture, inside):
    before = _tree(web_fixture)
    output = fake_root / inside / "report.tar.gz"
    with pytest.raises(OutputRefused, match="inside"):
        build_report(ReportRequest(output=str(output), spec="lxd:web"), runner=FakeRunner())
    done = run_cli("report", "lxd:web", "-o", output, env={"CRIT_PLUS_ROOT": str(fake_root)})
    assert done.returncode == 2 and "inside" in done.stderr and "Traceback" not in done.stderr
    assert _tree(web_fixture) == before


@pytest.mark.parametrize("output, words", [("-", "not to stdout"), (".", "is a directory"),
                                           ("nowhere/x.tar.gz", "does not exist")])
def test_unusable_outputs_are_refused(fake_root, tmp_path, monkeypatch, output, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputRefused, match=words):
        build_report(ReportRequest(output=output, spec="lxd:web"), runner=FakeRunner())


def test_real_programs_with_lxc_absent(tmp_path):
    """On this machine's root, with a $PATH holding uname and dmesg but no lxc."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for program in ("uname", "dmesg"):
        found = shutil.which(program)
        if found:
            (bindir / program).symlink_to(found)
    output = tmp_path / "target.tar.gz"
    done = run_cli("report", "--host-only", "lxd:web", "-o", output, "--format", "json",
                   env={"PATH": str(bindir), "CRIT_PLUS_ROOT": ""})
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    whys = {s["what"]: s["why"] for s in summary["skipped"]}
    assert whys["lxc info, lxc info web, lxc config show --expanded web, "
                "/proc/self/mountinfo inside web"] == "lxc not found on $PATH"
    data, _names = _members(output)
    if shutil.which("uname"):
        assert data["host/uname.txt"].decode().splitlines()[2] == \
            subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    assert data["host/mountinfo.txt"]  # this machine's mounts


def test_a_failed_write_leaves_nothing_behind(fake_root, tmp_path, monkeypatch):
    output = tmp_path / "out" / "web-report.tar.gz"
    output.parent.mkdir()
    output.write_bytes(b"the previous report")
    real = bundle_module._add_spooled
    count = []

    def failing(*args):
        count.append(1)
        if len(count) == 3:
            raise OSError(28, "No space left on device")
        return real(*args)

    monkeypatch.setattr(bundle_module, "_add_spooled", failing)
    with pytest.raises(OSError, match="No space"):
        build_report(ReportRequest(output=str(output), spec="lxd:web"), runner=FakeRunner())
    assert output.read_bytes() == b"the previous report"
    assert sorted(p.name for p in output.parent.iterdir()) == ["web-report.tar.gz"]


def test_bundle_is_private_to_its_owner(fake_root, tmp_path):
    _build(tmp_path)
    assert (tmp_path / "out/web-report.tar.gz").stat().st_mode & 0o077 == 0


def test_default_output_name():
    now = datetime(2026, 11, 25, 17, 41, 0, tzinfo=timezone.utc)
    assert default_output("lxd:web/before", now) == \
        "crit-plus-report-lxd-web-before-20261125T174100Z.tar.gz"
    assert default_output(None, now) == "crit-plus-report-host-20261125T174100Z.tar.gz"


# -- the parts ---------------------------------------------------------------------------------

def test_error_contexts_on_the_real_lxc_log(web_fixture):
    path = web_fixture / "var/log/lxd/web/lxc.log"
    with open(path, encoding="utf-8") as stream:
        lines = stream.read().splitlines()
    contexts, count = error_contexts(io.BytesIO(path.read_bytes()), before=2, after=1)
    errors = [number for context in contexts for number, _text in context.errors]
    assert count == len(errors) == sum(" ERROR " in line for line in lines)
    assert CONSOLE_ERROR in contexts[0].errors[0][1]
    for context in contexts:
        numbers = [number for number, _text, _error in context.lines]
        assert numbers == list(range(numbers[0], numbers[-1] + 1))  # consecutive
        assert all(lines[number - 1] == text for number, text, _error in context.lines)
    # Contexts never touch: otherwise they would be one.
    for first, second in zip(contexts, contexts[1:]):
        assert second.lines[0][0] > first.lines[-1][0] + 1


def _reference_contexts(lines, before, after):
    """Error contexts the plain way: a window around each error line, windows that
    overlap or touch merged."""
    windows = []
    for index, line in enumerate(lines):
        if is_error_line(line):
            low, high = max(0, index - before), min(len(lines) - 1, index + after)
            if windows and low <= windows[-1][1] + 1:
                windows[-1][1] = max(windows[-1][1], high)
            else:
                windows.append([low, high])
    return [[(i + 1, lines[i], is_error_line(lines[i])) for i in range(low, high + 1)]
            for low, high in windows]


@pytest.fixture(scope="module")
def real_logs(fixture_root):
    """The text of every distinct log of the fixtures (CRIU dump/restore logs, lxc.log)."""
    return sorted({p.read_bytes() for p in fixture_root.rglob("*.log") if p.is_file()})


@pytest.mark.parametrize("chunk", [1 << 20, 333])
@pytest.mark.parametrize("before, after", [(3, 2), (0, 5), (0, 0)])
def test_error_contexts_equal_the_plain_way_on_every_real_log(real_logs, chunk, before, after):
    assert len(real_logs) >= 6
    for data in real_logs:
        contexts, count = error_contexts(io.BytesIO(data), before, after, chunk=chunk)
        expected = _reference_contexts(data.decode("utf-8", "replace").split("\n")[:-1],
                                       before, after)
        assert [list(c.lines) for c in contexts] == expected
        assert count == sum(e for c in expected for _n, _t, e in c)


def test_criu_logs_searched_for_criu_marks_only_lose_nothing(fixture_root):
    """read_log searches a CRIU log for CRIU's own error mark only: on every real
    CRIU log that finds exactly what searching for every mark finds."""
    logs = [p for p in fixture_root.rglob("*.log") if p.is_file() and "ticker" not in p.name
            and p.name != "lxc.log"]
    assert len(logs) >= 6
    found = 0
    for path in logs:
        data = path.read_bytes()
        for harmless in (False, True):
            narrow = error_contexts(io.BytesIO(data), 0, 0, marks=MARKS_BY_KIND["criu"],
                                    harmless=harmless)
            wide = error_contexts(io.BytesIO(data), 0, 0, harmless=harmless)
            assert narrow == wide, path
            found += wide[1] if harmless else 0
    assert found > 0  # the logs hold CRIU error lines (rlimit's known noise, kept here)


@pytest.mark.parametrize("seed", range(6))
def test_error_contexts_equal_the_plain_way_on_generated_logs(seed):
    import random

    rng = random.Random(seed)
    kinds = ["(00.1) Error (criu/x.c:1): bad", "lxc web 1.2 ERROR    criu - x", "plain line",
             'time="t" level=error msg="m"', "(00.2) Warn (criu/x.c:2): meh", "", "x" * 300]
    weights = [2, 1, 60, 1, 5, 3, 1]
    lines = [rng.choices(kinds, weights)[0] for _ in range(3000)]
    text = "\n".join(lines) + "\n"
    for before, after in ((0, 0), (1, 4), (7, 2)):
        expected = _reference_contexts(lines, before, after)
        for chunk in (1, 29, 250, 4096, 1 << 20):
            contexts, count = error_contexts(io.BytesIO(text.encode()), before, after,
                                             chunk=chunk)
            assert [list(c.lines) for c in contexts] == expected, (before, after, chunk)
            assert count == sum(e for c in expected for _n, _t, e in c)


def test_error_contexts_merge_and_limit():
    lines = ["a", "Error (x.c:1): one", "b", "c", "Error (x.c:2): two", "d", "e", "f", "g", "h",
             "Error (x.c:3): three", "i"]
    text = "\n".join(lines) + "\n"
    expected = [[1, 2, 3, 4, 5, 6], [10, 11, 12]]
    for chunk in (1 << 20, 7, 1):  # the same, however the log is cut into blocks
        contexts, count = error_contexts(io.BytesIO(text.encode()), before=1, after=1,
                                         chunk=chunk)
        assert count == 3
        assert [[n for n, _t, _e in c.lines] for c in contexts] == expected
        assert [t for c in contexts for _n, t, _e in c.lines] == \
            [lines[n - 1] for numbers in expected for n in numbers]
    limited, count = error_contexts(io.BytesIO(text.encode()), before=1, after=1, limit=1)
    assert count == 3 and len(limited) == 1


def test_long_log_lines_are_bounded():
    stream = io.StringIO("x" * 100 + "\nError (a.c:1): short\n")
    assert list(text_lines(stream, max_line=40)) == ["x" * 40, "Error (a.c:1): short"]
    huge = "Error (a.c:1): " + "y" * (3 * MAX_LINE) + "\nnext\nError (b.c:2): two\n"
    for chunk in (100, 1 << 20):
        contexts, count = error_contexts(io.BytesIO(huge.encode()), before=1, after=0,
                                         chunk=chunk)
        assert count == 2
        assert [(n, len(t)) for c in contexts for n, t, _e in c.lines] == \
            [(1, MAX_LINE), (2, 4), (3, len("Error (b.c:2): two"))]


def test_redaction():
    text = (b"config:\n  environment.TOKEN: abc\n  environment.CERT: |\n    line one\n"
            b"    line two\n  image.os: busybox\nlxc.environment = HOME=/root\n"
            b"environment_var: kept\n")
    assert redact(text) == (
        b"config:\n  environment.TOKEN: " + MARK + b"\n  environment.CERT: " + MARK + b"\n"
        b"    " + MARK + b"\n    " + MARK + b"\n  image.os: busybox\n"
        b"lxc.environment = HOME=" + MARK + b"\nenvironment_var: kept\n")
    for size in (1, 5, 64):  # however the text arrives, the same result
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
        assert b"".join(redact_chunks(pieces)) == redact(text)


def test_log_dir_keeps_the_newest_files(tmp_path):
    for number in range(4):
        path = tmp_path / f"migration_restore_{number}.log"
        path.write_text("Error (criu/cr-restore.c:1): nope\n")
        os.utime(path, (1000 + number, 1000 + number))
    collection = Collection()
    try:
        add_log_dir(collection, tmp_path, tmp_path, limit=2)
        assert [m.name for m in collection.members] == \
            ["logs/migration_restore_2.log", "logs/migration_restore_3.log"]
        assert {m.scan for m in collection.members} == {"restore"}
        assert collection.skipped[0].why == "only the newest 2 are kept"
    finally:
        collection.close()


def test_long_files_keep_their_end(tmp_path):
    path = tmp_path / "big.log"
    path.write_text("".join(f"line {n}\n" for n in range(1000)))
    collection = Collection(limit=100)
    try:
        collection.add_file("big.log", path)
        [member] = collection.members
        kept = b"".join(collection.spool.chunks(member.offset, member.size)).decode()
        assert member.cut and kept.endswith("line 999\n") and kept.startswith("line ")
        assert len(kept) <= 100
    finally:
        collection.close()


def test_unreadable_file_is_skipped(tmp_path):
    collection = Collection()
    try:
        assert not collection.add_file("x", tmp_path / "missing")
        assert "cannot be read" in collection.skipped[0].why
    finally:
        collection.close()


def test_cpuinfo_keeps_the_first_cpu_only():
    assert cpuinfo_text(CPUINFO_TEXT).count("flags") == 1


def test_project_is_passed_to_the_client():
    assert Instance("lxd", "web", "prod").client_args("info", "web") == \
        ["--project", "prod", "info", "web"]
    assert Instance("incus", "web", "default").client_args("info") == ["info"]


# -- programs ----------------------------------------------------------------------------------

def test_runner_runs_missing_slow_and_loud_programs(tmp_path):
    runner = Runner(timeout=30, limit=10)
    loud = runner.run([sys.executable, "-c", "print('x' * 100)"])
    assert (loud.exit_code, loud.stdout, loud.truncated) == (0, b"x" * 10, True)
    assert runner.run([str(tmp_path / "nope")]).error.endswith("not found")
    slow = Runner(timeout=0.2).run([sys.executable, "-c", "import time; time.sleep(30)"])
    assert slow.error == "timed out after 0.2 s" and slow.exit_code is None
    assert not NoPrograms("a copied tree").run(["uname"]).ok


def test_criu_lookup(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "criu"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho Version: 9.9\n")
    fake.chmod(0o755)
    monkeypatch.delenv(CRIU_ENV, raising=False)
    assert find_criu(Runner(path=str(fake.parent))) == (str(fake), None)
    assert find_criu(Runner(path=str(tmp_path)), explicit=str(fake)) == (str(fake), None)
    monkeypatch.setenv(CRIU_ENV, str(tmp_path / "nothing"))
    path, why = find_criu(Runner(path=str(tmp_path)))
    assert path is None and f"${CRIU_ENV}" in why
    monkeypatch.delenv(CRIU_ENV)
    monkeypatch.setattr("crit_plus.report.programs.CRIU_FALLBACKS", (str(fake),))
    assert find_criu(Runner(path=str(tmp_path))) == (str(fake), None)


@pytest.mark.skipif(not os.access(REAL_CRIU, os.X_OK), reason=f"no CRIU build at {REAL_CRIU}")
def test_real_criu_version_and_check(tmp_path):
    collection = Collection()
    try:
        gather_host(collection, tmp_path, Runner(), criu=REAL_CRIU)
        runs = {what: ran for what, ran, _member in collection.runs}
        assert runs["criu --version"].ok and b"Version: 4.2.1" in runs["criu --version"].stdout
        check = runs["criu check --all"]
        assert check.error is None and check.exit_code is not None
        assert check.argv == (REAL_CRIU, "check", "--all")
        assert {m.name for m in collection.members} >= {"host/criu-version.txt",
                                                        "host/criu-check.txt"}
    finally:
        collection.close()


def test_redaction_of_cloud_init_data():
    # user.* is free-form data LXD hands to the instance: every user.* value is hidden;
    # volatile.cloud-init.instance-id is LXD's identifier, not cloud-init's data.
    text = (b"config:\n  cloud-init.user-data: |\n    #cloud-config\n    password: hunter2\n"
            b"  user.vendor-data: secret\n  user.comment: free\n  image.os: debian\n"
            b"  volatile.cloud-init.instance-id: 849c601a\n")
    assert redact(text) == (
        b"config:\n  cloud-init.user-data: " + MARK + b"\n    " + MARK + b"\n    " + MARK +
        b"\n  user.vendor-data: " + MARK + b"\n  user.comment: " + MARK +
        b"\n  image.os: debian\n  volatile.cloud-init.instance-id: 849c601a\n")
    for size in (1, 7, 64):
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
        assert b"".join(redact_chunks(pieces)) == redact(text)


def test_a_failed_own_command_says_why_on_the_index(fixture_root, tmp_path):
    """crit-plus's own commands that fail on a damaged checkpoint give their error line
    on the index, not only in their .stderr.txt member."""
    copy = tmp_path / "damaged"
    shutil.copytree(fixture_root / "service-a", copy)
    (copy / "pstree.img").chmod(0o644)
    os.truncate(copy / "pstree.img", 30)
    output = tmp_path / "r.tar.gz"
    done = run_cli("report", copy, "-o", output, "--criu", "/nonexistent/criu")
    assert done.returncode == 0, done.stderr
    data, _names = _members(output)
    index = data["INDEX.md"].decode()
    assert "| crit-plus summarize | json | exit code 1: crit-plus: pstree.img: entry 0 at " \
        "offset 0x8: truncated entry" in index
