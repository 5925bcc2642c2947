"""Build a :class:`Source` for an image directory, with what its manager recorded.

For an LXD/Incus ``state/`` this reads ``backup.yaml`` beside it (and, for a
snapshot, the backup.yaml files that record that snapshot: see
:mod:`crit_plus.sources.backup`), compares what they say with what is on disk,
and points at the manager's log directory.  Only reads.
"""

from __future__ import annotations

from pathlib import Path

from crit_plus.findings import INFO, WARNING, Finding

from .backup import BackupError, instance_record, load_backup, snapshot_record
from .layout import Placement, lxc_container_of
from .model import Source, parse_timestamp
from .times import dump_time


def _dump_log_facts(images_dir):
    """``(dump.log path or None, LogHeader or None)`` of an image directory."""
    path = Path(images_dir) / "dump.log"
    if not path.is_file():
        return None, None
    from .logheader import read_header  # only when there is a dump.log

    try:
        return path, read_header(path)
    except OSError:
        return path, None


def _load(path, findings):
    try:
        return load_backup(path)
    except BackupError as error:
        findings.append(Finding(WARNING, "bad-backup-yaml", str(error), str(path)))
        return None


class BackupCache:
    """The backup.yaml files an instance's snapshots are looked up in, parsed once for all
    the sources of one discovery (``list``, ``validate lxd:``), not once per snapshot.

    Holds one instance at a time (the sources of a discovery come instance by instance):
    its own backup.yaml files (each at most :data:`~crit_plus.sources.backup.MAX_BACKUP_BYTES`)
    and, once a snapshot they do not record is met, an index of the snapshot records its
    sibling snapshots' copies hold (the first of each name, siblings in name order), each
    copy parsed once: n unrecorded snapshots cost n parses, not n².  The parsed sibling
    files themselves are not kept, only the records.
    """

    def __init__(self) -> None:
        self._instance: tuple | None = None
        self._files: dict[Path, dict | None] = {}
        self._siblings: dict[Path, dict[str, tuple[dict, Path]]] = {}

    def _switch(self, placement: Placement) -> None:
        key = tuple(placement.instance_dirs())
        if key != self._instance:
            self._instance, self._files, self._siblings = key, {}, {}

    def instance_backup(self, placement: Placement, path: Path) -> dict | None:
        """The parsed backup.yaml of the instance at ``path`` (None: absent or unusable)."""
        self._switch(placement)
        if path not in self._files:
            self._files[path] = _load(path, [])
        return self._files[path]

    def sibling_record(self, placement: Placement) -> tuple[dict | None, Path | None]:
        """``(record, path)`` of the snapshot ``placement`` names, from the first sibling
        snapshot's backup.yaml (in name order) that records it; ``(None, None)``."""
        self._switch(placement)
        snapshots = placement.owner.parent
        index = self._siblings.get(snapshots)
        if index is None:
            index = self._siblings[snapshots] = _records_of_siblings(snapshots)
        return index.get(str(placement.snapshot), (None, None))


def _records_of_siblings(snapshots: Path) -> dict[str, tuple[dict, Path]]:
    """Snapshot name -> (record, backup.yaml path): the first record of each name in the
    backup.yaml copies of the snapshot directories under ``snapshots``, in name order."""
    index: dict[str, tuple[dict, Path]] = {}
    try:
        siblings = sorted(snapshots.iterdir())
    except OSError:
        return index
    for sibling in siblings:
        path = sibling / "backup.yaml"
        entries = (_load(path, []) or {}).get("snapshots")
        if not isinstance(entries, list):  # absent, or not the list LXD writes
            continue
        for entry in entries:
            if isinstance(entry, dict):
                index.setdefault(str(entry.get("name")), (entry, path))
    return index


def _snapshot_facts(placement, own_backup, findings, backups):
    """``(record, where)``: the backup.yaml entry of the snapshot and the file it came from.

    Looked up in the instance's backup.yaml, then the snapshot's own copy, then
    the copies kept by its sibling snapshots (through ``backups``, a :class:`BackupCache`).
    """
    name = placement.snapshot
    own = placement.owner / "backup.yaml"
    for path in dict.fromkeys(directory / "backup.yaml" for directory in placement.instance_dirs()):
        if path != own:
            record = snapshot_record(backups.instance_backup(placement, path), name)
            if record is not None:
                return record, path
    record = snapshot_record(own_backup, name)
    if record is not None:
        return record, own
    record, where = backups.sibling_record(placement)
    if record is not None:
        return record, where
    findings.append(Finding(
        INFO, "snapshot-unrecorded",
        f"no backup.yaml records snapshot {name!r}: its stateful flag and creation time "
        "are unknown", str(placement.owner)))
    return None, None


def lxd_source(spec, state_dir, placement: Placement, backups: BackupCache | None = None):
    """The :class:`Source` of an LXD/Incus ``state/`` directory placed by ``placement``;
    ``backups`` shares the parsed backup.yaml files between the sources of one discovery."""
    findings: list[Finding] = []
    backup_path = placement.owner / "backup.yaml"
    backup = _load(backup_path, findings)
    if backup is None and not backup_path.exists():
        findings.append(Finding(INFO, "no-backup-yaml", "no backup.yaml beside state/",
                                str(placement.owner)))
    record_of_instance = instance_record(backup)
    recorded_name = record_of_instance.get("name")
    if recorded_name is not None and str(recorded_name) != placement.instance:
        findings.append(Finding(
            WARNING, "name-mismatch",
            f"backup.yaml names the instance {recorded_name!r}, the directory says "
            f"{placement.instance!r}", str(backup_path)))
    taken_at = taken_from = None
    if placement.role == "snapshot":
        record, _where = _snapshot_facts(placement, backup, findings,
                                         backups or BackupCache())
        stateful = record.get("stateful") if record else None
        taken_at = parse_timestamp(record.get("created_at")) if record else None
        taken_from = "backup.yaml" if taken_at else None
    else:
        stateful = record_of_instance.get("stateful") if backup is not None else None
    if stateful is False:
        what = f"snapshot {placement.snapshot!r}" if placement.snapshot else "the instance"
        findings.append(Finding(
            WARNING, "stateful-mismatch",
            f"backup.yaml says {what} is not stateful, but state/ holds a checkpoint "
            "(backup.yaml may predate it)", str(state_dir)))
    if taken_at is None:
        taken_at, taken_from = dump_time(state_dir)
    dump_log, header = _dump_log_facts(state_dir)
    project = placement.project
    recorded_project = record_of_instance.get("project")
    if recorded_project is not None and str(recorded_project) != project:
        findings.append(Finding(
            WARNING, "project-mismatch",
            f"backup.yaml puts the instance in project {recorded_project!r}, the directory "
            f"name says {project!r}", str(backup_path)))
    return Source(
        spec=spec, images_dir=Path(state_dir), kind=f"{placement.manager}-{placement.role}",
        manager=placement.manager, instance=placement.instance, snapshot=placement.snapshot,
        project=project, backup=backup, backup_path=backup_path if backup is not None else None,
        stateful=stateful if isinstance(stateful, bool) else None,
        taken_at=taken_at, taken_at_source=taken_from if taken_at else None,
        criu_version=header.criu_version if header else None,
        kernel=header.kernel if header else None,
        criu_run_id=header.run_id if header else None, dump_log=dump_log,
        log_dirs=(Path(state_dir),) + placement.log_dirs(), findings=tuple(findings),
    )


def plain_source(spec, images_dir, lxc_name=None):
    """The :class:`Source` of an image directory with no LXD/Incus around it.

    Of kind ``lxc`` when ``lxc_name`` is given or the directory is inside an
    LXC container directory (``config`` and ``rootfs/``), named after it;
    otherwise ``criu-dir``.
    """
    images_dir = Path(images_dir)
    dump_log, header = _dump_log_facts(images_dir)
    container = lxc_container_of(images_dir)
    name = lxc_name or (container.name if container else None)
    findings = []
    if not (images_dir / "inventory.img").is_file():
        findings.append(Finding(WARNING, "no-inventory", "inventory.img is missing",
                                str(images_dir)))
    taken_at, taken_from = dump_time(images_dir)
    return Source(
        spec=spec, images_dir=images_dir, kind="lxc" if name else "criu-dir",
        instance=name, taken_at=taken_at, taken_at_source=taken_from,
        criu_version=header.criu_version if header else None,
        kernel=header.kernel if header else None,
        criu_run_id=header.run_id if header else None, dump_log=dump_log,
        log_dirs=(images_dir,), findings=tuple(findings),
    )
