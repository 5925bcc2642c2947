"""``mounts``: the mount tree of each mount namespace, as mountinfo shows a mount."""

from __future__ import annotations

import sys

import click

from ..analysis import views
from ..render import jsonable, write_table, write_tree
from .options import format_option, source_options
from .selection import TREE_FORMATS, view_of, write_view

COLUMNS = (("ns", "MNTNS"), ("id", "ID"), ("parent", "PARENT"), ("mountpoint", "MOUNTPOINT"),
           ("fstype", "FSTYPE"), ("source", "SOURCE"), ("root", "ROOT"),
           ("options", "OPTIONS"), ("propagation", "PROPAGATION"), ("external", "EXTERNAL"),
           ("binds", "BINDS"))
TREE_COLUMNS = (("label", "MOUNTPOINT"), ("id", "ID"), ("fstype", "FSTYPE"),
                ("source", "SOURCE"), ("options", "OPTIONS"), ("propagation", "PROPAGATION"),
                ("external", "EXTERNAL"))


def mount_json(row):
    """One mount as JSON: the record's fields, ``device``, ``mount_options``,
    ``propagation``, ``depth`` and ``binds``."""
    mount = row.mount
    data = jsonable(mount)
    data.update(device=mount.device, mount_options=list(mount.mount_options),
                propagation=list(mount.propagation), depth=row.depth, binds=list(row.binds))
    return data


def _cells(table, row):
    mount = row.mount
    options = ",".join(mount.mount_options)
    if mount.options:
        options += f" ({mount.options})"
    return {"ns": table.ns_id, "id": mount.mnt_id, "parent": mount.parent_mnt_id,
            "mountpoint": mount.mountpoint + (" (deleted)" if mount.deleted else ""),
            "label": mount.mountpoint, "depth": row.depth, "fstype": mount.fstype_label,
            "source": mount.source, "root": mount.root, "options": options,
            "propagation": " ".join(mount.propagation),
            "external": mount.ext_key if mount.external else "",
            "binds": ",".join(str(b) for b in row.binds)}


@click.command("mounts")
@source_options
@format_option(TREE_FORMATS)
def mounts_command(path, lxd_dir, project, root, fmt):
    """Show the mounts of each mount namespace the checkpoint holds
    (mountpoints-ID.img): id, parent, mount point, file system, source, root of the
    mount inside its file system, the mount's options (and the file system's),
    propagation (shared:N, master:N as in /proc/PID/mountinfo), EXTERNAL the key a
    restore must map with --external mnt[KEY]:PATH, and BINDS the other mounts of the
    same superblock (bind mounts of one another).  A process in the host's mount
    namespace has none: CRIU did not dump it.

    \b
    Examples:
      crit-plus mounts lxd:web/snap0 -f tree
      crit-plus mounts dump1 -f json | jq '.namespaces[].mounts[] | select(.external)'
    """
    tables, findings = view_of(views.mount_tables, path, lxd_dir, project, root)
    out = sys.stdout
    if write_view(views.MOUNTS_SCHEMA, [{"ns_id": t.ns_id, "pids": list(t.pids),
                                          "mounts": [mount_json(r) for r in t.rows]}
                                         for t in tables], findings, fmt, out):
        return
    if not tables:
        out.write("no mount namespace of its own: the processes are in the host's "
                  "(CRIU dumped no mountpoints image)\n")
        return
    for index, table in enumerate(tables):
        rows = [_cells(table, row) for row in table.rows]
        if fmt == "tree":
            if index:
                out.write("\n")
            pids = " ".join(str(p) for p in table.pids)
            out.write(f"mount namespace {table.ns_id} (pids {pids or '-'}):\n")
            write_tree(rows, TREE_COLUMNS, out, "label")
        elif index == 0:
            write_table([r for t in tables for r in (_cells(t, row) for row in t.rows)],
                        COLUMNS, out)


def register(group):
    """Add ``mounts`` to the CLI group."""
    group.add_command(mounts_command)
