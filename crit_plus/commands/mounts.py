"""``mounts``: the mount tree of each mount namespace, as mountinfo shows a mount."""

from __future__ import annotations

import re
import sys

import click

from ..analysis import views
from ..render import Styled, jsonable, safe_text, write_table, write_tree
from .options import format_option, source_options
from .selection import TREE_FORMATS, view_of, write_view

COLUMNS = (("ns", "MNTNS"), ("id", "ID"), ("parent", "PARENT"), ("mountpoint", "MOUNTPOINT"),
           ("fstype", "FSTYPE"), ("source", "SOURCE"), ("root", "ROOT"),
           ("options", "OPTIONS"), ("propagation", "PROPAGATION"), ("external", "EXTERNAL"),
           ("binds", "BINDS"))
TREE_COLUMNS = (("label", "MOUNTPOINT"), ("id", "ID"), ("fstype", "FSTYPE"),
                ("source", "SOURCE"), ("root", "ROOT"), ("options", "OPTIONS"),
                ("propagation", "PROPAGATION"), ("external", "EXTERNAL"))
#: Left out of the table and the tree without --wide (the file system's options go too).
WIDE_ONLY = ("ns", "root", "binds")
#: Without --wide, a longer cell is folded onto more lines (after a ``/`` or ``,``).
FOLD = 18


def mount_json(row):
    """One mount as JSON: the record's fields, ``device``, ``mount_options``,
    ``propagation``, ``depth`` and ``binds``."""
    mount = row.mount
    data = jsonable(mount)
    data.update(root_dev=mount.device, device=mount.device,
                mount_options=list(mount.mount_options),
                propagation=list(mount.propagation), depth=row.depth, binds=list(row.binds))
    return data


def _columns(columns, wide):
    return columns if wide else tuple(c for c in columns if c[0] not in WIDE_ONLY)


def fold(text, width=FOLD):
    """``text`` (escaped) on lines of at most ``width`` characters, broken after a ``/``
    ``,`` or space (a longer piece keeps its own line): a cell of the compact table."""
    pieces = re.findall(r"[^/, ]*[/, ]|[^/, ]+$", safe_text(text)) or [""]
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return Styled("\n".join(line.rstrip() for line in lines))


def _compact(cells, wide):
    if wide:
        return cells
    return {key: fold(value) if key in ("mountpoint", "source", "options", "propagation",
                                        "external")
            and isinstance(value, str) and len(value) > FOLD else value
            for key, value in cells.items()}


def _cells(table, row, wide):
    mount = row.mount
    options = ",".join(mount.mount_options)
    if mount.options and wide:
        options += f" ({mount.options})"
    return {"ns": table.ns_id, "id": mount.mnt_id, "parent": mount.parent_mnt_id,
            "mountpoint": mount.mountpoint + (" (deleted)" if mount.deleted else ""),
            "label": mount.mountpoint, "depth": row.depth, "fstype": mount.fstype_label,
            "source": mount.source, "root": mount.root, "options": options,
            "propagation": " ".join(mount.propagation),
            "external": mount.ext_key if mount.external else "",
            "binds": ",".join(str(b) for b in row.binds)}


@click.command("mounts")
@source_options(root=False)
@click.option("--wide", "-w", is_flag=True,
              help="Also show each mount's ROOT, BINDS and the file system's options "
                   "(wide: 200 columns and more on a container).")
@format_option(TREE_FORMATS)
def mounts_command(path, lxd_dir, project, wide, fmt):
    """Show the mounts of each mount namespace the checkpoint holds
    (mountpoints-ID.img): id, parent, mount point, file system, source, the mount's
    options, propagation (shared:N, master:N as in /proc/PID/mountinfo) and EXTERNAL
    the key a restore must map with --external mnt[KEY]:PATH; with --wide also the
    root of the mount inside its file system, the file system's options and BINDS the
    other mounts of the same superblock (bind mounts of one another).  A process in
    the host's mount namespace has none: CRIU did not dump it.  A damaged image shows
    the mounts before the damage, then one line saying where it is.

    \b
    Examples:
      crit-plus mounts lxd:web/snap0 -f tree
      crit-plus mounts lxd:web/snap0 --wide | less -S
      crit-plus mounts dump1 -f json | jq '.namespaces[].mounts[] | select(.external)'
    """
    tables, findings = view_of(views.mount_tables, views.mount_findings, path, lxd_dir,
                               project)
    out = sys.stdout
    if write_view("mounts", [{"ns_id": t.ns_id, "pids": list(t.pids),
                                          "damage": t.damage,
                                          "mounts": [mount_json(r) for r in t.rows]}
                                         for t in tables], findings, fmt, out):
        return
    if not tables:
        out.write("no mount namespace of its own: the processes are in the host's "
                  "(CRIU dumped no mountpoints image)\n")
        return
    if fmt == "table" and wide:
        write_table([_cells(t, row, wide) for t in tables for row in t.rows], COLUMNS, out)
    for index, table in enumerate(tables if fmt == "tree" or not wide else ()):
        if index:
            out.write("\n")
        pids = " ".join(str(p) for p in table.pids)
        out.write(f"mount namespace {table.ns_id} (pids {pids or '-'}):\n")
        rows = [_compact(_cells(table, row, wide), wide) for row in table.rows]
        if fmt == "tree":
            write_tree(rows, _columns(TREE_COLUMNS, wide), out, "label")
        else:
            write_table(rows, _columns(COLUMNS, wide), out)
    for table in tables:
        if table.damage is not None:
            out.write(f"mount namespace {table.ns_id}: only the {len(table.rows)} mounts "
                      f"before the damage are shown ({safe_text(table.damage)})\n")


def register(group):
    """Add ``mounts`` to the CLI group."""
    group.add_command(mounts_command)
