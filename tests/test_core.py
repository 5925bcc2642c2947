"""``crit-plus core`` on the real fixtures: the ELF read back field by field.

The core is parsed here with ``struct`` (no ELF library), and every value is
checked against the graph: registers against the core images, loaded bytes
against :meth:`AddressSpace.read`, NT_FILE against the VMAs.
"""

from __future__ import annotations

import os

import shutil
import struct
import subprocess

import pytest

from crit_plus.analysis import coredump
from crit_plus.graph import open_checkpoint
from tests.cli import run_cli


def parse(data, xnum=coredump.PN_XNUM):
    """``(e_machine, [(type, ...phdr fields)], [(name, type, desc)])`` of a core file."""
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    e_type, machine = struct.unpack_from("<HH", data, 16)
    assert e_type == 4
    phoff, shoff = struct.unpack_from("<QQ", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    if phnum == xnum:  # PN_XNUM: the count is section 0's sh_info
        phnum, = struct.unpack_from("<I", data, shoff + 44)
    phdrs = [struct.unpack_from("<IIQQQQQQ", data, phoff + 56 * i) for i in range(phnum)]
    notes = []
    for kind, _flags, offset, _vaddr, _paddr, filesz, _memsz, _align in phdrs:
        if kind != coredump.PT_NOTE:
            continue
        at, end = offset, offset + filesz
        while at < end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, at)
            at += 12
            name = data[at:at + namesz - 1]
            at += -(-namesz // 4) * 4
            notes.append((name, ntype, data[at:at + descsz]))
            at += -(-descsz // 4) * 4
    return machine, phdrs, notes


@pytest.fixture(scope="module")
def service_core(fixture_root, tmp_path_factory):
    images = fixture_root / "service-a"
    checkpoint = open_checkpoint(images)
    process = next(p for p in checkpoint.processes if len(p.threads) > 1)
    out = tmp_path_factory.mktemp("core") / "core"
    with open(out, "wb") as handle:
        result = coredump.write_core(process, handle)
    return checkpoint, process, result, out.read_bytes()


def test_notes_per_thread(service_core):
    _checkpoint, process, result, data = service_core
    machine, _phdrs, notes = parse(data)
    assert machine == 62 and result.size == len(data)
    types = [ntype for _name, ntype, _desc in notes]
    threads = len(process.threads)
    assert types.count(coredump.NT_PRSTATUS) == threads
    assert types.count(coredump.NT_FPREGSET) == threads
    assert types.count(coredump.NT_X86_XSTATE) == threads
    assert types.count(coredump.NT_PRPSINFO) == types.count(coredump.NT_AUXV) == 1
    assert types.count(coredump.NT_FILE) == 1
    statuses = [desc for _n, ntype, desc in notes if ntype == coredump.NT_PRSTATUS]
    for thread, desc in zip(process.threads, statuses):
        assert len(desc) == 336
        assert struct.unpack_from("<i", desc, 32)[0] == thread.tid
        regs = struct.unpack_from("<27Q", desc, 112)
        gp = [value for name, value in thread.core.registers.gp if name != "mode"]
        assert list(regs) == gp[:27]


def test_xsave_layout(service_core):
    _checkpoint, process, _result, data = service_core
    _machine, _phdrs, notes = parse(data)
    xstate = next(desc for _n, ntype, desc in notes if ntype == coredump.NT_X86_XSTATE)
    registers = process.core.registers
    xcr0, = struct.unpack_from("<Q", xstate, 464)
    assert xcr0 & 0b111 == 0b111  # x87, SSE, AVX: the fixture's CPU has AVX
    assert struct.unpack_from("<Q", xstate, 512)[0] == registers.value("xsave", "xstate_bv")
    ymmh = registers.value("xsave", "ymmh_space")
    assert list(struct.unpack_from(f"<{len(ymmh)}I", xstate, 576)) == list(ymmh)
    # the standard XSAVE size of the features present (gdb guesses its layout from it)
    assert len(xstate) in (832, 1088, 2688, 2696)


def test_loaded_bytes_are_the_restored_bytes(service_core):
    _checkpoint, process, result, data = service_core
    _machine, phdrs, _notes = parse(data)
    memory = process.memory
    loads = [p for p in phdrs if p[0] == coredump.PT_LOAD]
    assert sum(p[6] for p in loads) == sum(m.size for m in memory.vmas)
    checked = 0
    for _kind, _flags, offset, vaddr, _paddr, filesz, memsz, _align in loads:
        if filesz:
            assert filesz == memsz
            length = min(filesz, 1 << 20)
            assert data[offset:offset + length] == memory.read(vaddr, length)
            checked += length
    assert checked and result.data_bytes > 0


def test_file_note_names_the_mappings(service_core):
    _checkpoint, process, _result, data = service_core
    _machine, _phdrs, notes = parse(data)
    desc = next(desc for _n, ntype, desc in notes if ntype == coredump.NT_FILE)
    count, page = struct.unpack_from("<QQ", desc)
    mapped = [m for m in process.memory.vmas if m.file is not None and m.file.name]
    assert page == 4096 and count == len(mapped)
    names = desc[16 + 24 * count:].split(b"\0")[:count]
    for i, mapping in enumerate(mapped):
        start, end, pgoff = struct.unpack_from("<QQQ", desc, 16 + 24 * i)
        assert (start, end, pgoff * 4096) == (mapping.start, mapping.end, mapping.pgoff)
        assert names[i].decode().startswith(mapping.file.name)


def test_every_process_into_a_directory(fixture_root, tmp_path):
    images = fixture_root / "service-a"
    out = tmp_path / "cores"
    result = run_cli("core", str(images), "-o", str(out))
    assert result.returncode == 0, result.stderr
    checkpoint = open_checkpoint(images)
    expected = {f"core.{p.pid}" for p in checkpoint.processes if p.memory is not None}
    assert {path.name for path in out.iterdir()} == expected


@pytest.mark.parametrize("damage", ["pagemap-12528.img", "mm-12528.img", "pages-4.img"])
def test_no_core_of_damaged_memory(fixture_root, tmp_path, damage):
    """A cut pagemap (or mm, or pages file) leaves memory out: no core that would show
    gdb missing memory as if the process never had it, but one line naming the image
    (and the offset where the decoder stopped), exit 1, and no file; with -o DIR the
    other processes' cores are written, and the exit status is still 1."""
    copy = tmp_path / "service-a"
    shutil.copytree(fixture_root / "service-a", copy)
    image = copy / damage
    data = image.read_bytes()
    image.unlink()
    image.write_bytes(data[:100])
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli("core", str(copy), "12528", "-o", str(out / "core"))
    assert result.returncode == 1 and list(out.iterdir()) == [], result
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"crit-plus: {damage if damage != 'pages-4.img' else 'pagemap'}")
    assert "pid 12528" in line and ("offset 0x" in line or "pages-4.img holds" in line), line
    result = run_cli("core", str(copy), "-o", str(out / "cores"))
    assert result.returncode == 1, result
    assert {path.name for path in (out / "cores").iterdir()} == {"core.12525"}
    assert "pid 12528" in result.stderr.splitlines()[0]


@pytest.mark.parametrize("with_pid", [True, False])
def test_refuses_to_write_into_the_checkpoint(fixture_root, with_pid):
    images = fixture_root / "service-a"
    pid = [str(open_checkpoint(images).pids[0])] if with_pid else []
    result = run_cli("core", str(images), *pid, "-o", str(images / "cores"))
    assert result.returncode == 2 and not (images / "cores").exists()
    assert len(result.stderr.strip().splitlines()) == 1


def test_read_copy_gives_the_same_bytes(service_core, tmp_path, monkeypatch):
    """Where the kernel cannot copy (another file system, an old kernel), the bytes are
    read and written: the same core."""
    _checkpoint, process, _result, data = service_core
    monkeypatch.setattr(coredump, "os", _NoKernelCopy())
    with open(tmp_path / "core", "wb") as handle:
        coredump.write_core(process, handle)
    assert (tmp_path / "core").read_bytes() == data


class _NoKernelCopy:
    """``os`` without ``copy_file_range``."""

    def __getattr__(self, name):
        if name == "copy_file_range":
            raise AttributeError(name)
        import os

        return getattr(os, name)


# -- aarch64 and signals: synthetic core images (this machine dumps x86_64 only) -------------

AARCH64_REGS = [0x1000 + n for n in range(31)]


def _aarch64_checkpoint(directory):
    from tests.synth import minimal, run, vma

    base = 0x7F0000000000
    builder = minimal(directory, pid=7, vmas=[vma(base, base + 2 * 4096)], runs=[run(base, 2)])
    siginfo = struct.pack("<iii", 10, 0, 0) + bytes(116)  # SIGUSR1 pending
    builder.core(7, comm="arm", mtype=3, ti_aarch64={
        "clear_tid_addr": 0, "tls": 0xABCDEF,
        "gpregs": {"regs": AARCH64_REGS, "sp": 0xFFFF0000, "pc": 0x400123, "pstate": 0x60000000},
        "fpsimd": {"vregs": list(range(64)), "fpsr": 0x11, "fpcr": 0x22}},
        thread_core={"futex_rla": 0, "futex_rla_len": 0, "comm": "arm", "blk_sigset": 1 << 14,
                     "signals_p": {"signals": [{"siginfo": siginfo}]}})
    return open_checkpoint(directory), base


def test_aarch64_notes(tmp_path):
    checkpoint, base = _aarch64_checkpoint(tmp_path / "images")
    process = checkpoint.process(7)
    with open(tmp_path / "core", "wb") as handle:
        result = coredump.write_core(process, handle)
    data = (tmp_path / "core").read_bytes()
    machine, phdrs, notes = parse(data)
    assert machine == 183 and result.arch == "AARCH64"
    by_type = {ntype: desc for _name, ntype, desc in notes}
    status = by_type[coredump.NT_PRSTATUS]
    assert len(status) == 392  # the kernel's elf_prstatus on arm64
    assert list(struct.unpack_from("<34Q", status, 112)) == AARCH64_REGS + [
        0xFFFF0000, 0x400123, 0x60000000]
    sigpend, sighold = struct.unpack_from("<QQ", status, 16)
    assert (sigpend, sighold) == (1 << 9, 1 << 14)
    assert struct.unpack_from("<h", status, 12)[0] == 0  # no fatal signal
    fpsimd = by_type[coredump.NT_FPREGSET]
    assert len(fpsimd) == 528 and struct.unpack_from("<II", fpsimd, 512) == (0x11, 0x22)
    assert list(struct.unpack_from("<64Q", fpsimd)) == list(range(64))
    assert struct.unpack("<Q", by_type[coredump.NT_ARM_TLS]) == (0xABCDEF,)
    assert struct.unpack_from("<i", by_type[coredump.NT_SIGINFO])[0] == 10
    assert coredump.NT_X86_XSTATE not in by_type
    load = next(p for p in phdrs if p[0] == coredump.PT_LOAD)
    head = b"page@%x;" % base
    assert load[3] == base and data[load[2]:load[2] + len(head)] == head
    if shutil.which("readelf"):  # binutils reads notes of any architecture
        listed = subprocess.run(["readelf", "-n", str(tmp_path / "core")], capture_output=True,
                                text=True, check=True, timeout=60).stdout
        for name in ("NT_PRPSINFO", "NT_PRSTATUS", "NT_FPREGSET", "NT_ARM_TLS", "NT_SIGINFO"):
            assert name in listed, listed


def test_an_unknown_architecture_is_one_line(tmp_path):
    from tests.synth import minimal

    builder = minimal(tmp_path / "images", pid=7)
    builder.core(7, mtype=4)  # PPC64
    result = run_cli("core", str(tmp_path / "images"), "7", "-o", str(tmp_path / "core"))
    assert result.returncode == 1 and not (tmp_path / "core").exists()
    assert result.stderr.count("\n") == 1 and "PPC64" in result.stderr
    assert "core-7.img" in result.stderr


def test_more_segments_than_e_phnum_holds(service_core, tmp_path, monkeypatch):
    """Past 65534 segments the count goes to section 0 (PN_XNUM), as the kernel writes it;
    shown with the limit lowered to 16."""
    _checkpoint, process, _result, data = service_core
    monkeypatch.setattr(coredump, "PN_XNUM", 16)
    with open(tmp_path / "core", "wb") as handle:
        coredump.write_core(process, handle)
    extended = (tmp_path / "core").read_bytes()
    assert struct.unpack_from("<H", extended, 56)[0] == 16
    _m, phdrs, notes = parse(extended, xnum=16)
    _m, plain_phdrs, plain_notes = parse(data)
    assert len(phdrs) == len(plain_phdrs) > 16 and notes == plain_notes
    assert [p[3:] for p in phdrs] == [p[3:] for p in plain_phdrs]


def test_pages_of_the_parent_chain_and_lazy_holes(tmp_path):
    """An incremental dump: pages from gen0 and gen1 through parent/, gen2's own, a lazy
    page as a segment without file bytes, never-listed pages as zeros."""
    from tests.synth import CHAIN_BASE, build_chain, tagged

    gen2 = build_chain(tmp_path)
    process = open_checkpoint(gen2.directory).process(1)
    with open(tmp_path / "core", "wb") as handle:
        result = coredump.write_core(process, handle)
    data = (tmp_path / "core").read_bytes()
    _m, phdrs, _notes = parse(data)
    loads = [p for p in phdrs if p[0] == coredump.PT_LOAD]
    page = 4096
    # pages 0-3 from the chain, 4 lazy (no file bytes), 5-7 zeros
    assert [(p[3] - CHAIN_BASE, p[5], p[6]) for p in loads] == [
        (0, 4 * page, 4 * page), (4 * page, 0, page), (5 * page, 3 * page, 3 * page)]
    first = data[loads[0][2]:loads[0][2] + 4 * page]
    assert first[:page] == tagged(CHAIN_BASE, 1, b"g0")
    assert first[page:2 * page] == tagged(CHAIN_BASE + page, 1, b"g1")
    assert first[2 * page:3 * page] == tagged(CHAIN_BASE + 2 * page, 1, b"g2")
    assert first[3 * page:] == tagged(CHAIN_BASE, 4, b"g0")[3 * page:]
    assert data[loads[2][2]:loads[2][2] + 3 * page] == bytes(3 * page)
    assert result.absent_bytes == page


@pytest.mark.parametrize("given", [False, True])
def test_what_is_left_out_names_the_root_used(fixture_root, tmp_path, given):
    """An LXD snapshot's file pages are read under its rootfs/ (or --root): the line on
    what was left out names that root, never "without --root"."""
    snapshot = fixture_root / "lxd-web/var/lib/lxd/storage-pools/default/containers-snapshots" \
                              "/web/after"
    root = ["--root", str(snapshot / "rootfs")] if given else []
    result = run_cli("core", snapshot, "1", "-o", tmp_path / "core.1", *root)
    assert result.returncode == 0, result.stderr
    left_out = [line for line in result.stdout.splitlines() if "left out" in line]
    assert len(left_out) == 1, result.stdout
    assert f"file pages not found under the root {snapshot / 'rootfs'}," in left_out[0]
    bare = run_cli("core", fixture_root / "service-a", "12525", "-o", tmp_path / "core.a")
    assert "(file pages without --root, kernel pages)" in bare.stdout


def test_an_output_that_cannot_seek_is_refused_in_one_line(fixture_root, tmp_path):
    """``-o /dev/null`` or a FIFO: the core is written with seeks, so crit-plus says so
    (it printed "Invalid argument" and "File or stream is not seekable", exit 1)."""
    images = fixture_root / "service-a"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target in (os.devnull, str(fifo)):
        result = run_cli("core", str(images), "12525", "-o", target, check=False)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1
        assert f"{target} is not a regular file: a core is written with seeks" in result.stderr
