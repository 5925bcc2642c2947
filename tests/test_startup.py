"""Start-up pays only for what a command uses (issue 24): what each command imports.

No timings here (they are the benchmarks' job: tests/benchmarks/test_bench_startup.py);
these tests look at ``sys.modules`` of a fresh interpreter after a command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from crit_plus.cli import COMMAND_MODULES, COMMAND_SUMMARIES
from decoders import schema, schema_index
from decoders.lazy import LazyPattern

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Prints the modules a command left loaded, as JSON.
PROBE = """
import contextlib, io, json, sys
from crit_plus.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main({argv!r})
print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""


def _loaded(argv, **env):
    """The exit code and the modules loaded by ``crit-plus ARGV`` in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", PROBE.format(argv=list(argv))],
                            capture_output=True, text=True, timeout=120, check=True,
                            env=dict(os.environ, PYTHONPATH=ROOT, **env))
    facts = json.loads(result.stdout)
    return facts["code"], set(facts["modules"])


def _command_modules(modules):
    return sorted(m for m in modules if m.startswith("crit_plus.commands.")
                  and m.rpartition(".")[2] in COMMAND_MODULES.values())


@pytest.mark.parametrize("argv, exit_code", [(["--help"], 0), (["--version"], 0), ([], 2)])
def test_help_and_version_load_no_command_and_no_schema(argv, exit_code):
    """``crit-plus --help`` (and a bare ``crit-plus``, which shows it and exits 2) lists
    the commands from their summaries, and ``--version`` reads a constant: neither
    imports a command's module, the schema module, pycriu or protobuf."""
    code, modules = _loaded(argv)
    assert code == exit_code
    assert _command_modules(modules) == []
    assert not [m for m in modules if m.startswith(("pycriu", "google.protobuf"))
                or m in ("decoders.schema", "decoders.image", "crit_plus.graph")]


def test_every_command_has_a_summary():
    """A command added to COMMAND_MODULES needs its summary, or ``--help`` imports it."""
    assert set(COMMAND_SUMMARIES) == set(COMMAND_MODULES)


@pytest.mark.parametrize("columns", ["40", "80", "100", "200"])
def test_help_lists_what_click_lists_with_every_command_loaded(columns):
    """The summaries are the commands' own help as click shortens it, at any width."""
    loaded_all = ("import sys\n"
                  "from crit_plus.cli import COMMAND_MODULES, cli, main\n"
                  "for name in COMMAND_MODULES:\n"
                  "    cli.get_command(None, name)\n"
                  "sys.exit(main(['--help']))\n")
    env = dict(os.environ, PYTHONPATH=ROOT, COLUMNS=columns)
    lazy = subprocess.run([sys.executable, "-m", "crit_plus", "--help"], capture_output=True,
                          text=True, timeout=120, env=env, check=True)
    eager = subprocess.run([sys.executable, "-c", loaded_all], capture_output=True, text=True,
                           timeout=120, env=env, check=True)
    assert "Commands:" in lazy.stdout
    assert lazy.stdout == eager.stdout


def _lazy_schema():
    loaded = schema.get_schema()
    if schema_index.read(loaded.package_dir) is None:
        pytest.skip(f"{loaded.describe()} has no index (make schema adds it)")
    return loaded


def test_ps_loads_only_the_schema_modules_it_needs(service_a):
    """``ps`` builds the message classes of the images it reads: not pycriu's ``pb``
    (every message of every .proto file), not the images module, not IPC, tun or BPF."""
    _lazy_schema()
    code, modules = _loaded(["ps", str(service_a)])
    assert code == 0
    generated = {m.rpartition(".")[2] for m in modules if m.startswith("pycriu.images.")}
    assert {"inventory_pb2", "pstree_pb2", "core_pb2", "mm_pb2", "pagemap_pb2"} <= generated
    assert not generated & {"pb", "images", "pb2dict", "ipc_shm_pb2", "ipc_msg_pb2",
                            "bpfmap_data_pb2", "img_streamer_pb2", "sit_pb2", "macvlan_pb2"}
    assert "pycriu.criu" not in modules and "pycriu.rpc_pb2" not in modules
    # the sources' archive and run readers are for archives and logs, which ps does not read
    assert "crit_plus.sources.archive" not in modules
    assert "crit_plus.sources.discover" not in modules


def test_index_names_what_protobuf_builds():
    """The index, read from the generated modules' source without protobuf, says for
    every message the module whose import defines it, as protobuf itself tells."""
    loaded = _lazy_schema()
    index = schema_index.read(loaded.package_dir)
    images_dir = os.path.join(loaded.package_dir, "images")
    assert index == schema_index.build(images_dir)
    for name, module in index.items():
        cls = loaded.message_class(name)
        assert cls.DESCRIPTOR.full_name == name
        assert cls.DESCRIPTOR.file.name == sys.modules[
            f"pycriu.images.{module}"].DESCRIPTOR.name
    full = loaded.images  # pycriu's own package, whole: the same classes (its pb.py
    # leaves a few modules out, opts_pb2's CRIU_Opts for one)
    assert all(getattr(full.pb, name, cls) is cls
               for name, cls in ((n, loaded.message_class(n)) for n in index))
    assert loaded.message_class("no_such_entry") is None


def test_index_of_the_distribution_pycriu():
    """The index reads protoc's older output too (Debian 12's pycriu 3.17)."""
    system = next((schema._package_dir(d) for d in schema._distribution_dirs()
                   if schema._package_dir(d)), None)
    if system is None:
        pytest.skip("no distribution pycriu installed")
    code = ("import json, sys, os\n"
            "from decoders.schema import get_schema\n"
            "s = get_schema()\n"
            "s.images.pb\n"
            "names = {n: m for m in sys.modules if m.startswith('pycriu.images.')\n"
            "         and m.endswith('_pb2')\n"
            "         for n in sys.modules[m].DESCRIPTOR.message_types_by_name}\n"
            "print(json.dumps({n: m.rpartition('.')[2] for n, m in names.items()}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True,
                            env=dict(os.environ, PYTHONPATH=ROOT, CRIT_PLUS_PYCRIU="system"))
    assert schema_index.build(os.path.join(system, "images")) == json.loads(result.stdout)


def test_a_stale_index_is_not_used(tmp_path):
    """An index that does not list exactly the generated modules present is ignored:
    the schema is then loaded whole, as without an index."""
    loaded = _lazy_schema()
    copy = tmp_path / "pycriu"
    shutil.copytree(loaded.package_dir, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert schema_index.read(str(copy)) is not None
    (copy / "images" / "extra_pb2.py").write_text("")
    assert schema_index.read(str(copy)) is None
    (copy / "images" / "extra_pb2.py").unlink()
    (copy / schema_index.INDEX_FILE).write_text("something else\n")
    assert schema_index.read(str(copy)) is None


def test_without_index_the_whole_package_is_loaded(tmp_path, service_a):
    """A pycriu without an index (a distribution's) works as before: every message
    class built when the schema loads, and commands give the same output."""
    loaded = _lazy_schema()
    copy = tmp_path / "pycriu"
    shutil.copytree(loaded.package_dir, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / schema_index.INDEX_FILE).unlink()
    code, modules = _loaded(["ps", str(service_a)], CRIT_PLUS_PYCRIU=str(copy))
    assert code == 0 and "pycriu.images.pb" in modules
    env = dict(os.environ, PYTHONPATH=ROOT)
    outputs = [subprocess.run([sys.executable, "-m", "crit_plus", "ps", str(service_a), "-f",
                               "json"], capture_output=True, text=True, timeout=120, check=True,
                              env=dict(env, **extra)).stdout
               for extra in ({}, {"CRIT_PLUS_PYCRIU": str(copy)})]
    assert outputs[0] == outputs[1]


def test_lazy_pattern_compiles_on_first_use():
    pattern = LazyPattern(r"(\d+)-(\w+)")
    assert "match" not in vars(pattern)
    assert pattern.match("12-ab").groups() == ("12", "ab")
    assert "match" in vars(pattern)  # kept: later calls cost what a compiled pattern's do
    assert pattern.pattern == r"(\d+)-(\w+)" and pattern.groups == 2
    assert LazyPattern(rb"x+", 2).search(b"aXXb").group() == b"XX"  # re.IGNORECASE == 2


#: The explorers' modules and what else each metadata command leaves alone: a command
#: creates the record classes of what it shows, not every explorer's.
EXPLORER_PARTS = ("crit_plus.analysis.explore_fds", "crit_plus.analysis.explore_pages",
                  "crit_plus.analysis.explore_memory", "crit_plus.pages")


@pytest.mark.parametrize("command, needs", [
    ("ps", ()),
    ("fds", ("crit_plus.analysis.explore_fds",)),
    ("sk", ("crit_plus.analysis.explore_fds",)),
    ("mems", ("crit_plus.analysis.explore_pages", "crit_plus.pages")),
    ("rss", ("crit_plus.analysis.explore_pages", "crit_plus.pages")),
])
def test_an_explorer_loads_only_its_own_records(service_a, command, needs):
    """``ps`` creates one explorer record class (``PsRow``), not the fds', mappings' or
    memory search's, nor the page counts by VMA kind (crit_plus.pages); reading images
    does not load crit's JSON form (decoders.jsonform), and a checkpoint's dump.log
    header does not load the log scanner (sources.logs)."""
    code, modules = _loaded([command, str(service_a)])
    assert code == 0
    assert "crit_plus.analysis.explore" in modules
    assert sorted(m for m in EXPLORER_PARTS if m in modules) == sorted(needs)
    assert "decoders.jsonform" not in modules
    assert "crit_plus.sources.logheader" in modules  # service-a has a dump.log: it is read
    assert "crit_plus.sources.logs" not in modules


def test_decode_loads_the_json_form(service_a):
    """The other side of the test above: the JSON form is loaded where it is used."""
    code, modules = _loaded(["decode", "-i", str(service_a / "inventory.img")])
    assert code == 0 and "decoders.jsonform" in modules


def test_explore_names_are_the_parts_names():
    """Every name of :mod:`crit_plus.analysis.explore` (``__all__``) imports from it, and
    is the object its part defines: one class, wherever it is imported from."""
    code = ("import json\n"
            "from crit_plus.analysis import explore\n"
            "import crit_plus.analysis.explore_fds as fds\n"
            "import crit_plus.analysis.explore_memory as memory\n"
            "import crit_plus.analysis.explore_pages as pages\n"
            "parts = {**vars(fds), **vars(pages), **vars(memory)}\n"
            "ok = {n: getattr(explore, n) is parts.get(n, getattr(explore, n))\n"
            "      for n in explore.__all__}\n"
            "print(json.dumps({'ok': ok, 'dir': dir(explore)}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True, env=dict(os.environ, PYTHONPATH=ROOT))
    facts = json.loads(result.stdout)
    assert facts["ok"] and all(facts["ok"].values())
    assert {"FdRow", "MemoryGrep", "VmaRow", "ps_rows", "rss_table"} <= set(facts["ok"])
    assert set(facts["ok"]) <= set(facts["dir"])
    with pytest.raises(AttributeError):
        from crit_plus.analysis import explore
        explore.no_such_name  # noqa: B018


def test_log_names_are_the_header_modules():
    """``sources.logs`` still exports the header reader (one object, two modules)."""
    from crit_plus.sources import logheader, logs

    for name in logheader.__all__:
        assert getattr(logs, name) is getattr(logheader, name)


def test_size_reads_page_contents_only_with_content(service_a):
    """``size`` loads the page-content scan (digests, compression samples) only for
    ``--content``."""
    code, modules = _loaded(["size", str(service_a)])
    assert code == 0 and "crit_plus.analysis.size" in modules
    assert "crit_plus.analysis.content" not in modules
    code, modules = _loaded(["size", str(service_a), "--content"])
    assert code == 0 and "crit_plus.analysis.content" in modules
