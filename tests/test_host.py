"""``crit-plus host``, ``validate --target`` and ``host compare`` (issue 20).

The fingerprint is :class:`HostFacts` serialized: this machine's own fingerprint must
give ``validate`` exactly the findings the live ``--host`` gives (except the few only a
live host can answer: :data:`LIVE_ONLY`), on every fixture.  Fingerprints edited as real
smaller hosts would be predict their own error on the real checkpoints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import crit_plus
from crit_plus.analysis import fingerprint as fp
from crit_plus.analysis.host import FEATURES, probe_host
from crit_plus.analysis.host_compare import compare
from crit_plus.analysis.validate import validate
from crit_plus.analysis.validate_target import LIVE_ONLY
from crit_plus.opening import open_source
from tests.cli import run_cli
from tests.workloads import harness

SA = "service-a"
WEB = "lxd-web/var/lib/lxd/storage-pools/default/containers/web/state"
DEB = "lxd-deb/var/lib/lxd/storage-pools/default/containers-snapshots/deb/s1/state"


def this_criu():
    """``(version, path)`` of the CRIU 4.2.1 the live tests use when it is installed, else
    None (probe_host then looks for one itself)."""
    path = harness.DEFAULT_CRIU
    if not os.access(path, os.X_OK):
        return None
    return "4.2.1", path


@pytest.fixture(scope="module")
def live_host():
    """This machine, probed live (what ``validate --host`` uses)."""
    return probe_host("/", criu=this_criu())


@pytest.fixture(scope="module")
def own_fingerprint(tmp_path_factory):
    """This machine's fingerprint, written by the real command in another process."""
    path = tmp_path_factory.mktemp("host") / "own.json"
    criu = this_criu()
    done = run_cli("host", "-o", path, *(("--criu", criu[1]) if criu else ()))
    assert done.returncode == 0, done.stderr
    return path


def run(directory, host):
    """validate as the command runs it: the checkpoint with its source (logs, manager)."""
    with open_source(str(directory)) as opened:
        return validate(opened.checkpoint, source=opened.source, host=host)


def findings(report, drop=LIVE_ONLY):
    """The findings as dicts, without the codes only a live host gives."""
    return [f.to_dict() for f in report.findings if f.code not in drop]


def edited(path, tmp_path, change):
    """A copy of fingerprint ``path`` after ``change(data)``, loaded."""
    data = json.loads(path.read_text())
    change(data)
    copy = tmp_path / "edited.json"
    copy.write_text(json.dumps(data))
    return fp.load(str(copy))


# -- the fingerprint is HostFacts --------------------------------------------------------------


def test_fingerprint_round_trips(live_host):
    data = fp.fingerprint(live_host)
    loaded = fp.from_dict(json.loads(json.dumps(data)))
    assert fp.fingerprint(loaded) | {"taken_at": None} == data | {"taken_at": None}
    assert loaded.root is None and not loaded.live
    assert set(data["kernel_features"] or FEATURES) == set(FEATURES)
    assert loaded.machine == os.uname().machine and loaded.kernel == os.uname().release


def test_feature_names_are_crius():
    """FEATURES is CRIU 4.2.1's feature_list (criu/cr-check.c), when its source is here."""
    source = os.path.join(os.path.dirname(os.path.dirname(harness.DEFAULT_CRIU)),
                          "src/criu/cr-check.c")
    if not os.path.exists(source):
        pytest.skip("CRIU's source is not here")
    import re

    with open(source) as stream:
        text = stream.read()
    table = text[text.index("feature_list[] = {"):]
    names = re.findall(r'\{ "([^"]+)", \w+ \}', table[:table.index("{ NULL, NULL }")])
    assert tuple(names) == FEATURES


@pytest.mark.parametrize("key", [SA, "service-b", "service-c", "service-old", WEB, DEB])
def test_own_fingerprint_gives_the_host_findings(key, checkpoint_dirs, live_host,
                                                 own_fingerprint):
    by_host = run(checkpoint_dirs[key], live_host)
    by_target = run(checkpoint_dirs[key], fp.load(str(own_fingerprint)))
    assert findings(by_target) == findings(by_host)
    assert not {f.code for f in by_target.findings} & LIVE_ONLY


def test_cli_target_equals_host_with_the_same_target_root(checkpoint_dirs, own_fingerprint,
                                                          tmp_path):
    criu = this_criu()
    common = (checkpoint_dirs[WEB], "--target-root", tmp_path, "--format", "json")
    by_host = run_cli("validate", *common, "--host", *(("--criu", criu[1]) if criu else ()))
    by_target = run_cli("validate", *common, "--target", own_fingerprint)
    assert by_host.returncode == by_target.returncode, by_target.stderr
    host_report, target_report = json.loads(by_host.stdout), json.loads(by_target.stdout)
    drop = [f for f in host_report["findings"] if f["code"] not in LIVE_ONLY]
    assert target_report["findings"] == drop
    assert target_report["host_root"] is None


# -- edited as smaller hosts -------------------------------------------------------------------


def _without_avx512(data):
    data["cpu"]["flags"] = [f for f in data["cpu"]["flags"] if not f.startswith("avx512")]


def _with_avx512(data):
    data["cpu"]["flags"] = sorted(set(data["cpu"]["flags"]) | {"avx512f"})


def _feature_off(name):
    def change(data):
        data["kernel_features"] = dict(data["kernel_features"] or {}, **{name: False})
    return change


def _cgroup_v1(data):
    data["cgroup"] = {"version": 1, "v1_controllers": ["cpu", "memory", "pids"],
                      "v2_controllers": None, "hierarchies": ["cpu", "memory", "pids"]}


def _criu(version):
    def change(data):
        data["criu"]["version"] = version
    return change


def _without_fs(name):
    def change(data):
        data["filesystems"] = [f for f in data["filesystems"] if f != name]
        data["fs_modules"] = [f for f in data["fs_modules"] or () if f != name]
    return change


#: (fixture, fingerprint edit, the code it must fire, a word of its message): every check a
#: fingerprint answers, on a real checkpoint that needs the feature.
SMALLER_HOSTS = [
    (SA, _without_avx512, "cpu-xsave", "AVX-512"),
    (WEB, _feature_off("userns"), "kernel-feature", "userns"),
    (WEB, _feature_off("seccomp_filters"), "kernel-feature", "seccomp_filters"),
    (DEB, _feature_off("timerfd"), "kernel-feature", "timerfd"),
    (SA, _feature_off("get_rseq_conf"), "kernel-feature", "get_rseq_conf"),
    (WEB, _cgroup_v1, "cgroup-controller", "cgroup2"),
    (WEB, _criu("4.1"), "criu-older", "4.2"),
    (DEB, _without_fs("mqueue"), "fs-missing", "mqueue"),
]


@pytest.mark.parametrize("key,change,code,feature", SMALLER_HOSTS,
                         ids=["no-avx512", "no-userns", "no-seccomp-filters", "no-timerfd",
                              "no-rseq", "cgroup-v1", "criu-4.1", "no-mqueue"])
def test_smaller_host_predicts_its_error(key, change, code, feature, checkpoint_dirs,
                                         own_fingerprint, tmp_path):
    full = edited(own_fingerprint, tmp_path, _with_avx512)
    smaller = edited(own_fingerprint, tmp_path, lambda d: (_with_avx512(d), change(d)))
    before = run(checkpoint_dirs[key], full)
    after = run(checkpoint_dirs[key], smaller)
    new = [f for f in after.findings if f.to_dict() not in findings(before, ())]
    assert new and {f.code for f in new} == {code}, [f.message for f in new]
    assert feature in new[0].message + (new[0].fix or "")
    if code == "kernel-feature":
        assert new[0].image and new[0].image.endswith(".img")


def test_kernel_feature_findings_name_the_image(checkpoint_dirs, own_fingerprint, tmp_path):
    checkpoint = crit_plus.open_checkpoint(checkpoint_dirs[WEB])
    host = edited(own_fingerprint, tmp_path, lambda d: [
        _feature_off(name)(d) for name in ("userns", "cgroupns", "seccomp_filters")])
    found = {f.image for f in validate(checkpoint, host=host).findings
             if f.code == "kernel-feature"}
    root = checkpoint.tree.roots[0]
    assert f"ids-{root}.img" in found and any(i.startswith("core-") for i in found)


def test_a_skipped_version_check_says_which_version_is_unknown(checkpoint_dirs,
                                                              own_fingerprint, tmp_path):
    """service-a's dump log is not verbose (no CRIU version, no kernel): the skip says the
    dump's is unknown, not the installed one; a fingerprint without criu's version, on a
    dump whose log has it, says the installed one is unknown."""
    host = edited(own_fingerprint, tmp_path, lambda d: d["criu"].update(version="4.2.1"))
    report = run(checkpoint_dirs[SA], host)
    assert "criu version: the dump's (from its log) is unknown" in report.skipped
    assert "kernel: the dump's (from its log) is unknown" in report.skipped
    host = edited(own_fingerprint, tmp_path, lambda d: d["criu"].update(version=None))
    report = run(checkpoint_dirs[WEB], host)
    assert "criu version: the installed one is unknown" in report.skipped
    host = edited(own_fingerprint, tmp_path, lambda d: d["criu"].update(version=None))
    assert "criu version: the dump's (from its log) and the installed one are unknown" in \
        run(checkpoint_dirs[SA], host).skipped


#: What Debian's criu 3.17.1 prints for any `criu check` on this machine's kernel.
DEBIAN_CHECK = """Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds
Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable
Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed when initializing kerndat.
Error (criu/crtools.c:260): Could not initialize kernel features detection.
"""


def test_a_failing_criu_check_says_why(tmp_path, checkpoint_dirs):
    """A criu that cannot run `criu check` here (Debian's 3.17.1: its vDSO check fails on
    this kernel): the features are untested, and the first error line says why, in the
    fingerprint, in `host`'s table and in validate's skip."""
    fake = tmp_path / "criu"
    fake.write_text("#!/bin/sh\ncase \"$1\" in --version) echo 'Version: 3.17.1';;\n"
                    f"*) cat >&2 <<'EOF'\n{DEBIAN_CHECK}EOF\nexit 1;; esac\n")
    fake.chmod(0o755)
    from crit_plus.analysis.host import HostFacts, LiveFeatures

    features = LiveFeatures(str(fake))
    assert features["userns"] is None
    first = DEBIAN_CHECK.splitlines()[0]
    host = HostFacts("/", criu_path=str(fake), criu_version="3.17.1", kernel_features=features)
    data = fp.fingerprint(host)
    assert data["criu"]["check_error"] == first
    loaded = fp.from_dict(json.loads(json.dumps(data)), "fp.json")
    assert loaded.criu_check_error == first
    report = validate(crit_plus.open_checkpoint(checkpoint_dirs[WEB]), host=loaded)
    assert any(s.startswith("kernel features ") and f"`criu check` failed: {first}" in s
               for s in report.skipped), report.skipped
    if os.geteuid() == 0:  # the command itself: one row, one line
        done = run_cli("host", "--criu", fake)
        assert done.returncode == 0, done.stderr
        rows = [line for line in done.stdout.splitlines()
                if line.startswith(("criu check", "kernel features"))]
        assert rows == [f"kernel features  none of the 45 tested, criu 3.17.1 at {fake} "
                        f"cannot check them: {first}"]
    assert data["kernel_features_note"] == (f"none of the {len(FEATURES)} tested, criu 3.17.1 "
                                            f"at {fake} cannot check them: {first}")


def test_a_criu_that_cannot_run_tests_nothing(tmp_path):
    """A criu that fails whatever it is asked (exit 1): no feature is said to be missing;
    host says in one line that none was tested and why, in its table and its JSON."""
    fake = tmp_path / "criu"
    fake.write_text("#!/bin/sh\necho 'Error (criu/crtools.c:260): cannot start' >&2\nexit 1\n")
    fake.chmod(0o755)
    if os.geteuid() != 0:
        pytest.skip("criu check runs as root only")
    said = f"none of the {len(FEATURES)} tested, criu (version unknown) at {fake} cannot " \
        f"check them: `{fake} --version` gave no version (not a criu that runs here)"
    done = run_cli("host", "--criu", fake)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines()
            if line.startswith(("criu check", "kernel features"))]
    assert rows == [f"kernel features  {said}"]
    data = json.loads(run_cli("host", "--criu", fake, "-f", "json", check=True).stdout)
    assert set(data["kernel_features"].values()) == {None}
    assert data["kernel_features_note"] == said


def test_untested_features_are_said_not_guessed(checkpoint_dirs, own_fingerprint, tmp_path):
    host = edited(own_fingerprint, tmp_path, lambda d: d.update(kernel_features=None))
    report = validate(crit_plus.open_checkpoint(checkpoint_dirs[WEB]), host=host)
    assert "kernel-feature" not in report.codes()
    assert any("userns" in s and "not tested" in s for s in report.skipped)


# -- not a fingerprint -------------------------------------------------------------------------


@pytest.mark.parametrize("name,text,said", [
    ("garbage", "not json at all", "not valid JSON at line 1 column 1"),
    ("truncated", None, "not valid JSON"),
    ("other", '{"schema_version": 1, "findings": []}', "not a crit-plus host fingerprint"),
    ("newer", None, "fingerprint version 99"),
    ("bad-field", None, "cpu.flags is not a list of strings"),
    ("binary", b"\xff\xfe\x00", "not UTF-8"),
])
def test_not_a_fingerprint_is_one_line(name, text, said, own_fingerprint, checkpoint_dirs,
                                       tmp_path):
    good = own_fingerprint.read_text()
    data = json.loads(good)
    text = {"truncated": good[:len(good) // 2],
            "newer": json.dumps(dict(data, version=99)),
            "bad-field": json.dumps(dict(data, cpu=dict(data["cpu"], flags="avx")))
            }.get(name, text)
    path = tmp_path / f"{name}.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    for args, code in ((("validate", checkpoint_dirs[SA], "--target", path), 3),
                       (("host", "compare", path, own_fingerprint), 2)):
        done = run_cli(*args)
        assert done.returncode == code and done.stdout == "", done.stdout
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and said in lines[0] and str(path) in lines[0], lines


def test_unreadable_fingerprint_is_a_bad_input(checkpoint_dirs, tmp_path):
    done = run_cli("validate", checkpoint_dirs[SA], "--target", tmp_path / "none.json")
    assert done.returncode == 3 and len(done.stderr.splitlines()) == 1, done.stderr
    assert "none.json" in done.stderr
    # host compare: 1 is "warnings", so a file that cannot be read is 2, as one that is not
    # a fingerprint (README's exit codes)
    done = run_cli("host", "compare", tmp_path / "none.json", tmp_path / "none.json")
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert len(done.stderr.splitlines()) == 1 and "none.json" in done.stderr, done.stderr


# -- host and host compare ---------------------------------------------------------------------


def test_host_table_and_json(own_fingerprint):
    table = run_cli("host")
    assert table.returncode == 0, table.stderr
    for label in ("architecture", "kernel", "kernel features", "file systems", "cgroup",
                  "LSM", "criu", "pid_max"):
        assert f"\n{label} " in "\n" + table.stdout
    data = json.loads(run_cli("host", "--format", "json").stdout)
    assert (data["format"], data["version"]) == (fp.FORMAT, fp.VERSION)
    assert data["pid_max"] == int(Path("/proc/sys/kernel/pid_max").read_text())


def test_compare_with_itself_is_compatible(own_fingerprint):
    done = run_cli("host", "compare", own_fingerprint, own_fingerprint)
    assert done.returncode == 0 and "compatible" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("change,codes,exit_code", [
    (_without_avx512, ["cpu-xsave", "cpu-flags"], 1),
    (_feature_off("timens"), ["kernel-feature"], 2),
    (lambda d: d.update(filesystems=[f for f in d["filesystems"] if f != "overlay"]),
     ["fs-missing"], 2),
    (_cgroup_v1, ["cgroup-controller"], 1),
    (_criu("4.1"), ["criu-older"], 2),
    (_criu("4.2.0"), ["criu-older"], 1),
    (lambda d: d["cpu"].update(criu_xfeatures_mask=1), ["cpuinfo-xfeatures"], 2),
], ids=["no-avx512", "no-timens", "no-overlay", "cgroup-v1", "criu-4.1", "criu-4.2.0",
        "criu-xfeatures"])
def test_compare_finds_the_smaller_target(change, codes, exit_code, own_fingerprint, tmp_path):
    data = json.loads(own_fingerprint.read_text())
    _with_avx512(data)
    data["kernel_features"] = {name: True for name in FEATURES}
    data["filesystems"] = sorted(set(data["filesystems"] or ()) | {"overlay"})
    data["cgroup"] = {"version": 2, "v1_controllers": [], "v2_controllers": ["cpu", "memory"],
                      "hierarchies": []}
    data["criu"]["version"] = "4.2.1"
    data["cpu"]["criu_xfeatures_mask"] = 7
    source = tmp_path / "source.json"
    source.write_text(json.dumps(data))
    change(data)
    target = tmp_path / "target.json"
    target.write_text(json.dumps(data))
    differences = compare(fp.load(str(source)), fp.load(str(target)))
    assert [d.code for d in differences] == codes, differences
    done = run_cli("host", "compare", source, target, "--format", "json")
    assert done.returncode == exit_code, done.stderr
    assert [d["code"] for d in json.loads(done.stdout)["differences"]] == codes
    if codes != ["cgroup-controller"]:  # the only difference that matters both ways
        assert run_cli("host", "compare", target, source).returncode == 0


def test_unprivileged_host_says_what_needed_root(monkeypatch):
    """As another user `criu check` is not run: the features are unknown, and said to be."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    host = probe_host("/", criu=this_criu() or ("4.2.1", "/usr/sbin/criu"))
    assert host.kernel_features is None and host.feature("timens") is None
    assert any("root" in what for what in host.needed_root)
    data = fp.fingerprint(host)
    assert data["kernel_features"] is None and data["needed_root"]
    assert data["filesystems"] and data["cpu"]["flags"] and data["pid_max"]


def test_memfd_on_hugetlbfs_needs_memfd_hugetlb(fixture_root, own_fingerprint, tmp_path):
    """Synthetic (this machine has no huge pages to make a real one): a copy of service-a
    with a memfd.img whose inode was created with MFD_HUGETLB, as criu/memfd.c records it."""
    import shutil

    from tests.synth import image_bytes, message

    copy = tmp_path / "ck"
    shutil.copytree(fixture_root / SA, copy, symlinks=True)
    inode = message("memfd_inode_entry", name="memfd:huge", size=2 << 20, inode_id=1,
                    hugetlb_flag=4 | (21 << 26))
    (copy / "memfd.img").write_bytes(image_bytes("MEMFD_INODE", [inode]))
    host = edited(own_fingerprint, tmp_path, _feature_off("memfd_hugetlb"))
    found = [f for f in run(copy, host).findings if f.code == "kernel-feature"]
    assert [(f.image, "memfd_hugetlb" in f.message) for f in found] == [("memfd.img", True)]
    plain = message("memfd_inode_entry", name="memfd:plain", size=4096, inode_id=1)
    (copy / "memfd.img").write_bytes(image_bytes("MEMFD_INODE", [plain]))
    assert "kernel-feature" not in run(copy, host).codes()


def test_compare_keeps_its_verdict_into_a_closed_pipe(own_fingerprint, tmp_path):
    """``host compare A B | head`` still exits with the verdict (2: incompatible)."""
    data = json.loads(own_fingerprint.read_text())
    data["machine"] = "aarch64"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        for form in ((), ("--format", "json")):
            done = subprocess.run([sys.executable, "-m", "crit_plus", "host", "compare",
                                   str(own_fingerprint), str(other), *form], stdout=write_end,
                                  stderr=subprocess.PIPE, text=True, timeout=120, check=False)
            assert done.returncode == 2, done.stderr
    finally:
        os.close(write_end)


def test_compare_warns_of_features_the_target_never_tested(own_fingerprint, tmp_path):
    """A target whose fingerprint was taken where ``criu check`` could not run knows none of
    its kernel features: not "compatible", a warning (exit 1)."""
    data = json.loads(own_fingerprint.read_text())
    if not any(data["kernel_features"].values()):
        pytest.skip("criu check could not run here: no feature of the source is known")
    data["kernel_features"] = dict.fromkeys(data["kernel_features"])
    untested = tmp_path / "untested.json"
    untested.write_text(json.dumps(data))
    done = run_cli("host", "compare", own_fingerprint, untested, "--format", "json")
    assert done.returncode == 1, done.stderr
    found = json.loads(done.stdout)["differences"]
    assert [(d["code"], d["severity"]) for d in found] == [("kernel-feature", "warning")]
    assert "not tested on the target" in found[0]["message"]
