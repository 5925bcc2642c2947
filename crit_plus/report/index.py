"""The bundle's first page (``INDEX.md``) and its machine-readable twin (``report.json``).

``INDEX.md``, in this order, so the cause is on the first page:

1. the privacy statement (what the bundle never holds; a warning instead when
   ``--include-images`` put the images in);
2. what happened (``--note``), or how to add it;
3. the errors found in the logs, with their context, most telling first;
4. the checkpoint's facts, crit-plus's own commands and their results;
5. the programs run, the files gathered, and what was not gathered and why.
"""

from __future__ import annotations

import re

from ..describe import count_text, human_bytes
from ..render import safe_text
from .redact import MARK

#: Error contexts shown per log, and lines shown per context (the files hold all).
MAX_CONTEXTS, MAX_CONTEXT_LINES = 5, 14
#: Version of report.json's layout.
SCHEMA = 1

KIND_TITLES = {"lxc": "liblxc", "restore": "CRIU restore", "daemon": "daemon",
               "check": "criu check", "dump": "CRIU dump"}


def privacy_statement(report):
    """The paragraph at the top of the index: what the bundle holds and never holds."""
    redacted = MARK.decode()
    if report.include_images:
        images = [m for m in report.collection.members if m.path is not None]
        size = human_bytes(sum(m.size for m in images))
        return (
            f"> **Warning: this bundle INCLUDES THE CHECKPOINT IMAGES** (`images/`, "
            f"{len(images)} files, {size}, added by `--include-images`). They hold the memory of "
            "every process: passwords, keys, tokens and environment variables may be in them. "
            "Share it only with people you would trust with the container itself. Secrets in "
            "the configuration and logs (environment values, user and cloud-init data, "
            f"passwords, tokens, private keys) are still replaced by `{redacted}`.")
    return (
        "> **Privacy:** this bundle holds no memory contents, no environment variables and no "
        "checkpoint images. No page data was read into it, crit-plus's commands ran without "
        "their memory-reading options, and secrets in configurations and logs (environment "
        "values, user and cloud-init data, passwords, tokens, private keys, found by parsing "
        f"the YAML and by their shape in logs) are replaced by `{redacted}`. It does hold "
        "logs, the instance's configuration, kernel messages and host facts (listed below): "
        "read them before you share it. (`--include-images` would add the images.)")


def _fence(lines):
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _context_block(context):
    lines = context.lines
    shown = lines[:MAX_CONTEXT_LINES]
    text = [f"{number:>7} {'>' if error else ' '} {safe_text(line)}"
            for number, line, error in shown]
    if len(lines) > len(shown):
        more = sum(error for _n, _t, error in lines[len(shown):])
        text.append(f"{'':>7}   ... {count_text(len(lines) - len(shown), 'more line')} "
                    f"({count_text(more, 'error')})")
    fence = _fence(text)
    return [fence + "text", *text, fence, ""]


def host_criu(report):
    """``criu VERSION`` of the host's criu as ``criu --version`` told the report (the
    criu of ``host/criu-check.txt``), or ``criu`` alone when it gave no version."""
    for what, ran, _member in report.collection.runs:
        if what == "criu --version" and ran.stdout:
            found = re.search(rb"Version:\s*(\S+)", ran.stdout)
            if found:
                return f"criu {found.group(1).decode('ascii', 'replace')}"
    return "criu"


def _check_title(report, excerpt):
    """The title of the host's ``criu check`` errors: whose criu it is, and that it is
    not the checkpoint's (the dump's CRIU version from its dump.log, when known)."""
    made_by = ((report.source or {}).get("criu_version"))
    title = f"the host's {host_criu(report)}, `{excerpt.origin}`"
    return title + (f"; the checkpoint was made by CRIU {made_by}" if made_by else
                    "; not the checkpoint's own logs")


def is_host_check(excerpt) -> bool:
    """True for the errors of the host's ``criu check --all`` (``host/criu-check.txt``),
    which are not the checkpoint's."""
    return excerpt.kind == "check" and excerpt.member.startswith("host/")


def _error_dict(report, excerpt):
    data = excerpt.to_dict()
    data["host_criu"] = host_criu(report) if is_host_check(excerpt) else None
    return data


def _excerpt_section(excerpt, belongs=None, report=None):
    title = KIND_TITLES.get(excerpt.kind, excerpt.kind)
    if is_host_check(excerpt) and report is not None:
        title = _check_title(report, excerpt)
    if belongs:
        title += f"; {belongs}"
    if excerpt.same_as:
        return [f"- `{excerpt.member}` ({title}): the same file as `{excerpt.same_as}`.", ""]
    lines = [f"### `{excerpt.member}` — {count_text(excerpt.error_count, 'error line')} "
             f"({title})", ""]
    if excerpt.cut:
        lines += ["Only the end of this log was kept; line numbers count from there.", ""]
    if excerpt.decisive:
        lines += [f"**Decisive error** (as `crit-plus explain` reads it): "
                  f"`{safe_text(excerpt.decisive.strip())}`", ""]
        found = excerpt.diagnosis
        if found:
            lines += [f"- cause: {safe_text(found['cause'])}",
                      f"- fix: {safe_text(found['fix'])}"]
            lines += [f"- predicted by validate's `{found['check']}`"] if found["check"] else []
            lines += [f"- upstream: {found['issue']}"] if found["issue"] else []
            lines += [""]
    for context in excerpt.contexts[:MAX_CONTEXTS]:
        lines += _context_block(context)
    hidden = len(excerpt.contexts) - MAX_CONTEXTS
    if hidden > 0:
        lines += [f"... and {hidden} more places with errors: see the file.", ""]
    return lines


def _errors(report):
    excerpts = report.excerpts
    if not excerpts:
        return ["## Errors in the logs", "",
                "No error lines in the logs gathered (CRIU `Error (...)`, liblxc `ERROR`, "
                "daemon `level=error`).", ""]
    total = sum(e.error_count for e in excerpts if not e.same_as)
    logs = sum(1 for e in excerpts if not e.same_as)
    lines = [f"## Errors in the logs ({count_text(total, 'error line')} in "
             f"{count_text(logs, 'log')}, most telling first)",
             "", "Lines marked `>` are the errors; the others are their context.", ""]
    belongs = _belongs_by_file(report)
    sections = [_excerpt_section(e, belongs.get(e.origin), report) for e in excerpts
                if not e.same_as]
    copies = [_excerpt_section(e) for e in excerpts if e.same_as]
    for section in sections + copies:
        lines += section
    return lines


def _cell(value):
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return safe_text(value).replace("|", "\\|")


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines + [""]


_SOURCE_FIELDS = (("spec", "named as"), ("kind", "kind"), ("instance", "instance"),
                  ("snapshot", "snapshot"), ("project", "project"), ("stateful", "stateful"),
                  ("taken_at", "taken at"), ("taken_at_source", "time from"),
                  ("criu_version", "CRIU version (dump.log)"), ("kernel", "kernel (dump.log)"),
                  ("images_dir", "images"), ("images_bytes", "images size"))


def _checkpoint(report):
    if report.source is None:
        return ["## Checkpoint", "",
                "None: `--host-only` (the target side of a migration) gathers host facts only.",
                ""]
    facts = dict(report.source)
    facts["images_bytes"] = human_bytes(facts.get("images_bytes") or 0)
    lines = ["## Checkpoint", ""]
    lines += _table(("fact", "value"), [(label, facts.get(key)) for key, label in _SOURCE_FIELDS])
    for finding in facts.get("findings") or ():
        lines.append(f"- {finding['severity']}: {safe_text(finding['message'])} "
                     f"({safe_text(finding['code'])})")
    lines += [""] if facts.get("findings") else []
    return lines + _log_runs(facts.get("logs") or ())


#: What a log is to the checkpoint (crit_plus.sources.runs.ROLES), for the index.
ROLE_TITLES = {"dump": "this checkpoint's dump", "restore": "a restore of this checkpoint",
               "other": "another checkpoint's run", "unknown": "not known",
               "manager": "the manager's log"}


def _belongs(log):
    """Whose run a log (a row of ``source.logs``) is, in words."""
    text = ROLE_TITLES.get(log["role"], log["role"])
    restores = [line for line in log.get("lines") or () if line["operation"] == "restore"]
    if log.get("failed_restore"):
        text += ": a restore of this checkpoint failed"
    elif restores:
        text += ": its restores are not this checkpoint's"
    return text


def _belongs_by_file(report):
    """File path → whose run it is, for every log the attribution read."""
    logs = (report.source or {}).get("logs") or ()
    return {path: _belongs(log) for log in logs for path in log.get("files", ())}


def _log_runs(logs):
    """The logs and whose runs they are (the log attribution's reading)."""
    if not logs:
        return []
    rows = []
    for log in logs:
        run = log.get("run") or {}
        belongs = _belongs(log)
        rows.append((f"`{log['name']}`" + "".join(f", `{c}`" for c in log.get("copies", ())),
                     run.get("operation"), (run.get("run_id") or "")[:8] or None,
                     run.get("outcome"), run.get("ended"), belongs, log.get("reason")))
    return ["### Logs and their CRIU runs", ""] + _table(
        ("log (and copies)", "operation", "run", "outcome", "ended", "belongs to", "why"), rows)


def _self_runs(report):
    rows = [(f"crit-plus {run.command}", run.output_format,
             "ok" if run.status == "ok" else run.message, member)
            for run, member in report.collection.self_runs]
    return ["## crit-plus's own reading", ""] + _table(("command", "format", "result", "file"),
                                                       rows)


def _programs(report):
    rows = [(what, ran.command_line, ran.error or f"exit code {ran.exit_code}", member)
            for what, ran, member in report.collection.runs]
    if not rows:
        return ["## Programs run", "", "None.", ""]
    return ["## Programs run", ""] + _table(("what", "command", "result", "file"), rows)


def _gathered(report):
    rows = [(f"`{m.name}`", m.origin, human_bytes(m.size) + (" (end kept)" if m.cut else ""))
            for m in report.collection.members]
    return [f"## Gathered ({count_text(len(rows), 'file')})", ""] + \
        _table(("file", "from", "size"), rows)


def _skipped(report):
    rows = [(s.what, s.why) for s in report.collection.skipped]
    if not rows:
        return ["## Not gathered", "", "Nothing: everything asked for was there.", ""]
    return ["## Not gathered", ""] + _table(("what", "why"), rows)


def render_index(report):
    """The text of ``INDEX.md``."""
    title = report.spec or "this host"
    lines = [f"# crit-plus report: {safe_text(title)}", "", privacy_statement(report), "",
             f"Made by crit-plus {report.crit_plus_version} on "
             f"{report.created.strftime('%Y-%m-%d %H:%M:%S')} UTC"
             + (" with `--host-only` (the target side of a migration)." if report.host_only
                else "."), "",
             "## What happened", ""]
    if report.note:
        lines += [safe_text(line) if line else "" for line in report.note.splitlines()] + [""]
    else:
        lines += ["Not given: tell the maintainers the command you ran and the error it printed "
                  "(next time: `crit-plus report --note \"...\"`).", ""]
    for part in (_errors, _checkpoint, _self_runs, _programs, _gathered, _skipped):
        lines += part(report)
    return "\n".join(lines).rstrip("\n") + "\n"


def report_data(report):
    """``report.json``: everything the index says, as JSON-ready data (schema :data:`SCHEMA`)."""
    return {
        "schema": SCHEMA,
        "crit_plus": report.crit_plus_version,
        "created": report.created.isoformat(),
        "spec": report.spec,
        "top": report.top,
        "host_only": report.host_only,
        "include_images": report.include_images,
        "note": report.note,
        "source": report.source,
        "members": [{"name": m.name, "from": m.origin, "bytes": m.size, "cut": m.cut,
                     "image": m.path is not None} for m in report.collection.members],
        "skipped": [{"what": s.what, "why": s.why} for s in report.collection.skipped],
        "programs": [{"what": what, "argv": list(ran.argv), "exit_code": ran.exit_code,
                      "error": ran.error, "member": member}
                     for what, ran, member in report.collection.runs],
        "crit_plus_commands": [{"command": run.command, "format": run.output_format,
                                "argv": list(run.argv), "status": run.status,
                                "exit_code": run.exit_code, "message": run.message,
                                "member": member}
                               for run, member in report.collection.self_runs],
        "error_count": sum(e.error_count for e in report.excerpts if not e.same_as),
        "errors": [_error_dict(report, excerpt) for excerpt in report.excerpts],
    }


__all__ = ["MAX_CONTEXTS", "MAX_CONTEXT_LINES", "SCHEMA", "privacy_statement", "render_index",
           "report_data"]
