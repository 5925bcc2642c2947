"""Many checkpoints in one command (issue 24): 1,000 small checkpoints validated by one
``crit-plus validate lxd: --format jsonl`` process, in under a minute on 2 cores.

The checkpoints: an LXD tree made of the real ``lxd-web`` fixture's files (hard links), with
500 containers, each with a stateful stop and a stateful snapshot (``web``'s, 817 and 641 KiB
of images); ``lxd:`` names them all.  One whole process, imports included, from a
fresh interpreter (tests/benchmarks/peak.py: its peak memory, which must not grow with the
number of checkpoints: each graph is released once reported).  Run with ``make bench``;
numbers in docs/performance.md, "Many checkpoints (issue 24)".
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")

from tests import damage  # noqa: E402
from tests.benchmarks.peak import MEASURED_COMMAND  # noqa: E402

pytestmark = pytest.mark.benchmark

ROOT = Path(__file__).resolve().parents[2]
POOL = "var/lib/lxd/storage-pools/default"
COUNT = 1000


def _tree(fixture_root, top, instances):
    """An LXD tree of ``instances`` containers, each a copy of lxd-web's ``web`` (files hard
    linked, backup.yaml rewritten with its own name) with two checkpoints: its stateful stop
    and its stateful snapshot ``before``."""
    damage.clone(fixture_root / "lxd-web/var/lib/lxd", top / "var/lib/lxd")
    pool = top / POOL
    web, before = pool / "containers/web", pool / "containers-snapshots/web"
    shutil.rmtree(before / "after")
    for index in range(1, instances):
        name = f"web{index:04d}"
        damage.clone(web, pool / "containers" / name)
        damage.clone(before, pool / "containers-snapshots" / name)
        for backup in (pool / "containers" / name / "backup.yaml",
                       pool / "containers-snapshots" / name / "before/backup.yaml"):
            text = backup.read_text().replace("  name: web\n", f"  name: {name}\n")
            damage.replace(backup, text.encode())
    return top


@pytest.fixture(scope="module")
def many_tree(fixture_root, tmp_path_factory):
    """COUNT checkpoints (COUNT / 2 instances), and 100 for the peak-memory comparison."""
    base = tmp_path_factory.mktemp("many")
    trees = {COUNT: _tree(fixture_root, base / "big", COUNT // 2),
             100: _tree(fixture_root, base / "small", 50)}
    yield trees
    shutil.rmtree(base, ignore_errors=True)


def _validate_all(tree):
    started = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", MEASURED_COMMAND, "validate", "lxd:",
                            "--lxd-dir", str(tree / "var/lib/lxd"), "--format", "jsonl"],
                           capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - started
    peak = int(child.stderr.split("VmHWM")[1].split()[0]) / 1024
    return child, wall, peak


def test_validate_1000_checkpoints(bench, capsys, many_tree):
    runs = []

    def command():
        runs.append(_validate_all(many_tree[COUNT]))
        return runs[-1][0]

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = bench.pedantic(command, rounds=3, iterations=1)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / 3
    documents = [json.loads(line) for line in child.stdout.splitlines()]
    assert len(documents) == COUNT and child.returncode == max(d["exit_code"]
                                                               for d in documents)
    assert all(d["result"] is not None for d in documents)
    _small, _wall, small_peak = _validate_all(many_tree[100])
    wall = min(r[1] for r in runs)
    peak = max(r[2] for r in runs)
    bench.extra_info.update(wall_s=round(wall, 2), cpu_s=round(cpu, 2),
                            peak_mib=round(peak, 1), peak_100_mib=round(small_peak, 1))
    with capsys.disabled():
        print(f"\nvalidate lxd: over {COUNT} checkpoints, one process: {wall:.2f} s wall, "
              f"{cpu:.2f} s CPU, {wall / COUNT * 1000:.1f} ms each; peak memory "
              f"{peak:.1f} MiB ({small_peak:.1f} MiB for 100)")
    assert peak < small_peak * 1.25  # memory does not grow with the number of checkpoints
