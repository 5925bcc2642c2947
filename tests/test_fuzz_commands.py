"""The fuzz suite: damaged and hostile checkpoints through every command.

Every command registered in the click group has an entry in
``tests/command_table.py``; a test fails when one has none.  Damaged inputs
(``tests/damage.py``) are made from the real fixtures with a fixed seed:

- ``service-a``: every metadata image, truncated at every entry boundary (and
  just inside the size prefix and the message), at random offsets, with bit
  flips, huge size prefixes, wrong magics and another kind's entries;
- every metadata image of every other fixture: a sample of the same;
- directory damage (missing images, a directory / FIFO / socket / device link
  / link loop where an image should be, unreadable images, ``parent/`` loops
  and dangling links, pages files shorter or longer than their pagemaps) on
  ``service-a`` fully and on an LXD snapshot in part.

Image commands run on the damaged image; checkpoint commands on the damaged
directory, in turn (each case runs a few, rotating through every form of every
command), next to :func:`tests.probe.walk_checkpoint`, which uses the whole
graph API.  Runs are in-process under a memory cap (RLIMIT_AS) and an alarm;
``test_hostile_cases_in_a_subprocess`` proves the same limits hold for the real
``python -m crit_plus`` process.  ``CRIT_PLUS_FUZZ=full`` runs every case
through every command (minutes; for a deeper local run).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from decoders.errors import DecodeError

from . import damage
from .damage import workspace  # noqa: F401 (fixture)
from .command_table import (
    COMMANDS,
    EXIT_OK,
    bounded,
    fill,
    first_pid,
    invoke,
    problems,
    registered,
)
from .conftest import FIXTURES
from .probe import walk_checkpoint

SEED = 20261129
FULL = os.environ.get("CRIT_PLUS_FUZZ") == "full"
#: The fixture every damage is tried on in full.
FULL_FIXTURE = "service-a"
#: Checkpoints whose sampled damage also goes through the checkpoint commands.
CHECKPOINT_SAMPLES = (
    "service-old",
    "service-c",
    "lxd-web/var/lib/lxd/storage-pools/default/containers-snapshots/web/after/state",
    "lxd-deb/var/lib/lxd/storage-pools/default/containers-snapshots/deb/s2/state",
)
#: Checkpoint commands run per damaged case (rotating); every one with CRIT_PLUS_FUZZ=full.
COMMANDS_PER_CASE = 2
#: Damage cases of one image that go through the checkpoint commands (one kind
#: of damage after another; every case with CRIT_PLUS_FUZZ=full).
CHECKPOINT_CASES = 4
#: Damage cases of one image of the sampled fixtures.
SAMPLED_CASES = 2
#: Images whose damage is worth reading page data for (the rest: metadata only).
MEMORY_IMAGES = ("pagemap-", "mm-", "pages-")

FACTS = json.loads((FIXTURES / "FACTS.json").read_text())


def _metadata_names(key):
    return [name for name in FACTS[key]["image_files"] if damage.is_metadata(name)]


# -- rotation and reporting ----------------------------------------------------------------


class Rotation:
    """Hands out ``(command, form)`` pairs in turn, so every form of every command
    comes up as often as the others."""

    def __init__(self, kinds):
        names = set(registered())
        self.pairs = [(name, form) for name, use in sorted(COMMANDS.items())
                      if use.on in kinds and name in names for form in use.forms]
        self.position = 0

    def take(self, count):
        """The next ``count`` pairs (all of them with CRIT_PLUS_FUZZ=full)."""
        if not self.pairs:
            return []
        if FULL:
            return list(self.pairs)
        taken = [self.pairs[(self.position + i) % len(self.pairs)] for i in range(count)]
        self.position += count
        return taken


@dataclass
class Report:
    """Rule breaks collected over many runs, asserted once at the end."""

    runs: int = 0
    failures: list = field(default_factory=list)

    def check(self, label, outcome, name, names, offset_expected):
        self.runs += 1
        found = problems(outcome, COMMANDS[name], names, offset_expected)
        if found:
            self.failures.append(f"[{label}] {'; '.join(found)}\n{outcome.describe()}")

    def fail(self, label, text):
        self.runs += 1
        self.failures.append(f"[{label}] {text}")

    def assert_clean(self):
        assert self.runs, "nothing was run"
        assert not self.failures, (f"{len(self.failures)} of {self.runs} runs broke the rules "
                                   "(docs/robustness.md):\n\n" + "\n\n".join(self.failures[:6]))


@dataclass
class Target:
    """A damaged checkpoint and what stands for the damage."""

    checkpoint: Path
    original: Path
    pid: int | None
    image: Path
    output: Path  # where a command that writes a file (report, encode) writes it


def run_image_commands(report, rotation, label, target, offset_expected=True, count=1):
    """Run the next image command(s) on ``target.image``; a failure must name it."""
    for name, form in rotation.take(count):
        outcome = invoke(fill(form, image=target.image))
        report.check(label, outcome, name, (target.image.name,), offset_expected)


def run_checkpoint_commands(report, rotation, label, target, names, offset_expected,
                            count=COMMANDS_PER_CASE):
    """The graph probe, then the next checkpoint command(s), on ``target.checkpoint``."""
    try:
        with bounded():
            walk_checkpoint(target.checkpoint, pages=target.image.name.startswith(MEMORY_IMAGES))
    except DecodeError as error:
        if not any(name in str(error) for name in names):
            report.fail(label, f"the graph raised {error!r}, naming none of {names}")
    except BaseException as error:  # noqa: BLE001 - anything else breaks the graph's promise
        import traceback

        report.fail(label, "the graph probe raised:\n" + "".join(
            traceback.format_exception(type(error), error, error.__traceback__)))
    for name, form in rotation.take(count):
        args = fill(form, checkpoint=target.checkpoint, original=target.original,
                    pid=target.pid, image=target.image, output=target.output)
        report.check(label, invoke(args), name, names, offset_expected)


def _other_image(images, index):
    """An image of another kind than ``images[index]`` (for the wrong-magic cases)."""
    this = images[index].name.split("-")[0]
    for other in images[index + 1:] + images[:index]:
        if other.name.split("-")[0] != this:
            entries_at, _magic = damage.header_of(other)
            return other.read_bytes(), entries_at, other.name
    return None


# -- the table itself --------------------------------------------------------------------------


def test_every_registered_command_has_an_entry():
    missing = sorted(set(registered()) - set(COMMANDS))
    assert not missing, (
        f"commands without an entry in tests/command_table.py COMMANDS: {missing}. "
        "Add one (argument forms, input kind, exit codes) so the fuzz suite runs them.")


def test_every_entry_is_a_registered_command():
    stale = sorted(set(COMMANDS) - set(registered()))
    assert not stale, f"entries of tests/command_table.py COMMANDS that no command has: {stale}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_form_works_on_an_undamaged_checkpoint(name, fixture_root, tmp_path):
    """The table's forms are right: on real, undamaged input every one exits 0."""
    use = COMMANDS[name]
    checkpoint = fixture_root / FULL_FIXTURE
    image = checkpoint / "pstree.img"
    json_in = tmp_path / "pstree.json"
    json_in.write_bytes(invoke(["decode", "-i", str(image)]).out)
    for form in use.forms:
        args = fill(form, checkpoint=checkpoint, original=fixture_root / "service-b",
                    image=image, json=json_in, output=tmp_path / "out.img",
                    pid=first_pid(checkpoint))
        outcome = invoke(args)
        assert outcome.code in use.results and not problems(outcome, use), outcome.describe()
        assert outcome.out or outcome.code != EXIT_OK or name == "encode", outcome.describe()


# -- image damage ---------------------------------------------------------------------------


def _damage_one_image(report, rotations, rng, target, image, other, *, full, keep, deep):
    """Damage ``target.image`` (a copy of ``image``) ``keep`` ways (all with None), each
    through an image command; ``deep`` of them through the checkpoint commands too."""
    image_rotation, checkpoint_rotation = rotations
    cases = list(damage.image_damages(image, rng, full=full, other=other))
    if keep is not None and not FULL:
        cases = damage.stratified(cases, keep, rng)
    deep_ones = cases if FULL else damage.stratified(cases, deep, rng)
    for case in cases:
        damage.replace(target.image, case.data)
        label = f"{image.parent.name}/{image.name} {case.label}"
        run_image_commands(report, image_rotation, label, target)
        if any(case is chosen for chosen in deep_ones):
            run_checkpoint_commands(report, checkpoint_rotation, label, target,
                                    (image.name,), offset_expected=True)
    damage.replace(target.image, image.read_bytes())


@pytest.mark.parametrize("image_name", _metadata_names(FULL_FIXTURE))
def test_every_damage_of_every_image(image_name, fixture_root, workspace):
    """service-a: every damage of one metadata image through the image commands;
    CHECKPOINT_CASES of them (one kind after another) through the checkpoint commands."""
    source = fixture_root / FULL_FIXTURE
    images = damage.metadata_images(source)
    index = [p.name for p in images].index(image_name)
    checkpoint = damage.clone(source, workspace / "checkpoint")
    target = Target(checkpoint, source, first_pid(source), checkpoint / image_name,
                    workspace / "output")
    report = Report()
    _damage_one_image(report, (Rotation({"image"}), Rotation({"checkpoint"})),
                      random.Random(f"{SEED}:{image_name}"), target, images[index],
                      _other_image(images, index), full=True, keep=None,
                      deep=CHECKPOINT_CASES)
    report.assert_clean()


@pytest.mark.parametrize("key", sorted(k for k in FACTS if k != FULL_FIXTURE))
def test_sampled_damage_of_every_image(key, fixture_root, workspace):
    """Every metadata image of the other fixtures: a few damages each through the
    image commands; for CHECKPOINT_SAMPLES some through the checkpoint commands."""
    source = fixture_root / key
    images = damage.metadata_images(source)
    rng = random.Random(f"{SEED}:{key}")
    checkpoint = damage.clone(source, workspace / "checkpoint")
    pid = first_pid(source)
    report = Report()
    rotations = (Rotation({"image"}), Rotation({"checkpoint"}))
    # the checkpoint commands see one case of every third image
    deep = set(range(0, len(images), 3)) if key in CHECKPOINT_SAMPLES else set()
    for index, image in enumerate(images):
        target = Target(checkpoint, source, pid, checkpoint / image.name, workspace / "output")
        _damage_one_image(report, rotations, rng, target, image, _other_image(images, index),
                          full=False, keep=SAMPLED_CASES, deep=1 if index in deep else 0)
    report.assert_clean()


# -- directory damage --------------------------------------------------------------------------

DIRECTORY_CASES = {
    FULL_FIXTURE: True,
    "lxd-web/var/lib/lxd/storage-pools/default/containers-snapshots/web/after/state": False,
}


@pytest.mark.parametrize("key", sorted(DIRECTORY_CASES))
def test_directory_damage(key, fixture_root, workspace):
    source = fixture_root / key
    report = Report()
    image_rotation = Rotation({"image"})
    checkpoint_rotation = Rotation({"checkpoint"})
    pid = first_pid(source)
    for number, case in enumerate(damage.directory_damages(source, full=DIRECTORY_CASES[key])):
        case_dir = workspace / f"case-{number}"
        case_dir.mkdir()
        checkpoint = damage.clone(source, case_dir / "checkpoint")
        damaged = case.apply(checkpoint)
        target = Target(checkpoint, source, pid, damaged, case_dir / "output")
        names = (damaged.name, checkpoint.name, "parent")
        run_image_commands(report, image_rotation, case.label, target, offset_expected=False)
        run_checkpoint_commands(report, checkpoint_rotation, case.label, target, names,
                                offset_expected=False, count=COMMANDS_PER_CASE + 1)
        shutil.rmtree(case_dir)
    report.assert_clean()


# -- encode: damaged JSON ------------------------------------------------------------------------


def _json_damages(text, rng):
    document = json.loads(text)
    yield "truncated", text[: len(text) // 2]
    yield "not-an-object", "[1, 2, 3]"
    yield "unknown-magic", json.dumps(dict(document, magic="NOT_A_MAGIC"))
    yield "no-entries", json.dumps({"magic": document["magic"]})
    yield "entries-not-a-list", json.dumps(dict(document, entries=42))
    yield "entry-not-an-object", json.dumps(dict(document, entries=[7]))
    yield "entry-without-fields", json.dumps(dict(document, entries=[{}]))
    entries = document.get("entries") or [{}]
    first = dict(entries[0])
    for key in list(first)[:3]:
        for value in ("text", -1, 2 ** 70, None, [1], {"x": 1}, "!!not base64!!"):
            changed = dict(first, **{key: value})
            yield f"{key}={value!r}", json.dumps(dict(document, entries=[changed] + entries[1:]))
    yield "unknown-field", json.dumps(dict(document, entries=[dict(first, nope=1)]))
    yield "invalid-utf8", (text[:20].encode() + b"\xff\xfe" + text[20:].encode()).decode(
        "latin-1")
    yield "random-bytes", "".join(chr(rng.randrange(32, 127)) for _ in range(200))
    yield "deeply-nested", "[" * 100_000


def test_encode_with_damaged_json(fixture_root, tmp_path):
    rng = random.Random(SEED)
    source = fixture_root / FULL_FIXTURE
    report = Report()
    for name in ("pstree.img", "core-12525.img", "files.img", "pagemap-12525.img",
                 "pipes-data.img", "tcp-stream-2f478.img", "inventory.img"):
        text = invoke(["decode", "-i", str(source / name)]).out.decode()
        for label, damaged in _json_damages(text, rng):
            path = tmp_path / f"{name}.json"
            path.write_text(damaged, encoding="latin-1")
            for form in COMMANDS["encode"].forms:
                args = fill(form, json=path, output=tmp_path / "out.img")
                report.check(f"{name} {label}", invoke(args), "encode", (path.name,), False)
    report.assert_clean()


# -- the real process, under real limits -------------------------------------------------------

#: Address space the subprocess may use: far below what the hostile cases would take.
SUBPROCESS_MEMORY = 512 << 20
SUBPROCESS_SECONDS = 60


def _hostile_cases(source, workspace):
    """A few of the nastiest cases, as (label, checkpoint, image) in fresh copies."""
    def copy(label):
        return damage.clone(source, workspace / label)

    cases = []
    ck = copy("huge-size")
    data = bytearray((ck / "pagemap-12525.img").read_bytes())
    data[12:16] = b"\xff\xff\xff\xff"
    damage.replace(ck / "pagemap-12525.img", bytes(data))
    cases.append(("huge-size", ck, ck / "pagemap-12525.img"))
    by_label = {case.label: case for case in damage.directory_damages(source)}
    for label in ("devzero:pstree.img", "fifo-instead:mm-12525.img", "parent-loop-pair",
                  "pages-longer:pages-3.img"):
        ck = copy(label.replace(":", "-"))
        cases.append((label, ck, by_label[label].apply(ck)))
    return cases


def _limit_resources():
    resource.setrlimit(resource.RLIMIT_AS, (SUBPROCESS_MEMORY, SUBPROCESS_MEMORY))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def test_hostile_cases_in_a_subprocess(fixture_root, workspace):
    """``python -m crit_plus`` itself, under RLIMIT_AS and a timeout, on the cases
    that would hang or exhaust memory if anything read them naively."""
    source = fixture_root / FULL_FIXTURE
    rotation = Rotation({"image", "checkpoint"})
    report = Report()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent)] + sys.path))
    for label, checkpoint, image in _hostile_cases(source, workspace):
        for name, form in rotation.take(2):
            args = fill(form, checkpoint=checkpoint, original=source, image=image,
                        pid=first_pid(source), output=workspace / f"{label}.out")
            try:
                done = subprocess.run([sys.executable, "-m", "crit_plus", *args],
                                      capture_output=True, timeout=SUBPROCESS_SECONDS, env=env,
                                      preexec_fn=_limit_resources, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                report.fail(label, f"crit-plus {' '.join(args)}: no end within "
                                   f"{SUBPROCESS_SECONDS} s")
                continue
            from .command_table import Outcome

            outcome = Outcome(args, done.returncode, done.stdout,
                              done.stderr.decode("utf-8", "replace"))
            report.check(label, outcome, name, (image.name, checkpoint.name, "parent"), False)
    report.assert_clean()
