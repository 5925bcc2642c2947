"""The crit-compatible commands, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from decoders.encode import encode_image

from .cli import run_cli
from .conftest import ROOT
from .test_sources import _write_archive
from .oracle import crit_info, crit_json


def test_help_teaches():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("decode", "show", "info", "encode", "version"):
        assert command in result.stdout
    assert "--format json" in result.stdout


def test_decode_matches_crit(service_a):
    image = service_a / "core-12525.img"
    result = run_cli("decode", "-i", image)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == crit_json(image)
    pretty = run_cli("decode", "-i", image, "--pretty")
    assert json.loads(pretty.stdout) == crit_json(image, pretty=True)


def test_decode_reads_stdin_and_writes_a_file(service_a, tmp_path):
    image = service_a / "pstree.img"
    out = tmp_path / "pstree.json"
    result = subprocess.run([sys.executable, "-m", "crit_plus", "decode", "-o", str(out)],
                            stdin=open(image, "rb"), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == crit_json(image)


def test_show_is_pretty_decode(service_a):
    image = service_a / "mm-12525.img"
    assert json.loads(run_cli("show", image).stdout) == crit_json(image, pretty=True)
    nopl = run_cli("show", service_a / "ghost-file-1.img", "--nopl")
    assert json.loads(nopl.stdout) == crit_json(service_a / "ghost-file-1.img", True, True)


@pytest.mark.parametrize("name", ["pagemap-12525.img", "pagemap-shmem-2161.img",
                                  "core-12525.img", "files.img", "fdinfo-2.img"])
def test_info(service_a, name):
    """magic and count are crit's info: a pagemap's head is not counted."""
    result = run_cli("info", service_a / name, "--format", "json")
    facts = json.loads(result.stdout)
    assert {"magic": facts["magic"], "count": facts["count"]} == crit_info(service_a / name)
    table = run_cli("info", service_a / name)
    assert facts["magic"] in table.stdout and str(facts["count"]) in table.stdout


def test_raw_image_is_refused_with_its_kind_and_size(service_a):
    """crit refuses a raw image (Unknown magic); so does decode, in one line (no JSON a
    later encode would reject: tests/test_x.py)."""
    result = run_cli("decode", "-i", service_a / "pages-1.img")
    assert result.returncode == 1 and result.stdout == ""
    size = (service_a / "pages-1.img").stat().st_size
    assert f"a raw image (page data of a pagemap, {size} bytes)" in result.stderr


def test_encode_round_trip(service_a, tmp_path):
    for name in ("core-12525.img", "tcp-stream-2f479.img", "ghost-file-1.img", "inventory.img"):
        as_json = tmp_path / (name + ".json")
        rebuilt = tmp_path / name
        assert run_cli("decode", "-i", service_a / name, "--pretty", "-o", as_json).returncode == 0
        result = run_cli("encode", "-i", as_json, "-o", rebuilt)
        assert result.returncode == 0, result.stderr
        assert rebuilt.read_bytes() == (service_a / name).read_bytes()


def test_encode_rejects_what_is_not_json(service_a):
    result = run_cli("encode", "-i", service_a / "core-12525.img")
    assert result.returncode == 1
    assert result.stderr.startswith("crit-plus: ") and "not JSON" in result.stderr


def test_truncated_image_is_one_line_with_file_entry_offset(service_a, tmp_path):
    data = (service_a / "pagemap-12525.img").read_bytes()
    broken = tmp_path / "pagemap-12525.img"
    broken.write_bytes(data[:100])
    result = run_cli("decode", "-i", broken)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("crit-plus: pagemap-12525.img: entry ")
    assert "at offset 0x" in lines[0] and "truncated" in lines[0]
    assert "Traceback" not in result.stderr
    traced = run_cli("--traceback", "decode", "-i", broken)
    assert traced.returncode != 0 and "Traceback" in traced.stderr


def test_missing_file_is_one_line():
    result = run_cli("show", "/nonexistent/core-1.img")
    assert result.returncode == 1
    assert result.stderr.strip() == "crit-plus: core-1.img: image is missing"


def test_missing_pycriu_says_how_to_install(service_a, tmp_path):
    result = run_cli("show", service_a / "pstree.img", env={"CRIT_PLUS_PYCRIU": str(tmp_path)})
    assert result.returncode == 2
    assert "apt-get install criu" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _big_pagemap(tmp_path):
    entries = [{"pages_id": 1}] + [
        {"vaddr": 0x10000 + i * 0x2000, "compat_nr_pages": 0, "flags": 4, "nr_pages": 1}
        for i in range(40000)
    ]
    path = tmp_path / "pagemap-1.img"
    path.write_bytes(encode_image({"magic": "PAGEMAP", "entries": entries}))
    return path


def test_output_piped_into_head_ends_quietly(tmp_path):
    image = _big_pagemap(tmp_path)
    pipeline = subprocess.run(
        f"{sys.executable} -m crit_plus show {image} | head -n 3; exit ${{PIPESTATUS[0]}}",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=120,
    )
    assert pipeline.stdout.splitlines() == ["{", '    "magic": "PAGEMAP",', '    "entries": [']
    assert pipeline.stderr == ""
    assert pipeline.returncode == 0


def test_version_names_the_schema_and_checks_a_checkpoint(service_a):
    result = run_cli("version", service_a, "--format", "json")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["schema_criu_version"] and facts["pycriu_path"].endswith("pycriu")
    assert facts["unknown_fields"] == {}
    assert facts["newer_than_schema"] is False
    assert "warning" not in result.stderr


def test_start_up_loads_only_what_the_command_needs(service_a):
    """Start-up is most of what a small command costs: summarize on a plain CRIU
    directory loads neither pycriu's RPC client, PyYAML (only LXD/Incus keep a
    backup.yaml) nor importlib.metadata (tabulate 0.10 reads its version with it)."""
    code = (
        "import sys, io, contextlib\n"
        "from crit_plus.cli import main\n"
        f"sys.argv = ['crit-plus', 'summarize', {str(service_a)!r}]\n"
        "try:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        main()\n"
        "except SystemExit as stop:\n"
        "    assert not stop.code, stop.code\n"
        "print(' '.join(sorted(m for m in sys.modules if m in ('yaml', 'pycriu.rpc_pb2',\n"
        "                  'pycriu.criu', 'importlib.metadata'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.split() == [], result.stdout


@pytest.mark.parametrize("args, not_loaded", [
    (["--version"], ("google.protobuf", "crit_plus.graph", "importlib.metadata")),
    (["decode", "-i", "{service_a}/core-12525.img"], ("crit_plus.graph", "yaml")),
    (["info", "{service_a}/pstree.img"], ("crit_plus.graph", "crit_plus.files", "yaml")),
])
def test_light_commands_do_not_load_the_graph(service_a, args, not_loaded):
    """``import crit_plus`` and ``import decoders`` load their modules on first use
    (decoders/lazy.py): ``--version`` and the image commands do not pay for the
    checkpoint graph, and ``--version`` not even for protobuf."""
    argv = [arg.format(service_a=service_a) for arg in args]
    code = (
        "import sys, io, contextlib\n"
        "from crit_plus.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main({argv!r}) == 0\n"
        f"print(' '.join(sorted(m for m in sys.modules if m in {not_loaded!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.split() == [], result.stdout


def test_version_is_the_package_version():
    """``crit-plus --version`` says the version pyproject.toml gives the package."""
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as handle:
        version = tomllib.load(handle)["project"]["version"]
    assert run_cli("--version", check=True).stdout == f"crit-plus {version}\n"


@pytest.mark.parametrize("command", [["summarize"], ["size"], ["validate"], ["ps"],
                                     ["diff", "{archive}"]])
def test_commands_on_an_archive_leave_no_temporary_files(service_a, tmp_path, command):
    """A command ends without Python's shutdown (cli.leave): the archive's temporary
    copy must be gone by then, and the output complete."""
    archive = _write_archive(tmp_path / "service.tar.gz", service_a)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    args = [part.format(archive=archive) for part in command]
    result = run_cli(args[0], archive, *args[1:], "-f", "json", env={"TMPDIR": str(scratch)})
    assert result.returncode in (0, 1), result.stderr  # validate: 1 when it finds errors
    json.loads(result.stdout)
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("closed", ["2>&-", ">&-"])
def test_a_closed_standard_stream_changes_nothing(service_a, tmp_path, closed):
    """A process started with standard error (or output) closed has None for it in
    Python; the exit code is still the command's, and its file is written."""
    out = tmp_path / "heap.bin"
    command = (f"{sys.executable} -m crit_plus mem dump {service_a} 12525 "
               f"--vma 3c7b8000 -o {out} {closed}")
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=120,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and out.stat().st_size > 0


def _exit_code_into_a_closed_pipe(*args):
    """Run crit-plus with stdout a pipe whose reader is already gone (what
    ``| head`` becomes once head has read its lines): every write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "crit_plus", *map(str, args)],
                                stdout=write_end, stderr=subprocess.PIPE, text=True,
                                timeout=300)
    finally:
        os.close(write_end)
    return result


def test_a_verdict_survives_a_closed_pipe(fixture_root):
    """diff and validate exit with their verdict even when nobody reads their output
    (``crit-plus diff A B | head; echo ${PIPESTATUS[0]}``); other commands end quietly."""
    web = fixture_root / "lxd-web/var/lib/lxd/storage-pools/default"
    before = web / "containers-snapshots/web/before/state"
    after = web / "containers-snapshots/web/after/state"
    diff = _exit_code_into_a_closed_pipe("diff", "--no-content", before, after)
    assert (diff.returncode, diff.stderr) == (1, "")
    same = _exit_code_into_a_closed_pipe("diff", "--no-content", after, after)
    assert (same.returncode, same.stderr) == (0, "")
    validate = _exit_code_into_a_closed_pipe("validate", after)
    assert (validate.returncode, validate.stderr) == (2, "")
    summary = _exit_code_into_a_closed_pipe("summarize", after)
    assert (summary.returncode, summary.stderr) == (0, "")
    logs = fixture_root / "lxd-web/var/log/lxd/web"  # its failed restore: explain's 1
    for form in ((), ("--format", "json")):
        explain = _exit_code_into_a_closed_pipe("explain", logs, *form)
        assert explain.returncode == 1, explain.stderr


def test_decode_output_is_whole_or_not_there(tmp_path):
    """A decode that fails half-way (a pagemap cut in its 6th entry) leaves no file behind,
    nor changes one already there; a complete one is readable as normal files are."""
    image = _big_pagemap(tmp_path)
    cut = tmp_path / "pagemap-2.img"
    cut.write_bytes(image.read_bytes()[:100])
    output = tmp_path / "out.json"
    failed = run_cli("decode", "-i", cut, "-o", output)
    assert failed.returncode == 1 and "offset" in failed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pagemap-1.img", "pagemap-2.img"]
    output.write_text("kept")
    assert run_cli("decode", "-i", cut, "-o", output).returncode == 1
    assert output.read_text() == "kept"
    assert run_cli("decode", "-i", image, "-o", output).returncode == 0
    assert json.loads(output.read_text())["magic"] == "PAGEMAP"
    assert os.stat(output).st_mode & 0o777 == 0o666 & ~_umask()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_output_through_a_link_or_to_a_device(service_a, tmp_path):
    """-o follows a symbolic link (the file it names is written, the link stays) and
    writes a device such as /dev/null in place, as open() would."""
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    link.symlink_to(target)
    assert run_cli("decode", "-i", service_a / "pstree.img", "-o", link).returncode == 0
    assert link.is_symlink() and json.loads(target.read_text())["magic"] == "PSTREE"
    assert run_cli("decode", "-i", service_a / "pstree.img", "-o", os.devnull).returncode == 0
    assert os.path.exists(os.devnull) and not os.path.isfile(os.devnull)


def _leaf_commands():
    """Every command as typed: ``ps``, and ``mem read``/``mem grep``/``mem dump``."""
    import click

    from crit_plus.cli import cli

    ctx = click.Context(cli)
    names = []
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        if isinstance(command, click.Group):
            names += [(name, sub) for sub in command.list_commands(ctx)]
        else:
            names.append((name,))
    return names


@pytest.mark.parametrize("command", _leaf_commands(), ids=" ".join)
def test_usage_errors_take_one_line_with_a_hint(command):
    """click's four lines (Usage, Try, blank, Error) become one, for every command; the
    exit code is 2, or validate's 3 (its 2 says "errors": the restore will fail)."""
    result = run_cli(*command, "--no-such-option")
    assert result.returncode == (3 if command == ("validate",) else 2), result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line == f"crit-plus: error: No such option '--no-such-option' " \
                   f"(see `crit-plus {' '.join(command)} --help`)"


def test_usage_errors_of_the_group_and_missing_arguments():
    unknown = run_cli("no-such-command")
    assert unknown.returncode == 2
    assert unknown.stderr == "crit-plus: error: No such command 'no-such-command' " \
                             "(see `crit-plus --help`)\n"
    missing = run_cli("mem", "grep")
    assert missing.returncode == 2
    assert missing.stderr == "crit-plus: error: Missing argument 'PATH' " \
                             "(see `crit-plus mem grep --help`)\n"
    bare = run_cli("mem")  # a group alone shows its help, as click does
    assert bare.returncode == 2 and bare.stderr.startswith("Usage: crit-plus mem")


#: Every way of giving -o that refuses to write (inside the checkpoint, over an input):
#: (command words, arguments with {d} the checkpoint, {o} the output).
REFUSED_OUTPUTS = [
    (("core",), ["{d}", "12525", "-o", "{d}/x.core"]),
    (("core",), ["{d}", "-o", "{d}/cores"]),
    (("summarize",), ["{d}", "-f", "html", "-o", "{d}/page.html"]),
    (("summarize",), ["{d}", "-o", "{d}/summary.txt"]),
    (("size",), ["{d}", "-o", "{d}/size.txt"]),
    (("diff",), ["{d}", "{d}", "-o", "{d}/diff.txt"]),
    (("decode",), ["-i", "{d}/pstree.img", "-o", "{d}/pstree.img"]),
    (("encode",), ["-i", "{d}/pstree.img", "-o", "{d}/pstree.img"]),
    (("mem", "dump"), ["{d}", "12525", "--vma", "7f954f9c4000", "-o", "{d}/m.bin"]),
    (("report",), ["{d}", "-o", "{d}/report.tar.gz"]),
]


@pytest.mark.parametrize(("command", "args"), REFUSED_OUTPUTS,
                         ids=[" ".join(c + (a[-1].split("/")[-1],)) for c, a in REFUSED_OUTPUTS])
def test_every_refused_output_is_a_usage_error_in_the_documented_form(service_a, tmp_path,
                                                                      command, args):
    from tests.damage import clone

    directory = clone(service_a, tmp_path / "ck")
    before = sorted(path.name for path in directory.iterdir())
    result = run_cli(*command, *(arg.format(d=directory) for arg in args))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("crit-plus: error: ") and "write it elsewhere" in line
    assert line.endswith(f" (see `crit-plus {' '.join(command)} --help`)"), line
    assert sorted(path.name for path in directory.iterdir()) == before


def test_exit_codes_are_documented():
    """README's "Exit codes" tables and docs/commands.md give every code crit-plus uses."""
    from crit_plus import cli
    from crit_plus.commands import diff, mem, validate

    readme = (ROOT / "README.md").read_text()
    paragraph = readme[readme.index("Exit codes"):].split("\n## ")[0]  # up to the next section
    commands = (ROOT / "docs/commands.md").read_text()
    for code in (cli.EXIT_BAD_INPUT, cli.EXIT_USAGE, cli.EXIT_NO_DATA, cli.EXIT_INTERNAL,
                 cli.EXIT_INTERRUPTED, mem.EXIT_NO_MATCH, mem.EXIT_GREP_TROUBLE,
                 mem.EXIT_NO_DATA, diff.EXIT_TROUBLE, validate.EXIT_TROUBLE):
        assert f"{code} " in paragraph and f"{code} " in commands, code
    assert mem.EXIT_NO_DATA == cli.EXIT_NO_DATA
    for words in ("`mem grep`", "`mem read`", "`validate`", "`diff`", "`explain`"):
        assert words in paragraph and words in commands
    # explain's codes, as its own page gives them (crit_plus.analysis.explain.exit_status)
    from crit_plus.analysis.explain import exit_status

    assert exit_status([]) == 2
    assert "2 no CRIU run found" in " ".join(commands.split())
    assert "`explain` 0 every run succeeded" in " ".join(commands.split())
    row = next(line for line in paragraph.splitlines() if line.startswith("| `explain` |"))
    assert row.split(" | ")[1:4] == ["every run succeeded", "a run failed or was cut short",
                                     "no answer: no CRIU run found, an input cannot be read, "
                                     "wrong usage"]
    assert "**2** no CRIU run could be read" in (ROOT / "docs/commands/explain.md").read_text()


@pytest.mark.parametrize("args", [
    ("summarize", "/nonexistent\nsecond line"),
    ("mem", "read", "a\nb\x1b[31m", "1", "0x1000"),
    ("diff", "old\nx", "new\ny"),
])
def test_a_newline_in_an_argument_is_still_one_line(args):
    """Errors are one line whatever the argument holds: control characters are escaped."""
    done = run_cli(*args)
    assert done.returncode not in (0, 70), done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "\\n" in lines[0] and "\x1b" not in done.stderr, lines
