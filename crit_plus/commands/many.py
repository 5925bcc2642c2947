"""What the commands that take several checkpoints share (``summarize``, ``validate``,
``size``, ``list``): one checkpoint at a time, each released once it is reported; one JSON
line per checkpoint (``--format jsonl``), tagged with its source; a heading per checkpoint in
text; progress on a terminal; the exit code of the worst.

The JSON-lines envelope (docs/commands.md, "Several checkpoints"), schema
``crit-plus/envelope/1`` (docs/json.md; ``schema_version``, :data:`JSONL_SCHEMA_VERSION`, is
its deprecated alias)::

    {"schema": "crit-plus/envelope/1", "schema_version": 1, "command": "validate",
     "index": 0, "source": "lxd:web/snap0", "exit_code": 0, "error": null,
     "result": {... the command's --format json document ...}}
"""

from __future__ import annotations

import errno
import gc
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from ..boundary import error_text, quiet_broken_pipe
from ..render import safe_text, stamped, write_json

if TYPE_CHECKING:  # the graph and sources are imported when a command runs, not for --help
    from ..opening import Targets

#: Version of the ``--format jsonl`` envelope; the ``result`` inside keeps its command's own.
JSONL_SCHEMA_VERSION = 1
#: A checkpoint that made crit-plus fail (a bug): the code the whole process would exit with.
EXIT_INTERNAL = 70


@dataclass
class Outcome:
    """One checkpoint's turn: its :class:`~crit_plus.opening.Target` label and position, the
    command's result (None when it could not be read) or why not, and the code the command
    would exit with for this checkpoint alone."""

    index: int
    label: str
    result: object | None
    error: str | None
    code: int


def targets_of(specs: Iterable[str], lxd_dir: str | None, project: str | None) -> Targets:
    """:func:`crit_plus.opening.expand_targets` of a command's PATH arguments."""
    from ..opening import expand_targets

    return expand_targets(list(specs), lxd_dir=lxd_dir, project=project)


def for_each(targets: Targets, examine: Callable, report: Callable[[Outcome], bool], *,
             code_of: Callable[[object], int], bad_input: int, lxd_dir: str | None = None,
             project: str | None = None, label: str = "checkpoints") -> None:
    """``examine(source)`` for each target in order, each :class:`Outcome` given to
    ``report``, which returns False to stop.

    A checkpoint that cannot be resolved or read (a one-line input error) is an outcome
    with ``error`` and code ``bad_input``; so is a bug met on one (code 70, unless
    ``--traceback`` asks for the stack): the others are still examined.  Each result is
    released and its cycles collected once reported, so memory stays that of one
    checkpoint (the command runs with the collector paused: ``gc_paused``).
    """
    from ..progress import progress

    shown = _progress_wanted() and len(targets.items) > 1
    with progress(len(targets.items), f"{len(targets.items)} {label}",
                  enabled=shown) as bar:
        for index in range(len(targets.items)):
            going = report(_examined(index, targets.take(index), examine, code_of, bad_input,
                                     lxd_dir, project))
            gc.collect(0)  # the graph's cycles: the young generation holds only this one
            bar.update(1)
            if not going:
                break


def _examined(index, target, examine, code_of, bad_input, lxd_dir, project):
    from decoders.errors import DecodeError

    from ..opening import resolve_target

    try:
        with resolve_target(target, lxd_dir=lxd_dir, project=project) as source:
            result = examine(source)
        return Outcome(index, target.label, result, None, code_of(result))
    except (DecodeError, OSError) as error:
        return Outcome(index, target.label, None, error_text(error), bad_input)
    except (click.exceptions.Exit, ImportError):  # no pycriu: no checkpoint can be read
        raise
    except Exception as error:  # noqa: BLE001 - one checkpoint's bug, said, not fatal
        if _traceback_asked():
            raise
        return Outcome(index, target.label, None, f"internal error: {type(error).__name__}: "
                       f"{error} (a bug in crit-plus)", EXIT_INTERNAL)


def _progress_wanted():
    """Progress when stderr is a terminal and stdout is not: output that goes to the
    terminal shows its own progress, one checkpoint at a time."""
    err, out = sys.stderr, sys.stdout
    return (hasattr(err, "isatty") and err.isatty()
            and not (hasattr(out, "isatty") and out.isatty()))


def _traceback_asked():
    context = click.get_current_context(silent=True)
    root = context.find_root() if context is not None else None
    return bool(root is not None and isinstance(root.obj, dict) and root.obj.get("traceback"))


def envelope(command: str, outcome: Outcome, document: object | None) -> dict:
    """One checkpoint's JSON-lines document (the schema in the module's docstring)."""
    return stamped("envelope", {"schema_version": JSONL_SCHEMA_VERSION, "command": command,
                                "index": outcome.index, "source": outcome.label,
                                "exit_code": outcome.code, "error": outcome.error,
                                "result": document})


class Writer:
    """Streams each checkpoint's output as it is ready: a JSON line, a text section, or
    (``--format json`` with several) one JSON array at the end.

    When the reader of stdout goes away (``| head``) the rest is not written; with
    ``keep_going`` (validate, whose exit code is a verdict on them all) the remaining
    checkpoints are still examined, else the command stops.
    """

    def __init__(self, command: str, fmt: str, *, keep_going: bool = False, out=None):
        self.command, self.fmt, self.keep_going = command, fmt, keep_going
        self.out = out or sys.stdout
        self.gone = False
        self.documents: list[dict] = []
        self.worst = 0

    def add(self, outcome: Outcome, document: Callable[[], object],
            text: Callable[[object], None] | None = None) -> bool:
        """Report ``outcome``: ``document()`` is its JSON form (called only for JSON
        output), ``text(out)`` its text form.  Returns False when the command should stop
        (the reader went away and the command does not keep going)."""
        self.worst = max(self.worst, outcome.code)
        if self.gone:
            return self.keep_going
        try:
            if self.fmt == "jsonl":
                write_json(envelope(self.command, outcome, _document(outcome, document)),
                           self.out, indent=None)
            elif self.fmt == "json":
                self.documents.append(envelope(self.command, outcome,
                                               _document(outcome, document)))
            elif text is not None:
                text(self.out)
            self.out.flush()
        except OSError as error:
            if not isinstance(error, BrokenPipeError) and error.errno != errno.EPIPE:
                raise
            quiet_broken_pipe()
            self.gone = True
            return self.keep_going
        return True

    def finish(self) -> None:
        """Write what waits for the end (the ``--format json`` array)."""
        if self.fmt == "json" and not self.gone:
            try:
                write_json(self.documents, self.out)
                self.out.flush()
            except BrokenPipeError:
                quiet_broken_pipe()


def _document(outcome, document):
    return None if outcome.result is None else document()


def run_sections(command: str, paths: Iterable[str], examine: Callable,
                 write: Callable[[object, object], None], document: Callable[[object], object],
                 *, single: Callable[[str], None], fmt: str, lxd_dir: str | None,
                 project: str | None, one_only: str | None = None) -> None:
    """A command that shows each checkpoint whole (``summarize``, ``size``): one PATH is
    ``single(path)``, the command as it always was; several (or ``--format jsonl``) a
    section each (``write(result, out)``) or a JSON line each (``document(result)``) of
    ``examine(source)``, then exit 1 if one could not be read.  ``one_only`` names an
    option given that only one checkpoint takes (``-o``, ``--format html``)."""
    paths = list(paths)
    targets = targets_of(paths, lxd_dir, project)
    if not (targets.several or fmt == "jsonl"):
        single(paths[0])
        return
    if one_only is not None:
        raise click.UsageError(f"{one_only} takes one checkpoint (several give a section or "
                               "a JSON line each on standard output)")
    writer = Writer(command, fmt)

    def report(outcome):
        def text(out):
            heading(outcome, out)
            if outcome.result is not None:
                write(outcome.result, out)
        return writer.add(outcome, lambda: document(outcome.result), text)

    for_each(targets, examine, report, code_of=lambda _result: 0, bad_input=1,
             lxd_dir=lxd_dir, project=project)
    writer.finish()
    if not targets.items:
        nothing_found(targets)
    if writer.worst:
        click.get_current_context().exit(writer.worst)


def one_only(fmt: str, output: str | None) -> str | None:
    """What was given that only one checkpoint takes: ``--format html`` (a page), ``-o``
    (one file); None when neither was."""
    from ..output import to_stdout

    if fmt == "html":
        return "--format html"
    return None if to_stdout(output) else "-o"


def heading(outcome: Outcome, out) -> None:
    """The line that opens a checkpoint's section in text output (blank line between)."""
    if outcome.index:
        out.write("\n")
    out.write(f"==> {safe_text(outcome.label)} <==\n")
    if outcome.error is not None:
        out.write(f"crit-plus: {safe_text(outcome.error)}\n")


def nothing_found(targets: Targets) -> None:
    """Say on stderr that manager-wide names found no checkpoint, and where they looked."""
    places = ", ".join(str(place) for place in targets.searched) or "nowhere"
    click.echo(f"crit-plus: no checkpoints found (searched {safe_text(places)})", err=True)
