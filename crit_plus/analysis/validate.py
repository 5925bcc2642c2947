"""Will this checkpoint restore, and if not, why — before anyone tries.

``validate(checkpoint, ...)`` returns a :class:`Report`: findings with a
severity (``error``: the restore will fail; ``warning``: it may fail or
behave differently; ``info``), what they concern (image and offset, or pid,
fd, path), the message CRIU will print and what to do about it.  Three stages:

1. **integrity** (:mod:`.validate_integrity`): the images alone — the graph's
   own findings (:attr:`Checkpoint.findings`: missing and undecodable images,
   the process tree, files, pagemaps and pages, the parent chain) plus what
   the graph does not check (every other image decodes, the inventory,
   pstree order, tcp-stream images, stray images);
2. **requirements** (:mod:`.validate_requirements`): the options and external
   pieces the restore will need (``--tcp-established``, ``--ext-unix-sk``,
   ``--shell-job``, external ttys and mounts, plugins, an LXD console...);
3. **target** (:mod:`.validate_target`): against a root file system
   (``target_root``: files exist with the dump's size, mode and build-id;
   mountpoints exist) and a host (:class:`~.host.HostFacts`: free pids, CPU
   features, architecture, kernel, criu, LSM, cgroups, plugins).  Without
   them these checks are skipped, and the report says so.

Pure: nothing is printed and nothing is written; the only files read beyond
the images' metadata are page files' sizes (``stat``), the target's files and
the host facts given.  The checks and their CRIU messages are listed in
:mod:`.validate_catalog` (and docs/validate.md).
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass, field

from ..findings import ERROR, INFO, SEVERITIES, WARNING
from . import validate_integrity, validate_requirements, validate_target
from .validate_catalog import SOURCE, STAGES, check


@dataclass(frozen=True, slots=True)
class ValidationFinding:
    """One finding of :func:`validate`.

    ``where`` names what it concerns for people (``pid 42 fd 3``,
    ``pagemap-42.img``, ``/usr/bin/python3``); ``image``/``offset``/``entry``
    locate it in the images when it comes from one.  ``criu_says`` is the
    message CRIU will print (None when it prints nothing specific), ``fix``
    what to do.
    """

    severity: str
    code: str
    stage: str
    message: str
    where: str
    criu_says: str | None = None
    fix: str | None = None
    image: str | None = None
    offset: int | None = None
    entry: int | None = None

    def to_dict(self):
        """A JSON-ready dict of machine values."""
        return {"severity": self.severity, "code": self.code, "stage": self.stage,
                "message": self.message, "where": self.where, "image": self.image,
                "offset": self.offset, "entry": self.entry, "criu_says": self.criu_says,
                "fix": self.fix}


@dataclass(frozen=True, slots=True)
class Requirement:
    """An option or external piece the restore needs (``--tcp-established``, ...).

    ``provided_by`` names the manager that passes it by itself (``LXD``), or None.
    """

    option: str
    why: str
    provided_by: str | None = None

    def to_dict(self):
        """A JSON-ready dict."""
        return {"option": self.option, "why": self.why, "provided_by": self.provided_by}


@dataclass(frozen=True)
class Report:
    """The result of :func:`validate`."""

    checkpoint: str
    findings: tuple
    requirements: tuple
    skipped: tuple  # sentences: checks not run and why
    target_root: str | None = None
    host_root: str | None = None
    source_kind: str | None = None

    def count(self, severity):
        """How many findings have ``severity``."""
        return sum(1 for finding in self.findings if finding.severity == severity)

    @property
    def errors(self):
        """The findings of severity error."""
        return tuple(f for f in self.findings if f.severity == ERROR)

    @property
    def warnings(self):
        """The findings of severity warning."""
        return tuple(f for f in self.findings if f.severity == WARNING)

    @property
    def verdict(self):
        """``fail`` (errors), ``risky`` (warnings only) or ``ok``."""
        if self.errors:
            return "fail"
        return "risky" if self.warnings else "ok"

    def codes(self, severity=None):
        """The set of codes found (of one severity, if given)."""
        return {f.code for f in self.findings if severity is None or f.severity == severity}

    def to_dict(self):
        """A JSON-ready dict."""
        return {
            "checkpoint": self.checkpoint, "source_kind": self.source_kind,
            "target_root": self.target_root, "host_root": self.host_root,
            "verdict": self.verdict,
            "counts": {severity: self.count(severity) for severity in SEVERITIES},
            "findings": [finding.to_dict() for finding in self.findings],
            "requirements": [requirement.to_dict() for requirement in self.requirements],
            "skipped": list(self.skipped),
        }


class _Missing:
    """A template field a finding did not fill: shown as its name in capitals."""

    def __init__(self, name):
        self.name = name

    def __format__(self, spec):
        return self.name.upper()


class _Template(string.Formatter):
    def get_value(self, key, args, kwargs):
        if isinstance(key, str):
            return kwargs.get(key, _Missing(key))
        return super().get_value(key, args, kwargs)

    def format_field(self, value, spec):
        try:
            return super().format_field(value, spec)
        except (ValueError, TypeError):
            return str(value)


_TEMPLATE = _Template()


def fill(template, **params):
    """``template`` with ``{name}`` fields from ``params`` (missing ones as NAME)."""
    if template is None:
        return None
    return _TEMPLATE.vformat(template, (), params)


class Collector:
    """Gathers findings and requirements for one :func:`validate` run."""

    def __init__(self):
        self.findings = []
        self.requirements = []
        self.skipped = []
        self._seen = set()

    def add(self, code, message, where, *, severity=None, image=None, offset=None, entry=None,
            source=None, stage=None, **params):
        """Record a finding of check ``code``; ``params`` fill its CRIU message and fix.

        ``source`` (a :class:`decoders.Source`) fills ``image``/``offset``/``entry``.
        A finding identical to one already recorded is dropped.
        """
        spec = check(code)
        if source is not None:
            image = image or os.path.basename(source.path)
            offset = source.offset if offset is None else offset
            entry = source.index if entry is None else entry
        params.setdefault("image", image or where)
        finding = ValidationFinding(
            severity=severity or spec.severity or INFO, code=code, stage=stage or spec.stage,
            message=message, where=where, criu_says=fill(spec.criu_says, **params),
            fix=fill(spec.fix, **params), image=image, offset=offset, entry=entry)
        key = (finding.code, finding.message, finding.where)
        if key not in self._seen:
            self._seen.add(key)
            self.findings.append(finding)
        return finding

    def require(self, option, why, provided_by=None):
        """Record an option the restore needs (once per option and reason)."""
        requirement = Requirement(option, why, provided_by)
        if requirement not in self.requirements:
            self.requirements.append(requirement)

    def skip(self, sentence):
        """Record that some checks were not run, and why."""
        if sentence not in self.skipped:
            self.skipped.append(sentence)


_NUMBERS = (("pid", r"\bpid (\d+)"), ("fd", r"\bfd (\d+)"), ("id", r"\bfile id (\d+)"),
            ("tid", r"\bthread (\d+)"), ("vaddr", r"\b(0x[0-9a-f]+)"))


def graph_params(message):
    """Values a graph finding's message names (pid, fd, file id, address), for templates."""
    params = {}
    for name, pattern in _NUMBERS:
        match = re.search(pattern, message)
        if match:
            value = match.group(1)
            params[name] = value if name == "vaddr" else int(value)
    return params


def validate(checkpoint, *, source=None, target_root=None, host=None):
    """Check whether ``checkpoint`` will restore; return a :class:`Report`.

    ``source`` (a :class:`crit_plus.sources.Source`) adds what the manager knows
    (backup.yaml, logs, the dump's CRIU and kernel versions, LXC's tty.info);
    ``target_root`` is the directory that will be ``/`` of the restored
    processes (files and mountpoints are checked there); ``host`` is the
    :class:`~.host.HostFacts` of the restore host (pids, CPU, kernel, criu,
    LSM, cgroups, plugins).  Without ``target_root`` or ``host`` those checks
    are skipped and :attr:`Report.skipped` says so.
    """
    out = Collector()
    validate_integrity.run(checkpoint, out)
    validate_requirements.run(checkpoint, out, source)
    if source is not None:
        for finding in source.findings:
            out.add(finding.code, finding.message, finding.where,
                    severity=finding.severity, stage=SOURCE)
    validate_target.run(checkpoint, out, source, target_root, host)
    order = {severity: i for i, severity in enumerate(SEVERITIES)}
    stages = {stage: i for i, stage in enumerate(STAGES)}
    findings = sorted(out.findings, key=lambda f: (order.get(f.severity, 9),
                                                   stages.get(f.stage, 9)))
    return Report(
        checkpoint=str(source.images_dir if source is not None else checkpoint.directory),
        findings=tuple(findings), requirements=tuple(out.requirements),
        skipped=tuple(out.skipped),
        target_root=None if target_root is None else os.fspath(target_root),
        host_root=None if host is None else host.root,
        source_kind=None if source is None else source.kind,
    )


__all__ = ["Collector", "Report", "Requirement", "ValidationFinding", "fill", "graph_params",
           "validate"]
