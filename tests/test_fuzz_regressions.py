"""What the fuzzers found, kept as regular tests.

- ``tests/fuzz_findings/*.bin``: inputs atheris found (``make fuzz``; layout in
  tests/fuzz_target.py), replayed through the same target: they must now read
  without anything but a DecodeError.  New findings go there (see
  tests/fuzz_atheris.py).
- The seed corpus (every metadata image of two fixtures) through the target:
  valid images decode every way and survive decode → encode → decode.
- One test per bug the damage sweep (tests/test_fuzz_commands.py) found, at
  the layer that was fixed, with the smallest input that showed it.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

import crit_plus
from crit_plus.sources.backup import BackupError, load_backup
from crit_plus.sources.logs import MAX_LINE, read_header
from decoders import framing
from decoders.encode import EncodeError, encode_image
from decoders.errors import DecodeError, UnreadableImageError
from decoders.flags import PAGE_SIZE, FdType
from decoders.image import open_image

from . import damage
from .damage import workspace  # noqa: F401 (fixture)
from .command_table import EXIT_BAD_INPUT, EXIT_OK, bounded, invoke
from .fuzz_target import NAMES, input_for, one_input
from .synth import PRESENT, RunSpec, message, minimal, run, vma

FINDINGS = Path(__file__).parent / "fuzz_findings"
P = PAGE_SIZE
BASE = 0x7F0000000000


# -- atheris findings and the seed corpus ---------------------------------------------------------


def test_there_are_findings_to_replay():
    assert sorted(FINDINGS.glob("*.bin")), f"{FINDINGS} holds no findings"


@pytest.mark.parametrize("finding", sorted(p.name for p in FINDINGS.glob("*.bin")))
def test_fuzz_finding_stays_fixed(finding, tmp_path):
    data = (FINDINGS / finding).read_bytes()
    stem = NAMES[data[0] % len(NAMES)].split("-")[0].split(".")[0]
    assert stem == finding.split("-")[0], "name a finding after the image kind it holds"
    with bounded(seconds=60):
        one_input(data, tmp_path)


@pytest.mark.parametrize("fixture", ["service-a", "service-old"])
def test_the_seed_corpus_reads_and_round_trips(fixture_root, fixture, tmp_path):
    seeded = 0
    for image in damage.metadata_images(fixture_root / fixture):
        name = next((n for n in NAMES if n.split("-")[0] == image.name.split("-")[0]
                     and n.endswith(".img") == image.name.endswith(".img")), None)
        if name is None or (name.startswith("pagemap-") and "shmem" in image.name) != \
                ("shmem" in name):
            continue
        one_input(input_for(name, image.read_bytes()), tmp_path)
        seeded += 1
    assert seeded >= 15


# -- decoders -------------------------------------------------------------------------------------


def test_a_string_field_that_is_not_utf8_decodes_as_escaped_text(service_a, tmp_path):
    """A bit flip in inventory.img's run id (0x31 '1' → 0xb1) made decode raise TypeError
    (protobuf returns such a string as bytes)."""
    data = bytearray((service_a / "inventory.img").read_bytes())
    data[0x41] ^= 0x80
    path = tmp_path / "inventory.img"
    path.write_bytes(bytes(data))
    for args in (["decode", "-i", str(path)], ["show", str(path)]):
        outcome = invoke(args)
        assert outcome.code == EXIT_OK, outcome.describe()
        assert "929f131a-4f20-4\\\\xb186" in outcome.out.decode("utf-8")


def test_an_entry_without_a_required_field_decodes_but_does_not_encode(tmp_path):
    """Found by atheris: fdinfo_entry without ``type``.  crit decodes it too; encode
    refuses it with one line (CRIU's own reader would refuse the image)."""
    builder = minimal(tmp_path / "ck")
    entry = message("fdinfo_entry", partial=True, id=7, flags=0, fd=3)
    builder.write("fdinfo-9.img", "FDINFO", [entry])
    with open_image(builder.path("fdinfo-9.img")) as image:
        document = image.to_json()
    assert document["entries"] == [{"id": 7, "flags": 0, "fd": 3}]
    with pytest.raises(EncodeError, match="entry 0: .*missing required fields: type"):
        encode_image(document, "fdinfo.json")


def test_a_batch_with_a_required_field_missing_deep_inside_decodes(service_a, tmp_path):
    """A bit flip in core-12525.img (0xa14, bit 3) leaves a sigaction without its
    required fields: the batch probe for unknown fields asked protobuf for the batch's
    size, which it refuses then (EncodeError escaped).  crit decodes it; so do we, alike."""
    from .oracle import crit_json

    data = bytearray((service_a / "core-12525.img").read_bytes())
    data[0xA14] ^= 1 << 3
    path = tmp_path / "core-12525.img"
    path.write_bytes(bytes(data))
    outcome = invoke(["decode", "-i", str(path)])
    assert outcome.code == EXIT_OK, outcome.describe()
    assert json.loads(outcome.out) == crit_json(path)


@pytest.mark.parametrize("document, words", [
    ({"magic": "PSTREE", "entries": 5}, "'entries' must be a list"),
    ({"magic": "PSTREE", "entries": [7]}, "entry 0: an entry must be an object"),
    ({"magic": "INVENTORY", "entries": [{"img_version": 2, "fdinfo_per_id": 2 ** 70}]},
     "entry 0: cannot encode inventory_entry"),
])
def test_encode_refuses_what_is_not_an_image_in_one_line(document, words):
    with pytest.raises(EncodeError, match=words) as caught:
        encode_image(document, "x.json")
    assert "\n" not in str(caught.value)


def _fifo(path):
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("make, error, words, decoded", [
    (lambda path: os.symlink("/dev/zero", path), UnreadableImageError,
     "core-1.img: cannot read: not a regular file but a character device", None),
    (os.mkdir, UnreadableImageError, "core-1.img: cannot read: not a regular file but a directory",
     None),
    (os.mkfifo, UnreadableImageError, "core-1.img: cannot read: not a regular file but a FIFO",
     "core-1.img: at offset 0x0: truncated magic: needs 4 bytes, 0 left"),
], ids=["devzero", "directory", "fifo"])
def test_an_image_that_is_not_a_regular_file_is_refused_at_once(tmp_path, make, error, words,
                                                                 decoded):
    """/dev/zero was read into memory without end; a FIFO made open() wait for a writer
    forever.  A FIFO the user names is still read by ``decode -i`` (as ``decode -i
    <(...)`` needs: without a writer it is empty); ``open_image`` refuses it unless told
    (an image found in a directory: a silent writer would make it wait)."""
    path = tmp_path / "core-1.img"
    make(path)
    with bounded(seconds=20):
        with pytest.raises(error) as caught:
            open_image(path)
        outcome = invoke(["decode", "-i", str(path)])
    assert str(caught.value) == words
    words = decoded or words
    assert outcome.code == EXIT_BAD_INPUT and outcome.err == f"crit-plus: {words}\n"


def test_a_pipe_is_read_up_to_a_limit():
    assert framing.read_stream(io.BytesIO(b"x" * 10), "<stdin>", limit=10) == b"x" * 10
    with pytest.raises(UnreadableImageError, match="<stdin>: cannot read: more than 10 bytes"):
        framing.read_stream(io.BytesIO(b"x" * 11), "<stdin>", limit=10)


def test_an_image_given_as_a_pipe_is_still_read(service_a):
    """``decode -i <(zcat pstree.img.gz)`` keeps working: the shell's pipe is read (when
    asked: ``pipes=True``, what ``decode``/``show``/``info`` pass)."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, (service_a / "pstree.img").read_bytes())
        os.close(write_end)
        with bounded(seconds=20):
            with pytest.raises(UnreadableImageError, match="not a regular file but a FIFO"):
                open_image(f"/dev/fd/{read_end}", check_name=False)
            with open_image(f"/dev/fd/{read_end}", check_name=False, pipes=True) as image:
                assert image.magic_name == "PSTREE" and image.count() == 2
    finally:
        os.close(read_end)


# -- the graph ------------------------------------------------------------------------------------


def test_an_inverted_vma_is_a_finding_not_a_negative_size(tmp_path):
    """A bit flip in mm-*.img made a VMA end before it starts: reading it raised ValueError."""
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + 2 * P), vma(BASE + 8 * P, BASE)])
    process = crit_plus.open_checkpoint(builder.directory).process(1)
    assert [(m.start, m.end) for m in process.vmas] == [(BASE, BASE + 2 * P)]
    assert any(f.code == "vma-empty" and f"{BASE + 8 * P:#x}" in f.message
               for f in process.findings)


def test_a_huge_present_run_streams_to_the_end_of_its_pages_file(tmp_path):
    """A pagemap entry of 2**40 present pages made iter_present loop once per 4 MiB of it."""
    huge = RunSpec(BASE, 1 << 40, PRESENT, None)
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + (1 << 40) * P)], runs=[huge],
                      write_pages=False)
    builder.write_raw("pages-1.img", b"\x5a" * (3 * P))
    memory = crit_plus.open_checkpoint(builder.directory).process(1).memory
    with bounded(seconds=30):
        pieces = list(memory.iter_present())
    data, marker = pieces
    assert data == (BASE, b"\x5a" * (3 * P))
    assert marker[1].vaddr == BASE + 3 * P and marker[1].length == ((1 << 40) - 3) * P
    assert "pages-1.img ends at 0x3000" in marker[1].reason


def test_a_huge_command_line_range_is_read_only_up_to_the_limit(tmp_path):
    """mm arg_start..arg_end spanning 32 TiB of zero pages made argv allocate it all;
    megabytes of NULs before a last string would be millions of empty strings."""
    from crit_plus.graph import STRINGS_COUNT_LIMIT, STRINGS_LIMIT

    size = 1 << 45
    last = BASE - size + STRINGS_LIMIT - P  # a string in the last page read
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE - size, BASE + P)],
                      runs=[run(BASE - size, 1, PRESENT, b"arg0\0arg1\0".ljust(P, b"\0")),
                            run(last, 1, PRESENT, b"z\0".ljust(P, b"\0"))],
                      arg=(BASE - size, BASE))
    process = crit_plus.open_checkpoint(builder.directory).process(1)
    with bounded(memory=STRINGS_LIMIT * 8, seconds=30):
        argv = process.argv
    assert argv[:3] == ("arg0", "arg1", "") and len(argv) < STRINGS_COUNT_LIMIT


def test_a_fifo_as_pages_file_is_unusable_not_waited_on(tmp_path):
    builder = minimal(tmp_path / "ck", vmas=[vma(BASE, BASE + 2 * P)],
                      runs=[run(BASE, 2, PRESENT)], write_pages=False)
    _fifo(Path(builder.path("pages-1.img")))
    process = crit_plus.open_checkpoint(builder.directory).process(1)
    with bounded(seconds=20):
        pieces = list(process.memory.stream(BASE, 2 * P))
        assert [type(piece).__name__ for _address, piece in pieces] == ["Unavailable"]
        assert "pages-1.img is not a regular file" in pieces[0][1].reason
        assert any(f.code == "missing-pages" and "not a regular file" in f.message
                   for f in process.findings)


def test_an_inet_peer_port_without_an_address_gets_a_question_mark(tmp_path):
    """Found by atheris (tests/fuzz_findings/files-inet-peer-port-without-address.bin)."""
    builder = minimal(tmp_path / "ck")
    sock = builder.add_file(FdType.INETSK, "isk", ino=9, family=2, type=1, proto=6, state=1,
                            src_port=80, dst_port=4242, flags=0, backlog=0, src_addr=[0x0100007F],
                            fown={}, opts={})
    builder.finish()
    files = crit_plus.open_checkpoint(builder.directory).files
    assert files.get(sock).name == "127.0.0.1:80->?:4242"


# -- sources --------------------------------------------------------------------------------------


def test_a_fifo_named_backup_yaml_is_refused(tmp_path):
    fifo = _fifo(tmp_path / "backup.yaml")
    with bounded(seconds=20), pytest.raises(BackupError, match="not a regular file but a FIFO"):
        load_backup(fifo)


def test_an_oversized_backup_yaml_is_not_parsed(tmp_path, monkeypatch):
    from crit_plus.sources import backup

    monkeypatch.setattr(backup, "MAX_BACKUP_BYTES", 64)
    big = tmp_path / "backup.yaml"
    big.write_text("container:\n" + "  key: value\n" * 10)
    with pytest.raises(BackupError,
                       match=r"backup.yaml is 141 bytes, more than the 64 a backup.yaml"):
        load_backup(big)
    assert load_backup(tmp_path / "absent.yaml") is None
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(BackupError,
                       match="cannot read .*dir.yaml: .*not a regular file but a directory"):
        load_backup(tmp_path / "dir.yaml")


def test_a_log_line_without_end_is_cut(tmp_path):
    log = tmp_path / "dump.log"
    log.write_bytes(b"x" * (MAX_LINE * 40) + b"\n(00.000061) Version: 4.2.1 (gitid 0)\n")
    with bounded(memory=MAX_LINE * 64, seconds=30):
        assert read_header(log).criu_version == "4.2.1"


def test_a_decode_error_in_the_graph_is_still_a_decode_error(service_a, workspace):
    """The error boundary's contract: what the graph raises for damage is a DecodeError
    (never a bare ValueError/TypeError), so the CLI says it in one line."""
    checkpoint = damage.clone(service_a, workspace / "ck")
    damage.replace(checkpoint / "pstree.img", (service_a / "pstree.img").read_bytes()[:-1])
    with pytest.raises(DecodeError, match=r"pstree.img: entry 1 at offset 0x[0-9a-f]+: truncated"):
        crit_plus.open_checkpoint(checkpoint)


# -- the error boundary ---------------------------------------------------------------------------


@pytest.mark.parametrize("error", [TypeError("bad\noperand"), MemoryError(), RecursionError()])
def test_a_bug_is_still_one_line_with_its_own_exit_code(service_a, monkeypatch, capsys, error):
    """What the fuzz suite has not found yet must not print a traceback either: the
    process exits 70 (EX_SOFTWARE) with one line; --traceback shows the stack; main()
    itself lets the exception through (the fuzz suite sees it; report records a crash)."""
    import gc
    import sys

    from crit_plus import cli
    from crit_plus.cli import EXIT_INTERNAL, run
    from decoders.image import Image

    def broken(self):
        raise error

    monkeypatch.setattr(Image, "count", broken)
    monkeypatch.setattr(cli, "leave", sys.exit)  # the real one ends this process at once
    monkeypatch.setattr(sys, "argv", ["crit-plus", "info", str(service_a / "pstree.img")])
    with pytest.raises(SystemExit) as leaving:
        run()
    assert gc.isenabled()  # run() leaves the collector as it found it when leave() returns
    err = capsys.readouterr().err
    assert leaving.value.code == EXIT_INTERNAL and err.count("\n") == 1, err
    assert err.startswith(f"crit-plus: internal error: {type(error).__name__}")
    assert "`crit-plus --traceback COMMAND ...` shows where" in err  # as the next lines run it
    monkeypatch.setattr(sys, "argv", ["crit-plus", "--traceback", "info",
                                      str(service_a / "pstree.img")])
    with pytest.raises(type(error)):
        run()
    assert invoke(["info", str(service_a / "pstree.img")]).escaped is not None


def test_reading_memory_of_a_process_whose_mm_image_is_damaged_says_where(service_a, workspace):
    """`mem read` said only "no memory (missing or unreadable)": now the decode error, with
    its offset (found by CRIT_PLUS_FUZZ=full)."""
    checkpoint = damage.clone(service_a, workspace / "ck")
    damage.replace(checkpoint / "mm-12525.img", (service_a / "mm-12525.img").read_bytes()[:2])
    outcome = invoke(["mem", "read", str(checkpoint), "12525", "0x400000", "64"])
    assert outcome.code == EXIT_BAD_INPUT
    assert outcome.err == ("crit-plus: mm-12525.img: pid 12525 has no memory in this checkpoint: "
                           "at offset 0x0: truncated magic: needs 4 bytes, 2 left\n")
