"""``fds``: every open file of every process (or of one), as users recognise it."""

from __future__ import annotations

import sys

import click

from ..analysis import explore
from ..describe import fd_description, open_mode
from ..render import jsonable, safe_text, write_json, write_table, write_tree
from .options import format_option, source_options
from .selection import TREE_FORMATS, optional_pid, process_table

COLUMNS = (("pid", "PID"), ("fd", "FD"), ("kind", "KIND"), ("mode", "MODE"),
           ("what", "WHAT"))
TREE_COLUMNS = (("label", "PROCESS / FD"), ("kind", "KIND"), ("mode", "MODE"), ("what", "WHAT"))


def describe_fd(row):
    """The one-line description of an :class:`~crit_plus.analysis.explore.FdRow`."""
    return fd_description(row.kind, row.name, row.details, row.peers, row.targets, row.queued)


def fd_json(row):
    """An fd row as JSON: the row's fields plus ``mode`` and ``description``."""
    data = jsonable(row)
    data["mode"] = open_mode(row.flags)
    data["description"] = describe_fd(row)
    return data


def _process_json(item):
    return {"depth": item.depth, "pid": item.pid, "comm": item.comm, "state": item.state,
            "fds": [fd_json(row) for row in item.fds],
            "cwd": fd_json(item.cwd) if item.cwd is not None else None,
            "root": fd_json(item.root) if item.root is not None else None}


def _fd_cells(row):
    return {"fd": row.fd, "kind": row.kind, "mode": open_mode(row.flags),
            "what": describe_fd(row)}


def _rows(item):
    """The process's fds, then cwd and root; a zombie says it has no files."""
    rows = [_fd_cells(row) for row in item.fds]
    rows += [_fd_cells(row) for row in (item.cwd, item.root) if row is not None]
    if not rows:
        why = "zombie: no open files" if item.state == "zombie" else "no open files"
        rows.append({"fd": "-", "kind": None, "mode": None, "what": f"({why})"})
    return rows


@click.command("fds")
@source_options
@optional_pid
@format_option(TREE_FORMATS)
def fds_command(path, lxd_dir, project, root, pid, fmt):
    """Show open files: every fd with its kind and what users recognise it by
    (a path, "(deleted)", a pipe or FIFO id and its other ends, socket addresses
    and peer fds, an eventfd's count, what an epoll fd watches, a memfd's name,
    a tty), plus each process's cwd and root.  Only metadata images are read.

    \b
    Examples:
      crit-plus fds /var/lib/criu/dump1
      crit-plus fds lxd:web/snap0 8          the fds of pid 8
      crit-plus fds dump1 --format tree
      crit-plus fds dump1 -f json | jq '.[].fds[] | select(.kind == "inet")'
    """
    table = process_table(explore.fd_table, path, lxd_dir, project, root, pid)
    out = sys.stdout
    if fmt == "json":
        write_json([_process_json(item) for item in table], out)
    elif fmt == "tree":
        rows = []
        for item in table:
            rows.append({"depth": 0, "label": f"{item.pid} {safe_text(item.comm or '?')}"})
            rows += [dict(cells, depth=1, label=str(cells["fd"]))
                     for cells in _rows(item)]
        write_tree(rows, TREE_COLUMNS, out, "label")
    else:
        write_table([dict(cells, pid=item.pid) for item in table for cells in _rows(item)],
                    COLUMNS, out)


def register(group):
    """Add ``fds`` to the CLI group."""
    group.add_command(fds_command)
