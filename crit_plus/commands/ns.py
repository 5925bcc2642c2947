"""``ns``: the namespaces of a checkpoint, who is in each, and user-namespace id maps."""

from __future__ import annotations

import sys

import click

from ..analysis import views
from ..render import jsonable, safe_text, write_table
from .options import format_option, source_options
from .selection import view_of, write_view

COLUMNS = (("kind", "KIND"), ("id", "ID"), ("owner", "OWNER"), ("pids", "PIDS"),
           ("detail", "DETAIL"))


def _pids_text(pids, limit=8):
    shown = " ".join(str(pid) for pid in pids[:limit])
    return shown + (f" (+{len(pids) - limit})" if len(pids) > limit else "")


def _maps_text(maps):
    return ", ".join(f"{m.first}->{m.lower_first}+{m.count}" for m in maps) or "(empty)"


def _detail(namespace):
    if namespace.uts is not None:
        return f"nodename {namespace.uts[0]}, domainname {namespace.uts[1]}"
    if namespace.uid_map is not None:
        return f"uid {_maps_text(namespace.uid_map)}; gid {_maps_text(namespace.gid_map)}"
    images = namespace.images
    return ", ".join(images[:2]) + (f" (+{len(images) - 2} images)" if len(images) > 2 else "")


def _owner(own):
    return {True: "checkpoint", False: "host", None: "?"}[own]


def namespace_json(namespace):
    """A namespace as JSON: ``kind``, ``ns_id``, its other fields, ``owner`` (checkpoint,
    host, unknown)."""
    data = jsonable(namespace)
    data = {"kind": data.pop("kind"), "ns_id": data.pop("id"), **data}
    data["owner"] = {True: "checkpoint", False: "host", None: "unknown"}[namespace.own]
    del data["own"]
    return data


def _gather(checkpoint):
    return views.namespaces(checkpoint), views.unknown_namespace_pids(checkpoint)


@click.command("ns")
@source_options(root=False)
@format_option()
def ns_command(path, lxd_dir, project, fmt):
    """Show the namespaces of the checkpoint's processes: kind, CRIU's id, whose it is
    (OWNER checkpoint: dumped with the processes and restored from the images; host:
    the namespace CRIU ran in, not dumped: the restore uses the target's), the pids in
    it, and what the images hold (a UTS namespace's names, a user namespace's uid and
    gid maps as INSIDE->OUTSIDE+COUNT, the images of the others).  A process whose
    ids-PID.img cannot be read is shown on a last row of kind ?: its namespaces are
    unknown.

    \b
    Examples:
      crit-plus ns lxd:web/snap0
      crit-plus ns dump1 -f json | jq '.namespaces[] | select(.kind == "user")'
    """
    (found, unknown), findings = view_of(_gather, views.namespace_findings, path, lxd_dir,
                                         project)
    out = sys.stdout
    if write_view("ns", [namespace_json(n) for n in found], findings, fmt, out,
                  unknown_pids=list(unknown)):
        return
    rows = [{"kind": n.kind, "id": n.id, "owner": _owner(n.own), "pids": _pids_text(n.pids),
             "detail": safe_text(_detail(n))} for n in found]
    if unknown:
        rows.append({"kind": "?", "id": "?", "owner": "?", "pids": _pids_text(unknown),
                     "detail": "namespaces unknown: ids-PID.img missing or damaged"})
    write_table(rows, COLUMNS, out)


def register(group):
    """Add ``ns`` to the CLI group."""
    group.add_command(ns_command)
