"""CRIU's own zdtm programs, dumped and restored by CRIU, read by crit-plus (issue 18).

A fixed sample of :data:`SAMPLE` programs, one family of kernel features each, goes
through the harness of ``make zdtm`` (tests/workloads/zdtm.py: start, dump, detached
restore, SIGTERM, the program's own verdict; results cached per CRIU version under
build/zdtm/), then every dump through every check of tests/zdtm_checks.py
(:data:`~tests.zdtm_checks.CHECKS`): decode equals crit, the commands run without a
traceback, validate predicts the restore.  ``make zdtm`` runs all of them
(docs/live.md).
"""

from __future__ import annotations

import pytest

from tests import oracle, zdtm_checks
from tests.workloads import zdtm

pytestmark = pytest.mark.live

#: The sample: family → programs (every family issue 18 names that runs on a host).
SAMPLE = {
    "unix sockets": ["sk-unix01", "sk-unix-unconn", "sockets_dgram", "socket_queues",
                     "sk-unix-dgram-ghost", "scm00"],
    "inet sockets": ["socket_listen", "socket_listen6", "socket_udp", "socket6_udp",
                     "socket-tcp", "socket-tcp6", "socket-tcpbuf", "socket-tcp-close0",
                     "socket-tcp4v6-fin-wait1", "socket-tcp-unconn"],
    "packet and netlink sockets": ["packet_sock", "sk-netlink"],
    "pipes": ["pipe00", "pipe02"],
    "fifos": ["fifo", "fifo-ghost", "unlink_fifo"],
    "SysV IPC (own IPC namespace)": ["shm", "msgque", "sem"],
    "timers": ["posix_timers", "timers", "timerfd"],
    "signals": ["sigpending", "sigaltstack", "signalfd00"],
    "zombies": ["zombie00", "zombie01"],
    "ghost and unlinked files": ["unlink_fstat01", "unlink_fstat02", "ghost_holes00",
                                 "unlink_mmap00", "fd01"],
    "file locks and leases": ["file_locks00", "file_locks01", "file_lease00"],
    "inotify and fanotify": ["inotify00", "fanotify00"],
    "memfd": ["memfd00", "memfd01"],
    "shared memory": ["shmemfd", "cow01", "maps01"],
    "memory mappings": ["maps12", "mprotect00"],
    "seccomp": ["seccomp_strict", "seccomp_filter_tsync"],
    "vdso": ["vdso00", "vdso01"],
    "threads and stopped tasks": ["pthread00", "stopped"],
    "eventfd and epoll": ["eventfs00", "epoll"],
    "FPU and extended CPU state": ["fpu01"],
    "ttys": ["pty00"],
}
NAMES = [name for names in SAMPLE.values() for name in names]

#: validate's known false errors on zdtm dumps (issue 17), fixed elsewhere: each an
#: expected failure that turns into a test failure (strict) once the fix is merged.
KNOWN: dict = {}


def test_sample_is_large_and_covers_every_family(zdtm_sample):
    assert len(NAMES) >= 40 and len(set(NAMES)) == len(NAMES)
    not_run = {n: r.reason for n, r in zdtm_sample.items() if not r.started}
    assert not_run == {}, "sample programs that did not start here"
    dumped = {n for n, r in zdtm_sample.items() if r.dumped}
    assert len(dumped) >= 40
    assert [f for f, names in SAMPLE.items() if not dumped & set(names)] == []


def test_sample_restores_and_passes(zdtm_sample):
    """The sample was chosen among programs CRIU 4.2.1 restores here and that pass."""
    failed = {n: r.reason or r.verdict for n, r in zdtm_sample.items() if not r.passed}
    assert failed == {}


def _cases():
    for name in NAMES:
        for check in zdtm_checks.CHECKS:
            marks = [pytest.mark.xfail(strict=True, reason=KNOWN[(name, check.name)])] \
                if (name, check.name) in KNOWN else []
            yield pytest.param(name, check, id=f"{name}-{check.name}", marks=marks)


@pytest.mark.parametrize("name,check", list(_cases()))
def test_dump(zdtm_dumps, zdtm_sample, name, check):
    if name not in zdtm_dumps:
        pytest.fail(f"{name} was not dumped: {zdtm_sample[name].reason}")
    assert check.run(zdtm_dumps[name]) == []


# -- the checks can fail -----------------------------------------------------------------


def test_commands_check_reports_a_traceback(service_a, monkeypatch):
    from crit_plus.analysis import explore

    dump = zdtm_checks.Dump(zdtm.Result("service-a", True, True, True, "PASS"), service_a)
    assert zdtm_checks.commands_run(dump) == []

    def broken(*args, **kwargs):
        raise KeyError("planted")

    monkeypatch.setattr(explore, "ps_rows", broken)
    problems = zdtm_checks.commands_run(zdtm_checks.Dump(dump.result, service_a))
    assert problems == ["ps: traceback: KeyError: 'planted'",
                        "ps --long: traceback: KeyError: 'planted'",
                        "ps --format json: traceback: KeyError: 'planted'",
                        "ps --long --format json: traceback: KeyError: 'planted'"]


def test_validate_check_reports_both_disagreements(service_a):
    failed = zdtm.Result("service-a", True, True, False, reason="restore failed: planted")
    assert zdtm_checks.validate_agrees(zdtm_checks.Dump(failed, service_a)) == [
        "the restore failed (restore failed: planted), validate found no error"]
    dump = zdtm_checks.Dump(zdtm.Result("service-a", True, True, True, "PASS"), service_a)
    dump.cache["validate"] = {"findings": [{"severity": "error", "code": "planted",
                                            "message": "m"}]}
    assert zdtm_checks.validate_agrees(dump) == [
        "restored and passed, but validate says error planted: m"]


def test_decode_check_reports_a_difference(service_a, monkeypatch):
    dump = zdtm_checks.Dump(zdtm.Result("service-a", True, True, True, "PASS"), service_a)
    assert zdtm_checks.decode_matches_crit(dump) == []

    def shifted(path, pretty=False, nopl=False):
        document = oracle.crit_json(path, pretty, nopl)
        if path.name == "pstree.img":
            document["entries"][0]["pid"] += 1
        return document

    monkeypatch.setattr(zdtm_checks, "crit_json", shifted)
    problems = zdtm_checks.decode_matches_crit(zdtm_checks.Dump(dump.result, service_a))
    assert [p.split(":")[0] for p in problems] == ["pstree.img", "pstree.img --pretty"]
    assert ".entries[0].pid" in problems[0]
