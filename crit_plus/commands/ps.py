"""``ps``: the process tree of a checkpoint, with command lines read from memory."""

from __future__ import annotations

import sys

import click

from ..analysis import explore
from ..describe import cmdline_text
from ..render import colored, jsonable, safe_text, use_color, write_json, write_table, write_tree
from .options import format_option, open_checkpoint_source, source_options
from .selection import TREE_FORMATS

COLUMNS = (("pid", "PID"), ("ppid", "PPID"), ("pgid", "PGID"), ("sid", "SID"),
           ("state", "STATE"), ("threads", "THR"), ("comm", "COMM"), ("command", "COMMAND"))
TREE_COLUMNS = (("label", "PROCESS"), ("state", "STATE"), ("threads", "THR"),
                ("command", "COMMAND"))
STATE_COLORS = {"zombie": "red", "stopped": "yellow"}


@click.command("ps")
@source_options
@click.option("--env", is_flag=True,
              help="Also show each process's environment, read from its memory "
                   "(off by default: environments often hold secrets).")
@format_option(TREE_FORMATS)
def ps_command(path, lxd_dir, project, root, env, fmt):
    """Show the process tree: pid, parent, group, session, state, threads and the
    command line (read back from each process's memory; [comm] when it cannot be).

    \b
    Examples:
      crit-plus ps /var/lib/criu/dump1
      crit-plus ps lxd:web/snap0 --format tree
      crit-plus ps dump1 --env --format json | jq '.[0].environ'
    """
    with open_checkpoint_source(path, lxd_dir, project, root, note_errors=True) as opened:
        rows = explore.ps_rows(opened.checkpoint, env=env)
    out = sys.stdout
    if fmt == "json":
        data = [jsonable(row) for row in rows]
        if not env:
            for item in data:
                del item["environ"]
        write_json(data, out)
        return
    color = use_color(out)
    table = [{
        "pid": row.pid, "ppid": row.ppid, "pgid": row.pgid, "sid": row.sid,
        "state": colored(row.state, STATE_COLORS.get(row.state), color), "threads": row.threads,
        "comm": row.comm, "command": cmdline_text(row.argv, row.comm), "depth": row.depth,
        "label": f"{row.pid} {safe_text(row.comm or '?')}",
    } for row in rows]
    if fmt == "tree":
        write_tree(table, TREE_COLUMNS, out, "label")
    else:
        write_table(table, COLUMNS, out)
    if env:
        for row in rows:
            out.write(f"\nenvironment of {row.pid} ({safe_text(row.comm or '?')}):\n")
            if row.environ is None:
                out.write("  (cannot be read)\n")
            for item in row.environ or ():
                out.write(f"  {safe_text(item)}\n")


def register(group):
    """Add ``ps`` to the CLI group."""
    group.add_command(ps_command)
