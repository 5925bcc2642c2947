"""``validate`` speed: integrity + requirements against opening every image with pycriu.

Run with ``make bench`` (or ``pytest tests/benchmarks/test_bench_validate.py
--benchmark-enable``); results go into docs/performance.md, section "validate
(issue 7)".  Target (issue 7): integrity + requirements on the largest fixture in
under 0.5 s, page data never read except to check sizes.  The pycriu baseline is
what a crit-based check would have to do at least: ``pycriu.images.load`` of every
image with entries (raw images skipped), in the same run.  No timing asserts.

- the largest fixtures: lxd-deb's s2 snapshot (most images: 95, 9 processes) and
  service-c (most bytes: 28 MB, mostly pages);
- a synthetic checkpoint at a scale the fixtures lack: 500 processes, one of them
  with a 200,000-entry pagemap over a 1.5 GiB sparse pages file (the size is
  checked, the data never read).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")

import crit_plus  # noqa: E402
from crit_plus.analysis.validate import validate  # noqa: E402
from decoders import PAGE_SIZE  # noqa: E402
from decoders.schema import get_schema  # noqa: E402
from tests.synth import PRESENT, CheckpointBuilder, RunSpec, proc, vma  # noqa: E402

from ..oracle import is_metadata_image  # noqa: E402

pytestmark = pytest.mark.benchmark

FIXTURES = {
    "lxd-deb s2": "lxd-deb/var/lib/lxd/storage-pools/default/containers-snapshots/deb/s2/state",
    "service-c": "service-c",
}
STAGES = ("integrity", "requirements")
PROCESSES = 500
RUNS = 200_000


def _validate(directory):
    report = validate(crit_plus.open_checkpoint(directory), stages=STAGES)
    return len(report.findings)


def _pycriu_open_all(directory):
    images = get_schema().images
    count = 0
    for path in sorted(Path(directory).iterdir()):
        if not path.is_file() or not is_metadata_image(path):
            continue
        with open(path, "rb") as handle:
            count += len(images.load(handle)["entries"])
    return count


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory):
    """500 processes; pid 1 has a 200,000-run pagemap over a sparse 1.5 GiB pages file."""
    builder = CheckpointBuilder(tmp_path_factory.mktemp("bench-validate") / "ck")
    builder.inventory()
    builder.pstree([proc(1)] + [proc(pid, ppid=1) for pid in range(2, PROCESSES + 1)])
    base, stride = 0x10000000, 2 * PAGE_SIZE
    runs = [RunSpec(base + i * stride, 2, PRESENT, b"", "new") for i in range(RUNS)]
    pages_id = builder.process(1, vmas=[vma(base, base + RUNS * stride)], runs=runs,
                               write_pages=False)
    with open(builder.path(f"pages-{pages_id}.img"), "wb") as handle:
        handle.truncate(RUNS * 2 * PAGE_SIZE)  # sparse: no page is ever written or read
    for pid in range(2, PROCESSES + 1):
        start = 0x400000
        builder.process(pid, vmas=[vma(start, start + 4 * PAGE_SIZE)],
                        runs=[RunSpec(start, 1, PRESENT, b"\1" * PAGE_SIZE, "new")],
                        files_id=pid)
    builder.finish()
    return builder.directory


@pytest.mark.benchmark(group="validate: integrity + requirements vs pycriu opening every image")
@pytest.mark.parametrize("tool", ["crit-plus validate", "pycriu load all"])
@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_validate_largest_fixtures(benchmark, fixture_root, fixture, tool):
    directory = fixture_root / FIXTURES[fixture]
    run = _validate if tool == "crit-plus validate" else _pycriu_open_all
    benchmark.extra_info["images"] = len(os.listdir(directory))
    benchmark.pedantic(run, args=(directory,), rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="validate: 500 processes, 200k-run pagemap, 1.5 GiB pages")
@pytest.mark.parametrize("tool", ["crit-plus validate", "pycriu load all"])
def test_validate_synthetic_scale(benchmark, big_checkpoint, tool):
    run = _validate if tool == "crit-plus validate" else _pycriu_open_all
    benchmark.pedantic(run, args=(big_checkpoint,), rounds=3, iterations=1)
