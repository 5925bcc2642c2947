"""A pagemap cut mid-entry: the process's page counts are unknown, not 0.

A copy of service-a whose ``pagemap-<root>.img`` ends 5 bytes into an entry (inside its
message): the graph decides once that the root's private pages are unknown
(:attr:`crit_plus.pages.ProcessPages.unknown`, naming the file and offset) and
summarize, rss, mems and ps show ``?`` (null in JSON) where they would count them;
diff does not count what cannot be read as a change."""

from __future__ import annotations

import html
import json
import re

import pytest

from crit_plus.analysis.diff import diff_checkpoints
from crit_plus.opening import open_source
from tests.cli import run_cli
from tests.damage import clone, entry_offsets, replace, workspace  # noqa: F401 (fixture)


def _root_pid(facts):
    return next(p["pid"] for p in facts["service-a"]["processes"] if p["ppid"] == 0)


@pytest.fixture
def cut(service_a, facts, workspace):  # noqa: F811 (the fixture imported above)
    """``(directory, pid, offset)``: service-a with the root's pagemap cut mid-entry."""
    pid = _root_pid(facts)
    directory = clone(service_a, workspace / "cut")
    name = directory / f"pagemap-{pid}.img"
    offsets, _size = entry_offsets(name)
    entry = offsets[len(offsets) // 2]
    replace(name, name.read_bytes()[:entry + 5])
    return directory, pid, entry


def test_the_graph_says_the_pages_are_unknown(cut, service_a):
    directory, pid, entry = cut
    with open_source(str(directory)) as opened:
        process = opened.checkpoint.process(pid)
        unknown = process.pages.unknown
        assert unknown and f"pagemap-{pid}.img" in unknown and f"{entry:#x}" in unknown
        assert not process.pages.known
        assert process.command_line is None
        assert process.command_line_unknown == unknown
        others = [p for p in opened.checkpoint.processes if p.pid != pid]
        assert others and all(p.pages.known and p.pages.private.listed for p in others)
    with open_source(str(service_a)) as opened:  # an intact checkpoint: everything known
        assert all(p.pages.known and p.command_line_unknown is None
                   for p in opened.checkpoint.processes)


def test_summarize_rss_mems_ps_show_unknown(cut):
    directory, pid, _entry = cut
    data = json.loads(run_cli("summarize", directory, "-f", "json").stdout)
    row = next(p for p in data["processes"] if p["pid"] == pid)
    assert row["pages"] is None and row["present"] is None and row["pages_unknown"]
    assert pid in data["totals"]["pages_unknown"]
    assert all(p["pid"] != pid for p in data["top_processes"])
    text = run_cli("summarize", directory).stdout
    line = next(li for li in text.splitlines() if li.startswith(f"{pid} "))
    assert line.split()[6:9] == ["?", "1", "?"]  # PAGES, SHMEM, SIZE
    assert f"private pages of pid {pid} unknown" in text

    rss = json.loads(run_cli("rss", directory, "-f", "json").stdout)
    row = next(p for p in rss if p["pid"] == pid)
    assert (row["present"], row["total"]) == (None, None) and row["pages_unknown"]
    assert all(kind["present"] is None for kind in row["by_kind"])
    other = next(p for p in rss if p["pid"] != pid)
    assert other["present"] > 0 and other["pages_unknown"] is None
    text = run_cli("rss", directory).stdout
    assert f"{pid}  python3  all" in text.replace("   ", "  ")
    all_row = next(li for li in text.splitlines() if li.startswith(str(pid)) and " all " in li)
    assert all_row.split()[4:7] == ["?", "?", "?"]
    assert f"pid {pid}: pages unknown (?): pagemap-{pid}.img" in text

    mems = json.loads(run_cli("mems", directory, pid, "-f", "json").stdout)
    assert mems[0]["pages_unknown"]
    assert all(set(v["pages"].values()) == {None} for v in mems[0]["vmas"])

    size = json.loads(run_cli("size", directory, "-f", "json").stdout)
    row = next(p for p in size["processes"] if p["pid"] == pid)
    assert row["pages"]["present"] is None and row["pages_unknown"]
    owner = next(li for li in run_cli("size", directory).stdout.splitlines()
                 if li.startswith(f"{pid} python3"))
    assert owner.split()[3:6] == ["?", "?", "?"]

    ps = json.loads(run_cli("ps", directory, "-f", "json").stdout)
    row = next(p for p in ps if p["pid"] == pid)
    assert row["argv"] is None and f"pagemap-{pid}.img" in row["argv_unknown"]
    text = run_cli("ps", directory).stdout
    assert f"? (unreadable: pagemap-{pid}.img" in text and "[python3]" not in text


def test_diff_does_not_count_what_cannot_be_read(cut, service_a):
    directory, pid, _entry = cut
    with open_source(str(service_a)) as old, open_source(str(directory)) as new:
        report = diff_checkpoints(old.checkpoint, new.checkpoint, old_source=old.source,
                                  new_source=new.source, content=False)
    section = report.processes
    assert not section.differs and "processes" not in report.differing
    assert [(o, n, item.field) for o, n, item in section.not_compared] == [(pid, pid, "argv")]
    assert f"NEW pagemap-{pid}.img" in section.not_compared[0][2].reason
    assert report.pairing.method == "pid"
    done = run_cli("diff", service_a, directory, "--no-content")
    assert done.returncode == 2  # a side's images have errors (docs/commands/diff.md)
    assert "different: processes" not in done.stdout and "-> -" not in done.stdout
    assert f"not compared: {pid} argv: NEW pagemap-{pid}.img" in done.stdout
    assert "identical where compared (1 value not compared)" in done.stdout
    data = json.loads(run_cli("diff", service_a, directory, "--no-content",
                              "--format", "json").stdout)
    assert data["processes"]["changed"] == []
    assert [(c["new_pid"], c["field"]) for c in data["processes"]["not_compared"]] == [
        (pid, "argv")]


def test_size_totals_say_at_least_and_name_the_pid(cut, service_a):
    directory, pid, _entry = cut
    with open_source(str(directory)) as opened:
        assert opened.checkpoint.pages.unknown == (pid,)  # decided once, in the graph
    size = json.loads(run_cli("size", directory, "-f", "json").stdout)
    assert size["pages_unknown_pids"] == [pid]
    summary = json.loads(run_cli("summarize", directory, "-f", "json").stdout)
    assert summary["totals"]["pages_unknown"] == size["pages_unknown_pids"]
    line = next(li for li in run_cli("size", directory).stdout.splitlines()
                if li.startswith("pages "))
    assert "at least " in line and f"private pages of pid {pid} unknown" in line
    intact = json.loads(run_cli("size", service_a, "-f", "json").stdout)
    assert intact["pages_unknown_pids"] == []
    line = next(li for li in run_cli("size", service_a).stdout.splitlines()
                if li.startswith("pages "))
    assert "at least" not in line and "unknown" not in line


def test_diff_html_lists_what_it_could_not_compare(cut, service_a, tmp_path):
    directory, pid, _entry = cut
    page = tmp_path / "diff.html"
    done = run_cli("diff", service_a, directory, "--no-content", "--format", "html", "-o", page)
    assert done.returncode == 2
    text = page.read_text(encoding="utf-8")
    listed = re.search(r'<ul class="not-compared">(.*?)</ul>', text, re.S)
    assert listed, "the processes section lists no value it could not compare"
    items = [html.unescape(li) for li in re.findall(r"<li[^>]*>(.*?)</li>", listed.group(1))]
    lines = [li for li in run_cli("diff", service_a, directory, "--no-content").stdout
             .splitlines() if li.startswith("not compared: ")]
    assert items == lines and len(items) == 1 and f"{pid} argv: NEW pagemap-{pid}.img" in items[0]
    intact = tmp_path / "same.html"
    run_cli("diff", service_a, service_a, "--no-content", "--format", "html", "-o", intact)
    assert "not-compared" not in intact.read_text(encoding="utf-8")
