"""``summarize``: what a checkpoint is, at a glance, without reading page data.

:func:`summarize` gathers, from a resolved source and its checkpoint graph:

- where it came from (:class:`Origin`: the source kind, manager, instance,
  snapshot, the stateful flag backup.yaml records, CRIU version and kernel
  from the CRIU log, when it was taken);
- what the images say of the dump as a whole (:class:`DumpInfo`: inventory,
  parent checkpoint, image and page bytes) and every counter of ``stats-dump``;
- each process (:class:`ProcessSummary`) in tree order, the totals
  (:class:`Totals`), the biggest memory holders;
- the logs the manager keeps beside the checkpoint (:class:`LogSummary`:
  ``dump.log``, LXD's ``snapshot_dump_*.log`` / ``migration_*`` copies,
  ``lxc.log``) with their error lines;
- what is odd (:class:`Note`: zombies, deleted files, external sockets, a
  parent checkpoint, lazy pages, errors in the logs, the source's and the
  graph's findings).

Page data (``pages-*.img``) is never opened: page counts come from pagemaps
and file sizes from ``stat``.  The command line lives in the process's memory,
so it is read only when asked for (``argv=True``, a few bytes per process);
by default a process is named by its ``comm`` and its executable's path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..describe import count_text, netlink_state, network_lock_name
from ..files import IpProto, SockFamily, SockState
from ..findings import ERROR, INFO, WARNING
from ..pages import biggest_mappings
from .dump_failure import dump_failure
from .explain import FAILED_OUTCOMES, decisive_first, diagnose

if TYPE_CHECKING:
    from ..graph import ExitStatus

#: How many of the biggest memory holders are listed.
TOP = 5
#: Error lines of each log kept in the summary (``error_count`` counts them all).
LOG_ERRORS = 5



@dataclass(frozen=True, slots=True)
class Origin:
    """Where the checkpoint came from (see :class:`crit_plus.sources.Source`).

    ``stateful`` is what backup.yaml records (None: nothing recorded);
    ``pod`` is the Kubernetes pod an archive's container belongs to
    (``NAMESPACE/NAME``), ``image`` the checkpoint image's reference;
    ``criu_version``/``kernel``/``machine`` come from ``version_source`` (the
    checkpoint's ``dump.log``, or the manager's copy of it), None when no
    verbose log was kept.
    """

    spec: str
    kind: str
    manager: str | None
    project: str | None
    instance: str | None
    snapshot: str | None
    images_dir: str
    archive: str | None
    backup_path: str | None
    stateful: bool | None
    taken_at: object
    taken_at_source: str | None
    criu_version: str | None
    kernel: str | None
    machine: str | None
    version_source: str | None
    criu_run_id: str | None
    pod: str | None = None
    image: str | None = None


@dataclass(frozen=True, slots=True)
class DumpInfo:
    """Facts of the dump as a whole: ``inventory.img``, the parent, sizes.

    ``run_id`` is the CRIU run id the inventory records (CRIU >= 3.16);
    ``uptime_us`` the host's uptime when it dumped (microseconds).
    """

    image_version: int | None
    lsm: str | None
    tcp_close: bool | None
    network_lock: str | None
    pre_dump_mode: str | None
    plugins: tuple
    run_id: str | None
    uptime_us: int | None
    parent: str | None
    image_files: int
    image_bytes: int
    pages_bytes: int


@dataclass(frozen=True, slots=True)
class ProcessSummary:
    """One process: identity, state and what it holds.

    ``present``/``parent``/``lazy`` count its pagemap pages; ``shared`` the
    pages of shared-memory objects listed inside its mappings (the rule:
    :mod:`crit_plus.pages`); ``argv`` is None unless asked for.  ``pages_unknown``
    says why its private pages are not known (the graph's
    :attr:`~crit_plus.pages.ProcessPages.unknown`: a missing or cut pagemap, its file
    and offset); they are 0 here then, shown as ``?`` (null in JSON).
    """

    depth: int
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str | None
    exit: ExitStatus | None
    threads: int
    comm: str | None
    exe: str | None
    argv: tuple | None
    vmas: int
    present: int
    parent: int
    lazy: int
    none: int
    shared: int
    fds: int
    pages_unknown: str | None = None

    @property
    def pages(self):
        """Pages its pagemap lists: :attr:`crit_plus.pages.PageCounts.listed`."""
        return self.present + self.parent + self.lazy + self.none


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts over the whole checkpoint.

    ``fds_by_kind`` counts fds (an fd shared by two processes counts twice),
    ``files`` distinct open files; ``sockets`` is ``((family, state, n), ...)``
    over distinct sockets; ``shared`` the pages of shared-memory objects
    (counted once); ``pages_unknown`` the pids whose private pages are not known (not
    in the page sums: those are then a lower bound).
    """

    processes: int
    threads: int
    zombies: int
    vmas: int
    present: int
    parent: int
    lazy: int
    none: int
    shared: int
    fds: int
    files: int
    fds_by_kind: tuple
    sockets: tuple
    pages_unknown: tuple = ()

    @property
    def pages(self):
        """Pages the processes' pagemaps list (:attr:`~crit_plus.pages.PageCounts.listed`)."""
        return self.present + self.parent + self.lazy + self.none


@dataclass(frozen=True, slots=True)
class MappingHolder:
    """One of the biggest mappings (:func:`crit_plus.pages.biggest_mappings`, the ranking
    ``size --top`` shows too): ``pages`` listed (private) or, for a shared mapping, the
    object's pages in its window."""

    pid: int
    comm: str | None
    start: int
    end: int
    kind: str
    name: str | None
    pages: int


@dataclass(frozen=True, slots=True)
class LogSummary:
    """A log kept beside the checkpoint or by its manager, and whose run it is.

    ``kind`` is ``criu`` or ``lxc``; ``role`` what the log is to this checkpoint
    (:data:`crit_plus.sources.runs.ROLES`: ``dump``, the run that wrote these
    images; ``restore``, a restore of them; ``other``; ``unknown``; ``manager``,
    liblxc's log) and ``reason`` why; ``copies`` names the other files of the
    same run (LXD's ``snapshot_dump_*.log``).  ``operation``, ``outcome``,
    ``dump_run_id`` (the dump a restore read) and ``ended`` are what a CRIU log
    says of its run (:class:`crit_plus.sources.runs.LogRun`); ``errors`` are the
    first :data:`LOG_ERRORS` error lines, ``error_count`` counts all;
    ``failed_restore`` the lines saying a restore of this checkpoint failed.  For a run
    that failed (or was cut short, or liblxc's errors), ``decisive`` is the error that
    made it fail (``crit-plus explain``'s reading, :func:`crit_plus.analysis.explain.
    diagnose`), ``cause`` and ``fix`` the failure catalog's, ``catalog`` its code; the
    ``errors`` and ``failed_restore`` lists start with it.
    """

    name: str
    path: str
    kind: str
    role: str
    reason: str
    copies: tuple
    criu_version: str | None
    run_id: str | None
    operation: str | None
    outcome: str | None
    dump_run_id: str | None
    ended: object
    error_count: int
    errors: tuple
    failed_restore: tuple
    decisive: str | None = None
    cause: str | None = None
    fix: str | None = None
    catalog: str | None = None

    @property
    def this_checkpoint(self):
        """True for the log of the CRIU run that wrote these images."""
        return self.role == "dump"


@dataclass(frozen=True, slots=True)
class Note:
    """Something odd: from this summary (``origin`` ``summary``), the source
    (``source``) or the graph's findings (``graph``)."""

    severity: str
    code: str
    message: str
    where: str
    origin: str


@dataclass(frozen=True, slots=True)
class Summary:
    """Everything ``crit-plus summarize`` shows."""

    origin: Origin
    dump: DumpInfo
    stats: tuple  # ((name, value), ...) in stats-dump field order; empty without it
    processes: tuple  # ProcessSummary, tree order
    totals: Totals
    top_processes: tuple  # ProcessSummary, most pages first
    top_mappings: tuple  # MappingHolder, most pages first
    logs: tuple  # LogSummary: the checkpoint's own first
    notes: tuple
    # an archive's root-filesystem changes (crit_plus.sources.rootfs.RootfsChanges), else None
    rootfs: object = None


def summarize(source, checkpoint, *, argv=False, top=TOP):
    """The :class:`Summary` of ``checkpoint`` opened from ``source``.

    Reads every metadata image (as ``checkpoint.findings`` does) and the
    logs, never page data unless ``argv`` asks for the command lines.
    """
    processes = []
    for depth, process in checkpoint.walk():
        vmas, states, shared = _memory_facts(process)
        exe = process.exe
        processes.append(ProcessSummary(
            depth, process.pid, process.ppid, process.pgid, process.sid, process.state_label,
            process.exit_status, len(process.threads), process.comm,
            exe.name if exe is not None else None, process.command_line if argv else None,
            vmas, states.present, states.parent, states.lazy, states.none, shared,
            len(process.fds), process.pages.unknown))
    by_size = sorted((p for p in processes if p.pages_unknown is None),
                     key=lambda p: (-(p.pages + p.shared), p.pid))
    dump = _dump_info(source, checkpoint)
    logs = _logs(source, dump.run_id)
    return Summary(
        _origin(source, logs), dump, _stats(source, checkpoint),
        tuple(processes), _totals(checkpoint, processes),
        tuple(p for p in by_size[:top] if p.pages + p.shared),
        tuple(_holder(item) for item in biggest_mappings(checkpoint, top)), logs,
        tuple(_notes(source, checkpoint, processes, logs, dump)), source.rootfs)


def _memory_facts(process):
    """``(VMAs, private pages by state, shared-memory pages)`` of ``process``
    (:attr:`~crit_plus.graph.Process.pages`)."""
    pages = process.pages
    return pages.vmas, pages.private, pages.shared.listed


def _holder(item):
    process, mapping = item.process, item.mapping
    return MappingHolder(process.pid, process.comm, mapping.start, mapping.end, mapping.kind,
                         mapping.name, item.size)


def _logs(source, run_id):
    """The source's logs as the one attribution (:meth:`Source.runs
    <crit_plus.sources.Source.runs>`) says: copies folded, this checkpoint's
    dump first, then its restores."""
    found = []
    fields = source.catalog_fields
    for item in source.runs(run_id):
        log, run = item.log, item.run
        failed = log.kind == "lxc" or (run is not None and run.outcome in FAILED_OUTCOMES)
        operation = run.operation if run else None
        decisive = diagnose(log.errors, operation, fields) if failed else None
        failure = decisive.failure if decisive is not None else None
        known = failure is not None and failure.role == "cause"
        found.append(LogSummary(
            log.name, source.label_of(log.path), log.kind, item.role, item.reason,
            item.copies, log.header.criu_version, log.header.run_id,
            run.operation if run else None, run.outcome if run else None,
            run.dump_run_id if run else None, run.ended if run else None,
            log.error_count, decisive_first(log.errors, operation)[:LOG_ERRORS],
            decisive_first(item.failed_restore_lines, "restore")[:LOG_ERRORS],
            decisive.text if decisive else None, failure.cause if known else None,
            failure.fix if known else None, failure.code if known else None))
    order = {"dump": 0, "restore": 1}
    found.sort(key=lambda log: (order.get(log.role, 2), log.kind != "criu", log.name))
    return tuple(found)


def _origin(source, logs):
    """The :class:`Origin`; version and kernel from this checkpoint's CRIU log."""
    version, kernel, machine, where = source.criu_version, source.kernel, None, None
    if version or kernel:
        where = source.dump_log.name if source.dump_log is not None else "dump.log"
    mine = [log.path for log in logs if log.this_checkpoint and log.kind == "criu"]
    for log in source.logs:
        if source.label_of(log.path) not in mine:
            continue
        machine = machine or log.header.machine
        if version is None and log.header.criu_version:
            version, kernel, where = log.header.criu_version, log.header.kernel, log.name
    metadata = source.metadata or {}
    pod = metadata.get("pod") if isinstance(metadata.get("pod"), dict) else {}
    image = metadata.get("image") if isinstance(metadata.get("image"), dict) else {}
    pod_name = "/".join(part for part in (pod.get("namespace"), pod.get("name")) if part)
    return Origin(
        source.spec, source.kind, source.manager, source.project, source.instance,
        source.snapshot, source.images_label, str(source.archive) if source.archive else None,
        str(source.backup_path) if source.backup_path else None, source.stateful,
        source.taken_at, source.taken_at_source, version, kernel, machine, where,
        source.criu_run_id, pod_name or None, image.get("ref"))


def _dump_info(source, checkpoint):
    inventory = checkpoint.inventory
    run_id = inventory.run_id if inventory is not None else None
    lock = network_lock_name(inventory.network_lock_method) if inventory else None
    parent = checkpoint.parent
    pages_bytes = sum(pf.size or 0 for pf in checkpoint.pages_files)
    return DumpInfo(
        inventory.img_version if inventory else None,
        inventory.lsm_type if inventory else None,
        inventory.tcp_close if inventory else None, lock,
        inventory.pre_dump_mode if inventory else None,
        tuple(inventory.plugins) if inventory else (), run_id,
        inventory.dump_uptime if inventory else None,
        parent.directory if parent is not None else None,
        len(checkpoint.image_files), source.size, pages_bytes)


def _stats(source, checkpoint):
    stats = checkpoint.stats
    if stats is not None:
        return tuple(stats.fields)
    metadata = source.metadata or {}
    archived = metadata.get("stats_dump")  # a Podman/CRI-O archive keeps it beside checkpoint/
    if isinstance(archived, dict):
        return tuple(archived.items())
    return ()


def _totals(checkpoint, processes):
    kinds, sockets, files = {}, {}, set()
    for process in checkpoint.processes:
        for fd in process.fds:
            kinds[fd.kind] = kinds.get(fd.kind, 0) + 1
            file = fd.file
            if file is None or file.id in files:
                continue
            files.add(file.id)
            family = file.details.get("family")
            if family is not None:
                state = file.details.get("state")
                if family == SockFamily.NETLINK:
                    state = netlink_state(state)
                key = (_name(family), _name(state) if state is not None else None)
                sockets[key] = sockets.get(key, 0) + 1
    shared = checkpoint.pages.shared.listed  # each object's pages once
    return Totals(
        len(processes), sum(p.threads for p in processes),
        sum(1 for p in processes if p.state == "zombie"), sum(p.vmas for p in processes),
        sum(p.present for p in processes), sum(p.parent for p in processes),
        sum(p.lazy for p in processes), sum(p.none for p in processes), shared,
        sum(kinds.values()), len(files),
        tuple(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
        tuple((family, state, n) for (family, state), n
              in sorted(sockets.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))),
        checkpoint.pages.unknown)  # the graph's one list of pids with unknown pages


def _name(value):
    """An enum's lower-case name, or the value itself."""
    return value.name.lower() if hasattr(value, "name") else value


def _where(holders):
    text = ", ".join(f"pid {pid} fd {fd}" for pid, fd in holders[:3])
    return text + (f" and {len(holders) - 3} more" if len(holders) > 3 else "")


def _file_notes(checkpoint):
    """``(severity, code, message, where)`` for deleted files, external unix peers
    and established TCP connections (which restore needs options for)."""
    established = 0
    for file in checkpoint.files:
        holders = checkpoint.holders(file.id)
        if not holders:
            continue
        d = file.details
        if file.kind == "file" and d.get("deleted"):
            if d.get("ghost_image"):
                size = d.get("size")
                yield (INFO, "ghost-file",
                       f"deleted file {file.name} is open ({_where(holders)}); its contents "
                       f"({size if size is not None else '?'} bytes) are in {d['ghost_image']}",
                       "remap-fpath.img")
            else:
                yield (INFO, "deleted-file",
                       f"deleted file {file.name} is open ({_where(holders)}); it is kept as "
                       f"{d.get('link_remap_path') or 'a link-remap file'}", "remap-fpath.img")
        elif file.kind == "unix" and d.get("external_peer"):
            yield (WARNING, "external-socket",
                   f"unix socket {file.name} ({_where(holders)}) is connected to "
                   f"socket:[{d.get('peer_ino')}] outside the checkpoint: restore needs "
                   "--ext-unix-sk", "files.img")
        elif (file.kind == "inet" and d.get("proto") == IpProto.TCP
              and d.get("state") == SockState.ESTABLISHED):
            established += 1
    if established:
        yield (INFO, "tcp-established",
               f"{count_text(established, 'established TCP connection end')}: restore needs "
               "--tcp-established", "files.img")


def _log_notes(logs, dump, own):
    """Error lines of this checkpoint's dump log; restores of this checkpoint that
    failed (a CRIU restore log, liblxc's lines about it); the images directory's
    dump log (``own``) of another run than the images'."""
    for log in logs:
        if log.this_checkpoint and log.error_count:
            first = log.errors[0].strip() if log.errors else ""
            yield (INFO, "log-errors",
                   f"the dump's CRIU log records {count_text(log.error_count, 'error line')}, "
                   f"the first: {first}", log.name)
        if log.failed_restore:
            whose = "liblxc's log" if log.kind == "lxc" else "its CRIU log"
            yield (WARNING, "restore-failed",
                   f"a restore of this checkpoint failed ({whose}): "
                   f"{log.failed_restore[0].strip()}", log.name)
        if log.path == own and log.run_id and dump.run_id and log.run_id != dump.run_id:
            yield (WARNING, "run-id-mismatch",
                   f"{log.name} is the log of CRIU run {log.run_id}, the images were written "
                   f"by run {dump.run_id}", log.name)


def _notes(source, checkpoint, processes, logs, dump):
    notes = []

    def note(severity, code, message, where):
        notes.append(Note(severity, code, message, where, "summary"))

    for p in processes:
        if p.state == "zombie":
            ended = f" ({p.exit.text})" if p.exit is not None else ""
            note(INFO, "zombie", f"pid {p.pid} ({p.comm}) is a zombie{ended}: CRIU restores "
                 "it as one", f"core-{p.pid}.img")
        elif p.state == "stopped":
            note(INFO, "stopped", f"pid {p.pid} ({p.comm}) was stopped", f"core-{p.pid}.img")
    for item in _file_notes(checkpoint):
        note(*item)
    parent = checkpoint.parent
    if parent is not None:
        pages = sum(p.parent for p in processes)
        note(INFO, "parent", f"incremental: builds on the checkpoint in {parent.directory} "
             f"({pages} pages are taken from it)", "parent")
    lazy = sum(p.lazy for p in processes)
    if lazy:
        note(WARNING, "lazy-pages",
             f"{lazy} pages are lazy: not in the images, a lazy-pages daemon must serve them",
             "pagemap")
    stats = dict(_stats(source, checkpoint))
    if stats.get("pages_lazy"):
        note(INFO, "lazy-dump", f"the dump left {stats['pages_lazy']} pages for lazy restore",
             "stats-dump")
    failure = dump_failure(source, checkpoint)
    if failure is not None:
        note(ERROR if failure.partial else WARNING, "dump-failed",
             f"{failure.sentence}; {failure.consequence} (`crit-plus explain` says why)",
             failure.log)
    own = source.label_of(source.dump_log) if source.dump_log is not None else None
    for item in _log_notes(logs, dump, own):
        note(*item)
    for finding in source.findings:
        notes.append(Note(finding.severity, finding.code, finding.message, finding.where,
                          "source"))
    for finding in checkpoint.findings:
        notes.append(Note(finding.severity, finding.code, finding.message, finding.where,
                          "graph"))
    return notes


__all__ = ["DumpInfo", "LOG_ERRORS", "LogSummary", "MappingHolder", "Note",
           "Origin", "ProcessSummary", "Summary", "TOP", "Totals", "summarize"]
