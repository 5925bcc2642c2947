"""``mems``: the mappings of each process, like ``/proc/PID/maps``, with their pages."""

from __future__ import annotations

import sys

import click

from ..analysis import explore
from ..describe import address_range, human_bytes, maps_offset, maps_perms
from ..render import jsonable, safe_text, write_json, write_table
from .options import format_option, source_options
from .selection import optional_pid, process_table

COLUMNS = (("pid", "PID"), ("range", "ADDRESS"), ("perms", "PERMS"), ("offset", "OFFSET"),
           ("size", "SIZE"), ("kind", "KIND"), ("present", "PRESENT"), ("parent", "PARENT"),
           ("lazy", "LAZY"), ("shared", "SHMEM"), ("name", "NAME"))


def vma_json(row):
    """A VMA row as JSON: its fields plus ``perms`` and ``size``."""
    data = jsonable(row)
    data["perms"] = maps_perms(row.prot, row.flags)
    data["size"] = row.size
    return data


def _cells(pid, row, unknown=False):
    pages = row.pages
    return {"pid": pid, "range": address_range(row.start, row.end),
            "perms": maps_perms(row.prot, row.flags), "offset": maps_offset(row.pgoff),
            "size": human_bytes(row.size), "kind": row.kind,
            **{state: "?" if unknown else pages[state]
               for state in ("present", "parent", "lazy")},
            "shared": row.shared, "name": row.name}


def _process_json(item):
    vmas = [vma_json(row) for row in item.vmas]
    if item.pages_unknown:  # a cut pagemap: the private counts are unknown, not 0
        for vma in vmas:
            vma["pages"] = {state: None for state in vma["pages"]}
    return {"depth": item.depth, "pid": item.pid, "comm": item.comm, "state": item.state,
            "exe": item.exe, "pages_unknown": item.pages_unknown, "vmas": vmas}


@click.command("mems")
@source_options
@optional_pid
@format_option()
def mems_command(path, lxd_dir, project, root, pid, fmt):
    """Show each process's mappings as /proc/PID/maps does (address range,
    permissions, offset, file), with the pages the checkpoint holds for each:
    PRESENT (in this checkpoint's pages images), PARENT (in the parent
    checkpoint), LAZY (left to a lazy-pages daemon) and, for shared memory,
    SHMEM (pages of the shared object dumped inside the mapping).  Only
    metadata images are read.

    \b
    Examples:
      crit-plus mems /var/lib/criu/dump1 12525
      crit-plus mems lxd:web/snap0 | less -S
      crit-plus mems dump1 -f json | jq '.[0].vmas[] | select(.pages.present > 0)'
    """
    table = process_table(explore.vma_table, path, lxd_dir, project, root, pid)
    out = sys.stdout
    if fmt == "json":
        write_json([_process_json(item) for item in table], out)
        return
    rows = []
    for item in table:
        if not item.vmas:
            why = "zombie: no memory" if item.state == "zombie" else "no memory image"
            rows.append({"pid": item.pid, "name": f"({why})"})
            continue
        rows.append({"pid": item.pid, "range": "exe", "name": item.exe})
        rows += [_cells(item.pid, row, bool(item.pages_unknown)) for row in item.vmas]
    write_table(rows, COLUMNS, out)
    for item in table:
        if item.pages_unknown:
            out.write(f"\npid {item.pid}: pages unknown (?): {safe_text(item.pages_unknown)}\n")


def register(group):
    """Add ``mems`` to the CLI group."""
    group.add_command(mems_command)
