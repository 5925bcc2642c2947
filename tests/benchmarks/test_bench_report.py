"""``crit-plus report`` speed: finding the errors in big logs, copying logs, one whole bundle.

Run with ``make bench``; numbers go into docs/performance.md ("report").  No tool
does what a report does, so the floor is ``grep -n -B3 -A2`` over the same log
(the same error lines, the same context).  The log is CRIU -v4-like: 246 MiB,
3 million lines, 30 error lines.  No timing asserts: the numbers are printed.
"""

from __future__ import annotations

import os
import subprocess
import tracemalloc

import pytest

pytest.importorskip("pytest_benchmark")

from crit_plus import cli  # noqa: E402
from crit_plus.report import NoPrograms, ReportRequest, build_report  # noqa: E402
from crit_plus.report.collect import Collection  # noqa: E402
from crit_plus.report.selfrun import Commands  # noqa: E402
from crit_plus.sources.logs import error_contexts  # noqa: E402

from .test_bench_graph import report as print_mean  # noqa: E402

pytestmark = pytest.mark.benchmark

LINE = "(00.023289) irmap: Searching irmap cache in work dir for pid 12345 and more text here\n"
# (not rlimit's RLIMIT_NOFILE line: that one is known noise, no error line)
ERROR = ("(00.111292) Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using "
         "--tcp-established option.\n")
BLOCKS, LINES_PER_BLOCK = 30, 100_000


@pytest.fixture(scope="module")
def big_log(tmp_path_factory):
    """A 246 MiB CRIU-like log with one error line every 100,000 lines."""
    path = tmp_path_factory.mktemp("bench-report") / "dump.log"
    with open(path, "w", encoding="ascii") as stream:
        for _ in range(BLOCKS):
            stream.write(LINE * LINES_PER_BLOCK)
            stream.write(ERROR)
    return path


def _contexts(path):
    with open(path, "rb") as stream:
        return error_contexts(stream)


def test_error_contexts_big_log(bench, capsys, big_log):
    contexts, count = bench.pedantic(_contexts, args=(big_log,), rounds=3, iterations=1)
    assert count == BLOCKS and len(contexts) == BLOCKS
    print_mean(bench, capsys, "error_contexts, 246 MiB log", os.path.getsize(big_log))


def test_grep_floor_big_log(bench, capsys, big_log):
    def grep():
        return subprocess.run(["grep", "-n", "-B3", "-A2", "Error (", str(big_log)],
                              capture_output=True, check=True).stdout

    out = bench.pedantic(grep, rounds=3, iterations=1)
    assert out.count(b"Error (") == BLOCKS
    print_mean(bench, capsys, "grep -n -B3 -A2 (floor), 246 MiB log", os.path.getsize(big_log))


def test_error_contexts_peak_memory(bench, capsys, big_log):
    def measured():
        tracemalloc.start()
        try:
            _contexts(big_log)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak = bench.pedantic(measured, rounds=1, iterations=1)
    with capsys.disabled():
        print(f"\n[bench] error_contexts peak Python memory on 246 MiB: {peak / 2**20:.1f} MiB")


def test_copy_a_big_log_into_the_spool(bench, capsys, big_log):
    def copy():
        collection = Collection()
        try:
            collection.add_file("logs/dump.log", big_log, scan="dump")
            return collection.members[0]
        finally:
            collection.close()

    member = bench.pedantic(copy, rounds=3, iterations=1)
    assert member.cut  # 64 MiB kept of 246
    print_mean(bench, capsys, "copy + redact the last 64 MiB of a 246 MiB log", member.size)


def test_whole_report_lxd_web(bench, capsys, fixture_root, tmp_path, monkeypatch):
    root = fixture_root / "lxd-web"
    monkeypatch.setenv("CRIT_PLUS_ROOT", str(root))
    output = tmp_path / "web.tar.gz"

    def build():
        return build_report(ReportRequest(output=str(output), spec="lxd:web"),
                            runner=NoPrograms("benchmark"), commands=Commands(cli.cli, cli.main))

    bench.pedantic(build, rounds=5, iterations=1)
    print_mean(bench, capsys, "report lxd:web (no programs), whole bundle")
