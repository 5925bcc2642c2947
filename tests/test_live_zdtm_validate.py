"""``validate`` on real dumps of CRIU's own zdtm test programs, against real restores.

A few zdtm programs go through the harness of ``make zdtm`` (tests/workloads/zdtm.py: built
from the CRIU source tree the pinned CRIU was built from into build/zdtm/, started the way
zdtm's Makefile starts them, dumped with the options a user gives (``--shell-job
--tcp-established --ext-unix-sk --file-locks --link-remap``, plus the ``.desc``'s own),
restored detached, asked by SIGTERM for their own verdict; results cached per CRIU version
under build/zdtm/<version>/, shared with tests/test_zdtm.py).  Each dump is validated
(target root ``/``, this host's facts): where the restore passed, validate must report no
error: zombies (a zombie's thread id is left unset by CRIU), guard regions (``maps12``:
VMA_AREA_GUARD entries inside VMAs), deleted files (``unlink_fstat00``, ``ghost_holes00``),
the vDSO (``vdso01``), two processes sharing a pipe (``pipe00``) and a process without fds
(``fd``: CRIU writes no fdinfo image for it, a warning only).

Then each image CRIU always writes (``ALWAYS_WRITTEN``, and the fdinfo images) is removed in
turn from a copy of ``pipe00``'s cached dump (the cache is never written): validate must name
it in an error, the restore of the copy (:func:`zdtm.restore_copy`) must do what the table
says (fail, or restore without what the image held), and CRIU's log must hold the message
validate says CRIU prints.  A program with twelve deleted files (remap ids past 9:
``ghost-file-a.img``...) checks the hex ghost-file names against a real dump.

Only programs the harness lets run here (host flavor, :func:`zdtm.plan`) run.  Every started
or restored program is killed by its pid and waited for; nothing is left outside build/ and
the temporary directories.  ``-s`` prints the table.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

import crit_plus
from crit_plus.analysis.host import probe_host
from crit_plus.analysis.validate import validate
from crit_plus.analysis.validate_catalog import CHECKS, always_written
from tests.workloads import harness, zdtm

pytestmark = pytest.mark.live

PROGRAMS = ("zombie00", "zombie01", "maps12", "unlink_fstat00", "ghost_holes00", "vdso01",
            "pipe00", "fd")
DAMAGED = "pipe00"  # two living processes, each with its own fdinfo image
#: What ``criu restore`` does without each image of ``pipe00``'s dump (by kind): the
#: table in docs/validate.md says why.
RESTORES_WITHOUT = {"seccomp": True, "timens": True}
RUN_TIMEOUT = 30


def _pids(images):
    """Every pid and thread id of a dump (the graph's thread list)."""
    return [thread.tid for process in crit_plus.open_checkpoint(images).processes
            for thread in process.threads]


def _restorable_now(result):
    """The harness can restore ``result``'s dump here (:func:`zdtm.restorable`) and none
    of its pids is in use now (those of a dump cached earlier may be taken since)."""
    return zdtm.restorable(result) and \
        not any(harness.exists(pid) for pid in _pids(zdtm.images_dir(result)))


@pytest.fixture(scope="module")
def results(criu):
    """name → the harness's :class:`zdtm.Result`: a cached one is reused (as
    tests/test_zdtm.py's sample is) when it passed and can be restored again now;
    else the program runs again."""
    _, found = zdtm.run_all(criu, PROGRAMS, retry=True, reuse=_restorable_now)
    return {r.test: r for r in found}


@pytest.fixture(scope="module")
def damaged(results):
    """The :class:`zdtm.Result` of :data:`DAMAGED`, restored and passed."""
    result = results[DAMAGED]
    assert result.passed, f"{DAMAGED}: {result.reason or result.verdict}"
    return result


@pytest.fixture(scope="module")
def host(criu):
    return probe_host("/", criu=(zdtm.criu_version(criu), criu))


@pytest.fixture(scope="module")
def table():
    rows = []
    yield rows
    if rows:
        print("\n\n| program or case | validate (errors) | `criu restore -d` | verdict "
              "| CRIU's message |")
        print("| --- | --- | --- | --- | --- |")
        for row in rows:
            print("| " + " | ".join(row) + " |")


def _validate(directory, host):
    return validate(crit_plus.open_checkpoint(directory), target_root="/", host=host)


def _short(verdict):
    """``PASS`` or ``FAIL`` out of a zdtm output line (``14:07:37.826: 16438: PASS``)."""
    return verdict.rsplit(": ", 1)[-1]


def _message(line):
    """A CRIU log line for the table: the message after ``Error (file:line):``/``Warn``."""
    if line is None:
        return "—"
    text = re.sub(r"^\(\s*[\d.]+\)\s*(?:\d+: )?(?:pie: \d+: )?", "", line)
    text = re.sub(r"^(?:Error|Warn)\s*\([^)]*\): ", "", text)
    return "`" + re.sub(r"/\S*/without-", ".../without-", text).replace("|", "\\|") + "`"


def _errors(report):
    return ", ".join(f"`{code}`" for code in sorted(report.codes("error"))) or "no error"


@pytest.mark.parametrize("name", PROGRAMS)
def test_no_error_on_a_dump_that_restores_and_passes(name, results, host, table):
    result = results[name]
    if not result.started:
        pytest.skip(f"{name} does not run here: {result.reason}")
    assert result.dumped, result.reason
    with zdtm.as_dumped(result):
        report = _validate(zdtm.images_dir(result), host)
    table.append((name, _errors(report), "exit 0" if result.restored else "failed",
                  _short(result.verdict or "—"), "—"))
    assert result.restored, result.reason
    assert result.verdict == "PASS", result.reason
    assert [(f.code, f.message) for f in report.errors] == []
    if name == "fd":
        assert [f.code for f in report.warnings] == ["no-fdinfo"]


def _written(images):
    """The images of a dump the table lists, and its fdinfo images."""
    return sorted(path.name for path in images.iterdir()
                  if always_written(path.name) is not None or path.name.startswith("fdinfo-"))


def _logged(says, log):
    """The line of ``log`` holding one of the `` / `` alternatives of ``says``."""
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    for alternative in says.split(" / "):
        pattern = ".*".join(re.escape(part.strip()) for part in alternative.split("..."))
        for line in text:
            if re.search(pattern, line):
                return line
    return None


def _damage_cases():
    return ["inventory.img", "pstree.img", "files.img", "seccomp.img", "timens-0.img",
            "core", "ids", "mm", "fs", "pagemap", "fdinfo"]


@pytest.mark.parametrize("kind", _damage_cases())
def test_a_missing_written_image_is_an_error_and_the_restore_agrees(kind, damaged, criu,
                                                                    host, table, tmp_path):
    images = zdtm.images_dir(damaged)
    pids = _pids(images)
    names = [name for name in _written(images) if name == kind or name.startswith(kind + "-")]
    assert names, f"{DAMAGED}'s dump has no {kind} image"
    for name in names:
        copy = harness.pristine_copy(images, tmp_path / f"without-{name}")
        (copy / name).unlink()
        with zdtm.as_dumped(damaged):
            report = _validate(copy, host)
        naming = [f for f in report.errors if name in (f.image, f.where)]
        assert naming, f"no error names {name}: {[(f.code, f.where) for f in report.findings]}"
        finding = naming[0]
        restore = zdtm.restore_copy(damaged, copy, criu, pids)
        assert restore.left == [], f"pids still there: {restore.left}"
        verdict = restore.verdict or "—"
        line = _logged(finding.criu_says, restore.log) if finding.criu_says else None
        table.append((f"{DAMAGED} without {name}", _errors(report),
                      f"exit {restore.returncode}", _short(verdict), _message(line)))
        written = always_written(name)
        if written is not None and RESTORES_WITHOUT.get(written.kind):
            assert restore.returncode == 0 and verdict == "PASS", (name, verdict)
        else:
            assert restore.returncode != 0, f"{name}: restored ({verdict})"
        if finding.criu_says is not None:
            assert line, (name, finding.criu_says)


GHOSTS = r'''
import os, signal, sys
directory, out = sys.argv[1], sys.argv[2]
def data(i):
    return f"deleted file {i}\n".encode() * (i + 1)
fds = []
for i in range(12):
    path = os.path.join(directory, f"ghost{i}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, data(i))
    os.unlink(path)
    fds.append(fd)
def check(*_):
    ok = all(os.pread(fd, 4096, 0) == data(i) for i, fd in enumerate(fds))
    with open(out, "w") as f:
        f.write("PASS\n" if ok else "FAIL\n")
    os._exit(0)
signal.signal(signal.SIGTERM, check)
open(os.path.join(directory, "ready"), "w").close()
while True:
    signal.pause()
'''


def test_twelve_deleted_files_have_hex_ghost_images(criu, host, tmp_path, table):
    """CRIU names the contents of deleted files ``ghost-file-%x.img`` (remap ids 1..0xc)."""
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "verdict"
    with open(os.devnull, "rb") as stdin, open(tmp_path / "stderr", "wb") as stderr:
        popen = subprocess.Popen([sys.executable, "-c", GHOSTS, str(work), str(out)],
                                 stdin=stdin, stdout=stderr, stderr=stderr, cwd=str(work),
                                 start_new_session=True)
    pids = [popen.pid]
    try:
        assert harness.wait_until(lambda: (work / "ready").exists(), RUN_TIMEOUT)
        images = tmp_path / "images"
        harness.dump(criu, popen.pid, images, leave_running=False,
                     options=("--file-locks", "--link-remap"))
        popen.wait(RUN_TIMEOUT)
        assert {f"ghost-file-{i:x}.img" for i in range(1, 13)} <= \
            {path.name for path in images.iterdir()}
        checkpoint = crit_plus.open_checkpoint(images)
        deleted = [file for file in checkpoint.files if file.details.get("deleted")]
        assert len(deleted) == 12
        assert all(checkpoint.files.ghost(file.id) is not None for file in deleted)
        report = _validate(images, host)
        assert [(f.code, f.message) for f in report.errors] == []

        copy = harness.pristine_copy(images, tmp_path / "without-b")
        (copy / "ghost-file-b.img").unlink()
        damaged = _validate(copy, host)
        assert [(f.code, f.where) for f in damaged.errors] == [
            ("missing-ghost", "ghost-file-b.img")]
        attempt = harness.try_restore(criu, copy, pids=pids,
                                      options=("--file-locks", "--link-remap"))
        harness.kill_group(popen.pid, pids)
        harness.remove_ghost_leftovers(work)
        assert attempt.returncode != 0
        assert _logged(CHECKS["missing-ghost"].criu_says, copy / "restore.log")

        attempt = harness.try_restore(criu, harness.pristine_copy(images, tmp_path / "whole"),
                                      pids=pids, options=("--file-locks", "--link-remap"))
        assert attempt.returncode == 0, attempt.errors()
        os.kill(popen.pid, signal.SIGTERM)
        harness.wait_until(lambda: out.exists() and out.read_text(), RUN_TIMEOUT)
        verdict = out.read_text().strip() if out.exists() else "(no verdict)"
        table.append(("12 deleted files", _errors(report), f"exit {attempt.returncode}",
                      verdict, "—"))
        assert verdict == "PASS"
    finally:
        assert harness.kill_group(popen.pid, pids) == []
        popen.poll()
        harness.remove_ghost_leftovers(work)
