"""Property-based tests (hypothesis) for the framing and the page-address arithmetic.

Framing (decoders/framing.py): entries framed as ``u32 SIZE + MESSAGE`` come
back exactly, whatever their sizes; any prefix of a framed stream reads as the
whole entries before the cut or a TruncatedError at the cut; arbitrary bytes
never raise anything but a TruncatedError, and the three readers (frame_bounds,
count_frames, Cursor) agree; re-framing for the batch parser is lossless.

Page arithmetic (crit_plus/memory.py): for random pagemaps (unsorted,
overlapping, empty, huge entries, every flag combination) the segments of a
range partition it; page counts add up; the pages-file offset advances over
PE_PRESENT runs only; and ``read``/``stream``/``extents`` give the bytes an
independent model of CRIU's rules predicts (first listing wins, unlisted
private pages are zeros, lazy and parent pages are unavailable, data past the
end of the pages file is unavailable).

Runs are derandomized (the same examples every run) and keep no database.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crit_plus.memory import AddressSpace, Backing, PageStore, PageTable, Unavailable, \
    UnavailableError
from decoders import framing
from decoders.errors import DecodeError, TruncatedError
from decoders.flags import PAGE_SIZE, MapFlags, PageFlags, Prot, VmaStatus
from decoders.image import Image, Source
from decoders.kinds import STEMS
from decoders.records import Pagemap, PageRun, Vma
from decoders.schema import get_schema

from .command_table import bounded

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

settings.register_profile("crit-plus", derandomize=True, database=None, deadline=None,
                          max_examples=150, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("crit-plus")

_U32 = struct.Struct("<I")
P = PAGE_SIZE

entries_strategy = st.lists(st.binary(max_size=300), max_size=40)


def framed(entries):
    """``entries`` framed as CRIU frames them (no magics)."""
    return b"".join(_U32.pack(len(e)) + e for e in entries)


def boundaries(entries):
    """The offset of each entry and the end."""
    offsets, at = [], 0
    for entry in entries:
        offsets.append(at)
        at += 4 + len(entry)
    return offsets, at


def read_all(image):
    """What each framing reader makes of ``image``: (bounds or error) for each."""
    results = []
    try:
        results.append(("bounds", framing.frame_bounds(image, 0, 1 << 30)[0]))
    except TruncatedError as error:
        results.append(("error", error.entry_index, error.offset))
    try:
        results.append(("count", framing.count_frames(image, 0)))
    except TruncatedError as error:
        results.append(("error", error.entry_index, error.offset))
    cursor = framing.Cursor(image, 0)
    frames = []
    try:
        while not cursor.at_end:
            frames.append(cursor.next_frame())
        results.append(("frames", frames))
    except TruncatedError as error:
        results.append(("error", error.entry_index, error.offset))
    return results


# -- framing --------------------------------------------------------------------------------


@given(entries_strategy)
def test_framed_entries_come_back(entries):
    data = framed(entries)
    image = framing.ImageBytes.from_bytes(data)
    offsets, end = boundaries(entries)
    bounds, after = framing.frame_bounds(image, 0, 1 << 30)
    assert [b[0] for b in bounds] == offsets and after == end
    assert [data[start:stop] for _o, start, stop in bounds] == entries
    assert framing.count_frames(image, 0) == len(entries)
    assert list(framing.iter_frame_bounds(image, 0, batch=3)) == bounds
    cursor = framing.Cursor(image, 0)
    assert [cursor.next_frame().data for _ in entries] == entries and cursor.at_end


@given(entries_strategy.filter(bool), st.data())
def test_any_prefix_is_whole_entries_or_truncated_at_the_cut(entries, data):
    full = framed(entries)
    cut = data.draw(st.integers(0, len(full)))
    image = framing.ImageBytes.from_bytes(full[:cut])
    offsets, _end = boundaries(entries)
    try:
        bounds, _after = framing.frame_bounds(image, 0, 1 << 30)
    except TruncatedError as error:
        assert cut not in offsets + [len(full)]
        index = max(i for i, offset in enumerate(offsets) if offset <= cut)
        assert error.entry_index == index and error.offset == offsets[index]
        assert error.needed > error.available >= 0
        assert "truncated" in str(error) and "<input>" in str(error)
    else:
        whole = [offset for offset in offsets if offset < cut]
        assert [b[0] for b in bounds] == whole
        assert cut in offsets + [len(full)]


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_ever_truncate(data):
    image = framing.ImageBytes.from_bytes(data)
    results = read_all(image)  # nothing but TruncatedError may come out
    errors = [r for r in results if r[0] == "error"]
    assert len(errors) in (0, 3), results  # all three readers agree on whether it is whole
    assert len({index for _kind, index, _offset in errors}) <= 1, results  # and on the entry
    assert len({offset for _kind, _index, offset in errors}) <= 1, results  # and where
    if not errors:
        bounds, count, frames = (r[1] for r in results)
        assert count == len(bounds) == len(frames)
        position = 0
        for offset, start, end in bounds:
            assert offset == position and start == offset + 4 and start <= end <= len(data)
            position = end
        assert position == len(data)


@given(st.lists(st.binary(max_size=600), min_size=1, max_size=30))
def test_reframing_for_one_batch_parse_is_lossless(entries):
    image = framing.ImageBytes.from_bytes(framed(entries))
    bounds, _ = framing.frame_bounds(image, 0, 1 << 30)
    wire = framing.reframe(image, bounds)
    assert list(_length_delimited_fields(wire)) == [(1, 2, entry) for entry in entries]


def _varint_at(data, pos):
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _length_delimited_fields(data):
    """(number, wire type, value) of wire bytes holding only length-delimited fields:
    this test's own reading of what reframe writes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint_at(data, pos)
        length, pos = _varint_at(data, pos)
        yield key >> 3, key & 7, bytes(data[pos:pos + length])
        pos += length


@given(st.integers(0, 1 << 40), st.integers(-(1 << 40), 1 << 40), st.binary(max_size=64))
def test_require_never_lets_a_read_past_the_end(offset, length, data):
    image = framing.ImageBytes.from_bytes(data)
    try:
        chunk = image.take(offset, length, "probe")
    except TruncatedError as error:
        assert length < 0 or offset + length > len(data)
        assert error.available == max(len(data) - offset, 0)
    else:
        assert 0 <= length and offset + length <= len(data) and len(chunk) == length


_KINDS = sorted(set(STEMS.values()) - {"INVENTORY"})
_NAME_OF = {}
for _stem, _kind in STEMS.items():
    _NAME_OF.setdefault(_kind, f"{_stem}-1.img")


@given(st.sampled_from(_KINDS), st.lists(st.binary(max_size=120), max_size=8),
       st.binary(max_size=40))
def test_an_image_of_any_kind_with_any_entries_raises_only_decode_errors(kind, entries, tail):
    magic = get_schema().magic_by_name.get(kind)
    if magic is None:
        return
    data = _U32.pack(framing.IMG_COMMON) + _U32.pack(magic) + framed(entries) + tail
    image = Image(_NAME_OF[kind], framing.ImageBytes.from_bytes(data, _NAME_OF[kind]))
    try:
        for _ in image.json_entries(pretty=True):
            pass
        image.count()
        for _ in image.entries():
            pass
    except DecodeError as error:
        assert str(error).startswith(_NAME_OF[kind])


# -- page arithmetic ----------------------------------------------------------------------------

FLAGS = st.sampled_from([int(PageFlags.PRESENT), int(PageFlags.PARENT), int(PageFlags.LAZY),
                         0, int(PageFlags.PRESENT | PageFlags.LAZY),
                         int(PageFlags.PARENT | PageFlags.PRESENT)])
RUN = st.tuples(st.integers(0, 48), st.integers(0, 6), FLAGS)  # (page, npages, flags)
HUGE_RUN = st.tuples(st.integers(0, 48), st.sampled_from([1 << 40, (1 << 64) - 1]), FLAGS)


@pytest.fixture(scope="module")
def pages_dir(tmp_path_factory):
    """A directory for pages files: ``pages-<n>.img`` holds ``n`` pages, each page
    filled with its own index (byte 1 + index), so a page's bytes say where they came from."""
    directory = tmp_path_factory.mktemp("pages")
    for count in range(40):
        (directory / f"pages-{count}.img").write_bytes(
            b"".join(bytes([1 + i]) * P for i in range(count)))
    return directory


def table_of(directory, runs, pages_id):
    pagemap = Pagemap(pages_id, tuple(PageRun(page * P, npages, PageFlags(flags), i)
                                      for i, (page, npages, flags) in enumerate(runs)),
                      Source("pagemap-1.img", 0, 0))
    return PageTable(pagemap, str(directory), "pagemap-1.img")


def model(runs, pages_in_file):
    """page number → ("data", byte) | ("zero",) | ("none",): CRIU's rules, independently."""
    owner = {}
    offset = 0
    placed = []
    for index, (page, npages, flags) in enumerate(runs):
        placed.append((page, index, npages, flags, offset))
        if flags & int(PageFlags.PRESENT):
            offset += npages
    for page, _index, npages, flags, file_page in sorted(placed):
        for k in range(npages):
            if page + k in owner:
                continue
            if flags & int(PageFlags.PARENT) or not flags & int(PageFlags.PRESENT):
                owner[page + k] = ("none",)  # no parent/ here; lazy or no flag: not in images
            elif file_page + k < pages_in_file:
                owner[page + k] = ("data", 1 + (file_page + k) % 256)
            else:
                owner[page + k] = ("none",)
    return owner


@given(st.lists(RUN, max_size=12), st.integers(0, 40), st.integers(0, 70), st.integers(0, 40))
def test_segments_partition_any_range(pages_dir, runs, pages_id, start, length):
    table = table_of(pages_dir, runs, min(pages_id, 39))
    begin, end = start * P + 17, (start + length) * P
    position = begin
    for s, e, i in table.segments(begin, end):
        assert s == position and s < e
        if i >= 0:
            assert table.starts[i] <= s and e <= table.ends[i]
        else:
            assert all(e <= a or b <= s for a, b in zip(table.starts, table.ends))
        position = e
    assert position == max(begin, end)


@given(st.lists(st.one_of(RUN, HUGE_RUN), max_size=10), st.integers(0, 40), st.integers(0, 64))
def test_page_counts_add_up(pages_dir, runs, start, length):
    table = table_of(pages_dir, runs, 3)
    counts = table.count_pages(start * P, (start + length) * P)
    assert sum(counts.values()) == length
    assert all(value > 0 for value in counts.values())


@given(st.lists(st.one_of(RUN, HUGE_RUN), max_size=12))
def test_pages_file_offset_advances_over_present_runs_only(pages_dir, runs):
    table = table_of(pages_dir, runs, 5)
    offset = 0
    for run, (_page, npages, flags) in zip(table.runs, runs):
        if flags & int(PageFlags.PRESENT):
            assert run.file_offset == offset
            offset += npages * P
        else:
            assert run.file_offset is None
    assert table.present_bytes == offset


def _space(directory, runs, pages_in_file):
    table = table_of(directory, runs, pages_in_file)
    vma = Vma(0, 64 * P, 0, 0, Prot.READ | Prot.WRITE, MapFlags.PRIVATE | MapFlags.ANONYMOUS,
              VmaStatus.REGULAR | VmaStatus.ANON_PRIVATE, -1, Source("mm-1.img", 0, 0))
    store = PageStore(str(directory))
    return AddressSpace("pagemap-1.img", [(vma, None, Backing.zero())], table, store)


@given(st.lists(RUN, max_size=10), st.integers(0, 39), st.integers(0, 63), st.integers(1, 6))
def test_reads_follow_the_rules(pages_dir, runs, pages_in_file, first, count):
    space = _space(pages_dir, runs, pages_in_file)
    expected = model(runs, pages_in_file)
    count = min(count, 64 - first)
    want = [expected.get(first + k, ("zero",)) for k in range(count)]
    # stream: every page as the model says, in bounded pieces
    got, position = [], first * P
    for address, piece in space.stream(first * P, count * P, chunk_size=P):
        assert address == position
        if isinstance(piece, Unavailable):
            got += [("none",)] * (piece.length // P)
            position += piece.length
            continue
        assert len(piece) <= P
        got.append(("zero",) if piece == bytes(P) else ("data", piece[0]))
        assert piece == bytes([piece[0]]) * len(piece)
        position += len(piece)
    assert got == want
    # read: the same bytes, or UnavailableError when any page is unavailable
    try:
        data = space.read(first * P, count * P)
    except UnavailableError:
        assert ("none",) in want
    else:
        assert ("none",) not in want
        assert [("zero",) if data[k * P:(k + 1) * P] == bytes(P) else ("data", data[k * P])
                for k in range(count)] == want
    # extents: cover the range exactly, in order
    extents = space.extents(first * P, count * P)
    assert extents[0].vaddr == first * P
    assert sum(extent.length for extent in extents) == count * P


@given(st.lists(st.one_of(RUN, HUGE_RUN), min_size=1, max_size=6), st.integers(0, 39))
def test_streaming_present_pages_ends_whatever_the_run_sizes(pages_dir, runs, pages_in_file):
    space = _space(pages_dir, runs, pages_in_file)
    pieces = 0
    readable = 0
    with bounded(seconds=20):  # a loop over the pages of a huge run would never end
        for _address, piece in space.iter_present(chunk_size=4 * P):
            pieces += 1
            if not isinstance(piece, Unavailable):
                readable += len(piece)
    assert readable <= pages_in_file * P
    assert pieces <= 2 * len(runs) + pages_in_file  # never one piece per page of a huge run
