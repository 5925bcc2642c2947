"""What a restore host offers, read once into :class:`HostFacts`.

``validate --host`` compares a checkpoint with the machine it would be restored
on.  Everything it needs from that machine is read here, from files under a
root directory (``/`` for the running host; a prepared tree in tests), so the
analysis itself stays pure::

    ROOT/proc/sys/kernel/osrelease     kernel release (uname -r)
    ROOT/proc/sys/kernel/arch          machine (uname -m); os.uname() for "/"
    ROOT/proc/cpuinfo                  "flags" and "vendor_id" of the first CPU
    ROOT/sys/kernel/security/apparmor  AppArmor is the LSM (CRIU's kerndat_lsm)
    ROOT/sys/fs/selinux/enforce        else SELinux (approximately: CRIU asks libselinux)
    ROOT/proc/cgroups                  cgroup v1 controllers and whether enabled
    ROOT/sys/fs/cgroup/                cgroup hierarchies (v1 dirs, unified, or pure v2)
    ROOT/proc/PID                      a pid in use (checked on demand)
    ROOT/usr/lib/criu/NAME.so          CRIU plugins
    ROOT/usr/sbin/criu ...             the criu binary; `criu --version` only for "/"
    ROOT/proc/filesystems              the file systems the kernel can mount now
    ROOT/lib/modules/RELEASE/kernel/fs the file systems it could load as modules
    ROOT/proc/sys/kernel/pid_max       the largest pid
    `criu check --feature NAME`        each of CRIU's kernel features (:data:`FEATURES`),
                                       only for "/", run when first asked (it needs root)

The same facts come from a fingerprint file (``crit-plus host -o FILE``,
:mod:`.fingerprint`): ``root`` is then None and the checks that must look at the
machine itself (free pids, cgroup directories, host paths) are skipped.

A fact that cannot be read is None, never a guess: the checks that need it say
they were skipped.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

#: Where CRIU looks for plugins by default (``CR_PLUGIN_DEFAULT``).
PLUGIN_DIR = "usr/lib/criu"
#: Where criu is installed when it is not on the search path.
CRIU_SBIN = ("/usr/sbin/criu", "/usr/local/sbin/criu", "/sbin/criu")
#: Where a criu binary is looked for under a root that is not "/".
CRIU_PATHS = tuple(path[1:] for path in CRIU_SBIN) + ("usr/bin/criu",)

#: XSAVE state components (``xstate_bv`` bits) → the /proc/cpuinfo flag that says
#: the CPU has them.  Bits 8 and 10-16 are supervisor states a thread's user xsave
#: area never carries; newer bits are left out until their flag names are certain.
XSAVE_FLAGS = {
    0: "fpu", 1: "sse", 2: "avx", 3: "mpx", 4: "mpx", 5: "avx512f", 6: "avx512f",
    7: "avx512f", 9: "pku", 17: "amx_tile", 18: "amx_tile",
}

#: Names of the XSAVE components, for messages.
XSAVE_NAMES = {
    0: "x87", 1: "SSE", 2: "AVX", 3: "MPX bounds", 4: "MPX CSR", 5: "AVX-512 opmask",
    6: "AVX-512 ZMM_Hi256", 7: "AVX-512 Hi16_ZMM", 9: "PKRU", 17: "AMX TILECFG",
    18: "AMX TILEDATA",
}

#: The kernel features ``criu check --feature NAME`` tests: CRIU 4.2.1's ``feature_list``
#: (criu/cr-check.c), in its order.
FEATURES = (
    "mnt_id", "mem_dirty_track", "aio_remap", "timerfd", "tun", "tun_ns", "userns",
    "fdinfo_lock", "seccomp_suspend", "seccomp_filters", "loginuid", "cgroupns", "autofs",
    "tcp_half_closed", "compat_cr", "uffd", "uffd-noncoop", "can_map_vdso", "sk_ns",
    "sk_unix_file", "net_diag_raw", "nsid", "link_nsid", "kcmp_epoll", "timens",
    "external_net_ns", "clone3_set_tid", "newifindex", "nftables", "has_ipt_legacy",
    "pidfd_store", "ns_pid", "apparmor_stacking", "network_lock_nftables", "sockopt_buf_lock",
    "memfd_hugetlb", "move_mount_set_group", "openat2", "get_rseq_conf", "ipv6_freebind",
    "pagemap_scan", "timer_cr_ids", "overlayfs_maps", "breakpoints", "pagemap_scan_guard_pages",
)

#: The XSAVE bits this module can judge.
KNOWN_XSAVE = sum(1 << bit for bit in XSAVE_FLAGS)


def xsave_mask_from_flags(flags):
    """The XSAVE components a CPU with these /proc/cpuinfo ``flags`` supports (a bit mask)."""
    mask = 0
    for bit, flag in XSAVE_FLAGS.items():
        if flag in flags:
            mask |= 1 << bit
    return mask


def xsave_description(mask):
    """``AVX-512 opmask (avx512f), ...`` for the bits of ``mask``."""
    return ", ".join(f"{XSAVE_NAMES[bit]} ({XSAVE_FLAGS[bit]})"
                     for bit in sorted(XSAVE_FLAGS) if mask >> bit & 1)


@dataclass(frozen=True)
class HostFacts:
    """Facts about a restore host; None where a fact could not be read.

    ``criu_path`` is where a criu binary was found (None: none found),
    ``criu_version`` its version when it could be run.
    """

    root: str | None  # None: the facts come from a fingerprint file
    machine: str | None = None
    kernel: str | None = None
    cpu_vendor: str | None = None
    cpu_flags: frozenset | None = None
    lsm: str | None = None  # APPARMOR, SELINUX or NO_LSM, as in inventory.img
    criu_version: str | None = None
    criu_path: str | None = None
    cgroup_v1: frozenset | None = None  # enabled v1 controllers (/proc/cgroups)
    cgroup_dirs: tuple = field(default=())  # entries of /sys/fs/cgroup
    cgroup2_controllers: frozenset | None = None
    page_size: int | None = None
    cpu_model: str | None = None
    #: the CPU as CRIU sees it (``criu cpuinfo dump``, as root): the XSAVE components and
    #: xsave area size a restore compares ``cpuinfo.img`` with
    criu_xfeatures: int | None = None
    criu_xsave_size: int | None = None
    #: feature name → True (supported), False (not), None (could not be tested)
    kernel_features: Mapping | None = field(default=None, compare=False)
    filesystems: frozenset | None = None  # /proc/filesystems
    fs_modules: frozenset | None = None  # file systems the kernel could load as modules
    plugins: frozenset | None = None  # CRIU plugins (NAME.so) in ROOT/usr/lib/criu
    pid_max: int | None = None
    lxd_version: str | None = None
    incus_version: str | None = None
    taken_at: str | None = None  # ISO 8601, UTC
    needed_root: tuple = field(default=())  # facts not read because it needs root
    #: a fingerprint's ``criu.check_error`` (live: :attr:`LiveFeatures.error`)
    recorded_check_error: str | None = field(default=None, compare=False)

    @property
    def criu_check_error(self) -> str | None:
        """Why ``criu check`` could not test a kernel feature: the first error line it
        printed (live: once a feature it could not test was asked for), or None."""
        return getattr(self.kernel_features, "error", None) or self.recorded_check_error

    @property
    def live(self):
        """True for a machine's own files (a root directory), False for a fingerprint."""
        return self.root is not None

    def path(self, *parts):
        """``parts`` joined under the host root (the root itself: ``/`` for a fingerprint)."""
        return os.path.join(self.root or "/", *[p.lstrip("/") for p in parts])

    @property
    def has_proc(self):
        """True when the root has a /proc to look pids up in (never for a fingerprint)."""
        return self.live and os.path.isdir(self.path("proc"))

    @property
    def cgroup_version(self):
        """2 (pure cgroup2: ``/sys/fs/cgroup`` is the unified hierarchy), 1 (v1
        hierarchies, perhaps beside a unified one), or None when unknown."""
        if self.cgroup2_controllers is not None and "unified" not in self.cgroup_dirs:
            return 2
        if self.cgroup_v1 or "unified" in self.cgroup_dirs:
            return 1
        return None

    def feature(self, name):
        """True/False as ``criu check --feature NAME`` answers on this host, None unknown."""
        if self.kernel_features is None:
            return None
        return self.kernel_features.get(name)

    def can_mount(self, fstype):
        """True when the kernel has file system ``fstype`` or could load it, None unknown."""
        if self.filesystems is None:
            return None
        return fstype in self.filesystems or fstype in (self.fs_modules or ())

    def pid_in_use(self, pid):
        """True when ``ROOT/proc/PID`` exists (a process or thread holds the pid)."""
        return os.path.exists(self.path("proc", str(int(pid))))

    @property
    def xsave_mask(self):
        """The XSAVE components the CPU offers (from its flags), or None."""
        return None if self.cpu_flags is None else xsave_mask_from_flags(self.cpu_flags)

    def has_plugin(self, name):
        """True when CRIU would find plugin ``name`` in its default directory."""
        base = name if name.endswith(".so") else f"{name}.so"
        if self.plugins is not None:
            return base in self.plugins
        return os.path.exists(self.path(PLUGIN_DIR, base))

    def has_controller(self, name):
        """True when cgroup controller ``name`` can be used: a named hierarchy
        (``name=...``, CRIU mounts it itself), cgroup2 (``""``) when the host has it,
        else a v1 controller enabled in /proc/cgroups or a v2 controller.  None when
        the host's cgroups are unknown."""
        if name.startswith("name="):
            return True
        if self.cgroup_v1 is None and self.cgroup2_controllers is None:
            return None
        if name == "":
            return self.cgroup2_controllers is not None
        return name in (self.cgroup_v1 or ()) or name in (self.cgroup2_controllers or ())

    def cgroup_hierarchy(self, controller):
        """The directory under ``ROOT/sys/fs/cgroup`` holding ``controller`` (``cpu``,
        ``name=systemd``, ``""`` for cgroup2), or None when the host has none (or is
        a fingerprint, which does not list the host's cgroup directories)."""
        if not self.live:
            return None
        base = self.path("sys/fs/cgroup")
        if controller == "":
            if "unified" in self.cgroup_dirs:
                return os.path.join(base, "unified")
            return base if self.cgroup2_controllers is not None else None
        wanted = controller[5:] if controller.startswith("name=") else controller
        for name in self.cgroup_dirs:
            if wanted in name.split(","):
                return os.path.join(base, name)
        if self.cgroup2_controllers is not None and controller in self.cgroup2_controllers \
                and "unified" not in self.cgroup_dirs:
            return base
        return None


def _read(path, limit=1 << 20):
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            return stream.read(limit)
    except OSError:
        return None


def _cpuinfo(text):
    """``(vendor_id, model name, flags)`` of the first CPU in /proc/cpuinfo."""
    found = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("vendor_id", "model name", "flags") and key not in found:
            found[key] = value.strip()
        elif not line.strip() and found:
            break  # the first CPU's block ends
    flags = found.get("flags")
    return (found.get("vendor_id"), found.get("model name"),
            None if flags is None else frozenset(flags.split()))


#: What ``criu check`` prints when it could not test a feature at all.
_UNTESTED = ("Unknown feature", "Could not initialize", "CAP_SYS_ADMIN",
             "CAP_CHECKPOINT_RESTORE", "must be run as root")


class LiveFeatures(Mapping):
    """CRIU's kernel features on the running host, each tested with ``criu check --feature
    NAME`` the first time it is asked for (about 0.1 s each): True, False, or None when
    criu does not know the name or could not run.  ``error`` is the first error line of
    the first check that could not test its feature (criu failing on this kernel), or None."""

    def __init__(self, criu_path: str, timeout: float = 30, error: str | None = None) -> None:
        self.criu_path = criu_path
        self.timeout = timeout
        self._known: dict = {}
        #: preset (``error``): criu cannot run at all, and no feature is tested
        self._broken = error
        self.error: str | None = error

    def __getitem__(self, name: str) -> bool | None:
        if name not in FEATURES:
            raise KeyError(name)
        if name not in self._known:
            self._known[name] = self._check(name)
        return self._known[name]

    def __iter__(self) -> Iterator[str]:
        return iter(FEATURES)

    def __len__(self) -> int:
        return len(FEATURES)

    def _check(self, name):
        if self._broken is not None:
            return None
        try:
            done = subprocess.run([self.criu_path, "check", "--feature", name],
                                  capture_output=True, text=True, timeout=self.timeout,
                                  check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as error:
            self.error = self.error or f"{self.criu_path} could not run: {error}"
            return None
        said = (done.stdout or "") + (done.stderr or "")
        if done.returncode == 0 and "is supported" in said:
            return True
        if any(text in said for text in _UNTESTED):
            self.error = self.error or _first_error(said)
            return None  # criu could not test it: the answer is unknown, not "no"
        return False


def _first_error(said, most=300):
    """The first ``Error`` line of criu's output (else its first line), at most ``most``
    characters."""
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    line = next((line for line in lines if line.startswith("Error")), lines[0] if lines else "")
    return line[:most] or None


def _cgroups_v1(text):
    if text is None:
        return None
    enabled = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and not line.startswith("#") and parts[3] == "1" and parts[1] != "0":
            enabled.add(parts[0])
    return frozenset(enabled)


def _lsm(root):
    """The LSM CRIU would see under ``root`` (its ``kerndat_lsm``): AppArmor when
    securityfs shows it, else SELinux when selinuxfs is there, else NO_LSM."""
    if os.path.exists(os.path.join(root, "sys/kernel/security/apparmor")):
        return "APPARMOR"
    if os.path.exists(os.path.join(root, "sys/fs/selinux/enforce")):
        return "SELINUX"
    return "NO_LSM"


def criu_version(program="criu", timeout=10):
    """``(version, path)`` of the installed CRIU (``criu --version``), or ``(None, None)``."""
    path = shutil.which(program) or next((p for p in CRIU_SBIN if os.access(p, os.X_OK)), None)
    if path is None:
        return None, None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None, path
    match = re.search(r"Version:\s*(\S+)", done.stdout or "")
    return (match.group(1) if match else None), path


def criu_cpuinfo(criu_path: str, timeout: float = 30) -> tuple:
    """``(xfeatures_mask, xsave_size)`` of this CPU as ``criu cpuinfo dump`` writes them
    (into a temporary directory, removed), or ``(None, None)``."""
    import tempfile

    from decoders.errors import DecodeError

    from ..resources import read_cpuinfo_file

    with tempfile.TemporaryDirectory(prefix="crit-plus-cpuinfo-") as directory:
        try:
            subprocess.run([criu_path, "cpuinfo", "dump", "-D", directory], timeout=timeout,
                           capture_output=True, check=False, stdin=subprocess.DEVNULL)
            cpus = read_cpuinfo_file(os.path.join(directory, "cpuinfo.img"))
        except (OSError, subprocess.SubprocessError, DecodeError):
            return None, None
    if not cpus:
        return None, None
    return cpus[0].xfeatures_mask, cpus[0].xsave_size


def _filesystems(text):
    if text is None:
        return None
    return frozenset(line.split()[-1] for line in text.splitlines() if line.split())


#: Suffixes of kernel module files.
_MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


def _fs_modules(root, kernel):
    """Names of the modules under ``lib/modules/RELEASE/kernel/fs`` (``btrfs``, ``overlay``,
    ...: a file system module is named after its type), or None without the directory."""
    if kernel is None:
        return None
    top = os.path.join(root, "lib/modules", kernel, "kernel/fs")
    if not os.path.isdir(top):
        return None
    names = set()
    for _dir, _subdirs, files in os.walk(top):
        for name in files:
            for suffix in _MODULE_SUFFIXES:
                if name.endswith(suffix):
                    names.add(name[:-len(suffix)])
    return frozenset(names)


def _plugins(root):
    try:
        return frozenset(name for name in os.listdir(os.path.join(root, PLUGIN_DIR))
                         if name.endswith(".so"))
    except OSError:
        return None


def _tool_version(program, timeout=10):
    """``PROGRAM --version`` of an installed LXD or Incus, or None."""
    path = shutil.which(program) or next(
        (p for p in (f"/snap/bin/{program}", f"/usr/sbin/{program}") if os.access(p, os.X_OK)),
        None)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    version = (done.stdout or "").strip()
    return version if done.returncode == 0 and version else None


def probe_host(root="/", criu=None):
    """Read :class:`HostFacts` from the files under ``root``.

    ``criu`` is ``(version, path)`` to use instead of looking: by default
    ``criu --version`` is run for ``/``; under another root only the binary is
    looked for (its version stays unknown).
    """
    root = os.fspath(root)
    real_root = os.path.realpath(root) == "/"
    under = lambda *parts: os.path.join(root, *parts)  # noqa: E731
    kernel = _read(under("proc/sys/kernel/osrelease"))
    machine = _read(under("proc/sys/kernel/arch"))
    if machine is None and real_root:
        machine = os.uname().machine
    vendor, model, flags = _cpuinfo(_read(under("proc/cpuinfo"), 1 << 22))
    if criu is not None:
        version, path = criu
    elif real_root:
        version, path = criu_version()
    else:
        version = None
        path = next(("/" + p for p in CRIU_PATHS if os.path.exists(under(p))), None)
    try:
        dirs = tuple(sorted(os.listdir(under("sys/fs/cgroup"))))
    except OSError:
        dirs = ()
    v2 = _read(under("sys/fs/cgroup/cgroup.controllers"))
    if v2 is None and "unified" in dirs:
        v2 = _read(under("sys/fs/cgroup/unified/cgroup.controllers"))
    kernel = kernel.strip() if kernel else None
    needed_root = []
    features = None
    xfeatures = xsave_size = None
    if real_root and path is not None:
        if os.geteuid() == 0:
            broken = None if version is not None else \
                f"`{path} --version` gave no version (not a criu that runs here)"
            features = LiveFeatures(path, error=broken)
            xfeatures, xsave_size = criu_cpuinfo(path)
        else:
            needed_root.append("kernel features (criu check runs as root)")
            needed_root.append("the CPU as CRIU sees it (criu cpuinfo dump runs as root)")
    pid_max = _read(under("proc/sys/kernel/pid_max"))
    return HostFacts(
        root=root, machine=machine.strip() if machine else None,
        kernel=kernel, cpu_vendor=vendor, cpu_model=model, cpu_flags=flags,
        page_size=os.sysconf("SC_PAGE_SIZE") if real_root else None,
        criu_xfeatures=xfeatures, criu_xsave_size=xsave_size,
        kernel_features=features, filesystems=_filesystems(_read(under("proc/filesystems"))),
        fs_modules=_fs_modules(root, kernel), plugins=_plugins(root),
        pid_max=int(pid_max) if pid_max and pid_max.strip().isdigit() else None,
        lxd_version=_tool_version("lxd") if real_root else None,
        incus_version=_tool_version("incus") if real_root else None,
        taken_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        needed_root=tuple(needed_root),
        lsm=_lsm(root), criu_version=version, criu_path=path,
        cgroup_v1=_cgroups_v1(_read(under("proc/cgroups"))), cgroup_dirs=dirs,
        cgroup2_controllers=None if v2 is None else frozenset(v2.split()),
    )


__all__ = [
    "CRIU_PATHS",
    "FEATURES",
    "KNOWN_XSAVE",
    "PLUGIN_DIR",
    "XSAVE_FLAGS",
    "XSAVE_NAMES",
    "HostFacts",
    "LiveFeatures",
    "criu_cpuinfo",
    "criu_version",
    "probe_host",
    "xsave_description",
    "xsave_mask_from_flags",
]
