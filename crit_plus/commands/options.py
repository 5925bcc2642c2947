"""Options and helpers every command shares."""

from __future__ import annotations

import contextlib
import errno
import gc
import os

import click

FORMATS = ("table", "json")
#: The formats of a command that takes several checkpoints: ``jsonl`` is one JSON document
#: per checkpoint, streamed (crit_plus/commands/many.py).
MANY_FORMATS = (*FORMATS, "jsonl")


def format_option(choices=FORMATS, default="table"):
    """``--format/-f``: how to print the result."""
    return click.option(
        "--format", "-f", "fmt", type=click.Choice(choices), default=default, show_default=True,
        help="Output format: " + ", ".join(choices) + ".",
    )


def source_options(func=None, *, path_required=True, several=False, root=True):
    """``PATH`` plus ``--lxd-dir``, ``--project``, ``--root``: where the checkpoint is.

    PATH is an image directory, an LXD/Incus instance or snapshot directory, a
    name (``lxd:NAME``, ``lxd:NAME/SNAP``, ``incus:NAME/SNAP``), a Podman/CRI-O
    checkpoint archive, a pod checkpoint or checkpoint image (``ARCHIVE:NAME`` for
    one of its containers; see docs/sources.md).  Use as ``@source_options``, or
    ``@source_options(path_required=False)`` for a command that can do without, or
    ``@source_options(several=True)`` for one that takes several (``paths``, a tuple;
    a bare ``lxd:`` among them: crit_plus/commands/many.py).  ``root=False`` leaves
    ``--root`` out, for a command that reads nothing of the dumped file system (its
    function then takes no ``root``).
    """
    if func is None:
        return lambda command: source_options(command, path_required=path_required,
                                              several=several, root=root)
    if root:
        func = click.option("--root", type=click.Path(exists=True, file_okay=False),
                            help="Directory standing for / of the dumped processes "
                                 "(default: a snapshot's rootfs/).")(func)
    func = click.option("--project", help="LXD/Incus project of a NAME.")(func)
    func = click.option("--lxd-dir", type=click.Path(file_okay=False),
                        help="LXD/Incus directory instead of the standard ones.")(func)
    if several:
        return click.argument("paths", metavar="PATH...", nargs=-1, required=True)(func)
    return click.argument("path", metavar="PATH" if path_required else "[PATH]",
                          required=path_required)(func)


#: ``ctx.meta`` key (shared by every context of a run) of the running command's exit
#: code for an input that cannot be read (see :func:`exit_codes`).
BAD_INPUT_EXIT = "crit_plus.bad_input_exit_code"
#: ``ctx.meta`` key of the CLI's entry point (``crit_plus.cli.main``: argv → exit code),
#: set by the CLI group for its commands: ``report`` runs crit-plus's own commands through
#: it without importing the CLI (report/ and commands/ are below it).
CLI_MAIN = "crit_plus.cli_main"


def exit_codes(*, bad_input=None, usage=None):
    """Decorator (above ``@click.command``) for a command that answers a question with its
    exit code (diff, mem grep, validate), so that its 1 or 2 is an answer: ``bad_input``
    replaces 1 (an input that cannot be read or decoded) and ``usage`` replaces 2 (wrong
    usage) at crit_plus.cli's error boundary, which prints the one line."""
    def declare(command):
        if usage is not None:
            command.usage_exit_code = usage  # read from the UsageError's context
        if bad_input is not None:
            invoke = command.invoke

            def invoke_declared(ctx):
                ctx.meta[BAD_INPUT_EXIT] = bad_input
                return invoke(ctx)

            command.invoke = invoke_declared
        return command
    return declare


@contextlib.contextmanager
def gc_paused():
    """Run a block without Python's cyclic garbage collector.

    Reading a big checkpoint makes millions of small objects that live until
    the command ends; the collector would walk them all again and again (a
    quarter of ``summarize``'s time on 100 000 VMAs).  :func:`crit_plus.cli.main`
    runs every command so; a library call never switches the collector off
    behind its caller's back.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def open_checkpoint_source(path, lxd_dir=None, project=None, root=None, note_errors=False):
    """:func:`crit_plus.opening.open_source` for a command.  With ``note_errors`` (the
    explorers, which show no findings themselves) a checkpoint whose images have
    errors gets one note on stderr: its rows may be incomplete."""
    from ..opening import open_source

    with open_source(path, lxd_dir=lxd_dir, project=project, root=root) as opened:
        yield opened
        if note_errors:
            note_image_errors(opened)


def note_image_errors(opened, extra=()):
    """Say on stderr, in one note, how many errors the images of ``opened`` have (its
    checkpoint's findings and the ``extra`` findings a view met reading images the
    graph's findings leave out: mounts, network, cgroups, seccomp), naming the images
    when they are at most three; nothing when there are none."""
    from ..describe import count_text
    from ..findings import ERROR
    from ..render import safe_text

    errors = [finding for finding in opened.checkpoint.findings if finding.severity == ERROR]
    errors += [finding for finding in extra
               if finding.severity == ERROR and finding not in errors]
    if errors:
        names = list(dict.fromkeys(finding.where for finding in errors))
        which = f" ({safe_text(', '.join(names))})" if len(names) <= 3 else ""
        click.echo(f"crit-plus: note: {count_text(len(errors), 'error')} in the images of "
                   f"{opened.source.images_label}{which}, so this may be incomplete: "
                   "`crit-plus validate` says which", err=True)


def memory_damage(processes):
    """``(pids, first error)`` of the ``processes`` whose memory images have errors
    (:attr:`crit_plus.graph.Process.memory_damage`): the pids, in order, and the first
    such :class:`~crit_plus.findings.Finding`; ``((), None)`` when every one is whole."""
    damaged = [process for process in processes if process.memory_damage]
    if not damaged:
        return (), None
    return tuple(p.pid for p in damaged), damaged[0].memory_damage[0]


def pids_text(pids, most=3):
    """``pid 12528``, ``pids 12528, 12529``, ``pids 1, 2, 3 and 4 more``."""
    shown = ", ".join(str(pid) for pid in pids[:most])
    more = f" and {len(pids) - most} more" if len(pids) > most else ""
    return f"pid{'s' if len(pids) > 1 else ''} {shown}{more}"


def damage_error(checkpoint, finding, consequence):
    """The one-line :class:`~decoders.errors.DecodeError` of a memory image's ``finding``
    (its file, with the entry and offset its message holds) followed by ``consequence``:
    raised inside the source's context, an archive's member is named after the archive."""
    from decoders.errors import DecodeError

    return DecodeError(os.path.join(checkpoint.directory, finding.where),
                       f"{finding.message}: {consequence}")


@contextlib.contextmanager
def verdict_kept(code):
    """Output written inside ends with exit ``code`` even if the reader of stdout
    goes away: ``crit-plus diff A B | head`` still exits 1 when A and B differ
    (a broken pipe otherwise ends a command quietly with 0)."""
    try:
        yield
    except OSError as error:
        if not isinstance(error, BrokenPipeError) and error.errno != errno.EPIPE:
            raise
        from ..boundary import quiet_broken_pipe

        quiet_broken_pipe()
        click.get_current_context().exit(code)


def output_option(func):
    """``--output/-o FILE``: write the result (any ``--format``) to FILE, whole or not at
    all, instead of standard output (:func:`crit_plus.output.output_stream`)."""
    return click.option("--output", "-o", "output", type=click.Path(dir_okay=False),
                        metavar="FILE",
                        help="Write to FILE (whole or not at all) instead of standard "
                             "output; never into the checkpoint.")(func)

