"""The read-only guarantee: no command writes into a checkpoint (docs/robustness.md).

1. Every form of every registered command (tests/command_table.py) runs on a
   private copy of real checkpoints; before and after each run the whole area
   holding the copy is snapshotted: every entry's type, mode, size, mtime and
   ctime (ns) and a SHA-256 of its bytes or its link target, and the list of
   names.  Nothing may change and nothing may appear.
2. The same forms run inside a mount namespace where the checkpoint is a
   read-only bind mount over its own path (``unshare -m``; needs root or user
   namespaces).  Every form must exit as it does on the writable copy and, when
   its output does not vary from run to run (timings, host facts), print the
   same bytes.  Where no such mount can be made the test is skipped and
   says why; (1) holds either way.

Root ignores file modes, so ``chmod`` alone proves nothing here; the bind
mount makes the kernel refuse writes even to root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import crit_plus

from . import damage
from .command_table import COMMANDS, fill, first_pid, invoke, registered

ROOT = Path(__file__).resolve().parent.parent
LXD_SNAPSHOT = "lxd-web/var/lib/lxd/storage-pools/default/containers-snapshots/web/after"
#: Images the image commands are run on (a raw pages image among them).
IMAGES = ("pstree.img", "core-12525.img", "pagemap-12525.img", "files.img", "pages-1.img",
          "tcp-stream-2f478.img")


def _area(fixture_root, tmp_path):
    """A private, real copy (not links) of service-a and of an LXD snapshot (with
    backup.yaml, rootfs/ and state/), inside one directory that holds nothing else."""
    area = tmp_path / "area"
    shutil.copytree(fixture_root / "service-a", area / "service-a", symlinks=True)
    shutil.copytree(fixture_root / LXD_SNAPSHOT, area / "after", symlinks=True)
    return area


def _runs(area, scratch):
    """Every (command, argument list) to try: each form of each registered command, on
    each checkpoint and image."""
    (scratch / "pstree.json").write_bytes(
        invoke(["decode", "-i", str(area / "service-a" / "pstree.img")]).out)
    names = set(registered())
    runs = []
    for name, use in sorted(COMMANDS.items()):
        if name not in names:
            continue
        for form in use.forms:
            if use.on == "image":
                targets = [dict(image=area / "service-a" / image) for image in IMAGES]
            elif use.on == "json":
                targets = [dict(json=scratch / "pstree.json", output=scratch / "out.img")]
            else:
                targets = [dict(checkpoint=area / "service-a", original=area / "after",
                                pid=first_pid(area / "service-a"), output=scratch / "a.out"),
                           dict(checkpoint=area / "after", original=area / "service-a",
                                pid=first_pid(area / "after"), output=scratch / "b.out")]
            runs += [(name, fill(form, **target)) for target in targets]
    return runs


def test_no_command_changes_a_checkpoint(fixture_root, tmp_path):
    area = _area(fixture_root, tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    before = damage.tree_state(area)
    assert len(before) > 60
    for name, args in _runs(area, scratch):
        outcome = invoke(args)
        use = COMMANDS[name]
        # decode/show/info refuse a raw image (page data) as crit does: exit 1
        expected = use.results + (use.errors if any(a.endswith("pages-1.img") for a in args)
                                  else ())
        assert outcome.code in expected, outcome.describe()
        after = damage.tree_state(area)
        changed = sorted(key for key in set(before) | set(after)
                         if before.get(key) != after.get(key))
        assert not changed, f"crit-plus {' '.join(args)} changed {changed[:10]}"


#: Runs every argument list given as JSON on stdin in this process; prints
#: ``[[exit code, stdout as latin-1], ...]``.
_DRIVER = """
import json, sys
sys.path[:0] = json.loads(sys.argv[1])
from tests.command_table import invoke
runs = json.load(sys.stdin)
print(json.dumps([[o.code, o.out.decode("latin-1"), o.escaped] for o in map(invoke, runs)]))
"""


def _in_read_only_namespace(area, runs):
    """Run ``runs`` in a mount namespace where ``area`` is bind-mounted read-only over
    itself; return the driver's results, or a reason it could not be done."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare(1) or mount(8) is not installed"
    quoted = os.fspath(area).replace("'", "'\\''")
    script = (f"mount --bind '{quoted}' '{quoted}' && "
              f"mount -o remount,bind,ro '{quoted}' && "
              f"if touch '{quoted}/probe' 2>/dev/null; then echo 'still writable' >&2; exit 97; fi"
              f" && exec \"$@\"")
    command = ["unshare", "-m", "sh", "-c", script, "sh", sys.executable, "-c", _DRIVER,
               json.dumps([str(ROOT)] + sys.path)]
    done = subprocess.run(command, input=json.dumps(runs), capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    if done.returncode == 97:
        return "the bind mount stayed writable"
    if done.returncode != 0:
        return f"no read-only bind mount here: {done.stderr.strip()[-300:]}"
    return json.loads(done.stdout)


def test_every_command_works_on_a_read_only_mount(fixture_root, tmp_path):
    area = _area(fixture_root, tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    runs = _runs(area, scratch)
    expected = [invoke(args) for _name, args in runs]
    stable = [invoke(args).out == want.out for (_name, args), want in zip(runs, expected)]
    results = _in_read_only_namespace(area, [args for _name, args in runs])
    if isinstance(results, str):
        pytest.skip(results)
    assert not (area / "probe").exists()
    for (name, args), want, same, (code, out, escaped) in zip(runs, expected, stable, results):
        assert escaped is None, f"crit-plus {' '.join(args)} on a read-only mount:\n{escaped}"
        assert code == want.code, \
            f"crit-plus {' '.join(args)}: exit {code} on a read-only mount, {want.code} otherwise"
        # output that does not vary from run to run (timings) must match; report's host
        # facts differ inside the mount namespace (its mountinfo)
        if same and not COMMANDS[name].gathers:
            assert out.encode("latin-1") == want.out, \
                f"crit-plus {' '.join(args)} printed something else on a read-only mount"
    assert sum(stable) > len(stable) // 2, "most outputs should not vary from run to run"


# -- -o never replaces an input (issue 25) -------------------------------------------------------

def _refusals(ck, archive):
    process = crit_plus.open_checkpoint(ck).process(12525)
    heap = hex(next(m for m in process.vmas if m.kind == "heap").start)
    return [
        ["decode", "-i", ck / "pstree.img", "-o", ck / "pstree.img"],
        ["decode", "-i", ck / "pstree.img", "-o", ck / "link-to-pstree"],  # a link to it
        ["decode", "-i", ck / "core-12525.img", "-o", ck / "core.json"],  # beside it, new
        ["decode", "-i", ck / "core-12525.img", "-o", ck.parent / "c.json"],  # by backup.yaml
        ["encode", "-i", ck.parent / "pstree.json", "-o", ck.parent / "pstree.json"],
        ["mem", "read", ck, "12525", heap, "64", "-o", ck / "pages-3.img"],
        ["mem", "read", ck, "12525", heap, "64", "-o", ck / "new.bin"],  # inside, new
        ["mem", "dump", ck, "12525", "--vma", heap, "-o", ck / "pages-3.img"],
        ["mem", "dump", ck, "12525", "--vma", heap, "-o", ck / "parent" / "x.bin"],
        ["mem", "dump", archive, "12525", "--vma", heap, "-o", archive],
    ]


def test_an_output_never_replaces_an_input(fixture_root, tmp_path):
    """``decode -i D/pstree.img -o D/pstree.img``, ``encode -o``, ``mem read -o`` and
    ``mem dump -o D/pages-3.img`` succeeded and overwrote the checkpoint: now one line,
    exit 2, and nothing under the area changes."""
    area = tmp_path / "area"
    ck = area / "ck"
    shutil.copytree(fixture_root / "service-a", ck, symlinks=True)
    shutil.copytree(fixture_root / "service-a", area / "older", symlinks=True)
    (area / "backup.yaml").write_text("name: ck\n")  # area is ck's owner, as in LXD
    (ck / "parent").symlink_to("../older")
    (ck / "link-to-pstree").symlink_to("pstree.img")
    (area / "pstree.json").write_text(invoke(["decode", "-i", str(ck / "pstree.img")]).out
                                      .decode())
    archive = area / "ck.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(fixture_root / "service-a", arcname="checkpoint")
    before = damage.tree_state(area)
    for args in _refusals(ck, archive):
        outcome = invoke([str(arg) for arg in args])
        assert outcome.code == 2, outcome.describe()
        assert outcome.err.count("\n") == 1 and outcome.err.startswith("crit-plus: "), \
            outcome.describe()
        assert "never" in outcome.err and "write it elsewhere" in outcome.err
        assert damage.tree_state(area) == before, f"{args} changed the area"
    out = tmp_path / "elsewhere.json"  # the same commands write where they may
    assert invoke(["decode", "-i", str(ck / "pstree.img"), "-o", str(out)]).code == 0
