"""``list``: the stateful checkpoints LXD and Incus keep, or the image directories and
checkpoint archives below a path, each with its processes, whether it is damaged and the
name to give other commands."""

from __future__ import annotations

import os
import sys

import click

from decoders.errors import DecodeError

from ..analysis.dump_failure import dump_failure
from ..analysis.explain import explain_criu_log
from ..boundary import error_text
from ..describe import human_bytes
from ..findings import ERROR
from ..opening import open_graph, resolve_source, target_label
from ..render import safe_text, write_json, write_table
from ..sources.discover import DEFAULT_DEPTH, discover
from . import many
from .options import MANY_FORMATS, format_option

#: How ``damaged`` starts for images a failed dump left (status ``DUMP FAILED``).
DUMP_FAILED = "dump failed"
COLUMNS = (("instance", "INSTANCE"), ("snapshot", "SNAPSHOT"), ("kind", "KIND"),
           ("taken_at_text", "TAKEN AT (UTC)"), ("size_text", "SIZE"),
           ("criu_version", "CRIU"), ("processes_text", "PROCS"), ("status", "STATUS"),
           ("source", "SOURCE"))


def _name_to_paste(source, lxd_dir=None):
    """What to give other commands for ``source``: ``lxd:NAME/SNAP`` for a checkpoint
    found by its manager (with ``--project`` and ``--lxd-dir`` when they were needed),
    the spec otherwise (a path, ``ARCHIVE:NAME``)."""
    if not source.manager or not source.instance:
        return source.spec
    name = f"{source.manager}:{source.instance}" + (f"/{source.snapshot}" if source.snapshot
                                                    else "")
    if source.project not in (None, "default"):
        name += f" --project {source.project}"
    if lxd_dir:
        name += f" --lxd-dir {lxd_dir}"
    return name


def _checkpoint_facts(source):
    """``(processes, first process's comm, why it is damaged or None)``: the
    graph's reading (a checkpoint that does not open, or error findings)."""
    try:
        checkpoint = open_graph(source)
        processes = checkpoint.processes
        errors = [finding for finding in checkpoint.findings if finding.severity == ERROR]
    except DecodeError as error:
        source.name_archive(error)
        return None, None, error_text(error)
    except OSError as error:
        return None, None, error_text(error)
    comm = processes[0].comm if processes else None
    damaged = None
    failure = dump_failure(source, checkpoint)
    if failure is not None:
        return len(processes), comm, f"{DUMP_FAILED}: {failure.sentence}"
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        damaged = f"{first.where}: {first.message}{more}"
    return len(processes), comm, damaged


def _facts_fields(processes, comm, damaged, source_name):
    text = "-" if processes is None else f"{processes}" + (f" ({comm})" if comm else "")
    status = "ok"
    if damaged:
        status = "DUMP FAILED" if damaged.startswith(DUMP_FAILED) else "DAMAGED"
    return {"processes": processes, "process": comm, "damaged": damaged,
            "processes_text": text, "status": status,
            "source": source_name}


def _row(source, paste=None):
    """One checkpoint as a row: machine values plus the texts the table shows; ``paste``
    is the name to give other commands (default: the source's spec)."""
    taken = source.taken_at
    instance = source.instance
    if instance and source.project not in (None, "default"):
        instance = f"{source.project}:{instance}"
    return {
        "instance": instance, "snapshot": source.snapshot, "kind": source.kind,
        "manager": source.manager, "project": source.project, "stateful": source.stateful,
        "taken_at": taken.isoformat() if taken else None,
        "taken_at_source": source.taken_at_source,
        "taken_at_text": None if taken is None else taken.strftime("%Y-%m-%d %H:%M:%S")
        + (" (mtime)" if (source.taken_at_source or "").endswith("mtime") else ""),
        "size": source.size, "size_text": human_bytes(source.size),
        "criu_version": source.criu_version, "kernel": source.kernel,
        "images_dir": source.images_label,
        "findings": [str(finding) for finding in source.findings],
        **_facts_fields(*_checkpoint_facts(source), paste or source.spec),
    }


def _archive_row(entry):
    """The row of a container found in an archive (opened, read, removed again)."""
    if entry.problem is None:
        try:
            with resolve_source(entry.spec) as source:
                return _row(source)
        except DecodeError as error:
            problem = error_text(error)
    else:
        problem = entry.problem
    return {"instance": entry.name, "snapshot": None, "kind": "archive", "manager": None,
            "project": None, "stateful": None, "taken_at": None, "taken_at_source": None,
            "taken_at_text": None, "size": None, "size_text": None, "criu_version": None,
            "kernel": None, "images_dir": str(entry.path), "findings": [],
            **_facts_fields(None, None, problem, entry.spec)}


def _write_damaged(rows, out):
    """Why each damaged checkpoint is, after the table."""
    for row in rows:
        if row["damaged"]:
            damaged = safe_text(row["damaged"])
            if not damaged.startswith(DUMP_FAILED):
                damaged = f"damaged: {damaged}"
            out.write(f"\n{safe_text(row['source'])}: {damaged}\n")
            if row["status"] == "DUMP FAILED":
                out.write(f"  see: crit-plus explain {safe_text(row['source'])}\n")


def _failed(entry):
    """A failed last dump (:class:`crit_plus.sources.discover.FailedDump`) with its
    decisive error and cause (``crit-plus explain``'s reading)."""
    data = entry.to_dict()
    try:
        run = explain_criu_log(entry.path)
    except OSError:
        run = None
    decisive = run.decisive if run is not None else None
    failure = decisive.failure if decisive is not None else None
    data.update(decisive=decisive.text if decisive else None,
                cause=failure.cause if failure and failure.role == "cause" else None)
    return data


def _write_failed(failed, out):
    """The instances whose last dump failed, after the table."""
    for entry in failed:
        run = entry["run"]
        name = f"{entry['manager']}:{entry['instance']}"
        out.write(f"\n{name}: the last {run['operation']} {run['outcome']} "
                  f"({entry['log']}, {run['ended']})\n")
        if entry["decisive"]:
            out.write(f"  decisive: {safe_text(entry['decisive'].strip())}\n")
        if entry["cause"]:
            out.write(f"  cause:    {safe_text(entry['cause'])}\n")
        out.write(f"  see:      crit-plus explain {name}\n")


@click.command("list")
@click.argument("wheres", nargs=-1, metavar="[lxd: | incus: | lxd:NAME | DIR]")
@click.option("--lxd-dir", type=click.Path(file_okay=False),
              help="The manager's data directory (default: /var/lib/lxd, "
                   "/var/snap/lxd/common/lxd, /var/lib/incus).")
@click.option("--project", help="Only this LXD/Incus project (default: all).")
@click.option("--depth", type=click.IntRange(0, 64), default=DEFAULT_DEPTH, show_default=True,
              help="How deep to search below DIR.")
@format_option(MANY_FORMATS)
def list_command(wheres, lxd_dir, project, depth, fmt):
    """List stateful checkpoints: LXD/Incus stateful snapshots and stateful
    stops, or every directory of CRIU images and every checkpoint archive
    (Podman/CRI-O/containerd container and pod archives, checkpoint OCI images)
    below DIR.  Each row shows its processes, whether it is damaged (it does not
    open, or its images have errors) and the name to give other commands.
    Several places give one table (--format jsonl: one JSON document per
    checkpoint); one that cannot be searched is said on stderr and makes the exit
    code 1.

    \b
    Examples:
      crit-plus list                      every LXD and Incus checkpoint here
      crit-plus list lxd:web              the checkpoints of instance web
      crit-plus list --lxd-dir /srv/lxd   a data directory elsewhere
      crit-plus list /srv/checkpoints     image directories and archives below a path
      crit-plus list lxd: /srv/checkpoints -f jsonl
    Set CRIT_PLUS_ROOT to look at an LXD tree copied from another machine.
    """
    code = 0
    listing = _Listing()
    for where in wheres or (None,):
        try:
            found = discover(where, lxd_dir=lxd_dir, project=project, max_depth=depth)
        except DecodeError as error:  # SourceError: this place, not the others
            if len(wheres) <= 1:
                raise
            click.echo(f"crit-plus: {safe_text(error_text(error))}", err=True)
            code = 1
            continue
        listing.add(found, where, lxd_dir)
    listing.write(fmt)
    if code:
        click.get_current_context().exit(code)


class _Listing:
    """The rows of one or more discoveries, each checkpoint once, and what was
    searched, skipped and found failed."""

    def __init__(self):
        self.rows, self.searched, self.problems, self.failed_dumps = [], [], [], []
        self.labels = []  # each row's checkpoint as JSON lines name it (opening.target_label)
        self._seen = set()

    def add(self, found, where, lxd_dir):
        """The rows of one place's :class:`~crit_plus.sources.discover.Discovery`."""
        walked = where is not None and os.path.isdir(where)
        for source in found.sources:
            if source.images_dir in self._seen:
                continue
            self._seen.add(source.images_dir)
            self.rows.append(_row(source, None if walked else _name_to_paste(source, lxd_dir)))
            self.labels.append(target_label(source) if source.manager
                               else str(source.images_dir))
        for entry in found.archives:
            self.rows.append(_archive_row(entry))
            self.labels.append(entry.spec)
        self.searched += found.searched
        self.problems += found.problems
        self.failed_dumps += found.failed_dumps

    def write(self, fmt):
        """A table, a JSON array, or JSON lines (each row in the envelope of
        crit_plus/commands/many.py)."""
        rows, out = self.rows, sys.stdout
        failed = [_failed(entry) for entry in self.failed_dumps]
        if fmt in ("json", "jsonl"):
            rows = [{k: v for k, v in row.items() if not k.endswith("_text")} for row in rows]
            for row in rows:
                row["last_dump_failed"] = next(
                    (f for f in failed if f["instance"] == row["instance"]
                     and f["manager"] == row["manager"]), None)
            if fmt == "json":
                write_json(rows, out)
            else:
                for index, (label, row) in enumerate(zip(self.labels, rows)):
                    outcome = many.Outcome(index, label, row, None, 0)
                    write_json(many.envelope("list", outcome, row), out, indent=None)
        elif rows:
            write_table(rows, COLUMNS, out)
            _write_damaged(rows, out)
        else:
            places = ", ".join(str(place) for place in self.searched)
            click.echo(f"no checkpoints found (searched {places})", err=True)
        if fmt == "table":
            _write_failed(failed, out)
        for problem in self.problems:
            click.echo(f"crit-plus: skipped {problem}", err=True)


def register(group):
    """Add ``list`` to the CLI group."""
    group.add_command(list_command)
