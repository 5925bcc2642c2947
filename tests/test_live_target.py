"""``validate --target`` on real dumps made here by CRIU 4.2.1 (issue 20).

- the service workload, validated against this machine's own fingerprint, is clean, and
  CRIU then restores it;
- dumps that use a kernel feature or file system (a time namespace, lazy pages served by
  userfaultfd, an overlay mount) validate clean against this machine's fingerprint and
  predict their own error against a fingerprint edited as a host without it;
- on CRIU's zdtm sample dumps (tests/test_zdtm.py's programs, dumped once per session),
  ``--target`` with this machine's fingerprint gives the findings ``--host`` gives.

Every process started here runs in its own session and is killed by its group; the
overlay mount lives only in the workload's own mount namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from crit_plus.analysis import fingerprint as fp
from crit_plus.analysis.host import probe_host
from crit_plus.analysis.validate import validate
from crit_plus.analysis.validate_target import LIVE_ONLY
from crit_plus.opening import open_source
from tests.cli import run_cli
from tests.workloads import harness

pytestmark = pytest.mark.live



@pytest.fixture(scope="module")
def own(criu, tmp_path_factory):
    """This machine's fingerprint, written by ``crit-plus host -o`` with CRIU 4.2.1."""
    path = tmp_path_factory.mktemp("target") / "own.json"
    done = run_cli("host", "--criu", criu, "-o", path)
    assert done.returncode == 0, done.stderr
    return path


def edited(path, tmp_path, change):
    """Fingerprint ``path`` after ``change(data)``, loaded."""
    data = json.loads(Path(path).read_text())
    change(data)
    copy = tmp_path / "edited.json"
    copy.write_text(json.dumps(data))
    return fp.load(str(copy))


def _feature_off(name):
    return lambda data: data["kernel_features"].update({name: False})


def run(directory, host, target_root=None):
    with open_source(str(directory)) as opened:
        return validate(opened.checkpoint, source=opened.source, host=host,
                        target_root=target_root)


def _children(pid):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _start(argv):
    """``argv`` in a new session, stdio on /dev/null; its Popen."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(popen, *pids):
    for pid in (*pids, popen.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    popen.wait(15)


def _leaf(popen):
    """The workload process under ``unshare --fork`` (its child), once it is there."""
    found = harness.wait_until(lambda: _children(popen.pid), 15)
    assert found, f"unshare {popen.pid} started nothing"
    return found[0]


# -- the service: clean against its own machine, and it restores -------------------------------


def test_clean_against_this_machine_and_restores(criu, own, tmp_path):
    service = harness.Service.start(tmp_path / "app", tmp_path / "info.json",
                                    marker=f"target-{os.getpid()}")
    ports = harness.tcp_ports(service.info)
    try:
        harness.dump(criu, service.pid, tmp_path / "images", leave_running=False)
        assert service.reap() == []
        report = run(tmp_path / "images", fp.load(str(own)), target_root="/")
        assert (report.errors, report.warnings) == ((), ()), report.findings
        by_host = run(tmp_path / "images", probe_host("/", criu=("4.2.1", criu)), "/")
        assert [f.to_dict() for f in report.findings] == [
            f.to_dict() for f in by_host.findings if f.code not in LIVE_ONLY]
        cli = run_cli("validate", tmp_path / "images", "--target", own, "--target-root", "/")
        assert cli.returncode == 0, cli.stdout + cli.stderr
        attempt = harness.try_restore(criu, tmp_path / "images", pids=service.pids, timeout=60)
        assert attempt.succeeded, attempt.errors()
        assert harness.wait_until(lambda: all(harness.alive(p) for p in service.pids), 15)
    finally:
        assert service.kill() == []
        harness.unlock_network(ports)


# -- dumps that need a feature -----------------------------------------------------------------


def _dump_started(criu, directory, argv):
    """Start ``argv``, dump the process it ends in (its leaf) into ``directory``, stop it."""
    popen = _start(argv)
    leaf = _leaf(popen)
    try:
        harness.dump(criu, leaf, directory, leave_running=False, options=())
    finally:
        _stop(popen, leaf)


def _dump_timens(criu, directory):
    _dump_started(criu, directory, ["unshare", "--time", "--fork", "setsid", "sleep", "600"])


def _dump_overlay(criu, directory):
    layers = directory.parent / "overlay"
    for name in ("lower", "upper", "work", "merged"):
        (layers / name).mkdir(parents=True)
    inner = (f"mount -t overlay overlay -o lowerdir={layers}/lower,upperdir={layers}/upper,"
             f"workdir={layers}/work {layers}/merged && cd {layers}/merged && "
             "exec setsid sleep 600 </dev/null >/dev/null 2>&1")
    _dump_started(criu, directory, ["unshare", "--mount", "--propagation", "private",
                                    "--fork", "sh", "-c", inner])


def _dump_lazy(criu, directory):
    """``criu dump --lazy-pages``: the images are written, then CRIU serves the pages; it
    is stopped once the images are complete (nothing will restore them)."""
    program = "import time; b = bytearray(8 << 20); b[::4096] = b'x' * 2048; time.sleep(600)"
    popen = _start(["python3", "-c", program])
    time.sleep(0.5)  # the memory is touched
    directory.mkdir()
    server = subprocess.Popen(
        [criu, "dump", "-t", str(popen.pid), "-D", str(directory), "-o", "dump.log", "-v4",
         "--lazy-pages", "--address", "127.0.0.1", "--port", str(20000 + os.getpid() % 20000)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    log = directory / "dump.log"
    try:
        assert harness.wait_until(
            lambda: log.exists() and "Starting lazy pages server" in log.read_text(), 30), \
            log.read_text()[-2000:] if log.exists() else "no dump.log"
    finally:
        harness.kill_group(server.pid, ())
        server.wait(15)
        _stop(popen)


@pytest.mark.parametrize("dump,change,feature,image", [
    (_dump_timens, _feature_off("timens"), "timens", "ids-"),
    (_dump_lazy, _feature_off("uffd"), "uffd", "pagemap-"),
    (_dump_overlay, lambda d: d.update(filesystems=[f for f in d["filesystems"]
                                                    if f != "overlay"], fs_modules=[]),
     "overlay", "mountpoints-"),
], ids=["timens", "userfaultfd", "overlay"])
def test_a_host_without_the_feature_predicts_its_error(dump, change, feature, image, criu, own,
                                                       tmp_path):
    images = tmp_path / "images"
    dump(criu, images)
    clean = run(images, fp.load(str(own)))
    assert not {"kernel-feature", "fs-missing"} & clean.codes(), clean.findings
    report = run(images, edited(own, tmp_path, change))
    new = [f for f in report.findings if f.to_dict() not in
           [g.to_dict() for g in clean.findings]]
    code = "fs-missing" if feature == "overlay" else "kernel-feature"
    assert [(f.code, f.severity) for f in new] == [(code, "error")], new
    assert feature in new[0].message and new[0].image.startswith(image), new[0]
    cli = run_cli("validate", images, "--target", own)
    assert code not in cli.stdout


def test_cpuinfo_img_against_the_cpu_as_criu_sees_it(criu, own, tmp_path):
    """``criu cpuinfo dump`` beside a real dump (as for --cpu-cap): clean against this
    machine, whose fingerprint recorded the same; an error for a CPU with fewer XSAVE bits."""
    images = tmp_path / "images"
    _dump_timens(criu, images)
    done = subprocess.run([criu, "cpuinfo", "dump", "-D", str(images)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    recorded = json.loads(Path(own).read_text())["cpu"]["criu_xfeatures_mask"]
    assert recorded is not None
    assert "cpuinfo-xfeatures" not in run(images, fp.load(str(own))).codes()
    smaller = edited(own, tmp_path, lambda d: d["cpu"].update(criu_xfeatures_mask=1))
    found = [f for f in run(images, smaller).findings if f.code == "cpuinfo-xfeatures"]
    assert [f.severity for f in found] == ["error"] and found[0].image == "cpuinfo.img"


# -- zdtm's sample (tests/test_zdtm.py's programs, dumped once per session) ------------------


def _sample_images(zdtm_dumps, name):
    if name not in zdtm_dumps:
        pytest.fail(f"zdtm's {name} was not dumped (tests/test_zdtm.py says why)")
    return zdtm_dumps[name].images


def test_zdtm_sample_target_equals_host(criu, own, zdtm_dumps):
    assert len(zdtm_dumps) >= 40
    live, target = probe_host("/", criu=("4.2.1", criu)), fp.load(str(own))
    differ = {}
    for name, dump in sorted(zdtm_dumps.items()):
        by_host = [f.to_dict() for f in run(dump.images, live).findings
                   if f.code not in LIVE_ONLY]
        by_target = [f.to_dict() for f in run(dump.images, target).findings]
        if by_host != by_target:
            differ[name] = (by_host, by_target)
    assert differ == {}


@pytest.mark.parametrize("name,feature,image", [
    ("socket-tcp4v6-fin-wait1", "tcp_half_closed", "files.img"),
    ("timerfd", "timerfd", "timerfd.img"),
    ("seccomp_filter_tsync", "seccomp_filters", "core-"),
])
def test_zdtm_dump_predicts_the_missing_feature(name, feature, image, own, tmp_path,
                                                 zdtm_dumps):
    """zdtm programs that use a feature, against a host without it."""
    images = _sample_images(zdtm_dumps, name)
    clean = run(images, fp.load(str(own)))
    assert "kernel-feature" not in clean.codes()
    found = [f for f in run(images, edited(own, tmp_path, _feature_off(feature))).findings
             if f.code == "kernel-feature"]
    assert [f.severity for f in found] == ["error"], found
    assert feature in found[0].message and found[0].image.startswith(image)


def test_zdtm_avx_dump_on_a_cpu_without_avx(own, tmp_path, zdtm_dumps):
    """zdtm's fpu01 threads used AVX state (xstate_bv bit 2): a CPU without the avx flag
    is predicted to lose it."""
    images = _sample_images(zdtm_dumps, "fpu01")
    assert "cpu-xsave" not in run(images, fp.load(str(own))).codes()
    no_avx = edited(own, tmp_path, lambda d: d["cpu"].update(
        flags=[f for f in d["cpu"]["flags"] if not f.startswith("avx")]))
    found = [f for f in run(images, no_avx).findings if f.code == "cpu-xsave"]
    assert found and "AVX (avx)" in found[0].message, found
