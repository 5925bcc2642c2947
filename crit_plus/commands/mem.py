"""``mem``: read, search and dump the memory of checkpointed processes.

``mem read`` and ``mem dump`` give the bytes CRIU would restore at an address
(pages images, the parent chain, shared memory, zeros, backing files under
``--root``); ``mem grep`` searches every page the images hold.  Bytes the
checkpoint cannot give are said so, never invented.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys

import click

from ..analysis import explore
from ..describe import address_range, human_bytes, maps_perms
from ..memory import CHUNK_SIZE, VMA_KINDS, Unavailable, UnavailableError
from ..opening import input_paths
from ..output import output_stream, refuse_terminal, to_stdout
from ..progress import progress
from ..render import colored, jsonable, printable_bytes, safe_text, use_color, write_hexdump
from ..render import stamped, write_json
from .options import damage_error, exit_codes, format_option, memory_damage
from .options import open_checkpoint_source, pids_text, source_options
from .selection import ADDRESS, SIZE, check_pid

#: Exit codes: ``mem grep`` as grep(1) (0 a match, 1 none, 2 trouble: the checkpoint cannot
#: be read, wrong usage); ``mem read``/``mem dump`` 3 when the checkpoint holds no bytes at the
#: address asked (1 stays "an input could not be read or decoded": crit_plus/cli.py).
EXIT_NO_MATCH, EXIT_GREP_TROUBLE, EXIT_NO_DATA = 1, 2, 3

#: ``mem read`` without LEN.
DEFAULT_LENGTH = 256
#: A search over fewer bytes than this shows no progress bar.
PROGRESS_MIN = 64 << 20
#: Most bytes ``mem dump`` writes to an output that cannot seek (a pipe, a device), where
#: zero pages and holes must be written as zeros; a regular file gets them as holes.
UNSEEKABLE_LIMIT = 16 << 30


@click.group("mem")
def mem_group():
    """Read, search and dump the memory of checkpointed processes.

    \b
    Examples:
      crit-plus mem read dump1 12525 7f954fcb7000 64
      crit-plus mem grep dump1 'BEGIN RSA PRIVATE KEY'
      crit-plus mem dump dump1 12525 --vma 3c7b8000 -o heap.bin
    """


def _vma_text(mapping):
    name = f" {mapping.name}" if mapping.name else ""
    return (f"{address_range(mapping.start, mapping.end)} "
            f"{maps_perms(mapping.prot, mapping.flags)} {mapping.kind}{name}")


class NoBytesError(click.ClickException):
    """The checkpoint holds no bytes at the address asked: one line, exit 3."""

    exit_code = EXIT_NO_DATA


def _no_bytes(checkpoint, pid, vaddr, length, reason=None):
    """The :class:`NoBytesError` for ``length`` bytes at ``vaddr`` of ``pid``: which
    address, that the checkpoint holds nothing there, in which mapping and why."""
    stretch = f"{vaddr:#x}" if length <= 1 else f"{vaddr:#x}-{vaddr + length:#x}"
    process = checkpoint.process(pid)
    if process.is_zombie:
        return NoBytesError(f"pid {pid} holds no bytes at {stretch}: it is a zombie, and CRIU "
                            "keeps no memory of a zombie")
    memory = process.memory
    mapping = memory.find(vaddr) if memory is not None else None
    if mapping is None:
        return NoBytesError(f"pid {pid} has no mapping at {stretch}: the checkpoint holds no "
                            f"bytes there (`crit-plus mems PATH {pid}` lists its mappings)")
    text = (f"the checkpoint holds no bytes of pid {pid} at {stretch}, in its mapping "
            f"{_vma_text(mapping)}: {reason}")
    if mapping.file is not None and mapping.backing.kind == "none" \
            and checkpoint.root is None:
        text += " (give --root DIR)"
    return NoBytesError(safe_text(text))


def _memory(checkpoint, pid, address, length):
    """``pid``'s address space; :class:`NoBytesError` (about the ``length`` bytes at
    ``address`` asked) for a zombie, of which CRIU dumps no memory."""
    if checkpoint.process(pid).is_zombie:
        raise _no_bytes(checkpoint, pid, address, length)
    return explore.memory_of(checkpoint, pid)


class _Seen:
    """Passes pieces of :meth:`~crit_plus.memory.AddressSpace.stream` on; remembers
    whether any held bytes and the first stretch that did not."""

    def __init__(self, pieces):
        self._pieces = pieces
        self.any_data = False
        self.first_hole = None

    def __iter__(self):
        for address, data in self._pieces:
            if isinstance(data, Unavailable):
                self.first_hole = self.first_hole or data
            else:
                self.any_data = True
            yield address, data


def _piece_json(address, data):
    if isinstance(data, Unavailable):
        return {"address": address, "length": data.length, "reason": data.reason}
    return {"address": address, "length": len(data), "data": bytes(data).hex()}


@mem_group.command("read")
@source_options
@click.argument("pid", type=int)
@click.argument("address", type=ADDRESS)
@click.argument("length", type=SIZE, required=False, default=DEFAULT_LENGTH)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, allow_dash=True),
              help="Write the raw bytes to this file (- for standard output, never a "
                   "terminal) instead of a hex dump.")
@format_option()
def mem_read(path, lxd_dir, project, root, pid, address, length, output, fmt):
    """Show LEN bytes (default 256) at ADDR (hex) of process PID as a hex dump,
    or write them raw with -o (-o - to standard output).  Stretches the checkpoint cannot give (not
    mapped, lazy, a file mapping without --root) are marked in the dump and
    refused with -o.  Exit status 3 (one line on stderr) when the checkpoint
    holds none of the bytes (with -o: not all of them).

    \b
    Examples:
      crit-plus mem read dump1 12525 7f954fcb7000
      crit-plus mem read lxd:web/snap0 8 0x7ffd3c5e1000 4k -o stack.bin
      crit-plus mem read dump1 12525 7f954fcb7000 4k -o - | strings
    """
    if output is not None:
        _refuse_json_beside_bytes(output, fmt)
        refuse_terminal(output, "raw memory bytes")  # before anything is read
    with open_checkpoint_source(path, lxd_dir, project, root, note_errors=True) as opened:
        checkpoint = opened.checkpoint
        memory = _memory(checkpoint, check_pid(checkpoint, pid), address, length)
        if output is not None:
            try:
                data = memory.read(address, length)
            except UnavailableError as error:
                raise _no_bytes(checkpoint, pid, error.vaddr, error.length, error.why) \
                    from None
            with output_stream(output, binary=True, inputs=input_paths(opened.source)) \
                    as handle:
                handle.write(data)
            if fmt == "json":  # what was written where, as mem dump says it
                write_json(stamped("mem-read", {"pid": pid, "address": address,
                                                "length": length, "file": output,
                                                "bytes": len(data)}), sys.stdout)
                return
            click.echo(f"wrote {len(data)} bytes at {address:#x} of pid {pid} to "
                       f"{_output_name(output)}", err=True)
            return
        pieces = _Seen(memory.stream(address, length))
        out = sys.stdout
        if fmt == "json":
            write_json(stamped("mem-read", {"pid": pid, "address": address, "length": length,
                                            "pieces": [_piece_json(a, d) for a, d in pieces]}),
                       out)
        else:
            write_hexdump(pieces, out)
        if length and not pieces.any_data:
            hole = pieces.first_hole
            out.flush()
            raise _no_bytes(checkpoint, pid, address, length, hole.reason if hole else None)


def _refuse_json_beside_bytes(output, fmt):
    """``-o -`` and ``--format json`` would both write standard output: refused."""
    if to_stdout(output) and fmt == "json":
        raise click.BadParameter("-o - writes the bytes to standard output, where --format "
                                 "json would go too: give -o FILE", param_hint="-o")


def _output_name(output):
    """How the stderr lines name ``-o``'s target."""
    return "standard output" if to_stdout(output) else safe_text(output)


def _hit_json(hit):
    data = jsonable(hit)
    data["vma_offset"] = hit.vma_offset
    data["perms"] = maps_perms(hit.vma_prot, hit.vma_flags)
    return data


def _hit_line(hit, color):
    context = (printable_bytes(hit.before)
               + (colored(printable_bytes(hit.match), "red", color) or "")
               + printable_bytes(hit.after))
    name = f" {safe_text(hit.vma_name)}" if hit.vma_name else ""
    return (f"{hit.pid} {safe_text(hit.comm or '?')} {hit.address:#x} "
            f"[{address_range(hit.vma_start, hit.vma_end)} "
            f"{maps_perms(hit.vma_prot, hit.vma_flags)} {hit.vma_kind}{name} "
            f"+{hit.vma_offset:#x}]  {context}\n")


def _pattern_bytes(pattern, as_hex):
    if as_hex:
        try:
            return bytes.fromhex(pattern.replace(" ", ""))
        except ValueError:
            raise click.BadParameter(f"{pattern!r} is not hex bytes (like 'de ad be ef')",
                                     param_hint="PATTERN") from None
    return os.fsencode(pattern)


@exit_codes(bad_input=EXIT_GREP_TROUBLE)  # as grep: 2, also for usage errors
@mem_group.command("grep")
@click.argument("path", metavar="PATH")
@click.argument("pattern")
@click.option("--pid", "pids", type=int, multiple=True,
              help="Only this process (repeatable; default: every process).")
@click.option("--regex", "-E", is_flag=True,
              help="PATTERN is a (Python, bytes) regular expression.")
@click.option("--ignore-case", "-i", is_flag=True, help="Match letters of either case.")
@click.option("--hex", "as_hex", is_flag=True, help="PATTERN is hex bytes: 'de ad be ef'.")
@click.option("--context", "-C", type=click.IntRange(0, 4096), default=16, show_default=True,
              help="Bytes shown on each side of a match.")
@click.option("--max-count", "-m", type=click.IntRange(1), help="Stop after this many matches.")
@click.option("--kind", "kinds", type=click.Choice(VMA_KINDS), multiple=True,
              help="Only mappings of this kind, as mems shows it (repeatable).")
@click.option("--perms", help="Only mappings with at least these permissions: r, w, x "
                              "(e.g. rw).")
@click.option("--range", "span", metavar="START-END",
              help="Only addresses in [START, END) (hex, as /proc/PID/maps prints them).")
@click.option("--root", type=click.Path(exists=True, file_okay=False),
              help="Also search the clean pages of file mappings, read from the files "
                   "under this directory (standing for / of the processes) as mem read "
                   "reads them. Only when given: unlike mem read, mem grep does not search "
                   "a snapshot's rootfs/ by default.")
@click.option("--lxd-dir", type=click.Path(file_okay=False),
              help="LXD/Incus directory instead of the standard ones.")
@click.option("--project", help="LXD/Incus project of a NAME.")
@format_option()
def mem_grep(path, pattern, pids, regex, ignore_case, as_hex, context, max_count, kinds,
             perms, span, root, lxd_dir, project, fmt):
    """Search every page the checkpoint holds, in every process (or --pid), for
    PATTERN; print each match with its process, address, mapping and the bytes
    around it.  Pages are streamed in large chunks (memory stays bounded) and
    a progress bar shows on a terminal for long searches.  Shared memory is
    searched in each process that maps it; zero pages are not searched, nor
    file-backed pages (not in the images) unless --root names the files.
    --kind, --perms and --range narrow the search to some mappings.  Exit status, as grep's: 0 when
    something matched, 1 when nothing did, 2 when the checkpoint cannot be read
    (also when nothing matched but a process's memory images are damaged: a
    match may hide there) or on wrong usage.

    \b
    Examples:
      crit-plus mem grep dump1 'password='
      crit-plus mem grep lxd:web 'Authorization: [A-Za-z]+ \\S+' --regex
      crit-plus mem grep dump1 --hex '7f 45 4c 46' --pid 12525 -f json
      crit-plus mem grep dump1 'secret' --kind heap --kind anon --perms rw
      crit-plus mem grep dump1 'GLIBC' --kind file --root /srv/rootfs
    """
    needle = _pattern_bytes(pattern, as_hex)
    if not needle:
        raise click.BadParameter("the pattern is empty", param_hint="PATTERN")
    start, end = _span(span)
    with open_checkpoint_source(path, lxd_dir, project, root) as opened:
        checkpoint = opened.checkpoint
        for pid in pids:
            check_pid(checkpoint, pid)
        try:
            search = explore.MemoryGrep(checkpoint, needle, pids=pids or None, regex=regex,
                                        ignore_case=ignore_case, context=context,
                                        kinds=kinds or None, perms=_perms(perms), start=start,
                                        end=end, files=root is not None)
        except re.error as error:
            raise click.BadParameter(f"not a regular expression: {error}",
                                     param_hint="PATTERN") from None
        damaged, first = memory_damage(search.processes)
        found = _write_hits(search, fmt, max_count, sys.stdout, empty=not damaged)
        if damaged and not found:  # not "no match": the damage may hide one (exit 2)
            raise damage_error(checkpoint, first, (
                f"the memory of {pids_text(damaged)} could not be searched in full; no match "
                f"in the {human_bytes(search.total)} that could"))
    if damaged:
        click.echo(safe_text(
            f"crit-plus: note: the memory of {pids_text(damaged)} could not be searched in "
            f"full ({first.where}: {first.message}): matches there may be missing"), err=True)
    if not found:
        click.echo(f"no match in {human_bytes(search.total)} of dumped memory", err=True)
        click.get_current_context().exit(EXIT_NO_MATCH)  # grep's status: nothing matched


def _perms(text):
    """``rw``, ``r-x``... → the ``PROT_*`` bits they name (``-`` and order ignored)."""
    if not text:
        return 0
    bits = {"r": 1, "w": 2, "x": 4}
    unknown = set(text.lower()) - set(bits) - {"-"}
    if unknown:
        raise click.BadParameter(f"{text!r}: permissions are letters r, w, x (like rw)",
                                 param_hint="--perms")
    return sum(bits[letter] for letter in set(text.lower()) - {"-"})


def _span(text):
    """``START-END`` (hex addresses) → ``(start, end)``, or ``(None, None)``."""
    if not text:
        return None, None
    low, sep, high = text.partition("-")
    try:
        start, end = ADDRESS.convert(low, None, None), ADDRESS.convert(high, None, None)
    except click.BadParameter:
        start = end = None
    if not sep or start is None or end is None or end <= start:
        raise click.BadParameter(f"{text!r} is not START-END with START < END "
                                 "(hex, like 7f0000000000-7fffffffffff)", param_hint="--range")
    return start, end


def _write_hits(search, fmt, max_count, out, empty=True):
    """Print the hits to ``out`` as they are found; return how many there were.  Without
    ``empty``, no hit prints nothing (not an empty JSON list: an error follows)."""
    color = use_color(out)
    total = search.total
    count = 0
    with progress(total if total >= PROGRESS_MIN else 0, "searching") as bar:
        for hit in search.hits(bar.update):
            if fmt == "json":
                out.write(",\n  " if count else "[\n  ")
                out.write(json.dumps(_hit_json(hit), ensure_ascii=False))
            else:
                out.write(_hit_line(hit, color))
            count += 1
            if max_count and count >= max_count:
                break
        if fmt == "json" and (count or empty):
            out.write("\n]\n" if count else "[]\n")
    return count


@mem_group.command("dump")
@source_options
@click.argument("pid", type=int)
@click.option("--vma", "address", type=ADDRESS, required=True,
              help="Any address inside the mapping to dump (hex).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, allow_dash=True),
              required=True,
              help="File to write the mapping's bytes to (- for standard output, never a "
                   "terminal).")
@format_option()
def mem_dump(path, lxd_dir, project, root, pid, address, output, fmt):
    """Write the whole mapping of PID that holds ADDR to a file (-o - : standard
    output), byte for byte as CRIU would restore it.  Stretches the checkpoint
    cannot give (lazy pages, a file mapping without --root, kernel-provided
    pages) are left as holes of zeros and listed on stderr.  Exit status 3 (one
    line on stderr, no file) when no mapping holds ADDR or the checkpoint holds
    none of its bytes.

    \b
    Examples:
      crit-plus mem dump dump1 12525 --vma 3c7b8000 -o heap.bin
      crit-plus mem dump lxd:web/snap0 1 --vma 400000 -o text.bin --root /srv/rootfs
      crit-plus mem dump dump1 12525 --vma 3c7b8000 -o - | xxd | less
    """
    _refuse_json_beside_bytes(output, fmt)
    refuse_terminal(output, "raw memory bytes")  # before anything is read
    with open_checkpoint_source(path, lxd_dir, project, root, note_errors=True) as opened:
        checkpoint = opened.checkpoint
        memory = _memory(checkpoint, check_pid(checkpoint, pid), address, 1)
        mapping = memory.find(address)
        if mapping is None:
            raise _no_bytes(checkpoint, pid, address, 1)
        extents = memory.extents(mapping.start, mapping.size)
        if all(extent.source == "unavailable" for extent in extents):
            raise _no_bytes(checkpoint, pid, mapping.start, mapping.size, extents[0].reason)
        holes = _write_mapping(memory, mapping, output, input_paths(opened.source))
    report = {"pid": pid, "vma": {"start": mapping.start, "end": mapping.end,
                                  "perms": maps_perms(mapping.prot, mapping.flags),
                                  "kind": mapping.kind, "name": mapping.name},
              "file": output, "bytes": mapping.size,
              "unavailable": [{"address": h.vaddr, "length": h.length, "reason": h.reason}
                              for h in holes]}
    if fmt == "json":
        write_json(stamped("mem-dump", report), sys.stdout)
        return
    click.echo(f"wrote {mapping.size} bytes of pid {pid} {safe_text(_vma_text(mapping))} "
               f"to {_output_name(output)}", err=True)
    for hole in holes:
        click.echo(f"  {hole.length} bytes at {hole.vaddr:#x} unavailable, left as zeros: "
                   f"{safe_text(hole.reason)}", err=True)


def _write_mapping(memory, mapping, output, inputs=()):
    """Stream ``mapping`` into ``output``; return the :class:`Unavailable` stretches.

    Zero pages and unavailable stretches are holes of a regular file (seeked over,
    never written: a hostile 64 TiB mapping costs no disk); to an output that
    cannot seek, and to standard output (``-``: where it starts is not ours to seek
    from), they are written as zeros, up to :data:`UNSEEKABLE_LIMIT` bytes in all.  A
    write the file system refuses (past its largest file) is one error naming the
    output and the offset.
    """
    holes = []
    name = "standard output" if to_stdout(output) else output
    with output_stream(output, binary=True, inputs=inputs) as handle:
        sparse = not to_stdout(output) and stat.S_ISREG(os.fstat(handle.fileno()).st_mode)
        if not sparse and mapping.size > UNSEEKABLE_LIMIT:
            raise OSError(errno.EFBIG, f"the mapping has {mapping.size} bytes, more than the "
                          f"{human_bytes(UNSEEKABLE_LIMIT)} written to an output that cannot "
                          "seek (-, a pipe, a device): give a regular file", name)
        position = 0
        try:
            for extent in memory.extents(mapping.start, mapping.size):
                position = extent.vaddr - mapping.start
                if extent.source in ("pages", "file"):
                    _copy(memory, extent, handle, holes, sparse, mapping.start)
                    continue
                if extent.source == "unavailable":
                    holes.append(Unavailable(extent.vaddr, extent.length, extent.reason))
                _skip(handle, extent.length, sparse, position)
            position = mapping.size
            if sparse:
                handle.truncate(mapping.size)
        except OSError as error:
            if error.filename is not None or error.errno == errno.EPIPE:
                raise  # named already, or the reader went away (| head): quiet
            raise OSError(error.errno, f"{error.strerror or error} (writing at offset "
                          f"{position:#x} of the {mapping.size} bytes of the mapping)",
                          name) from None
    return holes


def _copy(memory, extent, handle, holes, sparse, start):
    """Write the bytes of a ``pages`` or ``file`` extent; a stretch its file lacks is a hole."""
    for address, data in memory.stream(extent.vaddr, extent.length):
        if isinstance(data, Unavailable):
            holes.append(data)
            _skip(handle, data.length, sparse, address - start)
        else:
            handle.write(data)


def _skip(handle, length, sparse, position):
    """Leave ``length`` zero bytes at ``position``: a hole where the output can seek."""
    if sparse:
        handle.seek(position + length)
    else:
        _write_zeros(handle, length)


def _write_zeros(handle, length, piece=CHUNK_SIZE):
    zeros = bytes(min(length, piece))
    while length > 0:
        handle.write(zeros[:length])
        length -= len(zeros)


def register(group):
    """Add ``mem`` (read, grep, dump) to the CLI group."""
    group.add_command(mem_group)

