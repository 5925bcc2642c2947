"""``report`` on a dump that failed, made here by CRIU 4.2.1 (a process connected to a unix
socket outside the tree, dumped without ``--ext-unix-sk``), on a host whose criu is
another one (Debian's 3.17.1, whose ``criu check`` fails on this kernel): the
checkpoint's decisive dump.log error opens "Errors in the logs"; the host's criu check
errors come after, labelled as the host's criu with its version."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from crit_plus.report.programs import CRIU_ENV
from tests.test_report import FakeRunner, _build
from tests.workloads import harness

pytestmark = pytest.mark.live

_CONNECTED = """
import socket, sys, time
peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
peer.connect(sys.argv[1])
print("connected", flush=True)
time.sleep(600)
"""

DECISIVE = "unix: External socket is used. Consider using --ext-unix-sk option."
CHECK_ERROR = "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds"


class DebianCriu(FakeRunner):
    """The fake host's programs; its criu is 3.17.1, whose ``criu check`` fails here."""

    def run(self, argv):
        ran = super().run(argv)
        if argv[0].endswith("/criu") and "--version" in argv:
            return type(ran)(tuple(argv), 0, b"Version: 3.17.1\n")
        return ran


@pytest.fixture(scope="module")
def failed_dump(criu, tmp_path_factory):
    top = tmp_path_factory.mktemp("failed-dump")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(top / "sock"))
    server.listen(1)
    process = subprocess.Popen([sys.executable, "-c", _CONNECTED, str(top / "sock")],
                               stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    try:
        accepted, _address = server.accept()
        assert process.stdout.readline().strip() == "connected"
        with pytest.raises(harness.CriuError):
            harness.dump(criu, process.pid, top / "img", leave_running=True,
                         options=("--shell-job",))
        accepted.close()
    finally:
        harness.kill_group(process.pid, [process.pid])
        process.wait()
        server.close()
    assert DECISIVE in (top / "img" / "dump.log").read_text()
    return top / "img"


def test_the_checkpoints_decisive_error_comes_before_the_hosts_criu_check(
        failed_dump, tmp_path, monkeypatch):
    monkeypatch.setenv("CRIT_PLUS_ROOT", str(tmp_path))
    monkeypatch.delenv(CRIU_ENV, raising=False)  # the fake host's criu, not the live tests'
    report, data, _names, _runner = _build(tmp_path, spec=str(failed_dump),
                                           runner=DebianCriu())
    assert [e.member for e in report.excerpts if not e.same_as] == \
        ["checkpoint/dump.log", "host/criu-check.txt"]
    index = data["INDEX.md"].decode()
    errors = index[index.index("## Errors in the logs"):]
    first = errors.index("### ")
    assert errors[first:].startswith("### `checkpoint/dump.log`")
    assert errors.index(DECISIVE) < errors.index(CHECK_ERROR)
    assert "### `host/criu-check.txt` — 1 error line (the host's criu 3.17.1, " \
        "`/fake/bin/criu check --all`; the checkpoint was made by CRIU 4.2.1)" in errors
    listed = json.loads(data["report.json"])["errors"]
    assert [(e["member"], e["host_criu"]) for e in listed] == \
        [("checkpoint/dump.log", None), ("host/criu-check.txt", "criu 3.17.1")]
