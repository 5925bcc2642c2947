"""``diff``: what changed between two checkpoints.

Exit codes, as diff(1) and cmp(1): 0 identical, 1 different, 2 trouble (an
input could not be read or decoded, a side's images have errors, wrong usage).  The
code leaves through ``ctx.exit``, which crit-plus's main turns into the process's exit code.
"""

from __future__ import annotations

import os

import click

from decoders.errors import DecodeError
from decoders.flags import MapFlags, Prot

from ..analysis.diff import SECTIONS, diff_checkpoints, report_json
from ..describe import (address_range, cmdline_text, count_text, human_bytes, lsm_name,
                        maps_offset, maps_perms, stat_text)
from ..opening import input_paths, open_source
from ..progress import progress
from ..render import colored, safe_text, use_color, write_fields, write_json, write_table
from .options import exit_codes, format_option, output_option, verdict_kept

EXIT_IDENTICAL, EXIT_DIFFERENT, EXIT_TROUBLE = 0, 1, 2

_CHANGE_COLORS = {"started": "green", "opened": "green", "appeared": "green", "added": "green",
                  "exited": "red", "closed": "red", "disappeared": "red", "removed": "red"}


class _Sections(click.ParamType):
    """A comma-separated list of section names."""

    name = "SECTIONS"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        names = tuple(part.strip() for part in str(value).split(",") if part.strip())
        unknown = [name for name in names if name not in SECTIONS]
        if unknown or not names:
            self.fail(f"{value!r}: sections are {', '.join(SECTIONS)} (comma-separated)",
                      param, ctx)
        return names


@exit_codes(bad_input=EXIT_TROUBLE)  # usage errors exit 2 already
@click.command("diff")
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@click.option("--only", type=_Sections(), default=",".join(SECTIONS), show_default=True,
              help="Compare only these sections: " + ", ".join(SECTIONS) + ".")
@click.option("--no-content", "no_content", is_flag=True,
              help="Do not read page data: VMAs are compared, page contents are not.")
@click.option("--match", type=click.Choice(("auto", "pid", "tree")), default="auto",
              show_default=True,
              help="Pair processes by pid, by tree position and command line, or let the "
                   "checkpoints decide (pid when they share a pid namespace).")
@click.option("--verbose", "-v", is_flag=True,
              help="Table: also list unchanged VMAs and the changed page ranges.")
@click.option("--lxd-dir", type=click.Path(file_okay=False),
              help="LXD/Incus directory for lxd:/incus: names.")
@click.option("--project", help="LXD/Incus project of the names.")
@click.option("--root", type=click.Path(exists=True, file_okay=False),
              help="Directory standing for / of both sides' processes (file-backed pages).")
@click.option("--old-root", type=click.Path(exists=True, file_okay=False),
              help="The same for OLD only (default: --root, or a snapshot's rootfs/).")
@click.option("--new-root", type=click.Path(exists=True, file_okay=False),
              help="The same for NEW only.")
@format_option(("table", "json", "html"))
@output_option
@click.pass_context
def diff_command(ctx, old, new, only, no_content, match, verbose, lxd_dir, project, root,
                 old_root, new_root, fmt, output):
    """Show what changed between two checkpoints OLD and NEW: processes started,
    exited or changed; fds and sockets opened, closed or changed; VMAs and memory
    pages changed, added or removed; images and dump facts side by side; the
    files two container archives changed in their root file system.

    OLD and NEW are any sources: image directories, LXD/Incus snapshot directories,
    lxd:NAME/SNAP names, Podman/CRI-O archives.  Processes are paired by pid when
    both share a pid namespace, else by tree position and command line (the
    output says which).  Exit status: 0 identical, 1 different, 2 trouble
    (also when a side's images have errors: what cannot be compared is not
    counted as a difference, so the verdict cannot be trusted; the report is
    still printed; and when none of the sections asked for could be compared,
    as --only rootfs of a side that is not a container archive).

    \b
    Examples:
      crit-plus diff dump1 dump2
      crit-plus diff lxd:web/before lxd:web/after --only processes,files
      crit-plus diff dump1 dump2 --no-content --format json | jq .memory
      crit-plus diff ck.tar.zst /var/lib/criu/ck >/dev/null && echo same
      crit-plus diff dump1 dump2 --format html -o changes.html
    """
    from ..output import output_stream, refuse_inputs

    # an input that cannot be read: one line, exit 2 (exit_codes, at crit_plus.cli's boundary)
    sides: list[tuple[str, object]] = []  # (argument, its source), for naming a broken side
    opening = old
    try:
        with open_source(old, lxd_dir=lxd_dir, project=project,
                         root=old_root or root) as opened_old:
            sides.append((old, opened_old.source))
            opening = new
            with open_source(new, lxd_dir=lxd_dir, project=project,
                             root=new_root or root) as opened_new:
                sides.append((new, opened_new.source))
                opening = None
                inputs = input_paths(opened_old.source) + input_paths(opened_new.source)
                refuse_inputs(output, inputs)
                report = diff_checkpoints(
                    opened_old.checkpoint, opened_new.checkpoint,
                    old_source=opened_old.source, new_source=opened_new.source, sections=only,
                    content=not no_content, match=match,
                    progress=lambda total: progress(total, "comparing pages"))
    except DecodeError as error:
        _name_side(error, sides, opening)
        raise
    code = verdict(report)
    with verdict_kept(code), output_stream(output, binary=fmt == "html", inputs=inputs) as out:
        if fmt == "html":
            out.write(html_page(report, verbose))
        elif fmt == "json":
            write_json(report_json(report), out)
        else:
            write_report(report, out, verbose=verbose, color=use_color(out))
        out.flush()
    if not report.compared:
        click.echo(f"crit-plus: nothing compared: {_not_compared_reason(report)}", err=True)
    for side, word in ((report.old, "OLD"), (report.new, "NEW")):
        if side.errors:
            click.echo(f"crit-plus: {word} {safe_text(side.name)}: "
                       f"{count_text(side.errors, 'error')} in its images, the comparison is "
                       "incomplete (crit-plus validate says which)", err=True)
    ctx.exit(code)


def _name_side(error, sides, opening):
    """Make an image error say which checkpoint it is in (``dump2: pstree.img: entry 0
    ...``): both sides have a pstree.img.  ``opening`` is the argument being opened when
    the error came (None: both were open).  An archive's error names its archive already."""
    if error.container or not error.path:
        return
    where = os.path.realpath(error.path)
    for argument, source in sides:
        for directory in input_paths(source):
            if directory and where.startswith(os.path.realpath(directory) + os.sep):
                error.container = str(argument)
                return
    if opening is not None:
        error.container = str(opening)


def verdict(report):
    """The exit code: 0 identical, 1 different, 2 when a side's images have errors (a
    pages file missing or cut short, an image that does not decode): what could not be
    compared counts as no difference, so neither 0 nor 1 could be trusted; 2 also when
    none of the sections asked for could be compared (``--only rootfs`` of a directory)."""
    if report.old.errors or report.new.errors or not report.compared:
        return EXIT_TROUBLE
    return EXIT_IDENTICAL if report.identical else EXIT_DIFFERENT


# -- the table form ---------------------------------------------------------------------------


def _text(value):
    if value is None:
        return "-"
    if isinstance(value, (tuple, list)):
        return " ".join(_text(item) for item in value) if value else "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _field_value(field, value):
    """A changed value for people: protections as rwx, mmap flags by name, argv joined."""
    if value is None:
        return "-"
    if field == "prot":
        return Prot(value).text()
    if field == "flags" and isinstance(value, MapFlags):
        return "|".join(flag.name for flag in MapFlags if flag and value & flag) or "0"
    if field in ("argv",):
        return cmdline_text(value) or "-"
    if isinstance(value, int) and field in ("pgoff",):
        return maps_offset(value)  # as mems shows it
    return _text(value)


def _item_text(item):
    return ":".join(_text(part) for part in item) if isinstance(item, tuple) else _text(item)


def _change_text(change):
    """``field old -> new``; for sets of things (epoll targets, inotify watches,
    groups) only what was added (+) and what is gone (-)."""
    old, new = change.old, change.new
    if isinstance(old, tuple) and isinstance(new, tuple) and change.field != "argv":
        gone = [f"-{_item_text(item)}" for item in old if item not in new]
        added = [f"+{_item_text(item)}" for item in new if item not in old]
        return f"{change.field} " + " ".join(added + gone)
    return f"{change.field} {_field_value(change.field, old)} -> " \
           f"{_field_value(change.field, new)}"


def _changes_text(fields):
    return "; ".join(_change_text(change) for change in fields)


def _pids(old_pid, new_pid):
    return str(new_pid) if old_pid == new_pid else f"{old_pid}->{new_pid}"


def _heading(out, text):
    out.write(f"\n{text}\n")


def _verdict_text(report):
    if not report.compared:
        return f"not compared: {', '.join(report.not_compared)} (nothing asked for could be " \
               "compared)"
    if not report.identical:
        return f"different: {', '.join(report.differing)}"
    unread = len(report.processes.not_compared) if report.processes is not None else 0
    return f"identical where compared ({count_text(unread, 'value')} not compared)" \
        if unread else "identical"


def _pairing_text(pairing):
    return f"processes paired by {pairing.method}: {pairing.reason}"


def write_report(report, out, *, verbose=False, color=False):
    """Write a :class:`~crit_plus.analysis.diff.DiffReport` as text tables."""
    write_fields([("OLD", _side_text(report.old)), ("NEW", _side_text(report.new))], out)
    if report.pairing is not None:
        out.write(_pairing_text(report.pairing) + "\n")
    for name in report.sections:
        _WRITERS[name](getattr(report, name), out, verbose, color)
    out.write(f"\n{_verdict_text(report)}\n")


def html_page(report, verbose=False):
    """The ``--format html`` page: this command's tables, a page strip per VMA row
    (every VMA of a differing process with ``verbose``, else those that differ)."""
    from ..html import pages

    fields = [("OLD", _side_text(report.old)), ("NEW", _side_text(report.new))]
    if report.pairing is not None:
        fields.append(("pairing", _pairing_text(report.pairing)))
    sections = {}
    if report.processes is not None:
        section = report.processes
        sections["processes"] = (_processes_heading(section), process_rows(section),
                                 PROCESS_COLUMNS, not_compared_lines(section))
    if report.files is not None:
        section = report.files
        sections["files"] = (_files_heading(section), fd_rows(section), FD_COLUMNS,
                             object_rows(section), OBJECT_COLUMNS)
    if report.memory is not None:
        section = report.memory
        found = [(memory_process_text(process),
                  [(row, vma_cells(row)) for row in process.vmas if verbose or row.differs])
                 for process in section.processes if verbose or process.differs]
        sections["memory"] = (_memory_heading(section), memory_columns(section), found)
    if report.images is not None:
        section = report.images
        facts, stats = fact_rows(section)
        sections["images"] = (_images_heading(section), section.only_old, section.only_new,
                              facts, FACT_COLUMNS, stats, STAT_COLUMNS)
    if report.rootfs is not None:
        heading, rows, problems = rootfs_view(report.rootfs)
        sections["rootfs"] = (heading, rows, pages.columns(ROOTFS_COLUMNS), problems)
    return pages.diff_page(
        report, title=f"crit-plus diff {safe_text(report.old.name)} {safe_text(report.new.name)}",
        fields=fields, verdict=_verdict_text(report), **sections)


def _not_compared_reason(report):
    """Why the sections asked for were not compared, on one line."""
    return "; ".join(f"{name}: {getattr(report, name).reason}" for name in report.not_compared)


def _side_text(side):
    text = f"{side.name} ({side.kind or 'directory'})"
    if side.errors:
        text += f"; {count_text(side.errors, 'error')} in its images, the diff may mislead " \
                "(crit-plus validate says which)"
    return text


def _change(word, color):
    return colored(word, _CHANGE_COLORS.get(word, "yellow"), color)


def _state_text(state, word):
    """A started process's state in NEW; an exited one's as OLD recorded it (``alive in
    OLD``: it ran then and is not in NEW)."""
    text = state or "state unknown"
    return f"{text} in OLD" if word == "exited" else text


PROCESS_COLUMNS = (("change", "CHANGE"), ("old", "OLD PID"), ("new", "NEW PID"),
                   ("comm", "COMM"), ("what", "WHAT"))


def _processes_heading(section):
    unread = len(section.not_compared)
    return (f"Processes: {len(section.started)} started, {len(section.exited)} exited, "
            f"{len(section.changed)} changed, {section.unchanged} unchanged"
            + (f"; {count_text(unread, 'value')} not compared" if unread else ""))


def not_compared_lines(section):
    """One line per value of a paired process a side cannot give (not a change)."""
    return [f"not compared: {_pids(old_pid, new_pid)} {item.field}: {safe_text(item.reason)}"
            for old_pid, new_pid, item in section.not_compared]


def process_rows(section, color=False):
    """Rows (:data:`PROCESS_COLUMNS`) of the processes started, exited and changed."""
    rows = []
    for word, infos in (("started", section.started), ("exited", section.exited)):
        for info in infos:
            rows.append({"change": _change(word, color),
                         "old": info.pid if word == "exited" else None,
                         "new": info.pid if word == "started" else None,
                         "comm": info.comm,
                         "what": f"{cmdline_text(info.argv, info.comm)} (ppid {info.ppid}, "
                                 f"{count_text(info.threads, 'thread')}, "
                                 f"{count_text(info.fds, 'fd')}, "
                                 f"{_state_text(info.state, word)})"})
    for process in section.changed:
        what = _changes_text(process.changes)
        if process.threads_added:
            what += ("; " if what else "") + "threads added " + \
                ",".join(str(tid) for tid in process.threads_added)
        if process.threads_gone:
            what += ("; " if what else "") + "threads gone " + \
                ",".join(str(tid) for tid in process.threads_gone)
        rows.append({"change": _change("changed", color), "old": process.old_pid,
                     "new": process.new_pid, "comm": process.comm, "what": what})
    return rows


def _write_processes(section, out, _verbose, color):
    _heading(out, _processes_heading(section))
    rows = process_rows(section, color)
    if rows:
        write_table(rows, PROCESS_COLUMNS, out)
    for line in not_compared_lines(section):
        out.write(line + "\n")


def _view_text(view):
    """An open file in one line: path, socket with protocol and state, pipe..."""
    if view is None:
        return "-"
    state = view.state or {}
    name = view.name or view.kind
    if view.kind == "inet":
        return f"{str(state.get('proto') or 'inet').lower()} {name} " \
               f"({str(state.get('state') or '?').lower()})"
    if view.kind == "unix":
        words = [str(word).lower() for word in (state.get("type"), state.get("state")) if word]
        return f"unix {name} ({', '.join(words)})"
    if view.kind == "file" and state.get("deleted"):
        return f"{name} (deleted{', ghost' if state.get('ghost') else ''})"
    if view.kind in ("fifo", "pipe", "file", "memfd", "tty"):
        return name if view.kind == "file" else f"{view.kind} {name}"
    return name


FD_COLUMNS = (("pid", "PID"), ("fd", "FD"), ("change", "CHANGE"), ("old", "OLD"),
              ("new", "NEW"))
OBJECT_COLUMNS = (("change", "CHANGE"), ("kind", "KIND"), ("what", "FILE"),
                  ("fields", "WHAT CHANGED"), ("holders", "HELD BY"))


def _files_heading(section):
    return (f"Files: {count_text(len(section.fds), 'fd change')}, "
            f"{count_text(len(section.objects), 'file')} appeared, disappeared or changed"
            + ("" if section.inodes_compared else
               " (inode numbers not comparable: sockets and pipes matched by what they are)"))


def fd_rows(section, color=False):
    """Rows (:data:`FD_COLUMNS`) of the fds opened, closed, re-pointed or changed."""
    rows = []
    for change in section.fds:
        old, new = _view_text(change.old), _view_text(change.new)
        if change.change == "changed":
            new = _changes_text(change.fields)
        rows.append({"pid": _pids(change.old_pid, change.new_pid), "fd": change.fd,
                     "change": _change(change.change, color), "old": old, "new": new})
    return rows


def object_rows(section, color=False):
    """Rows (:data:`OBJECT_COLUMNS`) of the files that appeared, disappeared or changed."""
    rows = []
    for change in section.objects:
        holders = ", ".join(f"{pid}:{fd}" for pid, fd in
                            (change.new_holders or change.old_holders))
        rows.append({"change": _change(change.change, color), "kind": change.kind,
                     "what": _view_text(change.new or change.old),
                     "fields": _changes_text(change.fields) or None, "holders": holders})
    return rows


def _write_files(section, out, _verbose, color):
    _heading(out, _files_heading(section))
    rows = fd_rows(section, color)
    if rows:
        write_table(rows, FD_COLUMNS, out)
    rows = object_rows(section, color)
    if rows:
        out.write("\n")
        write_table(rows, OBJECT_COLUMNS, out)


def _pages_text(pages):
    text = (f"{pages.changed} changed, {pages.added} added, {pages.removed} removed, "
            f"{pages.unchanged} unchanged, {pages.unavailable} unavailable")
    if pages.moved:
        text += f" ({pages.moved} of the changed or added moved from elsewhere)"
    return text


def _size_text(row):
    old, new = row.old, row.new
    if old is not None and new is not None and old.size != new.size:
        return f"{human_bytes(old.size)} -> {human_bytes(new.size)}"
    return human_bytes(row.view.size)


def _perm_text(row):
    """Permissions as ``mems`` and /proc/PID/maps show them (``rw-p``)."""
    texts = [maps_perms(view.prot, view.flags) for view in (row.old, row.new) if view]
    return "->".join(texts) if len(set(texts)) == 2 else texts[-1]


def _range_text(row):
    view = row.view
    text = address_range(view.start, view.end)
    old = row.old
    if row.new is not None and old is not None and (old.start, old.end) != (view.start, view.end):
        text += f" (was {address_range(old.start, old.end)})"
    return text


_MEMORY_COLUMNS = (("change", "CHANGE"), ("range", "ADDRESS"), ("perm", "PERM"),
                   ("size", "SIZE"), ("mapping", "MAPPING"))
_PAGE_COLUMNS = (("changed", "CHANGED"), ("added", "ADDED"), ("removed", "REMOVED"),
                 ("unchanged", "SAME"), ("unavailable", "N/A"))


def _memory_heading(section):
    summary = f"Memory: {count_text(len(section.processes), 'process', 'processes')} compared"
    if section.content:
        summary += (f"; pages they hold: {_pages_text(section.pages)}; "
                    f"{human_bytes(section.bytes_read)} of page data read")
        if section.file_bytes_read:
            summary += f" (and {human_bytes(section.file_bytes_read)} of files under the roots)"
    else:
        summary += " (VMAs only: --no-content)"
    return summary


def memory_process_text(process):
    """A paired process's line: pids, comm, VMA changes and page counts."""
    changes = ", ".join(f"{count} {change}" for change, count in
                        sorted(process.vma_changes.items())) or "none"
    line = f"pid {_pids(process.old_pid, process.new_pid)} " \
           f"({safe_text(process.comm or '?')}): VMA changes: {changes}"
    if process.pages is not None:
        line += "; pages: " + _pages_text(process.pages)
    return line


def memory_columns(section):
    """The columns of a process's VMA table (page counts when contents were compared)."""
    return _MEMORY_COLUMNS + (_PAGE_COLUMNS if section.content else ())


def vma_cells(row, color=False):
    """One VMA row of the memory section as table cells."""
    view = row.view
    item = {"change": _change(row.change, color), "range": _range_text(row),
            "perm": _perm_text(row), "size": _size_text(row),
            "mapping": view.name or view.kind}
    if row.pages is not None:
        item.update({key: getattr(row.pages, key) for key, _ in _PAGE_COLUMNS})
    return item


def _write_memory(section, out, verbose, color):
    _heading(out, _memory_heading(section))
    for process in section.processes:
        if not process.differs and not verbose:
            continue
        out.write(f"\n{memory_process_text(process)}\n")
        rows, ranges = [], []
        for row in process.vmas:
            if not (verbose or row.differs):
                continue
            rows.append(vma_cells(row, color))
            view = row.view
            if verbose and row.changed_ranges:
                more = f" and {row.more_ranges} more" if row.more_ranges else ""
                ranges.append(f"changed pages in {address_range(view.start, view.end)}: "
                              + " ".join(address_range(start, end)
                                         for start, end in row.changed_ranges) + more)
        if rows:
            write_table(rows, memory_columns(section), out)
        for line in ranges:
            out.write(line + "\n")


def _fact_cells(row, formatter):
    return {"label": row.label, "old": formatter(row.field, row.old),
            "new": formatter(row.field, row.new),
            "mark": "*" if row.differs and row.compared else ""}


def _fact_value(field, value):
    if field in ("image_bytes", "pages_bytes") and value is not None:
        return f"{value} ({human_bytes(value)})"
    if field == "lsm_type" and value is not None:
        return lsm_name(value)
    if field == "taken_at" and value is not None:
        return value.strftime("%Y-%m-%d %H:%M:%S %Z")
    return _text(value)


def _images_heading(section):
    return (f"Images: {len(section.only_old)} only in OLD, {len(section.only_new)} "
            "only in NEW")


FACT_COLUMNS = (("label", ""), ("old", "OLD"), ("new", "NEW"), ("mark", "DIFFERS"))
STAT_COLUMNS = (("label", "stats-dump"), ("old", "OLD"), ("new", "NEW"))


def fact_rows(section):
    """``(facts, stats)``: rows (:data:`FACT_COLUMNS`, :data:`STAT_COLUMNS`) of the dump
    facts and of ``stats-dump`` side by side."""
    return ([_fact_cells(row, _fact_value) for row in section.facts],
            [_fact_cells(row, stat_text) for row in section.stats])


def _write_images(section, out, _verbose, _color):
    _heading(out, _images_heading(section))
    for label, names in (("only in OLD", section.only_old), ("only in NEW", section.only_new)):
        if names:
            out.write(f"{label}: {', '.join(safe_text(name) for name in names)}\n")
    facts, stats = fact_rows(section)
    write_table(facts, FACT_COLUMNS, out)
    if stats:
        out.write("\n")
        write_table(stats, STAT_COLUMNS, out)


ROOTFS_COLUMNS = (("change", "CHANGE"), ("path", "PATH"), ("fields", ""))


def rootfs_view(section, color=False):
    """``(heading, rows, problem lines)`` of the rootfs section, as the text and HTML
    forms show it (rows :data:`ROOTFS_COLUMNS`; none when it was not compared)."""
    if not section.compared:
        return f"Root file system: not compared: {section.reason}", [], []
    counts = ", ".join(f"{section.count(change)} {change}" for change in
                       ("added", "removed", "changed", "deleted", "undeleted"))
    rows = [{"change": _change(c.change, color), "path": c.path,
             "fields": ", ".join(f"{name} {_text(getattr(c.old, name))} -> "
                                 f"{_text(getattr(c.new, name))}" for name in c.fields)
             if c.fields else _rootfs_entry(c.new or c.old)} for c in section.changes]
    problems = [f"{word}: {safe_text(problem)}" for word, problem in
                (("OLD", section.old_problem), ("NEW", section.new_problem)) if problem]
    return f"Root file system (rootfs-diff.tar, deleted.files): {counts}", rows, problems


def _write_rootfs(section, out, _verbose, color):
    heading, rows, problems = rootfs_view(section, color)
    _heading(out, heading)
    if rows:
        write_table(rows, ROOTFS_COLUMNS, out)
    for line in problems:
        out.write(line + "\n")


def _rootfs_entry(entry):
    if entry is None:
        return ""
    if entry.kind == "file":
        return f"file, {human_bytes(entry.size)}"
    return entry.kind + (f" -> {entry.link}" if entry.link else "")


_WRITERS = {"processes": _write_processes, "files": _write_files, "memory": _write_memory,
            "images": _write_images, "rootfs": _write_rootfs}


def register(group):
    """Add ``diff`` to the CLI group."""
    group.add_command(diff_command)
