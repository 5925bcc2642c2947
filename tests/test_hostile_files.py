"""FIFOs, device nodes and links where a checkpoint, a target root or a copied LXD tree
should hold regular files (issue 25).

Every open of such a path goes through one opener (``crit_plus.files.open_in_tree``
over ``decoders.framing.open_untrusted``): never blocking, never a device node or a
FIFO (refused from ``stat``, before any open), and no symbolic link followed out of the
tree.  The commands run in a subprocess with a timeout: a hang is a failure, not a
stuck suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from crit_plus.files import open_in_tree
from decoders.errors import UnreadableImageError

#: The lxd-web container's state, under the fixture's root.
POOL = "var/lib/lxd/storage-pools/default"
WEB_STATE = f"{POOL}/containers/web/state"
#: What the host files hold in the tests: it must never reach a bundle.
HOST_SECRET = "host-secret-b1c2d3"
TIMEOUT = 120


def _crit_plus(*args, env=None, timeout=TIMEOUT):
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent)] + sys.path))
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "crit_plus", *map(str, args)],
                          capture_output=True, text=True, env=environment, timeout=timeout,
                          check=False, stdin=subprocess.DEVNULL)


@pytest.fixture
def web_root(fixture_root, tmp_path):
    """A writable copy of the lxd-web tree: its ``var/lib/lxd`` and its logs."""
    root = tmp_path / "root"
    shutil.copytree(fixture_root / "lxd-web", root, symlinks=True)
    for path in root.rglob("*"):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)
    return root


@pytest.fixture
def host_secret(tmp_path):
    """A file outside every tree, standing for a host file (``/etc/shadow``)."""
    path = tmp_path / "host" / "secret"
    path.parent.mkdir()
    path.write_text(HOST_SECRET + "\n")
    return path


def _opened(monkeypatch):
    """Paths given to ``os.open`` from now on."""
    seen = []
    real = os.open

    def recording(path, *args, **kwargs):
        seen.append(os.fsdecode(os.fspath(path)))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording)
    return seen


# -- the opener ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "link"])
def test_the_opener_refuses_without_opening(tmp_path, monkeypatch, kind):
    path = tmp_path / "libc.so.6"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        if os.geteuid() != 0:
            pytest.skip("mknod needs root")
        os.mknod(path, 0o600 | 0o020000, os.makedev(1, 3))  # a character device, as /dev/null
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/null")
    seen = _opened(monkeypatch)
    with pytest.raises(UnreadableImageError, match="cannot read: not a regular file but a"):
        open_in_tree(path)
    assert str(path) not in seen  # refused from stat: a device is never opened


def test_links_resolve_inside_the_root(tmp_path, host_secret):
    root = tmp_path / "rootfs"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/libx.so").write_bytes(b"inside")
    (root / "lib").symlink_to("/usr/lib")  # absolute, as in a real root file system
    (root / "etc").mkdir()
    (root / "etc/escape").symlink_to(host_secret)
    (root / "etc/climb").symlink_to("../../host/secret")
    fd, _info = open_in_tree(root / "lib/libx.so", root)
    with open(fd, "rb") as stream:
        assert stream.read() == b"inside"
    for name in ("etc/escape", "etc/climb"):
        with pytest.raises(FileNotFoundError, match="not found inside"):
            open_in_tree(root / name, root)
    with pytest.raises(UnreadableImageError, match="a symbolic link"):
        open_in_tree(root / "etc/escape")  # without a root: the link itself is refused


# -- the console check: tty.info ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["fifo", "device-link"])
def test_tty_info_that_is_a_fifo_or_a_device_does_not_hang_validate(web_root, kind):
    """A FIFO as tty.info made ``validate`` wait for a writer forever."""
    state = web_root / WEB_STATE
    (state / "tty.info").unlink()
    if kind == "fifo":
        os.mkfifo(state / "tty.info")
    else:
        (state / "tty.info").symlink_to("/dev/tty")
    done = _crit_plus("validate", state, "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr and "lxd-console" not in done.stdout


# -- the build-id check: files of the target root ----------------------------------------------

def test_a_fifo_in_the_target_root_does_not_hang_validate(web_root):
    """The build-id check opened every mapped file of the target root: a FIFO where
    busybox should be hung it; now it is a file-mode finding (its type differs)."""
    rootfs = web_root / WEB_STATE / ".." / "rootfs"
    (rootfs / "bin/busybox").unlink()
    os.mkfifo(rootfs / "bin/busybox")
    done = _crit_plus("validate", web_root / WEB_STATE, "--target-root", rootfs,
                      "--format", "json")
    assert done.returncode == 2, done.stderr  # errors: the restore would fail
    assert '"file-mode"' in done.stdout and "/bin/busybox" in done.stdout


def test_no_device_node_of_the_target_root_is_opened(web_root, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    from crit_plus import open_checkpoint
    from crit_plus.analysis.validate import validate

    rootfs = (web_root / WEB_STATE).parent / "rootfs"
    busybox = rootfs / "bin/busybox"
    busybox.unlink()
    os.mknod(busybox, 0o600 | 0o020000, os.makedev(1, 3))
    checkpoint = open_checkpoint(web_root / WEB_STATE)
    seen = _opened(monkeypatch)
    report = validate(checkpoint, target_root=rootfs)
    monkeypatch.undo()
    assert str(busybox) not in seen
    assert "file-mode" in report.codes()


# -- report: the host's files under CRIT_PLUS_ROOT ---------------------------------------------

def _host_files(root):
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text("vendor_id\t: GenuineIntel\nflags\t\t: fpu sse\n")
    (root / "etc/default").mkdir(parents=True)
    return {"mountinfo": root / "proc/self/mountinfo",
            "lxd-bridge": root / "etc/default/lxd-bridge",
            "lxd.log": root / "var/log/lxd/lxd.log"}


def _report(root, output):
    done = _crit_plus("report", "lxd:web", "-o", output, "--criu", "/nonexistent/criu",
                      env={"CRIT_PLUS_ROOT": str(root)})
    assert done.returncode == 0, done.stderr
    with tarfile.open(output) as tar:
        return {member.name.split("/", 1)[1]: tar.extractfile(member).read()
                for member in tar if member.isreg()}


def test_report_follows_no_link_out_of_the_root(web_root, host_secret, tmp_path):
    """Links at var/log/lxd/lxd.log, etc/default/lxd-bridge and proc/self/mountinfo were
    followed to host files, which ended up in the bundle."""
    files = _host_files(web_root)
    for path in files.values():
        path.symlink_to(host_secret)
    (web_root / "etc/default/lxd-bridge").unlink()
    (web_root / "etc/default/lxd-bridge").symlink_to("../../../host/secret")  # by climbing
    (web_root / "var/log/lxd/web/lxc.log").unlink()
    (web_root / "var/log/lxd/web/lxc.log").symlink_to(host_secret)
    members = _report(web_root, tmp_path / "out.tar.gz")
    assert not [name for name, data in members.items() if HOST_SECRET.encode() in data]
    assert "host/mountinfo.txt" not in members and "host/lxd-bridge.txt" not in members


def test_report_does_not_wait_on_fifos(web_root, tmp_path):
    """A FIFO as tty.info, as the daemon's log or as a host file hung ``report``."""
    files = _host_files(web_root)
    for path in files.values():
        os.mkfifo(path)
    (web_root / WEB_STATE / "tty.info").unlink()
    os.mkfifo(web_root / WEB_STATE / "tty.info")
    members = _report(web_root, tmp_path / "out.tar.gz")
    assert "INDEX.md" in members


def test_a_pages_image_linking_to_a_host_file_is_never_read(service_a, host_secret, tmp_path):
    """A ``pages-N.img`` that is a link to a host file (``/etc/shadow``) would show that
    file's bytes as process memory: it is refused like any file that is not regular."""
    copy = tmp_path / "service-a"
    shutil.copytree(service_a, copy)
    pages = sorted(copy.glob("pages-*.img"), key=lambda p: p.stat().st_size)[-1]
    pages.unlink()
    pages.symlink_to(host_secret)
    grep = _crit_plus("mem", "grep", copy, HOST_SECRET)
    assert grep.returncode in (1, 2) and HOST_SECRET not in grep.stdout, grep.stdout
    validate = _crit_plus("validate", copy, "--format", "json")
    assert validate.returncode == 2 and HOST_SECRET not in validate.stdout
    assert f"{pages.name} is a symbolic link, not a regular file" in validate.stdout


# -- an image of a checkpoint directory that is a FIFO with a silent writer ---------------------

@pytest.fixture
def fifo_core(service_a, tmp_path):
    """A copy of service-a whose first ``core-N.img`` is a FIFO held open for writing by a
    background process that never writes: ``(directory, the FIFO)``."""
    copy = tmp_path / "service-a"
    shutil.copytree(service_a, copy, symlinks=True)
    core = sorted(copy.glob("core-*.img"))[0]
    core.unlink()
    os.mkfifo(core)
    writer = subprocess.Popen(["sh", "-c", 'exec 3<>"$0"; exec sleep 600', str(core)])
    try:
        yield copy, core
    finally:
        writer.kill()
        writer.wait()


@pytest.mark.parametrize("command", ["summarize", "ps", "validate"])
def test_a_fifo_image_in_a_checkpoint_directory_is_refused_not_waited_for(fifo_core, command):
    """Images of a checkpoint directory were opened like ``decode -i`` opens a pipe: a FIFO
    whose writer never writes hung every command.  Only an image the user names (``decode``,
    ``show``, ``info``) may be a pipe; in a directory a FIFO is an unreadable image, as a
    directory there is: the same exit code and output, the file named in one line."""
    directory, core = fifo_core
    done = _crit_plus(command, directory, timeout=60)
    said = done.stdout + done.stderr
    assert "Traceback" not in said and core.name in said
    if command != "ps":  # ps only notes that an image is unreadable (validate says which)
        assert [line for line in said.splitlines()
                if "cannot read: not a regular file but a FIFO" in line]
    core.unlink()
    core.mkdir()  # what any other unreadable image gives
    other = _crit_plus(command, directory, timeout=60)
    assert done.returncode == other.returncode
    assert (done.stdout, done.stderr) == (other.stdout.replace("a directory", "a FIFO"),
                                          other.stderr.replace("a directory", "a FIFO"))
