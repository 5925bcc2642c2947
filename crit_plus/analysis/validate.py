"""Will this checkpoint restore, and if not, why — before anyone tries.

``validate(checkpoint, ...)`` returns a :class:`Report`: findings with a
severity (``error``: the restore will fail; ``warning``: it may fail or
behave differently; ``info``), what they concern (image and offset, or pid,
fd, path), the message CRIU will print and what to do about it.  Three stages:

1. **integrity** (:mod:`.validate_integrity`): the images alone — the graph's
   own findings (:attr:`Checkpoint.findings`: missing and undecodable images,
   the process tree, files, pagemaps and pages) plus what the graph does not
   check (every other image decodes, the inventory, pstree order, the parent
   chain, socket peers, tcp-stream images, stray images);
2. **requirements** (:mod:`.validate_requirements`): the options and external
   pieces the restore will need (``--tcp-established``, ``--ext-unix-sk``,
   ``--shell-job``, external ttys and mounts, plugins, an LXD console...);
3. **target** (:mod:`.validate_target`): against a root file system
   (``target_root``: files exist with the dump's size, mode and build-id;
   mountpoints exist) and a host (:class:`~.host.HostFacts`: free pids, CPU
   features, architecture, kernel, criu, LSM, cgroups, plugins).  Without
   them these checks are skipped, and the report says so.

Pure: nothing is printed and nothing is written; page data is never read
(pages files are only ``stat``-ed); the only files read outside the images are
the target's files, the host facts given and the manager's logs.  The checks,
their CRIU messages and fixes are listed in :mod:`.validate_catalog` (and
docs/validate.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from ..findings import ERROR, INFO, SEVERITIES, WARNING, FindingList, summary_message
from ..render import stamped
from ..sources.layout import rootfs_beside
from . import validate_integrity, validate_requirements, validate_target
from .validate_catalog import INTEGRITY, STAGES, check, fill
from .validate_facts import RestoreFacts

#: Version of the JSON form of a :class:`Report` (bumped on incompatible changes).
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class ValidationFinding:
    """One finding of :func:`validate`.

    ``where`` names what it concerns for people (``pid 42 fd 3``,
    ``pagemap-42.img``, ``/usr/bin/python3``); ``image``/``offset``/``entry``
    locate it in the images when it comes from one; ``pid``, ``fd`` and
    ``path`` name the object when there is one.  ``criu_says`` is the message
    CRIU will print (None when it prints nothing specific), ``fix`` what to do.
    ``consequence_of`` names the finding this one follows from (``dump-failed``: the
    images are what a failed dump left, nothing to copy), None when it stands alone.
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
    pid: int | None = None
    fd: int | None = None
    path: str | None = None
    consequence_of: str | None = None

    def to_dict(self):
        """A JSON-ready dict of machine values (see docs/validate.md for the schema)."""
        return {"severity": self.severity, "code": self.code, "stage": self.stage,
                "message": self.message, "where": self.where, "image": self.image,
                "offset": self.offset, "entry": self.entry, "pid": self.pid, "fd": self.fd,
                "path": self.path, "criu_says": self.criu_says, "fix": self.fix,
                "consequence_of": self.consequence_of}


@dataclass(frozen=True, slots=True)
class Requirement:
    """An option or external piece the restore needs (``--tcp-established``, ...).

    ``provided_by`` names the manager that passes it by itself (``LXC``), or None.
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
        """A JSON-ready dict (schema in docs/validate.md)."""
        return stamped("validate", {
            "schema_version": SCHEMA_VERSION,
            "checkpoint": self.checkpoint, "source_kind": self.source_kind,
            "target_root": self.target_root, "host_root": self.host_root,
            "verdict": self.verdict,
            "counts": {severity: self.count(severity) for severity in SEVERITIES},
            "findings": [finding.to_dict() for finding in self.findings],
            "requirements": [requirement.to_dict() for requirement in self.requirements],
            "skipped": list(self.skipped),
        })


def _summary(severity, code, more, limit):
    """The :class:`ValidationFinding` standing for ``more`` findings of ``code`` not listed."""
    return ValidationFinding(severity=severity, code=code, stage=check(code).stage,
                             message=summary_message(code, more, limit), where="checkpoint")


class Collector:
    """Gathers findings and requirements for one :func:`validate` run."""

    def __init__(self):
        self._findings = FindingList(summary=_summary)
        self.requirements = []
        self.skipped = []
        self._seen = set()

    def add(self, code, message, where, *, severity=None, image=None, offset=None, entry=None,
            source=None, pid=None, fd=None, path=None, criu_silent=False, **params):
        """Record a finding of check ``code``; ``params`` fill its CRIU message and fix.

        ``severity`` overrides the catalog's (needed where the catalog says None);
        ``source`` (a :class:`decoders.Source`) fills ``image``/``offset``/``entry``;
        ``criu_silent`` says CRIU prints nothing in this case (no ``criu_says``).
        A finding identical to one already recorded is dropped.
        """
        spec = check(code)
        if source is not None:
            image = image or os.path.basename(source.path)
            offset = source.offset if offset is None else offset
            entry = source.index if entry is None else entry
        params.update(pid=pid, fd=fd, path=path)
        params.setdefault("image", image or where)
        finding = ValidationFinding(
            severity=severity or spec.severity or INFO, code=code, stage=spec.stage,
            message=message, where=where,
            criu_says=None if criu_silent else fill(spec.criu_says, **params),
            fix=fill(spec.fix, **params), image=image, offset=offset, entry=entry,
            pid=pid, fd=fd, path=path)
        key = (finding.code, finding.message, finding.where)
        if key not in self._seen:
            self._seen.add(key)
            self._findings.add(finding, more=params.get("more"))
        return finding

    @property
    def findings(self):
        """The findings recorded: at most :data:`~crit_plus.findings.MAX_PER_CODE` of a code,
        then one summing up the rest (a graph finding's summary merged into it)."""
        return list(self._findings.result())

    def require(self, option, why, provided_by=None):
        """Record an option the restore needs (once per option and reason)."""
        requirement = Requirement(option, why, provided_by)
        if requirement not in self.requirements:
            self.requirements.append(requirement)

    def skip(self, sentence):
        """Record that some checks were not run, and why."""
        if sentence not in self.skipped:
            self.skipped.append(sentence)


def validate(checkpoint, *, source=None, target_root=None, host=None, stages=STAGES):
    """Check whether ``checkpoint`` will restore; return a :class:`Report`.

    ``source`` (a :class:`crit_plus.sources.Source`) adds what the manager knows
    (its kind, the dump's CRIU and kernel versions from its log, its logs of
    earlier restores); ``target_root`` is the directory that will be ``/`` of
    the restored processes (files and mountpoints are checked there); ``host``
    is the :class:`~.host.HostFacts` of the restore host (pids, CPU, kernel,
    criu, LSM, cgroups, plugins).  Without ``target_root`` or ``host`` those
    checks are skipped and :attr:`Report.skipped` says so.  ``stages`` limits
    the run (the benchmark times integrity and requirements alone).
    """
    out = Collector()
    facts = RestoreFacts(checkpoint, source)
    if "integrity" in stages:
        validate_integrity.run(facts, out)
    if "requirements" in stages:
        validate_requirements.run(facts, out)
    if "target" in stages:
        validate_target.run(facts, out, target_root, host)
    order = {severity: i for i, severity in enumerate(SEVERITIES)}
    stage_order = {stage: i for i, stage in enumerate(STAGES)}
    findings = sorted(_consequences(out.findings, facts),
                      key=lambda f: (order.get(f.severity, 9), stage_order.get(f.stage, 9)))
    return Report(
        checkpoint=_where(source, checkpoint.directory),
        findings=tuple(findings), requirements=tuple(out.requirements),
        skipped=tuple(out.skipped),
        target_root=None if target_root is None else os.path.abspath(target_root),
        host_root=None if host is None else host.root,
        source_kind=None if source is None else source.kind,
    )


#: The fix of an integrity finding that follows from a failed dump.
CONSEQUENCE_FIX = ("None of its own: a consequence of dump-failed (CRIU stopped before it "
                   "wrote the rest). Fix the dump's failure and dump again.")


def _consequences(findings, facts):
    """``findings`` with the integrity ones marked as consequences of ``dump-failed`` when
    the dump that wrote the images failed before its last image: partial images, nothing
    to copy again."""
    if facts.dump_failure is None or not facts.dump_failure.partial:
        return findings
    return [replace(finding, fix=CONSEQUENCE_FIX, consequence_of="dump-failed")
            if finding.stage == INTEGRITY and finding.code != "dump-failed" else finding
            for finding in findings]


def unreadable_report(source, error):
    """The :class:`Report` of the checkpoint of ``source`` whose ``inventory.img`` or
    ``pstree.img`` does not decode (no graph can be built): one ``bad-image`` error."""
    out = Collector()
    validate_integrity.report_decode_error(out, error)
    out.skip("everything else: the checkpoint cannot be opened without these images")
    return Report(checkpoint=_where(source, source.images_dir), findings=tuple(out.findings),
                  requirements=(), skipped=tuple(out.skipped), source_kind=source.kind)


def _where(source, directory):
    """The checkpoint's place for the report: an archive's images by the archive's
    name (:attr:`~crit_plus.sources.Source.images_label`), else the absolute directory."""
    if source is not None and source.archive is not None:
        return source.images_label
    return os.path.abspath(source.images_dir if source is not None else directory)


def default_target_root(checkpoint, source=None):
    """Where the restored processes' ``/`` is when the user names none: ``/`` for a tree
    that shares the host's mount namespace; for one with its own, the ``rootfs/`` the
    manager keeps beside the images (LXD/Incus), else None (unknown)."""
    facts = RestoreFacts(checkpoint, source)
    namespaces = facts.new_namespaces
    if namespaces is None:
        return None
    if "mnt" not in namespaces:
        return "/"
    rootfs = rootfs_beside(source.images_dir if source is not None else checkpoint.directory)
    return os.fspath(rootfs) if rootfs is not None else None


__all__ = ["Collector", "Report", "Requirement", "SCHEMA_VERSION", "ValidationFinding",
           "default_target_root", "fill", "unreadable_report", "validate"]
