"""Several checkpoints in one command (issue 24): ``validate``, ``summarize``, ``size`` and
``list`` over several PATHs and over a bare ``lxd:`` (every checkpoint the manager keeps),
with ``--format jsonl``, on a fake LXD tree made of the real ``lxd-web`` fixture's files with
more snapshots, one of them damaged."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from . import damage
from .cli import run_cli, run_on_terminal, start_cli

POOL = "var/lib/lxd/storage-pools/default"
SNAPSHOTS = f"{POOL}/containers-snapshots/web"
#: The checkpoints of the fake tree.
LABELS = {"lxd:web/before", "lxd:web/after", "lxd:web/broken", "lxd:web/copy", "lxd:web"}


def listed(tree):
    """The checkpoints of the tree in ``crit-plus list``'s order (by instance and time)."""
    done = run_cli("list", "lxd:", "--lxd-dir", lxd_dir(tree), "-f", "json")
    rows = json.loads(done.stdout)
    return [f"lxd:web/{row['snapshot']}" if row["snapshot"] else "lxd:web" for row in rows]


@pytest.fixture(scope="module")
def tree(fixture_root, tmp_path_factory):
    """lxd-web's files hard-linked into a new tree, with two more snapshots: ``copy`` (of
    ``before``) and ``broken`` (``before`` with its pstree.img cut short)."""
    top = tmp_path_factory.mktemp("many") / "lxd-web"
    damage.clone(fixture_root / "lxd-web", top)
    damage.clone(top / SNAPSHOTS / "before", top / SNAPSHOTS / "copy")
    damage.clone(top / SNAPSHOTS / "before", top / SNAPSHOTS / "broken")
    pstree = top / SNAPSHOTS / "broken/state/pstree.img"
    damage.replace(pstree, pstree.read_bytes()[:20])
    yield top
    shutil.rmtree(top)  # hard links must not outlive the module (damage.workspace)


def lxd_dir(tree):
    return str(tree / "var/lib/lxd")


def lines(result):
    """The JSON documents of a ``--format jsonl`` output, parsed one line at a time."""
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    for index, document in enumerate(documents):
        assert document["schema_version"] == 1 and document["index"] == index
    return documents


def test_validate_every_checkpoint_of_the_manager(tree):
    done = run_cli("validate", "lxd:", "--lxd-dir", lxd_dir(tree), "-f", "jsonl")
    documents = lines(done)
    assert [d["source"] for d in documents] == listed(tree)
    assert set(listed(tree)) == LABELS
    assert {d["command"] for d in documents} == {"validate"}
    by_source = {d["source"]: d for d in documents}
    broken = by_source["lxd:web/broken"]
    assert broken["error"] is None and broken["result"]["verdict"] == "fail"
    assert [f["code"] for f in broken["result"]["findings"]] == ["bad-image"]
    assert "pstree.img" in broken["result"]["findings"][0]["where"]
    assert broken["exit_code"] == 2
    # the worst checkpoint's code is the command's
    assert done.returncode == max(d["exit_code"] for d in documents) == 2, done.stderr
    # each line's result is the document validate gives for that checkpoint alone
    for label in ("lxd:web/before", "lxd:web"):
        alone = run_cli("validate", label, "--lxd-dir", lxd_dir(tree), "-f", "json")
        assert by_source[label]["result"] == json.loads(alone.stdout)
        assert by_source[label]["exit_code"] == alone.returncode


def test_validate_table_and_tally(tree, service_a):
    done = run_cli("validate", service_a, tree / SNAPSHOTS / "broken", "/nonexistent",
                   tree / SNAPSHOTS / "copy")
    rows = done.stdout.splitlines()
    assert rows[0].split()[:4] == ["VERDICT", "ERR", "WARN", "CHECKPOINT"]
    assert rows[1].split()[:4] == ["OK", "0", "0", str(service_a)]
    assert rows[2].split()[:3] == ["FAIL", "1", "0"] and "bad-image: pstree.img" in rows[2]
    assert rows[3].startswith("NO VERDICT") and "/nonexistent: no such file" in rows[3]
    alone = json.loads(run_cli("validate", tree / SNAPSHOTS / "copy", "-f", "json").stdout)
    verdict = alone["verdict"]
    assert rows[4].split()[:3] == [verdict.upper(), str(alone["counts"]["error"]),
                                   str(alone["counts"]["warning"])]
    tally = {"ok": 1, "risky": 0, "fail": 1}
    tally[verdict] += 1
    assert rows[5] == ""
    assert rows[6] == f"4 checkpoints: {tally['ok']} ok, {tally['risky']} risky, " \
        f"{tally['fail']} fail, 1 no verdict (exit 3)"
    assert done.returncode == 3 and done.stderr == ""  # no verdict on one is the worst


def test_validate_jsonl_of_one_checkpoint(service_a):
    done = run_cli("validate", service_a, "-f", "jsonl")
    [document] = lines(done)
    alone = run_cli("validate", service_a, "-f", "json")
    assert document["result"] == json.loads(alone.stdout)
    assert document["source"] == str(service_a) and done.returncode == 0


def test_validate_with_a_target_fingerprint(tree, tmp_path):
    """--target applies to every checkpoint (the fingerprint is loaded once)."""
    fingerprint = tmp_path / "host.json"
    made = run_cli("host", "-o", fingerprint)
    assert made.returncode == 0, made.stderr
    done = run_cli("validate", "lxd:", "--lxd-dir", lxd_dir(tree), "--target", fingerprint,
                   "-f", "jsonl")
    documents = lines(done)
    assert len(documents) == len(LABELS)
    for document in documents:
        if document["source"] != "lxd:web/broken":
            assert not any("no host" in s for s in document["result"]["skipped"])


def test_summarize_sections_and_lines(tree, service_a):
    args = [service_a, "lxd:web/after", "lxd:web/broken"]
    text = run_cli("summarize", *args, "--lxd-dir", lxd_dir(tree))
    assert text.returncode == 1  # broken's pstree.img cannot be read
    sections = text.stdout.split("\n==> ")
    assert sections[0].startswith(f"==> {service_a} <==\n")
    alone = run_cli("summarize", service_a)
    assert sections[0].split("\n", 1)[1] == alone.stdout
    assert sections[1].startswith("lxd:web/after <==\ncheckpoint   LXD stateful snapshot web/after")
    assert sections[2].startswith("lxd:web/broken <==\ncrit-plus: ") and "pstree.img" in \
        sections[2]
    documents = lines(run_cli("summarize", *args, "--lxd-dir", lxd_dir(tree), "-f", "jsonl"))
    assert [d["exit_code"] for d in documents] == [0, 0, 1]
    assert documents[2]["result"] is None and "pstree.img" in documents[2]["error"]
    assert documents[0]["result"] == json.loads(run_cli("summarize", service_a, "-f",
                                                        "json").stdout)
    # --format json with several: one array of the same documents
    array = json.loads(run_cli("summarize", *args, "--lxd-dir", lxd_dir(tree), "-f",
                               "json").stdout)
    assert array == documents


def test_size_over_the_manager(tree):
    done = run_cli("size", "lxd:", "--lxd-dir", lxd_dir(tree), "-f", "jsonl")
    documents = lines(done)
    assert [d["source"] for d in documents] == listed(tree) and done.returncode == 1
    good = [d for d in documents if d["error"] is None]
    assert len(good) == 4
    copy, before = (next(d for d in documents if d["source"] == label)
                    for label in ("lxd:web/copy", "lxd:web/before"))
    assert copy["result"]["disk"] == before["result"]["disk"]
    alone = run_cli("size", "lxd:web/copy", "--lxd-dir", lxd_dir(tree), "-f", "json")
    assert copy["result"] == json.loads(alone.stdout)


def test_list_several_places(tree, fixture_root):
    done = run_cli("list", "lxd:", fixture_root / "service-a", "lxc:", "--lxd-dir",
                   lxd_dir(tree), "-f", "jsonl")
    documents = lines(done)
    sources = [d["source"] for d in documents]
    assert sources == listed(tree) + [str(fixture_root / "service-a")]
    assert documents[-1]["result"]["kind"] == "criu-dir"
    assert done.returncode == 1 and "lxc:" in done.stderr  # the place that cannot be listed
    table = run_cli("list", "lxd:", fixture_root / "service-a", "--lxd-dir", lxd_dir(tree))
    rows = table.stdout.split("\n\n")[0].splitlines()  # the table; why damaged follows
    assert table.returncode == 0 and len(rows) == 2 + len(LABELS) + 1
    assert sum(" DAMAGED " in row for row in rows) == 1 and ": damaged: pstree.img" in table.stdout


def test_nothing_found(tmp_path):
    for command in ("validate", "summarize", "size"):
        done = run_cli(command, "lxd:", "--lxd-dir", tmp_path, "-f", "jsonl")
        assert done.returncode == 0 and done.stdout == ""
        assert "no checkpoints found" in done.stderr and str(tmp_path) in done.stderr


@pytest.mark.parametrize("command, code", [("validate", 2), ("summarize", 0), ("size", 0)])
def test_head_ends_quietly(tree, command, code):
    """``| head -1``: the reader goes away; no traceback, and validate still exits with the
    verdict on every checkpoint (the broken one among them)."""
    targets = [tree / SNAPSHOTS / "before"] * 40 + [tree / SNAPSHOTS / "broken"]
    process = start_cli(command, *targets, "-f", "jsonl", stdout=subprocess.PIPE)
    first = process.stdout.readline()
    process.stdout.close()
    process.wait(timeout=120)
    assert json.loads(first)["index"] == 0
    assert process.stderr.read() == "" and process.returncode == code


def test_progress_on_a_terminal_only(tree):
    """stderr a terminal, stdout a pipe: a progress bar; stderr a pipe: nothing."""
    targets = [tree / SNAPSHOTS / "before", tree / SNAPSHOTS / "copy"]
    process, shown = run_on_terminal("validate", *targets, "-f", "jsonl", stream="stderr")
    assert b"2 checkpoints" in shown and len(process.stdout.splitlines()) == 2
    piped = run_cli("validate", *targets, "-f", "jsonl")
    assert piped.stderr == ""


def test_a_bug_on_one_checkpoint_does_not_stop_the_others(service_a, tree, monkeypatch,
                                                          capsys):
    """A crit-plus bug met on one checkpoint is its line (exit 70), the next one still done."""
    from crit_plus.analysis import size
    from crit_plus.cli import main

    measure = size.measure

    def buggy(checkpoint, **options):
        if "copy" in str(checkpoint.directory):
            raise RuntimeError("boom")
        return measure(checkpoint, **options)

    monkeypatch.setattr(size, "measure", buggy)
    code = main(["size", str(tree / SNAPSHOTS / "copy"), str(service_a), "-f", "jsonl"])
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 70 and [d["exit_code"] for d in documents] == [70, 0]
    assert documents[0]["error"].startswith("internal error: RuntimeError: boom")
    assert documents[1]["result"]["directory"] == str(service_a)


def _without_live_pids(document):
    """A validate document with its pid-busy findings left out: which pids are in use on
    this machine can change between two runs (other processes come and go)."""
    kept = [f for f in document["findings"] if f["code"] != "pid-busy"]
    return {**document, "findings": kept, "counts": None, "verdict": None}


def test_validate_several_against_this_host(tree, service_a, monkeypatch, capsys):
    """``--host`` with several checkpoints: this machine is probed once, and each line's
    result is what ``validate X --host -f json`` gives for that checkpoint alone."""
    from crit_plus.cli import main
    from crit_plus.commands import validate

    probes = []
    probe = validate.probe_host

    def counted(*args, **kwargs):
        probes.append(args)
        return probe(*args, **kwargs)

    monkeypatch.setattr(validate, "probe_host", counted)
    specs = [str(service_a), str(tree / SNAPSHOTS / "before"), "lxd:web"]
    code = main(["validate", *specs, "--lxd-dir", lxd_dir(tree), "--host", "-f", "jsonl"])
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(probes) == 1 and [d["source"] for d in documents] == specs
    for spec, document in zip(specs, documents):
        alone = run_cli("validate", spec, "--lxd-dir", lxd_dir(tree), "--host", "-f", "json")
        single = json.loads(alone.stdout)
        assert single["host_root"] == "/" and document["result"]["host_root"] == "/"
        if [f for f in single["findings"] if f["code"] == "pid-busy"] == \
                [f for f in document["result"]["findings"] if f["code"] == "pid-busy"]:
            assert document["result"] == single and document["exit_code"] == alone.returncode
        else:  # a pid taken or freed between the two runs
            assert _without_live_pids(document["result"]) == _without_live_pids(single)
    assert code == max(d["exit_code"] for d in documents)


@pytest.fixture(scope="module")
def incus_tree(fixture_root, tmp_path_factory):
    """lxd-web's data directory hard-linked as an Incus one (/var/lib/incus): a stateful
    stop of ``web`` and its two stateful snapshots, ``before`` and ``after``."""
    top = tmp_path_factory.mktemp("incus") / "var/lib/incus"
    damage.clone(fixture_root / "lxd-web/var/lib/lxd", top)
    yield top
    shutil.rmtree(top)


def test_every_checkpoint_incus_keeps(incus_tree):
    """A bare ``incus:``: validate, list and summarize each give every checkpoint, in the
    order list shows them, each result that of the checkpoint alone."""
    where = ["--lxd-dir", str(incus_tree)]
    rows = json.loads(run_cli("list", "incus:", *where, "-f", "json").stdout)
    order = [f"incus:web/{row['snapshot']}" if row["snapshot"] else "incus:web"
             for row in rows]
    assert sorted(order) == ["incus:web", "incus:web/after", "incus:web/before"]
    assert order[-1] == "incus:web"  # the stateful stop is newer than its snapshots
    assert {row["kind"] for row in rows} == {"incus-instance", "incus-snapshot"}
    listed_lines = lines(run_cli("list", "incus:", *where, "-f", "jsonl"))
    assert [d["result"] for d in listed_lines] == rows
    for command in ("validate", "summarize"):
        done = run_cli(command, "incus:", *where, "-f", "jsonl")
        documents = lines(done)
        assert [d["source"] for d in documents] == order, done.stderr
        for document in documents:
            alone = run_cli(command, document["source"], *where, "-f", "json")
            assert document["error"] is None
            assert document["result"] == json.loads(alone.stdout), document["source"]
            assert document["exit_code"] == alone.returncode
        assert done.returncode == max(d["exit_code"] for d in documents)
    kinds = [d["result"]["source_kind"] for d in lines(run_cli("validate", "incus:", *where,
                                                                "-f", "jsonl"))]
    assert kinds == ["incus-snapshot", "incus-snapshot", "incus-instance"]
