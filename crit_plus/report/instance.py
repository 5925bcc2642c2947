"""The LXD/Incus side of a report: the daemon, the instance, and its logs.

With ``lxc`` (LXD) or ``incus`` present:

==============================================  ===========================================
``lxc info``                                    ``host/lxd-info.txt`` (``incus-info.txt``)
``lxc info NAME``                               ``instance/info.txt``
``lxc config show --expanded NAME``             ``instance/config.yaml`` (secrets redacted)
``lxc exec NAME -- cat /proc/self/mountinfo``   ``instance/mountinfo.txt`` (running instances)
==============================================  ===========================================

(``--project P`` is passed for an instance outside the default project.)
Files, under the host root: the daemon's log (``/var/log/lxd/lxd.log``, the
snap's ``/var/snap/lxd/common/lxd/logs/lxd.log``, Incus's
``/var/log/incus/incusd.log``), and the instance's log directory
(``/var/log/lxd/NAME/``: liblxc's ``lxc.log``, LXD's copies of CRIU's dump and
restore logs, ``lxc.conf``, the console log), each at ``logs/<its path>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..sources.layout import instance_dirname, log_dir_candidates, standard_roots
from ..sources.logs import log_kind
from .excerpts import criu_log_scan
from .host import record_program, under_root

#: The command-line client of each manager.
CLIENTS = {"lxd": "lxc", "incus": "incus"}
#: Daemon logs under the host root (a data directory's ``logs/NAME`` is also tried).
DAEMON_LOGS = {"lxd": ("var/log/lxd/lxd.log",), "incus": ("var/log/incus/incusd.log",)}
DAEMON_LOG_NAMES = {"lxd": "lxd.log", "incus": "incusd.log"}
#: Files kept of one log directory: the newest ones (LXD keeps a CRIU log per snapshot).
MAX_LOG_FILES = 100


@dataclass(frozen=True)
class Instance:
    """An LXD/Incus instance a report is about: ``manager`` (``lxd``/``incus``),
    ``name`` (None: the daemon only) and ``project`` (None: the default)."""

    manager: str
    name: str | None = None
    project: str | None = None

    @property
    def client(self):
        """``lxc`` or ``incus``."""
        return CLIENTS[self.manager]

    def client_args(self, *args):
        """Arguments for the client (after its path), with ``--project`` when needed."""
        prefix = ["--project", self.project] if self.project not in (None, "", "default") else []
        return [*prefix, *args]


def member_path(root, path, prefix="logs"):
    """The bundle member for host file ``path``: ``PREFIX/`` + its path under ``root``
    (its absolute path when it is not under ``root``)."""
    path, root = os.path.abspath(path), os.path.abspath(os.fspath(root))
    relative = os.path.relpath(path, root)
    if relative == os.curdir or relative.startswith(os.pardir):
        relative = path.lstrip(os.sep)
    return prefix + "/" + relative.replace(os.sep, "/")


def instance_log_dirs(instance, lxd_dir=None, root=None):
    """The existing log directories of ``instance`` (for ``--host-only``, where no
    checkpoint says where they are)."""
    dirname = instance_dirname(instance.name, instance.project)
    found = []
    for data_dir in standard_roots(instance.manager, lxd_dir, root):
        for candidate in log_dir_candidates(data_dir, dirname):
            if candidate.is_dir() and candidate not in found:
                found.append(candidate)
    return found


def _client_commands(collection, runner, instance):
    client = runner.which(instance.client)
    name = instance.name
    wanted = [(f"{instance.client} info", f"host/{instance.manager}-info.txt", ["info"])]
    if name:
        wanted += [
            (f"{instance.client} info {name}", "instance/info.txt", ["info", name]),
            (f"{instance.client} config show --expanded {name}", "instance/config.yaml",
             ["config", "show", "--expanded", name]),
            (f"/proc/self/mountinfo inside {name}", "instance/mountinfo.txt",
             ["exec", name, "--", "cat", "/proc/self/mountinfo"]),
        ]
    if client is None:
        what = ", ".join(label for label, _member, _args in wanted)
        collection.skip(what, runner.missing(instance.client))
        return
    for label, member, args in wanted:
        record_program(collection, label, member, runner, [client, *instance.client_args(*args)],
                       yaml=member.endswith(".yaml"))


def _daemon_logs(collection, root, instance, lxd_dir):
    manager = instance.manager
    candidates = [under_root(root, relative) for relative in DAEMON_LOGS[manager]]
    candidates += [os.path.join(data_dir, "logs", DAEMON_LOG_NAMES[manager])
                   for data_dir in standard_roots(manager, lxd_dir, root)]
    found = [path for path in dict.fromkeys(candidates) if os.path.isfile(path)]
    if not found:
        collection.skip(f"the {manager} daemon's log", "not found (looked at "
                        + ", ".join(candidates) + ")")
    for path in found:
        collection.add_file(member_path(root, path), path, scan="daemon", root=root)


def _mtime(entry):
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def add_log_dir(collection, root, directory, limit=MAX_LOG_FILES):
    """Copy the regular files of log directory ``directory`` (the newest ``limit``;
    symbolic links are not followed, subdirectories not entered)."""
    try:
        entries = list(os.scandir(directory))
    except OSError as error:
        collection.skip(f"log directory {directory}", f"cannot be read: {error.strerror}")
        return
    for entry in entries:
        if entry.is_symlink():
            collection.skip(entry.path, "a symbolic link: not followed")
    entries = [entry for entry in entries if entry.is_file(follow_symlinks=False)]
    entries.sort(key=_mtime, reverse=True)
    if len(entries) > limit:
        collection.skip(f"{len(entries) - limit} older files of {directory}",
                        f"only the newest {limit} are kept")
    for entry in sorted(entries[:limit], key=lambda entry: entry.name):
        kind = log_kind(entry.name)
        scan, run_id = (kind, None) if kind in (None, "lxc") else criu_log_scan(entry.path)
        collection.add_file(member_path(root, entry.path), entry.path, scan=scan, run_id=run_id)


def gather_manager(collection, root, runner, instance, log_dirs=(), lxd_dir=None):
    """Add the manager's facts about ``instance`` (:class:`Instance`) to ``collection``:
    the client's commands, the daemon's log, and the log directories ``log_dirs``."""
    _client_commands(collection, runner, instance)
    _daemon_logs(collection, root, instance, lxd_dir)
    for directory in log_dirs:
        add_log_dir(collection, root, directory)


__all__ = ["CLIENTS", "DAEMON_LOGS", "Instance", "MAX_LOG_FILES", "add_log_dir", "gather_manager",
           "instance_log_dirs", "member_path"]
