"""Benchmark of ``summarize --format html`` on a 300-process checkpoint (issue 22).

Run with ``make bench``, or alone::

    pytest -q tests/benchmarks/test_bench_html.py --benchmark-enable -p no:cacheprovider -s

Measured, printed and kept in ``extra_info`` (never asserted: tests/test_html.py asserts the
size only): the page's size, the time ``crit-plus summarize --format html -o`` takes (a
command, best of 3), and the time headless chromium takes from navigation start to the load
event to the first paint after the load event and a layout of the whole page (best of 5 loads
in one browser), on a synthetic checkpoint of 300 processes x 24 VMAs x 4 fds
(tests/synth.py ``many_processes``) and, where CRIU works here, on a real dump of a shell
with 300 sleeping children (tests/test_html.py dumps it the same way).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.browser import Browser, find_chromium
from tests.synth import many_processes
from tests.test_html import dump_sleeping_children
from tests.workloads import harness

pytestmark = pytest.mark.benchmark

PROCESSES, VMAS, FDS = 300, 24, 4


def _measure(bench, executable, directory, page, label):
    """Write ``directory``'s page (best of 3 commands) and load it (best of 5)."""
    command = [sys.executable, "-m", "crit_plus", "summarize", str(directory),
               "--format", "html", "-o", str(page)]
    writes = []
    for _round in range(3):
        start = time.perf_counter()
        subprocess.run(command, check=True)
        writes.append(time.perf_counter() - start)
    browser = Browser(executable, page.parent)
    try:
        loads = [browser.load(page).seconds for _round in range(5)]
        if not bench.extra_info:  # pytest-benchmark times one thing per test: the first
            bench.pedantic(lambda: browser.load(page), rounds=1, iterations=1)
    finally:
        browser.close()
    size = page.stat().st_size
    bench.extra_info[label] = dict(bytes=size, write_seconds=min(writes),
                                   load_seconds=min(loads))
    print(f"\n{label}: page {size / (1 << 20):.2f} MiB, written in {min(writes):.2f} s "
          f"(command), painted by chromium in {min(loads):.3f} s")


def test_html_page_of_300_processes(bench, tmp_path):
    executable = find_chromium()
    if executable is None:
        pytest.skip("chromium is not installed (scripts/install-system-deps)")
    directory = tmp_path / "many"
    many_processes(directory, processes=PROCESSES, vmas=VMAS, fds=FDS)
    _measure(bench, executable, directory, tmp_path / "many.html",
             f"synthetic, {PROCESSES} processes x {VMAS} VMAs")
    criu, _reason = harness.find_criu()
    if criu is not None:
        images = tmp_path / "shell"
        dump_sleeping_children(criu, images, PROCESSES)
        _measure(bench, executable, images, tmp_path / "shell.html",
                 f"CRIU dump of a shell and {PROCESSES} sleeping children")
