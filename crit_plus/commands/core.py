"""``core``: an ELF core file of a checkpointed process, for gdb, lldb and readelf.

The building is in :mod:`crit_plus.analysis.coredump`; this module has the options,
where each core goes and what is said on stderr.
"""

from __future__ import annotations

import os
import stat
import sys

import click

from ..analysis.coredump import CoreFile, write_core
from ..boundary import error_text
from ..describe import human_bytes
from ..opening import input_paths
from ..output import OutputRefused, refuse_inputs, whole_file
from ..render import safe_text, write_json
from .options import damage_error, format_option, open_checkpoint_source, source_options
from .selection import check_pid

#: Exit status when a process's memory images have errors: no core for it (as for an input
#: that cannot be read: crit_plus/cli.py); with -o DIR the other processes' cores are written.
EXIT_DAMAGED = 1

@click.command("core")
@source_options
@click.argument("pid", type=int, required=False)
@click.option("-o", "--output", type=click.Path(), required=True,
              help="The core file; a directory (made if missing) gets core.PID for each "
                   "process (every process when PID is not given).")
@format_option(choices=("table", "json"))
def core_command(path, lxd_dir, project, root, pid, output, fmt):
    """Write an ELF core file of process PID (of every process without PID), for
    gdb, lldb and readelf: threads with their registers, the auxiliary vector,
    the mapped files and the memory CRIU would restore (pages, the parent/ chain,
    shared memory, mapped files under --root).  Memory the checkpoint cannot give
    is left out (gdb reads it from the mapped file when it has it).  A process
    whose memory images are damaged (a cut pagemap) gets no core: one line
    naming the image, exit 1 (with -o DIR the others' cores are written).

    \b
    Examples:
      crit-plus core dump1 12525 -o core.12525 && gdb ./prog core.12525
      crit-plus core lxd:web/snap0 -o cores/ --root /srv/rootfs
    """
    if output == "-":  # write_core seeks over the memory's holes: a file, not a stream
        raise OutputRefused("a core is written to a file (it seeks over the holes of the "
                            "memory), not to standard output: give -o FILE")
    if pid is None and os.path.exists(output) and not os.path.isdir(output):
        raise click.BadParameter("without PID, -o names a directory (one core per process)",
                                 param_hint="-o")
    written, damaged = [], False
    with open_checkpoint_source(path, lxd_dir, project, root, note_errors=True) as opened:
        checkpoint = opened.checkpoint
        inputs = input_paths(opened.source)
        pids = [check_pid(checkpoint, pid)] if pid is not None else list(checkpoint.pids)
        to_directory = pid is None or os.path.isdir(output)
        if to_directory:
            refuse_inputs(output, inputs)  # before making it: never a directory in an input
            os.makedirs(output, exist_ok=True)
        for number in pids:
            process = checkpoint.process(number)
            target = os.path.join(output, f"core.{number}") if to_directory else output
            if process.memory_damage:  # a core without that memory would mislead gdb
                error = damage_error(checkpoint, process.memory_damage[0],
                                     f"the core of pid {number} would miss memory; none written")
                if pid is not None:
                    raise error
                opened.source.name_archive(error)
                click.echo(f"crit-plus: {safe_text(error_text(error))}", err=True)
                damaged = True
                continue
            _refuse_unseekable(target)
            try:
                with whole_file(target, inputs=inputs) as handle:
                    result = write_core(process, handle)
            except LookupError as error:  # CoreError, NoMemoryError: a zombie, no registers
                if pid is not None:
                    raise
                click.echo(f"pid {number}: no core: {error}", err=True)
                continue
            written.append((target, result))
            if fmt != "json":
                _say(target, result, checkpoint.root)
    if fmt == "json":
        write_json([_json(target, result) for target, result in written], sys.stdout)
    if damaged:
        click.get_current_context().exit(EXIT_DAMAGED)


def _refuse_unseekable(target: str) -> None:
    """Refuse an output that exists and is not a regular file (``/dev/null``, a FIFO,
    ``/dev/stdout`` on a pipe): write_core seeks over the memory's holes."""
    try:
        mode = os.stat(target).st_mode  # follows links: /dev/stdout
    except OSError:
        return  # a new file (or an error open will name)
    if not stat.S_ISREG(mode):
        raise OutputRefused(f"{target} is not a regular file: a core is written with seeks "
                            "over the holes of the memory; give -o FILE")


def _json(target: str, result: CoreFile) -> dict:
    return {"pid": result.pid, "file": target, "arch": result.arch, "size": result.size,
            "data_bytes": result.data_bytes, "segments": result.segments,
            "notes": result.notes, "absent_bytes": result.absent_bytes,
            "unavailable": [{"address": h.vaddr, "length": h.length, "reason": h.reason}
                            for h in result.unavailable]}


def _say(target: str, result: CoreFile, root: str | None) -> None:
    """The core written, and what was left out: ``root`` is the directory file pages were
    read under (--root, or an LXD/Incus snapshot's rootfs/), None without one."""
    click.echo(f"wrote core of pid {result.pid} ({result.arch.lower()}, {result.segments} "
               f"segments, {human_bytes(result.data_bytes)} of memory) to {safe_text(target)}")
    if result.absent_bytes:
        files = "file pages without --root" if root is None else \
            f"file pages not found under the root {safe_text(root)}"
        click.echo(f"  {human_bytes(result.absent_bytes)} mapped but not in the checkpoint "
                   f"({files}, kernel pages): left out")
    for hole in result.unavailable:
        click.echo(f"  {hole.length} bytes at {hole.vaddr:#x} unavailable, left as zeros: "
                   f"{safe_text(hole.reason)}")


def register(group: click.Group) -> None:
    """Add ``core`` to the CLI group."""
    group.add_command(core_command)
