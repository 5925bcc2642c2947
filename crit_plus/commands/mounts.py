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
#: Without --wide, the table and the tree fit in this many columns where they can: the
#: widest foldable cells are folded onto more lines (after a ``/``, ``,``, ``:`` or space).
WIDTH = 100
#: The cells folded to fit, and the narrowest each gets (a longer piece keeps its line).
FOLDABLE = {"mountpoint": 14, "label": 14, "source": 13, "options": 16, "propagation": 9,
            "external": 13}
#: Columns between two cells of a table (render.write_table's).
GAP = 2


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


def fold(text, width, first=None):
    """``text`` (escaped) on lines of at most ``width`` characters (the first ``first``,
    when given), broken after a ``/``, ``,``, ``:`` or space (a longer piece keeps its own
    line): a cell of the compact table."""
    pieces = re.findall(r"[^/,: ]*[/,: ]|[^/,: ]+$", safe_text(text)) or [""]
    lines = [""]
    for piece in pieces:
        room = first if first is not None and len(lines) == 1 else width
        if lines[-1] and len(lines[-1]) + len(piece) > room:
            lines.append("")
        lines[-1] += piece
    return Styled("\n".join(line.rstrip() for line in lines))


def _indents(rows, key):
    """Per row, the columns the tree draws before the second and later lines of a folded
    ``label`` (render.tree_continuations: 3 per level, 3 more for a mount with mounts
    below it, whose line goes down beside); 0 for any other column."""
    if key != "label":
        return [0] * len(rows)
    depths = [row.get("depth") or 0 for row in rows]
    return [3 * depth + (3 if index + 1 < len(depths) and depths[index + 1] > depth else 0)
            for index, depth in enumerate(depths)]


def _folded(row, key, limit, indent):
    """The cell ``key`` of ``row`` as it is shown: escaped, folded at ``limit`` (a label's
    first line after its tree prefix, the later ones after ``indent`` columns) when given."""
    value = row.get(key)
    if not isinstance(value, str):
        return value
    if limit is None:
        return safe_text(value)
    start = 3 * (row.get("depth") or 0) if key == "label" else 0
    return fold(value, max(1, limit - indent), max(1, limit - start))


def _width(rows, key, header, limit=None):
    """The width of column ``key`` with its cells folded at ``limit`` (None: not folded):
    its widest line, the tree's prefixes counted, and at least its header's plus 2, as
    render.write_table and write_tree lay it out."""
    widest = len(header) + 2
    for row, indent in zip(rows, _indents(rows, key)):
        text = _folded(row, key, limit, indent)
        if not isinstance(text, str):
            widest = max(widest, len(str(text)) if text is not None else 1)
            continue
        first, *rest = text.split("\n")
        start = 3 * (row.get("depth") or 0) if key == "label" else 0
        widest = max([widest, start + len(first)] + [indent + len(line) for line in rest])
    return widest


def fit(rows, columns, width=WIDTH):
    """``rows`` with their :data:`FOLDABLE` cells folded so that the table of ``columns``
    is at most ``width`` columns wide where it can be: the widest foldable column is
    narrowed first, none below its :data:`FOLDABLE` width or its header.  Values are only
    folded, never cut: ``--wide`` and the JSON have them on one line."""
    headers = dict(columns)
    widths = {key: _width(rows, key, header) for key, header in columns}
    limits: dict[str, int] = {}
    narrowable = {key for key in headers if key in FOLDABLE}
    while narrowable:
        excess = sum(widths.values()) + GAP * (len(widths) - 1) - width
        if excess <= 0:
            break
        ordered = sorted(narrowable, key=lambda k: widths[k], reverse=True)
        key = ordered[0]
        floor = max(FOLDABLE[key], len(headers[key]) + 2)
        others = widths[ordered[1]] if len(ordered) > 1 else floor
        target = max(floor, widths[key] - max(1, min(excess, widths[key] - others)))
        narrower = _width(rows, key, headers[key], target)
        if narrower >= widths[key] or target == floor:
            narrowable.discard(key)
        if narrower < widths[key]:
            widths[key], limits[key] = narrower, target
    indents = {key: _indents(rows, key) for key in limits}
    return [{key: _folded(row, key, limits[key], indents[key][index])
             if key in limits and isinstance(value, str) else value
             for key, value in row.items()} for index, row in enumerate(rows)]


def tree_label(mountpoint, parent):
    """A mount point as the tree names it: below its parent mount's ``parent`` (None for a
    root), the rest of the path (``fs/cgroup`` under ``/sys``), as the tree already shows
    the parent; the whole path for a root, or one not below its parent's."""
    if parent is None or mountpoint == parent:
        return mountpoint
    base = parent.rstrip("/") + "/"
    return mountpoint[len(base):] if mountpoint.startswith(base) else mountpoint


def _cells(table, row, wide, points=None):
    """A mount's cells; ``points`` (mount id → mount point, of the rows shown) names the
    tree's label relative to the parent's."""
    mount = row.mount
    parent = (points or {}).get(mount.parent_mnt_id) if row.depth else None
    options = ",".join(mount.mount_options)
    if mount.options and wide:
        options += f" ({mount.options})"
    return {"ns": table.ns_id, "id": mount.mnt_id, "parent": mount.parent_mnt_id,
            "mountpoint": mount.mountpoint + (" (deleted)" if mount.deleted else ""),
            "label": tree_label(mount.mountpoint, parent), "depth": row.depth,
            "fstype": mount.fstype_label,
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
        points = {row.mount.mnt_id: row.mount.mountpoint for row in table.rows}
        rows = [_cells(table, row, wide, points) for row in table.rows]
        columns = _columns(TREE_COLUMNS if fmt == "tree" else COLUMNS, wide)
        if not wide:
            rows = fit(rows, columns)
        if fmt == "tree":
            write_tree(rows, columns, out, "label")
        else:
            write_table(rows, columns, out)
    for table in tables:
        if table.damage is not None:
            out.write(f"mount namespace {table.ns_id}: only the {len(table.rows)} mounts "
                      f"before the damage are shown ({safe_text(table.damage)})\n")


def register(group):
    """Add ``mounts`` to the CLI group."""
    group.add_command(mounts_command)
