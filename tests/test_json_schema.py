"""Every command's JSON says which document it is (docs/json.md).

The table of docs/json.md is read here; every command (and subcommand) of the click group
that offers ``--format json`` must have a row, and every JSON form of
tests/command_table.py (plus the forms below: several checkpoints, ``jsonl``, the
subcommands the table runs without JSON) is run on a real fixture: an object must start
with ``"schema"`` equal to its row's, a list or crit's document must be what the row says.
A new command that forgets the key, or its row, fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest

from tests.command_table import COMMANDS, fill, first_pid, invoke

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT, OTHER = "service-a", "service-b"

#: Forms the fuzz table does not run with JSON: the several-checkpoint envelope, jsonl,
#: and subcommands it runs as text only ({checkpoint}, {original}, {pid}, {output},
#: {fingerprint} are filled below).
EXTRA_FORMS = (
    ("summarize", "{checkpoint}", "{original}", "--format", "json"),
    ("summarize", "{checkpoint}", "--format", "jsonl"),
    ("size", "{checkpoint}", "{original}", "--format", "jsonl"),
    ("validate", "{checkpoint}", "{original}", "--format", "json"),
    ("validate", "{checkpoint}", "--format", "jsonl"),
    ("list", "{lxd}", "--format", "jsonl"),
    ("version", "--format", "json"),
    ("host", "compare", "{fingerprint}", "{fingerprint}", "--format", "json"),
    ("mem", "dump", "{checkpoint}", "{pid}", "--vma", "{vma}", "-o", "{output}",
     "--format", "json"),
)
SUBCOMMANDS = ("compare", "read", "grep", "dump")


def documented():
    """docs/json.md's table: command → (schema id or None, top level)."""
    rows = {}
    for line in (ROOT / "docs" / "json.md").read_text().splitlines():
        match = re.match(r"\| `?([a-z -]+?)`? \| (`(crit-plus/[a-z-]+/\d+)`|-) \| (\w+) \|",
                         line)
        if match:
            rows[match.group(1)] = (match.group(3), match.group(4))
    return rows


def offering_json():
    """Every command path (``host compare``) of the group whose --format offers json."""
    from crit_plus.cli import cli

    found = []

    def walk(group, prefix):
        context = click.Context(group)
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            path = f"{prefix} {name}".strip()
            if isinstance(command, click.Group):
                walk(command, path)
            formats = [p for p in command.params if p.name == "fmt"]
            if formats and "json" in getattr(formats[0].type, "choices", ()):
                found.append(path)

    walk(cli, "")
    return found


def command_of(args):
    """``mem read`` for ``mem read ...``, ``host`` for ``host --format json``."""
    if len(args) > 1 and args[1] in SUBCOMMANDS:
        return f"{args[0]} {args[1]}"
    return args[0]


def json_forms():
    """(command, form) of every run with JSON output."""
    forms = [form for use in COMMANDS.values() for form in use.forms]
    forms += EXTRA_FORMS
    return [(command_of(form), form) for form in forms
            if "--format" in form and form[form.index("--format") + 1] in ("json", "jsonl")]


def test_every_command_offering_json_has_a_row_and_a_run():
    rows, runs = documented(), {command for command, _form in json_forms()}
    for command in offering_json():
        assert command in rows, f"docs/json.md has no row for `{command}`"
        assert command in runs, f"no --format json form of `{command}` is run here"
    assert set(COMMANDS) <= {command.split()[0] for command in rows}


def test_the_table_matches_the_code():
    from crit_plus.render import JSON_SCHEMAS, schema_id

    objects = {command: schema for command, (schema, top) in documented().items()
               if top == "object"}
    named = {schema_id(name) for name in JSON_SCHEMAS}
    assert set(objects.values()) == named


@pytest.fixture(scope="module")
def places(fixture_root, tmp_path_factory):
    """The values of the forms' placeholders."""
    scratch = tmp_path_factory.mktemp("json-schema")
    checkpoint = fixture_root / CHECKPOINT
    fingerprint = scratch / "host.json"
    assert invoke(["host", "-o", str(fingerprint)]).code == 0
    pid = first_pid(checkpoint)
    mems = json.loads(invoke(["mems", str(checkpoint), str(pid), "--format", "json"]).out)
    vma = next(v for v in mems[0]["vmas"] if v["pages"]["present"])["start"]
    image = checkpoint / "pstree.img"
    decoded = scratch / "pstree.json"
    decoded.write_bytes(invoke(["decode", "-i", str(image)]).out)
    return {"checkpoint": checkpoint, "original": fixture_root / OTHER, "image": image,
            "json": decoded, "pid": pid, "output": scratch / "out", "fingerprint": fingerprint,
            "vma": f"{vma:x}", "lxd": fixture_root / "lxd-web" / "var" / "lib" / "lxd"}


def _filled(form, values):
    extra = {"{fingerprint}": values["fingerprint"], "{vma}": values["vma"],
             "{lxd}": values["lxd"]}
    form = tuple(str(extra.get(part, part)) for part in form)
    return fill(form, **values)


@pytest.mark.parametrize("command,form", json_forms(), ids=lambda x: " ".join(x)
                         if isinstance(x, tuple) else x)
def test_the_json_says_its_schema(command, form, places):
    schema, top = documented()[command]
    outcome = invoke(_filled(form, places))
    assert outcome.out, outcome.describe()
    jsonl = form[form.index("--format") + 1] == "jsonl"
    documents = [json.loads(line) for line in outcome.out.splitlines()] if jsonl \
        else [json.loads(outcome.out)]
    several = jsonl or (isinstance(documents[0], list) and top == "object")
    if several:  # envelopes, one per checkpoint, in lines or in an array
        envelope = documented()["several checkpoints"][0]
        items = documents if jsonl else documents[0]
        assert items, outcome.describe()
        for item in items:
            assert next(iter(item)) == "schema" and item["schema"] == envelope
            result = item["result"]
            if top == "object":
                assert next(iter(result)) == "schema" and result["schema"] == schema
        return
    document = documents[0]
    if top == "object":
        assert isinstance(document, dict), outcome.describe()
        assert next(iter(document)) == "schema", list(document)[:3]
        assert document["schema"] == schema
    elif top == "list":
        assert isinstance(document, list), outcome.describe()
    else:  # crit's own document: nothing added
        assert "schema" not in (document if isinstance(document, dict) else {})
