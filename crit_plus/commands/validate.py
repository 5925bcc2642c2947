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
from ..findings import SEVERITIES, severity_count
from ..opening import open_graph, resolve_source
from ..render import SEVERITY_COLORS, colored, safe_text, use_color, write_json, write_table
from . import many
from .options import MANY_FORMATS, exit_codes, format_option, verdict_kept

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


@exit_codes(bad_input=EXIT_TROUBLE, usage=EXIT_TROUBLE)  # 1 and 2 are verdicts
@click.command("validate")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
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
@format_option(MANY_FORMATS)
def validate_command(paths, target_root, use_host, target_file, criu_program, strict, lxd_dir,
                     project, fmt):
    """Predict whether a checkpoint will restore, and why not: every finding says
    what CRIU will print and what to do. The checkpoint is only read.

    Several PATHs, or a bare lxd: or incus: (every checkpoint that manager
    keeps), give one row per checkpoint (--format jsonl: one JSON document
    each, streamed) and a tally; the exit code is the worst checkpoint's.

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
      crit-plus validate lxd: --host            every LXD checkpoint, before a kernel upgrade
      crit-plus validate lxd: incus: -f jsonl | jq -c '[.source, .result.verdict]'
    """
    criu = _chosen_criu(criu_program) if use_host else None
    fingerprint = _target_fingerprint(target_file, use_host)
    targets = many.targets_of(paths, lxd_dir, project)
    host = _Host(use_host, criu, fingerprint)
    examine = _examiner(host, target_root)
    if targets.several or fmt == "jsonl":
        code = _validate_each(targets, examine, strict, fmt, lxd_dir, project)
    else:
        code = _validate_one(paths[0], examine, strict, fmt, lxd_dir, project)
    if code != EXIT_CLEAN:
        click.get_current_context().exit(code)


class _Host:
    """The host to compare with: probed once, when the first checkpoint needs it."""

    def __init__(self, use_host, criu, fingerprint):
        self.use_host, self.criu, self.fingerprint = use_host, criu, fingerprint
        self._facts = None

    def facts(self):
        """This machine's :class:`HostFacts` (``--host``), the fingerprint, or None."""
        if not self.use_host:
            return self.fingerprint
        if self._facts is None:
            self._facts = probe_host("/", criu=self.criu)
        return self._facts


def _examiner(host, target_root):
    """``examine(source)`` → the :class:`Report` of one checkpoint; one whose inventory or
    pstree does not decode is reported as such, one that is no checkpoint raises."""
    def examine(source):
        try:
            checkpoint = open_graph(source)
        except MissingImageError:
            raise
        except DecodeError as error:
            return unreadable_report(source, error)
        root = target_root
        if root is None and host.use_host:
            root = default_target_root(checkpoint, source)
        return validate(checkpoint, source=source, target_root=root, host=host.facts())
    return examine


def _validate_one(path, examine, strict, fmt, lxd_dir, project):
    """One checkpoint, as validate always said it: the report, or its JSON document."""
    with resolve_source(path, lxd_dir=lxd_dir, project=project) as source:
        report = examine(source)
        code = exit_code(report, strict)
        out = sys.stdout
        with verdict_kept(code):
            if fmt == "json":
                write_json(report.to_dict(), out)
            else:
                write_report(report, out, use_color(out))
            out.flush()
    return code


def _validate_each(targets, examine, strict, fmt, lxd_dir, project):
    """Several checkpoints: a row (or JSON line) each as it is validated, then the tally;
    the exit code is the worst of their codes (3, no verdict, above 2)."""
    out = sys.stdout
    writer = many.Writer("validate", fmt, keep_going=True, out=out)
    tally = dict.fromkeys(TALLY, 0)
    table = _Table(targets, use_color(out))

    def report(outcome):
        tally[_verdict(outcome)] += 1
        return writer.add(outcome, lambda: outcome.result.to_dict(),
                          lambda stream: table.row(outcome, stream))

    many.for_each(targets, examine, report, code_of=lambda result: exit_code(result, strict),
                  bad_input=EXIT_TROUBLE, lxd_dir=lxd_dir, project=project)
    writer.finish()
    if not targets.items:
        many.nothing_found(targets)
    elif fmt == "table" and not writer.gone:
        out.write(_tally_text(tally, writer.worst) + "\n")
        out.flush()
    return writer.worst


#: The verdicts of several checkpoints, in the tally's order.
TALLY = ("ok", "risky", "fail", "no verdict")


def _verdict(outcome):
    return "no verdict" if outcome.result is None else outcome.result.verdict


def _tally_text(tally, code):
    counts = ", ".join(f"{tally[verdict]} {verdict}" for verdict in TALLY)
    return f"\n{sum(tally.values())} checkpoints: {counts} (exit {code})"


class _Table:
    """The compact table of several checkpoints, one row written as each is validated
    (widths fixed from the labels, known before the first is opened)."""

    def __init__(self, targets, color):
        self.color = color
        self.width = min(max([len(safe_text(t.label)) for t in targets.items if t] + [10]), 60)

    def row(self, outcome, out):
        """Write the header before the first row, then ``outcome``'s row."""
        if outcome.index == 0:
            out.write(f"{'VERDICT':<10}  {'ERR':>4}  {'WARN':>4}  {'CHECKPOINT':<{self.width}}"
                      "  FIRST PROBLEM\n")
        verdict = _verdict(outcome)
        shown = colored(f"{verdict.upper():<10}", VERDICT_COLORS.get(verdict, "red"),
                        self.color)
        report = outcome.result
        errors = "-" if report is None else str(report.count("error"))
        warnings = "-" if report is None else str(report.count("warning"))
        out.write(f"{shown}  {errors:>4}  {warnings:>4}  "
                  f"{safe_text(outcome.label):<{self.width}}  {_first_problem(outcome)}\n")


def _first_problem(outcome):
    """Why a checkpoint is not clean, in a few words: the first error (else warning)
    finding's code and place, or why it could not be read."""
    if outcome.result is None:
        return safe_text(outcome.error)
    for severity in ("error", "warning"):
        for finding in outcome.result.findings:
            if finding.severity == severity:
                return safe_text(f"{finding.code}: {finding.where}")
    return ""


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
    counts = ", ".join(severity_count(report.count(severity), severity)
                       for severity in SEVERITIES)
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
