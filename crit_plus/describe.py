"""Value → text for people: sizes, durations, page counts, protections.

One place for these conversions, so every command shows a size or a flag the
same way.  JSON output keeps machine values and never goes through here.
"""

from __future__ import annotations

from decoders.flags import PAGE_SIZE, MapFlags, Prot

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(size):
    """``1536`` → ``"1.5 KiB"``; bytes under 1 KiB as ``"512 B"``."""
    if size is None:
        return None
    value, unit = float(size), 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{int(size)} B" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def pages_text(pages):
    """``256`` → ``"256 (1.0 MiB)"``."""
    if pages is None:
        return None
    return f"{pages} ({human_bytes(pages * PAGE_SIZE)})"


def duration_us(microseconds):
    """CRIU's microsecond timings as ``"79.4 ms"`` or ``"1.25 s"``."""
    if microseconds is None:
        return None
    if microseconds >= 1_000_000:
        return f"{microseconds / 1_000_000:.2f} s"
    if microseconds >= 1000:
        return f"{microseconds / 1000:.1f} ms"
    return f"{microseconds} µs"


def maps_perms(prot, flags):
    """``/proc/PID/maps`` permission text: ``r-xp``, ``rw-s``."""
    shared = "s" if MapFlags(flags) & MapFlags.SHARED else "p"
    return Prot(prot).text() + shared
