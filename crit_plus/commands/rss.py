"""``rss``: resident pages per process and per kind of mapping."""

from __future__ import annotations

import sys

import click

from ..analysis import explore
from ..describe import human_bytes
from ..render import jsonable, safe_text, write_json, write_table, write_tree
from .options import format_option, source_options
from .selection import TREE_FORMATS, optional_pid, process_table

_PAGE_COLUMNS = (("vmas", "VMAS"), ("present", "PRESENT"), ("parent", "PARENT"),
                 ("lazy", "LAZY"), ("shared", "SHMEM"), ("size", "SIZE"))
COLUMNS = (("pid", "PID"), ("comm", "COMM"), ("kind", "KIND")) + _PAGE_COLUMNS
TREE_COLUMNS = (("label", "PROCESS / KIND"),) + _PAGE_COLUMNS

PAGE_SIZE = 4096


#: The private page counts a pagemap gives: unknown (``?``, null) when it cannot be read.
_PRIVATE = ("present", "parent", "lazy", "none", "total")


def _counts(item, unknown=False):
    pages = item.total + item.shared
    if unknown:
        return {"vmas": item.vmas, "present": "?", "parent": "?", "lazy": "?",
                "shared": item.shared, "size": "?"}
    return {"vmas": item.vmas, "present": item.present, "parent": item.parent,
            "lazy": item.lazy, "shared": item.shared, "size": human_bytes(pages * PAGE_SIZE)}


def _unknown_private(data):
    for key in _PRIVATE:
        data[key] = None


def rss_json(item):
    """A process's pages as JSON: the :class:`ProcessRss` fields plus ``total``; the
    private counts null when its pagemap cannot be read (``pages_unknown`` says why)."""
    data = jsonable(item)
    data["total"] = item.total
    for kind, source in zip(data["by_kind"], item.by_kind):
        kind["total"] = source.total
        if item.pages_unknown:
            _unknown_private(kind)
    if item.pages_unknown:
        _unknown_private(data)
    return data


@click.command("rss")
@source_options
@optional_pid
@format_option(TREE_FORMATS)
def rss_command(path, lxd_dir, project, root, pid, fmt):
    """Show resident pages: for each process, the pages its pagemap lists
    (PRESENT in this checkpoint, PARENT in the parent checkpoint, LAZY left to
    a lazy-pages daemon) and SHMEM pages of shared memory it maps, in total
    and by kind of mapping (anon, heap, stack, file, file-shared, memfd,
    shared, sysvipc, vdso, vvar, vsyscall, socket, aio; outside-vmas for
    pages in no mapping).  Only metadata images are read.

    \b
    Examples:
      crit-plus rss /var/lib/criu/dump1
      crit-plus rss lxd:web --format tree
      crit-plus rss dump1 -f json | jq 'sort_by(-.total) | .[0].pid'
    """
    table = process_table(explore.rss_table, path, lxd_dir, project, root, pid)
    out = sys.stdout
    if fmt == "json":
        write_json([rss_json(item) for item in table], out)
        return
    rows = []
    for item in table:
        name = safe_text(item.comm or "?")
        unknown = bool(item.pages_unknown)
        rows.append(dict(_counts(item, unknown), pid=item.pid, comm=name, kind="all",
                         depth=item.depth, label=f"{item.pid} {name}"))
        for kind in item.by_kind:
            rows.append(dict(_counts(kind, unknown), pid=item.pid, comm=name, kind=kind.kind,
                             depth=item.depth + 1, label=kind.kind))
    if fmt == "tree":
        write_tree(rows, TREE_COLUMNS, out, "label")  # kinds first, then child processes
    else:
        write_table(rows, COLUMNS, out)
    for item in table:
        if item.pages_unknown:
            out.write(f"\npid {item.pid}: pages unknown (?): {safe_text(item.pages_unknown)}\n")


def register(group):
    """Add ``rss`` to the CLI group."""
    group.add_command(rss_command)
