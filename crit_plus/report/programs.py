"""External programs a report runs (``uname``, ``dmesg``, ``criu``, ``lxc``,
``incus``), all through one :class:`Runner` so tests can substitute them or make
them absent.

A program that is missing, times out or cannot be started is a :class:`Ran`
with ``error`` set, never an exception; its output is bounded
(:data:`MAX_OUTPUT` bytes of stdout and of stderr).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from ..analysis.host import CRIU_SBIN

#: Bytes kept of a program's stdout and of its stderr (the start; ``truncated`` says so).
MAX_OUTPUT = 8 << 20
#: Seconds a program may run.
TIMEOUT = 60
#: Environment variable naming the ``criu`` binary (also the live tests' variable).
CRIU_ENV = "CRIT_PLUS_CRIU"
#: Where ``criu`` is looked for when it is not on ``$PATH`` (sbin is often not on a
#: user's PATH); the last is the build ``scripts/install-criu`` caches.
CRIU_FALLBACKS = CRIU_SBIN + (os.path.join(os.environ.get("CRIT_PLUS_CACHE")
                                           or "/var/cache/crit-plus", "criu-4.2.1", "bin", "criu"),)


@dataclass(frozen=True)
class Ran:
    """One program run: its command line, exit code and output.

    ``error`` says why it did not run to the end (not found, timed out, could
    not start); ``exit_code`` is None then.
    """

    argv: tuple
    exit_code: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    error: str | None = None
    truncated: bool = False

    @property
    def command_line(self):
        """The command line as a shell would show it."""
        return shlex.join(self.argv)

    @property
    def ok(self):
        """True if the program ran and exited 0."""
        return self.error is None and self.exit_code == 0

    def transcript(self):
        """The run as text: the command, its exit code, stdout, then stderr."""
        head = f"$ {self.command_line}\n"
        if self.error is not None:
            head += f"# not run: {self.error}\n"
        else:
            head += f"# exit code {self.exit_code}" + \
                (f" (output cut at {MAX_OUTPUT} bytes)" if self.truncated else "") + "\n"
        text = head.encode() + self.stdout
        if self.stderr:
            if not text.endswith(b"\n"):
                text += b"\n"
            text += b"# stderr:\n" + self.stderr
        return text


class Runner:
    """Finds and runs programs on this machine.

    ``path`` replaces ``$PATH`` for lookups; ``timeout`` and ``limit`` bound
    each run.
    """

    def __init__(self, path=None, timeout=TIMEOUT, limit=MAX_OUTPUT):
        self.path = path
        self.timeout = timeout
        self.limit = limit

    def which(self, program, fallbacks=()):
        """The path of ``program`` (on the search path, else the first executable
        of ``fallbacks``), or None."""
        found = shutil.which(program, path=self.path)
        if found:
            return found
        return next((p for p in fallbacks if os.path.isfile(p) and os.access(p, os.X_OK)), None)

    def missing(self, program, fallbacks=()):
        """Why ``program`` is not available (for the report's index)."""
        also = f" nor at {', '.join(fallbacks)}" if fallbacks else ""
        return f"{program} not found on $PATH{also}"

    def run(self, argv):
        """Run ``argv`` (its first item a path or a name on the search path) → :class:`Ran`."""
        argv = tuple(str(arg) for arg in argv)
        try:
            done = subprocess.run(argv, capture_output=True, timeout=self.timeout, check=False,
                                  stdin=subprocess.DEVNULL, env=_c_locale())
        except FileNotFoundError:
            return Ran(argv, error=f"{argv[0]} not found")
        except subprocess.TimeoutExpired:
            return Ran(argv, error=f"timed out after {self.timeout} s")
        except OSError as error:
            return Ran(argv, error=f"could not start: {error.strerror or error}")
        truncated = len(done.stdout) > self.limit or len(done.stderr) > self.limit
        return Ran(argv, done.returncode, done.stdout[:self.limit], done.stderr[:self.limit],
                   truncated=truncated)


class NoPrograms(Runner):
    """A runner that runs nothing: every program is missing, for ``reason``.

    Used when the host root is a copied tree (``$CRIT_PLUS_ROOT``): programs
    would describe this machine, not that tree.
    """

    def __init__(self, reason):
        super().__init__()
        self.reason = reason

    def which(self, program, fallbacks=()):
        """Nothing is found: None."""

    def missing(self, program, fallbacks=()):
        """``program`` was not run, for :attr:`reason`."""
        return f"{program} not run: {self.reason}"

    def run(self, argv):
        """Nothing runs."""
        return Ran(tuple(argv), error=self.reason)


def _c_locale():
    """The environment with messages in English (maintainers read them), otherwise unchanged."""
    environment = dict(os.environ)
    environment["LC_ALL"] = "C.UTF-8"
    return environment


def find_criu(runner, explicit=None):
    """``(path, None)`` of the ``criu`` to ask, or ``(None, why not)``.

    ``explicit`` (``--criu``) wins, then ``$CRIT_PLUS_CRIU``, then ``criu`` on
    the search path, then :data:`CRIU_FALLBACKS`.
    """
    chosen = explicit or os.environ.get(CRIU_ENV)
    if chosen:
        found = runner.which(chosen)
        where = "--criu" if explicit else f"${CRIU_ENV}"
        return (found, None) if found else (None, f"{chosen} ({where}) is not an executable")
    found = runner.which("criu", CRIU_FALLBACKS)
    if found:
        return found, None
    return None, runner.missing("criu", CRIU_FALLBACKS)


__all__ = ["CRIU_ENV", "CRIU_FALLBACKS", "MAX_OUTPUT", "NoPrograms", "Ran", "Runner",
           "find_criu"]
