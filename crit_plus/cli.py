"""The ``crit-plus`` command line: one click group and the error boundary.

Exit codes (scripts can rely on them; README "Exit codes", docs/commands.md):

- 0: success;
- 1: an input could not be read or decoded (the message names file, entry
  and offset);
- 2: wrong usage (one line: ``crit-plus: error: ... (see `crit-plus CMD --help`)``;
  every refused ``-o``, one that would replace an input or land inside a checkpoint,
  included), or pycriu (CRIU's Python
  library) is missing;
- 3: ``mem read``/``mem dump``: the checkpoint holds no bytes at the address
  asked (not mapped, or a mapping whose pages are not in the images);
- 70: an internal error (a bug in crit-plus), said in one line too;
- 130: interrupted (Ctrl-C);
- 143: terminated (SIGTERM), 129: hangup (SIGHUP), 131: quit (SIGQUIT); like
  Ctrl-C, temporary files and directories are removed first (crit_plus/signals.py).

Commands that answer a question keep the Unix convention of their model, and
say "the command could not answer" with the code after their answers:
``diff`` (as diff(1): 0 identical, 1 different, 2 trouble), ``mem grep`` (as
grep(1): 0 a match, 1 no match, 2 trouble) and ``validate`` (0 clean, 1
warnings with ``--strict``, 2 errors, 3 trouble: the input cannot be read or is
not a checkpoint, or wrong usage).  Such a command declares its codes with
:func:`crit_plus.commands.options.exit_codes`; the boundary here applies them to
input and usage errors.

``--traceback`` shows the stack of an error instead of the one-line message.
Output piped into a command that stops reading (``| head``) ends quietly.
"""

from __future__ import annotations

import errno
import gc
import importlib
import os
import sys

import click

from crit_plus import __version__
from decoders.errors import DecodeError, PycriuNotFound

from .boundary import error_text, quiet_broken_pipe
from .commands.options import BAD_INPUT_EXIT, CLI_MAIN, gc_paused
from .output import OutputRefused
from .signals import Terminated, signals_unwind


EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2
EXIT_NO_DATA = 3  # mem read/dump: no bytes at that address in the checkpoint
EXIT_INTERNAL = 70  # EX_SOFTWARE in sysexits.h
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM (SIGHUP: 129, SIGQUIT: 131)


class _Escaped(Exception):
    """Carries an error past click, which would turn EOFError into "Aborted!" and a
    broken pipe into exit 1, to :func:`main`'s boundary, with the running command's exit
    code for an input that cannot be read (:func:`~crit_plus.commands.options.exit_codes`)."""

    def __init__(self, error, bad_input=EXIT_BAD_INPUT):
        super().__init__(error)
        self.error = error
        self.bad_input = bad_input


#: Command name → the module of crit_plus.commands that defines it.  Modules are
#: imported when their command runs (or ``--help`` lists them), not at start-up:
#: a command pays only for its own imports.
COMMAND_MODULES = {
    "decode": "decode", "show": "decode", "encode": "encode", "info": "info",
    "list": "list", "version": "version",
    "summarize": "summarize", "ps": "ps", "fds": "fds", "sk": "sk", "mems": "mems",
    "rss": "rss", "mem": "mem", "core": "core",
    "size": "size", "validate": "validate", "diff": "diff", "report": "report",
    "host": "host",
    "explain": "explain",
    "x": "x",
    "ns": "ns", "mounts": "mounts", "net": "net",
}


#: What ``crit-plus --help`` says of each command, so that listing them imports none
#: (each command's help as click shortens it at the widest listing, 85 characters;
#: tests/test_startup.py holds it to the commands' own help).  A command missing here
#: is imported for the listing.
COMMAND_SUMMARIES = {
    "core": "Write an ELF core file of process PID (of every process without PID), for gdb,...",
    "decode": "Convert an image to JSON, exactly as CRIU's `crit decode` does.",
    "diff": "Show what changed between two checkpoints OLD and NEW: processes started, "
            "exited...",
    "encode": "Convert crit's JSON form of an image back to the image (crit's `encode`).",
    "explain": "Say why CRIU runs failed, from their logs: for every run, its operation, CRIU...",
    "fds": "Show open files: every fd with its kind and what users recognise it by (a path,...",
    "host": "This machine's migration fingerprint: what a checkpoint restored here would find.",
    "info": "Show an image's kind, entry count and size without decoding its entries.",
    "list": "List stateful checkpoints: LXD/Incus stateful snapshots and stateful stops, or...",
    "mounts": "Show the mounts of each mount namespace the checkpoint holds "
              "(mountpoints-ID.img):...",
    "mem": "Read, search and dump the memory of checkpointed processes.",
    "mems": "Show each process's mappings as /proc/PID/maps does (address range, "
            "permissions,...",
    "ps": "Show the process tree: pid, parent, group, session, state, threads and the "
          "command...",
    "net": "Show each network namespace the checkpoint holds: its links (netdev-ID.img: "
           "index,...",
    "ns": "Show the namespaces of the checkpoint's processes: kind, CRIU's id, whose it "
          "is...",
    "report": "Bundle the bug report LXD and CRIU maintainers ask for, in one .tar.gz.",
    "rss": "Show resident pages: for each process, the pages its pagemap lists (PRESENT in...",
    "show": "Show an image as pretty JSON (crit's `show`: decode --pretty).",
    "size": "Show where a checkpoint's bytes go: on disk (apparent and allocated), by image...",
    "sk": "Show sockets: family, type, state, local and peer addresses, bytes queued, and...",
    "summarize": "Say what a checkpoint is, on one screen: where it came from (a CRIU "
                 "directory, an...",
    "validate": "Predict whether a checkpoint will restore, and why not: every finding says "
                "what...",
    "version": "Show crit-plus's version, the pycriu it loaded and where from; with a "
               "checkpoint...",
    "x": "Explore a checkpoint as CRIU's `crit x DIR WHAT` does, with crit's text.",
}


class _Boundary(click.Group):
    """The command group; errors of any command leave through :func:`main`.

    Commands are loaded on first use from :data:`COMMAND_MODULES`; ``crit-plus --help``
    lists them from :data:`COMMAND_SUMMARIES` without loading any.
    """

    def list_commands(self, ctx):
        return sorted(set(COMMAND_MODULES) | set(self.commands))

    def format_commands(self, ctx, formatter):
        """The "Commands" section of ``--help``, as click writes it, with the summary of
        a command not loaded yet taken from :data:`COMMAND_SUMMARIES`."""
        from click.utils import make_default_short_help

        names = [name for name in self.list_commands(ctx)
                 if name in COMMAND_SUMMARIES and name not in self.commands
                 or not getattr(self.get_command(ctx, name), "hidden", True)]
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, make_default_short_help(COMMAND_SUMMARIES[name], limit)
                 if name not in self.commands else self.commands[name].get_short_help_str(limit))
                for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx, cmd_name):
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            module = importlib.import_module(f".commands.{COMMAND_MODULES[cmd_name]}",
                                             __package__)
            module.register(self)
        return self.commands.get(cmd_name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (DecodeError, PycriuNotFound, OSError) as error:
            raise _Escaped(error, ctx.meta.get(BAD_INPUT_EXIT, EXIT_BAD_INPUT)) from error


@click.group(cls=_Boundary,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--traceback", is_flag=True, help="Show the Python stack on errors.")
@click.version_option(version=__version__, message="crit-plus %(version)s")
@click.pass_context
def cli(ctx, traceback):
    """Read CRIU checkpoint images: what is in them, how big they are, whether
    they will restore, and what changed between two of them.

    \b
    A checkpoint is an image directory, an LXD/Incus snapshot or instance
    (lxd:NAME/SNAP, incus:NAME, or its directory), a Podman/CRI-O archive or
    ARCHIVE:NAME (a container of a pod checkpoint or checkpoint image):
      crit-plus list                              the LXD/Incus checkpoints here
      crit-plus summarize lxd:web/snap0           what is in it, on one screen
      crit-plus summarize /var/lib/criu/dump1     the same, from a directory
      crit-plus validate lxd:web/snap0            will it restore? if not, why
      crit-plus diff lxd:web/snap0 lxd:web/snap1  what changed between two
      crit-plus explain lxd:web                   why the last dump failed

    \b
    Image commands (the ones CRIU's crit has, same JSON):
      crit-plus decode -i core-1.img --pretty   one image as JSON
      crit-plus show pstree.img                 the same, pretty, to the terminal
      crit-plus info pagemap-1.img              kind, entries, size
      crit-plus encode -i core.json -o core-1.img
    Every other command takes --format json for machine-readable output
    (decode and show write JSON already; encode writes an image).

    \b
    Exit codes: 0 success, 1 an input cannot be read, 2 wrong usage (one
    line: crit-plus: error: ... (see `crit-plus CMD --help`)), 3 mem read/dump:
    no bytes there, 70 a bug, 130 interrupted.  Commands that answer: diff 0
    identical, 1 different, 2 trouble; validate 0 clean, 1 warnings with
    --strict, 2 errors, 3 no verdict; mem grep 0 match, 1 none, 2 trouble;
    explain 0 runs succeeded, 1 a run failed, 2 no CRIU run found.
    """
    ctx.ensure_object(dict)
    ctx.obj["traceback"] = traceback
    ctx.meta[CLI_MAIN] = main  # what `report` runs crit-plus's own commands through




def _fail(message, code):
    """Say ``message`` in one line on stderr (control characters escaped: a newline in an
    argument or a file name cannot make it two); return ``code``."""
    from .render import safe_text  # imported only here: start-up stays short

    click.echo(f"crit-plus: {safe_text(message)}", err=True)
    return code


def main(argv=None):
    """Run one command (``argv``, default ``sys.argv``); return its exit code.

    The command runs without the cyclic garbage collector (:func:`gc_paused`):
    loading click, protobuf and CRIU's schema and reading a checkpoint make
    objects that live until the command ends, which the collector would walk
    again and again (a quarter of ``summarize``'s time on 100 000 VMAs).
    """
    show_traceback = "--traceback" in (argv if argv is not None else sys.argv[1:])
    bad_input = EXIT_BAD_INPUT
    try:
        try:
            # a command that leaves with ctx.exit(code) (diff, validate) comes back as code
            with gc_paused(), signals_unwind():
                code = cli.main(args=argv, prog_name="crit-plus", standalone_mode=False)
        except _Escaped as escaped:
            bad_input = escaped.bad_input
            raise escaped.error from None
        return code if isinstance(code, int) and not isinstance(code, bool) else EXIT_OK
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.exceptions.NoArgsIsHelpError as error:  # `crit-plus`, `crit-plus mem`: help
        error.show()
        return error.exit_code
    except click.UsageError as error:
        return _fail(usage_text(error), getattr(error.ctx and error.ctx.command,
                                                 "usage_exit_code", error.exit_code))
    except click.ClickException as error:
        return _fail(f"error: {error.format_message()}", error.exit_code)
    except click.exceptions.Abort:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except Terminated as terminated:
        return _fail(str(terminated), terminated.exit_code)
    except BrokenPipeError:
        quiet_broken_pipe()
        return EXIT_OK
    except (PycriuNotFound, OutputRefused) as error:
        if show_traceback:
            raise
        # 2, or a command's own "no answer" code (validate's 2 is a verdict: it says 3)
        code = EXIT_USAGE if bad_input == EXIT_BAD_INPUT else bad_input
        if isinstance(error, OutputRefused):  # a usage error: said in the same form
            return _fail(f"error: {error} (see `{error.command or 'crit-plus'} --help`)", code)
        return _fail(str(error), code)
    except DecodeError as error:
        if show_traceback:
            raise
        return _fail(error_text(error), bad_input)
    except OSError as error:
        if error.errno == errno.EPIPE:
            quiet_broken_pipe()
            return EXIT_OK
        if show_traceback:
            raise
        return _fail(error_text(error), bad_input)


def usage_text(error):
    """A click usage error in one line, with where to read the usage: ``error: Missing
    argument 'PATTERN' (see `crit-plus mem grep --help`)``."""
    ctx = error.ctx
    command = ctx.command_path if ctx is not None else "crit-plus"
    message = " ".join(error.format_message().split()).rstrip(".")
    return f"error: {message} (see `{command} --help`)"


def run():
    """``python -m crit_plus`` and the console script: exit with main()'s code.

    Any other exception is a bug: the process still says it in one line and
    exits 70 (``--traceback`` shows the stack).  :func:`main` itself lets such
    exceptions through, for callers in the same process (tests, ``report``).

    The cyclic garbage collector stays off to the end (:func:`main` pauses it only
    for the command): the graph of a checkpoint is made of cycles (each process
    points to its checkpoint), so nothing frees it before a collection, and the
    first one after the command would walk every object the command made (80 ms
    for a dump of 300 processes) just before :func:`leave` hands the memory back
    to the kernel.  Commands of several checkpoints still collect each one's
    graph after it (``gc.collect`` runs with the collector off:
    crit_plus/commands/many.py).
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        try:
            code = main()
        except Exception as error:  # noqa: BLE001 - the last boundary of the process
            if "--traceback" in sys.argv[1:]:
                raise
            code = _fail(f"internal error: {type(error).__name__}: {error} (a bug "
                         "in crit-plus: `crit-plus --traceback COMMAND ...` shows where)",
                         EXIT_INTERNAL)
        leave(code)  # os._exit: the process ends here, collector still off
    finally:  # only where leave() returns or raises (a caller in the same process)
        if collecting:
            gc.enable()


def leave(code):
    """End the process with ``code`` at once, output flushed.

    Python's own shutdown would then free, one by one, every object the command
    made and every module it loaded (protobuf's descriptors of CRIU's whole
    schema): 50 ms for a small checkpoint, a second for 100 000 VMAs, with
    nothing left to do.  Every file crit-plus writes is complete and closed
    before this point (``with`` blocks: crit_plus/output.py, the archive's
    temporary directory), so only standard output and error need a flush.
    """
    try:
        if sys.stdout is not None:  # None: the process started with standard output closed
            sys.stdout.flush()
    except ValueError:  # closed by the command
        pass
    except OSError as error:  # the reader went away (| head): what was kept is kept
        if not isinstance(error, BrokenPipeError) and error.errno != errno.EPIPE:
            code = code or EXIT_BAD_INPUT
            _fail(f"standard output: {error.strerror or error}", code)
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)
