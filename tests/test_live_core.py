"""``crit-plus core`` against gdb and readelf, on processes CRIU 4.2.1 dumps here.

A C program compiled in the test (``gcc -g``: a known call chain in each of two
threads, a global string) and a Python process (a string built at run time, so
in its heap) are dumped for good (no ``--leave-running``); their cores are read
by ``gdb -batch`` and ``readelf -n``.  gdb must show each thread's call chain,
the string, the registers the core images hold, and print no warning.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crit_plus.graph import open_checkpoint
from tests.cli import run_cli
from tests.workloads import harness

pytestmark = pytest.mark.live

PROGRAM = r"""
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

const char *the_string = "crit-plus core test: the global string";
static volatile int worker_ready;

__attribute__((noinline)) static void worker_leaf(void) { worker_ready = 1; for (;;) pause(); }
__attribute__((noinline)) static void worker_middle(void) { worker_leaf(); }
static void *worker_start(void *arg) { (void)arg; worker_middle(); return 0; }

__attribute__((noinline)) static void main_leaf(void)
{
	while (!worker_ready)
		usleep(1000);
	close(open("ready", O_CREAT | O_WRONLY, 0644));
	for (;;) pause();
}
__attribute__((noinline)) static void main_middle(void) { main_leaf(); }

int main(void)
{
	pthread_t thread;
	pthread_create(&thread, 0, worker_start, 0);
	main_middle();
	return 0;
}
"""

PYTHON = r"""
import os, signal, sys
held = ("crit-plus heap marker " + str(os.getpid()) * 8) * 40  # > 512 bytes: malloc's heap
open("ready", "w").close()
while True:
    signal.pause()
"""

#: x86_64 registers gdb's ``info registers`` shows, by the core image's field name.
GDB_NAMES = {"ax": "rax", "bx": "rbx", "cx": "rcx", "dx": "rdx", "si": "rsi", "di": "rdi",
             "bp": "rbp", "sp": "rsp", "r8": "r8", "r9": "r9", "r10": "r10", "r11": "r11",
             "r12": "r12", "r13": "r13", "r14": "r14", "r15": "r15", "ip": "rip",
             "flags": "eflags", "cs": "cs", "ss": "ss", "ds": "ds", "es": "es", "fs": "fs",
             "gs": "gs"}


def _tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run scripts/install-system-deps")
    return path


def _dump_program(criu, argv, workdir):
    """Start ``argv`` in its own session in ``workdir``, wait for its ``ready`` file,
    dump it for good; return (pid, images directory)."""
    process = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        if not harness.wait_until(lambda: (workdir / "ready").exists(), 20):
            pytest.fail(f"{argv[0]} did not get ready")
        images = workdir / "images"
        harness.dump(criu, process.pid, images, leave_running=False, options=())
        process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=15)
    return process.pid, images


def _gdb(program, core, *commands):
    argv = [_tool("gdb"), "-batch", "-nx", "-iex", "set auto-load off"]
    for command in commands:
        argv += ["-ex", command]
    out = subprocess.run([*argv, str(program), str(core)], capture_output=True, text=True,
                         check=False,
                         timeout=120)
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def c_dump(criu, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("core-c")
    (workdir / "prog.c").write_text(PROGRAM)
    subprocess.run([_tool("gcc"), "-g", "-O0", "-pthread", "-o", "prog", "prog.c"],
                   cwd=workdir, check=True, timeout=120)
    pid, images = _dump_program(criu, ["./prog"], workdir)
    core = workdir / f"core.{pid}"
    result = run_cli("core", str(images), str(pid), "-o", str(core))
    assert result.returncode == 0, result.stderr
    return workdir, pid, images, core


def test_gdb_reads_threads_string_and_registers(c_dump):
    workdir, pid, images, core = c_dump
    text = _gdb(workdir / "prog", core, "thread apply all bt", "print the_string",
                "info registers")
    assert "warning" not in text.lower(), text
    assert re.search(r"main_leaf \(\) at prog.c.*\n.*main_middle \(\) at prog.c.*\n"
                     r".*main \(\) at prog.c", text), text
    assert re.search(r"worker_leaf \(\) at prog.c.*\n.*worker_middle \(\) at prog.c.*\n"
                     r".*worker_start \(arg=0x0\) at prog.c", text), text
    assert '"crit-plus core test: the global string"' in text
    checkpoint = open_checkpoint(images)
    process = checkpoint.process(pid)
    assert len(process.threads) == 2
    registers = process.core.registers
    shown = dict(re.findall(r"^(\w+)\s+(0x[0-9a-f]+)", text, re.MULTILINE))
    for field, name in GDB_NAMES.items():
        assert int(shown[name], 16) == registers.value("gp", field), name


def test_each_thread_registers(c_dump):
    workdir, pid, images, core = c_dump
    text = _gdb(workdir / "prog", core, "thread apply all info registers rip rsp")
    threads = open_checkpoint(images).process(pid).threads
    for thread in threads:
        block = text.split(f"(LWP {thread.tid})):\n")[1].split("\nThread ")[0]
        gp = thread.core.registers
        assert int(re.search(r"rip\s+(0x[0-9a-f]+)", block)[1], 16) == gp.value("gp", "ip")
        assert int(re.search(r"rsp\s+(0x[0-9a-f]+)", block)[1], 16) == gp.value("gp", "sp")


def test_readelf_lists_the_notes(c_dump):
    _workdir, _pid, _images, core = c_dump
    out = subprocess.run([_tool("readelf"), "-n", "-l", "-W", str(core)], capture_output=True,
                         check=False,
                         text=True, timeout=60)
    assert out.returncode == 0 and "warning" not in out.stderr.lower(), out.stderr
    notes = re.findall(r"^\s+(CORE|LINUX)\s+0x[0-9a-f]+\s+(NT_\w+)", out.stdout, re.MULTILINE)
    names = [name for _owner, name in notes]
    assert names.count("NT_PRSTATUS") == 2
    assert names.count("NT_FPREGSET") == 2
    assert names.count("NT_X86_XSTATE") == 2
    for name in ("NT_PRPSINFO", "NT_AUXV", "NT_FILE"):
        assert names.count(name) == 1, name


def test_python_heap_in_gdb(criu, tmp_path):
    python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if not python.exists():
        python = Path(shutil.which("python3") or "")
    (tmp_path / "held.py").write_text(PYTHON)
    pid, images = _dump_program(criu, [str(python), "held.py"], tmp_path)
    marker = f"crit-plus heap marker {pid}{pid}"
    grep = run_cli("mem", "grep", str(images), marker, "--pid", str(pid), "-f", "json")
    assert grep.returncode == 0, grep.stderr
    heap = [hit for hit in json.loads(grep.stdout) if hit["vma_kind"] == "heap"]
    assert heap, grep.stdout
    address = heap[0]["address"]
    core = tmp_path / "core"
    result = run_cli("core", str(images), str(pid), "-o", str(core))
    assert result.returncode == 0, result.stderr
    text = _gdb(python, core, f"x/s {address:#x}")
    assert "warning" not in text.lower(), text
    assert marker in text, text


def test_root_gives_the_file_pages(c_dump, tmp_path):
    workdir, pid, _images, _core = c_dump
    with_root = tmp_path / "core"
    result = run_cli("core", str(workdir / "images"), str(pid), "-o", str(with_root),
                     "--root", "/", "-f", "json")
    assert result.returncode == 0, result.stderr
    plain = run_cli("core", str(workdir / "images"), str(pid), "-o", str(tmp_path / "plain"),
                    "-f", "json")
    (rooted,), (bare,) = json.loads(result.stdout), json.loads(plain.stdout)
    assert rooted["data_bytes"] > bare["data_bytes"]
    assert rooted["absent_bytes"] < bare["absent_bytes"]
    text = _gdb(workdir / "prog", with_root, "thread apply all bt", "print the_string")
    assert "warning" not in text.lower(), text
    assert "main_middle ()" in text and "worker_middle ()" in text
    assert '"crit-plus core test: the global string"' in text


def test_lldb_reads_the_core(c_dump, tmp_path):
    """lldb (where installed: it is not in scripts/install-system-deps, LLVM is large)
    loads the core: both call chains and the registers; the string in the executable's
    read-only data with --root (lldb, unlike gdb, does not read the pages a core leaves
    out from the executable: the same with the cores gdb's gcore writes)."""
    lldb = shutil.which("lldb")
    if lldb is None:
        pytest.skip("lldb is not installed")
    workdir, pid, images, _core = c_dump
    core = tmp_path / "core"
    result = run_cli("core", str(images), str(pid), "-o", str(core), "--root", "/")
    assert result.returncode == 0, result.stderr
    out = subprocess.run([lldb, "--batch", "-o", f"target create {workdir / 'prog'} --core {core}",
                          "-o", "thread backtrace all", "-o", "p the_string",
                          "-o", "register read rip rsp"],
                         capture_output=True, text=True, check=False, timeout=120)
    # Debian's lldb 14 prints a Python traceback of its own (lldb.embedded_interpreter)
    text = "\n".join(line for line in (out.stdout + out.stderr).splitlines()
                     if "Traceback" not in line and not line.startswith(("  File", "NameError",
                                                                         "ModuleNotFound")))
    assert "warning" not in text.lower() and "error:" not in text.lower(), text
    assert re.search(r"prog`main_leaf at prog.c.*\n.*prog`main_middle at prog.c", text), text
    assert re.search(r"prog`worker_leaf at prog.c.*\n.*prog`worker_middle at prog.c", text), text
    assert '"crit-plus core test: the global string"' in text
    registers = open_checkpoint(images).process(pid).core.registers
    assert int(re.search(r"rip = (0x[0-9a-f]+)", text)[1], 16) == registers.value("gp", "ip")
    assert int(re.search(r"rsp = (0x[0-9a-f]+)", text)[1], 16) == registers.value("gp", "sp")
