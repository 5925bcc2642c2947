"""``report``: the bug report LXD and CRIU maintainers ask for, in one .tar.gz."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone

import sys

import click

from ..describe import count_text, human_bytes
from ..render import safe_text, stamped, write_json
from ..report import OutputRefused, ReportError, ReportRequest, build_report
from ..report.index import host_criu, is_host_check, report_data
from ..report.programs import CRIU_ENV
from ..report.selfrun import Commands
from .options import CLI_MAIN, format_option, source_options

#: First error lines printed after the table summary.
SHOWN_ERRORS = 3


def default_output(spec, now=None):
    """``crit-plus-report-NAME-TIME.tar.gz`` in the current directory."""
    now = now or datetime.now(timezone.utc)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", spec or "host").strip("-.") or "host"
    return f"crit-plus-report-{name[-60:]}-{now.strftime('%Y%m%dT%H%M%SZ')}.tar.gz"


def summary(report, output, size):
    """The ``--format json`` summary of a written bundle."""
    data = report_data(report)
    return stamped("report", {
        "output": os.path.abspath(output), "bytes": size, "top": report.top,
        "host_only": report.host_only,
        "include_images": report.include_images,
        "members": ["INDEX.md", "report.json"] + [member["name"] for member in data["members"]],
        "skipped": data["skipped"], "error_count": data["error_count"],
        "errors": data["errors"], "crit_plus_commands": data["crit_plus_commands"],
    })


def _write_text(report, output, size, out):
    members, skipped = report.collection.members, report.collection.skipped
    out.write(f"wrote {output} ({human_bytes(size)}: {count_text(len(members) + 2, 'file')}, "
              f"{count_text(len(skipped), 'thing')} not gathered; INDEX.md says what and why)\n")
    if report.include_images:
        out.write("warning: it includes the checkpoint images (process memory): share it "
                  "with care\n")
    originals = [e for e in report.excerpts if not e.same_as]
    if not originals:
        out.write("no error lines in the logs gathered\n")
        return
    total = sum(e.error_count for e in originals)
    out.write(f"{count_text(total, 'error line')} in {count_text(len(originals), 'log')}; "
              "the first:\n")
    shown = [(e, number, text) for e in originals for c in e.contexts
             for number, text in c.errors][:SHOWN_ERRORS]
    for excerpt, number, text in shown:
        whose = f" (the host's {host_criu(report)})" if is_host_check(excerpt) else ""
        out.write(f"  {excerpt.member}:{number}{whose}: {safe_text(text)}\n")


@click.command("report")
@source_options(path_required=False)
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="The .tar.gz to write (default: crit-plus-report-NAME-TIME.tar.gz here).")
@click.option("--host-only", is_flag=True,
              help="Host facts and `criu check` only, no checkpoint: for the target side of "
                   "a migration (PATH, if given, is lxd:NAME or incus:NAME).")
@click.option("--include-images", is_flag=True,
              help="Also put the checkpoint's images in the bundle. They hold process "
                   "memory (passwords, keys, environments): off by default.")
@click.option("--note", metavar="TEXT",
              help="What you ran and the error it printed; shown first in the index.")
@click.option("--criu", metavar="PATH", envvar=CRIU_ENV, show_envvar=True,
              help="The criu binary to ask (default: criu on $PATH, then /usr/sbin and "
                   "crit-plus's own build).")
@format_option()
def report_command(path, lxd_dir, project, root, output, host_only, include_images, note, criu,
                   fmt):
    """Bundle the bug report LXD and CRIU maintainers ask for, in one .tar.gz.

    For a stateful snapshot, stateful stop or live migration that failed: the
    logs' error lines (with context) on the first page of INDEX.md, `lxc info`, the
    instance's expanded config, dmesg, mountinfo (host and instance), uname,
    the daemon's log, the instance's log directory (CRIU's dump and restore
    logs), `criu --version` and `criu check --all`, the CPU flags, and
    crit-plus's own version, summarize, size and validate of the checkpoint.

    The bundle never holds memory contents, environment variables or the
    images themselves (unless --include-images); missing programs and files
    are listed in the index, never fatal.  For a migration, run it on both
    hosts: with the checkpoint on the source, with --host-only on the target.

    \b
    Examples:
      crit-plus report lxd:web -o web-report.tar.gz --note "lxc start web: ..."
      crit-plus report lxd:web/snap0 -o snap0.tar.gz
      crit-plus report --host-only lxd:web -o target.tar.gz     (migration target)
      crit-plus report /var/lib/criu/dump1 -o dump1.tar.gz --format json
    """
    output = output or default_output(path)
    request = ReportRequest(output=output, spec=path, lxd_dir=lxd_dir, project=project,
                            root=root, host_only=host_only, include_images=include_images,
                            note=note, criu=criu)
    ctx = click.get_current_context()
    # crit-plus's own commands, as the CLI runs this one: its group and its entry point
    main = ctx.meta.get(CLI_MAIN)
    own = Commands(ctx.find_root().command, main) if main is not None else None
    try:
        report, size = build_report(request, commands=own)
    except (ReportError, OutputRefused) as error:
        raise click.UsageError(str(error)) from None
    out = sys.stdout
    if fmt == "json":
        write_json(summary(report, output, size), out)
    else:
        _write_text(report, output, size, out)


def register(group):
    """Add ``report`` to the CLI group."""
    group.add_command(report_command)
