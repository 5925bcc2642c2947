"""``explain`` on real CRIU failures made here: each case runs CRIU 4.2.1 on a small
process (tests/workloads/holder.py) so that it fails the way users see it, then checks
that explain names the decisive error and the catalog's cause (and says "succeeded" for
the good runs).  Every process is killed by its process group; every wait is bounded.
The whole module takes a few seconds (each CRIU run well under a second here)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from crit_plus.analysis.explain import exit_status, explain_criu_log
from crit_plus.analysis.summary import summarize
from crit_plus.analysis.validate_catalog import CAUSE
from crit_plus.opening import open_source
from tests.cli import run_cli
from tests.workloads import harness

pytestmark = pytest.mark.live

HOLDER = Path(__file__).resolve().parent / "workloads" / "holder.py"
TIMEOUT = 30


# A shell's stand-in: a session leader that starts one job in a process group of its own
# (as `sh -m` does) and waits for it.  The job's session leader is then a process of this
# machine's pid namespace, wherever the tests run (CI runs them in session 0, whose leader
# is outside the namespace, which CRIU refuses for another reason: session-outside-pidns).
_SHELL = "import subprocess, sys; sys.exit(subprocess.Popen(sys.argv[1:], process_group=0).wait())"


class Holder:
    """One holder.py process, the leader of its process group (killed by that group)."""

    def __init__(self, kind, work, *args, prefix=(), session=True):
        """``prefix``: a command the holder runs under (``unshare -m``); without
        ``session`` it is a job of a shell's session (a process group of its own under a
        session leader that is not in the tree)."""
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        command = [*prefix, sys.executable, str(HOLDER), kind, str(self.work), *map(str, args)]
        if not session:
            command = [sys.executable, "-c", _SHELL, *command]
        with open(os.devnull, "rb") as stdin, open(self.work / "out", "wb") as out:
            self.popen = subprocess.Popen(
                command, stdin=stdin, stdout=out, stderr=out, cwd=str(self.work),
                start_new_session=True, close_fds=True)
        ready = self.work / "ready"
        if not harness.wait_until(lambda: ready.exists() and ready.read_text(), TIMEOUT):
            self.kill()
            raise RuntimeError(f"holder {kind} did not start: {(self.work / 'out').read_text()}")
        # a job's pid is its own (written in its namespace: a job never gets a prefix)
        self.pid = self.popen.pid if session else int(ready.read_text())

    def kill(self):
        """SIGKILL the holder's group and (for a job) its shell's; wait, bounded."""
        harness.kill_group(self.popen.pid)
        if getattr(self, "pid", self.popen.pid) != self.popen.pid:
            harness.kill_group(self.pid)
        try:
            self.popen.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pass


def _criu(criu, *args, log):
    """Run CRIU with ``-v4 -o log``; its exit status."""
    return subprocess.run([criu, *args, "-v4", "-o", log], capture_output=True,
                          timeout=TIMEOUT, check=False).returncode


def _dump(criu, holder, name="img", *options, operation="dump"):
    images = holder.work / name
    images.mkdir()
    status = _criu(criu, operation, "-t", str(holder.pid), "-D", str(images), *options,
                   log="dump.log")
    return status, images / "dump.log"


def _explained(log, code):
    """explain's run of ``log``: failed, its decisive error is catalog entry ``code``."""
    run = explain_criu_log(log)
    assert run.outcome in ("failed", "cut short"), run
    assert run.decisive is not None and run.decisive.failure is not None, run.errors
    assert (run.decisive.failure.code, run.decisive.failure.role) == (code, CAUSE)
    assert run.decisive.number and run.decisive.before  # the lines that lead to it
    assert all(line.role == "harmless" for line in run.errors if "RLIMIT_NOFILE" in line.text)
    assert exit_status([run]) == 1
    return run


@contextlib.contextmanager
def outside_unix_peer(tmp_path):
    """A holder connected to a unix stream socket whose listener is this test: a peer
    outside the tree (CRIU: ``External socket is used``).  Killed and closed on exit."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = tmp_path / "outside.sock"
    listener.bind(str(path))
    listener.listen()
    holder = Holder("unix", tmp_path / "unix", path)
    accepted, _addr = listener.accept()  # the peer lives in this test: outside the tree
    try:
        yield holder
    finally:
        holder.kill()
        accepted.close()
        listener.close()


def test_unix_socket_to_outside_without_ext_unix_sk(criu, tmp_path):
    with outside_unix_peer(tmp_path) as holder:
        status, log = _dump(criu, holder)
        with_option, stream = _dump(criu, holder, "again", "--ext-unix-sk")
    assert status != 0 and with_option != 0
    run = _explained(log, "ext-unix-sk")
    assert run.decisive.failure.check == "needs-ext-unix-sk"
    assert run.decisive.failure.issue == "checkpoint-restore/criu#772"
    # --ext-unix-sk covers datagram peers only: a stream connection still fails, otherwise
    _explained(stream, "ext-unix-stream")


def failed_tcp_dump(criu, tmp_path):
    """The log of a real CRIU dump that failed: a process holding an established TCP
    connection, dumped without --tcp-established."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    holder = Holder("tcp", tmp_path / "tcp", port)
    accepted, _addr = listener.accept()
    try:
        status, log = _dump(criu, holder)
    finally:
        holder.kill()
        accepted.close()
        listener.close()
        harness.unlock_network([port])
    assert status != 0
    return log


def test_established_tcp_without_tcp_established(criu, tmp_path):
    log = failed_tcp_dump(criu, tmp_path)
    run = _explained(log, "tcp-established")
    # `list` names an LXD instance whose last dump failed so, with the decisive error
    root = tmp_path / "root"
    (root / "var/lib/lxd/containers/web").mkdir(parents=True)
    (root / "var/log/lxd/web").mkdir(parents=True)
    shutil.copy(log, root / "var/log/lxd/web/snapshot_dump_2026-12-01T10:00:00Z.log")
    listed = run_cli("list", env={"CRIT_PLUS_ROOT": str(root)}).stdout
    assert "lxd:web: the last dump failed" in listed
    assert f"  decisive: {run.decisive.text}" in listed
    assert f"  cause:    {run.decisive.failure.cause}" in listed
    assert run.decisive.failure.issue == "checkpoint-restore/criu#589"
    assert [line.failure.code for line in run.consequences] == ["dump-step-failed",
                                                                "dump-failed"]


def test_file_lock_without_file_locks(criu, tmp_path):
    holder = Holder("lock", tmp_path / "lock")
    try:
        status, log = _dump(criu, holder)
    finally:
        holder.kill()
    assert status != 0
    _explained(log, "file-locks")


def test_deleted_file_over_the_ghost_limit(criu, tmp_path):
    holder = Holder("ghost", tmp_path / "ghost")
    try:
        status, log = _dump(criu, holder, "img", "--ghost-limit", "4096")
    finally:
        holder.kill()
    assert status != 0
    _explained(log, "ghost-limit")


def test_pre_dump_and_track_mem_without_dirty_tracking(criu, tmp_path):
    """This kernel has no soft-dirty tracking: a pre-dump aborts on CRIU's BUG_ON (the
    log is cut short), --track-mem is refused."""
    probe = subprocess.run([criu, "check", "--feature", "mem_dirty_track"],
                           capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if probe.returncode == 0:
        pytest.skip("this kernel tracks dirty memory: a pre-dump works here")
    assert "Dirty tracking is OFF" in probe.stdout + probe.stderr
    holder = Holder("plain", tmp_path / "plain")
    try:
        _status, pre = _dump(criu, holder, "pre", operation="pre-dump")
        status, tracked = _dump(criu, holder, "tracked", "--track-mem")
    finally:
        holder.kill()
    assert status != 0
    run = _explained(pre, "predump-no-dirty-track")
    assert (run.operation, run.outcome) == ("pre-dump", "cut short")
    assert _explained(tracked, "track-mem-unavailable").operation == "dump"


def test_criu_check_log(criu, tmp_path):
    """`criu check -v4 -o` logs no last line (its verdict goes to stdout): no failure."""
    log = tmp_path / "check.log"
    status = _criu(criu, "check", log=str(log))
    run = explain_criu_log(log)
    assert run.operation == "check" and run.decisive is None
    assert status == 0 and run.outcome == "no failure logged"  # the criu fixture checked it
    assert exit_status([run]) == 0


def test_restore_into_busy_pids_and_a_good_dump(criu, tmp_path):
    holder = Holder("plain", tmp_path / "busy")
    try:
        status, log = _dump(criu, holder, "img", "--leave-running")
        assert status == 0
        good = explain_criu_log(log)
        assert (good.operation, good.outcome, good.decisive) == ("dump", "succeeded", None)
        assert [line.failure.code for line in good.harmless] == ["rlimit-nofile"]
        assert exit_status([good]) == 0
        status = _criu(criu, "restore", "-D", str(log.parent), "-d", log="restore.log")
    finally:
        holder.kill()
    assert status != 0
    run = _explained(log.parent / "restore.log", "pid-busy")
    assert run.operation == "restore" and run.dump_run_id == good.run_id
    assert run.decisive.failure.check == "pid-busy"
    # summarize's LOGS and validate's manager-restore-failed read it the same way
    with open_source(str(log.parent)) as opened:
        summary = summarize(opened.source, opened.checkpoint)
    restore, = [entry for entry in summary.logs if entry.name == "restore.log"]
    assert (restore.role, restore.outcome, restore.catalog) == ("restore", "failed", "pid-busy")
    assert restore.decisive == run.decisive.text and restore.errors[0] == restore.decisive
    assert restore.failed_restore[0] == restore.decisive
    text = run_cli("validate", log.parent).stdout
    assert "manager-restore-failed" in text and "(cause: a pid the tree needs is in use" in \
        " ".join(text.split())


def test_restore_of_a_changed_file_then_a_good_restore(criu, tmp_path):
    work = tmp_path / "file"
    work.mkdir()
    (work / "data").write_text("hello")
    holder = Holder("file", work)
    pidfile = work / "restored.pid"
    try:
        status, log = _dump(criu, holder)
        assert status == 0 and harness.wait_gone([holder.pid], TIMEOUT) == []
        (work / "data").write_text("hello, world")
        status = _criu(criu, "restore", "-D", str(log.parent), "-d", log="restore.log")
        assert status != 0
        (work / "data").write_text("hello")
        # the failed restore's process (the dump's pid) must be gone before the next one
        assert harness.wait_gone([holder.pid], TIMEOUT) == []
        good = _criu(criu, "restore", "-D", str(log.parent), "-d", "--pidfile", str(pidfile),
                     log="restore2.log")
    finally:
        holder.kill()
        if pidfile.exists():
            harness.kill_group(int(pidfile.read_text()))
    run = _explained(log.parent / "restore.log", "file-size")
    # CRIU's chain: the child's error, then "Unable to open fd", and "Restoring FAILED."
    # with (often) "N exited" before or after it: the root task and its child log apart
    assert "has bad size 12 (expect 5)" in run.decisive.text
    codes = [line.failure.code for line in run.consequences]
    assert codes[0] == "restore-open-fd" and "restore-failed" in codes[1:], codes
    assert set(codes[1:]) <= {"restore-failed", "restore-child-exited"}, codes
    assert good == 0, explain_criu_log(log.parent / "restore2.log").decisive
    # the whole directory through the CLI: a failed restore, so exit 1; both runs named
    result = run_cli("explain", log.parent, check=False)
    assert result.returncode == 1
    assert result.stdout.count("outcome:  succeeded") == 2  # the dump and the second restore
    assert result.stdout.count("outcome:  failed") == 1
    assert "cause:    a file the processes hold changed size since the dump" in result.stdout


def test_a_shell_job_without_shell_job(criu, tmp_path):
    """A process started as a shell starts a job (in the shell's session): CRIU refuses
    to dump it without --shell-job; explain says so (the catalog once answered any
    unknown line with missing-image's cause and unfilled placeholders)."""
    holder = Holder("plain", tmp_path / "job", session=False)
    try:
        status, log = _dump(criu, holder)
        with_option, good = _dump(criu, holder, "again", "--shell-job", "--leave-running")
    finally:
        holder.kill()
    assert status != 0 and with_option == 0
    run = _explained(log, "not-session-leader")
    assert run.operation == "dump" and run.decisive.failure.operation == "dump"
    assert "is not a session leader" in run.decisive.text
    assert "--shell-job" in run.decisive.failure.fix
    text = run_cli("explain", log, check=False).stdout
    assert "cause:    the tree's root process shares its session" in text
    assert not re.search(r"<[a-z_]+>", text)
    assert explain_criu_log(good).outcome == "succeeded"


@pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare(1)")
def test_a_session_leader_outside_the_pid_namespace(criu, tmp_path):
    """``unshare -pf PROGRAM`` (no setsid): the program is its pid namespace's init, in
    the session of `unshare`, which is outside the namespace (session 0 there).  CRIU
    refuses the dump with or without --shell-job; explain names the cause (this is how
    CI's session 0 once failed the --shell-job test above)."""
    holder = Holder("plain", tmp_path / "pidns", prefix=("unshare", "--pid", "--fork"))
    try:
        children = Path(f"/proc/{holder.pid}/task/{holder.pid}/children").read_text().split()
        assert len(children) == 1, children  # unshare waits for its one child
        holder.pid = int(children[0])
        assert (tmp_path / "pidns" / "ready").read_text() == "1"  # init of its namespace
        status, log = _dump(criu, holder)
        with_option, _log = _dump(criu, holder, "again", "--shell-job")
    finally:
        holder.kill()
    assert status != 0 and with_option != 0
    run = _explained(log, "session-outside-pidns")
    assert f"A session leader of {holder.pid}(1) is outside" in run.decisive.text
    text = run_cli("explain", log, check=False).stdout
    assert "cause:    a process of the tree belongs to a session whose leader" in text
    assert "setsid PROGRAM" in text and not re.search(r"<[a-z_]+>", text)


def _file_key(pid, fd):
    """``file[MNT:INODE]`` (hex, as CRIU names an external file) of a file or device
    ``fd`` of ``pid`` holds; None for a pipe or socket."""
    try:
        info = os.stat(f"/proc/{pid}/fd/{fd}")
        fdinfo = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
    except OSError:
        return None
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISCHR(info.st_mode)):
        return None
    mnt_id = int(re.search(r"mnt_id:\s*(\d+)", fdinfo).group(1))
    return f"file[{mnt_id:x}:{info.st_ino:x}]"


@pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare(1)")
def test_a_host_file_held_in_a_mount_namespace(criu, tmp_path):
    """``unshare -m``: the holder's stdin, stdout and stderr are the host's /dev/null and a
    file, on mounts its own namespace does not have; --external file[MNT:INODE] lets the
    dump through, as the catalog's fix says.  The restore half of the fix: without --root
    CRIU 4.2.1 crashes (mntns-no-root; compat mode says so: mntns-root-required); with
    --root / and --inherit-fd fd[N]:file[MNT:INODE] the tree comes back holding the files
    given to it."""
    work = tmp_path / "mntns"
    holder = Holder("plain", work, prefix=("unshare", "-m", "--propagation", "private"))
    restored = held = None
    try:
        status, log = _dump(criu, holder)
        fds = {fd: _file_key(holder.pid, fd) for fd in os.listdir(f"/proc/{holder.pid}/fd")}
        keys = sorted({key for key in fds.values() if key})
        external, again = _dump(criu, holder, "external",
                                *(arg for key in keys for arg in ("--external", key)))
        assert external == 0, explain_criu_log(again).decisive
        assert harness.wait_gone([holder.pid], TIMEOUT) == []
        images = again.parent
        given = work / "given"
        with open(os.devnull, "rb") as null, open(given, "wb") as out:
            inherit = {key: (null if key == fds["0"] else out).fileno() for key in keys}
            options = [arg for key, fd in inherit.items()
                       for arg in ("--inherit-fd", f"fd[{fd}]:{key}")]

            def restore(log_name, *extra):
                return subprocess.run(
                    [criu, "restore", "-D", str(images), "-d", "-v4", "-o", log_name, *extra,
                     *options], pass_fds=sorted(set(inherit.values())), capture_output=True,
                    timeout=TIMEOUT, check=False).returncode

            no_root = restore("restore.log")
            assert harness.wait_gone([holder.pid], TIMEOUT) == []
            compat = restore("restore-compat.log", "--mntns-compat-mode")
            assert harness.wait_gone([holder.pid], TIMEOUT) == []
            good = restore("restore-root.log", "--root", "/", "--pidfile", str(work / "pid"))
        if good == 0:
            restored = int((work / "pid").read_text())
            held = {fd: os.readlink(f"/proc/{restored}/fd/{fd}") for fd in ("0", "1", "2")}
    finally:
        holder.kill()
        if restored:
            harness.kill_group(restored, [restored])
    assert status != 0
    run = _explained(log, "mount-not-in-tree")
    assert re.search(r"Can't lookup mount=\d+ for fd=\d+ path=/dev/null", run.decisive.text)
    assert "--external file[MNT:INODE]" in run.decisive.failure.fix
    assert "--root" in run.decisive.failure.fix
    assert no_root != 0 and compat != 0
    fix = _explained(images / "restore.log", "mntns-no-root").decisive.failure.fix
    assert "--root DIR" in fix
    _explained(images / "restore-compat.log", "mntns-root-required")
    assert good == 0, explain_criu_log(images / "restore-root.log").decisive
    assert held == {"0": os.devnull, "1": str(given), "2": str(given)}
