"""Every check ``validate`` runs: its stage, severity, what CRIU will say, and the fix.

One table, so the code, the output and docs/validate.md agree (a test checks
the docs table against it, and another that every check fires on a damaged
copy of a real checkpoint).  ``criu_says`` is the message CRIU (or liblxc)
prints when a restore hits the problem, taken from CRIU 4.2.1's sources
(``criu/*.c``) and liblxc's ``src/lxc/criu.c``; ``{name}`` fields are filled
from the finding (``{criu_path}`` is a file's path as CRIU prints it: relative
to the root, without the leading ``/``; ``...`` stands for what varies).  None
means CRIU prints nothing specific: the restore goes on and the program
misbehaves later, or the restore fails elsewhere.  The messages of the cases
tests/test_live_validate.py damages were checked against real restores.

Stages: ``integrity`` (the images alone), ``requirements`` (options and
external pieces the restore needs), ``target`` (the restore host and the file
system the processes will see).  Codes the graph already reports
(:attr:`crit_plus.graph.Checkpoint.findings`) carry ``graph=True``: validate
reuses those findings and adds the CRIU message and the fix.  ``severity``
None means "error or warning, depending on the case" (the finding says which).

Codes are stable: programs (and issue 10's restore comparisons) key on them.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, replace

from decoders.lazy import LazyPattern

from ..sources.logs import HARMLESS

INTEGRITY, REQUIREMENTS, TARGET = "integrity", "requirements", "target"
STAGES = (INTEGRITY, REQUIREMENTS, TARGET)


@dataclass(frozen=True)
class Check:
    """One kind of finding ``validate`` can report."""

    code: str
    stage: str
    severity: str | None
    what: str
    criu_says: str | None
    fix: str
    graph: bool = False


class _Missing:
    """A template field a finding did not fill: shown as its name in capitals."""

    def __init__(self, name):
        self.name = name

    def __format__(self, spec):
        return self.name.upper()


class _Template(string.Formatter):
    def get_value(self, key, args, kwargs):
        if isinstance(key, str):
            value = kwargs.get(key)
            return _Missing(key) if value is None else value
        return super().get_value(key, args, kwargs)

    def format_field(self, value, spec):
        try:
            return super().format_field(value, spec)
        except (ValueError, TypeError):
            return str(value)


_TEMPLATE = _Template()


def fill(template: str | None, **params) -> str | None:
    """``template`` (a check's CRIU message or fix, a log entry's fix) with its ``{name}``
    fields from ``params``, missing ones shown as NAME: the one filling of catalog text,
    for validate, explain, summarize and report."""
    if template is None:
        return None
    return _TEMPLATE.vformat(template, (), params)


_RECOPY = ("Copy the checkpoint again from the machine that made it: the images are "
           "incomplete or damaged.")
_LXC = "LXD, Incus and lxc-checkpoint pass it themselves."
#: What to do about a container dumped with its console (the lxd-console check's fix and
#: the log entry's, which does not repeat the cause explain shows beside it).
_CONSOLE_FIX = ("Start the container without its state ({manager} start --stateless "
                "{instance}), or restore it by hand with criu restore --inherit-fd "
                "fd[N]:{key}. For future checkpoints set raw.lxc 'lxc.console.path = none' "
                "before dumping.")

CHECKS = {check.code: check for check in (
    # -- integrity: reported by the graph, reused --------------------------------------------
    # -- integrity: the dump itself --------------------------------------------------------------
    Check("dump-failed", INTEGRITY, None,
          "the CRIU dump that wrote these images failed (its log, as `crit-plus explain` reads "
          "it): without inventory.img, which CRIU writes last, the images are partial (error) "
          "and the findings that follow from it are marked as its consequences; with it, the "
          "dump failed in its last steps (warning)", None,
          "Nothing to copy: the dump never finished. Run `crit-plus explain {target}` for why "
          "({log}); fix that and dump again."),
    Check("missing-image", INTEGRITY, "error",
          "an image CRIU writes in every dump is missing", "{says}",
          "Copy {image} from the original checkpoint: CRIU writes it for {scope}. Its restore "
          "reads a missing image as empty (`No {image} image` in its log); then {lacks}",
          graph=True),
    Check("bad-image", INTEGRITY, None,
          "an image does not decode: unknown magic, a magic that does not match its name, "
          "a cut entry, a bad protobuf message",
          "Magic doesn't match for {image} / Read ... bytes while ... expected from {image} / "
          "Unexpected EOF on {image} / Failed unpacking object ... from {image}", _RECOPY,
          graph=True),
    Check("orphan", INTEGRITY, "error", "a process's parent is not in pstree.img",
          "Can't find a parent for {pid}", _RECOPY, graph=True),
    Check("pid-cycle", INTEGRITY, "error", "parent links in pstree.img form a cycle",
          "Can't find a parent for {pid}", _RECOPY, graph=True),
    Check("many-roots", INTEGRITY, "error", "more than one process has parent 0",
          "Parent missed on non-root task with pid {pid}, image corruption!", _RECOPY,
          graph=True),
    Check("duplicate-pid", INTEGRITY, "error", "a pid appears twice in pstree.img",
          None, _RECOPY + " (CRIU stops on an internal assertion.)", graph=True),
    Check("duplicate-tid", INTEGRITY, "error", "a thread id belongs to two processes",
          "Unexpected task {tid} in a tree", _RECOPY, graph=True),
    Check("no-task-state", INTEGRITY, "error", "a leader's core image has no task part (tc)",
          "Core task state data missed", _RECOPY, graph=True),
    Check("zombie-images", INTEGRITY, "info", "a zombie has mm or pagemap images",
          None, "Nothing for the restore (CRIU does not read them); the dump was unusual.",
          graph=True),
    Check("no-fdinfo", INTEGRITY, None,
          "a process has no fdinfo image (error when files.img holds files nothing in the "
          "checkpoint opens, which only the missing image can have opened; warning otherwise)",
          "Empty list on file desc id ...",
          "Copy {image} from the original checkpoint. CRIU writes no fdinfo image only for "
          "a file table without fds: without it the restored process has no open files "
          "(its stdin, stdout and stderr included), and CRIU 4.2.1 stops on a pipe only "
          "that image opened (`BUG at criu/files.c`, the task killed by signal 11).",
          graph=True),
    Check("unresolved-fd", INTEGRITY, "error", "an fd names a file id missing from files.img",
          "No file for fd {fd} id {id:#x}", _RECOPY, graph=True),
    Check("unresolved-file", INTEGRITY, "error",
          "cwd, root or the executable names a file id missing from files.img",
          "Can't find task cwd file / Can't find task root file", _RECOPY, graph=True),
    Check("unresolved-vma-file", INTEGRITY, "error",
          "a file mapping names a file id missing from files.img",
          "`- Can't open vma", _RECOPY, graph=True),
    Check("missing-ghost", INTEGRITY, "error",
          "a deleted file's contents (its ghost-file image) are missing",
          "Unexpected EOF on (empty-image)",
          "Copy {image} from the original checkpoint; without it the deleted "
          "file cannot be recreated.", graph=True),
    Check("missing-memfd-inode", INTEGRITY, "error",
          "a memfd names an inode missing from memfd.img", None, _RECOPY, graph=True),
    Check("missing-tty-info", INTEGRITY, "error",
          "a terminal names an entry missing from tty-info.img",
          "Not all TTYs got its infos", _RECOPY, graph=True),
    Check("empty-file-entry", INTEGRITY, "error",
          "a files.img entry lacks the description of its kind",
          None, _RECOPY + " (CRIU dereferences the missing part and crashes.)", graph=True),
    Check("missing-pages", INTEGRITY, "error", "a pages image a pagemap needs is missing",
          "Can't read async pr bytes ... / Failed getting raw image fd",
          "Copy the pages image from the original checkpoint. (For shared memory CRIU 4.2.1 "
          "logs the second message and restores the processes anyway, with those pages "
          "zeroed.)", graph=True),
    Check("pages-size", INTEGRITY, None,
          "a pages image is not 4096 x the present pages its pagemaps list "
          "(shorter: error; longer: warning)",
          "Can't read mapping page ...",
          "A short pages image lost memory: copy it again (compare sizes with `ls -l`; "
          "`criu dedup` only punches holes, the size stays). CRIU 4.2.1 does not stop on "
          "it: for private memory the restore never finishes (it retries the read at the end "
          "of the image forever and prints nothing), for shared memory it logs `Can't read "
          "mapping page` and restores the processes with the missing pages zeroed. A longer "
          "image holds bytes no pagemap lists, which CRIU never reads (it says nothing): "
          "harmless, unless the image belongs to another dump; compare it with the original.",
          graph=True),
    Check("pagemap-unsorted", INTEGRITY, "error", "pagemap entries are not sorted by address",
          "Page entry address {vaddr} outside of VMA", _RECOPY, graph=True),
    Check("pagemap-overlap", INTEGRITY, "error", "pagemap entries overlap",
          "Page entry address {vaddr} outside of VMA", _RECOPY, graph=True),
    Check("pagemap-unaligned", INTEGRITY, "error", "a pagemap entry is not page aligned",
          None, _RECOPY, graph=True),
    Check("pagemap-empty-entry", INTEGRITY, "warning", "a pagemap entry lists no pages",
          None, _RECOPY, graph=True),
    Check("pagemap-outside-vma", INTEGRITY, "error", "listed pages lie in no VMA",
          "Page entry address {vaddr} outside of VMA", _RECOPY, graph=True),
    Check("parent-pages", INTEGRITY, "error",
          "pages marked PE_PARENT are not in the parent/ chain",
          "Missing {vaddr} in parent pagemap / No parent for snapshot pagemap",
          "Restore the parent/ link to the pre-dump directory (criu dump --prev-images-dir) "
          "and copy that directory too.", graph=True),
    Check("missing-shmem", INTEGRITY, "error",
          "a shared anonymous mapping has no pagemap-shmem image",
          "Can't restore shmem content", _RECOPY, graph=True),
    Check("vma-overlap", INTEGRITY, "error", "VMAs of a process overlap", None, _RECOPY,
          graph=True),
    Check("vma-unsorted", INTEGRITY, "error", "VMAs of a process are not sorted",
          "VMA-s are not sorted in the image file", _RECOPY, graph=True),
    Check("vma-empty", INTEGRITY, "error", "a VMA is empty or ends before it starts", None,
          _RECOPY, graph=True),
    Check("parent-link-broken", INTEGRITY, "error",
          "parent/ (or a parent's parent/) is a dangling link",
          "Can't open parent path: No such file or directory",
          "Point parent/ at the pre-dump directory it was made from, or remove the link if "
          "no page is marked PE_PARENT (CRIU opens parent/ whenever it exists).", graph=True),
    Check("parent-loop", INTEGRITY, "error",
          "parent/ leads back into its own chain, or has more than 64 generations",
          None, "Point parent/ at the pre-dump this checkpoint was made from (CRIU follows "
          "the chain until it runs out of file descriptors).", graph=True),
    # -- integrity: validate's own -----------------------------------------------------------
    Check("inventory-version", INTEGRITY, "error", "inventory img_version is not 1 or 2",
          "Not supported images version {version}",
          "Use the CRIU release that wrote the images; this format is not supported."),
    Check("inventory-too-old", INTEGRITY, "error", "inventory lacks fdinfo_per_id",
          "Too old image, no longer supported",
          "Restore with the (pre-1.3) CRIU that wrote it, or dump again."),
    Check("root-cg-set", INTEGRITY, "error", "inventory root_cg_set is 0",
          "Corrupted root cgset", _RECOPY),
    Check("no-processes", INTEGRITY, "error", "pstree.img lists no process", None, _RECOPY),
    Check("pstree-order", INTEGRITY, "error", "a process comes before its parent in pstree.img",
          "Can't find a parent for {pid}",
          "CRIU reads pstree.img in order: the image was edited or damaged; copy it again."),
    Check("arch-mixed", INTEGRITY, "error", "core images name different architectures",
          "Core march mismatch {mtype}", _RECOPY),
    Check("pidns-init", INTEGRITY, "error",
          "the tree has its own pid namespace but its root is not pid 1",
          "First PID in a PID namespace needs to be 1 and not {pid}", _RECOPY),
    Check("unresolved-peer", INTEGRITY, "error",
          "a unix socket's peer is not in files.img (not even as an external socket)",
          "FATAL: Peer {peer} unresolved for {ino}", _RECOPY),
    Check("missing-tcp-stream", INTEGRITY, "error",
          "a connected TCP socket has no tcp-stream image",
          "Unexpected EOF on (empty-image)",
          "Copy {image} from the original checkpoint (it holds the connection's sequence "
          "numbers and queues)."),
    Check("stray-image", INTEGRITY, "info",
          "a per-process image for a pid (or file table) pstree.img does not list", None,
          "Nothing for the restore (CRIU never opens it); it hints that pstree.img or an "
          "ids image was edited."),
    Check("unused-pages", INTEGRITY, "info", "a pages image no pagemap refers to", None,
          "Nothing for the restore; it hints that a pagemap image is missing."),
    # -- requirements ----------------------------------------------------------------------
    Check("needs-tcp-established", REQUIREMENTS, "info", "connected TCP sockets",
          "Connected TCP socket in image",
          "Restore with --tcp-established (or --tcp-close to restore them closed); the "
          "connection's addresses must exist on the target and its ports be free. " + _LXC),
    Check("needs-tcp-close", REQUIREMENTS, "info", "the inventory says tcp_close",
          "Need to set the --tcp-close options.", "Restore with --tcp-close."),
    Check("needs-allow-uprobes", REQUIREMENTS, "info", "the inventory says allow_uprobes",
          "Dumped with --allow-uprobes. Need to set it on restore as well.",
          "Restore with --allow-uprobes."),
    Check("needs-ext-unix-sk", REQUIREMENTS, "warning",
          "a unix socket is connected to a socket outside the checkpoint",
          "External socket found in image. Consider using the --ext-unix-sk option to allow "
          "restoring it.",
          "Restore with --ext-unix-sk, and make sure the peer ({peer_name}) exists on the "
          "target before the restore."),
    Check("needs-shell-job", REQUIREMENTS, "info",
          "the tree's session belongs to a process outside the checkpoint (a shell job)",
          "Requested sid {sid} doesn't match inherited N / No task found with sid {sid}",
          "Restore with --shell-job (-j) from a shell: the restored tree joins that shell's "
          "session and terminal."),
    Check("needs-inherit-tty", REQUIREMENTS, "warning",
          "processes hold a terminal from outside the checkpoint (an external tty)",
          "No task found with sid {sid}",
          "Give the restore a terminal for it: --inherit-fd fd[N]:{key} where N is an fd of "
          "a terminal the restore inherits (liblxc does this with the console it sets up)."),
    Check("lxd-console", REQUIREMENTS, "error",
          "an LXD/Incus/LXC container was dumped with its console (tty.info holds its id)",
          "lxc.console.path configured on source host but not target",
          "liblxc restores the console only from a console fd of the new container, which "
          "LXD and Incus never set up (canonical/lxd#9396, lxc/incus#2186): this checkpoint "
          "will not restore through them. " + _CONSOLE_FIX),
    Check("needs-root", REQUIREMENTS, "info", "the tree has its own mount namespace",
          "The --root option is required to restore a mount namespace",
          "Restore with --root DIR, DIR being the container's root file system (mounted). "
          + _LXC),
    Check("needs-ext-mount", REQUIREMENTS, "info", "mounts that were external at dump",
          "No mapping for {mnt_id}:{mountpoint} mountpoint",
          "Restore with --ext-mount-map {key}:HOSTPATH (or --external mnt[{key}]:HOSTPATH) "
          "for each key. " + _LXC),
    Check("needs-ext-mount-auto", REQUIREMENTS, "info", "mounts CRIU found external by itself",
          "Mount {mnt_id}:{mountpoint} is autodetected external mount. Try \"--ext-mount-map "
          "auto\" to allow them.",
          "Restore with --ext-mount-map auto; the host paths must exist on the target. "
          + _LXC),
    Check("needs-plugin", REQUIREMENTS, "info", "CRIU plugins the dump used",
          "Missing required plugin: {plugin}",
          "Install the CRIU plugin {plugin} on the target (default directory /usr/lib/criu)."),
    Check("needs-file-locks", REQUIREMENTS, "info", "file locks were dumped (filelocks.img)",
          None, "Restore with --file-locks, or the locks are silently not restored. " + _LXC),
    Check("needs-cpu-cap", REQUIREMENTS, "info",
          "cpuinfo.img: the dump recorded the CPU (--cpu-cap)",
          "CPU xfeatures has unsupported bits / CPU capabilities do not match run time",
          "A restore with --cpu-cap checks the CPU against cpuinfo.img: restore on a like "
          "CPU; without --cpu-cap only the FPU and instruction sets are compared."),
    Check("manager-restore-failed", REQUIREMENTS, "warning",
          "a log shows a restore of this checkpoint failing (the line is quoted)",
          None,
          "Read the log ({log}); the other findings say which causes validate predicts."),
    # -- target --------------------------------------------------------------------------------
    Check("file-missing", TARGET, "error", "a file the processes hold or map is missing",
          "Can't open file {criu_path} on restore: No such file or directory",
          "Put {path} back in the target root ({host_path}), or restore where it exists."),
    Check("file-size", TARGET, "error", "a file's size differs from the dump's",
          "File {criu_path} has bad size {actual} (expect {expected})",
          "Restore the file as it was at dump time: the processes have it open or mapped at "
          "offsets that must match."),
    Check("file-mode", TARGET, "error", "a file's type or permissions differ from the dump's",
          "File {criu_path} has bad mode 0{actual:o} (expect 0{expected:o})",
          "chmod {expected_perm:o} {host_path} (or restore with --skip-file-rwx-check when "
          "only the permission bits differ)."),
    Check("file-build-id", TARGET, "error", "an ELF file's build-id differs from the dump's",
          "File {criu_path} has bad build-ID",
          "Install the same build of {path} (the same package version) on the target: the "
          "processes run code from it."),
    Check("mountpoint-missing", TARGET, "error",
          "a mountpoint in the root file system does not exist",
          "Can't mount at {mountpoint}: No such file or directory",
          "mkdir -p {host_path} in the target root."),
    Check("ext-mount-source", TARGET, "warning",
          "an autodetected external mount's host path does not exist",
          "Can't mount at ...: No such file or directory",
          "Create {mount_source} on the host before the restore (LXD and Incus create "
          "/var/lib/lxd/shmounts and device nodes themselves when they start the instance)."),
    Check("pid-busy", TARGET, "error",
          "a pid the restore needs is in use on the host (restoring into the host's pid "
          "namespace)",
          "Can't fork for {pid}: File exists",
          "Stop what holds pid {pid} on the host, or restore the tree in a new pid namespace "
          "(e.g. under `unshare -p -f --mount-proc`)."),
    Check("arch-mismatch", TARGET, "error", "the images are for another architecture",
          "Core march mismatch {mtype}", "Restore on a {arch} machine."),
    Check("cpu-xsave", TARGET, "warning",
          "a thread used CPU state (XSAVE components) the host CPU lacks", None,
          "Restore on a CPU with {features}: CRIU restores without that state and the "
          "program dies with SIGILL when it next runs those instructions (libraries choose "
          "them once, at start)."),
    Check("cpuinfo-xfeatures", TARGET, "error",
          "cpuinfo.img needs XSAVE components the host CPU lacks",
          "CPU xfeatures has unsupported bits ({bits:#x})",
          "Restore on a CPU with {features}, or with --cpu-cap=none (at your own risk)."),
    Check("kernel-older", TARGET, "warning", "the host kernel is older than the dump's",
          None, "Restore on a kernel at least as new as {dumped}, or run `criu check --all` "
          "on the target to see which features are missing."),
    Check("kernel-feature", TARGET, "error",
          "the processes use a kernel feature the target kernel lacks (as `criu check "
          "--feature NAME` answers there)",
          None, "Restore on a kernel with {feature} (`criu check --feature {feature}` on the "
          "target says whether it has it), or stop using it before the dump."),
    Check("fs-missing", TARGET, "error",
          "a mount of the dump has a file system type the target kernel cannot mount",
          "Unable to mount {fstype} ...",
          "Load or build the {fstype} file system on the target (`modprobe {fstype}`), or "
          "restore on a host that has it."),
    Check("criu-older", TARGET, None,
          "the installed criu is older than the dump's (error when the image format changed "
          "in between, warning otherwise)",
          None, "Install CRIU {dumped} or newer on the target{why}."),
    Check("criu-missing", TARGET, "warning", "no criu found on the target", None,
          "Install CRIU {dumped} or newer (LXD's snap ships its own criu; this check looks "
          "in PATH, /usr/sbin, /usr/local/sbin and /sbin)."),
    Check("lsm-missing", TARGET, "error",
          "the dump's LSM is not the host's, and processes carry LSM profiles",
          "mismatched lsm types and lsm profile specified",
          "Restore on a host with {lsm} enabled, or map the profiles with --lsm-profile."),
    Check("plugin-missing", TARGET, "error", "a CRIU plugin the dump used is not installed",
          "Missing required plugin: {plugin}",
          "Install the CRIU plugin {plugin} into /usr/lib/criu on the target."),
    Check("cgroup-controller", TARGET, "warning",
          "a cgroup controller of the dump is not available on the host",
          "Can't mount controller dir ...",
          "Enable the {controller} controller on the host, or restore with "
          "--manage-cgroups=ignore (the tasks then stay in CRIU's cgroups)."),
    Check("cgroup-path", TARGET, "info", "a cgroup of the dump does not exist on the host",
          "Cgroup dir {path} doesn't exist (only with --manage-cgroups=none or props)",
          "Nothing with the default --manage-cgroups=soft (CRIU creates it); with "
          "--cgroup-root the path is remapped."),
)}


@dataclass(frozen=True)
class Written:
    """An image CRIU 4.2.1 writes in every dump, and what its restore does without it.

    ``name`` is the file name, with ``{pid}``/``{tid}`` for per-process and per-thread
    images; ``scope`` says which dumps write it; ``criu_says`` is what the restore prints
    (None: no error of its own); ``lacks`` what the restore does or lacks without it.
    Checked against real restores of zdtm programs with each image removed
    (tests/test_live_zdtm_validate.py), except where ``lacks`` says otherwise.
    """

    name: str
    scope: str
    criu_says: str | None
    lacks: str

    @property
    def kind(self):
        """The name's stem (``core``, ``timens``...): how images are matched to the table."""
        return self.name.split("-")[0].split(".")[0]


_SEGV = "... killed by signal 11: Segmentation fault"

#: Images CRIU 4.2.1 writes in every dump (criu/cr-dump.c; criu/image.c's lazy images are
#: unlinked when nothing was written, so an image appears only when it has entries, and
#: these always have), by kind.  ``pages-<id>.img`` (``missing-pages``), ``fdinfo-<id>.img``
#: (``no-fdinfo``: not written for a file table without fds) and images whose need other
#: images show (ghost files, tcp streams, memfd inodes, shared memory) have checks of their
#: own.
ALWAYS_WRITTEN = {written.kind: written for written in (
    Written("inventory.img", "every checkpoint", "Unexpected EOF on (empty-image)",
            "the restore stops at once."),
    Written("pstree.img", "every checkpoint", None,
            "CRIU 4.2.1 crashes (segmentation fault, exit code 139) before it logs an error."),
    Written("files.img", "every checkpoint with a living process (its cwd, root and "
            "executable are in it)",
            "No entry for reg-file-ID ... / Remap for non existing file ... / No file for fd "
            "...",
            "no fd, cwd, root or executable can be opened: the restore stops."),
    Written("seccomp.img", "every checkpoint with a living process (one empty entry "
            "when no thread has seccomp filters)", _SEGV,
            "threads that had seccomp filters crash the restore (CRIU reads their filters "
            "from the missing image; not tried on a real restore); without filters the "
            "restore works, but the copy is not the checkpoint CRIU wrote."),
    Written("timens-0.img", "every checkpoint (CRIU 3.14 and later) of a tree without a "
            "time namespace of its own (a tree with one gets timens-<its id>.img)",
            "Clocks values have not been dumped",
            "the restore goes on (that line is a warning) without a time namespace: the "
            "restored processes see this host's CLOCK_MONOTONIC and CLOCK_BOOTTIME instead "
            "of clocks that go on from the dump's, so times they saved jump and their "
            "timeouts fire early or late."),
    Written("core-{tid}.img", "each thread of a living process, and each zombie",
            "Unexpected EOF on (empty-image)", "the restore stops."),
    Written("ids-{pid}.img", "each living process", "No IDS for root task. / Empty list on "
            "file desc id ...", "the root task stops the restore; another process loses "
            "its file table and namespaces, and CRIU 4.2.1 stops on its files (`BUG at "
            "criu/files.c`, the task killed by signal 11)."),
    Written("mm-{pid}.img", "each living process", _SEGV,
            "the task has no memory layout to restore and crashes."),
    Written("fs-{pid}.img", "each living process", _SEGV,
            "the task has no cwd and root to restore and crashes."),
    Written("pagemap-{pid}.img", "each living process", None,
            "the task cannot restore its memory and exits: CRIU logs only `Restoring "
            "FAILED.`"),
)}


def always_written(name):
    """The :class:`Written` entry for image ``name`` (``mm-42.img``), or None
    (``pagemap-shmem-7.img`` is not ``pagemap-{pid}.img``)."""
    written = ALWAYS_WRITTEN.get(name.split("-")[0].split(".")[0])
    if written is None:
        return None
    pattern = re.escape(written.name).replace(r"\{pid\}", r"\d+").replace(r"\{tid\}", r"\d+")
    return written if re.fullmatch(pattern, name) else None


def check(code):
    """The :class:`Check` for ``code``; a graph code newer than this table gets a bare one
    (a test keeps the table complete for the graph of this version)."""
    found = CHECKS.get(code)
    if found is None:
        return Check(code, INTEGRITY, None, code, None, "See the message.", graph=True)
    return found


__all__ = [
    "ALWAYS_WRITTEN",
    "CHECKS",
    "INTEGRITY",
    "REQUIREMENTS",
    "STAGES",
    "TARGET",
    "Check",
    "Written",
    "always_written",
    "check",
    "fill",
]


# == Failures in CRIU's logs (crit-plus explain) =================================================
# A separate block from the checks above: what a CRIU or liblxc log line means.  Each entry is a
# message CRIU 4.2.1 prints (``message``: its printf format, verbatim from ``source``), the
# pattern that finds it in a log, the validate check that predicts it (``check``), the cause,
# the fix and an upstream issue.  ``role`` says what the line is to a failed run: ``cause`` (it
# made the run fail), ``consequence`` (CRIU's error chain: it follows a cause, e.g. ``Dumping
# FAILED.``), ``harmless`` (known noise, sources.logs.HARMLESS).

CAUSE, CONSEQUENCE, HARMLESS_ROLE = "cause", "consequence", "harmless"
ROLES = (CAUSE, CONSEQUENCE, HARMLESS_ROLE)


@dataclass(frozen=True)
class Failure:
    """One CRIU (or liblxc) log message and what it means; see the block's comment.
    ``example`` is a line as CRIU printed it (a live run here, an upstream issue) where
    the printf ``message`` alone does not show it (macros, pr_perror's errno text)."""

    code: str
    pattern: str
    message: str
    source: str
    operation: str | None
    cause: str
    fix: str
    check: str | None = None
    issue: str | None = None
    role: str = CAUSE
    example: str | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"code": self.code, "role": self.role, "message": self.message,
                "source": self.source, "operation": self.operation, "check": self.check,
                "cause": self.cause, "fix": self.fix, "issue": self.issue}


_CRIU = "checkpoint-restore/criu"
#: An entry whose fix is its validate check's.
_SEE_CHECK = "See validate's fix."
#: A tree with its own mount namespace restored without --root (mount-v2 and compat mode).
_MNTNS_NO_ROOT = ("the tree has a mount namespace of its own and the restore was run without "
                  "--root, which CRIU needs to build that namespace's mounts on")
_MNTNS_NO_ROOT_FIX = ("Restore with --root DIR: the directory the tree's / is mounted from "
                      "(the container's rootfs; `/` for a process that ran in an `unshare -m` "
                      "copy of the host's mounts).")
_LOG_FAILURES = (
    # -- dump: what the processes hold -----------------------------------------------------------
    Failure("unsupported-socket-proto", r"Unsupported proto \d+ for socket",
            "Unsupported proto %d for socket %x", "criu/sk-inet.c", "dump",
            "a process holds an inet socket of a protocol this CRIU cannot dump: ICMP (1) and "
            "ICMPv6 (58) ping sockets before CRIU 4.1 (supported since), SCTP (132), MPTCP "
            "(262)",
            "Upgrade CRIU (ICMP), or stop the program that holds it (ping, a health checker, "
            "an SCTP service) before the dump; for Go programs set GODEBUG=multipathtcp=0 "
            "(MPTCP).", issue=f"{_CRIU}#2557"),
    Failure("ext-unix-sk", r"External socket is used\. Consider using --ext-unix-sk",
            "External socket is used. Consider using --ext-unix-sk option.",
            "criu/sk-unix.c", "dump",
            "a unix socket of the tree is connected to a socket outside it (a daemon's socket, "
            "syslog's /dev/log, a peer in another container)",
            "Dump with --ext-unix-sk (datagram peers with a name) or --external unix[INO] and "
            "restore with the peer present (--inherit-fd for a stream); or close the "
            "connection before the dump.", check="needs-ext-unix-sk", issue=f"{_CRIU}#772",
            example="sk unix: External socket is used. Consider using --ext-unix-sk option."),
    Failure("ext-unix-stream", r"Can't dump half of stream unix connection",
            "Can't dump half of stream unix connection. name: %s; peer name: %s",
            "criu/sk-unix.c", "dump",
            "a stream unix socket is connected to a peer outside the tree: --ext-unix-sk "
            "covers datagram sockets only",
            "Dump the peer's process in the same tree, or mark the socket --external "
            "unix[INO] and give it back at restore with --inherit-fd fd[N]:socket:[INO].",
            check="needs-ext-unix-sk", issue=f"{_CRIU}#1788"),
    Failure("ext-unix-nameless", r"Can't dump name-less external socket",
            "Can't dump name-less external socket.", "criu/sk-unix.c", "dump",
            "a datagram unix socket is connected to a peer outside the tree that has no name "
            "(socketpair), which CRIU cannot connect again",
            "Mark it --external unix[INO] and give it back with --inherit-fd at restore.",
            check="needs-ext-unix-sk", issue=f"{_CRIU}#1200"),
    Failure("not-session-leader", r"is not a session leader\. Consider using --shell-job",
            "The root process %d is not a session leader. Consider using --shell-job option",
            "criu/pstree.c", "dump",
            "the tree's root process shares its session with a process outside the tree (it "
            "was started from a shell, a terminal or a service manager without setsid): "
            "CRIU dumps a session only from its leader",
            "Dump with --shell-job (-j), and restore with --shell-job from a shell (the "
            "restored tree joins that shell's session and terminal); or start the program "
            "as a session leader (`setsid PROGRAM`) and dump it without the option.",
            example="Error (criu/pstree.c:304): The root process 19344 is not a session "
            "leader. Consider using --shell-job option"),
    Failure("session-outside-pidns",
            r"A session leader of (?:zombie process )?\d+\(\d+\) is outside of its pid "
            r"namespace",
            "A session leader of %d(%d) is outside of its pid namespace", "criu/cr-dump.c",
            "dump",
            "a process of the tree belongs to a session whose leader is outside the tree's pid "
            "namespace (session 0 there): it was started into the namespace by `unshare -p`, "
            "`nsenter`, `lxc exec` or a runtime's exec without setsid, so CRIU cannot recreate "
            "its session; --shell-job does not help",
            "Start the program as a session leader inside the namespace (`setsid PROGRAM`, "
            "`unshare -pf setsid PROGRAM`) and dump it again, or dump the namespace's whole "
            "tree from its init (`lxc stop --stateful`, `criu dump -t INIT_PID`).",
            example="Error (criu/cr-dump.c:1528): A session leader of 4740(1) is outside of "
            "its pid namespace"),
    Failure("mount-not-in-tree", r"Can't lookup mount=\d+ for fd=\d+ path=",
            "Can't lookup mount=%d for fd=%d path=%s", "criu/files-reg.c", "dump",
            "a process holds a file opened on a mount its own mount namespace does not have: "
            "it was opened before the process entered its namespace (`unshare -m` keeps the "
            "host's /dev/null as stdin, stdout, stderr) or was passed in over a unix socket",
            "Open the file inside the namespace (start the program there with its own "
            "stdin, stdout and stderr: `unshare -m sh -c 'exec PROGRAM </dev/null "
            ">/dev/null 2>&1'`), or dump with --external file[MNT:INODE] (the mount id and "
            "inode in hex) and restore with --inherit-fd fd[N]:file[MNT:INODE] (and --root "
            "DIR, as the tree has its own mount namespace).",
            example="Error (criu/files-reg.c:1790): Can't lookup mount=24 for fd=0 "
            "path=/dev/null"),
    Failure("mntns-no-root", r"BUG at criu/mount\.c:4\d",
            "BUG at %s:%d", "include/common/bug.h", "restore",
            _MNTNS_NO_ROOT + ": CRIU 4.2.1 crashes on it (BUG_ON(!mi->plain_mountpoint) in "
            "service_mountpoint(), while it unmounts the copied mounts) instead of saying so",
            _MNTNS_NO_ROOT_FIX,
            example="Error (criu/mount.c:48): mnt: BUG at criu/mount.c:48"),
    Failure("mntns-root-required", r"The --root option is required to restore a mount namespace",
            "The --root option is required to restore a mount namespace", "criu/mount.c",
            "restore", _MNTNS_NO_ROOT, _MNTNS_NO_ROOT_FIX),
    Failure("tcp-established", r"Connected TCP socket, consider using --tcp-established",
            "Connected TCP socket, consider using --%s option.", "criu/sk-inet.c", "dump",
            "a process holds an established TCP connection and the dump was not allowed to "
            "take it (TCP repair)",
            "Dump (and restore) with --tcp-established, or stop the connection first; Podman: "
            "`podman container checkpoint --tcp-established`, LXD passes it itself.",
            check="needs-tcp-established", issue=f"{_CRIU}#589",
            example="inet: Connected TCP socket, consider using --tcp-established option."),
    Failure("tcp-in-image", r"Connected TCP socket in image",
            "Connected TCP socket in image", "criu/sk-inet.c", "restore",
            "the images hold an established TCP connection and the restore was not told how "
            "to bring it back", "Restore with --tcp-established (or --tcp-close).",
            check="needs-tcp-established"),
    Failure("file-locks", r"Some file locks are hold by dumping tasks!",
            "Some file locks are hold by dumping tasks! You can try --file-locks to dump them.",
            "criu/file-lock.c", "dump",
            "a process holds a file lock (flock, POSIX or OFD lock) and the dump was not "
            "allowed to dump locks", "Dump and restore with --file-locks.",
            check="needs-file-locks", issue=f"{_CRIU}#1357"),
    Failure("ghost-limit", r"Can't dump ghost file .* of \d+ size, increase limit",
            "Can't dump ghost file %s of %lu size, increase limit", "criu/files-reg.c", "dump",
            "a process holds a deleted file larger than --ghost-limit (1 MiB by default): "
            "CRIU copies deleted files into the images, up to that size",
            "Dump with --ghost-limit SIZE above the file's size (or --link-remap when the "
            "file system allows linking it back); Podman/runc/crun: `ghost-limit` in "
            "/etc/criu/runc.conf or default.conf.", issue=f"{_CRIU}#202"),
    Failure("link-remap", r"Can't link remap|Can't create link remap",
            "Can't create link remap for %s. Use link-remap option.", "criu/files-reg.c",
            "dump", "a file the processes hold was unlinked and cannot be kept as a ghost",
            "Dump with --link-remap (CRIU then links the file back under a temporary name)."),
    Failure("ext-file", r"Can't dump file \d+ of that type",
            "Can't dump file %d of that type [%o] (%s %s)", "criu/files-ext.c", "dump",
            "a process holds a file of a kind CRIU cannot dump (a device, an anon inode it does "
            "not know)",
            "Close it before the dump, or pass it as --external and give it back with "
            "--inherit-fd at restore."),
    Failure("tun", r"No proper support for tun dump/restore|Can't check tun support",
            "No proper support for tun dump/restore", "criu/tun.c", "dump",
            "the tree holds a tun/tap device and the kernel lacks what CRIU needs to dump it "
            "(TUNGETIFF and friends), or /dev/net/tun is missing",
            "Run `criu check --feature tun`; load the tun module, or stop the VPN client "
            "before the dump."),
    Failure("nested-ns", r"Can't dump nested \S+ namespace for",
            "Can't dump nested %s namespace for %d", "criu/namespaces.c", "dump",
            "a process of the tree lives in its own namespace inside the dumped one (a nested "
            "container, `unshare` inside it): CRIU dumps one level",
            "Dump the nested container by itself, or avoid nested namespaces (LXD: "
            "security.nesting containers running their own containers cannot be dumped)."),
    Failure("nested-mntns", r"Nested mount namespaces are not supported",
            "Nested mount namespaces are not supported without mnt_id in fdinfo",
            "criu/mount.c", "dump",
            "the tree has nested mount namespaces and the kernel shows no mnt_id in fdinfo",
            "Use a newer kernel (mnt_id in /proc/PID/fdinfo) or avoid nested mount "
            "namespaces."),
    Failure("mount-unsupported", r"FS mnt .* unsupported id",
            "FS mnt %s dev %#x root %s unsupported id %d", "criu/mount.c", "dump",
            "a mount of an unsupported file system type (e.g. a FUSE or btrfs subvolume mount "
            "CRIU cannot dump)",
            "Mark it external (--external mnt[PATH]:KEY, restore with --ext-mount-map) or "
            "unmount it before the dump.", check="needs-ext-mount"),
    Failure("mount-fs-dump", r"Unable to dump a file system for",
            "Unable to dump a file system for %d:%s", "criu/mount.c", "dump",
            "a mount whose contents CRIU would have to copy (tmpfs) or whose file system it "
            "cannot dump",
            "Mark the mount external (--external mnt[PATH]:KEY) so the restore binds it from "
            "the host.", check="needs-ext-mount"),
    Failure("btrfs-inaccessible", r"The file system \S+ \S+ \(\S+\) btrfs .* is inaccessible",
            "The file system %#x %#x (%#x) %s %s is inaccessible", "criu/mount.c", "dump",
            "the container's root is a btrfs subvolume whose device number differs from the "
            "one /proc shows (btrfs subvolumes are separate anonymous devices): CRIU cannot "
            "open files of that mount by handle (inotify watches, irmap); an error before "
            "CRIU 3.15, a warning since, but the fsnotify handle that needs it still fails",
            "Remove inotify/fanotify watchers in the container (or restart them) before the "
            "dump, or put stateful instances on a storage pool other than btrfs (dir, zfs).",
            issue=f"{_CRIU}#565",
            example="mnt: The file system 0x1b 0x1b (0x3f) btrfs ./ is inaccessible"),
    Failure("mount-ext-auto", r"is autodetected external mount",
            "Mount %d:%s is autodetected external mount. Try \"--ext-mount-map auto\" to "
            "allow them.", "criu/mount.c", "restore",
            "the images hold mounts CRIU found external by itself at dump",
            "Restore with --ext-mount-map auto.", check="needs-ext-mount-auto"),
    Failure("mount-no-mapping", r"No mapping for \d+:\S+ mountpoint",
            "No mapping for %d:%s mountpoint", "criu/mount.c", "restore",
            "an external mount has no --ext-mount-map / --external at restore",
            "Restore with --ext-mount-map KEY:HOSTPATH for each external mount.",
            check="needs-ext-mount"),
    Failure("seccomp", r"Dumping seccomp filters not supported|couldn't suspend seccomp"
            r"|failed to suspend seccomp",
            "Dumping seccomp filters not supported", "criu/cr-check.c", None,
            "a process runs under a seccomp filter and the kernel cannot dump or suspend it "
            "(PTRACE_SECCOMP_GET_FILTER, PTRACE_O_SUSPEND_SECCOMP need CONFIG_CHECKPOINT_"
            "RESTORE and root)", "Run CRIU as root on a kernel with CONFIG_CHECKPOINT_RESTORE."),
    Failure("vdso", r"Can't fixup vdso VMAs",
            "Can't fixup vdso VMAs (pid: %d)", "criu/cr-dump.c", "dump",
            "CRIU could not find or parse the process's vDSO (a vDSO it does not know, a "
            "process that unmapped it)", "Run `criu check`; upgrade CRIU for a newer kernel."),
    Failure("dirty-track-off", r"Dirty tracking is OFF",
            "Dirty tracking is OFF. Memory snapshot will not work.", "criu/cr-check.c",
            "check", "the kernel has no soft-dirty page tracking (CONFIG_MEM_SOFT_DIRTY, not "
            "on aarch64 before 6.x kernels, off in some VMs): pre-dump and --track-mem cannot "
            "work", "Do a single dump without pre-dump (LXD: migration.incremental.memory "
            "false) or use a kernel with CONFIG_MEM_SOFT_DIRTY.", issue=f"{_CRIU}#1917"),
    Failure("track-mem-unavailable", r"Tracking memory is not available",
            "Tracking memory is not available. Consider omitting --track-mem option.",
            "criu/config.c", "dump",
            "--track-mem was asked for and the kernel has no soft-dirty tracking",
            "Omit --track-mem (and --prev-images-dir) or use a kernel with "
            "CONFIG_MEM_SOFT_DIRTY.", issue=f"{_CRIU}#1921"),
    Failure("predump-no-dirty-track", r"BUG at criu/mem\.c:4\d",
            "BUG at %s:%d", "include/common/bug.h", "pre-dump",
            "a pre-dump forces memory tracking (\"Enforcing memory tracking for pre-dump\"), "
            "and CRIU 4.2.1 hits BUG_ON(!kdat.has_dirty_track) in task_reset_dirty_track() on "
            "a kernel without soft-dirty tracking: CRIU aborts, the log ends there",
            "Do not pre-dump on this kernel: take a single dump (LXD: "
            "migration.incremental.memory false), or use a kernel with CONFIG_MEM_SOFT_DIRTY.",
            issue=f"{_CRIU}#545",
            example="Error (criu/mem.c:46): BUG at criu/mem.c:46"),
    Failure("uffd", r"UFFD is not supported|Lazy pages are not available",
            "Lazy pages are not available", "criu/kerndat.c", "lazy-pages",
            "lazy migration needs userfaultfd (non-cooperative) and the kernel or its "
            "vm.unprivileged_userfaultfd setting does not give it",
            "Migrate without --lazy-pages, or enable userfaultfd (CONFIG_USERFAULTFD; run "
            "CRIU as root)."),
    Failure("nft-missing", r"CRIU was built without libnftables support|Locking network "
            r"failed using nftables|Unable to restore nftables",
            "Unable to restore nftables. CRIU was built without libnftables support",
            "criu/net.c", None,
            "the network lock or the netns's rules need nftables and this CRIU was built "
            "without libnftables", "Use --network-lock iptables, or a CRIU built with "
            "libnftables."),
    Failure("iptables-missing", r"execvp\(\"iptables-restore\", \.\.\.\) failed|Locking "
            r"network failed: iptables-restore returned",
            "Locking network failed: iptables-restore returned %d. This may be connected to "
            "disabled CONFIG_NETFILTER_XT_MARK kernel build config option.", "criu/net.c",
            None, "CRIU locks the network with iptables-restore (the default --network-lock "
            "iptables) and it is missing or failed (no xt_mark module)",
            "Install iptables (iptables-restore in PATH) and load xt_mark, or use "
            "--network-lock nftables (or skip)."),
    Failure("cgroup-controller-dir", r"Can't mount controller dir",
            "\\tCan't mount controller dir %s", "criu/cgroup.c", "restore",
            "a cgroup controller of the dump is not available on this host (cgroup v1 vs v2, "
            "a controller disabled)",
            "Enable the controller, or restore with --manage-cgroups=ignore.",
            check="cgroup-controller"),
    Failure("cpuset-props", r"Restoring special cpuset props failed",
            "Restoring special cpuset props failed!", "criu/cgroup.c", "restore",
            "the dump's cpuset (cpus, mems) does not fit this host (fewer CPUs or NUMA nodes)",
            "Restore with --manage-cgroups=ignore or --cgroup-props to drop cpuset.cpus/mems, "
            "or on a host with those CPUs.", check="cgroup-controller"),
    Failure("apparmor", r"apparmor parsing failed|failed to write policy in AA namespace"
            r"|Apparmor namespace present but dumping not enabled",
            "apparmor parsing failed %d", "criu/apparmor.c", None,
            "the processes run under AppArmor profiles (a container's namespace) CRIU cannot "
            "dump or load here",
            "Restore on a host with the same AppArmor profiles loaded, or map them with "
            "--lsm-profile apparmor:NAME.", check="lsm-missing"),
    Failure("lsm-mismatch", r"mismatched lsm types and lsm profile specified",
            "mismatched lsm types and lsm profile specified", "criu/lsm.c", "restore",
            "the dump's LSM (AppArmor, SELinux) is not this host's", "See validate's fix.",
            check="lsm-missing"),
    # -- restore: what the host holds ------------------------------------------------------------
    Failure("pid-busy", r"Can't fork for \d+: File exists",
            "Can't fork for %d", "criu/cr-restore.c", "restore",
            "a pid the tree needs is in use on this host (the original processes still run, "
            "--leave-running, or another process took the pid)",
            "Stop what holds the pid, or restore in a new pid namespace.", check="pid-busy",
            example="Error (criu/cr-restore.c:1237): Can't fork for 19693: File exists"),
    Failure("file-size", r"File \S.* has bad size \d+ \(expect \d+\)",
            "File %s has bad size %lu (expect %lu)", "criu/files-reg.c", "restore",
            "a file the processes hold changed size since the dump", "See validate's fix.",
            check="file-size"),
    Failure("file-mode", r"File \S.* has bad mode",
            "File %s has bad mode 0%o (expect 0%o)", "criu/files-reg.c", "restore",
            "a file the processes hold changed type or permissions since the dump",
            "See validate's fix.", check="file-mode"),
    Failure("file-build-id", r"File \S.* has bad build-ID",
            "File %s has bad build-ID", "criu/files-reg.c", "restore",
            "an executable or library the processes map is another build than at dump "
            "(a package was upgraded)", "See validate's fix.", check="file-build-id"),
    Failure("file-missing", r"Can't open file .* on restore",
            "Can't open file %s on restore", "criu/files-reg.c", "restore",
            "a file the processes hold is missing on this host", "See validate's fix.",
            check="file-missing"),
    Failure("parent-pages", r"Missing [0-9a-f]+ in parent pagemap|No parent for snapshot "
            r"pagemap|No parent image found, though parent directory is set",
            "Missing %lx in parent pagemap", "criu/pagemap.c", None,
            "pages the images say are in the pre-dump (parent/) are not there",
            "See validate's fix.", check="parent-pages"),
    Failure("lxd-console", r"lxc\.console\.path configured on source host but not target",
            "lxc.console.path configured on source host but not target", "liblxc src/lxc/criu.c",
            "restore", "liblxc restores a container dumped with its console only from a "
            "console fd LXD and Incus never set up", _CONSOLE_FIX,
            check="lxd-console", issue="canonical/lxd#9396"),
    Failure("lxc-criu-version", r"must have criu .* or greater to checkpoint/restore",
            "must have criu %s or greater to checkpoint/restore", "liblxc src/lxc/criu.c", None,
            "liblxc found no criu in PATH or one too old",
            "Install CRIU (LXD's snap ships its own: `snap set lxd criu.enable=true`)."),
    # -- dump: found by CRIU's own zdtm programs on this machine (make zdtm) ---------------------
    Failure("rlimit-other-uid", r"Can't get rlimit \d+: Operation not permitted",
            "Can't get rlimit %d", "criu/cr-dump.c", "dump",
            "CRIU lacks CAP_SYS_RESOURCE (it runs in a container, or with a reduced capability "
            "set: the harmless `Can't setup RLIMIT_NOFILE` line says the same) and a process "
            "of the tree runs under another uid (setuid, a dropped-privilege daemon): the "
            "kernel refuses prlimit64() on it",
            "Run CRIU with CAP_SYS_RESOURCE (root on the host, a privileged container), or keep "
            "the tree under CRIU's uid.",
            example="Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted"),
    Failure("unseizable", r"Unseizable non-zombie \d+ found, state \w",
            "Unseizable non-zombie %d found, state %c, err %d/%d", "compel/src/lib/infect.c",
            "dump", "a process of the tree is already traced (state t: a debugger, strace, "
            "another ptrace user) or stopped in a way CRIU cannot seize",
            "Detach the debugger or tracer (gdb, strace) before the dump."),
    Failure("pending-sigtrap", r"Can't dump the \d+ thread with a pending SIGTRAP",
            "Can't dump the %d thread with a pending SIGTRAP.", "compel/src/lib/infect.c",
            "dump", "a thread has a SIGTRAP pending (a breakpoint or single-step just hit): "
            "CRIU cannot save it", "Let the program handle the signal (detach the debugger) and "
            "dump again."),
    Failure("unix-inflight-queue", r"Non-empty write queue on an in-flight socket",
            "Non-empty write queue on an in-flight socket %#x", "criu/sk-unix.c", "dump",
            "a unix socket is in flight (sent over another unix socket as SCM_RIGHTS, not yet "
            "received) and has queued data: CRIU cannot dump both",
            "Let the receiver take the descriptor (or drain it) before the dump."),
    Failure("unix-inflight-closed", r"Found a closed in-flight socket to",
            "Found a closed in-flight socket to %#x", "criu/sk-unix.c", "dump",
            "a unix socket in flight (passed with SCM_RIGHTS, not yet received) was closed "
            "by its sender", "Let the receiver take the descriptor before the dump."),
    Failure("udp-corked", r"Can't dump corked dgram socket",
            "Can't dump corked dgram socket %x", "criu/sk-inet.c", "dump",
            "a UDP socket is corked (UDP_CORK or MSG_MORE: data waits to be sent as one "
            "datagram) and CRIU cannot save the pending data",
            "Uncork the socket (send the datagram) before the dump.",
            issue=f"{_CRIU}#409"),
    # -- consequences: lines that follow a cause in CRIU's error chain ---------------------------
    Failure("dump-failed", r"(?:Pre-)?[Dd]umping FAILED\.", "Dumping FAILED.",
            "criu/cr-dump.c", "dump", "the run's end: the cause is an earlier line",
            "See the error before it.", role=CONSEQUENCE),
    Failure("restore-failed", r"Restoring FAILED\.", "Restoring FAILED.", "criu/cr-restore.c",
            "restore", "the run's end: the cause is an earlier line", "See the error before it.",
            role=CONSEQUENCE),
    Failure("dump-step-failed", r"(?:Dump files|Collect mappings|Pre-dumping files) "
            r"\(pid: \d+\) failed with|Dump files \(pid|Can't dump threads",
            "Dump files (pid: %d) failed with %d", "criu/cr-dump.c", "dump",
            "a step of dumping one process failed: the cause is the line before it",
            "See the error before it.", role=CONSEQUENCE),
    Failure("restore-child-exited", r"\d+ exited, status=\d+|\d+ killed by signal \d+",
            "%d exited, status=%d", "criu/cr-restore.c", "restore",
            "a restored process's helper failed: the cause is its own error before it",
            "See the error before it.", role=CONSEQUENCE),
    Failure("restore-open-fd", r"Unable to open fd=\d+ id=",
            "Unable to open fd=%d id=%#x", "criu/files.c", "restore",
            "a file descriptor could not be restored: the cause is the line before it",
            "See the error before it.", role=CONSEQUENCE),
    Failure("lxc-exec-failed", r"Failed to execute criu|criu process exited \d+"
            r"|restore process died|dumping failed",
            "criu process exited %d, output:", "liblxc src/lxc/criu.c", None,
            "liblxc's report that its CRIU run failed: the cause is CRIU's own error or "
            "liblxc's line before it", "See the error before it.", role=CONSEQUENCE),
)


def _harmless_failures() -> tuple:
    """The known noise of :data:`crit_plus.sources.logs.HARMLESS` as catalog entries."""
    return tuple(Failure(code, pattern, pattern.replace("\\", ""), "criu/util.c", None, why,
                         "Nothing: the run goes on.", role=HARMLESS_ROLE)
                 for code, pattern, why in HARMLESS)


_FIELD = LazyPattern(r"\{(\w+)[^}]*\}")
#: The words of literal text a CRIU message needs to become a pattern: a message made of
#: ``{fields}`` and ``...`` alone (``missing-image``'s ``{says}``) would match any line.
_MIN_WORDS = 2
_WORD = LazyPattern(r"[A-Za-z]{2,}")


def _check_pattern(criu_says: str) -> str | None:
    """A regex for a check's ``criu_says`` (`` / `` alternatives, ``...`` and ``{field}``
    stand for anything); an alternative with fewer than :data:`_MIN_WORDS` words of its
    own is left out (None when none is left): it would explain any line."""
    alternatives = []
    for alternative in criu_says.split(" / "):
        literal = _FIELD.sub("\0", alternative)
        if len(_WORD.findall(literal)) < _MIN_WORDS:
            continue
        parts = [re.escape(part) for part in literal.split("...")]
        alternatives.append(".*".join(part.replace("\0", ".*?") for part in parts))
    return "|".join(f"(?:{alternative})" for alternative in alternatives) or None


def _check_failures(explicit: tuple) -> tuple:
    """validate's checks whose CRIU message no explicit entry covers, as catalog entries
    (restore-side: a check predicts what CRIU says when the restore hits it); a check
    whose message is too vague to find in a log (:func:`_check_pattern`) has none."""
    covered = {failure.check for failure in explicit}
    found = []
    for check in CHECKS.values():
        if not check.criu_says or check.code in covered:
            continue
        pattern = _check_pattern(check.criu_says)
        if pattern is not None:
            found.append(Failure(check.code, pattern, check.criu_says, "criu/*.c", "restore",
                                 check.what, check.fix, check=check.code))
    return tuple(found)


def _with_check_fixes(failures: tuple) -> tuple:
    """Entries whose fix is validate's (:data:`_SEE_CHECK`) get their check's fix."""
    return tuple(replace(failure, fix=CHECKS[failure.check].fix)
                 if failure.fix == _SEE_CHECK and failure.check in CHECKS else failure
                 for failure in failures)


#: Every log message the catalog knows: the entries above, the harmless noise, and validate's
#: checks by the message CRIU prints for them; matched in this order.  A ``fix`` may hold
#: validate's ``{fields}``: :func:`match_failure` fills them.
FAILURES = (_with_check_fixes(_LOG_FAILURES) + _harmless_failures()
            + _check_failures(_LOG_FAILURES))
_COMPILED = tuple((LazyPattern(failure.pattern), failure) for failure in FAILURES)
#: The operations whose logs a dump-side or restore-side entry cannot explain.
_OTHER_SIDE = {"restore": ("dump", "pre-dump"), "dump": ("restore",),
               "pre-dump": ("restore",)}


def applies_to(failure: Failure, operation: str | None) -> bool:
    """Whether ``failure`` can explain a line of a run of ``operation`` (None: unknown):
    a restore's message never explains a dump's log, nor a dump's a restore's."""
    return operation not in _OTHER_SIDE.get(failure.operation or "", ())


def match_failure(line: str, operation: str | None = None,
                  fields: dict | None = None) -> Failure | None:
    """The first :data:`FAILURES` entry whose pattern is found in the log ``line`` and that
    applies to a run of ``operation`` (:func:`applies_to`), its fix filled with ``fields``
    (:func:`fill`: ``manager``, ``instance``, ``key``... missing ones as NAME); or None
    (an error the catalog does not know: no cause is made up for it)."""
    found = next((failure for pattern, failure in _COMPILED
                  if applies_to(failure, operation) and pattern.search(line)), None)
    if found is None or "{" not in found.fix:
        return found
    return replace(found, fix=fill(found.fix, **(fields or {})) or found.fix)
