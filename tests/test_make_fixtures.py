"""fixtures/make-fixtures: its facts are FACTS.json's, and it really regenerates the fixtures.

The facts half runs everywhere: make-fixtures computes facts with pycriu alone,
and on every shipped fixture they must equal ``fixtures/FACTS.json`` (computed
independently when the fixtures were made).  The live half runs the script with
the real CRIU (marker ``live``) and reads what it made with crit-plus.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import tarfile

import pytest

import crit_plus
from tests.conftest import ROOT
from tests.workloads import harness


def _load_script():
    loader = importlib.machinery.SourceFileLoader("make_fixtures",
                                                  str(ROOT / "fixtures" / "make-fixtures"))
    spec = importlib.util.spec_from_loader("make_fixtures", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


make_fixtures = _load_script()


def test_facts_of_every_fixture_equal_facts_json(checkpoint_dirs, facts):
    for key, directory in checkpoint_dirs.items():
        assert make_fixtures.facts_of(directory) == facts[key], key


@pytest.mark.live
def test_make_fixtures_regenerates_restorable_service_dumps(tmp_path):
    criu, reason = harness.find_criu()
    if criu is None:
        if os.environ.get("CRIT_PLUS_LIVE") == "required":
            pytest.fail(f"live tests are required here but {reason}")
        pytest.skip(reason)
    out = tmp_path / "out"
    assert make_fixtures.main(["--out", str(out), "--workdir", str(tmp_path / "app")]) == 0
    facts = json.loads((out / "FACTS.json").read_text())
    assert sorted(facts) == list(make_fixtures.NAMES)
    counts = []
    for name in make_fixtures.NAMES:
        with tarfile.open(out / f"{name}.tar.gz") as archive:
            archive.extractall(tmp_path / "unpacked", filter="data")
        checkpoint = crit_plus.open_checkpoint(tmp_path / "unpacked" / name)
        assert [p.pid for p in checkpoint.processes] == [p["pid"] for p in facts[name]["processes"]]
        assert {p.comm for p in checkpoint.processes} == {"python3"}
        counts.append(len(checkpoint.processes))
    assert counts == [2, 3, 4]   # stage 0: main + worker; each stage forks one more
