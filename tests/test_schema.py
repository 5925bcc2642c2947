"""Finding and loading pycriu without the rest of the system's Python path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from decoders import schema

PROBE = """
import json, sys
from decoders.schema import get_schema
s = get_schema()
s.message_class('inventory_entry')  # its module imports core_pb2 and others by bare name
s.images.load  # and the whole package, as pycriu's own callers use it
leaked = [p for p in sys.path if p.rstrip('/').endswith(('dist-packages', 'site-packages'))
          and p.startswith('/usr/')]
try:
    import apt  # a Debian module that lives only in the system dist-packages
    apt_visible = True
except ImportError:
    apt_visible = False
generated = [m for m in sys.modules if m.endswith('_pb2') and '.' not in m
             and m != 'descriptor_pb2']
twins = [m for m in generated if sys.modules[m] is not sys.modules.get('pycriu.images.' + m)
         or sys.modules[m].__spec__.name != 'pycriu.images.' + m]
print(json.dumps({"origin": s.origin, "version": s.criu_version, "path": s.package_dir,
                  "leaked": leaked, "apt_visible": apt_visible, "generated": len(generated),
                  "twins": twins, "meta_path": len(sys.meta_path)}))
"""


def _probe(**env):
    import os

    environment = dict(os.environ, **env)
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            env=environment, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _distribution_pycriu():
    return next((d for d in schema._distribution_dirs() if schema._package_dir(d)), None)


@pytest.mark.skipif(_distribution_pycriu() is None, reason="no distribution pycriu installed")
def test_distribution_pycriu_loads_alone():
    facts = _probe(CRIT_PLUS_PYCRIU="system")
    assert facts["origin"] == "distribution"
    assert facts["leaked"] == []
    assert facts["apt_visible"] is False
    assert facts["version"]
    assert facts["generated"] and facts["twins"] == []


def test_each_generated_module_runs_once():
    """protoc's modules import each other as ``opts_pb2``, pycriu's ``pb.py`` as
    ``pycriu.images.opts_pb2``: both names are one module (schema._SameModuleFinder),
    whether a message's module is loaded on first use or the whole package is, and the
    finder is on ``sys.meta_path`` only while crit-plus loads them."""
    facts = _probe()
    assert facts["generated"] > 10 and facts["twins"] == []
    assert facts["meta_path"] == _probe_meta_path()


def _probe_meta_path():
    result = subprocess.run([sys.executable, "-c", "import sys; print(len(sys.meta_path))"],
                            capture_output=True, text=True, timeout=60, check=True)
    return int(result.stdout)


def test_own_schema_is_preferred_when_present():
    own = schema._package_dir(schema.own_schema_dir())
    if own is None:
        pytest.skip("no crit-plus schema built (make schema)")
    facts = _probe()
    assert facts["origin"] == "crit-plus"
    assert facts["version"] == "4.2.1"


def test_environment_variable_points_at_a_pycriu():
    own = schema._package_dir(schema.own_schema_dir()) or _distribution_pycriu()
    facts = _probe(CRIT_PLUS_PYCRIU=str(own))
    assert facts["origin"] == "environment"
    assert facts["path"] == str(own) if own.endswith("pycriu") else True


def test_no_pycriu_gives_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv(schema.ENV_VAR, str(tmp_path))
    schema.get_schema.cache_clear()
    try:
        with pytest.raises(schema.PycriuNotFound, match="apt-get install criu"):
            schema.get_schema()
    finally:
        monkeypatch.undo()
        schema.get_schema.cache_clear()
        schema.get_schema()


def test_overlay_is_used_only_when_the_schema_lacks_the_field():
    loaded = schema.get_schema()
    entry = loaded.message_class("pagemap_entry")
    overlays = loaded.overlays_for("pagemap_entry", entry.DESCRIPTOR)
    knows = 5 in entry.DESCRIPTOR.fields_by_number
    assert (overlays == ()) == knows


def _key(number, wire):
    return _varint((number << 3) | wire)


def _varint(value):
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def test_unknown_fields_of_every_wire_type_survive_json():
    """Fields a schema does not know, of every wire type (a group with a group inside
    too), come out of unknown_fields as (number, wire type, value), go into JSON
    and back into the same bytes."""
    from decoders.jsonform import Converter, unknown_fields

    pstree = schema.get_schema().message_class("pstree_entry")
    known = pstree(pid=7, ppid=1, pgid=7, sid=7).SerializeToString()
    inner_group = _key(3, 0) + _varint(5)
    group = _key(1, 0) + _varint(300) + _key(2, 3) + inner_group + _key(2, 4)
    extra = (_key(1000, 0) + _varint(2 ** 40 + 3) + _key(1001, 1) + (7).to_bytes(8, "little")
             + _key(1002, 2) + _varint(3) + b"abc" + _key(1003, 5) + (9).to_bytes(4, "little")
             + _key(1004, 3) + group + _key(1004, 4))
    msg = pstree.FromString(known + extra)
    assert unknown_fields(msg) == ((1000, 0, 2 ** 40 + 3), (1001, 1, 7), (1002, 2, b"abc"),
                                   (1003, 5, 9), (1004, 3, group))
    converter = Converter(schema.get_schema())
    data = converter.message(msg)
    assert [item["number"] for item in data["_unknown_fields"]] == [1000, 1001, 1002, 1003, 1004]
    again = pstree()
    converter.fill(again, data)
    assert again.SerializeToString() == known + extra
