"""``validate`` stage 3: the checkpoint against where it would be restored.

Against a **target root** (the directory that will be ``/`` of the restored
processes), as CRIU's ``open_path``/``validate_file`` checks each regular file
when it reopens it:

- every regular file of ``files.img`` on the root file system exists (deleted
  files are recreated from ghost images and skipped; files on other mounts are
  mounted at restore and skipped);
- its size equals the recorded one (CRIU records none for files opened
  write-only with O_APPEND), its ``st_mode`` the recorded mode, and an ELF
  file's build-id the recorded one (:mod:`.elf`);
- the mountpoints of the root mount's direct children exist.

Against a **host** (:class:`~.host.HostFacts`): pids free when the tree is
restored into the host's pid namespace, the architecture, the XSAVE features
each thread used and those ``cpuinfo.img`` records, the kernel and installed
criu not older than the dump's, the LSM when processes carry profiles, the
plugins, cgroup controllers and paths, and the host paths of autodetected
external mounts.
"""

from __future__ import annotations

import os
import stat

from ..describe import count_text
from ..files import resolve_in_root
from ..sources.logs import release_tuple
from . import elf
from .host import KNOWN_XSAVE, xsave_description
from .kernel_needs import filesystems_needed, kernel_needs
from .validate_facts import AUTODETECTED

#: ``core_entry.mtype`` → the ``uname -m`` values that can run it.
MACHINES = {
    "X86_64": ("x86_64",), "IA32": ("x86_64", "i686", "i586", "i386"),
    "AARCH64": ("aarch64", "arm64"), "ARM": ("armv7l", "armv8l", "aarch64"),
    "PPC64": ("ppc64le", "ppc64"), "S390": ("s390x",), "MIPS": ("mips64",),
    "LOONGARCH64": ("loongarch64",), "RISCV64": ("riscv64",),
}
#: CRIU releases that changed the image format in a way older releases misread.
FORMAT_CHANGES = (
    ((4, 2), "pagemap entries keep their page count in a new 64-bit field that older CRIU "
             "reads as 0 pages"),
)
_ALL_PERMS = stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO


def run(facts, out, target_root, host):
    """Add the target findings to ``out`` (or say in ``out.skipped`` why there are none)."""
    if target_root is None:
        out.skip("files and mountpoints: no target root (give --target-root DIR; --host uses / "
                 "or, for a container, the rootfs/ beside its state when there is one)")
    else:
        _files(facts, out, os.fspath(target_root))
        _mountpoints(facts, out, os.fspath(target_root))
    if host is None:
        out.skip("pids, CPU, architecture, kernel, criu, LSM, plugins, cgroups: no host "
                 "(give --host)")
        return
    for check in (_pids, _architecture, _xsave, _cpuinfo, _kernel, _kernel_features,
                  _filesystems, _criu, _lsm, _plugins, _cgroups, _ext_mount_sources):
        check(facts, out, host)


#: Codes only a live host (``--host``) can give: a fingerprint (``--target``) cannot say
#: which pids are in use, which cgroup directories or host paths exist now.
LIVE_ONLY = frozenset({"pid-busy", "cgroup-path", "ext-mount-source"})


# -- files -------------------------------------------------------------------------------------


def _regular_files(facts):
    """Every regular :class:`~crit_plus.files.FileObject` CRIU reopens by path on the root fs."""
    for file in facts.checkpoint.files:
        if file.kind != "file" or file.deleted or not file.path or file.entry is None:
            continue
        if file.external or not facts.on_root_mount(file):
            continue
        yield file


def _files(facts, out, target_root):
    checkpoint = facts.checkpoint
    for file in _regular_files(facts):
        path = file.path
        pid, fd = facts.holder(file)
        common = dict(source=file.source, pid=pid, fd=fd, path=path,
                      criu_path=_criu_path(path))
        host_path = resolve_in_root(target_root, path)
        info = None
        if host_path is not None:
            try:
                info = os.stat(host_path)
            except (OSError, ValueError):
                info = None
        if info is None:
            out.add("file-missing", f"{path} is not in the target root", path,
                    host_path=os.path.join(target_root, path.lstrip("/")), **common)
            continue
        size, mode = file.details.get("size"), file.details.get("mode")
        if size is not None and stat.S_ISREG(info.st_mode) and info.st_size != size:
            out.add("file-size", f"{path} has {info.st_size} bytes, the dump recorded {size}",
                    path, actual=info.st_size, expected=size, **common)
        elif size is not None and file.build_id:
            _build_id(out, path, host_path, file.build_id, common)
        if mode is not None and info.st_mode != mode:
            out.add("file-mode", f"{path} has mode {info.st_mode:o}, the dump recorded "
                    f"{mode:o}", path, actual=info.st_mode, expected=mode,
                    expected_perm=mode & _ALL_PERMS, host_path=host_path, **common)
    others = sum(1 for f in checkpoint.files if f.kind == "file" and not f.deleted
                 and not facts.on_root_mount(f))
    if others:
        out.skip(f"{others} files on other mounts (mounted at restore, not in the target root)")


def _criu_path(path):
    """``path`` as CRIU's restore messages print it: relative to the root (CRIU
    opens it with ``openat(root, path + 1)``), ``.`` for the root itself."""
    return path[1:] or "." if path.startswith("/") else path


def _build_id(out, path, host_path, words, common):
    """Compare an ELF file's build-id with the recorded words, as ``validate_with_build_id``."""
    found = elf.build_id(host_path)
    if found is None:
        return  # CRIU then validates with the size alone
    recorded = elf.words_to_bytes(words)
    if elf.round_up4(len(found)) != len(recorded) or recorded[:len(found)] != found:
        out.add("file-build-id", f"{path} has build-id {found.hex()}, the dump recorded "
                f"{recorded.hex()}", path, **common)


def _mountpoints(facts, out, target_root):
    root_mount = facts.root_mount
    if root_mount is None:
        return
    for mount in facts.mounts:
        if mount.parent_mnt_id != root_mount.mnt_id or mount.mountpoint == "/":
            continue
        if resolve_in_root(target_root, mount.mountpoint) is None:
            host_path = os.path.join(target_root, mount.mountpoint.lstrip("/"))
            out.add("mountpoint-missing", f"mountpoint {mount.mountpoint} (mount "
                    f"{mount.mnt_id}) is not in the target root", mount.mountpoint,
                    image=facts.mounts_image, path=mount.mountpoint,
                    mountpoint=mount.mountpoint, host_path=host_path, mnt_id=mount.mnt_id)


# -- host --------------------------------------------------------------------------------------


def _pids(facts, out, host):
    if facts.new_namespaces is None:
        out.skip("free pids: the root's namespaces are unknown")
        return
    if not facts.host_pid_namespace():
        return  # a new pid namespace: pids are free by construction
    if not host.live:
        out.skip("free pids: a fingerprint does not say which pids are in use (run validate "
                 "--host on the target)")
        return
    if not host.has_proc:
        out.skip(f"free pids: {host.path('proc')} is not there")
        return
    for process in facts.checkpoint.processes:
        for thread in process.threads:
            if host.pid_in_use(thread.tid):
                what = "pid" if thread.is_leader else f"thread id (of pid {process.pid})"
                out.add("pid-busy", f"{what} {thread.tid} is in use on the host",
                        f"pid {process.pid}", image="pstree.img", pid=thread.tid)


def _architecture(facts, out, host):
    root = facts.root
    if root is None or root.core is None:
        return
    if host.machine is None:
        out.skip("architecture: the host's machine is unknown")
        return
    mtype = root.core.arch
    machines = MACHINES.get(mtype)
    if machines is not None and host.machine not in machines:
        out.add("arch-mismatch", f"the images are {mtype}, the host is {host.machine}",
                f"core-{root.pid}.img", source=root.core.source, pid=root.pid, mtype=mtype,
                arch=machines[0])


def _xsave(facts, out, host):
    mask = host.xsave_mask
    if mask is None:
        out.skip("XSAVE features: the host's /proc/cpuinfo has no flags line")
        return
    missing_by_mask = {}
    for process in facts.checkpoint.processes:
        for thread in process.threads:
            used = thread.core.xsave_features if thread.core is not None else None
            missing = (used or 0) & KNOWN_XSAVE & ~mask
            if missing:
                missing_by_mask.setdefault(missing, []).append((process.pid, thread.tid))
    for missing, threads in missing_by_mask.items():
        pids = sorted({pid for pid, _tid in threads})
        features = xsave_description(missing)
        which = "pid" if len(pids) == 1 else "pids"
        out.add("cpu-xsave", f"{count_text(len(threads), 'thread')} of {which} "
                f"{', '.join(map(str, pids))} used "
                f"{features}, which the host CPU lacks", f"pid {pids[0]}",
                image=f"core-{threads[0][1]}.img", pid=pids[0], features=features)


def _cpuinfo(facts, out, host):
    """``cpuinfo.img`` against the host's XSAVE components: as CRIU sees them (``criu
    cpuinfo dump``) when known, else as the CPU flags imply."""
    exact = host.criu_xfeatures
    mask = exact if exact is not None else host.xsave_mask
    for cpu in facts.checkpoint.cpuinfo:
        missing = cpu.xfeatures_mask & ~(mask or 0)
        if exact is None:
            missing &= KNOWN_XSAVE
        if mask is not None and missing:
            features = xsave_description(missing) or f"XSAVE bits {missing:#x}"
            out.add("cpuinfo-xfeatures", f"cpuinfo.img needs {features}, which the host "
                    "CPU lacks", "cpuinfo.img", image="cpuinfo.img", bits=missing,
                    features=features)


def _unknown(subject, dumped, here, here_side):
    """The skip of a comparison of the dump's value with the host's: which one (or both)
    is unknown, ``criu version: the dump's (from its log) is unknown``."""
    sides = [side for side, value in (("the dump's (from its log)", dumped), (here_side, here))
             if value is None]
    return f"{subject}: {' and '.join(sides)} {'are' if len(sides) > 1 else 'is'} unknown"


def _kernel(facts, out, host):
    _criu_dumped, dumped = facts.dump_versions
    if dumped is None or host.kernel is None:
        out.skip(_unknown("kernel", dumped, host.kernel, "the host's"))
        return
    if (release_tuple(host.kernel) or ()) < (release_tuple(dumped) or ()):
        out.add("kernel-older", f"the host runs {host.kernel}, the dump ran on {dumped}",
                "kernel", dumped=dumped)


def _kernel_features(facts, out, host):
    unknown = []
    for need in kernel_needs(facts):
        supported = host.feature(need.feature)
        if supported is None:
            unknown.append(need.feature)
        elif not supported:
            out.add("kernel-feature", f"{need.why}: the target kernel lacks CRIU's "
                    f"{need.feature} (criu check --feature {need.feature})", need.image,
                    image=need.image, feature=need.feature)
    if unknown:
        why = (f"`criu check` failed: {host.criu_check_error}" if host.criu_check_error
               else "`criu check` needs root and a criu that runs there")
        out.skip(f"kernel features {', '.join(unknown)}: not tested on the host ({why})")


def _filesystems(facts, out, host):
    wanted = filesystems_needed(facts)
    if wanted and host.filesystems is None:
        out.skip("file systems: the host's /proc/filesystems is unknown")
        return
    for fstype, mountpoint in sorted(wanted.items()):
        if not host.can_mount(fstype):
            out.add("fs-missing", f"{mountpoint} is a {fstype} mount, and the target kernel "
                    f"neither has {fstype} nor a module for it", mountpoint,
                    image=facts.mounts_image, path=mountpoint, fstype=fstype)


def _criu(facts, out, host):
    dumped, _kernel_release = facts.dump_versions
    if host.criu_path is None and host.criu_version is None:
        out.add("criu-missing", "no criu binary was found on the target", "criu",
                dumped=dumped or "of the dump's version")
        return
    if dumped is None or host.criu_version is None:
        out.skip(_unknown("criu version", dumped, host.criu_version, "the installed one"))
        return
    installed, wanted = release_tuple(host.criu_version), release_tuple(dumped)
    if installed is None or wanted is None or installed >= wanted:
        return
    changes = [why for version, why in FORMAT_CHANGES if installed < version <= wanted]
    why = f" ({'; '.join(changes)})" if changes else ""
    out.add("criu-older", f"criu {host.criu_version} is installed ({host.criu_path}), the "
            f"dump was made by {dumped}", host.criu_path or "criu",
            severity="error" if changes else "warning", path=host.criu_path, dumped=dumped,
            why=why)


def _lsm(facts, out, host):
    inventory = facts.checkpoint.inventory
    image_lsm = inventory.lsm_type if inventory is not None else None
    if image_lsm in (None, "NO_LSM") or image_lsm == host.lsm:
        return
    for process in facts.checkpoint.processes:
        for thread in process.threads:
            creds = thread.creds
            if creds is not None and creds.lsm_profile:
                out.add("lsm-missing", f"the dump used {image_lsm} (thread {thread.tid} has "
                        f"profile {creds.lsm_profile!r}), the host has {host.lsm}",
                        f"pid {process.pid}", source=inventory.source, pid=process.pid,
                        lsm=image_lsm)
                return


def _plugins(facts, out, host):
    inventory = facts.checkpoint.inventory
    for plugin in inventory.plugins if inventory is not None else ():
        if not host.has_plugin(plugin):
            out.add("plugin-missing", f"{plugin} is not in {host.path('usr/lib/criu')}",
                    "inventory.img", source=inventory.source, plugin=plugin)


def _cgroups(facts, out, host):
    wanted: dict = {}
    for members in facts.checkpoint.cgroup_sets.values():  # the graph's cgroup.img
        for member in members:
            wanted.setdefault(member.controller, set()).add(member.path)
    if wanted and not host.live and not facts.manager:
        out.skip("cgroup paths: a fingerprint does not list the host's cgroup directories")
    for name in sorted(wanted):
        available = host.has_controller(name)
        if available is None:
            out.skip("cgroups: the host's controllers are unknown")
            return
        label = name or "cgroup2"
        if not available:
            out.add("cgroup-controller", f"controller {label} is not available on the host",
                    "cgroup.img", image="cgroup.img", controller=label)
            continue
        if facts.manager:
            continue  # liblxc passes --cgroup-root: the paths are remapped
        hierarchy = host.cgroup_hierarchy(name)
        for path in sorted(wanted[name]) if hierarchy else ():
            if not os.path.isdir(os.path.join(hierarchy, path.lstrip("/"))):
                out.add("cgroup-path", f"{label}:{path} does not exist on the host",
                        "cgroup.img", image="cgroup.img", path=path, controller=label)


def _ext_mount_sources(facts, out, host):
    if not host.live:
        if any(mount.ext_key == AUTODETECTED for mount in facts.mounts):
            out.skip("host paths of external mounts: a fingerprint does not list them")
        return
    for mount in facts.mounts:
        if mount.ext_key != AUTODETECTED or not mount.source.startswith("/"):
            continue
        if not os.path.exists(host.path(mount.source)):
            out.add("ext-mount-source", f"{mount.mountpoint} is mounted from the host's "
                    f"{mount.source}, which does not exist", mount.mountpoint,
                    image=facts.mounts_image, path=mount.source, mount_source=mount.source)


__all__ = ["FORMAT_CHANGES", "LIVE_ONLY", "MACHINES", "run"]
