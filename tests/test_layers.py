"""The layers of docs/architecture.md, enforced on the source: every ``import`` of every
module of ``crit_plus`` and ``decoders`` (those inside functions too) is read from its
syntax tree, and none may reach a layer above its own, nor close a cycle.

Layers, bottom to top (a module may import its own layer and the ones below)::

    decoders              one image file → records; nothing of crit_plus
    graph                 graph, memory, files, findings (+ text helpers, the error line)
    sources               what a user named → an image directory; where managers keep images
    analysis              pure functions over the graph (+ schema_check)
    html                  the HTML pages, drawn from analysis results
    opening               the one path from what a user named to a graph
    report                the bug-report bundle
    commands              options, call analysis, render
    cli                   the click group and the error boundary
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("crit_plus", "decoders")

#: The graph layer: the checkpoint as one object (docs/architecture.md).
GRAPH = ("crit_plus.findings", "crit_plus.files", "crit_plus.memory", "crit_plus.pages",
         "crit_plus.graph", "crit_plus.namespaces", "crit_plus.mounts", "crit_plus.netns",
         "crit_plus.confinement", "crit_plus.resources")
#: Helpers beside it, that know no checkpoint: value → text, output, the error line.
HELPERS = ("crit_plus.describe", "crit_plus.render", "crit_plus.jsontext", "crit_plus.progress",
           "crit_plus.output", "crit_plus.boundary", "crit_plus.signals", "crit_plus.crittext")
#: (layer, the modules in it: a name stands for the module and everything below it, but
#: ``crit_plus`` for its ``__init__.py`` alone, which loads its names lazily).
LAYERS = (
    ("decoders", ("decoders", "crit_plus")),
    ("graph", GRAPH + HELPERS),
    ("sources", ("crit_plus.sources",)),
    ("analysis", ("crit_plus.analysis", "crit_plus.schema_check")),
    ("html", ("crit_plus.html",)),
    ("opening", ("crit_plus.opening",)),
    ("report", ("crit_plus.report",)),
    ("commands", ("crit_plus.commands",)),
    ("cli", ("crit_plus.cli", "crit_plus.__main__")),
)
#: Imports a layer may not make although they point down: (importer, imported, why).
FORBIDDEN = (
    ("decoders", "crit_plus", "decoders/ know nothing of crit_plus"),
    *((graph, helper, "the graph layer depends on decoders only")
      for graph in GRAPH for helper in HELPERS),
    ("crit_plus.commands", "crit_plus.graph", "commands open checkpoints through opening.py"),
    ("crit_plus.commands", "crit_plus.sources.resolve",
     "commands open checkpoints through opening.py"),
    ("crit_plus.commands", "crit_plus.sources.layout", "only sources/ knows layouts"),
    ("crit_plus.analysis", "crit_plus.sources.resolve", "analysis is given its source"),
    ("crit_plus.report", "crit_plus.sources.resolve", "reports open through opening.py"),
    ("crit_plus.report", "crit_plus.cli",
     "the report runs crit-plus's commands through the CLI's group and entry point, which "
     "the report command hands down (report/selfrun.py Commands), never imported"),
)
#: Imports that point up, and why: none (report/selfrun.py's import of the CLI is gone:
#: the CLI hands its commands down).  An entry here needs its reason in
#: docs/architecture.md and docs/development.md.
UPWARD: dict[tuple[str, str], str] = {}


def _modules():
    """Every module name → (its file, whether it is a package's __init__)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


MODULES = _modules()


def _known(name):
    """The module of ours that ``name`` (a module or a name in one) is, or None."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imported(module, is_package, node):
    """The modules of ours that one import statement loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".")[: len(module.split(".")) - (0 if is_package else 1)]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module
        names = [f"{prefix}.{alias.name}" for alias in node.names]
    return {known for known in map(_known, names) if known is not None}


def _dynamic_commands():
    """cli.py imports each command's module by name (``COMMAND_MODULES``): those edges."""
    tree = ast.parse(MODULES["crit_plus.cli"][0].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "COMMAND_MODULES" for t in node.targets):
            table = ast.literal_eval(node.value)
            return {f"crit_plus.commands.{name}" for name in table.values()}
    raise AssertionError("crit_plus/cli.py has no COMMAND_MODULES table")


def _type_checking_only(tree):
    """The import nodes inside ``if TYPE_CHECKING:`` blocks (never run)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            found |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return found


def _edges(runtime_only=False):
    """Module → the modules of ours it imports; with ``runtime_only``, not counting the
    imports for type hints alone (``if TYPE_CHECKING:``), which never run."""
    edges = {}
    for module, (path, is_package) in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        skipped = _type_checking_only(tree) if runtime_only else set()
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
                targets |= _imported(module, is_package, node)
        edges[module] = targets - {module}
    edges["crit_plus.cli"] |= _dynamic_commands()
    return edges


#: Every import, type hints' included: no layer may name one above it, even for a hint.
EDGES = _edges()
#: The imports that run: none may close a cycle.
RUNTIME_EDGES = _edges(runtime_only=True)


def _under(module, prefix):
    return module == prefix or module.startswith(prefix + ".")


def _layer(module):
    """The index in LAYERS of ``module`` (the longest matching name wins)."""
    best = None
    for index, (_name, members) in enumerate(LAYERS):
        for member in members:
            inside = module == member if member == "crit_plus" else _under(module, member)
            if inside and (best is None or len(member) > len(best[1])):
                best = (index, member)
    assert best is not None, f"{module} is in no layer: add it to LAYERS in tests/test_layers.py"
    return best[0]


def test_every_module_has_a_layer_and_the_import_table_is_read():
    for module in MODULES:
        _layer(module)
    assert "crit_plus.opening" in EDGES["crit_plus.commands.options"]
    assert "crit_plus.commands.summarize" in EDGES["crit_plus.cli"]
    # an import inside a function counts
    assert "crit_plus.resources" in RUNTIME_EDGES["crit_plus.graph"]


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for module, targets in EDGES.items():
        for target in targets:
            if _layer(target) > _layer(module) and (module, target) not in UPWARD:
                upward.append(f"{module} ({LAYERS[_layer(module)][0]}) imports {target} "
                              f"({LAYERS[_layer(target)][0]})")
    assert not upward, "\n".join(sorted(upward))


@pytest.mark.parametrize("importer,imported,why", FORBIDDEN)
def test_forbidden_imports(importer, imported, why):
    found = sorted(f"{module} imports {target}"
                   for module, targets in EDGES.items() if _under(module, importer)
                   for target in targets if _under(target, imported))
    assert not found, f"{why}: " + "; ".join(found)


def test_decoders_import_nothing_of_crit_plus():
    found = [(m, t) for m, ts in EDGES.items() if m.startswith("decoders")
             for t in ts if not t.startswith("decoders")]
    assert not found


def test_no_import_cycle():
    """Tarjan's strongly connected components: any with two modules or more is a cycle.
    The one upward import (UPWARD) is left out: it runs only inside ``report``, after
    the CLI is loaded."""
    graph = {m: {t for t in ts if (m, t) not in UPWARD} for m, ts in RUNTIME_EDGES.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    """The check above can fail: a made-up import of cli from commands/options is a cycle."""
    for edges in (EDGES, RUNTIME_EDGES):
        monkeypatch.setitem(edges, "crit_plus.commands.options",
                            edges["crit_plus.commands.options"] | {"crit_plus.cli"})
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycle()
    with pytest.raises(AssertionError, match="imports crit_plus.cli"):
        test_no_module_imports_a_layer_above_its_own()


#: Directory names of managers' layouts (crit_plus/sources/layout.py).
LAYOUT_NAMES = ("state", "rootfs", "checkpoint", "containers", "containers-snapshots",
                "snapshots", "storage-pools", "backup.yaml")


def test_layouts_are_probed_by_sources_alone():
    """Only sources/ (and report/, which gathers a manager's files) joins the names of
    managers' directories to a path (``os.path.join(d, "state")``, ``d / "rootfs"``)."""
    probing = []
    for module, (path, _pkg) in MODULES.items():
        if _under(module, "crit_plus.sources") or _under(module, "crit_plus.report"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            joined = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("join", "joinpath"):
                joined = node.args[1:] if node.func.attr == "join" else node.args
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                joined = [node.right]
            if any(isinstance(part, ast.Constant) and part.value in LAYOUT_NAMES
                   for part in joined or ()):
                probing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not probing, "layout probed outside sources/: " + ", ".join(probing)


def test_no_protobuf_message_above_decoders_through_raw():
    """Records carry the fields analysis needs: nothing above decoders/ reads a record's
    protobuf message (``record.raw``, ``getattr(record, "raw")``)."""
    found = []
    for module, (path, _pkg) in MODULES.items():
        if not module.startswith("crit_plus"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "raw":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("getattr", "hasattr") and len(node.args) > 1 \
                    and isinstance(node.args[1], ast.Constant) and node.args[1].value == "raw":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, "protobuf read through .raw above decoders/: " + ", ".join(found)


def test_file_entries_sub_messages_stay_in_the_graph():
    """``files.img``'s sub-message of a file (``FileEntry.detail``, protobuf) is read by
    crit_plus/files.py alone: above the graph layer a file's facts are FileObject's
    (``details``, ``external``, ``build_id``...)."""
    found = []
    for module, (path, _pkg) in MODULES.items():
        if not module.startswith("crit_plus") or _layer(module) <= _layer("crit_plus.graph"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "detail":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, "FileEntry.detail read above the graph: " + ", ".join(found)


#: Where what a checkpoint holds is the graph's records: these layers read no image
#: message (``schema_check`` and the crit commands ``decode``/``show``/``encode``/``info``/
#: ``version`` do, for crit's own JSON form and the schema: docs/architecture.md).
RECORDS_ONLY = ("crit_plus.analysis", "crit_plus.html", "crit_plus.report")
#: What those may take from decoders/: errors, flag and enum tables, image names, the record
#: types, untrusted byte reads (page data, logs) — no module that parses or holds messages.
DECODERS_ALLOWED = ("decoders.errors", "decoders.flags", "decoders.framing", "decoders.kinds",
                    "decoders.lazy", "decoders.records")
#: Calls that hand out an image's messages (the graph's ``Checkpoint.decoded`` and the
#: decoders' readers): above the graph layer only crit's commands make them.
MESSAGE_CALLS = frozenset({"messages", "decoded", "read_messages", "iter_messages",
                           "message_batches", "json_entries"})


def _raw_imports(path):
    """Every module name an ``import`` in ``path`` names (relative ones resolved to ours
    are left out: the layer tests read those), with its line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module, node.lineno
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno


def _message_imports(module, path):
    found = []
    for name, line in _raw_imports(path):
        top = name.split(".")[0]
        ours = _known(name)
        if top in ("google", "pycriu", "images") or name.endswith("_pb2") \
                or (ours is not None and ours.startswith("decoders")
                    and not any(_under(ours, allowed) for allowed in DECODERS_ALLOWED)
                    and ours != "decoders"):
            found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


def test_analysis_html_and_report_import_no_message_types():
    """What analysis computes, html draws and report gathers come from the graph's typed
    records: no protobuf, no pycriu, no decoders module that parses or holds messages."""
    found = [hit for module, (path, _pkg) in MODULES.items()
             if any(_under(module, layer) for layer in RECORDS_ONLY)
             for hit in _message_imports(module, path)]
    assert not found, "message types above the graph: " + "; ".join(found)


def _message_calls(path):
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else \
                func.id if isinstance(func, ast.Name) else None
            if name in MESSAGE_CALLS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {name}()")
    return found


def test_nothing_above_the_graph_reads_an_images_messages():
    """CPU info, ttys, file locks, memfds, queued bytes, cgroups...: the graph reads the
    images (``Checkpoint.decoded``, kept for the graph layer) and hands out records; above
    it no module but crit's image commands asks for messages (``Checkpoint.messages`` is
    gone)."""
    crit_commands = ("crit_plus.commands.decode", "crit_plus.commands.encode",
                     "crit_plus.commands.info", "crit_plus.schema_check")
    found = [hit for module, (path, _pkg) in MODULES.items()
             if module.startswith("crit_plus") and _layer(module) > _layer("crit_plus.graph")
             and module not in crit_commands
             for hit in _message_calls(path)]
    assert not found, "image messages read above the graph: " + "; ".join(found)


def test_the_message_checks_can_fail(tmp_path):
    """The two checks above find what they forbid: a module that reads cpuinfo.img's
    messages through the graph, and one that imports a message reader."""
    bad = tmp_path / "bad.py"
    bad.write_text("from decoders.image import read_messages\nimport google.protobuf\n"
                   "def f(checkpoint):\n    return checkpoint.messages('cpuinfo.img')\n")
    original = ROOT
    try:
        globals()["ROOT"] = tmp_path
        assert [hit.split(" ", 1)[1] for hit in _message_imports("crit_plus.analysis.bad", bad)] \
            == ["imports decoders.image", "imports decoders.image.read_messages",
                "imports google.protobuf"]
        assert [hit.split(" ", 1)[1] for hit in _message_calls(bad)] == ["calls messages()"]
    finally:
        globals()["ROOT"] = original


def test_the_graph_has_no_messages_method():
    """``Checkpoint.messages`` handed raw messages to analysis; the graph's records took
    its place (``cpuinfo``, ``ttys``, ``file_locks``, ``memfds``, ``queues``)."""
    from crit_plus.graph import Checkpoint

    assert not hasattr(Checkpoint, "messages")
    for name in ("cpuinfo", "ttys", "file_locks", "memfds", "queues", "image_error"):
        assert hasattr(Checkpoint, name)
