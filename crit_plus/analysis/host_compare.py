"""``host compare``: can checkpoints made on one host restore on another at all?

Without a checkpoint, the differences between two :class:`~.host.HostFacts` that
would make ``validate --target`` complain about *some* checkpoint: each
:class:`Difference` has the code and severity validate gives the same problem
(:mod:`.validate_catalog`), so ``host compare`` never calls something an error that
validate would call a warning.  A difference matters only for checkpoints that use
the feature; the message says which.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sources.logs import release_tuple
from .host import FEATURES, HostFacts, xsave_description
from .kernel_needs import FSTYPES
from .validate_catalog import CHECKS
from .validate_target import FORMAT_CHANGES, MACHINES

#: The file systems CRIU mounts by type that matter when the source can mount them.
_MOUNTED = sorted(set(FSTYPES.values()) | {"btrfs", "ext4", "xfs"})


@dataclass(frozen=True, slots=True)
class Difference:
    """One difference: the validate code it corresponds to, its severity, a sentence."""

    code: str
    severity: str
    message: str

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"code": self.code, "severity": self.severity, "message": self.message}


def _add(found, code, message, severity=None):
    found.append(Difference(code, severity or CHECKS[code].severity or "error", message))


def compare(source: HostFacts, target: HostFacts) -> list:
    """The :class:`Difference` s that matter for restoring ``source``'s checkpoints on
    ``target``, most severe first."""
    found: list = []
    if source.machine and target.machine and source.machine != target.machine:
        allowed = next((m for m in MACHINES.values() if source.machine in m[:1]), ())
        if target.machine not in allowed:
            _add(found, "arch-mismatch", f"the source is {source.machine}, the target "
                 f"{target.machine}")
    if source.page_size and target.page_size and source.page_size != target.page_size:
        _add(found, "arch-mismatch", f"pages are {source.page_size} bytes on the source, "
             f"{target.page_size} on the target", "error")
    missing = (source.xsave_mask or 0) & ~(target.xsave_mask or 0)
    if source.xsave_mask is not None and target.xsave_mask is not None and missing:
        _add(found, "cpu-xsave", f"the target CPU lacks {xsave_description(missing)}: "
             "threads that used them die with SIGILL, and a dump with cpuinfo.img does not "
             "restore (cpuinfo-xfeatures)")
    exact = (source.criu_xfeatures or 0) & ~(target.criu_xfeatures or 0)
    if source.criu_xfeatures is not None and target.criu_xfeatures is not None and exact:
        _add(found, "cpuinfo-xfeatures", f"the target CPU lacks XSAVE bits {exact:#x} as "
             "CRIU sees them (criu cpuinfo dump): a dump with cpuinfo.img does not restore")
    if source.cpu_flags is not None and target.cpu_flags is not None:
        flags = sorted(source.cpu_flags - target.cpu_flags)
        if flags:
            _add(found, "cpu-flags", f"CPU flags the target lacks: {' '.join(flags)} "
                 "(programs that chose code paths by them may fail)", "warning")
    _kernel(found, source, target)
    _filesystems(found, source, target)
    _criu(found, source, target)
    if source.cgroup_version and target.cgroup_version \
            and source.cgroup_version != target.cgroup_version:
        _add(found, "cgroup-controller", f"the source has cgroup v{source.cgroup_version}, "
             f"the target v{target.cgroup_version}: the dump's controllers are not there")
    if source.lsm and target.lsm and source.lsm != target.lsm and source.lsm != "NO_LSM":
        _add(found, "lsm-missing", f"the source's LSM is {source.lsm}, the target's "
             f"{target.lsm} (an error for processes with LSM profiles)")
    for plugin in sorted((source.plugins or set()) - (target.plugins or set())):
        if target.plugins is not None:
            _add(found, "plugin-missing", f"CRIU plugin {plugin} is not on the target",
                 "warning")
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(found, key=lambda d: order.get(d.severity, 3))


def _kernel(found, source, target):
    if source.kernel and target.kernel and \
            (release_tuple(target.kernel) or ()) < (release_tuple(source.kernel) or ()):
        _add(found, "kernel-older", f"the target runs {target.kernel}, the source "
             f"{source.kernel}")
    lost = [name for name in FEATURES
            if source.feature(name) is True and target.feature(name) is False]
    if lost:
        _add(found, "kernel-feature", "kernel features the target lacks (criu check "
             f"--feature): {', '.join(lost)} (an error for checkpoints that use them)")
    untested = [name for name in FEATURES
                if source.feature(name) is True and target.feature(name) is None]
    if untested:
        _add(found, "kernel-feature", f"{len(untested)} kernel features the source has were "
             "not tested on the target (its fingerprint was taken where `criu check` could "
             "not run): they may be missing; take it again with a criu that runs there",
             "warning")


def _filesystems(found, source, target):
    if source.filesystems is None or target.filesystems is None:
        return
    lost = [name for name in _MOUNTED
            if source.can_mount(name) and not target.can_mount(name)]
    if lost:
        _add(found, "fs-missing", f"file systems the target cannot mount: {', '.join(lost)} "
             "(an error for checkpoints with such mounts)")


def _criu(found, source, target):
    if target.criu_version is None and target.criu_path is None:
        _add(found, "criu-missing", "no criu on the target")
        return
    installed, wanted = release_tuple(target.criu_version), release_tuple(source.criu_version)
    if installed is None or wanted is None or installed >= wanted:
        return
    changes = [why for version, why in FORMAT_CHANGES if installed < version <= wanted]
    why = f": {'; '.join(changes)}" if changes else ""
    _add(found, "criu-older", f"criu {target.criu_version} on the target is older than "
         f"{source.criu_version} on the source{why}", "error" if changes else "warning")


__all__ = ["Difference", "compare"]
