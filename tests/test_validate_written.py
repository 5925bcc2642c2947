"""The images CRIU always writes: each one removed from a real fixture is an error naming it.

An ``fdinfo`` image is not always written (not for a file table without fds): removed, it is
an error when files.img holds files nothing else opens, and a warning otherwise.

``ALWAYS_WRITTEN`` (crit_plus/analysis/validate_catalog.py) lists the images CRIU 4.2.1
writes in every dump; docs/validate.md shows the same table.  Removing any of them (or an
``fdinfo`` image whose files are in files.img) from a copy of a real fixture must give a
validate error that names the image, with the message the table says CRIU prints.  Real
restores of zdtm programs with these images removed are in tests/test_live_zdtm_validate.py.
"""

from __future__ import annotations

import re
import shutil
import tarfile

import pytest

import crit_plus
from crit_plus.analysis.validate import validate
from crit_plus.analysis.validate_catalog import ALWAYS_WRITTEN, CHECKS, always_written
from tests.conftest import ROOT

SA = "service-a"
DEB = "lxd-deb/var/lib/lxd/storage-pools/default/containers-snapshots/deb/s2/state"
_PER_PROCESS = re.compile(r"^(?:core|ids|mm|fs|pagemap|fdinfo)-\d+\.img$")


_GLOBAL = {written.name for written in ALWAYS_WRITTEN.values() if "{" not in written.name}


def _cases():
    cases = []
    for key in (SA, DEB):
        # listed from the archive: the fixtures are extracted later, by a session fixture
        cases += [(key, name) for name in _names_in_archive(key)]
    return cases


def _names_in_archive(key):
    archive = ROOT / "fixtures" / (key.split("/")[0] + ".tar.gz")
    prefix = key.split("/", 1)[1] + "/" if "/" in key else ""
    with tarfile.open(archive) as tar:
        names = [member.name for member in tar.getmembers() if member.isfile()]
    names = [name.split("/", 1)[1] if "/" in name else name for name in names]
    inside = [name[len(prefix):] for name in names if name.startswith(prefix)]
    flat = [name for name in inside if "/" not in name]
    return sorted(name for name in flat
                  if (always_written(name) is not None and
                      (_PER_PROCESS.match(name) or name in _GLOBAL))
                  or name.startswith("fdinfo-"))


CASES = _cases()
#: fdinfo images of a process whose every fd shares its file with another process (the
#: service's worker, forked after opening them): nothing in the images says it had fds, as a
#: process without fds has no fdinfo image (CRIU writes none), so only a warning is possible.
SHARED_ONLY = {(SA, "fdinfo-3.img")}


def test_every_kind_of_written_image_is_removed_somewhere():
    kinds = {always_written(name).kind for _key, name in CASES if always_written(name)}
    assert kinds == set(ALWAYS_WRITTEN)
    assert any(name.startswith("fdinfo-") for _key, name in CASES)


@pytest.mark.parametrize("key,name", CASES, ids=[f"{k.split('/')[0]}:{n}" for k, n in CASES])
def test_a_removed_written_image_is_an_error_naming_it(key, name, fixture_root, tmp_path):
    directory = shutil.copytree(fixture_root / key, tmp_path / "ck", symlinks=True)
    (directory / name).unlink()
    report = validate(crit_plus.open_checkpoint(directory))
    if (key, name) in SHARED_ONLY:
        finding, = [f for f in report.warnings if f.code == "no-fdinfo"]
        assert finding.where == name and finding.criu_says is None
        assert "if the process had any, the restore gives it none" in finding.message
        return
    naming = [f for f in report.errors if name in (f.image, f.where)]
    assert naming, f"no error names {name}: {[(f.code, f.where) for f in report.findings]}"
    finding = naming[0]
    if name.startswith("fdinfo-"):
        assert finding.code == "no-fdinfo"
        assert "files.img holds" in finding.message
        assert finding.criu_says == CHECKS["no-fdinfo"].criu_says
        return
    written = always_written(name)
    assert finding.code == "missing-image"
    if written.kind != "seccomp":  # without filters CRIU prints nothing (see below)
        assert finding.criu_says == written.criu_says
    assert written.lacks in finding.fix and "{" not in finding.fix


def test_seccomp_without_filters_is_an_error_criu_says_nothing_about(fixture_root, tmp_path):
    directory = shutil.copytree(fixture_root / SA, tmp_path / "ck", symlinks=True)
    (directory / "seccomp.img").unlink()
    finding, = [f for f in validate(crit_plus.open_checkpoint(directory)).errors]
    assert finding.code == "missing-image" and finding.criu_says is None
    assert finding.message == ("seccomp.img is missing: no thread has seccomp filters, so the "
                               "restore itself works")


def test_the_untouched_fixtures_have_every_written_image(checkpoint_dirs):
    for key in (SA, DEB):
        report = validate(crit_plus.open_checkpoint(checkpoint_dirs[key]))
        assert not report.codes() & {"missing-image", "no-fdinfo"}


def test_docs_list_the_written_images():
    text = (ROOT / "docs/validate.md").read_text()
    section = text.split("### Images crit-plus expects in every checkpoint", 1)[1]
    section = section.split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([^`]+)` \| (.*?) \| (.*?) \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = match.groups()[1:]
    assert set(rows) == {written.name for written in ALWAYS_WRITTEN.values()}
    for written in ALWAYS_WRITTEN.values():
        scope, says, lacks = rows[written.name]
        assert scope == written.scope
        assert says == (f"`{written.criu_says}`" if written.criu_says else "—")
        assert lacks == written.lacks
