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
leaked = [p for p in sys.path if p.rstrip('/').endswith(('dist-packages', 'site-packages'))
          and p.startswith('/usr/')]
try:
    import apt  # a Debian module that lives only in the system dist-packages
    apt_visible = True
except ImportError:
    apt_visible = False
generated = [m for m in sys.modules if m.endswith('_pb2') and '.' not in m
             and m != 'descriptor_pb2']
twins = [m for m in generated if sys.modules[m] is not sys.modules.get('pycriu.images.' + m)]
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
    and the finder is gone once pycriu is loaded."""
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
