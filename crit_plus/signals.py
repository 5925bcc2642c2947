"""SIGTERM, SIGHUP and SIGQUIT handled like Ctrl-C: the command unwinds, cleaning up.

A process killed by one of these signals' default action leaves behind what
``with`` blocks would have removed: an archive's temporary directory (with the
extracted ``pages-*.img``, process memory) and the hidden ``.NAME.*.partial``
file of an output being written (crit_plus/output.py).  SIGTERM is how a
process is asked to stop, SIGHUP comes when its terminal is closed, SIGQUIT
from Ctrl-\\.  While a command runs, :func:`signals_unwind` makes each of
them raise :class:`Terminated` where the program is, so every ``finally`` and
``with`` runs; the CLI then exits 128 + the signal's number (what a shell
reports for a process the signal ended): 143 for SIGTERM, 129 for SIGHUP,
131 for SIGQUIT (which then writes no core file).  Further such signals
during the clean-up are ignored.  SIGKILL cannot be handled: what it
interrupts stays (in the temporary root, and as ``.NAME.*.partial``).
"""

from __future__ import annotations

import contextlib
import signal

#: The signals that unwind a running command, and the word the CLI says for each.
UNWINDING = {signal.SIGTERM: "terminated", signal.SIGHUP: "hangup", signal.SIGQUIT: "quit"}


class Terminated(BaseException):
    """The process received SIGTERM, SIGHUP or SIGQUIT (a BaseException: no ``except
    Exception`` stops it); :attr:`signum` says which."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(UNWINDING.get(signal.Signals(signum), "terminated"))
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process the signal ended."""
        return 128 + self.signum


def _raise_terminated(signum, frame):
    for number in UNWINDING:  # the clean-up is not interrupted again
        signal.signal(number, signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def signals_unwind():
    """Within the block, SIGTERM, SIGHUP and SIGQUIT raise :class:`Terminated` (main
    thread only; elsewhere, where Python cannot set handlers, nothing changes).  A
    signal ignored when the block starts (``nohup`` ignores SIGHUP) stays ignored."""
    previous = {}
    try:
        for number in UNWINDING:
            old = signal.getsignal(number)
            if old == signal.SIG_IGN:
                continue
            previous[number] = signal.signal(number, _raise_terminated)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
