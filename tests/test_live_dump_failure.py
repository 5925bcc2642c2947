"""validate, summarize and list on the images a real failed CRIU dump left behind.

CRIU 4.2.1 dumps a process (tests/workloads/holder.py) connected to a unix stream
socket whose listener is this test: ``External socket is used ... Dumping FAILED.``,
and about a dozen images without ``inventory.img``.  Every command must say the dump
failed (``explain``'s decisive line and cause, the one reading), not that the images
were damaged in a copy."""

from __future__ import annotations

import json
import time

import pytest

from crit_plus.analysis.explain import explain_criu_log
from tests.cli import run_cli
from tests.test_live_explain import Holder, _criu, _dump, outside_unix_peer

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def failed_dump(criu, tmp_path_factory):
    """``(images directory, dump.log)`` of a real dump that failed, images left behind."""
    with outside_unix_peer(tmp_path_factory.mktemp("dumpfail")) as holder:
        status, log = _dump(criu, holder, "d6")
    images = log.parent
    assert status != 0
    assert not (images / "inventory.img").exists()
    assert len([p for p in images.iterdir() if p.suffix == ".img"]) > 3  # partial images
    return images, log


def test_validate_says_the_dump_failed(failed_dump):
    images, log = failed_dump
    decisive = explain_criu_log(log).decisive
    result = run_cli("validate", images, "--format", "json")
    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] == "fail"
    first = report["findings"][0]
    assert (first["code"], first["severity"], first["where"]) == ("dump-failed", "error",
                                                                 "dump.log")
    assert decisive.text.strip() in first["message"]  # explain's decisive line
    assert decisive.failure.cause in first["message"]
    assert "partial" in first["message"]
    assert f"crit-plus explain {images}" in first["fix"]
    rest = report["findings"][1:]
    assert {"missing-image", "unresolved-fd"} <= {f["code"] for f in rest}
    for finding in rest:
        if finding["stage"] == "integrity":
            assert finding["consequence_of"] == "dump-failed", finding
            assert "Copy" not in finding["fix"], finding
    text = run_cli("validate", images).stdout
    assert "Copy inventory.img" not in text and "Copy the checkpoint again" not in text


def test_summarize_says_the_dump_failed(failed_dump):
    images, _log = failed_dump
    result = run_cli("summarize", images)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "None" not in text
    assert "image version ?" in text
    assert "(inventory.img)" not in text  # no claim the missing inventory named the run
    assert "no inventory.img records one" in text
    assert "error   dump-failed: the CRIU dump that wrote these images failed" in text


def test_list_shows_a_failed_dump_not_damage(failed_dump):
    images, _log = failed_dump
    result = run_cli("list", images.parent)
    assert result.returncode == 0, result.stderr
    assert "DUMP FAILED" in result.stdout and "DAMAGED" not in result.stdout
    assert f"crit-plus explain {images}" in result.stdout
    rows = json.loads(run_cli("list", images.parent, "--format", "json").stdout)
    assert [row["status"] for row in rows] == ["DUMP FAILED"]
    assert rows[0]["damaged"].startswith("dump failed: ")


def test_a_failed_retry_into_an_earlier_dumps_directory(criu, tmp_path):
    """A good dump, then a dump of another process into the same directory that fails:
    CRIU writes inventory.img last, so the earlier run's inventory stays beside the
    failed run's pstree and cores.  validate and list say the dump failed (not "an fd
    is not in files.img", copy again), and that the directory mixes the two runs."""
    plain = Holder("plain", tmp_path / "plain")
    try:
        first, images_log = _dump(criu, plain, "mix")
    finally:
        plain.kill()
    assert first == 0, explain_criu_log(images_log).decisive
    images = images_log.parent
    time.sleep(0.05)  # the failed run's log ends after the earlier inventory.img
    with outside_unix_peer(tmp_path) as holder:
        status = _criu(criu, "dump", "-t", str(holder.pid), "-D", str(images), log="dump.log")
    assert status != 0
    report = json.loads(run_cli("validate", images, "--format", "json").stdout)
    first_finding = report["findings"][0]
    assert first_finding["code"] == "dump-failed", report["findings"]
    assert "mixes the two" in first_finding["message"]
    for finding in report["findings"][1:]:
        if finding["stage"] == "integrity":
            assert finding["consequence_of"] == "dump-failed", finding
    rows = json.loads(run_cli("list", images.parent, "--format", "json").stdout)
    assert [row["status"] for row in rows] == ["DUMP FAILED"]
