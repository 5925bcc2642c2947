"""What the failure catalog's fixes name, read from where a checkpoint lives.

A fix says ``{manager} start --stateless {instance}`` or ``--inherit-fd fd[N]:{key}``;
:func:`catalog_fields` gives those values where they are known (the manager and instance
a source or ``lxd:NAME`` names, the console key liblxc wrote to ``tty.info``), and
:func:`crit_plus.analysis.validate_catalog.fill` puts them in.  Only reads.
"""

from __future__ import annotations

from pathlib import Path

from crit_plus.files import open_in_tree

#: The command-line tool of each manager: what a fix tells the user to run.
MANAGER_CLI = {"lxd": "lxc", "incus": "incus"}


def console_key(directory) -> str | None:
    """The console's tty id liblxc wrote to ``tty.info`` in an images ``directory``
    (``tty[8800:4b]``), or None."""
    path = Path(directory) / "tty.info"
    try:
        with open(open_in_tree(path)[0], encoding="ascii", errors="replace") as stream:
            text = stream.readline(64).strip()  # a FIFO or a device is never opened
    except OSError:
        return None
    return text or None


def catalog_fields(manager, instance, directories) -> dict:
    """What the failure catalog's fixes name, as far as it is known: ``manager`` (its
    command, ``lxc`` for LXD), ``instance``, ``key`` (the console's, from the first of
    ``directories`` with a ``tty.info``); for
    :func:`crit_plus.analysis.validate_catalog.fill`."""
    fields = {}
    if manager in MANAGER_CLI:
        fields["manager"] = MANAGER_CLI[manager]
    if instance:
        fields["instance"] = instance
    key = next((found for directory in directories
                if (found := console_key(directory)) is not None), None)
    if key is not None:
        fields["key"] = key
    return fields


__all__ = ["MANAGER_CLI", "catalog_fields", "console_key"]
