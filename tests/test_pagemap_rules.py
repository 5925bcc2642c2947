"""Pagemap flag and page-count rules, on pagemaps made through the real framing."""

from __future__ import annotations

import pytest

from decoders import PageFlags, read_pagemap
from decoders.encode import encode_image
from decoders.schema import get_schema

KNOWS_FIELD_5 = 5 in get_schema().message_class("pagemap_entry").DESCRIPTOR.fields_by_number


def _pagemap(tmp_path, entries):
    path = tmp_path / "pagemap-1.img"
    path.write_bytes(encode_image({"magic": "PAGEMAP", "entries": [{"pages_id": 3}] + entries}))
    return read_pagemap(path)


def _entry(vaddr, count, **extra):
    if KNOWS_FIELD_5:
        return dict(vaddr=vaddr, compat_nr_pages=0, nr_pages=count, **extra)
    return dict(vaddr=vaddr, nr_pages=count, **extra)


def test_flags_as_criu_computes_them(tmp_path):
    pagemap = _pagemap(tmp_path, [
        _entry(0x1000, 1),                          # no flags field: present
        _entry(0x2000, 1, flags=0),                 # explicit 0: a hole
        _entry(0x3000, 1, in_parent=True),          # pre-3.5 parent
        _entry(0x4000, 1, flags=4, in_parent=True),  # in_parent adds PE_PARENT
        _entry(0x5000, 1, flags=6),                 # lazy + present
        _entry(0x6000, 1, flags=1),                 # parent
    ])
    assert [run.flags for run in pagemap.runs] == [
        PageFlags.PRESENT, PageFlags.NONE, PageFlags.PARENT,
        PageFlags.PRESENT | PageFlags.PARENT, PageFlags.LAZY | PageFlags.PRESENT,
        PageFlags.PARENT,
    ]
    assert pagemap.pages_id == 3
    assert pagemap.present_pages == 3


@pytest.mark.skipif(not KNOWS_FIELD_5, reason="needs a schema with field 5")
def test_page_count_from_field_5_else_field_2(tmp_path):
    pagemap = _pagemap(tmp_path, [
        dict(vaddr=0x1000, compat_nr_pages=0, nr_pages=70000, flags=4),  # CRIU 4.2
        dict(vaddr=0x2000, compat_nr_pages=9, flags=4),                  # before 4.2
    ])
    assert [run.nr_pages for run in pagemap.runs] == [70000, 9]
