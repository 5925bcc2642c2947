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
import subprocess

import pytest

import crit_plus
from crit_plus.render import jsonable, safe_text, write_fields, write_json, write_table
from decoders.flags import PAGE_SIZE
from decoders.image import open_image
from tests.cli import run_cli, start_cli, terminate_when

from .command_table import COMMANDS, EXIT_OK, fill, invoke, problems, registered
from .synth import HOSTILE, PRESENT, RunSpec, hostile_names, minimal, run, vma

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


# -- mem dump of hostile mappings (issue 25) ----------------------------------------------------

HUGE_BASE = 0x10000000


def _dump(*args, **options):
    process = start_cli("mem", "dump", *args, stdout=subprocess.PIPE, **options)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def test_mem_dump_writes_zero_pages_as_holes(tmp_path):
    """A mapping of 1 GiB of zero pages (four pages of data in the middle) was written as
    1 GiB of real zeros; now as holes: the file has the mapping's size, not its blocks."""
    size = 1 << 30
    data = run(HUGE_BASE + (1 << 29), 4)
    ck = minimal(tmp_path / "ck", vmas=[vma(HUGE_BASE, HUGE_BASE + size)], runs=[data])
    out = tmp_path / "zeros.bin"
    code, _out, err = _dump(ck.directory, 1, "--vma", hex(HUGE_BASE), "-o", out)
    assert code == 0, err
    assert out.stat().st_size == size and out.stat().st_blocks * 512 < 64 << 20
    with open(out, "rb") as stream:
        stream.seek(1 << 29)
        assert stream.read(4 * PAGE_SIZE) == data.data


def test_mem_dump_of_a_64_tib_mapping_is_bounded(tmp_path):
    """A hostile 64 TiB VMA was 36 GB of zeros in 60 s; a 2^40-page run said only
    'Invalid argument'.  Now: holes (the file system refuses such a file: one line naming
    the output and the offset, no partial file), and a pipe refuses past 16 GiB."""
    pages = 1 << 34
    huge = minimal(tmp_path / "huge", vmas=[vma(HUGE_BASE, HUGE_BASE + pages * PAGE_SIZE)])
    run_ck = minimal(tmp_path / "run", vmas=[vma(HUGE_BASE, HUGE_BASE + (1 << 40) * PAGE_SIZE)],
                     runs=[RunSpec(HUGE_BASE, 1 << 40, PRESENT, None)], write_pages=False)
    run_ck.write_raw("pages-1.img", b"\x5a" * (3 * PAGE_SIZE))
    out = tmp_path / "out" / "vma.bin"
    out.parent.mkdir()
    for ck in (huge, run_ck):
        code, _out, err = _dump(ck.directory, 1, "--vma", hex(HUGE_BASE), "-o", out)
        if code == 0:  # a file system that takes a 64 TiB sparse file
            assert out.stat().st_blocks * 512 < 64 << 20
            out.unlink()
            continue
        assert code == 1 and err.count("\n") == 1, err
        assert err.startswith(f"crit-plus: {out}: ") and "at offset 0x" in err, err
        assert list(out.parent.iterdir()) == []
    code, _out, err = _dump(huge.directory, 1, "--vma", hex(HUGE_BASE), "-o", "/dev/stdout")
    assert code == 1 and "more than the 16.0 GiB written to an output that cannot seek" in err


def test_sigterm_leaves_no_partial_mem_dump(tmp_path):
    """SIGTERM (and SIGKILL) left a partial file of gigabytes: SIGTERM now unwinds and
    removes the hidden .NAME.*.partial file (SIGKILL cannot be handled)."""
    pages = (256 << 20) // PAGE_SIZE
    ck = minimal(tmp_path / "ck", vmas=[vma(HUGE_BASE, HUGE_BASE + pages * PAGE_SIZE)],
                 runs=[RunSpec(HUGE_BASE, pages, PRESENT, None)], write_pages=False)
    with open(ck.path("pages-1.img"), "wb") as pages_file:
        pages_file.truncate(pages * PAGE_SIZE)  # data (read, then written), all zero
    out = tmp_path / "out" / "big.bin"
    out.parent.mkdir()
    process = start_cli("mem", "dump", ck.directory, 1, "--vma", hex(HUGE_BASE), "-o", out,
                        stdout=subprocess.DEVNULL)
    err = terminate_when(process, lambda: list(out.parent.glob(".big.bin.*.partial")))
    if process.returncode == 0:
        pytest.skip("the dump ended before SIGTERM came")
    assert process.returncode == 143 and err == "crit-plus: terminated\n", err
    # nothing partial: no temporary file, and the output only if it was complete before the
    # signal came (renamed into place just before it)
    left = list(out.parent.iterdir())
    assert left in ([], [out]), left
    assert not left or out.stat().st_size == pages * PAGE_SIZE


def test_an_output_in_a_missing_directory_names_the_file_asked_for(service_a, tmp_path):
    """The temporary file a whole-or-nothing output starts as is never what an error names."""
    wanted = tmp_path / "no-such-dir" / "out.json"
    done = run_cli("decode", "-i", service_a / "pstree.img", "-o", wanted)
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"crit-plus: {wanted}: No such file or directory\n"
