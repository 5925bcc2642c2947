"""``crit-plus diff`` against reality: two ``--leave-running`` dumps of the service
around one known change, and diff must report exactly that change.

Between the dumps the service advances from stage 0 to stage 1 (SIGUSR1, see
``tests/workloads/service.py``): it forks one more worker, opens
``stage-1.txt``, appends a line to ``service.log``, closes its UDP socket (worker 1
keeps its copy, so the socket itself does not go away), rewrites every 16th page of
its 512 KiB random region and maps a new 256 KiB region.  The expected report is
derived from the service's own description of itself before and after (its
INFO_JSON: pids, fds with their /proc targets and positions, region addresses and
the rewritten pages), not written down by hand.  The command runs as users run it
(``crit-plus diff OLD NEW --format json``, schema in docs/commands/diff.md).

Memory the Python interpreter changes by itself (its heap, its stacks) is not the
service's doing and is not checked; inside the random region and the new region
every page is.  See docs/live.md.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.cli import run_cli
from tests.workloads import harness

pytestmark = pytest.mark.live

PAGE = 4096


@pytest.fixture(scope="module")
def report(criu, tmp_path_factory):
    """(info at stage 0, info at stage 1, diff's JSON, its exit code)."""
    base = tmp_path_factory.mktemp("live-diff")
    service = harness.Service.start(base / "app", base / "info.json",
                                    marker=f"diff-{os.getpid()}")
    try:
        before = service.info
        harness.dump(criu, service.pid, base / "stage-0", leave_running=True)
        after = service.advance()
        harness.dump(criu, service.pid, base / "stage-1", leave_running=True)
    finally:
        service.kill()
    done = run_cli("diff", base / "stage-0", base / "stage-1", "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    return before, after, json.loads(done.stdout), done.returncode


def _targets(info):
    """{(pid, fd): (/proc target, pos)} of every process the service described."""
    return {(p["pid"], int(n)): (f["target"], f.get("pos"))
            for p in info["processes"] for n, f in p["fds"].items()}


def test_exit_status_and_pairing(report):
    before, after, data, code = report
    assert code == 1 and not data["identical"]
    assert data["old"]["errors"] == data["new"]["errors"] == 0
    assert data["pairing"]["method"] == "pid"
    shared = sorted(p["pid"] for p in before["processes"])
    assert sorted(pair["old_pid"] for pair in data["pairing"]["pairs"]) == shared
    assert all(pair["old_pid"] == pair["new_pid"] for pair in data["pairing"]["pairs"])


def test_one_worker_started_and_nothing_else_changed(report):
    """The new worker is the only process difference: no process exited, no field of
    the two others changed (threads included: the main process keeps its 4)."""
    before, after, data, _code = report
    old_pids = {p["pid"] for p in before["processes"]}
    new = [p for p in after["processes"] if p["pid"] not in old_pids]
    assert len(new) == 1
    processes = data["processes"]
    assert [(p["pid"], p["ppid"], p["threads"], p["state"]) for p in processes["started"]] == \
        [(new[0]["pid"], new[0]["ppid"], len(new[0]["tids"]), "alive")]
    assert processes["started"][0]["fds"] == len(new[0]["fds"])
    assert processes["exited"] == [] and processes["changed"] == []
    assert processes["unchanged"] == len(old_pids)


def test_fd_changes_are_the_ones_the_service_made(report):
    """Per process and fd: opened, closed and changed exactly where the service's /proc
    view before and after differs — stage-1.txt opened and the UDP socket closed in the
    main process, service.log's position moved in both old processes."""
    before, after, data, _code = report
    old, new = _targets(before), _targets(after)
    shared = {p["pid"] for p in before["processes"]}
    expected = {}
    for key in (set(old) | set(new)):
        if key[0] not in shared:
            continue  # the started worker's fds are part of "started"
        if key not in old:
            expected[key] = "opened"
        elif key not in new:
            expected[key] = "closed"
        elif old[key] != new[key]:
            expected[key] = "changed"
    fds = {(f["old_pid"], f["fd"]): f for f in data["files"]["fds"]}
    assert {key: f["change"] for key, f in fds.items()} == expected
    for key, change in expected.items():
        if change == "opened":
            assert fds[key]["new"]["name"] == new[key][0] == after["files"]["stage-1.txt"]
        elif change == "closed":
            role = next(p for p in before["processes"] if p["pid"] == key[0])["fds"][str(key[1])]
            assert role["role"] == "udp" and fds[key]["old"]["kind"] == "inet"
            assert fds[key]["old"]["name"] == "{}:{}".format(*before["udp"])
        else:
            assert fds[key]["new"]["name"] == new[key][0] == before["files"]["service.log"]
            assert fds[key]["fields"] == [{"field": "pos", "old": old[key][1], "new": new[key][1]}]
    assert sorted(expected.values()) == ["changed", "changed", "closed", "opened"]


def test_files_that_appeared_are_the_new_targets(report):
    """Over the whole checkpoint only stage-1.txt appeared (held by the main process and
    the worker it forked after opening it); nothing disappeared: the UDP socket the main
    process closed is still held by worker 1."""
    before, after, data, _code = report
    old_targets = {target for target, _pos in _targets(before).values()}
    new_targets = {target for target, _pos in _targets(after).values()}
    assert new_targets - old_targets == {after["files"]["stage-1.txt"]}
    assert old_targets - new_targets == set()
    objects = data["files"]["objects"]
    assert [(o["change"], o["kind"], o["name"]) for o in objects] == \
        [("appeared", "file", after["files"]["stage-1.txt"])]
    holders = sorted([p["pid"], int(n)] for p in after["processes"]
                     for n, f in p["fds"].items() if f["target"] == after["files"]["stage-1.txt"])
    assert sorted(objects[0]["new_holders"]) == holders


def _rows_over(process, start, end):
    """The memory diff's VMA rows of ``process`` whose NEW (else OLD) range overlaps
    ``[start, end)``."""
    out = []
    for row in process["vmas"]:
        view = row["new"] or row["old"]
        if view["start"] < end and start < view["end"]:
            out.append(row)
    return out


def _main_memory(data, info):
    main = info["processes"][0]["pid"]
    return next(p for p in data["memory"]["processes"] if p["old_pid"] == main)


def test_the_new_region_is_added_memory(report):
    """The 256 KiB region mapped at stage 1 is a new VMA (or the growth of a neighbour the
    kernel merged it into), all of its 64 pages added."""
    _before, after, data, _code = report
    region = next(r for r in after["regions"] if r["name"] == "stage-1")
    start, end = region["address"], region["address"] + region["size"]
    rows = _rows_over(_main_memory(data, after), start, end)
    assert len(rows) == 1, rows
    row = rows[0]
    new = row["new"]
    if row["change"] == "added":
        assert (new["start"], new["end"]) == (start, end)
    else:  # merged into a neighbour that kept its start or its end
        assert row["change"] == "grown", row
        old = row["old"]
        growth = (old["end"], new["end"]) if new["start"] == old["start"] else \
            (new["start"], old["start"])
        assert growth == (start, end), (old, new)
    assert row["pages"]["added"] == region["size"] // PAGE
    assert row["pages"]["removed"] == 0


def test_exactly_the_rewritten_pages_of_the_random_region_changed(report):
    """Inside the 512 KiB random region the changed pages are exactly the ones the
    service says it rewrote (every 16th), no page more or less; the region's VMA is the
    same on both sides."""
    before, after, data, _code = report
    region = next(r for r in after["regions"] if r["name"] == "random")
    start, end = region["address"], region["address"] + region["size"]
    expected = {start + page * PAGE for page in region["rewritten_pages"]}
    assert len(expected) == region["size"] // PAGE // 16
    rows = _rows_over(_main_memory(data, after), start, end)
    assert rows and all(row["change"] == "same" for row in rows)
    changed = set()
    for row in rows:
        assert row["more_ranges"] == 0, "more changed ranges than the JSON lists"
        for first, last in row["changed_ranges"]:
            changed |= {a for a in range(first, last, PAGE) if start <= a < end}
    assert changed == expected
    unchanged_region = next(r for r in before["regions"] if r["name"] == "random")
    assert unchanged_region["sha256"] != region["sha256"]  # the service did rewrite it
