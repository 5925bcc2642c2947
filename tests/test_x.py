"""``crit-plus x``: crit's explorers with crit's text (issue 23, "crit, exactly").

CRIU 4.2.1's own crit (run from its source tree: tests/crit_explorers.py) is the
oracle.  On every fixture ``x ps|fds|mems|rss`` prints crit's text byte for byte,
apart from the lines crit gets wrong; each kind of wrong line has a test here
showing crit's output next to ours and why crit is wrong (docs/commands/x.md).
The zdtm dumps go through the same comparison (tests/zdtm_checks.py ``x``).
Also here: ``info -f json`` as crit prints it, raw images refused as crit
refuses them, and the text files CRIU and liblxc write said in one line.
"""

from __future__ import annotations

import json
import os
import quopri
import shutil
import subprocess
import sys

import pytest

import crit_plus
from decoders.flags import VmaStatus
from decoders.kinds import raw_kind

from . import crit_explorers
from .oracle import crit_info, crit_json, is_metadata_image
from .synth import CheckpointBuilder, hostile_names, proc, vma
from .test_explorers import IDS, KEYS, with_zombie  # noqa: F401 (a fixture)
from .zdtm_checks import run_command



@pytest.fixture
def crit_source():
    """CRIU 4.2.1's crit, to compare with: without its source (or with another pycriu)
    the test is skipped with the reason; under ``CRIT_PLUS_LIVE=required`` (``make
    test``, CI: the Makefile fetches it) it fails instead, as the live tests do."""
    reason = crit_explorers.available()
    if reason is not None:
        if os.environ.get("CRIT_PLUS_LIVE") == "required":
            pytest.fail(f"crit comparisons are required here (CRIT_PLUS_LIVE=required) but "
                        f"{reason}")
        pytest.skip(reason)


needs_crit = pytest.mark.usefixtures("crit_source")
EXPLORERS = ("ps", "fds", "mems", "rss")


def cli(*argv):
    """``crit-plus ARGV`` in-process: ``(exit code, stdout, stderr)``."""
    code, out, err, stack = run_command(argv)
    assert stack is None, stack
    return code, out, err


def x_text(directory, what):
    code, out, err = cli("x", directory, what)
    assert code == 0 and err == "", err
    return out


# -- byte for byte on every fixture ------------------------------------------------------------


@needs_crit
@pytest.mark.parametrize("what", EXPLORERS)
@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_x_is_crits_text_on_every_fixture(checkpoint_dirs, key, what):
    """Where crit runs, every line is crit's; the only lines that differ are memfd
    mappings, which crit calls ``unknown path`` (test below)."""
    directory = checkpoint_dirs[key]
    if (key, what) == ("service-old", "rss"):
        pytest.skip("crit crashes here: test_crit_rss_crashes_on_a_criu_41_pagemap")
    theirs = crit_explorers.run(what, directory)
    ours = x_text(directory, what)
    checkpoint = crit_plus.open_checkpoint(directory)
    problems, reasons = crit_explorers.differences(what, ours, theirs, checkpoint)
    assert problems == []
    assert reasons <= {"memfd"}
    if not reasons:
        assert ours == theirs


# -- where crit is wrong: crit's output, ours, and why ------------------------------------------


@needs_crit
def test_crit_calls_a_memfd_mapping_unknown_path(service_a):
    """A MAP_SHARED anonymous mapping (and a memfd's) is dumped by CRIU 4.2.1 as a memfd
    (criu/memfd.c: the VMA's status has VMA_AREA_MEMFD | VMA_FILE_SHARED and its shmid is
    a MEMFD entry of files.img).  crit's ``ftype_find_in_image`` looks for the entry's
    ``reg`` field only, finds none and prints ``unknown path``; crit's own decode of
    files.img shows the MEMFD entry, and memfd.img its name."""
    theirs = crit_explorers.run("mems", service_a).splitlines()
    ours = x_text(service_a, "mems").splitlines()
    wrong = [(a, b) for a, b in zip(ours, theirs) if a != b]
    assert wrong and len(ours) == len(theirs)
    start = "\t7f954f9c4000-7f954fac4000           rw- "
    assert (start + "/memfd:/dev/zero (s)", start + "unknown path (s)") in wrong
    for mine, crits in wrong:
        assert crits.replace("unknown path", "/memfd:/dev/zero") == mine
    mm = crit_json(service_a / "mm-12525.img")["entries"][0]
    vma_entry = next(v for v in mm["vmas"] if v["start"] == 0x7F954F9C4000)
    assert vma_entry["status"] & int(VmaStatus.MEMFD | VmaStatus.FILE_SHARED)
    files = {f["id"]: f for f in crit_json(service_a / "files.img")["entries"]}
    entry = files[vma_entry["shmid"]]
    assert entry["type"] == "MEMFD" and "reg" not in entry
    inodes = crit_json(service_a / "memfd.img")["entries"]
    assert any(i["name"] == "/dev/zero" and i["inode_id"] == entry["memfd"]["inode_id"]
               for i in inodes)


@needs_crit
def test_crit_crashes_on_a_zombie_x_shows_it(with_zombie):
    """A zombie has no ids, fs, mm or pagemap image (criu/cr-dump.c dumps only the core
    of a zombie): crit's fds, mems and rss open them and crash; x shows the zombie's
    pid with no files and no memory, and everything crit shows of the others."""
    for what, image in (("fds", "ids-2.img"), ("mems", "mm-2.img"), ("rss", "mm-2.img")):
        with pytest.raises(FileNotFoundError, match=image):
            crit_explorers.run(what, with_zombie)
        ours = x_text(with_zombie, what)
        assert ours.endswith("\n2\n"), (what, ours)
    assert x_text(with_zombie, "ps") == crit_explorers.run("ps", with_zombie)
    rss = x_text(with_zombie, "rss")
    assert rss.startswith("1\n\t10000 / 2       ")


@needs_crit
def test_crit_crashes_on_a_process_without_open_files(service_a, tmp_path):
    """CRIU writes no fdinfo image for a process without open fds (zdtm's ``fd``
    dumps one such child): crit opens ``fdinfo-<files_id>.img`` and crashes; x lists
    the process with its cwd and root only."""
    copy = tmp_path / "copy"
    shutil.copytree(service_a, copy)
    (copy / "fdinfo-3.img").chmod(0o644)
    (copy / "fdinfo-3.img").unlink()
    with pytest.raises(FileNotFoundError, match="fdinfo-3.img"):
        crit_explorers.run("fds", copy)
    ours = cli("x", copy, "fds")[1]
    whole = x_text(service_a, "fds")
    head, child = whole.split("12528\n")
    assert ours == head + "12528\n" + "".join(
        line + "\n" for line in child.splitlines() if line.startswith(("\t    cwd:", "\t   root:")))


@needs_crit
def test_crit_rss_crashes_on_a_criu_41_pagemap(service_old, checkpoints_old):
    """CRIU 4.1.1 writes a pagemap entry's page count in field 2 (``compat_nr_pages``),
    4.2 in field 5 (``nr_pages``): crit 4.2.1 reads ``pm['nr_pages']`` and crashes on a
    4.1 dump; x lists every entry with its count (the graph reads both)."""
    with pytest.raises(KeyError, match="nr_pages"):
        crit_explorers.run("rss", service_old)
    lines = [line for line in x_text(service_old, "rss").splitlines()
             if line.startswith("\t") and " / " in line.split("  ")[0]]
    runs = sum(len(p.memory.runs) for p in checkpoints_old.processes if p.memory)
    assert len(lines) == runs > 0


@pytest.fixture(scope="module")
def checkpoints_old(fixture_root):
    return crit_plus.open_checkpoint(fixture_root / "service-old")


def test_unix_names_are_crits_quoted_printable_in_one_line():
    """pycriu shows a unix socket name as ``quopri.encodestring`` (the ``unix_name``
    conversion of sk-unix.proto): x keeps that form, but quopri breaks a name longer
    than 76 characters with ``=\\n`` and keeps a newline in the name as a line break,
    so crit's fds line is split in two; x's never is, and decodes back to the name."""
    for name in (b"/dev/log\0", b"\0abstract", b"/run/a=b c", b"/tmp/x\t"):
        assert crit_explorers_text(name) == quopri.encodestring(name).decode()
    for name in (b"/work/" + b"d" * 90 + b"/sock\0", b"/tmp/new\nline\0"):
        crit = quopri.encodestring(name).decode()
        assert "\n" in crit
        ours = crit_explorers_text(name)
        assert "\n" not in ours and quopri.decodestring(ours.encode()) == name


def crit_explorers_text(name):
    from crit_plus.crittext import unix_name_text

    return unix_name_text(name)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return hostile_names(tmp_path_factory.mktemp("hostile") / "checkpoint")


@needs_crit
def test_crit_prints_undecodable_names_as_bytes_and_controls_raw(hostile):
    """A comm or path that is not UTF-8 comes out of protobuf (upb) as ``bytes``, which
    pb2dict keeps (``d_val.decode()`` fails), so crit prints Python's ``b'...'``; a
    unix name with a newline breaks crit's line.  x prints the escaped text every
    crit-plus command prints (docs/robustness.md), one line per fd."""
    theirs = crit_explorers.run("ps", hostile.directory).splitlines()
    assert theirs[1].endswith("   b'\\x1b[31mev\\xff\\nl\\x85\\xe2\\x80\\xae'")
    ours = x_text(hostile.directory, "ps").splitlines()
    assert ours[1] == "      1      1      1   \\x1b[31mev\\xff\\nl\\x85\\u202e"
    crit_fds = crit_explorers.run("fds", hostile.directory)
    assert "\t      3: b'/srv/" in crit_fds and len(crit_fds.splitlines()) == 6
    fds = x_text(hostile.directory, "fds").splitlines()
    assert fds == ["1", "\t      3: /srv/\\x1b]0;owned\\x07\\xfe\\xfd/\\r\\x9bx.log",
                   "\t      4: unix[500 (0) =00sock=1B[2J=FF=0A]", "\t    cwd: /",
                   "\t   root: /"]


@needs_crit
def test_crit_shows_the_last_root_x_shows_every_root(tmp_path):
    """crit keeps the last process with ppid 0 as the root (``psr = p`` in a loop) and
    drops the others' subtrees; x walks the checked tree: every root."""
    builder = CheckpointBuilder(tmp_path / "roots")
    builder.inventory()
    builder.pstree([proc(1), proc(5), proc(6, ppid=1)])
    for pid in (1, 5, 6):
        builder.process(pid, comm=f"p{pid}")
    builder.finish()
    assert crit_explorers.run("ps", builder.directory).splitlines()[1:] == [
        "      5      5      5   p5"]
    assert x_text(builder.directory, "ps").splitlines()[1:] == [
        "      1      1      1   p1", "      6      6      6       p6",
        "      5      5      5   p5"]


@needs_crit
def test_crit_lists_guard_regions_as_mappings(tmp_path):
    """CRIU appends MADV_GUARD_INSTALL regions to ``mm.vmas`` with VMA_AREA_GUARD
    (criu/mem.c ``collect_madv_guards``): ranges inside a VMA, not VMAs.  crit prints
    them as mappings (``--- *``); x does not (zdtm's maps12 has them)."""
    base = 0x7F0000000000
    guard = dict(vma(base + 0x2000, base + 0x3000), status=int(VmaStatus.GUARD), prot=0)
    builder = CheckpointBuilder(tmp_path / "guard")
    builder.inventory()
    builder.pstree([proc(1)])
    builder.process(1, vmas=[vma(base, base + 0x8000), guard])
    builder.finish()
    theirs = crit_explorers.run("mems", builder.directory)
    ours = x_text(builder.directory, "mems")
    assert theirs.endswith("\t7f0000002000-7f0000003000           --- *\n")
    assert theirs.replace("\t7f0000002000-7f0000003000           --- *\n", "") == ours


# -- x's JSON and x sk ---------------------------------------------------------------------------


@pytest.mark.parametrize("what", EXPLORERS + ("sk",))
def test_json_holds_the_facts_the_text_shows(service_a, what):
    data = json.loads(cli("x", service_a, what, "--format", "json")[1])
    text = x_text(service_a, what).splitlines()
    if what == "ps":
        assert [row["pid"] for row in data] == [int(line.split()[0]) for line in text[1:]]
    elif what == "fds":
        shown = [line.split(": ", 1)[1] for line in text if line.startswith("\t")]
        assert shown == [file["text"] for p in data
                         for file in [fd["file"] for fd in p["fds"]] + [p["cwd"], p["root"]]
                         if file is not None]
        first = data[0]
        assert [f"\t{fd['fd']:7d}: {fd['file']['text']}" for fd in first["fds"]] == \
            text[1:1 + len(first["fds"])]
    elif what == "mems":
        assert sum(len(p["vmas"]) + 2 for p in data) == len(text)
    elif what == "rss":
        assert sum(len(p["pagemap"]) for p in data) == sum(
            1 for line in text if line.startswith("\t") and not line.startswith("\t "))
    else:
        held = sum(len(row["holders"]) for row in data)
        assert held == sum(1 for line in text if line.startswith("\t"))


def test_x_sk_names_unix_sockets_as_x_fds_does(service_a):
    """x sk (crit has none) shows each process's socket fds; a unix socket is named
    exactly as x fds (crit's form) names it."""
    sk = [line for line in x_text(service_a, "sk").splitlines() if "unix[" in line]
    fds = [line for line in x_text(service_a, "fds").splitlines() if "unix[" in line]
    assert sk and sorted(sk) == sorted(fds)
    inet = [line for line in x_text(service_a, "sk").splitlines() if "inet" in line]
    assert inet and all("tcp" in line or "udp" in line for line in inet)


# -- info -f json, raw images, text files ----------------------------------------------------


PAYLOADS = ("pipes-data", "fifo-data", "sk-queues", "tcp-stream-", "ipcns-", "ghost-file-")


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_info_json_is_crits_text(checkpoint_dirs, key):
    """``info -f json`` prints what ``crit info`` prints (``json.dump(indent=4)`` and a
    newline) on every image crit reads, except where crit's count is wrong: on an image
    whose entries carry payloads crit hops over the message only and reads payload
    bytes as the next size (``entry_handler.count``), on a ghost file it crashes (its
    handler has no ``count``); there ours is the number of entries crit's own decode
    finds."""
    directory = checkpoint_dirs[key]
    compared, wrong = 0, []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or not is_metadata_image(path):
            continue
        code, out, err = cli("info", "-f", "json", path)
        assert code == 0, err
        try:
            theirs = crit_info(path)
        except AttributeError:  # ghost_file_handler has no count()
            theirs = None
        if theirs is not None and out == json.dumps(theirs, indent=4) + "\n":
            compared += 1
            continue
        assert path.name.startswith(PAYLOADS), (path.name, out, theirs)
        assert json.loads(out)["count"] == len(crit_json(path, nopl=True)["entries"])
        wrong.append(path.name)
    assert compared > 5
    if key == "service-a":  # a TCP stream with queued bytes: crit counts 2 entries
        assert "tcp-stream-2f479.img" in wrong and crit_info(
            directory / "tcp-stream-2f479.img")["count"] == 2


def _raw_images(fixture_root):
    return sorted(p for p in fixture_root.rglob("*.img") if raw_kind(p.name))


def test_raw_images_are_refused_as_crit_refuses_them(fixture_root):
    """crit's decode says ``Unknown magic`` of a raw image (pages, routes, iptables,
    tmpfs tarballs: CRIU writes them without a magic, criu/include/magic.h
    RAW_IMAGE_MAGIC) and exits 1; crit-plus's decode, show and info refuse it in one
    line naming its kind, exit 1, and print no JSON (so none that encode rejects)."""
    images = _raw_images(fixture_root)
    kinds = {raw_kind(p.name) for p in images}
    assert {"pages", "route", "ifaddr", "iptables", "tmpfs-dev"} <= kinds
    for path in images:
        for argv in (("decode", "-i", path), ("show", path), ("info", path),
                     ("info", "-f", "json", path)):
            code, out, err = cli(*argv)
            assert code == 1 and out == "", (argv, out)
            assert err.startswith(f"crit-plus: {path.name}: a raw image (")
            assert len(err.splitlines()) == 1


def test_raw_image_on_stdin_is_refused_too(service_a):
    with open(service_a / "pages-1.img", "rb") as stdin:
        result = subprocess.run([sys.executable, "-m", "crit_plus", "decode"], stdin=stdin,
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("crit-plus: <stdin>: ")


@pytest.mark.parametrize("name, says", [
    ("service-a/dump.log", "CRIU's log of a run (text), not an image"),
    ("service-c/restore.log", "CRIU's log of a run (text), not an image"),
    ("lxd-web/var/log/lxd/web/lxc.log", "liblxc's log (text), not an image"),
    ("lxd-web/var/lib/lxd/storage-pools/default/containers/web/state/tty.info",
     "liblxc's tty.info (text"),
])
def test_text_files_beside_the_images_are_said_in_one_line(fixture_root, name, says):
    """crit and crit-plus said "unknown magic" of CRIU's and liblxc's text files; now
    show, info and decode say what the file is in one line, exit 1 (an input that is
    not an image, docs/commands/info.md)."""
    path = fixture_root / name
    for argv in (("show", path), ("info", path), ("info", "-f", "json", path),
                 ("decode", "-i", path)):
        code, out, err = cli(*argv)
        assert code == 1 and out == ""
        assert err.startswith(f"crit-plus: {path.name}: {says}"), err
        assert len(err.splitlines()) == 1
