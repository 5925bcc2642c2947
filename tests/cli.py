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


def run_on_terminal(*args, stream="stdout", cwd=None, timeout=120):
    """Run ``python -m crit_plus ARGS`` (the project on its path, no stdin) with ``stream``
    (``stdout`` or ``stderr``) a terminal, a pseudo-terminal's follower side, and the other
    a pipe; return ``(CompletedProcess (bytes), what reached the terminal)``."""
    import pty

    leader, follower = pty.openpty()
    try:
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, stream: follower}
        done = subprocess.run([sys.executable, "-m", "crit_plus", *map(str, args)], cwd=cwd,
                              env=env, stdin=subprocess.DEVNULL, timeout=timeout, **pipes)
        os.close(follower)
        follower = None
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the follower side is closed
                break
            if not chunk:
                break
            shown += chunk
        return done, shown
    finally:
        os.close(leader)
        if follower is not None:
            os.close(follower)


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
