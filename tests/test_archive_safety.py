"""Archive safety through the commands: hostile Podman/CRI-O archives are refused with
one clear line, and nothing is written outside a private temporary directory
that is gone when the command ends, whether it succeeded or failed.

tests/test_sources.py tests the extraction itself; here every registered
checkpoint command (tests/command_table.py) runs on archives, with the
temporary root redirected to a scratch directory that must be empty after
each run, and the directory holding the archive snapshotted before and after.
"""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard

from crit_plus.sources import ArchiveError, ArchiveLimits, resolve

from . import damage
from .cli import start_cli, terminate_when
from .command_table import COMMANDS, fill, invoke, problems, registered
from .test_sources import _add_bytes, _hostile, _write_archive, scratch  # noqa: F401 (fixture)


def _checkpoint_forms():
    names = set(registered())
    return [(name, form) for name, use in sorted(COMMANDS.items())
            if use.on == "checkpoint" and use.archives and name in names for form in use.forms]


@pytest.fixture
def shelf(tmp_path):
    """The directory archives are kept in (snapshotted around each run)."""
    directory = tmp_path / "shelf"
    directory.mkdir()
    return directory


def _run_all(archive, original, scratch, shelf, expect):
    """Every checkpoint command on ``archive``: an outcome of kind ``expect`` (``results``
    or ``errors``), nothing left behind."""
    before = damage.tree_state(shelf)
    forms = _checkpoint_forms()
    assert forms
    for name, form in forms:
        use = COMMANDS[name]
        outcome = invoke(fill(form, checkpoint=archive, original=original, pid=12525,
                              image=archive, output=shelf.parent / "output"))
        kind = expect
        if expect == "errors" and (use.gathers and outcome.code == 0  # report gathers anyway
                                   or use.judges and outcome.code in use.results):
            kind = "results"  # validate: a damaged pstree is verdict 2, with its report
        assert outcome.code in getattr(use, kind), outcome.describe()
        assert not problems(outcome, use, (archive.name,)), outcome.describe()
        assert list(scratch.iterdir()) == [], f"{outcome.args} left {list(scratch.iterdir())}"
        assert damage.tree_state(shelf) == before, f"{outcome.args} changed {shelf}"
    return outcome


def test_commands_on_an_archive_leave_nothing_behind(service_a, scratch, shelf):
    archive = _write_archive(shelf / "service.tar.zst", service_a)
    _run_all(archive, service_a, scratch, shelf, "results")


def test_a_failing_command_on_an_archive_leaves_nothing_behind(service_a, scratch, shelf):
    def damaged_pstree(tar):
        data = (service_a / "pstree.img").read_bytes()
        _add_bytes(tar, "checkpoint/pstree.img", data[:-3])

    def without_pstree(tar_info):
        return None if tar_info.name == "checkpoint/pstree.img" else tar_info

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.add(service_a, arcname="checkpoint", filter=without_pstree)
        damaged_pstree(tar)
    archive = shelf / "cut.tar"
    archive.write_bytes(raw.getvalue())
    outcome = _run_all(archive, service_a, scratch, shelf, "errors")
    assert outcome.err.startswith("crit-plus: cut.tar: pstree.img: entry 1 at offset ")


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "hardlink", "device", "fifo",
                                  "parent-elsewhere"])
def test_hostile_archives_are_refused_by_every_command(service_a, scratch, shelf, kind):
    archive = _write_archive(shelf / "evil.tar", service_a, extra=lambda tar: _hostile(tar, kind))
    outcome = _run_all(archive, service_a, scratch, shelf, "errors")
    assert outcome.err.startswith("crit-plus: evil.tar: member ") and "refused" in outcome.err


def test_member_names_cannot_garble_the_error(service_a, scratch, shelf):
    def evil(tar):
        info = tarfile.TarInfo("checkpoint/\x1b[31mred\nline\x9b")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(info)

    archive = _write_archive(shelf / "names.tar", service_a, extra=evil)
    outcome = _run_all(archive, service_a, scratch, shelf, "errors")
    assert outcome.err.count("\n") == 1 and "\x1b" not in outcome.err
    assert "\\x1b[31mred\\nline" in outcome.err


def test_size_limit_from_the_environment_through_the_cli(service_a, scratch, shelf, monkeypatch):
    archive = _write_archive(shelf / "big.tar", service_a)
    monkeypatch.setenv("CRIT_PLUS_ARCHIVE_LIMIT", "1M")
    outcome = _run_all(archive, service_a, scratch, shelf, "errors")
    assert "limit of 1048576" in outcome.err


def test_metadata_nested_too_deep_is_a_finding(service_a, scratch, shelf):
    def deep(tar):
        _add_bytes(tar, "config.dump", b"[" * 200_000)

    def without_config(tar_info):
        return tar_info

    archive = _write_archive(shelf / "deep.tar", service_a)
    raw = io.BytesIO()
    with tarfile.open(archive) as source, tarfile.open(fileobj=raw, mode="w") as tar:
        for member in source:
            if member.name == "config.dump":
                continue
            tar.addfile(member, source.extractfile(member) if member.isreg() else None)
        deep(tar)
    archive.write_bytes(raw.getvalue())
    _run_all(archive, service_a, scratch, shelf, "results")
    from crit_plus.sources import resolve

    with resolve(str(archive)) as source:
        assert source.metadata["config_dump"] is None
        assert any(f.code == "bad-metadata" and "recursion" in f.message for f in source.findings)
    assert json.dumps(source.metadata)  # the rest is still there, as JSON


def test_an_archive_is_named_not_its_temporary_copy(service_a, scratch, shelf):
    """The images of an archive live in a temporary directory removed when the command
    ends: reports name the archive and the directory inside it instead."""
    archive = _write_archive(shelf / "service.tar.zst", service_a)
    label = f"{archive}: checkpoint/"
    where = {"summarize": lambda d: d["origin"]["images_dir"], "size": lambda d: d["directory"],
             "validate": lambda d: d["checkpoint"], "diff": lambda d: d["new"]["images_dir"]}
    for name, field in where.items():
        args = [name, str(archive)] if name != "diff" else \
            [name, str(service_a), str(archive), "--no-content"]
        table = invoke(args)
        assert str(scratch) not in table.out.decode(), name
        assert label in table.out.decode() or name == "diff", name  # diff: its name
        assert field(json.loads(invoke([*args, "--format", "json"]).out)) == label, name


# --- issue 25: headers tarfile would read whole, deep paths, directories, ratio, SIGTERM ---

#: Address space for ``python -m crit_plus`` in the subprocess tests (what reading the
#: headers below whole would need is more).
SUBPROCESS_MEMORY = 512 << 20


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (SUBPROCESS_MEMORY, SUBPROCESS_MEMORY))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _crit_plus(*args, scratch, limit=True, timeout=60):
    """``python -m crit_plus ARGS`` with ``TMPDIR=scratch``, under RLIMIT_AS when ``limit``."""
    env = dict(os.environ, TMPDIR=str(scratch), PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent)] + sys.path))
    return subprocess.run([sys.executable, "-m", "crit_plus", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout, check=False,
                          preexec_fn=_limited if limit else None, stdin=subprocess.DEVNULL)


def _stream_archive(path, blocks):
    """A ``.tar.zst`` of the byte blocks ``blocks`` yields, compressed as they come (a
    header of 640 MiB never exists in the test's memory)."""
    with open(path, "wb") as out, \
            zstandard.ZstdCompressor(level=1).stream_writer(out) as writer:
        for block in blocks:
            writer.write(block)
    return path


def _header(name, kind, size):
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _huge(kind, size):
    """A header of ``kind`` whose body is ``size`` bytes, then a member it applies to."""
    yield _header("././@Header", kind, size)
    body = (b"%d comment=" % size) if kind != tarfile.GNUTYPE_LONGNAME else b"checkpoint/"
    yield body
    chunk = b"A" * (1 << 20)
    left = size - len(body)
    while left > 0:
        yield chunk[:min(left, len(chunk))]
        left -= min(left, len(chunk))
    yield b"\0" * (-size % tarfile.BLOCKSIZE)
    yield _header("checkpoint/inventory.img", tarfile.REGTYPE, 0)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME],
                         ids=["pax", "pax-global", "gnu-longname"])
def test_a_huge_extended_header_is_refused_in_bounded_memory(tmp_path, scratch, kind):
    """tarfile reads a pax or GNU long-name header whole: 640 MiB of it (a few hundred KB
    compressed) must be refused from its size, under a 512 MiB address-space limit, in one
    line naming the archive and the header's offset, with nothing left in TMPDIR."""
    archive = _stream_archive(tmp_path / "huge.tar.zst", _huge(kind, 640 << 20))
    assert archive.stat().st_size < 1 << 20
    done = _crit_plus("summarize", archive, scratch=scratch)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("crit-plus: huge.tar.zst: refused: the header at offset 0x0 "
                                  "of the tar stream: ") and done.stderr.count("\n") == 1
    assert "over the limit of 1048576" in done.stderr or "global headers" in done.stderr
    assert list(scratch.iterdir()) == []


def test_a_chain_of_extended_headers_is_refused(tmp_path, scratch):
    """tarfile follows consecutive extended headers by recursion: thousands of them were a
    RecursionError (exit 70)."""
    record = b"30 comment=" + b"x" * 18 + b"\n"
    pax = _header("././@PaxHeader", tarfile.XHDTYPE, len(record)) + record + \
        b"\0" * (-len(record) % tarfile.BLOCKSIZE)
    archive = _stream_archive(tmp_path / "chain.tar.zst", [pax * 5000, _header(
        "checkpoint/inventory.img", tarfile.REGTYPE, 0), b"\0" * 1024])
    done = _crit_plus("summarize", archive, scratch=scratch)
    assert done.returncode == 1, done.stderr
    assert done.stderr == "crit-plus: chain.tar.zst: refused: the header at offset 0x2000 of " \
                          "the tar stream: more than 8 extended headers in a row\n"
    assert list(scratch.iterdir()) == []


def test_sparse_members_are_refused(service_a, tmp_path, scratch):
    def sparse(tar):
        info = tarfile.TarInfo("checkpoint/pages-9.img")
        info.type = tarfile.GNUTYPE_SPARSE
        tar.addfile(info)

    archive = _write_archive(tmp_path / "sparse.tar", service_a, extra=sparse)
    done = _crit_plus("summarize", archive, scratch=scratch)
    assert done.returncode == 1 and "a GNU sparse member" in done.stderr, done.stderr
    assert list(scratch.iterdir()) == []


def test_a_deep_member_path_is_refused_and_nothing_stays(service_a, tmp_path, scratch):
    """A member 1,500 directories deep was a RecursionError (exit 70) that left the
    extracted pages in the temporary directory."""
    deep = "checkpoint/" + "d/" * 1500 + "f"
    archive = _write_archive(tmp_path / "deep.tar.zst", service_a,
                             extra=lambda tar: _add_bytes(tar, deep, b"x"))
    done = _crit_plus("summarize", archive, scratch=scratch)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("crit-plus: deep.tar.zst: member 'checkpoint/d/d/") and \
        done.stderr.endswith("': refused: its path is 1502 components deep, over the limit "
                             "of 32\n")
    assert list(scratch.iterdir()) == []


def test_out_of_memory_during_clean_up_still_removes_everything(service_a, tmp_path, scratch,
                                                              monkeypatch):
    """The clean-up after a refused archive can itself run out of memory (the failed read
    still held it): it is tried once more, and the archive's own error is what is raised."""
    import tempfile

    deep = "checkpoint/" + "d/" * 40 + "f"
    archive = _write_archive(tmp_path / "deep.tar", service_a,
                             extra=lambda tar: _add_bytes(tar, deep, b"x"))
    cleanup, calls = tempfile.TemporaryDirectory.cleanup, []

    def short_of_memory(self):
        calls.append(self.name)
        if len(calls) == 1:
            raise MemoryError
        cleanup(self)

    monkeypatch.setattr(tempfile.TemporaryDirectory, "cleanup", short_of_memory)
    with pytest.raises(ArchiveError, match="over the limit of 32"):
        resolve(archive)
    assert len(calls) == 2 and list(scratch.iterdir()) == []


def test_directory_members_count_against_the_member_limit(service_a, tmp_path, scratch):
    def directories(tar):
        for number in range(50):
            info = tarfile.TarInfo(f"checkpoint/empty-{number}")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)

    archive = _write_archive(tmp_path / "dirs.tar", service_a, extra=directories)
    files = len(list(service_a.iterdir())) + 6  # the images and the metadata files
    with resolve(archive, limits=ArchiveLimits(max_members=files + 51)):
        pass
    with pytest.raises(ArchiveError, match=f"refused: more than {files + 10} members"):
        resolve(archive, limits=ArchiveLimits(max_members=files + 10))
    assert list(scratch.iterdir()) == []


def test_extraction_is_bounded_by_the_compression_ratio(service_a, tmp_path, scratch,
                                                        monkeypatch):
    """64 MiB of zeros beside service-a's 3 MB of images: past the floor, more bytes
    extracted per byte of archive than the ratio allows are refused (the default ratio is
    100); CRIT_PLUS_ARCHIVE_LIMIT (the user's say) turns the check off."""
    archive = _write_archive(tmp_path / "zeros.tar.zst", service_a, extra=lambda tar: _add_bytes(
        tar, "checkpoint/pages-99.img", bytes(64 << 20)))
    assert archive.stat().st_size * 10 < 64 << 20
    limits = ArchiveLimits(max_ratio=10, ratio_floor=16 << 20)
    with pytest.raises(ArchiveError, match=r"member 'checkpoint/pages-99.img': refused: extracting "
                                           r"it would exceed the total limit of \d+ bytes \(10 "
                                           r"times the archive's size\)"):
        resolve(archive, limits=limits)
    with resolve(archive):  # the default floor (1 GiB) lets it through
        pass
    monkeypatch.setenv("CRIT_PLUS_ARCHIVE_LIMIT", "1G")
    assert ArchiveLimits.from_env().max_ratio is None
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("signum, code, word", [
    (signal.SIGTERM, 143, "terminated"), (signal.SIGHUP, 129, "hangup"),
    (signal.SIGQUIT, 131, "quit")], ids=["SIGTERM", "SIGHUP", "SIGQUIT"])
def test_sigterm_during_extraction_removes_the_temporary_directory(service_a, tmp_path, scratch,
                                                                   signum, code, word):
    """SIGTERM's default action left the temporary directory (with process memory) behind,
    and so did SIGHUP's (the terminal closed) and SIGQUIT's: now the command unwinds like on
    Ctrl-C and exits 128 + the signal's number."""
    def many(tar):
        for number in range(30_000):
            _add_bytes(tar, f"checkpoint/extra/f{number}", b"x")

    archive = _write_archive(tmp_path / "slow.tar", service_a, extra=many)
    process = start_cli("summarize", archive, env={"TMPDIR": str(scratch)},
                        stdout=subprocess.DEVNULL)
    err = terminate_when(process, lambda: any(scratch.glob("*/checkpoint/extra/f1*")),
                         signum=signum)
    assert process.returncode == code and err == f"crit-plus: {word}\n", err
    assert list(scratch.iterdir()) == []


def _unrelated_links(tar):
    """Members crit-plus never extracts: a rootfs's usual links, a link out, a FIFO."""
    for name, kind, target in (("rootfs/bin/cat", tarfile.SYMTYPE, "busybox"),
                               ("volumes/secret", tarfile.SYMTYPE, "/etc/shadow"),
                               ("volumes/hard", tarfile.LNKTYPE, "config.dump"),
                               ("volumes/pipe", tarfile.FIFOTYPE, "")):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        tar.addfile(info)


def test_links_outside_what_is_extracted_are_skipped_not_refused(service_a, scratch, shelf):
    """A link or FIFO in a member crit-plus never writes (a rootfs, volumes) is skipped
    and counted; the archive reads as the checkpoint it is, and nothing is written for
    it (links in checkpoint/ or metadata stay refused: test_hostile_archives_...)."""
    archive = _write_archive(shelf / "links.tar", service_a, extra=_unrelated_links)
    _run_all(archive, service_a, scratch, shelf, "results")
    with resolve(archive) as source:
        assert source.metadata["skipped_members"] >= 4
        top = source.images_dir.parent
        written = {path.relative_to(top).parts[0] for path in top.rglob("*")}
        assert written and "rootfs" not in written and "volumes" not in written


def test_a_tarball_that_is_no_checkpoint_is_not_called_damaged(tmp_path, shelf):
    """A backup of an LXD tree (a rootfs with links) beside real archives: `list` does not
    flag it, and a command on it says it is not a checkpoint, not "refused: link"."""
    tree = shelf / "lxd-tree.tar.gz"
    with tarfile.open(tree, "w:gz") as tar:
        _add_bytes(tar, "var/lib/lxd/containers/web/backup.yaml", b"name: web\n")
        _unrelated_links(tar)
    listed = invoke(["list", str(shelf), "--format", "json"])
    assert listed.code == 0 and b"damaged" not in listed.out.lower(), listed.describe()
    summarized = invoke(["summarize", str(tree)])
    assert summarized.code == 1 and "no checkpoint/ directory" in summarized.err
    assert "refused" not in summarized.err


def test_a_report_bundle_is_not_listed_as_a_damaged_checkpoint(service_a, shelf):
    """``crit-plus report`` writes NAME/checkpoint/dump.log (the dump's log, no image):
    `list` beside it must not take the bundle for a pod whose container lost its images."""
    bundle = shelf / "bug.tar.gz"
    made = invoke(["report", str(service_a), "-o", str(bundle)])
    assert made.code == 0, made.describe()
    with tarfile.open(bundle) as tar:
        assert any(name.endswith("/checkpoint/dump.log") for name in tar.getnames())
    listed = invoke(["list", str(shelf), "--format", "json"])
    assert listed.code == 0 and json.loads(listed.out) == [], listed.describe()
