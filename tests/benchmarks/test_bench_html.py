"""Benchmark of ``summarize --format html`` on a 300-process checkpoint (issue 22).

Run with ``make bench``, or alone::

    pytest -q tests/benchmarks/test_bench_html.py --benchmark-enable -p no:cacheprovider -s

Measured, printed and kept in ``extra_info`` (never asserted: tests/test_html.py asserts the
size only): the page's size, the time ``crit-plus summarize --format html -o`` takes (a
command, best of 3), and the time headless chromium takes from navigation start to the load
event (best of 5 loads in one browser; layout and paint of the whole page are done by then),
on a synthetic checkpoint of 300 processes x 24 VMAs x 4 fds (tests/synth.py
``many_processes``: a shell's 300 sleeping children have about as many VMAs each).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.browser import Browser, find_chromium
from tests.synth import many_processes

pytestmark = pytest.mark.benchmark

PROCESSES, VMAS, FDS = 300, 24, 4


def test_html_page_of_300_processes(bench, tmp_path):
    executable = find_chromium()
    if executable is None:
        pytest.skip("chromium is not installed (scripts/install-system-deps)")
    directory = tmp_path / "many"
    many_processes(directory, processes=PROCESSES, vmas=VMAS, fds=FDS)
    page = tmp_path / "many.html"
    command = [sys.executable, "-m", "crit_plus", "summarize", str(directory),
               "--format", "html", "-o", str(page)]
    writes = []
    for _round in range(3):
        start = time.perf_counter()
        subprocess.run(command, check=True)
        writes.append(time.perf_counter() - start)
    browser = Browser(executable, tmp_path)
    try:
        loads = [browser.load(page).seconds for _round in range(5)]
        bench.pedantic(lambda: browser.load(page), rounds=1, iterations=1)
    finally:
        browser.close()
    size = page.stat().st_size
    bench.extra_info.update(bytes=size, write_seconds=min(writes), load_seconds=min(loads))
    print(f"\n300 processes x {VMAS} VMAs: page {size / (1 << 20):.2f} MiB, written in "
          f"{min(writes):.2f} s (command), loaded by chromium in {min(loads):.3f} s")
