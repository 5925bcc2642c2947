"""The three HTML pages: :func:`summary_page`, :func:`size_page`, :func:`diff_page`.

Each takes the analysis results the command computed (the same objects its text and
JSON forms print) and the rows the command formats for its tables, lays out the
pictures (:mod:`.layout`) and fills a template (:mod:`.environment`).  Each returns
the page as UTF-8 bytes: a string from a checkpoint that is not valid Unicode cannot
make the write fail.
"""

from __future__ import annotations

from ..describe import address_range, cmdline_text, count_text, human_bytes, maps_perms
from . import layout
from .environment import render

#: VMA kinds in the legend's order (crit_plus.memory.VMA_KINDS; kept here, not imported,
#: so that a page needs no graph module: an unknown kind is drawn in the default colour).
VMA_KINDS = ("anon", "heap", "stack", "file", "file-shared", "memfd", "shared", "sysvipc",
             "vdso", "vvar", "vsyscall", "socket", "aio")
SEVERITIES = ("error", "warning", "info")


def _version():
    from importlib import metadata

    try:
        return metadata.version("crit-plus")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _page(template, title, page, **context):
    text = render(template, title=title, page=page, version=_version(), **context)
    return text.encode("utf-8", "backslashreplace")


def columns(pairs, numeric=()):
    """A table's columns for the templates: ``((key, header, numeric?), ...)`` from the
    ``((key, header), ...)`` a text table uses."""
    return tuple((key, header, key in numeric) for key, header in pairs)


# -- summarize ---------------------------------------------------------------------------------


def _vma_title(row):
    pages = row.pages
    text = (f"{address_range(row.start, row.end)} {maps_perms(row.prot, row.flags)} {row.kind} "
            f"{human_bytes(row.end - row.start)}: {pages.get('present', 0)} present, "
            f"{pages.get('parent', 0)} in parent, {pages.get('lazy', 0)} lazy, "
            f"{pages.get('unlisted', 0)} unlisted")
    if row.shared is not None:
        text += f"; {row.shared} shared-memory pages"
    return text + (f"; {row.name}" if row.name else "")


class _Box:
    """A :class:`~.layout.VmaBox` with its tooltip."""

    __slots__ = ("kind", "states", "title", "width", "x")

    def __init__(self, box):
        self.x, self.width, self.kind, self.states = box.x, box.width, box.kind, box.states
        self.title = _vma_title(box.row)


def _process_facts(p):
    size = human_bytes((p.pages + p.shared) * layout.PAGE_SIZE)
    return (f"{count_text(p.threads, 'thread')}, {count_text(p.vmas, 'VMA')}, "
            f"{p.present} pages present, {p.parent} in parent, {p.lazy} lazy, "
            f"{p.shared} shared; {size}; {count_text(p.fds, 'fd')}")


def _fd_rows(table):
    from ..describe import fd_description

    rows = []
    for row in (*table.fds, table.cwd, table.root):
        if row is not None:
            rows.append((row.fd, row.kind, fd_description(row.kind, row.name, row.details,
                                                          row.peers, row.targets, row.queued)))
    return rows


class _TreeItem:
    __slots__ = ("boxes", "closes", "command", "facts", "fds", "no_memory", "process")


def _tree(processes, vmas, fds):
    """Tree-order items, each saying how many open ``<details>`` close before it."""
    maps = {item.pid: item for item in vmas}
    files = {item.pid: item for item in fds}
    items, open_depth = [], 0
    for p in processes:
        item = _TreeItem()
        depth = min(p.depth, open_depth)  # an orphan's depth cannot skip a level
        item.closes, open_depth = open_depth - depth, depth + 1
        item.process = p
        item.facts = _process_facts(p)
        item.command = cmdline_text(p.argv, p.comm) if p.argv is not None else p.exe
        table = maps.get(p.pid)
        rows = table.vmas if table is not None else ()
        item.boxes = [_Box(box) for box in layout.memory_map(rows)]
        item.no_memory = "zombie: no memory" if p.state == "zombie" else "no memory image"
        item.fds = _fd_rows(files[p.pid]) if p.pid in files else []
        items.append(item)
    return items, open_depth


def summary_page(result, *, title, origin, stats, totals, vmas, fds, validation=None,
                 sockets=(), socket_columns=(), mappings=(), mapping_columns=(), logs=()):
    """The ``summarize`` page of :class:`~crit_plus.analysis.summary.Summary` ``result``.

    ``origin``, ``stats`` and ``totals`` are the ``(label, text)`` pairs the text form
    prints; ``vmas`` and ``fds`` the explorers' tables
    (:func:`~crit_plus.analysis.explore.vma_table`, ``fd_table``); ``validation``
    validate's :class:`~crit_plus.analysis.validate.Report`; ``sockets`` and
    ``mappings`` rows with their :func:`columns`; ``logs`` ``(name, facts, error
    lines)``."""
    tree, final = _tree(result.processes, vmas, fds)
    counts = ()
    if validation is not None:
        counts = tuple((s, validation.count(s)) for s in SEVERITIES)
    return _page("summarize.html", title, "summarize", origin=origin, stats=stats,
                 totals=totals, tree=tree, final_closes=final, kinds=VMA_KINDS,
                 validation=validation, validation_counts=counts, notes=result.notes,
                 sockets=sockets, socket_columns=socket_columns, mappings=mappings,
                 mapping_columns=mapping_columns, logs=logs)
