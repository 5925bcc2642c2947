"""Benchmarks of ``summarize`` against CRIU's four ``crit x`` explorers, and of ``mem grep``.

Run with ``make bench``, or alone::

    pytest -q tests/benchmarks/test_bench_summarize.py --benchmark-enable -p no:cacheprovider -s

They skip in a normal run.  Numbers are printed (and kept in ``extra_info``),
never asserted; docs/performance.md has them.

- ``summarize`` against ``crit x DIR ps`` + ``fds`` + ``mems`` + ``rss`` (CRIU 4.2.1's
  crit from its source tree, tests/crit_explorers.py) on every fixture and on a
  synthetic checkpoint of 500 processes x 200 VMAs, in the same run, two ways:
  in-process (the work: crit's explorers printing to /dev/null against opening
  the checkpoint, summarizing and rendering the table) and as commands (what a
  user waits for: four ``crit`` processes against one ``crit-plus``);
- ``mem grep`` over 1 GiB of dumped pages (a synthetic checkpoint made in a
  tmp dir and removed afterwards), in MiB/s.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import time

import pytest

pytest.importorskip("pytest_benchmark")

from crit_plus.analysis import explore, summary  # noqa: E402
from crit_plus.commands.options import gc_paused, open_checkpoint_source  # noqa: E402
from crit_plus.commands.summarize import write_summary  # noqa: E402
from decoders import PAGE_SIZE  # noqa: E402
from tests import crit_explorers  # noqa: E402
from tests.synth import PRESENT, CheckpointBuilder, RunSpec, many_processes, proc, vma  # noqa: E402

pytestmark = pytest.mark.benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIB = 1 << 20
GIB = 1 << 30


def best(theirs, ours, rounds):
    """Fastest wall-clock and CPU seconds (this process and its children) of
    ``rounds`` calls of each of ``theirs`` and ``ours``, taken in turn so that both
    meet the same conditions (a shared machine's load comes and goes).  On a
    shared machine the CPU time is the steadier measure; both are reported."""
    times = {theirs: ([], []), ours: ([], [])}
    for _ in range(rounds):
        for function, (walls, cpus) in times.items():
            start, cpu = time.perf_counter(), _cpu()
            function()
            walls.append(time.perf_counter() - start)
            cpus.append(_cpu() - cpu)
    return [(min(walls), min(cpus)) for walls, cpus in times.values()]


def _cpu():
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def crit_explorers_in_process(directory):
    """Run crit's four explorers on ``directory``, output to /dev/null; the ones
    that crash are returned by name (crit 4.2.1's rss on CRIU 4.1 dumps)."""
    crashed = []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for what in crit_explorers.EXPLORERS:
            module = crit_explorers.load_crit()
            try:
                module.explorers[what]({"dir": str(directory)})
            except (KeyError, FileNotFoundError):
                crashed.append(what)
    return crashed


def summarize_in_process(directory):
    """What ``crit-plus summarize DIRECTORY`` does after start-up."""
    with gc_paused(), open_checkpoint_source(directory) as opened:
        result = summary.summarize(opened.source, opened.checkpoint)
    write_summary(result, io.StringIO())
    return result


#: Both sides' commands run as a user's do: with Python's bytecode cache (the
#: sandbox this was written in sets PYTHONDONTWRITEBYTECODE, which makes every
#: process compile every module it imports, crit's and pycriu's included).
COMMAND_ENV = {name: value for name, value in os.environ.items()
               if name != "PYTHONDONTWRITEBYTECODE"}


def crit_commands(directory):
    """Run the four ``crit x`` commands as processes."""
    for what in crit_explorers.EXPLORERS:
        subprocess.run(crit_explorers.command(what, directory), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False, timeout=600, env=COMMAND_ENV)


def summarize_command(directory):
    """Run ``crit-plus summarize`` as a process."""
    subprocess.run([sys.executable, "-m", "crit_plus", "summarize", str(directory)],
                   stdout=subprocess.DEVNULL, check=True, timeout=600, cwd=ROOT, env=COMMAND_ENV)


def compare(bench, capsys, label, directory, rounds, command_rounds):
    """Time both sides in-process and as commands; print and keep the numbers."""
    crashed = crit_explorers_in_process(directory)  # warm the page cache and imports
    summarize_in_process(directory)
    crit_commands(directory)  # and the bytecode caches of both sides
    summarize_command(directory)
    (crit_wall, crit_cpu), (ours_wall, ours_cpu) = best(
        lambda: crit_explorers_in_process(directory), lambda: summarize_in_process(directory),
        rounds)
    (crit_cmd_wall, crit_cmd_cpu), (ours_cmd_wall, ours_cmd_cpu) = best(
        lambda: crit_commands(directory), lambda: summarize_command(directory), command_rounds)
    numbers = {
        "in_process_wall": (crit_wall, ours_wall), "in_process_cpu": (crit_cpu, ours_cpu),
        "commands_wall": (crit_cmd_wall, ours_cmd_wall), "commands_cpu": (crit_cmd_cpu,
                                                                          ours_cmd_cpu),
    }
    for name, (theirs, ours) in numbers.items():
        bench.extra_info[name] = {"crit_s": round(theirs, 4), "summarize_s": round(ours, 4),
                                  "ratio": round(theirs / ours, 1)}
    bench.extra_info["crit_crashed"] = crashed
    bench.pedantic(lambda: summarize_in_process(directory), rounds=1, iterations=1)
    note = f" (crit crashed in: {', '.join(crashed)})" if crashed else ""
    with capsys.disabled():
        print(f"\n[bench] {label}{note}")
        for name, (theirs, ours) in numbers.items():
            print(f"[bench]   {name:<16} crit x ps+fds+mems+rss {theirs * 1000:9.1f} ms   "
                  f"summarize {ours * 1000:8.1f} ms   {theirs / ours:5.1f}x")


# -- summarize against crit's explorers ---------------------------------------------------------


FACTS = json.loads(open(os.path.join(ROOT, "fixtures", "FACTS.json"), encoding="utf-8").read())


def _label(key):
    return key.split("/")[0] + (":" + "/".join(key.split("/")[-3:-1]) if "/" in key else "")


@pytest.mark.parametrize("key", sorted(FACTS), ids=[_label(k) for k in sorted(FACTS)])
def test_summarize_fixture(bench, capsys, checkpoint_dirs, key):
    if crit_explorers.available():
        pytest.skip(crit_explorers.available())
    compare(bench, capsys, _label(key), checkpoint_dirs[key], rounds=20, command_rounds=5)


@pytest.fixture(scope="module")
def synthetic_500x200(tmp_path_factory):
    """500 processes x 200 VMAs (100 000 VMAs, 100 000 pagemap entries, 8 000 fds)."""
    directory = tmp_path_factory.mktemp("synth500") / "ck"
    many_processes(directory, processes=500, vmas=200)
    return directory


def test_summarize_500_processes_x_200_vmas(bench, capsys, synthetic_500x200):
    if crit_explorers.available():
        pytest.skip(crit_explorers.available())
    result = summarize_in_process(synthetic_500x200)
    assert (result.totals.processes, result.totals.vmas) == (500, 100_000)
    compare(bench, capsys, "synthetic 500 processes x 200 VMAs", synthetic_500x200,
            rounds=3, command_rounds=1)


# -- mem grep ------------------------------------------------------------------------------------

RUN_PAGES = 256  # 1 MiB per pagemap entry
RUNS = GIB // (RUN_PAGES * PAGE_SIZE)
NEEDLE = b"crit-plus-needle:7f3a"
EVERY = 64  # a needle in every 64th run


@pytest.fixture(scope="module")
def gib_of_pages(tmp_path_factory):
    """Two processes with 512 MiB of present pages each (random bytes, a needle in
    every 64th MiB); the pages images are removed afterwards."""
    directory = tmp_path_factory.mktemp("grep-gib") / "ck"
    builder = CheckpointBuilder(directory)
    builder.inventory()
    builder.pstree([proc(1), proc(2, ppid=1)])
    block = os.urandom(RUN_PAGES * PAGE_SIZE)
    base = 0x7F0000000000
    stride = (RUN_PAGES + 1) * PAGE_SIZE
    written = []
    per_process = RUNS // 2
    for pid in (1, 2):
        runs = [RunSpec(base + i * stride, RUN_PAGES, PRESENT) for i in range(per_process)]
        pages_id = builder.process(pid, vmas=[vma(base, base + per_process * stride)], runs=runs,
                                   write_pages=False)
        path = builder.path(f"pages-{pages_id}.img")
        with open(path, "wb") as handle:
            for i in range(per_process):
                if i % EVERY == 0:
                    handle.write(block[:4096] + NEEDLE + block[4096 + len(NEEDLE):])
                else:
                    handle.write(block)
        written.append(path)
    builder.finish()
    yield directory
    for path in written:
        os.remove(path)


def test_mem_grep_gib(bench, capsys, gib_of_pages):
    with open_checkpoint_source(gib_of_pages) as opened:
        search = explore.MemoryGrep(opened.checkpoint, NEEDLE)
        assert search.total == GIB

        def grep():
            return sum(1 for _hit in search.hits())

        hits = bench.pedantic(grep, rounds=3, iterations=1, warmup_rounds=1)
    assert hits == 2 * ((RUNS // 2 + EVERY - 1) // EVERY)
    mean = bench.stats.stats.mean
    fastest = bench.stats.stats.min
    bench.extra_info["MiB_per_s"] = round(GIB / mean / MIB)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "crit_plus", "mem", "grep", str(gib_of_pages),
                             NEEDLE.decode(), "-f", "json"], capture_output=True, text=True,
                            cwd=ROOT, timeout=600, check=True)
    command = time.perf_counter() - start
    assert result.stdout.count('"pid"') == hits
    with capsys.disabled():
        print(f"\n[bench] mem grep 1 GiB ({hits} hits): {mean:.3f} s mean, {fastest:.3f} s best "
              f"= {GIB / mean / MIB:.0f} MiB/s ({GIB / fastest / MIB:.0f} MiB/s best); "
              f"the command, start-up included: {command:.2f} s = {GIB / command / MIB:.0f} MiB/s")
