"""crit-plus's checks on every dump of a zdtm program (tests/test_zdtm.py, ``make zdtm``).

A check is a :class:`Check`: a name and a function taking a :class:`Dump` and
returning the problems it found (an empty list: the dump passes it).  :data:`CHECKS`
is the list every dump goes through; add a check by appending to it.

- ``decode``: crit-plus's ``decode`` equals CRIU's own crit (tests/oracle.py) on
  every image crit reads, plain and ``--pretty``, apart from crit's known bugs
  (:func:`without_crit_bugs`);
- ``commands``: summarize, ps, fds, sk, mems, rss, size, size --content, validate
  and diff with itself (:data:`COMMANDS`), as tables and as JSON, run without a
  traceback, in-process
  through ``crit_plus.cli.main`` (an exception escaping it is the traceback);
- ``consistency``: every command shows the same VMA count, pages by state and kind,
  fd count, thread count and command line of every process (tests/consistency.py);
- ``x``: ``crit-plus x`` prints crit's explorer text where crit is right
  (:func:`x_matches_crit`), ``info``: ``info -f json`` crit's info and raw images
  refused (:func:`info_matches_crit`);
- ``encode``: decode then encode gives back every image's bytes (:func:`encode_round_trips`);
- ``validate``: validate predicts the restore: no error on a dump that restored
  and passed its own check; an error on a dump whose restore failed.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.consistency import check_consistency
from decoders.kinds import raw_kind
from tests.oracle import crit_json, is_metadata_image, ours_json
from tests.workloads import zdtm


@dataclass
class Dump:
    """A zdtm program CRIU dumped: its row of the results table and its images."""

    result: zdtm.Result
    images: Path
    #: per-run cache shared by the checks (a command's output, validate's report)
    cache: dict = field(default_factory=dict)

    @property
    def name(self):
        return self.result.test


@dataclass(frozen=True)
class Check:
    """One check on a dump: ``run(dump)`` → problems (one line each)."""

    name: str
    run: Callable[[Dump], list]
    #: False: the check needs the restore to have succeeded and passed (or to have
    #: failed): it is n/a for a dump restored with another verdict
    any_outcome: bool = True


# -- decode -----------------------------------------------------------------------------


def without_crit_bugs(kind, ours, theirs):
    """``theirs`` (crit's JSON) with crit's documented bugs replaced by crit-plus's
    values (tests/test_decode_oracle.py tests each apart):

    - core ``tc.task_state``: pycriu calls 3 (stopped) "Zombie" and has no name for 2;
    - ipcns-shm: pycriu reads contents inline even when ``in_pagemaps`` is set.
    """
    theirs = copy.deepcopy(theirs)
    if kind.startswith("core-"):
        for mine, crits in zip(ours.get("entries", []), theirs.get("entries", [])):
            state, crit_state = (mine.get("tc", {}).get("task_state"),
                                 crits.get("tc", {}).get("task_state"))
            if (state, crit_state) in (("Stopped", "Zombie"), ("Zombie", 2)):
                crits["tc"]["task_state"] = state
    if kind.startswith("ipcns-shm"):
        for mine, crits in zip(ours.get("entries", []), theirs.get("entries", [])):
            if mine.get("in_pagemaps"):
                crits.pop("extra", None)
                if "extra" in mine:
                    crits["extra"] = mine["extra"]
    return theirs


def first_difference(ours, theirs, where=""):
    """The first path where two JSON values differ, for the problem line."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in list(ours) + [k for k in theirs if k not in ours]:
            if ours.get(key, "<absent>") != theirs.get(key, "<absent>"):
                return first_difference(ours.get(key, "<absent>"),
                                        theirs.get(key, "<absent>"), f"{where}.{key}")
    elif isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return f"{where}: {len(ours)} items, crit {len(theirs)}"
        for index, (a, b) in enumerate(zip(ours, theirs)):
            if a != b:
                return first_difference(a, b, f"{where}[{index}]")
    return f"{where}: {str(ours)[:80]} (crit: {str(theirs)[:80]})"


def decode_matches_crit(dump):
    """Every image crit reads decodes in crit-plus to crit's JSON, plain and ``--pretty``."""
    problems = []
    for path in sorted(dump.images.iterdir()):
        if not path.is_file() or not is_metadata_image(path):
            continue
        for pretty in (False, True):
            label = f"{path.name}{' --pretty' if pretty else ''}"
            try:
                theirs = crit_json(path, pretty)
            except Exception:  # noqa: BLE001 - crit cannot read it: not compared
                dump.cache.setdefault("crit_unreadable", []).append(label)
                continue
            try:
                ours = ours_json(path, pretty)
            except Exception as error:  # noqa: BLE001 - ours must read what crit reads
                problems.append(f"{label}: crit-plus fails ({type(error).__name__}: {error}), "
                                "crit reads it")
                continue
            theirs = without_crit_bugs(path.name, ours, theirs)
            if ours != theirs:
                problems.append(f"{label}: {first_difference(ours, theirs)}")
        dump.cache["decoded"] = dump.cache.get("decoded", 0) + 1
    return problems


# -- commands ---------------------------------------------------------------------------


def run_command(argv):
    """``crit-plus ARGV`` in-process: ``(exit code, stdout, stderr, traceback or None)``."""
    from crit_plus import cli

    out, err = io.TextIOWrapper(io.BytesIO()), io.TextIOWrapper(io.BytesIO())
    stack = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as done:
            code = done.code
        except Exception:  # noqa: BLE001 - this is what the check looks for
            code, stack = 70, traceback.format_exc()
    texts = []
    for stream in (out, err):
        stream.flush()
        texts.append(stream.buffer.getvalue().decode(errors="replace"))
    return code, texts[0], texts[1], stack


_TABLES = (
    ("summarize", "{}"), ("ps", "{}"), ("fds", "{}"), ("sk", "{}"), ("mems", "{}"),
    ("rss", "{}"), ("size", "{}"), ("size", "--content", "{}"), ("validate", "{}"),
    ("diff", "{}", "{}"), ("ns", "{}"), ("mounts", "{}"), ("net", "{}"), ("ps", "--long", "{}"),
)
#: The commands run on each dump (``{}`` is the images directory), as tables and as
#: JSON (validate's JSON run is :func:`validate_report`'s).
COMMANDS = _TABLES + tuple((*c, "--format", "json") for c in _TABLES if c[0] != "validate")


def commands_run(dump):
    """Each of :data:`COMMANDS` ends without a traceback (exit code not 70)."""
    problems = []
    codes = dump.cache.setdefault("exit_codes", {})
    for command in COMMANDS:
        argv = [str(dump.images) if a == "{}" else a for a in command]
        code, _, stderr, stack = run_command(argv)
        label = " ".join(a for a in command if a != "{}")
        codes[label] = code
        if stack is not None or code == 70 or "Traceback" in stderr:
            last = (stack or stderr).strip().splitlines()[-1:] or ["?"]
            problems.append(f"{label}: traceback: {last[0]}")
    return problems


# -- crit's x and info ------------------------------------------------------------------

X_EXPLORERS = ("ps", "fds", "mems", "rss")


def x_matches_crit(dump):
    """``crit-plus x DIR ps|fds|mems|rss`` prints crit's text byte for byte wherever crit
    does not crash, apart from the lines crit gets wrong (tests/crit_explorers.py
    ``WRONG``: each difference must be one of them); ``x sk`` and ``--format json`` run."""
    from crit_plus import open_checkpoint
    from tests import crit_explorers

    why = crit_explorers.available()
    if why is not None:
        return [f"crit cannot run: {why}"]
    checkpoint = open_checkpoint(dump.images)
    problems = []
    for what in X_EXPLORERS + ("sk",):
        for fmt in ("text", "json"):
            code, out, err, stack = run_command(["x", dump.images, what, "--format", fmt])
            if code != 0 or stack is not None:
                problems.append(f"x {what} --format {fmt}: exit {code}: "
                                f"{(stack or err).strip().splitlines()[-1:]}")
            if what == "sk" or fmt == "json" or code != 0:
                continue
            try:
                theirs = crit_explorers.run(what, dump.images)
            except Exception as error:  # noqa: BLE001 - crit crashes: ours must not
                dump.cache.setdefault("crit_x_crashes", []).append(
                    f"{what}: {type(error).__name__}")
                continue
            bad, reasons = crit_explorers.differences(what, out, theirs, checkpoint)
            problems += [f"x {what}: {problem}" for problem in bad]
            dump.cache.setdefault("crit_x_wrong", set()).update(reasons)
            dump.cache.setdefault("crit_x_compared", []).append(what)
    return problems


def info_matches_crit(dump):
    """``info -f json`` prints crit's ``info`` text on every image crit reads, except the
    count crit gets wrong on images whose entries carry payloads (it hops over the
    message only, reading payload bytes as sizes) or cannot give (ghost files): there
    ours equals the entries crit's own ``decode`` finds.  Raw images are refused in one
    line by ``decode`` and ``info`` (crit refuses them too), so no JSON of one exists
    for ``encode`` to reject."""
    from tests.oracle import crit_info

    problems = []
    for path in sorted(dump.images.iterdir()):
        if not path.is_file():
            continue
        if raw_kind(path.name):
            for argv in (["decode", "-i", path], ["info", "-f", "json", path]):
                code, out, err, _ = run_command(argv)
                if code != 1 or out or len(err.splitlines()) != 1 or "raw image" not in err:
                    problems.append(f"{argv[0]} {path.name}: exit {code}, {err.strip()[:80]}")
            continue
        if not is_metadata_image(path):
            continue
        code, out, err, _ = run_command(["info", "-f", "json", path])
        if code != 0:
            problems.append(f"info {path.name}: exit {code}: {err.strip()[:80]}")
            continue
        try:
            theirs = crit_info(path)
        except Exception:  # noqa: BLE001 - crit crashes (ghost files): ours must not
            theirs = None
        if theirs is not None and out == json.dumps(theirs, indent=4) + "\n":
            continue
        try:
            entries = len(crit_json(path, nopl=True)["entries"])
        except Exception:  # noqa: BLE001 - crit cannot decode it either: not compared
            continue
        entries -= 1 if path.name.startswith("pagemap-") else 0
        ours = json.loads(out)
        if ours["count"] != entries or (theirs and ours["magic"] != theirs["magic"]):
            problems.append(f"info {path.name}: {ours}, crit info {theirs}, "
                            f"crit decode {entries} entries")
        else:
            dump.cache.setdefault("crit_info_wrong", []).append(path.name)
    return problems


def encode_round_trips(dump):
    """Every image ``decode`` writes JSON for comes back from ``encode`` byte for byte
    (plain and ``--pretty`` JSON): no JSON of crit-plus is one encode rejects."""
    from decoders.encode import encode_image

    problems = []
    for path in sorted(dump.images.iterdir()):
        if not path.is_file() or not is_metadata_image(path):
            continue
        for pretty in (False, True):
            try:
                again = encode_image(ours_json(path, pretty), str(path))
            except Exception as error:  # noqa: BLE001 - the problem this check looks for
                problems.append(f"{path.name}: encode fails: {type(error).__name__}: {error}")
                break
            if again != path.read_bytes():
                problems.append(f"{path.name}{' --pretty' if pretty else ''}: encode gives "
                                "other bytes")
    return problems


# -- validate ---------------------------------------------------------------------------


def validate_report(dump):
    """validate's JSON report of the dump (run once per dump)."""
    if "validate" not in dump.cache:
        _, stdout, stderr, stack = run_command(["validate", "--format", "json", dump.images])
        if stack is not None:
            raise AssertionError(f"validate crashed: {stack.strip().splitlines()[-1]}")
        dump.cache["validate"] = json.loads(stdout) if stdout.strip() else {"findings": [],
                                                                             "error": stderr}
    return dump.cache["validate"]


def validate_errors(dump):
    """``[(code, message)]`` of validate's error findings."""
    return [(f["code"], f["message"]) for f in validate_report(dump).get("findings", [])
            if f["severity"] == "error"]


def validate_agrees(dump):
    """No error on a dump that restored and passed; an error on one that did not restore."""
    result, errors = dump.result, validate_errors(dump)
    if result.passed and errors:
        return [f"restored and passed, but validate says error {code}: {message}"
                for code, message in errors]
    if not result.restored and not errors:
        return [f"the restore failed ({result.reason}), validate found no error"]
    return []


def validate_outcome(dump):
    """How validate's prediction compares with the restore, for the table:
    ``agree``, ``false error``, ``missed failure`` or ``n/a`` (restored, not passed)."""
    result, errors = dump.result, validate_errors(dump)
    if result.passed:
        return "false error" if errors else "agree"
    if not result.restored:
        return "agree" if errors else "missed failure"
    return "n/a"


# -- consistency ------------------------------------------------------------------------


def consistent(dump):
    """Every command shows the same facts of every process (tests/consistency.py)."""
    try:
        check_consistency(dump.images)
    except AssertionError as error:
        return str(error).splitlines()[1:] or [str(error)]
    return []


CHECKS = [
    Check("decode", decode_matches_crit),
    Check("commands", commands_run),
    Check("consistency", consistent),
    Check("x", x_matches_crit),
    Check("info", info_matches_crit),
    Check("encode", encode_round_trips),
    Check("validate", validate_agrees),
]


# -- every dump -------------------------------------------------------------------------


def dumps(results, build_root=zdtm.BUILD):
    """A :class:`Dump` for every result CRIU dumped."""
    return [Dump(r, zdtm.images_dir(r, build_root)) for r in results if r.dumped]


def check_all(results, write_to=None, checks=None):
    """Run ``checks`` (default :data:`CHECKS`) on every dump; the report as a dict,
    also written to ``write_to/checks.json``."""
    report = {"dumps": []}
    for dump in dumps(results):
        row = {"test": dump.name, "restored": dump.result.restored,
               "passed": dump.result.passed, "problems": {}}
        for check in checks or CHECKS:
            try:
                row["problems"][check.name] = check.run(dump)
            except Exception as error:  # noqa: BLE001 - recorded, the run goes on
                row["problems"][check.name] = [f"check failed: {type(error).__name__}: {error}"]
        row["validate"] = validate_outcome(dump)
        row["validate_errors"] = sorted({code for code, _ in validate_errors(dump)})
        row["images_decoded"] = dump.cache.get("decoded", 0)
        row["crit_unreadable"] = dump.cache.get("crit_unreadable", [])
        row["crit_x_crashes"] = dump.cache.get("crit_x_crashes", [])
        row["crit_x_wrong"] = sorted(dump.cache.get("crit_x_wrong", ()))
        report["dumps"].append(row)
    if write_to is not None:
        (Path(write_to) / "checks.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def summary_text(report):
    """The numbers docs/live.md shows, as text."""
    rows = report["dumps"]
    lines = [f"{len(rows)} dumps checked"]
    names = sorted({name for row in rows for name in row["problems"]})
    for name in names:
        bad = [row["test"] for row in rows if row["problems"].get(name)]
        lines.append(f"  {name}: {len(rows) - len(bad)} of {len(rows)} without a problem"
                     + (f"; problems in {', '.join(bad)}" if bad else ""))
    outcomes = {}
    for row in rows:
        outcomes.setdefault(row["validate"], []).append(row["test"])
    for outcome, tests in sorted(outcomes.items()):
        lines.append(f"  validate {outcome}: {len(tests)}"
                     + (f" ({', '.join(tests)})" if outcome not in ("agree", "n/a") else ""))
    for row in rows:
        for name, problems in row["problems"].items():
            for problem in problems:
                lines.append(f"  {row['test']}: {name}: {problem}")
    return "\n".join(lines)



def markdown(results, report):
    """The table docs/live.md shows: the runs, then the checks (a full run's numbers)."""
    ran = [r for r in results if not r.verdict.startswith(("skipped", "not built"))]
    skipped = {}
    for r in results:
        if r not in ran:
            skipped[r.verdict] = skipped.get(r.verdict, 0) + 1
    rows = report["dumps"]
    false_errors = sum(1 for row in rows if row["validate"] == "false error")
    missed = sum(1 for row in rows if row["validate"] == "missed failure")
    passed = sum(r.passed for r in ran)
    failed_restores = sum(1 for r in ran if r.dumped and not r.restored)
    images = sum(row["images_decoded"] for row in rows)

    def clean(name):
        return sum(1 for row in rows if not row["problems"].get(name))

    lines = [
        "| | programs |", "| --- | --- |",
        f"| zdtm static programs | {len(results)} |",
        f"| skipped (not safe or not possible here) | {len(results) - len(ran)} |",
        f"| run | {len(ran)} |",
        f"| started | {sum(r.started for r in ran)} |",
        f"| dumped by CRIU | {sum(r.dumped for r in ran)} |",
        f"| restored | {sum(r.restored for r in ran)} |",
        f"| passed their own check after the restore | {passed} |",
        (f"| dumps whose `decode` equals crit on every image ({images} images, plain and "
        f"`--pretty`) | {clean('decode')} of {len(rows)} |"),
        (f"| dumps where every command ran without a traceback | {clean('commands')} of "
        f"{len(rows)} |"),
        (f"| dumps where every command shows the same facts of every process "
         f"(tests/consistency.py) | {clean('consistency')} of {len(rows)} |"),
        (f"| dumps where `x ps\\|fds\\|mems\\|rss` prints crit's text, apart from the lines "
         f"crit gets wrong (docs/commands/x.md) | {clean('x')} of {len(rows)} |"),
        (f"| dumps where `info -f json` prints crit's `info` (the right count where crit's is "
         f"wrong) and raw images are refused | {clean('info')} of {len(rows)} |"),
        (f"| dumps where `decode` then `encode` gives back every image's bytes | "
         f"{clean('encode')} of {len(rows)} |"),
        (f"| validate: no error on a dump that restored and passed | "
        f"{passed - false_errors} of {passed} |"),
        (f"| validate: an error on a dump whose restore failed | "
        f"{failed_restores - missed} of {failed_restores} |"),
        "",
        "Skipped: " + "; ".join(f"{n} {reason.removeprefix('skipped: ')}" for reason, n in
                                sorted(skipped.items(), key=lambda item: -item[1])) + ".",
    ]
    return "\n".join(lines)
