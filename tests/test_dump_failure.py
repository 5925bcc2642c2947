"""The rule of crit_plus/analysis/dump_failure.py on copies of a complete fixture.

A real failed dump is tests/test_live_dump_failure.py; here service-a's images (complete,
with ``inventory.img``) get a ``dump.log`` that ends one way or another: CRIU writes
``inventory.img`` last, so a dump that failed after it is a warning (the images may be
whole) and marks nothing as its consequence, and a verbose log cut short beside a
complete checkpoint is a cut copy of the log, not a failed dump."""

from __future__ import annotations

import json

from tests.cli import run_cli
from tests.damage import clone, replace, workspace  # noqa: F401 (fixture)

_START = "(00.000010) Dumping processes (pid: 12525)\n"
_FAILED = "(00.090935) Error (criu/cr-dump.c:1975): Dumping FAILED.\n"


def _with_log(service_a, workspace, name, text):  # noqa: F811 (the fixture imported above)
    directory = clone(service_a, workspace / name)
    replace(directory / "dump.log", text.encode())
    return directory


def test_a_dump_that_failed_after_its_inventory_is_a_warning(service_a, workspace):  # noqa: F811
    directory = _with_log(service_a, workspace, "late", _START + _FAILED)
    report = json.loads(run_cli("validate", directory, "--format", "json").stdout)
    found = [f for f in report["findings"] if f["code"] == "dump-failed"]
    assert [f["severity"] for f in found] == ["warning"]
    assert "may be whole" in found[0]["message"] and "Dumping FAILED." in found[0]["message"]
    assert all(f["consequence_of"] is None for f in report["findings"])
    assert report["verdict"] == "risky"
    listed = json.loads(run_cli("list", directory.parent, "--format", "json").stdout)
    assert [row["status"] for row in listed] == ["DUMP FAILED"]


def test_a_cut_log_beside_a_complete_checkpoint_is_not_a_failed_dump(service_a,
                                                                       workspace):  # noqa: F811
    directory = _with_log(service_a, workspace, "cut", _START)
    report = json.loads(run_cli("validate", directory, "--format", "json").stdout)
    assert "dump-failed" not in {f["code"] for f in report["findings"]}
    assert report["verdict"] == "ok"
    assert "dump-failed" not in run_cli("summarize", directory).stdout
