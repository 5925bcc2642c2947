"""crit-plus's own commands, run in-process for a report, output captured.

The commands come from above, as :class:`Commands`: the click group and the CLI's entry
point, which the ``report`` command takes from the click context the CLI runs it in
(``ctx.find_root().command`` and ``ctx.meta[CLI_MAIN]``).  ``report/`` is below the CLI
in the layers (docs/architecture.md) and never imports it.  Each command is looked up in
the group and run through that entry point, exactly as ``crit-plus NAME ...`` on the
command line would: same options, same one-line errors, same exit codes.  Nothing here
knows how a command works inside; it only reads the command's declared parameters to pass
what the command accepts:

- the checkpoint as the first argument, and ``--lxd-dir``, ``--project``,
  ``--root`` when the command has them and the user gave them;
- ``--format json`` for the JSON run, ``--format html`` for a page (the table run passes
  no ``--format``);
- nothing else: options left at their defaults, so no command is asked to read
  memory contents (``summarize --env``, ``size --content``).  A command whose
  memory-reading option is *on* by default (:data:`MEMORY_OPTIONS`) is not run.

A command that is not registered (another part of crit-plus not installed), or any
command when no :class:`Commands` were given (a library caller of ``build_report``),
is recorded as not available; one that fails or crashes is recorded with its
exit code and stderr, and the report goes on.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import click

#: Options that make a command read memory contents into its output; the
#: report never sets them, and refuses a command that has one on by default.
MEMORY_OPTIONS = frozenset({"env", "environ", "argv", "cmdline", "content"})
#: Options passed through from the report when the user gave them.
SOURCE_OPTIONS = ("lxd_dir", "project", "root")

NOT_AVAILABLE = "not available in this crit-plus"
#: Why no command runs when the report was given no :class:`Commands`.
NO_COMMANDS = "crit-plus's commands were not given to the report"


@dataclass(frozen=True)
class Commands:
    """crit-plus's commands as the CLI hands them down: ``group``, the click group (a
    command looked up by name, its module loaded on first use), and ``main``, the CLI's
    entry point (argv → exit code, through its error boundary)."""

    group: click.Group
    main: Callable[[list[str]], int]

    def command(self, name: str) -> click.Command | None:
        """The click command ``name``, or None when it is not registered."""
        return self.group.get_command(click.Context(self.group), name)


@dataclass(frozen=True)
class SelfRun:
    """One run of a crit-plus command.

    ``status`` is ``ok`` (exit 0), ``nonzero-exit`` (another exit code: an error,
    or a verdict — ``validate`` exits 1 and 2 for what it found), ``crashed``
    (an exception escaped the CLI's error boundary), ``not-available`` (no such
    command) or ``refused`` (see :data:`MEMORY_OPTIONS`).  ``stdout`` and
    ``stderr`` are the captured bytes, in a temporary file each (None when the
    command did not run); ``message`` explains a status other than ``ok``.
    """

    command: str
    output_format: str
    argv: tuple
    status: str
    exit_code: int | None = None
    stdout: object = None
    stderr: object = None
    message: str | None = None


def command_args(command, spec, options, output_format):
    """The arguments to give ``command`` (after its name) for checkpoint ``spec``.

    ``options`` maps :data:`SOURCE_OPTIONS` names to values (None: not given);
    ``output_format`` is ``json``, ``html`` or ``table``; ``spec`` None gives no argument.
    """
    args = []
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if spec is not None and arguments:
        args.append(str(spec))
    declared = {p.name: p for p in command.params if isinstance(p, click.Option)}
    for name in SOURCE_OPTIONS:
        value = options.get(name)
        if value is not None and name in declared:
            args += [declared[name].opts[0], str(value)]
    if output_format != "table":
        args += ["--format", output_format]
    return args


def _has_format(command, output_format):
    return any(isinstance(p, click.Option) and "--format" in p.opts
               and output_format in getattr(p.type, "choices", (output_format,))
               for p in command.params)


def _memory_option_on(command):
    for param in command.params:
        # `is True`: click 8.2+ gives an unset default as a (truthy) sentinel
        if param.name in MEMORY_OPTIONS and isinstance(param, click.Option) \
                and param.default is True:
            return param.opts[0]
    return None


def run_command(commands, name, spec=None, options=None, output_format="table"):
    """Run crit-plus command ``name`` of ``commands`` (:class:`Commands`, or None: none
    given) on ``spec`` in-process → :class:`SelfRun`."""
    if commands is None:
        return SelfRun(name, output_format, (), "not-available", message=NO_COMMANDS)
    command = commands.command(name)
    if command is None:
        return SelfRun(name, output_format, (), "not-available", message=NOT_AVAILABLE)
    if output_format != "table" and not _has_format(command, output_format):
        return SelfRun(name, output_format, (), "not-available",
                       message=f"`crit-plus {name}` has no --format {output_format}")
    flag = _memory_option_on(command)
    if flag is not None:
        return SelfRun(name, output_format, (), "refused",
                       message=f"`crit-plus {name}` reads memory contents by default ({flag})")
    argv = (name, *command_args(command, spec, options or {}, output_format))
    stdout, stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    code, crash = _invoke(commands.main, argv, stdout, stderr)
    if crash is not None:
        stderr.write(crash.encode("utf-8", "backslashreplace"))
        first = crash.strip().splitlines()[-1]
        return SelfRun(name, output_format, argv, "crashed", None, stdout, stderr,
                       f"crashed: {first}")
    if code == 0:
        return SelfRun(name, output_format, argv, "ok", code, stdout, stderr)
    said = _last_line(stderr)
    return SelfRun(name, output_format, argv, "nonzero-exit", code, stdout, stderr,
                   f"exit code {code}" + (f": {said}" if said else ""))


#: Bytes read from the end of a command's stderr for the line that says why it failed.
LAST_LINE_BYTES = 4096


def _last_line(stream):
    """The last non-empty line of the binary file ``stream`` (its end only), or None."""
    size = stream.seek(0, 2)
    stream.seek(max(0, size - LAST_LINE_BYTES))
    lines = stream.read().decode("utf-8", "replace").strip().splitlines()
    stream.seek(0)
    return lines[-1].strip() if lines else None


def _invoke(main, argv, stdout, stderr):
    """``(exit code, traceback text or None)`` of ``main(ARGV)`` (``crit-plus ARGV``) with
    its output going to the binary files ``stdout`` and ``stderr``."""
    out = io.TextIOWrapper(stdout, encoding="utf-8", errors="backslashreplace",
                           write_through=True)
    err = io.TextIOWrapper(stderr, encoding="utf-8", errors="backslashreplace",
                           write_through=True)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
        return code, None
    except (Exception, SystemExit):  # noqa: BLE001 (a broken command must not stop a report)
        return None, traceback.format_exc()
    finally:
        for stream in (out, err):
            with contextlib.suppress(ValueError, OSError):
                stream.flush()
            stream.detach()


__all__ = ["MEMORY_OPTIONS", "NOT_AVAILABLE", "NO_COMMANDS", "SOURCE_OPTIONS", "Commands",
           "SelfRun", "command_args", "run_command"]
