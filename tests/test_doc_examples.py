"""The ``console`` examples of README.md and docs/commands/*.md that run on the fixtures,
run as written and compared with the output the docs show.

Each example is named by its document and its command line (:data:`EXAMPLES`); the test
finds it in its ```` ```console ```` block, runs it with the fixtures' directory as the
working directory (``service-a``, ``lxd-web/...`` as the docs write them; ``lxd:`` names
without ``--lxd-dir`` find the ``lxd-web`` fixture through ``CRIT_PLUS_ROOT``, whose prefix
is taken out of the output as a user's machine would not print it) and compares:

- a block without ``...`` must be the output, line for line;
- a block with ``...`` lines elides: its other lines must appear in the output in order,
  and a line ending in `` ...`` matches a line that starts with what comes before it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: (document, command line after ``$ crit-plus``) of the examples run here.
EXAMPLES = [
    ("README.md", "summarize lxd:web/after"),
    ("README.md", "validate lxd:web"),
    ("README.md", "diff lxd:web/before lxd:web/after"),
    ("docs/commands/list.md", "list --lxd-dir lxd-web/var/lib/lxd"),
    ("docs/commands/mem.md", "mem grep lxd-web/var/lib/lxd/storage-pools/default/containers/"
                             "web/state 'BusyBox v' --kind file"),
    ("docs/commands/diff.md", "diff service-a service-b --only processes --format json"),
]


def console_examples(document):
    """``[(argv, expected lines)]`` of every ``$ crit-plus`` command in ``document``'s
    console blocks (a trailing ``# comment`` dropped)."""
    found, command, lines, inside = [], None, [], False
    for line in (ROOT / document).read_text().splitlines():
        if line.startswith("```"):
            if command is not None:
                found.append((command, lines))
            command, lines, inside = None, [], line.strip() == "```console"
        elif inside and line.startswith("$ "):
            if command is not None:
                found.append((command, lines))
            command, lines = None, []
            words = shlex.split(line[2:], comments=True)
            if words and words[0] == "crit-plus":
                command = words[1:]
        elif command is not None:
            lines.append(line)
    return found


def example(document, text):
    """The expected lines of ``document``'s first example whose command starts ``text``."""
    wanted = shlex.split(text)
    for argv, lines in console_examples(document):
        if argv[:len(wanted)] == wanted:
            return argv, lines
    raise AssertionError(f"{document} has no console example `crit-plus {text}`")


def matches(expected, actual):
    """Whether ``actual`` lines are what the ``expected`` lines show (module docstring)."""
    expected = [line.rstrip() for line in expected]
    actual = [line.rstrip() for line in actual]
    if "..." not in expected:
        return expected == actual
    at = 0
    for line in expected:
        if line == "...":
            continue
        prefix = line[:-4] if line.endswith(" ...") else None
        while at < len(actual) and not (actual[at] == line or
                                        (prefix is not None and actual[at].startswith(prefix))):
            at += 1
        if at == len(actual):
            return False
        at += 1
    return True


def run_example(argv, cwd, lxd_root):
    environment = dict(os.environ, CRIT_PLUS_ROOT=str(lxd_root),
                       PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    result = subprocess.run([sys.executable, "-m", "crit_plus", *argv], cwd=cwd,
                            capture_output=True, text=True, env=environment, timeout=120)
    return (result.stdout + result.stderr).replace(str(lxd_root), "").splitlines()


def test_the_matcher_elides_only_where_told():
    assert matches(["a", "b"], ["a", "b"]) and not matches(["a"], ["a", "b"])
    assert matches(["...", "b ...", "d"], ["a", "b c", "x", "d", "e"])
    assert not matches(["...", "d", "b"], ["b", "d"])
    assert not matches(["...", "verdict: 4 warnings"], ["verdict: 2 warnings"])


@pytest.mark.parametrize(("document", "text"), EXAMPLES, ids=[f"{d}:{t.split()[0]}"
                                                             for d, t in EXAMPLES])
def test_a_docs_example_prints_what_it_shows(fixture_root, document, text):
    argv, expected = example(document, text)
    actual = run_example(argv, fixture_root, fixture_root / "lxd-web")
    assert expected and matches(expected, actual), \
        f"{document}: crit-plus {shlex.join(argv)} prints:\n" + "\n".join(actual)


@pytest.mark.live
def test_the_failed_last_dump_example_of_list(criu, fixture_root, tmp_path):
    """docs/commands/list.md's second example: the lxd-web fixture with a real CRIU
    4.2.1 log of a snapshot that failed on an established TCP connection (made here, as
    tests/test_live_explain.py makes it; its timestamps are not compared)."""
    from tests.test_live_explain import failed_tcp_dump

    log = failed_tcp_dump(criu, tmp_path)
    shutil.copytree(fixture_root / "lxd-web", tmp_path / "lxd-web", symlinks=True)
    logs = tmp_path / "lxd-web/var/log/lxd/web"
    logs.chmod(0o755)
    shutil.copy(log, logs / "snapshot_dump_2026-11-25T17:45:00Z.log")
    examples = [lines for argv, lines in console_examples("docs/commands/list.md")
                if argv == ["list", "--lxd-dir", "lxd-web/var/lib/lxd"]]
    assert len(examples) == 2
    stamp = re.compile(r"\(\d\d\.\d{6}\)")
    actual = run_example(["list", "--lxd-dir", "lxd-web/var/lib/lxd"], tmp_path,
                         tmp_path / "lxd-web")
    assert [stamp.sub("(T)", line) for line in examples[1]] == \
        [stamp.sub("(T)", line) for line in actual], "\n".join(actual)


def _first_look_exports():
    """``{NAME: value}`` of README's "A first look" ``$ export NAME=value`` lines."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## A first look", 1)[1].split("```console", 1)[1].split("```", 1)[0]
    exports = {}
    for line in block.splitlines():
        if line.startswith("$ export "):
            name, _, value = shlex.split(line[len("$ export "):], comments=True)[0].partition("=")
            exports[name] = value
    return exports


def test_readme_first_look_works_as_written_after_make_demo(tmp_path):
    """README's first example, in a checkout where `make demo` unpacked its snapshot
    (the Makefile's recipe: the lxd-web fixture under $(DEMO)), with the environment
    README sets and nothing else: no --lxd-dir, no CRIT_PLUS_ROOT of the tests."""
    makefile = (ROOT / "Makefile").read_text()
    demo = re.search(r"^DEMO\s*:=\s*(\S+)", makefile, re.M).group(1)
    assert "tar -xzf fixtures/lxd-web.tar.gz -C $(DEMO)" in makefile
    (tmp_path / demo).mkdir(parents=True)
    import tarfile

    with tarfile.open(ROOT / "fixtures/lxd-web.tar.gz") as archive:
        archive.extractall(tmp_path / demo, filter="data")
    exports = _first_look_exports()
    assert exports, "README's first look sets no variable: lxd:web/after is not found"
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("CRIT_PLUS_ROOT", "LXD_DIR", "INCUS_DIR")}
    environment.update({name: value.replace("$PWD", str(tmp_path))
                        for name, value in exports.items()})
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), *sys.path])
    argv, expected = example("README.md", "summarize lxd:web/after")
    result = subprocess.run([sys.executable, "-m", "crit_plus", *argv], cwd=tmp_path,
                            capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    actual = result.stdout.replace(str(tmp_path / demo / "lxd-web"), "").splitlines()
    assert matches(expected, actual), "\n".join(actual)


def test_a_json_example_shows_the_whole_head_of_its_output(fixture_root):
    """A JSON example cut with ``...`` shows its output's first lines whole, every key in
    order (an in-order match would not see a key the docs leave out)."""
    argv, expected = example("docs/commands/summarize.md", "summarize service-a -f json")
    head = expected[:expected.index("...")]
    actual = run_example(argv, fixture_root, fixture_root / "lxd-web")
    assert head and [line.rstrip() for line in actual[:len(head)]] == head, \
        "\n".join(actual[:len(head) + 2])
