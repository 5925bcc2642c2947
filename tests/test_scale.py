"""Scale without timing: work and memory that grow linearly with the processes.

Issue 24 asks that a checkpoint of many processes opens, summarizes, validates and
diffs with itself in memory that grows linearly, with no quadratic step.  Timing
on a shared machine cannot show that; these tests count instead:

- comparisons and hash lookups of pids (a pid type that counts them), where a
  quadratic step would hide in a C-level ``list.index`` or ``x in list``: the
  process tree of orphans (``ProcessTree``) and the users of a shared-memory
  object mapped by every process (``pages.checkpoint_pages``);
- the peak resident memory (``VmHWM``) of whole ``crit-plus`` processes on
  synthetic checkpoints of N and 2N processes (tests/synth.py ``many_processes``):
  what 2N adds over N is at most :data:`GROWTH` times what N adds over 1.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import crit_plus
from crit_plus.graph import ProcessTree
from decoders.records import PstreeEntry, Source
from tests.benchmarks.peak import MEASURED_COMMAND
from tests.synth import PRESENT, CheckpointBuilder, many_processes, proc, run, vma

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Most a doubling may multiply the work or the memory by (2 is linear; a quadratic
#: step makes it 4).
GROWTH = 2.4


class CountedPid(int):
    """An int that counts the comparisons and hashes made of it (in C too)."""

    operations = 0

    def __eq__(self, other):
        CountedPid.operations += 1
        return int(self) == int(other)

    def __ne__(self, other):
        return not self == other

    def __lt__(self, other):
        CountedPid.operations += 1
        return int(self) < int(other)

    def __hash__(self):
        CountedPid.operations += 1
        return int.__hash__(self)


def _counted(work):
    CountedPid.operations = 0
    work()
    return CountedPid.operations


def _orphans(count):
    """``count`` pstree entries whose parents are not in the checkpoint: every one a
    root, sorted into pstree order."""
    source = Source("pstree.img", 0, 0)
    return [PstreeEntry(CountedPid(pid), CountedPid(pid + 1_000_000), 1, 1, (pid,), source)
            for pid in range(2, count + 2)]


def test_a_tree_of_orphans_is_built_in_linear_work():
    small = _counted(lambda: ProcessTree(_orphans(2_000)))
    large = _counted(lambda: ProcessTree(_orphans(4_000)))
    assert large / small <= GROWTH, (small, large)
    tree = ProcessTree(_orphans(10))
    assert tree.roots == tuple(range(2, 12)) and len(tree.findings) == 10


def _shared_by_all(directory, processes):
    """``processes`` processes each mapping the same shared anonymous object."""
    base, size = 0x7F0000000000, 4 * 4096
    builder = CheckpointBuilder(directory)
    builder.inventory()
    builder.pstree([proc(1)] + [proc(pid, ppid=1) for pid in range(2, processes + 1)])
    for pid in range(1, processes + 1):
        builder.process(pid, vmas=[vma(base, base + size, kind="shared", shmid=77)])
    builder.pagemap("pagemap-shmem-77.img", [run(base, 2, PRESENT)])
    builder.finish()
    return directory


@pytest.mark.parametrize("processes", [1, 3])
def test_shared_object_users_are_listed_once_each_in_order(tmp_path, processes):
    checkpoint = crit_plus.open_checkpoint(_shared_by_all(tmp_path / "ck", processes))
    obj, = checkpoint.pages.objects
    assert obj.shmid == 77 and obj.mapped_by == tuple(range(1, processes + 1))
    assert obj.pages.present == 2


def test_the_users_of_one_shared_object_are_gathered_in_linear_work(tmp_path):
    def operations(processes):
        checkpoint = crit_plus.open_checkpoint(_shared_by_all(tmp_path / f"{processes}",
                                                              processes))
        for process in checkpoint.processes:
            process.pages  # decoded before counting: only the gathering is counted
            process.pid = CountedPid(process.pid)
        return _counted(lambda: checkpoint.pages)

    small, large = operations(150), operations(300)
    assert large / small <= GROWTH, (small, large)


# -- whole commands: peak memory of N and 2N processes ----------------------------------


def _peak_kib(*args):
    """VmHWM (KiB) of ``crit-plus ARGS`` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", MEASURED_COMMAND, *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode in (0, 1, 2), done.stderr[-2000:]
    line = [text for text in done.stderr.splitlines() if text.startswith("VmHWM ")][-1]
    return int(line.split()[1])


@pytest.fixture(scope="module")
def sizes(tmp_path_factory):
    """Synthetic checkpoints of 1, N and 2N processes x 50 VMAs x 20 fds."""
    made = {}
    for count in (1, 200, 400):
        directory = tmp_path_factory.mktemp(f"scale{count}") / "ck"
        many_processes(directory, processes=count, vmas=50, fds=20)
        made[count] = directory
    return made


@pytest.mark.parametrize("command", ["summarize", "validate", "diff"])
def test_memory_grows_linearly_with_the_processes(sizes, command):
    def peak(count):
        directory = sizes[count]
        return _peak_kib(command, *([directory] * (2 if command == "diff" else 1)))

    base, small, large = peak(1), peak(200), peak(400)
    assert small > base, (base, small, large)
    assert (large - base) / (small - base) <= GROWTH, (base, small, large)


#: Most peak memory (KiB) one more process of 50 VMAs (a pagemap entry each) and 20 fds may
#: add to each command: the graph's records of it (its 50 VMAs, mappings and pagemap
#: entries, 20 fds, its core).  Measured 25 / 33 / 26 KiB; 44 / 53 / 45 KiB before a
#: mapping's page counts were shared and pagemap entries kept in arrays (docs/performance.md,
#: "Scale").
PER_PROCESS_KIB = {"ps": 32, "summarize": 40, "validate": 33}


@pytest.mark.parametrize("command", sorted(PER_PROCESS_KIB))
def test_a_process_costs_a_bounded_amount_of_memory(sizes, command):
    per_process = (_peak_kib(command, sizes[400]) - _peak_kib(command, sizes[1])) / 399
    assert per_process <= PER_PROCESS_KIB[command], per_process
