"""``validate``: every check fires on a damaged copy of a real checkpoint and stays quiet
on the untouched one.

The damaged copies are the real fixtures copied into ``tmp_path`` and broken the way
copies break (a truncated pages file, a deleted ghost image, a corrupted pagemap run,
an edited pstree...).  Images are edited with pycriu's message classes and written back
with CRIU's framing (``tests.synth.rewrite_image``).  Synthetic images appear only where
no fixture can show the thing (a ``cpuinfo.img``, plugins in the inventory, a parent/
chain).  Target checks run against the LXD container's real ``rootfs/`` (unpacked with
its recorded modes) and a fake host root (``/proc``, ``/sys``, ``/usr/lib/criu``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

import crit_plus
from crit_plus.analysis import elf
from crit_plus.analysis.host import XSAVE_FLAGS, probe_host, xsave_mask_from_flags
from crit_plus.sources.logs import release_tuple
from crit_plus.analysis.validate import default_target_root, validate
from crit_plus.analysis.validate_catalog import CHECKS, STAGES
from crit_plus.opening import open_source
from decoders.flags import VmaStatus
from tests.cli import run_cli
from tests.conftest import FIXTURES, ROOT
from tests.test_host import SMALLER_HOSTS
from tests.synth import image_bytes, message, read_messages, rewrite_image

SA = "service-a"
SO = "service-old"
SC = "service-c"
WEB = "lxd-web/var/lib/lxd/storage-pools/default/containers/web/state"
WEB_BEFORE = "lxd-web/var/lib/lxd/storage-pools/default/containers-snapshots/web/before/state"
DEB = "lxd-deb/var/lib/lxd/storage-pools/default/containers-snapshots/deb/s2/state"
ALL = (SA, "service-b", SC, SO, WEB, WEB_BEFORE,
       "lxd-web/var/lib/lxd/storage-pools/default/containers-snapshots/web/after/state",
       "lxd-deb/var/lib/lxd/storage-pools/default/containers-snapshots/deb/s1/state", DEB)
#: CPU flags of a host that has every XSAVE component the fixtures' threads used.
FULL_FLAGS = "fpu sse sse2 avx avx2 avx512f pku xsave"


# -- helpers ------------------------------------------------------------------------------------


def copy_of(fixture_root, key, tmp_path):
    """A private copy of fixture checkpoint ``key`` (its images directory)."""
    target = tmp_path / "ck"
    shutil.copytree(fixture_root / key, target, symlinks=True)
    return target


def run_validate(directory, **kwargs):
    return validate(crit_plus.open_checkpoint(directory), **kwargs)


def edit(name, change):
    """A damage: rewrite image ``name`` after ``change(messages)``."""
    return lambda ck: rewrite_image(ck / name, change)


def delete(name):
    return lambda ck: (ck / name).unlink()


def set_fields(index, **fields):
    """A message change: set ``fields`` on message ``index``."""
    def change(messages):
        for key, value in fields.items():
            setattr(messages[index], key, value)
    return change


def set_everywhere(**fields):
    """A message change: set ``fields`` on every message."""
    def change(messages):
        for msg in messages:
            for key, value in fields.items():
                setattr(msg, key, value)
    return change


def truncate(name, by):
    def damage(ck):
        path = ck / name
        os.chmod(path, 0o644)
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size - by)
    return damage


def corrupt_magic(name):
    def damage(ck):
        path = ck / name
        os.chmod(path, 0o644)
        data = bytearray(path.read_bytes())
        data[4:8] = b"\xde\xad\xbe\xef"
        path.write_bytes(bytes(data))
    return damage


def copy_image(source, name):
    return lambda ck: shutil.copyfile(ck / source, ck / name)


def link_parent(target):
    return lambda ck: os.symlink(target, ck / "parent")


def file_entry(messages, file_id):
    return next(msg for msg in messages if msg.id == file_id)


def first_vma(status_bit):
    def change(messages):
        vma = next(v for v in messages[0].vmas if v.status & status_bit)
        vma.shmid = 999999
    return change


def pagemap_last_outside(ck):
    """Move the last pagemap run of 12525 past every VMA."""
    _magic, _head, (mm,) = read_messages(ck / "mm-12525.img")
    end = max(vma.end for vma in mm.vmas)

    def change(messages):
        messages[-1].vaddr = end + 0x100000
    rewrite_image(ck / "pagemap-12525.img", change)


def swap(first, second, field=None):
    def change(messages):
        items = getattr(messages[0], field) if field else messages
        a, b = items[first], items[second]
        if field:
            a_copy = type(a)()
            a_copy.CopyFrom(a)
            a.CopyFrom(b)
            b.CopyFrom(a_copy)
        else:
            items[first], items[second] = b, a
    return change


def overlap_second_vma(messages):
    vmas = messages[0].vmas
    vmas[1].start = vmas[0].end - 4096


def invert_last_vma(messages):
    vma = messages[0].vmas[-1]
    vma.start, vma.end = vma.end, vma.start


def write_cpuinfo(ck, xfeatures=0xE7):
    entry = message("cpuinfo_x86_entry", vendor_id=1, cpu_family=6, model=1, stepping=1,
                    capability_ver=2, capability=[0] * 4, xfeatures_mask=xfeatures)
    (ck / "cpuinfo.img").write_bytes(image_bytes("CPUINFO", [message("cpuinfo_entry",
                                                                    x86_entry=[entry])]))


def add_plugin(messages):
    messages[0].plugins_entry.plugins.append("amdgpu_plugin")


def mark_extern(file_id):
    def change(messages):
        file_entry(messages, file_id).usk.uflags = 1
    return change


def lsm_profile(ck):
    rewrite_image(ck / "inventory.img", set_fields(0, lsmtype=2))  # APPARMOR
    rewrite_image(ck / "core-12525.img", lambda m: setattr(
        m[0].thread_core.creds, "lsm_profile", "crit-plus-test"))


def duplicate_child(messages):
    extra = type(messages[1])()
    extra.CopyFrom(messages[1])
    messages.append(extra)


def nested_broken_parent(ck):
    """parent/ is a real pre-dump whose own parent/ dangles."""
    predump = ck.parent / "predump"
    predump.mkdir()
    os.symlink("gone", predump / "parent")
    os.symlink("../predump", ck / "parent")


# -- every check, firing on a damaged copy of a real checkpoint --------------------------------

#: (code, fixture, damage); the untouched fixture must not report ``code``.
DAMAGES = [
    ("missing-image", SA, delete("core-12528.img")),
    ("missing-image", SA, delete("mm-12528.img")),
    ("missing-image", SA, delete("ids-12528.img")),
    ("missing-image", SA, delete("fs-12528.img")),
    ("missing-image", SA, delete("pagemap-12528.img")),
    ("missing-image", SA, delete("core-12530.img")),  # a thread's core
    ("bad-image", SA, corrupt_magic("seccomp.img")),
    ("bad-image", SA, truncate("core-12529.img", 3)),
    ("bad-image", SA, copy_image("mm-12528.img", "timens-0.img")),  # magic does not match name
    ("bad-image", WEB, truncate("mountpoints-13.img", 5)),
    ("orphan", SA, edit("pstree.img", set_fields(1, ppid=99999))),
    ("pid-cycle", SA, edit("pstree.img", set_fields(0, ppid=12528))),
    ("many-roots", SA, edit("pstree.img", set_fields(1, ppid=0))),
    ("duplicate-pid", SA, edit("pstree.img", duplicate_child)),
    ("duplicate-tid", SA, edit("pstree.img", lambda m: m[1].threads.append(12529))),
    ("no-task-state", SA, edit("core-12528.img", lambda m: m[0].ClearField("tc"))),
    ("zombie-images", SA, edit("core-12528.img", lambda m: setattr(m[0].tc, "task_state", 2))),
    ("no-fdinfo", SA, delete("fdinfo-3.img")),
    ("unresolved-fd", SA, edit("fdinfo-3.img", set_fields(3, id=999999))),
    ("unresolved-file", SA, edit("fs-12528.img", set_fields(0, cwd_id=999999))),
    ("unresolved-file", SA, edit("mm-12528.img", set_fields(0, exe_file_id=999999))),
    ("unresolved-vma-file", SA, edit("mm-12525.img", first_vma(VmaStatus.FILE_PRIVATE))),
    ("missing-ghost", SA, delete("ghost-file-1.img")),
    ("missing-memfd-inode", SA, edit("memfd.img", lambda m: [])),
    ("missing-tty-info", WEB, delete("tty-info.img")),
    ("empty-file-entry", SA, edit("files.img", lambda m: file_entry(m, 24).ClearField("usk"))),
    ("missing-pages", SA, delete("pages-3.img")),
    ("pages-size", SA, truncate("pages-4.img", 4096)),
    ("pagemap-unsorted", SA, edit("pagemap-12525.img", swap(1, 2))),
    ("pagemap-overlap", SA, edit("pagemap-12525.img", lambda m: setattr(m[3], "vaddr",
                                                                         m[2].vaddr))),
    ("pagemap-unaligned", SA, edit("pagemap-12525.img", lambda m: setattr(
        m[1], "vaddr", m[1].vaddr + 8))),
    ("pagemap-empty-entry", SA, edit("pagemap-12525.img", set_fields(1, nr_pages=0))),
    ("pagemap-outside-vma", SA, pagemap_last_outside),
    ("parent-pages", SA, edit("pagemap-12525.img", set_fields(1, flags=1))),  # PE_PARENT
    ("missing-shmem", SA, delete("pagemap-shmem-2161.img")),
    ("vma-overlap", SA, edit("mm-12525.img", overlap_second_vma)),
    ("vma-unsorted", SA, edit("mm-12525.img", swap(0, 1, "vmas"))),
    ("vma-empty", SA, edit("mm-12525.img", invert_last_vma)),
    ("parent-link-broken", SA, link_parent("no-such-predump")),
    ("parent-link-broken", SA, nested_broken_parent),
    ("parent-loop", SA, link_parent(".")),
    ("inventory-version", SA, edit("inventory.img", set_fields(0, img_version=3))),
    ("inventory-too-old", SA, edit("inventory.img", set_fields(0, fdinfo_per_id=False))),
    ("root-cg-set", SA, edit("inventory.img", set_fields(0, root_cg_set=0))),
    ("no-processes", SA, edit("pstree.img", lambda m: [])),
    ("pstree-order", SA, edit("pstree.img", lambda m: list(reversed(m)))),
    ("arch-mixed", SA, edit("core-12529.img", set_fields(0, mtype=3))),  # AARCH64
    ("pidns-init", SA, edit("ids-12525.img", set_fields(0, pid_ns_id=99))),
    ("unresolved-peer", SA, edit("files.img", lambda m: setattr(file_entry(m, 24).usk,
                                                                 "peer", 424242))),
    ("missing-tcp-stream", SA, delete("tcp-stream-2f478.img")),
    ("stray-image", SA, copy_image("mm-12528.img", "mm-4242.img")),
    ("stray-image", SA, copy_image("fdinfo-3.img", "fdinfo-77.img")),
    ("unused-pages", SA, copy_image("pages-1.img", "pages-99.img")),
    ("needs-tcp-close", SA, edit("inventory.img", set_fields(0, tcp_close=True))),
    ("needs-allow-uprobes", SA, edit("inventory.img", set_fields(0, allow_uprobes=True))),
    ("needs-plugin", SA, edit("inventory.img", add_plugin)),
    ("needs-ext-unix-sk", SA, edit("files.img", mark_extern(25))),
    ("needs-shell-job", SA, edit("pstree.img", set_everywhere(sid=4242))),
    ("needs-cpu-cap", SA, write_cpuinfo),
]


@pytest.mark.parametrize("case", DAMAGES, ids=[f"{c[0]}-{i}" for i, c in enumerate(DAMAGES)])
def test_check_fires_on_a_damaged_copy(case, fixture_root, tmp_path):
    code, key, damage = case
    ck = copy_of(fixture_root, key, tmp_path)
    damage(ck)
    report = run_validate(ck)
    found = [f for f in report.findings if f.code == code]
    assert found, f"{code} did not fire; got {sorted(report.codes())}"
    expected = CHECKS[code].severity
    if expected is not None:
        assert {f.severity for f in found} == {expected}
    for finding in found:
        assert finding.stage == CHECKS[code].stage
        assert finding.message and finding.where and finding.fix
        assert "{" not in (finding.criu_says or "") + finding.fix  # templates filled


@pytest.mark.parametrize("damage, where, says", [
    (link_parent("no-such-predump"), "parent", "points at no-such-predump, which does not exist"),
    (nested_broken_parent, "parent/parent", "points at gone, which does not exist"),
    (link_parent("core-12525.img"), "parent", "points at core-12525.img, which is not a "
                                              "directory"),
    (link_parent("."), "parent", "leads back to"),
])
def test_parent_link_findings_name_the_link(damage, where, says, fixture_root, tmp_path):
    """The parent/ chain's findings come from the graph; validate names the link (``path``)."""
    ck = copy_of(fixture_root, SA, tmp_path)
    damage(ck)
    finding, = [f for f in run_validate(ck).findings if f.code.startswith("parent-")]
    assert finding.where == where and says in finding.message
    assert finding.path == os.path.join(ck, where)


@pytest.mark.parametrize("key", sorted({key for _c, key, _d in DAMAGES}))
def test_damaged_checks_are_quiet_on_the_untouched_fixture(key, checkpoint_dirs):
    report = run_validate(checkpoint_dirs[key])
    damaged_here = {code for code, k, _d in DAMAGES if k == key}
    inherent = {"needs-tcp-established", "needs-inherit-tty", "lxd-console", "needs-root",
                "needs-ext-mount", "needs-ext-mount-auto"}  # what these dumps do need
    assert not (report.codes() & damaged_here) - inherent


@pytest.mark.parametrize("key", ALL)
def test_untouched_fixtures_have_no_integrity_findings(key, checkpoint_dirs):
    report = run_validate(checkpoint_dirs[key])
    assert [f for f in report.findings if f.stage == "integrity"] == []
    assert not report.errors or report.codes("error") == {"lxd-console"}


@pytest.mark.parametrize("pages,says", [("pages-1.img", "Can't read mapping page ..."),
                                        ("pages-3.img", None)])
def test_a_short_pages_image_says_what_criu_does(pages, says, fixture_root, tmp_path):
    """Shared memory (pages-1.img, of pagemap-shmem-2161.img): CRIU logs the read error and
    goes on; private memory (pages-3.img, of pagemap-12525.img): CRIU prints nothing and its
    restore never finishes (both seen on real restores in tests/test_live_validate.py)."""
    ck = copy_of(fixture_root, SA, tmp_path)
    truncate(pages, 4096)(ck)
    found = [f for f in run_validate(ck).findings if f.code == "pages-size"]
    assert [(f.severity, f.criu_says) for f in found] == [("error", says)]


@pytest.mark.parametrize("pages", ["pages-1.img", "pages-4.img"])
def test_a_longer_pages_image_is_a_warning_criu_says_nothing_about(pages, fixture_root,
                                                                   tmp_path):
    ck = copy_of(fixture_root, SA, tmp_path)
    os.chmod(ck / pages, 0o644)
    with open(ck / pages, "ab") as handle:
        handle.write(bytes(8192))
    found = [f for f in run_validate(ck).findings if f.code == "pages-size"]
    assert [(f.severity, f.criu_says) for f in found] == [("warning", None)]
    assert "A longer image holds bytes no pagemap lists" in found[0].fix


def test_a_bad_image_names_its_offset(fixture_root, tmp_path):
    ck = copy_of(fixture_root, SA, tmp_path)
    truncate("core-12529.img", 3)(ck)
    finding = next(f for f in run_validate(ck).findings if f.code == "bad-image")
    assert finding.image == "core-12529.img" and finding.offset is not None


def test_an_image_the_restore_never_reads_is_only_a_warning(fixture_root, tmp_path):
    ck = copy_of(fixture_root, SC, tmp_path)
    truncate("stats-restore", 3)(ck)
    finding = next(f for f in run_validate(ck).findings if f.code == "bad-image")
    assert finding.severity == "warning" and finding.image == "stats-restore"


def test_a_damaged_pagemap_names_the_process(fixture_root, tmp_path):
    ck = copy_of(fixture_root, SA, tmp_path)
    pagemap_last_outside(ck)
    finding = next(f for f in run_validate(ck).findings if f.code == "pagemap-outside-vma")
    assert finding.pid == 12525 and finding.image == "pagemap-12525.img"


# -- requirements the untouched fixtures really have ---------------------------------------------

#: (code, fixture where it must fire, fixture where it must not)
PRESENT = [
    ("needs-tcp-established", SA, SO),
    ("needs-inherit-tty", WEB, SA),
    ("lxd-console", WEB, SA),
    ("needs-root", WEB, SA),
    ("needs-ext-mount", WEB, SA),
    ("needs-ext-mount-auto", WEB, SA),
    ("needs-file-locks", DEB, WEB),
]


@pytest.mark.parametrize("code,fires_on,quiet_on", PRESENT)
def test_requirement_follows_the_real_dump(code, fires_on, quiet_on, checkpoint_dirs):
    assert code in run_validate(checkpoint_dirs[fires_on]).codes()
    assert code not in run_validate(checkpoint_dirs[quiet_on]).codes()


def test_requirements_name_the_options(checkpoint_dirs):
    options = {r.option for r in run_validate(checkpoint_dirs[SA]).requirements}
    assert options == {"--tcp-established"}
    with open_source(checkpoint_dirs[WEB]) as opened:
        report = validate(opened.checkpoint, source=opened.source)
    given = {r.option: r.provided_by for r in report.requirements}
    assert given["--root DIR"] == "LXC" and given["--ext-mount-map auto"] == "LXC"
    assert given["--inherit-fd fd[N]:tty[8800:4b]"] is None  # LXD cannot give it


def test_lxd_stateful_stop_names_the_console_requirement(checkpoint_dirs):
    """The real `lxc stop web --stateful` whose `lxc start` failed on its console."""
    with open_source(checkpoint_dirs[WEB]) as opened:
        report = validate(opened.checkpoint, source=opened.source)
    console = next(f for f in report.findings if f.code == "lxd-console")
    assert console.severity == "error" and report.verdict == "fail"
    assert "console" in console.message and "tty[8800:4b]" in console.message
    assert console.criu_says == "lxc.console.path configured on source host but not target"
    assert "lxc start --stateless web" in console.fix
    # what LXD logged when the restore failed is quoted, and matches the prediction
    logged = [f for f in report.findings if f.code == "manager-restore-failed"]
    assert any(console.criu_says in f.message for f in logged)
    # one failed restore (lxc.log's 4 ERROR lines of one run): one finding, its lines as
    # evidence, the decisive one (the console) first
    (restore,) = logged
    assert restore.message.index(console.criu_says) < restore.message.index("exited 1")
    assert "the same restore, 4 error lines" in restore.message
    tty = next(f for f in report.findings if f.code == "needs-inherit-tty")
    assert "tty[8800:4b]" in tty.message and tty.pid == 1


def test_console_finding_goes_with_tty_info(fixture_root, tmp_path):
    ck = copy_of(fixture_root, WEB, tmp_path)
    (ck / "tty.info").unlink()
    assert "lxd-console" not in run_validate(ck).codes()


def test_manager_restore_failed_reads_the_logs(checkpoint_dirs):
    with open_source(checkpoint_dirs[WEB]) as opened:
        assert "manager-restore-failed" in validate(opened.checkpoint,
                                                    source=opened.source).codes()
    # service-c's restore.log holds an Error line (rlimit's, known noise), and that
    # restore succeeded
    with open_source(checkpoint_dirs[SC]) as opened:
        restore, = [log for log in opened.source.logs if log.name == "restore.log"]
        assert "RLIMIT_NOFILE" in restore.path.read_text() and not restore.errors
        assert "manager-restore-failed" not in validate(opened.checkpoint,
                                                        source=opened.source).codes()


WEB_AFTER = "lxd-web/var/lib/lxd/storage-pools/default/containers-snapshots/web/after/state"


@pytest.mark.parametrize("snapshot", [WEB_BEFORE, WEB_AFTER])
def test_a_later_failed_restore_is_not_a_snapshots(checkpoint_dirs, snapshot):
    """liblxc's failed restore in lxd-web is of the instance's later stateful stop (its
    state/, CRIU run 806c06c5...), not of a snapshot dumped before it."""
    with open_source(checkpoint_dirs[snapshot]) as opened:
        report = validate(opened.checkpoint, source=opened.source)
    assert "manager-restore-failed" not in report.codes()
    console = next(f for f in report.findings if f.code == "lxd-console")
    assert "shows exactly this failure" not in console.message
    with open_source(checkpoint_dirs[WEB]) as opened:
        report = validate(opened.checkpoint, source=opened.source)
    console = next(f for f in report.findings if f.code == "lxd-console")
    assert "shows exactly this failure" in console.message


# -- the target: a real rootfs and a fake host ----------------------------------------------------


@pytest.fixture(scope="module")
def web_tree(tmp_path_factory):
    """lxd-web unpacked with the modes its archive records (the session fixture is
    read-only, which changes file modes)."""
    root = tmp_path_factory.mktemp("lxd-web")
    with tarfile.open(FIXTURES / "lxd-web.tar.gz") as archive:
        members = [m for m in archive.getmembers() if m.isreg() or m.isdir() or m.issym()]
        archive.extractall(root, members=members, filter="data")
        for member in members:
            if not member.issym():
                os.chmod(root / member.name, member.mode & 0o7777)
    return root / "lxd-web"


def web_state(web_tree):
    return web_tree / WEB.split("/", 1)[1]


def web_rootfs(web_tree, tmp_path):
    """A private copy of the container's rootfs, modes kept."""
    target = tmp_path / "rootfs"
    shutil.copytree(web_state(web_tree).parent / "rootfs", target, symlinks=True)
    return target


def cgroup_controllers(state):
    wanted = {}
    _magic, _head, messages = read_messages(os.path.join(state, "cgroup.img"))
    for msg in messages:  # the image itself, not the graph
        for cgset in msg.sets:
            for ctl in cgset.ctls:
                wanted.setdefault(ctl.name, set()).add(ctl.path)
    return wanted


def make_host(root, *, flags=FULL_FLAGS, kernel="6.18.44-generic", arch="x86_64", pids=(),
              controllers=None, drop=(), paths=(), lsm=None, plugins=(),
              criu=("4.2.1", "/usr/sbin/criu"), cgroup_paths=True):
    """A fake host under ``root``; returns its HostFacts."""
    root = Path(root)
    (root / "proc/sys/kernel").mkdir(parents=True, exist_ok=True)
    if flags is not None:
        (root / "proc/cpuinfo").write_text(f"vendor_id\t: GenuineIntel\nflags\t\t: {flags}\n")
    (root / "proc/sys/kernel/osrelease").write_text(kernel + "\n")
    (root / "proc/sys/kernel/arch").write_text(arch + "\n")
    for pid in pids:
        (root / "proc" / str(pid)).mkdir()
    controllers = controllers or {}
    v1 = sorted(name for name in controllers if name and not name.startswith("name=")
                and name not in drop)
    (root / "proc/cgroups").write_text("#subsys_name\thierarchy\tnum_cgroups\tenabled\n" +
                                       "".join(f"{n}\t{i + 1}\t1\t1\n" for i, n in enumerate(v1)))
    cgroup = root / "sys/fs/cgroup"
    (cgroup / "unified").mkdir(parents=True, exist_ok=True)
    (cgroup / "unified/cgroup.controllers").write_text("")
    for name, wanted_paths in controllers.items():
        if name in drop:
            continue
        base = cgroup / ("unified" if name == "" else name.replace("name=", ""))
        base.mkdir(parents=True, exist_ok=True)
        for path in wanted_paths if cgroup_paths else ():
            (base / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for path in paths:
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).touch()
    if lsm == "APPARMOR":
        (root / "sys/kernel/security/apparmor").mkdir(parents=True, exist_ok=True)
    for plugin in plugins:
        (root / "usr/lib/criu").mkdir(parents=True, exist_ok=True)
        (root / f"usr/lib/criu/{plugin}.so").touch()
    return probe_host(root, criu=criu)


WEB_MOUNT_SOURCES = ("/dev/zero", "/dev/urandom", "/dev/tty", "/dev/random", "/dev/null",
                     "/dev/full", "/var/lib/lxd/shmounts/web")


def web_host(web_tree, root, **changes):
    """A fake host with everything lxd-web's stateful stop needs, but ``changes``."""
    state = web_state(web_tree)
    settings = dict(controllers=cgroup_controllers(state), paths=WEB_MOUNT_SOURCES)
    settings.update(changes)
    return make_host(root, **settings)


def target_codes(report):
    return {f.code for f in report.findings if f.stage == "target"}


def test_target_checks_are_quiet_on_the_real_rootfs_and_a_matching_host(web_tree, tmp_path):
    state = web_state(web_tree)
    host = web_host(web_tree, tmp_path / "host")
    with open_source(state) as opened:
        root = default_target_root(opened.checkpoint, opened.source)
        assert Path(root) == state.parent / "rootfs"
        report = validate(opened.checkpoint, source=opened.source, target_root=root, host=host)
    assert target_codes(report) == set()
    checked = [f for f in opened.checkpoint.files if f.kind == "file"]
    assert any(f.path == "/bin/busybox" for f in checked)  # build-id and size were compared
    # without a manager, cgroup paths are checked too, and exist
    report = run_validate(state, target_root=state.parent / "rootfs", host=host)
    assert target_codes(report) == set()


def _blob(rootfs):
    path = rootfs / "srv/cache/blob"
    os.chmod(path, 0o644)
    return path


def _flip_build_id(rootfs):
    """Change one byte of busybox's build-id note: same size, another build-id."""
    path = rootfs / "bin/busybox"
    data = bytearray(path.read_bytes())
    found = elf.build_id_of(bytes(data[:elf.SCAN_SIZE]))
    at = bytes(data).find(found)
    data[at] ^= 0xFF
    mode = path.stat().st_mode
    os.chmod(path, 0o755)
    path.write_bytes(bytes(data))
    os.chmod(path, stat.S_IMODE(mode))


#: (code, rootfs damage) against the real rootfs
ROOTFS_DAMAGES = [
    ("file-missing", lambda r: _blob(r).unlink()),
    ("file-size", lambda r: _blob(r).open("ab").write(b"x")),
    ("file-mode", lambda r: os.chmod(r / "etc/init.d/ticker", 0o700)),
    ("file-mode", lambda r: os.chmod(r / "srv/www", 0o700)),  # a directory's mode
    ("file-build-id", _flip_build_id),
    ("mountpoint-missing", lambda r: (r / "sys").rmdir()),
]


@pytest.mark.parametrize("code,damage", ROOTFS_DAMAGES, ids=[c for c, _d in ROOTFS_DAMAGES])
def test_rootfs_checks_fire(code, damage, web_tree, tmp_path):
    rootfs = web_rootfs(web_tree, tmp_path)
    assert target_codes(run_validate(web_state(web_tree), target_root=rootfs)) == set()
    damage(rootfs)
    report = run_validate(web_state(web_tree), target_root=rootfs)
    assert target_codes(report) == {code}
    finding = next(f for f in report.findings if f.code == code)
    assert finding.path and finding.criu_says and "{" not in finding.criu_says


def test_file_size_says_what_criu_says(web_tree, tmp_path):
    rootfs = web_rootfs(web_tree, tmp_path)
    _blob(rootfs).open("ab").write(b"xy")
    finding = next(f for f in run_validate(web_state(web_tree), target_root=rootfs).findings
                   if f.code == "file-size")
    assert finding.criu_says == "File srv/cache/blob has bad size 262146 (expect 262144)"
    assert finding.pid == 20 and finding.fd == 0


def test_build_id_of_another_binary_is_caught(web_tree, tmp_path):
    """/bin/true in busybox's place, padded to busybox's size: same size, other build-id."""
    true = Path("/bin/true")
    if elf.build_id(true) is None:
        pytest.skip("/bin/true has no build-id here")
    rootfs = web_rootfs(web_tree, tmp_path)
    busybox = rootfs / "bin/busybox"
    size = busybox.stat().st_size
    data = true.read_bytes()
    busybox.write_bytes(data + b"\0" * (size - len(data)))
    report = run_validate(web_state(web_tree), target_root=rootfs)
    assert "file-build-id" in report.codes()


#: (code, fixture, image damage or None, host settings that fire, host settings that do not)
HOST_CASES = [
    ("pid-busy", SA, None, dict(pids=(12530,)), dict(pids=(1, 2))),
    ("arch-mismatch", SA, None, dict(arch="aarch64"), dict(arch="x86_64")),
    ("cpu-xsave", SA, None, dict(flags="fpu sse avx pku"), dict(flags=FULL_FLAGS)),
    ("cpuinfo-xfeatures", SA, write_cpuinfo, dict(flags="fpu sse avx"),
     dict(flags=FULL_FLAGS)),
    ("kernel-older", WEB, None, dict(kernel="5.15.0-91-generic"), dict(kernel="6.18.44")),
    ("criu-older", WEB, None, dict(criu=("3.17.1", "/usr/sbin/criu")),
     dict(criu=("4.2.1", "/usr/sbin/criu"))),
    ("criu-missing", SA, None, dict(criu=(None, None)), dict(criu=(None, "/usr/sbin/criu"))),
    ("lsm-missing", SA, lsm_profile, dict(lsm=None), dict(lsm="APPARMOR")),
    ("plugin-missing", SA, edit("inventory.img", add_plugin), dict(plugins=()),
     dict(plugins=("amdgpu_plugin",))),
    ("cgroup-controller", WEB, None, dict(drop=("memory",)), dict(drop=())),
    ("cgroup-path", WEB, None, dict(cgroup_paths=False), dict(cgroup_paths=True)),
    ("ext-mount-source", WEB, None, dict(paths=WEB_MOUNT_SOURCES[:-1]),
     dict(paths=WEB_MOUNT_SOURCES)),
]


@pytest.mark.parametrize("case", HOST_CASES, ids=[c[0] for c in HOST_CASES])
def test_host_checks_fire_and_stay_quiet(case, fixture_root, web_tree, tmp_path):
    code, key, damage, firing, quiet = case
    ck = copy_of(fixture_root, key, tmp_path)
    if damage is not None:
        damage(ck)
    controllers = cgroup_controllers(ck) if key == WEB else {}
    paths = WEB_MOUNT_SOURCES if key == WEB else ()
    for settings, fires in ((firing, True), (quiet, False)):
        options = dict(controllers=controllers, paths=paths)
        options.update(settings)
        host = make_host(tmp_path / f"host-{fires}", **options)
        report = run_validate(ck, host=host)
        if fires:
            found = [f for f in report.findings if f.code == code]
            assert found, f"{code} did not fire: {sorted(report.codes())}"
            assert found[0].fix and "{" not in found[0].fix
        else:
            assert code not in report.codes()


def test_pid_busy_only_in_the_hosts_pid_namespace(checkpoint_dirs, tmp_path):
    """lxd-web runs in its own pid namespace: its pid 1 never collides with the host's."""
    host = make_host(tmp_path / "h", pids=(1, 5, 6, 7, 8, 19, 20, 25))
    assert "pid-busy" not in run_validate(checkpoint_dirs[WEB], host=host).codes()
    report = run_validate(checkpoint_dirs[SA], host=host)
    assert "pid-busy" not in report.codes()
    host = make_host(tmp_path / "h2", pids=(12525, 12531))
    found = [f for f in run_validate(checkpoint_dirs[SA], host=host).findings
             if f.code == "pid-busy"]
    assert {f.pid for f in found} == {12525, 12531}
    assert found[0].criu_says == "Can't fork for 12525: File exists"


def test_criu_older_is_an_error_across_the_pagemap_format_change(checkpoint_dirs, tmp_path):
    def severity(version):
        host = make_host(tmp_path / version, criu=(version, "/usr/bin/criu"))
        with open_source(checkpoint_dirs[WEB]) as opened:
            report = validate(opened.checkpoint, source=opened.source, host=host)
        return next(f.severity for f in report.findings if f.code == "criu-older")

    assert severity("4.1.1") == "error"  # 4.2 moved the pagemap page count
    assert severity("4.2.0") == "warning"


def test_cpu_xsave_names_the_missing_features(checkpoint_dirs, tmp_path):
    host = make_host(tmp_path / "h", flags="fpu sse avx xsave")
    finding = next(f for f in run_validate(checkpoint_dirs[SA], host=host).findings
                   if f.code == "cpu-xsave")
    assert "AVX-512" in finding.message and "avx512f" in finding.fix


def test_without_target_or_host_the_report_says_what_was_skipped(checkpoint_dirs):
    report = run_validate(checkpoint_dirs[SA])
    assert any("target root" in s for s in report.skipped)
    assert any("host" in s for s in report.skipped)


# -- host facts read from a root ------------------------------------------------------------------


def test_host_facts_come_from_the_given_root(tmp_path):
    host = make_host(tmp_path, flags="fpu sse avx", kernel="6.1.0-9-amd64", pids=(4242,),
                     lsm="APPARMOR", plugins=("cuda_plugin",),
                     controllers={"cpu": {"/"}, "": {"/"}}, criu=None)
    assert host.kernel == "6.1.0-9-amd64" and host.machine == "x86_64"
    assert host.cpu_vendor == "GenuineIntel" and "avx" in host.cpu_flags
    assert host.xsave_mask == 0b111 and host.lsm == "APPARMOR"
    assert host.pid_in_use(4242) and not host.pid_in_use(4243)
    assert host.has_plugin("cuda_plugin") and not host.has_plugin("amdgpu_plugin")
    assert host.has_controller("cpu") and not host.has_controller("memory")
    assert host.has_controller("") and host.has_controller("name=systemd")
    assert host.criu_path is None and host.criu_version is None  # not run under a fake root
    (tmp_path / "usr/sbin").mkdir(parents=True)
    (tmp_path / "usr/sbin/criu").touch()
    assert probe_host(tmp_path).criu_path == "/usr/sbin/criu"


def test_xsave_flags_map_to_components():
    assert xsave_mask_from_flags({"fpu", "sse", "avx", "avx512f"}) == 0b11100111
    assert set(XSAVE_FLAGS.values()) >= {"avx", "avx512f", "pku"}
    assert release_tuple("6.18.44-fc-v669") == (6, 18, 44)
    assert release_tuple("4.2.1") > release_tuple("4.1.1")
    assert release_tuple("4.2-rc1") == (4, 2) < release_tuple("4.2.1")  # rc1 is not a patch level
    assert release_tuple("") is None and release_tuple("unknown") is None


# -- ELF build-ids, as CRIU reads them ------------------------------------------------------------


def test_build_id_matches_what_criu_recorded(web_tree):
    """CRIU stored busybox's build-id at dump; reading the real file gives the same bytes."""
    state = web_state(web_tree)
    checkpoint = crit_plus.open_checkpoint(state)
    busybox = next(f for f in checkpoint.files if f.path == "/bin/busybox")
    recorded = elf.words_to_bytes(busybox.entry.detail.build_id)
    found = elf.build_id(state.parent / "rootfs/bin/busybox")
    assert found is not None and len(recorded) == elf.round_up4(len(found))
    assert recorded[:len(found)] == found


def test_build_id_of_non_elf_and_damaged_files(tmp_path):
    assert elf.build_id_of(b"#!/bin/sh\n" * 10) is None
    assert elf.build_id(tmp_path / "nothing") is None
    true = Path("/bin/true").read_bytes()[:elf.SCAN_SIZE]
    assert elf.build_id_of(true[:80]) is None  # program headers cut off


# -- the docs and the catalog agree --------------------------------------------------------------


def _docs_table():
    text = (ROOT / "docs/validate.md").read_text()
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([a-z0-9-]+)` \| (\w+) \| ([\w/]+) \|", line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3), line)
    return rows


def test_docs_table_matches_the_catalog():
    rows = _docs_table()
    assert set(rows) == set(CHECKS)
    for code, check in CHECKS.items():
        stage, severity, line = rows[code]
        assert stage == check.stage, code
        assert severity == (check.severity or "error/warning"), code
        if check.criu_says:
            first = check.criu_says.split(" / ")[0].split("{")[0].strip().replace("`", "")
            assert first.replace("|", "\\|") in line, code


def test_every_check_has_a_firing_test():
    tested = {c for c, _k, _d in DAMAGES} | {c for c, _f, _q in PRESENT} | \
        {c for c, _d in ROOTFS_DAMAGES} | {c[0] for c in HOST_CASES} | {"manager-restore-failed"} \
        | {c[2] for c in SMALLER_HOSTS}  # tests/test_host.py: the checks fingerprints answer
    tested |= {"dump-failed"}  # tests/test_live_dump_failure.py: a real failed CRIU dump
    assert tested == set(CHECKS)
    assert {check.stage for check in CHECKS.values()} == set(STAGES)


def test_every_graph_finding_code_is_in_the_catalog():
    codes = set()
    for module in ("graph.py", "files.py", "memory.py", "findings.py"):
        text = (ROOT / "crit_plus" / module).read_text()
        codes |= set(re.findall(r'(?:ERROR|WARNING|INFO),\s*"([a-z-]+)"', text))
        codes |= set(re.findall(r'code="([a-z-]+)"', text))
        codes |= set(re.findall(r'return None, \("([a-z-]+)"', text))  # PageStore.parent
    assert codes and codes <= set(CHECKS)
    assert {"parent-link-broken", "parent-loop"} <= codes
    assert all(CHECKS[code].graph for code in codes)


# -- the command ----------------------------------------------------------------------------------


def test_cli_exit_codes_and_json(checkpoint_dirs, fixture_root, tmp_path):
    done = run_cli("validate", checkpoint_dirs[SA], "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["schema_version"] == 1 and data["verdict"] == "ok"
    assert {f["code"] for f in data["findings"]} == {"needs-tcp-established"}
    assert set(data["findings"][0]) == {"severity", "code", "stage", "message", "where",
                                        "image", "offset", "entry", "pid", "fd", "path",
                                        "criu_says", "fix", "consequence_of"}
    done = run_cli("validate", checkpoint_dirs[WEB].parent)
    assert done.returncode == 2 and "lxd-console" in done.stdout and "FAIL" in done.stdout
    ck = copy_of(fixture_root, SA, tmp_path)
    mark_extern_edit = edit("files.img", mark_extern(25))
    mark_extern_edit(ck)
    assert run_cli("validate", ck).returncode == 0  # a warning
    strict = run_cli("validate", ck, "--strict", "--format", "json")
    assert strict.returncode == 1 and json.loads(strict.stdout)["verdict"] == "risky"


def test_cli_reports_an_undecodable_inventory_as_an_error(fixture_root, tmp_path):
    ck = copy_of(fixture_root, SA, tmp_path)
    truncate("inventory.img", 7)(ck)
    done = run_cli("validate", ck, "--format", "json")
    assert done.returncode == 2, done.stderr
    data = json.loads(done.stdout)
    assert [f["code"] for f in data["findings"]] == ["bad-image"]
    assert data["findings"][0]["image"] == "inventory.img"


def test_cli_no_verdict_exits_3_apart_from_the_verdicts(tmp_path, service_a):
    """1 and 2 are verdicts (warnings with --strict, errors): an input that is not a
    checkpoint, that does not exist, or wrong usage gives no verdict: 3, one line."""
    for args, words in (((tmp_path,), "not a checkpoint"),
                        ((tmp_path / "nowhere",), "no such file"),
                        ((tmp_path, "--strict"), "not a checkpoint"),
                        ((tmp_path, "--no-such-option"), "see `crit-plus validate --help`"),
                        ((), "Missing argument 'PATH...'")):
        done = run_cli("validate", *args)
        assert done.returncode == 3 and done.stdout == "", (args, done.stderr)
        assert done.stderr.count("\n") == 1 and words in done.stderr, args
        assert done.stderr.startswith("crit-plus: ")
    no_pycriu = run_cli("validate", service_a, env={"CRIT_PLUS_PYCRIU": str(tmp_path)})
    assert no_pycriu.returncode == 3 and "pycriu" in no_pycriu.stderr.lower()


def test_cli_target_root_and_help(web_tree, tmp_path):
    rootfs = web_rootfs(web_tree, tmp_path)
    _blob(rootfs).unlink()
    done = run_cli("validate", web_state(web_tree), "--target-root", rootfs)
    assert done.returncode == 2 and "file-missing" in done.stdout
    assert "Can't open file srv/cache/blob on restore" in done.stdout
    helped = run_cli("validate", "--help")
    assert helped.returncode == 0
    for words in ("--target-root", "--host", "--strict", "Exit codes", "Examples"):
        assert words in helped.stdout


def test_cli_output_survives_head(checkpoint_dirs):
    import subprocess
    import sys

    pipeline = subprocess.run(
        f"{sys.executable} -m crit_plus validate {checkpoint_dirs[WEB]} | head -1", shell=True,
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert pipeline.stderr == ""


# -- never written --------------------------------------------------------------------------------


def _snapshot(top):
    state = {}
    for directory, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue
            info = os.stat(path)
            state[path] = (hashlib.sha256(Path(path).read_bytes()).hexdigest(), info.st_mtime_ns,
                           info.st_size)
    return state


def test_validate_never_writes_into_the_checkpoint(web_tree, tmp_path):
    state = web_state(web_tree)
    before = _snapshot(web_tree)
    host = web_host(web_tree, tmp_path / "host")
    with open_source(state) as opened:
        validate(opened.checkpoint, source=opened.source, target_root=state.parent / "rootfs",
                 host=host)
    run_cli("validate", state.parent, "--host", "--format", "json")
    assert _snapshot(web_tree) == before


def test_page_data_is_never_opened(checkpoint_dirs, monkeypatch, tmp_path):
    """Pages files are only stat-ed: every file validate opens is recorded."""
    import builtins

    opened = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, *args, **kwargs):
        opened.append(os.fspath(file) if not isinstance(file, int) else "")
        return real_open(file, *args, **kwargs)

    def spy_os_open(path, *args, **kwargs):
        opened.append(os.fspath(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    host = make_host(tmp_path / "host")
    for key in (SA, WEB):
        with open_source(checkpoint_dirs[key]) as source:
            validate(source.checkpoint, source=source.source, host=host, target_root=tmp_path)
    assert any(name.endswith("pagemap-12525.img") for name in opened)
    assert not [name for name in opened if re.search(r"/pages-\d+\.img$", name)]


def _fake_criu(directory, version):
    """A program that answers ``--version`` as criu VERSION does."""
    path = directory / f"criu-{version}"
    path.write_text(f"#!/bin/sh\necho 'Version: {version}'\n")
    path.chmod(0o755)
    return path


def _criu_findings(done):
    assert done.returncode in (0, 1, 2), done.stderr
    report = json.loads(done.stdout)
    return [f for f in report["findings"] if f["code"] == "criu-older"], report["skipped"]


def test_host_criu_is_the_one_named(checkpoint_dirs, tmp_path):
    """--criu (or $CRIT_PLUS_CRIU) names the criu that will restore: its version,
    not the one on PATH, is compared with the dump's (4.2.1, from dump.log)."""
    state = checkpoint_dirs[WEB]
    older, same = _fake_criu(tmp_path, "4.1"), _fake_criu(tmp_path, "4.2.1")
    found, skipped = _criu_findings(run_cli("validate", state, "--host", "--criu", older,
                                            "--format", "json"))
    assert [f["path"] for f in found] == [str(older)]
    assert "criu 4.1 is installed" in found[0]["message"]
    found, skipped = _criu_findings(run_cli("validate", state, "--host", "--criu", same,
                                            "--format", "json"))
    assert found == [] and not [s for s in skipped if "criu" in s]
    found, _ = _criu_findings(run_cli("validate", state, "--host", "--format", "json",
                                      env={"CRIT_PLUS_CRIU": str(older)}))
    assert [f["path"] for f in found] == [str(older)]
    missing = run_cli("validate", state, "--host", "--criu", tmp_path / "nothing")
    assert missing.returncode == 3 and "--criu" in missing.stderr and missing.stdout == ""


def test_table_gives_each_finding_its_own_advice_when_it_differs():
    """A group of findings of one code says what CRIU will print and the fix once when
    they are the same for all, else under each finding (they name its own file)."""
    import io

    from crit_plus.analysis.validate import Report, ValidationFinding
    from crit_plus.commands.validate import write_report

    def finding(path, says, fix):
        return ValidationFinding("error", "file-missing", "target", f"{path} is gone", path,
                                 criu_says=says, fix=fix)

    differing = Report("ck", (finding("/a", "Can't open file a", "Put /a back"),
                              finding("/b", "Can't open file b", "Put /b back")), (), ())
    out = io.StringIO()
    write_report(differing, out)
    text = out.getvalue()
    assert text.index("/a is gone") < text.index("Can't open file a") < text.index("/b is gone")
    assert text.index("/b is gone") < text.index("Can't open file b")
    same = Report("ck", (finding("/a", "Connected TCP socket", "Use --tcp-established"),
                         finding("/b", "Connected TCP socket", "Use --tcp-established")), (), ())
    out = io.StringIO()
    write_report(same, out)
    text = out.getvalue()
    assert text.count("CRIU says: Connected TCP socket") == 1
    assert text.index("/b is gone") < text.index("CRIU says")
