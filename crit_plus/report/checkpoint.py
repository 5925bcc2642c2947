"""The checkpoint side of a report: what crit-plus says about the checkpoint.

==========================================  ===============================================
the resolved source (kind, instance,        ``checkpoint/source.json``
CRIU version, kernel, findings)
the image files: names and sizes only       ``checkpoint/images.txt``
CRIU's logs in the image directory          ``checkpoint/dump.log``, ``restore.log``, ...
``backup.yaml`` beside ``state/``           ``instance/backup.yaml`` (secrets redacted)
``crit-plus version|summarize|size|         ``crit-plus/NAME.json`` and ``NAME.txt`` (stderr,
validate``, as JSON and as a table          when any, in ``NAME.json.stderr.txt`` ...)
``crit-plus summarize --format html``       ``crit-plus/summarize.html`` (one page, no script)
``--include-images`` only: every file of    ``images/...``
the image directory, as is
==========================================  ===============================================

Without ``--include-images`` no image's bytes are read into the bundle: page
data (``pages-*.img``) holds process memory, and with it environments, keys
and passwords.  The commands run with their defaults (see
:mod:`crit_plus.report.selfrun`).
"""

from __future__ import annotations

import json
import os
import stat

from decoders.errors import DecodeError

from ..describe import human_bytes
from ..graph import open_checkpoint
from .excerpts import criu_log_scan
from .selfrun import run_command

#: crit-plus's commands whose output goes into a report, in this order.
SELF_COMMANDS = ("version", "summarize", "size", "validate")
#: Output formats each command is run with: ``json`` (``--format json``) and
#: ``table`` (the default format).
SELF_FORMATS = (("json", "json"), ("table", "txt"))
#: Pages of crit-plus's commands in a report: ``(command, format, suffix)``.
SELF_PAGES = (("summarize", "html", "html"),)


def source_facts(source):
    """The JSON-ready facts of a resolved source, for ``checkpoint/source.json``.

    Of an archive's metadata only plain values are kept; its documents
    (``config.dump``, ``spec.dump``: they hold the container's environment) are
    named in ``metadata_withheld``, not copied.
    """
    facts = source.to_dict()
    metadata = facts.pop("metadata", None) or {}
    facts["metadata"] = {key: value for key, value in metadata.items()
                         if not isinstance(value, (dict, list))}
    facts["metadata_withheld"] = sorted(key for key, value in metadata.items()
                                        if isinstance(value, (dict, list)))
    facts["images_bytes"] = source.size
    facts["logs"] = log_runs(source)
    return facts


def _inventory_run_id(source):
    """The run id ``inventory.img`` records, read by the graph (None when it cannot be
    read: the report still gathers everything else)."""
    try:
        inventory = open_checkpoint(source.images_dir).inventory
    except (DecodeError, OSError):
        return None
    return inventory.run_id if inventory is not None else None


def log_runs(source):
    """Each log of ``source`` (copies folded) and whose run it is, as the one log
    attribution says (:meth:`crit_plus.sources.Source.runs`), JSON-ready."""
    rows = []
    paths = {log.name: str(log.path) for log in source.logs}
    for item in source.runs(_inventory_run_id(source)):
        rows.append({
            "name": item.log.name, "path": source.label_of(item.log.path),
            "kind": item.log.kind, **item.to_dict(),
            "failed_restore": list(item.failed_restore_lines),
            "files": [str(item.log.path)] + [paths[name] for name in item.copies
                                             if name in paths]})
    return rows


def _image_files(images_dir):
    """``(relative path, lstat)`` of everything under ``images_dir``, links not followed."""
    found = []
    for directory, dirnames, filenames in os.walk(images_dir):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames
                                         if os.path.islink(os.path.join(directory, d))]:
            path = os.path.join(directory, name)
            try:
                found.append((os.path.relpath(path, images_dir), os.lstat(path)))
            except OSError:
                continue
    return found


def images_listing(files):
    """The text of ``checkpoint/images.txt``: size and name of each file."""
    lines = []
    for relative, info in files:
        if stat.S_ISLNK(info.st_mode):
            lines.append(f"{'link':>12}  {relative}")
        else:
            lines.append(f"{info.st_size:>12}  {relative}")
    total = sum(info.st_size for _, info in files if stat.S_ISREG(info.st_mode))
    lines.append(f"{total:>12}  total ({human_bytes(total)})")
    return "\n".join(lines) + "\n"


def _checkpoint_logs(collection, images_dir, files):
    for relative, info in files:
        if stat.S_ISREG(info.st_mode) and relative.endswith(".log") and os.sep not in relative:
            path = os.path.join(images_dir, relative)
            scan, run_id = criu_log_scan(path)
            collection.add_file(f"checkpoint/{relative}", path, scan=scan, run_id=run_id)


def _images(collection, images_dir, files):
    for relative, info in files:
        path = os.path.join(images_dir, relative)
        if stat.S_ISREG(info.st_mode):
            collection.add_streamed("images/" + relative.replace(os.sep, "/"), path)
        else:
            collection.skip(path, "not a regular file (links are not followed)")


def gather_self_runs(collection, own_commands, spec, options, commands=SELF_COMMANDS, pages=()):
    """Run crit-plus's ``commands`` (names, found in ``own_commands``: a
    :class:`~crit_plus.report.selfrun.Commands`, or None) on ``spec`` (None: no
    checkpoint) in both formats, and keep their output as ``crit-plus/NAME.json`` and
    ``crit-plus/NAME.txt``; then ``pages`` (:data:`SELF_PAGES`) as
    ``crit-plus/NAME.SUFFIX``."""
    runs = [(name, output_format, suffix) for name in commands
            for output_format, suffix in SELF_FORMATS]
    for name, output_format, suffix in (*runs, *pages):
        run = run_command(own_commands, name, spec, options, output_format)
        if run.stdout is None:
            collection.self_runs.append((run, None))
            continue
        member = f"crit-plus/{name}.{suffix}"
        collection.self_runs.append((run, member))
        # Redacted too: they quote command lines and log lines, which can hold secrets.
        collection.add_stream(member, run.stdout, "crit-plus " + " ".join(run.argv))
        if run.stderr.seek(0, os.SEEK_END):
            collection.add_stream(f"{member}.stderr.txt", run.stderr,
                                  "stderr of crit-plus " + " ".join(run.argv))
        run.stdout.close()
        run.stderr.close()


def self_run_spec(source):
    """What to name the checkpoint to crit-plus's commands: the user's spec, or the
    unpacked image directory of an archive (not unpacked again for each command)."""
    return str(source.images_dir) if source.archive is not None else source.spec


def gather_checkpoint(collection, source, options, include_images=False, own_commands=None):
    """Add what crit-plus knows of ``source`` (a resolved
    :class:`~crit_plus.sources.Source`) to ``collection``; ``options`` are the
    source options (``lxd_dir``, ``project``, ``root``) for crit-plus's commands,
    ``own_commands`` those commands (:class:`~crit_plus.report.selfrun.Commands`; None:
    none run).
    Returns the source's facts (:func:`source_facts`), for the report's index."""
    images_dir = os.fspath(source.images_dir)
    facts = source_facts(source)
    collection.add_text("checkpoint/source.json",
                        json.dumps(facts, indent=2, ensure_ascii=False) + "\n",
                        f"crit-plus's reading of {source.spec}", redact=False)
    files = _image_files(images_dir)
    collection.add_text("checkpoint/images.txt", images_listing(files),
                        f"the files of {images_dir} (names and sizes)", redact=False)
    _checkpoint_logs(collection, images_dir, files)
    if source.backup_path is not None:
        collection.add_yaml_file("instance/backup.yaml", source.backup_path)
    gather_self_runs(collection, own_commands, self_run_spec(source), options, pages=SELF_PAGES)
    if include_images:
        _images(collection, images_dir, files)
    return facts


__all__ = ["SELF_COMMANDS", "SELF_FORMATS", "SELF_PAGES", "gather_checkpoint", "gather_self_runs",
           "images_listing", "log_runs", "self_run_spec", "source_facts"]
