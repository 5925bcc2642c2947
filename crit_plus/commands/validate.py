"""``validate``: will this checkpoint restore, and if not, why — before anyone tries."""

from __future__ import annotations

import shutil
import sys
import textwrap

import click

from decoders.errors import DecodeError, MissingImageError

from ..analysis import fingerprint
from ..analysis.host import criu_version, probe_host
from ..analysis.validate import default_target_root, unreadable_report, validate
from ..describe import count_text
from ..opening import open_graph, resolve_source
from ..render import SEVERITY_COLORS, colored, safe_text, use_color, write_json, write_table
from .options import exit_codes, format_option, verdict_kept

#: Exit codes of ``validate``: its verdicts, then 3 when it cannot give one (see the help).
EXIT_CLEAN = 0
EXIT_WARNINGS = 1
EXIT_ERRORS = 2
EXIT_TROUBLE = 3

VERDICT_COLORS = {"fail": "red", "risky": "yellow", "ok": "green"}
REQUIREMENT_COLUMNS = (("option", "OPTION"), ("why", "WHY"), ("provided_by", "PASSED BY"))
WIDTH = 96
INDENT = " " * 8
#: Findings of one code shown in the text form (all of them are in the JSON).
GROUP_LINES = 5
PLURALS = {"error": "errors", "warning": "warnings", "info": "info"}


@exit_codes(bad_input=EXIT_TROUBLE, usage=EXIT_TROUBLE)  # 1 and 2 are verdicts
@click.command("validate")
@click.argument("path", metavar="PATH")
@click.option("--target-root", type=click.Path(exists=True, file_okay=False),
              help="Directory that will be / of the restored processes: the files they hold "
                   "or map must be there with the dump's size, mode and build-id.")
@click.option("--host", "use_host", is_flag=True,
              help="Also compare with this machine: free pids, CPU features, architecture, "
                   "kernel and its features (criu check, as root), file systems, installed "
                   "criu, LSM, plugins, cgroups. The target root then "
                   "defaults to / (or to the container's rootfs/ beside its state).")
@click.option("--target", "target_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Compare with another host instead: its fingerprint (`crit-plus host -o "
                   "FILE` run there). Checks what --host checks except free pids, cgroup "
                   "directories and host paths, which only the host itself can say.")
@click.option("--criu", "criu_program", metavar="PROGRAM", envvar="CRIT_PLUS_CRIU",
              help="With --host: the criu that will restore (LXD's snap and Incus bring their "
                   "own), checked against the dump's version; default: criu on PATH, then "
                   "/usr/sbin/criu. $CRIT_PLUS_CRIU sets it too.")
@click.option("--strict", is_flag=True, help="Exit 1 when there are warnings (and no errors).")
@click.option("--lxd-dir", type=click.Path(file_okay=False),
              help="LXD/Incus directory instead of the standard ones.")
@click.option("--project", help="LXD/Incus project of a NAME.")
@format_option()
def validate_command(path, target_root, use_host, target_file, criu_program, strict, lxd_dir,
                     project, fmt):
    """Predict whether a checkpoint will restore, and why not: every finding says
    what CRIU will print and what to do. The checkpoint is only read.

    \b
    Stages:
      integrity     the images alone: every image decodes, the process tree,
                    files, pagemaps and pages files, the parent/ chain
      requirements  options and pieces the restore needs (--tcp-established,
                    --shell-job, --ext-unix-sk, external ttys and mounts, the
                    LXD console, plugins)
      target        with --target-root and/or --host (or --target FILE): files,
                    pids, CPU, kernel and its features, file systems, criu,
                    LSM, cgroups of where it would be restored

    \b
    Exit codes (a verdict, or 3: no verdict):
      0  no errors (warnings allowed unless --strict)
      1  warnings and no errors, with --strict
      2  errors: the restore will fail (a checkpoint whose inventory.img or
         pstree.img does not decode is reported as such)
      3  no verdict: the input cannot be read or is not a checkpoint, a
         --target FILE that is not a host fingerprint, wrong usage, or no
         pycriu (one line on stderr, no report)

    \b
    Examples:
      crit-plus validate /var/lib/criu/dump1
      crit-plus validate lxd:web --host
      crit-plus validate lxd:web --host --criu /snap/lxd/current/sbin/criu
      crit-plus validate lxd:web --target b.json     (b.json: crit-plus host -o on B)
      crit-plus validate dump1 --target-root /srv/newroot --format json | jq .verdict
      crit-plus validate lxd:web/snap0 --strict || echo "do not restore"
    """
    criu = _chosen_criu(criu_program) if use_host else None
    fingerprint = _target_fingerprint(target_file, use_host)
    with resolve_source(path, lxd_dir=lxd_dir, project=project) as source:
        try:
            checkpoint = open_graph(source)
        except MissingImageError:
            raise
        except DecodeError as error:
            report = unreadable_report(source, error)
        else:
            host = probe_host("/", criu=criu) if use_host else fingerprint
            if target_root is None and use_host:
                target_root = default_target_root(checkpoint, source)
            report = validate(checkpoint, source=source, target_root=target_root, host=host)
        code = exit_code(report, strict)
        out = sys.stdout
        with verdict_kept(code):
            if fmt == "json":
                write_json(report.to_dict(), out)
            else:
                write_report(report, out, use_color(out))
            out.flush()
    if code != EXIT_CLEAN:
        click.get_current_context().exit(code)


def _target_fingerprint(target_file, use_host):
    """The :class:`HostFacts` of ``--target FILE`` (None without it).  A file that is not
    a fingerprint ends the command with one line and exit 3 (no verdict), as one that cannot
    be read does (a bad input, at the CLI's boundary)."""
    if target_file is None:
        return None
    if use_host:
        raise click.UsageError("--host and --target exclude each other (--host is this "
                               "machine, --target another one)")
    try:
        return fingerprint.load(target_file)
    except fingerprint.FingerprintError as error:
        click.echo(f"crit-plus: --target {safe_text(error)}", err=True)
        click.get_current_context().exit(EXIT_TROUBLE)


def _chosen_criu(program):
    """``(version, path)`` of the criu named by ``--criu``, or None to look for one."""
    if not program:
        return None
    path = shutil.which(program)
    if path is None:
        raise click.BadParameter(f"{program} is not an executable", param_hint="--criu")
    return criu_version(path)


def exit_code(report, strict=False):
    """0 clean, 1 warnings only with ``strict``, 2 errors."""
    if report.errors:
        return EXIT_ERRORS
    if strict and report.warnings:
        return EXIT_WARNINGS
    return EXIT_CLEAN


def write_report(report, out, color=False):
    """Write ``report`` for people: the verdict, the findings grouped by code (each group
    with what CRIU will say and what to do), the options the restore needs, what was not
    checked."""
    counts = ", ".join(count_text(report.count(severity), severity, plural)
                       for severity, plural in PLURALS.items())
    kind = f" ({report.source_kind})" if report.source_kind else ""
    verdict = colored(report.verdict.upper(), VERDICT_COLORS[report.verdict], color)
    out.write(f"{safe_text(report.checkpoint)}{kind}\nverdict: {verdict} ({counts})\n")
    groups = {}
    for finding in report.findings:
        groups.setdefault(finding.code, []).append(finding)
    for code, findings in groups.items():
        out.write("\n")
        shown = findings[:GROUP_LINES]
        # what CRIU will say and the fix, once for the group when they are the same for
        # all its findings, else under each (they name the finding's own file)
        each = len({(finding.criu_says, finding.fix) for finding in shown}) > 1
        for finding in shown:
            severity = colored(f"{finding.severity:<8}", SEVERITY_COLORS.get(finding.severity),
                               color)
            out.write(f"{severity}{code}  {safe_text(finding.where)}\n")
            out.write(_indented(finding.message))
            if each:
                _write_advice(finding, out)
        if len(findings) > GROUP_LINES:
            out.write(_indented(f"... and {len(findings) - GROUP_LINES} more {code} findings "
                                "(--format json lists them all)"))
        if not each:
            _write_advice(findings[0], out)
    if report.requirements:
        out.write("\nThe restore needs:\n")
        write_table([r.to_dict() for r in report.requirements], REQUIREMENT_COLUMNS, out)
    if report.skipped:
        out.write("\nNot checked:\n")
        for sentence in report.skipped:
            out.write(f"  - {safe_text(sentence)}\n")


def _write_advice(finding, out):
    if finding.criu_says:
        out.write(_indented(f"CRIU says: {finding.criu_says}"))
    if finding.fix:
        out.write(_indented(f"Fix: {finding.fix}"))


def _indented(text):
    return textwrap.fill(safe_text(text), WIDTH, initial_indent=INDENT,
                         subsequent_indent=INDENT + "  ", break_on_hyphens=False,
                         break_long_words=False) + "\n"


def register(group):
    """Add ``validate`` to the CLI group."""
    group.add_command(validate_command)
