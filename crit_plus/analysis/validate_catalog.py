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
from dataclasses import dataclass

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


_RECOPY = ("Copy the checkpoint again from the machine that made it: the images are "
           "incomplete or damaged.")
_LXC = "LXD, Incus and lxc-checkpoint pass it themselves."

CHECKS = {check.code: check for check in (
    # -- integrity: reported by the graph, reused --------------------------------------------
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
          "will not restore through them. Start the container without its state "
          "({manager} start --stateless {instance}), or restore it by hand with criu "
          "restore --inherit-fd fd[N]:{key}. For future checkpoints set raw.lxc "
          "'lxc.console.path = none' before dumping."),
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
]
