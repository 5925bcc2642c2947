"""Hostile values in what a manager writes beside the images (``backup.yaml``, a Podman
archive's ``config.dump``) and in ``files.img``: each is a finding or one clear line,
never an internal error (exit 70).

Each hostile input is built here: an LXD tree copied from the real lxd-web fixture with
its backup.yaml changed, a Podman archive of service-a with its config.dump changed,
service-a with a files.img re-encoded by ``crit-plus encode``.
"""

from __future__ import annotations

import json
import shutil

import pytest

from crit_plus.sources import resolve
from crit_plus.sources.backup import (
    MAX_BACKUP_BYTES,
    BackupError,
    load_backup,
    snapshot_record,
)
from crit_plus.sources.model import parse_timestamp

from .cli import run_cli
from .test_sources import CONFIG, _write_archive, scratch  # noqa: F401 (fixture)

POOL = "var/lib/lxd/storage-pools/default"
INTERNAL = 70


def _web_copy(fixture_root, tmp_path):
    """A writable copy of the lxd-web tree → (root, instance dir, snapshot dir)."""
    root = tmp_path / "lxd-web"
    shutil.copytree(fixture_root / "lxd-web", root, symlinks=True)
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)
    return (root, root / POOL / "containers/web",
            root / POOL / "containers-snapshots/web/before")


def _edit_backup(instance_dir, edit):
    path = instance_dir / "backup.yaml"
    path.write_text(edit(path.read_text()))
    return path


def _no_internal_error(*args):
    outcome = run_cli(*args)
    assert outcome.returncode != INTERNAL, outcome.stderr
    assert "internal error" not in outcome.stderr and "Traceback" not in outcome.stderr
    return outcome


# -- backup.yaml -----------------------------------------------------------------------------

@pytest.mark.parametrize("number", ["9" * 5000, ":".join(["59"] * 5000), "0x" + "f" * 5000])
def test_integers_wider_than_64_bits_are_kept_as_text(fixture_root, tmp_path, number):
    """5,000 decimal digits fail Python's int-str limit when parsed; a base-60 or hex one
    parses, and fails wherever it is printed: each is kept as the text LXD would not write."""
    _root, instance, snapshot = _web_copy(fixture_root, tmp_path)
    path = _edit_backup(instance, lambda text: text.replace(
        "status_code: 103", "status_code: " + number, 1).replace(
        "  name: web\n", f"  name: {number}\n", 1))
    record = load_backup(path)["container"]
    assert record["status_code"] == number and record["name"] == number
    assert "name-mismatch" in [f.code for f in resolve(instance).findings]
    for args in (["summarize", instance], ["summarize", "--format", "json", instance],
                 ["validate", instance], ["summarize", snapshot]):
        _no_internal_error(*args)


def test_snapshots_of_the_wrong_type_are_ignored(fixture_root, tmp_path):
    _root, instance, snapshot = _web_copy(fixture_root, tmp_path)
    path = _edit_backup(instance, lambda text: text.split("snapshots:")[0] + "snapshots: 5\n")
    assert snapshot_record(load_backup(path), "before") is None
    source = resolve(snapshot)  # found in the copy kept by the later snapshot instead
    assert (source.stateful, source.taken_at_source) == (True, "backup.yaml")
    assert _no_internal_error("summarize", snapshot).returncode == 0


@pytest.mark.parametrize("zone", ["+24:00", "-25:00", "+99:59", "+2400"])
def test_time_zone_of_a_day_or_more_is_not_a_time(fixture_root, tmp_path, zone):
    assert parse_timestamp(f"2026-11-25T17:40:42{zone}") is None
    _root, instance, snapshot = _web_copy(fixture_root, tmp_path)
    _edit_backup(instance, lambda text: text.replace(
        "created_at: 2026-11-25T17:40:42.978718767Z", f"created_at: 2026-11-25T17:40:42{zone}"))
    # The instance's file no longer gives the snapshot's time; the snapshot's own copies
    # (or the directory's mtime) do, and nothing fails.
    assert resolve(snapshot).taken_at is not None
    assert _no_internal_error("summarize", snapshot).returncode == 0


def test_backup_yaml_larger_than_lxd_writes_is_not_parsed(fixture_root, tmp_path):
    _root, instance, _snapshot = _web_copy(fixture_root, tmp_path)
    path = _edit_backup(instance, lambda text: text + "#" * MAX_BACKUP_BYTES + "\n")
    with pytest.raises(BackupError, match="more than the 1048576 a backup.yaml"):
        load_backup(path)
    source = resolve(instance)
    assert [f.code for f in source.findings if f.code == "bad-backup-yaml"]
    assert source.backup is None


# -- config.dump -----------------------------------------------------------------------------

def _archive_with(tmp_path, service_a, **changes):
    import tests.test_sources as sources_module

    saved = dict(sources_module.CONFIG)
    sources_module.CONFIG.update(changes)
    try:
        return _write_archive(tmp_path / "hostile.tar", service_a)
    finally:
        sources_module.CONFIG.clear()
        sources_module.CONFIG.update(saved)


@pytest.mark.parametrize("command", ["summarize", "ps"])
def test_checkpointed_time_with_a_day_long_offset(service_a, tmp_path, scratch,  # noqa: F811
                                                 command):
    archive = _archive_with(tmp_path, service_a, checkpointedTime="2026-11-25T17:39:26+24:00")
    assert CONFIG["checkpointedTime"] != "2026-11-25T17:39:26+24:00"  # restored
    with resolve(archive) as source:
        assert source.taken_at_source == "mtime"
    assert _no_internal_error(command, archive).returncode == 0


def test_lone_surrogate_in_the_container_name(service_a, tmp_path, scratch):  # noqa: F811
    archive = _archive_with(tmp_path, service_a, name="web\ud800x")
    raw = json.dumps({"name": "web\ud800x"})
    assert "\\ud800" in raw  # what the archive holds: JSON's escape of a lone surrogate
    with resolve(archive) as source:
        assert source.instance == "web\ufffdx"
    for args in (["summarize"], ["summarize", "--format", "json"]):
        outcome = _no_internal_error(*args, archive)
        assert outcome.returncode == 0 and "web\ufffdx" in outcome.stdout


# -- files.img -------------------------------------------------------------------------------

def test_inet_socket_without_its_description(service_a, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(service_a, images)
    decoded = run_cli("decode", "-i", images / "files.img")
    assert decoded.returncode == 0, decoded.stderr
    files = json.loads(decoded.stdout)
    stripped = 0
    for entry in files["entries"]:
        if entry.get("type") == "INETSK":
            del entry["isk"]
            stripped += 1
    assert stripped
    (tmp_path / "files.json").write_text(json.dumps(files))
    (images / "files.img").chmod(0o644)
    encoded = run_cli("encode", "-i", tmp_path / "files.json", "-o", images / "files.img")
    assert encoded.returncode == 0, encoded.stderr
    for args in (["sk"], ["sk", "--format", "json"], ["fds"]):
        assert _no_internal_error(*args, images).returncode == 0
    rows = json.loads(run_cli("sk", "--format", "json", images).stdout)
    bare = [row for row in rows if row["family"] is None]
    assert len(bare) == stripped and all(row["local"] is None for row in bare)
    validate = _no_internal_error("validate", images)
    assert "empty-file-entry" in validate.stdout
