"""Times as managers write them: RFC 3339 text (Go's), file modification times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from decoders.lazy import LazyPattern

_TIMESTAMP = LazyPattern(
    r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?$")


def parse_timestamp(text):
    """A timezone-aware datetime from an RFC 3339 time as Go writes it, or None.

    Go's zero time (year 1, LXD's "never") and unparsable text give None;
    nanoseconds are truncated to microseconds; no zone means UTC.
    """
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=timezone.utc)
    match = _TIMESTAMP.match(str(text).strip()) if text is not None else None
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if int(year) <= 1:
        return None
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        zone_info = timezone.utc
        if zone and zone != "Z":  # an offset of 24 hours or more is refused (ValueError)
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            zone_info = timezone(sign * timedelta(hours=int(digits[:2]),
                                                  minutes=int(digits[2:])))
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                        micro, tzinfo=zone_info)
    except ValueError:
        return None


def mtime_of(path):
    """The modification time of ``path`` as an aware UTC datetime (None if unreadable)."""
    try:
        return datetime.fromtimestamp(Path(path).stat().st_mtime, timezone.utc)
    except OSError:
        return None


#: What a dump writes last into its images directory, in order of preference: CRIU writes
#: ``stats-dump`` as it finishes (``cr_dump_finish``) and ``inventory.img`` just before.  The
#: directory's own time is no dump's: a later restore's ``restore.log`` moves it.
DUMP_WRITES = ("stats-dump", "inventory.img")


def dump_time(images_dir):
    """``(time, source)``: when the dump in ``images_dir`` ended, as the modification time
    of the last image CRIU wrote (:data:`DUMP_WRITES`), ``source`` saying which
    (``stats-dump mtime``); the directory's own time (``directory mtime``) when neither
    is there; ``(None, None)`` when nothing can be read."""
    for name in DUMP_WRITES:
        when = mtime_of(Path(images_dir, name))
        if when is not None:
            return when, f"{name} mtime"
    when = mtime_of(images_dir)
    return (when, "directory mtime") if when is not None else (None, None)


__all__ = ["DUMP_WRITES", "dump_time", "mtime_of", "parse_timestamp"]
