"""Benchmarks of the checkpoint graph and the page reader.

Run with ``make bench`` (``pytest tests/benchmarks --benchmark-enable``).  In a
normal run (``--benchmark-disable`` from pyproject) they skip, and they skip
cleanly when pytest-benchmark is not installed.  Numbers are printed, never
asserted, except the memory bound of the bulk readers.

- open + walk every process, VMA and fd of the largest fixture;
- read 1 GiB of present pages from a synthetic checkpoint generated in a tmp
  dir: 1024 runs of 1 MiB separated by one-page holes, through
  ``iter_present``, ``stream`` and ``read`` in 4 MiB windows;
- peak memory of streaming that GiB, measured in a fresh interpreter
  (``VmHWM``) and with tracemalloc.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc

import pytest

pytest.importorskip("pytest_benchmark")

import crit_plus  # noqa: E402
from decoders import PAGE_SIZE  # noqa: E402
from tests import crit_explorers  # noqa: E402
from tests.synth import striped  # noqa: E402

pytestmark = pytest.mark.benchmark

GIB = 1 << 30
RUN_PAGES = 256  # 1 MiB per pagemap entry
RUNS = GIB // (RUN_PAGES * PAGE_SIZE)
BASE = 0x7F0000000000
CHUNK = 4 << 20


def report(benchmark, capsys, what, nbytes=None):
    """Print the mean time (and throughput) of the last benchmark; keep it in extra_info."""
    mean = benchmark.stats.stats.mean
    line = f"\n[bench] {what}: {mean * 1000:.1f} ms"
    if nbytes:
        rate = nbytes / mean / GIB
        benchmark.extra_info["GiB_per_s"] = round(rate, 2)
        line += f", {rate:.2f} GiB/s"
    with capsys.disabled():
        print(line)


# -- the graph ------------------------------------------------------------------------------------


def test_open_and_walk_largest_fixture(bench, capsys, checkpoint_dirs, facts):
    key = max(facts, key=lambda k: sum(p["vmas"] + len(p["fds"]) for p in facts[k]["processes"]))
    path = checkpoint_dirs[key]

    def walk():
        checkpoint = crit_plus.open_checkpoint(path)
        count = 0
        for _depth, process in checkpoint.walk():
            count += 1 + len(process.threads)
            for mapping in process.vmas:
                count += mapping.pages.get("present", 0) >= 0
            for fd in process.fds:
                count += fd.file is not None
        return count

    count = bench.pedantic(walk, rounds=10, iterations=1, warmup_rounds=1)
    assert count > 0
    report(bench, capsys, f"open + walk {key.split('/')[0]} ({count} objects)")
    if crit_explorers.available() is None:  # the same input through crit's x ps/fds/mems/rss
        ours = bench.stats.stats.min
        theirs = min(_timed(lambda: _crit_explorers(path)) for _ in range(5))
        bench.extra_info["crit_x_s"] = round(theirs, 4)
        with capsys.disabled():
            print(f"[bench] crit x ps+fds+mems+rss on the same input: {theirs * 1000:.1f} ms "
                  f"(best of 5) against {ours * 1000:.1f} ms: {theirs / ours:.1f}x")


def _timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _crit_explorers(path):
    """crit's four explorers on ``path``, printing to /dev/null (a fresh crit module
    each: crit caches files.img in module globals)."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for what in crit_explorers.EXPLORERS:
            crit_explorers.load_crit().explorers[what]({"dir": str(path)})


# -- the page reader ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gib_checkpoint(tmp_path_factory):
    """A checkpoint whose process has 1 GiB of present pages, in 1 MiB runs with holes."""
    directory = tmp_path_factory.mktemp("gib") / "ck"
    pages = striped(directory, RUNS, RUN_PAGES, BASE)
    block = os.urandom(RUN_PAGES * PAGE_SIZE)
    with open(pages, "wb") as handle:
        for i in range(RUNS):
            handle.write(i.to_bytes(8, "little") + block[8:])
    yield directory
    os.remove(pages)


def test_iter_present_gib(bench, capsys, gib_checkpoint):
    memory = crit_plus.open_checkpoint(gib_checkpoint).process(1).memory

    def consume():
        total = 0
        for _vaddr, data in memory.iter_present(CHUNK):
            total += len(data)
        return total

    assert bench.pedantic(consume, rounds=3, iterations=1, warmup_rounds=1) == GIB
    report(bench, capsys, "iter_present 1 GiB", GIB)


def test_stream_gib(bench, capsys, gib_checkpoint):
    memory = crit_plus.open_checkpoint(gib_checkpoint).process(1).memory
    mapping = memory.vmas[0]

    def consume():
        total = 0
        for _vaddr, data in memory.stream(mapping.start, mapping.size, CHUNK):
            total += len(data)
        return total

    assert bench.pedantic(consume, rounds=3, iterations=1, warmup_rounds=1) == mapping.size
    report(bench, capsys, f"stream {mapping.size / GIB:.3f} GiB (1 GiB present + holes)",
           mapping.size)


def test_read_windows_gib(bench, capsys, gib_checkpoint):
    memory = crit_plus.open_checkpoint(gib_checkpoint).process(1).memory
    runs = memory.runs

    def consume():
        total = 0
        for item in runs:  # each run read in 4 MiB-or-less windows through read()
            for offset in range(0, item.size, CHUNK):
                total += len(memory.read(item.vaddr + offset, min(CHUNK, item.size - offset)))
        return total

    assert bench.pedantic(consume, rounds=3, iterations=1, warmup_rounds=1) == GIB
    report(bench, capsys, "read() of 1 GiB in <= 4 MiB windows", GIB)


# VmHWM, not ru_maxrss (tests/benchmarks/peak.py says why).
_MEASURE = textwrap.dedent("""
    import json, sys, time
    import crit_plus
    from tests.benchmarks.peak import peak_kib as hwm_kib
    memory = crit_plus.open_checkpoint(sys.argv[1]).process(1).memory
    before = hwm_kib()
    start = time.perf_counter()
    total = sum(len(data) for _vaddr, data in memory.iter_present(4 << 20))
    elapsed = time.perf_counter() - start
    after = hwm_kib()
    print(json.dumps({"bytes": total, "seconds": elapsed, "maxrss_kib": after,
                      "baseline_kib": before}))
""")


def test_peak_memory_of_streaming_gib(bench, capsys, gib_checkpoint):
    # a fresh interpreter: its VmHWM is the peak of opening + streaming the GiB
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(gib_checkpoint)],
                            capture_output=True, text=True, check=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    numbers = json.loads(result.stdout)
    assert numbers["bytes"] == GIB
    # and the Python allocations while streaming, with tracemalloc
    memory = crit_plus.open_checkpoint(gib_checkpoint).process(1).memory
    tracemalloc.start()
    try:
        start = time.perf_counter()
        total = 0
        for _vaddr, data in memory.stream(memory.vmas[0].start, memory.vmas[0].size, CHUNK):
            total += len(data)
        elapsed = time.perf_counter() - start
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bench.extra_info.update(maxrss_mib=round(numbers["maxrss_kib"] / 1024, 1),
                            tracemalloc_peak_mib=round(peak / (1 << 20), 1))
    bench.pedantic(lambda: None, rounds=1, iterations=1)
    with capsys.disabled():
        print(f"\n[bench] fresh interpreter: iter_present 1 GiB in {numbers['seconds']:.3f} s "
              f"({GIB / numbers['seconds'] / GIB:.2f} GiB/s), peak RSS "
              f"{numbers['maxrss_kib'] / 1024:.1f} MiB (after import + open: "
              f"{numbers['baseline_kib'] / 1024:.1f} MiB)")
        print(f"[bench] stream under tracemalloc: {total / GIB:.3f} GiB in {elapsed:.3f} s, "
              f"peak Python allocations {peak / (1 << 20):.1f} MiB")
    assert peak < 100 << 20
    assert numbers["maxrss_kib"] < 100 * 1024
