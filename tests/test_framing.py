"""Framing and error reporting on real images and damaged copies of them."""

from __future__ import annotations

import shutil
import tracemalloc

import pytest

from decoders import framing
from decoders.errors import (
    BadMagicError,
    DecodeError,
    EntryDecodeError,
    MissingImageError,
    TruncatedError,
    UnreadableImageError,
)
from decoders.image import open_image

from .conftest import all_image_files
from .oracle import is_metadata_image


def _copy(src, tmp_path, name=None, data=None):
    target = tmp_path / (name or src.name)
    if data is None:
        shutil.copyfile(src, target)
    else:
        target.write_bytes(data)
    return target


def _frame_offsets(path):
    with open_image(path) as image:
        return [offset for offset, _start, _end in
                framing.iter_frame_bounds(image._bytes, image._entries_offset)]


def test_inventory_has_no_head_magic(service_a):
    with open_image(service_a / "inventory.img") as image:
        assert image.head_magic is None
        assert image.magic_name == "INVENTORY"


def test_stats_dump_has_the_service_head_magic(service_a):
    with open_image(service_a / "stats-dump") as image:
        assert image.head_magic == framing.IMG_SERVICE
        assert image.magic_name == "STATS"


def test_common_head_magic(service_a):
    with open_image(service_a / "core-12525.img") as image:
        assert image.head_magic == framing.IMG_COMMON


def test_magic_must_match_the_file_name(service_a, tmp_path):
    renamed = _copy(service_a / "core-12525.img", tmp_path, "mm-12525.img")
    with pytest.raises(BadMagicError) as caught:
        open_image(renamed)
    assert "CORE" in str(caught.value) and "MM" in str(caught.value)
    assert str(caught.value).startswith("mm-12525.img: at offset 0x4:")
    with open_image(renamed, check_name=False) as image:
        assert image.magic_name == "CORE"


def test_unknown_magic(tmp_path):
    path = _copy(None, tmp_path, "core-1.img", data=b"\x19\x43\x56\x54\xde\xad\xbe\xef" + b"\0" * 8)
    with pytest.raises(BadMagicError, match="unknown magic 0xefbeadde"):
        open_image(path)


def test_empty_file_is_truncated(tmp_path):
    path = _copy(None, tmp_path, "core-1.img", data=b"")
    with pytest.raises(TruncatedError, match=r"core-1.img: at offset 0x0: truncated magic"):
        open_image(path)


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(MissingImageError) as caught:
        open_image(tmp_path / "core-9.img")
    assert isinstance(caught.value, FileNotFoundError)
    (tmp_path / "mm-1.img").mkdir()
    with pytest.raises(UnreadableImageError):
        open_image(tmp_path / "mm-1.img")


def test_truncation_at_every_entry_boundary_names_entry_and_offset(service_a, tmp_path):
    source = service_a / "pagemap-12525.img"
    data = source.read_bytes()
    offsets = _frame_offsets(source)
    assert len(offsets) > 10
    for index, offset in enumerate(offsets):
        for cut in (offset + 2, offset + 5):  # inside the size prefix, inside the message
            path = _copy(None, tmp_path, "pagemap-12525.img", data=data[:cut])
            with open_image(path) as image, pytest.raises(TruncatedError) as caught:
                list(image.entries())
            error = caught.value
            assert error.entry_index == index
            assert error.offset in (offset, offset + 4)
            assert f"entry {index} at offset {error.offset:#x}" in str(error)
            assert isinstance(error, EOFError) and isinstance(error, DecodeError)


def test_huge_length_is_an_error_not_an_allocation(service_a, tmp_path):
    data = bytearray((service_a / "mm-12525.img").read_bytes())
    data[8:12] = (0xFFFFFFF0).to_bytes(4, "little")
    path = _copy(None, tmp_path, "mm-12525.img", data=bytes(data))
    tracemalloc.start()
    with open_image(path) as image, pytest.raises(TruncatedError) as caught:
        list(image.entries())
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert caught.value.needed == 0xFFFFFFF0
    assert peak < 1 << 20


def test_payload_longer_than_file(service_a, tmp_path):
    data = (service_a / "tcp-stream-2f479.img").read_bytes()  # 14 bytes queued
    path = _copy(None, tmp_path, "tcp-stream-2f479.img", data=data[:-1])
    with open_image(path) as image, pytest.raises(
            TruncatedError, match="TCP input queue: needs 14 bytes, 13 left"):
        list(image.entries())


def test_corrupt_message_names_the_entry(service_a, tmp_path):
    data = bytearray((service_a / "pstree.img").read_bytes())
    data[12] = 0xFF  # first byte of entry 0's message: an invalid field key
    data[13] = 0xFF
    path = _copy(None, tmp_path, "pstree.img", data=bytes(data))
    with open_image(path) as image, pytest.raises(EntryDecodeError) as caught:
        list(image.entries())
    assert caught.value.entry_index == 0
    assert "pstree.img: entry 0 at offset 0x8: cannot decode pstree_entry" in str(caught.value)


def test_count_equals_entries_for_every_image(service_a):
    for path in all_image_files(service_a):
        if not is_metadata_image(path):
            continue
        with open_image(path) as image:
            assert image.count() == sum(1 for _ in image.entries()), path


def test_count_does_not_parse_messages(service_a, monkeypatch):
    with open_image(service_a / "pagemap-12525.img") as image:
        expected = sum(1 for _ in image.entries())
        monkeypatch.setattr(type(image), "parse", lambda *a: pytest.fail("parsed"))
        monkeypatch.setattr(type(image), "iter_messages", lambda *a: pytest.fail("parsed"))
        assert image.count() == expected


def test_entries_are_lazy(service_a, tmp_path):
    data = (service_a / "pagemap-12525.img").read_bytes()
    offsets = _frame_offsets(service_a / "pagemap-12525.img")
    path = _copy(None, tmp_path, "pagemap-12525.img", data=data[: offsets[5] + 2])
    with open_image(path) as image:
        entries = image.entries()
        first = [next(entries) for _ in range(5)]  # no error until entry 5 is reached
        assert [e.index for e in first] == [0, 1, 2, 3, 4]
        with pytest.raises(TruncatedError):
            next(entries)


@pytest.mark.parametrize("name", ["pages-1.img", "route-10.img", "tmpfs-dev-72.tar.gz.img",
                                  "iptables-10.img", "ifaddr-10.img"])
def test_raw_images_are_reported_not_errors(checkpoint_dirs, name):
    directory = next(d for d in checkpoint_dirs.values() if (d / name).exists())
    with open_image(directory / name) as image:
        assert image.is_raw
        info = image.raw_info()
    assert info["magic"] == "RAW" and info["size"] == (directory / name).stat().st_size


def test_sources_point_at_the_entry(service_a):
    with open_image(service_a / "fdinfo-2.img") as image:
        entries = list(image.entries())
    assert [e.source.offset for e in entries] == _frame_offsets(service_a / "fdinfo-2.img")
    assert str(entries[1].source).startswith("fdinfo-2.img: entry 1 at offset 0x")
