"""``validate`` on real dumps of CRIU's own zdtm test programs, against real restores.

A few zdtm programs (test/zdtm/static of the CRIU source tree the pinned CRIU was built
from) are compiled into a temporary copy of the tree, started the way zdtm's Makefile
starts them (``make NAME.pid``: the program daemonizes in its own session), dumped with
the options a user gives (``--shell-job --tcp-established --ext-unix-sk --file-locks
--link-remap``), validated (target root ``/``, this host's facts) and restored; SIGTERM then
asks the restored program for its own verdict (PASS or FAIL in ``NAME.out``).  Where the
restore passed, validate must report no error: zombies (a zombie's thread id is left unset
by CRIU), guard regions (``maps12``: VMA_AREA_GUARD entries inside VMAs), deleted files
(``unlink_fstat00``, ``ghost_holes00``), the vDSO (``vdso01``), two processes sharing a
pipe (``pipe00``) and a process without fds (``fd``: CRIU writes no fdinfo image for it,
a warning only).

Then each image CRIU always writes (``ALWAYS_WRITTEN``, and the fdinfo images) is removed in
turn from a copy of ``pipe00``'s dump: validate must name it in an error, the restore must do
what the table says (fail, or restore without what the image held), and CRIU's log must hold
the message validate says CRIU prints.  A program with twelve deleted files (remap ids past 9:
``ghost-file-a.img``...) checks the hex ghost-file names against a real dump.

Only programs whose ``.desc`` allows the host flavor (``h``) run here (the others change the
host unless run in namespaces).  Every started or restored program is killed by its pid and
waited for; nothing is left outside the temporary directories.  ``-s`` prints the table.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import crit_plus
from crit_plus.analysis.host import probe_host
from crit_plus.analysis.validate import validate
from crit_plus.analysis.validate_catalog import CHECKS, always_written
from tests.workloads import harness

pytestmark = pytest.mark.live

OPTIONS = ("--shell-job", "--tcp-established", "--ext-unix-sk", "--file-locks", "--link-remap")
PROGRAMS = ("zombie00", "zombie01", "maps12", "unlink_fstat00", "ghost_holes00", "vdso01",
            "pipe00", "fd")
DAMAGED = "pipe00"  # two living processes, each with its own fdinfo image
#: What ``criu restore`` does without each image of ``pipe00``'s dump (by kind): the
#: table in docs/validate.md says why.
RESTORES_WITHOUT = {"seccomp": True, "timens": True}
BUILD_TIMEOUT = 300
RUN_TIMEOUT = 30


def _criu_version(criu):
    out = subprocess.run([criu, "--version"], capture_output=True, text=True, timeout=30,
                         check=False)
    return ".".join(map(str, harness.parse_version(out.stdout)))


@pytest.fixture(scope="module")
def zdtm(criu, tmp_path_factory):
    """A private copy of the CRIU source tree's test/zdtm with its library built."""
    source = Path(criu).resolve().parents[1] / "src" / "test" / "zdtm"
    if not (source / "static" / "Makefile").exists():
        message = f"no zdtm sources at {source} (run `make criu`)"
        if os.environ.get("CRIT_PLUS_LIVE") == "required":
            pytest.fail(message)
        pytest.skip(message)
    top = tmp_path_factory.mktemp("zdtm") / "zdtm"
    shutil.copytree(source, top, symlinks=True)
    _make(top / "lib")
    return top


@pytest.fixture(scope="module")
def host(criu):
    return probe_host("/", criu=(_criu_version(criu), criu))


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


def _make(directory, *targets):
    done = subprocess.run(["make", "-s", "-C", str(directory), *targets], capture_output=True,
                          text=True, timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL,
                          check=False)
    assert done.returncode == 0, f"make {' '.join(targets)}: {done.stderr[-2000:]}"


def _host_flavor(static, name):
    """True when the program may run on the host (its .desc lists flavor h, or no flavor)."""
    desc = static / f"{name}.desc"
    if not desc.exists():
        return True
    flavor = ast.literal_eval(desc.read_text()).get("flavor")
    return flavor is None or "h" in flavor.split()


class Program:
    """One zdtm program of the copy: started, dumped, restored, asked for its verdict."""

    def __init__(self, zdtm, name, base):
        self.static = zdtm / "static"
        self.name = name
        self.base = base
        self.images = base / "images"
        self.pids = []
        self.pid = None

    def path(self, suffix):
        return self.static / f"{self.name}{suffix}"

    def start(self):
        for suffix in (".pid", ".out", ".out.inprogress"):
            self.path(suffix).unlink(missing_ok=True)
        done = subprocess.run(["make", "-s", "-C", str(self.static), f"{self.name}.pid"],
                              capture_output=True, text=True, timeout=RUN_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0 or not self.path(".pid").exists():
            out = self.path(".out.inprogress")
            reason = out.read_text()[-500:] if out.exists() else done.stderr[-500:]
            pytest.skip(f"{self.name} cannot start on this kernel: {reason.strip()}")
        self.pid = int(self.path(".pid").read_text())
        self.pids = [self.pid]

    def dump(self, criu):
        harness.dump(criu, self.pid, self.images, leave_running=False, options=OPTIONS)
        self.pids = list(crit_plus.open_checkpoint(self.images).pids)
        assert harness.wait_gone(self.pids) == [], "the dumped tree is still there"
        shutil.copy2(self.path(".out.inprogress"), self.base / "outfile")

    def prepare(self):
        """Put the output file back as the dump left it (the restore reopens it)."""
        shutil.copy2(self.base / "outfile", self.path(".out.inprogress"))
        self.path(".out").unlink(missing_ok=True)

    def restore(self, criu, directory):
        """``criu restore -d`` of ``directory``; the :class:`harness.Attempt`."""
        self.prepare()
        return harness.try_restore(criu, directory, pids=self.pids, options=OPTIONS)

    def verdict(self):
        """SIGTERM the restored program, wait for it; the last line of its output."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        harness.wait_until(lambda: not harness.alive(self.pid), RUN_TIMEOUT)
        self.kill()
        out = self.path(".out")
        lines = out.read_text(errors="replace").splitlines() if out.exists() else []
        return lines[-1] if lines else "(no output)"

    def kill(self):
        left = harness.kill_group(self.pid, self.pids)
        assert left == [], f"pids still there: {left}"


@pytest.fixture(scope="module")
def dumped(criu, zdtm, tmp_path_factory):
    """name → the :class:`Program`, dumped (built, started and dumped on first use)."""
    programs = {}

    def get(name):
        if name not in programs:
            program = Program(zdtm, name, tmp_path_factory.mktemp(name))
            if not _host_flavor(program.static, name):
                pytest.skip(f"{name} runs only in namespaces (its .desc)")
            _make(program.static, name)
            program.start()
            try:
                program.dump(criu)
            except BaseException:
                program.kill()
                raise
            programs[name] = program
        return programs[name]

    yield get
    for program in programs.values():
        program.kill()


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
def test_no_error_on_a_dump_that_restores_and_passes(name, dumped, criu, host, table):
    program = dumped(name)
    report = _validate(program.images, host)
    restored = harness.pristine_copy(program.images, program.base / "restored")
    attempt = program.restore(criu, restored)
    verdict = program.verdict() if attempt.returncode == 0 else "—"
    table.append((name, _errors(report), f"exit {attempt.returncode}", _short(verdict), "—"))
    assert attempt.returncode == 0, attempt.errors()
    assert verdict.endswith("PASS"), verdict
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
def test_a_missing_written_image_is_an_error_and_the_restore_agrees(kind, dumped, criu,
                                                                    host, table):
    program = dumped(DAMAGED)
    names = [name for name in _written(program.images)
             if name == kind or name.startswith(kind + "-")]
    assert names, f"{DAMAGED}'s dump has no {kind} image"
    for name in names:
        copy = harness.pristine_copy(program.images, program.base / f"without-{name}")
        (copy / name).unlink()
        (copy / "restore.log").unlink(missing_ok=True)
        program.prepare()
        report = _validate(copy, host)
        naming = [f for f in report.errors if name in (f.image, f.where)]
        assert naming, f"no error names {name}: {[(f.code, f.where) for f in report.findings]}"
        finding = naming[0]
        attempt = program.restore(criu, copy)
        verdict = program.verdict() if attempt.returncode == 0 else "—"
        program.kill()
        line = _logged(finding.criu_says, copy / "restore.log") if finding.criu_says else None
        table.append((f"{DAMAGED} without {name}", _errors(report),
                      f"exit {attempt.returncode}", _short(verdict), _message(line)))
        written = always_written(name)
        if written is not None and RESTORES_WITHOUT.get(written.kind):
            assert attempt.returncode == 0 and verdict.endswith("PASS"), (name, verdict)
        else:
            assert attempt.returncode != 0, f"{name}: restored ({verdict})"
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
