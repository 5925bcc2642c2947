"""Scale benchmarks (issue 24 "Scale", issue 25 "Amplification").

Run with ``make bench``, or alone::

    pytest -q tests/benchmarks/test_bench_scale.py --benchmark-enable -p no:cacheprovider -s

- ``summarize``, ``validate`` and ``diff`` (of a checkpoint with itself) on synthetic
  checkpoints of 1,000 / 2,000 / 5,000 / 10,000 processes x 50 VMAs x 20 fds
  (tests/synth.py ``many_processes``): CPU and peak memory (VmHWM) of each command as a
  process, and their ratios from one size to the next (linear growth: the ratio of the
  sizes);
- ``summarize`` against crit's ``x ps``, ``x fds``, ``x mems``, ``x rss`` as four
  commands on the 10,000-process checkpoint, in the same run: CPU, wall, peak memory
  (crit's: the highest of its four);
- ``validate`` of a hostile ``pstree.img`` of 1,000,000 pids and nothing else, under an
  address-space limit of 2 GiB (RLIMIT_AS): time and peak memory;
- where CRIU works here, ``summarize`` against crit's four explorers on a real dump of a
  shell with 300 sleeping children (``tests/test_html.py`` ``dump_sleeping_children``),
  in process and as commands, the sides taking turns (``test_bench_summarize.compare``).

Numbers are printed and kept in ``extra_info`` (docs/performance.md,
docs/robustness.md); the hard bounds are tests/test_scale.py's and
tests/test_amplification.py's.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest

pytest.importorskip("pytest_benchmark")

from tests import crit_explorers  # noqa: E402
from tests.benchmarks.peak import MEASURED_COMMAND  # noqa: E402
from tests.benchmarks.test_bench_summarize import compare  # noqa: E402
from tests.synth import CheckpointBuilder, many_processes  # noqa: E402
from tests.test_html import dump_sleeping_children  # noqa: E402
from tests.workloads import harness  # noqa: E402

pytestmark = pytest.mark.benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZES = (1_000, 2_000, 5_000, 10_000)
HOSTILE_PIDS = 1_000_000
HOSTILE_LIMIT = 2 << 30
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def measured(argv, limit=None):
    """``(wall s, CPU s, VmHWM KiB, exit code)`` of ``python -c CODE ARGS``: ``argv`` is
    ``[code, *args]``; the code prints ``VmHWM <KiB>`` on stderr at its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    child = subprocess.run([sys.executable, "-c", *map(str, argv)], cwd=ROOT, env=ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           timeout=3600, check=False, preexec_fn=limited if limit else None)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peaks = [line for line in child.stderr.splitlines() if line.startswith("VmHWM ")]
    assert peaks, child.stderr[-2000:]
    return wall, cpu, int(peaks[-1].split()[1]), child.returncode


def crit_plus(*args, limit=None):
    """:func:`measured` of ``crit-plus ARGS``."""
    return measured([MEASURED_COMMAND, *args], limit)


def crit_explorer(what, directory):
    """:func:`measured` of crit's ``x DIRECTORY WHAT`` (tests/crit_explorers.py)."""
    code = crit_explorers.command(what, directory)[2]
    code += ("; import sys; from tests.benchmarks.peak import peak_kib; "
             "print(f'VmHWM {peak_kib()}', file=sys.stderr)")
    return measured([code])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The synthetic checkpoints, by process count (pages files are sparse)."""
    made = {}
    for count in SIZES:
        directory = tmp_path_factory.mktemp(f"scale{count}") / "ck"
        many_processes(directory, processes=count, vmas=50, fds=20)
        made[count] = directory
    return made


def test_growth_with_the_processes(bench, capsys, synthetic):
    table = {}
    for command in ("summarize", "validate", "diff"):
        for count in SIZES:
            directory = synthetic[count]
            args = [command, directory] + ([directory] if command == "diff" else [])
            _wall, cpu, peak, code = crit_plus(*args)
            assert code in (0, 2), (command, code)  # validate: 2 (no seccomp.img)
            table[command, count] = (cpu, peak)
    bench.extra_info["growth"] = {f"{c} {n}": {"cpu_s": round(v[0], 2), "peak_mib":
                                               round(v[1] / 1024)} for (c, n), v in table.items()}
    bench.pedantic(lambda: None, rounds=1, iterations=1)
    with capsys.disabled():
        print("\n[bench] processes x 50 VMAs x 20 fds: CPU s / peak MiB "
              "(ratio to the size before; linear = the ratio of the sizes)")
        for command in ("summarize", "validate", "diff"):
            cells, previous = [], None
            for count in SIZES:
                cpu, peak = table[command, count]
                cell = f"{count}: {cpu:6.2f} s {peak / 1024:6.0f} MiB"
                if previous is not None:
                    cell += (f" (x{cpu / previous[0]:.1f} / x{peak / previous[1]:.1f}"
                             f" for x{count / previous[2]:.1f})")
                cells.append(cell)
                previous = (cpu, peak, count)
            print(f"[bench]   {command:<9} " + "; ".join(cells))


def test_summarize_10000_against_crit(bench, capsys, synthetic):
    if crit_explorers.available():
        pytest.skip(crit_explorers.available())
    directory = synthetic[SIZES[-1]]
    theirs = [crit_explorer(what, directory) for what in crit_explorers.EXPLORERS]
    ours = crit_plus("summarize", directory)
    crit_wall, crit_cpu = sum(t[0] for t in theirs), sum(t[1] for t in theirs)
    crit_peak = max(t[2] for t in theirs)
    wall, cpu, peak, _code = ours
    bench.extra_info.update(crit_wall_s=round(crit_wall, 2), crit_cpu_s=round(crit_cpu, 2),
                            crit_peak_mib=round(crit_peak / 1024), wall_s=round(wall, 2),
                            cpu_s=round(cpu, 2), peak_mib=round(peak / 1024))
    bench.pedantic(lambda: None, rounds=1, iterations=1)
    with capsys.disabled():
        print(f"\n[bench] {SIZES[-1]} processes: crit x ps+fds+mems+rss {crit_wall:.1f} s wall "
              f"{crit_cpu:.1f} s CPU, peak {crit_peak / 1024:.0f} MiB; summarize {wall:.1f} s "
              f"wall {cpu:.1f} s CPU, peak {peak / 1024:.0f} MiB: {crit_wall / wall:.1f}x wall, "
              f"{crit_cpu / cpu:.1f}x CPU (target 10x), memory {peak / crit_peak:.1f}x crit's "
              f"[load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs]")


def test_validate_a_million_pids_without_images(bench, capsys, tmp_path):
    builder = CheckpointBuilder(tmp_path / "hostile")
    builder.inventory()
    builder.flat_pstree(HOSTILE_PIDS)
    wall, cpu, peak, code = crit_plus("validate", "--format", "json", builder.directory,
                                      limit=HOSTILE_LIMIT)
    bench.extra_info.update(wall_s=round(wall, 1), cpu_s=round(cpu, 1),
                            peak_mib=round(peak / 1024))
    bench.pedantic(lambda: None, rounds=1, iterations=1)
    with capsys.disabled():
        print(f"\n[bench] validate of {HOSTILE_PIDS} pids without images under RLIMIT_AS "
              f"{HOSTILE_LIMIT >> 20} MiB: exit {code}, {wall:.0f} s wall, {cpu:.0f} s CPU, "
              f"peak {peak / 1024:.0f} MiB ({peak * 1024 / HOSTILE_PIDS:.0f} bytes a pid)")
    assert code == 2  # FAIL: the images are missing; not an internal error, not killed


def test_summarize_300_sleeping_children_against_crit(bench, capsys, tmp_path):
    if crit_explorers.available():
        pytest.skip(crit_explorers.available())
    criu, reason = harness.find_criu()
    if criu is None:
        pytest.skip(reason)
    images = tmp_path / "images"
    dump_sleeping_children(criu, images, 300)
    compare(bench, capsys, "CRIU dump of a shell and 300 sleeping children", images,
            rounds=5, command_rounds=5)
