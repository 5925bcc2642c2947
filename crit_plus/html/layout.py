"""Geometry of the pictures on the HTML pages, from the analysis results, in SVG user
units: no fact is computed here, only where to draw what the analysis counted.

- :func:`memory_map`: a process's VMAs in address order on a compressed axis: each
  VMA's width grows with the logarithm of its size (a 4 KiB page and a 1 GiB heap
  both visible), holes between VMAs are drawn as one fixed gap; under each VMA a
  strip gives the share of its pages present, in parent, lazy (the rest unlisted), and
  over the present and in-parent share, those whose data is unavailable.
- :func:`stacked_bar`: parts of a whole as one bar, the smallest parts beyond
  :data:`MAX_PARTS` folded into "other".
- :func:`page_strip`: one VMA of a diff to scale: the pages changed, added, removed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PAGE_SIZE = 4096
#: Width of every picture, in SVG user units (the page scales it to the column).
WIDTH = 1000.0
#: A hole between two VMAs, in units of the width weight a one-page VMA has.
GAP = 0.6
#: Parts a stacked bar shows; the rest are one "other" part.
MAX_PARTS = 8
#: Page states of a VMA's strip, in drawing order (the rest of its pages are unlisted).
PAGE_STATES = ("present", "parent", "lazy")
#: The state drawn over the end of the present and in-parent share: listed pages whose
#: data cannot be found (``VmaRow.pages["unavailable"]``, counted by the graph).
UNAVAILABLE = "unavailable"
#: Every state a strip can mark, for the legend and the tests.
STRIP_STATES = (*PAGE_STATES, UNAVAILABLE)
#: The narrowest mark of a page strip (user units): one page of a big VMA stays visible.
MIN_MARK = 3.0


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of a bar: ``x`` and ``width`` in user units, ``css`` its class."""

    x: float
    width: float
    css: str


@dataclass(frozen=True, slots=True)
class VmaBox:
    """One VMA on a memory map: its box, its page-state segments, the row it came from."""

    x: float
    width: float
    kind: str
    states: tuple  # Segment, one per page state it has pages in
    row: object  # the analysis row (explore.VmaRow)


def _weight(size):
    return 1.0 + math.log2(max(size // PAGE_SIZE, 1))


def memory_map(rows, width=WIDTH):
    """:class:`VmaBox` of each of ``rows`` (``explore.VmaRow``, address order)."""
    if not rows:
        return ()
    weights = [_weight(row.end - row.start) for row in rows]
    gaps = sum(1 for prev, row in zip(rows, rows[1:]) if row.start != prev.end)
    scale = width / (sum(weights) + gaps * GAP)
    boxes, x, prev_end = [], 0.0, rows[0].start
    for row, weight in zip(rows, weights):
        if row.start != prev_end:
            x += GAP * scale
        span = weight * scale
        boxes.append(VmaBox(x, span, row.kind, _state_segments(row, x, span), row))
        x += span
        prev_end = row.end
    return tuple(boxes)


def _state_segments(row, x, span):
    total = max((row.end - row.start) // PAGE_SIZE, 1)
    segments, at, listed_end = [], x, x
    for state in PAGE_STATES:
        count = row.pages.get(state, 0)
        if count:
            part = span * min(count, total) / total
            segments.append(Segment(at, part, state))
            at += part
        if state == "parent":
            listed_end = at
    missing = row.pages.get(UNAVAILABLE, 0)
    if missing:
        part = max(min(span * min(missing, total) / total, listed_end - x), MIN_MARK)
        segments.append(Segment(max(listed_end - part, x), part, UNAVAILABLE))
    return tuple(segments)


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a stacked bar: its label, its value, where it is drawn."""

    label: str
    value: int
    x: float
    width: float
    index: int  # colour slot, 0..MAX_PARTS (the last is "other")


def stacked_bar(items, width=WIDTH, max_parts=MAX_PARTS):
    """``(label, value)`` items as :class:`Part` s of one bar, biggest first; items of
    value 0 are left out, those beyond ``max_parts - 1`` folded into ``other``."""
    items = sorted(((label, value) for label, value in items if value > 0),
                   key=lambda item: -item[1])
    if len(items) > max_parts:
        rest = sum(value for _label, value in items[max_parts - 1:])
        items = items[:max_parts - 1] + [
            (f"{len(items) - max_parts + 1} others", rest)]
    total = sum(value for _label, value in items)
    parts, x = [], 0.0
    for index, (label, value) in enumerate(items):
        span = width * value / total
        parts.append(Part(label, value, x, span, index))
        x += span
    return tuple(parts)


def page_strip(row, width=WIDTH):
    """The :class:`Segment` s of a diff's VMA row (``diff_memory.VmaDiff``) on a linear
    axis over both sides' extents: ``added`` where only NEW maps, ``removed`` where only
    OLD does, ``changed`` over its changed page ranges, ``mapped`` under all."""
    old, new = row.old, row.new
    views = [view for view in (old, new) if view is not None]
    low = min(view.start for view in views)
    high = max(view.end for view in views)
    scale = width / max(high - low, PAGE_SIZE)

    def segment(start, end, css):
        return Segment((start - low) * scale, max((end - start) * scale, MIN_MARK), css)

    found = [segment(low, high, "mapped")]
    if old is None or new is None:
        found.append(segment(low, high, "added" if old is None else "removed"))
        return tuple(found)
    for view, other, css in ((new, old, "added"), (old, new, "removed")):
        if view.start < other.start:
            found.append(segment(view.start, min(view.end, other.start), css))
        if view.end > other.end:
            found.append(segment(max(view.start, other.end), view.end, css))
    found += [segment(start, end, "changed") for start, end in row.changed_ranges]
    return tuple(found)
