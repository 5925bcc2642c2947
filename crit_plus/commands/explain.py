"""``explain``: why a CRIU run failed, from CRIU's and liblxc's logs (no images needed)."""

from __future__ import annotations

import sys

import click

from ..analysis.explain import exit_status, explain_files, issue_url
from ..opening import resolve_log_set
from ..render import stamped, write_json
from ..sources.errors import SourceError
from .options import exit_codes, format_option, verdict_kept


def _when(run) -> str:
    if run.when is None:
        return "time unknown"
    source = {"name": "from LXD's file name", "mtime": "file time",
              "lxc.log": "began, lxc.log"}.get(run.when_from or "", run.when_from)
    return f"{run.when:%Y-%m-%d %H:%M:%S} UTC ({source})"


def _catalog_lines(failure) -> list:
    lines = [f"  cause:    {failure.cause}", f"  fix:      {failure.fix}"]
    if failure.check:
        lines.append(f"  predicted by: validate's `{failure.check}` check")
    if failure.issue:
        lines.append(f"  upstream: {issue_url(failure.issue)}")
    return lines


def _run_text(run) -> list:
    """The text of one run."""
    head = [run.operation or "unknown operation"]
    if run.kind == "lxc":
        head.append("(liblxc's log)")
    if run.criu_version:
        head.append(f"CRIU {run.criu_version}")
    if run.kernel:
        head.append(f"kernel {run.kernel}")
    lines = [f"{run.path}", f"  run:      {' · '.join(head)}"]
    if run.run_id:
        lines.append(f"  run id:   {run.run_id}" + (f" (restores the dump of run "
                                                     f"{run.dump_run_id})"
                                                     if run.dump_run_id else ""))
    lines.append(f"  when:     {_when(run)}")
    if run.options:
        lines.append(f"  command:  {run.options}")
    if run.exit is not None:
        lines.append(f"  exit:     {run.exit}")
    lines.append(f"  outcome:  {run.outcome}")
    for copy in run.copies:
        lines.append(f"  copy:     {copy}")
    decisive = run.decisive
    if decisive is not None:
        where = f" (line {decisive.number})" if decisive.number else ""
        lines.append(f"  decisive error{where}:")
        lines += [f"      {text}" for _number, text in decisive.before]
        lines.append(f"    > {decisive.text}")
        if decisive.failure is not None and decisive.failure.role != "consequence":
            lines += _catalog_lines(decisive.failure)
        else:
            lines.append("  cause:    not in crit-plus's catalog: read the lines above")
        then = run.consequences
        if then:
            lines.append(f"  then:     {len(then)} consequence line(s), last: {then[-1].text}")
    elif run.failed:
        lines.append("  decisive error: none logged (the log ends without CRIU's last line:"
                     " CRIU was killed, or the log was cut)")
    other = [line for line in run.errors if line.role is None and line is not decisive]
    if other and not run.failed:
        lines.append(f"  errors:   {len(other)} error line(s) in a run that did not fail")
    for line in run.harmless:
        where = f"line {line.number}: " if line.number else ""
        lines.append(f"  harmless: {where}{line.failure.message} (known noise: "
                     f"{line.failure.code})")
    return lines


@exit_codes(bad_input=2)  # 1 is "a run failed": an unreadable input is no answer, as usage
@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--lxd-dir", type=click.Path(file_okay=False),
              help="LXD/Incus directory instead of the standard ones.")
@click.option("--project", help="LXD/Incus project of a NAME.")
@format_option()
def explain(paths, lxd_dir, project, fmt):
    """Say why CRIU runs failed, from their logs: for every run, its operation,
    CRIU version, kernel, when, outcome (succeeded, failed, cut short), the
    decisive error with the lines before it, and its cause, fix and upstream
    issue from crit-plus's failure catalog. Known noise is marked harmless.

    PATH: a CRIU log (-o FILE); a directory (a state or images directory after a
    failed dump, LXD's or Incus's log directory of an instance, a `criu -o`
    directory); a Podman/CRI-O checkpoint archive; lxd:NAME[/SNAP],
    incus:NAME[/SNAP], lxc:NAME. No images needed.

    Exit status: 0 every run succeeded, 1 a run failed or was cut short
    (diagnosed), 2 no CRIU run could be read.

    \b
    Examples:
      crit-plus explain /tmp/ckpt/dump.log
      crit-plus explain /var/log/lxd/web
      crit-plus explain lxd:web
      crit-plus explain --format json ckpt.tar.gz
    """
    all_runs, files, problems = [], [], []
    for spec in paths:
        try:
            with resolve_log_set(spec, lxd_dir=lxd_dir, project=project) as found:
                runs, results = explain_files(found.logs, found.fields)
        except SourceError as error:
            problems.append({"spec": spec, "problem": error.reason})
            continue
        all_runs.extend(runs)
        files.extend(results)
        if not found.logs:
            problems.append({"spec": spec, "problem": "no CRIU or liblxc log there"})
    status = exit_status(all_runs)
    out = sys.stdout
    with verdict_kept(status):  # `explain ... | head` still exits with the verdict
        if fmt == "json":
            write_json(stamped("explain", {"exit": status,
                                            "runs": [run.to_dict() for run in all_runs],
                                            "files": [result.to_dict() for result in files],
                                            "problems": problems}), out)
        elif all_runs:
            out.write("\n\n".join("\n".join(_run_text(run)) for run in all_runs) + "\n")
            for result in files:
                if result.problem:
                    click.echo(f"crit-plus: {result.path}: {result.problem}", err=True)
            for problem in problems:
                click.echo(f"crit-plus: {problem['spec']}: {problem['problem']}", err=True)
        else:
            reasons = [(p["spec"], p["problem"]) for p in problems] + \
                [(r.path, r.problem) for r in files if r.problem]
            where = ", ".join(dict.fromkeys(str(spec) for spec in paths))
            why = "; ".join(f"{name}: {reason}" if len(reasons) > 1 else reason
                            for name, reason in reasons[:3])
            click.echo(f"crit-plus: {where}: no CRIU run found" + (f" ({why})" if why else ""),
                       err=True)
        out.flush()
    sys.exit(status)


def register(group):
    """Add ``explain`` to the CLI group."""
    group.add_command(explain)
