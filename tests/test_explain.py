"""``explain`` on the fixtures' logs, on logs cut from them, on files that are not logs,
and the failure catalog against CRIU 4.2.1's sources.  Real CRIU failures made here are
in tests/test_live_explain.py."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from crit_plus.analysis.explain import (
    SCHEMA,
    LogLine,
    decisive_error,
    exit_status,
    explain_criu_log,
    explain_lxc_log,
)
from crit_plus.analysis.validate_catalog import (
    CAUSE,
    CHECKS,
    FAILURES,
    ROLES,
    fill,
    match_failure,
)
from crit_plus.sources.logs import HARMLESS, is_error_line, sniff_kind
from crit_plus.sources.resolve import resolve_logs
from tests.cli import run_cli
from tests.test_sources import _add_bytes, _write_archive

CRIU_SRC = Path("/var/cache/crit-plus/criu-4.2.1/src")
WEB_LOGS = "lxd-web/var/log/lxd/web"
STOP_LOG = "snapshot_dump_2026-11-25T17:40:46Z.log"
CONSOLE = "lxc.console.path configured on source host but not target"
#: A placeholder left in catalog text (``<manager>``, ``<key>``).
PLACEHOLDER = re.compile(r"<[a-z_]+>")


# -- the catalog ---------------------------------------------------------------------------------

EXPLICIT = [f for f in FAILURES if not f.source.endswith("*.c")]


def test_catalog_has_thirty_causes_each_with_cause_and_fix():
    causes = [f for f in EXPLICIT if f.role == CAUSE]
    assert len(causes) >= 30
    assert len({f.code for f in FAILURES}) == len(FAILURES)
    for failure in FAILURES:
        assert failure.role in ROLES and failure.cause and failure.fix, failure.code
        assert failure.check is None or failure.check in CHECKS, failure.code
        assert failure.issue is None or re.fullmatch(r"[\w.-]+/[\w.-]+#\d+", failure.issue)
        # validate's {fields} in a fix are filled (missing ones in capitals), never shown raw
        assert "{" not in fill(failure.fix), failure.code
        assert not PLACEHOLDER.search(failure.fix), failure.code


#: Lines no catalog entry may claim: text that is no CRIU message, and CRIU's own info lines.
ARBITRARY = ("hello world", "", "x", "Error (criu/foo.c:1): something nobody knows",
             "(00.086789) Error (criu/brand-new.c:7): a failure from a future CRIU",
             "(00.086745) Dumping path for -3 fd via self 16 [/]",
             "(00.086788) ----------------------------------------")


@pytest.mark.parametrize("operation", [None, "dump", "pre-dump", "restore", "check"])
def test_no_catalog_entry_matches_arbitrary_text(operation):
    """A message made only of placeholders (missing-image's ``{says}``) once became a
    pattern matching any line: every unknown error got that cause."""
    for line in ARBITRARY:
        assert match_failure(line, operation) is None, (line, match_failure(line, operation))
    for failure in FAILURES:
        assert not re.search(failure.pattern, "hello world"), failure.code


def test_an_entry_explains_its_own_side_only():
    restore_side = "Error (criu/cr-restore.c:1237): Can't fork for 19693: File exists"
    assert match_failure(restore_side).code == "pid-busy"
    assert match_failure(restore_side, "restore").code == "pid-busy"
    assert match_failure(restore_side, "dump") is None
    dump_side = "inet: Connected TCP socket, consider using --tcp-established option."
    assert match_failure(dump_side, "dump").code == "tcp-established"
    assert match_failure(dump_side, "restore") is None


def test_unknown_error_is_reported_unknown(tmp_path):
    """A failed dump whose error the catalog does not know: the decisive line is shown,
    no cause is made up, in explain's text and JSON and in summarize's LOGS."""
    text = ("(00.000001) Version: 4.2.1 (gitid 0)\n"
            "(00.000002) Dumping processes (pid: 42)\n"
            "(00.000003) Error (criu/brand-new.c:7): a failure from a future CRIU\n"
            "(00.000004) Error (criu/cr-dump.c:1975): Dumping FAILED.\n")
    log = tmp_path / "dump.log"
    log.write_text(text)
    run = explain_criu_log(log)
    assert (run.operation, run.outcome) == ("dump", "failed")
    assert run.decisive.text.endswith("a failure from a future CRIU")
    assert run.decisive.failure is None
    result = run_cli("explain", log, check=False)
    assert result.returncode == 1
    assert "cause:    not in crit-plus's catalog" in result.stdout
    assert "fix:" not in result.stdout and "<" not in result.stdout
    doc = json.loads(run_cli("explain", "--format", "json", log, check=False).stdout)
    assert doc["runs"][0]["decisive"]["catalog"] is None


def _sample(message):
    """A log line CRIU would print for the printf ``message``."""
    values = {"%d": "1234", "%u": "1234", "%x": "1f2e", "%#x": "0x1f", "%#08x": "0x00001f",
              "%lx": "7f00aa", "%lu": "65536", "%o": "644", "%s": "/srv/app/data", "%c": "t"}
    text = message.replace("\\t", "\t")
    for spec, value in sorted(values.items(), key=lambda item: -len(item[0])):
        text = text.replace(spec, value)
    return f"(00.123456) Error (criu/x.c:1): {text}"


@pytest.mark.parametrize("failure", EXPLICIT, ids=lambda f: f.code)
def test_catalog_pattern_finds_its_own_message(failure):
    if failure.role == "harmless":
        line = "(00.1) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: EPERM"
    else:
        line = failure.example or _sample(failure.message)
    assert re.search(failure.pattern, line), (failure.code, line)


@pytest.mark.skipif(not (CRIU_SRC / "criu").is_dir(), reason="CRIU 4.2.1's sources not here")
@pytest.mark.parametrize("failure", [f for f in EXPLICIT
                                     if f.source.startswith(("criu/", "include/", "compel/"))
                                     and f.role != "harmless"], ids=lambda f: f.code)
def test_catalog_message_is_criu_4_2_1_s(failure):
    """The message's longest literal piece (between printf conversions) is in the source
    file it names, C's adjacent string literals joined."""
    source = re.sub(r'"\s*\n\s*"', "", (CRIU_SRC / failure.source).read_text(errors="replace"))
    source = source.replace('\\"', '"')
    pieces = re.split(r"%[-#0-9]*[a-z]+|--\w[\w-]*|\\n", failure.message)
    piece = max(pieces, key=len).strip()
    assert len(piece) >= 5 and piece in source, (failure.code, piece)


def test_harmless_noise_is_no_error_line():
    rlimit = "(00.023250) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: x"
    assert HARMLESS and not is_error_line(rlimit) and is_error_line(rlimit, harmless=True)
    assert match_failure(rlimit).role == "harmless"
    # a restored process's own errors carry its pid before "Error"
    assert is_error_line("(00.052654)  19759: Error (criu/files-reg.c:2175): File x has bad")


def test_decisive_error_skips_consequences_and_noise():
    def line(text):
        return LogLine(1, text, match_failure(text))
    chain = [line("Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self"),
             line("Error (criu/cr-dump.c:1545): Dump files (pid: 7) failed with -1"),
             line("Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using "
                  "--tcp-established option."),
             line("Error (criu/cr-dump.c:1975): Dumping FAILED.")]
    assert decisive_error(chain) is chain[2]
    unknown = line("Error (criu/foo.c:1): something new")
    assert decisive_error([chain[0], chain[1], unknown, chain[3]]) is unknown
    assert decisive_error([chain[0], chain[3]]) is chain[3]
    assert decisive_error([chain[0]]) is None


# -- the fixtures ------------------------------------------------------------------------------


def test_lxd_log_directory(fixture_root):
    logs = fixture_root / WEB_LOGS
    lxc, = explain_lxc_log(logs / "lxc.log")
    assert (lxc.kind, lxc.operation, lxc.outcome, lxc.exit) == ("lxc", "restore", "failed", 1)
    assert CONSOLE in lxc.decisive.text and lxc.decisive.failure.code == "lxd-console"
    assert lxc.decisive.failure.check == "lxd-console"
    # liblxc's errors of other modules after the run belong to it
    assert any(line.text.startswith("af_unix:") for line in lxc.errors)
    stop = explain_criu_log(logs / STOP_LOG)
    assert (stop.operation, stop.outcome, stop.criu_version) == ("dump", "succeeded", "4.2.1")
    assert stop.run_id.startswith("806c06c5") and stop.when_from == "name"
    assert [line.failure.code for line in stop.harmless] == ["rlimit-nofile"]
    result = run_cli("explain", logs)
    assert result.returncode == 1, result.stderr
    assert f"    > criu: Invalid argument - {CONSOLE}" in result.stdout
    assert "upstream: https://github.com/canonical/lxd/issues/9396" in result.stdout
    assert result.stdout.count("outcome:  succeeded") == 2


def test_lxd_name_merges_the_state_copy(fixture_root):
    root = fixture_root / "lxd-web"
    result = run_cli("explain", "--format", "json", "--lxd-dir", root / "var/lib/lxd",
                     "lxd:web")
    data = json.loads(result.stdout)
    assert data["schema"] == SCHEMA and data["exit"] == result.returncode == 1
    runs = {run["path"].rsplit("/", 1)[-1]: run for run in data["runs"]}
    stop = runs[STOP_LOG]
    assert [Path(c).name for c in stop["copies"]] == ["dump.log"]  # state/'s copy, same run
    assert stop["decisive"] is None and stop["harmless"][0]["catalog"]["code"] == "rlimit-nofile"
    assert runs["lxc.log"]["decisive"]["catalog"]["check"] == "lxd-console"


def test_console_fix_is_filled_as_validate_fills_it(fixture_root):
    """lxd:web: the manager, the instance and the console key are known, so no
    placeholder survives in explain's, summarize's or validate's fix, and the three say the
    same; explain's fix does not repeat the cause it shows above it."""
    lxd = fixture_root / "lxd-web/var/lib/lxd"
    state = lxd / "storage-pools/default/containers/web/state"
    key = (state / "tty.info").read_text().strip()
    wanted = f"(lxc start --stateless web), or restore it by hand with criu restore " \
        f"--inherit-fd fd[N]:{key}."
    text = run_cli("explain", "--lxd-dir", lxd, "lxd:web", check=False).stdout
    fix, = [line for line in text.splitlines() if line.startswith("  fix:")]
    assert wanted in fix and not PLACEHOLDER.search(text)
    cause, = [line for line in text.splitlines() if line.startswith("  cause:")]
    assert "liblxc restores" in cause and "liblxc restores" not in fix
    runs = json.loads(run_cli("explain", "-f", "json", "--lxd-dir", lxd, "lxd:web",
                              check=False).stdout)["runs"]
    explained, = [run["decisive"]["catalog"]["fix"] for run in runs if run["decisive"]]
    summary = run_cli("summarize", "--lxd-dir", lxd, "lxd:web")
    assert explained in summary.stdout and not PLACEHOLDER.search(summary.stdout)
    logs = json.loads(run_cli("summarize", "-f", "json", "--lxd-dir", lxd, "lxd:web").stdout)
    assert [log["fix"] for log in logs["logs"] if log["fix"]] == [explained]
    validated = json.loads(run_cli("validate", "-f", "json", "--lxd-dir", lxd, "lxd:web",
                                   check=False).stdout)
    console, = [f["fix"] for f in validated["findings"] if f["code"] == "lxd-console"]
    assert console.endswith(explained)  # one filling: validate's fix adds the why first
    # a bare log names neither: the unknown fields are shown in capitals, never as <field>
    bare, = explain_lxc_log(fixture_root / WEB_LOGS / "lxc.log")
    assert "(MANAGER start --stateless INSTANCE)" in bare.decisive.failure.fix


def test_archive_logs_keep_their_member_times(fixture_root, tmp_path):
    """A Podman archive's dump.log ended when its tar member says, in summarize and
    explain alike (not when crit-plus unpacked it)."""
    from tests.container_archives import podman_archive

    archive = podman_archive(tmp_path / "ckpt.tar.gz", fixture_root / "service-a")
    with tarfile.open(archive) as tar:
        member = tar.getmember("checkpoint/dump.log")
    ended = datetime.fromtimestamp(member.mtime, timezone.utc)
    assert ended < datetime.now(timezone.utc) - timedelta(minutes=5)  # not "now"
    logs = json.loads(run_cli("summarize", "-f", "json", archive).stdout)["logs"]
    log, = [log for log in logs if log["name"] == "dump.log"]
    assert datetime.fromisoformat(log["ended"]) == ended and log["role"] == "dump"
    assert f"ended {ended:%Y-%m-%d %H:%M:%S}" in run_cli("summarize", archive).stdout
    run, = json.loads(run_cli("explain", "-f", "json", archive).stdout)["runs"]
    assert datetime.fromisoformat(run["when"]) == ended and run["when_from"] == "mtime"
    assert f"when:     {ended:%Y-%m-%d %H:%M:%S} UTC" in run_cli("explain", archive).stdout


def test_default_level_logs_no_failure_logged(fixture_root):
    """service-c: a dump and a restore at CRIU's default level (no header, no end line)."""
    result = run_cli("explain", "--format", "json", fixture_root / "service-c")
    data = json.loads(result.stdout)
    assert result.returncode == 0 and data["exit"] == 0
    assert [(Path(r["path"]).name, r["operation"], r["outcome"]) for r in data["runs"]] == [
        ("dump.log", "dump", "no failure logged"),
        ("restore.log", "restore", "no failure logged")]


def test_a_dir_holding_only_a_cut_dump_log(fixture_root, tmp_path):
    """A state directory after a dump that never finished: no images, one log cut short
    (the first 2000 lines of a real CRIU 4.2.1 log)."""
    lines = (fixture_root / WEB_LOGS / STOP_LOG).read_text().splitlines(keepends=True)
    state = tmp_path / "state"
    state.mkdir()
    (state / "dump.log").write_text("".join(lines[:2000]))
    refused = run_cli("summarize", state)  # not a checkpoint, but it says where to look
    assert refused.returncode != 0
    assert f"`crit-plus explain {state}` says why" in refused.stderr
    result = run_cli("explain", state)
    assert result.returncode == 1
    assert "outcome:  cut short" in result.stdout
    assert "decisive error: none logged" in result.stdout


def test_criu_o_directory_with_any_log_name(fixture_root, tmp_path):
    shutil.copy(fixture_root / WEB_LOGS / STOP_LOG, tmp_path / "criu-run.log")
    (tmp_path / "notes.log").write_text("a log, but not CRIU's\n")
    with resolve_logs(tmp_path) as found:
        assert [(path.name, kind) for path, kind, _label in found.logs] == [
            ("criu-run.log", "criu")]
    assert run_cli("explain", tmp_path).returncode == 0


def test_podman_archive_with_a_crio_dump_log(fixture_root, tmp_path):
    log = (fixture_root / WEB_LOGS / STOP_LOG).read_bytes()
    archive = _write_archive(tmp_path / "ckpt.tar", fixture_root / "service-a",
                             extra=lambda tar: _add_bytes(tar, "dump.log", log))
    result = run_cli("explain", "--format", "json", archive)
    data = json.loads(result.stdout)
    paths = {run["path"]: run["outcome"] for run in data["runs"]}
    assert paths == {f"{archive}:dump.log": "succeeded",
                     f"{archive}:checkpoint/dump.log": "no failure logged"}
    assert result.returncode == 0


@pytest.mark.parametrize("content", ["hello\nworld\n", "", "Error: not CRIU's\n"])
def test_a_text_file_is_no_criu_run(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_text(content)
    assert sniff_kind(path) is None
    result = run_cli("explain", path)
    assert result.returncode == 2 and result.stdout == ""
    assert f"crit-plus: {path}: no CRIU run found" in result.stderr
    data = json.loads(run_cli("explain", "-f", "json", path).stdout)
    assert data["runs"] == [] and data["exit"] == 2


def test_nothing_to_read(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for spec in (empty, tmp_path / "missing", "lxd:nosuch"):
        result = run_cli("explain", "--lxd-dir", tmp_path, spec)
        assert result.returncode == 2, spec
        assert "no CRIU run found" in result.stderr
        assert "Traceback" not in result.stderr
    assert run_cli("explain").returncode == 2  # usage: a PATH is required


def test_exit_status_rules():
    assert exit_status([]) == 2


def test_help_has_examples():
    text = run_cli("explain", "--help").stdout
    assert "crit-plus explain lxd:web" in text and "Exit status" in text


def test_docs_list_every_catalog_entry():
    """docs/commands/explain.md's catalog table names every explicit entry, with its
    message and check."""
    text = (Path(__file__).resolve().parents[1] / "docs/commands/explain.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in text.splitlines()
            if line.startswith("| `")}
    for failure in EXPLICIT:
        assert failure.code in rows, failure.code
        row = rows[failure.code]
        assert failure.role in row and (failure.check is None or f"`{failure.check}`" in row)


def _lxd_tree(root, log_name, text):
    """A minimal LXD tree: instance web (no checkpoint) and one dump log of it."""
    (root / "var/lib/lxd/containers/web").mkdir(parents=True)
    logs = root / "var/log/lxd/web"
    logs.mkdir(parents=True)
    (logs / log_name).write_text(text)
    return root


def test_list_names_an_instance_whose_last_dump_failed(fixture_root, tmp_path):
    lines = (fixture_root / WEB_LOGS / STOP_LOG).read_text().splitlines(keepends=True)
    root = _lxd_tree(tmp_path, "snapshot_dump_2026-11-25T18:00:00Z.log", "".join(lines[:2000]))
    # an older, successful dump does not hide the newer failure; a newer one would
    (root / "var/log/lxd/web" / STOP_LOG).write_text("".join(lines))
    result = run_cli("list", env={"CRIT_PLUS_ROOT": str(root)})
    assert "lxd:web: the last dump cut short" in result.stdout
    assert "snapshot_dump_2026-11-25T18:00:00Z.log" in result.stdout
    assert "see:      crit-plus explain lxd:web" in result.stdout
    (root / "var/log/lxd/web/snapshot_dump_2026-11-25T19:00:00Z.log").write_text("".join(lines))
    assert "last dump" not in run_cli("list", env={"CRIT_PLUS_ROOT": str(root)}).stdout


#: zdtm programs CRIU 4.2.1 fails to dump here, run through the harness of ``make zdtm``
#: (cached per CRIU version): ``crfail`` programs (CRIU refuses them by design) and one that
#: changes its uid (CRIU's prlimit64 on it is refused without CAP_SYS_RESOURCE).
ZDTM_FAILING = ("ghost_holes_large01", "ptrace_sig", "sigtrap", "sk-unix-listen02",
                "sk-unix-listen03", "socket_udp-corked", "timens_nested", "mlock_setuid")


@pytest.fixture(scope="module")
def zdtm_failures(criu):
    """(directory, result.json) of every program of :data:`ZDTM_FAILING` that CRIU
    failed to dump or restore (the logs it left are in the directory)."""
    from tests.workloads import zdtm

    version, results = zdtm.run_all(criu, list(ZDTM_FAILING))
    found = []
    for result in results:
        directory = zdtm.results_dir(version) / result.test
        data = json.loads((directory / "result.json").read_text())
        if data.get("started") and not (data.get("dumped") and data.get("restored")):
            found.append((directory, data))
    return found


@pytest.mark.live
def test_zdtm_programs_criu_failed_on_are_explained(zdtm_failures):
    """Every zdtm program CRIU 4.2.1 failed to dump or restore on this machine: explain finds
    the failed run in its directory, and its decisive error is a cause the catalog knows."""
    assert len(zdtm_failures) >= 7, [d.name for d, _ in zdtm_failures]
    unknown = []
    for directory, data in zdtm_failures:
        with resolve_logs(directory) as found:
            runs = [explain_criu_log(path, label) for path, kind, label in found.logs
                    if kind == "criu"]
        failed = [run for run in runs if run.failed]
        assert failed, (directory.name, data)
        decisive = failed[0].decisive
        assert decisive is not None, directory.name
        if decisive.failure is None or decisive.failure.role != CAUSE:
            unknown.append((directory.name, decisive.text))
        # zdtm.py records the first error CRIU printed as the reason: the decisive one here
        assert decisive.text.split("): ", 1)[-1] in data["reason"], directory.name
    assert not unknown, unknown
