"""Archive safety through the commands: hostile Podman/CRI-O archives are refused with
one clear line, and nothing is written outside a private temporary directory
that is gone when the command ends, whether it succeeded or failed.

tests/test_sources.py tests the extraction itself; here every registered
checkpoint command (tests/command_table.py) runs on archives, with the
temporary root redirected to a scratch directory that must be empty after
each run, and the directory holding the archive snapshotted before and after.
"""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from . import damage
from .command_table import COMMANDS, fill, invoke, problems, registered
from .test_sources import _add_bytes, _hostile, _write_archive, scratch  # noqa: F401 (fixture)


def _checkpoint_forms():
    names = set(registered())
    return [(name, form) for name, use in sorted(COMMANDS.items())
            if use.on == "checkpoint" and use.archives and name in names for form in use.forms]


@pytest.fixture
def shelf(tmp_path):
    """The directory archives are kept in (snapshotted around each run)."""
    directory = tmp_path / "shelf"
    directory.mkdir()
    return directory


def _run_all(archive, original, scratch, shelf, expect):
    """Every checkpoint command on ``archive``: an outcome of kind ``expect`` (``results``
    or ``errors``), nothing left behind."""
    before = damage.tree_state(shelf)
    forms = _checkpoint_forms()
    assert forms
    for name, form in forms:
        use = COMMANDS[name]
        outcome = invoke(fill(form, checkpoint=archive, original=original, pid=12525,
                              image=archive, output=shelf.parent / "output"))
        kind = expect
        if expect == "errors" and (use.gathers and outcome.code == 0  # report gathers anyway
                                   or use.judges and outcome.code in use.results):
            kind = "results"  # validate: a damaged pstree is verdict 2, with its report
        assert outcome.code in getattr(use, kind), outcome.describe()
        assert not problems(outcome, use, (archive.name,)), outcome.describe()
        assert list(scratch.iterdir()) == [], f"{outcome.args} left {list(scratch.iterdir())}"
        assert damage.tree_state(shelf) == before, f"{outcome.args} changed {shelf}"
    return outcome


def test_commands_on_an_archive_leave_nothing_behind(service_a, scratch, shelf):
    archive = _write_archive(shelf / "service.tar.zst", service_a)
    _run_all(archive, service_a, scratch, shelf, "results")


def test_a_failing_command_on_an_archive_leaves_nothing_behind(service_a, scratch, shelf):
    def damaged_pstree(tar):
        data = (service_a / "pstree.img").read_bytes()
        _add_bytes(tar, "checkpoint/pstree.img", data[:-3])

    def without_pstree(tar_info):
        return None if tar_info.name == "checkpoint/pstree.img" else tar_info

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.add(service_a, arcname="checkpoint", filter=without_pstree)
        damaged_pstree(tar)
    archive = shelf / "cut.tar"
    archive.write_bytes(raw.getvalue())
    outcome = _run_all(archive, service_a, scratch, shelf, "errors")
    assert outcome.err.startswith("crit-plus: cut.tar: pstree.img: entry 1 at offset ")


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "hardlink", "device", "fifo",
                                  "parent-elsewhere"])
def test_hostile_archives_are_refused_by_every_command(service_a, scratch, shelf, kind):
    archive = _write_archive(shelf / "evil.tar", service_a, extra=lambda tar: _hostile(tar, kind))
    outcome = _run_all(archive, service_a, scratch, shelf, "errors")
    assert outcome.err.startswith("crit-plus: evil.tar: member ") and "refused" in outcome.err


def test_member_names_cannot_garble_the_error(service_a, scratch, shelf):
    def evil(tar):
        info = tarfile.TarInfo("checkpoint/\x1b[31mred\nline\x9b")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(info)

    archive = _write_archive(shelf / "names.tar", service_a, extra=evil)
    outcome = _run_all(archive, service_a, scratch, shelf, "errors")
    assert outcome.err.count("\n") == 1 and "\x1b" not in outcome.err
    assert "\\x1b[31mred\\nline" in outcome.err


def test_size_limit_from_the_environment_through_the_cli(service_a, scratch, shelf, monkeypatch):
    archive = _write_archive(shelf / "big.tar", service_a)
    monkeypatch.setenv("CRIT_PLUS_ARCHIVE_LIMIT", "1M")
    outcome = _run_all(archive, service_a, scratch, shelf, "errors")
    assert "limit of 1048576" in outcome.err


def test_metadata_nested_too_deep_is_a_finding(service_a, scratch, shelf):
    def deep(tar):
        _add_bytes(tar, "config.dump", b"[" * 200_000)

    def without_config(tar_info):
        return tar_info

    archive = _write_archive(shelf / "deep.tar", service_a)
    raw = io.BytesIO()
    with tarfile.open(archive) as source, tarfile.open(fileobj=raw, mode="w") as tar:
        for member in source:
            if member.name == "config.dump":
                continue
            tar.addfile(member, source.extractfile(member) if member.isreg() else None)
        deep(tar)
    archive.write_bytes(raw.getvalue())
    _run_all(archive, service_a, scratch, shelf, "results")
    from crit_plus.sources import resolve

    with resolve(str(archive)) as source:
        assert source.metadata["config_dump"] is None
        assert any(f.code == "bad-metadata" and "recursion" in f.message for f in source.findings)
    assert json.dumps(source.metadata)  # the rest is still there, as JSON


def test_an_archive_is_named_not_its_temporary_copy(service_a, scratch, shelf):
    """The images of an archive live in a temporary directory removed when the command
    ends: reports name the archive and the directory inside it instead."""
    archive = _write_archive(shelf / "service.tar.zst", service_a)
    label = f"{archive}: checkpoint/"
    where = {"summarize": lambda d: d["origin"]["images_dir"], "size": lambda d: d["directory"],
             "validate": lambda d: d["checkpoint"], "diff": lambda d: d["new"]["images_dir"]}
    for name, field in where.items():
        args = [name, str(archive)] if name != "diff" else \
            [name, str(service_a), str(archive), "--no-content"]
        table = invoke(args)
        assert str(scratch) not in table.out.decode(), name
        assert label in table.out.decode() or name == "diff", name  # diff: its name
        assert field(json.loads(invoke([*args, "--format", "json"]).out)) == label, name
