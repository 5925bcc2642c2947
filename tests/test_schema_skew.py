"""Version skew: a CRIU 4.2 checkpoint read with an older pycriu (Debian 12's 3.17.1).

Run by `make test-skew` with ``CRIT_PLUS_PYCRIU=system``.  Each case where the
old schema's crit is wrong or blind is listed here with its reason; crit-plus
must be right there (page counts) or show the field explicitly as unknown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from crit_plus.sources.logs import read_header
from decoders import read_inventory, read_pagemap, read_pstree
from decoders.image import open_image
from decoders.jsonform import UNKNOWN_KEY
from decoders.schema import get_schema, own_schema_dir, _package_dir

from .cli import run_cli
from .oracle import crit_json, is_metadata_image, ours_json
from .test_decode_oracle import fixture_images

SCHEMA = get_schema()
OLD = SCHEMA.criu_version is not None and tuple(
    int(p) for p in SCHEMA.criu_version.split(".")[:2]) < (4, 2)

pytestmark = [
    pytest.mark.skew,
    pytest.mark.skipif(not OLD, reason="run under an older pycriu: CRIT_PLUS_PYCRIU=system"),
]

#: Image kinds whose CRIU 4.2 images carry fields the 3.17 schema lacks, and why.
SKEW_KINDS = {
    "PAGEMAP": "4.2 moved the page count to field 5; 3.17 reads field 2, which 4.2 writes as 0",
    "CORE": "4.x added thread fields (cg_set per thread, creds cap_amb, rseq, xsave state)",
    "FILES": "4.x added socket and file fields (e.g. inet socket options)",
    "INVENTORY": "4.x added dump_criu_run_id and more",
    "NETNS": "4.x added network namespace fields",
    "MEMFD_INODE": "4.x added memfd inode fields",
    "CGROUP": "4.x added cgroup controller fields",
    "MM": "4.x added VMA status bits (VMA_AREA_MEMFD, ...) 3.17 cannot name",
}


def _strip_unknown(value):
    if isinstance(value, dict):
        return {k: _strip_unknown(v) for k, v in value.items() if k != UNKNOWN_KEY}
    if isinstance(value, list):
        return [_strip_unknown(v) for v in value]
    return value


def test_pagemap_page_counts_are_right_where_old_crit_reads_zero(checkpoint_dirs, facts):
    for key, directory in checkpoint_dirs.items():
        for process in facts[key]["processes"]:
            path = directory / f"pagemap-{process['pid']}.img"
            if not path.exists():
                continue
            ours = {str(k): v for k, v in read_pagemap(path).pages_by_flags().items()}
            assert ours == process["pages_by_flags"], (key, process["pid"])
            old_crit = crit_json(path)["entries"][1:]
            if key != "service-old":  # CRIU 4.2.1 dumps: old crit sees 0 pages everywhere
                assert {e["nr_pages"] for e in old_crit} == {0}


def test_every_difference_from_old_crit_is_a_listed_skew(fixture_root):
    unlisted = set()
    for path in fixture_images(fixture_root):
        ours, theirs = ours_json(path), crit_json(path)
        if ours == theirs:
            continue
        kind = ours["magic"]
        if kind not in SKEW_KINDS:
            unlisted.add(kind)
            continue
        if kind == "PAGEMAP":
            for mine, old in zip(ours["entries"][1:], theirs["entries"][1:]):
                assert mine["compat_nr_pages"] == old["nr_pages"] == 0
                assert mine["nr_pages"] > 0
        elif kind != "MM":
            assert _strip_unknown(ours) == theirs, path
    assert unlisted == set()


CURRENT_PROBE = """
import json, sys
from tests.oracle import crit_json
print(json.dumps({p: crit_json(p) for p in sys.argv[1:]}))
"""


def _current_crit(paths):
    own = _package_dir(own_schema_dir())
    if own is None:
        pytest.skip("no current schema to compare with (make schema)")
    env = dict(os.environ, CRIT_PLUS_PYCRIU=own)
    result = subprocess.run([sys.executable, "-c", CURRENT_PROBE, *map(str, paths)],
                            capture_output=True, text=True, env=env, timeout=300,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _agree(old, new, where):
    """Every value both name is equal; every field only ``new`` names is unknown in ``old``."""
    if isinstance(new, dict):
        missing = [k for k in new if k not in old]
        unknown = old.get(UNKNOWN_KEY, [])
        assert len(missing) <= len(unknown), (where, missing)
        for key in new:
            if key in old:
                _agree(old[key], new[key], f"{where}.{key}")
    elif isinstance(new, list):
        assert len(old) == len(new), where
        for index, (a, b) in enumerate(zip(old, new)):
            _agree(a, b, f"{where}[{index}]")
    else:
        assert old == new, where


def test_old_schema_shows_every_new_field_right_or_unknown(fixture_root):
    paths = [p for p in fixture_images(fixture_root) if "service-a" in str(p) or "/s1/" in str(p)]
    current = _current_crit(paths)
    for path in paths:
        _agree(ours_json(path), current[str(path)], path.name)


def test_decode_tells_stderr_about_unknown_fields(service_a):
    result = run_cli("decode", "-i", service_a / "core-12525.img")
    assert result.returncode == 0
    assert f"unknown to the CRIU {SCHEMA.criu_version} schema" in result.stderr
    assert "make schema" in result.stderr
    assert UNKNOWN_KEY in result.stdout


def test_process_tree_reads_the_same(service_a):
    assert [e.pid for e in read_pstree(service_a / "pstree.img")] == [12525, 12528]
    with open_image(service_a / "inventory.img") as image:
        assert image.magic_name == "INVENTORY"


def test_inventory_run_id_under_the_old_schema(checkpoint_dirs):
    """3.17's schema does not know ``dump_criu_run_id``: it is read from the unknown
    field, and equals the run id the dump's own log records."""
    assert "dump_criu_run_id" not in get_schema().message_class(
        "inventory_entry").DESCRIPTOR.fields_by_name
    checked = 0
    for directory in checkpoint_dirs.values():
        header = read_header(directory / "dump.log")
        if header.run_id:
            assert read_inventory(directory / "inventory.img").run_id == header.run_id
            checked += 1
    assert checked


def test_round_trip_under_the_old_schema(fixture_root):
    from decoders.encode import encode_image

    for path in fixture_images(fixture_root):
        if is_metadata_image(path):
            assert encode_image(ours_json(path, pretty=True)) == path.read_bytes(), path


def test_version_warns_that_the_checkpoint_is_newer(service_a):
    result = run_cli("version", service_a, "--format", "json")
    facts = json.loads(result.stdout)
    assert facts["schema_criu_version"] == SCHEMA.criu_version
    assert facts["newer_than_schema"] is True
    assert facts["unknown_fields"]["creds_entry.19"] > 0  # cap_amb, added after 3.17
    assert "newer than the CRIU" in result.stderr and "make schema" in result.stderr


def test_version_is_quiet_for_a_checkpoint_the_old_schema_reads(service_old):
    facts = json.loads(run_cli("version", service_old, "--format", "json").stdout)
    assert "pagemap_entry.5" not in facts["unknown_fields"]  # CRIU 4.1.1: field 2 holds counts
