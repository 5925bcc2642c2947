"""SIGTERM handled like Ctrl-C: the command unwinds, cleaning up as it goes.

A process killed by SIGTERM's default action leaves behind what ``with`` blocks
would have removed: an archive's temporary directory (with the extracted
``pages-*.img``, process memory) and the hidden ``.NAME.*.partial`` file of an
output being written (crit_plus/output.py).  While a command runs,
:func:`sigterm_unwinds` makes SIGTERM raise :class:`Terminated` where the
program is, so every ``finally`` and ``with`` runs; the CLI then exits 143
(128 + 15, what a shell reports for a process SIGTERM ended).  A second
SIGTERM during the clean-up is ignored.  SIGKILL cannot be handled: what it
interrupts stays (in the temporary root, and as ``.NAME.*.partial``).
"""

from __future__ import annotations

import contextlib
import signal


class Terminated(BaseException):
    """The process received SIGTERM (a BaseException: no ``except Exception`` stops it)."""


def _raise_terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the clean-up is not interrupted again
    raise Terminated("terminated")


@contextlib.contextmanager
def sigterm_unwinds():
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; elsewhere,
    where Python cannot set handlers, nothing changes)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
