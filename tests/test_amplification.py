"""Small hostile input, bounded cost: a pstree.img of 100,000 pids (1.7 MB) without any
other image makes five findings per pid; only the first MAX_PER_CODE of a code are kept
(crit_plus.findings.FindingList, used by Checkpoint.findings), the rest are counted in one
summary finding, so every command that lists findings stays within memory.

The commands run in a subprocess under an address-space limit (RLIMIT_AS) the test sets;
before the cap, ``validate --format json`` on this input needed about 2.8 GB, after it
about 860 MB (~8 KB a pid); now a pid without images costs the graph about 1.2 KB
(:func:`test_a_pid_without_images_costs_little`; docs/robustness.md, "Many pids").
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

from crit_plus.findings import (
    ERROR,
    MAX_PER_CODE,
    Finding,
    FindingList,
    finding_count,
    named,
)

from .benchmarks.peak import MEASURED_COMMAND
from .synth import CheckpointBuilder, proc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PIDS = 100_000
#: Address space the command may use (the interpreter, the graph's 100,000 processes:
#: about 180 MiB).
LIMIT = 512 << 20
#: Most peak memory one more pid without images may add to ``validate``.
PER_PID = 1536


@pytest.fixture(scope="module")
def many_pids(tmp_path_factory):
    """A checkpoint of inventory.img and a pstree.img of :data:`PIDS` pids, nothing else."""
    return _flat(tmp_path_factory.mktemp("many-pids"), PIDS)


def _flat(directory, pids):
    builder = CheckpointBuilder(directory)
    builder.inventory()
    builder.flat_pstree(pids)  # pid 1 and its children, in one session and group
    return builder.directory


def _limited(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def _run_limited(*args, limit=LIMIT):
    return subprocess.run([sys.executable, "-m", "crit_plus", *map(str, args)],
                          capture_output=True, text=True, preexec_fn=_limited(limit),
                          timeout=1200, check=False)


def test_validate_of_100k_pids_without_images_stays_within_memory(many_pids):
    outcome = _run_limited("validate", "--format", "json", many_pids)
    assert outcome.returncode == 2, outcome.stderr[-2000:]  # FAIL: images are missing
    report = json.loads(outcome.stdout)
    missing = [f for f in report["findings"] if f["code"] == "missing-image"]
    assert len(missing) == MAX_PER_CODE + 1
    more = PIDS * 5 - MAX_PER_CODE
    assert missing[-1]["message"].startswith(f"{more} more missing-image findings not listed")


#: Address space for the other commands that walk every pid, set from their measured peak
#: resident memory on this input (``sk`` 139 MiB as ``validate``; ``ps`` 300 MiB and
#: ``summarize`` 380 MiB: their tables hold a row per pid), with margin.
COMMAND_LIMITS = {"sk": LIMIT, "ps": 768 << 20, "summarize": 1 << 30}


@pytest.mark.parametrize("command", sorted(COMMAND_LIMITS))
def test_other_commands_of_100k_pids_without_images_stay_within_memory(many_pids, command):
    """``sk``, ``summarize`` and ``ps`` read every pid too (``sk`` needed 8.4 GB on 1M pids
    before the findings were capped); each ends under its limit and says that images are
    missing in one note."""
    outcome = _run_limited(command, many_pids, limit=COMMAND_LIMITS[command])
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr and "MemoryError" not in outcome.stderr
    if command == "summarize":
        assert f"{PIDS * 5 - MAX_PER_CODE} more missing-image findings" in outcome.stdout
    else:
        assert outcome.stderr.startswith("crit-plus: note: 21 errors in the images of")


def test_a_pid_without_images_costs_little(tmp_path, many_pids):
    """Counted, not timed: what 75,000 more pids add to validate's peak memory (VmHWM)."""
    def peak(directory):
        done = subprocess.run([sys.executable, "-c", MEASURED_COMMAND, "validate", "--format",
                               "json", str(directory)], cwd=ROOT, capture_output=True,
                              text=True, timeout=1200, check=False)
        assert done.returncode == 2, done.stderr[-2000:]
        return int(done.stderr.split("VmHWM ")[-1].split()[0]) * 1024

    few = _flat(tmp_path / "few", PIDS // 4)
    per_pid = (peak(many_pids) - peak(few)) / (PIDS - PIDS // 4)
    assert per_pid <= PER_PID, per_pid


def test_finding_list_keeps_the_first_of_each_code_and_counts_the_rest():
    found = FindingList(limit=2)
    for pid in range(5):
        found.add(Finding(ERROR, "missing-image", f"pid {pid}", f"core-{pid}.img", named(pid=pid)))
    found.add(Finding("warning", "orphan", "pid 9", "pstree.img"))
    result = found.result()
    assert [f.where for f in result] == ["core-0.img", "core-1.img", "pstree.img", "checkpoint"]
    summary = result[-1]
    assert (summary.code, summary.severity, dict(summary.params)) == \
        ("missing-image", ERROR, {"more": 3})
    assert finding_count(result, ERROR) == 5 and finding_count(result) == 6


def test_validate_s_own_checks_are_capped_too(tmp_path):
    """Children listed before their parent: one pstree-order finding each (validate's own
    check, not the graph's), 20 listed and one summary."""
    from crit_plus.analysis.validate import validate
    from crit_plus.graph import open_checkpoint

    builder = CheckpointBuilder(tmp_path / "reversed")
    builder.inventory()
    children = [proc(pid, ppid=pid + 1, pgid=1, sid=1) for pid in range(2, 60)]
    builder.pstree([proc(1, pgid=1, sid=1)] + children + [proc(60, ppid=1, pgid=1, sid=1)])
    report = validate(open_checkpoint(builder.directory), stages=("integrity",))
    order = [f for f in report.findings if f.code == "pstree-order"]
    assert len(order) == MAX_PER_CODE + 1
    assert order[-1].message.startswith(f"{58 - MAX_PER_CODE} more pstree-order findings")
    missing = [f for f in report.findings if f.code == "missing-image"]
    assert missing[-1].message.startswith(f"{60 * 5 - MAX_PER_CODE} more missing-image")
