"""Output safety: names from images cannot garble a terminal or break JSON.

A synthetic checkpoint (tests/synth.py ``hostile_names``) holds escape
sequences, C1 and bidi controls, line breaks and bytes that are not UTF-8 in
its comm, a file path, a unix socket name, the command line and the
environment.  Tables must show them escaped; JSON must stay valid UTF-8 with
undecodable bytes as ``\\xHH`` (docs/robustness.md).  Every registered
checkpoint command is run on it, through the table in tests/command_table.py,
so commands added later are held to the same rules.
"""

from __future__ import annotations

import io
import json
import re

import pytest

import crit_plus
from crit_plus.render import jsonable, safe_text, write_fields, write_json, write_table
from decoders.image import open_image

from .command_table import COMMANDS, EXIT_OK, fill, invoke, problems, registered
from .synth import HOSTILE, hostile_names

#: What must never reach a terminal raw: C0 controls but tab and newline, DEL, C1
#: controls, line/paragraph separators, bidi overrides, lone surrogates.
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                    r"\ud800-\udfff]")


def escaped(raw):
    """The documented text of image bytes: UTF-8 kept, other bytes as \\xHH."""
    return raw.decode("utf-8", "backslashreplace")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return hostile_names(tmp_path_factory.mktemp("hostile") / "checkpoint")


def test_the_graph_gives_text_with_undecodable_bytes_escaped(hostile):
    process = crit_plus.open_checkpoint(hostile.directory).process(1)
    assert process.comm == escaped(HOSTILE["comm"])
    log, sock = process.fds
    assert log.name == escaped(HOSTILE["path"])
    assert sock.name == "@" + escaped(HOSTILE["socket"][1:])
    argv = HOSTILE["argv"].rstrip(b"\0").split(b"\0")
    assert process.argv == tuple(part.decode("utf-8", "surrogateescape") for part in argv)
    # memory strings keep undecodable bytes as surrogate escapes (os.fsencode gives them back)
    assert [part.encode("utf-8", "surrogateescape") for part in process.argv] == argv


def test_tables_escape_what_the_images_hold(hostile):
    process = crit_plus.open_checkpoint(hostile.directory).process(1)
    values = [process.comm, process.fds[0].name, process.fds[1].name, *process.argv,
              *process.environ]
    out = io.StringIO()
    write_table([{"name": value} for value in values], (("name", "NAME"),), out)
    write_fields([("name", value) for value in values], out)
    text = out.getvalue()
    assert not UNSAFE.search(text), ascii(text)
    text.encode("utf-8")  # encodable: no lone surrogates left
    assert "\\x1b[31m" in text and "\\xff" in text and "\\u202e" in text and "\\r" in text
    assert safe_text(process.argv[1]) == "--name=\\xff\\xfe\\r\\n"


def test_json_is_valid_utf8_with_bytes_escaped(hostile):
    process = crit_plus.open_checkpoint(hostile.directory).process(1)
    out = io.StringIO()
    write_json(jsonable({"comm": process.comm, "argv": process.argv,
                         "environ": process.environ, "fds": [fd.name for fd in process.fds]}), out)
    data = out.getvalue().encode("utf-8")  # raises on a lone surrogate
    document = json.loads(data.decode("utf-8"))
    assert document["comm"] == escaped(HOSTILE["comm"])
    assert document["argv"][1] == escaped(b"--name=\xff\xfe\r\n")
    assert document["environ"][1] == escaped(b"LANG=\xe9t\xe9")


def test_json_output_escapes_what_a_terminal_would_act_on():
    """JSON may carry C1 and bidi controls raw; crit-plus writes them as \\uXXXX (the same
    string to a parser) so that JSON shown on a terminal is as safe as a table."""
    value = "a\x1b[2J\x85\x9b31m\u202eb\u2028c\udcff"
    out = io.StringIO()
    write_json({"name": value}, out)
    assert not UNSAFE.search(out.getvalue())
    assert json.loads(out.getvalue()) == {"name": value}
    out.getvalue().encode("utf-8")


@pytest.mark.parametrize("image", ["core-1.img", "files.img"])
@pytest.mark.parametrize("pretty", [False, True])
def test_decode_writes_valid_utf8_json(hostile, image, pretty):
    args = ["decode", "-i", hostile.path(image)] + (["--pretty"] if pretty else [])
    outcome = invoke(args)
    assert outcome.code == EXIT_OK, outcome.describe()
    text = outcome.out.decode("utf-8")
    assert not UNSAFE.search(text)  # JSON escapes the controls (\u001b)
    found = json.dumps(json.loads(text))
    want = HOSTILE["comm"] if image == "core-1.img" else HOSTILE["path"]
    assert json.dumps(escaped(want))[1:-1] in found


def test_decoded_names_round_trip_as_their_escaped_text(hostile, tmp_path):
    """crit's decode fails on these images (bytes in JSON); crit-plus shows the
    escaped text, and encode writes that text back (documented: not the raw bytes)."""
    with open_image(hostile.path("core-1.img")) as image:
        document = image.to_json()
    assert document["entries"][0]["tc"]["comm"] == escaped(HOSTILE["comm"])
    json_in = tmp_path / "core.json"
    json_in.write_text(json.dumps(document))
    outcome = invoke(["encode", "-i", str(json_in), "-o", str(tmp_path / "core-1.img")])
    assert outcome.code == EXIT_OK, outcome.describe()
    with open_image(tmp_path / "core-1.img") as image:
        assert image.to_json() == document


def _checkpoint_forms():
    return [(name, form) for name, use in sorted(COMMANDS.items()) if use.on == "checkpoint"
            for form in use.forms]


@pytest.mark.parametrize("name, form", _checkpoint_forms(),
                         ids=lambda value: " ".join(value) if isinstance(value, tuple) else value)
def test_every_checkpoint_command_shows_hostile_names_safely(hostile, name, form, tmp_path):
    if name not in registered():
        pytest.skip(f"{name!r} is not registered yet")
    args = fill(form, checkpoint=hostile.directory, original=hostile.directory, pid=1,
                image=hostile.path("core-1.img"), output=tmp_path / "output")
    outcome = invoke(args)
    use = COMMANDS[name]
    assert outcome.code in use.results and not problems(outcome, use), outcome.describe()
    text = outcome.out.decode("utf-8")  # strict: valid UTF-8
    assert not UNSAFE.search(text), f"raw control characters in: {ascii(text[:2000])}"
    assert not UNSAFE.search(outcome.err)
