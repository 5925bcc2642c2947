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


# -- dump statistics, open files, sockets, command lines (summarize and the explorers) ----

#: ``stats-dump`` fields (``dump_stats_entry``, CRIU's criu/stats.c): label and unit.
#: Times are microseconds; fields newer than this table are shown as plain numbers.
DUMP_STATS = {
    "freezing_time": ("freezing", "us"),
    "frozen_time": ("frozen", "us"),
    "memdump_time": ("memory dump", "us"),
    "memwrite_time": ("memory write", "us"),
    "irmap_resolve": ("inotify path resolving", "us"),
    "pages_scanned": ("pages scanned", "pages"),
    "pages_skipped_parent": ("pages skipped (in parent)", "pages"),
    "pages_written": ("pages written", "pages"),
    "pages_lazy": ("pages left lazy", "pages"),
    "page_pipes": ("page pipes", "count"),
    "page_pipe_bufs": ("page pipe buffers", "count"),
    "shpages_scanned": ("shared pages scanned", "pages"),
    "shpages_skipped_parent": ("shared pages skipped (in parent)", "pages"),
    "shpages_written": ("shared pages written", "pages"),
}


def stat_label(name):
    """The label of a ``stats-dump`` field (its name when unknown)."""
    return DUMP_STATS.get(name, (name.replace("_", " "), None))[0]


def stat_text(name, value):
    """A ``stats-dump`` value in its unit: ``"79.4 ms"``, ``"3254 (12.7 MiB)"``."""
    unit = DUMP_STATS.get(name, (None, None))[1]
    if value is None:
        return None
    if unit == "us":
        return duration_us(value)
    if unit == "pages":
        return pages_text(value)
    return str(value)


_O_ACCMODE, _O_WRONLY, _O_RDWR, _O_APPEND = 0o3, 0o1, 0o2, 0o2000


def open_mode(flags):
    """Access mode of open ``flags``: ``r``, ``w``, ``rw`` (``+a`` when appending)."""
    if flags is None:
        return None
    mode = {0: "r", _O_WRONLY: "w", _O_RDWR: "rw"}.get(flags & _O_ACCMODE, "?")
    return mode + ("+a" if flags & _O_APPEND else "")


_EPOLL_EVENTS = ((0x1, "in"), (0x2, "pri"), (0x4, "out"), (0x8, "err"), (0x10, "hup"),
                 (0x2000, "rdhup"), (1 << 28, "exclusive"), (1 << 29, "wakeup"),
                 (1 << 30, "oneshot"), (1 << 31, "et"))


def epoll_events(mask):
    """``EPOLL*`` bits as ``in,err,hup``."""
    words = [word for bit, word in _EPOLL_EVENTS if mask & bit]
    rest = mask & ~sum(bit for bit, _ in _EPOLL_EVENTS)
    if rest:
        words.append(f"{rest:#x}")
    return ",".join(words) or "0"


def enum_text(value):
    """A named value (socket family, type, state...) as a lower-case word."""
    if value is None:
        return None
    name = getattr(value, "name", None)
    return name.lower() if name else str(value)


def endpoints_text(endpoints):
    """``((pid, fd), ...)`` or Endpoint records as ``12525:13, 12528:13``."""
    return ", ".join(f"{e[0]}:{e[1]}" if isinstance(e, tuple) else f"{e.pid}:{e.fd}"
                     for e in endpoints)


def fd_description(kind, name, details, peers=(), targets=(), queued=None):
    """What an open file is, in one line: a path with ``(deleted)``, a pipe or
    FIFO with its id, socket addresses and peer fds, an eventfd's count, what an
    epoll fd watches, a memfd's size, a tty..."""
    d = details or {}
    text = name or kind
    if kind == "file":
        if d.get("deleted"):
            text += " (deleted)"
    elif kind == "fifo":
        text = f"{name} (fifo:[{d.get('pipe_id')}])"
        if peers:
            text += " <-> " + endpoints_text(peers)
    elif kind == "pipe":
        if peers:
            text += " <-> " + endpoints_text(peers)
    elif kind == "unix":
        words = [w for w in (enum_text(d.get("type")), enum_text(d.get("state"))) if w]
        text = f"unix {name} ({', '.join(words)})" if words else f"unix {name}"
        if d.get("external_peer"):
            text += f" -> socket:[{d.get('peer_ino')}] outside the checkpoint"
        elif peers:
            text += " -> " + endpoints_text(peers)
    elif kind == "inet":
        proto = enum_text(d.get("proto")) or "inet"
        text = f"{proto} {name} ({enum_text(d.get('state'))})"
        if peers:
            text += " <-> " + endpoints_text(peers)
    elif kind == "eventfd":
        text = f"eventfd count={d.get('counter')}"
    elif kind == "eventpoll":
        watched = [f"{t.fd} {t.name or t.kind or '(not open in this process)'} "
                   f"[{epoll_events(t.events)}]"
                   for t in targets]
        text = "epoll: " + ("; ".join(watched) if watched else "nothing watched")
    elif kind == "memfd":
        size = d.get("size")
        text = f"{name} ({human_bytes(size)})" if size is not None else name
    elif kind == "tty":
        tty_type = enum_text(d.get("tty_type"))
        text = f"{name or 'tty'} ({tty_type})" if tty_type else (name or "tty")
    elif kind == "signalfd":
        signals = d.get("signals") or ()
        text = "signalfd: " + (",".join(signal_name(n) for n in signals) or "no signals")
    elif kind == "inotify":
        text = "inotify: " + count_text(len(d.get("watches") or ()), "watch", "watches")
    elif kind == "timerfd":
        clock = CLOCK_NAMES.get(d.get("clockid"))
        text = f"timerfd ({clock} clock)" if clock else f"timerfd (clock {d.get('clockid')})"
    elif kind == "netlink":
        text = f"{name} ({netlink_protocol(d.get('protocol'))})"
    if queued:
        text += f" [{human_bytes(queued)} queued]"
    return text


#: Signals 1-31 by number, without ``SIG`` (``asm-generic/signal.h``: x86, arm,
#: arm64, riscv, ppc, s390); 32 and up are real-time signals, shown as numbers.
SIGNAL_NAMES = (None, "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1",
                "SEGV", "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP",
                "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR",
                "SYS")
#: The clocks a timerfd can use (``linux/time.h``).
CLOCK_NAMES = {0: "realtime", 1: "monotonic", 7: "boottime", 8: "realtime_alarm",
               9: "boottime_alarm"}


def signal_name(number):
    """``TERM`` for 15; a real-time (or unknown) signal as its number."""
    number = int(number)
    return SIGNAL_NAMES[number] if 0 < number < len(SIGNAL_NAMES) else str(number)


#: Netlink protocols (``linux/netlink.h``).
NETLINK_PROTOCOLS = {
    0: "route", 1: "unused", 2: "usersock", 3: "firewall", 4: "sock_diag", 5: "nflog",
    6: "xfrm", 7: "selinux", 8: "iscsi", 9: "audit", 10: "fib_lookup", 11: "connector",
    12: "netfilter", 13: "ip6_fw", 14: "dnrtmsg", 15: "kobject_uevent", 16: "generic",
    18: "scsitransport", 19: "ecryptfs", 20: "rdma", 21: "crypto", 22: "smc",
}
#: A netlink socket's ``sk_state``: 7 (TCP_CLOSE, set at creation) and 0 mean unconnected.
NETLINK_STATES = {0: "unconnected", 1: "connected", 7: "unconnected"}


def netlink_protocol(number):
    """A netlink protocol's name (``kobject_uevent``), or its number as text."""
    if number is None:
        return None
    return NETLINK_PROTOCOLS.get(int(number), str(number))


def netlink_state(number):
    """A netlink socket's state as a word."""
    if number is None:
        return None
    return NETLINK_STATES.get(int(number), str(number))


#: ``inventory.network_lock_method`` (CRIU's ``enum NETWORK_LOCK_METHOD``).
NETWORK_LOCKS = {0: "iptables", 1: "nftables", 2: "skip"}
#: ``inventory.lsmtype`` names as people write them.
LSM_NAMES = {"NO_LSM": "none", "SELINUX": "SELinux", "APPARMOR": "AppArmor"}


def network_lock_name(method):
    """The inventory's network-lock method by name (``iptables``, ``nftables``, ``skip``);
    None stays None, an unknown number stays as given."""
    if method is None:
        return None
    text = str(method)
    return NETWORK_LOCKS.get(int(text), text) if text.isdigit() else text


def lsm_name(lsm_type):
    """The inventory's LSM type as people write it (``NO_LSM`` → ``none``); None stays None."""
    if lsm_type is None:
        return None
    return LSM_NAMES.get(lsm_type, lsm_type)


def cmdline_text(argv, comm=None, unknown=None):
    """A command line as ``ps`` shows it; ``[comm]`` when there is none to read (a
    zombie, a kernel thread, an empty argument area); ``? (why)`` when there is one the
    images cannot give (``unknown``: a cut pagemap, its file and offset)."""
    if argv:
        return " ".join(argv)
    if unknown:
        return f"? (unreadable: {unknown})"
    return f"[{comm}]" if comm is not None else None


def unknown_pages_text(pids):
    """``private pages of pid 7, 9 unknown``: the pids whose pagemap cannot be read (the
    graph's :attr:`~crit_plus.pages.CheckpointPages.unknown`), five at most; "" for none."""
    if not pids:
        return ""
    named = ", ".join(str(pid) for pid in pids[:5]) + (" ..." if len(pids) > 5 else "")
    return f"private pages of pid {named} unknown"


def address_range(start, end):
    """``/proc/PID/maps`` address text: ``00400000-0041f000``."""
    return f"{start:08x}-{end:08x}"


def maps_offset(offset):
    """``/proc/PID/maps`` file offset text: ``0001f000``."""
    return f"{offset:08x}"


# -- shares, rates and transfer times (size) -------------------------------------------------

_DECIMAL = ((10 ** 12, "T"), (10 ** 9, "G"), (10 ** 6, "M"), (10 ** 3, "k"))


def percent(part, whole):
    """``part`` as a share of ``whole``: ``"97.9%"``; None when ``whole`` is 0 or unknown."""
    if part is None or not whole:
        return None
    return f"{100 * part / whole:.1f}%"


def _decimal(value, unit):
    for factor, prefix in _DECIMAL:
        if value >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def human_rate(bytes_per_second):
    """A transfer rate both ways: ``125000000`` → ``"1 Gbit/s (125 MB/s)"``."""
    if bytes_per_second is None:
        return None
    return f"{_decimal(bytes_per_second * 8, 'bit/s')} ({_decimal(bytes_per_second, 'B/s')})"


def human_seconds(seconds):
    """A duration for people: ``"0.11 s"``, ``"12.3 s"``, ``"2 min 05 s"``, ``"1 h 02 min"``."""
    if seconds is None:
        return None
    if seconds == 0:
        return "0 s"
    if seconds < 0.001:
        return "< 1 ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def count_text(count, singular, plural=None):
    """``1 log``, ``3 logs``: a count with its noun (``plural`` for irregular nouns)."""
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


def state_text(state, ended):
    """A STATE cell: ``zombie (exit 7)`` for a zombie whose end is known
    (:class:`~crit_plus.graph.ExitStatus`), else the state itself."""
    return f"{state} ({ended.short})" if ended is not None else state
