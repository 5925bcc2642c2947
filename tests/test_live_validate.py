"""``validate`` against real restores: damage a real dump, predict, then let CRIU try.

The service workload is dumped for good (no ``--leave-running``; its pids are
free afterwards).  Each case damages a copy of the dump (or the files the
service holds in its directory), runs ``validate`` in-process with ``target_root="/"``
and the host's facts (the restore happens right here), then runs
``criu restore -d`` on the damaged copy, and asserts that both agree: validate
names exactly the expected error, the restore does not give the dump back
(it fails, never finishes, or restores the processes with memory lost), and
CRIU's log holds the message validate says CRIU will print.  The untouched dump
validates clean, restores, keeps running and answers a signal; while it runs,
validate predicts ``pid-busy`` for a second copy and CRIU refuses it.

Run with ``-s`` to see the agreement table (the one in docs/validate.md,
section "Checked against real restores", was copied from it).  Every restored
tree is killed by its process group, leftover ghost files and CRIU's network
lock rules are removed, every wait is bounded.  See docs/live.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

import crit_plus
from crit_plus.analysis.host import probe_host
from crit_plus.analysis.validate import validate
from crit_plus.opening import open_source
from tests.workloads import harness

pytestmark = pytest.mark.live

RESTORE_TIMEOUT = 60   # a restore of the service takes well under a second here
HANG_TIMEOUT = 5       # for the case where CRIU 4.2.1 never finishes (a restore fails in < 1 s)


@dataclass
class Dumped:
    """The service's final dump and what the cases need to damage and check it."""

    images: Path
    base: Path
    info: dict
    service: harness.Service
    criu: str
    criu_version: str
    checkpoint: crit_plus.Checkpoint

    @property
    def pids(self):
        return [p["pid"] for p in self.info["processes"]]

    @property
    def main(self):
        return self.pids[0]

    def workfile(self, name):
        return Path(self.info["files"][name])


@pytest.fixture(scope="module")
def table():
    """Rows of the agreement table, printed (``-s``) when the module is done."""
    rows = []
    yield rows
    if rows:
        print("\n\n| case | validate (errors) | `criu restore -d` | CRIU's message |")
        print("| --- | --- | --- | --- |")
        for row in rows:
            print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")


@pytest.fixture(scope="module")
def dumped(criu, tmp_path_factory):
    base = tmp_path_factory.mktemp("live-validate")
    service = harness.Service.start(base / "app", base / "info.json",
                                    marker=f"validate-{os.getpid()}")
    ports = harness.tcp_ports(service.info)
    try:
        harness.dump(criu, service.pid, base / "images", leave_running=False)
        assert service.reap() == [], "the dumped tree is still there"
        version = subprocess.run([criu, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
        yield Dumped(base / "images", base, service.info, service, criu,
                     ".".join(map(str, harness.parse_version(version))),
                     crit_plus.open_checkpoint(base / "images"))
    finally:
        service.kill()
        harness.unlock_network(ports)


# -- running one case --------------------------------------------------------------------------


def _validate(dumped, directory):
    """validate as a restore on this host would need it: target root ``/``, the host's
    facts, and the CRIU that will restore (not whatever ``criu`` is in PATH)."""
    host = probe_host("/", criu=(dumped.criu_version, dumped.criu))
    with open_source(str(directory)) as opened:
        return validate(opened.checkpoint, source=opened.source, target_root="/", host=host)


def _printed(criu_says, errors):
    """The line of ``errors`` where CRIU printed ``criu_says`` (one of its `` / ``
    alternatives; ``...`` stands for anything), or None."""
    for alternative in criu_says.split(" / "):
        pattern = ".*".join(re.escape(part) for part in alternative.split("..."))
        for line in errors:
            if re.search(pattern, line):
                return line
    return None


def _copy(dumped, name):
    """A copy of the dump to damage and restore (the restore writes its log there)."""
    return harness.pristine_copy(dumped.images, dumped.base / f"case-{name}")


def _clean_up(dumped):
    """Kill what a restore left running, remove its ghost files; the pids must be free."""
    left = dumped.service.kill()
    harness.remove_ghost_leftovers(dumped.workfile("service.log").parent)
    assert left == [], f"pids still there after the case: {left}"


def _codes(report):
    """validate's error codes for the table."""
    return ", ".join(f"`{code}`" for code in sorted(set(report.codes("error")))) or "no error"


def _message(report_code, report, attempt):
    """CRIU's message for the table: the line validate predicted, else the first error."""
    errors = attempt.errors()
    said = [f.criu_says for f in report.findings if f.code == report_code and f.criu_says]
    line = next((hit for says in said if (hit := _printed(says, errors))), None)
    line = line or (errors[0] if errors else "—")
    return f"`{line}`" if line != "—" else line


# -- the damage cases ---------------------------------------------------------------------------


def _pages_of(dumped, pagemap):
    """The pages image ``pagemap`` reads its pages from."""
    return next(p.name for p in dumped.checkpoint.pages_files if pagemap in p.pagemaps)


def _shared_pages(dumped):
    """The pages image of the service's MAP_SHARED anonymous region."""
    marker = next(m for m in dumped.info["markers"] if m["name"] == "shared-main")
    mapping = dumped.checkpoint.process(dumped.main).memory.find(marker["address"])
    return _pages_of(dumped, f"pagemap-shmem-{mapping.backing.shmid}.img")


def _cut(path, nbytes):
    os.truncate(path, os.path.getsize(path) - nbytes)


def _keep_original(path, base):
    """Save ``path`` aside; return the function that puts it back."""
    saved = base / f"saved-{path.name}"
    shutil.copy2(path, saved)
    return lambda: os.replace(saved, path)


def _grow(path, base):
    undo = _keep_original(path, base)
    with open(path, "ab") as f:
        f.write(b"grown after the dump\n")
    return undo


def _chmod(path, base):
    undo = _keep_original(path, base)
    os.chmod(path, 0o600)
    return undo


def _remove(path, base):
    undo = _keep_original(path, base)
    path.unlink()
    return undo


@dataclass(frozen=True)
class Case:
    """One damage: what is done, the error validate must report (None: no error),
    and what the restore does: ``fails``, ``hangs`` (CRIU never finishes),
    ``loses-memory`` (CRIU says it restored, but memory is lost) or ``restores``."""

    name: str
    code: str | None
    restore: str
    damage: Callable  # (copy, dumped) -> a function undoing damage outside the copy, or None


CASES = [
    Case("core image of the worker missing", "missing-image", "fails",
         lambda copy, d: os.unlink(copy / f"core-{d.pids[1]}.img")),
    Case("pages image of the main process missing", "missing-pages", "fails",
         lambda copy, d: os.unlink(copy / _pages_of(d, f"pagemap-{d.main}.img"))),
    Case("pages image of the main process cut by 2 pages", "pages-size", "hangs",
         lambda copy, d: _cut(copy / _pages_of(d, f"pagemap-{d.main}.img"), 8192)),
    Case("pages image of the shared memory cut by 1 page", "pages-size", "loses-memory",
         lambda copy, d: _cut(copy / _shared_pages(d), 4096)),
    Case("pagemap of the main process cut in its last entry", "bad-image", "fails",
         lambda copy, d: _cut(copy / f"pagemap-{d.main}.img", 3)),
    Case("ghost file image (deleted scratch.tmp) missing", "missing-ghost", "fails",
         lambda copy, d: os.unlink(copy / "ghost-file-1.img")),
    Case("tcp-stream image of the connection missing", "missing-tcp-stream", "fails",
         lambda copy, d: os.unlink(sorted(copy.glob("tcp-stream-*.img"))[0])),
    Case("data.bin (open O_RDWR, mapped) grew on disk", "file-size", "fails",
         lambda copy, d: _grow(d.workfile("data.bin"), d.base)),
    Case("data.bin chmod 600 on disk", "file-mode", "fails",
         lambda copy, d: _chmod(d.workfile("data.bin"), d.base)),
    Case("data.bin deleted on disk", "file-missing", "fails",
         lambda copy, d: _remove(d.workfile("data.bin"), d.base)),
    Case("service.log (O_WRONLY|O_APPEND) grew on disk", None, "restores",
         lambda copy, d: _grow(d.workfile("service.log"), d.base)),
]


def _shared_markers_intact(dumped):
    """Whether every restored process reads its shared-region markers back."""
    for marker in dumped.info["markers"]:
        if marker["kind"] != "shared":
            continue
        text = marker["text"].encode()
        with open(f"/proc/{marker['pid']}/mem", "rb") as mem:
            mem.seek(marker["address"])
            if mem.read(len(text)) != text:
                return False
    return True


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_validate_agrees_with_the_restore(case, dumped, table):
    assert harness.wait_gone(dumped.pids) == [], "the dumped pids must be free"
    copy = _copy(dumped, re.sub(r"\W+", "-", case.name))
    undo = case.damage(copy, dumped)
    try:
        report = _validate(dumped, copy)
        hang = case.restore == "hangs"
        attempt = harness.try_restore(dumped.criu, copy, pids=dumped.pids,
                                      timeout=HANG_TIMEOUT if hang else RESTORE_TIMEOUT,
                                      verbosity=2 if hang else 4)
        memory_intact = attempt.succeeded and harness.wait_until(
            lambda: all(harness.alive(p) for p in dumped.pids), 15) and \
            _shared_markers_intact(dumped)
    finally:
        try:
            _clean_up(dumped)
        finally:
            if undo:
                undo()
    errors = set(report.codes("error"))
    table.append((case.name, _codes(report),
                  attempt.outcome if case.restore != "loses-memory" or memory_intact
                  else "restored, shared memory page lost", _message(case.code, report, attempt)))

    assert errors == ({case.code} if case.code else set()), [f.message for f in report.errors]
    if case.restore == "restores":
        assert attempt.succeeded and memory_intact, attempt.errors()
        return
    if case.restore == "loses-memory":
        assert attempt.succeeded and not memory_intact, attempt.errors()
    elif case.restore == "hangs":
        assert attempt.returncode is None and attempt.errors() == []
        assert [f.criu_says for f in report.errors] == [None]  # validate knows it is silent
        return  # CRIU prints nothing: it retries the read at the end of the image forever
    else:
        assert attempt.returncode not in (0, None), attempt.outcome
    said = [f.criu_says for f in report.errors]
    assert any(_printed(says, attempt.errors()) for says in said), \
        f"validate said CRIU prints {said}; CRIU printed {attempt.errors()}"


def test_dangling_parent_link(dumped, table):
    """A ``parent`` link to a directory that is not there (a dump copied without the
    pre-dump it was made from): CRIU opens ``parent/`` whenever the link exists, even
    when no page is in the parent.  The link is made by hand: CRIU writes one only
    with ``--prev-images-dir``, which needs a pre-dump as the parent, and ``criu
    pre-dump`` needs the kernel's soft-dirty memory tracking (see docs/live.md)."""
    assert harness.wait_gone(dumped.pids) == []
    copy = _copy(dumped, "parent")
    os.symlink("../pre-dump-not-copied", copy / "parent")
    try:
        report = _validate(dumped, copy)
        attempt = harness.try_restore(dumped.criu, copy, pids=dumped.pids,
                                      timeout=RESTORE_TIMEOUT)
    finally:
        _clean_up(dumped)
    table.append(("copied without the directory `parent` links to", _codes(report),
                  attempt.outcome, _message("parent-link-broken", report, attempt)))
    assert set(report.codes("error")) == {"parent-link-broken"}
    assert attempt.returncode not in (0, None)
    finding = report.errors[0]
    assert _printed(finding.criu_says, attempt.errors()), attempt.errors()


def test_untouched_dump_restores_and_its_pids_are_then_busy(dumped, table):
    """validate has nothing against the untouched dump (not even a warning: it was made
    on this host), the restore succeeds and the tree runs and answers SIGUSR1.  While
    it runs, a second copy cannot be restored: validate predicts ``pid-busy`` for each
    of its pids and threads, and CRIU fails on the first with "File exists"."""
    assert harness.wait_gone(dumped.pids) == []
    copy = _copy(dumped, "untouched")
    second = _copy(dumped, "second")
    service, info = dumped.service, dumped.info
    try:
        report = _validate(dumped, copy)
        attempt = harness.try_restore(dumped.criu, copy, pids=dumped.pids,
                                      timeout=RESTORE_TIMEOUT)
        table.append(("untouched", "no error", attempt.outcome, "—"))
        assert (report.errors, report.warnings) == ((), ()), report.findings
        assert attempt.succeeded, attempt.errors()
        assert harness.wait_until(lambda: all(harness.alive(p) for p in dumped.pids), 15)
        assert _shared_markers_intact(dumped)
        service.info = info
        after = service.advance(timeout=30)
        assert after["stage"] == 1 and len(after["processes"]) == len(info["processes"]) + 1

        busy = _validate(dumped, second)
        blocked = harness.try_restore(dumped.criu, second, pids=(), timeout=RESTORE_TIMEOUT)
        table.append(("untouched, while the restored tree runs", _codes(busy),
                      blocked.outcome, _message("pid-busy", busy, blocked)))
        assert set(busy.codes("error")) == {"pid-busy"}
        tids = {tid for p in info["processes"] for tid in p["tids"]}
        assert {f.pid for f in busy.errors} == tids
        assert blocked.returncode not in (0, None)
        assert _printed(f"Can't fork for {dumped.main}: File exists", blocked.errors())
        assert all(harness.alive(p) for p in dumped.pids), "the failed restore hurt the tree"
        # CRIU's log of that failed restore is this checkpoint's, as the log attribution
        # reads it, and validate now quotes it
        with open_source(str(second)) as opened:
            run_id = opened.checkpoint.inventory.run_id
            failed = {i.log.name: i for i in opened.source.runs(run_id)}["restore.log"]
            logged = validate(opened.checkpoint, source=opened.source)
        assert (failed.role, failed.run.outcome, failed.run.dump_run_id) == (
            "restore", "failed", run_id)
        assert any("Restoring FAILED" in line for line in failed.failed_restore_lines)
        assert "manager-restore-failed" in logged.codes()
    finally:
        service.info = info
        _clean_up(dumped)
