"""``-o -``: standard output, as the Unix convention has it, for the commands whose ``-o``
writes bytes (``mem read``, ``mem dump``; ``decode``, ``encode``, ``summarize``... already
did); raw bytes never to a terminal (one line, exit 2); a reader that goes away (``| head``)
ends the command quietly; ``core`` and ``report``, which need a file, refuse ``-`` in one
line.  On the real fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import crit_plus
from tests.cli import run_on_terminal

ROOT = Path(__file__).resolve().parent.parent
PID = 12525


def _heap(service_a):
    process = crit_plus.open_checkpoint(service_a).process(PID)
    return hex(next(m for m in process.vmas if m.kind == "heap").start)


def _run(args, cwd, stdin=None):
    """The CLI in ``cwd`` (so that a file named ``-`` would land there), bytes out."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "crit_plus", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, input=stdin, timeout=120)


def _on_terminal(args, cwd):
    """``(exit code, what reached the terminal, stderr)`` of the CLI with standard output a
    terminal."""
    done, shown = run_on_terminal(*args, cwd=cwd)
    return done.returncode, shown, done.stderr.decode()


def test_mem_read_dash_writes_the_bytes_to_stdout(service_a, tmp_path):
    """``mem read ... -o -`` wrote a file named ``-``; now the raw bytes go to standard
    output, the same bytes ``-o FILE`` writes, and the line on stderr says where."""
    heap = _heap(service_a)
    done = _run(["mem", "read", service_a, PID, heap, "4k", "-o", "-"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "-").exists()
    assert done.stderr.decode() == f"wrote 4096 bytes at {heap} of pid {PID} to standard " \
                                   "output\n"
    to_file = _run(["mem", "read", service_a, PID, heap, "4k", "-o", tmp_path / "heap.bin"],
                   tmp_path)
    assert to_file.returncode == 0, to_file.stderr
    assert done.stdout == (tmp_path / "heap.bin").read_bytes() and len(done.stdout) == 4096
    assert done.stdout.strip(b"\0"), "the heap's first page holds data"


def test_mem_dump_dash_streams_the_mapping_to_stdout(service_a, tmp_path):
    """``mem dump ... -o -``: the mapping's bytes on standard output (zero pages written as
    zeros), the same as the file ``-o FILE`` writes; ``--format json`` would share standard
    output with them: one line, exit 2."""
    heap = _heap(service_a)
    done = _run(["mem", "dump", service_a, PID, "--vma", heap, "-o", "-"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "-").exists()
    assert b"to standard output" in done.stderr
    to_file = _run(["mem", "dump", service_a, PID, "--vma", heap, "-o", tmp_path / "heap.bin"],
                   tmp_path)
    assert to_file.returncode == 0, to_file.stderr
    assert done.stdout == (tmp_path / "heap.bin").read_bytes()
    json_too = _run(["mem", "dump", service_a, PID, "--vma", heap, "-o", "-", "-f", "json"],
                    tmp_path)
    assert json_too.returncode == 2 and json_too.stdout == b""
    assert json_too.stderr.decode().count("\n") == 1
    assert "--format json would go too" in json_too.stderr.decode()


@pytest.mark.parametrize("kind", ["read", "dump"])
def test_mem_dash_through_head_ends_quietly(service_a, tmp_path, kind):
    """``crit-plus mem dump ... -o - | head -c 16``: the reader goes away after 16 bytes of
    the 1.4 MiB heap; the command ends with 0 and says nothing (no traceback, no "wrote")."""
    heap = _heap(service_a)
    args = ["read", service_a, PID, heap, "1m"] if kind == "read" else \
        ["dump", service_a, PID, "--vma", heap]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "crit_plus", "mem", *map(str, args),
                                "-o", "-"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    first = process.stdout.read(16)
    process.stdout.close()
    err = process.stderr.read()
    process.wait(60)
    whole = _run(["mem", *args, "-o", "-"], tmp_path).stdout
    assert len(whole) >= 1 << 20 and first == whole[:16]
    assert (process.returncode, err) == (0, b"")
    assert not (tmp_path / "-").exists()


def test_raw_bytes_are_never_written_to_a_terminal(service_a, tmp_path):
    """``mem read -o -``, ``mem dump -o -`` and ``encode`` (standard output by default, or
    ``-o -``) to a terminal: one line naming what was not written, exit 2 (a usage error),
    nothing on the screen and nothing read first."""
    heap = _heap(service_a)
    image_json = _run(["decode", "-i", service_a / "core-12525.img"], tmp_path).stdout
    (tmp_path / "core.json").write_bytes(image_json)
    for args in (["mem", "read", service_a, PID, heap, "64", "-o", "-"],
                 ["mem", "dump", service_a, PID, "--vma", heap, "-o", "-"],
                 ["encode", "-i", tmp_path / "core.json"],
                 ["encode", "-i", tmp_path / "core.json", "-o", "-"]):
        code, shown, err = _on_terminal(args, tmp_path)
        assert (code, shown) == (2, b""), (args, err)
        assert err.count("\n") == 1 and err.startswith("crit-plus: error: "), err
        assert "not written to a terminal" in err and "--help`" in err, err
    assert not (tmp_path / "-").exists()
    # a text output is fine on a terminal: decode's JSON, the hex dump
    code, shown, err = _on_terminal(["mem", "read", service_a, PID, heap, "16"], tmp_path)
    assert code == 0 and heap[2:].encode() in shown, err


def test_encode_dash_round_trips_through_a_pipe(service_a, tmp_path):
    """``decode -o -`` then ``encode -o -`` through pipes gives the image's bytes back."""
    image = service_a / "core-12525.img"
    decoded = _run(["decode", "-i", image, "-o", "-"], tmp_path)
    assert decoded.returncode == 0, decoded.stderr
    encoded = _run(["encode", "-o", "-"], tmp_path, stdin=decoded.stdout)
    assert encoded.returncode == 0, encoded.stderr
    assert encoded.stdout == image.read_bytes()
    assert not (tmp_path / "-").exists()


def test_core_refuses_dash_in_one_line(service_a, tmp_path):
    """``core ... -o -`` wrote a file (or, without PID, a directory) named ``-``: a core is
    written by seeking, so ``-`` is refused in one line, exit 2, nothing made."""
    for args in (["core", service_a, PID, "-o", "-"], ["core", service_a, "-o", "-"]):
        done = _run(args, tmp_path)
        assert done.returncode == 2 and done.stdout == b"", done.stderr
        err = done.stderr.decode()
        assert err.count("\n") == 1 and "not to standard output" in err, err
    assert list(tmp_path.iterdir()) == []


def test_summarize_html_dash_is_stdout_and_report_refuses_it(service_a, tmp_path):
    """``summarize -f html -o -`` writes the page to standard output (no file ``-``); a
    report bundle is a file (written beside and renamed, mode 0600): ``-`` is refused."""
    done = _run(["summarize", service_a, "-f", "html", "-o", "-"], tmp_path)
    assert done.returncode == 0, done.stderr
    page = done.stdout.decode()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    report = _run(["report", service_a, "-o", "-"], tmp_path)
    assert report.returncode == 2 and report.stdout == b"", report.stderr
    assert report.stderr.decode().count("\n") == 1 and b"give -o FILE" in report.stderr
    assert list(tmp_path.iterdir()) == []


def test_mem_read_json_with_o_says_what_it_wrote(service_a, tmp_path):
    """``mem read ... -o FILE -f json`` printed nothing (the report went to stderr as
    text); ``-o - -f json`` was taken and mixed JSON-less bytes into stdout.  Now as
    ``mem dump``: a JSON report of the file written; ``-o -`` with JSON refused."""
    heap = _heap(service_a)
    target = tmp_path / "piece.bin"
    done = _run(["mem", "read", service_a, PID, heap, "64", "-o", target, "-f", "json"],
                tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["schema"] == "crit-plus/mem-read/1"
    assert (report["file"], report["bytes"], report["length"]) == (str(target), 64, 64)
    assert target.stat().st_size == 64
    json_too = _run(["mem", "read", service_a, PID, heap, "64", "-o", "-", "-f", "json"],
                    tmp_path)
    assert json_too.returncode == 2 and json_too.stdout == b""
    assert "--format json would go too" in json_too.stderr.decode()
