"""Which VMA of one side is which VMA of the other, and what changed in it.

Addresses are compared as they are: CRIU restores every VMA at its address, so
one process's address is one place on both sides.  VMAs are matched so (see
docs/commands/diff.md)::

    same | protection | changed ::= one VMA at the same range on both sides
                                    (protection: only prot differs; changed:
                                    flags, kind, file or file offset differ)
    grown | shrunk | moved      ::= overlapping VMAs of one identity (the file
                                    name, or the kind of anonymous memory) with
                                    other bounds; moved: same size elsewhere
    replaced                    ::= overlapping VMAs of different identities
    split                       ::= a NEW VMA over part of an OLD one already
                                    matched (mprotect or munmap of a part)
    merged                      ::= an OLD VMA now inside a NEW one already matched
    added | removed             ::= no overlap on the other side
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from .diff_processes import FieldChange

#: Kinds of VMAs whose file offset (``pgoff``) says which bytes are mapped.
_OFFSET_KINDS = ("file", "file-shared", "memfd", "shared", "sysvipc")


@dataclass(frozen=True, slots=True)
class VmaView:
    """One VMA as one side shows it: range, protection, mmap flags, kind, name, pgoff."""

    start: int
    end: int
    prot: object
    flags: object
    kind: str
    name: str | None
    pgoff: int

    @classmethod
    def of(cls, mapping):
        """The view of a :class:`crit_plus.memory.Mapping`."""
        return cls(mapping.start, mapping.end, mapping.prot, mapping.flags, mapping.kind,
                   mapping.name, mapping.pgoff)

    @property
    def size(self):
        """Bytes mapped."""
        return self.end - self.start

    @property
    def identity(self):
        """What stays the same while a VMA grows or shrinks: its file or its kind."""
        return (self.kind, self.name)


def _fields(old, new):
    changes = []
    for name in ("prot", "flags", "kind", "name"):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            changes.append(FieldChange(name, a, b))
    if old.kind in _OFFSET_KINDS and new.kind in _OFFSET_KINDS:
        moved_by = (new.start - old.start)  # a file VMA grown down moves its offset with it
        if old.pgoff + moved_by != new.pgoff:
            changes.append(FieldChange("pgoff", old.pgoff, new.pgoff))
    return tuple(changes)


def _resized(old, new):
    if new.size > old.size:
        return "grown"
    if new.size < old.size:
        return "shrunk"
    return "moved"


def _overlapping(view, others, starts):
    """Indexes of ``others`` (sorted by start, ``starts`` their starts) that overlap ``view``."""
    k = max(0, bisect_left(starts, view.start) - 1)
    found = []
    while k < len(others) and others[k].start < view.end:
        if others[k].end > view.start:
            found.append(k)
        k += 1
    return found


def match_vmas(olds, news):
    """Match OLD and NEW :class:`VmaView` s (each sorted by start).

    Returns ``(rows, old_row, new_row)``: rows as ``(change, old, new, fields)``
    (see the module docstring) and, for each OLD and NEW VMA, the index of the
    row its pages are counted in.  A ``split`` row shows the OLD VMA it came
    from and a ``merged`` row the NEW VMA it went into; those VMAs keep their
    own rows.
    """
    rows = []
    old_row = [None] * len(olds)
    new_row = [None] * len(news)

    def add(change, i, j, own_old=True, own_new=True):
        old = olds[i] if i is not None else None
        new = news[j] if j is not None else None
        fields = _fields(old, new) if old is not None and new is not None else ()
        if change is None:
            change = "same" if not fields else \
                "protection" if [f.field for f in fields] == ["prot"] else "changed"
        rows.append((change, old, new, fields))
        if i is not None and own_old:
            old_row[i] = len(rows) - 1
        if j is not None and own_new:
            new_row[j] = len(rows) - 1

    by_range = {(view.start, view.end): j for j, view in enumerate(news)}
    for i, old in enumerate(olds):
        j = by_range.get((old.start, old.end))
        if j is not None and new_row[j] is None:
            add(None, i, j)
    new_starts = [view.start for view in news]
    old_starts = [view.start for view in olds]
    for same_identity in (True, False):
        for i, old in enumerate(olds):
            if old_row[i] is not None:
                continue
            for j in _overlapping(old, news, new_starts):
                if new_row[j] is None and (news[j].identity == old.identity) == same_identity:
                    add(_resized(old, news[j]) if same_identity else "replaced", i, j)
                    break
    for j, new in enumerate(news):
        if new_row[j] is None:
            over = _overlapping(new, olds, old_starts)
            add("split" if over else "added", over[0] if over else None, j, own_old=False)
    for i, old in enumerate(olds):
        if old_row[i] is None:
            over = _overlapping(old, news, new_starts)
            add("merged" if over else "removed", i, over[0] if over else None, own_new=False)
    return rows, old_row, new_row
