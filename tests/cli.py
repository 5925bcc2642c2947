"""Run the real ``crit-plus`` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args, env=None, input=None, check=False):
    """Run ``python -m crit_plus ARGS``; return the CompletedProcess (text)."""
    environment = dict(os.environ)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "crit_plus", *map(str, args)],
        capture_output=True, text=True, env=environment, input=input, check=check, timeout=120,
    )
