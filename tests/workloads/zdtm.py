"""CRIU's own zdtm test programs, dumped and restored by a real CRIU (``make zdtm``).

Only the standard library.  The steps, each bounded in time:

- :func:`build`: copy ``test/zdtm`` (and the ``criu/include`` one of its programs
  needs) of CRIU's source tree into ``build/zdtm/src`` (the cached tree is never
  written) and build zdtm's lib and the static programs;
- :func:`plan`: read every program's ``.desc`` (a Python literal, as zdtm.py reads
  it) and decide whether it may run on this machine (:class:`Program.skip`);
- :func:`run_program`: start it as zdtm's Makefile does (``make NAME.pid``), dump it
  (``criu dump -t PID``, :data:`OPTIONS` plus the ``.desc``'s own), restore it
  detached, send it SIGTERM and read its verdict (``PASS`` in ``NAME.out``), and
  kill whatever is left; the images, CRIU's logs, the program's output and its files
  as the dump left them are kept under ``build/zdtm/<criu version>/<program>/`` with
  ``result.json``;
- :func:`run_all`: every program, a result reused when its ``result.json`` exists
  (results are cached per CRIU version), and the table ``results.tsv``/``.json``;
- :func:`restore_copy`: restore a copy of a cached dump (damaged on purpose, say) the
  way :func:`run_program` restores the dump, and ask the program for its verdict.

Safety (docs/live.md): a program runs on this machine only if its ``.desc`` lists the
host flavor ``h``; not one marked ``noauto`` or ``crfail``, or needing a hook (but
:data:`FAULT_ONLY_HOOKS`), a CRIU feature ``criu check --feature`` denies, a host setup
(cgroup yards, external mounts, network locks...) or listed in :data:`HOST_CHANGING`.  After
every program
the mount table must be what it was (else the run stops), CRIU's iptables lock
rules it left are removed, and every process it started is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.workloads import harness

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "zdtm"
#: The CRIU source tree ``make criu`` uses (scripts/fetch-criu-source).
SOURCE = Path(os.environ.get("CRIT_PLUS_CACHE") or "/var/cache/crit-plus",
              f"criu-{harness.PINNED_VERSION}", "src")

#: What a user gives CRIU for programs like these (issue 18); the .desc adds its own.
OPTIONS = ("--shell-job", "--tcp-established", "--ext-unix-sk", "--file-locks",
           "--link-remap")
#: Debian packages the static programs need beyond CRIU's own build dependencies
#: (scripts/install-criu): aio00 links libaio, netns_sub_veth libnl-route.
BUILD_DEPS = ("gcc", "make", "pkg-config", "libc6-dev", "libaio-dev", "libcap-dev",
              "libnl-3-dev", "libnl-route-3-dev", "protobuf-c-compiler",
              "libprotobuf-c-dev", "iptables")

#: Options in a .desc that need a host set-up zdtm.py makes (cgroup yards and
#: mounts, external mounts and devices, network locks in other namespaces).
HOST_SETUP_OPTIONS = ("--manage-cgroups", "--external", "--network-lock", "--join-ns",
                      "--cgroup-root", "--cgroup-yard", "--enable-fs", "--ext-mount-map",
                      "--enable-external-masters", "--lsm-mount-context", "--irmap-scan-path")
#: Host-flavored programs that change the host outside their own files.
HOST_CHANGING = {
    "socket_icmp": "writes the host sysctl net.ipv4.ping_group_range",
    "socket6_icmp": "writes the host sysctl net.ipv4.ping_group_range",
}

#: Programs without the host flavor that need nothing but their own IPC namespace
#: (SysV shared memory, message queues, semaphores): started under ``unshare --ipc``,
#: which changes nothing of the host (CRIU dumps and restores the IPC namespace).
IPC_NS_PROGRAMS = frozenset({"shm", "shm-unaligned", "shm-mp", "msgque", "sem"})

#: Programs flagged ``crfail`` (CRIU is expected to fail to dump or to restore them) that
#: change nothing outside themselves (read: sockets, signals, ptrace, locks, a ghost file
#: over the ghost limit, time namespaces of their own): run for their real failure logs.
CRFAIL_HARMLESS = frozenset({
    "file_locks00_fail", "ghost_holes_large01", "ptrace_sig", "sigtrap", "sk-unix-listen02",
    "sk-unix-listen03", "sk-unix-listen04", "socket_udp-corked", "timens_for_kids",
    "timens_nested"})

#: Programs whose hook acts only in fault-injection runs (``--fault``, which this harness
#: never makes): run without it.
FAULT_ONLY_HOOKS = frozenset({"unlink_fstat00"})

START_TIMEOUT = 30
CRIU_TIMEOUT = 60
GONE_TIMEOUT = 20
#: CRIU's iptables network-lock mark (criu/netfilter.c).
LOCK_MARK = harness.CRIU_LOCK_MARK


class HostChanged(RuntimeError):
    """A program left the host different (a mount): the run stops."""


# -- build ------------------------------------------------------------------------------


def missing_packages(packages=BUILD_DEPS):
    """The Debian packages of ``packages`` that are not installed."""
    missing = []
    for name in packages:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True,
                             text=True, timeout=30, check=False)
        if "install ok installed" not in out.stdout:
            missing.append(name)
    return missing


def install_packages(packages=BUILD_DEPS):
    """apt-get install what is missing of ``packages`` (root; like scripts/install-criu)."""
    missing = missing_packages(packages)
    if not missing:
        return []
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(argv, env=env, stdout=sys.stderr, timeout=900, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], stdout=sys.stderr, timeout=900, check=False)
        subprocess.run(argv, env=env, stdout=sys.stderr, timeout=900, check=True)
    return missing


def static_dir(build_root=BUILD):
    """Where the built static programs are (and run: their files are made there)."""
    return Path(build_root) / "src" / "test" / "zdtm" / "static"


def build(source=SOURCE, build_root=BUILD, jobs=2, log=sys.stderr):
    """Copy zdtm out of ``source`` and build lib and static programs; return the static dir.

    A stamp file makes a second call free.  ``make -k``: a program that does not
    build is left out (:func:`plan` records it as not built).
    """
    build_root = Path(build_root)
    src = build_root / "src"
    stamp = src / ".built"
    if stamp.exists():
        return static_dir(build_root)
    if not (Path(source) / "test" / "zdtm" / "static" / "Makefile").exists():
        raise FileNotFoundError(f"no CRIU source tree with test/zdtm at {source} "
                                "(scripts/fetch-criu-source makes it)")
    if src.exists():
        shutil.rmtree(src)
    (src / "test").mkdir(parents=True)
    (src / "criu").mkdir()
    shutil.copytree(Path(source) / "test" / "zdtm", src / "test" / "zdtm", symlinks=True)
    shutil.copy(Path(source) / "test" / "zdtm.desc", src / "test" / "zdtm.desc")
    # criu-rtc.so (the rtc program's plugin) includes ../../../criu/include
    shutil.copytree(Path(source) / "criu" / "include", src / "criu" / "include", symlinks=True)
    zdtm = src / "test" / "zdtm"
    print(f"zdtm: building zdtm's lib and static programs in {zdtm} (about a minute)",
          file=log, flush=True)
    with open(build_root / "build.log", "wb") as out:
        subprocess.run(["make", f"-j{jobs}", "-C", str(zdtm / "lib")], stdout=out,
                       stderr=subprocess.STDOUT, timeout=1800, check=True)
        subprocess.run(["make", "-k", f"-j{jobs}", "-C", str(zdtm / "static")], stdout=out,
                       stderr=subprocess.STDOUT, timeout=3600, check=False)
    # zdtm.py lets the programs write their files there (they may drop privileges)
    static = static_dir(build_root)
    static.chmod(static.stat().st_mode | 0o777)
    stamp.touch()
    return static


# -- plan -------------------------------------------------------------------------------


@dataclass
class Program:
    """One static zdtm program and its ``.desc``; ``skip`` says why it must not run here."""

    name: str
    desc: dict
    skip: str | None = None

    @property
    def flavor(self):
        """``h`` (the host's namespaces) or ``ipc`` (its own IPC namespace only)."""
        return "ipc" if self.name in IPC_NS_PROGRAMS else "h"

    @property
    def flags(self):
        return self.desc.get("flags", "").split()

    @property
    def timeout(self):
        """Seconds the program may take to start, and to stop after SIGTERM."""
        return int(self.desc.get("timeout") or START_TIMEOUT)

    def options(self, which):
        """CRIU options for ``dump`` or ``restore``: :data:`OPTIONS`, then the .desc's
        ``opts`` and ``dopts``/``ropts`` (zdtm.py's getdopts/getropts)."""
        extra = self.desc.get("opts", "").split()
        extra += self.desc.get("dopts" if which == "dump" else "ropts", "").split()
        return [*OPTIONS, *(o for o in extra if o not in OPTIONS)]


def read_desc(path):
    """A .desc file: a Python literal dict (zdtm.py eval()s it; here a literal only:
    a .desc that is code, like mnt_ext_dev's, gives ``{"code": True}``)."""
    import ast

    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return {}
    try:
        return ast.literal_eval(path.read_text())
    except (ValueError, SyntaxError):
        return {"code": True}


def program_names(static):
    """Every program zdtm.py would run from ``static``: executable regular files that
    are not hooks, checkskip scripts, libraries or in zdtm.desc's exclude list."""
    static = Path(static)
    # zdtm.desc: {'dir': 'zdtm/', 'exclude': ['static/route_rules', ...]}
    zdtm_desc = static.parents[1] / "zdtm.desc"
    if not zdtm_desc.exists():
        zdtm_desc = SOURCE / "test" / "zdtm.desc"
    exclude = {Path(e).name for e in read_desc(zdtm_desc).get("exclude", [])
               if e.startswith("static/")}
    names = []
    for path in sorted(static.iterdir()):
        mode = path.lstat().st_mode
        if not stat.S_ISREG(mode) or not mode & stat.S_IXUSR:
            continue
        if path.suffix in (".checkskip", ".hook", ".so", ".sh") or path.name in exclude:
            continue
        names.append(path.name)
    return names


def feature_available(criu, feature, cache={}):  # noqa: B006 - one answer per process
    """``criu check --feature FEATURE`` succeeds."""
    if (criu, feature) not in cache:
        out = subprocess.run([criu, "check", "--no-default-config", "-v0", "--feature", feature],
                             capture_output=True, timeout=60, check=False)
        cache[(criu, feature)] = out.returncode == 0
    return cache[(criu, feature)]


def skip_reason(program, static, criu):
    """Why ``program`` must not run on this machine, or None (zdtm.py's rules, and safety)."""
    desc, flags = program.desc, program.flags
    if desc.get("code"):
        return "skipped: its .desc is code, not a literal"
    with open(static / program.name, "rb") as head:
        if head.read(4) != b"\x7fELF":
            return "skipped: a script, not a static program"
    if "h" not in desc.get("flavor", "h ns uns").split() and \
            program.name not in IPC_NS_PROGRAMS:
        return "skipped: needs namespaces (no host flavor)"
    arch = os.uname().machine
    if desc.get("arch") and arch not in desc["arch"].split():
        return f"skipped: arch {desc['arch']}"
    if "noauto" in flags:
        return "skipped: noauto (manual run only)"
    if "crfail" in flags and program.name not in CRFAIL_HARMLESS:
        return "skipped: crfail (CRIU is expected to fail)"
    if (static / f"{program.name}.hook").exists() and program.name not in FAULT_ONLY_HOOKS:
        return "skipped: needs its hook (host set-up)"
    options = " ".join(desc.get(k, "") for k in ("opts", "dopts", "ropts"))
    needs = [o for o in HOST_SETUP_OPTIONS if o in options]
    if needs:
        return f"skipped: needs host set-up ({needs[0]})"
    if program.name in HOST_CHANGING:
        return f"skipped: {HOST_CHANGING[program.name]}"
    for feature in desc.get("feature", "").split():
        if not feature_available(criu, feature):
            return f"skipped: no {feature} feature"
    checkskip = static / f"{program.name}.checkskip"
    if os.access(checkskip, os.X_OK):
        try:
            ok = subprocess.run([str(checkskip)], cwd=static, capture_output=True,
                                timeout=30, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        if not ok:
            return "skipped: its checkskip failed"
    return None


def plan(static, criu, names=None):
    """A :class:`Program` for each name (default: every program), skip reasons set."""
    static = Path(static)
    programs = []
    for name in names or program_names(static):
        program = Program(name, read_desc(static / f"{name}.desc"))
        if not (static / name).exists():
            program.skip = "not built"
        else:
            program.skip = skip_reason(program, static, criu)
        programs.append(program)
    return programs


# -- processes and host state -----------------------------------------------------------


def _stat_fields(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _process_table():
    """``{pid: (ppid, sid, exe or "")}`` of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is None:
            continue
        try:
            exe = os.readlink(f"/proc/{entry}/exe")
        except OSError:
            exe = ""
        table[int(entry)] = (int(fields[1]), int(fields[3]), exe)
    return table


def _with_descendants(found, table):
    found = set(found)
    while True:
        children = {p for p, (ppid, _, _) in table.items() if ppid in found} - found
        if not children:
            return found
        found |= children


def descendants(root):
    """``root`` and every process below it (the tree ``criu dump -t root`` dumps)."""
    table = _process_table()
    return _with_descendants({root} & set(table), table)


def related_pids(root, static):
    """The process tree of ``root``: its descendants, its session, and any process
    running a program from ``static`` (one that left the tree is still found)."""
    table = _process_table()
    found = {p for p, (_, sid, exe) in table.items()
             if (root and sid == root) or exe.startswith(f"{static}/")}
    found |= {root} & set(table)
    found = _with_descendants(found, table)
    found.discard(os.getpid())
    return found


def kill_all(pids, timeout=GONE_TIMEOUT):
    """SIGKILL ``pids`` (they are stopped first); wait until gone; return those left."""
    for pid in sorted(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return harness.wait_gone(pids, timeout)


def subreaper(on):
    """Make this process the reaper of the programs' orphans (PR_SET_CHILD_SUBREAPER):
    a daemonized program and a restored tree become our children, and
    :func:`harness.wait_gone` reaps them at once instead of waiting for init."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1 if on else 0, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def mount_table():
    """The mount points of this mount namespace (mount ids and paths)."""
    with open("/proc/self/mountinfo") as f:
        return sorted(" ".join(line.split()[:5]) for line in f)


def lock_rules():
    """CRIU's network-lock rules (the ``0xc114`` mark) in iptables and ip6tables."""
    rules = []
    for tool in ("iptables", "ip6tables"):
        try:
            out = subprocess.run([f"{tool}-save", "-t", "filter"], capture_output=True,
                                 text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        rules += [(tool, line) for line in out.stdout.splitlines()
                  if line.startswith("-A ") and LOCK_MARK in line]
    return rules


def locked_ports(dump_log):
    """The port pairs CRIU locked during a dump (``Locked A:P - B:Q connection`` lines)."""
    import re

    pairs = set()
    try:
        with open(dump_log, errors="replace") as log:
            for line in log:
                match = re.search(r"Locked \[?[^ ]*?\]?:(\d+) - \[?[^ ]*?\]?:(\d+) connection",
                                  line)
                if match:
                    pairs.add((match.group(1), match.group(2)))
    except FileNotFoundError:
        pass
    return pairs


def _locks_port(rule, pairs):
    """True if iptables ``rule`` matches both ports of one of ``pairs``."""
    words = rule.split()
    ports = {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--sport", "--dport")}
    return any(set(pair) <= ports for pair in pairs)


def remove_rules(rules):
    """Delete the iptables ``rules`` (pairs from :func:`lock_rules`)."""
    for tool, line in rules:
        subprocess.run([tool, "-t", "filter", "-D", *line.split()[1:]], capture_output=True,
                       timeout=30, check=False)


# -- one program ------------------------------------------------------------------------


@dataclass
class Result:
    """One row of the results table."""

    test: str
    started: bool = False
    dumped: bool = False
    restored: bool = False
    verdict: str = ""          # PASS, FAIL, no verdict ..., or the skip reason
    image_bytes: int = 0
    reason: str = ""
    dump_verdict: str = ""     # after a failed dump: the program's own check
    seconds: float = 0.0
    criu: str = ""
    flavor: str = "h"
    #: the static directory the program ran in (its dump names files there)
    static: str = ""

    @property
    def passed(self):
        return self.restored and self.verdict == "PASS"


#: The program's own files (output, test files) as the dump left them, kept next to the
#: images: a restore reopens them (:func:`as_dumped` puts them back).
DUMPED_FILES = "dumped-files"
#: The files of program NAME, as ``make NAME.cleanout`` removes them (zdtm's
#: Makefile.inc), but its pid file.
FILE_PATTERNS = ("{}.out*", "*{}.test*", "{}.*.test", "{}.*.state", "{}.state",
                 "chew_{}.test*")


def _program_files(name, static):
    """Program ``name``'s files in ``static`` (:data:`FILE_PATTERNS`)."""
    return sorted({p for pattern in FILE_PATTERNS for p in static.glob(pattern.format(name))})


def _copy_files(paths, target):
    """Copy files and directories ``paths`` (links as links) into ``target``; sockets and
    FIFOs a program bound or made cannot be copied (the program makes them again) and are
    left out."""
    target.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.copytree(path, target / path.name, symlinks=True, ignore=_special_files)
        elif path.is_symlink() or path.is_file():
            shutil.copy2(path, target / path.name, follow_symlinks=False)


def _special_files(directory, names):
    """The names in ``directory`` that are neither files, links nor directories."""
    return [name for name in names
            if not (os.path.islink(os.path.join(directory, name))
                    or os.path.isfile(os.path.join(directory, name))
                    or os.path.isdir(os.path.join(directory, name)))]


def _run(argv, log_path, timeout, cwd=None, env=None):
    """Run ``argv`` in its own session, output to ``log_path``; exit code or None on timeout
    (the session is killed)."""
    with open(log_path, "ab") as out:
        popen = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return popen.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_all(related_pids(popen.pid, Path("/nonexistent")))
            popen.wait(timeout)
            return None


def _criu_error(log_path):
    """The first ``Error (...)`` line of a CRIU log that is not one every run here logs
    (the cause; the last ones say "Dumping FAILED.")."""
    try:
        with open(log_path, errors="replace") as log:
            for line in log:
                _, mark, message = line.partition("Error (")
                message = message.split("): ", 1)[-1].strip()
                if mark and not message.startswith(harness._HARMLESS):
                    return message
    except FileNotFoundError:
        return "no log"
    return "no error line"


def _read_pid(path, timeout=5):
    def value():
        try:
            return int(Path(path).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
    return harness.wait_until(value, timeout)


def _verdict(static, name):
    """PASS / FAIL from the program's ``NAME.out``, as zdtm.py's ``stop`` reads it."""
    out = static / f"{name}.out"
    try:
        words = out.read_text(errors="replace").split()
    except FileNotFoundError:
        return "no verdict (no .out)"
    return "PASS" if "PASS" in words else "FAIL"


def _stop(pid, static, name, timeout):
    """SIGTERM ``pid``; wait until it exits; its verdict."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "no verdict (not running)"
    if harness.wait_until(lambda: not harness.alive(pid), timeout):
        return _verdict(static, name)
    return f"no verdict (still running {timeout} s after SIGTERM)"


def _criu_restore(criu, program, images, work, out):
    """``criu restore -d`` of ``images`` (log and pidfile in ``work``); exit code or None."""
    return _run([criu, "restore", "-d", "-D", str(images), "-W", str(work),
                 "-o", "restore.log", "-v4", "--pidfile", str(work / "restored.pid"),
                 *program.options("restore")], out, CRIU_TIMEOUT)


def program_env(static):
    """The environment zdtm.py gives a program (host flavor), see docs/live.md:
    no ZDTM_UID/GID (this sandbox cannot dump a process of another user: CRIU's
    prlimit64 on it needs CAP_SYS_RESOURCE), temporary files under build/."""
    tmp = static.parents[3] / "tmp"
    tmp.mkdir(exist_ok=True)
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C", "TMPDIR": str(tmp), "ZDTM_THREAD_BOMB": "5"}


def run_program(program, static, criu, out_dir, version):
    """Start, dump, restore and check one program; its files under ``out_dir``."""
    started_at = time.monotonic()
    name, static = program.name, Path(static)
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    images, restore_dir = out_dir / "images", out_dir / "restore"
    images.mkdir(parents=True)
    restore_dir.mkdir()
    result = Result(name, criu=version, flavor=program.flavor, static=str(static))
    timeout = program.timeout
    env = program_env(static)
    make = ["make", "--no-print-directory", "-C", str(static)]
    mounts, rules = mount_table(), set(lock_rules())
    subreaper(True)
    pid, seen, interrupted = None, set(), False
    try:
        _run([*make, f"{name}.cleanout"], out_dir / "start.log", 60, env=env)
        unshare = ["unshare", "--ipc"] if program.flavor == "ipc" else []
        code = _run([*unshare, *make, f"{name}.pid"], out_dir / "start.log", timeout, env=env)
        pid = _read_pid(static / f"{name}.pid", 1 if code is None else 5)
        if code != 0 or pid is None or not harness.alive(pid):
            result.reason = ("did not start: " + ("timeout" if code is None else
                             f"make exited {code}" if code else "no live pid"))
            return result
        result.started = True
        seen, tree = related_pids(pid, static), descendants(pid)
        code = _run([criu, "dump", "-t", str(pid), "-D", str(images), "-o", "dump.log",
                     "-v4", *program.options("dump")], out_dir / "criu.out", CRIU_TIMEOUT)
        result.image_bytes = sum(p.stat().st_size for p in images.iterdir()
                                 if p.is_file() and not p.name.endswith(".log"))
        if code != 0:
            result.reason = "dump " + ("timeout" if code is None else
                                       f"failed: {_criu_error(images / 'dump.log')}")
            # CRIU lets a process it could not dump run on: ask it for its verdict
            result.dump_verdict = _stop(pid, static, name, timeout)
            return result
        result.dumped = True
        left = harness.wait_gone(sorted(tree), GONE_TIMEOUT)
        if left:
            result.reason = f"dumped tree still there: {left}"
            return result
        _copy_files(_program_files(name, static), out_dir / DUMPED_FILES)
        code = _criu_restore(criu, program, images, restore_dir, out_dir / "criu.out")
        if code != 0:
            result.reason = "restore " + ("timeout" if code is None else
                                          f"failed: {_criu_error(restore_dir / 'restore.log')}")
            return result
        result.restored = True
        seen |= related_pids(pid, static)
        result.verdict = _stop(pid, static, name, timeout)
        if result.verdict != "PASS":
            result.reason = f"restored, then {result.verdict}"
    except BaseException:
        interrupted = True  # no result.json: the program runs again next time
        raise
    finally:
        seen |= related_pids(pid, static) if pid else related_pids(0, static)
        left = kill_all(seen)
        # CRIU's lock of the program's TCP connections stays when no restore lifted it
        # (and after restores of closing connections): only the dump's own rules go
        remove_rules(sorted(r for r in set(lock_rules()) - rules
                            if _locks_port(r[1], locked_ports(images / "dump.log"))))
        for suffix in (".out", ".out.inprogress"):
            if (static / f"{name}{suffix}").exists():
                shutil.copy(static / f"{name}{suffix}", out_dir / f"program{suffix}")
        _run([*make, f"{name}.cleanout"], out_dir / "start.log", 60, env=env)
        subreaper(False)
        result.seconds = round(time.monotonic() - started_at, 2)
        if left:
            result.reason += f"; processes left: {left}"
        if not interrupted:
            (out_dir / "result.json").write_text(json.dumps(asdict(result), indent=1) + "\n")
        if mount_table() != mounts:
            raise HostChanged(f"{name} changed the mount table; the run stops "
                              "(see /proc/self/mountinfo)")
    return result


# -- every program ----------------------------------------------------------------------


def criu_version(criu):
    """``criu --version`` → ``"4.2.1"``."""
    out = subprocess.run([criu, "--version"], capture_output=True, text=True, timeout=30,
                         check=False)
    version = harness.parse_version(out.stdout)
    if version is None:
        raise RuntimeError(f"{criu} --version: {out.stdout.strip()!r}")
    return ".".join(map(str, version))


def results_dir(version, build_root=BUILD):
    """``build/zdtm/<criu version>``: one directory per program, and the table."""
    return Path(build_root) / version


def cached_result(directory):
    """The :class:`Result` saved in ``directory/result.json``, or None."""
    try:
        return Result(**json.loads((Path(directory) / "result.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def run_all(criu, names=None, build_root=BUILD, source=SOURCE, fresh=False, retry=False,
            log=sys.stderr, reuse=None):
    """Build, plan and run ``names`` (default: every program); reuse cached results
    unless ``fresh`` (or, with ``retry``, unless the cached one did not pass; with a
    ``reuse`` function, unless it says false of the cached one); write the
    table; return ``(version, [Result])``."""
    static = build(source, build_root, log=log)
    version = criu_version(criu)
    top = results_dir(version, build_root)
    top.mkdir(parents=True, exist_ok=True)
    results = []
    programs = plan(static, criu, names)
    for number, program in enumerate(programs, 1):
        if program.skip:
            results.append(Result(program.name, verdict=program.skip, reason=program.skip,
                                  criu=version))
            continue
        cached = None if fresh else cached_result(top / program.name)
        if cached is None or (retry and not cached.passed) or \
                (reuse is not None and not reuse(cached)):
            cached = run_program(program, static, criu, top / program.name, version)
            print(f"zdtm: [{number}/{len(programs)}] {program.name}: {describe(cached)}",
                  file=log, flush=True)
        results.append(cached)
    if names is None:
        write_table(results, top)
    return version, results


def restorable(result, build_root=BUILD):
    """True when ``result``'s dump can be restored again here (:func:`restore_copy`):
    it was dumped from this build's static directory (a cache copied from another
    checkout names that one's files) and the program's files as the dump left them
    were kept."""
    out_dir = results_dir(result.criu, build_root) / result.test
    return (result.dumped and result.static == str(static_dir(build_root))
            and (out_dir / DUMPED_FILES).is_dir())


@contextlib.contextmanager
def as_dumped(result, build_root=BUILD):
    """The program's files put back as its dump left them (a restore reopens them, and
    validate looks for them), for the ``with`` block; removed again after it with
    whatever a restored program wrote (``make NAME.cleanout``).  The dump must be
    :func:`restorable`; yields the static directory."""
    if not restorable(result, build_root):
        raise ValueError(f"{result.test}: its dump cannot be restored here (run it again)")
    name, static = result.test, static_dir(build_root)
    cleanout = ["make", "--no-print-directory", "-C", str(static), f"{name}.cleanout"]
    _run(cleanout, os.devnull, 60, env=program_env(static))
    _copy_files((results_dir(result.criu, build_root) / name / DUMPED_FILES).iterdir(), static)
    try:
        yield static
    finally:
        _run(cleanout, os.devnull, 60, env=program_env(static))


@dataclass
class Restore:
    """One :func:`restore_copy`: CRIU's exit code (None: timeout), its log, the
    program's verdict after SIGTERM (``""`` when nothing was restored) and the pids
    still there after every process was killed."""

    returncode: int | None
    log: Path
    verdict: str
    left: list


def restore_copy(result, images, criu, pids=(), build_root=BUILD):
    """Restore ``images``, a copy of ``result``'s dump (maybe damaged), as :func:`run_program`
    restores the dump, inside :func:`as_dumped`: ``criu restore -d`` (its log and output
    written into ``images``), SIGTERM and the verdict, then the program's processes and
    ``pids`` (the dump's, to reap a tree CRIU forked and gave up) killed and waited for.
    The cached dump is not touched."""
    name, images = result.test, Path(images)
    with as_dumped(result, build_root) as static:
        program = Program(name, read_desc(static / f"{name}.desc"))
        subreaper(True)
        pid, verdict = None, ""
        try:
            code = _criu_restore(criu, program, images, images, images / "criu.out")
            if code == 0:
                pid = _read_pid(images / "restored.pid")
                verdict = (_stop(pid, static, name, program.timeout) if pid
                           else "no verdict (no pid)")
        finally:
            left = kill_all(related_pids(pid or 0, static) | set(pids))
            subreaper(False)
    return Restore(code, images / "restore.log", verdict, left)


def describe(result):
    """One line: how far a program got."""
    if result.passed:
        return f"PASS ({result.seconds:g} s)"
    return result.reason or result.verdict


COLUMNS = ("test", "started", "dumped", "restored", "verdict", "image_bytes", "reason")


def write_table(results, top):
    """``results.tsv`` and ``results.json`` in ``top``."""
    rows = [asdict(r) for r in results]
    with open(top / "results.tsv", "w") as tsv:
        tsv.write("\t".join(COLUMNS) + "\n")
        tsv.writelines("\t".join(str(row[c]).replace("\t", " ") for c in COLUMNS) + "\n"
                       for row in rows)
    (top / "results.json").write_text(json.dumps(rows, indent=1) + "\n")


def images_dir(result, build_root=BUILD):
    """The images directory of a dumped program."""
    return results_dir(result.criu, build_root) / result.test / "images"


def table_summary(results):
    """Programs, started, dumped, restored, passed (and skipped) in one line."""
    ran = [r for r in results if not r.verdict.startswith(("skipped", "not built"))]
    return (f"{len(results)} programs, {len(results) - len(ran)} skipped or not built; "
            f"of {len(ran)} run: {sum(r.started for r in ran)} started, "
            f"{sum(r.dumped for r in ran)} dumped, {sum(r.restored for r in ran)} restored, "
            f"{sum(r.passed for r in ran)} passed")
