"""``--format html`` of summarize, size and diff, checked in a real browser.

Every page is rendered by the real CLI, then loaded in Debian's headless chromium
(tests/browser.py: one browser for the module, driven over the DevTools protocol):
no console error, no dialog, no script element; the rendered DOM holds one process
entry per process of the checkpoint, nested as the process tree is, and one box per VMA
in each process's memory map, as the graph counts them (never a hard-coded number); a
1280x800 screenshot is not blank.  Pages: every fixture, a 300-process checkpoint
(under 2 MiB), a diff, a size page, and a copy of a fixture with a process named
``<script>alert(1)</script>`` and a file name holding terminal escapes.

Without chromium the browser tests skip, unless CRIT_PLUS_LIVE=required (``make
test``, CI), where they fail: ``scripts/install-system-deps`` installs it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from crit_plus import open_checkpoint
from tests.browser import Browser, find_chromium, luminance_variance
from tests.cli import run_cli
from tests.damage import clone, entry_offsets, replace
from tests.synth import hostile_names, image_bytes, many_processes, read_messages

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_KEYS = sorted(json.loads((FIXTURES / "FACTS.json").read_text()))
#: The issue's bounds for the 300-process page (the time is measured, not asserted:
#: tests/benchmarks/test_bench_html.py, docs/performance.md).
MAX_PAGE_BYTES = 2 << 20
SCRIPT_NAME = "<script>alert(1)</script>"
ESCAPE_NAME = "/srv/app/\x1b[31mred\x1b[0m\x1b]0;owned\x07.log"

#: What the page's DOM holds, read in the browser after the load.
DOM_QUERY = """(() => {
  const procs = [...document.querySelectorAll('details.proc')];
  const parentPid = d => {
    const up = d.parentElement.closest('details.proc');
    return up ? Number(up.dataset.pid) : null;
  };
  const maps = {};
  for (const svg of document.querySelectorAll('svg.map'))
    maps[svg.dataset.pid] = svg.querySelectorAll('rect').length;
  const marks = {};
  for (const svg of document.querySelectorAll('svg.map'))
    marks[svg.dataset.pid] = [...svg.querySelectorAll('path.s')].map(p => p.classList[1]);
  const fds = {};
  for (const d of procs) {
    const table = d.querySelector(':scope > .body table.fd-table');
    fds[d.dataset.pid] = table ? table.querySelectorAll('tr').length : 0;
  }
  return {
    procs: procs.map(d => [Number(d.dataset.pid), parentPid(d)]),
    maps, marks, fds,
    scripts: document.scripts.length,
    external: [...document.querySelectorAll('[src], link[href]')].length,
    findings: [...document.querySelectorAll('tr.finding')].map(tr => [
      tr.querySelector('.sev').textContent, tr.querySelector('td.mono').textContent]),
    sockets: document.querySelectorAll('table.sockets tbody tr').length,
    stats: [...document.querySelectorAll('#stats + dl.fields dt')].map(dt => [
      dt.textContent, dt.nextElementSibling.textContent]),
    bars: [...document.querySelectorAll('svg.bar')].map(s => s.querySelectorAll('rect').length),
    barTitles: Object.fromEntries([...document.querySelectorAll('section.view')].map(s => [
      s.id, [...s.querySelectorAll('svg.bar rect title')].map(t => t.textContent)])),
    strips: document.querySelectorAll('tr.vma-diff svg.strip').length,
    text: document.body.textContent,
  };
})()"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless chromium for the module (skipped without one, unless required)."""
    executable = find_chromium()
    if executable is None:
        reason = "chromium is not installed (scripts/install-system-deps installs it)"
        if os.environ.get("CRIT_PLUS_LIVE") == "required":
            pytest.fail(f"browser tests are required here (CRIT_PLUS_LIVE=required) but "
                        f"{reason}")
        pytest.skip(reason)
    instance = Browser(executable, tmp_path_factory.mktemp("chromium"))
    yield instance
    instance.close()


def render(*args):
    """Run ``crit-plus ARGS --format html -o FILE`` (the last argument) in-process, through
    the CLI's own entry point (:func:`crit_plus.cli.main`); return the file."""
    from crit_plus.cli import main

    code = main([*map(str, args[:-1]), "--format", "html", "-o", str(args[-1])])
    assert code in (0, 1)  # diff exits 1: different
    return Path(args[-1])


def expected_tree(directory):
    """``{pid: (parent pid on the page or None, VMAs, fd rows)}`` from the graph: the
    parent, or below :data:`~crit_plus.html.pages.MAX_NESTING` levels the ancestor there."""
    from crit_plus.html.pages import MAX_NESTING

    checkpoint = open_checkpoint(directory)
    found, path = {}, []
    for depth, process in checkpoint.walk():
        del path[depth:]
        memory = process.memory
        vmas = len(memory.vmas) if memory is not None else 0
        rows = len(process.fds) + (process.cwd is not None) + (process.root is not None)
        parent = path[min(depth, MAX_NESTING) - 1] if depth else None
        found[process.pid] = (parent, vmas, rows)
        path.append(process.pid)
    return found


def check_summary_dom(dom, directory):
    tree = expected_tree(directory)
    assert [pid for pid, _parent in dom["procs"]] == list(tree)
    assert {pid: parent for pid, parent in dom["procs"]} == \
        {pid: parent for pid, (parent, _v, _f) in tree.items()}
    assert {int(pid): n for pid, n in dom["maps"].items()} == \
        {pid: vmas for pid, (_p, vmas, _f) in tree.items() if vmas}
    assert {int(pid): n for pid, n in dom["fds"].items()} == \
        {pid: fds for pid, (_p, _v, fds) in tree.items()}
    assert {int(pid): marks for pid, marks in dom["marks"].items()} == \
        expected_marks(directory)


def expected_marks(directory):
    """``{pid: page states its map marks}`` from the graph: a state is marked when one of
    the process's VMAs has pages in it (pagemap state counts, and the listed pages whose
    data is unavailable), in the legend's order."""
    from crit_plus.html.layout import STRIP_STATES

    found = {}
    for process in open_checkpoint(directory).processes:
        memory = process.memory
        if memory is None or not memory.vmas:
            continue
        states = set()
        for mapping in memory.vmas:
            states |= {state for state, n in mapping.pages.items() if n}
            if memory.unavailable_pages(mapping):
                states.add("unavailable")
        found[process.pid] = [state for state in STRIP_STATES if state in states]
    return found


def loaded_cleanly(browser, path):
    loaded = browser.load(path)
    assert loaded.errors == []
    assert loaded.dialogs == []
    dom = browser.query(DOM_QUERY)
    assert dom["scripts"] == 0 and dom["external"] == 0
    return loaded, dom


def not_blank(browser, name, tmp_path):
    """A 1280x800 screenshot that is not one colour (kept for docs with
    CRIT_PLUS_SCREENSHOTS=DIR)."""
    png = browser.screenshot()
    assert png[16:24] == (1280).to_bytes(4, "big") + (800).to_bytes(4, "big")
    assert luminance_variance(png) > 100
    keep = os.environ.get("CRIT_PLUS_SCREENSHOTS")
    (Path(keep) if keep else tmp_path).joinpath(f"{name}.png").write_bytes(png)


# -- without a browser --------------------------------------------------------------------------


def test_a_page_is_one_self_contained_file(service_a, tmp_path):
    text = render("summarize", service_a, tmp_path / "a.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text)
    assert "default-src 'none'" in text  # and were one let in, the CSP would refuse it


def test_html_refuses_an_output_inside_the_checkpoint(service_a):
    result = run_cli("summarize", service_a, "--format", "html", "-o",
                     service_a / "page.html")
    assert result.returncode == 2 and "never writes into its input" in result.stderr
    assert not (service_a / "page.html").exists()


def test_o_writes_every_format(service_a, tmp_path):
    run_cli("summarize", service_a, "-f", "json", "-o", tmp_path / "s.json", check=True)
    printed = run_cli("summarize", service_a, "-f", "json", check=True).stdout
    assert (tmp_path / "s.json").read_text() == printed


# -- in chromium ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_pages(fixture_root, tmp_path_factory):
    """The summarize page of every fixture, rendered once."""
    out = tmp_path_factory.mktemp("pages")
    return {key: render("summarize", fixture_root / key, out / f"{n}.html")
            for n, key in enumerate(FIXTURE_KEYS)}


@pytest.mark.parametrize("key", FIXTURE_KEYS)
def test_summarize_page_of_every_fixture(browser, fixture_pages, fixture_root, key):
    _loaded, dom = loaded_cleanly(browser, fixture_pages[key])
    check_summary_dom(dom, fixture_root / key)
    assert "Processes" in dom["text"] and "Findings" in dom["text"]


def test_summarize_page_screenshot_light_and_dark(browser, fixture_pages, tmp_path):
    key = next(k for k in FIXTURE_KEYS if "web/after" in k)
    background = "getComputedStyle(document.body).backgroundColor"
    loaded_cleanly(browser, fixture_pages[key])
    not_blank(browser, "summarize", tmp_path)
    assert browser.query(background) == "rgb(255, 255, 255)"
    scheme = [{"name": "prefers-color-scheme", "value": "dark"}]
    browser.call("Emulation.setEmulatedMedia", features=scheme)
    try:
        loaded_cleanly(browser, fixture_pages[key])
        assert browser.query(background) == "rgb(22, 22, 22)"
    finally:
        browser.call("Emulation.setEmulatedMedia", features=[])


def test_validate_badges_count_in_words(browser, fixture_pages, fixture_root):
    """The badges say ``0 errors``, ``1 warning``, ``3 info``: validate's counts of the
    checkpoint, each noun as a count of it reads."""
    from crit_plus.analysis.validate import validate
    from crit_plus.opening import open_source

    plural = {"error": "errors", "warning": "warnings", "info": "info"}
    for key in FIXTURE_KEYS:
        loaded_cleanly(browser, fixture_pages[key])
        badges = browser.query("[...document.querySelectorAll('.badges .sev')]"
                               ".map(e => e.textContent)")
        with open_source(fixture_root / key) as opened:
            report = validate(opened.checkpoint, source=opened.source)
        assert badges == [f"{n} {s if n == 1 else plural[s]}" for s, n in
                          ((s, report.count(s)) for s in plural)]


def page_facts(directory):
    """What a summarize page is built from, computed here from the checkpoint: validate's
    findings ``[(severity, code)]``, the socket rows, the stats-dump ``(label, text)``."""
    from crit_plus.analysis import explore
    from crit_plus.analysis.summary import summarize
    from crit_plus.analysis.validate import validate
    from crit_plus.commands.summarize import stat_label, stat_text
    from crit_plus.opening import open_source

    with open_source(directory) as opened:
        report = validate(opened.checkpoint, source=opened.source)
        result = summarize(opened.source, opened.checkpoint)
        sockets = explore.socket_rows(opened.checkpoint)
    findings = [[f.severity, f.code] for f in report.findings]
    stats = [[stat_label(name), stat_text(name, value)] for name, value in result.stats]
    return findings, len(sockets), stats


@pytest.mark.parametrize("key", FIXTURE_KEYS)
def test_summarize_page_findings_sockets_and_stats(browser, fixture_pages, fixture_root, key):
    """One ``tr.finding`` row per validate finding, with its severity; one socket row per
    socket the checkpoint holds; the stats-dump fields the analysis read."""
    _loaded, dom = loaded_cleanly(browser, fixture_pages[key])
    findings, sockets, stats = page_facts(fixture_root / key)
    assert dom["findings"] == findings
    assert sockets and dom["sockets"] == sockets  # every fixture has sockets
    assert stats and dom["stats"] == stats  # and a stats-dump


def test_missing_pages_are_marked_unavailable(browser, fixture_root, tmp_path):
    """A copy of service-a whose pages-N.img of one process is removed: that process's
    map marks its present pages unavailable (the graph's count), the legend names the
    state, and validate's missing-pages finding is a row of the findings table."""
    source = fixture_root / "service-a"
    directory = clone(source, tmp_path / "damaged")
    process = open_checkpoint(directory).processes[0]
    memory = process.memory
    removed = Path(memory.pages_path)
    assert removed.parent == directory
    removed.unlink()
    damaged = open_checkpoint(directory).process(process.pid).memory
    missing = sum(damaged.unavailable_pages(m) for m in damaged.vmas)
    assert missing == sum(m.pages.get("present", 0) for m in damaged.vmas) > 0
    page = render("summarize", directory, tmp_path / "damaged.html")
    _loaded, dom = loaded_cleanly(browser, page)
    check_summary_dom(dom, directory)
    assert "unavailable" in dom["marks"][str(process.pid)]
    assert all("unavailable" not in marks for pid, marks in dom["marks"].items()
               if int(pid) != process.pid)
    legend = browser.query("[...document.querySelectorAll('.legend rect')]"
                           ".map(r => r.getAttribute('class'))")
    assert {"present", "parent", "lazy", "unavailable"} <= set(legend)
    findings, _sockets, _stats = page_facts(directory)
    assert ["error", "missing-pages"] in findings and dom["findings"] == findings
    titles = browser.query(f"[...document.querySelectorAll('svg.map[data-pid=\"{process.pid}\"]"
                           f" rect title')].map(t => t.textContent)")
    assert any(" unavailable" in title for title in titles)


def test_unknown_pages_are_drawn_unknown(browser, fixture_root, facts, tmp_path):
    """A copy of service-a whose root's pagemap is cut mid-entry: its pages are unknown
    (the graph's :attr:`~crit_plus.pages.ProcessPages.unknown`), so its map carries one
    ``unknown`` strip and no page-state marks, its facts and tooltips say unknown instead
    of 0 pages, the page names the file and offset, and the other process is drawn as
    before."""
    pid = next(p["pid"] for p in facts["service-a"]["processes"] if p["ppid"] == 0)
    directory = clone(fixture_root / "service-a", tmp_path / "cut")
    name = directory / f"pagemap-{pid}.img"
    offsets, _size = entry_offsets(name)
    entry = offsets[len(offsets) // 2]
    replace(name, name.read_bytes()[:entry + 5])
    unknown = open_checkpoint(directory).process(pid).pages.unknown
    assert unknown and f"{entry:#x}" in unknown
    page = render("summarize", directory, tmp_path / "cut.html")
    _loaded, dom = loaded_cleanly(browser, page)
    expected = expected_marks(directory)
    assert dom["marks"][str(pid)] == ["unknown"]
    assert {int(p): m for p, m in dom["marks"].items() if int(p) != pid} == \
        {p: m for p, m in expected.items() if p != pid} and len(expected) > 1
    found = browser.query(f"""(() => {{
      const d = document.querySelector('details.proc[data-pid="{pid}"]');
      return {{facts: d.querySelector(':scope > summary').textContent,
               note: d.querySelector(':scope > .body > p.pages-unknown').textContent,
               titles: [...d.querySelectorAll(':scope > .body svg.map rect title')]
                 .map(t => t.textContent),
               legend: [...document.querySelectorAll('.legend rect')]
                 .map(r => r.getAttribute('class'))}};
    }})()""")
    assert "private pages unknown" in found["facts"] and "pages present" not in found["facts"]
    assert found["note"] == f"pages unknown: {unknown}"
    assert found["titles"] and not any(t.endswith("no pages") for t in found["titles"])
    assert "unknown" in found["legend"]
    assert f"private pages of pid {pid} unknown" in dom["text"]  # the totals' memory line


def test_300_processes(browser, tmp_path):
    directory = tmp_path / "many"
    many_processes(directory, processes=300, vmas=24, fds=4)
    page = render("summarize", directory, tmp_path / "many.html")
    assert page.stat().st_size < MAX_PAGE_BYTES
    loaded, dom = loaded_cleanly(browser, page)
    check_summary_dom(dom, directory)
    assert len(dom["procs"]) == 300 and sum(dom["maps"].values()) == 300 * 24
    assert loaded.seconds is not None
    not_blank(browser, "summarize-300", tmp_path)


def test_a_deep_tree_stays_nested_as_far_as_a_browser_nests(browser, tmp_path):
    """A chain of 300 processes, each the child of the one before: nested up to
    MAX_NESTING levels (Chromium's parser flattens deeper elements), then side by side."""
    from tests.synth import CheckpointBuilder, proc

    directory = tmp_path / "chain"
    builder = CheckpointBuilder(directory)
    builder.inventory()
    builder.pstree([proc(1)] + [proc(pid, ppid=pid - 1, pgid=1, sid=1) for pid in
                                range(2, 301)])
    for pid in range(1, 301):
        builder.process(pid, comm=f"level-{pid}")
    builder.finish()
    page = render("summarize", directory, tmp_path / "chain.html")
    _loaded, dom = loaded_cleanly(browser, page)
    check_summary_dom(dom, directory)
    assert "ppid 299" in dom["text"]


def test_diff_page(browser, service_a, fixture_root, tmp_path):
    from crit_plus.analysis.diff import diff_checkpoints

    new = fixture_root / "service-b"
    page = render("diff", service_a, new, tmp_path / "diff.html")
    _loaded, dom = loaded_cleanly(browser, page)
    report = diff_checkpoints(open_checkpoint(service_a), open_checkpoint(new))
    differing = sum(1 for process in report.memory.processes for row in process.vmas
                    if row.differs)
    assert differing and dom["strips"] == differing
    processes = report.processes
    assert len(processes.started) + len(processes.changed) >= 1
    rows = browser.query("document.querySelectorAll('table.processes tbody tr').length")
    assert rows == len(processes.started) + len(processes.exited) + len(processes.changed)
    fd_rows = browser.query("document.querySelectorAll('table.fd-changes tbody tr').length")
    assert fd_rows == len(report.files.fds)
    not_blank(browser, "diff", tmp_path)


def bar_titles(items):
    """The tooltips of a size page bar of ``(label, bytes)`` items: the non-zero ones,
    biggest first (at most 8, so none folded into "others")."""
    from crit_plus.describe import human_bytes

    shown = sorted(((label, n) for label, n in items if n), key=lambda item: -item[1])
    assert 0 < len(shown) <= 8
    return [f"{label}: {human_bytes(n)}" for label, n in shown]


def test_size_page(browser, service_a, tmp_path):
    page = render("size", service_a, "--content", "--bandwidth", "1Gbit/s",
                  tmp_path / "size.html")
    _loaded, dom = loaded_cleanly(browser, page)
    from crit_plus.analysis.content import scan_content
    from crit_plus.analysis.size import measure

    report = measure(open_checkpoint(service_a))
    owners = [item.disk.apparent for item in (*report.processes, *report.shared)]
    owners.append(report.common.apparent)
    kinds = [kind.apparent for kind in report.kinds]
    assert len(dom["bars"]) == 4  # image kinds, owners, VMA kinds, page contents
    assert dom["bars"][0] == min(8, sum(1 for n in kinds if n))
    assert dom["bars"][1] == min(8, sum(1 for n in owners if n))
    vma_kinds = [(v.kind, v.pages.present_bytes) for v in report.vma_kinds]
    assert dom["barTitles"]["vma-kinds"] == bar_titles(vma_kinds)
    scan = scan_content(open_checkpoint(service_a))
    assert scan.zero or scan.dup_within or scan.dup_across
    contents = [("zero pages", scan.zero), ("duplicates within a process", scan.dup_within),
                ("duplicates across processes", scan.dup_across), ("unique", scan.unique),
                ("unreadable (missing from the pages file)", scan.unreadable)]
    assert dom["barTitles"]["content"] == \
        bar_titles([(label, n * 4096) for label, n in contents])
    assert "Transfer at" in dom["text"]
    not_blank(browser, "size", tmp_path)


# -- container archives: root-filesystem changes ---------------------------------------------

ROOTFS_QUERY = """(() => {
  const section = document.querySelector('section#rootfs');
  if (!section) return null;
  return {
    heading: section.querySelector('h2').textContent,
    rows: [...section.querySelectorAll('table.rootfs-changes tbody tr')].map(
      tr => [...tr.querySelectorAll('td')].map(td => td.textContent)),
  };
})()"""


@pytest.fixture(scope="module")
def pod(fixture_root, tmp_path_factory):
    """A pod archive (tests/container_archives.py) whose two containers record
    root-filesystem changes (rootfs-diff.tar, deleted.files)."""
    from tests import container_archives as ca

    return ca.pod_archive(tmp_path_factory.mktemp("pod") / "pod.tar", fixture_root)


def test_summarize_page_lists_a_containers_rootfs_changes(browser, pod, tmp_path):
    from crit_plus.sources import resolve

    page = render("summarize", f"{pod}:counter", tmp_path / "counter.html")
    _loaded, dom = loaded_cleanly(browser, page)
    with resolve(f"{pod}:counter") as source:
        rootfs = source.rootfs
    found = browser.query(ROOTFS_QUERY)
    assert found is not None and "Root file system changes" in found["heading"]
    expected = [("deleted", path) for path in rootfs.deleted]
    expected += [("added/modified", entry.path) for entry in rootfs.entries
                 if entry.kind != "dir"]
    assert expected and [(row[0], row[-1]) for row in found["rows"]] == expected
    files = sum(1 for entry in rootfs.entries if entry.kind != "dir")
    assert f"{files} files added or modified" in dom["text"]


def test_summarize_page_of_a_directory_has_no_rootfs_section(browser, fixture_pages):
    loaded_cleanly(browser, fixture_pages[FIXTURE_KEYS[0]])
    assert browser.query(ROOTFS_QUERY) is None


def test_diff_page_lists_the_rootfs_changes(browser, pod, tmp_path):
    from crit_plus.sources import resolve
    from crit_plus.sources.rootfs import diff_rootfs

    page = render("diff", f"{pod}:counter", f"{pod}:web", "--only", "rootfs",
                  tmp_path / "rootfs.html")
    loaded_cleanly(browser, page)
    with resolve(f"{pod}:counter") as old, resolve(f"{pod}:web") as new:
        section = diff_rootfs(old.rootfs, new.rootfs)
    found = browser.query(ROOTFS_QUERY)
    assert found is not None and found["heading"].startswith("Root file system (")
    assert f"{section.count('added')} added" in found["heading"]
    assert [(row[0], row[1]) for row in found["rows"]] == \
        [(change.change, change.path) for change in section.changes]
    assert section.changes


# -- hostile names -------------------------------------------------------------------------------


def hostile_copy(service_a, target):
    """A copy of service-a whose first process is named ``<script>alert(1)</script>`` and
    whose files.img names a file with terminal escapes (OSC title, SGR colours)."""
    directory = clone(service_a, target)
    pid = open_checkpoint(directory).processes[0].pid

    def rewrite(name, edit):
        magic, head, messages = read_messages(directory / name)
        for message in messages:
            edit(message)
        replace(directory / name, image_bytes(magic, messages, head))

    def rename(core):
        core.tc.comm = SCRIPT_NAME
        core.thread_core.comm = SCRIPT_NAME

    def escape(entry):
        if entry.HasField("reg") and entry.reg.name == "/srv/app/data.bin":
            entry.reg.name = ESCAPE_NAME

    rewrite(f"core-{pid}.img", rename)
    rewrite("files.img", escape)
    return directory, pid


def test_hostile_names_show_as_text(browser, service_a, tmp_path):
    directory, pid = hostile_copy(service_a, tmp_path / "hostile")
    assert open_checkpoint(directory).process(pid).comm == SCRIPT_NAME
    page = render("summarize", directory, tmp_path / "hostile.html")
    raw = page.read_text(encoding="utf-8")
    assert SCRIPT_NAME not in raw and "\x1b" not in raw
    _loaded, dom = loaded_cleanly(browser, page)  # no dialog: alert(1) never ran
    comm = browser.query(f"document.querySelector('details.proc[data-pid=\"{pid}\"] "
                         f".comm').textContent")
    assert comm == SCRIPT_NAME
    assert "/srv/app/\\x1b[31mred\\x1b[0m\\x1b]0;owned\\x07.log" in dom["text"]
    assert "\x1b" not in dom["text"]


def test_bytes_that_are_not_utf8_show_escaped(browser, tmp_path):
    """tests/synth.py's hostile names: C0/C1 controls, bidi overrides, a line break and
    bytes that are not UTF-8 in comm, a file path, a socket name, the command line."""
    directory = hostile_names(tmp_path / "hostile").directory
    page = render("summarize", directory, tmp_path / "hostile.html")
    raw = page.read_bytes().decode("utf-8")  # valid UTF-8 whatever the names held
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e]", raw)
    _loaded, dom = loaded_cleanly(browser, page)
    check_summary_dom(dom, directory)
    assert "\\x1b[31mev\\xff\\nl\\x85\\u202e" in dom["text"]  # comm, as text shows it
    assert "/srv/\\x1b]0;owned\\x07\\xfe\\xfd/\\r\\x9bx.log" in dom["text"]


# -- the report bundle ---------------------------------------------------------------------------


def test_report_bundle_holds_the_summarize_page(service_a, tmp_path):
    import tarfile

    from crit_plus.cli import main

    bundle = tmp_path / "report.tar.gz"
    assert main(["report", str(service_a), "-o", str(bundle)]) == 0
    with tarfile.open(bundle) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/summarize.html"))
        page = archive.extractfile(member).read().decode()
    assert page.startswith("<!DOCTYPE html>")
    processes = open_checkpoint(service_a).processes
    assert page.count('<details class="proc"') == len(processes)


def test_templates_ship_as_package_data():
    """A non-editable install carries every template (pyproject.toml's package data)."""
    import fnmatch
    import tomllib

    import crit_plus.html as package

    project = tomllib.loads((FIXTURES.parent / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["crit_plus.html"]
    templates = Path(package.__file__).parent / "templates"
    files = [f"templates/{path.name}" for path in templates.iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, p) for p in patterns) for f in files)


# -- a real dump of 300 processes ----------------------------------------------------------------


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return handle.read().split()
    except FileNotFoundError:
        return []


def dump_sleeping_children(criu, directory, count=300):
    """Dump (real CRIU, the tasks killed after) a shell with ``count`` sleeping children
    into ``directory``."""
    import subprocess

    from tests.workloads import harness

    script = f"for i in $(seq {count}); do sleep 100000 & done; wait"
    with open(os.devnull, "r+b") as null:
        shell = subprocess.Popen(["sh", "-c", script], stdin=null, stdout=null, stderr=null,
                                 start_new_session=True, cwd="/")
    try:
        assert harness.wait_until(lambda: len(_children(shell.pid)) == count, 60)
        harness.dump(criu, shell.pid, directory, leave_running=False, options=())
    finally:
        harness.kill_group(shell.pid, [int(pid) for pid in _children(shell.pid)])
        shell.wait(10)


@pytest.mark.live
def test_300_sleeping_children_dumped_by_criu(criu, browser, tmp_path):
    """A shell with 300 sleeping children, dumped by real CRIU: its page is under 2 MiB, and
    holds every process and VMA the graph reads from the dump."""
    dump_sleeping_children(criu, tmp_path / "images")
    page = render("summarize", tmp_path / "images", tmp_path / "shell.html")
    assert page.stat().st_size < MAX_PAGE_BYTES
    loaded, dom = loaded_cleanly(browser, page)
    check_summary_dom(dom, tmp_path / "images")
    assert len(dom["procs"]) == 301
    print(f"\n301 processes dumped by CRIU: page {page.stat().st_size} bytes, "
          f"painted in {loaded.seconds:.3f} s")
