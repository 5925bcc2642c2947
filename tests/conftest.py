"""Shared test fixtures: the real checkpoints, unpacked once per session.

``fixtures/*.tar.gz`` are real CRIU and LXD checkpoints (see fixtures/README.md);
``fixtures/FACTS.json`` holds facts computed independently with CRIU's pycriu.
Tests never write into an unpacked checkpoint; the tree is made read-only.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from tests.workloads import harness

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
ARCHIVES = ("service-a", "service-b", "service-c", "service-old", "lxd-web", "lxd-deb")


def pytest_collection_modifyitems(config, items):
    """Benchmarks run only with ``--benchmark-enable`` (``make bench``): they take
    minutes and measure, they do not check."""
    try:
        enabled = config.getoption("--benchmark-enable")
    except ValueError:  # pytest-benchmark is not installed
        enabled = False
    if enabled:
        return
    skip = pytest.mark.skip(reason="benchmark: run with `make bench`")
    for item in items:
        if "benchmark" in item.keywords or "benchmarks" in item.path.parts:
            item.add_marker(skip)


def _make_read_only(top):
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) & ~0o222)


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory):
    """Directory holding every fixture archive unpacked under its name."""
    root = tmp_path_factory.mktemp("fixtures")
    for name in ARCHIVES:
        with tarfile.open(FIXTURES / f"{name}.tar.gz") as archive:
            archive.extractall(root, filter="data")
    _make_read_only(root)
    return root


@pytest.fixture(scope="session")
def facts():
    """FACTS.json: checkpoint key (path relative to the fixture root) → facts."""
    return json.loads((FIXTURES / "FACTS.json").read_text())


@pytest.fixture(scope="session")
def checkpoint_dirs(fixture_root, facts):
    """Checkpoint key → unpacked image directory, for every checkpoint in FACTS.json."""
    return {key: fixture_root / key for key in facts}


@pytest.fixture(scope="session")
def service_a(fixture_root):
    """The service-a image directory (CRIU 4.2.1)."""
    return fixture_root / "service-a"


@pytest.fixture(scope="session")
def service_old(fixture_root):
    """The service-old image directory (CRIU 4.1.1)."""
    return fixture_root / "service-old"


def all_image_files(directory):
    """Every file of a checkpoint directory, sorted."""
    return sorted(p for p in Path(directory).iterdir() if p.is_file())


@pytest.fixture(scope="session")
def criu():
    """Path of a working CRIU >= 4.2 for the live tests (marker ``live``).

    Without one (or without root) the test is skipped with the reason; under
    ``CRIT_PLUS_LIVE=required`` (``make test``, CI) it fails instead.
    """
    path, reason = harness.find_criu()
    if path is None:
        if os.environ.get("CRIT_PLUS_LIVE") == "required":
            pytest.fail(f"live tests are required here (CRIT_PLUS_LIVE=required) but {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def zdtm_sample(criu):
    """The zdtm sample's results (tests/test_zdtm.py's ``SAMPLE``, through the harness of
    ``make zdtm``): name → :class:`~tests.workloads.zdtm.Result` (a cached result that did
    not pass is run again: a failure must happen again to count)."""
    from tests.test_zdtm import NAMES
    from tests.workloads import zdtm

    _, results = zdtm.run_all(criu, NAMES, retry=True)
    return {r.test: r for r in results}


@pytest.fixture(scope="session")
def zdtm_dumps(zdtm_sample):
    """name → :class:`~tests.zdtm_checks.Dump` for every sample program CRIU dumped."""
    from tests import zdtm_checks

    return {d.name: d for d in zdtm_checks.dumps(zdtm_sample.values())}
