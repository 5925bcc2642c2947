"""Every command of the ``crit-plus`` click group, and how the fuzz suite runs it.

``COMMANDS`` maps a command name to a :class:`Use`: the argument forms to run
(templates with the placeholders below), what kind of damaged input it takes
and the exit codes it may end with.  ``tests/test_fuzz_commands.py`` fails
when a registered command has no entry here, so a new command cannot escape
the fuzz suite (and an entry without a command fails too): add its entry when
you register it.

The outcome every run must have (docs/robustness.md): no exception escapes
``crit_plus.cli.main``; the exit code is one of the command's ``results``
(output; JSON output parses) or ``errors`` (stderr is one line starting
``crit-plus:`` that names the damaged file, and the offset for a decoding
problem; or ``crit-plus: error: ... (see `crit-plus CMD --help`)`` for a usage
error); nothing says
``Traceback``.  :func:`invoke` runs a command in-process under a memory and time
limit; :func:`check` applies the rules.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import sys
import traceback
from dataclasses import dataclass, field

# -- placeholders of the argument templates --------------------------------------------------
CHECKPOINT = "{checkpoint}"  # the (damaged) checkpoint directory
ORIGINAL = "{original}"      # an undamaged copy of the same checkpoint (diff's other side)
IMAGE = "{image}"            # the damaged image, or what was put in its place
JSON_IN = "{json}"           # a (damaged) JSON document for encode
OUTPUT = "{output}"          # a scratch output file outside the checkpoint
PID = "{pid}"                # the first pid of the undamaged checkpoint

#: Exit codes of crit-plus (crit_plus/cli.py; docs/robustness.md).  70 (an
#: internal error) is never allowed: it is a bug the fuzz suite has found.
EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_NO_DATA = 0, 1, 2, 3


@dataclass(frozen=True)
class Use:
    """How the fuzz suite runs one command.

    ``forms``: argument templates; each damaged input is run with one of them
    in turn (all of them on the undamaged checkpoint).  ``on``: ``checkpoint``
    (a damaged directory), ``image`` (a damaged image file), ``json`` (a
    damaged JSON document).  ``results``: exit codes that come with output
    (``diff`` and ``validate`` say "different" / "will not restore" with a code
    of their own); ``errors``: exit codes of a one-line error.  ``archives``: a
    checkpoint command that takes every source kind (a Podman/CRI-O archive
    too; ``list`` searches below a directory instead).  ``gathers``: the
    command collects what it can (``report``): a damaged image is not an error
    for it, and its output holds host facts and times, so two runs differ.
    ``judges``: a damaged checkpoint is a verdict with a report (``validate``'s 2,
    "the restore will fail"), not an error line.
    """

    forms: tuple
    on: str
    results: tuple = (EXIT_OK,)
    errors: tuple = (EXIT_BAD_INPUT,)
    archives: bool = True
    gathers: bool = False
    judges: bool = False

    @property
    def codes(self):
        """Every exit code allowed."""
        return self.results + self.errors


def _checkpoint_command(name, *extra, formats=("json",), archives=True):
    forms = [(name, CHECKPOINT) + extra]
    forms += [(name, CHECKPOINT) + extra + ("--format", fmt) for fmt in formats]
    return Use(tuple(forms), "checkpoint", archives=archives)


COMMANDS = {
    # image commands (crit's): run on the damaged image itself
    "decode": Use((("decode", "-i", IMAGE), ("decode", "-i", IMAGE, "--pretty", "--nopl"),
                   ("decode", "-i", IMAGE, "--pretty")), "image"),
    "show": Use((("show", IMAGE), ("show", IMAGE, "--nopl")), "image"),
    "info": Use((("info", IMAGE), ("info", IMAGE, "--format", "json")), "image"),
    "encode": Use((("encode", "-i", JSON_IN, "-o", OUTPUT),), "json"),
    # host: this machine (no input); host compare: two fingerprints (a CRIT JSON document is
    # not one: one line, exit 2); exit 0 compatible, 1 warnings, 2 incompatible
    "host": Use((("host",), ("host", "--format", "json"), ("host", "compare", JSON_IN, JSON_IN)),
                "json", results=(EXIT_OK, 1, 2), errors=(EXIT_BAD_INPUT, EXIT_USAGE)),
    # checkpoint commands: run on the damaged directory
    "list": _checkpoint_command("list", archives=False),
    "version": _checkpoint_command("version"),
    "summarize": _checkpoint_command("summarize", formats=("json", "tree", "html")),
    "ps": Use((("ps", CHECKPOINT), ("ps", CHECKPOINT, "--format", "json"),
               ("ps", CHECKPOINT, "--env", "--format", "tree"),
               ("ps", CHECKPOINT, "--long", "--format", "json")), "checkpoint"),
    "fds": _checkpoint_command("fds", formats=("json", "tree")),
    "sk": _checkpoint_command("sk"),
    "ns": _checkpoint_command("ns"),
    "mounts": _checkpoint_command("mounts", formats=("json", "tree")),
    "net": _checkpoint_command("net"),
    "mems": _checkpoint_command("mems"),
    # x: crit's explorers with crit's text; every explorer as text, one as JSON
    "x": Use(tuple(("x", CHECKPOINT, what) for what in ("ps", "fds", "mems", "rss", "sk"))
             + (("x", CHECKPOINT, "mems", "--format", "json"),), "checkpoint"),
    "rss": _checkpoint_command("rss", formats=("json", "tree")),
    # mem read/grep: with a damaged pstree the pid may be gone (a usage error); read exits 3
    # when the checkpoint holds no bytes at the address (a damaged pagemap or mm); grep as
    # grep(1): 1 when nothing matched (a note on stderr, no output), 2 for an unreadable input
    "mem": Use((("mem", "read", CHECKPOINT, PID, "0x400000", "64"),
                ("mem", "read", CHECKPOINT, PID, "0x400000", "64", "--format", "json"),
                ("mem", "grep", CHECKPOINT, "crit-plus-needle", "--max-count", "1"),
                ("mem", "grep", CHECKPOINT, "BEGIN", "--max-count", "2", "--format", "json")),
               "checkpoint", results=(EXIT_OK, 1, EXIT_NO_DATA),
               errors=(EXIT_BAD_INPUT, EXIT_USAGE, EXIT_NO_DATA)),
    # core writes an ELF core (-o, never into the checkpoint; -o DIR without PID: test_core)
    "core": Use((("core", CHECKPOINT, PID, "-o", OUTPUT),
                 ("core", CHECKPOINT, PID, "-o", OUTPUT, "--format", "json")),
                "checkpoint", errors=(EXIT_BAD_INPUT, EXIT_USAGE)),
    "size": Use((("size", CHECKPOINT), ("size", CHECKPOINT, "--format", "json"),
                 ("size", CHECKPOINT, "--content", "--top", "5"),
                 ("size", CHECKPOINT, "--format", "html")), "checkpoint"),
    # validate: 0 no errors, 1 warnings with --strict, 2 errors (a report each time); 3 no
    # verdict: not a checkpoint, unreadable, wrong usage (a stderr line)
    "validate": Use((("validate", CHECKPOINT), ("validate", CHECKPOINT, "--format", "json"),
                     ("validate", CHECKPOINT, "--strict")),
                    "checkpoint", results=(EXIT_OK, 1, 2), errors=(3,), judges=True),
    # diff: as diff(1), 0 identical, 1 different, 2 trouble: a stderr line alone (an input
    # that does not open), or with the report when a side's images have errors
    "diff": Use((("diff", CHECKPOINT, ORIGINAL), ("diff", ORIGINAL, CHECKPOINT, "--format", "json"),
                 ("diff", CHECKPOINT, ORIGINAL, "--no-content", "-v"),
                 ("diff", ORIGINAL, CHECKPOINT, "--format", "html")),
                "checkpoint", results=(EXIT_OK, 1, EXIT_USAGE), errors=(EXIT_USAGE,)),
    # explain reads the logs only (0 every run succeeded, 1 one failed, 2 no CRIU run found:
    # one stderr line, or the JSON document); it reads what it can of a damaged checkpoint
    # or archive (the logs), and shows the logs' file times
    "explain": Use((("explain", CHECKPOINT), ("explain", CHECKPOINT, "--format", "json")),
                   "checkpoint", results=(EXIT_OK, 1, EXIT_USAGE), errors=(EXIT_USAGE,),
                   gathers=True),
    # report writes a bundle (-o, never into the checkpoint); --criu: no `criu check` run
    "report": Use((("report", CHECKPOINT, "-o", OUTPUT, "--criu", "/nonexistent/criu"),
                   ("report", CHECKPOINT, "-o", OUTPUT, "--criu", "/nonexistent/criu",
                    "--format", "json")), "checkpoint", gathers=True),
}

def registered():
    """Names of the commands of the click group (loaded on first use, so asked of
    the group as ``--help`` asks it)."""
    import click

    from crit_plus.cli import cli

    return tuple(sorted(cli.list_commands(click.Context(cli))))


def first_pid(directory):
    """The first pid in ``directory``'s pstree.img (``state/`` for LXD), or None."""
    from pathlib import Path

    from decoders.errors import DecodeError
    from decoders.pstree import read_pstree

    for candidate in (Path(directory), Path(directory) / "state"):
        try:
            return read_pstree(candidate / "pstree.img")[0].pid
        except (DecodeError, IndexError):
            continue
    return None


def fill(form, **values):
    """The argument list of template ``form`` with the placeholders replaced."""
    table = {CHECKPOINT: "checkpoint", ORIGINAL: "original", IMAGE: "image", JSON_IN: "json",
             OUTPUT: "output", PID: "pid"}
    args = []
    for part in form:
        key = table.get(part)
        if key is None:
            args.append(part)
        elif values.get(key) is None:
            raise KeyError(f"{part} is needed by {form} but was not given")
        else:
            value = values[key]
            args.append(os.fspath(value) if isinstance(value, (str, os.PathLike)) else str(value))
    return args


# -- running a command in-process, bounded ---------------------------------------------------

#: Memory a single command may add to the test process (RLIMIT_AS headroom).
MEMORY_BUDGET = 768 << 20
#: Seconds a single command may take before it counts as hung (a limit, not a measurement).
TIME_LIMIT = 60


class Hung(BaseException):
    """Raised by the alarm when a command runs past :data:`TIME_LIMIT`."""


@dataclass
class Outcome:
    """What one in-process run of the CLI did."""

    args: list
    code: int | None
    out: bytes
    err: str
    escaped: str | None = None  # the traceback of an exception that left main()
    notes: list = field(default_factory=list)

    def describe(self):
        """Everything about the run, for an assertion message."""
        text = f"crit-plus {' '.join(self.args)}\n  exit {self.code}\n  stderr: {self.err!r}"
        text += f"\n  stdout: {self.out[:300]!r}"
        if self.escaped:
            text += "\n  escaped:\n" + self.escaped
        return text


def _address_space():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return None


@contextlib.contextmanager
def bounded(memory=MEMORY_BUDGET, seconds=TIME_LIMIT):
    """RLIMIT_AS lowered to what is mapped now + ``memory``; :class:`Hung` raised
    after ``seconds``.  A huge allocation becomes a MemoryError, a hang an error."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    current = _address_space()
    limited = current is not None
    if limited:
        cap = current + memory
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))

    def alarm(_signum, _frame):
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if limited:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def invoke(args, *, memory=MEMORY_BUDGET, seconds=TIME_LIMIT, stdin=b""):
    """Run ``crit-plus ARGS`` in this process with stdout/stderr captured.

    stdout is a strict UTF-8 text stream over bytes (as on a UTF-8 terminal:
    text that cannot be encoded is an error, not silently replaced).
    """
    from crit_plus.cli import main

    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", errors="strict", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace",
                              write_through=True)
    stdin_stream = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    saved = sys.stdin, sys.stdout, sys.stderr
    code, escaped = None, None
    try:
        sys.stdin, sys.stdout, sys.stderr = stdin_stream, stdout, stderr
        with bounded(memory, seconds):
            code = main(list(args))
    except SystemExit as leaving:  # a command that ends itself (sys.exit) in the real process
        code = leaving.code if isinstance(leaving.code, int) else (0 if leaving.code is None
                                                                     else 1)
    except (Exception, Hung) as error:  # noqa: BLE001 - anything else that escapes main() is a failure
        escaped = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    for stream in (stdout, stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return Outcome(list(args), code, out.getvalue(), err.getvalue().decode("utf-8", "replace"),
                   escaped)


def problems(outcome, use, names=(), offset_expected=False):
    """What is wrong with ``outcome`` under the rules (an empty list: nothing).

    ``names``: any of these must appear in a failure's message (the damaged
    file, or what stands for it); ``offset_expected``: a decoding failure must
    also say ``offset``.
    """
    found = []
    if outcome.escaped:
        return ["an exception escaped main()"]
    if outcome.code not in use.codes:
        found.append(f"exit code {outcome.code} not in {use.codes}")
    text = outcome.out.decode("utf-8", "replace") + outcome.err
    if "Traceback" in text:
        found.append("a traceback was printed")
    is_error = outcome.code in use.errors
    if is_error and outcome.code in use.results:  # diff's 2, mem read's 3 (a hex dump too)
        is_error = not outcome.out.strip() and outcome.err.lstrip().startswith("crit-plus: ")
    if not is_error and "--format" in outcome.args:
        fmt = outcome.args[outcome.args.index("--format") + 1]
        if fmt == "json":
            try:
                json.loads(outcome.out.decode("utf-8"))
            except ValueError as error:
                found.append(f"--format json wrote invalid JSON: {error}")
    if is_error:
        found.extend(_error_problems(outcome.err, names, offset_expected,
                                     usage=outcome.code == EXIT_USAGE))
    return found


def _error_problems(err, names, offset_expected, usage=False):
    lines = err.strip("\n").split("\n")
    found = []
    if usage and len(lines) == 1 and lines[0].startswith("crit-plus: error: ") \
            and "--help`)" in lines[0]:
        return []  # a usage error (a pid no longer in a damaged pstree)
    if not lines or not lines[-1].startswith("crit-plus: "):
        return ["the error is not a line starting 'crit-plus: '"]
    if len(lines) != 1 and not all(line.startswith("crit-plus: ") for line in lines):
        found.append("the error takes more than one line")
    message = lines[-1]
    if names and not any(name in message for name in names):
        found.append(f"the error names none of {sorted(names)}")
    if offset_expected and names and any(n in message for n in names) and \
            "offset" not in message and "cannot read" not in message:
        found.append("a decoding error without an offset")
    return found
