"""The three HTML pages: :func:`summary_page`, :func:`size_page`, :func:`diff_page`.

Each takes the analysis results the command computed (the same objects its text and
JSON forms print) and the rows the command formats for its tables, lays out the
pictures (:mod:`.layout`) and fills a template (:mod:`.environment`).  Each returns
the page as UTF-8 bytes: a string from a checkpoint that is not valid Unicode cannot
make the write fail.
"""

from __future__ import annotations

from ..describe import count_text, human_bytes, maps_perms
from ..findings import SEVERITIES, severity_count
from ..memory import VMA_KINDS  # the legend: every kind the one VMA-kind rule gives
from . import layout
from .environment import render


def _page(template, title, page, **context):
    from .. import __version__

    text = render(template, title=title, page=page, version=__version__, **context)
    return text.encode("utf-8", "backslashreplace")


def columns(pairs, numeric=()):
    """A table's columns for the templates: ``((key, header, numeric?), ...)`` from the
    ``((key, header), ...)`` a text table uses."""
    return tuple((key, header, key in numeric) for key, header in pairs)


# -- summarize ---------------------------------------------------------------------------------


#: How a VMA's tooltip names its page states (crit_plus.analysis.explore.VmaRow.pages).
STATE_WORDS = (("present", "present"), ("parent", "in parent"), ("lazy", "lazy"),
               ("unavailable", "unavailable"), ("unlisted", "unlisted"))


def _vma_title(row, unknown=False):
    """A VMA's tooltip: start address, permissions, size, file or kind, pages by state
    (terse: a 300-process page has ten thousand of them); ``unknown``: its process's
    private pages are not known (a cut or missing pagemap), so none are counted."""
    pages = row.pages
    counts = [] if unknown else \
        [f"{pages[state]} {word}" for state, word in STATE_WORDS if pages.get(state)]
    if row.shared is not None:
        counts.append(f"{row.shared} shared-memory")
    empty = "private pages unknown" if unknown else "no pages"
    return (f"{row.start:x} {maps_perms(row.prot, row.flags)} {human_bytes(row.end - row.start)}"
            f" {row.name or row.kind}: {', '.join(counts) or empty}")


class _Box:
    """A :class:`~.layout.VmaBox` with its tooltip."""

    __slots__ = ("kind", "title", "width", "x")

    def __init__(self, box, unknown=False):
        self.x, self.width, self.kind = f"{box.x:.1f}", f"{box.width:.1f}", box.kind
        self.title = _vma_title(box.row, unknown)


def _marks(boxes, y=17, height=5):
    """``(state, path data)``: every page-state segment of a map as one SVG path per
    state (a rectangle each), which keeps a 300-process page small."""
    paths = {}
    for box in boxes:
        for s in box.states:
            paths.setdefault(s.css, []).append(f"M{s.x:.1f} {y}h{s.width:.1f}v{height}"
                                               f"h{-s.width:.1f}z")
    return [(state, "".join(paths[state])) for state in layout.STRIP_STATES if state in paths]


#: The strip's mark of a process whose private pages are unknown (its pagemap cut or missing).
UNKNOWN = "unknown"


def _unknown_marks(boxes, y=17, height=5):
    """The marks of a map whose pages are unknown: one grey ``unknown`` strip under every
    VMA instead of page states (which would read as "no pages")."""
    if not boxes:
        return []
    start, end = boxes[0].x, boxes[-1].x + boxes[-1].width
    return [(UNKNOWN, f"M{start:.1f} {y}h{end - start:.1f}v{height}h{start - end:.1f}z")]


def _process_facts(p, cells):
    pages = "private pages unknown" if p.pages_unknown else \
        f"{p.present} pages present, {p.parent} in parent, {p.lazy} lazy"
    return (f"ppid {p.ppid}; {count_text(p.threads, 'thread')}, {count_text(p.vmas, 'VMA')}, "
            f"{pages}, {p.shared} shared; {cells['size']}; {count_text(p.fds, 'fd')}")


def _fd_rows(table):
    from ..describe import fd_description

    rows = []
    for row in (*table.fds, table.cwd, table.root):
        if row is not None:
            rows.append((row.fd, row.kind, fd_description(row.kind, row.name, row.details,
                                                          row.peers, row.targets, row.queued)))
    return rows


#: Processes nested deeper than this are drawn at this depth, their parent named (``ppid``):
#: browsers' HTML parsers flatten elements nested deeper than 512 (Chromium's limit), and
#: each level of the tree takes two (``<details>``, its children's ``<div>``).
MAX_NESTING = 100


class _TreeItem:
    __slots__ = ("boxes", "closes", "command", "facts", "fds", "marks", "no_memory",
                 "pages_unknown", "process")


def _tree(processes, rows, vmas, fds):
    """Tree-order items, each saying how many open ``<details>`` close before it."""
    maps = {item.pid: item for item in vmas}
    files = {item.pid: item for item in fds}
    items, open_depth = [], 0
    for p, cells in zip(processes, rows):
        item = _TreeItem()
        depth = min(p.depth, open_depth, MAX_NESTING)  # an orphan's cannot skip a level
        item.closes, open_depth = open_depth - depth, depth + 1
        item.process = p
        item.facts = _process_facts(p, cells)
        item.command = cells["command"]
        table = maps.get(p.pid)
        rows = table.vmas if table is not None else ()
        boxes = layout.memory_map(rows)
        item.pages_unknown = p.pages_unknown  # the graph's reason: file and offset
        item.boxes = [_Box(box, bool(p.pages_unknown)) for box in boxes]
        item.marks = _unknown_marks(boxes) if p.pages_unknown else _marks(boxes)
        item.no_memory = "no memory image"
        if p.state == "zombie":
            item.no_memory = f"zombie ({p.exit.text}): no memory" if p.exit else "zombie: no memory"
        item.fds = _fd_rows(files[p.pid]) if p.pid in files else []
        items.append(item)
    return items, open_depth


def summary_page(result, *, title, origin, stats, totals, processes, vmas, fds,
                 validation=None, sockets=(), socket_columns=(), mappings=(), mapping_columns=(),
                 logs=(), rootfs=None):
    """The ``summarize`` page of :class:`~crit_plus.analysis.summary.Summary` ``result``.

    ``origin``, ``stats`` and ``totals`` are the ``(label, text)`` pairs the text form
    prints, ``processes`` its process rows (``size``, ``command``: one per process of
    ``result``, in its order); ``vmas`` and ``fds`` the explorers' tables
    (:func:`~crit_plus.analysis.explore.vma_table`, ``fd_table``); ``validation``
    validate's :class:`~crit_plus.analysis.validate.Report`; ``sockets`` and
    ``mappings`` rows with their :func:`columns`; ``logs`` ``(name, facts, error
    lines)``; ``rootfs`` a container archive's root-filesystem changes as the text
    form shows them, ``(count line, rows, columns, notes)``, or None."""
    tree, final = _tree(result.processes, processes, vmas, fds)
    unknown = any(item.pages_unknown for item in tree)
    counts = ()
    if validation is not None:
        counts = tuple((s, severity_count(validation.count(s), s)) for s in SEVERITIES)
    return _page("summarize.html", title, "summarize", origin=origin, stats=stats,
                 totals=totals, tree=tree, final_closes=final, kinds=VMA_KINDS,
                 pages_unknown=unknown,
                 validation=validation, validation_counts=counts, notes=result.notes,
                 sockets=sockets, socket_columns=socket_columns, mappings=mappings,
                 mapping_columns=mapping_columns, logs=logs, rootfs=rootfs)


# -- size --------------------------------------------------------------------------------------


class _Section:
    """A heading, a stacked bar (:func:`~.layout.stacked_bar`) and a table."""

    __slots__ = ("columns", "heading", "name", "note", "parts", "rows", "unit")

    def __init__(self, name, heading, items, table=None, unit="bytes", note=None, numeric=()):
        self.name, self.heading, self.unit, self.note = name, heading, unit, note
        self.parts = layout.stacked_bar(items)
        rows, cols = table if table is not None else ((), ())
        self.rows, self.columns = rows, columns(cols, numeric)


def size_page(report, *, title, fields, kinds, owners, owner_label, vma_kinds, scan=None,
              content=None, content_heading=None, content_parts=(), transfer=None):
    """The ``size`` page of :class:`~crit_plus.analysis.size.SizeReport` ``report``: a
    stacked bar and the text form's table for each view.  ``fields`` are the text form's
    first lines; ``kinds``, ``owners``, ``vma_kinds`` and ``content`` its tables as
    ``(rows, columns)``; ``content_parts`` the ``(scan field, label)`` categories of
    ``scan`` (:class:`~crit_plus.analysis.content.ContentReport`); ``transfer``
    ``(heading, rows, columns)``."""
    owner_items = [(owner_label(item), item.disk.apparent)
                   for item in (*report.processes, *report.shared)]
    owner_items.append(("checkpoint-wide images", report.common.apparent))
    sections = [
        _Section("kinds", "On disk, by image kind", [(k.kind, k.apparent) for k in report.kinds],
                 kinds, numeric=("files",)),
        _Section("owners", "On disk, by process (its pages file and its own images)",
                 owner_items, owners, numeric=("threads", "files")),
        _Section("vma-kinds", "Page data present, by VMA kind",
                 [(v.kind, v.pages.present_bytes) for v in report.vma_kinds], vma_kinds,
                 numeric=("vmas",)),
    ]
    if scan is not None:
        sections.append(_Section(
            "content", content_heading,
            [(label, getattr(scan, name) * layout.PAGE_SIZE) for name, label in content_parts],
            content, numeric=("pages",)))
    moving = None
    if transfer is not None:
        heading, rows, cols = transfer
        moving = (heading, rows, columns(cols))
    return _page("size.html", title, "size", fields=fields, sections=sections,
                 transfer=moving, notes=report.notes)


# -- diff --------------------------------------------------------------------------------------


class _VmaLine:
    """A VMA row of a diff: its table cells and its page strip."""

    __slots__ = ("cells", "change", "strip")

    def __init__(self, row, cells):
        self.change, self.cells, self.strip = row.change, cells, layout.page_strip(row)


def diff_page(report, *, title, fields, verdict, processes=None, files=None, memory=None,
              images=None, rootfs=None):
    """The ``diff`` page of :class:`~crit_plus.analysis.diff.DiffReport` ``report``.

    ``fields`` and ``verdict`` are the text form's first and last lines; each section
    the command's reading of it: ``processes`` ``(heading, rows, columns, not-compared
    lines)`` (the values a side cannot give, as the text form lists them); ``files``
    ``(heading, fd rows, fd columns, file rows, file columns)``; ``memory`` ``(heading,
    columns, [(process line, [(VmaDiff, cells), ...]), ...])``, a strip drawn for each
    VMA row (:func:`~.layout.page_strip`); ``images`` ``(heading, only in OLD, only in
    NEW, fact rows, fact columns, stat rows, stat columns)``; ``rootfs`` ``(heading,
    rows, columns, problem lines)``."""
    if processes is not None:
        heading, rows, cols, unread = processes
        processes = (heading, rows, columns(cols, ("old", "new")), unread)
    if files is not None:
        heading, fds, fd_cols, objects, object_cols = files
        files = (heading, fds, columns(fd_cols, ("fd",)), objects, columns(object_cols))
    if memory is not None:
        heading, cols, found = memory
        numeric = ("changed", "added", "removed", "unchanged", "unavailable")
        memory = (heading, columns(cols, numeric),
                  [(text, [_VmaLine(row, cells) for row, cells in rows])
                   for text, rows in found])
    if images is not None:
        heading, only_old, only_new, facts, fact_cols, stats, stat_cols = images
        images = (heading, only_old, only_new, facts, columns(fact_cols), stats,
                  columns(stat_cols))
    return _page("diff.html", title, "diff", fields=fields, verdict=verdict,
                 identical=report.identical, processes=processes, files=files, memory=memory,
                 images=images, rootfs=rootfs)
