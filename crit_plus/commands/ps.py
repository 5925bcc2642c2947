"""``ps``: the process tree of a checkpoint, with command lines read from memory."""

from __future__ import annotations

import sys

import click

from ..analysis import explore, views
from ..describe import cmdline_text, state_text
from ..render import colored, jsonable, safe_text, use_color, write_json, write_table, write_tree
from .options import format_option, note_image_errors, open_checkpoint_source, source_options
from .selection import TREE_FORMATS, note_findings

COLUMNS = (("pid", "PID"), ("ppid", "PPID"), ("pgid", "PGID"), ("sid", "SID"),
           ("state", "STATE"), ("threads", "THR"), ("comm", "COMM"), ("command", "COMMAND"))
TREE_COLUMNS = (("label", "PROCESS"), ("state", "STATE"), ("threads", "THR"),
                ("command", "COMMAND"))
LONG_COLUMNS = (("pid", "PID"), ("ppid", "PPID"), ("state", "STATE"), ("threads", "THR"),
                ("uid", "UID"), ("gid", "GID"), ("cap_eff", "CAPEFF"), ("seccomp", "SECCOMP"),
                ("lsm", "LSM"), ("cgroup", "CGROUP"), ("comm", "COMM"),
                ("command", "COMMAND"))
STATE_COLORS = {"zombie": "red", "stopped": "yellow"}
_LONG_KEYS = ("uid", "gid", "cap_eff", "seccomp", "lsm", "cgroup")


def _ids_text(real, effective):
    if real is None:
        return "?"
    return str(real) if real == effective else f"{real}/{effective}"


def _seccomp_text(thread):
    if thread.seccomp_mode in (None, "disabled"):
        return "-"
    if thread.seccomp_filters is None:
        return f"{thread.seccomp_mode}(?)"
    if thread.seccomp_filters:
        return f"filter({len(thread.seccomp_filters)}:{thread.seccomp_instructions})"
    return thread.seccomp_mode


def _cgroup_text(thread):
    if thread.cgroups is None:
        return "?"
    if not thread.cgroups:
        return "-"
    unified = [m.path for m in thread.cgroups if m.controller == ""]
    return unified[0] if unified else thread.cgroups[0].path


#: Under a --long table whose cells say that threads differ.
SHARED_NOTE = ("(N of M threads): the leader's value, which N of the process's M threads "
               "have; `--format json` shows each thread's")


def _long_cells(detail):
    """The --long columns of one process: its leader's values, each followed by
    ``(N of M threads)`` when only N of its M threads have it (``ProcessDetail.shared_by``:
    the seccomp as restored, so threads CRIU gives the leader's filters share them)."""
    thread = detail.leader
    if thread is None:
        return {}
    cells = {"uid": _ids_text(thread.uid, thread.euid),
             "gid": _ids_text(thread.gid, thread.egid),
             "cap_eff": "-" if thread.cap_eff is None else f"{thread.cap_eff:016x}",
             "seccomp": _seccomp_text(thread), "lsm": thread.lsm_profile or "-",
             "cgroup": _cgroup_text(thread)}
    total = len(detail.threads)
    for aspect in views.ASPECTS:
        shared = detail.shared_by(aspect)
        if shared < total:
            cells[aspect] += f" ({shared} of {total} threads)"
    return cells


@click.command("ps")
@source_options
@click.option("--env", is_flag=True,
              help="Also show each process's environment, read from its memory "
                   "(off by default: environments often hold secrets).")
@click.option("--long", "-l", "long_", is_flag=True,
              help="Also show uid/gid, effective capabilities, seccomp, LSM label and "
                   "cgroup: the leader's, with (N of M threads) when only some threads "
                   "have it (JSON: per thread, under \"detail\").")
@format_option(TREE_FORMATS)
def ps_command(path, lxd_dir, project, root, env, long_, fmt):
    """Show the process tree: pid, parent, group, session, state, threads and the
    command line (read back from each process's memory; [comm] when it cannot be).

    \b
    Examples:
      crit-plus ps /var/lib/criu/dump1
      crit-plus ps lxd:web/snap0 --format tree
      crit-plus ps dump1 --env --format json | jq '.[0].environ'
      crit-plus ps lxd:web --long
    """
    with open_checkpoint_source(path, lxd_dir, project, root) as opened:
        rows = explore.ps_rows(opened.checkpoint, env=env)
        details = {d.pid: d for d in views.process_details(opened.checkpoint)} if long_ else {}
        if long_:
            note_findings(views.seccomp_findings(opened.checkpoint))
        note_image_errors(opened, opened.checkpoint.confinement_findings if long_ else ())
    out = sys.stdout
    if fmt == "json":
        data = [jsonable(row) for row in rows]
        for item, row in zip(data, rows):
            item["exit"] = row.exit.as_json() if row.exit is not None else None
            if not env:
                del item["environ"]
            if long_:
                item["detail"] = [jsonable(t) for t in details[item["pid"]].threads]
        write_json(data, out)
        return
    color = use_color(out)
    table = [{
        "pid": row.pid, "ppid": row.ppid, "pgid": row.pgid, "sid": row.sid,
        "state": colored(state_text(row.state, row.exit), STATE_COLORS.get(row.state), color),
        "threads": row.threads,
        "comm": row.comm, "command": cmdline_text(row.argv, row.comm, row.argv_unknown),
        "depth": row.depth,
        "label": f"{row.pid} {safe_text(row.comm or '?')}",
        **(_long_cells(details[row.pid]) if long_ else {}),
    } for row in rows]
    if fmt == "tree":
        extra = tuple(c for c in LONG_COLUMNS if c[0] in _LONG_KEYS) if long_ else ()
        write_tree(table, TREE_COLUMNS[:-1] + extra + TREE_COLUMNS[-1:], out, "label")
    else:
        write_table(table, LONG_COLUMNS if long_ else COLUMNS, out)
    if long_ and any(d.shared_by(a) < len(d.threads) for d in details.values()
                     for a in views.ASPECTS):
        out.write(f"\n{SHARED_NOTE}\n")
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
