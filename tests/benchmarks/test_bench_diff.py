"""Benchmark of ``diff``'s page content comparison (issue 8).

Two synthetic checkpoints of one process with 2 GiB of present pages each (2048
pagemap runs of 1 MiB, one unlisted page between runs), generated in a tmp dir
and deleted afterwards.  NEW's pages file is OLD's with 1% of the pages
(5243, spread uniformly at random) rewritten in 16 bytes each: real data on
both sides, every page distinct.

Measured, page cache warm, one core (each tool is single-threaded; CPU time,
user + system, is given beside wall time because the machine may be shared):

- ``diff_checkpoints(..., sections=("memory",))`` in this process: time and
  GiB/s of page data per side;
- the ``crit-plus diff --only memory`` command in a fresh interpreter: time
  and peak memory (``VmHWM`` of the process: ``ru_maxrss`` of a child started
  from this big process would count this process's memory too);
- ``cmp -l`` of the two pages files: the floor, no parsing at all (``-l`` so
  that it reads both files to the end instead of stopping at the first
  difference);
- ``--no-content`` (VMAs only) for scale.

Numbers are printed and kept in ``extra_info``; correctness is asserted (the
changed pages found are exactly the ones written), timings are not.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time

import pytest

pytest.importorskip("pytest_benchmark")

import crit_plus  # noqa: E402
from crit_plus.analysis.diff import diff_checkpoints  # noqa: E402
from decoders import PAGE_SIZE  # noqa: E402
from tests.benchmarks.peak import MEASURED_COMMAND  # noqa: E402
from tests.synth import striped  # noqa: E402

pytestmark = pytest.mark.benchmark

GIB = 1 << 30
SIZE = 2 * GIB
RUN_PAGES = 256  # 1 MiB per pagemap entry
RUNS = SIZE // (RUN_PAGES * PAGE_SIZE)
PAGES = SIZE // PAGE_SIZE
CHANGED = PAGES // 100
BASE = 0x7F0000000000
BLOCK = 64 << 20
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_pages(path):
    """2 GiB of pages: a random 64 MiB block, each page stamped with its own index."""
    block = bytearray(os.urandom(BLOCK))
    per_block = BLOCK // PAGE_SIZE
    with open(path, "wb") as handle:
        for k in range(SIZE // BLOCK):
            for i in range(per_block):
                at = i * PAGE_SIZE
                block[at:at + 8] = (k * per_block + i).to_bytes(8, "little")
            handle.write(block)


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """OLD and NEW (2 GiB of pages each, 1% of the pages differ), and the changed pages."""
    top = tmp_path_factory.mktemp("diff-bench")
    free = shutil.disk_usage(top).free
    if free < 2 * SIZE + GIB:
        pytest.skip(f"needs {(2 * SIZE + GIB) / GIB:.0f} GiB free in {top}, has "
                    f"{free / GIB:.1f} GiB")
    old_pages = striped(top / "old", RUNS, RUN_PAGES, BASE)
    new_pages = striped(top / "new", RUNS, RUN_PAGES, BASE)
    try:
        _write_pages(old_pages)
        shutil.copyfile(old_pages, new_pages)
        rng = random.Random(8)
        changed = sorted(rng.sample(range(PAGES), CHANGED))
        with open(new_pages, "r+b") as handle:
            for page in changed:
                handle.seek(page * PAGE_SIZE + 64 + rng.randrange(PAGE_SIZE - 80))
                handle.write(os.urandom(16))
        subprocess.run(["cat", old_pages, new_pages], stdout=subprocess.DEVNULL, check=True)
        yield top / "old", top / "new", old_pages, new_pages, changed
    finally:
        for path in (old_pages, new_pages):
            if os.path.exists(path):
                os.remove(path)


def _say(capsys, line):
    with capsys.disabled():
        print(f"\n[bench] {line}")


def _cpu(before, after):
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def _record(bench, capsys, what, wall, cpu, extra=""):
    """Keep and print wall and CPU seconds and the GiB/s per side they mean."""
    bench.extra_info.update(wall_s=round(wall, 3), cpu_s=round(cpu, 3),
                            GiB_per_s_per_side_cpu=round(SIZE / cpu / GIB, 2),
                            GiB_per_s_per_side_wall=round(SIZE / wall / GIB, 2))
    _say(capsys, f"{what}: wall {wall:.2f} s ({SIZE / wall / GIB:.2f} GiB/s per side), "
                 f"CPU {cpu:.2f} s ({SIZE / cpu / GIB:.2f} GiB/s per side){extra}")


def test_content_diff_in_process(bench, capsys, two_checkpoints):
    old_dir, new_dir, _old, _new, changed = two_checkpoints

    cpu = []

    def compare():
        before = resource.getrusage(resource.RUSAGE_SELF)
        old = crit_plus.open_checkpoint(old_dir)
        new = crit_plus.open_checkpoint(new_dir)
        result = diff_checkpoints(old, new, sections=("memory",)).memory
        cpu.append(_cpu(before, resource.getrusage(resource.RUSAGE_SELF)))
        return result

    memory = bench.pedantic(compare, rounds=3, iterations=1, warmup_rounds=1)
    (process,) = memory.processes
    assert memory.pages.changed == len(changed)
    assert memory.pages.unchanged == PAGES - len(changed) + RUNS  # + the unlisted zero pages
    ranges = [r for row in process.vmas for r in row.changed_ranges]
    assert ranges[0][0] == BASE + (changed[0] // RUN_PAGES) * PAGE_SIZE + changed[0] * PAGE_SIZE
    _record(bench, capsys, "diff memory in process, 2 GiB per side, 1% of pages changed",
            bench.stats.stats.min, min(cpu[1:]))
    assert memory.bytes_read == 2 * SIZE


def test_content_diff_command_fresh_interpreter(bench, capsys, two_checkpoints):
    old_dir, new_dir, _old, _new, changed = two_checkpoints
    runs = []

    def command():
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", MEASURED_COMMAND, "diff", str(old_dir),
                                  str(new_dir), "--only", "memory", "--format", "json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        out, err = child.communicate()
        wall = time.perf_counter() - start
        peak = int(err.decode().split("VmHWM")[1].split()[0])
        runs.append((wall, peak))
        return child.returncode, json.loads(out)

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code, data = bench.pedantic(command, rounds=3, iterations=1)
    cpu = _cpu(before, resource.getrusage(resource.RUSAGE_CHILDREN)) / 3
    assert code == 1 and data["memory"]["pages"]["changed"] == len(changed)
    peak = max(r[1] for r in runs) / 1024
    bench.extra_info.update(peak_mib=round(peak, 1))
    _record(bench, capsys, "crit-plus diff --only memory, fresh interpreter (imports included)",
            min(r[0] for r in runs), cpu, f", peak memory (VmHWM) {peak:.1f} MiB")
    assert peak < 200


def test_cmp_floor(bench, capsys, two_checkpoints):
    _old_dir, _new_dir, old_pages, new_pages, changed = two_checkpoints

    def floor():
        result = subprocess.run(["cmp", "-l", old_pages, new_pages], stdout=subprocess.PIPE,
                                check=False)
        return result.returncode, result.stdout.count(b"\n")

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code, lines = bench.pedantic(floor, rounds=3, iterations=1)
    cpu = _cpu(before, resource.getrusage(resource.RUSAGE_CHILDREN)) / 3
    assert code == 1 and len(changed) <= lines <= 16 * len(changed)
    _record(bench, capsys, "cmp -l of the two pages files", bench.stats.stats.min, cpu)


def test_no_content(bench, capsys, two_checkpoints):
    old_dir, new_dir, *_rest = two_checkpoints

    def compare():
        old = crit_plus.open_checkpoint(old_dir)
        new = crit_plus.open_checkpoint(new_dir)
        return diff_checkpoints(old, new, sections=("memory",), content=False).memory

    memory = bench.pedantic(compare, rounds=3, iterations=1)
    assert memory.bytes_read == 0 and not memory.differs
    _say(capsys, f"diff --no-content (VMAs only): {bench.stats.stats.mean * 1000:.0f} ms")
