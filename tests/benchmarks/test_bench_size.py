"""Benchmarks of ``size`` (issue 6); numbers go to docs/performance.md.

Run with ``make bench`` or
``pytest -q tests/benchmarks/test_bench_size.py --benchmark-enable -p no:cacheprovider -s``.
Times are printed, never asserted; the memory bound of ``--content`` is asserted.

- **Without --content**, the same metadata (4 processes, 1024 VMAs and pagemap
  entries) once with 8 GiB of pages (sparse pages files: no disk used) and once
  with 8 MiB, in the same run: the time must not depend on the page data
  (target: within 1.5x).  Compared with what crit offers for the same question
  (pycriu-decoding every pagemap to add up pages) and ``du -sb`` as a floor.
- **With --content**, 1 GiB of page data in the page cache (pages taken from the
  real service-a dump, made distinct, with a forked child sharing half its pages,
  zero pages and repeats): ``scan_content`` timed in-process by pytest-benchmark
  (target >= 500 MiB/s on one core), then the ``size --content --format json``
  path in a fresh interpreter with its phases timed (wall and CPU) and its peak
  RSS (VmHWM; target < 150 MiB), against ``zstd -3 -T1`` and ``cat`` on the same
  files; then the peak RSS for 64 MiB, 1 GiB, 3 GiB and 6 GiB of pages (the last
  two distinct pages, more than the 2 GiB the digest table holds exactly), to
  show it stops growing at the table's cap.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("pytest_benchmark")

import crit_plus  # noqa: E402
from crit_plus.analysis import content as content_analysis  # noqa: E402
from crit_plus.analysis import size as size_analysis  # noqa: E402
from decoders import PAGE_SIZE  # noqa: E402
from decoders.schema import get_schema  # noqa: E402
from tests.synth import PRESENT, CheckpointBuilder, RunSpec, proc, vma  # noqa: E402

pytestmark = pytest.mark.benchmark

MIB = 1 << 20
GIB = 1 << 30
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = 0x7F0000000000
PROCESSES = 4
RUNS_PER_PROCESS = 256


def say(capsys, text):
    """Print a result line past pytest's capture, with the machine's load (other work on
    a shared machine slows everything, CPU time included)."""
    load = os.getloadavg()[0]
    with capsys.disabled():
        print(f"\n[bench] {text} [load {load:.1f} on {os.cpu_count()} CPUs]")


# -- checkpoints ----------------------------------------------------------------------------------


def layout(builder, pids, runs_per_process, run_pages, write):
    """Processes with one VMA per run (a one-page gap after each); ``write(pid, pages_path,
    size)`` writes each pages file."""
    builder.inventory()
    builder.pstree([proc(pid, ppid=0 if pid == pids[0] else pids[0]) for pid in pids])
    stride = (run_pages + 1) * PAGE_SIZE
    for pid in pids:
        runs = [RunSpec(BASE + i * stride, run_pages, PRESENT) for i in range(runs_per_process)]
        vmas = [vma(r.vaddr, r.vaddr + run_pages * PAGE_SIZE) for r in runs]
        pages_id = builder.process(pid, vmas=vmas, runs=runs, write_pages=False)
        write(pid, builder.path(f"pages-{pages_id}.img"), runs_per_process * run_pages * PAGE_SIZE)
    builder.finish()
    return builder.directory


def sparse(_pid, path, size):
    """A pages file of ``size`` bytes that takes no disk (all a hole)."""
    with open(path, "wb") as handle:
        handle.truncate(size)


@pytest.fixture(scope="module")
def metadata_pair(tmp_path_factory):
    """Two checkpoints with the same metadata: 8 GiB and 8 MiB of (sparse) pages."""
    top = tmp_path_factory.mktemp("size-meta")
    total_runs = PROCESSES * RUNS_PER_PROCESS
    pair = {}
    for label, total in (("8 GiB", 8 * GIB), ("8 MiB", 8 * MIB)):
        run_pages = total // PAGE_SIZE // total_runs
        pair[label] = layout(CheckpointBuilder(top / label.replace(" ", "")),
                             list(range(100, 100 + PROCESSES)), RUNS_PER_PROCESS, run_pages,
                             sparse)
    yield pair
    shutil.rmtree(top)


def seed_pages():
    """Real page contents: the pages of the service-a fixture's main process."""
    import tarfile

    with tarfile.open(os.path.join(ROOT, "fixtures", "service-a.tar.gz")) as archive:
        data = archive.extractfile("service-a/pages-3.img").read()
    pages = [data[i:i + PAGE_SIZE] for i in range(0, len(data), PAGE_SIZE)]
    return [p for p in pages if p.count(0) != PAGE_SIZE]


def realistic_writer(seed):
    """Pages files like a forked service: real page contents made distinct by a counter;
    every 8th page zero, every 16th a repeat of the page before, and the child (second
    pid) holds its parent's page at every even index."""
    zero = bytes(PAGE_SIZE)
    first = []

    def write(pid, path, size):
        if not first:
            first.append(pid)
        with open(path, "wb") as handle:
            batch = []
            for n in range(size // PAGE_SIZE):
                if n % 8 == 0:
                    batch.append(zero)
                elif n % 16 == 7:
                    batch.append(batch[-1])
                else:
                    owner = first[0] if pid == first[0] or n % 2 == 0 else pid
                    body = seed[n % len(seed)]
                    batch.append((n * 1000003 + owner).to_bytes(8, "little") + body[8:])
                if len(batch) == 2048:
                    handle.write(b"".join(batch))
                    batch = []
            handle.write(b"".join(batch))

    return write


def distinct_writer(_pid, path, size):
    """Distinct, cheap-to-make pages (for the memory bound: every page a new digest)."""
    block = os.urandom(8 * MIB)
    with open(path, "wb") as handle:
        for at in range(0, size, len(block)):
            chunk = bytearray(block[:min(len(block), size - at)])
            for off in range(0, len(chunk), PAGE_SIZE):
                chunk[off:off + 8] = (at + off).to_bytes(8, "little")
            handle.write(chunk)


@pytest.fixture(scope="module")
def content_dirs(tmp_path_factory):
    """{label: directory} of checkpoints whose page data is real bytes on disk."""
    top = tmp_path_factory.mktemp("size-content")
    seed = seed_pages()
    made = {}
    made["1 GiB realistic"] = layout(CheckpointBuilder(top / "real1g"), [200, 201], 256,
                                     512 * MIB // 256 // PAGE_SIZE, realistic_writer(seed))
    made["64 MiB distinct"] = layout(CheckpointBuilder(top / "d64m"), [300], 64,
                                     MIB // PAGE_SIZE, distinct_writer)
    made["3 GiB distinct"] = layout(CheckpointBuilder(top / "d3g"), [400, 401, 402], 256,
                                    4 * MIB // PAGE_SIZE, distinct_writer)
    made["6 GiB distinct"] = layout(CheckpointBuilder(top / "d6g"), [500, 501, 502], 256,
                                    8 * MIB // PAGE_SIZE, distinct_writer)
    yield made
    shutil.rmtree(top)


# -- without --content: time independent of the page data ---------------------------------------


def _measure(directory):
    return size_analysis.measure(crit_plus.open_checkpoint(directory), top=10)


def _pycriu_pages(directory):
    """What crit offers: decode every pagemap with pycriu and add the page counts up."""
    images = get_schema().images
    pages = 0
    for name in os.listdir(directory):
        if name.startswith("pagemap-"):
            with open(os.path.join(directory, name), "rb") as handle:
                for entry in images.load(handle)["entries"][1:]:
                    pages += entry.get("nr_pages") or entry.get("compat_nr_pages") or 0
    return pages


def _interleaved(func, pair, rounds):
    """The best time of ``func(directory)`` for each directory of ``pair``, the two timed
    in turn (the machine is shared: alternating keeps a busy moment from favouring one)."""
    best = {label: float("inf") for label in pair}
    for _ in range(rounds):
        for label, directory in pair.items():
            start = time.perf_counter()
            func(directory)
            best[label] = min(best[label], time.perf_counter() - start)
    return best


def _cli(directory):
    subprocess.run([sys.executable, "-m", "crit_plus", "size", str(directory), "--format",
                    "json", "--top", "10"], check=True, capture_output=True, cwd=ROOT)


def _du(directory):
    subprocess.run(["du", "-sb", str(directory)], check=True, capture_output=True)


def test_without_content_time_does_not_depend_on_page_data(bench, capsys, metadata_pair):
    big, small = metadata_pair["8 GiB"], metadata_pair["8 MiB"]
    assert _measure(big).pages.present_bytes == 8 * GIB
    assert _measure(small).pages.present_bytes == 8 * MIB
    bench.pedantic(_measure, args=(big,), rounds=7, iterations=1, warmup_rounds=1)
    columns = {"measure": _interleaved(_measure, metadata_pair, 21),
               "cli": _interleaved(_cli, metadata_pair, 9),
               "pycriu": _interleaved(_pycriu_pages, metadata_pair, 5),
               "du": _interleaved(_du, metadata_pair, 9)}
    rows = {label: {name: times[label] for name, times in columns.items()}
            for label in metadata_pair}
    ratio = rows["8 GiB"]["measure"] / rows["8 MiB"]["measure"]
    cli_ratio = rows["8 GiB"]["cli"] / rows["8 MiB"]["cli"]
    bench.extra_info.update(ratio=round(ratio, 3), cli_ratio=round(cli_ratio, 3))
    for label, row in rows.items():
        say(capsys, f"{label} of pages, {PROCESSES * RUNS_PER_PROCESS} VMAs/pagemap entries: "
                    f"measure() {row['measure'] * 1000:.1f} ms, `crit-plus size --format json "
                    f"--top 10` {row['cli'] * 1000:.0f} ms, pycriu pagemap sum "
                    f"{row['pycriu'] * 1000:.1f} ms, du -sb {row['du'] * 1000:.1f} ms")
    say(capsys, f"8 GiB / 8 MiB: measure() {ratio:.2f}x, whole command {cli_ratio:.2f}x "
                "(target: within 1.5x)")


# -- with --content: throughput and peak memory in a fresh interpreter ---------------------------

_SCAN = textwrap.dedent("""
    # what `crit-plus size PATH --content --format json` does, with its phases timed
    import io, json, resource, sys, time
    from crit_plus.analysis import content, size
    from crit_plus.commands.size import report_json
    from crit_plus.opening import open_source
    from crit_plus.render import write_json
    from tests.benchmarks.peak import peak_kib  # VmHWM, not ru_maxrss (peak.py says why)

    def cpu():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    start, cpu_start = time.perf_counter(), cpu()
    with open_source(sys.argv[1]) as opened:
        report = size.measure(opened.checkpoint)  # loads the schema, decodes the metadata
        scan_start, scan_cpu = time.perf_counter(), cpu()
        scan = content.scan_content(opened.checkpoint)
        scan_seconds, scan_cpu = time.perf_counter() - scan_start, cpu() - scan_cpu
    write_json(report_json(report, scan), io.StringIO())
    elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed, "cpu": cpu() - cpu_start, "scan_seconds": scan_seconds,
                      "scan_cpu": scan_cpu, "maxrss_kib": peak_kib(),
                      "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "bytes": scan.bytes_read, "exact": scan.exact,
                      "sample_rate": scan.sample_rate,
                      "table_peak": scan.table_peak, "sampled": scan.sampled_bytes,
                      "zero": scan.zero, "within": scan.dup_within, "across": scan.dup_across,
                      "unique": scan.unique}))
""")


def fresh_scan(directory):
    """``crit-plus size --content`` in a new interpreter: its time, CPU (of the command, not
    the interpreter's start) and peak RSS."""
    result = subprocess.run([sys.executable, "-c", _SCAN, str(directory)], check=True,
                            capture_output=True, text=True, cwd=ROOT)
    return json.loads(result.stdout)


def pages_paths(directory):
    """The pages files of a checkpoint."""
    return sorted(os.path.join(directory, n) for n in os.listdir(directory)
                  if n.startswith("pages-"))


def warm(directory):
    """Read the pages files once so they are in the page cache."""
    for path in pages_paths(directory):
        with open(path, "rb") as handle:
            while handle.read(16 * MIB):
                pass


def _tool_seconds(command, rounds=3):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(command, shell=True, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def test_content_throughput_and_memory(bench, capsys, content_dirs):
    directory = content_dirs["1 GiB realistic"]
    warm(directory)
    checkpoint = crit_plus.open_checkpoint(directory)
    scan = bench.pedantic(content_analysis.scan_content, args=(checkpoint,), rounds=5,
                          iterations=1, warmup_rounds=1)
    stats = bench.stats.stats
    nbytes = scan.bytes_read
    bench.extra_info.update(MiB_per_s_best=round(nbytes / stats.min / MIB),
                            MiB_per_s_median=round(nbytes / stats.median / MIB))
    say(capsys, f"scan_content on {nbytes / GIB:.2f} GiB (realistic, in the page cache, one "
                f"thread): best {stats.min:.2f} s = {nbytes / stats.min / MIB:.0f} MiB/s, "
                f"median {nbytes / stats.median / MIB:.0f} MiB/s (target >= 500 MiB/s); zero "
                f"{scan.zero}, within {scan.dup_within}, across {scan.dup_across}, unique "
                f"{scan.unique}; zstd sample {scan.sampled_bytes / MIB:.0f} MiB")
    runs = sorted((fresh_scan(directory) for _ in range(3)), key=lambda r: r["seconds"])
    best = runs[0]
    say(capsys, f"fresh interpreter, `size --content --format json` path: {best['seconds']:.2f} s "
                f"({best['cpu']:.2f} s CPU), of which the scan {best['scan_seconds']:.2f} s "
                f"({best['scan_cpu']:.2f} s CPU = {nbytes / best['scan_cpu'] / MIB:.0f} MiB per "
                f"CPU second); peak RSS {best['maxrss_kib'] / 1024:.1f} MiB (target < 150 MiB; "
                f"ru_maxrss says {best['ru_maxrss_kib'] / 1024:.1f} MiB: pytest's RSS at fork)")
    files = " ".join(pages_paths(directory))
    if shutil.which("zstd"):
        zstd = _tool_seconds(f"zstd -3 -T1 -q -c {files} | wc -c")
        say(capsys, f"same files: zstd -3 -T1 {zstd:.2f} s ({nbytes / zstd / MIB:.0f} MiB/s)")
    cat = _tool_seconds(f"cat {files} > /dev/null")
    say(capsys, f"same files: cat {cat:.2f} s ({nbytes / cat / MIB:.0f} MiB/s)")
    assert best["maxrss_kib"] < 150 * 1024


def test_content_memory_does_not_grow_with_size(bench, capsys, content_dirs):
    bench.pedantic(lambda: None, rounds=1, iterations=1)
    for label in ("64 MiB distinct", "1 GiB realistic", "3 GiB distinct", "6 GiB distinct"):
        directory = content_dirs[label]
        warm(directory)
        numbers = fresh_scan(directory)
        read = numbers["bytes"]
        say(capsys, f"{label}: {read / MIB:.0f} MiB scanned in {numbers['scan_seconds']:.2f} s "
                    f"({read / numbers['scan_seconds'] / MIB:.0f} MiB/s, "
                    f"{read / numbers['scan_cpu'] / MIB:.0f} MiB per CPU s), peak RSS "
                    f"{numbers['maxrss_kib'] / 1024:.1f} MiB, digest table peak "
                    f"{numbers['table_peak']}, exact {numbers['exact']} (content sample "
                    f"1/{round(1 / numbers['sample_rate'])})")
        bench.extra_info[f"{label} maxrss_mib"] = round(numbers["maxrss_kib"] / 1024, 1)
        assert numbers["maxrss_kib"] < 150 * 1024
