"""The end of a crit-plus process: ``run()`` keeps the cyclic collector off to the end and
leaves with ``os._exit`` (crit_plus/cli.py); what the command wrote is still complete."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _command(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "crit_plus", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, timeout=120, check=False, **kwargs)


def test_the_whole_output_is_written_before_the_process_ends(service_a, capsys):
    from crit_plus.cli import main

    assert main(["summarize", "--format", "json", str(service_a)]) == 0
    in_process = capsys.readouterr().out
    done = _command("summarize", "--format", "json", service_a)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == in_process
    assert done.stderr == b""


def test_a_reader_that_stops_early_ends_it_quietly(service_a):
    child = subprocess.Popen([sys.executable, "-m", "crit_plus", "summarize", str(service_a)],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = child.stdout.readline()
    child.stdout.close()  # | head -1
    assert child.wait(120) == 0
    assert first and child.stderr.read() == b""
    child.stderr.close()


def test_the_collector_stays_off_after_the_command_in_the_process():
    code = ("import gc, sys; import crit_plus.cli as cli; "
            "cli.leave = lambda code: print('enabled', gc.isenabled()) or sys.exit(code); "
            "sys.argv = ['crit-plus', '--version']; cli.run()")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          env={**os.environ, "PYTHONPATH": ROOT}, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert b"enabled False" in done.stdout
