"""Start-up budget (issue 24): CPU of whole ``crit-plus`` processes on a fixture.

Run with ``make bench``, or alone::

    pytest -q tests/benchmarks/test_bench_startup.py --benchmark-enable -p no:cacheprovider -s

Each command runs as the console script runs it (``from crit_plus.cli import run``), in a
fresh interpreter with Python's bytecode cache (as a user's; the sandbox's
``PYTHONDONTWRITEBYTECODE`` would compile every module every time), one warm-up and then
``ROUNDS`` rounds; the commands take turns round by round, so all meet the same load.
CPU is user + system of the child (``RUSAGE_CHILDREN``), the median of the rounds; wall
time beside it.  The floors are what any Python command with crit-plus's libraries pays:
the interpreter alone, and the interpreter with click and protobuf imported.

The budget, from the issue: any metadata command on a fixture at most 0.1 s of CPU.  The
test asserts it (docs/performance.md, "Start-up", says where the time goes).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

import pytest

pytest.importorskip("pytest_benchmark")

pytestmark = pytest.mark.benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROUNDS = 7
BUDGET = 0.1  # seconds of CPU per metadata command (issue 24)
METADATA_COMMANDS = ("ps", "fds", "mems", "rss", "summarize", "size", "validate")
CONSOLE_SCRIPT = "from crit_plus.cli import run; run()"


def _environment():
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _run(argv, env):
    """(CPU seconds, wall seconds, exit code) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    child = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                           cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, child.returncode, child.stderr


def measure(commands, rounds=ROUNDS):
    """label → (median CPU, median wall) of ``rounds`` runs of each argv, taken in turn."""
    env = _environment()
    samples = {label: [] for label in commands}
    for _ in range(rounds + 1):  # the first round writes the bytecode cache: not counted
        for label, argv in commands.items():
            cpu, wall, code, stderr = _run(argv, env)
            assert code in (0, 1), f"{label}: exit {code}: {stderr}"  # validate: 1 on warnings
            samples[label].append((cpu, wall))
    return {label: (statistics.median(c for c, _w in runs[1:]),
                    statistics.median(w for _c, w in runs[1:]))
            for label, runs in samples.items()}


def libraries_of(argv):
    """Python code importing every module ``crit-plus ARGV`` loads that is not crit-plus's
    own (click, protobuf, CRIU's generated schema modules, tabulate, the standard library),
    in the order the command loads them: the floor of that command whatever crit-plus does."""
    probe = ("import contextlib, io, json, os, sys\n"
             "from crit_plus.cli import main\n"
             "from decoders.schema import get_schema\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             f"    main({list(argv)!r})\n"
             "print(json.dumps([os.path.join(get_schema().package_dir, 'images'),\n"
             "                  list(sys.modules)]))\n")
    images, loaded = json.loads(subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=_environment(),
        cwd=ROOT, check=True).stdout.splitlines()[-1])
    # protoc's modules by their top-level names, as they import each other
    libraries = [name for name in loaded
                 if not name.startswith(("crit_plus", "decoders", "__main__", "pycriu"))]
    return ("import importlib, sys\n"
            f"sys.path.insert(0, {images!r})\n"
            f"for name in {libraries!r}:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ImportError:\n"
            "        pass\n")


def test_start_up_budget(bench, capsys, service_a):
    """Every metadata command on service-a within 0.1 s of CPU; ``--help`` and
    ``--version`` within 20 ms of importing click alone (they load no command, no schema,
    no protobuf).  The third floor is ``ps`` without crit-plus: every other module it
    loads (CRIU's schema modules through pycriu's package, as crit-plus loads them)."""
    python = sys.executable
    commands = {
        "python -c pass (floor)": [python, "-c", "pass"],
        "python: import click (floor)": [python, "-c", "import click"],
        "python: import click + protobuf (floor)":
            [python, "-c", "import click, google.protobuf.descriptor_pool"],
        "python: every library module ps loads (floor)":
            [python, "-c", libraries_of(["ps", str(service_a)])],
        "crit-plus --version": [python, "-c", CONSOLE_SCRIPT, "--version"],
        "crit-plus --help": [python, "-c", CONSOLE_SCRIPT, "--help"],
        **{f"crit-plus {name} service-a": [python, "-c", CONSOLE_SCRIPT, name, str(service_a)]
           for name in METADATA_COMMANDS},
    }
    results = {}
    bench.pedantic(lambda: results.update(measure(commands)), rounds=1, iterations=1)
    with capsys.disabled():
        print(f"\n[bench] start-up, median of {ROUNDS} fresh processes "
              f"[load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs]")
        print("| command | CPU | wall |\n| --- | --- | --- |")
        for label, (cpu, wall) in results.items():
            print(f"| `{label}` | {cpu * 1000:.0f} ms | {wall * 1000:.0f} ms |")
    bench.extra_info.update({label: cpu for label, (cpu, _wall) in results.items()})
    click_floor = results["python: import click (floor)"][0]
    for label in ("crit-plus --version", "crit-plus --help"):
        assert results[label][0] <= click_floor + 0.02, label
    over = {label: round(cpu, 3) for label, (cpu, _wall) in results.items()
            if label.endswith("service-a") and cpu > BUDGET}
    assert not over, f"over the {BUDGET} s budget: {over}"


def test_import_time_of_ps(bench, capsys, service_a):
    """Where ``ps``'s start-up goes: ``python -X importtime``, the modules with the most
    time of their own (not counting what they import), printed for docs/performance.md."""
    env = _environment()
    argv = [sys.executable, "-X", "importtime", "-c", CONSOLE_SCRIPT, "ps", str(service_a)]
    lines = []

    def run():
        lines[:] = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT,
                                  check=True).stderr.splitlines()

    bench.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    own = []
    for line in lines:
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, cumulative, name = (part.strip() for part in line[12:].split("|"))
            own.append((int(self_us), name))
    total = sum(us for us, _name in own)
    with capsys.disabled():
        print(f"\n[bench] crit-plus ps: -X importtime, {len(own)} modules, {total / 1000:.0f} ms "
              "in imports (importtime's own overhead included); most time of their own:")
        for us, name in sorted(own, reverse=True)[:20]:
            print(f"  {us / 1000:6.1f} ms  {name}")
