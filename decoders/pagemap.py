"""``pagemap-<pid>.img`` and ``pagemap-shmem-<shmid>.img``: which pages were
dumped, and how to find their data.

Rules (see docs/format.md):

- entry 0 is a ``pagemap_head`` whose ``pages_id`` names ``pages-<id>.img``;
- the page count is field 5 (``nr_pages``, uint64) since CRIU 4.2, which
  writes field 2 as 0; older CRIUs use field 2.  Field 5 is read even when the
  loaded schema predates it;
- no flags at all means PE_PRESENT; ``in_parent`` (before CRIU 3.5) means
  PE_PARENT.
"""

from __future__ import annotations

from .errors import EntryDecodeError
from .flags import PageFlags
from .image import Source, open_image
from .jsonform import unknown_fields
from .records import Pagemap, PageRun

NR_PAGES_FIELD = 5


def page_count(msg, knows_nr_pages):
    """The page count of a ``pagemap_entry``, from whichever field holds it."""
    if knows_nr_pages:
        if msg.HasField("nr_pages"):
            return msg.nr_pages
        return msg.compat_nr_pages
    for number, _wire, value in unknown_fields(msg):
        if number == NR_PAGES_FIELD:
            return value
    return msg.nr_pages  # the old schema's name for field 2


def run_flags(msg):
    """The effective :class:`PageFlags` of a ``pagemap_entry``."""
    if msg.HasField("flags") and msg.flags:
        return PageFlags(msg.flags)
    if msg.in_parent:
        return PageFlags.PARENT
    return PageFlags.PRESENT


def read_pagemap(path):
    """Return the :class:`Pagemap` of the pagemap image at ``path``."""
    with open_image(path) as image:
        messages = image.iter_messages()
        head = next(messages, None)
        if head is None:
            raise EntryDecodeError(path, "pagemap_head", "the image has no entry", 8, 0)
        index, offset, head_msg = head
        source = Source(image.path, offset, index)
        runs = []
        knows = None
        for index, _offset, msg in messages:
            if knows is None:
                fields = msg.DESCRIPTOR.fields_by_number
                knows = NR_PAGES_FIELD in fields
            runs.append(PageRun(msg.vaddr, page_count(msg, knows), run_flags(msg), index))
    return Pagemap(head_msg.pages_id, tuple(runs), source)
