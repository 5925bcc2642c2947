"""How a zombie ended, on a dump CRIU 4.2.1 makes here: a python parent with three
unreaped children, one that called ``os._exit(7)``, one ``os._exit(200)`` and one
killed by SIGTERM.  CRIU keeps the raw wait status (``7 << 8`` = 1792); every command
shows the graph's decoding (:class:`crit_plus.graph.ExitStatus`), never the raw value
alone."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

import crit_plus
from crit_plus.graph import ExitStatus
from tests.cli import run_cli
from tests.workloads import harness

pytestmark = pytest.mark.live

_PARENT = """
import os, signal, time
children = []
for how in ("exit7", "exit200", "term"):
    child = os.fork()
    if child == 0:
        if how == "term":
            os.kill(os.getpid(), signal.SIGTERM)
        os._exit(7 if how == "exit7" else 200)
    children.append(child)
for child in children:
    while open(f"/proc/{child}/stat").read().split(") ")[1][0] != "Z":
        time.sleep(0.01)
print(*children, flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def zombies(criu, tmp_path_factory):
    """``(images, {"exit7": pid, "exit200": pid, "term": pid})``."""
    top = tmp_path_factory.mktemp("zombies")
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        pids = [int(word) for word in parent.stdout.readline().split()]
        harness.dump(criu, parent.pid, top / "img", leave_running=False,
                     options=("--shell-job",))
    finally:
        harness.kill_group(parent.pid, [parent.pid])
        parent.wait()
    return top / "img", dict(zip(("exit7", "exit200", "term"), pids))


def test_the_graph_decodes_the_wait_status_as_criu_does(zombies):
    images, pids = zombies
    checkpoint = crit_plus.open_checkpoint(images)
    seven = checkpoint.process(pids["exit7"]).exit_status
    assert seven == ExitStatus(7 << 8, 7, None, False)
    assert seven.text == "exited with status 7"
    high = checkpoint.process(pids["exit200"]).exit_status
    assert (high.status, high.restored_status) == (200, 200 & 0x7F)
    term = checkpoint.process(pids["term"]).exit_status
    assert (term.status, term.signal, term.signal_name) == (None, 15, "SIGTERM")
    assert term.text == "killed by signal 15 (SIGTERM)"
    assert [p.exit_status for p in checkpoint.processes if not p.is_zombie] == [None]


def test_every_command_shows_the_decoded_end(zombies, tmp_path):
    images, pids = zombies
    seven, term = pids["exit7"], pids["term"]
    text = run_cli("summarize", images, check=True).stdout
    assert re.search(rf"pid {seven} \(\w+\) is a zombie \(exited with status 7\)", text)
    assert re.search(rf"pid {pids['exit200']} \(\w+\) is a zombie \(exited with status 200, "
                     r"restored as 72 by CRIU\)", text)
    assert re.search(rf"pid {term} \(\w+\) is a zombie \(killed by signal 15 \(SIGTERM\)\)",
                     text)
    assert "1792" not in text
    data = json.loads(run_cli("summarize", images, "-f", "json", check=True).stdout)
    ended = {p["pid"]: p["exit"] for p in data["processes"]}
    assert ended[seven] == {"status": 7, "signal": None, "signal_name": None,
                            "core_dumped": False, "text": "exited with status 7",
                            "wait_status": 1792}
    assert ended[term]["signal"] == 15 and ended[term]["status"] is None
    # the deprecated alias keeps scripts working: the raw wait status, as before
    codes = {p["pid"]: p["exit_code"] for p in data["processes"]}
    assert codes[seven] == 1792 and codes[data["processes"][0]["pid"]] is None
    ps = run_cli("ps", images, check=True).stdout
    assert "zombie (exit 7)" in ps and "zombie (SIGTERM)" in ps
    rows = {row["pid"]: row for row in json.loads(run_cli("ps", images, "-f", "json",
                                                         check=True).stdout)}
    assert rows[seven]["exit"] == ended[seven] and rows[term]["exit"] == ended[term]
    page = tmp_path / "summary.html"
    run_cli("summarize", images, "-f", "html", "-o", page, check=True)
    assert "zombie (exited with status 7): no memory" in page.read_text()


def test_validate_names_how_the_zombie_ended(zombies, tmp_path):
    """A zombie with an mm image (a copy of its parent's, in a copy of the dump): the
    ``zombie-images`` finding says how the zombie ended."""
    images, pids = zombies
    copy = tmp_path / "img"
    shutil.copytree(images, copy)
    parent = next(p.pid for p in crit_plus.open_checkpoint(copy).processes if not p.is_zombie)
    shutil.copy(copy / f"mm-{parent}.img", copy / f"mm-{pids['exit7']}.img")
    data = json.loads(run_cli("validate", copy, "-f", "json").stdout)
    messages = [f["message"] for f in data["findings"] if f["code"] == "zombie-images"]
    assert messages == [f"zombie pid {pids['exit7']} (exited with status 7) has "
                        f"mm-{pids['exit7']}.img"]
