"""The ``crit-plus`` command line: one click group and the error boundary.

Exit codes (scripts can rely on them):

- 0: success;
- 1: an input could not be read or decoded (the message names file, entry
  and offset);
- 2: wrong usage (an ``-o`` that would replace an input included), or pycriu
  (CRIU's Python library) is missing;
- 70: an internal error (a bug in crit-plus), said in one line too;
- 130: interrupted (Ctrl-C);
- 143: terminated (SIGTERM); like Ctrl-C, temporary files and directories
  are removed first (crit_plus/signals.py).

``--traceback`` shows the stack of an error instead of the one-line message.
Output piped into a command that stops reading (``| head``) ends quietly.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

import click

from crit_plus import __version__
from decoders.errors import DecodeError
from decoders.schema import PycriuNotFound

from .boundary import error_text, quiet_broken_pipe
from .commands.options import gc_paused
from .output import OutputRefused
from .signals import Terminated, sigterm_unwinds


EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE in sysexits.h
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM


class _Escaped(Exception):
    """Carries an error past click, which would turn EOFError into "Aborted!" and a
    broken pipe into exit 1, to :func:`main`'s boundary."""

    def __init__(self, error):
        super().__init__(error)
        self.error = error


#: Command name → the module of crit_plus.commands that defines it.  Modules are
#: imported when their command runs (or ``--help`` lists them), not at start-up:
#: a command pays only for its own imports.
COMMAND_MODULES = {
    "decode": "decode", "show": "decode", "encode": "encode", "info": "info",
    "list": "list", "version": "version",
    "summarize": "summarize", "ps": "ps", "fds": "fds", "sk": "sk", "mems": "mems",
    "rss": "rss", "mem": "mem",
    "size": "size", "validate": "validate", "diff": "diff", "report": "report",
}


class _Boundary(click.Group):
    """The command group; errors of any command leave through :func:`main`.

    Commands are loaded on first use from :data:`COMMAND_MODULES`.
    """

    def list_commands(self, ctx):
        return sorted(set(COMMAND_MODULES) | set(self.commands))

    def get_command(self, ctx, cmd_name):
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            module = importlib.import_module(f".commands.{COMMAND_MODULES[cmd_name]}",
                                             __package__)
            module.register(self)
        return self.commands.get(cmd_name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (DecodeError, PycriuNotFound, BrokenPipeError) as error:
            raise _Escaped(error) from error
        except OSError as error:
            if error.errno == errno.EPIPE:
                raise _Escaped(error) from error
            raise


@click.group(cls=_Boundary,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--traceback", is_flag=True, help="Show the Python stack on errors.")
@click.version_option(version=__version__, message="crit-plus %(version)s")
@click.pass_context
def cli(ctx, traceback):
    """Read CRIU checkpoint images: what is in them, how big they are, whether
    they will restore, and what changed between two of them.

    \b
    Image commands (the ones CRIU's crit has, same JSON):
      crit-plus decode -i core-1.img --pretty   one image as JSON
      crit-plus show pstree.img                 the same, pretty, to the terminal
      crit-plus info pagemap-1.img              kind, entries, size
      crit-plus encode -i core.json -o core-1.img
    Every other command takes --format json for machine-readable output
    (decode and show write JSON already; encode writes an image).
    """
    ctx.ensure_object(dict)
    ctx.obj["traceback"] = traceback




def _fail(message, code):
    click.echo(f"crit-plus: {message}", err=True)
    return code


def main(argv=None):
    """Run one command (``argv``, default ``sys.argv``); return its exit code.

    The command runs without the cyclic garbage collector (:func:`gc_paused`):
    loading click, protobuf and CRIU's schema and reading a checkpoint make
    objects that live until the command ends, which the collector would walk
    again and again (a quarter of ``summarize``'s time on 100 000 VMAs).
    """
    show_traceback = "--traceback" in (argv if argv is not None else sys.argv[1:])
    try:
        try:
            # a command that leaves with ctx.exit(code) (diff, validate) comes back as code
            with gc_paused(), sigterm_unwinds():
                code = cli.main(args=argv, prog_name="crit-plus", standalone_mode=False)
        except _Escaped as escaped:
            raise escaped.error from None
        return code if isinstance(code, int) and not isinstance(code, bool) else EXIT_OK
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Abort:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except Terminated:
        return _fail("terminated", EXIT_TERMINATED)
    except BrokenPipeError:
        quiet_broken_pipe()
        return EXIT_OK
    except (PycriuNotFound, OutputRefused) as error:
        if show_traceback:
            raise
        return _fail(str(error), EXIT_USAGE)
    except DecodeError as error:
        if show_traceback:
            raise
        return _fail(error_text(error), EXIT_BAD_INPUT)
    except OSError as error:
        if error.errno == errno.EPIPE:
            quiet_broken_pipe()
            return EXIT_OK
        if show_traceback:
            raise
        return _fail(error_text(error), EXIT_BAD_INPUT)


def run():
    """``python -m crit_plus`` and the console script: exit with main()'s code.

    Any other exception is a bug: the process still says it in one line and
    exits 70 (``--traceback`` shows the stack).  :func:`main` itself lets such
    exceptions through, for callers in the same process (tests, ``report``).
    """
    try:
        code = main()
    except Exception as error:  # noqa: BLE001 - the last boundary of the process
        if "--traceback" in sys.argv[1:]:
            raise
        from .render import safe_text  # imported only here: start-up stays short

        code = _fail(f"internal error: {type(error).__name__}: {safe_text(error)} (a bug "
                     "in crit-plus: `crit-plus --traceback COMMAND ...` shows where)",
                     EXIT_INTERNAL)
    leave(code)


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
