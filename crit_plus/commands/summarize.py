"""``summarize``: one screen that says what a checkpoint is."""

from __future__ import annotations


import click

from ..analysis import summary as analysis
from ..describe import (
    address_range,
    cmdline_text,
    count_text,
    human_bytes,
    human_seconds,
    lsm_name,
    pages_text,
    stat_label,
    stat_text,
    state_text,
    unknown_pages_text,
)
from ..render import SEVERITY_COLORS, colored, jsonable, safe_text, use_color, write_fields
from ..render import stamped, write_json, write_table, write_tree
from ..output import refuse_inputs
from . import many
from .options import format_option, open_checkpoint_source, output_option, source_options
from .selection import TREE_FORMATS

PAGE_SIZE = 4096
STATE_COLORS = {"zombie": "red", "stopped": "yellow"}
KIND_TITLES = {
    "criu-dir": "CRIU image directory", "lxd-instance": "LXD stateful stop",
    "lxd-snapshot": "LXD stateful snapshot", "incus-instance": "Incus stateful stop",
    "incus-snapshot": "Incus stateful snapshot", "lxc": "LXC checkpoint",
    "podman-archive": "Podman/CRI-O checkpoint archive",
    "pod-archive": "container of a Kubernetes pod checkpoint",
    "oci-image": "checkpoint OCI image",
}
#: Root-filesystem changes listed in the table form (JSON has them all).
ROOTFS_SHOWN = 40
ROOTFS_COLUMNS = (("change", "CHANGE"), ("kind", "KIND"), ("size", "SIZE"), ("mode", "MODE"),
                  ("mtime", "MODIFIED (UTC)"), ("path", "PATH"))

PROCESS_COLUMNS = (("pid", "PID"), ("ppid", "PPID"), ("state", "STATE"), ("threads", "THR"),
                   ("comm", "COMM"), ("vmas", "VMAS"), ("pages", "PAGES"), ("shared", "SHMEM"),
                   ("size", "SIZE"), ("fds", "FDS"), ("command", "COMMAND"))
TREE_COLUMNS = (("label", "PROCESS"), ("state", "STATE"), ("threads", "THR"), ("vmas", "VMAS"),
                ("pages", "PAGES"), ("shared", "SHMEM"), ("size", "SIZE"), ("fds", "FDS"),
                ("command", "COMMAND"))
MAPPING_COLUMNS = (("pid", "PID"), ("comm", "COMM"), ("range", "MAPPING"), ("kind", "KIND"),
                   ("pages", "PAGES"), ("size", "SIZE"), ("name", "NAME"))


def summary_json(result):
    """The summary as JSON data (schema in docs/commands/summarize.md)."""
    data = jsonable(result)
    data["stats"] = {name: value for name, value in result.stats}
    data["totals"]["pages"] = result.totals.pages
    for key in ("processes", "top_processes"):
        for item, process in zip(data[key], getattr(result, key)):
            item["pages"] = process.pages
            item["exit"] = process.exit.as_json() if process.exit is not None else None
            # deprecated alias, kept for scripts: the raw wait status (exit.wait_status)
            item["exit_code"] = process.exit.wait_status if process.exit is not None else None
            if process.pages_unknown:  # a cut pagemap: unknown, not 0
                for name in ("pages", "present", "parent", "lazy", "none"):
                    item[name] = None
    return stamped("summarize", data)


def _heading(out, text, color):
    out.write("\n" + (colored(text, "bold", color) or text) + "\n")


def _origin_fields(result):
    origin, dump = result.origin, result.dump
    what = KIND_TITLES.get(origin.kind, origin.kind)
    if origin.instance:
        what += f" {origin.instance}" + (f"/{origin.snapshot}" if origin.snapshot else "")
        if origin.project not in (None, "default"):
            what += f" (project {origin.project})"
    pairs = [("checkpoint", what)]
    if origin.archive:
        pairs.append(("archive", origin.archive))
    if origin.pod:
        pairs.append(("pod", origin.pod))
    if origin.image:
        pairs.append(("image", origin.image))
    sizes = f"{human_bytes(dump.image_bytes)}; pages {human_bytes(dump.pages_bytes)}"
    pairs.append(("images", f"{origin.images_dir} ({dump.image_files} files, {sizes})"))
    if origin.manager:
        recorded = {True: "stateful", False: "NOT stateful", None: "stateful flag not recorded"}
        pairs.append(("backup.yaml", f"{recorded[origin.stateful]} ({origin.backup_path})"
                      if origin.backup_path else "none beside state/"))
    if origin.taken_at is not None:
        pairs.append(("taken at", f"{origin.taken_at.strftime('%Y-%m-%d %H:%M:%S %Z')} "
                                  f"(from {origin.taken_at_source})"))
    if origin.criu_version or origin.kernel:
        on = f" on Linux {origin.kernel}" if origin.kernel else ""
        machine = f" {origin.machine}" if origin.machine else ""
        pairs.append(("CRIU", f"{origin.criu_version or '?'}{on}{machine} "
                              f"(from {origin.version_source})"))
    else:
        pairs.append(("CRIU", "version not recorded (no verbose dump log)"))
    if dump.run_id:
        pairs.append(("CRIU run id", dump.run_id))
    lsm = lsm_name(dump.lsm) or "?"
    version = "?" if dump.image_version is None else dump.image_version
    inventory = [f"image version {version}", f"LSM {lsm}",
                 f"network lock {dump.network_lock or '?'}"]
    if dump.tcp_close:
        inventory.append("TCP closed (--tcp-close)")
    if dump.plugins:
        inventory.append("plugins " + ", ".join(dump.plugins))
    if dump.pre_dump_mode is not None:
        inventory.append(f"pre-dump mode {dump.pre_dump_mode}")
    pairs.append(("inventory", ", ".join(inventory)))
    if dump.uptime_us:
        pairs.append(("host uptime", human_seconds(dump.uptime_us / 1e6)))
    pairs.append(("parent", dump.parent or "none (a full dump)"))
    return pairs


def _unknown_text(pids):
    """What the private page sums leave out: the pids whose pagemap cannot be read."""
    if not pids:
        return ""
    return f"; {unknown_pages_text(pids)} (?: pagemap unreadable, see NOTES)"


def _totals_fields(totals):
    pairs = [
        ("processes", f"{totals.processes} ({count_text(totals.threads, 'thread')}, "
                      f"{count_text(totals.zombies, 'zombie')})"),
        ("memory", f"{totals.vmas} VMAs; private pages {pages_text(totals.present)} present, "
                   f"{totals.parent} in parent, {totals.lazy} lazy"
                   + (f", {totals.none} with no data flag" if totals.none else "")
                   + "; shared memory "
                   f"{pages_text(totals.shared)}, each object once"
                   + _unknown_text(totals.pages_unknown)),
        ("fds", f"{totals.fds} ({totals.files} distinct files): "
                + (", ".join(f"{n} {kind}" for kind, n in totals.fds_by_kind) or "none")),
    ]
    families = {}
    for family, state, n in totals.sockets:
        families.setdefault(str(family), []).append(f"{n} {state or 'unknown'}")
    pairs.append(("sockets", "; ".join(f"{family}: {', '.join(states)}"
                                       for family, states in families.items()) or "none"))
    return pairs


def _process_rows(result, color):
    rows = []
    for p in result.processes:
        command = cmdline_text(p.argv, p.comm) if p.argv is not None else p.exe
        rows.append({
            "pid": p.pid, "ppid": p.ppid,
            "state": colored(state_text(p.state, p.exit), STATE_COLORS.get(p.state), color),
            "threads": p.threads, "comm": p.comm, "vmas": p.vmas,
            "pages": "?" if p.pages_unknown else p.pages, "shared": p.shared,
            "size": "?" if p.pages_unknown else human_bytes((p.pages + p.shared) * PAGE_SIZE),
            "fds": p.fds, "command": command,
            "depth": p.depth, "label": f"{p.pid} {safe_text(p.comm or '?')}",
        })
    return rows


def _mapping_rows(result):
    return [{"pid": m.pid, "comm": m.comm, "range": address_range(m.start, m.end),
             "kind": m.kind, "pages": m.pages, "size": human_bytes(m.pages * PAGE_SIZE),
             "name": m.name} for m in result.top_mappings]


def log_role(log):
    """What a :class:`~crit_plus.analysis.summary.LogSummary` is to the checkpoint, in words."""
    operation = log.operation or "run"
    if log.role == "dump":
        return f"this checkpoint's {operation}"
    if log.role == "restore":
        return "a restore of this checkpoint"
    if log.role == "manager":
        return "the instance's liblxc log"
    if log.role == "other":
        return ("a restore of another checkpoint" if log.operation == "restore"
                else f"another CRIU run's {operation}")
    return f"a CRIU {operation} log of an unknown run"


def _log_facts(log):
    facts = [log_role(log)]
    if log.run_id:
        facts.append(f"run {log.run_id[:8]}")
    if log.outcome:
        facts.append(log.outcome)
    if log.ended is not None:
        facts.append(f"ended {log.ended.strftime('%Y-%m-%d %H:%M:%S')}")
    if log.criu_version:
        facts.append(f"CRIU {log.criu_version}")
    if log.copies:
        facts.append(f"copied as {', '.join(log.copies)}")
    return ", ".join(facts)


def _write_logs(result, out):
    for log in result.logs:
        out.write(f"  {safe_text(log.name)} ({safe_text(_log_facts(log))}): "
                  f"{count_text(log.error_count, 'error line')}\n")
        out.write(f"      why: {safe_text(log.reason)}\n")
        if log.decisive:
            out.write(f"      decisive: {safe_text(log.decisive.strip())}\n")
        if log.cause:
            out.write(f"      cause: {safe_text(log.cause)}\n      fix: {safe_text(log.fix)}\n")
        for line in log.errors:
            if line != log.decisive:
                out.write(f"      {safe_text(line.strip())}\n")
        if log.error_count > len(log.errors):
            out.write(f"      ... and {log.error_count - len(log.errors)} more\n")


def rootfs_view(rootfs):
    """``(summary, rows, notes)`` of an archive's root-filesystem changes, as the text
    and HTML forms show them: a count line, the first :data:`ROOTFS_SHOWN` paths
    (:data:`ROOTFS_COLUMNS`), then lines on what is not listed and why."""
    from datetime import datetime, timezone

    size = "no rootfs-diff.tar" if rootfs.tar_size is None else \
        f"rootfs-diff.tar {human_bytes(rootfs.tar_size)}"
    summary = (f"{count_text(rootfs.files + rootfs.more, 'file')} added or modified "
               f"({human_bytes(rootfs.bytes)} of contents), "
               f"{count_text(len(rootfs.deleted), 'path')} deleted ({size})")
    rows = [{"change": "deleted", "kind": "", "size": "", "mode": "", "mtime": "",
             "path": path} for path in rootfs.deleted]
    rows += [{"change": "added/modified", "kind": entry.kind,
              "size": human_bytes(entry.size) if entry.kind == "file" else "",
              "mode": f"{entry.mode:04o}",
              "mtime": datetime.fromtimestamp(entry.mtime, timezone.utc).strftime(
                  "%Y-%m-%d %H:%M:%S"),
              "path": entry.path + (f" -> {entry.link}" if entry.link else "")}
             for entry in rootfs.entries if entry.kind != "dir"]
    notes = []
    hidden = len(rows) - min(len(rows), ROOTFS_SHOWN)
    if hidden:
        notes.append(f"... and {hidden} more (--format json lists them)")
    if rootfs.more:
        notes.append(f"{count_text(rootfs.more, 'more entry', 'more entries')} counted, not "
                     "listed (over the number of entries crit-plus keeps)")
    if rootfs.problem:
        notes.append(safe_text(rootfs.problem))
    return summary, rows[:ROOTFS_SHOWN], notes


def _write_rootfs(rootfs, out):
    """The archive's root-filesystem changes (:func:`rootfs_view`)."""
    summary, rows, notes = rootfs_view(rootfs)
    out.write(f"  {summary}\n")
    if rows:
        write_table(rows, ROOTFS_COLUMNS, out)
    for line in notes:
        out.write(f"  {line}\n")


def write_summary(result, out, tree=False):
    """Write the summary for people: fields, tables, logs and notes."""
    color = use_color(out)
    write_fields(_origin_fields(result), out)
    if result.stats:
        _heading(out, "DUMP STATISTICS (stats-dump)", color)
        write_fields([(stat_label(name), stat_text(name, value))
                      for name, value in result.stats], out)
    _heading(out, "TOTALS", color)
    write_fields(_totals_fields(result.totals), out)
    _heading(out, "PROCESSES", color)
    rows = _process_rows(result, color)
    if tree:
        write_tree(rows, TREE_COLUMNS, out, "label")
    else:
        write_table(rows, PROCESS_COLUMNS, out)
    if result.top_mappings:
        _heading(out, "BIGGEST MEMORY HOLDERS", color)
        write_table(_mapping_rows(result), MAPPING_COLUMNS, out)
    if result.rootfs is not None:
        _heading(out, "ROOT FILE SYSTEM CHANGES (rootfs-diff.tar, deleted.files)", color)
        _write_rootfs(result.rootfs, out)
    if result.logs:
        _heading(out, "LOGS", color)
        _write_logs(result, out)
    _heading(out, "NOTES", color)
    for note in result.notes:
        severity = colored(f"{note.severity:<7}", SEVERITY_COLORS.get(note.severity), color)
        out.write(f"  {severity} {safe_text(note.code)}: {safe_text(note.message)} "
                  f"[{safe_text(note.where)}]\n")
    if not result.notes:
        out.write("  nothing odd\n")


def html_page(result, opened):
    """The HTML page of ``result`` (``--format html``): the summary, every process's
    VMAs and fds, the sockets and validate's findings of the ``opened`` checkpoint."""
    from ..analysis import explore
    from ..analysis.validate import validate
    from ..html import pages
    from .sk import COLUMNS as SOCKET_COLUMNS
    from .sk import socket_cells

    checkpoint = opened.checkpoint
    stats = [(stat_label(name), stat_text(name, value)) for name, value in result.stats]
    logs = [(log.name, _log_facts(log), log.errors) for log in result.logs]
    return pages.summary_page(
        result, title=f"crit-plus summarize {safe_text(result.origin.spec)}",
        origin=_origin_fields(result), stats=stats, totals=_totals_fields(result.totals),
        processes=_process_rows(result, False), vmas=explore.vma_table(checkpoint),
        fds=explore.fd_table(checkpoint),
        validation=validate(checkpoint, source=opened.source),
        sockets=[socket_cells(row) for row in explore.socket_rows(checkpoint)],
        socket_columns=pages.columns(SOCKET_COLUMNS, ("recv_queue", "send_queue")),
        mappings=_mapping_rows(result),
        mapping_columns=pages.columns(MAPPING_COLUMNS, ("pid", "pages")), logs=logs,
        rootfs=_rootfs_html(result.rootfs, pages))


def _rootfs_html(rootfs, pages):
    """The page's root-filesystem section: ``(summary, rows, columns, notes)``, or None
    when the checkpoint records none (not a container archive)."""
    if rootfs is None:
        return None
    summary, rows, notes = rootfs_view(rootfs)
    return summary, rows, pages.columns(ROOTFS_COLUMNS), notes


@click.command("summarize")
@source_options(several=True)
@click.option("--top", type=click.IntRange(0, 1000), default=analysis.TOP, show_default=True,
              help="How many of the biggest memory holders to list.")
@click.option("--cmdline", is_flag=True,
              help="Read each process's command line from its memory (a few bytes of page "
                   "data per process; without it no page data is read).")
@format_option(TREE_FORMATS + ("html", "jsonl"))
@output_option
def summarize_command(paths, lxd_dir, project, root, top, cmdline, fmt, output):
    """Say what a checkpoint is, on one screen: where it came from (a CRIU
    directory, an LXD/Incus stateful stop or snapshot, an archive), the CRIU
    version and kernel, when it was taken, every dump statistic, the process
    tree with threads, pages and fds, totals, the biggest memory holders, the
    logs kept beside it and their errors, and anything odd (zombies, deleted
    files, external sockets, a parent checkpoint, lazy pages...).

    Only metadata is read (no page data, unless --cmdline): fast on big
    checkpoints.  --format html writes one self-contained page (no script, no
    network): the process tree with a memory map per process, fds, sockets,
    validate's findings (docs/commands/summarize.md).  Several PATHs, or a
    bare lxd: or incus: (every checkpoint that manager keeps), give one
    section per checkpoint (--format jsonl: one JSON document each,
    streamed); exit 1 if any could not be read.

    \b
    Examples:
      crit-plus summarize /var/lib/criu/dump1
      crit-plus summarize lxd:web/snap0 --format tree
      crit-plus summarize checkpoint.tar.zst -f json | jq .totals
      crit-plus summarize lxd:web/snap0 --format html -o web.html
      crit-plus summarize lxd: -f jsonl       every LXD checkpoint, one JSON line each
    """
    def examine(source):
        from ..opening import open_graph

        return analysis.summarize(source, open_graph(source, root=root), argv=cmdline, top=top)

    def single(path):
        _summarize_one(path, lxd_dir, project, root, top, cmdline, fmt, output)

    many.run_sections("summarize", paths, examine, lambda result, out: _write(result, fmt, out),
                      summary_json, single=single, fmt=fmt, lxd_dir=lxd_dir, project=project,
                      one_only=many.one_only(fmt, output))


def _summarize_one(path, lxd_dir, project, root, top, cmdline, fmt, output):
    """One checkpoint, as summarize always did: text, tree, JSON or HTML, maybe to ``-o``."""
    from ..opening import input_paths
    from ..output import output_stream

    page = None
    with open_checkpoint_source(path, lxd_dir, project, root) as opened:
        inputs = input_paths(opened.source)
        refuse_inputs(output, inputs)  # before anything is read
        result = analysis.summarize(opened.source, opened.checkpoint, argv=cmdline, top=top)
        if fmt == "html":
            page = html_page(result, opened)
    with output_stream(output, binary=page is not None, inputs=inputs) as out:
        if page is not None:
            out.write(page)
        else:
            _write(result, fmt, out)


def _write(result, fmt, out):
    if fmt == "json":
        write_json(summary_json(result), out)
    else:
        write_summary(result, out, tree=fmt == "tree")


def register(group):
    """Add ``summarize`` to the CLI group."""
    group.add_command(summarize_command)

