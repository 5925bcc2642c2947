"""Decoding speed and memory: crit-plus against CRIU's pycriu in the same run.

Run with `make bench`; results go into docs/performance.md.  Targets (issue 2):
JSON of a 200,000-entry pagemap at least 3x faster than pycriu with lower peak
memory; entry iteration without JSON at least 10x faster.  No timing asserts:
the numbers are measured and reported.
"""

from __future__ import annotations

import io
import json
import struct
import tracemalloc

import pytest

pytest.importorskip("pytest_benchmark")

from crit_plus.commands.decode import write_image_json  # noqa: E402
from decoders import read_pagemap  # noqa: E402
from decoders.framing import IMG_COMMON  # noqa: E402
from decoders.image import open_image  # noqa: E402
from decoders.schema import get_schema  # noqa: E402

from ..oracle import is_metadata_image  # noqa: E402
from ..test_decode_oracle import fixture_images  # noqa: E402

pytestmark = pytest.mark.benchmark
ENTRIES = 200_000


class _Sink(io.TextIOBase):
    """Discards text: measures decoding, not the terminal."""

    def write(self, text):
        return len(text)


@pytest.fixture(scope="module")
def big_pagemap(tmp_path_factory):
    """A pagemap of 200,000 entries in CRIU 4.2's layout (page count in field 5)."""
    schema = get_schema()
    entry_cls = schema.message_class("pagemap_entry")
    head = schema.message_class("pagemap_head")(pages_id=1).SerializeToString()
    out = bytearray(struct.pack("<II", IMG_COMMON, schema.magic_by_name["PAGEMAP"]))
    out += struct.pack("<I", len(head)) + head
    for i in range(ENTRIES):
        msg = entry_cls(vaddr=0x400000 + i * 0x3000, compat_nr_pages=0, flags=4, nr_pages=2)
        body = msg.SerializeToString()
        out += struct.pack("<I", len(body)) + body
    path = tmp_path_factory.mktemp("bench") / "pagemap-1.img"
    path.write_bytes(bytes(out))
    return path


def _pycriu_json(path, pretty=False):
    with open(path, "rb") as handle:
        json.dump(get_schema().images.load(handle, pretty), _Sink(), indent=4 if pretty else None)


def _ours_json(path, pretty=False):
    with open_image(path) as image:
        write_image_json(image, _Sink(), pretty=pretty)


def _peak(func, *args):
    tracemalloc.start()
    func(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.benchmark(group="decode all fixture images to JSON")
@pytest.mark.parametrize("tool", ["crit-plus", "pycriu"])
def test_decode_fixture_images(benchmark, fixture_root, tool):
    paths = [p for p in fixture_images(fixture_root) if is_metadata_image(p)]
    decode = _ours_json if tool == "crit-plus" else _pycriu_json
    benchmark.extra_info["images"] = len(paths)
    benchmark.pedantic(lambda: [decode(p) for p in paths], rounds=3, iterations=1)


@pytest.mark.benchmark(group="200k-entry pagemap to JSON")
@pytest.mark.parametrize("pretty", [False, True], ids=["plain", "pretty"])
@pytest.mark.parametrize("tool", ["crit-plus", "pycriu"])
def test_decode_big_pagemap(benchmark, big_pagemap, tool, pretty):
    decode = _ours_json if tool == "crit-plus" else _pycriu_json
    benchmark.extra_info["peak_bytes"] = _peak(decode, big_pagemap, pretty)
    benchmark.pedantic(decode, args=(big_pagemap, pretty), rounds=3, iterations=1)


@pytest.mark.benchmark(group="200k-entry pagemap, entries without JSON")
@pytest.mark.parametrize("tool", ["crit-plus-entries", "crit-plus-records", "pycriu"])
def test_iterate_big_pagemap(benchmark, big_pagemap, tool):
    """Entry iteration: crit-plus's lazy entries (protobuf messages, ``iter_messages``), its
    typed records (``read_pagemap``: PageRun tuples with the flag and page-count rules
    applied), and pycriu's ``images.load`` (its only way to the entries: dictionaries)."""
    if tool == "crit-plus-entries":
        def run():
            with open_image(big_pagemap) as image:
                return sum(1 for _ in image.iter_messages()) - 1
    elif tool == "crit-plus-records":
        def run():
            return len(read_pagemap(big_pagemap).runs)
    else:
        def run():
            with open(big_pagemap, "rb") as handle:
                return len(get_schema().images.load(handle)["entries"]) - 1
    benchmark.extra_info["peak_bytes"] = _peak(run)
    assert benchmark.pedantic(run, rounds=5, iterations=1) == ENTRIES
