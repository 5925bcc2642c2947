"""A host's migration fingerprint: :class:`~.host.HostFacts` as a versioned JSON document.

``crit-plus host -o FILE`` writes it on the target; ``validate --target FILE`` and
``host compare`` read it back into the same :class:`~.host.HostFacts` that
``validate --host`` probes live, so one set of checks answers both.  The schema is
documented in docs/commands/host.md; :data:`VERSION` changes when a field changes
meaning or goes away (new fields are added without a new version, and a reader
ignores fields it does not know).
"""

from __future__ import annotations

import json

from ..render import stamped
from .host import FEATURES, HostFacts

#: ``"format"`` of every fingerprint.
FORMAT = "crit-plus-host"
#: ``"version"`` of the fingerprints this module writes and reads.
VERSION = 1


class FingerprintError(ValueError):
    """A file that is not a fingerprint this version reads (the message is one line)."""


def _sorted(values):
    return None if values is None else sorted(values)


def features_note(data: dict) -> str | None:
    """One line saying which kernel features a fingerprint's ``criu check`` did not test
    and why (None when it tested them all, or was not run: ``kernel_features`` null)."""
    features = data.get("kernel_features")
    if not features:
        return None
    untested = [name for name, ok in features.items() if ok is None]
    if not untested:
        return None
    criu = data.get("criu") or {}
    which = f"criu {criu.get('version') or '(version unknown)'} at {criu.get('path')}"
    why = criu.get("check_error") or "criu check gave no answer"
    if len(untested) == len(features):
        return f"none of the {len(features)} tested, {which} cannot check them: {why}"
    return f"{len(untested)} not tested ({which}: {why})"


def fingerprint(host: HostFacts) -> dict:
    """The JSON-ready fingerprint of ``host`` (every kernel feature is tested now)."""
    features = host.kernel_features
    tested = None if features is None else {name: features.get(name) for name in FEATURES}
    data = {
        "format": FORMAT, "version": VERSION, "taken_at": host.taken_at,
        "machine": host.machine, "page_size": host.page_size, "kernel": host.kernel,
        "cpu": {"vendor": host.cpu_vendor, "model": host.cpu_model,
                "flags": _sorted(host.cpu_flags), "xsave_mask": host.xsave_mask,
                "criu_xfeatures_mask": host.criu_xfeatures,
                "criu_xsave_size": host.criu_xsave_size},
        "kernel_features": tested,
        "filesystems": _sorted(host.filesystems), "fs_modules": _sorted(host.fs_modules),
        "cgroup": {"version": host.cgroup_version, "v1_controllers": _sorted(host.cgroup_v1),
                   "v2_controllers": _sorted(host.cgroup2_controllers),
                   "hierarchies": list(host.cgroup_dirs)},
        "lsm": host.lsm,
        "criu": {"version": host.criu_version, "path": host.criu_path,
                 "plugins": _sorted(host.plugins), "check_error": host.criu_check_error},
        "lxd_version": host.lxd_version, "incus_version": host.incus_version,
        "pid_max": host.pid_max, "needed_root": list(host.needed_root),
    }
    data["kernel_features_note"] = features_note(data)
    return stamped("host", data)


def _check(condition, name, what):
    if not condition:
        raise FingerprintError(f"{name}: {what}")


def _strings(value, name, field):
    if value is None:
        return None
    _check(isinstance(value, list) and all(isinstance(v, str) for v in value), name,
           f"{field} is not a list of strings")
    return frozenset(value)


def _text(value, name, field):
    _check(value is None or isinstance(value, str), name, f"{field} is not a string")
    return value


def _number(value, name, field):
    _check(value is None or isinstance(value, int) and not isinstance(value, bool), name,
           f"{field} is not an integer")
    return value


def _object(value, name, field):
    _check(isinstance(value, dict), name, f"{field} is not an object")
    return value


def from_dict(data, name: str = "fingerprint") -> HostFacts:
    """The :class:`HostFacts` of a fingerprint dict; :class:`FingerprintError` (naming
    ``name`` and the field) when it is not one."""
    _check(isinstance(data, dict) and data.get("format") == FORMAT, name,
           f'not a crit-plus host fingerprint (no "format": "{FORMAT}"; '
           "`crit-plus host -o FILE` writes one)")
    version = data.get("version")
    _check(version == VERSION, name, f"fingerprint version {version!r}, this crit-plus reads "
           f"version {VERSION} (make it again with this crit-plus: `crit-plus host -o FILE`)")
    cpu = _object(data.get("cpu", {}), name, "cpu")
    cgroup = _object(data.get("cgroup", {}), name, "cgroup")
    criu = _object(data.get("criu", {}), name, "criu")
    features = data.get("kernel_features")
    if features is not None:
        _check(isinstance(features, dict) and all(
            v is None or isinstance(v, bool) for v in features.values()), name,
            "kernel_features is not an object of true/false/null")
    hierarchies = _strings(cgroup.get("hierarchies", []), name, "cgroup.hierarchies")
    return HostFacts(
        root=None, machine=_text(data.get("machine"), name, "machine"),
        kernel=_text(data.get("kernel"), name, "kernel"),
        cpu_vendor=_text(cpu.get("vendor"), name, "cpu.vendor"),
        cpu_model=_text(cpu.get("model"), name, "cpu.model"),
        cpu_flags=_strings(cpu.get("flags"), name, "cpu.flags"),
        lsm=_text(data.get("lsm"), name, "lsm"),
        criu_version=_text(criu.get("version"), name, "criu.version"),
        criu_path=_text(criu.get("path"), name, "criu.path"),
        cgroup_v1=_strings(cgroup.get("v1_controllers"), name, "cgroup.v1_controllers"),
        cgroup_dirs=tuple(sorted(hierarchies or ())),
        cgroup2_controllers=_strings(cgroup.get("v2_controllers"), name,
                                     "cgroup.v2_controllers"),
        page_size=_number(data.get("page_size"), name, "page_size"),
        criu_xfeatures=_number(cpu.get("criu_xfeatures_mask"), name, "cpu.criu_xfeatures_mask"),
        criu_xsave_size=_number(cpu.get("criu_xsave_size"), name, "cpu.criu_xsave_size"),
        kernel_features=None if features is None else dict(features),
        filesystems=_strings(data.get("filesystems"), name, "filesystems"),
        fs_modules=_strings(data.get("fs_modules"), name, "fs_modules"),
        plugins=_strings(criu.get("plugins"), name, "criu.plugins"),
        pid_max=_number(data.get("pid_max"), name, "pid_max"),
        lxd_version=_text(data.get("lxd_version"), name, "lxd_version"),
        incus_version=_text(data.get("incus_version"), name, "incus_version"),
        taken_at=_text(data.get("taken_at"), name, "taken_at"),
        needed_root=tuple(_strings(data.get("needed_root", []), name, "needed_root") or ()),
        recorded_check_error=_text(criu.get("check_error"), name, "criu.check_error"),
    )


def load(path: str) -> HostFacts:
    """Read the fingerprint file ``path``: :class:`FingerprintError` in one line when it
    is not valid JSON (cut short, another format) or not a fingerprint of this version;
    OSError when it cannot be read."""
    with open(path, "rb") as stream:
        raw = stream.read(16 << 20)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise FingerprintError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise FingerprintError(f"{path}: not valid JSON at line {error.lineno} column "
                               f"{error.colno} (offset {error.pos}): {error.msg}") from None
    return from_dict(data, path)


__all__ = ["FORMAT", "VERSION", "FingerprintError", "fingerprint", "from_dict", "load"]
