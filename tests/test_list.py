"""``crit-plus list`` on the real LXD fixtures, run as a user runs it."""

from __future__ import annotations

import json

from .cli import run_cli


def _json_rows(*args, env=None):
    result = run_cli("list", *args, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_list_web_fake_root(fixture_root):
    env = {"CRIT_PLUS_ROOT": str(fixture_root / "lxd-web")}
    rows = _json_rows(env=env)
    assert [(r["instance"], r["snapshot"], r["kind"]) for r in rows] == [
        ("web", "before", "lxd-snapshot"),
        ("web", "after", "lxd-snapshot"),
        ("web", None, "lxd-instance"),  # the stateful stop comes last
    ]
    for row in rows:
        assert row["criu_version"] == "4.2.1" and row["manager"] == "lxd"
        assert row["images_dir"].endswith("/state") and row["size"] > 500_000
        assert row["taken_at"].startswith("2026-11-25T17:40:4")
    assert [r["taken_at_source"] for r in rows] == ["backup.yaml", "backup.yaml",
                                                    "stats-dump mtime"]
    assert rows[2]["stateful"] is False and rows[2]["findings"]

    table = run_cli("list", env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["INSTANCE", "SNAPSHOT", "KIND"]
    assert "before" in lines[2] and "after" in lines[3] and "lxd-instance" in lines[4]
    assert "(mtime)" in lines[4] and "KiB" in lines[2]


def test_list_deb_with_lxd_dir(fixture_root):
    rows = _json_rows("--lxd-dir", fixture_root / "lxd-deb/var/lib/lxd")
    assert [(r["instance"], r["snapshot"]) for r in rows] == [("deb", "s1"), ("deb", "s2")]
    assert rows[0]["stateful"] is True and rows[1]["stateful"] is None
    assert rows[1]["size"] > rows[0]["size"]  # one more process in s2


def test_list_one_instance_and_a_project(fixture_root):
    env = {"CRIT_PLUS_ROOT": str(fixture_root / "lxd-web")}
    assert len(_json_rows("lxd:web", env=env)) == 3
    assert _json_rows("lxd:other", env=env) == []
    assert _json_rows("--project", "shop", env=env) == []
    assert len(_json_rows("--project", "default", env=env)) == 3


def test_list_a_directory(fixture_root):
    rows = _json_rows(fixture_root)
    found = {(r["kind"], r["instance"], r["snapshot"]) for r in rows}
    assert {("lxd-snapshot", "web", "before"), ("lxd-snapshot", "web", "after"),
            ("lxd-instance", "web", None), ("lxd-snapshot", "deb", "s1"),
            ("lxd-snapshot", "deb", "s2")} <= found
    plain = sorted(r["images_dir"].rsplit("/", 1)[1] for r in rows if r["kind"] == "criu-dir")
    assert plain == ["service-a", "service-b", "service-c", "service-old"]
    assert _json_rows(fixture_root, "--depth", "1") == [
        r for r in rows if r["kind"] == "criu-dir"]


def test_list_nothing_found(tmp_path):
    result = run_cli("list", env={"CRIT_PLUS_ROOT": str(tmp_path)})
    assert result.returncode == 0 and result.stdout == ""
    assert "no checkpoints found" in result.stderr and str(tmp_path) in result.stderr


def test_list_errors_are_one_line(tmp_path):
    for where, words in (("lxc:", "no standard place"), ("lxd:web/before", "not a snapshot"),
                         (tmp_path / "missing", "not a directory")):
        result = run_cli("list", where, env={"CRIT_PLUS_ROOT": str(tmp_path)})
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and words in result.stderr
        assert result.stderr.startswith("crit-plus: ")


def test_a_mistyped_lxd_dir_is_an_error(tmp_path):
    """--lxd-dir names a directory the user typed: when it is not there, that is an error
    (as `list DIR` is), never "no checkpoints found"; the other commands say the same."""
    missing = tmp_path / "nonexistent"
    for args in (("list",), ("list", "lxd:"), ("list", "lxd:web"), ("summarize", "lxd:web"),
                 ("validate", "lxd:web")):
        result = run_cli(*args, "--lxd-dir", missing, env={"CRIT_PLUS_ROOT": str(tmp_path)})
        assert result.returncode == (3 if args[0] == "validate" else 1), (args, result)
        assert f"{missing}: --lxd-dir: no such directory" in result.stderr + result.stdout
        if args[0] != "validate":  # validate's table names it in its row
            assert result.stderr.count("\n") == 1 and result.stdout == "", args
    explained = run_cli("explain", "lxd:web", "--lxd-dir", missing)
    assert explained.returncode == 2 and "--lxd-dir: no such directory" in explained.stderr
    # an existing but empty data directory is still "nothing found"
    assert run_cli("list", "--lxd-dir", tmp_path).returncode == 0


def test_a_missing_lxd_dir_variable_is_an_error(tmp_path):
    """$LXD_DIR / $INCUS_DIR name a directory the user chose, as --lxd-dir does: when it is
    not there, one line naming the variable and the path, the exit codes of --lxd-dir."""
    missing = tmp_path / "nonexistent"
    for variable, where in (("LXD_DIR", "lxd:web"), ("INCUS_DIR", "incus:web")):
        for args in (("list",), ("list", where), ("summarize", where)):
            env = {"CRIT_PLUS_ROOT": str(tmp_path), "LXD_DIR": "", "INCUS_DIR": "",
                   variable: str(missing)}
            result = run_cli(*args, env=env)
            assert result.returncode == 1, (variable, args, result)
            assert result.stderr == f"crit-plus: {missing}: ${variable}: no such directory\n"
            assert result.stdout == "", (variable, args)
    # an existing but empty data directory is still "nothing found"
    assert run_cli("list", env={"LXD_DIR": str(tmp_path)}).returncode == 0


def test_help_mentions_list():
    result = run_cli("--help")
    assert "list" in result.stdout
    assert "lxd:NAME" in run_cli("list", "--help").stdout
