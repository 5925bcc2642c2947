"""The resolved source: an image directory plus what its manager knows about it."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

from decoders.errors import DecodeError

# .logs and .runs are imported where the logs are first read: opening a checkpoint
# whose logs no command asks for does not load them (docs/architecture.md, start-up)
from .fields import catalog_fields
from .times import mtime_of, parse_timestamp

#: Every ``Source.kind``.
KINDS = ("criu-dir", "lxd-instance", "lxd-snapshot", "incus-instance", "incus-snapshot", "lxc",
         "podman-archive", "pod-archive", "oci-image")

@dataclass(frozen=True)
class Source:
    """A checkpoint's image directory and its context.

    ``images_dir`` holds the CRIU images; ``kind`` is one of :data:`KINDS`;
    ``manager`` is ``lxd``, ``incus`` or None; ``instance``, ``snapshot`` and
    ``project`` name it for the manager.  ``backup`` is the parsed
    ``backup.yaml`` beside ``state/`` (``backup_path``), ``stateful`` what
    backup.yaml records for this checkpoint (None when it records nothing).
    ``taken_at`` comes from ``taken_at_source``: ``backup.yaml`` (snapshot
    ``created_at``), ``config.dump`` (``checkpointedTime``) or ``mtime`` (of the
    images directory).  ``criu_version``, ``kernel`` and ``criu_run_id`` come
    from the CRIU log in the images directory (``dump_log``); ``log_dirs`` are
    where :attr:`logs` are looked for.  ``metadata`` holds an archive's
    metadata files, ``archive`` its path.  ``findings`` are the disagreements
    found (a tuple of :class:`crit_plus.findings.Finding`).  ``rootfs`` holds an
    archive's root-filesystem changes (:class:`~crit_plus.sources.rootfs.RootfsChanges`:
    ``rootfs-diff.tar``'s headers and ``deleted.files``), None for other sources.

    An archive's images live in a private temporary directory: use the source
    as a context manager (or call :meth:`close`) to remove it.
    """

    spec: str
    images_dir: Path
    kind: str
    manager: str | None = None
    instance: str | None = None
    snapshot: str | None = None
    project: str | None = None
    backup: dict | None = None
    backup_path: Path | None = None
    stateful: bool | None = None
    taken_at: datetime | None = None
    taken_at_source: str | None = None
    criu_version: str | None = None
    kernel: str | None = None
    criu_run_id: str | None = None
    dump_log: Path | None = None
    log_dirs: tuple = ()
    metadata: dict | None = None
    archive: Path | None = None
    findings: tuple = ()
    workdir: object = field(default=None, repr=False, compare=False)
    rootfs: object = None

    # -- lifetime --------------------------------------------------------------------
    def close(self):
        """Remove the private temporary directory of an archive (no-op otherwise)."""
        if self.workdir is not None:
            self.workdir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, error, traceback):
        if isinstance(error, DecodeError):
            self.name_archive(error)
        self.close()

    def name_archive(self, error):
        """Make a :class:`~decoders.errors.DecodeError` about an image extracted from
        this archive name the archive first (``ckpt.tar.zst: pstree.img: entry 1 ...``):
        the temporary path it was read from means nothing to users."""
        if self.archive is None or self.workdir is None or error.container or not error.path:
            return
        workdir = os.path.realpath(self.workdir.name)
        if os.path.realpath(error.path).startswith(workdir + os.sep):
            error.container = os.path.basename(self.archive)

    # -- logs, read on first use ---------------------------------------------------------
    @cached_property
    def logs(self):
        """CRIU and LXC logs (tuple of :class:`LogFile`): those in the images
        directory (``dump.log``, ``restore.log``) and the manager's logs for this
        instance, each with what it says of its run (``LogFile.run``).

        Read on first use: CRIU logs are megabytes.  Which of them belong to
        this checkpoint is :meth:`runs`'s answer.
        """
        from .logs import find_logs, read_log

        logs = []
        for path, kind in find_logs(self.log_dirs).items():
            try:
                logs.append(read_log(path, kind))
            except OSError:
                continue
        return tuple(logs)

    def runs(self, run_id=None):
        """:attr:`logs` attributed to this checkpoint (tuple of
        :class:`~crit_plus.sources.runs.AttributedLog`, in the order of
        :attr:`logs`) by :func:`crit_plus.sources.runs.attribute`, the one rule
        every command uses.  ``run_id`` is the run id the checkpoint's
        ``inventory.img`` records (the graph's ``Inventory.run_id``); without it,
        that of the images directory's ``dump.log`` (and the reasons say so: no
        ``inventory.img`` confirms it).  Computed once per run id.
        """
        from .runs import Subject, attribute

        origin = "inventory.img"
        if not run_id and self.criu_run_id:
            run_id = self.criu_run_id
            origin = (f"the run id of {self.dump_log.name}; no inventory.img records one"
                      if self.dump_log is not None else "no inventory.img records one")
        cache, key = self._attributions, (run_id, origin)
        if key not in cache:
            subject = Subject(run_id, self.images_dir, self.taken_at,
                              not (self.kind or "").endswith("-snapshot"), origin)
            cache[key] = attribute(self.logs, subject)
        return cache[key]

    @cached_property
    def _attributions(self):
        return {}

    @cached_property
    def size(self):
        """Bytes of the regular files in :attr:`images_dir` (links not followed)."""
        total = 0
        for directory, _dirs, files in os.walk(self.images_dir):
            for name in files:
                try:
                    info = os.lstat(os.path.join(directory, name))
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
        return total

    @property
    def log_errors(self):
        """Every error line of :attr:`logs` as ``(log file name, line)`` pairs."""
        return tuple((log.name, line) for log in self.logs for line in log.errors)

    # -- output ------------------------------------------------------------------------
    @property
    def images_label(self):
        """Where the images are, for people: the directory, or for an archive the
        archive and the directory inside it (``ckpt.tar.zst: checkpoint/``), not the
        temporary copy that is gone when the command ends."""
        if self.archive is None or self.workdir is None:
            return str(self.images_dir)
        return self.label_of(self.images_dir) + "/"

    def label_of(self, path):
        """Where ``path``, a file of this source, is, for people: the path, or for an
        archive the archive and the member (``ckpt.tar.zst: checkpoint/dump.log``)."""
        if self.archive is None or self.workdir is None:
            return str(path)
        return f"{self.archive}: {os.path.relpath(path, self.workdir.name)}"

    @property
    def catalog_fields(self) -> dict:
        """What the failure catalog's fixes name, known for this source (manager,
        instance, console key): :func:`crit_plus.sources.fields.catalog_fields`."""
        return catalog_fields(self.manager, self.instance, (self.images_dir,))

    @property
    def name(self):
        """A short display name: ``instance/snapshot``, ``instance`` or the directory."""
        if self.instance and self.snapshot:
            return f"{self.instance}/{self.snapshot}"
        return self.instance or str(self.archive or self.images_dir)

    def to_dict(self, with_logs=False, with_backup=False):
        """A JSON-ready dict; logs and the whole backup.yaml only on request."""
        data = {
            "spec": self.spec, "images_dir": str(self.images_dir), "kind": self.kind,
            "manager": self.manager, "project": self.project, "instance": self.instance,
            "snapshot": self.snapshot, "stateful": self.stateful,
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
            "taken_at_source": self.taken_at_source,
            "criu_version": self.criu_version, "kernel": self.kernel,
            "criu_run_id": self.criu_run_id,
            "backup_path": str(self.backup_path) if self.backup_path else None,
            "archive": str(self.archive) if self.archive else None,
            "metadata": self.metadata,
            "findings": [{"severity": f.severity, "code": f.code, "message": f.message,
                          "where": f.where} for f in self.findings],
        }
        if with_backup:
            data["backup"] = self.backup
        if with_logs:
            data["logs"] = [dict(item.log.to_dict(), **item.to_dict())
                            for item in self.runs()]
        return data


__all__ = ["KINDS", "Source", "mtime_of", "parse_timestamp"]
