"""Run real CRIU on the service workload: find CRIU, start, dump, restore, clean up.

Used by ``tests/test_live.py`` and ``fixtures/make-fixtures``; only the
standard library.  Every wait is bounded; every process started here can be
killed by its process group (the service runs in its own session, so its
pgid is its pid, and a restored tree keeps it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PINNED_VERSION = "4.2.1"
MIN_VERSION = (4, 2)
#: Where scripts/install-criu caches its build (``$CRIT_PLUS_CACHE`` moves it).
DEFAULT_CRIU = os.path.join(os.environ.get("CRIT_PLUS_CACHE") or "/var/cache/crit-plus",
                            f"criu-{PINNED_VERSION}", "bin", "criu")
SERVICE = Path(__file__).resolve().with_name("service.py")
ENV_MARKER = "CRIT_PLUS_LIVE_MARKER"

# `--tcp-established`: the service holds an established TCP connection;
# `--file-locks`: harmless without locks, needed with them;
# `--link-remap`: lets CRIU link-remap a deleted file it cannot ghost.
# No `--shell-job`: the service has no terminal (its own session, stdio on files).
DUMP_OPTIONS = ("--tcp-established", "--file-locks", "--link-remap")
RESTORE_OPTIONS = ("--tcp-established", "--file-locks", "--link-remap")

# CRIU's iptables network lock marks its own packets with this (criu/netfilter.c).
CRIU_LOCK_MARK = "0xc114"


class CriuError(RuntimeError):
    """A CRIU command failed; the message carries the end of its log."""


# -- finding CRIU -------------------------------------------------------------------


def parse_version(text):
    """``"Version: 4.2.1"`` → ``(4, 2, 1)``, or None."""
    for line in text.splitlines():
        if line.startswith("Version:"):
            parts = line.split(":", 1)[1].strip().split(".")
            try:
                return tuple(int(p) for p in parts)
            except ValueError:
                return None
    return None


def find_criu():
    """``(path, None)`` for a usable CRIU, or ``(None, reason)``.

    Looks at ``$CRIT_PLUS_CRIU``, then the path ``scripts/install-criu``
    installs to.  Usable: root, version >= 4.2, and ``criu check`` passes.
    """
    if os.geteuid() != 0:
        return None, "CRIU needs root to dump and restore; run the live tests as root"
    candidate = os.environ.get("CRIT_PLUS_CRIU") or DEFAULT_CRIU
    where = "$CRIT_PLUS_CRIU" if os.environ.get("CRIT_PLUS_CRIU") else "the default path"
    if not os.path.isfile(candidate) or not os.access(candidate, os.X_OK):
        return None, (f"no CRIU at {candidate} ({where}); run `make criu` "
                      "(scripts/install-criu) or set CRIT_PLUS_CRIU")
    try:
        out = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"{candidate} --version failed: {error}"
    version = parse_version(out.stdout)
    if version is None or version[:2] < MIN_VERSION:
        return None, (f"{candidate} is CRIU {out.stdout.strip() or '?'}; the live tests need "
                      f">= {'.'.join(map(str, MIN_VERSION))} (run `make criu`)")
    ok, output = criu_check(candidate)
    if not ok:
        last = output.strip().splitlines()[-1:] or ["(no output)"]
        return None, f"`{candidate} check` fails on this machine: {last[0]}"
    return candidate, None


def criu_check(criu):
    """``(ok, output)`` of ``criu check`` (warnings are fine, a failure is not)."""
    try:
        out = subprocess.run([criu, "check"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, str(error)
    return out.returncode == 0, out.stdout + out.stderr


# -- processes ------------------------------------------------------------------------


def alive(pid):
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def exists(pid):
    """True while ``pid`` is taken (also by a zombie)."""
    return os.path.exists(f"/proc/{pid}")


def wait_until(predicate, timeout, interval=0.05):
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def _reap(pids):
    """Collect the ones of ``pids`` that are our own exited children."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def wait_gone(pids, timeout=15):
    """Wait until none of ``pids`` exists any more (not even as a zombie).

    A restore into the same pid namespace needs the old pids free, else CRIU
    fails with "Can't fork for N: File exists".  Our own children are reaped
    here; the others are reaped by init.  Returns the pids still there.
    """
    pids = sorted(set(pids))

    def gone():
        _reap(pids)
        return not any(exists(p) for p in pids)

    wait_until(gone, timeout)
    return [p for p in pids if exists(p)]


def kill_group(pgid, pids=(), timeout=10):
    """SIGKILL process group ``pgid`` and ``pids``; wait (bounded) until they are gone."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in sorted(set(pids) - {pgid}):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return wait_gone([pgid, *pids], timeout)


class Service:
    """The service workload (tests/workloads/service.py), running detached.

    ``start`` launches it in a new session (``setsid``) with stdin on
    /dev/null and stdout/stderr on files, and waits for its INFO_JSON.
    """

    def __init__(self, popen, workdir, info_path, log_dir):
        self.popen = popen
        self.pid = popen.pid
        self.workdir = Path(workdir)
        self.info_path = Path(info_path)
        self.log_dir = Path(log_dir)
        self.info = None
        self.seen_pids = {self.pid}

    @classmethod
    def start(cls, workdir, info_path, *, python=None, marker="live", log_dir=None, timeout=30):
        workdir = Path(workdir)
        log_dir = Path(log_dir or workdir.parent)
        workdir.mkdir(parents=True, exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)
        info_path = Path(info_path)
        if info_path.exists():
            info_path.unlink()
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", ENV_MARKER: marker}
        with open(os.devnull, "rb") as stdin, \
                open(log_dir / "service.out", "ab") as stdout, \
                open(log_dir / "service.err", "ab") as stderr:
            popen = subprocess.Popen(
                [python or sys.executable, str(SERVICE), str(workdir), str(info_path)],
                stdin=stdin, stdout=stdout, stderr=stderr, cwd=str(workdir), env=env,
                start_new_session=True, close_fds=True)
        service = cls(popen, workdir, info_path, log_dir)
        try:
            service.wait_stage(0, timeout)
        except BaseException:
            service.kill()
            raise
        return service

    @property
    def pgid(self):
        return self.pid

    @property
    def pids(self):
        """Every pid of the tree as last reported."""
        return [p["pid"] for p in self.info["processes"]] if self.info else [self.pid]

    def read_info(self):
        try:
            return json.loads(self.info_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def wait_stage(self, stage, timeout=30):
        """Wait until INFO_JSON reports ``stage``; return it."""
        def ready():
            info = self.read_info()
            return info if info is not None and info["stage"] >= stage else None
        info = wait_until(ready, timeout)
        if info is None:
            err = (self.log_dir / "service.err")
            tail = err.read_text()[-2000:] if err.exists() else ""
            raise TimeoutError(f"service {self.pid} did not reach stage {stage} in {timeout} s"
                               f" (exit {self.popen.poll()}); stderr: {tail}")
        self.info = info
        self.seen_pids.update(self.pids)
        return info

    def advance(self, timeout=30):
        """SIGUSR1: one stage further; return the new INFO_JSON."""
        stage = (self.info or {"stage": -1})["stage"] + 1
        os.kill(self.pid, signal.SIGUSR1)
        return self.wait_stage(stage, timeout)

    def reap(self, timeout=15):
        """After a dump without --leave-running: reap the main process (our
        child) and wait until every pid of the tree is free."""
        left = wait_gone(sorted(self.seen_pids), timeout)
        self.popen.poll()
        return left

    def kill(self):
        """Kill the whole tree (also a restored one: it keeps the pgid)."""
        left = kill_group(self.pgid, sorted(self.seen_pids))
        self.popen.poll()   # let Popen know, should wait_gone have reaped it
        return left


# -- CRIU ------------------------------------------------------------------------------


def _log_tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    errors = [line for line in text if "Error" in line]
    return "\n".join(errors[-10:] + ["..."] + text[-lines:])


def _run_criu(argv, log, timeout):
    started = time.monotonic()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as error:
        raise CriuError(f"{' '.join(argv)} did not finish in {timeout} s\n"
                        f"{_log_tail(log)}") from error
    if out.returncode != 0:
        raise CriuError(f"{' '.join(argv)} exited {out.returncode}: {out.stderr.strip()}\n"
                        f"{_log_tail(log)}")
    return time.monotonic() - started


def dump(criu, pid, directory, *, leave_running, options=DUMP_OPTIONS, timeout=120):
    """``criu dump -D directory -o dump.log -v4 -t pid`` (+ options); return seconds taken."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    argv = [criu, "dump", "-D", str(directory), "-o", "dump.log", "-v4", "-t", str(pid), *options]
    if leave_running:
        argv.append("--leave-running")
    return _run_criu(argv, directory / "dump.log", timeout)


def restore(criu, directory, *, options=RESTORE_OPTIONS, timeout=120):
    """``criu restore -D directory -d`` (+ options), detached; return seconds taken."""
    directory = Path(directory)
    argv = [criu, "restore", "-D", str(directory), "-o", "restore.log", "-v4", "-d", *options]
    return _run_criu(argv, directory / "restore.log", timeout)


@dataclass
class Attempt:
    """One ``criu restore`` that is allowed to fail (see :func:`try_restore`).

    ``returncode`` is CRIU's exit code, or None when it had not finished after
    the timeout and was killed (with the tasks it had forked).
    """

    returncode: int | None
    directory: Path
    log: Path
    timeout: float

    @property
    def succeeded(self):
        return self.returncode == 0

    @property
    def outcome(self):
        """``restored``, ``failed (exit N)`` or ``no result after N s (killed)``."""
        if self.returncode is None:
            return f"no result after {self.timeout:g} s (killed)"
        return "restored" if self.returncode == 0 else f"failed (exit {self.returncode})"

    def errors(self):
        """CRIU's ``Error (file:line): message`` lines, as ``message`` (the images
        directory left out of paths), without the two harmless ones every restore
        here logs: the RLIMIT_NOFILE of CRIU itself, and the network-unlock
        iptables call when an earlier restore already removed the lock rules."""
        found = []
        prefix = f"{self.directory}/"
        with open(self.log, errors="replace") as log:
            for line in log:
                _, marker, message = line.partition("Error (")
                if not marker:
                    continue
                message = message.split("): ", 1)[-1].rstrip("\n").replace(prefix, "")
                if not message.startswith(_HARMLESS):
                    found.append(message)
        return found


# Logged by restores that work: CRIU cannot raise its own RLIMIT_NOFILE in this
# sandbox; unlocking the network fails when no lock rules are left.
_HARMLESS = ("rlimit: Can't setup RLIMIT_NOFILE", "exited, status=1",
             "Iptables configuration failed")


def try_restore(criu, directory, *, pids, timeout=30, verbosity=4, options=RESTORE_OPTIONS):
    """``criu restore -D directory -d`` that may fail or never finish; an :class:`Attempt`.

    CRIU runs in its own session; if it has not finished after ``timeout``
    seconds, its process group and ``pids`` (the tree it was restoring) are
    killed.  A restored tree is left running: the caller kills it.
    """
    directory = Path(directory)
    log = directory / "restore.log"
    argv = [criu, "restore", "-D", str(directory), "-o", log.name, f"-v{verbosity}", "-d",
            *options]
    popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        returncode = popen.wait(timeout)
    except subprocess.TimeoutExpired:
        returncode = None
        kill_group(popen.pid, pids)
        popen.wait(timeout)
    return Attempt(returncode, directory, log, timeout)


def remove_ghost_leftovers(directory):
    """Delete the ghost files (``NAME.cr.ID.ghost``) a killed restore left in
    ``directory``: the next restore would fail on them with "File exists"."""
    leftovers = sorted(Path(directory).glob("*.cr.*.ghost"))
    for path in leftovers:
        path.unlink()
    return leftovers


def pristine_copy(directory, target):
    """A copy of a dump to restore from (restore writes its log and stats there)."""
    shutil.copytree(directory, target, symlinks=True)
    return Path(target)


def lock_rules(ports):
    """CRIU's iptables network-lock rules that mention one of ``ports``.

    A dump with --tcp-established and without --leave-running leaves the
    connection's packets dropped until a restore unlocks them.
    """
    try:
        out = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    rules = []
    for line in out.stdout.splitlines():
        if not line.startswith("-A ") or CRIU_LOCK_MARK not in line:
            continue
        if any(f"--sport {p} " in line + " " or f"--dport {p} " in line + " " for p in ports):
            rules.append(line)
    return rules


def unlock_network(ports):
    """Delete CRIU's lock rules for ``ports`` (after a dump that was never restored)."""
    for rule in lock_rules(ports):
        subprocess.run(["iptables", "-t", "filter", "-D", *rule.split()[1:]],
                       capture_output=True, timeout=30)
    return lock_rules(ports)


def tcp_ports(info):
    """The service's TCP ports (listener, both ends of the connection)."""
    return sorted({info["tcp"]["listen"][1], info["tcp"]["client"][1], info["tcp"]["server"][1]})
