"""Run the real ``crit-plus`` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def run_cli(*args, env=None, input=None, check=False):
    """Run ``python -m crit_plus ARGS``; return the CompletedProcess (text)."""
    environment = dict(os.environ)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "crit_plus", *map(str, args)],
        capture_output=True, text=True, env=environment, input=input, check=check, timeout=120,
    )


def start_cli(*args, env=None, **options):
    """Start ``python -m crit_plus ARGS`` (the project on its path, no stdin, stderr a
    text pipe); return the Popen."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent)] + sys.path))
    environment.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "crit_plus", *map(str, args)],
                            env=environment, stdin=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **options)


def terminate_when(process, ready, timeout=60, signum=signal.SIGTERM):
    """Send ``signum`` (SIGTERM) to ``process`` once ``ready()`` is true (or it ended), wait
    for it; return its stderr.  It is killed if it still runs when this ends."""
    try:
        deadline = time.monotonic() + timeout
        while not ready() and process.poll() is None:
            assert time.monotonic() < deadline, "the command never got under way"
            time.sleep(0.005)
        process.send_signal(signum)
        _out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return err
