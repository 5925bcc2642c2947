"""Why did a CRIU run fail? ``crit-plus explain``'s reading of CRIU's and liblxc's logs.

For every CRIU run a log records (:func:`crit_plus.sources.runs.read_run`: run id,
operation, outcome, when) this adds the decisive error: CRIU's errors chain (a
failed step logs its own error, then ``Dump files (pid: N) failed``, then
``Dumping FAILED.``), so the first error line the failure catalog
(:data:`crit_plus.analysis.validate_catalog.FAILURES`) knows as a *cause* is the
decisive one; without one, the first error that is neither a consequence nor known
noise; the lines before it (up to :data:`BEFORE`) are shown with it, as they often
say what CRIU was doing.  Known noise (``rlimit: Can't setup RLIMIT_NOFILE``) is
listed as harmless.  liblxc's ``lxc.log`` gives its runs
(:func:`crit_plus.sources.runs.manager_runs`): the criu command, its exit, the lxc
errors that follow.  Logs only, no images: explain works after a failed dump.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from ..render import schema_id
from ..sources.logs import read_error_contexts, read_lines, read_log
from ..sources.runs import manager_runs
from .validate_catalog import CAUSE, CONSEQUENCE, HARMLESS_ROLE, Failure, match_failure

#: The version of ``explain --format json``'s document (docs/commands/explain.md).
SCHEMA = schema_id("explain")
#: Lines shown before the decisive error.
BEFORE = 6
#: Outcomes that make ``explain`` exit 1.
FAILED_OUTCOMES = ("failed", "cut short")


@dataclass(frozen=True)
class LogLine:
    """An error line of a log: its number (from 1; None for liblxc's runs), text, the
    catalog entry it matches (None: none), and the lines before it."""

    number: int | None
    text: str
    failure: Failure | None
    before: tuple = ()

    @property
    def role(self) -> str | None:
        """The catalog's role of the line (``cause``, ``consequence``, ``harmless``)."""
        return self.failure.role if self.failure else None

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"line": self.number, "text": self.text,
                "before": [{"line": number, "text": text} for number, text in self.before],
                "catalog": self.failure.to_dict() if self.failure else None}


@dataclass(frozen=True)
class RunExplanation:
    """One run and why it ended as it did.

    ``kind`` is ``criu`` (a CRIU log) or ``lxc`` (a run liblxc's log tells of);
    ``path`` the log as the user named it, ``copies`` other files of the same run;
    ``when`` and ``when_from`` when it ended (``name``, ``mtime``) or, for liblxc,
    began (``lxc.log``); ``options`` the criu command line when a log records it
    (liblxc at trace level; CRIU's own log does not); ``decisive`` the error that made
    it fail; ``errors`` every error line read (harmless ones included).
    """

    path: str
    kind: str
    operation: str | None
    outcome: str | None
    run_id: str | None = None
    dump_run_id: str | None = None
    criu_version: str | None = None
    kernel: str | None = None
    when: datetime | None = None
    when_from: str | None = None
    options: str | None = None
    exit: int | None = None
    decisive: LogLine | None = None
    errors: tuple = ()
    error_count: int = 0
    copies: tuple = ()

    @property
    def failed(self) -> bool:
        """True when the run failed or was cut short."""
        return self.outcome in FAILED_OUTCOMES

    @property
    def harmless(self) -> tuple:
        """The error lines that are known noise."""
        return tuple(line for line in self.errors if line.role == HARMLESS_ROLE)

    @property
    def consequences(self) -> tuple:
        """The error lines after the decisive one that the catalog calls consequences."""
        return tuple(line for line in self.errors
                     if line is not self.decisive and line.role == CONSEQUENCE)

    def to_dict(self) -> dict:
        """A JSON-ready dict (docs/commands/explain.md)."""
        return {"path": self.path, "copies": list(self.copies), "kind": self.kind,
                "operation": self.operation, "outcome": self.outcome, "run_id": self.run_id,
                "dump_run_id": self.dump_run_id, "criu_version": self.criu_version,
                "kernel": self.kernel, "when": self.when.isoformat() if self.when else None,
                "when_from": self.when_from, "options": self.options, "exit": self.exit,
                "decisive": self.decisive.to_dict() if self.decisive else None,
                "harmless": [line.to_dict() for line in self.harmless],
                "errors": [line.to_dict() for line in self.errors],
                "error_count": self.error_count}


def decisive_error(lines) -> LogLine | None:
    """The line that made a run fail, of its error ``lines`` (:class:`LogLine`, in log
    order): the first the catalog calls a cause, else the first that is neither a
    consequence nor harmless, else the first consequence."""
    for role in (CAUSE, None, CONSEQUENCE):
        found = next((line for line in lines if line.role == role), None)
        if found is not None:
            return found
    return None


def diagnose(lines, operation: str | None = None,
             fields: dict | None = None) -> LogLine | None:
    """The decisive error of one run's error ``lines`` (texts, in log order, as
    :attr:`crit_plus.sources.logs.LogFile.errors` keeps them) of a run of ``operation``
    (None: unknown), catalog fixes filled with ``fields``
    (:func:`~crit_plus.analysis.validate_catalog.match_failure`): what summarize,
    validate and report put first."""
    return decisive_error(tuple(LogLine(None, text, match_failure(text, operation, fields))
                                for text in lines))


def decisive_first(lines, operation: str | None = None) -> tuple:
    """``lines`` (error line texts of one run) with :func:`diagnose`'s line first."""
    lines = tuple(lines)
    found = diagnose(lines, operation)
    if found is None:
        return lines
    index = lines.index(found.text)
    return (lines[index],) + lines[:index] + lines[index + 1:]


def _error_lines(contexts, operation, fields, before=BEFORE) -> tuple:
    """:class:`LogLine` of every error line of ``contexts`` (ErrorContext) of a run of
    ``operation``, each with the lines before it in its context."""
    lines = []
    for context in contexts:
        shown = context.lines
        for index, (number, text, error) in enumerate(shown):
            if error:
                previous = tuple((n, t) for n, t, _e in shown[max(0, index - before):index])
                lines.append(LogLine(number, text, match_failure(text, operation, fields),
                                     previous))
    return tuple(lines)


def explain_criu_log(path, label: str | None = None,
                     fields: dict | None = None) -> RunExplanation:
    """The :class:`RunExplanation` of the CRIU log at ``path``; ``fields`` (``manager``,
    ``instance``, ``key``: :attr:`crit_plus.sources.resolve.LogSet.fields`) fill the
    catalog's fixes.  Raises OSError."""
    log = read_log(path, "criu")
    contexts, count = read_error_contexts(path, "criu", before=BEFORE)
    run = log.run
    errors = _error_lines(contexts, run.operation if run else None, fields)
    outcome = run.outcome if run else None
    decisive = decisive_error(errors) if outcome in FAILED_OUTCOMES else None
    return RunExplanation(
        label or str(path), "criu", run.operation if run else None, outcome,
        run_id=log.header.run_id, dump_run_id=run.dump_run_id if run else None,
        criu_version=log.header.criu_version, kernel=log.header.kernel,
        when=run.ended if run else None, when_from=run.ended_from if run else None,
        decisive=decisive, errors=errors, error_count=count)


def explain_lxc_log(path, label: str | None = None, fields: dict | None = None) -> tuple:
    """The :class:`RunExplanation` of every CRIU run liblxc's log at ``path`` tells of
    (``fields`` as :func:`explain_criu_log`'s).  Raises OSError."""
    found = []
    for run in manager_runs(read_lines(path)):
        errors = tuple(LogLine(None, f"{module}: {text}",
                               match_failure(text, run.operation, fields))
                       for _time, module, text in run.errors)
        outcome = "failed" if run.failed else "no failure logged"
        found.append(RunExplanation(
            label or str(path), "lxc", run.operation, outcome, when=run.started,
            when_from="lxc.log", options=run.command, exit=run.exit,
            decisive=decisive_error(errors) if run.failed else None, errors=errors,
            error_count=len(errors)))
    return tuple(found)


def _merge_copies(runs) -> list:
    """Runs of CRIU logs with the same run id and operation are one run: the first file
    is shown, the others are its ``copies`` (LXD copies ``dump.log`` into its log
    directory)."""
    merged: list = []
    index: dict = {}
    for run in runs:
        key = (run.run_id, run.operation) if run.kind == "criu" and run.run_id else None
        if key is not None and key in index:
            first = merged[index[key]]
            merged[index[key]] = _with_copy(first, run.path)
            continue
        if key is not None:
            index[key] = len(merged)
        merged.append(run)
    return merged


def _with_copy(run: RunExplanation, path: str) -> RunExplanation:
    return replace(run, copies=run.copies + (path,))


@dataclass(frozen=True)
class FileResult:
    """What one file gave: its runs, or why it gave none (``problem``)."""

    path: str
    kind: str | None
    runs: tuple
    problem: str | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"path": self.path, "kind": self.kind, "runs": len(self.runs),
                "problem": self.problem}


def explain_files(logs, fields: dict | None = None) -> tuple:
    """``(runs, files)`` for ``logs`` (``(path, kind, label)``, as
    :class:`crit_plus.sources.resolve.LogSet` gives them): every run found, copies
    merged, and a :class:`FileResult` per file.  ``fields`` fill the catalog's fixes
    (:attr:`crit_plus.sources.resolve.LogSet.fields`)."""
    runs: list[RunExplanation] = []
    files: list[FileResult] = []
    for path, kind, label in logs:
        try:
            if kind == "criu":
                found: tuple = (explain_criu_log(path, label, fields),)
            elif kind == "lxc":
                found = explain_lxc_log(path, label, fields)
            else:
                files.append(FileResult(label, None, (), "not a CRIU or liblxc log"))
                continue
        except OSError as error:
            files.append(FileResult(label, kind, (), f"cannot read it: "
                                    f"{error.strerror or error}"))
            continue
        problem = None if found else "liblxc's log tells of no CRIU run"
        files.append(FileResult(label, kind, found, problem))
        runs.extend(found)
    return tuple(_merge_copies(runs)), tuple(files)


def exit_status(runs) -> int:
    """0 when every run succeeded (or logged no failure), 1 when one failed or was cut
    short, 2 when there is no run."""
    if not runs:
        return 2
    return 1 if any(run.failed for run in runs) else 0


def issue_url(issue: str | None) -> str | None:
    """``owner/repo#N`` → its GitHub address."""
    if not issue or "#" not in issue:
        return issue
    repo, _sep, number = issue.partition("#")
    return f"https://github.com/{repo}/issues/{number}"


__all__ = [
    "BEFORE",
    "SCHEMA",
    "FileResult",
    "LogLine",
    "RunExplanation",
    "decisive_error",
    "decisive_first",
    "diagnose",
    "exit_status",
    "explain_criu_log",
    "explain_files",
    "explain_lxc_log",
    "issue_url",
]

