"""``pagemap-<pid>.img`` and ``pagemap-shmem-<shmid>.img``: which pages were
dumped, and how to find their data.

Rules (see docs/format.md):

- entry 0 is a ``pagemap_head`` whose ``pages_id`` names ``pages-<id>.img``;
- the page count is field 5 (``nr_pages``, uint64) since CRIU 4.2, which
  writes field 2 as 0; older CRIUs use field 2.  Field 5 is read even when the
  loaded schema predates it;
- no ``flags`` field means PE_PRESENT; ``in_parent`` (before CRIU 3.5) adds
  PE_PARENT; an explicit ``flags`` of 0 is a hole (CRIU's
  ``init_compat_pagemap_entry``).
"""

from __future__ import annotations

from typing import Any

from .errors import EntryDecodeError, StrPath
from .flags import PageFlags
from .image import Source, open_image
from .records import Pagemap, PageRun

NR_PAGES_FIELD = 5


def page_count(msg: Any, knows_nr_pages: bool) -> int:
    """The page count of a ``pagemap_entry``, from whichever field holds it.

    CRIU writes either field 5 or field 2, never a zero count, so a zero in
    field 5 (unset) means "look at field 2".
    """
    if knows_nr_pages:
        return msg.nr_pages or msg.compat_nr_pages
    from .jsonform import unknown_fields  # an older schema only: loaded then

    for number, _wire, value in unknown_fields(msg):
        if number == NR_PAGES_FIELD:
            return value
    return msg.nr_pages  # the old schema's name for field 2


_FLAGS = {value: PageFlags(value) for value in range(8)}


def run_flags(msg: Any) -> PageFlags:
    """The effective :class:`PageFlags` of a ``pagemap_entry``, as CRIU computes them
    (``init_compat_pagemap_entry``): ``in_parent`` adds PE_PARENT; an entry
    without a ``flags`` field is PE_PRESENT; an explicit 0 stays 0 (a hole)."""
    flags = msg.flags
    if msg.in_parent:
        flags |= PageFlags.PARENT
    elif not flags and not msg.HasField("flags"):
        return PageFlags.PRESENT
    return _FLAGS.get(flags) or PageFlags(flags)


def read_pagemap(path: StrPath) -> Pagemap:
    """Return the :class:`Pagemap` of the pagemap image at ``path``."""
    with open_image(path) as image:
        batches = image.message_batches()
        head = next(batches, None)
        if head is None:
            raise EntryDecodeError(path, "pagemap_head", "the image has no entry", 8, 0)
        _index, ((offset, _start, _end),), (head_msg,) = head
        source = Source(image.path, offset, 0)
        entry_class = image.message_class("pagemap_entry")
        knows = NR_PAGES_FIELD in entry_class.DESCRIPTOR.fields_by_number
        runs: list[PageRun] = []
        append = runs.append
        make = tuple.__new__  # PageRun(...) without the named tuple's extra call
        for index, _bounds, messages in batches:
            for msg in messages:  # inlined page_count, and run_flags for the usual case
                flags = msg.flags
                append(make(PageRun, (
                    msg.vaddr,
                    (msg.nr_pages or msg.compat_nr_pages) if knows else page_count(msg, False),
                    (flags and not msg.in_parent and _FLAGS.get(flags)) or run_flags(msg),
                    index,
                )))
                index += 1
    return Pagemap(head_msg.pages_id, tuple(runs), source)
