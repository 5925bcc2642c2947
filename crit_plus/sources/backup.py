"""``backup.yaml``: what LXD and Incus record beside an instance or snapshot.

The file is the manager's own description of the instance (``container:`` in
LXD 5.0 and Incus, ``instance:`` in later LXD), its snapshots (``snapshots:``,
each with ``name``, ``created_at`` and ``stateful``), pool, profiles and
volume.  A snapshot's own backup.yaml is a copy of the instance's file *as it
was when the snapshot was taken*: it does not list that snapshot itself.  What
LXD recorded about snapshot S is therefore found in the instance's backup.yaml
or in the copies kept by snapshots taken after S.

Parsed with PyYAML's safe loader; timestamps are kept as the strings LXD wrote
(Go writes nanoseconds, which a datetime cannot hold).
"""

from __future__ import annotations

import functools
from pathlib import Path

from decoders.framing import open_untrusted

#: A backup.yaml larger than this is not parsed.  LXD writes about 2.5 KiB per
#: snapshot (more with cloud-init data): 1 MiB holds hundreds of snapshots, and
#: parsing a hostile 1 MiB of tiny nodes takes about 280 MB.
MAX_BACKUP_BYTES = 1 << 20


@functools.lru_cache(maxsize=1)
def _yaml():
    """``(yaml, loader)``: PyYAML and its safe loader with timestamps left as text.

    Imported on first use: only checkpoints kept by LXD or Incus have a
    backup.yaml, and PyYAML costs every other command's start-up 15 ms.
    """
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        """PyYAML's safe loader, with timestamps left as text."""

    Loader.add_constructor("tag:yaml.org,2002:timestamp",
                           lambda loader, node: loader.construct_scalar(node))
    Loader.add_constructor("tag:yaml.org,2002:int", _integer)
    return yaml, Loader


#: Integers wider than this many bits (LXD writes 64-bit ones) are kept as their text.
MAX_INT_BITS = 64


def _integer(loader, node):
    """An integer, or its text when it is wider than :data:`MAX_INT_BITS` bits (a
    5,000-digit decimal fails Python's int-str limit; a base-60 ``59:59:...`` one
    would fail later, wherever it is printed)."""
    try:
        value = loader.construct_yaml_int(node)
    except ValueError:
        return loader.construct_scalar(node)
    return value if value.bit_length() <= MAX_INT_BITS else loader.construct_scalar(node)


def _first_line(error):
    """The first line of an exception's message, at most 200 characters."""
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


class BackupError(Exception):
    """backup.yaml exists but cannot be used; the message says why."""


def load_backup(path):
    """Parse the backup.yaml at ``path`` into a dict.

    Returns None if there is no such file; raises :class:`BackupError` (one
    line) if it cannot be read, is too large, is not YAML or is not a mapping.
    """
    path = Path(path)
    try:
        fd, info = open_untrusted(path)  # a FIFO is refused, not waited on
        with open(fd, "rb") as stream:
            text = b"" if info.st_size > MAX_BACKUP_BYTES else stream.read(MAX_BACKUP_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror or error}") from None
    size = max(info.st_size, len(text))
    if size > MAX_BACKUP_BYTES:
        raise BackupError(f"{path} is {size} bytes, more than the {MAX_BACKUP_BYTES} "
                          "a backup.yaml of LXD or Incus holds; not parsed")
    data = parse_yaml(text, path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BackupError(f"{path} is not a YAML mapping")
    return data


def parse_yaml(text, name):
    """The one YAML document of ``text`` (bytes or str) as Python values, parsed
    with PyYAML's safe loader (timestamps left as text).

    Raises :class:`BackupError` (one line naming ``name``) if it is not YAML,
    holds more than one document, or a value no Python object holds (an
    integer of more than 4300 digits: Python's int-str limit).
    """
    yaml, loader = _yaml()
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise BackupError(f"{name} is not valid YAML{line}") from None
    except (ValueError, OverflowError, RecursionError) as error:
        reason = _first_line(error)
        raise BackupError(f"{name} has a value PyYAML cannot hold: {reason}") from None


def instance_record(backup):
    """The instance's own record (``instance:`` or ``container:``), or an empty dict."""
    if not isinstance(backup, dict):
        return {}
    record = backup.get("instance") or backup.get("container")
    return record if isinstance(record, dict) else {}


def snapshot_record(backup, name):
    """The ``snapshots:`` entry named ``name`` in a parsed backup.yaml, or None."""
    if not isinstance(backup, dict):
        return None
    entries = backup.get("snapshots")
    if not isinstance(entries, list):  # absent, or not the list LXD writes
        return None
    for entry in entries:
        if isinstance(entry, dict) and str(entry.get("name")) == name:
            return entry
    return None
