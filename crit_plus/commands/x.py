"""``x``: crit's explorers under crit's name (``crit x DIR ps|fds|mems|rss``), plus ``sk``."""

from __future__ import annotations

import sys

import click

from ..analysis import crit_x
from ..crittext import fds_lines, file_text, mems_lines, ps_lines, rss_lines, sk_lines
from ..render import jsonable, write_json
from .options import format_option, open_checkpoint_source, source_options

EXPLORERS = ("ps", "fds", "mems", "rss", "sk")


def _file_json(file):
    if file is None:
        return None
    data = jsonable(file)
    data["text"] = file_text(file)
    return data


def _json(what, facts):
    """The JSON document of ``x WHAT``: the facts the text shows, as machine values."""
    if what == "ps":
        return [jsonable(row) for row in facts]
    if what == "fds":
        return [{"pid": item.pid,
                 "fds": [{"fd": fd.fd, "file": _file_json(fd.file)} for fd in item.fds],
                 "cwd": _file_json(item.cwd), "root": _file_json(item.root)}
                for item in facts]
    if what == "sk":
        return [jsonable(row) for row in facts]
    result = []
    for item in facts:
        vmas = None if item.vmas is None else [
            dict(jsonable(vma), file=_file_json(vma.file)) for vma in item.vmas]
        if what == "mems":
            result.append({"pid": item.pid, "exe": _file_json(item.exe), "vmas": vmas})
        else:
            result.append({"pid": item.pid, "vmas": vmas,
                           "pagemap": None if item.lines is None else
                           [jsonable(line) for line in item.lines]})
    return result


_FACTS = {"ps": crit_x.x_ps, "fds": crit_x.x_fds, "mems": crit_x.x_mems, "rss": crit_x.x_rss,
          "sk": crit_x.x_sk}


@click.command("x")
@source_options
@click.argument("what", type=click.Choice(EXPLORERS), metavar="ps|fds|mems|rss|sk")
@format_option(("text", "json"), default="text")
def x_command(path, lxd_dir, project, root, what, fmt):
    """Explore a checkpoint as CRIU's `crit x DIR WHAT` does, with crit's text.

    \b
    ps    the process tree: PID, PGID, SID, COMM
    fds   each process's fds, cwd and root
    mems  each process's executable and mappings
    rss   each process's pagemap entries and the mappings they fall in
    sk    each process's sockets (crit has no `x sk`)

    The text is crit's, byte for byte, where crit is right; where crit is wrong
    (a crash, a name it mangles, a file it cannot name) the right fact is shown
    instead (docs/commands/x.md lists each place).  `--format json` gives the
    same facts as JSON.  For richer views see ps, fds, mems, rss and sk.

    \b
    Examples:
      crit-plus x /var/lib/criu/dump1 ps
      crit-plus x lxd:web/snap0 mems | grep shmem
      crit-plus x dump1 fds --format json | jq '.[0].fds'
    """
    with open_checkpoint_source(path, lxd_dir, project, root, note_errors=True) as opened:
        checkpoint = opened.checkpoint
        facts = _FACTS[what](checkpoint)
        pids = checkpoint.pids
    out = sys.stdout
    if fmt == "json":
        write_json(_json(what, facts), out)
        return
    if what == "ps":
        lines = ps_lines(facts)
    elif what == "sk":
        lines = sk_lines(facts, pids)
    else:
        lines = {"fds": fds_lines, "mems": mems_lines, "rss": rss_lines}[what](facts)
    for line in lines:
        out.write(line + "\n")


def register(group):
    """Add ``x`` to the CLI group."""
    group.add_command(x_command)
