"""``host``: this machine's migration fingerprint; ``host compare``: two fingerprints."""

from __future__ import annotations

import json
import shutil
import sys

import click

from ..analysis import fingerprint as fp
from ..analysis.host import criu_version, probe_host
from ..analysis.host_compare import compare
from ..output import output_stream
from ..render import (
    SEVERITY_COLORS,
    colored,
    safe_text,
    use_color,
    stamped,
    write_fields,
    write_json,
)
from .options import exit_codes, format_option, verdict_kept

#: Exit codes of ``host compare`` (as diff(1): 0 same enough, 1 warnings, 2 not compatible).
EXIT_COMPATIBLE = 0
EXIT_WARNINGS = 1
EXIT_INCOMPATIBLE = 2


def _listed(values, limit=None):
    if values is None:
        return "unknown"
    values = list(values)
    if limit is not None and len(values) > limit:
        return " ".join(values[:limit]) + f" ... ({len(values)} in all; -f json lists them)"
    return " ".join(values) or "none"


def _none_tested(features):
    return bool(features) and all(ok is None for ok in features.values())


def _features_text(features, note):
    if features is None:
        return "not tested (criu check needs root and a criu)"
    if _none_tested(features):
        return note
    missing = [name for name, ok in features.items() if ok is False]
    unknown = [name for name, ok in features.items() if ok is None]
    text = f"{sum(1 for ok in features.values() if ok)} of {len(features)} supported"
    if missing:
        text += f"; missing: {' '.join(missing)}"
    if unknown:
        text += f"; not tested: {' '.join(unknown)}"
    return text


def _xsave_text(cpu):
    text = "unknown" if cpu["xsave_mask"] is None else f"{cpu['xsave_mask']:#x} (by the flags)"
    if cpu.get("criu_xfeatures_mask") is not None:
        text += (f"; as CRIU sees them {cpu['criu_xfeatures_mask']:#x}, xsave area "
                 f"{cpu['criu_xsave_size']} bytes (criu cpuinfo dump)")
    return text


def write_fingerprint(data: dict, out) -> None:
    """A fingerprint dict as an aligned block for people."""
    cpu, cgroup, criu = data["cpu"], data["cgroup"], data["criu"]
    note = fp.features_note(data)
    controllers = (cgroup["v2_controllers"] if cgroup["version"] == 2
                   else cgroup["v1_controllers"])
    pairs = [
        ("taken at", data["taken_at"]),
        ("architecture", f"{data['machine']}, pages of {data['page_size']} bytes"),
        ("kernel", data["kernel"]),
        ("CPU", f"{cpu['vendor']} {cpu['model'] or ''}".strip()),
        ("XSAVE features", _xsave_text(cpu)),
        ("CPU flags", _listed(cpu["flags"], 12)),
        ("kernel features", _features_text(data["kernel_features"], note)),
        *([("criu check", f"failed: {criu['check_error']}")] if criu.get("check_error")
          and not _none_tested(data["kernel_features"]) else []),
        ("file systems", _listed(data["filesystems"])),
        ("fs modules", "none found (no /lib/modules/RELEASE/kernel/fs)"
         if data["fs_modules"] is None else _listed(data["fs_modules"])),
        ("cgroup", f"v{cgroup['version']}: {_listed(controllers)}"),
        ("LSM", data["lsm"]),
        ("criu", (f"{criu['version'] or 'version unknown'} ({criu['path'] or 'not found'}), "
                  f"plugins: {_listed(criu['plugins'])}")),
        ("LXD", data["lxd_version"] or "not installed"),
        ("Incus", data["incus_version"] or "not installed"),
        ("pid_max", data["pid_max"]),
    ]
    if data["needed_root"]:
        pairs.append(("needed root", "; ".join(data["needed_root"])))
    write_fields([(label, safe_text(value)) for label, value in pairs], out)


class _HostGroup(click.Group):
    """``host`` runs itself without a subcommand; ``host compare`` is its one subcommand."""


@click.group("host", cls=_HostGroup, invoke_without_command=True)
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False),
              help="Write the fingerprint (JSON) to FILE, for validate --target and host "
                   "compare on another machine.")
@click.option("--criu", "criu_program", metavar="PROGRAM", envvar="CRIT_PLUS_CRIU",
              help="The criu that will restore here (LXD's snap and Incus bring their own): "
                   "its version, plugins and `criu check --feature` answers are recorded; "
                   "default: criu on PATH, then /usr/sbin/criu. $CRIT_PLUS_CRIU sets it too.")
@format_option()
@click.pass_context
def host_command(ctx, output, criu_program, fmt):
    """This machine's migration fingerprint: what a checkpoint restored here would find.

    \b
    Architecture and page size, CPU (vendor, model, flags, XSAVE features), kernel
    release and every kernel feature CRIU tests (`criu check --feature NAME`, as
    root), the file systems it can mount or load, cgroup version and controllers,
    LSM, criu's version and plugins, LXD/Incus versions, pid_max. The schema is
    versioned (docs/commands/host.md).

    \b
    Migration (docs/commands/host.md):
      on the target:  crit-plus host -o b.json
      on the source:  crit-plus validate lxd:c1 --target b.json && lxc move c1 b:
      anywhere:       crit-plus host compare a.json b.json

    \b
    Exit codes: 0 written; 1 a file could not be read or written; 2 wrong usage.
    """
    if ctx.invoked_subcommand is not None:
        return
    criu = None
    if criu_program:
        path = shutil.which(criu_program)
        if path is None:
            raise click.BadParameter(f"{criu_program} is not an executable",
                                     param_hint="--criu")
        criu = criu_version(path)
    data = fp.fingerprint(probe_host("/", criu=criu))
    if output is not None:
        with output_stream(output) as stream:
            json.dump(data, stream, indent=2)
            stream.write("\n")
        return
    if fmt == "json":
        write_json(data, sys.stdout)
    else:
        write_fingerprint(data, sys.stdout)


@exit_codes(bad_input=EXIT_INCOMPATIBLE)  # 1 is "warnings": an unreadable file is no answer
@host_command.command("compare")
@click.argument("source_file", metavar="SOURCE.json", type=click.Path(dir_okay=False))
@click.argument("target_file", metavar="TARGET.json", type=click.Path(dir_okay=False))
@format_option()
@click.pass_context
def compare_command(ctx, source_file, target_file, fmt):
    """Can checkpoints made on SOURCE restore on TARGET at all? The differences that
    matter, each with the severity validate gives it.

    \b
    Exit codes (as diff(1)): 0 compatible; 1 warnings only; 2 incompatible (errors),
    or a file is not a fingerprint (one line on stderr). A file that cannot be read
    exits 1 with one line too.
    """
    try:
        source, target = fp.load(source_file), fp.load(target_file)
    except fp.FingerprintError as error:
        click.echo(f"crit-plus: {safe_text(error)}", err=True)
        ctx.exit(EXIT_INCOMPATIBLE)
        return
    differences = compare(source, target)
    severities = {d.severity for d in differences}
    code = EXIT_INCOMPATIBLE if "error" in severities else \
        EXIT_WARNINGS if "warning" in severities else EXIT_COMPATIBLE
    verdict = {EXIT_COMPATIBLE: "compatible", EXIT_WARNINGS: "warnings",
               EXIT_INCOMPATIBLE: "incompatible"}[code]
    out = sys.stdout
    with verdict_kept(code):  # `host compare ... | head` still exits with the verdict
        if fmt == "json":
            write_json(stamped("host-compare", {
                "source": source_file, "target": target_file, "verdict": verdict,
                "differences": [d.to_dict() for d in differences]}), out)
        else:
            color = use_color(out)
            out.write(f"{safe_text(source_file)} -> {safe_text(target_file)}: {verdict}\n")
            for difference in differences:
                severity = colored(f"{difference.severity:<8}",
                                   SEVERITY_COLORS.get(difference.severity), color)
                out.write(f"{severity}{difference.code}  {safe_text(difference.message)}\n")
        out.flush()
    if code != EXIT_COMPATIBLE:
        ctx.exit(code)


def register(group):
    """Add ``host`` (and ``host compare``) to the CLI group."""
    group.add_command(host_command)
