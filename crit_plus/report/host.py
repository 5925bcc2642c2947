"""Host facts for a report: what CRIU and LXD maintainers ask about the machine.

Files are read under a root directory (``/`` for this machine; a copied tree
in tests and with ``$CRIT_PLUS_ROOT``), and only those in :data:`HOST_FILES`
and :data:`CPUINFO`; programs run through the given
:class:`~crit_plus.report.programs.Runner`:

====================================  ==========================================
``uname -a``                          ``host/uname.txt``
``dmesg``                             ``host/dmesg.txt`` (often needs root)
``criu --version``                    ``host/criu-version.txt``
``criu check --all``                  ``host/criu-check.txt`` (errors go to the index)
``ROOT/proc/cpuinfo``                 ``host/cpuinfo.txt``: the first CPU's vendor,
                                      model and ``flags`` lines only
``ROOT/proc/self/mountinfo``          ``host/mountinfo.txt``
``ROOT/etc/default/lxd-bridge``       ``host/lxd-bridge.txt`` (old LXD packages)
====================================  ==========================================
"""

from __future__ import annotations

import dataclasses
import os

from ..files import open_in_tree, resolve_in_root
from .programs import find_criu

#: Host files copied as they are: (path under the root, member, what it is).
HOST_FILES = (
    ("proc/self/mountinfo", "host/mountinfo.txt", "the host's mounts"),
    ("etc/default/lxd-bridge", "host/lxd-bridge.txt", "LXD's bridge settings (old packages)"),
)
#: Where the CPU's flags come from, under the root.
CPUINFO = "proc/cpuinfo"
#: The /proc/cpuinfo keys kept (of the first CPU).
CPUINFO_KEYS = ("vendor_id", "cpu family", "model", "model name", "stepping", "microcode",
                "flags", "bugs")
#: Bytes of /proc/cpuinfo read at most (the first CPU comes first).
CPUINFO_LIMIT = 1 << 20


def under_root(root, relative):
    """``relative`` (a host path without its leading ``/``) under ``root``."""
    return os.path.join(os.fspath(root), relative)


def cpuinfo_text(text):
    """The lines of the first CPU of a /proc/cpuinfo text whose key is in :data:`CPUINFO_KEYS`."""
    kept = []
    for line in text.splitlines():
        if not line.strip():
            if kept:
                break
            continue
        key = line.partition(":")[0].strip()
        if key in CPUINFO_KEYS:
            kept.append(line.rstrip())
    return "\n".join(kept) + "\n" if kept else ""


def record_program(collection, what, member, runner, argv, scan=None, yaml=False):
    """Run ``argv`` with ``runner`` and keep its transcript as ``member``; a
    program that did not run is recorded as skipped.  ``yaml``: its output is a
    YAML document, kept (redacted by parsing, after comments naming the command)
    only when the program succeeded and the document parses."""
    ran = runner.run(argv)
    if ran.error is not None:
        collection.skip(what, ran.error)
        collection.runs.append((what, ran, None))
        return ran
    added = True
    if yaml and ran.ok and not ran.truncated:
        command = ran.command_line.replace("\r", "\\r").replace("\n", "\\n")
        added = collection.add_yaml(member, ran.stdout, ran.command_line,
                                    header=f"# $ {command}\n# exit code 0\n".encode(
                                        "utf-8", "backslashreplace"))
    else:
        shown = ran if not yaml else dataclasses.replace(
            ran, stdout=b"# (output not copied: not a whole YAML document, so its secrets "
                        b"cannot be found)\n")
        collection.add_bytes(member, shown.transcript(), ran.command_line, scan=scan)
    collection.runs.append((what, ran, member if added else None))
    return ran


def run_if_present(collection, what, member, runner, program, args, scan=None):
    """Like :func:`record_program` for ``program ARGS``, after finding
    ``program``; a missing program is recorded as skipped."""
    path = runner.which(program)
    if path is None:
        collection.skip(what, runner.missing(program))
        return None
    return record_program(collection, what, member, runner, [path, *args], scan=scan)


def _cpuinfo(collection, root):
    path = under_root(root, CPUINFO)
    try:
        with open(open_in_tree(path, root)[0], encoding="utf-8", errors="replace") as stream:
            text = stream.read(CPUINFO_LIMIT)
    except OSError as error:
        collection.skip(f"CPU flags ({path})", f"cannot be read: {error.strerror or error}")
        return
    collection.add_text("host/cpuinfo.txt", cpuinfo_text(text), f"{path} (first CPU's flags)")


def gather_host(collection, root, runner, criu=None):
    """Add the host facts to ``collection``: files under ``root``, programs by ``runner``.

    ``criu`` is an explicit ``criu`` binary (see
    :func:`~crit_plus.report.programs.find_criu`).
    """
    run_if_present(collection, "uname -a", "host/uname.txt", runner, "uname", ["-a"])
    run_if_present(collection, "dmesg", "host/dmesg.txt", runner, "dmesg", [])
    criu_path, why = find_criu(runner, criu)
    if criu_path is None:
        collection.skip("criu --version, criu check --all", why)
    else:
        record_program(collection, "criu --version", "host/criu-version.txt", runner,
                       [criu_path, "--version"])
        record_program(collection, "criu check --all", "host/criu-check.txt", runner,
                       [criu_path, "check", "--all"], scan="check")
    _cpuinfo(collection, root)
    for relative, member, what in HOST_FILES:
        path = under_root(root, relative)
        if resolve_in_root(root, relative) is None:  # links resolved inside the root
            collection.skip(f"{what} (/{relative})", "does not exist on this host")
            continue
        collection.add_file(member, path, root=root)


__all__ = ["CPUINFO", "CPUINFO_KEYS", "HOST_FILES", "cpuinfo_text", "gather_host",
           "record_program", "run_if_present", "under_root"]
