"""What the explorers share: a PID of the checkpoint, addresses and lengths, their rows."""

from __future__ import annotations

import re

import click

from decoders.lazy import LazyPattern

from .options import open_checkpoint_source

#: Output formats of the explorers.
TREE_FORMATS = ("table", "json", "tree")

_SIZE = LazyPattern(r"^(0x[0-9a-f]+|\d+)\s*([kmg]i?b?|b)?$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def process_table(table, path, lxd_dir, project, root, pid):
    """``table(checkpoint, pid)`` of the checkpoint at ``path`` (an explorer's rows for
    every process, or for ``pid`` once checked to be in it)."""
    with open_checkpoint_source(path, lxd_dir, project, root, note_errors=True) as opened:
        checkpoint = opened.checkpoint
        return table(checkpoint, check_pid(checkpoint, pid))


def check_pid(checkpoint, pid):
    """``pid`` if the checkpoint has it, else a usage error naming the pids it has."""
    if pid is None or pid in checkpoint.pids:
        return pid
    pids = ", ".join(str(p) for p in checkpoint.pids[:12])
    more = " ..." if len(checkpoint.pids) > 12 else ""
    raise click.BadParameter(f"no process {pid} in this checkpoint (it has {pids}{more})",
                             param_hint="PID")


class Address(click.ParamType):
    """A memory address in hex, as /proc/PID/maps prints it: ``7f954fcb7000`` or ``0x...``."""

    name = "ADDR"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        try:
            return int(text[2:] if text.startswith("0x") else text, 16)
        except ValueError:
            self.fail(f"{value!r} is not a hex address (like 7f954fcb7000 or 0x400000)",
                      param, ctx)


class Size(click.ParamType):
    """A byte count: ``256``, ``0x100``, ``4k``, ``1M``, ``2GiB``."""

    name = "LEN"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        match = _SIZE.match(str(value).strip())
        if not match:
            self.fail(f"{value!r} is not a size (like 256, 0x100, 4k, 1M)", param, ctx)
        number, unit = match.groups()
        base = int(number, 16) if number.lower().startswith("0x") else int(number)
        return base * _UNITS[(unit or "")[:1].lower()]


ADDRESS = Address()
SIZE = Size()

#: ``[PID]``: one process of the checkpoint, or every process when left out.
optional_pid = click.argument("pid", type=int, required=False)


def view_of(gather, findings_of, path, lxd_dir, project):
    """``(gather(checkpoint), findings_of(checkpoint))`` for the views of namespaces,
    mounts and networks (ns, mounts, net): the view and the findings of the images it
    read.  Like the explorers, a checkpoint whose images have errors (the graph's, or
    those findings') gets one note on stderr: the view may be incomplete."""
    from .options import note_image_errors

    with open_checkpoint_source(path, lxd_dir, project) as opened:
        checkpoint = opened.checkpoint
        found, findings = gather(checkpoint), findings_of(checkpoint)
        note_image_errors(opened, findings)
        return found, findings


def write_view(command, namespaces, findings, fmt, out, **extra):
    """For ``--format json``, write ``command``'s view document (``schema``, ``namespaces``,
    the ``extra`` fields, ``findings``) and return True; otherwise return False (the
    caller writes its tables)."""
    if fmt == "json":
        from ..render import jsonable, stamped, write_json

        write_json(stamped(command, {"namespaces": namespaces, **extra,
                                     "findings": [jsonable(f) for f in findings]}), out)
        return True
    return False


def note_findings(findings):
    """Each finding met while reading a view's images, one line on stderr."""
    from ..render import safe_text

    for finding in findings:
        click.echo(f"crit-plus: {finding.severity}: {safe_text(finding.where)}: "
                   f"{safe_text(finding.message)}", err=True)
