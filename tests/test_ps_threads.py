"""``ps --long`` when the threads of a process differ: the row shows the leader's value and
``(N of M threads)`` when only N threads have it, from the graph's one rule for the seccomp a
thread runs once restored (crit_plus/confinement.py ``restored_seccomp``).

CRIU writes a thread's seccomp mode only when it is not disabled, and drops the chains of
the other threads when they are the same as the leader's, marking the leader's filters
``SECCOMP_FILTER_FLAG_TSYNC`` instead (criu/seccomp.c, ``try_use_tsync``): such a thread
holds no mode in its core, yet runs the leader's filters after a restore.  The lxd-deb
fixture's rsyslogd (pid 43) is one: its threads 46 and 48 hold none.  Copies of the real
fixtures (their images rewritten) stand for what this machine's dumps do not show: filters
without TSYNC, an LSM label on one thread, an older CRIU's per-process filter."""

from __future__ import annotations

import json
import shutil

import pytest

import crit_plus
from tests.cli import run_cli
from tests.oracle import crit_json
from tests.synth import rewrite_image

DEB = "lxd-deb/var/lib/lxd/storage-pools/default/containers-snapshots/deb/s1/state"
NOTE = ("(N of M threads): the leader's value, which N of the process's M threads have; "
        "`--format json` shows each thread's")


@pytest.fixture(scope="module")
def deb(fixture_root):
    return fixture_root / DEB


def _copy(directory, tmp_path, name="copy"):
    copy = tmp_path / name
    shutil.copytree(directory, copy, symlinks=True)
    return copy


def _cells(directory, column):
    """PID → the ``ps --long`` table's cell of ``column`` (cut at the header's columns)."""
    done = run_cli("ps", directory, "--long")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = lines[0].index(column)
    end = min((lines[0].index(word, start) for word in lines[0][start:].split()[1:2]),
              default=None)
    return {int(line.split()[0]): line[start:end].strip()
            for line in lines[2:] if line[:1].isdigit()}, done.stdout


def _sources(directory, pid):
    done = run_cli("ps", directory, "--long", "--format", "json")
    assert done.returncode == 0, done.stderr
    [row] = [row for row in json.loads(done.stdout) if row["pid"] == pid]
    return {t["tid"]: (t["seccomp_mode"], t["seccomp_source"]) for t in row["detail"]}


def _no_tsync(copy):
    def clear(messages):
        for item in messages[0].seccomp_filters:
            item.flags = 0
    rewrite_image(copy / "seccomp.img", clear)


def test_threads_given_the_leaders_filters_by_tsync_share_them(deb):
    """pid 43's threads 46 and 48 hold no seccomp mode, and the leader's filter carries
    TSYNC (crit's decoding): CRIU restores the leader's filter for all three, so the row
    says filter(1:33) with no mark and the JSON says where each thread's comes from."""
    leader = crit_json(deb / "core-43.img")["entries"][0]["thread_core"]
    assert leader["seccomp_mode"] == "filter"
    top = crit_json(deb / "seccomp.img")["entries"][0]["seccomp_filters"][
        leader["seccomp_filter"]]
    assert top["flags"] & 1  # SECCOMP_FILTER_FLAG_TSYNC
    for tid in (46, 48):
        assert "seccomp_mode" not in crit_json(deb / f"core-{tid}.img")["entries"][0][
            "thread_core"]
    assert _sources(deb, 43) == {43: ("filter", "own"), 46: (None, "leader"),
                                 48: (None, "leader")}
    cells, text = _cells(deb, "SECCOMP")
    assert cells[43] == "filter(1:33)" and NOTE not in text
    process = crit_plus.open_checkpoint(deb).process(43)
    restored = [process.checkpoint.thread_seccomp(process, t) for t in process.threads]
    assert {r.programs for r in restored} == {restored[0].programs}
    assert [r.source for r in restored] == ["own", "leader", "leader"]


def test_threads_without_filters_and_no_tsync_are_shown_to_differ(deb, tmp_path):
    """The same dump with the filters' TSYNC flag cleared: a restore gives the filter to
    the leader only, so 46 and 48 run none: the row says so (1 of 3), with the note."""
    copy = _copy(deb, tmp_path)
    _no_tsync(copy)
    assert _sources(copy, 43) == {43: ("filter", "own"), 46: (None, "none"),
                                  48: (None, "none")}
    cells, text = _cells(copy, "SECCOMP")
    assert cells[43] == "filter(1:33) (1 of 3 threads)"
    assert cells[1] == "filter(1:33)"  # one thread: nothing to compare
    assert text.rstrip().endswith(NOTE)
    tree = run_cli("ps", copy, "--long", "--format", "tree").stdout
    assert "filter(1:33) (1 of 3 threads)" in tree


def test_an_older_criu_per_process_filter_is_every_threads(deb, tmp_path):
    """An older CRIU kept the filter in the task part (``tc.old_seccomp_*``); CRIU 4.2.1
    restores it with TSYNC forced (criu/cr-restore.c), so every thread runs it, even
    without the flag in seccomp.img."""
    copy = _copy(deb, tmp_path)
    _no_tsync(copy)

    def per_process(messages):
        core = messages[0]
        index = core.thread_core.seccomp_filter
        core.thread_core.ClearField("seccomp_mode")
        core.thread_core.ClearField("seccomp_filter")
        core.tc.old_seccomp_mode = 2  # filter
        core.tc.old_seccomp_filter = index

    rewrite_image(copy / "core-43.img", per_process)
    assert _sources(copy, 43) == {43: ("filter", "own"), 46: (None, "leader"),
                                  48: (None, "leader")}
    assert _cells(copy, "SECCOMP")[0][43] == "filter(1:33)"


def test_an_lsm_label_on_the_leader_only_is_shown_as_one_of_four(service_a, tmp_path):
    """A copy of service-a whose leader alone carries an AppArmor profile: LSM says
    ``crit-plus-leader (1 of 4 threads)``; the other columns, the same in every thread,
    have no mark."""
    copy = _copy(service_a, tmp_path)

    def apparmor(messages):
        messages[0].lsmtype = 2  # APPARMOR (images/inventory.proto)

    def profile(messages):
        messages[0].thread_core.creds.lsm_profile = "crit-plus-leader"

    rewrite_image(copy / "inventory.img", apparmor)
    rewrite_image(copy / "core-12525.img", profile)
    cells, text = _cells(copy, "LSM")
    assert cells[12525] == "crit-plus-leader (1 of 4 threads)"
    assert text.count("of 4 threads)") == 1 and NOTE in text  # the LSM cell only
    assert "threads)" not in run_cli("ps", service_a, "--long").stdout
