"""``list``: the stateful checkpoints LXD and Incus keep, or the image directories below a path."""

from __future__ import annotations

import sys

import click

from decoders.errors import DecodeError

from ..analysis.explain import explain_criu_log
from ..boundary import error_text
from ..describe import human_bytes
from ..render import safe_text, write_json, write_table
from ..sources.discover import DEFAULT_DEPTH, Discovery, discover
from . import many
from .options import MANY_FORMATS, format_option

COLUMNS = (("instance", "INSTANCE"), ("snapshot", "SNAPSHOT"), ("kind", "KIND"),
           ("taken_at_text", "TAKEN AT (UTC)"), ("size_text", "SIZE"),
           ("criu_version", "CRIU"), ("images_dir", "PATH"))


def _row(source):
    """One checkpoint as a row: machine values plus the two texts the table shows."""
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
        "images_dir": str(source.images_dir),
        "findings": [str(finding) for finding in source.findings],
    }


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
    stops, or every directory of CRIU images below DIR.  Several places give
    one table (--format jsonl: one JSON document per checkpoint); one that
    cannot be searched is said on stderr and makes the exit code 1.

    \b
    Examples:
      crit-plus list                      every LXD and Incus checkpoint here
      crit-plus list lxd:web              the checkpoints of instance web
      crit-plus list --lxd-dir /srv/lxd   a data directory elsewhere
      crit-plus list /srv/checkpoints     image directories below a path
      crit-plus list lxd: /srv/checkpoints -f jsonl
    Set CRIT_PLUS_ROOT to look at an LXD tree copied from another machine.
    """
    if len(wheres) <= 1:
        found = discover(wheres[0] if wheres else None, lxd_dir=lxd_dir, project=project,
                         max_depth=depth)
        _list(found, fmt)
        return
    code = 0
    parts = []
    for where in wheres:
        try:
            parts.append(discover(where, lxd_dir=lxd_dir, project=project, max_depth=depth))
        except DecodeError as error:  # SourceError: this place, not the others
            click.echo(f"crit-plus: {safe_text(error_text(error))}", err=True)
            code = 1
    _list(_joined(parts), fmt)
    if code:
        click.get_current_context().exit(code)


def _joined(parts):
    """One :class:`~crit_plus.sources.Discovery` of several, each checkpoint once."""
    seen, sources = set(), []
    for part in parts:
        for source in part.sources:
            if source.images_dir not in seen:
                seen.add(source.images_dir)
                sources.append(source)
    return Discovery(tuple(sources), tuple(p for part in parts for p in part.searched),
                     tuple(p for part in parts for p in part.problems),
                     tuple(f for part in parts for f in part.failed_dumps))


def _list(found, fmt):
    """The checkpoints of one discovery: a table, a JSON array, or JSON lines."""
    rows = [_row(source) for source in found.sources]
    out = sys.stdout
    failed = [_failed(entry) for entry in found.failed_dumps]
    if fmt in ("json", "jsonl"):
        rows = [{k: v for k, v in row.items() if not k.endswith("_text")} for row in rows]
        for row in rows:
            row["last_dump_failed"] = next((f for f in failed if f["instance"] == row["instance"]
                                            and f["manager"] == row["manager"]), None)
        if fmt == "json":
            write_json(rows, out)
        else:
            for index, (source, row) in enumerate(zip(found.sources, rows)):
                outcome = many.Outcome(index, _label(source), row, None, 0)
                write_json(many.envelope("list", outcome, row), out, indent=None)
    elif rows:
        write_table(rows, COLUMNS, out)
    else:
        places = ", ".join(str(place) for place in found.searched)
        click.echo(f"no checkpoints found (searched {places})", err=True)
    if fmt == "table":
        _write_failed(failed, out)
    for problem in found.problems:
        click.echo(f"crit-plus: skipped {problem}", err=True)


def _label(source):
    from ..opening import target_label

    return target_label(source) if source.manager else str(source.images_dir)


def register(group):
    """Add ``list`` to the CLI group."""
    group.add_command(list_command)
